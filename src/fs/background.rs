//! The flusher and the committer: the two threads that move changes from
//! memory into the store.
//!
//! Flusher: takes up to `PACK_TARGET` bytes of dirty chunks, seals them
//! into one pack, PUTs it, and only then records the new extents (journal
//! order = pack durable before any record points at it). Runs when asked
//! (`fsync`, backpressure, unmount), when a pack's worth is dirty, or every
//! commit interval while anything is dirty.
//!
//! Committer: group-commits journal records as one segment per batch; after
//! a commit it writes a checkpoint when enough journal has accumulated,
//! deletes packs retired by the commit, and the journal segments and old
//! checkpoints the newest two checkpoints no longer need.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use super::{Fs, FsError, FsResult};
use crate::data::{Extent, PackId, Placed, seal_pack};
use crate::meta::checkpoint::{self, ShardRef};
use crate::meta::journal::{JOURNAL_PREFIX, journal_key, seq_of_key};
use crate::meta::{Journal, Record};

/// Plaintext bytes per pack: a few MiB, the unit of PUT.
pub const PACK_TARGET: u64 = 8 << 20;

/// How long a pack upload retries transient store errors before the
/// filesystem turns failed (fsync then answers EIO).
const UPLOAD_DEADLINE: Duration = Duration::from_secs(60);

#[derive(Default)]
pub struct FlushControl {
    state: Mutex<FlushState>,
    cv: Condvar,
}

#[derive(Default)]
struct FlushState {
    /// Inodes someone waits on, flushed first.
    wanted: Vec<u64>,
    /// Flush everything now (backpressure, sync_all).
    all: bool,
    stop: bool,
}

impl FlushControl {
    pub fn request(&self, ino: Option<u64>) {
        let mut s = self.state.lock().unwrap();
        match ino {
            Some(i) => s.wanted.push(i),
            None => s.all = true,
        }
        self.cv.notify_all();
    }

    pub fn stop(&self) {
        self.state.lock().unwrap().stop = true;
        self.cv.notify_all();
    }

    /// Waits for work; returns (preferred inode, urgent) or None on stop.
    fn wait(&self, interval: Duration) -> Option<(Option<u64>, bool)> {
        let mut s = self.state.lock().unwrap();
        if s.stop {
            return None;
        }
        if s.wanted.is_empty() && !s.all {
            s = self.cv.wait_timeout(s, interval).unwrap().0;
        }
        if s.stop {
            return None;
        }
        let urgent = s.all || !s.wanted.is_empty();
        let ino = s.wanted.pop();
        if s.wanted.is_empty() {
            s.all = false;
        }
        Some((ino, urgent))
    }
}

pub struct GcState {
    /// Packs retired at journal seq S, deleted once S is durable.
    pub freed: Vec<(u64, PackId)>,
    /// Complete checkpoints kept, newest first, with their shard refs.
    pub checkpoints: Vec<(u64, Vec<ShardRef>)>,
    pub journal_bytes_since_checkpoint: u64,
    pub segments_since_checkpoint: u64,
}

impl GcState {
    pub fn new(base_seq: u64, last_seq: u64, shards: Vec<ShardRef>) -> GcState {
        GcState {
            freed: Vec::new(),
            checkpoints: vec![(base_seq, shards)],
            journal_bytes_since_checkpoint: 0,
            segments_since_checkpoint: last_seq - base_seq,
        }
    }
}

pub fn start(fs: &Arc<Fs>) {
    let weak = Arc::downgrade(fs);
    let interval = fs.opts.commit_interval;
    let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
        std::thread::Builder::new()
            .name(name.into())
            .spawn(f)
            .unwrap_or_else(|e| panic!("cannot start the {name} thread: {e}"))
    };
    let (w, control) = (weak.clone(), fs.flush.clone());
    let flusher = spawn("flusher", Box::new(move || flusher(w, control, interval)));
    let (w, journal) = (weak.clone(), fs.journal.clone());
    let committer = spawn(
        "committer",
        Box::new(move || committer(w, journal, interval)),
    );
    let gc = spawn(
        "gc",
        Box::new(move || {
            if let Some(fs) = weak.upgrade() {
                if let Err(e) = fs.collect_unreferenced() {
                    log::warn!("garbage collection of unreferenced objects failed: {e}");
                }
            }
        }),
    );
    fs.threads.lock().unwrap().extend([flusher, committer, gc]);
}

