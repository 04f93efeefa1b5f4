//! Log setup: `env_logger`, level `warn` unless `RUST_LOG` says otherwise,
//! to stderr or, with `SEALEDFS_LOG_FILE=PATH`, appended to that file (the
//! daemon's stderr is `/dev/null` otherwise).
//!
//! Two shapes. Someone running a command (stderr, no `RUST_LOG`) sees
//! warnings as the CLI's other messages, one line each:
//! `sealedfs: warning: <what happened; what to do>`. A log (a file, or
//! `RUST_LOG` set for debugging) gets timestamps, levels and modules.
//! Either way a library's long debug text (an SDK error dump) belongs at
//! `debug`, never in a warning.
//!
//! Nothing this crate logs contains a file name, path inside the volume,
//! xattr, or data: inode numbers and object keys only. fuser's own debug
//! and info lines print names and request details, so the `fuser` target
//! is capped at `warn` whatever `RUST_LOG` says.

use std::fs::OpenOptions;
use std::io::Write;

use env_logger::{Builder, Target};
use log::{Level, LevelFilter};

pub const LOG_FILE_VAR: &str = "SEALEDFS_LOG_FILE";

pub fn init() {
    let mut builder = Builder::new();
    builder.filter_level(LevelFilter::Warn);
    let rust_log = std::env::var("RUST_LOG").ok();
    if let Some(spec) = &rust_log {
        builder.parse_filters(spec);
    }
    // Applied last, so it overrides any `fuser=…` in RUST_LOG.
    builder.filter_module("fuser", LevelFilter::Warn);
    let log_file = std::env::var_os(LOG_FILE_VAR);
    if rust_log.is_none() && log_file.is_none() {
        builder.format(|out, record| {
            let level = match record.level() {
                Level::Error => "error: ",
                Level::Warn => "warning: ",
                _ => "",
            };
            writeln!(out, "sealedfs: {level}{}", record.args())
        });
    } else {
        builder.format_timestamp_millis();
    }
    if let Some(path) = log_file {
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
