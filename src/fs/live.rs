//! Attributes ahead of the journal, and open counts.
//!
//! The engine's tree is exactly the journaled state. A write changes a
//! file at once for its callers (size, mtime, ctime) but may be journaled
//! only later: its size must never be journaled past data that is still in
//! the cache, or a crash would show a file longer than its durable bytes.
//! Those live values wait here ([`Live`]) and every attribute callers see
//! is the tree's with them laid over ([`Fs::attr_of`]).
//!
//! Rules:
//! - A `Record::Inode` for a file with live values carries its live times
//!   and a size clamped to the first chunk still dirty (never below the
//!   size already journaled); once the clamp reaches the live size the
//!   live entry goes.
//! - An explicit size (truncate) is journaled as given and ends the entry.

use std::collections::HashMap;

use super::{Attr, Fs, FsError, FsResult, Kind, Locked};
use crate::meta::{InodeAttr, Record, Timestamp};

/// State under the `core` lock.
#[derive(Default)]
pub(crate) struct Core {
    /// Open handles per inode.
    pub opens: HashMap<u64, u32>,
    /// Files whose attributes ran ahead of the journal.
    pub live: HashMap<u64, Live>,
}

/// A file's attributes as callers see them, where they differ from the
/// journal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Live {
    pub size: u64,
    pub mtime: Timestamp,
    pub ctime: Timestamp,
}

impl Fs {
    /// The persisted attributes of `ino` as callers see them now.
    pub(crate) fn inode_attr(&self, l: &Locked<'_>, ino: u64) -> FsResult<InodeAttr> {
        let mut attr = l.ns().get(ino).ok_or(FsError::NotFound)?.attr;
        if let Some(live) = l.live.get(&ino) {
            attr.size = live.size;
            attr.mtime = live.mtime;
            attr.ctime = live.ctime;
        }
        Ok(attr)
    }

    /// What `stat` reports for `ino`.
    pub(crate) fn attr_of(&self, l: &Locked<'_>, ino: u64) -> FsResult<Attr> {
        let inode = l.ns().get(ino).ok_or(FsError::NotFound)?;
        let a = self.inode_attr(l, ino)?;
        let mut blocks = match a.kind {
            Kind::File => inode.chunks().map_or(0, |m| m.stored_plain_bytes()),
            Kind::Symlink | Kind::Dir => a.size,
            _ => 0,
        }
        .div_ceil(512);
        if let Some(map) = inode.chunks() {
            let dirty_unmapped = self
                .cache()
                .dirty_bytes_where(ino, |c| map.get(c).is_none());
            blocks += dirty_unmapped.div_ceil(512);
        }
        Ok(to_attr(ino, &a, blocks))
    }

    /// A write reached `end` at `now`: the file shows it at once.
    pub(crate) fn note_write(&self, l: &mut Locked<'_>, ino: u64, end: u64, now: Timestamp) {
        let Ok(attr) = self.inode_attr(l, ino) else {
            return;
        };
        l.live.insert(
            ino,
            Live {
                size: attr.size.max(end),
                mtime: now,
                ctime: now,
            },
        );
    }

    /// The `Inode` record for `ino` as it is now, size clamped to what is
    /// durable.
    pub(crate) fn inode_record(&self, l: &mut Locked<'_>, ino: u64) -> Record {
        self.change_attr(l, ino, |_| {})
    }

    /// Changes `ino`'s attributes as `f` says and returns the record that
    /// journals them (size clamped to what is durable).
    pub(crate) fn change_attr(
        &self,
        l: &mut Locked<'_>,
        ino: u64,
        f: impl FnOnce(&mut InodeAttr),
    ) -> Record {
        let mut attr = self.inode_attr(l, ino).expect("caller checked the inode");
        f(&mut attr);
        let Some(live) = l.live.get(&ino).copied() else {
            return Record::Inode { ino, attr };
        };
        let journaled = l.ns().get(ino).map_or(0, |i| i.attr.size);
        let durable_end = match self.cache().first_dirty(ino) {
            Some(c) => c * self.chunk_size as u64,
            None => u64::MAX,
        };
        let size = journaled.max(live.size.min(durable_end));
        if size >= live.size {
            l.live.remove(&ino);
        } else {
            l.live.insert(
                ino,
                Live {
                    size: live.size,
                    mtime: attr.mtime,
                    ctime: attr.ctime,
                },
            );
        }
        attr.size = size;
        Record::Inode { ino, attr }
    }
}

fn to_attr(ino: u64, a: &InodeAttr, blocks: u64) -> Attr {
    Attr {
        ino,
        kind: a.kind,
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev,
        size: a.size,
        blocks,
        atime: a.atime.into(),
        mtime: a.mtime.into(),
        ctime: a.ctime.into(),
        crtime: a.crtime.into(),
    }
}
