//! The cumulative per-cohort series and per-agent facts, and how an interval report is folded
//! into them. Plain data: no locks, no clock, no I/O.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use stallwatch_proto::hdr::{HdrError, SparseHistogram};
use stallwatch_proto::report::{DecodedReport, Report, Series};
use thiserror::Error;

use crate::store::{AgentRow, BatchDelta, CohortRow};

use super::catalogue::{SERIES_PER_COHORT, counter_index, histogram_index};
use super::cohort::{CohortKey, CohortState, HistogramView};

/// Default [`SeriesLimits::max_series`]: the 50k budget of DESIGN.md section 6.
pub const DEFAULT_MAX_SERIES: usize = 50_000;
/// Default [`SeriesLimits::max_agents`].
pub const DEFAULT_MAX_AGENTS: usize = 100_000;

/// Bounds on what the store holds, so no input can grow it without limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeriesLimits {
    /// Most series held, counted as [`SERIES_PER_COHORT`] per cohort. A report series that
    /// would start a cohort beyond it is dropped and counted; existing cohorts keep folding.
    pub max_series: usize,
    /// Most agents whose facts (`stallwatch_agent_info`, last report) are kept; agents are
    /// already bounded by the certificates the fleet CA issued.
    pub max_agents: usize,
}

impl Default for SeriesLimits {
    fn default() -> Self {
        SeriesLimits { max_series: DEFAULT_MAX_SERIES, max_agents: DEFAULT_MAX_AGENTS }
    }
}

impl SeriesLimits {
    /// Most cohorts [`SeriesLimits::max_series`] allows.
    pub fn max_cohorts(&self) -> usize {
        self.max_series / SERIES_PER_COHORT
    }
}

/// The agent facts that come from its certificate, never from the report body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity<'a> {
    /// Region, from the certificate.
    pub region: &'a str,
    /// Network type, from the certificate.
    pub network_type: &'a str,
}

/// What one agent last told the collector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentFacts {
    /// Region, from its certificate.
    pub region: String,
    /// Network type, from its certificate.
    pub network_type: String,
    /// Build version, from its latest report.
    pub version: String,
    /// End of the newest window it reported, unix ms (agent clock, checked for sanity at
    /// ingest). Backfilled older reports do not move it back.
    pub last_report_ms: u64,
}

/// What [`Cohorts::fold`] did with one report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FoldSummary {
    /// Report series added to a cohort.
    pub series_folded: u64,
    /// Cohorts this report started.
    pub cohorts_created: u64,
    /// Report series dropped because their cohort would be new beyond the series limit.
    pub cohorts_refused: u64,
    /// Report series dropped for lacking a non-empty `transport` or `target` label.
    pub series_missing_labels: u64,
    /// Counter names not in the catalogue, ignored.
    pub unknown_counters: u64,
    /// Histogram names not in the catalogue, ignored.
    pub unknown_histograms: u64,
    /// 1 if the agent was new and over [`SeriesLimits::max_agents`], so not tracked.
    pub agents_refused: u64,
}

impl FoldSummary {
    pub(crate) fn add(&mut self, other: &FoldSummary) {
        self.series_folded += other.series_folded;
        self.cohorts_created += other.cohorts_created;
        self.cohorts_refused += other.cohorts_refused;
        self.series_missing_labels += other.series_missing_labels;
        self.unknown_counters += other.unknown_counters;
        self.unknown_histograms += other.unknown_histograms;
        self.agents_refused += other.agents_refused;
    }
}

/// Why a stored row could not be restored; nothing of the row was added.
#[derive(Debug, Error)]
pub enum RestoreError {
    /// A stored histogram failed to decode.
    #[error("stored histogram {metric:?} of {cohort:?} is corrupt: {source}")]
    CorruptHistogram {
        /// Metric (report histogram) name.
        metric: String,
        /// The row's cohort.
        cohort: Box<crate::store::Cohort>,
        /// The decode error.
        #[source]
        source: HdrError,
    },
}

