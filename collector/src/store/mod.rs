//! The history store: per-minute merged histograms and counters per cohort, an agent registry
//! and the ingest ledger that makes report delivery idempotent, behind [`HistoryStore`].
//!
//! Ingest hands a group of concurrently received reports to [`HistoryStore::commit`], which
//! records them in ONE transaction (group commit) and returns one [`Outcome`] per report and
//! the batch's [`Delta`]; a report may be acknowledged to its agent only after that call
//! returns `Ok`. In the same transaction the store:
//! - admits each report through the ledger on `(agent, seq)`, so a resent (spooled) report
//!   counts once, and one reusing a number with another body ([`report_digest`]) is a
//!   [`Outcome::Conflict`];
//! - builds the [`Delta`]: the admitted reports' histograms merged per row
//!   `(minute, cohort, metric)` into [`HistogramCounts`], their counters per
//!   `(minute, cohort, name)`, and the facts of their agents (`AgentFacts::absorb`);
//! - writes the rows and the registry from that delta (each merged HDR histogram in
//!   V2+DEFLATE, plus the exact sum and count).
//!
//! The exported series then add the same delta, so what `/metrics` shows is exactly what the
//! transaction stored. After a restart, [`HistoryStore::replay`] reads history back as deltas
//! (one per cohort) for the series to add the same way.
//!
//! A report's minute is the minute holding the middle of its window ([`minute_of`]), on the
//! agent's clock, so a report backfilled hours later lands where it was measured. Cohort
//! labels: `region` and `network_type` come from the agent's verified certificate
//! ([`VerifiedAgent`]), never from the report; `transport`, `repair` and `target` from the
//! series labels (`""` when absent; a missing `repair` reads as
//! [`cohort::repair_when_unlabelled`]). Other series labels are not part of the cohort: their
//! series merge.
//!
//! Maintenance folds minutes older than an age into hourly rows ([`HistoryStore::downsample`]),
//! deletes rows past retention ([`HistoryStore::retain`]) and prunes the ledger
//! ([`HistoryStore::prune_ledger`]); [`HistoryStore::maintain`] runs all three from a
//! [`Retention`] policy.
//!
//! **Invariant:** a report's ledger entry and its contribution to every row are written in
//! the same transaction, so after any crash each stored report is counted exactly once and
//! each report not stored is counted not at all.
//!
//! The one backend is SQLite ([`SqliteStore`]); see `sqlite/mod.rs` for the schema and the
//! durability choice.

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Duration;

use hdrhistogram::Histogram;
use stallwatch_proto::hdr::{self, HdrError, HdrLimits};
use stallwatch_proto::report::DecodedReport;
use thiserror::Error;

mod agent;
mod cohort;
mod counts;
mod delta;
mod sqlite;

pub use agent::AgentFacts;
pub use cohort::{Cohort, UNKNOWN_REPAIR, repair_when_unlabelled};
pub use counts::HistogramCounts;
pub use delta::{AgentDelta, CohortDelta, Delta, NamedCounter, NamedHistogram, Origin};
pub use sqlite::{DEFAULT_ROW_CACHE_BYTES, ROW_DEFLATE_LEVEL, SqliteStore};

use crate::pki::VerifiedAgent;

#[cfg(test)]
mod tests;

/// One minute, in milliseconds.
pub const MINUTE_MS: u64 = 60_000;
/// One hour, in milliseconds.
pub const HOUR_MS: u64 = 3_600_000;

/// Largest counter increment, histogram sum or histogram count one report may carry: 2^48.
/// Far above anything a 10 s window produces (2^48 bytes is 281 TB), and low enough that
/// merging millions of reports stays inside SQLite's signed 64-bit integers; totals saturate
/// rather than wrap if an adversary still gets there.
pub const MAX_REPORT_VALUE: u64 = 1 << 48;

/// Limits for decoding histograms the store wrote itself: generous, because merged rows hold
/// far more counts than one report, but still bounded so a damaged file cannot make the
/// decoder allocate without limit.
pub const STORED_HDR_LIMITS: HdrLimits = HdrLimits {
    max_encoded_bytes: 4 * 1024 * 1024,
    max_decoded_bytes: 4 * 1024 * 1024,
    max_highest_trackable: hdr::HIGHEST_TRACKABLE_US,
    max_significant_figures: hdr::SIGNIFICANT_FIGURES,
};

