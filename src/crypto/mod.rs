//! Keys and sealing: everything that turns plaintext into ciphertext and back.
//!
//! This module knows nothing about files, inodes, FUSE or the store; callers
//! hand it bytes plus the place those bytes will live, and get bytes back.
//!
//! # Key hierarchy
//!
//! ```text
//! passphrase ──Argon2id / PBKDF2──► KEK ──┐  key file ──HKDF──► KEK ──┐  KMS Decrypt ──┐
//!                                          ▼                           ▼                 ▼
//!                      keyslot private key (P-256) ──ECDH + HKDF──► key ring ([`ring`])
//!                                           │ the current epoch's entry
//!                                           ▼
//!                                  master key (32 B, never stored in the clear)
//!                                           │ HKDF-SHA256(salt = volume id,
//!                                           │             info = "sealedfs v1 <purpose>")
//!         ┌──────────────┬──────────────┬───┴──────────┬──────────────┐
//!       data           meta           audit          lease         header
//!   (segments,     (journal,       (audit trail)  (lease object)  (HMAC over the
//!    packs)         checkpoints,                                   volume header's
//!                   snapshots)                                     fixed fields)
//! ```
//!
//! Rules:
//! - A [`slot::Slot`] (format v2) holds the key ring sealed to its own
//!   P-256 key, whose private half a passphrase, key file or KMS key wraps;
//!   a [`keyslot::Keyslot`] is a format-v1 slot (one passphrase, one key).
//!   Changing a passphrase rewrites one slot only; a rotation re-seals the
//!   ring to every slot's public key without any secret.
//! - [`Cipher`] is the volume's AEAD (XChaCha20-Poly1305, or AES-256-GCM in
//!   [`gcm`] for the FIPS suite); keys carry it and every seal and open
//!   dispatches on it here, so nothing outside `crypto` picks an algorithm.
//! - Each purpose has its own [`keys::SubKey`]; a key is never used for two
//!   purposes, so a journal segment can never be opened as a data segment
//!   even if every other field of the associated data matched.
//! - Key material lives in types that zeroize on drop and whose `Debug`
//!   prints `<redacted>`. There is no `Clone` on [`keys::MasterKey`].
//! - Epoch 0 keys use exactly the labels above. A future key rotation adds
//!   the epoch to the HKDF info; every sealed unit already carries its epoch
//!   in the associated data, so old units keep opening with old keys.
//!
//! # Nonce policy
//!
//! (AES-256-GCM: a fresh random 24-byte salt per unit from which the unit's
//! own key and nonce are derived; see [`gcm`].) XChaCha20-Poly1305 with a
//! fresh random 24-byte nonce from the OS RNG for
//! every sealed unit, stored in front of the ciphertext. With 192 random
//! bits a collision is negligible (≈2^-97 after 2^48 units under one key),
//! so there is no counter to persist, no state to lose in a crash, and two
//! writers that both think they hold the lease still never reuse a nonce.
//! An all-zero nonce is never produced and is rejected on open: it is what
//! a zero-filled (torn, sparse) region looks like, not a real unit.
//!
//! # What the associated data binds, and why
//!
//! [`seal::UnitAd`] binds each sealed unit to its place: volume id, the
//! object's name relative to the volume (not the bucket, prefix or local
//! path, so a replica in another bucket still opens), the unit's index in
//! that object, the key epoch and a last-unit flag. Consequences:
//! - copying a unit into another volume or another object → fails;
//! - swapping or reordering units inside an object → fails (unit index);
//! - truncating an object at a unit boundary → the new last unit was sealed
//!   with `last = false` and fails;
//! - opening a unit with another epoch's key → fails instead of giving noise.
//!
//! A failure is always an error ([`CryptoError::Authentication`] naming the
//! object and unit), never wrong bytes. Upper layers map it to `EIO`.

mod gcm;
pub mod kdf;
pub mod keys;
pub mod keyslot;
pub mod ring;
pub mod seal;
pub mod slot;
pub mod suite;

pub use kdf::{Kdf, KdfParams};
pub use keys::{Keys, MasterKey, SubKey, content_digest, sha256};
pub use keyslot::Keyslot;
pub use ring::KeyRing;
pub use seal::{NONCE_LEN, SEAL_OVERHEAD, TAG_LEN, UnitAd, open, open_into, seal, seal_into};
pub use slot::{NewSlot, Slot, SlotKind, SlotSecret};
pub use suite::Cipher;

/// Errors of the crypto layer. Messages carry the object and unit, never key
/// bytes or plaintext.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum CryptoError {
    /// No keyslot opens with this passphrase (or the key does not fit this
    /// volume). CLI exit code 2.
    #[error("wrong passphrase or key")]
    WrongKey,
    /// A sealed unit failed authentication: tampered, truncated, moved, or
    /// sealed under another key. Never return its bytes. CLI exit code 5,
    /// `EIO` at the filesystem.
    #[error("unit {unit} of object {object} failed authentication")]
    Authentication { object: String, unit: u64 },
    /// Bytes that cannot be a sealed unit or keyslot at all (too short,
    /// all-zero nonce, absurd KDF parameters). The string says what was
    /// rejected and where.
    #[error("malformed: {0}")]
    Malformed(String),
}
