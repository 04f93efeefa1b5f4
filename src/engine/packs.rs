//! Packs as the engine writes and reads them, and the records that map
//! chunks to a new pack.
//!
//! A pack is durable before any record points at it: [`Engine::write_pack`]
//! returns once the PUT succeeded, and only then does the caller apply the
//! [`PackRecords`] it built. A crash in between leaves an unreferenced pack
//! for the garbage sweep, never a map pointing at nothing.
//!
//! A small pack an fsync waits for is instead carried in the journal
//! segment that maps it ([`Engine::carry_pack`], see `meta::carried`): the
//! segment is the pack's first durable copy, and the records that map it
//! follow it in the same segment, so the rule holds there too.

use super::Engine;
use super::error::{EngineError, EngineResult};
use bytes::Bytes;

use crate::data::{
    Extent, PackId, Placed, SegRef, StreamedRun, open_segment, seal_pack_into, sealed_len,
};
use crate::meta::Record;

/// Pack bodies kept for the next [`Engine::write_pack`], one per flusher:
/// a new body is 8 MiB of fresh memory, and faulting it in page by page
/// and unmapping it after the upload took a quarter of the daemon's CPU in
/// a sequential write (docs/BENCHMARKS.md).
const KEPT_BODIES: usize = 2;

/// Sealed body of a full pack (the writeback's target): packs this large
/// all have about the same size and are left unpadded.
const FULL_PACK: usize = 8 << 20;

/// A pack just made durable.
pub struct Written {
    pub id: PackId,
    /// Object size in bytes.
    pub size: u64,
    /// Where each chunk landed, in the order given.
    pub placed: Vec<Placed>,
}

impl Engine {
    /// Seals `chunks` (plaintext, each at most a chunk) into a new pack and
    /// uploads it. Nothing maps to it yet.
    pub fn write_pack(&self, chunks: &[&[u8]]) -> EngineResult<Written> {
        if let Some(f) = self.journal.sticky_failure() {
            return Err(f.into());
        }
        let id = PackId::random();
        // Short packs (a small cache's, an fsync's) take no kept body and
        // leave none: they are not worth the memory.
        let full = sealed_len(chunks) >= FULL_PACK;
        let mut body = match full {
            true => self.bodies().pop().unwrap_or_default(),
            false => Vec::new(),
        };
        let placed = self.seal_padded(id, chunks, &mut body)?;
        let body = Bytes::from(body);
        let put = self.store.put_shared(&id.key(), &body);
        let size = body.len() as u64;
        if full {
            self.keep_body(body);
        }
        put?;
        Ok(Written { id, size, placed })
    }

    pub(super) fn bodies(&self) -> std::sync::MutexGuard<'_, Vec<Vec<u8>>> {
        self.bodies.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps an uploaded body for the next full pack, unless the store
    /// still holds a reference to it (a request given up on may).
    fn keep_body(&self, body: Bytes) {
        let Ok(body) = body.try_into_mut() else {
            return;
        };
        let mut kept = self.bodies();
        if kept.len() < KEPT_BODIES {
            kept.push(Vec::from(body));
        }
    }

    /// Frees the kept pack bodies: the writeback calls it when nothing is
    /// dirty, or nothing may be written any more, so an idle daemon holds
    /// no memory outside its cache for them.
    pub fn release_pack_bodies(&self) {
        self.bodies().clear();
    }

    /// Bytes the kept pack bodies hold, for the daemon's memory count.
    pub fn kept_body_bytes(&self) -> u64 {
        self.bodies().iter().map(|b| b.capacity() as u64).sum()
    }

    /// Seals `chunks` into a new pack body to be carried in the journal
    /// (see [`PackRecords::carried`]): nothing is written here.
    pub fn carry_pack(&self, chunks: &[&[u8]]) -> EngineResult<(Written, Vec<u8>)> {
        if let Some(f) = self.journal.sticky_failure() {
            return Err(f.into());
        }
        let id = PackId::random();
        let mut body = Vec::new();
        let placed = self.seal_padded(id, chunks, &mut body)?;
        let written = Written {
            id,
            size: body.len() as u64,
            placed,
        };
        Ok((written, body))
    }

    /// Seals `chunks` as pack `id`. A pack shorter than a full one (a flush
    /// cut short, such as one file's fsync) is zero-padded to a size class
    /// (`meta::pad`), so its size does not say what the flush held; no
    /// segment maps the padding.
    fn seal_padded(
        &self,
        id: PackId,
        chunks: &[&[u8]],
        body: &mut Vec<u8>,
    ) -> EngineResult<Vec<Placed>> {
        let placed = seal_pack_into(&self.keys.get()?.data, &self.volume_id, id, chunks, body);
        if body.len() < FULL_PACK {
            crate::meta::pad::pad(body);
        }
        Ok(placed)
    }

