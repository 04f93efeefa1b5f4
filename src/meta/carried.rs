//! Packs carried inside journal segments, not yet objects of their own.
//!
//! An fsync of a little data seals it as a pack as usual, but sends the
//! pack's sealed body inside the journal segment that maps it
//! (`Record::Carried`): one PUT instead of two. The body is byte for byte
//! what `data/xx/<id>` would hold, so moving it there later needs no
//! re-sealing, and its segments authenticate the same either way.
//!
//! Rules:
//! - A carried pack is in the pack table like any other; its body is held
//!   here, applied from the journal live, in replay and by followers, so
//!   every reader of the namespace finds it.
//! - A checkpoint never names a pack that is only carried: the committer
//!   writes each carried body to its own object (create-only) before the
//!   checkpoint that stops replaying its segment, then forgets it here
//!   ([`Carried::landed`]). Until then the journal segment keeps it
//!   reachable, and trimming removes no segment newer than the checkpoint.
//! - A carried pack that dies (`PackGone`) before a checkpoint never
//!   becomes an object at all: most of an fsync-heavy database's carried
//!   chunks are rewritten before the next checkpoint.

use std::collections::HashMap;
use std::sync::Arc;

use crate::data::PackId;

/// Sealed bodies of carried packs, by id.
#[derive(Clone, Debug, Default)]
pub struct Carried {
    bodies: HashMap<PackId, Arc<Vec<u8>>>,
}

impl Carried {
    pub(super) fn insert(&mut self, id: PackId, body: &[u8]) {
        self.bodies.insert(id, Arc::new(body.to_vec()));
    }

    pub(super) fn remove(&mut self, id: &PackId) {
        self.bodies.remove(id);
    }

    /// The sealed body of pack `id`, if it is still only carried.
    pub fn get(&self, id: &PackId) -> Option<Arc<Vec<u8>>> {
        self.bodies.get(id).cloned()
    }

    pub fn contains(&self, id: &PackId) -> bool {
        self.bodies.contains_key(id)
    }

    /// Every carried pack, for the committer to write out.
    pub fn all(&self) -> Vec<(PackId, Arc<Vec<u8>>)> {
        self.bodies.iter().map(|(id, b)| (*id, b.clone())).collect()
    }

    pub fn len(&self) -> usize {
        self.bodies.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bodies.is_empty()
    }

    /// Total sealed bytes held.
    pub fn bytes(&self) -> u64 {
        self.bodies.values().map(|b| b.len() as u64).sum()
    }

    /// These packs are objects now: read them from the store.
    pub(super) fn landed(&mut self, ids: &[PackId]) {
        for id in ids {
            self.bodies.remove(id);
        }
    }
}
