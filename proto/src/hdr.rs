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

use std::cell::RefCell;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Serializer, V2SerializeError, V2Serializer};
use thiserror::Error;

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

/// The layout of [`new_histogram`].
const STALLWATCH_LAYOUT: Layout = Layout { unit_magnitude: 0, sub_bucket_half_count_magnitude: 10 };

/// The counts-array index of `value` in stallwatch's layout ([`new_histogram`]: lowest
/// discernible value 1, [`SIGNIFICANT_FIGURES`]), `None` above [`HIGHEST_STORABLE_US`].
pub fn stallwatch_index(value: u64) -> Option<usize> {
    if value > HIGHEST_STORABLE_US {
        return None;
    }
    usize::try_from(STALLWATCH_LAYOUT.index_for(value)).ok()
}

/// The highest value counted at counts-array `index` of stallwatch's layout.
pub fn stallwatch_highest_equivalent(index: u64) -> u64 {
    STALLWATCH_LAYOUT.highest_equivalent(index)
}

/// The largest counts-array index of stallwatch's layout whose values are all at most `value`
/// ([`SparseHistogram::last_index_at_most`] for that layout).
pub fn stallwatch_last_index_at_most(value: u64) -> Option<u64> {
    let index = STALLWATCH_LAYOUT.index_for(value);
    if STALLWATCH_LAYOUT.highest_equivalent(index) <= value {
        Some(index)
    } else {
        index.checked_sub(1)
    }
}

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
/// The uncompressed cookie `hdrhistogram` writes (word size 8 bytes).
#[cfg(test)]
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

/// Encodes `h` in the V2+DEFLATE format, at the default DEFLATE level.
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
    Encoder::new().encode_into(h, &mut out)?;
    Ok(out)
}

/// The DEFLATE level [`encode`] uses (zlib's default).
pub const DEFAULT_DEFLATE_LEVEL: u32 = 6;

/// A reusable V2+DEFLATE encoder: keeps the uncompressed buffer and the DEFLATE state
/// between histograms, so encoding many (the collector's stored rows) allocates nothing after
/// the first. Output is the same format as [`encode`], readable by any HDR implementation.
pub struct Encoder {
    v2: V2Serializer,
    raw: Vec<u8>,
    deflate: Compress,
    /// 0: the zlib stream is written by hand as stored blocks (see [`write_stored_zlib`]).
    level: u32,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder").finish_non_exhaustive()
    }
}

impl Default for Encoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Encoder {
    /// An encoder at [`DEFAULT_DEFLATE_LEVEL`].
    pub fn new() -> Self {
        Self::with_level(DEFAULT_DEFLATE_LEVEL)
    }

    /// An encoder at DEFLATE `level` (0 stores, 1 is fastest, 9 smallest; above 9 means 9).
    pub fn with_level(level: u32) -> Self {
        Encoder {
            v2: V2Serializer::new(),
            raw: Vec::new(),
            deflate: Compress::new(Compression::new(level.min(9)), true),
            level: level.min(9),
        }
    }

    /// Encodes `h` into `out`, replacing its contents.
    pub fn encode_into(
        &mut self,
        h: &Histogram<u64>,
        out: &mut Vec<u8>,
    ) -> Result<(), HdrEncodeError> {
        self.raw.clear();
        self.v2.serialize(h, &mut self.raw).map_err(|e| match e {
            V2SerializeError::CountNotSerializable => HdrEncodeError::CountTooLarge,
            other => HdrEncodeError::Other(other.to_string()),
        })?;
        // Stallwatch's layout is always declared with stallwatch's range, whatever the size in
        // memory: a compact or auto-resized histogram encodes to the same bytes as its
        // full-range original, and stays within decoders' range limits.
        if h.low() == 1
            && h.sigfig() == SIGNIFICANT_FIGURES
            && h.max() <= HIGHEST_STORABLE_US
            && let Some(field) = self.raw.get_mut(24..32)
        {
            field.copy_from_slice(&HIGHEST_TRACKABLE_US.to_be_bytes());
        }
        self.compress_raw(out)
    }

    /// Encodes the histogram of stallwatch's layout ([`new_histogram`]) whose counts array
    /// is `counts` (index `i` as [`stallwatch_index`] maps values; missing slots are zero)
    /// into `out`, replacing its contents: the same bytes [`Encoder::encode_into`] writes
    /// for that histogram, without building it.
    pub fn encode_counts_into(
        &mut self,
        counts: &[u64],
        out: &mut Vec<u8>,
    ) -> Result<(), HdrEncodeError> {
        if counts.len() > STALLWATCH_SLOTS {
            return Err(HdrEncodeError::Other(format!(
                "{} counts, more than stallwatch's {STALLWATCH_SLOTS} slots",
                counts.len()
            )));
        }
        self.raw.clear();
        self.raw.extend_from_slice(&(V2_COOKIE_BASE | 0x10).to_be_bytes());
        self.raw.extend_from_slice(&[0; 4]);
        self.raw.extend_from_slice(&0u32.to_be_bytes());
        self.raw.extend_from_slice(&u32::from(SIGNIFICANT_FIGURES).to_be_bytes());
        self.raw.extend_from_slice(&1u64.to_be_bytes());
        self.raw.extend_from_slice(&HIGHEST_TRACKABLE_US.to_be_bytes());
        self.raw.extend_from_slice(&1.0f64.to_be_bytes());
        // As hdrhistogram: every slot up to the largest value's (slot 0 when there is none),
        // a run of two or more zeros as its negated length.
        let limit = counts.iter().rposition(|&c| c != 0).unwrap_or(0);
        let mut index = 0;
        while index <= limit {
            let count = counts.get(index).copied().unwrap_or(0);
            index += 1;
            let value = if count == 0 {
                let mut zeros = 1i64;
                while index <= limit && counts.get(index).is_none_or(|&c| c == 0) {
                    zeros += 1;
                    index += 1;
                }
                if zeros > 1 { -zeros } else { 0 }
            } else {
                i64::try_from(count).map_err(|_| HdrEncodeError::CountTooLarge)?
            };
            write_varint(((value << 1) ^ (value >> 63)) as u64, &mut self.raw);
        }
        let payload = u32::try_from(self.raw.len() - V2_HEADER_LEN)
            .map_err(|_| HdrEncodeError::Other("counts over 4 GiB".into()))?;
        self.raw[4..8].copy_from_slice(&payload.to_be_bytes());
        self.compress_raw(out)
    }

