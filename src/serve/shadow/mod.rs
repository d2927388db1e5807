//! The gateway's shadow mirror (#20): while the operator keeps a candidate
//! in its shadow stage (`status.shadow` with `startedAt`), the gateway sends
//! a share of live infer requests to it as well, after the champion has
//! answered the client, and pairs the two answers of each request into a
//! [`ShadowTally`] that `/metrics` exports (`api::scrape`'s shadow families).
//!
//! The client's answer never waits for the candidate: the pair goes onto a
//! bounded queue, and a full queue drops the mirror (counted in the tally's
//! `dropped`) instead of growing. Mirrors in flight are bounded too.

mod tee;
mod wire;

pub use tee::{Tee, into_slot};
pub use wire::{Captured, Wire, forwarded, grpc_ok};

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use serde::Deserialize;
use tokio::sync::{Semaphore, mpsc};

use crate::api::{
    ShadowSpec, ShadowStatus, ShadowTally, SliceCondition, magnitude_bucket, value_bucket,
    version_number,
};
use crate::data::Cell;
use crate::net::HostsFileResolver;

use super::annotation::DisagreementQueue;
use super::protocol::{InferRequest, TensorData};
use wire::{Answer, Answers};

/// Mirrors waiting for the candidate; more are dropped and counted.
pub const QUEUE: usize = 256;
/// Disagreeing rows kept per candidate; later ones are counted, not kept.
pub const MAX_DISAGREEMENTS: usize = 10_000;
/// How often kept disagreements that changed are written.
const WRITE_EVERY: Duration = Duration::from_secs(2);
/// Mirrors sent to the candidate at once.
const IN_FLIGHT: usize = 16;

/// Where and how to mirror: the candidate in shadow and what pairing needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Mirror {
    /// Candidate version, `v<n>`.
    pub version: String,
    /// Its base URL.
    pub url: String,
    /// Share of live infer requests mirrored, in (0, 1].
    pub sample: f64,
    /// Regression: a larger absolute difference is a disagreement.
    pub tolerance: f64,
    /// Gate slices by name: column → condition (the gate's slice rule).
    pub slices: BTreeMap<String, BTreeMap<String, String>>,
}

/// The parts of a Model's spec the mirror needs; anything else is ignored
/// (the API server validated the whole).
#[derive(Deserialize)]
struct SpecView {
    #[serde(default)]
    rollout: RolloutView,
    #[serde(default)]
    gate: Option<GateView>,
}

#[derive(Deserialize, Default)]
struct RolloutView {
    #[serde(default)]
    shadow: Option<ShadowSpec>,
}

#[derive(Deserialize)]
struct GateView {
    #[serde(default)]
    slices: Vec<SliceView>,
}

#[derive(Deserialize)]
struct SliceView {
    name: String,
    #[serde(rename = "where")]
    where_: BTreeMap<String, String>,
}

/// The mirror a Model's object calls for: `Some` while `status.shadow` has
/// started; the candidate's URL comes from `url_of(n)` (the same resolution
/// as the traffic's backends).
pub fn mirror_from_model(
    spec: &serde_json::Value,
    status: &serde_json::Value,
    url_of: impl Fn(u32) -> String,
) -> Result<Option<Mirror>, String> {
    let Some(shadow) = status.get("shadow").filter(|s| !s.is_null()) else {
        return Ok(None);
    };
    let shadow: ShadowStatus = serde_json::from_value(shadow.clone())
        .map_err(|e| format!("status.shadow is not {{version, sample, startedAt}}: {e}"))?;
    if shadow.started_at.is_none() {
        return Ok(None);
    }
    let n = version_number(&shadow.version)
        .ok_or_else(|| format!("status.shadow.version `{}` is not `v<n>`", shadow.version))?;
    let spec: SpecView = serde_json::from_value(spec.clone())
        .map_err(|e| format!("spec cannot be read for the shadow: {e}"))?;
    let tolerance = spec.rollout.shadow.and_then(|s| s.tolerance).unwrap_or(0.0);
    let slices = spec
        .gate
        .map(|g| g.slices.into_iter().map(|s| (s.name, s.where_)).collect())
        .unwrap_or_default();
    if !(shadow.sample > 0.0 && shadow.sample <= 1.0) {
        return Err(format!(
            "status.shadow.sample {} is not in (0, 1]",
            shadow.sample
        ));
    }
    Ok(Some(Mirror {
        version: shadow.version,
        url: url_of(n).trim_end_matches('/').to_string(),
        sample: shadow.sample,
        tolerance,
        slices,
    }))
}

/// A mirrored call on its way to the champion: the request's copy (filled
/// once its body has streamed through whole) and what the pair needs.
pub struct InFlight {
    mirror: Arc<Mirror>,
    wire: Wire,
    request: tee::Slot,
    request_headers: http::HeaderMap,
}

