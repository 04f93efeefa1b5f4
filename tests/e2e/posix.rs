//! POSIX behaviour through a real mount, as ext4 behaves (issue 2, scope 6):
//! files, directories, renames, links, special files, attributes, xattrs,
//! statfs, fsync, fallocate, lseek, copy_file_range, mmap, locks.
//!
//! Every check goes through the kernel: std::fs, std::os::unix and raw
//! libc calls on paths under the mountpoint.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{
    DirEntryExt, FileExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt,
};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sha2::{Digest, Sha256};

use crate::harness::*;

const CHUNK: u64 = 64 * 1024;

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

fn cstr(s: &str) -> CString {
    CString::new(s).unwrap()
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap()
}

/// The errno of a call that must fail.
fn err<T: std::fmt::Debug>(r: std::io::Result<T>) -> i32 {
    r.expect_err("call must fail").raw_os_error().unwrap()
}

/// Checks a libc return value: 0 (or any non-negative) is success.
fn ok(ret: libc::c_int, what: &str) {
    assert!(
        ret >= 0,
        "{what}: {}",
        std::io::Error::from_raw_os_error(errno())
    );
}

/// The errno of a libc call that must fail.
fn fails(ret: libc::c_int, what: &str) -> i32 {
    assert!(ret < 0, "{what} must fail, returned {ret}");
    errno()
}

/// Deterministic pseudo-random bytes (xorshift64*), so failures replay.
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        out.extend_from_slice(&s.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn lcg(seed: u64) -> impl FnMut(u64) -> u64 {
    let mut s = seed;
    move |bound| {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (s >> 33) % bound
    }
}

fn names(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

fn lseek(f: &File, off: i64, whence: libc::c_int) -> Result<i64, i32> {
    let r = unsafe { libc::lseek(f.as_raw_fd(), off, whence) };
    if r < 0 { Err(errno()) } else { Ok(r) }
}

fn fallocate(f: &File, mode: libc::c_int, off: u64, len: u64) -> Result<(), i32> {
    let r = unsafe { libc::fallocate(f.as_raw_fd(), mode, off as i64, len as i64) };
    if r < 0 { Err(errno()) } else { Ok(()) }
}

fn renameat2(from: &Path, to: &Path, flags: libc::c_uint) -> Result<(), i32> {
    let (a, b) = (cpath(from), cpath(to));
    let r = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            flags,
        )
    };
    if r < 0 { Err(errno()) } else { Ok(()) }
}

/// Runs `f` in a forked child and returns its exit code. `f` must only
/// make plain libc calls (no allocation, no locks): the parent has threads.
fn in_child(f: impl FnOnce() -> i32) -> i32 {
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", errno());
    if pid == 0 {
        let code = f();
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(libc::WIFEXITED(status), "child status {status:#x}");
    libc::WEXITSTATUS(status)
}

/// Random writes (some spanning chunks) each followed by a random read,
/// checked against an in-memory model of the file.
fn random_ops(
    f: &File,
    model: &mut Vec<u8>,
    rng: &mut impl FnMut(u64) -> u64,
    ops: std::ops::Range<u64>,
) {
    for i in ops {
        // Offsets up to 5 chunks, lengths from 1 byte to past a chunk.
        let off = rng(5 * CHUNK) as usize;
        let len = 1 + rng(if i % 10 == 0 { 3 * CHUNK } else { 5000 }) as usize;
        let data = pattern(i, len);
        f.write_all_at(&data, off as u64).unwrap();
        if model.len() < off + len {
            model.resize(off + len, 0);
        }
        model[off..off + len].copy_from_slice(&data);
        let roff = rng(model.len() as u64) as usize;
        let rlen = (1 + rng(2 * CHUNK) as usize).min(model.len() - roff);
        let mut buf = vec![0u8; rlen];
        f.read_exact_at(&mut buf, roff as u64).unwrap();
        assert!(
            buf == model[roff..roff + rlen],
            "op {i}: read {roff}+{rlen}"
        );
        // Now and then, cut the file somewhere inside a chunk.
        if i % 37 == 0 {
            let to = rng(model.len() as u64);
            f.set_len(to).unwrap();
            model.truncate(to as usize);
        }
    }
    assert_eq!(f.metadata().unwrap().len(), model.len() as u64);
}

#[test]
fn random_offset_writes_match_a_model() {
    let mut v = Volume::new();
    v.mount();
    let p = v.path("random");
    let rw = || OpenOptions::new().read(true).write(true).open(&p).unwrap();
    File::create(&p).unwrap();
    let mut model: Vec<u8> = Vec::new();
    let mut rng = lcg(7);
    random_ops(&rw(), &mut model, &mut rng, 0..300);
    assert!(fs::read(&p).unwrap() == model, "whole file before remount");
    v.remount();
    assert!(fs::read(&p).unwrap() == model, "whole file after remount");
    // Again on a cold file: every partial write is a read-modify-write of
    // a chunk that lives only in the store.
    random_ops(&rw(), &mut model, &mut rng, 300..500);
    assert!(fs::read(&p).unwrap() == model, "second round");
    v.remount();
    assert!(fs::read(&p).unwrap() == model, "second round after remount");
}

#[test]
fn offsets_beyond_4_gib() {
    let mut v = Volume::new();
    v.mount();
    let p = v.path("far");
    let f = File::create(&p).unwrap();
    let (g5, t1) = (5u64 << 30, 1u64 << 40);
    f.write_all_at(b"five GiB", g5 + 3).unwrap();
    f.write_all_at(b"one TiB", t1 - 3).unwrap();
    drop(f);
    for round in ["before remount", "after remount"] {
        let f = File::open(&p).unwrap();
        assert_eq!(f.metadata().unwrap().len(), t1 + 4, "{round}");
        let mut buf = [0u8; 8];
        f.read_exact_at(&mut buf, g5 + 3).unwrap();
        assert_eq!(&buf, b"five GiB", "{round}");
        let mut buf = [0u8; 7];
        f.read_exact_at(&mut buf, t1 - 3).unwrap();
        assert_eq!(&buf, b"one TiB", "{round}");
        let mut buf = [1u8; 100];
        f.read_exact_at(&mut buf, 4 << 30).unwrap();
        assert_eq!(buf, [0u8; 100], "{round}: hole at 4 GiB");
        let c = CHUNK as i64;
        assert_eq!(lseek(&f, 0, libc::SEEK_DATA), Ok(g5 as i64), "{round}");
        assert_eq!(
            lseek(&f, g5 as i64, libc::SEEK_HOLE),
            Ok(g5 as i64 + c),
            "{round}"
        );
        assert_eq!(
            lseek(&f, g5 as i64 + c, libc::SEEK_DATA),
            Ok((t1 - CHUNK) as i64),
            "{round}"
        );
        assert!(f.metadata().unwrap().blocks() * 512 < 1 << 20, "{round}");
        drop(f);
        v.remount();
    }
    // Shrinking back below 4 GiB keeps the first bytes only.
    let f = OpenOptions::new().write(true).open(&p).unwrap();
    f.set_len(g5 + 7).unwrap();
    drop(f);
    v.remount();
    let f = File::open(&p).unwrap();
    assert_eq!(f.metadata().unwrap().len(), g5 + 7);
    let mut buf = [0u8; 8];
    assert_eq!(f.read_at(&mut buf, g5 + 3).unwrap(), 4);
    assert_eq!(&buf[..4], b"five");
}

#[test]
fn o_direct_reads_and_writes() {
    let mut v = Volume::new();
    v.mount();
    let p = v.path("direct");
    // O_DIRECT wants aligned buffers: carve one out of a larger Vec.
    let mut raw = vec![0u8; 3 * 4096 + 4096];
    let start = raw.as_ptr().align_offset(4096);
    let data = pattern(11, 3 * 4096);
    raw[start..start + 3 * 4096].copy_from_slice(&data);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(&p)
        .unwrap();
    f.write_all_at(&raw[start..start + 3 * 4096], 4096).unwrap();
    let mut back = vec![0u8; 3 * 4096 + 4096];
    let bstart = back.as_ptr().align_offset(4096);
    f.read_exact_at(&mut back[bstart..bstart + 3 * 4096], 4096)
        .unwrap();
    assert!(back[bstart..bstart + 3 * 4096] == data[..]);
    drop(f);
    let mut want = vec![0u8; 4096];
    want.extend_from_slice(&data);
    assert!(
        fs::read(&p).unwrap() == want,
        "buffered read after O_DIRECT write"
    );
    v.remount();
    assert!(fs::read(&p).unwrap() == want, "after remount");
}

#[test]
fn sparse_files_read_zeros_in_holes() {
    let mut v = Volume::new();
    v.mount();
    let p = v.path("sparse");
    let f = File::create(&p).unwrap();
    f.write_all_at(b"head", 0).unwrap();
    f.write_all_at(b"tail", 10 << 20).unwrap();
    drop(f);
    for round in 0..2 {
        let data = fs::read(&p).unwrap();
        assert_eq!(data.len(), (10 << 20) + 4, "round {round}");
        assert_eq!(&data[..4], b"head");
        assert_eq!(&data[10 << 20..], b"tail");
        assert!(
            data[4..10 << 20].iter().all(|&b| b == 0),
            "round {round}: the hole reads as zeros"
        );
        let blocks = fs::metadata(&p).unwrap().blocks();
        assert!(
            blocks * 512 < 1 << 20,
            "round {round}: a 10 MiB sparse file with 8 bytes of data allocates {blocks} blocks"
        );
        v.remount();
    }
}

#[test]
fn dense_files_count_their_blocks() {
    let mut v = Volume::new();
    v.mount();
    fs::write(v.path("dense"), pattern(12, 1 << 20)).unwrap();
    for round in ["before remount", "after remount"] {
        let blocks = fs::metadata(v.path("dense")).unwrap().blocks();
        assert!(
            blocks * 512 >= 1 << 20,
            "{round}: a 1 MiB file reports {blocks} blocks"
        );
        v.remount();
    }
}

#[test]
fn append_trunc_excl() {
    let mut v = Volume::new();
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

#[test]
fn truncate_shrink_then_grow_reads_zeros() {
    let mut v = Volume::new();
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
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&q)
        .unwrap();
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
    for round in ["before remount", "after remount"] {
        let got = fs::read(&p).unwrap();
        assert_eq!(got.len(), 300_000, "{round}");
        let bad = got.iter().zip(&want_p).position(|(x, y)| x != y);
        assert_eq!(bad, None, "{round}: first wrong byte of t");
        let got = fs::read(&q).unwrap();
        assert_eq!(got.len(), 66_000, "{round}");
        let bad = got.iter().zip(&want_q).position(|(x, y)| x != y);
        assert_eq!(bad, None, "{round}: first wrong byte of ft");
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
        let got = fs::read(&p).unwrap();
        assert_eq!(got.len(), want.len(), "{round}");
        let bad = got.iter().zip(&want).position(|(x, y)| x != y);
        assert_eq!(bad, None, "{round}: first wrong byte");
        v.remount();
    }
}

/// Truncation through one handle discards data written (and still
/// buffered) through another: nothing stale comes back.
#[test]
fn truncate_discards_other_handles_buffered_data() {
    let mut v = Volume::new();
    v.mount();
    let p = v.path("f");
    let a = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&p)
        .unwrap();
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
    let bad = got.iter().zip(&want).position(|(x, y)| x != y);
    assert_eq!(bad, None, "through the open handle: first wrong byte");
    drop(a);
    for round in ["before remount", "after remount"] {
        let got = fs::read(&p).unwrap();
        assert_eq!(got.len(), want.len(), "{round}");
        let bad = got.iter().zip(&want).position(|(x, y)| x != y);
        assert_eq!(bad, None, "{round}: first wrong byte");
        v.remount();
    }
}