    /// Deflates the uncompressed V2 form in `self.raw` into `out` with the compressed prefix.
    fn compress_raw(&mut self, out: &mut Vec<u8>) -> Result<(), HdrEncodeError> {
        out.clear();
        out.extend_from_slice(&(V2_COMPRESSED_COOKIE_BASE | 0x10).to_be_bytes());
        out.extend_from_slice(&[0; 4]);
        if self.level == 0 {
            write_stored_zlib(&self.raw, out);
            let body = u32::try_from(out.len() - COMPRESSED_PREFIX_LEN)
                .map_err(|_| HdrEncodeError::Other("compressed histogram over 4 GiB".into()))?;
            out[4..COMPRESSED_PREFIX_LEN].copy_from_slice(&body.to_be_bytes());
            return Ok(());
        }
        self.deflate.reset();
        loop {
            let consumed = usize::try_from(self.deflate.total_in()).unwrap_or(usize::MAX);
            let input = self.raw.get(consumed..).unwrap_or_default();
            out.reserve(input.len() / 2 + 64);
            let status = self
                .deflate
                .compress_vec(input, out, FlushCompress::Finish)
                .map_err(|e| HdrEncodeError::Other(e.to_string()))?;
            if status == Status::StreamEnd {
                break;
            }
        }
        let body = u32::try_from(out.len() - COMPRESSED_PREFIX_LEN)
            .map_err(|_| HdrEncodeError::Other("compressed histogram over 4 GiB".into()))?;
        out[4..COMPRESSED_PREFIX_LEN].copy_from_slice(&body.to_be_bytes());
        Ok(())
    }
}

/// Appends `data` as a zlib stream of stored (uncompressed) DEFLATE blocks: what zlib writes
/// at level 0, without zlib. Resetting a zlib compressor clears its hash tables, some 180,000
/// instructions, which made the reset most of the cost of encoding a minute row at level 0.
fn write_stored_zlib(data: &[u8], out: &mut Vec<u8>) {
    // CMF: deflate, 32 KiB window; FLG: fastest level, no dictionary, check bits (0x7801 is a
    // multiple of 31).
    out.extend_from_slice(&[0x78, 0x01]);
    let mut blocks = data.chunks(usize::from(u16::MAX)).peekable();
    if blocks.peek().is_none() {
        // An empty final block.
        out.extend_from_slice(&[0x01, 0x00, 0x00, 0xff, 0xff]);
    }
    while let Some(block) = blocks.next() {
        let last = blocks.peek().is_none();
        // BFINAL, BTYPE 00 (stored), then byte-aligned LEN and its complement, little-endian.
        out.push(u8::from(last));
        let len = u16::try_from(block.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    let mut adler = simd_adler32::Adler32::new();
    adler.write(data);
    out.extend_from_slice(&adler.finish().to_be_bytes());
}

/// Decodes a V2+DEFLATE histogram, enforcing `limits` before anything is allocated from a
/// length or range field in the input. The result is compact (see the module documentation);
/// it is [`decode_sparse`] followed by [`SparseHistogram::to_histogram`], so both accept and
/// refuse exactly the same inputs.
pub fn decode(bytes: &[u8], limits: &HdrLimits) -> Result<Histogram<u64>, HdrError> {
    decode_sparse(bytes, limits)?.to_histogram()
}

/// Decodes a V2+DEFLATE histogram into its non-zero buckets only, under the same checks as
/// [`decode`] (it refuses exactly what [`decode`] refuses, with the same errors). No counts
/// array is allocated: a 10 s jitter histogram with 2,000 non-zero buckets takes 16 KB
/// instead of some 55 KB of mostly zero counts, and reading it back is a walk over a slice.
pub fn decode_sparse(bytes: &[u8], limits: &HdrLimits) -> Result<SparseHistogram, HdrError> {
    decode_sparse_measured(bytes, limits).map(|(h, _)| h)
}

/// [`decode_sparse`], also returning how many bytes the histogram inflated to, so a caller
/// decoding many histograms can cap their total (`ReportLimits::max_inflated_bytes`).
pub fn decode_sparse_measured(
    bytes: &[u8],
    limits: &HdrLimits,
) -> Result<(SparseHistogram, usize), HdrError> {
    thread_local! {
        static SCRATCH: RefCell<Scratch> = const {
            RefCell::new(Scratch { inflated: Vec::new(), narrow: Vec::new(), wide: Vec::new() })
        };
    }
    SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
        Ok(mut scratch) => {
            let result = decode_sparse_with(bytes, limits, &mut scratch);
            // Keep ordinary scratch space between calls, not what a huge stored row needed.
            if scratch.heap_bytes() > SCRATCH_KEEP_BYTES {
                *scratch = Scratch::default();
            }
            result
        }
        // Only reachable if decoding re-entered itself; use fresh buffers.
        Err(_) => decode_sparse_with(bytes, limits, &mut Scratch::default()),
    })
}

/// The inflated bytes and the parsed non-zero buckets of the histogram being decoded: 32-bit
/// pairs, or 64-bit ones for the rare histogram whose indexes or counts do not fit.
#[derive(Default)]
struct Scratch {
    inflated: Vec<u8>,
    narrow: Vec<(u32, u32)>,
    wide: Vec<(u64, u64)>,
}

impl Scratch {
    fn heap_bytes(&self) -> usize {
        self.inflated.capacity() + self.narrow.capacity() * 8 + self.wide.capacity() * 16
    }
}

/// Scratch space [`decode_sparse`] keeps per thread between calls, at most.
const SCRATCH_KEEP_BYTES: usize = 1 << 20;

fn decode_sparse_with(
    bytes: &[u8],
    limits: &HdrLimits,
    scratch: &mut Scratch,
) -> Result<(SparseHistogram, usize), HdrError> {
    let Scratch { inflated, narrow, wide } = scratch;
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

    inflate_capped(compressed, limits.max_decoded_bytes, inflated)?;
    check_v2_header(inflated, limits)?;
    let counts = inflated.get(V2_HEADER_LEN..).unwrap_or_default();
    // Real histograms always fit 32-bit pairs; parse again into 64-bit ones when one does not.
    let (buckets, slots, total) = match parse_counts(counts, narrow)? {
        Some((found, slots, total)) => {
            // `to_vec` copies in one `memcpy`; `Box::from(&[T])` copies pair by pair.
            let pairs = narrow.get(..found).unwrap_or_default().to_vec();
            (Buckets::Narrow(pairs.into_boxed_slice()), slots, total)
        }
        None => {
            let (found, slots, total) = parse_counts(counts, wide)?.unwrap_or_default();
            (Buckets::new(wide.get(..found).unwrap_or_default()), slots, total)
        }
    };

    let (sigfigs, low, high) = (
        be_u32(inflated, 12).unwrap_or_default(),
        be_u64(inflated, 16).unwrap_or_default(),
        be_u64(inflated, 24).unwrap_or_default(),
    );
    let sigfig = u8::try_from(sigfigs).map_err(|_| HdrError::Deserialize("sigfigs".into()))?;
    // What `Histogram::new_with_bounds` refuses (low and high are checked already), with its
    // error's name, so this decoder refuses exactly what building the histogram would.
    if sigfig > 5 {
        return Err(HdrError::Deserialize("SigFigExceedsMax".into()));
    }
    let layout = Layout::new(low, sigfigs)
        .ok_or_else(|| HdrError::Deserialize("CannotRepresentSigFigBeyondLow".into()))?;
    if slots > layout.counts_len(high) {
        return Err(HdrError::Counts("more counts than the histogram's value range holds"));
    }
    Ok((SparseHistogram { low, high, sigfig, layout, buckets, total }, inflated.len()))
}

