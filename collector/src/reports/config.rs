//! `[reports]` in the collector configuration: where incidents come from, how much data a
//! conclusion needs, and what the support team knows about each region (its time zone, usual
//! peak hours, the networks and carriers that matter, known issues and what worked before).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::recommend::RuleKind;
use super::zone::Zone;
use crate::config::Labels;

/// Default for [`ReportsSection::min_viewing_minutes`].
pub const DEFAULT_MIN_VIEWING_MINUTES: u64 = 60;

/// Peak hours used when a region names none: 20:00-23:00, the evening peak in much of the
/// world (DESIGN.md section 8).
pub const DEFAULT_PEAK_HOURS: &str = "20:00-23:00";

/// `[reports]`: regional report settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReportsSection {
    /// Incidents listed in reports from a JSON file (`seed-history` writes one) instead of the
    /// alert evaluator's state. Relative paths are resolved against the configuration file's
    /// directory. Absent: the incidents the evaluator raised (its `alerts-state.json`); with
    /// alerts off too, reports say the incident history is not connected.
    pub incidents: Option<PathBuf>,
    /// Fewest viewing minutes (play + stall time) a slice of data needs before a rule draws a
    /// conclusion from it; below that the report says the data is insufficient.
    pub min_viewing_minutes: u64,
    /// What the support team knows about each region, keyed by region (a `labels.regions`
    /// value).
    pub regions: BTreeMap<String, RegionSettings>,
}

impl Default for ReportsSection {
    fn default() -> Self {
        ReportsSection {
            incidents: None,
            min_viewing_minutes: DEFAULT_MIN_VIEWING_MINUTES,
            regions: BTreeMap::new(),
        }
    }
}

/// One region's knowledge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionSettings {
    /// Name shown in reports (default: the region label).
    #[serde(default)]
    pub name: Option<String>,
    /// Local time zone: an IANA name (`"Asia/Singapore"`) from the system tz database, or a
    /// fixed offset (`"UTC+08:00"`). Heatmaps, peak hours and dates are in this zone.
    pub time_zone: String,
    /// Usual peak hours, local, whole hours: `["20:00-23:00"]` (end exclusive; may wrap past
    /// midnight). Default: 20:00-23:00.
    #[serde(default)]
    pub peak_hours: Vec<String>,
    /// Network types that matter most here, most important first (e.g. `["4g", "wifi"]`).
    #[serde(default)]
    pub networks: Vec<String>,
    /// Carriers and ISPs that matter (free text, e.g. `"Telkomsel (ID)"`).
    #[serde(default)]
    pub carriers: Vec<String>,
    /// Issues seen before and what worked.
    #[serde(default)]
    pub known_issues: Vec<KnownIssue>,
    /// Anything else a CSM should know about this market.
    #[serde(default)]
    pub notes: Option<String>,
}

/// An issue the support team has seen in a region before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnownIssue {
    /// What happened.
    pub issue: String,
    /// What fixed or eased it.
    #[serde(default)]
    pub worked: Option<String>,
    /// The recommendation rule this experience applies to (`peak_stalls`,
    /// `slow_start_low_rtt`, `loss_bursts`, `degrading`); the report quotes `worked` beside
    /// that rule's recommendation.
    #[serde(default)]
    pub rule: Option<RuleKind>,
    /// Network types it applies to; empty: all.
    #[serde(default)]
    pub network_types: Vec<String>,
}

impl RegionSettings {
    /// Settings for a region with none configured: UTC and the default peak.
    pub fn unconfigured() -> RegionSettings {
        RegionSettings {
            name: None,
            time_zone: "UTC".into(),
            peak_hours: Vec::new(),
            networks: Vec::new(),
            carriers: Vec::new(),
            known_issues: Vec::new(),
            notes: None,
        }
    }

    /// The time zone.
    pub fn zone(&self) -> Result<Zone, super::zone::ZoneError> {
        Zone::load(&self.time_zone)
    }

    /// Peak hours as a mask over local hours 0-23.
    pub fn peak_mask(&self) -> Result<[bool; 24], String> {
        let mut mask = [false; 24];
        if self.peak_hours.is_empty() {
            return parse_hour_range(DEFAULT_PEAK_HOURS, &mut mask).map(|()| mask);
        }
        for range in &self.peak_hours {
            parse_hour_range(range, &mut mask)?;
        }
        Ok(mask)
    }
}

/// Adds `"20:00-23:00"` (whole hours, end exclusive, `24:00` allowed as an end, may wrap) to
/// `mask`.
fn parse_hour_range(text: &str, mask: &mut [bool; 24]) -> Result<(), String> {
    let bad = || format!("{text:?} is not a range of whole hours such as \"20:00-23:00\"");
    let (a, b) = text.split_once('-').ok_or_else(bad)?;
    let hour = |s: &str| -> Option<usize> {
        let (h, m) = s.trim().split_once(':')?;
        if m != "00" || h.is_empty() || h.len() > 2 || !h.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        h.parse().ok().filter(|&h| h <= 24)
    };
    let (start, end) = (hour(a).ok_or_else(bad)?, hour(b).ok_or_else(bad)?);
    if start == 24 || start == end % 24 {
        return Err(bad());
    }
    let mut h = start;
    while h != end % 24 {
        mask[h] = true;
        h = (h + 1) % 24;
    }
    Ok(())
}

/// Checks `[reports]`: every region key is an allowed region, every time zone loads, peak
/// hours parse and network types are allowed. Calls `problem(path, message)` for each problem.
pub(crate) fn check(
    reports: &ReportsSection,
    labels: &Labels,
    problem: &mut dyn FnMut(&str, String),
) {
    for (region, settings) in &reports.regions {
        let path = format!("reports.regions.{region}");
        if !labels.allows_region(region) {
            problem(
                &path,
                format!("{region:?} is not in labels.regions ({})", labels.regions.join(", ")),
            );
        }
        if let Err(e) = settings.zone() {
            problem(&format!("{path}.time_zone"), e.to_string());
        }
        for (i, range) in settings.peak_hours.iter().enumerate() {
            if let Err(e) = parse_hour_range(range, &mut [false; 24]) {
                problem(&format!("{path}.peak_hours[{i}]"), e);
            }
        }
        for (i, network) in settings.networks.iter().enumerate() {
            if !labels.allows_network_type(network) {
                problem(
                    &format!("{path}.networks[{i}]"),
                    format!(
                        "{network:?} is not in labels.network_types ({})",
                        labels.network_types.join(", ")
                    ),
                );
            }
        }
        for (i, issue) in settings.known_issues.iter().enumerate() {
            for (j, network) in issue.network_types.iter().enumerate() {
                if !labels.allows_network_type(network) {
                    problem(
                        &format!("{path}.known_issues[{i}].network_types[{j}]"),
                        format!("{network:?} is not in labels.network_types"),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_hours_parse_and_wrap() {
        let mut s = RegionSettings::unconfigured();
        let mask = s.peak_mask().unwrap();
        assert_eq!((0..24).filter(|&h| mask[h]).collect::<Vec<_>>(), [20, 21, 22]);
        s.peak_hours = vec!["22:00-02:00".into(), "12:00-13:00".into()];
        let mask = s.peak_mask().unwrap();
        assert_eq!((0..24).filter(|&h| mask[h]).collect::<Vec<_>>(), [0, 1, 12, 22, 23]);
        for bad in ["20-23", "20:30-23:00", "20:00-20:00", "24:00-01:00", "x"] {
            s.peak_hours = vec![bad.into()];
            assert!(s.peak_mask().is_err(), "{bad}");
        }
    }
}
