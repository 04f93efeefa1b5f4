//! Hard links, symlinks, and special files (FIFO, socket, character and
//! block devices, mknod of a regular file).

use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt};

use super::*;
use crate::harness::*;

#[test]
fn hard_links() {
    let mut v = Volume::local();
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
    let mut v = Volume::local();
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
    let mut v = Volume::local();
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
    ok(
        mknod(&dev, libc::S_IFCHR | 0o600, libc::makedev(1, 3)),
        "mknod chr",
    );
    let blk = v.path("blk");
    ok(
        mknod(&blk, libc::S_IFBLK | 0o600, libc::makedev(7, 200)),
        "mknod blk",
    );
    let reg = v.path("reg");
    ok(mknod(&reg, libc::S_IFREG | 0o604, 0), "mknod reg");
    assert_eq!(
        fails(mknod(&reg, libc::S_IFREG | 0o604, 0), "mknod existing"),
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

fn mknod(p: &std::path::Path, mode: libc::mode_t, dev: libc::dev_t) -> libc::c_int {
    let c = cpath(p);
    unsafe { libc::mknod(c.as_ptr(), mode, dev) }
}
