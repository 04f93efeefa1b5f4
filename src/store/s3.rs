//! The S3 store: a bucket prefix holds the volume's objects.
//!
//! Calls come from plain OS threads, many at once; each one is run with
//! `block_on` on this store's own tokio runtime (never a static one: the
//! mount opens a store, drops it and forks, and a runtime's threads do
//! not survive a fork, so dropping the store shuts its runtime down and
//! leaves no thread behind).
//!
//! Rules:
//! - Object keys are `<prefix>/<volume key>`; no user metadata, tags or
//!   content type are ever sent, only the optional SSE headers.
//! - At most `max_requests` requests are in flight over all threads.
//! - Every call is one attempt with a timeout that grows with the body
//!   (cut short by the call's deadline, `super::deadline`), its failure
//!   classified by [`classify`]: transient ones come back as
//!   `StoreError::Unavailable` for [`crate::store::RetryingStore`] to
//!   retry (and to resolve a lost answer by reading back). Only opening
//!   retries here, under its own short deadline, with the same policy.
//! - Stores that ignore `If-None-Match` (found by [`S3Store::probe`]) get
//!   a HEAD-then-PUT instead, which is weaker: see docs/SEMANTICS.md.
//! - Logs name keys, never bodies or credentials.

mod body;
mod classify;
mod config;
mod probe;
#[cfg(test)]
mod tests;

pub use config::{S3Config, Sse, Timeouts, check_url, sdk_endpoint};
pub use probe::BucketFeatures;

use std::future::Future;
use std::io;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{
    BehaviorVersion, Region, RequestChecksumCalculation, ResponseChecksumValidation,
    retry::RetryConfig, timeout::TimeoutConfig,
};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{Delete, ObjectIdentifier, ServerSideEncryption};
use bytes::Bytes;
use tokio::runtime::Runtime;
use tokio::sync::Semaphore;

use self::classify::{Failure, classify};
use super::{
    ObjectInfo, ObjectStore, RangeSink, RetryPolicy, StoreError, StoreResult, check_key, check_max,
    check_range, deadline,
};

/// The most a GET allocates up front from a length it was told: larger
/// bodies grow as their bytes arrive.
const MAX_PREALLOC: u64 = 64 << 20;

/// DeleteObjects takes at most this many keys.
const DELETE_BATCH: usize = 1000;

pub struct S3Store {
    cfg: S3Config,
    /// `Option` only so that `Drop` can shut the runtime down after the
    /// client (and its connection pool) is gone.
    rt: Option<Runtime>,
    client: Option<Client>,
    permits: Semaphore,
    conditional_writes: AtomicBool,
    id: usize,
}

impl S3Store {
    /// Connects and checks that the bucket answers (within
    /// `open_deadline`): a wrong endpoint, region, bucket or credentials
    /// fails here, not at the first write.
    pub fn open(cfg: S3Config) -> StoreResult<S3Store> {
        let store = S3Store::connect(cfg)?;
        store.check_bucket()?;
        Ok(store)
    }

    /// A store whose bucket has not been checked (tests create buckets).
    fn connect(cfg: S3Config) -> StoreResult<S3Store> {
        cfg.check_endpoint()
            .map_err(|why| StoreError::invalid_input("", why))?;
        static STORES: AtomicUsize = AtomicUsize::new(0);
        let n = STORES.fetch_add(1, Ordering::Relaxed);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .max_blocking_threads(4)
            .thread_name(format!("s3-{n}"))
            .enable_all()
            .build()
            .map_err(|e| StoreError::from_os("", &e))?;
        let client = rt.block_on(build_client(&cfg))?;
        let store = S3Store {
            permits: Semaphore::new(cfg.max_requests.max(1)),
            cfg,
            rt: Some(rt),
            client: Some(client),
            conditional_writes: AtomicBool::new(true),
            id: n,
        };
        Ok(store)
    }

    pub fn config(&self) -> &S3Config {
        &self.cfg
    }

