//! The writer's lease on an S3 volume: a second read-write mount is
//! refused naming the holder; a forced takeover from a SIGSTOPped daemon
//! fences it for good once it runs again, and every write the new mount
//! fsynced survives.

use std::time::{Duration, Instant};

use sealedfs::store::ObjectStore;

use crate::harness::{Volume, sh, try_sh};

fn host_name() -> String {
    sh("hostname").trim().to_string()
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn s3_second_read_write_mount_is_refused_naming_the_holder() {
    let mut v = Volume::new_s3();
    v.mount();
    let pid = v.daemon_pid().unwrap();
    let (out, _other) = v.mount_elsewhere("mnt2", &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    let want = format!(
        "volume is mounted read-write by host {} (pid {pid}) until ",
        host_name()
    );
    assert!(err.contains(&want), "{err}");
    v.unmount();
    assert!(
        v.s3_store().head("lease").unwrap().is_none(),
        "unmount releases the lease"
    );
}

#[test]
fn s3_forced_takeover_fences_a_stopped_writer() {
    let mut v = Volume::new_s3();
    v.set_env("SEALEDFS_LEASE_TTL_MS", "2000");
    v.mount();
    sh(&format!(
        "echo before > {0} && sync {0}",
        v.path("before").display()
    ));
    let old = v.daemon_pid().unwrap();
    struct Cont(i32);
    impl Drop for Cont {
        fn drop(&mut self) {
            unsafe { libc::kill(self.0, libc::SIGCONT) };
        }
    }
    unsafe { libc::kill(old, libc::SIGSTOP) };
    let cont = Cont(old);

    let (out, mut new) = v.mount_elsewhere("mnt2", &["--force-takeover"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let new_log = std::fs::read_to_string(v.dir.path().join("mnt2.log")).unwrap();
    assert!(
        new_log.contains("--force-takeover: taking the writer's lease from host"),
        "{new_log}"
    );
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
        Duration::from_secs(20),
        || v.log_text().contains("lost the writer's lease"),
    );
    let (ok, err) = try_sh(&format!("echo late > {}", v.path("late").display()));
    assert!(!ok && err.contains("Read-only file system"), "{err}");
    let (ok, err) = try_sh(&format!("mkdir {}", v.path("dir").display()));
    assert!(!ok && err.contains("Read-only file system"), "{err}");

    sh(&format!(
        "echo last > {0} && sync {0}",
        new.path("last").display()
    ));
    v.unmount();
    new.unmount();
    assert!(
        v.s3_store().head("lease").unwrap().is_none(),
        "the new holder released it"
    );

    v.mount();
    let ls = sh(&format!("ls {}", v.mnt.display()));
    assert_eq!(ls, "before\nlast\nnew0\nnew1\nnew2\nnew3\nnew4\n");
    for i in 0..5 {
        let got = sh(&format!("cat {}", v.path(&format!("new{i}")).display()));
        assert_eq!(got, format!("new{i}\n"));
    }
    v.unmount();
}
