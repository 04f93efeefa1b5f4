//! What this host remembers of the volumes it mounted: per location, the
//! volume's id and the newest commit seen (see `crate::engine::rollback`).
//!
//! One small text file per location, in `<state dir>/anchors/`, named by
//! the first 16 bytes of SHA-256 of the location (so no path or bucket
//! name shows in a file name):
//!
//! ```text
//! sealedfs anchor 1
//! volume <32 hex digits>
//! seq <decimal>
//! hash <64 hex digits>
//! ```
//!
//! State dir: `SEALEDFS_STATE_DIR`, else `/var/lib/sealedfs` for root,
//! else `$XDG_STATE_HOME/sealedfs` or `~/.local/state/sealedfs`.
//!
//! Rules:
//! - An anchor only moves forward: [`Anchors::advance`] takes an exclusive
//!   lock, and a head no newer than the one recorded changes nothing (a
//!   follower and a writer on one host may both report).
//! - Writes are a temp file renamed over the old one: a crash leaves the
//!   old anchor or the new, never a torn one. A lost anchor (a new host, a
//!   wiped disk) only means less to compare with, never a false alarm.
//! - An unreadable anchor file is an error, not "no anchor": a damaged
//!   memory must not silently disable the check.
//! - A mount records heads through an [`AnchorWriter`], on a thread of its
//!   own: the committer only hands over the newest head, so a stopped
//!   process holding the lock (or a slow disk) can never stall commits.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

use sha2::{Digest, Sha256};

use crate::engine::{Anchor, Head};

/// Test knob and override: where anchors live.
pub const STATE_DIR_VAR: &str = "SEALEDFS_STATE_DIR";

/// The anchor of one location.
#[derive(Clone, Debug)]
pub struct Anchors {
    path: PathBuf,
}

impl Anchors {
    /// The anchor file for `location` (a canonical store name).
    pub fn for_location(location: &str) -> Anchors {
        let digest = Sha256::digest(location.as_bytes());
        let name: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        Anchors {
            path: state_dir().join("anchors").join(name),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn read(&self) -> io::Result<Option<Anchor>> {
        match fs::read_to_string(&self.path) {
            Ok(text) => parse(&text).map(Some).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} is not an anchor file", self.path.display()),
                )
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Records `anchor` unless a newer head of the same volume is there.
    pub fn advance(&self, anchor: Anchor) -> io::Result<()> {
        self.update(|old| match old {
            Some(o) if o.volume_id == anchor.volume_id && o.head.seq >= anchor.head.seq => None,
            _ => Some(anchor),
        })
    }

    /// Records `anchor` whatever is there (after an accepted rollback).
    pub fn reset(&self, anchor: Anchor) -> io::Result<()> {
        self.update(|_| Some(anchor))
    }

    fn update(&self, decide: impl FnOnce(Option<Anchor>) -> Option<Anchor>) -> io::Result<()> {
        let dir = self.path.parent().expect("anchors live in a directory");
        fs::create_dir_all(dir)?;
        let _lock = lock(&dir.join(".lock"))?;
        // An unreadable old file is replaced: the caller just checked the
        // volume against it, or chose to accept what it found.
        let old = self.read().ok().flatten();
        let Some(new) = decide(old) else {
            return Ok(());
        };
        let tmp = dir.join(format!(".{}.tmp", std::process::id()));
        let mut f = File::create(&tmp)?;
        f.write_all(format(&new).as_bytes())?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, &self.path)
    }
}

/// Writes a mount's newest committed head to its anchor, at most once a
/// second, off the committing thread.
pub struct AnchorWriter {
    anchors: Anchors,
    volume_id: [u8; 16],
    latest: Mutex<(Option<Head>, bool)>,
    cv: Condvar,
}

impl AnchorWriter {
    pub fn start(anchors: Anchors, volume_id: [u8; 16]) -> Arc<AnchorWriter> {
        let w = Arc::new(AnchorWriter {
            anchors,
            volume_id,
            latest: Mutex::new((None, false)),
            cv: Condvar::new(),
        });
        let weak = Arc::downgrade(&w);
        let spawned = std::thread::Builder::new()
            .name("anchor".into())
            .spawn(move || {
                while let Some(w) = weak.upgrade() {
                    if !w.write_next() {
                        return;
                    }
                }
            });
        if let Err(e) = spawned {
            log::warn!("no anchor thread ({e}): only the final state is recorded");
        }
        w
    }

