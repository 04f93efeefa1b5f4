//! Local directory store: one file per object under a root directory.
//!
//! Key `meta/journal/0042` is the file `<root>/meta/journal/0042`. Parent
//! directories are made on demand and never removed: removing an emptied
//! directory would race a concurrent `put` into it, and a few hundred empty
//! directories cost nothing.
//!
//! Rules:
//! - Bytes become visible under a key only whole and durable. Every write
//!   goes to `.tmp-<random>` in the target's directory and is fsynced
//!   first; then `put` renames it over the target (atomic replace) and
//!   `put_if_absent` hard-links it to the target. `link()` fails with
//!   EEXIST when the name is taken, so of two writers racing for one
//!   journal seq exactly one wins, with no window where both saw "absent":
//!   the fencing rule. (An exists-check followed by a rename would have
//!   that window.)
//! - After a name changes (rename, link, unlink, a new directory) the
//!   directory holding it is fsynced. Without that a power cut can forget
//!   the name although the bytes are on disk, and an acknowledged commit
//!   would vanish. The first `put` into a directory in this process also
//!   fsyncs every directory above it, because a directory another thread
//!   (or a crashed process) just made may not be durable yet.
//! - Reads go through one open file, so a concurrent replacing `put` (a new
//!   inode) never mixes old and new bytes; a range past the end is an
//!   error, never a short read.
//! - Names starting with `.` belong to the store (`.lock`, `.tmp-*`); keys
//!   can never have them ([`check_key`]) and `list` skips them. A crash can
//!   leave temp files behind: [`LocalStore::remove_stale_temp_files`]
//!   sweeps them. Anything that is not a regular file or a directory
//!   (symlinks, sockets) is not an object and is skipped.
//! - Nothing is readable by other users: directories are made 0700 and
//!   objects (and the lock file) 0600, whatever the umask; [`LocalStore::create`]
//!   also narrows an existing empty root to 0700. The header holds the
//!   keyslots, which anyone who can copy them can attack offline.
//! - [`LocalStore::lock_exclusive`] takes `flock` on `<root>/.lock` to
//!   refuse a second read-write mount of the same directory. It is
//!   advisory and host-local (Linux maps it to byte-range locks on NFS);
//!   the lease stays the real guard.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use super::{
    ObjectInfo, ObjectStore, RangeSink, StoreError, StoreResult, check_key, check_max, check_range,
};

mod direct;

/// The advisory lock file, and the `key` of the error that reports it held.
pub(crate) const LOCK_FILE: &str = ".lock";
/// Mode of every directory the store makes: the owner's alone.
const DIR_MODE: u32 = 0o700;
/// Mode of every object and the lock file: the owner's alone.
const FILE_MODE: u32 = 0o600;
const TEMP_PREFIX: &str = ".tmp-";
/// The read size of a streamed ranged read (`get_range_to`).
const PIECE: u64 = 256 << 10;
/// Serialises conditional replaces between processes (`flock`).
const CAS_LOCK_FILE: &str = ".cas-lock";

#[derive(Clone, Debug)]
pub struct LocalStore {
    /// Canonical (absolute) path, so a daemon that changes its working
    /// directory after fork still finds the volume.
    root: PathBuf,
    /// Directories (relative, `/`-separated) whose whole chain up to the
    /// root this process has fsynced; shared by clones. Locked only for a
    /// lookup or insert, never across I/O.
    durable_dirs: Arc<Mutex<HashSet<String>>>,
}

/// Holds the volume directory's advisory lock; dropping it closes the file,
/// which releases the lock. A child made by `fork` shares it.
#[derive(Debug)]
pub struct LocalLock {
    _file: File,
}