    /// Reads segments `skip .. skip + n` of `extent` with one ranged GET and
    /// opens each; `units` is the pack's unit count (its last unit is
    /// sealed as such). A segment that fails authentication fails the
    /// whole read: no byte of it is ever returned. When the bytes came
    /// from a copy a store decorator keeps (the disk cache), that copy is
    /// dropped and the range read once more from the store.
    pub fn read_run(
        &self,
        extent: &Extent,
        skip: u32,
        n: u32,
        units: u32,
    ) -> EngineResult<Vec<Vec<u8>>> {
        let range = extent.cipher_range(skip, n);
        // Short lock: no caller holds the tree while it reads.
        let carried = self.tree().carried().get(&extent.pack);
        let body = match carried {
            Some(b) => b
                .get(range.start as usize..range.end as usize)
                .ok_or_else(|| {
                    let why = format!("carried {:?} is shorter than its map", extent.pack);
                    EngineError::Corrupt(crate::meta::Corrupt(why))
                })?
                .to_vec(),
            None => {
                // Each segment is opened as its bytes arrive.
                let key = extent.pack.key();
                // The keys are taken per segment, never across the GET.
                let data_key = |f: &mut dyn FnMut(&crate::crypto::SubKey)| match self.keys.get() {
                    Ok(keys) => {
                        f(&keys.data);
                        true
                    }
                    Err(_) => false,
                };
                let streamed = || -> EngineResult<Vec<Vec<u8>>> {
                    if self.keys.is_locked() {
                        return Err(EngineError::Locked);
                    }
                    let mut run =
                        StreamedRun::new(&data_key, &self.volume_id, extent, skip, n, units);
                    self.store
                        .get_range_to(&key, range.clone(), &mut |at, b| run.put(at, b))?;
                    if run.locked() {
                        return Err(EngineError::Locked);
                    }
                    run.finish().map_err(EngineError::Integrity)
                };
                return match streamed() {
                    Err(e) if e.is_integrity() && self.store.forget(&key, range.clone()) => {
                        let body = self.store.get_range_fresh(&key, range)?;
                        self.open_run(extent, skip, n, units, &body)
                    }
                    opened => opened,
                };
            }
        };
        self.open_run(extent, skip, n, units, &body)
    }

    /// Opens the `n` segments of `body`, fetched for [`Engine::read_run`].
    fn open_run(
        &self,
        extent: &Extent,
        skip: u32,
        n: u32,
        units: u32,
        body: &[u8],
    ) -> EngineResult<Vec<Vec<u8>>> {
        let len = extent.cipher_len as usize;
        let keys = self.keys.get()?;
        (0..n)
            .map(|i| {
                let unit = extent.first_unit + skip + i;
                let sealed = &body[i as usize * len..(i as usize + 1) * len];
                let last = unit + 1 == units;
                open_segment(
                    &keys.data,
                    &self.volume_id,
                    extent.pack,
                    unit,
                    last,
                    sealed,
                    extent.plain_len,
                )
                .map_err(EngineError::Integrity)
            })
            .collect()
    }
}

impl Engine {
    /// Reads the pack bytes `range` with one ranged GET and opens each of
    /// `segs` (segments of pack `pack`, which has `units` units, lying
    /// inside `range`) on its own: one segment's failure is its own
    /// result, so a reader can take the neighbours it fetched along with
    /// its segment and leave the one that failed for its own read to
    /// report.
    pub fn read_segments(
        &self,
        pack: PackId,
        units: u32,
        range: std::ops::Range<u64>,
        segs: &[SegRef],
    ) -> EngineResult<Vec<EngineResult<Vec<u8>>>> {
        let key = pack.key();
        let body = self.store.get_range(&key, range.clone())?;
        let opened = self.open_segments(pack, units, &range, segs, &body)?;
        // A copy kept by a store decorator that fails is dropped and the
        // range read once more from the store (see `read_run`).
        if opened.iter().any(|r| r.is_err()) && self.store.forget(&key, range.clone()) {
            let body = self.store.get_range_fresh(&key, range.clone())?;
            return self.open_segments(pack, units, &range, segs, &body);
        }
        Ok(opened)
    }

