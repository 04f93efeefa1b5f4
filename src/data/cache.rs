//! The plaintext chunk cache: clean chunks (LRU) and dirty chunks, under
//! one byte budget.
//!
//! Rules:
//! - A chunk buffer holds the chunk's valid bytes (≤ chunk size); bytes
//!   past its length are zeros up to the file size.
//! - Dirty chunks are never evicted; they leave only when the flusher has
//!   put them in a durable pack (`settle`) or the file range is cut away.
//! - Every change to a dirty chunk gets a new `version` from one counter.
//!   `born` is the version at which the entry last became dirty from a
//!   state that matches the chunk map; a flush of version v applies only if
//!   `born <= v`, so a flush that raced a truncate or punch never
//!   resurrects the bytes that were cut.
//! - Buffers are `Arc`s: the flusher seals a snapshot while writers go on
//!   (`Arc::make_mut` copies only when a flush holds the old buffer).
//! - Callers hold the filesystem's per-inode data lock when they change a
//!   chunk; the cache's own lock is never held across store I/O.
//! - Clean chunks count their buffers' capacity against the budget (what
//!   they hold in memory); dirty ones their length (what a pack takes).
//! - A chunk made clean by its flush is the first to go: it enters the LRU
//!   at its cold end, so a long write does not evict what readers fetched
//!   and have not read yet.
//! - Background read-ahead reserves the bytes its fetches hold while under
//!   way (the sealed body and its plaintext); reserved bytes count against
//!   the budget like cached ones, so streaming never takes the daemon's
//!   memory past the budget by the runs in flight.
//! - What the daemon's heap holds outside the cache (the namespace, the
//!   cache's own entries and maps, handles, audit records) is measured
//!   (`set_heap_in_use`) and counted against the budget too: the cache
//!   gets the `room` left, never less than a quarter of the budget.
//! - A flush reserves its sealed body (`reserve_flush`) only while dirty
//!   data and flush reservations together leave a quarter of the room to
//!   clean data, unless no other flush holds one (so one always goes on):
//!   with a small cache, read-ahead is not evicted before it is read.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use lru::LruCache;
use zeroize::Zeroize;

/// (inode, chunk index)
pub type ChunkKey = (u64, u64);

pub type Buf = Arc<Vec<u8>>;

/// The memory a clean buffer holds: its capacity, which can exceed its
/// length (a segment's padding, a buffer grown by appends). Clean bytes
/// are counted so; dirty bytes by length, as packs are cut by them.
fn held(b: &Buf) -> u64 {
    b.capacity() as u64
}

struct Dirty {
    data: Buf,
    version: u64,
    born: u64,
    /// The version a flush is uploading right now, so a second flusher
    /// (fsync's, the background one) does not upload it again.
    in_flight: Option<u64>,
    /// Bytes of that upload (counted in `Cache::flying`).
    flight_len: u64,
}

pub struct Cache {
    clean: LruCache<ChunkKey, Buf>,
    /// The keys of `clean`, ordered, so dropping one file's chunks (unlink,
    /// truncate) costs its own chunks, not a walk of the whole LRU.
    clean_keys: BTreeSet<ChunkKey>,
    clean_bytes: u64,
    dirty: BTreeMap<ChunkKey, Dirty>,
    dirty_bytes: u64,
    /// Dirty bytes taken by flushes under way.
    flying: u64,
    budget: u64,
    /// Bytes held by read-ahead fetches under way (see the rules above).
    reserved: u64,
    /// Bytes held by flushes under way: sealed bodies and their copies.
    flush_reserved: u64,
    /// Pack bodies the engine keeps between flushes (`set_kept`).
    kept: u64,
    /// Heap bytes in use outside the cache, as last measured.
    outside: u64,
    next_version: u64,
    /// Ranged GETs under way: (inode, first chunk) → end chunk. Concurrent
    /// readers of one file (the kernel sends several reads at once) wait
    /// for a run that covers their chunk instead of fetching it again.
    fetching: BTreeMap<ChunkKey, u64>,
}

