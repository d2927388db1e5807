//! Differential conformance: the same kubectl scenarios against the embedded
//! API server and a real one (kube-apiserver 1.34 on etcd, from tools/k8s),
//! comparing what users read: success or failure, and the text kubectl
//! prints (which carries the status code's reason and the server's message).
//!
//! Differences that remain are listed in [`KNOWN`], each with why (and in
//! the README). A new difference fails the test, and so does a listed one
//! that is gone (then remove it from the list).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use driftline::cluster::{ClusterConfig, EmbeddedCluster};

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
];

/// Differences that remain, by step index, with why.
const KNOWN: &[(usize, &str)] = &[
    (
        7,
        "no defaulting of built-in kinds: a Secret's type stays unset instead of Opaque",
    ),
    (
        20,
        "a JSON patch that fails says which operation and path; the real server only \
         says the request was invalid",
    ),
];

fn kubectl(kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> (bool, String) {
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
    if which_kubectl().is_none() {
        let ci = std::env::var("CI").unwrap_or_default();
        assert!(ci.is_empty(), "kubectl is not on PATH and CI={ci}");
        eprintln!("SKIPPED: kubectl_answers_like_the_real_api_server: kubectl not on PATH");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let embedded = EmbeddedCluster::start(ClusterConfig::new(dir.path().join("state")))
        .await
        .unwrap();
    let ours = embedded.kubeconfig_path().to_path_buf();
    let theirs = plane.kubeconfig.clone();
    let mut differences = Vec::new();
    let mut report = String::new();
    for (i, (args, stdin)) in STEPS.iter().enumerate() {
        let (a, b) = tokio::task::spawn_blocking({
            let (ours, theirs) = (ours.clone(), theirs.clone());
            move || (kubectl(&ours, args, *stdin), kubectl(&theirs, args, *stdin))
        })
        .await
        .unwrap();
        if a != b {
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

fn which_kubectl() -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("kubectl"))
            .find(|p| p.is_file())
    })
}
