//! The filesystem core: POSIX rules over the namespace, the chunk cache
//! and the journal. Called by the FUSE adapter and, in tests, directly.
//!
//! Locking, in the only order it may be taken:
//! 1. a per-inode data lock (`InodeLocks`), held across store I/O for that
//!    file only (reads share it; writes, truncates, punches are exclusive);
//! 2. `core`: the namespace and open counts; never held across store I/O;
//! 3. `cache`: chunk buffers; never held across store I/O;
//! 4. the journal's own lock (appends happen while `core` is held, so the
//!    journal order is the order in which the namespace changed).
//!
//! Durability: namespace changes are applied and appended to the journal
//! at once; file data goes to the cache and reaches the journal through the
//! flusher (pack PUT first, then the records that point at it). `fsync`
//! drives both and waits for the commit. The size a write grows a file to
//! is journaled only up to its first still-dirty chunk, so a crash never
//! shows a file longer than its durable data.

mod attr;
mod background;
mod compact;
mod dir;
mod error;
mod file;
mod handles;
mod types;

#[cfg(test)]
mod tests;

pub use error::{FsError, FsResult};
pub use types::*;

/// The root directory's inode number.
pub use crate::meta::ROOT_INO as ROOT;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::crypto::{Keys, MasterKey};
use crate::data::{Cache, PackId};
use crate::meta::journal::{journal_key, open_segment};
use crate::meta::{InodeAttr, Journal, MetaError, Namespace, Record, checkpoint};
use crate::store::{ObjectStore, StoreError};
use crate::volume::VolumeHeader;
use handles::{Handles, InodeLocks};

#[derive(Clone, Debug)]
pub struct FsOptions {
    pub read_only: bool,
    /// Plaintext cache budget in bytes (clean + dirty + read-ahead).
    pub cache_bytes: u64,
    /// Background commit interval for changes nobody fsynced.
    pub commit_interval: Duration,
    /// Objects no committed state references are deleted only when older
    /// than this (by the store's clock).
    pub gc_grace: Duration,
    /// Journal bytes after which a checkpoint is written.
    pub checkpoint_bytes: u64,
    /// Commit a (maybe empty) journal segment before anything else: set by
    /// a mount that took the writer's lease over, so the writer it
    /// replaced can no longer commit (see `crate::lease`).
    pub claim_journal: bool,
}

impl Default for FsOptions {
    fn default() -> Self {
        FsOptions {
            read_only: false,
            cache_bytes: 256 << 20,
            commit_interval: Duration::from_secs(1),
            gc_grace: Duration::from_secs(6 * 3600),
            checkpoint_bytes: 8 << 20,
            claim_journal: false,
        }
    }
}

/// State under the `core` lock.
pub(crate) struct Core {
    pub ns: Namespace,
    /// Open handles per inode.
    pub opens: HashMap<u64, u32>,
    /// Inodes whose in-memory size ran ahead of the journal: ino → the
    /// size last journaled.
    pub unjournaled: HashMap<u64, u64>,
}

pub struct Fs {
    store: Arc<dyn ObjectStore>,
    keys: Keys,
    volume_id: [u8; 16],
    chunk_size: u32,
    opts: FsOptions,
    core: Mutex<Core>,
    cache: Mutex<Cache>,
    /// Signalled when dirty bytes drop or a flush finishes.
    cache_cv: Condvar,
    journal: Arc<Journal>,
    handles: Handles,
    locks: InodeLocks,
    flush: Arc<background::FlushControl>,
    gc: Mutex<background::GcState>,
    read_only: AtomicBool,
    threads: Mutex<Vec<JoinHandle<()>>>,
    shut: AtomicBool,
}

impl Fs {
    /// Writes the initial state of a new volume (the root directory) as
    /// checkpoint 0. Called by `sealedfs init` after the header exists.
    pub fn format(
        store: Arc<dyn ObjectStore>,
        header: &VolumeHeader,
        master: &MasterKey,
    ) -> FsResult<()> {
        let keys = Keys::derive(master, &header.volume_id);
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        let root = InodeAttr::new(Kind::Dir, 0o755, uid, gid);
        let ns = Namespace::new(header.chunk_size, root);
        let all = ns.inodes.keys().map(|&i| checkpoint::shard_of(i)).collect();
        let prepared = checkpoint::prepare(&ns, &all, &HashMap::new());
        checkpoint::write(&*store, &keys, &header.volume_id, 0, [0; 32], prepared, &[])?;
        Ok(())
    }

