//! The files of a small loopback fleet: a fleet CA, the collector's certificate, one bundle
//! per agent and a collector config whose plans give each agent its probes and one agent a
//! relay. `demo` uses it; the end-to-end tests build their fleets with it too.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use time::OffsetDateTime;

use crate::pki::{AgentIdentity, Ca, Validity};

/// One agent of the fleet.
#[derive(Debug, Clone)]
pub struct FleetAgent {
    /// Agent name (its certificate).
    pub name: String,
    /// Region label.
    pub region: String,
    /// Network type label.
    pub network_type: String,
    /// What its probes emulate (`--emulate` syntax), if anything.
    pub emulate: Option<String>,
    /// Stream profile its probes use.
    pub profile: String,
}

impl FleetAgent {
    /// An agent with these labels, emulation and profile.
    pub fn new(
        name: &str,
        region: &str,
        network_type: &str,
        emulate: Option<&str>,
        profile: &str,
    ) -> Self {
        FleetAgent {
            name: name.into(),
            region: region.into(),
            network_type: network_type.into(),
            emulate: emulate.map(str::to_owned),
            profile: profile.into(),
        }
    }
}

/// How the fleet runs.
#[derive(Debug, Clone)]
pub struct FleetSpec {
    /// The agent that runs the relay (it probes nothing itself).
    pub relay_agent: String,
    /// Region of the relay agent.
    pub relay_region: String,
    /// The relay's QUIC port on 127.0.0.1 (its plain-UDP port is the next one).
    pub relay_port: u16,
    /// Probing agents; each probes the relay over all three transports.
    pub agents: Vec<FleetAgent>,
    /// How often each probe starts an attempt, and how long one lasts.
    pub every: &'static str,
    /// Attempt length.
    pub duration: &'static str,
    /// Report interval.
    pub report_interval: &'static str,
    /// Collector listeners (`127.0.0.1:0` picks free ports).
    pub ingest: String,
    /// Metrics listener.
    pub metrics: String,
}

/// Name of the relay in `[[relays]]` (the `target` label of every probe).
pub const RELAY_NAME: &str = "relay-1";

/// The files written by [`write_fleet`].
#[derive(Debug, Clone)]
pub struct FleetFiles {
    /// The directory holding everything.
    pub dir: PathBuf,
    /// The fleet CA directory.
    pub ca_dir: PathBuf,
    /// The collector config file.
    pub config: PathBuf,
    /// Agent name and bundle file, the relay agent first.
    pub bundles: Vec<(String, PathBuf)>,
}

/// Writes a CA, certificates and a collector config for `spec` into `dir` (created).
pub fn write_fleet(dir: &Path, spec: &FleetSpec, now: OffsetDateTime) -> Result<FleetFiles> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let ca_dir = dir.join("ca");
    let ca = Ca::init(&ca_dir, now, true).context("creating the fleet CA")?;
    let validity = Validity::days_from(now, 7)?;
    let hosts = ["127.0.0.1".to_owned(), "localhost".to_owned()];
    ca.issue_collector(&hosts, validity)?
        .write(&ca_dir.join("collector.pem"), &ca_dir.join("collector.key"))?;
    let mut bundles = Vec::new();
    let relay = AgentIdentity::new(&spec.relay_agent, &spec.relay_region, "fiber")?;
    let path = dir.join(format!("{}.bundle.pem", spec.relay_agent));
    ca.issue_agent_relay(&relay, validity, &["127.0.0.1".into()])?.write_bundle(&path)?;
    bundles.push((spec.relay_agent.clone(), path));
    for agent in &spec.agents {
        let identity = AgentIdentity::new(&agent.name, &agent.region, &agent.network_type)?;
        let path = dir.join(format!("{}.bundle.pem", agent.name));
        ca.issue_agent(&identity, validity)?.write_bundle(&path)?;
        bundles.push((agent.name.clone(), path));
    }
    let config = dir.join("collector.toml");
    std::fs::write(&config, config_text(spec)).context("writing the collector config")?;
    Ok(FleetFiles { dir: dir.to_path_buf(), ca_dir, config, bundles })
}

