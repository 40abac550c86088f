//! [`AgentFacts`]: the one record of what an agent last told the collector, updated in one
//! place ([`AgentFacts::absorb`], inside the store's ingest transaction; visible to the store
//! only) and read by the registry, the exported series and the fleet view.

use serde::Serialize;
use stallwatch_proto::report::Report;

use crate::pki::VerifiedAgent;

/// One agent: its certificate identity and what its reports said, the latest (by receive
/// time) winning. Serialized as the fleet view's agent entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentFacts {
    /// Agent name (certificate).
    pub name: String,
    /// Region (certificate).
    pub region: String,
    /// Network type (certificate).
    pub network_type: String,
    /// Agent build version.
    pub version: String,
    /// Plan revision the agent last ran.
    pub plan_revision: u64,
    /// Latest report received, unix ms (collector clock).
    pub last_report_unix_ms: u64,
    /// Sequence number of the latest report received.
    pub last_seq: u64,
    /// Reports waiting in the agent's spool when it sent the latest one.
    pub spool_depth: u64,
    /// Reports stored (duplicates not counted).
    pub reports: u64,
    /// First report stored, unix ms (collector clock).
    #[serde(skip)]
    pub first_seen_unix_ms: u64,
    /// End of the newest window reported, unix ms (agent clock): backfilled older reports do
    /// not move it back. `stallwatch_agent_last_report_timestamp_seconds`.
    #[serde(skip)]
    pub last_window_end_ms: u64,
}

impl AgentFacts {
    /// An agent with no report yet.
    pub(super) fn new(agent: &VerifiedAgent) -> Self {
        AgentFacts {
            name: agent.name().to_owned(),
            region: agent.region().to_owned(),
            network_type: agent.network_type().to_owned(),
            version: String::new(),
            plan_revision: 0,
            last_report_unix_ms: 0,
            last_seq: 0,
            spool_depth: 0,
            reports: 0,
            first_seen_unix_ms: u64::MAX,
            last_window_end_ms: 0,
        }
    }

    /// Takes in one stored report from `agent`, received at `received_unix_ms`: the report
    /// received last sets the identity, version, plan revision, sequence number and spool
    /// depth (a restarted agent whose numbering started over shows its new numbers).
    pub(super) fn absorb(&mut self, agent: &VerifiedAgent, report: &Report, received_unix_ms: u64) {
        if received_unix_ms >= self.last_report_unix_ms {
            set(&mut self.region, agent.region());
            set(&mut self.network_type, agent.network_type());
            set(&mut self.version, &report.agent_version);
            self.plan_revision = report.plan_revision;
            self.last_seq = report.seq;
            self.spool_depth = report.spool_depth;
            self.last_report_unix_ms = received_unix_ms;
        }
        self.first_seen_unix_ms = self.first_seen_unix_ms.min(received_unix_ms);
        self.last_window_end_ms = self.last_window_end_ms.max(report.window_end_ms);
        self.reports += 1;
    }
}

/// Replaces `slot` with `value` without reallocating when it is unchanged.
fn set(slot: &mut String, value: &str) {
    if slot != value {
        value.clone_into(slot);
    }
}
