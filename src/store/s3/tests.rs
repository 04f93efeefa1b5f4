//! The S3 store against a real S3-protocol server (moto, started by
//! scripts/test.sh), directly and through a misbehaving proxy.
//!
//! Every test makes its own random bucket, so they run in parallel and
//! never see each other's objects. Without `SEALEDFS_TEST_S3_ENDPOINT`
//! they fail, never skip: a suite that silently stopped testing S3 would
//! look green.

use std::io::ErrorKind;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_s3::config::Credentials;
use rand::RngCore;

use super::*;
use crate::store::RetryingStore;

#[path = "../../../tests/e2e/proxy.rs"]
mod proxy;
use proxy::{Fault, Proxy};

fn server() -> String {
    std::env::var("SEALEDFS_TEST_S3_ENDPOINT").unwrap_or_else(|_| {
        panic!(
            "SEALEDFS_TEST_S3_ENDPOINT is not set: the S3 tests need a server. \
             Start one with `eval \"$(scripts/s3-server.sh start /tmp/sealedfs-s3)\"` \
             (scripts/test.sh does this itself)"
        )
    })
}

fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    rand::thread_rng().fill_bytes(&mut b);
    b.iter().map(|b| format!("{b:02x}")).collect()
}

fn config(endpoint: &str, bucket: &str, prefix: &str) -> S3Config {
    let mut cfg = S3Config::new(bucket, prefix);
    cfg.endpoint = Some(endpoint.to_owned());
    cfg.path_style = true;
    cfg.region = Some("us-east-1".into());
    cfg.timeouts.open_deadline = Duration::from_secs(10);
    cfg
}

/// The store as a mount uses it: every call retried under one deadline.
fn retrying(store: S3Store, deadline: Duration) -> RetryingStore {
    RetryingStore::new(Arc::new(store), RetryPolicy::with_deadline(deadline))
}

/// Through the proxy at `endpoint`, retried for up to a minute.
fn open_retrying(endpoint: &str, bucket: &str, prefix: &str) -> RetryingStore {
    let store = S3Store::open(config(endpoint, bucket, prefix)).unwrap();
    retrying(store, Duration::from_secs(60))
}

/// A new bucket on the server (created through the store's own client).
fn new_bucket(object_lock: bool) -> String {
    let bucket = format!("sealedfs-test-{}", random_hex(8));
    let store = S3Store::connect(config(&server(), &bucket, "")).unwrap();
    let b = bucket.clone();
    store
        .rt()
        .block_on(async {
            store
                .client()
                .create_bucket()
                .bucket(&b)
                .object_lock_enabled_for_bucket(object_lock)
                .send()
                .await
        })
        .expect("create the test bucket");
    bucket
}

fn open(prefix: &str) -> S3Store {
    S3Store::open(config(&server(), &new_bucket(false), prefix)).unwrap()
}

fn io_kind(e: StoreError) -> ErrorKind {
    match e {
        StoreError::Io { kind, .. } => kind,
        other => panic!("expected an Io error, got {other}"),
    }
}

#[test]
fn contract_under_a_prefix() {
    let store = open("vols/one");
    crate::store::conformance::check_all(&store);
    // Nothing leaked outside the prefix.
    let root = S3Store::open(config(&server(), &store.cfg.bucket, "")).unwrap();
    assert!(
        root.list("")
            .unwrap()
            .iter()
            .all(|o| o.key.starts_with("vols/one/"))
    );
}

#[test]
fn contract_at_the_bucket_root() {
    crate::store::conformance::check_all(&open(""));
}

#[test]
fn no_metadata_tags_or_content_type_of_ours() {
    let store = open("v");
    crate::store::conformance::check_all(&store);
    for obj in store.list("").unwrap() {
        let full = store.cfg.full_key(&obj.key);
        let head = store
            .rt()
            .block_on(
                store
                    .client()
                    .head_object()
                    .bucket(&store.cfg.bucket)
                    .key(&full)
                    .send(),
            )
            .unwrap();
        assert!(
            head.metadata().is_none_or(|m| m.is_empty()),
            "{}: {:?}",
            obj.key,
            head.metadata()
        );
        let tags = store
            .rt()
            .block_on(
                store
                    .client()
                    .get_object_tagging()
                    .bucket(&store.cfg.bucket)
                    .key(&full)
                    .send(),
            )
            .unwrap();
        assert!(tags.tag_set().is_empty(), "{}", obj.key);
    }
}

