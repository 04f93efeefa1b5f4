//! Process-level safety and signals: no core dumps with keys in them, a
//! fixed process name, the shutdown signals, and reading `/proc/PID/stat`.
//!
//! Signals: SIGTERM, SIGINT and SIGHUP are blocked in the serving process
//! *before* any thread exists, so every thread inherits the mask and none
//! is interrupted; one dedicated thread takes them with `sigwait` and
//! starts the unmount. No handler runs in signal context.

use std::io;
use std::mem::MaybeUninit;
#[cfg(target_env = "gnu")]
use std::time::Duration;

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

/// One malloc arena for the whole process. glibc gives each busy thread its
/// own arena, and chunk buffers freed by another thread than the one that
/// allocated them leave every arena holding freed memory: with the default,
/// a daemon with a 256 MiB cache peaked at 465 MiB RSS reading 1 GiB, with
/// one arena at 284 MiB. The lock is uncontended at a few thousand
/// allocations a second. Call before any thread exists (inherited by fork).
pub fn limit_malloc_arenas() {
    #[cfg(target_env = "gnu")]
    const MMAP_THRESHOLD: libc::c_int = 1 << 20;
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes allocator tunables.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        // Buffers of a MiB and more (pack bodies, FUSE replies) get their
        // own mappings, returned whole when freed. glibc's default
        // threshold rises to the largest buffer freed, after which 8 MiB
        // pack bodies came from the heap and left holes in it.
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}

/// Gives freed heap memory back to the kernel whenever the daemon's
/// resident size passes `limit` bytes. With one arena, chunk buffers of
/// many sizes (small files' chunks, runs, replies) freed among long-lived
/// allocations leave pages that are free but resident: a `grep -r` over
/// 43,000 files held 19 MiB so with a 32 MiB cache. `malloc_trim` returns
/// whole free pages anywhere in the heap. A check is one read of
/// /proc/self/statm; a trim that frees little makes the next check wait
/// longer, so a daemon whose live memory is above the limit (a huge
/// namespace) does not trim in a loop.
pub fn trim_heap_above(limit: u64) {
    #[cfg(target_env = "gnu")]
    {
        let spawned = std::thread::Builder::new()
            .name("heap-trim".into())
            .spawn(move || trim_loop(limit));
        if let Err(e) = spawned {
            log::warn!("cannot start the heap trimmer: {e}");
        }
    }
}

#[cfg(target_env = "gnu")]
fn trim_loop(limit: u64) {
    const QUICK: Duration = Duration::from_millis(200);
    const SLOW: Duration = Duration::from_secs(5);
    let mut wait = QUICK;
    loop {
        std::thread::sleep(wait);
        let Some(before) = resident_bytes() else {
            return;
        };
        if before <= limit {
            wait = QUICK;
            continue;
        }
        // SAFETY: malloc_trim only releases free memory of the allocator.
        unsafe { libc::malloc_trim(0) };
        let freed = before.saturating_sub(resident_bytes().unwrap_or(before));
        wait = match freed >= 4 << 20 {
            true => QUICK,
            false => (wait * 2).min(SLOW),
        };
    }
}

/// The process's resident size (VmRSS) in bytes.
#[cfg(target_env = "gnu")]
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
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
