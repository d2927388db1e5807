//! The installed kubectl against the embedded cluster: apply a CRD and a
//! custom object, get with printer columns, watch an update, describe, wait
//! for a condition, delete. Skipped (with a message) where kubectl is absent.

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
    subresources: {status: {}}
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

fn kubectl_path() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("kubectl"))
        .find(|p| p.is_file())
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
    let Some(bin) = kubectl_path() else {
        eprintln!("SKIPPED kubectl_apply_get_watch_describe_wait_delete: kubectl is not on PATH");
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
