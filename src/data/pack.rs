//! Packs: immutable objects holding the sealed segments of one or many
//! files, in the order they were flushed.
//!
//! Layout: a pack body is the plain concatenation of its segments, no
//! header; the chunk maps say where each segment starts. Segment = 24 B
//! nonce ‖ ciphertext of the chunk padded to a 4 KiB class ‖ 16 B tag.
//! Each segment's associated data binds the volume, the pack's object name
//! (`data/xx/<id>`), its unit index and whether it is the pack's last unit,
//! so segments cannot be moved, swapped or dropped from the end unnoticed.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::offsets::{cipher_len, padded_len};
use crate::crypto::{self, SubKey, UnitAd};

/// 128-bit random pack id; never derived from content or names.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PackId(pub [u8; 16]);

impl PackId {
    pub fn random() -> PackId {
        PackId(rand::random())
    }

    /// Object name relative to the volume.
    pub fn key(&self) -> String {
        format!("data/{:02x}/{}", self.0[0], self)
    }

    pub fn from_key(key: &str) -> Option<PackId> {
        let hex = key.strip_prefix("data/")?.get(3..)?;
        if hex.len() != 32 {
            return None;
        }
        let mut id = [0u8; 16];
        for (i, b) in id.iter_mut().enumerate() {
            *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        (key == PackId(id).key()).then_some(PackId(id))
    }
}

impl fmt::Display for PackId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for PackId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pack {self}")
    }
}

/// Where one sealed chunk landed in a pack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placed {
    pub unit: u32,
    pub cipher_off: u64,
    pub cipher_len: u32,
    pub plain_len: u32,
}

/// Bytes of the pack body `chunks` seal into, before any padding.
pub fn sealed_len(chunks: &[&[u8]]) -> usize {
    chunks
        .iter()
        .map(|c| cipher_len(c.len() as u32) as usize)
        .sum()
}

/// Seals `chunks` (each ≤ the volume chunk size) into one pack body.
pub fn seal_pack(
    key: &SubKey,
    volume_id: &[u8; 16],
    id: PackId,
    chunks: &[&[u8]],
) -> (Vec<u8>, Vec<Placed>) {
    let mut body = Vec::new();
    let placed = seal_pack_into(key, volume_id, id, chunks, &mut body);
    (body, placed)
}

/// [`seal_pack`] into `body`, emptied first: a writer can give each pack
/// the memory of the one before.
pub fn seal_pack_into(
    key: &SubKey,
    volume_id: &[u8; 16],
    id: PackId,
    chunks: &[&[u8]],
    body: &mut Vec<u8>,
) -> Vec<Placed> {
    let object = id.key();
    body.clear();
    body.reserve(sealed_len(chunks));
    let mut placed = Vec::with_capacity(chunks.len());
    let mut padded = Vec::new();
    for (i, plain) in chunks.iter().enumerate() {
        let plain_len = plain.len() as u32;
        // A full chunk needs no padding, and no copy to add it.
        let padded_to = padded_len(plain_len) as usize;
        let unit: &[u8] = if plain.len() == padded_to {
            plain
        } else {
            padded.clear();
            padded.extend_from_slice(plain);
            padded.resize(padded_to, 0);
            &padded
        };
        let ad = segment_ad(volume_id, &object, i as u32, i + 1 == chunks.len());
        let cipher_off = body.len() as u64;
        crypto::seal_into(key, &ad, unit, body);
        placed.push(Placed {
            unit: i as u32,
            cipher_off,
            cipher_len: (body.len() as u64 - cipher_off) as u32,
            plain_len,
        });
    }
    placed
}

/// Opens one segment read from a pack; returns its `plain_len` valid bytes.
pub fn open_segment(
    key: &SubKey,
    volume_id: &[u8; 16],
    id: PackId,
    unit: u32,
    last: bool,
    sealed: &[u8],
    plain_len: u32,
) -> Result<Vec<u8>, crypto::CryptoError> {
    let object = id.key();
    let mut plain = crypto::open(key, &segment_ad(volume_id, &object, unit, last), sealed)?;
    super::streamed::trim(&mut plain, plain_len as usize);
    Ok(plain)
}

