//! Folds probe windows into one interval report per label set, and numbers the reports.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use stallwatch_measure::{Recorder, WindowMetrics};
use stallwatch_proto::catalogue::{Counter, Histogram};
use stallwatch_proto::report::{
    HistogramData, REPORT_SCHEMA_VERSION, Report, ReportLimits, Series, SeriesLabels,
};
use tracing::{info, warn};

use super::spool::{QUARANTINE_DIR, SpoolError, io_error, read_capped, seq_of_name, write_durably};

/// File in the spool directory holding the next sequence number to issue.
pub const SEQ_FILE: &str = "next_seq";
const SEQ_TEMP: &str = "next_seq.tmp";

/// The agent's build version, sent in every report.
const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Accumulates probe windows over one report interval and turns them into a [`Report`].
///
/// A window belongs to the interval in which it is [added](ReportBuilder::add) (windows are
/// not split at interval boundaries), and windows with the same [`SeriesLabels`] are merged
/// exactly ([`WindowMetrics::merge`]: counters summed, histograms merged).
#[derive(Debug)]
pub struct ReportBuilder {
    seq: SeqStore,
    window_start_ms: u64,
    series: BTreeMap<SeriesLabels, Folded>,
    max_series: usize,
    windows_dropped: u64,
}

impl ReportBuilder {
    /// A builder whose first interval starts at `now_unix_ms`, numbering reports from the
    /// sequence file in `spool_dir` (created if needed).
    ///
    /// The next number is the larger of the one stored and one past any report file still in
    /// the directory (spooled or quarantined). When no sequence file exists (first start, or a
    /// wiped disk) or it is unreadable, numbering starts at `now_unix_ms` instead of 1: every
    /// number issued before was at most the earlier start time plus one per interval, so a
    /// reinstalled agent that keeps its certificate does not reuse numbers and see its reports
    /// dropped as duplicates.
    pub fn open(spool_dir: impl AsRef<Path>, now_unix_ms: u64) -> Result<Self, SpoolError> {
        Ok(ReportBuilder {
            seq: SeqStore::open(spool_dir.as_ref(), now_unix_ms)?,
            window_start_ms: now_unix_ms,
            series: BTreeMap::new(),
            max_series: ReportLimits::default().max_series,
            windows_dropped: 0,
        })
    }

    /// Caps the number of series per report (default: the collector's default limit, 256). A
    /// window for a new label set beyond it is dropped and counted, so a report never grows
    /// past what the collector accepts.
    pub fn with_max_series(mut self, max_series: usize) -> Self {
        self.max_series = max_series;
        self
    }

    /// Adds a finished window to the current interval. Returns `false` if it was dropped
    /// because the report already holds `max_series` other label sets.
    ///
    /// A window marked self-noise (the agent's own sender or emulator ran late beyond the
    /// bounds of docs/metrics.md section 18.8) is counted in `self_noise_windows` and its
    /// figures are kept out of the series: what the collector stores, and so its alerts and
    /// regional reports, is never the agent's own overload taken for the network's.
    pub fn add(&mut self, key: &SeriesLabels, window: &WindowMetrics) -> bool {
        let Some(folded) = self.entry(key) else { return false };
        if window.self_noise.is_marked() {
            *folded
                .counters
                .entry(Counter::SelfNoiseWindows.report_name().to_owned())
                .or_default() += window.self_noise.windows;
            return true;
        }
        match &mut folded.metrics {
            Some(metrics) => metrics.merge(window),
            None => folded.metrics = Some(window.clone()),
        }
        true
    }

    /// Adds `value` to `counter` of the series `key` in the current interval (for figures
    /// that are not a viewer window: attempts, failures, publisher counts). Returns `false`
    /// if dropped at the series limit, like [`ReportBuilder::add`].
    pub fn add_counter(&mut self, key: &SeriesLabels, counter: Counter, value: u64) -> bool {
        let Some(folded) = self.entry(key) else { return false };
        *folded.counters.entry(counter.report_name().to_owned()).or_default() += value;
        true
    }

    /// Merges `values` into `histogram` of the series `key` in the current interval.
    /// Returns `false` if dropped at the series limit, like [`ReportBuilder::add`].
    pub fn add_histogram(
        &mut self,
        key: &SeriesLabels,
        histogram: Histogram,
        values: &Recorder,
    ) -> bool {
        let Some(folded) = self.entry(key) else { return false };
        folded.histograms.entry(histogram.report_name().to_owned()).or_default().merge(values);
        true
    }

    fn entry(&mut self, key: &SeriesLabels) -> Option<&mut Folded> {
        if !self.series.contains_key(key) {
            if self.series.len() >= self.max_series {
                self.windows_dropped += 1;
                warn!(probe = %key.probe, max_series = self.max_series, "report series limit reached; window dropped");
                return None;
            }
            self.series.insert(key.clone(), Folded::default());
        }
        self.series.get_mut(key)
    }