/// A decoded histogram as its non-zero buckets: `(index, count)` pairs in ascending index
/// order, where an index is a slot of the counts array `hdrhistogram` would lay out for the
/// histogram's lowest discernible value and significant figures. What [`decode_sparse`]
/// returns; [`SparseHistogram::to_histogram`] makes the full (compact) histogram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SparseHistogram {
    low: u64,
    high: u64,
    sigfig: u8,
    layout: Layout,
    buckets: Buckets,
    total: u64,
}

/// The `(index, count)` pairs of a [`SparseHistogram`], 32-bit when every index and count
/// fits (always, for real histograms: a 10 s report holds a few thousand values), else 64-bit.
/// Narrow pairs halve what a decoded report takes (16 KB instead of 32 KB for a jitter
/// histogram), so ingest copies and later reads half as much memory. Always narrow when the
/// pairs fit, so equal histograms compare equal.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Buckets {
    Narrow(Box<[(u32, u32)]>),
    Wide(Box<[(u64, u64)]>),
}

impl Buckets {
    fn new(pairs: &[(u64, u64)]) -> Self {
        let fits =
            |&(index, count): &(u64, u64)| index <= u32::MAX.into() && count <= u32::MAX.into();
        if pairs.iter().all(fits) {
            // Lossless: checked just above.
            Buckets::Narrow(pairs.iter().map(|&(i, c)| (i as u32, c as u32)).collect())
        } else {
            Buckets::Wide(pairs.into())
        }
    }

    fn len(&self) -> usize {
        match self {
            Buckets::Narrow(b) => b.len(),
            Buckets::Wide(b) => b.len(),
        }
    }

    fn last(&self) -> Option<(u64, u64)> {
        self.iter().next_back()
    }

    fn iter(&self) -> RawBuckets<'_> {
        RawBuckets(match self {
            Buckets::Narrow(b) => RawIter::Narrow(b.iter()),
            Buckets::Wide(b) => RawIter::Wide(b.iter()),
        })
    }

    fn heap_bytes(&self) -> usize {
        match self {
            Buckets::Narrow(b) => std::mem::size_of_val::<[(u32, u32)]>(b),
            Buckets::Wide(b) => std::mem::size_of_val::<[(u64, u64)]>(b),
        }
    }
}

/// The non-zero buckets of a [`SparseHistogram`] as `(index, count)`, ascending
/// ([`SparseHistogram::raw_buckets`]).
#[derive(Debug, Clone)]
pub struct RawBuckets<'a>(RawIter<'a>);

#[derive(Debug, Clone)]
enum RawIter<'a> {
    Narrow(std::slice::Iter<'a, (u32, u32)>),
    Wide(std::slice::Iter<'a, (u64, u64)>),
}

impl Iterator for RawBuckets<'_> {
    type Item = (u64, u64);

    #[inline]
    fn next(&mut self) -> Option<(u64, u64)> {
        match &mut self.0 {
            RawIter::Narrow(it) => it.next().map(|&(i, c)| (u64::from(i), u64::from(c))),
            RawIter::Wide(it) => it.next().copied(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let len = self.len();
        (len, Some(len))
    }

    // One match for the whole walk rather than one per bucket.
    #[inline]
    fn fold<B, F: FnMut(B, (u64, u64)) -> B>(self, init: B, mut f: F) -> B {
        match self.0 {
            RawIter::Narrow(it) => {
                it.fold(init, |acc, &(i, c)| f(acc, (u64::from(i), u64::from(c))))
            }
            RawIter::Wide(it) => it.fold(init, |acc, &pair| f(acc, pair)),
        }
    }
}

impl DoubleEndedIterator for RawBuckets<'_> {
    fn next_back(&mut self) -> Option<(u64, u64)> {
        match &mut self.0 {
            RawIter::Narrow(it) => it.next_back().map(|&(i, c)| (u64::from(i), u64::from(c))),
            RawIter::Wide(it) => it.next_back().copied(),
        }
    }
}

impl ExactSizeIterator for RawBuckets<'_> {
    fn len(&self) -> usize {
        match &self.0 {
            RawIter::Narrow(it) => it.len(),
            RawIter::Wide(it) => it.len(),
        }
    }
}

/// One non-zero bucket of a [`SparseHistogram`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SparseBucket {
    /// Index in the counts array.
    pub index: u64,
    /// Lowest value counted in the bucket (`Histogram::value_from_index`).
    pub value: u64,
    /// Highest value counted in the bucket (`Histogram::highest_equivalent`), what
    /// `iter_recorded` reports as `value_iterated_to`.
    pub highest: u64,
    /// Count, never 0.
    pub count: u64,
}

impl SparseHistogram {
    /// The non-zero slots of a counts array of stallwatch's layout ([`new_histogram`], as
    /// [`Encoder::encode_counts_into`] takes it), e.g. a merged row, as a histogram with
    /// stallwatch's header. `None` if `counts` has more than [`STALLWATCH_SLOTS`] slots.
    pub fn from_stallwatch_counts(counts: &[u64]) -> Option<SparseHistogram> {
        if counts.len() > STALLWATCH_SLOTS {
            return None;
        }
        // One pass to size the pairs (and pick their width), one to fill them.
        let (mut nonzero, mut largest, mut total) = (0usize, 0u64, 0u64);
        for &count in counts {
            nonzero += usize::from(count != 0);
            largest = largest.max(count);
            total = total.saturating_add(count);
        }
        let pairs = (0u64..).zip(counts).filter(|&(_, &count)| count != 0);
        // Indexes are below STALLWATCH_SLOTS, so they always fit 32 bits.
        let buckets = if largest <= u64::from(u32::MAX) {
            let mut narrow = Vec::with_capacity(nonzero);
            narrow.extend(pairs.map(|(index, &count)| (index as u32, count as u32)));
            Buckets::Narrow(narrow.into_boxed_slice())
        } else {
            let mut wide = Vec::with_capacity(nonzero);
            wide.extend(pairs.map(|(index, &count)| (index, count)));
            Buckets::Wide(wide.into_boxed_slice())
        };
        Some(SparseHistogram {
            low: 1,
            high: HIGHEST_TRACKABLE_US,
            sigfig: SIGNIFICANT_FIGURES,
            layout: STALLWATCH_LAYOUT,
            buckets,
            total,
        })
    }

