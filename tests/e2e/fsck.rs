//! `sealedfs fsck`, on both stores: exit 0 on a clean volume, and each
//! planted fault found and named by path: a missing pack, a flipped byte
//! (with --deep), an orphan object (garbage, removed by --repair), and a
//! wrong link count written by a hand-crafted journal segment.

use sealedfs::crypto::{Keys, sha256};
use sealedfs::meta::journal::{journal_key, open_segment, seal_segment};
use sealedfs::meta::{Record, Segment};
use sealedfs::store::ObjectStore;
use sealedfs::volume::VolumeHeader;

use crate::harness::tree::volume_with_tree;
use crate::harness::*;

fn fsck(v: &Volume, extra: &[&str]) -> (i32, String) {
    let mut args = vec!["fsck", v.url.as_str()];
    args.extend_from_slice(extra);
    let out = v.run(&args, &[]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.code().unwrap(), text + &stderr(&out))
}

/// A volume holding the varied tree, unmounted.
fn populated(backend: Backend) -> Volume {
    let (mut v, src) = volume_with_tree(backend);
    sh(&format!(
        "cp -a '{}/.' '{}/'",
        src.display(),
        v.mnt.display()
    ));
    v.unmount();
    v
}

/// The pack holding the tree's data (written in one flush).
fn big_pack(store: &dyn ObjectStore) -> String {
    store
        .list("data/")
        .unwrap()
        .into_iter()
        .find(|o| o.size >= 1 << 20)
        .expect("a pack with the 1 MiB file")
        .key
}

fn clean_then_damaged(backend: Backend) {
    let v = populated(backend);
    let (code, out) = fsck(&v, &["--deep"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("0 integrity problems") && out.contains("deep:"),
        "{out}"
    );

    let store = v.store();
    let key = big_pack(&*store);
    let mut body = store.get(&key).unwrap();
    let mid = body.len() / 2;
    body[mid] ^= 1;
    store.put(&key, &body).unwrap();
    let (code, out) = fsck(&v, &[]);
    assert_eq!(code, 0, "sizes and presence still agree: {out}");
    let (code, out) = fsck(&v, &["--deep"]);
    assert_eq!(code, 5, "{out}");
    assert!(
        out.contains("do not authenticate") && out.contains(": /"),
        "{out}"
    );

    store.delete(&key).unwrap();
    let (code, out) = fsck(&v, &[]);
    assert_eq!(code, 5, "{out}");
    assert!(out.contains("missing pack") && out.contains("/a/"), "{out}");
    assert!(
        out.lines()
            .last()
            .unwrap()
            .starts_with("sealedfs: fsck found"),
        "{out}"
    );
}
per_backend!(clean_then_damaged: local, s3);

fn orphan_objects_are_garbage_and_repaired(backend: Backend) {
    let mut v = populated(backend);
    v.set_env("SEALEDFS_GC_GRACE_MS", "0");
    let store = v.store();
    let stray = "data/ab/ab00000000000000000000000000000f";
    store.put(stray, b"left by a crash").unwrap();
    let (code, out) = fsck(&v, &[]);
    assert_eq!(code, 0, "garbage is not an integrity problem: {out}");
    assert!(
        out.contains(&format!("garbage: unreferenced object {stray}")),
        "{out}"
    );
    // The store's clock has one-second steps: let the object be older
    // than the (zero) grace by it. The writer --repair opens sweeps it
    // (or fsck's own repair does).
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let (code, out) = fsck(&v, &["--repair"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("repair: removed"), "{out}");
    assert!(store.head(stray).unwrap().is_none());
    v.mount();
    assert_eq!(std::fs::read(v.path("a/small")).unwrap(), b"small file\n");
    v.unmount();
}
per_backend!(orphan_objects_are_garbage_and_repaired: local, s3);

/// A journal segment written with the volume's keys (as a bug or an
/// insider could) that sets a file's link count wrong.
fn wrong_link_count_from_the_journal(backend: Backend) {
    let v = populated(backend);
    let store = v.store();
    let header = VolumeHeader::decode(&store.get("volume").unwrap()).unwrap();
    let keys = Keys::from_ring(&header.unlock(PASS.as_bytes()).unwrap(), &header.volume_id);
    let last = store
        .list("meta/journal/")
        .unwrap()
        .into_iter()
        .filter_map(|o| sealedfs::meta::journal::seq_of_key(&o.key))
        .max()
        .unwrap();
    let sealed = store.get(&journal_key(last)).unwrap();
    let seg = open_segment(&keys, &header.volume_id, last, &sealed).unwrap();
    // The newest Inode record of a regular file, with nlink 5.
    let (ino, mut attr) = seg
        .records
        .iter()
        .rev()
        .find_map(|r| match r {
            Record::Inode { ino, attr } if attr.kind == sealedfs::meta::Kind::File => {
                Some((*ino, *attr))
            }
            _ => None,
        })
        .expect("a file's attributes in the last segment");
    attr.nlink = 5;
    let forged = Segment {
        seq: last + 1,
        writer: [9; 16],
        prev_hash: sha256(&sealed),
        records: vec![Record::Inode { ino, attr }],
        audit: seg.audit,
    };
    store
        .put(
            &journal_key(last + 1),
            &seal_segment(&keys, &header.volume_id, &forged),
        )
        .unwrap();
    let (code, out) = fsck(&v, &[]);
    assert_eq!(code, 5, "{out}");
    assert!(out.contains("has link count 5"), "{out}");
}
per_backend!(wrong_link_count_from_the_journal: local, s3);
