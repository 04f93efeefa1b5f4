//! The lease object's body: who holds the volume for writing, sealed.
//!
//! Layout (docs/FORMAT.md, "Lease"): the object `lease` is one sealed unit
//! (24 B nonce ‖ ciphertext ‖ 16 B tag) under the lease subkey, its
//! associated data binding the volume id and the name `lease` (unit 0,
//! epoch 0, last). The plaintext is a version byte [`LEASE_VERSION`]
//! followed by the postcard encoding of [`LeaseRecord`]. The decoder is
//! strict: an unknown version, an undecodable body or trailing bytes are
//! rejected and the reason says which. Version 1 records (without the
//! committed head) are still read, as a head of 0.
//!
//! `committed_seq`/`committed_hash` name the newest commit the holder
//! knew of at its last renewal (0: none yet); a new writer carries it
//! forward when it takes the lease, so a mount finding a journal that ends
//! earlier knows the volume was truncated (`crate::engine::rollback`).
//!
//! `valid_until_ms` is the holder's wall clock plus the TTL at renewal: it
//! is shown to people ("mounted … until T") and used to skip the watch when
//! it is plainly in the future, never to decide that a lease has expired.

use serde::{Deserialize, Serialize};

use crate::crypto::{self, CryptoError, SubKey, UnitAd};

/// The lease's object name, relative to the volume.
pub const LEASE_KEY: &str = "lease";

/// Largest lease object read back (a few hundred bytes are used).
pub const MAX_LEASE_BYTES: u64 = 64 << 10;

/// First byte of every lease plaintext.
pub const LEASE_VERSION: u8 = 2;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// The holder's host name (`gethostname`).
    pub host: String,
    /// `/proc/sys/kernel/random/boot_id` of the holder's host: a reboot
    /// ends every lease that host held.
    pub boot_id: String,
    pub pid: u32,
    /// Field 22 of `/proc/PID/stat` (clock ticks after boot): with the pid
    /// it names one process, so a reused pid is not mistaken for the holder.
    pub pid_start: u64,
    /// Random per acquisition: tells our own writes from another mount's.
    pub writer: [u8; 16],
    /// How long a contender must see the lease unchanged before taking it.
    pub ttl_ms: u64,
    /// Holder's wall clock at renewal + TTL, in ms since the Unix epoch.
    /// For display only.
    pub valid_until_ms: u64,
    /// The newest commit the holder knew of (0: none).
    pub committed_seq: u64,
    /// The SHA-256 of that commit's sealed journal segment.
    pub committed_hash: [u8; 32],
}

/// Version 1: the same without the committed head.
#[derive(Deserialize)]
struct LeaseRecordV1 {
    host: String,
    boot_id: String,
    pid: u32,
    pid_start: u64,
    writer: [u8; 16],
    ttl_ms: u64,
    valid_until_ms: u64,
}

impl From<LeaseRecordV1> for LeaseRecord {
    fn from(r: LeaseRecordV1) -> LeaseRecord {
        LeaseRecord {
            host: r.host,
            boot_id: r.boot_id,
            pid: r.pid,
            pid_start: r.pid_start,
            writer: r.writer,
            ttl_ms: r.ttl_ms,
            valid_until_ms: r.valid_until_ms,
            committed_seq: 0,
            committed_hash: [0; 32],
        }
    }
}

impl LeaseRecord {
    /// True when both name the same holder process (same host, boot, pid
    /// and start time).
    pub fn same_process(&self, other: &LeaseRecord) -> bool {
        self.host == other.host
            && self.boot_id == other.boot_id
            && self.pid == other.pid
            && self.pid_start == other.pid_start
    }
}

fn ad(volume_id: &[u8; 16]) -> UnitAd<'_> {
    UnitAd::whole(volume_id, LEASE_KEY)
}

pub fn encode(record: &LeaseRecord) -> Vec<u8> {
    let mut out = vec![LEASE_VERSION];
    out.extend(postcard::to_allocvec(record).expect("a lease record always encodes"));
    out
}

