//! Where a test volume lives: the backends every scenario runs on, and the
//! S3 servers (the suite's shared one, or a test's private one) with the
//! credentials that reach them.

use sealedfs::store::{ObjectStore, S3Config, S3Store};

/// The store behind a test volume. Scenarios take one and run unchanged on
/// each; [`per_backend!`](crate::harness::per_backend) makes a `#[test]` per
/// backend named after it (`…::local`, `…::s3`, `…::s3_proxy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// A directory on the host's disk.
    Local,
    /// A random prefix of the suite's S3 test server.
    S3,
    /// As `S3`, but the daemon reaches the server through a fault proxy
    /// (proxy.rs) that the test controls; inspection goes straight to the
    /// server.
    S3Proxy,
}

impl Backend {
    pub fn is_s3(self) -> bool {
        self != Backend::Local
    }
}

/// An S3 server and the credentials of its test user.
#[derive(Clone, Debug)]
pub struct S3Server {
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
    pub bucket: String,
    pub access_key: String,
    pub secret_key: String,
    pub region: String,
}

impl S3Server {
    /// The suite's server (scripts/test.sh starts moto and exports its
    /// address and keys). Without it the S3 tests fail, never skip.
    pub fn shared() -> S3Server {
        let need = |name: &str| {
            std::env::var(name).unwrap_or_else(|_| {
                panic!(
                    "{name} is not set: the S3 tests need a server. Start one with \
                     `eval \"$(scripts/s3-server.sh start /tmp/sealedfs-s3)\"` (scripts/test.sh does)"
                )
            })
        };
        S3Server {
            endpoint: need("SEALEDFS_TEST_S3_ENDPOINT"),
            bucket: need("SEALEDFS_TEST_S3_BUCKET"),
            access_key: need("AWS_ACCESS_KEY_ID"),
            secret_key: need("AWS_SECRET_ACCESS_KEY"),
            region: std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into()),
        }
    }

    /// The environment that sends a `sealedfs` process to this server
    /// through `endpoint` (the server itself or a proxy in front of it).
    pub fn env_via(&self, endpoint: &str) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", endpoint),
            ("AWS_ACCESS_KEY_ID", &self.access_key),
            ("AWS_SECRET_ACCESS_KEY", &self.secret_key),
            ("AWS_REGION", &self.region),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// Runs `sealedfs ARGS` against this server (directly), then `extra`
    /// in the environment (which wins).
    pub fn run(&self, args: &[&str], extra: &[(&str, &str)]) -> std::process::Output {
        let env = self.env_via(&self.endpoint);
        let mut all: Vec<(&str, &str)> =
            env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        all.extend_from_slice(extra);
        super::util::sealedfs_with(args, &all)
    }

    /// The objects under `prefix`, straight from the server (never through
    /// a proxy), with the project's own client.
    pub fn store(&self, prefix: &str) -> S3Store {
        let mut cfg = S3Config::new(&self.bucket, prefix);
        cfg.endpoint = Some(self.endpoint.clone());
        cfg.region = Some(self.region.clone());
        cfg.credentials = Some(self.credentials());
        S3Store::open(cfg).expect("open the test bucket")
    }

    pub fn credentials(&self) -> aws_sdk_s3::config::Credentials {
        aws_sdk_s3::config::Credentials::new(
            &self.access_key,
            &self.secret_key,
            None,
            None,
            "sealedfs-e2e",
        )
    }

    /// The SDK's own client for this server, for what [`ObjectStore`]
    /// does not expose (headers, tags).
    pub fn sdk_client(&self) -> aws_sdk_s3::Client {
        let conf = aws_sdk_s3::config::Builder::new()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .endpoint_url(&self.endpoint)
            .region(aws_sdk_s3::config::Region::new(self.region.clone()))
            .credentials_provider(self.credentials())
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }
}

/// A prefix no other test (or run against the same server) uses.
pub fn s3_random_prefix() -> String {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("e2e-{}-{n}-{nanos:x}", std::process::id())
}

/// Every object of `store` with its body (for leak and tamper checks
/// written once for every backend).
pub fn all_objects(store: &dyn ObjectStore) -> Vec<(String, Vec<u8>)> {
    store
        .list("")
        .unwrap()
        .into_iter()
        .map(|o| {
            let body = store.get(&o.key).unwrap();
            (o.key, body)
        })
        .collect()
}
