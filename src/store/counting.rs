//! Counting decorator: how many store calls of each kind, and how many
//! bytes moved, so a test can pin performance without timing ("`stat` of
//! 1,000 files = 0 GETs", "reading 10 MiB = 10 GETs").
//!
//! Rules:
//! - Every call is counted when it is made, whether it succeeds or fails:
//!   on S3 a failed request is still a request (and is billed).
//! - `bytes_written` counts the body of every `put`/`put_if_absent` call
//!   (a refused create-only PUT still uploads its body); `bytes_read`
//!   counts the bytes actually returned by `get`/`get_range`. `list` and
//!   `head` count calls, not objects or bytes.
//! - Counters are relaxed atomics: exact once the calls being measured have
//!   returned, which is when tests read them. `reset` is not atomic with
//!   concurrent calls.
//! - Clones share the counters (and clone the inner store, which for
//!   `MemoryStore` shares its objects), so a test keeps a clone to read
//!   counts after moving the store into a filesystem; wrapping the store
//!   in an `Arc` works too.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use super::{ObjectInfo, ObjectStore, RangeSink, StoreResult};

/// A snapshot of the counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpCounts {
    pub get: u64,
    pub get_range: u64,
    pub put: u64,
    pub put_if_absent: u64,
    pub put_if_match: u64,
    pub delete: u64,
    pub list: u64,
    pub head: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
}

impl OpCounts {
    /// Object writes of either kind.
    pub fn puts(&self) -> u64 {
        self.put + self.put_if_absent + self.put_if_match
    }

    /// Object reads, whole or ranged.
    pub fn reads(&self) -> u64 {
        self.get + self.get_range
    }

    /// Calls of every kind.
    pub fn calls(&self) -> u64 {
        self.reads() + self.puts() + self.delete + self.list + self.head
    }
}

#[derive(Debug, Default)]
struct Counters {
    get: AtomicU64,
    get_range: AtomicU64,
    put: AtomicU64,
    put_if_absent: AtomicU64,
    put_if_match: AtomicU64,
    delete: AtomicU64,
    list: AtomicU64,
    head: AtomicU64,
    bytes_read: AtomicU64,
    bytes_written: AtomicU64,
}

impl Counters {
    fn all(&self) -> [&AtomicU64; 10] {
        [
            &self.get,
            &self.get_range,
            &self.put,
            &self.put_if_absent,
            &self.put_if_match,
            &self.delete,
            &self.list,
            &self.head,
            &self.bytes_read,
            &self.bytes_written,
        ]
    }
}

#[derive(Clone, Debug)]
pub struct CountingStore<S> {
    inner: S,
    counters: Arc<Counters>,
}

impl<S: ObjectStore> CountingStore<S> {
    pub fn new(inner: S) -> CountingStore<S> {
        CountingStore {
            inner,
            counters: Arc::default(),
        }
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }

    pub fn counts(&self) -> OpCounts {
        let c = &self.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        OpCounts {
            get: load(&c.get),
            get_range: load(&c.get_range),
            put: load(&c.put),
            put_if_absent: load(&c.put_if_absent),
            put_if_match: load(&c.put_if_match),
            delete: load(&c.delete),
            list: load(&c.list),
            head: load(&c.head),
            bytes_read: load(&c.bytes_read),
            bytes_written: load(&c.bytes_written),
        }
    }

    pub fn reset(&self) {
        for counter in self.counters.all() {
            counter.store(0, Ordering::Relaxed);
        }
    }
}

fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

impl<S: ObjectStore> ObjectStore for CountingStore<S> {
    fn get(&self, key: &str) -> StoreResult<Vec<u8>> {
        bump(&self.counters.get, 1);
        let body = self.inner.get(key)?;
        bump(&self.counters.bytes_read, body.len() as u64);
        Ok(body)
    }

    fn get_max(&self, key: &str, max: u64) -> StoreResult<Vec<u8>> {
        bump(&self.counters.get, 1);
        let body = self.inner.get_max(key, max)?;
        bump(&self.counters.bytes_read, body.len() as u64);
        Ok(body)
    }

    fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Vec<u8>> {
        bump(&self.counters.get_range, 1);
        let body = self.inner.get_range(key, range)?;
        bump(&self.counters.bytes_read, body.len() as u64);
        Ok(body)
    }

