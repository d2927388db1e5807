//! The Helm chart and the operator on a real control plane (etcd,
//! kube-apiserver with RBAC, ServiceAccount tokens, the default admission
//! plugins (Pod Security among them) and an audit log of ServiceAccounts'
//! requests, controller-manager, scheduler; see [`super::real_control_plane`]).
//!
//! The operator runs beside the control plane as a local process that
//! authenticates with a token of the chart's own ServiceAccount: exactly the
//! rights its pod would have. What is proven here:
//! - `helm install` installs the chart (CRDs and NetworkPolicy included)
//!   into a namespace that enforces Pod Security `restricted`; the real
//!   Deployment/ReplicaSet controllers make the operator's pod there (it is
//!   admitted) and the real scheduler finds it unschedulable (no node here);
//! - under the chart's RBAC the operator syncs its caches, reconciles a
//!   Model, writes its status, records Events, writes the Model's
//!   NetworkPolicies, creates the ModelVersion and the training Job, and the
//!   real Job controller makes the training pod in a `restricted` namespace;
//! - least privilege: with full rights the operator makes a call with every
//!   verb of the chart's ClusterRole and none is refused; with any one verb
//!   removed, the real authorizer refuses that call (the audit log shows it).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::k8s_tools::tools_or_skip;
use super::real_control_plane::{Audited, RealControlPlane};

const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/charts/driftline");
const MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines/wine-quality.yaml");
const RELEASE_NS: &str = "driftline-system";
const SA: &str = "ops-driftline";

