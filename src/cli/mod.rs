//! Command wiring: the `driftline` command line, and one module per
//! subcommand that parses its flags, calls the rooms and prints. Library
//! rooms never import each other for CLI needs; `src/main.rs` only calls
//! [`main`].

mod cluster;
mod datacheck;
mod demo;
mod disagreements;
mod drift_flags;
mod flags;
mod history;
mod label;
mod load;
mod ml;
mod operator;
mod output;
mod serve;
mod testset;
mod up;
mod user;

/// The model server's flags, parsed by an operator unit test from the
/// command line the operator builds for its pods.
#[cfg(test)]
pub(crate) use serve::ServeArgs;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "driftline",
    version,
    about = "Keeps ML models healthy in production"
)]
struct Cli {
    /// Log as JSON lines instead of text.
    #[arg(long, global = true, env = "DRIFTLINE_LOG_JSON")]
    log_json: bool,
    /// Threads that run requests and other async work (default: one per CPU
    /// this process may use). Set it to the container's CPU limit when the
    /// limit is below the node's core count.
    #[arg(long, global = true, env = "DRIFTLINE_WORKER_THREADS", value_parser = clap::value_parser!(u16).range(1..))]
    worker_threads: Option<u16>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole loop on a bundled pipeline: train, gate, serve, infer, label, drift.
    Demo(demo::DemoArgs),
    /// Train a model from a Model YAML and write a verified artifact.
    Train(ml::TrainArgs),
    /// Evaluate a candidate (and the champion) on a regression test-set and apply the gate.
    Evaluate(ml::EvaluateArgs),
    /// Check a Model's training window before any training: statistics against gate.data and the champion's.
    Datacheck(datacheck::DataCheckArgs),
    /// Serve an artifact over the Open Inference Protocol v2.
    Serve(serve::ServeArgs),
    /// Split one Model's traffic across its versions by weight.
    Gateway(serve::GatewayArgs),
    /// Run the embedded Kubernetes cluster in the foreground.
    Cluster(cluster::ClusterArgs),
    /// The product on a laptop: embedded cluster + operator + the bundled Models.
    Up(up::UpArgs),
    /// Run the Model controller: train, gate, serve and roll out every Model.
    // Boxed: its flags are most of the enum's size.
    Operator(Box<operator::OperatorArgs>),
    /// Send a pipeline's rows to a gateway or server at a steady rate, with labels.
    Load(load::LoadArgs),
    /// Phase, champion, candidate, traffic, drift and training of Models.
    Status(user::StatusArgs),
    /// A Model's versions with their gate results, and every champion change.
    History(history::HistoryArgs),
    /// Rows a version answered differently from the champion in its shadow stage.
    Disagreements(disagreements::DisagreementsArgs),
    /// Label the rows a Model's servers set aside (uncertain, drifted, disagreed), one at a time.
    Label(label::LabelArgs),
    /// The gate's regression test-set: propose labelled rows that cover what it lacks.
    #[command(subcommand)]
    Testset(testset::TestsetCommand),
    /// Make a version (default: the canary) champion; recorded with your name.
    Promote(user::PromoteArgs),
    /// Roll back the canary, or the champion to the one before it.
    Rollback(user::ModelRequestArgs),
    /// Train a new version now.
    Retrain(user::ModelRequestArgs),
    /// Print the CustomResourceDefinitions as YAML.
    Crd,
}

