//! Bytes of the `volume` object, versions 1 and 2.
//!
//! ```text
//! 8 B "SEALEDFS" ‖ u16 LE version ‖ postcard body
//! v1 body = volume_id [16 B] ‖ chunk_size varint ‖ created_unix varint
//!           ‖ keyslots (varint count, then each v1 keyslot) ‖ header_mac [32 B]
//! v2 body = volume_id [16 B] ‖ chunk_size varint ‖ created_unix varint
//!           ‖ cipher varint ‖ epoch varint
//!           ‖ keyslots (varint count, then each v2 slot) ‖ header_mac [32 B]
//! ```
//!
//! The decoder is strict and says what it rejected: no magic or fewer than
//! 10 bytes → `NotAVolume`; a version outside 1..=2 → `UnsupportedVersion`
//! naming it; anything else wrong (bad postcard, trailing bytes, a
//! non-canonical encoding, a chunk size that is not a power of two in
//! 4 KiB..=1 MiB, 0 or more than 8 keyslots, duplicate slot ids, absurd KDF
//! costs, a slot of the wrong shape, more than `MAX_HEADER_LEN` bytes) →
//! `Malformed`. A decoded header re-encodes to exactly the input bytes.

use serde::{Deserialize, Serialize};

use super::{
    FORMAT_VERSION, HeaderError, MAGIC, MAX_HEADER_LEN, MAX_KEYSLOTS, OLDEST_VERSION, PREFIX_LEN,
    VolumeHeader, chunk_size_ok,
};
use crate::crypto::slot::{Slot, SlotKind};
use crate::crypto::{Cipher, CryptoError, Keyslot};

/// v1 body as written and read.
#[derive(Serialize, Deserialize)]
struct BodyV1 {
    volume_id: [u8; 16],
    chunk_size: u32,
    created_unix: u64,
    keyslots: Vec<Keyslot>,
    header_mac: [u8; 32],
}

/// v2 body as written (borrowed, so `encode` does not clone slots).
#[derive(Serialize)]
struct BodyV2Ref<'a> {
    volume_id: &'a [u8; 16],
    chunk_size: u32,
    created_unix: u64,
    cipher: Cipher,
    epoch: u32,
    keyslots: &'a [Slot],
    header_mac: &'a [u8; 32],
}

/// v2 body as read; same field order and types as [`BodyV2Ref`].
#[derive(Deserialize)]
struct BodyV2 {
    volume_id: [u8; 16],
    chunk_size: u32,
    created_unix: u64,
    cipher: Cipher,
    epoch: u32,
    keyslots: Vec<Slot>,
    header_mac: [u8; 32],
}

/// 8 B magic ‖ u16 LE version ‖ postcard body of that version.
pub(super) fn encode(h: &VolumeHeader) -> Vec<u8> {
    let mut out = Vec::with_capacity(PREFIX_LEN + 64 + 300 * h.keyslots.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&h.version.to_le_bytes());
    if h.version == 1 {
        let body = BodyV1 {
            volume_id: h.volume_id,
            chunk_size: h.chunk_size,
            created_unix: h.created_unix,
            keyslots: h.keyslots.iter().map(v1_slot).collect(),
            header_mac: h.header_mac,
        };
        return postcard::to_extend(&body, out).expect("serializing into a Vec cannot fail");
    }
    let body = BodyV2Ref {
        volume_id: &h.volume_id,
        chunk_size: h.chunk_size,
        created_unix: h.created_unix,
        cipher: h.cipher,
        epoch: h.epoch,
        keyslots: &h.keyslots,
        header_mac: &h.header_mac,
    };
    postcard::to_extend(&body, out).expect("serializing into a Vec cannot fail")
}