impl LocalStore {
    /// Opens an existing directory as a store.
    pub fn open(root: &Path) -> StoreResult<LocalStore> {
        let label = root.display().to_string();
        let root = fs::canonicalize(root).map_err(|e| io_err(&label, e))?;
        let meta = fs::metadata(&root).map_err(|e| io_err(&label, e))?;
        if !meta.is_dir() {
            return Err(StoreError::io(
                &label,
                io::ErrorKind::NotADirectory,
                "store root is not a directory",
            ));
        }
        Ok(LocalStore {
            root,
            durable_dirs: Arc::default(),
        })
    }

    /// Creates the directory (and missing parents) and opens it; the root
    /// itself ends up 0700 even if it existed.
    pub fn create(root: &Path) -> StoreResult<LocalStore> {
        let label = root.display().to_string();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(root)
            .map_err(|e| io_err(&label, e))?;
        fs::set_permissions(root, fs::Permissions::from_mode(DIR_MODE))
            .map_err(|e| io_err(&label, e))?;
        let store = LocalStore::open(root)?;
        // The root's own name must survive a power cut before `init` says
        // the volume exists.
        if let Some(parent) = store.root.parent() {
            sync_dir(parent).map_err(|e| io_err(&label, e))?;
        }
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Opens an object's file for reading, and its size. A symlink or
    /// anything but a regular file is not an object (someone put it
    /// there): it is refused, never followed.
    fn open_object(&self, key: &str) -> StoreResult<(File, u64)> {
        let path = self.path_of(key)?;
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ELOOP) => StoreError::io(
                    key,
                    io::ErrorKind::InvalidData,
                    "a symlink where an object belongs",
                ),
                _ => read_err(key, e),
            })?;
        let meta = file.metadata().map_err(|e| io_err(key, e))?;
        if !meta.is_file() {
            return Err(StoreError::NotFound { key: key.into() });
        }
        Ok((file, meta.len()))
    }

    /// Waits for the lock that makes a conditional replace's check and
    /// rename one step, across every process using this directory.
    fn cas_lock(&self) -> StoreResult<File> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(FILE_MODE)
            .open(self.root.join(CAS_LOCK_FILE))
            .map_err(|e| io_err(CAS_LOCK_FILE, e))?;
        // SAFETY: a valid open descriptor; the lock lives as long as `file`.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(io_err(CAS_LOCK_FILE, io::Error::last_os_error()));
        }
        Ok(file)
    }

    /// Takes the advisory lock on `<root>/.lock` without waiting. When
    /// another holder has it, fails with an error for which
    /// [`StoreError::is_locked`] is true.
    pub fn lock_exclusive(&self) -> StoreResult<LocalLock> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(FILE_MODE)
            .open(self.root.join(LOCK_FILE))
            .map_err(|e| io_err(LOCK_FILE, e))?;
        loop {
            // SAFETY: the descriptor belongs to `file`, alive for this call.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc == 0 {
                return Ok(LocalLock { _file: file });
            }
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            if err.kind() == io::ErrorKind::WouldBlock {
                return Err(StoreError::Locked);
            }
            return Err(io_err(LOCK_FILE, err));
        }
    }

    /// Deletes `.tmp-*` files left by crashed writes whose mtime is at least
    /// `older_than` ago; returns how many went. Choose `older_than` far
    /// above the longest write, or a live `put` loses its temp file. The
    /// directories are not fsynced: a removal undone by a crash is redone
    /// by the next sweep.
    pub fn remove_stale_temp_files(&self, older_than: Duration) -> StoreResult<usize> {
        let now = SystemTime::now();
        let mut stale = Vec::new();
        walk(&self.root, "", "", &mut |rel, name, meta| {
            let age = now
                .duration_since(meta.modified()?)
                .unwrap_or(Duration::ZERO);
            if name.starts_with(TEMP_PREFIX) && age >= older_than {
                stale.push(rel);
            }
            Ok(())
        })
        .map_err(|e| io_err(".tmp-*", e))?;
        let mut removed = 0;
        for rel in stale {
            match fs::remove_file(self.root.join(&rel)) {
                Ok(()) => removed += 1,
                // Another sweeper got there first.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&rel, e)),
            }
        }
        Ok(removed)
    }

    fn path_of(&self, key: &str) -> StoreResult<PathBuf> {
        check_key(key)?;
        Ok(self.root.join(key))
    }

    /// The directory that holds `key`, made and made durable if this
    /// process has not done so yet.
    fn parent_dir(&self, key: &str) -> io::Result<PathBuf> {
        let Some((dir_part, _)) = key.rsplit_once('/') else {
            return Ok(self.root.clone());
        };
        if lock(&self.durable_dirs).contains(dir_part) {
            return Ok(self.root.join(dir_part));
        }
        let mut dir = self.root.clone();
        for segment in dir_part.split('/') {
            let parent = dir.clone();
            dir.push(segment);
            match fs::DirBuilder::new().mode(DIR_MODE).create(&dir) {
                Ok(()) => {}
                // Made earlier or by a concurrent put; its name may still
                // be only in memory, so fsync the parent all the same.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    if !dir.is_dir() {
                        let why = "a parent of the key is an object, not a directory";
                        return Err(io::Error::new(io::ErrorKind::NotADirectory, why));
                    }
                }
                Err(e) => return Err(e),
            }
            sync_dir(&parent)?;
        }
        lock(&self.durable_dirs).insert(dir_part.to_owned());
        Ok(dir)
    }
}

