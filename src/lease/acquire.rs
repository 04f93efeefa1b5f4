//! Taking the lease, in the foreground before the fork (so a refusal is
//! the parent's one-line error, exit 4).
//!
//! 1. `put_if_absent`: no lease, ours.
//! 2. Otherwise read it (head → ETag, get, head again: the body must be
//!    the version the ETag names) and judge:
//!    - unreadable (tampered, another volume's): refuse as an integrity
//!      failure; `--force-takeover` replaces it;
//!    - this host, this boot, holder process gone (or its pid reused):
//!      take it at once; this host but another boot: likewise;
//!    - `--force-takeover`: take it, and say whose it was;
//!    - its wall-clock expiry in the future: refuse at once;
//!    - otherwise watch its ETag on our own monotonic clock: unchanged for
//!      the holder's whole TTL → take it; changed → refuse.
//! 3. Taking is `put_if_match` on the ETag judged; losing that race
//!    refuses. Then read back: the lease must carry our writer nonce.
//!
//! Wall clocks never decide that a lease has expired: a contender whose
//! clock runs ahead would otherwise take a live lease.

use std::time::{Duration, UNIX_EPOCH};

use log::{info, warn};

use super::LeaseError;
use super::clock::Clock;
use super::identity::{Identity, show_wall};
use super::record::{self, LEASE_KEY, LeaseRecord};
use crate::crypto::{CryptoError, SubKey};
use crate::store::{ObjectStore, StoreError};

/// Someone who wants the lease, and everything needed to judge the one
/// already there.
pub struct Contender<'a> {
    pub store: &'a dyn ObjectStore,
    pub key: &'a SubKey,
    pub volume_id: &'a [u8; 16],
    pub me: Identity,
    pub clock: &'a dyn Clock,
    /// Whether the process `(pid, start time)` on this host still runs.
    pub alive: &'a dyn Fn(u32, u64) -> bool,
    pub ttl: Duration,
    pub force: bool,
}

/// A lease just taken.
#[derive(Clone, Debug)]
pub struct Acquired {
    pub etag: String,
    pub writer: [u8; 16],
    /// Boot time just before the PUT that made it ours: validity counts
    /// from here.
    pub sent_at: Duration,
    pub ttl: Duration,
    /// True when another mount's lease was replaced (not a fresh create):
    /// the new writer must then fence the old one through the journal.
    pub took_over: bool,
    /// The newest commit (seq, hash) the replaced lease named, carried
    /// into ours; (0, zeros) when there was none.
    pub committed: (u64, [u8; 32]),
}

/// A lease as read: its ETag and its (maybe unreadable) body.
struct Seen {
    etag: String,
    record: Result<LeaseRecord, CryptoError>,
}

enum Verdict {
    Take,
    /// The lease disappeared (released): try to create it again.
    Gone,
}

/// A lease that names no commit yet.
const NO_COMMIT: (u64, [u8; 32]) = (0, [0; 32]);

/// Rounds of "create, else judge" before giving up on a lease that keeps
/// appearing and vanishing.
const ROUNDS: usize = 5;

