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
//! The log file is created 0600 (and narrowed to 0600 if it existed): a
//! log names object ids and inode numbers, and is nobody else's business.
//!
//! Nothing this crate logs contains a file name, path inside the volume,
//! xattr, or data: inode numbers and object keys only. fuser's own debug
//! and info lines print names and request details, so the `fuser` target
//! is capped at `warn` whatever `RUST_LOG` says.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

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
        match open_private(Path::new(&path)) {
            Ok(file) => {
                builder.target(Target::Pipe(Box::new(file)));
            }
            Err(e) => eprintln!("sealedfs: cannot open log file (logging to stderr): {e}"),
        }
    }
    // A second init (tests) keeps the first logger.
    let _ = builder.try_init();
}

/// Opens the log for appending, created 0600, and narrows an existing
/// file's mode to 0600 (best effort: it may be someone else's).
pub fn open_private(path: &Path) -> std::io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    if let Err(e) = file.set_permissions(std::fs::Permissions::from_mode(0o600)) {
        eprintln!("sealedfs: warning: cannot make the log file private: {e}");
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_file_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let fresh = dir.path().join("fresh.log");
        let old = dir.path().join("old.log");
        std::fs::write(&old, b"before\n").unwrap();
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).unwrap();
        for path in [&fresh, &old] {
            let mut f = open_private(path).unwrap();
            writeln!(f, "line").unwrap();
            let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", path.display());
        }
        assert_eq!(std::fs::read(&old).unwrap(), b"before\nline\n");
    }
}
