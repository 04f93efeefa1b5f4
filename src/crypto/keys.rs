//! The master key, the per-purpose subkeys derived from it, and the two hash
//! primitives the rest of sealedfs needs (SHA-256, HMAC-SHA256).
//!
//! Rules:
//! - Key bytes live only in [`MasterKey`] and [`SubKey`]: 32 B each, on
//!   the heap in a box that never moves (moving a key moves the pointer,
//!   so no stray copy is left behind on a stack or in an old struct),
//!   locked in RAM when the box is made (best effort: `RLIMIT_MEMLOCK`),
//!   zeroized on drop; `Debug` prints `<redacted>`; no `Clone`.
//! - Each key carries the volume's [`Cipher`]: sealing and opening
//!   dispatch on it, so nothing outside `crypto` chooses an algorithm.
//! - Subkeys come from HKDF-SHA256 with salt = the 16-byte volume id and
//!   info = `"sealedfs v1 <purpose>"`; the labels below are part of the
//!   on-disk format and pinned by a golden test. Never change them. Both
//!   ciphers use the same labels: a volume has one cipher.
//! - HMAC-SHA256 is computed as HKDF-Extract, which RFC 5869 §2.2 defines
//!   as `PRK = HMAC-Hash(salt, IKM)`: with salt = key and IKM = message it
//!   *is* HMAC-SHA256 (checked against RFC 4231 below), so no `hmac`
//!   dependency is needed.

use hkdf::Hkdf;
use rand::RngCore;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};
use zeroize::Zeroize;

use super::ring::KeyRing;
use super::suite::Cipher;

/// Length of every key in sealedfs: 32 B (256 bit).
pub const KEY_LEN: usize = 32;

/// HKDF info labels, one per purpose (epoch 0). Part of the format.
const LABEL_DATA: &[u8] = b"sealedfs v1 data";
const LABEL_META: &[u8] = b"sealedfs v1 meta";
const LABEL_AUDIT: &[u8] = b"sealedfs v1 audit";
const LABEL_LEASE: &[u8] = b"sealedfs v1 lease";
const LABEL_HEADER: &[u8] = b"sealedfs v1 header";

/// 32 key bytes in a box that is locked in RAM when made and wiped when
/// dropped. The bytes are written in place, never passed by value.
struct KeyBox(Box<[u8; KEY_LEN]>);

impl KeyBox {
    fn zeroed() -> KeyBox {
        let b = KeyBox(Box::new([0u8; KEY_LEN]));
        lock_in_memory(&*b.0);
        b
    }
}

impl Drop for KeyBox {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// The volume's root secret for one key epoch: 32 random bytes, stored
/// only wrapped in keyslots.
pub struct MasterKey {
    bytes: KeyBox,
    cipher: Cipher,
}

impl MasterKey {
    /// 32 fresh bytes from the OS RNG, for a volume of the default cipher
    /// (in unit tests: `SEALEDFS_TEST_CIPHER` when set, so the whole
    /// library suite can run under either cipher).
    pub fn generate() -> MasterKey {
        MasterKey::generate_for(default_cipher())
    }

    /// 32 fresh bytes for a volume sealed with `cipher`.
    pub fn generate_for(cipher: Cipher) -> MasterKey {
        let bytes = KeyBox::zeroed();
        let mut key = MasterKey { bytes, cipher };
        OsRng.fill_bytes(key.bytes.0.as_mut());
        key
    }

    /// Copies raw key bytes (e.g. just unwrapped from a keyslot) into a
    /// locked box, for a volume of the default cipher. The caller wipes
    /// its own copy.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> MasterKey {
        MasterKey::from_slice(&bytes, Cipher::default()).expect("32 B")
    }

    /// Copies 32 raw key bytes into a locked box; `None` for another length.
    pub fn from_slice(bytes: &[u8], cipher: Cipher) -> Option<MasterKey> {
        let src: &[u8; KEY_LEN] = bytes.try_into().ok()?;
        let mut key = MasterKey {
            bytes: KeyBox::zeroed(),
            cipher,
        };
        key.bytes.0.copy_from_slice(src);
        Some(key)
    }

    /// The same key for a volume sealed with `cipher`.
    pub fn with_cipher(mut self, cipher: Cipher) -> MasterKey {
        self.cipher = cipher;
        self
    }

    /// The cipher of the volume this key belongs to.
    pub fn cipher(&self) -> Cipher {
        self.cipher
    }

    /// The raw bytes, for wrapping into a keyslot and for HKDF only.
    pub(crate) fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.bytes.0
    }
}

