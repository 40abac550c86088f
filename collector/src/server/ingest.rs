//! `POST /api/v1/reports`: checks a report against the certificate, the limits, the label
//! allow-lists and the clock, then hands it to the group-commit writer and answers only once
//! the store has made it durable.
//!
//! The one ingest path: admission (one report in flight per agent, a per-agent rate:
//! [`Admission`]) -> decode ([`decode_report`], behind a semaphore of [`decoders`] permits: on
//! the async worker within a budget of about 1.5 ms, past it on the blocking pool) -> checks (identity, labels, the metric
//! catalogue, the window) -> the writer thread, which owns the store: it takes every report waiting in its queue (up
//! to [`MAX_BATCH`]) and commits them in one transaction, so concurrent agents share one
//! fsync. The transaction admits each report through the ledger and builds the batch's
//! [`Delta`](crate::store::Delta) (histograms merged per cohort and minute, counters, agent
//! facts), from which it writes the rows; once it has committed, the `series-fold` thread adds
//! that same delta to the exported series, which also hold the facts the fleet view shows, and
//! answers, while the writer commits the next batch. The series never show data that a crash
//! could lose.

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use axum::body::{Body, to_bytes};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use stallwatch_proto::hdr;
use stallwatch_proto::report::{DecodedReport, ReportError, ReportLimits, decode_report};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tracing::{error, info, warn};

use super::admission::{Admission, Refusal};
use super::tls::Peer;
use super::{ApiError, Shared, json_response};
use crate::clock;
use crate::pki::VerifiedAgent;
use crate::series::SeriesStore;
use crate::series::catalogue::{counter_index, histogram_index};
use crate::store::{Delta, HistoryStore, IngestItem, Outcome, Retention, report_digest};

/// Most reports committed in one transaction. Batches only grow this large when reports
/// arrive faster than the writer commits them; then each batch rewrites every minute row it
/// touches once, so bigger batches cost less per report (BENCHMARKS.md), for at most some
/// 150 ms more before a report is acknowledged.
pub const MAX_BATCH: usize = 2048;
/// Reports waiting for the writer beyond which ingest answers 503 `overloaded`.
pub const QUEUE_DEPTH: usize = 8192;
/// Shortest report window cap: a window may be this long whatever the plans say. An agent's
/// window is its report interval (longer only while its disk refuses to record a report).
const MIN_WINDOW_CAP: Duration = Duration::from_secs(15 * 60);
/// How often the writer applies downsampling and retention.
const MAINTENANCE_EVERY: Duration = Duration::from_secs(600);

/// One checked report on its way to the store.
pub struct Job {
    agent: Arc<VerifiedAgent>,
    decoded: DecodedReport,
    digest: [u8; 32],
    received_unix_ms: u64,
    reply: oneshot::Sender<Answer>,
}

/// The writer's answer to one [`Job`]. The decoded report travels back with it so that the
/// request task frees it, not the writer: freeing every report's allocations on the one
/// writer thread cost that thread about a tenth of its time.
struct Answer {
    outcome: Result<Outcome, String>,
    _decoded: DecodedReport,
}

/// The answer to a stored or duplicate report: `{"result":"stored","seq":7}`. A struct, not
/// `json!`, so the answer costs no map or owned strings per report.
#[derive(serde::Serialize)]
struct Accepted {
    result: &'static str,
    seq: u64,
}

/// The handler.
pub async fn post_report(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = clock::monotonic();
    let result = ingest(&shared, &peer, &headers, body).await;
    let telemetry = &shared.telemetry;
    match result {
        Ok((outcome, seq)) => {
            telemetry.observe_ingest(clock::monotonic().saturating_duration_since(started));
            let result = if outcome == Outcome::Stored { "stored" } else { "duplicate" };
            json_response(StatusCode::OK, &Accepted { result, seq })
        }
        Err(e) => {
            if e.status.is_server_error() {
                warn!(peer = %peer.addr, reason = e.code, detail = %e.detail, "ingest: report not stored");
            } else {
                info!(peer = %peer.addr, reason = e.code, detail = %e.detail, "ingest: report refused");
            }
            telemetry.report_rejected(e.metric_reason());
            e.into_response()
        }
    }
}

