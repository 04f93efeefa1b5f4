//! Reading the volume header object.

use super::error::CliResult;
use crate::store::ObjectStore;
pub use crate::volume::VOLUME_OBJECT as HEADER_KEY;
use crate::volume::{HeaderError, VolumeHeader};

/// Reads and decodes the header; a store without one is "not a sealedfs
/// volume" (exit 1), whatever else it holds.
pub fn read(store: &dyn ObjectStore) -> CliResult<VolumeHeader> {
    match store.get(HEADER_KEY) {
        Ok(bytes) => Ok(VolumeHeader::decode(&bytes)?),
        Err(e) if e.is_not_found() => Err(HeaderError::NotAVolume.into()),
        Err(e) => Err(e.into()),
    }
}
