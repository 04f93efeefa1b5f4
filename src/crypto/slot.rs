//! Format-v2 keyslots: each slot has a P-256 key pair; its private key is
//! wrapped by the slot's secret (a passphrase through a KDF, a key file,
//! or AWS KMS), and the volume's [`KeyRing`] is sealed to its public key.
//!
//! ```text
//! slot secret ──KDF / HKDF / KMS──► private key (32 B) ──ECDH──┐
//!                                                              ▼
//! ring sealed to the public key: eph ‖ AEAD(HKDF(ECDH(eph, pub)), ring)
//! ```
//!
//! Why a key pair per slot: replacing the ring in a slot needs only the
//! slot's *public* key. A rotation (running in the daemon, which knows the
//! ring but no passphrase) adds the new epoch to every slot without anyone
//! typing anything, and a slot removed before the rotation never receives
//! the new ring: whoever kept a copy of its secret, its private key or
//! even the old master key can open nothing written after the rotation,
//! and nothing at all once re-encryption has finished. That is what makes
//! revoking a person real. P-256 ECDH and HKDF-SHA256 are FIPS-approved.
//!
//! Rules:
//! - The wrapped private key's AD binds the volume id, the cipher, the slot
//!   id, the public key and the slot kind with its KDF costs and salt: a
//!   slot copied to another volume or slot id, or with lowered costs,
//!   fails instead of unwrapping. KMS binds the same volume id and slot id
//!   through its encryption context ([`kms_context`]).
//! - The sealed ring's AD binds the volume id, cipher, slot id and both
//!   public keys; its AEAD key is used once (fresh ephemeral key).
//! - Shapes are checked before any KDF runs ([`Slot::validate`]).
//! - A failed unwrap is [`CryptoError::WrongKey`]; a slot whose private key
//!   unwraps but whose ring does not open is `Malformed` (damage, not a
//!   wrong passphrase).

use aws_lc_rs::agreement::{ECDH_P256, PrivateKey, UnparsedPublicKey, agree};
use aws_lc_rs::encoding::{AsBigEndian, EcPublicKeyUncompressedBin};
use hkdf::Hkdf;
use rand::RngCore;
use rand::rngs::OsRng;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::CryptoError;
use super::kdf::{Kdf, KdfParams, SALT_LEN};
use super::keys::KEY_LEN;
use super::keyslot::Keyslot;
use super::ring::{ENTRY_LEN, KeyRing, MAX_EPOCHS};
use super::seal::{OpenFailure, SEAL_OVERHEAD, open_raw, seal_raw};
use super::suite::Cipher;

/// An uncompressed P-256 public key: 0x04 ‖ x ‖ y.
pub const PUBLIC_LEN: usize = 65;
/// Key files shorter than this are not keys (use a passphrase slot).
pub const MIN_KEY_FILE_LEN: usize = 32;
/// Largest KMS ciphertext blob accepted (AWS's are ≈ 200 B for 32 B).
pub const MAX_KMS_BLOB: usize = 4096;
/// Longest KMS key id or alias kept (an ARN is ≈ 80 B).
pub const MAX_KMS_KEY_ID: usize = 2048;
/// Wrapped private key under a KEK: 24 ‖ 32 ‖ 16 = 72 B.
const WRAPPED_PRIVATE_LEN: usize = KEY_LEN + SEAL_OVERHEAD;

const WRAP_AD_MAGIC: &[u8; 4] = b"SFK2";
const RING_AD_MAGIC: &[u8; 4] = b"SFR2";
const KEY_FILE_INFO: &[u8] = b"sealedfs v2 key file kek";
const RING_INFO: &[u8] = b"sealedfs v2 ring";

