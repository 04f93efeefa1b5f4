//! A file's chunk map: which sealed segment holds each chunk.
//!
//! The map is run-length: one [`Extent`] covers `count` consecutive chunks
//! stored as consecutive, equally sized segments of one pack, so a file
//! written sequentially costs one extent per pack. Chunks with no extent
//! are holes and read as zeros.
//!
//! Rules:
//! - Extents never overlap; inserting over mapped chunks replaces them, and
//!   every replaced or removed segment is reported to the caller as
//!   `(pack, cipher bytes)` so the per-pack live counts stay exact.
//! - `plain_len` is the number of valid plaintext bytes in each chunk of
//!   the extent; bytes past it read as zeros. Truncation lowers it without
//!   touching the ciphertext, so stale bytes can never reappear when the
//!   file grows again.

use serde::{Deserialize, Serialize};

use super::PackId;
use super::runs::Runs;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extent {
    pub count: u32,
    pub pack: PackId,
    /// Unit index of the first segment in the pack (bound into its AD).
    pub first_unit: u32,
    /// Byte offset of the first segment in the pack object.
    pub cipher_off: u64,
    /// Sealed length of each segment (nonce ‖ padded ciphertext ‖ tag).
    pub cipher_len: u32,
    /// Valid plaintext bytes of each chunk.
    pub plain_len: u32,
}

/// Where one chunk lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegRef {
    pub pack: PackId,
    pub unit: u32,
    pub cipher_off: u64,
    pub cipher_len: u32,
    pub plain_len: u32,
}

impl Extent {
    /// Segment `i` of the extent (0-based).
    pub fn segment(&self, i: u32) -> SegRef {
        self.seg(i)
    }

    /// Pack bytes of `n` consecutive segments from segment `skip`: one
    /// ranged GET.
    pub fn cipher_range(&self, skip: u32, n: u32) -> std::ops::Range<u64> {
        let start = self.cipher_off + skip as u64 * self.cipher_len as u64;
        start..start + n as u64 * self.cipher_len as u64
    }

    fn seg(&self, i: u32) -> SegRef {
        SegRef {
            pack: self.pack,
            unit: self.first_unit + i,
            cipher_off: self.cipher_off + i as u64 * self.cipher_len as u64,
            cipher_len: self.cipher_len,
            plain_len: self.plain_len,
        }
    }

    /// The part of this extent from chunk offset `skip`, `count` chunks long.
    fn slice(&self, skip: u32, count: u32) -> Extent {
        let s = self.seg(skip);
        Extent {
            count,
            pack: self.pack,
            first_unit: s.unit,
            cipher_off: s.cipher_off,
            cipher_len: self.cipher_len,
            plain_len: self.plain_len,
        }
    }

    fn cipher_bytes(&self) -> u64 {
        self.count as u64 * self.cipher_len as u64
    }

    /// Can `next`, starting at chunk `next_first`, extend this extent at `first`?
    fn continues_with(&self, first: u64, next_first: u64, next: &Extent) -> bool {
        first + self.count as u64 == next_first
            && self.pack == next.pack
            && self.first_unit + self.count == next.first_unit
            && self.cipher_off + self.cipher_bytes() == next.cipher_off
            && self.cipher_len == next.cipher_len
            && self.plain_len == next.plain_len
    }
}

/// Ciphertext bytes of a pack that stopped being referenced.
pub type Freed = Vec<(PackId, u64)>;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkMap {
    extents: Runs,
}

impl ChunkMap {
    pub fn get(&self, chunk: u64) -> Option<SegRef> {
        let (first, e) = self.extents.at_or_before(chunk)?;
        let i = chunk - first;
        (i < e.count as u64).then(|| e.seg(i as u32))
    }

    /// The extent holding `chunk`, as (first chunk, extent).
    pub fn extent_at(&self, chunk: u64) -> Option<(u64, Extent)> {
        let (first, e) = self.extents.at_or_before(chunk)?;
        (chunk - first < e.count as u64).then_some((first, *e))
    }

    pub fn extents(&self) -> impl Iterator<Item = (u64, &Extent)> {
        self.extents.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.extents.is_empty()
    }

    /// Plaintext bytes actually stored (what `st_blocks` reports).
    pub fn stored_plain_bytes(&self) -> u64 {
        self.extents
            .iter()
            .map(|(_, e)| e.count as u64 * e.plain_len as u64)
            .sum()
    }

