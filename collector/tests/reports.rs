//! Regional reports against generated history (`seed-history`, through the store's normal
//! write path): the JSON report's numbers against values computed here from the generator's
//! own raw values (not through the report code), the heatmap's worst hours against the
//! generated local peak, the peak-hour recommendation with its numbers, the HTML in headless
//! Chromium (no network request, no console error; a screenshot and a PDF are kept), and the
//! command line and HTTP entry points.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::Value;
use stallwatch_collector::config::{self, Config};
use stallwatch_collector::reports::cli::{PeriodSpec, report_from_config};
use stallwatch_collector::reports::seed::{
    self, AttemptKey, PEAK_HOURS, Scenario, SeedOptions, TRANSPORTS, attempt, regions,
};
use stallwatch_collector::reports::{Format, Lang, render, zone::Zone};
use stallwatch_tests::cdp;

const DAY_MS: u64 = 86_400_000;
/// 2026-11-20T00:00:00Z.
const END_MS: u64 = 1_795_132_800_000;
const INTERVAL_MS: u64 = 600_000;
/// The report's period: the last two days (minute rows); the previous period is the day
/// before it, which maintenance has folded into hour rows.
const FROM_MS: u64 = END_MS - 2 * DAY_MS;

struct Fixture {
    dir: PathBuf,
    config: Config,
    scenario: Scenario,
}

/// Three days of `sea`, generated once per test binary.
fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        // Kept: a static is never dropped, so a TempDir here would not clean up either; the
        // name says which test left it.
        let dir = stallwatch_tests::scratch_dir("reports-test").keep();
        let scenario = Scenario { seed: 42, end_ms: END_MS, days: 3, interval_ms: INTERVAL_MS };
        let options = SeedOptions { scenario: scenario.clone(), regions: vec!["sea".into()] };
        let seeded = seed::seed(&dir, &options, |_| {}).expect("seed history");
        let config = config::load(&seeded.config).expect("the generated config is valid");
        Fixture { dir, config, scenario }
    })
}

fn report_json(lang: Lang) -> Value {
    let f = fixture();
    let period = PeriodSpec::Between("2026-11-18T00:00:00Z".into(), "2026-11-20T00:00:00Z".into());
    let report = report_from_config(&f.config, "sea", &period, lang, END_MS + 3_600_000)
        .unwrap_or_else(|e| panic!("{}", e.message));
    serde_json::from_str(&render(&report, Format::Json)).unwrap()
}

/// What the generator produced for `sea` in `[from, to)`, added up here.
#[derive(Default)]
struct Raw {
    first_frames: Vec<u64>,
    jitter: Vec<(u64, u64)>,
    attempts: u64,
    failures: u64,
    play_ns: u64,
    stall_ns: u64,
    stalls: u64,
    expected: u64,
    lost: u64,
    /// (stall ns, viewing ns) by network type and local hour.
    hours: BTreeMap<(String, u8), (u64, u64)>,
}

fn raw(from: u64, to: u64) -> Raw {
    let f = fixture();
    let sea = regions().into_iter().find(|r| r.name == "sea").unwrap();
    let zone = Zone::load(sea.time_zone).unwrap();
    let mut out = Raw::default();
    let mut start = from;
    while start < to {
        let hour = zone.local_hour(start).hour;
        for &(agent, network_type) in sea.agents {
            for target in sea.relays {
                for transport in TRANSPORTS {
                    let key = AttemptKey {
                        region: &sea,
                        agent,
                        network_type,
                        target,
                        transport,
                        start_ms: start,
                    };
                    let a = attempt(&f.scenario, &key, &zone);
                    out.attempts += 1;
                    if a.failure.is_some() {
                        out.failures += 1;
                        continue;
                    }
                    out.first_frames.push(a.first_frame_us);
                    out.jitter.extend(&a.jitter_us);
                    out.play_ns += a.play_ns;
                    out.stall_ns += a.stall_ns;
                    out.stalls += a.stalls_us.len() as u64;
                    out.expected += a.expected;
                    out.lost += a.lost;
                    let cell = out.hours.entry((network_type.to_owned(), hour)).or_default();
                    cell.0 += a.stall_ns;
                    cell.1 += a.stall_ns + a.play_ns;
                }
            }
        }
        start += INTERVAL_MS;
    }
    out
}

