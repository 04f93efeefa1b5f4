//! Following a writer: a read-only engine applies the journal segments
//! another host committed since it last looked.
//!
//! Rules:
//! - Segments are fetched and chain-checked outside the tree lock, then
//!   applied in one step under it, so readers see whole commits.
//! - If the writer trimmed the segments we would need next (a newer
//!   checkpoint replaced them), the whole state is loaded again from the
//!   newest checkpoint. Finding that out costs a listing, so the caller
//!   asks for it only now and then (`look_for_trim`).
//! - A follower may lag the writer by at most the writer's retire grace
//!   (`EngineOptions::retire_grace`): packs retired longer ago may be gone.
//! - Every new head is told to the commit hooks, as a writer's commits
//!   are (this host's anchor follows the follower too).

use std::collections::BTreeSet;

use super::error::{EngineError, EngineResult};
use super::{Engine, Head, load};
use crate::crypto::sha256;
use crate::meta::journal::{MAX_SEGMENT_BYTES, journal_key, open_segment};
use crate::meta::{Corrupt, Record, Segment, checkpoint};
use crate::store::StoreError;

/// What a catch-up changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Followed {
    /// Journal segments applied (or skipped over by a reload).
    pub segments: u64,
    /// Inodes whose attributes or data changed; `None` after a reload
    /// (anything may have).
    pub changed: Option<BTreeSet<u64>>,
}

impl Engine {
    /// Applies every segment committed after the one this engine last
    /// applied. Read-only engines only.
    pub fn catch_up(&self, look_for_trim: bool) -> EngineResult<Followed> {
        if !self.opts.read_only || self.opts.snapshot.is_some() {
            return Err(EngineError::ReadOnly);
        }
        let (mut seq, mut hash) = self.committed();
        let mut segments: Vec<Segment> = Vec::new();
        loop {
            let key = journal_key(seq + 1);
            let sealed = match self.store.get_max(&key, MAX_SEGMENT_BYTES) {
                Ok(b) => b,
                Err(StoreError::NotFound { .. }) => break,
                Err(e) => return Err(e.into()),
            };
            let seg = open_segment(&*self.keys.get()?, &self.volume_id, seq + 1, &sealed)?;
            if seg.prev_hash != hash {
                return Err(Corrupt(format!("{key} does not follow the segment before it")).into());
            }
            hash = sha256(&sealed);
            seq += 1;
            segments.push(seg);
        }
        if segments.is_empty() {
            return match look_for_trim {
                true => self.reload_if_trimmed(),
                false => Ok(Followed::default()),
            };
        }
        let mut changed = BTreeSet::new();
        {
            let mut tree = self.tree();
            for seg in &segments {
                for r in &seg.records {
                    tree.apply(r)
                        .map_err(|e| Corrupt(format!("{}: {}", journal_key(seg.seq), e.0)))?;
                    if let Some(ino) = data_or_attr_change(r) {
                        changed.insert(ino);
                    }
                }
            }
        }
        self.journal.advance(seq, hash);
        self.tell_hooks(Head { seq, hash });
        Ok(Followed {
            segments: segments.len() as u64,
            changed: Some(changed),
        })
    }

    /// With no next segment: a checkpoint newer than our state means the
    /// writer moved on and trimmed what we would have replayed.
    fn reload_if_trimmed(&self) -> EngineResult<Followed> {
        let (seq, _) = self.committed();
        let newest = checkpoint::list(&*self.store)?.first().copied();
        if newest.is_none_or(|n| n <= seq) {
            return Ok(Followed::default());
        }
        let loaded = load::load(&*self.store, &*self.keys.get()?, &self.volume_id)?;
        let skipped = loaded.last_seq.saturating_sub(seq);
        let head = Head {
            seq: loaded.last_seq,
            hash: loaded.last_hash,
        };
        *self.tree() = loaded.ns;
        self.journal.advance(head.seq, head.hash);
        self.tell_hooks(head);
        log::info!(
            "followed the writer past trimmed segments: reloaded at {:016x}",
            head.seq
        );
        Ok(Followed {
            segments: skipped,
            changed: None,
        })
    }
}

/// The inode whose attributes or file data a record changes (a directory
/// entry's change is the kernel's to expire: entries live one TTL).
fn data_or_attr_change(r: &Record) -> Option<u64> {
    match r {
        Record::Inode { ino, .. }
        | Record::Chunks { ino, .. }
        | Record::Punch { ino, .. }
        | Record::Truncate { ino, .. }
        | Record::Drop { ino }
        | Record::Symlink { ino, .. }
        | Record::Xattr { ino, .. } => Some(*ino),
        Record::Dirent { .. }
        | Record::Orphan { .. }
        | Record::Pack { .. }
        | Record::Carried { .. }
        | Record::PackGone { .. } => None,
    }
}