fn init_tracing(json: bool, command: &Command) {
    use tracing_subscriber::{EnvFilter, fmt};
    // Commands that answer and exit say what went wrong in their one error
    // line; library logs (kube's connection errors) would only repeat it.
    let default = match command {
        Command::Status(_)
        | Command::History(_)
        | Command::Disagreements(_)
        | Command::Label(_)
        | Command::Testset(_)
        | Command::Promote(_)
        | Command::Rollback(_)
        | Command::Retrain(_)
        | Command::Crd => "driftline=warn",
        _ => "info",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Fixes the thread count of candle's CPU kernels for this process.
///
/// candle asks for its thread count on every matrix multiply and, unless
/// `RAYON_NUM_THREADS` is set, answers by reading `/proc/cpuinfo` each time:
/// about a third of the CPU time of serving a small model went there. So the
/// variable is always set: to `--compute-threads` for `serve` (a server runs
/// requests in parallel, so one inference should not fan out over threads
/// that then spin waiting for work), otherwise to what the user set or the
/// count candle would compute (physical cores). Child processes inherit it,
/// which is why `serve` takes its own count from a flag, never from it.
fn pin_compute_threads(command: &Command) {
    const VAR: &str = "RAYON_NUM_THREADS";
    let threads = match command {
        Command::Serve(args) => usize::from(args.compute_threads),
        _ => std::env::var(VAR)
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|n| *n > 0)
            .unwrap_or_else(num_cpus::get_physical),
    };
    // SAFETY: called in `main` before the async runtime or any other thread
    // exists, so nothing reads the environment concurrently.
    #[allow(unsafe_code)]
    // lib.rs denies `unsafe` outside the few system calls it lists.
    unsafe {
        std::env::set_var(VAR, threads.max(1).to_string())
    };
}

/// The `driftline` command: parses the flags, tells `parsed` whether the
/// command is a request server (`serve`, `gateway`; the binary picks its
/// allocator by that), pins the thread counts, starts the async runtime
/// and runs the subcommand.
pub fn main_with(parsed: impl FnOnce(bool)) -> ExitCode {
    let cli = Cli::parse();
    parsed(matches!(
        cli.command,
        Command::Serve(_) | Command::Gateway(_)
    ));
    pin_compute_threads(&cli.command);
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = cli.worker_threads {
        runtime.worker_threads(usize::from(n));
    }
    match runtime.enable_all().build() {
        Ok(runtime) => runtime.block_on(run(cli)),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::from(2)
        }
    }
}

/// Writes a command's output. A reader that stops early (`driftline crd | head`)
/// is not an error, as for any Unix filter.
fn write_stdout(text: &str) -> anyhow::Result<ExitCode> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(e) => Err(anyhow::anyhow!("cannot write to standard output: {e}")),
    }
}

async fn run(cli: Cli) -> ExitCode {
    init_tracing(cli.log_json, &cli.command);
    // One TLS provider for kube, reqwest and object_store (ring; no C toolchain needed).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let result = match cli.command {
        Command::Demo(args) => demo::run(args).await.map_err(anyhow::Error::from),
        Command::Train(args) => ml::train(args).await.map_err(anyhow::Error::from),
        Command::Evaluate(args) => ml::evaluate(args).await.map_err(anyhow::Error::from),
        Command::Datacheck(args) => datacheck::run(args).await.map_err(anyhow::Error::from),
        Command::Serve(args) => serve::serve(args).await.map_err(anyhow::Error::from),
        Command::Gateway(args) => serve::gateway(args).await.map_err(anyhow::Error::from),
        Command::Cluster(args) => cluster::run(args).await,
        Command::Operator(args) => operator::run(*args).await,
        Command::Up(args) => up::run(args).await,
        Command::Load(args) => load::run_load(args).await,
        Command::Status(args) => user::status(args).await,
        Command::History(args) => history::history(args).await,
        Command::Disagreements(args) => disagreements::disagreements(args).await,
        Command::Label(args) => label::label(args).await,
        Command::Testset(command) => testset::testset(command).await,
        Command::Promote(args) => user::promote(args).await,
        Command::Rollback(args) => user::rollback(args).await,
        Command::Retrain(args) => user::retrain(args).await,
        Command::Crd => crate::api::crd::all_crds_yaml()
            .map_err(anyhow::Error::from)
            .and_then(|yaml| write_stdout(&yaml)),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}
