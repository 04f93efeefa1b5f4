//! File data operations: open, write, truncate, fallocate, fsync, close
//! (reads are in `read`).
//!
//! Every data operation holds the inode's data lock (exclusive but for
//! reads) for its whole duration, including the store reads of a
//! read-modify-write; `core`, the tree and `cache` are taken only for short
//! steps in between.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use super::audit::{Opener, Paths};
use super::{Attr, Caller, Fs, FsError, FsResult, Kind, Locked, Opened};
use crate::audit::Op;
use crate::data::offsets::{chunk_len_in_file, chunk_span, chunk_start};
use crate::meta::{Record, Timestamp};

/// Largest file size (as ext4 with 4 KiB blocks: 16 TiB).
pub const MAX_FILE_SIZE: u64 = 16 << 40;

impl Fs {
    pub fn open(&self, c: &Caller, ino: u64, flags: i32) -> FsResult<Opened> {
        let at = |fs: &Fs, l: &Locked<'_>| Paths::one(fs.inode_path(l, ino));
        self.audited(c, vec![Op::Open { flags }], at, |opener| {
            self.open_file(c, ino, flags, opener)
        })
    }

    fn open_file(
        &self,
        c: &Caller,
        ino: u64,
        flags: i32,
        opener: Option<Opener>,
    ) -> FsResult<Opened> {
        let writes = flags & libc::O_ACCMODE != libc::O_RDONLY;
        if writes {
            self.check_writable()?;
        }
        let mut l = self.lock();
        match l.ns().get(ino).ok_or(FsError::NotFound)?.attr.kind {
            Kind::Dir if writes => return Err(FsError::IsDir),
            _ => {}
        }
        *l.opens.entry(ino).or_default() += 1;
        drop(l);
        if flags & libc::O_TRUNC != 0 && writes {
            self.truncate(c, ino, None, 0)?;
        }
        let fh = self.handles.insert(c, opener, flags, None);
        // We are the only writer, and every change goes through the
        // kernel, so its page cache stays valid across opens; a follower's
        // files change behind the kernel's back.
        Ok(Opened {
            fh,
            keep_cache: self.opts.follow.is_none(),
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
        let at = |fs: &Fs, l: &Locked<'_>| Paths::one(fs.entry_path(l, parent, name.as_bytes()));
        self.audited(c, vec![Op::Create { flags }], at, |opener| {
            self.create_file(c, parent, name, mode & !umask, flags, opener)
        })
    }

    fn create_file(
        &self,
        c: &Caller,
        parent: u64,
        name: &OsStr,
        perm: u32,
        flags: i32,
        opener: Option<Opener>,
    ) -> FsResult<(Attr, Opened)> {
        self.check_writable()?;
        let name = super::dir::check_name(name)?;
        let mut l = self.lock();
        let ino = match self.create_locked(&mut l, c, parent, name, Kind::File, perm, 0, None) {
            Ok(ino) => ino,
            Err(FsError::Exists) if flags & libc::O_EXCL == 0 => {
                let dir = l.ns().get(parent).ok_or(FsError::NotFound)?;
                *dir.entries()
                    .and_then(|e| e.get(name))
                    .ok_or(FsError::NotFound)?
            }
            Err(e) => return Err(e),
        };
        *l.opens.entry(ino).or_default() += 1;
        let attr = self.attr_of(&l, ino)?;
        drop(l);
        let fh = self.handles.insert(c, opener, flags, None);
        Ok((
            attr,
            Opened {
                fh,
                keep_cache: true,
            },
        ))
    }

    pub fn write(&self, _c: &Caller, ino: u64, fh: u64, offset: u64, data: &[u8]) -> FsResult<u32> {
        self.check_writable()?;
        let append = self
            .handles
            .with(fh, |h| h.flags & libc::O_APPEND != 0)
            .unwrap_or(false);
        {
            let lock = self.locks.get(ino);
            let _excl = lock.write().unwrap_or_else(|p| p.into_inner());
            let old_size = self.file_size(ino)?;
            let offset = if append { old_size } else { offset };
            let end = offset
                .checked_add(data.len() as u64)
                .ok_or(FsError::FileTooBig)?;
            if end > MAX_FILE_SIZE {
                return Err(FsError::FileTooBig);
            }
            self.write_chunks(ino, offset, data, old_size)?;
            let mut l = self.lock();
            self.note_write(&mut l, ino, end, Timestamp::now());
        }
        self.handles.with(fh, |h| h.written += data.len() as u64);
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
            // What lies past the buffer's end is appended: zeroing it first
            // would write each new chunk twice.
            let fill = |buf: &mut Vec<u8>| {
                if buf.len() < a {
                    buf.resize(a, 0);
                }
                let inside = buf.len().min(b) - a;
                buf[a..a + inside].copy_from_slice(&src[..inside]);
                buf.extend_from_slice(&src[inside..]);
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

    fn file_size(&self, ino: u64) -> FsResult<u64> {
        let attr = self.inode_attr(&self.lock(), ino)?;
        match attr.kind {
            Kind::File => Ok(attr.size),
            Kind::Dir => Err(FsError::IsDir),
            _ => Err(FsError::Invalid),
        }
    }

    /// `close(2)`: no durability promise (as ext4), but an earlier failed
    /// writeback is reported here rather than lost.
    pub fn flush(&self, _ino: u64, _fh: u64) -> FsResult<()> {
        match self.engine.sticky_failure() {
            Some(f) => Err(f.into()),
            None => Ok(()),
        }
    }

    pub fn release(&self, ino: u64, fh: u64) -> FsResult<()> {
        if let Some(h) = self.handles.remove(fh) {
            if let Some(opener) = h.opener {
                self.audit_release(&h.caller, opener, h.read, h.written);
            }
        }
        let mut l = self.lock();
        let left = match l.opens.get_mut(&ino) {
            Some(n) => {
                *n -= 1;
                *n
            }
            None => 0,
        };
        if left == 0 {
            l.opens.remove(&ino);
            if l.ns().is_orphan(ino) && !self.is_read_only() {
                self.cache().remove_inode(ino);
                l.live.remove(&ino);
                self.apply_upkeep(&mut l, vec![Record::Drop { ino }])?;
            }
        }
        Ok(())
    }

    pub fn fsync(&self, ino: u64, _fh: u64, _datasync: bool) -> FsResult<()> {
        if self.opts.read_only() {
            return Ok(());
        }
        if let Some(f) = self.engine.sticky_failure() {
            // Fenced or failed: what is committed stays so; anything still
            // in memory never will be.
            let pending = self.cache().dirty_version(ino) != 0
                || self.lock().live.contains_key(&ino)
                || self.engine.has_unacknowledged();
            return if pending { Err(f.into()) } else { Ok(()) };
        }
        self.flush_inode(ino)?;
        let id = {
            let mut l = self.lock();
            if l.ns().get(ino).is_some() {
                let r = self.inode_record(&mut l, ino);
                self.apply_upkeep(&mut l, vec![r])?
            } else {
                self.engine.appended()
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
        let _excl = lock.write().unwrap_or_else(|p| p.into_inner());
        let old = self.file_size(ino)?;
        let mut l = self.lock();
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
        let mut attr = self.inode_attr(&l, ino)?;
        l.live.remove(&ino);
        let now = Timestamp::now();
        attr.size = size;
        if size != old {
            attr.mtime = now;
        }
        attr.ctime = now;
        records.push(Record::Inode { ino, attr });
        self.apply(&mut l, records)?;
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
        let _excl = lock.write().unwrap_or_else(|p| p.into_inner());
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
        let mut l = self.lock();
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
        records.push(self.change_attr(&mut l, ino, |a| {
            a.mtime = now;
            a.ctime = now;
        }));
        self.apply(&mut l, records)?;
        Ok(())
    }

    /// SEEK_DATA / SEEK_HOLE at chunk granularity (dirty chunks are data).
    pub fn lseek(&self, ino: u64, _fh: u64, offset: i64, whence: i32) -> FsResult<i64> {
        if offset < 0 {
            return Err(FsError::NoSuchAddress);
        }
        let offset = offset as u64;
        let l = self.lock();
        let size = self.inode_attr(&l, ino)?.size;
        let inode = l.ns().get(ino).ok_or(FsError::NotFound)?;
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