async fn ingest(
    shared: &Shared,
    peer: &Peer,
    headers: &HeaderMap,
    body: Body,
) -> Result<(Outcome, u64), ApiError> {
    let agent = shared.check_peer(peer)?;
    if let Some(encoding) = headers.get(header::CONTENT_ENCODING)
        && encoding.as_bytes() != b"identity"
    {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-encoding",
            "send reports without Content-Encoding: the collector caps and decodes the body as sent",
        ));
    }
    let live = shared.live();
    let limits = live.config.ingest.report_limits();
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-large",
            format!("report body over ingest.max_report_bytes ({} bytes)", limits.max_report_bytes),
        )
    };
    // A declared length over the cap is refused before the body is read, so a client that
    // waits for `100 Continue` gets the 413 instead, and none sends a body only to have the
    // connection closed under it (whose reset can lose the answer).
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse().ok());
    if declared.is_some_and(|len: u64| len > limits.max_report_bytes as u64) {
        return Err(too_large());
    }
    // Held until the answer: the agent's next report waits for this one.
    let _turn = admit(&shared.admission, &agent)?;
    let bytes = to_bytes(body, limits.max_report_bytes).await.map_err(|_| too_large())?;
    let (decoded, digest) = decode(&shared.decoders, bytes, limits).await?;
    let report = &decoded.report;
    if report.agent != agent.name() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "agent-mismatch",
            format!(
                "report names agent {:?} but the certificate is {:?}'s",
                report.agent,
                agent.name()
            ),
        ));
    }
    check_labels(&live.config.labels, &agent, &decoded)?;
    check_names(&decoded)?;
    check_layouts(&decoded)?;
    let now = clock::unix_ms();
    let skew = millis(live.config.ingest.max_clock_skew);
    if report.window_end_ms > now.saturating_add(skew) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "clock-skew",
            format!(
                "the report's window ends {} ms in the future (ingest.max_clock_skew is {} ms): \
                 check the agent's clock (NTP)",
                report.window_end_ms - now,
                skew
            ),
        ));
    }
    let longest = millis(window_cap(&live.config));
    let length = report.window_end_ms - report.window_start_ms;
    if length > longest {
        // Set aside, not deleted: an agent whose disk refused its reports for a while sends
        // one long window when it recovers.
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-large",
            format!(
                "the report's window is {} s long, over the {} s this collector accepts (twice \
                 the longest plan report_interval, at least {} s)",
                length / 1000,
                longest / 1000,
                MIN_WINDOW_CAP.as_secs()
            ),
        )
        .with_metric("window_too_long"));
    }
    // The window's start, not its end: a report lands in the minute of its window's middle.
    let max_age = millis(live.config.ingest.max_backfill_age);
    if report.window_start_ms.saturating_add(max_age) < now {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "too-old",
            format!(
                "the report's window started {} s ago, beyond ingest.max_backfill_age ({} s)",
                (now - report.window_start_ms) / 1000,
                max_age / 1000
            ),
        ));
    }
    let seq = report.seq;
    // Counted as backfill: it waited in the agent's spool (`ingest.backfill_after`).
    let backfill_after = millis(live.config.ingest.backfill_after);
    let backfill = report.window_end_ms.saturating_add(backfill_after) < now;
    let (reply, answer) = oneshot::channel();
    let job = Job { agent, decoded, digest, received_unix_ms: now, reply };
    shared.writer.try_send(job).map_err(|e| match e {
        mpsc::error::TrySendError::Full(_) => ApiError::unavailable(
            "overloaded",
            format!("more than {QUEUE_DEPTH} reports wait for the store; retry later"),
        ),
        mpsc::error::TrySendError::Closed(_) => {
            ApiError::unavailable("store-unavailable", "the collector is shutting down")
        }
    })?;
    let outcome = answer
        .await
        .map_err(|_| ApiError::unavailable("store-unavailable", "the store writer stopped"))?
        .outcome
        .map_err(|detail| ApiError::unavailable("store-unavailable", detail))?;
    match outcome {
        Outcome::Rejected(e) => {
            Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "unstorable", e.to_string())
                .with_metric(e.reason()))
        }
        Outcome::Conflict => Err(ApiError::new(
            StatusCode::CONFLICT,
            "seq-conflict",
            format!(
                "another report was stored under seq {seq} for this agent (was its state \
                 restored from a snapshot?): resend it under a new number"
            ),
        )
        .with_metric("seq_conflict")),
        outcome => {
            if outcome == Outcome::Stored {
                shared.telemetry.report_accepted();
                if backfill {
                    shared.telemetry.report_backfilled();
                }
            }
            Ok((outcome, seq))
        }
    }
}

