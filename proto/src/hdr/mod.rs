//! The HDR histogram codec: the standard V2+DEFLATE format, decoded under hard limits.
//!
//! Histograms hold `u64` counts of values in microseconds with 3 significant figures.
//! [`encode`] writes what every HDR implementation reads. [`decode`] does not hand the bytes
//! straight to `hdrhistogram`'s deserializer, because that inflates without a cap and sizes its
//! buffers from header fields: a 1 KiB report could claim gigabytes. Instead it checks every
//! length and header field itself, inflates through a cap, and parses the counts itself into
//! a histogram sized to what they hold.
//!
//! Compressed layout (big-endian):
//!
//! ```text
//!  0  cookie            u32  (0x1c849304, plus word-size bits 0x10: 0x1c849314 on the wire)
//!  4  compressed_len    u32  (bytes of zlib stream that follow)
//!  8  zlib stream of the uncompressed V2 form:
//!       0  cookie              u32  (0x1c849303 | 0x10)
//!       4  payload_len         u32  (bytes of counts after this 40-byte header)
//!       8  normalizing_offset  u32  (must be 0)
//!      12  significant_figures u32
//!      16  lowest_discernible  u64
//!      24  highest_trackable   u64
//!      32  conversion_ratio    f64  (must be 1.0)
//!      40  counts: zig-zag LEB128-64b9B varints; negative values are runs of zero counts
//! ```
//!
//! **Decoded histograms are compact.** [`decode`] sizes the counts array to the slots the
//! encoding actually carries (up to its largest recorded value), not to the header's highest
//! trackable value, and turns on auto-resize so adding or recording larger values still works.
//! A full-range histogram ([`new_histogram`]) takes 224 KiB of counts whatever it holds; a
//! decoded 10 s jitter histogram takes a few tens of KiB. Same layout (lowest discernible
//! value and significant figures), same counts at the same indexes, so `add` between the two
//! is exact; but `high()` is smaller than the header's, and `hdrhistogram`'s `==` only compares
//! the left side's slots: write `decoded == original`, not `original == decoded`.
//!
//! **Sparse decoding.** [`decode_sparse`] runs the same checks and keeps only the non-zero
//! buckets, as `(counts-array index, count)` pairs ([`SparseHistogram`]): what ingest needs to
//! merge a report into stored rows and series without allocating and zeroing a counts array
//! per histogram. [`decode`] is [`decode_sparse`] followed by [`SparseHistogram::to_histogram`].
//!
//! [`Encoder`] keeps its buffers and DEFLATE state between histograms and takes a compression
//! level; [`encode`] and [`try_encode`] use one at the default level;
//! [`Encoder::encode_counts_into`] writes the same bytes from a plain counts array of
//! stallwatch's layout.
//!
//! Files: `decode.rs` (limits, errors, the capped inflate, header checks, counts parsing),
//! `sparse.rs` ([`SparseHistogram`] and its merges), `encode.rs` ([`Encoder`]), `layout.rs`
//! (index and value arithmetic of a layout), `tests.rs`. Constants and [`new_histogram`] are
//! here; the public API is re-exported here, so callers name `hdr::*` only.

use std::cell::RefCell;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Serializer, V2SerializeError, V2Serializer};
use thiserror::Error;

mod decode;
mod encode;
mod layout;
mod sparse;
#[cfg(test)]
mod tests;

pub use decode::*;
pub use encode::*;
pub use layout::*;
pub use sparse::*;

/// Significant figures every stallwatch histogram keeps.
pub const SIGNIFICANT_FIGURES: u8 = 3;
/// Highest value (µs) stallwatch histograms track: 2^36 µs, about 19 hours.
pub const HIGHEST_TRACKABLE_US: u64 = 1 << 36;

/// Largest value a histogram with stallwatch's range ([`new_histogram`]) can hold: its counts
/// array reaches past [`HIGHEST_TRACKABLE_US`] to the end of the last bucket.
pub const HIGHEST_STORABLE_US: u64 = (1 << 37) - 1;

/// Slots in the counts array of a histogram with stallwatch's range ([`new_histogram`]):
/// indexes `0..STALLWATCH_SLOTS` hold every value up to [`HIGHEST_STORABLE_US`].
pub const STALLWATCH_SLOTS: usize = 28_672;

/// Default cap on the inflated (uncompressed V2) size of one histogram: more than any
/// histogram of stallwatch's layout takes (28,672 slots of at most 9-byte varints).
pub const DEFAULT_MAX_DECODED_BYTES: usize = 256 * 1024;
/// Default cap on the encoded size of one histogram, prefix included: whatever
/// [`DEFAULT_MAX_DECODED_BYTES`] lets through also fits as stored blocks, as agents send it
/// (5 bytes of header per 64 KiB block, 6 of zlib header and checksum, the 8-byte prefix).
pub const DEFAULT_MAX_ENCODED_BYTES: usize = DEFAULT_MAX_DECODED_BYTES + 64;
/// Default cap on a histogram's highest trackable value.
pub const DEFAULT_MAX_HIGHEST_TRACKABLE: u64 = HIGHEST_TRACKABLE_US;
/// Default cap on a histogram's significant figures.
pub const DEFAULT_MAX_SIGNIFICANT_FIGURES: u8 = SIGNIFICANT_FIGURES;

/// Cookie base of the DEFLATE-compressed V2 form.
pub const V2_COMPRESSED_COOKIE_BASE: u32 = 0x1c84_9304;
/// Cookie base of the uncompressed V2 form.
pub const V2_COOKIE_BASE: u32 = 0x1c84_9303;
/// Bits 4..8 of a cookie carry the word size, which V2 readers ignore.
const COOKIE_WORD_SIZE_MASK: u32 = 0xf0;
/// The uncompressed cookie `hdrhistogram` writes (word size 8 bytes).
#[cfg(test)]
const V2_COOKIE_CANONICAL: u32 = V2_COOKIE_BASE | 0x10;
/// Size of the cookie plus compressed-length prefix.
const COMPRESSED_PREFIX_LEN: usize = 8;
/// Size of the uncompressed V2 header.
pub const V2_HEADER_LEN: usize = 40;

/// A fresh empty histogram with stallwatch's range: 1 µs to [`HIGHEST_TRACKABLE_US`],
/// [`SIGNIFICANT_FIGURES`] significant figures.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIGHEST_TRACKABLE_US, SIGNIFICANT_FIGURES)
        .expect("constant histogram bounds are valid")
}