    fn get_range_to(&self, key: &str, range: Range<u64>, sink: &mut RangeSink) -> StoreResult<()> {
        bump(&self.counters.get_range, 1);
        let len = range.end - range.start;
        self.inner.get_range_to(key, range, sink)?;
        bump(&self.counters.bytes_read, len);
        Ok(())
    }

    fn put(&self, key: &str, body: &[u8]) -> StoreResult<()> {
        bump(&self.counters.put, 1);
        bump(&self.counters.bytes_written, body.len() as u64);
        self.inner.put(key, body)
    }

    fn put_shared(&self, key: &str, body: &Bytes) -> StoreResult<()> {
        bump(&self.counters.put, 1);
        bump(&self.counters.bytes_written, body.len() as u64);
        self.inner.put_shared(key, body)
    }

    fn put_if_absent(&self, key: &str, body: &[u8]) -> StoreResult<()> {
        bump(&self.counters.put_if_absent, 1);
        bump(&self.counters.bytes_written, body.len() as u64);
        self.inner.put_if_absent(key, body)
    }

    fn put_if_match(&self, key: &str, body: &[u8], etag: &str) -> StoreResult<()> {
        bump(&self.counters.put_if_match, 1);
        bump(&self.counters.bytes_written, body.len() as u64);
        self.inner.put_if_match(key, body, etag)
    }

    fn delete(&self, key: &str) -> StoreResult<()> {
        bump(&self.counters.delete, 1);
        self.inner.delete(key)
    }

    fn list(&self, prefix: &str) -> StoreResult<Vec<ObjectInfo>> {
        bump(&self.counters.list, 1);
        self.inner.list(prefix)
    }

    fn conditional_writes(&self) -> bool {
        self.inner.conditional_writes()
    }
    fn head(&self, key: &str) -> StoreResult<Option<ObjectInfo>> {
        bump(&self.counters.head, 1);
        self.inner.head(key)
    }

    fn space(&self) -> Option<(u64, u64)> {
        self.inner.space()
    }
    fn forget(&self, key: &str, range: Range<u64>) -> bool {
        self.inner.forget(key, range)
    }
    fn get_range_fresh(&self, key: &str, range: Range<u64>) -> StoreResult<Vec<u8>> {
        bump(&self.counters.get_range, 1);
        let body = self.inner.get_range_fresh(key, range)?;
        bump(&self.counters.bytes_read, body.len() as u64);
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{MemoryStore, conformance};

    #[test]
    fn conforms() {
        conformance::check_all(&CountingStore::new(MemoryStore::new()));
    }

    #[test]
    fn counts_each_kind_and_bytes() {
        let store = CountingStore::new(MemoryStore::new());
        store.put("a", b"12345").unwrap();
        store.put_if_absent("b", b"xyz").unwrap();
        assert!(store.put_if_absent("b", b"refused").is_err());
        store.get("a").unwrap();
        store.get_range("a", 1..3).unwrap();
        assert!(store.get("missing").is_err());
        assert!(store.get_range("a", 0..99).is_err());
        store.head("a").unwrap();
        store.list("").unwrap();
        store.list("a").unwrap();
        store.delete("a").unwrap();
        let want = OpCounts {
            get: 2,
            get_range: 2,
            put: 1,
            put_if_absent: 2,
            put_if_match: 0,
            delete: 1,
            list: 2,
            head: 1,
            bytes_read: 5 + 2,
            bytes_written: 5 + 3 + 7,
        };
        assert_eq!(store.counts(), want);
        assert_eq!((want.puts(), want.reads(), want.calls()), (3, 4, 11));
    }

    #[test]
    fn reset_zeroes_and_clones_share() {
        let store = CountingStore::new(MemoryStore::new());
        let handle = store.clone();
        let boxed: Box<dyn ObjectStore> = Box::new(store);
        boxed.put("k", b"v").unwrap();
        boxed.get("k").unwrap();
        assert_eq!(handle.counts().puts(), 1);
        assert_eq!(handle.counts().reads(), 1);
        assert_eq!(handle.inner().get("k").unwrap(), b"v");
        handle.reset();
        assert_eq!(handle.counts(), OpCounts::default());
        boxed.head("k").unwrap();
        assert_eq!(
            handle.counts(),
            OpCounts {
                head: 1,
                ..OpCounts::default()
            }
        );
    }
}
