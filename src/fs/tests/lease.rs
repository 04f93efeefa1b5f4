//! Losing the writer's lease at the filesystem API: a fenced `Fs` refuses
//! changes, never acknowledges what it could not commit, and sends
//! nothing more to the store; a writer that took over fences the old one
//! through the journal even if the old one never noticed.

use std::sync::Arc;

use super::*;
use crate::store::CountingStore;

fn errno<T: std::fmt::Debug>(r: FsResult<T>) -> i32 {
    r.unwrap_err().errno()
}

#[test]
fn fenced_fs_is_read_only_fails_unsynced_fsync_and_writes_nothing() {
    let vol = Vol::new();
    let counted = Arc::new(CountingStore::new(vol.mem.clone()));
    let fs = vol.try_mount_on(counted.clone(), quiet()).unwrap();
    let kept = put_file(&fs, "kept", b"committed");
    fs.sync_all().unwrap();
    let (attr, o) = fs
        .create(&ME, ROOT, os("dirty"), 0o644, 0o022, libc::O_WRONLY)
        .unwrap();
    fs.write(&ME, attr.ino, o.fh, 0, &pattern(100_000, 1))
        .unwrap();

    fs.fence("test: another mount took the lease");
    let before = counted.counts();
    assert!(fs.is_read_only());
    assert_eq!(errno(fs.write(&ME, attr.ino, o.fh, 0, b"x")), libc::EROFS);
    assert_eq!(
        errno(fs.create(&ME, ROOT, os("new"), 0o644, 0, libc::O_WRONLY)),
        libc::EROFS
    );
    assert_eq!(errno(fs.mkdir(&ME, ROOT, os("d"), 0o755, 0)), libc::EROFS);
    assert_eq!(errno(fs.fsync(attr.ino, o.fh, false)), libc::EIO);
    assert_eq!(errno(fs.fsync(attr.ino, o.fh, true)), libc::EIO);
    assert!(fs.sync_all().is_err());
    // Reads still work, from memory and from the store.
    assert_eq!(read_all(&fs, kept), b"committed");
    fs.release(attr.ino, o.fh).unwrap();
    assert!(fs.shutdown().is_err(), "shutdown cannot claim a commit");
    let after = counted.counts();
    assert_eq!(after.puts(), before.puts(), "no PUT after fencing");
    assert_eq!(after.delete, before.delete, "no DELETE after fencing");

    let fs = vol.mount_mem(quiet());
    assert!(fs.lookup(&ME, ROOT, os("kept")).is_ok());
    assert_eq!(errno(fs.lookup(&ME, ROOT, os("dirty"))), libc::ENOENT);
}

#[test]
fn a_takeover_claims_the_next_seq_and_the_old_writer_fences_itself() {
    let vol = Vol::new();
    let old = vol.mount_with(quiet());
    put_file(&old, "old-acked", b"1");
    old.sync_all().unwrap();

    let new = vol.mount_with(quiet_with(|e| e.claim_journal = true));
    // The old writer has not noticed anything: its next commit loses the
    // create-only race for the claimed seq, and it turns read-only.
    put_file(&old, "old-late", b"2");
    assert_eq!(errno(old.sync_all()), libc::EIO);
    assert!(old.is_read_only());
    assert_eq!(
        errno(old.create(&ME, ROOT, os("x"), 0o644, 0, libc::O_WRONLY)),
        libc::EROFS
    );

    put_file(&new, "new-acked", b"3");
    new.sync_all().unwrap();
    new.shutdown().unwrap();
    let _ = old.shutdown();

    let fs = vol.mount_with(quiet());
    assert!(fs.lookup(&ME, ROOT, os("old-acked")).is_ok());
    assert!(fs.lookup(&ME, ROOT, os("new-acked")).is_ok());
    assert_eq!(errno(fs.lookup(&ME, ROOT, os("old-late"))), libc::ENOENT);
}

#[test]
fn a_claim_segment_is_empty_and_replays() {
    let vol = Vol::new();
    let fs = vol.mount_with(quiet_with(|e| e.claim_journal = true));
    fs.shutdown().unwrap();
    let key = crate::meta::journal::journal_key(1);
    let seg = crate::meta::journal::open_segment(
        &crate::crypto::Keys::from_ring(&vol.header.unlock(PASS).unwrap(), &vol.header.volume_id),
        &vol.header.volume_id,
        1,
        &vol.mem.raw(&key).unwrap(),
    )
    .unwrap();
    assert!(seg.records.is_empty());
    vol.mount_with(quiet()).shutdown().unwrap();
}
