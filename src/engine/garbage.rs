//! Every object the volume needs, and the sweep of those it does not.
//!
//! Rules:
//! - Referenced: the header, the lease, every kept checkpoint (index and
//!   shards), the journal from just after the oldest of the newest two
//!   checkpoints through the last commit, and every pack that the tree or
//!   a pinned checkpoint maps chunks to. (An unpinned kept checkpoint is
//!   only ever loaded to replay the journal after it, which ends at the
//!   tree: the packs it alone maps were retired on the way.)
//! - Journal segments moved aside by an accepted rollback (`meta/attic/`)
//!   are evidence and may map packs nothing else does: while the attic
//!   holds anything, the sweep does not run.
//! - A crash between a pack's PUT and the commit that maps it leaves an
//!   unreferenced pack; the sweep deletes such packs only when the store's
//!   own clock says they are older than the grace period (far longer than
//!   any upload-to-commit delay), and only on a read-write engine that
//!   has not failed. A pack mapped since the listing is re-checked under
//!   the tree lock before it is doomed.

use std::collections::{BTreeSet, HashSet};
use std::ops::RangeInclusive;
use std::time::{SystemTime, UNIX_EPOCH};

use super::Engine;
use super::error::EngineResult;
use crate::data::PackId;
use crate::meta::journal::journal_key;

/// Where an accepted rollback moves the journal segments past a hole.
pub const ATTIC_PREFIX: &str = "meta/attic/";

/// Every object the volume's committed state and kept history need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Referenced {
    /// Kept checkpoints (the newest two and the pinned ones).
    pub checkpoints: Vec<u64>,
    /// Journal segments replay may need.
    pub journal: RangeInclusive<u64>,
    pub packs: BTreeSet<PackId>,
}

impl Engine {
    /// What the volume needs as of now (fsck, replicas, the sweep).
    pub fn referenced(&self) -> EngineResult<Referenced> {
        let (checkpoints, oldest, pinned) = {
            let r = self.retention();
            (r.kept(), r.oldest_unpinned(), r.all_pinned_packs())
        };
        let mut packs: BTreeSet<PackId> = self.tree().packs().map(|(id, _)| *id).collect();
        packs.extend(pinned);
        let (last, _) = self.committed();
        Ok(Referenced {
            checkpoints,
            journal: oldest + 1..=last,
            packs,
        })
    }

    /// Deletes packs left by a crash between PUT and commit (see the
    /// module rules).
    pub(super) fn collect_unreferenced(&self) -> EngineResult<()> {
        if self.is_read_only() {
            return Ok(());
        }
        let attic = self.store.list(ATTIC_PREFIX)?;
        if !attic.is_empty() {
            log::warn!(
                "{} journal segments of an accepted rollback are kept in {ATTIC_PREFIX}; \
                 unreferenced packs are kept with them",
                attic.len()
            );
            return Ok(());
        }
        let referenced: HashSet<PackId> = self.referenced()?.packs.into_iter().collect();
        let cutoff = SystemTime::now()
            .checked_sub(self.opts.gc_grace)
            .unwrap_or(UNIX_EPOCH);
        let mut doomed = Vec::new();
        for o in self.store.list("data/")? {
            let Some(id) = PackId::from_key(&o.key) else {
                continue;
            };
            if referenced.contains(&id) || o.modified > cutoff {
                continue;
            }
            if self.tree().pack(&id).is_some() {
                continue;
            }
            doomed.push(o.key);
        }
        if doomed.is_empty() {
            return Ok(());
        }
        // A refused delete (object lock) must not stop the sweep: the rest
        // are still removed, and the next sweep tries again.
        match self.store.delete_many(&doomed) {
            Ok(()) => log::info!("removed {} unreferenced packs", doomed.len()),
            Err(e) => log::warn!(
                "could not remove every one of {} unreferenced packs: {e}",
                doomed.len()
            ),
        }
        Ok(())
    }

    /// Moves journal segments `first ..= last` to the attic (copy, then
    /// delete): an accepted rollback continues the journal after the hole.
    pub(super) fn move_to_attic(&self, first: u64, last: u64) -> EngineResult<()> {
        for seq in first..=last {
            let key = journal_key(seq);
            let body = match self.store.get(&key) {
                Ok(b) => b,
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e.into()),
            };
            let aside = format!("{ATTIC_PREFIX}{}", &key["meta/journal/".len()..]);
            self.store.put(&aside, &body)?;
            self.store.delete(&key)?;
        }
        log::warn!("accepted rollback: journal segments {first}..={last} moved to {ATTIC_PREFIX}");
        Ok(())
    }

    /// Test knob: run the unreferenced sweep now.
    pub fn force_gc(&self) -> EngineResult<()> {
        self.collect_unreferenced()
    }
}
