//! Served records on their way to the feedback worker. The request path
//! pushes under a short lock; the worker is woken when the inbox goes from
//! empty to not empty, lets records gather for a moment
//! (`feedback::GATHER`) and takes every record at once: one wake-up per
//! batch, not per request (a wake-up per request, often onto another
//! thread, cost a 1-row server about a quarter of its throughput).

use std::sync::Mutex;

use tokio::sync::Notify;

use super::feedback::ServedRecord;

pub(super) struct Inbox {
    records: Mutex<Vec<ServedRecord>>,
    capacity: usize,
    /// Notified when `records` goes from empty to not empty.
    pub(super) ready: Notify,
}

impl Inbox {
    /// An inbox holding at most `capacity` records.
    pub(super) fn new(capacity: usize) -> Inbox {
        Inbox {
            records: Mutex::new(Vec::new()),
            capacity: capacity.max(1),
            ready: Notify::new(),
        }
    }

    /// Pushes a record unless the inbox is full; false when it was dropped.
    pub(super) fn push(&self, record: ServedRecord) -> bool {
        let first = {
            let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
            if records.len() >= self.capacity {
                return false;
            }
            records.push(record);
            records.len() == 1
        };
        if first {
            // A permit is kept when the worker is not waiting yet, so the
            // wake-up is never lost.
            self.ready.notify_one();
        }
        true
    }

    /// Every record in the inbox, swapped with `spare` (empty), so neither
    /// side allocates once both have grown.
    pub(super) fn take(&self, spare: &mut Vec<ServedRecord>) {
        debug_assert!(spare.is_empty());
        let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::swap(&mut *records, spare);
    }
}
