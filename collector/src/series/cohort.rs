//! One cohort's cumulative state: classic bucket counts, exact sums and counts for every
//! histogram in the catalogue, and every counter, in fixed-size arrays; plus each histogram's
//! sparse native buckets (a short run of counts on the heap). Never an HDR histogram.

use hdrhistogram::Histogram;

use super::catalogue::{
    BUCKET_OFFSETS, BUCKET_SLOTS, COUNTER_COUNT, HISTOGRAM_COUNT, HISTOGRAMS, HistogramSpec,
};
use super::native::{NativeBuckets, bucket_index, bucket_upper_bound};

/// The labels every stallwatch series carries. `region` and `network_type` come from the
/// agent's certificate, `transport` and `target` from the report series' labels. There is
/// no agent label: a cohort merges every agent that shares these four.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CohortKey {
    /// Agent region, from its certificate.
    pub region: String,
    /// Agent network type, from its certificate.
    pub network_type: String,
    /// Transport (`quic-stream`, `quic-datagram`, `udp`), from the series labels.
    pub transport: String,
    /// Relay or endpoint name, from the series labels.
    pub target: String,
}

impl CohortKey {
    /// A key from its four label values.
    pub fn new(region: &str, network_type: &str, transport: &str, target: &str) -> Self {
        CohortKey {
            region: region.to_owned(),
            network_type: network_type.to_owned(),
            transport: transport.to_owned(),
            target: target.to_owned(),
        }
    }
}

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

    /// Adds an interval histogram whose exact sum (recorded unit) is `sum`.
    ///
    /// Each recorded HDR bucket goes, whole, into the first classic bucket whose upper bound
    /// is at least the HDR bucket's *highest equivalent value*. HDR keeps 3 significant
    /// figures, so a value within 0.1 % below a bound may be counted one classic bucket up
    /// (never down): boundaries are exact to the HDR's precision, and a figure is never
    /// reported better than measured.
    ///
    /// Each classic bucket is one `count_between` over a contiguous run of HDR buckets, which
    /// is several times faster than iterating the recorded values.
    pub(crate) fn add_histogram(&mut self, index: usize, h: &Histogram<u64>, sum: u64) {
        let bounds = HISTOGRAMS[index].family().bounds;
        let start = BUCKET_OFFSETS[index];
        let buckets = &mut self.buckets[start..=start + bounds.len()];
        let total = h.len();
        let mut counted = 0u64;
        // Lowest value of the first HDR bucket not counted yet.
        let mut low = 0u64;
        for (b, &bound) in bounds.iter().enumerate() {
            if counted >= total {
                break;
            }
            // Highest value of the last HDR bucket whose highest equivalent is <= bound.
            let high = if h.highest_equivalent(bound) == bound {
                bound
            } else {
                match h.lowest_equivalent(bound).checked_sub(1) {
                    Some(high) => high,
                    None => continue,
                }
            };
            if high < low {
                continue;
            }
            let n = h.count_between(low, high);
            buckets[b] = buckets[b].saturating_add(n);
            counted = counted.saturating_add(n);
            low = high + 1;
        }
        let overflow = total.saturating_sub(counted);
        buckets[bounds.len()] = buckets[bounds.len()].saturating_add(overflow);
        self.counts[index] = self.counts[index].saturating_add(total);
        self.sums[index] = self.sums[index].saturating_add(sum);
        self.add_native(index, h);
    }

    /// Adds every recorded HDR bucket, by its highest equivalent value in the base unit, into
    /// the native buckets (see `native`): the classic rule with native bounds. Each native
    /// bucket between the smallest and largest value is one `count_between` over a run of
    /// HDR buckets, several times faster than iterating the recorded values.
    fn add_native(&mut self, index: usize, h: &Histogram<u64>) {
        let total = h.len();
        if total == 0 {
            return;
        }
        let divisor = HISTOGRAMS[index].family().unit.divisor();
        let native = &mut self.native[index];
        let zeros = h.count_between(0, 0);
        native.add_zero(zeros);
        let mut counted = zeros;
        if counted >= total {
            return;
        }
        let first = bucket_index(h.highest_equivalent(h.min_nz()) as f64 / divisor);
        let last = bucket_index(h.max() as f64 / divisor);
        // Lowest value of the first HDR bucket not counted yet.
        let mut low = 1u64;
        for k in first..=last {
            if counted >= total {
                break;
            }
            let Some(top) = native_threshold(k, divisor) else {
                continue;
            };
            // Highest value of the last HDR bucket whose highest equivalent is <= top.
            let high = if h.highest_equivalent(top) == top {
                top
            } else {
                match h.lowest_equivalent(top).checked_sub(1) {
                    Some(high) => high,
                    None => continue,
                }
            };
            if high < low {
                continue;
            }
            let n = h.count_between(low, high);
            if n > 0 {
                native.add(k, n);
                counted = counted.saturating_add(n);
            }
            low = high + 1;
        }
        // Unreachable for a consistent histogram; keeps the totals equal if it ever is not.
        if counted < total {
            native.add(last, total - counted);
        }
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
    while in_bucket(t + 1) {
        t += 1;
    }
    (t > 0).then_some(t)
}

/// A read-only view of one cohort histogram.
#[derive(Debug, Clone, Copy)]
pub struct HistogramView<'a> {
    spec: &'static HistogramSpec,
    buckets: &'a [u64],
    sum: u64,
    count: u64,
    native: &'a NativeBuckets,
}

impl<'a> HistogramView<'a> {
    /// What this histogram is.
    pub fn spec(&self) -> &'static HistogramSpec {
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
