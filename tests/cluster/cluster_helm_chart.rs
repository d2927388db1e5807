//! The Helm chart `charts/driftline`: `helm lint --strict` is clean, and the
//! rendered objects of both scopes (cluster-wide; namespaced with leader
//! election and PostgreSQL) are valid Kubernetes 1.33 objects
//! (`python3 -m kubernetes_validate --strict`), least-privilege (no wildcard,
//! exactly the operator's rules, nothing cluster-scoped when namespaced) and
//! locked down (non-root as the image's user, RuntimeDefault seccomp,
//! read-only root filesystem, no capabilities), with opt-in NetworkPolicies
//! whose selectors and ports match what they protect. Bad
//! values are refused by `values.schema.json` or the templates with a message
//! that names the value. The CRDs under `charts/driftline/crds/` are checked
//! against the generated ones by tests/decisions/api_crd.rs.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_json::{Value, json};

use super::k8s_tools::tools_or_skip;

const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/charts/driftline");

fn helm(bin: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(bin)
        .args(args)
        // No user config or repositories leak in.
        .env(
            "HELM_CONFIG_HOME",
            std::env::temp_dir().join("driftline-helm-test"),
        )
        .output()
        .expect("helm runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// `helm template` with a values file from `charts/driftline/ci/`, as JSON objects.
fn render(bin: &Path, values: &str, extra: &[&str]) -> (String, Vec<Value>) {
    let values = format!("{CHART}/ci/{values}");
    let mut args = vec![
        "template",
        "ops",
        CHART,
        "--namespace",
        "driftline-system",
        "-f",
        &values,
    ];
    args.extend(extra);
    let (ok, text) = helm(bin, &args);
    assert!(ok, "helm template {values} {extra:?}: {text}");
    let docs = serde_yaml::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).expect("rendered YAML parses"))
        .filter(|v| !v.is_null())
        .collect();
    (text, docs)
}