impl ObjectStore for LocalStore {
    fn space(&self) -> Option<(u64, u64)> {
        let path = std::ffi::CString::new(self.root().as_os_str().as_encoded_bytes()).ok()?;
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: `path` is NUL-terminated and `st` is a valid out-pointer.
        if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
            return None;
        }
        let frsize = st.f_frsize as u64;
        Some((st.f_blocks as u64 * frsize, st.f_bavail as u64 * frsize))
    }

    fn get(&self, key: &str) -> StoreResult<Vec<u8>> {
        self.get_max(key, u64::MAX)
    }

    fn get_max(&self, key: &str, max: u64) -> StoreResult<Vec<u8>> {
        let (mut file, len) = self.open_object(key)?;
        check_max(key, len, max)?;
        let mut body = Vec::with_capacity(len as usize);
        file.read_to_end(&mut body).map_err(|e| io_err(key, e))?;
        Ok(body)
    }

    fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Vec<u8>> {
        let (file, len) = self.open_object(key)?;
        check_range(key, &range, len)?;
        let len = usize::try_from(range.end - range.start)
            .map_err(|e| io_err(key, io::Error::new(io::ErrorKind::InvalidInput, e)))?;
        let mut buf = vec![0; len];
        file.read_exact_at(&mut buf, range.start)
            .map_err(|e| io_err(key, e))?;
        Ok(buf)
    }

    fn get_range_to(&self, key: &str, range: Range<u64>, sink: &mut RangeSink) -> StoreResult<()> {
        let (file, len) = self.open_object(key)?;
        check_range(key, &range, len)?;
        // In pieces: each reaches the sink while still in the CPU's cache,
        // and no buffer holds the whole range.
        let mut buf = vec![0; PIECE.min(range.end - range.start) as usize];
        let mut at = range.start;
        while at < range.end {
            let n = PIECE.min(range.end - at) as usize;
            file.read_exact_at(&mut buf[..n], at)
                .map_err(|e| io_err(key, e))?;
            sink(at - range.start, &buf[..n]);
            at += n as u64;
        }
        Ok(())
    }

    fn put(&self, key: &str, body: &[u8]) -> StoreResult<()> {
        let path = self.path_of(key)?;
        let dir = self.parent_dir(key).map_err(|e| io_err(key, e))?;
        let tmp = write_temp(&dir, body).map_err(|e| io_err(key, e))?;
        if let Err(e) = fs::rename(&tmp, &path) {
            discard(&tmp);
            return Err(io_err(key, e));
        }
        sync_dir(&dir).map_err(|e| io_err(key, e))
    }

    fn put_if_absent(&self, key: &str, body: &[u8]) -> StoreResult<()> {
        let path = self.path_of(key)?;
        let dir = self.parent_dir(key).map_err(|e| io_err(key, e))?;
        let tmp = write_temp(&dir, body).map_err(|e| io_err(key, e))?;
        let linked = fs::hard_link(&tmp, &path);
        discard(&tmp);
        match linked {
            // One fsync makes both the new name and the temp's removal
            // durable. If it fails the object may exist anyway: a retry
            // then sees AlreadyExists, the ambiguous case callers resolve
            // by reading the object back.
            Ok(()) => sync_dir(&dir).map_err(|e| io_err(key, e)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                Err(StoreError::AlreadyExists { key: key.into() })
            }
            Err(e) => Err(io_err(key, e)),
        }
    }

    fn put_if_match(&self, key: &str, body: &[u8], etag: &str) -> StoreResult<()> {
        let path = self.path_of(key)?;
        let _cas = self.cas_lock()?;
        let current = match fs::metadata(&path) {
            Ok(meta) if meta.is_file() => {
                Some(info(key.into(), &meta).map_err(|e| io_err(key, e))?)
            }
            Ok(_) => None,
            Err(e) if is_missing(&e) => None,
            Err(e) => return Err(io_err(key, e)),
        };
        if current.is_none_or(|c| c.etag != etag) {
            return Err(StoreError::PreconditionFailed { key: key.into() });
        }
        self.put(key, body)
    }

    fn delete(&self, key: &str) -> StoreResult<()> {
        let path = self.path_of(key)?;
        match fs::remove_file(&path) {
            Ok(()) => {}
            // Missing is success. The directory is still fsynced below: a
            // retry after a failed fsync must not report a removal that a
            // power cut could undo.
            Err(e) if is_missing(&e) => {}
            Err(e) => return Err(io_err(key, e)),
        }
        let dir = path.parent().unwrap_or(&self.root);
        match sync_dir(dir) {
            Ok(()) => Ok(()),
            Err(e) if is_missing(&e) => Ok(()),
            Err(e) => Err(io_err(key, e)),
        }
    }

    fn list(&self, prefix: &str) -> StoreResult<Vec<ObjectInfo>> {
        // Walk only the deepest directory the prefix names in full.
        let (start, rel_start) = match prefix.rsplit_once('/') {
            Some((dir_part, _)) => {
                if check_key(dir_part).is_err() {
                    // No valid key can start with this prefix.
                    return Ok(Vec::new());
                }
                (self.root.join(dir_part), format!("{dir_part}/"))
            }
            None => (self.root.clone(), String::new()),
        };
        let mut found = Vec::new();
        walk(&start, &rel_start, prefix, &mut |rel, name, meta| {
            if !name.starts_with('.') && rel.starts_with(prefix) {
                found.push(info(rel, meta)?);
            }
            Ok(())
        })
        .map_err(|e| io_err(prefix, e))?;
        found.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(found)
    }

    fn head(&self, key: &str) -> StoreResult<Option<ObjectInfo>> {
        let path = self.path_of(key)?;
        match fs::metadata(path) {
            Ok(meta) if meta.is_file() => {
                Ok(Some(info(key.into(), &meta).map_err(|e| io_err(key, e))?))
            }
            // A directory is a key prefix, not an object.
            Ok(_) => Ok(None),
            Err(e) if is_missing(&e) => Ok(None),
            Err(e) => Err(io_err(key, e)),
        }
    }
}

