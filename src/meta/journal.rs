//! The journal: records committed in groups as sealed, create-only
//! segments `meta/journal/<seq>`.
//!
//! Rules:
//! - Appenders add records while holding the namespace lock, so journal
//!   order is exactly the order in which the namespace changed.
//! - One committer writes one segment at a time, seq after seq, with
//!   `put_if_absent`: two writers can never both commit a seq (fencing).
//! - Record ids count appended records; `wait_durable(id)` returns once a
//!   segment holding that record and every earlier one is in the store.
//! - A create-only PUT that fails ambiguously and then finds the object
//!   present reads it back: our own bytes mean success, anything else means
//!   another writer, and the journal turns failed (read-only).
//! - After a failure nothing is acknowledged again: waiters get the error.
//! - A segment may hold no records: a writer that took the lease over
//!   commits one at once ([`Journal::request_segment`]) to claim the next
//!   seq, so the writer it replaced fails its next commit with
//!   [`MetaError::Fenced`] and turns read-only instead of forking history.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{MetaError, Record, decode, encode};
use crate::crypto::{self, Keys, UnitAd, sha256};
use crate::store::{ObjectStore, StoreError};

pub const JOURNAL_PREFIX: &str = "meta/journal/";

pub fn journal_key(seq: u64) -> String {
    format!("{JOURNAL_PREFIX}{seq:016x}")
}

pub fn seq_of_key(key: &str) -> Option<u64> {
    let hex = key.strip_prefix(JOURNAL_PREFIX)?;
    (hex.len() == 16).then(|| u64::from_str_radix(hex, 16).ok())?
}

/// The plaintext of one segment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    pub seq: u64,
    /// Random per mount: tells our own segment from another writer's.
    pub writer: [u8; 16],
    /// SHA-256 of the previous segment's sealed bytes (zeros before seq 1).
    pub prev_hash: [u8; 32],
    pub records: Vec<Record>,
}

pub fn seal_segment(keys: &Keys, volume_id: &[u8; 16], seg: &Segment) -> Vec<u8> {
    let object = journal_key(seg.seq);
    let ad = UnitAd {
        volume_id,
        object: &object,
        unit: 0,
        epoch: 0,
        last: true,
    };
    crypto::seal(&keys.meta, &ad, &encode(seg))
}

pub fn open_segment(
    keys: &Keys,
    volume_id: &[u8; 16],
    seq: u64,
    sealed: &[u8],
) -> Result<Segment, MetaError> {
    let object = journal_key(seq);
    let ad = UnitAd {
        volume_id,
        object: &object,
        unit: 0,
        epoch: 0,
        last: true,
    };
    let seg: Segment = decode(&object, &crypto::open(&keys.meta, &ad, sealed)?)?;
    if seg.seq != seq {
        return Err(MetaError::Corrupt(super::Corrupt(format!(
            "{object} claims seq {}",
            seg.seq
        ))));
    }
    Ok(seg)
}

/// Group-commit state shared by appenders, waiters and the committer.
pub struct Journal {
    state: Mutex<State>,
    cv: Condvar,
    writer: [u8; 16],
}

struct State {
    pending: Vec<Record>,
    pending_bytes: usize,
    oldest_pending: Option<Instant>,
    appended: u64,
    durable: u64,
    urgent: bool,
    shutdown: bool,
    next_seq: u64,
    prev_hash: [u8; 32],
    failed: Option<String>,
    /// Commit a segment even with no records (a new writer's claim).
    forced: bool,
}

/// Records taken for one segment.
pub struct Batch {
    pub seq: u64,
    pub last_id: u64,
    pub records: Vec<Record>,
}

/// Commit early once this many record bytes wait.
const BATCH_BYTES: usize = 1 << 20;

impl Journal {
    /// Resumes after `last_seq`, whose sealed bytes hash to `prev_hash`.
    pub fn new(last_seq: u64, prev_hash: [u8; 32]) -> Journal {
        Journal {
            state: Mutex::new(State {
                pending: Vec::new(),
                pending_bytes: 0,
                oldest_pending: None,
                appended: 0,
                durable: 0,
                urgent: false,
                shutdown: false,
                next_seq: last_seq + 1,
                prev_hash,
                failed: None,
                forced: false,
            }),
            cv: Condvar::new(),
            writer: rand::random(),
        }
    }

    /// Appends records; returns the id of the last one (0 if none).
    pub fn append(&self, records: impl IntoIterator<Item = Record>) -> u64 {
        let mut s = self.state.lock().unwrap();
        for r in records {
            s.pending_bytes += r.approx_size();
            s.pending.push(r);
            s.appended += 1;
        }
        if s.oldest_pending.is_none() && !s.pending.is_empty() {
            s.oldest_pending = Some(Instant::now());
        }
        if s.pending_bytes >= BATCH_BYTES {
            self.cv.notify_all();
        }
        s.appended
    }

    pub fn appended(&self) -> u64 {
        self.state.lock().unwrap().appended
    }

    pub fn failure(&self) -> Option<String> {
        self.state.lock().unwrap().failed.clone()
    }

    /// Blocks until record `id` and all before it are durable.
    pub fn wait_durable(&self, id: u64) -> Result<(), String> {
        let mut s = self.state.lock().unwrap();
        loop {
            if let Some(f) = &s.failed {
                return Err(f.clone());
            }
            if s.durable >= id {
                return Ok(());
            }
            s.urgent = true;
            self.cv.notify_all();
            s = self.cv.wait(s).unwrap();
        }
    }

