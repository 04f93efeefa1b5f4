//! Lock-down, status and alerts through real mounts: a locked mount
//! refuses every access with EACCES and holds no keys, unlock restores it
//! with the data intact, an idle mount locks itself, only root and the
//! mount's owner reach the control socket, and an integrity failure
//! reaches syslog and `status` without naming a file.

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::harness::*;

fn cli(v: &Volume, args: &[&str]) -> std::process::Output {
    v.run(args, &[])
}

fn status(v: &Volume) -> Value {
    let out = cli(v, &["status", v.mnt.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "status: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn denied(r: std::io::Result<impl Sized>) -> bool {
    matches!(r, Err(e) if e.kind() == ErrorKind::PermissionDenied)
}

fn lock_refuses_everything_and_unlock_restores(backend: Backend) {
    let mut v = Volume::new(backend);
    v.mount();
    let data = pattern(3, 3 << 20);
    fs::write(v.path("big"), &data).unwrap();
    fs::create_dir(v.path("dir")).unwrap();
    // Held open across the lock: closing it must still work.
    let open = fs::File::open(v.path("big")).unwrap();
    let s = status(&v);
    assert_eq!(s["locked"], false);
    assert!(s["cache_dirty_bytes"].as_u64().unwrap() > 0, "{s}");

    let out = cli(&v, &["lock", v.mnt.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    // The daemon read its wiped keys back as zeros (else lock fails).
    assert!(String::from_utf8_lossy(&out.stdout).contains("keys wiped"));
    assert!(denied(fs::read(v.path("big"))), "read");
    assert!(denied(fs::write(v.path("new"), b"x")), "write");
    assert!(denied(fs::read_dir(&v.mnt)), "ls");
    assert!(denied(fs::metadata(v.path("dir"))), "stat");
    assert!(denied(fs::remove_file(v.path("big"))), "unlink");
    drop(open);
    let s = status(&v);
    assert_eq!(s["locked"], true);
    assert_eq!(s["cache_dirty_bytes"], 0);
    assert_eq!(s["cache_clean_bytes"], 0);
    assert_eq!(s["uncommitted"], false);

    let wrong = v.run(
        &["unlock", v.mnt.to_str().unwrap()],
        &[("SEALEDFS_PASSPHRASE", "not the passphrase at all")],
    );
    assert_cli_error(&wrong, 2);
    assert!(denied(fs::read(v.path("big"))), "still locked");
    let out = cli(&v, &["unlock", v.mnt.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(fs::read(v.path("big")).unwrap(), data);
    fs::write(v.path("after"), b"written after unlock").unwrap();
    v.remount();
    assert_eq!(fs::read(v.path("big")).unwrap(), data);
    assert_eq!(fs::read(v.path("after")).unwrap(), b"written after unlock");
    v.unmount();

    let out = v.run(&["audit", &v.url, "--op", "admin", "--format", "json"], &[]);
    let admin: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["detail"].to_string())
        .collect();
    let joined = admin.join("\n");
    assert!(joined.contains("\"lock\""), "{joined}");
    assert!(joined.contains("unlock: while locked "), "{joined}");
    assert!(
        joined.contains(" requests refused, 1 unlocks refused"),
        "{joined}"
    );
}
per_backend!(lock_refuses_everything_and_unlock_restores: local, s3);

#[test]
fn an_idle_mount_locks_itself() {
    let mut v = Volume::local();
    v.mount_with(&["-o", "lock_after=1s"]);
    fs::write(v.path("f"), b"kept").unwrap();
    assert_eq!(status(&v)["lock_after_seconds"], 1);
    wait_for("the idle lock", Duration::from_secs(10), || {
        status(&v)["locked"] == true
    });
    assert!(denied(fs::read(v.path("f"))));
    let out = cli(&v, &["unlock", v.mnt.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(fs::read(v.path("f")).unwrap(), b"kept");
}

#[test]
fn only_root_and_the_owner_reach_the_control_socket() {
    let mut v = Volume::local();
    fs::set_permissions(v.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    // A copy the other user can run: the build tree may sit in a private
    // directory (`mktemp -d` makes it 0700).
    let sealedfs = v.dir.path().join("sealedfs");
    fs::copy(bin(), &sealedfs).unwrap();
    fs::set_permissions(&sealedfs, fs::Permissions::from_mode(0o755)).unwrap();
    v.mount_with(&["-o", "allow_other"]);
    let m = v.mnt.display().to_string();
    for cmd in ["status", "lock", "unlock"] {
        let (ok, out) = user_sh(&format!(
            "SEALEDFS_PASSPHRASE=x {} {cmd} '{m}'",
            sealedfs.display()
        ));
        assert!(!ok, "{cmd} as another user: {out}");
        assert!(
            out.contains("only root and the user who mounted it"),
            "{out}"
        );
        assert_eq!(out.lines().count(), 1, "{out}");
    }
    assert_eq!(status(&v)["locked"], false);
    let not_a_mount = cli(&v, &["status", v.dir.path().to_str().unwrap()]);
    assert!(assert_cli_error(&not_a_mount, 1).contains("is not a sealedfs mount"));
}

#[test]
fn an_integrity_failure_reaches_syslog_and_status_without_a_name() {
    let mut v = Volume::local();
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("log");
    let syslog = UnixDatagram::bind(&sock_path).unwrap();
    // Read as syslog would, all along (a full socket drops lines).
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&lines);
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = syslog.recv(&mut buf) {
            let line = String::from_utf8_lossy(&buf[..n]).into_owned();
            sink.lock().unwrap().push(line);
        }
    });
    // A daemon with neither a log file nor RUST_LOG logs to syslog.
    let mount = |v: &mut Volume| {
        let out = v.run(
            &["mount", &v.url, v.mnt.to_str().unwrap()],
            &[("SEALEDFS_SYSLOG_SOCKET", sock_path.to_str().unwrap())],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        v.adopt_mount();
    };
    mount(&mut v);
    fs::write(v.path("patient-smith.txt"), pattern(9, 200_000)).unwrap();
    v.unmount();
    let store = v.store();
    let pack = store.list("data/").unwrap().remove(0).key;
    let mut body = store.get(&pack).unwrap();
    body[100] ^= 1;
    store.put(&pack, &body).unwrap();
    mount(&mut v);
    let read = fs::read(v.path("patient-smith.txt"));
    assert_eq!(read.unwrap_err().raw_os_error(), Some(libc::EIO));

    wait_for("the alert in syslog", Duration::from_secs(10), || {
        lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("INTEGRITY: "))
    });
    let lines = lines.lock().unwrap().clone();
    let alert = lines
        .iter()
        .find(|l| l.contains("INTEGRITY: "))
        .unwrap_or_else(|| panic!("no INTEGRITY alert in {lines:#?}"));
    assert!(alert.starts_with("<27>sealedfs["), "{alert}");
    assert!(
        lines.iter().any(|l| l.starts_with("<30>sealedfs[")),
        "{lines:#?}"
    );
    for l in &lines {
        assert!(!l.contains("patient-smith"), "a name in the log: {l}");
    }
    let s = status(&v);
    let errors = s["errors"].as_array().unwrap();
    assert!(
        errors.iter().any(|e| e["kind"] == "INTEGRITY"),
        "{errors:#?}"
    );
}
