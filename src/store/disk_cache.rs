//! Disk cache decorator: ciphertext blocks of data packs kept in a local
//! directory, so a working set larger than RAM, or a remount, does not go
//! back to the object store.
//!
//! What it holds and why that is safe:
//! - Only objects under `data/` (packs: immutable once written, except a
//!   key rotation's in-place re-seal, and deleted by garbage collection).
//!   The header, lease, journal, checkpoints, audit and snapshots always
//!   come fresh from the store.
//! - Bytes exactly as the store holds them (sealed segments), under the
//!   object's own name: nothing the bucket does not already show. Files
//!   are mode 0600 in a 0700 directory and are never fsynced: a cache.
//!   The directory may sit where others can write: see [`fsat`] and
//!   [`check_dir`] for why nothing planted there is followed.
//! - Nothing read from here is trusted: the engine opens (authenticates)
//!   every segment before use, and when one fails it calls
//!   [`ObjectStore::forget`], which drops the blocks here, then reads it
//!   once more with [`ObjectStore::get_range_fresh`], which goes to the
//!   store whatever this cache holds. A tampered, truncated
//!   or stale block (re-sealed by a rotation in another process) costs one
//!   refetch, never wrong bytes and never an `EIO` the store could avoid.
//!
//! Layout: `DIR/<name>/` (the caller names it: volume id and store,
//! see `cli::mount::disk_cache::dir_name`) holds `lock` (flock: one mount per
//! volume and host uses the cache; another runs without it), `tmp/`, and
//! `data/xx/<pack id>.<block>`, one file per block of [`BLOCK`] bytes of a
//! pack (see [`index`] for the prefix rule). A file is written whole to
//! `tmp/` and renamed into place, or appended to when it extends a prefix
//! (only under the index lock, after checking its length): a crash leaves
//! at worst a torn tail, which authentication catches. At open the
//! directory is scanned on a thread of its own while the mount serves
//! (20,000 blocks, a 20 GiB cache, took 0.4 s cold), and the index rebuilt
//! below the blocks in use, least recently used first (the first hit of
//! a block in a mount sets its file's modification time); until a block is found, a read of it goes
//! to the store and rewrites it.
//!
//! Reads: blocks covering the range that hold what the range needs are
//! read from disk; the missing ones, from the first to the last, come in
//! one ranged GET that starts where the first one's prefix ends. Writes of
//! packs by this mount go to disk as they upload (write-through), so a
//! read after the RAM cache evicted them stays local too. The index lock
//! is held for index changes, renames, unlinks and appends to a prefix,
//! never across store I/O: a whole block is written to `tmp/` without it.

mod fsat;
mod index;

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use bytes::Bytes;
use log::{info, warn};

use super::{ObjectInfo, ObjectStore, RangeSink, StoreResult};
use index::{BlockId, Index};

/// Bytes of an object per cache file: mountpoint-s3's block size, and an
/// eighth of a full pack, so a ranged read of a few segments over-fetches
/// at most one block's worth and a sequential read is a few files per GET.
/// Files of a whole pack read 256 MiB in 0.12–0.18 s against 0.19–0.23 s
/// here (page cache dropped), both far faster than the daemon decrypts.
pub const BLOCK: u64 = 1 << 20;

/// What `status` shows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiskCacheStats {
    pub bytes: u64,
    pub limit: u64,
    pub blocks: u64,
    /// Reads answered from disk alone.
    pub hits: u64,
    /// Reads that needed the store for some of their blocks.
    pub misses: u64,
    /// Objects whose cached blocks failed authentication or could not be
    /// read, dropped and fetched again.
    pub dropped: u64,
}

/// The cache directory of one volume, locked for this process.
pub struct DiskCache {
    /// For messages only: every operation goes through the descriptors.
    root: PathBuf,
    tmp: OwnedFd,
    data: OwnedFd,
    /// `data/xx`, by `xx`, opened (and checked) on first use.
    subdirs: Vec<OnceLock<OwnedFd>>,
    block: u64,
    index: Mutex<Index>,
    hits: AtomicU64,
    misses: AtomicU64,
    dropped: AtomicU64,
    tmp_seq: AtomicU64,
    /// The scan of what an earlier mount left, until it is joined.
    scan: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Held for the cache's life: the flock of `lock`.
    _lock: File,
}

