//! What the daemon answers on its control socket (`super::super::control`):
//! `status` for anyone allowed on the socket; snapshots and audit pruning
//! for commands given the store (writers only). Every change asked for is
//! recorded in the audit trail with the asking process.

use std::path::PathBuf;
use std::sync::Arc;

use log::warn;

use zeroize::Zeroizing;

use super::super::args::S3Args;
use super::super::control::{self, Peer, Reply, Request, Server};
use super::super::error::{CliError, CliResult};
use super::super::pidfile::{self, PidFile};
use super::super::rotation::Rotation;
use super::super::status::{AuditReport, CommitReport, DiskCacheReport, LeaseReport, StatusReport};
use super::super::{header, unlock};
use crate::audit::{Record, format_time, now_ms};
use crate::crypto::{KeyRing, SlotSecret};
use crate::fs::Fs;
use crate::lease::Holder;
use crate::store::{DiskCache, ObjectStore};

/// What the daemon knows about itself, for its answers.
pub struct Daemon {
    pub fs: Arc<Fs>,
    pub holder: Option<Arc<Holder>>,
    pub location: String,
    pub mountpoint: PathBuf,
    pub volume_id: [u8; 16],
    pub started_ms: u64,
    /// The store (its header is read again at unlock: slots may have
    /// changed since the mount) and the S3 settings KMS uses.
    pub store: Arc<dyn ObjectStore>,
    pub s3: S3Args,
    /// The key rotation this mount runs, if any.
    pub rotation: Arc<Rotation>,
    /// `--cache-dir`, when this mount holds it.
    pub disk_cache: Option<Arc<DiskCache>>,
}

/// The control socket, and for the writer the file naming this daemon as
/// the store's (so commands given the store find it); both go when
/// dropped.
pub struct Served {
    _server: Server,
    _located: Option<PidFile>,
}

pub fn serve(daemon: Daemon) -> Option<Served> {
    let writer = daemon.holder.is_some();
    let location = daemon.location.clone();
    let server = match control::serve(move |req, peer| answer(&daemon, req, peer)) {
        Ok(s) => s,
        Err(e) => {
            warn!(
                "no control socket ({e}): status, lock and snapshot commands cannot reach this mount"
            );
            return None;
        }
    };
    let located = match writer.then(|| pidfile::write_for_location(&location)) {
        Some(Err(e)) => {
            warn!(
                "cannot record this daemon as the store's writer ({e}): snapshot commands will not find it"
            );
            None
        }
        Some(Ok(l)) => Some(l),
        None => None,
    };
    Some(Served {
        _server: server,
        _located: located,
    })
}

fn refuse(msg: &str) -> Reply {
    Reply::from_result::<()>(Err(CliError::usage(msg)), |()| Reply::Done)
}