/// Largest value an SQLite integer holds; every stored number is in `0..=I64_MAX`.
pub(crate) const I64_MAX: u64 = i64::MAX as u64;

/// One report to store, with the agent's verified certificate identity.
#[derive(Debug, Clone, Copy)]
pub struct IngestItem<'a> {
    /// Who sent it (ingest has checked the report claims the same name).
    pub agent: &'a VerifiedAgent,
    /// The checked report with its histograms decoded.
    pub report: &'a DecodedReport,
    /// When the collector received it, unix ms (collector clock); ages the ledger entry and
    /// sets the agent's last-report time.
    pub received_unix_ms: u64,
    /// SHA-256 of the report's body as received ([`report_digest`]), kept in the ledger so a
    /// reused `(agent, seq)` with another body is told from a resend.
    pub digest: [u8; 32],
}

/// The digest the ledger keeps of a report body: SHA-256 of its bytes. Agents resend a
/// spooled report byte for byte, so a resend has the same digest.
pub fn report_digest(body: &[u8]) -> [u8; 32] {
    let mut digest = [0; 32];
    digest.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, body).as_ref());
    digest
}

/// What [`HistoryStore::commit`] did with one report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Stored and durable: acknowledge it.
    Stored,
    /// `(agent, seq)` was stored before (or earlier in the same batch) with the same digest:
    /// acknowledge it, it was not counted again.
    Duplicate,
    /// `(agent, seq)` was stored before with another digest: the agent reused the number (its
    /// state was restored from a snapshot, say). Not stored; answer 409 `seq-conflict` so the
    /// agent resends it under a new number.
    Conflict,
    /// Not stored: values the store cannot hold exactly. Answer 4xx; a resend cannot succeed.
    Rejected(ItemError),
}

/// What [`HistoryStore::commit`] did with a batch.
#[derive(Debug)]
pub struct Committed {
    /// One outcome per item, in order.
    pub outcomes: Vec<Outcome>,
    /// What the stored reports added: the rows the transaction wrote, and what the series add.
    pub delta: Delta,
}

/// Why one report was refused by the store (the rest of its batch is unaffected).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ItemError {
    /// A counter, histogram sum or count above [`MAX_REPORT_VALUE`], or a sequence number,
    /// time or plan revision beyond a signed 64-bit integer.
    #[error("{what} is {value}, above the store's limit of {max}")]
    ValueTooLarge {
        /// Which field, e.g. `"series 0 counter \"packets\""`.
        what: String,
        /// The value sent.
        value: u64,
        /// The limit.
        max: u64,
    },
    /// A histogram holds a value above what the store's histograms can track.
    #[error("series {series} histogram {name:?} holds {max_value}, above the trackable {limit}")]
    HistogramRange {
        /// Index of the series.
        series: usize,
        /// Histogram name.
        name: String,
        /// Largest value recorded.
        max_value: u64,
        /// Largest value the store tracks.
        limit: u64,
    },
    /// `DecodedReport::histograms` does not line up with the report's series.
    #[error("decoded histograms do not match the report's series")]
    Inconsistent,
}

impl ItemError {
    /// Short snake_case label for a rejection-reason metric.
    pub fn reason(&self) -> &'static str {
        match self {
            ItemError::ValueTooLarge { .. } => "value_too_large",
            ItemError::HistogramRange { .. } => "histogram_range",
            ItemError::Inconsistent => "inconsistent",
        }
    }
}

/// Store failures: the collector's own fault (answer 5xx; the agent keeps the report and
/// retries).
#[derive(Debug, Error)]
pub enum StoreError {
    /// SQLite failed (I/O error, disk full, locked past the busy timeout, ...).
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The database was written by a newer build.
    #[error("database schema version {found} is newer than this build's {supported}")]
    SchemaTooNew {
        /// Version in the file.
        found: u32,
        /// Newest version this build knows.
        supported: u32,
    },
    /// A stored histogram failed to decode.
    #[error("stored histogram {what} is corrupt: {source}")]
    CorruptHistogram {
        /// Which row.
        what: String,
        /// The decode error.
        #[source]
        source: HdrError,
    },
    /// A merged histogram could not be encoded.
    #[error("encoding a merged histogram: {0}")]
    Encode(#[from] hdr::HdrEncodeError),
    /// Histograms with incompatible ranges.
    #[error("merging histograms: {0}")]
    Merge(String),
    /// A stored value is out of range, or SQLite is not in the expected mode.
    #[error("history store: {0}")]
    Corrupt(String),
}

/// Row resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Resolution {
    /// Per-minute rows, written by ingest.
    Minute,
    /// Per-hour rows, written by [`HistoryStore::downsample`].
    Hour,
}

