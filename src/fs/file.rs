//! File data operations: open, read, write, truncate, fallocate, fsync.
//!
//! Every data operation holds the inode's data lock (shared for reads,
//! exclusive otherwise) for its whole duration, including the store reads
//! of a read-modify-write; `core` and `cache` are taken only for short
//! steps in between.

use std::ffi::OsStr;
use std::sync::Arc;

use super::background::PACK_TARGET;
use super::{Attr, Caller, Fs, FsError, FsResult, Kind, Opened};
use crate::data::offsets::{chunk_len_in_file, chunk_span, chunk_start};
use crate::data::{Buf, open_segment};
use crate::meta::{Record, Timestamp};

/// Largest file size (as ext4 with 4 KiB blocks: 16 TiB).
pub const MAX_FILE_SIZE: u64 = 16 << 40;
/// Read-ahead grows to this many bytes per store request.
const MAX_READAHEAD: u64 = 8 << 20;

impl Fs {
    pub fn open(&self, c: &Caller, ino: u64, flags: i32) -> FsResult<Opened> {
        let writes = flags & libc::O_ACCMODE != libc::O_RDONLY;
        if writes {
            self.check_writable()?;
        }
        let mut core = self.core();
        match core.ns.get(ino).ok_or(FsError::NotFound)?.attr.kind {
            Kind::Dir if writes => return Err(FsError::IsDir),
            _ => {}
        }
        *core.opens.entry(ino).or_default() += 1;
        drop(core);
        if flags & libc::O_TRUNC != 0 && writes {
            self.truncate(c, ino, None, 0)?;
        }
        let fh = self.handles.insert(c, ino, flags, None);
        // We are the only writer, and every change goes through the
        // kernel, so its page cache stays valid across opens.
        Ok(Opened {
            fh,
            keep_cache: true,
        })
    }

    pub fn create(
        &self,
        c: &Caller,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
    ) -> FsResult<(Attr, Opened)> {
        self.check_writable()?;
        let name = super::dir::check_name(name)?;
        let mut core = self.core();
        let ino = match self.create_locked(
            &mut core,
            c,
            parent,
            name,
            Kind::File,
            mode & !umask,
            0,
            None,
        ) {
            Ok(ino) => ino,
            Err(FsError::Exists) if flags & libc::O_EXCL == 0 => {
                let dir = core.ns.get(parent).ok_or(FsError::NotFound)?;
                *dir.entries()
                    .and_then(|e| e.get(name))
                    .ok_or(FsError::NotFound)?
            }
            Err(e) => return Err(e),
        };
        *core.opens.entry(ino).or_default() += 1;
        let attr = self.attr_of(&core, ino)?;
        drop(core);
        let fh = self.handles.insert(c, ino, flags, None);
        Ok((
            attr,
            Opened {
                fh,
                keep_cache: true,
            },
        ))
    }

    pub fn read(&self, ino: u64, fh: u64, offset: u64, size: u32) -> FsResult<Vec<u8>> {
        let lock = self.locks.get(ino);
        let _shared = lock.read().unwrap();
        let file_size = {
            let core = self.core();
            let inode = core.ns.get(ino).ok_or(FsError::NotFound)?;
            if inode.attr.kind == Kind::Dir {
                return Err(FsError::IsDir);
            }
            inode.attr.size
        };
        if offset >= file_size || size == 0 {
            return Ok(Vec::new());
        }
        let end = file_size.min(offset + size as u64);
        let cs = self.chunk_size as u64;
        // Sequential readers get a read-ahead window that doubles per read.
        let window = self
            .handles
            .with(fh, |h| {
                h.window = if h.last_read_end == offset && offset > 0 {
                    (h.window * 2).min((MAX_READAHEAD / cs).max(1) as u32)
                } else {
                    1
                };
                h.last_read_end = end;
                h.window
            })
            .unwrap_or(1);
        let mut out = Vec::with_capacity((end - offset) as usize);
        let (first, count) = chunk_span(offset, end - offset, self.chunk_size);
        for chunk in first..first + count {
            let start = chunk_start(chunk, self.chunk_size);
            let a = offset.max(start) - start;
            let b = end.min(start + cs) - start;
            // One GET covers the rest of this request, or the read-ahead
            // window if that is larger.
            let wanted = (first + count - chunk).max(window as u64);
            let buf = self.chunk_content(ino, chunk, wanted)?;
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
    fn chunk_content(&self, ino: u64, chunk: u64, readahead: u64) -> FsResult<Option<Buf>> {
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
                // Woken by `end_fetch` below (or other cache news); then
                // the chunk is cached, or evicted or failed: look again.
                cache = self.cache_cv.wait(cache).unwrap();
            }
        };
        let _done = FetchDone { fs: self, key };
        match self.fetch_run(ino, chunk, run) {
            // Compaction may have moved the chunk and retired its old pack
            // between our map lookup and the GET: look again, once.
            Err(FsError::Store(e)) if e.is_not_found() => self.fetch_run(ino, chunk, run),
            other => other,
        }
    }

