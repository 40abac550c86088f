//! The HDR histogram codec: the standard V2+DEFLATE format, decoded under hard limits.
//!
//! Histograms hold `u64` counts of values in microseconds with 3 significant figures.
//! [`encode`] writes what every HDR implementation reads. [`decode`] does not hand the bytes
//! straight to `hdrhistogram`'s deserializer, because that inflates without a cap and sizes its
//! buffers from header fields: a 1 KiB report could claim gigabytes. Instead it checks every
//! length and header field itself, inflates through a cap, and only then lets `hdrhistogram`
//! parse the (uncompressed V2) bytes.
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

use std::io::Read;

use flate2::bufread::ZlibDecoder;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{
    DeserializeError, Deserializer, Serializer, V2DeflateSerializeError, V2DeflateSerializer,
    V2SerializeError,
};
use thiserror::Error;

/// Significant figures every stallwatch histogram keeps.
pub const SIGNIFICANT_FIGURES: u8 = 3;
/// Highest value (µs) stallwatch histograms track: 2^36 µs, about 19 hours.
pub const HIGHEST_TRACKABLE_US: u64 = 1 << 36;

/// Default cap on the compressed size of one histogram.
pub const DEFAULT_MAX_ENCODED_BYTES: usize = 64 * 1024;
/// Default cap on the inflated (uncompressed V2) size of one histogram.
pub const DEFAULT_MAX_DECODED_BYTES: usize = 256 * 1024;
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
/// The exact uncompressed cookie `hdrhistogram`'s deserializer accepts (word size 8 bytes).
const V2_COOKIE_CANONICAL: u32 = V2_COOKIE_BASE | 0x10;
/// Size of the cookie plus compressed-length prefix.
const COMPRESSED_PREFIX_LEN: usize = 8;
/// Size of the uncompressed V2 header.
pub const V2_HEADER_LEN: usize = 40;

/// Limits applied by [`decode`] before anything is allocated from header fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HdrLimits {
    /// Largest accepted compressed encoding, prefix included.
    pub max_encoded_bytes: usize,
    /// Largest accepted inflated (uncompressed V2) form.
    pub max_decoded_bytes: usize,
    /// Largest accepted highest trackable value; with the significant figures it bounds the
    /// size of the counts array the decoded histogram allocates.
    pub max_highest_trackable: u64,
    /// Largest accepted number of significant figures.
    pub max_significant_figures: u8,
}

impl Default for HdrLimits {
    fn default() -> Self {
        HdrLimits {
            max_encoded_bytes: DEFAULT_MAX_ENCODED_BYTES,
            max_decoded_bytes: DEFAULT_MAX_DECODED_BYTES,
            max_highest_trackable: DEFAULT_MAX_HIGHEST_TRACKABLE,
            max_significant_figures: DEFAULT_MAX_SIGNIFICANT_FIGURES,
        }
    }
}

