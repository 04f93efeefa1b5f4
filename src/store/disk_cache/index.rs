//! Which blocks the disk cache holds, how long each is, and which to
//! evict: a pure LRU table with no I/O, so its rules are unit-tested.
//!
//! Rules:
//! - A block is identified by (object key, block number); a block of
//!   `block` bytes covers object bytes `n * block .. (n + 1) * block`.
//! - An entry holds a *prefix* of its block: bytes `0 .. len`. The last
//!   block of an object is short, and a ranged read that ends mid-block
//!   caches what it fetched; a later read extends the prefix.
//! - `total` is the sum of every entry's `len`; after [`Index::insert`]
//!   it is at most `limit`, except that the block just inserted is never
//!   evicted for itself (one block over at most, when `limit` is smaller
//!   than a block).
//! - Recency is a counter, not a clock: every `get` and `insert` makes
//!   the entry the newest. Blocks found on disk at open come in through
//!   [`Index::insert_older`], below every block this process used, so the
//!   scan can run while the mount serves.
//! - Every drop of a whole object (a re-seal or delete) bumps a
//!   generation. A read notes the generation before its GET, and what it
//!   fetched is stored only if its object was not dropped since: a GET
//!   that raced a re-seal or delete may hold the old bytes. The last
//!   [`RECENT_DROPS`] drops are remembered; a read older than all of them
//!   stores nothing (a miss next time, never a stale block).

use std::collections::{BTreeMap, VecDeque};

/// One cached block: (object key, block number).
pub type BlockId = (String, u64);

#[derive(Clone, Copy, Debug)]
struct Entry {
    len: u64,
    tick: u64,
    /// Its file's modification time was set by this process: it orders
    /// the next mount's scan, which needs no finer grain than a mount.
    touched: bool,
}

#[derive(Debug, Default)]
pub struct Index {
    entries: BTreeMap<BlockId, Entry>,
    /// tick → block, oldest first.
    lru: BTreeMap<u64, BlockId>,
    total: u64,
    limit: u64,
    tick: u64,
    /// Ticks of blocks found on disk: from 0 up, always below `tick`'s.
    older_tick: u64,
    generation: u64,
    /// (generation it made, object) of the latest whole-object drops.
    recent_drops: VecDeque<(u64, String)>,
}

/// Whole-object drops remembered for [`Index::dropped_since`].
pub const RECENT_DROPS: usize = 1024;

/// Where this process's own ticks start, above any the scan hands out.
const LIVE_TICKS: u64 = 1 << 62;

impl Index {
    pub fn new(limit: u64) -> Index {
        Index {
            limit,
            tick: LIVE_TICKS,
            ..Index::default()
        }
    }

