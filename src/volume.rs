//! The `volume` object: the one object stored unsealed. It says "this is a
//! sealedfs volume", which format it uses, its id and chunk size, and holds
//! the keyslots from which a passphrase recovers the master key.
//!
//! Layout (byte table with worked sizes in docs/FORMAT.md):
//!
//! ```text
//! 8 B "SEALEDFS" ‖ u16 LE format version ‖ postcard body
//! body = volume_id [16 B] ‖ chunk_size varint ‖ created_unix varint
//!        ‖ keyslots (varint count, then each keyslot) ‖ header_mac [32 B]
//! ```
//!
//! Rules:
//! - The decoder is strict and says what it rejected: no magic or fewer
//!   than 10 bytes → [`HeaderError::NotAVolume`]; another version →
//!   [`HeaderError::UnsupportedVersion`] naming it; anything else wrong
//!   (bad postcard, trailing bytes, a non-canonical encoding, a chunk size
//!   that is not a power of two in 4 KiB..=1 MiB, 0 or more than
//!   [`MAX_KEYSLOTS`] keyslots, absurd KDF costs, a wrapped key that is not
//!   72 B, more than [`MAX_HEADER_LEN`] bytes) → [`HeaderError::Malformed`].
//!   A decoded header re-encodes to exactly the input bytes.
//! - Nothing is trusted before unlock. [`VolumeHeader::unlock`] first finds a
//!   keyslot that opens (each is authenticated on its own and bound to the
//!   volume id and its KDF costs), then checks `header_mac` over the fixed
//!   fields with the master key's `header` subkey. A changed chunk size,
//!   creation time, version or id fails there as
//!   `Authentication { object: "volume", unit: 0 }` (or, for the id,
//!   already as `WrongKey`).
//! - `header_mac` = HMAC-SHA256(`Keys::header`, MAC input), MAC input (34 B)
//!   = `"SFSV"` ‖ u16 LE version ‖ volume id ‖ u32 LE chunk_size ‖ u64 LE
//!   created_unix. The keyslot list is *not* covered: `remove_keyslot` must
//!   work without the master key, and a MAC over it would not stop a
//!   rollback of the whole object anyway. Consequence (as in LUKS): someone
//!   with write access to the store can re-insert a removed keyslot, so
//!   removing a passphrase does not revoke a person who knew it; only a new
//!   master key does (a later feature).
//! - The object is replaced only with `If-Match` on the ETag read before
//!   (DESIGN "What lives in the store"); this module only builds bytes.

use std::time::{SystemTime, UNIX_EPOCH};

use rand::RngCore;
use rand::rngs::OsRng;
use serde::{Deserialize, Serialize};

use crate::crypto::keys::{ct_eq, hmac_sha256};
use crate::crypto::{CryptoError, KdfParams, Keys, Keyslot, MasterKey, SubKey};

/// The format this build writes and reads.
pub const FORMAT_VERSION: u16 = 1;
/// First 8 bytes of the `volume` object.
pub const MAGIC: &[u8; 8] = b"SEALEDFS";
/// Magic + version: 10 B before the postcard body.
pub const PREFIX_LEN: usize = 10;
/// Name of the header object, relative to the volume (also used in errors).
pub const VOLUME_OBJECT: &str = "volume";
/// Smallest chunk size: 4 KiB.
pub const MIN_CHUNK_SIZE: u32 = 4 * 1024;
/// Largest chunk size: 1 MiB.
pub const MAX_CHUNK_SIZE: u32 = 1024 * 1024;
/// Default chunk size chosen by `sealedfs init`: 64 KiB.
pub const DEFAULT_CHUNK_SIZE: u32 = 64 * 1024;
/// Most keyslots a volume may hold.
pub const MAX_KEYSLOTS: usize = 8;
/// Largest `volume` object accepted: 16 KiB (8 keyslots need ≈ 0.9 KiB).
pub const MAX_HEADER_LEN: usize = 16 * 1024;

/// Domain-separation tag of the header MAC input.
const MAC_MAGIC: &[u8; 4] = b"SFSV";

