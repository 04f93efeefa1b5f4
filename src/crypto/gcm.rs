//! AES-256-GCM for the FIPS suite, with a key and nonce of its own for
//! every sealed unit.
//!
//! GCM's 96-bit nonce is too short to draw at random for the number of
//! units a volume seals (NIST SP 800-38D caps random nonces at 2^32
//! messages per key), and a counter would have to be persisted and could
//! still repeat: a fenced writer and its successor can both seal journal
//! segment N with different contents, and a retried commit re-seals the
//! same name. So no nonce is ever chosen for a subkey. Instead:
//!
//! ```text
//! salt (24 B)        = fresh from the OS RNG for every unit, never all-zero
//! unit key ‖ nonce   = HKDF-SHA256(IKM = subkey, salt = salt,
//!                                  info = "sealedfs aes-256-gcm unit v1") → 32 B ‖ 12 B
//! sealed unit        = salt (24 B) ‖ AES-256-GCM(unit key, nonce, AD, plaintext) ‖ tag (16 B)
//! ```
//!
//! Every (key, nonce) pair therefore seals one unit, whatever the object
//! name, writer or retry; two units share a key only if two 192-bit random
//! salts collide (≈2^-97 after 2^48 units, the same bound as the default
//! suite's XChaCha20 nonces). The unit's place (volume, object, unit
//! index, epoch, last flag) is bound by the associated data exactly as in
//! the default suite. The layout and overhead (40 B) are those of the
//! default suite, so packs, journals and every size calculation are the
//! same for both. Cost: one HKDF (≈7 SHA-256 blocks) and one AES key
//! schedule per unit, small next to a 64 KiB chunk.
//!
//! Everything runs in aws-lc-rs (the library rustls already uses; it has a
//! FIPS-validated build). Its `open` checks the tag before returning
//! plaintext; on failure the output buffer is left as it was.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::hkdf::{HKDF_SHA256, KeyType, Salt};
use zeroize::{Zeroize, Zeroizing};

use super::seal::{NONCE_LEN, OpenFailure, TAG_LEN};

/// HKDF info of the per-unit derivation. Part of the format.
const UNIT_INFO: &[u8] = b"sealedfs aes-256-gcm unit v1";
/// AES-256 key (32 B) ‖ GCM nonce (12 B).
const OKM_LEN: usize = 32 + 12;

struct OkmLen;

impl KeyType for OkmLen {
    fn len(&self) -> usize {
        OKM_LEN
    }
}

/// The unit key and nonce for `salt` under `key`, in a wiping buffer.
fn unit_key(key: &[u8; 32], salt: &[u8; NONCE_LEN]) -> (LessSafeKey, Nonce) {
    let mut okm = Zeroizing::new([0u8; OKM_LEN]);
    Salt::new(HKDF_SHA256, salt)
        .extract(key)
        .expand(&[UNIT_INFO], OkmLen)
        .and_then(|o| o.fill(okm.as_mut()))
        .expect("44 B is far below HKDF-SHA256's limit");
    let unbound = UnboundKey::new(&AES_256_GCM, &okm[..32]).expect("a 32-byte AES-256 key");
    let nonce = Nonce::try_assume_unique_for_key(&okm[32..]).expect("a 12-byte nonce");
    (LessSafeKey::new(unbound), nonce)
}

/// Appends salt ‖ ciphertext ‖ tag to `out`; `salt` must be fresh.
pub(super) fn seal_with_salt(
    key: &[u8; 32],
    salt: &[u8; NONCE_LEN],
    ad: &[u8],
    plain: &[u8],
    out: &mut Vec<u8>,
) {
    let (unit, nonce) = unit_key(key, salt);
    let start = out.len();
    out.reserve(NONCE_LEN + plain.len() + TAG_LEN);
    out.extend_from_slice(salt);
    out.extend_from_slice(plain);
    match unit.seal_in_place_separate_tag(nonce, Aad::from(ad), &mut out[start + NONCE_LEN..]) {
        Ok(tag) => out.extend_from_slice(tag.as_ref()),
        Err(_) => {
            out[start..].zeroize();
            out.truncate(start);
            panic!(
                "plaintext of {} B exceeds the AES-256-GCM limit",
                plain.len()
            );
        }
    }
}

