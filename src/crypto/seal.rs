//! Sealing and opening of one unit (a data segment, a journal segment, a
//! checkpoint shard, the lease, …) with the key's cipher: XChaCha20-Poly1305
//! here, AES-256-GCM in [`super::gcm`].
//!
//! Sealed unit = 24 B nonce (XChaCha20) or salt (AES-256-GCM) ‖ ciphertext
//! (same length as the plaintext) ‖ 16 B tag, so `cipher_len = plain_len +
//! 40` ([`SEAL_OVERHEAD`]) for both ciphers.
//!
//! Rules:
//! - Every call to [`seal_into`] draws a fresh random 24-byte nonce (salt)
//!   from `OsRng`; there is no way to pass one in outside tests. An
//!   all-zero one is never written and is rejected by [`open`] (a
//!   zero-filled region).
//! - The associated data is [`UnitAd::encode`], a fixed byte layout that is
//!   part of the on-disk format (see the table there and FORMAT.md).
//! - [`open`] checks the tag before decrypting anything and returns either
//!   the exact plaintext or an error naming object and unit: never bytes of
//!   a unit that failed authentication.

use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{Key, KeyInit, Tag, XChaCha20Poly1305, XNonce};
use rand::RngCore;
use rand::rngs::OsRng;
use zeroize::Zeroize;

use super::CryptoError;
use super::gcm;
use super::keys::SubKey;
use super::suite::Cipher;

/// Nonce length of XChaCha20-Poly1305: 24 B, stored first in a sealed unit.
pub const NONCE_LEN: usize = 24;
/// Poly1305 tag length: 16 B, stored last in a sealed unit.
pub const TAG_LEN: usize = 16;
/// Bytes a sealed unit adds to its plaintext: 24 B nonce + 16 B tag = 40 B.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// Domain-separation tag that opens every encoded [`UnitAd`] (format v1).
const AD_MAGIC: &[u8; 4] = b"SFS1";

/// Length of an encoded [`UnitAd`] without the object name: 37 B.
pub const UNIT_AD_FIXED_LEN: usize = 4 + 16 + 4 + 8 + 4 + 1;

/// Where a sealed unit lives; bound into its tag as associated data.
///
/// Encoding ([`UnitAd::encode`], all integers little-endian):
///
/// | offset   | size | field                                   |
/// |----------|------|-----------------------------------------|
/// | 0        | 4    | `"SFS1"`                                |
/// | 4        | 16   | volume id                               |
/// | 20       | 4    | n = object name length in bytes (u32)   |
/// | 24       | n    | object name, UTF-8, relative to volume  |
/// | 24+n     | 8    | unit index (u64)                        |
/// | 32+n     | 4    | key epoch (u32)                         |
/// | 36+n     | 1    | last-unit flag: 0 or 1                  |
///
/// Total 37 + n bytes. The length prefix makes the encoding injective: no
/// two different `UnitAd`s encode to the same bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnitAd<'a> {
    /// The volume's 16-byte id (from the volume header).
    pub volume_id: &'a [u8; 16],
    /// Object name relative to the volume, e.g. `"meta/journal/00000042"`;
    /// never the bucket, prefix or local path.
    pub object: &'a str,
    /// Index of this unit inside the object (0-based).
    pub unit: u64,
    /// True for the final unit of the object; detects truncation.
    pub last: bool,
}

impl<'a> UnitAd<'a> {
    /// The associated data of an object sealed as one unit (metadata,
    /// snapshot records, audit segments, the lease).
    pub fn whole(volume_id: &'a [u8; 16], object: &'a str) -> UnitAd<'a> {
        UnitAd {
            volume_id,
            object,
            unit: 0,
            last: true,
        }
    }

    /// The fixed byte encoding documented on the type (37 + name length B),
    /// for a unit sealed under key epoch `epoch` (the key's, never the
    /// caller's choice: see [`seal_into`]).
    ///
    /// # Panics
    /// If the object name is 4 GiB or longer (never, for sealedfs names).
    pub fn encode(&self, epoch: u32) -> Vec<u8> {
        let name_len = u32::try_from(self.object.len()).expect("object name shorter than 4 GiB");
        let mut ad = Vec::with_capacity(UNIT_AD_FIXED_LEN + self.object.len());
        ad.extend_from_slice(AD_MAGIC);
        ad.extend_from_slice(self.volume_id);
        ad.extend_from_slice(&name_len.to_le_bytes());
        ad.extend_from_slice(self.object.as_bytes());
        ad.extend_from_slice(&self.unit.to_le_bytes());
        ad.extend_from_slice(&epoch.to_le_bytes());
        ad.push(u8::from(self.last));
        ad
    }
}

