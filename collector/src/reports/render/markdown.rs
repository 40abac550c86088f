//! Markdown, for pasting into tickets: the same sections as the HTML, with tables instead of
//! charts.

use std::fmt::Write as _;

use super::opt;
use crate::reports::i18n::{Lang, Texts, minutes, ms, num, pct};
use crate::reports::recommend::Severity;
use crate::reports::report::{Breakdown, Figures, Kpi, Report, Status, Trend};

/// Escapes text for a table cell or a line.
fn esc(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

pub(crate) fn kpi_value(unit: &str, v: f64) -> String {
    match unit {
        "ms" => ms(v),
        "ratio" => pct(v),
        _ => num(v),
    }
}

pub(crate) fn status_text(t: &Texts, s: Status) -> &'static str {
    match s {
        Status::Ok => t.ok,
        Status::Warn => t.warn,
        Status::Critical => t.critical,
        Status::NoSlo => t.no_slo,
        Status::NoData => t.no_data,
    }
}

pub(crate) fn slo_text(k: &Kpi) -> String {
    let cmp = if k.key == "stall_ratio" { "≥" } else { ">" };
    match (k.slo_warn, k.slo_critical) {
        (Some(w), Some(c)) => {
            format!("{cmp} {} / {cmp} {}", kpi_value(k.unit, w), kpi_value(k.unit, c))
        }
        (Some(w), None) => format!("{cmp} {}", kpi_value(k.unit, w)),
        _ => "-".into(),
    }
}

pub(crate) fn change_text(t: &Texts, k: &Kpi) -> String {
    let word = match k.trend {
        Trend::Better => t.better,
        Trend::Worse => t.worse,
        Trend::Unchanged => t.unchanged,
        Trend::None => {
            return if k.value.is_some() && k.previous.is_none() {
                t.new_figure.into()
            } else {
                "-".into()
            };
        }
    };
    match k.change {
        Some(c) => format!("{:+.0}% ({word})", c * 100.0),
        None => word.to_owned(),
    }
}

fn severity(lang: Lang, s: Severity) -> &'static str {
    match s {
        Severity::Critical => lang.pick("CRITICAL", "严重"),
        Severity::Warn => lang.pick("WARNING", "预警"),
        Severity::Info => lang.pick("NOTE", "提示"),
    }
}

fn figures_header(t: &Texts, first: &str) -> String {
    format!(
        "| {first} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n",
        t.viewing_hours,
        t.attempts,
        t.probe_success,
        t.first_frame_p50,
        t.first_frame_p95,
        t.stall_ratio,
        t.stalls_per_hour,
        t.loss,
        t.jitter_p95
    )
}

fn figures_row(label: &str, f: &Figures) -> String {
    format!(
        "| {} | {:.1} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
        esc(label),
        f.viewing_minutes / 60.0,
        f.attempts,
        opt(f.probe_success, pct),
        opt(f.first_frame_p50_ms, ms),
        opt(f.first_frame_p95_ms, ms),
        opt(f.stall_ratio, pct),
        opt(f.stalls_per_hour, num),
        opt(f.loss_ratio, pct),
        opt(f.jitter_p95_ms, ms),
    )
}

fn breakdown(out: &mut String, t: &Texts, heading: &str, first: &str, rows: &[Breakdown]) {
    let _ = write!(out, "\n## {heading}\n\n");
    out.push_str(&figures_header(t, first));
    for b in rows {
        out.push_str(&figures_row(&b.label, &b.figures));
    }
}

