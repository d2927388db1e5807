//! The annotation queue's sampler: which served rows are worth a person's
//! label, within the daily budget of `spec.feedback.annotation`.
//!
//! Each reason has its own lane. A lane keeps the best-scoring candidates
//! seen since it last gave rows (a bounded heap), and a token bucket that
//! fills at the lane's budget per day and holds at most an hour's worth: at
//! each flush the lane gives its best candidates, one per whole token. So
//! rows are spread over the day instead of spent in its first minutes, the
//! rows given are the most uncertain (or the furthest into drifted
//! territory) of their stretch of traffic, and no UTC day ever gets more
//! than the lane's budget. A row whose inputs were queued already today is
//! not queued again, under any reason.
//!
//! Pure: time is an argument; the feedback worker and the gateway own the
//! writing.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashSet};

use std::hash::{Hash, Hasher};

use chrono::{DateTime, NaiveDate, Utc};

use crate::api::{AnnotationSpec, QueueReason};
use crate::data::QueuedRow;
use crate::drift::{DriftRegion, Observation};

use super::feedback::{ServedModel, ServedRecord};
use super::protocol::{DecodedBatch, Value as ServedValue};

const DAY_SECONDS: f64 = 86_400.0;

/// A candidate row: its score, the key of its inputs, and the row.
struct Candidate {
    score: f64,
    key: u64,
    row: QueuedRow,
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Candidate {}
impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Candidate {
    /// Reversed, so that the heap's top is the worst candidate kept: the
    /// one a better newcomer replaces. Ties keep the earlier row.
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .score
            .total_cmp(&self.score)
            .then_with(|| self.row.time.cmp(&other.row.time))
    }
}

struct Lane {
    reason: QueueReason,
    /// Rows a day.
    budget: f64,
    tokens: f64,
    given_today: u32,
    best: BinaryHeap<Candidate>,
}

impl Lane {
    /// Most tokens held, and most candidates kept: an hour of budget, at
    /// least one row when the lane has any budget at all.
    fn capacity(&self) -> usize {
        if self.budget <= 0.0 {
            0
        } else {
            (self.budget / 24.0).ceil().max(1.0) as usize
        }
    }

    fn day_limit(&self) -> u32 {
        self.budget
            .floor()
            .max(if self.budget > 0.0 { 1.0 } else { 0.0 }) as u32
    }
}

/// Which served rows go to the annotation queue, and when.
pub struct AnnotationSampler {
    lanes: Vec<Lane>,
    day: NaiveDate,
    refilled: DateTime<Utc>,
    /// Inputs queued today, and inputs waiting in a lane.
    queued: HashSet<u64>,
    waiting: HashSet<u64>,
}

impl AnnotationSampler {
    /// A sampler for one server's share of the budget (`spec.per_day` is
    /// already this server's), its buckets full.
    pub fn new(spec: &AnnotationSpec, now: DateTime<Utc>) -> Self {
        let lanes = QueueReason::ALL
            .into_iter()
            .map(|reason| {
                let mut lane = Lane {
                    reason,
                    budget: spec.budget(reason),
                    tokens: 0.0,
                    given_today: 0,
                    best: BinaryHeap::new(),
                };
                lane.tokens = lane.capacity() as f64;
                lane
            })
            .collect();
        Self {
            lanes,
            day: now.date_naive(),
            refilled: now,
            queued: HashSet::new(),
            waiting: HashSet::new(),
        }
    }

    fn lane(&mut self, reason: QueueReason) -> &mut Lane {
        let i = QueueReason::ALL
            .iter()
            .position(|r| *r == reason)
            .expect("every reason has a lane");
        &mut self.lanes[i]
    }

    /// Whether a row of this reason could be kept at all (a lane with no
    /// budget takes nothing): lets the caller skip scoring.
    pub fn wants(&self, reason: QueueReason) -> bool {
        self.lanes
            .iter()
            .any(|l| l.reason == reason && l.capacity() > 0)
    }

