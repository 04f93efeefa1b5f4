//! `sealedfs fsck STORE [--deep] [--repair]`: check a volume (see
//! `crate::engine::fsck` for what is checked).
//!
//! Read-only unless `--repair`: then it is the writer for a moment (the
//! volume must not be mounted read-write anywhere) and removes the garbage
//! it found that is older than the grace period. Problems are printed one
//! per line on stdout, naming files by path; the exit code is 5 if any is
//! an integrity problem, 0 otherwise.

use super::anchor::Anchors;
use super::args::FsckArgs;
use super::error::{CliError, CliResult, EXIT_BUSY, EXIT_INTEGRITY};
use super::header;
use super::json::Report;
use super::location::StoreSpec;
use super::passphrase::Passphrase;
use super::pidfile;
use super::progress::Progress;
use super::snapshot::human_bytes;
use super::writer::Writer;
use crate::engine::{Engine, EngineOptions, Expected, FsckReport, Severity};
use serde::Serialize;

pub fn run(args: FsckArgs, env_pass: Option<Passphrase>) -> CliResult<()> {
    let mut spec = StoreSpec::parse(&args.store)?.with_s3(&args.s3);
    let report = if args.repair {
        if pidfile::find_daemon_for_location(&spec.location()).is_some() {
            return Err(CliError::new(
                EXIT_BUSY,
                "the volume is mounted read-write on this host: unmount it to repair",
            ));
        }
        let writer = Writer::open(&mut spec, &args.key, env_pass, "fsck --repair")?;
        let checked = check(&writer.engine, args.deep);
        let removed = match &checked {
            Ok(r) if r.problems.iter().any(|p| p.severity == Severity::Garbage) => {
                writer.engine.force_gc()
            }
            _ => Ok(0),
        };
        writer.close()?;
        let report = checked?;
        let removed = removed?;
        if !args.json.json {
            println!("repair: removed {removed} unreferenced objects past the grace period");
        }
        report
    } else {
        let engine = open_read_only(&spec, &args, env_pass)?;
        check(&engine, args.deep)?
    };
    Report::stdout(args.json).one(&Summary::of(&report), |s| s.text(&report, args.deep))?;
    let bad = report
        .problems
        .iter()
        .filter(|p| p.severity == Severity::Integrity)
        .count();
    if bad > 0 {
        return Err(CliError::new(
            EXIT_INTEGRITY,
            format!("fsck found {bad} integrity problems (listed above)"),
        ));
    }
    Ok(())
}

/// The volume as it is, without the lease: findings are reported, not
/// refused (a rollback is one of them).
fn open_read_only(
    spec: &StoreSpec,
    args: &FsckArgs,
    env_pass: Option<Passphrase>,
) -> CliResult<std::sync::Arc<Engine>> {
    let store = spec.open()?;
    let header = header::read(&*store)?;
    super::process::forbid_core_dumps()?;
    let ring = super::unlock::ring(&header, &spec.s3_args(), &args.key, env_pass)?;
    let anchor = Anchors::for_location(&spec.location())
        .read()
        .map_err(|e| {
            CliError::usage(format!(
                "cannot read this host's record of the volume ({e})"
            ))
        })?;
    let opts = EngineOptions {
        read_only: true,
        expected: Expected {
            anchor,
            lease: None,
            accept_rollback: true,
        },
        ..EngineOptions::default()
    };
    Ok(Engine::open(store, &header, &ring, opts)?)
}

/// The check, with a bar over the deep pass (on a terminal only).
fn check(engine: &Engine, deep: bool) -> CliResult<FsckReport> {
    let bar = Progress::bytes("authenticating segments", None);
    let progress = |done: u64, total: u64| {
        bar.set_total(total);
        bar.inc(done.saturating_sub(bar.position()));
    };
    Ok(engine.fsck(deep, &progress)?)
}

/// What `--json` prints: the report's facts, one object.
#[derive(Serialize)]
struct Summary {
    healthy: bool,
    inodes: u64,
    packs: u64,
    pack_bytes: u64,
    snapshots: u64,
    segments_authenticated: u64,
    bytes_authenticated: u64,
    deep_seconds: f64,
    problems: Vec<ProblemJson>,
}

#[derive(Serialize)]
struct ProblemJson {
    severity: &'static str,
    what: String,
}

fn tag(s: &Severity) -> &'static str {
    match s {
        Severity::Integrity => "integrity",
        Severity::Garbage => "garbage",
    }
}

impl Summary {
    fn of(r: &FsckReport) -> Summary {
        Summary {
            healthy: r.healthy(),
            inodes: r.inodes,
            packs: r.packs,
            pack_bytes: r.pack_bytes,
            snapshots: r.snapshots,
            segments_authenticated: r.segments_opened,
            bytes_authenticated: r.bytes_authenticated,
            deep_seconds: r.deep_secs,
            problems: r
                .problems
                .iter()
                .map(|p| ProblemJson {
                    severity: tag(&p.severity),
                    what: p.what.clone(),
                })
                .collect(),
        }
    }

    /// The human form: one line per problem, then the summary line.
    fn text(&self, r: &FsckReport, deep: bool) -> String {
        let mut out = String::new();
        for p in &self.problems {
            out += &format!("{}: {}\n", p.severity, p.what);
        }
        let mut line = format!(
            "fsck: {} inodes, {} packs ({}), {} snapshots checked",
            self.inodes,
            self.packs,
            human_bytes(self.pack_bytes),
            self.snapshots
        );
        if deep {
            let rate = r.bytes_authenticated as f64 / r.deep_secs.max(0.001);
            line += &format!(
                "; deep: {} segments, {} authenticated in {:.1} s ({}/s)",
                r.segments_opened,
                human_bytes(r.bytes_authenticated),
                r.deep_secs,
                human_bytes(rate as u64)
            );
        }
        let bad = self
            .problems
            .iter()
            .filter(|p| p.severity == "integrity")
            .count();
        let garbage = self.problems.len() - bad;
        out + &format!("{line}; {bad} integrity problems, {garbage} garbage")
    }
}