    /// Maps `e.count` chunks from `first` onto `e`, replacing what was there.
    pub fn insert(&mut self, first: u64, e: Extent, freed: &mut Freed) {
        if e.count == 0 {
            return;
        }
        self.remove(first, e.count as u64, freed);
        let mut first = first;
        let mut e = e;
        if let Some((pf, pe)) = self.extents.before(first) {
            if pe.continues_with(pf, first, &e) {
                let mut merged = *pe;
                merged.count += e.count;
                first = pf;
                e = merged;
            }
        }
        let end = first + e.count as u64;
        if let Some(ne) = self.extents.get(end).copied() {
            if e.continues_with(first, end, &ne) {
                self.extents.remove(end);
                e.count += ne.count;
            }
        }
        self.extents.insert(first, e);
    }

    /// Unmaps chunks `first .. first + count` (they become holes).
    pub fn remove(&mut self, first: u64, count: u64, freed: &mut Freed) {
        if count == 0 {
            return;
        }
        let end = first.saturating_add(count);
        self.split_at(first);
        self.split_at(end);
        let doomed = self.extents.starts_in(first, end);
        for k in doomed {
            let e = self.extents.remove(k).expect("listed above");
            freed.push((e.pack, e.cipher_bytes()));
        }
    }

    /// Drops every chunk at or past `size` bytes and clamps the chunk that
    /// straddles `size` so its bytes past `size` read as zeros.
    pub fn truncate(&mut self, size: u64, chunk_size: u32, freed: &mut Freed) {
        let cs = chunk_size as u64;
        let keep = size.div_ceil(cs);
        self.remove(keep, u64::MAX - keep, freed);
        let tail = (size % cs) as u32;
        if tail == 0 {
            return;
        }
        let last = size / cs;
        if let Some(seg) = self.get(last) {
            if seg.plain_len > tail {
                self.split_at(last);
                self.split_at(last + 1);
                if let Some(e) = self.extents.get_mut(last) {
                    e.plain_len = tail;
                }
            }
        }
    }

    /// Does any mapped byte lie at or past `size`? (Only after a crash: a
    /// flush can map bytes the journaled size does not cover yet.)
    pub fn extends_past(&self, size: u64, chunk_size: u32) -> bool {
        self.extents.iter().next_back().is_some_and(|(first, e)| {
            (first + e.count as u64 - 1) * chunk_size as u64 + e.plain_len as u64 > size
        })
    }

    /// First mapped chunk at or after `chunk`.
    pub fn next_mapped(&self, chunk: u64) -> Option<u64> {
        if self.get(chunk).is_some() {
            return Some(chunk);
        }
        self.extents.first_from(chunk)
    }

    /// First unmapped chunk at or after `chunk`.
    pub fn next_unmapped(&self, chunk: u64) -> u64 {
        let mut c = chunk;
        while let Some((first, e)) = self.extent_at(c) {
            c = first + e.count as u64;
        }
        c
    }

