//! Audit segments: `audit/<chain>/<seq>`, sealed batches of records, each
//! chained to the one before.
//!
//! A chain is one writer's trail: `w` for the volume's writer (continued
//! by every writer in turn, and bound into each journal commit), or
//! `r-<id>` for a read-only mount (its own, since it may not write the
//! writer's). Each segment names its chain and seq, carries the hash of
//! the previous segment's sealed bytes and the number of records before
//! it, and is sealed under the audit key with its own object name in the
//! associated data, so a segment removed, reordered, edited, replayed or
//! moved to another chain fails verification.
//!
//! Layout: one sealed unit; plaintext = `AUDIT_VERSION` ‖ postcard of
//! [`Segment`] ‖ zeros to a size class (`meta::pad`), so a segment's size
//! says how much was recorded to within a class, never the length of the
//! one path a lone record names (docs/FORMAT.md, "Audit trail"). Version
//! 1 segments (unpadded) still read.

use serde::{Deserialize, Serialize};

use super::record::Record;
use crate::crypto::{self, CryptoError, SubKey, UnitAd};

pub const AUDIT_PREFIX: &str = "audit/";

/// The writer's chain.
pub const WRITER_CHAIN: &str = "w";

/// First byte of every audit segment's plaintext this build writes.
pub const AUDIT_VERSION: u8 = 2;

/// Segments before size classes: no padding after the body.
const AUDIT_UNPADDED: u8 = 1;

/// Largest audit segment read back.
pub const MAX_SEGMENT_BYTES: u64 = 256 << 20;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    pub chain: String,
    pub seq: u64,
    /// SHA-256 of the previous segment's sealed bytes (zeros before 1).
    pub prev_hash: [u8; 32],
    /// Records in the chain before this segment.
    pub count_before: u64,
    /// The host that wrote it.
    pub host: String,
    /// The auditor (one per mount) that wrote it, and the number it gave
    /// its first record: with the local spool's numbers, a crashed
    /// mount's records are matched exactly (`spool`).
    pub writer: [u8; 8],
    pub first_index: u64,
    pub records: Vec<Record>,
}

pub fn key(chain: &str, seq: u64) -> String {
    format!("{AUDIT_PREFIX}{chain}/{seq:016x}")
}

/// (chain, seq) of an audit object's name.
pub fn parse_key(key: &str) -> Option<(&str, u64)> {
    let (chain, hex) = key.strip_prefix(AUDIT_PREFIX)?.split_once('/')?;
    let ok = !chain.is_empty() && hex.len() == 16 && !hex.contains('/');
    ok.then(|| Some((chain, u64::from_str_radix(hex, 16).ok()?)))?
}

/// A segment's identity in the chain: its [`crypto::content_digest`], not
/// a hash of its sealed bytes, so re-sealing it under a newer key epoch
/// (rotation) keeps every link to it.
pub fn digest(object: &str, plain: &[u8]) -> [u8; 32] {
    crypto::content_digest(object, plain)
}

/// The sealed segment and its digest.
pub fn seal(key: &SubKey, volume_id: &[u8; 16], seg: &Segment) -> (Vec<u8>, [u8; 32]) {
    let object = self::key(&seg.chain, seg.seq);
    let mut plain = vec![AUDIT_VERSION];
    plain.extend(postcard::to_allocvec(seg).expect("records always encode"));
    crate::meta::pad::pad(&mut plain);
    let sealed = crypto::seal(key, &UnitAd::whole(volume_id, &object), &plain);
    (sealed, digest(&object, &plain))
}

