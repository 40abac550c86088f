//! Transport attribution: "UDP throttled here". Agents probe the same relay over QUIC streams,
//! QUIC datagrams and plain UDP side by side, so when UDP fails (attempts fail, or packets are
//! lost) while a QUIC transport on the same region, network type and target works, the path is
//! fine and the network is treating plain UDP differently (a firewall, an ISP's UDP shaping).
//! An early warning (P2) with its own runbook; the UDP cohort's own alerts still fire.

use std::collections::BTreeMap;

use super::{Context, Finding, Verdict, minutes_text};
use crate::alerts::incidents::{IncidentKey, Scope};
use crate::alerts::signals::{Counts, Signal};
use crate::alerts::{Alert, Evidence, Method, Severity};

const UDP: &str = "udp";

/// Judges each (region, network type, target) that has a UDP cohort.
pub fn evaluate(ctx: &Context<'_>) -> Vec<Finding> {
    let s = ctx.settings;
    let window = s.transport_window_ms;
    let min = ctx.over(window);
    let failing = |signal: Signal, c: &Counts| {
        let level = s.levels.get(&signal)?;
        signal.ratio(c, &min).map(|v| (v, v >= level.enter, v < level.exit))
    };
    // (region, network type, target) -> transport -> counts, summed over repair modes: view
    // failures and network loss (before repair) are the path's whatever the mode.
    let mut paths: BTreeMap<(&str, &str, &str), BTreeMap<&str, Counts>> = BTreeMap::new();
    for (cohort, history) in ctx.history.cohorts() {
        paths
            .entry((&cohort.region, &cohort.network_type, &cohort.target))
            .or_default()
            .entry(&cohort.transport)
            .or_default()
            .add(&history.sum(ctx.end, window));
    }
    let mut out = Vec::new();
    for ((region, network_type, target), transports) in &paths {
        let Some(udp) = transports.get(UDP) else { continue };
        let key = IncidentKey {
            alert: Alert::UdpThrottled,
            scope: Scope {
                region: (*region).into(),
                network_type: (*network_type).into(),
                transport: UDP.into(),
                target: (*target).into(),
                ..Scope::default()
            },
        };
        let udp_view = failing(Signal::ViewFailureRatio, udp);
        let udp_loss = failing(Signal::LossRatio, udp);
        if udp_view.is_none() && udp_loss.is_none() {
            out.push(Finding::quiet(key, Method::TransportAttribution, Verdict::Insufficient));
            continue;
        }
        let udp_bad = udp_view.is_some_and(|v| v.1) || udp_loss.is_some_and(|v| v.1);
        // A QUIC transport with data that is below the exit level on everything it measured.
        let working = transports.iter().filter(|(t, _)| **t != UDP).find(|(_, c)| {
            let view = failing(Signal::ViewFailureRatio, c);
            let loss = failing(Signal::LossRatio, c);
            (view.is_some() || loss.is_some())
                && view.is_none_or(|v| v.2)
                && loss.is_none_or(|v| v.2)
        });
        let Some((quic, quic_counts)) = working.filter(|_| udp_bad) else {
            out.push(Finding::quiet(key, Method::TransportAttribution, Verdict::Clear));
            continue;
        };
        let describe = |c: &Counts| {
            let parts: Vec<String> = [Signal::ViewFailureRatio, Signal::LossRatio]
                .into_iter()
                .filter_map(|sig| {
                    Some(format!("{} {}", sig.describe(), sig.format(failing(sig, c)?.0)))
                })
                .collect();
            parts.join(", ")
        };
        let value = udp_view.map_or(0.0, |v| v.0).max(udp_loss.map_or(0.0, |v| v.0));
        out.push(Finding {
            key,
            method: Method::TransportAttribution,
            verdict: Verdict::Firing(Severity::P2),
            evidence: Some(Evidence {
                method: Method::TransportAttribution,
                signal: None,
                severity: Severity::P2,
                value,
                limit: s.levels.get(&Signal::ViewFailureRatio).map_or(0.0, |l| l.enter),
                window: minutes_text(window),
                text: format!(
                    "udp: {} while {quic} on the same path works ({}) over the last {}: UDP is \
                     blocked or throttled here, not the path",
                    describe(udp),
                    describe(quic_counts),
                    minutes_text(window),
                ),
            }),
        });
    }
    out
}
