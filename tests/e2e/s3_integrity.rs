//! An S3 volume's objects tampered with in the bucket (through the
//! project's own S3 client) give EIO for the damaged file and nothing
//! else; and no name, path, xattr or content reaches the bucket, in keys,
//! bodies or headers.

use sealedfs::store::ObjectStore;

use crate::harness::*;

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

/// A big file (more than one 8 MiB pack) and small ones, each fsynced on
/// its own so no pack mixes them; unmounted.
fn populated() -> (Volume, Vec<(String, Vec<u8>)>) {
    let mut v = Volume::new_s3();
    v.mount();
    let mut files = vec![("big".to_string(), pseudo_random(10 << 20, 7))];
    for i in 0..4 {
        files.push((
            format!("small{i}"),
            pseudo_random(30_000 + i * 1000, i as u64),
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

fn tamper_case(f: impl FnOnce(&sealedfs::store::S3Store, &str)) {
    let (mut v, files) = populated();
    let store = v.s3_store();
    let packs: Vec<String> = store
        .list("data/")
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert!(packs.len() >= 3, "{packs:?}");
    f(&store, &packs[0]);
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
        log.contains(&packs[0]),
        "the log names the damaged object {}:\n{log}",
        packs[0]
    );
}

#[test]
fn s3_overwritten_pack_gives_eio() {
    tamper_case(|store, key| {
        let mut b = store.get(key).unwrap();
        let mid = b.len() / 2;
        b[mid] ^= 0x40;
        store.put(key, &b).unwrap();
    });
}

#[test]
fn s3_truncated_pack_gives_eio() {
    tamper_case(|store, key| {
        let b = store.get(key).unwrap();
        store.put(key, &b[..b.len() / 3]).unwrap();
    });
}

#[test]
fn s3_deleted_pack_gives_eio() {
    tamper_case(|store, key| store.delete(key).unwrap());
}

/// Every object's user metadata, tags and whole HEAD answer, with the
/// SDK itself (S3Store exposes neither headers nor tags).
fn object_headers(prefix: &str) -> Vec<(String, String)> {
    use aws_sdk_s3::config::BehaviorVersion;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let conf = aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(s3_endpoint())
            .load()
            .await;
        let client = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&conf)
                .force_path_style(true)
                .build(),
        );
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let page = client
                .list_objects_v2()
                .bucket(s3_bucket())
                .prefix(format!("{prefix}/"))
                .set_continuation_token(token)
                .send()
                .await
                .expect("list");
            for o in page.contents() {
                let key = o.key().unwrap().to_owned();
                let head = client
                    .head_object()
                    .bucket(s3_bucket())
                    .key(&key)
                    .send()
                    .await
                    .expect("head");
                assert!(
                    head.metadata().is_none_or(|m| m.is_empty()),
                    "{key}: user metadata {:?}",
                    head.metadata()
                );
                let tags = client
                    .get_object_tagging()
                    .bucket(s3_bucket())
                    .key(&key)
                    .send()
                    .await
                    .expect("tagging");
                assert!(
                    tags.tag_set().is_empty(),
                    "{key}: tags {:?}",
                    tags.tag_set()
                );
                out.push((key, format!("{head:?}")));
            }
            token = page.next_continuation_token().map(str::to_owned);
            if token.is_none() {
                break;
            }
        }
        out
    })
}

#[test]
fn s3_no_name_xattr_or_content_reaches_the_bucket() {
    let mut v = Volume::new_s3();
    v.mount();
    let markers = [
        "LEAKDIRNAME",
        "LEAKFILENAME",
        "LEAKXATTRNAME",
        "LEAKXATTRVALUE",
        "LEAKCONTENT",
        "LEAKLINKTARGET",
    ];
    let dir = v.path("LEAKDIRNAME-records");
    std::fs::create_dir(&dir).unwrap();
    let file = dir.join("LEAKFILENAME-patient.txt");
    // Compressible and incompressible-looking content both.
    std::fs::write(&file, "LEAKCONTENT ".repeat(50_000)).unwrap();
    std::fs::write(dir.join("small"), "one LEAKCONTENT line in a small file\n").unwrap();
    sh(&format!(
        "setfattr -n user.LEAKXATTRNAME -v LEAKXATTRVALUE '{}'",
        file.display()
    ));
    std::os::unix::fs::symlink("/LEAKLINKTARGET/x", dir.join("link")).unwrap();
    sh(&format!(
        "sync '{}' && mv '{}' '{}/LEAKFILENAME-renamed'",
        file.display(),
        file.display(),
        dir.display()
    ));
    v.unmount();
    // Mounted again and changed, so journal, checkpoint and lease objects
    // of a second session are in the bucket too.
    v.mount();
    std::fs::write(dir.join("LEAKFILENAME-second"), "LEAKCONTENT again").unwrap();
    v.unmount();

    let prefix = v.s3_prefix.clone().unwrap();
    let store = v.s3_store();
    let objects = store.list("").unwrap();
    assert!(objects.len() >= 3, "{objects:?}");
    let mut bytes_seen = 0;
    for o in &objects {
        let body = store.get(&o.key).unwrap();
        bytes_seen += body.len();
        for m in markers {
            assert!(!o.key.contains(m), "{m} in key {}", o.key);
            assert!(
                !body.windows(m.len()).any(|w| w == m.as_bytes()),
                "{m} in the body of {}",
                o.key
            );
        }
        for frag in ["records", "patient", "renamed", "second"] {
            assert!(!o.key.contains(frag), "{frag} in key {}", o.key);
            assert!(
                !body.windows(frag.len()).any(|w| w == frag.as_bytes()),
                "{frag} in the body of {}",
                o.key
            );
        }
    }
    let headers = object_headers(&prefix);
    assert_eq!(headers.len(), objects.len());
    for (key, head) in &headers {
        for m in markers.iter().chain(&["records", "patient"]) {
            assert!(!head.contains(m), "{m} in the HEAD answer of {key}: {head}");
        }
    }
    eprintln!(
        "leak check: {} objects, {bytes_seen} bytes, their HEAD answers and tags: no marker",
        objects.len()
    );
}
