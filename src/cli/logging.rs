//! Log setup: `env_logger` with timestamps, level `warn` unless `RUST_LOG`
//! says otherwise, to stderr or, with `SEALEDFS_LOG_FILE=PATH`, appended to
//! that file (the daemon's stderr is `/dev/null` otherwise).
//!
//! Nothing this crate logs contains a file name, path inside the volume,
//! xattr, or data: inode numbers and object keys only. fuser's own debug
//! and info lines print names and request details, so the `fuser` target
//! is capped at `warn` whatever `RUST_LOG` says.

use std::fs::OpenOptions;

use env_logger::{Builder, Target};
use log::LevelFilter;

pub const LOG_FILE_VAR: &str = "SEALEDFS_LOG_FILE";

pub fn init() {
    let mut builder = Builder::new();
    builder.filter_level(LevelFilter::Warn);
    if let Ok(spec) = std::env::var("RUST_LOG") {
        builder.parse_filters(&spec);
    }
    // Applied last, so it overrides any `fuser=…` in RUST_LOG.
    builder.filter_module("fuser", LevelFilter::Warn);
    builder.format_timestamp_millis();
    if let Some(path) = std::env::var_os(LOG_FILE_VAR) {
        match OpenOptions::new().create(true).append(true).open(&path) {
            Ok(file) => {
                builder.target(Target::Pipe(Box::new(file)));
            }
            Err(e) => eprintln!("sealedfs: cannot open log file (logging to stderr): {e}"),
        }
    }
    // A second init (tests) keeps the first logger.
    let _ = builder.try_init();
}
