//! The [`ObjectStore`] contract as executable checks, run against every
//! backend and every decorator (test builds only).
//!
//! Rule: each check takes an empty store and uses its own key space, so a
//! backend's test runs them all on one store with [`check_all`]. A new
//! promise in the trait's docs gets a check here, so all backends keep it
//! alike; backend-only behaviour (fsync, temp files, locks) is tested in
//! the backend's own file.

use std::io::ErrorKind;
use std::time::{Duration, SystemTime};

use super::{ObjectStore, StoreError};

pub fn check_all(store: &dyn ObjectStore) {
    round_trip_and_replace(store);
    put_shared_stores_what_put_stores(store);
    put_if_absent_fences(store);
    put_if_match_replaces_only_the_version_read(store);
    get_range_boundaries(store);
    get_range_to_streams_what_get_range_returns(store);
    get_max_refuses_larger_objects(store);
    list_is_sorted_and_filtered_by_prefix(store);
    delete_is_idempotent(store);
    head_reports_size_and_time(store);
    bad_keys_are_refused(store);
}

fn io_kind(err: StoreError) -> ErrorKind {
    match err {
        StoreError::Io { kind, .. } => kind,
        other @ (StoreError::NotFound { .. }
        | StoreError::AlreadyExists { .. }
        | StoreError::PreconditionFailed { .. }
        | StoreError::AccessDenied { .. }
        | StoreError::Unavailable { .. }
        | StoreError::Locked
        | StoreError::Injected { .. }) => panic!("expected an Io error, got {other}"),
    }
}

fn keys(store: &dyn ObjectStore, prefix: &str) -> Vec<String> {
    store
        .list(prefix)
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect()
}

fn round_trip_and_replace(store: &dyn ObjectStore) {
    assert!(store.get("rt/a").unwrap_err().is_not_found());
    store.put("rt/a", b"one").unwrap();
    assert_eq!(store.get("rt/a").unwrap(), b"one");
    store.put("rt/a", b"").unwrap();
    assert_eq!(store.get("rt/a").unwrap(), b"");
    store.put("rt/a", b"three").unwrap();
    assert_eq!(store.get("rt/a").unwrap(), b"three");
}

fn put_shared_stores_what_put_stores(store: &dyn ObjectStore) {
    let body = bytes::Bytes::from((0..=255u8).cycle().take(70_000).collect::<Vec<u8>>());
    store.put_shared("shared/a", &body).unwrap();
    assert_eq!(store.get("shared/a").unwrap(), body);
    // It replaces, as `put` does.
    store.put_shared("shared/a", &body.slice(..5)).unwrap();
    assert_eq!(store.get("shared/a").unwrap(), &body[..5]);
}

fn put_if_match_replaces_only_the_version_read(store: &dyn ObjectStore) {
    let etag = |key| store.head(key).unwrap().unwrap().etag;
    let refused = |r: Result<(), StoreError>| matches!(r, Err(StoreError::PreconditionFailed { ref key }) if key == "cas/lease");
    assert!(refused(store.put_if_match("cas/lease", b"x", "any")));
    store.put_if_absent("cas/lease", b"one").unwrap();
    let first = etag("cas/lease");
    assert_eq!(store.list("cas/").unwrap()[0].etag, first);
    store.put_if_match("cas/lease", b"two", &first).unwrap();
    assert_eq!(store.get("cas/lease").unwrap(), b"two");
    let second = etag("cas/lease");
    assert_ne!(first, second);
    // A stale tag loses, and so does the last tag once another writer
    // replaced the content. (An identical rewrite may keep its tag: an S3
    // ETag is the content's MD5. The lease and header never rewrite
    // identical bytes, each write has a fresh nonce.)
    assert!(refused(store.put_if_match("cas/lease", b"three", &first)));
    store.put("cas/lease", b"other").unwrap();
    assert_ne!(etag("cas/lease"), second);
    assert!(refused(store.put_if_match("cas/lease", b"three", &second)));
    assert_eq!(store.get("cas/lease").unwrap(), b"other");
}

