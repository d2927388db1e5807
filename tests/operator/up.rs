//! `driftline up` is the README's first command: from a fresh state
//! directory it must bring the bundled Model to a serving champion that
//! kubectl-style clients see, stop cleanly on Ctrl-C, and resume.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use driftline::api::{Model, ModelPhase, ModelVersion};
use kube::Api;

#[path = "../support/procs.rs"]
mod procs;

fn up(state: &Path) -> Child {
    up_with(state, &[])
}

pub(crate) fn up_with(state: &Path, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_driftline"))
        .args(["up", "--port", "0", "--state-dir"])
        .arg(state)
        .args(extra)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::piped())
        .stderr(
            // Beside the state directory, for reading after a failure.
            std::fs::File::create(state.with_extension("log"))
                .map_or_else(|_| Stdio::null(), Stdio::from),
        )
        .spawn()
        .expect("driftline up starts")
}

pub(crate) async fn client(state: &Path) -> kube::Client {
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

pub(crate) async fn serving_champion(client: &kube::Client) -> String {
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

/// The first champion, in whatever phase the Model is by then: under a
/// fast scaled clock the nightly retrain can start again before a poll sees
/// `Serving` (at 3600×, the 02:00 slot comes every 24 s of wall time).
async fn first_champion(client: &kube::Client) -> String {
    let models: Api<Model> = Api::namespaced(client.clone(), "ml");
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        if let Ok(m) = models.get("wine-quality").await
            && let Some(c) = m.status.and_then(|s| s.champion)
        {
            return c;
        }
        assert!(
            Instant::now() < deadline,
            "wine-quality never had a champion"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

pub(crate) fn stop(child: Child, state: &Path) -> String {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("SIGINT");
    let out = child.wait_with_output().expect("driftline up exits");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{stdout}\nlog (last 20 lines):\n{}",
        out.status,
        std::fs::read_to_string(state.with_extension("log"))
            .unwrap_or_default()
            .lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .join("\n")
    );
    stdout
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
    // A user's `kubectl apply -f` of the file `up` applied patches from what
    // `up` recorded, without kubectl's missing-annotation warning.
    if let Some(kubectl) = crate::require_tool::require_tool(
        "up_serves_the_bundled_model_stops_cleanly_and_resumes",
        crate::require_tool::kubectl(),
    ) {
        let out = Command::new(kubectl)
            .args([
                "apply",
                "--dry-run=server",
                "-f",
                "pipelines/wine-quality.yaml",
            ])
            .arg("--kubeconfig")
            .arg(state.join("kubeconfig"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("kubectl runs");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
        assert!(!err.contains("last-applied-configuration"), "{err}");
    }
    let stdout = stop(child, &state);
    assert!(stdout.contains("export KUBECONFIG="), "{stdout}");
    assert!(stdout.contains("driftline status -A"), "{stdout}");
    // Not the default state dir: the history line names its registry.
    assert!(
        stdout.contains(&format!(
            "driftline history --registry sqlite://{}/registry.db -n <namespace> <name>",
            state.canonicalize().unwrap().display()
        )),
        "{stdout}"
    );
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
    stop(child, &state);
}

/// Under `--time-scale` the operator's times run ahead of the wall clock;
/// `driftline status` counts from the operator's clock (published by `up`),
/// so a finished training is "ago", never "in 5h".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_under_a_scaled_clock_shows_past_trainings_as_past() {
    let dir = tempfile::tempdir().expect("temp dir");
    let state = dir.path().join("state");
    let child = up_with(&state, &["--time-scale", "3600"]);
    let client = client(&state).await;
    let champion = first_champion(&client).await;
    assert!(champion.starts_with('v'), "{champion}");
    // Let the scaled clock run hours ahead of the wall clock.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let kc = state.join("kubeconfig").display().to_string();
    let (ok, out, err) = driftline(args(&[
        "status",
        "wine-quality",
        "-n",
        "ml",
        "--kubeconfig",
        &kc,
    ]))
    .await;
    assert!(ok, "{err}");
    let last = out
        .lines()
        .find(|l| l.starts_with("Last training:"))
        .unwrap_or_else(|| panic!("{out}"));
    // At 3600× the bundled Model's nightly slot (02:00) comes within
    // seconds of wall time, so the last training may already be v2's
    // scheduled one; whichever it is, it finished in the past.
    assert!(
        last.contains(" Succeeded (") && last.contains(" ago): ") && !last.contains("(in "),
        "{last}"
    );
    stop(child, &state);
}

/// `driftline up` killed with SIGKILL (a crash, the OOM killer, `kill -9`)
/// takes its model servers and gateway with it, and a rerun on the same
/// state directory starts its own beside none of the first run's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_killed_with_sigkill_leaves_no_pod_process_behind() {
    let dir = tempfile::tempdir().expect("temp dir");
    let state = dir.path().join("state");
    let mut child = up(&state);
    let client = client(&state).await;
    assert_eq!(serving_champion(&client).await, "v1");
    // The pods' processes: `driftline serve` and `driftline gateway`, children of `up`.
    let exe = env!("CARGO_BIN_EXE_driftline");
    let is_pod =
        |p: &procs::Proc, command: &str| p.cmdline.starts_with(&format!("{exe} {command} "));
    let containers = procs::wait_for(
        "the model server and the gateway run",
        Duration::from_secs(120),
        || {
            let children = procs::children_of(child.id());
            let serving = children.iter().any(|p| is_pod(p, "serve"));
            let gateway = children.iter().any(|p| is_pod(p, "gateway"));
            (serving && gateway).then_some(children)
        },
    )
    .await;
    // With whatever they started themselves (each container leads its group).
    let first_run: Vec<procs::Proc> = containers
        .iter()
        .flat_map(|c| procs::group(c.pgrp))
        .collect();

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("SIGKILL");
    child.wait().expect("driftline up is gone");
    let left = procs::still_running_after(&containers, Duration::from_secs(10)).await;
    assert!(
        left.is_empty(),
        "the model server and gateway outlived the killed `up`: {left:?}"
    );

    // A rerun resumes with processes of its own, and none of the first run's.
    let child = up(&state);
    let client = resumed_client(&state).await;
    assert_eq!(serving_champion(&client).await, "v1");
    procs::wait_for("the rerun's gateway runs", Duration::from_secs(120), || {
        procs::children_of(child.id())
            .iter()
            .any(|p| is_pod(p, "gateway"))
            .then_some(())
    })
    .await;
    let first: Vec<&procs::Proc> = first_run.iter().filter(|p| p.running()).collect();
    assert!(
        first.is_empty(),
        "processes of the first run still run beside the rerun's: {first:?}"
    );
    stop(child, &state);
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

/// Runs a user command (blocking, in a worker thread) and returns exit
/// success, stdout and stderr.
pub(crate) async fn driftline(args: Vec<String>) -> (bool, String, String) {
    tokio::task::spawn_blocking(move || {
        let out = Command::new(env!("CARGO_BIN_EXE_driftline"))
            .args(&args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("driftline runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .expect("command thread")
}

pub(crate) fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Waits until the Model's status satisfies `done`.
pub(crate) async fn wait_status(
    client: &kube::Client,
    what: &str,
    done: impl Fn(&driftline::api::ModelStatus) -> bool,
) {
    let models: Api<Model> = Api::namespaced(client.clone(), "ml");
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if let Ok(m) = models.get("wine-quality").await
            && m.status.as_ref().is_some_and(&done)
        {
            return;
        }
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_commands_act_through_the_model_and_land_in_the_audit_trail() {
    let dir = tempfile::tempdir().expect("temp dir");
    let state = dir.path().join("state");
    let child = up(&state);
    let client = client(&state).await;
    assert_eq!(serving_champion(&client).await, "v1");

    // The audit trail names the kubeconfig's user: act as "alice".
    let original = std::fs::read_to_string(state.join("kubeconfig")).expect("kubeconfig");
    let alice = original
        .replace("- name: driftline\n  user:", "- name: alice\n  user:")
        .replace("user: driftline", "user: alice");
    assert_ne!(alice, original, "the kubeconfig names its user");
    let kubeconfig = dir.path().join("alice.yaml");
    std::fs::write(&kubeconfig, alice).expect("write kubeconfig");
    let kc = kubeconfig.display().to_string();
    let registry = format!("sqlite://{}", state.join("registry.db").display());
    let cmd = |list: &[&str]| {
        let mut a = args(list);
        a.extend(args(&["-n", "ml", "--kubeconfig", &kc]));
        a
    };

    // Bad input: one clear line, non-zero.
    let (ok, _, err) = driftline(cmd(&["status", "no-such-model"])).await;
    assert!(
        !ok && err.contains("no Model no-such-model in namespace ml"),
        "{err}"
    );
    let (ok, _, err) = driftline(cmd(&["promote", "wine-quality", "v9"])).await;
    assert!(
        !ok && err.contains("has no version v9 (versions: v1)"),
        "{err}"
    );
    let (ok, _, err) = driftline(cmd(&["promote", "wine-quality", "v1"])).await;
    assert!(!ok && err.contains("v1 is already champion"), "{err}");
    let (ok, _, err) = driftline(cmd(&["promote", "wine-quality"])).await;
    assert!(!ok && err.contains("no canary in progress"), "{err}");
    let (ok, _, err) = driftline(args(&[
        "history",
        "wine-quality",
        "-n",
        "ml",
        "--registry",
        "sqlite:///nonexistent/registry.db",
    ]))
    .await;
    assert!(
        !ok && err.contains("no registry at /nonexistent/registry.db"),
        "{err}"
    );
    let (ok, _, err) = driftline(args(&[
        "history",
        "wine-quality",
        "-n",
        "ml",
        "--registry",
        "mysql://db/x",
    ]))
    .await;
    assert!(
        !ok && err.contains("scheme `mysql` is not supported"),
        "{err}"
    );
    let (ok, _, err) = driftline(args(&[
        "history",
        "nope",
        "-n",
        "ml",
        "--registry",
        &registry,
    ]))
    .await;
    assert!(!ok && err.contains("no record of Model ml/nope"), "{err}");
    let (ok, _, err) = driftline(args(&["history", "wine-quality", "-n", "ML_Team"])).await;
    assert!(
        !ok && err.contains("`ML_Team` is not a namespace name"),
        "{err}"
    );
    let closed = dir.path().join("closed.yaml");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        &closed,
        std::fs::read_to_string(&kubeconfig)
            .unwrap()
            .lines()
            .map(|l| {
                if l.trim_start().starts_with("server:") {
                    format!("    server: https://127.0.0.1:{port}")
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n"),
    )
    .unwrap();
    let (ok, _, err) = driftline(args(&[
        "status",
        "--kubeconfig",
        &closed.display().to_string(),
    ]))
    .await;
    assert!(
        !ok && err.contains("no Kubernetes API server answers at"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    // status: the same facts as the Model's status, as JSON.
    let (ok, out, err) = driftline(cmd(&["status", "wine-quality", "-o", "json"])).await;
    assert!(ok, "{err}");
    let view: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(view["champion"], "v1");
    assert_eq!(view["phase"], "Serving");
    assert_eq!(view["traffic"], "v1:100");
    assert_eq!(view["lastTraining"]["version"], "v1");
    let (ok, out, _) = driftline(cmd(&["status"])).await;
    assert!(
        ok && out.starts_with("NAMESPACE")
            && out.contains("wine-quality")
            && out.contains("v1:100"),
        "{out}"
    );

    // retrain → v2 trains, passes its gate and enters its canary.
    let (ok, out, err) = driftline(cmd(&[
        "retrain",
        "wine-quality",
        "--reason",
        "asked by the test",
    ]))
    .await;
    assert!(ok && out.contains("training v2 started"), "{out}{err}");
    wait_status(&client, "v2 in its canary", |s| {
        s.canary.as_ref().is_some_and(|c| c.version == "v2")
    })
    .await;
    // promote (the canary) → v2 is champion.
    let (ok, out, err) = driftline(cmd(&["promote", "wine-quality"])).await;
    assert!(ok && out.contains("champion is now v2"), "{out}{err}");
    // rollback → v1 again, 100 %.
    let (ok, out, err) = driftline(cmd(&["rollback", "wine-quality"])).await;
    assert!(
        ok && out.contains("champion v1, traffic v1:100"),
        "{out}{err}"
    );
    // A second rollback has nothing to restore: the operator refuses, and says why.
    let (ok, _, err) = driftline(cmd(&["rollback", "wine-quality"])).await;
    assert!(
        !ok && err.contains("refused: no superseded version to restore before v1"),
        "{err}"
    );

    // history: both versions with their gate, and every champion change with who and why.
    let deadline = Instant::now() + Duration::from_secs(30);
    let history = loop {
        let (ok, out, err) = driftline(args(&[
            "history",
            "wine-quality",
            "-n",
            "ml",
            "--registry",
            &registry,
            "-o",
            "json",
        ]))
        .await;
        assert!(ok, "{err}");
        let h: serde_json::Value = serde_json::from_str(&out).expect("json");
        if h["championChanges"]
            .as_array()
            .is_some_and(|c| c.len() >= 3)
        {
            break h;
        }
        assert!(Instant::now() < deadline, "audit rows never arrived: {out}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let versions = history["versions"].as_array().expect("versions");
    assert_eq!(versions.len(), 2, "{history}");
    assert_eq!(versions[0]["version"], "v1");
    assert_eq!(versions[0]["trigger"], "Initial");
    assert_eq!(versions[1]["version"], "v2");
    assert_eq!(versions[1]["trigger"], "Manual");
    assert!(
        versions[1]["reason"]
            .as_str()
            .unwrap()
            .contains("asked by the test"),
        "{history}"
    );
    for v in versions {
        assert_eq!(v["gatePassed"], true, "{v}");
        assert!(v["metrics"]["accuracy"].as_f64().unwrap() >= 0.55, "{v}");
        assert!(
            v["artifact"].as_str().unwrap().ends_with(&format!(
                "/ml/wine-quality/{}",
                v["version"].as_str().unwrap()
            )),
            "{v}"
        );
    }
    let changes = history["championChanges"].as_array().expect("changes");
    let summary: Vec<(String, String, String, String, String)> = changes
        .iter()
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap_or("-").to_string();
            (s("action"), s("from"), s("to"), s("trigger"), s("actor"))
        })
        .collect();
    let row = |a: &str, f: &str, t: &str, tr: &str, who: &str| {
        (
            a.to_string(),
            f.to_string(),
            t.to_string(),
            tr.to_string(),
            who.to_string(),
        )
    };
    assert_eq!(
        summary,
        vec![
            row("Promote", "-", "v1", "FirstVersion", "-"),
            row("Promote", "v1", "v2", "Manual", "alice"),
            row("Rollback", "v2", "v1", "Manual", "alice"),
        ],
        "{history}"
    );
    let (ok, table, _) = driftline(args(&[
        "history",
        "wine-quality",
        "-n",
        "ml",
        "--registry",
        &registry,
    ]))
    .await;
    assert!(
        ok && table.contains("Champion changes") && table.contains("alice"),
        "{table}"
    );
    stop(child, &state);
}

/// `up --load --drift-after`: the laptop loop shows drift-triggered retraining
/// on its own: in-distribution traffic first (no retrain), then shifted rows
/// until the operator retrains with the drift reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_with_load_and_drift_after_retrains_on_drift() {
    let dir = tempfile::tempdir().expect("temp dir");
    let state = dir.path().join("state");
    let model = wine_without_cooldown(dir.path());
    // 1 000-row windows, 3 in a row: at 400 requests/s the shift shows in
    // under 10 s of shifted traffic.
    let child = up_with(
        &state,
        &[
            "-f",
            &model,
            "--load",
            "--load-rate",
            "400",
            "--drift-after",
            "8s",
        ],
    );
    let client = client(&state).await;
    assert_eq!(serving_champion(&client).await, "v1");
    wait_status(&client, "a drift-triggered v2", |s| {
        s.training
            .as_ref()
            .or(s.last_training.as_ref())
            .is_some_and(|t| t.version == "v2")
    })
    .await;
    let models: Api<Model> = Api::namespaced(client.clone(), "ml");
    let status = models
        .get("wine-quality")
        .await
        .expect("model")
        .status
        .expect("status");
    let run = status.training.or(status.last_training).expect("v2 run");
    assert_eq!(
        run.trigger,
        driftline::api::TrainingTrigger::Drift,
        "{run:?}"
    );
    assert!(
        run.reason.contains("windows in a row (needed 3)"),
        "{run:?}"
    );
    // The shift is in the features the model leans on, as the reason says.
    let drift = status.drift.expect("drift measured");
    assert!(
        drift.drifted_weight > 0.5 && drift.drifted_features.iter().any(|f| f == "alcohol"),
        "{drift:?}"
    );
    let stdout = stop(child, &state);
    assert!(stdout.contains("Load: 400 requests/s"), "{stdout}");
}

/// The bundled wine-quality Model with its 6h cooldown (counted from v1's
/// training) cut to 1s, written into `dir`; data paths stay relative to the
/// repository, as for `up`. Returns the file's path.
pub(crate) fn wine_without_cooldown(dir: &Path) -> String {
    let yaml = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/wine-quality.yaml"),
    )
    .expect("bundled pipeline");
    assert!(
        yaml.contains("cooldown: 6h"),
        "the bundled pipeline changed"
    );
    let model = dir.join("wine-quality.yaml");
    std::fs::write(&model, yaml.replace("cooldown: 6h", "cooldown: 1s")).expect("write");
    model.display().to_string()
}