    /// Bytes held, summed over every entry.
    pub fn total(&self) -> u64 {
        self.total
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    pub fn blocks(&self) -> usize {
        self.entries.len()
    }

    /// The cached prefix length of `id`, without touching its recency.
    pub fn peek(&self, id: &BlockId) -> Option<u64> {
        self.entries.get(id).map(|e| e.len)
    }

    /// The cached prefix length of `id`, now the newest entry.
    pub fn get(&mut self, id: &BlockId) -> Option<u64> {
        let tick = self.next_tick();
        let e = self.entries.get_mut(id)?;
        self.lru.remove(&e.tick);
        e.tick = tick;
        self.lru.insert(tick, id.clone());
        Some(e.len)
    }

    /// Records `id` as holding `len` bytes (replacing what it held), the
    /// newest entry, and evicts the oldest others until the total fits the
    /// limit. Returns the evicted blocks, whose files the caller removes.
    pub fn insert(&mut self, id: BlockId, len: u64) -> Vec<BlockId> {
        self.remove(&id);
        let tick = self.next_tick();
        let touched = true;
        self.entries
            .insert(id.clone(), Entry { len, tick, touched });
        self.lru.insert(tick, id.clone());
        self.total += len;
        self.evict_for(&id)
    }

    /// True the first time it is asked for a block found on disk: its
    /// file's modification time is then set (a hit), once per mount.
    pub fn first_touch(&mut self, id: &BlockId) -> bool {
        match self.entries.get_mut(id) {
            Some(e) if !e.touched => {
                e.touched = true;
                true
            }
            _ => false,
        }
    }

    /// Evicts the oldest blocks but `keep` until the total fits the limit.
    fn evict_for(&mut self, keep: &BlockId) -> Vec<BlockId> {
        let mut evicted = Vec::new();
        while self.total > self.limit {
            let Some((&oldest, victim)) = self.lru.iter().next() else {
                break;
            };
            if victim == keep {
                break;
            }
            let victim = victim.clone();
            self.lru.remove(&oldest);
            if let Some(e) = self.entries.remove(&victim) {
                self.total -= e.len;
            }
            evicted.push(victim);
        }
        evicted
    }

    /// Records a block found on disk, as older than every block this
    /// process used and newer than those found before it; a block the
    /// process holds already is left as it is. Evicts as [`Index::insert`].
    pub fn insert_older(&mut self, id: BlockId, len: u64) -> Vec<BlockId> {
        if self.entries.contains_key(&id) {
            return Vec::new();
        }
        self.older_tick += 1;
        let tick = self.older_tick;
        let touched = false;
        self.entries
            .insert(id.clone(), Entry { len, tick, touched });
        self.lru.insert(tick, id.clone());
        self.total += len;
        self.evict_for(&id)
    }

    /// Makes a block found on disk the newest of those found, still below
    /// every block this process used: the scan indexes blocks as it finds
    /// them, then ranks them by age. A block used since is left as it is.
    pub fn rank_older(&mut self, id: &BlockId) {
        let Some(e) = self.entries.get_mut(id) else {
            return;
        };
        if e.tick >= LIVE_TICKS {
            return;
        }
        self.lru.remove(&e.tick);
        self.older_tick += 1;
        e.tick = self.older_tick;
        self.lru.insert(e.tick, id.clone());
    }

    /// Forgets `id`; true if it was held.
    pub fn remove(&mut self, id: &BlockId) -> bool {
        match self.entries.remove(id) {
            Some(e) => {
                self.lru.remove(&e.tick);
                self.total -= e.len;
                true
            }
            None => false,
        }
    }

    /// The blocks of object `key` held, in order.
    pub fn blocks_of(&self, key: &str) -> Vec<BlockId> {
        self.entries
            .range((key.to_owned(), 0)..=(key.to_owned(), u64::MAX))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// The generation now: what a read notes before its GET.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// True if object `key` was dropped after generation `since` (or may
    /// have been: `since` is older than every drop remembered).
    pub fn dropped_since(&self, key: &str, since: u64) -> bool {
        match self.recent_drops.front() {
            None => false,
            Some(&(first, _)) if first > since + 1 => true,
            Some(_) => self
                .recent_drops
                .iter()
                .rev()
                .take_while(|(g, _)| *g > since)
                .any(|(_, k)| k == key),
        }
    }

    /// Forgets every block of object `key`, and returns them; a read of
    /// it whose GET began before this stores nothing.
    pub fn remove_object(&mut self, key: &str) -> Vec<BlockId> {
        self.generation += 1;
        self.recent_drops
            .push_back((self.generation, key.to_owned()));
        if self.recent_drops.len() > RECENT_DROPS {
            self.recent_drops.pop_front();
        }
        let ids = self.blocks_of(key);
        for id in &ids {
            self.remove(id);
        }
        ids
    }

    fn next_tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(key: &str, n: u64) -> BlockId {
        (key.to_owned(), n)
    }

    #[test]
    fn evicts_least_recently_used_first() {
        let mut ix = Index::new(300);
        assert!(ix.insert(id("a", 0), 100).is_empty());
        assert!(ix.insert(id("a", 1), 100).is_empty());
        assert!(ix.insert(id("b", 0), 100).is_empty());
        // a/0 read again: a/1 is now the oldest.
        assert_eq!(ix.get(&id("a", 0)), Some(100));
        assert_eq!(ix.insert(id("c", 0), 100), vec![id("a", 1)]);
        assert_eq!(ix.total(), 300);
        assert_eq!(ix.peek(&id("a", 1)), None);
        assert_eq!(ix.blocks(), 3);
    }

    #[test]
    fn total_stays_within_the_limit() {
        let mut ix = Index::new(1000);
        for n in 0..100 {
            ix.insert(id("x", n), 37 + n % 50);
            assert!(ix.total() <= 1000, "total {} after {n}", ix.total());
        }
    }

    #[test]
    fn a_block_larger_than_the_limit_stays_alone() {
        let mut ix = Index::new(50);
        ix.insert(id("a", 0), 40);
        assert_eq!(ix.insert(id("a", 1), 80), vec![id("a", 0)]);
        assert_eq!((ix.total(), ix.blocks()), (80, 1));
        // The next insert evicts it in turn.
        assert_eq!(ix.insert(id("a", 2), 10), vec![id("a", 1)]);
        assert_eq!(ix.total(), 10);
    }

    #[test]
    fn reinserting_a_block_replaces_its_length() {
        let mut ix = Index::new(1000);
        ix.insert(id("a", 0), 100);
        ix.insert(id("a", 0), 250);
        assert_eq!((ix.total(), ix.blocks()), (250, 1));
        assert_eq!(ix.get(&id("a", 0)), Some(250));
    }

    #[test]
    fn blocks_found_on_disk_rank_below_the_ones_in_use() {
        let mut ix = Index::new(300);
        ix.insert(id("live", 0), 100);
        assert!(ix.insert_older(id("disk", 0), 100).is_empty());
        assert!(ix.insert_older(id("disk", 1), 100).is_empty());
        // Held already (written since the mount): left as it is.
        assert!(ix.insert_older(id("live", 0), 7).is_empty());
        assert_eq!(ix.peek(&id("live", 0)), Some(100));
        // Over the limit: the first found goes first, then the next.
        assert_eq!(ix.insert_older(id("disk", 2), 100), vec![id("disk", 0)]);
        assert_eq!(ix.insert(id("live", 1), 100), vec![id("disk", 1)]);
        assert_eq!(ix.get(&id("disk", 2)), Some(100));
        assert_eq!(ix.insert(id("live", 2), 100), vec![id("live", 0)]);
    }

    #[test]
    fn removing_an_object_drops_only_its_blocks() {
        let mut ix = Index::new(1 << 20);
        for n in 0..3 {
            ix.insert(id("data/aa/1", n), 10);
            ix.insert(id("data/aa/10", n), 10);
            ix.insert(id("data/aa/2", n), 10);
        }
        let dropped = ix.remove_object("data/aa/1");
        assert_eq!(
            dropped,
            vec![id("data/aa/1", 0), id("data/aa/1", 1), id("data/aa/1", 2)]
        );
        assert_eq!((ix.total(), ix.blocks()), (60, 6));
        assert!(ix.remove_object("data/aa/1").is_empty());
        assert!(!ix.remove(&id("data/aa/1", 0)));
        assert!(ix.remove(&id("data/aa/2", 1)));
        assert_eq!(ix.total(), 50);
    }

    #[test]
    fn a_read_begun_before_an_objects_drop_stores_nothing() {
        let mut ix = Index::new(1 << 20);
        let before = ix.generation();
        assert!(!ix.dropped_since("a", before));
        ix.remove_object("a");
        assert!(ix.dropped_since("a", before));
        assert!(!ix.dropped_since("b", before), "another object");
        assert!(!ix.dropped_since("a", ix.generation()), "begun after");
        let old = ix.generation();
        for n in 0..RECENT_DROPS as u64 + 1 {
            ix.remove_object(&format!("x{n}"));
        }
        assert!(ix.dropped_since("b", old), "older than every drop kept");
        assert!(!ix.dropped_since("b", ix.generation() - 1));
    }

    #[test]
    fn blocks_found_count_at_once_and_rank_by_age_after() {
        let mut ix = Index::new(300);
        // Found in directory order, each counted against the bound.
        for n in 0..3 {
            assert!(ix.insert_older(id("disk", n), 100).is_empty());
        }
        assert_eq!(ix.total(), 300);
        // By age, 2 is the oldest, then 0, then 1.
        for n in [2, 0, 1] {
            ix.rank_older(&id("disk", n));
        }
        assert_eq!(ix.insert(id("live", 0), 100), vec![id("disk", 2)]);
        assert_eq!(ix.insert(id("live", 1), 100), vec![id("disk", 0)]);
        // A block used since the scan found it keeps its place.
        ix.get(&id("disk", 1));
        ix.rank_older(&id("disk", 1));
        assert_eq!(ix.insert(id("live", 2), 100), vec![id("live", 0)]);
    }
}
