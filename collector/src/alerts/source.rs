//! What the evaluator reads, and when. Given `now`, [`Source::refresh`] reads through a
//! [`HistoryReader`] (the store's read methods) the rows that changed and folds them into the
//! in-memory [`History`].
//!
//! **Late reports.** Agents stamp reports with their own clock and the store files each under
//! the minute it measured, so a report that arrives late (spooled during an outage) lands in
//! an old minute. A minute is judged once it has *settled*: `now >= start + 1 min + settle`.
//! Every evaluation re-reads the last `restate` of settled minutes, so a report arriving up to
//! `restate` after its minute settled still counts (the minute's figures are replaced, never
//! added twice). Later than that, a report reaches the hour-of-week baselines (read from the
//! store when each hour comes round) but no longer changes an alert.
//!
//! **Warm-up.** At start the last two hours are read minute by minute; the longer windows (the
//! 3-day burn rate) are filled backwards a couple of hours per evaluation, from minute rows or,
//! past `storage.downsample_after`, hour rows. Until then they cover what is loaded.
//!
//! Reads are chunked (five minutes of rows at a time), so memory stays bounded however many
//! cohorts there are.

use std::collections::BTreeMap;
use std::ops::Range;

use super::history::{History, MINUTE_SLOTS};
use super::signals::{self, Counts, RowProblem};
use crate::store::{
    AgentFacts, Cohort, CohortFilter, CohortRow, HOUR_MS, HistoryStore, MINUTE_MS, Resolution,
    StoreError,
};

/// One week, ms.
pub const WEEK_MS: u64 = 7 * 24 * HOUR_MS;
/// Hours of older history loaded per evaluation during warm-up.
pub const WARM_UP_HOURS_PER_TICK: u64 = 2;
/// Minutes of rows read per query.
const CHUNK_MS: u64 = 5 * MINUTE_MS;

/// The store's read side, all the evaluator needs. Every [`HistoryStore`] is one; tests
/// implement it over generated rows.
pub trait HistoryReader {
    /// Rows of `resolution` starting in `range` (see [`HistoryStore::rows`]).
    fn rows(
        &self,
        resolution: Resolution,
        range: Range<u64>,
        filter: &CohortFilter,
    ) -> Result<Vec<CohortRow>, StoreError>;

    /// The agent registry.
    fn agents(&self) -> Result<Vec<AgentFacts>, StoreError>;
}

impl<T: HistoryStore + ?Sized> HistoryReader for T {
    fn rows(
        &self,
        resolution: Resolution,
        range: Range<u64>,
        filter: &CohortFilter,
    ) -> Result<Vec<CohortRow>, StoreError> {
        HistoryStore::rows(self, resolution, range, filter)
    }

    fn agents(&self) -> Result<Vec<AgentFacts>, StoreError> {
        HistoryStore::agents(self)
    }
}

/// The same hour of the past weeks, per cohort: what the baselines compare with.
#[derive(Debug, Clone, Default)]
pub struct Baselines {
    /// Start of the hour of the week they are for (this week's).
    pub hour: u64,
    /// Per cohort, the counts of that hour in each past week that had any.
    pub weeks: BTreeMap<Cohort, Vec<Counts>>,
}

/// What one refresh read.
#[derive(Debug, Clone, Default)]
pub struct Refresh {
    /// The agent registry.
    pub agents: Vec<AgentFacts>,
    /// Rows read.
    pub rows: usize,
    /// Histograms that did not decode (the rest of their rows counted).
    pub problems: Vec<RowProblem>,
}

/// Reads history into memory as time passes.
#[derive(Debug, Clone)]
pub struct Source {
    settle_ms: u64,
    restate_ms: u64,
    slow_first_frame_us: u64,
    longest_window_ms: u64,
    baseline_weeks: usize,
    downsample_after_ms: u64,
    /// End (exclusive) of the settled minutes read so far.
    settled_end: Option<u64>,
    /// Older history is loaded back to here (inclusive start).
    loaded_from: Option<u64>,
    baselines: Baselines,
}

