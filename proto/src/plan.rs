//! The plan an agent fetches from the collector: which probes to run, where and how often,
//! and whether to run a relay. JSON on the wire; durations are human strings (`"10s"`).

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::control::validate_stream_name;
use crate::duration::format_duration;

/// Default report interval when the plan leaves it out.
pub const DEFAULT_REPORT_INTERVAL: Duration = Duration::from_secs(10);
/// Stream profiles an agent can send and view (`ProbePlan::profile`); `stallwatch-measure`
/// defines each one and its tests check that it accepts exactly these.
pub const PROFILE_NAMES: &[&str] = &["360p15", "360p30", "720p30", "1080p30", "audio"];

/// The published network emulation presets (`ProbePlan::emulate`, `--emulate`), in the order
/// of DESIGN.md's table; `stallwatch-measure` defines their figures.
pub const EMULATION_PRESETS: &[&str] =
    &["4g", "3.5g", "3g", "edge", "chrome-fast-4g", "chrome-slow-4g", "chrome-slow-3g"];

/// Other names an emulation preset goes by: `none` (no emulation) and `2g` (`edge`).
pub const EMULATION_PRESET_ALIASES: &[&str] = &["none", "2g"];

/// Whether `name` is an emulation preset or alias (case-insensitive, as the agent reads it).
pub fn is_emulation_preset(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    EMULATION_PRESETS.iter().chain(EMULATION_PRESET_ALIASES).any(|p| *p == name)
}

/// Largest encoded plan an agent accepts from the collector (or from its plan cache).
pub const MAX_PLAN_BYTES: usize = 1024 * 1024;

/// How a probe carries media.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Transport {
    /// MoQ-like: a QUIC stream per GOP, an object per frame.
    QuicStream,
    /// RFC 9221 QUIC datagrams, frames split to the current max datagram size.
    QuicDatagram,
    /// RTP-like packets on a plain UDP socket, behind a handshake token.
    Udp,
}

impl Transport {
    /// Every transport, in a stable order.
    pub const ALL: [Transport; 3] =
        [Transport::QuicStream, Transport::QuicDatagram, Transport::Udp];

