//! Cipher suites: which AEAD seals a volume's units and which KDF new
//! passphrase keyslots use.
//!
//! | suite | unit AEAD | passphrase KDF | for |
//! |---|---|---|---|
//! | default | XChaCha20-Poly1305, random 192-bit nonce | Argon2id | everyone else |
//! | FIPS | AES-256-GCM under a per-unit HKDF-SHA256 key ([`super::gcm`]) | PBKDF2-HMAC-SHA256 | auditors who ask for FIPS 140-approved algorithms |
//!
//! The cipher is a property of the volume (chosen at `init`, stored in
//! the header and covered by its MAC and by every keyslot's associated
//! data, so it cannot be downgraded); the KDF is a property of each
//! keyslot. Both suites have the same unit layout and overhead: 24 B ‖
//! ciphertext ‖ 16 B tag, so nothing outside `crypto` knows which one a
//! volume uses. The cipher travels with the keys ([`super::MasterKey`],
//! [`super::SubKey`]); every seal and open dispatches on it here.

use serde::{Deserialize, Serialize};

/// The AEAD a volume seals with. Stored in the header as a varint:
/// 0 = XChaCha20-Poly1305, 1 = AES-256-GCM. The order is format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Cipher {
    /// XChaCha20-Poly1305 with a random 24-byte nonce (the default).
    #[default]
    XChaCha20Poly1305,
    /// AES-256-GCM with a per-unit key and nonce from HKDF-SHA256 over a
    /// random 24-byte salt (FIPS-approved algorithms).
    Aes256Gcm,
}

impl Cipher {
    /// Every cipher, in the order of their format ids.
    pub const ALL: [Cipher; 2] = [Cipher::XChaCha20Poly1305, Cipher::Aes256Gcm];

    /// The name on the command line and in `key list`.
    pub fn name(self) -> &'static str {
        match self {
            Cipher::XChaCha20Poly1305 => "xchacha20-poly1305",
            Cipher::Aes256Gcm => "aes-256-gcm",
        }
    }

    /// The format id (the header's varint, and one byte of keyslot AD).
    pub fn id(self) -> u8 {
        match self {
            Cipher::XChaCha20Poly1305 => 0,
            Cipher::Aes256Gcm => 1,
        }
    }

    /// Parses a [`Cipher::name`]; the error lists the accepted names.
    pub fn parse(s: &str) -> Result<Cipher, String> {
        Cipher::ALL
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                format!("unknown cipher {s:?}: expected xchacha20-poly1305 or aes-256-gcm")
            })
    }

    /// Whether both the AEAD and its key derivation are FIPS 140-approved
    /// algorithms (not a claim about a validated module; SECURITY.md).
    pub fn fips_approved(self) -> bool {
        matches!(self, Cipher::Aes256Gcm)
    }
}

impl std::fmt::Display for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ids_round_trip() {
        for c in Cipher::ALL {
            assert_eq!(Cipher::parse(c.name()), Ok(c));
            assert_eq!(Cipher::ALL[usize::from(c.id())], c);
        }
        assert_eq!(Cipher::parse("AES-256-GCM"), Ok(Cipher::Aes256Gcm));
        assert!(
            Cipher::parse("aes-128-gcm")
                .unwrap_err()
                .contains("expected")
        );
        assert_eq!(Cipher::default(), Cipher::XChaCha20Poly1305);
    }

    /// The header stores the cipher as postcard's varint discriminant.
    #[test]
    fn postcard_ids_are_the_format_ids() {
        for c in Cipher::ALL {
            assert_eq!(postcard::to_allocvec(&c).unwrap(), vec![c.id()]);
        }
        assert!(postcard::from_bytes::<Cipher>(&[2]).is_err());
    }
}
