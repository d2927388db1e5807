//! The installed kubectl against the embedded cluster: apply a CRD and a
//! custom object, get with printer columns, watch an update, describe, wait
//! for a condition, delete; the `kubectl create` commands that send built-in
//! kinds as protobuf; `kubectl scale`. Where kubectl is absent the tests skip
//! with a message, except under CI (`CI` set), where they fail: CI installs it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use driftline::cluster::{ClusterConfig, EmbeddedCluster};

const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.dev
spec:
  group: example.dev
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wd]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
      scale: {specReplicasPath: .spec.size, statusReplicasPath: .status.replicas}
    additionalPrinterColumns:
    - {name: Size, type: integer, jsonPath: .spec.size}
    - {name: Color, type: string, jsonPath: .spec.color}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer, minimum: 1}
              color: {type: string}
          status:
            type: object
            properties:
              replicas: {type: integer}
              conditions:
                type: array
                items:
                  type: object
                  x-kubernetes-preserve-unknown-fields: true
"#;

fn widget(size: u32) -> String {
    format!(
        "apiVersion: example.dev/v1\nkind: Widget\nmetadata:\n  name: gizmo\nspec:\n  size: {size}\n  color: teal\n"
    )
}

/// kubectl, or `None` (after saying so) where a developer has none; under CI
/// a missing kubectl fails the test.
fn kubectl_or_skip(test: &str) -> Option<PathBuf> {
    crate::require_tool::require_tool(test, crate::require_tool::kubectl())
}

struct Kubectl {
    bin: PathBuf,
    kubeconfig: PathBuf,
}

impl Kubectl {
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--kubeconfig").arg(&self.kubeconfig).args(args);
        cmd
    }

    /// Runs kubectl expecting failure; returns its stderr.
    async fn fail(&self, args: &[&str]) -> String {
        let out = tokio::process::Command::from(self.command(args))
            .output()
            .await
            .expect("kubectl runs");
        assert!(
            !out.status.success(),
            "kubectl {args:?} should have failed:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).to_string()
    }

    /// `kubectl get ... -o json`, parsed.
    async fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        let out = self.run(&all).await;
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("kubectl {all:?}: {e}\n{out}"))
    }

    /// Runs kubectl; panics with its output when it fails.
    async fn run(&self, args: &[&str]) -> String {
        let mut cmd = tokio::process::Command::from(self.command(args));
        let out = cmd.output().await.expect("kubectl runs");
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed:\n{stdout}\n{stderr}"
        );
        stdout
    }

    async fn apply(&self, dir: &Path, name: &str, yaml: &str) -> String {
        let file = dir.join(name);
        std::fs::write(&file, yaml).unwrap();
        self.run(&["apply", "-f", file.to_str().unwrap()]).await
    }
}

/// An embedded cluster with a node that runs pods as local processes, and
/// kubectl pointed at it (the directory holds its state).
async fn with_node(bin: PathBuf) -> (tempfile::TempDir, EmbeddedCluster, Kubectl) {
    let dir = tempfile::tempdir().unwrap();
    let node = driftline::cluster::NodeConfig {
        state_dir: dir.path().to_path_buf(),
        driftline_exe: env!("CARGO_BIN_EXE_driftline").into(),
        restart_backoff: Duration::from_millis(100),
        ..Default::default()
    };
    let cluster =
        EmbeddedCluster::start(ClusterConfig::new(dir.path().join("state")).with_node(node))
            .await
            .unwrap();
    let k = Kubectl {
        bin,
        kubeconfig: cluster.kubeconfig_path().to_path_buf(),
    };
    (dir, cluster, k)
}

/// The next line matching `pred`, within 20 s.
async fn wait_line(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    pred: impl Fn(&str) -> bool,
) -> Option<String> {
    let found = async {
        while let Some(line) = rx.recv().await {
            if pred(&line) {
                return Some(line);
            }
        }
        None
    };
    tokio::time::timeout(Duration::from_secs(20), found)
        .await
        .ok()
        .flatten()
}

