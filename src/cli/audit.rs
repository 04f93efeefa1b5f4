//! `sealedfs audit STORE [filters]`, `audit verify STORE`, `audit prune
//! STORE --before TIME` (see `crate::audit`).
//!
//! Reading and verifying only read the store, so they work on a mounted
//! volume as on an unmounted one, from any host with the passphrase.
//! Records stream out one segment at a time. Pruning removes objects, so
//! it is the writer's: through this host's read-write daemon when there
//! is one, else as a short-lived writer.

use std::io::Write;

use serde::Serialize;

use super::args::{
    AuditAction, AuditArgs, AuditFormat, AuditPruneArgs, AuditQueryArgs, KeySource, S3Args,
    VolumeArgs,
};
use super::control::{self, Reply, Request};
use super::error::{CliError, CliResult, EXIT_INTEGRITY};
use super::header;
use super::json::{Report, to_line};
use super::location::StoreSpec;
use super::passphrase::Passphrase;
use super::pidfile;
use super::unlock;
use super::writer::Writer;
use crate::audit::query::{self, Filter};
use crate::audit::{Record, format_time};
use crate::crypto::Keys;
use crate::meta::journal::newest_audit_binding;
use crate::store::ObjectStore;

pub fn run(args: AuditArgs, env_pass: Option<Passphrase>) -> CliResult<()> {
    match args.action {
        Some(AuditAction::Verify(a)) => verify(a, env_pass),
        Some(AuditAction::Prune(a)) => prune(a, env_pass),
        None => print(args.query, env_pass),
    }
}

/// The volume's store (read-only), id and keys.
struct Opened {
    store: std::sync::Arc<dyn ObjectStore>,
    volume_id: [u8; 16],
    keys: Keys,
}

fn open(
    store: &str,
    s3: &S3Args,
    key: &KeySource,
    env_pass: Option<Passphrase>,
) -> CliResult<Opened> {
    let spec = StoreSpec::parse(store)?.with_s3(s3);
    let store = spec.open()?;
    let header = header::read(&*store)?;
    super::process::forbid_core_dumps()?;
    let keys = header.keys(&unlock::ring(&header, &spec.s3_args(), key, env_pass)?);
    Ok(Opened {
        store,
        volume_id: header.volume_id,
        keys,
    })
}

fn print(a: AuditQueryArgs, env_pass: Option<Passphrase>) -> CliResult<()> {
    let filter = Filter {
        since_ms: a.since.as_deref().map(parse_time).transpose()?,
        until_ms: a.until.as_deref().map(parse_time).transpose()?,
        uid: a.uid,
        pid: a.pid,
        process: a.process.clone(),
        path_prefix: a.path.clone(),
        op: a.op.clone(),
        failed: (a.failed || a.succeeded).then_some(a.failed),
    };
    let format = if a.json.json {
        AuditFormat::Json
    } else {
        a.format
    };
    let store = a.store.as_deref().unwrap_or_default();
    let v = open(store, &a.s3, &a.key, env_pass)?;
    let mut out = Output {
        w: std::io::BufWriter::new(std::io::stdout().lock()),
        closed: false,
    };
    if format == AuditFormat::Csv {
        out.line(CSV_HEADER)?;
    }
    let mut failed = None;
    query::query(
        &*v.store,
        &v.keys.audit,
        &v.volume_id,
        &filter,
        &mut |chain, host, r| {
            let line = match format {
                AuditFormat::Text => Ok(text(host, r)),
                AuditFormat::Json => to_line(&Line::of(chain, host, r)),
                AuditFormat::Csv => Ok(csv(chain, host, r)),
            };
            match line.and_then(|l| out.line(&l)) {
                Ok(()) => !out.closed,
                Err(e) => {
                    failed = Some(e);
                    false
                }
            }
        },
    )?;
    match failed {
        Some(e) => Err(e),
        None => out.finish(),
    }
}

/// Stdout, buffered; a reader that went away (`| head`) ends the output
/// quietly.
struct Output<W: Write> {
    w: W,
    closed: bool,
}

impl<W: Write> Output<W> {
    fn line(&mut self, line: &str) -> CliResult<()> {
        let w = &mut self.w;
        let written = w
            .write_all(line.trim_end_matches('\n').as_bytes())
            .and_then(|()| w.write_all(b"\n"));
        self.check(written)
    }

    fn finish(mut self) -> CliResult<()> {
        let flushed = self.w.flush();
        self.check(flushed)
    }

    fn check(&mut self, r: std::io::Result<()>) -> CliResult<()> {
        match r {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(())
            }
            other => other.map_err(|e| CliError::usage(format!("cannot write the output: {e}"))),
        }
    }
}

