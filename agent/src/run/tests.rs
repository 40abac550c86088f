//! `run` against a tiny local HTTPS server with mutual TLS (loopback only) that serves a plan
//! and takes reports: the plan is fetched and re-fetched on change, and reports spooled while
//! the server answers 503 arrive afterwards in sequence order.

use std::path::PathBuf;
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
    plan_gets: Vec<Option<String>>,
    seqs: Vec<u64>,
    agents: Vec<String>,
}

async fn serve(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    state: Arc<Mutex<State>>,
) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else { return };
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
                if s.down {
                    (
                        "503 Service Unavailable",
                        br#"{"error":"store-unavailable","detail":"x"}"#.to_vec(),
                    )
                } else {
                    let r: Report = serde_json::from_slice(body).unwrap();
                    s.seqs.push(r.seq);
                    s.agents.push(r.agent.clone());
                    ("200 OK", format!(r#"{{"result":"stored","seq":{}}}"#, r.seq).into_bytes())
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_follows_plans_and_backfills_reports_in_order_after_an_outage() {
    let (pem, issuer, ca_pem) = make_bundle("edge-test-1");
    let dir = std::env::temp_dir().join(format!("sw-run-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let bundle_path = dir.join("agent.pem");
    std::fs::write(&bundle_path, &pem).unwrap();

    // The collector's certificate, from the same CA, for localhost.
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, &issuer).unwrap();
    let ca_der = CertificateDer::from_pem_slice_ca(&ca_pem);
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
    let plan = |revision| Plan {
        revision,
        report_interval: Duration::from_secs(1),
        relay: None,
        probes: vec![],
    };
    let state = Arc::new(Mutex::new(State { plan: Some(plan(1)), ..State::default() }));
    let server_task = tokio::spawn(serve(listener, acceptor, state.clone()));

    let settings = Settings {
        collector: CollectorUrl::parse(&format!("https://localhost:{port}")).unwrap(),
        bundle: bundle_path,
        state_dir: dir.join("state"),
        plan_wait: Duration::from_secs(1),
        log_level: "info".into(),
        relay_cert: None,
        spool_archive_dir: None,
        relay_key: None,
        spool_max_bytes: 1 << 20,
        spool_max_reports: 1000,
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let agent = tokio::spawn(super::run(settings, async {
        let _ = stop_rx.await;
    }));

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

    let _ = stop_tx.send(());
    tokio::time::timeout(Duration::from_secs(20), agent).await.unwrap().unwrap().unwrap();
    let s = state.lock().unwrap();
    // Every report once, in order, with no gap: nothing was lost in the outage.
    for pair in s.seqs.windows(2) {
        assert_eq!(pair[1], pair[0] + 1, "{:?}", s.seqs);
    }
    assert!(s.agents.iter().all(|a| a == "edge-test-1"));
    drop(s);
    server_task.abort();
    let _ = std::fs::remove_dir_all(&dir);
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
