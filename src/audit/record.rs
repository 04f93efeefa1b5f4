//! One audit record: who did what to which path, when, from where, and
//! how it ended.
//!
//! Records are persisted inside sealed audit segments (`segment`), so they
//! may hold what nothing else in the store may: paths, names, process
//! names. Their encoding is postcard, like every metadata plaintext; the
//! operation's variant index is part of the format (append new ones).

use serde::{Deserialize, Serialize};

/// What was done. Data reads and writes are not recorded one by one: a
/// handle's `Release` carries the bytes read and written through it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// `open(2)` of an existing file, with its flags.
    Open {
        flags: i32,
    },
    /// `creat(2)` / `open(O_CREAT)` making the file.
    Create {
        flags: i32,
    },
    Mknod,
    Mkdir,
    Unlink,
    Rmdir,
    /// `path` moved to `path2`.
    Rename,
    /// `path2` made a new name for `path`.
    Link,
    /// `path` made as a symbolic link (its target is not recorded: it is
    /// data the caller chose, like file contents).
    Symlink,
    Chmod {
        mode: u32,
    },
    Chown {
        uid: Option<u32>,
        gid: Option<u32>,
    },
    Truncate {
        size: u64,
    },
    Utimes,
    SetXattr,
    RemoveXattr,
    /// The last close of a handle: bytes read and written through it.
    Release {
        read: u64,
        written: u64,
    },
    /// `opendir(2)`: a directory listed.
    OpenDir,
    /// Administrative: the trail pruned before a time, the volume locked
    /// or unlocked, a key changed, a rollback accepted (`path` says what).
    Admin {
        what: String,
    },
}

impl Op {
    /// The name shown and filtered on (`open`, `unlink`, …).
    pub fn name(&self) -> &'static str {
        match self {
            Op::Open { .. } => "open",
            Op::Create { .. } => "create",
            Op::Mknod => "mknod",
            Op::Mkdir => "mkdir",
            Op::Unlink => "unlink",
            Op::Rmdir => "rmdir",
            Op::Rename => "rename",
            Op::Link => "link",
            Op::Symlink => "symlink",
            Op::Chmod { .. } => "chmod",
            Op::Chown { .. } => "chown",
            Op::Truncate { .. } => "truncate",
            Op::Utimes => "utimes",
            Op::SetXattr => "setxattr",
            Op::RemoveXattr => "removexattr",
            Op::Release { .. } => "release",
            Op::OpenDir => "opendir",
            Op::Admin { .. } => "admin",
        }
    }

    /// The operation's own details, for text and CSV (`flags=0x241`).
    pub fn detail(&self) -> String {
        match self {
            Op::Open { flags } | Op::Create { flags } => format!("flags={flags:#x}"),
            Op::Chmod { mode } => format!("mode={mode:o}"),
            Op::Chown { uid, gid } => format!(
                "uid={} gid={}",
                uid.map_or("-".into(), |u| u.to_string()),
                gid.map_or("-".into(), |g| g.to_string())
            ),
            Op::Truncate { size } => format!("size={size}"),
            Op::Release { read, written } => format!("read={read} written={written}"),
            Op::Admin { what } => what.clone(),
            _ => String::new(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Wall clock, ms since the Unix epoch.
    pub time_ms: u64,
    pub uid: u32,
    pub gid: u32,
    pub pid: u32,
    /// `/proc/PID/comm` when the call came in ("" if it was gone).
    pub process: String,
    pub op: Op,
    /// The path the operation named, as the namespace named it then.
    pub path: String,
    /// The second path of a rename or link.
    pub path2: Option<String>,
    /// 0, or the errno the caller got.
    pub errno: i32,
}

impl Record {
    /// About the bytes the record takes encoded: its strings and a bound
    /// for the rest.
    pub fn size_hint(&self) -> usize {
        let path2 = self.path2.as_ref().map_or(0, String::len);
        let what = match &self.op {
            Op::Admin { what } => what.len(),
            _ => 0,
        };
        64 + self.process.len() + self.path.len() + path2 + what
    }

    /// An administrative record (`what` happened) made by this process.
    pub fn admin(what: &str) -> Record {
        // SAFETY: neither call can fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        Record::admin_by(what, uid, gid, std::process::id())
    }

    /// An administrative record of what process `pid` asked for.
    pub fn admin_by(what: &str, uid: u32, gid: u32, pid: u32) -> Record {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        Record {
            time_ms: super::now_ms(),
            uid,
            gid,
            pid,
            process: comm.trim_end().to_owned(),
            op: Op::Admin { what: what.into() },
            path: String::new(),
            path2: None,
            errno: 0,
        }
    }
}