    /// Total count (saturating, as `Histogram::len`).
    pub fn len(&self) -> u64 {
        self.total
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Lowest discernible value from the header.
    pub fn low(&self) -> u64 {
        self.low
    }

    /// Highest trackable value from the header.
    pub fn high(&self) -> u64 {
        self.high
    }

    /// Significant figures from the header.
    pub fn sigfig(&self) -> u8 {
        self.sigfig
    }

    /// Whether the layout is stallwatch's ([`new_histogram`]): lowest discernible value 1 and
    /// [`SIGNIFICANT_FIGURES`], so indexes are those of every stallwatch histogram.
    pub fn is_stallwatch_layout(&self) -> bool {
        self.low == 1 && self.sigfig == SIGNIFICANT_FIGURES
    }

    /// Number of non-zero buckets.
    pub fn bucket_count(&self) -> usize {
        self.buckets.len()
    }

    /// `(index, count)` of the non-zero buckets, ascending.
    pub fn raw_buckets(&self) -> RawBuckets<'_> {
        self.buckets.iter()
    }

    /// Counts-array index of the last non-zero bucket, `None` when there is none.
    pub fn last_index(&self) -> Option<u64> {
        self.buckets.last().map(|(index, _)| index)
    }

    /// The lowest value counted at counts-array `index` in this histogram's layout.
    pub fn value_for(&self, index: u64) -> u64 {
        self.layout.value_for(index)
    }

    /// The highest value counted at counts-array `index` in this histogram's layout.
    pub fn highest_at(&self, index: u64) -> u64 {
        self.layout.highest_equivalent(index)
    }

    /// The largest counts-array index whose values are all at most `value` in this
    /// histogram's layout (each bucket of index `i <= last_index_at_most(v)` has its
    /// [`SparseBucket::highest`] `<= v`), `None` when even index 0 holds larger values.
    /// Lets a caller place buckets against fixed bounds by comparing indexes.
    pub fn last_index_at_most(&self, value: u64) -> Option<u64> {
        let index = self.layout.index_for(value);
        if self.layout.highest_equivalent(index) <= value {
            Some(index)
        } else {
            index.checked_sub(1)
        }
    }

    /// The non-zero buckets, ascending, with their value range.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = SparseBucket> + '_ {
        let layout = self.layout;
        self.buckets.iter().map(move |(index, count)| SparseBucket {
            index,
            value: layout.value_for(index),
            highest: layout.highest_equivalent(index),
            count,
        })
    }

    /// As `Histogram::max`: the highest value equivalent to the largest recorded value, 0 if
    /// only zeros (or nothing) were recorded.
    pub fn max(&self) -> u64 {
        match self.buckets.last() {
            Some((index, _)) if self.layout.value_for(index) > 0 => {
                self.layout.highest_equivalent(index)
            }
            _ => 0,
        }
    }

    /// As `Histogram::min_nz`: the lowest value equivalent to the smallest non-zero recorded
    /// value, `u64::MAX` if there is none.
    pub fn min_nz(&self) -> u64 {
        self.buckets
            .iter()
            .map(|(index, _)| self.layout.value_for(index))
            .find(|&v| v > self.layout.unit_mask())
            .unwrap_or(u64::MAX)
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.buckets.heap_bytes()
    }

    /// The full histogram, compact as [`decode`] makes it: counts up to the largest value
    /// held, auto-resizing when that is less than the header's range.
    pub fn to_histogram(&self) -> Result<Histogram<u64>, HdrError> {
        let slots = self.buckets.last().map_or(0, |(index, _)| index.saturating_add(1));
        // Compact: the smallest range whose counts array holds the slots present (never more
        // than the header's).
        let compact =
            compact_high(self.low, u32::from(self.sigfig), slots).filter(|&c| c < self.high);
        let mut h =
            Histogram::<u64>::new_with_bounds(self.low, compact.unwrap_or(self.high), self.sigfig)
                .map_err(|e| HdrError::Deserialize(format!("{e:?}")))?;
        for (index, count) in self.buckets.iter() {
            h.record_n(self.layout.value_for(index), count).map_err(|_| {
                HdrError::Counts("more counts than the histogram's value range holds")
            })?;
        }
        if compact.is_some() {
            h.auto(true);
        }
        Ok(h)
    }
}

/// How `hdrhistogram` maps counts-array indexes to values, for a lowest discernible value and
/// significant figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Layout {
    unit_magnitude: u32,
    sub_bucket_half_count_magnitude: u32,
}

impl Layout {
    fn new(low: u64, sigfigs: u32) -> Option<Self> {
        if low == 0 || sigfigs > 5 {
            return None;
        }
        // As hdrhistogram computes it, in floating point: a `low` within 2^-53 below a power
        // of two rounds up to it, and a header that `Histogram::new_with_bounds` refuses
        // for that must be refused here too.
        let unit_magnitude = (low as f64).log2().floor() as u32;
        // Unit resolution up to 2 * 10^sigfigs, rounded up to a power of two.
        let largest = 2 * 10u64.pow(sigfigs);
        let sub_bucket_count_magnitude = 64 - (largest - 1).leading_zeros();
        if unit_magnitude + sub_bucket_count_magnitude > 63 {
            return None;
        }
        Some(Layout {
            unit_magnitude,
            sub_bucket_half_count_magnitude: sub_bucket_count_magnitude - 1,
        })
    }

    /// Values below this are unit-equivalent to 0.
    fn unit_mask(&self) -> u64 {
        (1u64 << self.unit_magnitude) - 1
    }

    /// `(bucket shift, sub-bucket)` of `index`.
    fn split(&self, index: u64) -> (u64, u64) {
        let half = 1u64 << self.sub_bucket_half_count_magnitude;
        let bucket = (index >> self.sub_bucket_half_count_magnitude).saturating_sub(1);
        let sub_bucket = if index < half { index } else { (index & (half - 1)) + half };
        (bucket + u64::from(self.unit_magnitude), sub_bucket)
    }

