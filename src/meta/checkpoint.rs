//! Checkpoints: the whole namespace as of journal seq S, so a mount replays
//! only the segments after S.
//!
//! Layout: the inodes are split by number into shards of [`SHARD_INODES`]
//! (shard n holds inodes n·16384 ..< (n+1)·16384). A checkpoint writes only
//! the shards that changed since the previous one, as
//! `meta/checkpoint/<S>/<n>`, and its index `meta/checkpoint/<S>/index`
//! (written last, create-only) refers to every shard by (n, seq of the
//! checkpoint that wrote it, hash). So a small change costs one shard, not
//! the whole namespace. A checkpoint without an index is incomplete and
//! ignored. Every object is sealed with its own name in the associated data.
//!
//! Index versions: version 1 (`01` ‖ postcard) binds each shard by the
//! SHA-256 of its sealed object; version 2 (`02` ‖ the same postcard) by
//! its [`content_digest`], so a rotation can re-seal a shard under a new
//! key epoch without touching the indexes that name it; version 3 (what is
//! written now) is version 2 zero-padded to a size class (`meta::pad`).
//! Shards likewise: `01` ‖ postcard, or `02` ‖ postcard ‖ zeros to a class
//! (written now), so no object's size counts the inodes it holds.
//!
//! Rules:
//! - Shards are taken under the namespace lock copy-on-write (a pointer
//!   each, see `meta::table`), then encoded, sealed and written outside
//!   it: `stat` never waits for an encoding, and the checkpoint is the
//!   state at the moment it was taken whatever changes meanwhile.
//! - Deleting an old checkpoint deletes only the shards no retained index
//!   refers to.

use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::{Deserialize, Serialize};

use super::table::Frozen;
use super::{Corrupt, Inode, MetaError, Namespace, PackInfo, decode, encode};
use crate::crypto::{self, Keys, UnitAd, content_digest, sha256};
use crate::data::PackId;
use crate::store::ObjectStore;

pub const CHECKPOINT_PREFIX: &str = "meta/checkpoint/";

/// Largest checkpoint object (index or shard) read back.
pub const MAX_OBJECT_BYTES: u64 = 1 << 30;

/// Inodes per shard.
pub const SHARD_INODES: u64 = 16_384;

pub fn shard_of(ino: u64) -> u64 {
    ino / SHARD_INODES
}

/// Where one shard of a checkpoint lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardRef {
    pub n: u64,
    /// The checkpoint whose directory holds the shard object.
    pub seq: u64,
    /// The shard's [`content_digest`] (index version 2), or the SHA-256
    /// of the sealed shard object (index version 1).
    pub hash: [u8; 32],
}

#[derive(Serialize, Deserialize)]
pub struct Index {
    pub seq: u64,
    /// Hash of journal segment `seq` (zeros for seq 0).
    pub journal_hash: [u8; 32],
    pub next_ino: u64,
    pub chunk_size: u32,
    pub packs: Vec<(PackId, PackInfo)>,
    pub orphans: Vec<u64>,
    pub shards: Vec<ShardRef>,
}

/// Plaintext version of an index whose shard hashes are content digests.
const INDEX_BY_CONTENT: u8 = 2;
/// The same, zero-padded to a size class (`meta::pad`): what is written.
const INDEX_PADDED: u8 = 3;
/// Plaintext version of a shard zero-padded to a size class; unpadded
/// shards (`META_VERSION`) are still read.
const SHARD_PADDED: u8 = 2;

/// An index as read, and how its shard hashes bind.
pub struct ReadIndex {
    pub index: Index,
    /// Sealed under the key's own epoch, not an older one (a rotation).
    pub current: bool,
    /// Shard hashes are content digests (version 2), not sealed-object
    /// hashes (version 1).
    pub by_content: bool,
}

fn encode_index(index: &Index) -> Vec<u8> {
    let mut plain = encode(index);
    plain[0] = INDEX_PADDED;
    super::pad::pad(&mut plain);
    plain
}

