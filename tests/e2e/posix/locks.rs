//! Locks: flock(2) and fcntl record locks on a sealedfs mount are the
//! kernel's own (sealedfs does not negotiate lock support with FUSE), so
//! they coordinate processes on this one host, exactly as on ext4, and are
//! not seen by any other host that mounts the volume (docs/SEMANTICS.md).

use std::fs::{self, File, OpenOptions};
use std::os::fd::AsRawFd;

use super::*;
use crate::harness::*;

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

fn fcntl_lock(fd: i32, kind: libc::c_int, start: i64, len: i64) -> i32 {
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = start;
    fl.l_len = len;
    if unsafe { libc::fcntl(fd, libc::F_SETLK, &fl) } == 0 {
        0
    } else {
        errno()
    }
}

#[test]
fn posix_locks_conflict_across_processes() {
    let mut v = Volume::local();
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
    let mut v = Volume::local();
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
                errno()
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
