//! Orchestrates one probe: the optional emulator, the publisher, the viewers, progress.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use stallwatch_measure::player::Medium;
use stallwatch_measure::{ReceiverConfig, Repair, StreamProfile};
use stallwatch_proto::control::StartAt;
use stallwatch_proto::plan::UdpCredential;

use super::output::{EmulatorSummary, ProbeResult, PublisherSummary, ViewerResult};
use super::{ProbeArgs, StartChoice, TransportChoice};
use crate::clock::Clock;
use crate::impair::{ImpairConfig, ImpairProxy};
use crate::lateness::{Lateness, SelfNoiseFeed};
use crate::summary::{Quantiles, Summary};
use crate::tls::{Identity, Trust, parse_pin};
use crate::transport::{
    self, Progress, PublishSpec, RelayTarget, Transport, ViewOutcome, ViewSpec, quic, udp,
};

/// Resolves RELAY (host:port) and the trust flags into a target.
pub async fn resolve_target(args: &ProbeArgs) -> Result<RelayTarget> {
    let (host, port) = args.relay.rsplit_once(':').ok_or_else(|| {
        anyhow!("RELAY must be HOST:PORT (the relay's QUIC address), got {:?}", args.relay)
    })?;
    let port: u16 = port.parse().map_err(|_| anyhow!("bad port in RELAY {:?}", args.relay))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let quic: SocketAddr = tokio::net::lookup_host((host, port))
        .await
        .with_context(|| format!("resolving the relay host {host:?}"))?
        .next()
        .ok_or_else(|| anyhow!("the relay host {host:?} has no address"))?;
    let udp_port = match args.udp_port {
        Some(p) => p,
        None => port
            .checked_add(1)
            .ok_or_else(|| anyhow!("give --udp-port: QUIC port {port} + 1 overflows"))?,
    };
    let trust = match (&args.pin, &args.ca, &args.bundle) {
        (Some(pin), _, _) => Some(Trust::Pin(parse_pin(pin)?)),
        (None, ca, Some(bundle)) => {
            let bundle = crate::run::bundle::load_bundle(bundle)?;
            let cas = match ca {
                Some(ca) => match Trust::ca_file(ca)? {
                    Trust::Ca(cas) => cas,
                    _ => unreachable!("ca_file gives CA trust"),
                },
                None => vec![bundle.ca.clone()],
            };
            let client = Identity { certs: bundle.cert_chain.clone(), key: bundle.key.clone_key() };
            Some(Trust::Fleet { cas, client })
        }
        (None, Some(ca), None) => Some(Trust::ca_file(ca)?),
        (None, None, None) => None,
    };
    let udp_credential = match &args.udp_credential_file {
        Some(path) => Some(read_udp_credential(path)?),
        None => None,
    };
    Ok(RelayTarget {
        quic,
        udp: SocketAddr::new(quic.ip(), udp_port),
        server_name: args.server_name.clone().unwrap_or_else(|| host.to_string()),
        trust,
        udp_credential,
    })
}

/// The relay's plain UDP credential from the first line of `path`.
fn read_udp_credential(path: &std::path::Path) -> Result<[u8; crate::relay::CREDENTIAL_LEN]> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the UDP credential file {}", path.display()))?;
    let line = text.lines().next().unwrap_or_default().trim().trim_matches('"');
    UdpCredential::try_from(line.to_owned()).map(|c| c.0).map_err(|e| {
        anyhow!(
            "{}: {e} (the relay's `relay.udp_credential` from its agent's plan.json)",
            path.display()
        )
    })
}

fn transports(choice: TransportChoice) -> Vec<Transport> {
    match choice {
        TransportChoice::QuicStream => vec![Transport::QuicStream],
        TransportChoice::QuicDatagram => vec![Transport::QuicDatagram],
        TransportChoice::Udp => vec![Transport::Udp],
        TransportChoice::All => Transport::ALL.to_vec(),
    }
}

