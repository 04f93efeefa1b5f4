//! Reading file data: the cache first, else ranged GETs with read-ahead.
//!
//! Rules:
//! - A read holds the inode's data lock shared, so no write, truncate or
//!   punch of that file changes its map while a fetch is under way.
//! - One GET covers the rest of a request, or the read-ahead window when
//!   that is larger; the window doubles while a handle reads sequentially,
//!   up to [`MAX_READAHEAD`] bytes. A sequential reader also keeps runs
//!   ahead of it in flight in the background (`prefetch`); a cold read of
//!   a small file brings its directory's small files along (`neighbours`).
//! - A fetch registers the chunks it covers; concurrent readers of them
//!   wait for it instead of fetching again (the kernel sends several reads
//!   of one file at once).
//! - A segment that fails authentication fails the read (`EIO`) and is
//!   logged with its inode, chunk and object; its bytes are never used.

use std::sync::Arc;

use super::{Fs, FsError, FsResult, Kind};
use crate::alert::{self, Alert};
use crate::data::offsets::{chunk_span, chunk_start};
use crate::data::{Buf, Extent, PackId};
use crate::engine::EngineError;

/// Read-ahead grows to this many bytes per store request.
const MAX_READAHEAD: u64 = 8 << 20;

/// The bytes a read covers: `offset .. end`, within the file.
struct Span {
    offset: u64,
    end: u64,
}

impl Fs {
    pub fn read(&self, ino: u64, fh: u64, offset: u64, size: u32) -> FsResult<Vec<u8>> {
        let lock = self.locks.get(ino);
        let _shared = lock.read().unwrap_or_else(|p| p.into_inner());
        let Some(span) = self.span(ino, offset, size)? else {
            return Ok(Vec::new());
        };
        let (window, plan) = self.next_window(fh, &span);
        let window = window as u64;
        let streaming = plan.is_some();
        if let Some(plan) = plan {
            self.read_ahead(ino, fh, plan);
        }
        let (first, count) = chunk_span(span.offset, span.end - span.offset, self.chunk_size);
        let out = self.assemble(&span, |chunk| {
            // One GET covers the rest of this request, or the read-ahead
            // window if that is larger.
            let wanted = (first + count - chunk).max(window);
            self.chunk_content(ino, chunk, wanted)
        })?;
        if streaming {
            self.taken(ino, &span);
        }
        Ok(out)
    }

    /// A streaming reader took `span`: its whole chunks go to the cache's
    /// cold end, so read-ahead not yet taken is evicted after them.
    fn taken(&self, ino: u64, span: &Span) {
        let cs = self.chunk_size as u64;
        self.cache()
            .taken(ino, span.offset.div_ceil(cs), span.end / cs);
    }

    /// [`Fs::read`] answered from memory alone: `None` when it would wait
    /// for the store (a chunk not cached) or for the file's data lock.
    pub fn read_cached(
        &self,
        ino: u64,
        fh: u64,
        offset: u64,
        size: u32,
    ) -> FsResult<Option<Vec<u8>>> {
        let lock = self.locks.get(ino);
        let _shared = match lock.try_read() {
            Ok(guard) => guard,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return Ok(None),
        };
        let Some(span) = self.span(ino, offset, size)? else {
            return Ok(Some(Vec::new()));
        };
        let (first, count) = chunk_span(span.offset, span.end - span.offset, self.chunk_size);
        let mut bufs = Vec::with_capacity(count as usize);
        {
            let l = self.lock();
            let map = l.ns().get(ino).and_then(|i| i.chunks());
            let mut cache = self.cache();
            for chunk in first..first + count {
                match cache.get((ino, chunk)) {
                    Some(b) => bufs.push(Some(b)),
                    None if map.is_none_or(|m| m.extent_at(chunk).is_none()) => bufs.push(None),
                    None => return Ok(None),
                }
            }
        }
        if let (_, Some(plan)) = self.next_window(fh, &span) {
            self.read_ahead(ino, fh, plan);
        }
        let mut bufs = bufs.into_iter();
        self.assemble(&span, |_| Ok(bufs.next().flatten()))
            .map(Some)
    }

