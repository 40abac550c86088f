//! `stallwatch-agent`: thin CLI over the agent library.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use stallwatch_agent::simulate::{SimulateArgs, simulate};
use stallwatch_agent::{impair, probe, relay, run};
use stallwatch_measure::{Repair, StreamProfile};
use stallwatch_proto::duration::parse_duration;

/// Exit code for bad input (sysexits EX_USAGE).
const EXIT_USAGE: u8 = 64;

#[derive(Parser)]
#[command(
    name = "stallwatch-agent",
    version,
    about = "Publishes and views synthetic live streams and measures what a viewer feels: \
             first-frame time, jitter, loss and stalls.",
    after_help = "Examples:\n  \
        stallwatch-agent simulate --profile 720p30 --emulate 3g --duration 5m\n  \
        stallwatch-agent simulate --emulate \"delay=120ms,jitter=30ms,loss=2%\" --json\n  \
        stallwatch-agent run --collector https://collector.example:8443 --bundle agent.pem\n  \
        stallwatch-agent check-config /etc/stallwatch/agent.toml"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Simulate a stream over an emulated network in virtual time (no network, instant).
    ///
    /// Runs the same measurement core the probes use: a publisher paced to the profile, the
    /// emulated link, and a viewer with a virtual player. Prints first-frame time, loss,
    /// bursts, jitter, stalls and stall ratio.
    Simulate {
        /// Stream profile: 360p15, 360p30, 720p30, 1080p30 or audio.
        #[arg(long, default_value = "720p30", env = "STALLWATCH_PROFILE")]
        profile: String,
        /// Network to emulate: a preset (4g, 3.5g, 3g, edge, chrome-fast-4g, chrome-slow-4g,
        /// chrome-slow-3g; the downlink is used), `none`, or custom settings such as
        /// "delay=100ms,jitter=20ms,loss=1%,ge=0.01/0.3,rate=2mbit,queue=300ms,reorder=0.5%/20ms".
        #[arg(long, default_value = "none", env = "STALLWATCH_EMULATE")]
        emulate: String,
        /// How long the publisher streams (e.g. 30s, 1.5m, 1h30m).
        #[arg(long, default_value = "60s", value_parser = parse_duration)]
        duration: Duration,
        /// The virtual player's playout delay (its jitter buffer).
        #[arg(long, default_value = "300ms", value_parser = parse_duration)]
        playout_delay: Duration,
        /// Seed for the emulator's random choices; the same seed gives the same result.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Loss repair: `nack` (NACKs and keyframe requests over the reverse path, as on udp
        /// and quic-datagram) or `none` (the raw stream).
        #[arg(long, default_value = "nack", env = "STALLWATCH_REPAIR", value_parser = repair_arg)]
        repair: Repair,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Probe a relay once: publish a stream and view it back, then print what a viewer felt.
    ///
    /// Shows progress while it runs, then first frame and its phases, jitter, loss, bursts,
    /// reordering, stalls and stall ratio, RTT and the send-timer error, or JSON with --json.
    Probe(probe::ProbeArgs),
    /// Run a relay that accepts publishers and viewers over QUIC and UDP.
    ///
    /// Keeps a GOP cache per stream and fans out to viewers. Without --cert it makes a
    /// self-signed certificate and prints the SHA-256 fingerprint to pass to `probe --pin`.
    Relay(relay::RelayArgs),
    /// A UDP impairment proxy: send any UDP or QUIC flow through emulated network conditions.
    ///
    /// Clients send to --listen; packets are forwarded to --to and back, each direction through
    /// the emulated link (delay, jitter, loss, bursts, rate limit, reordering, outages).
    Impair(impair::ImpairArgs),
    /// Run continuously: fetch the plan from the collector, probe, and report.
    ///
    /// Talks to the collector over HTTPS with mutual TLS (the bundle from `stallwatch-collector
    /// ca issue-agent`), runs the plan's probes on their schedule and its relay, and sends a
    /// report every interval through a crash-safe disk spool, so an outage loses nothing.
    Run(run::RunArgs),
    /// Check an agent configuration file: print the settings in force, or the first error as
    /// FILE:LINE:COLUMN: FIELD: problem (exit 64; 66 if unreadable).
    CheckConfig(run::CheckConfigArgs),
}

fn repair_arg(s: &str) -> Result<Repair, String> {
    s.parse()
}

/// Runs a long-lived async command on a multi-threaded runtime; errors print with their causes.
fn run_async(fut: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    run_async_with(None, fut)
}

/// Like [`run_async`] with a fixed number of worker threads (`None`: one per core).
fn run_async_with(
    workers: Option<usize>,
    fut: impl std::future::Future<Output = anyhow::Result<()>>,
) -> ExitCode {
    init_logging();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = workers {
        builder.worker_threads(n);
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(fut) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr; `RUST_LOG` overrides the default level (info).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Simulate { profile, emulate, duration, playout_delay, seed, repair, json } => {
            let profile: StreamProfile = match profile.parse() {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("error: --profile: {e}");
                    return ExitCode::from(EXIT_USAGE);
                }
            };
            let args = SimulateArgs { profile, emulate, duration, playout_delay, seed, repair };
            match simulate(&args) {
                Ok(summary) if json => {
                    println!("{}", serde_json::to_string_pretty(&summary).expect("serializable"));
                    ExitCode::SUCCESS
                }
                Ok(summary) => {
                    println!(
                        "simulated {} of {} over {:?} (seed {}, repair {})\n{summary}",
                        stallwatch_proto::duration::format_duration(args.duration),
                        args.profile,
                        args.emulate,
                        args.seed,
                        args.repair
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(EXIT_USAGE)
                }
            }
        }
        Command::Probe(args) => {
            // A few streams run cheaper on one worker (no cross-thread wake-ups: a third less
            // CPU, see BENCHMARKS.md); many viewers or streams get a worker per core.
            let connections = args.viewers as usize * args.streams as usize * 3;
            let workers = (connections <= 9).then_some(1);
            run_async_with(workers, probe::main(args))
        }
        Command::Relay(args) => run_async(relay::main(args)),
        Command::Impair(args) => run_async(impair::main(args)),
        Command::Run(args) => run::main(args),
        Command::CheckConfig(args) => run::check_config(&args),
    }
}
