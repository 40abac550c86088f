//! Checks the schema cannot express: references between sections, allow-lists, unique names,
//! duration orderings and ranges. Every problem names the path of the offending field, and
//! [`Locations`] turns it into a line.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use stallwatch_proto::control::validate_stream_name;
use stallwatch_proto::duration::format_duration;
use stallwatch_proto::plan::{
    EMULATION_PRESET_ALIASES, EMULATION_PRESETS, PROFILE_NAMES, Repair, Transport,
    is_emulation_preset,
};

use super::Config;
use super::Locations;
use super::error::Problem;
use super::plans::{ModeKind, ProbeSection};
use super::sections::{DEFAULT_NETWORK_TYPES, MAX_REPORT_BYTES, MIN_REPORT_BYTES};

/// Longest label value, in bytes.
const MAX_LABEL_LEN: usize = 64;

/// Collects problems, each located by its field path. Sections checked elsewhere (`alerts`)
/// add their own checks to it in their module.
pub(crate) struct Checker<'a> {
    locations: &'a Locations,
    pub(crate) problems: Vec<Problem>,
}

impl<'a> Checker<'a> {
    /// No problems yet; positions come from `locations`.
    pub(crate) fn new(locations: &'a Locations) -> Self {
        Checker { locations, problems: Vec::new() }
    }
}

impl Checker<'_> {
    pub(crate) fn problem(&mut self, path: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            origin: self.locations.origin().to_owned(),
            position: self.locations.position(path),
            path: path.to_owned(),
            message: message.into(),
        });
    }

    fn line(&self, path: &str) -> usize {
        self.locations.position(path).line
    }

    fn nonzero(&mut self, path: &str, d: Duration) {
        if d.is_zero() {
            self.problem(path, "must be greater than 0s");
        }
    }

    /// A label value: allowed characters and length.
    fn label_value(&mut self, path: &str, value: &str) -> bool {
        let ok = !value.is_empty()
            && value.len() <= MAX_LABEL_LEN
            && value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !ok {
            self.problem(
                path,
                format!(
                    "{value:?} is not a valid name (1 to {MAX_LABEL_LEN} characters from \
                     A-Z a-z 0-9 . _ -)"
                ),
            );
        }
        ok
    }

    /// An agent name or region, as certificates carry them (`ca issue-agent`): 1 to `max`
    /// characters from `a-z 0-9 -`. Anything else could never match an agent.
    fn agent_label(&mut self, path: &str, value: &str, max: usize) {
        let ok = (1..=max).contains(&value.len())
            && value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !ok {
            self.problem(
                path,
                format!(
                    "{value:?} can never match an agent (agent certificates carry 1 to {max} \
                     characters from a-z 0-9 -)"
                ),
            );
        }
    }

    /// Reports names seen twice, pointing at the second and naming the line of the first.
    /// `what` names the kind of name (`"plan name"`), or is empty for values of one list.
    fn unique<'n>(
        &mut self,
        what: &str,
        items: impl IntoIterator<Item = (String, &'n str)>,
        why: &str,
    ) {
        let mut seen: HashMap<&str, String> = HashMap::new();
        for (path, name) in items {
            if let Some(first) = seen.get(name) {
                let line = self.line(first);
                let message = if what.is_empty() {
                    format!("{name:?} is listed twice (first at line {line}: {first})")
                } else {
                    format!("{what} {name:?} is already used at line {line} ({first}){why}")
                };
                self.problem(&path, message);
            } else {
                seen.insert(name, path);
            }
        }
    }

    /// Every element of a selector list is in the allow-list named `allow_path`.
    fn subset(&mut self, path: &str, list: &[String], allowed: &[String], allow_path: &str) {
        for (i, v) in list.iter().enumerate() {
            if !allowed.contains(v) {
                self.problem(
                    &format!("{path}[{i}]"),
                    format!("{v:?} is not in {allow_path} ({})", allowed.join(", ")),
                );
            }
        }
    }
}

/// Checks `config`; the problems are in file order.
pub(crate) fn check(config: &Config, locations: &Locations) -> Vec<Problem> {
    let mut c = Checker::new(locations);
    listen(&mut c, config);
    storage(&mut c, config);
    ingest(&mut c, config);
    labels(&mut c, config);
    relays(&mut c, config);
    plans(&mut c, config);
    slo(&mut c, config);
    crate::reports::check_config(&config.reports, &config.labels, &mut |path, message| {
        c.problem(path, message)
    });
    c.problems.extend(config.alerts.check(&config.slo, locations));
    let mut problems = c.problems;
    problems.sort_by_key(|p| p.position);
    problems
}

