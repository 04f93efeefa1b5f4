//! Rollback and truncation detection, on both stores: a store put back to
//! an older copy, its newest journal segments deleted, a segment missing
//! in the middle, or its newest checkpoint damaged, is refused (exit 5,
//! one line saying what was found) by the host that saw the newer state;
//! `--accept-rollback` mounts what is there, and the unreferenced-pack
//! sweep leaves the hidden state's packs alone meanwhile.

use std::collections::BTreeMap;

use sealedfs::store::ObjectStore;

use crate::harness::*;

fn write_synced(v: &Volume, name: &str, data: &[u8]) {
    let f = std::fs::File::create(v.path(name)).unwrap();
    std::io::Write::write_all(&mut &f, data).unwrap();
    f.sync_all().unwrap();
}

fn objects(v: &Volume) -> BTreeMap<String, Vec<u8>> {
    all_objects(&*v.store()).into_iter().collect()
}

fn journal_keys(store: &dyn ObjectStore) -> Vec<String> {
    store
        .list("meta/journal/")
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect()
}

/// Mounting must be refused as a rollback naming `what`.
fn assert_refused(v: &mut Volume, what: &str) {
    let out = v.try_mount(&[]);
    let msg = assert_cli_error(&out, 5);
    assert!(msg.contains(what), "{msg}");
    assert!(msg.contains("--accept-rollback"), "{msg}");
    assert!(!v.is_mounted());
}

/// Puts every object but the packs back as in `old` (an attacker who wants
/// the loss to last leaves the newer packs for the garbage sweep).
fn put_back_metadata(store: &dyn ObjectStore, old: &BTreeMap<String, Vec<u8>>) {
    for o in store.list("").unwrap() {
        if !o.key.starts_with("data/") && !old.contains_key(&o.key) {
            store.delete(&o.key).unwrap();
        }
    }
    for (key, body) in old {
        store.put(key, body).unwrap();
    }
}

fn old_copy_put_back(backend: Backend) {
    let mut v = Volume::new(backend);
    v.set_env("SEALEDFS_GC_GRACE_MS", "0");
    v.mount();
    let a = pattern(1, 100_000);
    write_synced(&v, "a", &a);
    v.unmount();
    let old = objects(&v);

    v.mount();
    write_synced(&v, "b", &pattern(2, 300_000));
    v.unmount();
    let newer_packs: Vec<String> = objects(&v)
        .into_keys()
        .filter(|k| k.starts_with("data/") && !old.contains_key(k))
        .collect();
    assert!(!newer_packs.is_empty(), "b's data is in packs of its own");

    put_back_metadata(&*v.store(), &old);
    assert_refused(&mut v, "rolled back");

    v.mount_with(&["--accept-rollback"]);
    assert!(std::fs::read(v.path("a")).unwrap() == a);
    assert!(!v.path("b").exists(), "the old state, as it was");
    assert!(v.log_text().contains("accepted rollback"));
    v.unmount();
    let store = v.store();
    for key in &newer_packs {
        assert!(
            store.head(key).unwrap().is_some(),
            "{key} was swept after an accepted rollback"
        );
    }
    // The accepted state is this host's memory now: a plain mount works.
    v.mount();
    v.unmount();
}
per_backend!(old_copy_put_back: local, s3);

fn newest_journal_segments_deleted(backend: Backend) {
    let mut v = Volume::new(backend);
    v.mount();
    let a = pattern(3, 50_000);
    write_synced(&v, "a", &a);
    v.unmount();
    let before = journal_keys(&*v.store());

    v.mount();
    write_synced(&v, "b", &pattern(4, 50_000));
    v.unmount();
    let store = v.store();
    let newer: Vec<String> = journal_keys(&*store)
        .into_iter()
        .filter(|k| !before.contains(k))
        .collect();
    assert!(!newer.is_empty());
    store.delete_many(&newer).unwrap();
    assert_refused(&mut v, "rolled back or truncated");

    v.mount_with(&["--accept-rollback"]);
    assert!(std::fs::read(v.path("a")).unwrap() == a);
    assert!(!v.path("b").exists());
    write_synced(&v, "c", b"after the accepted rollback");
    v.unmount();
    v.mount();
    assert_eq!(
        std::fs::read(v.path("c")).unwrap(),
        b"after the accepted rollback"
    );
    v.unmount();
}
per_backend!(newest_journal_segments_deleted: local, s3);

