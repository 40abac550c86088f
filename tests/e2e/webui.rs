//! The collector's web UI and its listener's rules, on real processes: every page of a running
//! demo in headless Chromium (content checked, screenshots kept, no console error, no request
//! to another host; on the demo test's demo, `demo.rs`), and the Host allow-list, bearer token and POST header against a real
//! `run` with curl.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use stallwatch_collector::demo::fleet::{FleetAgent, FleetSpec, write_fleet};
use stallwatch_tests::cdp::{self, Browser};
use stallwatch_tests::demo::DemoProcess;
use stallwatch_tests::fleet::{CollectorProcess, curl, wait_until};
use stallwatch_tests::scratch_dir;

/// Chromium, or `None` (test skipped) where it is not installed outside CI.
fn chromium() -> Option<PathBuf> {
    let chromium = std::env::var_os("STALLWATCH_CHROMIUM")
        .map_or_else(|| PathBuf::from(cdp::CHROMIUM), PathBuf::from);
    if chromium.exists() {
        return Some(chromium);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{} is missing: CI must install Debian's chromium (scripts/test)",
        chromium.display()
    );
    eprintln!("skipped: {} not found (apt-get install chromium)", chromium.display());
    None
}

fn get_json(url: &str) -> Value {
    let (code, body) = curl(&[url], None);
    assert_eq!(code, 200, "{url}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{url}: {e}: {body}"))
}

/// Every page of the running `demo` renders in headless Chromium (content checked, screenshots
/// kept, no console error, no request to another host). Run on the one demo the demo test
/// starts (`demo.rs`); skipped, saying so, where Chromium is not installed outside CI.
pub(crate) fn every_ui_page_renders_in_chromium_loading_nothing_from_elsewhere(demo: &DemoProcess) {
    let Some(chromium) = chromium() else { return };
    // Kept after the test: the screenshots are for a person to look at (path printed below).
    let shots = scratch_dir("e2e-webui-shots").keep();
    let base = format!("http://{}", demo.metrics);

    // Ready when every agent has reported and the store has minute rows for nine cohorts.
    let agents_url = format!("{base}/api/v1/agents");
    let ready = wait_until(Duration::from_secs(90), || {
        let (code, body) = curl(&[&agents_url], None);
        let agents: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        let reported = agents["agents"].as_array().map_or(0, Vec::len);
        let (_, cohorts) = curl(&[&format!("{base}/cohorts")], None);
        code == 200 && reported >= 4 && cohorts.matches("<tr><td").count() >= 9
    });
    assert!(ready, "the demo never had data for every cohort:\n{}", demo.stdout());
    let agents = get_json(&agents_url);
    let names: Vec<String> = agents["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap().to_owned())
        .collect();

    let mut browser = Browser::start(&chromium);
    // The detector catches what it must: a request to another host and a console error.
    let control = shots.join("control.html");
    std::fs::write(
        &control,
        "<!doctype html><html><body><img src=\"http://127.0.0.9:9/x.png\">\
         <script>console.error('control')</script></body></html>",
    )
    .unwrap();
    let load = browser.load(&format!("file://{}", control.display()));
    assert!(load.requests.iter().any(|r| r.starts_with("http://127.0.0.9:9/")), "{load:?}");
    assert!(load.errors.iter().any(|e| e.contains("control")), "{load:?}");

    let pages = [
        ("fleet", "/"),
        ("cohorts", "/cohorts"),
        ("cohorts-1h", "/cohorts?hours=1"),
        ("alerts", "/alerts"),
        ("reports", "/reports"),
        ("reports-sea-zh", "/reports?region=sea&period=1d&lang=zh"),
        ("report-sea", "/api/v1/reports/sea?period=1d&format=html&lang=en"),
    ];
    for (name, path) in pages {
        let url = format!("{base}{path}");
        let load = browser.load(&url);
        let elsewhere: Vec<&String> =
            load.requests.iter().filter(|r| !r.starts_with(&format!("{base}/"))).collect();
        assert!(elsewhere.is_empty(), "{path} requested other hosts: {elsewhere:?}");
        assert_eq!(load.requests, vec![url.clone()], "{path} loaded more than itself");
        assert!(load.errors.is_empty(), "{path}: console errors {:?}", load.errors);
        let text = browser.eval("document.body.innerText").as_str().unwrap_or("").to_owned();
        let mut count = |selector: &str| {
            browser
                .eval(&format!("document.querySelectorAll('{selector}').length"))
                .as_u64()
                .unwrap()
        };
        match name {
            "fleet" => {
                for agent in &names {
                    assert!(text.contains(agent.as_str()), "{agent} missing from the fleet page");
                }
                assert!(text.contains("reporting"), "{text}");
                assert_eq!(count("header nav a"), 5, "the shared nav");
            }
            "cohorts" | "cohorts-1h" => {
                let rows = count("tbody tr");
                assert!(rows >= 9, "{rows} cohort rows:\n{text}");
                // A sparkline per figure per cohort, each with a line or a dot drawn.
                assert_eq!(count("tbody td svg"), rows * 4);
                assert!(count("tbody td svg polyline, tbody td svg circle") >= rows * 2);
                for label in ["sea", "latam", "quic-stream", "quic-datagram", "udp", "ms"] {
                    assert!(text.contains(label), "{label} missing:\n{text}");
                }
            }
            "alerts" => {
                assert!(
                    text.contains("Open") && text.contains("Resolved in the last 24 h"),
                    "{text}"
                );
                assert!(text.contains("Last evaluation"), "{text}");
            }
            "reports" => {
                // Four formats for each of the demo's regions.
                let mut regions: Vec<String> = stallwatch_collector::demo::demo_agents()
                    .into_iter()
                    .map(|a| a.region)
                    .collect();
                regions.sort_unstable();
                regions.dedup();
                assert_eq!(
                    count("a[href^=\"/api/v1/reports/\"]"),
                    4 * regions.len() as u64,
                    "{text}"
                );
            }
            "reports-sea-zh" => {
                assert_eq!(
                    count("a[href^=\"/api/v1/reports/sea?period=1d\"][href$=\"lang=zh\"]"),
                    4
                );
                assert_eq!(count("a[href^=\"/api/v1/reports/latam\"]"), 0);
            }
            _ => assert!(text.contains("sea"), "the report names its region:\n{text}"),
        }
        let png = browser.screenshot();
        assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "a real screenshot of {path}");
        std::fs::write(shots.join(format!("{name}.png")), png).unwrap();
    }
    eprintln!("screenshots in {}", shots.display());
}

