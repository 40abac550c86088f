//! The evaluator's memory of recent history: per cohort, the signals of the last two hours
//! minute by minute, and [`Counts`] summed per 5 minutes (8 hours) and per hour (up to 8 days),
//! so that windows from 5 minutes to 3 days cost a few dozen additions and a bounded amount of
//! memory: about 40 KB per cohort with the default 3-day burn-rate window, whatever the number
//! of agents (no histograms are kept; quantiles are taken per minute when rows are read).
//!
//! A window is summed from the finest ring that covers it. Windows longer than the minute ring
//! are summed from whole 5-minute buckets, longer than 8 hours from whole hours: a bucket that
//! overlaps the window's start counts whole, so a 6-hour window may hold up to 5 more minutes
//! and a 3-day window up to an hour more. Burn rates and baselines are ratios and do not mind.

use std::collections::{BTreeMap, VecDeque};

use super::signals::{Counts, MinuteSignals};
use crate::store::{Cohort, HOUR_MS, MINUTE_MS};

/// Minutes kept at minute resolution.
pub const MINUTE_SLOTS: usize = 120;
/// 5-minute buckets kept (8 hours).
pub const FIVE_SLOTS: usize = 96;
/// Length of a 5-minute bucket, ms.
pub const FIVE_MS: u64 = 5 * MINUTE_MS;

/// A ring of summed [`Counts`] at one resolution, oldest first.
#[derive(Debug, Clone, Default)]
struct Ring {
    res_ms: u64,
    cap: usize,
    buckets: VecDeque<(u64, Counts)>,
}

impl Ring {
    fn new(res_ms: u64, cap: usize) -> Self {
        Ring { res_ms, cap, buckets: VecDeque::new() }
    }

    /// Adds (or, with `subtract`, takes out) `counts` at time `at`. Too old for the ring: ignored.
    fn apply(&mut self, at: u64, counts: &Counts, subtract: bool) {
        let start = at - at % self.res_ms;
        if let Some(&(newest, _)) = self.buckets.back()
            && start + self.res_ms * self.cap as u64 <= newest
        {
            return;
        }
        let i = match self.buckets.binary_search_by_key(&start, |&(s, _)| s) {
            Ok(i) => i,
            Err(i) => {
                if subtract {
                    return;
                }
                self.buckets.insert(i, (start, Counts::default()));
                i
            }
        };
        if subtract {
            self.buckets[i].1.subtract(counts);
        } else {
            self.buckets[i].1.add(counts);
        }
        let Some(&(newest, _)) = self.buckets.back() else { return };
        while self
            .buckets
            .front()
            .is_some_and(|&(s, _)| s + self.res_ms * self.cap as u64 <= newest)
        {
            self.buckets.pop_front();
        }
    }

    /// Sum of the buckets overlapping `[end - len, end)`.
    fn sum(&self, end: u64, len: u64) -> Counts {
        let from = end.saturating_sub(len);
        let mut out = Counts::default();
        for (start, counts) in self.buckets.iter().rev() {
            if *start >= end {
                continue;
            }
            if start + self.res_ms <= from {
                break;
            }
            out.add(counts);
        }
        out
    }

    /// How far back the ring reaches from `end` (ms).
    fn span(&self) -> u64 {
        self.res_ms * self.cap as u64
    }

    fn newest(&self) -> Option<u64> {
        self.buckets.back().map(|&(s, _)| s)
    }
}

/// One cohort's history.
#[derive(Debug, Clone)]
pub struct CohortHistory {
    minutes: VecDeque<(u64, MinuteSignals)>,
    /// The minutes not yet settled (the one settling and the one in progress), as far as they
    /// have been reported; replaced at every read and never summed.
    unsettled: Vec<(u64, MinuteSignals)>,
    fives: Ring,
    hours: Ring,
}

impl CohortHistory {
    fn new(hour_slots: usize) -> Self {
        CohortHistory {
            minutes: VecDeque::new(),
            unsettled: Vec::new(),
            fives: Ring::new(FIVE_MS, FIVE_SLOTS),
            hours: Ring::new(HOUR_MS, hour_slots),
        }
    }

    /// The minute signals stored for minutes in `[from, to)`, oldest first.
    pub fn minutes(
        &self,
        from: u64,
        to: u64,
    ) -> impl DoubleEndedIterator<Item = &(u64, MinuteSignals)> {
        let lo = self.minutes.partition_point(|&(s, _)| s < from);
        let hi = self.minutes.partition_point(|&(s, _)| s < to);
        self.minutes.range(lo..hi)
    }

