//! Differential conformance: the same kubectl and kube-rs scenarios against the embedded
//! API server and a real one (kube-apiserver 1.34 on etcd, from tools/k8s),
//! comparing what users read: success or failure, and the text kubectl
//! prints (which carries the status code's reason and the server's message).
//!
//! Differences that remain are listed in [`KNOWN`], each with why (and in
//! CONTRIBUTING.md). A new difference fails the test, and so does a listed one
//! that is gone (then remove it from the list).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use std::net::Ipv4Addr;
use std::time::Duration;

use driftline::cluster::NodeConfig;
use driftline::cluster::{ClusterConfig, EmbeddedCluster};
use k8s_openapi::api::core::v1::ConfigMap;

use super::real_control_plane::RealControlPlane;

/// Scenario steps: kubectl arguments, and an optional manifest on stdin.
const STEPS: &[(&[&str], Option<&str>)] = &[
    (&["create", "namespace", "diff"], None),
    (
        &[
            "create",
            "configmap",
            "cm",
            "--from-literal=a=b",
            "-n",
            "diff",
        ],
        None,
    ),
    (
        &[
            "create",
            "configmap",
            "cm",
            "--from-literal=a=b",
            "-n",
            "diff",
        ],
        None,
    ),
    (&["get", "configmap", "nope", "-n", "diff"], None),
    (
        &[
            "get",
            "configmap",
            "cm",
            "-n",
            "diff",
            "-o",
            "jsonpath={.data.a}",
        ],
        None,
    ),
    (
        &[
            "create",
            "secret",
            "generic",
            "s",
            "--from-literal=k=v",
            "-n",
            "diff",
        ],
        None,
    ),
    (
        &[
            "get",
            "secret",
            "s",
            "-n",
            "diff",
            "-o",
            "jsonpath={.data.k}",
        ],
        None,
    ),
    (
        &["get", "secret", "s", "-n", "diff", "-o", "jsonpath={.type}"],
        None,
    ),
    (
        &[
            "create",
            "deployment",
            "web",
            "--image=x",
            "--replicas=2",
            "-n",
            "diff",
        ],
        None,
    ),
    (
        &["scale", "deployment", "web", "--replicas=3", "-n", "diff"],
        None,
    ),
    (
        &[
            "get",
            "deployment",
            "web",
            "-n",
            "diff",
            "-o",
            "jsonpath={.spec.replicas}",
        ],
        None,
    ),
    (
        &[
            "scale",
            "deployment",
            "web",
            "--current-replicas=1",
            "--replicas=2",
            "-n",
            "diff",
        ],
        None,
    ),
    (
        &["scale", "deployment", "nope", "--replicas=2", "-n", "diff"],
        None,
    ),
    (
        &["rollout", "restart", "deployment", "web", "-n", "diff"],
        None,
    ),
    (
        &[
            "create",
            "job",
            "once",
            "--image=x",
            "-n",
            "diff",
            "--",
            "echo",
            "hi",
        ],
        None,
    ),
    (
        &[
            "get",
            "job",
            "once",
            "-n",
            "diff",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].command}",
        ],
        None,
    ),
    (
        &["apply", "--validate=strict", "-n", "diff", "-f", "-"],
        Some("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: strict}\nspec: {}\ndata: {a: b}\n"),
    ),
    (
        &[
            "apply",
            "--server-side",
            "--field-manager=one",
            "-n",
            "diff",
            "-f",
            "-",
        ],
        Some("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: owned}\ndata: {a: b}\n"),
    ),
    (
        &[
            "apply",
            "--server-side",
            "--field-manager=two",
            "-n",
            "diff",
            "-f",
            "-",
        ],
        Some("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: owned}\ndata: {a: c}\n"),
    ),
    (
        &[
            "patch",
            "configmap",
            "cm",
            "-n",
            "diff",
            "--type=merge",
            "-p",
            r#"{"data":{"x":"y"}}"#,
        ],
        None,
    ),
    (
        &[
            "patch",
            "configmap",
            "cm",
            "-n",
            "diff",
            "--type=json",
            "-p",
            r#"[{"op":"remove","path":"/data/missing"}]"#,
        ],
        None,
    ),
    (
        &[
            "patch",
            "configmap",
            "cm",
            "-n",
            "diff",
            "--type=strategic",
            "-p",
            r#"{"data":{"z":"1"}}"#,
        ],
        None,
    ),
    (
        &[
            "get",
            "configmap",
            "cm",
            "-n",
            "diff",
            "-o",
            "jsonpath={.data}",
        ],
        None,
    ),
    (&["create", "configmap", "Bad_Name", "-n", "diff"], None),
    (
        &[
            "get",
            "configmaps",
            "-n",
            "diff",
            "--field-selector=data.a=b",
        ],
        None,
    ),
    (&["delete", "configmap", "cm", "-n", "diff"], None),
    (&["delete", "configmap", "cm", "-n", "diff"], None),
    (&["get", "widgets"], None),
    // 28: rollout of a Deployment the controllers can finish without a node.
    (
        &[
            "create",
            "deployment",
            "zero",
            "--image=x",
            "--replicas=0",
            "-n",
            "diff",
        ],
        None,
    ),
    (
        &[
            "rollout",
            "status",
            "deployment",
            "zero",
            "-n",
            "diff",
            "--timeout=60s",
        ],
        None,
    ),
    (
        &["rollout", "restart", "deployment", "zero", "-n", "diff"],
        None,
    ),
    (
        &[
            "rollout",
            "status",
            "deployment",
            "zero",
            "-n",
            "diff",
            "--timeout=60s",
        ],
        None,
    ),
    // 32: a watch from an old version the server still keeps (etcd has not
    // compacted it) is served, not refused.
    (
        &[
            "get",
            "--raw",
            "/api/v1/namespaces/diff/configmaps?watch=true&resourceVersion=1&timeoutSeconds=1\
             &fieldSelector=metadata.name=nope",
        ],
        None,
    ),
    // 33: driftline's own CRDs: schema and CEL errors, printer columns.
    (&["apply", "-f", CRDS], None),
    (
        &[
            "wait",
            "--for=condition=established",
            "crd/models.driftline.dev",
            "crd/modelversions.driftline.dev",
            "--timeout=30s",
        ],
        None,
    ),
    (&["apply", "-n", "diff", "-f", "-"], Some(GOOD_MODEL)),
    (
        &["apply", "-n", "diff", "-f", "-"],
        Some(
            "apiVersion: driftline.dev/v1alpha1\nkind: Model\nmetadata: {name: bad}\n\
             spec: {task: classification, data: {source: s3://b/t.csv, target: label},\n\
             architecture: {type: mlp, hiddenLayers: [0], dropout: 1.5},\n\
             retrain: {schedule: 'not cron'}}\n",
        ),
    ),
    (
        &["apply", "-n", "diff", "-f", "-"],
        Some(
            "apiVersion: driftline.dev/v1alpha1\nkind: Model\nmetadata: {name: bad}\n\
             spec: {task: 5, data: {source: s3://b/t.csv}}\n",
        ),
    ),
    (
        &["apply", "--validate=strict", "-n", "diff", "-f", "-"],
        Some(
            "apiVersion: driftline.dev/v1alpha1\nkind: Model\nmetadata: {name: bad}\n\
             spec: {task: classification, bogus: 1, data: {source: s3://b/t.csv, target: label}}\n",
        ),
    ),
    (
        &["apply", "-n", "diff", "-f", "-"],
        Some(
            "apiVersion: driftline.dev/v1alpha1\nkind: Model\nmetadata: {name: bad}\n\
             spec: {task: classification, data: {source: s3://b/t.csv, target: label},\n\
             retrain: {timeZone: Europe/London}}\n",
        ),
    ),
    (
        &[
            "patch",
            "model",
            "good",
            "-n",
            "diff",
            "--type=merge",
            "-p",
            r#"{"spec":{"architecture":{"dropout":2}}}"#,
        ],
        None,
    ),
    (
        &[
            "patch",
            "model",
            "good",
            "-n",
            "diff",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"phase":"Training","champion":"v1"}}"#,
        ],
        None,
    ),
    (&["get", "models", "-n", "diff"], None),
    (&["get", "models", "-n", "diff", "-o", "wide"], None),
    (&["apply", "-n", "diff", "-f", "-"], Some(GOOD_VERSION)),
    (&["get", "modelversions", "-n", "diff"], None),
    (
        &[
            "patch",
            "modelversion",
            "good-v1",
            "-n",
            "diff",
            "--type=merge",
            "-p",
            r#"{"spec":{"version":2}}"#,
        ],
        None,
    ),
    // 47: finalizers hold a deleted object until the last one is removed.
    (
        &["apply", "-n", "diff", "-f", "-"],
        Some(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: held, finalizers: [diff.test/hold]}\n",
        ),
    ),
    (
        &["delete", "configmap", "held", "-n", "diff", "--wait=false"],
        None,
    ),
    (
        &[
            "get",
            "configmap",
            "held",
            "-n",
            "diff",
            "-o",
            "jsonpath={.metadata.finalizers} {.metadata.deletionGracePeriodSeconds}",
        ],
        None,
    ),
    (
        &[
            "patch",
            "configmap",
            "held",
            "-n",
            "diff",
            "--type=merge",
            "-p",
            r#"{"metadata":{"finalizers":["diff.test/hold","diff.test/more"]}}"#,
        ],
        None,
    ),
    (
        &[
            "patch",
            "configmap",
            "held",
            "-n",
            "diff",
            "--type=json",
            "-p",
            r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
        ],
        None,
    ),
    (&["get", "configmap", "held", "-n", "diff"], None),
    // 53: garbage collection of dependents, by propagation policy.
    (&["apply", "-n", "diff", "-f", "-"], Some(OWNERS)),
    (
        &[
            "get",
            "configmap",
            "owner-bg",
            "-n",
            "diff",
            "-o",
            "jsonpath={.metadata.uid}",
        ],
        None,
    ),
    (
        &[
            "get",
            "configmap",
            "owner-fg",
            "-n",
            "diff",
            "-o",
            "jsonpath={.metadata.uid}",
        ],
        None,
    ),
    (
        &[
            "get",
            "configmap",
            "owner-orphan",
            "-n",
            "diff",
            "-o",
            "jsonpath={.metadata.uid}",
        ],
        None,
    ),
    (&["apply", "-n", "diff", "-f", "-"], Some(DEPENDENTS)),
    (&["delete", "configmap", "owner-bg", "-n", "diff"], None),
    (&["get", "configmap", "dep-bg", "-n", "diff"], None),
    (
        &[
            "delete",
            "configmap",
            "owner-orphan",
            "-n",
            "diff",
            "--cascade=orphan",
        ],
        None,
    ),
    (
        &[
            "get",
            "configmap",
            "dep-orphan",
            "-n",
            "diff",
            "-o",
            "jsonpath={.metadata.name} {.metadata.ownerReferences}",
        ],
        None,
    ),
    (
        &[
            "delete",
            "configmap",
            "owner-fg",
            "-n",
            "diff",
            "--cascade=foreground",
            "--wait=false",
        ],
        None,
    ),
    (
        &[
            "get",
            "configmap",
            "owner-fg",
            "-n",
            "diff",
            "-o",
            "jsonpath={.metadata.finalizers}",
        ],
        None,
    ),
    (
        &[
            "get",
            "configmap",
            "dep-fg",
            "-n",
            "diff",
            "-o",
            "jsonpath={.metadata.finalizers} {.metadata.deletionGracePeriodSeconds}",
        ],
        None,
    ),
    (
        &[
            "patch",
            "configmap",
            "dep-fg",
            "-n",
            "diff",
            "--type=json",
            "-p",
            r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
        ],
        None,
    ),
    (&["get", "configmap", "owner-fg", "-n", "diff"], None),
    // Papercuts found by a new user: each answers as kube-apiserver does.
    (&["auth", "can-i", "list", "pods", "-n", "diff"], None),
    (&["explain", "deployment.spec.replicas"], None),
    (&["explain", "configmap.data"], None),
    // 70: the revisions of the Deployment rolled at step 30, and an undo.
    (
        &["rollout", "history", "deployment", "zero", "-n", "diff"],
        None,
    ),
    (
        &["rollout", "undo", "deployment", "zero", "-n", "diff"],
        None,
    ),
    (
        &["rollout", "history", "deployment", "zero", "-n", "diff"],
        None,
    ),
    (
        &[
            "get",
            "deployment",
            "zero",
            "-n",
            "diff",
            "-o",
            r"jsonpath={.metadata.annotations.deployment\.kubernetes\.io/revision}",
        ],
        None,
    ),
];