/// A dirty chunk snapshot taken for a flush.
pub struct FlushItem {
    pub key: ChunkKey,
    pub data: Buf,
    pub version: u64,
}

impl Cache {
    pub fn new(budget: u64) -> Cache {
        Cache {
            clean: LruCache::unbounded(),
            clean_keys: BTreeSet::new(),
            clean_bytes: 0,
            dirty: BTreeMap::new(),
            dirty_bytes: 0,
            flying: 0,
            budget,
            reserved: 0,
            flush_reserved: 0,
            kept: 0,
            outside: 0,
            next_version: 1,
            fetching: BTreeMap::new(),
        }
    }

    pub fn budget(&self) -> u64 {
        self.budget
    }

    /// The budget less what the heap holds outside the cache, but at
    /// least a quarter of it.
    pub fn room(&self) -> u64 {
        self.budget
            .saturating_sub(self.outside)
            .max(self.budget / 4)
    }

    /// Heap bytes in use outside the cache, as last measured.
    pub fn outside_bytes(&self) -> u64 {
        self.outside
    }

    /// Takes the allocator's count of heap bytes in use: what is not the
    /// cache's own buffers counts against the budget from now on. Returns
    /// whether the room grew (writers waiting for it may go on).
    pub fn set_heap_in_use(&mut self, in_use: u64) -> bool {
        let before = self.room();
        self.outside = in_use.saturating_sub(self.clean_bytes + self.dirty_bytes);
        self.evict();
        self.room() > before
    }

    /// Dirty bytes plus what flushes under way hold: the writers' share.
    pub fn dirty_and_flushing(&self) -> u64 {
        self.dirty_bytes + self.flush_reserved
    }

    /// Counts `bytes` of pack bodies kept for the next flushes against
    /// the budget, from now on: clean data makes room for them, as for a
    /// flush's reservation. Writers are not held back by them (only an
    /// idle tick frees them, and it waits for the writers' data).
    pub fn set_kept(&mut self, bytes: u64) {
        self.kept = bytes;
        self.evict();
    }

    pub fn kept_bytes(&self) -> u64 {
        self.kept
    }

    /// Reserves `bytes` for a flush's sealed body if that leaves a quarter
    /// of the room to clean data, or if no other flush holds a
    /// reservation; returns whether it did.
    pub fn reserve_flush(&mut self, bytes: u64) -> bool {
        let after = self.dirty_and_flushing() + bytes;
        if self.flush_reserved > 0 && after > self.room() - self.room() / 4 {
            return false;
        }
        self.flush_reserved += bytes;
        self.evict();
        true
    }

    /// Gives back what [`Cache::reserve_flush`] held.
    pub fn release_flush(&mut self, bytes: u64) {
        self.flush_reserved -= bytes.min(self.flush_reserved);
    }

    pub fn dirty_bytes(&self) -> u64 {
        self.dirty_bytes
    }

    pub fn clean_bytes(&self) -> u64 {
        self.clean_bytes
    }

    pub fn get(&mut self, key: ChunkKey) -> Option<Buf> {
        if let Some(d) = self.dirty.get(&key) {
            return Some(d.data.clone());
        }
        self.clean.get(&key).cloned()
    }

    /// Moves clean chunks `first .. end` of `ino` to the LRU's cold end, in
    /// order (the last one coldest): a streaming reader has taken them,
    /// and read-ahead it has not taken yet must outlive them.
    pub fn taken(&mut self, ino: u64, first: u64, end: u64) {
        for chunk in first..end {
            self.clean.demote(&(ino, chunk));
        }
    }

    /// Is `key` held, clean or dirty? Leaves the LRU order alone.
    pub fn contains(&self, key: ChunkKey) -> bool {
        self.dirty.contains_key(&key) || self.clean.contains(&key)
    }

    pub fn is_dirty(&self, key: ChunkKey) -> bool {
        self.dirty.contains_key(&key)
    }

