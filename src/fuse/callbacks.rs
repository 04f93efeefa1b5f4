//! `impl fuser::Filesystem for FuseFs`: one `match` per callback.
//!
//! Arguments the core has no use for are dropped here: macOS-only
//! `setattr` times and BSD flags, the `setxattr` position (macOS resource
//! forks), lock owners (locks are the kernel's), `read`/`write` open flags
//! (the core keeps them per handle), `copy_file_range` flags (the kernel
//! rejects nonzero ones before asking us).

use std::ffi::OsStr;
use std::io;
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
use crate::fs::{FsError, SetAttr};

/// Capabilities we ask for when the kernel offers them: concurrent lookups
/// and creates in one directory, readdirplus (with the kernel choosing
/// when), writes larger than a page, and concurrent reads of one file.
const WANTED: InitFlags = InitFlags::FUSE_PARALLEL_DIROPS
    .union(InitFlags::FUSE_DO_READDIRPLUS)
    .union(InitFlags::FUSE_READDIRPLUS_AUTO)
    .union(InitFlags::FUSE_BIG_WRITES)
    .union(InitFlags::FUSE_ASYNC_READ);

/// Largest `copy_file_range` we hand to the core: the reply carries a u32
/// byte count, and page alignment keeps the kernel's next call aligned.
const MAX_COPY: u64 = (u32::MAX as u64) & !0xfff;