fn a_segment_missing_in_the_middle(backend: Backend) {
    let mut v = Volume::new(backend);
    v.mount();
    for i in 0..4 {
        write_synced(&v, &format!("f{i}"), &pattern(10 + i, 20_000));
    }
    v.unmount();
    let store = v.store();
    let keys = journal_keys(&*store);
    assert!(keys.len() >= 3, "{keys:?}");
    let hole = keys[keys.len() - 2].clone();
    store.delete(&hole).unwrap();
    assert_refused(&mut v, "is missing but segments up to");

    // Accepted: the journal goes on before the hole; what was past it is
    // kept aside (evidence), and the volume works and remounts cleanly.
    v.mount_with(&["--accept-rollback"]);
    write_synced(&v, "after", b"new history");
    v.unmount();
    assert!(!store.list("meta/attic/").unwrap().is_empty());
    v.mount();
    assert_eq!(std::fs::read(v.path("after")).unwrap(), b"new history");
    v.unmount();
}
per_backend!(a_segment_missing_in_the_middle: local, s3);

fn newest_checkpoint_damaged(backend: Backend) {
    let mut v = Volume::new(backend);
    // A checkpoint after every commit.
    v.set_env("SEALEDFS_CHECKPOINT_BYTES", "1");
    v.mount();
    let a = pattern(5, 80_000);
    write_synced(&v, "a", &a);
    write_synced(&v, "a2", &pattern(6, 1000));
    v.unmount();
    let store = v.store();
    let newest = store
        .list("meta/checkpoint/")
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .filter(|k| k.ends_with("/index"))
        .max()
        .expect("a checkpoint");
    let mut body = store.get(&newest).unwrap();
    let mid = body.len() / 2;
    body[mid] ^= 0x40;
    store.put(&newest, &body).unwrap();
    assert_refused(&mut v, "newest checkpoint");

    // The older checkpoint and the journal after it still hold everything.
    v.mount_with(&["--accept-rollback"]);
    assert!(std::fs::read(v.path("a")).unwrap() == a);
    v.unmount();
}
per_backend!(newest_checkpoint_damaged: local, s3);

/// A different volume at the same location, even one that opens with the
/// same passphrase, is refused: the host pins the volume id it knew.
fn another_volume_at_the_same_location(backend: Backend) {
    let mut v = Volume::new(backend);
    v.mount();
    write_synced(&v, "mine", b"the first volume");
    v.unmount();
    let first = objects(&v);
    // Another volume made elsewhere, moved into this location.
    let other = Volume::new(backend);
    let store = v.store();
    for key in first.keys() {
        store.delete(key).unwrap();
    }
    for (key, body) in objects(&other) {
        store.put(&key, &body).unwrap();
    }
    assert_refused(&mut v, "another volume");
    v.mount_with(&["--accept-rollback"]);
    assert!(!v.path("mine").exists());
    v.unmount();
}
per_backend!(another_volume_at_the_same_location: local, s3);

/// A host that never saw the volume still learns the newest commit from
/// the lease a crashed writer left: a journal that ends earlier is refused
/// when that lease is taken over.
fn truncated_under_a_crashed_writers_lease(backend: Backend) {
    let mut v = Volume::new(backend);
    v.set_env("SEALEDFS_LEASE_TTL_MS", "1500");
    v.mount();
    write_synced(&v, "a", b"committed before the crash");
    let before = journal_keys(&*v.store());
    write_synced(&v, "b", b"also committed");
    // A renewal (every TTL/3) names the newest commit in the lease.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    v.kill();
    let store = v.store();
    let newer: Vec<String> = journal_keys(&*store)
        .into_iter()
        .filter(|k| !before.contains(k))
        .collect();
    store.delete_many(&newer).unwrap();
    // Another host: no memory of this volume at all.
    let fresh = v.dir.path().join("other-host-state");
    v.set_env("SEALEDFS_STATE_DIR", fresh.to_str().unwrap());
    assert_refused(&mut v, "lease names commit");
    v.mount_with(&["--accept-rollback"]);
    assert!(v.path("a").exists() && !v.path("b").exists());
    v.unmount();
}
per_backend!(truncated_under_a_crashed_writers_lease: local, s3);
