//! Writeback: moving dirty chunks from the cache into packs.
//!
//! Each flusher thread takes up to [`PACK_TARGET`] bytes of dirty chunks,
//! has the engine seal and upload them as one pack, and only then maps
//! them with records (a pack is durable before anything points at it).
//! They run when asked (`fsync`, backpressure, unmount), when a pack's
//! worth is dirty, or every commit interval while anything is dirty; two
//! of them keep two packs in flight. When idle the first lets the engine
//! compact mostly-dead packs.
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

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use super::{Fs, FsError, FsResult};
use crate::data::Cache;
use crate::data::offsets::cipher_len;
use crate::engine::PackRecords;

/// Plaintext bytes per pack: a few MiB, the unit of PUT.
pub const PACK_TARGET: u64 = 8 << 20;

/// Plaintext bytes an fsync sends inside the journal segment instead of a
/// pack of their own (one PUT instead of two): a database's commit rewrites
/// a few chunks. Larger flushes go to packs, as do the flusher's.
pub const CARRY_MAX: u64 = 256 << 10;

/// The flusher's work queue, and what waiters need to know of failures.
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
    /// Inodes someone waits on, flushed first.
    wanted: Vec<u64>,
    /// Flush everything now (backpressure, sync_all).
    all: bool,
    stop: bool,
}

impl Writeback {
    fn requests(&self) -> MutexGuard<'_, Requests> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn request(&self, ino: Option<u64>) {
        let mut s = self.requests();
        match ino {
            Some(i) => s.wanted.push(i),
            None => s.all = true,
        }
        self.cv.notify_all();
    }

    /// Stops the flusher and waits for it (unless called on it).
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

    /// Waits for work; returns (preferred inode, urgent), or `None` on stop.
    fn wait(&self, interval: Duration) -> Option<(Option<u64>, bool)> {
        let mut s = self.requests();
        if !s.stop && s.wanted.is_empty() && !s.all {
            s = self
                .cv
                .wait_timeout(s, interval)
                .unwrap_or_else(|p| p.into_inner())
                .0;
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
        let handle = std::thread::Builder::new()
            .name(format!("flusher-{n}"))
            .spawn(move || flusher(weak, wb, interval, n == 0))
            .unwrap_or_else(|e| panic!("cannot start a flusher thread: {e}"));
        handles.push(handle);
    }
    *fs.writeback
        .threads
        .lock()
        .unwrap_or_else(|p| p.into_inner()) = handles;
}

/// One flusher; the `first` also compacts when idle (one at a time).
fn flusher(weak: Weak<Fs>, wb: Arc<Writeback>, interval: Duration, first: bool) {
    while let Some((ino, urgent)) = wb.wait(interval) {
        let Some(fs) = weak.upgrade() else { return };
        if fs.engine.sticky_failure().is_some() {
            // Fenced or failed: nothing may reach the store any more.
            fs.cache_cv.notify_all();
            continue;
        }
        if !urgent && fs.cache().dirty_bytes() == 0 {
            // Idle: tidy up mostly-dead packs, one pack's worth per tick,
            // unless the store is in trouble.
            if first && fs.engine.failure().is_none() {
                if let Err(e) = fs.engine.compact_once() {
                    log::warn!("compaction failed: {e}");
                }
            }
            continue;
        }
        if !urgent && fs.cache().flying_bytes() > 0 {
            // The other flusher is uploading, and loops while a pack's
            // worth waits: a tick now would cut a short pack out of data
            // still being written. The next tick takes what is left.
            continue;
        }
        loop {
            match fs.flush_pack(ino, false) {
                Ok(true) if ino.is_some() || fs.cache().waiting_bytes() >= PACK_TARGET => continue,
                Ok(_) => break,
                // Counted and logged by `flush_pack`; the next round retries.
                Err(_) => break,
            }
        }
    }
}

impl Fs {
    /// Flushes one pack's worth: `ino`'s chunks first (only them when
    /// `only`, carried in the journal when `only` and small). Returns
    /// whether anything was taken.
    pub(crate) fn flush_pack(&self, ino: Option<u64>, only: bool) -> FsResult<bool> {
        let items = self.cache().take_for_flush(PACK_TARGET, ino, only);
        if items.is_empty() {
            return Ok(false);
        }
        if let Some(f) = self.engine.sticky_failure() {
            self.cache().abort_flush(&items);
            return Err(f.into());
        }
        let chunks: Vec<&[u8]> = items.iter().map(|i| i.data.as_slice()).collect();
        let plain: u64 = chunks.iter().map(|c| c.len() as u64).sum();
        // The sealed body lives beside its chunks until the PUT is done,
        // and the S3 client sends a copy it owns: both count against the
        // cache budget (clean chunks make room).
        let sealed: u64 = 2 * chunks
            .iter()
            .map(|c| cipher_len(c.len() as u32) as u64)
            .sum::<u64>();
        self.cache().reserve(sealed);
        let result = match only && plain <= self.opts.carry_bytes {
            true => self.engine.carry_pack(&chunks).map(|(w, b)| (w, Some(b))),
            false => self.engine.write_pack(&chunks).map(|w| (w, None)),
        };
        self.cache().release(sealed);
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

    /// Backpressure: a writer waits while dirty data exceeds its share of
    /// the cache, so a long copy runs at store speed in bounded memory.
    pub(crate) fn throttle(&self) -> FsResult<()> {
        let limit = (self.opts.cache_bytes / 2).max(2 * PACK_TARGET);
        let (dirty, waiting) = {
            let c = self.cache();
            (c.dirty_bytes(), c.waiting_bytes())
        };
        if waiting >= PACK_TARGET {
            // A pack's worth no flush has taken is ready: upload it now,
            // not at the next tick (and not a short one beside a flush
            // under way).
            self.writeback.request(None);
        }
        if dirty <= limit {
            return Ok(());
        }
        self.wait_cache(|c| c.dirty_bytes() <= limit)
    }
}
