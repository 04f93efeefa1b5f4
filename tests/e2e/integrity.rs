//! Tampering with the store gives EIO or a refused mount, never wrong
//! bytes; bad input gives one line and the documented exit code; nothing
//! about names or contents reaches the store in the clear.

use std::path::{Path, PathBuf};

use crate::harness::*;

/// A volume holding one multi-pack file and several small ones, unmounted.
fn populated() -> (Volume, Vec<(String, Vec<u8>)>) {
    let mut v = Volume::new();
    v.mount();
    let mut files = vec![("big".to_string(), pseudo_random(20 << 20, 7))];
    for i in 0..5 {
        files.push((
            format!("small{i}"),
            pseudo_random(30_000 + i * 1000, i as u64),
        ));
    }
    // fsync each, so the big file's packs hold nothing else.
    for (name, data) in &files {
        let mut f = std::fs::File::create(v.path(name)).unwrap();
        std::io::Write::write_all(&mut f, data).unwrap();
        f.sync_all().unwrap();
    }
    v.unmount();
    (v, files)
}

fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut s = seed.wrapping_add(0x9e3779b97f4a7c15);
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s as u8
        })
        .collect()
}

fn packs(v: &Volume) -> Vec<PathBuf> {
    v.objects()
        .into_iter()
        .filter(|p| p.starts_with("data"))
        .map(|p| v.store.join(p))
        .collect()
}

/// Mounts, reads every file: each is either exactly right or EIO.
/// Returns how many gave EIO.
fn read_all_expect_right_or_eio(v: &mut Volume, files: &[(String, Vec<u8>)]) -> usize {
    v.mount();
    let mut eio = 0;
    for (name, want) in files {
        match std::fs::read(v.path(name)) {
            Ok(got) => assert!(got == *want, "{name}: wrong bytes after tampering"),
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::EIO), "{name}: {e}");
                eio += 1;
            }
        }
    }
    v.unmount();
    eio
}

fn tamper_case(f: impl FnOnce(&[PathBuf])) {
    let (mut v, files) = populated();
    let packs = packs(&v);
    assert!(packs.len() >= 3, "the big file spans several packs");
    f(&packs);
    let eio = read_all_expect_right_or_eio(&mut v, &files);
    assert!(eio >= 1, "the damaged data is reported");
    assert!(eio < files.len(), "undamaged files still read");
    let log = v.log_text();
    assert!(
        log.contains("data/"),
        "the log names the damaged object:\n{log}"
    );
}

#[test]
fn flipped_byte_in_a_pack_gives_eio() {
    tamper_case(|packs| {
        let mut b = std::fs::read(&packs[0]).unwrap();
        let mid = b.len() / 2;
        b[mid] ^= 0x40;
        std::fs::write(&packs[0], b).unwrap();
    });
}

#[test]
fn truncated_pack_gives_eio() {
    tamper_case(|packs| {
        let b = std::fs::read(&packs[0]).unwrap();
        std::fs::write(&packs[0], &b[..b.len() / 3]).unwrap();
    });
}

#[test]
fn deleted_pack_gives_eio() {
    tamper_case(|packs| std::fs::remove_file(&packs[0]).unwrap());
}

#[test]
fn swapped_packs_give_eio() {
    tamper_case(|packs| {
        let (a, b) = (
            std::fs::read(&packs[0]).unwrap(),
            std::fs::read(&packs[1]).unwrap(),
        );
        std::fs::write(&packs[0], b).unwrap();
        std::fs::write(&packs[1], a).unwrap();
    });
}

fn mount_fails(v: &mut Volume, code: i32) -> String {
    let out = v.try_mount(&[]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(code), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "one line: {err:?}");
    assert!(err.starts_with("sealedfs: "), "{err:?}");
    err
}

#[test]
fn tampered_journal_segment_refuses_the_mount() {
    let (mut v, _) = populated();
    let journal: Vec<PathBuf> = v
        .objects()
        .into_iter()
        .filter(|p| p.starts_with("meta/journal"))
        .collect();
    let newest = v.store.join(
        journal
            .last()
            .expect("journal segments after the last checkpoint"),
    );
    let mut b = std::fs::read(&newest).unwrap();
    b[30] ^= 1;
    std::fs::write(&newest, b).unwrap();
    mount_fails(&mut v, 5);
}

#[test]
fn bad_input_gives_one_line_and_its_exit_code() {
    let (mut v, _) = populated();
    let before = listing(&v.store);
    // Wrong passphrase: exit 2, nothing written.
    let out = std::process::Command::new(bin())
        .args(["mount", v.store.to_str().unwrap(), v.mnt.to_str().unwrap()])
        .env("SEALEDFS_PASSPHRASE", "not the passphrase")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
    assert_eq!(listing(&v.store), before, "a refused mount writes nothing");
    // Not a volume, missing volume header: exit 1.
    let empty = v.dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let out = sealedfs(&["mount", empty.to_str().unwrap(), v.mnt.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let out = sealedfs(&["mount", "/nonexistent/vault", v.mnt.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    // Missing mountpoint: exit 1.
    let out = sealedfs(&["mount", v.store.to_str().unwrap(), "/nonexistent/mnt"]);
    assert_eq!(out.status.code(), Some(1));
    // Unknown format version: exit 1.
    let header = v.store.join("volume");
    let mut h = std::fs::read(&header).unwrap();
    h[8] = 9;
    std::fs::write(&header, &h).unwrap();
    let err = mount_fails(&mut v, 1);
    assert!(err.contains('9'), "names the version: {err}");
    // A second read-write mount of one volume: exit 4.
    let (mut w, _) = populated();
    w.mount();
    let other = w.dir.path().join("mnt2");
    std::fs::create_dir(&other).unwrap();
    let out = sealedfs(&["mount", w.store.to_str().unwrap(), other.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn listing(dir: &Path) -> Vec<(PathBuf, u64, std::time::SystemTime)> {
    let mut out = Vec::new();
    for e in walk(dir) {
        let m = std::fs::metadata(&e).unwrap();
        out.push((e, m.len(), m.modified().unwrap()));
    }
    out.sort();
    out
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.path().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

#[test]
fn no_name_xattr_or_content_reaches_the_store() {
    let mut v = Volume::new();
    v.mount();
    let dir = v.path("patient-record-dir-7f3a");
    std::fs::create_dir(&dir).unwrap();
    let file = dir.join("patient-record-name-9c2e.txt");
    std::fs::write(&file, "PHI-MARKER-CONTENT-51d0 ".repeat(5000)).unwrap();
    std::os::unix::fs::symlink("PHI-MARKER-TARGET-44aa", v.path("link")).unwrap();
    sh(&format!(
        "setfattr -n user.PHI-MARKER-XNAME-0b1e -v PHI-MARKER-XVALUE-e2f9 '{}'",
        file.display()
    ));
    v.unmount();
    let mut seen = String::new();
    for path in walk(&v.store) {
        seen.push_str(&path.to_string_lossy());
        seen.push('\n');
        seen.push_str(&String::from_utf8_lossy(&std::fs::read(&path).unwrap()));
    }
    for marker in ["patient-record", "PHI-MARKER", "51d0", "9c2e", "7f3a"] {
        assert!(!seen.contains(marker), "{marker} leaked into the store");
    }
    let log = v.log_text();
    for marker in ["patient-record", "PHI-MARKER"] {
        assert!(!log.contains(marker), "{marker} leaked into the log");
    }
}
