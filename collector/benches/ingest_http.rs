//! Ingest throughput over HTTPS, end to end: the real collector server (`server::start`) in
//! this process, and concurrent agents posting pre-encoded reports over mutual TLS with
//! keep-alive connections, each agent one report at a time (as agents do). Counts `200`
//! answers; every report is new, so each one is decoded, checked, group-committed to the
//! SQLite store (WAL, `synchronous=FULL`, as the collector runs) and added to the series
//! before its answer.
//!
//! ```text
//! cargo bench -p stallwatch-collector --bench ingest_http
//! STALLWATCH_BENCH_HTTP_AGENTS=200 STALLWATCH_BENCH_HTTP_REPORTS=8000 cargo bench -p stallwatch-collector --bench ingest_http
//! ```
//!
//! The clients share the machine's cores with the server, TLS and HTTP cost the server on top
//! of decoding and the store, and each agent's one report in flight keeps the writer's batches
//! small, so this figure is lower than `ingest_store`'s pipeline figure. It also prints the
//! process's CPU per report, and the server's apart from the clients' threads: on a shared
//! machine that moves less than the rate. Bounded: at most `STALLWATCH_BENCH_HTTP_REPORTS`
//! reports and 120 s.

#![allow(
    clippy::disallowed_methods,
    reason = "a benchmark reads the clock to time itself and to date its reports"
)]

/// The collector binary's allocator, so this measures what runs.
#[global_allocator]
static ALLOCATOR: stallwatch_collector::Allocator = stallwatch_collector::Allocator;

mod shared;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use stallwatch_collector::demo::fleet::{FleetAgent, FleetSpec, write_fleet};
use stallwatch_collector::pki::{AgentIdentity, Ca, Validity};
use stallwatch_proto::report::SeriesLabels;
use stallwatch_proto::report::{
    HistogramData, REPORT_SCHEMA_VERSION, Report, Series, encode_report,
};
use stallwatch_proto::{Role, Transport};
use stallwatch_tests::rng::Rng;

/// Distinct series bodies; reports reuse them under their own agent and sequence number.
const POOL: usize = 16;
/// The client runtime's thread name, so a profile (`perf report --sort comm`) and the CPU
/// figures tell the clients' share from the server's.
const CLIENT: &str = "bench-client";
/// Each report's request timeout.
const REPORT_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest the timed phase may run.
const DEADLINE: Duration = Duration::from_secs(120);

