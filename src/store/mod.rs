//! Object stores: where ciphertext lives.
//!
//! Every backend (local directory, memory, S3) implements the small
//! [`ObjectStore`] trait, and cross-cutting features (retries, fault
//! injection, operation counting, the lease's write gate) are decorators
//! that implement it too and stack at construction time.
//!
//! Rules every implementation keeps:
//! - Keys are relative to the volume (`volume`, `meta/journal/…`,
//!   `data/ab/…`); the backend maps them onto its own namespace.
//! - `put` and `put_if_absent` are atomic: a reader sees the whole new
//!   object or nothing, never a prefix, even after a crash.
//! - `put_if_absent` fails with [`StoreError::AlreadyExists`] when the key
//!   exists: this is the fencing primitive for journal segments.
//! - `put_if_match` replaces an object only while its ETag is the one the
//!   caller read; the lease and the volume header are the only objects
//!   ever replaced, and only this way.
//! - Calls block the calling thread; callers never hold filesystem locks
//!   across them.
//! - Backends make one attempt per call and say whether a failure is
//!   worth retrying ([`StoreError::is_transient`]); [`RetryingStore`] is
//!   the only place that retries.
//! - Keys are checked the same way by every backend ([`check_key`]), so a
//!   key that works on the memory store in tests works on disk too.

#[cfg(test)]
mod conformance;
mod counting;
pub mod deadline;
mod disk_cache;
mod fault;
mod local;
mod memory;
mod retry;
mod s3;

pub use counting::{CountingStore, OpCounts};
pub use disk_cache::{
    BLOCK as DISK_CACHE_BLOCK, DiskCache, DiskCacheError, DiskCacheStats, DiskCachedStore,
    check_dir as check_disk_cache_dir,
};
pub use fault::{FaultPlan, FaultStore, Op};
pub use local::{LocalLock, LocalStore};
pub use memory::MemoryStore;
pub use retry::{Outcome, RetryPolicy, RetryingStore, landed};
pub use s3::{BucketFeatures, S3Config, S3Store, Sse, Timeouts, check_url, sdk_endpoint};

use std::io;
use std::ops::Range;
use std::time::SystemTime;

use bytes::Bytes;

/// What a listing or `head` reports about one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    /// The store's own timestamp of the write; garbage collection judges
    /// object age by this clock, never by ours.
    pub modified: SystemTime,
    /// Opaque version tag: changes whenever the object's content changes
    /// (on S3 an identical rewrite may keep it). Compared for equality only.
    pub etag: String,
}

/// Why a store call failed, reduced to what callers decide on: whether a
/// retry can help ([`StoreError::is_transient`]), whether the object is
/// simply absent, or whether a conditional write lost a race.
#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    #[error("object {key} not found")]
    NotFound { key: String },
    /// A create-only write found the key taken.
    #[error("object {key} already exists")]
    AlreadyExists { key: String },
    /// A conditional replace found another version (or none).
    #[error("object {key} changed since it was read")]
    PreconditionFailed { key: String },
    /// Refused for good: credentials, permissions, a bucket policy.
    #[error("access denied to {key}: {reason}")]
    AccessDenied { key: String, reason: String },
    /// No answer in time, a broken connection, a 5xx, throttling, or a
    /// writer's lease that is not valid right now: a retry may succeed.
    #[error("store unavailable{}: {reason}", named(key))]
    Unavailable { key: String, reason: String },
    /// A failure a retry will not fix: a disk error, a missing bucket, a
    /// wrong region, a request the store cannot take.
    #[error("store error on {key}: {reason}")]
    Io {
        key: String,
        kind: io::ErrorKind,
        reason: String,
    },
    /// The local volume directory is locked by another read-write mount.
    #[error("the volume directory is locked by another read-write mount")]
    Locked,
    /// Injected by [`FaultStore`] in tests: a transient outage.
    #[error("injected fault on {op:?} {key}")]
    Injected { op: Op, key: String },
}

/// ` (key)`, or nothing for a call that named no key.
fn named(key: &str) -> String {
    match key {
        "" => String::new(),
        k => format!(" ({k})"),
    }
}

