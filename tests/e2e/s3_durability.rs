//! Crash rounds on an S3 volume: the same writers and checks as
//! durability.rs, with the daemon SIGKILLed mid-write. The lease of the
//! killed daemon names a dead pid on this host, so each remount takes it
//! at once instead of waiting out the TTL.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::durability::{check_after_crash, lcg};
use crate::harness::*;

const ROUNDS: u64 = 5;

#[test]
fn s3_crash_rounds_keep_every_fsynced_record() {
    let mut v = Volume::new_s3();
    v.mount();
    let ack = v.dir.path().join("acked");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/e2e/scripts/crash_writer.py"
    );
    for round in 0..ROUNDS {
        let mut rng = lcg(1000 + round);
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
        // Longer than the local rounds: an fsync is several PUTs here.
        std::thread::sleep(Duration::from_millis(500 + rng(2000)));
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
    eprintln!("{ROUNDS} crash rounds on S3, {acked} fsynced records acknowledged and verified");
    assert!(
        acked >= ROUNDS,
        "the writers made progress before the kills ({acked} records)"
    );
    assert!(
        v.log_text()
            .contains("a process gone from this host; taking it"),
        "remounts took the dead daemon's lease"
    );
    v.unmount();
}