/// Decodes a padded plaintext's body: the bytes after it must be zeros
/// up to a class size.
fn decode_padded<T: serde::de::DeserializeOwned>(key: &str, plain: &[u8]) -> Result<T, MetaError> {
    let bad = |why: String| MetaError::Corrupt(Corrupt(format!("{key}: {why}")));
    let (value, rest) =
        postcard::take_from_bytes(&plain[1..]).map_err(|e| bad(format!("undecodable: {e}")))?;
    if !super::pad::is_padding(plain.len(), rest) {
        return Err(bad(format!(
            "{} bytes after the body are not padding",
            rest.len()
        )));
    }
    Ok(value)
}

fn encode_shard(inodes: &[(u64, &Inode)]) -> Vec<u8> {
    let mut plain = encode(&inodes);
    plain[0] = SHARD_PADDED;
    super::pad::pad(&mut plain);
    plain
}

fn decode_shard(key: &str, plain: &[u8]) -> Result<Vec<(u64, Inode)>, MetaError> {
    match plain.first() {
        Some(&SHARD_PADDED) => decode_padded(key, plain),
        _ => decode(key, plain),
    }
}

fn decode_index(key: &str, plain: &[u8]) -> Result<ReadIndex, MetaError> {
    match plain.split_first() {
        Some((&INDEX_PADDED, _)) => Ok(ReadIndex {
            index: decode_padded(key, plain)?,
            current: true,
            by_content: true,
        }),
        Some((&INDEX_BY_CONTENT, body)) => {
            let mut v1 = Vec::with_capacity(plain.len());
            v1.push(super::META_VERSION);
            v1.extend_from_slice(body);
            Ok(ReadIndex {
                index: decode(key, &v1)?,
                current: true,
                by_content: true,
            })
        }
        _ => Ok(ReadIndex {
            index: decode(key, plain)?,
            current: true,
            by_content: false,
        }),
    }
}

/// Seals `index` (version 3: by content digest, padded) for its object.
pub fn seal_index(keys: &Keys, volume_id: &[u8; 16], index: &Index) -> Vec<u8> {
    let key = index_key(index.seq);
    crypto::seal(
        &keys.meta,
        &UnitAd::whole(volume_id, &key),
        &encode_index(index),
    )
}

pub fn index_key(seq: u64) -> String {
    format!("{CHECKPOINT_PREFIX}{seq:016x}/index")
}

pub fn shard_key(seq: u64, n: u64) -> String {
    format!("{CHECKPOINT_PREFIX}{seq:016x}/{n:06}")
}

/// A checkpoint taken under the namespace lock, ready to encode, seal and
/// write without it.
pub struct Prepared {
    /// (shard number, the shard as taken; `None` when it is now empty).
    shards: Vec<(u64, Option<Frozen>)>,
    next_ino: u64,
    chunk_size: u32,
    packs: Vec<(PackId, PackInfo)>,
    orphans: Vec<u64>,
}

/// Takes shards `dirty` of `ns` (the namespace exactly as journaled). The
/// cost under the lock is a pointer per shard and a copy of the pack
/// table; encoding happens in [`write`].
pub fn prepare(ns: &Namespace, dirty: &BTreeSet<u64>) -> Prepared {
    Prepared {
        shards: dirty.iter().map(|&n| (n, ns.freeze_shard(n))).collect(),
        next_ino: ns.next_ino(),
        chunk_size: ns.chunk_size(),
        packs: ns.packs().map(|(k, v)| (*k, *v)).collect(),
        orphans: ns.orphans().collect(),
    }
}

