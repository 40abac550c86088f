//! Every report interval (wall-clock aligned), folds what the probes measured into one report,
//! spools it, and drains the spool oldest first to the collector. While the collector fails
//! the reports stay spooled (bounded) and are sent in order when it answers again.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
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
use crate::report::{ReportBuilder, SendOutcome, Spool, SpoolError, SpoolStats, raise_next_seq};

/// How long the last drain at shutdown may take.
pub const SHUTDOWN_DRAIN: Duration = Duration::from_secs(2);

/// The reporter's files: the builder (its sequence file) and the spool. Every operation that
/// touches the disk runs on the blocking pool ([`Reporter::on_disk`]), so fsyncs never stall
/// the async workers; the lock is never contended (one task uses it, one call at a time).
pub struct Books {
    pub builder: ReportBuilder,
    pub spool: Spool,
}

/// What the reporter left behind when it stopped.
#[derive(Debug, Clone, Copy)]
pub struct Left {
    /// Reports still queued for the next start.
    pub spooled: usize,
    /// The spool's counters over the run.
    pub stats: SpoolStats,
}

/// The reporting side of `run`.
pub struct Reporter {
    books: Arc<Mutex<Books>>,
    spool_dir: PathBuf,
    pub client: Arc<CollectorClient>,
    pub agent: String,
    pub health: Arc<Health>,
    backoff: Backoff,
    retry_at: Option<Time>,
    dropped_logged: u64,
    /// After a conflict: the builder must be reopened past this number once its interval
    /// ends (its windows cannot be carried over to a new builder before).
    renumber_builder: Option<u64>,
}