#[test]
fn sse_headers_on_every_put() {
    let mut cfg = config(&server(), &new_bucket(false), "v");
    cfg.sse = Some(Sse::Aes256);
    let store = S3Store::open(cfg).unwrap();
    store.put("a", b"x").unwrap();
    store.put_if_absent("b", b"y").unwrap();
    let etag = store.head("a").unwrap().unwrap().etag;
    store.put_if_match("a", b"z", &etag).unwrap();
    for key in ["v/a", "v/b"] {
        let head = store
            .rt()
            .block_on(
                store
                    .client()
                    .head_object()
                    .bucket(&store.cfg.bucket)
                    .key(key)
                    .send(),
            )
            .unwrap();
        assert_eq!(
            head.server_side_encryption(),
            Some(&ServerSideEncryption::Aes256),
            "{key}"
        );
    }
}

#[test]
fn listing_pages_and_batched_deletes() {
    let store = Arc::new(open("many"));
    let keys: Vec<String> = (0..1_205)
        .map(|i| format!("data/{:02x}/{i:05}", i % 256))
        .collect();
    std::thread::scope(|s| {
        for part in keys.chunks(keys.len() / 6 + 1) {
            let store = store.clone();
            s.spawn(move || {
                for k in part {
                    store.put(k, b"").unwrap();
                }
            });
        }
    });
    let listed: Vec<String> = store
        .list("data/")
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    let mut want = keys.clone();
    want.sort();
    assert_eq!(listed, want);
    let mut doomed = keys[..1_100].to_vec();
    doomed.push("data/none/missing".into());
    store.delete_many(&doomed).unwrap();
    assert_eq!(store.list("data/").unwrap().len(), 105);
}

#[test]
fn probe_finds_conditional_writes_honoured() {
    let store = open("p");
    assert!(store.probe().unwrap());
    assert!(store.conditional_writes());
    assert!(
        store.list("").unwrap().is_empty(),
        "the probe object is removed"
    );
}

#[test]
fn probe_finds_conditional_writes_ignored() {
    let bucket = new_bucket(false);
    let proxy = Proxy::start(&server());
    proxy.set_standing(Fault::IgnoreConditions);
    let store = S3Store::open(config(&proxy.endpoint(), &bucket, "p")).unwrap();
    assert!(!store.probe().unwrap());
    assert!(!ObjectStore::conditional_writes(&store));
    // The fallback still refuses a key it can see.
    store.put_if_absent("j/1", b"a").unwrap();
    assert!(matches!(
        store.put_if_absent("j/1", b"b"),
        Err(StoreError::AlreadyExists { .. })
    ));
    assert_eq!(store.get("j/1").unwrap(), b"a");
}

#[test]
fn bucket_features_plain_and_locked() {
    let plain = open("f");
    assert_eq!(
        plain.bucket_features().unwrap(),
        BucketFeatures {
            versioning: None,
            object_lock: Some(false)
        }
    );
    assert!(plain.bucket_features().unwrap().consequences().is_empty());
    let locked = S3Store::open(config(&server(), &new_bucket(true), "f")).unwrap();
    let f = locked.bucket_features().unwrap();
    assert_eq!(f.object_lock, Some(true));
    // moto 5.2.5 answers GetBucketVersioning with a wrong XML root, which
    // the SDK cannot parse: the versioning is then reported unknown.
    assert!(
        matches!(f.versioning.as_deref(), None | Some("Enabled")),
        "{f:?}"
    );
    let text = BucketFeatures {
        versioning: Some("Enabled".into()),
        object_lock: Some(true),
    }
    .consequences()
    .join("\n");
    assert!(
        text.contains("noncurrent") && text.contains("Object Lock"),
        "{text}"
    );
}