/// Logs a failed call (inode number only) and returns its errno.
fn fail(op: &str, ino: INodeNo, e: &FsError) -> Errno {
    debug!("{op} ino {}: {e}", ino.0);
    errno(e)
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
        match self.fs.lookup(&caller(req), parent.0, name) {
            Ok(a) => reply.entry(&TTL, &file_attr(&a), GENERATION),
            Err(e) => reply.error(fail("lookup", parent, &e)),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.fs.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.fs.getattr(ino.0) {
            Ok(a) => reply.attr(&TTL, &file_attr(&a)),
            Err(e) => reply.error(fail("getattr", ino, &e)),
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
        match self.fs.setattr(&caller(req), ino.0, fh.map(|h| h.0), set) {
            Ok(a) => reply.attr(&TTL, &file_attr(&a)),
            Err(e) => reply.error(fail("setattr", ino, &e)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.fs.readlink(ino.0) {
            Ok(target) => reply.data(&target),
            Err(e) => reply.error(fail("readlink", ino, &e)),
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
        match self
            .fs
            .mknod(&caller(req), parent.0, name, mode, umask, rdev)
        {
            Ok(a) => reply.entry(&TTL, &file_attr(&a), GENERATION),
            Err(e) => reply.error(fail("mknod", parent, &e)),
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
        match self.fs.mkdir(&caller(req), parent.0, name, mode, umask) {
            Ok(a) => reply.entry(&TTL, &file_attr(&a), GENERATION),
            Err(e) => reply.error(fail("mkdir", parent, &e)),
        }
    }

    fn unlink(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.fs.unlink(&caller(req), parent.0, name) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(fail("unlink", parent, &e)),
        }
    }

    fn rmdir(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.fs.rmdir(&caller(req), parent.0, name) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(fail("rmdir", parent, &e)),
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
        match self
            .fs
            .symlink(&caller(req), parent.0, link_name, target.as_os_str())
        {
            Ok(a) => reply.entry(&TTL, &file_attr(&a), GENERATION),
            Err(e) => reply.error(fail("symlink", parent, &e)),
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
        let c = caller(req);
        match self
            .fs
            .rename(&c, parent.0, name, newparent.0, newname, flags.bits())
        {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(fail("rename", parent, &e)),
        }
    }

    fn link(
        &self,
        req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        match self.fs.link(&caller(req), ino.0, newparent.0, newname) {
            Ok(a) => reply.entry(&TTL, &file_attr(&a), GENERATION),
            Err(e) => reply.error(fail("link", ino, &e)),
        }
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        match self.fs.open(&caller(req), ino.0, flags.0) {
            Ok(o) => reply.opened(FileHandle(o.fh), fopen_flags(&o)),
            Err(e) => reply.error(fail("open", ino, &e)),
        }
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
        match self.fs.read(ino.0, fh.0, offset, size) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(fail("read", ino, &e)),
        }
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
        match self.fs.write(&caller(req), ino.0, fh.0, offset, data) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(fail("write", ino, &e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        match self.fs.flush(ino.0, fh.0) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(fail("flush", ino, &e)),
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
        match self.fs.release(ino.0, fh.0) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(fail("release", ino, &e)),
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
        match self.fs.fsync(ino.0, fh.0, datasync) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(fail("fsync", ino, &e)),
        }
    }

    fn opendir(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        match self.fs.opendir(&caller(req), ino.0, flags.0) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(fail("opendir", ino, &e)),
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
        match self
            .fs
            .readdir(ino.0, fh.0, offset, &mut DirOut(&mut reply))
        {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(fail("readdir", ino, &e)),
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
        match self
            .fs
            .readdirplus(ino.0, fh.0, offset, &mut DirPlusOut(&mut reply))
        {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(fail("readdirplus", ino, &e)),
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
        match self.fs.releasedir(ino.0, fh.0) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(fail("releasedir", ino, &e)),
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
        match self.fs.fsyncdir(ino.0, fh.0, datasync) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(fail("fsyncdir", ino, &e)),
        }
    }

    fn statfs(&self, _req: &Request, ino: INodeNo, reply: ReplyStatfs) {
        match self.fs.statfs() {
            Ok(s) => reply.statfs(
                s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.bsize, s.namelen, s.frsize,
            ),
            Err(e) => reply.error(fail("statfs", ino, &e)),
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
        match self.fs.setxattr(&caller(req), ino.0, name, value, flags) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(fail("setxattr", ino, &e)),
        }
    }

    fn getxattr(&self, req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        match self.fs.getxattr(&caller(req), ino.0, name) {
            Ok(value) => reply_xattr(reply, size, &value),
            Err(e) => reply.error(fail("getxattr", ino, &e)),
        }
    }

    fn listxattr(&self, req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        match self.fs.listxattr(&caller(req), ino.0) {
            Ok(names) => reply_xattr(reply, size, &names),
            Err(e) => reply.error(fail("listxattr", ino, &e)),
        }
    }

    fn removexattr(&self, req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.fs.removexattr(&caller(req), ino.0, name) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(fail("removexattr", ino, &e)),
        }
    }

    fn access(&self, req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        match self.fs.access(&caller(req), ino.0, mask.bits()) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(fail("access", ino, &e)),
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
        match self
            .fs
            .create(&caller(req), parent.0, name, mode, umask, flags)
        {
            Ok((a, o)) => reply.created(
                &TTL,
                &file_attr(&a),
                GENERATION,
                FileHandle(o.fh),
                fopen_flags(&o),
            ),
            Err(e) => reply.error(fail("create", parent, &e)),
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
        match self
            .fs
            .fallocate(&caller(req), ino.0, fh.0, offset, length, mode)
        {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(fail("fallocate", ino, &e)),
        }
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
        match self.fs.lseek(ino.0, fh.0, offset, whence) {
            Ok(off) => reply.offset(off),
            Err(e) => reply.error(fail("lseek", ino, &e)),
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
        let copied = self.fs.copy_file_range(
            &c, ino_in.0, fh_in.0, offset_in, ino_out.0, fh_out.0, offset_out, len,
        );
        match copied {
            // The core copies at most `len` ≤ MAX_COPY bytes: the cast is exact.
            Ok(n) => reply.written(n.min(MAX_COPY) as u32),
            Err(e) => reply.error(fail("copy_file_range", ino_out, &e)),
        }
    }
}