/// Lets the agent's report in, or answers 429 with when to come back.
fn admit<'a>(
    admission: &'a Admission,
    agent: &VerifiedAgent,
) -> Result<super::admission::Turn<'a>, ApiError> {
    admission.admit(agent.name(), clock::monotonic()).map_err(|refusal| match refusal {
        Refusal::Busy => ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "busy",
            "another report from this agent is in flight: send one at a time",
        )
        .retry_after(Duration::from_secs(1)),
        Refusal::Rate(wait) => ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate-limited",
            format!(
                "this agent sent reports faster than {} per second (bursts of {}); retry later",
                super::admission::REPORTS_PER_SECOND,
                super::admission::REPORT_BURST
            ),
        )
        .retry_after(wait),
    })
}

/// Reports decoded at once: one per core. Decoding is CPU-bound, so more would only queue,
/// each holding its body.
pub fn decoders() -> usize {
    thread::available_parallelism().map_or(2, usize::from).clamp(1, 8)
}

/// Bodies up to this size are decoded on the async worker that read them: JSON-parsing them
/// takes well under a millisecond.
const INLINE_BODY_BYTES: usize = 256 << 10;
/// What a report decoded on an async worker may inflate to, together. A real report inflates
/// to some 15 KB; 1 MiB of inflation costs about 1.5 ms, so a bomb holds a worker no longer
/// than that before it moves to the blocking pool.
const INLINE_INFLATED_BYTES: usize = 1 << 20;

/// Decodes a report and digests its body, at most [`decoders`] at once. An ordinary report is
/// decoded on the async worker that read it: handing each report to the blocking pool and back
/// cost about a sixth of the HTTPS ingest rate (BENCHMARKS.md). One that is large, or that
/// inflates past [`INLINE_INFLATED_BYTES`], is decoded (again) on the blocking pool under the
/// full limits, so no worker spends more than a couple of milliseconds on one report.
async fn decode(
    decoders: &Arc<Semaphore>,
    bytes: axum::body::Bytes,
    limits: ReportLimits,
) -> Result<(DecodedReport, [u8; 32]), ApiError> {
    let stopping = || ApiError::unavailable("store-unavailable", "the collector is shutting down");
    let permit = decoders.clone().acquire_owned().await.map_err(|_| stopping())?;
    let inline_limits = ReportLimits {
        max_inflated_bytes: limits.max_inflated_bytes.min(INLINE_INFLATED_BYTES),
        ..limits
    };
    let inline = (bytes.len() <= INLINE_BODY_BYTES)
        .then(|| decode_report(&bytes, &inline_limits))
        .filter(|result| {
            // Over the inline budget only: the full limits may still allow it.
            !matches!(result, Err(ReportError::InflatedTooLarge { .. }))
                || inline_limits.max_inflated_bytes == limits.max_inflated_bytes
        });
    let decoded = match inline {
        Some(result) => {
            drop(permit);
            result.map(|decoded| (decoded, report_digest(&bytes)))
        }
        None => tokio::task::spawn_blocking(move || {
            let _permit = permit;
            decode_report(&bytes, &limits).map(|decoded| (decoded, report_digest(&bytes)))
        })
        .await
        .map_err(|_| stopping())?,
    };
    decoded.map_err(decode_refusal)
}

