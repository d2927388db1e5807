//! The Helm chart and the operator on a real control plane (etcd,
//! kube-apiserver with RBAC and ServiceAccount tokens, controller-manager,
//! scheduler; see [`super::real_control_plane`]).
//!
//! There is no node yet (the runner's kubelet-only mode is not built), so the
//! operator runs beside the control plane as a local process that
//! authenticates with a token of the chart's own ServiceAccount: exactly the
//! rights its pod would have. What is proven here:
//! - `helm install` installs the chart (CRDs included); the real
//!   Deployment/ReplicaSet controllers make the operator's pod and the real
//!   scheduler finds it unschedulable (no node);
//! - under the chart's RBAC the operator syncs its caches, reconciles a
//!   Model, writes its status, records Events, creates the ModelVersion and
//!   the training Job, and the real Job controller makes the training pod;
//! - least privilege: with any one rule of the chart's ClusterRole removed, a
//!   named step of the operator is refused by the real authorizer.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::k8s_tools::tools_or_skip;
use super::real_control_plane::RealControlPlane;

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
        let log = plane.dir.path().join(format!("operator-{tag}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_driftline"))
            .args(["operator", "--metrics-addr=127.0.0.1:0"])
            .arg(format!("--artifact-root={}", artifacts.display()))
            .arg("--gateway-service-account=driftline-gateway")
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

fn install(plane: &RealControlPlane, helm: &Path, artifacts: &Path) {
    plane.kubectl_ok(&["create", "namespace", "ml"]);
    install_crds(plane);
    let out = Command::new(helm)
        .args([
            "install",
            "ops",
            CHART,
            "--namespace",
            RELEASE_NS,
            "--create-namespace",
            "--skip-crds",
        ])
        .arg(format!("--kubeconfig={}", plane.kubeconfig.display()))
        .arg(format!("--set=artifacts.root={}", artifacts.display()))
        .args(["--set=registry.type=none", "--set=gateway.namespaces={ml}"])
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
    wait_until(
        Duration::from_secs(120),
        "the training Job's pod, made by the real Job controller",
        || {
            let (ok, out) = plane.kubectl(&[
                "get",
                "pods",
                "-n",
                "ml",
                "-l",
                "job-name=wine-quality-train-1",
                "-o",
                "name",
            ]);
            (ok && !out.trim().is_empty()).then_some(out)
        },
    );
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
    assert!(!operator.log().contains("forbidden"), "{}", operator.log());
}

/// Each rule of the chart's ClusterRole, and the refusal that shows the
/// operator needs it: the first call it makes with that rule's rights.
const RULE_NEEDED_BY: [(&str, &str); 9] = [
    ("models", r#"cannot list resource "models""#),
    ("models/status", r#"cannot patch resource "models/status""#),
    ("modelversions", r#"cannot list resource "modelversions""#),
    (
        "modelversions/status",
        r#"cannot patch resource "modelversions/status""#,
    ),
    ("jobs", r#"cannot list resource "jobs""#),
    ("deployments", r#"cannot list resource "deployments""#),
    ("services", r#"cannot list resource "services""#),
    ("pods", r#"cannot list resource "pods""#),
    ("events", r#"cannot create resource "events""#),
];

#[test]
fn every_rule_of_the_charts_cluster_role_is_needed() {
    let Some((plane, helm)) = plane_and_helm("every_rule_of_the_charts_cluster_role_is_needed")
    else {
        return;
    };
    let artifacts = plane.dir.path().join("artifacts");
    install(&plane, &helm, &artifacts);
    let full = plane.kubectl_ok(&["get", "clusterrole", SA, "-o", "json"]);
    let full: serde_json::Value = serde_json::from_str(&full).unwrap();
    let rules = full["rules"].as_array().unwrap().clone();
    assert_eq!(
        rules.len(),
        RULE_NEEDED_BY.len(),
        "a refusal for every rule: {rules:?}"
    );
    for (i, (resource, refusal)) in RULE_NEEDED_BY.iter().enumerate() {
        assert_eq!(rules[i]["resources"][0], *resource, "rule {i}");
        let mut fewer = rules.clone();
        fewer.remove(i);
        let patch =
            serde_json::json!([{"op": "replace", "path": "/rules", "value": fewer}]).to_string();
        plane.kubectl_ok(&["patch", "clusterrole", SA, "--type=json", "-p", &patch]);
        // A fresh Model each round, so that first-time steps (status,
        // ModelVersion, Job) happen again.
        let model = std::fs::read_to_string(MODEL)
            .unwrap()
            .replace("name: wine-quality,", &format!("name: lp-{i},"));
        let file = plane.dir.path().join(format!("model-{i}.yaml"));
        std::fs::write(&file, model).unwrap();
        plane.kubectl_ok(&["apply", "-f", file.to_str().unwrap()]);
        let operator = Operator::start(&plane, &artifacts, &format!("without-{i}"));
        let start = Instant::now();
        while !operator.log().contains(refusal) {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "without the rule for {resource}, expected '{refusal}' in the operator's log:\n{}",
                operator.log()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
        drop(operator);
        let restore =
            serde_json::json!([{"op": "replace", "path": "/rules", "value": rules}]).to_string();
        plane.kubectl_ok(&["patch", "clusterrole", SA, "--type=json", "-p", &restore]);
        plane.kubectl_ok(&[
            "delete",
            "model",
            &format!("lp-{i}"),
            "-n",
            "ml",
            "--wait=false",
        ]);
    }
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
    let node = driftline::cluster::runner::NodeConfig {
        state_dir: plane.dir.path().join("node"),
        driftline_exe: env!("CARGO_BIN_EXE_driftline").into(),
        restart_backoff: Duration::from_millis(200),
        kubelet_only: true,
        ..Default::default()
    };
    let runner = driftline::cluster::runner::Runner::start(client, node)
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
