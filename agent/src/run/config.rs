//! The agent's settings: a TOML file (`--config`, `check-config`), overridden by flags and
//! environment variables. A bad file is reported as `FILE:LINE:COLUMN: FIELD: problem`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use stallwatch_proto::config_file::{self, Locations, Problem};
use stallwatch_proto::duration::{format_duration, serde_human_option};
use thiserror::Error;

use crate::report::{DEFAULT_MAX_BYTES, DEFAULT_MAX_REPORTS};

/// Default state directory (`--state-dir`): the spool, the sequence file and the last plan.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/stallwatch";
/// Default long-poll wait of a plan request.
pub const DEFAULT_PLAN_WAIT: Duration = Duration::from_secs(30);
/// The longest plan wait the collector honours (docs/protocol.md).
pub const MAX_PLAN_WAIT: Duration = Duration::from_secs(60);
/// Largest config file read.
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// Exit code for bad input or configuration (sysexits EX_USAGE... as the project uses it: 64).
pub const EXIT_CONFIG: u8 = 64;
/// Exit code for a file that cannot be read (sysexits EX_NOINPUT).
pub const EXIT_NO_INPUT: u8 = 66;

/// The agent configuration file, as written. Every field is optional; flags override it.
/// (`Serialize` lists its keys for README's configuration reference test.)
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Collector ingest URL, `https://HOST:PORT`.
    pub collector: Option<String>,
    /// The agent's bundle (PEM: certificate, private key, fleet CA) from
    /// `stallwatch-collector ca issue-agent`.
    pub bundle: Option<PathBuf>,
    /// Where the spool, the report sequence number and the last plan are kept.
    pub state_dir: Option<PathBuf>,
    /// How long one plan request may be held by the collector (human duration, at most 60s).
    #[serde(default, with = "serde_human_option")]
    pub plan_wait: Option<Duration>,
    /// Log level when `RUST_LOG` is not set: error, warn, info, debug or trace.
    pub log_level: Option<String>,
    /// Certificate chain (PEM) the in-process relay presents instead of the agent's own
    /// certificate. Normally not needed: issue the relay agent's bundle with
    /// `stallwatch-collector ca issue-agent NAME ... --relay-host HOST` and the relay presents
    /// it; other agents' probes verify it against the fleet CA for HOST.
    pub relay_cert: Option<PathBuf>,
    /// Private key (PEM) of `relay_cert`.
    pub relay_key: Option<PathBuf>,
    /// Limits of the on-disk report spool.
    #[serde(default)]
    pub spool: SpoolSection,
}

/// `[spool]`: bounds of the report spool; past them the oldest reports are dropped.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SpoolSection {
    /// Most bytes of spooled reports (default 512 MiB).
    pub max_bytes: Option<u64>,
    /// Most spooled reports (default 8640: a day at 10 s).
    pub max_reports: Option<u64>,
    /// Keep every report the collector acknowledged here instead of deleting it: an audit
    /// trail of exactly what was delivered (tests compare it with the collector's totals).
    /// Grows without bound: for audits and tests, not for a fleet.
    pub archive_dir: Option<PathBuf>,
}

/// Settings given on the command line or in the environment; they win over the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub collector: Option<String>,
    pub bundle: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
}

/// The collector's base URL, checked: `https`, a host, a port, no path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectorUrl {
    url: reqwest::Url,
}

impl CollectorUrl {
    /// Parses `https://HOST[:PORT]` (port 443 if left out).
    pub fn parse(s: &str) -> Result<Self, String> {
        let url = reqwest::Url::parse(s).map_err(|e| format!("not a URL ({e})"))?;
        if url.scheme() != "https" {
            return Err(format!("must start with https:// (got {}://)", url.scheme()));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err("has no host".into());
        }
        if !matches!(url.path(), "" | "/") || url.query().is_some() || !url.username().is_empty() {
            return Err("must be only https://HOST:PORT, without a path, query or user".into());
        }
        Ok(CollectorUrl { url })
    }

    /// The URL of an API path such as `/api/v1/plan`.
    pub fn join(&self, path: &str) -> reqwest::Url {
        let mut url = self.url.clone();
        url.set_path(path);
        url
    }

    /// The host name the collector's certificate must carry.
    pub fn host(&self) -> &str {
        self.url.host_str().unwrap_or_default()
    }
}

impl fmt::Display for CollectorUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.url.as_str().trim_end_matches('/'))
    }
}

/// The settings in force, after the file, the environment and the flags.
#[derive(Debug, Clone)]
pub struct Settings {
    pub collector: CollectorUrl,
    pub bundle: PathBuf,
    pub state_dir: PathBuf,
    pub plan_wait: Duration,
    pub log_level: String,
    pub relay_cert: Option<PathBuf>,
    pub relay_key: Option<PathBuf>,
    pub spool_max_bytes: u64,
    pub spool_max_reports: usize,
    pub spool_archive_dir: Option<PathBuf>,
}

