//! Compaction: rewriting the live segments of mostly-dead packs.
//!
//! A pack dies chunk by chunk as files are overwritten, truncated or
//! deleted. When less than half of a pack is live, its live segments are
//! read, re-sealed into a new pack (the associated data binds a segment to
//! its pack, so bytes cannot simply be copied) and the chunk maps switched
//! in one batch of records; the old pack then has no live bytes and is
//! retired like any other.
//!
//! Rules:
//! - A chunk is switched only if the map still points at the exact segment
//!   that was copied; anything written, cut or flushed meanwhile wins.
//! - The new pack is durable before any record points at it (same as a
//!   flush), so a crash mid-compaction leaves the old layout intact and an
//!   unreferenced pack for the garbage collector.
//! - Compaction runs on the flusher thread when it is idle, one pack's worth
//!   at a time, so it never competes with writers for the upload slot.

use std::collections::BTreeMap;

use super::background::PACK_TARGET;
use super::{Fs, FsError, FsResult};
use crate::data::{PackId, SegRef, open_segment, seal_pack};
use crate::meta::Record;

/// A pack is compacted when less than this fraction of it is live.
const LIVE_RATIO: f64 = 0.5;

/// One chunk to move: where it is now.
struct Move {
    ino: u64,
    chunk: u64,
    from: SegRef,
    last: bool,
}

impl Fs {
    /// Moves up to one pack's worth of live chunks out of mostly-dead
    /// packs. Returns whether anything was moved.
    pub(crate) fn compact_once(&self) -> FsResult<bool> {
        if self.is_failed() {
            return Ok(false);
        }
        let moves = self.pick_moves();
        if moves.is_empty() {
            return Ok(false);
        }
        let mut plains = Vec::with_capacity(moves.len());
        for m in &moves {
            let key = m.from.pack.key();
            let range = m.from.cipher_off..m.from.cipher_off + m.from.cipher_len as u64;
            let sealed = self.store.get_range(&key, range)?;
            let plain = open_segment(
                &self.keys.data,
                &self.volume_id,
                m.from.pack,
                m.from.unit,
                m.last,
                &sealed,
                m.from.plain_len,
            )
            .map_err(|e| {
                log::error!(
                    "compaction: chunk {} of inode {} failed authentication ({key}): {e}",
                    m.chunk,
                    m.ino
                );
                FsError::Integrity(e)
            })?;
            plains.push(plain);
        }
        let id = PackId::random();
        let chunks: Vec<&[u8]> = plains.iter().map(Vec::as_slice).collect();
        let (body, placed) = seal_pack(&self.keys.data, &self.volume_id, id, &chunks);
        self.upload(&id.key(), &body)?;

        let mut core = self.core();
        let mut records = vec![Record::Pack {
            id,
            size: body.len() as u64,
            units: placed.len() as u32,
        }];
        let mut moved = 0;
        let mut run = None;
        for (m, p) in moves.iter().zip(&placed) {
            let current = core
                .ns
                .get(m.ino)
                .and_then(|i| i.chunks())
                .and_then(|c| c.get(m.chunk));
            let Some(cur) = current else { continue };
            if cur.pack != m.from.pack || cur.unit != m.from.unit {
                continue;
            }
            // A truncate since the copy may have lowered plain_len.
            let p = crate::data::Placed {
                plain_len: cur.plain_len.min(p.plain_len),
                ..*p
            };
            run = super::background::extend_run(run, m.ino, m.chunk, id, &p, &mut records);
            moved += 1;
        }
        if let Some((ino, first, extent)) = run {
            records.push(Record::Chunks { ino, first, extent });
        }
        if moved == 0 {
            records.push(Record::PackGone { id });
        }
        self.apply(&mut core, records)?;
        log::info!("compaction moved {moved} chunks into {id:?}");
        Ok(true)
    }

    /// Chooses the chunks to move: those of the emptiest packs first, up
    /// to one pack's worth of plaintext.
    fn pick_moves(&self) -> Vec<Move> {
        let core = self.core();
        let mut victims: Vec<(PackId, u64, u32)> = core
            .ns
            .packs
            .iter()
            .filter(|(_, p)| p.live > 0 && (p.live as f64) < p.size as f64 * LIVE_RATIO)
            .map(|(id, p)| (*id, p.live, p.units))
            .collect();
        if victims.is_empty() {
            return Vec::new();
        }
        victims.sort_by_key(|(id, live, _)| (*live, *id));
        let units: BTreeMap<PackId, u32> = victims.iter().map(|(id, _, u)| (*id, *u)).collect();
        // One scan of the chunk maps finds every chunk in a victim pack.
        let mut found: BTreeMap<PackId, Vec<(u64, u64, SegRef)>> = BTreeMap::new();
        for (&ino, inode) in &core.ns.inodes {
            let Some(map) = inode.chunks() else { continue };
            for (first, e) in map.extents() {
                if !units.contains_key(&e.pack) {
                    continue;
                }
                for i in 0..e.count as u64 {
                    if let Some(seg) = map.get(first + i) {
                        found.entry(e.pack).or_default().push((ino, first + i, seg));
                    }
                }
            }
        }
        let mut moves = Vec::new();
        let mut bytes = 0u64;
        for (id, _, _) in victims {
            let Some(list) = found.remove(&id) else {
                continue;
            };
            for (ino, chunk, seg) in list {
                if bytes >= PACK_TARGET {
                    return moves;
                }
                bytes += seg.plain_len as u64;
                moves.push(Move {
                    ino,
                    chunk,
                    last: seg.unit + 1 == units[&id],
                    from: seg,
                });
            }
        }
        moves
    }
}
