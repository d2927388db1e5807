//! `driftline cluster`: the embedded cluster alone, in the foreground.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::cluster::{ClusterConfig, EmbeddedCluster};

/// Arguments of `driftline cluster`.
#[derive(Debug, clap::Args)]
pub struct ClusterArgs {
    /// Where to write the kubeconfig (default: <state-dir>/kubeconfig).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 6443)]
    pub port: u16,
    /// Directory for pod logs, volumes and the kubeconfig (default: ~/.driftline/cluster).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Keep the cluster's objects in this file across restarts (default: in memory only).
    #[arg(long)]
    pub snapshot: Option<PathBuf>,
}

fn default_state_dir() -> PathBuf {
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".driftline").join("cluster"),
        None => PathBuf::from(".driftline").join("cluster"),
    }
}

/// Runs `driftline cluster` until Ctrl-C or SIGTERM, then stops its pods.
pub async fn run(args: ClusterArgs) -> anyhow::Result<ExitCode> {
    // From the start: a signal during startup stops the cluster once it is
    // up, through the same shutdown, instead of leaving its pods running.
    let stopped = tokio::spawn(crate::cli::operator::shutdown_signal());
    let mut cfg = ClusterConfig::new(args.state_dir.unwrap_or_else(default_state_dir));
    cfg.port = args.port;
    cfg.kubeconfig = args.kubeconfig;
    cfg.snapshot = args.snapshot;
    cfg.node = Some(crate::cluster::NodeConfig {
        gpus: crate::cluster::detect_gpus(),
        hosts_file_env: Some(crate::net::HOSTS_FILE_ENV.into()),
        ..Default::default()
    });
    let cluster = EmbeddedCluster::start(cfg).await?;
    let kubeconfig = cluster.kubeconfig_path().display().to_string();
    println!("driftline embedded cluster listening on {}", cluster.url());
    println!("kubeconfig written to {kubeconfig}; point kubectl at it with:");
    println!();
    println!("    export KUBECONFIG={kubeconfig}");
    println!("    kubectl get namespaces");
    println!();
    println!("Press Ctrl-C to stop.");
    stopped.await?;
    println!("stopping the embedded cluster and its pods");
    cluster.shutdown().await;
    Ok(ExitCode::SUCCESS)
}