    /// Offers a row; `make` builds it only if it is kept. A row whose
    /// inputs (`key`) are queued or waiting already is refused.
    pub fn offer(
        &mut self,
        reason: QueueReason,
        score: f64,
        key: u64,
        make: impl FnOnce() -> QueuedRow,
    ) -> bool {
        if !score.is_finite() || self.queued.contains(&key) || self.waiting.contains(&key) {
            return false;
        }
        let lane = self.lane(reason);
        let capacity = lane.capacity();
        if capacity == 0 {
            return false;
        }
        let evicted = if lane.best.len() >= capacity {
            match lane.best.peek() {
                Some(worst) if worst.score < score => lane.best.pop().map(|c| c.key),
                _ => return false,
            }
        } else {
            None
        };
        lane.best.push(Candidate {
            score,
            key,
            row: make(),
        });
        if let Some(k) = evicted {
            self.waiting.remove(&k);
        }
        self.waiting.insert(key);
        true
    }

    /// The rows due now: each lane's best candidates, one per whole token
    /// and within the day's budget; the rest keep waiting.
    pub fn take(&mut self, now: DateTime<Utc>) -> Vec<QueuedRow> {
        let elapsed = (now - self.refilled).num_milliseconds().max(0) as f64 / 1000.0;
        self.refilled = now;
        if now.date_naive() != self.day {
            self.day = now.date_naive();
            self.queued.clear();
            for lane in &mut self.lanes {
                lane.given_today = 0;
            }
        }
        let mut out = Vec::new();
        for lane in &mut self.lanes {
            let capacity = lane.capacity() as f64;
            lane.tokens = (lane.tokens + lane.budget * elapsed / DAY_SECONDS).min(capacity);
            let room = lane.day_limit().saturating_sub(lane.given_today) as usize;
            let due = (lane.tokens.floor() as usize)
                .min(room)
                .min(lane.best.len());
            if due == 0 {
                continue;
            }
            // Best first: the heap's order is reversed.
            let mut ranked = std::mem::take(&mut lane.best).into_sorted_vec();
            let rest = ranked.split_off(due);
            lane.best = rest.into_iter().collect();
            lane.tokens -= due as f64;
            lane.given_today += due as u32;
            for c in ranked {
                self.waiting.remove(&c.key);
                self.queued.insert(c.key);
                out.push(c.row);
            }
        }
        out
    }
}

/// The key of row `i`'s inputs: equal inputs, equal key.
fn inputs_key(cells: &DecodedBatch, i: usize) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for c in cells.row(i) {
        match c {
            ServedValue::Number(v) => v.to_bits().hash(&mut h),
            ServedValue::Text(v) => v.hash(&mut h),
        }
    }
    h.finish()
}

/// Offers each row of a served request under every reason it qualifies
/// for: its margin (classifiers), and where the last drifted window moved
/// (`region`, while the latest closed window drifted).
pub(super) fn offer_record(
    sampler: &mut AnnotationSampler,
    region: Option<&DriftRegion>,
    model: &ServedModel,
    record: &ServedRecord,
) {
    // Nothing to score (a regression model while no window drifted): no
    // per-row work at all.
    if record.margins.is_empty() && region.is_none() {
        return;
    }
    for i in 0..record.rows() {
        let key = inputs_key(&record.cells, i);
        let queued = |reason: QueueReason, score: f64, why: String| QueuedRow {
            id: record.id.clone(),
            row: i as u64,
            version: model.version.clone(),
            time: record.time,
            reason,
            why,
            score,
            features: record.row(model, i),
            prediction: record.predictions.value(i),
            shadow: None,
        };
        if let Some(&m) = record.margins.get(i) {
            let score = 1.0 - m;
            sampler.offer(QueueReason::Uncertain, score, key, || {
                let why = format!("margin {m:.3} between the two likeliest classes");
                queued(QueueReason::Uncertain, score, why)
            });
        }
        if let Some(region) = region
            && sampler.wants(QueueReason::Drifted)
        {
            let value = |j: usize| {
                record
                    .cells
                    .get(j, i)
                    .map_or(Observation::Missing, ServedValue::observation)
            };
            if let Some((ratio, feature)) = region.score(value) {
                sampler.offer(QueueReason::Drifted, ratio, key, || {
                    let why = format!(
                        "{feature} lies where the drifted window held {ratio:.1}× the training share"
                    );
                    queued(QueueReason::Drifted, ratio, why)
                });
            }
        }
    }
}