/// Nearest-rank quantile of weighted values: the smallest value whose cumulative weight
/// reaches `ceil(q * total)`.
fn quantile(values: &[(u64, u64)], q: f64) -> u64 {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let total: u64 = sorted.iter().map(|(_, w)| w).sum();
    let rank = ((q * total as f64).ceil() as u64).max(1);
    let mut seen = 0;
    for (v, w) in sorted {
        seen += w;
        if seen >= rank {
            return v;
        }
    }
    unreachable!()
}

/// A report quantile (ms) is the top of the HDR bucket holding the raw one: at or above it,
/// by less than 1/1024 of it (3 significant figures).
fn assert_hdr_close(what: &str, report_ms: &Value, raw_us: u64) {
    let got =
        (report_ms.as_f64().unwrap_or_else(|| panic!("{what} missing")) * 1000.0).round() as u64;
    assert!(
        got >= raw_us && got - raw_us <= raw_us / 1024 + 1,
        "{what}: report {got} µs, raw {raw_us} µs"
    );
}

fn assert_exact(what: &str, report: &Value, raw: f64) {
    let got = report.as_f64().unwrap_or_else(|| panic!("{what} missing"));
    assert!((got - raw).abs() <= 1e-9 * raw.abs().max(1e-12), "{what}: report {got}, raw {raw}");
}

#[test]
fn json_figures_equal_the_generated_raw_values() {
    let json = report_json(Lang::En);
    let now = raw(FROM_MS, END_MS);
    let t = &json["totals"];
    assert!(now.first_frames.len() > 5_000, "enough attempts to mean something");
    let ff: Vec<(u64, u64)> = now.first_frames.iter().map(|&v| (v, 1)).collect();
    assert_hdr_close("first_frame_p50_ms", &t["first_frame_p50_ms"], quantile(&ff, 0.5));
    assert_hdr_close("first_frame_p95_ms", &t["first_frame_p95_ms"], quantile(&ff, 0.95));
    assert_hdr_close("jitter_p95_ms", &t["jitter_p95_ms"], quantile(&now.jitter, 0.95));
    let viewing = (now.play_ns + now.stall_ns) as f64;
    assert_exact("stall_ratio", &t["stall_ratio"], now.stall_ns as f64 / viewing);
    assert_exact("stalls_per_hour", &t["stalls_per_hour"], now.stalls as f64 / (viewing / 3600e9));
    assert_exact("loss_ratio", &t["loss_ratio"], now.lost as f64 / now.expected as f64);
    assert_exact(
        "probe_success",
        &t["probe_success"],
        1.0 - now.failures as f64 / now.attempts as f64,
    );
    assert_exact("viewing_minutes", &t["viewing_minutes"], viewing / 60e9);
    assert_eq!(t["attempts"], now.attempts);
    assert_eq!(t["first_frames"], now.first_frames.len());
    // The headline figures are the same numbers.
    let kpi = |key: &str| {
        json["kpis"].as_array().unwrap().iter().find(|k| k["key"] == key).unwrap().clone()
    };
    assert_eq!(kpi("first_frame_p95_ms")["value"], t["first_frame_p95_ms"]);
    assert_eq!(kpi("stall_ratio")["value"], t["stall_ratio"]);

    // The previous period, read from hour rows after downsampling, adds up the same way.
    // History starts a day before the period.
    let before = raw(fixture().scenario.start_ms(), FROM_MS);
    let p = &json["previous_totals"];
    let ff: Vec<(u64, u64)> = before.first_frames.iter().map(|&v| (v, 1)).collect();
    assert!(!ff.is_empty());
    assert_hdr_close("previous first_frame_p95_ms", &p["first_frame_p95_ms"], quantile(&ff, 0.95));
    let viewing = (before.play_ns + before.stall_ns) as f64;
    assert_exact("previous stall_ratio", &p["stall_ratio"], before.stall_ns as f64 / viewing);
    assert_eq!(
        json["incidents"]["items"].as_array().unwrap().len(),
        2,
        "the P1 and the P0 fall in the period"
    );
}

