//! Holding the lease: renewal, validity, fencing, release.
//!
//! Rules:
//! - Validity is measured on our own CLOCK_BOOTTIME from the moment
//!   *before* the last renewal that got through was sent: valid while
//!   `now < sent_at + TTL − margin`. A contender waits a full TTL after it
//!   first saw that renewal's ETag, which is later, so the holder always
//!   stops first; the margin covers a PUT that was checked in time but
//!   lands late.
//! - While not valid, [`Holder::may_write`] refuses: the [`LeasedStore`]
//!   in front of the filesystem then lets no PUT or DELETE through.
//!   Renewal keeps trying; one that gets through with `If-Match` on our
//!   ETag proves nobody took the lease meanwhile (taking it changes the
//!   ETag), so writing resumes. A long outage is bounded by the
//!   filesystem's own upload and commit deadlines, not here.
//! - A renewal answered `PreconditionFailed` (or `NotFound`) is read back:
//!   our writer nonce means our own earlier attempt landed with its answer
//!   lost (adopt the new ETag); anything else means another mount took
//!   the lease: **fenced**, for good. Fencing runs the registered hooks
//!   (the filesystem turns read-only) and is logged once.
//! - Release deletes the lease only while it is still valid and its ETag
//!   is still ours.
//!
//! [`LeasedStore`]: super::LeasedStore

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use log::{info, warn};

use super::acquire::Acquired;
use super::clock::Clock;
use super::identity::Identity;
use super::record::{self, LEASE_KEY};
use crate::crypto::SubKey;
use crate::store::{ObjectStore, StoreError, StoreResult};

type Hook = Box<dyn Fn(&str) + Send>;

pub struct Holder {
    store: Arc<dyn ObjectStore>,
    /// Replaced by a key rotation ([`Holder::rekey`]).
    key: Mutex<SubKey>,
    volume_id: [u8; 16],
    clock: Arc<dyn Clock>,
    me: Identity,
    writer: [u8; 16],
    ttl: Duration,
    state: Mutex<State>,
    cv: Condvar,
    hooks: Mutex<Vec<Hook>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

struct State {
    /// The ETag of the lease as we last wrote it.
    etag: String,
    /// Boot time before the last renewal that got through.
    sent_at: Duration,
    fenced: Option<String>,
    /// A lapse was logged and not yet followed by a renewal.
    lapsed: bool,
    stop: bool,
    /// The newest commit (seq, hash) to name at the next renewal.
    committed: (u64, [u8; 32]),
}

/// What one renewal attempt came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    Renewed,
    /// A transient store error (or our own lost answer): try again soon.
    Retry,
    Fenced,
}

impl Holder {
    /// Seals the lease with `key` from the next renewal on (a rotation).
    pub fn rekey(&self, key: SubKey) {
        *self.key.lock().unwrap_or_else(|p| p.into_inner()) = key;
    }