/// The answer to a report [`decode_report`] refused.
fn decode_refusal(e: ReportError) -> ApiError {
    let (status, code) = match e {
        // About the agent's labels and this collector, not the report: the agent keeps it
        // and retries, as after the allow-lists' refusals ([`check_labels`]).
        ReportError::Label { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "label-not-allowed"),
        // Caps on the whole report set it aside (413); a broken report is deleted (400).
        ReportError::TooLarge { .. }
        | ReportError::HistogramMemory { .. }
        | ReportError::InflatedTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too-large"),
        _ => (StatusCode::BAD_REQUEST, "malformed"),
    };
    ApiError::new(status, code, e.to_string()).with_metric(e.reason())
}

/// Refuses a report carrying a counter or histogram the collector does not export (not in
/// `stallwatch_proto::catalogue`): the store would keep it for months and nothing would read
/// it.
fn check_names(decoded: &DecodedReport) -> Result<(), ApiError> {
    let refuse = |detail: String| {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "unstorable", detail)
            .with_metric("unknown_metric")
    };
    for (i, series) in decoded.report.series.iter().enumerate() {
        if let Some(name) = series.counters.keys().find(|n| counter_index(n).is_none()) {
            return Err(refuse(format!(
                "series {i}: counter {name:?} is not a metric this collector knows; \
                 nothing of the report was stored"
            )));
        }
        if let Some(name) = series.histograms.keys().find(|n| histogram_index(n).is_none()) {
            return Err(refuse(format!(
                "series {i}: histogram {name:?} is not a metric this collector knows; \
                 nothing of the report was stored"
            )));
        }
    }
    Ok(())
}

/// Refuses a report with a histogram in another layout than stallwatch's (lowest discernible
/// value 1 µs, [`hdr::SIGNIFICANT_FIGURES`] significant figures), naming the series and the
/// histogram. Converting would move values to other buckets, and quantiles taken from the
/// merged histograms would no longer be exact to stallwatch's precision.
fn check_layouts(decoded: &DecodedReport) -> Result<(), ApiError> {
    for (i, (series, histograms)) in
        decoded.report.series.iter().zip(&decoded.histograms).enumerate()
    {
        let Some((name, h)) = histograms.iter().find(|(_, h)| !h.is_stallwatch_layout()) else {
            continue;
        };
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unstorable",
            format!(
                "series {i} {}: histogram {name:?} has lowest discernible value {} and {} \
                 significant figures; stallwatch's layout is lowest 1 and {} significant \
                 figures (hdr::new_histogram); nothing of the report was stored",
                series.labels,
                h.low(),
                h.sigfig(),
                hdr::SIGNIFICANT_FIGURES
            ),
        )
        .with_metric("histogram_layout"));
    }
    Ok(())
}

/// The longest report window accepted: twice the longest report interval a plan sets, and at
/// least [`MIN_WINDOW_CAP`].
fn window_cap(config: &crate::config::Config) -> Duration {
    let longest = config.plans.iter().map(|p| p.report_interval).max().unwrap_or_default();
    longest.saturating_mul(2).max(MIN_WINDOW_CAP)
}