impl Source {
    /// A source for `settings`; `downsample_after_ms` is `storage.downsample_after` (older
    /// minutes are in hour rows).
    pub fn new(settings: &super::Settings, downsample_after_ms: u64) -> Self {
        Source {
            settle_ms: settings.settle_ms,
            restate_ms: settings.restate_ms,
            slow_first_frame_us: settings.slow_first_frame_us,
            longest_window_ms: longest_window_ms(settings),
            baseline_weeks: settings.baseline.weeks,
            downsample_after_ms,
            settled_end: None,
            loaded_from: None,
            baselines: Baselines::default(),
        }
    }

    /// `self`'s progress with `other`'s settings (a config reload).
    pub fn with_settings_of(mut self, other: &Source) -> Self {
        if self.baseline_weeks != other.baseline_weeks {
            self.baselines = Baselines::default();
        }
        self.settle_ms = other.settle_ms;
        self.restate_ms = other.restate_ms;
        self.slow_first_frame_us = other.slow_first_frame_us;
        self.longest_window_ms = other.longest_window_ms;
        self.baseline_weeks = other.baseline_weeks;
        self.downsample_after_ms = other.downsample_after_ms;
        self
    }

    /// End (exclusive) of the settled minutes at `now`: the minutes judged are those before.
    pub fn settled_end(&self, now: u64) -> u64 {
        let t = now.saturating_sub(MINUTE_MS + self.settle_ms);
        t - t % MINUTE_MS + MINUTE_MS
    }

    /// The baselines of the hour holding `at` (loaded by [`Source::refresh`]).
    pub fn baselines(&self) -> &Baselines {
        &self.baselines
    }

    /// Reads what changed by `now` into `history`; `baseline_at` is the instant whose hour of
    /// the week the baselines must be for.
    pub fn refresh(
        &mut self,
        now: u64,
        baseline_at: u64,
        reader: &dyn HistoryReader,
        history: &mut History,
    ) -> Result<Refresh, StoreError> {
        let mut out = Refresh { agents: reader.agents()?, ..Refresh::default() };
        let end = self.settled_end(now);
        let oldest = end.saturating_sub(MINUTE_MS * MINUTE_SLOTS as u64);
        let from = match self.settled_end {
            None => oldest,
            Some(prev) => prev.min(end.saturating_sub(self.restate_ms)).max(oldest),
        };
        self.read_minutes(from..end, reader, history, &mut out)?;
        let mut unsettled: BTreeMap<Cohort, Vec<(u64, signals::MinuteSignals)>> = BTreeMap::new();
        self.each_row(Resolution::Minute, end..now.max(end) + 1, reader, &mut out, |c, s, m| {
            unsettled.entry(c.clone()).or_default().push((s, m));
        })?;
        for minutes in unsettled.values_mut() {
            minutes.sort_by_key(|&(s, _)| s);
        }
        history.set_unsettled(unsettled);
        self.settled_end = Some(end);
        let loaded_from = *self.loaded_from.get_or_insert(from);
        self.warm_up(end, loaded_from, reader, history, &mut out)?;
        let hour = baseline_at - baseline_at % HOUR_MS;
        if self.baselines.hour != hour {
            self.load_baselines(hour, now, reader, &mut out)?;
        }
        Ok(out)
    }

    /// Calls `f` with the signals of every row of `resolution` starting in `range`, reading
    /// minute rows a chunk at a time.
    fn each_row(
        &self,
        resolution: Resolution,
        range: Range<u64>,
        reader: &dyn HistoryReader,
        out: &mut Refresh,
        mut f: impl FnMut(&Cohort, u64, signals::MinuteSignals),
    ) -> Result<(), StoreError> {
        let all = CohortFilter::default();
        let step =
            if resolution == Resolution::Minute { CHUNK_MS } else { range.end - range.start };
        let mut at = range.start;
        while at < range.end {
            let chunk = at..at.saturating_add(step).min(range.end);
            for row in reader.rows(resolution, chunk.clone(), &all)? {
                let (signals, problems) = signals::from_row(&row, self.slow_first_frame_us);
                f(&row.cohort, row.start_unix_ms, signals);
                out.problems.extend(problems);
                out.rows += 1;
            }
            at = chunk.end;
        }
        Ok(())
    }

