//! Test harness: volumes in temp dirs, mounted by the real binary.
//!
//! Every mount is unmounted on drop (lazily, if the test already failed),
//! so a failing test never leaves a stale FUSE mount behind.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub const PASS: &str = "e2e passphrase";

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_sealedfs")
}

/// Runs `sealedfs ARGS` with the test passphrase in the environment.
pub fn sealedfs(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .env("SEALEDFS_PASSPHRASE", PASS)
        .output()
        .expect("run sealedfs")
}

/// A volume in a local directory (or, from [`Volume::new_s3`], under a
/// prefix of the S3 test bucket), with a mountpoint in a temp dir.
pub struct Volume {
    pub dir: tempfile::TempDir,
    /// The local store's directory (for an S3 volume, a path that does not
    /// exist: look at [`Volume::s3_prefix`] instead).
    pub store: PathBuf,
    /// What `init` and `mount` are given: the store's path or `s3://...`.
    pub url: String,
    /// The volume's prefix in the test bucket, for an S3 volume.
    pub s3_prefix: Option<String>,
    pub mnt: PathBuf,
    pub log: PathBuf,
    mounted: bool,
    /// Extra environment for every mount (e.g. a short lease TTL).
    env: Vec<(String, String)>,
}

impl Volume {
    /// A fresh volume (fast KDF, default chunk size), not mounted.
    pub fn new() -> Volume {
        Volume::with_init_args(&[])
    }

    pub fn with_init_args(extra: &[&str]) -> Volume {
        let dir = tempfile::Builder::new()
            .prefix("sealedfs-e2e")
            .tempdir()
            .unwrap();
        let store = dir.path().join("vault");
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let mut args = vec!["init", store.to_str().unwrap(), "--insecure-fast-kdf"];
        args.extend_from_slice(extra);
        let out = sealedfs(&args);
        assert!(
            out.status.success(),
            "init failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let log = dir.path().join("daemon.log");
        Volume {
            dir,
            url: store.to_str().unwrap().to_owned(),
            store,
            s3_prefix: None,
            mnt,
            log,
            mounted: false,
            env: Vec::new(),
        }
    }

    /// A fresh volume under a random prefix of the S3 test bucket, on the
    /// test server itself.
    pub fn new_s3() -> Volume {
        Volume::new_s3_via(&s3_endpoint())
    }

    /// A fresh S3 volume whose `init` and mounts reach the server through
    /// `endpoint` (e.g. a fault proxy in front of it).
    pub fn new_s3_via(endpoint: &str) -> Volume {
        let dir = tempfile::Builder::new()
            .prefix("sealedfs-e2e-s3")
            .tempdir()
            .unwrap();
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let prefix = s3_random_prefix();
        let url = format!("s3://{}/{prefix}", s3_bucket());
        let out = Command::new(bin())
            .args(["init", &url, "--insecure-fast-kdf"])
            .env("SEALEDFS_PASSPHRASE", PASS)
            .env("AWS_ENDPOINT_URL", endpoint)
            .output()
            .expect("run sealedfs init");
        assert!(
            out.status.success(),
            "init of {url} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Volume {
            store: dir.path().join("no-local-store"),
            log: dir.path().join("daemon.log"),
            dir,
            url,
            s3_prefix: Some(prefix),
            mnt,
            mounted: false,
            env: vec![("AWS_ENDPOINT_URL".into(), endpoint.into())],
        }
    }

    /// The S3 volume's objects, straight from the test server (never
    /// through a proxy), with the project's own client.
    pub fn s3_store(&self) -> sealedfs::store::S3Store {
        let prefix = self.s3_prefix.as_deref().expect("an S3 volume");
        let mut cfg = sealedfs::store::S3Config::new(&s3_bucket(), prefix);
        cfg.endpoint = Some(s3_endpoint());
        sealedfs::store::S3Store::open(cfg).expect("open the test bucket")
    }

    /// Sets an environment variable for every later mount of this volume.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.push((key.into(), value.into()));
    }

