//! O_APPEND, O_TRUNC and O_EXCL; truncation to shrink and regrow (also
//! of cold files, whose chunks live only in the store); and an unlinked
//! file that stays usable while open.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

use super::*;
use crate::harness::*;

#[test]
fn append_trunc_excl() {
    let mut v = Volume::local();
    v.mount();
    let p = v.path("f");
    fs::write(&p, b"0123456789").unwrap();

    // O_APPEND: every write goes to the end, whatever the file offset.
    let mut a = OpenOptions::new().append(true).open(&p).unwrap();
    a.write_all(b"a").unwrap();
    a.seek(SeekFrom::Start(0)).unwrap();
    a.write_all(b"b").unwrap();
    let mut b = OpenOptions::new().append(true).open(&p).unwrap();
    b.write_all(b"c").unwrap();
    a.write_all(b"d").unwrap();
    b.write_all(&[b'e'; 70000]).unwrap();
    a.write_all(b"f").unwrap();
    drop((a, b));
    let mut want = b"0123456789abcd".to_vec();
    want.extend_from_slice(&[b'e'; 70000]);
    want.push(b'f');
    assert!(fs::read(&p).unwrap() == want, "appends in order");

    // O_TRUNC empties the file; a reader holding it open sees the new size.
    let reader = File::open(&p).unwrap();
    let t = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&p)
        .unwrap();
    assert_eq!(t.metadata().unwrap().len(), 0);
    let mut buf = [0u8; 16];
    assert_eq!(reader.read_at(&mut buf, 0).unwrap(), 0, "reader sees EOF");
    t.write_all_at(b"new", 0).unwrap();
    drop((t, reader));
    assert_eq!(fs::read(&p).unwrap(), b"new");

    // O_EXCL: EEXIST on an existing file, a directory and a dangling symlink.
    let excl = |q: &Path| {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(q)
            .map(|_| ())
    };
    assert_eq!(err(excl(&p)), libc::EEXIST);
    fs::create_dir(v.path("d")).unwrap();
    assert_eq!(err(excl(&v.path("d"))), libc::EEXIST);
    std::os::unix::fs::symlink("nowhere", v.path("dangling")).unwrap();
    assert_eq!(err(excl(&v.path("dangling"))), libc::EEXIST);
    assert!(!v.path("nowhere").exists(), "O_EXCL does not follow");
    excl(&v.path("fresh")).unwrap();
    assert_eq!(fs::read(&p).unwrap(), b"new", "EEXIST left the file alone");

    v.remount();
    assert_eq!(fs::read(&p).unwrap(), b"new");
    assert_eq!(fs::metadata(v.path("fresh")).unwrap().len(), 0);
}

per_backend!(truncate_shrink_then_grow_reads_zeros: local, s3);
fn truncate_shrink_then_grow_reads_zeros(backend: Backend) {
    let mut v = Volume::new(backend);
    v.mount();
    let a = pattern(1, 200_000);

    // truncate(2) on a closed file.
    let p = v.path("t");
    fs::write(&p, &a).unwrap();
    let c = cpath(&p);
    ok(unsafe { libc::truncate(c.as_ptr(), 100_000) }, "truncate");
    assert_eq!(fs::metadata(&p).unwrap().len(), 100_000);
    ok(
        unsafe { libc::truncate(c.as_ptr(), 300_000) },
        "truncate up",
    );

    // ftruncate(2) on an open file with unflushed writes; then a write
    // past the end leaves a gap.
    let q = v.path("ft");
    let f = create_rw(&q);
    f.write_all_at(&a, 0).unwrap();
    f.set_len(70_000).unwrap();
    f.set_len(150_000).unwrap();
    f.write_all_at(b"end", 180_000).unwrap();
    f.set_len(65_000).unwrap();
    f.set_len(66_000).unwrap();
    let mut got = vec![0u8; 66_000];
    f.read_exact_at(&mut got, 0).unwrap();
    let mut want_q = a[..65_000].to_vec();
    want_q.resize(66_000, 0);
    assert!(got == want_q, "read through the open fd");
    drop(f);

    let mut want_p = a[..100_000].to_vec();
    want_p.resize(300_000, 0);
    assert_eq!((want_p.len(), want_q.len()), (300_000, 66_000));
    for round in ["before remount", "after remount"] {
        assert_bytes(&fs::read(&p).unwrap(), &want_p, &format!("{round} of t"));
        assert_bytes(&fs::read(&q).unwrap(), &want_q, &format!("{round} of ft"));
        v.remount();
    }

    // On a cold file (chunks only in the store): cut inside a chunk, grow
    // back, and write past the end.
    let c = cpath(&p);
    ok(
        unsafe { libc::truncate(c.as_ptr(), 30_000) },
        "truncate cold",
    );
    ok(
        unsafe { libc::truncate(c.as_ptr(), 200_000) },
        "truncate cold up",
    );
    OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .write_all_at(b"x", 250_000)
        .unwrap();
    let mut want = a[..30_000].to_vec();
    want.resize(250_001, 0);
    want[250_000] = b'x';
    for round in ["cold, before remount", "cold, after remount"] {
        assert_bytes(&fs::read(&p).unwrap(), &want, round);
        v.remount();
    }
}

