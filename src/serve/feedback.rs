//! Feedback capture: remember what was served, join labels that arrive
//! later, and write labelled rows as JSON Lines training data.
//!
//! The request path only pushes a record into a bounded inbox
//! (`serve::inbox`): when the inbox is full the record is dropped and
//! counted, so logging never blocks inference. One worker task owns the
//! pending records. Labels travel through a channel, and the worker
//! empties the inbox before it joins them, so a label always finds a
//! record pushed before the response carrying its id.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot, watch};

use super::annotation::{AnnotationSampler, offer_record};
use super::error::ServeError;
use super::inbox::Inbox;
pub use super::labels::{FeedbackBody, FeedbackOutcome, LabelItem, LabelKind};
use super::lines::{JsonLines, LineKeys};
use super::metrics::ServeMetrics;
use super::pending::Pending;
use super::protocol::{DecodedBatch, Value as ServedValue};
use crate::api::AnnotationSpec;
use crate::api::names::{LABELS_DIR, PREDICTION_LOG_DIR, QUEUE_DIR};
use crate::drift::DriftRegion;

/// How feedback is captured.
#[derive(Debug, Clone)]
pub struct FeedbackConfig {
    /// Share of requests remembered for feedback, in [0, 1].
    pub sample_rate: f64,
    /// How long a served request waits for its label.
    pub horizon: Duration,
    /// Most requests remembered at once (oldest forgotten first).
    pub max_pending: usize,
    /// Most rows remembered at once, over all requests (oldest forgotten
    /// first): bounds memory when requests carry large batches.
    pub max_pending_rows: usize,
    /// Capacity of the inbox between requests and the feedback worker
    /// (records), and of the channel its labels travel by (messages).
    pub buffer: usize,
    /// Labelled rows per written file.
    pub batch_rows: usize,
    /// Write a partial batch after this long.
    pub flush_interval: Duration,
    /// Labelled rows behind the online accuracy / RMSE.
    pub online_window: usize,
    /// The annotation queue's budget for this server (`perDay` already its
    /// share); none: no rows are queued. Needs a feedback prefix.
    pub annotation: Option<AnnotationSpec>,
}

impl Default for FeedbackConfig {
    fn default() -> Self {
        Self {
            sample_rate: 1.0,
            horizon: Duration::from_secs(3600),
            max_pending: 100_000,
            max_pending_rows: 1_000_000,
            buffer: 4096,
            batch_rows: 1000,
            flush_interval: Duration::from_secs(60),
            online_window: 1000,
            annotation: None,
        }
    }
}

/// One served request remembered for feedback.
///
/// Kept column by column as the request was decoded: a labelled row becomes
/// a JSON object only when its label arrives, so serving pays for no per-row
/// maps.
///
/// What every record of the model shares (its version, the feature names)
/// is the worker's [`ServedModel`], not copied into each record: a shared
/// count touched by every request on both worker threads moved its cache
/// line between cores on every request.
#[derive(Debug, Clone)]
pub struct ServedRecord {
    pub id: String,
    pub time: DateTime<Utc>,
    /// `rows()` values per feature.
    pub cells: DecodedBatch,
    /// Prediction per row.
    pub predictions: ServedPredictions,
    /// Classifiers: the top-class probability each row was answered with
    /// (what the estimated accuracy said of it); empty otherwise.
    pub confidence: PerRow<f64>,
    /// Classifiers, while annotating: each row's margin between its two
    /// likeliest classes; empty otherwise.
    pub margins: Vec<f64>,
}

/// A served request's list of one value a row: a one-row request's (the
/// common one) kept inside its record, not in an allocation of its own
/// (each freed cold when the pending ring evicts the record).
pub type PerRow<T> = smallvec::SmallVec<[T; 1]>;

/// The answer a served row is kept with, in the prediction log and in the
/// joined feedback rows alike: the version, the serving time, the
/// prediction and, for a classifier, the confidence it was answered with
/// (what a late label later sets the estimated accuracy against).
pub(super) fn log_answer(
    row: &mut Map<String, Value>,
    model: &ServedModel,
    record: &ServedRecord,
    i: usize,
) {
    row.insert("_version".into(), Value::String(model.version.clone()));
    row.insert("_time".into(), Value::String(record.time.to_rfc3339()));
    row.insert("_prediction".into(), record.predictions.value(i));
    if let Some(&confidence) = record.confidence.get(i) {
        row.insert("_confidence".into(), Value::from(confidence));
    }
}

/// What the feedback worker knows of the model it serves: what a joined
/// or logged row is written with beside each record's own values.
#[derive(Debug, Clone)]
pub struct ServedModel {
    /// The version every record was answered by (a server serves one).
    pub version: String,
    /// Feature names in column order.
    pub features: Vec<String>,
    /// The manifest's target column: a joined label's name.
    pub target: String,
    /// What a label is: one of the classes, or a value.
    pub labels: LabelKind,
}

/// What the model answered, per row.
#[derive(Debug, Clone)]
pub enum ServedPredictions {
    /// Class names (classification).
    Labels(PerRow<String>),
    /// Values (regression).
    Values(PerRow<f64>),
}

impl ServedPredictions {
    fn len(&self) -> usize {
        match self {
            Self::Labels(v) => v.len(),
            Self::Values(v) => v.len(),
        }
    }