#[test]
fn unlinked_open_file_stays_usable() {
    let mut v = Volume::new();
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

#[test]
fn mkdir_rmdir() {
    let mut v = Volume::new();
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
    let mut v = Volume::new();
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
    let mut v = Volume::new();
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
    let mut v = Volume::new();
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
fn rename_files() {
    let mut v = Volume::new();
    v.mount();
    let (a, b) = (v.path("a"), v.path("b"));
    fs::write(&a, b"new contents").unwrap();
    fs::write(&b, b"old contents").unwrap();
    let a_ino = fs::metadata(&a).unwrap().ino();
    let old_target = File::open(&b).unwrap();

    fs::rename(&a, &b).unwrap();
    assert_eq!(err(fs::metadata(&a)), libc::ENOENT);
    assert_eq!(fs::read(&b).unwrap(), b"new contents");
    assert_eq!(fs::metadata(&b).unwrap().ino(), a_ino, "the inode moved");
    let mut s = String::new();
    (&old_target).read_to_string(&mut s).unwrap();
    assert_eq!(s, "old contents", "the replaced file lives on while open");
    drop(old_target);

    // A file renamed while open keeps its handle; writes land under the
    // new name.
    let open = OpenOptions::new().write(true).open(&b).unwrap();
    fs::rename(&b, v.path("b-renamed")).unwrap();
    open.write_all_at(b"NEW", 0).unwrap();
    drop(open);
    assert_eq!(fs::read(v.path("b-renamed")).unwrap(), b"NEW contents");
    fs::rename(v.path("b-renamed"), &b).unwrap();
    // Renaming onto itself, or onto a hard link of itself, is a no-op.
    fs::rename(&b, &b).unwrap();
    fs::hard_link(&b, v.path("b2")).unwrap();
    fs::rename(&b, v.path("b2")).unwrap();
    assert!(b.exists() && v.path("b2").exists());

    // Into a directory, and type mismatches.
    fs::create_dir(v.path("dir")).unwrap();
    fs::rename(&b, v.path("dir/moved")).unwrap();
    assert_eq!(fs::read(v.path("dir/moved")).unwrap(), b"NEW contents");
    fs::create_dir(v.path("dir2")).unwrap();
    assert_eq!(
        err(fs::rename(v.path("dir/moved"), v.path("dir2"))),
        libc::EISDIR
    );
    assert_eq!(
        err(fs::rename(v.path("dir2"), v.path("dir/moved"))),
        libc::ENOTDIR
    );
    assert_eq!(
        err(fs::rename(v.path("missing"), v.path("x"))),
        libc::ENOENT
    );
    assert_eq!(
        err(fs::rename(v.path("b2"), v.path("nodir/x"))),
        libc::ENOENT
    );

    v.remount();
    assert_eq!(
        names(&v.mnt),
        BTreeSet::from(["b2", "dir", "dir2"].map(String::from))
    );
    assert_eq!(fs::read(v.path("dir/moved")).unwrap(), b"NEW contents");
    assert_eq!(fs::metadata(v.path("dir/moved")).unwrap().nlink(), 2);
}

#[test]
fn rename_directories() {
    let mut v = Volume::new();
    v.mount();
    fs::create_dir_all(v.path("src/inner")).unwrap();
    fs::write(v.path("src/inner/f"), b"payload").unwrap();
    fs::create_dir(v.path("empty")).unwrap();
    fs::create_dir(v.path("full")).unwrap();
    fs::write(v.path("full/x"), b"").unwrap();

    // Over an empty directory: replaced.
    fs::rename(v.path("src"), v.path("empty")).unwrap();
    assert_eq!(fs::read(v.path("empty/inner/f")).unwrap(), b"payload");
    assert!(!v.path("src").exists());
    // Over a non-empty directory: ENOTEMPTY (or EEXIST, which POSIX also allows).
    let e = err(fs::rename(v.path("empty"), v.path("full")));
    assert!(
        e == libc::ENOTEMPTY || e == libc::EEXIST,
        "dir over non-empty dir: {e}"
    );
    assert!(v.path("full/x").exists() && v.path("empty/inner/f").exists());
    // Into its own subtree: EINVAL.
    assert_eq!(
        err(fs::rename(v.path("empty"), v.path("empty/inner/loop"))),
        libc::EINVAL
    );
    assert_eq!(
        err(fs::rename(v.path("empty"), v.path("empty/loop"))),
        libc::EINVAL
    );

    // Moving a directory to another parent re-points its "..".
    fs::rename(v.path("empty/inner"), v.path("full/inner")).unwrap();
    let full_ino = fs::metadata(v.path("full")).unwrap().ino();
    assert_eq!(
        fs::metadata(v.path("full/inner/..")).unwrap().ino(),
        full_ino
    );

    v.remount();
    assert_eq!(fs::read(v.path("full/inner/f")).unwrap(), b"payload");
    assert_eq!(
        fs::metadata(v.path("full/inner/..")).unwrap().ino(),
        full_ino
    );
    assert_eq!(names(&v.path("empty")), BTreeSet::new());
    // The moved directory can be removed cleanly afterwards.
    fs::remove_file(v.path("full/inner/f")).unwrap();
    fs::remove_dir(v.path("full/inner")).unwrap();
    assert_eq!(names(&v.path("full")), BTreeSet::from(["x".to_string()]));
}

#[test]
fn renameat2_noreplace_and_exchange() {
    let mut v = Volume::new();
    v.mount();
    fs::write(v.path("a"), b"AAA").unwrap();
    fs::write(v.path("b"), b"BBBBBB").unwrap();
    fs::create_dir(v.path("d")).unwrap();
    fs::write(v.path("d/inside"), b"in d").unwrap();

    assert_eq!(
        renameat2(&v.path("a"), &v.path("b"), libc::RENAME_NOREPLACE),
        Err(libc::EEXIST)
    );
    assert_eq!(fs::read(v.path("a")).unwrap(), b"AAA");
    assert_eq!(fs::read(v.path("b")).unwrap(), b"BBBBBB");
    renameat2(&v.path("a"), &v.path("c"), libc::RENAME_NOREPLACE).unwrap();
    assert!(!v.path("a").exists());

    let (ib, ic) = (
        fs::metadata(v.path("b")).unwrap().ino(),
        fs::metadata(v.path("c")).unwrap().ino(),
    );
    renameat2(&v.path("b"), &v.path("c"), libc::RENAME_EXCHANGE).unwrap();
    assert_eq!(fs::read(v.path("b")).unwrap(), b"AAA");
    assert_eq!(fs::read(v.path("c")).unwrap(), b"BBBBBB");
    assert_eq!(fs::metadata(v.path("b")).unwrap().ino(), ic);
    assert_eq!(fs::metadata(v.path("c")).unwrap().ino(), ib);

    // A file and a directory in different parents swap places.
    renameat2(&v.path("b"), &v.path("d"), libc::RENAME_EXCHANGE).unwrap();
    assert_eq!(fs::read(v.path("d")).unwrap(), b"AAA");
    assert_eq!(fs::read(v.path("b/inside")).unwrap(), b"in d");
    renameat2(&v.path("c"), &v.path("b/inside"), libc::RENAME_EXCHANGE).unwrap();
    assert_eq!(fs::read(v.path("c")).unwrap(), b"in d");
    assert_eq!(fs::read(v.path("b/inside")).unwrap(), b"BBBBBB");
    // Two directories in different parents: each ".." follows.
    fs::create_dir_all(v.path("p/sub")).unwrap();
    renameat2(&v.path("b"), &v.path("p/sub"), libc::RENAME_EXCHANGE).unwrap();
    let ino = |rel: &str| fs::metadata(v.path(rel)).unwrap().ino();
    assert_eq!(ino("p/sub/.."), ino("p"));
    assert_eq!(ino("b/.."), ino("."));
    assert_eq!(fs::read(v.path("p/sub/inside")).unwrap(), b"BBBBBB");

    assert_eq!(
        renameat2(&v.path("c"), &v.path("w"), libc::RENAME_WHITEOUT),
        Err(libc::EINVAL),
        "RENAME_WHITEOUT is not supported"
    );
    assert!(v.path("c").exists() && !v.path("w").exists());
    assert_eq!(
        renameat2(&v.path("c"), &v.path("nothing"), libc::RENAME_EXCHANGE),
        Err(libc::ENOENT)
    );
    assert_eq!(
        renameat2(
            &v.path("c"),
            &v.path("d"),
            libc::RENAME_EXCHANGE | libc::RENAME_NOREPLACE
        ),
        Err(libc::EINVAL)
    );

    v.remount();
    assert_eq!(fs::read(v.path("c")).unwrap(), b"in d");
    assert_eq!(fs::read(v.path("d")).unwrap(), b"AAA");
    assert_eq!(fs::read(v.path("p/sub/inside")).unwrap(), b"BBBBBB");
    assert_eq!(
        fs::metadata(v.path("p/sub/..")).unwrap().ino(),
        fs::metadata(v.path("p")).unwrap().ino()
    );
    assert!(v.path("b").is_dir());
    assert_eq!(names(&v.path("b")), BTreeSet::new());
}

#[test]
fn hard_links() {
    let mut v = Volume::new();
    v.mount();
    fs::create_dir(v.path("d")).unwrap();
    let (a, b, c) = (v.path("a"), v.path("d/b"), v.path("d/c"));
    fs::write(&a, b"shared").unwrap();
    fs::hard_link(&a, &b).unwrap();
    fs::hard_link(&b, &c).unwrap();
    let m = fs::metadata(&a).unwrap();
    assert_eq!(m.nlink(), 3);
    assert_eq!(fs::metadata(&c).unwrap().ino(), m.ino());
    OpenOptions::new()
        .write(true)
        .open(&c)
        .unwrap()
        .write_all_at(b"SH", 0)
        .unwrap();
    assert_eq!(fs::read(&a).unwrap(), b"SHared");
    assert_eq!(err(fs::hard_link(&a, &b)), libc::EEXIST);
    assert_eq!(err(fs::hard_link(v.path("d"), v.path("dl"))), libc::EPERM);
    assert_eq!(
        err(fs::hard_link(v.path("none"), v.path("x"))),
        libc::ENOENT
    );

    v.remount();
    assert_eq!(fs::metadata(&b).unwrap().nlink(), 3);
    assert_eq!(fs::read(&b).unwrap(), b"SHared");
    fs::remove_file(&a).unwrap();
    assert_eq!(fs::metadata(&b).unwrap().nlink(), 2);
    fs::write(&c, b"via c").unwrap();
    assert_eq!(fs::read(&b).unwrap(), b"via c");
    v.remount();
    assert_eq!(fs::metadata(&c).unwrap().nlink(), 2);
    assert_eq!(fs::read(&b).unwrap(), b"via c");
    // Renaming another file over one of the links drops the count.
    fs::write(v.path("other"), b"other").unwrap();
    fs::rename(v.path("other"), &c).unwrap();
    assert_eq!(fs::metadata(&b).unwrap().nlink(), 1);
    assert_eq!(fs::read(&b).unwrap(), b"via c");
    v.remount();
    assert_eq!(fs::metadata(&b).unwrap().nlink(), 1);
    assert_eq!(fs::read(&c).unwrap(), b"other");
}

#[test]
fn symlinks() {
    let mut v = Volume::new();
    v.mount();
    fs::create_dir(v.path("d")).unwrap();
    fs::write(v.path("d/target"), b"pointed at").unwrap();
    std::os::unix::fs::symlink("d/target", v.path("rel")).unwrap();
    std::os::unix::fs::symlink(v.path("d"), v.path("abs")).unwrap();
    std::os::unix::fs::symlink("../nowhere", v.path("d/dangling")).unwrap();
    let long = "x/".repeat(1000) + "end";
    std::os::unix::fs::symlink(&long, v.path("long")).unwrap();
    assert_eq!(
        err(std::os::unix::fs::symlink("y", v.path("rel"))),
        libc::EEXIST
    );

    for round in ["before remount", "after remount"] {
        assert_eq!(
            fs::read_link(v.path("rel")).unwrap(),
            Path::new("d/target"),
            "{round}"
        );
        assert_eq!(fs::read_link(v.path("abs")).unwrap(), v.path("d"));
        assert_eq!(fs::read_link(v.path("long")).unwrap(), Path::new(&long));
        let l = fs::symlink_metadata(v.path("rel")).unwrap();
        assert!(l.file_type().is_symlink());
        assert_eq!(l.len(), "d/target".len() as u64, "{round}: lstat size");
        assert_eq!(l.mode() & 0o777, 0o777, "{round}: symlink mode");
        assert!(
            fs::metadata(v.path("rel")).unwrap().is_file(),
            "stat follows"
        );
        assert_eq!(fs::read(v.path("rel")).unwrap(), b"pointed at");
        assert_eq!(fs::read(v.path("abs/target")).unwrap(), b"pointed at");
        assert_eq!(err(fs::metadata(v.path("d/dangling"))), libc::ENOENT);
        assert!(fs::symlink_metadata(v.path("d/dangling")).is_ok());
        assert_eq!(err(fs::read_link(v.path("d/target"))), libc::EINVAL);
        v.remount();
    }
    // Writing through a symlink writes the target.
    fs::write(v.path("rel"), b"through").unwrap();
    assert_eq!(fs::read(v.path("d/target")).unwrap(), b"through");
    fs::remove_file(v.path("rel")).unwrap();
    assert!(v.path("d/target").exists());
}

#[test]
fn fifo_socket_and_device_nodes() {
    let mut v = Volume::new();
    v.mount();
    let fifo = v.path("fifo");
    let c = cpath(&fifo);
    ok(unsafe { libc::mkfifo(c.as_ptr(), 0o640) }, "mkfifo");
    assert!(fs::metadata(&fifo).unwrap().file_type().is_fifo());
    assert_eq!(fs::metadata(&fifo).unwrap().mode() & 0o7777, 0o640);
    // Data passes through the FIFO (the kernel's pipe, found via the mount).
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || fs::read(fifo).unwrap())
    };
    fs::write(&fifo, b"through the pipe").unwrap();
    assert_eq!(reader.join().unwrap(), b"through the pipe");

    let sock = v.path("sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    assert!(fs::metadata(&sock).unwrap().file_type().is_socket());
    let mut client = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    let (mut server, _) = listener.accept().unwrap();
    client.write_all(b"ping").unwrap();
    let mut buf = [0u8; 4];
    server.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ping");
    drop((client, server, listener));

    let dev = v.path("null");
    let c = cpath(&dev);
    ok(
        unsafe {
            libc::mknod(
                c.as_ptr(),
                libc::S_IFCHR | 0o600,
                libc::makedev(1, 3) as libc::dev_t,
            )
        },
        "mknod chr",
    );
    let blk = v.path("blk");
    let c = cpath(&blk);
    ok(
        unsafe {
            libc::mknod(
                c.as_ptr(),
                libc::S_IFBLK | 0o600,
                libc::makedev(7, 200) as libc::dev_t,
            )
        },
        "mknod blk",
    );
    let reg = v.path("reg");
    let c = cpath(&reg);
    ok(
        unsafe { libc::mknod(c.as_ptr(), libc::S_IFREG | 0o604, 0) },
        "mknod reg",
    );
    assert_eq!(
        fails(
            unsafe { libc::mknod(c.as_ptr(), libc::S_IFREG | 0o604, 0) },
            "mknod existing"
        ),
        libc::EEXIST
    );

    v.remount();
    let m = fs::metadata(&fifo).unwrap();
    assert!(m.file_type().is_fifo());
    assert_eq!(m.mode() & 0o7777, 0o640);
    assert!(fs::metadata(&sock).unwrap().file_type().is_socket());
    let m = fs::metadata(&dev).unwrap();
    assert!(m.file_type().is_char_device());
    assert_eq!(m.rdev(), libc::makedev(1, 3));
    let m = fs::metadata(&blk).unwrap();
    assert!(m.file_type().is_block_device());
    assert_eq!(m.rdev(), libc::makedev(7, 200));
    let m = fs::metadata(&reg).unwrap();
    assert!(m.is_file() && m.len() == 0 && m.mode() & 0o7777 == 0o604);
}

fn ts(sec: i64, nsec: i64) -> libc::timespec {
    libc::timespec {
        tv_sec: sec,
        tv_nsec: nsec,
    }
}

fn utimensat(p: &Path, atime: libc::timespec, mtime: libc::timespec, flags: i32) {
    let c = cpath(p);
    let times = [atime, mtime];
    ok(
        unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), flags) },
        "utimensat",
    );
}

