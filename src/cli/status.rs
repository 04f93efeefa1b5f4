//! `sealedfs status MOUNTPOINT [--json]`: what a running mount is doing,
//! asked of its daemon over the control socket (so only root and the
//! mount's owner may ask).

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::args::StatusArgs;
use super::control::{self, Reply, Request};
use super::error::{CliError, CliResult};
use super::json::Report;
use super::snapshot::human_bytes;
use super::{mounts, pidfile};
use crate::alert::Raised;
use crate::audit::format_time;

/// One mount's state, as the daemon reports it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StatusReport {
    pub version: String,
    pub pid: u32,
    pub mountpoint: String,
    pub store: String,
    pub volume_id: String,
    /// `read-write`, `read-only`, `follow` or `snapshot`.
    pub mode: String,
    pub started: String,
    pub uptime_seconds: u64,
    /// The writer's lease (read-write mounts).
    pub lease: Option<LeaseReport>,
    /// Keys wiped, every access refused until `sealedfs unlock`.
    pub locked: bool,
    /// The idle lock (`--lock-after`), if set.
    pub lock_after_seconds: Option<u64>,
    pub cache_budget_bytes: u64,
    pub cache_clean_bytes: u64,
    pub cache_dirty_bytes: u64,
    /// What the heap outside the cache (the namespace first) takes off
    /// the budget (0 from a daemon that does not say).
    #[serde(default)]
    pub cache_outside_bytes: u64,
    pub uploading: bool,
    pub open_handles: u64,
    /// Changes applied that no commit has made durable yet.
    pub uncommitted: bool,
    pub last_commit: Option<CommitReport>,
    /// Why the mount became read-only for good, if it did.
    pub failure: Option<String>,
    pub audit: Option<AuditReport>,
    /// The key rotation this mount ran or runs, if any.
    #[serde(default)]
    pub rotation: Option<super::rotation::RotationReport>,
    /// `--cache-dir`, when the mount holds it.
    #[serde(default)]
    pub disk_cache: Option<DiskCacheReport>,
    /// The newest alerts, oldest first.
    pub errors: Vec<Raised>,
}

/// The disk cache of pack ciphertext (`--cache-dir`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DiskCacheReport {
    /// This volume's directory in it.
    pub dir: String,
    pub bytes: u64,
    pub limit_bytes: u64,
    pub blocks: u64,
    /// Pack reads answered from disk alone.
    pub hits: u64,
    /// Pack reads that needed the store for some blocks.
    pub misses: u64,
    /// Objects whose cached blocks failed authentication or could not be
    /// read, and were fetched again.
    pub dropped: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LeaseReport {
    pub held: bool,
    pub ttl_seconds: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CommitReport {
    pub seq: u64,
    pub time: Option<String>,
    pub age_seconds: Option<u64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AuditReport {
    pub chain: String,
    pub segments: u64,
    pub records: u64,
    pub pending_records: u64,
    pub uploads_failing: bool,
}

pub fn run(args: StatusArgs) -> CliResult<()> {
    let pid = daemon_of(&args.mountpoint)?;
    match control::call(pid, &Request::Status)? {
        Reply::Status(r) => Report::stdout(args.json).one(&*r, text),
        other => Err(CliError::usage(format!("the daemon answered {other:?}"))),
    }
}

/// The daemon serving `mountpoint`, or why there is none to ask.
pub fn daemon_of(mountpoint: &Path) -> CliResult<i32> {
    let shown = mountpoint.display();
    let canonical = mounts::canonical(mountpoint)?;
    if let Some(pid) = pidfile::find_daemon(&canonical) {
        return Ok(pid);
    }
    match mounts::find(&canonical).ok().flatten() {
        Some(m) if m.is_sealedfs() => Err(CliError::usage(format!(
            "cannot reach the daemon of {shown}: only root and the user who mounted it may"
        ))),
        _ => Err(CliError::usage(format!("{shown} is not a sealedfs mount"))),
    }
}

fn text(r: &StatusReport) -> String {
    let mut out = vec![
        format!("{} ({}), daemon {}", r.mountpoint, r.mode, r.pid),
        format!("  store:     {} (volume {})", r.store, r.volume_id),
        format!("  since:     {} ({} s)", r.started, r.uptime_seconds),
    ];
    if let Some(l) = &r.lease {
        out.push(format!(
            "  lease:     {} (ttl {} s)",
            if l.held { "held" } else { "LOST" },
            l.ttl_seconds
        ));
    }
    let idle = match r.lock_after_seconds {
        Some(s) => format!(" (locks after {s} s idle)"),
        None => String::new(),
    };
    out.push(format!(
        "  locked:    {}{idle}",
        if r.locked { "YES" } else { "no" }
    ));
    out.push(format!(
        "  cache:     {} dirty, {} clean of {}{}{}; {} open",
        human_bytes(r.cache_dirty_bytes),
        human_bytes(r.cache_clean_bytes),
        human_bytes(r.cache_budget_bytes),
        match r.cache_outside_bytes {
            0 => String::new(),
            n => format!(" less {} of other heap", human_bytes(n)),
        },
        if r.uploading { ", uploading" } else { "" },
        r.open_handles
    ));
    if let Some(d) = &r.disk_cache {
        out.push(format!(
            "  disk cache: {} of {} in {} blocks; {} hits, {} misses, {} dropped ({})",
            human_bytes(d.bytes),
            human_bytes(d.limit_bytes),
            d.blocks,
            d.hits,
            d.misses,
            d.dropped,
            d.dir
        ));
    }
    let commit = match &r.last_commit {
        Some(c) => match (&c.time, c.age_seconds) {
            (Some(t), Some(age)) => format!("seq {} at {t} ({age} s ago)", c.seq),
            _ => format!("seq {} (before this mount)", c.seq),
        },
        None => "none".into(),
    };
    let waiting = if r.uncommitted {
        "; changes waiting"
    } else {
        ""
    };
    out.push(format!("  commit:    {commit}{waiting}"));
    if let Some(f) = &r.failure {
        out.push(format!("  FAILED:    {f}"));
    }
    if let Some(rot) = &r.rotation {
        let line = match (&rot.finished, &rot.error) {
            (Some(d), _) => format!(
                "epoch {} finished: {} packs, {} metadata objects ({}) in {:.1} s",
                rot.epoch,
                d.packs,
                d.metadata,
                human_bytes(d.bytes),
                d.seconds
            ),
            (None, Some(e)) => format!("epoch {} STOPPED: {e}", rot.epoch),
            (None, None) => format!(
                "epoch {} re-encrypting: {} of {} objects, {} so far",
                rot.epoch,
                rot.done,
                rot.total,
                human_bytes(rot.bytes)
            ),
        };
        out.push(format!("  rotation:  {line}"));
    }
    match &r.audit {
        Some(a) => out.push(format!(
            "  audit:     chain {}, {} segments, {} records, {} waiting{}",
            a.chain,
            a.segments,
            a.records,
            a.pending_records,
            if a.uploads_failing {
                " (uploads failing)"
            } else {
                ""
            }
        )),
        None => out.push("  audit:     off".into()),
    }
    if r.errors.is_empty() {
        out.push("  errors:    none".into());
    } else {
        out.push("  errors:".into());
        out.extend(
            r.errors
                .iter()
                .map(|e| format!("    {} {}: {}", format_time(e.time_ms), e.kind, e.message)),
        );
    }
    out.join("\n")
}
