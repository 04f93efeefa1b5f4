//! One inode as the namespace holds it, and the types persisted with it in
//! records and checkpoints: its kind, attributes and timestamps.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::data::ChunkMap;

use super::name::deserialize_entries;
pub use super::name::{Entries, Name};
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
/// Packed to 8 bytes (not 16): every inode holds four, and ten million
/// inodes are in memory at once. The seconds are the high 34 bits
/// (signed), the nanoseconds the low 30, so the integer order is the time
/// order. 34-bit seconds span 1697 to 2242; times outside are clamped to
/// that span, as ext4 clamps to its own (1901 to 2446). Persisted as
/// (i64 seconds, u32 nanoseconds), as before: the format does not change.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(from = "WireTime", into = "WireTime")]
pub struct Timestamp(i64);

const NANO_BITS: u32 = 30;
/// The span 34-bit seconds cover.
pub const MIN_SECS: i64 = -(1 << 33);
pub const MAX_SECS: i64 = (1 << 33) - 1;

#[derive(Clone, Copy, Serialize, Deserialize)]
#[serde(rename = "Timestamp")]
struct WireTime {
    secs: i64,
    nanos: u32,
}

impl From<WireTime> for Timestamp {
    fn from(w: WireTime) -> Timestamp {
        Timestamp::new(w.secs, w.nanos)
    }
}

impl From<Timestamp> for WireTime {
    fn from(t: Timestamp) -> WireTime {
        WireTime {
            secs: t.secs(),
            nanos: t.nanos(),
        }
    }
}

impl Timestamp {
    pub fn now() -> Timestamp {
        Timestamp::from(SystemTime::now())
    }

    /// Clamped into the span held (see the type); nanoseconds past a
    /// second, which only a corrupt record can carry, read as the last.
    pub fn new(secs: i64, nanos: u32) -> Timestamp {
        let (secs, nanos) = if secs < MIN_SECS {
            (MIN_SECS, 0)
        } else if secs > MAX_SECS {
            (MAX_SECS, 999_999_999)
        } else {
            (secs, nanos.min(999_999_999))
        };
        Timestamp(secs << NANO_BITS | nanos as i64)
    }

    pub fn secs(self) -> i64 {
        self.0 >> NANO_BITS
    }

    pub fn nanos(self) -> u32 {
        (self.0 & ((1 << NANO_BITS) - 1)) as u32
    }
}

impl std::fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{:09}", self.secs(), self.nanos())
    }
}

impl From<SystemTime> for Timestamp {
    fn from(t: SystemTime) -> Timestamp {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Timestamp::new(
                i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                d.subsec_nanos(),
            ),
            Err(e) => {
                let d = e.duration();
                let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
                match d.subsec_nanos() {
                    0 => Timestamp::new(-secs, 0),
                    nanos => Timestamp::new(-secs - 1, 1_000_000_000 - nanos),
                }
            }
        }
    }
}

impl From<Timestamp> for SystemTime {
    fn from(t: Timestamp) -> SystemTime {
        let (secs, nanos) = (t.secs(), t.nanos());
        if secs >= 0 {
            UNIX_EPOCH + Duration::new(secs as u64, nanos)
        } else {
            UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
                + Duration::from_nanos(nanos as u64)
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
    Dir(#[serde(deserialize_with = "deserialize_entries")] Entries),
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
            Kind::Dir => Content::Dir(Entries::new()),
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

    pub fn entries(&self) -> Option<&Entries> {
        match &self.content {
            Content::Dir(e) => Some(e),
            _ => None,
        }
    }

    pub fn entries_mut(&mut self) -> Option<&mut Entries> {
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
        assert_eq!(std::mem::size_of::<Timestamp>(), 8);
        assert_eq!(std::mem::size_of::<InodeAttr>(), 64);
        assert!(
            std::mem::size_of::<Inode>() <= 136,
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
            (4_102_444_800, 750),
            (MIN_SECS, 0),
            (MAX_SECS, 999_999_999),
        ] {
            let t = Timestamp::new(secs, nanos);
            assert_eq!((t.secs(), t.nanos()), (secs, nanos));
            let st: SystemTime = t.into();
            assert_eq!(Timestamp::from(st), t, "{secs}.{nanos}");
        }
    }

    #[test]
    fn timestamps_order_as_times_and_clamp_outside_their_span() {
        let a = Timestamp::new(-1, 999_999_999);
        let b = Timestamp::new(0, 0);
        let c = Timestamp::new(0, 1);
        assert!(a < b && b < c);
        assert_eq!(
            Timestamp::new(1 << 40, 7),
            Timestamp::new(MAX_SECS, 999_999_999)
        );
        assert_eq!(Timestamp::new(-(1 << 40), 7), Timestamp::new(MIN_SECS, 0));
        assert_eq!(Timestamp::new(5, 2_000_000_000).nanos(), 999_999_999);
    }

    /// Records and checkpoints hold (i64 seconds, u32 nanoseconds), as the
    /// 12-byte struct this replaced was persisted.
    #[test]
    fn timestamps_encode_as_before() {
        #[derive(Serialize)]
        struct Old {
            secs: i64,
            nanos: u32,
        }
        for (secs, nanos) in [(0, 0), (-1_000_000_000, 250), (4_102_444_800, 750)] {
            let bytes = postcard::to_allocvec(&Old { secs, nanos }).unwrap();
            let t = Timestamp::new(secs, nanos);
            assert_eq!(postcard::to_allocvec(&t).unwrap(), bytes);
            assert_eq!(postcard::from_bytes::<Timestamp>(&bytes).unwrap(), t);
        }
    }
}