impl Contender<'_> {
    pub fn acquire(&self) -> Result<Acquired, LeaseError> {
        let writer: [u8; 16] = rand::random();
        for _ in 0..ROUNDS {
            let sent_at = self.clock.now();
            match self
                .store
                .put_if_absent(LEASE_KEY, &self.body(writer, NO_COMMIT))
            {
                Ok(()) => return self.confirm(writer, sent_at, false, NO_COMMIT),
                Err(StoreError::AlreadyExists { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            let Some(seen) = self.read()? else { continue };
            if seen.record.as_ref().is_ok_and(|r| r.writer == writer) {
                // Our own create, whose answer was lost on the way back.
                return self.confirm(writer, sent_at, false, NO_COMMIT);
            }
            match self.judge(&seen)? {
                Verdict::Gone => continue,
                Verdict::Take => return self.take(&seen, writer),
            }
        }
        Err(LeaseError::Lost)
    }

    fn body(&self, writer: [u8; 16], committed: (u64, [u8; 32])) -> Vec<u8> {
        let r = self
            .me
            .record(writer, self.ttl, self.clock.wall(), committed);
        record::seal(self.key, self.volume_id, &r)
    }

    /// The current lease, its body matching its ETag; `None` if absent.
    fn read(&self) -> Result<Option<Seen>, LeaseError> {
        for _ in 0..ROUNDS {
            let Some(info) = self.store.head(LEASE_KEY)? else {
                return Ok(None);
            };
            let body = match self.store.get(LEASE_KEY) {
                Ok(b) => b,
                Err(StoreError::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            let again = self.store.head(LEASE_KEY)?;
            if again.is_some_and(|a| a.etag == info.etag) {
                return Ok(Some(Seen {
                    etag: info.etag,
                    record: record::open(self.key, self.volume_id, &body),
                }));
            }
        }
        Err(LeaseError::Lost)
    }

    fn judge(&self, seen: &Seen) -> Result<Verdict, LeaseError> {
        let r = match &seen.record {
            Ok(r) => r,
            Err(e) if self.force => {
                warn!("--force-takeover: replacing an unreadable lease ({e})");
                return Ok(Verdict::Take);
            }
            Err(e) => return Err(LeaseError::Unreadable(e.clone())),
        };
        let holder = format!("host {} (pid {})", r.host, r.pid);
        if self.me.same_boot(r) && !(self.alive)(r.pid, r.pid_start) {
            info!("the lease names {holder}, a process gone from this host; taking it");
            return Ok(Verdict::Take);
        }
        if r.host == self.me.host && !self.me.boot_id.is_empty() && r.boot_id != self.me.boot_id {
            info!("the lease names {holder} before this host rebooted; taking it");
            return Ok(Verdict::Take);
        }
        if self.force {
            warn!(
                "--force-takeover: taking the writer's lease from {holder}, valid until {}; that mount can no longer commit",
                show_wall(r.valid_until_ms)
            );
            return Ok(Verdict::Take);
        }
        let wall_ms = self
            .clock
            .wall()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        if r.valid_until_ms > wall_ms {
            return Err(held(r));
        }
        self.watch(seen, r)
    }

    /// Waits a full TTL of the holder's on our own clock; the lease is
    /// abandoned only if its ETag never changed meanwhile.
    fn watch(&self, seen: &Seen, r: &LeaseRecord) -> Result<Verdict, LeaseError> {
        let ttl = Duration::from_millis(r.ttl_ms);
        info!(
            "the lease of host {} (pid {}) expired by its wall clock; watching it for {} ms before taking over",
            r.host, r.pid, r.ttl_ms
        );
        let step = (ttl / 10).clamp(Duration::from_millis(10), Duration::from_secs(1));
        let start = self.clock.now();
        loop {
            self.clock.sleep(step);
            match self.store.head(LEASE_KEY)? {
                None => return Ok(Verdict::Gone),
                Some(i) if i.etag != seen.etag => {
                    // Renewed: show the new expiry if it reads.
                    let newer = self.read().ok().flatten().and_then(|s| s.record.ok());
                    return Err(held(newer.as_ref().unwrap_or(r)));
                }
                Some(_) if self.clock.now().saturating_sub(start) >= ttl => {
                    return Ok(Verdict::Take);
                }
                Some(_) => {}
            }
        }
    }

    fn take(&self, seen: &Seen, writer: [u8; 16]) -> Result<Acquired, LeaseError> {
        let sent_at = self.clock.now();
        // What the old holder knew committed stays known.
        let committed = seen
            .record
            .as_ref()
            .map_or(NO_COMMIT, |r| (r.committed_seq, r.committed_hash));
        let body = self.body(writer, committed);
        match self.store.put_if_match(LEASE_KEY, &body, &seen.etag) {
            Ok(()) => self.confirm(writer, sent_at, true, committed),
            Err(StoreError::PreconditionFailed { .. } | StoreError::NotFound { .. }) => {
                Err(LeaseError::Lost)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The lease's ETag now, checked to be ours: nobody but us writes our
    /// nonce, so if the body read after the head is ours, the head's ETag
    /// was ours too.
    fn confirm(
        &self,
        writer: [u8; 16],
        sent_at: Duration,
        took_over: bool,
        committed: (u64, [u8; 32]),
    ) -> Result<Acquired, LeaseError> {
        let info = self.store.head(LEASE_KEY)?.ok_or(LeaseError::Lost)?;
        let body = match self.store.get(LEASE_KEY) {
            Ok(b) => b,
            Err(StoreError::NotFound { .. }) => return Err(LeaseError::Lost),
            Err(e) => return Err(e.into()),
        };
        match record::open(self.key, self.volume_id, &body) {
            Ok(r) if r.writer == writer => Ok(Acquired {
                etag: info.etag,
                writer,
                sent_at,
                ttl: self.ttl,
                took_over,
                committed,
            }),
            _ => Err(LeaseError::Lost),
        }
    }
}

fn held(r: &LeaseRecord) -> LeaseError {
    LeaseError::Held {
        host: r.host.clone(),
        pid: r.pid,
        until: show_wall(r.valid_until_ms),
    }
}
