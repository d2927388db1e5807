//! `driftline up` is the README's first command: from a fresh state
//! directory it must bring the bundled Model to a serving champion that
//! kubectl-style clients see, stop cleanly on Ctrl-C, and resume.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use driftline::api::{Model, ModelPhase, ModelVersion};
use kube::Api;

fn up(state: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_driftline"))
        .args(["up", "--port", "0", "--state-dir"])
        .arg(state)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("driftline up starts")
}

async fn client(state: &Path) -> kube::Client {
    let path = state.join("kubeconfig");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "no kubeconfig at {}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let kc = kube::config::Kubeconfig::read_from(&path).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("config");
    kube::Client::try_from(config).expect("client")
}

async fn serving_champion(client: &kube::Client) -> String {
    let models: Api<Model> = Api::namespaced(client.clone(), "ml");
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        if let Ok(m) = models.get("wine-quality").await
            && let Some(s) = m.status
            && s.phase == ModelPhase::Serving
            && let Some(c) = s.champion
        {
            return c;
        }
        assert!(Instant::now() < deadline, "wine-quality never served");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn stop(child: Child) -> String {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("SIGINT");
    let out = child.wait_with_output().expect("driftline up exits");
    assert!(out.status.success(), "exit {:?}", out.status);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Processes whose command line names this state directory.
fn leftovers(state: &Path) -> Vec<String> {
    let needle = state.display().to_string();
    std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(&needle))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_serves_the_bundled_model_stops_cleanly_and_resumes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let state = dir.path().join("state");
    let child = up(&state);
    let client = client(&state).await;
    assert_eq!(serving_champion(&client).await, "v1");
    let stdout = stop(child);
    assert!(stdout.contains("export KUBECONFIG="), "{stdout}");
    assert!(
        stdout.contains("gateway http://wine-quality.ml.svc:8080"),
        "{stdout}"
    );
    // Model servers, gateway and training pods all went with it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(leftovers(&state).is_empty(), "{:?}", leftovers(&state));

    // A rerun resumes: the same champion, no new training.
    let child = up(&state);
    let client = resumed_client(&state).await;
    assert_eq!(serving_champion(&client).await, "v1");
    let versions: Api<ModelVersion> = Api::namespaced(client.clone(), "ml");
    let names: Vec<String> = versions
        .list(&Default::default())
        .await
        .expect("versions")
        .items
        .into_iter()
        .filter_map(|v| v.metadata.name)
        .collect();
    assert_eq!(names, vec!["wine-quality-v1".to_string()]);
    stop(child);
}

/// The kubeconfig of a resumed cluster (rewritten with the new port).
async fn resumed_client(state: &Path) -> kube::Client {
    // The previous kubeconfig exists already: wait for the new server to answer.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let c = client(state).await;
        if c.apiserver_version().await.is_ok() {
            return c;
        }
        assert!(
            Instant::now() < deadline,
            "the resumed cluster never answered"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
