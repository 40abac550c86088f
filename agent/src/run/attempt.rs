//! One probe attempt in-process: publish, view, or both (loopback), with the plan's network
//! emulation, cancellable. Viewer windows (about one a second, and the last partial one) and
//! publisher figures go to the reporter as [`Fold`]s; so do attempts and failures by cause.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Result, anyhow};
use stallwatch_measure::player::Medium;
use stallwatch_measure::{ReceiverConfig, Recorder, StreamProfile, Time, WindowMetrics};
use stallwatch_proto::catalogue::{Counter, Histogram};
use stallwatch_proto::control::{Role, StartAt};
use stallwatch_proto::plan::{ProbeMode, ProbePlan, Transport, UdpCredential};
use stallwatch_proto::report::SeriesLabels;
use tokio::sync::{mpsc, watch};
use tracing::debug;

use crate::lateness::{Lateness, SelfNoiseFeed};
use crate::probe::start_emulator;
use crate::tls::Trust;
use crate::transport::{self, Progress, PublishSpec, RelayTarget, ViewSpec, quic, udp};

pub use crate::transport::FailureCause;
use crate::transport::{fail, failure_cause};

/// Something for the report builder.
#[derive(Debug)]
pub enum Fold {
    /// A viewer window.
    Window(SeriesLabels, Box<WindowMetrics>),
    /// A counter increment.
    Counter(SeriesLabels, Counter, u64),
    /// Histogram values.
    Histogram(SeriesLabels, Histogram, Recorder),
}

/// What every attempt shares.
#[derive(Debug, Clone)]
pub struct AttemptContext {
    /// The agent's name, for unique loopback stream names.
    pub agent: String,
    /// How to verify relays: the fleet CA from the bundle.
    pub trust: Trust,
    /// Where results go.
    pub folds: mpsc::UnboundedSender<Fold>,
    /// When the agent's run started: an emulation `ramp` counts from here, so it spans the
    /// attempts instead of starting over in each.
    pub started: Time,
}

/// Playout delay of the viewers' virtual player.
const PLAYOUT_DELAY: Duration = Duration::from_millis(300);
/// In loopback mode the viewer joins this long after the stream is accepted (mid-GOP).
const VIEW_DELAY: Duration = Duration::from_secs(1);
/// The most the pacing thread spins before each frame (it adapts below this).
const PACING_SPIN: Duration = Duration::from_micros(200);

fn key(plan: &ProbePlan, role: Role) -> SeriesLabels {
    SeriesLabels::new(
        plan.name.clone(),
        plan.transport,
        crate::probe::repair_for(plan.transport, plan.repair),
        plan.target.clone(),
        role,
    )
}

impl AttemptContext {
    fn count(&self, key: &SeriesLabels, counter: Counter, value: u64) {
        let _ = self.folds.send(Fold::Counter(key.clone(), counter, value));
    }

    fn failed(&self, key: &SeriesLabels, error: &anyhow::Error) {
        let cause = failure_cause(error);
        // By cause only: the collector exports stallwatch_attempt_failures_total{role,cause},
        // whose sum over causes is the total.
        let counter = match key.role {
            Role::Publisher => Counter::publish_failures(cause),
            Role::Viewer => Counter::view_failures(cause),
        };
        self.count(key, counter, 1);
        debug!(probe = %key.probe, role = key.role.as_str(), cause = cause.as_str(), error = %format!("{error:#}"), "attempt failed");
    }
}

