//! `sealedfs snapshot create|list|delete STORE [NAME]`.
//!
//! Making or deleting a snapshot is the writer's job: when a daemon on
//! this host serves the store read-write, it is asked through its control
//! socket (no passphrase needed: the socket is its user's alone); when
//! nothing mounts it read-write, this command becomes the writer for a
//! moment ([`Writer`]); when a mount on another host holds the lease, it
//! refuses (exit 4) naming that host. Listing only reads.

use super::args::{SnapshotAction, SnapshotArgs, SnapshotNameArgs, VolumeArgs};
use super::control::{self, Reply, Request};
use super::error::{CliError, CliResult};
use super::header;
use super::json::Report;
use super::location::StoreSpec;
use super::passphrase::Passphrase;
use super::pidfile;
use super::writer::Writer;
use crate::meta::snapshot::{self, SnapshotRecord};

pub fn run(args: SnapshotArgs, env_pass: Option<Passphrase>) -> CliResult<()> {
    match args.action {
        SnapshotAction::Create(a) => {
            let name = a.name.clone();
            let record = change(
                a,
                env_pass,
                Request::SnapshotCreate { name: name.clone() },
                |w| Ok(w.engine.create_snapshot(&name)?),
            )?;
            println!(
                "snapshot {} made: {} files, {} of data",
                record.name,
                record.inodes.saturating_sub(1),
                human_bytes(record.data_bytes)
            );
            Ok(())
        }
        SnapshotAction::Delete(a) => {
            let name = a.name.clone();
            change(
                a,
                env_pass,
                Request::SnapshotDelete { name: name.clone() },
                |w| {
                    w.engine.delete_snapshot(&name)?;
                    Ok(empty_record())
                },
            )?;
            println!("snapshot {name} deleted");
            Ok(())
        }
        SnapshotAction::List(a) => list(a, env_pass),
    }
}

/// Makes a change through the daemon serving the store, or as a
/// short-lived writer.
fn change(
    a: SnapshotNameArgs,
    env_pass: Option<Passphrase>,
    request: Request,
    offline: impl FnOnce(&Writer) -> CliResult<SnapshotRecord>,
) -> CliResult<SnapshotRecord> {
    snapshot::check_name(&a.name).map_err(CliError::usage)?;
    let mut spec = StoreSpec::parse(&a.store)?.with_s3(&a.s3);
    if let Some(pid) = pidfile::find_daemon_for_location(&spec.location()) {
        return match control::call(pid, &request)? {
            Reply::Snapshot(r) => Ok(r),
            Reply::Done => Ok(empty_record()),
            Reply::Failed { code, msg } => Err(CliError::new(code, msg)),
            other => Err(CliError::usage(format!("the daemon answered {other:?}"))),
        };
    }
    let what = request.describe();
    let writer = Writer::open(&mut spec, &a.key, env_pass, &what)?;
    let result = offline(&writer);
    let closed = writer.close();
    let record = result?;
    closed?;
    Ok(record)
}

fn empty_record() -> SnapshotRecord {
    SnapshotRecord {
        name: String::new(),
        created_ms: 0,
        checkpoint: 0,
        journal_hash: [0; 32],
        inodes: 0,
        data_bytes: 0,
    }
}

fn list(a: VolumeArgs, env_pass: Option<Passphrase>) -> CliResult<()> {
    let spec = StoreSpec::parse(&a.store)?.with_s3(&a.s3);
    let store = spec.open()?;
    let header = header::read(&*store)?;
    super::process::forbid_core_dumps()?;
    let ring = super::unlock::ring(&header, &spec.s3_args(), &a.key, env_pass)?;
    let keys = header.keys(&ring);
    let records = snapshot::list(&*store, &keys, &header.volume_id)?;
    let mut out = Report::stdout(a.json);
    if !out.is_json() {
        if records.is_empty() {
            println!("no snapshots");
            return Ok(());
        }
        println!(
            "{:<32} {:<20} {:>10} {:>10}",
            "NAME", "CREATED (UTC)", "FILES", "DATA"
        );
    }
    for (_, r) in records {
        let item = Listed {
            name: r.name.clone(),
            created: utc(r.created_ms).replace(' ', "T") + "Z",
            checkpoint: r.checkpoint,
            files: r.inodes.saturating_sub(1),
            data_bytes: r.data_bytes,
        };
        out.item(&item, |i| {
            format!(
                "{:<32} {:<20} {:>10} {:>10}",
                i.name,
                utc(r.created_ms),
                i.files,
                human_bytes(i.data_bytes)
            )
        })?;
    }
    Ok(())
}

/// One snapshot as `snapshot list --json` prints it.
#[derive(serde::Serialize)]
struct Listed {
    name: String,
    /// RFC 3339, UTC.
    created: String,
    checkpoint: u64,
    files: u64,
    data_bytes: u64,
}

/// `YYYY-MM-DD HH:MM:SS` in UTC.
pub fn utc(ms: u64) -> String {
    let secs = (ms / 1000) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + (month <= 2) as i64;
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_sizes() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(1_796_000_000_000), "2026-11-30 00:53:20");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00");
        assert_eq!(human_bytes(10), "10 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }
}
