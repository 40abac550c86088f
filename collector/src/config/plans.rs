//! `[[plans]]`: which agents run which probes, and how a config becomes one agent's [`Plan`].
//!
//! An agent gets every plan whose selector matches it, merged: the probes of all of them, the
//! shortest report interval, and the relay of the first one that runs a relay. Each probe's
//! first attempt is offset within its period by a hash of the agent and probe names, so agents
//! that share an uplink do not all probe at once, and an agent's plan is the same every time
//! it asks.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use stallwatch_proto::Transport;
use stallwatch_proto::plan::{
    DEFAULT_REPORT_INTERVAL, Plan, ProbeMode, ProbePlan, RelayPlan, Repair,
};

use super::{Config, RelayCredentials};

/// One `[[plans]]` section: a selector and what the agents it selects run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanSection {
    /// Name, unique in the file; shown on the fleet page.
    pub name: String,
    /// Agent names this plan applies to; empty: every agent.
    #[serde(default)]
    pub agents: Vec<String>,
    /// Regions this plan applies to; empty: every region.
    #[serde(default)]
    pub regions: Vec<String>,
    /// Network types this plan applies to; empty: every network type.
    #[serde(default)]
    pub network_types: Vec<String>,
    /// How often selected agents send an interval report; an agent selected by several plans
    /// uses the shortest.
    #[serde(default = "default_report_interval", with = "stallwatch_proto::duration::serde_human")]
    pub report_interval: Duration,
    /// Run a relay on the selected agents (other agents' probes can then target it).
    #[serde(default)]
    pub run_relay: Option<RunRelay>,
    /// Probes the selected agents run.
    #[serde(default)]
    pub probes: Vec<ProbeSection>,
}

fn default_report_interval() -> Duration {
    DEFAULT_REPORT_INTERVAL
}

/// A relay run by the selected agents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunRelay {
    /// QUIC listen address, `ip:port`.
    pub listen: SocketAddr,
    /// Keep the last GOP per stream so new viewers start at once, as real live servers do.
    #[serde(default = "default_true")]
    pub gop_cache: bool,
    /// The `[[relays]]` entry this relay serves, for its UDP credential; left out: the entry
    /// named like the agent that runs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay: Option<String>,
}

fn default_true() -> bool {
    true
}

/// One `[[plans.probes]]`: a recurring probe against a relay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeSection {
    /// Name, unique across all plans (an agent's plan merges probes from several plans).
    pub name: String,
    /// Name of the `[[relays]]` entry probed; also the `target` label of its metrics.
    pub target: String,
    /// How media is carried: `quic-stream`, `quic-datagram` or `udp`.
    pub transport: Transport,
    /// Stream profile: `360p15`, `360p30`, `720p30`, `1080p30` or `audio`.
    #[serde(default = "default_profile")]
    pub profile: String,
    /// `loopback` (publish and view back), `publish` or `view`.
    #[serde(default)]
    pub mode: ModeKind,
    /// Stream name, for `publish` and `view` only.
    #[serde(default)]
    pub stream: Option<String>,
    /// Start an attempt this often.
    #[serde(with = "stallwatch_proto::duration::serde_human")]
    pub every: Duration,
    /// Length of each attempt; at most `every`.
    #[serde(with = "stallwatch_proto::duration::serde_human")]
    pub duration: Duration,
    /// Emulate a network on this probe's own traffic: a preset (`4g`, `3.5g`, `3g`, `edge`,
    /// `chrome-fast-4g`, `chrome-slow-4g`, `chrome-slow-3g`) or custom settings such as
    /// `"delay=100ms,jitter=20ms,loss=1%"`.
    #[serde(default)]
    pub emulate: Option<String>,
    /// Loss repair: `nack` (NACKs and keyframe requests, the default on `udp` and
    /// `quic-datagram`) or `none` (the raw stream). quic-stream has no application repair
    /// (QUIC retransmits itself): only `none`, its default, is accepted there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repair: Option<Repair>,
}

fn default_profile() -> String {
    "720p30".to_owned()
}

/// What a probe does on its relay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModeKind {
    /// Publish a stream and view it back through the same relay.
    #[default]
    Loopback,
    /// Publish a stream that other agents view.
    Publish,
    /// View a stream another agent publishes.
    View,
}

impl ModeKind {
    /// The name used in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            ModeKind::Loopback => "loopback",
            ModeKind::Publish => "publish",
            ModeKind::View => "view",
        }
    }
}

/// The identity an agent's plan is chosen by (from its certificate, never from a request body).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AgentSelector {
    /// Agent name.
    pub name: String,
    /// Its region label.
    pub region: String,
    /// Its network type label.
    pub network_type: String,
}

impl PlanSection {
    /// Whether this plan applies to `agent`: every non-empty list must contain its value.
    pub fn matches(&self, agent: &AgentSelector) -> bool {
        let allows =
            |list: &[String], value: &str| list.is_empty() || list.iter().any(|v| v == value);
        allows(&self.agents, &agent.name)
            && allows(&self.regions, &agent.region)
            && allows(&self.network_types, &agent.network_type)
    }

    /// Whether some agent could be selected by both plans.
    pub(crate) fn overlaps(&self, other: &PlanSection) -> bool {
        let meet = |a: &[String], b: &[String]| {
            a.is_empty() || b.is_empty() || a.iter().any(|x| b.contains(x))
        };
        meet(&self.agents, &other.agents)
            && meet(&self.regions, &other.regions)
            && meet(&self.network_types, &other.network_types)
    }
}