    /// False once [`S3Store::probe`] found that the store ignores
    /// `If-None-Match`.
    pub fn conditional_writes(&self) -> bool {
        self.conditional_writes.load(Ordering::Relaxed)
    }

    /// Takes a probe's answer from an earlier open of the same store
    /// instead of probing again.
    pub fn assume_conditional_writes(&self, honoured: bool) {
        self.conditional_writes.store(honoured, Ordering::Relaxed);
    }

    /// The name of this store's runtime threads (tests check that none
    /// outlives the store).
    pub fn thread_name(&self) -> String {
        format!("s3-{}", self.id)
    }

    fn rt(&self) -> &Runtime {
        self.rt.as_ref().expect("runtime lives until drop")
    }

    fn client(&self) -> &Client {
        self.client.as_ref().expect("client lives until drop")
    }

    fn attempt_timeout(&self, body_len: usize) -> Duration {
        let t = &self.cfg.timeouts;
        t.attempt
            + t.attempt_per_mib
                .mul_f64(body_len as f64 / f64::from(1u32 << 20))
    }

    /// One attempt: `op` builds and sends the request, bounded by the
    /// attempt timeout and the in-flight limit.
    fn call<T, F, Fut>(&self, body_len: usize, op: F) -> Result<T, Failure>
    where
        F: FnOnce(&Client) -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        let limit = match deadline::remaining() {
            Some(left) => self.attempt_timeout(body_len).min(left),
            None => self.attempt_timeout(body_len),
        };
        if limit.is_zero() {
            return Err(Failure::transport("the call's deadline passed".into()));
        }
        let attempt = op(self.client());
        self.rt().block_on(async {
            let _permit = self
                .permits
                .acquire()
                .await
                .expect("semaphore never closed");
            match tokio::time::timeout(limit, attempt).await {
                Ok(r) => r,
                Err(_) => Err(Failure::transport(format!(
                    "no answer within {:.1}s",
                    limit.as_secs_f64()
                ))),
            }
        })
    }

    /// Maps a final failure on `key` to the store's error.
    fn error(&self, key: &str, f: Failure) -> StoreError {
        let bucket = &self.cfg.bucket;
        let io = |kind, msg: String| StoreError::io(key, kind, msg);
        if f.code_is("NoSuchBucket") {
            return io(
                io::ErrorKind::NotFound,
                format!("bucket {bucket} does not exist"),
            );
        }
        if let Some(region) = f.region_hint.as_deref().filter(|_| {
            f.is(301)
                || f.code_is("PermanentRedirect")
                || f.code_is("AuthorizationHeaderMalformed")
                || f.code_is("IllegalLocationConstraintException")
        }) {
            return io(
                io::ErrorKind::Other,
                format!("bucket {bucket} is in region {region}: set AWS_REGION={region}"),
            );
        }
        if f.is(301) || f.code_is("PermanentRedirect") {
            return io(
                io::ErrorKind::Other,
                format!("bucket {bucket} is in another region: set AWS_REGION to it"),
            );
        }
        let denied = [
            "AccessDenied",
            "InvalidAccessKeyId",
            "SignatureDoesNotMatch",
            "AllAccessDisabled",
            "ExpiredToken",
            "InvalidToken",
            "AccountProblem",
        ];
        if f.is(403) || denied.iter().any(|c| f.code_is(c)) {
            return StoreError::AccessDenied {
                key: key.to_owned(),
                reason: format!(
                    "access denied by bucket {bucket} ({})",
                    f.code.as_deref().unwrap_or("403")
                ),
            };
        }
        if f.is(404) || f.code_is("NoSuchKey") {
            return StoreError::NotFound {
                key: key.to_owned(),
            };
        }
        if f.transient {
            return StoreError::Unavailable {
                key: key.to_owned(),
                reason: f.detail,
            };
        }
        io(io::ErrorKind::Other, f.detail)
    }

    /// A cheap request that every later one depends on: the bucket exists
    /// and answers us in this region.
    fn check_bucket(&self) -> StoreResult<()> {
        let prefix = self.cfg.full_key("");
        let bucket = &self.cfg.bucket;
        let policy = RetryPolicy::with_deadline(self.cfg.timeouts.open_deadline);
        let attempt = || {
            self.call(0, |c| {
                let req = c
                    .list_objects_v2()
                    .bucket(bucket)
                    .prefix(&prefix)
                    .max_keys(1);
                async move { req.send().await.map(|_| ()).map_err(classify) }
            })
            .map_err(|f| self.error("", f))
        };
        policy.run("list", &prefix, attempt).result
    }

    fn put_request(
        &self,
        key: &str,
        body: &Bytes,
    ) -> aws_sdk_s3::operation::put_object::builders::PutObjectFluentBuilder {
        let mut req = self
            .client()
            .put_object()
            .bucket(&self.cfg.bucket)
            .key(self.cfg.full_key(key))
            .body(ByteStream::from(body.clone()));
        match &self.cfg.sse {
            None => {}
            Some(Sse::Aes256) => req = req.server_side_encryption(ServerSideEncryption::Aes256),
            Some(Sse::Kms { key_id }) => {
                req = req
                    .server_side_encryption(ServerSideEncryption::AwsKms)
                    .set_ssekms_key_id(key_id.clone());
            }
        }
        req
    }

    /// PUT with an optional condition.
    fn put_with(
        &self,
        key: &str,
        bytes: Bytes,
        if_none_match: bool,
        if_match: Option<&str>,
    ) -> Result<(), Failure> {
        self.call(bytes.len(), |_| {
            let mut req = self.put_request(key, &bytes);
            if if_none_match {
                req = req.if_none_match("*");
            }
            if let Some(etag) = if_match {
                req = req.if_match(etag);
            }
            async move { req.send().await.map(|_| ()).map_err(classify) }
        })
    }

    fn put_if_absent_conditional(&self, key: &str, body: &[u8]) -> StoreResult<()> {
        match self.put_with(key, Bytes::copy_from_slice(body), true, None) {
            Ok(()) => Ok(()),
            Err(f) if f.is(412) => Err(StoreError::AlreadyExists {
                key: key.to_owned(),
            }),
            Err(f) => Err(self.error(key, f)),
        }
    }

    /// For stores that ignore `If-None-Match`: a race between the HEAD and
    /// the PUT can let two writers both "create" the key.
    fn put_if_absent_emulated(&self, key: &str, body: &[u8]) -> StoreResult<()> {
        if self.head(key)?.is_some() {
            return Err(StoreError::AlreadyExists {
                key: key.to_owned(),
            });
        }
        self.put(key, body)
    }

    fn delete_batch(&self, keys: &[String]) -> StoreResult<()> {
        let mut ids = Vec::with_capacity(keys.len());
        for key in keys {
            check_key(key)?;
            let id = ObjectIdentifier::builder()
                .key(self.cfg.full_key(key))
                .build()
                .map_err(|e| StoreError::invalid_input(key, e.to_string()))?;
            ids.push(id);
        }
        let delete = Delete::builder()
            .set_objects(Some(ids))
            .quiet(true)
            .build()
            .map_err(|e| StoreError::invalid_input("", e.to_string()))?;
        let first = keys.first().map_or("", String::as_str);
        let out = self
            .call(0, |c| {
                let req = c.delete_objects().bucket(&self.cfg.bucket).delete(delete);
                async move { req.send().await.map_err(classify) }
            })
            .map_err(|f| self.error(first, f))?;
        // Per-key refusals (Object Lock, a policy): report the first, after
        // the rest were deleted.
        let mut first_err = None;
        for e in out.errors() {
            let full = e.key().unwrap_or_default();
            let key = self.cfg.volume_key(full).unwrap_or(full).to_owned();
            let code = e.code().unwrap_or_default();
            if code == "NoSuchKey" {
                continue;
            }
            log::warn!("delete {key} refused: {code}");
            first_err.get_or_insert(if code == "AccessDenied" {
                StoreError::AccessDenied {
                    key,
                    reason: format!("delete refused ({code})"),
                }
            } else {
                StoreError::io(
                    &key,
                    io::ErrorKind::Other,
                    format!("delete refused ({code})"),
                )
            });
        }
        first_err.map_or(Ok(()), Err)
    }
}

