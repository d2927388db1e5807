//! `driftline serve` and `driftline gateway`.

use std::process::ExitCode;

/// Arguments of `driftline serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {}

/// Arguments of `driftline gateway`.
#[derive(Debug, clap::Args)]
pub struct GatewayArgs {}

/// Runs `driftline serve`.
pub async fn serve(_args: ServeArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("driftline serve is being built")
}

/// Runs `driftline gateway`.
pub async fn gateway(_args: GatewayArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("driftline gateway is being built")
}
