//! How to reach a bucket: endpoint, addressing, SSE, timeouts, and the
//! rule that keys never travel over plain HTTP to another host.
//!
//! The endpoint is `--endpoint`, else `AWS_ENDPOINT_URL_S3`, else
//! `AWS_ENDPOINT_URL` (the SDK's own variables, read here too), else what
//! the shared config file says (a profile's `endpoint_url`, or its
//! `services` section's `s3 = endpoint_url = …`), else AWS. The plain-HTTP
//! rule is checked twice: on the flags and variables before anything
//! connects, and on the endpoint the SDK actually resolved from all of
//! them ([`sdk_endpoint`]) before the client is built, so a profile cannot
//! route the volume over plain HTTP behind the rule's back.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use aws_sdk_s3::config::Credentials;

/// Server-side encryption requested on every PUT, on top of ours (many
/// HIPAA bucket policies deny PUTs without it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sse {
    Aes256,
    Kms { key_id: Option<String> },
}

impl Sse {
    /// `AES256` or `aws:kms` (with an optional key id).
    pub fn parse(mode: &str, kms_key_id: Option<String>) -> Result<Sse, String> {
        match (mode, kms_key_id) {
            ("AES256", None) => Ok(Sse::Aes256),
            ("AES256", Some(_)) => Err("--sse-kms-key-id needs --sse aws:kms".into()),
            ("aws:kms", key_id) => Ok(Sse::Kms { key_id }),
            (other, _) => Err(format!(
                "unknown --sse mode {other:?}: expected AES256 or aws:kms"
            )),
        }
    }
}

/// Time limits. Every request gets `attempt` (plus `attempt_per_mib` for
/// each MiB of body); retries are the [`RetryingStore`](crate::store::RetryingStore)'s,
/// except for the first request of [`S3Store::open`](super::S3Store::open),
/// retried only until `open_deadline`, so a wrong or unreachable endpoint
/// fails fast.
#[derive(Clone, Debug)]
pub struct Timeouts {
    pub connect: Duration,
    pub attempt: Duration,
    pub attempt_per_mib: Duration,
    pub open_deadline: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            connect: Duration::from_secs(5),
            attempt: Duration::from_secs(30),
            attempt_per_mib: Duration::from_secs(4),
            open_deadline: Duration::from_secs(15),
        }
    }
}

#[derive(Clone, Debug)]
pub struct S3Config {
    pub bucket: String,
    /// The volume's prefix inside the bucket, without leading or trailing
    /// `/`; empty for the bucket's root.
    pub prefix: String,
    pub endpoint: Option<String>,
    pub path_style: bool,
    pub sse: Option<Sse>,
    pub allow_http: bool,
    /// `None`: the SDK's chain (`AWS_REGION`, profile, IMDS).
    pub region: Option<String>,
    /// `None`: the SDK's default credential chain. Tests set keys here
    /// rather than in the (process-wide) environment.
    pub credentials: Option<Credentials>,
    /// Requests in flight at once, over all threads.
    pub max_requests: usize,
    pub timeouts: Timeouts,
}

impl S3Config {
    pub fn new(bucket: &str, prefix: &str) -> S3Config {
        S3Config {
            bucket: bucket.to_owned(),
            prefix: prefix.trim_matches('/').to_owned(),
            endpoint: None,
            path_style: false,
            sse: None,
            allow_http: false,
            region: None,
            credentials: None,
            max_requests: 32,
            timeouts: Timeouts::default(),
        }
    }

    /// `--endpoint`, else the SDK's environment variables.
    pub fn effective_endpoint(&self) -> Option<String> {
        self.endpoint
            .clone()
            .or_else(|| env_nonempty("AWS_ENDPOINT_URL_S3"))
            .or_else(|| env_nonempty("AWS_ENDPOINT_URL"))
    }

    /// Refuses an endpoint that would carry requests in the clear to
    /// another host: object names and the (sealed) bodies are ours to
    /// protect in flight too.
    pub fn check_endpoint(&self) -> Result<(), String> {
        match self.effective_endpoint() {
            Some(url) => check_url(&url, self.allow_http),
            None => Ok(()),
        }
    }

    /// Path-style addressing: when asked, or when the endpoint's host is
    /// an IP address or `localhost`, where `BUCKET.HOST` cannot resolve.
    pub fn effective_path_style(&self) -> bool {
        self.path_style
            || self.effective_endpoint().is_some_and(|url| {
                let host = host_of(url.split_once("://").map_or(url.as_str(), |(_, r)| r));
                host.eq_ignore_ascii_case("localhost")
                    || host.parse::<Ipv4Addr>().is_ok()
                    || host.parse::<Ipv6Addr>().is_ok()
            })
    }

    /// The store key of volume key `key`.
    pub(crate) fn full_key(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{}/{key}", self.prefix)
        }
    }

    /// The volume key of store key `full`, if it lies under the prefix.
    pub(crate) fn volume_key<'a>(&self, full: &'a str) -> Option<&'a str> {
        if self.prefix.is_empty() {
            Some(full)
        } else {
            full.strip_prefix(self.prefix.as_str())?.strip_prefix('/')
        }
    }
}

