//! The model registry, as the operator and the user commands rely on it. The
//! same suite runs on SQLite and on a real PostgreSQL: each PostgreSQL test
//! starts its own throwaway cluster (initdb + pg_ctl on a free loopback port
//! in a temp dir; see `tests/support/postgres.rs`): under CI a missing
//! PostgreSQL fails the tests, elsewhere they say why and pass.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::postgres::{Postgres, free_port};
use chrono::{DateTime, TimeZone, Utc};
use driftline::registry::{
    AnalysisVerdict, Availability, Backend, CanaryAnalysis, ChampionAction, ChampionChange,
    CheckRecord, ConnectOptions, DeadLetter, DriftCell, DriftReading, EpochRecord,
    EvaluationRecord, ModelRef, Record, Registry, RegistryError, RegistryUrl, RegistryWriter,
    StartRecord, ValidationMetric, VersionRecord, WriterOptions,
};

// ---------------------------------------------------------------- fixtures

fn at(seconds: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_790_000_000 + seconds, 0).unwrap()
}

fn wine() -> ModelRef {
    ModelRef::new("ml", "wine-quality")
}

fn version(n: u32) -> VersionRecord {
    VersionRecord {
        model: wine(),
        version: n,
        trigger: if n == 1 { "Initial" } else { "Drift" }.into(),
        reason: format!("drifted share 0.6 over 0.5 for 3 windows (v{n})"),
        seed: 7 + u64::from(n),
        config_hash: "cfg-1a2b".into(),
        dataset_digest: Some(format!("sha256:data{n}")),
        artifact_uri: Some(format!("s3://models/ml/wine-quality/v{n}/")),
        feedback_rows: Some(120 * u64::from(n)),
        code_version: "0.1.0".into(),
        created_at: at(i64::from(n) * 3600),
        start: Some(StartRecord {
            from: if n == 1 { "cold" } else { "warm" }.into(),
            parent: (n > 1).then(|| format!("s3://models/ml/wine-quality/v{}/", n - 1)),
            parent_digest: (n > 1).then(|| format!("sha256:weights{}", n - 1)),
            reason: (n == 1).then(|| "there is no champion yet".to_string()),
        }),
    }
}

fn evaluation(n: u32, accuracy: f64) -> EvaluationRecord {
    let passed = accuracy >= 0.85;
    EvaluationRecord {
        model: wine(),
        version: n,
        passed,
        summary: if passed { "passed 3/3" } else { "failed 1/3" }.into(),
        metrics: BTreeMap::from([("accuracy".into(), accuracy), ("macroF1".into(), 0.7)]),
        report: serde_json::json!({
            "candidate": {"metrics": {"accuracy": accuracy}},
            "verdict": {"passed": passed, "checks": [
                {"kind": "metric", "name": "accuracy", "value": accuracy, "bound": 0.85, "passed": passed,
                 "message": format!("accuracy {accuracy} against min 0.85")}
            ]}
        }),
        evaluated_at: at(i64::from(n) * 3600 + 600),
    }
}

fn epoch(n: u32, epoch: u32) -> EpochRecord {
    EpochRecord {
        model: wine(),
        version: n,
        epoch,
        train_loss: 1.0 / f64::from(epoch),
        validation_loss: Some(1.2 / f64::from(epoch)),
        validation_metric: Some(ValidationMetric {
            name: "accuracy".into(),
            value: 0.5 + 0.01 * f64::from(epoch),
        }),
    }
}

fn drift(window: i64, feature: &str, value: f64) -> DriftReading {
    DriftReading {
        model: wine(),
        version: 1,
        window_end: at(window * 600),
        feature: feature.into(),
        statistic: "jensenShannon".into(),
        value,
        threshold: 0.1,
        drifted: value > 0.1,
    }
}

