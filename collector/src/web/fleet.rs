//! The fleet page (`/`) and the rows of `/api/v1/agents`: every agent with its region,
//! network type and last report age; agents that stopped reporting stand out.

use std::fmt::Write as _;

use serde::Serialize;

use super::layout::{Page, age, escape, page};
use crate::store::AgentFacts;

/// An agent is stale (it stopped reporting) after this many of its report intervals.
pub const STALE_AFTER_INTERVALS: u64 = 3;

/// One row of the fleet view.
#[derive(Debug, Clone, Serialize)]
pub struct AgentView {
    #[serde(flatten)]
    /// What the collector knows of the agent.
    pub agent: AgentFacts,
    /// Seconds since its latest report arrived.
    pub age_seconds: u64,
    /// It missed [`STALE_AFTER_INTERVALS`] report intervals.
    pub stale: bool,
}

impl AgentView {
    /// `agent` as of `now_ms`, given the report interval its plan sets.
    pub fn of(agent: AgentFacts, report_interval_ms: u64, now_ms: u64) -> Self {
        let age_ms = now_ms.saturating_sub(agent.last_report_unix_ms);
        AgentView {
            stale: age_ms > report_interval_ms.saturating_mul(STALE_AFTER_INTERVALS),
            age_seconds: age_ms / 1000,
            agent,
        }
    }
}

/// The fleet page: stale agents first, then by region, network type and name.
pub fn render(agents: &[AgentView], plans_revision: u64) -> String {
    let mut rows: Vec<&AgentView> = agents.iter().collect();
    rows.sort_by(|a, b| {
        (!a.stale, &a.agent.region, &a.agent.network_type, &a.agent.name).cmp(&(
            !b.stale,
            &b.agent.region,
            &b.agent.network_type,
            &b.agent.name,
        ))
    });
    let stale = rows.iter().filter(|a| a.stale).count();
    let regions: std::collections::BTreeSet<&str> =
        rows.iter().map(|a| a.agent.region.as_str()).collect();
    let mut body = String::with_capacity(2048 + rows.len() * 400);
    body.push_str("<h1>Fleet</h1>");
    let _ = write!(
        body,
        "<div><span class=\"stat\">agents<b>{}</b></span><span class=\"stat\">regions<b>{}</b></span>\
         <span class=\"stat\">stale<b class=\"{}\">{stale}</b></span>\
         <span class=\"stat\">plans revision<b>{plans_revision}</b></span></div>",
        rows.len(),
        regions.len(),
        if stale > 0 { "over" } else { "" },
    );
    let _ = write!(
        body,
        "<p class=\"muted\">An agent is <strong>stale</strong> when it has not reported for \
         {STALE_AFTER_INTERVALS} of its report intervals. The page refreshes every 10 s.</p>"
    );
    if rows.is_empty() {
        body.push_str("<p>No agent has reported yet.</p>");
        return page(Page::Fleet, "Fleet", Some(10), &body);
    }
    body.push_str(
        "<table><thead><tr><th>agent</th><th>region</th><th>network type</th><th>state</th>\
         <th>last report</th><th>version</th><th>plan revision</th><th>spool depth</th>\
         <th>reports</th></tr></thead><tbody>",
    );
    for a in rows {
        let _ = write!(
            body,
            "<tr class=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td class=\"n\">{} ago</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td></tr>",
            if a.stale { "stale" } else { "ok" },
            escape(&a.agent.name),
            escape(&a.agent.region),
            escape(&a.agent.network_type),
            if a.stale {
                "<span class=\"badge P0\">STALE</span>"
            } else {
                "<span class=\"badge okb\">reporting</span>"
            },
            age(a.age_seconds),
            escape(&a.agent.version),
            a.agent.plan_revision,
            a.agent.spool_depth,
            a.agent.reports,
        );
    }
    body.push_str("</tbody></table>");
    page(Page::Fleet, "Fleet", Some(10), &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(name: &str, last_report_unix_ms: u64) -> AgentFacts {
        AgentFacts {
            name: name.into(),
            region: "sea".into(),
            network_type: "4g".into(),
            version: "0.1.0".into(),
            plan_revision: 1,
            last_report_unix_ms,
            last_seq: 3,
            spool_depth: 0,
            reports: 3,
            first_seen_unix_ms: 0,
            last_window_end_ms: last_report_unix_ms,
        }
    }

    #[test]
    fn an_agent_is_stale_after_three_missed_intervals() {
        let now = 1_000_000;
        assert!(!AgentView::of(agent("a", now - 30_000), 10_000, now).stale);
        let late = AgentView::of(agent("a", now - 30_001), 10_000, now);
        assert!(late.stale);
        assert_eq!(late.age_seconds, 30);
    }

    #[test]
    fn stale_agents_come_first_and_stand_out_and_names_are_escaped() {
        let now = 1_000_000;
        let rows = [
            AgentView::of(agent("a-fresh", now - 1_000), 10_000, now),
            AgentView::of(agent("z-<gone>", now - 600_000), 10_000, now),
        ];
        let html = render(&rows, 7);
        let gone = html.find("z-&lt;gone&gt;").expect("escaped name");
        assert!(gone < html.find("a-fresh").unwrap(), "stale first");
        assert!(html.contains("<tr class=\"stale\"><td>z-&lt;gone&gt;"));
        assert!(html.contains("STALE") && html.contains("10 min ago"));
    }
}