/// Opens `audit/<chain>/<seq>`: it must authenticate under that name and
/// claim that chain and seq. Returns it with its digest.
pub fn open(
    key: &SubKey,
    volume_id: &[u8; 16],
    chain: &str,
    seq: u64,
    sealed: &[u8],
) -> Result<(Segment, [u8; 32]), CryptoError> {
    let object = self::key(chain, seq);
    let plain = crypto::open(key, &UnitAd::whole(volume_id, &object), sealed)?;
    let bad = |why: String| CryptoError::Malformed(format!("{object}: {why}"));
    let seg: Segment = match plain.split_first() {
        Some((&AUDIT_VERSION, body)) => {
            let (seg, rest) =
                postcard::take_from_bytes(body).map_err(|e| bad(format!("undecodable: {e}")))?;
            if !crate::meta::pad::is_padding(plain.len(), rest) {
                return Err(bad(format!(
                    "{} bytes after the body are not padding",
                    rest.len()
                )));
            }
            seg
        }
        Some((&AUDIT_UNPADDED, body)) => {
            postcard::from_bytes(body).map_err(|e| bad(format!("undecodable: {e}")))?
        }
        Some((v, _)) => return Err(bad(format!("unknown audit version {v}"))),
        None => return Err(bad("empty".into())),
    };
    if seg.chain != chain || seg.seq != seq {
        return Err(bad(format!("claims {}/{}", seg.chain, seg.seq)));
    }
    Ok((seg, digest(&object, &plain)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::record::Op;
    use crate::crypto::{Keys, MasterKey};

    #[test]
    fn sealed_under_its_name() {
        let keys = Keys::derive(&MasterKey::generate(), &[1; 16]);
        let seg = Segment {
            seq: 3,
            prev_hash: [2; 32],
            count_before: 10,
            ..one_record("/patients/a.txt")
        };
        let (sealed, digest) = seal(&keys.audit, &[1; 16], &seg);
        assert_eq!(
            open(&keys.audit, &[1; 16], "w", 3, &sealed).unwrap(),
            (seg.clone(), digest)
        );
        // The digest is the content's, whatever the sealing.
        let (again, same) = seal(&keys.audit, &[1; 16], &seg);
        assert_ne!(again, sealed);
        assert_eq!(same, digest);
        assert!(open(&keys.audit, &[1; 16], "w", 4, &sealed).is_err());
        assert!(open(&keys.audit, &[1; 16], "r-x", 3, &sealed).is_err());
        assert!(open(&keys.meta, &[1; 16], "w", 3, &sealed).is_err());
        assert_eq!(parse_key(&key("w", 3)), Some(("w", 3)));
        assert_eq!(parse_key("audit/w/xyz"), None);
        assert_eq!(parse_key("audit/0000000000000003"), None);
    }

    fn one_record(path: &str) -> Segment {
        Segment {
            chain: WRITER_CHAIN.into(),
            seq: 1,
            prev_hash: [0; 32],
            count_before: 0,
            host: "h".into(),
            writer: [7; 8],
            first_index: 0,
            records: vec![Record {
                time_ms: 1,
                uid: 0,
                gid: 0,
                pid: 1,
                process: "cat".into(),
                op: Op::Unlink,
                path: path.into(),
                path2: None,
                errno: 0,
            }],
        }
    }

    #[test]
    fn a_segments_size_does_not_give_away_a_path_length() {
        let keys = Keys::derive(&MasterKey::generate(), &[1; 16]);
        let short = seal(&keys.audit, &[1; 16], &one_record("/a")).0;
        let long = seal(
            &keys.audit,
            &[1; 16],
            &one_record("/patients/jane-doe-1970.pdf"),
        )
        .0;
        assert_eq!(short.len(), long.len());
        assert_eq!(
            crypto::open(&keys.audit, &UnitAd::whole(&[1; 16], &key("w", 1)), &short)
                .unwrap()
                .len(),
            4096
        );

        // Padding that is not zeros is refused; an unpadded version 1
        // segment (older builds) still opens.
        let object = key("w", 1);
        let ad = UnitAd::whole(&[1; 16], &object);
        let mut plain = vec![AUDIT_VERSION];
        plain.extend(postcard::to_allocvec(&one_record("/a")).unwrap());
        crate::meta::pad::pad(&mut plain);
        *plain.last_mut().unwrap() = 1;
        let sealed = crypto::seal(&keys.audit, &ad, &plain);
        assert!(open(&keys.audit, &[1; 16], "w", 1, &sealed).is_err());
        let mut v1 = vec![AUDIT_UNPADDED];
        v1.extend(postcard::to_allocvec(&one_record("/a")).unwrap());
        let sealed = crypto::seal(&keys.audit, &ad, &v1);
        let (seg, digest) = open(&keys.audit, &[1; 16], "w", 1, &sealed).unwrap();
        assert_eq!(
            (seg, digest),
            (one_record("/a"), super::digest(&object, &v1))
        );
    }
}
