//! The alert path end to end: a real `stallwatch-collector run` process judges reports posted
//! over mutual TLS (curl with an agent's bundle), and delivers to a real Alertmanager (the
//! Debian `prometheus-alertmanager`, started here on loopback with `--cluster.listen-address=`
//! and the shipped `deploy/alertmanager/alertmanager.yml`, its receivers pointed at a webhook
//! receiver this test runs) and to a generic signed webhook on the same receiver.
//!
//! The firing alert arrives with the right labels through Alertmanager's routing; a collector
//! restart neither forgets the open P1 nor notifies it again; the resolution arrives when the
//! fault is removed. The reports are posted (not measured by agents) so the fault starts and
//! ends exactly when the test says, and the whole test takes one to two minutes.
//!
//! Both tests here are idle: a collector judging a few posted reports, an Alertmanager and a
//! Prometheus, mostly waiting on wall-clock minutes (1.3 CPU-seconds in 78 s for the longer).
//! They take no lock, so they may run beside a `heavy()` test, and the module's name sorts
//! after the heavy tests' so that libtest, which starts tests in name order, starts them
//! while the last heavy test (repair, over a minute) runs (main.rs).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use stallwatch_collector::demo::fleet::{
    FleetAgent, FleetFiles, FleetSpec, RELAY_NAME, write_fleet,
};
use stallwatch_tests::fleet::{
    AlertmanagerProcess, CollectorProcess, curl, free_tcp_port, post_report, wait_until,
};
use stallwatch_tests::scratch_dir;

#[allow(clippy::disallowed_methods, reason = "the test stamps reports with the wall clock")]
fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// A webhook receiver on loopback: records every POST and answers 200.
struct Receiver {
    addr: SocketAddr,
    got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = got.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
                let mut headers = Vec::new();
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = h.trim().split_once(':') {
                        headers.push((k.trim().to_owned(), v.trim().to_owned()));
                    }
                }
                let len = headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, v)| v.parse().ok())
                    .unwrap_or(0);
                let mut body = vec![0; len];
                if reader.read_exact(&mut body).is_err() {
                    continue;
                }
                sink.lock().unwrap().push(Received { path, headers, body });
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
        });
        Receiver { addr, got }
    }

    fn got(&self, path_prefix: &str) -> Vec<Received> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path.starts_with(path_prefix))
            .cloned()
            .collect()
    }
}