fn times(p: &Path) -> [(i64, i64); 3] {
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

#[test]
fn chmod_chown_utimensat_survive_remount() {
    let mut v = Volume::new();
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
    let mut v = Volume::new();
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

#[test]
fn timestamps_before_1970_with_nanoseconds() {
    let mut v = Volume::new();
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
    let mut v = Volume::new();
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
    let mut v = Volume::new();
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

fn getxattr(p: &Path, name: &str) -> Result<Vec<u8>, i32> {
    let (c, n) = (cpath(p), cstr(name));
    let size = unsafe { libc::getxattr(c.as_ptr(), n.as_ptr(), std::ptr::null_mut(), 0) };
    if size < 0 {
        return Err(errno());
    }
    let mut buf = vec![0u8; size as usize];
    let got = unsafe { libc::getxattr(c.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if got < 0 {
        return Err(errno());
    }
    buf.truncate(got as usize);
    Ok(buf)
}

fn setxattr(p: &Path, name: &str, value: &[u8], flags: i32) -> Result<(), i32> {
    let (c, n) = (cpath(p), cstr(name));
    let r = unsafe {
        libc::setxattr(
            c.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            flags,
        )
    };
    if r < 0 { Err(errno()) } else { Ok(()) }
}

fn removexattr(p: &Path, name: &str) -> Result<(), i32> {
    let (c, n) = (cpath(p), cstr(name));
    let r = unsafe { libc::removexattr(c.as_ptr(), n.as_ptr()) };
    if r < 0 { Err(errno()) } else { Ok(()) }
}

fn listxattr(p: &Path) -> BTreeSet<String> {
    let c = cpath(p);
    let size = unsafe { libc::listxattr(c.as_ptr(), std::ptr::null_mut(), 0) };
    assert!(size >= 0, "listxattr size: {}", errno());
    let mut buf = vec![0u8; size as usize];
    let got = unsafe { libc::listxattr(c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    assert!(got >= 0, "listxattr: {}", errno());
    buf.truncate(got as usize);
    buf.split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8(s.to_vec()).unwrap())
        .collect()
}

#[test]
fn xattrs_user_trusted_security() {
    let mut v = Volume::new();
    v.mount();
    let f = v.path("f");
    fs::write(&f, b"data").unwrap();
    fs::create_dir(v.path("d")).unwrap();
    let d = v.path("d");

    assert_eq!(getxattr(&f, "user.missing"), Err(libc::ENODATA));
    assert_eq!(removexattr(&f, "user.missing"), Err(libc::ENODATA));
    assert_eq!(
        setxattr(&f, "user.a", b"x", libc::XATTR_REPLACE),
        Err(libc::ENODATA)
    );
    setxattr(&f, "user.a", b"first", libc::XATTR_CREATE).unwrap();
    assert_eq!(
        setxattr(&f, "user.a", b"again", libc::XATTR_CREATE),
        Err(libc::EEXIST)
    );
    setxattr(&f, "user.a", b"second", libc::XATTR_REPLACE).unwrap();
    assert_eq!(getxattr(&f, "user.a").unwrap(), b"second");
    let binary: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
    setxattr(&f, "user.binary", &binary, 0).unwrap();
    setxattr(&f, "user.empty", b"", 0).unwrap();
    setxattr(&f, "trusted.t", b"root only", 0).unwrap();
    setxattr(&f, "security.s", b"label", 0).unwrap();
    setxattr(&d, "user.on-dir", b"dir value", 0).unwrap();
    // Namespaces sealedfs does not keep.
    assert_eq!(setxattr(&f, "system.foo", b"x", 0), Err(libc::EOPNOTSUPP));
    assert_eq!(setxattr(&f, "other.foo", b"x", 0), Err(libc::EOPNOTSUPP));
    assert_eq!(getxattr(&f, "other.foo"), Err(libc::EOPNOTSUPP));

    // A short buffer: ERANGE.
    let (c, n) = (cpath(&f), cstr("user.a"));
    let mut small = [0u8; 3];
    let r = unsafe {
        libc::getxattr(
            c.as_ptr(),
            n.as_ptr(),
            small.as_mut_ptr().cast(),
            small.len(),
        )
    };
    assert_eq!(r, -1);
    assert_eq!(errno(), libc::ERANGE);
    let r = unsafe { libc::listxattr(c.as_ptr(), small.as_mut_ptr().cast(), small.len()) };
    assert_eq!(r, -1);
    assert_eq!(errno(), libc::ERANGE);

    let want: BTreeSet<String> = [
        "user.a",
        "user.binary",
        "user.empty",
        "trusted.t",
        "security.s",
    ]
    .map(String::from)
    .into();
    for round in ["before remount", "after remount"] {
        assert_eq!(listxattr(&f), want, "{round}");
        assert_eq!(getxattr(&f, "user.a").unwrap(), b"second", "{round}");
        assert!(getxattr(&f, "user.binary").unwrap() == binary, "{round}");
        assert_eq!(getxattr(&f, "user.empty").unwrap(), b"", "{round}");
        assert_eq!(getxattr(&f, "trusted.t").unwrap(), b"root only");
        assert_eq!(getxattr(&f, "security.s").unwrap(), b"label");
        assert_eq!(getxattr(&d, "user.on-dir").unwrap(), b"dir value");
        v.remount();
    }

    let c0 = times(&f)[2];
    removexattr(&f, "user.a").unwrap();
    assert!(times(&f)[2] >= c0, "removexattr sets ctime");
    assert_eq!(getxattr(&f, "user.a"), Err(libc::ENODATA));
    removexattr(&f, "trusted.t").unwrap();
    removexattr(&f, "security.s").unwrap();
    assert_eq!(
        listxattr(&f),
        BTreeSet::from(["user.binary", "user.empty"].map(String::from))
    );
    v.remount();
    assert_eq!(
        listxattr(&f),
        BTreeSet::from(["user.binary", "user.empty"].map(String::from))
    );
    assert_eq!(getxattr(&f, "security.s"), Err(libc::ENODATA));
    // Unlinking the file takes its xattrs with it; a new file has none.
    fs::remove_file(&f).unwrap();
    fs::write(&f, b"").unwrap();
    assert_eq!(listxattr(&f), BTreeSet::new());
}

#[test]
fn statfs_and_name_length() {
    let mut v = Volume::new();
    v.mount();
    let c = cpath(&v.mnt);
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    ok(unsafe { libc::statfs(c.as_ptr(), &mut st) }, "statfs");
    assert!(
        st.f_bsize > 0 && (st.f_bsize & (st.f_bsize - 1)) == 0,
        "f_bsize {}",
        st.f_bsize
    );
    assert_eq!(st.f_bsize, 4096, "docs/SEMANTICS.md: block size 4096");
    assert_eq!(st.f_namelen, 255);
    assert!(st.f_blocks > 0 && st.f_bfree <= st.f_blocks && st.f_bavail <= st.f_bfree);
    let mut vst: libc::statvfs = unsafe { std::mem::zeroed() };
    ok(unsafe { libc::statvfs(c.as_ptr(), &mut vst) }, "statvfs");
    assert_eq!(vst.f_namemax, 255);

    let name255 = "n".repeat(255);
    fs::write(v.path(&name255), b"long name").unwrap();
    assert_eq!(
        err(fs::write(v.path(&"n".repeat(256)), b"")),
        libc::ENAMETOOLONG
    );
    assert_eq!(
        err(fs::create_dir(v.path(&"m".repeat(256)))),
        libc::ENAMETOOLONG
    );
    v.remount();
    assert_eq!(fs::read(v.path(&name255)).unwrap(), b"long name");
}

#[test]
fn fsync_fdatasync_fsyncdir_are_durable() {
    let mut v = Volume::new();
    v.mount();
    let f = File::create(v.path("synced")).unwrap();
    f.write_all_at(b"fsync", 0).unwrap();
    f.sync_all().unwrap();
    let g = File::create(v.path("datasynced")).unwrap();
    g.write_all_at(&pattern(9, 100_000), 0).unwrap();
    g.sync_data().unwrap();
    fs::create_dir(v.path("d")).unwrap();
    File::create(v.path("d/entry")).unwrap();
    fs::rename(v.path("d/entry"), v.path("d/renamed")).unwrap();
    let dir = File::open(v.path("d")).unwrap();
    dir.sync_all().unwrap();
    dir.sync_data().unwrap();
    File::open(&v.mnt).unwrap().sync_all().unwrap();
    // The returns were real: a crash right now loses none of it.
    v.kill();
    drop((f, g, dir));
    v.mount();
    assert_eq!(fs::read(v.path("synced")).unwrap(), b"fsync");
    assert!(fs::read(v.path("datasynced")).unwrap() == pattern(9, 100_000));
    assert_eq!(names(&v.path("d")), BTreeSet::from(["renamed".to_string()]));
}

#[test]
fn fallocate_modes() {
    let mut v = Volume::new();
    v.mount();
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(v.path("alloc"))
        .unwrap();
    // Plain: extends the size, reads zeros.
    fallocate(&f, 0, 0, 1 << 20).unwrap();
    assert_eq!(f.metadata().unwrap().len(), 1 << 20);
    // KEEP_SIZE beyond the end: size unchanged.
    fallocate(&f, libc::FALLOC_FL_KEEP_SIZE, 1 << 20, 1 << 20).unwrap();
    assert_eq!(f.metadata().unwrap().len(), 1 << 20);
    // Inside the file, plain mode does not change data.
    f.write_all_at(b"keep me", 5000).unwrap();
    fallocate(&f, 0, 0, 8192).unwrap();
    let mut buf = [0u8; 7];
    f.read_exact_at(&mut buf, 5000).unwrap();
    assert_eq!(&buf, b"keep me");

    let g = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(v.path("punch"))
        .unwrap();
    let data = pattern(4, 8 * CHUNK as usize);
    g.write_all_at(&data, 0).unwrap();
    let mut want = data.clone();
    // Punch two whole chunks [128K, 256K) and an unaligned range.
    let punch = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
    fallocate(&g, punch, 2 * CHUNK, 2 * CHUNK).unwrap();
    want[2 * CHUNK as usize..4 * CHUNK as usize].fill(0);
    fallocate(&g, punch, 300_000, 10_000).unwrap();
    want[300_000..310_000].fill(0);
    // Zero an unaligned range, and beyond the end (extends without KEEP_SIZE).
    fallocate(&g, libc::FALLOC_FL_ZERO_RANGE, 400_000, 50_000).unwrap();
    want[400_000..450_000].fill(0);
    fallocate(
        &g,
        libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE,
        500_000,
        100_000,
    )
    .unwrap();
    want[500_000..].fill(0);
    assert_eq!(g.metadata().unwrap().len(), 8 * CHUNK, "KEEP_SIZE");
    fallocate(&g, libc::FALLOC_FL_ZERO_RANGE, 8 * CHUNK, 1000).unwrap();
    want.resize(8 * CHUNK as usize + 1000, 0);
    assert_eq!(g.metadata().unwrap().len(), 8 * CHUNK + 1000);
    // PUNCH_HOLE requires KEEP_SIZE; unsupported modes are EOPNOTSUPP.
    assert_eq!(
        fallocate(&g, libc::FALLOC_FL_PUNCH_HOLE, 0, 100),
        Err(libc::EOPNOTSUPP)
    );
    assert_eq!(
        fallocate(&g, libc::FALLOC_FL_COLLAPSE_RANGE, 0, CHUNK),
        Err(libc::EOPNOTSUPP)
    );
    assert_eq!(
        fallocate(&g, libc::FALLOC_FL_INSERT_RANGE, 0, CHUNK),
        Err(libc::EOPNOTSUPP)
    );
    // No ENOSYS along the way: the kernel would have turned fallocate off.
    fallocate(&g, 0, 0, 4096).unwrap();
    fallocate(&g, punch, 7 * CHUNK, CHUNK).unwrap();
    want[7 * CHUNK as usize..8 * CHUNK as usize].fill(0);
    drop((f, g));

    for round in ["before remount", "after remount"] {
        let got = fs::read(v.path("alloc")).unwrap();
        assert_eq!(got.len(), 1 << 20, "{round}");
        assert_eq!(&got[5000..5007], b"keep me");
        assert_eq!(got.iter().filter(|&&b| b != 0).count(), 7, "{round}");
        let got = fs::read(v.path("punch")).unwrap();
        assert_eq!(got.len(), want.len(), "{round}");
        let bad = got.iter().zip(&want).position(|(a, b)| a != b);
        assert_eq!(bad, None, "{round}: first wrong byte");
        let g = File::open(v.path("punch")).unwrap();
        assert_eq!(
            lseek(&g, 0, libc::SEEK_HOLE),
            Ok(2 * CHUNK as i64),
            "{round}"
        );
        assert_eq!(
            lseek(&g, 2 * CHUNK as i64, libc::SEEK_DATA),
            Ok(4 * CHUNK as i64),
            "{round}"
        );
        drop(g);
        v.remount();
    }
}

#[test]
fn lseek_data_and_hole() {
    let mut v = Volume::new();
    v.mount();
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(v.path("holes"))
        .unwrap();
    // Data in chunks 0 and 3, holes in 1..3 and after 4 (file ends in a hole).
    f.write_all_at(b"first", 0).unwrap();
    f.write_all_at(b"second", 3 * CHUNK + 10).unwrap();
    f.set_len(6 * CHUNK + 5).unwrap();
    let size = (6 * CHUNK + 5) as i64;
    let c = CHUNK as i64;
    let check = |f: &File, when: &str| {
        assert_eq!(lseek(f, 0, libc::SEEK_DATA), Ok(0), "{when}");
        assert_eq!(lseek(f, 100, libc::SEEK_DATA), Ok(100), "{when}");
        assert_eq!(lseek(f, 0, libc::SEEK_HOLE), Ok(c), "{when}");
        assert_eq!(lseek(f, c, libc::SEEK_DATA), Ok(3 * c), "{when}");
        assert_eq!(lseek(f, c + 7, libc::SEEK_HOLE), Ok(c + 7), "{when}");
        assert_eq!(lseek(f, 3 * c, libc::SEEK_HOLE), Ok(4 * c), "{when}");
        assert_eq!(lseek(f, 4 * c, libc::SEEK_DATA), Err(libc::ENXIO), "{when}");
        assert_eq!(lseek(f, size - 1, libc::SEEK_HOLE), Ok(size - 1), "{when}");
        assert_eq!(lseek(f, size, libc::SEEK_DATA), Err(libc::ENXIO), "{when}");
        assert_eq!(lseek(f, size, libc::SEEK_HOLE), Err(libc::ENXIO), "{when}");
        assert_eq!(lseek(f, -1, libc::SEEK_DATA), Err(libc::ENXIO), "{when}");
    };
    // Before anything is flushed, then from the store after a remount.
    check(&f, "unflushed");
    drop(f);
    v.remount();
    let f = File::open(v.path("holes")).unwrap();
    check(&f, "after remount");
    // A file that is all data has its only hole at the end.
    fs::write(v.path("dense"), pattern(2, 3 * CHUNK as usize + 1)).unwrap();
    let d = File::open(v.path("dense")).unwrap();
    assert_eq!(lseek(&d, 0, libc::SEEK_HOLE), Ok(3 * c + 1));
    assert_eq!(lseek(&d, 2 * c + 3, libc::SEEK_DATA), Ok(2 * c + 3));
    // An empty file has neither.
    let e = File::create(v.path("empty")).unwrap();
    assert_eq!(lseek(&e, 0, libc::SEEK_DATA), Err(libc::ENXIO));
    assert_eq!(lseek(&e, 0, libc::SEEK_HOLE), Err(libc::ENXIO));
}

#[test]
fn copy_file_range_between_files() {
    let mut v = Volume::new();
    v.mount();
    let src_data = pattern(5, 300_000);
    fs::write(v.path("src"), &src_data).unwrap();
    fs::write(v.path("dst"), b"0123456789").unwrap();
    let src = File::open(v.path("src")).unwrap();
    let dst = OpenOptions::new().write(true).open(v.path("dst")).unwrap();
    let copy = |off_in: i64, off_out: i64, len: usize| {
        let (mut i, mut o, mut left) = (off_in, off_out, len);
        while left > 0 {
            let n = unsafe {
                libc::copy_file_range(src.as_raw_fd(), &mut i, dst.as_raw_fd(), &mut o, left, 0)
            };
            assert!(n >= 0, "copy_file_range: {}", errno());
            assert!(n > 0, "copy_file_range: short at {i}");
            left -= n as usize;
        }
    };
    copy(1000, 5, 200_000);
    // Past the end of the destination: the gap is zeros.
    copy(250_000, 400_000, 50_000);
    // Past the end of the source: 0 bytes.
    let (mut i, mut o) = (300_000i64, 0i64);
    let n =
        unsafe { libc::copy_file_range(src.as_raw_fd(), &mut i, dst.as_raw_fd(), &mut o, 100, 0) };
    assert_eq!(n, 0, "copy from EOF");
    drop((src, dst));
    let mut want = b"01234".to_vec();
    want.extend_from_slice(&src_data[1000..201_000]);
    want.resize(400_000, 0);
    want.extend_from_slice(&src_data[250_000..]);
    for round in ["before remount", "after remount"] {
        let got = fs::read(v.path("dst")).unwrap();
        assert_eq!(got.len(), want.len(), "{round}");
        let bad = got.iter().zip(&want).position(|(a, b)| a != b);
        assert_eq!(bad, None, "{round}: first wrong byte");
        assert!(fs::read(v.path("src")).unwrap() == src_data);
        v.remount();
    }
}

#[test]
fn mmap_write_msync_read_back() {
    let mut v = Volume::new();
    v.mount();
    let len = 3 * CHUNK as usize + 100;
    let data = pattern(6, len);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(v.path("mapped"))
        .unwrap();
    f.set_len(len as u64).unwrap();
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        );
        assert_ne!(p, libc::MAP_FAILED, "mmap: {}", errno());
        std::ptr::copy_nonoverlapping(data.as_ptr(), p.cast::<u8>(), len);
        ok(libc::msync(p, len, libc::MS_SYNC), "msync");
        ok(libc::munmap(p, len), "munmap");
    }
    drop(f);
    assert!(
        fs::read(v.path("mapped")).unwrap() == data,
        "read after munmap"
    );

    // A second mapping modifies part of the file without msync; close
    // and unmount must still write it back.
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(v.path("mapped"))
        .unwrap();
    let mut want = data.clone();
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        );
        assert_ne!(p, libc::MAP_FAILED, "mmap: {}", errno());
        let s = std::slice::from_raw_parts_mut(p.cast::<u8>(), len);
        assert!(s[..] == data[..], "the mapping shows the file");
        s[CHUNK as usize - 2..CHUNK as usize + 2].copy_from_slice(b"MMAP");
        ok(libc::munmap(p, len), "munmap");
    }
    want[CHUNK as usize - 2..CHUNK as usize + 2].copy_from_slice(b"MMAP");
    drop(f);
    v.remount();
    assert!(fs::read(v.path("mapped")).unwrap() == want, "after remount");

    // A private read-only mapping of the cold file matches read().
    let f = File::open(v.path("mapped")).unwrap();
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_PRIVATE,
            f.as_raw_fd(),
            0,
        );
        assert_ne!(p, libc::MAP_FAILED, "mmap: {}", errno());
        let s = std::slice::from_raw_parts(p.cast::<u8>(), len);
        assert!(s[..] == want[..], "private mapping after remount");
        ok(libc::munmap(p, len), "munmap");
    }
}

