//! The store as a lease holder sees it: reads always, writes only while
//! the lease is valid.
//!
//! A decorator rather than checks sprinkled through the filesystem: every
//! PUT (packs, journal segments, checkpoints) and every DELETE (garbage)
//! passes here, so none can slip out after the lease lapsed or was lost.
//! A refused call names the key and the reason. While the lease has only
//! lapsed it is `StoreError::Unavailable`: a renewal may still come in
//! time, so the retrying store above this gate tries again. Once the lease
//! is lost it is a permanent `Io` refusal (nothing will retry it), and the
//! fencing hook has already turned the filesystem read-only.

use std::io;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;

use super::Holder;
use crate::store::{ObjectInfo, ObjectStore, RangeSink, StoreError, StoreResult};

pub struct LeasedStore {
    inner: Arc<dyn ObjectStore>,
    holder: Arc<Holder>,
}

impl LeasedStore {
    pub fn new(inner: Arc<dyn ObjectStore>, holder: Arc<Holder>) -> LeasedStore {
        LeasedStore { inner, holder }
    }

    fn check(&self, key: &str) -> StoreResult<()> {
        self.holder.may_write().map_err(|why| {
            if self.holder.is_fenced() {
                StoreError::io(key, io::ErrorKind::PermissionDenied, why)
            } else {
                StoreError::Unavailable {
                    key: key.to_string(),
                    reason: why,
                }
            }
        })
    }
}

impl ObjectStore for LeasedStore {
    fn get(&self, key: &str) -> StoreResult<Vec<u8>> {
        self.inner.get(key)
    }
    fn get_max(&self, key: &str, max: u64) -> StoreResult<Vec<u8>> {
        self.inner.get_max(key, max)
    }
    fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Vec<u8>> {
        self.inner.get_range(key, range)
    }
    fn get_range_to(&self, key: &str, range: Range<u64>, sink: &mut RangeSink) -> StoreResult<()> {
        self.inner.get_range_to(key, range, sink)
    }
    fn put(&self, key: &str, body: &[u8]) -> StoreResult<()> {
        self.check(key)?;
        self.inner.put(key, body)
    }
    fn put_shared(&self, key: &str, body: &Bytes) -> StoreResult<()> {
        self.check(key)?;
        self.inner.put_shared(key, body)
    }
    fn put_if_absent(&self, key: &str, body: &[u8]) -> StoreResult<()> {
        self.check(key)?;
        self.inner.put_if_absent(key, body)
    }
    fn put_if_match(&self, key: &str, body: &[u8], etag: &str) -> StoreResult<()> {
        self.check(key)?;
        self.inner.put_if_match(key, body, etag)
    }
    fn delete(&self, key: &str) -> StoreResult<()> {
        self.check(key)?;
        self.inner.delete(key)
    }
    fn delete_many(&self, keys: &[String]) -> StoreResult<()> {
        match keys.first() {
            Some(key) => self.check(key)?,
            None => return Ok(()),
        }
        self.inner.delete_many(keys)
    }
    fn conditional_writes(&self) -> bool {
        self.inner.conditional_writes()
    }
    fn list(&self, prefix: &str) -> StoreResult<Vec<ObjectInfo>> {
        self.inner.list(prefix)
    }
    fn head(&self, key: &str) -> StoreResult<Option<ObjectInfo>> {
        self.inner.head(key)
    }
    fn space(&self) -> Option<(u64, u64)> {
        self.inner.space()
    }
    fn forget(&self, key: &str, range: Range<u64>) -> bool {
        self.inner.forget(key, range)
    }
    fn get_range_fresh(&self, key: &str, range: Range<u64>) -> StoreResult<Vec<u8>> {
        self.inner.get_range_fresh(key, range)
    }
}
