//! Peer outliers: per network type and transport, each region's signal over the window
//! (summed over its targets) against the other regions' (median and MAD). One region far
//! worse than its peers on the same kind of network is an early warning (P2) for that region,
//! even below the SLO: something regional (a relay, an ISP, a peering) is off.
//!
//! The window slides up to the last report: its settled minutes and what has arrived of the
//! minutes not yet settled, for every region alike, so that this early warning comes no later
//! than the threshold it warns of (which counts a breaching minute before it settles).

use std::collections::BTreeMap;

use super::{Context, Finding, Verdict, median_and_mad, minutes_text};
use crate::alerts::incidents::{IncidentKey, Scope};
use crate::alerts::signals::{Counts, Minimums, Signal};
use crate::alerts::{Evidence, Method, Severity};
use crate::store::Cohort;

/// The signals compared.
pub const SIGNALS: [Signal; 4] =
    [Signal::StallRatio, Signal::LossRatio, Signal::ViewFailureRatio, Signal::SlowFirstFrames];

/// A share of events (slow first frames, failed views) needs at least this many of them to
/// single a region out: over a short window a region may have only a few attempts, and one
/// slow first frame in three reads 33 % against its peers' 0 %.
pub const MIN_OUTLIER_EVENTS: u64 = 2;

/// The events a share signal counts in `counts`; `None` for signals that are not shares of
/// events (stall time, packets).
fn events(signal: Signal, counts: &Counts) -> Option<u64> {
    match signal {
        Signal::SlowFirstFrames => Some(counts.slow_first_frames),
        Signal::ViewFailureRatio => Some(counts.view_failures),
        _ => None,
    }
}

/// Judges every region against its peers.
pub fn evaluate(ctx: &Context<'_>) -> Vec<Finding> {
    let o = &ctx.settings.outlier;
    let window = u64::try_from(o.window.as_millis()).unwrap_or(u64::MAX);
    let min = ctx.over(window);
    // (network type, transport, repair) -> region -> (counts, cohorts): repaired and
    // unrepaired regions are never peers.
    type Regions<'a> = BTreeMap<&'a str, (Counts, Vec<(&'a Cohort, Counts)>)>;
    let mut groups: BTreeMap<(&str, &str, &str), Regions<'_>> = BTreeMap::new();
    for (cohort, history) in ctx.history.cohorts() {
        let entry = groups
            .entry((
                cohort.network_type.as_str(),
                cohort.transport.as_str(),
                cohort.repair.as_str(),
            ))
            .or_default()
            .entry(cohort.region.as_str())
            .or_default();
        let counts = history.sum_to_latest(ctx.end, window);
        entry.0.add(&counts);
        entry.1.push((cohort, counts));
    }
    let mut out = Vec::new();
    for ((network_type, transport, repair), regions) in &groups {
        for signal in SIGNALS {
            let values: Vec<(&str, f64)> = regions
                .iter()
                .filter_map(|(region, (counts, _))| Some((*region, signal.ratio(counts, &min)?)))
                .collect();
            let floor = ctx.reference_level(signal).unwrap_or(0.0) * o.min_share_of_threshold;
            for (region, (region_counts, cohorts)) in regions {
                let mine = values.iter().find(|(r, _)| r == region).map(|v| v.1);
                let others: Vec<f64> =
                    values.iter().filter(|(r, _)| r != region).map(|v| v.1).collect();
                let judged = match mine {
                    Some(v) if others.len() + 1 >= o.min_regions => {
                        median_and_mad(&others).map(|(m, mad)| (v, m, mad))
                    }
                    _ => None,
                };
                let (verdict, evidence) = match judged {
                    None => (Verdict::Insufficient, None),
                    Some((v, median, mad)) => {
                        let bound =
                            (median + o.mad_factor * mad).max(o.min_ratio * median).max(floor);
                        let too_few =
                            events(signal, region_counts).is_some_and(|n| n < MIN_OUTLIER_EVENTS);
                        if v < bound || too_few {
                            (Verdict::Clear, None)
                        } else {
                            let evidence = Evidence {
                                method: Method::PeerOutlier,
                                signal: Some(signal),
                                severity: Severity::P2,
                                value: v,
                                limit: bound,
                                window: minutes_text(window),
                                text: format!(
                                    "{} {} in {region} against {} (median) in the {} other regions \
                                     on {network_type}/{transport} ({repair}) over the last {} and since \
                                     (fires at {})",
                                    signal.describe(),
                                    signal.format(v),
                                    signal.format(median),
                                    others.len(),
                                    minutes_text(window),
                                    signal.format(bound),
                                ),
                            };
                            (Verdict::Firing(Severity::P2), Some(evidence))
                        }
                    }
                };
                let any = Minimums::ANY;
                for (cohort, _) in cohorts.iter().filter(|(_, c)| signal.ratio(c, &any).is_some()) {
                    let key = IncidentKey { alert: signal.alert(), scope: Scope::cohort(cohort) };
                    out.push(Finding {
                        key,
                        method: Method::PeerOutlier,
                        verdict,
                        evidence: evidence.clone(),
                    });
                }
            }
        }
    }
    out
}