impl ProbeSection {
    /// The proto form of the mode; `None` if `stream` does not fit `mode` (rejected at load).
    pub fn probe_mode(&self) -> Option<ProbeMode> {
        match (self.mode, &self.stream) {
            (ModeKind::Loopback, None) => Some(ProbeMode::Loopback),
            (ModeKind::Publish, Some(s)) => Some(ProbeMode::Publish { stream: s.clone() }),
            (ModeKind::View, Some(s)) => Some(ProbeMode::View { stream: s.clone() }),
            _ => None,
        }
    }
}

impl Config {
    /// The plans that apply to `agent`, in file order.
    pub fn matching_plans<'a>(
        &'a self,
        agent: &'a AgentSelector,
    ) -> impl Iterator<Item = &'a PlanSection> + 'a {
        self.plans.iter().filter(move |p| p.matches(agent))
    }

    /// The plan `agent` runs: the probes of every matching plan (file order), the shortest of
    /// their report intervals (the default if none matches), the relay of the first matching
    /// plan that runs one, and per-probe start offsets from [`start_offset`].
    ///
    /// A loaded config always yields a plan that passes [`Plan::validate`].
    pub fn plan_for(&self, agent: &AgentSelector, revision: u64) -> Plan {
        let mut plan = Plan {
            revision,
            report_interval: DEFAULT_REPORT_INTERVAL,
            relay: None,
            probes: Vec::new(),
        };
        let mut interval: Option<Duration> = None;
        for section in self.matching_plans(agent) {
            interval =
                Some(interval.map_or(section.report_interval, |i| i.min(section.report_interval)));
            if plan.relay.is_none() {
                plan.relay = section.run_relay.as_ref().map(|r| RelayPlan {
                    listen: r.listen.to_string(),
                    gop_cache: r.gop_cache,
                    udp_credential: None,
                    revoked_serials: Vec::new(),
                });
            }
            for probe in &section.probes {
                let Some(address) = self.relay(&probe.target).map(|r| r.address.clone()) else {
                    continue; // Rejected at load; unreachable for a loaded config.
                };
                let Some(mode) = probe.probe_mode() else { continue };
                plan.probes.push(ProbePlan {
                    name: probe.name.clone(),
                    target: probe.target.clone(),
                    address,
                    transport: probe.transport,
                    profile: probe.profile.clone(),
                    mode,
                    every: probe.every,
                    duration: probe.duration,
                    start_offset: start_offset(&agent.name, &probe.name, probe.every),
                    emulate: probe.emulate.clone(),
                    repair: probe.repair,
                    udp_credential: None,
                });
            }
        }
        plan.report_interval = interval.unwrap_or(DEFAULT_REPORT_INTERVAL);
        plan
    }

    /// [`Config::plan_for`] with the UDP credentials from `credentials`: the relay's own (for
    /// the `[[relays]]` entry it serves) and each probe's target's.
    pub fn plan_with_credentials(
        &self,
        agent: &AgentSelector,
        revision: u64,
        credentials: &RelayCredentials,
    ) -> Plan {
        let mut plan = self.plan_for(agent, revision);
        if let Some(relay) = &mut plan.relay {
            let served = self
                .matching_plans(agent)
                .find_map(|p| p.run_relay.as_ref())
                .and_then(|r| r.relay.clone())
                .unwrap_or_else(|| agent.name.clone());
            relay.udp_credential = Some(credentials.for_relay(&served));
        }
        for probe in &mut plan.probes {
            probe.udp_credential = Some(credentials.for_relay(&probe.target));
        }
        plan
    }

    /// The `[[relays]]` entry called `name`.
    pub fn relay(&self, name: &str) -> Option<&super::Relay> {
        self.relays.iter().find(|r| r.name == name)
    }

    /// A revision number for the plan-related sections (`[[relays]]` and `[[plans]]`): equal
    /// for equal settings however the file is formatted or commented, different (with
    /// overwhelming probability) after an edit, so agents notice a change. It fits in 53 bits,
    /// so it survives JSON readers that use doubles (browsers).
    pub fn plans_revision(&self) -> u64 {
        self.plans_revision_with(&[])
    }

    /// [`Config::plans_revision`] for plans that also carry `revoked_serials` to plan-run
    /// relays: a new list is a new revision, so long-polling relays get it. With none revoked
    /// it equals `plans_revision`.
    pub fn plans_revision_with(&self, revoked_serials: &[String]) -> u64 {
        // Serializing plain data to JSON cannot fail.
        let bytes = if revoked_serials.is_empty() {
            serde_json::to_vec(&(&self.relays, &self.plans))
        } else {
            serde_json::to_vec(&(&self.relays, &self.plans, revoked_serials))
        }
        .expect("plan sections always serialize");
        mix64(fnv1a(FNV_OFFSET, &bytes)) & ((1 << 53) - 1)
    }
}

/// The offset of a probe's first attempt within its period for one agent: a hash of the agent
/// and probe names modulo `every`, in whole milliseconds (nanoseconds if `every` is under 1 ms).
/// Deterministic across runs and versions (FNV-1a, not std's randomly keyed hasher); always
/// below `every` (zero if `every` is zero).
pub fn start_offset(agent: &str, probe: &str, every: Duration) -> Duration {
    let mut h = fnv1a(FNV_OFFSET, agent.as_bytes());
    h = fnv1a(h, &[0xff]); // Separator: ("ab", "c") and ("a", "bc") hash differently.
    h = mix64(fnv1a(h, probe.as_bytes()));
    let ms = every.as_millis();
    if ms > 0 {
        Duration::from_millis((u128::from(h) % ms) as u64)
    } else if every.as_nanos() > 0 {
        Duration::from_nanos((u128::from(h) % every.as_nanos()) as u64)
    } else {
        Duration::ZERO
    }
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv1a(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// MurmurHash3's 64-bit finalizer: FNV's low bits are weak, and a modulo uses them.
fn mix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}
