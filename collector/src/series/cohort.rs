//! One cohort's cumulative state: classic bucket counts, exact sums and counts for every
//! histogram in the catalogue, and every counter, in fixed-size arrays; plus each histogram's
//! sparse native buckets (a short run of counts on the heap). Never an HDR histogram.

use stallwatch_proto::hdr;

use crate::store::HistogramCounts;

use super::catalogue::{
    BUCKET_OFFSETS, BUCKET_SLOTS, COUNTER_COUNT, HISTOGRAM_COUNT, HISTOGRAMS, Histogram,
};
use super::native::{NativeBuckets, bucket_index, bucket_upper_bound};

/// Cumulative state of one cohort: `size_of::<CohortState>()` (about 2.6 KiB, fixed by the
/// catalogue) plus each histogram's native bucket run (at most about 2.3 KiB each, a few
/// hundred bytes for typical data).
#[derive(Clone)]
pub(crate) struct CohortState {
    /// Non-cumulative bucket counts of every histogram, laid out by `BUCKET_OFFSETS`; each
    /// histogram's last slot is its `+Inf` bucket.
    buckets: [u64; BUCKET_SLOTS],
    /// Exact sums in the recorded unit (µs or packets).
    sums: [u64; HISTOGRAM_COUNT],
    /// Sample counts.
    counts: [u64; HISTOGRAM_COUNT],
    /// Counters in the reported unit.
    counters: [u64; COUNTER_COUNT],
    /// Native (schema 3) buckets of every histogram, in the base unit.
    native: [NativeBuckets; HISTOGRAM_COUNT],
}

impl Default for CohortState {
    fn default() -> Self {
        CohortState {
            buckets: [0; BUCKET_SLOTS],
            sums: [0; HISTOGRAM_COUNT],
            counts: [0; HISTOGRAM_COUNT],
            counters: [0; COUNTER_COUNT],
            native: Default::default(),
        }
    }
}

impl CohortState {
    pub(crate) fn add_counter(&mut self, index: usize, value: u64) {
        self.counters[index] = self.counters[index].saturating_add(value);
    }

    pub(crate) fn counter(&self, index: usize) -> u64 {
        self.counters[index]
    }

    /// Adds a histogram (the merged reports of a batch, or stored history) with its exact sum
    /// (recorded unit); its count is the HDR total.
    ///
    /// Each recorded HDR bucket goes, whole, into the first classic bucket whose upper bound
    /// is at least the HDR bucket's *highest equivalent value*. HDR keeps 3 significant
    /// figures, so a value within 0.1 % below a bound may be counted one classic bucket up
    /// (never down): boundaries are exact to the HDR's precision, and a figure is never
    /// reported better than measured.
    ///
    /// One pass over the histogram's non-zero buckets fills both the classic and the native
    /// buckets.
    pub(crate) fn add_histogram(&mut self, index: usize, h: &HistogramCounts) {
        let family = HISTOGRAMS[index].family();
        let bounds = family.bounds;
        let divisor = family.unit.divisor();
        let start = BUCKET_OFFSETS[index];
        let buckets = &mut self.buckets[start..=start + bounds.len()];
        let native = &mut self.native[index];
        // Buckets are placed by comparing indexes: `limit` is the last HDR index counted in
        // classic bucket `b` (by its highest equivalent value), computed once per bound.
        let classic_limit = |b: usize| -> Option<u64> {
            match bounds.get(b) {
                Some(&bound) => hdr::stallwatch_last_index_at_most(bound),
                None => Some(u64::MAX),
            }
        };
        let mut b = 0;
        let mut limit = classic_limit(0);
        // Native bucket being filled, what it holds so far, and the last HDR index it takes.
        let mut run: Option<(i32, u64)> = None;
        let mut run_limit = 0u64;
        let nonzero = (0u64..).zip(h.counts()).filter(|&(_, &count)| count != 0);
        for (hdr_index, &count) in nonzero {
            while limit.is_none_or(|l| hdr_index > l) {
                b += 1;
                limit = classic_limit(b);
            }
            buckets[b] = buckets[b].saturating_add(count);
            if hdr_index == 0 {
                // The HDR bucket of 0 (values unit-equivalent to 0): the zero bucket.
                native.add_zero(count);
                continue;
            }
            match &mut run {
                Some((_, n)) if hdr_index <= run_limit => *n = n.saturating_add(count),
                _ => {
                    if let Some((at, n)) = run {
                        native.add(at, n);
                    }
                    let highest = hdr::stallwatch_highest_equivalent(hdr_index);
                    let k = bucket_index(highest as f64 / divisor);
                    run = Some((k, count));
                    run_limit = native_threshold(k, divisor)
                        .and_then(hdr::stallwatch_last_index_at_most)
                        .unwrap_or(hdr_index)
                        .max(hdr_index);
                }
            }
        }
        if let Some((at, n)) = run {
            native.add(at, n);
        }
        self.counts[index] = self.counts[index].saturating_add(h.total());
        self.sums[index] = self.sums[index].saturating_add(h.sum());
    }

    /// Heap bytes held by the native buckets.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.native.iter().map(NativeBuckets::heap_bytes).sum()
    }

    pub(crate) fn histogram(&self, index: usize) -> HistogramView<'_> {
        let spec = &HISTOGRAMS[index];
        let start = BUCKET_OFFSETS[index];
        HistogramView {
            spec,
            buckets: &self.buckets[start..=start + spec.family().bounds.len()],
            sum: self.sums[index],
            count: self.counts[index],
            native: &self.native[index],
        }
    }
}