#[cfg(not(test))]
fn default_cipher() -> Cipher {
    Cipher::default()
}

#[cfg(test)]
fn default_cipher() -> Cipher {
    std::env::var("SEALEDFS_TEST_CIPHER")
        .ok()
        .and_then(|c| Cipher::parse(&c).ok())
        .unwrap_or_default()
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

/// A 32-byte key for one purpose (data, meta, audit, lease, header) and
/// one key epoch, with the cipher it seals with. While a rotation is under
/// way it also carries the same purpose's keys of the older epochs still
/// in the ring, which open (never seal) what was sealed before.
pub struct SubKey {
    bytes: KeyBox,
    cipher: Cipher,
    epoch: u32,
    /// Newest first.
    older: Vec<SubKey>,
}

impl SubKey {
    /// The key epoch this key seals under.
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// The older epochs' keys this key also opens with, newest first.
    pub fn older(&self) -> &[SubKey] {
        &self.older
    }

    /// This key without its older epochs: it opens only what was sealed
    /// under its own.
    pub fn current_only(&self) -> SubKey {
        let mut copy = self.duplicate();
        copy.older.clear();
        copy
    }

    /// Raw key bytes; for the AEAD and HMAC inside this crate only.
    pub(crate) fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.bytes.0
    }

    /// The cipher this key seals with.
    pub fn cipher(&self) -> Cipher {
        self.cipher
    }

    /// Overwrites the key bytes (and the older epochs') with zeros in
    /// place (a locked mount); the key seals and opens nothing useful
    /// afterwards.
    pub fn wipe(&mut self) {
        self.bytes.0.zeroize();
        self.older.iter_mut().for_each(SubKey::wipe);
    }

    /// Whether every key byte is zero (the lock's self-check).
    pub fn is_wiped(&self) -> bool {
        self.bytes.0.iter().all(|&b| b == 0) && self.older.iter().all(SubKey::is_wiped)
    }

    /// A second handle on the same key bytes (a holder that outlives the
    /// `Keys` it came from). Explicit, so copies are visible in review.
    pub fn duplicate(&self) -> SubKey {
        let mut copy = SubKey {
            bytes: KeyBox::zeroed(),
            cipher: self.cipher,
            epoch: self.epoch,
            older: self.older.iter().map(SubKey::duplicate).collect(),
        };
        copy.bytes.0.copy_from_slice(&self.bytes.0[..]);
        copy
    }

    /// Wraps raw bytes (tests and known-answer vectors), for the cipher
    /// unit tests run under (`SEALEDFS_TEST_CIPHER`).
    #[cfg(test)]
    pub(crate) fn from_bytes(bytes: [u8; KEY_LEN]) -> SubKey {
        SubKey::from_bytes_for(bytes, default_cipher())
    }

    /// Wraps raw bytes for `cipher` (tests).
    #[cfg(test)]
    pub(crate) fn from_bytes_for(bytes: [u8; KEY_LEN], cipher: Cipher) -> SubKey {
        let mut key = SubKey {
            bytes: KeyBox::zeroed(),
            cipher,
            epoch: 0,
            older: Vec::new(),
        };
        key.bytes.0.copy_from_slice(&bytes);
        key
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
/// The pages stay locked for the life of the process. Every key box is
/// locked when made; callers may lock other long-lived holders.
pub fn lock_in_memory<T>(value: &T) -> bool {
    let ptr = value as *const T as *const libc::c_void;
    // SAFETY: the range is one live object owned by the caller; mlock only
    // changes how the kernel pages it.
    unsafe { libc::mlock(ptr, std::mem::size_of::<T>()) == 0 }
}

/// All subkeys of one volume at one epoch. `Debug` shows only `<redacted>`.
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
    /// The keys of epoch 0 under `master` (a volume never rotated).
    pub fn derive(master: &MasterKey, volume_id: &[u8; 16]) -> Keys {
        Keys::derive_epoch(master, 0, volume_id)
    }

    /// The keys of `ring`'s current epoch, each carrying the same purpose's
    /// keys of every older epoch in the ring (see [`SubKey::older`]).
    pub fn from_ring(ring: &KeyRing, volume_id: &[u8; 16]) -> Keys {
        let mut keys = Keys::derive_epoch(ring.current(), ring.current_epoch(), volume_id);
        for epoch in ring.epochs().into_iter().rev() {
            if epoch == ring.current_epoch() {
                continue;
            }
            let master = ring.get(epoch).expect("an epoch the ring lists");
            let old = Keys::derive_epoch(master, epoch, volume_id);
            for (mine, theirs) in keys.all_mut().into_iter().zip(old.into_all()) {
                mine.older.push(theirs);
            }
        }
        keys
    }

    /// HKDF-SHA256: PRK = HMAC(salt = volume id, master); each subkey =
    /// HKDF-Expand(PRK, info, 32 B), written straight into its locked box,
    /// where info is the purpose's label, followed for epochs after 0 by
    /// `" epoch <n>"` (decimal). Every subkey seals with the master key's
    /// cipher.
    fn derive_epoch(master: &MasterKey, epoch: u32, volume_id: &[u8; 16]) -> Keys {
        let hk = Hkdf::<Sha256>::new(Some(volume_id), master.as_bytes());
        let expand = |label: &[u8]| {
            let mut key = SubKey {
                bytes: KeyBox::zeroed(),
                cipher: master.cipher,
                epoch,
                older: Vec::new(),
            };
            let mut info = label.to_vec();
            if epoch > 0 {
                info.extend_from_slice(format!(" epoch {epoch}").as_bytes());
            }
            hk.expand(&info, key.bytes.0.as_mut())
                .expect("32 B is far below HKDF-SHA256's 8160 B limit");
            key
        };
        Keys {
            data: expand(LABEL_DATA),
            meta: expand(LABEL_META),
            audit: expand(LABEL_AUDIT),
            lease: expand(LABEL_LEASE),
            header: expand(LABEL_HEADER),
        }
    }

    /// The cipher every subkey seals with.
    pub fn cipher(&self) -> Cipher {
        self.data.cipher
    }

    /// The epoch every subkey seals under.
    pub fn epoch(&self) -> u32 {
        self.data.epoch
    }

    /// Whether older epochs are still carried (a rotation under way).
    pub fn rotating(&self) -> bool {
        !self.data.older.is_empty()
    }

    /// A second handle on every subkey.
    pub fn duplicate(&self) -> Keys {
        Keys {
            data: self.data.duplicate(),
            meta: self.meta.duplicate(),
            audit: self.audit.duplicate(),
            lease: self.lease.duplicate(),
            header: self.header.duplicate(),
        }
    }

    /// Zeroes every subkey in place.
    pub fn wipe(&mut self) {
        for k in self.all_mut() {
            k.wipe();
        }
    }

    /// Whether every subkey is zero.
    pub fn is_wiped(&self) -> bool {
        [
            &self.data,
            &self.meta,
            &self.audit,
            &self.lease,
            &self.header,
        ]
        .iter()
        .all(|k| k.is_wiped())
    }

    fn into_all(self) -> [SubKey; 5] {
        [self.data, self.meta, self.audit, self.lease, self.header]
    }

    fn all_mut(&mut self) -> [&mut SubKey; 5] {
        [
            &mut self.data,
            &mut self.meta,
            &mut self.audit,
            &mut self.lease,
            &mut self.header,
        ]
    }
}

/// SHA-256 of `data` (hash chains of journal and audit segments).
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// SHA-256 of an object's name, a zero byte and its plaintext: what links
/// to a sealed object by content, so that re-sealing it (a rotation) keeps
/// every link.
pub fn content_digest(object: &str, plain: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(object.as_bytes());
    h.update([0]);
    h.update(plain);
    h.finalize().into()
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
    fn subkeys_carry_the_master_keys_cipher() {
        let m = MasterKey::from_bytes([1; 32]).with_cipher(Cipher::Aes256Gcm);
        let k = Keys::derive(&m, &FIXED_VOLUME_ID);
        assert_eq!(k.cipher(), Cipher::Aes256Gcm);
        assert_eq!(k.lease.cipher(), Cipher::Aes256Gcm);
        assert_eq!(k.lease.duplicate().as_bytes(), k.lease.as_bytes());
        assert_eq!(k.lease.duplicate().cipher(), Cipher::Aes256Gcm);
        // The bytes do not depend on the cipher: one volume, one cipher.
        let x = Keys::derive(&MasterKey::from_bytes([1; 32]), &FIXED_VOLUME_ID);
        assert_eq!(x.data.as_bytes(), k.data.as_bytes());
    }

    /// A key's bytes stay where they were made when the key moves (into
    /// a box, a struct, a return value): no stray copy is left behind.
    #[test]
    fn moves_do_not_copy_key_bytes() {
        let m = MasterKey::from_bytes([0x5a; 32]);
        let at = m.as_bytes().as_ptr();
        let moved = Box::new(m);
        assert_eq!(
            moved.as_bytes().as_ptr(),
            at,
            "moving a key moves a pointer"
        );
        let keys = Keys::derive(&moved, &FIXED_VOLUME_ID);
        let lease_at = keys.lease.as_bytes().as_ptr();
        let Keys { lease, .. } = keys;
        assert_eq!(lease.as_bytes().as_ptr(), lease_at);
    }

    /// During a rotation the current epoch seals and every epoch in the
    /// ring opens; a key without the older epochs opens only its own.
    #[test]
    fn a_ring_seals_under_its_current_epoch_and_opens_the_older_ones() {
        use crate::crypto::seal::{UnitAd, is_current, open, seal};
        let vid = FIXED_VOLUME_ID;
        let ad = UnitAd::whole(&vid, "meta/journal/0000000000000001");
        let old = Keys::derive(&fixed_master(), &vid);
        let mut ring = KeyRing::single(0, fixed_master());
        ring.rotate_to(1, MasterKey::from_bytes([9; 32])).unwrap();
        let both = Keys::from_ring(&ring, &vid);
        assert_eq!((both.epoch(), both.rotating()), (1, true));

        let sealed_old = seal(&old.meta, &ad, b"before");
        let sealed_new = seal(&both.meta, &ad, b"after");
        assert_eq!(open(&both.meta, &ad, &sealed_old).unwrap(), b"before");
        assert_eq!(open(&both.meta, &ad, &sealed_new).unwrap(), b"after");
        assert!(open(&old.meta, &ad, &sealed_new).is_err());
        assert!(!is_current(&both.meta, &ad, &sealed_old));
        assert!(is_current(&both.meta, &ad, &sealed_new));
        // The finished rotation: the old epoch is refused.
        assert!(open(&both.meta.current_only(), &ad, &sealed_old).is_err());
        // Epoch 1's keys are not epoch 0's derived from the same bytes.
        let same_bytes = Keys::from_ring(&KeyRing::single(1, fixed_master()), &vid);
        assert_ne!(same_bytes.meta.as_bytes(), old.meta.as_bytes());
        assert!(both.duplicate().data.older().len() == 1);
    }

    /// `open_in_place` (a unit received in parts) opens what `open` opens,
    /// under either cipher, old epochs included; a failure leaves nothing.
    #[test]
    fn open_in_place_opens_every_epoch_of_a_ring_under_both_ciphers() {
        use crate::crypto::seal::{NONCE_LEN, TAG_LEN, UnitAd, open_in_place, seal};
        use crate::crypto::{Cipher, CryptoError};
        let vid = FIXED_VOLUME_ID;
        let ad = UnitAd::whole(&vid, "data/00/0000");
        let in_place = |key: &SubKey, sealed: &[u8]| {
            let (nonce, rest) = sealed.split_at(NONCE_LEN);
            let (body, tag) = rest.split_at(rest.len() - TAG_LEN);
            let mut buf = body.to_vec();
            let r = open_in_place(
                key,
                &ad,
                nonce.try_into().unwrap(),
                &mut buf,
                tag.try_into().unwrap(),
            );
            r.map(|()| buf)
        };
        for cipher in [Cipher::XChaCha20Poly1305, Cipher::Aes256Gcm] {
            let mut ring = KeyRing::single(0, fixed_master());
            ring.rotate_to(1, MasterKey::from_bytes([9; 32])).unwrap();
            let ring = KeyRing::decode(&ring.encode(), 1, cipher).unwrap();
            let old =
                KeyRing::decode(&KeyRing::single(0, fixed_master()).encode(), 0, cipher).unwrap();
            let (both, old) = (Keys::from_ring(&ring, &vid), Keys::from_ring(&old, &vid));
            let sealed_old = seal(&old.data, &ad, b"before");
            let sealed_new = seal(&both.data, &ad, b"after");
            assert_eq!(
                in_place(&both.data, &sealed_old).unwrap(),
                b"before",
                "{cipher:?}"
            );
            assert_eq!(
                in_place(&both.data, &sealed_new).unwrap(),
                b"after",
                "{cipher:?}"
            );
            let mut bad = sealed_new.clone();
            bad[NONCE_LEN] ^= 1;
            let err = in_place(&both.data, &bad).unwrap_err();
            assert!(
                matches!(err, CryptoError::Authentication { .. }),
                "{cipher:?}: {err}"
            );
            assert!(in_place(&old.data, &sealed_new).is_err(), "{cipher:?}");
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
