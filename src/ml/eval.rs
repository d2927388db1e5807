//! Evaluation of one model on a curated regression test-set: metrics,
//! slices, must-pass golden examples and compute budgets, all measured
//! through the same prediction path the server uses.

use std::time::{Duration, Instant};

use crate::api::{
    BudgetReport, GateReport, GateSpec, MustPassFailure, MustPassReport, SliceCondition,
    SliceReport, Task,
};

use super::artifact::{LoadedModel, Predictions};
use super::error::MlError;
use super::metrics;
use super::preprocess::{self, FeatureBatch};
use crate::data::{DecodeLimits, ImageSet, Pixels, Table, decode_image as decode};

/// Single-row predictions timed for the latency percentiles.
const LATENCY_SAMPLES: usize = 200;
/// Least time spent measuring batch throughput.
const THROUGHPUT_TIME: Duration = Duration::from_millis(200);

/// The test set's truth for one model's target.
enum Truth {
    Labels(Vec<String>),
    Values(Vec<f64>),
}

fn truth_of(model: &LoadedModel, table: &Table) -> Result<Truth, MlError> {
    let target = &model.manifest().target;
    match model.manifest().task {
        Task::Classification => Ok(Truth::Labels(preprocess::labels(table, target)?)),
        Task::Regression => Ok(Truth::Values(preprocess::values(table, target)?)),
    }
}

fn metrics_on(
    model: &LoadedModel,
    truth: &Truth,
    pred: &Predictions,
    rows: &[usize],
) -> std::collections::BTreeMap<String, f64> {
    match truth {
        Truth::Labels(labels) => {
            let t: Vec<String> = rows.iter().map(|&r| labels[r].clone()).collect();
            let p: Vec<String> = rows.iter().map(|&r| pred.labels[r].clone()).collect();
            let probs: Vec<Vec<f32>> = pred
                .probabilities
                .as_ref()
                .map(|all| rows.iter().map(|&r| all[r].clone()).collect())
                .unwrap_or_default();
            metrics::classification(&model.manifest().classes, &t, &p, &probs)
        }
        Truth::Values(values) => {
            let t: Vec<f64> = rows.iter().map(|&r| values[r]).collect();
            let p: Vec<f64> = rows.iter().map(|&r| pred.values[r]).collect();
            metrics::regression(&t, &p)
        }
    }
}

/// Rows of `table` a slice selects; its columns must exist.
pub fn slice_rows(
    table: &Table,
    name: &str,
    conditions: &std::collections::BTreeMap<String, String>,
) -> Result<Vec<usize>, MlError> {
    let mut parsed = Vec::new();
    for (column, condition) in conditions {
        let cond = SliceCondition::parse(condition).map_err(|source| MlError::Slice {
            slice: name.into(),
            source,
        })?;
        let cells = table.column(column, &format!("slice `{name}`"))?;
        parsed.push((cells, cond));
    }
    Ok((0..table.rows)
        .filter(|&r| parsed.iter().all(|(cells, cond)| cells[r].matches(cond)))
        .collect())
}

fn percentile(sorted_ms: &[f64], q: f64) -> f64 {
    if sorted_ms.is_empty() {
        return 0.0;
    }
    let idx = ((sorted_ms.len() as f64 - 1.0) * q).round() as usize;
    sorted_ms[idx.min(sorted_ms.len() - 1)]
}

