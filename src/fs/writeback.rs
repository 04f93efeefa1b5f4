//! Writeback: moving dirty chunks from the cache into packs.
//!
//! Each flusher thread takes up to [`PACK_TARGET`] bytes of dirty chunks,
//! has the engine seal and upload them as one pack, and only then maps
//! them with records (a pack is durable before anything points at it).
//! Two of them keep two packs in flight: they take full packs as soon as a
//! pack's worth waits, and the first also cuts what is left every commit
//! interval, unless a writer is still filling it. When idle the first lets
//! the engine compact mostly-dead packs. `fsync`, `sync_all` and unmount
//! flush from their own threads.
//!
//! Rules:
//! - A chunk taken for a flush stays dirty until the pack is durable; a
//!   write meanwhile gives it a new version, and the flush then maps only
//!   what it uploaded if nothing newer was cut or written (`Cache::settle`).
//! - A failed upload puts its chunks back, counts a failure and wakes every
//!   waiter: those waiting when it failed get its error (`fsync` says EIO,
//!   a throttled writer stops waiting), and the next round retries.
//! - An fsync's own flush of at most [`CARRY_MAX`] bytes is carried in the
//!   journal segment that maps it (`meta::carried`): the fsync then costs
//!   the segment's PUT alone.
//! - Waits are on `cache_cv`, notified by every change that can end one:
//!   a chunk settled or put back, a failure, a fence. Nothing polls.
//! - Only a timer tick cuts a pack short. A tick passes while a writer is
//!   filling what it would cut (something was written since the last one)
//!   or a pack is in flight, but never [`TICKS_PASSED`] in a row: a stream
//!   goes out in full packs, and nothing waits more than that many
//!   intervals and one for its upload, however it is rewritten.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{Fs, FsError, FsResult};
use crate::data::offsets::cipher_len;
use crate::data::{Cache, sealed_len};
use crate::engine::PackRecords;

/// Plaintext bytes per pack: a few MiB, the unit of PUT.
pub const PACK_TARGET: u64 = 8 << 20;

/// Plaintext bytes an fsync sends inside the journal segment instead of a
/// pack of their own (one PUT instead of two): a database's commit rewrites
/// a few chunks. Larger flushes go to packs, as do the flusher's.
pub const CARRY_MAX: u64 = 256 << 10;

/// Ticks in a row that may pass without cutting what waits.
const TICKS_PASSED: u32 = 2;

/// The flushers' work queue, and what waiters need to know of failures.
#[derive(Default)]
pub struct Writeback {
    state: Mutex<Requests>,
    cv: Condvar,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Failed uploads so far (changed under the cache lock, so a waiter
    /// that saw the old count is woken for the new one).
    failures: AtomicU64,
    last_error: Mutex<Option<FsError>>,
}

#[derive(Default)]
struct Requests {
    /// A pack's worth waits: upload it now, not at the next tick.
    pack_ready: bool,
    stop: bool,
}

/// Why a flusher woke.
enum Wake {
    PackReady,
    Tick,
}

/// What a tick does with the dirty data it finds.
enum Tick {
    /// Nothing dirty: compact instead.
    Idle,
    /// A writer is filling it, or a pack is in flight: wait.
    Pass,
    /// Cut what waits into a pack, short or not.
    Cut,
}

impl Writeback {
    fn requests(&self) -> MutexGuard<'_, Requests> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn pack_ready(&self) {
        self.requests().pack_ready = true;
        self.cv.notify_one();
    }