fn listen(c: &mut Checker<'_>, config: &Config) {
    // Port 0 (the OS picks a free port, as the demo and tests do) never clashes.
    if config.listen.ingest == config.listen.metrics && config.listen.ingest.port() != 0 {
        c.problem("listen.metrics", "must differ from listen.ingest");
    }
    let web = &config.web;
    for (i, host) in web.allowed_hosts.iter().enumerate() {
        let plain = !host.is_empty()
            && host.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '.');
        if !plain {
            c.problem(
                &format!("web.allowed_hosts[{i}]"),
                format!("{host:?} must be a bare host name (no scheme, port or path)"),
            );
        }
    }
    if !(1..=64).contains(&web.max_concurrent_renders) {
        c.problem("web.max_concurrent_renders", "must be between 1 and 64");
    }
    if web.token_file.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
        c.problem("web.token_file", "must not be empty (leave it out for no token)");
    }
}

fn storage(c: &mut Checker<'_>, config: &Config) {
    let s = &config.storage;
    if s.path.as_os_str().is_empty() {
        c.problem("storage.path", "must not be empty");
    }
    c.nonzero("storage.raw_retention", s.raw_retention);
    c.nonzero("storage.downsample_after", s.downsample_after);
    c.nonzero("storage.hourly_retention", s.hourly_retention);
    if s.downsample_after > s.raw_retention {
        c.problem(
            "storage.downsample_after",
            format!(
                "({}) must be at most storage.raw_retention ({}): per-minute rows are needed \
                 until they are downsampled",
                format_duration(s.downsample_after),
                format_duration(s.raw_retention)
            ),
        );
    }
    if s.hourly_retention <= s.downsample_after {
        c.problem(
            "storage.hourly_retention",
            format!(
                "({}) must be longer than storage.downsample_after ({})",
                format_duration(s.hourly_retention),
                format_duration(s.downsample_after)
            ),
        );
    }
}

fn ingest(c: &mut Checker<'_>, config: &Config) {
    let i = &config.ingest;
    if !(MIN_REPORT_BYTES..=MAX_REPORT_BYTES).contains(&i.max_report_bytes) {
        c.problem(
            "ingest.max_report_bytes",
            format!(
                "{} is out of range ({MIN_REPORT_BYTES} to {MAX_REPORT_BYTES})",
                i.max_report_bytes
            ),
        );
    }
    c.nonzero("ingest.max_clock_skew", i.max_clock_skew);
    c.nonzero("ingest.max_backfill_age", i.max_backfill_age);
    c.nonzero("ingest.backfill_after", i.backfill_after);
}

fn labels(c: &mut Checker<'_>, config: &Config) {
    let l = &config.labels;
    for (i, v) in l.regions.iter().enumerate() {
        c.agent_label(&format!("labels.regions[{i}]"), v, 32);
    }
    for (i, v) in l.network_types.iter().enumerate() {
        if !DEFAULT_NETWORK_TYPES.contains(&v.as_str()) {
            c.problem(
                &format!("labels.network_types[{i}]"),
                format!(
                    "{v:?} is not a network type agents can have ({})",
                    DEFAULT_NETWORK_TYPES.join(", ")
                ),
            );
        }
    }
    for (i, v) in l.targets.iter().enumerate() {
        c.label_value(&format!("labels.targets[{i}]"), v);
    }
    // An empty targets list means "the relay names" (filled in at load); with no relays there
    // is nothing to probe yet, which is fine.
    for (field, list) in
        [("regions", &l.regions), ("network_types", &l.network_types), ("targets", &l.targets)]
    {
        let path = format!("labels.{field}");
        if list.is_empty() && field != "targets" {
            c.problem(&path, "must list at least one value");
        }
        let items = list.iter().enumerate().map(|(i, v)| (format!("{path}[{i}]"), v.as_str()));
        c.unique("", items, "");
    }
}

fn relays(c: &mut Checker<'_>, config: &Config) {
    for (i, r) in config.relays.iter().enumerate() {
        let path = format!("relays[{i}]");
        c.label_value(&format!("{path}.name"), &r.name);
        if let Err(why) = check_host_port(&r.address) {
            c.problem(&format!("{path}.address"), format!("{:?}: {why}", r.address));
        }
        if let Some(region) = &r.region
            && !config.labels.allows_region(region)
        {
            c.problem(
                &format!("{path}.region"),
                format!(
                    "{region:?} is not in labels.regions ({})",
                    config.labels.regions.join(", ")
                ),
            );
        }
    }
    let names = config
        .relays
        .iter()
        .enumerate()
        .map(|(i, r)| (format!("relays[{i}].name"), r.name.as_str()));
    c.unique("relay name", names, "");
}

