//! Recording what callers do, for the audit trail (`crate::audit`).
//!
//! Rules:
//! - An audited operation runs inside [`Fs::audited`]: its paths are taken
//!   from the namespace just before it runs (as the namespace names them
//!   then), and it is recorded exactly once, with its result.
//! - A change is recorded when it is applied, while the tree lock it is
//!   applied under is held ([`Fs::apply`] finds the operation under way on
//!   its thread, [`recording`]), so its record reaches the auditor before
//!   any commit can take the change (the commit makes the auditor's
//!   records durable first). Anything else (a failure, an open for
//!   reading) is recorded when the operation returns.
//! - Names: the last component of a path comes from the names the kernel
//!   looked up (kept in a bounded map), else from a scan of the parent
//!   directory; an inode no directory names any more is `<inode N>`.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Mutex;

use super::{Caller, Fs, FsError, FsResult, Locked, SetAttr};
use crate::audit::{Op, Record};
use crate::meta::ROOT_INO;

/// Names looked up, kept for paths: about 64 k entries.
const NAMES_MAX: usize = 65_536;

/// Bytes of a path a record names in full (the kernel's PATH_MAX).
const AUDIT_PATH_MAX: usize = 4096;

/// (inode → its parent and name), as the kernel last looked it up.
#[derive(Default)]
pub(crate) struct Names {
    map: Mutex<HashMap<u64, (u64, Vec<u8>)>>,
}

impl Names {
    pub fn note(&self, parent: u64, name: &[u8], ino: u64) {
        let mut m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() >= NAMES_MAX {
            m.clear();
        }
        m.insert(ino, (parent, name.to_vec()));
    }

    fn get(&self, ino: u64) -> Option<(u64, Vec<u8>)> {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&ino)
            .cloned()
    }
}

thread_local! {
    /// The audited operation running on this thread, if any.
    static CURRENT: RefCell<Option<Rc<Recorder>>> = const { RefCell::new(None) };
}

/// Called by `Fs::apply` once a change is applied: records the operation
/// under way on this thread, the first time.
pub(crate) fn recording(fs: &Fs) {
    let rec = CURRENT.with(|c| c.borrow().clone());
    if let Some(rec) = rec.filter(|r| !r.done.get()) {
        fs.emit(&rec, None);
    }
}

/// The paths an operation names.
pub(crate) struct Paths(String, Option<String>);

impl Paths {
    pub fn one(path: String) -> Paths {
        Paths(path, None)
    }

    pub fn two(from: String, to: String) -> Paths {
        Paths(from, Some(to))
    }
}

/// One audited operation under way.
pub(crate) struct Recorder {
    caller: Caller,
    /// The caller's process name, read when the call came in.
    process: String,
    ops: Vec<Op>,
    paths: Paths,
    done: Cell<bool>,
}

/// Who opened a handle and by which path, for its `Release` record (the
/// process may be gone by then).
pub(crate) struct Opener {
    pub path: String,
    pub process: String,
}