/// An object's ETag is its file's identity and change time: every `put`
/// renames a new inode into place, so (inode, ctime, size) changes with each
/// replacement, even one with identical bytes.
fn info(key: String, meta: &fs::Metadata) -> io::Result<ObjectInfo> {
    use std::os::unix::fs::MetadataExt;
    Ok(ObjectInfo {
        key,
        size: meta.len(),
        modified: meta.modified()?,
        etag: format!(
            "{:x}-{:x}.{:x}-{:x}",
            meta.ino(),
            meta.ctime(),
            meta.ctime_nsec(),
            meta.len()
        ),
    })
}

/// Visits every regular file under `dir` (whose key prefix is `rel_dir`,
/// empty or ending in `/`) as (key, file name, metadata). Skips directories
/// starting with `.` and those that cannot hold a key starting with
/// `prefix`. Entries vanishing mid-walk (a concurrent delete) are skipped.
fn walk(
    dir: &Path,
    rel_dir: &str,
    prefix: &str,
    visit: &mut dyn FnMut(String, &str, &fs::Metadata) -> io::Result<()>,
) -> io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if is_missing(&e) => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        // Keys are UTF-8, so a name that is not was never written by us.
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let meta = match entry.metadata() {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let rel = format!("{rel_dir}{name}");
        if meta.is_dir() {
            let sub = format!("{rel}/");
            if !name.starts_with('.') && (sub.starts_with(prefix) || prefix.starts_with(&sub)) {
                walk(&entry.path(), &sub, prefix, visit)?;
            }
        } else if meta.is_file() {
            visit(rel, &name, &meta)?;
        }
    }
    Ok(())
}