    fn read_minutes(
        &self,
        range: Range<u64>,
        reader: &dyn HistoryReader,
        history: &mut History,
        out: &mut Refresh,
    ) -> Result<(), StoreError> {
        self.each_row(Resolution::Minute, range, reader, out, |cohort, start, signals| {
            history.set_minute(cohort, start, signals);
        })
    }

    /// Loads up to [`WARM_UP_HOURS_PER_TICK`] hours before `loaded_from`, newest first.
    fn warm_up(
        &mut self,
        end: u64,
        mut loaded_from: u64,
        reader: &dyn HistoryReader,
        history: &mut History,
        out: &mut Refresh,
    ) -> Result<(), StoreError> {
        let target = end.saturating_sub(self.longest_window_ms + HOUR_MS);
        for _ in 0..WARM_UP_HOURS_PER_TICK {
            if loaded_from <= target {
                break;
            }
            let start = (loaded_from - 1) - (loaded_from - 1) % HOUR_MS;
            let range = start.max(target)..loaded_from;
            let mut add = |cohort: &Cohort, start: u64, signals: signals::MinuteSignals| {
                history.add_counts(cohort, start, &signals.counts);
            };
            // Hour rows first, then minutes: if maintenance folds this hour in between, it is
            // missed (counted low) rather than counted twice.
            if range.start == start && start + HOUR_MS == loaded_from {
                self.each_row(Resolution::Hour, start..start + 1, reader, out, &mut add)?;
            }
            if range.end + self.downsample_after_ms + HOUR_MS > end {
                self.each_row(Resolution::Minute, range.clone(), reader, out, &mut add)?;
            }
            loaded_from = range.start;
        }
        self.loaded_from = Some(loaded_from);
        Ok(())
    }

    /// Reads the same hour of each of the past weeks, per cohort.
    fn load_baselines(
        &mut self,
        hour: u64,
        now: u64,
        reader: &dyn HistoryReader,
        out: &mut Refresh,
    ) -> Result<(), StoreError> {
        let mut weeks: BTreeMap<Cohort, Vec<Counts>> = BTreeMap::new();
        for k in 1..=self.baseline_weeks as u64 {
            let Some(start) = hour.checked_sub(k * WEEK_MS) else { break };
            let mut per_cohort: BTreeMap<Cohort, Counts> = BTreeMap::new();
            let mut add = |cohort: &Cohort, _: u64, signals: signals::MinuteSignals| {
                per_cohort.entry(cohort.clone()).or_default().add(&signals.counts);
            };
            self.each_row(Resolution::Hour, start..start + 1, reader, out, &mut add)?;
            // Not yet downsampled (recent weeks, or a long `downsample_after`): its minutes.
            if start + HOUR_MS + self.downsample_after_ms + HOUR_MS > now {
                self.each_row(Resolution::Minute, start..start + HOUR_MS, reader, out, &mut add)?;
            }
            for (cohort, counts) in per_cohort {
                weeks.entry(cohort).or_default().push(counts);
            }
        }
        self.baselines = Baselines { hour, weeks };
        Ok(())
    }
}

/// The longest window any rule sums over, ms.
pub fn longest_window_ms(settings: &super::Settings) -> u64 {
    let burn = settings.burn_windows.iter().map(|w| w.long_ms).max().unwrap_or(0);
    [
        burn,
        settings.baseline_window_ms,
        settings.outlier.window.as_millis() as u64,
        settings.transport_window_ms,
        HOUR_MS,
    ]
    .into_iter()
    .max()
    .unwrap_or(HOUR_MS)
}
