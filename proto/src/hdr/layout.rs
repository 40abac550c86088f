//! How `hdrhistogram` maps counts-array indexes to values: stallwatch's own layout and any
//! other a decoded histogram declares.

use super::*;

/// The layout of [`new_histogram`].
pub(super) const STALLWATCH_LAYOUT: Layout =
    Layout { unit_magnitude: 0, sub_bucket_half_count_magnitude: 10 };

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

/// How `hdrhistogram` maps counts-array indexes to values, for a lowest discernible value and
/// significant figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Layout {
    pub(super) unit_magnitude: u32,
    pub(super) sub_bucket_half_count_magnitude: u32,
}

impl Layout {
    pub(super) fn new(low: u64, sigfigs: u32) -> Option<Self> {
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
    pub(super) fn unit_mask(&self) -> u64 {
        (1u64 << self.unit_magnitude) - 1
    }

    /// `(bucket shift, sub-bucket)` of `index`.
    pub(super) fn split(&self, index: u64) -> (u64, u64) {
        let half = 1u64 << self.sub_bucket_half_count_magnitude;
        let bucket = (index >> self.sub_bucket_half_count_magnitude).saturating_sub(1);
        let sub_bucket = if index < half { index } else { (index & (half - 1)) + half };
        (bucket + u64::from(self.unit_magnitude), sub_bucket)
    }

    /// The lowest value counted at `index` (as `hdrhistogram`'s private `value_for`).
    pub(super) fn value_for(&self, index: u64) -> u64 {
        let (shift, sub_bucket) = self.split(index);
        if shift >= 64 { u64::MAX } else { sub_bucket << shift }
    }

    /// The highest value counted at `index` (as `hdrhistogram`'s `highest_equivalent` of
    /// [`Layout::value_for`]).
    pub(super) fn highest_equivalent(&self, index: u64) -> u64 {
        let (shift, _) = self.split(index);
        let value = self.value_for(index);
        if shift >= 64 || value == u64::MAX {
            return u64::MAX;
        }
        value.saturating_add(1 << shift) - 1
    }

    /// The counts-array index of `value` (as `hdrhistogram`'s private `index_for`).
    pub(super) fn index_for(&self, value: u64) -> u64 {
        let count_magnitude = self.sub_bucket_half_count_magnitude + 1;
        let mask = ((1u64 << count_magnitude) - 1) << self.unit_magnitude;
        let base = 64 - self.unit_magnitude - count_magnitude;
        let bucket = base - (value | mask).leading_zeros();
        let sub_bucket = value >> (bucket + self.unit_magnitude);
        let half = 1u64 << self.sub_bucket_half_count_magnitude;
        ((u64::from(bucket) + 1) << self.sub_bucket_half_count_magnitude) + sub_bucket - half
    }

    /// Length of the counts array `hdrhistogram` allocates for highest trackable value `high`.
    pub(super) fn counts_len(&self, high: u64) -> u64 {
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
