//! Attributes, extended attributes, access checks and statfs.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use super::audit::Paths;
use super::{Attr, Caller, Fs, FsError, FsResult, Kind, Locked, SetAttr, StatFs, TimeSet};
use crate::audit::Op;
use crate::meta::{Record, Timestamp};

/// Largest xattr value, as ext4 with a 4 KiB block... raised to the VFS
/// limit, since values live in metadata, not in a block.
const XATTR_SIZE_MAX: usize = 65_536;
/// Longest xattr name (VFS limit).
const XATTR_NAME_MAX: usize = 255;

enum XattrClass {
    User,
    Trusted,
    Security,
}

fn classify(name: &[u8]) -> FsResult<XattrClass> {
    if name.is_empty() || name.len() > XATTR_NAME_MAX {
        return Err(if name.is_empty() {
            FsError::Invalid
        } else {
            FsError::Range
        });
    }
    if name.starts_with(b"user.") {
        Ok(XattrClass::User)
    } else if name.starts_with(b"trusted.") {
        Ok(XattrClass::Trusted)
    } else if name.starts_with(b"security.") {
        Ok(XattrClass::Security)
    } else {
        // system.* (POSIX ACLs) and unknown namespaces: not supported, so
        // tools fall back to mode bits.
        Err(FsError::NotSupported)
    }
}

impl Fs {
    pub fn getattr(&self, ino: u64) -> FsResult<Attr> {
        let core = self.lock();
        self.attr_of(&core, ino)
    }

    pub fn setattr(&self, c: &Caller, ino: u64, fh: Option<u64>, set: SetAttr) -> FsResult<Attr> {
        let at = |fs: &Fs, l: &Locked<'_>| Paths::one(fs.inode_path(l, ino));
        self.audited(c, set.audit_ops(), at, |_| {
            self.change_attrs(c, ino, fh, set)
        })
    }

    fn change_attrs(&self, c: &Caller, ino: u64, fh: Option<u64>, set: SetAttr) -> FsResult<Attr> {
        self.check_writable()?;
        if let Some(size) = set.size {
            self.truncate(c, ino, fh, size)?;
        }
        let mut core = self.lock();
        core.ns().get(ino).ok_or(FsError::NotFound)?;
        let now = Timestamp::now();
        let changes = set.mode.is_some()
            || set.uid.is_some()
            || set.gid.is_some()
            || set.atime.is_some()
            || set.mtime.is_some()
            || set.ctime.is_some();
        if changes {
            let record = self.change_attr(&mut core, ino, |a| {
                if let Some(mode) = set.mode {
                    a.perm = (mode & 0o7777) as u16;
                }
                if let Some(uid) = set.uid {
                    a.uid = uid;
                }
                if let Some(gid) = set.gid {
                    a.gid = gid;
                }
                let at = |t: TimeSet| match t {
                    TimeSet::Now => now,
                    TimeSet::At(t) => Timestamp::from(t),
                };
                if let Some(t) = set.atime {
                    a.atime = at(t);
                }
                if let Some(t) = set.mtime {
                    a.mtime = at(t);
                }
                a.ctime = set.ctime.map_or(now, Timestamp::from);
            });
            self.apply(&mut core, vec![record])?;
        }
        self.attr_of(&core, ino)
    }

    pub fn setxattr(
        &self,
        c: &Caller,
        ino: u64,
        name: &OsStr,
        value: &[u8],
        flags: i32,
    ) -> FsResult<()> {
        let at = |fs: &Fs, l: &Locked<'_>| Paths::one(fs.inode_path(l, ino));
        self.audited(c, vec![Op::SetXattr], at, |_| {
            self.set_xattr(c, ino, name, value, flags)
        })
    }

    fn set_xattr(
        &self,
        c: &Caller,
        ino: u64,
        name: &OsStr,
        value: &[u8],
        flags: i32,
    ) -> FsResult<()> {
        self.check_writable()?;
        let name = name.as_bytes();
        self.check_xattr_access(c, ino, name)?;
        if value.len() > XATTR_SIZE_MAX {
            return Err(FsError::TooBig);
        }
        let mut core = self.lock();
        let inode = core.ns().get(ino).ok_or(FsError::NotFound)?;
        let exists = inode.xattrs.contains_key(name);
        if flags & libc::XATTR_CREATE != 0 && exists {
            return Err(FsError::Exists);
        }
        if flags & libc::XATTR_REPLACE != 0 && !exists {
            return Err(FsError::NoAttr);
        }
        let now = Timestamp::now();
        let records = vec![
            Record::Xattr {
                ino,
                name: name.to_vec(),
                value: Some(value.to_vec()),
            },
            self.change_attr(&mut core, ino, |a| a.ctime = now),
        ];
        self.apply(&mut core, records)?;
        Ok(())
    }