/// A v1 header holds only v1 slots (mutations upgrade it to v2 first).
fn v1_slot(slot: &Slot) -> Keyslot {
    match &slot.kind {
        SlotKind::V1 { kdf, salt } => Keyslot {
            kdf: kdf.clone(),
            salt: *salt,
            wrapped: slot.wrapped.clone(),
        },
        other => panic!("a v1 header with a {} slot", other.name()),
    }
}

pub(super) fn decode(bytes: &[u8]) -> Result<VolumeHeader, HeaderError> {
    if bytes.len() < PREFIX_LEN || &bytes[..8] != MAGIC {
        return Err(HeaderError::NotAVolume);
    }
    let version = u16::from_le_bytes([bytes[8], bytes[9]]);
    if !(OLDEST_VERSION..=FORMAT_VERSION).contains(&version) {
        return Err(HeaderError::UnsupportedVersion(version));
    }
    let malformed = |what: String| Err(HeaderError::Malformed(what));
    if bytes.len() > MAX_HEADER_LEN {
        return malformed(format!("{} B, more than {MAX_HEADER_LEN} B", bytes.len()));
    }
    let body = &bytes[PREFIX_LEN..];
    let parsed = if version == 1 {
        postcard::take_from_bytes::<BodyV1>(body).map(|(b, rest)| (from_v1(b), rest))
    } else {
        postcard::take_from_bytes::<BodyV2>(body).map(|(b, rest)| (from_v2(b), rest))
    };
    let (header, rest) = match parsed {
        Ok(parsed) => parsed,
        Err(e) => return malformed(format!("body does not parse ({e})")),
    };
    if !rest.is_empty() {
        return malformed(format!("{} trailing bytes after the body", rest.len()));
    }
    if !chunk_size_ok(header.chunk_size) {
        return malformed(format!(
            "chunk size {} B is not a power of two in 4 KiB..=1 MiB",
            header.chunk_size
        ));
    }
    if !(1..=MAX_KEYSLOTS).contains(&header.keyslots.len()) {
        return malformed(format!(
            "{} keyslots, expected 1..={MAX_KEYSLOTS}",
            header.keyslots.len()
        ));
    }
    for (idx, slot) in header.keyslots.iter().enumerate() {
        if header.keyslots[..idx].iter().any(|s| s.id == slot.id) {
            return malformed(format!("keyslot id {} appears twice", slot.id));
        }
        if version == 2 && matches!(slot.kind, SlotKind::V1 { .. }) && header.epoch != 0 {
            return malformed(format!(
                "v1 keyslot {} in a header at epoch {}",
                slot.id, header.epoch
            ));
        }
        if let Err(e) = slot.validate() {
            let detail = match e {
                CryptoError::Malformed(m) => m,
                other => other.to_string(),
            };
            // v1 headers name slots by index, as the v1 decoder did.
            return malformed(
                detail.replace(&format!("keyslot {}", slot.id), &format!("keyslot {idx}")),
            );
        }
    }
    let header = VolumeHeader { version, ..header };
    if encode(&header) != bytes {
        return malformed("non-canonical encoding (re-encoding differs)".into());
    }
    Ok(header)
}

fn from_v1(b: BodyV1) -> VolumeHeader {
    let created = b.created_unix;
    VolumeHeader {
        version: 1,
        volume_id: b.volume_id,
        chunk_size: b.chunk_size,
        created_unix: b.created_unix,
        cipher: Cipher::XChaCha20Poly1305,
        epoch: 0,
        keyslots: b
            .keyslots
            .into_iter()
            .enumerate()
            .map(|(i, k)| Slot::from_v1(k, i as u32, created))
            .collect(),
        header_mac: b.header_mac,
    }
}

fn from_v2(b: BodyV2) -> VolumeHeader {
    VolumeHeader {
        version: 2,
        volume_id: b.volume_id,
        chunk_size: b.chunk_size,
        created_unix: b.created_unix,
        cipher: b.cipher,
        epoch: b.epoch,
        keyslots: b.keyslots,
        header_mac: b.header_mac,
    }
}
