//! [`SeriesLabels`]: the labels of one report series, typed. On the wire they are a JSON
//! object of strings, `{"probe":..,"repair":..,"role":..,"target":..,"transport":..}`, the
//! keys in that (sorted) order, as agents have always sent them.
//!
//! Reading a label object ([`SeriesLabels::from_wire`]) refuses, naming the label:
//! - a key that is not one of [`SeriesLabels::KEYS`] (a newer agent's label: the collector
//!   would otherwise drop it unseen; refused, the agent keeps the report until the collector
//!   knows the label);
//! - a missing `probe`, `role`, `target` or `transport` (`repair` may be missing: an agent
//!   older than the label, docs/metrics.md section 18.1);
//! - a value outside its label's set, and an empty `target` (it names the cohort).
//!
//! Key names and value lengths are checked before, on the raw object
//! ([`crate::report::decode_report`]), so a refusal never echoes an unbounded value.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;
use thiserror::Error;

use crate::control::Role;
use crate::plan::{Repair, Transport};

/// The labels of one report series. Field order is the wire's key order (sorted, as the
/// agent's label maps were), so the JSON is byte for byte what agents sent before the labels
/// were typed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct SeriesLabels {
    /// Probe name from the plan.
    pub probe: String,
    /// The viewer's loss repair (and the publisher's answering it); `None`: an agent older
    /// than the label (the collector reads it as docs/metrics.md section 18.1 says). Part of
    /// the collector's cohort, so repaired and unrepaired figures never merge.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repair: Option<Repair>,
    /// Publisher or viewer.
    pub role: Role,
    /// The relay probed (its label from the plan); never empty.
    pub target: String,
    /// How media was carried.
    pub transport: Transport,
}

/// What is wrong with one label of a series.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LabelProblem {
    /// The key is not one of [`SeriesLabels::KEYS`].
    #[error("not a series label (known: probe, repair, role, target, transport)")]
    Unknown,
    /// A required label is absent.
    #[error("missing: expected {allowed}")]
    Missing {
        /// What the label may hold.
        allowed: &'static str,
    },
    /// The value is outside the label's set.
    #[error("value {value:?} is not allowed: expected {allowed}")]
    NotAllowed {
        /// The value sent.
        value: String,
        /// What the label may hold.
        allowed: &'static str,
    },
}

/// A label object that is not a [`SeriesLabels`]: which label, and why.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("label {label:?}: {problem}")]
pub struct LabelError {
    /// The label's key.
    pub label: String,
    /// What is wrong with it.
    pub problem: LabelProblem,
}

/// What `transport` may hold (checked against [`Transport::ALL`] by a test).
pub const TRANSPORT_VALUES: &str = "one of quic-stream, quic-datagram, udp";
/// What `repair` may hold (checked against [`Repair::ALL`] by a test).
pub const REPAIR_VALUES: &str = "one of none, nack";
/// What `role` may hold (checked against [`Role::ALL`] by a test).
pub const ROLE_VALUES: &str = "one of publisher, viewer";
const TARGET_VALUES: &str = "a non-empty relay name";
const PROBE_VALUES: &str = "a probe name";

impl SeriesLabels {
    /// Every label key, in wire order.
    pub const KEYS: [&'static str; 5] = ["probe", "repair", "role", "target", "transport"];

    /// The labels of a series from an agent of this build, which always says its repair mode.
    pub fn new(
        probe: impl Into<String>,
        transport: Transport,
        repair: Repair,
        target: impl Into<String>,
        role: Role,
    ) -> Self {
        SeriesLabels {
            probe: probe.into(),
            repair: Some(repair),
            role,
            target: target.into(),
            transport,
        }
    }

    /// Reads a label object as sent; see the module docs for what is refused.
    pub fn from_wire(mut wire: BTreeMap<String, String>) -> Result<Self, LabelError> {
        let mut take = |label: &str, allowed: &'static str| {
            wire.remove(label).ok_or_else(|| LabelError {
                label: label.to_owned(),
                problem: LabelProblem::Missing { allowed },
            })
        };
        let probe = take("probe", PROBE_VALUES)?;
        let transport = take("transport", TRANSPORT_VALUES)?;
        let target = take("target", TARGET_VALUES)?;
        let role = take("role", ROLE_VALUES)?;
        let repair = wire.remove("repair");
        if let Some(label) = wire.into_keys().next() {
            return Err(LabelError { label, problem: LabelProblem::Unknown });
        }
        let not_allowed = |label: &str, value: String, allowed| LabelError {
            label: label.to_owned(),
            problem: LabelProblem::NotAllowed { value, allowed },
        };
        let transport = match Transport::ALL.into_iter().find(|t| t.as_str() == transport) {
            Some(t) => t,
            None => return Err(not_allowed("transport", transport, TRANSPORT_VALUES)),
        };
        let repair = match repair {
            None => None,
            Some(value) => match Repair::ALL.into_iter().find(|r| r.name() == value) {
                Some(r) => Some(r),
                None => return Err(not_allowed("repair", value, REPAIR_VALUES)),
            },
        };
        let role = match Role::ALL.into_iter().find(|r| r.as_str() == role) {
            Some(r) => r,
            None => return Err(not_allowed("role", role, ROLE_VALUES)),
        };
        if target.is_empty() {
            return Err(not_allowed("target", target, TARGET_VALUES));
        }
        Ok(SeriesLabels { probe, repair, role, target, transport })
    }
}

