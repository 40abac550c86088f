//! The alerts as `run` starts them: the evaluator on its own thread with its own read-only
//! connection to the history store (the ingest writer never waits for it), the delivery
//! tasks on the runtime, and the [`AlertsHandle`] the web server asks for `/api/v1/alerts`
//! and `/metrics`. It reads the clock for the evaluator (`now` of each tick).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::watch;
use tracing::{error, info, warn};

use super::config::{Webhook, millis};
use super::evaluator::Evaluator;
use super::incidents::{Change, Incident};
use super::notifiers::{delivery, runbook_url};
use super::rules::threshold::Insufficient;
use super::state::{self, Notified, State};
use super::telemetry::Telemetry;
use super::timestamps::rfc3339;
use super::{AlertsConfig, Settings};
use crate::clock;
use crate::config::Config;
use crate::series::Exposition;
use crate::store::SqliteStore;

/// Resolved incidents listed by `/api/v1/alerts` under `recent`, ms.
const RECENT_MS: u64 = 24 * 3_600_000;

/// Delivery settings, fixed at start (a changed receiver list needs a restart).
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryPlan {
    /// Alertmanager base URLs.
    pub alertmanagers: Vec<String>,
    /// Webhooks.
    pub webhooks: Vec<Webhook>,
    /// Resend interval.
    pub resend_every: Duration,
    /// `endsAt` ahead, ms.
    pub ends_at_after_ms: u64,
    /// Request timeout.
    pub timeout: Duration,
    /// Give up a webhook notification after, ms.
    pub give_up_after_ms: u64,
    /// External URL.
    pub external_url: Option<String>,
    /// Runbook URL template.
    pub runbook_template: String,
}

impl DeliveryPlan {
    fn of(c: &AlertsConfig) -> Self {
        DeliveryPlan {
            alertmanagers: c.delivery.alertmanagers.clone(),
            webhooks: c.webhooks.clone(),
            resend_every: c.delivery.resend_every,
            ends_at_after_ms: millis(c.delivery.ends_at_after),
            timeout: c.delivery.timeout,
            give_up_after_ms: millis(c.delivery.give_up_after),
            external_url: c.delivery.external_url.clone(),
            runbook_template: c.runbook_url.clone(),
        }
    }

    /// Every receiver as (name, kind, URL for Alertmanagers or empty): `alertmanager-<n>` per
    /// replica, then the webhooks by name.
    pub fn receivers(&self) -> Vec<(String, &str, String)> {
        let replicas = self.alertmanagers.iter().enumerate();
        replicas
            .map(|(i, url)| (format!("alertmanager-{i}"), "alertmanager", url.clone()))
            .chain(self.webhooks.iter().map(|w| (w.name.clone(), w.format.as_str(), String::new())))
            .collect()
    }
}

/// What the evaluator publishes for the web server and the delivery tasks.
#[derive(Debug, Default)]
pub struct Core {
    /// Incidents and what each receiver heard (the persisted state).
    pub state: State,
    /// Too little data at the last evaluation.
    pub insufficient: Insufficient,
    /// Last evaluation, unix ms.
    pub evaluated_unix_ms: Option<u64>,
    /// Why the last evaluation failed, until one succeeds.
    pub last_error: Option<String>,
}

/// Shared between the evaluator thread, the delivery tasks and the web handlers.
#[derive(Debug)]
pub struct ServiceShared {
    core: Mutex<Core>,
    /// Serializes writes of the state file.
    persist: Mutex<()>,
    state_path: PathBuf,
    changed: watch::Sender<u64>,
    /// The alert path's own counters.
    pub telemetry: Telemetry,
    /// Delivery settings.
    pub delivery: DeliveryPlan,
    pending_settings: Mutex<Option<(Settings, u64)>>,
}