    /// Opens a volume: newest checkpoint plus journal replay, then starts
    /// the flusher and committer threads (call after any fork).
    pub fn mount(
        store: Arc<dyn ObjectStore>,
        header: &VolumeHeader,
        master: &MasterKey,
        opts: FsOptions,
    ) -> FsResult<Arc<Fs>> {
        let keys = Keys::derive(master, &header.volume_id);
        let (ns, last_seq, last_hash, base_seq, shards) = load(&*store, &keys, &header.volume_id)?;
        if ns.chunk_size != header.chunk_size {
            return Err(FsError::Io(format!(
                "checkpoint chunk size {} differs from the header's {}",
                ns.chunk_size, header.chunk_size
            )));
        }
        log::info!(
            "volume loaded: checkpoint {base_seq}, journal through {last_seq}, {} inodes, {} packs",
            ns.inodes.len(),
            ns.packs.len()
        );
        let fs = Arc::new(Fs {
            keys,
            volume_id: header.volume_id,
            chunk_size: header.chunk_size,
            cache: Mutex::new(Cache::new(opts.cache_bytes)),
            cache_cv: Condvar::new(),
            journal: Arc::new(Journal::new(last_seq, last_hash)),
            handles: Handles::default(),
            locks: InodeLocks::default(),
            flush: Arc::default(),
            gc: Mutex::new(background::GcState::new(base_seq, last_seq, shards)),
            read_only: AtomicBool::new(opts.read_only),
            threads: Mutex::new(Vec::new()),
            shut: AtomicBool::new(false),
            core: Mutex::new(Core {
                ns,
                opens: HashMap::new(),
                unjournaled: HashMap::new(),
            }),
            store,
            opts,
        });
        if !crate::crypto::keys::lock_in_memory(&fs.keys) {
            log::warn!("could not lock the keys in memory (RLIMIT_MEMLOCK); use encrypted swap");
        }
        if fs.opts.claim_journal && !fs.opts.read_only {
            fs.claim_journal()?;
        }
        fs.clamp_past_eof()?;
        if !fs.opts.read_only {
            fs.drop_orphans()?;
            background::start(&fs);
        }
        Ok(fs)
    }

    /// Commits everything and stops the background threads (unmount,
    /// SIGTERM). Idempotent.
    pub fn shutdown(&self) -> FsResult<()> {
        if self.shut.swap(true, Ordering::SeqCst) || self.opts.read_only {
            return Ok(());
        }
        let staged = self.stage_all();
        self.flush.stop();
        self.journal.shutdown();
        let threads = std::mem::take(&mut *self.threads.lock().unwrap());
        let me = std::thread::current().id();
        for t in threads {
            // The last reference may be dropped on a background thread,
            // which must not wait for itself.
            if t.thread().id() != me {
                let _ = t.join();
            }
        }
        // The rest commits here, not on the committer: on `Drop` it can no
        // longer reach this `Fs`.
        while self.commit_once()? {}
        staged?;
        match self.journal.failure() {
            Some(f) => Err(FsError::Io(f)),
            None => Ok(()),
        }
    }

    /// Stops the background threads without committing anything: what a
    /// SIGKILL leaves behind. Tests use it to simulate a crash.
    pub fn abandon(&self) {
        if self.shut.swap(true, Ordering::SeqCst) {
            return;
        }
        self.journal.fail("abandoned".into());
        self.flush.stop();
        self.journal.shutdown();
        let threads = std::mem::take(&mut *self.threads.lock().unwrap());
        for t in threads {
            let _ = t.join();
        }
    }

    /// Turns the filesystem read-only for good because another writer may
    /// own the volume now (lost lease): writes fail with EROFS, `fsync` of
    /// anything not yet committed with EIO, and nothing more is uploaded,
    /// committed or deleted. The caller logs why.
    pub fn fence(&self, why: &str) {
        self.journal.fail(format!("fenced: {why}"));
        self.read_only.store(true, Ordering::SeqCst);
        self.cache_cv.notify_all();
    }

    /// Commits a segment at the next seq before anything else happens.
    /// Losing that create-only PUT means another writer committed since
    /// the journal was replayed: the volume is busy (`AlreadyExists`).
    fn claim_journal(&self) -> FsResult<()> {
        self.journal.request_segment();
        let batch = self.journal.take().expect("a requested segment");
        let seq = batch.seq;
        match self
            .journal
            .commit(&*self.store, &self.keys, &self.volume_id, batch)
        {
            Ok(_) => {
                log::info!("took the writer's lease over: claimed journal seq {seq:016x}");
                Ok(())
            }
            Err(MetaError::Fenced { seq }) => Err(FsError::Store(StoreError::AlreadyExists {
                key: journal_key(seq),
            })),
            Err(e) => Err(e.into()),
        }
    }