#[test]
fn heatmap_worst_hours_are_the_generated_local_peak() {
    let json = report_json(Lang::En);
    let generated = raw(FROM_MS, END_MS);
    let heat = &json["heatmap"];
    let worst: Vec<u64> =
        heat["worst_hours"].as_array().unwrap().iter().map(|h| h.as_u64().unwrap()).collect();
    let mut sorted = worst.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, PEAK_HOURS.map(u64::from), "worst hours {worst:?} (local, UTC+8)");
    // Every cell of the all-networks row is the raw ratio of its local hour.
    let all = &heat["rows"][0];
    assert_eq!(all["network_type"], "all");
    for cell in all["cells"].as_array().unwrap() {
        let hour = cell["hour"].as_u64().unwrap() as u8;
        let (stall, viewing) = generated
            .hours
            .iter()
            .filter(|((_, h), _)| *h == hour)
            .fold((0u64, 0u64), |acc, (_, (s, v))| (acc.0 + s, acc.1 + v));
        assert_exact(&format!("hour {hour}"), &cell["stall_ratio"], stall as f64 / viewing as f64);
    }
}

#[test]
fn peak_stall_recommendation_quotes_its_numbers() {
    let generated = raw(FROM_MS, END_MS);
    let (mut peak, mut off) = ((0u64, 0u64), (0u64, 0u64));
    for ((network, hour), (s, v)) in &generated.hours {
        if network == "4g" {
            let side = if PEAK_HOURS.contains(hour) { &mut peak } else { &mut off };
            side.0 += s;
            side.1 += v;
        }
    }
    let (peak, off) = (peak.0 as f64 / peak.1 as f64, off.0 as f64 / off.1 as f64);
    assert!(peak > 3.0 * off, "the generated peak is what the rule looks for");
    for lang in [Lang::En, Lang::Zh] {
        let json = report_json(lang);
        let recs = json["recommendations"].as_array().unwrap();
        let rec = recs
            .iter()
            .find(|r| r["kind"] == "peak_stalls" && r["scope"] == "4g")
            .unwrap_or_else(|| panic!("no 4G peak recommendation in {recs:#?}"));
        let ev = |name: &str| {
            rec["evidence"].as_array().unwrap().iter().find(|e| e["name"] == name).unwrap()["value"]
                .clone()
        };
        assert_exact("peak_stall_ratio", &ev("peak_stall_ratio"), peak);
        assert_exact("off_peak_stall_ratio", &ev("off_peak_stall_ratio"), off);
        let text = rec["text"].as_str().unwrap();
        for number in [
            format!("{:.2}%", peak * 100.0),
            format!("{:.2}%", off * 100.0),
            format!("{:.1}", peak / off),
        ] {
            assert!(text.contains(&number), "{number} not in {text:?}");
        }
        let advice = match lang {
            Lang::En => "backup line",
            Lang::Zh => "备用线路",
        };
        assert!(text.contains(advice), "{text}");
        assert!(
            !rec["worked_before"].as_array().unwrap().is_empty(),
            "the region's known issue is quoted"
        );
    }
}

#[test]
fn html_renders_in_chromium_without_requests_or_console_errors() {
    let chromium = std::env::var_os("STALLWATCH_CHROMIUM")
        .map_or_else(|| PathBuf::from(cdp::CHROMIUM), PathBuf::from);
    if !chromium.exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{} is missing: CI must install Debian's chromium (.ci/run)",
            chromium.display()
        );
        eprintln!(
            "skipped: {} not found (apt-get install chromium, or set STALLWATCH_CHROMIUM)",
            chromium.display()
        );
        return;
    }
    let f = fixture();
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-screenshots");
    std::fs::create_dir_all(&out).unwrap();
    let mut browser = cdp::Browser::start(&chromium);

    // The detector catches what it must: a request and a console error.
    let control = f.dir.join("control.html");
    std::fs::write(
        &control,
        "<!doctype html><html><body><img src=\"http://127.0.0.1:9/x.png\">\
         <script>console.error('control')</script></body></html>",
    )
    .unwrap();
    let url = format!("file://{}", control.display());
    let load = browser.load(&url);
    assert!(load.requests.iter().any(|r| r.starts_with("http://127.0.0.1:9/")), "{load:?}");
    assert!(load.errors.iter().any(|e| e.contains("control")), "{load:?}");

    for lang in [Lang::En, Lang::Zh] {
        let period = PeriodSpec::Between("2026-11-18".into(), "2026-11-20".into());
        let report = report_from_config(&f.config, "sea", &period, lang, END_MS)
            .unwrap_or_else(|e| panic!("{}", e.message));
        let html = render(&report, Format::Html);
        let path = f.dir.join(format!("sea-{}.html", lang.code()));
        std::fs::write(&path, &html).unwrap();
        let url = format!("file://{}", path.display());
        let load = browser.load(&url);
        assert_eq!(load.requests, vec![url.clone()], "the report made network requests");
        assert!(load.errors.is_empty(), "console errors: {:?}", load.errors);
        let png = browser.screenshot();
        assert!(png.starts_with(b"\x89PNG") && png.len() > 50_000, "a real screenshot");
        std::fs::write(out.join(format!("sea-{}.png", lang.code())), png).unwrap();
        let pdf = browser.pdf();
        assert!(pdf.starts_with(b"%PDF"));
        std::fs::write(out.join(format!("sea-{}.pdf", lang.code())), pdf).unwrap();
    }
    eprintln!("screenshots and PDFs in {}", out.display());
}