/// Truncation through one handle discards data written (and still
/// buffered) through another: nothing stale comes back.
#[test]
fn truncate_discards_other_handles_buffered_data() {
    let mut v = Volume::local();
    v.mount();
    let p = v.path("f");
    let a = create_rw(&p);
    a.write_all_at(&pattern(13, 150_000), 0).unwrap();
    // O_TRUNC through a second handle while the first stays open.
    drop(
        OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&p)
            .unwrap(),
    );
    a.write_all_at(b"after", 200_000).unwrap();
    // And ftruncate through a third, then regrow through the first.
    a.write_all_at(&pattern(14, 10_000), 300_000).unwrap();
    OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(250_000)
        .unwrap();
    a.set_len(320_000).unwrap();
    let mut want = vec![0u8; 320_000];
    want[200_000..200_005].copy_from_slice(b"after");
    let mut got = vec![0u8; 320_000];
    a.read_exact_at(&mut got, 0).unwrap();
    assert_bytes(&got, &want, "through the open handle");
    drop(a);
    for round in ["before remount", "after remount"] {
        assert_bytes(&fs::read(&p).unwrap(), &want, round);
        v.remount();
    }
}

#[test]
fn unlinked_open_file_stays_usable() {
    let mut v = Volume::local();
    v.mount();
    let p = v.path("victim");
    let first = pattern(3, 150_000);
    fs::write(&p, &first).unwrap();
    let f = OpenOptions::new().read(true).write(true).open(&p).unwrap();
    fs::remove_file(&p).unwrap();
    assert!(!names(&v.mnt).contains("victim"), "gone from the listing");
    assert_eq!(err(fs::metadata(&p)), libc::ENOENT);
    assert_eq!(f.metadata().unwrap().nlink(), 0);

    let mut buf = vec![0u8; first.len()];
    f.read_exact_at(&mut buf, 0).unwrap();
    assert!(buf == first, "readable after unlink");
    f.write_all_at(b"still writable", 140_000).unwrap();
    f.write_all_at(b"and growing", 300_000).unwrap();
    f.sync_all().unwrap();
    let mut got = vec![0u8; 14];
    f.read_exact_at(&mut got, 140_000).unwrap();
    assert_eq!(got, b"still writable");
    assert_eq!(f.metadata().unwrap().len(), 300_011);

    // Attributes of the unlinked file still change through the fd.
    ok(unsafe { libc::fchmod(f.as_raw_fd(), 0o600) }, "fchmod");
    let times = [ts(5, 6), ts(7, 8)];
    ok(
        unsafe { libc::futimens(f.as_raw_fd(), times.as_ptr()) },
        "futimens",
    );
    let m = f.metadata().unwrap();
    assert_eq!(m.mode() & 0o7777, 0o600);
    assert_eq!((m.mtime(), m.mtime_nsec()), (7, 8));
    // A new file under the old name is a different file.
    fs::write(&p, b"replacement").unwrap();
    let mut got = vec![0u8; 11];
    f.read_exact_at(&mut got, 300_000).unwrap();
    assert_eq!(got, b"and growing");
    assert_ne!(fs::metadata(&p).unwrap().ino(), f.metadata().unwrap().ino());
    drop(f);
    v.remount();
    assert_eq!(fs::read(&p).unwrap(), b"replacement");
    assert_eq!(names(&v.mnt), BTreeSet::from(["victim".to_string()]));
}
