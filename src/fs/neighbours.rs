//! Small files read together come in together.
//!
//! Files created together are flushed together into one pack, in inode
//! order. A cold read of a small file fetches, with the same ranged GET,
//! the segments around its own that hold the first chunk of other files of
//! its directory, so reading a directory of small files costs a few GETs,
//! not one per file.
//!
//! Rules:
//! - Only for a file of at most one chunk, read cold at chunk 0. Its
//!   neighbours are the directory's files whose chunk 0 is neither cached
//!   nor being fetched and lies in the same pack within the window: from a
//!   quarter of [`SPAN`] before the file's segment to three quarters after
//!   (a directory is usually read in the order it was written), and never
//!   more than an eighth of the cache budget. Directories of more than
//!   [`MAX_SCAN`] entries are not scanned, so a cold read stays cheap.
//! - Each segment is authenticated on its own before use. The file's own
//!   failing fails the read; a neighbour failing is dropped (its own read
//!   will report it).
//! - A neighbour is cached only if the map still points at the segment
//!   fetched, checked under the namespace lock the flusher settles under.

use std::sync::Arc;

use super::read::report;
use super::{Fs, FsResult};
use crate::data::{Buf, SegRef};

/// The most pack bytes one cold small-file read fetches.
const SPAN: u64 = 2 << 20;

/// Directories with more entries are not scanned for neighbours.
const MAX_SCAN: usize = 8192;

impl Fs {
    /// Chunk 0 of `ino`, fetched with its neighbours; `None` when `ino` is
    /// not a small file, has none, or the GET failed (the caller's own
    /// fetch then tries, and reports).
    pub(super) fn fetch_with_neighbours(&self, ino: u64) -> Option<FsResult<Option<Buf>>> {
        let cs = self.chunk_size as u64;
        let span = SPAN.min(self.opts.cache_bytes / 8);
        let (segs, units) = {
            let l = self.lock();
            if self.inode_attr(&l, ino).ok()?.size > cs {
                return None;
            }
            let inode = l.ns().get(ino)?;
            let own = inode.chunks()?.extent_at(0)?.1.segment(0);
            let entries = l.ns().get(inode.parent)?.entries()?;
            if entries.len() > MAX_SCAN {
                return None;
            }
            let lo = own.cipher_off.saturating_sub(span / 4);
            let hi = own.cipher_off + span * 3 / 4;
            let cache = self.cache();
            let mut segs = vec![(ino, own)];
            for &sib in entries.values() {
                if sib == ino || cache.contains((sib, 0)) || cache.is_fetching((sib, 0)) {
                    continue;
                }
                let Some(s) = first_segment(&l, sib) else {
                    continue;
                };
                if s.pack == own.pack
                    && s.cipher_off >= lo
                    && s.cipher_off + s.cipher_len as u64 <= hi
                {
                    segs.push((sib, s));
                }
            }
            if segs.len() == 1 {
                return None;
            }
            (segs, l.ns().pack(&own.pack).map_or(0, |p| p.units))
        };
        let pack = segs[0].1.pack;
        let start = segs.iter().map(|(_, s)| s.cipher_off).min()?;
        let end = segs
            .iter()
            .map(|(_, s)| s.cipher_off + s.cipher_len as u64)
            .max()?;
        let refs: Vec<SegRef> = segs.iter().map(|(_, s)| *s).collect();
        let opened = match self.engine.read_segments(pack, units, start..end, &refs) {
            Ok(o) => o,
            Err(e) => {
                log::debug!("neighbours of inode {ino} not fetched: {e}");
                return None;
            }
        };
        let mut own = None;
        let l = self.lock();
        let mut cache = self.cache();
        // A lock-down emptied (or will empty) the cache: keep it so.
        let cacheable = !self.is_locked();
        for ((sib, seg), plain) in segs.into_iter().zip(opened) {
            let plain = match plain {
                Ok(p) => p,
                Err(e) if sib == ino => return Some(Err(report(ino, 0, 1, &pack, e))),
                Err(_) => continue,
            };
            let buf: Buf = Arc::new(plain);
            if sib == ino {
                own = Some(buf.clone());
            }
            if cacheable && first_segment(&l, sib) == Some(seg) {
                cache.put_clean((sib, 0), buf);
            }
        }
        Some(Ok(own))
    }
}

/// Where chunk 0 of `ino` lives, if stored.
fn first_segment(l: &super::Locked<'_>, ino: u64) -> Option<SegRef> {
    let (first, e) = l.ns().get(ino)?.chunks()?.extent_at(0)?;
    (first == 0).then(|| e.segment(0))
}
