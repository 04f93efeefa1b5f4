//! A test volume on a [`Backend`], mounted by the real binary.
//!
//! Every mount is unmounted on drop (and, if that fails, its FUSE
//! connection detached and its daemon killed), so a failing test never
//! leaves a stale mount or a daemon behind. A volume's objects are seen
//! through the library's [`ObjectStore`] trait ([`Volume::store`]), so
//! inspection and tampering are written once for every backend.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use sealedfs::store::{LocalStore, ObjectStore, RetryPolicy, RetryingStore};

use super::backend::{Backend, S3Server, s3_random_prefix};
use super::util::{alive, sealedfs, sealedfs_with, stderr};
use crate::proxy::Proxy;

/// Where the volume's objects are.
enum Home {
    Local(PathBuf),
    S3 { server: S3Server, prefix: String },
}

pub struct Volume {
    pub dir: tempfile::TempDir,
    /// What `init` and `mount` are given: a directory or `s3://BUCKET/PREFIX`.
    pub url: String,
    pub mnt: PathBuf,
    /// The daemon's log (`SEALEDFS_LOG_FILE`) of mounts on [`Volume::mnt`].
    pub log: PathBuf,
    home: Home,
    proxy: Option<Proxy>,
    mounted: bool,
    /// Environment of every `sealedfs` run for this volume: the S3
    /// endpoint and keys, and what tests add (e.g. a short lease TTL).
    env: Vec<(String, String)>,
}

impl Volume {
    /// A fresh volume on `backend` (fast KDF, default chunk size), not
    /// mounted.
    pub fn new(backend: Backend) -> Volume {
        Volume::with_init_args(backend, &[])
    }

    /// A fresh local volume: what the POSIX behaviour tests use.
    pub fn local() -> Volume {
        Volume::new(Backend::Local)
    }

    pub fn with_init_args(backend: Backend, extra: &[&str]) -> Volume {
        match backend {
            Backend::Local => Volume::create(None, None, extra),
            Backend::S3 => Volume::create(Some(S3Server::shared()), None, extra),
            Backend::S3Proxy => {
                let server = S3Server::shared();
                let proxy = Proxy::start(&server.endpoint);
                Volume::create(Some(server), Some(proxy), extra)
            }
        }
    }

    /// A fresh volume on `server` (e.g. a [`PrivateS3`](super::PrivateS3)),
    /// reached directly.
    pub fn on_server(server: &S3Server) -> Volume {
        Volume::create(Some(server.clone()), None, &[])
    }

    fn create(server: Option<S3Server>, proxy: Option<Proxy>, extra: &[&str]) -> Volume {
        let dir = tempfile::Builder::new()
            .prefix("sealedfs-e2e")
            .tempdir()
            .unwrap();
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let (home, url, mut env) = match server {
            None => {
                let store = dir.path().join("vault");
                let url = store.to_str().unwrap().to_owned();
                (Home::Local(store), url, Vec::new())
            }
            Some(server) => {
                let prefix = s3_random_prefix();
                let url = format!("s3://{}/{prefix}", server.bucket);
                let via = proxy
                    .as_ref()
                    .map_or(server.endpoint.clone(), Proxy::endpoint);
                let env = server.env_via(&via);
                (Home::S3 { server, prefix }, url, env)
            }
        };
        // This host's memory of the volume (rollback checks) stays with
        // the test, not in the machine's /var/lib/sealedfs.
        let state = dir.path().join("state");
        env.push(("SEALEDFS_STATE_DIR".into(), state.to_str().unwrap().into()));
        let v = Volume {
            log: dir.path().join("daemon.log"),
            dir,
            url,
            mnt,
            home,
            proxy,
            mounted: false,
            env,
        };
        let mut args = vec!["init", v.url.as_str(), "--insecure-fast-kdf"];
        // SEALEDFS_TEST_CIPHER=aes-256-gcm runs the suite on the FIPS suite.
        let cipher = std::env::var("SEALEDFS_TEST_CIPHER").unwrap_or_default();
        if !cipher.is_empty() && !extra.contains(&"--cipher") {
            args.extend_from_slice(&["--cipher", cipher.as_str()]);
        }
        args.extend_from_slice(extra);
        let out = v.run(&args, &[]);
        assert!(
            out.status.success(),
            "init of {} failed: {}",
            v.url,
            stderr(&out)
        );
        v
    }

    /// Runs `sealedfs ARGS` as this volume's mounts run: test passphrase,
    /// the volume's environment, then `extra` (which wins).
    pub fn run(&self, args: &[&str], extra: &[(&str, &str)]) -> Output {
        let mut env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        env.extend_from_slice(extra);
        sealedfs_with(args, &env)
    }