    /// The name used in plans, labels and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::QuicStream => "quic-stream",
            Transport::QuicDatagram => "quic-datagram",
            Transport::Udp => "udp",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A transport name that is not one of [`Transport::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("unknown transport {0:?} (expected quic-stream, quic-datagram or udp)")]
pub struct ParseTransportError(pub String);

impl FromStr for Transport {
    type Err = ParseTransportError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Transport::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| ParseTransportError(s.to_owned()))
    }
}

/// Whether a viewer repairs loss: a plan field, the `repair` label of every series, and
/// `probe --repair`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Repair {
    /// No repair: the raw stream, as before repair existed (kept for comparison).
    #[default]
    None,
    /// Generic NACK for missing packets and keyframe requests for broken GOPs.
    Nack,
}

impl Repair {
    /// Every mode, in a stable order.
    pub const ALL: [Repair; 2] = [Repair::None, Repair::Nack];

    /// The label value, `none` or `nack`.
    pub fn name(self) -> &'static str {
        match self {
            Repair::None => "none",
            Repair::Nack => "nack",
        }
    }

    /// The mode a probe over `transport` runs when its plan asks for `asked`: by default
    /// `nack` on udp and quic-datagram; `none` on quic-stream, whose losses QUIC itself
    /// retransmits (a plan that asks for `nack` there is refused by [`Plan::validate`]).
    pub fn for_transport(transport: Transport, asked: Option<Repair>) -> Repair {
        match transport {
            Transport::QuicStream => Repair::None,
            _ => asked.unwrap_or(Repair::Nack),
        }
    }
}

impl fmt::Display for Repair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Repair {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" => Ok(Repair::None),
            "nack" => Ok(Repair::Nack),
            _ => Err(format!("unknown repair mode {s:?}; expected nack or none")),
        }
    }
}

/// Everything one agent should do until the next plan revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// Plan revision; agents echo it in their reports.
    pub revision: u64,
    /// How often the agent sends an interval report.
    #[serde(with = "crate::duration::serde_human", default = "default_report_interval")]
    pub report_interval: Duration,
    /// Run a relay on this agent, if set.
    #[serde(default)]
    pub relay: Option<RelayPlan>,
    /// Probes to run.
    #[serde(default)]
    pub probes: Vec<ProbePlan>,
}

fn default_report_interval() -> Duration {
    DEFAULT_REPORT_INTERVAL
}

/// A relay the agent runs for other agents' probes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayPlan {
    /// QUIC listen address, `host:port`; plain UDP listens on the next port (docs/protocol.md).
    pub listen: String,
    /// Keep the last GOP per stream so new viewers start at once, as real live servers do.
    #[serde(default = "default_true")]
    pub gop_cache: bool,
    /// The relay's plain UDP credential: clients must prove it in their tokened hello
    /// (docs/protocol.md, "Session"). Sent only when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udp_credential: Option<UdpCredential>,
    /// Serial numbers (lowercase hex) of agent certificates the collector has revoked: the
    /// relay refuses QUIC clients that present one. Sent only when any; a new list reaches a
    /// running relay without restarting it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revoked_serials: Vec<String>,
}

/// A certificate serial number in the one form agent and collector compare: lowercase hex
/// without colons, whitespace or sign padding (`00` before a high bit). `revoked.json`, the
/// collector's lists and [`RelayPlan::revoked_serials`] hold it; relays normalize what they
/// read from a client certificate the same way.
pub fn normalize_serial(serial: &str) -> String {
    let mut s: String = serial
        .chars()
        .filter(|c| *c != ':' && !c.is_whitespace())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    while s.len() > 2 && s.starts_with("00") {
        s.drain(..2);
    }
    s
}

/// A relay's plain UDP credential (32 bytes; 64 lowercase hex digits in JSON). Its `Debug`
/// prints no bytes, so plans can be logged without leaking it.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UdpCredential(pub [u8; 32]);

impl fmt::Debug for UdpCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UdpCredential(..)")
    }
}

impl From<UdpCredential> for String {
    fn from(c: UdpCredential) -> String {
        c.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl TryFrom<String> for UdpCredential {
    type Error = &'static str;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        const BAD: &str = "a UDP credential is 64 hex digits";
        if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(BAD);
        }
        let mut out = [0u8; 32];
        for (byte, pair) in out.iter_mut().zip(s.as_bytes().chunks(2)) {
            let pair = std::str::from_utf8(pair).map_err(|_| BAD)?;
            *byte = u8::from_str_radix(pair, 16).map_err(|_| BAD)?;
        }
        Ok(UdpCredential(out))
    }
}

fn default_true() -> bool {
    true
}

/// One recurring probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbePlan {
    /// Probe name, unique within the plan; a label on its metrics.
    pub name: String,
    /// Label of the relay probed (e.g. its region), a label on the metrics.
    pub target: String,
    /// The relay's QUIC address, `host:port`; its plain UDP port is the next one.
    pub address: String,
    /// How media is carried.
    pub transport: Transport,
    /// Stream profile, e.g. `"720p30"`.
    pub profile: String,
    /// Publish, view, or both.
    pub mode: ProbeMode,
    /// Start an attempt this often.
    #[serde(with = "crate::duration::serde_human")]
    pub every: Duration,
    /// Length of each attempt; at most `every`.
    #[serde(with = "crate::duration::serde_human")]
    pub duration: Duration,
    /// Delay of the first attempt within each `every` period, to spread probes out.
    #[serde(with = "crate::duration::serde_human", default)]
    pub start_offset: Duration,
    /// Network emulation profile name applied to this probe, if any.
    #[serde(default)]
    pub emulate: Option<String>,
    /// Loss repair; left out: [`Repair::for_transport`]'s default. Sent only when set, so
    /// agents older than the field still accept plans that do not set it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repair: Option<Repair>,
    /// The target relay's plain UDP credential, if it runs from a plan. Sent only when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udp_credential: Option<UdpCredential>,
}

/// What a probe does on the relay.
///
/// JSON: `{"kind": "loopback"}`, `{"kind": "publish", "stream": "s"}` or
/// `{"kind": "view", "stream": "s"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "ModeRepr", into = "ModeRepr")]
pub enum ProbeMode {
    /// Publish a stream and view it back through the same relay.
    Loopback,
    /// Publish a stream that other agents view.
    Publish {
        /// Stream name (control stream name rules).
        stream: String,
    },
    /// View a stream another agent publishes.
    View {
        /// Stream name (control stream name rules).
        stream: String,
    },
}

/// Wire form of [`ProbeMode`]. serde's internally tagged enums ignore unknown fields on unit
/// variants (`{"kind": "loopback", "strem": "x"}` would pass), so the tag is parsed by hand.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModeRepr {
    kind: ModeKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stream: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum ModeKind {
    Loopback,
    Publish,
    View,
}

impl TryFrom<ModeRepr> for ProbeMode {
    type Error = &'static str;