fn lock(books: &Mutex<Books>) -> MutexGuard<'_, Books> {
    books.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Reporter {
    /// A reporter over an opened builder and spool, both in `spool_dir`.
    pub fn new(
        builder: ReportBuilder,
        spool: Spool,
        client: Arc<CollectorClient>,
        agent: String,
        health: Arc<Health>,
    ) -> Self {
        Reporter {
            spool_dir: spool.dir().to_owned(),
            books: Arc::new(Mutex::new(Books { builder, spool })),
            client,
            agent,
            health,
            backoff: Backoff::default(),
            retry_at: None,
            dropped_logged: 0,
            renumber_builder: None,
        }
    }

    /// Runs `f` on the builder and spool on the blocking pool.
    async fn on_disk<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Books) -> T + Send + 'static,
    ) -> T {
        let books = self.books.clone();
        match tokio::task::spawn_blocking(move || f(&mut lock(&books))).await {
            Ok(value) => value,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }

    fn fold(&mut self, fold: Fold) {
        let builder = &mut lock(&self.books).builder;
        match fold {
            Fold::Window(key, w) => builder.add(&key, &w),
            Fold::Counter(key, counter, v) => builder.add_counter(&key, counter, v),
            Fold::Histogram(key, histogram, r) => builder.add_histogram(&key, histogram, &r),
        };
    }

    /// Ends the interval: the report goes into the spool (or, if its write fails, into the
    /// spool's memory queue until a later write succeeds).
    async fn close_interval(&mut self, now_ms: u64, revision: u64) {
        let agent = self.agent.clone();
        let renumber = self.renumber_builder.take();
        let dir = self.spool_dir.clone();
        let (stats, renumber_failed) = self
            .on_disk(move |books| {
                let mut report = match books.builder.take(now_ms, &agent, revision) {
                    Ok(r) => r,
                    Err(e) => {
                        error!(error = %e, "cannot number a report; its windows go into the next one");
                        return (books.spool.stats(), renumber);
                    }
                };
                let mut renumber_failed = None;
                if let Some(next) = renumber {
                    // The builder is empty now: reopen it past the renumbered reports.
                    let reopened = raise_next_seq(&dir, next).and_then(|()| {
                        ReportBuilder::open(&dir, books.builder.window_start_ms())
                    });
                    match reopened {
                        Ok(builder) => {
                            books.builder = builder;
                            info!(next = books.builder.next_seq(), "report numbering moved forward");
                        }
                        Err(e) => {
                            error!(error = %e, "cannot move report numbering forward; trying again next interval");
                            renumber_failed = Some(next);
                        }
                    }
                }
                report.spool_depth = books.spool.len() as u64;
                if let Err(e) = books.spool.push(&report) {
                    error!(seq = report.seq, error = %e, held = books.spool.unwritten(), "cannot write a report to the spool; holding it in memory");
                }
                (books.spool.stats(), renumber_failed)
            })
            .await;
        self.renumber_builder = self.renumber_builder.or(renumber_failed);
        let dropped = stats.dropped_oldest;
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
            let (seq, bytes) = match self.on_disk(|books| books.spool.peek_oldest()).await {
                Ok(Some(next)) => next,
                Ok(None) => {
                    self.backoff.reset();
                    self.retry_at = None;
                    return;
                }
                Err(e) => {
                    error!(error = %e, "cannot read the spool");
                    self.schedule_retry(None);
                    return;
                }
            };
            let outcome = self.client.send_report(seq, bytes, per_request).await;
            match &outcome {
                SendOutcome::RetryLater { reason, .. } => self.health.down("reports", reason),
                _ => self.health.up(),
            }
            if outcome == SendOutcome::Conflict {
                if let Err(e) = self.renumber(seq).await {
                    error!(seq, error = %e, "cannot renumber the spooled reports");
                    self.schedule_retry(None);
                    return;
                }
                continue;
            }
            let settle = outcome.clone();
            match self.on_disk(move |books| books.spool.settle(seq, &settle)).await {
                Ok(true) => {}
                Ok(false) => {
                    let after = match outcome {
                        SendOutcome::RetryLater { after, .. } => after,
                        _ => None,
                    };
                    self.schedule_retry(after);
                    return;
                }
                Err(e) => {
                    error!(seq, error = %e, "cannot update the spool");
                    self.schedule_retry(None);
                    return;
                }
            }
        }
    }

    /// The collector holds another report under `seq` (the state directory went back in
    /// time): gives `seq` and every queued report after it numbers past anything this agent
    /// can have issued (the wall clock in ms, as [`ReportBuilder::open`] does without a
    /// sequence file), and has the builder follow at the end of its interval.
    async fn renumber(&mut self, seq: u64) -> Result<(), SpoolError> {
        let now_ms = Clock::global().unix_ms();
        let dir = self.spool_dir.clone();
        let (first, next, count) = self
            .on_disk(move |books| {
                let first = now_ms.max(books.builder.next_seq());
                let before = books.spool.stats().renumbered;
                let next = books.spool.renumber_from(seq, first)?;
                // Also stored at once, so that a restart before the builder follows does not
                // reuse the new numbers.
                raise_next_seq(&dir, next)?;
                Ok::<_, SpoolError>((first, next, books.spool.stats().renumbered - before))
            })
            .await?;
        warn!(
            seq,
            renumbered = count,
            first,
            "the collector holds other reports under this agent's sequence numbers (state restored from a snapshot?): renumbered and resending"
        );
        self.renumber_builder = Some(self.renumber_builder.map_or(next, |n| n.max(next)));
        Ok(())
    }

    fn schedule_retry(&mut self, after: Option<Duration>) {
        let delay = self.backoff.next_delay().max(after.unwrap_or_default());
        self.retry_at = Some(Clock::global().now() + delay);
    }

    /// Runs until `finish` fires, then folds what is left into a last report, spools it and
    /// tries one drain of at most [`SHUTDOWN_DRAIN`].
    pub async fn run(
        mut self,
        mut folds: mpsc::UnboundedReceiver<Fold>,
        plans: watch::Receiver<Option<Plan>>,
        mut finish: oneshot::Receiver<()>,
    ) -> Left {
        let clock = Clock::global();
        let revision = |plans: &watch::Receiver<Option<Plan>>| {
            plans.borrow().as_ref().map_or(0, |p| p.revision)
        };
        let mut last_tick = clock.unix_ms();
        // Send what a previous run left at once.
        if !lock(&self.books).spool.is_empty() {
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
                    self.close_interval(clock.unix_ms().max(tick_ms), revision(&plans)).await;
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
        self.close_interval(clock.unix_ms(), revision(&plans)).await;
        let drained = tokio::time::timeout(SHUTDOWN_DRAIN, self.drain(SHUTDOWN_DRAIN)).await;
        // A write still failing now loses what is held in memory: say how much.
        let (left, unwritten) = self
            .on_disk(|books| {
                let _ = books.spool.flush();
                let spool = &books.spool;
                (Left { spooled: spool.len(), stats: spool.stats() }, spool.unwritten())
            })
            .await;
        if drained.is_err() || left.spooled > 0 {
            warn!(spooled = left.spooled, "reports left in the spool for the next start");
        }
        if unwritten > 0 {
            error!(
                lost = unwritten,
                "reports that could not be written to the spool are lost at exit"
            );
        }
        left
    }
}
