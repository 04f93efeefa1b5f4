//! Modes, owners and timestamps: chmod/chown/utimensat surviving a
//! remount, times before 1970 and after 2038 (and clamped past 1697-2242),
//! setuid/setgid cleared by chown, and which operations move mtime and
//! ctime.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};

use super::xattr::{removexattr, setxattr};
use super::*;
use crate::harness::*;

fn utimensat(p: &Path, atime: libc::timespec, mtime: libc::timespec, flags: i32) {
    let c = cpath(p);
    let times = [atime, mtime];
    ok(
        unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), flags) },
        "utimensat",
    );
}

pub(super) fn times(p: &Path) -> [(i64, i64); 3] {
    let m = fs::symlink_metadata(p).unwrap();
    [
        (m.atime(), m.atime_nsec()),
        (m.mtime(), m.mtime_nsec()),
        (m.ctime(), m.ctime_nsec()),
    ]
}

fn now() -> (i64, i64) {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    (d.as_secs() as i64, d.subsec_nanos() as i64)
}

fn ctime(p: &Path) -> (i64, i64) {
    times(p)[2]
}

#[test]
fn chmod_chown_utimensat_survive_remount() {
    let mut v = Volume::local();
    v.mount();
    let f = v.path("f");
    fs::write(&f, b"x").unwrap();
    fs::create_dir(v.path("d")).unwrap();
    std::os::unix::fs::symlink("f", v.path("l")).unwrap();

    let ctime0 = times(&f)[2];
    fs::set_permissions(&f, fs::Permissions::from_mode(0o640)).unwrap();
    assert!(times(&f)[2] >= ctime0, "chmod sets ctime");
    fs::set_permissions(v.path("d"), fs::Permissions::from_mode(0o1750)).unwrap();
    std::os::unix::fs::chown(&f, Some(1234), Some(5678)).unwrap();
    std::os::unix::fs::lchown(v.path("l"), Some(4321), Some(8765)).unwrap();
    std::os::unix::fs::chown(v.path("d"), None, Some(99)).unwrap();

    utimensat(
        &f,
        ts(1_000_000_000, 123_456_789),
        ts(1_500_000_000, 987_654_321),
        0,
    );
    utimensat(&v.path("d"), ts(2, 1), ts(3, 999_999_999), 0);
    utimensat(
        &v.path("l"),
        ts(1_600_000_000, 5),
        ts(1_700_000_000, 6),
        libc::AT_SYMLINK_NOFOLLOW,
    );
    // UTIME_OMIT keeps a time; UTIME_NOW takes the clock.
    let before = now();
    utimensat(
        &v.path("d"),
        ts(0, libc::UTIME_OMIT),
        ts(0, libc::UTIME_NOW),
        0,
    );
    let after = now();
    let dt = times(&v.path("d"));
    assert_eq!(dt[0], (2, 1), "UTIME_OMIT kept atime");
    assert!(
        dt[1] >= (before.0 - 1, 0) && dt[1] <= (after.0 + 1, 0),
        "UTIME_NOW mtime {:?} within {before:?}..{after:?}",
        dt[1]
    );
    let d_mtime = dt[1];

    for round in ["before remount", "after remount"] {
        let m = fs::metadata(&f).unwrap();
        assert_eq!(m.mode() & 0o7777, 0o640, "{round}");
        assert_eq!((m.uid(), m.gid()), (1234, 5678), "{round}");
        assert_eq!(
            times(&f)[..2],
            [(1_000_000_000, 123_456_789), (1_500_000_000, 987_654_321)],
            "{round}: file times"
        );
        let m = fs::metadata(v.path("d")).unwrap();
        assert_eq!(m.mode() & 0o7777, 0o1750, "{round}");
        assert_eq!((m.uid(), m.gid()), (0, 99), "{round}");
        assert_eq!(times(&v.path("d"))[..2], [(2, 1), d_mtime], "{round}");
        let m = fs::symlink_metadata(v.path("l")).unwrap();
        assert_eq!((m.uid(), m.gid()), (4321, 8765), "{round}: lchown");
        assert_eq!(
            times(&v.path("l"))[..2],
            [(1_600_000_000, 5), (1_700_000_000, 6)],
            "{round}: symlink times"
        );
        v.remount();
    }
    // ctime survives a remount too.
    let c1 = times(&f)[2];
    v.remount();
    assert_eq!(times(&f)[2], c1, "ctime after remount");
}

