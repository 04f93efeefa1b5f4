//! Snapshots, on both stores: made while mounted (through the daemon, no
//! passphrase) or not (a short-lived writer), mounted read-only and exact
//! (content, modes, times, xattrs, hard links) while the volume moves on,
//! kept through the writer's garbage collection, listed, and deleted with
//! the data only they held.

use crate::harness::tree::{listing, same, volume_with_tree};
use crate::harness::*;

fn snapshot(v: &Volume, args: &[&str]) -> std::process::Output {
    let mut all = vec!["snapshot"];
    all.extend_from_slice(args);
    v.run(&all, &[])
}

fn data_keys(v: &Volume) -> Vec<String> {
    v.store()
        .list("data/")
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect()
}

fn exact_while_the_volume_moves_on(backend: Backend) {
    let (mut v, src) = volume_with_tree(backend);
    v.set_env("SEALEDFS_GC_GRACE_MS", "0");
    sh(&format!(
        "cp -a '{}/.' '{}/'",
        src.display(),
        v.mnt.display()
    ));
    let want = listing(&v.mnt);

    // Through the daemon: the passphrase is never asked for.
    let out = snapshot(
        &v,
        &[
            "create",
            &v.url,
            "before",
            "--passphrase-file",
            "/nonexistent",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("snapshot before made"));
    let dup = snapshot(&v, &["create", &v.url, "before"]);
    assert!(assert_cli_error(&dup, 1).contains("exists already"));

    // The volume moves on: files changed, removed, added.
    sh(&format!(
        "cd '{}' && rm -rf a/b/c && printf 'changed' > a/sp && rm a/b/mib && mkdir later",
        v.mnt.display()
    ));
    let live = listing(&v.mnt);
    assert_ne!(live, want);
    // Unmount and remount: the writer's sweep (grace 0) runs at mount.
    v.remount();

    let (out, snap) = v.mount_elsewhere("snap", &["--snapshot", "before"]);
    assert!(out.status.success(), "{}", stderr(&out));
    same(&listing(&snap.mnt), &want, "the snapshot");
    let (ok, err) = try_sh(&format!("touch '{}/x'", snap.mnt.display()));
    assert!(!ok && err.contains("Read-only file system"), "{err}");
    same(&listing(&v.mnt), &live, "the live volume");
    drop(snap);

    let out = snapshot(&v, &["list", &v.url]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success() && text.contains("before"), "{text}");
    v.unmount();
}
per_backend!(exact_while_the_volume_moves_on: local, s3);

fn made_and_deleted_while_unmounted(backend: Backend) {
    let mut v = Volume::new(backend);
    v.set_env("SEALEDFS_GC_GRACE_MS", "0");
    v.mount();
    std::fs::write(v.path("big"), pattern(7, 3 << 20)).unwrap();
    v.unmount();

    let out = snapshot(&v, &["create", &v.url, "offline"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let with_big = data_keys(&v);

    v.mount();
    std::fs::remove_file(v.path("big")).unwrap();
    v.unmount();
    assert_eq!(data_keys(&v), with_big, "the snapshot keeps big's packs");

    let out = snapshot(&v, &["delete", &v.url, "offline"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        data_keys(&v).is_empty(),
        "deleting it freed them: {:?}",
        data_keys(&v)
    );
    let missing = snapshot(&v, &["delete", &v.url, "offline"]);
    assert!(assert_cli_error(&missing, 1).contains("no snapshot named"));
    let listed = snapshot(&v, &["list", &v.url]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains("no snapshots"));
    let bad = snapshot(&v, &["create", &v.url, "-x"]);
    assert_cli_error(&bad, 1);
    let (out, _none) = v.mount_elsewhere("gone", &["--snapshot", "offline"]);
    assert_cli_error(&out, 1);
}
per_backend!(made_and_deleted_while_unmounted: local, s3);
