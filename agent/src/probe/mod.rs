//! `stallwatch-agent probe`: publish a synthetic stream to a relay and view it back (or view
//! an existing stream, or only publish), then print what a viewer felt.

mod output;
mod run;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use stallwatch_measure::Repair;
use stallwatch_proto::duration::parse_duration;
use stallwatch_proto::plan::Transport;

pub use output::{ProbeResult, PublisherSummary, ViewerResult};
pub use run::{emulator_lateness, probe, resolve_target, start_emulator};

fn repair_arg(s: &str) -> Result<Repair, String> {
    s.parse()
}

/// The repair mode a viewer over `transport` runs: `asked`, by default `nack`, on udp and
/// quic-datagram; always `none` on quic-stream (QUIC retransmits its streams itself).
pub fn repair_for(transport: Transport, asked: Option<Repair>) -> Repair {
    Repair::for_transport(transport, asked)
}

/// Which transports to probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TransportChoice {
    /// QUIC, an object per frame, a stream per GOP (MoQ-like).
    QuicStream,
    /// QUIC datagrams (RFC 9221), a fragment per datagram.
    QuicDatagram,
    /// Plain UDP, RTP-like packets.
    Udp,
    /// All three side by side on the same path, in one table.
    All,
}

/// Where the viewer starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StartChoice {
    /// From the relay's cached GOP (how live servers start viewers fast).
    CachedGop,
    /// From the next live packet (wait for the next keyframe).
    Live,
}

/// `stallwatch-agent probe` flags.
#[derive(clap::Args, Debug, Clone)]
#[command(after_help = "Examples:\n  \
    stallwatch-agent relay --listen 0.0.0.0:4433            # on the relay host; prints its fingerprint\n  \
    stallwatch-agent probe relay.example:4433 --pin FINGERPRINT --transport all --duration 30s\n  \
    stallwatch-agent probe 127.0.0.1:4433 --pin FP --emulate 3g --json\n  \
    stallwatch-agent probe 127.0.0.1:4433 --pin FP --view live-1 --viewers 20\n\n\
