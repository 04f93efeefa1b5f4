//! Group commit: records appended in namespace order, committed in
//! batches as create-only journal segments.
//!
//! Rules:
//! - Appends happen under the engine's tree lock, so the journal's order is
//!   exactly the order in which the namespace changed.
//! - Record ids count appended records. [`Journal::wait_durable`] returns
//!   once the segment holding a record, and every segment before it, is in
//!   the store.
//! - One committer at a time takes the pending records as a batch with the
//!   next seq, seals it (chained to the previous segment's hash) and PUTs
//!   it create-only: two writers can never both commit a seq (fencing).
//! - A batch whose PUT failed after the store's retries stays the next to
//!   commit, with the same seq and the same sealed bytes, because it may
//!   have landed. When a later attempt finds the seq taken, the object is
//!   read back ([`crate::store::landed`]): our own bytes mean it did.
//! - A seq taken by anyone else fences the journal for good; nothing is
//!   acknowledged again. A failed PUT only marks the journal unavailable
//!   until a commit succeeds: waiters that were waiting when an attempt
//!   failed get the store's error (`fsync` says `EIO` after the deadline
//!   instead of blocking for the whole outage); later commits retry.
//! - A segment may hold no records: a writer that took the lease over
//!   commits one at once ([`Journal::request_segment`]) to claim the next
//!   seq, so the writer it replaced fails its next commit and turns
//!   read-only instead of forking history.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::error::{EngineError, EngineResult, Failure};
use crate::alert::Alert;
use crate::crypto::{Keys, sha256};
use crate::data::PackId;
use crate::meta::journal::{journal_key, seal_segment};
use crate::meta::{Record, Segment};
use crate::store::{ObjectStore, StoreError, landed};

/// Commit early once this many record bytes wait.
const BATCH_BYTES: usize = 1 << 20;

/// Longest pause between commit attempts while the store keeps failing.
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(30);

/// A record id: the number of records appended up to and including it.
pub type CommitId = u64;

pub struct Journal {
    state: Mutex<State>,
    cv: Condvar,
    /// Random per mount: tells our own segment from another writer's.
    writer: [u8; 16],
}

struct State {
    pending: Vec<Record>,
    pending_bytes: usize,
    oldest_pending: Option<Instant>,
    appended: CommitId,
    durable: CommitId,
    urgent: bool,
    shutdown: bool,
    next_seq: u64,
    /// The last durable seq; `prev_hash` is its hash.
    committed_seq: u64,
    prev_hash: [u8; 32],
    /// A sealed batch whose PUT did not succeed: committed before anything
    /// else, byte for byte.
    stalled: Option<Sealed>,
    /// A batch taken but put back unsealed: committed before anything else.
    unsealed: Option<Batch>,
    /// Sticky failure, or the store's last refusal (cleared by a commit).
    failure: Option<Failure>,
    /// Failed commit attempts so far: a waiter fails when it grows.
    failed_attempts: u64,
    /// After a failed attempt, the next one waits until then (unless
    /// someone waits for durability).
    retry_at: Option<Instant>,
    /// Commit a segment even with no records (a new writer's claim).
    forced: bool,
}

/// Records taken for one segment.
pub struct Batch {
    pub seq: u64,
    pub last_id: CommitId,
    pub records: Vec<Record>,
}

/// A batch sealed for its PUT.
pub struct Sealed {
    pub seq: u64,
    last_id: CommitId,
    bytes: Vec<u8>,
    /// Approximate record bytes, for the checkpoint trigger.
    pub record_bytes: u64,
    /// Packs the batch retires, deleted once it is durable.
    pub retired: Vec<PackId>,
    /// An earlier PUT of these bytes failed: it may have landed.
    attempted: bool,
}

