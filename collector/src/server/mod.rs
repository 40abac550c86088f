//! `stallwatch-collector run`: the ingest listener (HTTPS, mutual TLS: plans and reports) and
//! the web listener (plain HTTP: `/metrics`, the web UI, the API, `/-/reload`), over one
//! shared state. The API is specified in docs/protocol.md ("Collector API").
//!
//! - `tls`: rustls config and the TLS listener that attaches the verified identity.
//! - `admission`: one report in flight per agent and a per-agent rate.
//! - `ingest`: report checks and the group-commit writer thread that owns the store.
//! - `plan`: plans by identity, with ETag and long-poll.
//! - `web`: `/metrics`, the web UI (`crate::web`), the API, reload; the listener's access
//!   rules.
//!
//! The alert evaluator (`crate::alerts`) runs beside them, on its own thread with its own
//! read connection to the store.
//!
//! Reload (SIGHUP or `POST /-/reload`) swaps in a new config atomically: plans, label
//! allow-lists, ingest limits and SLOs apply at once; a changed listener, TLS file or store
//! path needs a restart (logged). A config that fails to load leaves the old one running.

mod admission;
mod ingest;
mod plan;
mod tls;
mod web;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::SystemTime;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, watch};
use tracing::{error, info, warn};

pub use ingest::{MAX_BATCH, QUEUE_DEPTH};
pub use tls::{Peer, TlsFileError, server_config};

use crate::alerts::{AlertsHandle, AlertsService};
use crate::clock;
use crate::config::{self, Config, ConfigError};
use crate::pki::{RevocationList, VerifiedAgent};
use crate::series::{SeriesLimits, SeriesStore};
use crate::store::{HistoryStore, Retention, SqliteStore};
use crate::telemetry::Telemetry;

/// Why `run` could not start; the binary maps each kind to an exit code.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The config file could not be read (exit 66).
    #[error("{0}")]
    Unreadable(ConfigError),
    /// The config, or a file it names, is invalid (exit 64).
    #[error("{0}")]
    Invalid(String),
    /// Something else failed: a port in use, the store (exit 1).
    #[error("{0}")]
    Failed(String),
}

/// The config in force, swapped whole on reload.
#[derive(Debug)]
pub struct Live {
    /// The checked config.
    pub config: Config,
    /// Its plans revision (the ETag of every plan), revoked serials included.
    pub revision: u64,
    /// Serials of the revoked agent certificates (`revoked.json`), sorted: plans hand them to
    /// plan-run relays, which refuse those certificates.
    pub revoked_serials: Vec<String>,
}

/// The revocation list and the file state it was read from, re-read when the file changes.
#[derive(Debug)]
struct Revocations {
    path: PathBuf,
    list: RevocationList,
    modified: Option<SystemTime>,
}

/// What the handlers share.
pub struct Shared {
    config_path: PathBuf,
    live: RwLock<Arc<Live>>,
    /// The current plans revision; long-polling plan requests wait on it.
    plans: watch::Sender<u64>,
    revocations: Mutex<Revocations>,
    series: Arc<SeriesStore>,
    telemetry: Telemetry,
    writer: mpsc::Sender<ingest::Job>,
    /// Who may send a report now (one in flight per agent, a per-agent rate).
    admission: admission::Admission,
    /// Permits to decode a report, on an async worker or the blocking pool ([`ingest::decoders`]).
    decoders: Arc<Semaphore>,
    shutdown: watch::Receiver<bool>,
    alerts: Option<AlertsHandle>,
    /// Derives the UDP credentials plans hand to plan-run relays and their probes.
    relay_credentials: crate::config::RelayCredentials,
}