impl Fs {
    /// Runs `f` as audited operation(s) `ops` of `c` on the paths `locate`
    /// names; records it once, with its result. `f` gets the [`Opener`]
    /// (for a handle's `Release` record), `None` when nothing is audited.
    pub(crate) fn audited<T>(
        &self,
        c: &Caller,
        ops: Vec<Op>,
        locate: impl FnOnce(&Fs, &Locked<'_>) -> Paths,
        f: impl FnOnce(Option<Opener>) -> FsResult<T>,
    ) -> FsResult<T> {
        if self.auditor().is_none() || ops.is_empty() {
            return f(None);
        }
        let paths = locate(self, &self.lock());
        let process = c.process_name().unwrap_or_default();
        let opener = Opener {
            path: paths.0.clone(),
            process: process.clone(),
        };
        let rec = Rc::new(Recorder {
            caller: *c,
            process,
            ops,
            paths,
            done: Cell::new(false),
        });
        let outer = CURRENT.with(|cur| cur.replace(Some(Rc::clone(&rec))));
        let result = f(Some(opener));
        CURRENT.with(|cur| *cur.borrow_mut() = outer);
        if !rec.done.get() {
            self.emit(&rec, result.as_ref().err());
        }
        result
    }

    fn emit(&self, rec: &Recorder, err: Option<&FsError>) {
        rec.done.set(true);
        let Some(auditor) = self.auditor() else {
            return;
        };
        let errno = err.map_or(0, FsError::errno);
        let time_ms = crate::audit::now_ms();
        for op in &rec.ops {
            auditor.record(Record {
                time_ms,
                uid: rec.caller.uid,
                gid: rec.caller.gid,
                pid: rec.caller.pid,
                process: rec.process.clone(),
                op: op.clone(),
                path: rec.paths.0.clone(),
                path2: rec.paths.1.clone(),
                errno,
            });
        }
    }

    /// Records a handle's end: bytes read and written through it.
    pub(crate) fn audit_release(&self, c: &Caller, opener: Opener, read: u64, written: u64) {
        let rec = Recorder {
            caller: *c,
            process: opener.process,
            ops: vec![Op::Release { read, written }],
            paths: Paths::one(opener.path),
            done: Cell::new(false),
        };
        self.emit(&rec, None);
    }

    /// `parent`'s path joined with `name`.
    pub(crate) fn entry_path(&self, l: &Locked<'_>, parent: u64, name: &[u8]) -> String {
        let dir = self.inode_path(l, parent);
        let sep = if dir.ends_with('/') { "" } else { "/" };
        format!("{dir}{sep}{}", String::from_utf8_lossy(name))
    }

    /// A path of `ino` as the namespace names it now. A path longer than
    /// [`AUDIT_PATH_MAX`] (a tree built deeper with `openat`) is named from
    /// the inode where it passes that: `<inode N>/rest`, so one record
    /// stays small whatever a user builds.
    pub(crate) fn inode_path(&self, l: &Locked<'_>, ino: u64) -> String {
        let mut parts: Vec<String> = Vec::new();
        let mut len = 0;
        let mut at = ino;
        while at != ROOT_INO {
            let Some((parent, name)) = self.name_of(l, at) else {
                return format!("<inode {ino}>");
            };
            let name = String::from_utf8_lossy(&name).into_owned();
            if len + name.len() + 1 > AUDIT_PATH_MAX {
                parts.push(format!("<inode {at}>"));
                parts.reverse();
                return parts.join("/");
            }
            len += name.len() + 1;
            parts.push(name);
            at = parent;
        }
        parts.reverse();
        format!("/{}", parts.join("/"))
    }

    /// The parent and name of `ino`: the kernel's last lookup of it if the
    /// namespace still agrees, else a scan of its parent directory.
    fn name_of(&self, l: &Locked<'_>, ino: u64) -> Option<(u64, Vec<u8>)> {
        let entries_of = |dir: u64| l.ns().get(dir).and_then(|d| d.entries());
        if let Some((parent, name)) = self.names.get(ino) {
            if entries_of(parent).and_then(|e| e.get(name.as_slice())) == Some(&ino) {
                return Some((parent, name));
            }
        }
        let parent = l.ns().get(ino)?.parent;
        let name = entries_of(parent)?
            .iter()
            .find(|(_, child)| **child == ino)?
            .0
            .to_vec();
        Some((parent, name))
    }
}

impl SetAttr {
    /// The audit operations one `setattr` does, in the order applied.
    pub(crate) fn audit_ops(&self) -> Vec<Op> {
        let mut ops = Vec::new();
        if let Some(size) = self.size {
            ops.push(Op::Truncate { size });
        }
        if let Some(mode) = self.mode {
            ops.push(Op::Chmod {
                mode: mode & 0o7777,
            });
        }
        if self.uid.is_some() || self.gid.is_some() {
            ops.push(Op::Chown {
                uid: self.uid,
                gid: self.gid,
            });
        }
        if self.atime.is_some() || self.mtime.is_some() {
            ops.push(Op::Utimes);
        }
        ops
    }
}
