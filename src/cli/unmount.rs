//! `sealedfs unmount MOUNTPOINT`: returns only after everything is
//! committed and the writer's lease released (the daemon does both before
//! it exits).
//!
//! With a live daemon (found by its pid file): SIGTERM, then wait until the
//! process is gone — it exits only after `Fs::shutdown` returned — and the
//! mount has left the mount table. A daemon that could not commit says so
//! in its exit record (see `pidfile`), and `unmount` fails with its exit
//! code and reason (a store outage is exit 3). Without one, a sealedfs mount still in
//! the table is a dead one (the daemon was killed): detach it lazily.
//! Anything else is "not a sealedfs mount" (exit 1). The wait is bounded
//! by [`WAIT`]; a daemon still running then (a file held open below a
//! lazily detached mount, or a commit waiting for the store) is reported
//! as busy (exit 4).

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use super::args::UnmountArgs;
use super::error::{CliError, CliResult, EXIT_BUSY};
use super::mounts;
use super::pidfile;
use super::process::ProcStat;

/// How long `unmount` waits for the daemon to commit and exit.
pub const WAIT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(50);

pub fn run(args: UnmountArgs) -> CliResult<()> {
    let mount_point = mounts::canonical(&args.mountpoint)?;
    let shown = mount_point.display().to_string();
    let entry = mounts::find(&mount_point)
        .map_err(|e| CliError::usage(format!("cannot read the mount table: {e}")))?;
    let daemon = pidfile::find_daemon(&mount_point);
    match (daemon, entry) {
        (Some(pid), _) => {
            let start_time = ProcStat::of(pid).map(|s| s.start_time);
            terminate(pid)?;
            let done = wait_until(|| daemon_gone(pid, start_time) && !is_mounted(&mount_point));
            if !done {
                return Err(CliError::new(
                    EXIT_BUSY,
                    format!(
                        "daemon {pid} of {shown} still running after {} s (open files or uncommitted data); see its log",
                        WAIT.as_secs()
                    ),
                ));
            }
            match start_time.and_then(|t| pidfile::take_exit(&mount_point, pid, t)) {
                Some((code, msg)) if code != 0 => {
                    Err(CliError::new(code, format!("{shown} unmounted, but {msg}")))
                }
                _ => Ok(()),
            }
        }
        (None, Some(e)) if e.is_sealedfs() => {
            pidfile::remove_stale(&mount_point);
            mounts::lazy_unmount(&mount_point)?;
            if !wait_until(|| !is_mounted(&mount_point)) {
                return Err(CliError::new(
                    EXIT_BUSY,
                    format!("{shown} is still mounted"),
                ));
            }
            Ok(())
        }
        (None, _) => Err(CliError::usage(format!("{shown} is not a sealedfs mount"))),
    }
}

fn terminate(pid: i32) -> CliResult<()> {
    // SAFETY: kill has no memory arguments.
    if unsafe { libc::kill(pid, libc::SIGTERM) } == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        // Exited between the check and the signal: nothing to stop.
        Some(libc::ESRCH) => Ok(()),
        _ => Err(CliError::usage(format!("cannot stop daemon {pid}: {e}"))),
    }
}

/// Gone, a zombie (exited, not yet reaped), or a new process on the pid.
fn daemon_gone(pid: i32, start_time: Option<u64>) -> bool {
    match ProcStat::of(pid) {
        None => true,
        Some(s) => s.is_gone() || Some(s.start_time) != start_time,
    }
}

fn is_mounted(mount_point: &Path) -> bool {
    matches!(mounts::find(mount_point), Ok(Some(m)) if m.is_sealedfs())
}

/// Polls `done` until it holds or [`WAIT`] passed.
fn wait_until(mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + WAIT;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_pid_is_gone_and_we_are_not() {
        // Pid numbers are below 2^22 on Linux.
        assert!(daemon_gone(i32::MAX, Some(1)));
        let me = std::process::id() as i32;
        let start = ProcStat::of(me).map(|s| s.start_time);
        assert!(!daemon_gone(me, start));
        assert!(daemon_gone(me, start.map(|t| t + 1)));
    }

    #[test]
    fn not_a_mount() {
        let dir = tempfile::tempdir().unwrap();
        let e = run(UnmountArgs {
            mountpoint: dir.path().to_path_buf(),
        })
        .unwrap_err();
        assert_eq!(e.code, 1);
        assert!(e.msg.ends_with("is not a sealedfs mount"), "{}", e.msg);
    }
}