/// driftline's generated CRDs.
const CRDS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/crds");

const GOOD_MODEL: &str = "apiVersion: driftline.dev/v1alpha1\nkind: Model\n\
    metadata: {name: good}\nspec: {task: classification, data: {source: s3://b/t.csv, target: label}}\n";

const GOOD_VERSION: &str = "apiVersion: driftline.dev/v1alpha1\nkind: ModelVersion\n\
    metadata: {name: good-v1}\nspec: {model: good, version: 1, lineage: {configHash: abc, \
    driftlineVersion: '0.1.0', reason: first, seed: 7, trigger: Initial}}\n";

const OWNERS: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: owner-bg}\n---\n\
    apiVersion: v1\nkind: ConfigMap\nmetadata: {name: owner-fg}\n---\n\
    apiVersion: v1\nkind: ConfigMap\nmetadata: {name: owner-orphan}\n";

/// One dependent per owner; `{owner-…}` is the owner's uid on each server
/// (see [`CAPTURES`]). The foreground one holds its owner with a finalizer.
const DEPENDENTS: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: dep-bg, ownerReferences: \
    [{apiVersion: v1, kind: ConfigMap, name: owner-bg, uid: '{owner-bg}'}]}\n---\n\
    apiVersion: v1\nkind: ConfigMap\nmetadata: {name: dep-fg, finalizers: [diff.test/hold], ownerReferences: \
    [{apiVersion: v1, kind: ConfigMap, name: owner-fg, uid: '{owner-fg}', blockOwnerDeletion: true}]}\n---\n\
    apiVersion: v1\nkind: ConfigMap\nmetadata: {name: dep-orphan, ownerReferences: \
    [{apiVersion: v1, kind: ConfigMap, name: owner-orphan, uid: '{owner-orphan}'}]}\n";