/// One request to mirror: what was sent, and the champion's answer.
pub struct Pair {
    pub mirror: Arc<Mirror>,
    pub path_and_query: String,
    pub wire: Wire,
    /// The request with the headers it is sent again with ([`forwarded`]).
    pub request: Captured,
    pub champion: Captured,
    pub champion_latency: Duration,
}

/// Each row's membership of each slice that the request's inputs can
/// decide (every column it names is an input with one value per row);
/// matching is the gate's rule (`SliceCondition`, `data::Cell::matches`).
fn slice_rows(
    request: Option<&InferRequest>,
    rows: usize,
    slices: &BTreeMap<String, BTreeMap<String, String>>,
) -> BTreeMap<String, Vec<bool>> {
    let Some(request) = request else {
        return BTreeMap::new();
    };
    let column = |name: &str| -> Option<Vec<Cell>> {
        let input = request.inputs.iter().find(|i| i.name == name)?;
        if input.data.len() != rows {
            return None;
        }
        Some(match &input.data {
            TensorData::Numbers(v) => v.iter().map(|x| Cell::Number(*x)).collect(),
            TensorData::Texts(v) => v.iter().map(|s| Cell::Text(s.clone())).collect(),
            TensorData::Bools(v) => v.iter().map(|b| Cell::Text(b.to_string())).collect(),
            TensorData::Blobs(_) => return None,
        })
    };
    let mut out = BTreeMap::new();
    'slices: for (name, conditions) in slices {
        let mut member = vec![true; rows];
        for (col, condition) in conditions {
            let (Some(cells), Ok(cond)) = (column(col), SliceCondition::parse(condition)) else {
                continue 'slices;
            };
            for (m, cell) in member.iter_mut().zip(&cells) {
                *m &= cell.matches(&cond);
            }
        }
        out.insert(name.clone(), member);
    }
    out
}