impl Shared {
    /// The config in force.
    pub fn live(&self) -> Arc<Live> {
        self.live.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The identity of a connected agent, refusing certificates without a stallwatch identity
    /// and revoked ones. The revocation list is re-read when its file changes, so `ca revoke`
    /// takes effect on the next request without a reload.
    fn check_peer(&self, peer: &Peer) -> Result<Arc<VerifiedAgent>, ApiError> {
        let identity = peer.identity.clone().map_err(|e| {
            ApiError::new(
                StatusCode::FORBIDDEN,
                "bad-certificate",
                format!("client certificate: {e}"),
            )
        })?;
        let mut revocations = self.revocations.lock().unwrap_or_else(PoisonError::into_inner);
        if revocations.refresh() {
            self.revocations_changed(&revocations);
        }
        if revocations.list.is_revoked(identity.name(), &peer.serial) {
            warn!(agent = %identity.name(), serial = %peer.serial, peer = %peer.addr, "refused a revoked agent");
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "revoked",
                format!("agent {:?} (certificate {}) is revoked", identity.name(), peer.serial),
            ));
        }
        Ok(identity)
    }

    /// A new revocation list: plans hand relays the new serials under a new revision, and
    /// long-polls wake. Called with the revocations locked (the lock order is revocations, then
    /// live), so a reload cannot interleave.
    fn revocations_changed(&self, revocations: &Revocations) {
        let old = self.live();
        let revoked_serials = revocations.serials();
        let revision = old.config.plans_revision_with(&revoked_serials);
        let live = Arc::new(Live { config: old.config.clone(), revision, revoked_serials });
        *self.live.write().unwrap_or_else(PoisonError::into_inner) = live;
        info!(old = old.revision, new = revision, "revocation list changed: new plans for relays");
        self.plans.send_replace(revision);
    }

    /// The alert service's handle (`None` with `[alerts] enabled = false`), e.g. for the demo's
    /// live lines.
    pub fn alerts(&self) -> Option<&AlertsHandle> {
        self.alerts.as_ref()
    }

    /// The cumulative series, and the agents' facts.
    pub fn series_store(&self) -> &SeriesStore {
        &self.series
    }

    /// The plans revision in force, changing on every reload (tests wait on it).
    pub fn plans_revisions(&self) -> watch::Receiver<u64> {
        self.plans.subscribe()
    }

    /// The collector's own telemetry.
    pub fn telemetry(&self) -> &Telemetry {
        &self.telemetry
    }

    /// Re-reads the config file and applies it; returns the new plans revision, or the
    /// problems (file:line:col: field: message) while the old config stays in force.
    pub fn reload(&self) -> Result<u64, String> {
        let new = config::load(&self.config_path).map_err(|e| {
            error!("config reload failed; keeping the running config:\n{e}");
            e.to_string()
        })?;
        let old = self.live();
        let (a, b) = (&old.config, &new);
        if a.listen != b.listen || a.web != b.web || a.tls != b.tls || a.storage != b.storage {
            warn!(
                "config reload: [listen], [web], [tls] and [storage] changes take effect after a \
                 restart"
            );
        }
        if let Some(alerts) = &self.alerts {
            alerts.reconfigure(&new);
        }
        let mut revocations = self.revocations.lock().unwrap_or_else(PoisonError::into_inner);
        revocations.refresh();
        let revoked_serials = revocations.serials();
        let revision = new.plans_revision_with(&revoked_serials);
        let live = Arc::new(Live { config: new, revision, revoked_serials });
        *self.live.write().unwrap_or_else(PoisonError::into_inner) = live;
        drop(revocations);
        if old.revision != revision {
            info!(old = old.revision, new = revision, "config reloaded: new plans");
        } else {
            info!(revision, "config reloaded: plans unchanged");
        }
        self.plans.send_replace(revision);
        Ok(revision)
    }
}

impl Revocations {
    fn load(path: &Path) -> Result<Self, String> {
        let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        let list = RevocationList::load(path).map_err(|e| e.to_string())?;
        Ok(Revocations { path: path.to_path_buf(), list, modified })
    }

