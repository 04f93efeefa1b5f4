//! `--cache-dir`: the disk cache of pack ciphertext on S3 volumes, counted
//! through the request proxy. A file written through the cache is read
//! after a remount with no data GET; a file read once is read again with
//! none even when the RAM cache is smaller than it; a tampered, truncated
//! or stale (re-keyed) block is dropped and fetched again, never returned
//! and never an EIO; the directory stays within its bound.

use std::path::{Path, PathBuf};

use crate::harness::*;

/// The block files of the cache at `dir` (one volume's subdirectory).
fn blocks(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = files_below(dir)
        .into_iter()
        .filter(|p| p.components().any(|c| c.as_os_str() == "data"))
        .collect();
    files.sort();
    files
}

fn bytes_of(files: &[PathBuf]) -> u64 {
    files
        .iter()
        .map(|f| std::fs::metadata(f).map_or(0, |m| m.len()))
        .sum()
}

/// GETs of data packs the proxy saw (the lease, journal and audit trail
/// go to the store, as they must).
fn gets(v: &Volume) -> usize {
    v.proxy()
        .request_lines()
        .iter()
        .filter(|l| l.starts_with("GET ") && l.contains("/data/"))
        .count()
}

/// Mounts with the disk cache at `cache` and a RAM cache of 32 MiB, then
/// waits for the mount's own background reads before counting from zero.
fn mount_cached(v: &mut Volume, cache: &Path, extra: &[&str]) {
    let mut args = vec![
        "--cache-size",
        "32M",
        "--cache-dir",
        cache.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    v.mount_with(&args);
    v.proxy().wait_until_quiet();
    v.proxy().reset_request_kinds();
}

/// Drops the kernel's page cache of `path`, so the next read reaches the
/// daemon.
fn drop_page_cache(path: &Path) {
    sh(&format!(
        "dd if='{}' iflag=nocache count=0 status=none",
        path.display()
    ));
}

fn write_file(path: &Path, data: &[u8]) {
    std::fs::write(path, data).unwrap();
    std::fs::File::open(path).unwrap().sync_all().unwrap();
}

per_backend!(a_remount_reads_from_the_disk_cache: s3_proxy);
fn a_remount_reads_from_the_disk_cache(backend: Backend) {
    let mut v = Volume::new(backend);
    let cache = v.dir.path().join("disk-cache");
    let data = pattern(11, 64 << 20);
    mount_cached(&mut v, &cache, &[]);
    write_file(&v.path("big"), &data);
    v.unmount();

    // Written through as it uploaded: the cold read after a remount
    // costs no GET although the file is twice the RAM cache.
    mount_cached(&mut v, &cache, &[]);
    let got = std::fs::read(v.path("big")).unwrap();
    assert!(got == data, "the file read back differs");
    assert_eq!(gets(&v), 0, "{:?}", v.proxy().request_lines());
    let status = v.run(&["status", v.mnt.to_str().unwrap()], &[]);
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("disk cache:"),
        "{}",
        String::from_utf8_lossy(&status.stdout)
    );
    v.unmount();

    // A fresh, empty disk cache: the first read fetches, the second,
    // with the RAM cache long evicted, does not.
    let fresh = v.dir.path().join("fresh-cache");
    mount_cached(&mut v, &fresh, &[]);
    let got = std::fs::read(v.path("big")).unwrap();
    assert!(got == data, "first read differs");
    assert!(gets(&v) > 0, "the first read must reach the store");
    drop_page_cache(&v.path("big"));
    v.proxy().reset_request_kinds();
    let got = std::fs::read(v.path("big")).unwrap();
    assert!(got == data, "second read differs");
    assert_eq!(gets(&v), 0, "{:?}", v.proxy().request_lines());
    v.unmount();
}

per_backend!(a_damaged_block_is_fetched_again: s3_proxy);
fn a_damaged_block_is_fetched_again(backend: Backend) {
    let mut v = Volume::new(backend);
    let cache = v.dir.path().join("disk-cache");
    let data = pattern(12, 24 << 20);
    mount_cached(&mut v, &cache, &[]);
    write_file(&v.path("f"), &data);
    v.unmount();

    let files = blocks(&cache);
    assert!(files.len() >= 20, "{} block files", files.len());
    // Flip a byte in the middle of one block; cut another in half.
    let flipped = &files[3];
    let mut bytes = std::fs::read(flipped).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(flipped, &bytes).unwrap();
    let cut = &files[10];
    let len = std::fs::metadata(cut).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(cut)
        .unwrap()
        .set_len(len / 2)
        .unwrap();

    mount_cached(&mut v, &cache, &[]);
    let got = std::fs::read(v.path("f")).unwrap();
    assert!(got == data, "the file read back differs");
    let log = v.log_text();
    assert!(
        log.contains("failed authentication; dropped, fetching from the store"),
        "{log}"
    );
    // Only the damaged ranges were fetched again.
    let n = gets(&v);
    assert!((1..=8).contains(&n), "{n} GETs");
    // And cached again: once the next read fills what a concurrent read
    // ahead skipped while a damaged block was dropped, reads are local.
    for _ in 0..2 {
        drop_page_cache(&v.path("f"));
        v.proxy().reset_request_kinds();
        assert!(std::fs::read(v.path("f")).unwrap() == data);
    }
    assert_eq!(gets(&v), 0, "{:?}", v.proxy().request_lines());
    v.unmount();
}

