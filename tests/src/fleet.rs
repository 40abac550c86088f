//! A collector run as a real process, and an mTLS HTTP client (curl, as an operator would
//! use) for talking to it with an agent's bundle.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::binary;

/// A `stallwatch-collector run` process; killed on drop.
pub struct CollectorProcess {
    child: Child,
    config: PathBuf,
    /// Ingest listener (HTTPS, mTLS).
    pub ingest: SocketAddr,
    /// Metrics listener (HTTP).
    pub metrics: SocketAddr,
    log: Arc<Mutex<String>>,
}

impl CollectorProcess {
    /// Starts the collector with `config` and waits until it prints `ready`.
    pub fn start(config: &Path) -> CollectorProcess {
        let mut child = Command::new(binary("stallwatch-collector"))
            .arg("run")
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("collector starts");
        let log = Arc::new(Mutex::new(String::new()));
        let mut stderr = child.stderr.take().expect("piped");
        let sink = log.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        let (mut ingest, mut metrics) = (None, None);
        for line in lines.by_ref() {
            let line = line.expect("collector stdout");
            match line.split_once(' ') {
                Some(("ingest", url)) => ingest = url.trim_start_matches("https://").parse().ok(),
                Some(("metrics", url)) => metrics = url.trim_start_matches("http://").parse().ok(),
                _ if line.trim() == "ready" => break,
                _ => {}
            }
        }
        std::thread::spawn(move || for _ in lines {});
        let (Some(ingest), Some(metrics)) = (ingest, metrics) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("collector did not start:\n{}", log.lock().unwrap());
        };
        CollectorProcess { child, config: config.to_path_buf(), ingest, metrics, log }
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until its log contains `needle`, up to `limit`; returns whether it did.
    pub fn wait_for_log(&self, needle: &str, limit: Duration) -> bool {
        wait_until(limit, || self.log().contains(needle))
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (e.g. `-HUP`, `-TERM`) with kill(1).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill").arg(signal).arg(self.pid().to_string()).status();
        assert!(status.is_ok_and(|s| s.success()), "kill {signal} failed");
    }

    /// SIGKILL, no chance to clean up.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for a clean exit; returns the exit code.
    pub fn stop(&mut self) -> Option<i32> {
        self.signal("-TERM");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.code();
            }
            if Instant::now() > deadline {
                self.kill9();
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts a new process with the same config (after a stop or kill).
    pub fn restart(&mut self) {
        let config = self.config.clone();
        *self = CollectorProcess::start(&config);
    }

    /// `GET http://METRICS{path}`: (status, body).
    pub fn get(&self, path: &str) -> (u16, String) {
        curl(&[&format!("http://{}{path}", self.metrics)], None)
    }

    /// A `https://INGEST{path}` URL.
    pub fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.ingest)
    }
}

impl Drop for CollectorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `done` every 100 ms until it is true or `limit` passes; returns whether it became true.
pub fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A point in time some checks share: each may wait only for what is left of it.
#[derive(Clone, Copy, Debug)]
pub struct Deadline(Instant);

impl Deadline {
    /// `limit` from now.
    pub fn after(limit: Duration) -> Deadline {
        Deadline(Instant::now() + limit)
    }

    /// What is left until it passes (zero once it has).
    pub fn remaining(&self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }
}