impl Drop for S3Store {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            {
                // Idle connections are tasks on the runtime: drop the pool
                // inside it, then stop every worker and blocking thread.
                let _inside = rt.enter();
                self.client.take();
            }
            rt.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

async fn build_client(cfg: &S3Config) -> StoreResult<Client> {
    let t = &cfg.timeouts;
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(t.connect)
                .read_timeout(t.attempt)
                .build(),
        );
    if let Some(region) = &cfg.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(creds) = &cfg.credentials {
        loader = loader.credentials_provider(creds.clone());
    }
    let shared = loader.load().await;
    // What the SDK would use with everything it reads (a profile's
    // endpoint_url or services section included), checked before any
    // request: the flags and variables were checked already.
    let endpoint = cfg
        .effective_endpoint()
        .or_else(|| config::sdk_endpoint(&shared, "S3"));
    if let Some(url) = &endpoint {
        config::check_url(url, cfg.allow_http).map_err(|why| StoreError::invalid_input("", why))?;
    }
    let region = match (shared.region(), &endpoint) {
        (Some(r), _) => r.clone(),
        // S3-compatible servers accept any region in the signature.
        (None, Some(_)) => Region::new("us-east-1"),
        (None, None) => {
            return Err(StoreError::invalid_input(
                "",
                "no AWS region: set AWS_REGION (or a profile's region)".into(),
            ));
        }
    };
    let mut builder = aws_sdk_s3::config::Builder::from(&shared)
        .region(region)
        .force_path_style(cfg.effective_path_style())
        // Checksums only where S3 requires them (DeleteObjects): bodies
        // are authenticated by our own sealing, and many S3-compatible
        // servers reject the newer checksum trailers.
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
    if let Some(url) = endpoint {
        builder = builder.endpoint_url(url);
    }
    Ok(Client::from_conf(builder.build()))
}