/// `host:port` with a non-empty host and a non-zero port (`[v6]:port` allowed).
fn check_host_port(address: &str) -> Result<(), &'static str> {
    let Some((host, port)) = address.rsplit_once(':') else {
        return Err("expected host:port");
    };
    if host.is_empty() || host == "[]" {
        return Err("expected host:port (the host is empty)");
    }
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Err("expected host:port (write an IPv6 address in brackets: [::1]:4433)");
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err("expected host:port (the port must be 1 to 65535)"),
    }
}

fn plans(c: &mut Checker<'_>, config: &Config) {
    let l = &config.labels;
    for (i, plan) in config.plans.iter().enumerate() {
        let path = format!("plans[{i}]");
        if plan.name.is_empty() {
            c.problem(&format!("{path}.name"), "must not be empty");
        }
        c.subset(&format!("{path}.regions"), &plan.regions, &l.regions, "labels.regions");
        c.subset(
            &format!("{path}.network_types"),
            &plan.network_types,
            &l.network_types,
            "labels.network_types",
        );
        for (j, agent) in plan.agents.iter().enumerate() {
            c.agent_label(&format!("{path}.agents[{j}]"), agent, 64);
        }
        for (field, list) in [
            ("agents", &plan.agents),
            ("regions", &plan.regions),
            ("network_types", &plan.network_types),
        ] {
            let items =
                list.iter().enumerate().map(|(j, v)| (format!("{path}.{field}[{j}]"), v.as_str()));
            c.unique("", items, "");
        }
        c.nonzero(&format!("{path}.report_interval"), plan.report_interval);
        for (j, probe) in plan.probes.iter().enumerate() {
            self::probe(c, config, &format!("{path}.probes[{j}]"), probe);
        }
    }
    let names =
        config.plans.iter().enumerate().map(|(i, p)| (format!("plans[{i}].name"), p.name.as_str()));
    c.unique("plan name", names, "");
    let probes = config.plans.iter().enumerate().flat_map(|(i, p)| {
        p.probes
            .iter()
            .enumerate()
            .map(move |(j, q)| (format!("plans[{i}].probes[{j}].name"), q.name.as_str()))
    });
    c.unique(
        "probe name",
        probes,
        ": probe names must be unique across plans, as an agent's plan merges them",
    );
    relay_conflicts(c, config);
}