/// One record as `--format json` prints it.
#[derive(Serialize)]
struct Line<'a> {
    time: String,
    time_ms: u64,
    host: &'a str,
    chain: &'a str,
    uid: u32,
    gid: u32,
    pid: u32,
    process: &'a str,
    op: &'static str,
    detail: String,
    path: &'a str,
    path2: Option<&'a str>,
    errno: i32,
    result: String,
}

impl<'a> Line<'a> {
    fn of(chain: &'a str, host: &'a str, r: &'a Record) -> Line<'a> {
        Line {
            time: format_time(r.time_ms),
            time_ms: r.time_ms,
            host,
            chain,
            uid: r.uid,
            gid: r.gid,
            pid: r.pid,
            process: &r.process,
            op: r.op.name(),
            detail: r.op.detail(),
            path: &r.path,
            path2: r.path2.as_deref(),
            errno: r.errno,
            result: result(r.errno),
        }
    }
}

fn text(host: &str, r: &Record) -> String {
    let mut line = format!(
        "{} {host} uid={} pid={} ({}) {}",
        format_time(r.time_ms),
        r.uid,
        r.pid,
        r.process,
        r.op.name(),
    );
    if !r.path.is_empty() {
        line += &format!(" {}", r.path);
    }
    if let Some(p2) = &r.path2 {
        line += &format!(" -> {p2}");
    }
    let detail = r.op.detail();
    if !detail.is_empty() {
        line += &format!(" {detail}");
    }
    line + " " + &result(r.errno)
}

const CSV_HEADER: &str = "time,host,chain,uid,gid,pid,process,op,path,path2,detail,result";

fn csv(chain: &str, host: &str, r: &Record) -> String {
    let fields = [
        format_time(r.time_ms),
        host.to_owned(),
        chain.to_owned(),
        r.uid.to_string(),
        r.gid.to_string(),
        r.pid.to_string(),
        r.process.clone(),
        r.op.name().to_owned(),
        r.path.clone(),
        r.path2.clone().unwrap_or_default(),
        r.op.detail(),
        result(r.errno),
    ];
    fields
        .iter()
        .map(|f| csv_field(f))
        .collect::<Vec<_>>()
        .join(",")
}

/// RFC 4180: quoted when it holds a comma, quote or line break.
fn csv_field(f: &str) -> String {
    match f.contains([',', '"', '\n', '\r']) {
        true => format!("\"{}\"", f.replace('"', "\"\"")),
        false => f.to_owned(),
    }
}

/// `ok`, or the errno's name (`ENOENT`).
fn result(errno: i32) -> String {
    const NAMES: &[(i32, &str)] = &[
        (libc::EPERM, "EPERM"),
        (libc::ENOENT, "ENOENT"),
        (libc::EIO, "EIO"),
        (libc::EACCES, "EACCES"),
        (libc::EBUSY, "EBUSY"),
        (libc::EEXIST, "EEXIST"),
        (libc::EXDEV, "EXDEV"),
        (libc::ENOTDIR, "ENOTDIR"),
        (libc::EISDIR, "EISDIR"),
        (libc::EINVAL, "EINVAL"),
        (libc::EFBIG, "EFBIG"),
        (libc::ENOSPC, "ENOSPC"),
        (libc::EROFS, "EROFS"),
        (libc::EMLINK, "EMLINK"),
        (libc::ERANGE, "ERANGE"),
        (libc::ENAMETOOLONG, "ENAMETOOLONG"),
        (libc::ENOTEMPTY, "ENOTEMPTY"),
        (libc::ENODATA, "ENODATA"),
        (libc::EOPNOTSUPP, "EOPNOTSUPP"),
        (libc::E2BIG, "E2BIG"),
    ];
    match errno {
        0 => "ok".into(),
        e => NAMES
            .iter()
            .find(|(n, _)| *n == e)
            .map_or_else(|| format!("errno {e}"), |(_, name)| (*name).to_owned()),
    }
}

/// `2026-11-01` (midnight UTC), `2026-11-01T08:00:00Z`, `2026-11-01
/// 08:00` (UTC), or an age before now: `90s`, `90m`, `12h`, `7d`.
pub fn parse_time(s: &str) -> CliResult<u64> {
    let bad = || {
        CliError::usage(format!(
            "invalid time {s:?}: expected 2026-11-01, 2026-11-01T08:00:00Z or an age like 12h or 7d"
        ))
    };
    let t = s.trim();
    if let Some((n, unit)) = t
        .find(|c: char| !c.is_ascii_digit())
        .filter(|&i| i > 0)
        .map(|i| t.split_at(i))
    {
        let secs = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            _ => 0,
        };
        if secs > 0 {
            let n: u64 = n.parse().map_err(|_| bad())?;
            let age = n.checked_mul(secs * 1000).ok_or_else(bad)?;
            return Ok(crate::audit::now_ms().saturating_sub(age));
        }
    }
    let civil = |dt: jiff::civil::DateTime| jiff::tz::Offset::UTC.to_timestamp(dt).ok();
    let ts = match t.parse::<jiff::Timestamp>() {
        Ok(ts) => Some(ts),
        Err(_) => match t.parse::<jiff::civil::DateTime>() {
            Ok(dt) => civil(dt),
            Err(_) => t
                .parse::<jiff::civil::Date>()
                .ok()
                .and_then(|d| civil(d.at(0, 0, 0, 0))),
        },
    };
    let ts = ts.ok_or_else(bad)?;
    u64::try_from(ts.as_millisecond()).map_err(|_| bad())
}