/// Runs curl with `args` (and `body` on stdin for `--data-binary @-`); returns the HTTP status
/// (0 if no HTTP answer, e.g. a refused TLS handshake) and the body.
pub fn curl(args: &[&str], body: Option<&[u8]>) -> (u16, String) {
    let mut child = Command::new("curl")
        .args(["-sS", "--max-time", "90", "-o", "-", "-w", "\n%{http_code}"])
        .args(args)
        .stdin(if body.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("curl runs (install the curl package)");
    if let Some(body) = body {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("piped");
        stdin.write_all(body).expect("write body");
    }
    let out = child.wait_with_output().expect("curl output");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

/// curl arguments that present `bundle` (certificate and key in one PEM) and trust `ca`.
pub fn mtls(bundle: &Path, ca: &Path) -> Vec<String> {
    vec!["--cert".into(), bundle.display().to_string(), "--cacert".into(), ca.display().to_string()]
}

/// `POST` a report body to the collector as the agent holding `bundle`.
pub fn post_report(c: &CollectorProcess, bundle: &Path, ca: &Path, body: &[u8]) -> (u16, String) {
    let url = c.url("/api/v1/reports");
    let mut args = mtls(bundle, ca);
    args.extend(
        ["-X", "POST", "-H", "Content-Type: application/json", "--data-binary", "@-", &url]
            .map(String::from),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    curl(&args, Some(body))
}

/// A free TCP port on 127.0.0.1 (free a moment ago: bind, read, release). For processes that
/// must keep their address across restarts.
pub fn free_tcp_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address").port()
}

/// A `stallwatch-agent run` process; killed on drop. Its log is in `log`.
pub struct AgentProcess {
    child: Child,
    /// Agent name.
    pub name: String,
    /// Its combined stdout and stderr.
    pub log: PathBuf,
    /// Where acknowledged reports are archived.
    pub archive: PathBuf,
    /// Its state directory (spool, plan).
    pub state: PathBuf,
}

impl AgentProcess {
    /// Starts `stallwatch-agent run` for `name` with `bundle` against `collector`, its state,
    /// archive and log under `dir/agents/NAME`.
    pub fn start(dir: &Path, name: &str, bundle: &Path, collector: &str) -> AgentProcess {
        let home = dir.join("agents").join(name);
        std::fs::create_dir_all(&home).expect("agent dir");
        let (state, archive, log) = (home.join("state"), home.join("sent"), home.join("agent.log"));
        let config = home.join("agent.toml");
        std::fs::write(
            &config,
            format!(
                "collector = \"{collector}\"\nbundle = \"{}\"\nstate_dir = \"{}\"\n\
                 plan_wait = \"30s\"\nlog_level = \"info\"\n[spool]\narchive_dir = \"{}\"\n",
                bundle.display(),
                state.display(),
                archive.display()
            ),
        )
        .expect("agent config");
        let out = std::fs::File::create(&log).expect("agent log");
        let child = Command::new(binary("stallwatch-agent"))
            .arg("run")
            .arg("--config")
            .arg(&config)
            .env_remove("RUST_LOG")
            .stdout(out.try_clone().expect("log handle"))
            .stderr(out)
            .spawn()
            .expect("agent starts");
        AgentProcess { child, name: name.into(), log, archive, state }
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Reports waiting in its spool.
    pub fn spooled(&self) -> usize {
        std::fs::read_dir(self.state.join("spool"))
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| {
                        let name = e.file_name();
                        let name = name.to_string_lossy();
                        name.ends_with(".json") && !name.ends_with(".tmp")
                    })
                    .count()
            })
            .unwrap_or(0)
    }

    /// SIGTERM and wait up to 30 s for it to exit; returns the exit code.
    pub fn stop(&mut self) -> Option<i32> {
        let _ = Command::new("kill").arg("-TERM").arg(self.pid().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real Prometheus (the Debian `prometheus` package) scraping one target on loopback;
/// killed on drop.
pub struct PrometheusProcess {
    child: Child,
    /// Its HTTP address.
    pub addr: SocketAddr,
}

impl PrometheusProcess {
    /// Starts Prometheus in `dir` scraping `target` (`host:port`) every `interval`, and waits
    /// until it is ready.
    pub fn start(dir: &Path, target: SocketAddr, interval: &str) -> PrometheusProcess {
        Self::launch(dir, &scrape_config(target, interval, &[]), &[])
    }

    /// As [`start`](Self::start), with native histograms on
    /// (`--enable-feature=native-histograms`) and the rule files matching `rule_files` (glob
    /// patterns) evaluated every `interval`.
    pub fn start_native(
        dir: &Path,
        target: SocketAddr,
        interval: &str,
        rule_files: &[&Path],
    ) -> PrometheusProcess {
        let config = scrape_config(target, interval, rule_files);
        Self::launch(dir, &config, &["--enable-feature=native-histograms"])
    }

    fn launch(dir: &Path, config_text: &str, flags: &[&str]) -> PrometheusProcess {
        std::fs::create_dir_all(dir).expect("prometheus dir");
        let config = dir.join("prometheus.yml");
        std::fs::write(&config, config_text).expect("prometheus config");
        let addr: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap();
        let log = std::fs::File::create(dir.join("prometheus.log")).expect("log");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .args(flags)
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("prometheus runs (install the Debian package `prometheus`)");
        let p = PrometheusProcess { child, addr };
        let ready = wait_until(Duration::from_secs(60), || {
            curl(&[&format!("http://{addr}/-/ready")], None).0 == 200
        });
        assert!(ready, "prometheus did not become ready; see {}", dir.display());
        p
    }

    /// An instant query's result vector (`data.result`), as JSON.
    pub fn query(&self, promql: &str) -> serde_json::Value {
        self.try_query(promql).unwrap_or_else(|e| panic!("query {promql}: {e}"))
    }

    /// An instant query's result vector, or what went wrong (an HTTP error, Prometheus'
    /// error message).
    pub fn try_query(&self, promql: &str) -> Result<serde_json::Value, String> {
        self.api("/api/v1/query", &[("query", promql)]).map(|data| data["result"].clone())
    }

    /// `GET` an API path with URL-encoded `params`; its `data`, or what went wrong.
    pub fn api(&self, path: &str, params: &[(&str, &str)]) -> Result<serde_json::Value, String> {
        let url = format!("http://{}{path}", self.addr);
        let encoded: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut args = vec!["-G"];
        for p in &encoded {
            args.extend(["--data-urlencode", p]);
        }
        args.push(&url);
        let (status, body) = curl(&args, None);
        let v: serde_json::Value = serde_json::from_str(&body)
            .map_err(|e| format!("HTTP {status}, not JSON ({e}): {body}"))?;
        if status != 200 || v["status"] != "success" {
            return Err(format!("HTTP {status}: {} {}", v["errorType"], v["error"]));
        }
        Ok(v["data"].clone())
    }

    /// The single value of an instant query, if it returned one series.
    pub fn scalar(&self, promql: &str) -> Option<f64> {
        let result = self.query(promql);
        let series = result.as_array()?;
        if series.len() != 1 {
            return None;
        }
        series[0]["value"][1].as_str()?.parse().ok()
    }
}

/// A Prometheus config scraping `target` every `interval` and evaluating `rule_files` as often.
fn scrape_config(target: SocketAddr, interval: &str, rule_files: &[&Path]) -> String {
    let mut config = format!(
        "global:\n  scrape_interval: {interval}\n  scrape_timeout: {interval}\n  \
         evaluation_interval: {interval}\n"
    );
    if !rule_files.is_empty() {
        config.push_str("rule_files:\n");
        for pattern in rule_files {
            config.push_str(&format!("  - '{}'\n", pattern.display()));
        }
    }
    config.push_str(&format!(
        "scrape_configs:\n  - job_name: stallwatch\n    static_configs:\n      \
         - targets: ['{target}']\n"
    ));
    config
}

impl Drop for PrometheusProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real Alertmanager (Debian `prometheus-alertmanager`) on a free loopback port, alone (no
/// cluster), with `config` as its configuration; killed when dropped.
pub struct AlertmanagerProcess {
    child: Child,
    /// Its HTTP address.
    pub addr: SocketAddr,
}

impl AlertmanagerProcess {
    /// Starts it with its files in `dir`, ready when this returns.
    pub fn start(dir: &Path, config: &str) -> AlertmanagerProcess {
        std::fs::create_dir_all(dir).unwrap();
        let file = dir.join("alertmanager.yml");
        std::fs::write(&file, config).unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap();
        let log = std::fs::File::create(dir.join("alertmanager.log")).unwrap();
        let child = Command::new("prometheus-alertmanager")
            .arg(format!("--config.file={}", file.display()))
            .arg(format!("--storage.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect(
                "prometheus-alertmanager runs (install the Debian package prometheus-alertmanager)",
            );
        let am = AlertmanagerProcess { child, addr };
        let ready = wait_until(Duration::from_secs(30), || {
            curl(&[&format!("http://{addr}/-/ready")], None).0 == 200
        });
        assert!(ready, "alertmanager did not become ready; see {}", dir.display());
        am
    }

    /// Alertmanager's view of its alerts (`GET /api/v2/alerts`).
    pub fn alerts(&self) -> Vec<serde_json::Value> {
        let (status, body) = curl(&[&format!("http://{}/api/v2/alerts", self.addr)], None);
        assert_eq!(status, 200, "{body}");
        serde_json::from_str::<serde_json::Value>(&body)
            .unwrap()
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for AlertmanagerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
