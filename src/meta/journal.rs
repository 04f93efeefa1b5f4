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

use super::{MetaError, Record, decode};
use crate::crypto::{self, Keys, UnitAd};
use crate::store::ObjectStore;

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

/// Version byte of the journal segments written: zero-padded to a size
/// class (`meta::pad`), so a segment's size says neither how many records
/// it holds nor, when it carries a pack (`Record::Carried`), that pack's
/// exact size. Versions 2 (unpadded, carrying nothing) and 1 (no audit
/// binding) are still read. The other metadata plaintexts keep their own
/// version bytes.
pub const SEGMENT_VERSION: u8 = 3;
/// Version byte of unpadded segments, which carry no pack (read only).
pub const SEGMENT_V2: u8 = 2;

/// The plaintext of one segment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    pub seq: u64,
    /// Random per mount: tells our own segment from another writer's.
    pub writer: [u8; 16],
    /// SHA-256 of the previous segment's sealed bytes (zeros before seq 1).
    pub prev_hash: [u8; 32],
    pub records: Vec<Record>,
    /// The audit trail's writer chain when this segment was sealed: its
    /// newest segment (seq, SHA-256 of its sealed bytes). Cutting the
    /// trail back below it is then seen by `audit verify`.
    pub audit: Option<(u64, [u8; 32])>,
}

/// Version 1: the same without the audit binding.
#[derive(Deserialize)]
struct SegmentV1 {
    seq: u64,
    writer: [u8; 16],
    prev_hash: [u8; 32],
    records: Vec<Record>,
}

fn carries(seg: &Segment) -> bool {
    seg.records
        .iter()
        .any(|r| matches!(r, Record::Carried { .. }))
}

fn encode_segment(seg: &Segment) -> Vec<u8> {
    let mut out = vec![SEGMENT_VERSION];
    out.extend(postcard::to_allocvec(seg).expect("in-memory metadata always encodes"));
    super::pad::pad(&mut out);
    out
}

/// Version 3 plaintexts are zero-padded to a multiple of this (to a size
/// class since padding by class; earlier ones to any multiple).
pub const SEGMENT_PAD: usize = 4096;

fn decode_segment(object: &str, plain: &[u8]) -> Result<Segment, MetaError> {
    let bad = |why: String| MetaError::Corrupt(super::Corrupt(format!("{object}: {why}")));
    match plain.split_first() {
        Some((&v @ (SEGMENT_V2 | SEGMENT_VERSION), body)) => {
            let (seg, rest): (Segment, &[u8]) =
                postcard::take_from_bytes(body).map_err(|e| bad(format!("undecodable: {e}")))?;
            if v == SEGMENT_V2 && carries(&seg) {
                return Err(bad("a version 2 segment carries a pack".into()));
            }
            let padding = v == SEGMENT_VERSION
                && plain.len() % SEGMENT_PAD == 0
                && rest.iter().all(|&b| b == 0);
            if !rest.is_empty() && !padding {
                return Err(bad(format!("{} bytes after the records", rest.len())));
            }
            Ok(seg)
        }
        Some((1, _)) => {
            let v1: SegmentV1 = decode(object, plain)?;
            if v1
                .records
                .iter()
                .any(|r| matches!(r, Record::Carried { .. }))
            {
                return Err(bad("a version 1 segment carries a pack".into()));
            }
            Ok(Segment {
                seq: v1.seq,
                writer: v1.writer,
                prev_hash: v1.prev_hash,
                records: v1.records,
                audit: None,
            })
        }
        Some((v, _)) => Err(bad(format!("unknown segment version {v}"))),
        None => Err(bad("empty".into())),
    }
}

pub fn seal_segment(keys: &Keys, volume_id: &[u8; 16], seg: &Segment) -> Vec<u8> {
    let object = journal_key(seg.seq);
    let ad = UnitAd::whole(volume_id, &object);
    crypto::seal(&keys.meta, &ad, &encode_segment(seg))
}