/// The shipped Alertmanager config, its receivers pointed at `receiver` and its waits cut
/// to a second so the test does not sit out a production `group_wait`.
fn shipped_config_for_test(receiver: SocketAddr) -> String {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/alertmanager/alertmanager.yml");
    let shipped = std::fs::read_to_string(path).unwrap();
    assert!(shipped.contains("http://127.0.0.1:9095/"), "placeholder receivers moved");
    shipped
        .replace("http://127.0.0.1:9095/", &format!("http://{receiver}/am/"))
        .lines()
        .map(|l| {
            let text = l.trim_start();
            let indent = &l[..l.len() - text.len()];
            match text.split_once(':') {
                Some((key @ ("group_wait" | "group_interval"), _)) => format!("{indent}{key}: 1s"),
                _ => l.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A viewer report of `sea-4g-1` over UDP to the relay, for a 10 s window ending at
/// `window_end_ms`: `attempts` views of which `failed` were refused.
fn report(seq: u64, window_end_ms: u64, attempts: u64, failed: u64) -> Vec<u8> {
    // As agents count them: failures by cause only.
    let mut counters = json!({"view_attempts": attempts});
    if failed > 0 {
        counters["view_failures_refused"] = json!(failed);
    }
    serde_json::to_vec(&json!({
        "schema_version": 1,
        "agent": "sea-4g-1",
        "agent_version": "e2e",
        "seq": seq,
        "window_start_ms": window_end_ms - 10_000,
        "window_end_ms": window_end_ms,
        "plan_revision": 1,
        "spool_depth": 0,
        "series": [{
            "labels": {"probe": "sea-4g-1-udp", "transport": "udp", "repair": "nack",
                       "target": RELAY_NAME, "role": "viewer"},
            "counters": counters,
        }],
    }))
    .unwrap()
}

const ALERTS: &str = r#"
[alerts]
evaluate_every = "2s"
settle = "2s"
resolve_after = "0s"
[alerts.thresholds]
breaches = 1
window = 1
[alerts.burn_rate]
windows = []
[alerts.absence]
after = "30m"
[alerts.delivery]
resend_every = "2s"
ends_at_after = "1m"
"#;

/// A fleet's files (CA, bundles, collector config) with one probing agent, `sea-4g-1`, and
/// fixed ports so a restarted collector is where it was, in `scratch` (with whatever else the
/// test put there); removed on drop unless a test failed.
struct Files(FleetFiles, tempfile::TempDir);

impl Files {
    fn new(scratch: tempfile::TempDir) -> Files {
        let spec = FleetSpec {
            relay_agent: "relay-sea-1".into(),
            relay_region: "sea".into(),
            relay_port: 45997,
            agents: vec![FleetAgent::new("sea-4g-1", "sea", "4g", None, "360p15")],
            every: "1m",
            duration: "20s",
            report_interval: "10s",
            ingest: format!("127.0.0.1:{}", free_tcp_port()),
            metrics: format!("127.0.0.1:{}", free_tcp_port()),
        };
        let fleet = write_fleet(scratch.path(), &spec, time::OffsetDateTime::now_utc()).unwrap();
        Files(fleet, scratch)
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.1.disable_cleanup(true);
            eprintln!("alert test files kept: {}", self.0.dir.display());
        }
    }
}

#[test]
fn a_p1_reaches_alertmanager_survives_a_restart_unrepeated_and_resolves() {
    // Idle, no lock (module doc).
    let receiver = Receiver::start();
    let scratch = scratch_dir("e2e-alerts");
    let am = AlertmanagerProcess::start(
        &scratch.path().join("alertmanager"),
        &shipped_config_for_test(receiver.addr),
    );
    let files = Files::new(scratch);
    let mut config = std::fs::read_to_string(&files.0.config).unwrap();
    config.push_str(ALERTS);
    config.push_str(&format!(
        "alertmanagers = [\"http://{}\"]\n\n[[alerts.webhooks]]\nname = \"oncall\"\nformat = \"generic\"\n\
         url = \"http://{}/generic\"\nsecret = \"e2e-secret\"\nmin_severity = \"P1\"\n",
        am.addr, receiver.addr
    ));
    std::fs::write(&files.0.config, config).unwrap();
    let mut collector = CollectorProcess::start(&files.0.config);
    let bundle = files.0.bundles.iter().find(|(n, _)| n == "sea-4g-1").unwrap().1.clone();
    let ca = files.0.ca_dir.join("ca.pem");
    let post = |collector: &CollectorProcess, body: Vec<u8>| {
        let (status, answer) = post_report(collector, &bundle, &ca, &body);
        assert_eq!(status, 200, "{answer}");
    };

    // The fault: every view refused during the previous minute (already settled 3 s in).
    let mut now = unix_ms();
    if now % 60_000 < 3_000 {
        std::thread::sleep(Duration::from_millis(3_000 - now % 60_000));
        now = unix_ms();
    }
    let minute = now - now % 60_000;
    post(&collector, report(1, minute - 30_000, 6, 6));

    // The generic webhook hears the P1 once, signed.
    let firing = |r: &Received| r.json()["status"] == "firing";
    assert!(
        wait_until(Duration::from_secs(30), || receiver.got("/generic").iter().any(firing)),
        "no firing notification; collector log:\n{}",
        collector.log()
    );
    let hook = receiver.got("/generic").into_iter().find(firing).unwrap();
    let incident = hook.json()["incident"].clone();
    assert_eq!(incident["alertname"], "StallwatchViewFailures");
    assert_eq!(incident["severity"], "P1");
    assert_eq!(
        incident["labels"],
        json!({"alertname": "StallwatchViewFailures", "severity": "P1", "service": "streaming",
               "region": "sea", "network_type": "4g", "transport": "udp", "repair": "nack",
               "target": RELAY_NAME})
    );
    let evidence = incident["evidence"][0]["text"].as_str().unwrap();
    assert!(
        evidence.contains("view failure ratio 100.00 %")
            && evidence.contains("failures by cause: refused 6"),
        "{incident}"
    );
    let timestamp: u64 = hook.header("X-Stallwatch-Timestamp").unwrap().parse().unwrap();
    assert_eq!(
        hook.header("X-Stallwatch-Signature").unwrap(),
        stallwatch_collector::alerts::notifiers::generic::signature(
            "e2e-secret",
            timestamp,
            &hook.body
        )
    );

    // Alertmanager routes it (severity P1 -> pager-p1) with the labels the collector set.
    let paged = |r: &Received| {
        let v = r.json();
        v["status"] == "firing"
            && v["alerts"].as_array().is_some_and(|a| {
                a.iter().any(|x| x["labels"]["alertname"] == "StallwatchViewFailures")
            })
    };
    assert!(
        wait_until(Duration::from_secs(30), || receiver.got("/am/pager/p1").iter().any(paged)),
        "Alertmanager did not page; got {:?}",
        receiver.got("/am").iter().map(|r| &r.path).collect::<Vec<_>>()
    );
    let page = receiver.got("/am/pager/p1").into_iter().find(paged).unwrap().json();
    assert_eq!(page["receiver"], "pager-p1");
    let labels = &page["alerts"][0]["labels"];
    assert_eq!(
        labels,
        &json!({"alertname": "StallwatchViewFailures", "severity": "P1", "service": "streaming",
                "source": "stallwatch", "region": "sea", "network_type": "4g", "transport": "udp",
                "repair": "nack", "target": RELAY_NAME})
    );
    let annotations = &page["alerts"][0]["annotations"];
    assert!(
        annotations["runbook_url"].as_str().unwrap().ends_with("/view-failures.md"),
        "{annotations}"
    );
    assert!(annotations["description"].as_str().unwrap().contains("[threshold]"), "{annotations}");
    // The watchdog goes to the dead man's switch.
    assert!(wait_until(Duration::from_secs(20), || !receiver.got("/am/heartbeat").is_empty()));

    // /api/v1/alerts and /metrics show it.
    let (_, api) = collector.get("/api/v1/alerts");
    let api: Value = serde_json::from_str(&api).unwrap();
    let open: Vec<&Value> = api["open"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["alertname"] == "StallwatchViewFailures")
        .collect();
    assert_eq!(open.len(), 1, "{api}");
    let (id, opened_at) = (open[0]["id"].clone(), open[0]["opened_at"].clone());
    let (_, metrics) = collector.get("/metrics");
    assert!(
        metrics.contains(
            "stallwatch_alerts_active{severity=\"P1\",alertname=\"StallwatchViewFailures\",region=\"sea\",network_type=\"4g\"} 1"
        ),
        "{}",
        metrics.lines().filter(|l| l.contains("alert")).collect::<Vec<_>>().join("\n")
    );

    // A restart: the P1 is still open, and nobody hears of it again.
    let hooks_before = receiver.got("/generic").len();
    let pages_before = receiver.got("/am/pager").len();
    assert_eq!(collector.stop(), Some(0));
    collector.restart();
    let evaluated = |c: &CollectorProcess| {
        let (_, api) = c.get("/api/v1/alerts");
        serde_json::from_str::<Value>(&api).map_or(0, |v| v["evaluations"].as_u64().unwrap_or(0))
    };
    assert!(wait_until(Duration::from_secs(30), || evaluated(&collector) >= 4));
    let (_, api) = collector.get("/api/v1/alerts");
    let api: Value = serde_json::from_str(&api).unwrap();
    let open: Vec<&Value> = api["open"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["alertname"] == "StallwatchViewFailures")
        .collect();
    assert_eq!(open.len(), 1, "the open P1 was forgotten: {api}");
    assert_eq!(
        (&open[0]["id"], &open[0]["opened_at"], &open[0]["severity"]),
        (&id, &opened_at, &json!("P1"))
    );
    // Alertmanager got the alert again (its resends) but pages nobody: same alert, same group.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(receiver.got("/generic").len(), hooks_before, "the webhook was notified again");
    assert_eq!(receiver.got("/am/pager").len(), pages_before, "Alertmanager paged again");
    let in_am: Vec<Value> = am
        .alerts()
        .into_iter()
        .filter(|a| a["labels"]["alertname"] == "StallwatchViewFailures")
        .collect();
    assert_eq!(in_am.len(), 1, "{in_am:?}");
    assert_eq!(in_am[0]["status"]["state"], "active");

    // The fault is removed: views succeed in the current minute. Once it settles, the
    // incident resolves and both receivers hear so.
    let mut now = unix_ms();
    if now % 60_000 < 15_000 {
        std::thread::sleep(Duration::from_millis(15_000 - now % 60_000));
        now = unix_ms();
    }
    post(&collector, report(2, now - 1_000, 6, 0));
    let resolved_hook = |r: &Received| r.json()["status"] == "resolved";
    assert!(
        wait_until(Duration::from_secs(90), || receiver.got("/generic").iter().any(resolved_hook)),
        "no resolution; collector log:\n{}",
        collector.log()
    );
    let resolved_page = |r: &Received| {
        let v = r.json();
        v["status"] == "resolved"
            && v["alerts"][0]["labels"]["alertname"] == "StallwatchViewFailures"
    };
    assert!(
        wait_until(Duration::from_secs(30), || receiver
            .got("/am/pager/p1")
            .iter()
            .any(resolved_page)),
        "Alertmanager did not send the resolution"
    );
    let (_, api) = collector.get("/api/v1/alerts");
    let api: Value = serde_json::from_str(&api).unwrap();
    assert!(
        api["open"].as_array().unwrap().iter().all(|i| i["alertname"] != "StallwatchViewFailures"),
        "{api}"
    );
    assert!(
        api["recent"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["id"] == id && i["resolution"] == "clear"),
        "{api}"
    );
    assert_eq!(collector.stop(), Some(0));
}

/// A Prometheus scraping `target` every second with native histograms on, so that it asks
/// for the protobuf exposition; killed on drop.
struct NativePrometheus {
    child: Child,
    addr: SocketAddr,
}

impl NativePrometheus {
    fn start(dir: &Path, target: SocketAddr) -> NativePrometheus {
        std::fs::create_dir_all(dir).unwrap();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: stallwatch\n    \
                 static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--enable-feature=native-histograms")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
            .spawn()
            .expect("prometheus runs (install the Debian package prometheus)");
        let p = NativePrometheus { child, addr };
        let ready = wait_until(Duration::from_secs(60), || {
            curl(&[&format!("http://{addr}/-/ready")], None).0 == 200
        });
        assert!(ready, "prometheus did not become ready; see {}", dir.display());
        p
    }

    /// The value of an instant query returning one series.
    fn scalar(&self, promql: &str) -> Option<f64> {
        let url = format!("http://{}/api/v1/query", self.addr);
        let (status, body) =
            curl(&["-G", "--data-urlencode", &format!("query={promql}"), &url], None);
        assert_eq!(status, 200, "{promql}: {body}");
        let v: Value = serde_json::from_str(&body).ok()?;
        let result = v["data"]["result"].as_array()?;
        (result.len() == 1).then(|| result[0]["value"][1].as_str()?.parse().ok())?
    }
}

impl Drop for NativePrometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The alert families in the protobuf exposition (appended by hand after the series') are
/// read by a real Prometheus: a malformed message would fail the whole scrape.
#[test]
fn alert_metrics_reach_a_native_histogram_prometheus_through_protobuf() {
    // Idle, no lock (module doc).
    let scratch = scratch_dir("e2e-alert-metrics");
    let dir = scratch.path().to_path_buf();
    let files = Files::new(scratch);
    let mut config = std::fs::read_to_string(&files.0.config).unwrap();
    config.push_str("\n[alerts]\nevaluate_every = \"1s\"\n");
    std::fs::write(&files.0.config, config).unwrap();
    let collector = CollectorProcess::start(&files.0.config);
    let prometheus = NativePrometheus::start(&dir.join("prometheus"), collector.metrics);
    let watchdog = "stallwatch_alerts_active{alertname=\"StallwatchWatchdog\",severity=\"none\"}";
    assert!(
        wait_until(Duration::from_secs(30), || prometheus.scalar(watchdog) == Some(1.0)),
        "Prometheus never read the watchdog gauge; up = {:?}",
        prometheus.scalar("up")
    );
    assert_eq!(prometheus.scalar("up"), Some(1.0));
    assert!(
        prometheus.scalar("stallwatch_collector_alert_evaluations_total").is_some_and(|v| v >= 1.0)
    );
    let age = prometheus
        .scalar("time() - stallwatch_collector_alert_last_evaluation_timestamp_seconds")
        .unwrap();
    assert!((0.0..30.0).contains(&age), "last evaluation {age} s ago");
    // The same families in the text exposition, for scrapers without protobuf.
    let (_, text) = collector.get("/metrics");
    assert!(text.contains("stallwatch_alerts_active{severity=\"none\",alertname=\"StallwatchWatchdog\",region=\"\",network_type=\"\"} 1"), "{text}");
}
