//! The data check before any training, on the embedded cluster: a Model
//! over daily Parquet partitions trains once its window passes; a new day
//! whose labels are all empty, then the same day as a file that is not
//! Parquet, are refused by a CPU Job before any training Job exists, with
//! the reason on the version, the Model's `DataValid` condition, an Event
//! and `driftline history`; the day fixed upstream trains again.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arrow_array::{ArrayRef, RecordBatch, new_null_array};
use arrow_schema::{Field, Schema};
use driftline::api::{ConditionStatus, ModelVersion, RetrainSpec, VersionPhase, names};
use driftline::policy::conditions;
use driftline::registry::{RegistryWriter, WriterOptions};
use k8s_openapi::api::batch::v1::Job;
use kube::Api;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::operator_support::*;

const MINUTES: Duration = Duration::from_secs(240);
const MODEL: &str = "daily";

fn bundled_days() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/data/wine-good-daily")
}

fn copy_days(to: &Path) {
    for entry in std::fs::read_dir(bundled_days()).expect("bundled days") {
        let day = entry.expect("entry").path();
        let target = to.join(day.file_name().expect("name"));
        std::fs::create_dir_all(&target).expect("mkdir");
        std::fs::copy(day.join("part-0.parquet"), target.join("part-0.parquet")).expect("copy");
    }
}

/// The file a new day's rows arrive in: today's partition (the window
/// counts back from now, so a later day would be in the future), a file
/// of its own beside any bundled one.
/// `spec.data.source` as the test sets it.
fn spec_source(days: &Path) -> String {
    format!("{}/", days.display())
}

fn arriving(root: &Path) -> PathBuf {
    let today = chrono::Utc::now().date_naive();
    root.join(format!("date={today}/part-1.parquet"))
}

/// The bundled last day's rows written again as a new file, with `change`
/// applied to them.
fn new_day(root: &Path, change: impl Fn(RecordBatch) -> RecordBatch) {
    let file = std::fs::File::open(bundled_days().join("date=2026-12-03/part-0.parquet"))
        .expect("bundled day");
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .expect("parquet")
        .build()
        .expect("reader");
    let batches: Vec<RecordBatch> = reader.map(|b| change(b.expect("batch"))).collect();
    let path = arriving(root);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    let mut writer = ArrowWriter::try_new(
        std::fs::File::create(&path).expect("create"),
        batches[0].schema(),
        None,
    )
    .expect("writer");
    for b in &batches {
        writer.write(b).expect("write");
    }
    writer.close().expect("close");
}

fn without_labels(batch: RecordBatch) -> RecordBatch {
    let schema = batch.schema();
    let (fields, columns): (Vec<Field>, Vec<ArrayRef>) = schema
        .fields()
        .iter()
        .zip(batch.columns())
        .map(|(f, c)| {
            if f.name() == "good" {
                // The writer declared the column non-nullable: it held no nulls.
                (
                    f.as_ref().clone().with_nullable(true),
                    new_null_array(f.data_type(), batch.num_rows()),
                )
            } else {
                (f.as_ref().clone(), Arc::clone(c))
            }
        })
        .unzip();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).expect("batch")
}

async fn version(h: &Harness, n: u32) -> Option<ModelVersion> {
    h.versions()
        .get_opt(&names::version_object(MODEL, n))
        .await
        .ok()
        .flatten()
}

async fn job_exists(h: &Harness, name: &str) -> bool {
    let jobs: Api<Job> = Api::namespaced(h.client.clone(), &h.ns);
    jobs.get_opt(name).await.expect("get Job").is_some()
}