/// Folds one request's two answers into `tally`: which rows disagree, or
/// `None` when they cannot be paired (different kinds or row counts: the
/// candidate's answer is then an error).
fn fold(
    tally: &mut ShadowTally,
    mirror: &Mirror,
    request: Option<&InferRequest>,
    champion: &Answers,
    shadow: &Answers,
    latency: (Duration, Duration),
) -> Option<Vec<bool>> {
    let disagree: Vec<bool> = match (champion, shadow) {
        (Answers::Classes(a), Answers::Classes(b)) if a.len() == b.len() => {
            for (from, to) in a.iter().zip(b) {
                *tally
                    .flips
                    .entry(from.clone())
                    .or_default()
                    .entry(to.clone())
                    .or_default() += 1;
            }
            a.iter().zip(b).map(|(x, y)| x != y).collect()
        }
        (Answers::Values(a), Answers::Values(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .map(|(x, y)| {
                let d = (x - y).abs();
                tally.abs_difference_sum += d;
                *tally.abs_difference.entry(magnitude_bucket(d)).or_default() += 1;
                *tally.champion_values.entry(value_bucket(*x)).or_default() += 1;
                *tally.shadow_values.entry(value_bucket(*y)).or_default() += 1;
                let disagrees = d > mirror.tolerance || d.is_nan();
                tally.regression_disagreements += u64::from(disagrees);
                disagrees
            })
            .collect(),
        _ => return None,
    };
    let rows = disagree.len();
    tally.paired += 1;
    tally.rows += rows as u64;
    for (name, member) in slice_rows(request, rows, &mirror.slices) {
        let a = tally.slices.entry(name).or_default();
        for (m, d) in member.iter().zip(&disagree) {
            if *m {
                a.rows += 1;
                a.disagreements += u64::from(*d);
            }
        }
    }
    let us = |d: Duration| magnitude_bucket(d.as_secs_f64() * 1e6);
    *tally.champion_latency_us.entry(us(latency.0)).or_default() += 1;
    *tally.shadow_latency_us.entry(us(latency.1)).or_default() += 1;
    Some(disagree)
}

/// The rows of one request the two answers disagree on, for a person to
/// curate: the request's id (the champion's answer's when the client sent
/// none: the id its prediction log and its labels use), the row's index
/// and inputs, both answers.
fn disagreeing_rows(
    request: Option<&InferRequest>,
    champion_id: Option<&str>,
    disagree: &[bool],
    champion: &Answers,
    shadow: &Answers,
) -> Vec<serde_json::Value> {
    let rows = disagree.len();
    let id = request
        .and_then(|r| r.id.as_deref())
        .or(champion_id)
        .map(str::to_string);
    let value = |data: &TensorData, i: usize| -> serde_json::Value {
        match data {
            TensorData::Numbers(v) => v.get(i).copied().into(),
            TensorData::Texts(v) => v.get(i).cloned().into(),
            TensorData::Bools(v) => v.get(i).copied().into(),
            TensorData::Blobs(_) => serde_json::Value::Null,
        }
    };
    disagree
        .iter()
        .enumerate()
        .filter(|(_, d)| **d)
        .map(|(i, _)| {
            let inputs: serde_json::Map<String, serde_json::Value> = request
                .iter()
                .flat_map(|r| &r.inputs)
                .filter(|input| rows > 0 && input.data.len() % rows == 0)
                .map(|input| {
                    // One value per row, or the row's slice of a wider tensor.
                    let width = input.data.len() / rows;
                    let cell = if width == 1 {
                        value(&input.data, i)
                    } else {
                        (i * width..(i + 1) * width)
                            .map(|k| value(&input.data, k))
                            .collect()
                    };
                    (input.name.to_string(), cell)
                })
                .collect();
            serde_json::json!({
                "id": id,
                "row": i,
                "inputs": inputs,
                "champion": champion.at(i),
                "shadow": shadow.at(i),
            })
        })
        .collect()
}

/// Disagreeing rows kept for one candidate, whether they changed since
/// they were last written, and whether the rows an earlier gateway process
/// wrote for it were read back first.
#[derive(Default)]
struct Kept {
    rows: Vec<serde_json::Value>,
    dirty: bool,
    continued: bool,
}

type KeptRows = Arc<Mutex<BTreeMap<String, Kept>>>;

/// The gateway's side of the shadow: the sampler, the bounded queue and
/// the tallies by candidate version.
///
/// No lock is shared between users' requests and the mirror thread: a
/// thread in the idle class that is preempted while holding a lock makes
/// a user's request wait until a core is idle (a priority inversion). Drops
/// are counted apart from the pairs' tallies; the tallies are read without
/// waiting (the last complete copy when the mirror thread holds them); and
/// the rows kept for people are written from the mirror thread itself.
pub struct Shadow {
    queue: mpsc::Sender<Pair>,
    /// Written by the mirror thread only.
    tallies: Arc<Mutex<BTreeMap<String, ShadowTally>>>,
    /// The tallies as last read, for a read that finds them held.
    last_read: Mutex<BTreeMap<String, ShadowTally>>,
    /// Mirrors dropped by a full queue, counted by the users' requests.
    dropped: Mutex<BTreeMap<String, u64>>,
    seen: AtomicU64,
}

/// The rows an earlier gateway process wrote for a candidate: none when
/// there is no file yet; `None` when it cannot be read now (then nothing is
/// written over it).
async fn written_before(uri: &str) -> Option<Vec<serde_json::Value>> {
    match crate::data::store::read_bytes(uri).await {
        Ok(bytes) => Some(
            bytes
                .split(|b| *b == b'\n')
                .filter_map(|line| serde_json::from_slice(line).ok())
                .collect(),
        ),
        Err(crate::data::store::StoreError::NotFound { .. }) => Some(Vec::new()),
        Err(e) => {
            tracing::warn!(%uri, error = %e, "earlier shadow disagreements unreadable; retrying");
            None
        }
    }
}

/// Writes each candidate's kept rows, when they changed, to
/// `<root>/<version>/disagreements.jsonl` (one object, whole or not at all).
/// A gateway that restarts during a shadow stage continues the file: the
/// rows already there are read back before its first write.
async fn write_disagreements(root: String, kept: KeptRows) {
    let mut ticker = tokio::time::interval(WRITE_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let fresh: Vec<String> = {
            let kept = kept.lock().unwrap_or_else(|p| p.into_inner());
            kept.iter()
                .filter(|(_, k)| k.dirty && !k.continued)
                .map(|(version, _)| version.clone())
                .collect()
        };
        for version in fresh {
            let uri = crate::api::names::disagreements_uri(&root, &version);
            let Some(before) = written_before(&uri).await else {
                continue;
            };
            let mut kept = kept.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(k) = kept.get_mut(&version) {
                let now = std::mem::take(&mut k.rows);
                k.rows = before
                    .into_iter()
                    .chain(now)
                    .take(MAX_DISAGREEMENTS)
                    .collect();
                k.continued = true;
            }
        }
        let changed: Vec<(String, Vec<u8>)> = {
            let mut kept = kept.lock().unwrap_or_else(|p| p.into_inner());
            kept.iter_mut()
                .filter(|(_, k)| k.dirty && k.continued)
                .map(|(version, k)| {
                    k.dirty = false;
                    let mut text = Vec::new();
                    for row in &k.rows {
                        // A JSON value always serializes.
                        let _ = serde_json::to_writer(&mut text, row);
                        text.push(b'\n');
                    }
                    (version.clone(), text)
                })
                .collect()
        };
        for (version, text) in changed {
            let uri = crate::api::names::disagreements_uri(&root, &version);
            if let Err(e) = crate::data::store::write_object(&uri, text.into()).await {
                tracing::warn!(%uri, error = %e, "shadow disagreements not written; retrying");
                let mut kept = kept.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(k) = kept.get_mut(&version) {
                    k.dirty = true;
                }
            }
        }
    }
}

impl Shadow {
    /// Starts the worker that mirrors queued pairs to their candidate
    /// through `client`, each allowed `timeout`.
    /// With `root`, the rows each candidate disagreed on are kept (at most
    /// [`MAX_DISAGREEMENTS`]) and written under it.
    /// With `queue`, disagreeing rows are also offered to the annotation
    /// queue's disagreement lane.
    pub fn start(
        clients: Clients,
        timeout: Duration,
        root: Option<String>,
        annotation: Option<(String, u32)>,
    ) -> Self {
        let (queue, mut pending) = mpsc::channel::<Pair>(QUEUE);
        let tallies: Arc<Mutex<BTreeMap<String, ShadowTally>>> = Arc::default();
        let worker = tallies.clone();
        let mirrors = async move {
            // Spawned here, so their writers run on the mirror thread too.
            let kept: Option<KeptRows> = root.map(|root| {
                let kept = KeptRows::default();
                tokio::spawn(write_disagreements(root, kept.clone()));
                kept
            });
            let annotation =
                annotation.map(|(prefix, per_day)| DisagreementQueue::start(prefix, per_day));
            let slots = Arc::new(Semaphore::new(IN_FLIGHT));
            while let Some(pair) = pending.recv().await {
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    return;
                };
                let (clients, tallies, kept) = (clients.clone(), worker.clone(), kept.clone());
                let annotation = annotation.clone();
                tokio::spawn(async move {
                    let keep = Keep {
                        kept: kept.as_ref(),
                        queue: annotation.as_deref(),
                    };
                    mirror_one(&clients, timeout, &tallies, keep, pair).await;
                    drop(slot);
                });
            }
        };
        // The mirrors run on a thread of their own at a lower priority, with
        // their own connections: their work yields the CPU to users'
        // requests. It ends when the gateway drops its Shadow.
        let spawned = std::thread::Builder::new()
            .name("shadow-mirrors".into())
            .spawn(move || {
                yield_to_users();
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime.block_on(mirrors),
                    Err(e) => tracing::error!(error = %e, "no runtime for the shadow's mirrors"),
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "no thread for the shadow's mirrors; queued mirrors are dropped");
        }
        Shadow {
            queue,
            tallies,
            last_read: Mutex::default(),
            dropped: Mutex::default(),
            seen: AtomicU64::new(0),
        }
    }

    /// Whether this request is one of the `sample` share mirrored: exactly
    /// ⌊n·sample⌋ of the first n requests, with no randomness to test around.
    pub fn sampled(&self, sample: f64) -> bool {
        let n = self.seen.fetch_add(1, Ordering::Relaxed) as f64;
        ((n + 1.0) * sample).floor() > (n * sample).floor()
    }

    /// Whether to mirror this request to `mirror`'s candidate: it is
    /// [`sampled`](Self::sampled), and the queue has room for its pair. A
    /// sampled request that finds the queue full is dropped and counted
    /// here, before its bodies are copied: under load, shedding costs the
    /// user's request nothing.
    pub fn admit(&self, mirror: &Mirror) -> bool {
        if !self.sampled(mirror.sample) {
            return false;
        }
        if self.queue.capacity() > 0 {
            return true;
        }
        self.count_dropped(&mirror.version);
        false
    }

    fn count_dropped(&self, version: &str) {
        let mut dropped = self.dropped.lock().unwrap_or_else(|p| p.into_inner());
        match dropped.get_mut(version) {
            Some(n) => *n += 1,
            None => {
                dropped.insert(version.to_string(), 1);
            }
        }
    }

    /// Wraps the request body of a call to mirror: it streams to the champion
    /// as before while its copy is kept for the pair.
    pub fn copy_request(
        mirror: Arc<Mirror>,
        headers: &http::HeaderMap,
        body: Body,
        limit: usize,
    ) -> (Body, InFlight) {
        let (tee, request) = into_slot(body, limit);
        let call = InFlight {
            mirror,
            wire: Wire::of(headers),
            request,
            request_headers: forwarded(headers),
        };
        (Body::new(tee), call)
    }

    /// Wraps the champion's successful answer to a mirrored call: the
    /// client gets it frame by frame, and once it has it whole (a gRPC
    /// call: with status 0) the pair goes to the queue; the candidate is
    /// asked later. `started`: when the champion was asked.
    pub fn copy_answer<B>(
        self: &Arc<Self>,
        call: InFlight,
        path_and_query: String,
        (headers, body): (&http::HeaderMap, B),
        limit: usize,
        started: Instant,
    ) -> Body
    where
        B: hyper::body::Body<Data = Bytes> + Unpin + Send + 'static,
        B::Error: Into<axum::BoxError>,
    {
        let (shadow, headers) = (self.clone(), headers.clone());
        let ended = move |answer: Bytes, trailers: Option<http::HeaderMap>| {
            let request = call
                .request
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
            let Some(request) = request else {
                return;
            };
            if call.wire == Wire::Grpc && !grpc_ok(&headers, trailers.as_ref()) {
                return;
            }
            shadow.offer(Pair {
                mirror: call.mirror,
                path_and_query,
                wire: call.wire,
                request: Captured {
                    headers: call.request_headers,
                    body: request,
                },
                champion: Captured {
                    headers,
                    body: answer,
                },
                champion_latency: started.elapsed(),
            });
        };
        Body::new(Tee::new(body, limit, Box::new(ended)))
    }

    /// Queues a pair without waiting; a full queue drops it, counted.
    pub fn offer(&self, pair: Pair) {
        let version = pair.mirror.version.clone();
        if self.queue.try_send(pair).is_err() {
            self.count_dropped(&version);
        }
    }

    /// The tallies so far, by candidate version. Never waits for the
    /// mirror thread: while it holds the pairs' tallies, their last read
    /// copy is used (at most one pair behind).
    pub fn tallies(&self) -> BTreeMap<String, ShadowTally> {
        let mut last = self.last_read.lock().unwrap_or_else(|p| p.into_inner());
        match self.tallies.try_lock() {
            Ok(now) => *last = now.clone(),
            Err(std::sync::TryLockError::Poisoned(p)) => *last = p.into_inner().clone(),
            Err(std::sync::TryLockError::WouldBlock) => {}
        }
        let mut tallies = last.clone();
        drop(last);
        for (version, n) in self
            .dropped
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            tallies.entry(version.clone()).or_default().dropped += n;
        }
        tallies
    }
}