    /// Re-reads the file if its modification time changed; returns whether the revoked
    /// serials changed. A file that became unreadable or malformed keeps the last good list
    /// (never an empty one) and logs why.
    fn refresh(&mut self) -> bool {
        let modified = std::fs::metadata(&self.path).and_then(|m| m.modified()).ok();
        if modified == self.modified {
            return false;
        }
        match RevocationList::load(&self.path) {
            Ok(list) => {
                let before = self.serials();
                self.list = list;
                self.modified = modified;
                info!(path = %self.path.display(), "revocation list re-read");
                self.serials() != before
            }
            Err(e) => {
                error!(error = %e, "revocation list unreadable; keeping the previous one");
                false
            }
        }
    }

    /// The revoked agent certificate serials, sorted.
    fn serials(&self) -> Vec<String> {
        self.list.serials().map(|(serial, _)| serial.to_owned()).collect()
    }
}

/// An error answer: status, a stable reason code and a sentence for a person.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    detail: String,
    /// Label for `stallwatch_collector_reports_rejected_total{reason}`; defaults to `code`.
    metric: Option<&'static str>,
    /// `Retry-After` (whole seconds, rounded up); 503s always carry one.
    retry_after: Option<std::time::Duration>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        ApiError { status, code, detail: detail.into(), metric: None, retry_after: None }
    }

    fn unavailable(code: &'static str, detail: impl Into<String>) -> Self {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, detail)
            .retry_after(std::time::Duration::from_secs(5))
    }

    fn retry_after(mut self, wait: std::time::Duration) -> Self {
        self.retry_after = Some(wait);
        self
    }

    fn with_metric(mut self, reason: &'static str) -> Self {
        self.metric = Some(reason);
        self
    }

    fn metric_reason(&self) -> &'static str {
        self.metric.unwrap_or(match self.code {
            "agent-mismatch" => "agent_mismatch",
            "bad-certificate" => "bad_certificate",
            "label-not-allowed" => "label_not_allowed",
            "clock-skew" => "clock_skew",
            "too-old" => "too_old",
            "too-large" => "too_large",
            "unsupported-encoding" => "unsupported_encoding",
            "store-unavailable" => "store_unavailable",
            "rate-limited" => "rate_limited",
            other => other,
        })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response =
            json_response(self.status, &json!({"error": self.code, "detail": self.detail}));
        if let Some(wait) = self.retry_after {
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        response
    }
}

fn json_response(status: StatusCode, body: &impl Serialize) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], bytes)
        .into_response()
}

/// A running collector: its bound addresses, and how to stop it.
pub struct Running {
    /// The ingest listener's address (useful when the config says port 0).
    pub ingest_addr: std::net::SocketAddr,
    /// The metrics listener's address.
    pub metrics_addr: std::net::SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    servers: tokio::task::JoinSet<std::io::Result<()>>,
    writer: Option<std::thread::JoinHandle<()>>,
    alerts: Option<AlertsService>,
}

impl Running {
    /// The shared state (series, fleet, config).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Stops accepting, finishes requests in flight (long-polls end at once), commits every
    /// queued report, and returns.
    pub async fn stop(mut self) {
        self.stop.send_replace(true);
        while let Some(result) = self.servers.join_next().await {
            if let Ok(Err(e)) = result {
                warn!(error = %e, "server ended with an error");
            }
        }
        if let Some(alerts) = self.alerts.take() {
            alerts.stop().await;
        }
        // Dropping the last senders lets the writer drain its queue and end.
        drop(self.shared);
        if let Some(writer) = self.writer.take() {
            let _ = tokio::task::spawn_blocking(move || writer.join()).await;
        }
    }
}

/// Loads the config at `path`, opens the store, rebuilds the series from it, binds both
/// listeners and starts serving.
pub async fn start(path: &Path) -> Result<Running, StartError> {
    start_with(path, None).await
}

