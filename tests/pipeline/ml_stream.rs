//! Training past memory (`training.shuffleBuffer`): a Parquet dataset read
//! batch by batch through a seeded shuffle buffer, within the memory bound.

use std::path::Path;
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use chrono::{DateTime, NaiveDate, Utc};
use driftline::api::{ModelSpec, load_model_config};
use driftline::ml::{MlError, TrainOptions, train};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// One day's partition `date=<date>/part-0.parquet` under `root`: `rows`
/// events over the day, numeric `x0..x{numeric}`, a `color` category that
/// shifts the label, and `label` = `a` when `x0 + x1 + shift > 0` (one in
/// twenty flipped). Row groups of `group` rows.
fn day(root: &Path, date: &str, rows: usize, numeric: usize, group: usize, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let start: DateTime<Utc> = NaiveDate::parse_from_str(date, "%Y-%m-%d")
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc();
    let step = 86_400_000 / rows as i64;
    let xs: Vec<Vec<f64>> = (0..numeric)
        .map(|_| (0..rows).map(|_| rng.random_range(-2.0..2.0)).collect())
        .collect();
    let colors = ["red", "green", "blue"];
    let color: Vec<&str> = (0..rows).map(|_| colors[rng.random_range(0..3)]).collect();
    let label: Vec<&str> = (0..rows)
        .map(|i| {
            let shift = match color[i] {
                "red" => 1.0,
                "blue" => -1.0,
                _ => 0.0,
            };
            let positive = xs[0][i] + xs[1][i] + shift > 0.0;
            let flipped = rng.random_range(0..20) == 0;
            if positive != flipped { "a" } else { "b" }
        })
        .collect();
    let mut columns: Vec<(String, ArrayRef)> = vec![(
        "event_time".into(),
        Arc::new(
            TimestampMillisecondArray::from_iter_values(
                (0..rows as i64).map(|i| start.timestamp_millis() + i * step),
            )
            .with_timezone("UTC"),
        ),
    )];
    for (j, x) in xs.into_iter().enumerate() {
        columns.push((format!("x{j}"), Arc::new(Float64Array::from(x))));
    }
    columns.push(("color".into(), Arc::new(StringArray::from(color))));
    columns.push(("label".into(), Arc::new(StringArray::from(label))));
    let batch = RecordBatch::try_from_iter(columns).unwrap();
    let path = root.join(format!("date={date}/part-0.parquet"));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(group))
        .build();
    let mut writer = ArrowWriter::try_new(
        std::fs::File::create(&path).unwrap(),
        batch.schema(),
        Some(props),
    )
    .unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

fn dataset(root: &Path, days: usize, rows: usize, numeric: usize, group: usize) {
    for d in 0..days {
        day(
            root,
            &format!("2026-11-{:02}", d + 1),
            rows,
            numeric,
            group,
            d as u64 + 1,
        );
    }
}

/// A Model over the Hive layout at `root`, the last 60 days before
/// 2026-12-02; `extra` adds training fields, `holdout` a window holdout.
fn spec(root: &Path, training: &str, holdout: Option<&str>) -> ModelSpec {
    let holdout = holdout.map_or(String::new(), |h| format!(", holdout: {h}"));
    let yaml = format!(
        r#"
task: classification
data:
  source: '{}/'
  partitioning: hive
  target: label
  validationFraction: 0.2
  window: {{column: event_time, last: 60d{holdout}}}
architecture: {{type: mlp, hiddenLayers: [16]}}
training: {{epochs: 3, batchSize: 64, learningRate: 0.01, seed: 11{training}}}
"#,
        root.display()
    );
    load_model_config(&yaml).expect("test spec parses")
}

fn options() -> TrainOptions {
    TrainOptions {
        as_of: Some("2026-12-02T00:00:00Z".parse().unwrap()),
        ..TrainOptions::default()
    }
}

