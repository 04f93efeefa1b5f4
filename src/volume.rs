//! The `volume` object: the one object stored unsealed. It says "this is a
//! sealedfs volume", which format and cipher it uses, its id, chunk size
//! and current key epoch, and holds the keyslots from which a passphrase,
//! a key file or AWS KMS recovers the volume's key ring.
//!
//! Layout: 8 B `"SEALEDFS"` ‖ u16 LE format version ‖ postcard body
//! ([`codec`]; byte tables with worked sizes in docs/FORMAT.md). This build
//! writes version 2 and reads 1 and 2. A v1 header stays v1 until a key
//! command changes it; then it is written as v2 in one conditional PUT
//! (its v1 keyslots carried over as they are, so no passphrase is needed):
//! an upgrade is as crash-safe as any other header change.
//!
//! Rules:
//! - Nothing is trusted before unlock. [`VolumeHeader::unlock_ring`] first
//!   finds a keyslot that opens (each is authenticated on its own and bound
//!   to the volume id, the cipher and its KDF costs), then checks
//!   `header_mac` over the fixed fields with the current epoch's `header`
//!   subkey. A changed chunk size, creation time, version, cipher, epoch or
//!   id fails there as `Authentication { object: "volume", unit: 0 }` (or,
//!   for the id and cipher, already as `WrongKey`).
//! - `header_mac` = HMAC-SHA256(`Keys::header`, MAC input); MAC input v1
//!   (34 B) = `"SFSV"` ‖ u16 LE version ‖ volume id ‖ u32 LE chunk_size ‖
//!   u64 LE created_unix; v2 (39 B) appends the cipher id (1 B) and the
//!   epoch (u32 LE). The keyslot list is *not* covered: removing a slot
//!   must not need every other slot's secret, and a MAC would not stop a
//!   rollback of the whole object anyway. Someone with write access to the
//!   store can re-insert a removed slot; only a rotation (which seals the
//!   new ring to the remaining slots alone) revokes its holder.
//! - One unlock spends at most [`MAX_UNLOCK_MS`] of estimated KDF work over
//!   all slots it tries; slots past the budget are skipped with a warning.
//!   A key file tries key-file slots first; `--slot N` tries only slot N.
//! - The object is replaced only with `If-Match` on the ETag read before
//!   (DESIGN "What lives in the store"); this module only builds bytes.

mod codec;
#[cfg(test)]
mod tests;

use std::time::{SystemTime, UNIX_EPOCH};

use rand::RngCore;
use rand::rngs::OsRng;

use crate::crypto::kdf::MAX_UNLOCK_MS;
use crate::crypto::keys::{ct_eq, hmac_sha256};
use crate::crypto::slot::{NewSlot, Slot, SlotKind, SlotSecret};
use crate::crypto::{Cipher, CryptoError, Kdf, KeyRing, Keys, MasterKey, SubKey};

/// The format this build writes.
pub const FORMAT_VERSION: u16 = 2;
/// The oldest format this build reads.
pub const OLDEST_VERSION: u16 = 1;
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
/// Largest `volume` object accepted: 64 KiB (8 KMS slots with large
/// blobs fit; 8 passphrase slots need ≈ 2.5 KiB).
pub const MAX_HEADER_LEN: usize = 64 * 1024;

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
    #[error(
        "unsupported volume format version {0} (this build reads versions {OLDEST_VERSION} to {FORMAT_VERSION})"
    )]
    UnsupportedVersion(u16),
    /// The magic and version are right but the rest is not a valid header.
    #[error("malformed volume header: {0}")]
    Malformed(String),
    /// `new` was given a chunk size that is not a power of two in 4 KiB..=1 MiB.
    #[error("chunk size {0} B is not a power of two between 4 KiB and 1 MiB")]
    InvalidChunkSize(u32),
    /// Out-of-range KDF costs, or a secret unfit for its slot kind.
    #[error("invalid KDF parameters: {0}")]
    InvalidKdf(String),
    /// A new slot could not be made (a short key file, KMS refused).
    #[error("cannot make the keyslot: {0}")]
    SlotRefused(String),
    /// Adding a slot to a header that already holds [`MAX_KEYSLOTS`].
    #[error("all {MAX_KEYSLOTS} keyslots are in use")]
    KeyslotsFull,
    /// Removing the only keyslot: the volume would be lost.
    #[error("refusing to remove the last keyslot")]
    LastKeyslot,
    /// No slot has this id.
    #[error("no keyslot {0}")]
    NoSuchKeyslot(u32),
    /// A rotation needs every slot to hold a key ring; a version-1 slot
    /// holds one key.
    #[error(
        "keyslot {0} is a version-1 slot, which cannot hold a new key: run `sealedfs key passwd --slot {0}` first"
    )]
    OldKeyslot(u32),

    /// The master key does not belong to this volume, or a slot failed.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

