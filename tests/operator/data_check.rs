//! The data check before any training, on the embedded cluster: a Model
//! over daily Parquet partitions trains once its window passes; a new day
//! whose labels are all empty, then the same day as a file that is not
//! Parquet, are refused by a CPU Job before any training Job exists, with
//! the reason on the version, the Model's `DataValid` condition, an Event
//! and `driftline history`; the day fixed upstream trains again; a source
//! that vanishes is said once (`SourceReadable`) and never taken for data.
//! Then each way a whole window goes wrong upstream (a renamed column, a
//! vanished class, a null-rate jump, too few rows) is refused the same way.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arrow_array::{Array, ArrayRef, Float64Array, RecordBatch, StringArray, new_null_array};
use arrow_schema::{Field, Schema};
use driftline::api::{ConditionStatus, ModelVersion, RetrainSpec, VersionPhase, names};
use driftline::policy::conditions;
use driftline::registry::{RegistryWriter, WriterOptions};
use k8s_openapi::api::batch::v1::Job;
use kube::Api;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::operator_support::*;

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

/// `spec.data.source` as the test sets it.
fn spec_source(days: &Path) -> String {
    format!("{}/", days.display())
}

/// The file a new day's rows arrive in: today's partition (the window
/// counts back from now, so a later day would be in the future), a file
/// of its own beside any bundled one.
fn arriving(root: &Path) -> PathBuf {
    let today = chrono::Utc::now().date_naive();
    root.join(format!("date={today}/part-1.parquet"))
}

/// A bundled day's rows written to `to` with `change` applied to them,
/// under a hidden name first, so no reader sees half a file.
fn write_day(from: &Path, to: &Path, change: &impl Fn(RecordBatch) -> RecordBatch) {
    let file = std::fs::File::open(from).expect("bundled day");
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .expect("parquet")
        .build()
        .expect("reader");
    let batches: Vec<RecordBatch> = reader.map(|b| change(b.expect("batch"))).collect();
    std::fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
    let hidden = to.with_file_name(".writing");
    let mut writer = ArrowWriter::try_new(
        std::fs::File::create(&hidden).expect("create"),
        batches[0].schema(),
        None,
    )
    .expect("writer");
    for b in &batches {
        writer.write(b).expect("write");
    }
    writer.close().expect("close");
    std::fs::rename(&hidden, to).expect("rename");
}

/// The bundled last day's rows written again as a new file, with `change`
/// applied to them.
fn new_day(root: &Path, change: impl Fn(RecordBatch) -> RecordBatch) {
    write_day(
        &bundled_days().join("date=2026-12-03/part-0.parquet"),
        &arriving(root),
        &change,
    );
}

/// Column `name` of `batch` replaced by what `change` makes of its field
/// and values.
fn with_column(
    batch: RecordBatch,
    name: &str,
    change: impl Fn(&Field, &ArrayRef) -> (Field, ArrayRef),
) -> RecordBatch {
    let schema = batch.schema();
    let (fields, columns): (Vec<Field>, Vec<ArrayRef>) = schema
        .fields()
        .iter()
        .zip(batch.columns())
        .map(|(f, c)| {
            if f.name() == name {
                change(f, c)
            } else {
                (f.as_ref().clone(), Arc::clone(c))
            }
        })
        .unzip();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).expect("batch")
}

fn without_labels(batch: RecordBatch) -> RecordBatch {
    let rows = batch.num_rows();
    // The writer declared the column non-nullable: it held no nulls.
    with_column(batch, "good", |f, _| {
        (
            f.clone().with_nullable(true),
            new_null_array(f.data_type(), rows),
        )
    })
}