/// Resolves the plan's `host:port` into a relay target verified with `trust`.
async fn resolve(
    address: &str,
    trust: &Trust,
    udp_credential: Option<UdpCredential>,
) -> Result<RelayTarget> {
    let (host, port) =
        address.rsplit_once(':').ok_or_else(|| anyhow!("address {address:?} is not HOST:PORT"))?;
    let port: u16 = port.parse().map_err(|_| anyhow!("bad port in {address:?}"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let quic: SocketAddr = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| {
            fail(FailureCause::Unreachable, format!("resolving the relay host {host:?}: {e}"))
        })?
        .next()
        .ok_or_else(|| {
            fail(
                FailureCause::Unreachable,
                format!("resolving the relay host {host:?}: no address"),
            )
        })?;
    let udp_port = port.checked_add(1).ok_or_else(|| anyhow!("port {port} has no next port"))?;
    Ok(RelayTarget {
        quic,
        udp: SocketAddr::new(quic.ip(), udp_port),
        server_name: host.to_string(),
        trust: Some(trust.clone()),
        udp_credential: udp_credential.map(|c| c.0),
    })
}

/// Runs one attempt that started at `start` (Unix ns, the scheduled time); returns when it
/// is over or, soon after `cancel` turns true, with the partial results folded.
pub async fn run_attempt(
    plan: &ProbePlan,
    ctx: &AttemptContext,
    start: Time,
    cancel: watch::Receiver<bool>,
) {
    let publishes = !matches!(plan.mode, ProbeMode::View { .. });
    let views = !matches!(plan.mode, ProbeMode::Publish { .. });
    let (pub_key, view_key) = (key(plan, Role::Publisher), key(plan, Role::Viewer));
    if publishes {
        ctx.count(&pub_key, Counter::PublishAttempts, 1);
    }
    if views {
        ctx.count(&view_key, Counter::ViewAttempts, 1);
    }
    let fail_all = |e: &anyhow::Error| {
        if publishes {
            ctx.failed(&pub_key, e);
        }
        if views {
            ctx.failed(&view_key, e);
        }
    };
    let profile: StreamProfile = match plan.profile.parse().map_err(anyhow::Error::msg) {
        Ok(p) => p,
        Err(e) => return fail_all(&e.context(format!("profile {:?}", plan.profile))),
    };
    let mut target = match resolve(&plan.address, &ctx.trust, plan.udp_credential).await {
        Ok(t) => t,
        Err(e) => return fail_all(&e),
    };
    let proxies = match &plan.emulate {
        Some(spec) => {
            let schedule_at = start.saturating_since(ctx.started);
            match start_emulator(&mut target, Some(spec), None, None, start.as_nanos(), schedule_at)
                .await
            {
                Ok(p) => p,
                Err(e) => return fail_all(&e),
            }
        }
        None => Vec::new(),
    };
    let stream = match &plan.mode {
        ProbeMode::Publish { stream } | ProbeMode::View { stream } => stream.clone(),
        ProbeMode::Loopback => loopback_stream(&ctx.agent, &plan.name, start),
    };

    // The plan's mode; left out, fleet viewers repair as real low-latency players do (`nack`
    // on udp and quic-datagram; QUIC repairs its streams itself), so stall figures are those
    // of the repaired stream (docs/metrics.md section 18).
    let repair = crate::probe::repair_for(plan.transport, plan.repair);
    let stop = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(tokio::sync::Notify::new());
    let sender_lateness = Lateness::new();
    let emulator = crate::probe::emulator_lateness(&proxies, plan.transport);
    let publisher = publishes.then(|| {
        let spec = PublishSpec {
            target: target.clone(),
            transport: plan.transport,
            stream: stream.clone(),
            profile: profile.clone(),
            duration: plan.duration,
            pacing_spin: PACING_SPIN,
            accepted: Some(accepted.clone()),
            repair,
            sender_lateness: sender_lateness.clone(),
        };
        let stop = stop.clone();
        tokio::spawn(async move {
            match spec.transport {
                Transport::Udp => udp::publish(&spec, stop).await,
                _ => quic::publish(&spec, stop).await,
            }
        })
    });
    // Cancelling stops the pacer; the publisher then says goodbye and returns its figures.
    let stopper = {
        let (stop, mut cancel) = (stop.clone(), Some(cancel.clone()));
        tokio::spawn(async move {
            transport::cancelled(&mut cancel).await;
            stop.store(true, Ordering::Relaxed);
        })
    };

    let mut viewer_result = None;
    if views {
        let loopback = plan.mode == ProbeMode::Loopback;
        let mut go = true;
        if loopback {
            let mut c = Some(cancel.clone());
            tokio::select! {
                waited = tokio::time::timeout(transport::CONNECT_TIMEOUT * 2, accepted.notified()) => {
                    go = waited.is_ok();
                    if go {
                        tokio::select! {
                            _ = tokio::time::sleep(VIEW_DELAY) => {}
                            _ = transport::cancelled(&mut c) => go = false,
                        }
                    }
                }
                _ = transport::cancelled(&mut c) => go = false,
            }
        }
        if go {
            let receiver = ReceiverConfig {
                repair,
                playout_delay: PLAYOUT_DELAY,
                medium: if profile.fps == 0 { Medium::Audio } else { Medium::Video },
                sender_clock_offset_ns: loopback.then_some(0),
                ..ReceiverConfig::default()
            };
            let attempt_start = crate::clock::Clock::global().now();
            // Loopback: until the publisher ends the stream, with room to play out; view: the
            // attempt's duration.
            let max_duration =
                if loopback { plan.duration + Duration::from_secs(5) } else { plan.duration };
            let spec = ViewSpec {
                target: target.clone(),
                transport: plan.transport,
                stream: stream.clone(),
                start: StartAt::CachedGop,
                max_duration,
                receiver,
                attempt_start,
                cancel: Some(cancel.clone()),
                // The agent's own lateness: its publisher's (loopback only) and its emulator's.
                self_noise: SelfNoiseFeed {
                    sender: loopback.then(|| sender_lateness.reader()),
                    emulator: emulator.as_ref().map(|e| e.reader()),
                },
            };
            let (folds, k) = (ctx.folds.clone(), view_key.clone());
            let progress = Progress::with_sink(Box::new(move |w: &WindowMetrics| {
                let _ = folds.send(Fold::Window(k.clone(), Box::new(w.clone())));
            }));
            let outcome = match plan.transport {
                Transport::Udp => udp::view(&spec, &progress).await,
                _ => quic::view(&spec, &progress).await,
            };
            viewer_result = Some(outcome);
        }
        // A loopback viewer that never started: the publisher's failure is counted for both.
    }
    let viewer_started = viewer_result.is_some();
    match viewer_result {
        Some(Ok(outcome)) => {
            let _ = ctx.folds.send(Fold::Histogram(view_key.clone(), Histogram::Rtt, outcome.rtt));
        }
        Some(Err(e)) => {
            ctx.failed(&view_key, &e);
            // Nothing to view: do not leave the publisher streaming into the void.
            stop.store(true, Ordering::Relaxed);
        }
        None => {}
    }
    if let Some(publisher) = publisher {
        let result = match publisher.await {
            Ok(r) => r,
            Err(e) => Err(anyhow!("the publisher task failed: {e}")),
        };
        match result {
            Ok(stats) => {
                for (counter, value) in [
                    (Counter::SentPackets, stats.packets),
                    (Counter::SentBytes, stats.bytes),
                    (Counter::SentFrames, stats.frames),
                    (Counter::SentFramesLate, stats.frames_late),
                    (Counter::SendErrors, stats.send_errors),
                ] {
                    ctx.count(&pub_key, counter, value);
                }
                if let Some(t) = stats.publish_time {
                    let mut r = Recorder::new();
                    r.record_nanos_as_micros(t.as_nanos() as u64);
                    let _ =
                        ctx.folds.send(Fold::Histogram(pub_key.clone(), Histogram::PublishTime, r));
                }
                let _ = ctx.folds.send(Fold::Histogram(
                    pub_key.clone(),
                    Histogram::SendTimerError,
                    stats.timer_error,
                ));
            }
            Err(e) => {
                ctx.failed(&pub_key, &e);
                if views && !viewer_started && !*cancel.borrow() {
                    // The viewer's failure has the publisher's cause.
                    ctx.failed(&view_key, &e.context("the publisher failed"));
                }
            }
        }
    }
    stopper.abort();
    for proxy in proxies {
        proxy.shutdown().await;
    }
}

/// A loopback stream name unique per agent, probe and attempt, within the relay's rules
/// (64 bytes of `A-Za-z0-9._-`).
pub fn loopback_stream(agent: &str, probe: &str, start: Time) -> String {
    let clean = |s: &str| -> String {
        s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect()
    };
    let suffix = format!("-{}", start.as_nanos() / 1_000_000);
    let mut name = format!("{}.{}", clean(agent), clean(probe));
    name.truncate(64 - suffix.len());
    name + &suffix
}

#[cfg(test)]
mod tests {
    use super::*;
    use stallwatch_proto::control::validate_stream_name;

    #[test]
    fn failures_are_counted_by_the_variant_of_the_typed_error_not_by_its_words() {
        use crate::transport::{refusal, socket_error, stopped};
        use stallwatch_proto::control::ErrorCode;
        let cases = [
            (refusal(ErrorCode::StreamNotFound, "s"), FailureCause::StreamNotFound),
            (refusal(ErrorCode::TooManyStreams, "full"), FailureCause::Refused),
            (refusal(ErrorCode::StreamExists, "s"), FailureCause::Refused),
            (refusal(ErrorCode::Unauthorized, "no proof"), FailureCause::Refused),
            (refusal(ErrorCode::VersionMismatch, "v9"), FailureCause::Other),
            (stopped(ErrorCode::TooManyViewers, "full"), FailureCause::Refused),
            (
                socket_error(
                    "sending",
                    std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
                ),
                FailureCause::Unreachable,
            ),
            (
                socket_error("sending", std::io::Error::from(std::io::ErrorKind::OutOfMemory)),
                FailureCause::Other,
            ),
            // Context around a typed error keeps its cause.
            (
                fail(FailureCause::Tls, "TLS handshake failed").context("viewing \"s\" over quic"),
                FailureCause::Tls,
            ),
            // Words no longer decide: an untyped error that says "stream not found" is `other`,
            // and a typed one reworded keeps its cause.
            (anyhow!("stream not found: s"), FailureCause::Other),
            (fail(FailureCause::Unreachable, "the relay is silent"), FailureCause::Unreachable),
        ];
        for (error, cause) in cases {
            assert_eq!(failure_cause(&error), cause, "{error:#}");
        }
        let names: Vec<&str> = [
            FailureCause::Unreachable,
            FailureCause::Tls,
            FailureCause::StreamNotFound,
            FailureCause::Refused,
            FailureCause::Other,
        ]
        .iter()
        .map(|c| c.as_str())
        .collect();
        assert_eq!(names, ["unreachable", "tls", "stream_not_found", "refused", "other"]);
    }

    #[test]
    fn loopback_stream_names_are_valid_and_unique() {
        let a = loopback_stream("edge-1", "fra udp", Time::from_nanos(1_700_000_000_000_000_000));
        let b = loopback_stream("edge-1", "fra udp", Time::from_nanos(1_700_000_060_000_000_000));
        assert_ne!(a, b);
        validate_stream_name(&a).unwrap();
        let long = loopback_stream(&"a".repeat(64), &"p".repeat(64), Time::from_nanos(1));
        validate_stream_name(&long).unwrap();
        assert!(long.ends_with("-0"));
    }

    #[tokio::test]
    async fn an_unreachable_relay_counts_as_a_failed_attempt() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let ctx = AttemptContext {
            agent: "a".into(),
            trust: Trust::Pin([0; 32]),
            folds: tx,
            started: Time::ZERO,
        };
        let plan = ProbePlan {
            name: "p".into(),
            target: "t".into(),
            address: "no-such-host.invalid:4433".into(),
            transport: Transport::Udp,
            profile: "audio".into(),
            mode: ProbeMode::View { stream: "s".into() },
            every: Duration::from_secs(10),
            duration: Duration::from_secs(1),
            start_offset: Duration::ZERO,
            emulate: None,
            repair: None,
            udp_credential: None,
        };
        let (_c, cancel) = watch::channel(false);
        run_attempt(&plan, &ctx, Time::from_nanos(0), cancel).await;
        drop(ctx);
        let mut counters = Vec::new();
        while let Some(f) = rx.recv().await {
            if let Fold::Counter(_, name, v) = f {
                counters.push((name, v));
            }
        }
        assert_eq!(
            counters,
            vec![(Counter::ViewAttempts, 1), (Counter::ViewFailuresUnreachable, 1)]
        );
    }
}
