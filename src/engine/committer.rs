//! The committer: the one thread that writes journal segments, and after
//! each commit the checkpoint (when due), the retention sweep and the
//! deletion of packs the commit retired.
//!
//! Rules:
//! - One commit at a time, on this thread (at open and at shutdown, before
//!   and after it runs, on the caller's).
//! - A checkpoint is taken while the tree is exactly the state after the
//!   batch it follows (the tree lock is held from taking the batch to
//!   taking the checkpoint's shards, copy-on-write: `meta::table`), then
//!   encoded, sealed and written outside the lock. If the commit
//!   fails, its shards are marked dirty again and the next batch carries
//!   the checkpoint (so `checkpoint_now` is not left waiting); if the checkpoint fails,
//!   the journal still holds everything and a later one tries again.
//! - A stalled batch (its PUT failed) is retried before anything else and
//!   never carries a checkpoint: the tree has moved on since it was taken.
//! - Packs carried in journal segments are written as objects before the
//!   checkpoint that names them (see `meta::carried`); a failure there is
//!   a failed checkpoint, and the segments still hold them.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::error::{EngineError, EngineResult};
use super::{Engine, load::Loaded};
use crate::data::PackId;
use crate::meta::checkpoint;
use crate::store::{StoreError, landed};

/// Segments after which a checkpoint is written whatever their size, so
/// replay stays short.
const MAX_SEGMENTS: u64 = 4096;
/// At shutdown, a checkpoint once this many segments wait, so the next
/// mount replays little.
const SHUTDOWN_SEGMENTS: u64 = 16;

/// Starts the committer, and the unreferenced sweep unless `sweep` is
/// false (an accepted rollback: the hidden tail's packs stay).
pub(super) fn start(engine: &Arc<Engine>, sweep: bool) {
    let interval = engine.opts.commit_interval;
    let journal = Arc::clone(&engine.journal);
    engine.spawn("committer", move |weak| {
        while journal.wait_due(interval) {
            let Some(engine) = weak.upgrade() else { return };
            // Failures are logged and kept by the journal; waiters see them.
            let _ = engine.commit_once();
        }
    });
    if !sweep {
        log::warn!("no sweep of unreferenced packs on this mount: a rollback was accepted");
        return;
    }
    engine.spawn("gc", |weak| {
        if let Some(engine) = weak.upgrade() {
            if let Err(e) = engine.collect_unreferenced() {
                log::warn!("garbage collection of unreferenced objects failed: {e}");
            }
        }
    });
}

impl Engine {
    /// Commits one batch (the stalled one first), then checkpoint and
    /// garbage work if due; returns whether there was a batch.
    pub(super) fn commit_once(&self) -> EngineResult<bool> {
        // Held from taking a batch to sealing it, so a lock (which wipes
        // the keys) waits for the batch instead of stranding it; while
        // locked, batches wait in the journal.
        let keys = match self.keys.get() {
            Ok(k) => k,
            Err(EngineError::Locked) => return Ok(false),
            Err(e) => return Err(e),
        };
        let (sealed, prepared) = match self.journal.take_stalled() {
            Some(stalled) => (stalled, None),
            None => {
                let (batch, prepared) = match self.journal.take_unsealed() {
                    Some(batch) => (batch, None),
                    None => {
                        let mut tree = self.tree();
                        let Some(batch) = self.journal.take() else {
                            return Ok(false);
                        };
                        let prepared = self.checkpoint_if_due(&mut tree, &batch);
                        (batch, prepared)
                    }
                };
                // What the batch binds (the audit trail's head, holding the
                // records of its operations) is durable before the batch.
                let bound = match self.binding() {
                    Ok(b) => b,
                    Err(e) => {
                        if let Some((_, dirty, _)) = prepared {
                            self.checkpoint_lost(dirty);
                        }
                        self.journal.put_back(batch, &e);
                        return Err(e.into());
                    }
                };
                if bound.is_some() {
                    *self.bound.lock().unwrap_or_else(|p| p.into_inner()) = bound;
                }
                (
                    self.journal.seal(&keys, &self.volume_id, batch, bound),
                    prepared,
                )
            }
        };
        drop(keys);
        let committed = match self.journal.put(&*self.store, sealed) {
            Ok(c) => c,
            Err(e) => {
                if let Some((_, dirty, _)) = prepared {
                    self.checkpoint_lost(dirty);
                }
                return Err(e);
            }
        };
        self.retention().note_commit(committed.record_bytes);
        self.tell_hooks(super::Head {
            seq: committed.seq,
            hash: committed.hash,
        });
        self.delete_retired(committed.retired);
        if let Some((prepared, dirty, carried)) = prepared {
            let prev = self.retention().newest_shards();
            let written = self.keys.get().and_then(|keys| {
                self.land_carried(&carried)?;
                let id = &self.volume_id;
                let (seq, hash) = (committed.seq, committed.hash);
                Ok(checkpoint::write(
                    &*self.store,
                    &keys,
                    id,
                    seq,
                    hash,
                    prepared,
                    &prev,
                )?)
            });
            match written {
                Ok(shards) => {
                    let ids: Vec<PackId> = carried.iter().map(|(id, _)| *id).collect();
                    self.tree().landed(&ids);
                    self.after_checkpoint(committed.seq, shards)
                }
                Err(e) => {
                    log::warn!("checkpoint at seq {:016x} failed: {e}", committed.seq);
                    self.tree().mark_dirty(dirty);
                    self.retention().checkpoint_failed();
                    self.checkpointed.notify_all();
                }
            }
        }
        Ok(true)
    }
}