    /// Stops the flushers and waits for them (unless called on one).
    pub fn stop(&self) {
        self.requests().stop = true;
        self.cv.notify_all();
        let handles = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        for t in handles {
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
    }

    /// Waits for a pack's worth, or until `tick` is due when given;
    /// `None` on stop. Wakeups for neither (spurious, or a request the
    /// other flusher took first) wait on.
    fn wait(&self, tick: Option<Instant>) -> Option<Wake> {
        let mut s = self.requests();
        loop {
            if s.stop {
                return None;
            }
            if std::mem::take(&mut s.pack_ready) {
                return Some(Wake::PackReady);
            }
            s = match tick {
                Some(due) => {
                    let now = Instant::now();
                    if now >= due {
                        return Some(Wake::Tick);
                    }
                    let wait = self.cv.wait_timeout(s, due - now);
                    wait.unwrap_or_else(|p| p.into_inner()).0
                }
                None => self.cv.wait(s).unwrap_or_else(|p| p.into_inner()),
            };
        }
    }
}

/// Flusher threads: two, so one seals a pack while the other's is being
/// written (a local store writes packs with `O_DIRECT`, which waits for the
/// disk; S3 waits for the network).
const FLUSHERS: usize = 2;

pub fn start(fs: &Arc<Fs>) {
    let interval = fs.opts.engine.commit_interval;
    let mut handles = Vec::with_capacity(FLUSHERS);
    for n in 0..FLUSHERS {
        let weak = Arc::downgrade(fs);
        let wb = Arc::clone(&fs.writeback);
        let tick = (n == 0).then_some(interval);
        let handle = std::thread::Builder::new()
            .name(format!("flusher-{n}"))
            .spawn(move || flusher(weak, wb, tick))
            .unwrap_or_else(|e| panic!("cannot start a flusher thread: {e}"));
        handles.push(handle);
    }
    *fs.writeback
        .threads
        .lock()
        .unwrap_or_else(|p| p.into_inner()) = handles;
}

/// One flusher. The one with a `tick` also cuts short packs and compacts
/// when idle, so neither happens twice at once.
fn flusher(weak: Weak<Fs>, wb: Arc<Writeback>, tick: Option<Duration>) {
    let next = || tick.map(|t| Instant::now() + t);
    let mut due_at = next();
    // The cache's version at the last tick (what was written since), and
    // the ticks passed in a row.
    let (mut last_version, mut passed) = (0, 0);
    while let Some(wake) = wb.wait(due_at) {
        if let Wake::Tick = wake {
            due_at = next();
        }
        let Some(fs) = weak.upgrade() else { return };
        if fs.engine.sticky_failure().is_some() {
            // Fenced or failed: nothing may reach the store any more.
            fs.free_pack_bodies();
            fs.cache_cv.notify_all();
            continue;
        }
        if let Wake::Tick = wake {
            let tick = {
                let cache = fs.cache();
                let version = cache.version_now();
                let busy = version != last_version || cache.flying_bytes() > 0;
                last_version = version;
                if cache.dirty_bytes() == 0 {
                    Tick::Idle
                } else if busy && passed < TICKS_PASSED {
                    passed += 1;
                    Tick::Pass
                } else {
                    passed = 0;
                    Tick::Cut
                }
            };
            match tick {
                // Idle: tidy up mostly-dead packs, one pack's worth per
                // tick, unless the store is in trouble.
                Tick::Idle => {
                    if fs.engine.failure().is_none() {
                        if let Err(e) = fs.engine.compact_once() {
                            log::warn!("compaction failed: {e}");
                        }
                    }
                    fs.free_pack_bodies();
                    continue;
                }
                Tick::Pass => continue,
                Tick::Cut if fs.flush_pack(None, false).is_err() => continue,
                Tick::Cut => {}
            }
        }
        // Failures are counted and logged by `flush_pack`; the next round
        // retries.
        while let Ok(true) = fs.flush_full_pack() {}
    }
}

impl Fs {
    /// Frees the pack bodies the engine keeps for the next flushes, and
    /// their place in the cache's budget.
    fn free_pack_bodies(&self) {
        self.engine.release_pack_bodies();
        self.cache().set_kept(0);
    }

    /// Flushes one pack's worth: `ino`'s chunks first (only them when
    /// `only`, carried in the journal when `only` and small). Returns
    /// whether anything was taken.
    pub(crate) fn flush_pack(&self, ino: Option<u64>, only: bool) -> FsResult<bool> {
        let items = self.cache().take_for_flush(self.pack_target(), ino, only);
        self.upload(items, only)
    }

    /// Flushes one full pack if a pack's worth waits (checked and taken
    /// under one lock, so two flushers never split one into short packs).
    fn flush_full_pack(&self) -> FsResult<bool> {
        let items = {
            let mut cache = self.cache();
            let pack = self.pack_target();
            if cache.waiting_bytes() < pack {
                return Ok(false);
            }
            cache.take_for_flush(pack, None, false)
        };
        self.upload(items, false)
    }

    /// Seals and uploads `items` as one pack, then maps what is still
    /// current. Returns whether there was anything to upload.
    fn upload(&self, items: Vec<crate::data::FlushItem>, only: bool) -> FsResult<bool> {
        if items.is_empty() {
            return Ok(false);
        }
        if let Some(f) = self.engine.sticky_failure() {
            self.cache().abort_flush(&items);
            return Err(f.into());
        }
        let chunks: Vec<&[u8]> = items.iter().map(|i| i.data.as_slice()).collect();
        let plain: u64 = chunks.iter().map(|c| c.len() as u64).sum();
        // The sealed body lives beside its chunks until the PUT is done
        // (the store sends it without a copy), and a carried one is sealed
        // once more into its journal segment: that counts against the
        // cache budget (clean chunks make room).
        let carry = only && plain <= self.opts.carry_bytes;
        let sealed = (1 + carry as u64) * sealed_len(&chunks) as u64;
        self.reserve_flush(sealed);
        let result = match carry {
            true => self.engine.carry_pack(&chunks).map(|(w, b)| (w, Some(b))),
            false => self.engine.write_pack(&chunks).map(|w| (w, None)),
        };
        {
            let mut cache = self.cache();
            cache.release_flush(sealed);
            cache.set_kept(self.engine.kept_body_bytes());
        }
        self.cache_cv.notify_all();
        let (written, body) = match result {
            Ok(w) => w,
            Err(e) => {
                let e = FsError::from(e);
                let mut cache = self.cache();
                cache.abort_flush(&items);
                self.note_flush_failure(&mut cache, &e);
                return Err(e);
            }
        };
        let mut l = self.lock();
        let mut records = match body {
            Some(body) => PackRecords::carried(&written, body),
            None => PackRecords::new(&written),
        };
        let mut touched = BTreeSet::new();
        {
            let mut cache = self.cache();
            for (item, p) in items.iter().zip(&written.placed) {
                let (ino, chunk) = item.key;
                let live = l.ns().get(ino).is_some_and(|i| i.chunks().is_some());
                if live && cache.settle(item.key, item.version) {
                    touched.insert(ino);
                    records.map(ino, chunk, p);
                }
            }
        }
        let mut records = records.finish();
        for ino in touched {
            records.push(self.inode_record(&mut l, ino));
        }
        let applied = self.apply_upkeep(&mut l, records);
        drop(l);
        self.cache_cv.notify_all();
        applied.map(|_| true)
    }