impl ServiceShared {
    /// The published state, locked (hold it briefly).
    pub fn lock(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes the state file with the state as it is now. Writes are serialized, and each
    /// takes the state at its own moment, so the file ends with the newest state.
    pub fn persist(&self) {
        let _guard = self.persist.lock().unwrap_or_else(PoisonError::into_inner);
        let state = self.lock().state.clone();
        if let Err(e) = state::save(&self.state_path, &state) {
            error!(error = %e, "cannot save the alert state; a restart may repeat notifications");
        }
    }

    /// A receiver of "an evaluation changed something" signals.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Records that webhook `receiver` heard `notified` of incident `id`, and saves it.
    pub async fn record(self: &Arc<Self>, receiver: &str, id: u64, notified: Notified) {
        self.lock().state.notified.entry(receiver.to_owned()).or_default().insert(id, notified);
        let shared = self.clone();
        let _ = tokio::task::spawn_blocking(move || shared.persist()).await;
    }
}

#[cfg(test)]
impl ServiceShared {
    /// A service state for delivery tests: `state`, `delivery`, and the state file at `path`.
    pub(crate) fn for_test(state: State, delivery: DeliveryPlan, path: PathBuf) -> Arc<Self> {
        Arc::new(ServiceShared {
            core: Mutex::new(Core { state, ..Core::default() }),
            persist: Mutex::new(()),
            state_path: path,
            changed: watch::channel(0).0,
            telemetry: Telemetry::default(),
            delivery,
            pending_settings: Mutex::new(None),
        })
    }
}

/// A cheap handle for the web server.
#[derive(Debug, Clone)]
pub struct AlertsHandle {
    shared: Arc<ServiceShared>,
}

impl AlertsHandle {
    /// Appends the alert families to an exposition in `format`.
    pub fn append_metrics(&self, format: Exposition, body: &mut Vec<u8>) {
        self.shared.telemetry.append(format, body);
    }

    /// New rule settings after a config reload (applied at the next evaluation). Receivers
    /// and the state file are fixed at start.
    pub fn reconfigure(&self, config: &Config) {
        let c = &config.alerts;
        if DeliveryPlan::of(c) != self.shared.delivery {
            warn!(
                "config reload: [alerts] receivers and delivery settings take effect after a restart"
            );
        }
        let settings = c.settings(&config.slo, &config.relays);
        *self.shared.pending_settings.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((settings, millis(config.storage.downsample_after)));
    }

    /// The open incidents (the watchdog left out), most severe first: what a live view such
    /// as the demo's prints (`Incident::summary` is one line).
    pub fn open(&self) -> Vec<Incident> {
        let core = self.shared.lock();
        let mut open: Vec<Incident> = core
            .state
            .incidents
            .open_incidents()
            .filter(|i| i.alert != super::Alert::Watchdog)
            .cloned()
            .collect();
        open.sort_by_key(|i| (std::cmp::Reverse(i.severity), i.id));
        open
    }

