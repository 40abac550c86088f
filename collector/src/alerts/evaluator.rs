//! The sans-IO core: [`Evaluator::tick`] takes `now` and a [`HistoryReader`], reads what
//! changed, runs every rule, combines their findings per key (the highest severity asked for
//! wins; the spread of a P1 makes it a P0) and applies them to the incidents. It reads no
//! clock and keeps no handle to anything: tests drive it through virtual time.

use std::collections::BTreeMap;

use super::history::History;
use super::incidents::{Assessment, IncidentKey, Incidents, Scope, Transition};
use super::rules::absence::AbsenceState;
use super::rules::threshold::{Insufficient, ThresholdState};
use super::rules::{self, Context, Verdict};
use super::signals::RowProblem;
use super::source::{HistoryReader, Source, longest_window_ms};
use super::{Alert, Evidence, Method, Settings, Severity};
use crate::store::{AgentFacts, HOUR_MS, StoreError};

/// What one tick did.
#[derive(Debug, Clone, Default)]
pub struct Tick {
    /// Incident changes, in id order.
    pub transitions: Vec<Transition>,
    /// Rows read.
    pub rows: usize,
    /// Histograms that did not decode.
    pub problems: Vec<RowProblem>,
    /// Agents in the registry.
    pub agents: usize,
}

/// The evaluator.
#[derive(Debug, Clone)]
pub struct Evaluator {
    settings: Settings,
    source: Source,
    history: History,
    thresholds: ThresholdState,
    absence: AbsenceState,
    incidents: Incidents,
    insufficient: Insufficient,
    evaluated_unix_ms: Option<u64>,
}

impl Evaluator {
    /// An evaluator with `settings`, starting from `incidents` (restored from the state file:
    /// thresholds and absences that were firing stay firing until their data clears them).
    /// `downsample_after_ms` is `storage.downsample_after`.
    pub fn new(settings: Settings, downsample_after_ms: u64, incidents: Incidents) -> Self {
        let mut thresholds = ThresholdState::default();
        let mut absence = AbsenceState::default();
        for inc in incidents.open_incidents() {
            if inc.alert == Alert::AgentAbsent {
                absence.restore(&inc.scope.agent);
            }
            if inc.methods.contains(&Method::Threshold) {
                let cohort = inc.scope.cohort_of();
                for e in inc.evidence.iter().filter(|e| e.method == Method::Threshold) {
                    if let Some(signal) = e.signal {
                        thresholds.restore(signal, cohort.clone());
                    }
                }
            }
        }
        Evaluator {
            source: Source::new(&settings, downsample_after_ms),
            history: History::new(longest_window_ms(&settings)),
            settings,
            thresholds,
            absence,
            incidents,
            insufficient: Insufficient::new(),
            evaluated_unix_ms: None,
        }
    }

    /// New settings (a config reload). Windows longer than the history held at start take
    /// effect after a restart.
    pub fn reconfigure(&mut self, settings: Settings, downsample_after_ms: u64) {
        let source = Source::new(&settings, downsample_after_ms);
        self.source = self.source.clone().with_settings_of(&source);
        self.settings = settings;
    }

    /// The settings in force.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The incidents, open and recent.
    pub fn incidents(&self) -> &Incidents {
        &self.incidents
    }

    /// Cohorts and signals that had too little data at the last evaluation.
    pub fn insufficient(&self) -> &Insufficient {
        &self.insufficient
    }

    /// When it last evaluated, unix ms.
    pub fn evaluated_unix_ms(&self) -> Option<u64> {
        self.evaluated_unix_ms
    }

    /// Reads what changed by `now` and evaluates.
    pub fn tick(&mut self, now: u64, reader: &dyn HistoryReader) -> Result<Tick, StoreError> {
        let end = self.source.settled_end(now);
        let baseline_at = end.saturating_sub(self.settings.baseline_window_ms / 2);
        let refresh = self.source.refresh(now, baseline_at, reader, &mut self.history)?;
        let transitions = self.evaluate(now, &refresh.agents);
        Ok(Tick {
            transitions,
            rows: refresh.rows,
            problems: refresh.problems,
            agents: refresh.agents.len(),
        })
    }

    /// Runs every rule over the history held and applies the result to the incidents.
    pub fn evaluate(&mut self, now: u64, agents: &[AgentFacts]) -> Vec<Transition> {
        let end = self.source.settled_end(now);
        self.history
            .forget_older_than(end.saturating_sub(longest_window_ms(&self.settings) + HOUR_MS));
        let ctx = Context {
            now,
            end,
            settings: &self.settings,
            history: &self.history,
            agents,
            baselines: self.source.baselines(),
        };
        let (mut findings, insufficient) = self.thresholds.evaluate(&ctx);
        findings.extend(rules::burn_rate::evaluate(&ctx));
        findings.extend(rules::baseline::evaluate(&ctx));
        findings.extend(rules::trend::evaluate(&ctx));
        findings.extend(rules::outlier::evaluate(&ctx));
        findings.extend(rules::transport::evaluate(&ctx));
        findings.extend(self.absence.evaluate(&ctx));
        findings.push(watchdog());
        let mut assessments: BTreeMap<IncidentKey, Assessment> = BTreeMap::new();
        for f in findings {
            let a = assessments.entry(f.key).or_default();
            match f.verdict {
                Verdict::Firing(severity) => {
                    a.severity = a.severity.max(Some(severity));
                    a.firing.push(f.method);
                    a.evidence.extend(f.evidence);
                }
                Verdict::Insufficient => a.insufficient.push(f.method),
                Verdict::Clear => {
                    if a.note.is_none() {
                        a.note = f.evidence.map(|e| e.text);
                    }
                }
            }
        }
        for a in assessments.values_mut() {
            a.evidence.sort_by_key(|e| std::cmp::Reverse(e.severity));
        }
        rules::spread::escalate(&ctx, &mut assessments);
        // Keys with nothing firing and no open incident change nothing.
        assessments.retain(|k, a| a.severity.is_some() || self.incidents.open(k).is_some());
        self.insufficient = insufficient;
        self.evaluated_unix_ms = Some(now);
        self.incidents.apply(now, &assessments, self.settings.resolve_after_ms)
    }
}

fn watchdog() -> rules::Finding {
    rules::Finding {
        key: IncidentKey { alert: Alert::Watchdog, scope: Scope::default() },
        method: Method::Watchdog,
        verdict: Verdict::Firing(Severity::None),
        evidence: Some(Evidence {
            method: Method::Watchdog,
            signal: None,
            severity: Severity::None,
            value: 1.0,
            limit: 1.0,
            window: "always".into(),
            text: "always firing: if this stops arriving, the alert path is broken".into(),
        }),
    }
}