/// Size of the sealed form of `plain_len` plaintext bytes.
pub const fn cipher_len(plain_len: usize) -> usize {
    plain_len + SEAL_OVERHEAD
}

/// Size of the plaintext inside a sealed unit of `cipher_len` bytes, or
/// `None` if it is too short to be one.
pub const fn plain_len(cipher_len: usize) -> Option<usize> {
    cipher_len.checked_sub(SEAL_OVERHEAD)
}

/// Seals `plain` for the place `ad` under `key`'s epoch and appends nonce ‖
/// ciphertext ‖ tag (`plain.len() + 40` B) to `out`.
pub fn seal_into(key: &SubKey, ad: &UnitAd, plain: &[u8], out: &mut Vec<u8>) {
    seal_raw(
        key.cipher(),
        key.as_bytes(),
        &ad.encode(key.epoch()),
        plain,
        out,
    );
}

/// [`seal_into`] a new buffer of exactly `plain.len() + 40` B.
pub fn seal(key: &SubKey, ad: &UnitAd, plain: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(cipher_len(plain.len()));
    seal_into(key, ad, plain, &mut out);
    out
}

/// Opens a sealed unit that must have been sealed for exactly `ad`.
pub fn open(key: &SubKey, ad: &UnitAd, sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let mut out = Vec::with_capacity(plain_len(sealed.len()).unwrap_or(0));
    open_into(key, ad, sealed, &mut out)?;
    Ok(out)
}

/// [`open`], appending the plaintext to `out`; on error `out` is unchanged.
///
/// Tries `key`'s epoch, then each older epoch it still carries (a rotation
/// under way): a unit opens under the epoch it was sealed with and fails
/// under every other, since the epoch is in the associated data and each
/// epoch has its own key. The error is the current epoch's.
pub fn open_into(
    key: &SubKey,
    ad: &UnitAd,
    sealed: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), CryptoError> {
    open_noting_epoch(key, ad, sealed, out).map(drop)
}

/// [`open`], also saying whether the unit was sealed under `key`'s own
/// epoch (`true`) or an older one it carries: a rotation learns what is
/// left to re-seal from the one open it needs anyway.
pub fn open_current(
    key: &SubKey,
    ad: &UnitAd,
    sealed: &[u8],
) -> Result<(Vec<u8>, bool), CryptoError> {
    let mut out = Vec::with_capacity(plain_len(sealed.len()).unwrap_or(0));
    let current = open_noting_epoch(key, ad, sealed, &mut out)?;
    Ok((out, current))
}

fn open_noting_epoch(
    key: &SubKey,
    ad: &UnitAd,
    sealed: &[u8],
    out: &mut Vec<u8>,
) -> Result<bool, CryptoError> {
    let first = open_epoch(key, ad, sealed, out);
    if first != Err(OpenFailure::Authentication) {
        return first.map(|()| true).map_err(|f| open_error(f, ad, sealed));
    }
    for older in key.older() {
        if open_epoch(older, ad, sealed, out).is_ok() {
            return Ok(false);
        }
    }
    Err(open_error(OpenFailure::Authentication, ad, sealed))
}

