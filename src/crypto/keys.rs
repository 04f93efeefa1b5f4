//! The master key, the per-purpose subkeys derived from it, and the two hash
//! primitives the rest of sealedfs needs (SHA-256, HMAC-SHA256).
//!
//! Rules:
//! - Key bytes live only in [`MasterKey`] and [`SubKey`]: 32 B each,
//!   zeroized on drop, `Debug` prints `<redacted>`, no `Clone` on the master.
//! - Subkeys come from HKDF-SHA256 with salt = the 16-byte volume id and
//!   info = `"sealedfs v1 <purpose>"`; the labels below are part of the
//!   on-disk format and pinned by a golden test. Never change them.
//! - HMAC-SHA256 is computed as HKDF-Extract, which RFC 5869 §2.2 defines
//!   as `PRK = HMAC-Hash(salt, IKM)`: with salt = key and IKM = message it
//!   *is* HMAC-SHA256 (checked against RFC 4231 below), so no `hmac`
//!   dependency is needed.

use hkdf::Hkdf;
use rand::RngCore;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Length of every key in sealedfs: 32 B (256 bit).
pub const KEY_LEN: usize = 32;

/// HKDF info labels, one per purpose (epoch 0). Part of the format.
const LABEL_DATA: &[u8] = b"sealedfs v1 data";
const LABEL_META: &[u8] = b"sealedfs v1 meta";
const LABEL_AUDIT: &[u8] = b"sealedfs v1 audit";
const LABEL_LEASE: &[u8] = b"sealedfs v1 lease";
const LABEL_HEADER: &[u8] = b"sealedfs v1 header";

/// The volume's root secret: 32 random bytes, stored only wrapped in
/// keyslots. Zeroized on drop.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct MasterKey([u8; KEY_LEN]);

impl MasterKey {
    /// 32 fresh bytes from the OS RNG.
    pub fn generate() -> MasterKey {
        let mut bytes = [0u8; KEY_LEN];
        OsRng.fill_bytes(&mut bytes);
        MasterKey(bytes)
    }

    /// Takes ownership of raw key bytes (e.g. just unwrapped from a keyslot).
    /// The caller should zeroize its own copy.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> MasterKey {
        MasterKey(bytes)
    }

    /// The raw bytes, for wrapping into a keyslot and for HKDF only.
    pub(crate) fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

/// A 32-byte key for one purpose (data, meta, audit, lease, header).
/// Zeroized on drop.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct SubKey([u8; KEY_LEN]);

impl SubKey {
    /// Raw key bytes; for the AEAD and HMAC inside this crate only.
    pub(crate) fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// Wraps raw bytes (tests and known-answer vectors).
    #[cfg(test)]
    pub(crate) fn from_bytes(bytes: [u8; KEY_LEN]) -> SubKey {
        SubKey(bytes)
    }
}

impl std::fmt::Debug for SubKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SubKey(<redacted>)")
    }
}

/// Asks the kernel to keep the memory of `value` out of swap. Best effort:
/// an unprivileged process may be over its `RLIMIT_MEMLOCK`, and then the
/// keys are only as safe as the swap device (docs/SECURITY.md says so).
/// The pages stay locked for the life of the process; callers lock only
/// long-lived key holders.
pub fn lock_in_memory<T>(value: &T) -> bool {
    let ptr = value as *const T as *const libc::c_void;
    // SAFETY: the range is one live object owned by the caller; mlock only
    // changes how the kernel pages it.
    unsafe { libc::mlock(ptr, std::mem::size_of::<T>()) == 0 }
}

/// All subkeys of one volume at epoch 0. `Debug` shows only `<redacted>`.
#[derive(Debug)]
pub struct Keys {
    /// Seals data segments (file contents) in packs.
    pub data: SubKey,
    /// Seals journal segments, checkpoints and snapshot records.
    pub meta: SubKey,
    /// Seals audit trail segments and the local audit spool.
    pub audit: SubKey,
    /// Seals the lease object.
    pub lease: SubKey,
    /// Keys the HMAC over the volume header's fixed fields.
    pub header: SubKey,
}

impl Keys {
    /// HKDF-SHA256: PRK = HMAC(salt = volume id, master); each subkey =
    /// HKDF-Expand(PRK, label, 32 B).
    pub fn derive(master: &MasterKey, volume_id: &[u8; 16]) -> Keys {
        let hk = Hkdf::<Sha256>::new(Some(volume_id), master.as_bytes());
        let expand = |label: &[u8]| {
            let mut okm = [0u8; KEY_LEN];
            hk.expand(label, &mut okm)
                .expect("32 B is far below HKDF-SHA256's 8160 B limit");
            SubKey(okm)
        };
        Keys {
            data: expand(LABEL_DATA),
            meta: expand(LABEL_META),
            audit: expand(LABEL_AUDIT),
            lease: expand(LABEL_LEASE),
            header: expand(LABEL_HEADER),
        }
    }
}

