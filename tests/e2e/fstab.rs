//! Mounting through mount(8) and mount.fuse3 from an fstab: the lines a
//! machine would carry, written into a temporary fstab (`mount -T FILE`),
//! never the host's /etc/fstab; mounted and unmounted by path.
//!
//! mount(8) runs the helper without `PATH`, so `fuse.sealedfs` finds the
//! binary only where `sh` looks by default (/usr/local/sbin, /usr/bin …).
//! The test of that form runs mount(8) in a private mount namespace in
//! which /usr/local/sbin holds a link to the binary under test; the other
//! tests use fstab's older `PROGRAM#STORE … fuse` form, which names the
//! binary by its path and hands it the same arguments.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use sealedfs::cli::pidfile;
use sealedfs::cli::process::ProcStat;

use crate::harness::*;

/// A temporary fstab holding `line`.
fn fstab(v: &Volume, line: &str) -> PathBuf {
    let path = v.dir.path().join("fstab");
    std::fs::write(&path, format!("# sealedfs e2e\n{line}\n")).unwrap();
    path
}

/// The passphrase file of `v` (created once).
fn pass_file(v: &Volume) -> PathBuf {
    let path = v.dir.path().join("pass");
    if !path.exists() {
        write_secret(&path, format!("{PASS}\n").as_bytes());
    }
    path
}

/// mount(8) (or anything else) as a boot runs it: the volume's S3
/// settings and log file, no passphrase variable, no terminal.
fn boot_cmd(v: &Volume, program: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_remove("SEALEDFS_PASSPHRASE")
        .env("SEALEDFS_LOG_FILE", &v.log)
        .env("RUST_LOG", "info")
        .envs(v.env().iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null());
    cmd
}

/// `mount -T FSTAB ARGS…`, bounded by `limit`; its output and duration.
fn mount_fstab(v: &Volume, table: &Path, args: &[&str], limit: Duration) -> (Output, Duration) {
    let mut cmd = boot_cmd(v, "mount", &["-T", table.to_str().unwrap()]);
    cmd.args(args);
    let start = Instant::now();
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (out, took) = within(limit, "mount -T", move || child.wait_with_output().unwrap());
    (out, took.max(start.elapsed()))
}

/// The daemon serving `mnt` and its start time (from its pid file).
fn daemon_of(mnt: &Path) -> (i32, u64) {
    let mnt = std::fs::canonicalize(mnt).unwrap();
    let pid = pidfile::find_daemon(&mnt).expect("a daemon serves the mount");
    (pid, ProcStat::of(pid).unwrap().start_time)
}

/// Waits for the daemon to exit after an unmount and returns the exit
/// code and reason it recorded.
fn daemon_exit(mnt: &Path, (pid, start): (i32, u64)) -> (i32, String) {
    wait_for(
        "the daemon to commit and exit",
        Duration::from_secs(60),
        || !alive(pid),
    );
    let mnt = std::fs::canonicalize(mnt).unwrap();
    pidfile::take_exit(&mnt, pid, start).expect("the daemon records its exit")
}

#[test]
fn fstab_mount_then_umount_commits_and_exits_cleanly() {
    let mut v = Volume::local();
    let mnt = v.mnt.to_str().unwrap().to_owned();
    let opts = format!(
        "defaults,_netdev,nofail,x-systemd.mount-timeout=30,allow_other,passphrase_file={}",
        pass_file(&v).display()
    );
    let table = fstab(&v, &format!("{}#{} {mnt} fuse {opts} 0 0", bin(), v.url));
    let (out, _) = mount_fstab(&v, &table, &[&mnt], Duration::from_secs(60));
    assert!(out.status.success(), "{}\n{}", stderr(&out), v.log_text());
    v.adopt_mount();
    let opts = mount_options_of(&v.mnt).unwrap();
    assert!(
        opts.contains("allow_other") && opts.contains("nosuid"),
        "{opts}"
    );
    let daemon = daemon_of(&v.mnt);

    // Written without fsync: only the commit at the end of the session
    // makes it durable.
    std::fs::write(v.path("after-boot"), b"kept by umount").unwrap();
    let out = boot_cmd(&v, "umount", &[&mnt]).output().unwrap();
    assert!(out.status.success(), "umount: {}", stderr(&out));
    assert_eq!(
        daemon_exit(&v.mnt, daemon),
        (0, String::new()),
        "{}",
        v.log_text()
    );
    assert!(v.log_text().contains("unmounted; exiting"));

    v.mount();
    assert_eq!(
        std::fs::read(v.path("after-boot")).unwrap(),
        b"kept by umount"
    );
}

