//! `sealedfs key rotate` on real mounts: under a write load through the
//! daemon, then again on the unmounted volume, and killed (SIGKILL) in the
//! middle and resumed by the next mount. Afterwards every file reads back
//! as written, the snapshot too, the keyslots hold only the new epoch, and
//! the old master key (captured before) opens no metadata object, audit
//! segment or snapshot record left in the store. (That it opens no live
//! pack segment either is checked segment by segment in the engine's own
//! test, `a_rotation_leaves_nothing_the_old_key_opens`.) A replica made
//! before the rotation is whole again after the next `replicate`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sealedfs::crypto::{KeyRing, Keys, UnitAd, open};
use sealedfs::volume::VolumeHeader;

use crate::harness::*;

fn header_of(v: &Volume) -> VolumeHeader {
    VolumeHeader::decode(&v.store().get("volume").unwrap()).unwrap()
}

fn ring_of(v: &Volume) -> KeyRing {
    header_of(v).unlock(PASS.as_bytes()).unwrap()
}

/// Files of a few sizes (several packs' worth), by name.
fn populate(v: &Volume, n: u64) -> BTreeMap<String, Vec<u8>> {
    std::fs::create_dir_all(v.path("d")).unwrap();
    let mut files = BTreeMap::new();
    for i in 0..n {
        let name = format!("d/f{i}");
        let data = pattern(i, 1000 + (i as usize % 7) * 300_000);
        std::fs::write(v.path(&name), &data).unwrap();
        files.insert(name, data);
    }
    files
}