    pub fn put_clean(&mut self, key: ChunkKey, data: Buf) {
        if self.dirty.contains_key(&key) {
            return;
        }
        self.clean_bytes += held(&data);
        self.clean_keys.insert(key);
        if let Some(old) = self.clean.put(key, data) {
            self.clean_bytes -= held(&old);
        }
        self.evict();
    }

    /// Holds `bytes` against the budget for a fetch under way, evicting
    /// clean chunks to make room.
    pub fn reserve(&mut self, bytes: u64) {
        self.reserved += bytes;
        self.evict();
    }

    /// Gives back what [`Cache::reserve`] held.
    pub fn release(&mut self, bytes: u64) {
        self.reserved -= bytes.min(self.reserved);
    }

    fn evict(&mut self) {
        let room = self.room();
        while self.clean_bytes + self.dirty_bytes + self.reserved + self.flush_reserved + self.kept
            > room
        {
            match self.clean.pop_lru() {
                Some((key, b)) => {
                    self.clean_keys.remove(&key);
                    self.clean_bytes -= held(&b);
                }
                None => break,
            }
        }
    }

    fn pop_clean(&mut self, key: ChunkKey) {
        if let Some(b) = self.clean.pop(&key) {
            self.clean_keys.remove(&key);
            self.clean_bytes -= held(&b);
        }
    }

    /// Makes `key` dirty with `data` as its new content.
    pub fn put_dirty(&mut self, key: ChunkKey, data: Vec<u8>) {
        self.pop_clean(key);
        let version = self.bump();
        self.dirty_bytes += data.len() as u64;
        match self.dirty.get_mut(&key) {
            Some(d) => {
                self.dirty_bytes -= d.data.len() as u64;
                d.data = Arc::new(data);
                d.version = version;
            }
            None => {
                self.dirty.insert(
                    key,
                    Dirty {
                        data: Arc::new(data),
                        version,
                        born: version,
                        in_flight: None,
                        flight_len: 0,
                    },
                );
            }
        }
        self.evict();
    }

    /// Changes a dirty chunk in place; returns false if it is not dirty.
    pub fn modify_dirty(&mut self, key: ChunkKey, f: impl FnOnce(&mut Vec<u8>)) -> bool {
        let version = self.bump();
        let Some(d) = self.dirty.get_mut(&key) else {
            return false;
        };
        let before = d.data.len() as u64;
        f(Arc::make_mut(&mut d.data));
        d.version = version;
        self.dirty_bytes = self.dirty_bytes - before + d.data.len() as u64;
        self.evict();
        true
    }

    /// Forgets chunks `first .. first + count` of `ino`, clean and dirty.
    pub fn remove_range(&mut self, ino: u64, first: u64, count: u64) {
        let end = first.saturating_add(count);
        let doomed: Vec<ChunkKey> = self
            .dirty
            .range((ino, first)..(ino, end))
            .map(|(k, _)| *k)
            .collect();
        for k in doomed {
            let d = self.dirty.remove(&k).expect("listed above");
            self.dirty_bytes -= d.data.len() as u64;
            self.flying -= d.flight_len;
        }
        let clean: Vec<ChunkKey> = self
            .clean_keys
            .range((ino, first)..(ino, end))
            .copied()
            .collect();
        for k in clean {
            self.pop_clean(k);
        }
    }

    pub fn remove_inode(&mut self, ino: u64) {
        self.remove_range(ino, 0, u64::MAX);
    }

    /// Cuts chunk `key` to `len` bytes. A dirty chunk is re-born so an
    /// in-flight flush of its longer content is not applied.
    pub fn clamp(&mut self, key: ChunkKey, len: usize) {
        self.pop_clean(key);
        let version = self.bump();
        if let Some(d) = self.dirty.get_mut(&key) {
            if d.data.len() > len {
                self.dirty_bytes -= (d.data.len() - len) as u64;
                Arc::make_mut(&mut d.data).truncate(len);
            }
            d.version = version;
            d.born = version;
        }
    }

