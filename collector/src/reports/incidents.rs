//! The report's incidents: what it needs to know of each (level, alert, cohorts, start, end,
//! resolution) and the one seam through which it gets them, [`IncidentSource`].
//!
//! Today the source is a JSON file ([`IncidentFile`], written by `seed-history`); the alert
//! evaluator's persisted incident state will implement the same trait. Nothing else in the
//! report reads incidents.

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
    /// The cohorts it affected, as label sets (`region`, `network_type`, `transport`,
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

/// The source a configuration names: its incidents file, or none.
pub fn source_for(config: &crate::config::Config) -> Option<IncidentFile> {
    config.reports.incidents.as_ref().map(IncidentFile::new)
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
        let dir = std::env::temp_dir().join(format!("sw-incidents-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("incidents.json");
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
        let _ = std::fs::remove_dir_all(dir);
    }
}
