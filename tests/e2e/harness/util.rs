//! Helpers every test module shares: running the binary and shell
//! commands, deterministic random data, waiting with a deadline, and the
//! CLI's one-line error contract.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The passphrase of every test volume (made with a fast KDF).
pub const PASS: &str = "e2e passphrase";

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_sealedfs")
}

/// Runs `sealedfs ARGS` with the test passphrase in the environment (for
/// commands that need no S3 settings: `unmount`, local paths).
pub fn sealedfs(args: &[&str]) -> Output {
    sealedfs_with(args, &[])
}

/// Runs `sealedfs ARGS` with the test passphrase and then `env` (which
/// may override it) in the environment.
pub fn sealedfs_with(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(bin())
        .args(args)
        .env("SEALEDFS_PASSPHRASE", PASS)
        .envs(env.iter().copied())
        .output()
        .expect("run sealedfs")
}

/// `sealedfs ARGS` as a command to adjust (environment, stdin) before it
/// runs: no test passphrase, and `SEALEDFS_PASSPHRASE` removed, so a test
/// of unattended mounts sees what systemd or mount(8) would give.
pub fn sealedfs_cmd(args: &[&str]) -> Command {
    let mut cmd = Command::new(bin());
    cmd.args(args).env_remove("SEALEDFS_PASSPHRASE");
    cmd
}

/// Writes a passphrase or key file readable by its owner only.
pub fn write_secret(path: &Path, bytes: &[u8]) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    f.write_all(bytes).unwrap();
}

/// The options mountinfo shows for the mount at `mnt` (the per-mount
/// ones, then the file system's), comma separated; `None` when nothing is
/// mounted there.
pub fn mount_options_of(mnt: &Path) -> Option<String> {
    let want = std::fs::canonicalize(mnt).ok()?;
    let want = want.to_string_lossy().replace(' ', "\\040");
    let table = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    table.lines().rev().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        let dash = f.iter().position(|x| *x == "-")?;
        (f.get(4) == Some(&want.as_str()))
            .then(|| format!("{},{}", f[5], f.get(dash + 3).unwrap_or(&"")))
    })
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts the CLI's error contract: exit `code`, exactly one line on
/// stderr, starting `sealedfs: `. Returns that line.
pub fn assert_cli_error(out: &Output, code: i32) -> String {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(code), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "one line: {err:?}");
    assert!(err.starts_with("sealedfs: "), "{err:?}");
    err
}

/// Runs a shell command (bash -c) and returns its stdout; panics on failure.
pub fn sh(cmd: &str) -> String {
    let out = Command::new("bash").arg("-c").arg(cmd).output().unwrap();
    assert!(
        out.status.success(),
        "`{cmd}` failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a shell command (bash -c); returns whether it succeeded and its
/// stderr.
pub fn try_sh(cmd: &str) -> (bool, String) {
    let out = Command::new("bash").arg("-c").arg(cmd).output().unwrap();
    (out.status.success(), stderr(&out))
}

/// The SHA-256 of a file, as `sha256sum` prints it.
pub fn sha256_of(path: &Path) -> String {
    sh(&format!("sha256sum < '{}'", path.display()))
}

/// Deterministic pseudo-random bytes (xorshift64*), so a failure replays.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        out.extend_from_slice(&s.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A small deterministic generator of numbers below a bound, so a failing
/// round can be replayed from its seed.
pub fn lcg(seed: u64) -> impl FnMut(u64) -> u64 {
    // Mixed once, so that seeds 0, 1, 2 … do not start alike.
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    move |bound| {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (s >> 33) % bound
    }
}

/// Polls `done` every 50 ms; panics naming `what` once `limit` passed.
pub fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The names in a directory.
pub fn names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// A path as a C string, for raw libc calls.
pub fn cpath(p: &Path) -> std::ffi::CString {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap()
}

/// The calling thread's errno (plain libc: usable in a forked child).
pub fn errno() -> i32 {
    unsafe { *libc::__errno_location() }
}

pub fn host_name() -> String {
    sh("hostname").trim().to_string()
}

/// True while `pid` runs (a zombie counts as gone).
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| !s.split(") ").nth(1).is_some_and(|st| st.starts_with('Z')))
}

/// Every file below `dir`, hidden ones included.
pub fn files_below(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.path().is_dir() {
            out.extend(files_below(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

/// Runs `f` on its own thread and returns its result and how long it
/// took; panics naming `what` if it has not returned within `limit` (the
/// thread is left behind, blocked: a hung file system call cannot be
/// cancelled).
pub fn within<T: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> (T, Duration) {
    let (tx, rx) = std::sync::mpsc::channel();
    let start = Instant::now();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(v) => (v, start.elapsed()),
        Err(_) => panic!("{what} did not return within {limit:?}"),
    }
}

/// Waits up to `limit` for `child` to exit; `None` if it still runs.
pub fn wait_child(
    child: &mut std::process::Child,
    limit: Duration,
) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if start.elapsed() >= limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends SIGCONT to a process on drop: a test that SIGSTOPs a daemon or a
/// server continues it on every way out, a failed assertion included.
pub struct ContinueOnDrop(pub i32);

impl Drop for ContinueOnDrop {
    fn drop(&mut self) {
        unsafe { libc::kill(self.0, libc::SIGCONT) };
    }
}