fn answer(d: &Daemon, req: Request, peer: Peer) -> Reply {
    let fs = &d.fs;
    if req.writer_only() && d.holder.is_none() {
        return refuse("this mount is read-only: ask the read-write mount");
    }
    let by = |what: &str| Record::admin_by(what, peer.uid, peer.gid, peer.pid);
    if !matches!(req, Request::Status | Request::Unlock { .. }) {
        if let Some(auditor) = fs.auditor() {
            auditor.record(by(&req.describe()));
        }
    }
    match req {
        Request::Status => Reply::Status(Box::new(status(d))),
        Request::Lock => {
            Reply::from_result(fs.lock_down().map_err(CliError::from), |l| Reply::Locked {
                keys_zeroed: l.keys_zeroed,
                dropped_bytes: l.dropped_bytes,
            })
        }
        Request::Unlock {
            secret,
            key_file,
            kms,
            slot,
        } => {
            let secret = secret.map(Zeroizing::new);
            let unlocked = unlock(d, secret, key_file, kms, slot)
                .and_then(|ring| fs.unlock(&ring, by("unlock")).map_err(CliError::from));
            if unlocked.is_err() {
                fs.failed_unlock();
            }
            Reply::from_result(unlocked, |()| Reply::Done)
        }
        Request::Rotate { ring, epoch, rate } => {
            let ring = Zeroizing::new(ring);
            let started = rotation_ring(d, &ring, epoch).and_then(|ring| {
                d.rotation.spawn(
                    Arc::clone(fs),
                    d.holder.clone(),
                    Arc::clone(&d.store),
                    ring,
                    rate,
                )
            });
            Reply::from_result(started, |()| Reply::Done)
        }
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
                return refuse("this mount keeps no audit trail (--no-audit): unmount it to prune");
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

/// The key ring from the secret sent (or KMS), against the header as
/// it is now.
fn unlock(
    d: &Daemon,
    secret: Option<Zeroizing<Vec<u8>>>,
    key_file: bool,
    kms: bool,
    slot: Option<u32>,
) -> CliResult<KeyRing> {
    let header = header::read(&*d.store)?;
    let (_, ring) = match (kms, &secret) {
        (true, _) => unlock::with_kms(&header, &d.s3, slot)?,
        (false, Some(s)) if key_file => header.unlock_ring(SlotSecret::KeyFile(s), slot)?,
        (false, Some(s)) => header.unlock_ring(SlotSecret::Passphrase(s), slot)?,
        (false, None) => return Err(CliError::usage("no passphrase or key file was sent")),
    };
    Ok(ring)
}

/// The ring a rotation command sent, checked against the header as it is
/// now: its newest epoch must be the one the header adopted.
fn rotation_ring(d: &Daemon, encoded: &[u8], epoch: u32) -> CliResult<KeyRing> {
    let header = header::read(&*d.store)?;
    let ring = KeyRing::decode(encoded, epoch, header.cipher)?;
    if header.epoch != epoch || header.verify_master(ring.current()).is_err() {
        return Err(CliError::usage(
            "the key ring sent is not the volume's current one; run key rotate again",
        ));
    }
    Ok(ring)
}

fn status(d: &Daemon) -> StatusReport {
    let fs = &d.fs;
    let engine = fs.engine();
    let opts = fs.options();
    let mode = match (&opts.engine.snapshot, opts.follow, fs.is_read_only()) {
        (Some(_), _, _) => "snapshot",
        (None, Some(_), _) => "follow",
        (None, None, true) if d.holder.is_none() => "read-only",
        _ => "read-write",
    };
    let now = now_ms();
    let usage = fs.usage();
    let (seq, _) = engine.committed();
    let last = engine.last_commit_ms();
    StatusReport {
        version: env!("CARGO_PKG_VERSION").into(),
        pid: std::process::id(),
        mountpoint: d.mountpoint.display().to_string(),
        store: d.location.clone(),
        volume_id: hex::encode(d.volume_id),
        mode: mode.into(),
        started: format_time(d.started_ms),
        uptime_seconds: now.saturating_sub(d.started_ms) / 1000,
        lease: d.holder.as_ref().map(|h| LeaseReport {
            held: !h.is_fenced(),
            ttl_seconds: h.ttl().as_secs(),
        }),
        locked: fs.is_locked(),
        lock_after_seconds: fs.lock_after().map(|t| t.as_secs()),
        cache_budget_bytes: usage.cache_budget_bytes,
        cache_clean_bytes: usage.cache_clean_bytes,
        cache_dirty_bytes: usage.cache_dirty_bytes,
        cache_outside_bytes: usage.cache_outside_bytes,
        uploading: usage.uploading,
        open_handles: usage.open_handles,
        uncommitted: engine.has_unacknowledged(),
        last_commit: (seq > 0).then(|| CommitReport {
            seq,
            time: last.map(format_time),
            age_seconds: last.map(|t| now.saturating_sub(t) / 1000),
        }),
        failure: engine.sticky_failure().map(|f| f.to_string()),
        audit: fs.auditor().map(|a| {
            let head = a.head();
            let (pending, failing) = a.backlog();
            AuditReport {
                chain: a.chain().to_owned(),
                segments: head.seq,
                records: head.count,
                pending_records: pending,
                uploads_failing: failing,
            }
        }),
        rotation: d.rotation.report(),
        disk_cache: d.disk_cache.as_ref().map(|c| {
            let s = c.stats();
            DiskCacheReport {
                dir: c.root().display().to_string(),
                bytes: s.bytes,
                limit_bytes: s.limit,
                blocks: s.blocks,
                hits: s.hits,
                misses: s.misses,
                dropped: s.dropped,
            }
        }),
        errors: crate::alert::recent(),
    }
}