/// Why the cache cannot be used: a one-line reason.
#[derive(Debug, thiserror::Error)]
pub enum DiskCacheError {
    #[error("disk cache {0} is in use by another mount of this volume")]
    Busy(PathBuf),
    #[error("disk cache {0}: {1}")]
    Io(PathBuf, io::Error),
}

impl DiskCache {
    /// Opens (creating) the cache of volume `volume_hex` under `dir`,
    /// holding at most `limit` bytes, and starts rebuilding its index
    /// from disk in the background.
    pub fn open(
        dir: &Path,
        volume_hex: &str,
        limit: u64,
    ) -> Result<Arc<DiskCache>, DiskCacheError> {
        DiskCache::open_with_block(dir, volume_hex, limit, BLOCK)
    }

    /// Waits until the index holds what the directory held at open.
    pub fn wait_scanned(&self) {
        let scan = self.scan.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(s) = scan {
            let _ = s.join();
        }
    }

    fn open_with_block(
        dir: &Path,
        volume_hex: &str,
        limit: u64,
        block: u64,
    ) -> Result<Arc<DiskCache>, DiskCacheError> {
        let root = dir.join(volume_hex);
        let shown = root.clone();
        let err = |e| DiskCacheError::Io(shown.clone(), e);
        let top = check_dir(dir).map_err(|e| DiskCacheError::Io(dir.to_owned(), e))?;
        let root_fd = fsat::private_subdir(top.as_fd(), volume_hex, &root).map_err(err)?;
        let sub = |name: &str| fsat::private_subdir(root_fd.as_fd(), name, &root.join(name));
        let (tmp, data) = (sub("tmp").map_err(err)?, sub("data").map_err(err)?);
        let lock = fsat::open_file(
            root_fd.as_fd(),
            "lock",
            libc::O_WRONLY | libc::O_CREAT,
            0o600,
        )
        .map_err(err)?;
        // SAFETY: flock on a descriptor this function owns.
        if unsafe {
            libc::flock(
                std::os::fd::AsRawFd::as_raw_fd(&lock),
                libc::LOCK_EX | libc::LOCK_NB,
            )
        } != 0
        {
            return Err(DiskCacheError::Busy(root));
        }
        // Left by a writer that died; no one else writes here (the lock).
        for e in fsat::list(tmp.as_fd()).map_err(err)?.flatten() {
            if let Some(name) = e.file_name().to_str() {
                let _ = fsat::unlink(tmp.as_fd(), name);
            }
        }
        let cache = Arc::new(DiskCache {
            index: Mutex::new(Index::new(limit)),
            root,
            tmp,
            data,
            subdirs: (0..256).map(|_| OnceLock::new()).collect(),
            block,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            tmp_seq: AtomicU64::new(0),
            scan: Mutex::new(None),
            _lock: lock,
        });
        let scanner = Arc::clone(&cache);
        let handle = std::thread::Builder::new()
            .name("disk-cache-scan".into())
            .spawn(move || {
                if let Err(e) = scanner.rebuild() {
                    warn!(
                        "disk cache {}: scan failed ({e}); blocks it did not reach are fetched again",
                        scanner.root.display()
                    );
                }
            })
            .map_err(err)?;
        *cache.scan.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle);
        Ok(cache)
    }

    pub fn stats(&self) -> DiskCacheStats {
        let (bytes, blocks, limit) = {
            let ix = self.index();
            (ix.total(), ix.blocks() as u64, ix.limit())
        };
        DiskCacheStats {
            bytes,
            limit,
            blocks,
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }

    /// The directory of this volume's blocks.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn index(&self) -> MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Where block `id`'s file is, for messages and tests.
    #[cfg(test)]
    fn path(&self, id: &BlockId) -> PathBuf {
        self.root.join(format!("{}.{}", id.0, id.1))
    }

    /// The directory `data/xx` of block `id` and the file's name in it.
    fn place(&self, id: &BlockId) -> io::Result<(BorrowedFd<'_>, String)> {
        // Only `cacheable` keys reach here: `data/xx/<32 hex>`.
        let (xx, pack) = (&id.0[5..7], &id.0[8..]);
        Ok((self.subdir(xx)?, format!("{pack}.{}", id.1)))
    }

    fn subdir(&self, xx: &str) -> io::Result<BorrowedFd<'_>> {
        let n = u8::from_str_radix(xx, 16).map_err(|_| io::Error::other("bad prefix"))?;
        let slot = &self.subdirs[n as usize];
        if slot.get().is_none() {
            let shown = self.root.join("data").join(xx);
            let fd = fsat::private_subdir(self.data.as_fd(), xx, &shown)?;
            // A concurrent first use may have set it: either is the same directory.
            let _ = slot.set(fd);
        }
        Ok(slot.get().expect("set above").as_fd())
    }

    fn remove_file(&self, id: &BlockId) {
        if let Ok((dir, name)) = self.place(id) {
            let _ = fsat::unlink(dir, &name);
        }
    }

    /// Scans the directory: every block file enters the index as it is
    /// found (so the bound counts it at once), below the blocks in use,
    /// and files that overflow the limit are evicted; then the ones found
    /// are ranked by age (modification time). An entry that vanishes
    /// while scanned is skipped; anything but a directory of blocks or a
    /// regular block file is never followed.
    fn rebuild(&self) -> io::Result<()> {
        let mut found = Vec::new();
        for sub in fsat::list(self.data.as_fd())?.flatten() {
            let Some(xx) = sub.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let is_dir = sub.file_type().is_ok_and(|t| t.is_dir());
            if !is_dir || xx.len() != 2 || !xx.bytes().all(|b| b.is_ascii_hexdigit()) {
                continue;
            }
            let Ok(dir) = self.subdir(&xx) else {
                continue;
            };
            let Ok(entries) = fsat::list(dir) else {
                continue;
            };
            let mut batch = Vec::new();
            for f in entries.flatten() {
                let Some(name) = f.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                // From the entry, not following a link (lstat).
                let Ok(meta) = f.metadata() else {
                    continue;
                };
                let parsed = name.rsplit_once('.').and_then(|(pack, n)| {
                    Some((format!("data/{xx}/{pack}"), n.parse::<u64>().ok()?))
                });
                match parsed {
                    Some((key, n))
                        if cacheable(&key) && meta.is_file() && meta.len() <= self.block =>
                    {
                        let age = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
                        batch.push((age, (key, n), meta.len()));
                    }
                    _ if !meta.is_dir() => {
                        let _ = fsat::unlink(dir, &name);
                    }
                    _ => {}
                }
            }
            let mut ix = self.index();
            for (_, id, len) in &batch {
                for gone in ix.insert_older(id.clone(), *len) {
                    self.remove_file(&gone);
                }
            }
            drop(ix);
            found.extend(batch.into_iter().map(|(age, id, _)| (age, id)));
        }
        found.sort_by_key(|(age, _)| *age);
        // In batches: readers wait for the lock no longer than one takes.
        for batch in found.chunks(1024) {
            let mut ix = self.index();
            for (_, id) in batch {
                ix.rank_older(id);
            }
        }
        let ix = self.index();
        info!(
            "disk cache {}: {} blocks, {} bytes",
            self.root.display(),
            ix.blocks(),
            ix.total()
        );
        Ok(())
    }

    /// Drops the blocks of `key` that hold bytes of `range`; true if any
    /// was held. Other blocks of the object stay: each of their segments
    /// is authenticated on its own when read.
    fn drop_blocks(&self, key: &str, range: &Range<u64>) -> bool {
        if range.start >= range.end {
            return false;
        }
        let (first, last) = (range.start / self.block, (range.end - 1) / self.block);
        let mut ix = self.index();
        let mut any = false;
        // A huge range (the whole object) walks the object's blocks only.
        for id in ix.blocks_of(key) {
            if (first..=last).contains(&id.1) && ix.remove(&id) {
                self.remove_file(&id);
                any = true;
            }
        }
        any
    }

    /// Drops every block of `key`; true if any was held.
    fn drop_object(&self, key: &str) -> bool {
        let mut ix = self.index();
        let ids = ix.remove_object(key);
        for id in &ids {
            self.remove_file(id);
        }
        !ids.is_empty()
    }

    /// Appends bytes `from .. to` of block `id` to `out`; false (and
    /// `out` as it was, the block dropped) if its file does not hold them.
    /// `touch`: set the file's modification time (the first hit this mount).
    fn read_block(&self, id: &BlockId, from: u64, to: u64, touch: bool, out: &mut Vec<u8>) -> bool {
        let at = out.len();
        let mut read = || -> io::Result<()> {
            let (dir, name) = self.place(id)?;
            let mut f = fsat::open_file(dir, &name, libc::O_RDONLY, 0)?;
            f.seek(SeekFrom::Start(from))?;
            // Straight into `out`'s spare capacity: no zeroing, no copy.
            let n = (&mut f).take(to - from).read_to_end(out)?;
            if n as u64 != to - from {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("{n} bytes where {} belong", to - from),
                ));
            }
            // The next mount's index orders blocks by this time.
            if touch {
                let _ = f.set_modified(std::time::SystemTime::now());
            }
            Ok(())
        };
        match read() {
            Ok(()) => true,
            Err(e) => {
                out.truncate(at);
                let mut ix = self.index();
                // Evicted or dropped since it was looked up: not a fault.
                if e.kind() == io::ErrorKind::NotFound && ix.peek(id).is_none() {
                    return false;
                }
                warn!(
                    "disk cache: block {} of {} unreadable ({e}); dropped, fetching from the store",
                    id.1, id.0
                );
                self.dropped.fetch_add(1, Ordering::Relaxed);
                if ix.remove(id) {
                    self.remove_file(id);
                }
                false
            }
        }
    }

    /// Stores `bytes` as bytes `at ..` of block `id`. `Fetched(seen)`:
    /// bytes a read fetched after noting generation `seen`; the whole
    /// prefix when `at` is 0, else what extends the prefix held now (a
    /// concurrent read may have extended it since `at` was looked up).
    /// Skipped when the block holds as much already, or too little to join
    /// on, or its object was dropped since (the GET may hold old bytes).
    /// `Written`: the object as this process just wrote it, replacing
    /// whatever is held.
    fn store_block(&self, id: BlockId, at: u64, bytes: &[u8], how: Store) {
        let new_len = at + bytes.len() as u64;
        // Whether to store, and how, decided under the lock and decided
        // again there after a whole block was written to `tmp/` without it.
        let wanted = |ix: &Index| -> Option<u64> {
            match how {
                Store::Written => Some(0),
                Store::Fetched(seen) => {
                    let held = ix.peek(&id).unwrap_or(0);
                    let skip = held >= new_len || held < at || ix.dropped_since(&id.0, seen);
                    (!skip).then_some(held)
                }
            }
        };
        let Some(held) = wanted(&self.index()) else {
            return;
        };
        let Ok((dir, name)) = self.place(&id) else {
            return;
        };
        if held == 0 && at == 0 {
            // The data goes to disk while readers use the index.
            let tmp = match self.write_tmp(bytes) {
                Ok(tmp) => tmp,
                Err(e) => {
                    warn!("disk cache: cannot write block {} of {} ({e})", id.1, id.0);
                    return;
                }
            };
            let mut ix = self.index();
            let still = matches!(how, Store::Written) || wanted(&ix).is_some();
            if !still || fsat::rename(self.tmp.as_fd(), &tmp, dir, &name).is_err() {
                drop(ix);
                let _ = fsat::unlink(self.tmp.as_fd(), &tmp);
                return;
            }
            for gone in ix.insert(id, new_len) {
                self.remove_file(&gone);
            }
            return;
        }
        // Extending a prefix depends on its length now: under the lock.
        let mut ix = self.index();
        let held = match wanted(&ix) {
            Some(held) if held > 0 => held,
            _ => return,
        };
        if let Err(e) = append(dir, &name, held, &bytes[(held - at) as usize..]) {
            warn!("disk cache: cannot write block {} of {} ({e})", id.1, id.0);
            ix.remove(&id);
            self.remove_file(&id);
            return;
        }
        for gone in ix.insert(id, new_len) {
            self.remove_file(&gone);
        }
    }

    /// Writes `bytes` to a new file in `tmp/`; returns its name.
    fn write_tmp(&self, bytes: &[u8]) -> io::Result<String> {
        let n = self.tmp_seq.fetch_add(1, Ordering::Relaxed);
        let tmp = format!("{}.{n}", std::process::id());
        let mut f = fsat::create_new(self.tmp.as_fd(), &tmp)?;
        let written = f.write_all(bytes);
        drop(f);
        written.map(|()| tmp.clone()).inspect_err(|_| {
            let _ = fsat::unlink(self.tmp.as_fd(), &tmp);
        })
    }

    /// Caches a whole object just written. Its old blocks are dropped
    /// first, which also turns away a read's store of bytes it fetched
    /// before now.
    fn store_object(&self, key: &str, body: &[u8]) {
        self.drop_object(key);
        for (n, part) in body.chunks(self.block as usize).enumerate() {
            self.store_block((key.to_owned(), n as u64), 0, part, Store::Written);
        }
    }

    /// What a read notes before its GET (see [`Store::Fetched`]).
    fn generation(&self) -> u64 {
        self.index().generation()
    }
}

