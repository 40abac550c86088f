//! The demo's alert lines: the windows the demo judges with (its own `[alerts]` section,
//! shorter than production's so that a fault shows within two minutes), one line per change of
//! an incident as it happens, and the open incidents under each live summary.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::alerts::{AlertsHandle, Incident, Severity};

/// Appended to the demo's generated configuration. Thresholds, SLOs and severities are the
/// production defaults; only how soon and how often the evaluator looks is shortened.
pub const DEMO_ALERTS_TOML: &str = r#"
# The demo's alert windows, shorter than the defaults so that a fault shows within two
# minutes; thresholds, SLOs and severities are the production defaults.
[alerts]
evaluate_every = "5s"     # default 1m
settle = "7s"             # default 30s (agents report every 5s here)

[alerts.min_data]
viewing_time = "5s"       # default 20s: the first, partial minute counts
packets = 100             # default 500

[alerts.outlier]
window = "2m"             # default 15m
"#;

/// What [`DEMO_ALERTS_TOML`] changes, for the demo's banner.
pub const DEMO_ALERTS_NOTE: &str = "alerts judged with the demo's short windows (every 5s, \
minutes settle 7s, 5s of viewing is enough data, peer outliers over 2m; production: 1m, 30s, \
20s, 15m); thresholds and SLOs are the defaults";

/// The incidents seen so far, to print each change once.
#[derive(Debug, Default)]
pub struct AlertLog {
    /// Open incidents by id: severity and summary last seen.
    open: BTreeMap<u64, (Severity, String)>,
}

/// One change, as printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertEvent {
    /// `opened P2`, `P2 -> P1`, `P1 -> P2`, `resolved`.
    pub change: String,
    /// The incident's one line (`P1 StallwatchLoss me/4g/udp -> relay-1: ...`).
    pub summary: String,
}

impl AlertLog {
    /// Compares `open` (the evaluator's open incidents now) with what was seen before.
    pub fn update(&mut self, open: &[Incident]) -> Vec<AlertEvent> {
        let mut events = Vec::new();
        let mut now: BTreeMap<u64, (Severity, String)> = BTreeMap::new();
        for i in open {
            let change = match self.open.get(&i.id) {
                None => Some(format!("opened {}", i.severity)),
                Some((before, _)) if *before != i.severity => {
                    Some(format!("{before} -> {}", i.severity))
                }
                Some(_) => None,
            };
            if let Some(change) = change {
                events.push(AlertEvent { change, summary: i.summary.clone() });
            }
            now.insert(i.id, (i.severity, i.summary.clone()));
        }
        for (id, (_, summary)) in &self.open {
            if !now.contains_key(id) {
                events.push(AlertEvent { change: "resolved".into(), summary: summary.clone() });
            }
        }
        self.open = now;
        events
    }
}

/// Prints the changes since the last call: `alert +52s  opened P2  P2 StallwatchLoss ...`.
pub fn print_changes(log: &mut AlertLog, alerts: &AlertsHandle, elapsed: Duration) {
    for e in log.update(&alerts.open()) {
        println!("alert +{}s  {}  {}", elapsed.as_secs(), e.change, e.summary);
    }
}

/// The open incidents under a live summary, most severe first (never indented like a cohort
/// line, which starts with three spaces).
pub fn print_open(alerts: &AlertsHandle) {
    let open = alerts.open();
    if open.is_empty() {
        println!("  alerts: none open");
        return;
    }
    println!("  alerts: {} open", open.len());
    for i in open {
        println!("  ! {}", i.summary);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::incidents::{Assessment, IncidentKey, Incidents, Scope};
    use crate::alerts::{Alert, Method};

    #[test]
    fn prints_each_opening_escalation_and_resolution_once() {
        let key = IncidentKey {
            alert: Alert::Loss,
            scope: Scope { region: "me".into(), ..Scope::default() },
        };
        let firing = |s: Severity| {
            BTreeMap::from([(
                key.clone(),
                Assessment {
                    severity: Some(s),
                    firing: vec![Method::Threshold],
                    ..Assessment::default()
                },
            )])
        };
        let mut incidents = Incidents::default();
        let mut log = AlertLog::default();
        let open = |i: &Incidents| i.open_incidents().cloned().collect::<Vec<_>>();
        let changes = |log: &mut AlertLog, i: &Incidents| {
            log.update(&open(i)).into_iter().map(|e| e.change).collect::<Vec<_>>()
        };
        incidents.apply(0, &firing(Severity::P2), 0);
        assert_eq!(changes(&mut log, &incidents), ["opened P2"]);
        assert!(changes(&mut log, &incidents).is_empty());
        incidents.apply(60_000, &firing(Severity::P1), 0);
        assert_eq!(changes(&mut log, &incidents), ["P2 -> P1"]);
        incidents.apply(120_000, &BTreeMap::from([(key, Assessment::default())]), 0);
        let events = log.update(&open(&incidents));
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].change, "resolved");
        assert!(events[0].summary.starts_with("P1 StallwatchLoss me"), "{:?}", events[0]);
    }
}
