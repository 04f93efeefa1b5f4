//! Tampering with a volume's objects (through the store trait, so the same
//! cases run on every backend) gives EIO for the damaged file and nothing
//! else, or a refused mount; bad input gives one line and the documented
//! exit code.

use std::path::{Path, PathBuf};

use sealedfs::store::ObjectStore;

use crate::harness::*;

/// The big file's size: three packs on its own (packs hold 8 MiB), since
/// the small files' fsyncs carry their data in journal segments and become
/// packs only at a checkpoint; and the number of small files beside it.
fn sizes(backend: Backend) -> (usize, usize) {
    match backend {
        Backend::Local => (20 << 20, 5),
        Backend::S3 | Backend::S3Proxy => (20 << 20, 4),
    }
}

/// A volume holding one multi-pack file and several small ones, each
/// fsynced on its own so no pack mixes them; unmounted.
fn populated(backend: Backend) -> (Volume, Vec<(String, Vec<u8>)>) {
    let (big, small) = sizes(backend);
    let mut v = Volume::new(backend);
    v.mount();
    let mut files = vec![("big".to_string(), pattern(7, big))];
    for i in 0..small {
        files.push((
            format!("small{i}"),
            pattern(100 + i as u64, 30_000 + i * 1000),
        ));
    }
    for (name, data) in &files {
        let mut f = std::fs::File::create(v.path(name)).unwrap();
        std::io::Write::write_all(&mut f, data).unwrap();
        f.sync_all().unwrap();
    }
    v.unmount();
    (v, files)
}

fn keys(store: &dyn ObjectStore, prefix: &str) -> Vec<String> {
    store
        .list(prefix)
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect()
}

/// Damages packs with `tamper` (which returns the keys it damaged), then
/// mounts and reads every file: each is exactly right or EIO, at least one
/// is EIO, not all are, and the log names a damaged object.
fn tamper_case(backend: Backend, tamper: impl FnOnce(&dyn ObjectStore, &[String]) -> Vec<String>) {
    let (mut v, files) = populated(backend);
    let store = v.store();
    let packs = keys(&*store, "data/");
    assert!(
        packs.len() >= 3,
        "the big file spans several packs: {packs:?}"
    );
    let damaged = tamper(&*store, &packs);
    v.mount();
    let mut eio = 0;
    for (name, want) in &files {
        match std::fs::read(v.path(name)) {
            Ok(got) => assert!(got == *want, "{name}: wrong bytes after tampering"),
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::EIO), "{name}: {e}");
                eio += 1;
            }
        }
    }
    v.unmount();
    assert!(eio >= 1, "the damaged data is reported");
    assert!(eio < files.len(), "undamaged files still read");
    let log = v.log_text();
    assert!(
        damaged.iter().any(|key| log.contains(key.as_str())),
        "the log names a damaged object of {damaged:?}:\n{log}"
    );
}

per_backend!(flipped_byte_in_a_pack_gives_eio: local, s3);
fn flipped_byte_in_a_pack_gives_eio(backend: Backend) {
    tamper_case(backend, |store, packs| {
        let mut b = store.get(&packs[0]).unwrap();
        let mid = b.len() / 2;
        b[mid] ^= 0x40;
        store.put(&packs[0], &b).unwrap();
        vec![packs[0].clone()]
    });
}

per_backend!(truncated_pack_gives_eio: local, s3);
fn truncated_pack_gives_eio(backend: Backend) {
    tamper_case(backend, |store, packs| {
        let b = store.get(&packs[0]).unwrap();
        store.put(&packs[0], &b[..b.len() / 3]).unwrap();
        vec![packs[0].clone()]
    });
}

per_backend!(deleted_pack_gives_eio: local, s3);
fn deleted_pack_gives_eio(backend: Backend) {
    tamper_case(backend, |store, packs| {
        store.delete(&packs[0]).unwrap();
        vec![packs[0].clone()]
    });
}

per_backend!(swapped_packs_give_eio: local, s3);
fn swapped_packs_give_eio(backend: Backend) {
    tamper_case(backend, |store, packs| {
        let (a, b) = (store.get(&packs[0]).unwrap(), store.get(&packs[1]).unwrap());
        store.put(&packs[0], &b).unwrap();
        store.put(&packs[1], &a).unwrap();
        vec![packs[0].clone(), packs[1].clone()]
    });
}

fn mount_fails(v: &mut Volume, code: i32) -> String {
    let out = v.try_mount(&[]);
    assert_cli_error(&out, code)
}

per_backend!(tampered_journal_segment_refuses_the_mount: local, s3);
fn tampered_journal_segment_refuses_the_mount(backend: Backend) {
    let (mut v, _) = populated(backend);
    let store = v.store();
    let journal = keys(&*store, "meta/journal");
    let newest = journal
        .last()
        .expect("journal segments after the last checkpoint");
    let mut b = store.get(newest).unwrap();
    b[30] ^= 1;
    store.put(newest, &b).unwrap();
    mount_fails(&mut v, 5);
}

/// Every object with its size, ETag and time; for a local volume also
/// every file of the directory (hidden ones included) with size and mtime.
fn snapshot(v: &Volume) -> (Vec<String>, Vec<(PathBuf, u64, std::time::SystemTime)>) {
    let objects = v
        .store()
        .list("")
        .unwrap()
        .into_iter()
        .map(|o| format!("{} {} {} {:?}", o.key, o.size, o.etag, o.modified))
        .collect();
    let files = v.local_dir().map(dir_listing).unwrap_or_default();
    (objects, files)
}

fn dir_listing(dir: &Path) -> Vec<(PathBuf, u64, std::time::SystemTime)> {
    let mut out: Vec<_> = files_below(dir)
        .into_iter()
        .map(|p| {
            let m = std::fs::metadata(&p).unwrap();
            (p, m.len(), m.modified().unwrap())
        })
        .collect();
    out.sort();
    out
}

per_backend!(bad_input_gives_one_line_and_its_exit_code: local, s3);
fn bad_input_gives_one_line_and_its_exit_code(backend: Backend) {
    let (mut v, _) = populated(backend);
    let mnt = v.mnt.to_str().unwrap().to_owned();
    let before = snapshot(&v);
    // Wrong passphrase: exit 2, nothing written.
    let out = v.run(
        &["mount", &v.url, &mnt],
        &[("SEALEDFS_PASSPHRASE", "not the passphrase")],
    );
    assert_cli_error(&out, 2);
    assert!(snapshot(&v) == before, "a refused mount writes nothing");
    // Not a volume (an empty directory or prefix): exit 1.
    let empty = match v.s3() {
        None => {
            let dir = v.dir.path().join("empty");
            std::fs::create_dir(&dir).unwrap();
            dir.to_str().unwrap().to_owned()
        }
        Some((server, _)) => format!("s3://{}/{}", server.bucket, s3_random_prefix()),
    };
    let out = v.run(&["mount", &empty, &mnt], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    if !backend.is_s3() {
        let out = v.run(&["mount", "/nonexistent/vault", &mnt], &[]);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    }
    // Missing mountpoint: exit 1.
    let out = v.run(&["mount", &v.url, "/nonexistent/mnt"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    // Unknown format version: exit 1, naming it.
    let store = v.store();
    let mut h = store.get("volume").unwrap();
    h[8] = 9;
    store.put("volume", &h).unwrap();
    let err = mount_fails(&mut v, 1);
    assert!(err.contains('9'), "names the version: {err}");
    // A second read-write mount of one volume: exit 4.
    let mut w = Volume::new(backend);
    w.mount();
    let (out, _other) = w.mount_elsewhere("mnt2", &[]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
}
