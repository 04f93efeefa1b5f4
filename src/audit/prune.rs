//! Retention: `audit prune --before DATE` removes the oldest segments of
//! each chain, and leaves a sealed base saying where the chain now starts,
//! so what remains still verifies link by link and a removal nobody asked
//! for is still seen.
//!
//! Rules:
//! - Only a prefix of a chain goes, segment by segment, while every record
//!   in the segment is older than the cut; a chain's newest segment always
//!   stays (a mount continues the chain from it).
//! - The base (`audit/<chain>/base`) is written before any segment is
//!   deleted: a crash in between leaves segments the base says are gone,
//!   which verification and queries skip and the next prune deletes.
//! - A base only moves forward; it is sealed under the audit key with its
//!   own name, so it cannot be forged, and deleting it leaves a chain that
//!   starts past segment 1: a break `verify` names.

use serde::{Deserialize, Serialize};

use super::query::chains;
use super::segment::{self, AUDIT_PREFIX, MAX_SEGMENT_BYTES};
use crate::crypto::{self, CryptoError, SubKey, UnitAd};
use crate::store::{ObjectStore, StoreError, StoreResult};

/// Where a pruned chain starts now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Base {
    pub chain: String,
    /// The oldest segment kept.
    pub first_seq: u64,
    /// Its `prev_hash` and `count_before`, as the removed chain left them.
    pub prev_hash: [u8; 32],
    pub count_before: u64,
    /// The cut asked for (ms since the epoch).
    pub before_ms: u64,
}

/// First byte of a base's plaintext. Bases are not padded (a base says
/// nothing about what was recorded) and keep their own version, apart from
/// the segments'.
const BASE_VERSION: u8 = 1;

pub fn base_key(chain: &str) -> String {
    format!("{AUDIT_PREFIX}{chain}/base")
}

fn seal_base(key: &SubKey, volume_id: &[u8; 16], base: &Base) -> Vec<u8> {
    let object = base_key(&base.chain);
    let mut plain = vec![BASE_VERSION];
    plain.extend(postcard::to_allocvec(base).expect("a base always encodes"));
    crypto::seal(key, &UnitAd::whole(volume_id, &object), &plain)
}

/// The base of `chain`, if it was ever pruned; `Err` inside when the
/// object is there but does not authenticate as that chain's base.
pub fn read_base(
    store: &dyn ObjectStore,
    key: &SubKey,
    volume_id: &[u8; 16],
    chain: &str,
) -> StoreResult<Result<Option<Base>, CryptoError>> {
    let object = base_key(chain);
    let sealed = match store.get_max(&object, 4096) {
        Ok(s) => s,
        Err(StoreError::NotFound { .. }) => return Ok(Ok(None)),
        Err(e) => return Err(e),
    };
    let bad = |why: String| CryptoError::Malformed(format!("{object}: {why}"));
    let opened = crypto::open(key, &UnitAd::whole(volume_id, &object), &sealed).and_then(|plain| {
        let base: Base = match plain.split_first() {
            Some((&BASE_VERSION, body)) => {
                postcard::from_bytes(body).map_err(|e| bad(format!("undecodable: {e}")))?
            }
            _ => return Err(bad("unknown version".into())),
        };
        match base.chain == chain {
            true => Ok(Some(base)),
            false => Err(bad(format!("claims chain {}", base.chain))),
        }
    });
    Ok(opened)
}

/// What a prune removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    pub segments: u64,
    pub records: u64,
}

/// Removes, from every chain, the segments whose records are all older
/// than `before_ms` (never a chain's newest).
pub fn prune(
    store: &dyn ObjectStore,
    key: &SubKey,
    volume_id: &[u8; 16],
    before_ms: u64,
) -> StoreResult<Pruned> {
    let mut out = Pruned::default();
    for (chain, seqs) in chains(store)? {
        let old = match read_base(store, key, volume_id, &chain)? {
            Ok(b) => b,
            Err(e) => {
                return Err(StoreError::io(
                    &base_key(&chain),
                    std::io::ErrorKind::InvalidData,
                    e.to_string(),
                ));
            }
        };
        let start = old.as_ref().map_or(1, |b| b.first_seq);
        let live: Vec<u64> = seqs.iter().copied().filter(|&s| s >= start).collect();
        let mut base = None;
        for (i, &seq) in live.iter().enumerate() {
            let name = segment::key(&chain, seq);
            let sealed = store.get_max(&name, MAX_SEGMENT_BYTES)?;
            let (seg, _) = segment::open(key, volume_id, &chain, seq, &sealed).map_err(|e| {
                StoreError::io(&name, std::io::ErrorKind::InvalidData, e.to_string())
            })?;
            let newest = i + 1 == live.len();
            if newest || seg.records.iter().any(|r| r.time_ms >= before_ms) {
                if seq > start {
                    out.records += seg.count_before - old.as_ref().map_or(0, |b| b.count_before);
                    base = Some(Base {
                        chain: chain.clone(),
                        first_seq: seq,
                        prev_hash: seg.prev_hash,
                        count_before: seg.count_before,
                        before_ms,
                    });
                }
                break;
            }
        }
        let first_kept = match &base {
            Some(b) => {
                store.put(&base_key(&chain), &seal_base(key, volume_id, b))?;
                b.first_seq
            }
            None => start,
        };
        for &seq in seqs.iter().filter(|&&s| s < first_kept) {
            store.delete(&segment::key(&chain, seq))?;
            out.segments += u64::from(seq >= start);
        }
    }
    Ok(out)
}
