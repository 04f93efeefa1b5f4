//! Format-v1 keyslots: the master key wrapped under a passphrase with
//! Argon2id and XChaCha20-Poly1305. Volumes made before format v2 hold
//! these; v2 headers carry them over unchanged as `SlotKind::V1` (see
//! [`super::slot`]), so an upgrade never needs the passphrases.
//!
//! ```text
//! KEK     = Argon2id v0x13(passphrase, salt (16 B), m_cost_kib, t_cost, p_cost) → 32 B
//! wrapped = XChaCha20-Poly1305(KEK, AD = keyslot AD, master key) → 24 + 32 + 16 = 72 B
//! ```
//!
//! Rules:
//! - The KEK lives in a `Zeroizing` buffer and is wiped when `create` or
//!   `unlock` returns; so is the unwrapped master key buffer.
//! - The AD binds the volume id, the KDF parameters and the salt, so a
//!   keyslot copied to another volume, or one whose parameters were lowered
//!   to speed up guessing, fails to unwrap instead of working.
//! - Parameters are checked *before* running Argon2id: a hostile header must
//!   not make `unlock` allocate 1 TiB or spin for an hour. Out-of-range
//!   values are [`CryptoError::Malformed`], not [`CryptoError::WrongKey`].
//! - A failed unwrap is [`CryptoError::WrongKey`]: with a wrong passphrase
//!   and a tampered keyslot being indistinguishable, we say the likely one.
//!
//! Keyslot AD (48 B, integers little-endian):
//!
//! | offset | size | field            |
//! |--------|------|------------------|
//! | 0      | 4    | `"SFSK"`         |
//! | 4      | 16   | volume id        |
//! | 20     | 4    | m_cost_kib (u32) |
//! | 24     | 4    | t_cost (u32)     |
//! | 28     | 4    | p_cost (u32)     |
//! | 32     | 16   | salt             |

use rand::RngCore;
use rand::rngs::OsRng;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::CryptoError;
pub use super::kdf::{KdfParams, MAX_M_COST_KIB, MAX_P_COST, MAX_T_COST, SALT_LEN};
use super::keys::{KEY_LEN, MasterKey};
use super::seal::{OpenFailure, SEAL_OVERHEAD, open_raw, seal_raw};
use super::suite::Cipher;

/// Wrapped master key: 24 B nonce ‖ 32 B ciphertext ‖ 16 B tag = 72 B.
pub const WRAPPED_LEN: usize = KEY_LEN + SEAL_OVERHEAD;

/// Domain-separation tag of the keyslot AD (distinct from units' `"SFS1"`).
const KEYSLOT_AD_MAGIC: &[u8; 4] = b"SFSK";

/// One passphrase's wrapping of the master key. Nothing in it is secret;
/// it is stored in the clear in the volume header.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Keyslot {
    /// Argon2id costs used to derive this slot's KEK.
    pub kdf: KdfParams,
    /// Argon2id salt, random per slot.
    pub salt: [u8; SALT_LEN],
    /// nonce ‖ sealed master key ‖ tag, exactly [`WRAPPED_LEN`] (72) bytes.
    pub wrapped: Vec<u8>,
}

impl Keyslot {
    /// Wraps `master` under `passphrase` for volume `volume_id`.
    ///
    /// # Panics
    /// If `kdf` fails [`KdfParams::validate`]; callers taking parameters
    /// from users validate first (as `VolumeHeader::new` does).
    pub fn create(
        master: &MasterKey,
        passphrase: &[u8],
        kdf: KdfParams,
        volume_id: &[u8; 16],
    ) -> Keyslot {
        let mut salt = [0u8; SALT_LEN];
        OsRng.fill_bytes(&mut salt);
        let kek = kdf
            .derive_kek(passphrase, &salt)
            .unwrap_or_else(|e| panic!("Keyslot::create with invalid parameters: {e}"));
        let mut wrapped = Vec::with_capacity(WRAPPED_LEN);
        seal_raw(
            Cipher::XChaCha20Poly1305,
            &kek,
            &keyslot_ad(volume_id, &kdf, &salt),
            master.as_bytes(),
            &mut wrapped,
        );
        Keyslot { kdf, salt, wrapped }
    }

