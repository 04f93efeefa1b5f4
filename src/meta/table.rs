//! The inode table: sized for ten million inodes, shared copy-on-write.
//!
//! Inodes are grouped by number into the checkpoint's shards
//! ([`SHARD_INODES`] numbers each), and each shard is one `Arc`. A
//! checkpoint takes the shards it writes by cloning their `Arc`s under the
//! namespace lock (a pointer each) and encodes them after releasing it.
//! The first change to a taken shard meanwhile copies that shard
//! (`Arc::make_mut`, about 1 ms for 16,384 small inodes), so the checkpoint
//! encodes exactly the state it took while `stat` and writers go on; with
//! no checkpoint under way a shard is never shared and nothing is copied.
//!
//! Inside a shard the inodes sit in one slab (reused through a free list,
//! so creating and deleting files never grows it), and a direct index maps
//! a number's offset in the shard to its slot: 2 bytes per number, where a
//! `HashMap<u64, u32>` index cost 18 to 37 bytes an inode. Shards are found
//! in an ordered map: a few hundred at ten million inodes, and a corrupt
//! record naming inode 2^60 costs one shard, not a table that large.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::Inode;
use super::checkpoint::SHARD_INODES;

/// Index entry for a number with no inode.
const NONE: u16 = 0;

#[derive(Clone, Default, Debug)]
pub(super) struct Shard {
    /// By offset in the shard: slot + 1, or [`NONE`]. Grows to the highest
    /// offset used.
    index: Vec<u16>,
    slots: Vec<Option<Inode>>,
    free: Vec<u16>,
    len: usize,
}

impl Shard {
    fn slot(&self, off: usize) -> Option<usize> {
        match self.index.get(off) {
            None | Some(&NONE) => None,
            Some(&s) => Some(s as usize - 1),
        }
    }

    fn get(&self, off: usize) -> Option<&Inode> {
        self.slots[self.slot(off)?].as_ref()
    }

    fn get_mut(&mut self, off: usize) -> Option<&mut Inode> {
        let slot = self.slot(off)?;
        self.slots[slot].as_mut()
    }

    fn insert(&mut self, off: usize, inode: Inode) {
        if let Some(i) = self.get_mut(off) {
            *i = inode;
            return;
        }
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(inode);
                slot
            }
            None => {
                self.slots.push(Some(inode));
                // At most SHARD_INODES live inodes, and freed slots are
                // reused first: the slab never outgrows a u16.
                (self.slots.len() - 1) as u16
            }
        };
        if self.index.len() <= off {
            self.index.resize(off + 1, NONE);
        }
        self.index[off] = slot + 1;
        self.len += 1;
    }

    fn remove(&mut self, off: usize) -> Option<Inode> {
        let slot = self.slot(off)?;
        self.index[off] = NONE;
        self.free.push(slot as u16);
        self.len -= 1;
        self.slots[slot].take()
    }

    /// Inodes in number order, as (offset, inode).
    pub fn iter(&self) -> impl Iterator<Item = (u64, &Inode)> {
        self.index
            .iter()
            .enumerate()
            .filter(|(_, s)| **s != NONE)
            .filter_map(|(off, &s)| self.slots[s as usize - 1].as_ref().map(|i| (off as u64, i)))
    }
}

/// A shard as a checkpoint took it: later changes do not reach it.
pub struct Frozen(Arc<Shard>);

impl Frozen {
    /// Inodes of shard `n` in number order.
    pub fn inodes(&self, n: u64) -> Vec<(u64, &Inode)> {
        let base = n * SHARD_INODES;
        self.0.iter().map(|(off, i)| (base + off, i)).collect()
    }
}

fn split(ino: u64) -> (u64, usize) {
    (ino / SHARD_INODES, (ino % SHARD_INODES) as usize)
}

#[derive(Clone, Default, Debug)]
pub(super) struct InodeTable {
    shards: BTreeMap<u64, Arc<Shard>>,
    len: usize,
}