/// What `audit verify --json` prints.
#[derive(Serialize)]
struct Verdict {
    intact: bool,
    chains: Vec<ChainJson>,
    problems: Vec<String>,
    /// The writer chain's segment the newest binding journal segment names.
    bound_segment: Option<u64>,
}

#[derive(Serialize)]
struct ChainJson {
    chain: String,
    segments: u64,
    records: u64,
}

fn verify(a: VolumeArgs, env_pass: Option<Passphrase>) -> CliResult<()> {
    let v = open(&a.store, &a.s3, &a.key, env_pass)?;
    let bound = newest_audit_binding(&*v.store, &v.keys, &v.volume_id).map_err(|e| {
        CliError::new(
            EXIT_INTEGRITY,
            format!("cannot read the journal's binding of the trail: {e}"),
        )
    })?;
    let found = query::verify(&*v.store, &v.keys.audit, &v.volume_id, bound)?;
    let verdict = Verdict {
        intact: found.intact(),
        chains: found
            .chains
            .iter()
            .map(|(chain, segments, records)| ChainJson {
                chain: chain.clone(),
                segments: *segments,
                records: *records,
            })
            .collect(),
        problems: found.problems.clone(),
        bound_segment: bound.map(|(seq, _)| seq),
    };
    Report::stdout(a.json).one(&verdict, |v| {
        let mut out: Vec<String> = v
            .chains
            .iter()
            .map(|c| {
                format!(
                    "chain {}: {} segments, {} records, intact",
                    c.chain, c.segments, c.records
                )
            })
            .collect();
        out.extend(v.problems.iter().map(|p| format!("broken: {p}")));
        if out.is_empty() {
            out.push("no audit records yet".into());
        }
        out.join("\n")
    })?;
    match found.problems.first() {
        None => Ok(()),
        Some(first) => Err(CliError::new(
            EXIT_INTEGRITY,
            format!("the audit trail is not intact: {first}"),
        )),
    }
}

fn prune(a: AuditPruneArgs, env_pass: Option<Passphrase>) -> CliResult<()> {
    let before_ms = parse_time(&a.before)?;
    let request = Request::AuditPrune { before_ms };
    let mut spec = StoreSpec::parse(&a.store)?.with_s3(&a.s3);
    let (segments, records) = match pidfile::find_daemon_for_location(&spec.location()) {
        Some(pid) => match control::call(pid, &request)? {
            Reply::Pruned { segments, records } => (segments, records),
            other => return Err(CliError::usage(format!("the daemon answered {other:?}"))),
        },
        None => {
            let what = request.describe();
            let writer = Writer::open(&mut spec, &a.key, env_pass, &what)?;
            let pruned = writer.auditor.prune(before_ms);
            let closed = writer.close();
            let pruned = pruned?;
            closed?;
            (pruned.segments, pruned.records)
        }
    };
    println!(
        "pruned {records} records ({segments} segments) older than {}",
        format_time(before_ms)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_as_utc_or_as_an_age() {
        assert_eq!(parse_time("2026-11-01").unwrap(), 1_793_491_200_000);
        assert_eq!(
            parse_time("2026-11-01T08:00:00Z").unwrap(),
            1_793_491_200_000 + 8 * 3_600_000
        );
        assert_eq!(
            parse_time("2026-11-01 08:00").unwrap(),
            1_793_491_200_000 + 8 * 3_600_000
        );
        let now = crate::audit::now_ms();
        let age = now - parse_time("2h").unwrap();
        assert!(
            (2 * 3_600_000..2 * 3_600_000 + 5_000).contains(&age),
            "{age}"
        );
        for bad in ["", "yesterday", "7w", "2026-13-01", "h"] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn csv_quotes_what_needs_it() {
        assert_eq!(csv_field("/a/b"), "/a/b");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
    }

    #[test]
    fn results_name_their_errno() {
        assert_eq!(result(0), "ok");
        assert_eq!(result(libc::ENOTEMPTY), "ENOTEMPTY");
        assert_eq!(result(9999), "errno 9999");
    }
}