/// Steps whose output is a value later steps use as `{name}` (it differs
/// between the servers, so only success is compared).
const CAPTURES: &[(usize, &str)] = &[(54, "owner-bg"), (55, "owner-fg"), (56, "owner-orphan")];

/// Steps answered by an asynchronous controller on the real cluster (garbage
/// collection, the Deployment controller's revisions): retried on both servers until they agree or 30 s pass.
const SETTLE: &[usize] = &[59, 61, 63, 64, 66, 72, 73];

/// Differences that remain, by step index, with why.
const KNOWN: &[(usize, &str)] = &[(
    20,
    "a JSON patch that fails says which operation and path; the real server only \
         says the request was invalid",
)];

/// What differs between any two runs and says nothing about the server:
/// ages in tables, and the oldest version a server still keeps.
fn normalise(text: &str) -> String {
    static AGE: std::sync::LazyLock<regex::Regex> =
        std::sync::LazyLock::new(|| regex::Regex::new(r"\b\d+(ms|s|m)\b").unwrap());
    static OLDEST: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"too old resource version: (\d+) \(\d+\)").unwrap()
    });
    let text = AGE.replace_all(text, "<age>");
    let text = OLDEST.replace_all(&text, "too old resource version: $1 (<oldest>)");
    // JSON lines (a raw watch) compare as values, whatever the key order.
    let mut lines: Vec<String> = text
        .lines()
        .map(|l| match serde_json::from_str::<serde_json::Value>(l) {
            Ok(v) if v.is_object() => v.to_string(),
            _ => l.to_string(),
        })
        .collect();
    // The field errors of one Invalid answer (`* path: message` lines) come
    // in no stable order from the real server (its schema validator walks Go
    // maps), so each run of them compares as a set.
    let mut start = 0;
    while start < lines.len() {
        let end = (start..lines.len())
            .find(|&i| !lines[i].starts_with("* "))
            .unwrap_or(lines.len());
        if end > start {
            lines[start..end].sort();
            start = end;
        } else {
            start += 1;
        }
    }
    lines.join("\n")
}

