//! Follower mounts (`--follow`), on both stores: read-only, no lease,
//! seeing the writer's commits within seconds, and reading on across the
//! writer's compaction and garbage collection.

use std::time::{Duration, Instant};

use crate::harness::*;

fn write_synced(path: &std::path::Path, data: &[u8]) {
    let f = std::fs::File::create(path).unwrap();
    std::io::Write::write_all(&mut &f, data).unwrap();
    f.sync_all().unwrap();
}

/// Waits until `path` holds `want`; returns how long that took.
fn until_seen(path: &std::path::Path, want: &[u8], limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        if std::fs::read(path).is_ok_and(|got| got == want) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "{} not seen within {limit:?}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn sees_commits_within_seconds(backend: Backend) {
    let mut v = Volume::new(backend);
    v.set_env("SEALEDFS_FOLLOW_MS", "200");
    v.mount();
    write_synced(&v.path("before"), b"there before the follower");
    let (out, follower) = v.mount_elsewhere("follow", &["--follow"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read(follower.path("before")).unwrap(),
        b"there before the follower"
    );
    let (ok, err) = try_sh(&format!("touch '{}'", follower.path("x").display()));
    assert!(!ok && err.contains("Read-only file system"), "{err}");

    let mut worst = Duration::ZERO;
    for i in 0..5 {
        let data = pattern(40 + i, 100_000 + i as usize * 7_000);
        write_synced(&v.path(&format!("f{i}")), &data);
        let took = until_seen(
            &follower.path(&format!("f{i}")),
            &data,
            Duration::from_secs(10),
        );
        worst = worst.max(took);
    }
    // An overwrite of a file the follower has read (and cached) shows too.
    let changed = pattern(99, 100_000);
    write_synced(&v.path("f0"), &changed);
    until_seen(&follower.path("f0"), &changed, Duration::from_secs(10));
    std::fs::remove_file(v.path("f1")).unwrap();
    std::fs::File::open(&v.mnt).unwrap().sync_all().unwrap();
    let start = Instant::now();
    while follower.path("f1").exists() {
        assert!(start.elapsed() < Duration::from_secs(10), "f1 still there");
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("follower staleness after fsync: worst {worst:?} of 5 files (polling every 200 ms)");
    drop(follower);
    v.unmount();
}
per_backend!(sees_commits_within_seconds: local, s3);

fn reads_on_across_compaction(backend: Backend) {
    let mut v = Volume::new(backend);
    v.set_env("SEALEDFS_FOLLOW_MS", "200");
    v.mount();
    let files: Vec<Vec<u8>> = (0..60).map(|i| pattern(i, 40_000)).collect();
    for (i, data) in files.iter().enumerate() {
        std::fs::write(v.path(&format!("f{i}")), data).unwrap();
    }
    std::fs::File::open(&v.mnt).unwrap().sync_all().unwrap();
    sh(&format!("sync -f '{}'", v.mnt.display()));
    let (out, follower) = v.mount_elsewhere("follow", &["--follow"]);
    assert!(out.status.success(), "{}", stderr(&out));
    for (i, data) in files.iter().enumerate().take(10) {
        until_seen(
            &follower.path(&format!("f{i}")),
            data,
            Duration::from_secs(10),
        );
    }
    // Most files go: their pack is mostly dead, and the idle writer
    // compacts it, moving the survivors to a new pack.
    for i in 10..60 {
        std::fs::remove_file(v.path(&format!("f{i}"))).unwrap();
    }
    std::fs::File::open(&v.mnt).unwrap().sync_all().unwrap();
    wait_for("the writer to compact", Duration::from_secs(30), || {
        v.log_text().contains("compaction moved")
    });
    std::fs::File::open(&v.mnt).unwrap().sync_all().unwrap();
    for (i, data) in files.iter().enumerate().take(10) {
        let got = std::fs::read(follower.path(&format!("f{i}"))).unwrap();
        assert!(&got == data, "f{i} on the follower after compaction");
    }
    drop(follower);
    v.unmount();
}
per_backend!(reads_on_across_compaction: local, s3);
