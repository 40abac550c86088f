//! The `[alerts]` section of the collector's configuration, and the [`Settings`] the evaluator
//! runs with (the section resolved against `[slo]` and `[[relays]]`).
//!
//! Every field has a default from DESIGN.md sections 4 and 7, so an empty `[alerts]` (or none)
//! works. Threshold levels left out come from `[slo]` (the "warn" level: crossing it is "beyond
//! the SLO", a P1). Durations are human strings (`"30s"`, `"5m"`, `"3d"`); ratios are fractions.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use stallwatch_proto::duration::format_duration;

use super::Severity;
use super::signals::Signal;
use crate::config::check::Checker;
use crate::config::{Locations, Problem, Relay, Slo};

/// The `[alerts]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// Run the built-in evaluator. Off: no incidents, no deliveries, no state file.
    pub enabled: bool,
    /// How often the evaluator runs.
    #[serde(with = "stallwatch_proto::duration::serde_human")]
    pub evaluate_every: Duration,
    /// A minute is judged once this long has passed after its end, so that the reports of
    /// every agent (sent every 10 s by default) are in.
    #[serde(with = "stallwatch_proto::duration::serde_human")]
    pub settle: Duration,
    /// Each evaluation re-reads this much settled history, so reports that arrive late (an
    /// agent's spool after a short outage) still count while they can change a decision.
    #[serde(with = "stallwatch_proto::duration::serde_human")]
    pub restate: Duration,
    /// An incident resolves once all its conditions have stayed clear this long, and lowers
    /// its severity once the lower level has held this long.
    #[serde(with = "stallwatch_proto::duration::serde_human")]
    pub resolve_after: Duration,
    /// Where the alert state (open incidents, notifications sent) is kept across restarts.
    /// Relative paths are resolved against the configuration file's directory. Default:
    /// `alerts-state.json` beside `storage.path`.
    pub state_file: Option<PathBuf>,
    /// Runbook link in every message; `{runbook}` becomes the runbook's name (`stalls`,
    /// `view-failures`, ...), as in `docs/runbooks/`.
    pub runbook_url: String,
    /// Least data for one cohort-minute to count; less is "insufficient data", never an alert.
    pub min_data: MinData,
    /// When impact counts as the whole service (P0).
    pub impact: Impact,
    /// Threshold rules: N of the last M minutes beyond a level.
    pub thresholds: Thresholds,
    /// Multi-window multi-burn-rate rules on the SLOs' error budgets.
    pub burn_rate: BurnRate,
    /// Hour-of-week baselines.
    pub baseline: Baseline,
    /// Trend forecasts: time until a signal crosses its threshold at the current slope.
    pub trend: Trend,
    /// Peer outliers: one region far worse than the others on the same network type.
    pub outlier: Outlier,
    /// Agents that stopped reporting.
    pub absence: Absence,
    /// "UDP throttled here": UDP failing where QUIC works on the same path.
    pub transport: TransportAttribution,
    /// Delivery to Alertmanager, and retries.
    pub delivery: Delivery,
    /// Chat and generic webhooks.
    pub webhooks: Vec<Webhook>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            enabled: true,
            evaluate_every: Duration::from_secs(60),
            settle: Duration::from_secs(30),
            restate: Duration::from_secs(5 * 60),
            resolve_after: Duration::from_secs(5 * 60),
            state_file: None,
            runbook_url: "https://example.invalid/stallwatch/blob/main/docs/runbooks/{runbook}.md"
                .into(),
            min_data: MinData::default(),
            impact: Impact::default(),
            thresholds: Thresholds::default(),
            burn_rate: BurnRate::default(),
            baseline: Baseline::default(),
            trend: Trend::default(),
            outlier: Outlier::default(),
            absence: Absence::default(),
            transport: TransportAttribution::default(),
            delivery: Delivery::default(),
            webhooks: Vec::new(),
        }
    }
}

/// Least data for one cohort-minute to be judged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MinData {
    /// Viewing time (play + stall) for the stall ratio.
    #[serde(with = "stallwatch_proto::duration::serde_human")]
    pub viewing_time: Duration,
    /// Attempts (view or publish) for a failure ratio.
    pub attempts: u64,
    /// First frames for the first-frame p95.
    pub first_frames: u64,
    /// Expected packets for the loss ratio and jitter samples for the jitter p95.
    pub packets: u64,
}

impl Default for MinData {
    fn default() -> Self {
        MinData {
            viewing_time: Duration::from_secs(20),
            attempts: 1,
            first_frames: 1,
            packets: 500,
        }
    }
}

/// When a problem is the whole service's (P0).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Impact {
    /// A P1 of publishing, viewing or first frame in this many regions at once is a P0.
    pub p0_min_regions: usize,
    /// ... or on cohorts holding at least this share of the reporting agents,
    pub p0_min_agent_share: f64,
    /// ... when at least this many agents report (in a fleet of three, one agent is not
    /// "the whole service").
    pub p0_min_agents: usize,
}

