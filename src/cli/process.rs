//! Process-level safety and signals: no core dumps with keys in them, a
//! fixed process name, the shutdown signals, and reading `/proc/PID/stat`.
//!
//! Signals: SIGTERM, SIGINT and SIGHUP are blocked in the serving process
//! *before* any thread exists, so every thread inherits the mask and none
//! is interrupted; one dedicated thread takes them with `sigwait` and
//! starts the unmount. No handler runs in signal context.

use std::io;
use std::mem::MaybeUninit;

use super::error::{CliError, CliResult};

/// The name the daemon gives itself (`/proc/PID/comm`), whatever the
/// binary is called; `unmount` checks it before sending a signal.
pub const DAEMON_NAME: &str = "sealedfs";

/// `RLIMIT_CORE = 0` and `PR_SET_DUMPABLE = 0`: a crash or a debugger
/// attach by the same user cannot copy keys out of this process. Both are
/// inherited by a forked child. Call before any key exists.
pub fn forbid_core_dumps() -> CliResult<()> {
    let zero = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls with a valid pointer to a local.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_CORE, &zero) };
    if rc != 0 {
        return Err(os_error("cannot disable core dumps"));
    }
    // SAFETY: as above; PR_SET_DUMPABLE takes integer arguments only.
    let rc = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    if rc != 0 {
        return Err(os_error("cannot mark the process non-dumpable"));
    }
    Ok(())
}

/// Names the calling thread (the main thread names the process).
pub fn set_process_name() {
    let name = c"sealedfs";
    // SAFETY: `name` is a NUL-terminated string shorter than 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr(), 0, 0, 0) };
}

fn os_error(what: &str) -> CliError {
    CliError::usage(format!("{what}: {}", io::Error::last_os_error()))
}

/// The shutdown signals, blocked in this thread and every thread started
/// after [`ShutdownSignals::block`].
#[derive(Clone, Copy)]
pub struct ShutdownSignals {
    set: libc::sigset_t,
}

impl ShutdownSignals {
    pub fn block() -> CliResult<ShutdownSignals> {
        let mut set = MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: sigemptyset initializes the set; the others only read
        // and write that initialized set.
        let set = unsafe {
            libc::sigemptyset(set.as_mut_ptr());
            let mut set = set.assume_init();
            for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
                libc::sigaddset(&mut set, sig);
            }
            set
        };
        // SAFETY: `set` is initialized; the old mask is not wanted.
        let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
        if rc != 0 {
            return Err(CliError::usage(format!(
                "cannot block signals: {}",
                io::Error::from_raw_os_error(rc)
            )));
        }
        Ok(ShutdownSignals { set })
    }

    /// Waits for the next shutdown signal and returns its number.
    pub fn wait(&self) -> i32 {
        loop {
            let mut sig = 0;
            // SAFETY: `self.set` is initialized; `sig` is a valid out pointer.
            let rc = unsafe { libc::sigwait(&self.set, &mut sig) };
            if rc == 0 {
                return sig;
            }
        }
    }
}

/// What `unmount` needs from `/proc/PID/stat`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcStat {
    pub comm: String,
    /// One letter: R, S, D, Z (zombie), X (dead), …
    pub state: char,
    /// Clock ticks after boot at which the process started; with the pid
    /// it names one process for the life of the system.
    pub start_time: u64,
}

impl ProcStat {
    pub fn of(pid: i32) -> Option<ProcStat> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        parse_stat(&text)
    }

    pub fn of_self() -> Option<ProcStat> {
        parse_stat(&std::fs::read_to_string("/proc/self/stat").ok()?)
    }

    pub fn is_gone(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// Parses `pid (comm) state ppid … starttime …`; `comm` may hold spaces
/// and parentheses, so fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_string();
    let mut rest = text.get(close + 1..)?.split_whitespace();
    let state = rest.next()?.chars().next()?;
    // After the state, starttime is the 19th field (field 22 overall).
    let start_time = rest.nth(18)?.parse().ok()?;
    Some(ProcStat {
        comm,
        state,
        start_time,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_parsing() {
        let line = "4242 (sealed fs) (x)) S 1 4242 4242 0 -1 4194560 100 0 0 0 \
                    1 2 0 0 20 0 5 0 987654 12345678 300 18446744073709551615 0 0";
        let s = parse_stat(line).unwrap();
        assert_eq!(s.comm, "sealed fs) (x)");
        assert_eq!(s.state, 'S');
        assert_eq!(s.start_time, 987654);
        assert!(!s.is_gone());
        let zombie = line.replace(") S ", ") Z ");
        assert!(parse_stat(&zombie).unwrap().is_gone());
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) S 1 2"), None);
    }

    #[test]
    fn own_stat_is_readable() {
        let me = ProcStat::of_self().unwrap();
        assert!(!me.is_gone());
        let by_pid = ProcStat::of(std::process::id() as i32).unwrap();
        assert_eq!((by_pid.comm, by_pid.start_time), (me.comm, me.start_time));
    }
}
