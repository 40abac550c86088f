//! `run` against a tiny local HTTPS server with mutual TLS (loopback only) that serves a plan
//! and takes reports: the plan is fetched and re-fetched on change, and reports spooled while
//! the server answers 503 arrive afterwards in sequence order.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use stallwatch_proto::plan::{Plan, encode_plan};
use stallwatch_proto::report::Report;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::bundle::tests::make_bundle;
use super::config::{CollectorUrl, Settings};

#[derive(Default)]
struct State {
    plan: Option<Plan>,
    down: bool,
    /// A proxy in front of the collector answers every report with this status and body.
    proxy: Option<(&'static str, &'static str)>,
    plan_gets: Vec<Option<String>>,
    seqs: Vec<u64>,
    agents: Vec<String>,
    /// The collector's ledger: the body stored under each seq.
    ledger: BTreeMap<u64, Vec<u8>>,
    /// Windows of the stored reports, `(start, end)` unix ms.
    windows: Vec<(u64, u64)>,
    /// TCP connections accepted (TLS handshakes started).
    connections: usize,
    /// Windows of the reports answered 409 `seq-conflict`.
    conflicted: Vec<(u64, u64)>,
}

async fn serve(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    state: Arc<Mutex<State>>,
) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else { return };
        state.lock().unwrap().connections += 1;
        let (acceptor, state) = (acceptor.clone(), state.clone());
        tokio::spawn(async move {
            let Ok(mut tls) = acceptor.accept(tcp).await else { return };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let head_end = loop {
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
                match tls.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            };
            let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
            let header = |name: &str| {
                head.lines().find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
                })
            };
            let len: usize = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
            while buf.len() < head_end + len {
                match tls.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let body = &buf[head_end..head_end + len];
            let (status, out): (&str, Vec<u8>) = if head.starts_with("GET /api/v1/plan") {
                let etag = header("if-none-match");
                state.lock().unwrap().plan_gets.push(etag.clone());
                // Hold a matching request up to 1 s, answering at once when the plan changes.
                let mut answer = None;
                for _ in 0..20 {
                    let plan = state.lock().unwrap().plan.clone().unwrap();
                    if etag.as_deref() != Some(format!("\"{}\"", plan.revision).as_str()) {
                        answer = Some(plan);
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                match answer {
                    Some(plan) => ("200 OK", encode_plan(&plan)),
                    None => ("304 Not Modified", Vec::new()),
                }
            } else if head.starts_with("POST /api/v1/reports") {
                let mut s = state.lock().unwrap();
                if let Some((status, body)) = s.proxy {
                    (status, body.as_bytes().to_vec())
                } else if s.down {
                    (
                        "503 Service Unavailable",
                        br#"{"error":"store-unavailable","detail":"x"}"#.to_vec(),
                    )
                } else {
                    let r: Report = serde_json::from_slice(body).unwrap();
                    match s.ledger.get(&r.seq) {
                        Some(stored) if stored.as_slice() == body => (
                            "200 OK",
                            format!(r#"{{"result":"duplicate","seq":{}}}"#, r.seq).into_bytes(),
                        ),
                        Some(_) => {
                            s.conflicted.push((r.window_start_ms, r.window_end_ms));
                            (
                                "409 Conflict",
                                br#"{"error":"seq-conflict","detail":"another report"}"#.to_vec(),
                            )
                        }
                        None => {
                            s.ledger.insert(r.seq, body.to_vec());
                            s.seqs.push(r.seq);
                            s.agents.push(r.agent.clone());
                            s.windows.push((r.window_start_ms, r.window_end_ms));
                            let answer = format!(r#"{{"result":"stored","seq":{}}}"#, r.seq);
                            ("200 OK", answer.into_bytes())
                        }
                    }
                }
            } else {
                ("404 Not Found", Vec::new())
            };
            let response = format!(
                "HTTP/1.1 {status}\r\ncontent-length: {}\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n",
                out.len()
            );
            let _ = tls.write_all(response.as_bytes()).await;
            let _ = tls.write_all(&out).await;
            let _ = tls.shutdown().await;
        });
    }
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..600 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Serial number of the fake collector's certificate.
const COLLECTOR_SERIAL: u64 = 0x5eed;

/// A collector CRL from `issuer` revoking `serials`, valid from `from` for `days` (PEM).
fn collector_crl(
    issuer: &rcgen::Issuer<'static, rcgen::KeyPair>,
    serials: &[u64],
    from: time::OffsetDateTime,
    days: i64,
) -> String {
    let params = rcgen::CertificateRevocationListParams {
        this_update: from,
        next_update: from + time::Duration::days(days),
        crl_number: rcgen::SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: serials
            .iter()
            .map(|&s| rcgen::RevokedCertParams {
                serial_number: rcgen::SerialNumber::from(s),
                revocation_time: from,
                reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    };
    params.signed_by(issuer).unwrap().pem().unwrap()
}

fn now_utc() -> time::OffsetDateTime {
    let since_epoch = crate::clock::Clock::global().unix_ms();
    time::OffsetDateTime::from_unix_timestamp((since_epoch / 1000) as i64).unwrap()
}

/// A fake collector on loopback for `ca_pem`'s fleet, with a certificate for `localhost`.
/// Returns its port and the server task.
async fn fake_collector(
    issuer: &rcgen::Issuer<'static, rcgen::KeyPair>,
    ca_pem: &str,
    state: Arc<Mutex<State>>,
) -> (u16, tokio::task::JoinHandle<()>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    params.serial_number = Some(rcgen::SerialNumber::from(COLLECTOR_SERIAL));
    let cert = params.signed_by(&key, issuer).unwrap();
    let ca_der = CertificateDer::from_pem_slice_ca(ca_pem);
    let mut roots = RootCertStore::empty();
    roots.add(ca_der).unwrap();
    let provider = crate::tls::provider();
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .unwrap();
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    (port, tokio::spawn(serve(listener, acceptor, state)))
}

fn plan(revision: u64) -> Plan {
    Plan { revision, report_interval: Duration::from_secs(1), relay: None, probes: vec![] }
}

/// A fresh directory for one test, removed when the test ends (pass or fail).
fn test_dir() -> tempfile::TempDir {
    stallwatch_tests::scratch_dir("run")
}

fn settings(dir: &Path, port: u16) -> Settings {
    Settings {
        collector: CollectorUrl::parse(&format!("https://localhost:{port}")).unwrap(),
        bundle: dir.join("agent.pem"),
        state_dir: dir.join("state"),
        plan_wait: Duration::from_secs(1),
        log_level: "info".into(),
        relay_cert: None,
        spool_archive_dir: None,
        relay_key: None,
        spool_max_bytes: 1 << 20,
        spool_max_reports: 1000,
    }
}

/// Runs the agent until the returned sender fires (or is dropped).
fn start_agent(
    settings: Settings,
) -> (tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<anyhow::Result<()>>) {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let agent = tokio::spawn(super::run(settings, async {
        let _ = stop_rx.await;
    }));
    (stop_tx, agent)
}

async fn stop_agent(
    stop: tokio::sync::oneshot::Sender<()>,
    agent: tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(20), agent).await.unwrap().unwrap().unwrap();
}

/// The report files waiting in the spool.
fn spool_files(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir.join("state/spool")) else { return Vec::new() };
    let mut names: Vec<String> = entries
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.ends_with(".json").then_some(name)
        })
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_follows_plans_and_backfills_reports_in_order_after_an_outage() {
    let (pem, issuer, ca_pem) = make_bundle("edge-test-1");
    let tmp = test_dir();
    let dir = tmp.path();
    std::fs::write(dir.join("agent.pem"), &pem).unwrap();
    let state = Arc::new(Mutex::new(State { plan: Some(plan(1)), ..State::default() }));
    let (port, server_task) = fake_collector(&issuer, &ca_pem, state.clone()).await;
    let (stop, agent) = start_agent(settings(dir, port));

    // The plan is fetched, then long-polled with its revision.
    wait_for("a poll with revision 1", || {
        state.lock().unwrap().plan_gets.iter().any(|e| e.as_deref() == Some("\"1\""))
    })
    .await;
    assert_eq!(state.lock().unwrap().plan_gets[0], None);
    // A plan change is fetched and then polled with the new revision.
    state.lock().unwrap().plan = Some(plan(2));
    wait_for("a poll with revision 2", || {
        state.lock().unwrap().plan_gets.iter().any(|e| e.as_deref() == Some("\"2\""))
    })
    .await;
    let saved: PathBuf = dir.join("state/plan.json");
    wait_for("the plan saved", || std::fs::read(&saved).is_ok_and(|b| b == encode_plan(&plan(2))))
        .await;

    // Reports arrive; then the collector fails for a few intervals; then it is back.
    wait_for("a report", || !state.lock().unwrap().seqs.is_empty()).await;
    state.lock().unwrap().down = true;
    let before = state.lock().unwrap().seqs.len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(state.lock().unwrap().seqs.len() <= before + 1);
    state.lock().unwrap().down = false;
    wait_for("backfilled reports", || state.lock().unwrap().seqs.len() >= before + 3).await;

    stop_agent(stop, agent).await;
    let s = state.lock().unwrap();
    // Every report once, in order, with no gap: nothing was lost in the outage.
    for pair in s.seqs.windows(2) {
        assert_eq!(pair[1], pair[0] + 1, "{:?}", s.seqs);
    }
    assert!(s.agents.iter().all(|a| a == "edge-test-1"));
    drop(s);
    server_task.abort();
}

/// A plan naming a profile the agent does not know (`decode_plan` refuses it) is not applied:
/// the agent keeps its previous plan, saved and polled for, and takes the next good one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_with_an_unknown_profile_is_refused_and_the_previous_plan_kept() {
    use stallwatch_proto::plan::{ProbeMode, ProbePlan, Transport};
    let (pem, issuer, ca_pem) = make_bundle("edge-test-1");
    let tmp = test_dir();
    let dir = tmp.path();
    std::fs::write(dir.join("agent.pem"), &pem).unwrap();
    let state = Arc::new(Mutex::new(State { plan: Some(plan(1)), ..State::default() }));
    let (port, server_task) = fake_collector(&issuer, &ca_pem, state.clone()).await;
    let (stop, agent) = start_agent(settings(dir, port));
    wait_for("a poll with revision 1", || {
        state.lock().unwrap().plan_gets.iter().any(|e| e.as_deref() == Some("\"1\""))
    })
    .await;

    let probe = ProbePlan {
        name: "p".into(),
        target: "t".into(),
        address: "127.0.0.1:9".into(),
        transport: Transport::Udp,
        profile: "4k60".into(),
        mode: ProbeMode::Loopback,
        every: Duration::from_secs(10),
        duration: Duration::from_secs(5),
        start_offset: Duration::ZERO,
        emulate: None,
        repair: None,
        udp_credential: None,
    };
    let refused = Plan { probes: vec![probe], ..plan(2) };
    let gets_before = state.lock().unwrap().plan_gets.len();
    state.lock().unwrap().plan = Some(refused);
    // Fetched (the answer to a poll for revision 1), refused, asked for again, still as 1.
    wait_for("two more plan requests", || state.lock().unwrap().plan_gets.len() >= gets_before + 2)
        .await;
    {
        let s = state.lock().unwrap();
        let after = &s.plan_gets[gets_before..];
        assert!(after.iter().all(|e| e.as_deref() == Some("\"1\"")), "{after:?}");
    }
    let saved = std::fs::read(dir.join("state/plan.json")).unwrap();
    assert_eq!(saved, encode_plan(&plan(1)), "the saved plan is still revision 1");

    // The next good plan is taken.
    state.lock().unwrap().plan = Some(plan(3));
    wait_for("a poll with revision 3", || {
        state.lock().unwrap().plan_gets.iter().any(|e| e.as_deref() == Some("\"3\""))
    })
    .await;
    stop_agent(stop, agent).await;
    server_task.abort();
}