/// Errors decoding an HDR histogram.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum HdrError {
    /// The encoding is bigger than [`HdrLimits::max_encoded_bytes`].
    #[error("encoded histogram is {len} bytes, over the {max}-byte cap")]
    EncodedTooLarge {
        /// Bytes present.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// Fewer than the 8 bytes of cookie and compressed length.
    #[error("encoded histogram is {len} bytes, shorter than its 8-byte prefix")]
    Truncated {
        /// Bytes present.
        len: usize,
    },
    /// The first four bytes are not the V2 compressed cookie.
    #[error(
        "not a V2+DEFLATE histogram: cookie {found:#010x}, expected {V2_COMPRESSED_COOKIE_BASE:#010x} (any word size)"
    )]
    BadCookie {
        /// The cookie found.
        found: u32,
    },
    /// The compressed-length field disagrees with the bytes after the prefix.
    #[error("compressed length field says {declared} bytes but {available} follow the prefix")]
    CompressedLength {
        /// The length field.
        declared: u32,
        /// Bytes actually after the prefix.
        available: usize,
    },
    /// The zlib stream is corrupt or incomplete.
    #[error("bad histogram zlib stream: {0}")]
    Inflate(String),
    /// The zlib stream ended before the declared compressed length.
    #[error("{extra} bytes after the end of the histogram zlib stream")]
    TrailingCompressed {
        /// Unused compressed bytes.
        extra: usize,
    },
    /// Inflating would exceed [`HdrLimits::max_decoded_bytes`] (a compression bomb, or limits
    /// too tight for the sender).
    #[error("histogram inflates past the {max}-byte cap")]
    DecompressedTooLarge {
        /// The cap.
        max: usize,
    },
    /// The inflated form is shorter than the 40-byte V2 header.
    #[error("inflated histogram is {len} bytes, shorter than the {V2_HEADER_LEN}-byte V2 header")]
    HeaderTruncated {
        /// Inflated bytes.
        len: usize,
    },
    /// The inflated form does not start with the V2 cookie.
    #[error(
        "inflated histogram has cookie {found:#010x}, expected {V2_COOKIE_BASE:#010x} (any word size)"
    )]
    BadInnerCookie {
        /// The cookie found.
        found: u32,
    },
    /// The payload length field disagrees with the bytes after the header.
    #[error("payload length field says {declared} bytes but {available} follow the V2 header")]
    PayloadLength {
        /// The length field.
        declared: u32,
        /// Bytes actually after the header.
        available: usize,
    },
    /// A non-zero normalizing index offset, which neither side supports.
    #[error("normalizing index offset {0} is not supported (must be 0)")]
    NormalizingOffset(u32),
    /// A conversion ratio other than 1.0 (a double histogram), which is not supported.
    #[error("integer-to-double conversion ratio {0} is not supported (must be 1.0)")]
    ConversionRatio(f64),
    /// More significant figures than [`HdrLimits::max_significant_figures`].
    #[error("histogram has {found} significant figures, the limit is {max}")]
    SignificantFigures {
        /// Significant figures declared.
        found: u32,
        /// The limit.
        max: u8,
    },
    /// A lowest discernible value of zero.
    #[error("lowest discernible value is 0, must be at least 1")]
    LowestIsZero,
    /// A highest trackable value above [`HdrLimits::max_highest_trackable`].
    #[error("highest trackable value {found} exceeds the limit {max}")]
    HighestTrackable {
        /// Highest trackable value declared.
        found: u64,
        /// The limit.
        max: u64,
    },
    /// A highest trackable value below twice the lowest discernible value.
    #[error("highest trackable value {high} is less than twice the lowest discernible value {low}")]
    Range {
        /// Lowest discernible value declared.
        low: u64,
        /// Highest trackable value declared.
        high: u64,
    },
    /// The counts array is malformed.
    #[error("histogram counts are corrupt: {0}")]
    Counts(&'static str),
    /// `hdrhistogram` rejected the histogram after all of the checks above passed.
    #[error("histogram rejected by the hdr decoder: {0}")]
    Deserialize(String),
}

/// Errors encoding a histogram (see [`try_encode`]).
#[derive(Debug, Error)]
pub enum HdrEncodeError {
    /// A bucket count above `i64::MAX`, which the V2 format cannot carry.
    #[error("a bucket count exceeds i64::MAX and cannot be encoded in the V2 format")]
    CountTooLarge,
    /// Any other serializer failure.
    #[error("histogram serialization failed: {0}")]
    Other(String),
}

/// A fresh empty histogram with stallwatch's range: 1 µs to [`HIGHEST_TRACKABLE_US`],
/// [`SIGNIFICANT_FIGURES`] significant figures.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIGHEST_TRACKABLE_US, SIGNIFICANT_FIGURES)
        .expect("constant histogram bounds are valid")
}

/// Encodes `h` in the V2+DEFLATE format.
///
/// # Panics
/// If one bucket holds more than `i64::MAX` counts, which the V2 format cannot carry; no
/// recorded histogram gets near that. Use [`try_encode`] to handle it as an error.
pub fn encode(h: &Histogram<u64>) -> Vec<u8> {
    match try_encode(h) {
        Ok(bytes) => bytes,
        Err(e) => panic!("{e}"),
    }
}

/// Encodes `h` in the V2+DEFLATE format, returning an error instead of panicking.
pub fn try_encode(h: &Histogram<u64>) -> Result<Vec<u8>, HdrEncodeError> {
    let mut out = Vec::new();
    V2DeflateSerializer::new().serialize(h, &mut out).map_err(|e| match e {
        V2DeflateSerializeError::InternalSerializationError(
            V2SerializeError::CountNotSerializable,
        ) => HdrEncodeError::CountTooLarge,
        other => HdrEncodeError::Other(other.to_string()),
    })?;
    Ok(out)
}