fn canary(n: u32, step: u32, verdict: AnalysisVerdict) -> CanaryAnalysis {
    CanaryAnalysis {
        model: wine(),
        version: n,
        step,
        weight: [5, 25, 50][step as usize % 3],
        window_start: at(10_000 + i64::from(step) * 600),
        window_end: at(10_600 + i64::from(step) * 600),
        canary_requests: 600,
        stable_requests: 11_400,
        canary_errors: 1,
        stable_errors: 9,
        canary_p99_ms: Some(4.2),
        stable_p99_ms: Some(3.9),
        divergence: None,
        verdict,
        message: format!("step {step}: error rate 0.17% within 1%"),
        // Step 0 carries a sequential check (evidence and interval); the
        // others none, as rows written before schema 3 read back.
        checks: if step == 0 {
            vec![
                CheckRecord {
                    name: "maxErrorRateIncrease".into(),
                    value: 0.0008,
                    bound: 0.01,
                    passed: true,
                    evidence: Some("noHarm".into()),
                    lower: Some(-0.0061),
                    upper: Some(0.0093),
                },
                CheckRecord {
                    name: "minRequests".into(),
                    value: 600.0,
                    bound: 100.0,
                    passed: true,
                    evidence: None,
                    lower: None,
                    upper: None,
                },
            ]
        } else {
            Vec::new()
        },
    }
}

fn promotion(seconds: i64, from: Option<u32>, to: u32) -> ChampionChange {
    ChampionChange {
        model: wine(),
        at: at(seconds),
        action: ChampionAction::Promote,
        from,
        to: Some(to),
        trigger: "CanaryPassed".into(),
        actor: None,
        reason: format!("v{to} passed 3/3 canary steps"),
    }
}

// ---------------------------------------------------------- the suite

/// A restarted operator writes what it already wrote: no duplicate appears.
async fn writing_a_record_twice_keeps_one_row(url: &str) {
    let registry = Registry::connect(url).await.unwrap();
    let records: Vec<Record> = vec![
        version(1).into(),
        evaluation(1, 0.9).into(),
        epoch(1, 1).into(),
        drift(1, "alcohol", 0.2).into(),
        canary(1, 0, AnalysisVerdict::Passed).into(),
        promotion(100, None, 1).into(),
    ];
    for record in &records {
        registry.write(record).await.unwrap();
    }
    // Again, one by one and as one batch.
    for record in &records {
        registry.write(record).await.unwrap();
    }
    registry.write_all(&records).await.unwrap();

    let model = wine();
    assert_eq!(registry.history(&model, None).await.unwrap().len(), 1);
    assert_eq!(registry.training_curve(&model, 1).await.unwrap().len(), 1);
    assert_eq!(registry.drift_series(&model, 10).await.unwrap().len(), 1);
    assert_eq!(registry.canary_analyses(&model, 1).await.unwrap().len(), 1);
    assert_eq!(registry.audit_trail(&model).await.unwrap().len(), 1);

    // Connecting again (operator restart) keeps the schema and the rows.
    let reopened = Registry::connect(url).await.unwrap();
    assert_eq!(reopened.history(&model, None).await.unwrap().len(), 1);
}

