//! `driftline demo`: the whole loop on a bundled pipeline, on this machine,
//! until `driftline up` runs it inside the embedded cluster.
//!
//! It drives the real subcommands as child processes, exactly as the
//! training Job and the serving Deployment will: train a champion and a
//! candidate, gate the candidate against the champion on the curated
//! regression test-set, serve the winner over the Open Inference Protocol,
//! send it the test rows, label them through the feedback endpoint, and
//! report online accuracy and drift. Like `main`, this room may import every
//! other room.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::api::{ModelSpec, Task, load_model_file, routes};
use crate::data::read_table;
use crate::serve::{infer_body, input_columns, label_json, model_inputs, same_label};

/// Arguments of `driftline demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Model YAML of the pipeline to run.
    #[arg(long, short = 'f', default_value = "pipelines/wine-quality.yaml")]
    pub pipeline: PathBuf,
    /// Directory for artifacts, reports and captured feedback (a new run folder each time).
    #[arg(long, default_value = ".driftline/demo")]
    pub dir: PathBuf,
    /// Rows of the test set sent to the server per request (1..=1024).
    #[arg(long, default_value_t = 16,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1024))]
    pub batch: usize,
    /// Keep serving after the loop (Ctrl-C stops it).
    #[arg(long)]
    pub keep_serving: bool,
}