/// Decodes a V2+DEFLATE histogram, enforcing `limits` before anything is allocated from a
/// length or range field in the input.
pub fn decode(bytes: &[u8], limits: &HdrLimits) -> Result<Histogram<u64>, HdrError> {
    if bytes.len() > limits.max_encoded_bytes {
        return Err(HdrError::EncodedTooLarge { len: bytes.len(), max: limits.max_encoded_bytes });
    }
    let (Some(cookie), Some(declared)) = (be_u32(bytes, 0), be_u32(bytes, 4)) else {
        return Err(HdrError::Truncated { len: bytes.len() });
    };
    if cookie & !COOKIE_WORD_SIZE_MASK != V2_COMPRESSED_COOKIE_BASE {
        return Err(HdrError::BadCookie { found: cookie });
    }
    let compressed = bytes.get(COMPRESSED_PREFIX_LEN..).unwrap_or_default();
    if usize::try_from(declared).ok() != Some(compressed.len()) {
        return Err(HdrError::CompressedLength { declared, available: compressed.len() });
    }

    let mut inflated = inflate_capped(compressed, limits.max_decoded_bytes)?;
    check_v2_header(&inflated, limits)?;
    let counts = inflated.get(V2_HEADER_LEN..).unwrap_or_default();
    check_counts(counts)?;

    // hdrhistogram only accepts the exact word-size variant it writes; other implementations
    // may set different word-size bits, which V2 readers ignore.
    if let Some(cookie) = inflated.get_mut(..4) {
        cookie.copy_from_slice(&V2_COOKIE_CANONICAL.to_be_bytes());
    }
    Deserializer::new().deserialize(&mut inflated.as_slice()).map_err(|e| match e {
        DeserializeError::EncodedArrayTooLong => {
            HdrError::Counts("more counts than the histogram's value range holds")
        }
        other => HdrError::Deserialize(other.to_string()),
    })
}

/// Inflates a zlib stream, reading at most `max + 1` bytes so a bomb is caught after a bounded
/// allocation.
fn inflate_capped(compressed: &[u8], max: usize) -> Result<Vec<u8>, HdrError> {
    let mut decoder = ZlibDecoder::new(compressed);
    let mut out = Vec::new();
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    (&mut decoder)
        .take(limit)
        .read_to_end(&mut out)
        .map_err(|e| HdrError::Inflate(e.to_string()))?;
    if out.len() > max {
        return Err(HdrError::DecompressedTooLarge { max });
    }
    let used = usize::try_from(decoder.total_in()).unwrap_or(usize::MAX);
    if used < compressed.len() {
        return Err(HdrError::TrailingCompressed { extra: compressed.len() - used });
    }
    Ok(out)
}

/// Checks the uncompressed V2 header against the bytes present and `limits`.
fn check_v2_header(inflated: &[u8], limits: &HdrLimits) -> Result<(), HdrError> {
    let header_truncated = || HdrError::HeaderTruncated { len: inflated.len() };
    let cookie = be_u32(inflated, 0).ok_or_else(header_truncated)?;
    if cookie & !COOKIE_WORD_SIZE_MASK != V2_COOKIE_BASE {
        return Err(HdrError::BadInnerCookie { found: cookie });
    }
    let payload_len = be_u32(inflated, 4).ok_or_else(header_truncated)?;
    let offset = be_u32(inflated, 8).ok_or_else(header_truncated)?;
    let sigfigs = be_u32(inflated, 12).ok_or_else(header_truncated)?;
    let low = be_u64(inflated, 16).ok_or_else(header_truncated)?;
    let high = be_u64(inflated, 24).ok_or_else(header_truncated)?;
    let ratio = f64::from_bits(be_u64(inflated, 32).ok_or_else(header_truncated)?);

    let available = inflated.len().saturating_sub(V2_HEADER_LEN);
    if usize::try_from(payload_len).ok() != Some(available) {
        return Err(HdrError::PayloadLength { declared: payload_len, available });
    }
    if offset != 0 {
        return Err(HdrError::NormalizingOffset(offset));
    }
    // Exact comparison on purpose: the format writes the literal 1.0 for integer histograms.
    if ratio.to_bits() != 1.0f64.to_bits() {
        return Err(HdrError::ConversionRatio(ratio));
    }
    if sigfigs > u32::from(limits.max_significant_figures) {
        return Err(HdrError::SignificantFigures {
            found: sigfigs,
            max: limits.max_significant_figures,
        });
    }
    if low < 1 {
        return Err(HdrError::LowestIsZero);
    }
    if high > limits.max_highest_trackable {
        return Err(HdrError::HighestTrackable { found: high, max: limits.max_highest_trackable });
    }
    if low.checked_mul(2).is_none_or(|twice| high < twice) {
        return Err(HdrError::Range { low, high });
    }
    Ok(())
}