/// How [`DiskCache::store_block`] treats what the block holds.
#[derive(Clone, Copy)]
enum Store {
    Fetched(u64),
    Written,
}

/// Checks the directory the user named (and the CLI canonicalized) and
/// opens it: a real directory, of this user or root, that others cannot
/// write unless it is sticky (like `/tmp`: then no one else can rename or
/// remove the per-volume directory this user owns inside). Never changed.
pub fn check_dir(dir: &Path) -> io::Result<OwnedFd> {
    let fd = fsat::open_dir_path(dir).map_err(|e| match e.raw_os_error() {
        Some(libc::ELOOP) | Some(libc::ENOTDIR) => {
            io::Error::other("not a directory (a symlink is refused)")
        }
        _ => e,
    })?;
    let meta = File::from(fd.try_clone()?).metadata()?;
    if meta.uid() != fsat::euid() && meta.uid() != 0 {
        return Err(io::Error::other(format!(
            "owned by uid {}, not this user or root",
            meta.uid()
        )));
    }
    if meta.mode() & 0o022 != 0 && meta.mode() & 0o1000 == 0 {
        return Err(io::Error::other(
            "other users can write it and it is not sticky (chmod go-w, or +t)",
        ));
    }
    Ok(fd)
}

/// Extends file `name` in `dir`, which must hold exactly `at` bytes.
fn append(dir: BorrowedFd, name: &str, at: u64, bytes: &[u8]) -> io::Result<()> {
    let mut f = fsat::open_file(dir, name, libc::O_WRONLY | libc::O_APPEND, 0)?;
    let len = f.metadata()?.len();
    if len != at {
        return Err(io::Error::other(format!("holds {len} bytes, not {at}")));
    }
    f.write_all(bytes)
}