/// Errors of the volume header: decoding and keyslot management.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum HeaderError {
    /// Shorter than 10 B or not starting with `"SEALEDFS"`. CLI exit 1.
    #[error(
        "not a sealedfs volume (the volume object does not start with \"SEALEDFS\" and a version)"
    )]
    NotAVolume,
    /// A format version this build cannot read. CLI exit 1.
    #[error("unsupported volume format version {0} (this build reads version {FORMAT_VERSION})")]
    UnsupportedVersion(u16),
    /// The magic and version are right but the rest is not a valid header.
    #[error("malformed volume header: {0}")]
    Malformed(String),
    /// `new` was given a chunk size that is not a power of two in 4 KiB..=1 MiB.
    #[error("chunk size {0} B is not a power of two between 4 KiB and 1 MiB")]
    InvalidChunkSize(u32),
    /// `new` or `add_keyslot` was given out-of-range Argon2id costs.
    #[error("invalid KDF parameters: {0}")]
    InvalidKdf(String),
    /// `add_keyslot` on a header that already holds [`MAX_KEYSLOTS`].
    #[error("all {MAX_KEYSLOTS} keyslots are in use")]
    KeyslotsFull,
    /// `remove_keyslot` of the only keyslot: the volume would be lost.
    #[error("refusing to remove the last keyslot")]
    LastKeyslot,
    /// `remove_keyslot` with an index past the end.
    #[error("no keyslot {0}")]
    NoSuchKeyslot(usize),
    /// `add_keyslot` with a master key that does not belong to this volume.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

/// The decoded `volume` object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeHeader {
    /// Format version ([`FORMAT_VERSION`]).
    pub version: u16,
    /// Random id; salt of the subkey derivation and part of every AD.
    pub volume_id: [u8; 16],
    /// Plaintext bytes per file chunk: a power of two, 4 KiB..=1 MiB.
    pub chunk_size: u32,
    /// Creation time, seconds since the Unix epoch.
    pub created_unix: u64,
    /// 1..=[`MAX_KEYSLOTS`] wrappings of the master key.
    pub keyslots: Vec<Keyslot>,
    /// HMAC-SHA256 of the fixed fields under the `header` subkey.
    pub header_mac: [u8; 32],
}

/// Postcard body as written (borrowed, so `encode` does not clone slots).
#[derive(Serialize)]
struct BodyRef<'a> {
    volume_id: &'a [u8; 16],
    chunk_size: u32,
    created_unix: u64,
    keyslots: &'a [Keyslot],
    header_mac: &'a [u8; 32],
}

/// Postcard body as read; same field order and types as [`BodyRef`].
#[derive(Deserialize)]
struct Body {
    volume_id: [u8; 16],
    chunk_size: u32,
    created_unix: u64,
    keyslots: Vec<Keyslot>,
    header_mac: [u8; 32],
}

fn chunk_size_ok(chunk_size: u32) -> bool {
    chunk_size.is_power_of_two() && (MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&chunk_size)
}

fn kdf_ok(kdf: &KdfParams) -> Result<(), HeaderError> {
    kdf.validate().map_err(|e| match e {
        CryptoError::Malformed(m) => HeaderError::InvalidKdf(m),
        other => HeaderError::InvalidKdf(other.to_string()),
    })
}

impl VolumeHeader {
    /// A new header for a fresh volume: random id, now as creation time, one
    /// keyslot for `passphrase`.
    pub fn new(
        master: &MasterKey,
        passphrase: &[u8],
        kdf: KdfParams,
        chunk_size: u32,
    ) -> Result<VolumeHeader, HeaderError> {
        let mut volume_id = [0u8; 16];
        OsRng.fill_bytes(&mut volume_id);
        let created_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Self::new_at(master, passphrase, kdf, chunk_size, volume_id, created_unix)
    }