#[test]
fn throttling_and_5xx_are_retried() {
    let bucket = new_bucket(false);
    let proxy = Proxy::start(&server());
    let store = open_retrying(&proxy.endpoint(), &bucket, "r");
    for _ in 0..3 {
        proxy.push(Some("PUT"), Fault::Status(503, "SlowDown"));
    }
    proxy.push(Some("PUT"), Fault::Status(500, "InternalError"));
    proxy.push(Some("PUT"), Fault::Status(429, "TooManyRequests"));
    store.put("a", b"hello").unwrap();
    proxy.push(Some("GET"), Fault::Reset);
    proxy.push(Some("GET"), Fault::Status(503, "SlowDown"));
    proxy.push(Some("GET"), Fault::Reset);
    assert_eq!(store.get_range("a", 1..4).unwrap(), b"ell");
    proxy.push(Some("GET"), Fault::Reset);
    assert_eq!(store.list("").unwrap().len(), 1);
    assert_eq!(proxy.faults_applied(), 9);
    // Final answers are not retried.
    let before = proxy.requests();
    proxy.push(Some("GET"), Fault::Status(403, "AccessDenied"));
    assert!(matches!(
        store.get("a"),
        Err(StoreError::AccessDenied { .. })
    ));
    assert_eq!(proxy.requests(), before + 1);
}

#[test]
fn slow_answers_time_out_and_are_retried() {
    let bucket = new_bucket(false);
    let proxy = Proxy::start(&server());
    let mut cfg = config(&proxy.endpoint(), &bucket, "slow");
    cfg.timeouts.attempt = Duration::from_millis(700);
    let store = retrying(S3Store::open(cfg).unwrap(), Duration::from_secs(60));
    proxy.push(Some("PUT"), Fault::Delay(Duration::from_secs(2)));
    let start = Instant::now();
    store.put("a", b"x").unwrap();
    assert!(start.elapsed() >= Duration::from_millis(700));
    assert_eq!(store.get("a").unwrap(), b"x");
}

#[test]
fn lost_answer_to_create_only_put_is_resolved_by_reading_back() {
    let bucket = new_bucket(false);
    let proxy = Proxy::start(&server());
    let store = open_retrying(&proxy.endpoint(), &bucket, "amb");
    // Our write lands, its answer is lost, the retry gets 412: ours.
    proxy.push(Some("PUT"), Fault::ResetAfterForward);
    store.put_if_absent("meta/journal/1", b"ours").unwrap();
    assert_eq!(store.get("meta/journal/1").unwrap(), b"ours");
    // Another writer's object, and the first answer lost: still fenced.
    store.put("meta/journal/2", b"theirs").unwrap();
    proxy.push(Some("PUT"), Fault::ResetAfterForward);
    assert!(matches!(
        store.put_if_absent("meta/journal/2", b"ours"),
        Err(StoreError::AlreadyExists { .. })
    ));
    // A conditional replace whose answer is lost.
    let etag = store.head("meta/journal/2").unwrap().unwrap().etag;
    proxy.push(Some("PUT"), Fault::ResetAfterForward);
    store
        .put_if_match("meta/journal/2", b"renewed", &etag)
        .unwrap();
    assert_eq!(store.get("meta/journal/2").unwrap(), b"renewed");
    // Without a lost answer a stale tag loses at once.
    assert!(matches!(
        store.put_if_match("meta/journal/2", b"again", &etag),
        Err(StoreError::PreconditionFailed { .. })
    ));
}

#[test]
fn an_outage_is_ridden_out_within_the_deadline() {
    let bucket = new_bucket(false);
    let proxy = Arc::new(Proxy::start(&server()));
    let store = open_retrying(&proxy.endpoint(), &bucket, "out");
    proxy.set_standing(Fault::Reset);
    let back = {
        let proxy = proxy.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(6));
            proxy.set_standing(Fault::Status(503, "SlowDown"));
            std::thread::sleep(Duration::from_secs(2));
            proxy.set_standing(Fault::Pass);
        })
    };
    let start = Instant::now();
    store
        .put_if_absent("meta/journal/1", b"during the outage")
        .unwrap();
    assert!(start.elapsed() >= Duration::from_secs(8));
    back.join().unwrap();
    assert_eq!(store.get("meta/journal/1").unwrap(), b"during the outage");
}

#[test]
fn a_deadline_bounds_every_call() {
    let bucket = new_bucket(false);
    let proxy = Proxy::start(&server());
    let store = S3Store::open(config(&proxy.endpoint(), &bucket, "d")).unwrap();
    let store = retrying(store, Duration::from_secs(2));
    proxy.set_standing(Fault::Status(503, "SlowDown"));
    let start = Instant::now();
    let e = store.put("a", b"x").unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "{:?}",
        start.elapsed()
    );
    assert!(matches!(e, StoreError::Unavailable { .. }), "{e}");
    assert!(proxy.requests() > 2, "retried until the deadline");
}