/// Opens salt ‖ ciphertext ‖ tag (the caller checked the length and the
/// salt), appending the plaintext to `out`.
pub(super) fn open(
    key: &[u8; 32],
    ad: &[u8],
    sealed: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), OpenFailure> {
    let salt: &[u8; NONCE_LEN] = sealed[..NONCE_LEN].try_into().expect("checked length");
    let (cipher_text, tag) = sealed[NONCE_LEN..].split_at(sealed.len() - NONCE_LEN - TAG_LEN);
    let (unit, nonce) = unit_key(key, salt);
    let start = out.len();
    out.extend_from_slice(cipher_text);
    let opened = unit.open_in_place_separate_tag(nonce, Aad::from(ad), tag, &mut out[start..]);
    if opened.is_err() {
        out[start..].zeroize();
        out.truncate(start);
        return Err(OpenFailure::Authentication);
    }
    Ok(())
}

/// Opens `buf` (the ciphertext) in place, given its salt and tag. On
/// failure `buf` is zeroed.
pub(super) fn open_in_place(
    key: &[u8; 32],
    salt: &[u8; NONCE_LEN],
    ad: &[u8],
    buf: &mut [u8],
    tag: &[u8; TAG_LEN],
) -> Result<(), OpenFailure> {
    let (unit, nonce) = unit_key(key, salt);
    if unit
        .open_in_place_separate_tag(nonce, Aad::from(ad), tag, buf)
        .is_err()
    {
        buf.zeroize();
        return Err(OpenFailure::Authentication);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// AES-256-GCM itself: NIST GCM test vector (gcmEncryptExtIV256,
    /// Count 0 of the 96-bit IV, 128-bit PT, 128-bit AAD set), through the
    /// same aws-lc-rs calls the unit code uses.
    #[test]
    fn aes_256_gcm_known_answer() {
        let key = unhex("92e11dcdaa866f5ce790fd24501f92509aacf4cb8b1339d50c9c1240935dd08b");
        let iv = unhex("ac93a1a6145299bde902f21a");
        let plain = unhex("2d71bcfa914e4ac045b2aa60955fad24");
        let aad = unhex("1e0889016f67601c8ebea4943bc23ad6");
        let want_ct = unhex("8995ae2e6df3dbf96fac7b7137bae67f");
        let want_tag = unhex("eca5aa77d51d4a0a14d9c51e1da474ab");
        let k = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key).unwrap());
        let mut buf = plain.clone();
        let nonce = Nonce::try_assume_unique_for_key(&iv).unwrap();
        let tag = k
            .seal_in_place_separate_tag(nonce, Aad::from(&aad[..]), &mut buf)
            .unwrap();
        assert_eq!(buf, want_ct);
        assert_eq!(tag.as_ref(), &want_tag[..]);
    }

    /// The per-unit derivation, pinned: key 0x42…, salt 0x01…, AD "ad",
    /// plaintext "sealedfs". A change here breaks every FIPS volume.
    #[test]
    fn unit_sealing_is_stable() {
        let mut out = Vec::new();
        seal_with_salt(&[0x42; 32], &[1; NONCE_LEN], b"ad", b"sealedfs", &mut out);
        assert_eq!(out.len(), NONCE_LEN + 8 + TAG_LEN);
        assert_eq!(&out[..NONCE_LEN], &[1; NONCE_LEN]);
        let hex: String = out[NONCE_LEN..]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(hex, GOLDEN_UNIT);
        let mut back = Vec::new();
        open(&[0x42; 32], b"ad", &out, &mut back).unwrap();
        assert_eq!(back, b"sealedfs");
    }

    /// Computed independently with Python `cryptography` (HKDF + AESGCM).
    const GOLDEN_UNIT: &str = "88f7c489f256a91ab2cf29e51473c99bcb3c89a30e47d551";

    /// The same plaintext under the same key and AD with two salts shares
    /// no keystream: a reused object name cannot reuse a nonce.
    #[test]
    fn different_salts_give_unrelated_ciphertexts() {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        seal_with_salt(&[7; 32], &[1; NONCE_LEN], b"", &[0; 64], &mut a);
        seal_with_salt(&[7; 32], &[2; NONCE_LEN], b"", &[0; 64], &mut b);
        let same = a[NONCE_LEN..NONCE_LEN + 64]
            .iter()
            .zip(&b[NONCE_LEN..NONCE_LEN + 64])
            .filter(|(x, y)| x == y)
            .count();
        assert!(same < 8, "{same} equal keystream bytes");
    }

    #[test]
    fn failure_leaves_the_output_alone() {
        let mut sealed = Vec::new();
        seal_with_salt(&[7; 32], &[3; NONCE_LEN], b"ad", b"payload", &mut sealed);
        let mut out = b"keep".to_vec();
        assert_eq!(
            open(&[7; 32], b"ad!", &sealed, &mut out),
            Err(OpenFailure::Authentication)
        );
        assert_eq!(out, b"keep");
    }
}
