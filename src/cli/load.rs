//! `driftline load`: steady traffic (and labels) for a model server or gateway.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use crate::api::{Task, load_model_file};
use crate::serve::{LoadPlan, RowOrder, run_load as run};

/// Flags of `driftline load`.
#[derive(clap::Args, Debug, Clone)]
pub struct LoadArgs {
    /// Base URL of the gateway or model server, e.g. `http://wine-quality.ml.svc:8080`.
    #[arg(long)]
    pub url: String,
    /// The Model YAML whose data and target to use (path or URI).
    #[arg(long, short = 'f')]
    pub file: String,
    /// Rows to send instead of the gateway's test set (CSV or JSONL; default: `spec.gate.testSet`, else `spec.data.source`).
    #[arg(long)]
    pub data: Option<String>,
    /// Rows to switch to after `--shift-after` (a shifted dataset, to watch drift).
    #[arg(long)]
    pub shifted: Option<String>,
    /// When to switch to `--shifted`.
    #[arg(long, default_value = "0s", value_parser = super::flags::duration)]
    pub shift_after: Duration,
    /// Requests per second.
    #[arg(long, default_value = "20", value_parser = super::flags::rate)]
    pub rate: f64,
    /// How long to send.
    #[arg(long, default_value = "60s", value_parser = super::flags::duration)]
    pub duration: Duration,
    /// Stop after this many requests (default: when `--duration` ends).
    #[arg(long)]
    pub requests: Option<u64>,
    /// Rows per request.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch: u32,
    /// The order rows are sent in: `shuffled` (each pass in a fresh random
    /// order, as independent clients would send them) or `file` (the file's
    /// own order, to replay a log).
    #[arg(long, default_value = "shuffled")]
    pub order: RowOrder,
    /// Seed of the shuffled order (the same seed sends the same rows).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Do not send labels through the feedback endpoint.
    #[arg(long)]
    pub no_labels: bool,
    /// Most requests in flight.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    pub concurrency: u32,
    /// The embedded cluster's hosts file, to reach `*.svc` names from outside it.
    #[arg(long, env = crate::net::HOSTS_FILE_ENV)]
    pub hosts_file: Option<std::path::PathBuf>,
}

/// Runs `driftline load` and prints the report as JSON.
pub async fn run_load(args: LoadArgs) -> anyhow::Result<ExitCode> {
    let bytes = crate::data::store::read_bytes(&args.file)
        .await
        .with_context(|| format!("cannot read --file {}", args.file))?;
    let text = String::from_utf8_lossy(&bytes);
    let file = load_model_file(&text).with_context(|| format!("--file {}", args.file))?;
    let model = file.name.context("--file has no metadata.name")?;
    let spec = file.spec;
    let source = args
        .data
        .clone()
        .or_else(|| spec.gate.as_ref().map(|g| g.test_set.clone()))
        .unwrap_or_else(|| spec.data.source.clone());
    let data = crate::data::read_table(&source, None)
        .await
        .with_context(|| format!("cannot read rows from {source}"))?;
    let shifted = match &args.shifted {
        Some(uri) => Some(Arc::new(
            crate::data::read_table(uri, None)
                .await
                .with_context(|| format!("cannot read --shifted {uri}"))?,
        )),
        None => None,
    };
    let task: Task = spec.task;
    let http = crate::net::service_http_client(Duration::from_secs(30), args.hosts_file);
    let plan = LoadPlan {
        base: args.url.clone(),
        model,
        data: Arc::new(data),
        shifted,
        shift_after: args.shift_after,
        rate: args.rate,
        duration: args.duration,
        requests: args.requests,
        batch: args.batch as usize,
        order: match args.order {
            RowOrder::Shuffled { .. } => RowOrder::Shuffled { seed: args.seed },
            RowOrder::File => RowOrder::File,
        },
        label: (!args.no_labels).then(|| (spec.data.target.clone(), task)),
        concurrency: args.concurrency as usize,
    };
    let report = run(&http, plan).await?;
    println!(
        "{}",
        serde_json::json!({
            "sent": report.sent,
            "ok": report.ok,
            "errors": report.errors,
            "byVersion": report.by_version,
            "shifted": report.shifted,
            "labelled": report.labelled,
            "accuracy": (report.scored > 0).then(|| report.correct as f64 / report.scored as f64),
        })
    );
    Ok(if report.errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