/// A proxy in front of the collector (a restart, a wrong route) answers 404 with its own page:
/// the agent keeps every report and sends them all, in order, once the collector is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_404_from_a_proxy_deletes_nothing_from_the_spool() {
    let (pem, issuer, ca_pem) = make_bundle("edge-test-404");
    let tmp = test_dir();
    let dir = tmp.path();
    std::fs::write(dir.join("agent.pem"), &pem).unwrap();
    let state = Arc::new(Mutex::new(State {
        plan: Some(plan(1)),
        proxy: Some(("404 Not Found", "<html><body>no route</body></html>")),
        ..State::default()
    }));
    let (port, server_task) = fake_collector(&issuer, &ca_pem, state.clone()).await;
    let (stop, agent) = start_agent(settings(dir, port));

    wait_for("three reports spooled behind the proxy", || spool_files(dir).len() >= 3).await;
    // Several drains met the 404 (one per interval at least); nothing was deleted.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let held = spool_files(dir);
    assert!(held.len() >= 3, "{held:?}");
    assert!(state.lock().unwrap().seqs.is_empty());
    let first: u64 = held[0].trim_end_matches(".json").parse().unwrap();

    state.lock().unwrap().proxy = None;
    wait_for("the held reports stored", || state.lock().unwrap().seqs.len() > held.len()).await;
    stop_agent(stop, agent).await;
    let s = state.lock().unwrap();
    assert_eq!(s.seqs[0], first, "the oldest held report went first");
    for pair in s.seqs.windows(2) {
        assert_eq!(pair[1], pair[0] + 1, "in order, none lost: {:?}", s.seqs);
    }
    for pair in s.windows.windows(2) {
        assert_eq!(pair[1].0, pair[0].1, "contiguous windows: {:?}", s.windows);
    }
    drop(s);
    server_task.abort();
}

