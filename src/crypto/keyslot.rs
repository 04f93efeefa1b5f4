//! Keyslots: the master key wrapped under a passphrase.
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

use argon2::{Algorithm, Argon2, Params, Version};
use rand::RngCore;
use rand::rngs::OsRng;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use super::CryptoError;
use super::keys::{KEY_LEN, MasterKey};
use super::seal::{OpenFailure, SEAL_OVERHEAD, open_raw, seal_raw};

/// Argon2id salt length: 16 B, random per keyslot.
pub const SALT_LEN: usize = 16;
/// Wrapped master key: 24 B nonce ‖ 32 B ciphertext ‖ 16 B tag = 72 B.
pub const WRAPPED_LEN: usize = KEY_LEN + SEAL_OVERHEAD;
/// Largest accepted Argon2 memory: 4 GiB, in KiB.
pub const MAX_M_COST_KIB: u32 = 4 * 1024 * 1024;
/// Largest accepted Argon2 pass count.
pub const MAX_T_COST: u32 = 100;
/// Largest accepted Argon2 parallelism (lanes).
pub const MAX_P_COST: u32 = 16;

/// Domain-separation tag of the keyslot AD (distinct from units' `"SFS1"`).
const KEYSLOT_AD_MAGIC: &[u8; 4] = b"SFSK";

/// Argon2id cost parameters, stored in each keyslot.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB (65536 = 64 MiB).
    pub m_cost_kib: u32,
    /// Passes over the memory.
    pub t_cost: u32,
    /// Lanes (parallelism).
    pub p_cost: u32,
}

impl Default for KdfParams {
    /// The production setting: 64 MiB, 3 passes, 1 lane (RFC 9106's second
    /// recommended option), ≈0.1–0.5 s per unlock.
    fn default() -> Self {
        KdfParams {
            m_cost_kib: 64 * 1024,
            t_cost: 3,
            p_cost: 1,
        }
    }
}

impl KdfParams {
    /// 256 KiB, 1 pass: fast and weak. For tests only.
    pub fn insecure_fast() -> Self {
        KdfParams {
            m_cost_kib: 256,
            t_cost: 1,
            p_cost: 1,
        }
    }

    /// Accepts 1 ≤ p ≤ 16, 1 ≤ t ≤ 100, 8·p KiB ≤ m ≤ 4 GiB; names the
    /// offending value otherwise.
    pub fn validate(&self) -> Result<(), CryptoError> {
        let KdfParams {
            m_cost_kib: m,
            t_cost: t,
            p_cost: p,
        } = *self;
        if !(1..=MAX_P_COST).contains(&p) {
            return Err(CryptoError::Malformed(format!(
                "KDF p_cost {p} outside 1..={MAX_P_COST}"
            )));
        }
        if !(1..=MAX_T_COST).contains(&t) {
            return Err(CryptoError::Malformed(format!(
                "KDF t_cost {t} outside 1..={MAX_T_COST}"
            )));
        }
        if !(8 * p..=MAX_M_COST_KIB).contains(&m) {
            return Err(CryptoError::Malformed(format!(
                "KDF m_cost {m} KiB outside {}..={MAX_M_COST_KIB} KiB",
                8 * p
            )));
        }
        Ok(())
    }

    /// Runs Argon2id and returns the 32-byte KEK in a wiping buffer.
    fn derive_kek(
        &self,
        passphrase: &[u8],
        salt: &[u8; SALT_LEN],
    ) -> Result<Zeroizing<[u8; KEY_LEN]>, CryptoError> {
        self.validate()?;
        let params = Params::new(self.m_cost_kib, self.t_cost, self.p_cost, Some(KEY_LEN))
            .map_err(|e| CryptoError::Malformed(format!("KDF parameters: {e}")))?;
        let mut kek = Zeroizing::new([0u8; KEY_LEN]);
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password_into(passphrase, salt, kek.as_mut())
            .map_err(|e| CryptoError::Malformed(format!("Argon2id: {e}")))?;
        Ok(kek)
    }
}

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
        open_raw(&kek, &ad, &self.wrapped, &mut plain_key).map_err(|failure| match failure {
            OpenFailure::Authentication => CryptoError::WrongKey,
            OpenFailure::TooShort => CryptoError::Malformed("wrapped key too short".into()),
            OpenFailure::ZeroNonce => {
                CryptoError::Malformed("wrapped key has an all-zero nonce".into())
            }
        })?;
        let mut bytes: [u8; KEY_LEN] = plain_key
            .as_slice()
            .try_into()
            .expect("72 B wrapped → 32 B key");
        let master = MasterKey::from_bytes(bytes);
        bytes.zeroize();
        Ok(master)
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

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn slot() -> (MasterKey, Keyslot) {
        let master = MasterKey::generate();
        let slot = Keyslot::create(&master, b"correct horse", KdfParams::insecure_fast(), &VOL);
        (master, slot)
    }

    /// Argon2id outputs cross-checked with Python `cryptography`'s Argon2id
    /// (an independent implementation, OpenSSL-backed).
    #[test]
    fn argon2id_known_answers() {
        let kek = KdfParams::insecure_fast()
            .derive_kek(b"correct horse", &[1; 16])
            .unwrap();
        assert_eq!(
            hex(kek.as_ref()),
            "fafcc907b4ead90f79396c79f5b19587c02e524f76877f4b4e7d5ea3acb91dbc"
        );
        let kek = KdfParams::default()
            .derive_kek(b"correct horse", &[1; 16])
            .unwrap();
        assert_eq!(
            hex(kek.as_ref()),
            "dcc3ec3ce0901fcc6f65123e4abe2793a4638f8c4688d557fac29554b038ced3"
        );
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
    fn default_params_are_strong_and_fast_ones_valid() {
        assert_eq!(
            KdfParams::default(),
            KdfParams {
                m_cost_kib: 65536,
                t_cost: 3,
                p_cost: 1
            }
        );
        KdfParams::default().validate().unwrap();
        KdfParams::insecure_fast().validate().unwrap();
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
            kdf: KdfParams::default(),
            ..slot
        };
        assert_eq!(postcard::to_allocvec(&slot).unwrap().len(), 94);
    }
}