#[test]
fn unreachable_endpoint_fails_fast() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cfg = config(&format!("http://127.0.0.1:{port}"), "b", "");
    cfg.timeouts.open_deadline = Duration::from_secs(3);
    let start = Instant::now();
    let e = S3Store::open(cfg).err().unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(8),
        "{:?}",
        start.elapsed()
    );
    assert!(matches!(e, StoreError::Unavailable { .. }), "{e}");
}

#[test]
fn wrong_secret_is_access_denied() {
    let mut cfg = config(&server(), &new_bucket(false), "");
    let key = std::env::var("AWS_ACCESS_KEY_ID").unwrap_or_else(|_| "AKIAIOSFODNN7EXAMPLE".into());
    cfg.credentials = Some(Credentials::new(key, "wrong-secret", None, None, "test"));
    let e = S3Store::open(cfg).err().unwrap();
    assert!(matches!(e, StoreError::AccessDenied { .. }), "{e}");
    assert!(e.to_string().contains("access denied"), "{e}");
    let mut cfg = config(&server(), &new_bucket(false), "");
    cfg.credentials = Some(Credentials::new(
        "AKIANOSUCHKEY0000000",
        "x",
        None,
        None,
        "test",
    ));
    assert!(matches!(
        S3Store::open(cfg),
        Err(StoreError::AccessDenied { .. })
    ));
}

#[test]
fn missing_bucket_is_named() {
    let cfg = config(&server(), &format!("sealedfs-none-{}", random_hex(6)), "p");
    let e = S3Store::open(cfg).err().unwrap();
    assert!(e.to_string().contains("does not exist"), "{e}");
    assert_eq!(io_kind(e), ErrorKind::NotFound);
}

#[test]
fn plain_http_elsewhere_is_refused_before_any_request() {
    let cfg = config("http://192.0.2.1:9000", "b", "");
    let e = S3Store::open(cfg).err().unwrap();
    assert!(e.to_string().contains("refusing plain-HTTP"), "{e}");
    assert_eq!(io_kind(e), ErrorKind::InvalidInput);
}

#[test]
fn wrong_region_answers_name_the_region() {
    let store = S3Store::connect(config("http://127.0.0.1:1", "b", "")).unwrap();
    let f = classify::Failure {
        transient: false,
        status: Some(400),
        code: Some("AuthorizationHeaderMalformed".into()),
        region_hint: Some("eu-west-1".into()),
        detail: String::new(),
    };
    let e = store.error("volume", f);
    assert!(e.to_string().contains("set AWS_REGION=eu-west-1"), "{e}");
}

#[test]
fn dropping_the_store_stops_its_threads() {
    let store = open("t");
    store.put("a", b"x").unwrap();
    let name = store.thread_name();
    let threads = || -> Vec<String> {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .flatten()
            .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
            .map(|c| c.trim().to_owned())
            .collect()
    };
    assert!(threads().contains(&name), "{name} in {:?}", threads());
    drop(store);
    assert!(!threads().contains(&name), "{name} outlived the store");
}

/// A server that answers a ranged GET with other bytes than those asked
/// (a broken cache or gateway in front of the bucket) is caught by the
/// Content-Range it sends, before its bytes reach a reader; one that sends
/// more than asked, or no total, is fine.
#[test]
fn a_content_range_other_than_asked_is_refused() {
    let asked = 100..200;
    for (fine, total) in [
        ("bytes 100-199/1000", 1000),
        ("bytes 100-149/150", 150),
        ("bytes 100-299/1000", 1000),
        ("bytes 100-199/*", u64::MAX),
    ] {
        assert_eq!(check_range_sent(&asked, fine), Ok(total), "{fine}");
    }
    for wrong in [
        "bytes 0-99/1000",
        "bytes 101-200/1000",
        "bytes 150-120/1000",
        "bytes */1000",
        "items 100-199/1000",
    ] {
        assert!(check_range_sent(&asked, wrong).is_err(), "{wrong}");
    }
}