/// A leaked collector key: the operator revokes its certificate and hands agents the fleet's
/// collector CRL. An agent holding it refuses that collector (no plan, no report goes to it);
/// with a CRL that revokes another certificate it works as before, and with one past its next
/// update it refuses every collector (a withheld CRL cannot keep a revoked key usable).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_refuses_a_collector_whose_certificate_the_crl_revokes() {
    let (pem, issuer, ca_pem) = make_bundle("edge-test-crl");
    let state = Arc::new(Mutex::new(State { plan: Some(plan(1)), ..State::default() }));
    let (port, server_task) = fake_collector(&issuer, &ca_pem, state.clone()).await;
    let now = now_utc();
    let cases = [
        ("revoked", collector_crl(&issuer, &[COLLECTOR_SERIAL], now, 30), false),
        ("another-revoked", collector_crl(&issuer, &[COLLECTOR_SERIAL + 1], now, 30), true),
        ("expired", collector_crl(&issuer, &[], now - time::Duration::days(40), 30), false),
    ];
    for (name, crl, trusted) in cases {
        let tmp = test_dir();
        let dir = tmp.path();
        std::fs::write(dir.join("agent.pem"), &pem).unwrap();
        std::fs::create_dir_all(dir.join("state")).unwrap();
        std::fs::write(dir.join("state").join(crate::tls::COLLECTOR_CRL_FILE), crl).unwrap();
        let plans_before = state.lock().unwrap().plan_gets.len();
        let connections_before = state.lock().unwrap().connections;
        let reports_before = state.lock().unwrap().seqs.len();
        let (stop, agent) = start_agent(settings(dir, port));
        if trusted {
            wait_for("a plan request", || state.lock().unwrap().plan_gets.len() > plans_before)
                .await;
        } else {
            // The agent reaches the collector, and its handshakes fail, again and again.
            wait_for("two connections", || {
                state.lock().unwrap().connections >= connections_before + 2
            })
            .await;
            let s = state.lock().unwrap();
            assert_eq!(s.plan_gets.len(), plans_before, "{name}: the agent asked for a plan");
            assert_eq!(s.seqs.len(), reports_before, "{name}: the agent sent a report");
        }
        stop_agent(stop, agent).await;
    }
    server_task.abort();
}

