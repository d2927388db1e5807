//! driftline's side of the registry benchmark (bench/registry/run.sh): logs
//! one model's 1 000 versions — lineage, gate evaluation with metrics, a
//! 20-epoch training curve and a champion change each — to the registry,
//! then times `history` (all 1 000 versions with gate metrics).
//!
//!   cargo run --example registry_bench -- URL [URL…]   # prints one JSON line per URL
//!
//! Each URL is written two ways: through the buffered writer the operator
//! uses (batched transactions) and with one transaction per version (what a
//! client logging run by run does, like MLflow's `log_batch` per run).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use driftline::registry::{
    ChampionAction, ChampionChange, EpochRecord, EvaluationRecord, ModelRef, Record, Registry,
    RegistryUrl, RegistryWriter, ValidationMetric, VersionRecord, WriterOptions,
};

const VERSIONS: u32 = 1_000;
const EPOCHS: u32 = 20;
const HISTORY_REPEATS: usize = 30;

fn at(seconds: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_790_000_000 + seconds, 0).unwrap()
}

/// The records of one version: the same data the MLflow side logs.
fn version_records(model: &ModelRef, n: u32) -> Vec<Record> {
    let accuracy = 0.80 + f64::from(n % 17) / 100.0;
    let mut records: Vec<Record> = vec![
        VersionRecord {
            model: model.clone(),
            version: n,
            trigger: "Drift".into(),
            reason: format!("drifted share 0.6 over 0.5 for 3 windows (v{n})"),
            seed: 7,
            config_hash: "cfg-1a2b3c".into(),
            dataset_digest: Some(format!("sha256:{n:064x}")),
            artifact_uri: Some(format!("s3://models/{}/v{n}/", model.name)),
            feedback_rows: Some(u64::from(n) * 10),
            code_version: "0.1.0".into(),
            created_at: at(i64::from(n) * 3600),
            start: None,
        }
        .into(),
        EvaluationRecord {
            model: model.clone(),
            version: n,
            passed: accuracy >= 0.85,
            summary: if accuracy >= 0.85 {
                "passed 3/3"
            } else {
                "failed 1/3"
            }
            .into(),
            metrics: BTreeMap::from([
                ("accuracy".into(), accuracy),
                ("macroF1".into(), accuracy - 0.1),
                ("logLoss".into(), 1.0 - accuracy),
            ]),
            report: serde_json::json!({"verdict": {"passed": accuracy >= 0.85}}),
            evaluated_at: at(i64::from(n) * 3600 + 600),
        }
        .into(),
    ];
    for epoch in 1..=EPOCHS {
        records.push(
            EpochRecord {
                model: model.clone(),
                version: n,
                epoch,
                train_loss: 1.0 / f64::from(epoch),
                validation_loss: Some(1.1 / f64::from(epoch)),
                validation_metric: Some(ValidationMetric {
                    name: "accuracy".into(),
                    value: accuracy * f64::from(epoch) / f64::from(EPOCHS),
                }),
            }
            .into(),
        );
    }
    records.push(
        ChampionChange {
            model: model.clone(),
            at: at(i64::from(n) * 3600 + 1800),
            action: ChampionAction::Promote,
            from: (n > 1).then(|| n - 1),
            to: Some(n),
            trigger: "CanaryPassed".into(),
            actor: None,
            reason: format!("v{n} passed 3/3 canary steps"),
        }
        .into(),
    );
    records
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let urls: Vec<String> = std::env::args().skip(1).collect();
    if urls.is_empty() {
        return Err("usage: registry_bench URL [URL…]".into());
    }
    for url in urls {
        let parsed = RegistryUrl::parse(&url)?;
        let registry = Registry::connect(&url).await?;
        let run = format!("{}", Utc::now().timestamp_micros());

        // 1. The operator's buffered writer: submit everything, wait for it.
        let buffered = ModelRef::new("bench", format!("buffered-{run}"));
        let records: Vec<Record> = (1..=VERSIONS)
            .flat_map(|n| version_records(&buffered, n))
            .collect();
        let total = records.len();
        let writer = RegistryWriter::start_with(parsed.clone(), WriterOptions::default());
        let started = Instant::now();
        for record in records {
            writer.submit(record)?;
        }
        writer.flush().await;
        let buffered_secs = started.elapsed().as_secs_f64();
        let stats = writer.stats();
        assert_eq!((stats.written, stats.rejected), (total as u64, 0));
        drop(writer);

        // 2. One transaction per version.
        let per_version = ModelRef::new("bench", format!("per-version-{run}"));
        let started = Instant::now();
        for n in 1..=VERSIONS {
            registry
                .write_all(&version_records(&per_version, n))
                .await?;
        }
        let per_version_secs = started.elapsed().as_secs_f64();

        // 3. `driftline history`: 1 000 versions with their gate metrics.
        let mut times = Vec::with_capacity(HISTORY_REPEATS);
        for _ in 0..HISTORY_REPEATS {
            let started = Instant::now();
            let history = registry.history(&per_version, None).await?;
            times.push(started.elapsed());
            assert_eq!(history.len(), VERSIONS as usize);
            assert!(history.iter().all(|h| h.gate.is_some()));
        }
        times.sort();
        let trail = registry.audit_trail(&per_version).await?;
        assert_eq!(trail.len(), VERSIONS as usize);

        println!(
            "{}",
            serde_json::json!({
                "tool": "driftline",
                "backend": format!("{:?}", parsed.backend()),
                "url": parsed.to_string(),
                "versions": VERSIONS,
                "records": total,
                "buffered_writer_records_per_s": total as f64 / buffered_secs,
                "buffered_writer_s": buffered_secs,
                "per_version_tx_records_per_s": total as f64 / per_version_secs,
                "per_version_tx_s": per_version_secs,
                "history_1000_ms_p50": percentile(&times, 0.5),
                "history_1000_ms_p95": percentile(&times, 0.95),
                "history_repeats": HISTORY_REPEATS,
            })
        );
        registry.close().await;
    }
    Ok(())
}
