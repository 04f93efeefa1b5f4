//! Size classes: what an observer of the store learns from an object's
//! size.
//!
//! Every journal segment, checkpoint shard and index is zero-padded inside
//! its sealed plaintext (so the padding is authenticated) to a class size,
//! and so is every pack shorter than a full one. The classes:
//!
//! - 4 KiB steps up to 64 KiB. Data segments are padded to 4 KiB already,
//!   so a finer class would hide nothing more, and a coarser one would
//!   double the common case: an fsync that rewrites one 64 KiB chunk
//!   carries a 69,672 B segment, 72 KiB in its class, where the next power
//!   of two would be 128 KiB.
//! - above, 8 classes per doubling (steps of an eighth of the power of two
//!   below): at most 12.5 % more bytes, and a size says its magnitude to
//!   within an eighth, not a count of records, inodes or chunks.
//!
//! Every class is a multiple of 4,096, so a version 3 journal segment
//! padded this way still reads in builds that padded to 4 KiB multiples.

/// The smallest class, and the step up to [`LINEAR_MAX`].
pub const MIN_CLASS: usize = 4096;

/// Classes step by [`MIN_CLASS`] up to here.
pub const LINEAR_MAX: usize = 64 << 10;

/// The class `len` bytes pad to: the smallest class ≥ `len`.
pub fn class(len: usize) -> usize {
    if len <= LINEAR_MAX {
        return len.max(1).div_ceil(MIN_CLASS) * MIN_CLASS;
    }
    let top = usize::BITS - 1 - len.leading_zeros();
    let step = 1usize << (top - 3);
    len.div_ceil(step) * step
}

/// Zero-pads `plain` to its class.
pub fn pad(plain: &mut Vec<u8>) {
    plain.resize(class(plain.len()), 0);
}

/// Whether `rest`, the bytes after a padded plaintext's body, is padding
/// that brings `total` to a class: zeros only.
pub fn is_padding(total: usize, rest: &[u8]) -> bool {
    class(total) == total && rest.iter().all(|&b| b == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_at_the_edges() {
        for (len, want) in [
            (0, 4096),
            (1, 4096),
            (4096, 4096),
            (4097, 8192),
            (65_535, 65_536),
            (65_536, 65_536),
            (65_537, 73_728),
            (69_672, 73_728),
            (131_072, 131_072),
            (131_073, 147_456),
            (1_000_000, 1_048_576),
            (1_048_577, 1_179_648),
            (8_393_728, 9_437_184),
        ] {
            assert_eq!(class(len), want, "{len}");
        }
    }

    #[test]
    fn every_class_is_a_page_multiple_and_within_an_eighth() {
        let mut len = 1;
        while len < 1 << 31 {
            let c = class(len);
            assert_eq!(c % MIN_CLASS, 0, "{len}");
            assert!(c >= len && class(c) == c, "{len}");
            if len > LINEAR_MAX {
                assert!((c - len) * 8 <= len, "{len} → {c}");
            }
            len = len * 9 / 8 + 1;
        }
    }
}