/// [`start`], calling `restoring` (if any) as the restore from the store begins.
async fn start_with(
    path: &Path,
    restoring: Option<Box<dyn FnOnce() + Send>>,
) -> Result<Running, StartError> {
    let config = config::load(path).map_err(|e| match e {
        ConfigError::Read { .. } => StartError::Unreadable(e),
        ConfigError::Invalid(_) => StartError::Invalid(e.to_string()),
    })?;
    let invalid = |field: &str, reason: String| {
        StartError::Invalid(config.problem(field, reason).to_string())
    };
    let tls = server_config(&config.tls.ca, &config.tls.cert, &config.tls.key)
        .map_err(|e| invalid(e.field, e.reason))?;
    let revocations =
        Revocations::load(&config.tls.revoked).map_err(|e| invalid("tls.revoked", e))?;
    let store = SqliteStore::open(&config.storage.path).map_err(|e| {
        StartError::Failed(
            config.problem("storage.path", format!("cannot open the store: {e}")).to_string(),
        )
    })?;
    let relay_credentials = crate::config::RelayCredentials::load_or_create(
        &crate::config::RelayCredentials::secret_path(&config.storage.path),
    )
    .map_err(StartError::Failed)?;
    let series = Arc::new(SeriesStore::new(SeriesLimits::default()));
    if let Some(restoring) = restoring {
        restoring();
    }
    restore(&store, &config.storage, &series).map_err(StartError::Failed)?;

    let bind = |addr, field: &'static str| {
        let config = &config;
        async move {
            TcpListener::bind(addr).await.map_err(|e| {
                StartError::Failed(
                    config.problem(field, format!("cannot listen on {addr}: {e}")).to_string(),
                )
            })
        }
    };
    let ingest_tcp = bind(config.listen.ingest, "listen.ingest").await?;
    let metrics_tcp = bind(config.listen.metrics, "listen.metrics").await?;
    let ingest_addr = ingest_tcp.local_addr().map_err(|e| StartError::Failed(e.to_string()))?;
    let metrics_addr = metrics_tcp.local_addr().map_err(|e| StartError::Failed(e.to_string()))?;

    let retention = Retention {
        downsample_after: config.storage.downsample_after,
        keep_minutes: config.storage.raw_retention,
        keep_hours: config.storage.hourly_retention,
        // Longer than any spooled report the collector still accepts.
        keep_ledger: Retention::default().keep_ledger.max(config.ingest.max_backfill_age * 2),
    };
    let (writer_tx, writer_rx) = mpsc::channel(QUEUE_DEPTH);
    let writer = ingest::spawn_writer(Box::new(store), series.clone(), retention, writer_rx)
        .map_err(|e| StartError::Failed(format!("cannot start the store writer: {e}")))?;
    let alerts = AlertsService::start(&config).map_err(StartError::Failed)?;
    let (stop, shutdown) = watch::channel(false);
    let revoked_serials = revocations.serials();
    let revision = config.plans_revision_with(&revoked_serials);
    let shared = Arc::new(Shared {
        config_path: path.to_path_buf(),
        live: RwLock::new(Arc::new(Live { config, revision, revoked_serials })),
        plans: watch::channel(revision).0,
        revocations: Mutex::new(revocations),
        series,
        telemetry: Telemetry::default(),
        writer: writer_tx,
        admission: admission::Admission::default(),
        decoders: Arc::new(Semaphore::new(ingest::decoders())),
        shutdown: shutdown.clone(),
        alerts: alerts.as_ref().map(AlertsService::handle),
        relay_credentials,
    });

    let ingest_routes = Router::new()
        .route("/api/v1/plan", get(plan::get_plan))
        .route("/api/v1/reports", post(ingest::post_report))
        .with_state(shared.clone());
    let live = shared.live();
    let web_routes = web::routes(shared.clone(), &live.config)
        .map_err(|(field, e)| StartError::Invalid(live.config.problem(field, e).to_string()))?;

    let mut servers = tokio::task::JoinSet::new();
    let listener = tls::TlsListener::new(ingest_tcp, Arc::new(tls))
        .map_err(|e| StartError::Failed(e.to_string()))?;
    let signal = stopped(shutdown.clone());
    servers.spawn(async move {
        axum::serve(listener, ingest_routes.into_make_service_with_connect_info::<Peer>())
            .with_graceful_shutdown(signal)
            .await
    });
    let signal = stopped(shutdown);
    servers.spawn(async move {
        axum::serve(metrics_tcp, web_routes).with_graceful_shutdown(signal).await
    });
    info!(%ingest_addr, %metrics_addr, plans_revision = revision, "collector listening");
    Ok(Running { ingest_addr, metrics_addr, shared, stop, servers, writer: Some(writer), alerts })
}