    /// What a read of `size` bytes at `offset` covers; `None` past EOF.
    fn span(&self, ino: u64, offset: u64, size: u32) -> FsResult<Option<Span>> {
        let file_size = {
            let l = self.lock();
            let attr = self.inode_attr(&l, ino)?;
            if attr.kind == Kind::Dir {
                return Err(FsError::IsDir);
            }
            attr.size
        };
        if offset >= file_size || size == 0 {
            return Ok(None);
        }
        Ok(Some(Span {
            offset,
            end: file_size.min(offset + size as u64),
        }))
    }

    /// The handle's read-ahead window for this read, in chunks (doubles
    /// while reads stay sequential), and what its stream asks for ahead.
    fn next_window(&self, fh: u64, span: &Span) -> (u32, Option<super::prefetch::Plan>) {
        let cs = self.chunk_size as u64;
        let cap = self.ahead_cap();
        self.handles
            .with(fh, |h| {
                let plan = super::prefetch::stream(h, span.offset, span.end, cs, cap);
                h.window = if h.last_read_end == span.offset && span.offset > 0 {
                    (h.window * 2).min((MAX_READAHEAD / cs).max(1) as u32)
                } else {
                    1
                };
                h.last_read_end = span.end;
                h.read += span.end - span.offset;
                (h.window, plan)
            })
            .unwrap_or((1, None))
    }

    /// The bytes of `span`, chunk by chunk from `content` (`None`: a hole).
    fn assemble(
        &self,
        span: &Span,
        mut content: impl FnMut(u64) -> FsResult<Option<Buf>>,
    ) -> FsResult<Vec<u8>> {
        let cs = self.chunk_size as u64;
        let mut out = Vec::with_capacity((span.end - span.offset) as usize);
        let (first, count) = chunk_span(span.offset, span.end - span.offset, self.chunk_size);
        for chunk in first..first + count {
            let start = chunk_start(chunk, self.chunk_size);
            let a = span.offset.max(start) - start;
            let b = span.end.min(start + cs) - start;
            let buf = content(chunk)?;
            let data = buf.as_deref().map_or(&[][..], |v| v.as_slice());
            // Bytes past the chunk's stored length (a hole, or a chunk cut
            // by truncate and grown again) read as zeros.
            let at = out.len();
            out.resize(at + (b - a) as usize, 0);
            let (a, b) = (a as usize, (b as usize).min(data.len()));
            if a < b {
                out[at..at + (b - a)].copy_from_slice(&data[a..b]);
            }
        }
        Ok(out)
    }

    /// The current content of a chunk (`None` for a hole): cache first,
    /// else one ranged GET of up to `readahead` consecutive segments.
    /// Caller holds the inode's data lock.
    pub(crate) fn chunk_content(
        &self,
        ino: u64,
        chunk: u64,
        readahead: u64,
    ) -> FsResult<Option<Buf>> {
        let key = (ino, chunk);
        let run = {
            let mut cache = self.cache();
            loop {
                if let Some(b) = cache.get(key) {
                    return Ok(Some(b));
                }
                if !cache.is_fetching(key) {
                    break cache.begin_fetch(key, readahead);
                }
                // Woken by `end_fetch` (or other cache news); then the
                // chunk is cached, or evicted or failed: look again.
                cache = self.cache_cv.wait(cache).unwrap_or_else(|p| p.into_inner());
            }
        };
        let _done = FetchDone::new(self, key);
        if chunk == 0 && run == 1 {
            if let Some(got) = self.fetch_with_neighbours(ino) {
                return got;
            }
        }
        match self.fetch_run(ino, chunk, run, None) {
            // Compaction may have moved the chunk and retired its old pack
            // between our map lookup and the GET: look again, once.
            Err(FsError::Store(e)) if e.is_not_found() => self.fetch_run(ino, chunk, run, None),
            other => other,
        }
    }