/// The store holds each generated agent under the identity of a certificate the seed's own
/// fleet CA issued (the store takes only verified identities), and a directory that already
/// holds a CA is refused before anything is written.
#[test]
fn seeded_agents_are_the_ones_its_ca_issued() {
    use stallwatch_collector::pki::Ca;
    use stallwatch_collector::store::{HistoryStore, SqliteStore};
    let f = fixture();
    let ca = Ca::load(&f.dir.join("ca")).expect("the seed's fleet CA");
    let mut issued: Vec<(String, String, String)> = ca
        .issued()
        .unwrap()
        .agents
        .into_iter()
        .map(|a| (a.name, a.region, a.network_type))
        .collect();
    let store = SqliteStore::open(f.dir.join("history.db")).unwrap();
    let mut stored: Vec<(String, String, String)> =
        store.agents().unwrap().into_iter().map(|a| (a.name, a.region, a.network_type)).collect();
    let sea = regions().into_iter().find(|r| r.name == "sea").unwrap();
    let mut generated: Vec<(String, String, String)> = sea
        .agents
        .iter()
        .map(|(name, network)| (name.to_string(), "sea".to_string(), network.to_string()))
        .collect();
    for list in [&mut issued, &mut stored, &mut generated] {
        list.sort();
    }
    assert_eq!(issued, generated, "one certificate per generated agent");
    assert_eq!(stored, generated);

    let other = f.dir.join("has-a-ca");
    Ca::init(&other.join("ca"), time::OffsetDateTime::UNIX_EPOCH, false).unwrap();
    let options = SeedOptions { scenario: f.scenario.clone(), regions: vec!["sea".into()] };
    let refused = seed::seed(&other, &options, |_| {}).unwrap_err();
    assert!(matches!(refused, seed::SeedError::Exists(ref p) if p.ends_with("ca")), "{refused}");
    assert!(!other.join("history.db").exists() && !other.join("collector.toml").exists());
}