    fn try_from(r: ModeRepr) -> Result<Self, Self::Error> {
        match (r.kind, r.stream) {
            (ModeKind::Loopback, None) => Ok(ProbeMode::Loopback),
            (ModeKind::Loopback, Some(_)) => Err("mode \"loopback\" takes no stream"),
            (ModeKind::Publish, Some(stream)) => Ok(ProbeMode::Publish { stream }),
            (ModeKind::View, Some(stream)) => Ok(ProbeMode::View { stream }),
            (ModeKind::Publish | ModeKind::View, None) => Err("mode needs a stream"),
        }
    }
}

impl From<ProbeMode> for ModeRepr {
    fn from(m: ProbeMode) -> Self {
        match m {
            ProbeMode::Loopback => ModeRepr { kind: ModeKind::Loopback, stream: None },
            ProbeMode::Publish { stream } => {
                ModeRepr { kind: ModeKind::Publish, stream: Some(stream) }
            }
            ProbeMode::View { stream } => ModeRepr { kind: ModeKind::View, stream: Some(stream) },
        }
    }
}

/// Why a plan was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PlanError {
    /// The encoded plan is over the size cap.
    #[error("plan is {len} bytes, over the {max}-byte cap")]
    TooLarge {
        /// Bytes received.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// Not valid JSON, or not the plan schema.
    #[error("malformed plan json: {detail}")]
    MalformedJson {
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column of the problem.
        column: usize,
        /// serde_json's message, with the line and column.
        detail: String,
    },
    /// A report interval of zero.
    #[error("report_interval must be greater than 0s")]
    ZeroReportInterval,
    /// A probe with an empty name.
    #[error("probe {index} has an empty name")]
    EmptyName {
        /// Index of the probe.
        index: usize,
    },
    /// Two probes with one name.
    #[error("probe name {0:?} is used more than once")]
    DuplicateName(String),
    /// A probe with a zero duration.
    #[error("probe {probe:?}: duration must be greater than 0s")]
    ZeroDuration {
        /// Probe name.
        probe: String,
    },
    /// A probe whose attempts would overlap.
    #[error("probe {probe:?}: every ({every}) must be at least duration ({duration})")]
    EveryShorterThanDuration {
        /// Probe name.
        probe: String,
        /// `every`, formatted.
        every: String,
        /// `duration`, formatted.
        duration: String,
    },
    /// A start offset that does not fall inside the period.
    #[error("probe {probe:?}: start_offset ({start_offset}) must be less than every ({every})")]
    StartOffset {
        /// Probe name.
        probe: String,
        /// `start_offset`, formatted.
        start_offset: String,
        /// `every`, formatted.
        every: String,
    },
    /// `nack` asked for on quic-stream, which has no application-level repair.
    #[error(
        "probe {probe:?}: repair \"nack\" is not available on quic-stream (QUIC retransmits \
         lost stream data itself); leave repair out or set \"none\""
    )]
    NackOnQuicStream {
        /// Probe name.
        probe: String,
    },
    /// A stream profile outside [`PROFILE_NAMES`]: the agent could not send or view it.
    #[error("probe {probe:?}: unknown profile {profile:?}, expected one of {}", PROFILE_NAMES.join(", "))]
    UnknownProfile {
        /// Probe name.
        probe: String,
        /// The profile asked for.
        profile: String,
    },
    /// An emulation preset outside [`EMULATION_PRESETS`] and its aliases that is not custom
    /// settings either (those hold a `=`, e.g. `delay=100ms,loss=1%`).
    #[error(
        "probe {probe:?}: unknown emulation preset {preset:?}, expected one of {} or custom \
         settings such as \"delay=100ms,loss=1%\"",
        EMULATION_PRESETS.iter().chain(EMULATION_PRESET_ALIASES).copied().collect::<Vec<_>>().join(", ")
    )]
    UnknownEmulationPreset {
        /// Probe name.
        probe: String,
        /// The preset asked for.
        preset: String,
    },
    /// A publish or view stream name the relay would reject.
    #[error("probe {probe:?}: {source}")]
    StreamName {
        /// Probe name.
        probe: String,
        /// Why the name is bad.
        source: crate::control::ControlError,
    },
}