fn assert_files(v: &Volume, files: &BTreeMap<String, Vec<u8>>) {
    for (name, data) in files {
        let got = std::fs::read(v.path(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(got == *data, "{name} differs after the rotation");
    }
}

/// Nothing sealed as one object opens under `old`'s keys any more.
fn assert_old_key_opens_nothing(v: &Volume, old: &Keys, vid: &[u8; 16]) {
    let mut checked = 0;
    for (key, body) in all_objects(&*v.store()) {
        let sub = if key.starts_with("meta/") || key.starts_with("snapshots/") {
            &old.meta
        } else if key.starts_with("audit/") {
            &old.audit
        } else if key == "lease" {
            &old.lease
        } else {
            continue;
        };
        // An attic segment is sealed for its place in the journal; there
        // is no attic here.
        assert!(
            open(sub, &UnitAd::whole(vid, &key), &body).is_err(),
            "{key} still opens under the old key"
        );
        checked += 1;
    }
    assert!(checked >= 8, "only {checked} objects checked");
}

fn key_epoch(v: &Volume) -> String {
    let out = v.run(&["key", "list", &v.url], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = text.lines().next().unwrap_or_default();
    line.rsplit("key epoch ")
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn rotation_under_load(backend: Backend) {
    let mut v = Volume::new(backend);
    v.mount();
    let mut files = populate(&v, 24);
    let out = v.run(&["snapshot", "create", &v.url, "before"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let before = files.clone();
    let vid = header_of(&v).volume_id;
    let old = Keys::from_ring(&ring_of(&v), &vid);
    // A replica made before the rotation is brought up to date after it:
    // re-sealed objects keep their names and sizes.
    let replica = v.dir.path().join("replica");
    let replica_url = replica.to_str().unwrap().to_owned();
    let out = v.run(&["replicate", &v.url, &replica_url], &[]);
    assert!(out.status.success(), "{}", stderr(&out));

    // A writer keeps creating and fsyncing files while the daemon rotates.
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (stop, dir) = (Arc::clone(&stop), v.path("load"));
        std::fs::create_dir_all(&dir).unwrap();
        std::thread::spawn(move || {
            let mut written = BTreeMap::new();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) || i < 20 {
                let data = pattern(1000 + i, 20_000 + (i as usize % 5) * 70_000);
                let path = dir.join(format!("w{i}"));
                let f = std::fs::File::create(&path).unwrap();
                std::io::Write::write_all(&mut &f, &data).unwrap();
                f.sync_all().unwrap();
                written.insert(format!("load/w{i}"), data);
                i += 1;
            }
            written
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let out = v.run(&["key", "rotate", &v.url], &[]);
    stop.store(true, Ordering::Relaxed);
    let written = load.join().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("key epoch 1:"), "{said}");
    files.extend(written);
    let status = v.run(&["status", v.mnt.to_str().unwrap()], &[]);
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(status.contains("rotation:  epoch 1 finished"), "{status}");
    assert_files(&v, &files);
    v.unmount();

    assert_eq!(key_epoch(&v), "1");
    assert_eq!(
        ring_of(&v).epochs(),
        vec![1],
        "the old epoch left every slot"
    );
    assert_old_key_opens_nothing(&v, &old, &vid);
    let fsck = v.run(&["fsck", &v.url, "--deep"], &[]);
    assert!(fsck.status.success(), "{}", stderr(&fsck));
    let out = v.run(&["replicate", &v.url, &replica_url], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let fsck = v.run(&["fsck", &replica_url, "--deep"], &[]);
    assert!(
        fsck.status.success(),
        "the replica after the rotation: {}",
        stderr(&fsck)
    );

    // Again on the unmounted volume: the command is the writer.
    let epoch1 = Keys::from_ring(&ring_of(&v), &vid);
    let out = v.run(&["key", "rotate", &v.url], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(key_epoch(&v), "2");
    assert_old_key_opens_nothing(&v, &epoch1, &vid);
    v.mount();
    assert_files(&v, &files);
    v.unmount();
    let snap = v.dir.path().join("snap");
    std::fs::create_dir_all(&snap).unwrap();
    let out = v.run(
        &[
            "mount",
            &v.url,
            snap.to_str().unwrap(),
            "--snapshot",
            "before",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    for (name, data) in &before {
        assert!(std::fs::read(snap.join(name)).unwrap() == *data, "{name}");
    }
    let out = v.run(&["unmount", snap.to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
}
per_backend!(rotation_under_load: local, s3);

fn rotation_resumes_after_a_crash(backend: Backend) {
    let mut v = Volume::new(backend);
    v.mount();
    let files = populate(&v, 28);
    let vid = header_of(&v).volume_id;
    let old = Keys::from_ring(&ring_of(&v), &vid);
    // Slow enough (1 MiB/s over several MiB) to be killed half way.
    let mut rotate = sealedfs_cmd(&["key", "rotate", &v.url, "--rate", "1"])
        .envs(v.env().iter().map(|(k, val)| (k.as_str(), val.as_str())))
        .env("SEALEDFS_PASSPHRASE", PASS)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mnt = v.mnt.to_str().unwrap().to_owned();
    let start = Instant::now();
    loop {
        let out = v.run(&["status", &mnt], &[]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if text.contains("re-encrypting") && !text.contains(": 0 of") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no rotation seen: {text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    v.kill();
    let code = rotate.wait().unwrap();
    assert!(!code.success(), "the command saw its daemon die");
    assert_eq!(key_epoch(&v), "1", "the rotation had begun");
    assert_eq!(ring_of(&v).epochs(), vec![0, 1], "and not finished");

    // The next read-write mount picks it up and finishes it.
    v.mount();
    let start = Instant::now();
    loop {
        let out = v.run(&["status", &mnt], &[]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if text.contains("rotation:  epoch 1 finished") {
            break;
        }
        assert!(!text.contains("STOPPED"), "{text}");
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the resumed rotation did not finish: {text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_files(&v, &files);
    v.unmount();
    assert_eq!(ring_of(&v).epochs(), vec![1]);
    assert_old_key_opens_nothing(&v, &old, &vid);
    v.mount();
    assert_files(&v, &files);
    v.unmount();
}
per_backend!(rotation_resumes_after_a_crash: local, s3);
