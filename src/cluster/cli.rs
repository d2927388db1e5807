//! `driftline cluster`.

use std::process::ExitCode;

/// Arguments of `driftline cluster`.
#[derive(Debug, clap::Args)]
pub struct ClusterArgs {}

/// Runs `driftline cluster`.
pub async fn run(_args: ClusterArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("driftline cluster is being built")
}