impl Default for Impact {
    fn default() -> Self {
        Impact { p0_min_regions: 2, p0_min_agent_share: 0.5, p0_min_agents: 5 }
    }
}

/// An enter and an exit level for a time signal (a p95).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimeLevels {
    /// Enter (fire) at or above this. Default: the `[slo]` warn level.
    #[serde(with = "stallwatch_proto::duration::serde_human_option")]
    pub enter: Option<Duration>,
    /// Leave below this. Default: `enter` x `thresholds.exit_ratio`.
    #[serde(with = "stallwatch_proto::duration::serde_human_option")]
    pub exit: Option<Duration>,
}

/// An enter and an exit level for a ratio signal (0.01 is 1 %).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RatioLevels {
    /// Enter (fire) at or above this.
    pub enter: Option<f64>,
    /// Leave below this. Default: `enter` x `thresholds.exit_ratio`.
    pub exit: Option<f64>,
}

/// Threshold rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Thresholds {
    /// Fire when at least this many of the last `window` judged minutes are at or above the
    /// enter level (N).
    pub breaches: usize,
    /// How many judged minutes to look at (M, at most 40). A firing threshold clears when all
    /// of the last `window` judged minutes are below the exit level.
    pub window: usize,
    /// Exit level as a fraction of the enter level, where no exit level is given.
    pub exit_ratio: f64,
    /// First-frame p95. Default: `slo.first_frame_warn`.
    pub first_frame_p95: TimeLevels,
    /// Stall ratio. Default: `slo.stall_ratio_warn`.
    pub stall_ratio: RatioLevels,
    /// Loss ratio. Default: `slo.loss_warn`.
    pub loss_ratio: RatioLevels,
    /// Jitter p95. Default: `slo.jitter_warn`.
    pub jitter_p95: TimeLevels,
    /// View failure ratio. Default: 0.1.
    pub view_failure_ratio: RatioLevels,
    /// Publish failure ratio. Default: 0.1.
    pub publish_failure_ratio: RatioLevels,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            breaches: 2,
            window: 3,
            exit_ratio: 0.8,
            first_frame_p95: TimeLevels::default(),
            stall_ratio: RatioLevels::default(),
            loss_ratio: RatioLevels::default(),
            jitter_p95: TimeLevels::default(),
            view_failure_ratio: RatioLevels { enter: Some(0.1), exit: None },
            publish_failure_ratio: RatioLevels { enter: Some(0.1), exit: None },
        }
    }
}

/// One pair of windows of a multi-window burn-rate rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BurnWindow {
    /// The long window: the budget really is burning.
    #[serde(with = "stallwatch_proto::duration::serde_human")]
    pub long: Duration,
    /// The short window: it is still burning now (so the alert resolves soon after a fix).
    #[serde(with = "stallwatch_proto::duration::serde_human")]
    pub short: Duration,
    /// Fire when both windows burn the budget at least this many times faster than allowed.
    pub factor: f64,
    /// Severity of this pair.
    pub severity: Severity,
}

/// Burn-rate rules. The budget is the share of bad events the SLO allows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BurnRate {
    /// Stall-time budget (share of viewing time in stalls). Default: `slo.stall_ratio_warn`.
    pub stall_budget: Option<f64>,
    /// Share of viewing attempts allowed to fail.
    pub view_failure_budget: f64,
    /// Share of publishing attempts allowed to fail.
    pub publish_failure_budget: f64,
    /// Share of first frames allowed to be slower than `slo.first_frame_warn`.
    pub slow_first_frame_budget: f64,
    /// Least attempts (or first frames) in the short window.
    pub min_events: u64,
    /// Least viewing time in the short window, for the stall budget.
    #[serde(with = "stallwatch_proto::duration::serde_human")]
    pub min_viewing_time: Duration,
    /// The window pairs (Google SRE workbook: 1h/5m at 14.4 and 6h/30m at 6 page, 3d/6h at 1
    /// is a ticket).
    pub windows: Vec<BurnWindow>,
}

impl Default for BurnRate {
    fn default() -> Self {
        let h = |n: u64| Duration::from_secs(n * 3600);
        let m = |n: u64| Duration::from_secs(n * 60);
        BurnRate {
            stall_budget: None,
            view_failure_budget: 0.01,
            publish_failure_budget: 0.01,
            slow_first_frame_budget: 0.05,
            min_events: 10,
            min_viewing_time: m(2),
            windows: vec![
                BurnWindow { long: h(1), short: m(5), factor: 14.4, severity: Severity::P1 },
                BurnWindow { long: h(6), short: m(30), factor: 6.0, severity: Severity::P1 },
                BurnWindow { long: h(72), short: h(6), factor: 1.0, severity: Severity::P2 },
            ],
        }
    }
}