/// A classifier's margin between its two likeliest classes for one row:
/// small means the model could hardly tell them apart.
pub fn margin(probabilities: &[f32]) -> Option<f64> {
    let (mut first, mut second) = (f32::NEG_INFINITY, f32::NEG_INFINITY);
    for &p in probabilities {
        if p > first {
            second = first;
            first = p;
        } else if p > second {
            second = p;
        }
    }
    (probabilities.len() >= 2 && first.is_finite() && second.is_finite())
        .then(|| f64::from(first - second))
}

/// The gateway's lane of the queue: rows a shadow candidate answered
/// differently from the champion, under the disagreement share of the
/// budget, written under `<feedback prefix>/queue/` like the servers' rows.
pub struct DisagreementQueue {
    sampler: std::sync::Mutex<AnnotationSampler>,
}

/// How often the gateway's disagreement lane gives and writes its rows.
const DISAGREEMENT_FLUSH: std::time::Duration = std::time::Duration::from_secs(2);

impl DisagreementQueue {
    /// Starts the lane and its writer: `per_day` rows a day at most, all of
    /// them disagreements, written under `feedback_prefix`.
    pub fn start(feedback_prefix: String, per_day: u32) -> std::sync::Arc<Self> {
        let spec = AnnotationSpec {
            per_day,
            uncertainty_share: 0.0,
            drift_share: 0.0,
        };
        let queue = std::sync::Arc::new(Self {
            sampler: std::sync::Mutex::new(AnnotationSampler::new(&spec, Utc::now())),
        });
        let writer = queue.clone();
        tokio::spawn(async move {
            let mut waiting: Vec<QueuedRow> = Vec::new();
            let mut ticker = tokio::time::interval(DISAGREEMENT_FLUSH);
            loop {
                ticker.tick().await;
                let now = Utc::now();
                waiting.extend(writer.lock().take(now));
                if waiting.is_empty() {
                    continue;
                }
                let mut text = Vec::new();
                for row in &waiting {
                    // A queued row always serializes.
                    let _ = serde_json::to_writer(&mut text, row);
                    text.push(b'\n');
                }
                let name = crate::api::names::feedback_file(
                    crate::api::names::QUEUE_DIR,
                    now,
                    &uuid::Uuid::new_v4().simple().to_string(),
                );
                let uri = crate::data::store::join(&feedback_prefix, &name);
                match crate::data::store::write_object(&uri, text.into()).await {
                    Ok(()) => waiting.clear(),
                    Err(e) => {
                        tracing::warn!(%uri, error = %e, "disagreements not queued for annotation; retrying");
                        // Bounded while the store is down: the newest day's worth.
                        let excess = waiting.len().saturating_sub(per_day as usize);
                        waiting.drain(..excess);
                    }
                }
            }
        });
        queue
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, AnnotationSampler> {
        self.sampler.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Offers the disagreeing rows of one mirrored request (as the gateway
    /// keeps them: `row`, `inputs`, `champion`, `shadow`). The id and
    /// version are the champion's answer's, the keys of its prediction log,
    /// where a label joins (an answer without them cannot be labelled and
    /// is not offered).
    pub fn offer(&self, id: &str, version: &str, rows: &[serde_json::Value]) {
        let now = Utc::now();
        let mut sampler = self.lock();
        for r in rows {
            let (champion, shadow) = (r["champion"].clone(), r["shadow"].clone());
            // Regression: the larger the gap, the more a label settles.
            let score = match (champion.as_f64(), shadow.as_f64()) {
                (Some(a), Some(b)) => (a - b).abs(),
                _ => 1.0,
            };
            let features = r["inputs"].as_object().cloned().unwrap_or_default();
            let mut h = std::collections::hash_map::DefaultHasher::new();
            r["inputs"].to_string().hash(&mut h);
            sampler.offer(QueueReason::Disagreement, score, h.finish(), || QueuedRow {
                id: id.to_string(),
                row: r["row"].as_u64().unwrap_or(0),
                version: version.to_string(),
                time: now,
                reason: QueueReason::Disagreement,
                why: format!("the champion answered {champion}, the shadow candidate {shadow}"),
                score,
                features,
                prediction: champion.clone(),
                shadow: Some(shadow.clone()),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::{Map, Value};

    fn row(id: &str, reason: QueueReason, time: DateTime<Utc>) -> QueuedRow {
        QueuedRow {
            id: id.into(),
            row: 0,
            version: "v1".into(),
            time,
            reason,
            why: String::new(),
            score: 0.0,
            features: Map::new(),
            prediction: Value::Null,
            shadow: None,
        }
    }

    fn spec(per_day: u32, u: f64, d: f64) -> AnnotationSpec {
        AnnotationSpec {
            per_day,
            uncertainty_share: u,
            drift_share: d,
        }
    }

    fn t(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 1, h, m, 0).unwrap()
    }

    #[test]
    fn each_flush_gives_the_best_rows_one_per_token_and_keeps_the_rest() {
        // 240 uncertain rows a day: 10 an hour, 10 tokens to start.
        let mut s = AnnotationSampler::new(&spec(240, 1.0, 0.0), t(0, 0));
        for i in 0..100u64 {
            let score = (i % 50) as f64; // each score twice, inputs all distinct
            let served = t(0, 0) + chrono::Duration::seconds(i as i64);
            s.offer(QueueReason::Uncertain, score, i, || {
                row(&format!("r{i}"), QueueReason::Uncertain, served)
            });
        }
        let first = s.take(t(0, 1));
        assert_eq!(first.len(), 10);
        let ids: Vec<_> = first.iter().map(|r| r.id.as_str()).collect();
        // The ten best scores (49, 49, 48, 48, …); earlier rows win ties.
        assert_eq!(
            ids,
            [
                "r49", "r99", "r48", "r98", "r47", "r97", "r46", "r96", "r45", "r95"
            ]
        );
        // The lane keeps at most an hour's worth of candidates: all ten given.
        s.offer(QueueReason::Uncertain, 0.5, 500, || {
            row("late", QueueReason::Uncertain, t(0, 1))
        });
        // No tokens left a minute later; six minutes later, one.
        assert!(s.take(t(0, 2)).is_empty());
        let later = s.take(t(0, 8));
        assert_eq!(
            later.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            ["late"]
        );
        // Drifted and disagreement lanes have no budget: nothing kept.
        assert!(!s.wants(QueueReason::Drifted));
        assert!(!s.offer(QueueReason::Drifted, 9.0, 1000, || unreachable!()));
    }

    #[test]
    fn a_day_never_gets_more_than_its_budget_however_the_flushes_fall() {
        let mut s = AnnotationSampler::new(&spec(48, 0.5, 0.5), t(0, 0));
        let mut given = [0usize; 2];
        let mut key = 0u64;
        for minute in 0..(24 * 60) {
            let now = t(minute / 60, minute % 60);
            for reason in [QueueReason::Uncertain, QueueReason::Drifted] {
                for _ in 0..5 {
                    key += 1;
                    s.offer(reason, (key % 7) as f64, key, || row("x", reason, now));
                }
            }
            for r in s.take(now) {
                given[usize::from(r.reason == QueueReason::Drifted)] += 1;
            }
        }
        assert_eq!(given, [24, 24], "each lane gives its 24 a day, no more");
        // The next day starts again.
        let next = Utc.with_ymd_and_hms(2026, 12, 2, 0, 30, 0).unwrap();
        s.offer(QueueReason::Uncertain, 1.0, u64::MAX, || {
            row("y", QueueReason::Uncertain, next)
        });
        let reasons: Vec<_> = s.take(next).iter().map(|r| r.reason).collect();
        assert_eq!(reasons, [QueueReason::Uncertain, QueueReason::Drifted]);
    }

    #[test]
    fn the_same_inputs_are_queued_once_under_any_reason() {
        let mut s = AnnotationSampler::new(&spec(480, 0.5, 0.5), t(0, 0));
        assert!(s.offer(QueueReason::Uncertain, 0.9, 7, || row(
            "a",
            QueueReason::Uncertain,
            t(0, 0)
        )));
        assert!(!s.offer(QueueReason::Drifted, 5.0, 7, || row(
            "b",
            QueueReason::Drifted,
            t(0, 0)
        )));
        assert_eq!(s.take(t(0, 1)).len(), 1);
        assert!(!s.offer(QueueReason::Uncertain, 0.99, 7, || row(
            "c",
            QueueReason::Uncertain,
            t(0, 2)
        )));
        assert!(!s.offer(QueueReason::Uncertain, f64::NAN, 8, || row(
            "d",
            QueueReason::Uncertain,
            t(0, 2)
        )));
    }

    #[test]
    fn a_full_lane_keeps_only_better_rows() {
        // 24 a day: one token and one kept candidate.
        let mut s = AnnotationSampler::new(&spec(24, 1.0, 0.0), t(0, 0));
        assert!(s.offer(QueueReason::Uncertain, 0.5, 1, || row(
            "a",
            QueueReason::Uncertain,
            t(0, 0)
        )));
        assert!(!s.offer(QueueReason::Uncertain, 0.4, 2, || row(
            "b",
            QueueReason::Uncertain,
            t(0, 0)
        )));
        assert!(s.offer(QueueReason::Uncertain, 0.8, 3, || row(
            "c",
            QueueReason::Uncertain,
            t(0, 0)
        )));
        // A worse row is refused, whatever its inputs.
        assert!(!s.offer(QueueReason::Uncertain, 0.6, 1, || row(
            "a2",
            QueueReason::Uncertain,
            t(0, 0)
        )));
        let given = s.take(t(0, 1));
        assert_eq!(
            given.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            ["c"]
        );
    }

    #[tokio::test]
    async fn the_gateways_disagreements_reach_the_queue_with_the_champions_id() {
        let tmp = tempfile::tempdir().unwrap();
        let prefix = format!("{}/fb/", tmp.path().display());
        let lane = DisagreementQueue::start(prefix.clone(), 24);
        let rows = [
            serde_json::json!({"row": 1, "inputs": {"alcohol": 12.5}, "champion": "good", "shadow": "bad"}),
            serde_json::json!({"row": 2, "inputs": {"alcohol": 9.0}, "champion": "bad", "shadow": "good"}),
        ];
        lane.offer("req-7", "v1", &rows);
        // 24 a day: one token, one kept candidate (ties keep the first).
        tokio::time::sleep(DISAGREEMENT_FLUSH * 2).await;
        let queue = crate::data::read_queue(&prefix).await.unwrap();
        assert_eq!(queue.rows.len(), 1, "{:?}", queue.rows);
        let r = &queue.rows[0];
        assert_eq!(
            (r.id.as_str(), r.row, r.version.as_str()),
            ("req-7", 1, "v1")
        );
        assert_eq!(r.reason, QueueReason::Disagreement);
        assert_eq!(r.prediction, "good");
        assert_eq!(r.shadow, Some(Value::String("bad".into())));
        assert_eq!(r.features["alcohol"], 12.5);
        assert!(r.why.contains("shadow candidate \"bad\""), "{}", r.why);
    }

    #[test]
    fn margins_are_between_the_two_likeliest_classes() {
        assert!((margin(&[0.1, 0.5, 0.4]).unwrap() - 0.1).abs() < 1e-6);
        assert!((margin(&[0.9, 0.1]).unwrap() - 0.8).abs() < 1e-6);
        assert_eq!(margin(&[1.0]), None);
        assert_eq!(margin(&[]), None);
    }
}