/// Cumulative per-cohort series: every interval report is added into running totals, never
/// kept as a snapshot, so they export as Prometheus counters and histograms.
#[derive(Clone, Default)]
pub struct Cohorts {
    limits: SeriesLimits,
    cohorts: BTreeMap<CohortKey, Box<CohortState>>,
    agents: BTreeMap<String, AgentFacts>,
    totals: FoldSummary,
}

impl std::fmt::Debug for Cohorts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cohorts")
            .field("limits", &self.limits)
            .field("cohorts", &self.cohorts.len())
            .field("agents", &self.agents.len())
            .field("totals", &self.totals)
            .finish()
    }
}

impl Cohorts {
    /// An empty store with these limits.
    pub fn new(limits: SeriesLimits) -> Self {
        Cohorts { limits, ..Default::default() }
    }

    /// The limits in force.
    pub fn limits(&self) -> SeriesLimits {
        self.limits
    }

    /// Adds one interval report. `identity` is the agent's certificate identity; the
    /// report's own `agent` name must already have been checked against the certificate.
    /// Each report series goes to the cohort of (`identity`, its `transport` and `target`
    /// labels); its other labels (such as `probe`) are merged away. Deduplicating resent
    /// reports is the caller's job: folding a report twice counts it twice.
    pub fn fold(&mut self, identity: Identity<'_>, decoded: &DecodedReport) -> FoldSummary {
        let report = &decoded.report;
        let mut summary = self.note_agent_of(identity, report);
        for (series, histograms) in report.series.iter().zip(&decoded.histograms) {
            let Some(state) = self.admit(identity, series, &mut summary) else { continue };
            for (name, &value) in &series.counters {
                match counter_index(name) {
                    Some(i) => state.add_counter(i, value),
                    None => summary.unknown_counters += 1,
                }
            }
            for (name, h) in histograms {
                match histogram_index(name) {
                    Some(i) => {
                        let sum = series.histograms.get(name).map_or(0, |d| d.sum);
                        state.add_histogram(i, h, sum);
                    }
                    None => summary.unknown_histograms += 1,
                }
            }
            summary.series_folded += 1;
        }
        self.totals.add(&summary);
        summary
    }

    /// Everything [`Cohorts::fold`] does with a report except adding its numbers: the agent's
    /// facts, each series' cohort (created, or refused at the series limit) and the counts of
    /// what is skipped, with the same summary. The numbers come merged with the rest of the
    /// report's batch through [`Cohorts::add_delta`]: noting every stored report of a batch,
    /// then adding the batch's [`BatchDelta`], leaves the series exactly as folding each
    /// report would, at a fraction of the cost when a batch holds many reports per cohort.
    pub fn note_report(&mut self, identity: Identity<'_>, decoded: &DecodedReport) -> FoldSummary {
        let report = &decoded.report;
        let mut summary = self.note_agent_of(identity, report);
        for series in &report.series {
            if self.admit(identity, series, &mut summary).is_none() {
                continue;
            }
            summary.unknown_counters +=
                series.counters.keys().filter(|n| counter_index(n).is_none()).count() as u64;
            summary.unknown_histograms +=
                series.histograms.keys().filter(|n| histogram_index(n).is_none()).count() as u64;
            summary.series_folded += 1;
        }
        self.totals.add(&summary);
        summary
    }

    /// Adds a committed batch's numbers to the cohorts [`Cohorts::note_report`] admitted.
    /// Cohorts it refused (or never saw: no `transport` or `target`) and names outside the
    /// catalogue are skipped; `note_report` counted them.
    pub fn add_delta(&mut self, delta: &BatchDelta) {
        for cohort in &delta.cohorts {
            let c = &cohort.cohort;
            let key = CohortKey::new(&c.region, &c.network_type, &c.transport, &c.target);
            let Some(state) = self.cohorts.get_mut(&key) else { continue };
            for (name, value) in &cohort.counters {
                if let Some(i) = counter_index(name) {
                    state.add_counter(i, *value);
                }
            }
            for (name, h) in &cohort.histograms {
                if let Some(i) = histogram_index(name) {
                    state.add_histogram(i, &h.histogram, h.sum);
                }
            }
        }
    }