pub fn open_segment(
    keys: &Keys,
    volume_id: &[u8; 16],
    seq: u64,
    sealed: &[u8],
) -> Result<Segment, MetaError> {
    let object = journal_key(seq);
    let ad = UnitAd::whole(volume_id, &object);
    let seg = decode_segment(&object, &crypto::open(&keys.meta, &ad, sealed)?)?;
    if seg.seq != seq {
        return Err(MetaError::Corrupt(super::Corrupt(format!(
            "{object} claims seq {}",
            seg.seq
        ))));
    }
    Ok(seg)
}

/// The audit head the newest journal segment that binds one names (see
/// `crate::audit`): segments made without a trail bind nothing, so this
/// walks back from the newest.
pub fn newest_audit_binding(
    store: &dyn ObjectStore,
    keys: &Keys,
    volume_id: &[u8; 16],
) -> Result<Option<(u64, [u8; 32])>, MetaError> {
    let mut seqs: Vec<u64> = store
        .list(JOURNAL_PREFIX)?
        .iter()
        .filter_map(|o| seq_of_key(&o.key))
        .collect();
    seqs.sort_unstable_by(|a, b| b.cmp(a));
    for seq in seqs {
        let sealed = store.get_max(&journal_key(seq), MAX_SEGMENT_BYTES)?;
        if let Some(bound) = open_segment(keys, volume_id, seq, &sealed)?.audit {
            return Ok(Some(bound));
        }
    }
    Ok(None)
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
    fn segments_are_padded_to_classes_and_strictly_decoded() {
        let keys = Keys::derive(&MasterKey::generate(), &[3; 16]);
        let carried = Record::Carried {
            id: crate::data::PackId([4; 16]),
            units: 1,
            body: vec![5; 4136],
        };
        let seg = Segment {
            seq: 2,
            writer: [1; 16],
            prev_hash: [2; 32],
            records: vec![carried, Record::Drop { ino: 9 }],
            audit: None,
        };
        let plain = encode_segment(&seg);
        assert_eq!((plain[0], plain.len()), (SEGMENT_VERSION, 2 * SEGMENT_PAD));
        let sealed = seal_segment(&keys, &[3; 16], &seg);
        assert_eq!(sealed.len(), 2 * SEGMENT_PAD + 40);
        assert_eq!(open_segment(&keys, &[3; 16], 2, &sealed).unwrap(), seg);
        let object = journal_key(2);
        let mut bad = plain.clone();
        *bad.last_mut().unwrap() = 1;
        assert!(decode_segment(&object, &bad).is_err(), "nonzero padding");
        assert!(
            decode_segment(&object, &plain[..plain.len() - 1]).is_err(),
            "short"
        );
        let mut v2 = plain.clone();
        v2[0] = SEGMENT_V2;
        assert!(decode_segment(&object, &v2).is_err(), "v2 carrying");
        let small = Segment {
            records: vec![Record::Drop { ino: 9 }],
            ..seg
        };
        let plain = encode_segment(&small);
        assert_eq!((plain[0], plain.len()), (SEGMENT_VERSION, SEGMENT_PAD));
        assert_eq!(decode_segment(&object, &plain).unwrap(), small);
        // Written before padding by class: unpadded version 2, still read
        // strictly.
        let mut plain_v2 = vec![SEGMENT_V2];
        plain_v2.extend(postcard::to_allocvec(&small).unwrap());
        assert_eq!(decode_segment(&object, &plain_v2).unwrap(), small);
        let mut trailing = plain_v2.clone();
        trailing.push(0);
        assert!(decode_segment(&object, &trailing).is_err(), "v2 trailing");
    }

    #[test]
    fn segment_bound_to_its_seq() {
        let keys = Keys::derive(&MasterKey::generate(), &[3; 16]);
        let seg = Segment {
            seq: 5,
            writer: [1; 16],
            prev_hash: [2; 32],
            records: vec![Record::Drop { ino: 9 }],
            audit: Some((4, [5; 32])),
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