#[test]
fn inode_numbers_stable_across_remount() {
    let mut v = Volume::new();
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

#[test]
fn large_file_round_trip() {
    let mut v = Volume::new();
    v.mount();
    const MIB: usize = 1 << 20;
    const N: u64 = 200;
    let p = v.path("large");
    let mut f = File::create(&p).unwrap();
    let mut hash = Sha256::new();
    for i in 0..N {
        let block = pattern(1000 + i, MIB);
        hash.update(&block);
        f.write_all(&block).unwrap();
    }
    f.sync_all().unwrap();
    drop(f);
    let want = format!("{:x}", hash.finalize());
    assert_eq!(fs::metadata(&p).unwrap().len(), N * MIB as u64);
    // Read back in-process, block by block.
    let mut f = File::open(&p).unwrap();
    let mut buf = vec![0u8; MIB];
    for i in 0..N {
        f.read_exact(&mut buf).unwrap();
        assert!(buf == pattern(1000 + i, MIB), "block {i}");
    }
    assert_eq!(f.read(&mut buf).unwrap(), 0);
    drop(f);
    v.remount();
    let out = sh(&format!("sha256sum '{}'", p.display()));
    assert_eq!(
        out.split_whitespace().next().unwrap(),
        want,
        "after remount"
    );
}

#[test]
fn reads_at_and_past_eof_return_zero() {
    let mut v = Volume::new();
    v.mount();
    fs::write(v.path("f"), pattern(8, 100)).unwrap();
    fs::write(v.path("chunk"), pattern(8, CHUNK as usize)).unwrap();
    File::create(v.path("empty")).unwrap();
    for round in ["before remount", "after remount"] {
        let f = File::open(v.path("f")).unwrap();
        let mut buf = vec![0u8; 4096];
        assert_eq!(f.read_at(&mut buf, 100).unwrap(), 0, "{round}");
        assert_eq!(f.read_at(&mut buf, 1 << 30).unwrap(), 0, "{round}");
        assert_eq!(f.read_at(&mut buf, 50).unwrap(), 50, "{round}");
        assert!(buf[..50] == pattern(8, 100)[50..]);
        let mut f = f;
        let mut all = Vec::new();
        f.read_to_end(&mut all).unwrap();
        assert_eq!(all.len(), 100);
        assert_eq!(f.read(&mut buf).unwrap(), 0, "{round}: read at EOF");
        let c = File::open(v.path("chunk")).unwrap();
        assert_eq!(c.read_at(&mut buf, CHUNK).unwrap(), 0, "{round}");
        assert_eq!(c.read_at(&mut buf, CHUNK - 10).unwrap(), 10, "{round}");
        let e = File::open(v.path("empty")).unwrap();
        assert_eq!(e.read_at(&mut buf, 0).unwrap(), 0, "{round}");
        drop((f, c, e));
        v.remount();
    }
}

#[test]
fn directory_of_5000_entries() {
    let mut v = Volume::new();
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
    let mut v = Volume::new();
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

fn ctime(p: &Path) -> (i64, i64) {
    times(p)[2]
}

/// Each metadata change moves ctime forward (docs/SEMANTICS.md; as ext4).
/// The sleeps only make sure the clock has moved on between steps.
#[test]
fn ctime_changes_on_metadata_changes() {
    let mut v = Volume::new();
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

#[test]
fn concurrent_writers_and_creators() {
    let mut v = Volume::new();
    v.mount();
    const THREADS: u64 = 4;
    const BLOCKS: u64 = 96; // 4 KiB blocks: 6 chunks, each shared by all threads
    let p = v.path("shared");
    File::create(&p).unwrap();
    fs::create_dir(v.path("many")).unwrap();
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (p, dir) = (p.clone(), v.path("many"));
            std::thread::spawn(move || {
                let f = OpenOptions::new().write(true).open(&p).unwrap();
                for round in 0..3 {
                    for b in (t..BLOCKS).step_by(THREADS as usize) {
                        f.write_all_at(&pattern(b * 10 + round, 4096), b * 4096)
                            .unwrap();
                    }
                }
                for i in 0..300 {
                    File::create(dir.join(format!("t{t}-{i}"))).unwrap();
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let mut want = Vec::new();
    for b in 0..BLOCKS {
        want.extend_from_slice(&pattern(b * 10 + 2, 4096));
    }
    for round in ["before remount", "after remount"] {
        let got = fs::read(&p).unwrap();
        assert_eq!(got.len(), want.len(), "{round}");
        let bad = got.iter().zip(&want).position(|(a, b)| a != b);
        assert_eq!(bad.map(|i| i / 4096), None, "{round}: first wrong block");
        assert_eq!(names(&v.path("many")).len(), 1200, "{round}");
        v.remount();
    }
}

// Locks: flock(2) and fcntl record locks on a sealedfs mount are the
// kernel's own (sealedfs does not negotiate lock support with FUSE), so
// they coordinate processes on this one host, exactly as on ext4, and are
// not seen by any other host that mounts the volume (docs/SEMANTICS.md).

fn fcntl_lock(fd: i32, kind: libc::c_int, start: i64, len: i64) -> i32 {
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = start;
    fl.l_len = len;
    if unsafe { libc::fcntl(fd, libc::F_SETLK, &fl) } == 0 {
        0
    } else {
        unsafe { *libc::__errno_location() }
    }
}

#[test]
fn posix_locks_conflict_across_processes() {
    let mut v = Volume::new();
    v.mount();
    let p = v.path("locked");
    fs::write(&p, vec![0u8; 1000]).unwrap();
    let f = OpenOptions::new().read(true).write(true).open(&p).unwrap();
    assert_eq!(fcntl_lock(f.as_raw_fd(), libc::F_WRLCK, 0, 100), 0);
    let parent = std::process::id() as i32;
    let c = cpath(&p);

    // Child: a conflicting lock fails with EAGAIN or EACCES; F_GETLK names
    // the parent; a lock on another range succeeds.
    let code = in_child(|| {
        let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDWR) };
        if fd < 0 {
            return 10;
        }
        let e = fcntl_lock(fd, libc::F_WRLCK, 50, 10);
        if e != libc::EAGAIN && e != libc::EACCES {
            return 11;
        }
        if fcntl_lock(fd, libc::F_RDLCK, 0, 1) == 0 {
            return 12;
        }
        let mut fl: libc::flock = unsafe { std::mem::zeroed() };
        fl.l_type = libc::F_WRLCK as libc::c_short;
        fl.l_whence = libc::SEEK_SET as libc::c_short;
        fl.l_start = 0;
        fl.l_len = 10;
        if unsafe { libc::fcntl(fd, libc::F_GETLK, &mut fl) } != 0 {
            return 13;
        }
        if fl.l_type != libc::F_WRLCK as libc::c_short || fl.l_pid != parent {
            return 14;
        }
        if fcntl_lock(fd, libc::F_WRLCK, 200, 100) != 0 {
            return 15;
        }
        0
    });
    assert_eq!(code, 0, "child checks (see the return codes above)");

    // After the parent unlocks, the child gets the lock.
    assert_eq!(fcntl_lock(f.as_raw_fd(), libc::F_UNLCK, 0, 100), 0);
    let code = in_child(|| {
        let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDWR) };
        if fd < 0 {
            return 10;
        }
        fcntl_lock(fd, libc::F_WRLCK, 50, 10)
    });
    assert_eq!(code, 0, "lock after release");

    // Shared locks share; an exclusive one conflicts with them.
    assert_eq!(fcntl_lock(f.as_raw_fd(), libc::F_RDLCK, 0, 0), 0);
    let code = in_child(|| {
        let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDWR) };
        if fd < 0 {
            return 10;
        }
        if fcntl_lock(fd, libc::F_RDLCK, 0, 0) != 0 {
            return 11;
        }
        let e = fcntl_lock(fd, libc::F_WRLCK, 0, 0);
        if e != libc::EAGAIN && e != libc::EACCES {
            return 12;
        }
        0
    });
    assert_eq!(code, 0, "read locks");
}