/// Copies the files of `from` (one level of subdirectories) to `to`, replacing it.
fn restore_snapshot(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            restore_snapshot(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// A VM snapshot rollback: the agent's state directory goes back in time, so it numbers new
/// reports with sequence numbers the collector already stored other reports under. The
/// collector answers 409 `seq-conflict`; the agent jumps its numbering forward and resends:
/// every window it measured after the rollback is stored, none dropped as a duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_back_sequence_number_is_detected_and_nothing_is_lost() {
    let (pem, issuer, ca_pem) = make_bundle("edge-test-rollback");
    let tmp = test_dir();
    let dir = tmp.path();
    std::fs::write(dir.join("agent.pem"), &pem).unwrap();
    let state = Arc::new(Mutex::new(State { plan: Some(plan(1)), ..State::default() }));
    let (port, server_task) = fake_collector(&issuer, &ca_pem, state.clone()).await;

    // First life: a snapshot of the state is taken after the first report, then more follow.
    let (stop, agent) = start_agent(settings(dir, port));
    wait_for("a first report", || !state.lock().unwrap().seqs.is_empty()).await;
    let snapshot = dir.join("snapshot");
    restore_snapshot(&dir.join("state"), &snapshot);
    wait_for("four more reports", || state.lock().unwrap().seqs.len() >= 5).await;
    stop_agent(stop, agent).await;
    let stored_before = state.lock().unwrap().seqs.len();
    let highest_before = *state.lock().unwrap().ledger.keys().last().unwrap();

    // Rollback, and a second life that reuses the numbers issued after the snapshot.
    restore_snapshot(&snapshot, &dir.join("state"));
    let (stop, agent) = start_agent(settings(dir, port));
    wait_for("a conflict", || !state.lock().unwrap().conflicted.is_empty()).await;
    wait_for("reports stored after the conflict", || {
        state.lock().unwrap().seqs.len() >= stored_before + 4
    })
    .await;
    stop_agent(stop, agent).await;

    let s = state.lock().unwrap();
    // Every report refused for its reused number was stored afterwards under another one.
    for window in &s.conflicted {
        assert!(s.windows.contains(window), "lost: {window:?}, stored {:?}", s.windows);
    }
    // The second life's windows, sorted by start, are contiguous from its first: none missing.
    let mut second: Vec<(u64, u64)> = s.windows[stored_before..].to_vec();
    second.sort_unstable();
    assert_eq!(second[0], s.conflicted[0], "the first report after the rollback is kept");
    for pair in second.windows(2) {
        assert_eq!(pair[1].0, pair[0].1, "a window was lost: {second:?}");
    }
    // The reused numbers were replaced by ones above everything stored before.
    let renumbered = s.seqs[stored_before..].iter().filter(|&&seq| seq > highest_before).count();
    assert!(renumbered >= 1, "{:?}", s.seqs);
    assert!(spool_files(dir).is_empty(), "{:?}", spool_files(dir));
    drop(s);
    server_task.abort();
}

trait FromPemCa {
    fn from_pem_slice_ca(pem: &str) -> CertificateDer<'static>;
}

impl FromPemCa for CertificateDer<'static> {
    fn from_pem_slice_ca(pem: &str) -> CertificateDer<'static> {
        use rustls_pki_types::pem::PemObject;
        CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
    }
}