    pub fn has_dirty(&self, ino: u64) -> bool {
        self.dirty
            .range((ino, 0)..=(ino, u64::MAX))
            .next()
            .is_some()
    }

    /// Lowest dirty chunk of `ino`, if any.
    pub fn first_dirty(&self, ino: u64) -> Option<u64> {
        self.dirty
            .range((ino, 0)..=(ino, u64::MAX))
            .next()
            .map(|(k, _)| k.1)
    }

    /// Dirty bytes of `ino` in chunks for which `pred` holds.
    pub fn dirty_bytes_where(&self, ino: u64, pred: impl Fn(u64) -> bool) -> u64 {
        self.dirty
            .range((ino, 0)..=(ino, u64::MAX))
            .filter(|(k, _)| pred(k.1))
            .map(|(_, d)| d.data.len() as u64)
            .sum()
    }

    /// First dirty chunk of `ino` at or after `chunk`.
    pub fn next_dirty(&self, ino: u64, chunk: u64) -> Option<u64> {
        self.dirty
            .range((ino, chunk)..=(ino, u64::MAX))
            .next()
            .map(|(k, _)| k.1)
    }

    /// Highest version among `ino`'s dirty chunks (0 if none).
    pub fn dirty_version(&self, ino: u64) -> u64 {
        self.dirty
            .range((ino, 0)..=(ino, u64::MAX))
            .map(|(_, d)| d.version)
            .max()
            .unwrap_or(0)
    }

    /// Does `ino` still have a dirty chunk whose content is at or below
    /// `version` (i.e. written before a flush request was made)?
    pub fn has_dirty_at_or_below(&self, ino: u64, version: u64) -> bool {
        self.dirty
            .range((ino, 0)..=(ino, u64::MAX))
            .any(|(_, d)| d.born <= version)
    }

    /// Snapshots up to `max_bytes` of dirty chunks (counted as sealed,
    /// padded bytes, the size of the pack), `ino`'s first, or only `ino`'s
    /// when `only` is set; then the rest in (inode, chunk) order so
    /// sequential files pack contiguously. Chunks already in flight at
    /// their current version are skipped; the ones taken are marked.
    pub fn take_for_flush(
        &mut self,
        max_bytes: u64,
        ino: Option<u64>,
        only: bool,
    ) -> Vec<FlushItem> {
        let mut keys = Vec::new();
        let mut bytes = 0;
        let preferred = ino
            .into_iter()
            .flat_map(|i| self.dirty.range((i, 0)..=(i, u64::MAX)));
        let rest = self.dirty.iter().filter(|(k, _)| !only && Some(k.0) != ino);
        for (k, d) in preferred.chain(rest) {
            if bytes >= max_bytes {
                break;
            }
            if d.in_flight == Some(d.version) {
                continue;
            }
            bytes += super::offsets::cipher_len(d.data.len() as u32) as u64;
            keys.push(*k);
        }
        keys.into_iter()
            .map(|k| {
                let d = self.dirty.get_mut(&k).expect("listed above");
                d.in_flight = Some(d.version);
                self.flying = self.flying - d.flight_len + d.data.len() as u64;
                d.flight_len = d.data.len() as u64;
                FlushItem {
                    key: k,
                    data: d.data.clone(),
                    version: d.version,
                }
            })
            .collect()
    }

    /// A flush failed: its chunks may be taken again.
    pub fn abort_flush(&mut self, items: &[FlushItem]) {
        for i in items {
            if let Some(d) = self.dirty.get_mut(&i.key) {
                if d.in_flight == Some(i.version) {
                    d.in_flight = None;
                    self.flying -= std::mem::take(&mut d.flight_len);
                }
            }
        }
    }

    /// Dirty bytes no flush has taken yet: what the next pack can hold.
    pub fn waiting_bytes(&self) -> u64 {
        self.dirty_bytes.saturating_sub(self.flying)
    }