/// A checkpoint taken, the shards it takes, and the carried packs it
/// names (written as objects before it).
type Prepared = Option<(
    checkpoint::Prepared,
    std::collections::BTreeSet<u64>,
    Vec<(PackId, Arc<Vec<u8>>)>,
)>;

impl Engine {
    /// The commit that was to carry a checkpoint failed: its shards are
    /// dirty again and the next batch carries the checkpoint instead (a
    /// stalled batch, retried, never does).
    fn checkpoint_lost(&self, dirty: std::collections::BTreeSet<u64>) {
        self.tree().mark_dirty(dirty);
        self.retention().checkpoint_again();
        self.journal.force_segment();
    }

    /// The checkpoint to write after `batch`, taken now while the tree is
    /// exactly the state after it (the caller holds the tree lock).
    fn checkpoint_if_due(
        &self,
        tree: &mut crate::meta::Namespace,
        batch: &super::journal::Batch,
    ) -> Prepared {
        let bytes: u64 = batch.records.iter().map(|r| r.approx_size() as u64).sum();
        let shutting = self.shut.load(Ordering::Relaxed);
        let due = self.retention().checkpoint_due(
            bytes,
            self.opts.checkpoint_bytes,
            MAX_SEGMENTS,
            shutting.then_some(SHUTDOWN_SEGMENTS),
        );
        due.then(|| {
            let dirty = tree.take_dirty_shards();
            let carried = tree.carried().all();
            (checkpoint::prepare(tree, &dirty), dirty, carried)
        })
    }

    /// Writes carried packs as objects of their own, create-only: a
    /// checkpoint that names them stops replaying the segments that carry
    /// them. A pack already there (a checkpoint that failed after it, or a
    /// mount that replayed it again) is ours if its bytes are.
    fn land_carried(&self, carried: &[(PackId, Arc<Vec<u8>>)]) -> EngineResult<()> {
        for (id, body) in carried {
            let key = id.key();
            match self.store.put_if_absent(&key, body) {
                Ok(()) => {}
                Err(StoreError::AlreadyExists { .. }) if landed(&*self.store, &key, body) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if !carried.is_empty() {
            log::debug!("{} carried packs written as objects", carried.len());
        }
        Ok(())
    }

    /// The head the binder (the audit trail) has made durable, if any.
    fn binding(&self) -> Result<Option<(u64, [u8; 32])>, crate::store::StoreError> {
        let binder = self.binder.lock().unwrap_or_else(|p| p.into_inner());
        match binder.as_ref() {
            Some(bind) => bind().map(Some),
            None => Ok(None),
        }
    }

    /// Whether the binder's head moved past what the newest segment binds
    /// (making it durable first).
    pub(super) fn binding_moved(&self) -> EngineResult<bool> {
        let now = self.binding()?;
        Ok(now.is_some() && now != *self.bound.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Tells every commit hook about a new head.
    pub(super) fn tell_hooks(&self, head: super::Head) {
        self.last_commit_ms
            .store(crate::audit::now_ms(), Ordering::Relaxed);
        for hook in self
            .on_commit
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            hook(head);
        }
    }
}

impl Loaded {
    /// Journal segments replayed after the checkpoint.
    pub(super) fn segments_after_base(&self) -> u64 {
        self.last_seq - self.base_seq
    }
}