pub fn decode(plain: &[u8]) -> Result<LeaseRecord, CryptoError> {
    let bad = |why: String| CryptoError::Malformed(format!("object {LEASE_KEY}: {why}"));
    fn strict<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
        let (record, rest) =
            postcard::take_from_bytes::<T>(body).map_err(|e| format!("undecodable: {e}"))?;
        if !rest.is_empty() {
            return Err(format!("{} trailing bytes", rest.len()));
        }
        Ok(record)
    }
    match plain.split_first() {
        Some((&LEASE_VERSION, body)) => strict::<LeaseRecord>(body).map_err(bad),
        Some((1, body)) => strict::<LeaseRecordV1>(body).map(Into::into).map_err(bad),
        Some((v, _)) => Err(bad(format!("unknown lease version {v}"))),
        None => Err(bad("empty".into())),
    }
}

pub fn seal(key: &SubKey, volume_id: &[u8; 16], record: &LeaseRecord) -> Vec<u8> {
    crypto::seal(key, &ad(volume_id), &encode(record))
}

/// Opens the lease object; tampering, another volume's lease or another
/// object's bytes fail authentication.
pub fn open(key: &SubKey, volume_id: &[u8; 16], sealed: &[u8]) -> Result<LeaseRecord, CryptoError> {
    decode(&crypto::open(key, &ad(volume_id), sealed)?)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::crypto::{Keys, MasterKey};

    pub fn sample() -> LeaseRecord {
        LeaseRecord {
            host: "db1".into(),
            boot_id: "b".into(),
            pid: 300,
            pid_start: 2,
            writer: [7; 16],
            ttl_ms: 30_000,
            valid_until_ms: 1,
            committed_seq: 5,
            committed_hash: [9; 32],
        }
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    fn hex_bytes(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// The worked example in docs/FORMAT.md ("Lease") is what the encoder
    /// produces, byte for byte.
    #[test]
    fn documented_encoding() {
        let bytes = hex(&encode(&sample()));
        let head = "02036462310162ac020207070707070707070707070707070707b0ea0101";
        assert_eq!(bytes, format!("{head}05{}", "09".repeat(32)));
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/FORMAT.md"))
            .unwrap();
        assert!(
            doc.contains(
                "02 03 646231 01 62 ac02 02 07070707070707070707070707070707 b0ea01 01 05 0909…09"
            ),
            "FORMAT.md shows the lease bytes"
        );
        let keys = Keys::derive(&MasterKey::generate(), &[1; 16]);
        assert_eq!(encode(&sample()).len(), 63);
        assert_eq!(seal(&keys.lease, &[1; 16], &sample()).len(), 103);
    }

    #[test]
    fn strict_decoder() {
        let good = encode(&sample());
        assert_eq!(decode(&good).unwrap(), sample());
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(
            decode(&trailing)
                .unwrap_err()
                .to_string()
                .contains("trailing")
        );
        let mut v3 = good.clone();
        v3[0] = 3;
        assert!(decode(&v3).unwrap_err().to_string().contains("version 3"));
        // A version 1 record still reads, with no committed head.
        let v1 = hex_bytes("01036462310162ac020207070707070707070707070707070707b0ea0101");
        let old = decode(&v1).unwrap();
        assert_eq!((old.host.as_str(), old.committed_seq), ("db1", 0));
        assert!(decode(&[]).unwrap_err().to_string().contains("empty"));
        assert!(decode(&good[..5]).is_err());
    }

    #[test]
    fn sealed_and_bound_to_volume_and_key() {
        let keys = Keys::derive(&MasterKey::generate(), &[1; 16]);
        let sealed = seal(&keys.lease, &[1; 16], &sample());
        assert_eq!(open(&keys.lease, &[1; 16], &sealed).unwrap(), sample());
        assert!(
            open(&keys.lease, &[2; 16], &sealed).is_err(),
            "other volume"
        );
        assert!(
            open(&keys.meta, &[1; 16], &sealed).is_err(),
            "other purpose"
        );
        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(matches!(
            open(&keys.lease, &[1; 16], &flipped),
            Err(CryptoError::Authentication { .. })
        ));
    }
}