/// Puts the calling thread in Linux's idle scheduling class, so the
/// shadow's work gets the least CPU share the kernel gives and is shed
/// (counted as dropped) rather than slowing users when the cores are busy.
/// It does not make the work free: on a kernel that preempts only at its
/// tick, a user's request that wakes while any other task holds the core
/// waits for the tick, and bench/gateway/RESULTS.md shows idle-class busy
/// loops cost a saturated gateway's p99 as much as the shadow does. Where
/// the class cannot be set it falls back to nice +10, and failing that runs
/// at the gateway's priority; either is said once at debug level.
fn yield_to_users() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: sched_setscheduler reads `param` (a valid, live struct)
        // and changes only the calling thread's (pid 0) scheduling policy;
        // it touches no memory of ours.
        #[allow(unsafe_code)]
        let idle = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) } == 0;
        if idle {
            return;
        }
        tracing::debug!(error = %std::io::Error::last_os_error(), "the shadow's thread is not in the idle class; nice +10 instead");
        if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 10) {
            tracing::debug!(error = %e, "the shadow's thread keeps the gateway's priority");
        }
    }
}

/// Where disagreeing rows go: the kept file, the annotation queue, both or neither.
#[derive(Clone, Copy)]
struct Keep<'a> {
    kept: Option<&'a KeptRows>,
    queue: Option<&'a DisagreementQueue>,
}

