//! Plain values exchanged between the filesystem core and its callers
//! (the FUSE adapter, tests). Nothing here knows about the kernel.

use std::time::SystemTime;

/// Who made a call; carried into every `Fs` method for permission rules
/// and the audit trail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    pub pid: u32,
}

impl Caller {
    pub const ROOT: Caller = Caller {
        uid: 0,
        gid: 0,
        pid: 0,
    };

    pub fn is_root(&self) -> bool {
        self.uid == 0
    }

    /// The calling process's name (`/proc/PID/comm`), for the audit
    /// trail; resolved only when asked, since most calls never need it.
    pub fn process_name(&self) -> Option<String> {
        let comm = std::fs::read_to_string(format!("/proc/{}/comm", self.pid)).ok()?;
        Some(comm.trim_end().to_owned())
    }
}

pub use crate::meta::Kind;

/// Attributes as `stat` reports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attr {
    pub ino: u64,
    pub kind: Kind,
    /// Permission bits including setuid/setgid/sticky (no `S_IFMT`).
    pub perm: u16,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u32,
    pub size: u64,
    /// 512-byte blocks allocated (data actually stored).
    pub blocks: u64,
    pub atime: SystemTime,
    pub mtime: SystemTime,
    pub ctime: SystemTime,
    pub crtime: SystemTime,
}

/// A time to set: a given instant or "now" (decided by the filesystem so
/// that `utimensat(UTIME_NOW)` has the permission rules of "now").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeSet {
    Now,
    At(SystemTime),
}

/// `setattr` arguments; `None` leaves a field unchanged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<TimeSet>,
    pub mtime: Option<TimeSet>,
    pub ctime: Option<SystemTime>,
}

/// The cache and handles of a mount, for `status`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub cache_budget_bytes: u64,
    pub cache_clean_bytes: u64,
    pub cache_dirty_bytes: u64,
    /// Heap held outside the cache, taken off its budget.
    pub cache_outside_bytes: u64,
    /// Dirty data is being uploaded now.
    pub uploading: bool,
    pub open_handles: u64,
}

/// What `open`/`create` tell the kernel besides the handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Opened {
    pub fh: u64,
    /// The file is unchanged since the kernel last cached it: keep the
    /// page cache (FOPEN_KEEP_CACHE).
    pub keep_cache: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatFs {
    pub blocks: u64,
    pub bfree: u64,
    pub bavail: u64,
    pub files: u64,
    pub ffree: u64,
    pub bsize: u32,
    pub namelen: u32,
    pub frsize: u32,
}

/// Receives directory entries; returns `true` when the reply buffer is full
/// (the entry was not added and listing must stop).
pub trait DirReplier {
    fn add(&mut self, ino: u64, next_offset: u64, kind: Kind, name: &[u8]) -> bool;
}

/// Like [`DirReplier`], with full attributes (readdirplus).
pub trait DirPlusReplier {
    fn add(&mut self, next_offset: u64, name: &[u8], attr: &Attr) -> bool;
}

/// Modes of `fallocate(2)` we understand, decoded from its flags.
pub const FALLOC_KEEP_SIZE: i32 = libc::FALLOC_FL_KEEP_SIZE;
pub const FALLOC_PUNCH_HOLE: i32 = libc::FALLOC_FL_PUNCH_HOLE;
pub const FALLOC_ZERO_RANGE: i32 = libc::FALLOC_FL_ZERO_RANGE;