impl Plan {
    /// Checks what the schema cannot: positive durations, `every >= duration`,
    /// `start_offset < every`, unique probe names, valid stream names, no `nack` on
    /// quic-stream, known profiles and emulation presets (the collector checks its config
    /// against the same lists, so both sides refuse the same names).
    pub fn validate(&self) -> Result<(), PlanError> {
        if self.report_interval.is_zero() {
            return Err(PlanError::ZeroReportInterval);
        }
        let mut names = HashSet::new();
        for (index, p) in self.probes.iter().enumerate() {
            if p.name.is_empty() {
                return Err(PlanError::EmptyName { index });
            }
            if !names.insert(p.name.as_str()) {
                return Err(PlanError::DuplicateName(p.name.clone()));
            }
            if p.duration.is_zero() {
                return Err(PlanError::ZeroDuration { probe: p.name.clone() });
            }
            if p.every < p.duration {
                return Err(PlanError::EveryShorterThanDuration {
                    probe: p.name.clone(),
                    every: format_duration(p.every),
                    duration: format_duration(p.duration),
                });
            }
            if p.start_offset >= p.every {
                return Err(PlanError::StartOffset {
                    probe: p.name.clone(),
                    start_offset: format_duration(p.start_offset),
                    every: format_duration(p.every),
                });
            }
            if p.transport == Transport::QuicStream && p.repair == Some(Repair::Nack) {
                return Err(PlanError::NackOnQuicStream { probe: p.name.clone() });
            }
            if !PROFILE_NAMES.contains(&p.profile.as_str()) {
                return Err(PlanError::UnknownProfile {
                    probe: p.name.clone(),
                    profile: p.profile.clone(),
                });
            }
            // Custom settings (`delay=100ms,...`) are parsed by the agent when it applies them.
            if let Some(preset) = &p.emulate
                && !preset.contains('=')
                && !is_emulation_preset(preset)
            {
                return Err(PlanError::UnknownEmulationPreset {
                    probe: p.name.clone(),
                    preset: preset.clone(),
                });
            }
            if let ProbeMode::Publish { stream } | ProbeMode::View { stream } = &p.mode {
                validate_stream_name(stream)
                    .map_err(|source| PlanError::StreamName { probe: p.name.clone(), source })?;
            }
        }
        Ok(())
    }
}

/// Encodes a plan as pretty JSON (plans are small and people read them).
pub fn encode_plan(plan: &Plan) -> Vec<u8> {
    // Every field serializes infallibly.
    serde_json::to_vec_pretty(plan).expect("plans always serialize")
}

