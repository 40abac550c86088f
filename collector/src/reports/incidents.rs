//! The report's incidents: what it needs to know of each (level, alert, cohorts, start, end,
//! resolution) and the one seam through which it gets them, [`IncidentSource`].
//!
//! Two sources implement it: the alert evaluator's persisted state ([`AlertState`],
//! `alerts-state.json`: the incidents the collector itself raised, open and resolved), the
//! default; and a JSON file ([`IncidentFile`], written by `seed-history`), when
//! `reports.incidents` names one. Nothing else in the report reads incidents.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Severity by user impact (DESIGN.md section 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Level {
    /// The whole service.
    P0,
    /// Part of the service.
    P1,
    /// Early warning.
    P2,
}

/// One incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Incident {
    /// Severity.
    pub level: Level,
    /// Alert name, e.g. `StallRatioHigh`.
    pub alert: String,
    /// The cohorts it affected, as label sets (`region`, `network_type`, `transport`, `repair`,
    /// `target`); a label left out means all its values. An empty list: the whole fleet.
    #[serde(default)]
    pub cohorts: Vec<BTreeMap<String, String>>,
    /// When it started, unix ms.
    pub start_unix_ms: u64,
    /// When it was resolved, unix ms; absent while open.
    #[serde(default)]
    pub end_unix_ms: Option<u64>,
    /// How it was resolved, in words.
    #[serde(default)]
    pub resolution: Option<String>,
}

impl Incident {
    /// Whether it touched `region` (a cohort of that region, or one with no region label).
    pub fn affects_region(&self, region: &str) -> bool {
        self.cohorts.is_empty()
            || self.cohorts.iter().any(|c| c.get("region").is_none_or(|r| r == region))
    }

    /// Whether it was open at some instant of `range`.
    pub fn overlaps(&self, range: &Range<u64>) -> bool {
        self.start_unix_ms < range.end && self.end_unix_ms.is_none_or(|end| end > range.start)
    }
}

/// Why incidents could not be read.
#[derive(Debug, Error)]
pub enum IncidentError {
    /// The file could not be read.
    #[error("incidents file {}: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The file is not valid.
    #[error("incidents file {}:{line}:{column}: {detail}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        detail: String,
    },
}

/// Where a report gets its incidents.
pub trait IncidentSource {
    /// Incidents that touched `region` and were open at some instant of `range` (unix ms),
    /// ordered by start.
    fn incidents(&self, region: &str, range: Range<u64>) -> Result<Vec<Incident>, IncidentError>;
}

/// No incident history connected: reports say so rather than show an empty list.
#[derive(Debug, Clone, Copy)]
pub struct NotConnected;

/// The JSON file: `{"incidents": [Incident, ...]}`.
#[derive(Debug, Clone)]
pub struct IncidentFile {
    path: PathBuf,
}

/// The file's layout.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncidentList {
    /// Every incident.
    pub incidents: Vec<Incident>,
}

impl IncidentFile {
    /// The file at `path` (read on each call, so a rewritten file is picked up).
    pub fn new(path: impl AsRef<Path>) -> IncidentFile {
        IncidentFile { path: path.as_ref().to_path_buf() }
    }

    /// Writes `incidents` to `path` as pretty JSON.
    pub fn write(path: &Path, incidents: &[Incident]) -> std::io::Result<()> {
        let list = IncidentList { incidents: incidents.to_vec() };
        let mut text = serde_json::to_string_pretty(&list).map_err(std::io::Error::other)?;
        text.push('\n');
        std::fs::write(path, text)
    }
}

impl IncidentSource for IncidentFile {
    fn incidents(&self, region: &str, range: Range<u64>) -> Result<Vec<Incident>, IncidentError> {
        let text = std::fs::read_to_string(&self.path)
            .map_err(|error| IncidentError::Read { path: self.path.clone(), error })?;
        let list: IncidentList =
            serde_json::from_str(&text).map_err(|e| IncidentError::Invalid {
                path: self.path.clone(),
                line: e.line(),
                column: e.column(),
                detail: e.to_string(),
            })?;
        let mut out: Vec<Incident> = list
            .incidents
            .into_iter()
            .filter(|i| i.affects_region(region) && i.overlaps(&range))
            .collect();
        out.sort_by_key(|i| (i.start_unix_ms, i.level));
        Ok(out)
    }
}