impl Resolution {
    /// Length of one row's interval, ms.
    pub fn millis(self) -> u64 {
        match self {
            Resolution::Minute => MINUTE_MS,
            Resolution::Hour => HOUR_MS,
        }
    }
}

/// Which cohorts a read returns: `None` matches any value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CohortFilter {
    /// Only this region.
    pub region: Option<String>,
    /// Only this network type.
    pub network_type: Option<String>,
    /// Only this transport.
    pub transport: Option<String>,
    /// Only this target.
    pub target: Option<String>,
    /// Only this repair mode.
    pub repair: Option<String>,
}

/// A merged histogram as stored, with its exact sum and count.
///
/// Kept encoded (typically 1-3 KiB): a decoded histogram takes 224 KiB of counts whatever it
/// holds, so a read of a few hours of cohorts decoded eagerly would need gigabytes. Call
/// [`StoredHistogram::decode`] (or `decode_sparse`) for the rows you need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredHistogram {
    /// V2+DEFLATE ([`hdr::encode`]).
    pub hdr: Vec<u8>,
    /// Exact sum of the recorded values.
    pub sum: u64,
    /// Number of recorded values (equals the histogram's total count).
    pub count: u64,
}

impl StoredHistogram {
    /// Decodes the histogram under [`STORED_HDR_LIMITS`].
    pub fn decode(&self) -> Result<Histogram<u64>, HdrError> {
        hdr::decode(&self.hdr, &STORED_HDR_LIMITS)
    }

    /// Decodes the histogram's non-zero buckets under [`STORED_HDR_LIMITS`]
    /// ([`hdr::decode_sparse`]).
    pub fn decode_sparse(&self) -> Result<hdr::SparseHistogram, HdrError> {
        hdr::decode_sparse(&self.hdr, &STORED_HDR_LIMITS)
    }
}

/// Everything stored for one cohort over one minute or hour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CohortRow {
    /// Start of the interval, unix ms (a multiple of the resolution).
    pub start_unix_ms: u64,
    /// Minute or hour.
    pub resolution: Resolution,
    /// The cohort.
    pub cohort: Cohort,
    /// Merged histograms by metric name.
    pub histograms: BTreeMap<String, StoredHistogram>,
    /// Counter totals by name.
    pub counters: BTreeMap<String, u64>,
}

/// What [`HistoryStore::replay`] read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayStats {
    /// Cohorts replayed.
    pub cohorts: u64,
    /// Histogram and counter rows read.
    pub rows: u64,
    /// Agents in the registry.
    pub agents: u64,
}

/// What [`HistoryStore::downsample`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DownsampleStats {
    /// Hours folded.
    pub hours: u64,
    /// Minute rows (histogram and counter rows) folded and deleted.
    pub minute_rows: u64,
}

/// What [`HistoryStore::retain`] deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetainStats {
    /// Minute rows (histogram and counter rows) deleted.
    pub minute_rows: u64,
    /// Hour rows (histogram and counter rows) deleted.
    pub hour_rows: u64,
}

/// What [`HistoryStore::maintain`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MaintenanceStats {
    /// Downsampling.
    pub downsample: DownsampleStats,
    /// Retention.
    pub retain: RetainStats,
    /// Ledger entries pruned.
    pub ledger_pruned: u64,
}

/// How long history is kept. Ages are measured against the `now` passed to
/// [`HistoryStore::maintain`] (collector clock) and row start times (agent clocks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Fold minutes older than this into hours. Alerts read the last hours at minute
    /// resolution; 2 days leaves room for the 6 h burn-rate window and a weekend's look back.
    pub downsample_after: Duration,
    /// Delete minute rows older than this (a safety net: downsampling normally folds them
    /// first). Should not be shorter than `downsample_after`, or minutes are lost unfolded.
    pub keep_minutes: Duration,
    /// Delete hour rows older than this. 400 days covers hour-of-week baselines and
    /// year-over-year regional reports.
    pub keep_hours: Duration,
    /// Prune ledger entries received longer ago than this. It must exceed the longest time an
    /// agent may hold a report in its spool and resend it (the spool horizon): a report
    /// resent after its entry is pruned is counted twice. 7 days by default.
    pub keep_ledger: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        const DAY: u64 = 24 * 3600;
        Retention {
            downsample_after: Duration::from_secs(2 * DAY),
            keep_minutes: Duration::from_secs(3 * DAY),
            keep_hours: Duration::from_secs(400 * DAY),
            keep_ledger: Duration::from_secs(7 * DAY),
        }
    }
}