    /// Ensures no extent spans the boundary before chunk `at`.
    fn split_at(&mut self, at: u64) {
        let Some((first, &e)) = self.extents.before(at) else {
            return;
        };
        let inside = at - first;
        if inside == 0 || inside >= e.count as u64 {
            return;
        }
        let inside = inside as u32;
        self.extents.insert(first, e.slice(0, inside));
        self.extents.insert(at, e.slice(inside, e.count - inside));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: PackId = PackId([1; 16]);
    const Q: PackId = PackId([2; 16]);

    fn ext(count: u32, pack: PackId, unit: u32) -> Extent {
        Extent {
            count,
            pack,
            first_unit: unit,
            cipher_off: unit as u64 * 100,
            cipher_len: 100,
            plain_len: 64,
        }
    }

    fn layout(m: &ChunkMap) -> Vec<(u64, u32, u32)> {
        m.extents()
            .map(|(k, e)| (k, e.count, e.first_unit))
            .collect()
    }

    #[test]
    fn sequential_inserts_merge_into_one_extent() {
        let mut m = ChunkMap::default();
        let mut freed = Vec::new();
        for i in 0..10 {
            m.insert(i, ext(1, P, i as u32), &mut freed);
        }
        assert_eq!(layout(&m), vec![(0, 10, 0)]);
        assert!(freed.is_empty());
        assert_eq!(m.get(7).unwrap().cipher_off, 700);
        assert_eq!(m.get(10), None);
    }

    #[test]
    fn overwrite_in_the_middle_splits_and_frees() {
        let mut m = ChunkMap::default();
        let mut freed = Vec::new();
        m.insert(0, ext(10, P, 0), &mut freed);
        m.insert(4, ext(2, Q, 0), &mut freed);
        assert_eq!(layout(&m), vec![(0, 4, 0), (4, 2, 0), (6, 4, 6)]);
        assert_eq!(freed, vec![(P, 200)]);
        assert_eq!(m.get(6).unwrap().cipher_off, 600);
        assert_eq!(m.get(5).unwrap().pack, Q);
    }

    #[test]
    fn remove_edges_and_beyond() {
        let mut m = ChunkMap::default();
        let mut freed = Vec::new();
        m.insert(0, ext(4, P, 0), &mut freed);
        m.remove(0, 1, &mut freed);
        m.remove(3, 100, &mut freed);
        m.remove(50, 1, &mut freed);
        assert_eq!(layout(&m), vec![(1, 2, 1)]);
        assert_eq!(freed.iter().map(|f| f.1).sum::<u64>(), 200);
    }

    #[test]
    fn truncate_table() {
        // (size, chunk_size 64) → remaining chunks and plain_len of the last.
        for (size, chunks, last_len) in [
            (0u64, 0usize, 0u32),
            (1, 1, 1),
            (63, 1, 63),
            (64, 1, 64),
            (65, 2, 1),
            (128, 2, 64),
            (10_000, 4, 64),
        ] {
            let mut m = ChunkMap::default();
            let mut freed = Vec::new();
            m.insert(0, ext(4, P, 0), &mut freed);
            m.truncate(size, 64, &mut freed);
            let n: u64 = m.extents().map(|(_, e)| e.count as u64).sum();
            assert_eq!(n as usize, chunks, "size {size}");
            if chunks > 0 {
                assert_eq!(
                    m.get(chunks as u64 - 1).unwrap().plain_len,
                    last_len,
                    "size {size}"
                );
            }
        }
    }

    #[test]
    fn extends_past_table() {
        let mut m = ChunkMap::default();
        let mut freed = Vec::new();
        m.insert(1, ext(2, P, 0), &mut freed); // chunks 1-2, 64 valid bytes each (chunk size 64)
        assert!(m.extends_past(191, 64));
        assert!(!m.extends_past(192, 64));
        assert!(!ChunkMap::default().extends_past(0, 64));
    }

    #[test]
    fn data_and_hole_search() {
        let mut m = ChunkMap::default();
        let mut freed = Vec::new();
        m.insert(2, ext(3, P, 0), &mut freed);
        m.insert(5, ext(1, Q, 0), &mut freed);
        assert_eq!(m.next_mapped(0), Some(2));
        assert_eq!(m.next_mapped(3), Some(3));
        assert_eq!(m.next_mapped(6), None);
        assert_eq!(m.next_unmapped(0), 0);
        assert_eq!(m.next_unmapped(2), 6);
    }

    #[test]
    fn cipher_range_table() {
        // Segments of 100 bytes from byte 300 (unit 3 of the pack).
        let e = ext(8, P, 3);
        for (skip, n, want) in [
            (0, 0, 300..300),
            (0, 1, 300..400),
            (1, 1, 400..500),
            (0, 8, 300..1100),
            (7, 1, 1000..1100),
            (2, 3, 500..800),
        ] {
            assert_eq!(e.cipher_range(skip, n), want, "skip {skip} n {n}");
        }
        let seg = e.segment(5);
        assert_eq!((seg.unit, seg.cipher_off), (8, 800));
        // Huge offsets do not wrap.
        let big = Extent {
            cipher_off: 1 << 40,
            cipher_len: 65_576,
            ..ext(u32::MAX, P, 0)
        };
        let r = big.cipher_range(u32::MAX - 1, 1);
        assert_eq!(r.end - r.start, 65_576);
        assert_eq!(r.start, (1 << 40) + (u32::MAX as u64 - 1) * 65_576);
    }
}