/// The alert evaluator's state file: the incidents it raised, open and recently resolved
/// (it keeps resolved ones for 7 days). Read on each call and never written: a report taken
/// while the collector runs sees the last evaluation.
#[derive(Debug, Clone)]
pub struct AlertState {
    path: PathBuf,
}

impl AlertState {
    /// The state file at `path` (`alerts-state.json` beside the store by default).
    pub fn new(path: impl AsRef<Path>) -> AlertState {
        AlertState { path: path.as_ref().to_path_buf() }
    }
}

impl IncidentSource for AlertState {
    fn incidents(&self, region: &str, range: Range<u64>) -> Result<Vec<Incident>, IncidentError> {
        use crate::alerts::state::{STATE_VERSION, State};
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            // No evaluation has saved a state yet: no incidents.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(IncidentError::Read { path: self.path.clone(), error }),
        };
        let invalid = |line, column, detail| IncidentError::Invalid {
            path: self.path.clone(),
            line,
            column,
            detail,
        };
        let state: State = serde_json::from_slice(&bytes)
            .map_err(|e| invalid(e.line(), e.column(), e.to_string()))?;
        if state.version != STATE_VERSION {
            return Err(invalid(
                1,
                1,
                format!("alert state version {} (this build reads {STATE_VERSION})", state.version),
            ));
        }
        let mut out: Vec<Incident> = state
            .incidents
            .all
            .values()
            .filter_map(from_alert)
            .filter(|i| i.affects_region(region) && i.overlaps(&range))
            .collect();
        out.sort_by_key(|i| (i.start_unix_ms, i.level));
        Ok(out)
    }
}

/// A raised incident as a report lists it: at the highest level it reached, with the labels
/// of what it was about. The watchdog (no impact) is not an incident for a report.
fn from_alert(i: &crate::alerts::Incident) -> Option<Incident> {
    use crate::alerts::Severity;
    let level = match i.peak {
        Severity::P0 => Level::P0,
        Severity::P1 => Level::P1,
        Severity::P2 => Level::P2,
        Severity::None => return None,
    };
    let labels: BTreeMap<String, String> =
        i.scope.labels().into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
    Some(Incident {
        level,
        alert: i.alert.name().to_owned(),
        cohorts: if labels.is_empty() { Vec::new() } else { vec![labels] },
        start_unix_ms: i.opened_unix_ms,
        end_unix_ms: i.resolved_unix_ms,
        resolution: i.resolution.clone(),
    })
}

