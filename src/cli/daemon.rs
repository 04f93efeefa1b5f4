//! Becoming a daemon without lying about the mount.
//!
//! `mount` does everything that can fail cheaply in the foreground (store,
//! header, passphrase, lock), then forks while the process still has one
//! thread: the filesystem core starts threads when it opens, and threads do
//! not survive `fork`. The parent then blocks on a pipe until the child
//! reports, one line:
//!
//! ```text
//! ok\n                 the mount serves requests: the parent exits 0
//! err <code> <msg>\n   the parent prints "sealedfs: <msg>" and exits <code>
//! (EOF, no line)       the child died: "daemon died during mount", exit 1
//! ```
//!
//! The child starts a new session (no controlling terminal, no SIGHUP from
//! the shell), points stdin and stdout at `/dev/null`, and stderr too
//! unless logs were asked for: with `SEALEDFS_LOG_FILE` stderr goes to that
//! file (so a test harness reading the parent's stderr to EOF is not held
//! open by the daemon); with only `RUST_LOG` it stays where it was; with
//! neither, the daemon logs to syslog (`logging`). Then it moves to `/` so
//! the daemon does not pin the directory it was started in (all paths
//! were made absolute before the fork).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::error::{CliError, CliResult, EXIT_USAGE};
use super::logging::{self, LOG_FILE_VAR};

/// Which side of the fork we are on.
pub enum Forked {
    /// The parent's result: the child's report.
    Parent(CliResult<()>),
    /// The child, holding the pipe to report on.
    Child(Readiness),
}

/// The child's end of the report pipe; in the foreground, nothing.
pub struct Readiness {
    pipe: Option<File>,
}

impl Readiness {
    pub fn foreground() -> Readiness {
        Readiness { pipe: None }
    }

    /// Tells the parent the mount is ready (at most once).
    pub fn ready(&mut self) {
        if let Some(mut pipe) = self.pipe.take() {
            let _ = pipe.write_all(b"ok\n");
        }
    }

    /// Tells the parent the mount failed; false when the parent was
    /// already told (or there is none) and the error must be logged.
    fn failed(&mut self, e: &CliError) -> bool {
        match self.pipe.take() {
            Some(mut pipe) => {
                let _ = pipe.write_all(format!("err {} {}\n", e.code, e.msg).as_bytes());
                true
            }
            None => false,
        }
    }

    /// The daemon's exit code for `result`, after reporting a failure that
    /// happened before readiness to the parent.
    pub fn exit_code(mut self, result: CliResult<()>) -> i32 {
        match result {
            Ok(()) => 0,
            Err(e) => {
                if !self.failed(&e) {
                    log::error!("{e}");
                }
                e.code
            }
        }
    }
}

/// Forks. Call only while the process has a single thread.
pub fn fork() -> CliResult<Forked> {
    let (read_end, write_end) = pipe()?;
    // SAFETY: the process is single-threaded (the caller's contract), so
    // the child may run arbitrary code after fork.
    match unsafe { libc::fork() } {
        -1 => Err(CliError::usage(format!(
            "cannot fork: {}",
            io::Error::last_os_error()
        ))),
        0 => {
            drop(read_end);
            detach()?;
            if logging::wants_syslog() {
                // Checked in the foreground before the fork (see `mount`).
                let _ = logging::to_syslog();
            }
            Ok(Forked::Child(Readiness {
                pipe: Some(File::from(write_end)),
            }))
        }
        _child => {
            drop(write_end);
            let mut report = Vec::new();
            let mut read_end = File::from(read_end);
            let result = match read_end.read_to_end(&mut report) {
                Ok(_) => parse_report(&report),
                Err(e) => Err(CliError::usage(format!("cannot read daemon report: {e}"))),
            };
            Ok(Forked::Parent(result))
        }
    }
}

fn pipe() -> CliResult<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    // O_CLOEXEC: helpers the child runs (fusermount3) must not hold the
    // write end, or the parent would wait for them too.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(CliError::usage(format!(
            "cannot create a pipe: {}",
            io::Error::last_os_error()
        )));
    }
    // SAFETY: both descriptors were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// New session, standard streams redirected, working directory `/`.
fn detach() -> CliResult<()> {
    let fail = |what: &str, e: io::Error| CliError::usage(format!("daemon: {what}: {e}"));
    // SAFETY: setsid has no memory arguments; it cannot fail in a fresh
    // child (which is never a process group leader).
    if unsafe { libc::setsid() } == -1 {
        return Err(fail("setsid", io::Error::last_os_error()));
    }
    let null = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|e| fail("/dev/null", e))?;
    let stderr = match std::env::var_os(LOG_FILE_VAR) {
        Some(path) => Some(
            super::logging::open_private(std::path::Path::new(&path))
                .map_err(|e| fail("log file", e))?,
        ),
        None if std::env::var_os("RUST_LOG").is_some() => None,
        None => Some(null.try_clone().map_err(|e| fail("/dev/null", e))?),
    };
    redirect(&null, libc::STDIN_FILENO).map_err(|e| fail("stdin", e))?;
    redirect(&null, libc::STDOUT_FILENO).map_err(|e| fail("stdout", e))?;
    if let Some(target) = stderr {
        redirect(&target, libc::STDERR_FILENO).map_err(|e| fail("stderr", e))?;
    }
    std::env::set_current_dir("/").map_err(|e| fail("chdir /", e))?;
    Ok(())
}

fn redirect(file: &File, target: i32) -> io::Result<()> {
    // SAFETY: both descriptors are valid; dup2 replaces `target` atomically.
    if unsafe { libc::dup2(file.as_raw_fd(), target) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Reads the child's one-line report.
pub fn parse_report(report: &[u8]) -> CliResult<()> {
    let died = || CliError::usage("daemon died during mount");
    let text = String::from_utf8_lossy(report);
    let line = text.lines().next().unwrap_or("");
    if line == "ok" {
        return Ok(());
    }
    let Some(rest) = line.strip_prefix("err ") else {
        return Err(died());
    };
    let (code, msg) = rest.split_once(' ').unwrap_or((rest, ""));
    match code.parse::<i32>() {
        Ok(code) if code > 0 => Err(CliError::new(code, msg)),
        _ => Err(CliError::new(EXIT_USAGE, msg)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports() {
        assert_eq!(parse_report(b"ok\n"), Ok(()));
        assert_eq!(
            parse_report(b"err 2 wrong passphrase\n"),
            Err(CliError::new(2, "wrong passphrase"))
        );
        assert_eq!(
            parse_report(b"err 4 volume is already mounted read-write (lock held)\n"),
            Err(CliError::new(
                4,
                "volume is already mounted read-write (lock held)"
            ))
        );
        assert_eq!(
            parse_report(b""),
            Err(CliError::usage("daemon died during mount"))
        );
        assert_eq!(
            parse_report(b"o"),
            Err(CliError::usage("daemon died during mount"))
        );
        assert_eq!(parse_report(b"err x bad\n"), Err(CliError::usage("bad")));
        assert_eq!(parse_report(b"err 0 bad\n"), Err(CliError::usage("bad")));
    }

    #[test]
    fn readiness_reports_failure_once() {
        let (r, w) = pipe().unwrap();
        let ready = Readiness {
            pipe: Some(File::from(w)),
        };
        assert_eq!(ready.exit_code(Err(CliError::new(3, "store gone"))), 3);
        let mut got = Vec::new();
        File::from(r).read_to_end(&mut got).unwrap();
        assert_eq!(got, b"err 3 store gone\n");
        assert_eq!(parse_report(&got), Err(CliError::new(3, "store gone")));
    }
}