/// Why the demo stopped.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("cannot read pipeline `{path}`")]
    Pipeline {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("pipeline `{path}` is not a valid Model: {message}")]
    InvalidPipeline { path: String, message: String },
    #[error("pipeline `{0}` has no `gate.testSet`; the demo needs a regression test-set")]
    NoTestSet(String),
    #[error("cannot create `{path}`")]
    Workdir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start `driftline {step}`")]
    Spawn {
        step: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("`driftline {step}` failed with exit code {code}; see its output above")]
    StepFailed { step: &'static str, code: i32 },
    #[error("the model server did not become ready within 60 s")]
    NotReady,
    #[error("request to the model server failed")]
    Http(#[from] reqwest::Error),
    #[error("the model server answered {status} to {what}: {body}")]
    Refused {
        what: String,
        status: u16,
        body: String,
    },
    #[error("cannot read the test set: {0}")]
    TestSet(String),
}

/// Runs `driftline demo`.
pub async fn run(args: DemoArgs) -> Result<ExitCode, DemoError> {
    let pipeline = args.pipeline.display().to_string();
    let yaml = std::fs::read_to_string(&args.pipeline).map_err(|source| DemoError::Pipeline {
        path: pipeline.clone(),
        source,
    })?;
    let file = load_model_file(&yaml).map_err(|e| DemoError::InvalidPipeline {
        path: pipeline.clone(),
        message: e.to_string(),
    })?;
    let name = file.name.unwrap_or_else(|| {
        let stem = args
            .pipeline
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned());
        stem.unwrap_or_else(|| "model".to_string())
    });
    let spec = file.spec;
    let test_set = spec
        .gate
        .as_ref()
        .map(|g| g.test_set.clone())
        .ok_or_else(|| DemoError::NoTestSet(pipeline.clone()))?;

    let run_dir = absolute(&args.dir).join(chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string());
    std::fs::create_dir_all(&run_dir).map_err(|source| DemoError::Workdir {
        path: run_dir.display().to_string(),
        source,
    })?;
    let champion = run_dir.join("v1");
    let candidate = run_dir.join("v2");
    let report = run_dir.join("gate-report.json");
    let feedback = run_dir.join("feedback");
    let exe = std::env::current_exe().map_err(|source| DemoError::Spawn {
        step: "demo",
        source,
    })?;

    step(
        1,
        &format!(
            "train the champion v1 of `{name}` (seed {})",
            spec.training.seed
        ),
    );
    run_step(
        &exe,
        "train",
        &["-c", &pipeline, "--out", &path_str(&champion)],
    )
    .await?;

    let candidate_seed = spec.training.seed.wrapping_add(1).to_string();
    step(2, &format!("retrain: candidate v2 (seed {candidate_seed})"));
    run_step(
        &exe,
        "train",
        &[
            "-c",
            &pipeline,
            "--out",
            &path_str(&candidate),
            "--seed",
            &candidate_seed,
        ],
    )
    .await?;

    step(3, "gate v2 against champion v1 on the regression test-set");
    let gate_code = step_status(
        &exe,
        "evaluate",
        &[
            "--candidate",
            &path_str(&candidate),
            "--champion",
            &path_str(&champion),
            "-c",
            &pipeline,
            "--report",
            &path_str(&report),
        ],
        true,
    )
    .await?;
    let (winner, version) = match gate_code {
        0 => {
            println!(
                "   gate passed: v2 is the new champion (report: {})",
                report.display()
            );
            (&candidate, "v2")
        }
        1 => {
            println!(
                "   gate failed: v1 stays champion (report: {})",
                report.display()
            );
            (&champion, "v1")
        }
        code => {
            return Err(DemoError::StepFailed {
                step: "evaluate",
                code,
            });
        }
    };

    step(
        4,
        &format!("serve {version} over the Open Inference Protocol v2"),
    );
    let port = free_port().map_err(|source| DemoError::Spawn {
        step: "serve",
        source,
    })?;
    let server = spawn_server(&exe, winner, &name, version, port, &feedback)?;
    let base = format!("http://127.0.0.1:{port}");
    let outcome = exercise_server(&base, &name, &spec, &test_set, args.batch).await;
    let outcome = match outcome {
        Ok(()) if args.keep_serving => {
            println!(
                "\nServing at {} — Ctrl-C to stop.",
                routes::url(&base, routes::INFER, &name)
            );
            let _ = tokio::signal::ctrl_c().await;
            Ok(())
        }
        other => other,
    };
    stop(server).await;
    outcome?;
    println!(
        "\nArtifacts, gate report and captured feedback: {}",
        run_dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn step(n: u32, what: &str) {
    println!("\n[{n}/5] {what}");
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
    }
}

fn path_str(p: &Path) -> String {
    p.display().to_string()
}

fn free_port() -> std::io::Result<u16> {
    // Ask the kernel for a free port; the server binds it right after.
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
    Ok(listener.local_addr()?.port())
}

async fn run_step(exe: &Path, step: &'static str, args: &[&str]) -> Result<(), DemoError> {
    match step_status(exe, step, args, false).await? {
        0 => Ok(()),
        code => Err(DemoError::StepFailed { step, code }),
    }
}

async fn step_status(
    exe: &Path,
    step: &'static str,
    args: &[&str],
    quiet_stdout: bool,
) -> Result<i32, DemoError> {
    let mut cmd = Command::new(exe);
    cmd.arg(step).args(args).stdin(Stdio::null());
    quiet_logs(&mut cmd);
    if quiet_stdout {
        // The JSON report goes to a file; keep the terminal for the per-check lines on stderr.
        cmd.stdout(Stdio::null());
    }
    let status = cmd
        .status()
        .await
        .map_err(|source| DemoError::Spawn { step, source })?;
    Ok(status.code().unwrap_or(-1))
}

/// Children log warnings only, unless the user chose a level, so the demo's
/// own lines stay readable.
fn quiet_logs(cmd: &mut Command) {
    if std::env::var_os("RUST_LOG").is_none() {
        cmd.env("RUST_LOG", "warn");
    }
}

fn spawn_server(
    exe: &Path,
    artifact: &Path,
    name: &str,
    version: &str,
    port: u16,
    feedback: &Path,
) -> Result<Child, DemoError> {
    let mut cmd = Command::new(exe);
    quiet_logs(&mut cmd);
    cmd.arg("serve")
        .args(["--artifact", &path_str(artifact)])
        .args(["--name", name, "--model-version", version])
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--feedback", &format!("file://{}/", feedback.display())])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| DemoError::Spawn {
            step: "serve",
            source,
        })
}

async fn stop(mut server: Child) {
    if let Some(pid) = server.id() {
        // SIGTERM lets the server flush captured feedback before it exits.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        if tokio::time::timeout(Duration::from_secs(10), server.wait())
            .await
            .is_ok()
        {
            return;
        }
    }
    let _ = server.kill().await;
}

