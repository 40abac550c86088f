//! Severity by spread (DESIGN.md section 7): a P1 of publishing, viewing or first frame becomes
//! a P0, the whole service, when it holds in at least `p0_min_regions` regions at once, or on
//! cohorts holding at least `p0_min_agent_share` of the reporting agents (in a fleet of at
//! least `p0_min_agents`; the agents of a P1's region and network type count as affected,
//! since history is kept per cohort, not per agent), or when every relay of a region is
//! unreachable (view or publish failures, mostly `unreachable`). It falls back to P1 (after
//! `resolve_after`) when the spread shrinks.

use std::collections::{BTreeMap, BTreeSet};

use super::Context;
use super::absence::reporting;
use crate::alerts::incidents::{Assessment, IncidentKey};
use crate::alerts::signals::{Counts, Signal, UNREACHABLE};
use crate::alerts::{Alert, Evidence, Method, Severity};
use crate::store::MINUTE_MS;

/// Raises the P1s that spread to P0, with the evidence of the spread first.
pub fn escalate(ctx: &Context<'_>, assessments: &mut BTreeMap<IncidentKey, Assessment>) {
    let s = ctx.settings;
    let present: Vec<_> = ctx.agents.iter().filter(|a| reporting(ctx, a)).collect();
    for alert in Alert::ALL.into_iter().filter(|a| a.escalates_by_spread()) {
        let p1: Vec<IncidentKey> = assessments
            .iter()
            .filter(|(k, a)| k.alert == alert && a.severity >= Some(Severity::P1))
            .map(|(k, _)| k.clone())
            .collect();
        if p1.is_empty() {
            continue;
        }
        let regions: BTreeSet<&str> = p1.iter().map(|k| k.scope.region.as_str()).collect();
        let pairs: BTreeSet<(&str, &str)> =
            p1.iter().map(|k| (k.scope.region.as_str(), k.scope.network_type.as_str())).collect();
        let affected = present
            .iter()
            .filter(|a| pairs.contains(&(a.region.as_str(), a.network_type.as_str())))
            .count();
        let share = if present.is_empty() { 0.0 } else { affected as f64 / present.len() as f64 };
        let reason = if regions.len() >= s.p0_min_regions {
            Some((
                regions.len() as f64,
                s.p0_min_regions as f64,
                format!(
                    "{} in {} regions at once ({}): the whole service",
                    alert.title(),
                    regions.len(),
                    regions.iter().copied().collect::<Vec<_>>().join(", ")
                ),
            ))
        } else if present.len() >= s.p0_min_agents.max(1) && share >= s.p0_min_agent_share {
            Some((
                share,
                s.p0_min_agent_share,
                format!(
                    "{} on cohorts of {affected} of {} reporting agents ({:.0} %): the whole service",
                    alert.title(),
                    present.len(),
                    share * 100.0
                ),
            ))
        } else {
            None
        };
        if let Some((value, limit, text)) = reason {
            for key in &p1 {
                raise(assessments, key, value, limit, &text);
            }
        }
        if matches!(alert, Alert::ViewFailures | Alert::PublishFailures) {
            for (region, relays) in &s.relays_by_region {
                if relays.is_empty() || !relays.iter().all(|relay| unreachable(ctx, alert, relay)) {
                    continue;
                }
                let text = format!(
                    "every relay of region {region} is unreachable ({}): the whole region is cut off",
                    relays.join(", ")
                );
                for key in p1.iter().filter(|k| relays.contains(&k.scope.target)) {
                    raise(assessments, key, relays.len() as f64, relays.len() as f64, &text);
                }
            }
        }
    }
}

fn raise(
    assessments: &mut BTreeMap<IncidentKey, Assessment>,
    key: &IncidentKey,
    value: f64,
    limit: f64,
    text: &str,
) {
    let Some(a) = assessments.get_mut(key) else { return };
    if a.firing.contains(&Method::Spread) {
        return;
    }
    a.severity = Some(Severity::P0);
    a.firing.push(Method::Spread);
    a.evidence.insert(
        0,
        Evidence {
            method: Method::Spread,
            signal: None,
            severity: Severity::P0,
            value,
            limit,
            window: "now".into(),
            text: text.to_owned(),
        },
    );
}

/// Whether attempts to `relay` fail, mostly as `unreachable`, over the threshold window.
fn unreachable(ctx: &Context<'_>, alert: Alert, relay: &str) -> bool {
    let len = ctx.settings.window as u64 * MINUTE_MS;
    let mut total = Counts::default();
    for (cohort, history) in ctx.history.cohorts() {
        if cohort.target == relay {
            total.add(&history.sum(ctx.end, len));
        }
    }
    let (signal, attempts, failures, unreachable) = match alert {
        Alert::ViewFailures => (
            Signal::ViewFailureRatio,
            total.view_attempts,
            total.view_failures,
            total.view_failure_causes[UNREACHABLE],
        ),
        _ => (
            Signal::PublishFailureRatio,
            total.publish_attempts,
            total.publish_failures,
            total.publish_failure_causes[UNREACHABLE],
        ),
    };
    let Some(level) = ctx.settings.levels.get(&signal) else { return false };
    attempts >= ctx.settings.min_attempts
        && failures as f64 >= level.enter * attempts as f64
        && 2 * u64::from(unreachable) >= failures
        && failures > 0
}
