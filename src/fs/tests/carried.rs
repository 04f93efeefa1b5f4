//! Packs carried in journal segments (`meta::carried`): what a small
//! fsync sends inside the segment stays readable, reachable, authenticated
//! and exactly as durable as the segment, and a checkpoint moves what is
//! still live into an object of its own.

use super::*;
use crate::meta::journal::{JOURNAL_PREFIX, journal_key};

fn objects(vol: &Vol, prefix: &str) -> Vec<String> {
    let mut keys: Vec<String> = vol
        .mem
        .list(prefix)
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    keys.sort();
    keys
}

/// Creates `db`, commits it, then writes `data` at 0 and fsyncs.
fn fsynced(fs: &Fs, data: &[u8]) -> u64 {
    let (attr, o) = fs
        .create(&ME, ROOT, os("db"), 0o644, 0, libc::O_RDWR)
        .unwrap();
    fs.fsync(attr.ino, o.fh, false).unwrap();
    fs.write(&ME, attr.ino, o.fh, 0, data).unwrap();
    fs.fsync(attr.ino, o.fh, false).unwrap();
    attr.ino
}

#[test]
fn a_small_fsync_is_carried_and_survives_a_crash() {
    let vol = Vol::new();
    let fs = vol.mount_with(quiet());
    let data = pattern(4096, 1);
    let ino = fsynced(&fs, &data);
    assert!(objects(&vol, "data/").is_empty(), "no pack of its own");
    assert_eq!(read_all(&fs, ino), data, "read from the carried body");
    fs.abandon();
    drop(fs);
    let fs = vol.mount_with(quiet());
    assert_eq!(read_all(&fs, ino), data, "replayed from the journal");
    let report = fs.engine().fsck(true, &|_, _| {}).unwrap();
    assert!(report.healthy(), "{:?}", report.problems);
    assert_eq!(report.segments_opened, 1, "deep fsck opens carried data");
    fs.shutdown().unwrap();
}

#[test]
fn a_checkpoint_moves_live_carried_packs_into_objects() {
    let vol = Vol::new();
    let fs = vol.mount_with(quiet());
    let (attr, o) = fs
        .create(&ME, ROOT, os("db"), 0o644, 0, libc::O_RDWR)
        .unwrap();
    let mut last = Vec::new();
    for round in 0..10u8 {
        last = pattern(5000, round);
        fs.write(&ME, attr.ino, o.fh, 0, &last).unwrap();
        fs.fsync(attr.ino, o.fh, false).unwrap();
    }
    assert!(objects(&vol, "data/").is_empty());
    fs.engine().checkpoint_now().unwrap();
    // Nine of the ten carried packs died before the checkpoint: only the
    // live one becomes an object.
    assert_eq!(objects(&vol, "data/").len(), 1);
    fs.abandon();
    drop(fs);
    // The checkpoint no longer replays the segments that carried it.
    let fs = vol.mount_with(quiet());
    assert_eq!(read_all(&fs, attr.ino), last);
    assert!(fs.engine().fsck(true, &|_, _| {}).unwrap().healthy());
    fs.engine().force_gc().unwrap();
    assert_eq!(read_all(&fs, attr.ino), last, "the sweep keeps it");
    fs.shutdown().unwrap();
}

#[test]
fn a_snapshot_keeps_carried_data() {
    let vol = Vol::new();
    let fs = vol.mount_with(quiet());
    let data = pattern(3000, 7);
    let ino = fsynced(&fs, &data);
    fs.engine().create_snapshot("s").unwrap();
    fs.unlink(&ME, ROOT, os("db")).unwrap();
    fs.shutdown().unwrap();
    let master = vol.header.unlock(PASS).unwrap();
    let opts = FsOptions::with_engine(|e| {
        e.read_only = true;
        e.snapshot = Some("s".into());
    });
    let snap = Fs::mount(vol.store.clone(), &vol.header, &master, opts).unwrap();
    assert_eq!(read_all(&snap, ino), data);
}

#[test]
fn tampered_carried_data_fails_the_mount() {
    let vol = Vol::new();
    let fs = vol.mount_with(quiet());
    fsynced(&fs, &pattern(4096, 3));
    fs.abandon();
    drop(fs);
    let newest = objects(&vol, JOURNAL_PREFIX).pop().unwrap();
    let mut bytes = vol.mem.get(&newest).unwrap();
    assert!(bytes.len() > 4096, "the segment carries the data");
    let at = bytes.len() / 2;
    bytes[at] ^= 1;
    vol.mem.put(&newest, &bytes).unwrap();
    assert_ne!(newest, journal_key(0));
    let master = vol.header.unlock(PASS).unwrap();
    let err = Fs::mount(vol.store.clone(), &vol.header, &master, quiet()).err();
    assert!(matches!(&err, Some(e) if e.errno() == libc::EIO), "{err:?}");
}