/// A collector with `[web]` settings `web` (TOML lines), on loopback.
/// The scratch directory holds its fleet files; stop the collector before dropping it.
fn collector_with(tag: &str, web: &str) -> (CollectorProcess, tempfile::TempDir) {
    let scratch = scratch_dir(&format!("e2e-web-{tag}"));
    let spec = FleetSpec {
        relay_agent: "relay-sea-1".into(),
        relay_region: "sea".into(),
        relay_port: 45998,
        agents: vec![FleetAgent::new("sea-4g-1", "sea", "4g", Some("4g"), "360p30")],
        every: "1m",
        duration: "20s",
        report_interval: "10s",
        ingest: "127.0.0.1:0".into(),
        metrics: "127.0.0.1:0".into(),
    };
    let files = write_fleet(scratch.path(), &spec, time::OffsetDateTime::now_utc()).unwrap();
    let mut config = std::fs::read_to_string(&files.config).unwrap();
    config.push_str(&format!("\n[web]\n{web}\n"));
    std::fs::write(&files.config, config).unwrap();
    (CollectorProcess::start(&files.config), scratch)
}

fn request(c: &CollectorProcess, args: &[&str], path: &str) -> (u16, String) {
    let url = format!("http://{}{path}", c.metrics);
    let mut all: Vec<&str> = args.to_vec();
    all.push(&url);
    curl(&all, None)
}

