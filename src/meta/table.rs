//! The inode table: sized for ten million inodes, shared copy-on-write.
//!
//! Inodes are grouped by number into pages of [`PAGE_INODES`] numbers, and
//! each page is one `Arc`; a checkpoint shard ([`SHARD_INODES`]) is 16
//! pages. A checkpoint takes the shards it writes by cloning their pages'
//! `Arc`s under the namespace lock (a pointer each) and encodes them after
//! releasing it. The first change to a taken page meanwhile copies that
//! page (`Arc::make_mut`), so the checkpoint encodes exactly the state it
//! took while `stat` and writers go on; with no checkpoint under way a
//! page is never shared and nothing is copied. Pages, not whole shards,
//! are the unit copied so that a write waits for 1,024 inodes' copy at
//! most, and `stat` behind it as long.
//!
//! Inside a page the inodes sit in one slab (reused through a free list,
//! so creating and deleting files never grows it), and a direct index maps
//! a number's offset in the page to its slot: 2 bytes per number, where a
//! `HashMap<u64, u32>` index cost 18 to 37 bytes an inode. Pages are found
//! in an ordered map, and a corrupt record naming inode 2^60 costs one
//! page, not a table that large.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::Inode;
use super::checkpoint::SHARD_INODES;

/// Inode numbers per page, the unit copied on write.
pub const PAGE_INODES: u64 = 1024;

const PAGES_PER_SHARD: u64 = SHARD_INODES / PAGE_INODES;

/// Index entry for a number with no inode.
const NONE: u16 = 0;

#[derive(Clone, Default, Debug)]
pub(super) struct Page {
    /// By offset in the page: slot + 1, or [`NONE`]. Grows to the highest
    /// offset used.
    index: Vec<u16>,
    slots: Vec<Option<Inode>>,
    free: Vec<u16>,
    len: usize,
}

impl Page {
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
                // At most PAGE_INODES live inodes, and freed slots are
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
pub struct Frozen(Vec<(u64, Arc<Page>)>);

impl Frozen {
    /// Its inodes in number order.
    pub fn inodes(&self) -> Vec<(u64, &Inode)> {
        let paged = self.0.iter().flat_map(|(p, page)| {
            let base = p * PAGE_INODES;
            page.iter().map(move |(off, i)| (base + off, i))
        });
        paged.collect()
    }
}

fn split(ino: u64) -> (u64, usize) {
    (ino / PAGE_INODES, (ino % PAGE_INODES) as usize)
}

fn pages_of(n: u64) -> std::ops::Range<u64> {
    n * PAGES_PER_SHARD..(n + 1) * PAGES_PER_SHARD
}

#[derive(Clone, Default, Debug)]
pub(super) struct InodeTable {
    pages: BTreeMap<u64, Arc<Page>>,
    len: usize,
}

impl InodeTable {
    /// A table of exactly these inodes (a checkpoint load).
    pub fn from_vec(inodes: Vec<(u64, Inode)>) -> InodeTable {
        let mut t = InodeTable::default();
        for (ino, inode) in inodes {
            t.insert(ino, inode);
        }
        for page in t.pages.values_mut() {
            let page = Arc::make_mut(page);
            page.slots.shrink_to_fit();
            page.index.shrink_to_fit();
        }
        t
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn get(&self, ino: u64) -> Option<&Inode> {
        let (p, off) = split(ino);
        self.pages.get(&p)?.get(off)
    }

    /// Copies the inode's page first if a checkpoint holds it.
    pub fn get_mut(&mut self, ino: u64) -> Option<&mut Inode> {
        let (p, off) = split(ino);
        let page = self.pages.get_mut(&p)?;
        page.get(off)?;
        Arc::make_mut(page).get_mut(off)
    }

    pub fn insert(&mut self, ino: u64, inode: Inode) {
        let (p, off) = split(ino);
        let page = Arc::make_mut(self.pages.entry(p).or_default());
        let before = page.len;
        page.insert(off, inode);
        self.len += page.len - before;
    }

    pub fn remove(&mut self, ino: u64) -> Option<Inode> {
        let (p, off) = split(ino);
        let page = self.pages.get_mut(&p)?;
        page.get(off)?;
        let page_mut = Arc::make_mut(page);
        let inode = page_mut.remove(off);
        if page_mut.len == 0 {
            self.pages.remove(&p);
        }
        self.len -= 1;
        inode
    }

    /// Every inode, in number order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &Inode)> {
        self.pages.iter().flat_map(|(&p, page)| {
            let base = p * PAGE_INODES;
            page.iter().map(move |(off, i)| (base + off, i))
        })
    }

    /// Inodes of shard `n`, in number order.
    pub fn shard_iter(&self, n: u64) -> impl Iterator<Item = (u64, &Inode)> {
        self.pages.range(pages_of(n)).flat_map(|(&p, page)| {
            let base = p * PAGE_INODES;
            page.iter().map(move |(off, i)| (base + off, i))
        })
    }

    /// Shards that hold an inode, ascending.
    pub fn shard_numbers(&self) -> impl Iterator<Item = u64> + '_ {
        let mut last = None;
        self.pages.keys().filter_map(move |p| {
            let n = p / PAGES_PER_SHARD;
            (last.replace(n) != Some(n)).then_some(n)
        })
    }

    /// Takes shard `n` as it is now (`None` when it holds no inode).
    pub fn freeze(&self, n: u64) -> Option<Frozen> {
        let pages: Vec<(u64, Arc<Page>)> = self
            .pages
            .range(pages_of(n))
            .map(|(&p, page)| (p, Arc::clone(page)))
            .collect();
        (!pages.is_empty()).then_some(Frozen(pages))
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
        assert_eq!(t.pages[&0].slots.len(), 2, "the freed slot is reused");
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
        assert_eq!(t.shard_numbers().count(), 2, "an emptied page is dropped");
        assert_eq!(t.shard_iter(0).map(|(ino, _)| ino).collect::<Vec<_>>(), [2]);
        assert_eq!(t.len(), 2);
    }

    /// What a checkpoint took is what it encodes, whatever follows.
    #[test]
    fn a_frozen_shard_keeps_its_state_while_the_table_moves_on() {
        let far = PAGE_INODES + 5;
        let mut t = InodeTable::from_vec(vec![(2, inode(2)), (3, inode(3)), (far, inode(9))]);
        let frozen = t.freeze(0).unwrap();
        let other_page = Arc::as_ptr(&t.pages[&1]);
        t.get_mut(2).unwrap().attr.size = 20;
        assert_eq!(
            Arc::as_ptr(&t.pages[&1]),
            other_page,
            "only the page written is copied"
        );
        t.remove(3);
        t.insert(4, inode(4));
        let took: Vec<(u64, u64)> = frozen
            .inodes()
            .iter()
            .map(|(ino, i)| (*ino, i.attr.size))
            .collect();
        assert_eq!(took, [(2, 2), (3, 3), (far, 9)]);
        assert_eq!(size(&t, 2), Some(20));
        assert_eq!(size(&t, 3), None);
        assert_eq!(size(&t, 4), Some(4));
        // Unshared again: the next change copies nothing.
        drop(frozen);
        let before = Arc::as_ptr(&t.pages[&0]);
        t.get_mut(2).unwrap().attr.size = 21;
        assert_eq!(Arc::as_ptr(&t.pages[&0]), before);
    }
}
