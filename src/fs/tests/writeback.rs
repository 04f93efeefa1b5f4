//! The flushers' timer: what nobody fsyncs still goes out on its own, a
//! stream goes out in full packs (see `opcount`), and a writer that never
//! pauses, however it rewrites its data, does not hold it back.

use super::*;
use crate::fs::SetAttr;

/// Ticks (50 ms each) to wait before calling data stuck: far beyond the
/// two a tick-cut needs, so a loaded machine does not fail the test.
const PATIENCE: usize = 200;

fn chunk0_dirty(fs: &Fs, ino: u64) -> bool {
    fs.cache().dirty_bytes_where(ino, |c| c == 0) > 0
}

#[test]
fn a_write_nobody_syncs_goes_out_on_its_own() {
    let vol = Vol::new();
    let fs = vol.mount();
    let (attr, o) = fs
        .create(&ME, ROOT, os("f"), 0o644, 0, libc::O_WRONLY)
        .unwrap();
    fs.write(&ME, attr.ino, o.fh, 0, &[7; 4096]).unwrap();
    let mut ticks = 0;
    while fs.cache().dirty_bytes() > 0 {
        assert!(ticks < PATIENCE, "the write never left the cache");
        std::thread::sleep(Duration::from_millis(50));
        ticks += 1;
    }
    fs.release(attr.ino, o.fh).unwrap();
    fs.shutdown().unwrap();
}

/// A writer that adds a little to a new chunk more often than the timer
/// ticks never leaves a quiet tick, and never a pack's worth: its first
/// chunk must still go out while it keeps writing.
#[test]
fn a_writer_that_never_pauses_does_not_hold_back_its_oldest_data() {
    let vol = Vol::new();
    let fs = vol.mount();
    let (attr, o) = fs
        .create(&ME, ROOT, os("log"), 0o644, 0, libc::O_WRONLY)
        .unwrap();
    let mut i = 0u64;
    loop {
        fs.write(&ME, attr.ino, o.fh, i * 65536, &[1; 512]).unwrap();
        if i > 0 && !chunk0_dirty(&fs, attr.ino) {
            break;
        }
        assert!(
            i < 5 * PATIENCE as u64,
            "chunk 0 stayed dirty through {i} writes"
        );
        std::thread::sleep(Duration::from_millis(10));
        i += 1;
    }
    fs.release(attr.ino, o.fh).unwrap();
    fs.shutdown().unwrap();
}

/// A status file rewritten from scratch (truncate, write) faster than the
/// timer ticks is never quiet and its chunk is always new: its content
/// must still reach a pack while the rewriting goes on, or a crash after
/// hours of it leaves the file empty.
#[test]
fn a_file_rewritten_faster_than_the_timer_still_goes_out() {
    let vol = Vol::new();
    let fs = vol.mount();
    let (attr, o) = fs
        .create(&ME, ROOT, os("status"), 0o644, 0, libc::O_WRONLY)
        .unwrap();
    let mut i = 0;
    while vol.mem.list("data/").unwrap().is_empty() {
        assert!(i < 5 * PATIENCE, "no pack after {i} rewrites");
        let empty = SetAttr {
            size: Some(0),
            ..SetAttr::default()
        };
        fs.setattr(&ME, attr.ino, Some(o.fh), empty).unwrap();
        fs.write(&ME, attr.ino, o.fh, 0, format!("state {i}").as_bytes())
            .unwrap();
        std::thread::sleep(Duration::from_millis(10));
        i += 1;
    }
    fs.release(attr.ino, o.fh).unwrap();
    fs.shutdown().unwrap();
}
