//! One inode as the namespace holds it, and the types persisted with it in
//! records and checkpoints: its kind, attributes and timestamps.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::data::ChunkMap;

pub use super::xattrs::Xattrs;

/// What an inode is; persisted in every `Record::Inode` (postcard encodes
/// the variant index, so the order below is part of the format).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Fifo,
    Socket,
    CharDev,
    BlockDev,
}

impl Kind {
    /// From the `S_IFMT` bits of a mode.
    pub fn from_mode(mode: u32) -> Option<Kind> {
        match mode & libc::S_IFMT {
            libc::S_IFREG => Some(Kind::File),
            libc::S_IFDIR => Some(Kind::Dir),
            libc::S_IFLNK => Some(Kind::Symlink),
            libc::S_IFIFO => Some(Kind::Fifo),
            libc::S_IFSOCK => Some(Kind::Socket),
            libc::S_IFCHR => Some(Kind::CharDev),
            libc::S_IFBLK => Some(Kind::BlockDev),
            _ => None,
        }
    }
}

/// Seconds and nanoseconds since the Unix epoch; negative seconds are
/// times before 1970 (`touch -d 1960-01-01` works as on ext4).
///
/// Packed to 12 bytes (not 16): every inode holds four, and ten million
/// inodes are in memory at once. Fields are read by value, never borrowed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[repr(C, packed(4))]
pub struct Timestamp {
    pub secs: i64,
    pub nanos: u32,
}

impl Timestamp {
    pub fn now() -> Timestamp {
        Timestamp::from(SystemTime::now())
    }
}

impl From<SystemTime> for Timestamp {
    fn from(t: SystemTime) -> Timestamp {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Timestamp {
                secs: d.as_secs() as i64,
                nanos: d.subsec_nanos(),
            },
            Err(e) => {
                let d = e.duration();
                let (secs, nanos) = (d.as_secs() as i64, d.subsec_nanos());
                if nanos == 0 {
                    Timestamp {
                        secs: -secs,
                        nanos: 0,
                    }
                } else {
                    Timestamp {
                        secs: -secs - 1,
                        nanos: 1_000_000_000 - nanos,
                    }
                }
            }
        }
    }
}

impl From<Timestamp> for SystemTime {
    fn from(t: Timestamp) -> SystemTime {
        if t.secs >= 0 {
            UNIX_EPOCH + Duration::new(t.secs as u64, t.nanos)
        } else {
            UNIX_EPOCH - Duration::from_secs(t.secs.unsigned_abs())
                + Duration::from_nanos(t.nanos as u64)
        }
    }
}

/// The persisted attributes of an inode; `Record::Inode` carries it whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InodeAttr {
    pub kind: Kind,
    pub perm: u16,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u32,
    pub size: u64,
    pub atime: Timestamp,
    pub mtime: Timestamp,
    pub ctime: Timestamp,
    pub crtime: Timestamp,
}

impl InodeAttr {
    pub fn new(kind: Kind, perm: u16, uid: u32, gid: u32) -> InodeAttr {
        let now = Timestamp::now();
        InodeAttr {
            kind,
            perm,
            nlink: if kind == Kind::Dir { 2 } else { 1 },
            uid,
            gid,
            rdev: 0,
            size: 0,
            atime: now,
            mtime: now,
            ctime: now,
            crtime: now,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Content {
    #[default]
    None,
    Dir(BTreeMap<Box<[u8]>, u64>),
    Symlink(Vec<u8>),
    File(ChunkMap),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inode {
    pub attr: InodeAttr,
    pub xattrs: Xattrs,
    pub content: Content,
    /// A parent directory, for audit paths; derived, not journaled.
    #[serde(skip)]
    pub parent: u64,
}

impl Inode {
    pub fn new(attr: InodeAttr) -> Inode {
        let content = match attr.kind {
            Kind::Dir => Content::Dir(BTreeMap::new()),
            Kind::Symlink => Content::Symlink(Vec::new()),
            Kind::File => Content::File(ChunkMap::default()),
            Kind::Fifo | Kind::Socket | Kind::CharDev | Kind::BlockDev => Content::None,
        };
        Inode {
            attr,
            xattrs: Xattrs::default(),
            content,
            parent: 0,
        }
    }

    pub fn entries(&self) -> Option<&BTreeMap<Box<[u8]>, u64>> {
        match &self.content {
            Content::Dir(e) => Some(e),
            _ => None,
        }
    }

    pub fn entries_mut(&mut self) -> Option<&mut BTreeMap<Box<[u8]>, u64>> {
        match &mut self.content {
            Content::Dir(e) => Some(e),
            _ => None,
        }
    }

    pub fn chunks(&self) -> Option<&ChunkMap> {
        match &self.content {
            Content::File(m) => Some(m),
            _ => None,
        }
    }

    pub fn chunks_mut(&mut self) -> Option<&mut ChunkMap> {
        match &mut self.content {
            Content::File(m) => Some(m),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ten million of these are held at once: growing one is a decision.
    #[test]
    fn inode_stays_compact() {
        assert_eq!(std::mem::size_of::<Timestamp>(), 12);
        assert_eq!(std::mem::size_of::<InodeAttr>(), 80);
        assert!(
            std::mem::size_of::<Inode>() <= 152,
            "{}",
            std::mem::size_of::<Inode>()
        );
        assert_eq!(
            std::mem::size_of::<Option<Inode>>(),
            std::mem::size_of::<Inode>()
        );
    }

    #[test]
    fn timestamps_round_trip_before_and_after_epoch() {
        for (secs, nanos) in [
            (0, 0),
            (1, 5),
            (-1, 0),
            (-1, 999_999_999),
            (-100, 1),
            (1 << 40, 7),
        ] {
            let t = Timestamp { secs, nanos };
            let st: SystemTime = t.into();
            assert_eq!(Timestamp::from(st), t, "{secs}.{nanos}");
        }
    }
}
