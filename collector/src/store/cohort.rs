//! [`Cohort`]: the one type that names a cohort, in the store, the batch delta and the series.

/// A cohort: the labels history and series are kept by. `region` and `network_type` come
/// from the agent's certificate, `transport`, `repair` and `target` from the report series'
/// labels (`""` when absent, except `repair`: [`repair_when_unlabelled`]). There is no agent
/// label: a cohort merges every agent that shares these five. `repair` is in it so repaired
/// and unrepaired figures never merge (docs/metrics.md section 18.1).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cohort {
    /// Agent region, from its certificate.
    pub region: String,
    /// Agent network type, from its certificate.
    pub network_type: String,
    /// Transport (`quic-stream`, `quic-datagram`, `udp`), from the series labels.
    pub transport: String,
    /// Repair mode (`nack`, `none`; `unknown` for data from before the label), from the
    /// series labels.
    pub repair: String,
    /// Relay or endpoint name, from the series labels.
    pub target: String,
}

/// The repair mode of data that carries no `repair` label: reports from agents older than
/// the label and store rows written before it. quic-stream never had application repair, so
/// `none`; on udp and quic-datagram some such agents repaired and some did not, under one
/// version string, so `unknown` (kept apart from both modes rather than guessed).
pub fn repair_when_unlabelled(transport: &str) -> &'static str {
    if transport == "quic-stream" { "none" } else { UNKNOWN_REPAIR }
}

/// The `repair` value of unlabelled udp and quic-datagram data.
pub const UNKNOWN_REPAIR: &str = "unknown";

impl Cohort {
    /// A cohort from its label values, with the repair mode unlabelled data has
    /// ([`repair_when_unlabelled`]); [`Cohort::with_repair`] sets another.
    pub fn new(region: &str, network_type: &str, transport: &str, target: &str) -> Self {
        Cohort {
            region: region.to_owned(),
            network_type: network_type.to_owned(),
            transport: transport.to_owned(),
            repair: repair_when_unlabelled(transport).to_owned(),
            target: target.to_owned(),
        }
    }

    /// This cohort with repair mode `repair`.
    pub fn with_repair(mut self, repair: &str) -> Self {
        repair.clone_into(&mut self.repair);
        self
    }

    /// Whether both series labels are present; the exported series skip cohorts without.
    /// Only history stored before ingest refused such series can lack them.
    pub fn has_series_labels(&self) -> bool {
        !self.transport.is_empty() && !self.target.is_empty()
    }
}
