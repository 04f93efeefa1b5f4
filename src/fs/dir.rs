//! Namespace operations: lookup, create, link, unlink, rename, listing.
//!
//! Each operation checks its POSIX rules under the `core` lock, then
//! expresses the result as records and applies them in one step, so the
//! journal never holds half an operation. Access checks (search and write
//! permission, the sticky bit) are the kernel's, under
//! `default_permissions`; the rules that depend on the filesystem's own
//! state (emptiness, loops, link counts, setgid inheritance) are here.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use super::audit::Paths;
use super::handles::DirSnapshot;
use super::{Attr, Caller, DirPlusReplier, DirReplier, Fs, FsError, FsResult, Kind, Locked};
use crate::audit::Op;
use crate::meta::{InodeAttr, ROOT_INO, Record, Timestamp};

/// Longest name, as on ext4.
pub const NAME_MAX: usize = 255;
/// Most hard links to one inode.
pub const LINK_MAX: u32 = 65_000;

pub(crate) fn check_name(name: &OsStr) -> FsResult<&[u8]> {
    let b = name.as_bytes();
    if b.len() > NAME_MAX {
        return Err(FsError::NameTooLong);
    }
    if b.is_empty() || b.contains(&b'/') || b.contains(&0) {
        return Err(FsError::Invalid);
    }
    Ok(b)
}

const RENAME_NOREPLACE: u32 = libc::RENAME_NOREPLACE;
const RENAME_EXCHANGE: u32 = libc::RENAME_EXCHANGE;

impl Fs {
    pub fn lookup(&self, _c: &Caller, parent: u64, name: &OsStr) -> FsResult<Attr> {
        let name = name.as_bytes();
        if name.len() > NAME_MAX {
            return Err(FsError::NameTooLong);
        }
        let core = self.lock();
        let dir = core.ns().get(parent).ok_or(FsError::NotFound)?;
        let entries = dir.entries().ok_or(FsError::NotDir)?;
        let ino = match name {
            b"." => parent,
            b".." => dir.parent,
            _ => *entries.get(name).ok_or(FsError::NotFound)?,
        };
        if self.auditor().is_some() {
            self.names.note(parent, name, ino);
        }
        self.attr_of(&core, ino)
    }

    /// Lookup counts are not tracked: an inode lives while it has links or
    /// open handles, so `forget` has nothing to release.
    pub fn forget(&self, _ino: u64, _nlookup: u64) {}

    pub fn mknod(
        &self,
        c: &Caller,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
    ) -> FsResult<Attr> {
        let kind = Kind::from_mode(mode).ok_or(FsError::Invalid)?;
        if kind == Kind::Dir || kind == Kind::Symlink {
            return Err(FsError::Invalid);
        }
        self.create_node(c, parent, name, kind, mode & !umask, rdev, None)
    }

    pub fn mkdir(
        &self,
        c: &Caller,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
    ) -> FsResult<Attr> {
        self.create_node(c, parent, name, Kind::Dir, mode & !umask, 0, None)
    }

    pub fn symlink(&self, c: &Caller, parent: u64, name: &OsStr, target: &OsStr) -> FsResult<Attr> {
        let target = target.as_bytes();
        if target.is_empty() {
            return Err(FsError::NotFound);
        }
        if target.len() >= libc::PATH_MAX as usize {
            return Err(FsError::NameTooLong);
        }
        self.create_node(c, parent, name, Kind::Symlink, 0o777, 0, Some(target))
    }

    pub fn readlink(&self, ino: u64) -> FsResult<Vec<u8>> {
        let core = self.lock();
        match &core.ns().get(ino).ok_or(FsError::NotFound)?.content {
            crate::meta::Content::Symlink(t) => Ok(t.clone()),
            _ => Err(FsError::Invalid),
        }
    }