/// Hour-of-week baselines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Baseline {
    /// How many past weeks the same hour is taken from.
    pub weeks: usize,
    /// Fewer weeks with data than this: insufficient data.
    pub min_weeks: usize,
    /// The recent window compared with the baseline of the hour holding its middle.
    #[serde(with = "stallwatch_proto::duration::serde_human")]
    pub window: Duration,
    /// Fire above median + this x MAD (scaled by 1.4826, a standard deviation for normal data).
    pub mad_factor: f64,
    /// ... and at least this many times the median.
    pub min_ratio: f64,
    /// ... and at least this share of the signal's enter level (so that 0.02 % against 0.01 %
    /// is not news).
    pub min_share_of_threshold: f64,
}

impl Default for Baseline {
    fn default() -> Self {
        Baseline {
            weeks: 4,
            min_weeks: 2,
            window: Duration::from_secs(3600),
            mad_factor: 3.0,
            min_ratio: 1.5,
            min_share_of_threshold: 0.25,
        }
    }
}

/// Trend forecasts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Trend {
    /// The line is fitted to this much recent history (least squares over judged minutes;
    /// 5 minutes to 2 hours).
    #[serde(with = "stallwatch_proto::duration::serde_human")]
    pub window: Duration,
    /// Warn when the signal would cross its enter level within this.
    #[serde(with = "stallwatch_proto::duration::serde_human")]
    pub horizon: Duration,
    /// Fewer judged minutes than this in the window: insufficient data.
    pub min_points: usize,
    /// The slope must be at least this many standard errors above zero (noise is not a trend).
    pub min_t: f64,
}

impl Default for Trend {
    fn default() -> Self {
        Trend {
            window: Duration::from_secs(30 * 60),
            horizon: Duration::from_secs(30 * 60),
            min_points: 10,
            min_t: 2.0,
        }
    }
}

/// Peer outliers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Outlier {
    /// Regions are compared over this window.
    #[serde(with = "stallwatch_proto::duration::serde_human")]
    pub window: Duration,
    /// Least regions with data on the network type and transport (the candidate included).
    pub min_regions: usize,
    /// Fire above the others' median + this x their MAD (scaled by 1.4826).
    pub mad_factor: f64,
    /// ... and at least this many times their median.
    pub min_ratio: f64,
    /// ... and at least this share of the signal's enter level.
    pub min_share_of_threshold: f64,
}

impl Default for Outlier {
    fn default() -> Self {
        Outlier {
            window: Duration::from_secs(15 * 60),
            min_regions: 3,
            mad_factor: 3.0,
            min_ratio: 2.0,
            min_share_of_threshold: 0.5,
        }
    }
}

/// Agent absence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Absence {
    /// An agent with no report for this long is absent.
    #[serde(with = "stallwatch_proto::duration::serde_human")]
    pub after: Duration,
    /// It is back once it has reported without a gap this long (a flapping agent stays one
    /// incident).
    #[serde(with = "stallwatch_proto::duration::serde_human")]
    pub clear_after: Duration,
    /// An agent absent this long is forgotten (decommissioned): its incident resolves.
    #[serde(with = "stallwatch_proto::duration::serde_human")]
    pub forget_after: Duration,
}

impl Default for Absence {
    fn default() -> Self {
        Absence {
            after: Duration::from_secs(120),
            clear_after: Duration::from_secs(300),
            forget_after: Duration::from_secs(86_400),
        }
    }
}

/// Transport attribution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransportAttribution {
    /// UDP and QUIC cohorts of one region, network type and target are compared over this.
    #[serde(with = "stallwatch_proto::duration::serde_human")]
    pub window: Duration,
}

impl Default for TransportAttribution {
    fn default() -> Self {
        TransportAttribution { window: Duration::from_secs(5 * 60) }
    }
}

/// Delivery to Alertmanager and retries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Delivery {
    /// Alertmanager base URLs, every replica of a cluster (each gets every alert), e.g.
    /// `http://127.0.0.1:9093`; alerts go to `<url>/api/v2/alerts`.
    pub alertmanagers: Vec<String>,
    /// Active alerts are sent again this often (Alertmanager forgets an alert whose `endsAt`
    /// passes).
    #[serde(with = "stallwatch_proto::duration::serde_human")]
    pub resend_every: Duration,
    /// `endsAt` of an active alert is this far ahead (a few resend intervals, so that one lost
    /// resend does not resolve it).
    #[serde(with = "stallwatch_proto::duration::serde_human")]
    pub ends_at_after: Duration,
    /// Timeout of one HTTP request.
    #[serde(with = "stallwatch_proto::duration::serde_human")]
    pub timeout: Duration,
    /// A webhook notification still failing after this long is dropped (counted and logged).
    #[serde(with = "stallwatch_proto::duration::serde_human")]
    pub give_up_after: Duration,
    /// The collector's address as people reach it (e.g. `https://stallwatch.example.net`);
    /// when set, alerts link back to `<url>/api/v1/alerts` (Alertmanager's `generatorURL`).
    pub external_url: Option<String>,
}

