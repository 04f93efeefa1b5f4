//! How many S3 requests the common operations cost, counted by the proxy
//! (proxy.rs) in front of the test server: mounting an empty volume,
//! `stat` of 1,000 files, writing and reading a 64 MiB file. Printed for
//! the record, with upper bounds that catch a regression to per-block or
//! per-file requests.

use std::collections::BTreeMap;

use crate::harness::*;

fn get(counts: &BTreeMap<String, usize>, kind: &str) -> usize {
    counts.get(kind).copied().unwrap_or(0)
}

fn total(counts: &BTreeMap<String, usize>) -> usize {
    counts.values().sum()
}

per_backend!(request_counts_of_common_operations: s3_proxy);
fn request_counts_of_common_operations(backend: Backend) {
    let mut v = Volume::new(backend);
    let mut report = Vec::new();

    v.proxy().reset_request_kinds();
    v.mount();
    let mount_empty = v.proxy().request_kinds();
    report.push(("mount of an empty volume", mount_empty.clone()));

    // 1,000 files, committed; then a fresh mount so nothing is cached but
    // what a mount loads.
    for i in 0..1000 {
        std::fs::write(v.path(&format!("f{i:04}")), b"x").unwrap();
    }
    v.unmount();
    v.mount();
    // The mount's one-off garbage scan (a listing, checkpoint reads) runs
    // in the background: let it finish so the counts are the stats' own.
    v.proxy().wait_until_quiet();
    v.proxy().reset_request_kinds();
    for i in 0..1000 {
        std::fs::metadata(v.path(&format!("f{i:04}"))).unwrap();
    }
    let stat = v.proxy().request_kinds();
    report.push(("stat of 1,000 files (after mount)", stat.clone()));

    v.proxy().reset_request_kinds();
    let big = v.path("big");
    sh(&format!(
        "head -c {} /dev/urandom | dd of='{}' bs=1M iflag=fullblock conv=fsync status=none",
        64 << 20,
        big.display()
    ));
    let write = v.proxy().request_kinds();
    report.push(("write of a 64 MiB file (with fsync)", write.clone()));

    v.unmount();
    v.mount();
    v.proxy().reset_request_kinds();
    sh(&format!("cat '{}' > /dev/null", big.display()));
    let read = v.proxy().request_kinds();
    report.push(("read of a 64 MiB file (after mount)", read.clone()));
    v.unmount();

    for (what, counts) in &report {
        eprintln!("S3 requests, {what}: {} {counts:?}", total(counts));
    }
    assert!(total(&mount_empty) <= 25, "{mount_empty:?}");
    assert_eq!(get(&stat, "GET"), 0, "{stat:?}");
    assert!(
        total(&stat) <= 2,
        "only a lease renewal may happen: {stat:?}"
    );
    // 8 MiB packs: 8 pack PUTs, plus journal and lease.
    assert!(get(&write, "PUT") <= 20, "{write:?}");
    assert!(get(&write, "GET") <= 4, "{write:?}");
    // Ranged GETs of a few MiB each at most, no per-chunk requests.
    assert!(get(&read, "GET") <= 64, "{read:?}");
    assert!(
        get(&read, "GET") >= 8,
        "the data came from the store: {read:?}"
    );
}

// Issue 10, part 3: 300 files of 4 KiB written together in one directory
// and read cold one after another (`cat d/*`) cost a few ranged GETs,
// not one per file; every byte is checked.
per_backend!(small_files_read_cold_come_in_together: s3_proxy);
fn small_files_read_cold_come_in_together(backend: Backend) {
    let mut v = Volume::new(backend);
    v.mount();
    let dir = v.path("d");
    std::fs::create_dir(&dir).unwrap();
    let body = |i: usize| -> Vec<u8> { (0..4096).map(|j| (i * 7 + j) as u8).collect() };
    for i in 0..300 {
        std::fs::write(dir.join(format!("f{i:04}")), body(i)).unwrap();
    }
    v.unmount();
    v.mount();
    v.proxy().wait_until_quiet();
    v.proxy().reset_request_kinds();
    for i in 0..300 {
        let got = std::fs::read(dir.join(format!("f{i:04}"))).unwrap();
        assert!(got == body(i), "f{i:04} differs");
    }
    let read = v.proxy().request_kinds();
    v.unmount();
    eprintln!(
        "S3 requests, 300 small files read cold: {} {read:?}",
        total(&read)
    );
    assert!(get(&read, "GET") <= 10, "{read:?}");
}

per_backend!(small_fsyncs_cost_one_put_each: s3_proxy);
/// A database's commits: a 4 KiB `pwrite` and `fsync` each, on a file kept
/// open. Each costs one PUT, the journal segment carrying the data, not a
/// pack and then a segment (plus, once, the audit segment holding the
/// open, and maybe a lease renewal).
fn small_fsyncs_cost_one_put_each(backend: Backend) {
    let mut v = Volume::new(backend);
    v.mount();
    let db = v.path("db");
    std::fs::write(&db, vec![7u8; 256 << 10]).unwrap();
    sh(&format!("sync '{}'", db.display()));
    v.proxy().wait_until_quiet();
    v.proxy().reset_request_kinds();
    let rounds = 20;
    sh(&format!(
        "python3 -c 'import os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
for i in range({rounds}):
    os.pwrite(fd, os.urandom(4096), i * 12288)
    os.fsync(fd)
os.close(fd)' '{}'",
        db.display()
    ));
    let counts = v.proxy().request_kinds();
    eprintln!("S3 requests, {rounds} × (4 KiB pwrite + fsync): {counts:?}");
    assert!(get(&counts, "PUT") >= rounds, "{counts:?}");
    assert!(get(&counts, "PUT") <= rounds + 3, "{counts:?}");
    assert_eq!(get(&counts, "GET"), 0, "{counts:?}");
    v.unmount();
}