    fn fetch_run(&self, ino: u64, chunk: u64, readahead: u64) -> FsResult<Option<Buf>> {
        let (extent_first, e, units) = {
            let core = self.core();
            let inode = core.ns.get(ino).ok_or(FsError::NotFound)?;
            let Some((first, e)) = inode.chunks().and_then(|m| m.extent_at(chunk)) else {
                return Ok(None);
            };
            let units = core.ns.packs.get(&e.pack).map_or(0, |p| p.units);
            let last_chunk = inode.attr.size.div_ceil(self.chunk_size as u64);
            let n = readahead
                .min(first + e.count as u64 - chunk)
                .min(last_chunk.saturating_sub(chunk))
                .max(1);
            (
                first,
                crate::data::Extent {
                    count: n as u32,
                    ..e
                },
                units,
            )
        };
        let skip = (chunk - extent_first) as u32;
        let key = e.pack.key();
        let cipher_off = e.cipher_off + skip as u64 * e.cipher_len as u64;
        let cipher_end = cipher_off + e.count as u64 * e.cipher_len as u64;
        let body = self
            .store
            .get_range(&key, cipher_off..cipher_end)
            .map_err(|err| {
                log::error!("chunk {chunk} of inode {ino}: cannot read {key}: {err}");
                FsError::Store(err)
            })?;
        let mut first_buf = None;
        for i in 0..e.count {
            let unit = e.first_unit + skip + i;
            let sealed = &body[(i * e.cipher_len) as usize..((i + 1) * e.cipher_len) as usize];
            let plain = open_segment(&self.keys.data, &self.volume_id, e.pack, unit, unit + 1 == units, sealed, e.plain_len)
                .map_err(|err| {
                    log::error!(
                        "chunk {} of inode {ino} failed authentication (object {key}, unit {unit}): {err}",
                        chunk + i as u64
                    );
                    FsError::Integrity(err)
                })?;
            let buf: Buf = Arc::new(plain);
            if i == 0 {
                first_buf = Some(buf.clone());
            }
            self.cache().put_clean((ino, chunk + i as u64), buf);
        }
        Ok(first_buf)
    }

    pub fn write(&self, _c: &Caller, ino: u64, fh: u64, offset: u64, data: &[u8]) -> FsResult<u32> {
        self.check_writable()?;
        let append = self
            .handles
            .with(fh, |h| h.flags & libc::O_APPEND != 0)
            .unwrap_or(false);
        {
            let lock = self.locks.get(ino);
            let _excl = lock.write().unwrap();
            let old_size = self.file_size(ino)?;
            let offset = if append { old_size } else { offset };
            let end = offset
                .checked_add(data.len() as u64)
                .ok_or(FsError::FileTooBig)?;
            if end > MAX_FILE_SIZE {
                return Err(FsError::FileTooBig);
            }
            self.write_chunks(ino, offset, data, old_size)?;
            let mut core = self.core();
            let now = Timestamp::now();
            let inode = core.ns.get_mut(ino).ok_or(FsError::NotFound)?;
            inode.attr.mtime = now;
            inode.attr.ctime = now;
            if end > old_size {
                inode.attr.size = end;
                core.unjournaled.entry(ino).or_insert(old_size);
            }
        }
        self.throttle()?;
        Ok(data.len() as u32)
    }

