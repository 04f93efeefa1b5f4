//! Snapshot records: `snapshots/<id>`, one sealed object per snapshot,
//! pinning a checkpoint.
//!
//! A snapshot is a checkpoint kept whatever its age: its index, its shards
//! and every pack they map stay in the store until the snapshot is
//! deleted. The record names the checkpoint and carries what a listing
//! shows. The object name is a random id, so a snapshot's name (which
//! people choose, and which may say more than it should) is only ever
//! inside the sealed record.
//!
//! Layout: one sealed unit under the metadata key, its associated data
//! naming the object; plaintext = `META_VERSION` ‖ postcard of
//! [`SnapshotRecord`] (docs/FORMAT.md, "Snapshots").

use serde::{Deserialize, Serialize};

use super::{MetaError, decode, encode};
use crate::crypto::{self, Keys, UnitAd};
use crate::store::ObjectStore;

pub const SNAPSHOT_PREFIX: &str = "snapshots/";

/// Largest snapshot record read back.
pub const MAX_RECORD_BYTES: u64 = 64 << 10;

/// Longest snapshot name, in bytes.
pub const NAME_MAX: usize = 200;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRecord {
    /// Chosen by whoever made it; unique within the volume.
    pub name: String,
    /// Wall clock when it was made, ms since the Unix epoch (for people).
    pub created_ms: u64,
    /// The checkpoint it pins: the volume exactly as of this journal seq.
    pub checkpoint: u64,
    /// SHA-256 of journal segment `checkpoint` (the chain head then).
    pub journal_hash: [u8; 32],
    /// Inodes and stored data bytes then, for listings.
    pub inodes: u64,
    pub data_bytes: u64,
}

/// Accepts a snapshot name: 1 to [`NAME_MAX`] bytes of letters, digits
/// and `-_.:@+`, not starting with `.` or `-` (it is typed on command
/// lines and shown in listings).
pub fn check_name(name: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || "-_.:@+".contains(c);
    if name.is_empty() || name.len() > NAME_MAX {
        return Err(format!("a snapshot name has 1 to {NAME_MAX} characters"));
    }
    if name.starts_with(['.', '-']) || !name.chars().all(ok_char) {
        return Err(format!(
            "invalid snapshot name {name:?}: use letters, digits and -_.:@+, not starting with . or -"
        ));
    }
    Ok(())
}

/// A new object name for a snapshot record.
pub fn new_key() -> String {
    let id: [u8; 16] = rand::random();
    let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
    format!("{SNAPSHOT_PREFIX}{hex}")
}

/// Writes `record` as the new object `key` (create-only).
pub fn write(
    store: &dyn ObjectStore,
    keys: &Keys,
    volume_id: &[u8; 16],
    key: &str,
    record: &SnapshotRecord,
) -> Result<(), MetaError> {
    let sealed = crypto::seal(&keys.meta, &UnitAd::whole(volume_id, key), &encode(record));
    Ok(store.put_if_absent(key, &sealed)?)
}

/// Every snapshot record, by object name; one that does not open is an
/// error naming it (a damaged snapshot must be seen, not skipped).
pub fn list(
    store: &dyn ObjectStore,
    keys: &Keys,
    volume_id: &[u8; 16],
) -> Result<Vec<(String, SnapshotRecord)>, MetaError> {
    let mut out = Vec::new();
    for o in store.list(SNAPSHOT_PREFIX)? {
        let key = o.key;
        let sealed = store.get_max(&key, MAX_RECORD_BYTES)?;
        let record: SnapshotRecord = decode(
            &key,
            &crypto::open(&keys.meta, &UnitAd::whole(volume_id, &key), &sealed)?,
        )?;
        out.push((key, record));
    }
    out.sort_by(|a, b| (a.1.created_ms, &a.1.name).cmp(&(b.1.created_ms, &b.1.name)));
    Ok(out)
}

/// The record named `name`, with its object name.
pub fn find(
    store: &dyn ObjectStore,
    keys: &Keys,
    volume_id: &[u8; 16],
    name: &str,
) -> Result<Option<(String, SnapshotRecord)>, MetaError> {
    Ok(list(store, keys, volume_id)?
        .into_iter()
        .find(|(_, r)| r.name == name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MasterKey;
    use crate::store::MemoryStore;

    fn sample(name: &str, created_ms: u64) -> SnapshotRecord {
        SnapshotRecord {
            name: name.into(),
            created_ms,
            checkpoint: 7,
            journal_hash: [3; 32],
            inodes: 12,
            data_bytes: 4096,
        }
    }

    #[test]
    fn records_round_trip_sealed_under_random_names() {
        let keys = Keys::derive(&MasterKey::generate(), &[1; 16]);
        let store = MemoryStore::new();
        let (k1, k2) = (new_key(), new_key());
        assert_ne!(k1, k2);
        assert!(!k1.contains("nightly"));
        write(&store, &keys, &[1; 16], &k1, &sample("nightly", 2)).unwrap();
        write(&store, &keys, &[1; 16], &k2, &sample("before-upgrade", 1)).unwrap();
        let all = list(&store, &keys, &[1; 16]).unwrap();
        assert_eq!(all[0].1.name, "before-upgrade", "oldest first");
        assert_eq!(
            find(&store, &keys, &[1; 16], "nightly").unwrap().unwrap().0,
            k1
        );
        assert!(find(&store, &keys, &[1; 16], "none").unwrap().is_none());
        // Moved to another name, or opened as another volume's: refused.
        store.put(&k2, &store.get(&k1).unwrap()).unwrap();
        assert!(list(&store, &keys, &[1; 16]).is_err());
        assert!(matches!(
            write(&store, &keys, &[1; 16], &k1, &sample("x", 0)),
            Err(MetaError::Store(_))
        ));
    }

    #[test]
    fn names() {
        for good in ["nightly-2026-11-30", "a", "v1.2_final", "x@host:1+2"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", ".hidden", "-flag", "a b", "a/b", "é", &"x".repeat(201)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