/// Decodes a plan of at most `max_bytes` and [validates](Plan::validate) it.
pub fn decode_plan(bytes: &[u8], max_bytes: usize) -> Result<Plan, PlanError> {
    if bytes.len() > max_bytes {
        return Err(PlanError::TooLarge { len: bytes.len(), max: max_bytes });
    }
    let plan: Plan = serde_json::from_slice(bytes).map_err(|e| PlanError::MalformedJson {
        line: e.line(),
        column: e.column(),
        detail: e.to_string(),
    })?;
    plan.validate()?;
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 64 * 1024;

    fn probe(name: &str) -> ProbePlan {
        ProbePlan {
            name: name.into(),
            target: "fra".into(),
            address: "relay.fra.example:4433".into(),
            transport: Transport::QuicDatagram,
            profile: "720p30".into(),
            mode: ProbeMode::View { stream: "fra-720p30".into() },
            every: Duration::from_secs(60),
            duration: Duration::from_secs(20),
            start_offset: Duration::from_secs(5),
            emulate: Some("chrome-slow-4g".into()),
            repair: Some(Repair::None),
            udp_credential: None,
        }
    }

    #[test]
    fn a_udp_credential_is_64_hex_digits_in_json_and_never_in_debug() {
        let c = UdpCredential([0xab; 32]);
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(json, format!("\"{}\"", "ab".repeat(32)));
        assert_eq!(serde_json::from_str::<UdpCredential>(&json).unwrap(), c);
        assert_eq!(format!("{c:?}"), "UdpCredential(..)");
        for bad in
            ["\"ab\"", &format!("\"+b{}\"", "ab".repeat(31)), &format!("\"{}\"", "zz".repeat(32))]
        {
            assert!(serde_json::from_str::<UdpCredential>(bad).is_err(), "{bad}");
        }
    }

    fn sample() -> Plan {
        Plan {
            revision: 7,
            report_interval: Duration::from_secs(10),
            relay: Some(RelayPlan {
                listen: "0.0.0.0:4433".into(),
                gop_cache: false,
                udp_credential: None,
                revoked_serials: vec!["1f".into()],
            }),
            probes: vec![probe("a"), ProbePlan { mode: ProbeMode::Loopback, ..probe("b") }],
        }
    }

    #[test]
    fn round_trip() {
        let p = sample();
        let bytes = encode_plan(&p);
        let json = std::str::from_utf8(&bytes).unwrap();
        assert!(json.contains("\"every\": \"1m\""), "{json}");
        assert!(json.contains("\"kind\": \"view\""), "{json}");
        assert!(json.contains("\"transport\": \"quic-datagram\""), "{json}");
        assert_eq!(decode_plan(&bytes, MAX), Ok(p));
    }

    #[test]
    fn defaults_apply() {
        let json = br#"{"revision": 1, "relay": {"listen": ":4433"}, "probes": [{
            "name": "p", "target": "t", "address": "h:1", "transport": "udp",
            "profile": "audio", "mode": {"kind": "loopback"}, "every": "30s", "duration": "10s"}]}"#;
        let p = decode_plan(json, MAX).unwrap();
        assert_eq!(p.report_interval, DEFAULT_REPORT_INTERVAL);
        assert!(p.relay.clone().unwrap().gop_cache);
        assert_eq!(p.probes[0].start_offset, Duration::ZERO);
        assert_eq!(p.probes[0].emulate, None);
        assert_eq!(p.probes[0].repair, None);
        // Left out, it is not sent either: agents without the field accept the plan.
        assert!(!String::from_utf8(encode_plan(&p)).unwrap().contains("repair"));
    }

    #[test]
    fn unknown_profiles_and_emulation_presets_are_refused_naming_probe_value_and_choices() {
        let plan = |profile: &str, emulate: &str| {
            format!(
                r#"{{"revision": 1, "probes": [{{"name": "p", "target": "t", "address": "h:1",
                "transport": "udp", "profile": "{profile}", "mode": {{"kind": "loopback"}},
                "every": "1s", "duration": "1s", "emulate": {emulate}}}]}}"#
            )
        };
        for profile in PROFILE_NAMES {
            assert!(decode_plan(plan(profile, "null").as_bytes(), MAX).is_ok(), "{profile}");
        }
        let e = decode_plan(plan("4k60", "null").as_bytes(), MAX).unwrap_err();
        assert_eq!(e, PlanError::UnknownProfile { probe: "p".into(), profile: "4k60".into() });
        let text = e.to_string();
        assert!(text.contains("\"p\"") && text.contains("\"4k60\""), "{text}");
        assert!(PROFILE_NAMES.iter().all(|n| text.contains(n)), "{text}");

        // Presets and aliases in any case, and custom settings, pass.
        for preset in EMULATION_PRESETS.iter().chain(EMULATION_PRESET_ALIASES) {
            let quoted = format!("\"{}\"", preset.to_ascii_uppercase());
            assert!(decode_plan(plan("audio", &quoted).as_bytes(), MAX).is_ok(), "{preset}");
        }
        let custom = plan("audio", r#""delay=100ms,loss=1%""#);
        assert!(decode_plan(custom.as_bytes(), MAX).is_ok());
        let e = decode_plan(plan("audio", r#""lte""#).as_bytes(), MAX).unwrap_err();
        assert_eq!(
            e,
            PlanError::UnknownEmulationPreset { probe: "p".into(), preset: "lte".into() }
        );
        let text = e.to_string();
        assert!(text.contains("\"p\"") && text.contains("\"lte\""), "{text}");
        assert!(EMULATION_PRESETS.iter().all(|n| text.contains(n)), "{text}");
    }

    #[test]
    fn repair_is_parsed_and_nack_on_quic_stream_is_refused() {
        let plan = |transport: &str, repair: &str| {
            format!(
                r#"{{"revision": 1, "probes": [{{"name": "p", "target": "t", "address": "h:1",
                "transport": "{transport}", "profile": "audio", "mode": {{"kind": "loopback"}},
                "every": "1s", "duration": "1s", "repair": "{repair}"}}]}}"#
            )
        };
        let p = decode_plan(plan("udp", "none").as_bytes(), MAX).unwrap();
        assert_eq!(p.probes[0].repair, Some(Repair::None));
        assert_eq!(Repair::for_transport(Transport::Udp, p.probes[0].repair), Repair::None);
        let p = decode_plan(plan("quic-stream", "none").as_bytes(), MAX).unwrap();
        assert_eq!(p.probes[0].repair, Some(Repair::None));
        assert_eq!(
            decode_plan(plan("quic-stream", "nack").as_bytes(), MAX),
            Err(PlanError::NackOnQuicStream { probe: "p".into() })
        );
        let e = decode_plan(plan("udp", "fec").as_bytes(), MAX).unwrap_err();
        assert!(matches!(e, PlanError::MalformedJson { .. }), "{e}");
        assert_eq!(Repair::for_transport(Transport::QuicDatagram, None), Repair::Nack);
        assert_eq!(Repair::for_transport(Transport::QuicStream, None), Repair::None);
        for r in Repair::ALL {
            assert_eq!(r.to_string().parse::<Repair>(), Ok(r));
            assert_eq!(serde_json::to_string(&r).unwrap(), format!("\"{r}\""));
        }
    }

    #[test]
    fn unknown_fields_are_rejected() {
        for json in [
            r#"{"revision": 1, "extra": 1}"#,
            r#"{"revision": 1, "relay": {"listen": ":1", "cache": true}}"#,
            r#"{"revision": 1, "probes": [{"name": "p", "target": "t", "address": "h:1",
                "transport": "udp", "profile": "x", "mode": {"kind": "view", "stream": "s",
                "x": 1}, "every": "1s", "duration": "1s"}]}"#,
            r#"{"revision": 1, "probes": [{"name": "p", "target": "t", "address": "h:1",
                "transport": "udp", "profile": "x", "mode": {"kind": "loopback", "x": 1},
                "every": "1s", "duration": "1s"}]}"#,
            r#"{"revision": 1, "probes": [{"name": "p", "target": "t", "address": "h:1",
                "transport": "udp", "profile": "x", "mode": {"kind": "loopback", "stream": "s"},
                "every": "1s", "duration": "1s"}]}"#,
            r#"{"revision": 1, "probes": [{"name": "p", "target": "t", "address": "h:1",
                "transport": "udp", "profile": "x", "mode": {"kind": "view"},
                "every": "1s", "duration": "1s"}]}"#,
            r#"{"revision": 1, "probes": [{"name": "p", "target": "t", "address": "h:1",
                "transport": "tcp", "profile": "x", "mode": {"kind": "loopback"},
                "every": "1s", "duration": "1s"}]}"#,
        ] {
            let e = decode_plan(json.as_bytes(), MAX).unwrap_err();
            assert!(matches!(e, PlanError::MalformedJson { .. }), "{json}: {e}");
        }
    }

    #[test]
    fn bad_durations_name_the_field_position() {
        let json = br#"{"revision": 1, "report_interval": "10 parsecs"}"#;
        let e = decode_plan(json, MAX).unwrap_err();
        assert!(e.to_string().contains("10 parsecs") && e.to_string().contains("column"), "{e}");
    }

    #[test]
    fn validate_rejects_inconsistent_probes() {
        let check = |f: &dyn Fn(&mut Plan)| {
            let mut p = sample();
            f(&mut p);
            p.validate().unwrap_err()
        };
        assert_eq!(check(&|p| p.report_interval = Duration::ZERO), PlanError::ZeroReportInterval);
        assert_eq!(check(&|p| p.probes[1].name = "a".into()), PlanError::DuplicateName("a".into()));
        assert!(matches!(
            check(&|p| p.probes[0].duration = Duration::ZERO),
            PlanError::ZeroDuration { .. }
        ));
        let e = check(&|p| p.probes[0].duration = Duration::from_secs(61));
        assert_eq!(e.to_string(), "probe \"a\": every (1m) must be at least duration (1m1s)");
        assert!(matches!(
            check(&|p| p.probes[0].start_offset = Duration::from_secs(60)),
            PlanError::StartOffset { .. }
        ));
        assert!(matches!(
            check(&|p| p.probes[0].mode = ProbeMode::Publish { stream: "has space".into() }),
            PlanError::StreamName { .. }
        ));
        assert_eq!(check(&|p| p.probes[0].name.clear()), PlanError::EmptyName { index: 0 });
        assert_eq!(
            decode_plan(&encode_plan(&sample()), 10),
            Err(PlanError::TooLarge { len: encode_plan(&sample()).len(), max: 10 })
        );
    }

    #[test]
    fn transport_names() {
        for t in Transport::ALL {
            assert_eq!(t.to_string().parse::<Transport>(), Ok(t));
            assert_eq!(serde_json::to_string(&t).unwrap(), format!("\"{t}\""));
        }
        assert_eq!("tcp".parse::<Transport>(), Err(ParseTransportError("tcp".into())));
    }
}
