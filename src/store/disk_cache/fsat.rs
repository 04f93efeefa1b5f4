//! File operations relative to a directory descriptor, never following a
//! symlink: the cache tree may sit under a directory other users can
//! write (`/tmp`), so every name is resolved one component at a time from
//! a descriptor checked once, and a planted link, FIFO or device is
//! refused rather than followed, opened or waited on.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

fn cstr(name: &str) -> io::Result<CString> {
    CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    match r {
        -1 => Err(io::Error::last_os_error()),
        r => Ok(r),
    }
}

pub fn euid() -> u32 {
    // SAFETY: no arguments, cannot fail.
    unsafe { libc::geteuid() }
}

/// Opens `name` in `dir` with `flags` (plus `O_NOFOLLOW | O_CLOEXEC`).
fn open_raw(dir: BorrowedFd, name: &str, flags: libc::c_int, mode: u32) -> io::Result<OwnedFd> {
    let c = cstr(name)?;
    let flags = flags | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: a valid descriptor and C string; the result is owned here.
    let fd = cvt(unsafe { libc::openat(dir.as_raw_fd(), c.as_ptr(), flags, mode) })?;
    // SAFETY: a descriptor openat just returned.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens an absolute directory path that must itself not be a symlink
/// (the caller canonicalized it).
pub fn open_dir_path(path: &Path) -> io::Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: a valid C string; the result is owned here.
    let fd = cvt(unsafe { libc::open(c.as_ptr(), flags) })?;
    // SAFETY: a descriptor open just returned.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Creates (0700) or opens directory `name` in `dir`, and checks it is a
/// real directory of this user that no one else can enter or write.
pub fn private_subdir(dir: BorrowedFd, name: &str, shown: &Path) -> io::Result<OwnedFd> {
    let c = cstr(name)?;
    // SAFETY: a valid descriptor and C string.
    if unsafe { libc::mkdirat(dir.as_raw_fd(), c.as_ptr(), 0o700) } != 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::AlreadyExists {
            return Err(e);
        }
    }
    let fd = open_raw(dir, name, libc::O_RDONLY | libc::O_DIRECTORY, 0).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("{} is not a directory ({e})", shown.display()),
        )
    })?;
    let meta = File::from(fd.try_clone()?).metadata()?;
    if meta.uid() != euid() || meta.mode() & 0o077 != 0 {
        return Err(io::Error::other(format!(
            "{} is not a private directory of this user (owner {}, mode {:o})",
            shown.display(),
            meta.uid(),
            meta.permissions().mode() & 0o7777
        )));
    }
    Ok(fd)
}

/// Opens regular file `name` in `dir` with `flags`; never blocks on a
/// FIFO or device, and refuses anything but a regular file.
pub fn open_file(dir: BorrowedFd, name: &str, flags: libc::c_int, mode: u32) -> io::Result<File> {
    let f = File::from(open_raw(dir, name, flags | libc::O_NONBLOCK, mode)?);
    if !f.metadata()?.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    Ok(f)
}

/// Creates `name` in `dir`, which must not exist, mode 0600.
pub fn create_new(dir: BorrowedFd, name: &str) -> io::Result<File> {
    open_raw(
        dir,
        name,
        libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
        0o600,
    )
    .map(File::from)
}

pub fn unlink(dir: BorrowedFd, name: &str) -> io::Result<()> {
    let c = cstr(name)?;
    // SAFETY: a valid descriptor and C string.
    cvt(unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), 0) }).map(drop)
}

pub fn rename(from_dir: BorrowedFd, from: &str, to_dir: BorrowedFd, to: &str) -> io::Result<()> {
    let (f, t) = (cstr(from)?, cstr(to)?);
    // SAFETY: valid descriptors and C strings.
    cvt(unsafe {
        libc::renameat(
            from_dir.as_raw_fd(),
            f.as_ptr(),
            to_dir.as_raw_fd(),
            t.as_ptr(),
        )
    })
    .map(drop)
}

/// The entries of `dir`, read through the descriptor (not a path that
/// could be swapped): `/proc/self/fd/N` names the open directory itself.
/// Each entry's type comes from the entry, without following links.
pub fn list(dir: BorrowedFd) -> io::Result<std::fs::ReadDir> {
    std::fs::read_dir(PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd())))
}