    /// Committer side: blocks until a batch is due (urgent, `interval` old,
    /// large, or shutting down). `None` once shut down with nothing left.
    pub fn wait_due(&self, interval: Duration) -> bool {
        let mut s = self.state.lock().unwrap();
        loop {
            if s.failed.is_some() {
                // Nothing can commit any more; idle until shutdown.
                if s.shutdown {
                    return false;
                }
                s = self.cv.wait_timeout(s, interval).unwrap().0;
                continue;
            }
            let due = match s.oldest_pending {
                None => false,
                Some(t) => {
                    s.urgent
                        || s.shutdown
                        || s.pending_bytes >= BATCH_BYTES
                        || t.elapsed() >= interval
                }
            };
            if due {
                return true;
            }
            if s.shutdown {
                return false;
            }
            let wait = s
                .oldest_pending
                .map_or(interval, |t| interval.saturating_sub(t.elapsed()));
            s = self
                .cv
                .wait_timeout(s, wait.max(Duration::from_millis(1)))
                .unwrap()
                .0;
        }
    }

    /// Takes everything pending (call with the namespace locked when a
    /// checkpoint snapshot must match the batch exactly).
    pub fn take(&self) -> Option<Batch> {
        let mut s = self.state.lock().unwrap();
        if s.pending.is_empty() && !s.forced || s.failed.is_some() {
            return None;
        }
        s.forced = false;
        s.pending_bytes = 0;
        s.oldest_pending = None;
        s.urgent = false;
        let seq = s.next_seq;
        s.next_seq += 1;
        Some(Batch {
            seq,
            last_id: s.appended,
            records: std::mem::take(&mut s.pending),
        })
    }

    /// Seals and writes a batch; on success acknowledges its records and
    /// returns the sealed segment's hash.
    pub fn commit(
        &self,
        store: &dyn ObjectStore,
        keys: &Keys,
        volume_id: &[u8; 16],
        batch: Batch,
    ) -> Result<[u8; 32], MetaError> {
        let prev_hash = self.state.lock().unwrap().prev_hash;
        let seg = Segment {
            seq: batch.seq,
            writer: self.writer,
            prev_hash,
            records: batch.records,
        };
        let sealed = seal_segment(keys, volume_id, &seg);
        let result = put_segment(store, batch.seq, &sealed);
        let mut s = self.state.lock().unwrap();
        match result {
            Ok(()) => {
                let hash = sha256(&sealed);
                s.prev_hash = hash;
                s.durable = batch.last_id;
                self.cv.notify_all();
                Ok(hash)
            }
            Err(e) => {
                s.failed = Some(format!(
                    "journal commit of seq {:016x} failed: {e}",
                    batch.seq
                ));
                self.cv.notify_all();
                Err(e)
            }
        }
    }

    /// Makes the next `take` return a batch even if no record waits: a
    /// writer that took the lease over commits one at once, so the old
    /// writer's next create-only PUT at that seq fails (it is fenced).
    pub fn request_segment(&self) {
        let mut s = self.state.lock().unwrap();
        s.forced = true;
        s.urgent = true;
        s.oldest_pending.get_or_insert_with(Instant::now);
        self.cv.notify_all();
    }

    /// True while records are appended but not yet acknowledged.
    pub fn has_unacknowledged(&self) -> bool {
        let s = self.state.lock().unwrap();
        s.appended > s.durable
    }

    /// The seq the next segment will get.
    pub fn next_seq(&self) -> u64 {
        self.state.lock().unwrap().next_seq
    }

    pub fn shutdown(&self) {
        let mut s = self.state.lock().unwrap();
        s.shutdown = true;
        self.cv.notify_all();
    }

    /// Marks the journal failed (fencing lost, store gone for good).
    pub fn fail(&self, why: String) {
        let mut s = self.state.lock().unwrap();
        s.failed.get_or_insert(why);
        self.cv.notify_all();
    }
}

/// How long a commit keeps retrying transient store errors before the
/// journal turns failed.
const COMMIT_DEADLINE: Duration = Duration::from_secs(60);

fn put_segment(store: &dyn ObjectStore, seq: u64, sealed: &[u8]) -> Result<(), MetaError> {
    let key = journal_key(seq);
    let start = Instant::now();
    let mut backoff = Duration::from_millis(20);
    let mut attempted = false;
    loop {
        match store.put_if_absent(&key, sealed) {
            Ok(()) => return Ok(()),
            Err(StoreError::AlreadyExists { .. }) => {
                // Our earlier attempt may have landed with its answer lost.
                if attempted && store.get(&key).is_ok_and(|b| b == sealed) {
                    return Ok(());
                }
                return Err(MetaError::Fenced { seq });
            }
            Err(e) if start.elapsed() >= COMMIT_DEADLINE => return Err(e.into()),
            Err(e) => {
                log::warn!("journal put of {key} failed, retrying: {e}");
                attempted = true;
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MasterKey;

    #[test]
    fn key_round_trip() {
        assert_eq!(journal_key(1), "meta/journal/0000000000000001");
        assert_eq!(seq_of_key(&journal_key(0xabc)), Some(0xabc));
        assert_eq!(seq_of_key("meta/journal/xyz"), None);
    }

    #[test]
    fn segment_bound_to_its_seq() {
        let keys = Keys::derive(&MasterKey::generate(), &[3; 16]);
        let seg = Segment {
            seq: 5,
            writer: [1; 16],
            prev_hash: [2; 32],
            records: vec![Record::Drop { ino: 9 }],
        };
        let sealed = seal_segment(&keys, &[3; 16], &seg);
        assert_eq!(open_segment(&keys, &[3; 16], 5, &sealed).unwrap(), seg);
        assert!(
            open_segment(&keys, &[3; 16], 6, &sealed).is_err(),
            "replayed at another seq"
        );
        assert!(
            open_segment(&keys, &[4; 16], 5, &sealed).is_err(),
            "other volume"
        );
    }
}
