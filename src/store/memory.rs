//! In-memory store for tests: a sorted map from key to (body, modified,
//! version), the version being a store-wide counter that serves as ETag.
//!
//! Rules:
//! - Same contract as the local store, checked by the same conformance
//!   tests: keys pass [`check_key`], `put_if_absent` is decided under the
//!   map's lock (so racing creators have exactly one winner), ranges past
//!   the end fail. One difference: a key may also be a prefix directory of
//!   another key (`a` and `a/b`), which a directory cannot hold; sealedfs
//!   never makes such pairs.
//! - Clones share one map. A test "remounts" by building a new filesystem
//!   over a clone of the store the old one used, and "crashes" by dropping
//!   the old filesystem: whatever reached the map is what survived.
//! - Nothing is durable beyond the process, and every call completes at
//!   once; the lock is held only for the map operation itself.
//! - The `raw`/`overwrite_raw`/`set_modified` helpers bypass the contract
//!   on purpose, for tamper and garbage-collection tests.

use std::collections::BTreeMap;
use std::ops::{Bound, Range};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use super::{ObjectInfo, ObjectStore, StoreError, StoreResult, check_key, check_range};

#[derive(Debug)]
struct Object {
    body: Vec<u8>,
    modified: SystemTime,
    version: u64,
}

#[derive(Debug, Default)]
struct Map {
    objects: BTreeMap<String, Object>,
    versions: u64,
}

impl Map {
    fn insert(&mut self, key: &str, body: &[u8], modified: SystemTime) {
        self.versions += 1;
        let object = Object {
            body: body.to_vec(),
            modified,
            version: self.versions,
        };
        self.objects.insert(key.to_owned(), object);
    }
}

fn info(key: &str, object: &Object) -> ObjectInfo {
    ObjectInfo {
        key: key.to_owned(),
        size: object.body.len() as u64,
        modified: object.modified,
        etag: object.version.to_string(),
    }
}

