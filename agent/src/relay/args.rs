//! `stallwatch-agent relay`: flags, and running a relay until Ctrl-C or SIGTERM.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use stallwatch_proto::duration::parse_duration;
use tracing::{info, warn};

use super::{Limits, Relay, RelayConfig, RelayStats};
use crate::tls::Identity;

/// How often a running relay logs its counters.
const STATS_LOG_EVERY: Duration = Duration::from_secs(60);

/// `stallwatch-agent relay` flags.
#[derive(clap::Args, Debug, Clone)]
#[command(after_help = "On start the relay prints, one per line: `quic ADDR`, `udp ADDR`, \
    `fingerprint SHA256HEX` (self-signed certificate only) and `ready`; then it logs to \
    stderr (RUST_LOG) until Ctrl-C or SIGTERM.")]
pub struct RelayArgs {
    /// QUIC address to listen on (both quic-stream and quic-datagram).
    #[arg(long, default_value = "0.0.0.0:4433", env = "STALLWATCH_RELAY_LISTEN")]
    pub listen: SocketAddr,
    /// Plain UDP address to listen on [default: the QUIC address with port + 1].
    #[arg(long, env = "STALLWATCH_RELAY_UDP_LISTEN")]
    pub udp_listen: Option<SocketAddr>,
    /// Turn the GOP cache off: joining viewers start with live packets (and wait for the next
    /// keyframe), as on a server without one.
    #[arg(long, env = "STALLWATCH_RELAY_NO_GOP_CACHE")]
    pub no_gop_cache: bool,
    /// Certificate chain (PEM), e.g. from the fleet CA. Without it the relay makes a
    /// self-signed certificate and prints its SHA-256 fingerprint for `probe --pin`.
    #[arg(long, requires = "key", env = "STALLWATCH_RELAY_CERT")]
    pub cert: Option<PathBuf>,
    /// Private key (PEM) for --cert.
    #[arg(long, requires = "cert", env = "STALLWATCH_RELAY_KEY")]
    pub key: Option<PathBuf>,
    /// DNS names or IP addresses for the self-signed certificate: several after one --name,
    /// or --name repeated (comma-separated in the environment variable).
    #[arg(
        long = "name",
        value_name = "HOST",
        num_args = 1..,
        default_value = "localhost",
        env = "STALLWATCH_RELAY_NAME",
        value_delimiter = ','
    )]
    pub names: Vec<String>,
    /// Most live streams the relay carries.
    #[arg(long, default_value_t = 64, env = "STALLWATCH_RELAY_MAX_STREAMS")]
    pub max_streams: usize,
    /// Most viewers per stream.
    #[arg(long, default_value_t = 256, env = "STALLWATCH_RELAY_MAX_VIEWERS")]
    pub max_viewers: usize,
    /// Per-peer limit on what a UDP peer sends, in Mbit/s (burst: one second's worth); 0 turns
    /// it off. It also caps how fast a GOP cache is replayed to a UDP viewer.
    #[arg(long, default_value_t = 50.0, env = "STALLWATCH_RELAY_UDP_RATE_LIMIT_MBPS")]
    pub udp_rate_limit_mbps: f64,
    /// Forget a UDP peer after this much silence (clients ping every second).
    #[arg(long, default_value = "10s", value_parser = parse_duration, env = "STALLWATCH_RELAY_UDP_PEER_TIMEOUT")]
    pub udp_peer_timeout: Duration,
}

impl RelayArgs {
    /// The relay configuration these flags describe (makes the certificate if self-signed).
    pub fn config(&self) -> Result<RelayConfig> {
        let udp_listen = match self.udp_listen {
            Some(addr) => addr,
            None => default_udp_listen(self.listen)?,
        };
        if !(self.udp_rate_limit_mbps >= 0.0 && self.udp_rate_limit_mbps.is_finite()) {
            bail!(
                "--udp-rate-limit-mbps must be 0 (off) or positive, got {}",
                self.udp_rate_limit_mbps
            );
        }
        if self.max_streams == 0 || self.max_viewers == 0 {
            bail!("--max-streams and --max-viewers must be at least 1");
        }
        let identity = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => Identity::from_pem_files(cert, key)?,
            _ => Identity::self_signed(&self.names)?,
        };
        Ok(RelayConfig {
            listen: self.listen,
            udp_listen,
            gop_cache: !self.no_gop_cache,
            identity,
            limits: Limits {
                max_streams: self.max_streams,
                max_viewers_per_stream: self.max_viewers,
                udp_rate_limit_bps: (self.udp_rate_limit_mbps * 1e6).round() as u64,
                udp_peer_timeout: self.udp_peer_timeout,
                ..Limits::default()
            },
            // A relay run by hand is open; `run` mode's relays require fleet certificates.
            fleet_ca: None,
            revoked_clients: crate::tls::RevokedClients::default(),
            udp_credential: None,
        })
    }
}

/// The QUIC address with port + 1 (port 0 stays 0: both ports are picked by the system).
fn default_udp_listen(listen: SocketAddr) -> Result<SocketAddr> {
    let port = match listen.port() {
        0 => 0,
        p => p.checked_add(1).context("--listen uses port 65535; set --udp-listen")?,
    };
    Ok(SocketAddr::new(listen.ip(), port))
}

