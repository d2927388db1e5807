//! Training data as teams keep it: daily Hive partitions of Parquet in an
//! S3 bucket (moto), a rolling window with a time-aware holdout, and proof
//! from the store's own request log that days outside the window are never
//! read.

use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use parquet::arrow::ArrowWriter;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

use super::moto::{BUCKET, Moto};

/// One day of events: two numeric features, a segment, and a label that
/// follows them (`x1 + x2 > 0`, one in ten flipped), as Parquet bytes.
fn day(date: &str, rows: usize, seed: u64) -> Vec<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let start: DateTime<Utc> = NaiveDate::parse_from_str(date, "%Y-%m-%d")
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc();
    let step = 86_400_000_000 / rows as i64;
    let x1: Vec<f64> = (0..rows).map(|_| rng.random_range(-2.0..2.0)).collect();
    let x2: Vec<f64> = (0..rows).map(|_| rng.random_range(-2.0..2.0)).collect();
    let label: Vec<&str> = (0..rows)
        .map(|i| {
            let positive = (x1[i] + x2[i] > 0.0) != rng.random_bool(0.1);
            if positive { "yes" } else { "no" }
        })
        .collect();
    let segment: Vec<&str> = (0..rows).map(|i| ["a", "b", "c"][i % 3]).collect();
    let columns: Vec<(&str, ArrayRef)> = vec![
        (
            "event_time",
            Arc::new(
                TimestampMicrosecondArray::from_iter_values(
                    (0..rows as i64).map(|i| start.timestamp_micros() + i * step),
                )
                .with_timezone("UTC"),
            ),
        ),
        ("x1", Arc::new(Float64Array::from(x1))),
        ("x2", Arc::new(Float64Array::from(x2))),
        ("segment", Arc::new(StringArray::from(segment))),
        ("label", Arc::new(StringArray::from(label))),
    ];
    let batch = RecordBatch::try_from_iter(columns).unwrap();
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    out
}