    /// `GET /api/v1/alerts`: open incidents, those resolved in the last day, cohorts with too
    /// little data, and each receiver's counts.
    pub fn api(&self, now: u64) -> Value {
        let core = self.shared.lock();
        let template = &self.shared.delivery.runbook_template;
        let view = |i: &Incident| incident_json(i, template);
        let open: Vec<Value> = core.state.incidents.open_incidents().map(view).collect();
        let mut recent: Vec<&Incident> = core
            .state
            .incidents
            .all
            .values()
            .filter(|i| i.resolved_unix_ms.is_some_and(|r| now.saturating_sub(r) <= RECENT_MS))
            .collect();
        recent.sort_by_key(|i| std::cmp::Reverse(i.resolved_unix_ms));
        let insufficient: Vec<Value> = core
            .insufficient
            .iter()
            .map(|(c, signals)| {
                json!({
                    "region": c.region, "network_type": c.network_type,
                    "transport": c.transport, "repair": c.repair, "target": c.target,
                    "signals": signals.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
                })
            })
            .collect();
        let t = self.shared.telemetry.totals();
        let d = &self.shared.delivery;
        let receivers: Vec<Value> = d
            .receivers()
            .into_iter()
            .map(|(name, kind, url)| {
                let get = |m: &BTreeMap<String, u64>| m.get(&name).copied().unwrap_or(0);
                let mut v = json!({
                    "name": name, "kind": kind,
                    "notifications": get(&t.notifications),
                    "failures": get(&t.delivery_failures),
                    "dropped": get(&t.dropped),
                });
                if !url.is_empty() {
                    v["url"] = json!(url);
                }
                v
            })
            .collect();
        json!({
            "enabled": true,
            "evaluated_at": core.evaluated_unix_ms.map(rfc3339),
            "evaluations": t.evaluations,
            "last_error": core.last_error,
            "open": open,
            "recent": recent.into_iter().map(view).collect::<Vec<_>>(),
            "insufficient_data": insufficient,
            "receivers": receivers,
        })
    }
}

fn incident_json(i: &Incident, template: &str) -> Value {
    let mut v = serde_json::to_value(i).unwrap_or(Value::Null);
    v["alertname"] = json!(i.alert.name());
    v["service"] = json!(i.alert.service());
    v["runbook_url"] = json!(runbook_url(template, i.alert));
    v["opened_at"] = json!(rfc3339(i.opened_unix_ms));
    if let Some(r) = i.resolved_unix_ms {
        v["resolved_at"] = json!(rfc3339(r));
    }
    v
}

/// The running alert service.
#[derive(Debug)]
pub struct AlertsService {
    handle: AlertsHandle,
    thread: Option<std::thread::JoinHandle<()>>,
    stop_thread: std::sync::mpsc::Sender<()>,
    stop_tasks: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Where the state file is: `alerts.state_file`, or `alerts-state.json` beside the store.
pub fn state_path(config: &Config) -> PathBuf {
    config.alerts.state_file.clone().unwrap_or_else(|| {
        let dir = config.storage.path.parent().filter(|d| !d.as_os_str().is_empty());
        dir.unwrap_or(Path::new(".")).join("alerts-state.json")
    })
}

impl AlertsService {
    /// Starts the evaluator and the delivery tasks for `config` (inside a tokio runtime).
    /// `None` when `[alerts] enabled = false`.
    pub fn start(config: &Config) -> Result<Option<Self>, String> {
        let c = &config.alerts;
        if !c.enabled {
            info!("alerts disabled ([alerts] enabled = false)");
            return Ok(None);
        }
        let settings = c.settings(&config.slo, &config.relays);
        let downsample_after_ms = millis(config.storage.downsample_after);
        let path = state_path(config);
        let (state, problem) = state::load(&path);
        if let Some(e) = problem {
            error!(error = %e, "alert state not restored; starting with no open incidents");
        }
        let open = state.incidents.open_incidents().count();
        let store = SqliteStore::open(&config.storage.path)
            .map_err(|e| format!("alerts: cannot open the history store for reading: {e}"))?;
        let client = delivery::client(c.delivery.timeout)?;
        let (changed, _) = watch::channel(0u64);
        let shared = Arc::new(ServiceShared {
            core: Mutex::new(Core { state: state.clone(), ..Core::default() }),
            persist: Mutex::new(()),
            state_path: path.clone(),
            changed,
            telemetry: Telemetry::with_receivers(
                DeliveryPlan::of(c).receivers().into_iter().map(|(name, _, _)| name),
            ),
            delivery: DeliveryPlan::of(c),
            pending_settings: Mutex::new(None),
        });
        let evaluator = Evaluator::new(settings, downsample_after_ms, state.incidents);
        let (stop_thread, stopped) = std::sync::mpsc::channel();
        let thread_shared = shared.clone();
        let every = c.evaluate_every;
        let thread = std::thread::Builder::new()
            .name("alert-evaluator".into())
            .spawn(move || evaluate_loop(thread_shared, evaluator, store, every, stopped))
            .map_err(|e| format!("alerts: cannot start the evaluator thread: {e}"))?;
        let (stop_tasks, stop_rx) = watch::channel(false);
        let mut tasks = vec![tokio::spawn(delivery::alertmanager_loop(
            shared.clone(),
            client.clone(),
            shared.subscribe(),
            stop_rx.clone(),
        ))];
        for i in 0..shared.delivery.webhooks.len() {
            tasks.push(tokio::spawn(delivery::webhook_loop(
                shared.clone(),
                client.clone(),
                i,
                shared.subscribe(),
                stop_rx.clone(),
            )));
        }
        info!(
            state = %path.display(),
            open_incidents = open,
            alertmanagers = shared.delivery.alertmanagers.len(),
            webhooks = shared.delivery.webhooks.len(),
            every = ?every,
            "alert evaluator started"
        );
        Ok(Some(AlertsService {
            handle: AlertsHandle { shared },
            thread: Some(thread),
            stop_thread,
            stop_tasks,
            tasks,
        }))
    }

    /// The handle for the web server.
    pub fn handle(&self) -> AlertsHandle {
        self.handle.clone()
    }