    /// Sets an environment variable for every later run and mount.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.push((key.into(), value.into()));
    }

    /// The volume's objects, through the library's store trait: the
    /// directory itself, or the S3 prefix straight on the server (never
    /// through the proxy).
    pub fn store(&self) -> Box<dyn ObjectStore> {
        match &self.home {
            Home::Local(dir) => Box::new(LocalStore::open(dir).expect("open the local store")),
            // Retried as the daemon's own store is: moto answers 500 now
            // and then when tests change the shared bucket concurrently.
            Home::S3 { server, prefix } => Box::new(RetryingStore::new(
                std::sync::Arc::new(server.store(prefix)),
                RetryPolicy::with_deadline(Duration::from_secs(30)),
            )),
        }
    }

    /// The store directory of a local volume (for what only a directory
    /// has: hidden files, file names).
    pub fn local_dir(&self) -> Option<&Path> {
        match &self.home {
            Home::Local(dir) => Some(dir),
            Home::S3 { .. } => None,
        }
    }

    /// The server and prefix of an S3 volume.
    pub fn s3(&self) -> Option<(&S3Server, &str)> {
        match &self.home {
            Home::Local(_) => None,
            Home::S3 { server, prefix } => Some((server, prefix)),
        }
    }

    /// The fault proxy between the daemon and the server
    /// ([`Backend::S3Proxy`] only).
    pub fn proxy(&self) -> &Proxy {
        self.proxy
            .as_ref()
            .expect("a volume made on Backend::S3Proxy")
    }

    /// Mounts with extra options (e.g. `["-o", "allow_other"]`); panics on failure.
    pub fn mount_with(&mut self, extra: &[&str]) -> &mut Volume {
        let out = self.try_mount(extra);
        assert!(
            out.status.success(),
            "mount failed ({:?}): {}\n{}",
            out.status.code(),
            stderr(&out),
            self.log_text()
        );
        self
    }

    pub fn mount(&mut self) -> &mut Volume {
        self.mount_with(&[])
    }

    pub fn try_mount(&mut self, extra: &[&str]) -> Output {
        let mut args = vec!["mount", self.url.as_str(), self.mnt.to_str().unwrap()];
        args.extend_from_slice(extra);
        let log_level = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
        let out = self.run(
            &args,
            &[
                ("SEALEDFS_LOG_FILE", self.log.to_str().unwrap()),
                ("RUST_LOG", &log_level),
            ],
        );
        if out.status.success() {
            self.mounted = true;
        }
        out
    }

    /// `sealedfs unmount MNT`, whatever its outcome; the volume counts as
    /// unmounted when the mount is gone, even if the command reported a
    /// failed commit.
    pub fn try_unmount(&mut self) -> Output {
        let out = sealedfs(&["unmount", self.mnt.to_str().unwrap()]);
        if out.status.success() || !is_mount(&self.mnt) {
            self.mounted = false;
        }
        out
    }

    pub fn is_mounted(&self) -> bool {
        is_mount(&self.mnt)
    }

    /// Counts a mount made without [`Volume::mount`] (by mount(8), or a
    /// `--foreground` child) as this volume's, so that drop unmounts it.
    pub fn adopt_mount(&mut self) {
        self.mounted = true;
    }

    /// The environment of this volume's runs (S3 endpoint and keys).
    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }

    pub fn unmount(&mut self) {
        let out = self.try_unmount();
        assert!(out.status.success(), "unmount failed: {}", stderr(&out));
    }

    pub fn remount(&mut self) {
        self.unmount();
        self.mount();
    }

    /// Mounts the same volume on another mountpoint `name` (beside the
    /// first, logging to `NAME.log`), with this volume's environment; the
    /// mount is unmounted when the returned guard drops.
    pub fn mount_elsewhere(&self, name: &str, extra: &[&str]) -> (Output, OtherMount) {
        let mnt = self.dir.path().join(name);
        std::fs::create_dir_all(&mnt).unwrap();
        let log = self.dir.path().join(format!("{name}.log"));
        let mut args = vec!["mount", self.url.as_str(), mnt.to_str().unwrap()];
        args.extend_from_slice(extra);
        let out = self.run(
            &args,
            &[
                ("SEALEDFS_LOG_FILE", log.to_str().unwrap()),
                ("RUST_LOG", "info"),
            ],
        );
        let mounted = out.status.success();
        (out, OtherMount { mnt, mounted })
    }

    /// Path inside the mount.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel)
    }

    /// The daemon's pid (from the process table: the `sealedfs mount`
    /// process whose arguments name this mountpoint).
    pub fn daemon_pid(&self) -> Option<i32> {
        daemon_of(&self.mnt)
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
        while alive(pid) {
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
}

impl Drop for Volume {
    fn drop(&mut self) {
        if !self.mounted {
            return;
        }
        if let Some(proxy) = &self.proxy {
            // Whatever fault the test left standing, let the last commit out.
            proxy.set_standing(crate::proxy::Fault::Pass);
        }
        force_unmount(&self.mnt);
    }
}

/// Unmounts `mnt`; when `sealedfs unmount` fails, detaches the mount and
/// kills its daemon, so nothing outlives the test.
/// Is `mnt` a mountpoint now (per /proc/self/mountinfo)?
fn is_mount(mnt: &Path) -> bool {
    let Ok(canonical) = std::fs::canonicalize(mnt) else {
        return false;
    };
    let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let want = canonical.to_string_lossy().replace(' ', "\\040");
    table
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(want.as_str()))
}

fn force_unmount(mnt: &Path) {
    let out = sealedfs(&["unmount", mnt.to_str().unwrap()]);
    if out.status.success() {
        return;
    }
    let _ = Command::new("fusermount3")
        .args(["-u", "-z"])
        .arg(mnt)
        .status();
    if let Some(pid) = daemon_of(mnt) {
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

fn daemon_of(mnt: &Path) -> Option<i32> {
    let want = mnt.to_str().unwrap();
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
        if is_daemon && alive(pid) && pid != std::process::id() as i32 {
            return Some(pid);
        }
    }
    None
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
        assert!(out.status.success(), "unmount failed: {}", stderr(&out));
        self.mounted = false;
    }
}

impl Drop for OtherMount {
    fn drop(&mut self) {
        if self.mounted {
            force_unmount(&self.mnt);
        }
    }
}