impl StoreError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::NotFound { .. })
    }

    /// True when retrying the same call later may succeed. Everything else
    /// is the store's final answer and is never retried.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Unavailable { .. } | StoreError::Injected { .. } => true,
            StoreError::NotFound { .. }
            | StoreError::AlreadyExists { .. }
            | StoreError::PreconditionFailed { .. }
            | StoreError::AccessDenied { .. }
            | StoreError::Io { .. }
            | StoreError::Locked => false,
        }
    }

    /// True when [`LocalStore::lock_exclusive`] found the volume directory
    /// locked by another read-write mount.
    pub fn is_locked(&self) -> bool {
        matches!(self, StoreError::Locked)
    }

    /// The key the failed call named ("" when none).
    pub fn key(&self) -> &str {
        match self {
            StoreError::NotFound { key }
            | StoreError::AlreadyExists { key }
            | StoreError::PreconditionFailed { key }
            | StoreError::AccessDenied { key, .. }
            | StoreError::Unavailable { key, .. }
            | StoreError::Io { key, .. }
            | StoreError::Injected { key, .. } => key,
            StoreError::Locked => "",
        }
    }

    /// A caller bug (a bad key or range), not a store condition.
    fn invalid_input(key: &str, why: String) -> StoreError {
        StoreError::io(key, io::ErrorKind::InvalidInput, why)
    }

    pub fn io(key: &str, kind: io::ErrorKind, reason: impl Into<String>) -> StoreError {
        StoreError::Io {
            key: key.to_owned(),
            kind,
            reason: reason.into(),
        }
    }

    /// An error of the operating system, classified: a refused permission
    /// is `AccessDenied`, an interrupted or timed-out call `Unavailable`,
    /// anything else (a full disk, a read-only filesystem, EIO) `Io`.
    pub(crate) fn from_os(key: &str, e: &io::Error) -> StoreError {
        match e.kind() {
            io::ErrorKind::PermissionDenied => StoreError::AccessDenied {
                key: key.to_owned(),
                reason: e.to_string(),
            },
            io::ErrorKind::TimedOut | io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock => {
                StoreError::Unavailable {
                    key: key.to_owned(),
                    reason: e.to_string(),
                }
            }
            kind => StoreError::io(key, kind, e.to_string()),
        }
    }
}

/// Accepts a key only if every backend can hold it unchanged: non-empty
/// `/`-separated segments, none empty (no leading, trailing or doubled
/// `/`), none starting with `.` (that excludes `.` and `..`, which would
/// escape or alias on disk, and the local store's own `.lock` and `.tmp-*`
/// files), and no NUL byte. Failure is `Io` with `InvalidInput`: a caller
/// bug, not a store condition.
pub(crate) fn check_key(key: &str) -> StoreResult<()> {
    if key.is_empty() {
        return Err(StoreError::invalid_input(key, "empty object key".into()));
    }
    if key.contains('\0') {
        return Err(StoreError::invalid_input(
            key,
            "object key holds a NUL byte".into(),
        ));
    }
    for segment in key.split('/') {
        if segment.is_empty() {
            return Err(StoreError::invalid_input(
                key,
                "object key has an empty segment (leading, trailing or doubled /)".into(),
            ));
        }
        if segment.starts_with('.') {
            return Err(StoreError::invalid_input(
                key,
                format!("object key segment {segment:?} starts with '.'"),
            ));
        }
    }
    Ok(())
}

/// Checks `range` against an object of `len` bytes. A reversed range is a
/// caller bug (`InvalidInput`); one ending past the end is `UnexpectedEof`,
/// because a short read would hand a truncated segment to authentication
/// and blur "object damaged" into "wrong offset".
pub(crate) fn check_range(key: &str, range: &Range<u64>, len: u64) -> StoreResult<()> {
    if range.start > range.end {
        return Err(StoreError::invalid_input(
            key,
            format!("reversed range {}..{}", range.start, range.end),
        ));
    }
    if range.end > len {
        return Err(StoreError::io(
            key,
            io::ErrorKind::UnexpectedEof,
            format!(
                "range {}..{} ends past the object's {len} bytes",
                range.start, range.end
            ),
        ));
    }
    Ok(())
}