fn flusher(weak: Weak<Fs>, control: Arc<FlushControl>, interval: Duration) {
    while let Some((ino, urgent)) = control.wait(interval) {
        let Some(fs) = weak.upgrade() else { return };
        if fs.is_failed() {
            // Fenced or failed: nothing may reach the store any more.
            fs.cache_cv.notify_all();
            continue;
        }
        if !urgent && fs.cache().dirty_bytes() == 0 {
            // Idle: tidy up mostly-dead packs, one pack's worth per tick.
            if let Err(e) = fs.compact_once() {
                log::warn!("compaction failed: {e}");
            }
            continue;
        }
        loop {
            match fs.flush_once(ino) {
                Ok(true) if ino.is_some() || fs.cache().dirty_bytes() >= PACK_TARGET => continue,
                Ok(_) => break,
                Err(e) => {
                    log::error!("flush failed, the volume is now read-only: {e}");
                    fs.journal.fail(format!("data upload failed: {e}"));
                    fs.read_only.store(true, Ordering::SeqCst);
                    break;
                }
            }
        }
        fs.cache_cv.notify_all();
    }
}

fn committer(weak: Weak<Fs>, journal: Arc<Journal>, interval: Duration) {
    while journal.wait_due(interval) {
        let Some(fs) = weak.upgrade() else { return };
        if let Err(e) = fs.commit_once() {
            log::error!("commit failed, the volume is now read-only: {e}");
            fs.read_only.store(true, Ordering::SeqCst);
        }
    }
}

impl Fs {
    /// Flushes one pack's worth of dirty chunks, `ino`'s first. Returns
    /// whether anything was flushed.
    pub(crate) fn flush_once(&self, ino: Option<u64>) -> FsResult<bool> {
        self.flush_pack(ino, false)
    }

    /// Flushes one pack's worth: `ino`'s chunks first (only them when
    /// `only`). Returns whether anything was taken.
    fn flush_pack(&self, ino: Option<u64>, only: bool) -> FsResult<bool> {
        if let Some(f) = self.journal.failure() {
            return Err(FsError::Io(f));
        }
        let items = self.cache().take_for_flush(PACK_TARGET, ino, only);
        if items.is_empty() {
            return Ok(false);
        }
        let id = PackId::random();
        let chunks: Vec<&[u8]> = items.iter().map(|i| i.data.as_slice()).collect();
        let (body, placed) = seal_pack(&self.keys.data, &self.volume_id, id, &chunks);
        if let Err(e) = self.upload(&id.key(), &body) {
            self.cache().abort_flush(&items);
            return Err(e);
        }

        let mut core = self.core.lock().unwrap();
        let mut records = vec![Record::Pack {
            id,
            size: body.len() as u64,
            units: placed.len() as u32,
        }];
        let mut touched = BTreeMap::new();
        {
            let mut cache = self.cache();
            let mut run: Option<(u64, u64, Extent)> = None;
            for (item, p) in items.iter().zip(&placed) {
                let (ino, chunk) = item.key;
                let live = core.ns.get(ino).is_some_and(|i| i.chunks().is_some());
                if !(live && cache.settle(item.key, item.version)) {
                    continue;
                }
                touched.insert(ino, ());
                run = extend_run(run, ino, chunk, id, p, &mut records);
            }
            if let Some((ino, first, extent)) = run {
                records.push(Record::Chunks { ino, first, extent });
            }
        }
        if touched.is_empty() {
            // Every chunk was cut or rewritten while the pack uploaded.
            records.push(Record::PackGone { id });
        }
        for ino in touched.into_keys() {
            records.push(self.inode_record(&mut core, ino));
        }
        self.apply(&mut core, records)?;
        drop(core);
        self.cache_cv.notify_all();
        Ok(true)
    }