fn measure_budgets(model: &LoadedModel, batch: &FeatureBatch) -> Result<BudgetReport, MlError> {
    let mut latencies = Vec::with_capacity(LATENCY_SAMPLES);
    if batch.rows > 0 {
        let single = |r: usize| FeatureBatch {
            rows: 1,
            columns: batch.columns.iter().map(|c| vec![c[r].clone()]).collect(),
        };
        // Warm-up so the first allocation is not counted.
        for r in 0..batch.rows.min(10) {
            model.predict(&single(r))?;
        }
        for i in 0..LATENCY_SAMPLES {
            let row = single(i % batch.rows);
            let start = Instant::now();
            model.predict(&row)?;
            latencies.push(start.elapsed().as_secs_f64() * 1000.0);
        }
    }
    latencies.sort_by(f64::total_cmp);
    let mut predicted_rows = 0usize;
    let start = Instant::now();
    while batch.rows > 0 && (start.elapsed() < THROUGHPUT_TIME || predicted_rows == 0) {
        model.predict(batch)?;
        predicted_rows += batch.rows;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let size_bytes = model.size_bytes();
    Ok(BudgetReport {
        p50_latency_ms: percentile(&latencies, 0.50),
        p99_latency_ms: percentile(&latencies, 0.99),
        throughput_rows_per_sec: if elapsed > 0.0 {
            predicted_rows as f64 / elapsed
        } else {
            0.0
        },
        size_bytes,
        size_mb: size_bytes as f64 / 1e6,
        parameters: model.manifest().parameters,
        images_per_second: None,
        image_batch_size: None,
    })
}

fn must_pass(
    model: &LoadedModel,
    spec: &GateSpec,
    golden: &Table,
) -> Result<MustPassReport, MlError> {
    let batch = FeatureBatch::from_table(&model.manifest().features, golden)?;
    let pred = model.predict(&batch)?;
    must_pass_of(model, spec, golden, &pred)
}

fn must_pass_of(
    model: &LoadedModel,
    spec: &GateSpec,
    golden: &Table,
    pred: &Predictions,
) -> Result<MustPassReport, MlError> {
    let mut failures = Vec::new();
    match truth_of(model, golden)? {
        Truth::Labels(expected) => {
            for (row, (e, p)) in expected.iter().zip(&pred.labels).enumerate() {
                if e != p {
                    failures.push(MustPassFailure {
                        row: row as u64 + 1,
                        expected: e.clone(),
                        predicted: p.clone(),
                    });
                }
            }
        }
        Truth::Values(expected) => {
            let tolerance = spec
                .must_pass_tolerance
                .ok_or_else(|| MlError::InvalidConfig {
                    field: "gate.mustPassTolerance".into(),
                    reason: "a regression model's must-pass examples need an absolute tolerance"
                        .into(),
                })?;
            for (row, (e, p)) in expected.iter().zip(&pred.values).enumerate() {
                if (e - p).abs() > tolerance {
                    failures.push(MustPassFailure {
                        row: row as u64 + 1,
                        expected: format!("{e} ± {tolerance}"),
                        predicted: format!("{p:.4}"),
                    });
                }
            }
        }
    }
    Ok(MustPassReport {
        source: golden.source.clone(),
        total: golden.rows as u64,
        passed: (golden.rows - failures.len()) as u64,
        failures,
    })
}

/// Images per forward pass when predicting a whole image set.
const IMAGE_CHUNK: usize = 256;
/// `gate.budgets.imageBatchSize` when unset: a typical request.
pub const DEFAULT_IMAGE_BATCH: u32 = 32;

/// Predictions for every image of a set, a chunk at a time.
fn predict_image_set(model: &LoadedModel, images: &[Pixels]) -> Result<Predictions, MlError> {
    let mut all = Predictions::default();
    for chunk in images.chunks(IMAGE_CHUNK) {
        let p = model.predict_images(chunk)?.predictions;
        all.labels.extend(p.labels);
        all.values.extend(p.values);
        if let Some(probabilities) = p.probabilities {
            all.probabilities
                .get_or_insert_with(Vec::new)
                .extend(probabilities);
        }
    }
    Ok(all)
}

/// Decodes files and predicts them: what serving one request costs.
fn serve_files(model: &LoadedModel, files: &[bytes::Bytes]) -> Result<(), MlError> {
    let images = files
        .iter()
        .filter_map(|f| decode(f, DecodeLimits::default()).ok())
        .collect::<Vec<_>>();
    model.predict_images(&images)?;
    Ok(())
}

fn image_budgets(
    model: &LoadedModel,
    test: &ImageSet,
    batch: u32,
) -> Result<BudgetReport, MlError> {
    let files = &test.files;
    let mut latencies = Vec::with_capacity(LATENCY_SAMPLES);
    if !files.is_empty() {
        for i in 0..files.len().min(10) {
            serve_files(model, &files[i..=i])?;
        }
        for i in 0..LATENCY_SAMPLES {
            let one = i % files.len();
            let start = Instant::now();
            serve_files(model, &files[one..=one])?;
            latencies.push(start.elapsed().as_secs_f64() * 1000.0);
        }
    }
    latencies.sort_by(f64::total_cmp);
    let batch = (batch.max(1) as usize).min(files.len().max(1));
    let mut images = 0usize;
    let mut next = 0usize;
    let start = Instant::now();
    while !files.is_empty() && (start.elapsed() < THROUGHPUT_TIME || images == 0) {
        let requests: Vec<bytes::Bytes> = (0..batch)
            .map(|k| files[(next + k) % files.len()].clone())
            .collect();
        serve_files(model, &requests)?;
        next = (next + batch) % files.len();
        images += batch;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let per_second = if elapsed > 0.0 {
        images as f64 / elapsed
    } else {
        0.0
    };
    let size_bytes = model.size_bytes();
    Ok(BudgetReport {
        p50_latency_ms: percentile(&latencies, 0.50),
        p99_latency_ms: percentile(&latencies, 0.99),
        throughput_rows_per_sec: per_second,
        size_bytes,
        size_mb: size_bytes as f64 / 1e6,
        parameters: model.manifest().parameters,
        images_per_second: Some(per_second),
        image_batch_size: Some(batch as u32),
    })
}

/// Evaluates an image model on an image test set (and golden images, when
/// given): metrics, slices over the index's columns, must-pass images, and
/// the budgets with decoding included (`imagesPerSecond` in batches of
/// `imageBatchSize`).
pub fn evaluate_images(
    model: &LoadedModel,
    spec: &GateSpec,
    test: &ImageSet,
    golden: Option<&ImageSet>,
) -> Result<GateReport, MlError> {
    let truth = truth_of(model, &test.index)?;
    let pred = predict_image_set(model, &test.images)?;
    let all: Vec<usize> = (0..test.index.rows).collect();
    let metrics = metrics_on(model, &truth, &pred, &all);
    let mut slices = Vec::with_capacity(spec.slices.len());
    for slice in &spec.slices {
        let rows = slice_rows(&test.index, &slice.name, &slice.where_)?;
        slices.push(SliceReport {
            name: slice.name.clone(),
            rows: rows.len() as u64,
            metrics: metrics_on(model, &truth, &pred, &rows),
        });
    }
    let must_pass = golden
        .map(|g| must_pass_of(model, spec, &g.index, &predict_image_set(model, &g.images)?))
        .transpose()?;
    let batch = spec
        .budgets
        .as_ref()
        .and_then(|b| b.image_batch_size)
        .unwrap_or(DEFAULT_IMAGE_BATCH);
    let budgets = image_budgets(model, test, batch)?;
    Ok(GateReport {
        model: model.uri().to_string(),
        fingerprint: model.manifest().fingerprint.clone(),
        weights_digest: model.manifest().weights_digest().to_string(),
        test_set: test.index.source.clone(),
        test_set_digest: test.index.digest.clone(),
        rows: test.index.rows as u64,
        metrics,
        slices,
        must_pass,
        budgets,
    })
}

/// Evaluates a model on the test set (and golden examples, when given).
pub fn evaluate(
    model: &LoadedModel,
    spec: &GateSpec,
    test: &Table,
    golden: Option<&Table>,
) -> Result<GateReport, MlError> {
    evaluated(model, spec, test, golden).map(|(report, _)| report)
}

/// [`evaluate`], and the test set counted over the model's drift reference
/// bins from the same predictions: the sample the operator compares each
/// live window with, to say when traffic has left the test set
/// (`TestSetStale`).
pub fn evaluate_with_test_set_sketch(
    model: &LoadedModel,
    spec: &GateSpec,
    test: &Table,
    golden: Option<&Table>,
) -> Result<(GateReport, crate::drift::DatasetSketch), MlError> {
    let (report, predictions) = evaluated(model, spec, test, golden)?;
    Ok((report, test_set_sketch(model, test, &predictions)?))
}

/// The report, and the predictions on the test set it was made from.
fn evaluated(
    model: &LoadedModel,
    spec: &GateSpec,
    test: &Table,
    golden: Option<&Table>,
) -> Result<(GateReport, Predictions), MlError> {
    let batch = FeatureBatch::from_table(&model.manifest().features, test)?;
    let truth = truth_of(model, test)?;
    let pred = model.predict(&batch)?;
    let all: Vec<usize> = (0..test.rows).collect();
    let metrics = metrics_on(model, &truth, &pred, &all);
    let mut slices = Vec::with_capacity(spec.slices.len());
    for slice in &spec.slices {
        let rows = slice_rows(test, &slice.name, &slice.where_)?;
        slices.push(SliceReport {
            name: slice.name.clone(),
            rows: rows.len() as u64,
            metrics: metrics_on(model, &truth, &pred, &rows),
        });
    }
    let must_pass = golden.map(|g| must_pass(model, spec, g)).transpose()?;
    let budgets = measure_budgets(model, &batch)?;
    let report = GateReport {
        model: model.uri().to_string(),
        fingerprint: model.manifest().fingerprint.clone(),
        weights_digest: model.manifest().weights_digest().to_string(),
        test_set: test.source.clone(),
        test_set_digest: test.digest.clone(),
        rows: test.rows as u64,
        metrics,
        slices,
        must_pass,
        budgets,
    };
    Ok((report, pred))
}

/// The test set's features and `predictions` counted over the model's
/// drift reference bins.
fn test_set_sketch(
    model: &LoadedModel,
    test: &Table,
    predictions: &Predictions,
) -> Result<crate::drift::DatasetSketch, MlError> {
    use crate::drift::{DatasetSketch, Observation};
    let reference = &model.manifest().reference;
    let columns = reference
        .features
        .iter()
        .map(|f| test.column(f.name(), "the test-set sketch"))
        .collect::<Result<Vec<_>, _>>()?;
    let mut sketch = DatasetSketch::for_profile(reference);
    for row in 0..test.rows {
        sketch.observe_row(
            reference,
            |j| {
                columns[j]
                    .get(row)
                    .map_or(Observation::Missing, super::observation)
            },
            predictions.observation(row),
        );
    }
    Ok(sketch)
}
