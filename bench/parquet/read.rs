//! Parquet read + preprocess throughput: a Hive-partitioned window read by
//! driftline into the numeric matrix training consumes (features as f32,
//! a category as its code, missing as NaN), two ways: whole (`data::read`,
//! as in-memory training and the data check read) and streamed
//! (`data::scan`, as `training.shuffleBuffer` reads). Prints JSON.
//!
//!   cargo run --example parquet_read -- DIR FEATURE... (see run.sh)

use std::collections::HashMap;
use std::time::Instant;

use chrono::Utc;
use driftline::api::load_model_config;
use driftline::data::{self, Cell, DataError, Table};

/// Appends `table`'s `features` columns to `out`, row-major.
fn encode(
    table: &Table,
    features: &[String],
    codes: &mut [HashMap<String, f32>],
    out: &mut Vec<f32>,
) {
    let columns: Vec<&[Cell]> = features
        .iter()
        .map(|f| table.column(f, "bench").expect("feature column"))
        .collect();
    out.reserve(table.rows * features.len());
    for row in 0..table.rows {
        for (j, column) in columns.iter().enumerate() {
            out.push(match &column[row] {
                Cell::Number(x) => *x as f32,
                Cell::Missing => f32::NAN,
                Cell::Text(t) => {
                    let next = codes[j].len() as f32;
                    *codes[j].entry(t.clone()).or_insert(next)
                }
            });
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = &args[0];
    let features: Vec<String> = args[1..].to_vec();
    let yaml = format!(
        "task: classification\ndata: {{source: \"{dir}/\", format: parquet, partitioning: hive, target: label, features: [{}]}}\n",
        features.join(", ")
    );
    let spec = load_model_config(&yaml).expect("spec");
    let as_of = Utc::now();

    let started = Instant::now();
    let dataset = data::read(&spec.data, as_of).await.expect("read");
    let mut codes = vec![HashMap::new(); features.len()];
    let mut whole = Vec::new();
    encode(&dataset.table, &features, &mut codes, &mut whole);
    let whole_s = started.elapsed().as_secs_f64();
    let rows = dataset.table.rows;
    drop(dataset);

    let started = Instant::now();
    let listing = data::list(&spec.data, as_of).await.expect("list");
    let order: Vec<usize> = (0..listing.files.len()).collect();
    let mut codes = vec![HashMap::new(); features.len()];
    let mut batch = Vec::new();
    let mut checksum = 0.0f64;
    let mut streamed_rows = 0usize;
    data::scan::<DataError>(
        &spec.data,
        &listing,
        &order,
        None,
        &mut |_, _| Ok(()),
        |r| {
            batch.clear();
            encode(r.table, &features, &mut codes, &mut batch);
            streamed_rows += r.table.rows;
            checksum += batch
                .iter()
                .filter(|x| x.is_finite())
                .map(|x| *x as f64)
                .sum::<f64>();
            Ok(())
        },
    )
    .await
    .expect("scan");
    let streamed_s = started.elapsed().as_secs_f64();
    let whole_sum: f64 = whole
        .iter()
        .filter(|x| x.is_finite())
        .map(|x| *x as f64)
        .sum();
    println!(
        "{{\"rows\": {rows}, \"streamedRows\": {streamed_rows}, \"wholeSeconds\": {whole_s:.3}, \"streamedSeconds\": {streamed_s:.3}, \"wholeSum\": {whole_sum:.1}, \"streamedSum\": {checksum:.1}}}"
    );
}