/// How a slot's private key is protected. Stored as a postcard enum; the
/// variant order is format (0 Passphrase, 1 KeyFile, 2 Kms, 3 V1).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum SlotKind {
    /// KEK = the KDF of a passphrase (or of a short key file's bytes).
    Passphrase { kdf: Kdf, salt: [u8; SALT_LEN] },
    /// KEK = HKDF-SHA256(key file bytes, salt): the file is the key, so no
    /// slow KDF is needed; it must hold at least 32 random bytes.
    KeyFile { salt: [u8; SALT_LEN] },
    /// The private key is an AWS KMS ciphertext; unwrapping is a
    /// `kms:Decrypt` call with [`kms_context`].
    Kms { key_id: String },
    /// A format-v1 keyslot carried over as it was (`wrapped` is its 72 B
    /// wrapping of epoch 0's master key; no key pair, no sealed ring).
    V1 {
        kdf: KdfParams,
        salt: [u8; SALT_LEN],
    },
}

impl SlotKind {
    /// `passphrase`, `key-file`, `kms` or `passphrase (v1)`, for `key list`.
    pub fn name(&self) -> &'static str {
        match self {
            SlotKind::Passphrase { .. } => "passphrase",
            SlotKind::KeyFile { .. } => "key-file",
            SlotKind::Kms { .. } => "kms",
            SlotKind::V1 { .. } => "passphrase (v1)",
        }
    }

    /// The slow KDF this slot runs, if any.
    pub fn kdf(&self) -> Option<Kdf> {
        match self {
            SlotKind::Passphrase { kdf, .. } => Some(kdf.clone()),
            SlotKind::V1 { kdf, .. } => Some(Kdf::Argon2id(kdf.clone())),
            SlotKind::KeyFile { .. } | SlotKind::Kms { .. } => None,
        }
    }
}

/// One keyslot of a v2 header. Nothing in it is secret.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Slot {
    /// Stable id: never reused within a volume, named by `--slot`.
    pub id: u32,
    /// When the slot was made, seconds since the Unix epoch.
    pub created_unix: u64,
    pub kind: SlotKind,
    /// The private key wrapped (72 B, or a KMS blob); for V1, the master key.
    pub wrapped: Vec<u8>,
    /// The slot's public key (65 B; empty for V1).
    pub public: Vec<u8>,
    /// The ring sealed to `public`: 65 B ephemeral key ‖ sealed ring
    /// (empty for V1).
    pub sealed_ring: Vec<u8>,
}