#[tokio::test]
async fn streamed_training_is_bit_identical_for_the_same_seed_and_files() {
    let dir = tempfile::tempdir().unwrap();
    dataset(dir.path(), 3, 1_500, 2, 500);
    let s = spec(dir.path(), ", shuffleBuffer: 300", None);
    let a = train(&s, &options()).await.expect("streams");
    let b = train(&s, &options()).await.expect("streams");
    assert_eq!(a.weights_digest(), b.weights_digest());
    assert_eq!(a.manifest.curve, b.manifest.curve);
    assert_eq!(a.manifest.reference, b.manifest.reference);
    assert_eq!(a.manifest.dataset.rows, 4_500);
    let mut other = s.clone();
    other.training.seed = 12;
    let c = train(&other, &options()).await.expect("streams");
    assert_ne!(
        a.weights_digest(),
        c.weights_digest(),
        "another seed shuffles and initialises otherwise"
    );
    let mut smaller = s.clone();
    smaller.training.shuffle_buffer = Some(50);
    let d = train(&smaller, &options()).await.expect("streams");
    assert_ne!(
        a.weights_digest(),
        d.weights_digest(),
        "the buffer's size shapes the order rows are seen in"
    );
}

/// Compared with training the same Model in memory on the same files:
/// the fitted preprocessing (kinds, categories, fills exactly; means and
/// scales to 1e-9 relative), the classes, the time-aware validation split
/// (the same rows), and the validation accuracy (within 0.03: the order of
/// the rows differs). With a seeded split instead, about the same share of
/// rows is held out.
#[tokio::test]
async fn streaming_fits_the_same_preprocessing_and_learns_as_well_as_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    dataset(dir.path(), 4, 1_500, 3, 400);
    let memory = train(&spec(dir.path(), "", Some("1d")), &options())
        .await
        .expect("in memory");
    let streamed = train(
        &spec(dir.path(), ", shuffleBuffer: 1000", Some("1d")),
        &options(),
    )
    .await
    .expect("streams");
    let (m, s) = (&memory.manifest, &streamed.manifest);
    assert_eq!(m.classes, s.classes);
    assert_eq!(m.features.len(), s.features.len());
    for (a, b) in m.features.iter().zip(&s.features) {
        assert_eq!(
            (&a.name, a.kind, &a.categories, &a.fill),
            (&b.name, b.kind, &b.categories, &b.fill)
        );
        assert!(
            (a.mean - b.mean).abs() <= 1e-9 * a.mean.abs().max(1.0),
            "{a:?} {b:?}"
        );
        assert!(
            (a.std - b.std).abs() <= 1e-9 * a.std.abs().max(1.0),
            "{a:?} {b:?}"
        );
    }
    assert_eq!(
        (
            m.dataset.rows,
            m.dataset.training_rows,
            m.dataset.validation_rows
        ),
        (
            s.dataset.rows,
            s.dataset.training_rows,
            s.dataset.validation_rows
        ),
        "the newest day is the validation split either way"
    );
    assert_eq!(s.dataset.validation_rows, 1_500);
    let (am, as_) = (m.metrics["accuracy"], s.metrics["accuracy"]);
    assert!(am > 0.8 && as_ > 0.8, "both learn: {am} {as_}");
    assert!((am - as_).abs() < 0.03, "in memory {am}, streamed {as_}");
    assert_eq!(m.dataset.files, s.dataset.files);
    assert_eq!(m.dataset.digest, s.dataset.digest);

    let seeded = train(&spec(dir.path(), ", shuffleBuffer: 1000", None), &options())
        .await
        .expect("streams");
    let held = seeded.manifest.dataset.validation_rows as f64 / 6_000.0;
    assert!((0.17..0.23).contains(&held), "{held}");
}