    pub fn getxattr(&self, c: &Caller, ino: u64, name: &OsStr) -> FsResult<Vec<u8>> {
        let name = name.as_bytes();
        self.check_xattr_access(c, ino, name)?;
        let core = self.lock();
        let inode = core.ns().get(ino).ok_or(FsError::NotFound)?;
        inode.xattrs.get(name).cloned().ok_or(FsError::NoAttr)
    }

    pub fn listxattr(&self, c: &Caller, ino: u64) -> FsResult<Vec<u8>> {
        let core = self.lock();
        let inode = core.ns().get(ino).ok_or(FsError::NotFound)?;
        let mut out = Vec::new();
        for name in inode.xattrs.keys() {
            // trusted.* is visible to privileged callers only, as on ext4.
            if name.starts_with(b"trusted.") && !c.is_root() {
                continue;
            }
            out.extend_from_slice(name);
            out.push(0);
        }
        Ok(out)
    }

    pub fn removexattr(&self, c: &Caller, ino: u64, name: &OsStr) -> FsResult<()> {
        let at = |fs: &Fs, l: &Locked<'_>| Paths::one(fs.inode_path(l, ino));
        self.audited(c, vec![Op::RemoveXattr], at, |_| {
            self.remove_xattr(c, ino, name)
        })
    }

    fn remove_xattr(&self, c: &Caller, ino: u64, name: &OsStr) -> FsResult<()> {
        self.check_writable()?;
        let name = name.as_bytes();
        self.check_xattr_access(c, ino, name)?;
        let mut core = self.lock();
        let inode = core.ns().get(ino).ok_or(FsError::NotFound)?;
        if !inode.xattrs.contains_key(name) {
            return Err(FsError::NoAttr);
        }
        let now = Timestamp::now();
        let records = vec![
            Record::Xattr {
                ino,
                name: name.to_vec(),
                value: None,
            },
            self.change_attr(&mut core, ino, |a| a.ctime = now),
        ];
        self.apply(&mut core, records)?;
        Ok(())
    }

    fn check_xattr_access(&self, c: &Caller, ino: u64, name: &[u8]) -> FsResult<()> {
        match classify(name)? {
            XattrClass::Trusted if !c.is_root() => Err(FsError::NotPermitted),
            XattrClass::User => {
                let core = self.lock();
                let kind = core.ns().get(ino).ok_or(FsError::NotFound)?.attr.kind;
                // user.* only on regular files and directories, as ext4.
                match kind {
                    Kind::File | Kind::Dir => Ok(()),
                    _ => Err(FsError::NotPermitted),
                }
            }
            XattrClass::Trusted | XattrClass::Security => Ok(()),
        }
    }

    /// The kernel checks access itself under `default_permissions`; this
    /// answers `access(2)` the same way for callers that ask explicitly.
    pub fn access(&self, c: &Caller, ino: u64, mask: i32) -> FsResult<()> {
        let core = self.lock();
        let a = self.inode_attr(&core, ino)?;
        if mask == libc::F_OK {
            return Ok(());
        }
        let perm = a.perm as i32;
        if c.is_root() {
            let any_x = perm & 0o111 != 0 || a.kind == Kind::Dir;
            return if mask & libc::X_OK != 0 && !any_x {
                Err(FsError::AccessDenied)
            } else {
                Ok(())
            };
        }
        let bits = if c.uid == a.uid {
            (perm >> 6) & 7
        } else if c.gid == a.gid {
            (perm >> 3) & 7
        } else {
            perm & 7
        };
        if mask & bits == mask & 7 {
            Ok(())
        } else {
            Err(FsError::AccessDenied)
        }
    }

    pub fn statfs(&self) -> FsResult<StatFs> {
        const BSIZE: u64 = 4096;
        let core = self.lock();
        let used: u64 = core
            .ns()
            .packs()
            .map(|(_, p)| p.size)
            .sum::<u64>()
            .div_ceil(BSIZE);
        let files = core.ns().inode_count() as u64;
        drop(core);
        let (total, avail) = match self.engine.store().space() {
            Some((total, avail)) => (total / BSIZE, avail / BSIZE),
            // Object stores have no fixed size: report a petabyte free.
            None => (used + (1 << 38), 1 << 38),
        };
        Ok(StatFs {
            blocks: total.max(used),
            bfree: avail,
            bavail: avail,
            files: files + (1 << 32),
            ffree: 1 << 32,
            bsize: BSIZE as u32,
            namelen: super::dir::NAME_MAX as u32,
            frsize: BSIZE as u32,
        })
    }
}