    /// Copies `data` into the chunks it covers (read-modify-write where a
    /// chunk is partly covered and not cached). Caller holds the data lock.
    fn write_chunks(&self, ino: u64, offset: u64, data: &[u8], old_size: u64) -> FsResult<()> {
        let cs = self.chunk_size as u64;
        let (first, count) = chunk_span(offset, data.len() as u64, self.chunk_size);
        for chunk in first..first + count {
            let start = chunk_start(chunk, self.chunk_size);
            let a = (offset.max(start) - start) as usize;
            let b = ((offset + data.len() as u64).min(start + cs) - start) as usize;
            let src =
                &data[(start + a as u64 - offset) as usize..(start + b as u64 - offset) as usize];
            let fill = |buf: &mut Vec<u8>| {
                if buf.len() < b {
                    buf.resize(b, 0);
                }
                buf[a..b].copy_from_slice(src);
            };
            if self.cache().modify_dirty((ino, chunk), fill) {
                continue;
            }
            let valid = chunk_len_in_file(chunk, old_size, self.chunk_size) as usize;
            let mut buf = if a == 0 && b >= valid {
                Vec::with_capacity(b)
            } else {
                let mut base = self
                    .chunk_content(ino, chunk, 1)?
                    .map_or_else(Vec::new, |b| b.to_vec());
                base.resize(valid, 0);
                base
            };
            fill(&mut buf);
            self.cache().put_dirty((ino, chunk), buf);
        }
        Ok(())
    }

    /// Backpressure: a writer waits while dirty data exceeds its share of
    /// the cache, so a long copy runs at store speed in bounded memory.
    fn throttle(&self) -> FsResult<()> {
        let limit = (self.opts.cache_bytes / 2).max(2 * PACK_TARGET);
        let mut cache = self.cache();
        if cache.dirty_bytes() >= PACK_TARGET {
            // A pack's worth is ready: upload it now, not at the next tick.
            self.flush.request(None);
        }
        while cache.dirty_bytes() > limit {
            if let Some(f) = self.journal.failure() {
                return Err(FsError::Io(f));
            }
            self.flush.request(None);
            cache = self
                .cache_cv
                .wait_timeout(cache, std::time::Duration::from_millis(100))
                .unwrap()
                .0;
        }
        Ok(())
    }

    fn file_size(&self, ino: u64) -> FsResult<u64> {
        let core = self.core();
        let inode = core.ns.get(ino).ok_or(FsError::NotFound)?;
        match inode.attr.kind {
            Kind::File => Ok(inode.attr.size),
            Kind::Dir => Err(FsError::IsDir),
            _ => Err(FsError::Invalid),
        }
    }

    /// `close(2)`: no durability promise (as ext4), but an earlier failed
    /// writeback is reported here rather than lost.
    pub fn flush(&self, _ino: u64, _fh: u64) -> FsResult<()> {
        match self.journal.failure() {
            Some(f) => Err(FsError::Io(f)),
            None => Ok(()),
        }
    }

    pub fn release(&self, ino: u64, fh: u64) -> FsResult<()> {
        self.handles.remove(fh);
        let mut core = self.core();
        let left = match core.opens.get_mut(&ino) {
            Some(n) => {
                *n -= 1;
                *n
            }
            None => 0,
        };
        if left == 0 {
            core.opens.remove(&ino);
            if core.ns.orphans.contains(&ino) && !self.is_read_only() {
                self.cache().remove_inode(ino);
                core.unjournaled.remove(&ino);
                self.apply(&mut core, vec![Record::Drop { ino }])?;
            }
        }
        Ok(())
    }

