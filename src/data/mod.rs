//! File contents: chunk maps, sealed segments in packs, the plaintext
//! cache. See DESIGN.md "File data: chunks, segments, packs".

pub mod cache;
pub mod chunkmap;
pub mod offsets;
pub mod pack;
mod runs;
pub mod streamed;

pub use cache::{Buf, Cache, ChunkKey, FlushItem};
pub use chunkmap::{ChunkMap, Extent, Freed, SegRef};
pub use pack::{PackId, Placed, open_segment, seal_pack, seal_pack_into, sealed_len};
pub use streamed::StreamedRun;