/// Runs a relay until Ctrl-C or SIGTERM.
pub async fn main(args: RelayArgs) -> Result<()> {
    let config = args.config()?;
    let fingerprint = args.cert.is_none().then(|| config.identity.fingerprint());
    let gop_cache = config.gop_cache;
    let relay = Relay::start(config).await?;
    warn!(
        "OPEN RELAY: anyone who reaches {} (QUIC) or {} (UDP) may publish and view streams \
         here; stream names are predictable, so a stranger can take one first and feed forged \
         media to its viewers. Bind to a private address, or run relays from a plan (`run` \
         mode), where QUIC clients need a fleet certificate",
        relay.quic_addr(),
        relay.udp_addr()
    );
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "quic {}", relay.quic_addr())?;
        writeln!(out, "udp {}", relay.udp_addr())?;
        if let Some(fp) = &fingerprint {
            writeln!(out, "fingerprint {fp}")?;
        }
        writeln!(out, "ready")?;
        out.flush()?;
    }
    info!(
        quic = %relay.quic_addr(),
        udp = %relay.udp_addr(),
        gop_cache,
        fingerprint = fingerprint.as_deref().unwrap_or("(certificate from file)"),
        "relay ready"
    );
    let mut ticker = tokio::time::interval(STATS_LOG_EVERY);
    ticker.tick().await;
    let mut last = RelayStats::default();
    let signal = wait_for_signal();
    tokio::pin!(signal);
    loop {
        tokio::select! {
            result = &mut signal => {
                result?;
                break;
            }
            _ = ticker.tick() => {
                let stats = relay.stats();
                if stats != last {
                    log_stats(&stats);
                    last = stats;
                }
            }
        }
    }
    // The final counters, so a run shorter than the stats period still leaves them in the log.
    log_stats(&relay.stats());
    info!("shutting down: saying goodbye to publishers and viewers");
    relay.shutdown().await;
    Ok(())
}

fn log_stats(s: &RelayStats) {
    info!(
        streams = s.streams,
        viewers = s.viewers,
        udp_peers = s.udp_peers,
        quic_stream_in = s.quic_stream.packets_in,
        quic_stream_out = s.quic_stream.packets_out,
        quic_datagram_in = s.quic_datagram.packets_in,
        quic_datagram_out = s.quic_datagram.packets_out,
        udp_in = s.udp.packets_in,
        udp_out = s.udp.packets_out,
        malformed = s.malformed_total(),
        viewer_queue_drops = s.viewer_queue_drops,
        gops_reset = s.gops_reset,
        objects_skipped = s.objects_skipped,
        datagrams_too_big = s.datagrams_too_big,
        rate_limited_drops = s.rate_limited_drops,
        "relay counters"
    );
}

#[cfg(unix)]
async fn wait_for_signal() -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.context("listening for Ctrl-C"),
        _ = term.recv() => Ok(()),
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() -> Result<()> {
    tokio::signal::ctrl_c().await.context("listening for Ctrl-C")
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        relay: RelayArgs,
    }

    fn parse(args: &[&str]) -> RelayArgs {
        Cli::try_parse_from(std::iter::once("relay").chain(args.iter().copied())).unwrap().relay
    }

    #[test]
    fn flags_make_a_config() {
        let args = parse(&[
            "--listen",
            "127.0.0.1:5000",
            "--no-gop-cache",
            "--name",
            "relay.example",
            "--name",
            "127.0.0.1",
            "::1",
            "--max-streams",
            "3",
            "--max-viewers",
            "4",
            "--udp-rate-limit-mbps",
            "2.5",
            "--udp-peer-timeout",
            "3s",
        ]);
        assert_eq!(args.names, ["relay.example", "127.0.0.1", "::1"]);
        let config = args.config().unwrap();
        assert_eq!(config.udp_listen, "127.0.0.1:5001".parse().unwrap());
        assert!(!config.gop_cache);
        assert_eq!(
            config.limits,
            Limits {
                max_streams: 3,
                max_viewers_per_stream: 4,
                udp_rate_limit_bps: 2_500_000,
                udp_peer_timeout: Duration::from_secs(3),
                ..Limits::default()
            }
        );
        let defaults = parse(&[]).config().unwrap();
        assert!(defaults.gop_cache);
        assert_eq!(defaults.limits, Limits::default());
        assert_eq!(defaults.udp_listen, "0.0.0.0:4434".parse().unwrap());
    }

    #[test]
    fn udp_port_follows_quic_port() {
        assert_eq!(
            default_udp_listen("[::1]:0".parse().unwrap()).unwrap(),
            "[::1]:0".parse::<SocketAddr>().unwrap()
        );
        assert!(default_udp_listen("127.0.0.1:65535".parse().unwrap()).is_err());
        assert!(parse(&["--udp-rate-limit-mbps=-1"]).config().is_err());
        assert!(parse(&["--max-viewers", "0"]).config().is_err());
    }
}