/// `driftline history`: every version with lineage and gate metrics.
async fn history_shows_each_version_with_its_gate_metrics(url: &str) {
    let registry = Registry::connect(url).await.unwrap();
    let mut records: Vec<Record> = Vec::new();
    for n in 1..=5 {
        records.push(version(n).into());
    }
    records.push(evaluation(1, 0.9).into());
    records.push(evaluation(2, 0.8).into());
    records.push(evaluation(4, 0.93).into());
    // Another model's versions never show up in wine-quality's history.
    let mut other = version(9);
    other.model = ModelRef::new("ml", "diabetes");
    records.push(other.into());
    registry.write_all(&records).await.unwrap();

    let history = registry.history(&wine(), None).await.unwrap();
    let numbers: Vec<u32> = history.iter().map(|h| h.version.version).collect();
    assert_eq!(numbers, [1, 2, 3, 4, 5]);
    assert_eq!(history[0].version, version(1), "lineage round-trips");
    // The start lineage too: v2 started warm from v1's weights.
    let start = history[1].version.start.as_ref().expect("v2's start");
    assert_eq!(
        (
            start.from.as_str(),
            start.parent.as_deref(),
            start.parent_digest.as_deref()
        ),
        (
            "warm",
            Some("s3://models/ml/wine-quality/v1/"),
            Some("sha256:weights1")
        )
    );
    assert_eq!(
        history[0]
            .version
            .start
            .as_ref()
            .and_then(|s| s.reason.as_deref()),
        Some("there is no champion yet")
    );

    let v2 = history[1].gate.as_ref().expect("v2 was evaluated");
    assert!(!v2.passed);
    assert_eq!(v2.summary, "failed 1/3");
    assert_eq!(v2.metrics["accuracy"], 0.8);
    assert_eq!(v2.evaluated_at, at(2 * 3600 + 600));
    assert!(history[2].gate.is_none(), "v3 has no evaluation yet");
    assert!(history[3].gate.as_ref().unwrap().passed);

    let last_two = registry.history(&wine(), Some(2)).await.unwrap();
    let numbers: Vec<u32> = last_two.iter().map(|h| h.version.version).collect();
    assert_eq!(numbers, [4, 5], "the newest versions, oldest first");

    // The whole gate report is kept, not only the summary.
    let full = registry.evaluation(&wine(), 4).await.unwrap().unwrap();
    assert_eq!(full, evaluation(4, 0.93));
    assert_eq!(full.report["verdict"]["checks"][0]["bound"], 0.85);
}

/// Training fills in what it learned; lineage written at start is kept.
async fn versions_fill_in_training_results_without_erasing_lineage(url: &str) {
    let registry = Registry::connect(url).await.unwrap();
    let mut started = version(3);
    started.artifact_uri = None;
    started.dataset_digest = None;
    started.feedback_rows = None;
    started.start = None;
    registry.write(&started.clone().into()).await.unwrap();
    let before = registry.version(&wine(), 3).await.unwrap().unwrap();
    assert_eq!((before.artifact_uri, before.start), (None, None));

    registry.write(&version(3).into()).await.unwrap();
    // A late rewrite of the start record (restart) erases nothing.
    let mut rewritten = started.clone();
    rewritten.reason = "a different reason".into();
    registry.write(&rewritten.into()).await.unwrap();

    let stored = registry.version(&wine(), 3).await.unwrap().unwrap();
    assert_eq!(stored, version(3));
    assert_eq!(stored.reason, started.reason, "lineage is written once");
}

/// The audit trail lists champion changes in time order, whatever the
/// order they were written in, with who or what made each.
async fn audit_trail_lists_champion_changes_in_time_order(url: &str) {
    let registry = Registry::connect(url).await.unwrap();
    let manual = ChampionChange {
        model: wine(),
        at: at(300),
        action: ChampionAction::Promote,
        from: Some(2),
        to: Some(1),
        trigger: "Manual".into(),
        actor: Some("alice@example.com".into()),
        reason: "driftline promote v1: v2 mislabels red wines".into(),
    };
    let rollback = ChampionChange {
        model: wine(),
        at: at(400),
        action: ChampionAction::Rollback,
        from: Some(3),
        to: None,
        trigger: "CanaryFailed".into(),
        actor: None,
        reason: "error rate 4% over 1% in 2 analyses".into(),
    };
    for change in [
        rollback.clone(),
        promotion(200, Some(1), 2),
        manual.clone(),
        promotion(100, None, 1),
    ] {
        registry.write(&change.into()).await.unwrap();
    }

    let trail = registry.audit_trail(&wine()).await.unwrap();
    assert_eq!(
        trail,
        vec![
            promotion(100, None, 1),
            promotion(200, Some(1), 2),
            manual,
            rollback
        ]
    );

    // Which version was champion when (MLflow #2169).
    assert_eq!(registry.champion_at(&wine(), at(50)).await.unwrap(), None);
    assert_eq!(
        registry.champion_at(&wine(), at(150)).await.unwrap(),
        Some(1)
    );
    assert_eq!(
        registry.champion_at(&wine(), at(250)).await.unwrap(),
        Some(2)
    );
    assert_eq!(
        registry.champion_at(&wine(), at(300)).await.unwrap(),
        Some(1)
    );
    assert_eq!(registry.champion_at(&wine(), at(500)).await.unwrap(), None);
}

