//! `driftline datacheck`: the CPU step before training. Reads the run's
//! window, computes its statistics, judges them against `gate.data` and the
//! champion's training statistics (`policy::data_verdict`), and leaves the
//! report (`datacheck.json`) for the operator.
//!
//! Exit codes: 0 passed (or `--report-only` with the report written), 1
//! failed, 2 usage or input error.

use std::collections::BTreeMap;
use std::process::ExitCode;

use bytes::Bytes;

use crate::api::{DataCheck, DataCheckReport, DataStats, DataVerdict};
use crate::data;
use crate::ml;
use crate::ml::MlError;
use crate::policy;

use super::ml::read_config;

/// Arguments of `driftline datacheck`.
#[derive(Debug, clap::Args)]
pub struct DataCheckArgs {
    /// Model YAML: a `Model` resource or a bare spec (path, URI or `env:NAME`).
    #[arg(long, short = 'c')]
    pub config: String,
    /// The training start `data.window` counts back from (RFC 3339); now when absent.
    #[arg(long)]
    pub as_of: Option<chrono::DateTime<chrono::Utc>>,
    /// The champion's artifact: its training statistics are the baseline.
    #[arg(long)]
    pub champion: Option<String>,
    /// Also write the JSON report here (path or URI).
    #[arg(long)]
    pub report: Option<String>,
    /// Exit 0 once the report is written, whatever the verdict (the
    /// operator's Job: refused data is a result, not a failed Job).
    #[arg(long, requires = "report")]
    pub report_only: bool,
}

/// The champion's manifest: its training statistics and drift reference.
async fn champion_manifest(uri: &str) -> Result<ml::Manifest, MlError> {
    Ok(ml::read_manifest(uri).await?)
}

/// Runs `driftline datacheck`.
pub async fn run(args: DataCheckArgs) -> Result<ExitCode, MlError> {
    let spec = read_config(&args.config).await?.spec;
    let as_of = args.as_of.unwrap_or_else(chrono::Utc::now);
    let manifest = match &args.champion {
        Some(uri) => Some(champion_manifest(uri).await?),
        None => None,
    };
    let champion = manifest.as_ref().and_then(|m| m.data_stats.clone());
    let ranges: BTreeMap<String, (f64, f64)> = champion
        .iter()
        .flat_map(|c| &c.columns)
        .filter(|(_, s)| s.numeric())
        .filter_map(|(name, s)| Some((name.clone(), (s.min?, s.max?))))
        .collect();
    let reference = manifest
        .as_ref()
        .map(|m| &m.reference)
        .filter(|r| !r.features.is_empty());
    // The window is read batch by batch: the statistics keep one hash per
    // row, so the check's memory does not grow with the window's width.
    let scanned = async {
        let listing = data::list(&spec.data, as_of).await?;
        let order: Vec<usize> = (0..listing.files.len()).collect();
        let mut stats = data::Statistics::new(&spec.data.target, ranges);
        // The window's drift from what the champion was trained on, judged
        // by the Model's own drift rule.
        let mut drift = reference.map(ml::WindowDrift::new);
        data::scan::<data::DataError>(
            &spec.data,
            &listing,
            &order,
            None,
            &mut |_, _| Ok(()),
            |rows| {
                let features = data::feature_columns(&spec.data, &rows.table.names);
                stats.add(rows.table, &features);
                if let Some(d) = drift.as_mut() {
                    d.add(rows.table);
                }
                Ok(())
            },
        )
        .await?;
        if stats.rows() == 0 {
            return Err(data::empty_window(&listing));
        }
        let drift = drift.map(|d| d.judge(&spec.drift, as_of));
        Ok((listing, stats.finish(), drift))
    }
    .await;
    let report = match scanned {
        Ok((listing, stats, drift)) => {
            let verdict = policy::data_verdict(
                &spec.data_check(),
                spec.task,
                &stats,
                champion.as_ref(),
                drift.as_ref(),
            );
            DataCheckReport {
                source: spec.data.source.clone(),
                digest: listing.digest(),
                files: listing.files.iter().map(|f| f.uri.clone()).collect(),
                stats,
                champion: args.champion.clone(),
                verdict,
                error: None,
            }
        }
        // Unreadable data is refused data: the report names the file, and
        // the operator shows it instead of retrying a Job that cannot pass.
        Err(e) if args.report.is_some() => {
            let message = crate::error_chain(&e);
            DataCheckReport {
                source: spec.data.source.clone(),
                digest: String::new(),
                files: Vec::new(),
                stats: DataStats::default(),
                champion: args.champion.clone(),
                verdict: DataVerdict {
                    passed: false,
                    checks: vec![DataCheck {
                        name: "readable".into(),
                        column: None,
                        class: None,
                        value: None,
                        bound: None,
                        passed: false,
                        blocking: true,
                        message: message.clone(),
                    }],
                },
                error: Some(message),
            }
        }
        Err(e) => return Err(e.into()),
    };
    let json = serde_json::to_string_pretty(&report)?;
    if let Some(uri) = &args.report {
        data::store::write_object(uri, Bytes::from(json.clone())).await?;
    }
    println!("{json}");
    for check in &report.verdict.checks {
        let mark = match (check.passed, check.blocking) {
            (true, _) => "pass",
            (false, true) => "FAIL",
            (false, false) => "warn",
        };
        eprintln!("{mark}  {}", check.message);
    }
    eprintln!("data check {}", report.verdict.summary());
    Ok(if report.verdict.passed || args.report_only {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
