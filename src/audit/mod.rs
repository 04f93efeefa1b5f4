//! The audit trail: who touched which file, when, from which host and
//! process, and how it ended, kept sealed in the volume itself.
//!
//! `fs` hands every audited operation to the [`Auditor`] as it happens;
//! the auditor spools the record on this host at once, and batches records
//! into sealed, hash-chained segments in the store (`segment`).
//!
//! Rules:
//! - An operation's record is durable no later than the commit that makes
//!   the operation durable: `fs` records a change while it holds the tree
//!   lock it applies the change under, and the engine, before it seals each
//!   journal segment, has the auditor upload what it holds
//!   ([`Auditor::flush`]) and binds the trail's newest (seq, hash) into the
//!   segment, so the trail cannot be cut back without the journal noticing.
//! - Records not yet in the store are in the local spool (`spool`): a
//!   killed daemon loses none; the next mount adopts and uploads them.
//!   Records of operations that change nothing (a read-only open, a
//!   failure) are uploaded within a flush interval.
//! - Segments are written create-only, in seq order, one flush at a time.
//!   A refused or failed upload keeps the records (memory and spool) for
//!   the next flush.
//! - Audit objects are never garbage-collected by the filesystem; only
//!   `audit prune` removes them, and records that it did.
//! - Nothing here logs a path: paths live only in sealed records.

pub mod prune;
pub mod query;
pub mod record;
pub mod segment;
pub mod spool;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock, Weak};
use std::time::Duration;

use crate::crypto::SubKey;
use crate::store::{ObjectStore, StoreError, StoreResult};
pub use record::{Op, Record};
use segment::{AUDIT_PREFIX, Segment};
use spool::{Instance, Spool};

/// The head of a chain: its newest segment and that segment's hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainHead {
    pub seq: u64,
    pub hash: [u8; 32],
    /// Records in the chain through that segment.
    pub count: u64,
}

pub struct Auditor {
    store: Arc<dyn ObjectStore>,
    /// Wiped while the mount is locked (`lock`).
    key: RwLock<SubKey>,
    locked: AtomicBool,
    /// Records that came while locked (closes of files open at the lock):
    /// counted, never kept, since nothing could seal them.
    unrecorded: AtomicU64,
    volume_id: [u8; 16],
    chain: String,
    host: String,
    instance: Instance,
    state: Mutex<State>,
    /// One flush at a time, so segments go up in seq order.
    flushing: Mutex<()>,
    wake: Condvar,
}

struct State {
    head: ChainHead,
    pending: Vec<Record>,
    /// The number of `pending[0]`; records are numbered per auditor.
    first_pending: u64,
    next_index: u64,
    spool: Spool,
    stop: bool,
    /// The last upload failed (logged once until one succeeds).
    failing: bool,
    /// (seq, first spool index) of an upload that failed without knowing
    /// whether its PUT got in: a retry that finds that seq taken checks
    /// whether the segment there is its own.
    unsure: Option<(u64, u64)>,
}

/// Attempts of one flush that find their seq taken by another auditor of
/// the chain (a writer that took over, a stopped one resuming).
const RACES: usize = 8;

/// Records per segment at most, and their bytes (as counted by
/// [`Record::size_hint`]). A flush after a long store outage takes what
/// piled up in several segments: each stays far below what a reader
/// accepts (`MAX_SEGMENT_BYTES`), and one failed PUT costs one piece
/// again, not the whole backlog.
const SEGMENT_RECORDS: usize = 16_384;
const SEGMENT_BYTES: usize = 32 << 20;

/// How many of `records`, from the first, make the next segment: at least
/// one, and within both bounds above.
fn piece_len(records: &[Record]) -> usize {
    let mut bytes = 0;
    let fits = records.iter().take(SEGMENT_RECORDS).take_while(|r| {
        bytes += r.size_hint();
        bytes <= SEGMENT_BYTES
    });
    fits.count().max(1).min(records.len())
}

