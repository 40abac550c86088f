//! Proactive alerts (DESIGN.md section 7): an evaluator over the per-minute cohort history that
//! raises P0/P1/P2 incidents before viewers notice, and delivers them to Alertmanager and chat
//! webhooks. `docs/alerts.md` is the operator's guide; `docs/runbooks/` has one page per alert.
//!
//! Layout (one folder per kind):
//! - `config.rs`: the `[alerts]` section and the [`Settings`] the evaluator runs with.
//! - `signals.rs`: per cohort and minute, the signals read from the store's rows (exact merges
//!   of histograms and counters), and the one table of report names they read.
//! - `history.rs`: bounded in-memory history of those signals (minutes, 5-minute and hour sums).
//! - `source.rs`: which rows to read at a given `now` (settling, late reports, warm-up,
//!   hour-of-week baselines), through the read-only [`HistoryReader`].
//! - `rules/`: one file per rule kind, each turning history into findings.
//! - `incidents.rs`: findings to incidents: severity by impact, escalation, hysteresis,
//!   explicit resolution.
//! - `evaluator.rs`: the sans-IO core: `tick(now, reader)` and nothing else reads time.
//! - `notifiers/`: message model and payloads (Alertmanager, generic signed JSON, Slack,
//!   Feishu/Lark, DingTalk, WeCom) and the delivery loops.
//! - `state.rs`: what survives a restart, written atomically.
//! - `telemetry.rs`: `stallwatch_alerts_active` and the evaluator's own counters on `/metrics`.
//! - `timestamps.rs`: RFC 3339 times for payloads.
//! - `service.rs`: the thread and tasks `run` starts; `/api/v1/alerts`.
//!
//! **Invariant:** the evaluator never reads a clock and never writes the history store: it
//! reads through its own connection, and keeps its state in its own file. Only `service.rs`
//! and the delivery loops read the clock (`crate::clock`).

pub mod config;
pub mod evaluator;
pub mod history;
pub mod incidents;
pub mod notifiers;
pub mod rules;
pub mod service;
pub mod signals;
pub mod source;
pub mod state;
pub mod telemetry;
pub mod timestamps;

#[cfg(test)]
pub(crate) mod tests;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use config::{AlertsConfig, Settings};
pub use evaluator::Evaluator;
pub use incidents::{Incident, IncidentKey, Scope, Status, Transition};
pub use service::{AlertsHandle, AlertsService};
pub use signals::Signal;
pub use source::HistoryReader;

/// How bad, by user impact (DESIGN.md section 7). Ordered: `None < P2 < P1 < P0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Severity {
    /// No impact: the watchdog, which fires all the time to prove the alert path works.
    #[serde(rename = "none")]
    None,
    /// Early warning, minor: a ticket.
    P2,
    /// Part of the service: one region or network type beyond its SLO. Within the hour.
    P1,
    /// The whole service. Minutes.
    P0,
}

impl Severity {
    /// The label value: `P0`, `P1`, `P2` or `none`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::None => "none",
            Severity::P2 => "P2",
            Severity::P1 => "P1",
            Severity::P0 => "P0",
        }
    }

    /// All of them, most severe first.
    pub const ALL: [Severity; 4] = [Severity::P0, Severity::P1, Severity::P2, Severity::None];
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Severity {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Severity::ALL
            .into_iter()
            .find(|v| v.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown severity {s:?}, expected P0, P1, P2 or none"))
    }
}

/// An alert: its `alertname`, runbook and the service it belongs to. Names start with
/// `Stallwatch` and never with `StallwatchFleet`, which the shipped Prometheus rules use, so a
/// fault never pages twice under one name (Alertmanager inhibits the Prometheus copy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Alert {
    /// First frames slow (p95 over the threshold, or too many over the SLO).
    FirstFrameSlow,
    /// Viewing attempts failing.
    ViewFailures,
    /// Publishing attempts failing.
    PublishFailures,
    /// Stall ratio high.
    Stalls,
    /// Packet loss high.
    Loss,
    /// Interarrival jitter high.
    Jitter,
    /// UDP failing where QUIC works on the same path.
    UdpThrottled,
    /// An agent stopped reporting.
    AgentAbsent,
    /// Always firing: proves the alert path works end to end (a dead man's switch).
    Watchdog,
}

