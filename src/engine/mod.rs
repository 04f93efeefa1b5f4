//! The volume engine: the volume's durable life, below the POSIX rules.
//!
//! `fs` decides *what* changes and says it in records; the engine owns the
//! namespace those records change and everything that makes it durable:
//! opening (newest checkpoint, journal replay, hash-chain checks), applying
//! records and handing back a commit id, waiting until an id is durable,
//! group commit, checkpoints and their retention, journal trimming,
//! garbage collection, compaction, the claim after a lease takeover, and
//! shutdown. Features above `fs` (snapshots, followers, fsck, replicas)
//! reach the volume's state here, never through `fs`.
//!
//! Rules:
//! - The namespace changes only through [`Txn::apply`] (and replay, which
//!   uses the same `Namespace::apply`): the tree in memory is exactly the
//!   journaled one, record for record.
//! - Journal order is namespace order: records are appended while the
//!   tree lock is held.
//! - A record that points at a pack enters the journal only after the pack
//!   is durable ([`Engine::write_pack`] returns once it is).
//! - Locking, in order: the caller's own locks, then the tree, then the
//!   journal's and the retention state's short locks. No lock is held
//!   across store I/O: checkpoints are encoded under the tree lock and
//!   sealed and written outside it.
//! - Failures are typed ([`Failure`]): a fenced, corrupt or abandoned
//!   engine commits nothing again; a store that did not take a commit
//!   leaves it to be retried, and every waiter gets the store's error.
//!
//! Threads (read-write engines only): the committer (group commit, then
//! checkpoint, retention and retired-pack deletion) and a one-shot sweep
//! of unreferenced objects at open. Compaction runs when the caller says
//! the volume is idle ([`Engine::compact_once`]).

mod committer;
mod compact;
mod error;
mod follow;
mod fsck;
mod garbage;
mod journal;
mod load;
mod packs;
mod reseal;
mod retention;
mod rollback;
mod snapshots;
mod vault;

#[cfg(test)]
mod tests;

pub use error::{EngineError, EngineResult, Failure};
pub use follow::Followed;
pub use fsck::{FsckReport, Problem, Severity};
pub use garbage::Referenced;
pub use journal::CommitId;
pub use load::Loaded;
pub use packs::{PackRecords, Written};
pub use reseal::{ResealProgress, ResealReport};
pub use rollback::{Anchor, Expected, Head, Regression, Regressions};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::crypto::{KeyRing, Keys};
use crate::meta::{Corrupt, InodeAttr, Kind, Namespace, Record};
use crate::meta::{checkpoint, snapshot};
use crate::store::ObjectStore;
use crate::volume::VolumeHeader;
use journal::Journal;
use retention::Retention;

#[derive(Clone, Debug)]
pub struct EngineOptions {
    pub read_only: bool,
    /// Changes nobody waits for commit within this long.
    pub commit_interval: Duration,
    /// Objects no committed state references are deleted only when older
    /// than this (by the store's clock).
    pub gc_grace: Duration,
    /// Journal bytes after which a checkpoint is written.
    pub checkpoint_bytes: u64,
    /// How long a pack retired by a commit is kept before it is deleted,
    /// so a follower that has not caught up yet can still read it: the lag
    /// a follower may have before it must reload.
    pub retire_grace: Duration,
    /// Commit a (maybe empty) journal segment before anything else: set by
    /// a mount that took the writer's lease over, so the writer it
    /// replaced can no longer commit (see `crate::lease`).
    pub claim_journal: bool,
    /// Newer states seen elsewhere: opening an older one is refused (see
    /// `rollback`).
    pub expected: Expected,
    /// Open this snapshot (by name) instead of the newest state: read-only,
    /// from its checkpoint alone.
    pub snapshot: Option<String>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            read_only: false,
            commit_interval: Duration::from_secs(1),
            gc_grace: Duration::from_secs(6 * 3600),
            checkpoint_bytes: 8 << 20,
            retire_grace: Duration::from_secs(300),
            claim_journal: false,
            expected: Expected::default(),
            snapshot: None,
        }
    }
}

