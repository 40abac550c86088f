//! HDR histograms with the exact sum and count beside them (HDR keeps no exact sum).

use hdrhistogram::Histogram;

/// Significant figures of every stallwatch histogram (DESIGN.md section 4).
pub const SIGNIFICANT_FIGURES: u8 = 3;
/// Largest value recorded; larger values are clamped to it (one hour in microseconds), so a
/// histogram's range, and its memory, stays bounded.
pub const MAX_VALUE: u64 = 3_600_000_000;

/// A histogram of one metric over one window: values (usually microseconds) with exact totals.
#[derive(Debug, Clone)]
pub struct Recorder {
    hist: Histogram<u64>,
    sum: u64,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    pub fn new() -> Self {
        // Auto-resizing: memory follows the largest value seen, capped by MAX_VALUE.
        let hist = Histogram::new(SIGNIFICANT_FIGURES).expect("3 significant figures is valid");
        Recorder { hist, sum: 0 }
    }

    /// Records one value, clamped to [`MAX_VALUE`].
    pub fn record(&mut self, value: u64) {
        self.record_n(value, 1);
    }

    /// Records `count` occurrences of one value, clamped to [`MAX_VALUE`].
    pub fn record_n(&mut self, value: u64, count: u64) {
        let value = value.min(MAX_VALUE);
        // `record_n` grows the auto-resizing histogram; `saturating_record_n` would not.
        if self.hist.record_n(value, count).is_err() {
            self.hist.saturating_record_n(value, count);
        }
        self.sum = self.sum.saturating_add(value.saturating_mul(count));
    }

    /// Records a duration in microseconds, rounded to the nearest microsecond.
    pub fn record_nanos_as_micros(&mut self, nanos: u64) {
        self.record(nanos.saturating_add(500) / 1_000);
    }

    /// Number of values recorded.
    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    /// Exact sum of the (clamped) values recorded.
    pub fn sum(&self) -> u64 {
        self.sum
    }

    /// Replaces the sum with one computed exactly elsewhere, for values that were shifted after
    /// recording (PDV is recorded relative to an anchor, then moved to the window minimum).
    pub(crate) fn set_sum(&mut self, sum: u64) {
        self.sum = sum;
    }

    /// The histogram itself.
    pub fn histogram(&self) -> &Histogram<u64> {
        &self.hist
    }

    /// Mean of the recorded values, from the exact sum.
    pub fn mean(&self) -> f64 {
        if self.count() == 0 { 0.0 } else { self.sum as f64 / self.count() as f64 }
    }

    /// Value at quantile `q` (0..=1), within the histogram's precision.
    pub fn quantile(&self, q: f64) -> u64 {
        self.hist.value_at_quantile(q)
    }

    /// Adds another recorder's values into this one.
    pub fn merge(&mut self, other: &Recorder) {
        // Both are auto-resizing with the same precision, so adding cannot fail.
        let _ = self.hist.add(&other.hist);
        self.sum = self.sum.saturating_add(other.sum);
    }

    /// Empties the recorder, keeping its allocation.
    pub fn reset(&mut self) {
        self.hist.reset();
        self.sum = 0;
    }

    /// Takes the recorded values out, leaving an empty recorder with the same allocation size.
    pub fn take(&mut self) -> Recorder {
        let taken = self.clone();
        self.reset();
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sum_and_count_are_exact_and_values_are_clamped() {
        let mut r = Recorder::new();
        r.record(1);
        r.record(1_001);
        r.record_n(7, 3);
        r.record(u64::MAX);
        assert_eq!(r.count(), 6);
        assert_eq!(r.sum(), 1 + 1_001 + 21 + MAX_VALUE);
        assert!(r.histogram().max() >= MAX_VALUE);
        let taken = r.take();
        assert_eq!(taken.count(), 6);
        assert_eq!(r.count(), 0);
        assert_eq!(r.sum(), 0);
    }

    #[test]
    fn nanos_round_to_the_nearest_microsecond() {
        let mut r = Recorder::new();
        r.record_nanos_as_micros(1_499);
        r.record_nanos_as_micros(1_500);
        assert_eq!(r.sum(), 3);
    }
}
