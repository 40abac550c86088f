//! [`Cohort`]: the one type that names a cohort, in the store, the batch delta and the series.

/// A cohort: the labels history and series are kept by. `region` and `network_type` come
/// from the agent's certificate, `transport` and `target` from the report series' labels
/// (`""` when absent). There is no agent label: a cohort merges every agent that shares these
/// four.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cohort {
    /// Agent region, from its certificate.
    pub region: String,
    /// Agent network type, from its certificate.
    pub network_type: String,
    /// Transport (`quic-stream`, `quic-datagram`, `udp`), from the series labels.
    pub transport: String,
    /// Relay or endpoint name, from the series labels.
    pub target: String,
}

impl Cohort {
    /// A cohort from its four label values.
    pub fn new(region: &str, network_type: &str, transport: &str, target: &str) -> Self {
        Cohort {
            region: region.to_owned(),
            network_type: network_type.to_owned(),
            transport: transport.to_owned(),
            target: target.to_owned(),
        }
    }

    /// Whether both series labels are present; the exported series skip cohorts without.
    pub fn has_series_labels(&self) -> bool {
        !self.transport.is_empty() && !self.target.is_empty()
    }
}