async fn mirror_one(
    clients: &Clients,
    timeout: Duration,
    tallies: &Mutex<BTreeMap<String, ShadowTally>>,
    keep: Keep<'_>,
    pair: Pair,
) {
    let started = Instant::now();
    let answer = send(clients, timeout, &pair).await;
    let latency = started.elapsed();
    let read = |c: &Captured| wire::answer(pair.wire, c);
    let answers: Option<(Answer, Answer)> =
        read(&pair.champion).zip(answer.as_ref().and_then(read));
    // The request is read (once) only when its inputs are needed: for
    // slices to decide, or for disagreeing rows to keep.
    let read_request = || wire::request(pair.wire, &pair.request);
    let mut request = answers
        .as_ref()
        .filter(|_| !pair.mirror.slices.is_empty())
        .and_then(|_| read_request());
    let disagree = {
        let mut tallies = tallies.lock().unwrap_or_else(|p| p.into_inner());
        let tally = tallies.entry(pair.mirror.version.clone()).or_default();
        let folded = answers.as_ref().and_then(|(champion, shadow)| {
            let latency = (pair.champion_latency, latency);
            fold(
                tally,
                &pair.mirror,
                request.as_ref(),
                &champion.predictions,
                &shadow.predictions,
                latency,
            )
        });
        if folded.is_none() {
            tally.shadow_errors += 1;
        }
        folded
    };
    if let (Some(disagree), Some((champion, shadow))) = (disagree, answers)
        && disagree.contains(&true)
        && (keep.kept.is_some() || keep.queue.is_some())
    {
        if request.is_none() {
            request = read_request();
        }
        let rows = disagreeing_rows(
            request.as_ref(),
            champion.id.as_deref(),
            &disagree,
            &champion.predictions,
            &shadow.predictions,
        );
        if let (Some(queue), Some(id), Some(version)) =
            (keep.queue, &champion.id, &champion.model_version)
        {
            queue.offer(id, version, &rows);
        }
        let Some(kept) = keep.kept else {
            return;
        };
        let mut kept = kept.lock().unwrap_or_else(|p| p.into_inner());
        let k = kept.entry(pair.mirror.version.clone()).or_default();
        let room = MAX_DISAGREEMENTS.saturating_sub(k.rows.len());
        if room > 0 {
            k.rows.extend(rows.into_iter().take(room));
            k.dirty = true;
        }
    }
}

