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
//! - Compaction runs when the caller's writeback is idle
//!   ([`Engine::compact_once`]), one pack's worth at a time, so it never
//!   competes with writers for the upload slot.

use std::collections::BTreeMap;

use super::error::EngineResult;
use super::{Engine, PackRecords};
use crate::data::{Extent, PackId, Placed, SegRef};

/// Plaintext bytes moved per round: one pack's worth.
const MOVE_TARGET: u64 = 8 << 20;

/// A pack is compacted when less than this fraction of it is live.
const LIVE_RATIO: f64 = 0.5;

/// One chunk to move: where it is now.
struct Move {
    ino: u64,
    chunk: u64,
    from: SegRef,
    /// Units in its pack (the last one is sealed as such).
    units: u32,
}

impl Engine {
    /// Moves up to one pack's worth of live chunks out of mostly-dead
    /// packs. Returns whether anything was moved.
    pub fn compact_once(&self) -> EngineResult<bool> {
        if self.is_read_only() {
            return Ok(false);
        }
        let moves = self.pick_moves();
        if moves.is_empty() {
            return Ok(false);
        }
        let mut plains = Vec::with_capacity(moves.len());
        for m in &moves {
            let one = Extent {
                count: 1,
                pack: m.from.pack,
                first_unit: m.from.unit,
                cipher_off: m.from.cipher_off,
                cipher_len: m.from.cipher_len,
                plain_len: m.from.plain_len,
            };
            let plain = self.read_run(&one, 0, 1, m.units).inspect_err(|e| {
                let kind = match e.is_integrity() {
                    true => crate::alert::Alert::Integrity,
                    false => crate::alert::Alert::Store,
                };
                crate::alert::raise(
                    kind,
                    format_args!(
                        "compaction: chunk {} of inode {} ({}): {e}",
                        m.chunk,
                        m.ino,
                        m.from.pack.key()
                    ),
                );
            })?;
            plains.extend(plain);
        }
        let chunks: Vec<&[u8]> = plains.iter().map(Vec::as_slice).collect();
        let written = self.write_pack(&chunks)?;

        let mut txn = self.lock();
        let mut records = PackRecords::new(&written);
        for (m, p) in moves.iter().zip(&written.placed) {
            let current = txn
                .ns()
                .get(m.ino)
                .and_then(|i| i.chunks())
                .and_then(|c| c.get(m.chunk));
            let Some(cur) = current else { continue };
            if cur.pack != m.from.pack || cur.unit != m.from.unit {
                continue;
            }
            // A truncate since the copy may have lowered plain_len.
            let p = Placed {
                plain_len: cur.plain_len.min(p.plain_len),
                ..*p
            };
            records.map(m.ino, m.chunk, &p);
        }
        let moved = records.mapped();
        txn.apply(records.finish())?;
        log::info!("compaction moved {moved} chunks into {:?}", written.id);
        Ok(true)
    }

    /// Chooses the chunks to move: those of the emptiest packs first, up
    /// to one pack's worth of plaintext.
    fn pick_moves(&self) -> Vec<Move> {
        let (mut victims, shards) = {
            let tree = self.tree();
            let victims: Vec<(PackId, u64, u32)> = tree
                .packs()
                .filter(|(_, p)| p.live > 0 && (p.live as f64) < p.size as f64 * LIVE_RATIO)
                .map(|(id, p)| (*id, p.live, p.units))
                .collect();
            let shards: Vec<u64> = match victims.is_empty() {
                true => Vec::new(),
                false => tree.all_shards().into_iter().collect(),
            };
            (victims, shards)
        };
        if victims.is_empty() {
            return Vec::new();
        }
        victims.sort_by_key(|(id, live, _)| (*live, *id));
        let units: BTreeMap<PackId, u32> = victims.iter().map(|(id, _, u)| (*id, *u)).collect();
        // One scan of the chunk maps finds every chunk in a victim pack. It
        // takes the lock a shard at a time, so `stat` waits for one shard's
        // scan at most; a chunk changed meanwhile is skipped when the moves
        // are applied (the map must still point at the copied segment).
        let mut found: BTreeMap<PackId, Vec<(u64, u64, SegRef)>> = BTreeMap::new();
        for n in shards {
            let tree = self.tree();
            for (ino, inode) in tree.shard_inodes(n) {
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
        }
        let mut moves = Vec::new();
        let mut bytes = 0u64;
        for (id, _, _) in victims {
            let Some(list) = found.remove(&id) else {
                continue;
            };
            for (ino, chunk, seg) in list {
                if bytes >= MOVE_TARGET {
                    return moves;
                }
                bytes += seg.plain_len as u64;
                moves.push(Move {
                    ino,
                    chunk,
                    units: units[&id],
                    from: seg,
                });
            }
        }
        moves
    }
}
