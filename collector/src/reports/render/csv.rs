//! CSV for spreadsheets: one row per slice of data (the period, the previous period, each
//! network type, transport, target, local day, and local hour as `NETWORK/HH` or `all/HH`),
//! the same columns for all, in base units (ms, ratios as fractions). Incidents and
//! recommendations are in the other formats.

use std::fmt::Write as _;

use crate::reports::report::{Figures, Report};

const HEADER: &str = "region,section,scope,viewing_minutes,attempts,probe_success,\
first_frame_p50_ms,first_frame_p95_ms,stall_ratio,stalls,stalls_per_hour,loss_ratio,\
jitter_p95_ms,rtt_p95_ms";

/// Quotes a field when it needs it (RFC 4180).
fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

fn num(v: Option<f64>) -> String {
    v.map_or_else(String::new, |v| format!("{}", (v * 1e6).round() / 1e6))
}

fn row(out: &mut String, region: &str, section: &str, scope: &str, f: &Figures) {
    let _ = writeln!(
        out,
        "{},{section},{},{},{},{},{},{},{},{},{},{},{},{}",
        field(region),
        field(scope),
        num(Some(f.viewing_minutes)),
        f.attempts,
        num(f.probe_success),
        num(f.first_frame_p50_ms),
        num(f.first_frame_p95_ms),
        num(f.stall_ratio),
        f.stalls,
        num(f.stalls_per_hour),
        num(f.loss_ratio),
        num(f.jitter_p95_ms),
        num(f.rtt_p95_ms),
    );
}

/// The CSV text.
pub fn render(r: &Report) -> String {
    let mut out = String::with_capacity(16 * 1024);
    out.push_str(HEADER);
    out.push('\n');
    let region = &r.region;
    let period = format!("{}/{}", r.period.from_utc, r.period.to_utc);
    row(&mut out, region, "period", &period, &r.totals);
    let previous = format!("{}/{}", r.previous_period.from_utc, r.previous_period.to_utc);
    row(&mut out, region, "previous_period", &previous, &r.previous_totals);
    for (section, rows) in [
        ("network_type", &r.by_network_type),
        ("transport", &r.by_transport),
        ("target", &r.targets),
    ] {
        for b in rows {
            row(&mut out, region, section, &b.name, &b.figures);
        }
    }
    for d in &r.daily {
        row(&mut out, region, "day", &d.date, &d.figures);
    }
    for heat in &r.heatmap.rows {
        for c in &heat.cells {
            let _ = writeln!(
                out,
                "{},hour_local,{}/{:02},{},,,,,{},,{},{},,",
                field(region),
                field(&heat.network_type),
                c.hour,
                num(Some(c.viewing_minutes)),
                num(c.stall_ratio),
                num(c.stalls_per_hour),
                num(c.loss_ratio),
            );
        }
    }
    out
}