#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    objects: Arc<Mutex<Map>>,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// Every key, sorted.
    pub fn keys(&self) -> Vec<String> {
        self.map().objects.keys().cloned().collect()
    }

    /// The stored bytes of `key`, without key checks.
    pub fn raw(&self, key: &str) -> Option<Vec<u8>> {
        self.map().objects.get(key).map(|o| o.body.clone())
    }

    /// Replaces (or plants) an object's bytes behind the filesystem's
    /// back, keeping its timestamp if it had one: an attacker with bucket
    /// access, for tamper tests. No key checks.
    pub fn overwrite_raw(&self, key: &str, body: &[u8]) {
        let mut map = self.map();
        let modified = map
            .objects
            .get(key)
            .map_or_else(SystemTime::now, |o| o.modified);
        map.insert(key, body, modified);
    }

    /// Sets the store's timestamp of `key`, so garbage-collection tests can
    /// age objects. `NotFound` if there is no such object.
    pub fn set_modified(&self, key: &str, t: SystemTime) -> StoreResult<()> {
        match self.map().objects.get_mut(key) {
            Some(object) => {
                object.modified = t;
                Ok(())
            }
            None => Err(StoreError::NotFound { key: key.into() }),
        }
    }

    /// Each call holds the lock for one map operation and cannot panic
    /// half-way through it, so a lock poisoned by a panicking test thread
    /// still guards a consistent map.
    fn map(&self) -> MutexGuard<'_, Map> {
        self.objects
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl ObjectStore for MemoryStore {
    fn get(&self, key: &str) -> StoreResult<Vec<u8>> {
        check_key(key)?;
        self.raw(key)
            .ok_or_else(|| StoreError::NotFound { key: key.into() })
    }

    fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Vec<u8>> {
        check_key(key)?;
        let map = self.map();
        let body = &map
            .objects
            .get(key)
            .ok_or_else(|| StoreError::NotFound { key: key.into() })?
            .body;
        check_range(key, &range, body.len() as u64)?;
        // In bounds of an in-memory Vec, so both ends fit in usize.
        Ok(body[range.start as usize..range.end as usize].to_vec())
    }

    fn put(&self, key: &str, body: &[u8]) -> StoreResult<()> {
        check_key(key)?;
        self.map().insert(key, body, SystemTime::now());
        Ok(())
    }

    fn put_if_absent(&self, key: &str, body: &[u8]) -> StoreResult<()> {
        check_key(key)?;
        let mut map = self.map();
        if map.objects.contains_key(key) {
            return Err(StoreError::AlreadyExists { key: key.into() });
        }
        map.insert(key, body, SystemTime::now());
        Ok(())
    }

    fn put_if_match(&self, key: &str, body: &[u8], etag: &str) -> StoreResult<()> {
        check_key(key)?;
        let mut map = self.map();
        match map.objects.get(key) {
            Some(object) if object.version.to_string() == etag => {
                map.insert(key, body, SystemTime::now());
                Ok(())
            }
            _ => Err(StoreError::PreconditionFailed { key: key.into() }),
        }
    }

    fn delete(&self, key: &str) -> StoreResult<()> {
        check_key(key)?;
        self.map().objects.remove(key);
        Ok(())
    }

    fn list(&self, prefix: &str) -> StoreResult<Vec<ObjectInfo>> {
        let map = self.map();
        let found = map
            .objects
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(prefix))
            .map(|(key, object)| info(key, object))
            .collect();
        Ok(found)
    }

    fn head(&self, key: &str) -> StoreResult<Option<ObjectInfo>> {
        check_key(key)?;
        Ok(self.map().objects.get(key).map(|o| info(key, o)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance;
    use std::time::Duration;

    #[test]
    fn conforms() {
        conformance::check_all(&MemoryStore::new());
    }

    #[test]
    fn clones_share_one_map() {
        let store = MemoryStore::new();
        let remount = store.clone();
        store.put("meta/journal/01", b"seg").unwrap();
        assert_eq!(remount.get("meta/journal/01").unwrap(), b"seg");
        remount.delete("meta/journal/01").unwrap();
        assert!(store.keys().is_empty());
        // Fencing holds across clones too.
        store.put_if_absent("lease", b"a").unwrap();
        assert!(matches!(
            remount.put_if_absent("lease", b"b"),
            Err(StoreError::AlreadyExists { .. })
        ));
    }

    #[test]
    fn racing_put_if_absent_has_one_winner() {
        let store = MemoryStore::new();
        let wins: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8u8)
                .map(|i| {
                    s.spawn({
                        let store = store.clone();
                        move || store.put_if_absent("seq", &[i]).is_ok()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| usize::from(h.join().unwrap()))
                .sum()
        });
        assert_eq!(wins, 1);
    }

    #[test]
    fn raw_helpers_tamper_without_changing_time() {
        let store = MemoryStore::new();
        store.put("data/ab/p", b"sealed").unwrap();
        store.put("volume", b"v").unwrap();
        assert_eq!(store.keys(), ["data/ab/p", "volume"]);
        let before = store.head("data/ab/p").unwrap().unwrap();
        store.overwrite_raw("data/ab/p", b"sealeD");
        assert_eq!(store.raw("data/ab/p").unwrap(), b"sealeD");
        assert_eq!(store.get("data/ab/p").unwrap(), b"sealeD");
        assert_eq!(
            store.head("data/ab/p").unwrap().unwrap().modified,
            before.modified
        );
        store.overwrite_raw("data/cd/planted", b"x");
        assert!(store.head("data/cd/planted").unwrap().is_some());
        assert_eq!(store.raw("nothing"), None);
    }

    #[test]
    fn set_modified_ages_objects() {
        let store = MemoryStore::new();
        store.put("data/ab/p", b"x").unwrap();
        let old = SystemTime::now() - Duration::from_secs(7 * 24 * 3600);
        store.set_modified("data/ab/p", old).unwrap();
        assert_eq!(store.head("data/ab/p").unwrap().unwrap().modified, old);
        assert_eq!(store.list("data/").unwrap()[0].modified, old);
        assert!(
            store
                .set_modified("data/ab/none", old)
                .unwrap_err()
                .is_not_found()
        );
    }
}
