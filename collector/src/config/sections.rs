//! The configuration's sections other than plans: listeners, TLS, storage, ingest limits,
//! label allow-lists, relays and SLO thresholds.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use stallwatch_proto::report::{self, DEFAULT_MAX_REPORT_BYTES, ReportLimits};

use super::bytes::ByteSize;

/// Where the collector listens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Listen {
    /// HTTPS with mutual TLS, for agents: plan fetches and interval reports.
    pub ingest: SocketAddr,
    /// Plain HTTP, for people and Prometheus: `/metrics`, `/api/v1/agents` and the fleet page.
    /// Loopback by default: put it behind a proxy, or bind a private address, to scrape it from
    /// another host.
    pub metrics: SocketAddr,
}

impl Default for Listen {
    fn default() -> Self {
        Listen {
            ingest: SocketAddr::from(([0, 0, 0, 0], 8443)),
            metrics: SocketAddr::from(([127, 0, 0, 1], 9464)),
        }
    }
}

/// The web listener (`listen.metrics`): who it answers and how much it renders at once
/// (docs/security.md, "The web listener").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Web {
    /// Host names it answers to besides loopback names and IP addresses, e.g.
    /// `collector.example.net`: any other `Host` is refused, so a web page that rebinds its own
    /// name to the collector's address (DNS rebinding) cannot read from it.
    pub allowed_hosts: Vec<String>,
    /// A file holding a bearer token; when set, `/api/v1/*` and `/-/reload` need
    /// `Authorization: Bearer TOKEN`. Read at start.
    pub token_file: Option<PathBuf>,
    /// `/metrics` renders in progress at once; more requests wait for a turn, then get 503.
    pub max_concurrent_renders: usize,
}

impl Default for Web {
    fn default() -> Self {
        Web { allowed_hosts: Vec::new(), token_file: None, max_concurrent_renders: 2 }
    }
}

/// The collector's TLS identity and the fleet CA it trusts. Relative paths are resolved against
/// the directory of the configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// The fleet CA certificate (PEM); agents must present a certificate it issued.
    pub ca: PathBuf,
    /// The collector's certificate chain (PEM), issued by `stallwatch-collector ca issue-collector`.
    pub cert: PathBuf,
    /// The collector's private key (PEM).
    pub key: PathBuf,
    /// The revocation deny-list written by `stallwatch-collector ca revoke`; agents listed in it
    /// are refused.
    pub revoked: PathBuf,
}

/// The embedded history store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Storage {
    /// SQLite database file (WAL mode; keep it on local disk). A relative path is resolved
    /// against the directory of the configuration file.
    pub path: PathBuf,
    /// How long per-minute rows are kept.
    #[serde(with = "stallwatch_proto::duration::serde_human")]
    pub raw_retention: Duration,
    /// Age after which per-minute rows are merged into hourly rows; at most `raw_retention`.
    #[serde(with = "stallwatch_proto::duration::serde_human")]
    pub downsample_after: Duration,
    /// How long hourly rows are kept; longer than `downsample_after`.
    #[serde(with = "stallwatch_proto::duration::serde_human")]
    pub hourly_retention: Duration,
}

impl Default for Storage {
    fn default() -> Self {
        Storage {
            path: PathBuf::from("/var/lib/stallwatch/collector.db"),
            raw_retention: Duration::from_secs(7 * 86_400),
            downsample_after: Duration::from_secs(2 * 86_400),
            hourly_retention: Duration::from_secs(90 * 86_400),
        }
    }
}

/// Smallest accepted `ingest.max_report_bytes` ([`report::MIN_REPORT_BYTES_CAP`]).
pub const MIN_REPORT_BYTES: ByteSize = ByteSize(report::MIN_REPORT_BYTES_CAP as u64);
/// Largest accepted `ingest.max_report_bytes` ([`report::MAX_REPORT_BYTES_CAP`]).
pub const MAX_REPORT_BYTES: ByteSize = ByteSize(report::MAX_REPORT_BYTES_CAP as u64);

/// Limits applied to agents' reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Ingest {
    /// Largest accepted report body: bytes, or a size such as `"1MiB"` (64KiB to 16MiB).
    pub max_report_bytes: ByteSize,
    /// Reports stamped further than this in the future are refused: the agent's clock is wrong.
    #[serde(with = "stallwatch_proto::duration::serde_human")]
    pub max_clock_skew: Duration,
    /// Oldest report accepted when an agent backfills its spool after an outage.
    #[serde(with = "stallwatch_proto::duration::serde_human")]
    pub max_backfill_age: Duration,
    /// A report whose window ended this long before it arrived counts as backfilled (it waited
    /// in an agent's spool) in `stallwatch_collector_reports_backfilled_total`. Longer than a
    /// live report's delivery takes; only counting depends on it.
    #[serde(with = "stallwatch_proto::duration::serde_human")]
    pub backfill_after: Duration,
}

