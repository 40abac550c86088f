//! Multi-window multi-burn-rate alerts on SLO error budgets (Google SRE workbook, chapter 5):
//! a pair fires when both its long window (the budget really is burning) and its short window
//! (it still is, now) burn the budget at least `factor` times faster than the SLO allows. The
//! burn rate is the bad share over the window divided by the budget, from summed counts, so
//! it is exact: stall time over viewing time, failed over attempted, slow over all first frames.

use super::{Context, Finding, Verdict, minutes_text};
use crate::alerts::incidents::{IncidentKey, Scope};
use crate::alerts::signals::{Counts, Minimums, Signal};
use crate::alerts::{Evidence, Method};

/// Whether a short window holds enough events to judge `signal`.
fn enough(signal: Signal, c: &Counts, min_events: u64, min_viewing_ns: u64) -> bool {
    match signal {
        Signal::StallRatio => c.stall_ns.saturating_add(c.play_ns) >= min_viewing_ns,
        Signal::ViewFailureRatio => c.view_attempts >= min_events,
        Signal::PublishFailureRatio => c.publish_attempts >= min_events,
        Signal::SlowFirstFrames => c.first_frames >= min_events,
        _ => false,
    }
}

/// Judges every cohort against every SLO budget and window pair.
pub fn evaluate(ctx: &Context<'_>) -> Vec<Finding> {
    let s = ctx.settings;
    // The ratio of a window with any data: "enough" is decided per short window below.
    let any = Minimums::ANY;
    let mut out = Vec::new();
    for (cohort, history) in ctx.history.cohorts() {
        for (&signal, &budget) in &s.budgets {
            let key = IncidentKey { alert: signal.alert(), scope: Scope::cohort(cohort) };
            let mut judged = false;
            let mut best: Option<Evidence> = None;
            for pair in &s.burn_windows {
                let short = history.sum(ctx.end, pair.short_ms);
                // As much data per minute as a judged minute needs, and a floor of events.
                if signal.ratio(&short, &ctx.over(pair.short_ms)).is_none()
                    || !enough(signal, &short, s.burn_min_events, s.burn_min_viewing_ns)
                {
                    continue;
                }
                judged = true;
                let long = history.sum(ctx.end, pair.long_ms);
                let (Some(rs), Some(rl)) = (signal.ratio(&short, &any), signal.ratio(&long, &any))
                else {
                    continue;
                };
                let (bs, bl) = (rs / budget, rl / budget);
                if bs >= pair.factor
                    && bl >= pair.factor
                    && best.as_ref().is_none_or(|b| pair.severity > b.severity)
                {
                    let (long_w, short_w) =
                        (minutes_text(pair.long_ms), minutes_text(pair.short_ms));
                    best = Some(Evidence {
                        method: Method::BurnRate,
                        signal: Some(signal),
                        severity: pair.severity,
                        value: bl.min(bs),
                        limit: pair.factor,
                        window: format!("{long_w} and {short_w}"),
                        text: format!(
                            "error budget burning {bl:.1}x over {long_w} and {bs:.1}x over {short_w} \
                             (fires at {}x; {} {} and {} against a budget of {}){}",
                            pair.factor,
                            signal.describe(),
                            signal.format(rl),
                            signal.format(rs),
                            signal.format(budget),
                            short.causes_text(signal).map_or_else(String::new, |c| format!(
                                "; failures by cause over {short_w}: {c}"
                            )),
                        ),
                    });
                }
            }
            let verdict = match (&best, judged) {
                (Some(e), _) => Verdict::Firing(e.severity),
                (None, true) => Verdict::Clear,
                (None, false) => Verdict::Insufficient,
            };
            out.push(Finding { key, method: Method::BurnRate, verdict, evidence: best });
        }
    }
    out
}