/// The source a configuration names: the incidents file of `reports.incidents` if set, else
/// the alert evaluator's state (`alerts.state_file`, or `alerts-state.json` beside the
/// store), or none when alerts are off and no file is named.
pub fn source_for(config: &crate::config::Config) -> Option<Box<dyn IncidentSource>> {
    if let Some(path) = &config.reports.incidents {
        return Some(Box::new(IncidentFile::new(path)));
    }
    config.alerts.enabled.then(|| {
        Box::new(AlertState::new(crate::alerts::service::state_path(config)))
            as Box<dyn IncidentSource>
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incident(start: u64, end: Option<u64>, region: Option<&str>) -> Incident {
        Incident {
            level: Level::P1,
            alert: "StallRatioHigh".into(),
            cohorts: region
                .map(|r| vec![BTreeMap::from([("region".to_string(), r.to_string())])])
                .unwrap_or_default(),
            start_unix_ms: start,
            end_unix_ms: end,
            resolution: None,
        }
    }

    #[test]
    fn filters_by_region_and_overlap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("incidents.json");
        let all = [
            incident(100, Some(200), Some("sea")),
            incident(50, None, Some("eu")),
            incident(10, Some(90), Some("sea")),
            incident(150, Some(160), None),
            incident(400, None, Some("sea")),
        ];
        IncidentFile::write(&path, &all).unwrap();
        let got = IncidentFile::new(&path).incidents("sea", 95..300).unwrap();
        assert_eq!(got, vec![all[0].clone(), all[3].clone()]);
        std::fs::write(&path, "{\"incidents\": [{\"level\": \"P4\"}]}").unwrap();
        let e = IncidentFile::new(&path).incidents("sea", 0..1).unwrap_err().to_string();
        assert!(e.contains("incidents.json:1:"), "{e}");
    }

    /// The real evaluator, in virtual time over a generated history, raises an incident for a
    /// 20-minute stall wave in `sea` (a P1 from the threshold, lowered to a P2 while the last
    /// hour stays above its hour-of-week baseline) and resolves it; its saved state is the
    /// report's incident list: level (the highest reached), start, duration, cohorts and
    /// resolution as the evaluator recorded them.
    #[test]
    fn an_incident_the_evaluator_raised_is_in_the_report() {
        use crate::alerts::Alert;
        use crate::alerts::incidents::Change;
        use crate::alerts::state::{self, STATE_VERSION, State};
        use crate::alerts::tests::{Fake, Minute, Run, T0, cohort, default_settings, min};
        use crate::reports::{Lang, ReportRequest, build};

        let wave = T0 + min(30)..T0 + min(50);
        let regions = ["sea", "latam", "eu"];
        let cohorts = regions.iter().map(|r| cohort(r, "4g", "quic-stream")).collect();
        let fake = Fake::new(
            cohorts,
            Box::new(move |c, m, _| {
                let stalls = if c.region == "sea" && wave.contains(&m) { 0.03 } else { 0.001 };
                Some(Minute::viewing(3, stalls, 0.001))
            }),
        );
        let mut run = Run::new(fake, default_settings());
        run.run(T0 + 17_000, T0 + min(150), min(1));
        let opened = run.first(Alert::Stalls, "sea", crate::alerts::Severity::P1).expect("a P1");
        let id = opened.transition.id;
        let resolved = run
            .changes()
            .find(|s| s.transition.id == id && s.transition.change == Change::Resolved)
            .expect("resolved after the wave");
        let incident = &run.evaluator.incidents().all[&id];

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alerts-state.json");
        let saved = State {
            version: STATE_VERSION,
            incidents: run.evaluator.incidents().clone(),
            ..State::default()
        };
        state::save(&path, &saved).unwrap();
        let source = AlertState::new(&path);

        let period = T0..T0 + min(180);
        let got = source.incidents("sea", period.clone()).unwrap();
        assert_eq!(got.len(), 1, "the stall wave only, no watchdog: {got:?}");
        assert_eq!(got[0].level, Level::P1);
        assert_eq!(got[0].alert, "StallwatchStalls");
        assert_eq!(got[0].start_unix_ms, incident.opened_unix_ms);
        assert_eq!(got[0].end_unix_ms, Some(resolved.at));
        assert_eq!(got[0].resolution.as_deref(), Some("clear"));
        assert!(source.incidents("latam", period.clone()).unwrap().is_empty());
        assert!(source.incidents("sea", resolved.at..T0 + min(180)).unwrap().is_empty());

        // The report built over it (an empty store: only the incidents matter here).
        let spec = crate::demo::fleet::FleetSpec {
            agents: vec![crate::demo::fleet::FleetAgent::new("a", "sea", "4g", None, "360p30")],
            ..crate::demo::fleet::tests::spec()
        };
        let config =
            crate::config::parse(&crate::demo::fleet::config_text(&spec), "c.toml").unwrap();
        let store = crate::store::SqliteStore::open(dir.path().join("history.db")).unwrap();
        let request = ReportRequest { region: "sea".into(), range: period, lang: Lang::En };
        let report = build(&store, &config, Some(&source), &request, T0 + min(180)).unwrap();
        assert!(report.incidents.connected);
        let item = &report.incidents.items[..];
        assert_eq!(item.len(), 1);
        let i = &item[0];
        assert_eq!((i.level, i.alert.as_str(), i.open), (Level::P1, "StallwatchStalls", false));
        assert_eq!(i.start_unix_ms, incident.opened_unix_ms);
        assert_eq!(i.duration_minutes, (resolved.at - incident.opened_unix_ms) / 60_000);
        assert!(incident.severity < incident.peak, "it ended lower than it peaked: {incident:?}");
        assert_eq!(i.cohorts, ["sea / 4G / quic-stream / repair none / relay-sea"]);
        assert_eq!(i.resolution.as_deref(), Some("clear"));

        // A torn file is an error naming it, and is left where it is (the evaluator's own
        // load decides what to do with it).
        std::fs::write(&path, b"{\"version\": 1, \"incid").unwrap();
        let e = source.incidents("sea", 0..u64::MAX).unwrap_err().to_string();
        assert!(e.contains("alerts-state.json:1:"), "{e}");
        assert!(path.exists());
    }
}