async fn stopped(mut shutdown: watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Rebuilds the cumulative series and the agents' facts from the store's history (as deltas
/// the store replays, added as committed batches are), so a restart neither loses nor repeats
/// what was acknowledged. Totals cover the retained history: rows older than the longest
/// retention are deleted by the next maintenance and not worth restoring.
fn restore(
    store: &SqliteStore,
    storage: &crate::config::Storage,
    series: &SeriesStore,
) -> Result<(), String> {
    let keep = storage.hourly_retention.max(storage.raw_retention);
    let since =
        clock::unix_ms().saturating_sub(u64::try_from(keep.as_millis()).unwrap_or(u64::MAX));
    let stats = store
        .replay(since, &mut |delta| {
            series.apply(&delta);
        })
        .map_err(|e| format!("reading the history store: {e}"))?;
    info!(
        rows = stats.rows,
        cohorts = series.read().len(),
        agents = stats.agents,
        "series restored from the history store"
    );
    Ok(())
}

/// Runs the collector until SIGINT or SIGTERM; SIGHUP reloads the config.
pub async fn run(path: &Path) -> Result<(), StartError> {
    run_with(path, RunHooks::default()).await
}

/// Seams in [`run`] for tests of its start-up order (`collector/tests/startup.rs`); `run`
/// itself uses none.
#[derive(Default)]
pub struct RunHooks {
    /// Called as the restore from the store begins; the start waits for it to return.
    pub restoring: Option<Box<dyn FnOnce() + Send>>,
    /// Called with the shared state once serving, before the first signal is handled.
    pub serving: Option<Box<dyn FnOnce(Arc<Shared>) + Send>>,
    /// Stops like SIGTERM when it resolves (or its sender is dropped).
    pub stop: Option<tokio::sync::oneshot::Receiver<()>>,
}

/// [`run`] with test seams.
pub async fn run_with(path: &Path, hooks: RunHooks) -> Result<(), StartError> {
    // Before the restore, which can take minutes: SIGHUP's default action ends the process,
    // so a reload sent while it starts (a config management run) would kill it. A SIGHUP
    // that arrives during start-up is applied once serving; the config is read then anyway.
    // SIGTERM keeps its default action until then, so stopping during a restore is immediate.
    let mut hangup = signal(tokio::signal::unix::SignalKind::hangup())?;
    let running = start_with(path, hooks.restoring).await?;
    let mut terminate = signal(tokio::signal::unix::SignalKind::terminate())?;
    // Machine-readable start-up lines (scripts and tests read the bound addresses here).
    println!("ingest https://{}", running.ingest_addr);
    println!("metrics http://{}", running.metrics_addr);
    println!("ready");
    let shared = running.shared.clone();
    if let Some(serving) = hooks.serving {
        serving(shared.clone());
    }
    let mut stop = hooks.stop;
    let stopped = async {
        match stop.as_mut() {
            Some(stop) => {
                let _ = stop.await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            _ = hangup.recv() => {
                info!("SIGHUP: reloading the config");
                let _ = shared.reload();
            }
            _ = terminate.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            () = &mut stopped => break,
        }
    }
    info!("stopping: finishing requests and committing queued reports");
    drop(shared);
    running.stop().await;
    info!("stopped");
    Ok(())
}

fn signal(
    kind: tokio::signal::unix::SignalKind,
) -> Result<tokio::signal::unix::Signal, StartError> {
    tokio::signal::unix::signal(kind)
        .map_err(|e| StartError::Failed(format!("signal handler: {e}")))
}
