//! Scenario tests in virtual time: generated histories served through [`HistoryReader`] the
//! way the SQLite store serves them (minute rows, hour rows past `downsample_after`, an agent
//! registry), the real evaluator ticking every minute, and assertions on what fires, at which
//! severity, and when.

mod scenarios;

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::ops::Range;

use stallwatch_proto::hdr;

use super::config::AlertsConfig;
use super::evaluator::Evaluator;
use super::incidents::{Change, Incident, Transition};
use super::source::HistoryReader;
use super::{Alert, Settings, Severity};
use crate::config::Slo;
use crate::store::{
    AgentFacts, Cohort, CohortFilter, CohortRow, HOUR_MS, MINUTE_MS, Resolution, StoreError,
    StoredHistogram,
};

/// Monday 2026-10-05 00:00 UTC.
pub const T0: u64 = 1_791_158_400_000;
/// Minutes, in ms.
pub const fn min(n: u64) -> u64 {
    n * MINUTE_MS
}

/// One generated cohort-minute.
#[derive(Debug, Clone, Default)]
pub struct Minute {
    /// Counters by report name.
    pub counters: BTreeMap<&'static str, u64>,
    /// First-frame samples, µs.
    pub first_frame_us: Vec<u64>,
    /// Jitter samples, µs.
    pub jitter_us: Vec<u64>,
}

impl Minute {
    /// `viewers` agents each viewing 50 s of the minute with this stall ratio, one attempt
    /// each, 3000 packets each with `loss`.
    pub fn viewing(viewers: u64, stall_ratio: f64, loss: f64) -> Self {
        let viewing_ns = viewers * 50_000_000_000;
        let stall = (viewing_ns as f64 * stall_ratio) as u64;
        let expected = viewers * 3000;
        let mut m = Minute::default();
        m.add("play_time_ns", viewing_ns - stall)
            .add("stall_time_ns", stall)
            .add("view_attempts", viewers)
            .add("packets_expected", expected)
            .add("packets_lost", (expected as f64 * loss) as u64);
        m
    }

    /// `publishers` publish attempts, `failed` of them failing as unreachable.
    pub fn publishing(publishers: u64, failed: u64) -> Self {
        let mut m = Minute::default();
        m.add("publish_attempts", publishers).add("publish_failures_unreachable", failed);
        m
    }

    /// Adds to a counter.
    pub fn add(&mut self, name: &'static str, v: u64) -> &mut Self {
        *self.counters.entry(name).or_default() += v;
        self
    }

    fn merge(&mut self, other: &Minute) {
        for (k, v) in &other.counters {
            *self.counters.entry(k).or_default() += v;
        }
        self.first_frame_us.extend(&other.first_frame_us);
        self.jitter_us.extend(&other.jitter_us);
    }

    fn row(&self, cohort: &Cohort, start: u64, resolution: Resolution) -> CohortRow {
        let mut histograms = BTreeMap::new();
        for (name, samples) in
            [("first_frame_us", &self.first_frame_us), ("jitter_us", &self.jitter_us)]
        {
            if samples.is_empty() {
                continue;
            }
            let mut h = hdr::new_histogram();
            for &v in samples {
                h.record(v).unwrap();
            }
            histograms.insert(
                name.to_owned(),
                StoredHistogram {
                    hdr: hdr::encode(&h),
                    sum: samples.iter().sum(),
                    count: samples.len() as u64,
                },
            );
        }
        CohortRow {
            start_unix_ms: start,
            resolution,
            cohort: cohort.clone(),
            histograms,
            counters: self.counters.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
        }
    }
}

/// What a generator gives for a cohort and minute start as known at `now` (`None`: no data).
/// Most ignore `now`; late (spooled) reports show up when `now` has passed their arrival.
pub type Generator = Box<dyn Fn(&Cohort, u64, u64) -> Option<Minute>>;

/// A history store over generated data: a minute becomes visible once it has ended (its
/// reports arrived; with `in_progress`, once it has begun, the generator saying what had been
/// reported of it by `now`), and minutes older than `downsample_after` are only in hour rows,
/// as after the store's maintenance.
pub struct Fake {
    pub cohorts: Vec<Cohort>,
    pub in_progress: bool,
    pub generate: Generator,
    pub now: Cell<u64>,
    pub downsample_after: u64,
    pub agents: RefCell<Vec<AgentFacts>>,
    pub reads: Cell<usize>,
}

impl Fake {
    pub fn new(cohorts: Vec<Cohort>, generate: Generator) -> Self {
        Fake {
            cohorts,
            in_progress: false,
            generate,
            now: Cell::new(0),
            downsample_after: 2 * 24 * HOUR_MS,
            agents: RefCell::new(Vec::new()),
            reads: Cell::new(0),
        }
    }

    fn visible(&self, start: u64) -> bool {
        if self.in_progress { start <= self.now.get() } else { start + MINUTE_MS <= self.now.get() }
    }

    fn downsampled(&self, hour: u64) -> bool {
        hour + HOUR_MS <= self.now.get().saturating_sub(self.downsample_after)
    }
}

