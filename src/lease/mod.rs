//! The single-writer lease: one read-write mount per volume, anywhere.
//!
//! The object `lease` (sealed under the lease subkey, see [`record`]) names
//! the holder: host, boot id, pid and its start time, a random writer
//! nonce, the TTL. It is created with `put_if_absent` and only ever
//! replaced with `put_if_match` on the ETag read before, so every change of
//! hands is one atomic step in the store.
//!
//! Time: nobody compares wall clocks. The holder counts its validity on
//! its own CLOCK_BOOTTIME from just before its last renewal and stops
//! writing at TTL − margin ([`Holder`]); a contender takes an apparently
//! abandoned lease only after seeing its ETag unchanged for a full TTL on
//! its own clock ([`Contender`]). A lease whose holder is a dead process
//! on this very host (or an earlier boot of it) is taken at once: that is
//! what makes a remount after a crash instant.
//!
//! Two fences stand behind the lease:
//! - [`LeasedStore`] lets no write reach the store while the lease is not
//!   valid, and a lost lease turns the filesystem read-only;
//! - a writer that takes the lease over commits a journal segment at once
//!   (`EngineOptions::claim_journal`); journal segments are create-only, so
//!   the old writer's next commit at that seq fails and it fences itself,
//!   even if it never noticed it lost the lease.

pub mod acquire;
pub mod clock;
pub mod gate;
pub mod holder;
pub mod identity;
pub mod record;

#[cfg(test)]
mod tests;

pub use acquire::{Acquired, Contender};
pub use clock::{Clock, FakeClock, SystemClock};
pub use gate::LeasedStore;
pub use holder::{Holder, Renewal};
pub use identity::Identity;
pub use record::{LEASE_KEY, LeaseRecord};

use std::time::Duration;

use crate::crypto::CryptoError;
use crate::store::StoreError;

/// TTL of a lease unless a test shortens it.
pub const DEFAULT_TTL: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// Another mount holds the lease (CLI exit 4).
    #[error("volume is mounted read-write by host {host} (pid {pid}) until {until}")]
    Held {
        host: String,
        pid: u32,
        until: String,
    },
    /// Another mount changed the lease between our read and our write
    /// (CLI exit 4).
    #[error("volume is busy: another mount took the writer's lease first")]
    Lost,
    /// The lease object does not open: tampered or not this volume's
    /// (CLI exit 5). `--force-takeover` replaces it.
    #[error(
        "the writer's lease is unreadable ({0}); if no other mount is running, --force-takeover replaces it"
    )]
    Unreadable(CryptoError),
    #[error(transparent)]
    Store(#[from] StoreError),
}