    /// Stops the evaluator (it saves the state) and the delivery tasks.
    pub async fn stop(mut self) {
        let _ = self.stop_thread.send(());
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        // Deliveries in flight get a moment to finish; what they were sending is saved only
        // once delivered, so one cut short is sent again after the restart.
        self.stop_tasks.send_replace(true);
        for mut task in self.tasks.drain(..) {
            if tokio::time::timeout(Duration::from_secs(2), &mut task).await.is_err() {
                task.abort();
            }
        }
        let shared = self.handle.shared.clone();
        let _ = tokio::task::spawn_blocking(move || shared.persist()).await;
    }
}

fn evaluate_loop(
    shared: Arc<ServiceShared>,
    mut evaluator: Evaluator,
    store: SqliteStore,
    every: Duration,
    stopped: std::sync::mpsc::Receiver<()>,
) {
    loop {
        let pending = shared.pending_settings.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some((settings, downsample_after_ms)) = pending {
            evaluator.reconfigure(settings, downsample_after_ms);
            info!("alert rules reconfigured");
        }
        let started = clock::monotonic();
        let now = clock::unix_ms();
        match evaluator.tick(now, &store) {
            Ok(tick) => {
                for p in &tick.problems {
                    warn!(error = %p, "alerts: part of a history row skipped");
                }
                for t in &tick.transitions {
                    let Some(i) = evaluator.incidents().all.get(&t.id) else { continue };
                    let level = if t.change == Change::Resolved { "resolved" } else { "firing" };
                    info!(incident = t.id, change = ?t.change, severity = %t.to, state = level, summary = %i.summary, "alert incident changed");
                }
                let insufficient = evaluator.insufficient().values().map(Vec::len).sum();
                {
                    let mut core = shared.lock();
                    core.state.incidents = evaluator.incidents().clone();
                    core.state.prune();
                    core.insufficient = evaluator.insufficient().clone();
                    core.evaluated_unix_ms = Some(now);
                    core.last_error = None;
                }
                shared.telemetry.evaluated(now, evaluator.incidents(), insufficient);
                shared.persist();
                if !tick.transitions.is_empty() {
                    shared.changed.send_modify(|n| *n += 1);
                }
                let took = clock::monotonic().saturating_duration_since(started);
                if took > every / 2 {
                    warn!(took = ?took, rows = tick.rows, "alert evaluation took over half its interval");
                }
            }
            Err(e) => {
                shared.telemetry.evaluation_failed();
                shared.lock().last_error = Some(e.to_string());
                error!(error = %e, "alert evaluation failed; retrying at the next interval");
            }
        }
        match stopped.recv_timeout(every) {
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            _ => break,
        }
    }
    shared.persist();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::incidents::{Assessment, IncidentKey, Incidents, Scope};
    use crate::alerts::{Alert, Severity};

    fn handle() -> AlertsHandle {
        let mut incidents = Incidents::default();
        let firing = |s: Severity| Assessment { severity: Some(s), ..Assessment::default() };
        let key = |alert: Alert, region: &str| IncidentKey {
            alert,
            scope: Scope { region: region.into(), ..Scope::default() },
        };
        let opened = [
            (key(Alert::Watchdog, ""), firing(Severity::None)),
            (key(Alert::Stalls, "sea"), firing(Severity::P2)),
            (key(Alert::ViewFailures, "eu"), firing(Severity::P1)),
            (key(Alert::Loss, "latam"), firing(Severity::P2)),
        ];
        incidents.apply(60_000, &opened.into_iter().collect(), 0);
        // The loss incident clears and resolves.
        let quiet = [(key(Alert::Loss, "latam"), Assessment::default())];
        incidents.apply(120_000, &quiet.into_iter().collect(), 0);
        let state = State { version: state::STATE_VERSION, incidents, ..State::default() };
        let delivery = DeliveryPlan::of(&AlertsConfig::default());
        let path = std::env::temp_dir().join("stallwatch-service-test-unused.json");
        AlertsHandle { shared: ServiceShared::for_test(state, delivery, path) }
    }

    #[test]
    fn open_lists_incidents_most_severe_first_without_the_watchdog() {
        let open: Vec<(Severity, Alert)> =
            handle().open().iter().map(|i| (i.severity, i.alert)).collect();
        assert_eq!(open, [(Severity::P1, Alert::ViewFailures), (Severity::P2, Alert::Stalls)]);
    }

    #[test]
    fn the_api_lists_open_and_recent_incidents() {
        let v = handle().api(180_000);
        let names = |k: &str| -> Vec<String> {
            v[k].as_array()
                .unwrap()
                .iter()
                .map(|i| i["alertname"].as_str().unwrap().to_owned())
                .collect()
        };
        // In the order they opened (ids).
        assert_eq!(
            names("open"),
            ["StallwatchViewFailures", "StallwatchStalls", "StallwatchWatchdog"]
        );
        assert_eq!(names("recent"), ["StallwatchLoss"]);
        let loss = &v["recent"][0];
        assert_eq!(
            (loss["resolution"].as_str(), loss["resolved_at"].as_str()),
            (Some("clear"), Some("1970-01-01T00:02:00.000Z"))
        );
        assert_eq!(
            loss["runbook_url"],
            "https://example.invalid/stallwatch/blob/main/docs/runbooks/loss.md"
        );
        assert_eq!(v["open"][1]["scope"]["region"], "sea");
        assert_eq!(v["open"][1]["service"], "streaming");
        assert_eq!(v["open"][2]["service"], "monitoring");
        assert_eq!(v["open"][2]["service"], "monitoring");
        // Resolved more than a day ago: no longer recent.
        assert!(handle().api(2 * 86_400_000)["recent"].as_array().unwrap().is_empty());
    }
}