fn wait_until(limit: Duration, what: &str, mut ok: impl FnMut() -> Option<String>) -> String {
    let start = Instant::now();
    loop {
        if let Some(v) = ok() {
            return v;
        }
        assert!(start.elapsed() < limit, "{what}: not after {limit:?}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// `driftline operator` as the chart would run it, authenticated as the
/// chart's ServiceAccount. Killed on drop.
struct Operator {
    child: Child,
    log: PathBuf,
}

impl Operator {
    fn start(plane: &RealControlPlane, artifacts: &Path, tag: &str) -> Self {
        let kubeconfig = plane.token_kubeconfig(RELEASE_NS, SA);
        // What the chart's Deployment gives its pod.
        let network_policies = plane.kubectl_ok(&[
            "get",
            "deployment",
            SA,
            "-n",
            RELEASE_NS,
            "-o",
            r#"jsonpath={.spec.template.spec.containers[0].env[?(@.name=="DRIFTLINE_NETWORK_POLICIES")].value}"#,
        ]);
        assert!(
            network_policies.contains("operatorPodLabels"),
            "{network_policies}"
        );
        let log = plane.dir.path().join(format!("operator-{tag}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_driftline"))
            .args(["operator", "--metrics-addr=127.0.0.1:0"])
            .arg(format!("--artifact-root={}", artifacts.display()))
            .arg("--gateway-service-account=driftline-gateway")
            .arg(format!("--network-policies={network_policies}"))
            .env("KUBECONFIG", &kubeconfig)
            .env("RUST_LOG", "info")
            .env_remove("DRIFTLINE_HOSTS_FILE")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("driftline operator starts");
        Operator { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The chart's CRDs, as they are, on the real API server: it refuses CEL
/// rules on untyped fields and rules whose estimated cost exceeds its
/// budget, which the embedded server does not check.
fn install_crds(plane: &RealControlPlane) {
    let crds = format!("{CHART}/crds");
    let (ok, out) = plane.kubectl(&["apply", "--server-side", "-f", &crds]);
    assert!(ok, "the real API server refuses the chart's CRDs: {out}");
    plane.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "crd/models.driftline.dev",
        "crd/modelversions.driftline.dev",
        "--timeout=60s",
    ]);
}

/// Creates namespace `ns` enforcing Pod Security `restricted`, and checks
/// that it does: a pod without the profile's settings is refused.
pub fn restricted_namespace(plane: &RealControlPlane, ns: &str) {
    plane.kubectl_ok(&["create", "namespace", ns]);
    plane.kubectl_ok(&[
        "label",
        "namespace",
        ns,
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/enforce-version=latest",
    ]);
    let (ok, out) = plane.kubectl(&[
        "run",
        "bare",
        "-n",
        ns,
        "--image=busybox",
        "--restart=Never",
        "--dry-run=server",
    ]);
    assert!(
        !ok && out.contains("violates PodSecurity \"restricted:latest\""),
        "namespace {ns} must refuse a pod without the restricted settings: {out}"
    );
}

fn install(plane: &RealControlPlane, helm: &Path, artifacts: &Path) {
    restricted_namespace(plane, "ml");
    restricted_namespace(plane, RELEASE_NS);
    install_crds(plane);
    let out = Command::new(helm)
        .args([
            "install",
            "ops",
            CHART,
            "--namespace",
            RELEASE_NS,
            "--skip-crds",
        ])
        .arg(format!("--kubeconfig={}", plane.kubeconfig.display()))
        .arg(format!("--set=artifacts.root={}", artifacts.display()))
        .args([
            "--set=registry.type=none",
            "--set=gateway.namespaces={ml}",
            "--set=networkPolicy.enabled=true",
        ])
        .env("HELM_CONFIG_HOME", plane.dir.path().join("helm-config"))
        .env("HELM_CACHE_HOME", plane.dir.path().join("helm-cache"))
        .output()
        .expect("helm runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "helm install: {text}");
    assert!(text.contains("STATUS: deployed"), "{text}");
    assert!(
        text.contains("rollout status deployment/ops-driftline"),
        "NOTES.txt: {text}"
    );
}

fn plane_and_helm(test: &str) -> Option<(RealControlPlane, PathBuf)> {
    let [helm] = tools_or_skip(test, ["helm"])?;
    let plane = RealControlPlane::start_or_skip(test)?;
    eprintln!("{test}: control plane ready in {:?}", plane.startup);
    Some((plane, helm))
}

fn can_i(plane: &RealControlPlane, args: &[&str]) -> bool {
    let sa = format!("--as=system:serviceaccount:{RELEASE_NS}:{SA}");
    let mut all = vec!["auth", "can-i"];
    all.extend(args);
    all.push(&sa);
    plane.kubectl(&all).1.trim() == "yes"
}

#[test]
fn helm_installs_the_chart_on_a_real_control_plane_and_the_operator_reconciles_under_its_rbac() {
    let Some((plane, helm)) = plane_and_helm(
        "helm_installs_the_chart_on_a_real_control_plane_and_the_operator_reconciles_under_its_rbac",
    ) else {
        return;
    };
    let artifacts = plane.dir.path().join("artifacts");
    install(&plane, &helm, &artifacts);

    // The chart's CRDs are served.
    plane.kubectl_ok(&[
        "get",
        "crd",
        "models.driftline.dev",
        "modelversions.driftline.dev",
    ]);
    // Least privilege, as the real authorizer sees it.
    assert!(can_i(&plane, &["list", "models.driftline.dev", "-A"]));
    assert!(can_i(&plane, &["create", "jobs.batch", "-n", "ml"]));
    assert!(
        !can_i(&plane, &["get", "secrets", "-n", "ml"]),
        "no Secrets"
    );
    assert!(!can_i(&plane, &["create", "pods", "-n", "ml"]), "no Pods");
    assert!(
        !can_i(&plane, &["update", "deployments.apps", "-n", "ml"]),
        "apply, not update"
    );
    assert!(!can_i(&plane, &["*", "*"]), "not cluster-admin");
    let gateway = "--as=system:serviceaccount:ml:driftline-gateway";
    assert_eq!(
        plane
            .kubectl(&[
                "auth",
                "can-i",
                "watch",
                "models.driftline.dev",
                "-n",
                "ml",
                gateway
            ])
            .1
            .trim(),
        "yes"
    );

    // The real Deployment and ReplicaSet controllers make the operator's pod;
    // the real scheduler finds no node for it.
    let reason = wait_until(
        Duration::from_secs(90),
        "the operator pod is unschedulable",
        || {
            let (ok, out) = plane.kubectl(&[
                "get",
                "pods",
                "-n",
                RELEASE_NS,
                "-l",
                "app.kubernetes.io/instance=ops",
                "-o",
                "jsonpath={.items[0].status.conditions[?(@.type==\"PodScheduled\")].reason}",
            ]);
            (ok && !out.trim().is_empty()).then(|| out.trim().to_string())
        },
    );
    assert_eq!(reason, "Unschedulable");

    // The operator under the chart's ServiceAccount reconciles a Model.
    let operator = Operator::start(&plane, &artifacts, "full");
    plane.kubectl_ok(&["apply", "-f", MODEL]);
    // The run's first pod, its data check (no node runs it here, so the
    // training Job never follows): made by the real Job controller and
    // admitted in a `restricted` namespace (a refused pod shows as the Job's
    // FailedCreate Event).
    let start = Instant::now();
    loop {
        let (ok, out) = plane.kubectl(&[
            "get",
            "pods",
            "-n",
            "ml",
            "-l",
            "job-name=wine-quality-datacheck-1",
            "-o",
            "name",
        ]);
        if ok && !out.trim().is_empty() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no data check pod; the Job's Events:\n{}",
            plane
                .kubectl(&[
                    "get",
                    "events",
                    "-n",
                    "ml",
                    "--field-selector=involvedObject.name=wine-quality-datacheck-1",
                ])
                .1
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    plane.kubectl_ok(&["get", "modelversion", "wine-quality-v1", "-n", "ml"]);
    let phase = plane.kubectl_ok(&[
        "get",
        "model",
        "wine-quality",
        "-n",
        "ml",
        "-o",
        "jsonpath={.status.phase}",
    ]);
    assert!(
        !phase.trim().is_empty(),
        "status written; log:\n{}",
        operator.log()
    );
    let events = wait_until(
        Duration::from_secs(30),
        "an Event from the operator",
        || {
            let (ok, out) = plane.kubectl(&[
                "get",
                "events.events.k8s.io",
                "-n",
                "ml",
                "-o",
                "jsonpath={.items[*].reportingController}",
            ]);
            (ok && out.contains("driftline")).then_some(out)
        },
    );
    assert!(events.contains("driftline"), "{events}");
    // The Model's NetworkPolicies, written under the chart's RBAC and
    // accepted by the real API server (which has no network plugin here to
    // enforce them), beside the chart's own for the operator.
    let policies = wait_until(
        Duration::from_secs(30),
        "the Model's NetworkPolicies",
        || {
            let (ok, out) = plane.kubectl(&["get", "networkpolicies", "-n", "ml", "-o", "name"]);
            (ok && out.contains("wine-quality-gateway")).then_some(out)
        },
    );
    assert!(policies.contains("networkpolicy.networking.k8s.io/wine-quality-servers"));
    plane.kubectl_ok(&["get", "networkpolicy", SA, "-n", RELEASE_NS]);
    assert!(!operator.log().contains("forbidden"), "{}", operator.log());
    let refused: Vec<Audited> = plane
        .audited(&operator_user())
        .into_iter()
        .filter(refused_by_rbac)
        .collect();
    assert!(refused.is_empty(), "{refused:#?}");
}

fn operator_user() -> String {
    format!("system:serviceaccount:{RELEASE_NS}:{SA}")
}

/// Each verb of the chart's ClusterRole as (resource, verb), in order.
fn verbs_of(rules: &[serde_json::Value]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for rule in rules {
        assert_eq!(rule["resources"].as_array().unwrap().len(), 1, "{rule}");
        let resource = rule["resources"][0].as_str().unwrap();
        for verb in rule["verbs"].as_array().unwrap() {
            out.push((resource.to_string(), verb.as_str().unwrap().to_string()));
        }
    }
    out
}

/// Whether the authorizer refused `a` (a quota refusal is a 403 too).
fn refused_by_rbac(a: &Audited) -> bool {
    a.code == 403
        && a.message
            .contains(&format!("User \"{}\" cannot ", operator_user()))
}

/// Whether the operator's audited request `a` used `verb` on `resource`,
/// allowed by the authorizer (a delete of one already gone answers 404; a
/// server-side apply that creates is a `patch` answered 201).
fn used(a: &Audited, resource: &str, verb: &str) -> bool {
    !matches!(a.code, 401 | 403)
        && a.resource == resource
        && (a.verb == verb || (verb == "create" && a.verb == "patch" && a.code == 201))
}

/// What makes the operator call every verb of its rules in its first
/// seconds, in namespace `ml` (suffix `tag`):
/// - `lp-<tag>`, a new Model with a retraining request: it starts v1
///   (version, its status, a Job, Events) and removes the request
///   annotation; its failed `v9` falls to retention (`retainFailed: 0`),
///   whose Job, Deployment, Service and ModelVersion are deleted;
/// - `srv-<tag>`, a Model whose v1 is champion: its servers and gateway
///   are applied (and created) with its NetworkPolicies.
///
/// Repeated Events (patched) come from `q` in `lp-quota` (see [`quota_model`]).
fn stage_models(plane: &RealControlPlane, tag: &str) {
    let text = std::fs::read_to_string(MODEL).unwrap();
    let template: serde_json::Value = serde_yaml::from_str(&text).unwrap();
    let model = |name: &str, annotate: bool| {
        let mut m = template.clone();
        m["metadata"] = serde_json::json!({"name": name, "namespace": "ml"});
        if annotate {
            m["metadata"]["annotations"] =
                serde_json::json!({driftline::api::names::RETRAIN_ANNOTATION: "lp"});
        }
        m["spec"].as_object_mut().unwrap().remove("retrain");
        m["spec"]["rollout"]["retainFailed"] = 0.into();
        m
    };
    let (lp, srv) = (format!("lp-{tag}"), format!("srv-{tag}"));
    let file = plane.dir.path().join(format!("models-{tag}.json"));
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List",
        "items": [model(&lp, true), model(&srv, false)]});
    std::fs::write(&file, list.to_string()).unwrap();
    plane.kubectl_ok(&["apply", "-f", file.to_str().unwrap()]);
    let owner_of = |model: &str| {
        let uid = plane.kubectl_ok(&[
            "get",
            "model",
            model,
            "-n",
            "ml",
            "-o",
            "jsonpath={.metadata.uid}",
        ]);
        let mut owner: driftline::api::Model =
            serde_json::from_value(self::model_of(&template, model)).unwrap();
        owner.metadata.namespace = Some("ml".into());
        owner.metadata.uid = Some(uid.trim().to_string());
        owner
    };
    let apply = |name: &str, object: String| {
        let file = plane.dir.path().join(format!("{name}.json"));
        std::fs::write(&file, object).unwrap();
        plane.kubectl_ok(&["apply", "-f", file.to_str().unwrap()]);
    };
    let version = |model: &str, n: u32| {
        let owner = owner_of(model);
        let v = driftline::operator::model_version(
            &owner,
            n,
            driftline::api::TrainingTrigger::Manual,
            "staged by the test",
            "0",
            None,
        )
        .unwrap();
        let file = plane.dir.path().join(format!("{model}-v{n}.json"));
        std::fs::write(&file, serde_json::to_string(&v).unwrap()).unwrap();
        plane.kubectl_ok(&["apply", "-f", file.to_str().unwrap()]);
    };
    let status = |kind: &str, name: &str, status: serde_json::Value| {
        let patch = serde_json::json!({ "status": status }).to_string();
        plane.kubectl_ok(&[
            "patch",
            kind,
            name,
            "-n",
            "ml",
            "--subresource=status",
            "--type=merge",
            "-p",
            &patch,
        ]);
    };
    version(&lp, 9);
    status(
        "modelversion",
        &format!("{lp}-v9"),
        serde_json::json!({"phase": "Failed"}),
    );
    // The failed v9's children, as the operator built them (suspended, no
    // replicas): once retention drops v9 they carry the Model's label and no
    // desired child's name, so the label sweep deletes them.
    {
        use driftline::operator::{ChildSettings, serving_children as serving, training_job};
        let owner = owner_of(&lp);
        let settings = ChildSettings::default();
        let mut job = training_job(&owner, 9, "2026-12-01T00:00:00Z", None, &settings).unwrap();
        job.spec.as_mut().unwrap().suspend = Some(true);
        apply(&format!("{lp}-job-9"), serde_json::to_string(&job).unwrap());
        let (mut deployment, service) = serving(&owner, 9, "/artifacts/none", &settings).unwrap();
        deployment.spec.as_mut().unwrap().replicas = Some(0);
        apply(
            &format!("{lp}-deploy-9"),
            serde_json::to_string(&deployment).unwrap(),
        );
        apply(
            &format!("{lp}-svc-9"),
            serde_json::to_string(&service).unwrap(),
        );
    }
    version(&srv, 1);
    status(
        "modelversion",
        &format!("{srv}-v1"),
        serde_json::json!({"phase": "Champion",
            "artifact": {"uri": format!("/artifacts/ml/{srv}/v1")}}),
    );
    status(
        "model",
        &srv,
        serde_json::json!({"phase": "Serving", "champion": "v1", "nextVersion": 2,
            "traffic": [{"version": "v1", "weight": 100}], "trafficSummary": "v1:100"}),
    );
}

fn model_of(template: &serde_json::Value, name: &str) -> serde_json::Value {
    let mut m = template.clone();
    m["metadata"] = serde_json::json!({ "name": name });
    m
}

/// Model `q` in namespace `lp-quota`, whose quota admits no Job: its
/// reconcile fails the same way every few seconds, and the same Warning
/// Event is counted again (patched).
fn quota_model(plane: &RealControlPlane) {
    restricted_namespace(plane, "lp-quota");
    plane.kubectl_ok(&[
        "create",
        "quota",
        "no-jobs",
        "-n",
        "lp-quota",
        "--hard=count/jobs.batch=0",
    ]);
    let text = std::fs::read_to_string(MODEL).unwrap().replace(
        "{name: wine-quality, namespace: ml}",
        "{name: q, namespace: lp-quota}",
    );
    let file = plane.dir.path().join("quota-model.yaml");
    std::fs::write(&file, text).unwrap();
    plane.kubectl_ok(&["apply", "-f", file.to_str().unwrap()]);
}

#[test]
fn every_verb_of_the_charts_cluster_role_is_used_and_needed() {
    let Some((plane, helm)) =
        plane_and_helm("every_verb_of_the_charts_cluster_role_is_used_and_needed")
    else {
        return;
    };
    let began = Instant::now();
    let artifacts = plane.dir.path().join("artifacts");
    install(&plane, &helm, &artifacts);
    quota_model(&plane);
    let full = plane.kubectl_ok(&["get", "clusterrole", SA, "-o", "json"]);
    let full: serde_json::Value = serde_json::from_str(&full).unwrap();
    let rules = full["rules"].as_array().unwrap().clone();
    let verbs = verbs_of(&rules);
    for verb in ["create", "patch"] {
        assert!(
            verbs.contains(&("networkpolicies".into(), verb.into())),
            "with networkPolicy.enabled: {verbs:?}"
        );
    }
    let user = operator_user();

    // With every verb: each is used, none refused.
    stage_models(&plane, "all");
    let operator = Operator::start(&plane, &artifacts, "all");
    let start = Instant::now();
    loop {
        let audited = plane.audited(&user);
        let refused: Vec<&Audited> = audited.iter().filter(|a| refused_by_rbac(a)).collect();
        assert!(refused.is_empty(), "{refused:#?}\n{}", operator.log());
        let unused: Vec<&(String, String)> = verbs
            .iter()
            .filter(|(r, v)| !audited.iter().any(|a| used(a, r, v)))
            .collect();
        if unused.is_empty() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "with its full rules the operator never used {unused:?}; log:\n{}",
            operator.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    drop(operator);

    // Without any one verb, the operator's call that needs it is refused.
    for (i, (resource, verb)) in verbs.iter().enumerate() {
        let mut fewer = rules.clone();
        let rule = fewer
            .iter_mut()
            .find(|r| r["resources"][0] == resource.as_str())
            .unwrap();
        rule["verbs"]
            .as_array_mut()
            .unwrap()
            .retain(|v| v != verb.as_str());
        fewer.retain(|r| !r["verbs"].as_array().unwrap().is_empty());
        let patch =
            serde_json::json!([{"op": "replace", "path": "/rules", "value": fewer}]).to_string();
        plane.kubectl_ok(&["patch", "clusterrole", SA, "--type=json", "-p", &patch]);
        let tag = i.to_string();
        stage_models(&plane, &tag);
        let seen = plane.audited(&user).len();
        let refusal = format!(r#"cannot {verb} resource "{resource}""#);
        let operator = Operator::start(&plane, &artifacts, &format!("without-{i}"));
        let start = Instant::now();
        while !plane.audited(&user)[seen..]
            .iter()
            .any(|a| refused_by_rbac(a) && a.message.contains(&refusal))
        {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "without {verb} on {resource}, expected '{refusal}' from the API server; log:\n{}",
                operator.log()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
        drop(operator);
        let restore =
            serde_json::json!([{"op": "replace", "path": "/rules", "value": rules}]).to_string();
        plane.kubectl_ok(&["patch", "clusterrole", SA, "--type=json", "-p", &restore]);
        for model in [format!("lp-{tag}"), format!("srv-{tag}")] {
            plane.kubectl_ok(&["delete", "model", &model, "-n", "ml", "--wait=false"]);
        }
    }
    eprintln!(
        "every_verb_of_the_charts_cluster_role_is_used_and_needed: {} verbs in {:?}",
        verbs.len(),
        began.elapsed()
    );
}

/// The runner as the only node of a real control plane (kubelet-only mode):
/// the real Job and Deployment/ReplicaSet controllers make the pods, the
/// real scheduler binds them to the runner's Node, the runner runs them as
/// local processes and reports their status, and the real controllers see
/// the Job complete and the Deployment roll out.
#[tokio::test(flavor = "multi_thread")]
async fn the_runner_is_a_real_clusters_node_and_runs_what_the_real_controllers_make() {
    let Some(plane) = RealControlPlane::start_or_skip(
        "the_runner_is_a_real_clusters_node_and_runs_what_the_real_controllers_make",
    ) else {
        return;
    };
    let kubeconfig = kube::config::Kubeconfig::read_from(&plane.kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let node = driftline::cluster::NodeConfig {
        state_dir: plane.dir.path().join("node"),
        driftline_exe: env!("CARGO_BIN_EXE_driftline").into(),
        restart_backoff: Duration::from_millis(200),
        kubelet_only: true,
        ..Default::default()
    };
    let runner = driftline::cluster::Runner::start(client, node)
        .await
        .expect("the runner registers its Node");
    let plane = std::sync::Arc::new(plane);
    let p = plane.clone();
    tokio::task::spawn_blocking(move || {
        p.kubectl_ok(&[
            "wait",
            "--for=condition=Ready",
            "node/driftline-node",
            "--timeout=60s",
        ]);
        // No token volumes here (the runner projects them when it knows the
        // API server URL for pods: see the operator scenarios on a real control plane).
        let manifests = r#"
apiVersion: batch/v1
kind: Job
metadata: {name: hello, namespace: default}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      automountServiceAccountToken: false
      containers:
      - {name: hello, image: busybox, command: [sh, -c, "echo hello from the runner"]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: sleeper, namespace: default}
spec:
  replicas: 2
  selector: {matchLabels: {app: sleeper}}
  template:
    metadata: {labels: {app: sleeper}}
    spec:
      automountServiceAccountToken: false
      terminationGracePeriodSeconds: 1
      containers:
      - {name: sleeper, image: busybox, command: [sleep, "600"]}
"#;
        let file = p.dir.path().join("workloads.yaml");
        std::fs::write(&file, manifests).unwrap();
        p.kubectl_ok(&["apply", "-f", file.to_str().unwrap()]);
        let (ok, out) = p.kubectl(&[
            "wait",
            "--for=condition=Complete",
            "job/hello",
            "--timeout=120s",
        ]);
        assert!(
            ok,
            "the Job did not complete: {out}\n{}",
            p.kubectl(&["get", "pods", "-o", "wide", "-A"]).1
        );
        let bound = p.kubectl_ok(&[
            "get",
            "pods",
            "-l",
            "job-name=hello",
            "-o",
            "jsonpath={.items[0].spec.nodeName}",
        ]);
        assert_eq!(
            bound.trim(),
            "driftline-node",
            "bound by the real scheduler"
        );
        let (ok, out) = p.kubectl(&["rollout", "status", "deployment/sleeper", "--timeout=120s"]);
        assert!(
            ok && out.contains("successfully rolled out"),
            "{out}\n{}",
            p.kubectl(&["get", "pods", "-o", "wide", "-A"]).1
        );
        // The node's heartbeat is its Lease.
        let holder = p.kubectl_ok(&[
            "get",
            "lease",
            "driftline-node",
            "-n",
            "kube-node-lease",
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ]);
        assert_eq!(holder.trim(), "driftline-node");
        // Scaling down stops a process; the real ReplicaSet controller deletes the pod.
        p.kubectl_ok(&["scale", "deployment", "sleeper", "--replicas=1"]);
        let (ok, out) = p.kubectl(&["rollout", "status", "deployment/sleeper", "--timeout=60s"]);
        assert!(ok, "{out}");
    })
    .await
    .unwrap();
    runner.shutdown().await;
}