    /// Ends the interval at `now_unix_ms` and returns its report; the next interval starts
    /// there.
    ///
    /// The report's `seq` is made durable in the spool directory before it is returned, so no
    /// number is ever issued twice. If that fails, the error is returned and nothing is lost:
    /// the windows stay in the builder and go into the next report, whose window then starts
    /// where this one did.
    ///
    /// An interval without windows still gives a report, with no series: it tells the
    /// collector the agent is alive (last report time, version, plan revision, spool depth).
    ///
    /// `spool_depth` is left at 0 for the caller to set. A `now_unix_ms` before the window's
    /// start (it cannot happen with the agent's monotonic clock) gives an empty window.
    pub fn take(
        &mut self,
        now_unix_ms: u64,
        agent: &str,
        plan_revision: u64,
    ) -> Result<Report, SpoolError> {
        let seq = self.seq.reserve()?;
        let window_end_ms = now_unix_ms.max(self.window_start_ms);
        let series = std::mem::take(&mut self.series)
            .into_iter()
            .map(|(labels, folded)| folded.into_series(labels))
            .collect();
        let report = Report {
            schema_version: REPORT_SCHEMA_VERSION,
            agent: agent.to_owned(),
            agent_version: AGENT_VERSION.to_owned(),
            seq,
            window_start_ms: self.window_start_ms,
            window_end_ms,
            plan_revision,
            spool_depth: 0,
            series,
        };
        self.window_start_ms = window_end_ms;
        Ok(report)
    }

    /// The sequence number the next report will get.
    pub fn next_seq(&self) -> u64 {
        self.seq.next
    }

    /// Start of the current interval, unix ms.
    pub fn window_start_ms(&self) -> u64 {
        self.window_start_ms
    }

    /// Label sets in the current interval.
    pub fn series_len(&self) -> usize {
        self.series.len()
    }

    /// Windows dropped because a report was at its series limit, since the builder was opened.
    pub fn windows_dropped(&self) -> u64 {
        self.windows_dropped
    }
}

/// What one label set collected in the current interval.
#[derive(Debug, Default)]
struct Folded {
    /// Viewer windows, merged (`None`: no window, e.g. a publisher's series).
    metrics: Option<WindowMetrics>,
    /// Counters beside the window's (attempts, failures, publisher figures), summed.
    counters: BTreeMap<String, u64>,
    /// Histograms beside the window's (publish time, RTT), merged.
    histograms: BTreeMap<String, Recorder>,
}

impl Folded {
    fn into_series(self, labels: SeriesLabels) -> Series {
        let mut series = match self.metrics {
            Some(metrics) => metrics.to_series(labels),
            None => Series::new(labels),
        };
        for (name, value) in self.counters {
            *series.counters.entry(name).or_default() += value;
        }
        for (name, r) in self.histograms {
            if r.count() > 0 {
                series
                    .histograms
                    .insert(name, HistogramData::from_histogram(r.histogram(), r.sum()));
            }
        }
        series
    }
}

/// The next sequence number, kept in [`SEQ_FILE`].
#[derive(Debug)]
struct SeqStore {
    dir: PathBuf,
    next: u64,
}

impl SeqStore {
    fn open(dir: &Path, now_unix_ms: u64) -> Result<Self, SpoolError> {
        fs::create_dir_all(dir).map_err(io_error("creating", dir))?;
        let temp = dir.join(SEQ_TEMP);
        match fs::remove_file(&temp) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(io_error("removing", &temp)(e));
            }
            _ => {}
        }
        let path = dir.join(SEQ_FILE);
        let stored = match read_capped(&path, 64) {
            Ok(bytes) => {
                let parsed: Option<u64> =
                    std::str::from_utf8(&bytes).ok().and_then(|t| t.trim().parse().ok());
                if parsed.is_none() {
                    warn!(path = %path.display(), "unreadable sequence file; numbering from the clock");
                }
                parsed
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_error("reading", &path)(e)),
        };
        let floor = highest_issued(dir)?.map_or(1, |seq| seq.saturating_add(1));
        let next = match stored {
            Some(next) => next.max(floor),
            None => {
                let next = now_unix_ms.max(floor);
                info!(dir = %dir.display(), next, "no sequence file; numbering reports from the clock");
                next
            }
        };
        Ok(SeqStore { dir: dir.to_owned(), next })
    }

    /// Issues the next number, after storing the one that follows it.
    fn reserve(&mut self) -> Result<u64, SpoolError> {
        let seq = self.next;
        let after = seq.saturating_add(1);
        write_durably(&self.dir, SEQ_FILE, SEQ_TEMP, format!("{after}\n").as_bytes())?;
        self.next = after;
        Ok(seq)
    }
}

/// The highest sequence number in a report file name in `dir` or its quarantine.
fn highest_issued(dir: &Path) -> Result<Option<u64>, SpoolError> {
    let mut highest = None;
    for d in [dir.to_owned(), dir.join(QUARANTINE_DIR)] {
        let entries = match fs::read_dir(&d) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_error("listing", &d)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io_error("listing", &d))?;
            if let Some(seq) = entry.file_name().to_str().and_then(seq_of_name) {
                highest = highest.max(Some(seq));
            }
        }
    }
    Ok(highest)
}