    /// True once the filesystem can commit nothing more (fenced, or an
    /// upload or commit failed for good).
    pub(crate) fn is_failed(&self) -> bool {
        self.journal.failure().is_some()
    }

    /// Read-only by option, or since the filesystem failed or was fenced
    /// (a failed journal counts at once: the thread that saw the failure
    /// may not have flagged it yet).
    pub fn is_read_only(&self) -> bool {
        self.read_only.load(Ordering::Relaxed) || self.is_failed()
    }

    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Flushes all dirty data and commits every change so far.
    pub fn sync_all(&self) -> FsResult<()> {
        if self.opts.read_only {
            return Ok(());
        }
        let id = self.stage_all()?;
        self.wait_durable(id)
    }

    /// Flushes all dirty data and journals every size that ran ahead;
    /// returns the id of the last record appended.
    fn stage_all(&self) -> FsResult<u64> {
        let inos: Vec<u64> = self.core().unjournaled.keys().copied().collect();
        self.flush_all_dirty()?;
        let mut core = self.core();
        let recs = inos
            .into_iter()
            .filter(|ino| core.ns.get(*ino).is_some())
            .collect::<Vec<_>>()
            .into_iter()
            .map(|ino| self.inode_record(&mut core, ino))
            .collect();
        let id = self.apply(&mut core, recs)?;
        Ok(id.max(self.journal.appended()))
    }

    pub(crate) fn core(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap()
    }

    pub(crate) fn cache(&self) -> MutexGuard<'_, Cache> {
        self.cache.lock().unwrap()
    }

    fn check_writable(&self) -> FsResult<()> {
        if self.is_read_only() {
            return Err(FsError::ReadOnly);
        }
        Ok(())
    }

    /// Applies records to the namespace and appends them to the journal;
    /// packs left with no live bytes are retired in the same breath.
    /// Returns the id of the last record appended.
    pub(crate) fn apply(&self, core: &mut Core, records: Vec<Record>) -> FsResult<u64> {
        if records.is_empty() {
            return Ok(self.journal.appended());
        }
        let mut all = Vec::with_capacity(records.len());
        for r in records {
            // A journaled size may lag the live one (see `inode_record`);
            // the namespace keeps serving the live size.
            let live_size = match &r {
                Record::Inode { ino, .. } if core.unjournaled.contains_key(ino) => {
                    core.ns.get(*ino).map(|i| (*ino, i.attr.size))
                }
                _ => None,
            };
            let dead = core.ns.apply(&r).map_err(|e| FsError::Io(e.to_string()))?;
            if let Some((ino, size)) = live_size {
                if let Some(i) = core.ns.get_mut(ino) {
                    i.attr.size = size;
                }
            }
            all.push(r);
            for id in dead {
                let gone = Record::PackGone { id };
                core.ns
                    .apply(&gone)
                    .map_err(|e| FsError::Io(e.to_string()))?;
                all.push(gone);
            }
        }
        Ok(self.journal.append(all))
    }

    /// The `Inode` record for `ino`, with the size clamped to what is
    /// durable: never past the first chunk still waiting in the cache.
    pub(crate) fn inode_record(&self, core: &mut Core, ino: u64) -> Record {
        let mut attr = core.ns.get(ino).expect("caller checked").attr;
        if let Some(&journaled) = core.unjournaled.get(&ino) {
            let first_dirty = self.cache().first_dirty(ino);
            match first_dirty {
                None => {
                    core.unjournaled.remove(&ino);
                }
                Some(c) => {
                    let durable_end = c * self.chunk_size as u64;
                    let size = journaled.max(attr.size.min(durable_end));
                    core.unjournaled.insert(ino, size);
                    attr.size = size;
                }
            }
        }
        Record::Inode { ino, attr }
    }

    pub(crate) fn wait_durable(&self, id: u64) -> FsResult<()> {
        self.journal.wait_durable(id).map_err(|e| {
            log::error!("{e}");
            FsError::Io(e)
        })
    }

    /// A crash can leave a flushed chunk mapping bytes past the journaled
    /// size (the size record was still waiting for a later chunk). Those
    /// bytes must never reappear when the file grows, so every map is cut
    /// back to its file's size before anything else happens.
    fn clamp_past_eof(&self) -> FsResult<()> {
        let mut core = self.core();
        let cs = self.chunk_size;
        let records: Vec<Record> = core
            .ns
            .inodes
            .iter()
            .filter(|(_, i)| i.chunks().is_some_and(|m| m.extends_past(i.attr.size, cs)))
            .map(|(&ino, i)| Record::Truncate {
                ino,
                size: i.attr.size,
            })
            .collect();
        if records.is_empty() {
            return Ok(());
        }
        log::info!(
            "cutting {} files back to their journaled size after a crash",
            records.len()
        );
        if self.opts.read_only {
            for r in &records {
                core.ns.apply(r).map_err(|e| FsError::Io(e.to_string()))?;
            }
            Ok(())
        } else {
            self.apply(&mut core, records).map(|_| ())
        }
    }

    /// Inodes left as orphans by an earlier mount are dropped now: no
    /// process can hold them open any more.
    fn drop_orphans(&self) -> FsResult<()> {
        let mut core = self.core();
        let orphans: Vec<u64> = core.ns.orphans.iter().copied().collect();
        let recs = orphans
            .into_iter()
            .map(|ino| Record::Drop { ino })
            .collect();
        self.apply(&mut core, recs)?;
        Ok(())
    }

    /// Store keys of packs no longer referenced, for the GC thread.
    pub(crate) fn note_freed(&self, seq: u64, packs: Vec<PackId>) {
        self.gc
            .lock()
            .unwrap()
            .freed
            .extend(packs.into_iter().map(|p| (seq, p)));
    }
}