/// [`open`] for a unit whose parts were received apart: nonce ‖ `buf` ‖
/// tag, where `buf` holds the ciphertext and is decrypted where it lies
/// (a reader that streams a pack puts each segment's ciphertext straight
/// into the buffer its plaintext is to live in). The tag is checked before
/// any plaintext is used; on failure `buf` holds nothing to use.
pub fn open_in_place(
    key: &SubKey,
    ad: &UnitAd,
    nonce: &[u8; NONCE_LEN],
    buf: &mut [u8],
    tag: &[u8; TAG_LEN],
) -> Result<(), CryptoError> {
    let fail = |f| open_error(f, ad, &[0; SEAL_OVERHEAD]);
    if nonce.iter().all(|&b| b == 0) {
        return Err(fail(OpenFailure::ZeroNonce));
    }
    // A failed AES-GCM open may leave `buf` changed: keep the ciphertext
    // for the older epochs of a rotation under way (rare).
    let kept = (!key.older().is_empty()).then(|| zeroize::Zeroizing::new(buf.to_vec()));
    let open_with = |k: &SubKey, buf: &mut [u8]| {
        let ad = ad.encode(k.epoch());
        match k.cipher() {
            Cipher::XChaCha20Poly1305 => XChaCha20Poly1305::new(Key::from_slice(k.as_bytes()))
                .decrypt_in_place_detached(
                    XNonce::from_slice(nonce),
                    &ad,
                    buf,
                    Tag::from_slice(tag),
                )
                .map_err(|_| OpenFailure::Authentication),
            Cipher::Aes256Gcm => gcm::open_in_place(k.as_bytes(), nonce, &ad, buf, tag),
        }
    };
    if open_with(key, buf).is_ok() {
        return Ok(());
    }
    for older in key.older() {
        if let Some(kept) = &kept {
            buf.copy_from_slice(kept);
        }
        if open_with(older, buf).is_ok() {
            return Ok(());
        }
    }
    buf.zeroize();
    Err(fail(OpenFailure::Authentication))
}

/// Whether `sealed` opens under `key`'s own epoch (not an older one it
/// carries): a rotation's test of what is left to re-seal.
pub fn is_current(key: &SubKey, ad: &UnitAd, sealed: &[u8]) -> bool {
    open_epoch(key, ad, sealed, &mut Vec::new()).is_ok()
}

fn open_epoch(
    key: &SubKey,
    ad: &UnitAd,
    sealed: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), OpenFailure> {
    open_raw(
        key.cipher(),
        key.as_bytes(),
        &ad.encode(key.epoch()),
        sealed,
        out,
    )
}

fn open_error(failure: OpenFailure, ad: &UnitAd, sealed: &[u8]) -> CryptoError {
    match failure {
        OpenFailure::TooShort => CryptoError::Malformed(format!(
            "unit {} of object {}: {} B is shorter than the {SEAL_OVERHEAD} B seal overhead",
            ad.unit,
            ad.object,
            sealed.len()
        )),
        OpenFailure::ZeroNonce => CryptoError::Malformed(format!(
            "unit {} of object {}: all-zero nonce (zero-filled data, not a sealed unit)",
            ad.unit, ad.object
        )),
        OpenFailure::Authentication => CryptoError::Authentication {
            object: ad.object.to_owned(),
            unit: ad.unit,
        },
    }
}

/// Why [`open_raw`] refused; callers turn it into a [`CryptoError`] with
/// their own context (unit ids, keyslot index).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpenFailure {
    /// Shorter than [`SEAL_OVERHEAD`].
    TooShort,
    /// The first 24 B are all zero.
    ZeroNonce,
    /// Tag mismatch: wrong key, wrong AD, or altered bytes.
    Authentication,
}

/// Seals with a raw 32 B key and raw AD bytes (keyslots use their own AD).
pub(crate) fn seal_raw(cipher: Cipher, key: &[u8; 32], ad: &[u8], plain: &[u8], out: &mut Vec<u8>) {
    let mut nonce = [0u8; NONCE_LEN];
    // 2^-192 per draw; the loop only guarantees the "never all-zero" rule.
    while nonce == [0u8; NONCE_LEN] {
        OsRng.fill_bytes(&mut nonce);
    }
    match cipher {
        Cipher::XChaCha20Poly1305 => seal_with_nonce(key, &nonce, ad, plain, out),
        Cipher::Aes256Gcm => gcm::seal_with_salt(key, &nonce, ad, plain, out),
    }
}

/// The one place that encrypts. Private: only [`seal_raw`] (random nonce)
/// and the known-answer tests (fixed nonce) call it.
fn seal_with_nonce(
    key: &[u8; 32],
    nonce: &[u8; NONCE_LEN],
    ad: &[u8],
    plain: &[u8],
    out: &mut Vec<u8>,
) {
    let cipher = XChaCha20Poly1305::new(Key::from_slice(key));
    let start = out.len();
    out.reserve(cipher_len(plain.len()));
    out.extend_from_slice(nonce);
    out.extend_from_slice(plain);
    // Encrypt the copied plaintext in place: out[start+24 ..] becomes ciphertext.
    match cipher.encrypt_in_place_detached(
        XNonce::from_slice(nonce),
        ad,
        &mut out[start + NONCE_LEN..],
    ) {
        Ok(tag) => out.extend_from_slice(&tag),
        Err(_) => {
            out[start..].zeroize();
            out.truncate(start);
            panic!(
                "plaintext of {} B exceeds the XChaCha20-Poly1305 limit",
                plain.len()
            );
        }
    }
}

