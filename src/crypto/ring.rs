//! The key ring: the master key of every key epoch a volume still needs,
//! and which epoch is current.
//!
//! Format v2 keyslots wrap a whole ring, not one key, so that a rotation
//! (a new epoch whose master key seals everything written from then on)
//! can keep old epochs readable until re-encryption has finished, then
//! drop them from every slot; the current epoch is named by the header
//! (covered by its MAC), not by the ring.
//!
//! Plaintext encoding inside a slot (36 B per epoch, ascending, no
//! duplicates, 1..=[`MAX_EPOCHS`] entries):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 36·i | 4 | epoch (u32 LE) |
//! | 36·i + 4 | 32 | that epoch's master key |
//!
//! The encoding lives only in `Zeroizing` buffers.

use zeroize::Zeroizing;

use super::CryptoError;
use super::keys::{KEY_LEN, MasterKey};
use super::suite::Cipher;

/// Most epochs one ring holds: the current one and those still being
/// re-encrypted away.
pub const MAX_EPOCHS: usize = 4;
/// Bytes per epoch in the encoding.
pub const ENTRY_LEN: usize = 4 + KEY_LEN;

/// Master keys by epoch, and the current epoch. No `Clone`, `Debug`
/// redacted (the keys' own).
#[derive(Debug)]
pub struct KeyRing {
    current: u32,
    /// Ascending by epoch.
    keys: Vec<(u32, MasterKey)>,
}

impl KeyRing {
    /// A ring of one key, current at `epoch` (a new volume: epoch 0).
    pub fn single(epoch: u32, master: MasterKey) -> KeyRing {
        KeyRing {
            current: epoch,
            keys: vec![(epoch, master)],
        }
    }

    /// The current epoch.
    pub fn current_epoch(&self) -> u32 {
        self.current
    }

    /// The cipher of the volume (every key in a ring has the same).
    pub fn cipher(&self) -> Cipher {
        self.current().cipher()
    }

    /// The current epoch's master key.
    pub fn current(&self) -> &MasterKey {
        self.get(self.current)
            .expect("a ring holds its current epoch")
    }

    /// The master key of `epoch`, if the ring still holds it.
    pub fn get(&self, epoch: u32) -> Option<&MasterKey> {
        self.keys.iter().find(|(e, _)| *e == epoch).map(|(_, k)| k)
    }

    /// The epochs held, ascending.
    pub fn epochs(&self) -> Vec<u32> {
        self.keys.iter().map(|(e, _)| *e).collect()
    }

    /// Gives up the ring for its current master key (a mount needs no more
    /// until rotation exists).
    pub fn into_current(self) -> MasterKey {
        let current = self.current;
        self.keys
            .into_iter()
            .find(|(e, _)| *e == current)
            .map(|(_, k)| k)
            .expect("a ring holds its current epoch")
    }

    /// Adds `master` as epoch `epoch` and makes it current (rotation).
    pub fn rotate_to(&mut self, epoch: u32, master: MasterKey) -> Result<(), CryptoError> {
        if self.get(epoch).is_some() || self.keys.len() >= MAX_EPOCHS {
            return Err(CryptoError::Malformed(format!(
                "cannot add epoch {epoch} to a ring holding {:?}",
                self.epochs()
            )));
        }
        self.keys.push((epoch, master));
        self.keys.sort_by_key(|(e, _)| *e);
        self.current = epoch;
        Ok(())
    }

    /// Drops an old epoch's key (re-encryption finished); never the current.
    pub fn forget(&mut self, epoch: u32) -> bool {
        if epoch == self.current {
            return false;
        }
        let before = self.keys.len();
        self.keys.retain(|(e, _)| *e != epoch);
        self.keys.len() != before
    }