    /// A new head was committed.
    pub fn note(&self, head: Head) {
        let mut l = self.latest.lock().unwrap_or_else(|p| p.into_inner());
        if l.0.is_none_or(|h| head.seq > h.seq) {
            l.0 = Some(head);
            self.cv.notify_all();
        }
    }

    /// Records the newest head now and stops the thread.
    pub fn finish(&self) {
        let head = {
            let mut l = self.latest.lock().unwrap_or_else(|p| p.into_inner());
            l.1 = true;
            self.cv.notify_all();
            l.0.take()
        };
        if let Some(head) = head {
            self.record(head);
        }
    }

    /// Waits for a head (up to a second), writes it; false once finished.
    fn write_next(&self) -> bool {
        let head = {
            let mut l = self.latest.lock().unwrap_or_else(|p| p.into_inner());
            while l.0.is_none() && !l.1 {
                l = self.cv.wait(l).unwrap_or_else(|p| p.into_inner());
            }
            if l.1 {
                return false;
            }
            l.0.take()
        };
        if let Some(head) = head {
            self.record(head);
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
        true
    }

    fn record(&self, head: Head) {
        let anchor = Anchor {
            volume_id: self.volume_id,
            head,
        };
        if let Err(e) = self.anchors.advance(anchor) {
            log::warn!("cannot record the volume's state for rollback checks: {e}");
        }
    }
}

pub(super) fn state_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(STATE_DIR_VAR) {
        return PathBuf::from(dir);
    }
    // SAFETY: no arguments, cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return PathBuf::from("/var/lib/sealedfs");
    }
    if let Some(x) = std::env::var_os("XDG_STATE_HOME").map(PathBuf::from) {
        if x.is_absolute() {
            return x.join("sealedfs");
        }
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
    home.join(".local/state/sealedfs")
}

/// An exclusive `flock` on `path`, released when the file closes. Waits
/// at most two seconds: the holder may be a stopped process, and an
/// anchor written a little later is better than a mount that hangs.
fn lock(path: &Path) -> io::Result<File> {
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        // SAFETY: a valid descriptor owned by `f` for the whole call.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(f);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::WouldBlock || std::time::Instant::now() >= deadline {
            return Err(io::Error::new(
                e.kind(),
                format!("{} is held by another process: {e}", path.display()),
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

fn format(a: &Anchor) -> String {
    format!(
        "sealedfs anchor 1\nvolume {}\nseq {}\nhash {}\n",
        hex::encode(a.volume_id),
        a.head.seq,
        hex::encode(a.head.hash)
    )
}

pub(crate) fn parse(text: &str) -> Option<Anchor> {
    let mut lines = text.lines();
    (lines.next()? == "sealedfs anchor 1").then_some(())?;
    let volume_id = unhex::<16>(lines.next()?.strip_prefix("volume ")?)?;
    let seq = lines.next()?.strip_prefix("seq ")?.parse().ok()?;
    let hash = unhex::<32>(lines.next()?.strip_prefix("hash ")?)?;
    lines.next().is_none().then_some(Anchor {
        volume_id,
        head: Head { seq, hash },
    })
}

fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anchor(id: u8, seq: u64) -> Anchor {
        Anchor {
            volume_id: [id; 16],
            head: Head {
                seq,
                hash: [seq as u8; 32],
            },
        }
    }

    #[test]
    fn anchors_only_move_forward_unless_reset() {
        let dir = tempfile::tempdir().unwrap();
        let a = Anchors {
            path: dir.path().join("anchors").join("x"),
        };
        assert_eq!(a.read().unwrap(), None);
        a.advance(anchor(1, 10)).unwrap();
        a.advance(anchor(1, 7)).unwrap();
        assert_eq!(a.read().unwrap(), Some(anchor(1, 10)));
        a.advance(anchor(1, 12)).unwrap();
        assert_eq!(a.read().unwrap(), Some(anchor(1, 12)));
        a.reset(anchor(1, 3)).unwrap();
        assert_eq!(a.read().unwrap(), Some(anchor(1, 3)));
        // Another volume at the location replaces it only when asked to:
        // `advance` is called after the check accepted it.
        a.advance(anchor(2, 1)).unwrap();
        assert_eq!(a.read().unwrap(), Some(anchor(2, 1)));
    }

    #[test]
    fn a_damaged_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x");
        fs::write(&path, "sealedfs anchor 1\nvolume zz\n").unwrap();
        let a = Anchors { path };
        assert_eq!(a.read().unwrap_err().kind(), io::ErrorKind::InvalidData);
        assert_eq!(parse(&format(&anchor(4, 99))), Some(anchor(4, 99)));
    }
}
