//! The filesystem: POSIX rules over the engine's namespace and the chunk
//! cache. Called by the FUSE adapter and, in tests, directly.
//!
//! `fs` decides what a call changes and says it as records; the engine
//! (`crate::engine`) applies them, journals them and makes them durable.
//! File data goes to the cache and reaches the store through the writeback
//! (`writeback`): pack PUT first, then the records that map it.
//!
//! Locking, in the only order it may be taken:
//! 1. a per-inode data lock (`InodeLocks`): reads share it; writes,
//!    truncates and punches are exclusive. Held across a read-modify-write
//!    of that one file, never by a FUSE worker thread waiting for it;
//! 2. `core` then the engine's tree, together ([`Fs::lock`]): open counts,
//!    attributes ahead of the journal, the namespace; never across store
//!    I/O;
//! 3. `cache`: chunk buffers; never across store I/O.
//!
//! Durability: the size a write grows a file to is journaled only up to its
//! first chunk still in the cache (see `live`), so a crash never shows a
//! file longer than its durable data. `fsync` drives the file's data to a
//! pack, journals its attributes and waits for that commit.

mod attr;
mod audit;
mod dir;
mod error;
mod file;
mod follow;
mod handles;
mod live;
mod lockdown;
mod neighbours;
mod prefetch;
mod read;
mod types;
mod writeback;

#[cfg(test)]
mod tests;

pub use error::{FsError, FsResult};
pub use follow::Invalidator;
pub use lockdown::Locked as LockReport;
pub use prefetch::READ_AHEAD_GETS;
pub use types::*;
pub use writeback::{CARRY_MAX, PACK_TARGET};

/// The root directory's inode number.
pub use crate::meta::ROOT_INO as ROOT;

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use crate::audit::Auditor;
use crate::crypto::KeyRing;
use crate::data::Cache;
use crate::engine::{CommitId, Engine, EngineOptions, Txn};
use crate::meta::{Namespace, Record};
use crate::store::ObjectStore;
use crate::volume::VolumeHeader;
use handles::{Handles, InodeLocks};
use live::Core;

#[derive(Clone, Debug)]
pub struct FsOptions {
    /// Memory budget in bytes: clean + dirty + read-ahead data, less the
    /// heap held outside the cache (`Cache::set_heap_in_use`).
    pub cache_bytes: u64,
    /// How the volume is opened and kept (read-only, commit interval,
    /// checkpoints, garbage, rollback checks, snapshots).
    pub engine: EngineOptions,
    /// Follow a writer elsewhere, polling its journal this often
    /// (read-only mounts).
    pub follow: Option<Duration>,
    /// Largest flush an fsync carries in the journal segment instead of a
    /// pack of its own (0: never; see `writeback`).
    pub carry_bytes: u64,
}

impl Default for FsOptions {
    fn default() -> Self {
        FsOptions {
            cache_bytes: 256 << 20,
            engine: EngineOptions::default(),
            follow: None,
            carry_bytes: writeback::CARRY_MAX,
        }
    }
}

impl FsOptions {
    /// Default options with `f` applied to the engine's.
    pub fn with_engine(f: impl FnOnce(&mut EngineOptions)) -> FsOptions {
        let mut opts = FsOptions::default();
        f(&mut opts.engine);
        opts
    }

    fn read_only(&self) -> bool {
        self.engine.read_only || self.engine.snapshot.is_some()
    }
}

pub struct Fs {
    engine: Arc<Engine>,
    chunk_size: u32,
    opts: FsOptions,
    core: Mutex<Core>,
    cache: Mutex<Cache>,
    /// Signalled whenever dirty or in-flight chunks change, a flush fails,
    /// or the filesystem is fenced: everyone waiting on the cache wakes.
    cache_cv: Condvar,
    handles: Handles,
    locks: InodeLocks,
    writeback: Arc<writeback::Writeback>,
    follow: follow::FollowState,
    read_only: AtomicBool,
    shut: AtomicBool,
    /// Where audited operations go (`audit`), once the mount sets it.
    auditor: OnceLock<Arc<Auditor>>,
    /// Names the kernel looked up, for audit paths.
    names: audit::Names,
    lockdown: lockdown::Lockdown,
    prefetch: prefetch::Prefetcher,
}

