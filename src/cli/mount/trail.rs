//! The mount's audit trail: which chain it writes, where its spool lives,
//! and how the writer's commits bind it (see `crate::audit`).
//!
//! - The writer records into chain `w` (one chain across every writer,
//!   host after host), and every commit binds that chain's head.
//! - A read-only mount (follower, snapshot, `--read-only`) records into a
//!   chain of its own, `r-<8 hex digits>`, flushed every second; nothing
//!   binds it, since such a mount commits nothing.
//! - Commands that change the volume without being its writer (key
//!   changes) record into chain `a`, shared by every host (an auditor
//!   whose seq was taken moves on to the next).
//! - The spool is `<state dir>/audit-spool/<volume id>/`, shared by every
//!   mount of the volume on this host: a mount adopts what dead ones left.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use log::warn;

use super::super::anchor::state_dir;
use super::super::error::{CliError, CliResult};
use crate::audit::segment::WRITER_CHAIN;
use crate::audit::{Auditor, Record};
use crate::crypto::SubKey;
use crate::fs::Fs;
use crate::store::ObjectStore;

/// How often records of operations that change nothing reach the store.
const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

pub fn spool_dir(volume_id: &[u8; 16]) -> PathBuf {
    state_dir().join("audit-spool").join(hex::encode(volume_id))
}

/// Opens this mount's chain, records the mount itself, binds the trail
/// into the writer's commits and starts the flusher.
pub fn start(
    fs: &Fs,
    store: Arc<dyn ObjectStore>,
    key: SubKey,
    volume_id: [u8; 16],
    writer: bool,
) -> CliResult<Arc<Auditor>> {
    let chain = match writer {
        true => WRITER_CHAIN.to_owned(),
        false => format!("r-{:08x}", rand::random::<u32>()),
    };
    let auditor = Auditor::open(store, key, volume_id, &chain, &spool_dir(&volume_id))
        .map_err(|e| CliError::from(e).context("cannot open the audit trail"))?;
    auditor.record(Record::admin(&mount_description(fs)));
    fs.set_auditor(Arc::clone(&auditor));
    if writer {
        let bound = Arc::clone(&auditor);
        fs.engine()
            .bind(Box::new(move || bound.flush().map(|h| (h.seq, h.hash))));
    }
    auditor.start(FLUSH_INTERVAL);
    Ok(auditor)
}

/// Uploads what is left (`Fs::shutdown` recorded the unmount); what
/// cannot go now stays in the spool for the next mount.
pub fn stop(auditor: &Auditor) {
    if let Err(e) = auditor.stop() {
        warn!("AUDIT: the last records stay in the spool for the next mount: {e}");
    }
}

/// The chain of administrative commands that are not the writer's.
pub const ADMIN_CHAIN: &str = "a";

/// Records `what` a command did to the volume, in chain `a`, and uploads
/// it. The change was made: a failure here is a warning, not the
/// command's failure.
pub fn record_admin(
    store: Arc<dyn ObjectStore>,
    ring: &crate::crypto::KeyRing,
    volume_id: [u8; 16],
    what: &str,
) {
    let key = crate::crypto::Keys::from_ring(ring, &volume_id).audit;
    let recorded = Auditor::open(store, key, volume_id, ADMIN_CHAIN, &spool_dir(&volume_id))
        .and_then(|a| {
            a.record(Record::admin(what));
            a.stop().map(drop)
        });
    if let Err(e) = recorded {
        warn!("AUDIT: could not record {what:?} in the audit trail: {e}");
    }
}

fn mount_description(fs: &Fs) -> String {
    let o = &fs.options().engine;
    let mode = match (&o.snapshot, fs.options().follow, o.read_only) {
        (Some(_), _, _) => "snapshot",
        (None, Some(_), _) => "follow",
        (None, None, true) => "read-only",
        (None, None, false) => "read-write",
    };
    let mut what = format!("mount {mode}");
    if fs.engine().accepted_rollback() {
        what.push_str(", rollback accepted");
    }
    what
}