/// The bundled daily files copied into the harness's directory, and the
/// Model over them (retraining on new data) applied and champion at v1.
async fn champion_on_daily_files(h: &Harness) -> PathBuf {
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
    days
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
    let days = champion_on_daily_files(&h).await;
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
    let (v2_line, shown) = history_line(MODEL, &h.ns, &registry_url, "v2");
    assert!(
        v2_line.contains("data check failed") && v2_line.contains("target `good` is empty"),
        "{shown}"
    );

    // The day is rewritten, now as a file that is not Parquet: new data,
    // refused by the file's name, once, with no crash loop.
    let broken = arriving(&days);
    // Under a hidden name first: the operator lists every poll, and must not
    // see the file emptied before its new bytes land (two changes, two runs).
    let hidden = broken.with_file_name(".writing");
    std::fs::write(&hidden, b"PAR1 truncated").expect("write");
    std::fs::rename(&hidden, &broken).expect("rename");
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
    if let Some(v4) = version(&h, 4).await {
        panic!(
            "an unreadable source started nothing, yet v4 exists: {:?}; events: {events:#?}",
            v4.spec
        );
    }

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

/// Every day of the window rewritten from the bundled ones with `change`,
/// while the Model is paused, so the operator sees the whole change at once.
async fn rewrite_window(h: &Harness, days: &Path, change: impl Fn(RecordBatch) -> RecordBatch) {
    pause(h, true).await;
    for entry in std::fs::read_dir(bundled_days()).expect("bundled days") {
        let day = entry.expect("entry").path();
        let to = days
            .join(day.file_name().expect("name"))
            .join("part-0.parquet");
        write_day(&day.join("part-0.parquet"), &to, &change);
    }
    pause(h, false).await;
}

async fn pause(h: &Harness, paused: bool) {
    let patch = serde_json::json!({"spec": {"paused": paused}});
    h.models()
        .patch(
            MODEL,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .expect("pause");
}

fn renamed(batch: RecordBatch) -> RecordBatch {
    with_column(batch, "alcohol", |f, c| {
        (f.clone().with_name("alcohol_pct"), Arc::clone(c))
    })
}

fn only_no(batch: RecordBatch) -> RecordBatch {
    with_column(batch, "good", |f, c| {
        let no = StringArray::from(vec!["no"; c.len()]);
        (f.clone(), Arc::new(no) as ArrayRef)
    })
}

fn half_null_sulphates(batch: RecordBatch) -> RecordBatch {
    with_column(batch, "sulphates", |f, c| {
        let values = c
            .as_any()
            .downcast_ref::<Float64Array>()
            .expect("sulphates are doubles");
        let holed: Float64Array = values
            .iter()
            .enumerate()
            .map(|(i, v)| if i % 2 == 0 { None } else { v })
            .collect();
        (f.clone().with_nullable(true), Arc::new(holed) as ArrayRef)
    })
}

fn two_rows(batch: RecordBatch) -> RecordBatch {
    batch.slice(0, 2)
}

/// Each way a window goes wrong upstream is refused by the data check Job
/// before any training Job exists (so no GPU is ever requested), with the
/// failed check on the version and the reason in the Model's `DataValid`
/// condition and Event, as `kubectl describe` shows them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_renamed_column_a_vanished_class_a_null_jump_and_too_few_rows_are_each_refused() {
    let mut h = Harness::start_idle(186, 1.0).await;
    h.start_operator();
    let days = champion_on_daily_files(&h).await;

    type Change = fn(RecordBatch) -> RecordBatch;
    let cases: [(&str, Change, &str, Option<&str>, &str); 4] = [
        (
            "a renamed column",
            renamed,
            "missingColumn",
            Some("alcohol"),
            "`alcohol`",
        ),
        (
            "a vanished class",
            only_no,
            "classVanished",
            Some("good"),
            "class `yes`",
        ),
        (
            "a null-rate jump",
            half_null_sulphates,
            "maxNullRateIncrease",
            Some("sulphates"),
            "`sulphates`",
        ),
        ("too few rows", two_rows, "minRows", None, "28 rows"),
    ];
    for (n, (what, change, check, column, said)) in (2..).zip(cases) {
        rewrite_window(&h, &days, change).await;
        let v = wait_checked(&h, n).await;
        let status = v.status.expect("status");
        assert_eq!(
            status.phase,
            VersionPhase::DataRejected,
            "{what}: {status:?}"
        );
        let failed = status.data_check.expect("data check").failed_checks;
        let found = failed
            .iter()
            .find(|c| c.name == check && c.column.as_deref() == column)
            .unwrap_or_else(|| panic!("{what}: no failed {check}: {failed:#?}"));
        assert!(found.message.contains(said), "{what}: {found:?}");
        assert!(
            !job_exists(&h, &names::training_job(MODEL, n)).await,
            "{what}: no training Job"
        );
        // The version's status is written before the Model's: wait for the
        // Model to say it too.
        let valid = h
            .wait_model(MODEL, MINUTES, "DataValid=False naming the check", |m| {
                m.status
                    .as_ref()?
                    .condition(conditions::DATA_VALID)
                    .filter(|c| c.status == ConditionStatus::False && c.message.contains(said))
                    .cloned()
            })
            .await;
        assert!(valid.message.contains(said), "{what}: {valid:?}");
        let events = h.events(MODEL).await;
        assert!(
            events
                .iter()
                .any(|e| e.starts_with(&format!("DataRejected: v{n}'s")) && e.contains(said)),
            "{what}: {events:#?}"
        );
    }
    let jobs: Api<Job> = Api::namespaced(h.client.clone(), &h.ns);
    let training: Vec<String> = jobs
        .list(&Default::default())
        .await
        .expect("Jobs")
        .items
        .into_iter()
        .filter_map(|j| j.metadata.name)
        .filter(|n| n.contains("-train-"))
        .collect();
    assert_eq!(training, [names::training_job(MODEL, 1)], "only v1 trained");
    h.shutdown().await;
}