fn to_system_time(t: Option<&aws_sdk_s3::primitives::DateTime>) -> SystemTime {
    t.and_then(|t| SystemTime::try_from(*t).ok())
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// A Content-Range header, `bytes first-last/total`; the total is `None`
/// when the server wrote `*` (unknown).
struct ContentRange {
    first: u64,
    last: u64,
    total: Option<u64>,
}

impl ContentRange {
    fn parse(header: &str) -> Option<ContentRange> {
        let (span, total) = header.strip_prefix("bytes ")?.split_once('/')?;
        let (first, last) = span.split_once('-')?;
        Some(ContentRange {
            first: first.parse().ok()?,
            last: last.parse().ok()?,
            total: total.parse().ok(),
        })
    }
}

/// A ranged answer must start where asked: bytes from elsewhere would be
/// fed to the reader as if they were the range. (One that runs past the
/// range is fine: only the bytes asked for are taken.) Returns the
/// object's size, `u64::MAX` when the server did not say.
fn check_range_sent(range: &Range<u64>, header: &str) -> Result<u64, String> {
    match ContentRange::parse(header) {
        Some(r) if r.first == range.start && r.first <= r.last => Ok(r.total.unwrap_or(u64::MAX)),
        _ => Err(format!(
            "the server answered {header:?} for bytes {range:?}"
        )),
    }
}

impl ObjectStore for S3Store {
    fn get(&self, key: &str) -> StoreResult<Vec<u8>> {
        check_key(key)?;
        let full = self.cfg.full_key(key);
        self.call(0, |c| {
            let req = c.get_object().bucket(&self.cfg.bucket).key(&full);
            async move {
                let out = req.send().await.map_err(classify)?;
                let announced = out.content_length();
                body::collect(out.body, announced, MAX_PREALLOC).await
            }
        })
        .map_err(|f| self.error(key, f))
    }

    fn get_max(&self, key: &str, max: u64) -> StoreResult<Vec<u8>> {
        check_key(key)?;
        if max >= u64::MAX - 1 {
            return self.get(key);
        }
        // One byte more than allowed: its presence, or Content-Range's
        // total, says the object is too large without fetching it all.
        let full = self.cfg.full_key(key);
        let header = format!("bytes=0-{max}");
        let res = self.call(0, |c| {
            let req = c
                .get_object()
                .bucket(&self.cfg.bucket)
                .key(&full)
                .range(&header);
            async move {
                let out = req.send().await.map_err(classify)?;
                let total = out
                    .content_range()
                    .and_then(ContentRange::parse)
                    .and_then(|r| r.total);
                let announced = out.content_length();
                let body = body::collect(out.body, announced, max.saturating_add(1)).await?;
                Ok((total, body))
            }
        });
        match res {
            Ok((total, body)) => {
                check_max(key, total.unwrap_or(body.len() as u64), max)?;
                Ok(body)
            }
            // An empty object has no byte 0 to start a range at.
            Err(f) if f.is(416) || f.code_is("InvalidRange") => self.get(key),
            Err(f) => Err(self.error(key, f)),
        }
    }

    fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Vec<u8>> {
        let len = usize::try_from(range.end.saturating_sub(range.start))
            .map_err(|e| StoreError::invalid_input(key, e.to_string()))?;
        let mut out = Vec::with_capacity(len.min(MAX_PREALLOC as usize));
        // An attempt's bytes arrive in order; a retried one starts at 0.
        self.get_range_to(key, range, &mut |at, b| {
            out.truncate(at as usize);
            out.extend_from_slice(b);
        })?;
        Ok(out)
    }

    fn get_range_to(&self, key: &str, range: Range<u64>, sink: &mut RangeSink) -> StoreResult<()> {
        check_key(key)?;
        if range.start >= range.end {
            // Nothing to fetch, but the object must exist and the range
            // must lie inside it.
            let info = self.head(key)?.ok_or_else(|| StoreError::NotFound {
                key: key.to_owned(),
            })?;
            return check_range(key, &range, info.size);
        }
        let full = self.cfg.full_key(key);
        let header = format!("bytes={}-{}", range.start, range.end - 1);
        let len = range.end - range.start;
        let res = self.call(0, |c| {
            let req = c
                .get_object()
                .bucket(&self.cfg.bucket)
                .key(&full)
                .range(&header);
            async move {
                let out = req.send().await.map_err(classify)?;
                // No Content-Range: the server ignored the range and sends
                // the whole object. A total of `*` is unknown.
                let total = out
                    .content_range()
                    .map(|h| check_range_sent(&(range.start..range.end), h))
                    .transpose()
                    .map_err(Failure::transport)?;
                let skip = if total.is_some() { 0 } else { range.start };
                let sent = body::stream(out.body, skip, len, sink).await?;
                Ok(match total {
                    Some(t) => (t, sent.min(len)),
                    None => (sent, sent.saturating_sub(skip).min(len)),
                })
            }
        });
        match res {
            Ok((total, got)) => {
                check_range(key, &range, total)?;
                if got != len {
                    return Err(StoreError::io(
                        key,
                        io::ErrorKind::UnexpectedEof,
                        format!("short ranged read: {got} bytes for {range:?}"),
                    ));
                }
                Ok(())
            }
            Err(f) if f.is(416) || f.code_is("InvalidRange") => {
                let info = self.head(key)?.ok_or_else(|| StoreError::NotFound {
                    key: key.to_owned(),
                })?;
                check_range(key, &range, info.size)?;
                Err(self.error(key, f))
            }
            Err(f) => Err(self.error(key, f)),
        }
    }

    fn put(&self, key: &str, body: &[u8]) -> StoreResult<()> {
        self.put_shared(key, &Bytes::copy_from_slice(body))
    }

    fn put_shared(&self, key: &str, body: &Bytes) -> StoreResult<()> {
        check_key(key)?;
        self.put_with(key, body.clone(), false, None)
            .map_err(|f| self.error(key, f))
    }

    fn put_if_absent(&self, key: &str, body: &[u8]) -> StoreResult<()> {
        check_key(key)?;
        if self.conditional_writes() {
            self.put_if_absent_conditional(key, body)
        } else {
            self.put_if_absent_emulated(key, body)
        }
    }

    fn put_if_match(&self, key: &str, body: &[u8], etag: &str) -> StoreResult<()> {
        check_key(key)?;
        match self.put_with(key, Bytes::copy_from_slice(body), false, Some(etag)) {
            Ok(()) => Ok(()),
            Err(f) if f.is(412) || f.is(404) || f.code_is("NoSuchKey") => {
                Err(StoreError::PreconditionFailed {
                    key: key.to_owned(),
                })
            }
            Err(f) => Err(self.error(key, f)),
        }
    }

    fn delete(&self, key: &str) -> StoreResult<()> {
        check_key(key)?;
        let full = self.cfg.full_key(key);
        let res = self.call(0, |c| {
            let req = c.delete_object().bucket(&self.cfg.bucket).key(&full);
            async move { req.send().await.map(|_| ()).map_err(classify) }
        });
        match res {
            Ok(()) => Ok(()),
            Err(f) if f.is(404) && !f.code_is("NoSuchBucket") => Ok(()),
            Err(f) => Err(self.error(key, f)),
        }
    }

    fn delete_many(&self, keys: &[String]) -> StoreResult<()> {
        let mut first_err = None;
        for batch in keys.chunks(DELETE_BATCH) {
            if let Err(e) = self.delete_batch(batch) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    fn list(&self, prefix: &str) -> StoreResult<Vec<ObjectInfo>> {
        let full_prefix = self.cfg.full_key(prefix);
        let full_prefix = if prefix.is_empty() && !self.cfg.prefix.is_empty() {
            format!("{}/", self.cfg.prefix)
        } else {
            full_prefix
        };
        let mut found = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .call(0, |c| {
                    let req = c
                        .list_objects_v2()
                        .bucket(&self.cfg.bucket)
                        .prefix(&full_prefix)
                        .set_continuation_token(token.clone());
                    async move { req.send().await.map_err(classify) }
                })
                .map_err(|f| self.error(prefix, f))?;
            for obj in page.contents() {
                let Some(key) = obj.key().and_then(|k| self.cfg.volume_key(k)) else {
                    continue;
                };
                found.push(ObjectInfo {
                    key: key.to_owned(),
                    size: obj.size().unwrap_or(0).max(0) as u64,
                    modified: to_system_time(obj.last_modified()),
                    etag: obj.e_tag().unwrap_or_default().to_owned(),
                });
            }
            match page.next_continuation_token() {
                Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_owned()),
                _ => break,
            }
        }
        found.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(found)
    }

    fn head(&self, key: &str) -> StoreResult<Option<ObjectInfo>> {
        check_key(key)?;
        let full = self.cfg.full_key(key);
        let res = self.call(0, |c| {
            let req = c.head_object().bucket(&self.cfg.bucket).key(&full);
            async move { req.send().await.map_err(classify) }
        });
        match res {
            Ok(out) => Ok(Some(ObjectInfo {
                key: key.to_owned(),
                size: out.content_length().unwrap_or(0).max(0) as u64,
                modified: to_system_time(out.last_modified()),
                etag: out.e_tag().unwrap_or_default().to_owned(),
            })),
            Err(f) if f.is(404) => Ok(None),
            Err(f) => Err(self.error(key, f)),
        }
    }

    fn conditional_writes(&self) -> bool {
        S3Store::conditional_writes(self)
    }
}
