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
        .env("SEALEDFS_STATE_DIR", dir.path().join("state"))
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

/// One test per golden volume and behaviour: `golden!(v2, "v2")` makes
/// `golden::v2::reads_as_its_manifest` and `…::accepts_writes_and_keeps_them`.
macro_rules! golden {
    ($name:ident, $dir:literal) => {
        mod $name {
            #[test]
            fn reads_as_its_manifest() {
                super::reads_as_its_manifest($dir);
            }

            #[test]
            fn accepts_writes_and_keeps_them() {
                super::accepts_writes_and_keeps_them($dir);
            }
        }
    };
}

golden!(v1, "v1");
golden!(v2, "v2");
golden!(v2_aes, "v2-aes");
golden!(v2_rotated, "v2-rotated");
golden!(v2_padded, "v2-padded");

fn reads_as_its_manifest(version: &str) {
    let want = std::fs::read_to_string(format!(
        "{}/tests/golden/{version}.manifest",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let (dir, mnt) = mount_golden(version, &["--read-only"]);
    let got = manifest_of(&mnt);
    let xattr = sh(&format!(
        "getfattr --only-values -n user.golden '{}'",
        mnt.join("hello.txt").display()
    ));
    unmount(&mnt);
    assert_eq!(got, want);
    assert_eq!(xattr, "value");
    // Its audit trail (none before v2) verifies.
    let vault = dir.path().join("vault");
    let out = Command::new(bin())
        .args(["audit", "verify", vault.to_str().unwrap()])
        .env("SEALEDFS_PASSPHRASE", "golden")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    if version != "v1" {
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("chain w: "), "{text}");
        let (_dir, snap) = mount_golden(version, &["--snapshot", "golden"]);
        assert_eq!(manifest_of(&snap), want, "the golden snapshot");
        unmount(&snap);
    }
}

fn accepts_writes_and_keeps_them(version: &str) {
    let (dir, mnt) = mount_golden(version, &[]);
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
        .env("SEALEDFS_STATE_DIR", dir.path().join("state"))
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
