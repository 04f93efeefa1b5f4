//! What the engine keeps in the store, and what it deletes.
//!
//! Rules:
//! - The newest two complete checkpoints are kept, and every pinned one
//!   (a snapshot's); journal segments are kept from just after the older
//!   of the newest two, so a newest checkpoint that does not load still
//!   leaves a complete way back to the newest state.
//! - Deleting an old checkpoint deletes only the shards no kept checkpoint
//!   refers to.
//! - A pack retired by a commit is deleted once that commit is durable and
//!   the retire grace has passed (`EngineOptions::retire_grace`: a
//!   follower that has not yet caught up may still read it), unless a
//!   pinned checkpoint still maps chunks to it: replay from any kept
//!   checkpoint ends past its retirement, but a pinned state is mounted as
//!   it is. Packs still waiting when the writer stops are unreferenced at
//!   the next mount, and its sweep removes them.
//! - A refused delete (Object Lock, versioning) is logged and tolerated;
//!   the unreferenced sweep finds it again later.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::time::Instant;

use super::error::{EngineError, EngineResult};
use super::{Engine, Loaded};
use crate::data::PackId;
use crate::meta::checkpoint::{self, ShardRef};
use crate::meta::journal::{JOURNAL_PREFIX, journal_key, seq_of_key};

pub(super) struct Retention {
    /// The newest complete checkpoints, newest first, with their shards.
    checkpoints: Vec<(u64, Vec<ShardRef>)>,
    /// Checkpoints kept whatever their age: shards and packs they need.
    pinned: BTreeMap<u64, Pinned>,
    journal_bytes_since: u64,
    segments_since: u64,
    /// A checkpoint was asked for ([`Engine::checkpoint_now`]).
    forced: bool,
    /// Checkpoints written and failed so far, for those waiting on one.
    written: u64,
    failed: u64,
    /// Packs retired by durable commits, waiting out the retire grace.
    retiring: VecDeque<(Instant, Vec<PackId>)>,
}

struct Pinned {
    shards: Vec<ShardRef>,
    packs: HashSet<PackId>,
}

impl Retention {
    pub fn new(loaded: &Loaded) -> Retention {
        Retention {
            checkpoints: vec![(loaded.base_seq, loaded.shards.clone())],
            pinned: BTreeMap::new(),
            journal_bytes_since: 0,
            segments_since: loaded.segments_after_base(),
            forced: false,
            written: 0,
            failed: 0,
            retiring: VecDeque::new(),
        }
    }

    /// Should the commit of a batch of `bytes` record bytes carry a
    /// checkpoint? (`shutdown_segments`: the lower bar at shutdown.)
    pub fn checkpoint_due(
        &mut self,
        bytes: u64,
        max_bytes: u64,
        max_segments: u64,
        shutdown_segments: Option<u64>,
    ) -> bool {
        std::mem::take(&mut self.forced)
            || self.journal_bytes_since + bytes >= max_bytes
            || self.segments_since >= max_segments
            || shutdown_segments.is_some_and(|n| self.segments_since >= n)
    }

    pub fn note_commit(&mut self, bytes: u64) {
        self.journal_bytes_since += bytes;
        self.segments_since += 1;
    }

    pub fn newest_shards(&self) -> Vec<ShardRef> {
        self.checkpoints[0].1.clone()
    }

    /// The commit that carried a checkpoint failed before the checkpoint
    /// was written: the next batch carries one again, so a caller of
    /// `checkpoint_now` waiting on it is not left waiting for good.
    pub fn checkpoint_again(&mut self) {
        self.forced = true;
    }

    pub fn checkpoint_failed(&mut self) {
        self.failed += 1;
    }

    /// Every checkpoint kept: the newest two and the pinned ones.
    pub fn kept(&self) -> Vec<u64> {
        let mut seqs: Vec<u64> = self.checkpoints.iter().map(|(s, _)| *s).collect();
        seqs.extend(self.pinned.keys());
        seqs.sort_unstable();
        seqs.dedup();
        seqs
    }

    /// The oldest of the newest two: segments after it are needed.
    pub fn oldest_unpinned(&self) -> u64 {
        self.checkpoints.last().expect("one checkpoint at least").0
    }

    fn pinned_packs(&self) -> impl Iterator<Item = &PackId> {
        self.pinned.values().flat_map(|p| p.packs.iter())
    }

    /// The pinned checkpoints (snapshots).
    pub fn pinned_seqs(&self) -> Vec<u64> {
        self.pinned.keys().copied().collect()
    }

    /// Every pack some pinned checkpoint maps chunks to.
    pub fn all_pinned_packs(&self) -> Vec<PackId> {
        self.pinned_packs().copied().collect()
    }
}