    /// The signals of the minute starting at `start`, settled or not, if held.
    pub fn minute(&self, start: u64) -> Option<&MinuteSignals> {
        match self.minutes.binary_search_by_key(&start, |&(s, _)| s) {
            Ok(i) => Some(&self.minutes[i].1),
            Err(_) => self.unsettled.iter().find(|(s, _)| *s == start).map(|(_, m)| m),
        }
    }

    /// The minutes not yet settled, oldest first: what has been reported of them so far.
    pub fn unsettled(&self) -> &[(u64, MinuteSignals)] {
        &self.unsettled
    }

    /// Counts summed over `[end - len, end)` and the minutes not yet settled after it: a
    /// window that slides up to the last report.
    pub fn sum_to_latest(&self, end: u64, len: u64) -> Counts {
        let mut out = self.sum(end, len);
        for (_, m) in self.unsettled.iter().filter(|(start, _)| *start >= end) {
            out.add(&m.counts);
        }
        out
    }

    /// Counts summed over `[end - len, end)`, from the finest resolution that reaches back so
    /// far (see the module docs for the rounding of long windows).
    pub fn sum(&self, end: u64, len: u64) -> Counts {
        if len <= MINUTE_MS * MINUTE_SLOTS as u64 {
            let mut out = Counts::default();
            for (_, m) in self.minutes(end.saturating_sub(len), end) {
                out.add(&m.counts);
            }
            out
        } else if len <= self.fives.span() {
            self.fives.sum(end, len)
        } else {
            self.hours.sum(end, len)
        }
    }

    fn set_minute(&mut self, start: u64, signals: MinuteSignals) {
        match self.minutes.binary_search_by_key(&start, |&(s, _)| s) {
            Ok(i) => {
                let old = self.minutes[i].1.counts;
                self.fives.apply(start, &old, true);
                self.hours.apply(start, &old, true);
                self.minutes[i].1 = signals;
            }
            Err(i) => {
                let newest = self.minutes.back().map_or(start, |&(s, _)| s.max(start));
                if start + MINUTE_MS * MINUTE_SLOTS as u64 <= newest {
                    // Older than the minute ring: it only feeds the sums.
                    self.add_counts(start, &signals.counts);
                    return;
                }
                self.minutes.insert(i, (start, signals));
                while self
                    .minutes
                    .front()
                    .is_some_and(|&(s, _)| s + MINUTE_MS * MINUTE_SLOTS as u64 <= newest)
                {
                    self.minutes.pop_front();
                }
            }
        }
        self.fives.apply(start, &signals.counts, false);
        self.hours.apply(start, &signals.counts, false);
    }

    fn add_counts(&mut self, start: u64, counts: &Counts) {
        self.fives.apply(start, counts, false);
        self.hours.apply(start, counts, false);
    }

    fn newest(&self) -> Option<u64> {
        let minute = self.minutes.back().map(|&(s, _)| s);
        let unsettled = self.unsettled.last().map(|&(s, _)| s);
        minute.into_iter().chain(unsettled).chain(self.hours.newest()).max()
    }
}

/// Every cohort's history.
#[derive(Debug, Clone)]
pub struct History {
    cohorts: BTreeMap<Cohort, CohortHistory>,
    hour_slots: usize,
}

impl History {
    /// An empty history whose hour ring reaches back `longest_window_ms` (plus two hours).
    pub fn new(longest_window_ms: u64) -> Self {
        let hour_slots = usize::try_from(longest_window_ms.div_ceil(HOUR_MS))
            .unwrap_or(usize::MAX)
            .saturating_add(2);
        History { cohorts: BTreeMap::new(), hour_slots }
    }

    /// Stores (or replaces) the signals of one cohort-minute. A replaced minute's counts are
    /// taken out of the sums first, so restating a minute never counts it twice.
    pub fn set_minute(&mut self, cohort: &Cohort, start: u64, signals: MinuteSignals) {
        let slots = self.hour_slots;
        self.cohorts
            .entry(cohort.clone())
            .or_insert_with(|| CohortHistory::new(slots))
            .set_minute(start, signals);
    }

    /// Replaces every cohort's unsettled minutes with `unsettled` (oldest first per cohort).
    pub fn set_unsettled(&mut self, unsettled: BTreeMap<Cohort, Vec<(u64, MinuteSignals)>>) {
        for history in self.cohorts.values_mut() {
            history.unsettled.clear();
        }
        let slots = self.hour_slots;
        for (cohort, minutes) in unsettled {
            self.cohorts.entry(cohort).or_insert_with(|| CohortHistory::new(slots)).unsettled =
                minutes;
        }
    }

    /// Adds counts of an older minute or hour (warm-up): they feed the sums only.
    pub fn add_counts(&mut self, cohort: &Cohort, start: u64, counts: &Counts) {
        let slots = self.hour_slots;
        self.cohorts
            .entry(cohort.clone())
            .or_insert_with(|| CohortHistory::new(slots))
            .add_counts(start, counts);
    }