#[test]
fn the_web_listener_refuses_foreign_hosts_unauthenticated_api_calls_and_bare_posts() {
    const TOKEN: &str = "a-web-token-for-the-test-0123";
    let scratch = scratch_dir("e2e-web-secret");
    let dir = scratch.path();
    let token_file = dir.join("web.token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let web = format!(
        "allowed_hosts = [\"collector.example.net\"]\ntoken_file = \"{}\"",
        token_file.display()
    );
    let (c, fleet_dir) = collector_with("token", &web);
    let bearer = format!("Authorization: Bearer {TOKEN}");
    let bearer = bearer.as_str();

    // DNS rebinding: the attacker's name in Host is refused, the collector's own is not.
    let (code, body) = request(&c, &["-H", "Host: attacker.example"], "/metrics");
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("host-not-allowed"), "{body}");
    assert_eq!(request(&c, &["-H", "Host: collector.example.net:9464"], "/metrics").0, 200);
    assert_eq!(
        request(&c, &["-H", "Host: attacker.example", "-H", bearer], "/api/v1/agents").0,
        403
    );

    // The token guards the API, not the pages or /metrics.
    let (code, body) = request(&c, &[], "/api/v1/agents");
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("unauthorized"), "{body}");
    assert_eq!(
        request(&c, &["-H", "Authorization: Bearer wrong-token-wrong-token"], "/api/v1/alerts").0,
        401
    );
    assert_eq!(request(&c, &["-H", bearer], "/api/v1/agents").0, 200);
    for page in ["/", "/cohorts", "/alerts", "/reports", "/metrics"] {
        assert_eq!(request(&c, &[], page).0, 200, "{page}");
    }

    // Reload: the token and the custom header, or nothing happens.
    let (code, body) = request(&c, &["-X", "POST", "-H", bearer], "/-/reload");
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("X-Stallwatch"), "{body}");
    assert_eq!(request(&c, &["-X", "POST", "-H", "X-Stallwatch: 1"], "/-/reload").0, 401);
    let (code, body) =
        request(&c, &["-X", "POST", "-H", "X-Stallwatch: 1", "-H", bearer], "/-/reload");
    assert_eq!(code, 200, "{body}");
    assert!(c.wait_for_log("config reloaded", Duration::from_secs(10)), "{}", c.log());
    // Bound to loopback: no warning about exposure.
    assert!(!c.log().contains("reachable from other hosts"), "{}", c.log());
    drop(c);
    drop(fleet_dir);
}

#[test]
fn a_token_file_that_is_missing_or_too_short_stops_the_start_naming_the_field() {
    let scratch = scratch_dir("e2e-web-short");
    let dir = scratch.path();
    let short = dir.join("short.token");
    std::fs::write(&short, "abc\n").unwrap();
    let spec = FleetSpec {
        relay_agent: "relay-sea-1".into(),
        relay_region: "sea".into(),
        relay_port: 45997,
        agents: vec![FleetAgent::new("sea-4g-1", "sea", "4g", None, "360p30")],
        every: "1m",
        duration: "20s",
        report_interval: "10s",
        ingest: "127.0.0.1:0".into(),
        metrics: "127.0.0.1:0".into(),
    };
    let files = write_fleet(&dir.join("fleet"), &spec, time::OffsetDateTime::now_utc()).unwrap();
    let base = std::fs::read_to_string(&files.config).unwrap();
    for (token, needle) in [
        (short.as_path(), "at least 16 characters"),
        (Path::new("/nonexistent/web.token"), "web.token"),
    ] {
        std::fs::write(
            &files.config,
            format!("{base}\n[web]\ntoken_file = \"{}\"\n", token.display()),
        )
        .unwrap();
        let (code, _, stderr) = stallwatch_tests::run_binary(
            &stallwatch_tests::binary("stallwatch-collector"),
            &["run".into(), "--config".into(), files.config.display().to_string()],
            Duration::from_secs(60),
        );
        assert_eq!(code, Some(64), "{stderr}");
        assert!(stderr.contains("web.token_file") && stderr.contains(needle), "{stderr}");
    }
}