impl Default for Delivery {
    fn default() -> Self {
        Delivery {
            alertmanagers: Vec::new(),
            resend_every: Duration::from_secs(60),
            ends_at_after: Duration::from_secs(4 * 60),
            timeout: Duration::from_secs(10),
            give_up_after: Duration::from_secs(3600),
            external_url: None,
        }
    }
}

/// A webhook's message format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    /// stallwatch's JSON, signed with HMAC-SHA256 (`docs/alerts.md`).
    Generic,
    /// A Slack incoming webhook (Block Kit).
    Slack,
    /// A Feishu/Lark custom bot (rich-text post; signed when a secret is set).
    Feishu,
    /// A DingTalk custom robot (Markdown; signed when a secret is set).
    Dingtalk,
    /// A WeCom (WeChat Work) group robot (Markdown).
    Wecom,
}

impl WebhookFormat {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookFormat::Generic => "generic",
            WebhookFormat::Slack => "slack",
            WebhookFormat::Feishu => "feishu",
            WebhookFormat::Dingtalk => "dingtalk",
            WebhookFormat::Wecom => "wecom",
        }
    }
}

/// One webhook receiver. It is notified when an incident opens, changes severity or resolves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    /// Name, unique (a label of the delivery counters, and in logs).
    pub name: String,
    /// Message format.
    pub format: WebhookFormat,
    /// The URL (it usually holds the chat service's token: keep this file private).
    pub url: String,
    /// Signing secret: required for `generic` (HMAC-SHA256 of the body), optional for
    /// `feishu` and `dingtalk` (their "signature" security setting), unused otherwise.
    #[serde(default)]
    pub secret: Option<String>,
    /// Least severity sent (`P0`, `P1` or `P2`).
    #[serde(default = "default_min_severity")]
    pub min_severity: Severity,
}

fn default_min_severity() -> Severity {
    Severity::P2
}

/// An enter and exit level in the signal's base unit (ratio, or seconds).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Levels {
    /// Fire at or above.
    pub enter: f64,
    /// Clear below.
    pub exit: f64,
}

/// One burn-rate window pair, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BurnPair {
    /// Long window, ms.
    pub long_ms: u64,
    /// Short window, ms.
    pub short_ms: u64,
    /// Burn-rate factor.
    pub factor: f64,
    /// Severity.
    pub severity: Severity,
}

/// The section resolved for the evaluator: durations in ms, levels in base units, defaults
/// from `[slo]` filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Evaluation interval, ms.
    pub evaluate_every_ms: u64,
    /// Settling time, ms.
    pub settle_ms: u64,
    /// Restatement horizon, ms.
    pub restate_ms: u64,
    /// Hysteresis of resolution and de-escalation, ms.
    pub resolve_after_ms: u64,
    /// Runbook URL template.
    pub runbook_url: String,
    /// Least viewing time per cohort-minute, ns.
    pub min_viewing_ns: u64,
    /// Least attempts per cohort-minute.
    pub min_attempts: u64,
    /// Least first frames per cohort-minute.
    pub min_first_frames: u64,
    /// Least packets per cohort-minute.
    pub min_packets: u64,
    /// P0 when this many regions.
    pub p0_min_regions: usize,
    /// P0 when this share of agents.
    pub p0_min_agent_share: f64,
    /// ... of at least this many reporting agents.
    pub p0_min_agents: usize,
    /// Threshold levels per signal (None: no threshold rule for it).
    pub levels: BTreeMap<Signal, Levels>,
    /// N.
    pub breaches: usize,
    /// M.
    pub window: usize,
    /// First frames slower than this are "slow" (µs): `slo.first_frame_warn`.
    pub slow_first_frame_us: u64,
    /// Error budgets per SLO signal.
    pub budgets: BTreeMap<Signal, f64>,
    /// Burn-rate window pairs.
    pub burn_windows: Vec<BurnPair>,
    /// Least events in a burn rate's short window.
    pub burn_min_events: u64,
    /// Least viewing time in a burn rate's short window, ns.
    pub burn_min_viewing_ns: u64,
    /// Baselines.
    pub baseline: Baseline,
    /// Baseline window, ms.
    pub baseline_window_ms: u64,
    /// Trends.
    pub trend: Trend,
    /// Outliers.
    pub outlier: Outlier,
    /// Absence.
    pub absence_after_ms: u64,
    /// Absence clears after, ms.
    pub absence_clear_ms: u64,
    /// Absence forgotten after, ms.
    pub absence_forget_ms: u64,
    /// Transport attribution window, ms.
    pub transport_window_ms: u64,
    /// Relay names per region (`[[relays]]` with a region): "every relay of a region
    /// unreachable" is a P0.
    pub relays_by_region: BTreeMap<String, Vec<String>>,
}