/// The decoded `volume` object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeHeader {
    /// Format version as read (1 or 2); mutations make it 2.
    pub version: u16,
    /// Random id; salt of the subkey derivation and part of every AD.
    pub volume_id: [u8; 16],
    /// Plaintext bytes per file chunk: a power of two, 4 KiB..=1 MiB.
    pub chunk_size: u32,
    /// Creation time, seconds since the Unix epoch.
    pub created_unix: u64,
    /// The AEAD every unit of the volume is sealed with (v1: XChaCha20).
    pub cipher: Cipher,
    /// The current key epoch: new units seal under its master key.
    pub epoch: u32,
    /// 1..=[`MAX_KEYSLOTS`] keyslots, ids unique.
    pub keyslots: Vec<Slot>,
    /// HMAC-SHA256 of the fixed fields under the current `header` subkey.
    pub header_mac: [u8; 32],
}

/// Seconds since the Unix epoch, now.
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn chunk_size_ok(chunk_size: u32) -> bool {
    chunk_size.is_power_of_two() && (MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&chunk_size)
}

fn kdf_ok(kdf: &Kdf) -> Result<(), HeaderError> {
    kdf.validate().map_err(|e| match e {
        CryptoError::Malformed(m) => HeaderError::InvalidKdf(m),
        other => HeaderError::InvalidKdf(other.to_string()),
    })
}

impl VolumeHeader {
    /// A new header for a fresh volume sealed with `master`'s cipher:
    /// random id, now as creation time, epoch 0, one passphrase keyslot.
    pub fn new(
        master: &MasterKey,
        passphrase: &[u8],
        kdf: impl Into<Kdf>,
        chunk_size: u32,
    ) -> Result<VolumeHeader, HeaderError> {
        let kdf = kdf.into();
        kdf_ok(&kdf)?;
        let ring = KeyRing::single(0, copy_of(master));
        let slot = NewSlot::Passphrase {
            secret: passphrase,
            kdf,
        };
        Self::create(&ring, slot, chunk_size)
    }

    /// A new header holding `ring` in one slot made from `first`.
    pub fn create(
        ring: &KeyRing,
        first: NewSlot,
        chunk_size: u32,
    ) -> Result<VolumeHeader, HeaderError> {
        let mut volume_id = [0u8; 16];
        OsRng.fill_bytes(&mut volume_id);
        Self::create_at(ring, first, chunk_size, volume_id, now_unix())
    }

    /// [`VolumeHeader::create`] with a given id and time (tests, fixtures).
    fn create_at(
        ring: &KeyRing,
        first: NewSlot,
        chunk_size: u32,
        volume_id: [u8; 16],
        created_unix: u64,
    ) -> Result<VolumeHeader, HeaderError> {
        if !chunk_size_ok(chunk_size) {
            return Err(HeaderError::InvalidChunkSize(chunk_size));
        }
        let slot = Slot::create(first, ring, 0, &volume_id, created_unix)
            .map_err(HeaderError::SlotRefused)?;
        let mut header = VolumeHeader {
            version: FORMAT_VERSION,
            volume_id,
            chunk_size,
            created_unix,
            cipher: ring.cipher(),
            epoch: ring.current_epoch(),
            keyslots: vec![slot],
            header_mac: [0; 32],
        };
        header.header_mac = header.compute_mac(&header.keys(ring).header);
        Ok(header)
    }

    /// The subkeys of this volume at `ring`'s current epoch, opening the
    /// older epochs it holds too.
    pub fn keys(&self, ring: &KeyRing) -> Keys {
        Keys::from_ring(ring, &self.volume_id)
    }

    /// The subkeys of one epoch's master key (the header MAC).
    fn epoch_keys(&self, master: &MasterKey, epoch: u32) -> Keys {
        Keys::from_ring(&KeyRing::single(epoch, copy_of(master)), &self.volume_id)
    }

    /// HMAC-SHA256 over the MAC input of this header's version.
    fn compute_mac(&self, header_key: &SubKey) -> [u8; 32] {
        let mut input = Vec::with_capacity(39);
        input.extend_from_slice(MAC_MAGIC);
        input.extend_from_slice(&self.version.to_le_bytes());
        input.extend_from_slice(&self.volume_id);
        input.extend_from_slice(&self.chunk_size.to_le_bytes());
        input.extend_from_slice(&self.created_unix.to_le_bytes());
        if self.version >= 2 {
            input.push(self.cipher.id());
            input.extend_from_slice(&self.epoch.to_le_bytes());
        }
        hmac_sha256(header_key.as_bytes(), &input)
    }

