//! Regional reports over a week: 14 days of generated history for 4 regions (`seed-history`'s
//! scenario, 5-minute reports from 17 agents, stored through `HistoryStore::commit` and
//! maintained as the collector does: the last 2 days as minute rows, older days as hour rows),
//! then a 7-day report per region. Times reading and computing (`build`), and rendering each
//! format; prints the HTML size. Run: `cargo bench -p stallwatch-collector --bench report`
//!
//! The history is kept in `target/bench-report-history` and reused when present (generating
//! it takes minutes); delete the directory to generate it again.
#![allow(clippy::disallowed_methods, reason = "a benchmark reads the clock to time itself")]
#![cfg_attr(
    test,
    allow(dead_code, reason = "built as a libtest bench until Cargo.toml sets harness = false")
)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use stallwatch_collector::config;
use stallwatch_collector::reports::incidents::{IncidentFile, IncidentSource};
use stallwatch_collector::reports::seed::{Scenario, SeedOptions, seed};
use stallwatch_collector::reports::{Format, Lang, ReportRequest, build, render};
use stallwatch_collector::store::SqliteStore;

/// 2026-11-20T00:00:00Z.
const END_MS: u64 = 1_795_132_800_000;
const DAY_MS: u64 = 86_400_000;
const RUNS: usize = 5;

fn main() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-report-history");
    // Written last, so an interrupted generation is not mistaken for a history.
    let complete = dir.join("complete");
    if !complete.exists() {
        let _ = std::fs::remove_dir_all(&dir);
        let options = SeedOptions {
            scenario: Scenario { seed: 1, end_ms: END_MS, days: 14, interval_ms: 300_000 },
            regions: Vec::new(),
        };
        let started = Instant::now();
        let done = seed(&dir, &options, |p| {
            eprintln!(
                "  generating: day {}/{} ({} reports, {:.0} s)",
                p.day,
                p.days,
                p.reports,
                started.elapsed().as_secs_f64()
            );
        })
        .expect("seed");
        println!("generated {} reports in {:.1} s", done.reports, started.elapsed().as_secs_f64());
        std::fs::write(&complete, b"").expect("mark the history complete");
    }
    let config = config::load(dir.join("collector.toml")).expect("config");
    let store = SqliteStore::open(&config.storage.path).expect("store");
    let incidents = IncidentFile::new(dir.join("incidents.json"));
    let range = END_MS - 7 * DAY_MS..END_MS;
    println!(
        "| region | rows read | build (read + compute): wall, median of {RUNS} | CPU of that thread | render html | md | csv | json | HTML size |"
    );
    println!("|---|--:|--:|--:|--:|--:|--:|--:|--:|");
    let mut all = Duration::ZERO;
    for region in ["sea", "latam", "eu", "me"] {
        let request = ReportRequest { region: region.into(), range: range.clone(), lang: Lang::En };
        let mut builds = Vec::new();
        let mut cpu = Vec::new();
        let mut report = None;
        for _ in 0..RUNS {
            let (t, c) = (Instant::now(), thread_cpu());
            let r =
                build(&store, &config, Some(&incidents as &dyn IncidentSource), &request, END_MS)
                    .expect("report");
            builds.push(t.elapsed());
            cpu.push(thread_cpu() - c);
            report = Some(r);
        }
        let report = report.expect("at least one run");
        builds.sort();
        cpu.sort();
        let mut renders = Vec::new();
        let mut html_len = 0;
        for format in [Format::Html, Format::Md, Format::Csv, Format::Json] {
            let mut times = Vec::new();
            for _ in 0..RUNS {
                let t = Instant::now();
                let text = render(&report, format);
                times.push(t.elapsed());
                if format == Format::Html {
                    html_len = text.len();
                }
            }
            times.sort();
            renders.push(times[RUNS / 2]);
        }
        all += builds[RUNS / 2] + renders[0];
        println!(
            "| {region} | {} | {:.1} ms | {:.0} ms | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {:.0} KiB |",
            report.data.rows,
            ms(builds[RUNS / 2]),
            ms(cpu[RUNS / 2]),
            ms(renders[0]),
            ms(renders[1]),
            ms(renders[2]),
            ms(renders[3]),
            html_len as f64 / 1024.0,
        );
        assert!(html_len < 1 << 20, "HTML under 1 MB");
    }
    println!("all four regions, build + HTML: {:.1} ms", ms(all));
}

/// CPU time (user + system) of the calling thread, from `/proc` (10 ms resolution): what the
/// work cost whatever else the machine runs.
fn thread_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    // Fields after the command name (which ends with ')'): utime and stime are 14 and 15.
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks: u64 =
        fields.get(11..13).map_or(0, |f| f.iter().filter_map(|v| v.parse::<u64>().ok()).sum());
    Duration::from_millis(ticks * 10)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