/// Waits for version `n` to leave its data check, returning its phase.
async fn wait_checked(h: &Harness, n: u32) -> ModelVersion {
    let deadline = tokio::time::Instant::now() + MINUTES;
    loop {
        if let Some(v) = version(h, n).await
            && v.status
                .as_ref()
                .is_some_and(|s| s.phase != VersionPhase::CheckingData)
        {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "v{n} never left its data check; events: {:#?}",
            h.events(MODEL).await
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refused_data_gets_no_training_job_and_the_next_clean_day_trains() {
    let mut h = Harness::start_idle(185, 1.0).await;
    let registry_url = format!("sqlite://{}", h.dir.path().join("registry.db").display());
    let writer = Arc::new(
        RegistryWriter::start(&registry_url, WriterOptions::default()).expect("registry URL"),
    );
    h.registry = Some(writer.clone());
    h.start_operator();
    let days = h.dir.path().join("daily");
    copy_days(&days);
    let mut spec = pipeline("wine-good-daily.yaml");
    spec.data.source = spec_source(&days);
    spec.training.epochs = 10;
    spec.serving.replicas = 1;
    spec.retrain = Some(RetrainSpec {
        on_new_data: true,
        ..Default::default()
    });
    h.apply(MODEL, spec).await;
    h.wait_champion(MODEL, 1).await;
    let v1 = version(&h, 1).await.expect("v1");
    let check = v1.status.as_ref().and_then(|s| s.data_check.clone());
    assert!(
        check.as_ref().is_some_and(|c| c.passed),
        "v1's window passed its data check: {check:?}"
    );
    assert!(job_exists(&h, &names::data_check_job(MODEL, 1)).await);

    // A new day whose labels are all empty.
    new_day(&days, without_labels);
    let v2 = wait_checked(&h, 2).await;
    let s2 = v2.status.expect("v2 status");
    assert_eq!(s2.phase, VersionPhase::DataRejected, "{s2:?}");
    let failed = s2.data_check.expect("data check").failed_checks;
    let target = failed
        .iter()
        .find(|c| c.name == "maxTargetNullRate")
        .unwrap_or_else(|| panic!("{failed:#?}"));
    assert_eq!(target.column.as_deref(), Some("good"));
    assert_eq!(target.bound, Some(0.0));
    assert!(target.value.is_some_and(|v| v > 0.05), "{target:?}");
    assert!(job_exists(&h, &names::data_check_job(MODEL, 2)).await);
    assert!(
        !job_exists(&h, &names::training_job(MODEL, 2)).await,
        "no training Job (and so no GPU request) for refused data"
    );
    let model = h.models().get(MODEL).await.expect("model");
    let status = model.status.expect("status");
    let valid = status.condition(conditions::DATA_VALID).expect("DataValid");
    assert_eq!(valid.status, ConditionStatus::False);
    assert!(
        valid.message.contains("target `good` is empty"),
        "{valid:?}"
    );
    assert_eq!(
        status.champion.as_deref(),
        Some("v1"),
        "the champion keeps serving"
    );
    let events = h.events(MODEL).await;
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("DataRejected: v2's training window refused before training")),
        "{events:#?}"
    );

    // What a user reads: `driftline history` shows why v2 never trained.
    tokio::time::timeout(MINUTES, writer.flush())
        .await
        .expect("the registry rows are written");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_driftline"))
        .args(["history", MODEL, "-n", &h.ns, "--registry", &registry_url])
        .output()
        .expect("driftline history");
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v2_line = shown
        .lines()
        .find(|l| l.starts_with("v2 "))
        .unwrap_or_else(|| panic!("no v2 in the history:\n{shown}"));
    assert!(
        v2_line.contains("data check failed") && v2_line.contains("target `good` is empty"),
        "{shown}"
    );

    // The day is rewritten, now as a file that is not Parquet: new data,
    // refused by the file's name, once, with no crash loop.
    let broken = arriving(&days);
    std::fs::write(&broken, b"PAR1 truncated").expect("write");
    let broken_name = broken
        .strip_prefix(&days)
        .expect("under the source")
        .display()
        .to_string();
    let v3 = wait_checked(&h, 3).await;
    let s3 = v3.status.expect("v3 status");
    assert_eq!(s3.phase, VersionPhase::DataRejected, "{s3:?}");
    let failed = s3.data_check.expect("data check").failed_checks;
    assert_eq!(failed.len(), 1, "{failed:#?}");
    assert_eq!(failed[0].name, "readable");
    assert!(
        failed[0].message.contains(&broken_name)
            && failed[0].message.contains("is not a readable Parquet file"),
        "{failed:#?}"
    );
    assert!(!job_exists(&h, &names::training_job(MODEL, 3)).await);
    let jobs: Api<Job> = Api::namespaced(h.client.clone(), &h.ns);
    let check = jobs
        .get(&names::data_check_job(MODEL, 3))
        .await
        .expect("data check Job");
    assert_eq!(
        check.status.and_then(|s| s.failed).unwrap_or(0),
        0,
        "unreadable data is a report, not a crashing pod"
    );

    // The prefix vanishes (a bucket emptied, a volume lost): said once, as a
    // condition and an Event naming the source, and never taken for data.
    let moved = h.dir.path().join("daily.moved");
    std::fs::rename(&days, &moved).expect("move the source away");
    let said = h
        .wait_model(MODEL, MINUTES, "SourceReadable=False", |m| {
            let c = m.status.as_ref()?.condition(conditions::SOURCE_READABLE)?;
            (c.status == ConditionStatus::False).then(|| c.message.clone())
        })
        .await;
    assert!(said.contains(&spec_source(&days)), "{said}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    std::fs::rename(&moved, &days).expect("move the source back");
    h.wait_model(MODEL, MINUTES, "SourceReadable=True", |m| {
        let c = m.status.as_ref()?.condition(conditions::SOURCE_READABLE)?;
        (c.status == ConditionStatus::True).then_some(())
    })
    .await;
    let events = h.events(MODEL).await;
    let unreadable: Vec<&String> = events
        .iter()
        .filter(|e| e.starts_with("SourceUnreadable: "))
        .collect();
    assert_eq!(unreadable.len(), 1, "said once: {events:#?}");
    assert!(
        unreadable[0].contains(&spec_source(&days)),
        "{unreadable:?}"
    );
    assert!(
        version(&h, 4).await.is_none(),
        "an unreadable source started nothing"
    );

    // The day is fixed upstream: new data again, and this window trains.
    new_day(&days, |b| b);
    let v4 = wait_checked(&h, 4).await;
    let s4 = v4.status.expect("v4 status");
    assert_ne!(s4.phase, VersionPhase::DataRejected, "{s4:?}");
    assert!(s4.data_check.is_some_and(|c| c.passed));
    h.wait_model(MODEL, MINUTES, "DataValid=True again", |m| {
        let c = m.status.as_ref()?.condition(conditions::DATA_VALID)?;
        (c.status == ConditionStatus::True).then_some(())
    })
    .await;
    let deadline = tokio::time::Instant::now() + MINUTES;
    while !job_exists(&h, &names::training_job(MODEL, 4)).await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "v4's training Job never came"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    h.shutdown().await;
}
