//! Drift benchmark, driftline side: fits a reference profile on 100 000 × 20
//! rows, times sketch updates for 100 000 live rows and the computation of
//! every statistic, and writes the data (as CSV) plus the per-feature values
//! and bin indices for the Evidently comparison in `evidently_drift.py`.
//!
//! Run through `bench/drift/run.sh`.

use std::io::Write;
use std::time::Instant;

use chrono::Utc;
use driftline::api::DriftSpec;
use driftline::drift::{
    DatasetSketch, DriftConfig, FeatureProfile, NumericProfile, Observation, ReferenceProfile,
    compare,
};
use rand::{Rng, SeedableRng, rngs::StdRng};

const ROWS: usize = 100_000;
const FEATURES: usize = 20;

fn normal(rng: &mut StdRng) -> f64 {
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// Column-major data: feature j ~ N(j, 1 + j/10), shifted by `shift(j)` standard deviations.
fn data(seed: u64, shift: impl Fn(usize) -> f64) -> Vec<Vec<f64>> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..FEATURES)
        .map(|j| {
            let sd = 1.0 + j as f64 / 10.0;
            (0..ROWS)
                .map(|_| j as f64 + sd * (normal(&mut rng) + shift(j)))
                .collect()
        })
        .collect()
}

fn write_csv(path: &std::path::Path, columns: &[Vec<f64>]) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    let header: Vec<String> = (0..FEATURES).map(|j| format!("f{j}")).collect();
    writeln!(out, "{}", header.join(","))?;
    for i in 0..ROWS {
        let row: Vec<String> = columns.iter().map(|c| format!("{}", c[i])).collect();
        writeln!(out, "{}", row.join(","))?;
    }
    out.flush()
}

fn main() -> std::io::Result<()> {
    let work = std::path::PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "bench/drift/work".into()),
    );
    std::fs::create_dir_all(&work)?;
    let reference = data(1, |_| 0.0);
    // Every fourth feature drifts by half a standard deviation.
    let current = data(2, |j| if j % 4 == 0 { 0.5 } else { 0.0 });

    let fit_started = Instant::now();
    let features: Vec<FeatureProfile> = reference
        .iter()
        .enumerate()
        .map(|(j, values)| {
            let name = format!("f{j}");
            let profile = NumericProfile::fit(&name, values, 10)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            Ok(FeatureProfile::Numeric { name, profile })
        })
        .collect::<std::io::Result<_>>()?;
    let fit_seconds = fit_started.elapsed().as_secs_f64();
    // Predictions are not part of Evidently's data-drift report; keep them constant.
    let prediction = FeatureProfile::Numeric {
        name: "prediction".into(),
        profile: NumericProfile::fit("prediction", &[0.0, 1.0], 1)
            .map_err(|e| std::io::Error::other(e.to_string()))?,
    };
    let profile = ReferenceProfile::new(features, prediction);

    let started = Instant::now();
    let mut sketch = DatasetSketch::for_profile(&profile);
    // Row i is read across the columns, so an index loop is the clear form here.
    #[allow(clippy::needless_range_loop)]
    for i in 0..ROWS {
        sketch.observe_row(
            &profile,
            |j| Observation::Number(current[j][i]),
            Observation::Number(0.5),
        );
    }
    let update_seconds = started.elapsed().as_secs_f64();

    let config = DriftConfig::from(DriftSpec {
        window: ROWS as u32,
        ..Default::default()
    });
    let started = Instant::now();
    let report = compare(&profile, &config, &sketch, Utc::now(), None);
    let stats_seconds = started.elapsed().as_secs_f64();

    write_csv(&work.join("reference.csv"), &reference)?;
    write_csv(&work.join("current.csv"), &current)?;
    let edges: Vec<Vec<f64>> = profile
        .features
        .iter()
        .map(|f| match f {
            FeatureProfile::Numeric { profile, .. } => profile.edges.clone(),
            FeatureProfile::Categorical { .. } => vec![],
        })
        .collect();
    let result = serde_json::json!({
        "rows": ROWS,
        "features": FEATURES,
        "fitSeconds": fit_seconds,
        "updateSeconds": update_seconds,
        "rowsPerSecond": ROWS as f64 / update_seconds,
        "statisticsSeconds": stats_seconds,
        "edges": edges,
        "drift": report.features,
    });
    std::fs::write(
        work.join("driftline.json"),
        serde_json::to_vec_pretty(&result).map_err(std::io::Error::other)?,
    )?;
    println!(
        "driftline: fit {fit_seconds:.3} s, sketch update {update_seconds:.4} s ({:.0} rows/s), all statistics {:.6} s",
        ROWS as f64 / update_seconds,
        stats_seconds
    );
    Ok(())
}