    /// Notes the agent's facts; the summary says whether the agent limit refused it.
    fn note_agent_of(&mut self, identity: Identity<'_>, report: &Report) -> FoldSummary {
        let noted =
            self.note_agent(identity, &report.agent, &report.agent_version, report.window_end_ms);
        FoldSummary { agents_refused: u64::from(!noted), ..FoldSummary::default() }
    }

    /// The state of a report series' cohort, created if the series limit allows; `None`
    /// (counted in `summary`) when the series lacks a `transport` or `target` label or the
    /// limit refuses a new cohort.
    fn admit(
        &mut self,
        identity: Identity<'_>,
        series: &Series,
        summary: &mut FoldSummary,
    ) -> Option<&mut CohortState> {
        let (Some(transport), Some(target)) = (label(series, "transport"), label(series, "target"))
        else {
            summary.series_missing_labels += 1;
            return None;
        };
        let key = CohortKey::new(identity.region, identity.network_type, transport, target);
        let admits_new = self.cohorts.len() < self.limits.max_cohorts();
        match self.cohorts.entry(key) {
            Entry::Occupied(e) => Some(e.into_mut()),
            Entry::Vacant(e) if admits_new => {
                summary.cohorts_created += 1;
                Some(e.insert(Box::default()))
            }
            Entry::Vacant(_) => {
                summary.cohorts_refused += 1;
                None
            }
        }
    }

    /// Adds one stored history row (a minute or an hour of one cohort: merged HDR histograms
    /// with exact sums, and counter totals) as if the reports merged into it were folded
    /// again: the same classic buckets, native buckets, sums, counts and counters, because
    /// every figure is added per HDR bucket or per counter and so does not depend on how the
    /// reports were grouped. Used to rebuild the cumulative series after a restart.
    ///
    /// Like [`Cohorts::fold`]: a row with an empty `transport` or `target` is skipped and
    /// counted in `series_missing_labels`; a row that would start a cohort beyond the series
    /// limit is refused (`cohorts_refused`); unknown names are ignored and counted. The
    /// summary is returned but NOT added to the ingest totals the collector exports (those
    /// count this process's reports). Each stored histogram's count is its HDR total, as in
    /// a fold. All histograms are decoded before anything is added, so an error leaves the
    /// series untouched.
    pub fn restore_row(&mut self, row: &CohortRow) -> Result<FoldSummary, RestoreError> {
        let decoded = decode_row(row)?;
        Ok(self.restore_decoded(row, &decoded))
    }

