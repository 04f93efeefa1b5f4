//! Crash rounds on every backend: writers run while the daemon is
//! SIGKILLed at a random moment; after each remount every fsynced record
//! is there, the editor-style save is a whole version, and the tree reads
//! cleanly. A killed daemon's lease names a dead pid on this host, so each
//! remount takes it at once instead of waiting out the TTL.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;

/// Rounds and the random time each writer runs before the kill (ms):
/// an fsync on S3 is several PUTs, so its rounds are fewer and longer.
fn crash_plan(backend: Backend) -> (u64, u64, u64) {
    match backend {
        Backend::Local => {
            let rounds = std::env::var("SEALEDFS_CRASH_ROUNDS")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(20);
            (rounds, 100, 1400)
        }
        Backend::S3 | Backend::S3Proxy => (5, 500, 2000),
    }
}

per_backend!(crash_rounds: local, s3);
fn crash_rounds(backend: Backend) {
    let (rounds, min_ms, spread_ms) = crash_plan(backend);
    // Distinct seeds per backend, as each ran before the merge.
    let seed_base = if backend.is_s3() { 1000 } else { 0 };
    let mut v = Volume::new(backend);
    v.mount();
    let ack = v.dir.path().join("acked");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/e2e/scripts/crash_writer.py"
    );
    for round in 0..rounds {
        let mut rng = lcg(seed_base + round);
        let mut writer = Command::new("python3")
            .args([
                script,
                v.mnt.to_str().unwrap(),
                ack.to_str().unwrap(),
                &round.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3");
        std::thread::sleep(Duration::from_millis(min_ms + rng(spread_ms)));
        v.kill();
        let _ = writer.kill();
        let _ = writer.wait();
        let start = Instant::now();
        v.mount();
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "round {round}: remount took {:?} (the dead holder's lease should be taken at once)",
            start.elapsed()
        );
        check_after_crash(&v, &ack, round);
    }
    let acked = std::fs::read_to_string(&ack)
        .unwrap_or_default()
        .lines()
        .count() as u64;
    eprintln!(
        "{rounds} crash rounds on {backend:?}, {acked} fsynced records acknowledged and verified"
    );
    assert!(
        acked >= rounds,
        "the writers made progress before the kills ({acked} records)"
    );
    assert!(
        v.log_text()
            .contains("a process gone from this host; taking it"),
        "remounts took the dead daemon's lease"
    );
    v.unmount();
}

fn check_after_crash(v: &Volume, ack: &Path, round: u64) {
    // Acknowledged records, per writer round.
    let mut acked: BTreeMap<u64, u64> = BTreeMap::new();
    for line in std::fs::read_to_string(ack).unwrap_or_default().lines() {
        let mut it = line.split(' ');
        let (r, n) = (
            it.next().unwrap().parse().unwrap(),
            it.next().unwrap().parse().unwrap(),
        );
        acked.insert(r, n);
    }
    for (&r, &last) in &acked {
        let log = std::fs::read(v.path(&format!("log-{r}")))
            .unwrap_or_else(|e| panic!("round {round}: log-{r}: {e}"));
        let text =
            String::from_utf8(log).unwrap_or_else(|_| panic!("round {round}: log-{r} is not text"));
        let mut lines = text.split_inclusive('\n').enumerate().peekable();
        while let Some((i, line)) = lines.next() {
            let want = format!("r{r}-{i:06}\n");
            let last_line = lines.peek().is_none();
            if line == want {
                continue;
            }
            // Only the very last, unacknowledged record may be cut short.
            assert!(
                last_line && i as u64 > last && want.starts_with(line),
                "round {round}: log-{r} line {i} is {line:?}, want {want:?}"
            );
        }
        let complete = text.matches('\n').count() as u64;
        assert!(
            complete > last,
            "round {round}: log-{r} lost acknowledged record {last} (has {complete})"
        );
    }
    // The editor-style save is one whole version, never empty or mixed.
    if let Ok(save) = std::fs::read_to_string(v.path("save.txt")) {
        let lines: Vec<&str> = save.lines().collect();
        assert_eq!(
            lines.len(),
            3000,
            "round {round}: save.txt has {} lines",
            lines.len()
        );
        assert!(
            lines.iter().all(|l| *l == lines[0]),
            "round {round}: save.txt mixes versions"
        );
    }
    // Every file in the tree reads to its end.
    let out = sh(&format!(
        "cd '{}' && find . -type f -exec cat {{}} + | wc -c",
        v.mnt.display()
    ));
    assert!(
        out.trim().parse::<u64>().is_ok(),
        "round {round}: tree not readable"
    );
}

per_backend!(crash_during_a_large_write: local, s3);
fn crash_during_a_large_write(backend: Backend) {
    let mut v = Volume::new(backend);
    v.mount();
    let mnt = v.mnt.display().to_string();
    // `sync -f` (syncfs) does not reach FUSE daemons; fsync does.
    sh(&format!(
        "head -c 3000000 /dev/urandom | dd of='{mnt}/before' bs=1M conv=fsync status=none iflag=fullblock"
    ));
    let before = sha256_of(&v.path("before"));
    let mut dd = Command::new("dd")
        .args([
            "if=/dev/zero",
            &format!("of={mnt}/big"),
            "bs=1M",
            "count=200",
            "conv=fsync",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(400));
    v.kill();
    let _ = dd.kill();
    let _ = dd.wait();
    v.mount();
    assert_eq!(sha256_of(&v.path("before")), before);
    if v.path("big").exists() {
        // Whatever part of it is there reads back as zeros.
        let nonzero = sh(&format!("tr -d '\\000' < '{mnt}/big' | wc -c"));
        assert_eq!(nonzero.trim(), "0");
    }
}
