//! `impl fuser::Filesystem for FuseFs`: one `match` per callback.
//!
//! Arguments the core has no use for are dropped here: macOS-only
//! `setattr` times and BSD flags, the `setxattr` position (macOS resource
//! forks), lock owners (locks are the kernel's), `read`/`write` open flags
//! (the core keeps them per handle), `copy_file_range` flags (the kernel
//! rejects nonzero ones before asking us).

use std::ffi::OsStr;
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::time::SystemTime;

use fuser::{
    AccessFlags, BsdFileFlags, CopyFileRangeFlags, Errno, FileHandle, Filesystem, FopenFlags,
    INodeNo, InitFlags, IoctlFlags, KernelConfig, LockOwner, OpenFlags, PollEvents, PollFlags,
    PollNotifier, RenameFlags, ReplyAttr, ReplyBmap, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyIoctl, ReplyLock, ReplyLseek, ReplyOpen,
    ReplyPoll, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use log::{debug, error, info};

use super::convert::{
    DirOut, DirPlusOut, GENERATION, caller, errno, file_attr, fopen_flags, kernel_time,
    reply_xattr, time_set,
};
use super::{FuseFs, MAX_BACKGROUND, TTL};
use crate::fs::{Fs, FsResult, SetAttr};

/// Capabilities we ask for when the kernel offers them: concurrent lookups
/// and creates in one directory, readdirplus (with the kernel choosing
/// when), writes larger than a page, and concurrent reads of one file.
const WANTED: InitFlags = InitFlags::FUSE_PARALLEL_DIROPS
    .union(InitFlags::FUSE_DO_READDIRPLUS)
    .union(InitFlags::FUSE_READDIRPLUS_AUTO)
    .union(InitFlags::FUSE_BIG_WRITES)
    .union(InitFlags::FUSE_ASYNC_READ);

/// What a locked mount still does: let go of what was open.
const CLOSING: &[&str] = &["flush", "release", "releasedir"];

/// Largest `copy_file_range` we hand to the core: the reply carries a u32
/// byte count, and page alignment keeps the kernel's next call aligned.
const MAX_COPY: u64 = (u32::MAX as u64) & !0xfff;

/// Calls the core for `op` on `ino`: a failure is logged (inode number
/// only) and becomes its errno; a panic is logged and becomes EIO for this
/// request alone, never a wedged mount. A locked mount answers EACCES to
/// everything but closing what is open.
fn call<T>(fs: &Fs, op: &str, ino: INodeNo, f: impl FnOnce() -> FsResult<T>) -> Result<T, Errno> {
    fs.note_activity();
    if fs.is_locked() && !CLOSING.contains(&op) {
        fs.refused_while_locked();
        return Err(Errno::EACCES);
    }
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => {
            debug!("{op} ino {}: {e}", ino.0);
            Err(errno(&e))
        }
        Err(_) => {
            error!("{op} ino {}: panicked; answered EIO", ino.0);
            Err(Errno::EIO)
        }
    }
}