impl InodeTable {
    /// A table of exactly these inodes (a checkpoint load).
    pub fn from_vec(inodes: Vec<(u64, Inode)>) -> InodeTable {
        let mut t = InodeTable::default();
        for (ino, inode) in inodes {
            t.insert(ino, inode);
        }
        for shard in t.shards.values_mut() {
            let shard = Arc::make_mut(shard);
            shard.slots.shrink_to_fit();
            shard.index.shrink_to_fit();
        }
        t
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn get(&self, ino: u64) -> Option<&Inode> {
        let (n, off) = split(ino);
        self.shards.get(&n)?.get(off)
    }

    /// Copies the inode's shard first if a checkpoint holds it.
    pub fn get_mut(&mut self, ino: u64) -> Option<&mut Inode> {
        let (n, off) = split(ino);
        let shard = self.shards.get_mut(&n)?;
        shard.get(off)?;
        Arc::make_mut(shard).get_mut(off)
    }

    pub fn insert(&mut self, ino: u64, inode: Inode) {
        let (n, off) = split(ino);
        let shard = Arc::make_mut(self.shards.entry(n).or_default());
        let before = shard.len;
        shard.insert(off, inode);
        self.len += shard.len - before;
    }

    pub fn remove(&mut self, ino: u64) -> Option<Inode> {
        let (n, off) = split(ino);
        let shard = self.shards.get_mut(&n)?;
        shard.get(off)?;
        let shard_mut = Arc::make_mut(shard);
        let inode = shard_mut.remove(off);
        if shard_mut.len == 0 {
            self.shards.remove(&n);
        }
        self.len -= 1;
        inode
    }

    /// Every inode, in number order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &Inode)> {
        self.shards.iter().flat_map(|(&n, s)| {
            let base = n * SHARD_INODES;
            s.iter().map(move |(off, i)| (base + off, i))
        })
    }

    /// Inodes of shard `n`, in number order.
    pub fn shard_iter(&self, n: u64) -> impl Iterator<Item = (u64, &Inode)> {
        let base = n * SHARD_INODES;
        self.shards
            .get(&n)
            .into_iter()
            .flat_map(move |s| s.iter().map(move |(off, i)| (base + off, i)))
    }

    /// Shards that hold an inode, ascending.
    pub fn shard_numbers(&self) -> impl Iterator<Item = u64> + '_ {
        self.shards.keys().copied()
    }

    /// Takes shard `n` as it is now (`None` when it holds no inode).
    pub fn freeze(&self, n: u64) -> Option<Frozen> {
        self.shards.get(&n).map(|s| Frozen(Arc::clone(s)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::{InodeAttr, Kind};

    fn inode(size: u64) -> Inode {
        let mut attr = InodeAttr::new(Kind::File, 0o644, 0, 0);
        attr.size = size;
        Inode::new(attr)
    }

    fn size(t: &InodeTable, ino: u64) -> Option<u64> {
        t.get(ino).map(|i| i.attr.size)
    }

    #[test]
    fn slots_are_reused_and_lookups_follow() {
        let mut t = InodeTable::from_vec(vec![(5, inode(5)), (9, inode(9))]);
        assert_eq!(t.remove(5).map(|i| i.attr.size), Some(5));
        assert!(t.get(5).is_none());
        t.insert(12, inode(12));
        assert_eq!(t.shards[&0].slots.len(), 2, "the freed slot is reused");
        t.insert(12, inode(13));
        assert_eq!(size(&t, 12), Some(13));
        assert_eq!(size(&t, 9), Some(9));
        assert_eq!(t.len(), 2);
        let all: Vec<u64> = t.iter().map(|(ino, _)| ino).collect();
        assert_eq!(all, [9, 12], "in number order");
        assert!(t.remove(5).is_none());
    }

    #[test]
    fn shards_split_by_number_and_empty_ones_go() {
        let far = 3 * SHARD_INODES + 1;
        let mut t = InodeTable::from_vec(vec![(far, inode(1)), (2, inode(2)), (1 << 60, inode(3))]);
        assert_eq!(
            t.shard_numbers().collect::<Vec<_>>(),
            [0, 3, (1 << 60) / SHARD_INODES]
        );
        assert_eq!(size(&t, 1 << 60), Some(3));
        t.remove(far);
        assert_eq!(t.shard_numbers().count(), 2, "an emptied shard is dropped");
        assert_eq!(t.shard_iter(0).map(|(ino, _)| ino).collect::<Vec<_>>(), [2]);
        assert_eq!(t.len(), 2);
    }

    /// What a checkpoint took is what it encodes, whatever follows.
    #[test]
    fn a_frozen_shard_keeps_its_state_while_the_table_moves_on() {
        let mut t = InodeTable::from_vec(vec![(2, inode(2)), (3, inode(3))]);
        let frozen = t.freeze(0).unwrap();
        t.get_mut(2).unwrap().attr.size = 20;
        t.remove(3);
        t.insert(4, inode(4));
        let took: Vec<(u64, u64)> = frozen
            .inodes(0)
            .iter()
            .map(|(ino, i)| (*ino, i.attr.size))
            .collect();
        assert_eq!(took, [(2, 2), (3, 3)]);
        assert_eq!(size(&t, 2), Some(20));
        assert_eq!(size(&t, 3), None);
        assert_eq!(size(&t, 4), Some(4));
        // Unshared again: the next change copies nothing.
        drop(frozen);
        let before = Arc::as_ptr(&t.shards[&0]);
        t.get_mut(2).unwrap().attr.size = 21;
        assert_eq!(Arc::as_ptr(&t.shards[&0]), before);
    }
}
