//! What the daemon answers on its control socket (`super::super::control`):
//! snapshots and audit pruning for commands given the store. Every change
//! asked for is recorded in the audit trail with the asking process.

use std::sync::Arc;

use log::warn;

use super::super::control::{self, Peer, Reply, Request, Server};
use super::super::error::CliError;
use super::super::location::StoreSpec;
use super::super::pidfile::{self, PidFile};
use crate::audit::Record;
use crate::fs::Fs;

/// The control socket and the file naming this daemon as the store's
/// writer; both go when dropped.
pub fn serve(fs: &Arc<Fs>, spec: &StoreSpec) -> Option<(Server, PidFile)> {
    let fs = Arc::clone(fs);
    let server = control::serve(move |req, peer| answer(&fs, req, peer));
    let located = pidfile::write_for_location(&spec.location());
    match (server, located) {
        (Ok(s), Ok(l)) => Some((s, l)),
        (Err(e), _) | (_, Err(e)) => {
            warn!("no control socket ({e}): snapshot commands cannot reach this mount");
            None
        }
    }
}

fn answer(fs: &Fs, req: Request, peer: Peer) -> Reply {
    if let Some(auditor) = fs.auditor() {
        let what = req.describe();
        auditor.record(Record::admin_by(&what, peer.uid, peer.gid, peer.pid));
    }
    match req {
        // Everything written so far belongs in the snapshot: data still
        // in the cache is flushed and its sizes journaled first.
        Request::SnapshotCreate { name } => Reply::from_result(
            fs.sync_all()
                .map_err(CliError::from)
                .and_then(|()| fs.engine().create_snapshot(&name).map_err(CliError::from)),
            Reply::Snapshot,
        ),
        Request::SnapshotDelete { name } => Reply::from_result(
            fs.engine().delete_snapshot(&name).map_err(CliError::from),
            |()| Reply::Done,
        ),
        Request::AuditPrune { before_ms } => {
            let Some(auditor) = fs.auditor() else {
                return Reply::from_result::<()>(
                    Err(CliError::usage(
                        "this mount keeps no audit trail (--no-audit): unmount it to prune",
                    )),
                    |()| Reply::Done,
                );
            };
            Reply::from_result(auditor.prune(before_ms).map_err(CliError::from), |p| {
                Reply::Pruned {
                    segments: p.segments,
                    records: p.records,
                }
            })
        }
    }
}