    /// Creates an inode and its entry; `perm` is the mode after umask.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn create_node(
        &self,
        c: &Caller,
        parent: u64,
        name: &OsStr,
        kind: Kind,
        perm: u32,
        rdev: u32,
        target: Option<&[u8]>,
    ) -> FsResult<Attr> {
        let op = match kind {
            Kind::Dir => Op::Mkdir,
            Kind::Symlink => Op::Symlink,
            _ => Op::Mknod,
        };
        let at = |fs: &Fs, l: &Locked<'_>| Paths::one(fs.entry_path(l, parent, name.as_bytes()));
        self.audited(c, vec![op], at, |_| {
            self.make_node(c, parent, name, kind, perm, rdev, target)
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn make_node(
        &self,
        c: &Caller,
        parent: u64,
        name: &OsStr,
        kind: Kind,
        perm: u32,
        rdev: u32,
        target: Option<&[u8]>,
    ) -> FsResult<Attr> {
        self.check_writable()?;
        let name = check_name(name)?;
        let mut core = self.lock();
        let ino = self.create_locked(&mut core, c, parent, name, kind, perm, rdev, target)?;
        self.attr_of(&core, ino)
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn create_locked(
        &self,
        core: &mut Locked<'_>,
        c: &Caller,
        parent: u64,
        name: &[u8],
        kind: Kind,
        perm: u32,
        rdev: u32,
        target: Option<&[u8]>,
    ) -> FsResult<u64> {
        let dir = core.ns().get(parent).ok_or(FsError::NotFound)?;
        let entries = dir.entries().ok_or(FsError::NotDir)?;
        if entries.contains_key(name) {
            return Err(FsError::Exists);
        }
        let dir_attr = dir.attr;
        if dir.attr.nlink == 0 {
            // Creating in a removed directory, as ext4.
            return Err(FsError::NotFound);
        }
        if kind == Kind::Dir && dir.attr.nlink >= LINK_MAX {
            return Err(FsError::TooManyLinks);
        }
        let mut perm = (perm & 0o7777) as u16;
        let setgid_dir = dir.attr.perm & libc::S_ISGID as u16 != 0;
        let gid = if setgid_dir { dir.attr.gid } else { c.gid };
        if setgid_dir && kind == Kind::Dir {
            perm |= libc::S_ISGID as u16;
        }
        let ino = core.txn.alloc_ino();
        let mut attr = InodeAttr::new(kind, perm, c.uid, gid);
        attr.rdev = rdev;
        let mut records = vec![Record::Inode { ino, attr }];
        if let Some(t) = target {
            attr.size = t.len() as u64;
            records.push(Record::Inode { ino, attr });
            records.push(Record::Symlink {
                ino,
                target: t.to_vec(),
            });
        }
        records.push(Record::Dirent {
            dir: parent,
            name: name.to_vec(),
            ino: Some(ino),
        });
        let mut pattr = dir_attr;
        pattr.mtime = attr.ctime;
        pattr.ctime = attr.ctime;
        if kind == Kind::Dir {
            pattr.nlink += 1;
        }
        records.push(Record::Inode {
            ino: parent,
            attr: pattr,
        });
        self.apply(core, records)?;
        Ok(ino)
    }

    pub fn link(&self, c: &Caller, ino: u64, newparent: u64, newname: &OsStr) -> FsResult<Attr> {
        let at = |fs: &Fs, l: &Locked<'_>| {
            let to = fs.entry_path(l, newparent, newname.as_bytes());
            Paths::two(fs.inode_path(l, ino), to)
        };
        self.audited(c, vec![Op::Link], at, |_| {
            self.add_link(ino, newparent, newname)
        })
    }

    fn add_link(&self, ino: u64, newparent: u64, newname: &OsStr) -> FsResult<Attr> {
        self.check_writable()?;
        let name = check_name(newname)?;
        let mut core = self.lock();
        let inode = core.ns().get(ino).ok_or(FsError::NotFound)?;
        if inode.attr.kind == Kind::Dir {
            return Err(FsError::NotPermitted);
        }
        if inode.attr.nlink >= LINK_MAX {
            return Err(FsError::TooManyLinks);
        }
        if inode.attr.nlink == 0 {
            return Err(FsError::NotFound);
        }
        let dir = core.ns().get(newparent).ok_or(FsError::NotFound)?;
        if dir.entries().ok_or(FsError::NotDir)?.contains_key(name) {
            return Err(FsError::Exists);
        }
        let now = Timestamp::now();
        let mut records = vec![Record::Dirent {
            dir: newparent,
            name: name.to_vec(),
            ino: Some(ino),
        }];
        records.push(self.touch_dir(&core, newparent, now, 0));
        records.push(self.change_attr(&mut core, ino, |a| {
            a.nlink += 1;
            a.ctime = now;
        }));
        self.apply(&mut core, records)?;
        self.attr_of(&core, ino)
    }

    pub fn unlink(&self, c: &Caller, parent: u64, name: &OsStr) -> FsResult<()> {
        let at = |fs: &Fs, l: &Locked<'_>| Paths::one(fs.entry_path(l, parent, name.as_bytes()));
        self.audited(c, vec![Op::Unlink], at, |_| self.remove_name(parent, name))
    }

    fn remove_name(&self, parent: u64, name: &OsStr) -> FsResult<()> {
        self.check_writable()?;
        let name = check_name(name)?;
        let mut core = self.lock();
        let ino = entry(&core, parent, name)?;
        if core.ns().get(ino).ok_or(FsError::NotFound)?.attr.kind == Kind::Dir {
            return Err(FsError::IsDir);
        }
        let now = Timestamp::now();
        let mut records = vec![
            Record::Dirent {
                dir: parent,
                name: name.to_vec(),
                ino: None,
            },
            self.touch_dir(&core, parent, now, 0),
        ];
        records.extend(self.unlink_inode(&mut core, ino, now));
        self.apply(&mut core, records)?;
        Ok(())
    }

    pub fn rmdir(&self, c: &Caller, parent: u64, name: &OsStr) -> FsResult<()> {
        let at = |fs: &Fs, l: &Locked<'_>| Paths::one(fs.entry_path(l, parent, name.as_bytes()));
        self.audited(c, vec![Op::Rmdir], at, |_| self.remove_dir(parent, name))
    }

    fn remove_dir(&self, parent: u64, name: &OsStr) -> FsResult<()> {
        self.check_writable()?;
        let name = name.as_bytes();
        match name {
            b"." => return Err(FsError::Invalid),
            b".." => return Err(FsError::NotEmpty),
            _ => {}
        }
        let name = check_name(OsStr::from_bytes(name))?;
        let mut core = self.lock();
        let ino = entry(&core, parent, name)?;
        let dir = core.ns().get(ino).ok_or(FsError::NotFound)?;
        if !dir.entries().ok_or(FsError::NotDir)?.is_empty() {
            return Err(FsError::NotEmpty);
        }
        let now = Timestamp::now();
        let records = vec![
            Record::Dirent {
                dir: parent,
                name: name.to_vec(),
                ino: None,
            },
            self.touch_dir(&core, parent, now, -1),
            Record::Drop { ino },
        ];
        self.apply(&mut core, records)?;
        Ok(())
    }

    pub fn rename(
        &self,
        c: &Caller,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        flags: u32,
    ) -> FsResult<()> {
        let at = |fs: &Fs, l: &Locked<'_>| {
            let to = fs.entry_path(l, newparent, newname.as_bytes());
            Paths::two(fs.entry_path(l, parent, name.as_bytes()), to)
        };
        self.audited(c, vec![Op::Rename], at, |_| {
            self.move_entry(parent, name, newparent, newname, flags)
        })
    }

    fn move_entry(
        &self,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        flags: u32,
    ) -> FsResult<()> {
        self.check_writable()?;
        if flags & !(RENAME_NOREPLACE | RENAME_EXCHANGE) != 0
            || flags & RENAME_NOREPLACE != 0 && flags & RENAME_EXCHANGE != 0
        {
            return Err(FsError::Invalid);
        }
        let name = check_name(name)?;
        let newname = check_name(newname)?;
        // An editor's atomic save (write tmp, rename over the original)
        // must never turn into an empty file after a crash: the source's
        // data goes to the store before the rename can commit.
        let (src, replaces) = {
            let core = self.lock();
            let src = entry(&core, parent, name)?;
            let replaces = entry(&core, newparent, newname).is_ok();
            (src, replaces)
        };
        if replaces {
            self.flush_inode(src)?;
        }
        let mut core = self.lock();
        let src = entry(&core, parent, name)?;
        let dst = entry(&core, newparent, newname).ok();
        core.ns()
            .get(newparent)
            .ok_or(FsError::NotFound)?
            .entries()
            .ok_or(FsError::NotDir)?;
        let src_kind = core.ns().get(src).ok_or(FsError::NotFound)?.attr.kind;
        let now = Timestamp::now();
        if flags & RENAME_EXCHANGE != 0 {
            let dst = dst.ok_or(FsError::NotFound)?;
            let dst_kind = core.ns().get(dst).ok_or(FsError::NotFound)?.attr.kind;
            if src_kind == Kind::Dir && self.is_ancestor(&core, src, newparent)
                || dst_kind == Kind::Dir && self.is_ancestor(&core, dst, parent)
            {
                return Err(FsError::Invalid);
            }
            let mut records = vec![
                Record::Dirent {
                    dir: newparent,
                    name: newname.to_vec(),
                    ino: Some(src),
                },
                Record::Dirent {
                    dir: parent,
                    name: name.to_vec(),
                    ino: Some(dst),
                },
            ];
            let delta = (src_kind == Kind::Dir) as i32 - (dst_kind == Kind::Dir) as i32;
            if parent != newparent {
                records.push(self.touch_dir(&core, parent, now, -delta));
                records.push(self.touch_dir(&core, newparent, now, delta));
            } else {
                records.push(self.touch_dir(&core, parent, now, 0));
            }
            records.push(self.change_attr(&mut core, src, |a| a.ctime = now));
            records.push(self.change_attr(&mut core, dst, |a| a.ctime = now));
            self.apply(&mut core, records)?;
            return Ok(());
        }
        if let Some(dst) = dst {
            if flags & RENAME_NOREPLACE != 0 {
                return Err(FsError::Exists);
            }
            if dst == src {
                return Ok(());
            }
            let d = core.ns().get(dst).ok_or(FsError::NotFound)?;
            match (src_kind == Kind::Dir, d.attr.kind == Kind::Dir) {
                (true, false) => return Err(FsError::NotDir),
                (false, true) => return Err(FsError::IsDir),
                (true, true) if !d.entries().is_some_and(|e| e.is_empty()) => {
                    return Err(FsError::NotEmpty);
                }
                _ => {}
            }
        }
        if src_kind == Kind::Dir && self.is_ancestor(&core, src, newparent) {
            return Err(FsError::Invalid);
        }
        let mut records = vec![
            Record::Dirent {
                dir: parent,
                name: name.to_vec(),
                ino: None,
            },
            Record::Dirent {
                dir: newparent,
                name: newname.to_vec(),
                ino: Some(src),
            },
        ];
        let moved_dir = (src_kind == Kind::Dir) as i32;
        let replaced_dir =
            dst.is_some_and(|d| core.ns().get(d).is_some_and(|i| i.attr.kind == Kind::Dir)) as i32;
        if parent != newparent {
            records.push(self.touch_dir(&core, parent, now, -moved_dir));
            records.push(self.touch_dir(&core, newparent, now, moved_dir - replaced_dir));
        } else {
            records.push(self.touch_dir(&core, parent, now, -replaced_dir));
        }
        records.push(self.change_attr(&mut core, src, |a| a.ctime = now));
        if let Some(dst) = dst {
            if replaced_dir == 1 {
                records.push(Record::Drop { ino: dst });
            } else {
                // Apply what came before so the unlink sees current links.
                self.apply(&mut core, std::mem::take(&mut records))?;
                records.extend(self.unlink_inode(&mut core, dst, now));
            }
        }
        self.apply(&mut core, records)?;
        Ok(())
    }

    pub fn opendir(&self, c: &Caller, ino: u64, flags: i32) -> FsResult<u64> {
        let at = |fs: &Fs, l: &Locked<'_>| Paths::one(fs.inode_path(l, ino));
        self.audited(c, vec![Op::OpenDir], at, |_| {
            self.snapshot_dir(c, ino, flags)
        })
    }

    fn snapshot_dir(&self, c: &Caller, ino: u64, flags: i32) -> FsResult<u64> {
        let core = self.lock();
        let dir = core.ns().get(ino).ok_or(FsError::NotFound)?;
        let entries = dir.entries().ok_or(FsError::NotDir)?;
        let mut snap: DirSnapshot = Vec::with_capacity(entries.len() + 2);
        snap.push((b".".to_vec(), ino, Kind::Dir));
        snap.push((b"..".to_vec(), dir.parent, Kind::Dir));
        for (name, &child) in entries {
            let kind = core.ns().get(child).map_or(Kind::File, |i| i.attr.kind);
            snap.push((name.to_vec(), child, kind));
        }
        drop(core);
        Ok(self.handles.insert(c, None, flags, Some(snap)))
    }

    pub fn readdir(
        &self,
        _ino: u64,
        fh: u64,
        offset: u64,
        out: &mut dyn DirReplier,
    ) -> FsResult<()> {
        let snap = self.dir_snapshot(fh)?;
        for (i, (name, ino, kind)) in snap.iter().enumerate().skip(offset as usize) {
            if out.add(*ino, i as u64 + 1, *kind, name) {
                break;
            }
        }
        Ok(())
    }

    pub fn readdirplus(
        &self,
        _ino: u64,
        fh: u64,
        offset: u64,
        out: &mut dyn DirPlusReplier,
    ) -> FsResult<()> {
        let snap = self.dir_snapshot(fh)?;
        let core = self.lock();
        for (i, (name, ino, _)) in snap.iter().enumerate().skip(offset as usize) {
            // Entries removed since opendir are skipped, not reported stale.
            let Ok(attr) = self.attr_of(&core, *ino) else {
                continue;
            };
            if out.add(i as u64 + 1, name, &attr) {
                break;
            }
        }
        Ok(())
    }

    pub fn releasedir(&self, _ino: u64, fh: u64) -> FsResult<()> {
        self.handles.remove(fh);
        Ok(())
    }

    pub fn fsyncdir(&self, ino: u64, _fh: u64, _datasync: bool) -> FsResult<()> {
        if self.opts.read_only() {
            return Ok(());
        }
        self.lock().ns().get(ino).ok_or(FsError::NotFound)?;
        if self.engine.sticky_failure().is_some() && !self.engine.has_unacknowledged() {
            // Fenced or failed with every change already committed.
            return Ok(());
        }
        self.wait_durable(self.engine.appended())
    }

    fn dir_snapshot(&self, fh: u64) -> FsResult<std::sync::Arc<DirSnapshot>> {
        self.handles
            .with(fh, |h| h.dir.clone())
            .flatten()
            .ok_or(FsError::BadHandle)
    }

    /// Is `ancestor` on the path from `ino` up to the root (or `ino` itself)?
    fn is_ancestor(&self, core: &Locked<'_>, ancestor: u64, mut ino: u64) -> bool {
        loop {
            if ino == ancestor {
                return true;
            }
            if ino == ROOT_INO {
                return false;
            }
            match core.ns().get(ino) {
                Some(i) => ino = i.parent,
                None => return false,
            }
        }
    }

    /// Updates a directory's mtime/ctime and link count (subdirectory
    /// added or removed).
    fn touch_dir(&self, core: &Locked<'_>, dir: u64, now: Timestamp, nlink_delta: i32) -> Record {
        let mut attr = core.ns().get(dir).expect("checked by caller").attr;
        attr.mtime = now;
        attr.ctime = now;
        attr.nlink = attr.nlink.saturating_add_signed(nlink_delta);
        Record::Inode { ino: dir, attr }
    }

    /// Drops one link of a non-directory: the inode goes when the last
    /// link goes, unless it is open (then it is an orphan until release).
    fn unlink_inode(&self, core: &mut Locked<'_>, ino: u64, now: Timestamp) -> Vec<Record> {
        let nlink = core.ns().get(ino).map_or(0, |i| i.attr.nlink);
        if nlink > 1 {
            return vec![self.change_attr(core, ino, |a| {
                a.nlink -= 1;
                a.ctime = now;
            })];
        }
        if core.opens.get(&ino).copied().unwrap_or(0) > 0 {
            return vec![
                self.change_attr(core, ino, |a| {
                    a.nlink = 0;
                    a.ctime = now;
                }),
                Record::Orphan { ino },
            ];
        }
        self.cache().remove_inode(ino);
        core.live.remove(&ino);
        vec![Record::Drop { ino }]
    }
}

fn entry(core: &Locked<'_>, dir: u64, name: &[u8]) -> FsResult<u64> {
    let d = core.ns().get(dir).ok_or(FsError::NotFound)?;
    d.entries()
        .ok_or(FsError::NotDir)?
        .get(name)
        .copied()
        .ok_or(FsError::NotFound)
}