/// Milliseconds of a duration, saturating.
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl AlertsConfig {
    /// The evaluator's settings, with levels and budgets left out taken from `slo`.
    pub fn settings(&self, slo: &Slo, relays: &[Relay]) -> Settings {
        let t = &self.thresholds;
        let secs = |d: Duration| d.as_secs_f64();
        let time = |l: &TimeLevels, default: Duration| {
            let enter = secs(l.enter.unwrap_or(default));
            Levels { enter, exit: l.exit.map_or(enter * t.exit_ratio, secs) }
        };
        let ratio = |l: &RatioLevels, default: f64| {
            let enter = l.enter.unwrap_or(default);
            Levels { enter, exit: l.exit.unwrap_or(enter * t.exit_ratio) }
        };
        let levels = BTreeMap::from([
            (Signal::FirstFrameP95, time(&t.first_frame_p95, slo.first_frame_warn)),
            (Signal::StallRatio, ratio(&t.stall_ratio, slo.stall_ratio_warn)),
            (Signal::LossRatio, ratio(&t.loss_ratio, slo.loss_warn)),
            (Signal::JitterP95, time(&t.jitter_p95, slo.jitter_warn)),
            (Signal::ViewFailureRatio, ratio(&t.view_failure_ratio, 0.1)),
            (Signal::PublishFailureRatio, ratio(&t.publish_failure_ratio, 0.1)),
        ]);
        let b = &self.burn_rate;
        let budgets = BTreeMap::from([
            (Signal::StallRatio, b.stall_budget.unwrap_or(slo.stall_ratio_warn)),
            (Signal::ViewFailureRatio, b.view_failure_budget),
            (Signal::PublishFailureRatio, b.publish_failure_budget),
            (Signal::SlowFirstFrames, b.slow_first_frame_budget),
        ]);
        let mut relays_by_region: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for relay in relays {
            if let Some(region) = &relay.region {
                relays_by_region.entry(region.clone()).or_default().push(relay.name.clone());
            }
        }
        Settings {
            evaluate_every_ms: millis(self.evaluate_every),
            settle_ms: millis(self.settle),
            restate_ms: millis(self.restate),
            resolve_after_ms: millis(self.resolve_after),
            runbook_url: self.runbook_url.clone(),
            min_viewing_ns: u64::try_from(self.min_data.viewing_time.as_nanos())
                .unwrap_or(u64::MAX),
            min_attempts: self.min_data.attempts.max(1),
            min_first_frames: self.min_data.first_frames.max(1),
            min_packets: self.min_data.packets.max(1),
            p0_min_regions: self.impact.p0_min_regions,
            p0_min_agent_share: self.impact.p0_min_agent_share,
            p0_min_agents: self.impact.p0_min_agents,
            levels,
            breaches: t.breaches,
            window: t.window,
            slow_first_frame_us: millis(slo.first_frame_warn) * 1000,
            budgets,
            burn_windows: b
                .windows
                .iter()
                .map(|w| BurnPair {
                    long_ms: millis(w.long),
                    short_ms: millis(w.short),
                    factor: w.factor,
                    severity: w.severity,
                })
                .collect(),
            burn_min_events: b.min_events.max(1),
            burn_min_viewing_ns: u64::try_from(b.min_viewing_time.as_nanos()).unwrap_or(u64::MAX),
            baseline: self.baseline.clone(),
            baseline_window_ms: millis(self.baseline.window),
            trend: self.trend.clone(),
            outlier: self.outlier.clone(),
            absence_after_ms: millis(self.absence.after),
            absence_clear_ms: millis(self.absence.clear_after),
            absence_forget_ms: millis(self.absence.forget_after),
            transport_window_ms: millis(self.transport.window),
            relays_by_region,
        }
    }

    /// Problems with the section, each naming its field (`alerts.thresholds.window`) and,
    /// through `locations`, the line.
    pub fn check(&self, slo: &Slo, locations: &Locations) -> Vec<Problem> {
        let mut c = Checker::new(locations);
        let fmt = format_duration;
        c.at_least("alerts.evaluate_every", self.evaluate_every, Duration::from_secs(1));
        c.at_most("alerts.restate", self.restate, Duration::from_secs(3600));
        let t = &self.thresholds;
        if t.breaches == 0 {
            c.problem("alerts.thresholds.breaches", "must be at least 1");
        }
        // The rule looks back up to 3 M minutes, within the two hours held minute by minute.
        if t.window < t.breaches || t.window > 40 {
            c.problem(
                "alerts.thresholds.window",
                format!(
                    "({}) must be between thresholds.breaches ({}) and 40",
                    t.window, t.breaches
                ),
            );
        }
        c.fraction("alerts.thresholds.exit_ratio", t.exit_ratio);
        let settings = self.settings(slo, &[]);
        let names = [
            (Signal::FirstFrameP95, "first_frame_p95"),
            (Signal::StallRatio, "stall_ratio"),
            (Signal::LossRatio, "loss_ratio"),
            (Signal::JitterP95, "jitter_p95"),
            (Signal::ViewFailureRatio, "view_failure_ratio"),
            (Signal::PublishFailureRatio, "publish_failure_ratio"),
        ];
        for (signal, name) in names {
            let levels = settings.levels[&signal];
            let path = format!("alerts.thresholds.{name}");
            if levels.enter.is_nan()
                || levels.enter <= 0.0
                || (signal.is_ratio() && levels.enter > 1.0)
            {
                c.problem(
                    &format!("{path}.enter"),
                    "must be greater than 0 (and at most 1 for a ratio)",
                );
            }
            if !(levels.exit >= 0.0 && levels.exit <= levels.enter) {
                c.problem(
                    &format!("{path}.exit"),
                    format!(
                        "({}) must be at most the enter level ({})",
                        signal.format(levels.exit),
                        signal.format(levels.enter)
                    ),
                );
            }
        }
        let b = &self.burn_rate;
        for (name, v) in [
            ("view_failure_budget", Some(b.view_failure_budget)),
            ("publish_failure_budget", Some(b.publish_failure_budget)),
            ("slow_first_frame_budget", Some(b.slow_first_frame_budget)),
            ("stall_budget", b.stall_budget),
        ] {
            if let Some(v) = v {
                c.ratio(&format!("alerts.burn_rate.{name}"), v);
            }
        }
        for (i, w) in b.windows.iter().enumerate() {
            let path = format!("alerts.burn_rate.windows[{i}]");
            if w.short.is_zero() || w.short >= w.long {
                c.problem(
                    &format!("{path}.short"),
                    format!(
                        "({}) must be above 0s and shorter than long ({})",
                        fmt(w.short),
                        fmt(w.long)
                    ),
                );
            }
            c.at_most(&format!("{path}.long"), w.long, Duration::from_secs(7 * 86_400));
            if w.factor.is_nan() || w.factor <= 0.0 {
                c.problem(&format!("{path}.factor"), "must be greater than 0");
            }
            if w.severity == Severity::None {
                c.problem(&format!("{path}.severity"), "must be P0, P1 or P2");
            }
        }
        let bl = &self.baseline;
        if bl.weeks == 0 || bl.weeks > 12 {
            c.problem("alerts.baseline.weeks", "must be between 1 and 12");
        }
        if bl.min_weeks == 0 || bl.min_weeks > bl.weeks {
            c.problem("alerts.baseline.min_weeks", "must be between 1 and baseline.weeks");
        }
        c.between(
            "alerts.baseline.window",
            bl.window,
            Duration::from_secs(60),
            Duration::from_secs(6 * 3600),
        );
        c.positive("alerts.baseline.mad_factor", bl.mad_factor);
        c.positive("alerts.baseline.min_ratio", bl.min_ratio);
        c.non_negative("alerts.baseline.min_share_of_threshold", bl.min_share_of_threshold);
        let tr = &self.trend;
        // Minute values are held for two hours.
        c.between(
            "alerts.trend.window",
            tr.window,
            Duration::from_secs(5 * 60),
            Duration::from_secs(2 * 3600),
        );
        c.at_least("alerts.trend.horizon", tr.horizon, Duration::from_secs(60));
        if tr.min_points < 3 {
            c.problem(
                "alerts.trend.min_points",
                "must be at least 3 (a line through two points has no error)",
            );
        }
        c.non_negative("alerts.trend.min_t", tr.min_t);
        let o = &self.outlier;
        c.between(
            "alerts.outlier.window",
            o.window,
            Duration::from_secs(60),
            Duration::from_secs(6 * 3600),
        );
        if o.min_regions < 3 {
            c.problem(
                "alerts.outlier.min_regions",
                "must be at least 3 (the candidate and two peers)",
            );
        }
        c.positive("alerts.outlier.mad_factor", o.mad_factor);
        c.positive("alerts.outlier.min_ratio", o.min_ratio);
        c.non_negative("alerts.outlier.min_share_of_threshold", o.min_share_of_threshold);
        let a = &self.absence;
        c.at_least("alerts.absence.after", a.after, Duration::from_secs(1));
        if a.forget_after <= a.after {
            c.problem(
                "alerts.absence.forget_after",
                format!(
                    "({}) must be longer than absence.after ({})",
                    fmt(a.forget_after),
                    fmt(a.after)
                ),
            );
        }
        c.between(
            "alerts.transport.window",
            self.transport.window,
            Duration::from_secs(60),
            Duration::from_secs(6 * 3600),
        );
        if self.impact.p0_min_regions < 2 {
            c.problem("alerts.impact.p0_min_regions", "must be at least 2 (one region is a P1)");
        }
        c.ratio("alerts.impact.p0_min_agent_share", self.impact.p0_min_agent_share);
        let d = &self.delivery;
        for (i, url) in d.alertmanagers.iter().enumerate() {
            if let Err(why) = check_url(url) {
                c.problem(
                    &format!("alerts.delivery.alertmanagers[{i}]"),
                    format!("{url:?}: {why}"),
                );
            }
        }
        c.at_least("alerts.delivery.resend_every", d.resend_every, Duration::from_secs(1));
        if d.ends_at_after <= d.resend_every {
            c.problem(
                "alerts.delivery.ends_at_after",
                format!(
                    "({}) must be longer than delivery.resend_every ({}), or active alerts expire \
                     between resends",
                    fmt(d.ends_at_after),
                    fmt(d.resend_every)
                ),
            );
        }
        c.at_least("alerts.delivery.timeout", d.timeout, Duration::from_millis(100));
        if let Some(url) = &d.external_url
            && let Err(why) = check_url(url)
        {
            c.problem("alerts.delivery.external_url", format!("{url:?}: {why}"));
        }
        if !self.runbook_url.contains("{runbook}") {
            c.problem(
                "alerts.runbook_url",
                "must contain {runbook}, replaced by the runbook's name",
            );
        }
        let mut names = HashSet::new();
        for (i, w) in self.webhooks.iter().enumerate() {
            let path = format!("alerts.webhooks[{i}]");
            if w.name.is_empty()
                || !w.name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                c.problem(
                    &format!("{path}.name"),
                    "must be 1 or more characters from A-Z a-z 0-9 - _",
                );
            } else if !names.insert(w.name.as_str()) {
                c.problem(
                    &format!("{path}.name"),
                    format!("{:?} is used by another webhook", w.name),
                );
            }
            if let Err(why) = check_url(&w.url) {
                c.problem(&format!("{path}.url"), why);
            }
            match (w.format, &w.secret) {
                (WebhookFormat::Generic, None) => c.problem(
                    &format!("{path}.secret"),
                    "a generic webhook needs a secret: its receiver checks the HMAC-SHA256 signature",
                ),
                (WebhookFormat::Slack | WebhookFormat::Wecom, Some(_)) => c.problem(
                    &format!("{path}.secret"),
                    format!("{} webhooks are not signed (the token is in the URL)", w.format.as_str()),
                ),
                (_, Some(s)) if s.is_empty() => c.problem(&format!("{path}.secret"), "must not be empty"),
                _ => {}
            }
            if w.min_severity == Severity::None {
                c.problem(&format!("{path}.min_severity"), "must be P0, P1 or P2");
            }
        }
        c.problems
    }
}