/// `core` and the engine's tree, locked together ([`Fs::lock`]).
pub(crate) struct Locked<'a> {
    core: MutexGuard<'a, Core>,
    txn: Txn<'a>,
}

impl Locked<'_> {
    pub fn ns(&self) -> &Namespace {
        self.txn.ns()
    }
}

impl Deref for Locked<'_> {
    type Target = Core;
    fn deref(&self) -> &Core {
        &self.core
    }
}

impl DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut Core {
        &mut self.core
    }
}

impl Fs {
    /// Writes the initial state of a new volume. Called by `sealedfs init`
    /// after the header exists.
    pub fn format(
        store: Arc<dyn ObjectStore>,
        header: &VolumeHeader,
        ring: &KeyRing,
    ) -> FsResult<()> {
        Ok(Engine::format(&*store, header, ring)?)
    }

    /// Opens a volume and starts its writeback (call after any fork).
    pub fn mount(
        store: Arc<dyn ObjectStore>,
        header: &VolumeHeader,
        ring: &KeyRing,
        opts: FsOptions,
    ) -> FsResult<Arc<Fs>> {
        let engine = Engine::open(store, header, ring, opts.engine.clone())?;
        Ok(Fs::new(engine, opts))
    }

    /// The filesystem over an open engine.
    pub fn new(engine: Arc<Engine>, opts: FsOptions) -> Arc<Fs> {
        let fs = Arc::new(Fs {
            chunk_size: engine.chunk_size(),
            read_only: AtomicBool::new(opts.read_only()),
            engine,
            core: Mutex::default(),
            cache: Mutex::new(Cache::new(opts.cache_bytes)),
            cache_cv: Condvar::new(),
            handles: Handles::default(),
            locks: InodeLocks::default(),
            writeback: Arc::default(),
            follow: follow::FollowState::default(),
            shut: AtomicBool::new(false),
            auditor: OnceLock::new(),
            names: audit::Names::default(),
            lockdown: lockdown::Lockdown::default(),
            prefetch: prefetch::Prefetcher::default(),
            opts,
        });
        prefetch::start(&fs);
        if !fs.opts.read_only() {
            writeback::start(&fs);
        }
        if let Some(interval) = fs.opts.follow {
            follow::start(&fs, interval);
        }
        fs
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    pub fn options(&self) -> &FsOptions {
        &self.opts
    }

    /// Records every audited operation from now on with `auditor`. Set
    /// once, before the mount serves anyone.
    pub fn set_auditor(&self, auditor: Arc<Auditor>) {
        if self.auditor.set(auditor).is_err() {
            log::warn!("an auditor was already set; keeping it");
        }
    }

    pub fn auditor(&self) -> Option<&Arc<Auditor>> {
        self.auditor.get()
    }

    /// Commits everything and stops the writeback (unmount, SIGTERM).
    /// Idempotent. Fails with what kept the data or the last commit from
    /// the store.
    pub fn shutdown(&self) -> FsResult<()> {
        if self.shut.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        if let Some(auditor) = self.auditor() {
            auditor.record(crate::audit::Record::admin("unmount"));
        }
        if self.opts.read_only() {
            return Ok(());
        }
        let staged = self.stage_all();
        self.writeback.stop();
        let committed = self.engine.shutdown();
        staged?;
        Ok(committed?)
    }

    /// Stops everything without committing: what a SIGKILL leaves behind.
    /// Tests use it to simulate a crash.
    pub fn abandon(&self) {
        if self.shut.swap(true, Ordering::SeqCst) {
            return;
        }
        self.engine.abandon();
        self.writeback.stop();
        self.cache_cv.notify_all();
    }

    /// Turns the filesystem read-only for good because another writer may
    /// own the volume now (lost lease): writes fail with EROFS, `fsync` of
    /// anything not yet committed with EIO, and nothing more is uploaded,
    /// committed or deleted. The caller logs why.
    pub fn fence(&self, why: &str) {
        self.engine.fence(why);
        self.read_only.store(true, Ordering::SeqCst);
        self.cache_cv.notify_all();
    }

    /// Read-only by option, or for good since the engine failed or was
    /// fenced.
    pub fn is_read_only(&self) -> bool {
        self.read_only.load(Ordering::Relaxed) || self.engine.is_read_only()
    }

    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// What the cache holds and what is open, for `status`.
    pub fn usage(&self) -> Usage {
        let cache = self.cache();
        Usage {
            cache_budget_bytes: cache.budget(),
            cache_clean_bytes: cache.clean_bytes(),
            cache_dirty_bytes: cache.dirty_bytes(),
            cache_outside_bytes: cache.budget() - cache.room(),
            uploading: cache.any_in_flight(),
            open_handles: self.handles.len() as u64,
        }
    }

    /// The allocator's heap bytes in use, measured by the daemon: what is
    /// not the cache's own counts against its budget
    /// (`Cache::set_heap_in_use`). Writers waiting for room may now fit.
    pub fn note_heap_in_use(&self, in_use: u64) {
        if self.cache().set_heap_in_use(in_use) {
            self.cache_cv.notify_all();
        }
    }

    /// Flushes all dirty data and commits every change so far.
    pub fn sync_all(&self) -> FsResult<()> {
        if self.opts.read_only() {
            return Ok(());
        }
        let id = self.stage_all()?;
        self.wait_durable(id)
    }

    /// Flushes all dirty data and journals every attribute that ran ahead;
    /// returns the id to wait on.
    fn stage_all(&self) -> FsResult<CommitId> {
        self.flush_all_dirty()?;
        let mut l = self.lock();
        let inos: Vec<u64> = l.live.keys().copied().collect();
        let records = inos
            .into_iter()
            .filter(|&ino| l.ns().get(ino).is_some())
            .collect::<Vec<_>>()
            .into_iter()
            .map(|ino| self.inode_record(&mut l, ino))
            .collect();
        self.apply_upkeep(&mut l, records)
    }

    /// `core` and the tree, in that order. `core` holds counters and maps
    /// changed in single steps, so a panic elsewhere cannot leave it half
    /// changed: poisoning is ignored (and the tree's is logged by the
    /// engine).
    pub(crate) fn lock(&self) -> Locked<'_> {
        let core = self.core.lock().unwrap_or_else(|p| p.into_inner());
        Locked {
            core,
            txn: self.engine.lock(),
        }
    }

