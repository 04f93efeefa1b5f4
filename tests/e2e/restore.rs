//! The restore drill, on both stores: write a varied tree, snapshot it,
//! keep writing, replicate the volume (mounted, in use) to another store,
//! destroy the source, then mount the replica and its copy of the
//! snapshot: each must match, byte for byte and attribute for attribute,
//! what was written at its point. A second replication copies only what
//! is new.

use crate::harness::tree::{listing, same, volume_with_tree};
use crate::harness::*;

fn replicate(v: &Volume, target: &str) -> String {
    let out = v.run(&["replicate", &v.url, target], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Mounts `url` (with `extra` flags) on `dir/name`; returns the mountpoint.
fn mount_at(v: &Volume, url: &str, name: &str, extra: &[&str]) -> std::path::PathBuf {
    let mnt = v.dir.path().join(name);
    std::fs::create_dir_all(&mnt).unwrap();
    let mut args = vec!["mount", url, mnt.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = v.run(&args, &[]);
    assert!(out.status.success(), "mount {url}: {}", stderr(&out));
    mnt
}

fn unmount_at(v: &Volume, mnt: &std::path::Path) {
    let out = v.run(&["unmount", mnt.to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
}

fn drill(backend: Backend) {
    let (mut v, src) = volume_with_tree(backend);
    sh(&format!(
        "cp -a '{}/.' '{}/'",
        src.display(),
        v.mnt.display()
    ));
    let at_snapshot = listing(&v.mnt);
    let out = v.run(&["snapshot", "create", &v.url, "drill"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));

    sh(&format!(
        "cd '{}' && rm -rf 'sp ace' && printf 'rewritten' > a/small && \
         head -c 300000 /dev/urandom > a/b/new && ln a/b/new a/new-link && \
         setfattr -n user.after -v 1 a/b/new && truncate -s 5000000 a/sparse",
        v.mnt.display()
    ));
    std::fs::File::open(&v.mnt).unwrap().sync_all().unwrap();
    let at_replication = listing(&v.mnt);

    let target = format!("{}-replica", v.url);
    let first = replicate(&v, &target);
    eprintln!("first replication, source mounted: {first}");
    v.unmount();
    let second = replicate(&v, &target);
    eprintln!("second replication: {second}");
    assert!(second.contains(" 0 deleted"), "{second}");

    // The source is gone.
    let store = v.store();
    let all: Vec<String> = store.list("").unwrap().into_iter().map(|o| o.key).collect();
    store.delete_many(&all).unwrap();
    assert!(
        v.try_mount(&[]).status.code() == Some(1),
        "the source is no volume now"
    );

    let replica = mount_at(&v, &target, "replica", &[]);
    same(&listing(&replica), &at_replication, "the replica");
    let snap = mount_at(&v, &target, "replica-snap", &["--snapshot", "drill"]);
    same(&listing(&snap), &at_snapshot, "the replica's snapshot");
    unmount_at(&v, &snap);
    unmount_at(&v, &replica);
}
per_backend!(drill: local, s3);
