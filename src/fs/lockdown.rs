//! Lock-down (`sealedfs lock`, HIPAA's emergency access lock and automatic
//! logoff): the mount keeps running but serves nobody and holds neither
//! keys nor file contents until `sealedfs unlock`.
//!
//! Order, each step only after the one before:
//! 1. refuse: from now on every request but closing answers EACCES (the
//!    FUSE adapter asks [`Fs::is_locked`]);
//! 2. commit: dirty data and attributes are made durable, retrying while
//!    the store is away (a wiped key could never seal them later); a mount
//!    that can never commit again (fenced) drops them, as it would anyway;
//! 3. the audit trail uploads what it holds;
//! 4. drop plaintext: the chunk cache (each buffer zeroed first when no
//!    reader still holds it) and the kernel's page cache of every file;
//! 5. wipe: the engine's and the auditor's keys are zeroed in place, then
//!    read back to check (the reply says whether they all read zero).
//!
//! Left in memory while locked: the namespace (names and attributes, as in
//! the kernel's dentry cache) and the lease's own subkey, which seals only
//! the lease object and is needed to keep the lease (docs/HIPAA.md).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use super::{Fs, FsResult};
use crate::audit::Record;
use crate::crypto::KeyRing;

/// What a lock did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Locked {
    /// Every wiped key read back as zeros.
    pub keys_zeroed: bool,
    /// Bytes of plaintext dropped from the cache.
    pub dropped_bytes: u64,
}

impl Fs {
    /// Whether the mount is locked: every request but closing is refused.
    pub fn is_locked(&self) -> bool {
        self.lockdown.locked.load(Ordering::SeqCst)
    }

    /// Counts a request refused because the mount is locked.
    pub fn refused_while_locked(&self) {
        self.lockdown.refused.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an unlock refused (a wrong passphrase): nothing can be
    /// recorded while locked, so the next unlock's record says how many.
    pub fn failed_unlock(&self) {
        self.lockdown.failed_unlocks.fetch_add(1, Ordering::Relaxed);
    }

    /// Notes that a request came in (the idle lock's clock).
    pub fn note_activity(&self) {
        let ms = self.lockdown.clock.elapsed().as_millis() as u64;
        self.lockdown.last_request_ms.store(ms, Ordering::Relaxed);
    }

    /// The idle lock, if one was set.
    pub fn lock_after(&self) -> Option<Duration> {
        *self
            .lockdown
            .after
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Locks the mount once no request came for `after` (HIPAA's automatic
    /// logoff), again after every unlock, until the mount ends.
    pub fn lock_when_idle(self: &Arc<Fs>, after: Duration) {
        *self
            .lockdown
            .after
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(after);
        let weak: Weak<Fs> = Arc::downgrade(self);
        let tick = (after / 10).clamp(Duration::from_millis(100), Duration::from_secs(5));
        let spawned = std::thread::Builder::new()
            .name("idle-lock".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(tick);
                    let Some(fs) = weak.upgrade() else { return };
                    if fs.shut.load(Ordering::SeqCst) {
                        return;
                    }
                    let now = fs.lockdown.clock.elapsed().as_millis() as u64;
                    let last = fs.lockdown.last_request_ms.load(Ordering::Relaxed);
                    if fs.is_locked() || now.saturating_sub(last) < after.as_millis() as u64 {
                        continue;
                    }
                    if let Some(a) = fs.auditor() {
                        let idle = format!("lock: idle for {} s", after.as_secs());
                        a.record(Record::admin(&idle));
                    }
                    match fs.lock_down() {
                        Ok(_) => log::info!("locked after {} s without a request", after.as_secs()),
                        Err(e) => log::warn!("idle lock failed: {e}"),
                    }
                }
            });
        if let Err(e) = spawned {
            log::error!("no idle-lock thread ({e}): this mount will not lock by itself");
        }
    }

    /// Locks the mount (see the module rules). Idempotent.
    pub fn lock_down(&self) -> FsResult<Locked> {
        let _one = self
            .lockdown
            .changing
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        self.lockdown.locked.store(true, Ordering::SeqCst);
        self.commit_before_lock();
        if let Some(a) = self.auditor() {
            a.lock();
        }
        let dropped_bytes = self.cache().clear();
        self.invalidate_everything();
        let engine_zeroed = self.engine.lock_keys();
        let audit_zeroed = self.auditor().is_none_or(|a| a.keys_wiped());
        Ok(Locked {
            keys_zeroed: engine_zeroed && audit_zeroed,
            dropped_bytes,
        })
    }

    /// Unlocks with the volume's master key (from the passphrase, key file
    /// or KMS, asked for again); `who` made the request, for the trail.
    pub fn unlock(&self, ring: &KeyRing, who: Record) -> FsResult<()> {
        let _one = self
            .lockdown
            .changing
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if !self.is_locked() {
            return Ok(());
        }
        self.engine.unlock_keys(ring);
        if let Some(a) = self.auditor() {
            a.unlock(ring);
            let refused = self.lockdown.refused.swap(0, Ordering::Relaxed);
            let failed = self.lockdown.failed_unlocks.swap(0, Ordering::Relaxed);
            let unrecorded = a.take_unrecorded();
            let mut r = who;
            r.op = crate::audit::Op::Admin {
                what: format!(
                    "unlock: while locked {refused} requests refused, \
                     {failed} unlocks refused, {unrecorded} closes not recorded"
                ),
            };
            a.record(r);
        }
        self.note_activity();
        self.lockdown.locked.store(false, Ordering::SeqCst);
        Ok(())
    }

    /// Commits everything, waiting out a store outage; gives up only when
    /// nothing can ever be committed here again.
    fn commit_before_lock(&self) {
        let mut pause = Duration::from_millis(200);
        loop {
            match self.sync_all() {
                Ok(()) => return,
                Err(e) if self.engine.sticky_failure().is_some() => {
                    log::warn!("lock: what was not committed is dropped ({e})");
                    return;
                }
                Err(e) => {
                    log::warn!("lock: waiting to commit before wiping the keys: {e}");
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Drops the kernel's cached pages and attributes of every inode.
    fn invalidate_everything(&self) {
        let inos: std::collections::BTreeSet<u64> =
            self.lock().ns().inodes().map(|(ino, _)| ino).collect();
        self.invalidate(Some(&inos));
    }
}

/// The lock's state in `Fs`.
pub(crate) struct Lockdown {
    locked: AtomicBool,
    refused: AtomicU64,
    failed_unlocks: AtomicU64,
    /// One lock or unlock at a time.
    changing: Mutex<()>,
    /// The idle lock's clock: ms since `clock` of the last request.
    clock: Instant,
    last_request_ms: AtomicU64,
    after: Mutex<Option<Duration>>,
}

impl Default for Lockdown {
    fn default() -> Lockdown {
        Lockdown {
            locked: AtomicBool::new(false),
            refused: AtomicU64::new(0),
            failed_unlocks: AtomicU64::new(0),
            changing: Mutex::new(()),
            clock: Instant::now(),
            last_request_ms: AtomicU64::new(0),
            after: Mutex::new(None),
        }
    }
}