impl HistoryReader for Fake {
    fn rows(
        &self,
        resolution: Resolution,
        range: Range<u64>,
        filter: &CohortFilter,
    ) -> Result<Vec<CohortRow>, StoreError> {
        assert_eq!(filter, &CohortFilter::default());
        self.reads.set(self.reads.get() + 1);
        let mut out = Vec::new();
        let step = resolution.millis();
        let mut start = range.start.div_ceil(step) * step;
        while start < range.end {
            for cohort in &self.cohorts {
                match resolution {
                    Resolution::Minute => {
                        if self.visible(start)
                            && !self.downsampled(start - start % HOUR_MS)
                            && let Some(m) = (self.generate)(cohort, start, self.now.get())
                        {
                            out.push(m.row(cohort, start, resolution));
                        }
                    }
                    Resolution::Hour => {
                        if self.downsampled(start) {
                            let mut sum: Option<Minute> = None;
                            for i in 0..60 {
                                if let Some(m) =
                                    (self.generate)(cohort, start + min(i), self.now.get())
                                {
                                    sum.get_or_insert_with(Minute::default).merge(&m);
                                }
                            }
                            if let Some(m) = sum {
                                out.push(m.row(cohort, start, resolution));
                            }
                        }
                    }
                }
            }
            start += step;
        }
        out.sort_by(|a, b| (a.start_unix_ms, &a.cohort).cmp(&(b.start_unix_ms, &b.cohort)));
        Ok(out)
    }

    fn agents(&self) -> Result<Vec<AgentFacts>, StoreError> {
        Ok(self.agents.borrow().clone())
    }
}

/// A cohort.
pub fn cohort(region: &str, network_type: &str, transport: &str) -> Cohort {
    Cohort {
        region: region.into(),
        network_type: network_type.into(),
        transport: transport.into(),
        // What an agent whose plan leaves repair out sends.
        repair: if transport == "quic-stream" { "none" } else { "nack" }.into(),
        target: format!("relay-{region}"),
    }
}

/// An agent that reported `age_ms` before `now`.
pub fn agent(name: &str, region: &str, network_type: &str, last_report: u64) -> AgentFacts {
    AgentFacts {
        name: name.into(),
        region: region.into(),
        network_type: network_type.into(),
        version: "test".into(),
        plan_revision: 1,
        first_seen_unix_ms: 0,
        last_report_unix_ms: last_report,
        last_seq: 0,
        spool_depth: 0,
        reports: 1,
        last_window_end_ms: last_report,
    }
}

/// Default settings from an empty `[alerts]` and the default `[slo]`.
pub fn default_settings() -> Settings {
    AlertsConfig::default().settings(&Slo::default(), &[])
}

/// One incident change seen by the run.
#[derive(Debug, Clone)]
pub struct Seen {
    pub at: u64,
    pub transition: Transition,
    pub incident: Incident,
}

/// An evaluator driven over a [`Fake`] in virtual time.
pub struct Run {
    pub fake: Fake,
    pub evaluator: Evaluator,
    pub seen: Vec<Seen>,
    /// Every (alert, region, method) that was firing at some tick.
    pub firing: std::collections::BTreeSet<(Alert, String, super::Method)>,
    /// Called before each tick to update the agent registry.
    pub agents: Box<dyn Fn(u64) -> Vec<AgentFacts>>,
}

impl Run {
    pub fn new(fake: Fake, settings: Settings) -> Self {
        Run {
            evaluator: Evaluator::new(settings, fake.downsample_after, Default::default()),
            fake,
            seen: Vec::new(),
            firing: Default::default(),
            agents: Box::new(|_| Vec::new()),
        }
    }

    /// Ticks every `every` ms from `from` to `to` (inclusive).
    pub fn run(&mut self, from: u64, to: u64, every: u64) {
        let mut now = from;
        while now <= to {
            self.tick(now);
            now += every;
        }
    }

    pub fn tick(&mut self, now: u64) {
        self.fake.now.set(now);
        *self.fake.agents.borrow_mut() = (self.agents)(now);
        let tick = self.evaluator.tick(now, &self.fake).expect("tick");
        assert!(tick.problems.is_empty(), "{:?}", tick.problems);
        for t in tick.transitions {
            let incident = self.evaluator.incidents().all[&t.id].clone();
            self.seen.push(Seen { at: now, transition: t, incident });
        }
        for i in self.evaluator.incidents().open_incidents() {
            for m in &i.methods {
                self.firing.insert((i.alert, i.scope.region.clone(), *m));
            }
        }
    }

    /// Changes of incidents other than the watchdog.
    pub fn changes(&self) -> impl Iterator<Item = &Seen> {
        self.seen.iter().filter(|s| s.incident.alert != Alert::Watchdog)
    }

    /// When the first incident of `alert` in `region` reached `severity` (opened at it or
    /// escalated to it).
    pub fn first(&self, alert: Alert, region: &str, severity: Severity) -> Option<&Seen> {
        self.changes().find(|s| {
            s.incident.alert == alert
                && s.incident.scope.region == region
                && matches!(s.transition.change, Change::Opened | Change::Escalated)
                && s.transition.to >= severity
        })
    }

    /// The highest severity any non-watchdog incident reached.
    pub fn worst(&self) -> Option<Severity> {
        self.changes().map(|s| s.transition.to).max()
    }
}

/// A deterministic noise source in [-1, 1] (a 64-bit LCG), so scenarios are repeatable.
pub fn noise(seed: u64) -> f64 {
    let x = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
    let x = (x ^ (x >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
    let x = x ^ (x >> 33);
    (x >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
}