/// An `http://` or `https://` URL with a host.
fn check_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or("must start with http:// or https://")?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() {
        return Err("has no host".into());
    }
    if url.parse::<reqwest::Url>().is_err() {
        return Err("is not a valid URL".into());
    }
    Ok(())
}

/// The alerts section's own checks, on the config's problem collector.
impl Checker<'_> {
    fn at_least(&mut self, path: &str, d: Duration, min: Duration) {
        if d < min {
            self.problem(
                path,
                format!("({}) must be at least {}", format_duration(d), format_duration(min)),
            );
        }
    }

    fn at_most(&mut self, path: &str, d: Duration, max: Duration) {
        if d > max {
            self.problem(
                path,
                format!("({}) must be at most {}", format_duration(d), format_duration(max)),
            );
        }
    }

    fn between(&mut self, path: &str, d: Duration, min: Duration, max: Duration) {
        if d < min || d > max {
            self.problem(
                path,
                format!(
                    "({}) must be between {} and {}",
                    format_duration(d),
                    format_duration(min),
                    format_duration(max)
                ),
            );
        }
    }

    fn ratio(&mut self, path: &str, v: f64) {
        if !(v > 0.0 && v <= 1.0) {
            self.problem(path, format!("{v} is not a ratio in (0, 1] (write 1 % as 0.01)"));
        }
    }

    fn fraction(&mut self, path: &str, v: f64) {
        if !(v > 0.0 && v <= 1.0) {
            self.problem(path, format!("{v} must be in (0, 1]"));
        }
    }

    fn positive(&mut self, path: &str, v: f64) {
        if !(v > 0.0 && v.is_finite()) {
            self.problem(path, format!("{v} must be greater than 0"));
        }
    }

    fn non_negative(&mut self, path: &str, v: f64) {
        if !(v >= 0.0 && v.is_finite()) {
            self.problem(path, format!("{v} must be 0 or more"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    const BASE: &str = "[tls]\nca = \"ca.pem\"\ncert = \"c.pem\"\nkey = \"c.key\"\nrevoked = \"r.json\"\n\
                        [labels]\nregions = [\"sea\"]\n";

    fn problems(alerts: &str) -> String {
        match parse(&format!("{BASE}{alerts}"), "t.toml") {
            Ok(_) => panic!("parsed, but should not have:\n{alerts}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn an_empty_section_and_no_section_both_give_the_defaults() {
        let none = parse(BASE, "t.toml").unwrap();
        let empty = parse(&format!("{BASE}[alerts]\n"), "t.toml").unwrap();
        assert_eq!(none.alerts, AlertsConfig::default());
        assert_eq!(empty.alerts, AlertsConfig::default());
        let s = empty.alerts.settings(&empty.slo, &empty.relays);
        // Levels from [slo]: stall 1 %, first frame 2 s, jitter 30 ms, loss 1 %; exits at 80 %.
        assert_eq!(s.levels[&Signal::StallRatio], Levels { enter: 0.01, exit: 0.008 });
        assert_eq!(s.levels[&Signal::FirstFrameP95].enter, 2.0);
        assert!((s.levels[&Signal::JitterP95].enter - 0.03).abs() < 1e-12);
        assert_eq!(s.budgets[&Signal::StallRatio], 0.01);
        assert_eq!(
            s.burn_windows
                .iter()
                .map(|w| (w.long_ms / 60_000, w.short_ms / 60_000, w.factor))
                .collect::<Vec<_>>(),
            [(60, 5, 14.4), (360, 30, 6.0), (4320, 360, 1.0)]
        );
        assert_eq!(
            (s.breaches, s.window, s.evaluate_every_ms, s.settle_ms),
            (2, 3, 60_000, 30_000)
        );
    }

    /// The example's `[alerts]` shows every default, as its comment says.
    #[test]
    fn the_example_config_shows_the_defaults() {
        let text = include_str!("../../../deploy/collector.example.toml");
        let config = parse(text, "collector.example.toml").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.alerts, AlertsConfig::default());
    }

    #[test]
    fn settings_follow_the_section_and_slo() {
        let text = format!(
            "{BASE}[slo]\nstall_ratio_warn = 0.02\nstall_ratio_critical = 0.05\n[alerts]\nsettle = \"10s\"\n\
             [alerts.thresholds]\nbreaches = 3\nwindow = 5\n[alerts.thresholds.jitter_p95]\nenter = \"40ms\"\nexit = \"25ms\"\n\
             [[alerts.webhooks]]\nname = \"oncall\"\nformat = \"generic\"\nurl = \"https://h.example/x\"\nsecret = \"s\"\nmin_severity = \"P1\"\n"
        );
        let config = parse(&text, "t.toml").unwrap_or_else(|e| panic!("{e}"));
        let s = config.alerts.settings(&config.slo, &config.relays);
        assert_eq!(s.settle_ms, 10_000);
        assert_eq!(s.levels[&Signal::StallRatio].enter, 0.02, "from [slo]");
        assert_eq!(s.levels[&Signal::JitterP95], Levels { enter: 0.04, exit: 0.025 });
        assert_eq!((s.breaches, s.window), (3, 5));
        assert_eq!(config.alerts.webhooks[0].min_severity, Severity::P1);
    }

    #[test]
    fn unknown_fields_and_bad_values_name_file_line_and_field() {
        let e = problems("[alerts.thresholds]\nbreachez = 2\n");
        assert!(
            e.starts_with("t.toml:9:1: alerts.thresholds.breachez: unknown field `breachez`"),
            "{e}"
        );
        let e = problems("[alerts]\nsettle = \"30 seconds\"\n");
        assert!(e.starts_with("t.toml:9:10: alerts.settle: invalid duration"), "{e}");
        let e = problems(
            "[alerts.thresholds]\nbreaches = 4\nwindow = 3\n[alerts.thresholds.stall_ratio]\nenter = 0.01\nexit = 0.02\n",
        );
        assert!(e.contains("t.toml:10:10: alerts.thresholds.window: (3) must be between thresholds.breaches (4) and 40"), "{e}");
        assert!(e.contains("t.toml:13:8: alerts.thresholds.stall_ratio.exit: (2.00 %) must be at most the enter level (1.00 %)"), "{e}");
        let e = problems(
            "[[alerts.webhooks]]\nname = \"x\"\nformat = \"generic\"\nurl = \"ftp://h\"\n",
        );
        assert!(e.contains("alerts.webhooks[0].url: must start with http:// or https://"), "{e}");
        assert!(e.contains("alerts.webhooks[0].secret: a generic webhook needs a secret"), "{e}");
        let e = problems(
            "[[alerts.webhooks]]\nname = \"x\"\nformat = \"teams\"\nurl = \"https://h\"\n",
        );
        assert!(e.contains("alerts.webhooks[0].format: unknown variant `teams`"), "{e}");
        let e = problems("[alerts.delivery]\nresend_every = \"5m\"\nends_at_after = \"4m\"\n");
        assert!(
            e.contains(
                "alerts.delivery.ends_at_after: (4m) must be longer than delivery.resend_every (5m)"
            ),
            "{e}"
        );
        let e = problems(
            "[[alerts.burn_rate.windows]]\nlong = \"5m\"\nshort = \"1h\"\nfactor = 1\nseverity = \"P9\"\n",
        );
        assert!(
            e.contains("t.toml:12:12: alerts.burn_rate.windows[0].severity: unknown variant `P9`"),
            "{e}"
        );
        let e = problems(
            "[[alerts.burn_rate.windows]]\nlong = \"5m\"\nshort = \"1h\"\nfactor = 0\nseverity = \"P1\"\n",
        );
        assert!(e.contains("t.toml:10:9: alerts.burn_rate.windows[0].short: (1h) must be above 0s and shorter than long (5m)"), "{e}");
        assert!(
            e.contains("t.toml:11:10: alerts.burn_rate.windows[0].factor: must be greater than 0"),
            "{e}"
        );
    }
}