    pub(super) fn value(&self, row: usize) -> Value {
        match self {
            Self::Labels(v) => Value::String(v[row].clone()),
            Self::Values(v) => Value::from(v[row]),
        }
    }
}

impl ServedRecord {
    /// Rows in the request.
    pub fn rows(&self) -> usize {
        self.predictions.len()
    }

    /// Row `i` as `{feature: value}`, by `model`'s feature names.
    pub(super) fn row(&self, model: &ServedModel, i: usize) -> Map<String, Value> {
        let mut row = Map::new();
        for (name, cell) in model.features.iter().zip(self.cells.row(i)) {
            let value = match cell {
                ServedValue::Number(v) => serde_json::Number::from_f64(*v)
                    .map(Value::Number)
                    .unwrap_or(Value::Null),
                ServedValue::Text(v) => Value::String(v.clone()),
            };
            row.insert(name.clone(), value);
        }
        row
    }
}

/// Feedback counters and online quality, as served at `GET …/feedback`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FeedbackStats {
    /// Requests waiting for a label.
    pub pending: usize,
    /// Labelled rows not yet written.
    pub buffered_rows: usize,
    pub joined_rows: u64,
    pub written_rows: u64,
    pub written_files: u64,
    /// Labelled rows behind `accuracy` / `rmse`.
    pub labelled: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rmse: Option<f64>,
    /// Where feedback files go (none: labels are joined for online metrics only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Prediction log (`<prefix>/predictions/`): rows written, files written,
    /// and rows dropped because the store stayed down past the bound.
    pub logged_rows: u64,
    pub log_files: u64,
    pub log_dropped: u64,
    /// Labels for requests no longer remembered, written under
    /// `<prefix>/labels/`, and those dropped because the store stayed down.
    #[serde(default)]
    pub late_labels: u64,
    #[serde(default)]
    pub late_dropped: u64,
    /// Rows written to the annotation queue (`<prefix>/queue/`), and those
    /// dropped because the store stayed down.
    #[serde(default)]
    pub queued_rows: u64,
    #[serde(default)]
    pub queue_dropped: u64,
}

/// Where labelled rows are written.
#[async_trait::async_trait]
pub trait FeedbackSink: Send + Sync + 'static {
    /// Writes one file atomically under the prefix; returns its URI.
    async fn write(&self, file_name: &str, contents: Vec<u8>) -> Result<String, ServeError>;
    /// The prefix, for reports.
    fn prefix(&self) -> String;
}

enum Event {
    Labels {
        items: Vec<LabelItem>,
        reply: oneshot::Sender<Result<FeedbackOutcome, ServeError>>,
    },
    Flush(oneshot::Sender<Result<usize, ServeError>>),
    /// A drift window closed: where it moved, if it drifted.
    DriftRegion(Option<DriftRegion>),
}

/// The request side of feedback capture (cheap to clone).
#[derive(Clone)]
pub struct FeedbackHandle {
    inbox: Arc<Inbox>,
    events: mpsc::Sender<Event>,
    stats: watch::Receiver<FeedbackStats>,
    sample_rate: f64,
    annotating: bool,
    metrics: Arc<ServeMetrics>,
}

impl FeedbackHandle {
    /// Whether rows are sampled into the annotation queue (then served
    /// records carry their margins).
    pub fn annotating(&self) -> bool {
        self.annotating
    }

    /// Tells the annotation sampler that a drift window closed, and where
    /// it moved if it drifted; waits for nothing (a full buffer drops the
    /// news, and the next window's close brings it again).
    pub fn drift_window(&self, region: Option<DriftRegion>) {
        if self.annotating {
            let _ = self.events.try_send(Event::DriftRegion(region));
        }
    }

    /// Whether this request should be remembered (by the sample rate).
    pub fn should_sample(&self) -> bool {
        self.sample_rate >= 1.0
            || (self.sample_rate > 0.0 && rand::random::<f64>() < self.sample_rate)
    }

    /// Remembers a served request without waiting: when the inbox is full
    /// the record is dropped and counted.
    pub fn record(&self, record: ServedRecord) {
        self.metrics.feedback_sampled.inc();
        if !self.inbox.push(record) {
            self.metrics.feedback_dropped.inc();
        }
    }

    /// Joins labels with remembered requests.
    pub async fn label(&self, items: Vec<LabelItem>) -> Result<FeedbackOutcome, ServeError> {
        let (reply, answer) = oneshot::channel();
        self.events
            .send(Event::Labels { items, reply })
            .await
            .map_err(|_| ServeError::FeedbackClosed)?;
        answer.await.map_err(|_| ServeError::FeedbackClosed)?
    }

    /// Writes buffered labelled rows now; returns how many were written.
    pub async fn flush(&self) -> Result<usize, ServeError> {
        let (reply, answer) = oneshot::channel();
        self.events
            .send(Event::Flush(reply))
            .await
            .map_err(|_| ServeError::FeedbackClosed)?;
        answer.await.map_err(|_| ServeError::FeedbackClosed)?
    }

    /// Current counters and online quality.
    pub fn stats(&self) -> FeedbackStats {
        self.stats.borrow().clone()
    }
}

