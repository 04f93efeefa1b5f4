//! What only an `s3://` store has: `init` refusing a prefix that holds a
//! volume or someone else's objects, clear exit codes for bad credentials,
//! endpoints and buckets, and a first mount, remount and read on the
//! suite's S3 server. The endpoint reaches the binary the way it reaches a
//! user's: through `AWS_ENDPOINT_URL` (plain HTTP is allowed because it is
//! loopback; the IP endpoint is addressed path-style by itself).

use std::time::{Duration, Instant};

use sealedfs::store::ObjectStore;

use crate::harness::*;

#[test]
fn init_mount_write_remount_read() {
    let mut v = Volume::new(Backend::S3);
    v.mount();
    let file = v.path("patient-notes.txt");
    let body = "S3-E2E-MARKER ".repeat(10_000);
    std::fs::write(&file, &body).unwrap();
    std::fs::create_dir(v.path("records")).unwrap();
    assert_eq!(std::fs::read_to_string(&file).unwrap(), body);
    v.remount();
    assert_eq!(std::fs::read_to_string(&file).unwrap(), body);
    assert!(v.path("records").is_dir());
    v.unmount();
    // Only opaque names and ciphertext in the bucket.
    let objects = all_objects(&*v.store());
    assert!(objects.iter().any(|(key, _)| key == "volume"));
    for (key, bytes) in &objects {
        assert!(
            !key.contains("patient") && !key.contains("records"),
            "{key}"
        );
        let needle = b"S3-E2E-MARKER";
        assert!(!bytes.windows(needle.len()).any(|w| w == needle), "{key}");
        assert!(!bytes.windows(7).any(|w| w == b"patient"), "{key}");
    }
}

#[test]
fn init_refuses_a_volume_or_foreign_objects() {
    let v = Volume::new(Backend::S3);
    let out = v.run(&["init", &v.url, "--insecure-fast-kdf"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("already holds a sealedfs volume"),
        "{}",
        stderr(&out)
    );

    let server = S3Server::shared();
    let prefix = s3_random_prefix();
    server
        .store(&prefix)
        .put("backup/2024.tar", b"someone else's")
        .unwrap();
    let url = format!("s3://{}/{prefix}", server.bucket);
    let out = server.run(&["init", &url, "--insecure-fast-kdf"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not a sealedfs volume"),
        "{}",
        stderr(&out)
    );
    // ... and mounting it says what it is not.
    let mnt = tempfile::tempdir().unwrap();
    let out = server.run(&["mount", &url, mnt.path().to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
}

#[test]
fn bad_settings_have_clear_exit_codes() {
    let server = S3Server::shared();
    let url = format!("s3://{}/{}", server.bucket, s3_random_prefix());
    let init = |env: &[(&str, &str)]| server.run(&["init", &url, "--insecure-fast-kdf"], env);

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
    let out = server.run(&["init", &missing, "--insecure-fast-kdf"], &[]);
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
