//! The cumulative per-cohort series and per-agent facts, and how a committed batch's
//! [`Delta`] is added to them. Plain data: no locks, no clock, no I/O.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use crate::store::{AgentFacts, Cohort, Delta, Origin};

use super::catalogue::{SERIES_PER_COHORT, counter_index, histogram_index};
use super::cohort::{CohortState, HistogramView};

/// Default [`SeriesLimits::max_series`]: the 50k budget of DESIGN.md section 6.
pub const DEFAULT_MAX_SERIES: usize = 50_000;
/// Default [`SeriesLimits::max_agents`].
pub const DEFAULT_MAX_AGENTS: usize = 100_000;

/// Bounds on what the store holds, so no input can grow it without limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeriesLimits {
    /// Most series held, counted as [`SERIES_PER_COHORT`] per cohort. A report series that
    /// would start a cohort beyond it is dropped and counted; existing cohorts keep adding.
    pub max_series: usize,
    /// Most agents whose facts (`stallwatch_agent_info`, last report, the fleet view) are
    /// kept; agents are already bounded by the certificates the fleet CA issued.
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

/// What [`Cohorts::apply`] did with a delta, counted in report series (or reports, for
/// agents) as the collector's own metrics count them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FoldSummary {
    /// Report series added to a cohort.
    pub series_folded: u64,
    /// Cohorts started.
    pub cohorts_created: u64,
    /// Report series dropped because their cohort would be new beyond the series limit.
    pub cohorts_refused: u64,
    /// Counter names not in the catalogue, ignored (once per report series carrying one).
    pub unknown_counters: u64,
    /// Histogram names not in the catalogue, ignored (likewise).
    pub unknown_histograms: u64,
    /// Reports from agents that were new and over [`SeriesLimits::max_agents`], so not tracked.
    pub agents_refused: u64,
}

impl FoldSummary {
    pub(crate) fn add(&mut self, other: &FoldSummary) {
        self.series_folded += other.series_folded;
        self.cohorts_created += other.cohorts_created;
        self.cohorts_refused += other.cohorts_refused;
        self.unknown_counters += other.unknown_counters;
        self.unknown_histograms += other.unknown_histograms;
        self.agents_refused += other.agents_refused;
    }
}

/// Cumulative per-cohort series: every committed batch is added into running totals, never
/// kept as a snapshot, so they export as Prometheus counters and histograms.
#[derive(Clone, Default)]
pub struct Cohorts {
    limits: SeriesLimits,
    cohorts: BTreeMap<Cohort, Box<CohortState>>,
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

    /// Adds a delta: the only way numbers and facts get in. Each agent's facts replace what
    /// was known of it (a new agent beyond the agent limit is not tracked); each cohort is
    /// admitted in the delta's order (created, or refused beyond the series limit; skipped
    /// without a `transport` or `target`), then its histograms and counters are added, names
    /// outside the catalogue skipped and counted. Everything is added per HDR bucket or per
    /// counter, so the result does not depend on how reports were grouped into deltas.
    ///
    /// The summary of a [`Origin::Committed`] delta is added to the totals the collector
    /// exports about its ingest; a restored one's is not (those count this process's reports).
    pub fn apply(&mut self, delta: &Delta) -> FoldSummary {
        let mut summary = FoldSummary::default();
        for agent in delta.agents() {
            if !self.note_agent(agent.facts()) {
                summary.agents_refused += agent.reports();
            }
        }
        for cohort in delta.cohorts() {
            let series = cohort.series();
            let Some(state) = self.admit(cohort.cohort(), series, &mut summary) else { continue };
            for counter in cohort.counters() {
                match counter_index(counter.name()) {
                    Some(i) => state.add_counter(i, counter.value()),
                    None => summary.unknown_counters += counter.series(),
                }
            }
            for histogram in cohort.histograms() {
                match histogram_index(histogram.name()) {
                    Some(i) => state.add_histogram(i, histogram.histogram()),
                    None => summary.unknown_histograms += histogram.series(),
                }
            }
            summary.series_folded += series;
        }
        if delta.origin() == Origin::Committed {
            self.totals.add(&summary);
        }
        summary
    }

    /// The state of a cohort, created if the series limit allows; `None` when the limit
    /// refuses a new cohort (counted in `summary`, per report series) or, only in history a
    /// store kept from before ingest refused series without them, when it lacks a `transport`
    /// or `target` label (a committed series always has both: `SeriesLabels`).
    fn admit(
        &mut self,
        cohort: &Cohort,
        series: u64,
        summary: &mut FoldSummary,
    ) -> Option<&mut CohortState> {
        if !cohort.has_series_labels() {
            return None;
        }
        let admits_new = self.cohorts.len() < self.limits.max_cohorts();
        if self.cohorts.contains_key(cohort) {
            // Known: no key to clone.
            return self.cohorts.get_mut(cohort).map(|state| &mut **state);
        }
        match self.cohorts.entry(cohort.clone()) {
            Entry::Occupied(e) => Some(e.into_mut()),
            Entry::Vacant(e) if admits_new => {
                summary.cohorts_created += 1;
                Some(e.insert(Box::default()))
            }
            Entry::Vacant(_) => {
                summary.cohorts_refused += series;
                None
            }
        }
    }

    /// Keeps an agent's latest facts; false if it is new and the agent limit is reached.
    fn note_agent(&mut self, facts: &AgentFacts) -> bool {
        if let Some(known) = self.agents.get_mut(&facts.name) {
            known.clone_from(facts);
            return true;
        }
        if self.agents.len() >= self.limits.max_agents {
            return false;
        }
        self.agents.insert(facts.name.clone(), facts.clone());
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
    pub fn keys(&self) -> impl Iterator<Item = &Cohort> {
        self.cohorts.keys()
    }

    /// A cohort's histogram by its report name (e.g. `jitter_us`), empty or not.
    pub fn histogram(&self, key: &Cohort, report_name: &str) -> Option<HistogramView<'_>> {
        let index = histogram_index(report_name)?;
        Some(self.cohorts.get(key)?.histogram(index))
    }

    /// A cohort's counter by its report name (e.g. `packets_lost`), in the reported unit.
    pub fn counter(&self, key: &Cohort, report_name: &str) -> Option<u64> {
        let index = counter_index(report_name)?;
        Some(self.cohorts.get(key)?.counter(index))
    }

    /// Agents by name: what each last told the collector (also the fleet view).
    pub fn agents(&self) -> &BTreeMap<String, AgentFacts> {
        &self.agents
    }

    /// Everything every committed delta so far did, added up (for the collector's own
    /// metrics).
    pub fn totals(&self) -> FoldSummary {
        self.totals
    }

    /// Cohorts with their state, in exposition order.
    pub(crate) fn states(&self) -> impl Iterator<Item = (&Cohort, &CohortState)> {
        self.cohorts.iter().map(|(k, s)| (k, &**s))
    }
}
