//! Incidents: one open incident per alert and scope (a cohort, a path, an agent, the fleet),
//! opened when a rule fires, escalated at once when its severity rises, lowered and resolved
//! only after the lower level (or all clear) has held for `resolve_after`, so a flapping
//! condition stays one incident and pages once.
//!
//! Missing data never resolves anything: when a rule that was firing has too little data to
//! judge, the incident holds. Only after a day without data does it resolve ("no data").

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Alert, Evidence, Method, Severity};
use crate::store::Cohort;

/// An incident open this long without data to judge it is resolved as "no data", ms.
pub const NO_DATA_RESOLVE_MS: u64 = 24 * 3_600_000;
/// Resolved incidents are kept (for `/api/v1/alerts` and late deliveries) this long, ms.
pub const KEEP_RESOLVED_MS: u64 = 7 * 24 * 3_600_000;
/// ... and at most this many.
pub const KEEP_RESOLVED_MAX: usize = 1000;
/// Severity changes kept per incident.
const KEEP_CHANGES: usize = 32;

/// What an incident is about: a cohort (region, network type, transport, repair, target), a
/// path (no transport), an agent, or the fleet. Unused parts are empty (`repair` is empty in
/// state files written before it existed; see [`Scope::cohort_of`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Scope {
    /// Region.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub region: String,
    /// Network type.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub network_type: String,
    /// Transport.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub transport: String,
    /// Repair mode of a cohort's scope (`nack`, `none`, `unknown`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub repair: String,
    /// Target (relay).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub target: String,
    /// Agent name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub agent: String,
}

impl Scope {
    /// A cohort's scope.
    pub fn cohort(c: &Cohort) -> Self {
        Scope {
            region: c.region.clone(),
            network_type: c.network_type.clone(),
            transport: c.transport.clone(),
            repair: c.repair.clone(),
            target: c.target.clone(),
            agent: String::new(),
        }
    }

    /// The cohort a cohort scope names. A scope saved before the repair mode was part of the
    /// cohort reads it as unlabelled data does (`repair_when_unlabelled`), the cohort its
    /// history migrated to.
    pub fn cohort_of(&self) -> Cohort {
        let cohort = Cohort::new(&self.region, &self.network_type, &self.transport, &self.target);
        if self.repair.is_empty() { cohort } else { cohort.with_repair(&self.repair) }
    }

    /// The labels that are set, in a fixed order.
    pub fn labels(&self) -> Vec<(&'static str, &str)> {
        [
            ("region", self.region.as_str()),
            ("network_type", self.network_type.as_str()),
            ("transport", self.transport.as_str()),
            ("repair", self.repair.as_str()),
            ("target", self.target.as_str()),
            ("agent", self.agent.as_str()),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .collect()
    }

    /// `sea/4g/udp (nack) -> relay-1`, `agent sea-4g-1 (sea/4g)`, or `fleet`.
    pub fn describe(&self) -> String {
        if !self.agent.is_empty() {
            return format!("agent {} ({}/{})", self.agent, self.region, self.network_type);
        }
        let parts: Vec<&str> = [&self.region, &self.network_type, &self.transport]
            .into_iter()
            .filter(|s| !s.is_empty())
            .map(String::as_str)
            .collect();
        let mut parts = parts.join("/");
        if !self.repair.is_empty() {
            parts = format!("{parts} ({})", self.repair);
        }
        match (parts.is_empty(), self.target.is_empty()) {
            (true, true) => "fleet".into(),
            (false, true) => parts,
            (true, false) => format!("-> {}", self.target),
            (false, false) => format!("{parts} -> {}", self.target),
        }
    }
}

/// The identity of an incident: one open incident per key at a time.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct IncidentKey {
    /// The alert.
    pub alert: Alert,
    /// What it is about.
    pub scope: Scope,
}

/// Open or resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Firing.
    Open,
    /// Over.
    Resolved,
}

/// A severity the incident had, whose Alertmanager alert (the label set with that severity)
/// must be resolved: it ended when the incident changed severity or resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retired {
    /// The severity.
    pub severity: Severity,
    /// When the incident took it (Alertmanager `startsAt`).
    pub since_unix_ms: u64,
    /// When it left it (`endsAt`).
    pub until_unix_ms: u64,
}

/// One change of an incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    /// Opened.
    Opened,
    /// Severity raised.
    Escalated,
    /// Severity lowered.
    Deescalated,
    /// Resolved.
    Resolved,
}

/// A recorded change: what, when, from which severity to which.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeRecord {
    /// What changed.
    pub change: Change,
    /// When, unix ms.
    pub at_unix_ms: u64,
    /// Severity before (`None` for an opening).
    pub from: Option<Severity>,
    /// Severity after.
    pub to: Severity,
}

