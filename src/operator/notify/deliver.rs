//! Delivery: a bounded in-memory queue and background workers, one per sink
//! URL so that a slow or dead sink delays no other and each sink gets its
//! events in the order they were decided. A reconcile only enqueues
//! ([`Notifier::enqueue`] never waits); a worker POSTs, retries with
//! exponential backoff and jitter up to a bounded number of attempts, and
//! after the last one records a dead letter (registry row, Warning Event,
//! metric). At-least-once: a receiver deduplicates on the CloudEvent id,
//! sent again in `ce-id` and `Idempotency-Key`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::Utc;
use hmac::{Hmac, Mac};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder};
use rand::Rng;
use sha2::Sha256;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::registry::{DeadLetter, ModelRef, RegistryWriter};

use super::super::telemetry::Telemetry;

/// Header carrying `sha256=<hex HMAC-SHA256 of the body>`.
pub const SIGNATURE_HEADER: &str = "X-Driftline-Signature";

/// How deliveries are queued and retried.
#[derive(Clone, Debug, PartialEq)]
pub struct DeliveryOptions {
    /// Deliveries waiting or in flight, over all sinks; beyond it a new one
    /// is dropped (and counted, and recorded as a dead letter).
    pub queue: usize,
    /// Attempts per delivery, the first included.
    pub attempts: u32,
    /// Wait before the first retry; doubled after each failed attempt.
    pub base_delay: Duration,
    /// Longest wait between two attempts.
    pub max_delay: Duration,
    /// Longest one attempt may take.
    pub timeout: Duration,
}

impl Default for DeliveryOptions {
    fn default() -> Self {
        DeliveryOptions {
            queue: 1024,
            attempts: 5,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            timeout: Duration::from_secs(10),
        }
    }
}

/// One body for one sink.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub model: ModelRef,
    /// The Model, for the Warning Event of a dead letter.
    pub object: Option<ObjectReference>,
    pub url: String,
    /// The CloudEvent id: the idempotency key.
    pub event_id: String,
    /// The CloudEvents `type`.
    pub event_type: String,
    pub version: Option<u32>,
    pub body: Vec<u8>,
    pub content_type: &'static str,
    /// The HMAC key from the sink's Secret, when it names one.
    pub key: Option<Vec<u8>>,
}

/// Where a delivery's outcome is recorded.
#[derive(Clone, Default)]
pub struct Outcomes {
    pub registry: Option<Arc<RegistryWriter>>,
    pub recorder: Option<Recorder>,
    pub telemetry: Option<Arc<Telemetry>>,
}

/// The queue's handle: cheap to clone, never blocks.
#[derive(Clone)]
pub struct Notifier {
    dispatch: mpsc::UnboundedSender<Delivery>,
    pending: Arc<AtomicUsize>,
    capacity: usize,
    outcomes: Outcomes,
}

/// Why a delivery was not queued.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("the notification queue is full ({0} deliveries wait)")]
pub struct QueueFull(pub usize);

/// The HTTP client of the sinks: the process's ring TLS provider, no
/// cluster resolver (a sink is anywhere), a timeout per attempt.
pub fn sink_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// `sha256=<hex>`: HMAC-SHA256 of `body` under `key`.
pub fn signature(key: &[u8], body: &[u8]) -> String {
    // HMAC takes a key of any length: this never fails.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A sink URL fit for a registry row or a message: no userinfo, query or fragment.
pub fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        }
        Err(_) => "<unparsable url>".into(),
    }
}

/// The wait after failed attempt `attempt` (from 1): `base · 2^(attempt-1)`,
/// at most `max`, of which a random half is jitter (retries of many
/// deliveries to one recovering sink do not arrive together).
pub fn backoff(options: &DeliveryOptions, attempt: u32) -> Duration {
    let exp = options
        .base_delay
        .saturating_mul(1u32 << (attempt.saturating_sub(1)).min(16))
        .min(options.max_delay);
    let half = exp / 2;
    half + half.mul_f64(rand::rng().random::<f64>())
}

impl Notifier {
    /// Starts the dispatcher on the current Tokio runtime.
    pub fn start(http: reqwest::Client, options: DeliveryOptions, outcomes: Outcomes) -> Notifier {
        let (dispatch, mut rx) = mpsc::unbounded_channel::<Delivery>();
        let pending = Arc::new(AtomicUsize::new(0));
        let notifier = Notifier {
            dispatch,
            pending: pending.clone(),
            capacity: options.queue.max(1),
            outcomes: outcomes.clone(),
        };
        tokio::spawn(async move {
            let mut workers: HashMap<String, mpsc::UnboundedSender<Delivery>> = HashMap::new();
            while let Some(d) = rx.recv().await {
                let worker = workers.entry(d.url.clone()).or_insert_with(|| {
                    let (tx, rx) = mpsc::unbounded_channel();
                    tokio::spawn(worker(
                        rx,
                        http.clone(),
                        options.clone(),
                        outcomes.clone(),
                        pending.clone(),
                    ));
                    tx
                });
                if let Err(lost) = worker.send(d) {
                    // A worker only ends when its sender is dropped: not here.
                    pending.fetch_sub(1, Ordering::SeqCst);
                    warn!(url = %redacted(&lost.0.url), "notification worker gone");
                }
            }
        });
        notifier
    }

