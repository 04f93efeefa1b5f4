//! Writing large objects without the page cache.
//!
//! A buffered `write(2)` of a pack copies every byte into the page cache,
//! and `fsync` then writes those pages back: on a 1 GiB sequential write
//! that copy and its page bookkeeping were the daemon's largest cost
//! (docs/BENCHMARKS.md, "Sequential write"). Packs are written once and
//! read back rarely and by range, so caching them buys little.
//!
//! Rules:
//! - Bodies of at least [`DIRECT_MIN`] bytes go through `O_DIRECT`: their
//!   4 KiB-aligned prefix from an aligned bounce buffer (one user-space
//!   copy per [`BOUNCE`] bytes, reused per thread), the remaining tail
//!   (< 4 KiB) buffered after clearing `O_DIRECT` on the descriptor.
//! - The caller still fsyncs: `O_DIRECT` bypasses the page cache, not the
//!   device's write cache, and the file's size is metadata.
//! - A file system that refuses `O_DIRECT` (tmpfs, some FUSE and network
//!   file systems answer `EINVAL`) gets the plain buffered write: the
//!   result is the same bytes, only slower.

use std::alloc::{self, Layout};
use std::cell::RefCell;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

/// Smallest body written with `O_DIRECT` (a journal segment or a small
/// pack is fsynced at once and is cheaper through the page cache).
pub const DIRECT_MIN: usize = 1 << 20;
/// Alignment of `O_DIRECT` offsets, lengths and memory: the largest
/// logical block size in common use.
const ALIGN: usize = 4096;
/// Bytes copied and written per `pwrite`.
const BOUNCE: usize = 1 << 20;

/// A heap buffer aligned to [`ALIGN`], [`BOUNCE`] bytes long.
struct Bounce {
    ptr: *mut u8,
}

impl Bounce {
    fn layout() -> Layout {
        Layout::from_size_align(BOUNCE, ALIGN).expect("constant layout is valid")
    }

    fn new() -> Bounce {
        // SAFETY: the layout has a nonzero size.
        let ptr = unsafe { alloc::alloc(Self::layout()) };
        if ptr.is_null() {
            alloc::handle_alloc_error(Self::layout());
        }
        Bounce { ptr }
    }

    fn fill(&mut self, from: &[u8]) -> &[u8] {
        assert!(from.len() <= BOUNCE);
        // SAFETY: `ptr` owns BOUNCE writable bytes, `from` fits, and the
        // two cannot overlap (`ptr` is ours alone).
        unsafe {
            std::ptr::copy_nonoverlapping(from.as_ptr(), self.ptr, from.len());
            std::slice::from_raw_parts(self.ptr, from.len())
        }
    }
}

impl Drop for Bounce {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout, freed once.
        unsafe { alloc::dealloc(self.ptr, Self::layout()) }
    }
}

thread_local! {
    static BUFFER: RefCell<Option<Bounce>> = const { RefCell::new(None) };
}

/// Flags for opening a temp file that [`write_body`] will fill.
pub fn open_flags(len: usize) -> i32 {
    match len >= DIRECT_MIN {
        true => libc::O_DIRECT,
        false => 0,
    }
}

/// Writes `body` to the fresh, empty `file` (opened with
/// [`open_flags`]`(body.len())`); does not fsync.
pub fn write_body(file: &mut File, body: &[u8]) -> io::Result<()> {
    if !is_direct(file)? {
        return file.write_all(body);
    }
    let aligned = body.len() / ALIGN * ALIGN;
    let direct: io::Result<()> = BUFFER.with(|b| {
        let mut b = b.borrow_mut();
        let bounce = b.get_or_insert_with(Bounce::new);
        let mut off = 0;
        while off < aligned {
            let n = (aligned - off).min(BOUNCE);
            file.write_all_at(bounce.fill(&body[off..off + n]), off as u64)?;
            off += n;
        }
        Ok(())
    });
    match direct {
        Ok(()) => {
            set_direct(file, false)?;
            file.write_all_at(&body[aligned..], aligned as u64)
        }
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            log::debug!("O_DIRECT refused ({e}); writing through the page cache");
            set_direct(file, false)?;
            file.set_len(0)?;
            file.write_all_at(body, 0)
        }
        Err(e) => Err(e),
    }
}

fn flags(file: &File) -> io::Result<i32> {
    // SAFETY: F_GETFL on a descriptor we own touches no memory.
    let flags = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETFL) };
    match flags {
        -1 => Err(io::Error::last_os_error()),
        f => Ok(f),
    }
}

fn is_direct(file: &File) -> io::Result<bool> {
    Ok(flags(file)? & libc::O_DIRECT != 0)
}

fn set_direct(file: &File, on: bool) -> io::Result<()> {
    let old = flags(file)?;
    let new = match on {
        true => old | libc::O_DIRECT,
        false => old & !libc::O_DIRECT,
    };
    // SAFETY: F_SETFL on a descriptor we own touches no memory.
    match unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETFL, new) } {
        -1 => Err(io::Error::last_os_error()),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::OpenOptions;
    use std::os::unix::fs::OpenOptionsExt;

    /// Sizes around the alignment and the bounce buffer, written where the
    /// test runs (ext4 takes `O_DIRECT`; tmpfs refuses it at open, and
    /// the buffered path must give the same bytes).
    #[test]
    fn every_size_reads_back_exactly() {
        let dir = tempfile::tempdir().unwrap();
        for len in [
            DIRECT_MIN,
            DIRECT_MIN + 1,
            DIRECT_MIN + ALIGN - 1,
            BOUNCE * 3 + 17,
            8_393_728,
        ] {
            let body: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let path = dir.path().join(format!("f{len}"));
            let open = |flags| {
                OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .custom_flags(flags)
                    .open(&path)
            };
            let mut file = open(open_flags(len)).or_else(|_| open(0)).unwrap();
            write_body(&mut file, &body).unwrap();
            file.sync_all().unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), body, "{len} bytes");
        }
    }
}
