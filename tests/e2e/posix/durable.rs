//! When data reaches the store: fsync, fdatasync and a directory fsync
//! survive a crash; mmap writes reach the file through msync, or on close
//! and unmount without it.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

use super::*;
use crate::harness::*;

#[test]
fn fsync_fdatasync_fsyncdir_are_durable() {
    let mut v = Volume::local();
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
fn mmap_write_msync_read_back() {
    let mut v = Volume::local();
    v.mount();
    let len = 3 * CHUNK as usize + 100;
    let data = pattern(6, len);
    let f = create_rw(v.path("mapped"));
    f.set_len(len as u64).unwrap();
    unsafe {
        let p = map(&f, len, READ_WRITE, libc::MAP_SHARED);
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
        let p = map(&f, len, READ_WRITE, libc::MAP_SHARED);
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
        let p = map(&f, len, libc::PROT_READ, libc::MAP_PRIVATE);
        let s = std::slice::from_raw_parts(p.cast::<u8>(), len);
        assert!(s[..] == want[..], "private mapping after remount");
        ok(libc::munmap(p, len), "munmap");
    }
}

const READ_WRITE: libc::c_int = libc::PROT_READ | libc::PROT_WRITE;

/// Maps the first `len` bytes of `f`; panics if mmap fails.
fn map(f: &File, len: usize, prot: libc::c_int, flags: libc::c_int) -> *mut libc::c_void {
    let p = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, flags, f.as_raw_fd(), 0) };
    assert_ne!(p, libc::MAP_FAILED, "mmap: {}", errno());
    p
}