fn kubectl(kubeconfig: &Path, args: &[String], stdin: Option<&str>) -> (bool, String) {
    use std::io::Write;
    let mut child = Command::new("kubectl")
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.unwrap_or("").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text.trim().to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_answers_like_the_real_api_server() {
    let Some(plane) = RealControlPlane::start_or_skip("kubectl_answers_like_the_real_api_server")
    else {
        return;
    };
    let found = crate::require_tool::kubectl();
    if crate::require_tool::require_tool("kubectl_answers_like_the_real_api_server", found)
        .is_none()
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // A node, as the real control plane has its controllers: the runner is
    // the embedded cluster's Deployment and Job controller.
    let node = NodeConfig {
        state_dir: dir.path().join("node"),
        driftline_exe: env!("CARGO_BIN_EXE_driftline").into(),
        pod_ip_base: Ipv4Addr::new(127, 175, 0, 0),
        restart_backoff: Duration::from_millis(100),
        job_backoff: Duration::from_millis(100),
        ..NodeConfig::default()
    };
    let embedded =
        EmbeddedCluster::start(ClusterConfig::new(dir.path().join("state")).with_node(node))
            .await
            .unwrap();
    let ours = embedded.kubeconfig_path().to_path_buf();
    let theirs = plane.kubeconfig.clone();
    let mut differences = Vec::new();
    let mut report = String::new();
    // Captured values per server: (embedded, real).
    let mut vars: Vec<(&str, String, String)> = Vec::new();
    for (i, (args, stdin)) in STEPS.iter().enumerate() {
        let fill = |text: &str, real: bool| {
            vars.iter()
                .fold(text.to_string(), |t, (name, ours, theirs)| {
                    t.replace(&format!("{{{name}}}"), if real { theirs } else { ours })
                })
        };
        let ours_step: (Vec<String>, Option<String>) = (
            args.iter().map(|a| fill(a, false)).collect(),
            stdin.map(|s| fill(s, false)),
        );
        let theirs_step = (
            args.iter().map(|a| fill(a, true)).collect::<Vec<_>>(),
            stdin.map(|s| fill(s, true)),
        );
        let settle = SETTLE.contains(&i);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let (a, b) = loop {
            let (a, b) = tokio::task::spawn_blocking({
                let (ours, theirs) = (ours.clone(), theirs.clone());
                let (ours_step, theirs_step) = (ours_step.clone(), theirs_step.clone());
                move || {
                    (
                        kubectl(&ours, &ours_step.0, ours_step.1.as_deref()),
                        kubectl(&theirs, &theirs_step.0, theirs_step.1.as_deref()),
                    )
                }
            })
            .await
            .unwrap();
            let (a, b) = ((a.0, normalise(&a.1)), (b.0, normalise(&b.1)));
            if !settle || a == b || std::time::Instant::now() > deadline {
                break (a, b);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        let capture = CAPTURES.iter().find(|(c, _)| *c == i);
        if let Some((_, name)) = capture {
            assert!(a.0 && b.0, "step {i} captures `{name}`: {} / {}", a.1, b.1);
            vars.push((name, a.1.clone(), b.1.clone()));
        }
        if capture.is_none() && a != b {
            differences.push(i);
            report.push_str(&format!(
                "step {i} kubectl {}:\n  embedded ({}): {}\n  real     ({}): {}\n",
                args.join(" "),
                if a.0 { "ok" } else { "failed" },
                a.1,
                if b.0 { "ok" } else { "failed" },
                b.1
            ));
        }
    }
    eprintln!("{report}");
    let known: Vec<usize> = KNOWN.iter().map(|(i, _)| *i).collect();
    assert_eq!(
        differences, known,
        "differences from the real API server:\n{report}"
    );
    embedded.shutdown().await;
}

/// Differences that remain in [`kube_rs_scenario`], by answer index, with why.
const KNOWN_KUBE_RS: &[(usize, &str)] = &[];

/// What a kube-rs call answered, as users of kube read it.
fn answer<T>(what: &str, result: Result<T, kube::Error>, ok: impl FnOnce(T) -> String) -> String {
    match result {
        Ok(v) => format!("{what}: ok {}", ok(v)),
        Err(kube::Error::Api(s)) => {
            format!("{what}: {} {}: {}", s.code, s.reason, normalise(&s.message))
        }
        Err(e) => format!("{what}: error {e}"),
    }
}

/// The kube-rs calls the operator makes, in one scenario: server-side apply
/// with and without force, the status subresource of driftline's own CRD,
/// and a watch resumed from a resourceVersion and from a too-old one.
async fn kube_rs_scenario(client: kube::Client) -> Vec<String> {
    use driftline::api::Model;
    use k8s_openapi::api::core::v1::Namespace;
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchParams};
    use serde_json::json;

    let mut out = Vec::new();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "kube-diff"}})).unwrap();
    out.push(answer(
        "create namespace",
        namespaces.create(&PostParams::default(), &ns).await,
        |_| String::new(),
    ));
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "kube-diff");
    let data = |v: &str| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owned"}, "data": {"a": v}});
    let managers = |cm: ConfigMap| {
        let mut m: Vec<String> = cm
            .metadata
            .managed_fields
            .unwrap_or_default()
            .into_iter()
            .map(|f| {
                format!(
                    "{}/{}",
                    f.manager.unwrap_or_default(),
                    f.operation.unwrap_or_default()
                )
            })
            .collect();
        m.sort();
        format!("data={:?} managers={m:?}", cm.data.unwrap_or_default())
    };
    out.push(answer(
        "apply as one",
        cms.patch(
            "owned",
            &PatchParams::apply("one"),
            &Patch::Apply(data("b")),
        )
        .await,
        managers,
    ));
    out.push(answer(
        "apply as two",
        cms.patch(
            "owned",
            &PatchParams::apply("two"),
            &Patch::Apply(data("c")),
        )
        .await,
        managers,
    ));
    out.push(answer(
        "apply as two, forced",
        cms.patch(
            "owned",
            &PatchParams::apply("two").force(),
            &Patch::Apply(data("c")),
        )
        .await,
        managers,
    ));

    // The status subresource of a Model.
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for file in [
        "models.driftline.dev.yaml",
        "modelversions.driftline.dev.yaml",
    ] {
        let crd: CustomResourceDefinition =
            serde_yaml::from_str(&std::fs::read_to_string(format!("{CRDS}/{file}")).unwrap())
                .unwrap();
        out.push(answer(
            &format!("create crd {file}"),
            crds.create(&PostParams::default(), &crd).await,
            |_| String::new(),
        ));
    }
    let established = |c: &CustomResourceDefinition| {
        c.status.as_ref().is_some_and(|s| {
            s.conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "Established" && c.status == "True")
        })
    };
    for _ in 0..100 {
        match crds.get("models.driftline.dev").await {
            Ok(c) if established(&c) => break,
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    // Discovery of a new CRD lags behind Established on a real server.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let models: Api<Model> = Api::namespaced(client.clone(), "kube-diff");
    let model: Model = serde_yaml::from_str(GOOD_MODEL).unwrap();
    let shown = |m: Model| {
        format!(
            "generation={:?} phase={:?} champion={:?} target={}",
            m.metadata.generation,
            m.status.as_ref().map(|s| format!("{:?}", s.phase)),
            m.status.as_ref().and_then(|s| s.champion.clone()),
            m.spec.data.target,
        )
    };
    out.push(answer(
        "create model",
        models.create(&PostParams::default(), &model).await,
        shown,
    ));
    out.push(answer(
        "patch status",
        models
            .patch_status(
                "good",
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"phase": "Training", "champion": "v1"}, "spec": {"data": {"target": "ignored"}}})),
            )
            .await,
        shown,
    ));
    out.push(answer(
        "patch object with status",
        models
            .patch(
                "good",
                &PatchParams::default(),
                &Patch::Merge(
                    json!({"status": {"phase": "Failed"}, "spec": {"data": {"target": "z"}}}),
                ),
            )
            .await,
        shown,
    ));
    out.push(answer(
        "patch status to a phase not in the enum",
        models
            .patch_status(
                "good",
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"phase": "Sleeping"}})),
            )
            .await,
        shown,
    ));

    // A watch resumed from a list's resourceVersion sees every change after it.
    let listed = cms
        .list(&ListParams::default().labels("diff=watch"))
        .await
        .unwrap();
    let rv = listed.metadata.resource_version.unwrap_or_default();
    let w: ConfigMap = serde_json::from_value(
        json!({"metadata": {"name": "w1", "labels": {"diff": "watch"}}, "data": {"n": "1"}}),
    )
    .unwrap();
    cms.create(&PostParams::default(), &w).await.unwrap();
    cms.patch(
        "w1",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"n": "2"}})),
    )
    .await
    .unwrap();
    cms.delete("w1", &Default::default()).await.unwrap();
    let params = WatchParams::default().labels("diff=watch").timeout(2);
    out.push(format!(
        "watch from the list: {:?}",
        watch_events(cms.watch(&params, &rv).await).await
    ));
    out.push(format!(
        "watch from version 1: {:?}",
        watch_events(cms.watch(&params, "1").await).await
    ));
    out
}