/// A pack's key, `data/xx/<32 hex digits>`: the only objects cached, and
/// a shape that is safe as a relative path.
fn cacheable(key: &str) -> bool {
    let Some(rest) = key.strip_prefix("data/") else {
        return false;
    };
    let hex = |s: &str| s.bytes().all(|b| b.is_ascii_hexdigit());
    match rest.split_once('/') {
        Some((xx, id)) => xx.len() == 2 && hex(xx) && id.len() == 32 && hex(id),
        None => false,
    }
}

/// `inner` with pack reads served from, and pack writes copied to, a
/// [`DiskCache`].
pub struct DiskCachedStore<S> {
    inner: S,
    cache: Arc<DiskCache>,
}

impl<S: ObjectStore> DiskCachedStore<S> {
    pub fn new(inner: S, cache: Arc<DiskCache>) -> DiskCachedStore<S> {
        DiskCachedStore { inner, cache }
    }

    /// Hands the bytes `range` of pack `key` to `sink` in order: from disk
    /// where the blocks hold them, else with one ranged GET for the missing
    /// blocks, kept on disk block by block as they pass. Never more than a
    /// block is held here, so a run costs the cache only what the reader
    /// reserved for it.
    fn cached_range_to(
        &self,
        key: &str,
        range: Range<u64>,
        sink: &mut RangeSink,
    ) -> StoreResult<()> {
        let c = &self.cache;
        let b = c.block;
        let (first, last) = (range.start / b, (range.end - 1) / b);
        let id = |n: u64| (key.to_owned(), n);
        // Bytes of block n that this read needs, counted from the block's start.
        let need = |n: u64| range.end.min((n + 1) * b) - n * b;
        let (held, touch, seen): (Vec<u64>, Vec<bool>, u64) = {
            let mut ix = c.index();
            let held = (first..=last)
                .map(|n| ix.get(&id(n)).unwrap_or(0))
                .collect();
            let touch = (first..=last).map(|n| ix.first_touch(&id(n))).collect();
            (held, touch, ix.generation())
        };
        let held_of = |n: u64| held[(n - first) as usize];
        let missing: Vec<u64> = (first..=last).filter(|&n| held_of(n) < need(n)).collect();
        let fetch = match (missing.first(), missing.last()) {
            (Some(&m1), Some(&m2)) => {
                c.misses.fetch_add(1, Ordering::Relaxed);
                m1 * b + held_of(m1)..range.end.min((m2 + 1) * b)
            }
            _ => {
                c.hits.fetch_add(1, Ordering::Relaxed);
                range.end..range.end
            }
        };
        let mut block = Vec::new();
        let mut pos = range.start;
        while pos < range.end {
            if fetch.contains(&pos) {
                // The GET starts where the first missing block's prefix
                // ends, which may be before `range`: those bytes are kept
                // but not handed over.
                let mut keeper = Keeper::new(self, key, fetch.start, seen);
                self.inner
                    .get_range_to(key, fetch.clone(), &mut |at, bytes| {
                        keeper.take(at, bytes);
                        let at = fetch.start + at;
                        let cut = range.start.saturating_sub(at).min(bytes.len() as u64);
                        if cut < bytes.len() as u64 {
                            sink(at + cut - range.start, &bytes[cut as usize..]);
                        }
                    })?;
                keeper.finish();
                pos = fetch.end;
                continue;
            }
            let n = pos / b;
            let mut to = range.end.min((n + 1) * b);
            if pos < fetch.start {
                to = to.min(fetch.start);
            }
            block.clear();
            let touch = touch[(n - first) as usize];
            if !c.read_block(&id(n), pos - n * b, to - n * b, touch, &mut block) {
                // Unreadable, and dropped: the store answers for it all,
                // from the start (a sink takes bytes again from 0).
                return self.inner.get_range_to(key, range, sink);
            }
            sink(pos - range.start, &block);
            pos = to;
        }
        Ok(())
    }