    /// The version the next change will get: two readings differ when
    /// something was written between them.
    pub fn version_now(&self) -> u64 {
        self.next_version
    }

    /// Dirty bytes taken by flushes under way.
    pub fn flying_bytes(&self) -> u64 {
        self.flying
    }

    /// Is any chunk being uploaded now?
    pub fn any_in_flight(&self) -> bool {
        self.dirty.values().any(|d| d.in_flight.is_some())
    }

    /// Is any chunk of `ino` being uploaded now?
    pub fn in_flight(&self, ino: u64) -> bool {
        self.dirty
            .range((ino, 0)..=(ino, u64::MAX))
            .any(|(_, d)| d.in_flight.is_some())
    }

    /// After a flush of `version` became durable: returns whether the
    /// chunk map may point at it, and makes the chunk clean if unchanged.
    pub fn settle(&mut self, key: ChunkKey, version: u64) -> bool {
        let Some(d) = self.dirty.get_mut(&key) else {
            return false;
        };
        // The upload is over either way: a re-born chunk that kept counting
        // as flying would make the flushers wait on it for good.
        if d.in_flight == Some(version) {
            d.in_flight = None;
            self.flying -= std::mem::take(&mut d.flight_len);
        }
        if d.born > version {
            return false;
        }
        if d.version == version {
            let d = self.dirty.remove(&key).expect("present");
            self.dirty_bytes -= d.data.len() as u64;
            self.flying -= d.flight_len;
            self.put_clean(key, d.data);
            // At the cold end: a writer streaming through the cache does
            // not push out read-ahead its reader has not taken yet (a read
            // moves what it takes to the warm end).
            self.clean.demote(&key);
        }
        true
    }

    /// Is a fetch of `key`'s chunk under way?
    pub fn is_fetching(&self, (ino, chunk): ChunkKey) -> bool {
        self.fetching
            .range((ino, 0)..=(ino, chunk))
            .next_back()
            .is_some_and(|(_, &end)| chunk < end)
    }

    /// Registers a fetch of up to `want` chunks from `key` and returns how
    /// many to fetch: the run stops where another fetch of the file starts.
    /// The caller checked `is_fetching(key)` is false under the same lock,
    /// and calls `end_fetch(key)` when done.
    pub fn begin_fetch(&mut self, (ino, chunk): ChunkKey, want: u64) -> u64 {
        let end = chunk.saturating_add(want.max(1));
        let end = self
            .fetching
            .range((ino, chunk + 1)..(ino, end))
            .next()
            .map_or(end, |(k, _)| k.1);
        self.fetching.insert((ino, chunk), end);
        end - chunk
    }

    pub fn end_fetch(&mut self, key: ChunkKey) {
        self.fetching.remove(&key);
    }

    /// Drops every clean chunk (the `lock` command, tests).
    /// Drops every buffer, clean and dirty (a locked mount, after its
    /// commit), zeroing each one no reader still holds; returns the bytes
    /// dropped.
    pub fn clear(&mut self) -> u64 {
        let dropped = self.clean_bytes + self.dirty_bytes;
        while let Some((_, mut buf)) = self.clean.pop_lru() {
            if let Some(bytes) = Arc::get_mut(&mut buf) {
                bytes.zeroize();
            }
        }
        self.clean_keys.clear();
        self.clean_bytes = 0;
        for (_, mut d) in std::mem::take(&mut self.dirty) {
            if let Some(bytes) = Arc::get_mut(&mut d.data) {
                bytes.zeroize();
            }
        }
        self.dirty_bytes = 0;
        self.flying = 0;
        dropped
    }

    pub fn drop_clean(&mut self) {
        self.clean.clear();
        self.clean_keys.clear();
        self.clean_bytes = 0;
    }