#[test]
fn flock_conflicts_across_processes() {
    let mut v = Volume::new();
    v.mount();
    let p = v.path("flocked");
    fs::write(&p, b"x").unwrap();
    let f = File::open(&p).unwrap();
    let c = cpath(&p);
    let try_in_child = |op: i32| {
        in_child(|| {
            let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY) };
            if fd < 0 {
                return 100;
            }
            if unsafe { libc::flock(fd, op | libc::LOCK_NB) } == 0 {
                0
            } else {
                unsafe { *libc::__errno_location() }
            }
        })
    };
    ok(
        unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) },
        "flock",
    );
    assert_eq!(try_in_child(libc::LOCK_EX), libc::EWOULDBLOCK);
    assert_eq!(try_in_child(libc::LOCK_SH), libc::EWOULDBLOCK);
    ok(
        unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_SH) },
        "flock sh",
    );
    assert_eq!(try_in_child(libc::LOCK_SH), 0);
    assert_eq!(try_in_child(libc::LOCK_EX), libc::EWOULDBLOCK);
    ok(
        unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_UN) },
        "unlock",
    );
    assert_eq!(try_in_child(libc::LOCK_EX), 0);
    // The flock(1) tool sees the same.
    ok(
        unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) },
        "flock",
    );
    let out = std::process::Command::new("flock")
        .args(["-n", "-x"])
        .arg(&p)
        .arg("true")
        .status()
        .unwrap();
    assert_eq!(out.code(), Some(1), "flock -n fails while held");
    drop(f);
    sh(&format!("flock -n -x '{}' true", p.display()));
}
