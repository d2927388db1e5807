//! Served requests waiting for their labels, oldest first.
//!
//! The records sit in one ring in arrival order and a small hash table maps
//! each id to its place in the ring. At the default cap of 100 000 requests a
//! map holding the records themselves spread them over ~28 MB of buckets, so
//! every insert and every eviction of the oldest touched cold memory; the
//! ring is read front to back, and the table holds only an 8-byte sequence
//! number per request (id lookups read the id from the ring). Each slot
//! keeps its id's hash beside the record, so evicting the oldest (once a
//! request at the cap) finds its index entry without reading the id back
//! from cold memory.

use std::collections::VecDeque;
use std::hash::BuildHasher;

use chrono::{DateTime, Utc};
use hashbrown::{DefaultHashBuilder, HashTable};

use super::feedback::ServedRecord;

/// Records in arrival order; `None` where one was taken before the front.
type Ring = VecDeque<Option<Kept>>;

/// A pending record and its id's hash.
struct Kept {
    hash: u64,
    record: ServedRecord,
}

/// Below this many empty slots the ring is never compacted.
const SLACK: usize = 1024;

pub(super) struct Pending {
    /// Records in arrival order; `None` where a label (or a newer request
    /// with the same id) took one before it reached the front.
    ring: Ring,
    /// Sequence number of `ring[0]`.
    first: u64,
    /// Sequence number of each pending id's record, found by the id's hash.
    index: HashTable<u64>,
    hasher: DefaultHashBuilder,
    /// Rows over all pending records.
    rows: usize,
}

impl Pending {
    /// Room for `capacity` requests before anything grows.
    pub(super) fn with_capacity(capacity: usize) -> Pending {
        Pending {
            ring: VecDeque::with_capacity(capacity),
            first: 0,
            // Twice the room: at the cap every request evicts one id and
            // adds one, and a table that full leaves a tombstone for most
            // removals, so it rehashed all its entries every few thousand
            // requests (a percent of a one-row request's CPU). Half empty,
            // a removal mostly frees its slot. ~9 bytes a slot.
            index: HashTable::with_capacity(capacity.saturating_mul(2)),
            hasher: DefaultHashBuilder::default(),
            rows: 0,
        }
    }

    /// Requests pending.
    pub(super) fn len(&self) -> usize {
        self.index.len()
    }

    /// Rows over all pending requests.
    pub(super) fn rows(&self) -> usize {
        self.rows
    }

    /// The pending request `id`.
    pub(super) fn get(&self, id: &str) -> Option<&ServedRecord> {
        let seq = *self
            .index
            .find(self.hasher.hash_one(id), is_id(&self.ring, self.first, id))?;
        slot(&self.ring, self.first, seq)
    }

    /// Remembers `record`; a pending request with the same id is replaced
    /// (the newer one is what a label will mean) and returned.
    pub(super) fn insert(&mut self, record: ServedRecord) -> Option<ServedRecord> {
        let hash = self.hasher.hash_one(record.id.as_str());
        let seq = self.first + self.ring.len() as u64;
        self.rows += record.rows();
        let first = self.first;
        let replaced = match self
            .index
            .find_mut(hash, is_id(&self.ring, first, &record.id))
        {
            Some(old) => {
                let at = std::mem::replace(old, seq);
                self.ring.push_back(Some(Kept { hash, record }));
                self.vacate(at)
            }
            None => {
                self.ring.push_back(Some(Kept { hash, record }));
                self.index
                    .insert_unique(hash, seq, hash_of(&self.ring, first));
                None
            }
        };
        self.compact_if_sparse();
        replaced
    }

    /// Takes the pending request `id` (its label arrived).
    pub(super) fn take(&mut self, id: &str) -> Option<ServedRecord> {
        let entry = self
            .index
            .find_entry(self.hasher.hash_one(id), is_id(&self.ring, self.first, id))
            .ok()?;
        let (seq, _) = entry.remove();
        let record = self.vacate(seq);
        self.compact_if_sparse();
        record
    }

    /// When the oldest pending request was served.
    pub(super) fn oldest_time(&self) -> Option<DateTime<Utc>> {
        // The front is never empty: `vacate` trims empty slots there.
        self.ring.front()?.as_ref().map(|k| k.record.time)
    }

    /// Forgets the oldest pending request and returns it.
    pub(super) fn pop_oldest(&mut self) -> Option<ServedRecord> {
        let hash = self.ring.front()?.as_ref()?.hash;
        let first = self.first;
        if let Ok(entry) = self.index.find_entry(hash, |&s| s == first) {
            entry.remove();
        }
        self.vacate(first)
    }

    /// Empties the slot of `seq` and returns its record; empty slots at the
    /// front are dropped so the front is always a pending request.
    fn vacate(&mut self, seq: u64) -> Option<ServedRecord> {
        let record = self
            .ring
            .get_mut((seq - self.first) as usize)?
            .take()
            .map(|k| k.record);
        if let Some(r) = &record {
            self.rows -= r.rows();
        }
        while let Some(None) = self.ring.front() {
            self.ring.pop_front();
            self.first += 1;
        }
        record
    }

