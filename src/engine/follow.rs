//! Following a writer: a read-only engine applies the journal segments
//! another host committed since it last looked.
//!
//! Rules:
//! - Segments are fetched and chain-checked outside the tree lock, then
//!   applied in one step under it, so readers see whole commits.
//! - If the writer trimmed the segments we would need next (a newer
//!   checkpoint replaced them), the whole state is loaded again from the
//!   newest checkpoint.

use super::error::{EngineError, EngineResult};
use super::{Engine, load};
use crate::crypto::sha256;
use crate::meta::journal::{journal_key, open_segment};
use crate::meta::{Corrupt, Segment, checkpoint};
use crate::store::StoreError;

impl Engine {
    /// Applies every segment committed after the one this engine last
    /// applied; returns how many. Read-only engines only.
    pub fn catch_up(&self) -> EngineResult<u64> {
        if !self.opts.read_only {
            return Err(EngineError::ReadOnly);
        }
        let (mut seq, mut hash) = self.committed();
        let mut segments: Vec<Segment> = Vec::new();
        loop {
            let key = journal_key(seq + 1);
            let sealed = match self.store.get(&key) {
                Ok(b) => b,
                Err(StoreError::NotFound { .. }) => break,
                Err(e) => return Err(e.into()),
            };
            let seg = open_segment(&self.keys, &self.volume_id, seq + 1, &sealed)?;
            if seg.prev_hash != hash {
                return Err(Corrupt(format!("{key} does not follow the segment before it")).into());
            }
            hash = sha256(&sealed);
            seq += 1;
            segments.push(seg);
        }
        if segments.is_empty() {
            return self.reload_if_trimmed();
        }
        let n = segments.len() as u64;
        let mut tree = self.tree();
        for seg in &segments {
            for r in &seg.records {
                tree.apply(r)
                    .map_err(|e| Corrupt(format!("{}: {}", journal_key(seg.seq), e.0)))?;
            }
        }
        self.journal.advance(seq, hash);
        Ok(n)
    }

    /// With no next segment: a checkpoint newer than our state means the
    /// writer moved on and trimmed what we would have replayed.
    fn reload_if_trimmed(&self) -> EngineResult<u64> {
        let (seq, _) = self.committed();
        let newest = checkpoint::list(&*self.store)?.first().copied();
        if newest.is_none_or(|n| n <= seq) {
            return Ok(0);
        }
        let loaded = load::load(&*self.store, &self.keys, &self.volume_id)?;
        let applied = loaded.last_seq - seq;
        *self.tree() = loaded.ns;
        self.journal.advance(loaded.last_seq, loaded.last_hash);
        Ok(applied)
    }
}