/// The largest recorded-unit integer whose native bucket (after dividing by `divisor`) is at
/// most `k`, or `None` if no positive integer is in buckets up to `k`.
fn native_threshold(k: i32, divisor: f64) -> Option<u64> {
    let in_bucket = |t: u64| bucket_index(t as f64 / divisor) <= k;
    let mut t = (bucket_upper_bound(k) * divisor).floor() as u64;
    while t > 0 && !in_bucket(t) {
        t -= 1;
    }
    while t < u64::MAX && in_bucket(t + 1) {
        t += 1;
    }
    (t > 0).then_some(t)
}

/// A read-only view of one cohort histogram.
#[derive(Debug, Clone, Copy)]
pub struct HistogramView<'a> {
    spec: &'static Histogram,
    buckets: &'a [u64],
    sum: u64,
    count: u64,
    native: &'a NativeBuckets,
}

impl<'a> HistogramView<'a> {
    /// What this histogram is.
    pub fn spec(&self) -> &'static Histogram {
        self.spec
    }

    /// Upper bounds in the recorded unit (µs or packets); `+Inf` is implied.
    pub fn bounds(&self) -> &'static [u64] {
        self.spec.family().bounds
    }

    /// Non-cumulative bucket counts, one per bound and a last one for `+Inf`.
    pub fn bucket_counts(&self) -> &[u64] {
        self.buckets
    }

    /// Exact sum in the recorded unit (µs or packets).
    pub fn sum(&self) -> u64 {
        self.sum
    }

    /// Exact sum in the exported base unit (seconds or packets).
    pub fn sum_base(&self) -> f64 {
        self.sum as f64 / self.spec.family().unit.divisor()
    }

    /// Number of samples.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Native (schema [`NATIVE_SCHEMA`](super::NATIVE_SCHEMA)) buckets in the base unit.
    /// Their counts, zero bucket included, add up to [`HistogramView::count`].
    pub fn native(&self) -> &'a NativeBuckets {
        self.native
    }

    /// Index of the bucket a recorded-unit value belongs in (`bounds().len()` for `+Inf`).
    pub fn bucket_of(&self, value: u64) -> usize {
        self.bounds().partition_point(|&b| b < value)
    }

    /// The `q` quantile in the exported base unit, estimated from the buckets as
    /// Prometheus' `histogram_quantile` does: linear interpolation inside the bucket that
    /// holds the rank `q * count`, from 0 for the first bucket; the highest finite bound if
    /// the rank is in `+Inf`. `None` if there are no samples or `q` is not in `[0, 1]`.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        let divisor = self.spec.family().unit.divisor();
        let bounds = self.bounds();
        let rank = q * self.count as f64;
        let mut below = 0u64;
        for (i, &n) in self.buckets.iter().enumerate() {
            let through = below + n;
            if through as f64 >= rank && n > 0 {
                let Some(&end) = bounds.get(i) else {
                    return Some(bounds[bounds.len() - 1] as f64 / divisor);
                };
                let start = if i == 0 { 0.0 } else { bounds[i - 1] as f64 / divisor };
                let end = end as f64 / divisor;
                return Some(start + (end - start) * (rank - below as f64) / n as f64);
            }
            below = through;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use stallwatch_proto::hdr::{self, HdrLimits};

    use super::*;

    /// The rule spelled out per recorded HDR bucket, on the full histogram: classic bucket =
    /// first bound at or above the bucket's highest equivalent value; native bucket = that
    /// value's schema-3 index in the base unit, the bucket of 0 in the zero bucket.
    fn reference(index: usize, h: &hdrhistogram::Histogram<u64>) -> (Vec<u64>, NativeBuckets) {
        let family = HISTOGRAMS[index].family();
        let mut classic = vec![0u64; family.bounds.len() + 1];
        let mut native = NativeBuckets::default();
        for v in h.iter_recorded() {
            let highest = v.value_iterated_to();
            let b = family.bounds.partition_point(|&bound| bound < highest);
            classic[b] += v.count_at_value();
            if h.lowest_equivalent(highest) == 0 {
                native.add_zero(v.count_at_value());
            } else {
                native
                    .add(bucket_index(highest as f64 / family.unit.divisor()), v.count_at_value());
            }
        }
        (classic, native)
    }

    #[test]
    fn one_pass_fold_places_every_bucket_as_the_rule_says() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for index in 0..HISTOGRAMS.len() {
            for (samples, top_bits) in [(0, 1), (1, 20), (5, 4), (3000, 17), (3000, 26), (200, 36)]
            {
                let mut h = hdr::new_histogram();
                for _ in 0..samples {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    h.record(x % (1 << (x % top_bits + 1))).unwrap();
                }
                let sparse = hdr::decode_sparse(&hdr::encode(&h), &HdrLimits::default()).unwrap();
                let counts = HistogramCounts::stored("t", &sparse, 7, sparse.len()).unwrap();
                let mut state = CohortState::default();
                state.add_histogram(index, &counts);
                let view = state.histogram(index);
                let (classic, native) = reference(index, &h);
                assert_eq!(view.bucket_counts(), &classic[..], "{index} {samples} {top_bits}");
                assert_eq!(view.native(), &native, "{index} {samples} {top_bits}");
                assert_eq!((view.count(), view.sum()), (h.len(), 7));
            }
        }
    }
}