    /// Checks `header_mac` under `master` (the current epoch's key): Ok if
    /// it belongs to this volume and the fixed fields are as written.
    pub fn verify_master(&self, master: &MasterKey) -> Result<(), CryptoError> {
        let expected = self.compute_mac(&self.epoch_keys(master, self.epoch).header);
        if master.cipher() == self.cipher && ct_eq(&expected, &self.header_mac) {
            Ok(())
        } else {
            Err(CryptoError::Authentication {
                object: VOLUME_OBJECT.to_owned(),
                unit: 0,
            })
        }
    }

    /// Opens the key ring with a passphrase (any passphrase or v1 slot,
    /// within the KDF budget), then verifies the MAC.
    pub fn unlock(&self, passphrase: &[u8]) -> Result<KeyRing, CryptoError> {
        match self.unlock_ring(SlotSecret::Passphrase(passphrase), None) {
            Ok((_, ring)) => Ok(ring),
            Err(HeaderError::Crypto(e)) => Err(e),
            Err(other) => Err(CryptoError::Malformed(other.to_string())),
        }
    }

    /// Tries the slots `secret` can open (key-file slots first for a key
    /// file; only slot `only` when given) within [`MAX_UNLOCK_MS`] of KDF
    /// work, then verifies `header_mac`. Returns the slot id and the ring.
    pub fn unlock_ring(
        &self,
        secret: SlotSecret,
        only: Option<u32>,
    ) -> Result<(u32, KeyRing), HeaderError> {
        let mut order: Vec<&Slot> = match only {
            Some(id) => vec![self.slot(id)?],
            None => self.keyslots.iter().collect(),
        };
        if matches!(secret, SlotSecret::KeyFile(_)) {
            order.sort_by_key(|s| !matches!(s.kind, SlotKind::KeyFile { .. }));
        }
        let mut spent = 0u64;
        let mut first_error = None;
        for slot in order {
            let fits = !matches!(
                (&slot.kind, secret),
                (SlotKind::Kms { .. }, _) | (SlotKind::KeyFile { .. }, SlotSecret::Passphrase(_))
            );
            if !fits {
                continue;
            }
            let cost = slot.cost_ms();
            if spent + cost > MAX_UNLOCK_MS {
                log::warn!(
                    "keyslot {} skipped: its KDF would cost about {} ms, past this unlock's \
                     budget of {MAX_UNLOCK_MS} ms (name it with --slot {} to try it first)",
                    slot.id,
                    cost,
                    slot.id
                );
                continue;
            }
            spent += cost;
            match slot.unlock(secret, &self.volume_id, self.cipher, self.epoch) {
                Ok(ring) => {
                    self.verify_master(ring.current())?;
                    return Ok((slot.id, ring));
                }
                Err(CryptoError::WrongKey) => {}
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        Err(first_error.unwrap_or(CryptoError::WrongKey).into())
    }

    /// Opens KMS slot `id` with the private key KMS returned.
    pub fn unlock_kms(&self, id: u32, private: &[u8]) -> Result<KeyRing, HeaderError> {
        let ring = self.slot(id)?.unlock_with_private(
            private,
            &self.volume_id,
            self.cipher,
            self.epoch,
        )?;
        self.verify_master(ring.current())?;
        Ok(ring)
    }

    /// The KMS slots: (id, key id).
    pub fn kms_slots(&self) -> Vec<(u32, String)> {
        self.keyslots
            .iter()
            .filter_map(|s| match &s.kind {
                SlotKind::Kms { key_id } => Some((s.id, key_id.clone())),
                _ => None,
            })
            .collect()
    }

    /// The slot with id `id`.
    pub fn slot(&self, id: u32) -> Result<&Slot, HeaderError> {
        self.keyslots
            .iter()
            .find(|s| s.id == id)
            .ok_or(HeaderError::NoSuchKeyslot(id))
    }

    /// The id a new slot gets: one past the largest ever in this header.
    pub fn next_slot_id(&self) -> u32 {
        self.keyslots.iter().map(|s| s.id + 1).max().unwrap_or(0)
    }

    /// Checks that `ring` is this volume's (its current key verifies the
    /// MAC); a key command calls it before changing anything.
    fn check_ring(&self, ring: &KeyRing) -> Result<(), HeaderError> {
        if ring.current_epoch() != self.epoch {
            return Err(CryptoError::WrongKey.into());
        }
        self.verify_master(ring.current())
            .map_err(|_| CryptoError::WrongKey.into())
    }

    /// Makes this a v2 header (a no-op if it is one), re-MACed under
    /// `ring`'s current key. v1 slots stay as they are.
    fn upgrade(&mut self, ring: &KeyRing) {
        if self.version < 2 {
            self.version = 2;
            self.header_mac = self.compute_mac(&self.keys(ring).header);
        }
    }

    /// Adds a keyslot made from `new` holding `ring`; returns its id.
    pub fn add_slot(&mut self, ring: &KeyRing, new: NewSlot) -> Result<u32, HeaderError> {
        if self.keyslots.len() >= MAX_KEYSLOTS {
            return Err(HeaderError::KeyslotsFull);
        }
        if let NewSlot::Passphrase { kdf, .. } = &new {
            kdf_ok(kdf)?;
        }
        self.check_ring(ring)?;
        let id = self.next_slot_id();
        let slot = Slot::create(new, ring, id, &self.volume_id, now_unix())
            .map_err(HeaderError::SlotRefused)?;
        self.upgrade(ring);
        self.keyslots.push(slot);
        Ok(id)
    }

    /// Replaces slot `id` with one made from `new` (same id: `key passwd`).
    pub fn replace_slot(
        &mut self,
        ring: &KeyRing,
        id: u32,
        new: NewSlot,
    ) -> Result<(), HeaderError> {
        if let NewSlot::Passphrase { kdf, .. } = &new {
            kdf_ok(kdf)?;
        }
        self.check_ring(ring)?;
        let at = self.position(id)?;
        let slot = Slot::create(new, ring, id, &self.volume_id, now_unix())
            .map_err(HeaderError::SlotRefused)?;
        self.upgrade(ring);
        self.keyslots[at] = slot;
        Ok(())
    }

    /// Removes slot `id` and returns it; never the last one. `ring` proves
    /// the caller may (and re-MACs an upgraded v1 header).
    pub fn remove_slot(&mut self, ring: &KeyRing, id: u32) -> Result<Slot, HeaderError> {
        let at = self.position(id)?;
        if self.keyslots.len() == 1 {
            return Err(HeaderError::LastKeyslot);
        }
        self.check_ring(ring)?;
        self.upgrade(ring);
        Ok(self.keyslots.remove(at))
    }

    /// Makes `ring` the volume's: its current epoch becomes the header's,
    /// and it is sealed again to every slot's public key, so no secret but
    /// the caller's is needed. A rotation adopts a ring with a new epoch
    /// added (older epochs stay readable), then, once nothing needed is
    /// sealed under them, the same ring without them: from then on the old
    /// keys open nothing. `ring` must hold the header's current epoch (and
    /// verify its MAC), so a stale ring cannot undo a newer rotation.
    pub fn adopt_ring(&mut self, ring: &KeyRing) -> Result<(), HeaderError> {
        let Some(current) = ring.get(self.epoch) else {
            return Err(CryptoError::WrongKey.into());
        };
        self.verify_master(current)
            .map_err(|_| HeaderError::from(CryptoError::WrongKey))?;
        if ring.current_epoch() < self.epoch {
            return Err(CryptoError::WrongKey.into());
        }
        if let Some(v1) = self
            .keyslots
            .iter()
            .find(|s| matches!(s.kind, SlotKind::V1 { .. }))
        {
            return Err(HeaderError::OldKeyslot(v1.id));
        }
        self.version = FORMAT_VERSION;
        self.epoch = ring.current_epoch();
        self.seal_ring_to_slots(ring);
        Ok(())
    }

    fn seal_ring_to_slots(&mut self, ring: &KeyRing) {
        for slot in &mut self.keyslots {
            let sealed = slot.seal_ring(ring, &self.volume_id);
            debug_assert!(sealed, "version-1 slots were refused before");
        }
        self.header_mac = self.compute_mac(&self.keys(ring).header);
    }

    fn position(&self, id: u32) -> Result<usize, HeaderError> {
        self.keyslots
            .iter()
            .position(|s| s.id == id)
            .ok_or(HeaderError::NoSuchKeyslot(id))
    }

    /// The bytes of the `volume` object ([`codec`]).
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    /// Strict decoder of v1 and v2 headers ([`codec`]).
    pub fn decode(bytes: &[u8]) -> Result<VolumeHeader, HeaderError> {
        codec::decode(bytes)
    }
}

/// A second handle on a master key (the header keeps none; `new` needs a
/// ring of its own).
fn copy_of(master: &MasterKey) -> MasterKey {
    MasterKey::from_slice(master.as_bytes(), master.cipher()).expect("32 B")
}