#[test]
fn timestamps_before_1970_and_after_2038() {
    let mut v = Volume::local();
    v.mount();
    let f = v.path("f");
    fs::write(&f, b"x").unwrap();
    utimensat(&f, ts(-1_000_000_000, 0), ts(4_102_444_800, 750), 0);
    for round in ["before remount", "after remount"] {
        assert_eq!(
            times(&f)[..2],
            [(-1_000_000_000, 0), (4_102_444_800, 750)],
            "{round}"
        );
        v.remount();
    }
}

/// Times are held in 34-bit seconds (1697 to 2242): past that span they
/// clamp to its ends, as ext4 clamps to its own, and stay so after a
/// remount.
#[test]
fn timestamps_past_the_held_span_clamp_to_its_ends() {
    let mut v = Volume::local();
    v.mount();
    let f = v.path("f");
    fs::write(&f, b"x").unwrap();
    let (min, max) = (-(1i64 << 33), (1i64 << 33) - 1);
    utimensat(&f, ts(-(1 << 40), 5), ts(1 << 40, 5), 0);
    for round in ["before remount", "after remount"] {
        assert_eq!(times(&f)[..2], [(min, 0), (max, 999_999_999)], "{round}");
        v.remount();
    }
    utimensat(&f, ts(min, 1), ts(max, 2), 0);
    assert_eq!(times(&f)[..2], [(min, 1), (max, 2)], "the ends themselves");
}

#[test]
fn timestamps_before_1970_with_nanoseconds() {
    let mut v = Volume::local();
    v.mount();
    let f = v.path("f");
    fs::write(&f, b"x").unwrap();
    utimensat(&f, ts(-1_000_000_000, 250), ts(-1, 999_999_999), 0);
    for round in ["before remount", "after remount"] {
        assert_eq!(
            times(&f)[..2],
            [(-1_000_000_000, 250), (-1, 999_999_999)],
            "{round}"
        );
        v.remount();
    }
}

#[test]
fn chown_clears_setuid_and_setgid() {
    let mut v = Volume::local();
    v.mount();
    let f = v.path("f");
    fs::write(&f, b"#!/bin/sh\n").unwrap();
    fs::set_permissions(&f, fs::Permissions::from_mode(0o6755)).unwrap();
    assert_eq!(fs::metadata(&f).unwrap().mode() & 0o7777, 0o6755);
    std::os::unix::fs::chown(&f, Some(1234), Some(1234)).unwrap();
    assert_eq!(
        fs::metadata(&f).unwrap().mode() & 0o7777,
        0o755,
        "chown of an executable clears S_ISUID and S_ISGID"
    );
    // A directory keeps its setgid bit across chown.
    fs::create_dir(v.path("d")).unwrap();
    fs::set_permissions(v.path("d"), fs::Permissions::from_mode(0o2775)).unwrap();
    std::os::unix::fs::chown(v.path("d"), Some(1234), Some(1234)).unwrap();
    assert_eq!(fs::metadata(v.path("d")).unwrap().mode() & 0o7777, 0o2775);
    v.remount();
    assert_eq!(fs::metadata(&f).unwrap().mode() & 0o7777, 0o755);
    assert_eq!(fs::metadata(v.path("d")).unwrap().mode() & 0o7777, 0o2775);
}