    /// Fetches up to `readahead` chunks from `chunk` with one ranged GET,
    /// caches them while the map still points at them, and returns the
    /// first. A reader's own fetch (`held` is `None`) raises an alert when
    /// it fails; read-ahead leaves that to the reader, and gives back the
    /// bytes `held` for the run as its chunks are cached.
    pub(super) fn fetch_run(
        &self,
        ino: u64,
        chunk: u64,
        readahead: u64,
        held: Option<&std::sync::atomic::AtomicU64>,
    ) -> FsResult<Option<Buf>> {
        let report = held.is_none();
        let (extent, skip, n, units) = {
            let l = self.lock();
            let size = self.inode_attr(&l, ino)?.size;
            let inode = l.ns().get(ino).ok_or(FsError::NotFound)?;
            let Some((first, e)) = inode.chunks().and_then(|m| m.extent_at(chunk)) else {
                return Ok(None);
            };
            let units = l.ns().pack(&e.pack).map_or(0, |p| p.units);
            let last_chunk = size.div_ceil(self.chunk_size as u64);
            let n = readahead
                .min(first + e.count as u64 - chunk)
                .min(last_chunk.saturating_sub(chunk))
                .max(1);
            (e, (chunk - first) as u32, n as u32, units)
        };
        let plains = match report {
            true => self.read_segments(ino, chunk, &extent, skip, n, units)?,
            false => self.engine.read_run(&extent, skip, n, units)?,
        };
        let bufs: Vec<Buf> = plains.into_iter().map(Arc::new).collect();
        let first_buf = bufs.first().cloned();
        // A flush settles a chunk and remaps it under this lock: if the map
        // still points where we read, no newer content can be cached yet.
        let l = self.lock();
        let map = l.ns().get(ino).and_then(|i| i.chunks());
        if map.and_then(|m| m.extent_at(chunk)) == Some((chunk - skip as u64, extent)) {
            let mut cache = self.cache();
            // Locked since (`lockdown`): its cache was or will be emptied;
            // a fetch that was under way must not fill it again.
            if self.is_locked() {
                return Ok(first_buf);
            }
            if let Some(h) = held {
                cache.release(h.swap(0, std::sync::atomic::Ordering::Relaxed));
            }
            for (i, buf) in bufs.into_iter().enumerate() {
                cache.put_clean((ino, chunk + i as u64), buf);
            }
        }
        Ok(first_buf)
    }

    /// The engine's ranged read, its failure logged with what it was for.
    fn read_segments(
        &self,
        ino: u64,
        chunk: u64,
        extent: &Extent,
        skip: u32,
        n: u32,
        units: u32,
    ) -> FsResult<Vec<Vec<u8>>> {
        self.engine
            .read_run(extent, skip, n, units)
            .map_err(|e| report(ino, chunk, n, &extent.pack, e))
    }
}

/// Raises the alert for a failed read of chunks `chunk .. chunk + n` of
/// `ino` from `pack`, and turns it into the caller's error.
pub(super) fn report(ino: u64, chunk: u64, n: u32, pack: &PackId, e: EngineError) -> FsError {
    let kind = match e.is_integrity() {
        true => Alert::Integrity,
        false => Alert::Store,
    };
    alert::raise(
        kind,
        format_args!(
            "chunks {chunk}..{} of inode {ino} (object {}): {e}",
            chunk + n as u64,
            pack.key()
        ),
    );
    FsError::from(e)
}

/// Ends a registered fetch however its fetcher leaves, and wakes the
/// readers waiting for it.
pub(super) struct FetchDone<'a> {
    fs: &'a Fs,
    key: (u64, u64),
}

impl<'a> FetchDone<'a> {
    pub(super) fn new(fs: &'a Fs, key: (u64, u64)) -> FetchDone<'a> {
        FetchDone { fs, key }
    }
}

impl Drop for FetchDone<'_> {
    fn drop(&mut self) {
        self.fs.cache().end_fetch(self.key);
        self.fs.cache_cv.notify_all();
    }
}