/// Walks the counts varints the way `hdrhistogram` will, rejecting what would make it
/// misbehave: a truncated varint, or a zero run of `i64::MIN` (its negation overflows).
fn check_counts(mut counts: &[u8]) -> Result<(), HdrError> {
    while !counts.is_empty() {
        let (value, used) = read_varint(counts).ok_or(HdrError::Counts("truncated varint"))?;
        if value == u64::MAX {
            // Zig-zag of u64::MAX is i64::MIN.
            return Err(HdrError::Counts("zero run longer than any histogram"));
        }
        counts = counts.get(used..).unwrap_or_default();
    }
    Ok(())
}

/// Reads one LEB128-64b9B varint: up to 8 bytes of 7 bits, then a ninth byte used whole.
fn read_varint(buf: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for i in 0..8 {
        let b = *buf.get(i)?;
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    let last = *buf.get(8)?;
    Some((value | (u64::from(last) << 56), 9))
}

fn be_u32(buf: &[u8], at: usize) -> Option<u32> {
    let b = buf.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes(b.try_into().ok()?))
}

fn be_u64(buf: &[u8], at: usize) -> Option<u64> {
    let b = buf.get(at..at.checked_add(8)?)?;
    Some(u64::from_be_bytes(b.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a V2+DEFLATE encoding from raw uncompressed V2 bytes; lets tests craft hostile
    /// histograms that the real serializer would never write.
    fn deflate_raw_v2(uncompressed: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        // Writing into a Vec cannot fail.
        let _ = z.write_all(uncompressed);
        let body = z.finish().unwrap_or_default();
        let mut out = Vec::with_capacity(super::COMPRESSED_PREFIX_LEN + body.len());
        out.extend_from_slice(&(super::V2_COMPRESSED_COOKIE_BASE | 0x10).to_be_bytes());
        out.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// Inflates a V2+DEFLATE encoding without any checks beyond a cap; lets tests mutate the
    /// uncompressed form of real histograms.
    fn inflate_raw_v2(encoded: &[u8], max: usize) -> Option<Vec<u8>> {
        super::inflate_capped(encoded.get(super::COMPRESSED_PREFIX_LEN..)?, max).ok()
    }

    fn sample() -> Histogram<u64> {
        let mut h = new_histogram();
        for v in [1, 250, 999, 1_500, 20_000, 20_001, 3_000_000, HIGHEST_TRACKABLE_US] {
            h.record(v).unwrap();
        }
        h.record_n(42_000, 17).unwrap();
        h
    }

    /// A V2 header with the given fields, without counts.
    fn v2_header(payload_len: u32, sigfigs: u32, low: u64, high: u64) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&V2_COOKIE_CANONICAL.to_be_bytes());
        b.extend_from_slice(&payload_len.to_be_bytes());
        b.extend_from_slice(&0u32.to_be_bytes());
        b.extend_from_slice(&sigfigs.to_be_bytes());
        b.extend_from_slice(&low.to_be_bytes());
        b.extend_from_slice(&high.to_be_bytes());
        b.extend_from_slice(&1.0f64.to_be_bytes());
        b
    }

    #[test]
    fn round_trip_keeps_counts_and_percentiles() {
        let h = sample();
        let bytes = encode(&h);
        assert_eq!(bytes[..4], 0x1c84_9314u32.to_be_bytes());
        let d = decode(&bytes, &HdrLimits::default()).unwrap();
        assert_eq!(d, h);
        assert_eq!(d.len(), h.len());
        assert_eq!(d.min(), h.min());
        assert_eq!(d.max(), h.max());
        for q in [0.0, 0.5, 0.9, 0.99, 0.999, 1.0] {
            assert_eq!(d.value_at_quantile(q), h.value_at_quantile(q), "q={q}");
        }
    }

    #[test]
    fn default_range_counts_array_is_224_kib() {
        // ReportLimits' memory cap is documented in terms of this size.
        assert_eq!(new_histogram().distinct_values() * 8, 224 * 1024);
    }

    #[test]
    fn round_trip_empty() {
        let h = new_histogram();
        let d = decode(&encode(&h), &HdrLimits::default()).unwrap();
        assert_eq!(d, h);
        assert!(d.is_empty());
    }

    #[test]
    fn zlib_bomb_is_rejected_before_allocating_its_size() {
        let mut raw = v2_header(1 << 20, 3, 1, HIGHEST_TRACKABLE_US);
        raw.resize(V2_HEADER_LEN + (1 << 20), 0);
        let bomb = deflate_raw_v2(&raw);
        assert!(bomb.len() < 2048, "bomb is {} bytes", bomb.len());
        let e = decode(&bomb, &HdrLimits::default()).unwrap_err();
        assert_eq!(e, HdrError::DecompressedTooLarge { max: DEFAULT_MAX_DECODED_BYTES });
        assert_eq!(e.to_string(), "histogram inflates past the 262144-byte cap");
    }

    #[test]
    fn range_too_large_is_rejected() {
        let raw = v2_header(0, 3, 1, u64::MAX / 2);
        let e = decode(&deflate_raw_v2(&raw), &HdrLimits::default()).unwrap_err();
        assert!(matches!(e, HdrError::HighestTrackable { found, .. } if found == u64::MAX / 2));
    }

    #[test]
    fn header_fields_are_checked() {
        let limits = HdrLimits::default();
        let check = |raw: Vec<u8>| decode(&deflate_raw_v2(&raw), &limits).unwrap_err();
        assert_eq!(
            check(v2_header(0, 5, 1, 1000)),
            HdrError::SignificantFigures { found: 5, max: 3 }
        );
        assert_eq!(check(v2_header(0, 3, 0, 1000)), HdrError::LowestIsZero);
        assert_eq!(check(v2_header(0, 3, 600, 1000)), HdrError::Range { low: 600, high: 1000 });
        assert_eq!(
            check(v2_header(7, 3, 1, 1000)),
            HdrError::PayloadLength { declared: 7, available: 0 }
        );
        assert_eq!(check(vec![1, 2, 3]), HdrError::HeaderTruncated { len: 3 });
        let mut raw = v2_header(0, 3, 1, 1000);
        raw[32..40].copy_from_slice(&2.0f64.to_be_bytes());
        assert_eq!(check(raw), HdrError::ConversionRatio(2.0));
    }

    #[test]
    fn hostile_counts_are_rejected() {
        let limits = HdrLimits::default();
        // A zero run of i64::MIN would overflow hdrhistogram's negation.
        let mut raw = v2_header(9, 3, 1, 1000);
        raw.extend_from_slice(&[0xff; 9]);
        let e = decode(&deflate_raw_v2(&raw), &limits).unwrap_err();
        assert!(matches!(e, HdrError::Counts(_)), "{e}");
        // A varint cut short.
        let mut raw = v2_header(1, 3, 1, 1000);
        raw.push(0x80);
        let e = decode(&deflate_raw_v2(&raw), &limits).unwrap_err();
        assert_eq!(e, HdrError::Counts("truncated varint"));
        // More counts than the range holds.
        let mut raw = v2_header(4000, 3, 1, 1000);
        raw.resize(V2_HEADER_LEN + 4000, 2);
        let e = decode(&deflate_raw_v2(&raw), &limits).unwrap_err();
        assert!(matches!(e, HdrError::Counts(_)), "{e}");
    }

    #[test]
    fn truncated_input_is_rejected() {
        let bytes = encode(&sample());
        for len in 0..bytes.len() {
            assert!(decode(&bytes[..len], &HdrLimits::default()).is_err(), "len {len}");
        }
        assert_eq!(decode(&bytes[..5], &HdrLimits::default()), Err(HdrError::Truncated { len: 5 }));
        // A consistent prefix around a cut zlib stream.
        let mut cut = bytes[..bytes.len() - 3].to_vec();
        let len = u32::try_from(cut.len() - 8).unwrap();
        cut[4..8].copy_from_slice(&len.to_be_bytes());
        assert!(matches!(decode(&cut, &HdrLimits::default()), Err(HdrError::Inflate(_))));
    }

    #[test]
    fn framing_errors() {
        let limits = HdrLimits::default();
        let mut bytes = encode(&sample());
        bytes.push(0);
        assert!(matches!(decode(&bytes, &limits), Err(HdrError::CompressedLength { .. })));
        let len = u32::try_from(bytes.len() - 8).unwrap();
        bytes[4..8].copy_from_slice(&len.to_be_bytes());
        assert_eq!(decode(&bytes, &limits), Err(HdrError::TrailingCompressed { extra: 1 }));
        bytes[0] = 0;
        assert!(matches!(decode(&bytes, &limits), Err(HdrError::BadCookie { .. })));
        let small = HdrLimits { max_encoded_bytes: 10, ..limits };
        assert!(matches!(decode(&bytes, &small), Err(HdrError::EncodedTooLarge { max: 10, .. })));
    }

    #[test]
    fn other_word_size_bits_are_accepted() {
        let h = sample();
        let mut raw = inflate_raw_v2(&encode(&h), DEFAULT_MAX_DECODED_BYTES).unwrap();
        raw[..4].copy_from_slice(&V2_COOKIE_BASE.to_be_bytes());
        assert_eq!(decode(&deflate_raw_v2(&raw), &HdrLimits::default()).unwrap(), h);
    }
}
