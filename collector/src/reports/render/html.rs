//! One self-contained HTML file: inline CSS and inline SVG, no scripts, no fonts or images
//! fetched from anywhere (a Content-Security-Policy forbids it), readable on a laptop and
//! printable (print CSS keeps colours and avoids splitting sections).

use std::fmt::Write as _;

use super::markdown::{change_text, kpi_value, status_text};
use super::{opt, svg};
use crate::reports::i18n::{Lang, Texts, minutes, ms, num, pct};
use crate::reports::recommend::Severity;
use crate::reports::report::{Breakdown, Figures, Report, SloView, Status, Trend};

const CSS: &str = r#"
:root{--ink:#1d2733;--muted:#5b6776;--line:#dfe3e8;--bg:#f6f7f9;--accent:#1f5fbf;--ok:#1a7f37;--warn:#a15c00;--crit:#b42318;--okbg:#e6f4ea;--warnbg:#fff4d6;--critbg:#fde7e5}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--ink);font:14px/1.5 -apple-system,"Segoe UI",Roboto,"Noto Sans","Noto Sans CJK SC","PingFang SC","Microsoft YaHei",sans-serif}
header.top{background:#14213d;color:#fff;padding:22px 32px 18px}
header.top .brand{font-size:12px;letter-spacing:.08em;text-transform:uppercase;opacity:.75}
header.top h1{margin:4px 0 8px;font-size:26px;font-weight:650}
header.top .meta{display:flex;flex-wrap:wrap;gap:6px 22px;font-size:13px;opacity:.92}
header.top .meta b{font-weight:600;opacity:.8;margin-right:4px}
main{max-width:1140px;margin:0 auto;padding:20px 32px 40px}
section{background:#fff;border:1px solid var(--line);border-radius:10px;padding:18px 22px;margin:0 0 18px}
h2{font-size:17px;margin:0 0 12px;font-weight:650}
h3{font-size:14px;margin:0 0 8px;font-weight:600;color:var(--muted)}
.kpis{display:grid;grid-template-columns:repeat(4,1fr);gap:12px;background:none;border:none;padding:0}
.kpi{background:#fff;border:1px solid var(--line);border-radius:10px;padding:12px 14px;border-top:4px solid var(--line)}
.kpi.ok{border-top-color:var(--ok)}.kpi.warn{border-top-color:#e0a100}.kpi.critical{border-top-color:var(--crit)}
.kpi .label{font-size:12.5px;color:var(--muted)}
.kpi .value{font-size:24px;font-weight:650;margin:2px 0 4px;font-variant-numeric:tabular-nums}
.kpi .line{font-size:12px;color:var(--muted);display:flex;justify-content:space-between;gap:6px}
.chip{display:inline-block;font-size:11.5px;font-weight:600;padding:1px 8px;border-radius:10px;background:#eef1f4;color:var(--muted)}
.chip.ok{background:var(--okbg);color:var(--ok)}.chip.warn{background:var(--warnbg);color:var(--warn)}.chip.critical{background:var(--critbg);color:var(--crit)}
.better{color:var(--ok)}.worse{color:var(--crit)}
.recs{list-style:none;margin:0;padding:0}
.rec{border:1px solid var(--line);border-left:5px solid #9aa5b1;border-radius:8px;padding:10px 14px;margin:0 0 10px}
.rec.critical{border-left-color:var(--crit)}.rec.warn{border-left-color:#e0a100}.rec.info{border-left-color:#9aa5b1}
.rec .title{font-weight:650}
.rec p{margin:4px 0}
.rec .ev{font-size:12px;color:var(--muted)}
.rec .worked{font-size:13px;background:#f2f6fc;border-radius:6px;padding:5px 10px;margin-top:6px}
table{border-collapse:collapse;width:100%;font-size:13px;font-variant-numeric:tabular-nums}
th{text-align:right;font-weight:600;color:var(--muted);border-bottom:2px solid var(--line);padding:5px 6px;vertical-align:bottom;font-size:12px}
td{text-align:right;border-bottom:1px solid var(--line);padding:5px 6px;white-space:nowrap}
th:first-child,td:first-child{text-align:left}
td.ok{color:var(--ok)}td.warn{color:var(--warn);font-weight:600}td.critical{color:var(--crit);font-weight:650}
td.text,th.text{text-align:left;white-space:normal}
.note{color:var(--muted);font-size:12.5px;margin:0 0 10px}
.two{display:grid;grid-template-columns:1fr 1fr;gap:18px}
.chart{width:100%;height:auto;display:block}
.chart text{font-size:11px;fill:#4a5563}
.chart .axis.peak{font-weight:700;fill:var(--ink)}
.chart .rowlabel{font-size:12px;fill:var(--ink)}.chart .rowlabel.strong{font-weight:700}
.chart .cell{font-size:10px;fill:#1d2733}.chart .cell.light{fill:#fff}
.chart .peakbox{fill:none;stroke:#14213d;stroke-width:1.6;stroke-dasharray:4 2}
.chart .grid{stroke:#e8ebef;stroke-width:1}
.chart .line{fill:none;stroke-width:2.2}.chart .line.current{stroke:var(--accent)}.chart .line.previous{stroke:#98a2b3;stroke-dasharray:5 4}
.chart .line.ff{stroke:#6b3fa0}.chart .ffdot{fill:#6b3fa0}.chart .axis.ff{fill:#6b3fa0}
.chart .dot{fill:var(--accent)}
.chart .slo{stroke-width:1.4;stroke-dasharray:3 3}.chart .slo.good{stroke:var(--ok)}.chart .slo.warn{stroke:#e0a100}
.chart .bar{fill:#5b8def}.chart .bar.warn{fill:#f0b429}.chart .bar.critical{fill:#d64545}
dl.kv{display:grid;grid-template-columns:max-content 1fr;gap:6px 18px;margin:0}
dl.kv dt{color:var(--muted);font-weight:600}dl.kv dd{margin:0}
dl.defs dt{font-weight:650;margin-top:8px}dl.defs dd{margin:2px 0 0;color:#36414e}
.lvl{display:inline-block;min-width:28px;text-align:center;font-weight:700;border-radius:4px;padding:0 5px;color:#fff}
.lvl.P0{background:var(--crit)}.lvl.P1{background:#d97706}.lvl.P2{background:#6b7785}
footer{max-width:1140px;margin:0 auto;padding:0 32px 30px;color:var(--muted);font-size:12px}
@media screen and (max-width:900px){.kpis{grid-template-columns:repeat(2,1fr)}.two{grid-template-columns:1fr}main{padding:14px}}
@page{size:A4;margin:12mm}
@media print{
body{background:#fff;font-size:11.5px;-webkit-print-color-adjust:exact;print-color-adjust:exact}
header.top{padding:12px 16px}main{padding:10px 0;max-width:none}
section{break-inside:avoid;border-color:#ccd2d9;padding:10px 14px;margin-bottom:10px}
.kpis{grid-template-columns:repeat(4,1fr);gap:8px}.kpi .value{font-size:19px}.two{grid-template-columns:1fr 1fr;gap:12px}
.rec,tr{break-inside:avoid}h2{break-after:avoid}
}
"#;

/// Escapes text for element content and attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The card's short SLO line: the warning threshold, as a target.
fn target_text(k: &crate::reports::report::Kpi) -> String {
    match k.slo_warn {
        Some(w) if k.key == "stall_ratio" => format!("SLO < {}", kpi_value(k.unit, w)),
        Some(w) => format!("SLO ≤ {}", kpi_value(k.unit, w)),
        None => String::new(),
    }
}

fn status_class(s: Status) -> &'static str {
    match s {
        Status::Ok => "ok",
        Status::Warn => "warn",
        Status::Critical => "critical",
        Status::NoSlo | Status::NoData => "",
    }
}

/// The class of a value against warn/critical thresholds (`strict`: strictly above warns).
fn band(v: Option<f64>, warn: f64, critical: f64, strict: bool) -> &'static str {
    let beyond = |v: f64, l: f64| if strict { v > l } else { v >= l };
    match v {
        Some(v) if beyond(v, critical) => "critical",
        Some(v) if beyond(v, warn) => "warn",
        Some(_) => "ok",
        None => "",
    }
}

fn figures_head(t: &Texts, first: &str) -> String {
    format!(
        "<thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th>\
         <th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr></thead>",
        esc(first),
        esc(t.viewing_hours),
        esc(t.attempts),
        esc(t.probe_success),
        esc(t.first_frame_p50),
        esc(t.first_frame_p95),
        esc(t.stall_ratio),
        esc(t.stalls_per_hour),
        esc(t.loss),
        esc(t.jitter_p95),
        esc(t.rtt_p95),
    )
}

fn figures_cells(label: &str, f: &Figures, slo: &SloView) -> String {
    format!(
        "<tr><td>{}</td><td>{:.1}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td>\
         <td class=\"{}\">{}</td><td class=\"{}\">{}</td><td>{}</td><td class=\"{}\">{}</td>\
         <td class=\"{}\">{}</td><td class=\"{}\">{}</td></tr>",
        esc(label),
        f.viewing_minutes / 60.0,
        f.attempts,
        opt(f.probe_success, pct),
        band(f.first_frame_p50_ms, slo.first_frame_good_ms, slo.first_frame_warn_ms, true),
        opt(f.first_frame_p50_ms, ms),
        band(f.first_frame_p95_ms, slo.first_frame_warn_ms, slo.first_frame_critical_ms, true),
        opt(f.first_frame_p95_ms, ms),
        band(f.stall_ratio, slo.stall_ratio_warn, slo.stall_ratio_critical, false),
        opt(f.stall_ratio, pct),
        opt(f.stalls_per_hour, num),
        band(f.loss_ratio, slo.loss_warn, slo.loss_critical, true),
        opt(f.loss_ratio, pct),
        band(f.jitter_p95_ms, slo.jitter_warn_ms, slo.jitter_critical_ms, true),
        opt(f.jitter_p95_ms, ms),
        band(f.rtt_p95_ms, slo.rtt_warn_ms, f64::INFINITY, true),
        opt(f.rtt_p95_ms, ms),
    )
}

fn breakdown(out: &mut String, r: &Report, heading: &str, first: &str, rows: &[Breakdown]) {
    let t = r.lang.texts();
    let _ =
        write!(out, "<section><h2>{}</h2><table>{}<tbody>", esc(heading), figures_head(t, first));
    for b in rows {
        out.push_str(&figures_cells(&b.label, &b.figures, &r.slo));
    }
    out.push_str("</tbody></table></section>");
}

/// The HTML document.
pub fn render(r: &Report) -> String {
    let lang = r.lang;
    let t = lang.texts();
    let mut o = String::with_capacity(160 * 1024);
    let title = format!("{} · {}", t.title, r.region_name);
    let _ = write!(
        o,
        "<!doctype html><html lang=\"{}\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
         style-src 'unsafe-inline'; img-src data:\">\
         <meta name=\"generator\" content=\"stallwatch-collector report\">\
         <title>{}</title><style>{CSS}</style></head><body>",
        lang.pick("en", "zh-CN"),
        esc(&title)
    );
    let _ = write!(
        o,
        "<header class=\"top\"><div class=\"brand\">stallwatch · {}</div><h1>{}</h1><div class=\"meta\">\
         <span><b>{}</b>{} – {}</span><span><b>{}</b>{} ({})</span><span><b>{}</b>{} – {}</span>\
         <span><b>{}</b>{}</span><span><b>{}</b>{}</span></div></header><main>",
        esc(&r.region),
        esc(&title),
        esc(t.period),
        esc(&r.period.from_local),
        esc(&r.period.to_local),
        esc(t.time_zone),
        esc(&r.time_zone),
        esc(&r.utc_offset),
        esc(t.previous_period),
        esc(&r.previous_period.from_local),
        esc(&r.previous_period.to_local),
        esc(t.data_volume),
        esc(&match lang {
            Lang::En => format!(
                "{:.0} viewing hours · {} attempts · {} probe agents",
                r.totals.viewing_minutes / 60.0,
                r.totals.attempts,
                r.data.agents
            ),
            Lang::Zh => format!(
                "观看 {:.0} 小时 · 拨测 {} 次 · {} 个拨测节点",
                r.totals.viewing_minutes / 60.0,
                r.totals.attempts,
                r.data.agents
            ),
        }),
        esc(t.generated),
        esc(&r.generated_local),
    );
    if r.data.rows_unreadable > 0 {
        let _ = write!(
            o,
            "<section><p class=\"note\">{} {}</p></section>",
            r.data.rows_unreadable,
            esc(t.rows_unreadable)
        );
    }

    // Headline figures.
    o.push_str("<section class=\"kpis\">");
    for k in &r.kpis {
        // The arrow shows which way the value moved; its colour whether that is better.
        let arrow = match (k.trend, k.value, k.previous) {
            (Trend::Better | Trend::Worse, Some(v), Some(p)) => format!(
                "<span class=\"{}\">{} </span>",
                if k.trend == Trend::Better { "better" } else { "worse" },
                if v > p { '▲' } else { '▼' }
            ),
            _ => String::new(),
        };
        let _ = write!(
            o,
            "<div class=\"kpi {}\"><div class=\"label\">{}</div><div class=\"value\">{}</div>\
             <div class=\"line\"><span class=\"chip {}\">{}</span><span>{}</span></div>\
             <div class=\"line\"><span>{} {}</span><span>{arrow}{}</span></div></div>",
            status_class(k.status),
            esc(&k.label),
            opt(k.value, |v| kpi_value(k.unit, v)),
            status_class(k.status),
            esc(status_text(t, k.status)),
            esc(&target_text(k)),
            esc(t.previous),
            opt(k.previous, |v| kpi_value(k.unit, v)),
            esc(&change_text(t, k)),
        );
    }
    o.push_str("</section>");

    // Recommendations.
    let _ = write!(o, "<section><h2>{}</h2><ol class=\"recs\">", esc(t.recommendations));
    for rec in &r.recommendations {
        let class = match rec.severity {
            Severity::Critical => "critical",
            Severity::Warn => "warn",
            Severity::Info => "info",
        };
        let label = match rec.severity {
            Severity::Critical => t.critical,
            Severity::Warn => t.warn,
            Severity::Info => lang.pick("note", "提示"),
        };
        let _ = write!(
            o,
            "<li class=\"rec {class}\"><div class=\"title\"><span class=\"chip {class}\">{}</span> {}</div><p>{}</p>",
            esc(label),
            esc(&rec.title),
            esc(&rec.text)
        );
        for w in &rec.worked_before {
            let _ = write!(
                o,
                "<div class=\"worked\"><b>{}:</b> {}</div>",
                esc(t.worked_before),
                esc(w)
            );
        }
        o.push_str("</li>");
    }
    o.push_str("</ol></section>");

    // Heatmap.
    let h = &r.heatmap;
    let hours = |hs: &[u8]| hs.iter().map(|h| format!("{h:02}:00")).collect::<Vec<_>>().join(", ");
    let _ = write!(
        o,
        "<section><h2>{} <span class=\"chip\">{} {}</span></h2><p class=\"note\">{} {}: <b>{}</b>.</p>{}</section>",
        esc(t.heatmap),
        esc(&r.time_zone),
        esc(&r.utc_offset),
        esc(t.heatmap_note),
        esc(t.worst_hours),
        esc(&hours(&h.worst_hours)),
        svg::heatmap(h, &r.slo, t),
    );

    // Distributions.
    let _ = write!(
        o,
        "<section><h2>{}</h2><div class=\"two\"><div><h3>{}</h3>{}</div><div><h3>{}</h3>{}</div></div></section>",
        esc(t.distributions),
        esc(t.first_frame_cdf),
        svg::cdf(&r.first_frame_cdf, &r.previous_first_frame_cdf, &r.slo, t, t.previous),
        esc(t.stall_durations),
        svg::stall_bars(&r.stall_durations, t),
    );

    // Day by day.
    let _ = write!(
        o,
        "<section><h2>{}</h2>{}<table>{}<tbody>",
        esc(t.daily),
        svg::daily(&r.daily, &r.slo, t),
        figures_head(t, t.date)
    );
    for d in &r.daily {
        o.push_str(&figures_cells(&d.date, &d.figures, &r.slo));
    }
    o.push_str("</tbody></table></section>");

    breakdown(&mut o, r, t.by_network, t.network_type, &r.by_network_type);
    breakdown(&mut o, r, t.by_transport, t.transport, &r.by_transport);
    breakdown(&mut o, r, t.worst_targets, t.target, &r.targets);

    // Incidents.
    let _ = write!(o, "<section><h2>{}</h2>", esc(t.incidents));
    if !r.incidents.connected {
        let _ = write!(o, "<p class=\"note\">{}</p>", esc(t.incidents_not_connected));
    } else if r.incidents.items.is_empty() {
        let _ = write!(o, "<p class=\"note\">{}</p>", esc(t.incidents_none));
    } else {
        let _ = write!(
            o,
            "<table><thead><tr><th class=\"text\">{}</th><th class=\"text\">{}</th><th class=\"text\">{}</th>\
             <th>{}</th><th class=\"text\">{}</th><th class=\"text\">{}</th></tr></thead><tbody>",
            esc(t.level),
            esc(t.alert),
            esc(t.start),
            esc(t.duration),
            esc(t.cohorts),
            esc(t.resolution)
        );
        for i in &r.incidents.items {
            let level = format!("{:?}", i.level);
            let duration = minutes(lang, i.duration_minutes);
            let duration = if i.open { format!("{duration} · {}", t.open) } else { duration };
            let _ = write!(
                o,
                "<tr><td><span class=\"lvl {level}\">{level}</span></td><td class=\"text\">{}</td>\
                 <td class=\"text\">{}</td><td>{}</td><td class=\"text\">{}</td><td class=\"text\">{}</td></tr>",
                esc(&i.alert),
                esc(&i.start_local),
                esc(&duration),
                esc(&i.cohorts.join("; ")),
                esc(i.resolution.as_deref().unwrap_or("–")),
            );
        }
        o.push_str("</tbody></table>");
    }
    o.push_str("</section>");

    // Region knowledge.
    let k = &r.knowledge;
    let _ = write!(o, "<section><h2>{}</h2>", esc(t.knowledge));
    if !k.configured {
        let _ = write!(o, "<p class=\"note\">{}</p>", esc(t.knowledge_none));
    } else {
        let _ = write!(
            o,
            "<dl class=\"kv\"><dt>{}</dt><dd>{} ({})</dd><dt>{}</dt><dd>{}</dd>",
            esc(t.time_zone),
            esc(&r.time_zone),
            esc(&r.utc_offset),
            esc(t.peak_hours),
            esc(&k.peak_hours)
        );
        if !k.networks.is_empty() {
            let _ = write!(
                o,
                "<dt>{}</dt><dd>{}</dd>",
                esc(t.networks_that_matter),
                esc(&k.networks.join(", "))
            );
        }
        if !k.carriers.is_empty() {
            let _ =
                write!(o, "<dt>{}</dt><dd>{}</dd>", esc(t.carriers), esc(&k.carriers.join(", ")));
        }
        for issue in &k.known_issues {
            let _ = write!(o, "<dt>{}</dt><dd>{}", esc(t.known_issues), esc(&issue.issue));
            if let Some(w) = &issue.worked {
                let _ = write!(o, "<br><b>{}:</b> {}", esc(t.what_worked), esc(w));
            }
            o.push_str("</dd>");
        }
        if let Some(n) = &k.notes {
            let _ = write!(o, "<dt>{}</dt><dd>{}</dd>", esc(t.notes), esc(n));
        }
        o.push_str("</dl>");
    }
    o.push_str("</section>");

    // Definitions.
    let _ = write!(o, "<section><h2>{}</h2><dl class=\"defs\">", esc(t.definitions));
    for d in &r.definitions {
        let _ = write!(o, "<dt>{}</dt><dd>{}</dd>", esc(&d.figure), esc(&d.text));
    }
    let s = &r.slo;
    let _ = write!(
        o,
        "<dt>SLO</dt><dd>{}: p50 ≤ {} · p95 ≤ {} ({} > {}) · {} < {} ({} ≥ {}) · {} ≤ {} ({} > {}) · {} ≤ {} ({} > {}) · RTT ≤ {}</dd>",
        esc(lang.pick("First frame", "首帧")),
        ms(s.first_frame_good_ms),
        ms(s.first_frame_warn_ms),
        esc(t.critical),
        ms(s.first_frame_critical_ms),
        esc(t.stall_ratio),
        pct(s.stall_ratio_warn),
        esc(t.critical),
        pct(s.stall_ratio_critical),
        esc(t.loss),
        pct(s.loss_warn),
        esc(t.critical),
        pct(s.loss_critical),
        esc(lang.pick("jitter", "抖动")),
        ms(s.jitter_warn_ms),
        esc(t.critical),
        ms(s.jitter_critical_ms),
        ms(s.rtt_warn_ms),
    );
    o.push_str("</dl></section></main>");
    let _ = writeln!(
        o,
        "<footer>{} · {} {} · {} ({}–{} UTC)</footer></body></html>",
        esc(t.footer),
        esc(t.generated),
        esc(&r.generated_local),
        esc(&r.region),
        esc(&r.period.from_utc),
        esc(&r.period.to_utc),
    );
    o
}
