//! The inode table, sized for ten million inodes.
//!
//! A `HashMap<u64, Inode>` keeps whole inodes in its buckets, and a
//! power-of-two bucket count at most 7/8 full means up to 2.3 buckets per
//! inode: about 350 bytes an inode at a million. Here the inodes sit in one
//! slab (a `Vec`, reused through a free list, so creating and deleting
//! files never grows it) and the hash map holds only (number → slot), 16
//! bytes a bucket. The hash is a multiply-shift of the number: inode
//! numbers are ours, not an attacker's, so no SipHash is needed.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::Inode;

#[derive(Clone, Default)]
pub(super) struct InoHasher(u64);

impl Hasher for InoHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(b as u64);
        }
    }

    fn write_u64(&mut self, n: u64) {
        // Fibonacci hashing: spreads consecutive numbers over the high bits
        // hashbrown's control bytes take.
        self.0 = (self.0 ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type Index = HashMap<u64, u32, BuildHasherDefault<InoHasher>>;

#[derive(Clone, Default, Debug)]
pub(super) struct InodeTable {
    index: Index,
    slots: Vec<Option<Inode>>,
    free: Vec<u32>,
}

impl InodeTable {
    /// A table of exactly these inodes (a checkpoint load).
    pub fn from_vec(inodes: Vec<(u64, Inode)>) -> InodeTable {
        let mut index = Index::with_capacity_and_hasher(inodes.len(), Default::default());
        let mut slots = Vec::with_capacity(inodes.len());
        for (ino, inode) in inodes {
            match index.get(&ino) {
                Some(&slot) => slots[slot as usize] = Some(inode),
                None => {
                    index.insert(ino, slots.len() as u32);
                    slots.push(Some(inode));
                }
            }
        }
        InodeTable {
            index,
            slots,
            free: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn get(&self, ino: u64) -> Option<&Inode> {
        let slot = *self.index.get(&ino)?;
        self.slots[slot as usize].as_ref()
    }

    pub fn get_mut(&mut self, ino: u64) -> Option<&mut Inode> {
        let slot = *self.index.get(&ino)?;
        self.slots[slot as usize].as_mut()
    }

    pub fn insert(&mut self, ino: u64, inode: Inode) {
        if let Some(i) = self.get_mut(ino) {
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
                u32::try_from(self.slots.len() - 1).expect("fewer than 4 billion inodes")
            }
        };
        self.index.insert(ino, slot);
    }

    pub fn remove(&mut self, ino: u64) -> Option<Inode> {
        let slot = self.index.remove(&ino)?;
        self.free.push(slot);
        self.slots[slot as usize].take()
    }

    pub fn iter(&self) -> impl Iterator<Item = (u64, &Inode)> {
        self.index
            .iter()
            .filter_map(|(&ino, &slot)| self.slots[slot as usize].as_ref().map(|i| (ino, i)))
    }

    pub fn keys(&self) -> impl Iterator<Item = u64> + '_ {
        self.index.keys().copied()
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

    #[test]
    fn slots_are_reused_and_lookups_follow() {
        let mut t = InodeTable::from_vec(vec![(5, inode(5)), (9, inode(9))]);
        assert_eq!(t.remove(5).map(|i| i.attr.size), Some(5));
        assert!(t.get(5).is_none());
        t.insert(12, inode(12));
        assert_eq!(t.slots.len(), 2, "the freed slot is reused");
        t.insert(12, inode(13));
        assert_eq!(t.get(12).map(|i| i.attr.size), Some(13));
        assert_eq!(t.get(9).map(|i| i.attr.size), Some(9));
        assert_eq!(t.len(), 2);
        let mut all: Vec<u64> = t.iter().map(|(ino, _)| ino).collect();
        all.sort();
        assert_eq!(all, [9, 12]);
        assert!(t.remove(5).is_none());
    }
}
