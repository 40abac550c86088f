//! Agent absence, from the agent registry: an agent with no report for `absence.after` is
//! absent (P2: "a single agent"). It is back only after reporting without such a gap for
//! `absence.clear_after`, so an agent that keeps dropping out and coming back (flapping) is
//! one incident, not a stream of them. An agent absent for `forget_after` is taken to be
//! decommissioned: its incident resolves, with that reason.

use std::collections::BTreeMap;

use super::{Context, Finding, Verdict, minutes_text};
use crate::alerts::incidents::{IncidentKey, Scope};
use crate::alerts::{Alert, Evidence, Method, Severity};
use crate::store::AgentFacts;

/// Per agent: absent, and since when it has been reporting again.
#[derive(Debug, Clone, Default)]
pub struct AbsenceState {
    agents: BTreeMap<String, Tracked>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Tracked {
    absent: bool,
    back_since: Option<u64>,
}

/// The key of an agent's absence incident.
pub fn key(agent: &AgentFacts) -> IncidentKey {
    IncidentKey {
        alert: Alert::AgentAbsent,
        scope: Scope {
            region: agent.region.clone(),
            network_type: agent.network_type.clone(),
            agent: agent.name.clone(),
            ..Scope::default()
        },
    }
}

impl AbsenceState {
    /// Marks an agent absent (restoring an open incident after a restart).
    pub fn restore(&mut self, agent: &str) {
        self.agents.insert(agent.to_owned(), Tracked { absent: true, back_since: None });
    }

    /// Whether `agent` counts as absent now.
    pub fn is_absent(&self, agent: &str) -> bool {
        self.agents.get(agent).is_some_and(|t| t.absent)
    }

    /// Judges every agent in the registry.
    pub fn evaluate(&mut self, ctx: &Context<'_>) -> Vec<Finding> {
        let s = ctx.settings;
        let mut out = Vec::new();
        self.agents.retain(|name, _| ctx.agents.iter().any(|a| &a.name == name));
        for agent in ctx.agents {
            let key = key(agent);
            let age = ctx.now.saturating_sub(agent.last_report_unix_ms);
            let tracked = self.agents.entry(agent.name.clone()).or_default();
            let evidence = |limit_ms: u64, text: String| Evidence {
                method: Method::Absence,
                signal: None,
                severity: Severity::P2,
                value: age as f64 / 1000.0,
                limit: limit_ms as f64 / 1000.0,
                window: minutes_text(limit_ms),
                text,
            };
            if age >= s.absence_forget_ms {
                // Clear, with the reason: the incident says why it resolved.
                *tracked = Tracked::default();
                let text = format!(
                    "agent forgotten: no report for {} (taken as decommissioned)",
                    minutes_text(s.absence_forget_ms)
                );
                let evidence = Some(evidence(s.absence_forget_ms, text));
                out.push(Finding {
                    key,
                    method: Method::Absence,
                    verdict: Verdict::Clear,
                    evidence,
                });
                continue;
            }
            if age > s.absence_after_ms {
                tracked.absent = true;
                tracked.back_since = None;
            } else if tracked.absent {
                let since = *tracked.back_since.get_or_insert(ctx.now);
                if ctx.now.saturating_sub(since) >= s.absence_clear_ms {
                    *tracked = Tracked::default();
                }
            }
            if !tracked.absent {
                out.push(Finding::quiet(key, Method::Absence, Verdict::Clear));
                continue;
            }
            let text = if tracked.back_since.is_some() {
                format!(
                    "agent {} is reporting again (last report {} ago) but has not been steady for \
                     {} yet",
                    agent.name,
                    minutes_text(age - age % 1000),
                    minutes_text(s.absence_clear_ms)
                )
            } else {
                format!(
                    "no report from agent {} ({}/{}) for {} (absent after {})",
                    agent.name,
                    agent.region,
                    agent.network_type,
                    minutes_text(age - age % 1000),
                    minutes_text(s.absence_after_ms)
                )
            };
            out.push(Finding {
                key,
                method: Method::Absence,
                verdict: Verdict::Firing(Severity::P2),
                evidence: Some(evidence(s.absence_after_ms, text)),
            });
        }
        out
    }
}

/// Whether an agent counts as reporting (for impact shares): reported within `absence.after`.
pub fn reporting(ctx: &Context<'_>, agent: &AgentFacts) -> bool {
    ctx.now.saturating_sub(agent.last_report_unix_ms) <= ctx.settings.absence_after_ms
}
