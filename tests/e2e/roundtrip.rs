//! Everyday tools over the mount: cp -a, tar, rsync, ls -lR, grep -r; a
//! clean SIGTERM; and the store not growing across write/delete cycles.

use std::time::{Duration, Instant};

use crate::harness::*;

/// A varied tree: empty, small, multi-chunk and sparse files, symlinks,
/// hard links, modes and old mtimes.
fn make_tree(root: &std::path::Path) {
    let r = root.display();
    sh(&format!(
        "mkdir -p '{r}/a/b/c' && cd '{r}' && : > empty && printf 'needle in a haystack\\n' > a/small \
         && head -c 1500000 /dev/urandom > a/b/big && truncate -s 5000000 a/sparse \
         && printf x | dd of=a/sparse bs=1 seek=4000000 conv=notrunc status=none \
         && ln -s ../small a/b/link && ln a/small a/b/c/hard && chmod 0600 a/b/big && chmod 0751 a/b \
         && touch -h -d '2001-01-01 01:01:01.5' a/small a/b/link && for i in $(seq 1 200); do echo $i > a/b/c/f$i; done"
    ));
}

/// Compares two listings, showing only the first differing lines.
fn same(got: &str, want: &str, what: &str) {
    if got != want {
        let diff: Vec<_> = got
            .lines()
            .zip(want.lines())
            .filter(|(a, b)| a != b)
            .take(5)
            .collect();
        panic!("{what}: listings differ (got, want): {diff:#?}");
    }
}

fn tree_listing(root: &std::path::Path) -> String {
    sh(&format!(
        "cd '{}' && find . -mindepth 1 -printf '%p %y %m %n %T@ %l\\n' | sort && find . -type f -print0 | sort -z | xargs -0 sha256sum",
        root.display()
    ))
}

#[test]
fn cp_tar_rsync_round_trips() {
    let mut v = Volume::new();
    v.mount();
    let src = v.dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    make_tree(&src);
    let want = tree_listing(&src);
    let (s, m, d) = (
        src.display().to_string(),
        v.mnt.display().to_string(),
        v.dir.path().display().to_string(),
    );

    sh(&format!("cp -a '{s}' '{m}/cp'"));
    v.remount();
    same(&tree_listing(&v.path("cp")), &want, "cp -a in");
    sh(&format!("cp -a '{m}/cp' '{d}/cp-out'"));
    same(
        &tree_listing(&v.dir.path().join("cp-out")),
        &want,
        "cp -a out",
    );

    // pax format keeps nanosecond mtimes.
    sh(&format!(
        "mkdir '{m}/tar' && tar --format=posix -C '{s}' -cf - . | tar -C '{m}/tar' -xf -"
    ));
    sh(&format!(
        "mkdir '{d}/tar-out' && tar --format=posix -C '{m}/tar' -cf - . | tar -C '{d}/tar-out' -xf -"
    ));
    same(&tree_listing(&v.dir.path().join("tar-out")), &want, "tar");

    sh(&format!("rsync -aH '{s}/' '{m}/rsync/'"));
    v.remount();
    let changes = sh(&format!(
        "rsync -aHn --checksum --itemize-changes '{s}/' '{m}/rsync/'"
    ));
    assert_eq!(
        changes.trim(),
        "",
        "rsync sees nothing to do after a remount"
    );

    let ls = sh(&format!("ls -lR '{m}' | wc -l"));
    assert!(ls.trim().parse::<u32>().unwrap() > 600);
    let hits = sh(&format!("grep -rl 'needle in a haystack' '{m}' | sort"));
    assert_eq!(
        hits.lines().count(),
        6,
        "small and its hard link, in 3 copies:\n{hits}"
    );
}

#[test]
fn sigterm_commits_and_exits() {
    let mut v = Volume::new();
    v.mount();
    std::fs::write(v.path("unsynced"), b"closed but never fsynced").unwrap();
    let pid = v.daemon_pid().unwrap();
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let start = Instant::now();
    while v.daemon_pid().is_some() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "daemon exits after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    v.mount();
    assert_eq!(
        std::fs::read(v.path("unsynced")).unwrap(),
        b"closed but never fsynced"
    );
}

/// Writes and deletes 1 GiB three times: the store must not grow, and
/// prints the copy times and the daemon's peak memory.
#[test]
fn store_does_not_grow_across_write_delete_cycles() {
    let mut v = Volume::new();
    v.mount();
    let src = v.dir.path().join("gib");
    sh(&format!(
        "head -c 1073741824 /dev/urandom > '{}'",
        src.display()
    ));
    let data_bytes = |v: &Volume| -> u64 {
        v.objects()
            .iter()
            .filter(|p| p.starts_with("data"))
            // A pack may be deleted between the listing and the stat.
            .filter_map(|p| std::fs::metadata(v.store.join(p)).ok())
            .map(|m| m.len())
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
        let stored = data_bytes(&v);
        assert!(
            stored >= 1 << 30,
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
        while data_bytes(&v) > 0 && start.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(50));
        }
        after.push(data_bytes(&v));
        let hwm = v
            .daemon_pid()
            .and_then(|p| std::fs::read_to_string(format!("/proc/{p}/status")).ok())
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmHWM"))
                    .map(str::to_owned)
            })
            .unwrap_or_default();
        eprintln!("cycle {cycle}: 1 GiB in {copy_in:?}, compared out {copy_out:?}, daemon {hwm}");
    }
    assert_eq!(
        after,
        vec![0, 0, 0],
        "no data left in the store after each delete"
    );
    let st = nix_statvfs(&v.mnt);
    assert!(
        st.0 > 0 && st.1 <= st.0,
        "statvfs blocks {} free {}",
        st.0,
        st.1
    );
}

fn nix_statvfs(p: &std::path::Path) -> (u64, u64) {
    let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut st) }, 0);
    (st.f_blocks, st.f_bfree)
}