    /// Queues a delivery without waiting. A full queue refuses it: the drop
    /// is counted and recorded as a dead letter, so nothing is lost silently.
    pub fn enqueue(&self, d: Delivery) -> Result<(), QueueFull> {
        let before = self.pending.fetch_add(1, Ordering::SeqCst);
        if before >= self.capacity {
            self.pending.fetch_sub(1, Ordering::SeqCst);
            let full = QueueFull(before);
            if let Some(t) = &self.outcomes.telemetry {
                t.notification("dropped");
            }
            record_dead_letter(&self.outcomes, &d, 0, &full.to_string());
            return Err(full);
        }
        if let Err(e) = self.dispatch.send(d) {
            self.pending.fetch_sub(1, Ordering::SeqCst);
            warn!(error = %e, "notification dispatcher gone");
        }
        Ok(())
    }

    /// Records a delivery that will not be attempted (its signing key is
    /// missing) as a dead letter, and counts it.
    pub fn dead_letter(&self, d: &Delivery, why: &str) {
        if let Some(t) = &self.outcomes.telemetry {
            t.notification("deadLettered");
        }
        record_dead_letter(&self.outcomes, d, 0, why);
    }

    /// Deliveries waiting or in flight.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::SeqCst)
    }
}

/// One sink's deliveries, one after the other.
async fn worker(
    mut rx: mpsc::UnboundedReceiver<Delivery>,
    http: reqwest::Client,
    options: DeliveryOptions,
    outcomes: Outcomes,
    pending: Arc<AtomicUsize>,
) {
    while let Some(d) = rx.recv().await {
        deliver(&http, &options, &outcomes, &d).await;
        pending.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What one attempt met.
struct Failure {
    message: String,
    /// A 4xx other than 408/429 will not change on a retry.
    retryable: bool,
}

async fn attempt(
    http: &reqwest::Client,
    options: &DeliveryOptions,
    d: &Delivery,
) -> Result<(), Failure> {
    let mut request = http
        .post(&d.url)
        .timeout(options.timeout)
        .header(reqwest::header::CONTENT_TYPE, d.content_type)
        .header("ce-id", &d.event_id)
        .header("Idempotency-Key", &d.event_id)
        .body(d.body.clone());
    if let Some(key) = &d.key {
        request = request.header(SIGNATURE_HEADER, signature(key, &d.body));
    }
    match request.send().await {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => {
            let s = r.status();
            Err(Failure {
                message: format!("HTTP {s}"),
                retryable: s.is_server_error()
                    || s == reqwest::StatusCode::TOO_MANY_REQUESTS
                    || s == reqwest::StatusCode::REQUEST_TIMEOUT,
            })
        }
        Err(e) => Err(Failure {
            message: crate::error_chain(&e).to_string(),
            retryable: true,
        }),
    }
}

/// Attempts until delivered, refused for good, or out of attempts.
async fn deliver(
    http: &reqwest::Client,
    options: &DeliveryOptions,
    outcomes: &Outcomes,
    d: &Delivery,
) {
    let attempts = options.attempts.max(1);
    let mut made = 0;
    let mut last = String::new();
    while made < attempts {
        made += 1;
        match attempt(http, options, d).await {
            Ok(()) => {
                debug!(url = %redacted(&d.url), id = %d.event_id, attempts = made, "notification delivered");
                if let Some(t) = &outcomes.telemetry {
                    t.notification("delivered");
                }
                return;
            }
            Err(f) => {
                last = f.message;
                if !f.retryable || made == attempts {
                    break;
                }
                if let Some(t) = &outcomes.telemetry {
                    t.notification("retried");
                }
                tokio::time::sleep(backoff(options, made)).await;
            }
        }
    }
    if let Some(t) = &outcomes.telemetry {
        t.notification("deadLettered");
    }
    record_dead_letter(outcomes, d, made, &last);
    if let (Some(recorder), Some(object)) = (&outcomes.recorder, &d.object) {
        let message = format!(
            "{} ({}) not delivered to {} after {made} attempt(s): {last}; recorded as a dead letter",
            d.event_type,
            d.event_id,
            redacted(&d.url)
        );
        let event = Event {
            type_: EventType::Warning,
            reason: "NotificationDeadLettered".into(),
            note: Some(message.chars().take(1024).collect()),
            action: "Notify".into(),
            secondary: None,
        };
        if let Err(e) = recorder.publish(&event, object).await {
            warn!(error = %e, "dead letter Event not recorded");
        }
    }
}

/// The registry row of an undelivered notification (and a log line).
fn record_dead_letter(outcomes: &Outcomes, d: &Delivery, attempts: u32, last_error: &str) {
    warn!(
        model = %d.model, url = %redacted(&d.url), id = %d.event_id, attempts, error = %last_error,
        "notification dead-lettered"
    );
    if let Some(registry) = &outcomes.registry {
        let letter = DeadLetter {
            model: d.model.clone(),
            event_id: d.event_id.clone(),
            sink_url: redacted(&d.url),
            version: d.version,
            event_type: d.event_type.clone(),
            attempts,
            last_error: last_error.to_string(),
            failed_at: Utc::now(),
        };
        if let Err(e) = registry.submit(letter) {
            warn!(error = %e, "dead letter not recorded in the registry");
        }
    }
}
