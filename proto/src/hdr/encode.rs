//! Encoding to V2+DEFLATE, with a reusable encoder.

use super::*;

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

/// The DEFLATE level of the histograms in agents' reports ([`HistogramData::from_histogram`]):
/// 0, stored blocks. Still V2+DEFLATE, read by every HDR implementation, and the collector
/// copies stored blocks out without running inflate ([`decode_sparse`]): decoding a report's
/// histograms takes about a third of the CPU it took at level 6, for 2.4 times the histogram
/// bytes (BENCHMARKS.md, "Stored histograms, a fold thread, and the targets again"). The
/// varint counts deflate only about 2:1, so nearly every DEFLATE symbol is a literal and
/// inflating them cost more than parsing them.
///
/// [`HistogramData::from_histogram`]: crate::report::HistogramData::from_histogram
pub const REPORT_DEFLATE_LEVEL: u32 = 0;

/// A reusable V2+DEFLATE encoder: keeps the uncompressed buffer and the DEFLATE state
/// between histograms, so encoding many (the collector's stored rows) allocates nothing after
/// the first. Output is the same format as [`encode`], readable by any HDR implementation.
pub struct Encoder {
    pub(super) v2: V2Serializer,
    pub(super) raw: Vec<u8>,
    /// `None` at level 0: the zlib stream is written by hand as stored blocks (see
    /// [`write_stored_zlib`]), and a compressor's tables would only cost memory.
    pub(super) deflate: Option<Compress>,
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
            deflate: (level > 0).then(|| Compress::new(Compression::new(level.min(9)), true)),
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
    pub(super) fn compress_raw(&mut self, out: &mut Vec<u8>) -> Result<(), HdrEncodeError> {
        out.clear();
        out.extend_from_slice(&(V2_COMPRESSED_COOKIE_BASE | 0x10).to_be_bytes());
        out.extend_from_slice(&[0; 4]);
        if let Some(deflate) = self.deflate.as_mut() {
            deflate.reset();
            loop {
                let consumed = usize::try_from(deflate.total_in()).unwrap_or(usize::MAX);
                let input = self.raw.get(consumed..).unwrap_or_default();
                out.reserve(input.len() / 2 + 64);
                let status = deflate
                    .compress_vec(input, out, FlushCompress::Finish)
                    .map_err(|e| HdrEncodeError::Other(e.to_string()))?;
                if status == Status::StreamEnd {
                    break;
                }
            }
        } else {
            write_stored_zlib(&self.raw, out);
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
pub(super) fn write_stored_zlib(data: &[u8], out: &mut Vec<u8>) {
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

/// Writes one LEB128-64b9B varint (as hdrhistogram's `varint_write`).
pub(super) fn write_varint(mut value: u64, out: &mut Vec<u8>) {
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
