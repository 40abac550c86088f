//! [`Delta`]: what one committed batch added to history, or what history holds, per cohort,
//! with the facts of the agents involved. The store builds it inside its transaction and
//! writes its rows from it; the exported series add the same value. Only the store makes one
//! (no public constructor), so the series can only ever show what a transaction committed.

use super::{AgentFacts, Cohort, HistogramCounts};

/// Where a [`Delta`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A committed ingest batch: its reports count in the collector's own ingest totals.
    Committed,
    /// Rows and registry read back from the store after a restart: they rebuild the series
    /// but are not this process's ingest.
    Restored,
}

/// What a committed batch added (or what the store holds), merged per cohort: exactly the
/// sum of its reports' contributions to the rows. Duplicates and refused reports add nothing.
#[derive(Debug)]
pub struct Delta {
    origin: Origin,
    cohorts: Vec<CohortDelta>,
    agents: Vec<AgentDelta>,
}

/// What a delta adds to one cohort.
#[derive(Debug)]
pub struct CohortDelta {
    cohort: Cohort,
    series: u64,
    histograms: Vec<NamedHistogram>,
    counters: Vec<NamedCounter>,
}

/// A histogram a delta adds, merged over its reports (one per row: a name appears once per
/// minute or hour the delta spans).
#[derive(Debug)]
pub struct NamedHistogram {
    name: String,
    histogram: HistogramCounts,
    series: u64,
}

/// A counter increment a delta adds, once per row like histograms.
#[derive(Debug)]
pub struct NamedCounter {
    name: String,
    value: u64,
    series: u64,
}

/// An agent a delta touched: its facts after the batch, and how many of its reports the
/// batch stored.
#[derive(Debug)]
pub struct AgentDelta {
    facts: AgentFacts,
    reports: u64,
}

impl Delta {
    pub(super) fn new(origin: Origin) -> Self {
        Delta { origin, cohorts: Vec::new(), agents: Vec::new() }
    }

    /// Ingest or restore.
    pub fn origin(&self) -> Origin {
        self.origin
    }

    /// Cohorts, in the order the batch first named them (the series admit new cohorts in
    /// that order when the series limit is near).
    pub fn cohorts(&self) -> &[CohortDelta] {
        &self.cohorts
    }

    /// Agents the batch stored reports from (or every registered agent, when restored).
    pub fn agents(&self) -> &[AgentDelta] {
        &self.agents
    }

    /// Whether it adds nothing at all.
    pub fn is_empty(&self) -> bool {
        self.cohorts.is_empty() && self.agents.is_empty()
    }

    /// Adds a cohort (new to this delta) and returns its index.
    pub(super) fn push_cohort(&mut self, cohort: Cohort, series: u64) -> usize {
        let delta = CohortDelta { cohort, series, histograms: Vec::new(), counters: Vec::new() };
        self.cohorts.push(delta);
        self.cohorts.len() - 1
    }

    pub(super) fn push_histogram(
        &mut self,
        cohort: usize,
        name: &str,
        histogram: HistogramCounts,
        series: u64,
    ) {
        let named = NamedHistogram { name: name.to_owned(), histogram, series };
        self.cohorts[cohort].histograms.push(named);
    }

    pub(super) fn push_counter(&mut self, cohort: usize, name: &str, value: u64, series: u64) {
        self.cohorts[cohort].counters.push(NamedCounter { name: name.to_owned(), value, series });
    }

    pub(super) fn push_agent(&mut self, facts: AgentFacts, reports: u64) {
        self.agents.push(AgentDelta { facts, reports });
    }
}

impl CohortDelta {
    /// The cohort.
    pub fn cohort(&self) -> &Cohort {
        &self.cohort
    }

    /// Report series merged into it (0 when restored).
    pub fn series(&self) -> u64 {
        self.series
    }

    /// Histograms added.
    pub fn histograms(&self) -> &[NamedHistogram] {
        &self.histograms
    }

    /// Counter increments.
    pub fn counters(&self) -> &[NamedCounter] {
        &self.counters
    }
}

impl NamedHistogram {
    /// Report histogram name, e.g. `jitter_us`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The merged histogram.
    pub fn histogram(&self) -> &HistogramCounts {
        &self.histogram
    }

    /// Report series that carried it (0 when restored).
    pub fn series(&self) -> u64 {
        self.series
    }
}

impl NamedCounter {
    /// Report counter name, e.g. `packets_lost`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The increment, in the reported unit.
    pub fn value(&self) -> u64 {
        self.value
    }

    /// Report series that carried it (0 when restored).
    pub fn series(&self) -> u64 {
        self.series
    }
}

impl AgentDelta {
    /// The agent's facts after the batch.
    pub fn facts(&self) -> &AgentFacts {
        &self.facts
    }

    /// Reports of the agent the batch stored (0 when restored).
    pub fn reports(&self) -> u64 {
        self.reports
    }
}