    /// Checks the shape without running the KDF: parameters in range and a
    /// 72-byte wrapped key. Used by the volume header decoder.
    pub fn validate(&self) -> Result<(), CryptoError> {
        self.kdf.validate()?;
        if self.wrapped.len() != WRAPPED_LEN {
            return Err(CryptoError::Malformed(format!(
                "wrapped key is {} B, expected {WRAPPED_LEN} B",
                self.wrapped.len()
            )));
        }
        Ok(())
    }

    /// Unwraps the master key. Wrong passphrase, wrong volume or a tampered
    /// slot → [`CryptoError::WrongKey`]; bad shape → `Malformed`.
    pub fn unlock(
        &self,
        passphrase: &[u8],
        volume_id: &[u8; 16],
    ) -> Result<MasterKey, CryptoError> {
        self.validate()?;
        let kek = self.kdf.derive_kek(passphrase, &self.salt)?;
        let ad = keyslot_ad(volume_id, &self.kdf, &self.salt);
        let mut plain_key = Zeroizing::new(Vec::with_capacity(KEY_LEN));
        open_raw(
            Cipher::XChaCha20Poly1305,
            &kek,
            &ad,
            &self.wrapped,
            &mut plain_key,
        )
        .map_err(|failure| match failure {
            OpenFailure::Authentication => CryptoError::WrongKey,
            OpenFailure::TooShort => CryptoError::Malformed("wrapped key too short".into()),
            OpenFailure::ZeroNonce => {
                CryptoError::Malformed("wrapped key has an all-zero nonce".into())
            }
        })?;
        Ok(MasterKey::from_slice(&plain_key, Cipher::XChaCha20Poly1305)
            .expect("72 B wrapped → 32 B key"))
    }
}

/// The 48-byte keyslot AD documented in the module notes.
fn keyslot_ad(volume_id: &[u8; 16], kdf: &KdfParams, salt: &[u8; SALT_LEN]) -> [u8; 48] {
    let mut ad = [0u8; 48];
    ad[0..4].copy_from_slice(KEYSLOT_AD_MAGIC);
    ad[4..20].copy_from_slice(volume_id);
    ad[20..24].copy_from_slice(&kdf.m_cost_kib.to_le_bytes());
    ad[24..28].copy_from_slice(&kdf.t_cost.to_le_bytes());
    ad[28..32].copy_from_slice(&kdf.p_cost.to_le_bytes());
    ad[32..48].copy_from_slice(salt);
    ad
}

#[cfg(test)]
mod tests {
    use super::*;

    const VOL: [u8; 16] = [0x11; 16];

    fn slot() -> (MasterKey, Keyslot) {
        let master = MasterKey::generate();
        let slot = Keyslot::create(&master, b"correct horse", KdfParams::insecure_fast(), &VOL);
        (master, slot)
    }

    #[test]
    fn round_trip() {
        let (master, slot) = slot();
        assert_eq!(slot.wrapped.len(), WRAPPED_LEN);
        let opened = slot.unlock(b"correct horse", &VOL).unwrap();
        assert_eq!(opened.as_bytes(), master.as_bytes());
    }

    #[test]
    fn wrong_passphrase_or_volume_is_wrong_key() {
        let (_, slot) = slot();
        assert_eq!(
            slot.unlock(b"correct horsf", &VOL).unwrap_err(),
            CryptoError::WrongKey
        );
        assert_eq!(slot.unlock(b"", &VOL).unwrap_err(), CryptoError::WrongKey);
        assert_eq!(
            slot.unlock(b"correct horse", &[0x12; 16]).unwrap_err(),
            CryptoError::WrongKey
        );
    }