/// SHA-256 of `data` (hash chains of journal and audit segments).
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// HMAC-SHA256(key, msg), computed as HKDF-Extract(salt = key, IKM = msg);
/// see the module notes.
pub(crate) fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let (prk, _) = Hkdf::<Sha256>::extract(Some(key), msg);
    prk.into()
}

/// Constant-time equality of two byte strings of equal length (MAC checks).
/// Lengths are not secret; unequal lengths are simply unequal.
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn fixed_master() -> MasterKey {
        let mut b = [0u8; 32];
        for (i, x) in b.iter_mut().enumerate() {
            *x = i as u8; // 00 01 02 … 1f
        }
        MasterKey::from_bytes(b)
    }

    const FIXED_VOLUME_ID: [u8; 16] = [
        0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab, 0xac, 0xad, 0xae,
        0xaf,
    ];

    /// Golden subkeys for master = 00..1f, volume id = a0..af, computed
    /// independently with Python's `hmac`/`hashlib` (RFC 5869 by hand).
    /// A change here breaks every existing volume.
    #[test]
    fn hkdf_derivation_is_stable() {
        let k = Keys::derive(&fixed_master(), &FIXED_VOLUME_ID);
        assert_eq!(hex(k.data.as_bytes()), GOLDEN_DATA);
        assert_eq!(hex(k.meta.as_bytes()), GOLDEN_META);
        assert_eq!(hex(k.audit.as_bytes()), GOLDEN_AUDIT);
        assert_eq!(hex(k.lease.as_bytes()), GOLDEN_LEASE);
        assert_eq!(hex(k.header.as_bytes()), GOLDEN_HEADER);
    }

    const GOLDEN_DATA: &str = "521a7a9ae298906d60b8a383b868d3cf65c746d24b3ca2b909081e03e92136e0";
    const GOLDEN_META: &str = "54f86c4e6320a5c46737eb5fcda1efacb838add41281e2957176538652eef988";
    const GOLDEN_AUDIT: &str = "02fcbd8bdba6774d3a22a8b6088900c3133631b318d4186adebd74606abf5a35";
    const GOLDEN_LEASE: &str = "29c581ade623f6ec03305ea8193d270849826b7760439c833a5d614fabdc2cf2";
    const GOLDEN_HEADER: &str = "0151775e1ade5c48c17d9c506df74a7d3c58508243e1cce972c3e183e6d16c31";

    #[test]
    fn subkeys_differ_by_purpose_and_volume() {
        let m = fixed_master();
        let a = Keys::derive(&m, &FIXED_VOLUME_ID);
        let b = Keys::derive(&m, &[0u8; 16]);
        let all = [
            a.data.as_bytes(),
            a.meta.as_bytes(),
            a.audit.as_bytes(),
            a.lease.as_bytes(),
            a.header.as_bytes(),
            b.data.as_bytes(),
        ];
        for i in 0..all.len() {
            for j in i + 1..all.len() {
                assert_ne!(all[i], all[j], "subkeys {i} and {j} collide");
            }
        }
    }

    #[test]
    fn generated_master_keys_differ() {
        assert_ne!(
            MasterKey::generate().as_bytes(),
            MasterKey::generate().as_bytes()
        );
    }

    /// RFC 4231 test cases 1 and 2.
    #[test]
    fn hmac_matches_rfc4231() {
        assert_eq!(
            hex(&hmac_sha256(&[0x0b; 20], b"Hi There")),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        assert_eq!(
            hex(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn sha256_matches_fips180_abc() {
        assert_eq!(
            hex(&sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn ct_eq_compares() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
        assert!(ct_eq(b"", b""));
    }

    /// Debug output never contains key bytes, in any common rendering.
    #[test]
    fn debug_never_prints_key_bytes() {
        let master = MasterKey::from_bytes([0xab; 32]);
        let keys = Keys::derive(&master, &FIXED_VOLUME_ID);
        let mut printed = format!("{master:?} {keys:?} {:?}", SubKey::from_bytes([0xab; 32]));
        printed.push_str(&format!("{master:#?} {keys:#?}"));
        assert!(printed.contains("<redacted>"));
        let lower = printed.to_lowercase();
        assert!(!lower.contains("abab"), "{printed}");
        assert!(!lower.contains("0xab"), "{printed}");
        assert!(!printed.contains("171"), "{printed}");
        for sub in [
            &keys.data,
            &keys.meta,
            &keys.audit,
            &keys.lease,
            &keys.header,
        ] {
            let b = sub.as_bytes();
            assert!(!lower.contains(&hex(&b[..4])), "{printed}");
            assert!(
                !printed.contains(&format!("{}, {}", b[0], b[1])),
                "{printed}"
            );
        }
    }
}