per_backend!(the_disk_cache_stays_within_its_bound: s3_proxy);
fn the_disk_cache_stays_within_its_bound(backend: Backend) {
    let mut v = Volume::new(backend);
    let cache = v.dir.path().join("disk-cache");
    // The -o spelling, as an fstab line gives it.
    mount_cached(&mut v, &cache, &["-o", "cache_dir_size=8M"]);
    let data = pattern(13, 40 << 20);
    write_file(&v.path("f"), &data);
    let bound = (8 << 20) + (1 << 20);
    assert!(bytes_of(&blocks(&cache)) <= bound);
    drop_page_cache(&v.path("f"));
    assert!(std::fs::read(v.path("f")).unwrap() == data);
    let held = bytes_of(&blocks(&cache));
    assert!(held <= bound, "{held} bytes held");
    assert!(held >= 4 << 20, "{held} bytes held: the cache is used");
    v.unmount();
    mount_cached(&mut v, &cache, &["--cache-dir-size", "2M"]);
    let held = bytes_of(&blocks(&cache));
    assert!(
        held <= (3 << 20),
        "{held} bytes held after a remount with a smaller bound"
    );
    v.unmount();
}

per_backend!(a_rotated_volume_reads_through_a_stale_cache: s3_proxy);
fn a_rotated_volume_reads_through_a_stale_cache(backend: Backend) {
    let mut v = Volume::new(backend);
    let cache = v.dir.path().join("disk-cache");
    let data = pattern(14, 6 << 20);
    mount_cached(&mut v, &cache, &[]);
    write_file(&v.path("f"), &data);
    v.unmount();
    // Re-sealed in place by a command that knows nothing of the cache.
    let out = v.run(&["key", "rotate", &v.url], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    mount_cached(&mut v, &cache, &[]);
    assert!(std::fs::read(v.path("f")).unwrap() == data);
    assert!(v.log_text().contains("dropped, fetching from the store"));

    // Re-sealed by this mount: its blocks are replaced as they upload, so
    // the next mount reads the new ciphertext from disk and drops nothing.
    let out = v.run(&["key", "rotate", &v.url], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    drop_page_cache(&v.path("f"));
    assert!(std::fs::read(v.path("f")).unwrap() == data);
    v.unmount();
    std::fs::write(&v.log, "").unwrap();
    mount_cached(&mut v, &cache, &[]);
    assert!(std::fs::read(v.path("f")).unwrap() == data);
    assert_eq!(gets(&v), 0, "{:?}", v.proxy().request_lines());
    let log = v.log_text();
    assert!(!log.contains("failed authentication"), "{log}");
    v.unmount();
}

per_backend!(cache_dir_mistakes_are_refused: local, s3);
fn cache_dir_mistakes_are_refused(backend: Backend) {
    let mut v = Volume::new(backend);
    let local = v.local_dir().is_some();
    let cache = v.dir.path().join("disk-cache");
    let inside = v.mnt.join("cache");
    let out = v.try_mount(&["--cache-dir", cache.to_str().unwrap()]);
    if local {
        let msg = assert_cli_error(&out, 1);
        assert!(msg.contains("--cache-dir is for S3 volumes"), "{msg}");
        return;
    }
    assert!(out.status.success(), "{}", stderr(&out));
    v.adopt_mount();
    // A second mount of the volume on this host runs without the cache.
    let (out, mut other) = v.mount_elsewhere(
        "other",
        &["--read-only", "--cache-dir", cache.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let log = std::fs::read_to_string(v.dir.path().join("other.log")).unwrap();
    assert!(log.contains("runs without a disk cache"), "{log}");
    other.unmount();
    v.unmount();
    let out = v.try_mount(&["--cache-dir", inside.to_str().unwrap()]);
    let msg = assert_cli_error(&out, 1);
    assert!(msg.contains("is inside the mountpoint"), "{msg}");
    let out = v.try_mount(&["--cache-dir-size", "1G"]);
    let msg = assert_cli_error(&out, 1);
    assert!(msg.contains("needs --cache-dir"), "{msg}");
    // A directory other users can write (not sticky) is refused and left
    // as it is; a symlink in its place is refused.
    use std::os::unix::fs::PermissionsExt;
    let open = v.dir.path().join("open-to-all");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = v.try_mount(&["--cache-dir", open.to_str().unwrap()]);
    let msg = assert_cli_error(&out, 1);
    assert!(msg.contains("not sticky"), "{msg}");
    let mode = std::fs::metadata(&open).unwrap().permissions().mode();
    assert_eq!(mode & 0o7777, 0o777);
    let link = v.dir.path().join("link");
    std::os::unix::fs::symlink(&cache, &link).unwrap();
    let out = v.try_mount(&["--cache-dir", link.to_str().unwrap()]);
    let msg = assert_cli_error(&out, 1);
    assert!(msg.contains("is a symlink"), "{msg}");
}