/// `driftline status`: the drift series of the latest windows, per feature.
async fn drift_series_returns_the_latest_windows(url: &str) {
    let registry = Registry::connect(url).await.unwrap();
    let mut records: Vec<Record> = Vec::new();
    for window in 1..=6 {
        records.push(drift(window, "alcohol", 0.02 * window as f64).into());
        records.push(drift(window, "pH", 0.01).into());
    }
    let mut nan = drift(6, "sulphates", f64::NAN);
    nan.drifted = false;
    records.push(nan.into());
    registry.write_all(&records).await.unwrap();

    let series = registry.drift_series(&wine(), 3).await.unwrap();
    let windows: Vec<(DateTime<Utc>, &str)> = series
        .iter()
        .map(|r| (r.window_end, r.feature.as_str()))
        .collect();
    assert_eq!(
        windows,
        vec![
            (at(4 * 600), "alcohol"),
            (at(4 * 600), "pH"),
            (at(5 * 600), "alcohol"),
            (at(5 * 600), "pH"),
            (at(6 * 600), "alcohol"),
            (at(6 * 600), "pH"),
            (at(6 * 600), "sulphates"),
        ]
    );
    assert_eq!(series[4], drift(6, "alcohol", 0.12));
    assert!(series[4].drifted);
    assert!(series[6].value.is_nan(), "NaN reads back as NaN on both");
    assert_eq!(registry.drift_series(&wine(), 100).await.unwrap().len(), 13);
    assert!(registry.drift_series(&wine(), 0).await.unwrap().is_empty());
}

/// Training curves and canary analyses read back as written, in order.
async fn training_curves_and_canary_analyses_read_back_in_order(url: &str) {
    let registry = Registry::connect(url).await.unwrap();
    let mut records: Vec<Record> = (1..=40).rev().map(|e| epoch(2, e).into()).collect();
    records.push(canary(2, 1, AnalysisVerdict::Failed).into());
    records.push(canary(2, 0, AnalysisVerdict::Passed).into());
    records.push(canary(2, 2, AnalysisVerdict::Inconclusive).into());
    registry.write_all(&records).await.unwrap();

    let curve = registry.training_curve(&wine(), 2).await.unwrap();
    assert_eq!(curve.len(), 40);
    assert_eq!(curve[0], epoch(2, 1));
    assert_eq!(curve[39], epoch(2, 40));

    let analyses = registry.canary_analyses(&wine(), 2).await.unwrap();
    assert_eq!(
        analyses,
        vec![
            canary(2, 0, AnalysisVerdict::Passed),
            canary(2, 1, AnalysisVerdict::Failed),
            canary(2, 2, AnalysisVerdict::Inconclusive)
        ]
    );
    assert!(
        registry
            .canary_analyses(&wine(), 3)
            .await
            .unwrap()
            .is_empty()
    );
}