impl Engine {
    /// Queues the packs a durable commit retired, and deletes those whose
    /// grace has passed (but none a pinned checkpoint needs).
    pub(super) fn delete_retired(&self, retired: Vec<PackId>) {
        let grace = self.opts.retire_grace;
        let keys: Vec<String> = {
            let mut r = self.retention();
            if !retired.is_empty() {
                r.retiring.push_back((Instant::now(), retired));
            }
            let mut due = Vec::new();
            while r
                .retiring
                .front()
                .is_some_and(|(at, _)| at.elapsed() >= grace)
            {
                due.extend(r.retiring.pop_front().expect("checked").1);
            }
            let pinned: HashSet<&PackId> = r.pinned_packs().collect();
            due.iter()
                .filter(|p| !pinned.contains(p))
                .map(PackId::key)
                .collect()
        };
        if keys.is_empty() {
            return;
        }
        if let Err(e) = self.store.delete_many(&keys) {
            log::warn!(
                "could not delete every one of {} retired packs: {e}",
                keys.len()
            );
        }
    }

    /// Records checkpoint `seq`, keeps the newest two (and the pinned
    /// ones), deletes the rest and the journal the kept ones no longer
    /// need.
    pub(super) fn after_checkpoint(&self, seq: u64, shards: Vec<ShardRef>) {
        {
            let mut r = self.retention();
            r.checkpoints.insert(0, (seq, shards));
            r.checkpoints.truncate(2);
            r.journal_bytes_since = 0;
            r.segments_since = 0;
            r.written += 1;
            self.checkpointed.notify_all();
        }
        if let Err(e) = self.sweep_retained() {
            log::warn!("could not delete old checkpoints or journal segments: {e}");
        }
    }

    /// Deletes the checkpoints and journal segments the kept checkpoints
    /// no longer need (a rotation calls it too, so that nothing it did not
    /// re-seal is left behind once it says it is done).
    pub(super) fn sweep_retained(&self) -> EngineResult<()> {
        let (kept, keep, oldest) = {
            let r = self.retention();
            let keep: HashSet<(u64, u64)> = r
                .checkpoints
                .iter()
                .map(|(_, refs)| refs)
                .chain(r.pinned.values().map(|p| &p.shards))
                .flat_map(|refs| refs.iter().map(|s| (s.seq, s.n)))
                .collect();
            (r.kept(), keep, r.oldest_unpinned())
        };
        checkpoint::sweep(&*self.store, &kept, &keep)?;
        self.delete_journal_through(oldest)
    }

    fn delete_journal_through(&self, seq: u64) -> EngineResult<()> {
        let doomed: Vec<String> = self
            .store
            .list(JOURNAL_PREFIX)?
            .iter()
            .filter_map(|o| seq_of_key(&o.key))
            .filter(|&s| s <= seq)
            .map(journal_key)
            .collect();
        Ok(self.store.delete_many(&doomed)?)
    }

    /// Writes a checkpoint of everything appended so far and returns its
    /// seq (a snapshot pins it).
    pub fn checkpoint_now(&self) -> EngineResult<u64> {
        if self.opts.read_only {
            return Err(EngineError::ReadOnly);
        }
        let (written, failed) = {
            let mut r = self.retention();
            r.forced = true;
            (r.written, r.failed)
        };
        self.journal.request_segment();
        let mut r = self.retention();
        loop {
            if r.written > written {
                return Ok(r.checkpoints[0].0);
            }
            if r.failed > failed {
                return Err(EngineError::Store(crate::store::StoreError::Unavailable {
                    key: checkpoint::CHECKPOINT_PREFIX.into(),
                    reason: "the checkpoint could not be written".into(),
                }));
            }
            if let Some(f) = self.journal.sticky_failure() {
                return Err(f.into());
            }
            r = self
                .checkpointed
                .wait_timeout(r, std::time::Duration::from_secs(1))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Keeps checkpoint `seq`, its shards and every pack it maps, until
    /// [`Engine::unpin`]: garbage collection and retention leave them.
    pub fn pin(&self, seq: u64) -> EngineResult<()> {
        let index = checkpoint::read_index(&*self.store, &*self.keys.get()?, &self.volume_id, seq)?;
        let packs = index.packs.iter().map(|(id, _)| *id).collect();
        self.retention().pinned.insert(
            seq,
            Pinned {
                shards: index.shards,
                packs,
            },
        );
        Ok(())
    }

    pub fn unpin(&self, seq: u64) {
        self.retention().pinned.remove(&seq);
    }

    /// The packs pinned checkpoint `seq` maps chunks to.
    pub(super) fn pinned_packs(&self, seq: u64) -> Option<std::collections::BTreeSet<PackId>> {
        let r = self.retention();
        r.pinned
            .get(&seq)
            .map(|p| p.packs.iter().copied().collect())
    }
}