fn model_yaml(dir: &std::path::Path) -> String {
    let path = dir.join("model.yaml");
    std::fs::write(
        &path,
        format!(
            r#"apiVersion: driftline.dev/v1alpha1
kind: Model
metadata: {{name: events}}
spec:
  task: classification
  data:
    source: "s3://{BUCKET}/events/"
    format: parquet
    partitioning: hive
    window: {{column: event_time, last: 3d, holdout: 1d}}
    target: label
  architecture: {{type: mlp, hiddenLayers: [8]}}
  training: {{epochs: 8, batchSize: 32, learningRate: 0.02, seed: 5}}
  gate:
    testSet: "s3://{BUCKET}/regression/test.parquet"
    metrics:
      - {{name: accuracy, min: 0.75}}
"#
        ),
    )
    .unwrap();
    path.display().to_string()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

async fn manifest(moto: &Moto, version: &str) -> Value {
    serde_json::from_slice(
        &moto
            .get(&format!("models/events/{version}/manifest.json"))
            .await,
    )
    .unwrap()
}

fn partition_days(files: &Value) -> Vec<String> {
    files
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["partition"]["date"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_of_daily_parquet_partitions_in_s3_trains_gates_and_never_reads_older_days() {
    let log = tempfile::tempdir().unwrap();
    let moto = Moto::start_with(&[(
        "MOTO_RECORDER_FILEPATH",
        log.path().join("requests.jsonl").display().to_string(),
    )])
    .await;
    let days = [
        "2026-11-30",
        "2026-12-01",
        "2026-12-02",
        "2026-12-03",
        "2026-12-04",
        "2026-12-05",
    ];
    for (i, d) in days.iter().enumerate() {
        moto.put(
            &format!("events/date={d}/part-0.parquet"),
            day(d, 300, i as u64),
        )
        .await;
    }
    // A marker the writer leaves beside its files is not data.
    moto.put("events/_SUCCESS", Vec::new()).await;
    moto.put("regression/test.parquet", day("2026-12-05", 400, 99))
        .await;
    let dir = tempfile::tempdir().unwrap();
    let config = model_yaml(dir.path());

    // Trained at noon on 2026-12-05 over the last 3 days.
    moto.record().await;
    let v1 = format!("s3://{BUCKET}/models/events/v1");
    let out = moto
        .driftline(&[
            "train",
            "-c",
            &config,
            "--out",
            &v1,
            "--as-of",
            "2026-12-05T12:00:00Z",
        ])
        .await;
    assert!(out.status.success(), "train: {}", stderr(&out));
    let requests = moto.recorded().await;
    let touched = |d: &str| {
        requests
            .iter()
            .filter(|(_, path)| path.contains(&format!("date={d}")))
            .count()
    };
    for old in ["2026-11-30", "2026-12-01"] {
        assert_eq!(
            touched(old),
            0,
            "the store was asked for a day outside the window: {requests:#?}"
        );
    }
    for kept in ["2026-12-02", "2026-12-03", "2026-12-04", "2026-12-05"] {
        assert!(
            requests
                .iter()
                .any(|(m, p)| m == "GET" && p.contains(&format!("date={kept}/part-0.parquet"))),
            "{kept} was not read: {requests:#?}"
        );
    }

    let m = manifest(&moto, "v1").await;
    let dataset = &m["dataset"];
    assert_eq!(
        partition_days(&dataset["files"]),
        ["2026-12-02", "2026-12-03", "2026-12-04", "2026-12-05"],
        "{dataset}"
    );
    assert!(
        dataset["files"][0]["tag"]
            .as_str()
            .unwrap()
            .starts_with("etag:"),
        "{dataset}"
    );
    let pruned: Vec<&str> = dataset["prunedFiles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert_eq!(
        pruned,
        [
            format!("s3://{BUCKET}/events/date=2026-11-30/part-0.parquet"),
            format!("s3://{BUCKET}/events/date=2026-12-01/part-0.parquet"),
        ]
    );
    // The window is (2026-12-02 12:00, 2026-12-05 12:00]: 2026-12-02 after
    // noon (149 rows), two whole days, 2026-12-05 up to noon included (151
    // rows); the holdout is the day before the newest row (2026-12-05 12:00):
    // 2026-12-04 after noon (149) and 2026-12-05's 151.
    assert_eq!(dataset["rows"], 149 + 600 + 151, "{dataset}");
    assert_eq!(dataset["validationRows"], 149 + 151, "{dataset}");
    assert_eq!(dataset["window"]["column"], "event_time");
    assert!(
        !m["features"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["name"] == "event_time" || f["name"] == "date"),
        "the window's column is not a feature: {}",
        m["features"]
    );

    // The gate reads its Parquet test set from the bucket too.
    let out = moto
        .driftline(&["evaluate", "--candidate", &v1, "-c", &config])
        .await;
    assert!(out.status.success(), "evaluate: {}", stderr(&out));

    // A new day arrives: the next run reads it, and 2026-12-02 has left.
    let next = "2026-12-06";
    moto.put(
        &format!("events/date={next}/part-0.parquet"),
        day(next, 300, 6),
    )
    .await;
    let v2 = format!("s3://{BUCKET}/models/events/v2");
    let at = (DateTime::parse_from_rfc3339("2026-12-05T12:00:00Z").unwrap() + Duration::days(1))
        .to_rfc3339();
    let out = moto
        .driftline(&["train", "-c", &config, "--out", &v2, "--as-of", &at])
        .await;
    assert!(out.status.success(), "train v2: {}", stderr(&out));
    let m2 = manifest(&moto, "v2").await;
    assert_eq!(
        partition_days(&m2["dataset"]["files"]),
        ["2026-12-03", "2026-12-04", "2026-12-05", "2026-12-06"]
    );
    assert!(
        m2["dataset"]["prunedFiles"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f.as_str().unwrap().contains("date=2026-12-02")),
        "the day that left the window is in the lineage: {}",
        m2["dataset"]
    );
    assert_ne!(m2["dataset"]["digest"], m["dataset"]["digest"]);
}

/// Object-store credentials the store refuses: the data check's report
/// fails one `readable` check naming the source and the store's reason
/// (the Job still succeeds, so nothing retries in a loop); run by hand
/// without a report, the same reason is an input error (exit 2). The
/// operator's new-data probe lists through the same store client and shows
/// its error as `SourceReadable=False` (tests/operator/data_check.rs).
#[tokio::test]
async fn refused_credentials_are_one_clear_reason_naming_the_source() {
    let moto = Moto::start().await;
    moto.put(
        "events/date=2026-12-05/part-0.parquet",
        day("2026-12-05", 50, 1),
    )
    .await;
    // From here on moto checks every request's access key: ours is unknown.
    let auth = reqwest::Client::new()
        .post(format!(
            "{}/moto-api/reset-auth",
            moto.url("").trim_end_matches(&format!("/{BUCKET}/"))
        ))
        .body("0")
        .send()
        .await
        .unwrap();
    assert!(auth.status().is_success(), "{auth:?}");

    let dir = tempfile::tempdir().unwrap();
    let config = model_yaml(dir.path());
    let report = dir.path().join("datacheck.json");
    let out = moto
        .driftline(&[
            "datacheck",
            "--config",
            &config,
            "--as-of",
            "2026-12-06T00:00:00Z",
            "--report",
            report.to_str().unwrap(),
            "--report-only",
        ])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let checks = report["verdict"]["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 1, "{report:#}");
    assert_eq!(checks[0]["name"], "readable");
    let message = checks[0]["message"].as_str().unwrap();
    let source = format!("s3://{BUCKET}/events/");
    assert!(
        message.contains(&source) && message.contains("InvalidAccessKeyId"),
        "{message}"
    );

    let out = moto.driftline(&["datacheck", "--config", &config]).await;
    assert_eq!(
        out.status.code(),
        Some(2),
        "no report asked: an input error"
    );
    let said = stderr(&out);
    assert!(
        said.contains(&source) && said.contains("InvalidAccessKeyId"),
        "{said}"
    );
}
