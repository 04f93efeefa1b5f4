//! POSIX behaviour through a real mount, as ext4 behaves (issue 2, scope 6),
//! one topic a file. Every check goes through the kernel: std::fs,
//! std::os::unix and raw libc calls on paths under the mountpoint. These
//! run on a local volume; a few that read cold data back from the store
//! run on S3 too.

mod attrs;
mod dirs;
mod durable;
mod files;
mod links;
mod locks;
mod rename;
mod space;
mod truncate;
mod xattr;

use std::ffi::CString;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

use crate::harness::errno;

const CHUNK: u64 = 64 * 1024;

fn cstr(s: &str) -> CString {
    CString::new(s).unwrap()
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

fn lseek(f: &File, off: i64, whence: libc::c_int) -> Result<i64, i32> {
    let r = unsafe { libc::lseek(f.as_raw_fd(), off, whence) };
    if r < 0 { Err(errno()) } else { Ok(r) }
}

fn ts(sec: i64, nsec: i64) -> libc::timespec {
    libc::timespec {
        tv_sec: sec,
        tv_nsec: nsec,
    }
}

/// Opens `p` for reading and writing, created or emptied (O_CREAT|O_TRUNC).
fn create_rw(p: impl AsRef<Path>) -> File {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(p.as_ref())
        .unwrap()
}

/// Asserts `got == want`, naming the length or the first wrong byte (a
/// whole-buffer diff of megabytes helps no one).
fn assert_bytes(got: &[u8], want: &[u8], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let bad = got.iter().zip(want).position(|(a, b)| a != b);
    assert_eq!(bad, None, "{what}: first wrong byte");
}