#[tokio::test]
async fn kubectl_apply_get_watch_describe_wait_delete() {
    let Some(bin) = kubectl_or_skip("kubectl_apply_get_watch_describe_wait_delete") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cluster = EmbeddedCluster::start(ClusterConfig::new(dir.path().join("state")))
        .await
        .unwrap();
    let k = Kubectl {
        bin,
        kubeconfig: cluster.kubeconfig_path().to_path_buf(),
    };

    let out = k.apply(dir.path(), "crd.yaml", CRD).await;
    assert!(out.contains("widgets.example.dev created"), "{out}");
    k.run(&[
        "wait",
        "--for=condition=Established",
        "crd/widgets.example.dev",
        "--timeout=20s",
    ])
    .await;
    let out = k.apply(dir.path(), "widget.yaml", &widget(3)).await;
    assert!(out.contains("widget.example.dev/gizmo created"), "{out}");

    let table = k.run(&["get", "widgets"]).await;
    let mut lines = table.lines();
    let header = lines.next().unwrap_or_default();
    assert!(
        header.contains("NAME") && header.contains("SIZE") && header.contains("COLOR"),
        "{table}"
    );
    let row = lines.next().unwrap_or_default();
    assert!(
        row.contains("gizmo") && row.contains('3') && row.contains("teal"),
        "{table}"
    );

    // `get -w` prints the current row, then the update.
    let mut watch = k
        .command(&["get", "widgets", "-w"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = watch.stdout.take().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let current = wait_line(&mut rx, |l| l.contains("gizmo") && l.contains('3')).await;
    assert!(current.is_some(), "watch shows the current row");
    k.apply(dir.path(), "widget.yaml", &widget(7)).await;
    let updated = wait_line(&mut rx, |l| l.contains("gizmo") && l.contains('7')).await;
    assert!(updated.is_some(), "kubectl get -w saw the update");
    let _ = watch.kill();
    let _ = watch.wait();

    let described = k.run(&["describe", "widget", "gizmo"]).await;
    assert!(
        described.contains("Name:") && described.contains("gizmo") && described.contains("Size"),
        "{described}"
    );

    // The CRD's scale subresource maps `kubectl scale` onto spec.size, and the
    // schema still applies (minimum 1).
    let out = k.run(&["scale", "widget", "gizmo", "--replicas=4"]).await;
    assert!(out.contains("widget.example.dev/gizmo scaled"), "{out}");
    let size = k
        .run(&["get", "widget", "gizmo", "-o", "jsonpath={.spec.size}"])
        .await;
    assert_eq!(size.trim(), "4");
    let refused = k.fail(&["scale", "widget", "gizmo", "--replicas=0"]).await;
    assert!(refused.contains("spec.size"), "{refused}");

    // wait --for=condition=Ready returns once the status says so.
    let waiter = tokio::process::Command::from(k.command(&[
        "wait",
        "--for=condition=Ready",
        "widget/gizmo",
        "--timeout=30s",
    ]))
    .output();
    let status_patch = r#"{"status":{"conditions":[{"type":"Ready","status":"True","reason":"Built","message":"ok"}]}}"#;
    let patcher = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        k.run(&[
            "patch",
            "widget",
            "gizmo",
            "--subresource=status",
            "--type=merge",
            "-p",
            status_patch,
        ])
        .await
    };
    let (waited, _) = tokio::join!(waiter, patcher);
    let waited = waited.unwrap();
    assert!(
        waited.status.success(),
        "kubectl wait: {}",
        String::from_utf8_lossy(&waited.stderr)
    );
    assert!(String::from_utf8_lossy(&waited.stdout).contains("condition met"));

    let out = k.run(&["delete", "widget", "gizmo"]).await;
    assert!(out.contains("deleted"), "{out}");
    let none = tokio::process::Command::from(k.command(&["get", "widgets"]))
        .output()
        .await
        .unwrap();
    assert!(
        String::from_utf8_lossy(&none.stderr).contains("No resources found"),
        "{none:?}"
    );
    cluster.shutdown().await;
}

/// The writes that succeeded with a protobuf body, as `verb resource`.
fn protobuf_writes(cluster: &EmbeddedCluster) -> Vec<String> {
    cluster
        .faults()
        .requests()
        .into_iter()
        .filter(|r| r.request.content_type == "application/vnd.kubernetes.protobuf")
        .filter(|r| (200..300).contains(&r.status))
        .map(|r| format!("{} {}", r.request.verb, r.request.resource))
        .collect()
}

#[tokio::test]
async fn kubectl_create_sends_protobuf_for_builtin_kinds_and_scale_works() {
    let Some(bin) =
        kubectl_or_skip("kubectl_create_sends_protobuf_for_builtin_kinds_and_scale_works")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cluster = EmbeddedCluster::start(ClusterConfig::new(dir.path().join("state")))
        .await
        .unwrap();
    let k = Kubectl {
        bin,
        kubeconfig: cluster.kubeconfig_path().to_path_buf(),
    };

    let out = k.run(&["create", "namespace", "ml"]).await;
    assert!(out.contains("namespace/ml created"), "{out}");
    // No RBAC on the embedded cluster: `auth can-i` says yes, and why.
    let out = k.run(&["auth", "can-i", "list", "pods", "-n", "ml"]).await;
    assert_eq!(out, "yes\n");
    let out = k
        .run(&["auth", "can-i", "create", "models.driftline.dev", "-v", "6"])
        .await;
    assert_eq!(out, "yes\n");
    // Built-in kinds are described field by field, as on a real cluster.
    let out = k.run(&["explain", "deployment.spec.replicas"]).await;
    assert!(
        out.contains("FIELD: replicas <integer>") && out.contains("Number of desired pods"),
        "{out}"
    );
    let out = k
        .run(&["explain", "job.spec.template.spec.initContainers"])
        .await;
    assert!(out.contains("<[]Container>"), "{out}");
    let ns = k.json(&["get", "namespace", "ml"]).await;
    assert_eq!(ns["metadata"]["name"], "ml");

    let out = k
        .run(&[
            "create",
            "secret",
            "generic",
            "s",
            "--from-literal=k=v",
            "-n",
            "ml",
        ])
        .await;
    assert!(out.contains("secret/s created"), "{out}");
    let secret = k.json(&["get", "secret", "s", "-n", "ml"]).await;
    // base64("v"): the protobuf bytes field comes back as the JSON API writes it.
    assert_eq!(secret["data"]["k"], "dg==", "{secret}");

    k.run(&[
        "create",
        "configmap",
        "settings",
        "--from-literal=mode=fast",
        "--from-literal=level=3",
        "-n",
        "ml",
    ])
    .await;
    let cm = k.json(&["get", "configmap", "settings", "-n", "ml"]).await;
    assert_eq!(
        cm["data"],
        serde_json::json!({"mode": "fast", "level": "3"})
    );

    let out = k
        .run(&[
            "create",
            "deployment",
            "web",
            "--image=x",
            "--replicas=2",
            "-n",
            "ml",
        ])
        .await;
    assert!(out.contains("deployment.apps/web created"), "{out}");
    let web = k.json(&["get", "deployment", "web", "-n", "ml"]).await;
    assert_eq!(web["spec"]["replicas"], 2, "{web}");
    assert_eq!(
        web["spec"]["selector"]["matchLabels"]["app"], "web",
        "{web}"
    );
    assert_eq!(
        web["spec"]["template"]["spec"]["containers"][0]["image"], "x",
        "{web}"
    );

    k.run(&[
        "create",
        "job",
        "once",
        "--image=x",
        "-n",
        "ml",
        "--",
        "echo",
        "hi",
    ])
    .await;
    let job = k.json(&["get", "job", "once", "-n", "ml"]).await;
    assert_eq!(
        job["spec"]["template"]["spec"]["containers"][0]["command"],
        serde_json::json!(["echo", "hi"]),
        "{job}"
    );

    // These creates really travelled as protobuf: the request log saw them succeed.
    let writes = protobuf_writes(&cluster);
    for expected in [
        "create namespaces",
        "create secrets",
        "create configmaps",
        "create deployments",
        "create jobs",
    ] {
        assert!(
            writes.iter().any(|w| w == expected),
            "{expected} in {writes:?}"
        );
    }

    // A server-side dry run validates and keeps nothing.
    let out = k
        .run(&[
            "create",
            "configmap",
            "dry",
            "--from-literal=a=b",
            "--dry-run=server",
            "-n",
            "ml",
        ])
        .await;
    assert!(
        out.contains("configmap/dry created (server dry run)"),
        "{out}"
    );
    let missing = k.fail(&["get", "configmap", "dry", "-n", "ml"]).await;
    assert!(missing.contains("not found"), "{missing}");

    let out = k
        .run(&["scale", "deployment", "web", "--replicas=3", "-n", "ml"])
        .await;
    assert!(out.contains("deployment.apps/web scaled"), "{out}");
    let web = k.json(&["get", "deployment", "web", "-n", "ml"]).await;
    assert_eq!(web["spec"]["replicas"], 3, "{web}");

    // With a precondition kubectl reads the Scale, then replaces it (PUT).
    k.run(&[
        "scale",
        "deployment",
        "web",
        "--current-replicas=3",
        "--replicas=5",
        "-n",
        "ml",
    ])
    .await;
    let web = k.json(&["get", "deployment", "web", "-n", "ml"]).await;
    assert_eq!(web["spec"]["replicas"], 5, "{web}");
    let wrong = k
        .fail(&[
            "scale",
            "deployment",
            "web",
            "--current-replicas=3",
            "--replicas=1",
            "-n",
            "ml",
        ])
        .await;
    assert!(
        wrong.contains("Expected replicas to be 3, was 5"),
        "{wrong}"
    );

    let out = k
        .run(&[
            "scale",
            "deployment",
            "web",
            "--replicas=9",
            "--dry-run=server",
            "-n",
            "ml",
        ])
        .await;
    assert!(out.contains("scaled"), "{out}");
    let web = k.json(&["get", "deployment", "web", "-n", "ml"]).await;
    assert_eq!(
        web["spec"]["replicas"], 5,
        "a dry-run scale keeps nothing: {web}"
    );
    cluster.shutdown().await;
}

/// `kubectl scale` moves the runner: the pods follow the Scale it writes.
#[tokio::test]
async fn kubectl_scale_deployment_and_the_runners_pods_follow() {
    let Some(bin) = kubectl_or_skip("kubectl_scale_deployment_and_the_runners_pods_follow") else {
        return;
    };
    let (_dir, cluster, k) = with_node(bin).await;
    // A pod that runs until stopped (the runner runs the command as a local process).
    k.run(&[
        "create",
        "deployment",
        "sleeper",
        "--image=busybox",
        "--replicas=1",
        "--",
        "sleep",
        "600",
    ])
    .await;
    let ready = |n: usize| {
        let k = &k;
        async move {
            for _ in 0..300 {
                let pods = k.json(&["get", "pods", "-l", "app=sleeper"]).await;
                let running = pods["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
                    .filter(|p| p["status"]["phase"] == "Running")
                    .count();
                let d = k.json(&["get", "deployment", "sleeper"]).await;
                if running == n && d["status"]["readyReplicas"].as_u64().unwrap_or(0) as usize == n
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            panic!(
                "{n} running pods: {}",
                k.run(&["get", "pods", "-l", "app=sleeper", "-o", "wide"])
                    .await
            );
        }
    };
    ready(1).await;
    let out = k
        .run(&["scale", "deployment", "sleeper", "--replicas=3"])
        .await;
    assert!(out.contains("deployment.apps/sleeper scaled"), "{out}");
    ready(3).await;
    k.run(&["scale", "deployment", "sleeper", "--replicas=1"])
        .await;
    ready(1).await;
    cluster.shutdown().await;
}

/// `kubectl rollout history` and `kubectl rollout undo` read and restore the
/// Deployment's revisions, which the runner keeps as ReplicaSets.
#[tokio::test]
async fn kubectl_rollout_history_and_undo_follow_the_deployments_revisions() {
    let Some(bin) =
        kubectl_or_skip("kubectl_rollout_history_and_undo_follow_the_deployments_revisions")
    else {
        return;
    };
    let (_dir, cluster, k) = with_node(bin).await;
    k.run(&[
        "create",
        "deployment",
        "web",
        "--image=busybox:1",
        "--replicas=1",
        "--",
        "sleep",
        "600",
    ])
    .await;
    let rolled = |k: &Kubectl| {
        let cmd = k.command(&["rollout", "status", "deployment/web", "--timeout=60s"]);
        async move {
            let out = tokio::process::Command::from(cmd)
                .output()
                .await
                .expect("kubectl runs");
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(text.contains("successfully rolled out"), "{text}");
        }
    };
    rolled(&k).await;
    k.run(&["set", "image", "deployment/web", "busybox=busybox:2"])
        .await;
    k.run(&[
        "annotate",
        "deployment/web",
        "kubernetes.io/change-cause=move to busybox 2",
    ])
    .await;
    rolled(&k).await;

    let history = k.run(&["rollout", "history", "deployment/web"]).await;
    let rows: Vec<Vec<&str>> = history
        .lines()
        .skip_while(|l| !l.starts_with("REVISION"))
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows,
        vec![vec!["1", "<none>"], vec!["2", "move", "to", "busybox", "2"]],
        "{history}"
    );
    let first = k
        .run(&["rollout", "history", "deployment/web", "--revision=1"])
        .await;
    assert!(first.contains("busybox:1"), "{first}");
    let sets = k.json(&["get", "rs", "-l", "app=web"]).await;
    let mut replicas: Vec<(String, u64)> = sets["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|rs| {
            (
                rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                rs["spec"]["replicas"].as_u64().unwrap_or(99),
            )
        })
        .collect();
    replicas.sort();
    assert_eq!(replicas, vec![("1".into(), 0), ("2".into(), 1)]);

    let out = k.run(&["rollout", "undo", "deployment/web"]).await;
    assert!(out.contains("rolled back"), "{out}");
    rolled(&k).await;
    let image = k
        .run(&[
            "get",
            "deployment",
            "web",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
        ])
        .await;
    assert_eq!(image, "busybox:1");
    let history = k.run(&["rollout", "history", "deployment/web"]).await;
    let revisions: Vec<&str> = history
        .lines()
        .skip_while(|l| !l.starts_with("REVISION"))
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(revisions, vec!["2", "3"], "{history}");
    let d = k.json(&["get", "deployment", "web"]).await;
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "3"
    );
    cluster.shutdown().await;
}