    /// One cohort's history.
    pub fn cohort(&self, cohort: &Cohort) -> Option<&CohortHistory> {
        self.cohorts.get(cohort)
    }

    /// Every cohort, in order.
    pub fn cohorts(&self) -> impl Iterator<Item = (&Cohort, &CohortHistory)> {
        self.cohorts.iter()
    }

    /// Forgets cohorts with nothing newer than `before` (gone from the fleet).
    pub fn forget_older_than(&mut self, before: u64) {
        self.cohorts.retain(|_, h| h.newest().is_some_and(|n| n >= before));
    }

    /// Whether no cohort is held.
    pub fn is_empty(&self) -> bool {
        self.cohorts.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cohort() -> Cohort {
        Cohort {
            region: "sea".into(),
            network_type: "4g".into(),
            transport: "udp".into(),
            repair: "nack".into(),
            target: "r".into(),
        }
    }

    fn minute(stall_ns: u64) -> MinuteSignals {
        MinuteSignals {
            counts: Counts { stall_ns, play_ns: 60_000_000_000, ..Counts::default() },
            ..MinuteSignals::default()
        }
    }

    #[test]
    fn windows_sum_exactly_at_every_resolution() {
        let mut h = History::new(72 * HOUR_MS);
        let c = cohort();
        let t0 = 1_000 * HOUR_MS;
        // 10 hours of minutes, stall_ns = minute index.
        for i in 0..600u64 {
            h.set_minute(&c, t0 + i * MINUTE_MS, minute(i));
        }
        let end = t0 + 600 * MINUTE_MS;
        let exact = |len_min: u64| (600 - len_min..600).sum::<u64>();
        let ch = h.cohort(&c).unwrap();
        assert_eq!(ch.sum(end, 5 * MINUTE_MS).stall_ns, exact(5));
        assert_eq!(ch.sum(end, 60 * MINUTE_MS).stall_ns, exact(60));
        assert_eq!(
            ch.sum(end, 6 * HOUR_MS).stall_ns,
            exact(360),
            "6 h: whole 5-minute buckets, aligned here"
        );
        assert_eq!(ch.sum(end, 10 * HOUR_MS).stall_ns, exact(600), "10 h: whole hours");
        assert_eq!(ch.minutes(t0, end).count(), MINUTE_SLOTS, "only two hours of minutes are kept");
    }

    #[test]
    fn a_restated_minute_replaces_its_counts() {
        let mut h = History::new(72 * HOUR_MS);
        let c = cohort();
        let t0 = 1_000 * HOUR_MS;
        h.set_minute(&c, t0, minute(5));
        h.set_minute(&c, t0 + MINUTE_MS, minute(7));
        h.set_minute(&c, t0, minute(11));
        let ch = h.cohort(&c).unwrap();
        assert_eq!(ch.sum(t0 + 2 * MINUTE_MS, 2 * MINUTE_MS).stall_ns, 18);
        assert_eq!(
            ch.sum(t0 + HOUR_MS, 3 * HOUR_MS).stall_ns,
            18,
            "the hour ring was corrected too"
        );
        assert_eq!(ch.minute(t0).unwrap().counts.stall_ns, 11);
    }

    #[test]
    fn warm_up_counts_feed_the_long_windows_only() {
        let mut h = History::new(72 * HOUR_MS);
        let c = cohort();
        let t0 = 1_000 * HOUR_MS;
        h.set_minute(&c, t0 + 30 * HOUR_MS, minute(1));
        h.add_counts(&c, t0, &minute(100).counts);
        let ch = h.cohort(&c).unwrap();
        let end = t0 + 30 * HOUR_MS + MINUTE_MS;
        assert_eq!(ch.sum(end, 72 * HOUR_MS).stall_ns, 101);
        assert_eq!(ch.sum(end, HOUR_MS).stall_ns, 1);
        assert!(ch.minute(t0).is_none());
    }

    #[test]
    fn memory_is_bounded_however_long_it_runs() {
        let mut h = History::new(72 * HOUR_MS);
        let c = cohort();
        for i in 0..(10 * 24 * 60u64) {
            h.set_minute(&c, i * MINUTE_MS, minute(1));
        }
        let ch = h.cohort(&c).unwrap();
        assert_eq!(ch.minutes.len(), MINUTE_SLOTS);
        assert!(ch.fives.buckets.len() <= FIVE_SLOTS);
        assert!(ch.hours.buckets.len() <= 74);
        h.forget_older_than(11 * 24 * HOUR_MS);
        assert!(h.is_empty());
    }
}