fn put_if_absent_fences(store: &dyn ObjectStore) {
    store.put_if_absent("fence/seq1", b"first").unwrap();
    let err = store.put_if_absent("fence/seq1", b"second").unwrap_err();
    assert!(
        matches!(err, StoreError::AlreadyExists { ref key } if key == "fence/seq1"),
        "{err}"
    );
    assert_eq!(store.get("fence/seq1").unwrap(), b"first");
    // `put` still replaces a create-only object (lease and volume do).
    store.put("fence/seq1", b"replaced").unwrap();
    assert_eq!(store.get("fence/seq1").unwrap(), b"replaced");
}

fn get_max_refuses_larger_objects(store: &dyn ObjectStore) {
    store.put("max/ten", b"0123456789").unwrap();
    store.put("max/empty", b"").unwrap();
    assert_eq!(store.get_max("max/ten", 10).unwrap(), b"0123456789");
    assert_eq!(store.get_max("max/ten", 1 << 20).unwrap(), b"0123456789");
    let err = store.get_max("max/ten", 9).unwrap_err();
    assert_eq!(io_kind(err), ErrorKind::InvalidData);
    assert_eq!(store.get_max("max/empty", 0).unwrap(), b"");
    assert!(matches!(
        store.get_max("max/missing", 10),
        Err(StoreError::NotFound { .. })
    ));
}

/// Larger than a local store's read piece, so a range arrives in parts.
fn get_range_to_streams_what_get_range_returns(store: &dyn ObjectStore) {
    let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let len = body.len() as u64;
    store.put("stream/obj", &body).unwrap();
    let streamed = |range: std::ops::Range<u64>| {
        let mut got = Vec::new();
        let mut next = 0;
        store
            .get_range_to("stream/obj", range, &mut |at, b| {
                // In order; a retried attempt may start again from 0.
                assert!(at == next || at == 0, "bytes at {at}, expected {next}");
                got.truncate(at as usize);
                got.extend_from_slice(b);
                next = at + b.len() as u64;
            })
            .map(|()| got)
    };
    for range in [
        0..0,
        0..1,
        5..70_000,
        0..len,
        len - 1..len,
        1000..len,
        len..len,
    ] {
        let want = &body[range.start as usize..range.end as usize];
        assert_eq!(streamed(range.clone()).unwrap(), want, "{range:?}");
    }
    for past in [len - 1..len + 1, 0..u64::MAX] {
        assert_eq!(
            io_kind(streamed(past.clone()).unwrap_err()),
            ErrorKind::UnexpectedEof,
            "{past:?}"
        );
    }
    let missing = store.get_range_to("stream/none", 0..1, &mut |_, _| {});
    assert!(missing.unwrap_err().is_not_found());
}

fn get_range_boundaries(store: &dyn ObjectStore) {
    store.put("range/obj", b"0123456789").unwrap();
    let cases: [(std::ops::Range<u64>, &[u8]); 6] = [
        (0..0, b""),
        (0..1, b"0"),
        (3..7, b"3456"),
        (9..10, b"9"),
        (0..10, b"0123456789"),
        (10..10, b""),
    ];
    for (range, want) in cases {
        assert_eq!(
            store.get_range("range/obj", range.clone()).unwrap(),
            want,
            "{range:?}"
        );
    }
    for past in [9..11, 10..11, 11..11, 0..u64::MAX] {
        let err = store.get_range("range/obj", past.clone()).unwrap_err();
        assert_eq!(io_kind(err), ErrorKind::UnexpectedEof, "{past:?}");
    }
    #[allow(clippy::reversed_empty_ranges)]
    let reversed = 7..3;
    assert_eq!(
        io_kind(store.get_range("range/obj", reversed).unwrap_err()),
        ErrorKind::InvalidInput
    );
    assert!(
        store
            .get_range("range/none", 0..0)
            .unwrap_err()
            .is_not_found()
    );
    store.put("range/empty", b"").unwrap();
    assert_eq!(store.get_range("range/empty", 0..0).unwrap(), b"");
}