/// The dashboard's drift heatmap: the newest windows, folded into columns
/// per feature in SQL.
async fn drift_heatmap_folds_the_newest_windows_per_feature(url: &str) {
    let registry = Registry::connect(url).await.unwrap();
    assert_eq!(
        registry.drift_heatmap(&wine(), 1000, 10).await.unwrap(),
        Default::default()
    );
    // 100 windows a minute apart; `ph` drifts in the last 10 only.
    let reading = |w: i64, feature: &str, value: f64| {
        Record::from(DriftReading {
            model: wine(),
            version: 1,
            window_end: at(w * 60),
            feature: feature.into(),
            statistic: "jensenShannon".into(),
            value,
            threshold: 0.1,
            drifted: value > 0.1,
        })
    };
    let mut records = Vec::new();
    for w in 0..100 {
        records.push(reading(w, "alcohol", 0.05));
        records.push(reading(w, "ph", if w >= 90 { 0.3 } else { 0.02 }));
    }
    registry.write_all(&records).await.unwrap();
    let map = registry.drift_heatmap(&wine(), 1000, 10).await.unwrap();
    assert_eq!(map.windows, 100);
    assert_eq!(map.columns, 10);
    assert_eq!(map.first_window_end, Some(at(0)));
    assert_eq!(map.last_window_end, Some(at(99 * 60)));
    assert_eq!(map.cells.len(), 20, "{map:?}");
    let ph: Vec<&DriftCell> = map.cells.iter().filter(|c| c.feature == "ph").collect();
    assert!(ph.iter().all(|c| c.readings == 10), "{ph:?}");
    assert_eq!(ph[9].drifted, 10);
    assert!((ph[9].max_value - 0.3).abs() < 1e-12);
    assert!(ph[..9].iter().all(|c| c.drifted == 0));
    // Only the newest windows asked for, with where the series began.
    let newest = registry.drift_heatmap(&wine(), 20, 10).await.unwrap();
    assert_eq!(newest.windows, 20);
    assert_eq!(newest.first_window_end, Some(at(80 * 60)));
    assert_eq!(newest.earliest_window_end, Some(at(0)));
    assert_eq!(newest.cells.len(), 20, "{newest:?}");
    assert!(newest.cells.iter().all(|c| c.readings == 2));
    // Fewer windows than columns: one column per window at most.
    assert_eq!(
        registry
            .drift_heatmap(&wine(), 1000, 1000)
            .await
            .unwrap()
            .columns,
        100
    );
}

/// The dashboard's traffic timeline: the newest canary analyses of every version.
async fn canary_history_keeps_the_newest_analyses_of_every_version(url: &str) {
    let registry = Registry::connect(url).await.unwrap();
    let analysis = |n: u32, step: u32, end: i64| {
        Record::from(CanaryAnalysis {
            window_start: at(end - 60),
            window_end: at(end),
            ..canary(n, step, AnalysisVerdict::Passed)
        })
    };
    registry
        .write_all(&[
            analysis(2, 0, 100),
            analysis(2, 1, 200),
            analysis(3, 0, 300),
            analysis(3, 1, 400),
        ])
        .await
        .unwrap();
    let last3 = registry.canary_history(&wine(), 3).await.unwrap();
    let seen: Vec<(u32, u32)> = last3.iter().map(|a| (a.version, a.step)).collect();
    assert_eq!(seen, vec![(2, 1), (3, 0), (3, 1)]);
    assert_eq!(last3[0].weight, 25);
    assert_eq!(last3[2].window_end, at(400));
}

/// A notification no attempt delivered: one row per event and sink; a
/// re-sent event that fails again adds its attempts to the same row.
async fn dead_letters_keep_one_row_per_event_and_sink(url: &str) {
    let registry = Registry::connect(url).await.unwrap();
    let letter = |sink: &str, attempts: u32, error: &str, seconds: i64| DeadLetter {
        model: wine(),
        event_id: "5f0c1d2e3a4b5c6d7e8f90a1b2c3d4e5".into(),
        sink_url: sink.into(),
        version: Some(2),
        event_type: "io.driftline.model.rolledback".into(),
        attempts,
        last_error: error.into(),
        failed_at: at(seconds),
    };
    registry
        .write_all(&[
            letter("https://hooks.example.com/a", 4, "HTTP 500", 10).into(),
            letter("https://hooks.example.com/b", 4, "connection refused", 20).into(),
        ])
        .await
        .unwrap();
    registry
        .write(&letter("https://hooks.example.com/a", 4, "HTTP 503", 30).into())
        .await
        .unwrap();
    let rows = registry.dead_letters(&wine()).await.unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(
        rows[0],
        letter("https://hooks.example.com/b", 4, "connection refused", 20)
    );
    assert_eq!(
        rows[1],
        letter("https://hooks.example.com/a", 8, "HTTP 503", 30)
    );
    let other = registry
        .dead_letters(&ModelRef::new("ml", "other"))
        .await
        .unwrap();
    assert!(other.is_empty());
}

