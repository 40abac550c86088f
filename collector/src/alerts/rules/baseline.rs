//! Hour-of-week baselines: the recent window of a cohort's signal against the same hour of the
//! week in the past weeks (median and MAD, robust to one bad week). A usual evening peak is
//! what the baseline expects; a worse-than-usual one is an early warning (P2) well before it
//! crosses the SLO. Only ratio signals are compared (exact over any window); the hour compared
//! is the one holding the window's middle.

use super::{Context, Finding, Verdict, median_and_mad, minutes_text};
use crate::alerts::incidents::{IncidentKey, Scope};
use crate::alerts::signals::Signal;
use crate::alerts::{Evidence, Method, Severity};
use crate::store::HOUR_MS;

/// The signals with baselines.
pub const SIGNALS: [Signal; 4] =
    [Signal::StallRatio, Signal::LossRatio, Signal::ViewFailureRatio, Signal::SlowFirstFrames];

/// Judges every cohort's recent window against its baseline.
pub fn evaluate(ctx: &Context<'_>) -> Vec<Finding> {
    let s = ctx.settings;
    let b = &s.baseline;
    let window = s.baseline_window_ms;
    let min_now = ctx.over(window);
    let min_hour = ctx.over(HOUR_MS);
    let mut out = Vec::new();
    for (cohort, history) in ctx.history.cohorts() {
        let weeks = ctx.baselines.weeks.get(cohort);
        for signal in SIGNALS {
            let key = IncidentKey { alert: signal.alert(), scope: Scope::cohort(cohort) };
            let current = signal.ratio(&history.sum(ctx.end, window), &min_now);
            let past: Vec<f64> = weeks
                .map(|w| w.iter().filter_map(|c| signal.ratio(c, &min_hour)).collect())
                .unwrap_or_default();
            let (Some(current), true) = (current, past.len() >= b.min_weeks) else {
                out.push(Finding::quiet(key, Method::Baseline, Verdict::Insufficient));
                continue;
            };
            let Some((median, mad)) = median_and_mad(&past) else { continue };
            let floor = ctx.reference_level(signal).unwrap_or(0.0) * b.min_share_of_threshold;
            let bound = (median + b.mad_factor * mad).max(b.min_ratio * median).max(floor);
            if current < bound {
                out.push(Finding::quiet(key, Method::Baseline, Verdict::Clear));
                continue;
            }
            let times =
                if median > 0.0 { format!("{:.1}x", current / median) } else { "far above".into() };
            out.push(Finding {
                key,
                method: Method::Baseline,
                verdict: Verdict::Firing(Severity::P2),
                evidence: Some(Evidence {
                    method: Method::Baseline,
                    signal: Some(signal),
                    severity: Severity::P2,
                    value: current,
                    limit: bound,
                    window: minutes_text(window),
                    text: format!(
                        "{} {} over the last {}, {times} the usual {} for this hour of the week \
                         (median of {} past weeks, MAD {}; fires at {})",
                        signal.describe(),
                        signal.format(current),
                        minutes_text(window),
                        signal.format(median),
                        past.len(),
                        signal.format(mad),
                        signal.format(bound),
                    ),
                }),
            });
        }
    }
    out
}
