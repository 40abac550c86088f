//! Native (sparse exponential) histogram buckets, as Prometheus defines them: with schema `s`,
//! bucket `k` holds the positive values `v` with `2^((k-1) / 2^s) < v <= 2^(k / 2^s)`, and a
//! zero bucket holds values no larger than the zero threshold.
//!
//! **Schema 3** (growth factor `2^(1/8)`, about 1.0905): the bucket Prometheus' own clients
//! pick for their default factor of 1.1. Bucket bounds are at most 9.05 % apart, so a
//! quantile interpolated inside its bucket is within 9.05 % of the true value (within about
//! 4.3 % of the bucket's midpoint), against up to +/-50 % for the widest classic buckets.
//! It costs at most 8 buckets per doubling: a delay histogram spanning 100 µs to 60 ms uses
//! about 74, and the whole HDR range (1 µs to 2^36 µs, or 1 to 2^36 packets) at most 290.
//!
//! Counts are added when a delta is applied, from the HDR counts, one recorded HDR bucket at
//! a time, by its *highest equivalent value* converted to the base unit: the rule the classic
//! buckets follow. HDR buckets are at most 1/1024 of their value wide, so only an HDR bucket that
//! straddles a native bound can land one native bucket up, never down. Because placement is
//! per HDR bucket, adding merged histograms gives the same buckets as adding their parts.

/// The schema every stallwatch native histogram uses.
pub const NATIVE_SCHEMA: i32 = 3;

/// Values at or below this (base unit) go into the zero bucket: 2^-128, the threshold
/// Prometheus' clients default to. Only exact zeros are that small (the smallest recorded
/// non-zero value is 1 µs or 1 packet). Being above 0 it also marks the histogram as native
/// for Prometheus 2.42's protobuf parser even when only the zero bucket is filled.
pub const NATIVE_ZERO_THRESHOLD: f64 = 2.938_735_877_055_719e-39;

/// `2^(j/8) / 2` for `j` in `0..8`: the fractions (in `[0.5, 1)`) of schema 3's bucket upper
/// bounds, the same constants as Prometheus' `exponentialBounds[3]`, so boundaries compare
/// bit for bit with the server's.
const BOUNDS: [f64; 8] = [
    0.5,
    0.545_253_866_332_628_8,
    0.594_603_557_501_360_5,
    0.648_419_777_325_504_8,
    0.707_106_781_186_547_5,
    0.771_105_412_703_970_4,
    0.840_896_415_253_714_4,
    0.917_004_043_204_671_1,
];

/// `(frac, exp)` with `x = frac * 2^exp` and `frac` in `[0.5, 1)`, for positive finite `x`
/// (Go's `math.Frexp`).
fn frexp(x: f64) -> (f64, i32) {
    let bits = x.to_bits();
    let biased = ((bits >> 52) & 0x7ff) as i32;
    if biased == 0 {
        // Subnormal: scale into the normal range first.
        let (frac, exp) = frexp(x * f64::from_bits(0x4350_0000_0000_0000)); // 2^54
        return (frac, exp - 54);
    }
    let frac = f64::from_bits((bits & !(0x7ff << 52)) | (1022 << 52));
    (frac, biased - 1022)
}

/// The native bucket index of a positive finite value (base unit) with schema 3.
pub fn bucket_index(x: f64) -> i32 {
    let (frac, exp) = frexp(x);
    let j = BOUNDS.partition_point(|&b| b < frac) as i32;
    j + (exp - 1) * 8
}

/// The upper bound (inclusive, base unit) of native bucket `index`, as Prometheus computes it.
pub fn bucket_upper_bound(index: i32) -> f64 {
    let frac = BOUNDS[index.rem_euclid(8) as usize];
    let exp = index.div_euclid(8) + 1;
    // 2^exp, exactly: indices are bounded by the HDR range, far inside f64's normal range.
    frac * f64::from_bits(((exp + 1023) as u64) << 52)
}

/// One histogram's cumulative native buckets: the zero bucket and a dense run of positive
/// bucket counts from `offset`. A run, not a map: recorded values are contiguous in
/// practice, and 8 bytes per bucket over at most 290 indices bounds it at about 2.3 KiB.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NativeBuckets {
    zero: u64,
    offset: i32,
    counts: Vec<u64>,
}

impl NativeBuckets {
    /// Adds `n` samples to bucket `index`.
    pub(crate) fn add(&mut self, index: i32, n: u64) {
        if self.counts.is_empty() {
            self.offset = index;
            self.counts.reserve_exact(1);
            self.counts.push(0);
        } else if index < self.offset {
            let grow = (self.offset - index) as usize;
            self.counts.reserve_exact(grow);
            self.counts.splice(0..0, std::iter::repeat_n(0, grow));
            self.offset = index;
        } else {
            let needed = (index - self.offset) as usize + 1;
            if needed > self.counts.len() {
                self.counts.reserve_exact(needed - self.counts.len());
                self.counts.resize(needed, 0);
            }
        }
        let slot = &mut self.counts[(index - self.offset) as usize];
        *slot = slot.saturating_add(n);
    }

    /// Adds `n` samples to the zero bucket.
    pub(crate) fn add_zero(&mut self, n: u64) {
        self.zero = self.zero.saturating_add(n);
    }

    /// Count in the zero bucket.
    pub fn zero_count(&self) -> u64 {
        self.zero
    }

    /// Index of the first positive bucket in [`NativeBuckets::counts`].
    pub fn offset(&self) -> i32 {
        self.offset
    }

    /// Non-cumulative counts of consecutive positive buckets from [`NativeBuckets::offset`]
    /// (zeros included); empty if no positive value was recorded.
    pub fn counts(&self) -> &[u64] {
        &self.counts
    }

    /// `(index, count)` of every non-empty positive bucket, ascending.
    pub fn buckets(&self) -> impl Iterator<Item = (i32, u64)> + '_ {
        self.counts
            .iter()
            .enumerate()
            .filter(|&(_, &n)| n > 0)
            .map(|(i, &n)| (self.offset + i as i32, n))
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.counts.capacity() * size_of::<u64>()
    }

    /// Spans and deltas as the protobuf exposition wants them: a span per run of buckets
    /// with gaps of at most two empty buckets folded in (as Prometheus' clients do), each
    /// span's offset relative to the end of the previous one (absolute for the first), and
    /// each count as the difference from the previous bucket's.
    pub(crate) fn spans_and_deltas(&self, spans: &mut Vec<(i32, u32)>, deltas: &mut Vec<i64>) {
        spans.clear();
        deltas.clear();
        let mut previous_count = 0i64;
        // Index one past the last bucket of the current span.
        let mut end: Option<i32> = None;
        for (index, n) in self.buckets() {
            match end {
                Some(e) if index - e <= 2 => {
                    for _ in e..index {
                        deltas.push(-previous_count);
                        previous_count = 0;
                    }
                    if let Some(last) = spans.last_mut() {
                        last.1 += (index - e) as u32 + 1;
                    }
                }
                Some(e) => spans.push((index - e, 1)),
                None => spans.push((index, 1)),
            }
            let n = i64::try_from(n).unwrap_or(i64::MAX);
            deltas.push(n.wrapping_sub(previous_count));
            previous_count = n;
            end = Some(index + 1);
        }
    }
}