/// The secret a slot is opened with.
#[derive(Clone, Copy, Debug)]
pub enum SlotSecret<'a> {
    /// A passphrase (from a file, the environment or a prompt).
    Passphrase(&'a [u8]),
    /// A key file's bytes.
    KeyFile(&'a [u8]),
}

/// Encrypts a slot's private key with KMS: plaintext → ciphertext blob.
pub type KmsWrap<'a> = dyn FnMut(&[u8]) -> Result<Vec<u8>, String> + 'a;

/// What a new slot is made from.
pub enum NewSlot<'a> {
    Passphrase {
        secret: &'a [u8],
        kdf: Kdf,
    },
    KeyFile(&'a [u8]),
    /// `wrap` encrypts the private key with KMS under [`kms_context`].
    Kms {
        key_id: &'a str,
        wrap: &'a mut KmsWrap<'a>,
    },
}

/// The KMS encryption context of slot `id` of volume `volume_id`.
pub fn kms_context(volume_id: &[u8; 16], id: u32) -> Vec<(String, String)> {
    vec![
        ("sealedfs:volume".to_owned(), hex(volume_id)),
        ("sealedfs:slot".to_owned(), id.to_string()),
    ]
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Slot {
    /// Makes slot `id` holding `ring`. Errors: a key file too short, KMS
    /// refusing, or invalid KDF costs.
    pub fn create(
        new: NewSlot,
        ring: &KeyRing,
        id: u32,
        volume_id: &[u8; 16],
        created_unix: u64,
    ) -> Result<Slot, String> {
        let cipher = ring.cipher();
        let private = PrivateKey::generate(&ECDH_P256).map_err(|_| "cannot make a key pair")?;
        let public = public_bytes(&private);
        let private_bytes = private_bytes(&private);
        let mut salt = [0u8; SALT_LEN];
        OsRng.fill_bytes(&mut salt);
        let (kind, kek) = match new {
            NewSlot::Passphrase { secret, kdf } => {
                let kek = kdf.derive_kek(secret, &salt).map_err(|e| e.to_string())?;
                (SlotKind::Passphrase { kdf, salt }, Some(kek))
            }
            NewSlot::KeyFile(bytes) => {
                if bytes.len() < MIN_KEY_FILE_LEN {
                    return Err(format!(
                        "a key file must hold at least {MIN_KEY_FILE_LEN} random bytes \
                         (head -c 32 /dev/urandom > FILE); this one has {}",
                        bytes.len()
                    ));
                }
                (SlotKind::KeyFile { salt }, Some(key_file_kek(bytes, &salt)))
            }
            NewSlot::Kms { key_id, .. } if key_id.is_empty() || key_id.len() > MAX_KMS_KEY_ID => {
                return Err(format!("KMS key id of {} B", key_id.len()));
            }
            NewSlot::Kms { key_id, wrap } => {
                let blob = wrap(&private_bytes[..])?;
                let kind = SlotKind::Kms {
                    key_id: key_id.to_owned(),
                };
                let mut slot = Slot {
                    id,
                    created_unix,
                    kind,
                    wrapped: blob,
                    public,
                    sealed_ring: Vec::new(),
                };
                slot.seal_ring(ring, volume_id);
                slot.validate().map_err(|e| e.to_string())?;
                return Ok(slot);
            }
        };
        let mut slot = Slot {
            id,
            created_unix,
            kind,
            wrapped: Vec::with_capacity(WRAPPED_PRIVATE_LEN),
            public,
            sealed_ring: Vec::new(),
        };
        let ad = slot.wrap_ad(volume_id, cipher);
        let kek = kek.expect("set for passphrase and key-file slots");
        seal_raw(cipher, &kek, &ad, &private_bytes[..], &mut slot.wrapped);
        slot.seal_ring(ring, volume_id);
        Ok(slot)
    }

    /// A v1 keyslot carried over into a v2 header as slot `id`.
    pub fn from_v1(old: Keyslot, id: u32, created_unix: u64) -> Slot {
        Slot {
            id,
            created_unix,
            kind: SlotKind::V1 {
                kdf: old.kdf,
                salt: old.salt,
            },
            wrapped: old.wrapped,
            public: Vec::new(),
            sealed_ring: Vec::new(),
        }
    }

    /// Seals `ring` to this slot's public key, replacing the sealed ring
    /// (rotation: needs no secret). No-op error for V1 slots.
    pub fn seal_ring(&mut self, ring: &KeyRing, volume_id: &[u8; 16]) -> bool {
        if matches!(self.kind, SlotKind::V1 { .. }) {
            return false;
        }
        let eph = PrivateKey::generate(&ECDH_P256).expect("P-256 key generation");
        let eph_public = public_bytes(&eph);
        let key = self.ring_key(&eph, &eph_public, volume_id);
        let ad = self.ring_ad(volume_id, ring.cipher(), &eph_public);
        let mut out = eph_public;
        seal_raw(ring.cipher(), &key, &ad, &ring.encode(), &mut out);
        self.sealed_ring = out;
        true
    }

    /// Shape checks that need no secret: lengths, KDF ranges, key id.
    pub fn validate(&self) -> Result<(), CryptoError> {
        let bad = |why: String| {
            Err(CryptoError::Malformed(format!(
                "keyslot {}: {why}",
                self.id
            )))
        };
        if let Some(kdf) = self.kind.kdf() {
            if let Err(CryptoError::Malformed(m)) = kdf.validate() {
                return bad(m);
            }
        }
        let (wrapped_ok, has_pair) = match &self.kind {
            SlotKind::V1 { .. } => (self.wrapped.len() == KEY_LEN + SEAL_OVERHEAD, false),
            SlotKind::Passphrase { .. } | SlotKind::KeyFile { .. } => {
                (self.wrapped.len() == WRAPPED_PRIVATE_LEN, true)
            }
            SlotKind::Kms { key_id } => {
                if key_id.is_empty() || key_id.len() > MAX_KMS_KEY_ID {
                    return bad(format!("KMS key id of {} B", key_id.len()));
                }
                ((1..=MAX_KMS_BLOB).contains(&self.wrapped.len()), true)
            }
        };
        if !wrapped_ok {
            return bad(format!("wrapped key of {} B", self.wrapped.len()));
        }
        if has_pair {
            let ring_len = self
                .sealed_ring
                .len()
                .saturating_sub(PUBLIC_LEN + SEAL_OVERHEAD);
            let ring_ok = self.sealed_ring.len() > PUBLIC_LEN + SEAL_OVERHEAD
                && ring_len % ENTRY_LEN == 0
                && ring_len / ENTRY_LEN <= MAX_EPOCHS;
            if self.public.len() != PUBLIC_LEN || !ring_ok {
                return bad(format!(
                    "public key of {} B, sealed ring of {} B",
                    self.public.len(),
                    self.sealed_ring.len()
                ));
            }
        } else if !self.public.is_empty() || !self.sealed_ring.is_empty() {
            return bad("a v1 slot with a key pair".into());
        }
        Ok(())
    }

    /// The KDF work opening this slot costs, in reference ms (0: none).
    pub fn cost_ms(&self) -> u64 {
        self.kind.kdf().map_or(0, |k| k.cost_ms())
    }

    /// Opens the slot with a passphrase or key file. A slot of another kind
    /// (KMS, or a key-file slot given a passphrase) is `WrongKey`.
    pub fn unlock(
        &self,
        secret: SlotSecret,
        volume_id: &[u8; 16],
        cipher: Cipher,
        current: u32,
    ) -> Result<KeyRing, CryptoError> {
        self.validate()?;
        let (bytes, salt, kdf) = match (&self.kind, secret) {
            (SlotKind::V1 { kdf, salt }, SlotSecret::Passphrase(b) | SlotSecret::KeyFile(b)) => {
                let old = Keyslot {
                    kdf: kdf.clone(),
                    salt: *salt,
                    wrapped: self.wrapped.clone(),
                };
                let master = old.unlock(b, volume_id)?.with_cipher(cipher);
                return Ok(KeyRing::single(0, master));
            }
            (
                SlotKind::Passphrase { kdf, salt },
                SlotSecret::Passphrase(b) | SlotSecret::KeyFile(b),
            ) => (b, salt, Some(kdf)),
            (SlotKind::KeyFile { salt }, SlotSecret::KeyFile(b)) => (b, salt, None),
            _ => return Err(CryptoError::WrongKey),
        };
        let kek = match kdf {
            Some(kdf) => kdf.derive_kek(bytes, salt)?,
            None => key_file_kek(bytes, salt),
        };
        let ad = self.wrap_ad(volume_id, cipher);
        let mut private = Zeroizing::new(Vec::with_capacity(KEY_LEN));
        open_raw(cipher, &kek, &ad, &self.wrapped, &mut private).map_err(|f| match f {
            OpenFailure::Authentication => CryptoError::WrongKey,
            other => CryptoError::Malformed(format!("keyslot {}: {other:?}", self.id)),
        })?;
        self.open_ring(&private, volume_id, cipher, current)
    }

    /// Opens the ring with the private key a KMS call returned.
    pub fn unlock_with_private(
        &self,
        private: &[u8],
        volume_id: &[u8; 16],
        cipher: Cipher,
        current: u32,
    ) -> Result<KeyRing, CryptoError> {
        self.validate()?;
        self.open_ring(private, volume_id, cipher, current)
    }

    fn open_ring(
        &self,
        private: &[u8],
        volume_id: &[u8; 16],
        cipher: Cipher,
        current: u32,
    ) -> Result<KeyRing, CryptoError> {
        let damaged = |why: &str| CryptoError::Malformed(format!("keyslot {}: {why}", self.id));
        let private = PrivateKey::from_private_key(&ECDH_P256, private)
            .map_err(|_| damaged("the unwrapped private key is not a P-256 key"))?;
        if public_bytes(&private) != self.public {
            return Err(damaged("the private key does not match the public key"));
        }
        let (eph_public, sealed) = self.sealed_ring.split_at(PUBLIC_LEN);
        let key = self.ring_key(&private, eph_public, volume_id);
        let ad = self.ring_ad(volume_id, cipher, eph_public);
        let mut plain = Zeroizing::new(Vec::new());
        open_raw(cipher, &key, &ad, sealed, &mut plain)
            .map_err(|_| damaged("its sealed key ring does not open"))?;
        KeyRing::decode(&plain, current, cipher)
    }

    /// HKDF-SHA256(ECDH(mine, theirs), salt = volume id, info = label ‖
    /// eph public ‖ slot public) → 32 B, used for one ring only.
    fn ring_key(
        &self,
        mine: &PrivateKey,
        eph_public: &[u8],
        vid: &[u8; 16],
    ) -> Zeroizing<[u8; 32]> {
        // Whichever side we are, the peer is the other public key.
        let peer: &[u8] = if public_bytes(mine) == eph_public {
            &self.public
        } else {
            eph_public
        };
        let mut key = Zeroizing::new([0u8; 32]);
        agree(
            mine,
            UnparsedPublicKey::new(&ECDH_P256, peer),
            (),
            |shared| {
                let mut info = RING_INFO.to_vec();
                info.extend_from_slice(eph_public);
                info.extend_from_slice(&self.public);
                Hkdf::<Sha256>::new(Some(vid), shared)
                    .expand(&info, key.as_mut())
                    .map_err(|_| ())
            },
        )
        .unwrap_or_else(|()| key.fill(0));
        key
    }

    /// "SFK2" ‖ volume id ‖ cipher id ‖ slot id (u32 LE) ‖ public key ‖
    /// postcard(kind).
    fn wrap_ad(&self, volume_id: &[u8; 16], cipher: Cipher) -> Vec<u8> {
        let mut ad = WRAP_AD_MAGIC.to_vec();
        ad.extend_from_slice(volume_id);
        ad.push(cipher.id());
        ad.extend_from_slice(&self.id.to_le_bytes());
        ad.extend_from_slice(&self.public);
        ad.extend(postcard::to_allocvec(&self.kind).expect("serializing into a Vec"));
        ad
    }

    /// "SFR2" ‖ volume id ‖ cipher id ‖ slot id ‖ slot public ‖ eph public.
    fn ring_ad(&self, volume_id: &[u8; 16], cipher: Cipher, eph_public: &[u8]) -> Vec<u8> {
        let mut ad = RING_AD_MAGIC.to_vec();
        ad.extend_from_slice(volume_id);
        ad.push(cipher.id());
        ad.extend_from_slice(&self.id.to_le_bytes());
        ad.extend_from_slice(&self.public);
        ad.extend_from_slice(eph_public);
        ad
    }
}

fn key_file_kek(bytes: &[u8], salt: &[u8; SALT_LEN]) -> Zeroizing<[u8; KEY_LEN]> {
    let mut kek = Zeroizing::new([0u8; KEY_LEN]);
    Hkdf::<Sha256>::new(Some(salt), bytes)
        .expand(KEY_FILE_INFO, kek.as_mut())
        .expect("32 B is far below HKDF-SHA256's limit");
    kek
}

fn public_bytes(private: &PrivateKey) -> Vec<u8> {
    let public = private.compute_public_key().expect("P-256 public key");
    let bin: EcPublicKeyUncompressedBin = public.as_be_bytes().expect("uncompressed point");
    bin.as_ref().to_vec()
}

fn private_bytes(private: &PrivateKey) -> Zeroizing<Vec<u8>> {
    let bin: aws_lc_rs::encoding::EcPrivateKeyBin = private.as_be_bytes().expect("P-256 scalar");
    Zeroizing::new(bin.as_ref().to_vec())
}