    /// [`VolumeHeader::new`] with a given id and time (tests, fixtures).
    fn new_at(
        master: &MasterKey,
        passphrase: &[u8],
        kdf: KdfParams,
        chunk_size: u32,
        volume_id: [u8; 16],
        created_unix: u64,
    ) -> Result<VolumeHeader, HeaderError> {
        if !chunk_size_ok(chunk_size) {
            return Err(HeaderError::InvalidChunkSize(chunk_size));
        }
        kdf_ok(&kdf)?;
        let keyslot = Keyslot::create(master, passphrase, kdf, &volume_id);
        let mut header = VolumeHeader {
            version: FORMAT_VERSION,
            volume_id,
            chunk_size,
            created_unix,
            keyslots: vec![keyslot],
            header_mac: [0; 32],
        };
        header.header_mac = header.compute_mac(&Keys::derive(master, &volume_id).header);
        Ok(header)
    }

    /// The subkeys of this volume under `master`.
    pub fn keys(&self, master: &MasterKey) -> Keys {
        Keys::derive(master, &self.volume_id)
    }

    /// HMAC-SHA256 over the 34-byte MAC input described in the module notes.
    fn compute_mac(&self, header_key: &SubKey) -> [u8; 32] {
        let mut input = [0u8; 34];
        input[0..4].copy_from_slice(MAC_MAGIC);
        input[4..6].copy_from_slice(&self.version.to_le_bytes());
        input[6..22].copy_from_slice(&self.volume_id);
        input[22..26].copy_from_slice(&self.chunk_size.to_le_bytes());
        input[26..34].copy_from_slice(&self.created_unix.to_le_bytes());
        hmac_sha256(header_key.as_bytes(), &input)
    }

    /// Checks `header_mac` under `master`: Ok if this master key belongs to
    /// this volume and the fixed fields are as written.
    pub fn verify_master(&self, master: &MasterKey) -> Result<(), CryptoError> {
        let expected = self.compute_mac(&self.keys(master).header);
        if ct_eq(&expected, &self.header_mac) {
            Ok(())
        } else {
            Err(CryptoError::Authentication {
                object: VOLUME_OBJECT.to_owned(),
                unit: 0,
            })
        }
    }

    /// Tries every keyslot with `passphrase`, then verifies `header_mac`.
    /// No slot opens → `WrongKey`; a slot opens but the MAC fails →
    /// `Authentication { object: "volume", unit: 0 }`.
    pub fn unlock(&self, passphrase: &[u8]) -> Result<MasterKey, CryptoError> {
        self.unlock_with_slot(passphrase).map(|(_, master)| master)
    }

    /// [`VolumeHeader::unlock`], also returning the index of the keyslot
    /// that opened (for `key passwd`: rewrite that slot).
    pub fn unlock_with_slot(&self, passphrase: &[u8]) -> Result<(usize, MasterKey), CryptoError> {
        let mut first_malformed = None;
        for (idx, slot) in self.keyslots.iter().enumerate() {
            match slot.unlock(passphrase, &self.volume_id) {
                Ok(master) => {
                    self.verify_master(&master)?;
                    return Ok((idx, master));
                }
                Err(CryptoError::WrongKey) => {}
                Err(e) => {
                    first_malformed.get_or_insert(e);
                }
            }
        }
        Err(first_malformed.unwrap_or(CryptoError::WrongKey))
    }

    /// Adds a keyslot for `passphrase`; returns its index. `master` must be
    /// this volume's (checked against `header_mac`, else `WrongKey`).
    pub fn add_keyslot(
        &mut self,
        master: &MasterKey,
        passphrase: &[u8],
        kdf: KdfParams,
    ) -> Result<usize, HeaderError> {
        if self.keyslots.len() >= MAX_KEYSLOTS {
            return Err(HeaderError::KeyslotsFull);
        }
        kdf_ok(&kdf)?;
        self.verify_master(master)
            .map_err(|_| CryptoError::WrongKey)?;
        self.keyslots
            .push(Keyslot::create(master, passphrase, kdf, &self.volume_id));
        Ok(self.keyslots.len() - 1)
    }

