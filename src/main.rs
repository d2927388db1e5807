//! The `driftline` binary: CLI wiring only.

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
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole loop on a bundled pipeline: train, gate, serve, infer, label, drift.
    Demo(driftline::demo::DemoArgs),
    /// Train a model from a Model YAML and write a verified artifact.
    Train(driftline::ml::cli::TrainArgs),
    /// Evaluate a candidate (and the champion) on a regression test-set and apply the gate.
    Evaluate(driftline::ml::cli::EvaluateArgs),
    /// Serve an artifact over the Open Inference Protocol v2.
    Serve(driftline::serve::cli::ServeArgs),
    /// Split one Model's traffic across its versions by weight.
    Gateway(driftline::serve::cli::GatewayArgs),
    /// Run the embedded Kubernetes cluster in the foreground.
    Cluster(driftline::cluster::cli::ClusterArgs),
    /// Print the CustomResourceDefinitions as YAML.
    Crd,
}

fn init_tracing(json: bool) {
    use tracing_subscriber::{EnvFilter, fmt};
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_json);
    // One TLS provider for kube, reqwest and object_store (ring; no C toolchain needed).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let result = match cli.command {
        Command::Demo(args) => driftline::demo::run(args)
            .await
            .map_err(anyhow::Error::from),
        Command::Train(args) => driftline::ml::cli::train(args)
            .await
            .map_err(anyhow::Error::from),
        Command::Evaluate(args) => driftline::ml::cli::evaluate(args)
            .await
            .map_err(anyhow::Error::from),
        Command::Serve(args) => driftline::serve::cli::serve(args)
            .await
            .map_err(anyhow::Error::from),
        Command::Gateway(args) => driftline::serve::cli::gateway(args)
            .await
            .map_err(anyhow::Error::from),
        Command::Cluster(args) => driftline::cluster::cli::run(args).await,
        Command::Crd => driftline::api::crd::all_crds_yaml()
            .map(|yaml| {
                print!("{yaml}");
                ExitCode::SUCCESS
            })
            .map_err(anyhow::Error::from),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}