fn probe(c: &mut Checker<'_>, config: &Config, path: &str, p: &ProbeSection) {
    c.label_value(&format!("{path}.name"), &p.name);
    let target = format!("{path}.target");
    if config.relay(&p.target).is_none() {
        let known: Vec<&str> = config.relays.iter().map(|r| r.name.as_str()).collect();
        let known = if known.is_empty() { "none".to_owned() } else { known.join(", ") };
        c.problem(
            &target,
            format!("no relay named {:?} in [[relays]] (defined: {known})", p.target),
        );
    } else if !config.labels.allows_target(&p.target) {
        c.problem(
            &target,
            format!(
                "{:?} is not in labels.targets ({}): its reports would be refused",
                p.target,
                config.labels.targets.join(", ")
            ),
        );
    }
    if !PROFILE_NAMES.contains(&p.profile.as_str()) {
        c.problem(
            &format!("{path}.profile"),
            format!(
                "unknown profile {:?}, expected one of {}",
                p.profile,
                PROFILE_NAMES.join(", ")
            ),
        );
    }
    let stream = format!("{path}.stream");
    match (p.mode, &p.stream) {
        (ModeKind::Loopback, Some(_)) => {
            c.problem(&stream, "mode \"loopback\" takes no stream (it publishes and views its own)")
        }
        (ModeKind::Publish | ModeKind::View, None) => c.problem(
            &format!("{path}.mode"),
            format!("mode {:?} needs a stream = \"...\"", p.mode.as_str()),
        ),
        (_, Some(s)) => {
            if let Err(e) = validate_stream_name(s) {
                c.problem(&stream, e.to_string());
            }
        }
        (ModeKind::Loopback, None) => {}
    }
    c.nonzero(&format!("{path}.every"), p.every);
    c.nonzero(&format!("{path}.duration"), p.duration);
    if !p.every.is_zero() && p.every < p.duration {
        c.problem(
            &format!("{path}.every"),
            format!(
                "every ({}) must be at least duration ({}): attempts would overlap",
                format_duration(p.every),
                format_duration(p.duration)
            ),
        );
    }
    if p.transport == Transport::QuicStream && p.repair == Some(Repair::Nack) {
        c.problem(
            &format!("{path}.repair"),
            "\"nack\" is not available on quic-stream (QUIC retransmits lost stream data \
             itself); leave repair out or set \"none\"",
        );
    }
    if let Some(e) = &p.emulate {
        let custom = e.contains('=');
        if !custom && !is_emulation_preset(e) {
            c.problem(
                &format!("{path}.emulate"),
                format!(
                    "unknown preset {e:?}, expected one of {} or custom settings such as \
                     \"delay=100ms,loss=1%\"",
                    EMULATION_PRESETS
                        .iter()
                        .chain(EMULATION_PRESET_ALIASES)
                        .copied()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
    }
}

/// Two plans that can select the same agent must not ask for different relays.
fn relay_conflicts(c: &mut Checker<'_>, config: &Config) {
    for (i, p) in config.plans.iter().enumerate() {
        if let Some(name) = p.run_relay.as_ref().and_then(|r| r.relay.as_ref())
            && config.relay(name).is_none()
        {
            c.problem(
                &format!("plans[{i}].run_relay.relay"),
                format!("names no [[relays]] entry: {name:?}"),
            );
        }
    }
    let with_relay: Vec<_> = config
        .plans
        .iter()
        .enumerate()
        .filter_map(|(i, p)| Some((i, p, p.run_relay.as_ref()?)))
        .collect();
    for (n, &(i, a, ra)) in with_relay.iter().enumerate() {
        if let Some(&(j, _, _)) =
            with_relay[..n].iter().find(|&&(_, b, rb)| rb != ra && a.overlaps(b))
        {
            let first = format!("plans[{j}].run_relay");
            let line = c.line(&first);
            c.problem(
                &format!("plans[{i}].run_relay"),
                format!(
                    "differs from {first} (line {line}) and both plans can select the same agent; \
                     narrow their agents, regions or network_types"
                ),
            );
        }
    }
}

fn slo(c: &mut Checker<'_>, config: &Config) {
    let s = &config.slo;
    let fmt = |d: Duration| format_duration(d);
    c.nonzero("slo.first_frame_good", s.first_frame_good);
    if s.first_frame_warn < s.first_frame_good {
        c.problem(
            "slo.first_frame_warn",
            format!(
                "({}) must be at least slo.first_frame_good ({})",
                fmt(s.first_frame_warn),
                fmt(s.first_frame_good)
            ),
        );
    }
    let ordered = [
        ("first_frame", s.first_frame_warn, s.first_frame_critical),
        ("jitter", s.jitter_warn, s.jitter_critical),
    ];
    for (what, warn, critical) in ordered {
        c.nonzero(&format!("slo.{what}_warn"), warn);
        if critical <= warn {
            c.problem(
                &format!("slo.{what}_critical"),
                format!("({}) must be greater than slo.{what}_warn ({})", fmt(critical), fmt(warn)),
            );
        }
    }
    c.nonzero("slo.rtt_warn", s.rtt_warn);
    for (what, warn, critical) in [
        ("stall_ratio", s.stall_ratio_warn, s.stall_ratio_critical),
        ("loss", s.loss_warn, s.loss_critical),
    ] {
        for (level, v) in [("warn", warn), ("critical", critical)] {
            if !(v > 0.0 && v <= 1.0) {
                c.problem(
                    &format!("slo.{what}_{level}"),
                    format!("{v} is not a ratio in (0, 1] (write 1 % as 0.01)"),
                );
            }
        }
        if critical <= warn {
            c.problem(
                &format!("slo.{what}_critical"),
                format!("({critical}) must be greater than slo.{what}_warn ({warn})"),
            );
        }
    }
}

/// Problems with the files the config names (`validate --check-files`): the TLS files must be
/// readable files (the web token file too, when set) and the storage directory must exist.
pub(crate) fn check_files(config: &Config) -> Vec<Problem> {
    let mut c = Checker::new(&config.locations);
    let tls = &config.tls;
    for (field, path) in
        [("ca", &tls.ca), ("cert", &tls.cert), ("key", &tls.key), ("revoked", &tls.revoked)]
    {
        if let Err(e) = readable_file(path) {
            c.problem(&format!("tls.{field}"), format!("{}: {e}", path.display()));
        }
    }
    if let Some(path) = &config.web.token_file
        && let Err(e) = readable_file(path)
    {
        c.problem("web.token_file", format!("{}: {e}", path.display()));
    }
    let dir = config
        .storage
        .path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !dir.is_dir() {
        c.problem(
            "storage.path",
            format!(
                "{}: directory {} does not exist",
                config.storage.path.display(),
                dir.display()
            ),
        );
    }
    c.problems
}

/// Opens `path` for reading and checks it is a regular file.
fn readable_file(path: &Path) -> std::io::Result<()> {
    let meta = std::fs::File::open(path)?.metadata()?;
    if meta.is_file() { Ok(()) } else { Err(std::io::Error::other("not a regular file")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port() {
        for ok in ["relay.example:4433", "10.0.0.1:1", "[::1]:4433"] {
            assert_eq!(check_host_port(ok), Ok(()), "{ok}");
        }
        for bad in ["relay.example", ":4433", "host:0", "host:70000", "::1:4433", "[]:1"] {
            assert!(check_host_port(bad).is_err(), "{bad}");
        }
    }
}