/// A watch's events until the server ends it, as (type, data) lines.
async fn watch_events(
    stream: Result<
        impl futures::Stream<Item = Result<kube::api::WatchEvent<ConfigMap>, kube::Error>>,
        kube::Error,
    >,
) -> Vec<String> {
    use futures::StreamExt;
    use kube::api::WatchEvent;
    let stream = match stream {
        Ok(s) => s,
        Err(e) => return vec![answer("watch", Err::<(), _>(e), |_| String::new())],
    };
    stream
        // Bookmarks are progress hints, sent when the server likes.
        .filter(|e| futures::future::ready(!matches!(e, Ok(WatchEvent::Bookmark(_)))))
        .map(|e| match e {
            Ok(WatchEvent::Added(c)) => format!("ADDED {:?}", c.data),
            Ok(WatchEvent::Modified(c)) => format!("MODIFIED {:?}", c.data),
            Ok(WatchEvent::Deleted(c)) => format!("DELETED {:?}", c.metadata.name),
            Ok(WatchEvent::Bookmark(_)) => unreachable!("filtered out"),
            Ok(WatchEvent::Error(s)) => {
                format!("ERROR {} {}: {}", s.code, s.reason, normalise(&s.message))
            }
            Err(e) => format!("error {e}"),
        })
        .collect()
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn kube_rs_answers_like_the_real_api_server() {
    let Some(plane) = RealControlPlane::start_or_skip("kube_rs_answers_like_the_real_api_server")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let embedded = EmbeddedCluster::start(ClusterConfig::new(dir.path().join("state")))
        .await
        .unwrap();
    let client_for = |path: PathBuf| async move {
        let kubeconfig = kube::config::Kubeconfig::read_from(path).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .unwrap();
        kube::Client::try_from(config).unwrap()
    };
    let (ours, theirs) = tokio::join!(
        kube_rs_scenario(client_for(embedded.kubeconfig_path().to_path_buf()).await),
        kube_rs_scenario(client_for(plane.kubeconfig.clone()).await),
    );
    let mut differences = Vec::new();
    let mut report = String::new();
    for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
        if a != b {
            differences.push(i);
            report.push_str(&format!("answer {i}:\n  embedded: {a}\n  real:     {b}\n"));
        }
    }
    eprintln!("{report}");
    assert_eq!(ours.len(), theirs.len(), "{ours:#?}\n{theirs:#?}");
    let known: Vec<usize> = KNOWN_KUBE_RS.iter().map(|(i, _)| *i).collect();
    assert_eq!(
        differences, known,
        "differences from the real API server:\n{report}"
    );
    embedded.shutdown().await;
}

#[test]
fn field_errors_of_one_answer_compare_as_a_set_and_other_lines_keep_their_order() {
    let a = "The Model \"bad\" is invalid: \n* spec.b: Required value\n* spec.a: Invalid value\nnext\nfirst";
    let b = "The Model \"bad\" is invalid: \n* spec.a: Invalid value\n* spec.b: Required value\nnext\nfirst";
    assert_eq!(normalise(a), normalise(b));
    assert_ne!(normalise("x\ny"), normalise("y\nx"));
}
