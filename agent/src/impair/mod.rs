//! A userspace UDP impairment proxy: sends any UDP or QUIC flow through emulated network
//! conditions (the sans-IO [`stallwatch_measure::link`] model), one [`Link`] per direction.
//!
//! Used two ways: the `stallwatch-agent impair` command ([`main`]), which puts any tool's flow
//! through a preset or custom settings, and in-process by `probe --emulate`, which starts an
//! [`ImpairProxy`] on `127.0.0.1:0` in front of the relay and connects through it.
//!
//! # Directions
//!
//! Clients send to `listen`; the proxy forwards to `to` and back.
//! - **up** is client -> `to` (a preset's `up`, the agent's upload),
//! - **down** is `to` -> client (a preset's `down`).
//!
//! Each direction is **one** [`Link`], shared by every client session: one bottleneck per
//! direction, as on a real access link, so two flows through the proxy share its rate and queue
//! and see one loss process. Each direction has its own seed ([`direction_seed`]) so that their
//! losses do not coincide.
//!
//! # Time
//!
//! The links' time origin is the moment the proxy starts: a datagram received at clock time `t`
//! enters its link at `t - start`, so `outage=10s/300ms` is a blackout 10 s after the proxy
//! started. The link answers a delivery time on the same timeline; the proxy holds the datagram
//! until then.
//!
//! # Sessions
//!
//! NAT-like: each client source address gets its own upstream socket (an ephemeral port on the
//! address family of `to`, connected to `to`), so replies map back to the client. Sessions idle
//! (no datagram either way) for 60 s are removed; at most 1024 are open at once, and datagrams
//! from further clients are dropped and counted ([`ImpairStats::sessions_refused`]).
//!
//! See [`proxy`] for delivery accuracy, memory bounds and error handling.

pub mod proxy;

#[cfg(test)]
mod tests;

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, Result};
use stallwatch_measure::link::{self, LinkConfig, ParseLinkConfigError};
use thiserror::Error;
use tracing::info;

pub use proxy::{DirectionStats, ImpairConfig, ImpairProxy, ImpairStats};

#[cfg(doc)]
use stallwatch_measure::link::Link;

use crate::clock::Clock;

/// How often the CLI logs a one-line summary per direction.
const SUMMARY_EVERY: Duration = Duration::from_secs(10);

/// `stallwatch-agent impair` flags.
#[derive(clap::Args, Debug, Clone)]
#[command(after_help = "Examples:\n  \
    stallwatch-agent impair --listen 127.0.0.1:5000 --to 10.0.0.7:4433 --profile 3g\n  \
    stallwatch-agent impair --listen [::]:5000 --to relay.internal:4433 \\\n    \
    --profile \"delay=40ms,jitter=10ms,loss=1%\" --down \"delay=40ms,rate=2mbit,outage=30s/2s\"")]
pub struct ImpairArgs {
    /// Address to listen on; clients send here instead of to --to.
    #[arg(long, env = "STALLWATCH_IMPAIR_LISTEN")]
    pub listen: SocketAddr,
    /// Where to forward to.
    #[arg(long, env = "STALLWATCH_IMPAIR_TO")]
    pub to: SocketAddr,
    /// Network to emulate: a preset (4g, 3.5g, 3g, edge, chrome-fast-4g, chrome-slow-4g,
    /// chrome-slow-3g: its up and down sides), `none`, or custom settings applied to both
    /// directions, such as "delay=100ms,jitter=20ms,loss=1%,rate=2mbit,outage=10s/300ms"
    /// (outage times count from the proxy's start).
    #[arg(long, default_value = "none", env = "STALLWATCH_IMPAIR_PROFILE", value_parser = boxed_profile)]
    pub profile: Box<Profile>,
    /// Override the up direction (client -> --to): custom settings, or a preset whose up side
    /// is used.
    #[arg(long, env = "STALLWATCH_IMPAIR_UP", value_parser = boxed_profile)]
    pub up: Option<Box<Profile>>,
    /// Override the down direction (--to -> client): custom settings, or a preset whose down
    /// side is used.
    #[arg(long, env = "STALLWATCH_IMPAIR_DOWN", value_parser = boxed_profile)]
    pub down: Option<Box<Profile>>,
    /// Seed for the emulator's random choices (each direction derives its own from it); the
    /// same seed and the same traffic give the same drops.
    #[arg(long, default_value_t = 1, env = "STALLWATCH_IMPAIR_SEED")]
    pub seed: u64,
}

impl ImpairArgs {
    /// The proxy configuration these flags describe: the profile, with --up and --down replacing
    /// one direction each.
    pub fn config(&self) -> ImpairConfig {
        ImpairConfig {
            listen: self.listen,
            to: self.to,
            up: self.up.as_ref().unwrap_or(&self.profile).up.clone(),
            down: self.down.as_ref().unwrap_or(&self.profile).down.clone(),
            seed: self.seed,
        }
    }
}

/// Profiles are boxed in [`ImpairArgs`] so that the CLI's command enum stays small.
fn boxed_profile(s: &str) -> Result<Box<Profile>, ParseProfileError> {
    s.parse().map(Box::new)
}

