//! Prepares the datasets in `pipelines/data/` from data that crates ship
//! (no network at run time), and generates synthetic drift data.
//!
//! ```sh
//! cargo run --example prepare_data                      # rewrite pipelines/data/
//! cargo run --example prepare_data -- synthetic --rows 100000 --seed 1 --shift none --out /tmp/synth.csv
//! cargo run --example prepare_data -- daily             # only pipelines/data/wine-good-daily/
//! ```

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};
use driftline::ml::synth::{self, Shift};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Output directory of the prepared datasets.
    #[arg(long, default_value = "pipelines/data")]
    dir: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Write a synthetic dataset (deterministic from the seed).
    Synthetic {
        #[arg(long, default_value_t = 10_000)]
        rows: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long, value_enum, default_value = "none")]
        shift: Shift,
        #[arg(long)]
        out: PathBuf,
    },
    /// Split wine-good's training rows into daily Hive partitions of Parquet
    /// (`wine-good-daily/date=YYYY-MM-DD/part-0.parquet`), each row given an
    /// `event_time` in its day (deterministic from a fixed seed).
    Daily,
}

/// Days of the daily Parquet variant, ending on this date.
const DAILY_DAYS: i64 = 14;
const DAILY_END: &str = "2026-12-03";

fn daily(dir: &Path) -> std::io::Result<()> {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray, TimestampSecondArray};
    use driftline::data::{Cell, Table};

    let source = dir.join("wine-good/train.csv");
    let table = Table::from_csv(&source.display().to_string(), &std::fs::read(&source)?)
        .map_err(std::io::Error::other)?;
    let mut order: Vec<usize> = (0..table.rows).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(SPLIT_SEED));
    let end =
        chrono::NaiveDate::parse_from_str(DAILY_END, "%Y-%m-%d").map_err(std::io::Error::other)?;
    let out = dir.join("wine-good-daily");
    if out.exists() {
        std::fs::remove_dir_all(&out)?;
    }
    for d in 0..DAILY_DAYS {
        let day = end - chrono::Days::new((DAILY_DAYS - 1 - d) as u64);
        let mut rows: Vec<usize> = order
            .iter()
            .copied()
            .skip(d as usize)
            .step_by(DAILY_DAYS as usize)
            .collect();
        rows.sort_unstable();
        let midnight = day
            .and_hms_opt(0, 0, 0)
            .unwrap_or_default()
            .and_utc()
            .timestamp();
        let step = 86_400 / rows.len().max(1) as i64;
        let mut columns: Vec<(String, ArrayRef)> = vec![(
            "event_time".into(),
            Arc::new(
                TimestampSecondArray::from_iter_values(
                    (0..rows.len() as i64).map(|i| midnight + i * step),
                )
                .with_timezone("UTC"),
            ),
        )];
        for (name, cells) in table.names.iter().zip(&table.columns) {
            let numeric = cells
                .iter()
                .all(|c| matches!(c, Cell::Number(_) | Cell::Missing));
            let array: ArrayRef = if numeric {
                Arc::new(Float64Array::from_iter(rows.iter().map(|&r| {
                    match cells[r] {
                        Cell::Number(x) => Some(x),
                        _ => None,
                    }
                })))
            } else {
                Arc::new(StringArray::from_iter(
                    rows.iter().map(|&r| cells[r].as_text()),
                ))
            };
            columns.push((name.clone(), array));
        }
        let batch = RecordBatch::try_from_iter(columns).map_err(std::io::Error::other)?;
        let path = out.join(format!("date={day}/part-0.parquet"));
        std::fs::create_dir_all(path.parent().unwrap_or(&out))?;
        let file = std::fs::File::create(&path)?;
        let mut writer = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None)
            .map_err(std::io::Error::other)?;
        writer.write(&batch).map_err(std::io::Error::other)?;
        writer.close().map_err(std::io::Error::other)?;
        println!("wrote {} ({} rows)", path.display(), rows.len());
    }
    Ok(())
}

/// Share of rows held out as the curated regression test-set.
const TEST_SHARE: f64 = 0.2;
const SPLIT_SEED: u64 = 42;