    /// Removes keyslot `idx` and returns it; refuses to remove the last one.
    /// Authorising the removal (e.g. unlocking first) is the caller's job.
    pub fn remove_keyslot(&mut self, idx: usize) -> Result<Keyslot, HeaderError> {
        if idx >= self.keyslots.len() {
            return Err(HeaderError::NoSuchKeyslot(idx));
        }
        if self.keyslots.len() == 1 {
            return Err(HeaderError::LastKeyslot);
        }
        Ok(self.keyslots.remove(idx))
    }

    /// 8 B magic ‖ u16 LE version ‖ postcard body.
    pub fn encode(&self) -> Vec<u8> {
        let body = BodyRef {
            volume_id: &self.volume_id,
            chunk_size: self.chunk_size,
            created_unix: self.created_unix,
            keyslots: &self.keyslots,
            header_mac: &self.header_mac,
        };
        let mut out = Vec::with_capacity(PREFIX_LEN + 64 + 100 * self.keyslots.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.version.to_le_bytes());
        postcard::to_extend(&body, out).expect("serializing into a Vec cannot fail")
    }

    /// Strict decoder; see the module notes for what it rejects.
    pub fn decode(bytes: &[u8]) -> Result<VolumeHeader, HeaderError> {
        if bytes.len() < PREFIX_LEN || &bytes[..8] != MAGIC {
            return Err(HeaderError::NotAVolume);
        }
        let version = u16::from_le_bytes([bytes[8], bytes[9]]);
        if version != FORMAT_VERSION {
            return Err(HeaderError::UnsupportedVersion(version));
        }
        let malformed = |what: String| Err(HeaderError::Malformed(what));
        if bytes.len() > MAX_HEADER_LEN {
            return malformed(format!("{} B, more than {MAX_HEADER_LEN} B", bytes.len()));
        }
        let (body, rest): (Body, _) = match postcard::take_from_bytes(&bytes[PREFIX_LEN..]) {
            Ok(parsed) => parsed,
            Err(e) => return malformed(format!("body does not parse ({e})")),
        };
        if !rest.is_empty() {
            return malformed(format!("{} trailing bytes after the body", rest.len()));
        }
        if !chunk_size_ok(body.chunk_size) {
            return malformed(format!(
                "chunk size {} B is not a power of two in 4 KiB..=1 MiB",
                body.chunk_size
            ));
        }
        if !(1..=MAX_KEYSLOTS).contains(&body.keyslots.len()) {
            return malformed(format!(
                "{} keyslots, expected 1..={MAX_KEYSLOTS}",
                body.keyslots.len()
            ));
        }
        for (idx, slot) in body.keyslots.iter().enumerate() {
            if let Err(e) = slot.validate() {
                let detail = match e {
                    CryptoError::Malformed(m) => m,
                    other => other.to_string(),
                };
                return malformed(format!("keyslot {idx}: {detail}"));
            }
        }
        let header = VolumeHeader {
            version,
            volume_id: body.volume_id,
            chunk_size: body.chunk_size,
            created_unix: body.created_unix,
            keyslots: body.keyslots,
            header_mac: body.header_mac,
        };
        if header.encode() != bytes {
            return malformed("non-canonical encoding (re-encoding differs)".into());
        }
        Ok(header)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::keyslot::MAX_T_COST;

    const PASS: &[u8] = b"correct horse battery staple";
    const VOL: [u8; 16] = [0x5e; 16];
    /// 2023-11-14T22:13:20Z: a 5-byte varint.
    const CREATED: u64 = 1_700_000_000;

    fn fast() -> KdfParams {
        KdfParams::insecure_fast()
    }

    fn header() -> (MasterKey, VolumeHeader) {
        let master = MasterKey::generate();
        let h =
            VolumeHeader::new_at(&master, PASS, fast(), DEFAULT_CHUNK_SIZE, VOL, CREATED).unwrap();
        (master, h)
    }

    fn unhex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn assert_malformed(bytes: &[u8], needle: &str) {
        match VolumeHeader::decode(bytes) {
            Err(HeaderError::Malformed(m)) => assert!(m.contains(needle), "{m:?} lacks {needle:?}"),
            other => panic!("expected Malformed({needle}), got {other:?}"),
        }
    }

    #[test]
    fn new_then_unlock() {
        let (master, h) = header();
        assert_eq!(h.version, FORMAT_VERSION);
        assert_eq!(h.keyslots.len(), 1);
        let opened = h.unlock(PASS).unwrap();
        assert_eq!(opened.as_bytes(), master.as_bytes());
        assert_eq!(
            h.keys(&opened).data.as_bytes(),
            h.keys(&master).data.as_bytes()
        );
        assert_eq!(h.unlock(b"wrong").unwrap_err(), CryptoError::WrongKey);
    }

    #[test]
    fn new_picks_random_id_and_current_time() {
        let master = MasterKey::generate();
        let a = VolumeHeader::new(&master, PASS, fast(), DEFAULT_CHUNK_SIZE).unwrap();
        let b = VolumeHeader::new(&master, PASS, fast(), DEFAULT_CHUNK_SIZE).unwrap();
        assert_ne!(a.volume_id, b.volume_id);
        assert!(a.created_unix > CREATED);
    }

    #[test]
    fn round_trip() {
        let (master, mut h) = header();
        h.add_keyslot(&master, b"second", fast()).unwrap();
        let bytes = h.encode();
        assert_eq!(&bytes[..10], b"SEALEDFS\x01\x00");
        let back = VolumeHeader::decode(&bytes).unwrap();
        assert_eq!(back, h);
        assert_eq!(
            back.unlock(b"second").unwrap().as_bytes(),
            master.as_bytes()
        );
    }

    /// The worked size in docs/FORMAT.md: 10 B prefix + 16 id + 3
    /// (65536 as varint) + 5 (1.7e9 as varint) + 1 (count) + 94 (keyslot with
    /// default costs) + 32 MAC = 161 B; each extra default keyslot adds 94 B.
    #[test]
    fn worked_size() {
        let (master, mut h) = header();
        assert_eq!(h.encode().len(), 160); // insecure_fast: m = 256 is a 2-byte varint
        for slot in &mut h.keyslots {
            slot.kdf = KdfParams::default();
        }
        assert_eq!(h.encode().len(), 161);
        h.add_keyslot(&master, b"x", fast()).unwrap();
        h.keyslots[1].kdf = KdfParams::default();
        assert_eq!(h.encode().len(), 161 + 94);
    }

    #[test]
    fn decode_rejects_non_volumes() {
        let good = header().1.encode();
        for bad in [
            &b""[..],
            b"SEALEDFS",
            b"SEALEDFS\x01",
            b"SEALEDFT\x01\x00rest",
            b"PK\x03\x04 zipfile",
        ] {
            assert_eq!(
                VolumeHeader::decode(bad),
                Err(HeaderError::NotAVolume),
                "{bad:?}"
            );
        }
        let mut bad_magic = good.clone();
        bad_magic[0] ^= 0x20;
        assert_eq!(
            VolumeHeader::decode(&bad_magic),
            Err(HeaderError::NotAVolume)
        );
    }

    #[test]
    fn decode_names_unknown_version() {
        let mut bytes = header().1.encode();
        for v in [0u16, 2, 0x0100, u16::MAX] {
            bytes[8..10].copy_from_slice(&v.to_le_bytes());
            let err = VolumeHeader::decode(&bytes).unwrap_err();
            assert_eq!(err, HeaderError::UnsupportedVersion(v));
            assert!(err.to_string().contains(&format!("version {v} ")), "{err}");
        }
    }

    #[test]
    fn decode_rejects_garbage_and_truncation() {
        let good = header().1.encode();
        assert_malformed(b"SEALEDFS\x01\x00", "does not parse");
        assert_malformed(b"SEALEDFS\x01\x00\xff\xff\xff\xff\xff\xff\xff", "");
        for len in PREFIX_LEN..good.len() {
            assert!(
                matches!(
                    VolumeHeader::decode(&good[..len]),
                    Err(HeaderError::Malformed(_))
                ),
                "len {len}"
            );
        }
        let mut longer = good.clone();
        longer.push(0);
        assert_malformed(&longer, "1 trailing bytes");
        let mut huge = good.clone();
        huge.resize(MAX_HEADER_LEN + 1, 0);
        assert_malformed(&huge, "more than");
    }

    #[test]
    fn decode_rejects_bad_fields() {
        let (_, h) = header();
        let with = |f: &dyn Fn(&mut VolumeHeader)| {
            let mut x = h.clone();
            f(&mut x);
            x.encode()
        };
        assert_malformed(&with(&|x| x.chunk_size = 3000), "chunk size 3000");
        assert_malformed(&with(&|x| x.chunk_size = 2 * MAX_CHUNK_SIZE), "chunk size");
        assert_malformed(&with(&|x| x.keyslots.clear()), "0 keyslots");
        assert_malformed(
            &with(&|x| x.keyslots = vec![x.keyslots[0].clone(); MAX_KEYSLOTS + 1]),
            "9 keyslots",
        );
        assert_malformed(
            &with(&|x| x.keyslots[0].kdf.t_cost = MAX_T_COST + 1),
            "keyslot 0: KDF t_cost",
        );
        assert_malformed(
            &with(&|x| x.keyslots[0].kdf.m_cost_kib = u32::MAX),
            "keyslot 0: KDF m_cost",
        );
        assert_malformed(
            &with(&|x| {
                x.keyslots[0].wrapped.pop();
            }),
            "keyslot 0: wrapped key is 71 B",
        );
    }

    /// An overlong varint (65536 as 4 bytes instead of 3) is refused even if
    /// postcard would accept it: decoded headers re-encode byte for byte.
    #[test]
    fn decode_rejects_non_canonical_varint() {
        let good = header().1.encode();
        let at = PREFIX_LEN + 16;
        assert_eq!(&good[at..at + 3], &[0x80, 0x80, 0x04]);
        let mut bad = good[..at].to_vec();
        bad.extend([0x80, 0x80, 0x84, 0x00]);
        bad.extend(&good[at + 3..]);
        assert!(matches!(
            VolumeHeader::decode(&bad),
            Err(HeaderError::Malformed(_))
        ));
    }

    #[test]
    fn tampered_fixed_fields_fail_unlock() {
        let (_, h) = header();
        let tampers: [&dyn Fn(&mut VolumeHeader); 4] = [
            &|x| x.chunk_size = 4096,
            &|x| x.created_unix += 1,
            &|x| x.version = 2,
            &|x| x.header_mac[31] ^= 1,
        ];
        for tamper in tampers {
            let mut x = h.clone();
            tamper(&mut x);
            let err = x.unlock(PASS).unwrap_err();
            assert_eq!(
                err,
                CryptoError::Authentication {
                    object: "volume".into(),
                    unit: 0
                }
            );
        }
        // Through the bytes, as an attacker with store access would do it.
        let mut x = h.clone();
        x.chunk_size = MAX_CHUNK_SIZE;
        let decoded = VolumeHeader::decode(&x.encode()).unwrap();
        assert!(matches!(
            decoded.unlock(PASS),
            Err(CryptoError::Authentication { .. })
        ));
        // A changed id breaks the keyslots' AD before the MAC is reached.
        let mut x = h.clone();
        x.volume_id[0] ^= 1;
        assert_eq!(x.unlock(PASS).unwrap_err(), CryptoError::WrongKey);
    }

    #[test]
    fn chunk_size_bounds() {
        let m = MasterKey::generate();
        for bad in [
            0,
            1,
            2048,
            3000,
            4095,
            4097,
            65535,
            65537,
            2 * MAX_CHUNK_SIZE,
            u32::MAX,
        ] {
            let err = VolumeHeader::new(&m, PASS, fast(), bad).unwrap_err();
            assert_eq!(err, HeaderError::InvalidChunkSize(bad));
        }
        for good in [MIN_CHUNK_SIZE, 8192, DEFAULT_CHUNK_SIZE, MAX_CHUNK_SIZE] {
            assert_eq!(
                VolumeHeader::new(&m, PASS, fast(), good)
                    .unwrap()
                    .chunk_size,
                good
            );
        }
    }

    #[test]
    fn invalid_kdf_is_an_error_not_a_panic() {
        let m = MasterKey::generate();
        let kdf = KdfParams {
            t_cost: 0,
            ..fast()
        };
        assert!(matches!(
            VolumeHeader::new(&m, PASS, kdf.clone(), DEFAULT_CHUNK_SIZE),
            Err(HeaderError::InvalidKdf(_))
        ));
        let (master, mut h) = header();
        assert!(matches!(
            h.add_keyslot(&master, b"x", kdf),
            Err(HeaderError::InvalidKdf(_))
        ));
    }

    #[test]
    fn add_and_remove_keyslots() {
        let (master, mut h) = header();
        assert_eq!(h.add_keyslot(&master, b"second", fast()), Ok(1));
        assert_eq!(h.unlock_with_slot(PASS).unwrap().0, 0);
        assert_eq!(h.unlock_with_slot(b"second").unwrap().0, 1);

        // A master key of another volume is refused and changes nothing.
        let before = h.clone();
        let err = h
            .add_keyslot(&MasterKey::generate(), b"evil", fast())
            .unwrap_err();
        assert_eq!(err, HeaderError::Crypto(CryptoError::WrongKey));
        assert_eq!(h, before);

        assert_eq!(
            h.remove_keyslot(2).unwrap_err(),
            HeaderError::NoSuchKeyslot(2)
        );
        let removed = h.remove_keyslot(0).unwrap();
        assert_eq!(removed, before.keyslots[0]);
        assert_eq!(h.unlock(PASS).unwrap_err(), CryptoError::WrongKey);
        assert_eq!(h.unlock(b"second").unwrap().as_bytes(), master.as_bytes());
        assert_eq!(h.remove_keyslot(0).unwrap_err(), HeaderError::LastKeyslot);
        assert_eq!(VolumeHeader::decode(&h.encode()).unwrap(), h);
    }

    #[test]
    fn keyslot_limit() {
        let (master, mut h) = header();
        for i in 1..MAX_KEYSLOTS {
            assert_eq!(h.add_keyslot(&master, b"x", fast()), Ok(i));
        }
        assert_eq!(
            h.add_keyslot(&master, b"x", fast()),
            Err(HeaderError::KeyslotsFull)
        );
        VolumeHeader::decode(&h.encode()).unwrap();
    }

    /// A committed v1 header (insecure_fast costs, chunk 64 KiB). If this
    /// stops opening, existing volumes stop opening: bump FORMAT_VERSION and
    /// keep a reader for v1 instead of editing this test.
    #[test]
    fn golden_v1_header_opens() {
        let bytes = unhex(GOLDEN_V1);
        let h = VolumeHeader::decode(&bytes).unwrap();
        assert_eq!(h.volume_id, VOL);
        assert_eq!(h.chunk_size, DEFAULT_CHUNK_SIZE);
        assert_eq!(h.created_unix, CREATED);
        assert_eq!(h.keyslots[0].kdf, fast());
        let master = h.unlock(GOLDEN_PASS).unwrap();
        assert_eq!(master.as_bytes(), &GOLDEN_MASTER);
        assert_eq!(h.unlock(PASS).unwrap_err(), CryptoError::WrongKey);
    }

    const GOLDEN_PASS: &[u8] = b"sealedfs golden v1";
    const GOLDEN_MASTER: [u8; 32] = [0x6d; 32];
    const GOLDEN_V1: &str = concat!(
        "5345414c4544465301005e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e80800480e2cf",
        "aa0601800201010805eed5995aa0d691cda0a11f5f8b174896c1b149f7f079d1",
        "9d523ea2c1eb1227a0214585b5fdf692717d8d7f86ac19a15c13bb69e37282ef",
        "2609214ca419245f8dd3c68bc48bb848d0e75528cb98bb23d00b8f547612164f",
        "492faca8e67f200fcc422f04cf80227431f582e69035616c01492462c9d9f3dd",
    );
}