/// Refuses a report whose cohort labels are outside the allow-lists, naming the value. The
/// series' own labels were read by [`decode_report`], which refuses an unknown label, a
/// missing one and a transport, repair or role outside its set (mapped to the same
/// `label-not-allowed` answer in [`decode`]).
fn check_labels(
    labels: &crate::config::Labels,
    agent: &VerifiedAgent,
    decoded: &DecodedReport,
) -> Result<(), ApiError> {
    let refuse = |detail: String| {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "label-not-allowed", detail)
    };
    if !labels.allows_region(agent.region()) {
        return Err(refuse(format!(
            "region {:?} (from the certificate) is not in this collector's labels.regions",
            agent.region()
        )));
    }
    if !labels.allows_network_type(agent.network_type()) {
        return Err(refuse(format!(
            "network type {:?} (from the certificate) is not in labels.network_types",
            agent.network_type()
        )));
    }
    for (i, series) in decoded.report.series.iter().enumerate() {
        let target = &series.labels.target;
        if !labels.allows_target(target) {
            return Err(refuse(format!("series {i}: target {target:?} is not in labels.targets")));
        }
    }
    Ok(())
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Starts the group-commit writer thread. It ends, after committing everything queued and
/// folding and answering everything committed, when every sender is dropped.
///
/// Folding a committed batch into the series and answering its reports run on a second
/// thread, `series-fold`, while the writer commits the next batch: the writer is what limits
/// ingest when many cohorts' rows are rewritten per batch, and the fold was an eighth of its
/// time (BENCHMARKS.md). Batches are folded in commit order, and a report is answered only
/// once the series hold it, as before.
pub fn spawn_writer(
    mut store: Box<dyn HistoryStore>,
    series: Arc<SeriesStore>,
    retention: Retention,
    mut jobs: mpsc::Receiver<Job>,
) -> std::io::Result<thread::JoinHandle<()>> {
    // One batch folding, at most one more waiting (their decoded reports held); then the
    // writer waits too, and the queue in front of it fills (503 `overloaded`).
    let (folds, to_fold) = std::sync::mpsc::sync_channel::<Fold>(1);
    let folder = thread::Builder::new().name("series-fold".into()).spawn(move || {
        for Fold { delta, answers } in to_fold {
            if let Some(delta) = delta {
                series.apply(&delta);
            }
            for (reply, answer) in answers {
                let _ = reply.send(answer);
            }
        }
    })?;
    thread::Builder::new().name("store-writer".into()).spawn(move || {
        let mut last_maintenance = clock::monotonic();
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while let Some(first) = jobs.blocking_recv() {
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match jobs.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            if folds.send(commit(&mut *store, &mut batch)).is_err() {
                error!("the series fold thread ended; the writer stops");
                break;
            }
            let now = clock::monotonic();
            if now.saturating_duration_since(last_maintenance) >= MAINTENANCE_EVERY {
                last_maintenance = now;
                match store.maintain(clock::unix_ms(), &retention) {
                    Ok(stats) => info!(?stats, "store maintenance done"),
                    Err(e) => error!(error = %e, "store maintenance failed"),
                }
            }
        }
        // Everything committed is folded and answered before the writer ends.
        drop(folds);
        let _ = folder.join();
    })
}

/// A committed batch on its way to the series, with its reports' answers: no delta when the
/// batch failed.
struct Fold {
    delta: Option<Delta>,
    answers: Vec<(oneshot::Sender<Answer>, Answer)>,
}