    /// The lowest value counted at `index` (as `hdrhistogram`'s private `value_for`).
    fn value_for(&self, index: u64) -> u64 {
        let (shift, sub_bucket) = self.split(index);
        if shift >= 64 { u64::MAX } else { sub_bucket << shift }
    }

    /// The highest value counted at `index` (as `hdrhistogram`'s `highest_equivalent` of
    /// [`Layout::value_for`]).
    fn highest_equivalent(&self, index: u64) -> u64 {
        let (shift, _) = self.split(index);
        let value = self.value_for(index);
        if shift >= 64 || value == u64::MAX {
            return u64::MAX;
        }
        value.saturating_add(1 << shift) - 1
    }

    /// The counts-array index of `value` (as `hdrhistogram`'s private `index_for`).
    fn index_for(&self, value: u64) -> u64 {
        let count_magnitude = self.sub_bucket_half_count_magnitude + 1;
        let mask = ((1u64 << count_magnitude) - 1) << self.unit_magnitude;
        let base = 64 - self.unit_magnitude - count_magnitude;
        let bucket = base - (value | mask).leading_zeros();
        let sub_bucket = value >> (bucket + self.unit_magnitude);
        let half = 1u64 << self.sub_bucket_half_count_magnitude;
        ((u64::from(bucket) + 1) << self.sub_bucket_half_count_magnitude) + sub_bucket - half
    }

    /// Length of the counts array `hdrhistogram` allocates for highest trackable value `high`.
    fn counts_len(&self, high: u64) -> u64 {
        let half = 1u64 << self.sub_bucket_half_count_magnitude;
        let mut smallest_untrackable = (half << 1) << self.unit_magnitude;
        let mut buckets = 1u64;
        while smallest_untrackable <= high {
            if smallest_untrackable > u64::MAX / 2 {
                buckets += 1;
                break;
            }
            smallest_untrackable <<= 1;
            buckets += 1;
        }
        (buckets + 1) * half
    }
}

/// The smallest highest trackable value whose counts array (for `low` and `sigfigs`, as
/// `hdrhistogram` lays it out) has at least `slots` entries; `None` when it cannot be
/// computed (the caller then keeps the declared range).
fn compact_high(low: u64, sigfigs: u32, slots: u64) -> Option<u64> {
    let layout = Layout::new(low, sigfigs)?;
    let half_count = 1u64 << layout.sub_bucket_half_count_magnitude;
    // counts length = (buckets + 1) * half_count.
    let buckets = slots.div_ceil(half_count).saturating_sub(1).max(1);
    let top_bit = u64::from(layout.unit_magnitude + layout.sub_bucket_half_count_magnitude)
        .saturating_add(buckets);
    if top_bit >= 63 {
        return None;
    }
    // With this high, hdrhistogram needs exactly `buckets` buckets.
    let high = (1u64 << top_bit) - 1;
    Some(high.max(low.checked_mul(2)?))
}

/// Inflates a zlib stream, producing at most `max + 1` bytes so a bomb is caught after a
/// bounded allocation. Reuses one inflate state per thread (creating one costs more than
/// inflating a report's histogram).
fn inflate_capped(compressed: &[u8], max: usize, out: &mut Vec<u8>) -> Result<(), HdrError> {
    thread_local! {
        static INFLATE: RefCell<Decompress> = RefCell::new(Decompress::new(true));
    }
    INFLATE.with(|state| match state.try_borrow_mut() {
        Ok(mut decompress) => inflate_with(&mut decompress, compressed, max, out),
        // Only reachable if inflating re-entered itself; use a fresh state.
        Err(_) => inflate_with(&mut Decompress::new(true), compressed, max, out),
    })
}