/// Runs the probe for every chosen transport, side by side.
pub async fn probe(args: &ProbeArgs) -> Result<Vec<ProbeResult>> {
    let profile: StreamProfile = args.profile.parse().map_err(anyhow::Error::msg)?;
    profile.validate().map_err(anyhow::Error::msg)?;
    if args.duration.is_zero() {
        bail!("--duration must be longer than zero");
    }
    if args.transport == TransportChoice::QuicStream && args.repair == Some(Repair::Nack) {
        bail!(
            "--repair nack applies to udp and quic-datagram; quic-stream repairs loss itself \
             (QUIC retransmits its streams)"
        );
    }
    let chosen = transports(args.transport);
    let mut target = resolve_target(args).await?;
    if target.trust.is_none() && chosen.iter().any(|t| *t != Transport::Udp) {
        bail!(
            "no way to verify the relay's certificate: pass --pin FINGERPRINT (the relay prints it \
             at start), --ca FILE (the fleet CA) or --bundle FILE (an agent's, for a relay run \
             from a plan); QUIC never connects unverified"
        );
    }
    // The emulator sits in front of the relay; both addresses the probe uses go through it.
    let mut proxies = Vec::new();
    let emulated =
        args.emulate.is_some() || args.emulate_up.is_some() || args.emulate_down.is_some();
    if emulated {
        proxies = start_emulator(
            &mut target,
            args.emulate.as_deref(),
            args.emulate_up.as_deref(),
            args.emulate_down.as_deref(),
            args.seed,
            Duration::ZERO,
        )
        .await?;
    }
    // Side by side on the same path: one task per transport.
    let shared = Arc::new(args.clone());
    let tasks: Vec<_> = chosen
        .iter()
        .flat_map(|&transport| (0..args.streams).map(move |i| (transport, i)))
        .map(|(transport, i)| {
            let (args, target, profile) = (shared.clone(), target.clone(), profile.clone());
            let emulator = emulator_lateness(&proxies, transport);
            tokio::spawn(async move {
                run_transport(&args, transport, i, target, profile, emulator).await
            })
        })
        .collect();
    let mut results = Vec::with_capacity(tasks.len());
    for task in tasks {
        results.push(task.await.map_err(|e| anyhow!("a probe task failed: {e}"))?);
    }
    if emulated {
        let spec =
            [("", &args.emulate), ("up: ", &args.emulate_up), ("down: ", &args.emulate_down)]
                .iter()
                .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}{v}")))
                .collect::<Vec<_>>()
                .join("; ");
        let stats: Vec<_> = proxies.iter().map(|p| p.stats()).collect();
        for r in &mut results {
            let i = usize::from(r.transport == Transport::Udp);
            r.emulator = Some(EmulatorSummary::new(&spec, &stats[i]));
        }
    }
    for proxy in proxies {
        proxy.shutdown().await;
    }
    Ok(results)
}

/// Puts the userspace network emulator in front of `target`: one impairment proxy on
/// loopback for its QUIC address and one for its UDP address, with `target` pointed at them.
/// `emulate` sets both directions (a preset or custom settings); `up` and `down` override one.
/// `schedule_at` is how far into its schedule the emulation starts: a `ramp` counts from
/// there (zero for a one-shot probe; an agent's attempts join its run's schedule).
/// Shut the proxies down when the probe is done.
pub async fn start_emulator(
    target: &mut RelayTarget,
    emulate: Option<&str>,
    up: Option<&str>,
    down: Option<&str>,
    seed: u64,
    schedule_at: Duration,
) -> Result<Vec<ImpairProxy>> {
    let parse = |flag: &str, spec: &str| -> Result<crate::impair::Profile> {
        spec.parse().with_context(|| format!("{flag} {spec:?}"))
    };
    let base = parse("--emulate", emulate.unwrap_or("none"))?;
    let up = match up {
        Some(spec) => parse("--emulate-up", spec)?.up,
        None => base.up,
    }
    .joined_at(schedule_at);
    let down = match down {
        Some(spec) => parse("--emulate-down", spec)?.down,
        None => base.down,
    }
    .joined_at(schedule_at);
    let mut proxies = Vec::new();
    for (i, addr) in [target.quic, target.udp].into_iter().enumerate() {
        let listen: SocketAddr =
            if addr.is_ipv4() { "127.0.0.1:0" } else { "[::1]:0" }.parse().expect("valid address");
        let proxy = ImpairProxy::start(ImpairConfig {
            listen,
            to: addr,
            up: up.clone(),
            down: down.clone(),
            seed: seed.wrapping_add(i as u64 * 1_000_003),
        })
        .await
        .context("starting the network emulator")?;
        proxies.push(proxy);
    }
    target.quic = proxies[0].local_addr();
    target.udp = proxies[1].local_addr();
    Ok(proxies)
}

/// The lateness of the emulator proxy that `transport`'s packets go through (the one in front
/// of the relay's QUIC or UDP address, as [`start_emulator`] orders them), if emulated.
pub fn emulator_lateness(proxies: &[ImpairProxy], transport: Transport) -> Option<Arc<Lateness>> {
    proxies.get(usize::from(transport == Transport::Udp)).map(|p| p.lateness().clone())
}

fn stream_name(args: &ProbeArgs, transport: Transport, index: u32) -> String {
    if let Some(name) = args.view.as_ref().or(args.publish.as_ref()) {
        return name.clone();
    }
    let nonce = Clock::global().now().as_nanos() % 1_000_000_000;
    format!("probe-{}-{nonce}-{transport}-{index}", std::process::id())
}