    /// Mounts the same volume on another mountpoint `name` (beside the
    /// first), with this volume's environment; the mount is unmounted
    /// when the returned guard drops.
    pub fn mount_elsewhere(&self, name: &str, extra: &[&str]) -> (Output, OtherMount) {
        let mnt = self.dir.path().join(name);
        std::fs::create_dir_all(&mnt).unwrap();
        let mut args = vec!["mount", self.url.as_str(), mnt.to_str().unwrap()];
        args.extend_from_slice(extra);
        let out = Command::new(bin())
            .args(&args)
            .env("SEALEDFS_PASSPHRASE", PASS)
            .env(
                "SEALEDFS_LOG_FILE",
                self.dir.path().join(format!("{name}.log")),
            )
            .env("RUST_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .expect("run sealedfs mount");
        let mounted = out.status.success();
        (out, OtherMount { mnt, mounted })
    }

    /// Mounts with extra options (e.g. `["-o", "allow_other"]`); panics on failure.
    pub fn mount_with(&mut self, extra: &[&str]) -> &mut Volume {
        let out = self.try_mount(extra);
        assert!(
            out.status.success(),
            "mount failed ({:?}): {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        self
    }

    pub fn mount(&mut self) -> &mut Volume {
        self.mount_with(&[])
    }

    pub fn try_mount(&mut self, extra: &[&str]) -> Output {
        let mut args = vec!["mount", self.url.as_str(), self.mnt.to_str().unwrap()];
        args.extend_from_slice(extra);
        let out = Command::new(bin())
            .args(&args)
            .env("SEALEDFS_PASSPHRASE", PASS)
            .env("SEALEDFS_LOG_FILE", &self.log)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .expect("run sealedfs mount");
        if out.status.success() {
            self.mounted = true;
        }
        out
    }

    pub fn unmount(&mut self) {
        let out = sealedfs(&["unmount", self.mnt.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "unmount failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.mounted = false;
    }

    pub fn remount(&mut self) {
        self.unmount();
        self.mount();
    }

    /// Path inside the mount.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel)
    }

    /// The daemon's pid (from the process table: the `sealedfs mount`
    /// process whose arguments name this mountpoint).
    pub fn daemon_pid(&self) -> Option<i32> {
        let want = self.mnt.to_str().unwrap();
        for entry in std::fs::read_dir("/proc").ok()?.flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
            let is_daemon = args.first().is_some_and(|a| a.ends_with(b"sealedfs"))
                && args.iter().any(|a| *a == b"mount")
                && args.contains(&want.as_bytes());
            let alive = std::fs::read_to_string(entry.path().join("stat"))
                .is_ok_and(|s| !s.split(") ").nth(1).unwrap_or("").starts_with('Z'));
            if is_daemon && alive && pid != std::process::id() as i32 {
                return Some(pid);
            }
        }
        None
    }

    /// SIGKILLs the daemon (a crash) and waits until it is gone; the
    /// mountpoint is left dead (ENOTCONN) for the next mount to clear.
    pub fn kill(&mut self) {
        let pid = self.daemon_pid().expect("daemon running");
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let start = Instant::now();
        // Wait for this pid to be a zombie or gone, not for its command
        // line to vanish: a dying process loses its memory (and so its
        // cmdline) before it closes its files and so drops its volume lock.
        let stat = format!("/proc/{pid}/stat");
        let exited = || {
            std::fs::read_to_string(&stat).map_or(true, |s| {
                s.split(") ").nth(1).is_some_and(|st| st.starts_with('Z'))
            })
        };
        while !exited() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "daemon did not die"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.mounted = false;
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Every object file in the store (relative paths).
    pub fn objects(&self) -> Vec<PathBuf> {
        fn walk(dir: &Path, base: &Path, out: &mut Vec<PathBuf>) {
            for e in std::fs::read_dir(dir).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, base, out);
                } else {
                    out.push(p.strip_prefix(base).unwrap().to_path_buf());
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.store, &self.store, &mut out);
        out.sort();
        out
    }
}

impl Drop for Volume {
    fn drop(&mut self) {
        if self.mounted {
            let out = sealedfs(&["unmount", self.mnt.to_str().unwrap()]);
            if !out.status.success() {
                let _ = Command::new("fusermount3")
                    .args(["-u", "-z"])
                    .arg(&self.mnt)
                    .status();
            }
        }
    }
}

/// Runs a shell command (bash -c) and returns its output; panics on failure.
pub fn sh(cmd: &str) -> String {
    let out = Command::new("bash").arg("-c").arg(cmd).output().unwrap();
    assert!(
        out.status.success(),
        "`{cmd}` failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A second mount of a volume (see [`Volume::mount_elsewhere`]).
pub struct OtherMount {
    pub mnt: PathBuf,
    mounted: bool,
}

impl OtherMount {
    pub fn path(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel)
    }

    pub fn unmount(&mut self) {
        let out = sealedfs(&["unmount", self.mnt.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "unmount failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.mounted = false;
    }
}

impl Drop for OtherMount {
    fn drop(&mut self) {
        if self.mounted {
            let out = sealedfs(&["unmount", self.mnt.to_str().unwrap()]);
            if !out.status.success() {
                let _ = Command::new("fusermount3")
                    .args(["-u", "-z"])
                    .arg(&self.mnt)
                    .status();
            }
        }
    }
}

/// Runs a shell command (bash -c); returns whether it succeeded and its
/// stderr.
pub fn try_sh(cmd: &str) -> (bool, String) {
    let out = Command::new("bash").arg("-c").arg(cmd).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The S3 test server (scripts/test.sh starts moto). Tests that need it
/// fail without it, never skip.
pub fn s3_endpoint() -> String {
    std::env::var("SEALEDFS_TEST_S3_ENDPOINT").unwrap_or_else(|_| {
        panic!(
            "SEALEDFS_TEST_S3_ENDPOINT is not set: the S3 tests need a server. Start one with \
             `eval \"$(scripts/s3-server.sh start /tmp/sealedfs-s3)\"` (scripts/test.sh does)"
        )
    })
}

pub fn s3_bucket() -> String {
    std::env::var("SEALEDFS_TEST_S3_BUCKET")
        .expect("SEALEDFS_TEST_S3_BUCKET (set with the endpoint)")
}

/// A prefix no other test (or run against the same server) uses.
pub fn s3_random_prefix() -> String {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("e2e-{}-{n}-{nanos:x}", std::process::id())
}
