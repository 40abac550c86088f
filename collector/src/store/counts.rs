//! [`HistogramCounts`]: a histogram as the plain counts array of stallwatch's HDR layout, with
//! its exact sum and count. The one form a histogram takes from a decoded report on: a batch's
//! contribution to a row (the delta the series also add), a stored row being merged, and the
//! row cache.

use stallwatch_proto::hdr;

use super::{I64_MAX, StoreError};

/// The counts array of a stallwatch-layout histogram ([`hdr::new_histogram`]), only as long
/// as its largest value needs, with its total count and exact sum and count. Plain counts
/// rather than an `hdrhistogram::Histogram`, so a report's non-zero buckets are added by
/// index, and it encodes to the same bytes ([`hdr::Encoder::encode_counts_into`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistogramCounts {
    counts: Vec<u64>,
    /// Sum of `counts` (at most `i64::MAX`, see [`HistogramCounts::add`]).
    total: u64,
    sum: u64,
    count: u64,
}

impl HistogramCounts {
    /// Counts by index of stallwatch's layout ([`hdr::stallwatch_index`]); the last is
    /// non-zero unless the histogram is empty.
    pub fn counts(&self) -> &[u64] {
        &self.counts
    }

    /// Total of the counts: values recorded, as the HDR histogram counts them.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Exact sum of the recorded values (saturating at `i64::MAX`).
    pub fn sum(&self) -> u64 {
        self.sum
    }

    /// The reports' own count of recorded values (saturating at `i64::MAX`).
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Heap bytes of the counts array.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.counts.capacity() * std::mem::size_of::<u64>()
    }

    /// A row as stored: its decoded buckets, exact sum and count.
    pub(crate) fn stored(
        metric: &str,
        histogram: &hdr::SparseHistogram,
        sum: u64,
        count: u64,
    ) -> Result<Self, StoreError> {
        let mut row = HistogramCounts { sum, count, ..Default::default() };
        // Whatever the file holds: saturate rather than wrap.
        row.add_buckets(metric, histogram, u64::saturating_add)?;
        Ok(row)
    }

    /// Adds one contribution, on its way into a row that holds `base` counts already (0 when
    /// this is the row). A contribution that would push the row past `i64::MAX` recorded
    /// values (only reachable by an agent sending absurd counts many times over) is left out
    /// whole, histogram, sum and count alike, so the row stays self-consistent; and no slot
    /// can overflow.
    ///
    /// Each non-zero bucket is added at the slot of its lowest value, which is what
    /// `Histogram::add` does for any layout (directly by index when the layouts match, by
    /// value otherwise), so the row holds the same counts.
    pub(crate) fn add(
        &mut self,
        metric: &str,
        histogram: &hdr::SparseHistogram,
        sum: u64,
        count: u64,
        base: u64,
    ) -> Result<(), StoreError> {
        let total = base.checked_add(self.total).and_then(|t| t.checked_add(histogram.len()));
        if total.is_none_or(|total| total > I64_MAX) {
            tracing::warn!(
                metric,
                "histogram row would exceed i64::MAX counts; contribution skipped"
            );
            return Ok(());
        }
        // The total stays within i64::MAX (checked above), so no slot can wrap.
        self.add_buckets(metric, histogram, u64::wrapping_add)?;
        self.sum = saturate(self.sum, sum);
        self.count = saturate(self.count, count);
        Ok(())
    }

    /// Adds another histogram (one whose contributions [`HistogramCounts::add`] checked
    /// against this one's total, so the sum stays within `i64::MAX`).
    pub(crate) fn add_counts(&mut self, other: &HistogramCounts) {
        if self.counts.len() < other.counts.len() {
            self.counts.reserve_exact(other.counts.len() - self.counts.len());
            self.counts.resize(other.counts.len(), 0);
        }
        // Cannot wrap: `add` kept both totals together within `i64::MAX`. Plain adds
        // vectorize; saturating ones do not.
        for (slot, &n) in self.counts.iter_mut().zip(&other.counts) {
            *slot = slot.wrapping_add(n);
        }
        self.total = self.total.saturating_add(other.total);
        self.sum = saturate(self.sum, other.sum);
        self.count = saturate(self.count, other.count);
    }

    /// Adds a histogram's counts to these, slot by slot with `plus`.
    fn add_buckets(
        &mut self,
        metric: &str,
        histogram: &hdr::SparseHistogram,
        plus: impl Fn(u64, u64) -> u64,
    ) -> Result<(), StoreError> {
        let out_of_range = || {
            StoreError::Merge(format!(
                "histogram {metric:?} holds {}, above the trackable {}",
                histogram.max(),
                hdr::HIGHEST_STORABLE_US
            ))
        };
        if histogram.is_stallwatch_layout() {
            let Some(top) = histogram.last_index() else { return Ok(()) };
            let top = usize::try_from(top)
                .ok()
                .filter(|&t| t < hdr::STALLWATCH_SLOTS)
                .ok_or_else(out_of_range)?;
            if self.counts.len() <= top {
                self.counts.reserve_exact(top + 1 - self.counts.len());
                self.counts.resize(top + 1, 0);
            }
            let counts = &mut self.counts[..=top];
            histogram.raw_buckets().for_each(|(index, n)| {
                // In range: indexes ascend to `top`.
                if let Some(slot) = counts.get_mut(index as usize) {
                    *slot = plus(*slot, n);
                }
            });
        } else {
            let top = hdr::stallwatch_index(histogram.max()).ok_or_else(out_of_range)?;
            if self.counts.len() <= top {
                self.counts.reserve_exact(top + 1 - self.counts.len());
                self.counts.resize(top + 1, 0);
            }
            for bucket in histogram.iter() {
                let index = hdr::stallwatch_index(bucket.value).ok_or_else(out_of_range)?;
                if let Some(slot) = self.counts.get_mut(index) {
                    *slot = plus(*slot, bucket.count);
                }
            }
        }
        self.total = self.total.saturating_add(histogram.len());
        Ok(())
    }
}

pub(crate) fn saturate(a: u64, b: u64) -> u64 {
    a.saturating_add(b).min(I64_MAX)
}
