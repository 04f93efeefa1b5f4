//! Reading a volume's state back: the newest readable checkpoint, then
//! every journal segment after it, each checked against the hash chain.
//!
//! Rules:
//! - Replay applies segment `seq + 1`, `seq + 2`, … until the first that
//!   does not exist; a segment that exists but does not open, claims
//!   another seq, or does not chain to the one before fails the load
//!   (a reordered, replayed or spliced journal is never mounted).
//! - A checkpoint that does not load is skipped for an older one, and the
//!   skip is reported in [`Loaded::skipped`] so a caller can refuse it.
//! - Records are applied with the same `Namespace::apply` as live changes,
//!   so the loaded tree is exactly the journaled one; a record that
//!   contradicts the tree is corruption, never guessed around.

use std::collections::BTreeMap;

use crate::crypto::{Keys, sha256};
use crate::meta::checkpoint::{self, ShardRef};
use crate::meta::journal::{JOURNAL_PREFIX, journal_key, open_segment, seq_of_key};
use crate::meta::{Corrupt, MetaError, Namespace};
use crate::store::{ObjectStore, StoreError};

use super::error::{EngineError, EngineResult};

/// A volume's state as read back from the store.
pub struct Loaded {
    pub ns: Namespace,
    /// The last replayed journal seq and its sealed bytes' hash.
    pub last_seq: u64,
    pub last_hash: [u8; 32],
    /// The checkpoint replay started from, and its shards.
    pub base_seq: u64,
    pub shards: Vec<ShardRef>,
    /// Newer checkpoints that did not load: (seq, why).
    pub skipped: Vec<(u64, String)>,
    /// The hash chain walked: seq → hash of its sealed segment, from the
    /// checkpoint's own seq to the last replayed.
    pub chain: BTreeMap<u64, [u8; 32]>,
    /// The newest journal segment in the store when it is past the last
    /// one replayed (there is a hole).
    pub beyond: Option<u64>,
}

/// Loads the newest readable checkpoint and replays the journal after it.
pub fn load(store: &dyn ObjectStore, keys: &Keys, volume_id: &[u8; 16]) -> EngineResult<Loaded> {
    let mut skipped = Vec::new();
    let mut last_err: Option<MetaError> = None;
    for base in checkpoint::list(store)? {
        match checkpoint::read(store, keys, volume_id, base) {
            Ok(cp) => {
                let mut ns = cp.ns;
                let mut chain = BTreeMap::from([(base, cp.journal_hash)]);
                let (last_seq, last_hash) = replay(
                    store,
                    keys,
                    volume_id,
                    &mut ns,
                    base,
                    cp.journal_hash,
                    &mut chain,
                )?;
                ns.check()?;
                let newest = store
                    .list(JOURNAL_PREFIX)?
                    .iter()
                    .filter_map(|o| seq_of_key(&o.key))
                    .max();
                return Ok(Loaded {
                    ns,
                    last_seq,
                    last_hash,
                    base_seq: base,
                    shards: cp.shards,
                    skipped,
                    chain,
                    beyond: newest.filter(|&n| n > last_seq),
                });
            }
            // An unreachable store is not a damaged checkpoint.
            Err(MetaError::Store(e)) if !e.is_not_found() => return Err(e.into()),
            Err(e) => {
                log::error!("checkpoint {base:016x} unreadable, trying an older one: {e}");
                skipped.push((base, e.to_string()));
                last_err = Some(e);
            }
        }
    }
    Err(match last_err {
        Some(e) => e.into(),
        None => Corrupt("the volume has no checkpoint".into()).into(),
    })
}

/// Loads checkpoint `seq` alone, with no replay (a snapshot).
pub fn load_checkpoint(
    store: &dyn ObjectStore,
    keys: &Keys,
    volume_id: &[u8; 16],
    seq: u64,
) -> EngineResult<Loaded> {
    let cp = checkpoint::read(store, keys, volume_id, seq)?;
    cp.ns.check()?;
    Ok(Loaded {
        ns: cp.ns,
        last_seq: seq,
        last_hash: cp.journal_hash,
        base_seq: seq,
        shards: cp.shards,
        skipped: Vec::new(),
        chain: BTreeMap::from([(seq, cp.journal_hash)]),
        beyond: None,
    })
}

/// Applies segments `after + 1, …` to `ns`, starting from the chain hash
/// `hash`; records each segment's hash in `chain`; returns the last seq
/// applied and its hash.
pub fn replay(
    store: &dyn ObjectStore,
    keys: &Keys,
    volume_id: &[u8; 16],
    ns: &mut Namespace,
    after: u64,
    mut hash: [u8; 32],
    chain: &mut BTreeMap<u64, [u8; 32]>,
) -> EngineResult<(u64, [u8; 32])> {
    let mut seq = after;
    loop {
        let key = journal_key(seq + 1);
        let sealed = match store.get(&key) {
            Ok(b) => b,
            Err(StoreError::NotFound { .. }) => break,
            Err(e) => return Err(e.into()),
        };
        let seg = open_segment(keys, volume_id, seq + 1, &sealed)?;
        if seg.prev_hash != hash {
            return Err(EngineError::Corrupt(Corrupt(format!(
                "{key} does not follow segment {seq:016x} (hash chain broken)"
            ))));
        }
        for r in &seg.records {
            ns.apply(r)
                .map_err(|e| Corrupt(format!("{key}: {}", e.0)))?;
        }
        hash = sha256(&sealed);
        seq += 1;
        chain.insert(seq, hash);
    }
    Ok((seq, hash))
}
