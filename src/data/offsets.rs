//! Pure offset and size math of the data layout. Every function is total
//! and table-tested; `plain_` and `cipher_` prefixes keep the two spaces
//! apart.

use crate::crypto::SEAL_OVERHEAD;

/// Segments are padded to a multiple of this many plaintext bytes, so an
/// observer of the store learns sizes only to this granularity.
pub const PAD_CLASS: u32 = 4096;

/// Plaintext bytes sealed for a chunk holding `plain_len` valid bytes.
pub fn padded_len(plain_len: u32) -> u32 {
    plain_len.max(1).div_ceil(PAD_CLASS) * PAD_CLASS
}

/// Sealed segment length for a chunk holding `plain_len` valid bytes.
pub fn cipher_len(plain_len: u32) -> u32 {
    padded_len(plain_len) + SEAL_OVERHEAD as u32
}

/// The chunk holding byte `plain_off`.
pub fn chunk_of(plain_off: u64, chunk_size: u32) -> u64 {
    plain_off / chunk_size as u64
}

/// First byte of `chunk`.
pub fn chunk_start(chunk: u64, chunk_size: u32) -> u64 {
    chunk * chunk_size as u64
}

/// Chunks touched by the byte range `plain_off .. plain_off + len`, as
/// (first chunk, count); zero length touches nothing.
pub fn chunk_span(plain_off: u64, len: u64, chunk_size: u32) -> (u64, u64) {
    if len == 0 {
        return (chunk_of(plain_off, chunk_size), 0);
    }
    let first = chunk_of(plain_off, chunk_size);
    let last = chunk_of(plain_off + len - 1, chunk_size);
    (first, last - first + 1)
}

/// Valid bytes of `chunk` in a file of `size` bytes.
pub fn chunk_len_in_file(chunk: u64, size: u64, chunk_size: u32) -> u32 {
    let start = chunk_start(chunk, chunk_size);
    size.saturating_sub(start).min(chunk_size as u64) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    const CS: u32 = 65536;

    #[test]
    fn padding_table() {
        for (plain, padded) in [
            (0, 4096),
            (1, 4096),
            (4095, 4096),
            (4096, 4096),
            (4097, 8192),
            (65536, 65536),
        ] {
            assert_eq!(padded_len(plain), padded, "plain {plain}");
            assert_eq!(cipher_len(plain), padded + 40, "plain {plain}");
        }
    }

    #[test]
    fn span_table() {
        let c = CS as u64;
        for (off, len, span) in [
            (0, 0, (0, 0)),
            (0, 1, (0, 1)),
            (c - 1, 1, (0, 1)),
            (c - 1, 2, (0, 2)),
            (c, c, (1, 1)),
            (c + 1, c, (1, 2)),
            (0, 10 * c, (0, 10)),
            (u64::MAX / c * c - c, c, (u64::MAX / c - 1, 1)),
            (u64::MAX - c, c, ((u64::MAX - c) / c, 2)),
        ] {
            assert_eq!(chunk_span(off, len, CS), span, "off {off} len {len}");
        }
    }

    #[test]
    fn chunk_len_table() {
        let c = CS as u64;
        for (chunk, size, len) in [
            (0, 0, 0),
            (0, 1, 1),
            (0, c, CS),
            (1, c, 0),
            (1, c + 1, 1),
            (0, u64::MAX, CS),
        ] {
            assert_eq!(
                chunk_len_in_file(chunk, size, CS),
                len,
                "chunk {chunk} size {size}"
            );
        }
    }
}