macro_rules! on_sqlite_and_postgres {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[tokio::test]
            async fn sqlite() {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}", dir.path().join("registry.db").display());
                super::$scenario(&url).await;
            }

            #[tokio::test]
            async fn postgres() {
                let Some(pg) = super::Postgres::start(stringify!($scenario)) else {
                    return;
                };
                super::$scenario(&pg.url()).await;
            }
        }
    )*};
}

on_sqlite_and_postgres!(
    writing_a_record_twice_keeps_one_row,
    history_shows_each_version_with_its_gate_metrics,
    versions_fill_in_training_results_without_erasing_lineage,
    audit_trail_lists_champion_changes_in_time_order,
    drift_series_returns_the_latest_windows,
    training_curves_and_canary_analyses_read_back_in_order,
    drift_heatmap_folds_the_newest_windows_per_feature,
    canary_history_keeps_the_newest_analyses_of_every_version,
    dead_letters_keep_one_row_per_event_and_sink,
);

// ------------------------------------------------ the buffered writer

fn quick_retries() -> WriterOptions {
    WriterOptions {
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
        ping_interval: Duration::from_millis(200),
        connect: ConnectOptions {
            connect_timeout: Duration::from_secs(2),
            ..ConnectOptions::default()
        },
        ..WriterOptions::default()
    }
}

/// Guards a wait on an event so a broken writer fails the test instead of
/// hanging it; not a timing assertion.
async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(120), future)
        .await
        .unwrap_or_else(|_| panic!("gave up waiting: {what}"))
}

/// Waits until the writer reports unavailable with a reason containing
/// `needle` (not merely "not connected yet"), and returns that reason.
async fn wait_until_unavailable(writer: &RegistryWriter, needle: &str) -> String {
    let mut rx = writer.subscribe();
    let now = within(
        "unavailability",
        rx.wait_for(
            |a| matches!(a, Availability::Unavailable { reason, .. } if reason.contains(needle)),
        ),
    )
    .await
    .unwrap()
    .clone();
    let Availability::Unavailable { reason, .. } = now else {
        unreachable!("waited for Unavailable")
    };
    reason
}

/// PostgreSQL stops mid-run: submits still return at once, availability
/// turns false with a reason, and once it is back every buffered record
/// arrives exactly once.
#[tokio::test]
async fn buffered_writer_rides_out_a_postgres_outage() {
    let Some(pg) = Postgres::start("buffered_writer_rides_out_a_postgres_outage") else {
        return;
    };
    let url = pg.url_with_password("s3cret");
    let writer = RegistryWriter::start(&url, quick_retries()).unwrap();
    for n in 1..=20 {
        writer.submit(version(n)).unwrap();
    }
    within("first records", writer.flush()).await;
    assert!(writer.is_available());

    pg.stop();
    for n in 21..=40 {
        writer.submit(version(n)).unwrap();
        writer
            .submit(promotion(i64::from(n), Some(n - 1), n))
            .unwrap();
    }
    let reason = wait_until_unavailable(&writer, "registry").await;
    assert!(!writer.is_available());
    assert!(!reason.contains("s3cret"), "{reason}");
    assert!(!reason.contains('\n'), "{reason}");
    // Still down: nothing could be written, and submitting still works.
    writer.submit(version(40)).unwrap();
    writer.submit(promotion(40, Some(39), 40)).unwrap();
    assert_eq!(writer.stats().written, 20);
    assert!(writer.stats().pending >= 40);

    pg.start_again();
    within("buffered records after the outage", writer.flush()).await;
    assert!(writer.is_available());
    let stats = writer.stats();
    assert_eq!((stats.submitted, stats.pending, stats.rejected), (62, 0, 0));

    let registry = Registry::connect(&url).await.unwrap();
    let history = registry.history(&wine(), None).await.unwrap();
    let numbers: Vec<u32> = history.iter().map(|h| h.version.version).collect();
    assert_eq!(numbers, (1..=40).collect::<Vec<_>>(), "each version once");
    let trail = registry.audit_trail(&wine()).await.unwrap();
    assert_eq!(trail.len(), 20, "each champion change once");
    assert!(trail.windows(2).all(|w| w[0].at < w[1].at));
}