/// Opens with a raw key and raw AD, appending the plaintext to `out`.
/// The tag is verified before any byte is decrypted; on failure `out` is
/// left as it was.
pub(crate) fn open_raw(
    cipher: Cipher,
    key: &[u8; 32],
    ad: &[u8],
    sealed: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), OpenFailure> {
    if sealed.len() < SEAL_OVERHEAD {
        return Err(OpenFailure::TooShort);
    }
    let (nonce, rest) = sealed.split_at(NONCE_LEN);
    let (cipher_text, tag) = rest.split_at(rest.len() - TAG_LEN);
    if nonce.iter().all(|&b| b == 0) {
        return Err(OpenFailure::ZeroNonce);
    }
    if cipher == Cipher::Aes256Gcm {
        return gcm::open(key, ad, sealed, out);
    }
    let cipher = XChaCha20Poly1305::new(Key::from_slice(key));
    let start = out.len();
    out.extend_from_slice(cipher_text);
    let result = cipher.decrypt_in_place_detached(
        XNonce::from_slice(nonce),
        ad,
        &mut out[start..],
        Tag::from_slice(tag),
    );
    if result.is_err() {
        out.truncate(start);
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

    /// draft-irtf-cfrg-xchacha-03, appendix A.3.1 (same vector as
    /// draft-arciszewski-xchacha-03 A.1 and chacha20poly1305's own tests).
    #[test]
    fn xchacha20poly1305_known_answer() {
        let key: [u8; 32] =
            unhex("808182838485868788898a8b8c8d8e8f 909192939495969798999a9b9c9d9e9f")
                .try_into()
                .unwrap();
        let nonce: [u8; 24] = unhex("404142434445464748494a4b4c4d4e4f 5051525354555657")
            .try_into()
            .unwrap();
        let aad = unhex("50515253c0c1c2c3c4c5c6c7");
        let plain: &[u8] = b"Ladies and Gentlemen of the class of '99: If I could offer you \
            only one tip for the future, sunscreen would be it.";
        let cipher_text = unhex(
            "bd6d179d3e83d43b9576579493c0e939 572a1700252bfaccbed2902c21396cbb \
             731c7f1b0b4aa6440bf3a82f4eda7e39 ae64c6708c54c216cb96b72e1213b452 \
             2f8c9ba40db5d945b11b69b982c1bb9e 3f3fac2bc369488f76b2383565d3fff9 \
             21f9664c97637da9768812f615c68b13 b52e",
        );
        let tag = unhex("c0875924c1c7987947deafd8780acf49");
        assert_eq!(plain.len(), 114);

        let mut out = vec![0xee]; // seal_with_nonce appends after existing bytes
        seal_with_nonce(&key, &nonce, &aad, plain, &mut out);
        let expected: Vec<u8> = [&[0xee][..], &nonce, &cipher_text, &tag].concat();
        assert_eq!(out, expected);

        let mut opened = Vec::new();
        open_raw(
            Cipher::XChaCha20Poly1305,
            &key,
            &aad,
            &out[1..],
            &mut opened,
        )
        .unwrap();
        assert_eq!(opened, plain);
    }

    /// The unit, tamper and nonce tests, once per cipher: both must pass
    /// the same suite.
    macro_rules! per_cipher {
        ($name:ident, $cipher:expr) => {
            mod $name {
                use super::*;

                const CIPHER: Cipher = $cipher;

                /// Seals under a fixed nonce or salt (tests only).
                fn seal_fixed(
                    key: &[u8; 32],
                    nonce: &[u8; NONCE_LEN],
                    ad: &[u8],
                    plain: &[u8],
                    out: &mut Vec<u8>,
                ) {
                    match CIPHER {
                        Cipher::XChaCha20Poly1305 => seal_with_nonce(key, nonce, ad, plain, out),
                        Cipher::Aes256Gcm => gcm::seal_with_salt(key, nonce, ad, plain, out),
                    }
                }

                /// A unit of one cipher never opens as the other (a header
                /// whose cipher field was changed cannot downgrade).
                #[test]
                fn the_other_cipher_does_not_open_it() {
                    let sealed = seal(&key(), &ad(1), b"payload");
                    let other = Cipher::ALL.into_iter().find(|c| *c != CIPHER).unwrap();
                    let err = open(&SubKey::from_bytes_for([0x42; 32], other), &ad(1), &sealed);
                    assert!(matches!(err, Err(CryptoError::Authentication { .. })));
                }

            const VOL: [u8; 16] = [7; 16];

            fn key() -> SubKey {
                SubKey::from_bytes_for([0x42; 32], CIPHER)
            }

            fn ad(unit: u64) -> UnitAd<'static> {
                UnitAd {
                    volume_id: &VOL,
                    object: "data/3f/00112233",
                    unit,
                    last: false,
                }
            }

            #[test]
            fn unit_ad_encoding_is_fixed() {
                let a = UnitAd {
                    volume_id: &[0xaa; 16],
                    object: "ab",
                    unit: 0x0102,
                    last: true,
                };
                let mut expected = b"SFS1".to_vec();
                expected.extend([0xaa; 16]);
                expected.extend([2, 0, 0, 0]);
                expected.extend(b"ab");
                expected.extend([0x02, 0x01, 0, 0, 0, 0, 0, 0]);
                expected.extend([3, 0, 0, 0]);
                expected.push(1);
                assert_eq!(a.encode(3), expected);
                assert_eq!(a.encode(3).len(), UNIT_AD_FIXED_LEN + 2);
                assert_eq!(UNIT_AD_FIXED_LEN, 37);
            }

            #[test]
            fn round_trip_and_overhead() {
                for n in [0usize, 1, 4095, 4096, 65536] {
                    let plain: Vec<u8> = (0..n).map(|i| i as u8).collect();
                    let sealed = seal(&key(), &ad(3), &plain);
                    assert_eq!(sealed.len(), cipher_len(n));
                    assert_eq!(plain_len(sealed.len()), Some(n));
                    assert_eq!(open(&key(), &ad(3), &sealed).unwrap(), plain);
                }
                assert_eq!(SEAL_OVERHEAD, 40);
                assert_eq!(plain_len(39), None);
            }

            #[test]
            fn seal_into_and_open_into_append() {
                let mut out = b"head".to_vec();
                seal_into(&key(), &ad(0), b"abc", &mut out);
                assert_eq!(&out[..4], b"head");
                let mut plain = b"x".to_vec();
                open_into(&key(), &ad(0), &out[4..], &mut plain).unwrap();
                assert_eq!(plain, b"xabc");
                // On failure the output buffer is left unchanged.
                let err = open_into(&key(), &ad(1), &out[4..], &mut plain);
                assert!(err.is_err());
                assert_eq!(plain, b"xabc");
            }

            #[test]
            fn nonces_are_fresh() {
                let a = seal(&key(), &ad(0), b"same");
                let b = seal(&key(), &ad(0), b"same");
                assert_ne!(a[..NONCE_LEN], b[..NONCE_LEN]);
                assert_ne!(a, b);
            }

            fn assert_auth_fails(result: Result<Vec<u8>, CryptoError>, unit: u64) {
                assert_eq!(
                    result,
                    Err(CryptoError::Authentication {
                        object: "data/3f/00112233".into(),
                        unit
                    })
                );
            }

            /// Flipping any bit anywhere (nonce, ciphertext, tag) is detected.
            #[test]
            fn every_flipped_byte_is_rejected() {
                let sealed = seal(&key(), &ad(5), b"patient record 0042");
                for i in 0..sealed.len() {
                    for bit in [0x01u8, 0x80] {
                        let mut bad = sealed.clone();
                        bad[i] ^= bit;
                        assert_auth_fails(open(&key(), &ad(5), &bad), 5);
                    }
                }
            }

            #[test]
            fn truncation_and_extension_are_rejected() {
                let sealed = seal(&key(), &ad(5), b"0123456789");
                for len in 0..sealed.len() {
                    let err = open(&key(), &ad(5), &sealed[..len]).unwrap_err();
                    if len < SEAL_OVERHEAD {
                        assert!(
                            matches!(&err, CryptoError::Malformed(m) if m.contains("unit 5 of object data/3f/00112233")),
                            "{err}"
                        );
                    } else {
                        assert!(matches!(err, CryptoError::Authentication { unit: 5, .. }));
                    }
                }
                let mut longer = sealed.clone();
                longer.push(0);
                assert_auth_fails(open(&key(), &ad(5), &longer), 5);
            }

            #[test]
            fn wrong_place_or_key_is_rejected() {
                let sealed = seal(&key(), &ad(5), b"payload");
                let other_vol = [8u8; 16];
                let wrong = [
                    UnitAd {
                        object: "data/3f/00112234",
                        ..ad(5)
                    },
                    UnitAd {
                        object: "data/3f/0011223",
                        ..ad(5)
                    },
                    UnitAd { unit: 6, ..ad(5) },
                    UnitAd {
                        last: true,
                        ..ad(5)
                    },
                    UnitAd {
                        volume_id: &other_vol,
                        ..ad(5)
                    },
                ];
                for w in wrong {
                    let err = open(&key(), &w, &sealed).unwrap_err();
                    assert!(
                        matches!(err, CryptoError::Authentication { .. }),
                        "{w:?}: {err}"
                    );
                }
                assert_auth_fails(open(&SubKey::from_bytes_for([0x43; 32], CIPHER), &ad(5), &sealed), 5);
                assert!(open(&key(), &ad(5), &sealed).is_ok());
            }

            #[test]
            fn swapped_units_are_rejected() {
                let unit0 = seal(&key(), &ad(0), b"first chunk");
                let unit1 = seal(&key(), &ad(1), b"second chunk");
                assert_auth_fails(open(&key(), &ad(0), &unit1), 0);
                assert_auth_fails(open(&key(), &ad(1), &unit0), 1);
            }

            /// Dropping the final unit of an object: the new final unit was sealed
            /// with last = false, so opening it as the last one fails.
            #[test]
            fn truncation_at_a_unit_boundary_is_rejected() {
                let middle = seal(&key(), &ad(1), b"middle");
                let as_last = UnitAd {
                    last: true,
                    ..ad(1)
                };
                assert!(open(&key(), &as_last, &middle).is_err());
            }

            #[test]
            fn all_zero_nonce_is_rejected() {
                // A correctly tagged unit under an all-zero nonce is still refused.
                let mut sealed = Vec::new();
                seal_fixed(
                    key().as_bytes(),
                    &[0; NONCE_LEN],
                    &ad(2).encode(0),
                    b"zeros",
                    &mut sealed,
                );
                let err = open(&key(), &ad(2), &sealed).unwrap_err();
                assert!(
                    matches!(&err, CryptoError::Malformed(m) if m.contains("all-zero nonce")),
                    "{err}"
                );
                // And so is a zero-filled region of the right size.
                let err = open(&key(), &ad(2), &[0u8; 64]).unwrap_err();
                assert!(matches!(err, CryptoError::Malformed(_)));
            }

            #[test]
            fn error_messages_name_object_and_unit() {
                let err = open(&key(), &ad(9), &seal(&key(), &ad(8), b"x")).unwrap_err();
                assert_eq!(
                    err.to_string(),
                    "unit 9 of object data/3f/00112233 failed authentication"
                );
            }

            }
        };
    }

    per_cipher!(xchacha20poly1305, Cipher::XChaCha20Poly1305);
    per_cipher!(aes_256_gcm, Cipher::Aes256Gcm);
}

#[cfg(test)]
mod speed {
    use super::*;

    /// Sealing speed of both ciphers (run by hand:
    /// `cargo test --lib seal_speed -- --ignored --nocapture`).
    #[test]
    #[ignore]
    fn seal_speed() {
        let plain = vec![7u8; 65536];
        for cipher in Cipher::ALL {
            let key = SubKey::from_bytes_for([1; 32], cipher);
            let ad = UnitAd {
                volume_id: &[0; 16],
                object: "data/00/x",
                unit: 0,
                last: false,
            };
            let start = std::time::Instant::now();
            for _ in 0..1024 {
                std::hint::black_box(seal(&key, &ad, &plain));
            }
            let secs = start.elapsed().as_secs_f64();
            println!("{cipher}: {:.0} MiB/s", 64.0 / secs);
        }
    }
}
