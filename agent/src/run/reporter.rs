//! Every report interval (wall-clock aligned), folds what the probes measured into one report,
//! spools it, and drains the spool oldest first to the collector. While the collector fails
//! the reports stay spooled (bounded) and are sent in order when it answers again.

use std::sync::Arc;
use std::time::Duration;

use stallwatch_measure::Time;
use stallwatch_proto::plan::{DEFAULT_REPORT_INTERVAL, Plan};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{error, info, warn};

use super::attempt::Fold;
use super::client::{CollectorClient, REPORT_TIMEOUT};
use super::plan_poll::{Backoff, Health};
use super::schedule::next_report_tick;
use crate::clock::Clock;
use crate::report::{ReportBuilder, SendOutcome, Spool};

/// How long the last drain at shutdown may take.
pub const SHUTDOWN_DRAIN: Duration = Duration::from_secs(2);

/// The reporting side of `run`.
pub struct Reporter {
    pub builder: ReportBuilder,
    pub spool: Spool,
    pub client: Arc<CollectorClient>,
    pub agent: String,
    pub health: Arc<Health>,
    backoff: Backoff,
    retry_at: Option<Time>,
    dropped_logged: u64,
}

impl Reporter {
    /// A reporter over an opened builder and spool.
    pub fn new(
        builder: ReportBuilder,
        spool: Spool,
        client: Arc<CollectorClient>,
        agent: String,
        health: Arc<Health>,
    ) -> Self {
        Reporter {
            builder,
            spool,
            client,
            agent,
            health,
            backoff: Backoff::default(),
            retry_at: None,
            dropped_logged: 0,
        }
    }

    fn fold(&mut self, fold: Fold) {
        match fold {
            Fold::Window(key, w) => self.builder.add(&key, &w),
            Fold::Counter(key, name, v) => self.builder.add_counter(&key, &name, v),
            Fold::Histogram(key, name, r) => self.builder.add_histogram(&key, name, &r),
        };
    }

    /// Ends the interval: the report goes into the spool.
    fn close_interval(&mut self, now_ms: u64, revision: u64) {
        let mut report = match self.builder.take(now_ms, &self.agent, revision) {
            Ok(r) => r,
            Err(e) => {
                error!(error = %e, "cannot number a report; its windows go into the next one");
                return;
            }
        };
        report.spool_depth = self.spool.len() as u64;
        if let Err(e) = self.spool.push(&report) {
            error!(seq = report.seq, error = %e, "cannot spool a report; it is lost");
        }
        let dropped = self.spool.stats().dropped_oldest;
        if dropped > self.dropped_logged {
            info!(
                dropped = dropped - self.dropped_logged,
                total = dropped,
                "spool full: dropped the oldest reports"
            );
            self.dropped_logged = dropped;
        }
    }

    /// Sends spooled reports oldest first until empty or the collector says "later".
    async fn drain(&mut self, per_request: Duration) {
        loop {
            let (seq, bytes) = match self.spool.peek_oldest() {
                Ok(Some(next)) => next,
                Ok(None) => {
                    self.backoff.reset();
                    self.retry_at = None;
                    return;
                }
                Err(e) => {
                    error!(error = %e, "cannot read the spool");
                    self.schedule_retry();
                    return;
                }
            };
            let outcome = self.client.send_report(bytes, per_request).await;
            match &outcome {
                SendOutcome::RetryLater => {
                    self.health.down("reports", "no answer, or a 5xx");
                }
                _ => self.health.up(),
            }
            match self.spool.settle(seq, &outcome) {
                Ok(true) => {}
                Ok(false) => {
                    self.schedule_retry();
                    return;
                }
                Err(e) => {
                    error!(seq, error = %e, "cannot update the spool");
                    self.schedule_retry();
                    return;
                }
            }
        }
    }

    fn schedule_retry(&mut self) {
        self.retry_at = Some(Clock::global().now() + self.backoff.next_delay());
    }

    /// Runs until `finish` fires, then folds what is left into a last report, spools it and
    /// tries one drain of at most [`SHUTDOWN_DRAIN`].
    pub async fn run(
        mut self,
        mut folds: mpsc::UnboundedReceiver<Fold>,
        plans: watch::Receiver<Option<Plan>>,
        mut finish: oneshot::Receiver<()>,
    ) -> Spool {
        let clock = Clock::global();
        let revision = |plans: &watch::Receiver<Option<Plan>>| {
            plans.borrow().as_ref().map_or(0, |p| p.revision)
        };
        let mut last_tick = clock.unix_ms();
        // Send what a previous run left at once.
        if !self.spool.is_empty() {
            self.retry_at = Some(clock.now());
        }
        loop {
            let interval =
                plans.borrow().as_ref().map_or(DEFAULT_REPORT_INTERVAL, |p| p.report_interval);
            let tick_ms = next_report_tick(clock.unix_ms().max(last_tick), interval);
            let tick = tokio::time::sleep_until(
                clock.instant_at(Time::from_nanos(tick_ms * 1_000_000)).into(),
            );
            let retry = self.retry_at.map(|t| tokio::time::sleep_until(clock.instant_at(t).into()));
            tokio::select! {
                fold = folds.recv() => match fold {
                    Some(f) => self.fold(f),
                    None => {
                        // No producer left: wait for the finish signal only.
                        let _ = (&mut finish).await;
                        break;
                    }
                },
                _ = tick => {
                    last_tick = tick_ms;
                    while let Ok(f) = folds.try_recv() {
                        self.fold(f);
                    }
                    self.close_interval(clock.unix_ms().max(tick_ms), revision(&plans));
                    self.drain(REPORT_TIMEOUT).await;
                }
                _ = async move {
                    match retry {
                        Some(sleep) => sleep.await,
                        None => std::future::pending().await,
                    }
                } => {
                    self.retry_at = None;
                    self.drain(REPORT_TIMEOUT).await;
                }
                _ = &mut finish => break,
            }
        }
        // Shutdown: the probes have stopped; fold their last windows into a final report.
        while let Ok(f) = folds.try_recv() {
            self.fold(f);
        }
        self.close_interval(clock.unix_ms(), revision(&plans));
        if tokio::time::timeout(SHUTDOWN_DRAIN, self.drain(SHUTDOWN_DRAIN)).await.is_err()
            || !self.spool.is_empty()
        {
            warn!(spooled = self.spool.len(), "reports left in the spool for the next start");
        }
        self.spool
    }
}
