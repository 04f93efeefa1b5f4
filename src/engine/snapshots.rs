//! Snapshots: checkpoints pinned by sealed records (`meta::snapshot`).
//!
//! Rules:
//! - Only the writer makes or deletes snapshots (it is the one engine that
//!   writes checkpoints and deletes objects). Making one commits what is
//!   appended, writes a checkpoint (only the shards that changed), pins it
//!   and writes one record: O(1) requests beyond the checkpoint.
//! - A read-write open pins every snapshot before anything can be deleted
//!   (before the committer starts); a record that does not open, or pins a
//!   checkpoint that is gone, fails the open: deleting garbage without
//!   knowing what a snapshot needs could destroy it.
//! - Deleting a snapshot deletes its record first, then unpins it, then
//!   the packs nothing else needs any more; its checkpoint objects go at
//!   the next checkpoint's sweep.
//! - A snapshot opens read-only from its checkpoint alone, with no replay:
//!   exactly the volume as it was.

use std::collections::BTreeSet;
use std::time::{SystemTime, UNIX_EPOCH};

use super::Engine;
use super::error::{EngineError, EngineResult};
use crate::data::PackId;
use crate::meta::snapshot::{self, SnapshotRecord};
use crate::meta::{Corrupt, checkpoint};

impl Engine {
    /// Every snapshot, oldest first.
    pub fn snapshots(&self) -> EngineResult<Vec<SnapshotRecord>> {
        let keys = self.keys.get()?;
        Ok(snapshot::list(&*self.store, &keys, &self.volume_id)?
            .into_iter()
            .map(|(_, r)| r)
            .collect())
    }

    /// Makes snapshot `name` of everything appended so far.
    pub fn create_snapshot(&self, name: &str) -> EngineResult<SnapshotRecord> {
        if self.opts.read_only {
            return Err(EngineError::ReadOnly);
        }
        snapshot::check_name(name).map_err(EngineError::Invalid)?;
        if snapshot::find(&*self.store, &*self.keys.get()?, &self.volume_id, name)?.is_some() {
            return Err(EngineError::Invalid(format!(
                "a snapshot named {name:?} exists already"
            )));
        }
        let seq = self.checkpoint_now()?;
        self.pin(seq)?;
        let index = checkpoint::read_index(&*self.store, &*self.keys.get()?, &self.volume_id, seq)?;
        let record = SnapshotRecord {
            name: name.to_owned(),
            created_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            checkpoint: seq,
            journal_hash: index.journal_hash,
            inodes: self.tree().inode_count() as u64,
            data_bytes: index.packs.iter().map(|(_, p)| p.size).sum(),
        };
        let key = snapshot::new_key();
        let written = self.keys.get().and_then(|keys| {
            Ok(snapshot::write(
                &*self.store,
                &keys,
                &self.volume_id,
                &key,
                &record,
            )?)
        });
        if let Err(e) = written {
            self.unpin(seq);
            return Err(e);
        }
        log::info!("snapshot made at checkpoint {seq:016x} ({key})");
        Ok(record)
    }

    /// Deletes snapshot `name`, and the packs only it still needed.
    pub fn delete_snapshot(&self, name: &str) -> EngineResult<()> {
        if self.opts.read_only {
            return Err(EngineError::ReadOnly);
        }
        let found = snapshot::find(&*self.store, &*self.keys.get()?, &self.volume_id, name)?;
        let Some((key, record)) = found else {
            return Err(EngineError::Invalid(format!("no snapshot named {name:?}")));
        };
        let packs: BTreeSet<PackId> = self.pinned_packs(record.checkpoint).unwrap_or_default();
        self.store.delete(&key)?;
        // Another snapshot may pin the same checkpoint.
        let still_pinned = self
            .snapshots()?
            .iter()
            .any(|r| r.checkpoint == record.checkpoint);
        if !still_pinned {
            self.unpin(record.checkpoint);
        }
        let needed = self.referenced()?.packs;
        let doomed: Vec<String> = packs.difference(&needed).map(PackId::key).collect();
        if let Err(e) = self.store.delete_many(&doomed) {
            log::warn!("could not delete every pack the snapshot alone held: {e}");
        }
        log::info!(
            "snapshot at checkpoint {:016x} deleted ({key}); {} packs freed",
            record.checkpoint,
            doomed.len()
        );
        Ok(())
    }

    /// Pins every snapshot's checkpoint (a read-write open, before the
    /// committer starts).
    pub(super) fn pin_snapshots(&self) -> EngineResult<()> {
        let snapshots = snapshot::list(&*self.store, &*self.keys.get()?, &self.volume_id)?;
        for (key, record) in snapshots {
            self.pin(record.checkpoint).map_err(|e| {
                EngineError::Corrupt(Corrupt(format!(
                    "{key} pins checkpoint {:016x}, which does not load: {e}",
                    record.checkpoint
                )))
            })?;
        }
        Ok(())
    }
}