#[test]
fn command_line_writes_reports_and_names_bad_input() {
    let f = fixture();
    let bin = env!("CARGO_BIN_EXE_stallwatch-collector");
    let config = f.dir.join("collector.toml");
    let out = f.dir.join("sea.csv");
    let run = |args: &[&str]| std::process::Command::new(bin).args(args).output().unwrap();
    let ok = run(&[
        "report",
        "--config",
        config.to_str().unwrap(),
        "--region",
        "sea",
        "--from",
        "2026-11-18",
        "--to",
        "2026-11-20",
        "--format",
        "csv",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let csv = std::fs::read_to_string(&out).unwrap();
    assert!(csv.starts_with("region,section,scope,viewing_minutes,"), "{csv}");
    assert!(csv.lines().any(|l| l.starts_with("sea,network_type,4g,")), "{csv}");
    assert_eq!(csv.lines().filter(|l| l.starts_with("sea,hour_local,all/")).count(), 24);

    let unknown =
        run(&["report", "--config", config.to_str().unwrap(), "--region", "mars", "--out", "-"]);
    assert_eq!(unknown.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(stderr.contains("unknown region \"mars\"") && stderr.contains("sea"), "{stderr}");

    let bad_time = run(&[
        "report",
        "--config",
        config.to_str().unwrap(),
        "--region",
        "sea",
        "--from",
        "yesterday",
        "--to",
        "2026-11-20",
        "--out",
        "-",
    ]);
    assert_eq!(bad_time.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&bad_time.stderr).contains("\"yesterday\" is not a time"));

    let missing = run(&[
        "report",
        "--config",
        "/nonexistent/collector.toml",
        "--region",
        "sea",
        "--out",
        "-",
    ]);
    assert_eq!(missing.status.code(), Some(66));

    // A bad time zone in the region knowledge is a configuration error with its line.
    let text = std::fs::read_to_string(&config).unwrap().replace("Asia/Singapore", "Asia/Singapur");
    let broken = f.dir.join("broken.toml");
    std::fs::write(&broken, text).unwrap();
    let invalid =
        run(&["report", "--config", broken.to_str().unwrap(), "--region", "sea", "--out", "-"]);
    assert_eq!(invalid.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&invalid.stderr);
    assert!(
        stderr.contains("broken.toml:")
            && stderr
                .contains("reports.regions.sea.time_zone: unknown time zone \"Asia/Singapur\""),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_serves_reports_from_the_running_collector() {
    use stallwatch_collector::demo::fleet::{FleetAgent, FleetSpec, free_relay_port, write_fleet};
    let f = fixture();
    let dir = f.dir.join("web");
    // Its own copy of the store: the running collector maintains (downsamples) it.
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(f.dir.join("history.db"), dir.join("history.db")).unwrap();
    let spec = FleetSpec {
        relay_agent: "relay-sg-1".into(),
        relay_region: "sea".into(),
        relay_port: free_relay_port().unwrap(),
        agents: vec![FleetAgent::new("sea-4g-1", "sea", "4g", None, "360p30")],
        every: "20s",
        duration: "15s",
        report_interval: "5s",
        ingest: "127.0.0.1:0".into(),
        metrics: "127.0.0.1:0".into(),
    };
    let files =
        write_fleet(&dir, &spec, time::OffsetDateTime::from_unix_timestamp(1_795_132_800).unwrap())
            .unwrap();
    let text =
        std::fs::read_to_string(&files.config).unwrap().replace("collector.db", "history.db");
    let reports = format!(
        "\n[reports]\nincidents = {:?}\n[reports.regions.sea]\ntime_zone = \"Asia/Singapore\"\n",
        f.dir.join("incidents.json").display().to_string()
    );
    std::fs::write(&files.config, text + &reports).unwrap();
    let running =
        stallwatch_collector::server::start(&files.config).await.expect("collector starts");
    let addr = running.metrics_addr;
    let get = |path: String| async move {
        tokio::task::spawn_blocking(move || http_get(addr, &path)).await.unwrap()
    };
    let period = "from=2026-11-18T00:00:00Z&to=2026-11-20T00:00:00Z";

    let (status, _, body) = get(format!("/api/v1/reports/sea?{period}&format=json")).await;
    assert_eq!(status, 200);
    let json: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["totals"]["stall_ratio"], report_json(Lang::En)["totals"]["stall_ratio"]);

    let (_, content_type, html) = get(format!("/api/v1/reports/sea?{period}")).await;
    assert_eq!(content_type, "text/html; charset=utf-8");
    assert!(html.contains("<svg") && !html.contains("<script"));
    let (_, _, md) = get(format!("/api/v1/reports/sea?{period}&format=md&lang=zh")).await;
    assert!(md.contains("卡顿率"), "{md}");

    assert_eq!(get("/api/v1/reports/mars?period=7d".into()).await.0, 404);
    assert_eq!(get("/api/v1/reports/sea?format=pdf".into()).await.0, 400);
    assert_eq!(get("/api/v1/reports/sea?period=soon".into()).await.0, 400);
    // The web UI's reports page links each region's report.
    let (_, _, page) = get("/reports".into()).await;
    assert!(page.contains("/api/v1/reports/sea?period=7d"), "{page}");
    running.stop().await;
}

/// A plain HTTP/1.1 GET: status, content type and body.
fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(std::time::Duration::from_secs(120))).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head[9..12].parse().unwrap();
    let content_type = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-type: ").map(str::to_owned))
        .unwrap_or_default();
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        dechunk(body)
    } else {
        body.to_owned()
    };
    (status, content_type, body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap();
        if size == 0 {
            break;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
    out
}
