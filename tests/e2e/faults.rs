//! An S3 volume mounted through the misbehaving proxy (proxy.rs) in front
//! of the test server (only S3 has a network to fail): error bursts,
//! throttling, resets and stalls during a copy lose nothing; during an outage of 40 s writes wait, no fsync claims
//! success the store has not given, and everything is committed once the
//! store is back and survives a remount.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::harness::*;
use crate::proxy::Fault;

per_backend!(error_bursts_resets_and_stalls_during_a_copy_lose_nothing: s3_proxy);
fn error_bursts_resets_and_stalls_during_a_copy_lose_nothing(backend: Backend) {
    let mut v = Volume::new(backend);
    v.mount();
    let src = v.dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    sh(&format!(
        "head -c 12000000 /dev/urandom > '{0}/big' && for i in $(seq 20); do head -c $((i * 3000)) /dev/urandom > '{0}/small'$i; done",
        src.display()
    ));
    let mut queued = 0;
    for _ in 0..4 {
        for fault in [
            Fault::Status(503, "SlowDown"),
            Fault::Status(503, "SlowDown"),
            Fault::Status(503, "SlowDown"),
            Fault::Status(500, "InternalError"),
            Fault::Reset,
            Fault::Delay(Duration::from_millis(1500)),
        ] {
            v.proxy().push(None, fault);
            queued += 1;
        }
        // The ambiguous one: the PUT lands, its answer is lost.
        v.proxy().push(Some("PUT"), Fault::ResetAfterForward);
        v.proxy()
            .push(Some("PUT"), Fault::Status(503, "ServiceUnavailable"));
        queued += 2;
    }
    let dst = v.path("copy");
    sh(&format!(
        "cp -r '{}' '{}' && sync '{}'/*",
        src.display(),
        dst.display(),
        dst.display()
    ));
    let during = v.proxy().faults_applied();
    assert!(
        during >= queued / 2,
        "the copy met the faults ({during} of {queued})"
    );
    // Reads after a remount go to the store, through more faults. They are
    // queued once the mount is up: opening a store has a short deadline on
    // purpose (a wrong endpoint fails in seconds), so a burst at the mount
    // itself would test that deadline, not the reads.
    v.unmount();
    v.mount();
    let before_reads = v.proxy().faults_applied();
    for _ in 0..3 {
        v.proxy().push(Some("GET"), Fault::Status(503, "SlowDown"));
        v.proxy().push(Some("GET"), Fault::Reset);
        v.proxy()
            .push(Some("GET"), Fault::Status(500, "InternalError"));
    }
    let names: Vec<String> = std::fs::read_dir(&src)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 21);
    for name in &names {
        assert_eq!(
            sha256_of(&src.join(name)),
            sha256_of(&dst.join(name)),
            "{name}"
        );
    }
    assert_eq!(
        v.proxy().faults_applied() - before_reads,
        9,
        "the reads after the remount met every queued fault"
    );
    v.unmount();
    eprintln!(
        "fault copy: {} faults applied over {} requests, {} files intact",
        v.proxy().faults_applied(),
        v.proxy().requests(),
        names.len()
    );
}

/// One fsynced record: when its fsync returned (since the test began) and
/// whether it succeeded.
struct Sync {
    n: usize,
    done: Duration,
    ok: bool,
    took: Duration,
}

per_backend!(outage_writes_wait_fsync_never_lies_and_all_is_committed_after: s3_proxy);
fn outage_writes_wait_fsync_never_lies_and_all_is_committed_after(backend: Backend) {
    let mut v = Volume::new(backend);
    v.mount();
    let t0 = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let syncs = Arc::new(Mutex::new(Vec::<Sync>::new()));
    let writer = {
        let (stop, syncs, path) = (stop.clone(), syncs.clone(), v.path("log"));
        std::thread::spawn(move || {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .unwrap();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                // A write fails only past the store's own deadline (5 min),
                // far beyond this outage.
                f.write_all(format!("record-{n:06}\n").as_bytes())
                    .expect("a write during the outage waits, never fails");
                let start = Instant::now();
                let ok = f.sync_all().is_ok();
                syncs.lock().unwrap().push(Sync {
                    n,
                    done: t0.elapsed(),
                    ok,
                    took: start.elapsed(),
                });
                n += 1;
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    std::thread::sleep(Duration::from_secs(3));
    // 40 s without the store: first it answers 503s, then it resets every
    // connection. Longer than the 30 s lease TTL, so the lease lapses on
    // the holder's clock and must be renewed before writing resumes.
    let outage_start = t0.elapsed();
    v.proxy()
        .set_standing(Fault::Status(503, "ServiceUnavailable"));
    std::thread::sleep(Duration::from_secs(20));
    v.proxy().set_standing(Fault::Reset);
    // Meanwhile a whole-file write with fsync waits too.
    let dd = std::process::Command::new("dd")
        .args([
            "if=/dev/urandom",
            &format!("of={}", v.path("during").display()),
            "bs=1M",
            "count=3",
            "conv=fsync",
            "status=none",
        ])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(20));
    let outage_end = t0.elapsed();
    v.proxy().set_standing(Fault::Pass);
    let dd = dd.wait_with_output().unwrap();
    std::thread::sleep(Duration::from_secs(5));
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();

    let syncs = std::mem::take(&mut *syncs.lock().unwrap());
    // A commit whose requests all got through before the switch may still
    // be answered a little later (on a loaded machine, up to a second or
    // two); any later success would be a claim without the store.
    let slack = Duration::from_secs(2);
    for s in &syncs {
        assert!(
            !(s.ok && s.done > outage_start + slack && s.done < outage_end),
            "fsync of record {} claimed success during the outage ({:?} after it began)",
            s.n,
            s.done - outage_start
        );
    }
    let waited = syncs
        .iter()
        .filter(|s| s.took > Duration::from_secs(10) || !s.ok)
        .count();
    assert!(waited >= 1, "an fsync met the outage");
    let after: Vec<&Sync> = syncs.iter().filter(|s| s.done > outage_end).collect();
    assert!(
        after.iter().filter(|s| s.ok).count() >= 3,
        "fsync works again after the outage"
    );
    let during_ok = dd.status.success();

    v.unmount();
    v.mount();
    let text = std::fs::read_to_string(v.path("log")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    // Every acknowledged record is there (one whose fsync failed may be
    // there too: it stayed buffered and was committed after).
    for s in syncs.iter().filter(|s| s.ok) {
        let want = format!("record-{:06}", s.n);
        assert!(lines.contains(&want.as_str()), "acknowledged {want} lost");
    }
    assert!(
        lines
            .iter()
            .all(|l| l.starts_with("record-") && l.len() == 13),
        "torn records: {lines:?}"
    );
    if during_ok {
        assert_eq!(std::fs::metadata(v.path("during")).unwrap().len(), 3 << 20);
    }
    v.unmount();
    let eio = syncs.iter().filter(|s| !s.ok).count();
    let longest = syncs.iter().map(|s| s.took).max().unwrap();
    eprintln!(
        "outage of {:?}: {} fsyncs ({} EIO, longest wait {longest:?}), dd with fsync during it {}; \
         {} records after remount",
        outage_end - outage_start,
        syncs.len(),
        eio,
        if during_ok {
            "succeeded after it"
        } else {
            "failed"
        },
        lines.len()
    );
}