/// An incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    /// Unique, increasing.
    pub id: u64,
    /// The alert.
    pub alert: Alert,
    /// What it is about.
    pub scope: Scope,
    /// Current (or, resolved, last) severity.
    pub severity: Severity,
    /// Highest severity reached.
    pub peak: Severity,
    /// Open or resolved.
    pub status: Status,
    /// Opened, unix ms.
    pub opened_unix_ms: u64,
    /// Current severity since, unix ms.
    pub severity_since_unix_ms: u64,
    /// Resolved, unix ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_unix_ms: Option<u64>,
    /// Why it resolved (`clear`, `no data`, `agent forgotten`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<String>,
    /// Last evaluation that touched it, unix ms.
    pub updated_unix_ms: u64,
    /// Rules firing at the last evaluation.
    pub methods: Vec<Method>,
    /// Their evidence (the last firing evidence is kept after resolution).
    pub evidence: Vec<Evidence>,
    /// One line for people.
    pub summary: String,
    /// All rules clear since, unix ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clear_since_unix_ms: Option<u64>,
    /// Firing below the current severity since, unix ms, and the level it would drop to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lower_since: Option<(u64, Severity)>,
    /// No data to judge the firing rules since, unix ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_data_since_unix_ms: Option<u64>,
    /// Severities left, whose Alertmanager alerts must be resolved.
    #[serde(default)]
    pub retired: Vec<Retired>,
    /// Its changes, oldest first (the last few).
    #[serde(default)]
    pub changes: Vec<ChangeRecord>,
}

impl Incident {
    /// Its key.
    pub fn key(&self) -> IncidentKey {
        IncidentKey { alert: self.alert, scope: self.scope.clone() }
    }

    /// Whether it is open.
    pub fn is_open(&self) -> bool {
        self.status == Status::Open
    }

    fn record(&mut self, change: Change, at: u64, from: Option<Severity>, to: Severity) {
        self.changes.push(ChangeRecord { change, at_unix_ms: at, from, to });
        if self.changes.len() > KEEP_CHANGES {
            self.changes.remove(0);
        }
    }

    fn set_severity(&mut self, now: u64, to: Severity) {
        self.retired.push(Retired {
            severity: self.severity,
            since_unix_ms: self.severity_since_unix_ms,
            until_unix_ms: now,
        });
        self.severity = to;
        self.severity_since_unix_ms = now;
        self.peak = self.peak.max(to);
        self.lower_since = None;
    }
}

/// What the rules say about one key at one evaluation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Assessment {
    /// The highest severity a rule asks for, `None` when no rule fires.
    pub severity: Option<Severity>,
    /// Rules firing.
    pub firing: Vec<Method>,
    /// Rules without enough data to judge.
    pub insufficient: Vec<Method>,
    /// Evidence of the firing rules (most severe first).
    pub evidence: Vec<Evidence>,
    /// Why it is clear, when that is worth saying (`agent forgotten`).
    pub note: Option<String>,
}

/// A change to pass on to the receivers.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// The incident id.
    pub id: u64,
    /// What changed.
    pub change: Change,
    /// Severity before.
    pub from: Option<Severity>,
    /// Severity after.
    pub to: Severity,
}

/// All incidents, open and recently resolved.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Incidents {
    /// The next id.
    pub next_id: u64,
    /// Incidents by id.
    pub all: BTreeMap<u64, Incident>,
}

impl Incidents {
    /// The open incident of `key`, if any.
    pub fn open(&self, key: &IncidentKey) -> Option<&Incident> {
        self.all
            .values()
            .rev()
            .find(|i| i.is_open() && i.alert == key.alert && i.scope == key.scope)
    }

    /// Every open incident.
    pub fn open_incidents(&self) -> impl Iterator<Item = &Incident> {
        self.all.values().filter(|i| i.is_open())
    }

