//! `sealedfs fsck STORE [--deep] [--repair]`: check a volume (see
//! `crate::engine::fsck` for what is checked).
//!
//! Read-only unless `--repair`: then it is the writer for a moment (the
//! volume must not be mounted read-write anywhere) and removes the garbage
//! it found that is older than the grace period. Problems are printed one
//! per line on stdout, naming files by path; the exit code is 5 if any is
//! an integrity problem, 0 otherwise.

use std::time::Duration;

use super::anchor::Anchors;
use super::args::FsckArgs;
use super::error::{CliError, CliResult, EXIT_BUSY, EXIT_INTEGRITY};
use super::header;
use super::location::StoreSpec;
use super::passphrase::{self, Passphrase, Prompt};
use super::pidfile;
use super::snapshot::human_bytes;
use super::writer::Writer;
use crate::engine::{Engine, EngineOptions, Expected, FsckReport, Severity};

pub fn run(args: FsckArgs, env_pass: Option<Passphrase>) -> CliResult<()> {
    let mut spec = StoreSpec::parse(&args.store)?.with_s3(&args.s3);
    let report = if args.repair {
        if pidfile::find_daemon_for_location(&spec.location()).is_some() {
            return Err(CliError::new(
                EXIT_BUSY,
                "the volume is mounted read-write on this host: unmount it to repair",
            ));
        }
        let writer = Writer::open(&mut spec, args.passphrase_file.as_deref(), env_pass)?;
        let checked = writer.engine.fsck(args.deep, &|_, _| {});
        let removed = match &checked {
            Ok(r) if r.problems.iter().any(|p| p.severity == Severity::Garbage) => {
                writer.engine.force_gc()
            }
            _ => Ok(0),
        };
        writer.close()?;
        let report = checked?;
        println!(
            "repair: removed {} unreferenced objects past the grace period",
            removed?
        );
        report
    } else {
        let engine = open_read_only(&spec, &args, env_pass)?;
        engine.fsck(args.deep, &|_, _| {})?
    };
    print(&report, args.deep);
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
    let pass = passphrase::obtain(args.passphrase_file.as_deref(), env_pass, Prompt::Once)?;
    let master = header.unlock(&pass)?;
    drop(pass);
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
    Ok(Engine::open(store, &header, &master, opts)?)
}

fn print(r: &FsckReport, deep: bool) {
    for p in &r.problems {
        let tag = match p.severity {
            Severity::Integrity => "integrity",
            Severity::Garbage => "garbage",
        };
        println!("{tag}: {}", p.what);
    }
    let mut line = format!(
        "fsck: {} inodes, {} packs ({}), {} snapshots checked",
        r.inodes,
        r.packs,
        human_bytes(r.pack_bytes),
        r.snapshots
    );
    if deep {
        let rate = r.bytes_authenticated as f64 / r.deep_secs.max(0.001);
        line += &format!(
            "; deep: {} segments, {} authenticated in {:.1} s ({}/s)",
            r.segments_opened,
            human_bytes(r.bytes_authenticated),
            Duration::from_secs_f64(r.deep_secs).as_secs_f64(),
            human_bytes(rate as u64)
        );
    }
    let (bad, garbage) = r
        .problems
        .iter()
        .fold((0, 0), |(b, g), p| match p.severity {
            Severity::Integrity => (b + 1, g),
            Severity::Garbage => (b, g + 1),
        });
    println!("{line}; {bad} integrity problems, {garbage} garbage");
}