pub struct Engine {
    store: Arc<dyn ObjectStore>,
    keys: vault::Vault,
    volume_id: [u8; 16],
    chunk_size: u32,
    opts: EngineOptions,
    tree: Mutex<Namespace>,
    /// Shared with the committer thread, which waits on it without
    /// keeping the engine alive.
    journal: Arc<Journal>,
    retention: Mutex<Retention>,
    /// Signalled when a checkpoint is written or fails.
    checkpointed: Condvar,
    /// Called with each new committed head (a host's anchor, the lease).
    on_commit: Mutex<Vec<CommitHook>>,
    /// The older-than-seen findings this open accepted.
    regressions: Vec<Regression>,
    /// Makes something durable before each journal segment and names it
    /// in the segment (the audit trail's head).
    binder: Mutex<Option<Binder>>,
    /// What the newest sealed segment binds.
    bound: Mutex<Option<(u64, [u8; 32])>>,
    /// Wall clock of the last commit (ms since the epoch; 0: none yet).
    last_commit_ms: std::sync::atomic::AtomicU64,
    threads: Mutex<Vec<JoinHandle<()>>>,
    shut: AtomicBool,
    /// Pack bodies kept for reuse (`packs`).
    bodies: Mutex<Vec<Vec<u8>>>,
}

/// Told every committed head, on the committer thread, outside all locks.
pub type CommitHook = Box<dyn Fn(Head) + Send + Sync>;

/// Called before each journal segment is sealed: makes its chain durable
/// and returns the head (seq, hash) the segment binds.
pub type Binder = Box<dyn Fn() -> Result<(u64, [u8; 32]), crate::store::StoreError> + Send + Sync>;

/// The tree, locked: read it, or change it by applying records.
pub struct Txn<'a> {
    ns: MutexGuard<'a, Namespace>,
    engine: &'a Engine,
}

impl Txn<'_> {
    pub fn ns(&self) -> &Namespace {
        &self.ns
    }

    /// Reserves an inode number for a `Record::Inode` about to be applied.
    pub fn alloc_ino(&mut self) -> u64 {
        self.ns.alloc_ino()
    }

    /// Applies records to the tree and appends them to the journal; packs
    /// left with no live bytes are retired in the same step. Returns the
    /// id to wait on for durability.
    pub fn apply(&mut self, records: Vec<Record>) -> EngineResult<CommitId> {
        let journal = &self.engine.journal;
        if self.engine.opts.read_only {
            return Err(EngineError::ReadOnly);
        }
        if let Some(f) = journal.sticky_failure() {
            return Err(f.into());
        }
        if records.is_empty() {
            return Ok(journal.appended());
        }
        let mut all = Vec::with_capacity(records.len());
        for r in records {
            let dead = match self.ns.apply(&r) {
                Ok(dead) => dead,
                Err(e) => {
                    // The caller checked its rules and still produced a
                    // record the tree refuses: committing more from here
                    // could only spread the damage.
                    let f = Failure::Corrupt(format!("a change contradicts the tree: {}", e.0));
                    let msg = format_args!("{f}; the volume is now read-only until remounted");
                    crate::alert::raise(crate::alert::Alert::Integrity, msg);
                    journal.append(all);
                    journal.fail(f.clone());
                    return Err(f.into());
                }
            };
            all.push(r);
            for id in dead {
                let gone = Record::PackGone { id };
                self.ns
                    .apply(&gone)
                    .expect("a pack that just died is in the table");
                all.push(gone);
            }
        }
        Ok(journal.append(all))
    }
}

impl Engine {
    /// Writes the initial state of a new volume (the root directory, owned
    /// by the caller) as checkpoint 0. `init` calls it after the header.
    pub fn format(
        store: &dyn ObjectStore,
        header: &VolumeHeader,
        ring: &KeyRing,
    ) -> EngineResult<()> {
        let keys = Keys::from_ring(ring, &header.volume_id);
        // SAFETY: getuid and getgid cannot fail and touch no memory.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        let root = InodeAttr::new(Kind::Dir, 0o755, uid, gid);
        let ns = Namespace::new(header.chunk_size, root);
        let prepared = checkpoint::prepare(&ns, &ns.all_shards());
        checkpoint::write(store, &keys, &header.volume_id, 0, [0; 32], prepared, &[])?;
        Ok(())
    }