/// Opens one whole segment under any epoch `key` holds and seals it again
/// under `key`'s own: same place, same length (a rotation re-seals packs
/// in place, so every chunk map stays right).
pub fn reseal_segment(
    key: &SubKey,
    volume_id: &[u8; 16],
    id: PackId,
    unit: u32,
    last: bool,
    sealed: &[u8],
) -> Result<Vec<u8>, crypto::CryptoError> {
    let object = id.key();
    let ad = segment_ad(volume_id, &object, unit, last);
    let plain = zeroize::Zeroizing::new(crypto::open(key, &ad, sealed)?);
    Ok(crypto::seal(key, &ad, &plain))
}

/// Whether a segment is sealed under `key`'s own epoch.
pub fn segment_is_current(
    key: &SubKey,
    volume_id: &[u8; 16],
    id: PackId,
    unit: u32,
    last: bool,
    sealed: &[u8],
) -> bool {
    let object = id.key();
    crypto::seal::is_current(key, &segment_ad(volume_id, &object, unit, last), sealed)
}

/// Segment `unit` of pack `object`; `last` for the pack's final one.
pub(super) fn segment_ad<'a>(
    volume_id: &'a [u8; 16],
    object: &'a str,
    unit: u32,
    last: bool,
) -> UnitAd<'a> {
    UnitAd {
        volume_id,
        object,
        unit: unit as u64,
        last,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{Keys, MasterKey};

    #[test]
    fn key_round_trip() {
        let id = PackId::random();
        assert_eq!(PackId::from_key(&id.key()), Some(id));
        assert_eq!(PackId::from_key("data/zz/00"), None);
        assert_eq!(PackId::from_key("meta/journal/1"), None);
    }

    #[test]
    fn seal_and_open_each_segment() {
        let keys = Keys::derive(&MasterKey::generate(), &[7; 16]);
        let id = PackId::random();
        let a = vec![1u8; 65536];
        let b = vec![2u8; 10];
        let (body, placed) = seal_pack(&keys.data, &[7; 16], id, &[&a, &b]);
        assert_eq!(placed[1].cipher_off, placed[0].cipher_len as u64);
        assert_eq!(
            body.len() as u64,
            placed[1].cipher_off + placed[1].cipher_len as u64
        );
        for (p, want, last) in [(placed[0], &a, false), (placed[1], &b, true)] {
            let s = &body[p.cipher_off as usize..][..p.cipher_len as usize];
            let got = open_segment(&keys.data, &[7; 16], id, p.unit, last, s, p.plain_len).unwrap();
            assert_eq!(&got, want);
        }
        // Wrong unit, wrong last flag, wrong pack: all rejected.
        let s = &body[..placed[0].cipher_len as usize];
        assert!(open_segment(&keys.data, &[7; 16], id, 1, false, s, 10).is_err());
        assert!(open_segment(&keys.data, &[7; 16], id, 0, true, s, 10).is_err());
        assert!(open_segment(&keys.data, &[7; 16], PackId::random(), 0, false, s, 10).is_err());
    }

    #[test]
    fn a_body_given_again_holds_only_the_new_pack() {
        let keys = Keys::derive(&MasterKey::generate(), &[7; 16]);
        let big = vec![3u8; 65536];
        let mut body = Vec::new();
        seal_pack_into(
            &keys.data,
            &[7; 16],
            PackId::random(),
            &[&big, &big],
            &mut body,
        );
        let (memory, capacity) = (body.as_ptr(), body.capacity());

        let id = PackId::random();
        let (short, full) = (vec![4u8; 100], vec![5u8; 65536]);
        let placed = seal_pack_into(&keys.data, &[7; 16], id, &[&short, &full], &mut body);
        assert_eq!((body.as_ptr(), body.capacity()), (memory, capacity));
        let end = placed[1].cipher_off + placed[1].cipher_len as u64;
        assert_eq!(body.len() as u64, end);
        for (p, want, last) in [(placed[0], &short, false), (placed[1], &full, true)] {
            let s = &body[p.cipher_off as usize..][..p.cipher_len as usize];
            let got = open_segment(&keys.data, &[7; 16], id, p.unit, last, s, p.plain_len).unwrap();
            assert_eq!(&got, want);
        }
    }
}