    fn key(&self) -> std::sync::MutexGuard<'_, SubKey> {
        self.key.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Holds `acquired` as `me` (after a fork, the child: the first
    /// renewal writes its pid). No store call yet.
    pub fn new(
        store: Arc<dyn ObjectStore>,
        key: SubKey,
        volume_id: [u8; 16],
        clock: Arc<dyn Clock>,
        me: Identity,
        acquired: &Acquired,
    ) -> Arc<Holder> {
        Arc::new(Holder {
            store,
            key: Mutex::new(key),
            volume_id,
            clock,
            me,
            writer: acquired.writer,
            ttl: acquired.ttl,
            state: Mutex::new(State {
                etag: acquired.etag.clone(),
                sent_at: acquired.sent_at,
                fenced: None,
                lapsed: false,
                stop: false,
                committed: acquired.committed,
            }),
            cv: Condvar::new(),
            hooks: Mutex::new(Vec::new()),
            thread: Mutex::new(None),
        })
    }

    /// The state is a few fields set in single steps: a panic elsewhere
    /// cannot leave it half-changed, so poisoning is ignored.
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Safety margin: the holder stops this long before a contender may
    /// take over.
    pub fn margin(&self) -> Duration {
        self.ttl / 5
    }

    /// `Ok` while store writes are allowed; otherwise why not.
    pub fn may_write(&self) -> Result<(), String> {
        let s = self.state();
        if let Some(f) = &s.fenced {
            return Err(format!("writer's lease lost: {f}"));
        }
        let deadline = s.sent_at + self.ttl - self.margin();
        if self.clock.now() >= deadline {
            return Err("writer's lease lapsed (not renewed in time)".into());
        }
        Ok(())
    }

    /// The newest commit to name from the next renewal on (never older
    /// than one named before).
    pub fn set_committed(&self, seq: u64, hash: [u8; 32]) {
        let mut s = self.state();
        if seq > s.committed.0 {
            s.committed = (seq, hash);
        }
    }

    pub fn is_fenced(&self) -> bool {
        self.state().fenced.is_some()
    }

    /// Runs `hook` once when the lease is lost (at once if it already is).
    pub fn on_fenced(&self, hook: impl Fn(&str) + Send + 'static) {
        let fenced = self.state().fenced.clone();
        match fenced {
            Some(why) => hook(&why),
            None => self
                .hooks
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(Box::new(hook)),
        }
    }

    /// Marks the lease lost for good; logs and runs the hooks once.
    pub fn fence(&self, why: &str) {
        {
            let mut s = self.state();
            if s.fenced.is_some() {
                return;
            }
            s.fenced = Some(why.to_string());
            self.cv.notify_all();
        }
        let msg =
            format_args!("lost the writer's lease ({why}): the mount is read-only from now on");
        crate::alert::raise(crate::alert::Alert::Fenced, msg);
        let hooks = std::mem::take(&mut *self.hooks.lock().unwrap_or_else(|p| p.into_inner()));
        for h in hooks {
            h(why);
        }
    }

    /// One `If-Match` renewal on the ETag we hold. Its store calls end
    /// within a third of the TTL: a renewal that hangs on a stalled store
    /// must leave time for the next one.
    pub fn renew_once(&self) -> Renewal {
        let deadline = std::time::Instant::now() + self.ttl / 3;
        crate::store::deadline::within(deadline, || self.renew_attempt())
    }

    fn renew_attempt(&self) -> Renewal {
        let etag = {
            let s = self.state();
            if s.fenced.is_some() {
                return Renewal::Fenced;
            }
            s.etag.clone()
        };
        let sent_at = self.clock.now();
        let committed = self.state().committed;
        let r = self
            .me
            .record(self.writer, self.ttl, self.clock.wall(), committed);
        let body = record::seal(&self.key(), &self.volume_id, &r);
        match self.store.put_if_match(LEASE_KEY, &body, &etag) {
            Ok(()) => match self.read_back() {
                Ok(Some(etag)) => {
                    let mut s = self.state();
                    if std::mem::take(&mut s.lapsed) {
                        info!(
                            "writer's lease renewed after a lapse; nobody took it, writes resume"
                        );
                    }
                    s.etag = etag;
                    s.sent_at = sent_at;
                    Renewal::Renewed
                }
                Ok(None) => self.lost("the lease was replaced right after our renewal"),
                Err(e) => {
                    warn!("lease renewal: cannot read the lease back, retrying: {e}");
                    Renewal::Retry
                }
            },
            Err(StoreError::PreconditionFailed { .. } | StoreError::NotFound { .. }) => {
                match self.read_back() {
                    Ok(Some(etag)) => {
                        // An earlier attempt of ours landed, its answer
                        // lost; when is unknown, so validity does not move.
                        self.state().etag = etag;
                        Renewal::Retry
                    }
                    Ok(None) => self.lost("another mount took the lease over"),
                    Err(e) => {
                        warn!("lease renewal: cannot read the lease back, retrying: {e}");
                        Renewal::Retry
                    }
                }
            }
            Err(e) => {
                warn!("lease renewal failed, retrying: {e}");
                Renewal::Retry
            }
        }
    }

    fn lost(&self, why: &str) -> Renewal {
        self.fence(why);
        Renewal::Fenced
    }

    /// The lease's ETag if the lease is ours (our writer nonce), `None` if
    /// it is gone, unreadable or someone else's.
    fn read_back(&self) -> StoreResult<Option<String>> {
        let Some(info) = self.store.head(LEASE_KEY)? else {
            return Ok(None);
        };
        let body = match self.store.get_max(LEASE_KEY, record::MAX_LEASE_BYTES) {
            Ok(b) => b,
            Err(StoreError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(match record::open(&self.key(), &self.volume_id, &body) {
            Ok(r) if r.writer == self.writer => Some(info.etag),
            _ => None,
        })
    }

    /// Renews until one gets through, for the first renewal after the
    /// fork; fails if the lease is lost or lapses first.
    pub fn renew_now(&self) -> Result<(), String> {
        loop {
            match self.renew_once() {
                Renewal::Renewed => return Ok(()),
                Renewal::Fenced => return self.may_write(),
                Renewal::Retry => {
                    self.may_write()?;
                    self.clock.sleep(self.retry_step());
                }
            }
        }
    }

    fn retry_step(&self) -> Duration {
        (self.ttl / 20).clamp(Duration::from_millis(20), Duration::from_secs(1))
    }

    /// Starts the renewal thread: every TTL/3, sooner after a failure.
    pub fn start(self: &Arc<Self>) -> std::io::Result<()> {
        let me = Arc::clone(self);
        let t = std::thread::Builder::new()
            .name("lease".into())
            .spawn(move || me.renew_loop())?;
        *self.thread.lock().unwrap_or_else(|p| p.into_inner()) = Some(t);
        Ok(())
    }

    fn renew_loop(&self) {
        let mut wait = self.ttl / 3;
        loop {
            {
                let s = self.state();
                let s = self
                    .cv
                    .wait_timeout_while(s, wait, |s| !s.stop && s.fenced.is_none())
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
                if s.stop || s.fenced.is_some() {
                    return;
                }
            }
            wait = match self.renew_once() {
                Renewal::Renewed => self.ttl / 3,
                Renewal::Fenced => return,
                Renewal::Retry => {
                    self.note_lapse();
                    self.retry_step()
                }
            };
        }
    }

    fn note_lapse(&self) {
        if self.may_write().is_ok() {
            return;
        }
        let mut s = self.state();
        if s.fenced.is_none() && !std::mem::replace(&mut s.lapsed, true) {
            crate::alert::raise(
                crate::alert::Alert::Lease,
                format_args!(
                    "writer's lease not renewed within {} ms: no store writes until a renewal gets through",
                    (self.ttl - self.margin()).as_millis()
                ),
            );
        }
    }

    /// Stops renewing and deletes the lease if it is still ours and
    /// valid. Returns whether it was deleted. Call after the final commit.
    pub fn release(&self) -> StoreResult<bool> {
        self.state().stop = true;
        self.cv.notify_all();
        if let Some(t) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
        if self.may_write().is_err() {
            // Lost, or lapsed: a contender may be taking it right now.
            return Ok(false);
        }
        let etag = self.state().etag.clone();
        // Bounded like a renewal: an unmount during an outage must not
        // hang here; an unreleased lease just expires.
        let deadline = std::time::Instant::now() + self.ttl / 3;
        crate::store::deadline::within(deadline, || match self.store.head(LEASE_KEY)? {
            Some(info) if info.etag == etag => {
                self.store.delete(LEASE_KEY)?;
                Ok(true)
            }
            _ => Ok(false),
        })
    }
}
