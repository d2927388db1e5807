//! `driftline train` and `driftline evaluate`.

use std::process::ExitCode;

/// Arguments of `driftline train`.
#[derive(Debug, clap::Args)]
pub struct TrainArgs {}

/// Arguments of `driftline evaluate`.
#[derive(Debug, clap::Args)]
pub struct EvaluateArgs {}

/// Runs `driftline train`.
pub async fn train(_args: TrainArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("driftline train is being built")
}

/// Runs `driftline evaluate`.
pub async fn evaluate(_args: EvaluateArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("driftline evaluate is being built")
}