#[test]
fn mtime_changes_on_write_and_persists() {
    let mut v = Volume::local();
    v.mount();
    let f = v.path("f");
    fs::create_dir(v.path("d")).unwrap();
    fs::write(&f, b"0123456789").unwrap();
    let old = (1_000_000_000, 0);
    let set_old = |p: &Path| utimensat(p, ts(old.0, old.1), ts(old.0, old.1), 0);

    set_old(&f);
    let c0 = times(&f)[2];
    OpenOptions::new()
        .write(true)
        .open(&f)
        .unwrap()
        .write_all_at(b"w", 3)
        .unwrap();
    let t = times(&f);
    assert!(t[1] > old, "write sets mtime: {:?}", t[1]);
    assert!(t[2] >= c0 && t[2] > old, "write sets ctime");
    assert_eq!(t[0], old, "noatime: atime unchanged by write");
    let after_write = t[1];

    set_old(&f);
    OpenOptions::new()
        .write(true)
        .open(&f)
        .unwrap()
        .set_len(4)
        .unwrap();
    assert!(times(&f)[1] > old, "ftruncate sets mtime");
    set_old(&f);
    let c = cpath(&f);
    ok(unsafe { libc::truncate(c.as_ptr(), 2) }, "truncate");
    assert!(times(&f)[1] > old, "truncate sets mtime");
    set_old(&f);
    fs::read(&f).unwrap();
    assert_eq!(times(&f)[..2], [old, old], "a read changes nothing");

    // A directory's mtime follows entries added and removed.
    let d = v.path("d");
    set_old(&d);
    fs::write(d.join("new"), b"").unwrap();
    assert!(times(&d)[1] > old, "create sets the parent's mtime");
    set_old(&d);
    fs::rename(d.join("new"), d.join("renamed")).unwrap();
    assert!(times(&d)[1] > old, "rename sets the parent's mtime");
    set_old(&d);
    fs::remove_file(d.join("renamed")).unwrap();
    assert!(times(&d)[1] > old, "unlink sets the parent's mtime");

    // The last write's mtime (exact to the nanosecond) survives a remount.
    OpenOptions::new()
        .write(true)
        .open(&f)
        .unwrap()
        .write_all_at(b"again", 0)
        .unwrap();
    let t = times(&f);
    assert!(t[1] >= after_write);
    let td = times(&d);
    v.remount();
    assert_eq!(times(&f)[1..], t[1..], "file mtime/ctime after remount");
    assert_eq!(times(&d)[1..], td[1..], "dir mtime/ctime after remount");
}

/// Each metadata change moves ctime forward (docs/SEMANTICS.md; as ext4).
/// The sleeps only make sure the clock has moved on between steps.
#[test]
fn ctime_changes_on_metadata_changes() {
    let mut v = Volume::local();
    v.mount();
    let f = v.path("f");
    fs::write(&f, b"0123456789").unwrap();
    fs::create_dir(v.path("d")).unwrap();
    let step = |what: &str, p: &Path, op: &dyn Fn()| {
        let before = ctime(p);
        std::thread::sleep(std::time::Duration::from_millis(15));
        op();
        let after = ctime(p);
        assert!(after > before, "{what}: ctime {before:?} -> {after:?}");
    };
    step("chmod", &f, &|| {
        fs::set_permissions(&f, fs::Permissions::from_mode(0o600)).unwrap()
    });
    step("chown", &f, &|| {
        std::os::unix::fs::chown(&f, Some(7), Some(7)).unwrap()
    });
    step("utimensat", &f, &|| utimensat(&f, ts(1, 1), ts(2, 2), 0));
    step("write", &f, &|| {
        OpenOptions::new()
            .write(true)
            .open(&f)
            .unwrap()
            .write_all_at(b"w", 1)
            .unwrap()
    });
    step("truncate", &f, &|| {
        OpenOptions::new()
            .write(true)
            .open(&f)
            .unwrap()
            .set_len(5)
            .unwrap()
    });
    step("setxattr", &f, &|| setxattr(&f, "user.k", b"v", 0).unwrap());
    step("removexattr", &f, &|| removexattr(&f, "user.k").unwrap());
    step("link", &f, &|| fs::hard_link(&f, v.path("d/link")).unwrap());
    step("unlink of another name", &f, &|| {
        fs::remove_file(v.path("d/link")).unwrap()
    });
    let g = v.path("d/g");
    let before = ctime(&f);
    std::thread::sleep(std::time::Duration::from_millis(15));
    fs::rename(&f, &g).unwrap();
    assert!(
        ctime(&g) > before,
        "rename: ctime {before:?} -> {:?}",
        ctime(&g)
    );
    step("create in a dir (the dir)", &v.path("d"), &|| {
        fs::write(v.path("d/new"), b"").unwrap()
    });
    // Neither a read nor a failed change touches ctime.
    let before = ctime(&g);
    std::thread::sleep(std::time::Duration::from_millis(15));
    fs::read(&g).unwrap();
    assert_eq!(
        setxattr(&g, "user.k", b"v", libc::XATTR_REPLACE),
        Err(libc::ENODATA)
    );
    assert_eq!(ctime(&g), before, "read and a failed setxattr");
    v.remount();
    assert_eq!(ctime(&g), before, "after remount");
}