    pub fn fsync(&self, ino: u64, _fh: u64, _datasync: bool) -> FsResult<()> {
        if self.opts.read_only {
            return Ok(());
        }
        if let Some(f) = self.journal.failure() {
            // Fenced or failed: what is committed stays so; anything still
            // in memory never will be.
            let pending = self.cache().dirty_version(ino) != 0
                || self.core().unjournaled.contains_key(&ino)
                || self.journal.has_unacknowledged();
            return if pending { Err(FsError::Io(f)) } else { Ok(()) };
        }
        self.flush_inode(ino)?;
        let id = {
            let mut core = self.core();
            if core.ns.get(ino).is_some() {
                let r = self.inode_record(&mut core, ino);
                self.apply(&mut core, vec![r])?
            } else {
                self.journal.appended()
            }
        };
        self.wait_durable(id)
    }

    /// Sets the size of a regular file (truncate, ftruncate, O_TRUNC).
    pub(crate) fn truncate(
        &self,
        _c: &Caller,
        ino: u64,
        _fh: Option<u64>,
        size: u64,
    ) -> FsResult<()> {
        self.check_writable()?;
        if size > MAX_FILE_SIZE {
            return Err(FsError::FileTooBig);
        }
        let lock = self.locks.get(ino);
        let _excl = lock.write().unwrap();
        let old = self.file_size(ino)?;
        let mut core = self.core();
        let mut records = Vec::new();
        if size < old {
            let cs = self.chunk_size as u64;
            let mut cache = self.cache();
            cache.remove_range(ino, size.div_ceil(cs), u64::MAX);
            if size % cs != 0 {
                cache.clamp((ino, size / cs), (size % cs) as usize);
            }
            drop(cache);
            records.push(Record::Truncate { ino, size });
        }
        // An explicit size is journaled as given, whatever is still dirty.
        core.unjournaled.remove(&ino);
        let now = Timestamp::now();
        let inode = core.ns.get_mut(ino).ok_or(FsError::NotFound)?;
        inode.attr.size = size;
        if size != old {
            inode.attr.mtime = now;
        }
        inode.attr.ctime = now;
        records.push(Record::Inode {
            ino,
            attr: inode.attr,
        });
        self.apply(&mut core, records)?;
        Ok(())
    }

    pub fn fallocate(
        &self,
        c: &Caller,
        ino: u64,
        _fh: u64,
        offset: u64,
        length: u64,
        mode: i32,
    ) -> FsResult<()> {
        self.check_writable()?;
        if length == 0 {
            return Err(FsError::Invalid);
        }
        let end = offset.checked_add(length).ok_or(FsError::FileTooBig)?;
        if end > MAX_FILE_SIZE {
            return Err(FsError::FileTooBig);
        }
        let keep_size = mode & libc::FALLOC_FL_KEEP_SIZE != 0;
        let punch = mode & libc::FALLOC_FL_PUNCH_HOLE != 0;
        let zero = mode & libc::FALLOC_FL_ZERO_RANGE != 0;
        if mode
            & !(libc::FALLOC_FL_KEEP_SIZE | libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_ZERO_RANGE)
            != 0
            || punch && (zero || !keep_size)
        {
            return Err(FsError::NotSupported);
        }
        let size = self.file_size(ino)?;
        if punch || zero {
            self.zero_range(ino, offset, end.min(size))?;
        }
        if !keep_size && end > size {
            // No space to reserve in an object store: growing the size is
            // all `fallocate` has to do.
            self.truncate(c, ino, None, end)?;
        }
        Ok(())
    }