/// SQLite whose directory does not exist yet: the writer starts anyway,
/// reports unavailable, and delivers once the directory appears.
#[tokio::test]
async fn buffered_writer_delivers_once_sqlite_becomes_reachable() {
    let dir = tempfile::tempdir().unwrap();
    let db_dir = dir.path().join("not-yet");
    let url = format!("sqlite://{}", db_dir.join("registry.db").display());
    let writer = RegistryWriter::start(&url, quick_retries()).unwrap();
    // Before its first attempt ends the writer is connecting, not down: the
    // operator raises no Warning for a database that is being opened.
    assert_eq!(writer.availability(), Availability::Connecting);
    writer.submit(version(1)).unwrap();
    writer.submit(evaluation(1, 0.9)).unwrap();
    writer.submit(version(1)).unwrap();
    let reason = wait_until_unavailable(&writer, "is unreachable").await;
    assert!(reason.contains("registry at sqlite://"), "{reason}");
    assert!(!writer.is_available());

    std::fs::create_dir(&db_dir).unwrap();
    within("records once the file can be created", writer.flush()).await;
    assert!(writer.is_available());
    let history = Registry::connect(&url)
        .await
        .unwrap()
        .history(&wine(), None)
        .await
        .unwrap();
    assert_eq!(history.len(), 1);
    assert!(history[0].gate.as_ref().unwrap().passed);
}

/// A registry down for long: the buffer is bounded; past it `submit` says so
/// at once and what was queued stays queued.
#[tokio::test]
async fn a_full_buffer_refuses_new_records_and_keeps_the_queued_ones() {
    let url = format!("postgres://driftline@127.0.0.1:{}/registry", free_port());
    let writer = RegistryWriter::start(
        &url,
        WriterOptions {
            capacity: 3,
            ..quick_retries()
        },
    )
    .unwrap();
    for n in 1..=3 {
        writer.submit(version(n)).unwrap();
    }
    let err = writer.submit(version(4)).unwrap_err();
    assert!(matches!(err, RegistryError::BufferFull { capacity: 3 }));
    assert!(err.is_transient());
    let stats = writer.stats();
    assert_eq!((stats.pending, stats.refused), (3, 1));
}

// --------------------------------------------------------- wrong URLs

#[tokio::test]
async fn a_wrong_url_gives_one_clear_line() {
    let err = Registry::connect("mysql://op:s3cret@db.example/driftline")
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "registry URL `mysql://op:***@db.example/driftline`: scheme `mysql` is not supported; \
         use sqlite://PATH (a file, created if missing), a plain file path, \
         or postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE"
    );
    assert!(RegistryWriter::start("mysql://db/x", WriterOptions::default()).is_err());

    // Nothing listens on this port: refused, said in one line, no password.
    let port = free_port();
    let err = Registry::connect(&format!("postgres://op:s3cret@127.0.0.1:{port}/driftline"))
        .await
        .unwrap_err();
    let line = err.to_string();
    assert_eq!(
        line,
        format!(
            "registry at postgres://op:***@127.0.0.1:{port}/driftline is unreachable: \
             connection refused (is the database running and listening there?)"
        )
    );
    assert!(matches!(err, RegistryError::Unreachable { .. }));
    assert!(std::error::Error::source(&err).is_some(), "cause kept");

    let url = RegistryUrl::parse("registry.db").unwrap();
    assert_eq!(url.backend(), Backend::Sqlite);
}