/// Inflates into `out` (cleared first, its capacity reused), producing at most `max + 1`
/// bytes.
fn inflate_with(
    decompress: &mut Decompress,
    compressed: &[u8],
    max: usize,
    out: &mut Vec<u8>,
) -> Result<(), HdrError> {
    decompress.reset(true);
    let limit = max.saturating_add(1);
    out.clear();
    if out.capacity() > limit {
        // A buffer reused from a decode under larger limits: bring it within this one's.
        out.shrink_to(limit);
    }
    out.reserve(compressed.len().saturating_mul(4).max(64).min(limit));
    loop {
        let consumed = usize::try_from(decompress.total_in()).unwrap_or(usize::MAX);
        let input = compressed.get(consumed..).unwrap_or_default();
        if out.len() == out.capacity() {
            // out.len() <= max here, so there is room below the limit.
            out.reserve(out.len().max(64).min(limit - out.len()));
        }
        let before = (decompress.total_in(), decompress.total_out());
        let status = decompress
            .decompress_vec(input, out, FlushDecompress::Finish)
            .map_err(|e| HdrError::Inflate(e.to_string()))?;
        if out.len() > max {
            return Err(HdrError::DecompressedTooLarge { max });
        }
        match status {
            Status::StreamEnd => break,
            _ if out.len() < out.capacity()
                && (decompress.total_in(), decompress.total_out()) == before =>
            {
                // Neither consumed nor produced with room to spare: the stream is cut short.
                return Err(HdrError::Inflate("unexpected end of zlib stream".into()));
            }
            _ => {}
        }
    }
    let used = usize::try_from(decompress.total_in()).unwrap_or(usize::MAX);
    if used < compressed.len() {
        return Err(HdrError::TrailingCompressed { extra: compressed.len() - used });
    }
    Ok(())
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

/// A `(index, count)` pair as [`parse_counts`] stores it: 32-bit ([`Buckets::Narrow`]) or
/// 64-bit.
trait Pair: Copy + Default {
    /// Largest index or count the pair holds.
    const MAX: u64;
    /// The pair; only called when both fit (or for a zero count, which is overwritten).
    fn new(index: u64, count: u64) -> Self;
    fn index(self) -> u64;
}

impl Pair for (u32, u32) {
    const MAX: u64 = u32::MAX as u64;
    #[inline(always)]
    fn new(index: u64, count: u64) -> Self {
        (index as u32, count as u32)
    }
    fn index(self) -> u64 {
        u64::from(self.0)
    }
}

impl Pair for (u64, u64) {
    const MAX: u64 = u64::MAX;
    #[inline(always)]
    fn new(index: u64, count: u64) -> Self {
        (index, count)
    }
    fn index(self) -> u64 {
        self.0
    }
}

/// Parses the counts varints into `nonzero`, rejecting what `hdrhistogram` would misread: a
/// truncated varint, or a zero run of `i64::MIN` (its negation overflows). Leaves the
/// non-zero counts by index in the first entries of `nonzero` and returns how many there are,
/// the number of slots up to and including the last of them (saturating), what the decoded
/// counts array must hold, and the total count (saturating, as `hdrhistogram` adds it up).
/// `None` when a non-zero count or its index does not fit `P` (never for 64-bit pairs).
fn parse_counts<P: Pair>(
    mut counts: &[u8],
    nonzero: &mut Vec<P>,
) -> Result<Option<(usize, u64, u64)>, HdrError> {
    // At least a byte per count, so never more entries than bytes: every slot is written
    // before it is read. Reused scratch keeps its length between calls, so it is only
    // filled where it grows.
    if nonzero.len() < counts.len() {
        nonzero.resize(counts.len(), P::default());
    }
    let mut state = CountsState { len: 0, index: 0, total: 0 };
    // Nearly every varint of a real histogram is one byte (a count under 64 or a run of
    // under 64 zeros), so take eight at a time while none has its continuation bit set.
    while let Some(word) = counts.first_chunk::<8>().map(|b| u64::from_le_bytes(*b)) {
        if word & 0x8080_8080_8080_8080 == 0 {
            if !state.step_eight(word, nonzero) {
                return Ok(None);
            }
            counts = counts.get(8..).unwrap_or_default();
        } else {
            let Some(rest) = state.step_varint(counts, nonzero)? else { return Ok(None) };
            counts = rest;
        }
    }
    while !counts.is_empty() {
        let Some(rest) = state.step_varint(counts, nonzero)? else { return Ok(None) };
        counts = rest;
    }
    let CountsState { len, index: _, total } = state;
    let end = len
        .checked_sub(1)
        .and_then(|last| nonzero.get(last))
        .map_or(0, |pair| pair.index().saturating_add(1));
    Ok(Some((len, end, total)))
}

/// Where [`parse_counts`] is: non-zero buckets found, the next slot's index, the total count.
struct CountsState {
    len: usize,
    index: u64,
    total: u64,
}

impl CountsState {
    /// Reads one varint from the front of `counts` and applies it; returns the rest, or
    /// `None` if its count does not fit `P`.
    #[inline]
    fn step_varint<'a, P: Pair>(
        &mut self,
        counts: &'a [u8],
        nonzero: &mut [P],
    ) -> Result<Option<&'a [u8]>, HdrError> {
        let (value, used) = read_varint(counts).ok_or(HdrError::Counts("truncated varint"))?;
        if value == u64::MAX {
            // Zig-zag of u64::MAX is i64::MIN.
            return Err(HdrError::Counts("zero run longer than any histogram"));
        }
        if value & 1 == 0 && value != 0 && (value >> 1 > P::MAX || self.index > P::MAX) {
            return Ok(None);
        }
        self.step(value, nonzero);
        Ok(Some(counts.get(used..).unwrap_or_default()))
    }

    /// Applies eight one-byte varints (the bytes of `word`, none with its continuation bit):
    /// [`CountsState::step`] eight times, with the bounds check and the overflow checks done
    /// once for the block instead of per varint. False if an index in it may not fit `P`.
    #[inline(always)]
    fn step_eight<P: Pair>(&mut self, word: u64, nonzero: &mut [P]) -> bool {
        // A block advances the index by at most 8 * 64, and its counts are under 64.
        if self.index > P::MAX - 512 {
            return false;
        }
        // Eight bytes remain and each earlier byte made at most one entry, so the block's
        // eight slots exist; an index near overflow (after a huge zero run) takes the slow way.
        let slots =
            nonzero.get_mut(self.len..self.len + 8).and_then(|s| <&mut [_; 8]>::try_from(s).ok());
        let (Some(slots), true) = (slots, self.index < 1 << 62) else {
            for k in 0..8 {
                self.step((word >> (8 * k)) & 0x7f, nonzero);
            }
            return true;
        };
        let (mut at, mut index, mut total) = (0usize, self.index, 0u64);
        for k in 0..8 {
            let value = (word >> (8 * k)) & 0x7f;
            let (half, odd) = (value >> 1, value & 1);
            // Even: a count of `half`; odd: a run of `half + 1` zeros (see `step`).
            let count = half & odd.wrapping_sub(1);
            slots[at & 7] = P::new(index, count);
            at += usize::from(count != 0);
            total += count;
            index += (half & 0u64.wrapping_sub(odd)) + 1;
        }
        self.len += at;
        self.index = index;
        self.total = self.total.saturating_add(total);
        true
    }

    /// Applies one zig-zag value: even, a count of `value / 2` at the current slot; odd, a
    /// run of `value / 2 + 1` zero counts. Written without data-dependent branches (counts
    /// and zero runs alternate at random in real data, so a branch would mispredict often).
    #[inline(always)]
    fn step<P: Pair>(&mut self, value: u64, nonzero: &mut [P]) {
        let half = value >> 1;
        let is_run = value & 1 == 1;
        let count = std::hint::select_unpredictable(is_run, 0, half);
        let advance = std::hint::select_unpredictable(is_run, half.saturating_add(1), 1);
        if let Some(slot) = nonzero.get_mut(self.len) {
            *slot = P::new(self.index, count);
        }
        self.len += usize::from(count != 0);
        self.total = self.total.saturating_add(count);
        self.index = self.index.saturating_add(advance);
    }
}