impl Settings {
    /// The spool directory: `state_dir/spool`.
    pub fn spool_dir(&self) -> PathBuf {
        self.state_dir.join("spool")
    }

    /// Where the last good plan is kept: `state_dir/plan.json`.
    pub fn plan_file(&self) -> PathBuf {
        self.state_dir.join("plan.json")
    }
}

impl fmt::Display for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let opt = |p: &Option<PathBuf>| {
            p.as_ref().map_or_else(|| "(none)".to_string(), |p| p.display().to_string())
        };
        writeln!(f, "collector          {}", self.collector)?;
        writeln!(f, "bundle             {}", self.bundle.display())?;
        writeln!(f, "state_dir          {}", self.state_dir.display())?;
        writeln!(f, "plan_wait          {}", format_duration(self.plan_wait))?;
        writeln!(f, "log_level          {}", self.log_level)?;
        writeln!(f, "relay_cert         {}", opt(&self.relay_cert))?;
        writeln!(f, "relay_key          {}", opt(&self.relay_key))?;
        writeln!(f, "spool.max_bytes    {}", self.spool_max_bytes)?;
        writeln!(f, "spool.max_reports  {}", self.spool_max_reports)?;
        write!(f, "spool.archive_dir  {}", opt(&self.spool_archive_dir))
    }
}

/// Why the settings could not be made.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: cannot read the config file: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A field in the file is wrong: `FILE:LINE:COLUMN: FIELD: problem`.
    #[error("{0}")]
    Invalid(Problem),
    /// A setting is missing or wrong on the command line (or in the environment).
    #[error("{0}")]
    Setting(String),
}

impl ConfigError {
    /// The process exit code for this error: 66 for an unreadable file, else 64.
    pub fn exit_code(&self) -> u8 {
        match self {
            ConfigError::Unreadable { .. } => EXIT_NO_INPUT,
            _ => EXIT_CONFIG,
        }
    }
}

/// Reads and parses a config file (no checks across fields; see [`resolve`]).
pub fn read_config(path: &Path) -> Result<(ConfigFile, Locations), ConfigError> {
    let unreadable = |source| ConfigError::Unreadable { path: path.to_owned(), source };
    let meta = std::fs::metadata(path).map_err(unreadable)?;
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(unreadable(std::io::Error::other(format!(
            "{} bytes, over the {MAX_CONFIG_BYTES}-byte cap",
            meta.len()
        ))));
    }
    let text = std::fs::read_to_string(path).map_err(unreadable)?;
    parse_config(path, &text)
}

/// Parses config text; errors name `path:line:column` and the field (as the collector's do).
/// Also returns where each field is, for [`resolve`]'s errors.
pub fn parse_config(path: &Path, text: &str) -> Result<(ConfigFile, Locations), ConfigError> {
    config_file::deserialize(text, &path.display().to_string()).map_err(ConfigError::Invalid)
}