/// `{probe="p1", repair="nack", role="viewer", target="relay-1", transport="udp"}`, for
/// error messages and logs (`repair` left out when absent, as on the wire).
impl fmt::Display for SeriesLabels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{{probe={:?}, ", self.probe)?;
        if let Some(repair) = self.repair {
            write!(f, "repair={:?}, ", repair.name())?;
        }
        write!(
            f,
            "role={:?}, target={:?}, transport={:?}}}",
            self.role.as_str(),
            self.target,
            self.transport.as_str()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|&(k, v)| (k.to_owned(), v.to_owned())).collect()
    }

    const FULL: [(&str, &str); 5] = [
        ("probe", "sea-udp"),
        ("transport", "udp"),
        ("repair", "nack"),
        ("target", "relay-1"),
        ("role", "viewer"),
    ];

    #[test]
    fn json_is_the_label_map_agents_sent() {
        let typed =
            SeriesLabels::new("sea-udp", Transport::Udp, Repair::Nack, "relay-1", Role::Viewer);
        let expected = r#"{"probe":"sea-udp","repair":"nack","role":"viewer","target":"relay-1","transport":"udp"}"#;
        assert_eq!(serde_json::to_string(&typed).unwrap(), expected);
        assert_eq!(
            typed.to_string(),
            r#"{probe="sea-udp", repair="nack", role="viewer", target="relay-1", transport="udp"}"#
        );
        assert_eq!(serde_json::to_string(&wire(&FULL)).unwrap(), expected);
        assert_eq!(SeriesLabels::from_wire(wire(&FULL)), Ok(typed.clone()));
        // An agent older than `repair` left it out; it is still left out when written back.
        let old = SeriesLabels { repair: None, ..typed };
        let old_json = serde_json::to_string(&old).unwrap();
        assert_eq!(
            old_json,
            r#"{"probe":"sea-udp","role":"viewer","target":"relay-1","transport":"udp"}"#
        );
        let without_repair: BTreeMap<String, String> = serde_json::from_str(&old_json).unwrap();
        assert_eq!(SeriesLabels::from_wire(without_repair), Ok(old));
    }

    #[test]
    fn every_value_of_every_enum_round_trips() {
        for transport in Transport::ALL {
            for repair in Repair::ALL {
                for role in Role::ALL {
                    let l = SeriesLabels::new("p", transport, repair, "t", role);
                    let map: BTreeMap<String, String> =
                        serde_json::from_str(&serde_json::to_string(&l).unwrap()).unwrap();
                    assert_eq!(map["transport"], transport.as_str());
                    assert_eq!(map["repair"], repair.name());
                    assert_eq!(map["role"], role.as_str());
                    assert_eq!(SeriesLabels::from_wire(map), Ok(l));
                }
            }
        }
    }

    #[test]
    fn the_allowed_lists_name_every_value() {
        let list = |names: Vec<&str>| format!("one of {}", names.join(", "));
        assert_eq!(TRANSPORT_VALUES, list(Transport::ALL.map(Transport::as_str).to_vec()));
        assert_eq!(REPAIR_VALUES, list(Repair::ALL.map(Repair::name).to_vec()));
        assert_eq!(ROLE_VALUES, list(Role::ALL.map(Role::as_str).to_vec()));
        let keys = LabelProblem::Unknown.to_string();
        assert!(keys.contains(&SeriesLabels::KEYS.join(", ")), "{keys}");
    }

    #[test]
    fn bad_objects_are_refused_naming_the_label() {
        let with = |key: &str, value: Option<&str>| {
            let mut w = wire(&FULL);
            match value {
                Some(v) => w.insert(key.to_owned(), v.to_owned()),
                None => w.remove(key),
            };
            SeriesLabels::from_wire(w).unwrap_err()
        };
        let e = with("transport", Some("quic"));
        assert_eq!(e.label, "transport");
        assert_eq!(
            e.to_string(),
            "label \"transport\": value \"quic\" is not allowed: expected one of quic-stream, \
             quic-datagram, udp"
        );
        let e = with("transport", None);
        assert_eq!(
            e,
            LabelError {
                label: "transport".into(),
                problem: LabelProblem::Missing { allowed: TRANSPORT_VALUES }
            }
        );
        let e = with("colour", Some("red"));
        assert_eq!((e.label.as_str(), e.problem), ("colour", LabelProblem::Unknown));
        for (key, value) in [("repair", "fec"), ("role", "relay"), ("target", "")] {
            let e = with(key, Some(value));
            assert_eq!(e.label, key);
            assert!(
                matches!(&e.problem, LabelProblem::NotAllowed { value: v, .. } if v == value),
                "{e}"
            );
        }
        for key in ["probe", "role", "target"] {
            assert!(matches!(with(key, None).problem, LabelProblem::Missing { .. }), "{key}");
        }
    }
}
