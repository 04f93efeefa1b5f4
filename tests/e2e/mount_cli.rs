//! The `mount` command's options through the real binary: `-o` spellings
//! reach the kernel, unknown options and non-empty mountpoints are
//! refused before anything is unlocked, unattended mounts read their
//! secret from a file, and mount.fuse3's call (no `mount` word) mounts.

use std::path::Path;
use std::process::Stdio;

use crate::harness::*;

fn mnt_str(v: &Volume) -> String {
    v.mnt.to_str().unwrap().to_owned()
}

#[test]
fn o_options_reach_the_kernel() {
    let mut v = Volume::local();
    // What mount.fuse3 adds (dev,suid) is accepted and not honoured.
    v.mount_with(&[
        "-o",
        "ro,noexec,allow_other,dev,suid,relatime,x-systemd.automount",
    ]);
    let opts = mount_options_of(&v.mnt).expect("mounted");
    for want in [
        "ro",
        "noexec",
        "nosuid",
        "nodev",
        "noatime",
        "allow_other",
        "default_permissions",
    ] {
        assert!(
            opts.split(',').any(|o| o == want),
            "{want} missing in {opts}"
        );
    }
    let e = std::fs::write(v.path("f"), b"x").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS));
    v.unmount();

    // --read-only wins over the rw that mount(8) adds to every fstab mount.
    v.mount_with(&["--read-only", "-o", "rw"]);
    let opts = mount_options_of(&v.mnt).unwrap();
    assert!(opts.split(',').any(|o| o == "ro"), "{opts}");
    assert!(
        !opts.split(',').any(|o| o == "noexec" || o == "allow_other"),
        "{opts}"
    );
}

#[test]
fn unknown_options_are_refused_in_one_line() {
    let mut v = Volume::local();
    for (opts, want) in [
        (
            "rw,alow_other",
            "sealedfs: unknown mount option \"alow_other\"",
        ),
        (
            "cache_size",
            "sealedfs: mount option cache_size needs a value: cache_size=SIZE",
        ),
        (
            "strictatime",
            "sealedfs: mount option \"strictatime\" is not supported",
        ),
    ] {
        let out = v.try_mount(&["-o", opts]);
        let err = assert_cli_error(&out, 1);
        assert!(err.starts_with(want), "{opts}: {err}");
        assert!(!v.is_mounted());
    }
    let out = v.try_mount(&["--cache-size", "64M", "-o", "cache_size=128M"]);
    let err = assert_cli_error(&out, 1);
    assert!(err.contains("cache_size is given twice"), "{err}");
}

#[test]
fn a_non_empty_mountpoint_is_refused_unless_asked() {
    let mut v = Volume::local();
    std::fs::write(v.path("underneath"), b"below the mount").unwrap();
    let out = v.try_mount(&[]);
    let err = assert_cli_error(&out, 1);
    assert!(err.contains("is not empty"), "{err}");
    assert!(err.contains("--nonempty"), "{err}");
    assert!(!v.is_mounted());

    for how in [&["--nonempty"][..], &["-o", "nonempty"]] {
        v.mount_with(how);
        assert!(
            !v.path("underneath").exists(),
            "{how:?}: the mount hides it"
        );
        std::fs::write(v.path("inside"), b"in the volume").unwrap();
        v.unmount();
        assert_eq!(
            std::fs::read(v.path("underneath")).unwrap(),
            b"below the mount"
        );
        assert!(!v.path("inside").exists());
    }
}

/// Mounts `v` as a boot would: no passphrase variable, stdin not a
/// terminal, only what `args` say.
fn unattended_mount(v: &Volume, args: &[&str]) -> std::process::Output {
    sealedfs_cmd(args)
        .env("SEALEDFS_LOG_FILE", &v.log)
        .envs(v.env().iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn unattended_mounts_read_passphrase_and_key_files() {
    let mut v = Volume::local();
    let dir = v.dir.path().to_owned();
    let (url, mnt) = (v.url.clone(), mnt_str(&v));

    let out = unattended_mount(&v, &["mount", &url, &mnt]);
    let err = assert_cli_error(&out, 1);
    assert!(
        err.contains("no passphrase: give --passphrase-file"),
        "{err}"
    );

    let pass = dir.join("pass");
    write_secret(&pass, format!("{PASS}\n").as_bytes());
    let o = format!("passphrase_file={}", pass.display());
    let out = unattended_mount(&v, &["mount", &url, &mnt, "-o", &o]);
    assert!(out.status.success(), "{}", stderr(&out));
    v.adopt_mount();
    std::fs::write(v.path("f"), b"unattended").unwrap();
    v.unmount();

    // A volume made with a key file (beside the test volume, mounted on
    // its mountpoint) opens with the file's bytes, newline and all.
    let mut kv = Volume::local();
    let key = kv.dir.path().join("key");
    write_secret(&key, &pattern(7, 64));
    let key_s = key.to_str().unwrap();
    let store = kv.dir.path().join("keyed-vault");
    let store_s = store.to_str().unwrap().to_owned();
    let init = sealedfs_cmd(&["init", &store_s, "--insecure-fast-kdf", "--key-file", key_s])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(init.status.success(), "{}", stderr(&init));
    let kmnt = mnt_str(&kv);
    let o = format!("key_file={key_s}");
    let out = unattended_mount(&kv, &["mount", &store_s, &kmnt, "-o", &o]);
    assert!(out.status.success(), "{}", stderr(&out));
    kv.adopt_mount();
    kv.unmount();

    // The same bytes without the last one, or as a passphrase file (its
    // trailing newline dropped), are another secret: exit 2.
    let short = kv.dir.path().join("short");
    let mut bytes = pattern(7, 64);
    bytes.pop();
    write_secret(&short, &bytes);
    let o = format!("key_file={}", short.display());
    let out = unattended_mount(&kv, &["mount", &store_s, &kmnt, "-o", &o]);
    assert_cli_error(&out, 2);
    assert!(!kv.is_mounted());
}

#[test]
fn mount_fuse3s_call_without_the_mount_word_mounts() {
    let mut v = Volume::local();
    let pass = v.dir.path().join("pass");
    write_secret(&pass, PASS.as_bytes());
    let o = format!("rw,dev,suid,passphrase_file={}", pass.display());
    // What mount.fuse3 runs for an fstab line: `sealedfs STORE MNT -o OPTS`.
    let out = unattended_mount(&v, &[&v.url.clone(), &mnt_str(&v), "-o", &o]);
    assert!(out.status.success(), "{}", stderr(&out));
    v.adopt_mount();
    assert!(mount_options_of(&v.mnt).unwrap().contains("nosuid"));
    std::fs::write(v.path("f"), b"x").unwrap();
    v.unmount();

    // Without -o it is not taken for a mount: a misspelt command stays one.
    let out = sealedfs(&["mout", &v.url, &mnt_str(&v)]);
    let err = assert_cli_error(&out, 1);
    assert!(err.contains("unrecognized subcommand 'mout'"), "{err}");
    // mount.fuse3's drop_privileges hands over /dev/fd/N: refused by name.
    let out = unattended_mount(&v, &[&v.url.clone(), "/dev/fd/3", "-o", &o]);
    let err = assert_cli_error(&out, 1);
    assert!(err.contains("drop_privileges"), "{err}");
    assert!(!Path::new("/dev/fd/3").join("f").exists());
}