/// A network to emulate in both directions: a published preset, `none`, or custom settings in
/// the `--emulate` syntax applied to both directions.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// The preset's name, or `None` for custom settings.
    pub preset: Option<&'static str>,
    /// Client -> server.
    pub up: LinkConfig,
    /// Server -> client.
    pub down: LinkConfig,
}

/// Why a profile did not parse.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParseProfileError {
    /// Neither a preset name nor `key=value` settings.
    #[error(
        "unknown emulation preset {0:?}; presets: none, {presets}; or give custom settings such as \"delay=100ms,jitter=20ms,loss=1%\"",
        presets = link::PRESET_NAMES.join(", ")
    )]
    UnknownPreset(String),
    /// Custom settings that do not parse.
    #[error(transparent)]
    Settings(#[from] ParseLinkConfigError),
}

impl FromStr for Profile {
    type Err = ParseProfileError;

    /// A preset name (case-insensitive, `none` and `2g` included), or settings such as
    /// `delay=100ms,loss=1%`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if let Some(p) = link::preset(s) {
            return Ok(Profile { preset: Some(p.name), up: p.up, down: p.down });
        }
        if !s.contains('=') {
            return Err(ParseProfileError::UnknownPreset(s.to_owned()));
        }
        let config: LinkConfig = s.parse()?;
        Ok(Profile { preset: None, up: config.clone(), down: config })
    }
}

/// One direction through the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Client -> `to`.
    Up,
    /// `to` -> client.
    Down,
}

impl Direction {
    /// `"up"` or `"down"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Up => "up",
            Direction::Down => "down",
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The seed of one direction's [`Link`], derived from the proxy's seed so that the two
/// directions' random streams differ (for every seed) while staying reproducible.
pub fn direction_seed(seed: u64, direction: Direction) -> u64 {
    // Distinct salts, then SplitMix64's finaliser (a bijection): the two seeds never coincide.
    let salt = match direction {
        Direction::Up => 0x7570,        // "up"
        Direction::Down => 0x646f_776e, // "down"
    };
    let mut z = (seed ^ salt).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Runs the proxy until Ctrl-C or SIGTERM, then prints the final counts and returns.
pub async fn main(args: ImpairArgs) -> Result<()> {
    let config = args.config();
    // Before anything is printed, so a script that stops us once it sees `listening` can.
    let mut signals = Signals::register()?;
    let proxy = ImpairProxy::start(config.clone()).await?;
    println!("listening {}", proxy.local_addr());
    println!("forwarding to {}", config.to);
    match (args.profile.preset, &args.up, &args.down) {
        (Some(name), None, None) => println!("profile {name}"),
        (Some(name), _, _) => println!("profile {name}, overridden"),
        (None, _, _) => println!("profile custom"),
    }
    println!("up {}", config.up);
    println!("down {}", config.down);
    println!("seed {}", config.seed);

    let first = tokio::time::Instant::from_std(Clock::global().instant()) + SUMMARY_EVERY;
    let mut summary = tokio::time::interval_at(first, SUMMARY_EVERY);
    summary.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stopped = loop {
        tokio::select! {
            result = signals.recv() => break result,
            _ = summary.tick() => log_summary(&proxy.stats()),
        }
    };

    let stats = proxy.shutdown().await;
    print!("{}", FinalReport { stats: &stats, to: config.to });
    stopped
}

/// Ctrl-C and (on Unix) SIGTERM, registered when made rather than when first awaited.
struct Signals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    fn register() -> Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Signals {
                interrupt: signal(SignalKind::interrupt()).context("listening for Ctrl-C")?,
                terminate: signal(SignalKind::terminate()).context("listening for SIGTERM")?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Signals {})
        }
    }

    /// Waits for the next one.
    async fn recv(&mut self) -> Result<()> {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.interrupt.recv() => Ok(()),
                _ = self.terminate.recv() => Ok(()),
            }
        }
        #[cfg(not(unix))]
        {
            tokio::signal::ctrl_c().await.context("listening for Ctrl-C")
        }
    }
}

fn log_summary(stats: &ImpairStats) {
    for (direction, s) in [(Direction::Up, &stats.up), (Direction::Down, &stats.down)] {
        info!(
            direction = %direction,
            received = s.received,
            delivered = s.link.delivered,
            dropped = s.link.dropped(),
            overflow = s.overflow_dropped,
            forwarded = s.forwarded,
            forward_errors = s.forward_errors,
            queued = s.queued,
            sessions = stats.sessions,
            "impair summary"
        );
    }
}

/// What `impair` prints when it stops.
struct FinalReport<'a> {
    stats: &'a ImpairStats,
    to: SocketAddr,
}

impl fmt::Display for FinalReport<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.stats;
        writeln!(f, "up (clients -> {}): {}", self.to, s.up)?;
        writeln!(f, "down ({} -> clients): {}", self.to, s.down)?;
        writeln!(f, "sessions: {} opened, {} refused", s.sessions_opened, s.sessions_refused)
    }
}