    pub(crate) fn restore_decoded(&mut self, row: &CohortRow, decoded: &DecodedRow) -> FoldSummary {
        let mut summary = FoldSummary::default();
        let cohort = &row.cohort;
        if cohort.transport.is_empty() || cohort.target.is_empty() {
            summary.series_missing_labels = 1;
            return summary;
        }
        let key =
            CohortKey::new(&cohort.region, &cohort.network_type, &cohort.transport, &cohort.target);
        let admits_new = self.cohorts.len() < self.limits.max_cohorts();
        let state = match self.cohorts.entry(key) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) if admits_new => {
                summary.cohorts_created = 1;
                e.insert(Box::default())
            }
            Entry::Vacant(_) => {
                summary.cohorts_refused = 1;
                return summary;
            }
        };
        for (name, &value) in &row.counters {
            match counter_index(name) {
                Some(i) => state.add_counter(i, value),
                None => summary.unknown_counters += 1,
            }
        }
        for (index, h, sum) in decoded {
            match index {
                Some(i) => state.add_histogram(*i, h, *sum),
                None => summary.unknown_histograms += 1,
            }
        }
        summary.series_folded = 1;
        summary
    }

    /// Seeds an agent's facts (`stallwatch_agent_info`, last report time) from the history
    /// store's registry after a restart. The registry's `last_report_unix_ms` is when the
    /// collector *received* the latest report (collector clock), where a fold uses the end of
    /// the newest window (agent clock); the later of the two wins, so a report folded since
    /// is not moved back. A version or identity already seen from a fold is kept (it is
    /// newer). Returns false if the agent is new and [`SeriesLimits::max_agents`] is reached.
    pub fn restore_agent(&mut self, row: &AgentRow) -> bool {
        if let Some(facts) = self.agents.get_mut(&row.name) {
            facts.last_report_ms = facts.last_report_ms.max(row.last_report_unix_ms);
            return true;
        }
        if self.agents.len() >= self.limits.max_agents {
            return false;
        }
        self.agents.insert(
            row.name.clone(),
            AgentFacts {
                region: row.region.clone(),
                network_type: row.network_type.clone(),
                version: row.version.clone(),
                last_report_ms: row.last_report_unix_ms,
            },
        );
        true
    }

    /// Records the agent's facts; false if it is new and the agent limit is reached.
    fn note_agent(
        &mut self,
        identity: Identity<'_>,
        agent: &str,
        version: &str,
        window_end_ms: u64,
    ) -> bool {
        let at_limit = self.agents.len() >= self.limits.max_agents;
        let facts = match self.agents.get_mut(agent) {
            Some(facts) => facts,
            None if at_limit => return false,
            None => self.agents.entry(agent.to_owned()).or_insert_with(|| AgentFacts {
                region: String::new(),
                network_type: String::new(),
                version: String::new(),
                last_report_ms: 0,
            }),
        };
        set(&mut facts.region, identity.region);
        set(&mut facts.network_type, identity.network_type);
        set(&mut facts.version, version);
        facts.last_report_ms = facts.last_report_ms.max(window_end_ms);
        true
    }

    /// Number of cohorts.
    pub fn len(&self) -> usize {
        self.cohorts.len()
    }

    /// Whether no cohort has been folded yet.
    pub fn is_empty(&self) -> bool {
        self.cohorts.is_empty()
    }

    /// Series held: [`SERIES_PER_COHORT`] per cohort.
    pub fn series(&self) -> usize {
        self.cohorts.len() * SERIES_PER_COHORT
    }

    /// Heap bytes held by native buckets, over all cohorts.
    pub fn native_heap_bytes(&self) -> usize {
        self.cohorts.values().map(|s| s.heap_bytes()).sum()
    }

    /// Cohort keys, in exposition order.
    pub fn keys(&self) -> impl Iterator<Item = &CohortKey> {
        self.cohorts.keys()
    }

    /// A cohort's histogram by its report name (e.g. `jitter_us`), empty or not.
    pub fn histogram(&self, key: &CohortKey, report_name: &str) -> Option<HistogramView<'_>> {
        let index = histogram_index(report_name)?;
        Some(self.cohorts.get(key)?.histogram(index))
    }

    /// A cohort's counter by its report name (e.g. `packets_lost`), in the reported unit.
    pub fn counter(&self, key: &CohortKey, report_name: &str) -> Option<u64> {
        let index = counter_index(report_name)?;
        Some(self.cohorts.get(key)?.counter(index))
    }

    /// Agents by name.
    pub fn agents(&self) -> &BTreeMap<String, AgentFacts> {
        &self.agents
    }

    /// Everything every fold so far did, added up (for the collector's own metrics).
    pub fn totals(&self) -> FoldSummary {
        self.totals
    }

    /// Cohorts with their state, in exposition order.
    pub(crate) fn states(&self) -> impl Iterator<Item = (&CohortKey, &CohortState)> {
        self.cohorts.iter().map(|(k, s)| (k, &**s))
    }
}

/// A row's histograms, decoded: (catalogue index, histogram, exact sum) each.
pub(crate) type DecodedRow = Vec<(Option<usize>, SparseHistogram, u64)>;

/// Decodes a row's histograms.
pub(crate) fn decode_row(row: &CohortRow) -> Result<DecodedRow, RestoreError> {
    row.histograms
        .iter()
        .map(|(name, stored)| {
            let h = stored.decode_sparse().map_err(|source| RestoreError::CorruptHistogram {
                metric: name.clone(),
                cohort: Box::new(row.cohort.clone()),
                source,
            })?;
            Ok((histogram_index(name), h, stored.sum))
        })
        .collect()
}

fn label<'a>(series: &'a Series, name: &str) -> Option<&'a str> {
    series.labels.get(name).map(String::as_str).filter(|v| !v.is_empty())
}

/// Replaces `slot` with `value` without reallocating when it is unchanged.
fn set(slot: &mut String, value: &str) {
    if slot != value {
        value.clone_into(slot);
    }
}