    /// Opens a volume: newest checkpoint plus journal replay; a read-write
    /// engine then claims the journal if asked, repairs what a crash left
    /// (bytes mapped past EOF, orphans) and starts its threads. Call after
    /// any fork.
    pub fn open(
        store: Arc<dyn ObjectStore>,
        header: &VolumeHeader,
        ring: &KeyRing,
        opts: EngineOptions,
    ) -> EngineResult<Arc<Engine>> {
        let keys = Keys::from_ring(ring, &header.volume_id);
        if let Some(name) = &opts.snapshot {
            return Engine::open_snapshot(store, header, keys, name, opts.clone());
        }
        let loaded = load::load(&*store, &keys, &header.volume_id)?;
        let regressions = rollback::check(
            &rollback::Found {
                volume_id: header.volume_id,
                head: Head {
                    seq: loaded.last_seq,
                    hash: loaded.last_hash,
                },
                chain: &loaded.chain,
                skipped: &loaded.skipped,
                beyond: loaded.beyond,
            },
            &opts.expected,
        );
        if !regressions.is_empty() {
            if !opts.expected.accept_rollback {
                return Err(EngineError::Rollback(rollback::Regressions(regressions)));
            }
            for r in &regressions {
                log::warn!("accepted rollback: {r}");
            }
        }
        if loaded.ns.chunk_size() != header.chunk_size {
            return Err(Corrupt(format!(
                "checkpoint chunk size {} differs from the header's {}",
                loaded.ns.chunk_size(),
                header.chunk_size
            ))
            .into());
        }
        let (loaded_last, loaded_beyond) = (loaded.last_seq, loaded.beyond);
        log::info!(
            "volume loaded: checkpoint {:016x}, journal through {:016x}, {} inodes, {} packs",
            loaded.base_seq,
            loaded.last_seq,
            loaded.ns.inode_count(),
            loaded.ns.pack_count()
        );
        let sweep = regressions.is_empty();
        let engine = Engine::assemble(store, header, keys, loaded, opts, regressions);
        if engine.opts.read_only {
            engine.clamp_past_eof_in_memory();
            return Ok(engine);
        }
        if let Some(newest) = loaded_beyond {
            // Accepted with a hole: the segments past it would collide with
            // the next commits. They move aside, kept (and their packs with
            // them: no sweep runs while the attic holds anything).
            engine.move_to_attic(loaded_last + 1, newest)?;
        }
        engine.pin_snapshots()?;
        if engine.opts.claim_journal {
            engine.claim_journal()?;
        }
        engine.clamp_past_eof()?;
        engine.drop_orphans()?;
        committer::start(&engine, sweep);
        Ok(engine)
    }

    fn assemble(
        store: Arc<dyn ObjectStore>,
        header: &VolumeHeader,
        keys: Keys,
        loaded: Loaded,
        opts: EngineOptions,
        regressions: Vec<Regression>,
    ) -> Arc<Engine> {
        Arc::new(Engine {
            journal: Arc::new(Journal::new(loaded.last_seq, loaded.last_hash)),
            retention: Mutex::new(Retention::new(&loaded)),
            checkpointed: Condvar::new(),
            on_commit: Mutex::new(Vec::new()),
            regressions,
            binder: Mutex::new(None),
            bound: Mutex::new(None),
            last_commit_ms: std::sync::atomic::AtomicU64::new(0),
            tree: Mutex::new(loaded.ns),
            keys: vault::Vault::new(keys),
            volume_id: header.volume_id,
            chunk_size: header.chunk_size,
            threads: Mutex::new(Vec::new()),
            shut: AtomicBool::new(false),
            bodies: Mutex::new(Vec::new()),
            store,
            opts,
        })
    }

