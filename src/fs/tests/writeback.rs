//! The flushers' timer: what nobody fsyncs still goes out on its own, a
//! stream goes out in full packs (see `opcount`), and a writer that never
//! pauses, however it rewrites its data, does not hold it back.

use super::*;
use crate::fs::SetAttr;

/// Calls `step` with its round number every 10 ms until it returns true,
/// for up to 10 s: 200 ticks of the tests' 50 ms interval, far beyond the
/// three a tick-cut needs, so a loaded machine does not fail the test.
fn within_ten_seconds(what: &str, mut step: impl FnMut(usize) -> bool) {
    const ROUNDS: usize = 1000;
    for i in 0..ROUNDS {
        if step(i) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("{what} after {ROUNDS} rounds");
}

#[test]
fn a_write_nobody_syncs_goes_out_on_its_own() {
    let vol = Vol::new();
    let fs = vol.mount();
    let (attr, o) = fs
        .create(&ME, ROOT, os("f"), 0o644, 0, libc::O_WRONLY)
        .unwrap();
    fs.write(&ME, attr.ino, o.fh, 0, &[7; 4096]).unwrap();
    within_ten_seconds("the write still in the cache", |_| {
        fs.cache().dirty_bytes() == 0
    });
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
    within_ten_seconds("chunk 0 still dirty", |i| {
        fs.write(&ME, attr.ino, o.fh, i as u64 * 65536, &[1; 512])
            .unwrap();
        i > 0 && fs.cache().dirty_bytes_where(attr.ino, |c| c == 0) == 0
    });
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
    within_ten_seconds("no pack", |i| {
        if !vol.mem.list("data/").unwrap().is_empty() {
            return true;
        }
        let empty = SetAttr {
            size: Some(0),
            ..SetAttr::default()
        };
        fs.setattr(&ME, attr.ino, Some(o.fh), empty).unwrap();
        fs.write(&ME, attr.ino, o.fh, 0, format!("state {i}").as_bytes())
            .unwrap();
        false
    });
    fs.release(attr.ino, o.fh).unwrap();
    fs.shutdown().unwrap();
}

/// The pack bodies kept between uploads count against the cache like the
/// rest of the daemon's memory, and the idle timer frees them.
#[test]
fn kept_pack_bodies_count_against_the_cache_until_the_idle_tick_frees_them() {
    // No timer here: the body of the pack the sync uploaded stays kept.
    let vol = Vol::new();
    let fs = vol.mount_with(quiet());
    let ino = put_file(&fs, "big", &pattern(9 << 20, 3));
    fs.sync_all().unwrap();
    let kept = fs.engine.kept_body_bytes();
    assert!(kept >= 8 << 20, "a full pack's body is kept, not {kept} B");
    assert_eq!(fs.cache().kept_bytes(), kept, "and counted");
    assert_eq!(read_all(&fs, ino), pattern(9 << 20, 3));
    fs.shutdown().unwrap();

    // The tests' 50 ms timer: its first idle tick frees what the write kept.
    let fs = vol.mount();
    put_file(&fs, "big2", &pattern(9 << 20, 4));
    fs.sync_all().unwrap();
    within_ten_seconds("a kept pack body after the write", |_| {
        fs.engine.kept_body_bytes() == 0
    });
    assert_eq!(fs.cache().kept_bytes(), 0);
    fs.shutdown().unwrap();
}
