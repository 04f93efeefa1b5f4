//! Journal records: the deltas that move the namespace from one committed
//! state to the next.
//!
//! Records are state-based, not operation-based: each one says what an
//! inode, entry or extent *is* afterwards, so replay applies them without
//! any POSIX logic and applying one twice is harmless. The POSIX rules run
//! once, in `fs`, before the records are written.

use serde::{Deserialize, Serialize};

use super::inode::InodeAttr;
use crate::data::{Extent, PackId};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record {
    /// Creates the inode if it is new, else replaces its attributes.
    Inode {
        ino: u64,
        attr: InodeAttr,
    },
    Symlink {
        ino: u64,
        target: Vec<u8>,
    },
    /// Adds or replaces (`Some`) or removes (`None`) a directory entry.
    Dirent {
        dir: u64,
        name: Vec<u8>,
        ino: Option<u64>,
    },
    /// Sets (`Some`) or removes (`None`) an extended attribute.
    Xattr {
        ino: u64,
        name: Vec<u8>,
        value: Option<Vec<u8>>,
    },
    /// Maps `extent.count` chunks from `first` (replacing what was there).
    Chunks {
        ino: u64,
        first: u64,
        extent: Extent,
    },
    /// Unmaps chunks `first .. first + count`.
    Punch {
        ino: u64,
        first: u64,
        count: u64,
    },
    /// Drops the chunk map at and past `size` bytes.
    Truncate {
        ino: u64,
        size: u64,
    },
    /// The inode is gone (no links, no opens).
    Drop {
        ino: u64,
    },
    /// The inode has no links but is still open; the next mount drops it.
    Orphan {
        ino: u64,
    },
    /// A pack became durable.
    Pack {
        id: PackId,
        size: u64,
        units: u32,
    },
    /// A pack has no live segment left and may be deleted.
    PackGone {
        id: PackId,
    },
    /// A pack carried inside this journal segment (segment version 3): its
    /// body is exactly the sealed bytes the object `data/xx/<id>` holds once
    /// a checkpoint moves it there, so an fsync of a little data costs one
    /// PUT (the segment) instead of two.
    Carried {
        id: PackId,
        units: u32,
        body: Vec<u8>,
    },
}

impl Record {
    /// The inode whose persisted state this record changes (a `Dirent`
    /// changes its directory); `None` for pack records.
    pub fn inode(&self) -> Option<u64> {
        match self {
            Record::Inode { ino, .. }
            | Record::Symlink { ino, .. }
            | Record::Xattr { ino, .. }
            | Record::Chunks { ino, .. }
            | Record::Punch { ino, .. }
            | Record::Truncate { ino, .. }
            | Record::Drop { ino }
            | Record::Orphan { ino } => Some(*ino),
            Record::Dirent { dir, .. } => Some(*dir),
            Record::Pack { .. } | Record::PackGone { .. } | Record::Carried { .. } => None,
        }
    }

    /// Rough encoded size, for group-commit and checkpoint triggers.
    pub fn approx_size(&self) -> usize {
        match self {
            Record::Symlink { target, .. } => 16 + target.len(),
            Record::Dirent { name, .. } => 24 + name.len(),
            Record::Xattr { name, value, .. } => {
                16 + name.len() + value.as_ref().map_or(0, Vec::len)
            }
            Record::Inode { .. } => 80,
            Record::Chunks { .. } => 60,
            Record::Pack { .. } | Record::PackGone { .. } => 32,
            Record::Carried { body, .. } => 32 + body.len(),
            Record::Punch { .. }
            | Record::Truncate { .. }
            | Record::Drop { .. }
            | Record::Orphan { .. } => 20,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    /// The worked example in docs/FORMAT.md ("Journal records") must be
    /// what the encoder produces, byte for byte.
    #[test]
    fn documented_record_encoding() {
        let r = Record::Dirent {
            dir: 1,
            name: b"a.txt".to_vec(),
            ino: Some(300),
        };
        let bytes = hex(&postcard::to_allocvec(&r).unwrap());
        assert_eq!(bytes, "020105612e74787401ac02");
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/FORMAT.md"))
            .unwrap();
        assert!(
            doc.contains("02 01 05 612e747874 01 ac02"),
            "FORMAT.md shows the record bytes"
        );
    }
}
