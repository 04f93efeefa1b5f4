//! The persisted metadata formats: the namespace in memory and the records
//! that change it, journal segments and checkpoints. How and when they are
//! written and read back is the engine's (`crate::engine`).
//!
//! A mount loads the newest complete checkpoint, then replays journal
//! segments `seq + 1, seq + 2, …` until the first one that does not exist.
//! Each segment is sealed under the metadata key with its own object name
//! in the associated data, and carries the hash of the segment before it,
//! so a reordered, replayed or spliced segment fails the mount instead of
//! producing a wrong tree.

pub mod carried;
pub mod checkpoint;
pub mod inode;
pub mod journal;
mod name;
pub mod namespace;
pub mod pad;
pub mod record;
pub mod snapshot;
mod table;
mod xattrs;

pub use carried::Carried;
pub use inode::Kind;
pub use inode::{Content, Inode, InodeAttr, Timestamp};
pub use journal::Segment;
pub use namespace::{Corrupt, Namespace, PackInfo, ROOT_INO};
pub use record::Record;

use crate::crypto::CryptoError;
use crate::store::StoreError;

/// Version byte at the start of every sealed metadata plaintext.
pub const META_VERSION: u8 = 1;

#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error(transparent)]
    Corrupt(#[from] Corrupt),
}

pub(crate) fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![META_VERSION];
    out.extend(postcard::to_allocvec(value).expect("in-memory metadata always encodes"));
    out
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(
    object: &str,
    plain: &[u8],
) -> Result<T, MetaError> {
    match plain.split_first() {
        Some((&META_VERSION, body)) => postcard::from_bytes(body)
            .map_err(|e| MetaError::Corrupt(Corrupt(format!("{object}: undecodable: {e}")))),
        Some((v, _)) => Err(MetaError::Corrupt(Corrupt(format!(
            "{object}: unknown metadata version {v}"
        )))),
        None => Err(MetaError::Corrupt(Corrupt(format!("{object}: empty")))),
    }
}
