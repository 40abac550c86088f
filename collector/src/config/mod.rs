//! The collector's configuration file (TOML): listeners, TLS, storage, ingest limits, label
//! allow-lists, relays, probe plans, SLO thresholds and regional report settings.
//!
//! [`load`] and [`parse`] return a checked [`Config`] or every problem found, each naming the
//! file, line, column and field path:
//!
//! ```text
//! collector.toml:12:13: plans[0].probes[1].transport: unknown variant `quic-stram`, expected one of `quic-stream`, `quic-datagram`, `udp`
//! ```
//!
//! Syntax and schema errors (unknown fields, wrong types, bad durations) stop at the first;
//! the checks after that (references between sections, allow-lists, unique names, durations)
//! report all of them. [`Config::plan_for`] turns the `[[plans]]` into the plan one agent runs.
//!
//! Layout: `sections.rs` and `plans.rs` hold the schema, `check.rs` the checks, `cli.rs` is
//! `stallwatch-collector validate`; field paths map to lines with
//! [`stallwatch_proto::config_file`], which the agent's config uses too.

mod bytes;
pub(crate) mod check;
mod cli;
mod credentials;
mod error;
mod plans;
mod sections;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use bytes::ByteSize;
pub use cli::{ValidateArgs, validate_main};
pub use credentials::RelayCredentials;
pub use error::{ConfigError, EXIT_BAD_CONFIG, EXIT_UNREADABLE, Problem};
pub use plans::{AgentSelector, ModeKind, PlanSection, ProbeSection, RunRelay, start_offset};
pub use sections::{
    DEFAULT_NETWORK_TYPES, Ingest, Labels, Listen, MAX_REPORT_BYTES, MIN_REPORT_BYTES, Relay, Slo,
    Storage, Tls, Web,
};
pub use stallwatch_proto::config_file::{Locations, Position};

/// A checked collector configuration. Two configs are equal when their settings are, however
/// their files were laid out.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Listen addresses.
    #[serde(default)]
    pub listen: Listen,
    /// The web listener's host allow-list, token and render limit.
    #[serde(default)]
    pub web: Web,
    /// TLS files: fleet CA, the collector's certificate and key, the revocation list.
    pub tls: Tls,
    /// The history store.
    #[serde(default)]
    pub storage: Storage,
    /// Report limits and clock sanity.
    #[serde(default)]
    pub ingest: Ingest,
    /// Label allow-lists (cardinality budget).
    pub labels: Labels,
    /// Relays probes can target.
    #[serde(default)]
    pub relays: Vec<Relay>,
    /// Which agents run which probes.
    #[serde(default)]
    pub plans: Vec<PlanSection>,
    /// SLO thresholds (defaults: DESIGN.md section 4).
    #[serde(default)]
    pub slo: Slo,
    /// Regional reports: incidents source and per-region knowledge
    /// ([`crate::reports::ReportsSection`]).
    #[serde(default)]
    pub reports: crate::reports::ReportsSection,
    /// Alert rules and receivers (`crate::alerts::config`).
    #[serde(default)]
    pub alerts: crate::alerts::AlertsConfig,
    /// Where each field was in the file, for errors found after loading.
    #[serde(skip)]
    locations: Locations,
}

/// Reads and checks the configuration file at `path`. Relative paths in `[tls]` and `[storage]`
/// are resolved against the file's directory.
pub fn load(path: impl AsRef<Path>) -> Result<Config, ConfigError> {
    let path = path.as_ref();
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|error| ConfigError::Read { origin: origin.clone(), error })?;
    let mut config = parse(&text, &origin)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        config.resolve_paths(dir);
    }
    Ok(config)
}

/// Parses and checks configuration `text`; `origin` names it in errors (usually the file name).
/// Relative paths are left as they are.
pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
    let (mut config, locations) =
        stallwatch_proto::config_file::deserialize::<Config>(text, origin)
            .map_err(|problem| ConfigError::Invalid(vec![problem]))?;
    if config.labels.targets.is_empty() {
        config.labels.targets = config.relays.iter().map(|r| r.name.clone()).collect();
    }
    let problems = check::check(&config, &locations);
    if !problems.is_empty() {
        return Err(ConfigError::Invalid(problems));
    }
    config.locations = locations;
    Ok(config)
}

impl PartialEq for Config {
    fn eq(&self, other: &Self) -> bool {
        // Every field but `locations`.
        let Config {
            listen,
            web,
            tls,
            storage,
            ingest,
            labels,
            relays,
            plans,
            slo,
            reports,
            alerts,
            locations: _,
        } = self;
        (listen, web, tls, storage, ingest, labels, relays, plans, slo, reports, alerts)
            == (
                &other.listen,
                &other.web,
                &other.tls,
                &other.storage,
                &other.ingest,
                &other.labels,
                &other.relays,
                &other.plans,
                &other.slo,
                &other.reports,
                &other.alerts,
            )
    }
}

impl Config {
    /// Checks that the files the config names exist: the TLS files are readable regular files
    /// and the storage directory exists (`validate --check-files`; `run` needs them anyway).
    pub fn check_files(&self) -> Result<(), ConfigError> {
        let problems = check::check_files(self);
        if problems.is_empty() { Ok(()) } else { Err(ConfigError::Invalid(problems)) }
    }

    /// Where each field was in the file, to report problems found later (e.g. when `run`
    /// cannot open a TLS file) with a line.
    pub fn locations(&self) -> &Locations {
        &self.locations
    }

    /// A problem with the field at `path` (e.g. `tls.cert`), located in the file.
    pub fn problem(&self, path: &str, message: impl Into<String>) -> Problem {
        self.locations.problem(path, message)
    }

    /// Resolves relative TLS, storage, web token and alert state paths against `dir`.
    fn resolve_paths(&mut self, dir: &Path) {
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
        };
        resolve(&mut self.tls.ca);
        resolve(&mut self.tls.cert);
        resolve(&mut self.tls.key);
        resolve(&mut self.tls.revoked);
        resolve(&mut self.storage.path);
        if let Some(token) = &mut self.web.token_file {
            resolve(token);
        }
        if let Some(incidents) = &mut self.reports.incidents {
            resolve(incidents);
        }
        if let Some(p) = &mut self.alerts.state_file {
            resolve(p);
        }
    }

    /// Number of probes across all plans.
    pub fn probe_count(&self) -> usize {
        self.plans.iter().map(|p| p.probes.len()).sum()
    }

    /// Upper bound on cohorts (region x network type x transport x target) the allow-lists
    /// permit; each cohort is a few dozen series.
    pub fn max_cohorts(&self) -> usize {
        let l = &self.labels;
        l.regions.len()
            * l.network_types.len()
            * stallwatch_proto::Transport::ALL.len()
            * l.targets.len()
    }
}
