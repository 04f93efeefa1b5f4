//! Directories: mkdir/rmdir errors, link counts, byte-string names, deep
//! trees, 5,000 entries, readdir while entries change, and inode numbers
//! that stay the same across remounts.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirEntryExt, FileExt, MetadataExt};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::*;
use crate::harness::*;

#[test]
fn mkdir_rmdir() {
    let mut v = Volume::local();
    v.mount();
    let d = v.path("d");
    fs::create_dir(&d).unwrap();
    assert_eq!(err(fs::create_dir(&d)), libc::EEXIST);
    fs::write(d.join("f"), b"x").unwrap();
    fs::create_dir(d.join("sub")).unwrap();
    assert_eq!(err(fs::remove_dir(&d)), libc::ENOTEMPTY);
    assert_eq!(err(fs::remove_dir(d.join("f"))), libc::ENOTDIR);
    assert_eq!(err(fs::remove_file(d.join("sub"))), libc::EISDIR);
    assert_eq!(
        err(fs::create_dir(v.path("missing/x"))),
        libc::ENOENT,
        "mkdir under a missing parent"
    );
    assert_eq!(
        err(fs::create_dir(d.join("f/x"))),
        libc::ENOTDIR,
        "mkdir under a file"
    );
    fs::remove_file(d.join("f")).unwrap();
    assert_eq!(err(fs::remove_dir(&d)), libc::ENOTEMPTY);
    fs::remove_dir(d.join("sub")).unwrap();
    fs::remove_dir(&d).unwrap();
    assert_eq!(err(fs::metadata(&d)), libc::ENOENT);
    fs::create_dir_all(v.path("a/b/c")).unwrap();
    let c = cpath(&v.path("a/b"));
    assert_eq!(
        fails(unsafe { libc::rmdir(c.as_ptr()) }, "rmdir a/b"),
        libc::ENOTEMPTY
    );
    v.remount();
    assert!(v.path("a/b/c").is_dir());
    assert!(!d.exists());
}

#[test]
fn directory_link_counts() {
    let mut v = Volume::local();
    v.mount();
    let d = v.path("d");
    fs::create_dir(&d).unwrap();
    assert_eq!(fs::metadata(&d).unwrap().nlink(), 2, "empty dir");
    fs::create_dir(d.join("s1")).unwrap();
    fs::create_dir(d.join("s2")).unwrap();
    fs::write(d.join("file"), b"").unwrap();
    assert_eq!(fs::metadata(&d).unwrap().nlink(), 4, "two subdirs");
    fs::rename(d.join("s2"), v.path("s2")).unwrap();
    assert_eq!(fs::metadata(&d).unwrap().nlink(), 3, "one moved out");
    v.remount();
    assert_eq!(fs::metadata(&d).unwrap().nlink(), 3, "after remount");
    // A directory renamed over an empty directory in another parent.
    fs::create_dir_all(v.path("e/t")).unwrap();
    fs::rename(d.join("s1"), v.path("e/t")).unwrap();
    assert_eq!(fs::metadata(&d).unwrap().nlink(), 2, "moved over e/t");
    assert_eq!(fs::metadata(v.path("e")).unwrap().nlink(), 3, "e keeps one");
    let root = fs::metadata(&v.mnt).unwrap().nlink();
    fs::remove_dir(v.path("e/t")).unwrap();
    fs::remove_dir(v.path("e")).unwrap();
    assert_eq!(fs::metadata(&v.mnt).unwrap().nlink(), root - 1);
    v.remount();
    assert_eq!(fs::metadata(&v.mnt).unwrap().nlink(), root - 1);
    assert_eq!(fs::metadata(&d).unwrap().nlink(), 2);
}

/// Names are byte strings: anything but '/' and NUL, not only UTF-8.
#[test]
fn names_are_arbitrary_bytes() {
    use std::ffi::OsStr;
    let mut v = Volume::local();
    v.mount();
    let mut want = BTreeSet::new();
    let mut add = |name: Vec<u8>| {
        let p = v.mnt.join(OsStr::from_bytes(&name));
        fs::write(&p, &name).unwrap();
        want.insert(name);
    };
    add(b"\xff\xfe not utf-8".to_vec());
    add(b"line\nbreak".to_vec());
    add(b" ".to_vec());
    add(b"...".to_vec());
    add(b"-rf".to_vec());
    add("k\u{f6}nig \u{1f600}".as_bytes().to_vec());
    add((1u8..=255).filter(|&b| b != b'/' && b != b'.').collect());
    let check = |v: &Volume, when: &str| {
        let got: BTreeSet<Vec<u8>> = fs::read_dir(&v.mnt)
            .unwrap()
            .map(|e| e.unwrap().file_name().as_bytes().to_vec())
            .collect();
        assert_eq!(got, want, "{when}");
        for name in &want {
            let p = v.mnt.join(OsStr::from_bytes(name));
            assert_eq!(&fs::read(&p).unwrap(), name, "{when}");
        }
    };
    check(&v, "before remount");
    v.remount();
    check(&v, "after remount");
}