/// The Markdown text.
pub fn render(r: &Report) -> String {
    let lang = r.lang;
    let t = lang.texts();
    let mut out = String::with_capacity(16 * 1024);
    let _ = writeln!(out, "# {}: {} ({})\n", t.title, esc(&r.region_name), r.region);
    let _ = writeln!(
        out,
        "**{}** {} – {} ({}, {}) · **{}** {} – {} · **{}** {}\n",
        t.period,
        r.period.from_local,
        r.period.to_local,
        r.time_zone,
        r.utc_offset,
        t.previous_period,
        r.previous_period.from_local,
        r.previous_period.to_local,
        t.generated,
        r.generated_local,
    );
    let _ = writeln!(
        out,
        "**{}** {:.0} {} · {} {} · {}",
        t.data_volume,
        r.totals.viewing_minutes,
        lang.pick("viewing minutes", "分钟观看"),
        r.totals.attempts,
        lang.pick("probe attempts", "次拨测"),
        match lang {
            Lang::En => format!("{} probe agents", r.data.agents),
            Lang::Zh => format!("{} 个拨测节点", r.data.agents),
        }
    );
    if r.data.rows_unreadable > 0 {
        let _ = writeln!(out, "\n> {} {}", r.data.rows_unreadable, t.rows_unreadable);
    }

    let _ = write!(
        out,
        "\n## {}\n\n| {} | {} | {} | {} | {} | {} |\n|---|--:|---|--:|---|---|\n",
        t.summary, t.kpi, t.value, t.slo, t.previous, t.change, t.status
    );
    for k in &r.kpis {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            k.label,
            opt(k.value, |v| kpi_value(k.unit, v)),
            slo_text(k),
            opt(k.previous, |v| kpi_value(k.unit, v)),
            change_text(t, k),
            status_text(t, k.status),
        );
    }

    let _ = write!(out, "\n## {}\n\n", t.recommendations);
    for (i, rec) in r.recommendations.iter().enumerate() {
        let _ = writeln!(
            out,
            "{}. **[{}] {}**  \n   {}",
            i + 1,
            severity(lang, rec.severity),
            esc(&rec.title),
            esc(&rec.text)
        );
        for w in &rec.worked_before {
            let _ = writeln!(out, "   - {}: {}", t.worked_before, esc(w));
        }
    }

    let h = &r.heatmap;
    let _ = write!(out, "\n## {} ({})\n\n", t.heatmap, r.utc_offset);
    let hours = |hs: &[u8]| hs.iter().map(|h| format!("{h:02}:00")).collect::<Vec<_>>().join(", ");
    let _ = writeln!(
        out,
        "{}: {} · {}: {}\n",
        t.worst_hours,
        hours(&h.worst_hours),
        t.peak,
        hours(&h.peak_hours)
    );
    out.push_str("| % |");
    for hour in 0..24 {
        let _ = write!(out, " {hour:02} |");
    }
    out.push_str("\n|---|");
    out.push_str(&"--:|".repeat(24));
    out.push('\n');
    for row in &h.rows {
        let _ = write!(out, "| {} |", esc(&row.label));
        for c in &row.cells {
            let _ = write!(out, " {} |", opt(c.stall_ratio, |v| format!("{:.1}", v * 100.0)));
        }
        out.push('\n');
    }

    breakdown(&mut out, t, t.by_network, t.network_type, &r.by_network_type);
    breakdown(&mut out, t, t.by_transport, t.transport, &r.by_transport);
    breakdown(&mut out, t, t.worst_targets, t.target, &r.targets);

    let _ = write!(out, "\n## {}\n\n", t.daily);
    out.push_str(&figures_header(t, t.date));
    for d in &r.daily {
        out.push_str(&figures_row(&d.date, &d.figures));
    }

    let _ = write!(out, "\n## {}\n\n", t.incidents);
    if !r.incidents.connected {
        let _ = writeln!(out, "{}", t.incidents_not_connected);
    } else if r.incidents.items.is_empty() {
        let _ = writeln!(out, "{}", t.incidents_none);
    } else {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |\n|---|---|---|---|---|---|",
            t.level, t.alert, t.start, t.duration, t.cohorts, t.resolution
        );
        for i in &r.incidents.items {
            let duration = minutes(lang, i.duration_minutes);
            let duration = if i.open { format!("{duration} ({})", t.open) } else { duration };
            let _ = writeln!(
                out,
                "| {:?} | {} | {} | {} | {} | {} |",
                i.level,
                esc(&i.alert),
                i.start_local,
                duration,
                esc(&i.cohorts.join("; ")),
                esc(i.resolution.as_deref().unwrap_or("-")),
            );
        }
    }

    let k = &r.knowledge;
    let _ = write!(out, "\n## {}\n\n", t.knowledge);
    if !k.configured {
        let _ = writeln!(out, "{}", t.knowledge_none);
    } else {
        let _ = writeln!(out, "- {}: {} ({})", t.time_zone, r.time_zone, r.utc_offset);
        let _ = writeln!(out, "- {}: {}", t.peak_hours, k.peak_hours);
        if !k.networks.is_empty() {
            let _ = writeln!(out, "- {}: {}", t.networks_that_matter, k.networks.join(", "));
        }
        if !k.carriers.is_empty() {
            let _ = writeln!(out, "- {}: {}", t.carriers, esc(&k.carriers.join(", ")));
        }
        for issue in &k.known_issues {
            let _ = writeln!(out, "- {}: {}", t.known_issues, esc(&issue.issue));
            if let Some(w) = &issue.worked {
                let _ = writeln!(out, "  - {}: {}", t.what_worked, esc(w));
            }
        }
        if let Some(n) = &k.notes {
            let _ = writeln!(out, "- {}: {}", t.notes, esc(n));
        }
    }

    let _ = write!(out, "\n## {}\n\n", t.definitions);
    for d in &r.definitions {
        let _ = writeln!(out, "- **{}**: {}", d.figure, esc(&d.text));
    }
    let _ = writeln!(out, "\n_{}_", t.footer);
    out
}