fn list_is_sorted_and_filtered_by_prefix(store: &dyn ObjectStore) {
    let written = [
        "ls/meta/journal/0002",
        "ls/data/ff/p3",
        "ls/meta/journal/0001",
        "ls/data/0a/p1",
        "ls/volume",
        "ls/meta/checkpoint/0001/shard0",
        "ls/data/0a/p0",
        "ls/datum",
    ];
    for key in written {
        store.put(key, key.as_bytes()).unwrap();
    }
    let mut sorted = written.map(String::from).to_vec();
    sorted.sort();
    assert_eq!(keys(store, "ls/"), sorted);
    assert_eq!(
        keys(store, "ls/data/"),
        ["ls/data/0a/p0", "ls/data/0a/p1", "ls/data/ff/p3"]
    );
    assert_eq!(
        keys(store, "ls/dat"),
        [
            "ls/data/0a/p0",
            "ls/data/0a/p1",
            "ls/data/ff/p3",
            "ls/datum"
        ]
    );
    assert_eq!(
        keys(store, "ls/meta/journal/"),
        ["ls/meta/journal/0001", "ls/meta/journal/0002"]
    );
    assert_eq!(
        keys(store, "ls/meta/jour"),
        ["ls/meta/journal/0001", "ls/meta/journal/0002"]
    );
    assert_eq!(keys(store, "ls/data/0a/p1"), ["ls/data/0a/p1"]);
    assert_eq!(keys(store, "ls/volume"), ["ls/volume"]);
    for nothing in [
        "ls/nope/",
        "ls/data/0b",
        "ls/volume/",
        "ls//",
        "../",
        "ls/../ls/",
        "/",
    ] {
        assert!(keys(store, nothing).is_empty(), "{nothing}");
    }
    let all = store.list("").unwrap();
    assert!(all.windows(2).all(|w| w[0].key < w[1].key));
    let pack = all.iter().find(|o| o.key == "ls/data/ff/p3").unwrap();
    assert_eq!(pack.size, "ls/data/ff/p3".len() as u64);
}

fn delete_is_idempotent(store: &dyn ObjectStore) {
    store.delete("del/never").unwrap();
    store.delete("del/never/deeper").unwrap();
    store.put("del/obj", b"x").unwrap();
    store.delete("del/obj").unwrap();
    assert!(store.get("del/obj").unwrap_err().is_not_found());
    assert_eq!(store.head("del/obj").unwrap(), None);
    store.delete("del/obj").unwrap();
    assert!(keys(store, "del/").is_empty());
    // A deleted create-only key can be created again.
    store.put_if_absent("del/obj", b"y").unwrap();
    assert_eq!(store.get("del/obj").unwrap(), b"y");
}

fn head_reports_size_and_time(store: &dyn ObjectStore) {
    assert_eq!(store.head("head/none").unwrap(), None);
    let before = SystemTime::now() - Duration::from_secs(5);
    store.put("head/obj", &[7; 1000]).unwrap();
    let info = store.head("head/obj").unwrap().unwrap();
    assert_eq!((info.key.as_str(), info.size), ("head/obj", 1000));
    assert!(info.modified >= before, "{info:?}");
    assert_eq!(store.list("head/").unwrap(), [info]);
}

fn bad_keys_are_refused(store: &dyn ObjectStore) {
    let bad = [
        "", "/abs", "trail/", "dou//ble", "..", "../up", "a/../b", ".", "./a", ".lock", "a/.tmp-1",
        "nul\0",
    ];
    for key in bad {
        assert_eq!(
            io_kind(store.put(key, b"x").unwrap_err()),
            ErrorKind::InvalidInput,
            "{key:?}"
        );
        assert_eq!(
            io_kind(store.put_if_absent(key, b"x").unwrap_err()),
            ErrorKind::InvalidInput
        );
        assert_eq!(
            io_kind(store.get(key).unwrap_err()),
            ErrorKind::InvalidInput
        );
        assert_eq!(
            io_kind(store.get_range(key, 0..0).unwrap_err()),
            ErrorKind::InvalidInput
        );
        assert_eq!(
            io_kind(store.delete(key).unwrap_err()),
            ErrorKind::InvalidInput
        );
        assert_eq!(
            io_kind(store.head(key).unwrap_err()),
            ErrorKind::InvalidInput
        );
    }
    assert!(keys(store, "../").is_empty());
}