A relay run from a plan (`stallwatch-agent run`) serves only the fleet: over QUIC give an agent's\n\
bundle (--bundle: its certificate, key and the fleet CA, as `ca issue-agent` writes it), over\n\
UDP the relay's credential (--udp-credential-file; the relay agent's plan holds it):\n  \
    jq -r .relay.udp_credential /var/lib/stallwatch/plan.json > relay.cred   # on the relay host\n  \
    stallwatch-agent probe relay.example:4433 --bundle agent.bundle.pem --udp-credential-file relay.cred --transport all")]
pub struct ProbeArgs {
    /// The relay: HOST:PORT of its QUIC listener. Its plain UDP listener is PORT + 1 unless
    /// --udp-port says otherwise.
    pub relay: String,
    /// Transport to probe over.
    #[arg(long, value_enum, default_value = "quic-stream", env = "STALLWATCH_TRANSPORT")]
    pub transport: TransportChoice,
    /// Stream profile: 360p15, 360p30, 720p30, 1080p30 or audio.
    #[arg(long, default_value = "720p30", env = "STALLWATCH_PROFILE")]
    pub profile: String,
    /// How long to publish (and view), e.g. 30s, 2m30s.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Emulate a network on this probe's own traffic: a preset (4g, 3.5g, 3g, edge,
    /// chrome-fast-4g, chrome-slow-4g, chrome-slow-3g; up and down as published) or custom
    /// settings for both directions, e.g. "delay=100ms,jitter=20ms,loss=2%,outage=10s/300ms".
    #[arg(long, env = "STALLWATCH_EMULATE")]
    pub emulate: Option<String>,
    /// Override the emulated up direction (this probe to the relay): custom settings, or a
    /// preset whose up side is used.
    #[arg(long, value_name = "SETTINGS")]
    pub emulate_up: Option<String>,
    /// Override the emulated down direction (relay to this probe): custom settings, or a
    /// preset whose down side is used.
    #[arg(long, value_name = "SETTINGS")]
    pub emulate_down: Option<String>,
    /// Seed for the emulator's random choices.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Print JSON on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
    /// View an existing stream instead of publishing one.
    #[arg(long, value_name = "STREAM", conflicts_with = "publish")]
    pub view: Option<String>,
    /// Only publish a stream under this name (for other agents to view).
    #[arg(long, value_name = "STREAM")]
    pub publish: Option<String>,
    /// Concurrent viewers (each its own connection).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub viewers: u32,
    /// Concurrent streams per transport, each published and viewed back on its own
    /// connections (load testing; not with --view or --publish).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000),
          conflicts_with_all = ["view", "publish"])]
    pub streams: u32,
    /// The relay certificate's SHA-256 fingerprint, as the relay printed it at start.
    #[arg(long, env = "STALLWATCH_PIN", conflicts_with = "ca")]
    pub pin: Option<String>,
    /// Verify the relay's certificate with this CA (PEM), e.g. the fleet CA.
    #[arg(long, env = "STALLWATCH_CA")]
    pub ca: Option<PathBuf>,
    /// An agent bundle (PEM: certificate, key, fleet CA; `ca issue-agent` writes it): QUIC
    /// presents its certificate, which a relay run from a plan requires, and verifies the relay
    /// with its CA (or --ca). The fleet must not have revoked it.
    #[arg(long, value_name = "FILE", env = "STALLWATCH_BUNDLE", conflicts_with = "pin")]
    pub bundle: Option<PathBuf>,
    /// A file whose first line is the relay's plain UDP credential (64 hex digits), which a
    /// relay run from a plan requires of UDP clients: the relay agent's saved plan holds it
    /// (`relay.udp_credential` in STATE_DIR/plan.json). A file, not a flag, so it stays out of
    /// `ps` and shell history.
    #[arg(long, value_name = "FILE")]
    pub udp_credential_file: Option<PathBuf>,
    /// Name to verify in the relay's certificate [default: the host in RELAY].
    #[arg(long)]
    pub server_name: Option<String>,
    /// The relay's plain UDP port [default: QUIC port + 1].
    #[arg(long)]
    pub udp_port: Option<u16>,
    /// The virtual player's playout delay (its jitter buffer).
    #[arg(long, default_value = "300ms", value_parser = parse_duration)]
    pub playout_delay: Duration,
    /// When publishing and viewing back, the viewer joins this long after publishing starts
    /// (mid-GOP, as a real viewer would).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub view_delay: Duration,
    /// Where the viewer starts.
    #[arg(long, value_enum, default_value = "cached-gop")]
    pub start: StartChoice,
    /// The most the pacing thread spins before each frame. It spins as long as its recent
    /// wake-ups needed (the 99th percentile of the last 128 oversleeps plus 20 µs), up to this:
    /// a longer cap keeps timing accurate where wake-ups are slow (VMs) and can cost CPU.
    #[arg(long, default_value = "200us", value_parser = parse_duration, env = "STALLWATCH_PACING_SPIN")]
    pub pacing_spin: Duration,
    /// Loss repair on udp and quic-datagram: `nack` (NACKs and keyframe requests to the relay,
    /// which resends and asks its publisher for a keyframe) or `none` (the raw stream)
    /// [default: nack on udp and quic-datagram; quic-stream repairs loss itself].
    #[arg(long, value_parser = repair_arg, env = "STALLWATCH_REPAIR")]
    pub repair: Option<Repair>,
    /// No progress lines on stderr.
    #[arg(long)]
    pub quiet: bool,
}

/// Runs the probe and prints the result; errors explain what failed.
pub async fn main(args: ProbeArgs) -> Result<()> {
    let results = probe(&args).await?;
    if args.json {
        let json = if results.len() == 1 {
            serde_json::to_string_pretty(&results[0])
        } else {
            serde_json::to_string_pretty(&results)
        };
        println!("{}", json.expect("results serialize"));
    } else if results.len() == 1 {
        println!("{}", results[0]);
    } else {
        println!("{}", output::table(&results));
    }
    let failed: Vec<&str> =
        results.iter().flat_map(|r| r.errors.iter().map(String::as_str)).collect();
    if !failed.is_empty() && results.iter().all(|r| r.viewers.is_empty() && r.publisher.is_none()) {
        anyhow::bail!("{}", failed.join("; "));
    }
    Ok(())
}
