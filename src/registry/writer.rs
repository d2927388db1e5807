//! The buffered writer: reconciles hand it records and move on; a background
//! task writes them in order, in batches, retrying with backoff while the
//! database is down. Writes are idempotent, so a batch retried after an
//! unknown outcome (connection lost at commit) never duplicates a row.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::error::RegistryError;
use super::record::Record;
use super::store::{ConnectOptions, Registry};
use super::url::RegistryUrl;

/// Whether the registry database takes writes, for the operator's
/// `RegistryAvailable` condition.
#[derive(Clone, Debug, PartialEq)]
pub enum Availability {
    /// No connection has been tried to the end yet (the writer just
    /// started): neither good nor bad news, so no warning.
    Connecting,
    /// The last write or check succeeded.
    Available,
    /// The database cannot be reached (or never was yet); records wait in
    /// memory.
    Unavailable {
        /// One line: the error, password never included.
        reason: String,
        since: DateTime<Utc>,
    },
}

impl std::fmt::Display for Availability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Availability::Connecting => f.write_str("connecting"),
            Availability::Available => f.write_str("available"),
            Availability::Unavailable { reason, since } => {
                write!(f, "unreachable since {}: {reason}", since.to_rfc3339())
            }
        }
    }
}

impl Availability {
    /// Whether writes currently reach the database.
    pub fn is_available(&self) -> bool {
        matches!(self, Availability::Available)
    }
}

/// Tuning of the buffered writer.
#[derive(Clone, Debug)]
pub struct WriterOptions {
    /// Records held in memory at most; past it `submit` refuses new ones.
    pub capacity: usize,
    /// Records written per transaction at most.
    pub batch_size: usize,
    /// First wait after a failure; doubles up to `max_backoff`.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// While idle, check the database this often so availability stays
    /// true to life between writes.
    pub ping_interval: Duration,
    pub connect: ConnectOptions,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            capacity: 100_000,
            batch_size: 500,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            ping_interval: Duration::from_secs(30),
            connect: ConnectOptions::default(),
        }
    }
}

/// Counters of what happened to submitted records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Accepted by `submit`.
    pub submitted: u64,
    /// Written to the database.
    pub written: u64,
    /// Refused by the database for good (logged, then passed over so one bad
    /// record cannot stall the queue).
    pub rejected: u64,
    /// Refused by `submit` because the buffer was full.
    pub refused: u64,
    /// Waiting in memory.
    pub pending: u64,
}

struct Shared {
    queue: Mutex<VecDeque<Record>>,
    capacity: usize,
    wake: Notify,
    availability: watch::Sender<Availability>,
    /// Records done with (written or rejected), in submission order.
    done: watch::Sender<u64>,
    submitted: AtomicU64,
    written: AtomicU64,
    rejected: AtomicU64,
    refused: AtomicU64,
}

/// Writes records to the registry without ever making the caller wait for
/// the database. Dropping it stops the background task; call
/// [`RegistryWriter::flush`] first to wait for what is queued.
pub struct RegistryWriter {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
    url: RegistryUrl,
}

impl RegistryWriter {
    /// Starts writing to `url`. Only the URL is checked here (a wrong one
    /// fails at once with one clear line); connecting happens in the
    /// background, so a database that is down delays nothing.
    pub fn start(url: &str, options: WriterOptions) -> Result<RegistryWriter, RegistryError> {
        Ok(RegistryWriter::start_with(
            RegistryUrl::parse(url)?,
            options,
        ))
    }

    /// [`RegistryWriter::start`] with a parsed URL. Needs a Tokio runtime.
    pub fn start_with(url: RegistryUrl, options: WriterOptions) -> RegistryWriter {
        let shared = Arc::new(Shared {
            queue: Mutex::new(VecDeque::new()),
            capacity: options.capacity.max(1),
            wake: Notify::new(),
            availability: watch::Sender::new(Availability::Connecting),
            done: watch::Sender::new(0),
            submitted: AtomicU64::new(0),
            written: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        });
        let task = tokio::spawn(run(shared.clone(), url.clone(), options));
        RegistryWriter { shared, task, url }
    }

    /// Queues a record and returns at once. Fails only when the buffer is
    /// full (the database has been down for a long time): the record is then
    /// not kept, and `stats().refused` counts it.
    pub fn submit(&self, record: impl Into<Record>) -> Result<(), RegistryError> {
        {
            let mut queue = lock(&self.shared.queue);
            if queue.len() >= self.shared.capacity {
                self.shared.refused.fetch_add(1, Ordering::Relaxed);
                return Err(RegistryError::BufferFull {
                    capacity: self.shared.capacity,
                });
            }
            queue.push_back(record.into());
            // Counted under the lock so `flush` targets are in queue order.
            self.shared.submitted.fetch_add(1, Ordering::Relaxed);
        }
        self.shared.wake.notify_one();
        Ok(())
    }

    /// Whether the database takes writes right now.
    pub fn is_available(&self) -> bool {
        self.shared.availability.borrow().is_available()
    }

    /// The current availability, with the reason when unavailable.
    pub fn availability(&self) -> Availability {
        self.shared.availability.borrow().clone()
    }

    /// Follows availability changes (for the `RegistryAvailable` condition).
    pub fn subscribe(&self) -> watch::Receiver<Availability> {
        self.shared.availability.subscribe()
    }