/// Writes checkpoint `seq`: the prepared shards, refs to the unchanged
/// shards of `prev`, then the index. Returns the index's shard refs.
pub fn write(
    store: &dyn ObjectStore,
    keys: &Keys,
    volume_id: &[u8; 16],
    seq: u64,
    journal_hash: [u8; 32],
    prepared: Prepared,
    prev: &[ShardRef],
) -> Result<Vec<ShardRef>, MetaError> {
    let mut refs: std::collections::BTreeMap<u64, ShardRef> =
        prev.iter().map(|r| (r.n, *r)).collect();
    for (n, frozen) in prepared.shards {
        refs.remove(&n);
        let Some(frozen) = frozen else { continue };
        let plain = encode_shard(&frozen.inodes());
        drop(frozen);
        let key = shard_key(seq, n);
        let sealed = crypto::seal(&keys.meta, &UnitAd::whole(volume_id, &key), &plain);
        store.put(&key, &sealed)?;
        refs.insert(
            n,
            ShardRef {
                n,
                seq,
                hash: content_digest(&key, &plain),
            },
        );
    }
    let shards: Vec<ShardRef> = refs.into_values().collect();
    let mut packs = prepared.packs;
    packs.sort_unstable_by_key(|(id, _)| *id);
    let index = Index {
        seq,
        journal_hash,
        next_ino: prepared.next_ino,
        chunk_size: prepared.chunk_size,
        packs,
        orphans: prepared.orphans,
        shards: shards.clone(),
    };
    store.put_if_absent(&index_key(seq), &seal_index(keys, volume_id, &index))?;
    Ok(shards)
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
    Ok(read_index_versioned(store, keys, volume_id, seq)?.index)
}

/// [`read_index`], saying how its shard hashes bind.
pub fn read_index_versioned(
    store: &dyn ObjectStore,
    keys: &Keys,
    volume_id: &[u8; 16],
    seq: u64,
) -> Result<ReadIndex, MetaError> {
    let sealed = store.get_max(&index_key(seq), MAX_OBJECT_BYTES)?;
    open_index(keys, volume_id, seq, &sealed)
}

/// Opens index `seq` from its sealed bytes.
pub fn open_index(
    keys: &Keys,
    volume_id: &[u8; 16],
    seq: u64,
    sealed: &[u8],
) -> Result<ReadIndex, MetaError> {
    let key = index_key(seq);
    let (plain, current) =
        crypto::seal::open_current(&keys.meta, &UnitAd::whole(volume_id, &key), sealed)?;
    let read = decode_index(&key, &plain)?;
    if read.index.seq != seq {
        return Err(Corrupt(format!("{key} claims seq {}", read.index.seq)).into());
    }
    Ok(ReadIndex { current, ..read })
}

/// Reads and opens shard `r`, checked against its index entry.
pub fn read_shard(
    store: &dyn ObjectStore,
    keys: &Keys,
    volume_id: &[u8; 16],
    r: &ShardRef,
    by_content: bool,
) -> Result<Vec<u8>, MetaError> {
    let key = shard_key(r.seq, r.n);
    let sealed = store.get_max(&key, MAX_OBJECT_BYTES)?;
    open_shard(keys, volume_id, r, by_content, &key, &sealed)
}

/// Opens shard `r` read as `sealed` from `key`, checked against its index
/// entry: the hash of the sealed bytes (index version 1) or of the content
/// (version 2).
fn open_shard(
    keys: &Keys,
    volume_id: &[u8; 16],
    r: &ShardRef,
    by_content: bool,
    key: &str,
    sealed: &[u8],
) -> Result<Vec<u8>, MetaError> {
    let mismatch = || Corrupt(format!("{key} does not match the index that names it"));
    if !by_content && sha256(sealed) != r.hash {
        return Err(mismatch().into());
    }
    let plain = crypto::open(&keys.meta, &UnitAd::whole(volume_id, key), sealed)?;
    if by_content && content_digest(key, &plain) != r.hash {
        return Err(mismatch().into());
    }
    Ok(plain)
}

/// A loaded checkpoint.
pub struct Loaded {
    pub ns: Namespace,
    /// Hash of journal segment `seq`, where replay continues.
    pub journal_hash: [u8; 32],
    pub shards: Vec<ShardRef>,
}

