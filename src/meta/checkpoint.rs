//! Checkpoints: the whole namespace as of journal seq S, so a mount replays
//! only the segments after S.
//!
//! Layout: shards `meta/checkpoint/<S>/<n>` each hold a slice of the
//! inodes; the index `meta/checkpoint/<S>/index`, written last and
//! create-only, holds the pack table, the orphan list, the hash of journal
//! segment S and the hash of every shard. A checkpoint without an index is
//! incomplete and ignored. Every object is sealed with its own name in the
//! associated data.

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use super::{Corrupt, Inode, MetaError, Namespace, PackInfo, decode, encode};
use crate::crypto::{self, Keys, UnitAd, sha256};
use crate::data::PackId;
use crate::store::ObjectStore;

pub const CHECKPOINT_PREFIX: &str = "meta/checkpoint/";

/// Inodes per shard: a few MiB of plaintext for typical files.
const SHARD_INODES: usize = 20_000;

#[derive(Serialize, Deserialize)]
pub struct Index {
    pub seq: u64,
    /// Hash of journal segment `seq` (zeros for seq 0).
    pub journal_hash: [u8; 32],
    pub next_ino: u64,
    pub chunk_size: u32,
    pub packs: Vec<(PackId, PackInfo)>,
    pub orphans: Vec<u64>,
    pub shard_hashes: Vec<[u8; 32]>,
}

pub fn index_key(seq: u64) -> String {
    format!("{CHECKPOINT_PREFIX}{seq:016x}/index")
}

fn shard_key(seq: u64, n: usize) -> String {
    format!("{CHECKPOINT_PREFIX}{seq:016x}/{n:06}")
}

fn seal(keys: &Keys, volume_id: &[u8; 16], object: &str, plain: &[u8]) -> Vec<u8> {
    let ad = UnitAd {
        volume_id,
        object,
        unit: 0,
        epoch: 0,
        last: true,
    };
    crypto::seal(&keys.meta, &ad, plain)
}

fn open(
    keys: &Keys,
    volume_id: &[u8; 16],
    object: &str,
    sealed: &[u8],
) -> Result<Vec<u8>, MetaError> {
    let ad = UnitAd {
        volume_id,
        object,
        unit: 0,
        epoch: 0,
        last: true,
    };
    Ok(crypto::open(&keys.meta, &ad, sealed)?)
}

/// Writes `ns` as the checkpoint of seq `seq`.
pub fn write(
    store: &dyn ObjectStore,
    keys: &Keys,
    volume_id: &[u8; 16],
    seq: u64,
    journal_hash: [u8; 32],
    ns: &Namespace,
) -> Result<(), MetaError> {
    let mut inodes: Vec<(&u64, &Inode)> = ns.inodes.iter().collect();
    inodes.sort_by_key(|(ino, _)| **ino);
    let mut shard_hashes = Vec::new();
    for (n, shard) in inodes.chunks(SHARD_INODES).enumerate() {
        let key = shard_key(seq, n);
        let sealed = seal(keys, volume_id, &key, &encode(&shard));
        shard_hashes.push(sha256(&sealed));
        store.put(&key, &sealed)?;
    }
    let mut packs: Vec<(PackId, PackInfo)> = ns.packs.iter().map(|(k, v)| (*k, *v)).collect();
    packs.sort_by_key(|(id, _)| *id);
    let index = Index {
        seq,
        journal_hash,
        next_ino: ns.next_ino,
        chunk_size: ns.chunk_size,
        packs,
        orphans: ns.orphans.iter().copied().collect(),
        shard_hashes,
    };
    let key = index_key(seq);
    store.put_if_absent(&key, &seal(keys, volume_id, &key, &encode(&index)))?;
    Ok(())
}

/// Seqs of complete checkpoints (those with an index), newest first.
pub fn list(store: &dyn ObjectStore) -> Result<Vec<u64>, MetaError> {
    let mut seqs: Vec<u64> = store
        .list(CHECKPOINT_PREFIX)?
        .iter()
        .filter_map(|o| {
            let rest = o.key.strip_prefix(CHECKPOINT_PREFIX)?;
            let (hex, leaf) = rest.split_once('/')?;
            (leaf == "index" && hex.len() == 16).then(|| u64::from_str_radix(hex, 16).ok())?
        })
        .collect();
    seqs.sort_unstable_by(|a, b| b.cmp(a));
    Ok(seqs)
}

pub fn read_index(
    store: &dyn ObjectStore,
    keys: &Keys,
    volume_id: &[u8; 16],
    seq: u64,
) -> Result<Index, MetaError> {
    let key = index_key(seq);
    let index: Index = decode(&key, &open(keys, volume_id, &key, &store.get(&key)?)?)?;
    if index.seq != seq {
        return Err(Corrupt(format!("{key} claims seq {}", index.seq)).into());
    }
    Ok(index)
}

/// Loads checkpoint `seq`: the namespace and the hash of its journal segment.
pub fn read(
    store: &dyn ObjectStore,
    keys: &Keys,
    volume_id: &[u8; 16],
    seq: u64,
) -> Result<(Namespace, [u8; 32]), MetaError> {
    let index = read_index(store, keys, volume_id, seq)?;
    let mut inodes = HashMap::new();
    for (n, want) in index.shard_hashes.iter().enumerate() {
        let key = shard_key(seq, n);
        let sealed = store.get(&key)?;
        if sha256(&sealed) != *want {
            return Err(Corrupt(format!("{key} does not match its index")).into());
        }
        let shard: Vec<(u64, Inode)> = decode(&key, &open(keys, volume_id, &key, &sealed)?)?;
        inodes.extend(shard);
    }
    let mut ns = Namespace {
        inodes,
        packs: index.packs.into_iter().collect(),
        orphans: index.orphans.into_iter().collect::<BTreeSet<_>>(),
        next_ino: index.next_ino,
        chunk_size: index.chunk_size,
    };
    ns.rebuild_derived();
    Ok((ns, index.journal_hash))
}

/// Deletes every object of checkpoint `seq`.
pub fn delete(store: &dyn ObjectStore, seq: u64) -> Result<(), MetaError> {
    let prefix = format!("{CHECKPOINT_PREFIX}{seq:016x}/");
    // The index goes first so a half-deleted checkpoint is never "complete".
    store.delete(&index_key(seq))?;
    for o in store.list(&prefix)? {
        store.delete(&o.key)?;
    }
    Ok(())
}
