//! The mount's side of the writer's lease (`crate::lease`): take it in
//! the foreground, hold and renew it in the daemon, release it last.
//!
//! Order in the foreground: the lease first (it is the authority, and its
//! refusal names the holder), then the local directory's `flock`. A busy
//! flock after a *takeover* (forced, dead holder, or a lease seen unchanged
//! for a TTL) means the old holder's process still exists, typically
//! stopped: the mount goes ahead without the flock, since a stopped
//! process's flock fences nothing, while the lease and the journal claim
//! do. A busy flock after a fresh create (no lease, yet a lock) refuses,
//! and our new lease is deleted again.
//!
//! Test knob: `SEALEDFS_LEASE_TTL_MS` sets the TTL (default 30 s).

use std::sync::Arc;
use std::time::Duration;

use log::warn;

use super::super::error::{CliError, CliResult, EXIT_BUSY};
use super::super::location::{LockGuard, StoreSpec};
use super::super::process::ProcStat;
use crate::crypto::{KeyRing, Keys, SubKey};
use crate::fs::Fs;
use crate::lease::{
    Acquired, Contender, DEFAULT_TTL, Holder, Identity, LeaseError, LeasedStore, SystemClock,
};
use crate::store::ObjectStore;
use crate::volume::VolumeHeader;

pub const TTL_VAR: &str = "SEALEDFS_LEASE_TTL_MS";

/// A lease taken in the foreground, carried across the fork.
pub struct Taken {
    pub acquired: Acquired,
    key: SubKey,
    volume_id: [u8; 16],
}

fn ttl() -> Duration {
    std::env::var(TTL_VAR)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|&ms| ms >= 100)
        .map_or(DEFAULT_TTL, Duration::from_millis)
}

/// This process as a lease names it.
fn me() -> Identity {
    let start = ProcStat::of_self().map_or(0, |s| s.start_time);
    Identity::this_host(std::process::id(), start)
}

fn alive(pid: u32, start: u64) -> bool {
    ProcStat::of(pid as i32).is_some_and(|s| !s.is_gone() && s.start_time == start)
}

fn lease_error(e: LeaseError) -> CliError {
    match e {
        LeaseError::Held { .. } | LeaseError::Lost => CliError::new(EXIT_BUSY, e.to_string()),
        LeaseError::Unreadable(ref c) => {
            let code = CliError::from(c.clone()).code;
            CliError::new(code, e.to_string())
        }
        LeaseError::Store(s) => CliError::from(s).context("writer's lease"),
    }
}

/// Takes the lease, then the store's own lock (see the module comment).
pub fn take(
    store: &Arc<dyn ObjectStore>,
    spec: &StoreSpec,
    header: &VolumeHeader,
    ring: &KeyRing,
    force: bool,
) -> CliResult<(Taken, Option<LockGuard>)> {
    let Keys { lease: key, .. } = Keys::from_ring(ring, &header.volume_id);
    let acquired = Contender {
        store: &**store,
        key: &key,
        volume_id: &header.volume_id,
        me: me(),
        clock: &SystemClock,
        alive: &alive,
        ttl: ttl(),
        force,
    }
    .acquire()
    .map_err(lease_error)?;
    let taken = Taken {
        acquired,
        key,
        volume_id: header.volume_id,
    };
    match spec.lock() {
        Ok(lock) => Ok((taken, lock)),
        Err(e) if e.code == EXIT_BUSY && taken.acquired.took_over => {
            warn!(
                "the volume directory is still locked by the process whose lease was taken over \
                 (stopped?); going on without the lock: the lease and the journal fence that process"
            );
            Ok((taken, None))
        }
        Err(e) => {
            let holder = hold_in(Arc::clone(store), taken);
            if let Err(r) = holder.release() {
                warn!("could not delete the lease just taken: {r}");
            }
            Err(e)
        }
    }
}

fn hold_in(store: Arc<dyn ObjectStore>, taken: Taken) -> Arc<Holder> {
    Holder::new(
        store,
        taken.key,
        taken.volume_id,
        Arc::new(SystemClock),
        me(),
        &taken.acquired,
    )
}

/// In the daemon: renews at once (the lease then names this process, not
/// the foreground one that took it and is about to exit), starts the
/// renewal thread, and returns the store the filesystem may write
/// through.
pub fn hold(
    store: Arc<dyn ObjectStore>,
    taken: Taken,
) -> CliResult<(Arc<dyn ObjectStore>, Arc<Holder>)> {
    let holder = hold_in(Arc::clone(&store), taken);
    holder
        .renew_now()
        .map_err(|why| CliError::new(EXIT_BUSY, why))?;
    holder
        .start()
        .map_err(|e| CliError::usage(format!("cannot start the lease thread: {e}")))?;
    let gated: Arc<dyn ObjectStore> = Arc::new(LeasedStore::new(store, Arc::clone(&holder)));
    Ok((gated, holder))
}

/// A lost lease turns `fs` read-only.
pub fn fence_on_loss(holder: &Holder, fs: &Arc<Fs>) {
    let weak = Arc::downgrade(fs);
    holder.on_fenced(move |why| {
        if let Some(fs) = weak.upgrade() {
            fs.fence(why);
        }
    });
}

/// After the final commit: stop renewing, delete the lease if still ours.
pub fn release(holder: &Holder) {
    match holder.release() {
        Ok(true) => log::info!("writer's lease released"),
        Ok(false) => log::warn!("writer's lease not released: no longer ours"),
        Err(e) => log::warn!("could not release the writer's lease (it expires): {e}"),
    }
}
