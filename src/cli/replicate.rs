//! `sealedfs replicate SOURCE TARGET`: a ciphertext copy of a volume in
//! another store, incremental, without the volume's keys (`crate::replica`
//! says how it stays consistent while the source is mounted).

use std::time::Instant;

use super::args::ReplicateArgs;
use super::error::{CliError, CliResult, EXIT_BUSY, EXIT_INTEGRITY, EXIT_USAGE};
use super::location::StoreSpec;
use super::progress::Progress;
use super::snapshot::human_bytes;
use crate::replica::{self, Options, ReplicaError};

pub fn run(args: ReplicateArgs) -> CliResult<()> {
    let source = StoreSpec::parse(&args.source)?.with_s3(&args.s3);
    let target = StoreSpec::parse(&args.target)?.with_s3(&args.s3);
    if source.location() == target.location() {
        return Err(CliError::usage(
            "the source and the target are the same store",
        ));
    }
    let src = source.open()?;
    // A local target directory may be new; an S3 target's bucket must be.
    let dst = match &target {
        StoreSpec::Local(..) => target.create()?,
        StoreSpec::S3 { .. } => target.open()?,
    };
    let start = Instant::now();
    let opts = Options {
        verify: !args.no_verify,
    };
    let bar = Progress::bytes("copying objects", None);
    let shown = std::sync::Mutex::new(0u64);
    let progress = |done: u64, total: u64| {
        bar.set_total(total);
        let mut last = shown.lock().unwrap_or_else(|p| p.into_inner());
        if done > *last {
            bar.inc(done - *last);
            *last = done;
        }
    };
    let report = replica::replicate(&*src, &*dst, opts, &progress).map_err(|e| {
        let code = match &e {
            ReplicaError::Store(s) => CliError::from(s.clone()).code,
            ReplicaError::Header(_) | ReplicaError::Mismatch { .. } => EXIT_INTEGRITY,
            ReplicaError::NotAVolume
            | ReplicaError::OtherVolume(_)
            | ReplicaError::TargetNotEmpty => EXIT_USAGE,
            ReplicaError::Unsettled => EXIT_BUSY,
        };
        CliError::new(code, format!("replicate: {e}"))
    })?;
    drop(bar);
    let secs = start.elapsed().as_secs_f64();
    println!(
        "replicated to {}: {} objects copied ({}, {}/s), {} already there, {} deleted; journal through {}",
        target,
        report.copied,
        human_bytes(report.copied_bytes),
        human_bytes((report.copied_bytes as f64 / secs.max(0.001)) as u64),
        report.present,
        report.deleted,
        report.journal_head.map_or("-".into(), |s| s.to_string())
    );
    Ok(())
}
