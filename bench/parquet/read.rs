//! Parquet read + preprocess throughput: a Hive-partitioned window read by
//! driftline into the numeric matrix training feeds the model, with the
//! library's own encoders, two ways: whole (`data::read` into cells, then
//! `ml::encode`, as in-memory training reads) and streamed (`data::scan`'s
//! typed frames, then `ml::encode_frame`, as `training.shuffleBuffer`
//! reads). The features are numbers (mean 0, scale 1, so each input is the
//! value as f32) and categories one-hot in first-seen order; the checksum
//! weighs a one-hot input by its slot, so it equals the sum of a matrix
//! holding each category's first-seen code, as pyarrow's and polars' do.
//! Prints JSON.
//!
//!   cargo run --example parquet_read -- whole|streamed DIR FEATURE... (see run.sh)

use std::time::Instant;

use chrono::Utc;
use driftline::api::{FeatureKind, load_model_config};
use driftline::data::{self, Cell, Column, DataError};
use driftline::ml::{self, FeatureBatch, FeatureSchema};

/// The features' schemas: a numeric feature passes through (mean 0, scale
/// 1), a text feature is one-hot over its categories in first-seen order,
/// as training's statistics pass would have fitted them (not timed).
async fn schemas(spec: &driftline::api::ModelSpec, features: &[String]) -> Vec<FeatureSchema> {
    let listing = data::list(&spec.data, Utc::now()).await.expect("list");
    let order: Vec<usize> = (0..listing.files.len()).collect();
    let mut categories: Vec<Option<Vec<String>>> = vec![None; features.len()];
    data::scan::<DataError>(
        &spec.data,
        &listing,
        &order,
        Some(features),
        &mut |_, _| Ok(()),
        |r| {
            for (j, f) in features.iter().enumerate() {
                if let Ok(Column::Codes { codes, names }) = r.table.column(f, "bench") {
                    let seen = categories[j].get_or_insert_with(Vec::new);
                    for &c in codes {
                        if let Some(name) = names.get(c as usize)
                            && !seen.contains(name)
                        {
                            seen.push(name.clone());
                        }
                    }
                }
            }
            Ok(())
        },
    )
    .await
    .expect("scan");
    features
        .iter()
        .zip(categories)
        .map(|(name, categories)| FeatureSchema {
            name: name.clone(),
            kind: if categories.is_some() {
                FeatureKind::Categorical
            } else {
                FeatureKind::Numeric
            },
            fill: match &categories {
                Some(c) => Cell::Text(c[0].clone()),
                None => Cell::Number(0.0),
            },
            categories: categories.unwrap_or_default(),
            mean: 0.0,
            std: 1.0,
        })
        .collect()
}

/// Each model input's weight in the checksum: 1 for a number, its slot
/// for a one-hot input (so a row adds its category's first-seen code).
fn weights(schemas: &[FeatureSchema]) -> Vec<f64> {
    schemas
        .iter()
        .flat_map(|s| match s.kind {
            FeatureKind::Categorical => (0..s.width()).map(|k| k as f64).collect(),
            _ => vec![1.0],
        })
        .collect()
}

fn checksum(matrix: &[f32], weights: &[f64]) -> f64 {
    matrix
        .chunks_exact(weights.len())
        .map(|row| {
            row.iter()
                .zip(weights)
                .map(|(x, w)| *x as f64 * w)
                .sum::<f64>()
        })
        .sum()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mode, dir) = (&args[0], &args[1]);
    let features: Vec<String> = args[2..].to_vec();
    let yaml = format!(
        "task: classification\ndata: {{source: \"{dir}/\", format: parquet, partitioning: hive, target: label, features: [{}]}}\n",
        features.join(", ")
    );
    let spec = load_model_config(&yaml).expect("spec");
    let as_of = Utc::now();
    let schemas = schemas(&spec, &features).await;
    let weights = weights(&schemas);
    // One reader per process (run.sh runs both): the whole window's cells
    // would otherwise leave the streamed reader a heap gigabytes deep.
    let (rows, seconds, sum) = match mode.as_str() {
        "whole" => whole(&spec, &schemas, &weights, as_of).await,
        "streamed" => streamed(&spec, &schemas, &weights, as_of).await,
        other => panic!("mode `{other}`: whole or streamed"),
    };
    println!("{{\"rows\": {rows}, \"seconds\": {seconds:.3}, \"sum\": {sum:.1}}}");
}

/// The whole window into cells, then the matrix: rows, seconds, checksum.
async fn whole(
    spec: &driftline::api::ModelSpec,
    schemas: &[FeatureSchema],
    weights: &[f64],
    as_of: chrono::DateTime<Utc>,
) -> (usize, f64, f64) {
    let started = Instant::now();
    let dataset = data::read(&spec.data, as_of).await.expect("read");
    let table = &dataset.table;
    let whole = ml::encode(
        schemas,
        &FeatureBatch::from_table(schemas, table).expect("features"),
        &table.source,
    )
    .expect("encode");
    let seconds = started.elapsed().as_secs_f64();
    (table.rows, seconds, checksum(&whole, weights))
}

/// The window streamed, each batch into its matrix: rows, seconds (less
/// the checksum's own), checksum.
async fn streamed(
    spec: &driftline::api::ModelSpec,
    schemas: &[FeatureSchema],
    weights: &[f64],
    as_of: chrono::DateTime<Utc>,
) -> (usize, f64, f64) {
    let started = Instant::now();
    let listing = data::list(&spec.data, as_of).await.expect("list");
    let order: Vec<usize> = (0..listing.files.len()).collect();
    let mut streamed_sum = 0.0f64;
    let mut streamed_rows = 0usize;
    let mut checksum_s = 0.0f64;
    let mut every: Vec<usize> = Vec::new();
    data::scan::<DataError>(
        &spec.data,
        &listing,
        &order,
        None,
        &mut |_, _| Ok(()),
        |r| {
            let n = r.table.rows;
            every.clear();
            every.extend(0..n);
            let x = ml::encode_frame(schemas, r.table, &every, &r.table.source).map_err(|e| {
                DataError::Source {
                    source_uri: r.table.source.clone(),
                    reason: e.to_string(),
                }
            })?;
            streamed_rows += n;
            // The checksum is the bench's, not the reader's: pyarrow's and
            // polars' sums are taken after their clocks stop, so its time is
            // taken off the streamed reader's.
            let summing = Instant::now();
            streamed_sum += checksum(&x, weights);
            checksum_s += summing.elapsed().as_secs_f64();
            Ok(())
        },
    )
    .await
    .expect("scan");
    let seconds = started.elapsed().as_secs_f64() - checksum_s;
    (streamed_rows, seconds, streamed_sum)
}
