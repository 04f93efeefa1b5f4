//! Reading the volume header object.

use super::error::CliResult;
use crate::store::ObjectStore;
pub use crate::volume::VOLUME_OBJECT as HEADER_KEY;
use crate::volume::{HeaderError, MAX_HEADER_LEN, VolumeHeader};

/// Reads and decodes the header; a store without one is "not a sealedfs
/// volume" (exit 1), whatever else it holds.
pub fn read(store: &dyn ObjectStore) -> CliResult<VolumeHeader> {
    match store.get_max(HEADER_KEY, MAX_HEADER_LEN as u64) {
        Ok(bytes) => Ok(VolumeHeader::decode(&bytes)?),
        Err(crate::store::StoreError::Io {
            kind: std::io::ErrorKind::InvalidData,
            reason,
            ..
        }) => Err(HeaderError::Malformed(format!("volume header: {reason}")).into()),
        Err(e) if e.is_not_found() => Err(HeaderError::NotAVolume.into()),
        Err(e) => Err(e.into()),
    }
}
