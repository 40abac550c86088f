//! Decoding under hard limits: the compressed prefix, a capped inflate, the V2 header's
//! checks and the counts, into a sparse histogram.

use super::*;

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
pub(super) struct Scratch {
    pub(super) inflated: Vec<u8>,
    pub(super) narrow: Vec<(u32, u32)>,
    pub(super) wide: Vec<(u64, u64)>,
}

impl Scratch {
    pub(super) fn heap_bytes(&self) -> usize {
        self.inflated.capacity() + self.narrow.capacity() * 8 + self.wide.capacity() * 16
    }
}

/// Scratch space [`decode_sparse`] keeps per thread between calls, at most.
pub(super) const SCRATCH_KEEP_BYTES: usize = 1 << 20;

pub(super) fn decode_sparse_with(
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

/// The smallest highest trackable value whose counts array (for `low` and `sigfigs`, as
/// `hdrhistogram` lays it out) has at least `slots` entries; `None` when it cannot be
/// computed (the caller then keeps the declared range).
pub(super) fn compact_high(low: u64, sigfigs: u32, slots: u64) -> Option<u64> {
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
pub(super) fn inflate_capped(
    compressed: &[u8],
    max: usize,
    out: &mut Vec<u8>,
) -> Result<(), HdrError> {
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
/// bytes; a stream of stored blocks is copied out instead ([`copy_stored_blocks`]).
pub(super) fn inflate_with(
    decompress: &mut Decompress,
    compressed: &[u8],
    max: usize,
    out: &mut Vec<u8>,
) -> Result<(), HdrError> {
    if copy_stored_blocks(compressed, max, out) {
        return Ok(());
    }
    inflate_any(decompress, compressed, max, out)
}

/// [`inflate_with`] without the stored-block copy: every zlib stream goes through inflate.
pub(super) fn inflate_any(
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

/// Copies out the data of a zlib stream made only of stored (uncompressed) DEFLATE blocks, as
/// agents and the store write histograms ([`REPORT_DEFLATE_LEVEL`]), without running inflate:
/// a copy and a checksum instead of a Huffman decoder, a third of the time of decoding the
/// same histogram at level 6. Returns `false`, with `out` in any state, for anything else,
/// which the caller then inflates: compressed blocks and every malformed stream, so refusals
/// and their errors come from the one inflate path. It returns `true` only where inflate
/// produces the same bytes: a valid header without a preset dictionary, stored blocks whose
/// lengths match their complements up to the final one, at most `max` bytes, their Adler-32,
/// and nothing after it.
pub(super) fn copy_stored_blocks(compressed: &[u8], max: usize, out: &mut Vec<u8>) -> bool {
    let [cmf, flg, blocks @ ..] = compressed else { return false };
    let mut rest = blocks;
    // Deflate with a window of at most 32 KiB, header check bits, no preset dictionary.
    if cmf & 0x0f != 8 || cmf >> 4 > 7 || (u16::from(*cmf) << 8 | u16::from(*flg)) % 31 != 0 {
        return false;
    }
    if flg & 0x20 != 0 {
        return false;
    }
    out.clear();
    loop {
        // Every block starts on a byte boundary: the previous one was stored too. BFINAL is
        // bit 0, BTYPE bits 1-2 (00: stored); the other five bits are padding inflate skips.
        let [header, l0, l1, n0, n1, after @ ..] = rest else { return false };
        if header & 0b110 != 0 {
            return false;
        }
        let len = u16::from_le_bytes([*l0, *l1]);
        if len != !u16::from_le_bytes([*n0, *n1]) {
            return false;
        }
        let Some((data, after)) = after.split_at_checked(usize::from(len)) else { return false };
        if out.len() + data.len() > max {
            return false;
        }
        out.extend_from_slice(data);
        rest = after;
        if header & 1 == 1 {
            break;
        }
    }
    let mut adler = simd_adler32::Adler32::new();
    adler.write(out);
    rest == adler.finish().to_be_bytes()
}

/// Checks the uncompressed V2 header against the bytes present and `limits`.
pub(super) fn check_v2_header(inflated: &[u8], limits: &HdrLimits) -> Result<(), HdrError> {
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
pub(super) trait Pair: Copy + Default {
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
pub(super) fn parse_counts<P: Pair>(
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
pub(super) struct CountsState {
    pub(super) len: usize,
    pub(super) index: u64,
    pub(super) total: u64,
}

impl CountsState {
    /// Reads one varint from the front of `counts` and applies it; returns the rest, or
    /// `None` if its count does not fit `P`.
    #[inline]
    pub(super) fn step_varint<'a, P: Pair>(
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
    pub(super) fn step_eight<P: Pair>(&mut self, word: u64, nonzero: &mut [P]) -> bool {
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
    pub(super) fn step<P: Pair>(&mut self, value: u64, nonzero: &mut [P]) {
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

/// Reads one LEB128-64b9B varint: up to 8 bytes of 7 bits, then a ninth byte used whole.
#[inline]
pub(super) fn read_varint(buf: &[u8]) -> Option<(u64, usize)> {
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

pub(super) fn be_u32(buf: &[u8], at: usize) -> Option<u32> {
    let b = buf.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes(b.try_into().ok()?))
}

pub(super) fn be_u64(buf: &[u8], at: usize) -> Option<u64> {
    let b = buf.get(at..at.checked_add(8)?)?;
    Some(u64::from_be_bytes(b.try_into().ok()?))
}