/// One series shaped like `ingest_store`'s: 8 histograms (4 with 2,670 samples), 30 counters.
fn series(rng: &mut Rng, i: usize) -> Series {
    let mut histograms = BTreeMap::new();
    for (name, samples, lo, hi) in shared::SHAPES {
        let (h, sum) = shared::histogram(rng, samples, lo, hi);
        histograms.insert(name.to_string(), HistogramData::from_histogram(&h, sum));
    }
    let counters = shared::counters(rng);
    let labels = SeriesLabels {
        probe: "view".into(),
        repair: None,
        role: Role::Viewer,
        target: "relay-1".into(),
        transport: [Transport::Udp, Transport::QuicStream, Transport::QuicDatagram][i % 3],
    };
    Series { labels, counters, histograms }
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn client(cred: &stallwatch_collector::pki::AgentCredential) -> reqwest::Client {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cred.ca.clone()).expect("CA certificate");
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .with_root_certificates(roots)
        .with_client_auth_cert(vec![cred.cert.clone()], cred.key.clone_key().into())
        .expect("client certificate");
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    // Built as the agent builds its collector client (`agent/src/run/client.rs`), so the server
    // sees the same requests; the agent's 15 s report timeout is longer here for a loaded host.
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .connect_timeout(Duration::from_secs(5))
        .no_proxy()
        .user_agent(concat!("stallwatch-agent/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("client")
}

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    other: AtomicU64,
    errors: AtomicU64,
}

fn main() {
    stallwatch_collector::keep_off_huge_pages();
    let agents = env("STALLWATCH_BENCH_HTTP_AGENTS", 200).max(1);
    let reports = env("STALLWATCH_BENCH_HTTP_REPORTS", 6_000).max(agents);
    let per_agent = reports / agents;
    println!(
        "{} cores; load average {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim()
    );

    let scratch = stallwatch_tests::scratch_dir("bench-http");
    let dir = scratch.path();
    let regions = ["eu", "us"];
    let nets = ["wifi", "4g", "fiber"];
    let spec = FleetSpec {
        relay_agent: "relay-1-agent".into(),
        relay_region: "eu".into(),
        relay_port: 45_999,
        agents: regions
            .iter()
            .map(|r| FleetAgent::new(&format!("seed-{r}"), r, "wifi", None, "720p30"))
            .collect(),
        every: "1m",
        duration: "20s",
        report_interval: "10s",
        ingest: "127.0.0.1:0".into(),
        metrics: "127.0.0.1:0".into(),
    };
    let now = time::OffsetDateTime::now_utc();
    let files = write_fleet(dir, &spec, now).expect("fleet files");
    let ca = Ca::load(&files.ca_dir).expect("CA");
    let validity = Validity::days_from(now, 1).expect("validity");
    let creds: Vec<_> = (0..agents)
        .map(|a| {
            let id = AgentIdentity::new(format!("bench-{a:04}"), regions[a / 3 % 2], nets[a % 3])
                .expect("identity");
            ca.issue_agent(&id, validity).expect("issue")
        })
        .collect();

    // Pre-encoded bodies: each agent's reports 0..=per_agent (0 is the warm-up), 10 s
    // windows ending in the last minutes.
    let mut rng = Rng::new(0x5eed);
    let pool: Vec<Series> = (0..POOL).map(|i| series(&mut rng, i)).collect();
    let end = unix_ms() - 1_000;
    let bodies: Vec<Vec<Vec<u8>>> = (0..agents)
        .map(|a| {
            (0..=per_agent)
                .map(|seq| {
                    let window_end_ms = end - (per_agent - seq) as u64 * 10;
                    encode_report(&Report {
                        schema_version: REPORT_SCHEMA_VERSION,
                        agent: creds[a].identity.name.clone(),
                        agent_version: "bench".into(),
                        seq: seq as u64,
                        window_start_ms: window_end_ms - 10_000,
                        window_end_ms,
                        plan_revision: 1,
                        spool_depth: 0,
                        series: vec![pool[(a * 7 + seq) % POOL].clone()],
                    })
                })
                .collect()
        })
        .collect();
    let body_len = bodies[0][1].len();

    // The server, on its own runtime with a worker per core, as `stallwatch-collector run`.
    let server_rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("rt");
    let running = server_rt
        .block_on(stallwatch_collector::server::start(&files.config))
        .expect("collector starts");
    let url = format!("https://127.0.0.1:{}/api/v1/reports", running.ingest_addr.port());

    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(CLIENT)
        .enable_all()
        .build()
        .expect("rt");
    let tally = Arc::new(Tally::default());
    let (warm, timed, cpu, client_cpu) = client_rt.block_on(async {
        let clients: Vec<reqwest::Client> = creds.iter().map(client).collect();
        let url = url.clone();
        let post = move |client: reqwest::Client, body: Vec<u8>, tally: Arc<Tally>| {
            let url = url.clone();
            async move {
                match client
                    .post(&url)
                    .header("content-type", "application/json")
                    .timeout(REPORT_TIMEOUT)
                    .body(body)
                    .send()
                    .await
                {
                    Ok(r) if r.status() == 200 => {
                        let _ = r.bytes().await;
                        tally.ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => {
                        let status = r.status();
                        let text = r.text().await.unwrap_or_default();
                        if tally.other.fetch_add(1, Ordering::Relaxed) < 3 {
                            eprintln!("answer {status}: {text}");
                        }
                    }
                    Err(e) => {
                        if tally.errors.fetch_add(1, Ordering::Relaxed) < 3 {
                            eprintln!("request failed: {e}");
                        }
                    }
                }
            }
        };
        // Warm-up: every agent connects (TLS handshake) and sends report 0.
        let t = Instant::now();
        let mut set = tokio::task::JoinSet::new();
        for (a, c) in clients.iter().enumerate() {
            set.spawn(post(c.clone(), bodies[a][0].clone(), tally.clone()));
        }
        while set.join_next().await.is_some() {}
        let warm = t.elapsed();
        let warm_ok = tally.ok.swap(0, Ordering::Relaxed);
        assert_eq!(warm_ok, agents as u64, "every agent's first report is stored");

        // Timed: every agent sends the rest of its reports, one at a time.
        let cpu_start = (stallwatch_tests::process_cpu(), stallwatch_tests::threads_cpu(CLIENT));
        let start = Instant::now();
        let deadline = start + DEADLINE;
        let mut set = tokio::task::JoinSet::new();
        for (a, c) in clients.iter().enumerate() {
            let (c, tally, mine) = (c.clone(), tally.clone(), bodies[a][1..].to_vec());
            let post = post.clone();
            set.spawn(async move {
                for body in mine {
                    if Instant::now() > deadline {
                        break;
                    }
                    post(c.clone(), body, tally.clone()).await;
                }
            });
        }
        while set.join_next().await.is_some() {}
        let elapsed = start.elapsed();
        let cpu = stallwatch_tests::process_cpu().saturating_sub(cpu_start.0);
        let client_cpu = stallwatch_tests::threads_cpu(CLIENT).saturating_sub(cpu_start.1);
        (warm, elapsed, cpu, client_cpu)
    });
    let ok = tally.ok.load(Ordering::Relaxed);
    let rate = ok as f64 / timed.as_secs_f64();
    let per_report = |cpu: Duration| cpu.as_secs_f64() * 1e6 / ok.max(1) as f64;
    println!(
        "ingest over HTTPS (mTLS, keep-alive): {agents} concurrent agents, {rate:.0} reports/s \
         ({:.0} histograms/s) end to end; {ok} answers 200, {} other, {} failed in {timed:.2?}; \
         report {body_len} B JSON, 8 histograms; warm-up ({agents} TLS handshakes + first \
         reports) {warm:.2?}",
        rate * 8.0,
        tally.other.load(Ordering::Relaxed),
        tally.errors.load(Ordering::Relaxed),
    );
    // CPU time moves less than wall time when other work shares the machine.
    println!(
        "CPU per report: {:.0} us ({:.2} cores busy): server {:.0} us, clients ({CLIENT} \
         threads) {:.0} us",
        per_report(cpu),
        cpu.as_secs_f64() / timed.as_secs_f64(),
        per_report(cpu.saturating_sub(client_cpu)),
        per_report(client_cpu),
    );
    server_rt.block_on(running.stop());
    drop(client_rt);
}