/// The collector config for `spec`.
pub fn config_text(spec: &FleetSpec) -> String {
    let mut regions: Vec<&str> = spec.agents.iter().map(|a| a.region.as_str()).collect();
    regions.push(&spec.relay_region);
    regions.sort_unstable();
    regions.dedup();
    let mut text = String::new();
    let _ = write!(
        text,
        r#"# Written by stallwatch-collector's fleet setup (demo and tests).
[listen]
ingest = "{ingest}"
metrics = "{metrics}"

[tls]
ca = "ca/ca.pem"
cert = "ca/collector.pem"
key = "ca/collector.key"
revoked = "ca/revoked.json"

[storage]
path = "collector.db"

[labels]
regions = {regions:?}

[[relays]]
name = "{RELAY_NAME}"
address = "127.0.0.1:{port}"
region = "{relay_region}"

[[plans]]
name = "relay"
agents = ["{relay_agent}"]
report_interval = "{interval}"
run_relay = {{ listen = "127.0.0.1:{port}", gop_cache = true, relay = "{RELAY_NAME}" }}
"#,
        ingest = spec.ingest,
        metrics = spec.metrics,
        port = spec.relay_port,
        relay_region = spec.relay_region,
        relay_agent = spec.relay_agent,
        interval = spec.report_interval,
    );
    for agent in &spec.agents {
        let _ = write!(
            text,
            "\n[[plans]]\nname = \"{name}\"\nagents = [\"{name}\"]\nreport_interval = \"{interval}\"\n",
            name = agent.name,
            interval = spec.report_interval,
        );
        for transport in ["quic-stream", "quic-datagram", "udp"] {
            let _ = write!(
                text,
                "\n[[plans.probes]]\nname = \"{name}-{transport}\"\ntarget = \"{RELAY_NAME}\"\n\
                 transport = \"{transport}\"\nprofile = \"{profile}\"\nevery = \"{every}\"\n\
                 duration = \"{duration}\"\n",
                name = agent.name,
                profile = agent.profile,
                every = spec.every,
                duration = spec.duration,
            );
            if let Some(emulate) = &agent.emulate {
                let _ = writeln!(text, "emulate = \"{emulate}\"");
            }
        }
    }
    text
}

/// A loopback port `p` such that UDP `p` and `p + 1` were both free a moment ago (the
/// relay's QUIC and plain-UDP sockets).
pub fn free_relay_port() -> Result<u16> {
    for _ in 0..50 {
        let first = std::net::UdpSocket::bind("127.0.0.1:0")?;
        let port = first.local_addr()?.port();
        if port < u16::MAX && std::net::UdpSocket::bind(("127.0.0.1", port + 1)).is_ok() {
            return Ok(port);
        }
    }
    anyhow::bail!("no two adjacent free UDP ports on 127.0.0.1")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A small fleet spec for tests.
    pub(crate) fn spec() -> FleetSpec {
        FleetSpec {
            relay_agent: "relay-sea-1".into(),
            relay_region: "sea".into(),
            relay_port: 45000,
            agents: vec![
                FleetAgent::new("sea-4g-1", "sea", "4g", Some("4g"), "360p30"),
                FleetAgent::new("latam-wifi-1", "latam", "wifi", Some("delay=80ms"), "360p30"),
            ],
            every: "20s",
            duration: "15s",
            report_interval: "5s",
            ingest: "127.0.0.1:0".into(),
            metrics: "127.0.0.1:0".into(),
        }
    }

    /// The generated config is one the collector accepts, and gives each agent what the
    /// spec says.
    #[test]
    fn generated_config_is_valid_and_selects_each_agent() {
        let config = crate::config::parse(&config_text(&spec()), "fleet.toml").unwrap();
        let plan = |name: &str, region: &str, nt: &str| {
            let agent = crate::config::AgentSelector {
                name: name.into(),
                region: region.into(),
                network_type: nt.into(),
            };
            config.plan_for(&agent, 1)
        };
        let relay = plan("relay-sea-1", "sea", "fiber");
        assert_eq!(relay.relay.unwrap().listen, "127.0.0.1:45000");
        assert!(relay.probes.is_empty());
        let sea = plan("sea-4g-1", "sea", "4g");
        assert_eq!(sea.probes.len(), 3);
        assert!(sea.probes.iter().all(|p| p.emulate.as_deref() == Some("4g")));
        assert_eq!(sea.report_interval, std::time::Duration::from_secs(5));
        let latam = plan("latam-wifi-1", "latam", "wifi");
        assert_eq!(latam.probes[0].address, "127.0.0.1:45000");
    }
}
