//! Value conversions between the core's plain types and fuser's: pure
//! functions, no decisions beyond a field-for-field mapping.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileType, FopenFlags, Generation, INodeNo, ReplyDirectory, ReplyDirectoryPlus,
    ReplyXattr, Request, TimeOrNow,
};

use super::TTL;
use crate::fs::{Attr, Caller, DirPlusReplier, DirReplier, FsError, Kind, Opened, TimeSet};

/// `stat`'s `st_blksize`: the preferred I/O size userspace sees.
const BLKSIZE: u32 = 4096;

/// Inode generation: the core never reuses an inode number within a
/// volume, so the generation is constant.
pub(super) const GENERATION: Generation = Generation(0);

pub(super) fn caller(req: &Request) -> Caller {
    Caller {
        uid: req.uid(),
        gid: req.gid(),
        pid: req.pid(),
    }
}

/// The errno the kernel sees; decided by `FsError::errno`, nowhere else.
pub(super) fn errno(e: &FsError) -> Errno {
    Errno::from_i32(e.errno())
}

pub(super) fn file_type(kind: Kind) -> FileType {
    match kind {
        Kind::File => FileType::RegularFile,
        Kind::Dir => FileType::Directory,
        Kind::Symlink => FileType::Symlink,
        Kind::Fifo => FileType::NamedPipe,
        Kind::Socket => FileType::Socket,
        Kind::CharDev => FileType::CharDevice,
        Kind::BlockDev => FileType::BlockDevice,
    }
}

pub(super) fn file_attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.blocks,
        atime: a.atime,
        mtime: a.mtime,
        ctime: a.ctime,
        crtime: a.crtime,
        kind: file_type(a.kind),
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev,
        blksize: BLKSIZE,
        flags: 0,
    }
}

pub(super) fn time_set(t: TimeOrNow) -> TimeSet {
    match t {
        TimeOrNow::Now => TimeSet::Now,
        TimeOrNow::SpecificTime(at) => TimeSet::At(kernel_time(at)),
    }
}

/// Undoes fuser 0.18's decoding of a pre-1970 time from the kernel: it
/// builds `(sec, nsec)` with `sec < 0` as `EPOCH - (|sec| + nsec)` where the
/// kernel means `EPOCH - |sec| + nsec`. Since `nsec < 1 s`, the two parts
/// come back out of the wrong value exactly.
pub(super) fn kernel_time(at: SystemTime) -> SystemTime {
    match UNIX_EPOCH.duration_since(at) {
        Ok(before) if before.subsec_nanos() != 0 => {
            UNIX_EPOCH - Duration::from_secs(before.as_secs())
                + Duration::from_nanos(u64::from(before.subsec_nanos()))
        }
        _ => at,
    }
}

pub(super) fn fopen_flags(o: &Opened) -> FopenFlags {
    if o.keep_cache {
        FopenFlags::FOPEN_KEEP_CACHE
    } else {
        FopenFlags::empty()
    }
}

/// Answers `getxattr`/`listxattr` by the xattr(7) size protocol: size 0
/// asks for the length, a buffer too small gets `ERANGE`.
pub(super) fn reply_xattr(reply: ReplyXattr, size: u32, value: &[u8]) {
    match u32::try_from(value.len()) {
        Err(_) => reply.error(Errno::E2BIG),
        Ok(len) if size == 0 => reply.size(len),
        Ok(len) if len > size => reply.error(Errno::ERANGE),
        Ok(_) => reply.data(value),
    }
}

/// [`DirReplier`] over fuser's readdir buffer.
pub(super) struct DirOut<'a>(pub(super) &'a mut ReplyDirectory);

impl DirReplier for DirOut<'_> {
    fn add(&mut self, ino: u64, next_offset: u64, kind: Kind, name: &[u8]) -> bool {
        self.0.add(
            INodeNo(ino),
            next_offset,
            file_type(kind),
            OsStr::from_bytes(name),
        )
    }
}

/// [`DirPlusReplier`] over fuser's readdirplus buffer.
pub(super) struct DirPlusOut<'a>(pub(super) &'a mut ReplyDirectoryPlus);

impl DirPlusReplier for DirPlusOut<'_> {
    fn add(&mut self, next_offset: u64, name: &[u8], attr: &Attr) -> bool {
        self.0.add(
            INodeNo(attr.ino),
            next_offset,
            OsStr::from_bytes(name),
            &TTL,
            &file_attr(attr),
            GENERATION,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attr_maps_field_for_field() {
        let t = |s| UNIX_EPOCH + Duration::from_secs(s);
        let a = Attr {
            ino: 42,
            kind: Kind::Symlink,
            perm: 0o1755,
            nlink: 3,
            uid: 1000,
            gid: 100,
            rdev: 7,
            size: 12345,
            blocks: 32,
            atime: t(1),
            mtime: t(2),
            ctime: t(3),
            crtime: t(4),
        };
        let f = file_attr(&a);
        assert_eq!(f.ino, INodeNo(42));
        assert_eq!(f.kind, FileType::Symlink);
        assert_eq!(
            (f.perm, f.nlink, f.uid, f.gid, f.rdev),
            (0o1755, 3, 1000, 100, 7)
        );
        assert_eq!((f.size, f.blocks, f.blksize), (12345, 32, 4096));
        assert_eq!(
            (f.atime, f.mtime, f.ctime, f.crtime),
            (t(1), t(2), t(3), t(4))
        );
    }

    #[test]
    fn times_and_open_flags() {
        assert_eq!(time_set(TimeOrNow::Now), TimeSet::Now);
        let at = SystemTime::now();
        assert_eq!(time_set(TimeOrNow::SpecificTime(at)), TimeSet::At(at));
    }

    #[test]
    fn pre_1970_times_from_the_kernel_are_repaired() {
        // The kernel's (-2, 250_000_000) is 1.75 s before the epoch;
        // fuser hands over 2.25 s before it.
        let from_fuser = UNIX_EPOCH - Duration::new(2, 250_000_000);
        assert_eq!(
            kernel_time(from_fuser),
            UNIX_EPOCH - Duration::from_millis(1750)
        );
        for exact in [
            UNIX_EPOCH - Duration::from_secs(86_400),
            UNIX_EPOCH,
            UNIX_EPOCH + Duration::new(1, 5),
        ] {
            assert_eq!(kernel_time(exact), exact);
        }
        let keep = Opened {
            fh: 1,
            keep_cache: true,
        };
        assert_eq!(fopen_flags(&keep), FopenFlags::FOPEN_KEEP_CACHE);
        let fresh = Opened {
            fh: 1,
            keep_cache: false,
        };
        assert!(fopen_flags(&fresh).is_empty());
    }

    #[test]
    fn errno_comes_from_the_core() {
        assert_eq!(errno(&FsError::NotFound).code(), libc::ENOENT);
        assert_eq!(errno(&FsError::NotSupported).code(), libc::EOPNOTSUPP);
        assert_eq!(errno(&FsError::Corrupt("x".into())).code(), libc::EIO);
    }
}