impl Filesystem for FuseFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        let offered = config.capabilities() & WANTED;
        // Cannot fail: `offered` is a subset of what the kernel offers.
        let _ = config.add_capabilities(offered);
        // Each setter refuses a too-large value by naming the largest one.
        if let Err(max) = config.set_max_write(u32::MAX) {
            let _ = config.set_max_write(max);
        }
        if let Err(max) = config.set_max_readahead(u32::MAX) {
            let _ = config.set_max_readahead(max);
        }
        let _ = config.set_max_background(MAX_BACKGROUND);
        info!(
            "FUSE init: kernel ABI {:?}, capabilities {:#x}",
            config.kernel_abi(),
            offered.bits()
        );
        Ok(())
    }

    fn destroy(&mut self) {
        let result = self.fs.shutdown();
        if let Err(e) = &result {
            error!("shutdown failed, changes may not be committed: {e}");
        }
        self.record_shutdown(result);
    }

    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match call(&self.fs, "lookup", parent, || {
            self.fs.lookup(&caller(req), parent.0, name)
        }) {
            Ok(a) => reply.entry(&TTL, &file_attr(&a), GENERATION),
            Err(errno) => reply.error(errno),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.fs.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match call(&self.fs, "getattr", ino, || self.fs.getattr(ino.0)) {
            Ok(a) => reply.attr(&TTL, &file_attr(&a)),
            Err(errno) => reply.error(errno),
        }
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let set = SetAttr {
            mode,
            uid,
            gid,
            size,
            atime: atime.map(time_set),
            mtime: mtime.map(time_set),
            ctime: ctime.map(kernel_time),
        };
        let (c, fh) = (caller(req), fh.map(|h| h.0));
        // A size change takes the file's data lock, which a writer may
        // hold across a store read.
        self.maybe_offload(size.is_some(), move |fs| {
            match call(fs, "setattr", ino, || fs.setattr(&c, ino.0, fh, set)) {
                Ok(a) => reply.attr(&TTL, &file_attr(&a)),
                Err(errno) => reply.error(errno),
            }
        });
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match call(&self.fs, "readlink", ino, || self.fs.readlink(ino.0)) {
            Ok(target) => reply.data(&target),
            Err(errno) => reply.error(errno),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        match call(&self.fs, "mknod", parent, || {
            self.fs
                .mknod(&caller(req), parent.0, name, mode, umask, rdev)
        }) {
            Ok(a) => reply.entry(&TTL, &file_attr(&a), GENERATION),
            Err(errno) => reply.error(errno),
        }
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        match call(&self.fs, "mkdir", parent, || {
            self.fs.mkdir(&caller(req), parent.0, name, mode, umask)
        }) {
            Ok(a) => reply.entry(&TTL, &file_attr(&a), GENERATION),
            Err(errno) => reply.error(errno),
        }
    }

    fn unlink(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match call(&self.fs, "unlink", parent, || {
            self.fs.unlink(&caller(req), parent.0, name)
        }) {
            Ok(()) => reply.ok(),
            Err(errno) => reply.error(errno),
        }
    }

    fn rmdir(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match call(&self.fs, "rmdir", parent, || {
            self.fs.rmdir(&caller(req), parent.0, name)
        }) {
            Ok(()) => reply.ok(),
            Err(errno) => reply.error(errno),
        }
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        match call(&self.fs, "symlink", parent, || {
            self.fs
                .symlink(&caller(req), parent.0, link_name, target.as_os_str())
        }) {
            Ok(a) => reply.entry(&TTL, &file_attr(&a), GENERATION),
            Err(errno) => reply.error(errno),
        }
    }

    fn rename(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        // A rename over a file first uploads the source's data.
        let (c, name, newname) = (caller(req), name.to_owned(), newname.to_owned());
        self.offload(move |fs| {
            match call(fs, "rename", parent, || {
                fs.rename(&c, parent.0, &name, newparent.0, &newname, flags.bits())
            }) {
                Ok(()) => reply.ok(),
                Err(errno) => reply.error(errno),
            }
        });
    }

    fn link(
        &self,
        req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        match call(&self.fs, "link", ino, || {
            self.fs.link(&caller(req), ino.0, newparent.0, newname)
        }) {
            Ok(a) => reply.entry(&TTL, &file_attr(&a), GENERATION),
            Err(errno) => reply.error(errno),
        }
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let c = caller(req);
        // O_TRUNC truncates, under the file's data lock.
        self.maybe_offload(flags.0 & libc::O_TRUNC != 0, move |fs| {
            match call(fs, "open", ino, || fs.open(&c, ino.0, flags.0)) {
                Ok(o) => reply.opened(FileHandle(o.fh), fopen_flags(&o)),
                Err(errno) => reply.error(errno),
            }
        });
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        // From memory when every chunk is cached; else on a pool thread.
        match call(&self.fs, "read", ino, || {
            self.fs.read_cached(ino.0, fh.0, offset, size)
        }) {
            Ok(Some(data)) => return reply.data(&data),
            Err(errno) => return reply.error(errno),
            Ok(None) => {}
        }
        self.offload(move |fs| {
            match call(fs, "read", ino, || fs.read(ino.0, fh.0, offset, size)) {
                Ok(data) => reply.data(&data),
                Err(errno) => reply.error(errno),
            }
        });
    }

    fn write(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        // A write may read the rest of a chunk from the store, or wait
        // for the writeback to make room in the cache.
        let (c, data) = (caller(req), data.to_vec());
        self.offload(move |fs| {
            match call(fs, "write", ino, || {
                fs.write(&c, ino.0, fh.0, offset, &data)
            }) {
                Ok(n) => reply.written(n),
                Err(errno) => reply.error(errno),
            }
        });
    }

    fn flush(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        match call(&self.fs, "flush", ino, || self.fs.flush(ino.0, fh.0)) {
            Ok(()) => reply.ok(),
            Err(errno) => reply.error(errno),
        }
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        match call(&self.fs, "release", ino, || self.fs.release(ino.0, fh.0)) {
            Ok(()) => reply.ok(),
            Err(errno) => reply.error(errno),
        }
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.offload(
            move |fs| match call(fs, "fsync", ino, || fs.fsync(ino.0, fh.0, datasync)) {
                Ok(()) => reply.ok(),
                Err(errno) => reply.error(errno),
            },
        );
    }

    fn opendir(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        match call(&self.fs, "opendir", ino, || {
            self.fs.opendir(&caller(req), ino.0, flags.0)
        }) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(errno) => reply.error(errno),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        match call(&self.fs, "readdir", ino, || {
            self.fs
                .readdir(ino.0, fh.0, offset, &mut DirOut(&mut reply))
        }) {
            Ok(()) => reply.ok(),
            Err(errno) => reply.error(errno),
        }
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        match call(&self.fs, "readdirplus", ino, || {
            self.fs
                .readdirplus(ino.0, fh.0, offset, &mut DirPlusOut(&mut reply))
        }) {
            Ok(()) => reply.ok(),
            Err(errno) => reply.error(errno),
        }
    }

    fn releasedir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        match call(&self.fs, "releasedir", ino, || {
            self.fs.releasedir(ino.0, fh.0)
        }) {
            Ok(()) => reply.ok(),
            Err(errno) => reply.error(errno),
        }
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.offload(move |fs| {
            match call(fs, "fsyncdir", ino, || fs.fsyncdir(ino.0, fh.0, datasync)) {
                Ok(()) => reply.ok(),
                Err(errno) => reply.error(errno),
            }
        });
    }

    fn statfs(&self, _req: &Request, ino: INodeNo, reply: ReplyStatfs) {
        match call(&self.fs, "statfs", ino, || self.fs.statfs()) {
            Ok(s) => reply.statfs(
                s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.bsize, s.namelen, s.frsize,
            ),
            Err(errno) => reply.error(errno),
        }
    }

    fn setxattr(
        &self,
        req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        match call(&self.fs, "setxattr", ino, || {
            self.fs.setxattr(&caller(req), ino.0, name, value, flags)
        }) {
            Ok(()) => reply.ok(),
            Err(errno) => reply.error(errno),
        }
    }

    fn getxattr(&self, req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        match call(&self.fs, "getxattr", ino, || {
            self.fs.getxattr(&caller(req), ino.0, name)
        }) {
            Ok(value) => reply_xattr(reply, size, &value),
            Err(errno) => reply.error(errno),
        }
    }

    fn listxattr(&self, req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        match call(&self.fs, "listxattr", ino, || {
            self.fs.listxattr(&caller(req), ino.0)
        }) {
            Ok(names) => reply_xattr(reply, size, &names),
            Err(errno) => reply.error(errno),
        }
    }

    fn removexattr(&self, req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match call(&self.fs, "removexattr", ino, || {
            self.fs.removexattr(&caller(req), ino.0, name)
        }) {
            Ok(()) => reply.ok(),
            Err(errno) => reply.error(errno),
        }
    }

    fn access(&self, req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        match call(&self.fs, "access", ino, || {
            self.fs.access(&caller(req), ino.0, mask.bits())
        }) {
            Ok(()) => reply.ok(),
            Err(errno) => reply.error(errno),
        }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        match call(&self.fs, "create", parent, || {
            self.fs
                .create(&caller(req), parent.0, name, mode, umask, flags)
        }) {
            Ok((a, o)) => reply.created(
                &TTL,
                &file_attr(&a),
                GENERATION,
                FileHandle(o.fh),
                fopen_flags(&o),
            ),
            Err(errno) => reply.error(errno),
        }
    }

    fn getlk(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        _start: u64,
        _end: u64,
        _typ: i32,
        _pid: u32,
        reply: ReplyLock,
    ) {
        // Locks are the kernel's (lock support is never negotiated).
        reply.error(Errno::ENOLCK);
    }

    fn setlk(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        _start: u64,
        _end: u64,
        _typ: i32,
        _pid: u32,
        _sleep: bool,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::ENOLCK);
    }

    fn bmap(&self, _req: &Request, _ino: INodeNo, _blocksize: u32, _idx: u64, reply: ReplyBmap) {
        // No block device below us.
        reply.error(Errno::EINVAL);
    }

    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: ReplyIoctl,
    ) {
        // "Inappropriate ioctl for device", what ext4 says to unknown ones.
        reply.error(Errno::ENOTTY);
    }

    fn poll(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _ph: PollNotifier,
        _events: PollEvents,
        _flags: PollFlags,
        reply: ReplyPoll,
    ) {
        // Regular files are always ready; the kernel masks by the events
        // the caller asked for.
        reply.poll(
            PollEvents::POLLIN
                | PollEvents::POLLRDNORM
                | PollEvents::POLLOUT
                | PollEvents::POLLWRNORM,
        );
    }

    fn fallocate(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        // Punching or zeroing part of a chunk reads the rest of it.
        let c = caller(req);
        self.offload(move |fs| {
            match call(fs, "fallocate", ino, || {
                fs.fallocate(&c, ino.0, fh.0, offset, length, mode)
            }) {
                Ok(()) => reply.ok(),
                Err(errno) => reply.error(errno),
            }
        });
    }

    fn lseek(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: i64,
        whence: i32,
        reply: ReplyLseek,
    ) {
        match call(&self.fs, "lseek", ino, || {
            self.fs.lseek(ino.0, fh.0, offset, whence)
        }) {
            Ok(off) => reply.offset(off),
            Err(errno) => reply.error(errno),
        }
    }

    fn copy_file_range(
        &self,
        req: &Request,
        ino_in: INodeNo,
        fh_in: FileHandle,
        offset_in: u64,
        ino_out: INodeNo,
        fh_out: FileHandle,
        offset_out: u64,
        len: u64,
        _flags: CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        let c = caller(req);
        let len = len.min(MAX_COPY);
        self.offload(move |fs| {
            let copied = call(fs, "copy_file_range", ino_out, || {
                fs.copy_file_range(
                    &c, ino_in.0, fh_in.0, offset_in, ino_out.0, fh_out.0, offset_out, len,
                )
            });
            match copied {
                // The core copies at most `len` ≤ MAX_COPY bytes: the cast is exact.
                Ok(n) => reply.written(n.min(MAX_COPY) as u32),
                Err(errno) => reply.error(errno),
            }
        });
    }
}