/// Refuses an object of `len` bytes where at most `max` may be.
pub(crate) fn check_max(key: &str, len: u64, max: u64) -> StoreResult<()> {
    if len > max {
        return Err(StoreError::io(
            key,
            io::ErrorKind::InvalidData,
            format!("{len} bytes where at most {max} belong"),
        ));
    }
    Ok(())
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Where [`ObjectStore::get_range_to`] puts bytes: `(offset in the range,
/// bytes)`.
pub type RangeSink<'a> = dyn FnMut(u64, &[u8]) + 'a;

pub trait ObjectStore: Send + Sync {
    /// Whole object.
    fn get(&self, key: &str) -> StoreResult<Vec<u8>>;
    /// Whole object, refused (`Io`, `InvalidData`) if it is larger than
    /// `max` bytes, where the store can tell without reading it all. Every
    /// read of an object whose format bounds its size comes here, so a
    /// hostile store cannot make us allocate without limit.
    fn get_max(&self, key: &str, max: u64) -> StoreResult<Vec<u8>> {
        let body = self.get(key)?;
        check_max(key, body.len() as u64, max)?;
        Ok(body)
    }
    /// Bytes `range` of the object; a range past the end is an error
    /// (`Io` with `UnexpectedEof`), never a short read.
    fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Vec<u8>>;
    /// [`ObjectStore::get_range`], handing the bytes to `sink` as they
    /// arrive: `sink(at, bytes)` with `at` counted from `range.start`, in
    /// order. A retried attempt starts again from an earlier `at` (0, or
    /// where a cache's part of the range ended), so a sink must take bytes
    /// it has seen before. Lets a reader open each sealed
    /// segment while the rest is still on the wire, with no buffer for the
    /// whole range. Wrappers forward it; the default reads the whole range
    /// first.
    fn get_range_to(&self, key: &str, range: Range<u64>, sink: &mut RangeSink) -> StoreResult<()> {
        let body = self.get_range(key, range)?;
        sink(0, &body);
        Ok(())
    }
    /// Create or replace atomically.
    fn put(&self, key: &str, body: &[u8]) -> StoreResult<()>;
    /// [`ObjectStore::put`] of a body the store may keep a reference to
    /// while it sends: S3 hands it to its request as it is, where `put`
    /// must copy it first (the SDK's body owns its bytes). For pack bodies
    /// of megabytes: the copy was a second pack's worth of memory per
    /// upload, outside the cache's count. Wrappers forward it.
    fn put_shared(&self, key: &str, body: &Bytes) -> StoreResult<()> {
        self.put(key, body)
    }
    /// Create only; `AlreadyExists` if the key is taken.
    fn put_if_absent(&self, key: &str, body: &[u8]) -> StoreResult<()>;
    /// Replace only if the object exists with ETag `etag` (from `head` or
    /// `list`); `PreconditionFailed` otherwise.
    fn put_if_match(&self, key: &str, body: &[u8], etag: &str) -> StoreResult<()>;
    /// Deleting a missing object is not an error.
    fn delete(&self, key: &str) -> StoreResult<()>;
    /// All objects whose key starts with `prefix`, sorted by key.
    fn list(&self, prefix: &str) -> StoreResult<Vec<ObjectInfo>>;
    fn head(&self, key: &str) -> StoreResult<Option<ObjectInfo>>;
    /// Deletes every key (missing ones are fine), in batches where the
    /// store has them (S3: 1,000 per request). On failure the others are
    /// still attempted and the first error is returned: a refused delete
    /// (Object Lock) must not stop garbage collection.
    fn delete_many(&self, keys: &[String]) -> StoreResult<()> {
        let mut first_err = None;
        for key in keys {
            if let Err(e) = self.delete(key) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
    /// False where the store was found to ignore `If-None-Match` (some
    /// S3-compatible servers): `put_if_absent` is then emulated with
    /// HEAD-then-PUT, which a concurrent writer can race.
    fn conditional_writes(&self) -> bool {
        true
    }
    /// (total, available) bytes where the store has a fixed size (a local
    /// disk); `None` for object stores.
    fn space(&self) -> Option<(u64, u64)> {
        None
    }
    /// The caller found bytes `range` of `key` it read failing
    /// authentication: a decorator that may have answered from a copy of
    /// its own (the disk cache) drops that part of it, if still held, and
    /// returns true, and the caller reads once more with
    /// [`ObjectStore::get_range_fresh`]. False: nothing here was a copy; a
    /// re-read would see the same bytes.
    fn forget(&self, key: &str, range: Range<u64>) -> bool {
        let _ = (key, range);
        false
    }
    /// Bytes `range` of `key` as the store holds them now: a decorator
    /// with a copy of its own (the disk cache) does not answer from it,
    /// and may replace it with what was fetched. For the read after
    /// [`ObjectStore::forget`], and for a probe that must see the store.
    fn get_range_fresh(&self, key: &str, range: Range<u64>) -> StoreResult<Vec<u8>> {
        self.get_range(key, range)
    }
}

impl<T: ObjectStore + ?Sized> ObjectStore for std::sync::Arc<T> {
    fn get(&self, key: &str) -> StoreResult<Vec<u8>> {
        (**self).get(key)
    }
    fn get_max(&self, key: &str, max: u64) -> StoreResult<Vec<u8>> {
        (**self).get_max(key, max)
    }
    fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Vec<u8>> {
        (**self).get_range(key, range)
    }
    fn get_range_to(&self, key: &str, range: Range<u64>, sink: &mut RangeSink) -> StoreResult<()> {
        (**self).get_range_to(key, range, sink)
    }
    fn put(&self, key: &str, body: &[u8]) -> StoreResult<()> {
        (**self).put(key, body)
    }
    fn put_shared(&self, key: &str, body: &Bytes) -> StoreResult<()> {
        (**self).put_shared(key, body)
    }
    fn put_if_absent(&self, key: &str, body: &[u8]) -> StoreResult<()> {
        (**self).put_if_absent(key, body)
    }
    fn put_if_match(&self, key: &str, body: &[u8], etag: &str) -> StoreResult<()> {
        (**self).put_if_match(key, body, etag)
    }
    fn delete(&self, key: &str) -> StoreResult<()> {
        (**self).delete(key)
    }
    fn list(&self, prefix: &str) -> StoreResult<Vec<ObjectInfo>> {
        (**self).list(prefix)
    }
    fn head(&self, key: &str) -> StoreResult<Option<ObjectInfo>> {
        (**self).head(key)
    }
    fn space(&self) -> Option<(u64, u64)> {
        (**self).space()
    }
    fn delete_many(&self, keys: &[String]) -> StoreResult<()> {
        (**self).delete_many(keys)
    }
    fn conditional_writes(&self) -> bool {
        (**self).conditional_writes()
    }
    fn forget(&self, key: &str, range: Range<u64>) -> bool {
        (**self).forget(key, range)
    }
    fn get_range_fresh(&self, key: &str, range: Range<u64>) -> StoreResult<Vec<u8>> {
        (**self).get_range_fresh(key, range)
    }
}