/// Loads checkpoint `seq`.
pub fn read(
    store: &dyn ObjectStore,
    keys: &Keys,
    volume_id: &[u8; 16],
    seq: u64,
) -> Result<Loaded, MetaError> {
    let ReadIndex {
        index, by_content, ..
    } = read_index_versioned(store, keys, volume_id, seq)?;
    // GETs run on a few threads, so a mount on S3 waits for the network's
    // latency once per thread, not once per shard; opening and decoding
    // stay on this thread (decoding on several measured slower and
    // costlier in memory on two cores: per-thread malloc arenas).
    let next = AtomicUsize::new(0);
    // Refs by content whatever the index's version: the next checkpoint
    // carries them into an index of version 2.
    let mut shards = Vec::with_capacity(index.shards.len());
    let inodes = std::thread::scope(|s| -> Result<Vec<(u64, Inode)>, MetaError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(FETCH_THREADS);
        for _ in 0..FETCH_THREADS.min(index.shards.len()) {
            let (tx, next, refs) = (tx.clone(), &next, &index.shards);
            s.spawn(move || {
                while let Some(r) = refs.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let key = shard_key(r.seq, r.n);
                    let fetched = store.get_max(&key, MAX_OBJECT_BYTES);
                    // A closed channel: the load failed and stopped reading.
                    if tx.send((r, key, fetched)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(tx);
        let mut inodes = Vec::new();
        for (r, key, fetched) in rx {
            let plain = open_shard(keys, volume_id, r, by_content, &key, &fetched?)?;
            let shard = decode_shard(&key, &plain)?;
            if shard.iter().any(|(ino, _)| shard_of(*ino) != r.n) {
                return Err(Corrupt(format!("{key} holds an inode of another shard")).into());
            }
            inodes.extend(shard);
            shards.push(ShardRef {
                hash: content_digest(&key, &plain),
                ..*r
            });
        }
        Ok(inodes)
    })?;
    shards.sort_by_key(|r| r.n);
    let ns = Namespace::from_parts(
        inodes,
        index.packs.into_iter().collect(),
        index.orphans.into_iter().collect::<BTreeSet<_>>(),
        index.next_ino,
        index.chunk_size,
    );
    Ok(Loaded {
        ns,
        journal_hash: index.journal_hash,
        shards,
    })
}

/// Shard GETs in flight while a checkpoint loads.
const FETCH_THREADS: usize = 4;

/// Deletes every checkpoint object that no retained checkpoint needs:
/// indexes of checkpoints not in `retained`, and shards not in `keep`
/// ((seq, n) pairs the retained indexes refer to). Also clears what a
/// crash mid-checkpoint left (shards without an index).
pub fn sweep(
    store: &dyn ObjectStore,
    retained: &[u64],
    keep: &HashSet<(u64, u64)>,
) -> Result<usize, MetaError> {
    let newest = retained.iter().copied().max().unwrap_or(0);
    let mut doomed_indexes = Vec::new();
    let mut doomed_shards = Vec::new();
    for o in store.list(CHECKPOINT_PREFIX)? {
        // A store may list keys it should not (another prefix, garbage):
        // those are skipped, never sliced blindly.
        let Some((hex, leaf)) = o
            .key
            .strip_prefix(CHECKPOINT_PREFIX)
            .and_then(|rest| rest.split_once('/'))
        else {
            continue;
        };
        let Ok(seq) = u64::from_str_radix(hex, 16) else {
            continue;
        };
        if seq > newest {
            continue;
        }
        if leaf == "index" {
            if !retained.contains(&seq) {
                doomed_indexes.push(o.key);
            }
        } else if leaf.parse::<u64>().is_ok_and(|n| !keep.contains(&(seq, n))) {
            doomed_shards.push(o.key);
        }
    }
    let removed = doomed_indexes.len() + doomed_shards.len();
    // Indexes first, so no checkpoint is ever "complete" with a shard gone:
    // if one index cannot go, no shard goes either.
    store.delete_many(&doomed_indexes)?;
    store.delete_many(&doomed_shards)?;
    Ok(removed)
}