    /// Opens each of `segs` in `body` (pack bytes `range`) on its own.
    fn open_segments(
        &self,
        pack: PackId,
        units: u32,
        range: &std::ops::Range<u64>,
        segs: &[SegRef],
        body: &[u8],
    ) -> EngineResult<Vec<EngineResult<Vec<u8>>>> {
        let keys = self.keys.get()?;
        Ok(segs
            .iter()
            .map(|s| {
                let at = s.cipher_off.checked_sub(range.start);
                let sealed = at
                    .map(|a| a as usize..a as usize + s.cipher_len as usize)
                    .and_then(|r| body.get(r))
                    .ok_or_else(|| {
                        EngineError::Integrity(crate::crypto::CryptoError::Malformed(format!(
                            "segment {} of object {} lies outside the bytes fetched",
                            s.unit,
                            pack.key()
                        )))
                    })?;
                let last = s.unit + 1 == units;
                open_segment(
                    &keys.data,
                    &self.volume_id,
                    pack,
                    s.unit,
                    last,
                    sealed,
                    s.plain_len,
                )
                .map_err(EngineError::Integrity)
            })
            .collect())
    }
}

/// The records that announce a new pack and map chunks to it, merging
/// consecutive chunks of one file that sit in consecutive, equally sized
/// segments into one extent.
pub struct PackRecords {
    id: PackId,
    records: Vec<Record>,
    /// The open run: (inode, first chunk, extent so far).
    run: Option<(u64, u64, Extent)>,
    mapped: usize,
}

impl PackRecords {
    pub fn new(pack: &Written) -> PackRecords {
        PackRecords {
            id: pack.id,
            records: vec![Record::Pack {
                id: pack.id,
                size: pack.size,
                units: pack.placed.len() as u32,
            }],
            run: None,
            mapped: 0,
        }
    }

    /// Like [`PackRecords::new`], for a pack carried in the journal: its
    /// body travels in the first record.
    pub fn carried(pack: &Written, body: Vec<u8>) -> PackRecords {
        PackRecords {
            id: pack.id,
            records: vec![Record::Carried {
                id: pack.id,
                units: pack.placed.len() as u32,
                body,
            }],
            run: None,
            mapped: 0,
        }
    }

    /// Maps chunk `chunk` of `ino` to the segment at `p`.
    pub fn map(&mut self, ino: u64, chunk: u64, p: &Placed) {
        self.mapped += 1;
        if let Some((rino, first, e)) = &mut self.run {
            let contiguous = *rino == ino
                && *first + e.count as u64 == chunk
                && e.first_unit + e.count == p.unit
                && e.cipher_len == p.cipher_len
                && e.plain_len == p.plain_len;
            if contiguous {
                e.count += 1;
                return;
            }
        }
        self.close_run();
        self.run = Some((
            ino,
            chunk,
            Extent {
                count: 1,
                pack: self.id,
                first_unit: p.unit,
                cipher_off: p.cipher_off,
                cipher_len: p.cipher_len,
                plain_len: p.plain_len,
            },
        ));
    }

    fn close_run(&mut self) {
        if let Some((ino, first, extent)) = self.run.take() {
            self.records.push(Record::Chunks { ino, first, extent });
        }
    }

    /// How many chunks were mapped.
    pub fn mapped(&self) -> usize {
        self.mapped
    }

    /// The records to apply. A pack nothing maps to (every chunk was cut
    /// or rewritten while it uploaded) is retired at once.
    pub fn finish(mut self) -> Vec<Record> {
        self.close_run();
        if self.mapped == 0 {
            self.records.push(Record::PackGone { id: self.id });
        }
        self.records
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placed(unit: u32, len: u32, plain: u32) -> Placed {
        Placed {
            unit,
            cipher_off: unit as u64 * len as u64,
            cipher_len: len,
            plain_len: plain,
        }
    }

    #[test]
    fn consecutive_chunks_of_one_file_share_an_extent() {
        let w = Written {
            id: PackId([5; 16]),
            size: 500,
            placed: (0..5).map(|u| placed(u, 100, 64)).collect(),
        };
        let mut r = PackRecords::new(&w);
        r.map(7, 10, &w.placed[0]);
        r.map(7, 11, &w.placed[1]);
        r.map(8, 12, &w.placed[2]); // another file
        r.map(8, 14, &w.placed[3]); // a gap in the file
        r.map(8, 15, &placed(4, 100, 30)); // another plain length
        let recs = r.finish();
        let runs: Vec<(u64, u64, u32)> = recs
            .iter()
            .filter_map(|rec| match rec {
                Record::Chunks { ino, first, extent } => Some((*ino, *first, extent.count)),
                _ => None,
            })
            .collect();
        assert_eq!(runs, [(7, 10, 2), (8, 12, 1), (8, 14, 1), (8, 15, 1)]);
        assert!(matches!(recs[0], Record::Pack { units: 5, .. }));
    }

    #[test]
    fn a_pack_nothing_maps_is_retired_at_once() {
        let w = Written {
            id: PackId([6; 16]),
            size: 100,
            placed: vec![placed(0, 100, 64)],
        };
        let recs = PackRecords::new(&w).finish();
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[1], Record::PackGone { id: w.id });
    }
}