    /// Labels taken out of arrival order leave empty slots behind the
    /// front; once they outnumber the pending requests (and a slack) the
    /// ring is packed and re-indexed, so its length stays within twice the
    /// requests pending. Amortised: a pass over n slots follows at least
    /// n / 2 takes.
    fn compact_if_sparse(&mut self) {
        if self.ring.len() <= 2 * self.index.len() + SLACK {
            return;
        }
        self.ring.retain(Option::is_some);
        self.index.clear();
        let hash = hash_of(&self.ring, self.first);
        for seq in self.first..self.first + self.ring.len() as u64 {
            self.index.insert_unique(hash(&seq), seq, &hash);
        }
    }
}

/// The index's test for the entry of `id`.
fn is_id<'a>(ring: &'a Ring, first: u64, id: &'a str) -> impl Fn(&u64) -> bool + 'a {
    move |&s| slot(ring, first, s).is_some_and(|r| r.id == id)
}

/// The index's hasher: an entry hashes as the id its slot holds (the hash
/// kept beside it).
fn hash_of(ring: &Ring, first: u64) -> impl Fn(&u64) -> u64 + '_ {
    move |&s| {
        s.checked_sub(first)
            .and_then(|at| ring.get(at as usize)?.as_ref())
            .map_or(0, |k| k.hash)
    }
}

/// The record at sequence number `seq`, if it is still pending.
fn slot(ring: &Ring, first: u64, seq: u64) -> Option<&ServedRecord> {
    ring.get(seq.checked_sub(first)? as usize)?
        .as_ref()
        .map(|k| &k.record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::feedback::ServedPredictions;

    fn record(id: &str, rows: usize, seconds: i64) -> ServedRecord {
        ServedRecord {
            id: id.into(),
            time: DateTime::from_timestamp(seconds, 0).unwrap(),
            cells: Default::default(),
            predictions: ServedPredictions::Values(vec![0.0; rows].into()),
            confidence: Default::default(),
            margins: Vec::new(),
        }
    }

    #[test]
    fn requests_are_found_taken_and_forgotten_oldest_first() {
        let mut p = Pending::with_capacity(4);
        assert!(p.insert(record("a", 1, 1)).is_none());
        assert!(p.insert(record("b", 2, 2)).is_none());
        assert!(p.insert(record("c", 3, 3)).is_none());
        assert_eq!((p.len(), p.rows()), (3, 6));
        assert_eq!(p.get("b").map(|r| r.rows()), Some(2));
        assert!(p.get("x").is_none());
        // Taken out of order: the others keep their places.
        assert_eq!(p.take("b").map(|r| r.id), Some("b".to_string()));
        assert!(p.take("b").is_none());
        assert_eq!((p.len(), p.rows()), (2, 4));
        assert_eq!(p.oldest_time().map(|t| t.timestamp()), Some(1));
        assert_eq!(p.pop_oldest().map(|r| r.id), Some("a".to_string()));
        // The emptied slot of b is skipped: c is next.
        assert_eq!(p.oldest_time().map(|t| t.timestamp()), Some(3));
        assert_eq!(p.pop_oldest().map(|r| r.id), Some("c".to_string()));
        assert!(p.pop_oldest().is_none());
        assert_eq!((p.len(), p.rows()), (0, 0));
        assert!(p.oldest_time().is_none());
    }

    #[test]
    fn a_reused_id_replaces_the_older_request_in_place_of_the_newest() {
        let mut p = Pending::with_capacity(4);
        p.insert(record("a", 2, 1));
        p.insert(record("b", 1, 2));
        let replaced = p.insert(record("a", 5, 3)).expect("a was pending");
        assert_eq!(replaced.rows(), 2);
        assert_eq!((p.len(), p.rows()), (2, 6));
        assert_eq!(p.get("a").map(|r| r.rows()), Some(5));
        // The older a's place is empty: b is the oldest, then the newer a.
        assert_eq!(p.pop_oldest().map(|r| r.id), Some("b".to_string()));
        assert_eq!(p.pop_oldest().map(|r| r.rows()), Some(5));
        assert_eq!(p.len(), 0);
    }

    #[test]
    fn labels_out_of_order_keep_the_ring_within_twice_the_pending_requests() {
        let mut p = Pending::with_capacity(16);
        // One old request never labelled, then many labelled soon after.
        p.insert(record("old", 1, 0));
        for i in 0..20_000 {
            let id = format!("r{i}");
            p.insert(record(&id, 1, 1));
            assert!(p.take(&id).is_some());
            assert!(p.ring.len() <= 2 * p.len() + SLACK + 1);
        }
        assert_eq!((p.len(), p.rows()), (1, 1));
        // Every id is still found after the packing re-indexed the ring.
        for i in 0..3000 {
            p.insert(record(&format!("k{i}"), 1, 2));
        }
        for i in (0..3000).rev() {
            assert!(p.get(&format!("k{i}")).is_some(), "k{i} is found");
        }
        assert_eq!(p.pop_oldest().map(|r| r.id), Some("old".to_string()));
        assert_eq!(p.pop_oldest().map(|r| r.id), Some("k0".to_string()));
    }
}