    pub(crate) fn cache(&self) -> MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn check_writable(&self) -> FsResult<()> {
        if self.is_read_only() {
            return Err(FsError::ReadOnly);
        }
        Ok(())
    }

    /// Applies a caller's change through the engine and records the
    /// audited operation under way (`audit`); returns the id to wait on.
    pub(crate) fn apply(&self, l: &mut Locked<'_>, records: Vec<Record>) -> FsResult<CommitId> {
        let id = l.txn.apply(records)?;
        audit::recording(self);
        Ok(id)
    }

    /// Applies records no caller asked for as such (data reaching the
    /// store, attributes catching up), so an audited operation that
    /// flushes data first is still recorded with its own outcome.
    pub(crate) fn apply_upkeep(
        &self,
        l: &mut Locked<'_>,
        records: Vec<Record>,
    ) -> FsResult<CommitId> {
        Ok(l.txn.apply(records)?)
    }

    pub(crate) fn wait_durable(&self, id: CommitId) -> FsResult<()> {
        self.engine.wait_durable(id).map_err(|e| {
            log::error!("waiting for a commit: {e}");
            FsError::from(e)
        })
    }
}

impl Drop for Fs {
    fn drop(&mut self) {
        if !self.shut.load(Ordering::SeqCst) && !self.opts.read_only() {
            if let Err(e) = self.shutdown() {
                log::error!("shutdown on drop failed: {e}");
            }
        }
    }
}