/// One transport: publisher (unless --view) and viewers (unless --publish).
async fn run_transport(
    args: &ProbeArgs,
    transport: Transport,
    index: u32,
    target: RelayTarget,
    profile: StreamProfile,
    emulator: Option<Arc<Lateness>>,
) -> ProbeResult {
    let clock = Clock::global();
    let stream = stream_name(args, transport, index);
    let mut result = ProbeResult::new(args, transport, &stream);
    let loopback = args.view.is_none() && args.publish.is_none();
    let repair = super::repair_for(transport, args.repair);
    let stop = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(tokio::sync::Notify::new());
    let sender_lateness = Lateness::new();

    let publisher = (args.view.is_none()).then(|| {
        let spec = PublishSpec {
            target: target.clone(),
            transport,
            stream: stream.clone(),
            profile: profile.clone(),
            duration: args.duration,
            pacing_spin: args.pacing_spin,
            accepted: Some(accepted.clone()),
            repair,
            sender_lateness: sender_lateness.clone(),
        };
        let stop = stop.clone();
        tokio::spawn(async move {
            match transport {
                Transport::Udp => udp::publish(&spec, stop).await,
                _ => quic::publish(&spec, stop).await,
            }
        })
    });

    let progress = Arc::new(Progress::default());
    let mut viewers = Vec::new();
    let mut publisher_up = true;
    if args.publish.is_none() {
        if loopback {
            // Once the relay has the stream, join mid-GOP as a real viewer would. If publishing
            // fails, the publisher's error is the probe's result.
            let waited =
                tokio::time::timeout(transport::CONNECT_TIMEOUT * 2, accepted.notified()).await;
            publisher_up = waited.is_ok();
            if publisher_up {
                tokio::time::sleep(args.view_delay).await;
            }
        }
        let receiver = ReceiverConfig {
            repair,
            playout_delay: args.playout_delay,
            medium: if profile.fps == 0 { Medium::Audio } else { Medium::Video },
            // One process publishes and views on one clock: one-way latency is exact.
            sender_clock_offset_ns: loopback.then_some(0),
            ..ReceiverConfig::default()
        };
        let max_duration =
            if loopback { args.duration + Duration::from_secs(5) } else { args.duration };
        for _ in 0..if publisher_up { args.viewers } else { 0 } {
            let spec = ViewSpec {
                target: target.clone(),
                transport,
                stream: stream.clone(),
                start: match args.start {
                    StartChoice::CachedGop => StartAt::CachedGop,
                    StartChoice::Live => StartAt::Live,
                },
                max_duration,
                receiver: receiver.clone(),
                attempt_start: clock.now(),
                cancel: None,
                // The agent's own lateness: its publisher's (loopback only) and its emulator's.
                self_noise: SelfNoiseFeed {
                    sender: loopback.then(|| sender_lateness.reader()),
                    emulator: emulator.as_ref().map(|e| e.reader()),
                },
            };
            let progress = progress.clone();
            viewers.push(tokio::spawn(async move {
                match transport {
                    Transport::Udp => udp::view(&spec, &progress).await,
                    _ => quic::view(&spec, &progress).await,
                }
            }));
        }
    }

    let ticker = (!args.quiet && index == 0).then(|| {
        let progress = progress.clone();
        let label = format!("{transport}");
        let total = args.duration;
        tokio::spawn(print_progress(label, total, progress))
    });

    for viewer in viewers {
        match viewer.await {
            Ok(Ok(outcome)) => result.viewers.push(viewer_result(outcome, repair)),
            Ok(Err(e)) => {
                // A viewer that cannot even connect should not leave the publisher running.
                if result.viewers.is_empty() {
                    stop.store(true, std::sync::atomic::Ordering::Relaxed);
                }
                result.errors.push(format!("viewer: {e:#}"));
            }
            Err(e) => result.errors.push(format!("viewer task failed: {e}")),
        }
    }
    if let Some(publisher) = publisher {
        match publisher.await {
            Ok(Ok(stats)) => result.publisher = Some(PublisherSummary::new(&stats)),
            Ok(Err(e)) => result.errors.insert(0, format!("publisher: {e:#}")),
            Err(e) => result.errors.push(format!("publisher task failed: {e}")),
        }
    }
    if let Some(ticker) = ticker {
        ticker.abort();
    }
    result
}

fn viewer_result(outcome: ViewOutcome, repair: Repair) -> ViewerResult {
    ViewerResult {
        summary: Summary::with_repair(&outcome.total, repair),
        rtt_ms: Quantiles::from_micros(&outcome.rtt),
        quic: outcome.quic,
        end: outcome.end,
    }
}

/// Prints a progress line every second (a terminal) or every five seconds (a log).
async fn print_progress(label: String, total: Duration, progress: Arc<Progress>) {
    let terminal = std::io::stderr().is_terminal();
    let every = if terminal { 1 } else { 5 };
    let mut elapsed = 0u64;
    loop {
        tokio::time::sleep(Duration::from_secs(every)).await;
        elapsed += every;
        let s = Summary::new(&progress.snapshot());
        let line = format!(
            "[{elapsed:>4}s/{}s] {label}: {} packets, loss {:.2} %, stalls {}, jitter p95 {}",
            total.as_secs(),
            s.packets_received,
            s.loss_ratio * 100.0,
            s.stalls,
            s.jitter_ms.map(|q| format!("{:.1} ms", q.p95)).unwrap_or_else(|| "-".into()),
        );
        eprintln!("{line}");
    }
}