/// Checks the file's fields and applies the overrides: the settings in force.
pub fn resolve(
    file: Option<(ConfigFile, Locations)>,
    overrides: &Overrides,
) -> Result<Settings, ConfigError> {
    let (file, locations) = file.unwrap_or_else(|| (ConfigFile::default(), Locations::unknown("")));
    // An error at a field of the file.
    let at = |field: &str, message: String| ConfigError::Invalid(locations.problem(field, message));
    let collector = match (&overrides.collector, &file.collector) {
        (Some(url), _) => CollectorUrl::parse(url)
            .map_err(|e| ConfigError::Setting(format!("--collector {url:?}: {e}")))?,
        (None, Some(url)) => {
            CollectorUrl::parse(url).map_err(|e| at("collector", format!("{url:?} {e}")))?
        }
        (None, None) => {
            return Err(ConfigError::Setting(
                "no collector: pass --collector https://HOST:PORT (or STALLWATCH_COLLECTOR, or \
                 `collector` in the config file)"
                    .into(),
            ));
        }
    };
    let bundle = overrides.bundle.clone().or(file.bundle).ok_or_else(|| {
        ConfigError::Setting(
            "no bundle: pass --bundle FILE, the PEM file from `stallwatch-collector ca \
             issue-agent` (or STALLWATCH_BUNDLE, or `bundle` in the config file)"
                .into(),
        )
    })?;
    let state_dir = overrides
        .state_dir
        .clone()
        .or(file.state_dir)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR));
    let plan_wait = file.plan_wait.unwrap_or(DEFAULT_PLAN_WAIT);
    if plan_wait > MAX_PLAN_WAIT {
        let wait = format_duration(plan_wait);
        return Err(at("plan_wait", format!("{wait} is over the collector's maximum of 60s")));
    }
    let log_level = match &file.log_level {
        None => "info".to_string(),
        Some(l) => {
            let level = l.to_ascii_lowercase();
            if !["error", "warn", "info", "debug", "trace"].contains(&level.as_str()) {
                return Err(at(
                    "log_level",
                    format!("{l:?} is not one of error, warn, info, debug, trace"),
                ));
            }
            level
        }
    };
    if file.relay_cert.is_some() != file.relay_key.is_some() {
        let given = if file.relay_cert.is_some() { "relay_cert" } else { "relay_key" };
        return Err(at(given, "relay_cert and relay_key go together: give both or neither".into()));
    }
    let positive = |field: &str, v: Option<u64>, default: u64| match v {
        None => Ok(default),
        Some(0) => Err(at(field, "must be above 0".into())),
        Some(v) => Ok(v),
    };
    let spool_max_bytes = positive("spool.max_bytes", file.spool.max_bytes, DEFAULT_MAX_BYTES)?;
    let spool_max_reports =
        positive("spool.max_reports", file.spool.max_reports, DEFAULT_MAX_REPORTS as u64)?;
    Ok(Settings {
        collector,
        bundle,
        state_dir,
        plan_wait,
        log_level,
        relay_cert: file.relay_cert,
        relay_key: file.relay_key,
        spool_max_bytes,
        spool_max_reports: usize::try_from(spool_max_reports).unwrap_or(usize::MAX),
        spool_archive_dir: file.spool.archive_dir,
    })
}

/// Loads the settings: the config file if one is given, then the overrides.
pub fn load(config: Option<&Path>, overrides: &Overrides) -> Result<Settings, ConfigError> {
    match config {
        Some(path) => {
            let file = read_config(path)?;
            resolve(Some(file), overrides)
        }
        None => resolve(None, overrides),
    }
}

#[cfg(test)]
mod tests {
    /// Every key of the agent's file has a row in README's agent configuration table, and
    /// every row is a key of the file.
    #[test]
    fn readme_lists_every_agent_key() {
        fn keys(prefix: &str, value: &serde_json::Value, out: &mut Vec<String>) {
            for (k, v) in value.as_object().expect("a table") {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                match v {
                    serde_json::Value::Object(_) => keys(&key, v, out),
                    _ => out.push(key),
                }
            }
        }
        let mut file = Vec::new();
        keys("", &serde_json::to_value(super::ConfigFile::default()).unwrap(), &mut file);
        file.sort();
        let readme = include_str!("../../../README.md");
        let section = readme.split("### Agent configuration").nth(1).expect("README has the table");
        let mut listed: Vec<String> = section
            .lines()
            .skip_while(|l| !l.starts_with('|'))
            .take_while(|l| l.starts_with('|'))
            .filter_map(|l| l.split('|').nth(1))
            .map(|c| c.trim().trim_matches('`').to_owned())
            .filter(|k| k != "key" && !k.starts_with("---"))
            .collect();
        listed.sort();
        assert_eq!(listed, file, "README's agent configuration table and ConfigFile differ");
    }

    use super::*;

    fn check(text: &str) -> Result<Settings, ConfigError> {
        let path = Path::new("agent.toml");
        resolve(Some(parse_config(path, text)?), &Overrides::default())
    }

    const GOOD: &str = "collector = \"https://collector.example:8443\"\n\
                        bundle = \"/etc/stallwatch/agent.pem\"\n\
                        plan_wait = \"20s\"\n\
                        [spool]\n\
                        max_reports = 100\n";

    #[test]
    fn a_good_file_gives_settings_with_defaults() {
        let s = check(GOOD).unwrap();
        assert_eq!(s.collector.to_string(), "https://collector.example:8443");
        assert_eq!(s.collector.host(), "collector.example");
        assert_eq!(s.plan_wait, Duration::from_secs(20));
        assert_eq!(s.spool_max_reports, 100);
        assert_eq!(s.spool_max_bytes, DEFAULT_MAX_BYTES);
        assert_eq!(s.state_dir, PathBuf::from(DEFAULT_STATE_DIR));
        assert_eq!(s.spool_dir(), PathBuf::from("/var/lib/stallwatch/spool"));
        assert!(s.to_string().contains("spool.max_reports  100"), "{s}");
    }