fn write(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    // Temporary name then rename, so a half-written file is never picked up.
    let tmp = path.with_extension("csv.tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)?;
    println!(
        "wrote {} ({} rows)",
        path.display(),
        text.lines().count().saturating_sub(1)
    );
    Ok(())
}

fn csv(header: &[String], rows: &[Vec<String>], pick: &[usize]) -> String {
    let mut out = header.join(",");
    out.push('\n');
    for &i in pick {
        let _ = writeln!(out, "{}", rows[i].join(","));
    }
    out
}

/// Train/test split of row indices, deterministic.
fn split(n: usize) -> (Vec<usize>, Vec<usize>) {
    let mut idx: Vec<usize> = (0..n).collect();
    idx.shuffle(&mut ChaCha8Rng::seed_from_u64(SPLIT_SEED));
    let n_test = (n as f64 * TEST_SHARE).round() as usize;
    let (test, train) = idx.split_at(n_test);
    let (mut test, mut train) = (test.to_vec(), train.to_vec());
    test.sort_unstable();
    train.sort_unstable();
    (train, test)
}

fn snake(name: &str) -> String {
    name.replace(['-', ' '], "_").to_lowercase()
}

fn num(x: f64) -> String {
    format!("{}", (x * 1e6).round() / 1e6)
}

fn wine(dir: &Path) -> std::io::Result<()> {
    let ds = linfa_datasets::winequality();
    let names: Vec<String> = ds.feature_names().iter().map(|n| snake(n)).collect();
    let records = ds.records();
    let targets = ds.targets();
    let n = records.nrows();
    let rows: Vec<Vec<String>> = (0..n)
        .map(|i| records.row(i).iter().map(|&x| num(x)).collect())
        .collect();
    let (train, test) = split(n);
    let col = |name: &str| names.iter().position(|n| n == name).unwrap_or(0);
    let (alcohol, volatile) = (col("alcohol"), col("volatile_acidity"));

    // Multi-class: the quality score itself.
    let mut header = names.clone();
    header.push("quality".into());
    let with_quality: Vec<Vec<String>> = rows
        .iter()
        .zip(targets.iter())
        .map(|(r, q)| [r.clone(), vec![q.to_string()]].concat())
        .collect();
    write(
        &dir.join("wine-quality/train.csv"),
        &csv(&header, &with_quality, &train),
    )?;
    write(
        &dir.join("wine-quality/test.csv"),
        &csv(&header, &with_quality, &test),
    )?;

    // Binary: is it a good wine (quality >= 7)? String labels on purpose.
    let mut header = names.clone();
    header.push("good".into());
    let label = |q: usize| if q >= 7 { "yes" } else { "no" };
    let with_good: Vec<Vec<String>> = rows
        .iter()
        .zip(targets.iter())
        .map(|(r, q)| [r.clone(), vec![label(*q).to_string()]].concat())
        .collect();
    write(
        &dir.join("wine-good/train.csv"),
        &csv(&header, &with_good, &train),
    )?;
    write(
        &dir.join("wine-good/test.csv"),
        &csv(&header, &with_good, &test),
    )?;
    // Golden examples from the test split that no sane model may get wrong:
    // weak, sharp wines rated <= 5 (good wines are too rare to be clear-cut).
    let x = |i: usize, c: usize| records[[i, c]];
    let golden: Vec<usize> = test
        .iter()
        .copied()
        .filter(|&i| targets[i] <= 5 && x(i, alcohol) < 9.5 && x(i, volatile) > 0.6)
        .take(8)
        .collect();
    write(
        &dir.join("wine-good/golden.csv"),
        &csv(&header, &with_good, &golden),
    )?;
    Ok(())
}

fn diabetes(dir: &Path) -> std::io::Result<()> {
    let ds = linfa_datasets::diabetes();
    let mut header: Vec<String> = ds.feature_names().iter().map(|n| snake(n)).collect();
    header.push("progression".into());
    let records = ds.records();
    let n = records.nrows();
    let rows: Vec<Vec<String>> = (0..n)
        .map(|i| {
            let mut r: Vec<String> = records.row(i).iter().map(|&x| num(x)).collect();
            r.push(num(ds.targets()[i]));
            r
        })
        .collect();
    let (train, test) = split(n);
    write(
        &dir.join("diabetes/train.csv"),
        &csv(&header, &rows, &train),
    )?;
    write(&dir.join("diabetes/test.csv"), &csv(&header, &rows, &test))?;
    // Golden: test rows near the median progression, which any useful model predicts within the tolerance.
    let mut by_target: Vec<usize> = test.clone();
    by_target.sort_by(|&a, &b| ds.targets()[a].total_cmp(&ds.targets()[b]));
    let mid = by_target.len() / 2;
    let mut golden = by_target[mid - 3..mid + 3].to_vec();
    golden.sort_unstable();
    write(
        &dir.join("diabetes/golden.csv"),
        &csv(&header, &rows, &golden),
    )?;
    Ok(())
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    match args.command {
        Some(Command::Synthetic {
            rows,
            seed,
            shift,
            out,
        }) => write(&out, &synth::generate(rows, seed, shift)),
        Some(Command::Daily) => daily(&args.dir),
        None => {
            wine(&args.dir)?;
            daily(&args.dir)?;
            diabetes(&args.dir)?;
            write(
                &args.dir.join("synthetic/reference.csv"),
                &synth::generate(4000, 1, Shift::None),
            )?;
            write(
                &args.dir.join("synthetic/covariate-shift.csv"),
                &synth::generate(1000, 2, Shift::Covariate),
            )?;
            write(
                &args.dir.join("synthetic/concept-drift.csv"),
                &synth::generate(1000, 3, Shift::Concept),
            )?;
            Ok(())
        }
    }
}