/// Writes one LEB128-64b9B varint (as hdrhistogram's `varint_write`).
fn write_varint(mut value: u64, out: &mut Vec<u8>) {
    for _ in 0..8 {
        if value < 0x80 {
            out.push(value as u8);
            return;
        }
        out.push(0x80 | (value & 0x7f) as u8);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Reads one LEB128-64b9B varint: up to 8 bytes of 7 bits, then a ninth byte used whole.
#[inline]
fn read_varint(buf: &[u8]) -> Option<(u64, usize)> {
    if let Some(&b) = buf.first()
        && b & 0x80 == 0
    {
        return Some((u64::from(b), 1));
    }
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
    use hdrhistogram::serialization::Deserializer;

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
        let mut out = Vec::new();
        super::inflate_capped(encoded.get(super::COMPRESSED_PREFIX_LEN..)?, max, &mut out).ok()?;
        Some(out)
    }

    #[test]
    fn counts_beyond_32_bits_decode_into_wide_pairs_with_the_same_result() {
        let mut h = new_histogram();
        h.record_n(3, 7).unwrap();
        h.record_n(40_000, 5_000_000_000).unwrap();
        h.record_n(900_000, 2).unwrap();
        let sparse = decode_sparse(&encode(&h), &HdrLimits::default()).unwrap();
        assert_eq!(sparse.heap_bytes(), 3 * 16, "wide pairs");
        assert_eq!(sparse.len(), 5_000_000_009);
        assert_eq!(sparse.to_histogram().unwrap(), h);
        h.reset();
        h.record_n(40_000, u64::from(u32::MAX)).unwrap();
        let sparse = decode_sparse(&encode(&h), &HdrLimits::default()).unwrap();
        assert_eq!(sparse.heap_bytes(), 8, "a count of u32::MAX still fits a narrow pair");
        assert_eq!(sparse.to_histogram().unwrap(), h);
    }

    #[test]
    fn stored_zlib_streams_inflate_to_their_input() {
        use std::io::Read;
        for len in [0, 1, 1000, 65_535, 65_536, 200_000] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let mut stream = Vec::new();
            write_stored_zlib(&data, &mut stream);
            let mut back = Vec::new();
            flate2::read::ZlibDecoder::new(&stream[..]).read_to_end(&mut back).unwrap();
            assert_eq!(back, data, "{len} bytes");
            // Nothing after the checksum: the decoder's trailing-bytes check holds.
            let mut inflated = Vec::new();
            inflate_capped(&stream, len + 1, &mut inflated).unwrap();
            assert_eq!(inflated, data, "{len} bytes");
        }
        // Level 0 histograms decode to what was encoded.
        let h = sample();
        let mut out = Vec::new();
        Encoder::with_level(0).encode_into(&h, &mut out).unwrap();
        assert_eq!(decode(&out, &HdrLimits::default()).unwrap(), h);
    }

    #[test]
    fn sparse_from_stallwatch_counts_equals_decoding_the_encoded_counts() {
        let mut huge = sample();
        // A count past 32 bits: the pairs are stored wide.
        huge.record_n(7, 1 << 40).unwrap();
        for h in [sample(), huge] {
            let decoded = decode_sparse(&encode(&h), &HdrLimits::default()).unwrap();
            let mut counts = vec![0u64; 1 + decoded.last_index().unwrap() as usize];
            for (index, count) in decoded.raw_buckets() {
                counts[index as usize] = count;
            }
            // Trailing zeros change nothing.
            counts.extend([0, 0, 0]);
            assert_eq!(SparseHistogram::from_stallwatch_counts(&counts), Some(decoded));
        }
        let empty = SparseHistogram::from_stallwatch_counts(&[0; 10]).unwrap();
        assert!(empty.is_empty() && empty.is_stallwatch_layout() && empty.bucket_count() == 0);
        assert_eq!(SparseHistogram::from_stallwatch_counts(&[1; STALLWATCH_SLOTS + 1]), None);
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
    fn a_low_that_rounds_up_to_a_power_of_two_is_refused_as_hdrhistogram_refuses_it() {
        // hdrhistogram takes log2 of `low` in floating point: 2^63 - 1 rounds to 2^63, and
        // with sigfig 0 the layout no longer fits 64 bits. Found by the decoders proptest.
        let limits = HdrLimits {
            max_highest_trackable: u64::MAX,
            max_significant_figures: 5,
            ..HdrLimits::default()
        };
        let bytes = deflate_raw_v2(&v2_header(0, 0, i64::MAX as u64, u64::MAX));
        let expected = Histogram::<u64>::new_with_bounds(i64::MAX as u64, u64::MAX, 0);
        assert!(expected.is_err());
        assert!(matches!(
            decode_sparse(&bytes, &limits),
            Err(HdrError::Deserialize(e)) if e == "CannotRepresentSigFigBeyondLow"
        ));
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

    #[test]
    fn compact_high_covers_the_slots_as_hdrhistogram_lays_them_out() {
        for sigfigs in 0..=5u8 {
            for low in [1u64, 2, 3, 1000, 1 << 20] {
                let Ok(full) = Histogram::<u64>::new_with_bounds(low, u64::MAX / 4, sigfigs) else {
                    continue;
                };
                for slots in [0, 1, 2, 100, 1023, 1024, 1025, 2048, 3000, 5000, 20_000, 28_672] {
                    let slots = slots.min(full.distinct_values() as u64);
                    let high = compact_high(low, u32::from(sigfigs), slots).unwrap();
                    let h = Histogram::<u64>::new_with_bounds(low, high, sigfigs).unwrap();
                    let len = h.distinct_values() as u64;
                    assert!(len >= slots, "low {low} sigfigs {sigfigs} slots {slots}: {len}");
                    // At most one bucket (half a sub-bucket count) to spare; at least two
                    // half-buckets whatever the slots.
                    let half = (2 * 10u64.pow(u32::from(sigfigs))).next_power_of_two() / 2;
                    assert!(
                        len <= slots.max(2 * half) + half,
                        "low {low} sigfigs {sigfigs} {slots}"
                    );
                }
            }
        }
    }

    #[test]
    fn counts_len_is_hdrhistograms() {
        for sigfigs in 0..=5u8 {
            for low in [1u64, 2, 3, 1000, 1 << 20] {
                for high in [2 * low, 1000, 1 << 20, 1 << 36, u64::MAX / 4, u64::MAX] {
                    let Ok(h) = Histogram::<u64>::new_with_bounds(low, high, sigfigs) else {
                        continue;
                    };
                    let layout = Layout::new(low, u32::from(sigfigs)).unwrap();
                    assert_eq!(layout.counts_len(high), h.distinct_values() as u64, "{low} {high}");
                }
            }
        }
    }

    #[test]
    fn stallwatch_index_is_hdrhistograms() {
        assert_eq!(new_histogram().distinct_values(), STALLWATCH_SLOTS);
        let h = new_histogram();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut values: Vec<u64> = (0..5000u64).collect();
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            values.push(x % (1 << (x % 38)));
        }
        values.extend([HIGHEST_TRACKABLE_US, HIGHEST_STORABLE_US, HIGHEST_STORABLE_US + 1]);
        for v in values {
            let Some(i) = stallwatch_index(v) else {
                assert!(v > HIGHEST_STORABLE_US);
                continue;
            };
            assert!(i < STALLWATCH_SLOTS, "{v}");
            assert_eq!(STALLWATCH_LAYOUT.value_for(i as u64), h.lowest_equivalent(v), "{v}");
            assert_eq!(STALLWATCH_LAYOUT.highest_equivalent(i as u64), h.highest_equivalent(v));
            // The last index at most v: its highest value is <= v, the next one's is not.
            let sparse = decode_sparse(&encode(&h), &HdrLimits::default()).unwrap();
            match sparse.last_index_at_most(v) {
                Some(j) => {
                    assert!(STALLWATCH_LAYOUT.highest_equivalent(j) <= v, "{v}");
                    assert!(STALLWATCH_LAYOUT.highest_equivalent(j + 1) > v, "{v}");
                }
                None => assert!(STALLWATCH_LAYOUT.highest_equivalent(0) > v, "{v}"),
            }
        }
    }

    #[test]
    fn encode_counts_matches_encode() {
        let mut x = 0x1234_5678_9abc_def1u64;
        let mut shapes = vec![new_histogram(), sample()];
        let mut zeros = new_histogram();
        zeros.record_n(0, 3).unwrap();
        shapes.push(zeros);
        // Counts around the one-byte varint edge and far past it.
        let mut big = new_histogram();
        for (i, n) in [63, 64, 65, 127, 128, 1 << 20, 1 << 40, 1].into_iter().enumerate() {
            big.record_n(1_000 * (i as u64 + 1), n).unwrap();
        }
        shapes.push(big);
        for n in [1, 2, 10, 3000] {
            let mut h = new_histogram();
            for _ in 0..n {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                h.record_n(x % (1 << (x % 37)), x % 3 + 1).unwrap();
            }
            shapes.push(h);
        }
        for level in [0, 6] {
            let mut encoder = Encoder::with_level(level);
            let (mut ours, mut theirs) = (Vec::new(), Vec::new());
            for h in &shapes {
                let sparse = decode_sparse(&encode(h), &HdrLimits::default()).unwrap();
                let mut counts = vec![0u64; 64];
                for (i, c) in sparse.raw_buckets() {
                    if counts.len() <= i as usize {
                        counts.resize(i as usize + 1, 0);
                    }
                    counts[i as usize] = c;
                }
                encoder.encode_counts_into(&counts, &mut ours).unwrap();
                encoder.encode_into(h, &mut theirs).unwrap();
                assert_eq!(ours, theirs, "level {level}, {} values", h.len());
            }
        }
        let too_many = vec![1u64; STALLWATCH_SLOTS + 1];
        assert!(Encoder::new().encode_counts_into(&too_many, &mut Vec::new()).is_err());
        let huge = [0, u64::MAX];
        assert!(matches!(
            Encoder::new().encode_counts_into(&huge, &mut Vec::new()),
            Err(HdrEncodeError::CountTooLarge)
        ));
    }

    #[test]
    fn highest_storable_is_the_end_of_the_counts_array() {
        let mut h = new_histogram();
        assert!(h.record(HIGHEST_STORABLE_US).is_ok());
        assert!(h.record(HIGHEST_STORABLE_US + 1).is_err());
    }

    #[test]
    fn decoded_histograms_are_compact_and_exact() {
        let mut h = new_histogram();
        for v in [3, 250, 999, 1_500, 20_000, 20_001] {
            h.record(v).unwrap();
        }
        let d = decode(&encode(&h), &HdrLimits::default()).unwrap();
        assert!(d.distinct_values() * 8 <= 48 * 1024, "{} slots", d.distinct_values());
        assert_eq!(d, h);
        assert_eq!(d.len(), h.len());
        assert_eq!((d.min(), d.max()), (h.min(), h.max()));
        // Adding both ways gives the full-range result.
        let mut full = new_histogram();
        full.add(&d).unwrap();
        assert_eq!(full, h);
        let mut compact = d.clone();
        compact.add(sample()).unwrap();
        let mut expected = h.clone();
        expected.add(sample()).unwrap();
        assert_eq!(compact, expected);
        assert_eq!(decode(&encode(&compact), &HdrLimits::default()).unwrap(), expected);
        // A compact histogram encodes to the same bytes as its full-range original.
        assert_eq!(encode(&d), encode(&h));
        assert_eq!(encode(&compact), encode(&expected));
    }

    #[test]
    fn reused_encoder_matches_fresh_encodings_at_every_level() {
        let shapes: Vec<Histogram<u64>> = vec![sample(), new_histogram(), {
            let mut h = new_histogram();
            for v in (1..5000).map(|i| i * 37) {
                h.record_n(v, v % 7 + 1).unwrap();
            }
            h
        }];
        for level in [0, 1, 6, 9] {
            let mut encoder = Encoder::with_level(level);
            let mut out = Vec::new();
            for _ in 0..2 {
                for h in &shapes {
                    encoder.encode_into(h, &mut out).unwrap();
                    assert_eq!(&decode(&out, &HdrLimits::default()).unwrap(), h, "level {level}");
                    // hdrhistogram's own reader accepts it too.
                    let theirs: Histogram<u64> =
                        Deserializer::new().deserialize(&mut out.as_slice()).unwrap();
                    assert_eq!(&theirs, h);
                }
            }
        }
    }

    #[test]
    fn decode_matches_hdrhistogram_for_every_layout() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for sigfigs in 0..=5u8 {
            for low in [1u64, 3, 1000] {
                let mut h = Histogram::<u64>::new_with_bounds(low, 1 << 40, sigfigs).unwrap();
                for _ in 0..500 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    h.record_n(x % (1 << (x % 40)), x % 5 + 1).unwrap();
                }
                let limits = HdrLimits {
                    max_highest_trackable: 1 << 40,
                    max_significant_figures: 5,
                    max_decoded_bytes: 64 << 20,
                    max_encoded_bytes: 64 << 20,
                };
                let bytes = encode(&h);
                let ours = decode(&bytes, &limits).unwrap();
                let theirs: Histogram<u64> =
                    Deserializer::new().deserialize(&mut bytes.as_slice()).unwrap();
                assert_eq!(ours, theirs, "low {low} sigfigs {sigfigs}");
                assert_eq!(ours, h, "low {low} sigfigs {sigfigs}");
                let recorded = |h: &Histogram<u64>| -> Vec<(u64, u64)> {
                    h.iter_recorded().map(|v| (v.value_iterated_to(), v.count_at_value())).collect()
                };
                assert_eq!(recorded(&ours), recorded(&h));
                let sparse = decode_sparse(&bytes, &limits).unwrap();
                let highest: Vec<(u64, u64)> =
                    sparse.iter().map(|b| (b.highest, b.count)).collect();
                assert_eq!(highest, recorded(&h), "low {low} sigfigs {sigfigs}");
                assert_eq!(
                    (sparse.len(), sparse.max(), sparse.min_nz()),
                    (h.len(), h.max(), h.min_nz())
                );
                assert_eq!((ours.min_nz(), ours.max(), ours.len()), (h.min_nz(), h.max(), h.len()));
            }
        }
    }
}