async fn exercise_server(
    base: &str,
    name: &str,
    spec: &ModelSpec,
    test_set: &str,
    batch: usize,
) -> Result<(), DemoError> {
    let http = reqwest::Client::new();
    wait_ready(&http, base).await?;
    let inputs = model_inputs(&http, base, name)
        .await
        .map_err(|e| DemoError::TestSet(e.to_string()))?;
    println!("   ready: {} inputs", inputs.len());

    let table = read_table(test_set, None)
        .await
        .map_err(|e| DemoError::TestSet(e.to_string()))?;
    let columns = input_columns(&table, &inputs).map_err(|e| DemoError::TestSet(e.to_string()))?;
    let target = &spec.data.target;
    let target_col = table
        .position(target)
        .ok_or_else(|| DemoError::TestSet(format!("column `{target}` missing in {test_set}")))?;

    step(
        5,
        &format!("send {} test rows, label them, read drift", table.rows),
    );
    let mut correct = 0usize;
    let mut squared_error = 0f64;
    let mut scored = 0usize;
    for start in (0..table.rows).step_by(batch) {
        let end = (start + batch).min(table.rows);
        let id = format!("demo-{start}");
        let response: Value = post_json(
            &http,
            &routes::url(base, routes::INFER, name),
            &infer_body(&table, &columns, &inputs, start, end, &id),
        )
        .await?;
        let predictions = response["outputs"]
            .as_array()
            .and_then(|o| o.iter().find(|t| t["name"] == "predictions"))
            .and_then(|t| t["data"].as_array().cloned())
            .unwrap_or_default();
        let labels: Vec<Value> = table.columns[target_col][start..end]
            .iter()
            .map(|c| label_json(c, spec.task))
            .collect();
        for (p, l) in predictions.iter().zip(&labels) {
            scored += 1;
            match spec.task {
                Task::Classification => correct += usize::from(same_label(p, l)),
                Task::Regression => {
                    if let (Some(p), Some(l)) = (p.as_f64(), l.as_f64()) {
                        squared_error += (p - l).powi(2);
                    }
                }
            }
        }
        post_json(
            &http,
            &routes::url(base, routes::FEEDBACK, name),
            &json!({"id": id, "label": labels}),
        )
        .await?;
    }
    match spec.task {
        Task::Classification => println!(
            "   accuracy on the test rows, as served: {:.3} ({correct}/{scored})",
            correct as f64 / scored.max(1) as f64
        ),
        Task::Regression => println!(
            "   RMSE on the test rows, as served: {:.4}",
            (squared_error / scored.max(1) as f64).sqrt()
        ),
    }
    let drift: Value = get_json(&http, &routes::url(base, routes::DRIFT, name)).await?;
    print_drift(&drift);
    Ok(())
}

fn print_drift(drift: &Value) {
    // The server's report holds every statistic; show the configured one per feature.
    let window = drift.get("current").unwrap_or(drift);
    let rows = window["rows"].as_u64().unwrap_or(0);
    let complete = window["complete"].as_bool().unwrap_or(false);
    println!(
        "   drift of this window ({rows} rows{}): {}",
        if complete {
            ""
        } else {
            ", window not yet full"
        },
        window["reason"].as_str().unwrap_or("no verdict")
    );
    for feature in window["features"].as_array().into_iter().flatten() {
        let statistic = match feature["statistic"].as_str().unwrap_or("?") {
            "jensenShannon" => "Jensen-Shannon distance",
            "psi" => "PSI",
            "ks" => "Kolmogorov-Smirnov",
            "wasserstein" => "normalised Wasserstein",
            other => other,
        };
        println!(
            "     {:<24} {statistic} {:.3} (threshold {:.3}, weight {:.2}){}",
            feature["name"].as_str().unwrap_or("?"),
            feature["value"].as_f64().unwrap_or(f64::NAN),
            feature["threshold"].as_f64().unwrap_or(f64::NAN),
            feature["weight"].as_f64().unwrap_or(f64::NAN),
            if feature["drifted"].as_bool().unwrap_or(false) {
                "  over threshold"
            } else {
                ""
            }
        );
    }
}

async fn wait_ready(http: &reqwest::Client, base: &str) -> Result<(), DemoError> {
    for _ in 0..240 {
        let ready = http.get(format!("{base}{}", routes::READY)).send().await;
        if ready.is_ok_and(|r| r.status().is_success()) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Err(DemoError::NotReady)
}

async fn get_json(http: &reqwest::Client, url: &str) -> Result<Value, DemoError> {
    let r = http.get(url).send().await?;
    decode(url, r).await
}

async fn post_json(http: &reqwest::Client, url: &str, body: &Value) -> Result<Value, DemoError> {
    let r = http.post(url).json(body).send().await?;
    decode(url, r).await
}

async fn decode(url: &str, r: reqwest::Response) -> Result<Value, DemoError> {
    let status = r.status();
    let body = r.text().await?;
    if !status.is_success() {
        return Err(DemoError::Refused {
            what: url.to_string(),
            status: status.as_u16(),
            body,
        });
    }
    serde_json::from_str(&body).map_err(|e| DemoError::Refused {
        what: url.to_string(),
        status: status.as_u16(),
        body: format!("not JSON ({e}): {body}"),
    })
}
