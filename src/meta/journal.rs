//! Journal segments: the sealed, create-only objects `meta/journal/<seq>`
//! that commit the namespace's records in groups.
//!
//! Each segment names its seq and the writer that committed it, carries
//! the SHA-256 of the previous segment's sealed bytes (a hash chain), and
//! is sealed with its own object name in the associated data, so a
//! segment replayed at another seq, from another volume, or out of order
//! fails. A segment may hold no records: a writer that took the lease over
//! commits one at once to claim the next seq. How segments are grouped,
//! committed and fenced is the engine's (`crate::engine::journal`).

use serde::{Deserialize, Serialize};

use super::{MetaError, Record, decode, encode};
use crate::crypto::{self, Keys, UnitAd};

pub const JOURNAL_PREFIX: &str = "meta/journal/";

/// Largest journal segment read back: far above any batch the committer
/// writes (it commits at 1 MiB of records), low enough that a hostile
/// store cannot make a mount allocate without limit.
pub const MAX_SEGMENT_BYTES: u64 = 1 << 30;

pub fn journal_key(seq: u64) -> String {
    format!("{JOURNAL_PREFIX}{seq:016x}")
}

pub fn seq_of_key(key: &str) -> Option<u64> {
    let hex = key.strip_prefix(JOURNAL_PREFIX)?;
    (hex.len() == 16).then(|| u64::from_str_radix(hex, 16).ok())?
}

/// The plaintext of one segment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    pub seq: u64,
    /// Random per mount: tells our own segment from another writer's.
    pub writer: [u8; 16],
    /// SHA-256 of the previous segment's sealed bytes (zeros before seq 1).
    pub prev_hash: [u8; 32],
    pub records: Vec<Record>,
}

pub fn seal_segment(keys: &Keys, volume_id: &[u8; 16], seg: &Segment) -> Vec<u8> {
    let object = journal_key(seg.seq);
    let ad = UnitAd {
        volume_id,
        object: &object,
        unit: 0,
        epoch: 0,
        last: true,
    };
    crypto::seal(&keys.meta, &ad, &encode(seg))
}

pub fn open_segment(
    keys: &Keys,
    volume_id: &[u8; 16],
    seq: u64,
    sealed: &[u8],
) -> Result<Segment, MetaError> {
    let object = journal_key(seq);
    let ad = UnitAd {
        volume_id,
        object: &object,
        unit: 0,
        epoch: 0,
        last: true,
    };
    let seg: Segment = decode(&object, &crypto::open(&keys.meta, &ad, sealed)?)?;
    if seg.seq != seq {
        return Err(MetaError::Corrupt(super::Corrupt(format!(
            "{object} claims seq {}",
            seg.seq
        ))));
    }
    Ok(seg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MasterKey;

    #[test]
    fn key_round_trip() {
        assert_eq!(journal_key(1), "meta/journal/0000000000000001");
        assert_eq!(seq_of_key(&journal_key(0xabc)), Some(0xabc));
        assert_eq!(seq_of_key("meta/journal/xyz"), None);
    }

    #[test]
    fn segment_bound_to_its_seq() {
        let keys = Keys::derive(&MasterKey::generate(), &[3; 16]);
        let seg = Segment {
            seq: 5,
            writer: [1; 16],
            prev_hash: [2; 32],
            records: vec![Record::Drop { ino: 9 }],
        };
        let sealed = seal_segment(&keys, &[3; 16], &seg);
        assert_eq!(open_segment(&keys, &[3; 16], 5, &sealed).unwrap(), seg);
        assert!(
            open_segment(&keys, &[3; 16], 6, &sealed).is_err(),
            "replayed at another seq"
        );
        assert!(
            open_segment(&keys, &[4; 16], 5, &sealed).is_err(),
            "other volume"
        );
    }
}