/// The gateway's two backend clients: HTTP/1 for REST, HTTP/2 with prior
/// knowledge for gRPC.
#[derive(Clone)]
pub struct Clients {
    pub rest: Client<HttpConnector<HostsFileResolver>, Body>,
    pub grpc: Client<HttpConnector<HostsFileResolver>, Body>,
}

/// Largest candidate answer read for pairing.
const ANSWER_LIMIT: usize = 64 * 1024 * 1024;

/// The candidate's answer when it answered with success in time.
async fn send(clients: &Clients, timeout: Duration, pair: &Pair) -> Option<Captured> {
    let url = format!("{}{}", pair.mirror.url, pair.path_and_query);
    let (client, version) = match pair.wire {
        Wire::Rest => (&clients.rest, http::Version::HTTP_11),
        Wire::Grpc => (&clients.grpc, http::Version::HTTP_2),
    };
    let mut request = http::Request::post(&url).version(version);
    for (name, value) in &pair.request.headers {
        request = request.header(name, value);
    }
    let request = request.body(Body::from(pair.request.body.clone())).ok()?;
    let response = tokio::time::timeout(timeout, client.request(request))
        .await
        .ok()?
        .ok()?;
    if !response.status().is_success() {
        return None;
    }
    let (parts, body) = response.into_parts();
    let collected = tokio::time::timeout(timeout, Limited::new(body, ANSWER_LIMIT).collect())
        .await
        .ok()?
        .ok()?;
    let trailers = collected.trailers().cloned();
    if pair.wire == Wire::Grpc && !grpc_ok(&parts.headers, trailers.as_ref()) {
        return None;
    }
    Some(Captured {
        headers: parts.headers,
        body: collected.to_bytes(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mirror() -> Mirror {
        Mirror {
            version: "v2".into(),
            url: "http://127.0.0.1:9".into(),
            sample: 1.0,
            tolerance: 0.5,
            slices: BTreeMap::from([
                (
                    "red".to_string(),
                    BTreeMap::from([("color".to_string(), "red".to_string())]),
                ),
                (
                    "unknowable".to_string(),
                    BTreeMap::from([("region".to_string(), "eu".to_string())]),
                ),
            ]),
        }
    }

    fn request_body() -> Vec<u8> {
        serde_json::to_vec(&json!({"inputs": [
            {"name": "color", "shape": [3], "datatype": "BYTES", "data": ["red", "white", "red"]},
            {"name": "alcohol", "shape": [3], "datatype": "FP64", "data": [9.0, 11.0, 12.5]},
        ]}))
        .unwrap()
    }

    fn request() -> InferRequest<'static> {
        crate::serve::protocol::parse_request(&request_body())
            .unwrap()
            .into_owned()
    }

    fn json(body: Vec<u8>) -> Captured {
        Captured {
            headers: http::HeaderMap::new(),
            body: body.into(),
        }
    }

    fn answer(data: serde_json::Value) -> Answers {
        let body = serde_json::to_vec(&json!({"model_name": "m", "outputs": [
            {"name": "predictions", "shape": [3], "datatype": "BYTES", "data": data}]}))
        .unwrap();
        wire::answer(Wire::Rest, &json(body))
            .expect("answers")
            .predictions
    }

    #[test]
    fn classes_pair_into_the_flip_matrix_and_the_slices_the_inputs_decide() {
        let m = mirror();
        let mut t = ShadowTally::default();
        let champion = answer(json!(["5", "6", "5"]));
        let shadow = answer(json!(["5", "6", "7"]));
        let latency = (Duration::from_micros(1000), Duration::from_micros(3000));
        let disagree = fold(&mut t, &m, Some(&request()), &champion, &shadow, latency);
        assert_eq!(disagree, Some(vec![false, false, true]));
        assert_eq!((t.paired, t.rows, t.disagreements()), (1, 3, 1));
        assert_eq!(t.flips["5"]["5"], 1);
        assert_eq!(t.flips["5"]["7"], 1);
        // Rows 0 and 2 are red; row 2 flipped.
        assert_eq!(
            (t.slices["red"].rows, t.slices["red"].disagreements),
            (2, 1)
        );
        assert!(
            !t.slices.contains_key("unknowable"),
            "no `region` input: the slice is not guessed"
        );
        assert_eq!(t.champion_latency_us[&magnitude_bucket(1000.0)], 1);
        assert_eq!(t.shadow_latency_us[&magnitude_bucket(3000.0)], 1);
        // Answers of different lengths are not a pair.
        let short = answer(json!(["5"]));
        assert_eq!(
            fold(&mut t, &m, Some(&request()), &champion, &short, latency),
            None
        );
        assert_eq!(t.paired, 1);
    }

    #[test]
    fn regression_differences_beyond_the_tolerance_disagree() {
        let m = mirror();
        let mut t = ShadowTally::default();
        let champion = answer(json!([1.0, 2.0, 3.0]));
        let shadow = answer(json!([1.25, 2.0, 4.0]));
        let latency = (Duration::ZERO, Duration::ZERO);
        assert!(fold(&mut t, &m, Some(&request()), &champion, &shadow, latency).is_some());
        assert_eq!(t.regression_disagreements, 1, "only |3 - 4| > 0.5");
        assert!((t.abs_difference_sum - 1.25).abs() < 1e-12);
        assert_eq!(t.slices["red"].disagreements, 1);
    }

    #[test]
    fn a_disagreeing_row_is_kept_with_its_inputs_and_both_answers() {
        let champion = answer(json!(["5", "6", "5"]));
        let shadow = answer(json!(["5", "6", "7"]));
        let mut with_id = request();
        with_id.id = Some("req-9".into());
        let rows = disagreeing_rows(
            Some(&with_id),
            Some("other"),
            &[false, false, true],
            &champion,
            &shadow,
        );
        assert_eq!(
            rows,
            vec![json!({"id": "req-9", "row": 2,
                "inputs": {"color": "red", "alcohol": 12.5},
                "champion": "5", "shadow": "7"})]
        );
        // A request without an id: the champion's answer names it.
        let rows = disagreeing_rows(
            Some(&request()),
            Some("req-9"),
            &[true, false, false],
            &champion,
            &shadow,
        );
        assert_eq!(rows[0]["id"], "req-9");
        let rows = disagreeing_rows(None, None, &[true, false, false], &champion, &shadow);
        assert_eq!(rows[0]["id"], serde_json::Value::Null);
        assert_eq!(
            rows[0]["inputs"],
            json!({}),
            "an unreadable request has no inputs"
        );
    }

    #[tokio::test]
    async fn a_candidate_that_does_not_answer_is_an_error_never_a_pair() {
        // Nothing listens on the discard port: the connection is refused.
        let connector = HttpConnector::new_with_resolver(HostsFileResolver::default());
        let client = Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector);
        let clients = Clients {
            rest: client.clone(),
            grpc: client,
        };
        let tallies = Mutex::new(BTreeMap::new());
        let champion = serde_json::to_vec(&json!({"model_name": "m", "outputs": [
            {"name": "predictions", "shape": [3], "datatype": "BYTES", "data": ["5", "6", "5"]}]}))
        .unwrap();
        let pair = Pair {
            mirror: Arc::new(mirror()),
            path_and_query: "/v2/models/m/infer".into(),
            wire: Wire::Rest,
            request: json(request_body()),
            champion: json(champion),
            champion_latency: Duration::ZERO,
        };
        let keep = Keep {
            kept: None,
            queue: None,
        };
        mirror_one(&clients, Duration::from_secs(5), &tallies, keep, pair).await;
        let t = tallies.into_inner().unwrap().remove("v2").expect("tally");
        assert_eq!((t.paired, t.rows, t.shadow_errors), (0, 0, 1));
    }

    #[tokio::test]
    async fn a_restarted_gateway_continues_the_candidates_file() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().display().to_string();
        let file = tmp.path().join("v2/disagreements.jsonl");
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        // What the gateway wrote before it restarted.
        std::fs::write(&file, "{\"row\":0}\n{\"row\":1}\n").unwrap();
        let kept = KeptRows::default();
        kept.lock().unwrap().insert(
            "v2".into(),
            Kept {
                rows: vec![json!({"row": 2})],
                dirty: true,
                continued: false,
            },
        );
        let writer = tokio::spawn(write_disagreements(root, kept.clone()));
        let mut rows = Vec::new();
        for _ in 0..200 {
            rows = std::fs::read_to_string(&file)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["row"].clone())
                .collect();
            if rows.len() == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        writer.abort();
        assert_eq!(rows, [json!(0), json!(1), json!(2)]);
    }

    /// A shadow whose queue holds one pair, and the queue's other end.
    fn shadow_with_room_for_one() -> (Shadow, mpsc::Receiver<Pair>) {
        let (queue, pending) = mpsc::channel(1);
        let shadow = Shadow {
            queue,
            tallies: Arc::default(),
            last_read: Mutex::default(),
            dropped: Mutex::default(),
            seen: AtomicU64::new(0),
        };
        (shadow, pending)
    }

    /// A pair for candidate v2 with nothing in it.
    fn empty_pair() -> Pair {
        Pair {
            mirror: Arc::new(mirror()),
            path_and_query: "/v2/models/m/infer".into(),
            wire: Wire::Rest,
            request: Captured::default(),
            champion: Captured::default(),
            champion_latency: Duration::ZERO,
        }
    }

    #[test]
    fn the_sampler_mirrors_exactly_its_share() {
        let (s, _rx) = shadow_with_room_for_one();
        let mirrored = (0..1000).filter(|_| s.sampled(0.25)).count();
        assert_eq!(mirrored, 250);
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_instead_of_growing() {
        let (s, _rx) = shadow_with_room_for_one();
        for _ in 0..5 {
            s.offer(empty_pair());
        }
        assert_eq!(s.tallies()["v2"].dropped, 4, "one queued, four dropped");
    }

    #[test]
    fn a_full_queue_sheds_before_anything_is_copied() {
        let (s, _rx) = shadow_with_room_for_one();
        let half = Mirror {
            sample: 0.5,
            ..mirror()
        };
        // Room in the queue: exactly the sampled half is admitted.
        let admitted = (0..10).filter(|_| s.admit(&half)).count();
        assert_eq!(admitted, 5);
        assert!(!s.tallies().contains_key("v2"), "nothing dropped yet");
        // The queue full: sampled requests are refused and counted, the
        // others are not counted as drops.
        s.offer(empty_pair());
        let admitted = (0..10).filter(|_| s.admit(&half)).count();
        assert_eq!(admitted, 0);
        assert_eq!(s.tallies()["v2"].dropped, 5);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_mirrors_thread_runs_in_the_idle_class() {
        // Field 41 of a thread's stat is its scheduling policy; 5 is SCHED_IDLE.
        let policy = || {
            let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
            // The command name (field 2) may hold spaces; count after its ')'.
            let after = &stat[stat.rfind(')').unwrap() + 2..];
            after.split(' ').nth(41 - 3).unwrap().to_string()
        };
        let (before, after) = std::thread::spawn(move || {
            let before = policy();
            yield_to_users();
            (before, policy())
        })
        .join()
        .unwrap();
        assert_eq!((before.as_str(), after.as_str()), ("0", "5"));
    }

    #[test]
    fn the_mirror_follows_a_started_shadow_in_status() {
        let spec = json!({"task": "regression", "data": {"source": "x", "target": "y"},
            "rollout": {"shadow": {"tolerance": 0.25}},
            "gate": {"slices": [{"name": "red", "where": {"color": "red"}, "metrics": []}]}});
        let url = |n: u32| format!("http://m-v{n}:8080/");
        let waiting = json!({"shadow": {"version": "v2", "sample": 0.5}});
        assert_eq!(mirror_from_model(&spec, &waiting, url), Ok(None));
        assert_eq!(mirror_from_model(&spec, &json!({}), url), Ok(None));
        let started = json!({"shadow": {"version": "v2", "sample": 0.5,
            "startedAt": "2026-06-01T08:00:00Z"}});
        let m = mirror_from_model(&spec, &started, url).unwrap().unwrap();
        assert_eq!(
            (m.version.as_str(), m.url.as_str(), m.sample, m.tolerance),
            ("v2", "http://m-v2:8080", 0.5, 0.25)
        );
        assert_eq!(m.slices["red"]["color"], "red");
        let bad = json!({"shadow": {"version": "2", "sample": 0.5,
            "startedAt": "2026-06-01T08:00:00Z"}});
        let err = mirror_from_model(&spec, &bad, url).unwrap_err();
        assert!(err.contains("`2` is not `v<n>`"), "{err}");
    }
}