impl Alert {
    /// Every alert, in a fixed order.
    pub const ALL: [Alert; 9] = [
        Alert::FirstFrameSlow,
        Alert::ViewFailures,
        Alert::PublishFailures,
        Alert::Stalls,
        Alert::Loss,
        Alert::Jitter,
        Alert::UdpThrottled,
        Alert::AgentAbsent,
        Alert::Watchdog,
    ];

    /// The `alertname` label.
    pub fn name(self) -> &'static str {
        match self {
            Alert::FirstFrameSlow => "StallwatchFirstFrameSlow",
            Alert::ViewFailures => "StallwatchViewFailures",
            Alert::PublishFailures => "StallwatchPublishFailures",
            Alert::Stalls => "StallwatchStalls",
            Alert::Loss => "StallwatchLoss",
            Alert::Jitter => "StallwatchJitter",
            Alert::UdpThrottled => "StallwatchUdpThrottled",
            Alert::AgentAbsent => "StallwatchAgentAbsent",
            Alert::Watchdog => "StallwatchWatchdog",
        }
    }

    /// The runbook's file name in `docs/runbooks/`, without `.md`.
    pub fn runbook(self) -> &'static str {
        match self {
            Alert::FirstFrameSlow => "first-frame-slow",
            Alert::ViewFailures => "view-failures",
            Alert::PublishFailures => "publish-failures",
            Alert::Stalls => "stalls",
            Alert::Loss => "loss",
            Alert::Jitter => "jitter",
            Alert::UdpThrottled => "udp-throttled",
            Alert::AgentAbsent => "agent-absent",
            Alert::Watchdog => "watchdog",
        }
    }

    /// The `service` label: `streaming` for what viewers and publishers feel, `monitoring` for
    /// the probes themselves. Alertmanager lets a P0 inhibit P1/P2 of the same service.
    pub fn service(self) -> &'static str {
        match self {
            Alert::AgentAbsent | Alert::Watchdog => "monitoring",
            _ => "streaming",
        }
    }

    /// What the alert is about, for people.
    pub fn title(self) -> &'static str {
        match self {
            Alert::FirstFrameSlow => "first frame slow",
            Alert::ViewFailures => "viewing attempts failing",
            Alert::PublishFailures => "publishing attempts failing",
            Alert::Stalls => "viewers stalling",
            Alert::Loss => "packet loss",
            Alert::Jitter => "jitter",
            Alert::UdpThrottled => "UDP throttled here (QUIC works)",
            Alert::AgentAbsent => "agent stopped reporting",
            Alert::Watchdog => "watchdog: the alert path works",
        }
    }

    /// Alerts whose P1s escalate to P0 when they spread (DESIGN.md section 7: "publishing or
    /// first frame failing in >= 2 regions, or on >= 50 % of agents").
    pub fn escalates_by_spread(self) -> bool {
        matches!(self, Alert::PublishFailures | Alert::ViewFailures | Alert::FirstFrameSlow)
    }
}

impl fmt::Display for Alert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which rule kind found something.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// N of the last M minutes beyond a level (hysteresis on the way out).
    Threshold,
    /// Multi-window multi-burn-rate on an SLO's error budget.
    BurnRate,
    /// Worse than the same hour of the week usually is (median and MAD).
    Baseline,
    /// At the current slope, the signal crosses its threshold within the horizon.
    Trend,
    /// Far worse than the other regions on the same network type.
    PeerOutlier,
    /// UDP failing where QUIC works on the same cohort.
    TransportAttribution,
    /// No report from an agent.
    Absence,
    /// Always firing.
    Watchdog,
    /// A P1 that spread to several regions or most agents.
    Spread,
}

impl Method {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Threshold => "threshold",
            Method::BurnRate => "burn_rate",
            Method::Baseline => "baseline",
            Method::Trend => "trend",
            Method::PeerOutlier => "peer_outlier",
            Method::TransportAttribution => "transport_attribution",
            Method::Absence => "absence",
            Method::Watchdog => "watchdog",
            Method::Spread => "spread",
        }
    }
}

/// One piece of evidence: what was measured, against what, over which window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// The rule kind.
    pub method: Method,
    /// The signal, if the rule looks at one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<Signal>,
    /// The severity this rule asks for.
    pub severity: Severity,
    /// The measured value in the signal's base unit (ratio 0-1, or seconds).
    pub value: f64,
    /// What it was compared with (threshold, baseline bound, burn-rate factor), same unit.
    pub limit: f64,
    /// The window, e.g. `2 of the last 3 minutes`, `1h and 5m`.
    pub window: String,
    /// The sentence for people, with units.
    pub text: String,
}