    pub(crate) fn upload(&self, key: &str, body: &[u8]) -> FsResult<()> {
        let start = Instant::now();
        let mut backoff = Duration::from_millis(20);
        loop {
            match self.store.put(key, body) {
                Ok(()) => return Ok(()),
                Err(e)
                    if start.elapsed() >= UPLOAD_DEADLINE
                        || self.is_failed()
                        || self.shut.load(Ordering::Relaxed)
                            && start.elapsed() > Duration::from_secs(5) =>
                {
                    return Err(e.into());
                }
                Err(e) => {
                    log::warn!("upload of {key} failed, retrying: {e}");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    /// Flushes until no dirty data remains (or the flush fails).
    pub(crate) fn flush_all_dirty(&self) -> FsResult<()> {
        loop {
            if self.flush_once(None)? {
                continue;
            }
            // Nothing left to take; wait for what the flusher uploads.
            let cache = self.cache();
            if !cache.any_in_flight() {
                return Ok(());
            }
            if let Some(f) = self.journal.failure() {
                return Err(FsError::Io(f));
            }
            drop(
                self.cache_cv
                    .wait_timeout(cache, Duration::from_millis(50))
                    .unwrap(),
            );
        }
    }

    /// Blocks until every chunk of `ino` dirtied at or before now is in a
    /// durable pack and its records are appended.
    pub(crate) fn flush_inode(&self, ino: u64) -> FsResult<()> {
        let version = self.cache().dirty_version(ino);
        if version == 0 {
            return Ok(());
        }
        loop {
            if let Some(f) = self.journal.failure() {
                return Err(FsError::Io(f));
            }
            if !self.cache().has_dirty_at_or_below(ino, version) {
                return Ok(());
            }
            // Flushing from the caller's thread keeps fsync latency to one
            // pack PUT instead of a round trip through the flusher; what
            // the flusher is uploading already, we wait for.
            if !self.flush_pack(Some(ino), true)? {
                let cache = self.cache();
                if cache.in_flight(ino) {
                    drop(
                        self.cache_cv
                            .wait_timeout(cache, Duration::from_millis(50))
                            .unwrap(),
                    );
                }
            }
        }
    }

    /// Commits one batch, then checkpoint and garbage work if due; returns
    /// whether there was a batch.
    pub(crate) fn commit_once(&self) -> FsResult<bool> {
        let (batch, prepared) = {
            let mut core = self.core.lock().unwrap();
            let Some(batch) = self.journal.take() else {
                return Ok(false);
            };
            let bytes: u64 = batch.records.iter().map(|r| r.approx_size() as u64).sum();
            let due = {
                let gc = self.gc.lock().unwrap();
                gc.journal_bytes_since_checkpoint + bytes >= self.opts.checkpoint_bytes
                    || gc.segments_since_checkpoint >= 4096
                    || self.shut.load(Ordering::Relaxed) && gc.segments_since_checkpoint >= 16
            };
            // The shards are encoded now, while the namespace is exactly
            // the state after this batch; sealing and writing come later.
            let prepared = due.then(|| {
                let dirty = std::mem::take(&mut core.ns.dirty_shards);
                (
                    checkpoint::prepare(&core.ns, &dirty, &core.unjournaled),
                    dirty,
                )
            });
            (batch, prepared)
        };
        let seq = batch.seq;
        let bytes: u64 = batch.records.iter().map(|r| r.approx_size() as u64).sum();
        let gone: Vec<PackId> = batch
            .records
            .iter()
            .filter_map(|r| match r {
                Record::PackGone { id } => Some(*id),
                _ => None,
            })
            .collect();
        let hash = self
            .journal
            .commit(&*self.store, &self.keys, &self.volume_id, batch)?;
        {
            let mut gc = self.gc.lock().unwrap();
            gc.journal_bytes_since_checkpoint += bytes;
            gc.segments_since_checkpoint += 1;
        }
        self.note_freed(seq, gone);
        self.delete_freed_packs(seq);
        if let Some((prepared, dirty)) = prepared {
            let prev = self.gc.lock().unwrap().checkpoints[0].1.clone();
            match checkpoint::write(
                &*self.store,
                &self.keys,
                &self.volume_id,
                seq,
                hash,
                prepared,
                &prev,
            ) {
                Ok(shards) => self.after_checkpoint(seq, shards),
                Err(e) => {
                    // The journal still holds everything; try again later.
                    log::warn!("checkpoint at seq {seq:016x} failed: {e}");
                    self.core.lock().unwrap().ns.dirty_shards.extend(dirty);
                }
            }
        }
        Ok(true)
    }

    /// Deletes packs whose retirement is durable (at or before `seq`).
    /// Nothing but the current state needs them: replay from any retained
    /// checkpoint ends at a state that no longer references them.
    fn delete_freed_packs(&self, seq: u64) {
        let doomed: Vec<PackId> = {
            let mut gc = self.gc.lock().unwrap();
            let (now, later): (Vec<_>, Vec<_>) = gc.freed.drain(..).partition(|(s, _)| *s <= seq);
            gc.freed = later;
            now.into_iter().map(|(_, p)| p).collect()
        };
        let keys: Vec<String> = doomed.iter().map(PackId::key).collect();
        if let Err(e) = self.store.delete_many(&keys) {
            // A refused delete (object lock, versioning) is tolerated.
            log::warn!(
                "could not delete every one of {} retired packs: {e}",
                keys.len()
            );
        }
    }

    /// Keeps the newest two checkpoints; deletes older ones (but not the
    /// shards the kept ones still refer to) and the journal segments the
    /// older kept one already covers.
    fn after_checkpoint(&self, seq: u64, shards: Vec<ShardRef>) {
        let (retained, keep) = {
            let mut gc = self.gc.lock().unwrap();
            gc.checkpoints.insert(0, (seq, shards));
            gc.checkpoints.truncate(2);
            gc.journal_bytes_since_checkpoint = 0;
            gc.segments_since_checkpoint = 0;
            let keep: HashSet<(u64, u64)> = gc
                .checkpoints
                .iter()
                .flat_map(|(_, refs)| refs.iter().map(|r| (r.seq, r.n)))
                .collect();
            let retained: Vec<u64> = gc.checkpoints.iter().map(|(s, _)| *s).collect();
            (retained, keep)
        };
        let oldest = *retained.last().expect("just inserted");
        if let Err(e) = checkpoint::sweep(&*self.store, &retained, &keep) {
            log::warn!("could not delete old checkpoints: {e}");
        }
        if let Err(e) = self.delete_journal_through(oldest) {
            log::warn!("could not delete old journal segments: {e}");
        }
    }

    fn delete_journal_through(&self, seq: u64) -> FsResult<()> {
        let doomed: Vec<String> = self
            .store
            .list(JOURNAL_PREFIX)?
            .iter()
            .filter_map(|o| seq_of_key(&o.key))
            .filter(|&s| s <= seq)
            .map(journal_key)
            .collect();
        Ok(self.store.delete_many(&doomed)?)
    }

    /// Deletes objects left by a crash between PUT and commit: packs that
    /// neither the current state nor a retained checkpoint references, and
    /// journal segments past the end of replay. Only objects older than the
    /// grace period (by the store's clock) are touched.
    pub(crate) fn collect_unreferenced(&self) -> FsResult<()> {
        if self.is_failed() {
            return Ok(());
        }
        let retained: Vec<u64> = self
            .gc
            .lock()
            .unwrap()
            .checkpoints
            .iter()
            .map(|(s, _)| *s)
            .collect();
        let mut referenced: std::collections::HashSet<PackId> =
            self.core().ns.packs.keys().copied().collect();
        for seq in retained {
            let index = checkpoint::read_index(&*self.store, &self.keys, &self.volume_id, seq)?;
            referenced.extend(index.packs.iter().map(|(id, _)| *id));
        }
        let cutoff = std::time::SystemTime::now()
            .checked_sub(self.opts.gc_grace)
            .unwrap_or(std::time::UNIX_EPOCH);
        let mut doomed = Vec::new();
        for o in self.store.list("data/")? {
            let Some(id) = PackId::from_key(&o.key) else {
                continue;
            };
            if referenced.contains(&id) || o.modified > cutoff {
                continue;
            }
            // Re-check under the lock: a pack uploaded since the listing
            // is referenced by now or still fresh.
            if self.core().ns.packs.contains_key(&id) {
                continue;
            }
            doomed.push(o.key);
        }
        if !doomed.is_empty() {
            // A refused delete (object lock) must not stop the sweep: the
            // rest are still removed, and the next sweep tries again.
            match self.store.delete_many(&doomed) {
                Ok(()) => log::info!("removed {} unreferenced packs", doomed.len()),
                Err(e) => log::warn!(
                    "could not remove every one of {} unreferenced packs: {e}",
                    doomed.len()
                ),
            }
        }
        Ok(())
    }

    /// Test knob: run garbage collection of unreferenced objects now.
    pub fn force_gc(&self) -> FsResult<()> {
        self.collect_unreferenced()
    }
}

/// Extends the current run of consecutive chunks in one pack, or closes it
/// into a `Chunks` record and starts a new one.
pub(crate) fn extend_run(
    run: Option<(u64, u64, Extent)>,
    ino: u64,
    chunk: u64,
    pack: PackId,
    p: &Placed,
    records: &mut Vec<Record>,
) -> Option<(u64, u64, Extent)> {
    if let Some((rino, first, mut e)) = run {
        let contiguous = rino == ino
            && first + e.count as u64 == chunk
            && e.first_unit + e.count == p.unit
            && e.cipher_len == p.cipher_len
            && e.plain_len == p.plain_len;
        if contiguous {
            e.count += 1;
            return Some((rino, first, e));
        }
        records.push(Record::Chunks {
            ino: rino,
            first,
            extent: e,
        });
    }
    Some((
        ino,
        chunk,
        Extent {
            count: 1,
            pack,
            first_unit: p.unit,
            cipher_off: p.cipher_off,
            cipher_len: p.cipher_len,
            plain_len: p.plain_len,
        },
    ))
}