fn validate(dir: &Path, name: &str, docs: &[Value]) {
    // kubernetes_validate knows the built-in kinds; the ServiceMonitor is the
    // Prometheus operator's CRD, checked by its fields below instead.
    let builtin: Vec<&Value> = docs
        .iter()
        .filter(|d| d["kind"] != "ServiceMonitor")
        .collect();
    let mut files = Vec::new();
    for (i, doc) in builtin.iter().enumerate() {
        let path = dir.join(format!("{name}-{i}.yaml"));
        std::fs::write(&path, serde_yaml::to_string(doc).unwrap()).unwrap();
        files.push(path);
    }
    let out = Command::new("python3")
        .args([
            "-m",
            "kubernetes_validate",
            "--strict",
            "--kubernetes-version",
            "1.33.0",
        ])
        .args(&files)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{name}: kubernetes_validate (pip install -r .ci/requirements.txt): {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn kinds(docs: &[Value]) -> Vec<String> {
    let mut k: Vec<String> = docs
        .iter()
        .map(|d| {
            format!(
                "{}/{}",
                d["kind"].as_str().unwrap(),
                d["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    k.sort();
    k
}

fn one<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = docs.iter().filter(|d| d["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "one {kind} in {:?}", kinds(docs));
    found[0]
}

fn env<'a>(container: &'a Value, name: &str) -> Option<&'a Value> {
    container["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
}

/// The operator's rules (templates/rbac.yaml), as (group, resource, verbs).
fn operator_rules() -> Value {
    json!([
        {"apiGroups": ["driftline.dev"], "resources": ["models"], "verbs": ["list", "watch", "patch"]},
        {"apiGroups": ["driftline.dev"], "resources": ["models/status"], "verbs": ["patch"]},
        {"apiGroups": ["driftline.dev"], "resources": ["modelversions"], "verbs": ["list", "watch", "create", "delete"]},
        {"apiGroups": ["driftline.dev"], "resources": ["modelversions/status"], "verbs": ["patch"]},
        {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["list", "watch", "create", "delete"]},
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["list", "watch", "create", "patch", "delete"]},
        {"apiGroups": [""], "resources": ["services"], "verbs": ["list", "watch", "create", "patch", "delete"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]},
        {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
    ])
}

fn no_wildcards(docs: &[Value]) {
    for d in docs
        .iter()
        .filter(|d| d["kind"] == "Role" || d["kind"] == "ClusterRole")
    {
        for rule in d["rules"].as_array().unwrap() {
            for field in ["apiGroups", "resources", "verbs"] {
                let values = rule[field].as_array().unwrap();
                assert!(
                    values.iter().all(|v| v != "*"),
                    "{} grants '*' in {field}: {rule}",
                    d["metadata"]["name"]
                );
            }
        }
    }
    for d in docs
        .iter()
        .filter(|d| d["kind"].as_str().is_some_and(|k| k.ends_with("Binding")))
    {
        assert_ne!(d["roleRef"]["name"], "cluster-admin", "{d}");
        assert_ne!(d["roleRef"]["name"], "admin", "{d}");
        assert_ne!(d["roleRef"]["name"], "edit", "{d}");
    }
}

fn locked_down(operator: &Value) {
    let pod = &operator["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{pod}");
    assert_eq!(
        pod["securityContext"]["runAsUser"],
        driftline::operator::RUN_AS_USER,
        "docker/Dockerfile's user: {pod}"
    );
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault",
        "{pod}"
    );
    let c = &pod["containers"][0];
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true, "{c}");
    assert_eq!(
        c["securityContext"]["allowPrivilegeEscalation"], false,
        "{c}"
    );
    assert_eq!(
        c["securityContext"]["capabilities"]["drop"],
        json!(["ALL"]),
        "{c}"
    );
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz", "{c}");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz", "{c}");
    // /tmp is the only scratch space on a read-only root.
    assert!(
        c["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["mountPath"] == "/tmp"),
        "{c}"
    );
}

fn helm_or_skip(test: &str) -> Option<PathBuf> {
    tools_or_skip(test, ["helm"]).map(|[h]| h)
}

#[test]
fn helm_lint_is_clean_for_both_scopes() {
    let Some(bin) = helm_or_skip("helm_lint_is_clean_for_both_scopes") else {
        return;
    };
    for values in ["cluster-values.yaml", "namespace-values.yaml"] {
        let values = format!("{CHART}/ci/{values}");
        let (ok, text) = helm(&bin, &["lint", "--strict", CHART, "-f", &values]);
        assert!(
            ok && text.contains("0 chart(s) failed"),
            "helm lint {values}: {text}"
        );
        assert!(
            !text.contains("[WARNING]") && !text.contains("[ERROR]"),
            "{text}"
        );
    }
}

#[test]
fn the_cluster_wide_chart_renders_valid_least_privilege_objects() {
    let Some(bin) = helm_or_skip("the_cluster_wide_chart_renders_valid_least_privilege_objects")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (_, docs) = render(&bin, "cluster-values.yaml", &[]);
    validate(dir.path(), "cluster", &docs);
    assert_eq!(
        kinds(&docs),
        [
            "ClusterRole/ops-driftline",
            "ClusterRoleBinding/ops-driftline",
            "Deployment/ops-driftline",
            "PersistentVolumeClaim/ops-driftline-registry",
            "Role/driftline-gateway",
            "RoleBinding/driftline-gateway",
            "Service/ops-driftline-metrics",
            "ServiceAccount/driftline-gateway",
            "ServiceAccount/ops-driftline",
            "ServiceMonitor/ops-driftline",
        ]
    );
    no_wildcards(&docs);
    assert_eq!(one(&docs, "ClusterRole")["rules"], operator_rules());
    let binding = one(&docs, "ClusterRoleBinding");
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": "ops-driftline", "namespace": "driftline-system"}])
    );
    let gateway = one(&docs, "Role");
    assert_eq!(
        gateway["rules"],
        json!([{"apiGroups": ["driftline.dev"], "resources": ["models"], "verbs": ["list", "watch"]}])
    );

    let operator = one(&docs, "Deployment");
    locked_down(operator);
    assert_eq!(operator["spec"]["replicas"], 1);
    assert_eq!(
        operator["spec"]["strategy"]["type"], "Recreate",
        "SQLite: one writer"
    );
    let pod = &operator["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "ops-driftline");
    let c = &pod["containers"][0];
    assert_eq!(c["image"], "ghcr.io/driftline/driftline:0.1.0");
    assert!(
        !c["args"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a.as_str().unwrap().starts_with("--leader-lease")),
        "one replica elects no leader: {c}"
    );
    assert!(
        env(c, "DRIFTLINE_WATCH_NAMESPACE").is_none(),
        "cluster-wide: {c}"
    );
    assert_eq!(
        env(c, "DRIFTLINE_ARTIFACT_ROOT").unwrap()["value"],
        "s3://models/driftline"
    );
    assert_eq!(
        env(c, "DRIFTLINE_CREDENTIALS_SECRET").unwrap()["value"],
        "s3-credentials"
    );
    assert_eq!(c["envFrom"][0]["secretRef"]["name"], "s3-credentials");
    assert_eq!(
        env(c, "DRIFTLINE_REGISTRY").unwrap()["value"],
        "sqlite:///var/lib/driftline/registry/registry.db"
    );
    let placement: Value = serde_json::from_str(
        env(c, "DRIFTLINE_GPU_PLACEMENT").unwrap()["value"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(placement["nodeSelector"], json!({"accelerator": "nvidia"}));
    assert_eq!(placement["tolerations"][0]["key"], "nvidia.com/gpu");
    assert!(
        env(c, "DRIFTLINE_HTTP_ROUTE_PARENT").is_none(),
        "no Gateway named, no HTTPRoutes: {c}"
    );
    // With a Gateway named, the operator attaches HTTPRoutes to it and may
    // write them; without one it may not.
    let (_, with_gateway) = render(
        &bin,
        "cluster-values.yaml",
        &["--set", "gatewayAPI.parent=gateways/public"],
    );
    let role = one(&with_gateway, "ClusterRole");
    let mut rules = operator_rules().as_array().unwrap().clone();
    rules.push(json!({"apiGroups": ["gateway.networking.k8s.io"], "resources": ["httproutes"], "verbs": ["create", "patch"]}));
    assert_eq!(role["rules"], Value::Array(rules));
    let c = &one(&with_gateway, "Deployment")["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        env(c, "DRIFTLINE_HTTP_ROUTE_PARENT").unwrap()["value"],
        "gateways/public"
    );
    let monitor = one(&docs, "ServiceMonitor");
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");
    let service = one(&docs, "Service");
    for (k, v) in monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap()
    {
        assert_eq!(
            &service["metadata"]["labels"][k], v,
            "the ServiceMonitor selects the Service"
        );
    }
}

/// Whether `selector`'s matchLabels select a pod labelled `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    selector["matchLabels"]
        .as_object()
        .unwrap()
        .iter()
        .all(|(k, v)| &labels[k] == v)
}

#[test]
fn with_network_policies_the_operator_admits_only_scrapes_and_writes_valid_policies_per_model() {
    let Some(bin) = helm_or_skip(
        "with_network_policies_the_operator_admits_only_scrapes_and_writes_valid_policies_per_model",
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (_, docs) = render(
        &bin,
        "cluster-values.yaml",
        &["--set", "networkPolicy.enabled=true"],
    );
    validate(dir.path(), "network-policy", &docs);
    let operator = one(&docs, "Deployment");
    let pod_labels = &operator["spec"]["template"]["metadata"]["labels"];
    let c = &operator["spec"]["template"]["spec"]["containers"][0];

    // The operator's own pod: scrapes of its metrics port, nothing else.
    let own = one(&docs, "NetworkPolicy");
    assert_eq!(own["metadata"]["namespace"], "driftline-system");
    assert!(selects(&own["spec"]["podSelector"], pod_labels), "{own}");
    assert_eq!(own["spec"]["policyTypes"], json!(["Ingress"]));
    assert_eq!(
        own["spec"]["ingress"],
        json!([{"ports": [{"port": "metrics", "protocol": "TCP"}]}])
    );
    assert_eq!(c["ports"][0]["name"], "metrics", "the port it names: {c}");

    // The operator may write each Model's policies.
    let mut rules = operator_rules().as_array().unwrap().clone();
    rules.push(json!({"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": ["create", "patch"]}));
    assert_eq!(one(&docs, "ClusterRole")["rules"], Value::Array(rules));

    // What the chart tells the operator selects the operator's own pods.
    let settings: driftline::operator::NetworkPolicySettings = serde_json::from_str(
        env(c, "DRIFTLINE_NETWORK_POLICIES").unwrap()["value"]
            .as_str()
            .unwrap(),
    )
    .expect("the operator's --network-policies shape");
    assert_eq!(settings.operator_namespace, "driftline-system");
    assert!(selects(
        &json!({"matchLabels": settings.operator_pod_labels}),
        pod_labels
    ));

    // A Model's policies as the operator writes them with it: valid objects
    // whose operator peer is the chart's operator.
    let spec = driftline::api::load_model_config(include_str!("../fixtures/wine-quality.yaml"))
        .expect("fixture");
    let mut model = driftline::api::Model::new("wine-quality", spec);
    model.metadata.namespace = Some("ml".into());
    model.metadata.uid = Some("uid-1".into());
    let child_settings = driftline::operator::ChildSettings {
        network_policies: Some(settings),
        ..Default::default()
    };
    let policies: Vec<Value> = driftline::operator::network_policies(&model, &child_settings)
        .expect("policies")
        .iter()
        .map(|p| serde_json::to_value(p).unwrap())
        .collect();
    assert_eq!(policies.len(), 2);
    validate(dir.path(), "model-policies", &policies);
    for p in &policies {
        let peer = &p["spec"]["ingress"][0]["from"][1];
        assert_eq!(
            peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
            "driftline-system"
        );
        assert!(selects(&peer["podSelector"], pod_labels), "{p}");
    }
}

#[test]
fn the_namespaced_chart_has_nothing_cluster_scoped_and_elects_a_leader() {
    let Some(bin) =
        helm_or_skip("the_namespaced_chart_has_nothing_cluster_scoped_and_elects_a_leader")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (_, docs) = render(&bin, "namespace-values.yaml", &[]);
    validate(dir.path(), "namespace", &docs);
    assert_eq!(
        kinds(&docs),
        [
            "Deployment/ops-driftline",
            "Role/driftline-gateway",
            "Role/ops-driftline",
            "Role/ops-driftline-leader",
            "RoleBinding/driftline-gateway",
            "RoleBinding/ops-driftline",
            "RoleBinding/ops-driftline-leader",
            "Service/ops-driftline-metrics",
            "ServiceAccount/driftline-gateway",
            "ServiceAccount/ops-driftline",
        ]
    );
    no_wildcards(&docs);
    let ns_of = |kind: &str, name: &str| {
        docs.iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
            .map(|d| d["metadata"]["namespace"].as_str().unwrap().to_string())
            .unwrap()
    };
    // The operator's rights are in the watched namespace; the Lease and the
    // operator itself in the release namespace.
    assert_eq!(ns_of("Role", "ops-driftline"), "ml");
    assert_eq!(ns_of("RoleBinding", "ops-driftline"), "ml");
    assert_eq!(ns_of("Role", "ops-driftline-leader"), "driftline-system");
    assert_eq!(ns_of("ServiceAccount", "driftline-gateway"), "ml");
    assert_eq!(ns_of("Deployment", "ops-driftline"), "driftline-system");
    let role = docs
        .iter()
        .find(|d| d["kind"] == "Role" && d["metadata"]["name"] == "ops-driftline")
        .unwrap();
    assert_eq!(role["rules"], operator_rules());
    let leader = docs
        .iter()
        .find(|d| d["kind"] == "Role" && d["metadata"]["name"] == "ops-driftline-leader")
        .unwrap();
    assert_eq!(
        leader["rules"],
        json!([
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": ["ops-driftline"], "verbs": ["get", "update"]},
            // Events on the Lease: the release namespace is not watched here.
            {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create"]},
        ])
    );
    // Watching the release namespace, the operator's own rules cover its Events.
    let (_, watching_release) = render(
        &bin,
        "namespace-values.yaml",
        &["--set", "watchNamespace=driftline-system"],
    );
    let leader = watching_release
        .iter()
        .find(|d| d["kind"] == "Role" && d["metadata"]["name"] == "ops-driftline-leader")
        .unwrap();
    assert_eq!(leader["rules"].as_array().unwrap().len(), 2, "{leader}");

    let operator = one(&docs, "Deployment");
    locked_down(operator);
    assert_eq!(operator["spec"]["replicas"], 2);
    assert!(
        operator["spec"]["strategy"].is_null(),
        "PostgreSQL: rolling updates"
    );
    let c = &operator["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(args.contains(&"--leader-lease=ops-driftline"), "{args:?}");
    for timing in [
        "--lease-duration=15s",
        "--lease-renew-deadline=10s",
        "--lease-retry-period=2s",
    ] {
        assert!(args.contains(&timing), "client-go's timing: {args:?}");
    }
    assert_eq!(env(c, "DRIFTLINE_WATCH_NAMESPACE").unwrap()["value"], "ml");
    assert_eq!(
        env(c, "DRIFTLINE_REGISTRY").unwrap()["valueFrom"],
        json!({"secretKeyRef": {"name": "driftline-registry", "key": "url"}})
    );
    assert_eq!(env(c, "DRIFTLINE_LOG_JSON").unwrap()["value"], "true");
    assert_eq!(env(c, "RUST_LOG").unwrap()["value"], "driftline=debug,info");
    assert_eq!(
        env(c, "POD_NAMESPACE").unwrap()["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.namespace",
        "the leader Lease lives in the release namespace"
    );
    assert!(
        !docs.iter().any(|d| d["kind"] == "PersistentVolumeClaim"),
        "PostgreSQL needs no volume"
    );
}

#[test]
fn a_chart_watching_two_namespaces_has_a_role_in_each_and_nothing_cluster_scoped() {
    let Some(bin) = helm_or_skip(
        "a_chart_watching_two_namespaces_has_a_role_in_each_and_nothing_cluster_scoped",
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (_, docs) = render(
        &bin,
        "namespace-values.yaml",
        &["--set", "watchNamespaces={team-a,team-b,team-a}"],
    );
    validate(dir.path(), "two-namespaces", &docs);
    no_wildcards(&docs);
    let mut placed: Vec<String> = docs
        .iter()
        .map(|d| {
            format!(
                "{}/{} in {}",
                d["kind"].as_str().unwrap(),
                d["metadata"]["name"].as_str().unwrap(),
                d["metadata"]["namespace"].as_str().unwrap_or("<cluster>")
            )
        })
        .collect();
    placed.sort();
    assert_eq!(
        placed,
        [
            "Deployment/ops-driftline in driftline-system",
            "Role/driftline-gateway in team-a",
            "Role/driftline-gateway in team-b",
            "Role/ops-driftline in team-a",
            "Role/ops-driftline in team-b",
            "Role/ops-driftline-leader in driftline-system",
            "RoleBinding/driftline-gateway in team-a",
            "RoleBinding/driftline-gateway in team-b",
            "RoleBinding/ops-driftline in team-a",
            "RoleBinding/ops-driftline in team-b",
            "RoleBinding/ops-driftline-leader in driftline-system",
            "Service/ops-driftline-metrics in driftline-system",
            "ServiceAccount/driftline-gateway in team-a",
            "ServiceAccount/driftline-gateway in team-b",
            "ServiceAccount/ops-driftline in driftline-system",
        ]
    );
    for role in docs
        .iter()
        .filter(|d| d["kind"] == "Role" && d["metadata"]["name"] == "ops-driftline")
    {
        assert_eq!(role["rules"], operator_rules());
    }
    for binding in docs
        .iter()
        .filter(|d| d["kind"] == "RoleBinding" && d["metadata"]["name"] == "ops-driftline")
    {
        assert_eq!(
            binding["subjects"],
            json!([{"kind": "ServiceAccount", "name": "ops-driftline", "namespace": "driftline-system"}])
        );
    }
    let c = &one(&docs, "Deployment")["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        env(c, "DRIFTLINE_WATCH_NAMESPACE").unwrap()["value"],
        "team-a,team-b",
        "the operator's --namespace list, each once"
    );
}

#[test]
fn bad_values_are_refused_with_the_value_named() {
    let Some(bin) = helm_or_skip("bad_values_are_refused_with_the_value_named") else {
        return;
    };
    let cluster = format!("{CHART}/ci/cluster-values.yaml");
    for (set, expected) in [
        ("scope=everywhere", "scope"),
        ("replicaCount=0", "replicaCount"),
        ("logging.format=xml", "format"),
        ("registry.type=postgres", "registry.postgres.secretName"),
        ("replicaCount=2", "registry.type=sqlite"),
        ("artifacts.root=", "artifacts.root is required"),
        ("unknownKey=1", "unknownKey"),
        ("metrics.port=70000", "port"),
        ("gatewayAPI.parent=public", "parent"),
        ("watchNamespaces={team-a,Bad_Ns}", "watchNamespaces"),
        ("leaderElection.renewDeadline=10", "renewDeadline"),
        ("notify.sinks[0].url=ftp://hooks.example.com/x", "url"),
        (
            "notify.sinks[0].url=https://h.example.com/x,notify.sinks[0].events={rolledback}",
            "events",
        ),
    ] {
        let (ok, text) = helm(
            &bin,
            &["template", "ops", CHART, "-f", &cluster, "--set", set],
        );
        assert!(!ok, "--set {set} was accepted");
        assert!(
            text.contains(expected),
            "--set {set}: expected '{expected}' in: {text}"
        );
    }
}

/// Operator-wide sinks reach the operator as `DRIFTLINE_NOTIFY`, which the
/// operator reads with the same parser as a Model's `spec.notify`; reading
/// their Secrets is granted only with `notify.readSecrets`.
#[test]
fn notification_sinks_render_into_the_operators_env_and_secret_access_is_opt_in() {
    let Some(bin) = helm_or_skip(
        "notification_sinks_render_into_the_operators_env_and_secret_access_is_opt_in",
    ) else {
        return;
    };
    let (_, plain) = render(&bin, "cluster-values.yaml", &[]);
    let c = &one(&plain, "Deployment")["spec"]["template"]["spec"]["containers"][0];
    assert!(
        env(c, "DRIFTLINE_NOTIFY").is_none(),
        "no sinks, no variable"
    );
    let rules = one(&plain, "ClusterRole")["rules"].to_string();
    assert!(!rules.contains("secrets"), "{rules}");

    let (_, docs) = render(
        &bin,
        "cluster-values.yaml",
        &[
            "--set",
            "notify.sinks[0].url=https://hooks.example.com/driftline",
            "--set",
            "notify.sinks[0].events={promoted,rolledBack}",
            "--set",
            "notify.sinks[0].format=slack",
            "--set",
            "notify.sinks[0].secretRef.name=hooks",
            "--set",
            "notify.sinks[0].secretRef.key=hmac",
            "--set",
            "notify.readSecrets=true",
        ],
    );
    let c = &one(&docs, "Deployment")["spec"]["template"]["spec"]["containers"][0];
    let value = env(c, "DRIFTLINE_NOTIFY").expect("DRIFTLINE_NOTIFY")["value"]
        .as_str()
        .expect("a string")
        .to_string();
    let sinks =
        driftline::api::parse_sinks(&value, "DRIFTLINE_NOTIFY").expect("the operator reads it");
    assert_eq!(sinks.len(), 1);
    assert_eq!(sinks[0].url, "https://hooks.example.com/driftline");
    assert_eq!(sinks[0].events, ["promoted", "rolledBack"]);
    assert_eq!(sinks[0].format, driftline::api::NotifyFormat::Slack);
    assert_eq!(
        sinks[0]
            .secret_ref
            .as_ref()
            .map(|r| (r.name.as_str(), r.key.as_str())),
        Some(("hooks", "hmac"))
    );
    let rules = &one(&docs, "ClusterRole")["rules"];
    let secrets: Vec<&Value> = rules
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["resources"] == json!(["secrets"]))
        .collect();
    assert_eq!(secrets.len(), 1, "{rules}");
    assert_eq!(secrets[0]["verbs"], json!(["get"]));
}