    /// Counters of submitted, written, rejected, refused and pending records.
    pub fn stats(&self) -> WriterStats {
        let pending = lock(&self.shared.queue).len() as u64;
        WriterStats {
            submitted: self.shared.submitted.load(Ordering::Relaxed),
            written: self.shared.written.load(Ordering::Relaxed),
            rejected: self.shared.rejected.load(Ordering::Relaxed),
            refused: self.shared.refused.load(Ordering::Relaxed),
            pending,
        }
    }

    /// Where the records go (password hidden when displayed).
    pub fn url(&self) -> &RegistryUrl {
        &self.url
    }

    /// Waits until every record submitted before this call is written (or
    /// rejected for good). Waits as long as the database stays down: bound
    /// it with `tokio::time::timeout` where that matters.
    #[tracing::instrument(name = "registry_wait_flushed", skip_all)]
    pub async fn flush(&self) {
        let target = self.shared.submitted.load(Ordering::Relaxed);
        let mut done = self.shared.done.subscribe();
        // The sender lives in `shared`, which `self` keeps alive.
        let _ = done.wait_for(|n| *n >= target).await;
    }
}

impl Drop for RegistryWriter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock(queue: &Mutex<VecDeque<Record>>) -> std::sync::MutexGuard<'_, VecDeque<Record>> {
    // A panic while holding the lock leaves a consistent queue (push/drain).
    queue.lock().unwrap_or_else(|e| e.into_inner())
}

/// The background task: connect, then drain the queue batch by batch.
async fn run(shared: Arc<Shared>, url: RegistryUrl, options: WriterOptions) {
    let mut registry: Option<Registry> = None;
    let mut backoff = options.initial_backoff;
    loop {
        let registry_now = match &registry {
            Some(r) => r.clone(),
            None => match Registry::connect_with(&url, &options.connect).await {
                Ok(r) => {
                    set_available(&shared);
                    registry = Some(r.clone());
                    r
                }
                Err(e) => {
                    set_unavailable(&shared, &e);
                    wait(&mut backoff, &options).await;
                    continue;
                }
            },
        };

        let batch: Vec<Record> = {
            let queue = lock(&shared.queue);
            queue.iter().take(options.batch_size).cloned().collect()
        };
        if batch.is_empty() {
            // Idle: sleep until a record arrives, checking now and then.
            if tokio::time::timeout(options.ping_interval, shared.wake.notified())
                .await
                .is_err()
            {
                match registry_now.ping().await {
                    Ok(()) => set_available(&shared),
                    Err(e) => set_unavailable(&shared, &e),
                }
            }
            continue;
        }

        // One span per batch flushed to the database, so a slow or failing
        // write is seen with its size and backend.
        let flush =
            tracing::info_span!("registry_flush", records = batch.len(), backend = ?url.backend());
        match registry_now.write_all(&batch).instrument(flush).await {
            Ok(()) => {
                finish(&shared, batch.len(), 0);
                set_available(&shared);
                backoff = options.initial_backoff;
            }
            Err(e) if e.is_transient() => {
                set_unavailable(&shared, &e);
                wait(&mut backoff, &options).await;
            }
            Err(_) => {
                // Some record in the batch is refused for good: write them
                // one by one so only that one is passed over.
                match write_one_by_one(&shared, &registry_now, &batch).await {
                    Ok(()) => {
                        set_available(&shared);
                        backoff = options.initial_backoff;
                    }
                    Err(e) => {
                        set_unavailable(&shared, &e);
                        wait(&mut backoff, &options).await;
                    }
                }
            }
        }
    }
}

/// Writes `batch` record by record, passing over (and counting) records the
/// database refuses for good; stops at the first transient error.
async fn write_one_by_one(
    shared: &Shared,
    registry: &Registry,
    batch: &[Record],
) -> Result<(), RegistryError> {
    for record in batch {
        match registry.write(record).await {
            Ok(()) => finish(shared, 1, 0),
            Err(e) if e.is_transient() => return Err(e),
            Err(e) => {
                tracing::error!(
                    model = %record.model(),
                    error = %crate::error_chain(&e),
                    "registry refused a record; passed over"
                );
                finish(shared, 0, 1);
            }
        }
    }
    Ok(())
}

/// Removes the first `written + rejected` records from the queue: they are
/// the ones just handled, since only this task removes records.
fn finish(shared: &Shared, written: usize, rejected: usize) {
    let n = written + rejected;
    lock(&shared.queue).drain(..n);
    shared.written.fetch_add(written as u64, Ordering::Relaxed);
    shared
        .rejected
        .fetch_add(rejected as u64, Ordering::Relaxed);
    shared.done.send_modify(|done| *done += n as u64);
}

fn set_available(shared: &Shared) {
    shared.availability.send_if_modified(|a| {
        if a.is_available() {
            false
        } else {
            tracing::info!("registry available again");
            *a = Availability::Available;
            true
        }
    });
}

fn set_unavailable(shared: &Shared, error: &RegistryError) {
    let reason = crate::error_chain(error);
    shared.availability.send_if_modified(|a| match a {
        Availability::Unavailable { reason: old, .. } if *old == reason => false,
        Availability::Unavailable { reason: old, .. } => {
            *old = reason.clone();
            true
        }
        Availability::Available | Availability::Connecting => {
            tracing::warn!(%reason, "registry unavailable; records wait in memory");
            *a = Availability::Unavailable {
                reason: reason.clone(),
                since: Utc::now(),
            };
            true
        }
    });
}

async fn wait(backoff: &mut Duration, options: &WriterOptions) {
    tokio::time::sleep(*backoff).await;
    *backoff = (*backoff * 2).min(options.max_backoff);
}