impl Auditor {
    /// Opens `chain` of the volume's trail: finds its head in the store,
    /// and adopts what dead mounts left in the spool directory (the
    /// records their chains do not hold yet).
    pub fn open(
        store: Arc<dyn ObjectStore>,
        key: SubKey,
        volume_id: [u8; 16],
        chain: &str,
        spool_dir: &std::path::Path,
    ) -> StoreResult<Arc<Auditor>> {
        let head = find_head(&*store, &key, &volume_id, chain)?;
        let io = |e: std::io::Error| StoreError::from_os("audit spool", &e);
        let instance: Instance = rand::random();
        let mut spool = Spool::create(spool_dir, chain, instance).map_err(io)?;
        let mut pending = Vec::new();
        let leftovers = spool::leftovers(spool_dir, &key, &volume_id).map_err(io)?;
        for l in &leftovers {
            let since = l.records.iter().map(|(_, r)| r.time_ms).min().unwrap_or(0);
            let through = uploaded_through(&*store, &key, &volume_id, &l.chain, l.instance, since)?;
            for (index, r) in &l.records {
                if through.is_some_and(|t| *index <= t) {
                    continue;
                }
                spool
                    .append(&key, &volume_id, pending.len() as u64, r)
                    .map_err(io)?;
                pending.push(r.clone());
            }
        }
        if !leftovers.is_empty() {
            spool.close_generation().map_err(io)?;
            // Durable before the dead instance's files go.
            spool.make_durable().map_err(io)?;
            for f in leftovers.iter().flat_map(|l| &l.files) {
                let _ = std::fs::remove_file(f);
            }
            log::info!(
                "audit: adopted {} records a stopped mount left in the spool",
                pending.len()
            );
        }
        Ok(Arc::new(Auditor {
            store,
            key: RwLock::new(key),
            locked: AtomicBool::new(false),
            unrecorded: AtomicU64::new(0),
            volume_id,
            chain: chain.to_owned(),
            host: host_name(),
            instance,
            state: Mutex::new(State {
                head,
                next_index: pending.len() as u64,
                pending,
                first_pending: 0,
                spool,
                stop: false,
                failing: false,
                unsure: None,
            }),
            flushing: Mutex::new(()),
            wake: Condvar::new(),
        }))
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn chain(&self) -> &str {
        &self.chain
    }

    fn key(&self) -> std::sync::RwLockReadGuard<'_, SubKey> {
        self.key.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes one record: spooled now, uploaded at the next flush.
    pub fn record(&self, r: Record) {
        if self.locked.load(Ordering::SeqCst) {
            self.unrecorded.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let mut s = self.state();
        let index = s.next_index;
        s.next_index += 1;
        if let Err(e) = s.spool.append(&self.key(), &self.volume_id, index, &r) {
            let msg = format_args!("cannot spool a record ({e}); it waits in memory only");
            crate::alert::raise(crate::alert::Alert::Audit, msg);
        }
        s.pending.push(r);
        if s.pending.len() >= 4096 {
            self.wake.notify_all();
        }
    }

    /// Uploads every record taken so far, in segments of at most
    /// [`SEGMENT_RECORDS`] and [`SEGMENT_BYTES`]; returns the chain's head
    /// (the newest segment, uploaded now or before).
    pub fn flush(&self) -> StoreResult<ChainHead> {
        let _one = self.flushing.lock().unwrap_or_else(|p| p.into_inner());
        let (mut rest, mut first_index) = {
            let mut s = self.state();
            if s.pending.is_empty() {
                return Ok(s.head);
            }
            if let Err(e) = s.spool.close_generation() {
                crate::alert::raise(
                    crate::alert::Alert::Audit,
                    format_args!("cannot close a spool generation ({e})"),
                );
            }
            let first = s.first_pending;
            s.first_pending = s.next_index;
            (std::mem::take(&mut s.pending), first)
        };
        let mut failed = None;
        while !rest.is_empty() {
            let tail = rest.split_off(piece_len(&rest));
            let piece = std::mem::replace(&mut rest, tail);
            let len = piece.len() as u64;
            match self.upload(piece, first_index) {
                Ok((head, mut left)) => {
                    self.state().head = head;
                    first_index += len - left.len() as u64;
                    left.append(&mut rest);
                    rest = left;
                }
                Err((e, mut piece)) => {
                    piece.append(&mut rest);
                    rest = piece;
                    failed = Some(e);
                    break;
                }
            }
        }
        let mut s = self.state();
        let Some(e) = failed else {
            s.spool.uploaded();
            if std::mem::take(&mut s.failing) {
                log::info!("AUDIT: uploads work again; the trail is in the store");
            }
            return Ok(s.head);
        };
        if let Err(e) = s.spool.make_durable() {
            crate::alert::raise(
                crate::alert::Alert::Audit,
                format_args!("cannot make the spool durable ({e})"),
            );
        }
        if !std::mem::replace(&mut s.failing, true) {
            let msg = format_args!("an upload failed, records wait in the spool: {e}");
            crate::alert::raise(crate::alert::Alert::Audit, msg);
        }
        // Back in front of what came since; the spool still has them (and
        // the pieces uploaded already, which the next mount skips by index).
        rest.append(&mut s.pending);
        s.pending = rest;
        s.first_pending = first_index;
        Err(e)
    }

    /// Uploads `records` as the chain's next segment, retrying at the new
    /// head when another auditor took the seq. Returns the new head and
    /// the records the segment does not hold (none, unless an earlier
    /// attempt of fewer records got in), or all of them with the error.
    fn upload(
        &self,
        mut records: Vec<Record>,
        first_index: u64,
    ) -> Result<(ChainHead, Vec<Record>), (StoreError, Vec<Record>)> {
        for _ in 0..RACES {
            let head = self.head();
            let seg = Segment {
                chain: self.chain.clone(),
                seq: head.seq + 1,
                prev_hash: head.hash,
                count_before: head.count,
                host: self.host.clone(),
                writer: self.instance,
                first_index,
                records,
            };
            let (sealed, digest) = segment::seal(&self.key(), &self.volume_id, &seg);
            let key = segment::key(&self.chain, seg.seq);
            records = seg.records;
            let n = records.len() as u64;
            match self.store.put_if_absent(&key, &sealed) {
                Ok(()) => {
                    self.state().unsure = None;
                    let head = ChainHead {
                        seq: seg.seq,
                        hash: digest,
                        count: seg.count_before + n,
                    };
                    return Ok((head, Vec::new()));
                }
                Err(StoreError::AlreadyExists { .. }) => {
                    // Taken by this very upload, when an earlier attempt's
                    // answer was lost: done, and not again at the next seq.
                    let unsure = self.state().unsure.take();
                    if unsure == Some((seg.seq, first_index)) {
                        match self.ours_at(seg.seq, first_index) {
                            Ok(Some((head, held))) => {
                                // The earlier piece was never longer: it
                                // began with these same records.
                                debug_assert!(held as usize <= records.len());
                                let left = records.split_off((held as usize).min(records.len()));
                                return Ok((head, left));
                            }
                            Ok(None) => {}
                            Err(e) => {
                                self.state().unsure = unsure;
                                return Err((e, records));
                            }
                        }
                    }
                    match find_head(&*self.store, &self.key(), &self.volume_id, &self.chain) {
                        Ok(h) => self.state().head = h,
                        Err(e) => return Err((e, records)),
                    }
                }
                Err(e) => {
                    self.state().unsure = Some((seg.seq, first_index));
                    return Err((e, records));
                }
            }
        }
        let e = StoreError::io(
            "audit",
            std::io::ErrorKind::Other,
            format!("{RACES} other auditors took the next segment first"),
        );
        Err((e, records))
    }

    /// The head segment `seq` makes and how many records it holds, if this
    /// auditor wrote it starting at spool index `first_index`.
    fn ours_at(&self, seq: u64, first_index: u64) -> StoreResult<Option<(ChainHead, u64)>> {
        let k = segment::key(&self.chain, seq);
        let sealed = match self.store.get_max(&k, segment::MAX_SEGMENT_BYTES) {
            Ok(sealed) => sealed,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e),
        };
        // One this auditor cannot open is not one it wrote.
        let Ok((seg, digest)) =
            segment::open(&self.key(), &self.volume_id, &self.chain, seq, &sealed)
        else {
            return Ok(None);
        };
        if seg.writer != self.instance || seg.first_index != first_index {
            return Ok(None);
        }
        let n = seg.records.len() as u64;
        let head = ChainHead {
            seq,
            hash: digest,
            count: seg.count_before + n,
        };
        Ok(Some((head, n)))
    }

    /// Removes the records older than `before_ms` from every chain
    /// (`prune`), and records that it did, in this chain, durably.
    pub fn prune(&self, before_ms: u64) -> StoreResult<prune::Pruned> {
        let pruned = prune::prune(&*self.store, &self.key(), &self.volume_id, before_ms)?;
        self.record(Record::admin(&format!(
            "audit prune before {}: {} segments, {} records removed",
            format_time(before_ms),
            pruned.segments,
            pruned.records
        )));
        self.flush()?;
        Ok(pruned)
    }

    /// Uploads every record (waiting out a store outage), then wipes the
    /// key: records that come while locked are only counted.
    pub fn lock(&self) {
        let mut pause = std::time::Duration::from_millis(200);
        while let Err(e) = self.flush() {
            log::warn!("lock: waiting to upload the audit records before wiping the key: {e}");
            std::thread::sleep(pause);
            pause = (pause * 2).min(std::time::Duration::from_secs(5));
        }
        self.locked.store(true, Ordering::SeqCst);
        self.key.write().unwrap_or_else(|p| p.into_inner()).wipe();
    }

    /// Whether the key reads back as zeros (the lock's self-check).
    pub fn keys_wiped(&self) -> bool {
        self.key().is_wiped()
    }

    /// Seals with `ring`'s current epoch from now on (a rotation); a locked
    /// trail keeps its wiped key (unlock derives the new one).
    pub fn rekey(&self, ring: &crate::crypto::KeyRing) {
        let keys = crate::crypto::Keys::from_ring(ring, &self.volume_id);
        let mut key = self.key.write().unwrap_or_else(|p| p.into_inner());
        if !self.locked.load(Ordering::SeqCst) {
            *key = keys.audit.duplicate();
        }
    }

    /// Derives the key again from the key ring and takes records again.
    pub fn unlock(&self, ring: &crate::crypto::KeyRing) {
        let keys = crate::crypto::Keys::from_ring(ring, &self.volume_id);
        *self.key.write().unwrap_or_else(|p| p.into_inner()) = keys.audit.duplicate();
        self.locked.store(false, Ordering::SeqCst);
    }

    /// How many records came while locked (reset).
    pub fn take_unrecorded(&self) -> u64 {
        self.unrecorded.swap(0, Ordering::Relaxed)
    }

    /// Records taken and not yet in the store, and whether the last
    /// upload failed.
    pub fn backlog(&self) -> (u64, bool) {
        let s = self.state();
        (s.pending.len() as u64, s.failing)
    }

    /// The chain's head as last uploaded.
    pub fn head(&self) -> ChainHead {
        self.state().head
    }

    /// Flushes every `interval` (and when many records wait), until
    /// [`Auditor::stop`].
    pub fn start(self: &Arc<Auditor>, interval: Duration) {
        let weak: Weak<Auditor> = Arc::downgrade(self);
        let spawned = std::thread::Builder::new()
            .name("audit".into())
            .spawn(move || {
                loop {
                    let Some(a) = weak.upgrade() else { return };
                    {
                        let s = a.state();
                        let (s, _) = a
                            .wake
                            .wait_timeout(s, interval)
                            .unwrap_or_else(|p| p.into_inner());
                        if s.stop {
                            return;
                        }
                    }
                    let _ = a.flush();
                }
            });
        if let Err(e) = spawned {
            let msg = format_args!("no flusher thread ({e}); records go up with commits only");
            crate::alert::raise(crate::alert::Alert::Audit, msg);
        }
    }

    /// Stops the flusher and uploads what is left.
    pub fn stop(&self) -> StoreResult<ChainHead> {
        self.state().stop = true;
        self.wake.notify_all();
        self.flush()
    }
}

/// The newest segment of `chain` in the store (seq 0 if none).
fn find_head(
    store: &dyn ObjectStore,
    key: &SubKey,
    volume_id: &[u8; 16],
    chain: &str,
) -> StoreResult<ChainHead> {
    let prefix = format!("{AUDIT_PREFIX}{chain}/");
    let newest = store
        .list(&prefix)?
        .into_iter()
        .filter_map(|o| segment::parse_key(&o.key).map(|(_, seq)| seq))
        .max();
    let Some(seq) = newest else {
        return Ok(ChainHead {
            seq: 0,
            hash: [0; 32],
            count: 0,
        });
    };
    let k = segment::key(chain, seq);
    let sealed = store.get_max(&k, segment::MAX_SEGMENT_BYTES)?;
    let (seg, digest) = segment::open(key, volume_id, chain, seq, &sealed)
        .map_err(|e| StoreError::io(&k, std::io::ErrorKind::InvalidData, e.to_string()))?;
    Ok(ChainHead {
        seq,
        hash: digest,
        count: seg.count_before + seg.records.len() as u64,
    })
}

/// `ms` since the epoch as RFC 3339 in UTC, to the millisecond.
pub fn format_time(ms: u64) -> String {
    match jiff::Timestamp::from_millisecond(ms as i64) {
        Ok(t) => format!("{t:.3}"),
        Err(_) => format!("@{ms}ms"),
    }
}

/// Wall-clock time in ms since the Unix epoch, as records carry it.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The number of the newest record `instance` put in `chain`, looking
/// back from the chain's head no further than segments older than
/// `since_ms` (its spool's oldest record).
fn uploaded_through(
    store: &dyn ObjectStore,
    key: &SubKey,
    volume_id: &[u8; 16],
    chain: &str,
    instance: Instance,
    since_ms: u64,
) -> StoreResult<Option<u64>> {
    let prefix = format!("{AUDIT_PREFIX}{chain}/");
    let mut seqs: Vec<u64> = store
        .list(&prefix)?
        .iter()
        .filter_map(|o| segment::parse_key(&o.key).map(|(_, seq)| seq))
        .collect();
    seqs.sort_unstable_by(|a, b| b.cmp(a));
    for seq in seqs {
        let k = segment::key(chain, seq);
        let sealed = store.get_max(&k, segment::MAX_SEGMENT_BYTES)?;
        let Ok((seg, _)) = segment::open(key, volume_id, chain, seq, &sealed) else {
            continue;
        };
        if seg.writer == instance {
            return Ok((seg.first_index + seg.records.len() as u64).checked_sub(1));
        }
        if seg.records.iter().all(|r| r.time_ms < since_ms) {
            break;
        }
    }
    Ok(None)
}

/// This host's name, for each segment.
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: `buf` is writable for its whole length.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}