    #[test]
    fn tampered_slot_is_wrong_key() {
        let (_, slot) = slot();
        let mut lowered = slot.clone();
        lowered.kdf.m_cost_kib = 128; // a cheaper KDF must not still unwrap
        let mut salted = slot.clone();
        salted.salt[0] ^= 1;
        let mut flipped = slot.clone();
        flipped.wrapped[40] ^= 1;
        for bad in [lowered, salted, flipped] {
            assert_eq!(
                bad.unlock(b"correct horse", &VOL).unwrap_err(),
                CryptoError::WrongKey
            );
        }
    }

    #[test]
    fn bad_shape_is_malformed() {
        let (_, slot) = slot();
        let mut short = slot.clone();
        short.wrapped.pop();
        assert!(
            matches!(short.unlock(b"correct horse", &VOL), Err(CryptoError::Malformed(m)) if m.contains("71 B"))
        );
        let mut zero_nonce = slot.clone();
        zero_nonce.wrapped[..24].fill(0);
        assert!(matches!(
            zero_nonce.unlock(b"correct horse", &VOL),
            Err(CryptoError::Malformed(_))
        ));
    }

    #[test]
    fn absurd_kdf_params_are_refused_before_running() {
        let bad = [
            (MAX_M_COST_KIB + 1, 1, 1, "m_cost"),
            (u32::MAX, 1, 1, "m_cost"),
            (7, 1, 1, "m_cost"),
            (256, 0, 1, "t_cost"),
            (256, MAX_T_COST + 1, 1, "t_cost"),
            (256, 1, 0, "p_cost"),
            (256, 1, MAX_P_COST + 1, "p_cost"),
            (8 * 4 - 1, 1, 4, "m_cost"),
        ];
        let (_, slot) = slot();
        for (m, t, p, what) in bad {
            let kdf = KdfParams {
                m_cost_kib: m,
                t_cost: t,
                p_cost: p,
            };
            let err = kdf.validate().unwrap_err();
            assert!(
                matches!(&err, CryptoError::Malformed(msg) if msg.contains(what)),
                "{kdf:?}: {err}"
            );
            let mut s = slot.clone();
            s.kdf = kdf;
            assert!(matches!(
                s.unlock(b"correct horse", &VOL),
                Err(CryptoError::Malformed(_))
            ));
        }
        assert!(
            KdfParams {
                m_cost_kib: MAX_M_COST_KIB,
                t_cost: MAX_T_COST,
                p_cost: MAX_P_COST
            }
            .validate()
            .is_ok()
        );
    }

    #[test]
    fn ad_layout() {
        let kdf = KdfParams {
            m_cost_kib: 0x0102_0304,
            t_cost: 5,
            p_cost: 6,
        };
        let ad = keyslot_ad(&[0xaa; 16], &kdf, &[0xbb; 16]);
        assert_eq!(&ad[..4], b"SFSK");
        assert_eq!(&ad[4..20], &[0xaa; 16]);
        assert_eq!(&ad[20..32], &[4, 3, 2, 1, 5, 0, 0, 0, 6, 0, 0, 0]);
        assert_eq!(&ad[32..], &[0xbb; 16]);
    }

    /// Postcard size of a keyslot with default costs: 3 B (m = 65536 as a
    /// varint) + 1 (t) + 1 (p) + 16 (salt) + 1 (length 72) + 72 = 94 B.
    #[test]
    fn serialized_size() {
        let master = MasterKey::from_bytes([9; 32]);
        let slot = Keyslot::create(&master, b"pw", KdfParams::insecure_fast(), &VOL);
        let slot = Keyslot {
            kdf: KdfParams {
                m_cost_kib: 65536,
                t_cost: 3,
                p_cost: 1,
            },
            ..slot
        };
        assert_eq!(postcard::to_allocvec(&slot).unwrap().len(), 94);
    }
}