/// Starts the feedback worker for `model` (what it writes beside each
/// record's own values: version, feature names, target, label kind).
pub fn start_feedback(
    config: FeedbackConfig,
    model: ServedModel,
    sink: Option<Arc<dyn FeedbackSink>>,
    metrics: Arc<ServeMetrics>,
) -> FeedbackHandle {
    let (events, receiver) = mpsc::channel(config.buffer.max(1));
    let inbox = Arc::new(Inbox::new(config.buffer));
    let prefix = sink.as_ref().map(|s| s.prefix());
    let (stats_tx, stats) = watch::channel(FeedbackStats {
        prefix: prefix.clone(),
        ..Default::default()
    });
    let sample_rate = config.sample_rate;
    let sampler = sink
        .as_ref()
        .and(config.annotation.as_ref())
        .map(|spec| AnnotationSampler::new(spec, Utc::now()));
    let annotating = sampler.is_some();
    // Sized for the cap up front: growing a map of ~50 000 records rehashes
    // and moves all of them in one go, a multi-millisecond stall that a
    // one-thread server showed as its p99 while the map filled. Untouched
    // capacity is address space, not resident memory; the clamp bounds even
    // that for very large caps.
    let presize = config.max_pending.min(1 << 20);
    let keys = LineKeys::new(&model);
    let worker = Worker {
        config,
        model,
        sink,
        metrics: metrics.clone(),
        pending: Pending::with_capacity(presize),
        buffer: Vec::new(),
        keys,
        log: JsonLines::default(),
        late: JsonLines::default(),
        sampler,
        region: None,
        queue: JsonLines::default(),
        online: VecDeque::new(),
        stats: FeedbackStats {
            prefix,
            ..Default::default()
        },
        stats_tx,
    };
    tokio::spawn(worker.run(receiver, inbox.clone()));
    FeedbackHandle {
        inbox,
        events,
        stats,
        sample_rate,
        annotating,
        metrics,
    }
}

/// How long served records gather in the inbox after the first arrives
/// before the worker takes them. Woken for every few requests (each
/// wake-up a task switch, often a sleeping thread's, and a stats update)
/// the worker cost a one-row server ~1.4 µs of CPU a request more (6 %,
/// `bench/serving/cpu-ab.sh`, 2026-12-06) than taking a couple of
/// milliseconds' records at once. A label, flush or closed drift window
/// that arrives meanwhile waits at most this long (each takes the inbox
/// first, so it still finds every request served before it).
const GATHER: Duration = Duration::from_millis(2);

struct Worker {
    config: FeedbackConfig,
    model: ServedModel,
    sink: Option<Arc<dyn FeedbackSink>>,
    metrics: Arc<ServeMetrics>,
    /// Requests waiting for labels, oldest first.
    pending: Pending,
    buffer: Vec<Map<String, Value>>,
    /// Served rows not yet written to the prediction log.
    log: JsonLines,
    /// What every prediction-log line repeats, encoded once.
    keys: LineKeys,
    /// Labels for forgotten requests not yet written under `labels/`.
    late: JsonLines,
    /// The annotation queue's sampler, where a budget is set.
    sampler: Option<AnnotationSampler>,
    /// Where the latest closed drift window moved, while it drifted.
    region: Option<DriftRegion>,
    /// Rows the sampler gave, not yet written under `queue/`.
    queue: JsonLines,
    /// (prediction, label) of the most recent labelled rows.
    online: VecDeque<(Value, Value)>,
    stats: FeedbackStats,
    stats_tx: watch::Sender<FeedbackStats>,
}