/// Commits a batch; what it stored goes to the series before the answers go out ([`Fold`]).
fn commit(store: &mut dyn HistoryStore, batch: &mut Vec<Job>) -> Fold {
    let items: Vec<IngestItem<'_>> = batch
        .iter()
        .map(|job| IngestItem {
            agent: &job.agent,
            report: &job.decoded,
            received_unix_ms: job.received_unix_ms,
            digest: job.digest,
        })
        .collect();
    let result = store.commit(&items);
    drop(items);
    match result {
        Ok(committed) => Fold {
            delta: Some(committed.delta),
            answers: batch
                .drain(..)
                .zip(committed.outcomes)
                .map(|(job, outcome)| {
                    (job.reply, Answer { outcome: Ok(outcome), _decoded: job.decoded })
                })
                .collect(),
        },
        Err(e) => {
            error!(error = %e, reports = batch.len(), "store: batch not committed; agents will retry");
            let outcome = Err(format!("the store failed: {e}"));
            Fold {
                delta: None,
                answers: batch
                    .drain(..)
                    .map(|job| {
                        (job.reply, Answer { outcome: outcome.clone(), _decoded: job.decoded })
                    })
                    .collect(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use stallwatch_proto::report::{
        HistogramData, LabelProblem, REPORT_SCHEMA_VERSION, Report, ReportLimits, Series,
        SeriesLabels, encode_report,
    };
    use stallwatch_proto::{Repair, Role, Transport};

    use super::*;

    /// A report with one `jitter_us` histogram of 1,234 µs in the layout `low`/`sigfig`.
    fn report_with_layout(low: u64, sigfig: u8) -> DecodedReport {
        let mut h =
            hdrhistogram::Histogram::<u64>::new_with_bounds(low, hdr::HIGHEST_TRACKABLE_US, sigfig)
                .unwrap();
        h.record(1_234).unwrap();
        let histograms = [("jitter_us".to_owned(), HistogramData::from_histogram(&h, 1_234))];
        decode_report(&encode_report(&report(histograms.into())), &ReportLimits::default()).unwrap()
    }

    /// Agent `a1`'s report of one 10 s window: one series of `relay-1` with these histograms.
    fn report(histograms: BTreeMap<String, HistogramData>) -> Report {
        let labels = SeriesLabels::new("p1", Transport::Udp, Repair::Nack, "relay-1", Role::Viewer);
        Report {
            schema_version: REPORT_SCHEMA_VERSION,
            agent: "a1".into(),
            agent_version: "0.1.0".into(),
            seq: 1,
            window_start_ms: 1,
            window_end_ms: 10_001,
            plan_revision: 1,
            spool_depth: 0,
            series: vec![Series { labels, counters: BTreeMap::new(), histograms }],
        }
    }

    #[test]
    fn the_stored_answer_has_the_bytes_agents_parse() {
        for (result, seq) in [("stored", 7), ("duplicate", u64::MAX)] {
            let answer = serde_json::to_string(&Accepted { result, seq }).unwrap();
            assert_eq!(answer, format!(r#"{{"result":"{result}","seq":{seq}}}"#));
            let before = serde_json::json!({"result": result, "seq": seq});
            assert_eq!(answer, before.to_string(), "the same bytes as the json! answer");
        }
    }

    #[test]
    fn histograms_in_another_layout_are_refused_naming_the_series() {
        assert!(check_layouts(&report_with_layout(1, hdr::SIGNIFICANT_FIGURES)).is_ok());
        for (low, sigfig) in [(1, 2), (10, hdr::SIGNIFICANT_FIGURES), (1000, 2)] {
            let e = check_layouts(&report_with_layout(low, sigfig)).unwrap_err();
            assert_eq!(
                (e.status, e.code, e.metric),
                (StatusCode::UNPROCESSABLE_ENTITY, "unstorable", Some("histogram_layout"))
            );
            for part in [
                "series 0 {probe=\"p1\", repair=\"nack\", role=\"viewer\", target=\"relay-1\", \
                 transport=\"udp\"}"
                    .to_owned(),
                "histogram \"jitter_us\"".to_owned(),
                format!("lowest discernible value {low} and {sigfig} significant figures"),
            ] {
                assert!(e.detail.contains(&part), "{part:?} not in {:?}", e.detail);
            }
        }
    }

    #[test]
    fn label_refusals_from_the_decoder_are_label_not_allowed() {
        let e = decode_refusal(ReportError::Label {
            series: 3,
            label: "transport".into(),
            problem: LabelProblem::NotAllowed {
                value: "quic".into(),
                allowed: "one of quic-stream, quic-datagram, udp",
            },
        });
        assert_eq!(
            (e.status, e.code, e.metric_reason()),
            (StatusCode::UNPROCESSABLE_ENTITY, "label-not-allowed", "label_not_allowed")
        );
        assert!(
            e.detail.starts_with("series 3 label \"transport\": value \"quic\""),
            "{}",
            e.detail
        );
        let e = decode_refusal(ReportError::TooLarge { len: 2, max: 1 });
        assert_eq!((e.status, e.code), (StatusCode::PAYLOAD_TOO_LARGE, "too-large"));
        let e = decode_refusal(ReportError::SchemaVersion { found: 9 });
        assert_eq!((e.status, e.code), (StatusCode::BAD_REQUEST, "malformed"));
    }

    /// An HDR histogram of no values whose counts are `inflated` bytes of explicit zeros: it
    /// deflates to a few hundred bytes.
    fn zero_padded_histogram(inflated: usize) -> Vec<u8> {
        use std::io::Write;
        let mut v2 = Vec::with_capacity(inflated);
        v2.extend_from_slice(&(hdr::V2_COOKIE_BASE | 0x10).to_be_bytes());
        v2.extend_from_slice(&u32::try_from(inflated - hdr::V2_HEADER_LEN).unwrap().to_be_bytes());
        v2.extend_from_slice(&0u32.to_be_bytes());
        v2.extend_from_slice(&u32::from(hdr::SIGNIFICANT_FIGURES).to_be_bytes());
        v2.extend_from_slice(&1u64.to_be_bytes());
        v2.extend_from_slice(&hdr::HIGHEST_TRACKABLE_US.to_be_bytes());
        v2.extend_from_slice(&1.0f64.to_bits().to_be_bytes());
        v2.resize(inflated, 0);
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        z.write_all(&v2).unwrap();
        let compressed = z.finish().unwrap();
        let mut out = (hdr::V2_COMPRESSED_COOKIE_BASE | 0x10).to_be_bytes().to_vec();
        out.extend_from_slice(&u32::try_from(compressed.len()).unwrap().to_be_bytes());
        out.extend_from_slice(&compressed);
        out
    }

    #[tokio::test]
    async fn a_report_past_the_inline_budget_is_decoded_under_the_full_limits() {
        // Five histograms of 256 KiB of zeros: 1.25 MiB inflated, past what a worker decodes
        // (1 MiB) but within the report's limit (8 MiB).
        let zeros = zero_padded_histogram(256 << 10);
        let names = stallwatch_proto::catalogue::Histogram::ALL[..5].iter();
        let report = report(
            names
                .map(|h| {
                    let data = HistogramData { hdr: zeros.clone(), sum: 0, count: 0 };
                    (h.report_name().to_owned(), data)
                })
                .collect(),
        );
        let body = encode_report(&report);
        assert!(body.len() <= INLINE_BODY_BYTES, "small enough to be tried on the worker");
        let on_a_worker =
            ReportLimits { max_inflated_bytes: INLINE_INFLATED_BYTES, ..ReportLimits::default() };
        assert!(matches!(
            decode_report(&body, &on_a_worker),
            Err(ReportError::InflatedTooLarge { .. })
        ));
        let decoders = Arc::new(Semaphore::new(1));
        let (decoded, _) =
            decode(&decoders, body.clone().into(), ReportLimits::default()).await.unwrap();
        assert_eq!(decoded.histograms[0].len(), 5);
        // Under a report limit as small as the worker's budget it is refused, as before.
        let e = decode(&decoders, body.into(), on_a_worker).await.unwrap_err();
        assert_eq!((e.status, e.code), (StatusCode::PAYLOAD_TOO_LARGE, "too-large"));
        assert_eq!(decoders.available_permits(), 1, "every permit is given back");
    }
}