/// Writes `body` to a fresh `.tmp-*` file in `dir` and fsyncs it (a large
/// body bypassing the page cache, see [`direct`]).
fn write_temp(dir: &Path, body: &[u8]) -> io::Result<PathBuf> {
    loop {
        let tmp = dir.join(format!("{TEMP_PREFIX}{:016x}", rand::random::<u64>()));
        let open = |flags| {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(FILE_MODE)
                .custom_flags(flags)
                .open(&tmp)
        };
        let opened = match open(direct::open_flags(body.len())) {
            // A file system without O_DIRECT: the page cache, then.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => open(0),
            other => other,
        };
        let mut file = match opened {
            Ok(file) => file,
            // A 64-bit collision: draw again.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        };
        let written = direct::write_body(&mut file, body);
        if let Err(e) = written.and_then(|()| file.sync_all()) {
            discard(&tmp);
            return Err(e);
        }
        return Ok(tmp);
    }
}

/// Best-effort removal of a temp file on a path that already failed or no
/// longer needs it; a leftover is harmless and swept later.
fn discard(tmp: &Path) {
    if let Err(e) = fs::remove_file(tmp) {
        log::debug!("leaving temp file behind: {e}");
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Not an object: missing, or a path through or onto a directory.
fn is_missing(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory | io::ErrorKind::IsADirectory
    )
}

fn read_err(key: &str, e: io::Error) -> StoreError {
    if is_missing(&e) {
        StoreError::NotFound { key: key.into() }
    } else {
        io_err(key, e)
    }
}

fn io_err(key: &str, source: io::Error) -> StoreError {
    StoreError::from_os(key, &source)
}

/// The set is updated by single inserts, so a panic elsewhere cannot leave
/// it half-changed; a poisoned lock is still usable.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance;

    fn fresh() -> (tempfile::TempDir, LocalStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        (dir, store)
    }

    /// Every file under the root, store-owned ones included.
    fn all_files(store: &LocalStore) -> Vec<String> {
        let mut names = Vec::new();
        walk(store.root(), "", "", &mut |rel, _, _| {
            names.push(rel);
            Ok(())
        })
        .unwrap();
        names.sort();
        names
    }

    #[test]
    fn conforms() {
        let (_dir, store) = fresh();
        conformance::check_all(&store);
    }

    #[test]
    fn put_replaces_atomically_and_leaves_no_temp_files() {
        let (_dir, store) = fresh();
        store.put("data/ab/pack", b"first").unwrap();
        store.put("data/ab/pack", b"second, longer").unwrap();
        store.put_if_absent("meta/journal/01", b"j").unwrap();
        assert!(store.put_if_absent("meta/journal/01", b"k").is_err());
        assert_eq!(store.get("data/ab/pack").unwrap(), b"second, longer");
        assert_eq!(all_files(&store), ["data/ab/pack", "meta/journal/01"]);
    }

    #[test]
    fn readers_never_see_a_mix_of_two_puts() {
        let (_dir, store) = fresh();
        let (a, b) = (vec![b'a'; 256 * 1024], vec![b'b'; 256 * 1024]);
        store.put("obj", &a).unwrap();
        std::thread::scope(|s| {
            s.spawn(|| {
                for i in 0..40 {
                    store.put("obj", if i % 2 == 0 { &b } else { &a }).unwrap();
                }
            });
            for _ in 0..200 {
                let got = store.get("obj").unwrap();
                assert!(got == a || got == b, "torn read");
                let part = store.get_range("obj", 1000..200_000).unwrap();
                assert!(part.iter().all(|&c| c == part[0]), "torn ranged read");
            }
        });
    }

    #[test]
    fn racing_put_if_absent_has_one_winner() {
        let (_dir, store) = fresh();
        let wins: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8u8)
                .map(|i| {
                    let store = store.clone();
                    s.spawn(move || store.put_if_absent("meta/journal/07", &[i]).is_ok())
                })
                .collect();
            handles
                .into_iter()
                .map(|h| usize::from(h.join().unwrap()))
                .sum()
        });
        assert_eq!(wins, 1);
        assert_eq!(all_files(&store), ["meta/journal/07"]);
    }

    #[test]
    fn survives_reopen() {
        let (dir, store) = fresh();
        store.put("volume", b"header").unwrap();
        store.put_if_absent("meta/journal/01", b"seg").unwrap();
        let before = store.head("volume").unwrap().unwrap();
        drop(store);
        let store = LocalStore::open(dir.path()).unwrap();
        assert_eq!(store.get("volume").unwrap(), b"header");
        assert_eq!(store.head("volume").unwrap().unwrap(), before);
        let keys: Vec<_> = store.list("").unwrap().into_iter().map(|o| o.key).collect();
        assert_eq!(keys, ["meta/journal/01", "volume"]);
    }

    #[test]
    fn nothing_is_readable_by_other_users() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("vol");
        fs::create_dir(&root).unwrap();
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
        // SAFETY: umask only changes this process's creation mask; the
        // modes checked below must hold whatever it is.
        let old = unsafe { libc::umask(0o022) };
        let store = LocalStore::create(&root).unwrap();
        store.put("volume", b"header").unwrap();
        store.put_if_absent("meta/journal/0001", b"j").unwrap();
        let _lock = store.lock_exclusive().unwrap();
        unsafe { libc::umask(old) };
        let mode = |p: &str| fs::metadata(root.join(p)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(""), 0o700);
        assert_eq!(mode("volume"), 0o600);
        assert_eq!(mode("meta"), 0o700);
        assert_eq!(mode("meta/journal"), 0o700);
        assert_eq!(mode("meta/journal/0001"), 0o600);
        assert_eq!(mode(".lock"), 0o600);
    }

    #[test]
    fn open_needs_an_existing_directory_and_create_makes_one() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("vol");
        assert!(LocalStore::open(&missing).is_err());
        let store = LocalStore::create(&missing).unwrap();
        assert!(store.root().is_absolute());
        assert!(LocalStore::open(&missing).is_ok());
        fs::write(dir.path().join("file"), b"x").unwrap();
        assert!(LocalStore::open(&dir.path().join("file")).is_err());
    }

    #[test]
    fn list_skips_store_files_and_foreign_names() {
        let (dir, store) = fresh();
        store.put("data/ab/p1", b"1").unwrap();
        let _lock = store.lock_exclusive().unwrap();
        fs::write(dir.path().join("data/ab/.tmp-dead"), b"partial").unwrap();
        fs::create_dir(dir.path().join(".hidden")).unwrap();
        fs::write(dir.path().join(".hidden/x"), b"x").unwrap();
        std::os::unix::fs::symlink("data/ab/p1", dir.path().join("link")).unwrap();
        let keys: Vec<_> = store.list("").unwrap().into_iter().map(|o| o.key).collect();
        assert_eq!(keys, ["data/ab/p1"]);
        assert!(store.list("data/ab/.tmp").unwrap().is_empty());
    }

    #[test]
    fn directories_are_not_objects() {
        let (_dir, store) = fresh();
        store.put("data/ab/p1", b"1").unwrap();
        assert!(store.get("data/ab").unwrap_err().is_not_found());
        assert!(store.get_range("data", 0..0).unwrap_err().is_not_found());
        assert_eq!(store.head("data/ab").unwrap(), None);
        assert!(store.get("data/ab/p1/x").unwrap_err().is_not_found());
        store.delete("data/ab").unwrap();
        assert_eq!(store.get("data/ab/p1").unwrap(), b"1");
    }

    #[test]
    fn symlinks_and_non_files_are_never_read() {
        let (dir, store) = fresh();
        fs::write(dir.path().join("secret"), b"outside the volume").unwrap();
        fs::create_dir_all(dir.path().join("data/ab")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), dir.path().join("data/ab/link"))
            .unwrap();
        let e = store.get("data/ab/link").unwrap_err();
        assert!(e.to_string().contains("symlink"), "{e}");
        assert!(store.get_range("data/ab/link", 0..1).is_err());
        fs::create_dir_all(dir.path().join("data/ab/dir")).unwrap();
        assert!(matches!(
            store.get("data/ab/dir"),
            Err(StoreError::NotFound { .. })
        ));
    }

    #[test]
    fn second_lock_is_refused_until_the_first_drops() {
        let (_dir, store) = fresh();
        let first = store.lock_exclusive().unwrap();
        let again = LocalStore::open(store.root())
            .unwrap()
            .lock_exclusive()
            .unwrap_err();
        assert!(again.is_locked(), "{again}");
        assert!(
            !StoreError::NotFound {
                key: LOCK_FILE.into()
            }
            .is_locked()
        );
        drop(first);
        let _second = store.lock_exclusive().unwrap();
    }

    #[test]
    fn stale_temp_files_are_swept_by_age() {
        let (dir, store) = fresh();
        store.put("data/ab/p1", b"1").unwrap();
        let old = dir.path().join("data/ab/.tmp-0123");
        let young = dir.path().join(".tmp-4567");
        fs::write(&old, b"partial").unwrap();
        fs::write(&young, b"in flight").unwrap();
        let hour = Duration::from_secs(3600);
        File::options()
            .write(true)
            .open(&old)
            .unwrap()
            .set_modified(SystemTime::now() - 2 * hour)
            .unwrap();
        assert_eq!(store.remove_stale_temp_files(hour).unwrap(), 1);
        assert!(!old.exists());
        assert!(young.exists());
        assert_eq!(store.get("data/ab/p1").unwrap(), b"1");
        assert_eq!(store.remove_stale_temp_files(Duration::ZERO).unwrap(), 1);
        assert_eq!(all_files(&store), ["data/ab/p1"]);
    }

    #[test]
    fn a_key_under_a_file_fails_cleanly() {
        let (_dir, store) = fresh();
        store.put("volume", b"v").unwrap();
        assert!(store.put("volume/x", b"x").is_err());
        assert!(store.put_if_absent("volume/x", b"x").is_err());
        assert_eq!(store.get("volume").unwrap(), b"v");
        assert_eq!(all_files(&store), ["volume"]);
    }
}