#[test]
fn deep_directories_and_empty_files() {
    let mut v = Volume::local();
    v.mount();
    let mut p = v.mnt.clone();
    for i in 0..200 {
        p.push(format!("d{i}"));
    }
    fs::create_dir_all(&p).unwrap();
    fs::write(p.join("bottom"), b"deep").unwrap();
    File::create(v.path("empty")).unwrap();
    let f = OpenOptions::new()
        .write(true)
        .open(v.path("empty"))
        .unwrap();
    assert_eq!(f.write_at(b"", 1000).unwrap(), 0);
    drop(f);
    v.remount();
    assert_eq!(fs::read(p.join("bottom")).unwrap(), b"deep");
    assert_eq!(fs::metadata(v.path("empty")).unwrap().len(), 0);
    sh(&format!("rm -r '{}'", v.path("d0").display()));
    assert_eq!(names(&v.mnt), BTreeSet::from(["empty".to_string()]));
}

#[test]
fn directory_of_5000_entries() {
    let mut v = Volume::local();
    v.mount();
    let d = v.path("big");
    fs::create_dir(&d).unwrap();
    let mut want = BTreeSet::new();
    for i in 0..5000 {
        let name = format!("entry-{i:05}-{}", "x".repeat(i % 60));
        if i % 7 == 0 {
            fs::create_dir(d.join(&name)).unwrap();
        } else {
            File::create(d.join(&name)).unwrap();
        }
        want.insert(name);
    }
    let check = |when: &str| {
        let mut seen = BTreeSet::new();
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            let idx: usize = name[6..11].parse().unwrap();
            assert_eq!(
                e.file_type().unwrap().is_dir(),
                idx % 7 == 0,
                "{when}: type of {name}"
            );
            assert!(seen.insert(name.clone()), "{when}: {name} listed twice");
        }
        assert_eq!(seen.len(), 5000, "{when}");
        assert!(seen == want, "{when}: names differ");
        let count = sh(&format!("ls -f '{}' | wc -l", d.display()));
        assert_eq!(count.trim(), "5002", "{when}: ls -f with . and ..");
    };
    check("before remount");
    v.remount();
    check("after remount");
}

#[test]
fn readdir_while_entries_change() {
    let mut v = Volume::local();
    v.mount();
    let d = v.path("busy");
    fs::create_dir(&d).unwrap();
    let stable: BTreeSet<String> = (0..300)
        .map(|i| format!("stable-{i:03}-{}", "s".repeat(20)))
        .collect();
    for n in &stable {
        File::create(d.join(n)).unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mutator = {
        let (d, stop) = (d.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // Names that sort before, between and after the stable ones.
                for prefix in ["a", "stable-150", "z"] {
                    let p = d.join(format!("{prefix}-tmp-{i}"));
                    File::create(&p).unwrap();
                    if i >= 3 {
                        fs::remove_file(d.join(format!("{prefix}-tmp-{}", i - 3))).unwrap();
                    }
                }
                i += 1;
            }
            i
        })
    };
    for pass in 0..150 {
        let mut seen = BTreeMap::<String, u32>::new();
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            *seen
                .entry(e.file_name().to_string_lossy().into_owned())
                .or_default() += 1;
        }
        for n in &stable {
            assert_eq!(
                seen.get(n).copied(),
                Some(1),
                "pass {pass}: {n} must be listed exactly once"
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    let rounds = mutator.join().unwrap();
    assert!(rounds >= 3, "mutator rounds {rounds}");
    assert_eq!(
        names(&d).iter().filter(|n| n.contains("-tmp-")).count(),
        9,
        "three of each kind left"
    );
}

#[test]
fn inode_numbers_stable_across_remount() {
    let mut v = Volume::local();
    v.mount();
    fs::create_dir_all(v.path("a/b")).unwrap();
    for i in 0..50 {
        fs::write(v.path(&format!("a/f{i}")), b"x").unwrap();
    }
    fs::hard_link(v.path("a/f1"), v.path("a/b/hard")).unwrap();
    std::os::unix::fs::symlink("f2", v.path("a/sym")).unwrap();
    let c = cpath(&v.path("a/fifo"));
    ok(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, "mkfifo");
    fs::rename(v.path("a/f3"), v.path("a/b/moved")).unwrap();

    let snapshot = |v: &Volume| -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        out.insert(".".into(), fs::metadata(&v.mnt).unwrap().ino());
        for dir in ["a", "a/b"] {
            out.insert(dir.into(), fs::metadata(v.path(dir)).unwrap().ino());
            for e in fs::read_dir(v.path(dir)).unwrap() {
                let e = e.unwrap();
                let name = format!("{dir}/{}", e.file_name().to_string_lossy());
                let ino = fs::symlink_metadata(e.path()).unwrap().ino();
                assert_eq!(e.ino(), ino, "readdir d_ino of {name} matches stat");
                out.insert(name, ino);
            }
        }
        out
    };
    let before = snapshot(&v);
    assert_eq!(before["a/f1"], before["a/b/hard"]);
    let distinct: BTreeSet<_> = before.values().collect();
    assert_eq!(distinct.len(), before.len() - 1, "one shared inode");
    v.remount();
    assert_eq!(snapshot(&v), before);
    // New files never reuse numbers of deleted ones.
    fs::remove_file(v.path("a/f10")).unwrap();
    fs::write(v.path("a/new"), b"").unwrap();
    let ino = fs::metadata(v.path("a/new")).unwrap().ino();
    assert!(!distinct.contains(&ino), "inode {ino} reused");
}