    /// Makes bytes `offset .. end` read as zeros: whole chunks become holes,
    /// partial ones are rewritten.
    fn zero_range(&self, ino: u64, offset: u64, end: u64) -> FsResult<()> {
        if offset >= end {
            return Ok(());
        }
        let lock = self.locks.get(ino);
        let _excl = lock.write().unwrap();
        let cs = self.chunk_size as u64;
        let whole_first = offset.div_ceil(cs);
        let whole_end = end / cs;
        for chunk in [offset / cs, (end - 1) / cs] {
            if chunk >= whole_first && chunk < whole_end {
                continue;
            }
            let start = chunk_start(chunk, self.chunk_size);
            let a = (offset.max(start) - start) as usize;
            let b = (end.min(start + cs) - start) as usize;
            let zero = |buf: &mut Vec<u8>| {
                let hi = b.min(buf.len());
                if a < hi {
                    buf[a..hi].fill(0);
                }
            };
            if self.cache().modify_dirty((ino, chunk), zero) {
                continue;
            }
            if let Some(cur) = self.chunk_content(ino, chunk, 1)? {
                let mut buf = cur.to_vec();
                zero(&mut buf);
                self.cache().put_dirty((ino, chunk), buf);
            }
        }
        let mut core = self.core();
        let mut records = Vec::new();
        if whole_end > whole_first {
            self.cache()
                .remove_range(ino, whole_first, whole_end - whole_first);
            records.push(Record::Punch {
                ino,
                first: whole_first,
                count: whole_end - whole_first,
            });
        }
        let now = Timestamp::now();
        records.push(self.change_attr(&mut core, ino, |a| {
            a.mtime = now;
            a.ctime = now;
        }));
        self.apply(&mut core, records)?;
        Ok(())
    }

    /// SEEK_DATA / SEEK_HOLE at chunk granularity (dirty chunks are data).
    pub fn lseek(&self, ino: u64, _fh: u64, offset: i64, whence: i32) -> FsResult<i64> {
        if offset < 0 {
            return Err(FsError::NoSuchAddress);
        }
        let offset = offset as u64;
        let core = self.core();
        let inode = core.ns.get(ino).ok_or(FsError::NotFound)?;
        let size = inode.attr.size;
        if offset >= size {
            return Err(FsError::NoSuchAddress);
        }
        let empty = crate::data::ChunkMap::default();
        let map = inode.chunks().unwrap_or(&empty);
        let cache = self.cache();
        let cs = self.chunk_size as u64;
        let chunk = offset / cs;
        let is_data = |c: u64| map.get(c).is_some() || cache.is_dirty((ino, c));
        match whence {
            libc::SEEK_DATA => {
                let mapped = map.next_mapped(chunk);
                let dirty = cache.next_dirty(ino, chunk);
                let next = match (mapped, dirty) {
                    (Some(m), Some(d)) => m.min(d),
                    (Some(x), None) | (None, Some(x)) => x,
                    (None, None) => return Err(FsError::NoSuchAddress),
                };
                let pos = if next == chunk { offset } else { next * cs };
                if pos >= size {
                    return Err(FsError::NoSuchAddress);
                }
                Ok(pos as i64)
            }
            libc::SEEK_HOLE => {
                let mut c = chunk;
                while c * cs < size && is_data(c) {
                    c = map
                        .next_unmapped(c)
                        .max(c + 1)
                        .min(if cache.is_dirty((ino, c)) {
                            c + 1
                        } else {
                            u64::MAX
                        });
                }
                let pos = if c == chunk {
                    offset
                } else {
                    (c * cs).min(size)
                };
                Ok(pos as i64)
            }
            _ => Err(FsError::Invalid),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn copy_file_range(
        &self,
        c: &Caller,
        ino_in: u64,
        fh_in: u64,
        off_in: u64,
        ino_out: u64,
        fh_out: u64,
        off_out: u64,
        len: u64,
    ) -> FsResult<u64> {
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(1 << 20) as u32;
            let buf = self.read(ino_in, fh_in, off_in + done, n)?;
            if buf.is_empty() {
                break;
            }
            self.write(c, ino_out, fh_out, off_out + done, &buf)?;
            done += buf.len() as u64;
        }
        Ok(done)
    }
}

/// Ends a registered fetch however `chunk_content` leaves, and wakes the
/// readers waiting for it.
struct FetchDone<'a> {
    fs: &'a Fs,
    key: (u64, u64),
}

impl Drop for FetchDone<'_> {
    fn drop(&mut self) {
        self.fs.cache().end_fetch(self.key);
        self.fs.cache_cv.notify_all();
    }
}