#[tokio::test]
async fn a_buffer_that_cannot_fit_the_memory_bound_is_refused_with_the_numbers() {
    let dir = tempfile::tempdir().unwrap();
    dataset(dir.path(), 1, 200, 2, 100);
    let s = spec(dir.path(), ", shuffleBuffer: 50000000", None);
    let bounded = TrainOptions {
        memory_bound: Some(1 << 30),
        ..options()
    };
    let err = train(&s, &bounded).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, MlError::MemoryBound { .. }), "{text}");
    assert!(
        text.contains("needs at least")
            && text.contains("the memory bound is 1024 MiB")
            && text.contains("needs at least 1439 MiB")
            && text.contains("the shuffle buffer (50000000 rows of 6 inputs) 1336 MiB")
            && text.contains("the model (146 parameters)")
            && text.contains("lower training.shuffleBuffer"),
        "{text}"
    );
    // The same buffer without a bound, or a small one within it, trains.
    let fits = spec(dir.path(), ", shuffleBuffer: 100", None);
    train(&fits, &bounded).await.expect("a small buffer fits");

    // A CSV source stays in memory: asking to stream it is refused.
    let csv = dir.path().join("rows.csv");
    std::fs::write(&csv, "x,label\n1,a\n2,b\n").unwrap();
    let mut c = spec(dir.path(), ", shuffleBuffer: 100", None);
    c.data.source = csv.display().to_string();
    c.data.partitioning = None;
    c.data.window = None;
    let err = train(&c, &options()).await.unwrap_err().to_string();
    assert!(
        err.contains("training.shuffleBuffer") && err.contains("streams Parquet sources only"),
        "{err}"
    );
}

/// Peak resident memory (VmHWM, KiB) of a running process, 0 once gone.
fn peak_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// 2 million rows (eight columns: 512 MiB as cells in memory, before
/// encoding) train through `driftline train` in a process whose peak RSS
/// stays under 200 MiB.
#[test]
fn two_million_rows_train_within_a_bounded_peak_rss() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("events");
    dataset(&data, 4, 500_000, 5, 65_536);
    let config = dir.path().join("model.yaml");
    std::fs::write(
        &config,
        format!(
            r#"
task: classification
data:
  source: '{}/'
  partitioning: hive
  target: label
  validationFraction: 0.05
  window: {{column: event_time, last: 60d}}
architecture: {{type: mlp, hiddenLayers: [16]}}
training: {{epochs: 1, batchSize: 512, learningRate: 0.01, seed: 3, shuffleBuffer: 8192}}
"#,
            data.display()
        ),
    )
    .unwrap();
    let out = dir.path().join("artifact");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_driftline"))
        .args(["train", "--config"])
        .arg(&config)
        .arg("--out")
        .arg(&out)
        .args(["--as-of", "2026-12-02T00:00:00Z", "--memory-bound", "256Mi"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("driftline runs");
    // VmHWM only grows: the last reading before the process exits is its peak
    // up to then (what follows is writing a small artifact).
    let pid = child.id();
    let mut peak = 0;
    let mut readings = 0;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        let now = peak_kib(pid);
        if now > 0 {
            peak = peak.max(now);
            readings += 1;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let output = child.wait_with_output().unwrap();
    assert!(
        status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        readings > 10,
        "the process was watched ({readings} readings)"
    );
    let summary: serde_json::Value = serde_json::from_slice(
        output
            .stdout
            .rsplit(|b| *b == b'\n')
            .find(|l| !l.is_empty())
            .unwrap(),
    )
    .expect("a JSON summary");
    assert!(summary["artifact"].is_string(), "{summary}");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["dataset"]["rows"], 2_000_000);
    // The window's statistics, the next data check's baseline, counted in
    // the same bounded pass (duplicates aside).
    assert_eq!(manifest["dataStats"]["rows"], 2_000_000);
    assert_eq!(manifest["dataStats"]["duplicatesUncounted"], true);
    assert!(
        manifest["dataStats"]["columns"].as_object().unwrap().len() >= 2,
        "{}",
        manifest["dataStats"]
    );
    let accuracy = manifest["metrics"]["accuracy"].as_f64().unwrap();
    assert!(accuracy > 0.8, "{accuracy}");
    eprintln!("peak RSS of the streamed run: {} MiB", peak / 1024);
    assert!(
        peak < 200 * 1024,
        "peak RSS {} MiB, bound 200 MiB",
        peak / 1024
    );
}