    fn bump(&mut self) -> u64 {
        let v = self.next_version;
        self.next_version += 1;
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_evicts_clean_never_dirty() {
        let mut c = Cache::new(100);
        c.put_dirty((1, 0), vec![1; 60]);
        c.put_clean((1, 1), Arc::new(vec![2; 30]));
        c.put_clean((1, 2), Arc::new(vec![3; 30]));
        assert!(c.get((1, 1)).is_none(), "oldest clean chunk evicted");
        assert!(c.get((1, 2)).is_some());
        assert_eq!(c.get((1, 0)).unwrap()[0], 1);
    }

    #[test]
    fn flush_settles_only_unchanged_and_not_reborn() {
        let mut c = Cache::new(1 << 20);
        c.put_dirty((1, 0), vec![1; 10]);
        let items = c.take_for_flush(u64::MAX, None, false);
        let v = items[0].version;
        // Changed after the snapshot: map may point at it, still dirty.
        c.modify_dirty((1, 0), |b| b[0] = 9);
        assert!(c.settle((1, 0), v));
        assert!(c.is_dirty((1, 0)));
        // Clamped (truncate) after a snapshot: the flush must not apply.
        let v2 = c.take_for_flush(u64::MAX, None, false)[0].version;
        c.clamp((1, 0), 5);
        assert!(!c.settle((1, 0), v2));
        assert_eq!(c.flying_bytes(), 0, "the upload is over");
        assert!(!c.any_in_flight());
        // Removed (punch): nothing to apply.
        c.remove_range(1, 0, 1);
        assert!(!c.settle((1, 0), v2));
        assert_eq!(c.dirty_bytes(), 0);
    }

    #[test]
    fn remove_range_drops_only_that_files_clean_chunks() {
        let mut c = Cache::new(1 << 20);
        for ino in 1..=3 {
            for chunk in 0..4 {
                c.put_clean((ino, chunk), Arc::new(vec![0; 10]));
            }
        }
        c.remove_range(2, 1, 2);
        let kept = |ino| (0..4).filter(|&i| c.clean.contains(&(ino, i))).count();
        assert_eq!((kept(1), kept(2), kept(3)), (4, 2, 4));
        c.remove_inode(3);
        assert_eq!(c.clean_bytes(), 60);
        assert_eq!(c.clean_keys.len(), c.clean.len());
        // Eviction keeps the index in step too.
        c.put_dirty((9, 0), vec![0; (1 << 20) - 20]);
        assert_eq!(c.clean_bytes(), 20);
        assert_eq!(c.clean_keys.len(), 2);
    }

    #[test]
    fn concurrent_fetches_of_one_file_do_not_overlap() {
        let mut c = Cache::new(1 << 20);
        assert_eq!(c.begin_fetch((1, 4), 8), 8);
        assert!(c.is_fetching((1, 4)) && c.is_fetching((1, 11)));
        assert!(!c.is_fetching((1, 12)) && !c.is_fetching((1, 3)));
        assert!(!c.is_fetching((2, 5)), "other files are not affected");
        // A run starting before stops where the one under way starts.
        assert_eq!(c.begin_fetch((1, 0), 16), 4);
        assert_eq!(c.begin_fetch((2, 0), 16), 16);
        c.end_fetch((1, 4));
        assert!(!c.is_fetching((1, 5)));
        assert!(c.is_fetching((1, 3)));
    }

    #[test]
    fn reserved_bytes_count_against_the_budget() {
        let mut c = Cache::new(100);
        c.put_clean((1, 0), Arc::new(vec![0; 40]));
        c.put_clean((1, 1), Arc::new(vec![0; 40]));
        c.reserve(30);
        assert!(c.get((1, 0)).is_none(), "room made for the fetch");
        assert_eq!(c.clean_bytes(), 40);
        c.release(30);
        c.put_clean((1, 2), Arc::new(vec![0; 40]));
        assert_eq!(c.clean_bytes(), 80, "nothing reserved any more");
    }

    #[test]
    fn clean_chunks_count_what_their_buffers_hold() {
        let mut c = Cache::new(100);
        let mut padded = Vec::with_capacity(60);
        padded.extend_from_slice(&[1; 10]);
        c.put_clean((1, 0), Arc::new(padded));
        assert_eq!(c.clean_bytes(), 60, "capacity, not length");
        c.put_clean((1, 1), Arc::new(vec![0; 50]));
        assert!(c.get((1, 0)).is_none(), "60 + 50 is over the budget");
        assert_eq!(c.clean_bytes(), 50);
        // Settling a dirty chunk makes it clean at what it holds.
        let mut grown = vec![0; 10];
        grown.reserve_exact(20);
        c.put_dirty((2, 0), grown);
        assert_eq!(c.dirty_bytes(), 10, "dirty chunks count their length");
        let v = c.take_for_flush(u64::MAX, None, false)[0].version;
        assert!(c.settle((2, 0), v));
        assert_eq!(c.clean_bytes(), 50 + 30);
    }

    #[test]
    fn heap_held_outside_the_cache_counts_against_its_budget() {
        let mut c = Cache::new(100);
        c.put_clean((1, 0), Arc::new(vec![0; 40]));
        c.put_clean((1, 1), Arc::new(vec![0; 40]));
        // 80 B of buffers and 30 B of namespace in use: over by 10.
        assert!(!c.set_heap_in_use(110));
        assert_eq!((c.outside_bytes(), c.room()), (30, 70));
        assert!(c.get((1, 0)).is_none(), "room made by evicting clean data");
        assert_eq!(c.clean_bytes(), 40);
        // However large the rest grows, the cache keeps a quarter.
        assert!(!c.set_heap_in_use(1000));
        assert_eq!(c.room(), 25);
        c.put_clean((1, 2), Arc::new(vec![0; 20]));
        assert!(c.get((1, 2)).is_some());
        // It shrinks again: the room comes back.
        assert!(c.set_heap_in_use(20), "writers are woken");
        assert_eq!(c.room(), 100);
    }

    #[test]
    fn a_second_flush_waits_while_it_would_crowd_out_clean_data() {
        let mut c = Cache::new(100);
        c.put_dirty((1, 0), vec![0; 30]);
        c.put_clean((2, 0), Arc::new(vec![0; 20]));
        // The first always goes on, even over the three quarters.
        assert!(c.reserve_flush(50));
        assert_eq!(c.dirty_and_flushing(), 80);
        assert!(!c.reserve_flush(10), "80 + 10 leaves less than 25 clean");
        c.release_flush(50);
        assert!(c.reserve_flush(20));
        assert!(c.reserve_flush(20), "30 + 40 leaves a quarter");
        assert!(c.get((2, 0)).is_some());
    }

    #[test]
    fn flushed_chunks_go_before_fetched_ones() {
        let mut c = Cache::new(100);
        c.put_clean((1, 0), Arc::new(vec![0; 30]));
        c.put_dirty((2, 0), vec![0; 30]);
        let v = c.take_for_flush(u64::MAX, None, false)[0].version;
        assert!(c.settle((2, 0), v));
        c.put_clean((1, 1), Arc::new(vec![0; 30]));
        c.put_clean((1, 2), Arc::new(vec![0; 30]));
        assert!(c.get((2, 0)).is_none(), "the flushed chunk went first");
        assert!(c.get((1, 0)).is_some() && c.get((1, 2)).is_some());
    }

    #[test]
    fn take_prefers_requested_inode() {
        let mut c = Cache::new(1 << 20);
        c.put_dirty((1, 0), vec![0; 10]);
        c.put_dirty((2, 0), vec![0; 10]);
        let items = c.take_for_flush(10, Some(2), false);
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].key, (2, 0));
        assert!(
            c.take_for_flush(u64::MAX, Some(2), true).is_empty(),
            "in flight"
        );
        c.abort_flush(&items);
        assert_eq!(c.take_for_flush(u64::MAX, Some(2), true).len(), 1);
    }
}