impl Drop for Fs {
    fn drop(&mut self) {
        if !self.shut.load(Ordering::SeqCst) && !self.opts.read_only {
            if let Err(e) = self.shutdown() {
                log::error!("shutdown on drop failed: {e}");
            }
        }
    }
}

/// Loads the newest readable checkpoint and replays the journal after it.
/// Returns (namespace, last seq, its hash, checkpoint seq, its shards).
#[allow(clippy::type_complexity)]
fn load(
    store: &dyn ObjectStore,
    keys: &Keys,
    volume_id: &[u8; 16],
) -> FsResult<(Namespace, u64, [u8; 32], u64, Vec<checkpoint::ShardRef>)> {
    let seqs = checkpoint::list(store)?;
    let mut last_err: Option<MetaError> = None;
    for base in seqs {
        match checkpoint::read(store, keys, volume_id, base) {
            Ok(loaded) => {
                let mut ns = loaded.ns;
                let (last, hash) =
                    replay(store, keys, volume_id, &mut ns, base, loaded.journal_hash)?;
                ns.check().map_err(|e| FsError::Io(e.to_string()))?;
                return Ok((ns, last, hash, base, loaded.shards));
            }
            Err(e) => {
                log::error!("checkpoint {base:016x} unreadable, trying an older one: {e}");
                last_err = Some(e);
            }
        }
    }
    Err(match last_err {
        Some(e) => meta_error(e),
        None => FsError::Io("volume has no checkpoint".into()),
    })
}

fn replay(
    store: &dyn ObjectStore,
    keys: &Keys,
    volume_id: &[u8; 16],
    ns: &mut Namespace,
    base: u64,
    mut hash: [u8; 32],
) -> FsResult<(u64, [u8; 32])> {
    let mut seq = base;
    loop {
        let key = journal_key(seq + 1);
        let sealed = match store.get(&key) {
            Ok(b) => b,
            Err(StoreError::NotFound { .. }) => break,
            Err(e) => return Err(e.into()),
        };
        let seg = open_segment(keys, volume_id, seq + 1, &sealed).map_err(meta_error)?;
        if seg.prev_hash != hash {
            return Err(FsError::Integrity(
                crate::crypto::CryptoError::Authentication {
                    object: key,
                    unit: 0,
                },
            ));
        }
        for r in &seg.records {
            ns.apply(r)
                .map_err(|e| FsError::Io(format!("{key}: {e}")))?;
        }
        hash = crate::crypto::sha256(&sealed);
        seq += 1;
    }
    Ok((seq, hash))
}

pub(crate) fn meta_error(e: MetaError) -> FsError {
    match e {
        MetaError::Store(s) => FsError::Store(s),
        MetaError::Crypto(c) => FsError::Integrity(c),
        MetaError::Corrupt(c) => FsError::Io(c.to_string()),
        MetaError::Fenced { seq } => {
            FsError::Io(format!("journal seq {seq:016x} fenced by another writer"))
        }
    }
}

impl From<MetaError> for FsError {
    fn from(e: MetaError) -> FsError {
        meta_error(e)
    }
}