#[test]
fn fuse_sealedfs_type_mounts_through_mount_fuse3() {
    let mut v = Volume::local();
    let mnt = v.mnt.to_str().unwrap().to_owned();
    let bin_dir = v.dir.path().join("sbin");
    std::fs::create_dir(&bin_dir).unwrap();
    std::os::unix::fs::symlink(bin(), bin_dir.join("sealedfs")).unwrap();
    let line = format!(
        "{} {mnt} fuse.sealedfs rw,nofail,passphrase_file={} 0 0",
        v.url,
        pass_file(&v).display()
    );
    let table = fstab(&v, &line);
    // mount(8) runs in a namespace of its own, whose /usr/local/sbin holds
    // the binary; the mount and its daemon live on in that namespace.
    let script = format!(
        "mount --bind '{}' /usr/local/sbin && mount -T '{}' '{mnt}'",
        bin_dir.display(),
        table.display()
    );
    let out = boot_cmd(
        &v,
        "unshare",
        &["--mount", "--propagation", "private", "sh", "-c", &script],
    )
    .output()
    .unwrap();
    assert!(out.status.success(), "{}\n{}", stderr(&out), v.log_text());
    let daemon = daemon_of(&v.mnt);
    let ns = format!("--mount=/proc/{}/ns/mnt", daemon.0);
    let in_ns = |cmd: &str| {
        let out = Command::new("nsenter")
            .args([ns.as_str(), "sh", "-c", cmd])
            .output()
            .unwrap();
        assert!(out.status.success(), "{cmd}: {}", stderr(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // Mounted by root, fuser calls mount(2) itself with the type "fuse"
    // (its subtype reaches only fusermount3), so the table says fuse.
    let table_line = in_ns(&format!("grep ' {mnt} ' /proc/self/mountinfo"));
    assert!(table_line.contains(" - fuse sealedfs "), "{table_line}");
    in_ns(&format!("echo through-fstab > '{mnt}/f'"));
    in_ns(&format!("umount '{mnt}'"));
    assert_eq!(
        daemon_exit(&v.mnt, daemon),
        (0, String::new()),
        "{}",
        v.log_text()
    );

    v.mount();
    assert_eq!(std::fs::read(v.path("f")).unwrap(), b"through-fstab\n");
}

#[test]
fn nofail_with_a_missing_local_store_fails_at_once() {
    let v = Volume::local();
    let mnt = v.mnt.to_str().unwrap().to_owned();
    let missing = v.dir.path().join("no-such-vault");
    let line = format!(
        "{}#{} {mnt} fuse nofail,passphrase_file={} 0 0",
        bin(),
        missing.display(),
        pass_file(&v).display()
    );
    let table = fstab(&v, &line);
    let (out, took) = mount_fstab(&v, &table, &[&mnt], Duration::from_secs(20));
    assert_ne!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("does not exist"), "{err}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert!(!v.is_mounted());
}

/// A store that accepts connections and never answers (a stopped
/// server): the mount gives up within its open deadline (15 s) and
/// says so, for a single `mount MNT` and for `mount -a`. (mount(8) does
/// not act on nofail; systemd does, by not failing the boot.)
#[test]
fn nofail_with_a_stalled_s3_store_fails_within_bounds() {
    let moto = PrivateS3::start();
    let v = Volume::on_server(moto.server());
    let mnt = v.mnt.to_str().unwrap().to_owned();
    let line = format!(
        "{}#{} {mnt} fuse _netdev,nofail,passphrase_file={} 0 0",
        bin(),
        v.url,
        pass_file(&v).display()
    );
    let table = fstab(&v, &line);
    moto.pause();
    let _continue = ContinueOnDrop(moto.pid());
    let (out, took) = mount_fstab(&v, &table, &[&mnt], Duration::from_secs(90));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains(&v.url), "{err}");
    assert!(took < Duration::from_secs(45), "{took:?}");
    assert!(!v.is_mounted());

    // mount -a (every auto line) reports the failure too, as mount(8)'s
    // "some mounts failed" (32): nofail is systemd's to honour.
    let (out, took) = mount_fstab(&v, &table, &["-a"], Duration::from_secs(90));
    assert_eq!(out.status.code(), Some(32), "{}", stderr(&out));
    assert!(took < Duration::from_secs(45), "{took:?}: {}", stderr(&out));
    assert!(!v.is_mounted());
}