impl Default for Ingest {
    fn default() -> Self {
        Ingest {
            max_report_bytes: ByteSize(DEFAULT_MAX_REPORT_BYTES as u64),
            max_clock_skew: Duration::from_secs(5 * 60),
            max_backfill_age: Duration::from_secs(86_400),
            backfill_after: Duration::from_secs(30),
        }
    }
}

impl Ingest {
    /// The decoder limits for these settings (the proto defaults, with `max_report_bytes`).
    pub fn report_limits(&self) -> ReportLimits {
        ReportLimits {
            max_report_bytes: usize::try_from(self.max_report_bytes.bytes()).unwrap_or(usize::MAX),
            ..ReportLimits::default()
        }
    }
}

/// The default allow-list: every network type an agent certificate can carry (DESIGN.md
/// section 5; the contract's list, which the agent checks its bundle against too).
pub use stallwatch_proto::identity::NETWORK_TYPES as DEFAULT_NETWORK_TYPES;

/// Label allow-lists: reports whose labels are outside them are refused at ingest, so no agent
/// can blow up the number of series (budget: 50k per collector).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Labels {
    /// Regions this collector owns (e.g. `sea`, `latam`, `eu`; 1 to 32 characters from
    /// `a-z 0-9 -`, as in agent certificates); a collector owns whole regions.
    pub regions: Vec<String>,
    /// Network types agents may report (a subset of [`DEFAULT_NETWORK_TYPES`]).
    #[serde(default = "default_network_types")]
    pub network_types: Vec<String>,
    /// Probe targets (relay or endpoint names; 1 to 64 characters from `A-Z a-z 0-9 . _ -`)
    /// agents may report. Absent or empty: the names of the `[[relays]]`.
    #[serde(default)]
    pub targets: Vec<String>,
}

fn default_network_types() -> Vec<String> {
    DEFAULT_NETWORK_TYPES.iter().map(|s| (*s).to_owned()).collect()
}

impl Labels {
    /// Whether `region` is allowed.
    pub fn allows_region(&self, region: &str) -> bool {
        self.regions.iter().any(|r| r == region)
    }

    /// Whether `network_type` is allowed.
    pub fn allows_network_type(&self, network_type: &str) -> bool {
        self.network_types.iter().any(|n| n == network_type)
    }

    /// Whether `target` is allowed.
    pub fn allows_target(&self, target: &str) -> bool {
        self.targets.iter().any(|t| t == target)
    }
}

/// A relay that probes can target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Relay {
    /// Name, used as the `target` label of probes against it.
    pub name: String,
    /// `host:port` of its QUIC listener, as agents reach it.
    pub address: String,
    /// Region the relay is in, if it is in one of this collector's regions (for reports and
    /// "every relay of a region unreachable" alerts).
    #[serde(default)]
    pub region: Option<String>,
}

/// SLO thresholds (DESIGN.md section 4). Durations are human strings, ratios are fractions
/// (0.01 is 1 %).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Slo {
    /// First frame within this is good.
    #[serde(with = "stallwatch_proto::duration::serde_human")]
    pub first_frame_good: Duration,
    /// First frame slower than this is a warning.
    #[serde(with = "stallwatch_proto::duration::serde_human")]
    pub first_frame_warn: Duration,
    /// First frame slower than this is critical.
    #[serde(with = "stallwatch_proto::duration::serde_human")]
    pub first_frame_critical: Duration,
    /// Stall ratio at or above this is a warning.
    pub stall_ratio_warn: f64,
    /// Stall ratio at or above this is critical.
    pub stall_ratio_critical: f64,
    /// Interarrival jitter above this is a warning.
    #[serde(with = "stallwatch_proto::duration::serde_human")]
    pub jitter_warn: Duration,
    /// Interarrival jitter above this is critical.
    #[serde(with = "stallwatch_proto::duration::serde_human")]
    pub jitter_critical: Duration,
    /// Loss ratio above this is a warning.
    pub loss_warn: f64,
    /// Loss ratio above this is critical.
    pub loss_critical: f64,
    /// RTT above this is a warning.
    #[serde(with = "stallwatch_proto::duration::serde_human")]
    pub rtt_warn: Duration,
}

impl Default for Slo {
    fn default() -> Self {
        let ms = Duration::from_millis;
        Slo {
            first_frame_good: ms(1000),
            first_frame_warn: ms(2000),
            first_frame_critical: ms(4000),
            stall_ratio_warn: 0.01,
            stall_ratio_critical: 0.03,
            jitter_warn: ms(30),
            jitter_critical: ms(50),
            loss_warn: 0.01,
            loss_critical: 0.05,
            rtt_warn: ms(300),
        }
    }
}
