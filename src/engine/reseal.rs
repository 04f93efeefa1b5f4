//! Re-encryption after a key rotation: every object the volume still needs
//! that is sealed under an older key epoch is sealed again under the
//! current one, so that the older epochs can be dropped from every keyslot.
//!
//! Rules:
//! - In place: an object keeps its name and its layout (a pack's segments
//!   keep their offsets and lengths), so no chunk map, index or link
//!   changes. Each rewrite is one conditional PUT on the version read: an
//!   object deleted or replaced meanwhile (compaction, the retention
//!   sweep) is left to whoever did it, never brought back.
//! - Only what is still needed: live segments of every pack the tree or a
//!   pinned checkpoint maps (the bytes of dead segments are zeroed, so the
//!   old key opens nothing there either), the kept checkpoints' indexes and
//!   shards, snapshot records, the audit trail, the attic.
//! - The journal is never re-sealed (segments link by the hash of their
//!   sealed bytes): two checkpoints written after the key change retire
//!   every older segment, and what replay still needs is then checked to
//!   be current.
//! - A lock (`sealedfs lock`) stops the walk before its next object, and
//!   the copies of the keys it holds go with it.
//! - Idempotent: an object already under the current epoch is skipped
//!   after one read (a pack after one ranged read of a live segment), so a
//!   walk interrupted by a crash or an unmount simply runs again.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::Engine;
use super::error::{EngineError, EngineResult};
use super::garbage::ATTIC_PREFIX;
use crate::audit::segment::AUDIT_PREFIX;
use crate::crypto::{self, SubKey, UnitAd, seal::is_current};
use crate::data::PackId;
use crate::data::pack::{reseal_segment, segment_is_current};
use crate::meta::checkpoint::{self, Index, ShardRef};
use crate::meta::journal::{JOURNAL_PREFIX, journal_key, seq_of_key};
use crate::meta::snapshot::SNAPSHOT_PREFIX;
use crate::meta::{MetaError, Namespace};
use crate::store::StoreError;

/// Checkpoints forced before giving up on retiring old journal segments.
const MAX_CHECKPOINTS: usize = 6;

/// Where a walk stands, for a progress bar or `status`.
#[derive(Debug, Default)]
pub struct ResealProgress {
    /// Objects looked at and objects planned (the plan grows as packs are
    /// listed).
    pub done: AtomicU64,
    pub total: AtomicU64,
    /// Ciphertext bytes sealed again.
    pub bytes: AtomicU64,
}

impl ResealProgress {
    /// Back to zero, for another walk.
    pub fn reset(&self) {
        for n in [&self.done, &self.total, &self.bytes] {
            n.store(0, Ordering::Relaxed);
        }
    }

    fn plan(&self, n: usize) {
        self.total.fetch_add(n as u64, Ordering::Relaxed);
    }

    fn step(&self) {
        self.done.fetch_add(1, Ordering::Relaxed);
    }
}

/// What a walk did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResealReport {
    pub packs: u64,
    pub segments: u64,
    /// Checkpoint objects, snapshot records, audit objects, attic segments.
    pub metadata: u64,
    pub bytes: u64,
    /// Checkpoints written to retire the old journal.
    pub checkpoints: u64,
}

/// One pack's live segments: offset → (unit, sealed length).
struct PackPlan {
    size: u64,
    units: u32,
    segments: BTreeMap<u64, (u32, u32)>,
}

impl Engine {
    /// Seals with a rotation's keys from now on (see [`Vault::replace`]).
    ///
    /// [`Vault::replace`]: super::vault::Vault::replace
    pub fn rekey(&self, ring: &crate::crypto::KeyRing) -> EngineResult<()> {
        self.keys
            .replace(crate::crypto::Keys::from_ring(ring, &self.volume_id))
    }