    /// Applies one evaluation's assessments at `now`; keys not assessed count as having no
    /// data. Returns what changed, in id order.
    pub fn apply(
        &mut self,
        now: u64,
        assessments: &BTreeMap<IncidentKey, Assessment>,
        resolve_after_ms: u64,
    ) -> Vec<Transition> {
        let mut out = Vec::new();
        let open: BTreeMap<IncidentKey, u64> =
            self.open_incidents().map(|i| (i.key(), i.id)).collect();
        for (key, a) in assessments {
            match (a.severity, open.get(key)) {
                (Some(severity), None) => {
                    let id = self.next_id.max(1);
                    self.next_id = id + 1;
                    let mut incident = Incident {
                        id,
                        alert: key.alert,
                        scope: key.scope.clone(),
                        severity,
                        peak: severity,
                        status: Status::Open,
                        opened_unix_ms: now,
                        severity_since_unix_ms: now,
                        resolved_unix_ms: None,
                        resolution: None,
                        updated_unix_ms: now,
                        methods: a.firing.clone(),
                        evidence: a.evidence.clone(),
                        summary: summary(key, severity, &a.evidence),
                        clear_since_unix_ms: None,
                        lower_since: None,
                        no_data_since_unix_ms: None,
                        retired: Vec::new(),
                        changes: Vec::new(),
                    };
                    incident.record(Change::Opened, now, None, severity);
                    out.push(Transition { id, change: Change::Opened, from: None, to: severity });
                    self.all.insert(id, incident);
                }
                (Some(severity), Some(&id)) => {
                    let Some(inc) = self.all.get_mut(&id) else { continue };
                    inc.updated_unix_ms = now;
                    inc.clear_since_unix_ms = None;
                    inc.no_data_since_unix_ms = None;
                    inc.methods = a.firing.clone();
                    inc.evidence = a.evidence.clone();
                    let from = inc.severity;
                    if severity > from {
                        inc.set_severity(now, severity);
                        inc.record(Change::Escalated, now, Some(from), severity);
                        out.push(Transition {
                            id,
                            change: Change::Escalated,
                            from: Some(from),
                            to: severity,
                        });
                    } else if severity < from {
                        // The highest level seen while lower is where it lands.
                        let (since, level) = match inc.lower_since {
                            Some((since, level)) => (since, level.max(severity)),
                            None => (now, severity),
                        };
                        inc.lower_since = Some((since, level));
                        if now.saturating_sub(since) >= resolve_after_ms {
                            inc.set_severity(now, level);
                            inc.record(Change::Deescalated, now, Some(from), level);
                            out.push(Transition {
                                id,
                                change: Change::Deescalated,
                                from: Some(from),
                                to: level,
                            });
                        }
                    } else {
                        inc.lower_since = None;
                    }
                    inc.summary = summary(key, inc.severity, &inc.evidence);
                }
                (None, Some(&id)) => {
                    let Some(inc) = self.all.get_mut(&id) else { continue };
                    inc.updated_unix_ms = now;
                    let blocked = a.insufficient.iter().any(|m| inc.methods.contains(m));
                    if blocked {
                        if self.no_data(id, now, &mut out) {
                            continue;
                        }
                    } else {
                        inc.no_data_since_unix_ms = None;
                        let since = *inc.clear_since_unix_ms.get_or_insert(now);
                        if now.saturating_sub(since) >= resolve_after_ms {
                            let why = a.note.clone().unwrap_or_else(|| "clear".into());
                            out.push(self.resolve(id, now, why));
                        }
                    }
                }
                (None, None) => {}
            }
        }
        for (key, id) in &open {
            if !assessments.contains_key(key) {
                self.no_data(*id, now, &mut out);
            }
        }
        self.forget_old(now);
        out.sort_by_key(|t| t.id);
        out
    }

    /// Counts an evaluation without data; resolves after [`NO_DATA_RESOLVE_MS`]. True if it
    /// resolved.
    fn no_data(&mut self, id: u64, now: u64, out: &mut Vec<Transition>) -> bool {
        let Some(inc) = self.all.get_mut(&id) else { return false };
        let since = *inc.no_data_since_unix_ms.get_or_insert(now);
        if now.saturating_sub(since) >= NO_DATA_RESOLVE_MS {
            out.push(self.resolve(id, now, "no data".into()));
            return true;
        }
        false
    }

    fn resolve(&mut self, id: u64, now: u64, why: String) -> Transition {
        let inc = self.all.get_mut(&id).expect("resolving a known incident");
        let from = inc.severity;
        inc.retired.push(Retired {
            severity: from,
            since_unix_ms: inc.severity_since_unix_ms,
            until_unix_ms: now,
        });
        inc.status = Status::Resolved;
        inc.resolved_unix_ms = Some(now);
        inc.resolution = Some(why);
        inc.methods.clear();
        inc.clear_since_unix_ms = None;
        inc.lower_since = None;
        inc.no_data_since_unix_ms = None;
        inc.record(Change::Resolved, now, Some(from), from);
        Transition { id, change: Change::Resolved, from: Some(from), to: from }
    }

    /// Drops resolved incidents past [`KEEP_RESOLVED_MS`] or beyond [`KEEP_RESOLVED_MAX`],
    /// and retired label sets older than that.
    fn forget_old(&mut self, now: u64) {
        self.all.retain(|_, i| {
            i.is_open()
                || i.resolved_unix_ms.is_some_and(|r| now.saturating_sub(r) < KEEP_RESOLVED_MS)
        });
        let resolved: Vec<u64> = self.all.values().filter(|i| !i.is_open()).map(|i| i.id).collect();
        if resolved.len() > KEEP_RESOLVED_MAX {
            for id in &resolved[..resolved.len() - KEEP_RESOLVED_MAX] {
                self.all.remove(id);
            }
        }
        for inc in self.all.values_mut() {
            inc.retired.retain(|r| now.saturating_sub(r.until_unix_ms) < KEEP_RESOLVED_MS);
        }
    }
}

