//! Drift verdicts on the bundled synthetic pipeline, driftline side: trains
//! the pipeline's model on the first 2 000 rows of `reference.csv` (timing
//! the calibration and permutation importance it adds), then judges 500-row
//! windows (40 in distribution, 10 covariate-shifted, 2 concept-drifted)
//! with the default calibrated, importance-weighted rule, timing the sketch
//! update and verdict of each. Writes the reference rows, the windows and
//! the verdicts to WORK_DIR for `compare_windows.py`, which runs Evidently
//! and NannyML on the same windows.
//!
//! Run through `bench/drift/run.sh`.

use std::fmt::Write as _;
use std::time::Instant;

use candle_core::Device;
use chrono::Utc;
use driftline::api::DriftSpec;
use driftline::api::load_model_config;
use driftline::data::{Cell, Table};
use driftline::drift::{DriftConfig, DriftMonitor, Observation};
use driftline::ml::synth::{self, Shift};
use driftline::ml::{FeatureBatch, LoadedModel, fit};

const WINDOW: usize = 500;

fn io(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

fn rows(table: &Table, range: std::ops::Range<usize>) -> Table {
    table.select(&range.collect::<Vec<_>>())
}

fn csv(table: &Table) -> String {
    let mut out = table.names.join(",");
    out.push('\n');
    for i in 0..table.rows {
        let row: Vec<String> = table
            .columns
            .iter()
            .map(|c| match &c[i] {
                Cell::Number(x) => format!("{x}"),
                Cell::Text(t) => t.clone(),
                Cell::Missing => String::new(),
            })
            .collect();
        let _ = writeln!(out, "{}", row.join(","));
    }
    out
}

fn windows_of(table: &Table, kind: &str, out: &mut Vec<(String, Table)>) {
    for start in (0..table.rows / WINDOW).map(|w| w * WINDOW) {
        out.push((kind.to_string(), rows(table, start..start + WINDOW)));
    }
}

fn main() -> std::io::Result<()> {
    let work = std::path::PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "bench/drift/work".into()),
    );
    std::fs::create_dir_all(&work)?;
    let read = |path: &str| -> std::io::Result<Table> {
        Table::from_csv(path, &std::fs::read(path)?).map_err(io)
    };
    let reference = read("pipelines/data/synthetic/reference.csv")?;
    let train = rows(&reference, 0..2_000);
    let spec = load_model_config(
        "task: classification\n\
         data: {source: reference.csv, target: label}\n\
         architecture: {type: mlp, hiddenLayers: [32, 16]}\n\
         training: {epochs: 30, batchSize: 64, learningRate: 0.01, seed: 7}\n\
         drift: {window: 500}\n",
    )
    .map_err(io)?;
    let started = Instant::now();
    let trained = fit(&spec, &train, None, &Device::Cpu, false).map_err(io)?;
    let train_seconds = started.elapsed().as_secs_f64();
    let dir = work.join("model");
    // Artifacts are immutable; this run's model replaces the last run's.
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    let uri = dir.display().to_string();
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(trained.save(&uri)).map_err(io)?;
    let model = rt.block_on(LoadedModel::load(&uri)).map_err(io)?;

    // The same windows for every tool: 40 in distribution (the held-back
    // half of reference.csv, then fresh rows of the generator), 10 with the
    // bundled covariate shift, 2 with the bundled concept drift.
    let mut windows = Vec::new();
    windows_of(&rows(&reference, 2_000..4_000), "reference", &mut windows);
    let fresh =
        |n, seed, shift| Table::from_csv("generated", synth::generate(n, seed, shift).as_bytes());
    windows_of(
        &fresh(18_000, 11, Shift::None).map_err(io)?,
        "reference",
        &mut windows,
    );
    windows_of(
        &read("pipelines/data/synthetic/covariate-shift.csv")?,
        "covariate",
        &mut windows,
    );
    windows_of(
        &fresh(4_000, 12, Shift::Covariate).map_err(io)?,
        "covariate",
        &mut windows,
    );
    windows_of(
        &read("pipelines/data/synthetic/concept-drift.csv")?,
        "concept",
        &mut windows,
    );

    let features = &model.manifest().features;
    let config = DriftConfig::from(DriftSpec {
        window: WINDOW as u32,
        ..Default::default()
    });
    let mut monitor =
        DriftMonitor::new(model.manifest().reference.clone(), config, Utc::now()).map_err(io)?;
    let mut verdicts = Vec::new();
    let mut all = String::new();
    for (w, (kind, table)) in windows.iter().enumerate() {
        let batch = FeatureBatch::from_table(features, table).map_err(io)?;
        // Predictions are the model's work, not drift's; made before the clock starts.
        let predicted = model.predict(&batch).map_err(io)?;
        let started = Instant::now();
        let closed = monitor.observe_rows(
            batch.rows,
            |j, i| match &batch.columns[j][i] {
                Cell::Number(x) => Observation::Number(*x),
                Cell::Text(t) => Observation::Text(t),
                Cell::Missing => Observation::Missing,
            },
            |i| Observation::Text(&predicted.labels[i]),
            // The confidence tally (estimated accuracy) is bench/estimate's.
            |_| None,
            Utc::now(),
        );
        let seconds = started.elapsed().as_secs_f64();
        let report = closed
            .into_iter()
            .next()
            .ok_or_else(|| io("window did not close"))?;
        verdicts.push(serde_json::json!({
            "window": w,
            "kind": kind,
            "seconds": seconds,
            "datasetDrifted": report.dataset_drifted,
            "reason": report.reason,
            "features": report.features.iter().map(|f| serde_json::json!({
                "name": f.name, "value": f.value, "threshold": f.threshold,
                "weight": f.weight, "drifted": f.drifted,
            })).collect::<Vec<_>>(),
            "prediction": {"value": report.prediction.value, "threshold": report.prediction.threshold,
                           "drifted": report.prediction.drifted},
        }));
        let mut text = csv(table);
        if w > 0 {
            // One header for the whole file.
            text = text
                .split_once('\n')
                .map_or(String::new(), |(_, rest)| rest.to_string());
        }
        all.push_str(&text);
    }
    std::fs::write(work.join("train.csv"), csv(&train))?;
    std::fs::write(work.join("windows.csv"), all)?;
    let reference_profile = &model.manifest().reference;
    let result = serde_json::json!({
        "windowRows": WINDOW,
        "trainSeconds": train_seconds,
        "importance": reference_profile.importance,
        "windows": verdicts,
    });
    std::fs::write(
        work.join("driftline_windows.json"),
        serde_json::to_vec_pretty(&result).map_err(io)?,
    )?;
    println!(
        "driftline: trained in {train_seconds:.2} s (calibration and importance included); {} windows judged",
        windows.len()
    );
    Ok(())
}