    /// Re-seals everything the volume needs under the current epoch (see
    /// the module rules), at most `rate` bytes per second if given.
    pub fn reseal(
        &self,
        progress: &ResealProgress,
        rate: Option<u64>,
    ) -> EngineResult<ResealReport> {
        if self.is_read_only() {
            return Err(EngineError::ReadOnly);
        }
        let mut walk = Walk {
            engine: self,
            progress,
            report: ResealReport::default(),
            throttle: Throttle::new(rate),
        };
        walk.retire_journal()?;
        walk.checkpoints()?;
        let mut done = HashSet::new();
        // Packs sealed just before the key change may be committed while
        // the first pass runs: a second pass looks at what is new.
        for _ in 0..2 {
            walk.packs(&mut done)?;
        }
        for prefix in [SNAPSHOT_PREFIX, AUDIT_PREFIX, ATTIC_PREFIX] {
            walk.whole_objects(prefix)?;
        }
        Ok(walk.report)
    }
}

struct Walk<'a> {
    engine: &'a Engine,
    progress: &'a ResealProgress,
    report: ResealReport,
    throttle: Throttle,
}

impl Walk<'_> {
    /// Stops the walk when the mount is locked: its copies of the keys go
    /// with it (the next mount or `key rotate` resumes).
    fn check(&self) -> EngineResult<()> {
        match self.engine.is_locked() {
            true => Err(EngineError::Locked),
            false => Ok(()),
        }
    }

    fn key(&self, pick: fn(&crate::crypto::Keys) -> &SubKey) -> EngineResult<SubKey> {
        Ok(pick(&*self.engine.keys.get()?).duplicate())
    }

    /// Checkpoints until replay needs no segment sealed under an older
    /// epoch; the retention after each deletes the segments it retires.
    fn retire_journal(&mut self) -> EngineResult<()> {
        let meta = self.key(|k| &k.meta)?;
        for _ in 0..MAX_CHECKPOINTS {
            self.engine.checkpoint_now()?;
            self.report.checkpoints += 1;
            let oldest = self.engine.retention().oldest_unpinned();
            let store = &self.engine.store;
            let mut stale = 0;
            for o in store.list(JOURNAL_PREFIX)? {
                let Some(seq) = seq_of_key(&o.key) else {
                    continue;
                };
                if seq <= oldest {
                    continue;
                }
                let sealed = match store.get(&o.key) {
                    Ok(b) => b,
                    Err(e) if e.is_not_found() => continue,
                    Err(e) => return Err(e.into()),
                };
                let ad = UnitAd::whole(&self.engine.volume_id, &o.key);
                if !is_current(&meta, &ad, &sealed) {
                    stale += 1;
                }
            }
            if stale == 0 {
                // What the checkpoints retired goes now, not after this
                // walk says it is done.
                return match self.engine.sweep_retained() {
                    Err(EngineError::Store(e)) if e.is_locked() => {
                        log::warn!(
                            "rotation: the store refuses to delete retired metadata ({e}); \
                             it keeps old-key ciphertext until its retention ends"
                        );
                        Ok(())
                    }
                    other => other,
                };
            }
        }
        Err(EngineError::Invalid(format!(
            "journal segments sealed under an older key epoch are still needed after \
             {MAX_CHECKPOINTS} checkpoints; run the rotation again"
        )))
    }

    /// Every kept checkpoint: its index first (as version 2 or later, whose shard
    /// links survive re-sealing the shards), then its shards.
    fn checkpoints(&mut self) -> EngineResult<()> {
        let meta = self.key(|k| &k.meta)?;
        let kept = self.engine.retention().kept();
        self.progress.plan(kept.len());
        let mut shards: BTreeMap<(u64, u64), ShardRef> = BTreeMap::new();
        for seq in kept {
            match self.index(seq) {
                Ok(refs) => shards.extend(refs.into_iter().map(|r| ((r.seq, r.n), r))),
                Err(EngineError::Store(e)) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
            self.progress.step();
        }
        self.progress.plan(shards.len());
        for r in shards.values() {
            let key = checkpoint::shard_key(r.seq, r.n);
            self.whole(&meta, &key, &key, None)?;
            self.progress.step();
        }
        Ok(())
    }

    /// Rewrites index `seq` under the current epoch by content digest (version 2 or later) unless it
    /// is that already; returns its shard refs.
    fn index(&mut self, seq: u64) -> EngineResult<Vec<ShardRef>> {
        self.check()?;
        let (store, vid) = (&*self.engine.store, &self.engine.volume_id);
        let key = checkpoint::index_key(seq);
        let Some(info) = store.head(&key)? else {
            return Ok(Vec::new());
        };
        let sealed = match store.get(&key) {
            Ok(b) => b,
            Err(e) if e.is_not_found() => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        // A copy for this step: no guard is held across the store calls.
        let keys = self.engine.keys.get()?.duplicate();
        let read = checkpoint::open_index(&keys, vid, seq, &sealed)?;
        if read.by_content && read.current {
            return Ok(read.index.shards);
        }
        let mut shards = Vec::with_capacity(read.index.shards.len());
        for r in &read.index.shards {
            let plain = checkpoint::read_shard(store, &keys, vid, r, read.by_content)?;
            shards.push(ShardRef {
                hash: crypto::content_digest(&checkpoint::shard_key(r.seq, r.n), &plain),
                ..*r
            });
        }
        let index = Index {
            shards: shards.clone(),
            ..read.index
        };
        let body = checkpoint::seal_index(&keys, vid, &index);
        self.put(&key, &body, &info.etag)?;
        self.report.metadata += 1;
        Ok(shards)
    }

    /// Every pack the tree or a pinned checkpoint maps, not yet in `done`.
    fn packs(&mut self, done: &mut HashSet<PackId>) -> EngineResult<()> {
        let data = self.key(|k| &k.data)?;
        let plans = self.pack_plans(done)?;
        self.progress.plan(plans.len());
        for (id, plan) in plans {
            self.pack(&data, id, &plan)?;
            done.insert(id);
            self.progress.step();
        }
        Ok(())
    }

    /// Live segments per pack, from the tree and every pinned checkpoint.
    fn pack_plans(&self, done: &HashSet<PackId>) -> EngineResult<BTreeMap<PackId, PackPlan>> {
        let mut plans = BTreeMap::new();
        add_plans(&self.engine.tree(), done, &mut plans);
        let pinned: Vec<u64> = self.engine.retention().pinned_seqs();
        let keys = self.engine.keys.get()?.duplicate();
        for seq in pinned {
            match checkpoint::read(&*self.engine.store, &keys, &self.engine.volume_id, seq) {
                Ok(loaded) => add_plans(&loaded.ns, done, &mut plans),
                Err(MetaError::Store(e)) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(plans)
    }

    /// Re-seals one pack's live segments in place and zeroes the rest.
    fn pack(&mut self, data: &SubKey, id: PackId, plan: &PackPlan) -> EngineResult<()> {
        self.check()?;
        let (store, vid) = (&*self.engine.store, &self.engine.volume_id);
        let key = id.key();
        let last = |unit: u32| unit + 1 == plan.units;
        let Some((&off, &(unit, len))) = plan.segments.iter().next() else {
            return Ok(());
        };
        // Fresh: a copy on local disk (the disk cache, shared by another
        // mount of this host) may be re-sealed where the store is not, and
        // the old epoch is dropped once this walk says all is current.
        let probe = match store.get_range_fresh(&key, off..off + len as u64) {
            Ok(b) => b,
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        if segment_is_current(data, vid, id, unit, last(unit), &probe) {
            return Ok(());
        }
        let Some(info) = store.head(&key)? else {
            return Ok(());
        };
        let old = store.get(&key)?;
        if old.len() as u64 != plan.size {
            return Err(EngineError::Invalid(format!(
                "{key} is {} B where the metadata says {} B",
                old.len(),
                plan.size
            )));
        }
        let mut body = vec![0u8; old.len()];
        for (&off, &(unit, len)) in &plan.segments {
            let at = off as usize..off as usize + len as usize;
            let sealed = reseal_segment(data, vid, id, unit, last(unit), &old[at.clone()])?;
            body[at].copy_from_slice(&sealed);
            self.report.segments += 1;
        }
        self.put(&key, &body, &info.etag)?;
        self.report.packs += 1;
        self.progress
            .bytes
            .fetch_add(body.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Every object under `prefix`, each sealed as one unit.
    fn whole_objects(&mut self, prefix: &str) -> EngineResult<()> {
        let key = match prefix {
            AUDIT_PREFIX => self.key(|k| &k.audit)?,
            _ => self.key(|k| &k.meta)?,
        };
        let objects = self.engine.store.list(prefix)?;
        self.progress.plan(objects.len());
        for o in objects {
            // An attic segment was moved there as it was: sealed for its
            // place in the journal.
            let sealed_for = match prefix {
                ATTIC_PREFIX => o
                    .key
                    .strip_prefix(ATTIC_PREFIX)
                    .and_then(|hex| u64::from_str_radix(hex, 16).ok())
                    .map(journal_key),
                _ => Some(o.key.clone()),
            };
            if let Some(ad_object) = sealed_for {
                self.whole(&key, &o.key, &ad_object, Some(o.etag))?;
            }
            self.progress.step();
        }
        Ok(())
    }

    /// Re-seals object `key`, sealed as one unit for `ad_object`, unless it
    /// is current already or gone. `etag`: the version a listing saw (the
    /// rewrite is conditional on it), else asked for here.
    fn whole(
        &mut self,
        sub: &SubKey,
        key: &str,
        ad_object: &str,
        etag: Option<String>,
    ) -> EngineResult<()> {
        self.check()?;
        let store = &*self.engine.store;
        let etag = match etag {
            Some(e) => e,
            None => match store.head(key)? {
                Some(info) => info.etag,
                None => return Ok(()),
            },
        };
        let sealed = match store.get(key) {
            Ok(b) => b,
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let ad = UnitAd::whole(&self.engine.volume_id, ad_object);
        let (plain, current) = crypto::seal::open_current(sub, &ad, &sealed)?;
        let plain = zeroize::Zeroizing::new(plain);
        if current {
            return Ok(());
        }
        let body = crypto::seal(sub, &ad, &plain);
        self.put(key, &body, &etag)?;
        self.report.metadata += 1;
        self.progress
            .bytes
            .fetch_add(body.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Replaces `key` if it is still the version read; one deleted or
    /// replaced meanwhile is someone else's to keep or drop.
    fn put(&mut self, key: &str, body: &[u8], etag: &str) -> EngineResult<()> {
        self.throttle.take(body.len());
        self.report.bytes += body.len() as u64;
        match self.engine.store.put_if_match(key, body, etag) {
            Ok(()) => Ok(()),
            Err(StoreError::PreconditionFailed { .. }) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// Adds the live segments `ns` maps (of packs not in `done`) to `plans`.
fn add_plans(ns: &Namespace, done: &HashSet<PackId>, plans: &mut BTreeMap<PackId, PackPlan>) {
    for (_, inode) in ns.inodes() {
        let Some(chunks) = inode.chunks() else {
            continue;
        };
        for (_, e) in chunks.extents() {
            if done.contains(&e.pack) {
                continue;
            }
            let Some(info) = ns.pack(&e.pack) else {
                continue;
            };
            let plan = plans.entry(e.pack).or_insert_with(|| PackPlan {
                size: info.size,
                units: info.units,
                segments: BTreeMap::new(),
            });
            for i in 0..e.count {
                let s = e.segment(i);
                plan.segments.insert(s.cipher_off, (s.unit, s.cipher_len));
            }
        }
    }
}

/// Keeps the bytes written at or below a rate, averaged since the start.
struct Throttle {
    rate: Option<u64>,
    start: Instant,
    bytes: u64,
}

impl Throttle {
    fn new(rate: Option<u64>) -> Throttle {
        Throttle {
            rate: rate.filter(|&r| r > 0),
            start: Instant::now(),
            bytes: 0,
        }
    }

    fn take(&mut self, n: usize) {
        self.bytes += n as u64;
        if let Some(rate) = self.rate {
            let due = Duration::from_secs_f64(self.bytes as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(self.start.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
}