    /// Counts a failed upload and wakes every waiter (caller holds the
    /// cache lock, so no waiter misses it).
    fn note_flush_failure(&self, _cache: &mut MutexGuard<'_, Cache>, e: &FsError) {
        let n = self.writeback.failures.fetch_add(1, Ordering::SeqCst);
        if n == 0 || self.engine.failure().is_none() {
            crate::alert::raise(
                crate::alert::Alert::Store,
                format_args!("data upload failed, will retry: {e}"),
            );
        } else {
            log::debug!("data upload failed again: {e}");
        }
        *self
            .writeback
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(e.clone());
        self.cache_cv.notify_all();
    }

    /// Waits on the cache until `done` holds. Fails if an upload fails or
    /// the filesystem fails for good while waiting.
    pub(crate) fn wait_cache(&self, mut done: impl FnMut(&Cache) -> bool) -> FsResult<()> {
        let mut cache = self.cache();
        let seen = self.writeback.failures.load(Ordering::SeqCst);
        loop {
            if done(&cache) {
                return Ok(());
            }
            if let Some(f) = self.engine.sticky_failure() {
                return Err(f.into());
            }
            if self.writeback.failures.load(Ordering::SeqCst) > seen {
                let last = self
                    .writeback
                    .last_error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                return Err(last.expect("a counted failure leaves its error"));
            }
            cache = self.cache_cv.wait(cache).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Flushes until no dirty data remains (or an upload fails).
    pub(crate) fn flush_all_dirty(&self) -> FsResult<()> {
        loop {
            if self.flush_pack(None, false)? {
                continue;
            }
            // Nothing left to take: wait for what the flusher uploads.
            if !self.cache().any_in_flight() {
                return Ok(());
            }
            self.wait_cache(|c| !c.any_in_flight())?;
        }
    }

    /// Blocks until every chunk of `ino` dirtied at or before now is in a
    /// durable pack and its records are appended. Uploads from the calling
    /// thread (one PUT of latency instead of a round trip through the
    /// flusher); what the flusher is uploading already, it waits for.
    pub(crate) fn flush_inode(&self, ino: u64) -> FsResult<()> {
        let version = self.cache().dirty_version(ino);
        if version == 0 {
            return Ok(());
        }
        loop {
            if !self.cache().has_dirty_at_or_below(ino, version) {
                return Ok(());
            }
            if !self.flush_pack(Some(ino), true)? {
                self.wait_cache(|c| !c.in_flight(ino) || !c.has_dirty_at_or_below(ino, version))?;
            }
        }
    }

    /// Plaintext bytes per pack: [`PACK_TARGET`], or an eighth of a cache
    /// under 64 MiB (at least 1 MiB), so that a flush's reservation (twice
    /// its sealed body) leaves writers a pack's worth and clean data its
    /// share. Such packs are short, so padded to a size class (up to
    /// 12.5 % more bytes in the store).
    pub(crate) fn pack_target(&self) -> u64 {
        PACK_TARGET.min(self.opts.cache_bytes / 8).max(1 << 20)
    }

    /// Waits until the cache lets a flush reserve `bytes` (see
    /// `Cache::reserve_flush`): another flush under way gives back its
    /// reservation when its upload ends, however it ends.
    fn reserve_flush(&self, bytes: u64) {
        let mut cache = self.cache();
        while !cache.reserve_flush(bytes) {
            cache = self.cache_cv.wait(cache).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Backpressure: a writer waits while dirty data and the flushes under
    /// way exceed its share of the cache, so a long copy runs at store
    /// speed in bounded memory. The share is half the cache's room less
    /// one flush's sealed body and the one kept for the next flush (at
    /// least a pack): with a flush under way, clean data keeps at least
    /// half the room.
    pub(crate) fn throttle(&self) -> FsResult<()> {
        let pack = self.pack_target();
        let flush = 2 * cipher_len(pack as u32) as u64;
        let limit = |c: &Cache| (c.room() / 2).saturating_sub(flush).max(pack);
        let (over, waiting) = {
            let c = self.cache();
            (c.dirty_and_flushing() > limit(&c), c.waiting_bytes())
        };
        if waiting >= pack {
            // A pack's worth no flush has taken is ready: upload it now,
            // not at the next tick (and not a short one beside a flush
            // under way).
            self.writeback.pack_ready();
        }
        if !over {
            return Ok(());
        }
        self.wait_cache(|c| c.dirty_and_flushing() <= limit(c))
    }
}