/// Refuses an endpoint that would carry requests in the clear to another
/// host, unless `allow_http`; loopback is always allowed.
pub fn check_url(url: &str, allow_http: bool) -> Result<(), String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(format!(
            "endpoint {url:?} has no http:// or https:// scheme"
        ));
    };
    match scheme.to_ascii_lowercase().as_str() {
        "https" => Ok(()),
        "http" if allow_http || is_loopback(host_of(rest)) => Ok(()),
        "http" => Err(format!(
            "refusing plain-HTTP endpoint {url}: requests would travel unencrypted; \
             use https://, or --allow-http if that is really intended"
        )),
        other => Err(format!("endpoint {url:?}: unsupported scheme {other:?}")),
    }
}

/// The endpoint the SDK will use for `service_id` (`"S3"`, `"KMS"`) when
/// the client is built from `shared` without an explicit endpoint: the
/// service's own variable or profile `services` entry, else the shared
/// `AWS_ENDPOINT_URL` or profile `endpoint_url` (the SDK's precedence).
pub fn sdk_endpoint(shared: &aws_types::SdkConfig, service_id: &str) -> Option<String> {
    let key = aws_types::service_config::ServiceConfigKey::builder()
        .service_id(service_id)
        .env("AWS_ENDPOINT_URL")
        .profile("endpoint_url")
        .build()
        .ok()?;
    shared
        .service_config()
        .and_then(|c| c.load_config(key))
        .or_else(|| shared.endpoint_url().map(str::to_owned))
        .filter(|u| !u.is_empty())
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The host of `authority[/path]`: without userinfo, port or IPv6 brackets.
fn host_of(rest: &str) -> &str {
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if let Some(v6) = host_port.strip_prefix('[') {
        return v6.split(']').next().unwrap_or("");
    }
    host_port.split(':').next().unwrap_or("")
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
        || host.parse::<Ipv6Addr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_endpoint(url: &str, allow_http: bool) -> Result<(), String> {
        let mut c = S3Config::new("b", "p");
        c.endpoint = Some(url.into());
        c.allow_http = allow_http;
        c.check_endpoint()
    }

    #[test]
    fn plain_http_only_to_loopback_or_when_allowed() {
        for ok in [
            "https://s3.example.com",
            "https://10.1.2.3:9000/",
            "http://127.0.0.1:9000",
            "http://127.8.9.10",
            "http://localhost:4566/path",
            "HTTP://LOCALHOST",
            "http://[::1]:9000",
            "http://user:pw@127.0.0.1:1/",
        ] {
            assert_eq!(with_endpoint(ok, false), Ok(()), "{ok}");
        }
        for bad in [
            "http://s3.example.com",
            "http://10.0.0.1:9000",
            "http://[::2]:9000",
            "http://localhost.evil.com",
            "http://127.0.0.1.nip.io",
            "http://127.0.0.1@evil.com/",
        ] {
            let e = with_endpoint(bad, false).unwrap_err();
            assert!(e.contains("refusing plain-HTTP"), "{bad}: {e}");
            assert_eq!(with_endpoint(bad, true), Ok(()), "{bad}");
        }
        assert!(with_endpoint("ftp://x", true).is_err());
        assert!(with_endpoint("s3.example.com", true).is_err());
    }

    #[test]
    fn path_style_for_ip_endpoints() {
        let mut c = S3Config::new("b", "");
        for (url, want) in [
            ("http://127.0.0.1:9000", true),
            ("https://[::1]:9000", true),
            ("http://localhost:4566", true),
            ("https://s3.example.com", false),
        ] {
            c.endpoint = Some(url.into());
            assert_eq!(c.effective_path_style(), want, "{url}");
        }
        c.path_style = true;
        assert!(c.effective_path_style());
    }

    #[test]
    fn keys_map_under_the_prefix() {
        let c = S3Config::new("b", "/vols/one/");
        assert_eq!(c.prefix, "vols/one");
        assert_eq!(c.full_key("volume"), "vols/one/volume");
        assert_eq!(c.volume_key("vols/one/data/ab"), Some("data/ab"));
        assert_eq!(c.volume_key("vols/onex/data"), None);
        let root = S3Config::new("b", "");
        assert_eq!(root.full_key("volume"), "volume");
        assert_eq!(root.volume_key("volume"), Some("volume"));
    }

    #[test]
    fn sse_modes() {
        assert_eq!(Sse::parse("AES256", None), Ok(Sse::Aes256));
        assert_eq!(
            Sse::parse("aws:kms", Some("k".into())),
            Ok(Sse::Kms {
                key_id: Some("k".into())
            })
        );
        assert!(Sse::parse("aes256", None).is_err());
        assert!(Sse::parse("AES256", Some("k".into())).is_err());
    }
}