    /// Stores `fetched`, bytes `start ..` of `key` fetched after noting
    /// generation `seen`, block by block.
    fn keep(&self, key: &str, start: u64, fetched: &[u8], seen: u64) {
        let mut keeper = Keeper::new(self, key, start, seen);
        keeper.take(0, fetched);
        keeper.finish();
    }
}

/// Collects the bytes of a GET as they pass and stores each block once it
/// is whole (the last one as far as it came). A block goes to the page
/// cache, not to the disk, so storing it on the receiving thread costs
/// less than holding the whole range to store it after.
struct Keeper<'a, S> {
    store: &'a DiskCachedStore<S>,
    key: &'a str,
    /// Where the GET starts in the object, and where `buf` does.
    start: u64,
    buf_at: u64,
    buf: Vec<u8>,
    seen: u64,
}

impl<'a, S: ObjectStore> Keeper<'a, S> {
    fn new(store: &'a DiskCachedStore<S>, key: &'a str, start: u64, seen: u64) -> Self {
        Keeper {
            store,
            key,
            start,
            buf_at: start,
            buf: Vec::new(),
            seen,
        }
    }

    /// Takes `bytes` at offset `at` of the GET.
    fn take(&mut self, at: u64, mut bytes: &[u8]) {
        let mut pos = self.start + at;
        if pos != self.buf_at + self.buf.len() as u64 {
            // A retried GET starts again: the blocks stored stay (they
            // are skipped when offered again), the partial one is rebuilt.
            self.buf.clear();
            self.buf_at = pos;
        }
        let b = self.store.cache.block;
        while !bytes.is_empty() {
            let block_end = (pos / b + 1) * b;
            let take = ((block_end - pos) as usize).min(bytes.len());
            self.buf.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            pos += take as u64;
            if pos == block_end {
                self.flush();
            }
        }
    }

