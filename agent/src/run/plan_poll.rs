//! Keeps the agent's plan current: long-polls `GET /api/v1/plan` with the revision it has,
//! persists every good plan to the state directory (used at the next start if the collector
//! is unreachable), and backs off 1 s doubling to 30 s while the collector fails.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use stallwatch_proto::plan::{MAX_PLAN_BYTES, Plan, decode_plan, encode_plan};
use tokio::sync::watch;
use tracing::{info, warn};

use super::client::{CollectorClient, PlanAnswer};

/// First retry delay after a failure.
pub const BACKOFF_START: Duration = Duration::from_secs(1);
/// Longest retry delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Retry delays: 1 s, 2 s, 4 s ... 30 s; reset on success.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { next: BACKOFF_START }
    }
}

impl Backoff {
    /// The delay before the next retry; doubles the one after it.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        d
    }

    /// Back to the first delay.
    pub fn reset(&mut self) {
        self.next = BACKOFF_START;
    }
}

/// Whether the collector answers, shared by the plan poller and the reporter so that
/// "unreachable" and "back" are logged once per change, not once per attempt.
#[derive(Debug)]
pub struct Health {
    reachable: AtomicBool,
    url: String,
}

impl Health {
    /// Starts as reachable (nothing is logged until the first failure).
    pub fn new(url: String) -> Arc<Self> {
        Arc::new(Health { reachable: AtomicBool::new(true), url })
    }

    /// Notes a success; logs if the collector was unreachable before.
    pub fn up(&self) {
        if !self.reachable.swap(true, Ordering::Relaxed) {
            info!(collector = %self.url, "collector reachable again");
        }
    }

    /// Notes a failure; logs if the collector was reachable before.
    pub fn down(&self, what: &str, error: &str) {
        if self.reachable.swap(false, Ordering::Relaxed) {
            warn!(collector = %self.url, error, "collector unreachable ({what}); retrying with backoff");
        }
    }

    /// Whether the last exchange worked.
    pub fn is_up(&self) -> bool {
        self.reachable.load(Ordering::Relaxed)
    }
}

/// Reads the last good plan from `path`, if there is a usable one.
pub fn load_saved_plan(path: &Path) -> Option<Plan> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            warn!(path = %path.display(), error = %e, "cannot read the saved plan; ignoring it");
            return None;
        }
    };
    match decode_plan(&bytes, MAX_PLAN_BYTES) {
        Ok(plan) => Some(plan),
        Err(e) => {
            warn!(path = %path.display(), error = %e, "the saved plan is unusable; ignoring it");
            None
        }
    }
}

/// Writes `plan` to `path` atomically (temporary file, sync, rename).
pub fn save_plan(path: &Path, plan: &Plan) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("json.tmp");
    {
        // 0600: a plan carries the relay's UDP credential, not for other users on the host.
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        // A file left by an older agent keeps its mode on open; set it either way.
        f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        f.write_all(&encode_plan(plan))?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

/// Polls for plans until `shutdown` turns true, publishing each new one on `plans`.
pub async fn poll_plans(
    client: Arc<CollectorClient>,
    wait: Duration,
    plan_file: PathBuf,
    health: Arc<Health>,
    plans: watch::Sender<Option<Plan>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Backoff::default();
    let mut last_error: Option<String> = None;
    loop {
        let known = plans.borrow().as_ref().map(|p| p.revision);
        let answer = tokio::select! {
            a = client.fetch_plan(known, wait) => a,
            _ = shutdown.wait_for(|s| *s) => return,
        };
        let delay = match answer {
            Ok(PlanAnswer::NotModified) => {
                health.up();
                backoff.reset();
                last_error = None;
                None
            }
            Ok(PlanAnswer::Plan(plan)) => {
                health.up();
                backoff.reset();
                last_error = None;
                if plans.borrow().as_ref() != Some(&plan) {
                    if let Err(e) = save_plan(&plan_file, &plan) {
                        warn!(path = %plan_file.display(), error = %e, "cannot save the plan");
                    }
                    plans.send_replace(Some(plan));
                    None
                } else if known.is_none() || wait.is_zero() {
                    // The same plan, not held: the collector ignores the wait; do not spin.
                    Some(wait.max(BACKOFF_START))
                } else {
                    None
                }
            }
            Err(e) => {
                let text = e.to_string();
                match &e {
                    super::client::PlanError::Network(_) => health.down("plan", &text),
                    _ => {
                        health.up();
                        if last_error.as_deref() != Some(text.as_str()) {
                            warn!(error = %text, "plan request failed; keeping the current plan");
                        }
                    }
                }
                last_error = Some(text);
                Some(backoff.next_delay())
            }
        };
        if let Some(d) = delay {
            tokio::select! {
                _ = tokio::time::sleep(d) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_thirty_seconds_and_resets() {
        let mut b = Backoff::default();
        let delays: Vec<u64> = (0..8).map(|_| b.next_delay().as_secs()).collect();
        assert_eq!(delays, vec![1, 2, 4, 8, 16, 30, 30, 30]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_secs(1));
    }

    #[test]
    fn a_saved_plan_is_read_back_and_a_broken_one_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.json");
        assert_eq!(load_saved_plan(&path), None);
        let plan = Plan {
            revision: 9,
            report_interval: Duration::from_secs(10),
            relay: None,
            probes: vec![],
        };
        save_plan(&path, &plan).unwrap();
        assert_eq!(load_saved_plan(&path), Some(plan));
        // It carries the relay's UDP credential: readable by the agent's user alone.
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "plan.json mode {mode:o}");
        std::fs::write(&path, b"{not json").unwrap();
        assert_eq!(load_saved_plan(&path), None);
    }
}