/// `P1 StallwatchStalls sea/4g/udp -> relay-1: stall ratio 1.42 % >= 1.00 % in 2 of the last 3 minutes`.
pub fn summary(key: &IncidentKey, severity: Severity, evidence: &[Evidence]) -> String {
    let what = evidence.first().map_or_else(|| key.alert.title().to_owned(), |e| e.text.clone());
    format!("{severity} {} {}: {what}", key.alert.name(), key.scope.describe())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> IncidentKey {
        IncidentKey {
            alert: Alert::Stalls,
            scope: Scope { region: "sea".into(), network_type: "4g".into(), ..Scope::default() },
        }
    }

    fn firing(severity: Severity, method: Method) -> BTreeMap<IncidentKey, Assessment> {
        BTreeMap::from([(
            key(),
            Assessment { severity: Some(severity), firing: vec![method], ..Assessment::default() },
        )])
    }

    fn quiet(insufficient: &[Method]) -> BTreeMap<IncidentKey, Assessment> {
        BTreeMap::from([(
            key(),
            Assessment { insufficient: insufficient.to_vec(), ..Assessment::default() },
        )])
    }

    const MIN: u64 = 60_000;

    #[test]
    fn escalates_at_once_lowers_and_resolves_only_after_holding() {
        let mut inc = Incidents::default();
        let t = inc.apply(0, &firing(Severity::P2, Method::Trend), 5 * MIN);
        assert_eq!(
            t,
            vec![Transition { id: 1, change: Change::Opened, from: None, to: Severity::P2 }]
        );
        let t = inc.apply(MIN, &firing(Severity::P1, Method::Threshold), 5 * MIN);
        assert_eq!(t[0].change, Change::Escalated);
        // Lower for 4 minutes: still P1.
        for m in 2..6 {
            assert!(inc.apply(m * MIN, &firing(Severity::P2, Method::Trend), 5 * MIN).is_empty());
        }
        let t = inc.apply(7 * MIN, &firing(Severity::P2, Method::Trend), 5 * MIN);
        assert_eq!(t[0].change, Change::Deescalated);
        assert_eq!(inc.all[&1].severity, Severity::P2);
        assert_eq!(inc.all[&1].retired.len(), 2, "the P2 and P1 label sets ended");
        // Clear for 5 minutes: resolved, once.
        for m in 8..13 {
            assert!(inc.apply(m * MIN, &quiet(&[]), 5 * MIN).is_empty());
        }
        let t = inc.apply(13 * MIN, &quiet(&[]), 5 * MIN);
        assert_eq!(t[0].change, Change::Resolved);
        assert!(inc.apply(14 * MIN, &quiet(&[]), 5 * MIN).is_empty());
        assert_eq!(inc.all[&1].peak, Severity::P1);
    }

    #[test]
    fn a_flapping_condition_stays_one_incident() {
        let mut inc = Incidents::default();
        let mut opened = 0;
        for m in 0..60 {
            let a = if m % 4 < 2 { firing(Severity::P1, Method::Threshold) } else { quiet(&[]) };
            opened += inc
                .apply(m * MIN, &a, 5 * MIN)
                .iter()
                .filter(|t| t.change == Change::Opened)
                .count();
        }
        assert_eq!(opened, 1);
        assert_eq!(inc.all.len(), 1);
    }

    #[test]
    fn missing_data_holds_the_incident_for_a_day() {
        let mut inc = Incidents::default();
        inc.apply(0, &firing(Severity::P1, Method::Threshold), 5 * MIN);
        // The rule that fired has no data: hold, however long the others are clear.
        for m in 1..100 {
            assert!(inc.apply(m * MIN, &quiet(&[Method::Threshold]), 5 * MIN).is_empty());
        }
        // Not assessed at all (the cohort is gone): same.
        assert!(inc.apply(200 * MIN, &BTreeMap::new(), 5 * MIN).is_empty());
        let t = inc.apply(MIN + NO_DATA_RESOLVE_MS, &BTreeMap::new(), 5 * MIN);
        assert_eq!(t[0].change, Change::Resolved);
        assert_eq!(inc.all[&1].resolution.as_deref(), Some("no data"));
    }

    #[test]
    fn a_rule_without_data_that_was_not_firing_does_not_hold() {
        let mut inc = Incidents::default();
        inc.apply(0, &firing(Severity::P2, Method::Trend), 0);
        let t = inc.apply(MIN, &quiet(&[Method::Baseline]), 0);
        assert_eq!(t[0].change, Change::Resolved);
    }
}
