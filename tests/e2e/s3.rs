//! `sealedfs init|mount|unmount` on an `s3://` store, against the S3 test
//! server (moto) that scripts/test.sh starts. Each test uses its own random
//! prefix in the bucket `SEALEDFS_TEST_S3_BUCKET`. Without the server the
//! tests fail, never skip.
//!
//! The endpoint reaches the binary the way it reaches a user's: through
//! `AWS_ENDPOINT_URL` (plain HTTP is allowed because it is loopback; the
//! IP endpoint is addressed path-style by itself).

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use sealedfs::store::{ObjectStore, S3Config, S3Store};

use crate::harness::{PASS, bin, sealedfs};

fn endpoint() -> String {
    std::env::var("SEALEDFS_TEST_S3_ENDPOINT").unwrap_or_else(|_| {
        panic!(
            "SEALEDFS_TEST_S3_ENDPOINT is not set: the S3 tests need a server. Start one with \
             `eval \"$(scripts/s3-server.sh start /tmp/sealedfs-s3)\"` (scripts/test.sh does)"
        )
    })
}

fn bucket() -> String {
    std::env::var("SEALEDFS_TEST_S3_BUCKET")
        .expect("SEALEDFS_TEST_S3_BUCKET (set with the endpoint)")
}

fn random_prefix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("e2e-{}-{nanos:x}", std::process::id())
}

/// `sealedfs ARGS` with the test passphrase and the S3 endpoint.
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .env("SEALEDFS_PASSPHRASE", PASS)
        .env("AWS_ENDPOINT_URL", endpoint());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run sealedfs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The volume's objects, read with the project's own S3 client.
fn store(prefix: &str) -> S3Store {
    let mut cfg = S3Config::new(&bucket(), prefix);
    cfg.endpoint = Some(endpoint());
    S3Store::open(cfg).expect("open the test bucket")
}

/// An S3 volume and a mountpoint; unmounted on drop.
struct S3Volume {
    url: String,
    prefix: String,
    dir: tempfile::TempDir,
    mounted: bool,
}

impl S3Volume {
    fn new() -> S3Volume {
        let prefix = random_prefix();
        let url = format!("s3://{}/{prefix}", bucket());
        let out = run(&["init", &url, "--insecure-fast-kdf"], &[]);
        assert!(out.status.success(), "init failed: {}", stderr(&out));
        let dir = tempfile::Builder::new()
            .prefix("sealedfs-e2e-s3")
            .tempdir()
            .unwrap();
        std::fs::create_dir(dir.path().join("mnt")).unwrap();
        S3Volume {
            url,
            prefix,
            dir,
            mounted: false,
        }
    }

    fn mnt(&self) -> std::path::PathBuf {
        self.dir.path().join("mnt")
    }

    fn mount(&mut self) {
        let log = self.dir.path().join("daemon.log");
        let out = run(
            &["mount", &self.url, self.mnt().to_str().unwrap()],
            &[("SEALEDFS_LOG_FILE", log.to_str().unwrap())],
        );
        assert!(
            out.status.success(),
            "mount failed ({:?}): {}\n{}",
            out.status.code(),
            stderr(&out),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        self.mounted = true;
    }

    fn unmount(&mut self) {
        let out = sealedfs(&["unmount", self.mnt().to_str().unwrap()]);
        assert!(out.status.success(), "unmount failed: {}", stderr(&out));
        self.mounted = false;
    }
}

impl Drop for S3Volume {
    fn drop(&mut self) {
        if self.mounted {
            let out = sealedfs(&["unmount", self.mnt().to_str().unwrap()]);
            if !out.status.success() {
                let _ = Command::new("fusermount3")
                    .args(["-u", "-z"])
                    .arg(self.mnt())
                    .status();
            }
        }
    }
}

#[test]
fn s3_init_mount_write_remount_read() {
    let mut vol = S3Volume::new();
    vol.mount();
    let file = vol.mnt().join("patient-notes.txt");
    let body = "S3-E2E-MARKER ".repeat(10_000);
    std::fs::write(&file, &body).unwrap();
    std::fs::create_dir(vol.mnt().join("records")).unwrap();
    assert_eq!(std::fs::read_to_string(&file).unwrap(), body);
    vol.unmount();
    vol.mount();
    assert_eq!(std::fs::read_to_string(&file).unwrap(), body);
    assert!(vol.mnt().join("records").is_dir());
    vol.unmount();
    // Only opaque names and ciphertext in the bucket.
    let store = store(&vol.prefix);
    let objects = store.list("").unwrap();
    assert!(objects.iter().any(|o| o.key == "volume"), "{objects:?}");
    for o in &objects {
        assert!(
            !o.key.contains("patient") && !o.key.contains("records"),
            "{}",
            o.key
        );
        let bytes = store.get(&o.key).unwrap();
        let needle = b"S3-E2E-MARKER";
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "{}",
            o.key
        );
        assert!(!bytes.windows(7).any(|w| w == b"patient"), "{}", o.key);
    }
}

#[test]
fn s3_init_refuses_a_volume_or_foreign_objects() {
    let vol = S3Volume::new();
    let out = run(&["init", &vol.url, "--insecure-fast-kdf"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("already holds a sealedfs volume"),
        "{}",
        stderr(&out)
    );

    let prefix = random_prefix();
    store(&prefix)
        .put("backup/2024.tar", b"someone else's")
        .unwrap();
    let url = format!("s3://{}/{prefix}", bucket());
    let out = run(&["init", &url, "--insecure-fast-kdf"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not a sealedfs volume"),
        "{}",
        stderr(&out)
    );
    // ... and mounting it says what it is not.
    let mnt = tempfile::tempdir().unwrap();
    let out = run(&["mount", &url, mnt.path().to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
}

#[test]
fn s3_bad_settings_have_clear_exit_codes() {
    let url = format!("s3://{}/{}", bucket(), random_prefix());
    let init = |env: &[(&str, &str)]| run(&["init", &url, "--insecure-fast-kdf"], env);

    let out = init(&[("AWS_SECRET_ACCESS_KEY", "wrong-secret")]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("access denied"), "{}", stderr(&out));
    assert!(
        !stderr(&out).contains("wrong-secret"),
        "the secret is never shown"
    );

    let out = init(&[("AWS_ENDPOINT_URL", "http://s3.example.com")]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("refusing plain-HTTP"),
        "{}",
        stderr(&out)
    );
    assert_eq!(stderr(&out).trim().lines().count(), 1, "{}", stderr(&out));

    let missing = format!("s3://sealedfs-no-such-bucket-{}/v", std::process::id());
    let out = run(&["init", &missing, "--insecure-fast-kdf"], &[]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let start = Instant::now();
    let out = init(&[("AWS_ENDPOINT_URL", &format!("http://127.0.0.1:{port}"))]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("unreachable"), "{}", stderr(&out));
    assert!(
        start.elapsed() < Duration::from_secs(40),
        "{:?}",
        start.elapsed()
    );
}
