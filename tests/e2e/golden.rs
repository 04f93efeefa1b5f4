//! The golden volumes: volumes made by earlier builds (tests/golden/vN,
//! made by scripts/make-golden.sh) must still mount and read exactly as
//! their manifest says. A format change that breaks this fails here; a
//! deliberate one bumps the format version and adds a new golden volume.

use std::process::Command;

use crate::harness::*;

fn manifest_of(mnt: &std::path::Path) -> String {
    let m = mnt.display();
    let mut s = sh(&format!(
        "cd '{m}' && find . -type f -print0 | sort -z | xargs -0 sha256sum"
    ));
    s.push_str(&sh(&format!(
        "cd '{m}' && find . -printf '%p %y %m %n %s %T@\\n' | sort"
    )));
    s
}

fn mount_golden(version: &str, extra: &[&str]) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let src = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden");
    let vault = dir.path().join("vault");
    // Never mount the committed fixture itself.
    sh(&format!("cp -a '{src}/{version}' '{}'", vault.display()));
    // A checkout leaves the fixture world-readable; sealedfs refuses that.
    sh(&format!("chmod -R go-rwx '{}'", vault.display()));
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let out = Command::new(bin())
        .args(["mount", vault.to_str().unwrap(), mnt.to_str().unwrap()])
        .args(extra)
        .env("SEALEDFS_PASSPHRASE", "golden")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "golden {version}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (dir, mnt)
}

fn unmount(mnt: &std::path::Path) {
    let out = sealedfs(&["unmount", mnt.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn golden_v1_reads_as_its_manifest() {
    let want = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/golden/v1.manifest"
    ))
    .unwrap();
    let (_dir, mnt) = mount_golden("v1", &["--read-only"]);
    let got = manifest_of(&mnt);
    let xattr = sh(&format!(
        "getfattr --only-values -n user.golden '{}'",
        mnt.join("hello.txt").display()
    ));
    unmount(&mnt);
    assert_eq!(got, want);
    assert_eq!(xattr, "value");
}

#[test]
fn golden_v1_accepts_writes_and_keeps_them() {
    let (dir, mnt) = mount_golden("v1", &[]);
    std::fs::write(mnt.join("new.txt"), b"written by this build").unwrap();
    std::fs::remove_file(mnt.join("dir/hardlink")).unwrap();
    unmount(&mnt);
    let out = Command::new(bin())
        .args([
            "mount",
            dir.path().join("vault").to_str().unwrap(),
            mnt.to_str().unwrap(),
        ])
        .env("SEALEDFS_PASSPHRASE", "golden")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        std::fs::read(mnt.join("new.txt")).unwrap(),
        b"written by this build"
    );
    assert_eq!(
        std::fs::read(mnt.join("hello.txt")).unwrap(),
        b"hello golden\n"
    );
    assert_eq!(std::fs::metadata(mnt.join("hello.txt")).unwrap().len(), 13);
    unmount(&mnt);
}