    fn flush(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let b = self.store.cache.block;
        let n = self.buf_at / b;
        let how = Store::Fetched(self.seen);
        let id = (self.key.to_owned(), n);
        let at = self.buf_at - n * b;
        self.store.cache.store_block(id, at, &self.buf, how);
        self.buf_at += self.buf.len() as u64;
        self.buf.clear();
    }

    fn finish(mut self) {
        self.flush();
    }
}

impl<S: ObjectStore> ObjectStore for DiskCachedStore<S> {
    fn get(&self, key: &str) -> StoreResult<Vec<u8>> {
        self.inner.get(key)
    }
    fn get_max(&self, key: &str, max: u64) -> StoreResult<Vec<u8>> {
        self.inner.get_max(key, max)
    }
    fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Vec<u8>> {
        if !cacheable(key) || range.start >= range.end {
            return self.inner.get_range(key, range);
        }
        let mut out = Vec::with_capacity((range.end - range.start) as usize);
        self.cached_range_to(key, range, &mut |at, b| {
            out.truncate(at as usize);
            out.extend_from_slice(b);
        })?;
        Ok(out)
    }
    fn get_range_to(&self, key: &str, range: Range<u64>, sink: &mut RangeSink) -> StoreResult<()> {
        if !cacheable(key) || range.start >= range.end {
            return self.inner.get_range_to(key, range, sink);
        }
        self.cached_range_to(key, range, sink)
    }
    fn put(&self, key: &str, body: &[u8]) -> StoreResult<()> {
        self.inner.put(key, body)?;
        if cacheable(key) {
            self.cache.store_object(key, body);
        }
        Ok(())
    }
    fn put_shared(&self, key: &str, body: &Bytes) -> StoreResult<()> {
        self.inner.put_shared(key, body)?;
        if cacheable(key) {
            self.cache.store_object(key, body);
        }
        Ok(())
    }
    fn put_if_absent(&self, key: &str, body: &[u8]) -> StoreResult<()> {
        self.inner.put_if_absent(key, body)?;
        if cacheable(key) {
            self.cache.store_object(key, body);
        }
        Ok(())
    }
    fn put_if_match(&self, key: &str, body: &[u8], etag: &str) -> StoreResult<()> {
        // A re-seal replaces the object in place: the old blocks go first,
        // so no read after this call can see them.
        if cacheable(key) {
            self.cache.drop_object(key);
        }
        self.inner.put_if_match(key, body, etag)?;
        if cacheable(key) {
            self.cache.store_object(key, body);
        }
        Ok(())
    }
    fn delete(&self, key: &str) -> StoreResult<()> {
        self.cache.drop_object(key);
        self.inner.delete(key)
    }
    fn delete_many(&self, keys: &[String]) -> StoreResult<()> {
        for key in keys {
            self.cache.drop_object(key);
        }
        self.inner.delete_many(keys)
    }
    fn list(&self, prefix: &str) -> StoreResult<Vec<ObjectInfo>> {
        self.inner.list(prefix)
    }
    fn head(&self, key: &str) -> StoreResult<Option<ObjectInfo>> {
        self.inner.head(key)
    }
    fn conditional_writes(&self) -> bool {
        self.inner.conditional_writes()
    }
    fn space(&self) -> Option<(u64, u64)> {
        self.inner.space()
    }
    /// True for every object this cache could have answered for, found
    /// or not: a concurrent reader may have dropped the bad blocks (or an
    /// eviction the file) between this caller's read and now, and the
    /// caller must still read once more, fresh, not report `Integrity`.
    fn forget(&self, key: &str, range: Range<u64>) -> bool {
        if self.cache.drop_blocks(key, &range) {
            self.cache.dropped.fetch_add(1, Ordering::Relaxed);
            warn!(
                "disk cache: cached bytes {}..{} of {key} failed authentication; dropped, fetching from the store",
                range.start, range.end
            );
        }
        self.inner.forget(key, range) || cacheable(key)
    }
    fn get_range_fresh(&self, key: &str, range: Range<u64>) -> StoreResult<Vec<u8>> {
        let seen = self.cache.generation();
        let fetched = self.inner.get_range_fresh(key, range.clone())?;
        if cacheable(key) && !fetched.is_empty() {
            // What the store holds now replaces whatever was held.
            self.cache.drop_blocks(key, &range);
            self.keep(key, range.start, &fetched, seen);
        }
        Ok(fetched)
    }
}

#[cfg(test)]
mod tests;
