//! Log setup: `env_logger`, level `warn` unless `RUST_LOG` says otherwise,
//! to stderr or, with `SEALEDFS_LOG_FILE=PATH`, appended to that file.
//!
//! Two shapes. Someone running a command (stderr, no `RUST_LOG`) sees
//! warnings as the CLI's other messages, one line each:
//! `sealedfs: warning: <what happened; what to do>`. A log (a file, or
//! `RUST_LOG` set for debugging) gets timestamps, levels and modules.
//! Either way a library's long debug text (an SDK error dump) belongs at
//! `debug`, never in a warning.
//!
//! A daemon (a background mount) logs to syslog (`/dev/log`, which
//! journald also serves) at `info` unless a log file or `RUST_LOG` was
//! given: facility `daemon`, tag `sealedfs[<pid>]`, the record's level as
//! the severity. Alerts keep their stable prefixes there (`crate::alert`).
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
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::{Mutex, OnceLock};

use env_logger::{Builder, Target};
use log::{Level, LevelFilter, Log, Metadata, Record};

pub const LOG_FILE_VAR: &str = "SEALEDFS_LOG_FILE";
/// Test knob: the syslog socket (default `/dev/log`).
pub const SYSLOG_VAR: &str = "SEALEDFS_SYSLOG_SOCKET";

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
    let inner = builder.build();
    // Syslog takes `info`; the environment's filter still decides above.
    log::set_max_level(inner.filter().max(LevelFilter::Info));
    // A second init (tests) keeps the first logger.
    let _ = log::set_boxed_logger(Box::new(Logger { inner }));
}

/// Whether a daemon should log to syslog: neither a log file nor
/// `RUST_LOG` was asked for.
pub fn wants_syslog() -> bool {
    std::env::var_os(LOG_FILE_VAR).is_none() && std::env::var_os("RUST_LOG").is_none()
}

/// Sends every later record to syslog. Fails when there is no syslog
/// socket to connect to.
pub fn to_syslog() -> std::io::Result<()> {
    let path = std::env::var_os(SYSLOG_VAR).unwrap_or_else(|| "/dev/log".into());
    let socket = UnixDatagram::unbound()?;
    socket.connect(&path)?;
    // A full or stalled syslog drops lines; it never blocks a logger.
    socket.set_nonblocking(true)?;
    let _ = SYSLOG.set(Mutex::new(socket));
    Ok(())
}

/// Whether [`to_syslog`] would find a socket (checked without using it).
pub fn syslog_reachable() -> bool {
    let path = std::env::var_os(SYSLOG_VAR).unwrap_or_else(|| "/dev/log".into());
    UnixDatagram::unbound().is_ok_and(|s| s.connect(&path).is_ok())
}

static SYSLOG: OnceLock<Mutex<UnixDatagram>> = OnceLock::new();

struct Logger {
    inner: env_logger::Logger,
}

impl Log for Logger {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        match SYSLOG.get() {
            Some(_) => {
                m.level() <= Level::Info && (m.target() != "fuser" || m.level() <= Level::Warn)
            }
            None => self.inner.enabled(m),
        }
    }

    fn log(&self, record: &Record<'_>) {
        let Some(socket) = SYSLOG.get() else {
            return self.inner.log(record);
        };
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = syslog_line(
            record.level(),
            std::process::id(),
            &record.args().to_string(),
        );
        let socket = socket.lock().unwrap_or_else(|p| p.into_inner());
        // A full or restarting syslog drops the line rather than stall
        // the caller (a FUSE request, the committer).
        let _ = socket.send(line.as_bytes());
    }

    fn flush(&self) {
        self.inner.flush();
    }
}

/// `<PRI>sealedfs[PID]: MESSAGE`, facility daemon (RFC 3164 without the
/// timestamp, which syslog adds).
fn syslog_line(level: Level, pid: u32, msg: &str) -> String {
    let severity = match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    };
    let one_line = msg.replace('\n', " ");
    format!("<{}>sealedfs[{pid}]: {one_line}", 3 * 8 + severity)
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
    fn syslog_lines_carry_facility_severity_and_tag() {
        assert_eq!(
            syslog_line(Level::Error, 42, "INTEGRITY: x"),
            "<27>sealedfs[42]: INTEGRITY: x"
        );
        assert_eq!(syslog_line(Level::Info, 1, "a\nb"), "<30>sealedfs[1]: a b");
    }

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