/// What a successful commit made durable.
pub struct Committed {
    pub seq: u64,
    pub hash: [u8; 32],
    pub record_bytes: u64,
    pub retired: Vec<PackId>,
}

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
                committed_seq: last_seq,
                prev_hash,
                stalled: None,
                unsealed: None,
                failure: None,
                failed_attempts: 0,
                retry_at: None,
                forced: false,
            }),
            cv: Condvar::new(),
            writer: rand::random(),
        }
    }

    /// The lock holds plain counters and queues, each changed in one step:
    /// a panic elsewhere cannot leave it half-updated, so poisoning is
    /// ignored rather than wedging every later commit.
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends records; returns the id of the last one.
    pub fn append(&self, records: impl IntoIterator<Item = Record>) -> CommitId {
        let mut s = self.state();
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

    pub fn appended(&self) -> CommitId {
        self.state().appended
    }

    /// The failure, sticky or passing, if the last commit did not succeed.
    pub fn failure(&self) -> Option<Failure> {
        self.state().failure.clone()
    }

    /// The sticky failure, if any: nothing will ever commit again.
    pub fn sticky_failure(&self) -> Option<Failure> {
        self.state().failure.clone().filter(Failure::is_sticky)
    }

    /// True while records are appended but not yet durable.
    pub fn has_unacknowledged(&self) -> bool {
        let s = self.state();
        s.appended > s.durable
    }

    /// (last durable seq, its hash).
    pub fn committed(&self) -> (u64, [u8; 32]) {
        let s = self.state();
        (s.committed_seq, s.prev_hash)
    }

    /// Blocks until record `id` and all before it are durable, or a commit
    /// attempt fails while we wait, or the journal fails for good.
    pub fn wait_durable(&self, id: CommitId) -> EngineResult<()> {
        let mut s = self.state();
        let seen = s.failed_attempts;
        loop {
            if s.durable >= id {
                return Ok(());
            }
            if let Some(f) = s.failure.as_ref().filter(|f| f.is_sticky()) {
                return Err(f.clone().into());
            }
            if s.failed_attempts > seen {
                let f = s
                    .failure
                    .clone()
                    .expect("a failed attempt leaves its failure");
                return Err(f.into());
            }
            s.urgent = true;
            self.cv.notify_all();
            s = self.cv.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Committer side: blocks until a batch is due (urgent, `interval` old,
    /// large, forced, or stalled and its pause over). False once shut
    /// down: whoever shuts down commits the rest itself.
    pub fn wait_due(&self, interval: Duration) -> bool {
        let mut s = self.state();
        loop {
            if s.shutdown {
                return false;
            }
            if s.failure.as_ref().is_some_and(Failure::is_sticky) {
                // Nothing can commit any more; idle until shutdown.
                s = self.cv.wait(s).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            let now = Instant::now();
            let has_work = s.stalled.is_some()
                || s.unsealed.is_some()
                || s.oldest_pending.is_some()
                || s.forced;
            let paused = s.retry_at.filter(|&t| t > now && !s.urgent);
            let due = has_work
                && paused.is_none()
                && (s.urgent
                    || s.forced
                    || s.stalled.is_some()
                    || s.unsealed.is_some()
                    || s.pending_bytes >= BATCH_BYTES
                    || s.oldest_pending.is_some_and(|t| t.elapsed() >= interval));
            if due {
                return true;
            }
            let wait = match (paused, s.oldest_pending) {
                (Some(t), _) => t - now,
                (None, Some(t)) => interval.saturating_sub(t.elapsed()),
                (None, None) => interval,
            };
            s = self
                .cv
                .wait_timeout(s, wait.max(Duration::from_millis(1)))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// The stalled batch, if one waits to be retried.
    pub fn take_stalled(&self) -> Option<Sealed> {
        self.state().stalled.take()
    }

    /// Takes everything pending (call with the tree locked when a
    /// checkpoint must match the batch exactly). `None` if nothing waits,
    /// a stalled batch must go first, or the journal failed for good.
    pub fn take(&self) -> Option<Batch> {
        let mut s = self.state();
        let sticky = s.failure.as_ref().is_some_and(Failure::is_sticky);
        if s.pending.is_empty() && !s.forced
            || sticky
            || s.stalled.is_some()
            || s.unsealed.is_some()
        {
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

    /// Seals a batch taken with [`Journal::take`], chained to the segment
    /// before it.
    pub fn seal(
        &self,
        keys: &Keys,
        volume_id: &[u8; 16],
        batch: Batch,
        audit: Option<(u64, [u8; 32])>,
    ) -> Sealed {
        let prev_hash = self.state().prev_hash;
        let record_bytes = batch.records.iter().map(|r| r.approx_size() as u64).sum();
        let retired = batch
            .records
            .iter()
            .filter_map(|r| match r {
                Record::PackGone { id } => Some(*id),
                _ => None,
            })
            .collect();
        let seg = Segment {
            seq: batch.seq,
            writer: self.writer,
            prev_hash,
            records: batch.records,
            audit,
        };
        Sealed {
            seq: batch.seq,
            last_id: batch.last_id,
            bytes: seal_segment(keys, volume_id, &seg),
            record_bytes,
            retired,
            attempted: false,
        }
    }

    /// Writes a sealed batch. On success acknowledges its records; on a
    /// store failure keeps it as the next to commit; a seq taken by
    /// another writer fences the journal.
    pub fn put(&self, store: &dyn ObjectStore, mut sealed: Sealed) -> EngineResult<Committed> {
        let key = journal_key(sealed.seq);
        let result = match store.put_if_absent(&key, &sealed.bytes) {
            Err(StoreError::AlreadyExists { .. })
                if sealed.attempted && landed(store, &key, &sealed.bytes) =>
            {
                Ok(())
            }
            other => other,
        };
        let mut s = self.state();
        match result {
            Ok(()) => {
                let hash = sha256(&sealed.bytes);
                s.prev_hash = hash;
                s.committed_seq = sealed.seq;
                s.durable = sealed.last_id;
                s.retry_at = None;
                if s.failure.take().is_some() {
                    log::info!("journal commits again (seq {:016x})", sealed.seq);
                }
                self.cv.notify_all();
                Ok(Committed {
                    seq: sealed.seq,
                    hash,
                    record_bytes: sealed.record_bytes,
                    retired: sealed.retired,
                })
            }
            Err(StoreError::AlreadyExists { .. }) => {
                let f = Failure::Fenced(format!(
                    "journal seq {:016x} was committed by another writer",
                    sealed.seq
                ));
                crate::alert::raise(
                    Alert::Fenced,
                    format_args!("{f}; the volume is now read-only here"),
                );
                s.failure = Some(f.clone());
                self.cv.notify_all();
                Err(f.into())
            }
            Err(e) => {
                sealed.attempted = true;
                let seq = sealed.seq;
                s.stalled = Some(sealed);
                self.failed_attempt(&mut s, seq, &e);
                Err(EngineError::Store(e))
            }
        }
    }

    /// A commit attempt of `seq` failed on the store: waiters learn it, the
    /// next attempt waits a while (unless someone needs it sooner).
    fn failed_attempt(&self, s: &mut State, seq: u64, e: &StoreError) {
        let first = !matches!(s.failure, Some(Failure::StoreUnavailable(_)));
        if first {
            let msg = format_args!("journal commit of seq {seq:016x} failed, will retry: {e}");
            crate::alert::raise(Alert::Store, msg);
        } else {
            log::debug!("journal commit of seq {seq:016x} failed again: {e}");
        }
        let pause = Duration::from_secs(1)
            .saturating_mul(1 << s.failed_attempts.min(5))
            .min(MAX_RETRY_PAUSE);
        s.failed_attempts += 1;
        s.retry_at = Some(Instant::now() + pause);
        s.failure = Some(Failure::StoreUnavailable(e.clone()));
        s.urgent = false;
        self.cv.notify_all();
    }

    /// A batch taken but not sealed (what it must bind could not be made
    /// durable first): it is the next to commit, as it is.
    pub fn put_back(&self, batch: Batch, e: &StoreError) {
        let mut s = self.state();
        let seq = batch.seq;
        s.unsealed = Some(batch);
        self.failed_attempt(&mut s, seq, e);
    }

    /// The batch put back, if one waits.
    pub fn take_unsealed(&self) -> Option<Batch> {
        self.state().unsealed.take()
    }

    /// A follower applied segments through `seq` (whose hash is `hash`)
    /// that another writer committed.
    pub fn advance(&self, seq: u64, hash: [u8; 32]) {
        let mut s = self.state();
        s.committed_seq = seq;
        s.prev_hash = hash;
        s.next_seq = seq + 1;
    }

    /// Makes the next `take` return a batch even if no record waits.
    pub fn request_segment(&self) {
        let mut s = self.state();
        s.forced = true;
        s.urgent = true;
        self.cv.notify_all();
    }

    /// A segment is due even if nothing is pending, but a stalled batch's
    /// pause still holds (unlike `request_segment`).
    pub fn force_segment(&self) {
        self.state().forced = true;
        self.cv.notify_all();
    }

    pub fn shutdown(&self) {
        let mut s = self.state();
        s.shutdown = true;
        self.cv.notify_all();
    }

    /// Fails the journal for good (fenced, abandoned, corrupt); the first
    /// sticky failure wins.
    pub fn fail(&self, f: Failure) {
        debug_assert!(f.is_sticky());
        let mut s = self.state();
        if !s.failure.as_ref().is_some_and(Failure::is_sticky) {
            s.failure = Some(f);
        }
        self.cv.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MasterKey;
    use crate::store::{FaultStore, MemoryStore, Op};

    fn keys() -> Keys {
        Keys::derive(&MasterKey::generate(), &[3; 16])
    }

    fn commit(j: &Journal, store: &dyn ObjectStore, keys: &Keys) -> EngineResult<Committed> {
        let sealed = match j.take_stalled() {
            Some(s) => s,
            None => j.seal(keys, &[3; 16], j.take().expect("a batch"), None),
        };
        j.put(store, sealed)
    }

    #[test]
    fn a_failed_commit_is_retried_with_the_same_bytes_and_seq() {
        let (keys, store) = (keys(), FaultStore::new(MemoryStore::new()));
        let j = Journal::new(0, [0; 32]);
        let id = j.append([Record::Drop { ino: 9 }]);
        store.plan().fail_matching(&[Op::PutIfAbsent], "", 1);
        assert!(matches!(
            commit(&j, &store, &keys),
            Err(EngineError::Store(_))
        ));
        assert!(matches!(j.failure(), Some(Failure::StoreUnavailable(_))));
        assert!(j.take().is_none(), "the stalled batch goes first");
        let later = j.append([Record::Drop { ino: 10 }]);
        let c = commit(&j, &store, &keys).unwrap();
        assert_eq!(c.seq, 1);
        assert!(j.failure().is_none());
        j.wait_durable(id).unwrap();
        assert_eq!(commit(&j, &store, &keys).unwrap().seq, 2);
        j.wait_durable(later).unwrap();
        assert_eq!(j.committed().0, 2);
    }

    #[test]
    fn a_landed_attempt_whose_answer_was_lost_counts_as_ours() {
        let (keys, store) = (keys(), FaultStore::new(MemoryStore::new()));
        let j = Journal::new(0, [0; 32]);
        j.append([Record::Drop { ino: 9 }]);
        store.plan().lose_answer_on_next(Op::PutIfAbsent);
        assert!(commit(&j, &store, &keys).is_err());
        assert_eq!(commit(&j, &store, &keys).unwrap().seq, 1);
        assert!(j.sticky_failure().is_none());
    }

    #[test]
    fn a_seq_taken_by_another_writer_fences_for_good() {
        let (keys, store) = (keys(), MemoryStore::new());
        store.put(&journal_key(1), b"theirs").unwrap();
        let j = Journal::new(0, [0; 32]);
        let id = j.append([Record::Drop { ino: 9 }]);
        assert!(matches!(
            commit(&j, &store, &keys),
            Err(EngineError::Failed(Failure::Fenced(_)))
        ));
        assert!(matches!(
            j.wait_durable(id),
            Err(EngineError::Failed(Failure::Fenced(_)))
        ));
        j.append([Record::Drop { ino: 10 }]);
        assert!(j.take().is_none());
    }
}