    /// The slot plaintext described in the module notes.
    pub(crate) fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(self.keys.len() * ENTRY_LEN));
        for (epoch, key) in &self.keys {
            out.extend_from_slice(&epoch.to_le_bytes());
            out.extend_from_slice(key.as_bytes());
        }
        out
    }

    /// Strict decoder of [`KeyRing::encode`]'s bytes; `current` must be
    /// among the epochs. Errors say what was wrong, never key bytes.
    pub(crate) fn decode(
        bytes: &[u8],
        current: u32,
        cipher: Cipher,
    ) -> Result<KeyRing, CryptoError> {
        let bad = |why: String| Err(CryptoError::Malformed(format!("key ring: {why}")));
        if bytes.is_empty() || bytes.len() % ENTRY_LEN != 0 || bytes.len() / ENTRY_LEN > MAX_EPOCHS
        {
            return bad(format!(
                "{} B is not 1..={MAX_EPOCHS} entries of {ENTRY_LEN} B",
                bytes.len()
            ));
        }
        let mut keys: Vec<(u32, MasterKey)> = Vec::with_capacity(bytes.len() / ENTRY_LEN);
        for entry in bytes.chunks_exact(ENTRY_LEN) {
            let epoch = u32::from_le_bytes(entry[..4].try_into().expect("4 B"));
            if keys.last().is_some_and(|(last, _)| *last >= epoch) {
                return bad(format!("epoch {epoch} out of order"));
            }
            let key = MasterKey::from_slice(&entry[4..], cipher).expect("32 B");
            keys.push((epoch, key));
        }
        let ring = KeyRing { current, keys };
        if ring.get(current).is_none() {
            return bad(format!("no key for the current epoch {current}"));
        }
        Ok(ring)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> MasterKey {
        MasterKey::from_bytes([b; 32])
    }

    #[test]
    fn round_trip_and_layout() {
        let mut ring = KeyRing::single(0, key(1));
        ring.rotate_to(1, key(2)).unwrap();
        let bytes = ring.encode();
        assert_eq!(bytes.len(), 2 * ENTRY_LEN);
        assert_eq!(&bytes[..4], &[0, 0, 0, 0]);
        assert_eq!(&bytes[4..36], &[1; 32]);
        assert_eq!(&bytes[36..40], &[1, 0, 0, 0]);
        let back = KeyRing::decode(&bytes, 1, Cipher::Aes256Gcm).unwrap();
        assert_eq!(back.epochs(), vec![0, 1]);
        assert_eq!(back.current().as_bytes(), &[2; 32]);
        assert_eq!(back.cipher(), Cipher::Aes256Gcm);
        assert_eq!(back.get(0).unwrap().as_bytes(), &[1; 32]);
        assert!(back.get(2).is_none());
        assert_eq!(back.into_current().as_bytes(), &[2; 32]);
    }

    #[test]
    fn decode_is_strict() {
        let one = KeyRing::single(3, key(1)).encode();
        assert!(KeyRing::decode(&one, 3, Cipher::default()).is_ok());
        assert!(
            KeyRing::decode(&one, 4, Cipher::default()).is_err(),
            "current missing"
        );
        assert!(KeyRing::decode(&one[..35], 3, Cipher::default()).is_err());
        assert!(KeyRing::decode(&[], 3, Cipher::default()).is_err());
        let twice = [&one[..], &one[..]].concat();
        assert!(
            KeyRing::decode(&twice, 3, Cipher::default()).is_err(),
            "duplicate epoch"
        );
        let five = vec![0u8; 5 * ENTRY_LEN];
        assert!(KeyRing::decode(&five, 0, Cipher::default()).is_err());
    }

    #[test]
    fn rotation_bookkeeping() {
        let mut ring = KeyRing::single(0, key(1));
        assert!(ring.rotate_to(0, key(2)).is_err());
        ring.rotate_to(1, key(2)).unwrap();
        assert!(!ring.forget(1), "the current epoch stays");
        assert!(ring.forget(0));
        assert_eq!(ring.epochs(), vec![1]);
        for e in 2..=4 {
            ring.rotate_to(e, key(e as u8)).unwrap();
        }
        assert!(ring.rotate_to(5, key(5)).is_err(), "at most {MAX_EPOCHS}");
    }
}