impl Worker {
    async fn run(mut self, mut events: mpsc::Receiver<Event>, inbox: Arc<Inbox>) {
        let mut ticker = tokio::time::interval(self.config.flush_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        let mut served = Vec::new();
        loop {
            tokio::select! {
                () = inbox.ready.notified() => {
                    tokio::time::sleep(GATHER).await;
                    self.take_served(&inbox, &mut served).await;
                }
                event = events.recv() => match event {
                    // Records pushed before this message was sent are
                    // taken first: a label finds the request it answers.
                    Some(Event::Labels { items, reply }) => {
                        self.take_served(&inbox, &mut served).await;
                        let outcome = self.join(items);
                        if self.buffer.len() >= self.config.batch_rows {
                            let _ = self.write_batch().await;
                        }
                        if self.late.len() >= self.config.batch_rows {
                            let _ = self.write_late().await;
                        }
                        let _ = reply.send(outcome);
                    }
                    Some(Event::DriftRegion(region)) => {
                        // Requests served before the window closed are
                        // offered to the sampler with the region before it.
                        self.take_served(&inbox, &mut served).await;
                        self.region = region;
                    }
                    Some(Event::Flush(reply)) => {
                        self.take_served(&inbox, &mut served).await;
                        let _ = self.write_queue(Utc::now()).await;
                        let _ = self.write_log().await;
                        let _ = self.write_late().await;
                        let written = self.write_batch().await;
                        let _ = reply.send(written);
                    }
                    None => {
                        // Every handle is gone: write what is left and stop.
                        self.take_served(&inbox, &mut served).await;
                        let _ = self.write_queue(Utc::now()).await;
                        let _ = self.write_log().await;
                        let _ = self.write_late().await;
                        let _ = self.write_batch().await;
                        return;
                    }
                },
                _ = ticker.tick() => {
                    self.expire(Utc::now());
                    let _ = self.write_queue(Utc::now()).await;
                    let _ = self.write_log().await;
                    let _ = self.write_late().await;
                    let _ = self.write_batch().await;
                }
            }
            self.publish();
        }
    }

    /// Takes every record in the inbox: offered to the annotation
    /// sampler, queued for the prediction log, remembered for labels.
    async fn take_served(&mut self, inbox: &Inbox, served: &mut Vec<ServedRecord>) {
        inbox.take(served);
        for record in served.drain(..) {
            if let Some(sampler) = &mut self.sampler {
                offer_record(sampler, self.region.as_ref(), &self.model, &record);
            }
            self.log_rows(&record);
            self.remember(record);
            if self.log.len() >= self.config.batch_rows {
                let _ = self.write_log().await;
            }
        }
    }

    /// Queues a served request's rows for the prediction log: id, row,
    /// version, time, features and prediction, so a label that arrives after
    /// the server forgot the request can still be joined (by a later job).
    fn log_rows(&mut self, record: &ServedRecord) {
        if self.sink.is_none() {
            return;
        }
        self.log.push_served(&self.keys, record);
    }

    /// Writes the queued prediction-log rows as one file under
    /// `predictions/<date>/`. While the store is down the newest rows are
    /// kept up to ten batches; older ones are dropped and counted.
    async fn write_log(&mut self) -> Result<usize, ServeError> {
        let mut rows = std::mem::take(&mut self.log);
        let (written, dropped) = self.write_dated(PREDICTION_LOG_DIR, &mut rows).await;
        self.log = rows;
        self.stats.log_dropped += dropped;
        let n = written?;
        if n > 0 {
            self.stats.logged_rows += n as u64;
            self.stats.log_files += 1;
        }
        Ok(n)
    }

    /// Writes the rows the annotation sampler gives now under
    /// `queue/<date>/`, with any that waited for the store.
    async fn write_queue(&mut self, now: DateTime<Utc>) -> Result<usize, ServeError> {
        let Some(sampler) = &mut self.sampler else {
            return Ok(0);
        };
        for row in sampler.take(now) {
            if let Ok(Value::Object(map)) = serde_json::to_value(&row) {
                self.metrics.annotation_queued(row.reason);
                self.queue.push_map(&map);
            }
        }
        let mut rows = std::mem::take(&mut self.queue);
        let (written, dropped) = self.write_dated(QUEUE_DIR, &mut rows).await;
        self.queue = rows;
        self.stats.queue_dropped += dropped;
        let n = written?;
        self.stats.queued_rows += n as u64;
        Ok(n)
    }

    /// Writes the queued late labels as one `id,label,row` JSON Lines file
    /// under `labels/<date>/`, where training's join reads them.
    async fn write_late(&mut self) -> Result<usize, ServeError> {
        let mut rows = std::mem::take(&mut self.late);
        let (written, dropped) = self.write_dated(LABELS_DIR, &mut rows).await;
        self.late = rows;
        self.stats.late_dropped += dropped;
        let n = written?;
        self.stats.late_labels += n as u64;
        Ok(n)
    }

    /// `rows` as one file under `<dir>/<date>/`, written whole by the sink;
    /// cleared when written. While the store is down the newest ten batches
    /// wait; the count of older rows dropped is returned beside the result.
    async fn write_dated(
        &self,
        dir: &str,
        rows: &mut JsonLines,
    ) -> (Result<usize, ServeError>, u64) {
        let Some(sink) = self.sink.clone() else {
            return (Ok(0), 0);
        };
        if rows.is_empty() {
            return (Ok(0), 0);
        }
        let contents = rows.text().to_vec();
        let name = crate::api::names::feedback_file(
            dir,
            Utc::now(),
            &uuid::Uuid::new_v4().simple().to_string(),
        );
        match sink.write(&name, contents).await {
            Ok(uri) => {
                let n = rows.len();
                rows.clear();
                tracing::debug!(%uri, rows = n, "feedback file written");
                (Ok(n), 0)
            }
            Err(e) => {
                self.metrics.feedback_write_errors.inc();
                tracing::warn!(error = %e, dir, "feedback write failed; keeping rows for the next try");
                let cap = self.config.batch_rows.saturating_mul(10).max(1);
                let excess = rows.len().saturating_sub(cap);
                rows.drop_oldest(excess);
                (Err(e), excess as u64)
            }
        }
    }

    fn remember(&mut self, record: ServedRecord) {
        self.expire(record.time);
        // A reused id replaces its record: the newer request is the one a
        // label will mean.
        self.pending.insert(record);
        while self.pending.len() > self.config.max_pending
            || self.pending.rows() > self.config.max_pending_rows
        {
            if self.pending.pop_oldest().is_none() {
                break;
            }
            self.metrics.feedback_evicted.inc();
        }
    }

    fn expire(&mut self, now: DateTime<Utc>) {
        let horizon =
            chrono::Duration::from_std(self.config.horizon).unwrap_or(chrono::Duration::MAX);
        while let Some(time) = self.pending.oldest_time() {
            if now - time <= horizon {
                break;
            }
            self.pending.pop_oldest();
        }
    }

    fn check_label(&self, id: &str, label: &Value) -> Result<Value, ServeError> {
        self.model
            .labels
            .check(label)
            .map_err(|e| ServeError::BadFeedback(format!("label for `{id}`: {e}")))
    }

    fn join(&mut self, items: Vec<LabelItem>) -> Result<FeedbackOutcome, ServeError> {
        // Validate every item first so a bad batch changes nothing.
        let mut checked = Vec::with_capacity(items.len());
        for item in &items {
            let labels: Vec<Value> = match (&item.label, self.pending.get(&item.id)) {
                (Value::Array(list), Some(record)) if list.len() != record.rows() => {
                    return Err(ServeError::BadFeedback(format!(
                        "id `{}` had {} rows but {} labels were sent",
                        item.id,
                        record.rows(),
                        list.len()
                    )));
                }
                (Value::Array(list), _) => list
                    .iter()
                    .map(|l| self.check_label(&item.id, l))
                    .collect::<Result<_, _>>()?,
                (Value::Null, _) => {
                    return Err(ServeError::BadFeedback(format!(
                        "label for `{}` is null",
                        item.id
                    )));
                }
                (single, Some(record)) if record.rows() != 1 => {
                    return Err(ServeError::BadFeedback(format!(
                        "id `{}` had {} rows; send a list of {} labels (got {single})",
                        item.id,
                        record.rows(),
                        record.rows()
                    )));
                }
                (single, _) => vec![self.check_label(&item.id, single)?],
            };
            checked.push((item.id.clone(), labels));
        }
        let mut outcome = FeedbackOutcome::default();
        for (id, labels) in checked {
            let Some(record) = self.pending.take(&id) else {
                // Forgotten here, maybe logged: kept for the join at training.
                if self.sink.is_some() {
                    for (i, label) in labels.into_iter().enumerate() {
                        let mut row = Map::new();
                        row.insert("id".into(), Value::String(id.clone()));
                        row.insert("label".into(), label);
                        row.insert("row".into(), Value::from(i));
                        self.late.push_map(&row);
                    }
                    outcome.late.push(id);
                } else {
                    self.metrics.feedback_unknown.inc();
                    outcome.unknown.push(id);
                }
                continue;
            };
            let multi = record.rows() > 1;
            for (i, label) in labels.into_iter().enumerate() {
                let mut row = record.row(&self.model, i);
                let prediction = record.predictions.value(i);
                row.insert(self.model.target.clone(), label.clone());
                row.insert("_id".into(), Value::String(id.clone()));
                if multi {
                    row.insert("_row".into(), Value::from(i));
                }
                log_answer(&mut row, &self.model, &record, i);
                self.buffer.push(row);
                if let (LabelKind::Class(_), Some(&confidence)) =
                    (&self.model.labels, record.confidence.get(i))
                {
                    self.metrics.labelled_rows.inc();
                    self.metrics
                        .labelled_correct
                        .inc_by(u64::from(prediction == label));
                    self.metrics.labelled_confidence_sum.inc_by(confidence);
                }
                self.online.push_back((prediction, label));
                if self.online.len() > self.config.online_window {
                    self.online.pop_front();
                }
                outcome.joined += 1;
            }
        }
        self.metrics.feedback_joined.inc_by(outcome.joined as u64);
        self.stats.joined_rows += outcome.joined as u64;
        self.update_online();
        Ok(outcome)
    }

    fn update_online(&mut self) {
        let n = self.online.len();
        self.stats.labelled = n;
        self.metrics.online_labelled.set(n as i64);
        if n == 0 {
            return;
        }
        match self.model.labels {
            LabelKind::Class(_) => {
                let correct = self.online.iter().filter(|(p, l)| p == l).count();
                let accuracy = correct as f64 / n as f64;
                self.stats.accuracy = Some(accuracy);
                self.metrics.online_accuracy.set(accuracy);
            }
            LabelKind::Value => {
                let se: f64 = self
                    .online
                    .iter()
                    .map(|(p, l)| {
                        (p.as_f64().unwrap_or(f64::NAN) - l.as_f64().unwrap_or(f64::NAN)).powi(2)
                    })
                    .sum();
                let rmse = (se / n as f64).sqrt();
                self.stats.rmse = Some(rmse);
                self.metrics.online_rmse.set(rmse);
            }
        }
    }

    async fn write_batch(&mut self) -> Result<usize, ServeError> {
        let Some(sink) = self.sink.clone() else {
            // No prefix configured: labels feed the online metrics only.
            self.buffer.clear();
            return Ok(0);
        };
        if self.buffer.is_empty() {
            return Ok(0);
        }
        let mut contents = Vec::with_capacity(self.buffer.len() * 128);
        for row in &self.buffer {
            // A map of JSON values always serialises.
            serde_json::to_writer(&mut contents, row).map_err(|e| ServeError::FeedbackWrite {
                uri: sink.prefix(),
                source: Box::new(e),
            })?;
            contents.push(b'\n');
        }
        let name = format!(
            "{}-{}.jsonl",
            Utc::now().format("%Y%m%dT%H%M%S%.6fZ"),
            uuid::Uuid::new_v4().simple()
        );
        match sink.write(&name, contents).await {
            Ok(uri) => {
                let n = self.buffer.len();
                self.buffer.clear();
                self.stats.written_rows += n as u64;
                self.stats.written_files += 1;
                self.metrics.feedback_rows_written.inc_by(n as u64);
                tracing::info!(%uri, rows = n, "feedback written");
                Ok(n)
            }
            Err(e) => {
                self.metrics.feedback_write_errors.inc();
                tracing::warn!(error = %e, "feedback write failed; keeping rows for the next try");
                // Bound memory while the store is down: keep the newest rows.
                let cap = self.config.batch_rows.saturating_mul(10).max(1);
                if self.buffer.len() > cap {
                    let excess = self.buffer.len() - cap;
                    self.buffer.drain(..excess);
                }
                Err(e)
            }
        }
    }

    fn publish(&mut self) {
        self.stats.pending = self.pending.len();
        self.stats.buffered_rows = self.buffer.len();
        self.stats_tx.send_replace(self.stats.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct MemorySink {
        files: Mutex<Vec<(String, Vec<u8>)>>,
    }

    #[async_trait::async_trait]
    impl FeedbackSink for MemorySink {
        async fn write(&self, file_name: &str, contents: Vec<u8>) -> Result<String, ServeError> {
            self.files
                .lock()
                .map_err(|e| ServeError::Config(e.to_string()))?
                .push((file_name.to_string(), contents));
            Ok(format!("memory:///{file_name}"))
        }
        fn prefix(&self) -> String {
            "memory:///".into()
        }
    }

    fn record(id: &str, rows: usize, time: DateTime<Utc>) -> ServedRecord {
        ServedRecord {
            id: id.into(),
            time,
            cells: vec![crate::serve::protocol::Column::Numbers(
                (0..rows).map(|i| 10.0 + i as f64).collect(),
            )]
            .into(),
            predictions: ServedPredictions::Labels(vec!["good".into(); rows].into()),
            confidence: vec![0.75; rows].into(),
            margins: Vec::new(),
        }
    }

    /// The classifier the test records were served by.
    fn quality_model() -> ServedModel {
        ServedModel {
            version: "v1".into(),
            features: vec!["alcohol".into()],
            target: "quality".into(),
            labels: LabelKind::Class(vec!["bad".into(), "good".into()]),
        }
    }

    fn value_model() -> ServedModel {
        ServedModel {
            labels: LabelKind::Value,
            target: "y".into(),
            ..quality_model()
        }
    }

    fn start(config: FeedbackConfig, sink: Arc<MemorySink>) -> FeedbackHandle {
        start_feedback(
            config,
            quality_model(),
            Some(sink),
            Arc::new(ServeMetrics::new()),
        )
    }

    #[tokio::test]
    async fn labels_join_their_request_and_are_written_as_jsonl() {
        let sink = Arc::new(MemorySink::default());
        let handle = start(FeedbackConfig::default(), sink.clone());
        handle.record(record("a", 1, Utc::now()));
        handle.record(record("b", 2, Utc::now()));
        let outcome = handle
            .label(vec![
                LabelItem {
                    id: "a".into(),
                    label: Value::from("good"),
                },
                LabelItem {
                    id: "b".into(),
                    label: serde_json::json!(["bad", "good"]),
                },
                LabelItem {
                    id: "zzz".into(),
                    label: Value::from("bad"),
                },
            ])
            .await
            .unwrap();
        assert_eq!(
            outcome,
            FeedbackOutcome {
                joined: 3,
                unknown: Vec::new(),
                late: vec!["zzz".into()],
            }
        );
        assert_eq!(handle.flush().await.unwrap(), 3);
        let files: Vec<(String, Vec<u8>)> = sink
            .files
            .lock()
            .unwrap()
            .iter()
            .filter(|(name, _)| !name.starts_with("predictions/") && !name.starts_with("labels/"))
            .cloned()
            .collect();
        assert_eq!(files.len(), 1);
        let lines: Vec<Value> = std::str::from_utf8(&files[0].1)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0]["quality"], "good");
        assert_eq!(lines[0]["alcohol"], 10.0);
        assert_eq!(lines[0]["_id"], "a");
        assert_eq!(lines[0]["_prediction"], "good");
        assert_eq!(lines[0]["_confidence"], 0.75);
        assert_eq!(lines[2]["_row"], 1);
        assert!(files[0].0.ends_with(".jsonl"));
        // Two of three labelled rows were predicted right.
        let stats = handle.stats();
        assert_eq!(stats.labelled, 3);
        assert!((stats.accuracy.unwrap() - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(stats.written_rows, 3);
    }

    /// A label for a request this server forgot (past the horizon, or served
    /// by another replica) is not lost: it is written under `labels/` as
    /// `id,label,row`, the form training joins with the prediction log.
    /// Without a prefix there is nowhere to keep it: unknown, as before.
    #[tokio::test]
    async fn labels_for_forgotten_requests_are_kept_under_labels_for_the_join() {
        let sink = Arc::new(MemorySink::default());
        let handle = start(FeedbackConfig::default(), sink.clone());
        let outcome = handle
            .label(vec![
                LabelItem {
                    id: "gone".into(),
                    label: Value::from("good"),
                },
                LabelItem {
                    id: "batch".into(),
                    label: serde_json::json!(["bad", "good"]),
                },
            ])
            .await
            .unwrap();
        assert_eq!(outcome.joined, 0);
        assert_eq!(outcome.late, ["gone", "batch"]);
        assert!(outcome.unknown.is_empty());
        // A label that is not a class is refused, kept or not.
        let refused = handle
            .label(vec![LabelItem {
                id: "gone2".into(),
                label: Value::from("purple"),
            }])
            .await;
        assert!(refused.is_err());
        handle.flush().await.unwrap();
        let files = sink.files.lock().unwrap().clone();
        let labels: Vec<&(String, Vec<u8>)> = files
            .iter()
            .filter(|(name, _)| name.starts_with("labels/"))
            .collect();
        assert_eq!(labels.len(), 1, "{files:?}");
        let today = Utc::now().format("%Y-%m-%d").to_string();
        assert!(labels[0].0.starts_with(&format!("labels/{today}/")));
        let rows: Vec<Value> = std::str::from_utf8(&labels[0].1)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            rows,
            [
                serde_json::json!({"id": "gone", "label": "good", "row": 0}),
                serde_json::json!({"id": "batch", "label": "bad", "row": 0}),
                serde_json::json!({"id": "batch", "label": "good", "row": 1}),
            ]
        );
        assert_eq!(handle.stats().late_labels, 3);

        let nowhere = start_feedback(
            FeedbackConfig::default(),
            quality_model(),
            None,
            Arc::new(ServeMetrics::new()),
        );
        let outcome = nowhere
            .label(vec![LabelItem {
                id: "gone".into(),
                label: Value::from("good"),
            }])
            .await
            .unwrap();
        assert_eq!(outcome.unknown, ["gone"]);
        assert!(outcome.late.is_empty());
    }

    #[tokio::test]
    async fn every_served_row_is_logged_in_batches_under_predictions_labelled_or_not() {
        let sink = Arc::new(MemorySink::default());
        let config = FeedbackConfig {
            batch_rows: 3,
            ..FeedbackConfig::default()
        };
        let handle = start(config, sink.clone());
        let t = Utc::now();
        handle.record(record("a", 1, t));
        handle.record(record("b", 2, t));
        handle.record(record("c", 1, t));
        // "a" and "b" make a full batch of 3 rows; "c" waits for the flush.
        assert_eq!(
            handle.flush().await.unwrap(),
            0,
            "no labels, no training rows"
        );
        let files = sink.files.lock().unwrap().clone();
        let logged: Vec<&(String, Vec<u8>)> = files
            .iter()
            .filter(|(n, _)| n.starts_with("predictions/"))
            .collect();
        assert_eq!(logged.len(), 2, "{files:?}");
        assert_eq!(files.len(), 2, "only the prediction log was written");
        let day = t.format("%Y-%m-%d").to_string();
        assert!(
            logged.iter().all(
                |(n, _)| n.starts_with(&format!("predictions/{day}/")) && n.ends_with(".jsonl")
            )
        );
        let rows: Vec<Value> = logged
            .iter()
            .flat_map(|(_, c)| std::str::from_utf8(c).unwrap().lines())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let ids: Vec<(&str, u64)> = rows
            .iter()
            .map(|r| (r["_id"].as_str().unwrap(), r["_row"].as_u64().unwrap()))
            .collect();
        assert_eq!(ids, [("a", 0), ("b", 0), ("b", 1), ("c", 0)]);
        assert_eq!(rows[2]["alcohol"], 11.0);
        assert_eq!(rows[2]["_prediction"], "good");
        assert_eq!(rows[2]["_confidence"], 0.75, "what the estimate said of it");
        assert_eq!(rows[2]["_version"], "v1");
        assert_eq!(rows[0]["_time"], t.to_rfc3339());
        assert!(
            rows.iter().all(|r| r.get("quality").is_none()),
            "no label yet"
        );
        let stats = handle.stats();
        assert_eq!(
            (stats.logged_rows, stats.log_files, stats.log_dropped),
            (4, 2, 0)
        );
    }

    #[tokio::test]
    async fn joined_labels_count_once_in_the_versions_realised_tally_with_their_confidence() {
        let sink = Arc::new(MemorySink::default());
        let metrics = Arc::new(ServeMetrics::new());
        let handle = start_feedback(
            FeedbackConfig::default(),
            quality_model(),
            Some(sink),
            metrics.clone(),
        );
        handle.record(record("a", 1, Utc::now()));
        handle.record(record("b", 2, Utc::now()));
        let label = |id: &str, label: Value| LabelItem {
            id: id.into(),
            label,
        };
        handle.label(vec![label("a", "good".into())]).await.unwrap();
        handle
            .label(vec![label("b", serde_json::json!(["bad", "good"]))])
            .await
            .unwrap();
        // A second label for `a` and one for an id never served are kept
        // for the join at training (late), not counted again here.
        let again = handle
            .label(vec![label("a", "bad".into()), label("nope", "good".into())])
            .await
            .unwrap();
        assert_eq!(again.late, ["a", "nope"]);
        // Served "good" at confidence 0.75 each: 3 labelled, 2 right.
        assert_eq!(metrics.labelled_rows.get(), 3);
        assert_eq!(metrics.labelled_correct.get(), 2);
        assert!((metrics.labelled_confidence_sum.get() - 2.25).abs() < 1e-9);
    }

    #[tokio::test]
    async fn bad_labels_are_refused_and_change_nothing() {
        let sink = Arc::new(MemorySink::default());
        let handle = start(FeedbackConfig::default(), sink.clone());
        handle.record(record("a", 1, Utc::now()));
        handle.record(record("b", 2, Utc::now()));
        let err = handle
            .label(vec![
                LabelItem {
                    id: "a".into(),
                    label: Value::from("good"),
                },
                LabelItem {
                    id: "b".into(),
                    label: Value::from("good"),
                },
            ])
            .await
            .unwrap_err();
        assert!(err.to_string().contains("id `b` had 2 rows"), "{err}");
        let err = handle
            .label(vec![LabelItem {
                id: "a".into(),
                label: Value::from("great"),
            }])
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("not a class of this model; classes: bad, good"),
            "{err}"
        );
        // `a` is still pending after the refused batches.
        let ok = handle
            .label(vec![LabelItem {
                id: "a".into(),
                label: Value::from("bad"),
            }])
            .await
            .unwrap();
        assert_eq!(ok.joined, 1);
    }

    #[tokio::test]
    async fn old_and_excess_requests_are_forgotten() {
        let sink = Arc::new(MemorySink::default());
        let config = FeedbackConfig {
            horizon: Duration::from_secs(60),
            max_pending: 2,
            ..FeedbackConfig::default()
        };
        let handle = start(config, sink);
        let t = Utc::now();
        handle.record(record("old", 1, t - chrono::Duration::seconds(120)));
        handle.record(record("x", 1, t));
        handle.record(record("y", 1, t));
        handle.record(record("z", 1, t));
        let outcome = handle
            .label(
                ["old", "x", "y", "z"]
                    .iter()
                    .map(|id| LabelItem {
                        id: id.to_string(),
                        label: Value::from("good"),
                    })
                    .collect(),
            )
            .await
            .unwrap();
        // Forgotten, but with a prefix their labels are kept for the join.
        assert_eq!(outcome.late, vec!["old".to_string(), "x".to_string()]);
        assert!(outcome.unknown.is_empty());
        assert_eq!(outcome.joined, 2);
    }

    #[tokio::test]
    async fn pending_rows_are_bounded_across_requests_and_evictions_counted() {
        let metrics = Arc::new(ServeMetrics::new());
        let config = FeedbackConfig {
            max_pending_rows: 5,
            ..FeedbackConfig::default()
        };
        let handle = start_feedback(config, quality_model(), None, metrics.clone());
        let t = Utc::now();
        let later = t + chrono::Duration::seconds(1);
        // 3 + 2 rows fit; 2 more push out the oldest request (a).
        handle.record(record("a", 3, t));
        handle.record(record("b", 2, t));
        handle.record(record("c", 2, t));
        // A reused id replaces its record and its rows: b (1) + c (2) + e (2) = 5 fit.
        handle.record(record("b", 1, later));
        handle.record(record("e", 2, later));
        // One row more: the stale entry of the first b is skipped, c goes.
        handle.record(record("f", 1, later));
        let labels = |id: &str, n: usize| LabelItem {
            id: id.to_string(),
            label: Value::Array(vec![Value::from("good"); n]),
        };
        let outcome = handle
            .label(vec![
                labels("a", 3),
                labels("b", 1),
                labels("c", 2),
                labels("e", 2),
                labels("f", 1),
            ])
            .await
            .unwrap();
        assert_eq!(outcome.unknown, vec!["a".to_string(), "c".to_string()]);
        assert_eq!(outcome.joined, 4);
        assert_eq!(metrics.feedback_evicted.get(), 2);
    }

    #[tokio::test]
    async fn a_full_buffer_drops_and_counts_instead_of_blocking() {
        let metrics = Arc::new(ServeMetrics::new());
        let config = FeedbackConfig {
            buffer: 1,
            ..FeedbackConfig::default()
        };
        let handle = start_feedback(config, value_model(), None, metrics.clone());
        // The worker has not run yet (single-threaded test runtime): the second send finds the buffer full.
        for i in 0..5 {
            handle.record(record(&i.to_string(), 1, Utc::now()));
        }
        assert_eq!(metrics.feedback_sampled.get(), 5);
        assert_eq!(metrics.feedback_dropped.get(), 4);
    }

    #[tokio::test]
    async fn the_sample_rate_decides_which_requests_are_remembered() {
        let sampled = |rate: f64| {
            let config = FeedbackConfig {
                sample_rate: rate,
                ..FeedbackConfig::default()
            };
            let metrics = Arc::new(ServeMetrics::new());
            let handle = start_feedback(config, value_model(), None, metrics);
            (0..20_000).filter(|_| handle.should_sample()).count()
        };
        assert_eq!(sampled(0.0), 0);
        assert_eq!(sampled(1.0), 20_000);
        // 20 000 draws at 0.25: the standard deviation is about 61, so ±500 is
        // over 8 of them; a sampler that ignores the rate lands far outside.
        let quarter = sampled(0.25);
        assert!(
            (4_500..=5_500).contains(&quarter),
            "{quarter} of 20 000 sampled at 0.25"
        );
    }
}
