//! Estimated against realised accuracy, driftline side. For each dataset
//! `prepare.py` wrote to WORK_DIR (`<name>/train.csv`, `reference.csv`,
//! `windows.csv` with a `window` column), trains a classifier with
//! driftline (calibrated on its own validation split, as every classifier
//! now is), predicts the reference rows and every window, and writes:
//!
//! - `<name>/predictions.csv`: `set,window,y_true,y_pred,p_<class>…`, the
//!   calibrated probabilities the server would return, which NannyML's CBPE
//!   receives too;
//! - `<name>/driftline.csv`: per window, driftline's estimate (the mean
//!   top-class probability, through `drift::ConfidenceTally`, the server's
//!   own tally) and the seconds that took, timed over many repetitions.
//!
//! Run through `bench/estimate/run.sh`.

use std::fmt::Write as _;
use std::time::Instant;

use candle_core::Device;
use driftline::api::load_model_config;
use driftline::data::{Cell, Table};
use driftline::drift::ConfidenceTally;
use driftline::ml::{FeatureBatch, LoadedModel, fit};

/// Repetitions of each window's estimate: one takes microseconds, below a
/// clock's useful resolution.
const REPEATS: u32 = 2_000;

fn io(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

fn read(path: &std::path::Path) -> std::io::Result<Table> {
    let bytes = std::fs::read(path)?;
    Table::from_csv(&path.display().to_string(), bytes.as_slice()).map_err(io)
}

fn text(cell: &Cell) -> String {
    match cell {
        Cell::Number(x) => format!("{x}"),
        Cell::Text(t) => t.clone(),
        Cell::Missing => String::new(),
    }
}

/// The classifier each dataset trains: the bundled wine pipeline's network.
fn spec(target: &str) -> driftline::api::ModelSpec {
    load_model_config(&format!(
        r#"
task: classification
data: {{source: train.csv, target: {target}}}
architecture: {{type: mlp, hiddenLayers: [64, 32], activation: relu, dropout: 0.1}}
training: {{epochs: 60, batchSize: 64, learningRate: 0.003, seed: 7, earlyStopping: {{patience: 15}}}}
"#
    ))
    .expect("bench spec is valid")
}

fn main() -> std::io::Result<()> {
    let work = std::path::PathBuf::from(
        std::env::args()
            .nth(1)
            .ok_or_else(|| io("usage: estimate_bench WORK_DIR"))?,
    );
    let rt = tokio::runtime::Runtime::new()?;
    for (name, target) in [("wine", "quality"), ("breast_cancer", "target")] {
        let dir = work.join(name);
        let train = read(&dir.join("train.csv"))?;
        let model = fit(&spec(target), &train, None, &Device::Cpu, false).map_err(io)?;
        let calibration = model.manifest.calibration;
        // A rerun's model replaces the last run's (artifacts are immutable).
        match std::fs::remove_dir_all(dir.join("model")) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let uri = dir.join("model").display().to_string();
        rt.block_on(model.save(&uri)).map_err(io)?;
        let loaded = rt.block_on(LoadedModel::load(&uri)).map_err(io)?;
        let classes = loaded.manifest().classes.clone();
        let mut out = String::from("set,window,y_true,y_pred");
        for c in &classes {
            let _ = write!(out, ",p_{c}");
        }
        out.push('\n');
        let mut estimates = String::from("window,rows,estimate,seconds\n");
        for set in ["reference", "windows"] {
            let table = read(&dir.join(format!("{set}.csv")))?;
            let window: Vec<String> = match table.position("window") {
                Some(j) => table.columns[j].iter().map(text).collect(),
                None => vec!["reference".into(); table.rows],
            };
            let truth: Vec<String> = table
                .column(target, set)
                .map_err(io)?
                .iter()
                .map(text)
                .collect();
            let batch =
                FeatureBatch::from_table(&loaded.manifest().features, &table).map_err(io)?;
            let p = loaded.predict(&batch).map_err(io)?;
            let probabilities = p.probabilities.unwrap_or_default();
            for i in 0..table.rows {
                let _ = write!(out, "{set},{},{},{}", window[i], truth[i], p.labels[i]);
                for v in &probabilities[i] {
                    let _ = write!(out, ",{v}");
                }
                out.push('\n');
            }
            if set != "windows" {
                continue;
            }
            let mut names: Vec<&String> = window.iter().collect();
            names.dedup();
            for w in names {
                let rows: Vec<&Vec<f32>> = probabilities
                    .iter()
                    .zip(&window)
                    .filter(|(_, x)| *x == w)
                    .map(|(p, _)| p)
                    .collect();
                // What the server adds per row, and the estimate read from it.
                let started = Instant::now();
                let mut estimate = 0.0;
                for _ in 0..REPEATS {
                    let mut tally = ConfidenceTally::default();
                    for r in &rows {
                        tally.observe_probabilities(std::hint::black_box(r));
                    }
                    estimate = tally.estimated_accuracy().unwrap_or(f64::NAN);
                }
                let seconds = started.elapsed().as_secs_f64() / f64::from(REPEATS);
                let _ = writeln!(estimates, "{w},{},{estimate},{seconds}", rows.len());
            }
        }
        std::fs::write(dir.join("predictions.csv"), out)?;
        std::fs::write(dir.join("driftline.csv"), estimates)?;
        println!(
            "{name}: trained on {} rows; calibration {calibration:?}",
            train.rows
        );
    }
    Ok(())
}
