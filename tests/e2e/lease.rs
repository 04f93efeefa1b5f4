//! The writer's lease through real mounts, on every backend: one
//! read-write mount at a time (read-only mounts take none), instant
//! remount after a crash, a tampered lease refused until forced, and a
//! forced takeover from a stopped daemon that fences it for good.

use std::time::{Duration, Instant};

use crate::harness::*;

/// How long a woken, fenced daemon may take to notice: an S3 renewal is a
/// request round trip with retries.
fn fence_limit(backend: Backend) -> Duration {
    if backend.is_s3() {
        Duration::from_secs(20)
    } else {
        Duration::from_secs(10)
    }
}

fn lease_exists(v: &Volume) -> bool {
    v.store().head("lease").unwrap().is_some()
}

per_backend!(second_read_write_mount_is_refused_naming_the_holder: local, s3);
fn second_read_write_mount_is_refused_naming_the_holder(backend: Backend) {
    let mut v = Volume::new(backend);
    v.mount();
    let pid = v.daemon_pid().unwrap();
    let (out, _other) = v.mount_elsewhere("mnt2", &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(4), "{err}");
    let want = format!(
        "volume is mounted read-write by host {} (pid {pid}) until ",
        host_name()
    );
    assert!(err.contains(&want), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    // A read-only mount takes no lease and is not refused.
    let (out, mut ro) = v.mount_elsewhere("mnt3", &["--read-only"]);
    assert!(out.status.success(), "{}", stderr(&out));
    ro.unmount();

    v.unmount();
    assert!(!lease_exists(&v), "unmount releases the lease");
}

per_backend!(remount_after_a_crash_is_instant: local, s3);
fn remount_after_a_crash_is_instant(backend: Backend) {
    let mut v = Volume::new(backend);
    v.mount();
    sh(&format!(
        "echo kept > {0} && sync {0}",
        v.path("f").display()
    ));
    v.kill();
    assert!(lease_exists(&v), "a crash leaves the lease");
    let start = Instant::now();
    v.mount();
    // The default TTL is 30 s: a watch would take that long.
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    assert!(
        v.log_text()
            .contains("a process gone from this host; taking it")
    );
    assert_eq!(sh(&format!("cat {}", v.path("f").display())), "kept\n");
}

per_backend!(a_tampered_lease_refuses_the_mount_until_forced: local, s3);
fn a_tampered_lease_refuses_the_mount_until_forced(backend: Backend) {
    let mut v = Volume::new(backend);
    v.mount();
    v.kill();
    let store = v.store();
    let mut body = store.get("lease").unwrap();
    body[30] ^= 1;
    store.put("lease", &body).unwrap();
    let out = v.try_mount(&[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert!(
        err.contains("lease is unreadable") && err.contains("--force-takeover"),
        "{err}"
    );
    v.mount_with(&["--force-takeover"]);
    v.unmount();
}

per_backend!(forced_takeover_fences_a_stopped_writer: local, s3);
/// The old daemon is stopped (SIGSTOP) while a forced mount takes over,
/// then continued: it must not commit anything, while everything the new
/// mount fsynced survives.
fn forced_takeover_fences_a_stopped_writer(backend: Backend) {
    let mut v = Volume::new(backend);
    v.set_env("SEALEDFS_LEASE_TTL_MS", "2000");
    v.mount();
    sh(&format!(
        "echo before > {0} && sync {0}",
        v.path("before").display()
    ));
    let old = v.daemon_pid().unwrap();
    unsafe { libc::kill(old, libc::SIGSTOP) };
    let cont = ContinueOnDrop(old);

    let (out, mut new) = v.mount_elsewhere("mnt2", &["--force-takeover"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let new_log = std::fs::read_to_string(v.dir.path().join("mnt2.log")).unwrap();
    assert!(
        new_log.contains("--force-takeover: taking the writer's lease from host"),
        "{new_log}"
    );
    assert!(new_log.contains("claimed journal seq"), "{new_log}");
    assert_eq!(
        sh(&format!("cat {}", new.path("before").display())),
        "before\n"
    );
    for i in 0..5 {
        sh(&format!(
            "echo new{i} > {0} && sync {0}",
            new.path(&format!("new{i}")).display()
        ));
    }
    // Past the old holder's TTL, so it also finds its lease lapsed.
    std::thread::sleep(Duration::from_millis(2500));
    drop(cont);

    // Whatever it does first (a create the gate or the fence refuses, an
    // fsync of data it can never commit), nothing succeeds durably.
    let (ok, err) = try_sh(&format!(
        "echo early > {0} && sync {0}",
        v.path("early").display()
    ));
    assert!(!ok, "write+fsync on the fenced mount succeeded");
    assert!(
        err.contains("Read-only file system") || err.contains("Input/output error"),
        "{err}"
    );
    wait_for(
        "the old daemon to fence itself",
        fence_limit(backend),
        || v.log_text().contains("lost the writer's lease"),
    );
    let (ok, err) = try_sh(&format!("echo late > {}", v.path("late").display()));
    assert!(!ok && err.contains("Read-only file system"), "{err}");
    let (ok, err) = try_sh(&format!("mkdir {}", v.path("dir").display()));
    assert!(!ok && err.contains("Read-only file system"), "{err}");

    // The new mount keeps working after the old one woke up.
    sh(&format!(
        "echo last > {0} && sync {0}",
        new.path("last").display()
    ));
    // The fenced mount reports at unmount whether it dropped anything:
    // exit 0 if everything it took was committed before the fence, else
    // exit 4 and one line naming the lost lease.
    let out = v.try_unmount();
    if !out.status.success() {
        let msg = assert_cli_error(&out, 4);
        assert!(msg.contains("lost the writer's lease"), "{msg}");
    }
    assert!(!v.is_mounted(), "the fenced mount is gone either way");
    new.unmount();
    assert!(!lease_exists(&v), "the new holder released it");

    v.mount();
    let ls = sh(&format!("ls {}", v.mnt.display()));
    assert_eq!(ls, "before\nlast\nnew0\nnew1\nnew2\nnew3\nnew4\n");
    for i in 0..5 {
        let got = sh(&format!("cat {}", v.path(&format!("new{i}")).display()));
        assert_eq!(got, format!("new{i}\n"));
    }
    v.unmount();
}
