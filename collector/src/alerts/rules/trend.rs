//! Trend forecasts: a least-squares line through a cohort's recent minute values; when it
//! rises significantly (slope at least `min_t` standard errors above zero) and would reach the
//! signal's enter level within the horizon, that is an early warning (P2) before viewers feel
//! it. Quantile signals use each minute's own p95 (never an average of them over the window).

use super::{Context, Finding, Verdict, fit_line, minutes_text};
use crate::alerts::incidents::{IncidentKey, Scope};
use crate::alerts::signals::Signal;
use crate::alerts::{Evidence, Method, Severity};
use crate::store::MINUTE_MS;

/// The signals forecast.
pub const SIGNALS: [Signal; 4] =
    [Signal::StallRatio, Signal::LossRatio, Signal::FirstFrameP95, Signal::JitterP95];

/// Judges every cohort's trend.
pub fn evaluate(ctx: &Context<'_>) -> Vec<Finding> {
    let t = &ctx.settings.trend;
    let window = u64::try_from(t.window.as_millis()).unwrap_or(u64::MAX);
    let horizon_min = t.horizon.as_secs_f64() / 60.0;
    let min = ctx.per_minute();
    let mut out = Vec::new();
    for (cohort, history) in ctx.history.cohorts() {
        for signal in SIGNALS {
            let Some(levels) = ctx.settings.levels.get(&signal) else { continue };
            if !signal.judged_on(cohort) {
                continue;
            }
            let key = IncidentKey { alert: signal.alert(), scope: Scope::cohort(cohort) };
            // x in minutes before the end of the window (the last minute is at -1).
            let points: Vec<(f64, f64)> = history
                .minutes(ctx.end.saturating_sub(window), ctx.end)
                .filter_map(|(start, m)| {
                    let x = (*start as f64 - ctx.end as f64) / MINUTE_MS as f64;
                    Some((x, m.value(signal, &min)?))
                })
                .collect();
            if points.len() < t.min_points {
                out.push(Finding::quiet(key, Method::Trend, Verdict::Insufficient));
                continue;
            }
            let Some((slope, now_value, stderr)) = fit_line(&points, -1.0) else {
                out.push(Finding::quiet(key, Method::Trend, Verdict::Insufficient));
                continue;
            };
            let rising = slope > 0.0 && slope >= t.min_t * stderr;
            let minutes_to_cross = (levels.enter - now_value) / slope;
            if !rising || minutes_to_cross > horizon_min {
                out.push(Finding::quiet(key, Method::Trend, Verdict::Clear));
                continue;
            }
            let when = if minutes_to_cross <= 0.0 {
                format!("on this line it is past {} already", signal.format(levels.enter))
            } else {
                format!(
                    "at this slope it reaches {} in about {:.0} min",
                    signal.format(levels.enter),
                    minutes_to_cross.max(1.0)
                )
            };
            out.push(Finding {
                key,
                method: Method::Trend,
                verdict: Verdict::Firing(Severity::P2),
                evidence: Some(Evidence {
                    method: Method::Trend,
                    signal: Some(signal),
                    severity: Severity::P2,
                    value: now_value,
                    limit: levels.enter,
                    window: minutes_text(window),
                    text: format!(
                        "{} {} and rising {} per minute over the last {} ({} minutes judged): \
                         {when} (warns within {})",
                        signal.describe(),
                        signal.format(now_value),
                        signal.format(slope),
                        minutes_text(window),
                        points.len(),
                        minutes_text(u64::try_from(t.horizon.as_millis()).unwrap_or(u64::MAX)),
                    ),
                }),
            });
        }
    }
    out
}
