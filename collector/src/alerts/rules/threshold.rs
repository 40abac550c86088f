//! Thresholds with N-of-M windows and hysteresis: a cohort's signal fires (P1: beyond the SLO)
//! when at least N of its last M judged minutes are at or above the enter level, and clears
//! only when all of its last M judged minutes are below the exit level. A minute with too
//! little data is not judged; the rule looks back at most 3 M minutes for M judged ones.
//!
//! The minutes not yet settled (the one settling and the one in progress) count toward firing
//! only, and only once they hold the minimum data and already breach however the rest of the
//! minute goes: a ratio signal's bad events over at least a whole minute's total, the most the
//! newest settled minute or an unsettled one holds ([`Signal::lowest_ratio`]). A fault plain a
//! few seconds into a minute fires then, not up to two minutes later when that minute has
//! settled, and a short burst reads no worse than in its whole minute. They never count toward
//! clearing; a minute not yet breaching, and any p95, is judged once settled.

use std::collections::{BTreeMap, BTreeSet};

use super::{Context, Finding, Verdict};
use crate::alerts::incidents::{IncidentKey, Scope};
use crate::alerts::signals::{Counts, Signal};
use crate::alerts::{Evidence, Method, Severity};
use crate::store::{Cohort, MINUTE_MS};

/// Which (signal, cohort) thresholds are firing: the hysteresis state.
#[derive(Debug, Clone, Default)]
pub struct ThresholdState {
    active: BTreeSet<(Signal, Cohort)>,
}

/// Cohort-signals without enough judged minutes, for "insufficient data" listings.
pub type Insufficient = BTreeMap<Cohort, Vec<Signal>>;

impl ThresholdState {
    /// Marks a threshold as firing (restoring state from an open incident after a restart).
    pub fn restore(&mut self, signal: Signal, cohort: Cohort) {
        self.active.insert((signal, cohort));
    }

    /// Judges every cohort and signal with a level.
    pub fn evaluate(&mut self, ctx: &Context<'_>) -> (Vec<Finding>, Insufficient) {
        let s = ctx.settings;
        let (n, m) = (s.breaches, s.window);
        let min = ctx.per_minute();
        let mut out = Vec::new();
        let mut insufficient = Insufficient::new();
        for (cohort, history) in ctx.history.cohorts() {
            for (&signal, levels) in &s.levels {
                if !signal.judged_on(cohort) {
                    continue;
                }
                let from = ctx.end.saturating_sub(3 * m as u64 * MINUTE_MS);
                let settled: Vec<(u64, f64)> = history
                    .minutes(from, ctx.end)
                    .rev()
                    .filter_map(|(start, minute)| Some((*start, minute.value(signal, &min)?)))
                    .take(m)
                    .collect();
                let key = IncidentKey { alert: signal.alert(), scope: Scope::cohort(cohort) };
                let state = (signal, cohort.clone());
                let active = self.active.contains(&state);
                let values: Vec<(u64, f64)> = if active {
                    settled.clone()
                } else {
                    // What a whole minute holds: the newest settled minute and the unsettled
                    // ones (the one settling is whole), whichever holds most.
                    let newest = history.minutes(from, ctx.end).next_back().map(|(_, m)| &m.counts);
                    let unsettled = history.unsettled().iter().map(|(_, m)| &m.counts);
                    let wholes: Vec<&Counts> = newest.into_iter().chain(unsettled).collect();
                    let breaching_early =
                        history.unsettled().iter().rev().filter_map(|(start, minute)| {
                            let wholes = wholes.iter().copied();
                            let v = signal.lowest_ratio(&minute.counts, wholes, &min)?;
                            (*start >= ctx.end && v >= levels.enter).then_some((*start, v))
                        });
                    breaching_early.chain(settled.iter().copied()).take(m).collect()
                };
                let breaches = values.iter().filter(|(_, v)| *v >= levels.enter).count();
                let verdict = if active {
                    if values.len() < m {
                        Verdict::Insufficient
                    } else if values.iter().all(|(_, v)| *v < levels.exit) {
                        self.active.remove(&state);
                        Verdict::Clear
                    } else {
                        Verdict::Firing(Severity::P1)
                    }
                } else if breaches >= n {
                    self.active.insert(state);
                    Verdict::Firing(Severity::P1)
                } else if settled.len() < n {
                    Verdict::Insufficient
                } else {
                    Verdict::Clear
                };
                if verdict == Verdict::Insufficient
                    && history.minutes(from, ctx.end).any(|(_, minute)| minute.measured(signal))
                {
                    insufficient.entry(cohort.clone()).or_default().push(signal);
                }
                let evidence = matches!(verdict, Verdict::Firing(_)).then(|| {
                    let latest = values.first().map_or(0.0, |v| v.1);
                    let worst = values.iter().map(|v| v.1).fold(f64::MIN, f64::max);
                    let mut counts = Counts::default();
                    for (start, _) in &values {
                        if let Some(minute) = history.minute(*start) {
                            counts.add(&minute.counts);
                        }
                    }
                    let causes = counts
                        .causes_text(signal)
                        .map_or_else(String::new, |c| format!("; failures by cause: {c}"));
                    let in_progress = match values.iter().filter(|(s, _)| *s >= ctx.end).count() {
                        0 => String::new(),
                        k => format!(", {k} of them not yet settled"),
                    };
                    Evidence {
                        method: Method::Threshold,
                        signal: Some(signal),
                        severity: Severity::P1,
                        value: latest,
                        limit: levels.enter,
                        window: format!("{n} of the last {m} minutes"),
                        text: format!(
                            "{} {} (worst {}) against {} in {breaches} of the last {} judged minutes{in_progress} \
                             (fires at {n} of {m}, clears below {}){causes}",
                            signal.describe(),
                            signal.format(latest),
                            signal.format(worst),
                            signal.format(levels.enter),
                            values.len(),
                            signal.format(levels.exit),
                        ),
                    }
                });
                out.push(Finding { key, method: Method::Threshold, verdict, evidence });
            }
        }
        (out, insufficient)
    }
}