/// A store of per-cohort history. Implementations must make each
/// [`commit`](HistoryStore::commit) atomic and durable before it returns.
pub trait HistoryStore: Send {
    /// Stores a group of reports in one transaction and returns one outcome per item, in
    /// order, with what the stored ones added ([`Delta`]). On `Err` nothing of the batch is
    /// stored: answer 5xx to every report in it.
    fn commit(&mut self, batch: &[IngestItem<'_>]) -> Result<Committed, StoreError>;

    /// Reads back everything stored in rows starting at or after `since_unix_ms` (minutes and
    /// hours alike), and the agent registry, as deltas of [`Origin::Restored`]: one per
    /// cohort, in the order cohorts were first stored, each with its totals over the whole
    /// span, then one with every agent. Adding them all to empty series gives what adding each
    /// committed batch gave. One cohort's totals are in memory at a time.
    fn replay(
        &self,
        since_unix_ms: u64,
        visit: &mut dyn FnMut(Delta),
    ) -> Result<ReplayStats, StoreError>;

    /// Rows of `resolution` whose start lies in `range` (unix ms), for cohorts matching
    /// `filter`, ordered by start time then cohort.
    fn rows(
        &self,
        resolution: Resolution,
        range: Range<u64>,
        filter: &CohortFilter,
    ) -> Result<Vec<CohortRow>, StoreError>;

    /// The agent registry, ordered by name.
    fn agents(&self) -> Result<Vec<AgentFacts>, StoreError>;

    /// Folds minute rows of every whole hour before `older_than_unix_ms` (rounded down to
    /// the hour) into hour rows, adding to hour rows already there, and deletes the minutes.
    /// Each hour is one transaction. Totals (sums, counts, counters, histogram counts) are
    /// preserved exactly.
    fn downsample(&mut self, older_than_unix_ms: u64) -> Result<DownsampleStats, StoreError>;

    /// Deletes minute rows starting before `minutes_before_unix_ms` and hour rows starting
    /// before `hours_before_unix_ms`.
    fn retain(
        &mut self,
        minutes_before_unix_ms: u64,
        hours_before_unix_ms: u64,
    ) -> Result<RetainStats, StoreError>;

    /// Deletes ledger entries received before `received_before_unix_ms`; returns how many.
    /// A report resent after its entry is gone is stored again, so keep at least the agents'
    /// spool horizon ([`Retention::keep_ledger`]).
    fn prune_ledger(&mut self, received_before_unix_ms: u64) -> Result<u64, StoreError>;

    /// Downsamples, applies retention and prunes the ledger per `policy`, as of `now_unix_ms`.
    fn maintain(
        &mut self,
        now_unix_ms: u64,
        policy: &Retention,
    ) -> Result<MaintenanceStats, StoreError> {
        let before = |age: Duration| {
            now_unix_ms.saturating_sub(u64::try_from(age.as_millis()).unwrap_or(u64::MAX))
        };
        let downsample = self.downsample(before(policy.downsample_after))?;
        let retain = self.retain(before(policy.keep_minutes), before(policy.keep_hours))?;
        let ledger_pruned = self.prune_ledger(before(policy.keep_ledger))?;
        Ok(MaintenanceStats { downsample, retain, ledger_pruned })
    }
}

/// The minute a report belongs to: the start (unix ms) of the minute holding the middle of
/// its window, on the agent's clock. The middle rather than an end, so a 10 s window that
/// ends exactly on a minute boundary stays in the minute it measured.
pub fn minute_of(window_start_ms: u64, window_end_ms: u64) -> u64 {
    let mid = window_start_ms + window_end_ms.saturating_sub(window_start_ms) / 2;
    mid - mid % MINUTE_MS
}