    /// A snapshot, read-only from its checkpoint (see `snapshots`).
    fn open_snapshot(
        store: Arc<dyn ObjectStore>,
        header: &VolumeHeader,
        keys: Keys,
        name: &str,
        mut opts: EngineOptions,
    ) -> EngineResult<Arc<Engine>> {
        opts.read_only = true;
        let seq = snapshot::find(&*store, &keys, &header.volume_id, name)?
            .map(|(_, r)| r.checkpoint)
            .ok_or_else(|| EngineError::Invalid(format!("no snapshot named {name:?}")))?;
        let loaded = load::load_checkpoint(&*store, &keys, &header.volume_id, seq)?;
        log::info!(
            "snapshot loaded: checkpoint {seq:016x}, {} inodes",
            loaded.ns.inode_count()
        );
        Ok(Engine::assemble(
            store,
            header,
            keys,
            loaded,
            opts,
            Vec::new(),
        ))
    }

    /// The tree, locked. A panic while it was held is logged and the lock
    /// taken anyway: records apply one at a time, so the tree is a state
    /// some sequence of whole records produced, and a wedged mount would
    /// help nobody.
    pub fn lock(&self) -> Txn<'_> {
        let ns = self.tree.lock().unwrap_or_else(|p| {
            log::error!("a thread panicked while changing the tree; carrying on");
            self.tree.clear_poison();
            p.into_inner()
        });
        Txn { ns, engine: self }
    }

    fn tree(&self) -> MutexGuard<'_, Namespace> {
        self.lock().ns
    }

    fn retention(&self) -> MutexGuard<'_, Retention> {
        self.retention.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    pub fn volume_id(&self) -> &[u8; 16] {
        &self.volume_id
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Read-only by option, or for good since a sticky failure.
    pub fn is_read_only(&self) -> bool {
        self.opts.read_only || self.journal.sticky_failure().is_some()
    }

    /// Why the engine is not committing right now, if it is not.
    pub fn failure(&self) -> Option<Failure> {
        self.journal.failure()
    }

    /// The failure that will never clear, if any.
    pub fn sticky_failure(&self) -> Option<Failure> {
        self.journal.sticky_failure()
    }

    /// The last durable journal seq and the hash of its sealed bytes (the
    /// head of the hash chain).
    /// Wipes the keys (a locked mount): commits, reads and checkpoints
    /// wait until [`Engine::unlock_keys`]. Returns whether every key byte
    /// read back as zero.
    pub fn lock_keys(&self) -> bool {
        self.keys.lock()
    }

    /// Derives the keys again from the key ring.
    pub fn unlock_keys(&self, ring: &KeyRing) {
        self.keys.unlock(Keys::from_ring(ring, &self.volume_id));
    }

    pub fn is_locked(&self) -> bool {
        self.keys.is_locked()
    }

    /// When this engine last committed (ms since the epoch), if it did.
    pub fn last_commit_ms(&self) -> Option<u64> {
        Some(self.last_commit_ms.load(Ordering::Relaxed)).filter(|&t| t > 0)
    }

    pub fn committed(&self) -> (u64, [u8; 32]) {
        self.journal.committed()
    }

    /// True when this open found an older state than one seen and the
    /// caller accepted it.
    pub fn accepted_rollback(&self) -> bool {
        !self.regressions.is_empty()
    }

    /// Binds each journal segment from now on to what `binder` makes
    /// durable first (see [`Binder`]).
    pub fn bind(&self, binder: Binder) {
        *self.binder.lock().unwrap_or_else(|p| p.into_inner()) = Some(binder);
    }

    /// Calls `hook` with every head committed from now on.
    pub fn on_commit(&self, hook: CommitHook) {
        self.on_commit
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(hook);
    }

    /// The id of the last record appended.
    pub fn appended(&self) -> CommitId {
        self.journal.appended()
    }

    /// True while records are appended but not yet durable.
    pub fn has_unacknowledged(&self) -> bool {
        self.journal.has_unacknowledged()
    }

    /// Blocks until `id` and every record before it are durable; fails if
    /// a commit attempt fails meanwhile or the engine fails for good.
    pub fn wait_durable(&self, id: CommitId) -> EngineResult<()> {
        if self.opts.read_only {
            return Ok(());
        }
        self.journal.wait_durable(id)
    }

    /// Turns the engine read-only for good because another writer may own
    /// the volume now: nothing more is uploaded, committed or deleted.
    pub fn fence(&self, why: &str) {
        self.journal.fail(Failure::Fenced(why.to_owned()));
    }

    /// Commits everything appended and stops the threads (unmount,
    /// SIGTERM). Idempotent. Fails with what kept something appended from
    /// the store.
    pub fn shutdown(&self) -> EngineResult<()> {
        if self.shut.swap(true, Ordering::SeqCst) || self.opts.read_only {
            return Ok(());
        }
        self.stop_threads();
        // The rest commits on this thread: on `Drop` the committer can no
        // longer reach this engine.
        while self.commit_once()? {}
        // The last segment binds the whole trail (records of reads and of
        // the unmount came after the last change).
        if self.binding_moved()? {
            self.journal.request_segment();
            while self.commit_once()? {}
        }
        // A failed engine with nothing left uncommitted lost nothing.
        match self.journal.sticky_failure() {
            Some(f) if self.journal.has_unacknowledged() => Err(f.into()),
            _ => Ok(()),
        }
    }

    /// Stops the threads without committing anything: what a SIGKILL
    /// leaves behind. Tests use it to simulate a crash.
    pub fn abandon(&self) {
        if self.shut.swap(true, Ordering::SeqCst) {
            return;
        }
        self.journal.fail(Failure::Abandoned);
        self.stop_threads();
    }

    fn stop_threads(&self) {
        self.journal.shutdown();
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        let me = std::thread::current().id();
        for t in threads {
            // The last reference may be dropped on an engine thread, which
            // must not wait for itself.
            if t.thread().id() != me {
                let _ = t.join();
            }
        }
    }

    fn spawn(self: &Arc<Self>, name: &str, f: impl FnOnce(Weak<Engine>) + Send + 'static) {
        let weak = Arc::downgrade(self);
        let handle = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || f(weak))
            .unwrap_or_else(|e| panic!("cannot start the {name} thread: {e}"));
        self.threads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(handle);
    }

    /// Commits a segment at the next seq before anything else happens.
    /// Losing that create-only PUT means another writer committed since
    /// the journal was replayed: the volume is busy (fenced).
    fn claim_journal(&self) -> EngineResult<()> {
        self.journal.request_segment();
        let (seq, _) = self.committed();
        self.commit_once()?;
        log::info!(
            "took the writer's lease over: claimed journal seq {:016x}",
            seq + 1
        );
        Ok(())
    }

    /// A crash can leave a flushed chunk mapping bytes past the journaled
    /// size (the size record was still waiting for a later chunk). Those
    /// bytes must never reappear when the file grows, so every map is cut
    /// back to its file's size before anything else happens.
    fn clamp_past_eof(&self) -> EngineResult<()> {
        let mut txn = self.lock();
        let records = past_eof(txn.ns());
        if !records.is_empty() {
            log::info!(
                "cutting {} files back to their journaled size after a crash",
                records.len()
            );
        }
        txn.apply(records).map(|_| ())
    }

    /// The same for a read-only mount, which cannot journal the cut.
    fn clamp_past_eof_in_memory(&self) {
        let mut tree = self.tree();
        for r in past_eof(&tree) {
            // Cutting a map at its own file's size cannot contradict it.
            let _ = tree.apply(&r);
        }
    }

    /// Inodes left as orphans by an earlier mount are dropped now: no
    /// process can hold them open any more.
    fn drop_orphans(&self) -> EngineResult<()> {
        let mut txn = self.lock();
        let records = txn.ns().orphans().map(|ino| Record::Drop { ino }).collect();
        txn.apply(records).map(|_| ())
    }
}

/// `Truncate` records for every file whose map reaches past its size.
fn past_eof(ns: &Namespace) -> Vec<Record> {
    let cs = ns.chunk_size();
    ns.inodes()
        .filter(|(_, i)| i.chunks().is_some_and(|m| m.extends_past(i.attr.size, cs)))
        .map(|(ino, i)| Record::Truncate {
            ino,
            size: i.attr.size,
        })
        .collect()
}

impl Drop for Engine {
    fn drop(&mut self) {
        if !self.shut.load(Ordering::SeqCst) && !self.opts.read_only {
            if let Err(e) = self.shutdown() {
                log::error!("shutdown on drop failed: {e}");
            }
        }
    }
}