    #[test]
    fn flags_override_the_file() {
        let path = Path::new("agent.toml");
        let file = parse_config(path, GOOD).unwrap();
        let overrides = Overrides {
            collector: Some("https://other:1".into()),
            bundle: None,
            state_dir: Some("/tmp/x".into()),
        };
        let s = resolve(Some(file), &overrides).unwrap();
        assert_eq!(s.collector.to_string(), "https://other:1");
        assert_eq!(s.bundle, PathBuf::from("/etc/stallwatch/agent.pem"));
        assert_eq!(s.state_dir, PathBuf::from("/tmp/x"));
    }

    #[test]
    fn an_unknown_key_names_its_line_and_field() {
        let text = "collector = \"https://c:1\"\nbundle = \"b.pem\"\n[spool]\nmax_byts = 5\n";
        let e = check(text).unwrap_err().to_string();
        assert!(e.starts_with("agent.toml:4:1: spool.max_byts: unknown field `max_byts`"), "{e}");
        let e = check("colector = \"https://c:1\"\n").unwrap_err().to_string();
        assert!(e.starts_with("agent.toml:1:1: colector: unknown field"), "{e}");
    }

    #[test]
    fn a_wrong_type_names_its_line_and_field() {
        let text =
            "collector = \"https://c:1\"\nbundle = \"b.pem\"\n[spool]\nmax_bytes = \"big\"\n";
        let e = check(text).unwrap_err().to_string();
        assert!(e.starts_with("agent.toml:4:13: spool.max_bytes: invalid type"), "{e}");
    }

    #[test]
    fn bad_values_name_their_line_and_field() {
        let e = check("collector = \"http://c:1\"\nbundle = \"b\"\n").unwrap_err().to_string();
        assert!(
            e.starts_with("agent.toml:1:13: collector: \"http://c:1\" must start with https://"),
            "{e}"
        );
        let e = check("collector = \"https://c:1/api\"\nbundle = \"b\"\n").unwrap_err().to_string();
        assert!(e.contains("without a path"), "{e}");
        let e = check("bundle = \"b\"\ncollector = \"https://c:1\"\nplan_wait = \"2m\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("agent.toml:3:13: plan_wait: 2m is over"), "{e}");
        let e = check("bundle = \"b\"\ncollector = \"https://c:1\"\nplan_wait = \"soon\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("agent.toml:3:13: plan_wait:"), "{e}");
        let e = check("bundle = \"b\"\ncollector = \"https://c:1\"\n\n[spool]\nmax_reports = 0\n")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "agent.toml:5:15: spool.max_reports: must be above 0");
        let e = check("bundle = \"b\"\ncollector = \"https://c:1\"\nlog_level = \"loud\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("agent.toml:3:13: log_level:"), "{e}");
    }

    /// The whole line for a bad duration: file, line, column, field, input and bad token; the
    /// same helper as the collector's (`stallwatch_proto::config_file`) made it.
    #[test]
    fn a_bad_duration_names_line_column_field_and_token() {
        let text = "bundle = \"b\"\ncollector = \"https://c:1\"\n\nplan_wait = \"1.5\"\n";
        assert_eq!(
            check(text).unwrap_err().to_string(),
            "agent.toml:4:13: plan_wait: invalid duration \"1.5\": \"1.5\" has no unit \
             (use d, h, m, s, ms, us or ns)"
        );
        let text = "bundle = \"b\"\ncollector = \"https://c:1\"\nplan_wait = \"2.5s\"\n";
        assert_eq!(check(text).unwrap().plan_wait, Duration::from_millis(2500));
        // Checks across fields are located too, at the field that was given.
        let text = "bundle = \"b\"\ncollector = \"https://c:1\"\nrelay_key = \"k.pem\"\n";
        assert_eq!(
            check(text).unwrap_err().to_string(),
            "agent.toml:3:13: relay_key: relay_cert and relay_key go together: give both or neither"
        );
        // A syntax error: a position, no field.
        let e = check("bundle = \"b\"\n[spool\n").unwrap_err().to_string();
        assert!(e.starts_with("agent.toml:2:"), "{e}");
    }

    #[test]
    fn missing_settings_say_how_to_give_them() {
        let e = check("bundle = \"b\"\n").unwrap_err();
        assert_eq!(e.exit_code(), EXIT_CONFIG);
        assert!(e.to_string().contains("--collector"), "{e}");
        let e = check("collector = \"https://c:1\"\n").unwrap_err();
        assert!(e.to_string().contains("--bundle"), "{e}");
    }

    #[test]
    fn an_unreadable_file_exits_66() {
        let e =
            load(Some(Path::new("/nonexistent/agent.toml")), &Overrides::default()).unwrap_err();
        assert_eq!(e.exit_code(), EXIT_NO_INPUT);
        assert!(e.to_string().starts_with("/nonexistent/agent.toml: cannot read"), "{e}");
    }
}
