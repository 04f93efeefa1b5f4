//! Round trips on every backend: a varied tree through cp -a, tar and
//! rsync into the mount and out again, across remounts, then ls -lR and
//! grep -r over it all; a clean SIGTERM; and the store not growing across
//! write/delete cycles.

use std::time::{Duration, Instant};

use crate::harness::tree::{TREE_SMALL_FILES, listing, same, shell_paths, volume_with_tree};
use crate::harness::*;

per_backend!(cp_tar_rsync_round_trips: local, s3);
fn cp_tar_rsync_round_trips(backend: Backend) {
    let (mut v, src) = volume_with_tree(backend);
    let want = listing(&src);
    let (s, m, d) = shell_paths(&v, &src);

    sh(&format!("cp -a '{s}' '{m}/cp'"));
    v.remount();
    same(&listing(&v.path("cp")), &want, "cp -a in");
    sh(&format!("cp -a '{m}/cp' '{d}/cp-out'"));
    same(&listing(&v.dir.path().join("cp-out")), &want, "cp -a out");

    // pax format keeps nanosecond mtimes and xattrs.
    let tar = "tar --format=posix --xattrs --xattrs-include='user.*'";
    sh(&format!(
        "mkdir '{m}/tar' && {tar} -C '{s}' -cf - . | {tar} -C '{m}/tar' -xpf -"
    ));
    sh(&format!(
        "mkdir '{d}/tar-out' && {tar} -C '{m}/tar' -cf - . | {tar} -C '{d}/tar-out' -xpf -"
    ));
    same(&listing(&v.dir.path().join("tar-out")), &want, "tar");

    sh(&format!("rsync -aHX '{s}/' '{m}/rsync/'"));
    v.remount();
    let changes = sh(&format!(
        "rsync -aHXn --checksum --itemize-changes '{s}/' '{m}/rsync/'"
    ));
    assert_eq!(
        changes.trim(),
        "",
        "rsync sees nothing to do after a remount"
    );

    let ls = sh(&format!("ls -lR '{m}' | wc -l"));
    assert!(
        ls.trim().parse::<usize>().unwrap() > 3 * TREE_SMALL_FILES,
        "ls -lR lists the three copies: {ls}"
    );
    let hits = sh(&format!("grep -rl 'small file' '{m}' | sort"));
    assert_eq!(
        hits.lines().count(),
        6,
        "small and its hard link, in 3 copies:\n{hits}"
    );
}

per_backend!(sigterm_commits_and_exits: local, s3);
fn sigterm_commits_and_exits(backend: Backend) {
    let mut v = Volume::new(backend);
    v.mount();
    std::fs::write(v.path("unsynced"), b"closed but never fsynced").unwrap();
    let pid = v.daemon_pid().unwrap();
    unsafe { libc::kill(pid, libc::SIGTERM) };
    wait_for(
        "the daemon to exit after SIGTERM",
        Duration::from_secs(30),
        || v.daemon_pid().is_none(),
    );
    v.mount();
    assert_eq!(
        std::fs::read(v.path("unsynced")).unwrap(),
        b"closed but never fsynced"
    );
}

/// How much each write/delete cycle writes: 1 GiB on disk; less on S3,
/// whose test server keeps every object in memory.
fn cycle_bytes(backend: Backend) -> u64 {
    if backend.is_s3() { 96 << 20 } else { 1 << 30 }
}

per_backend!(store_does_not_grow_across_write_delete_cycles: local, s3);
/// Writes and deletes a large file three times: the store must not grow,
/// and prints the copy times and the daemon's peak memory.
fn store_does_not_grow_across_write_delete_cycles(backend: Backend) {
    let size = cycle_bytes(backend);
    let mut v = Volume::new(backend);
    // No follower here: retired packs may go as soon as their commit does.
    v.set_env("SEALEDFS_RETIRE_GRACE_MS", "0");
    v.mount();
    let src = v.dir.path().join("gib");
    sh(&format!(
        "head -c {size} /dev/urandom > '{}'",
        src.display()
    ));
    let store = v.store();
    // A pack may be deleted while it is listed: the sum is then lower.
    let data_bytes = || -> u64 {
        store
            .list("data/")
            .unwrap_or_default()
            .iter()
            .map(|o| o.size)
            .sum()
    };
    let mut after = Vec::new();
    for cycle in 0..3 {
        let t = Instant::now();
        sh(&format!(
            "dd if='{}' of='{}' bs=1M conv=fsync status=none",
            src.display(),
            v.path("gib").display()
        ));
        let copy_in = t.elapsed();
        let stored = data_bytes();
        assert!(
            stored >= size,
            "cycle {cycle}: the data is in the store ({stored} bytes)"
        );
        let t = Instant::now();
        sh(&format!(
            "cmp '{}' '{}'",
            src.display(),
            v.path("gib").display()
        ));
        let copy_out = t.elapsed();
        std::fs::remove_file(v.path("gib")).unwrap();
        // fsync on the mount root commits the unlink; the packs go at once.
        std::fs::File::open(&v.mnt).unwrap().sync_all().unwrap();
        let start = Instant::now();
        while data_bytes() > 0 && start.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(50));
        }
        after.push(data_bytes());
        let hwm = v
            .daemon_pid()
            .and_then(|p| std::fs::read_to_string(format!("/proc/{p}/status")).ok())
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmHWM"))
                    .map(str::to_owned)
            })
            .unwrap_or_default();
        eprintln!(
            "cycle {cycle}: {size} bytes in {copy_in:?}, compared out {copy_out:?}, daemon {hwm}"
        );
    }
    assert_eq!(
        after,
        vec![0, 0, 0],
        "no data left in the store after each delete"
    );
    let st = statvfs(&v.mnt);
    assert!(
        st.0 > 0 && st.1 <= st.0,
        "statvfs blocks {} free {}",
        st.0,
        st.1
    );
}

fn statvfs(p: &std::path::Path) -> (u64, u64) {
    let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut st) }, 0);
    (st.f_blocks, st.f_bfree)
}
