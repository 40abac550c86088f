//! The relay: accepts publishers and viewers over QUIC (streams, datagrams) and plain UDP,
//! keeps a GOP cache per stream and fans out to viewers. See docs/protocol.md.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Result, bail};

/// `stallwatch-agent relay` flags.
#[derive(clap::Args, Debug, Clone)]
pub struct RelayArgs {
    /// QUIC address to listen on (both quic-stream and quic-datagram).
    #[arg(long, default_value = "0.0.0.0:4433", env = "STALLWATCH_RELAY_LISTEN")]
    pub listen: SocketAddr,
    /// Plain UDP address to listen on [default: the QUIC address with port + 1].
    #[arg(long, env = "STALLWATCH_RELAY_UDP_LISTEN")]
    pub udp_listen: Option<SocketAddr>,
    /// Certificate chain (PEM), e.g. from the fleet CA. Without it the relay makes a
    /// self-signed certificate and prints its SHA-256 fingerprint for `probe --pin`.
    #[arg(long, requires = "key", env = "STALLWATCH_RELAY_CERT")]
    pub cert: Option<PathBuf>,
    /// Private key (PEM) for --cert.
    #[arg(long, requires = "cert", env = "STALLWATCH_RELAY_KEY")]
    pub key: Option<PathBuf>,
}

/// Runs a relay until Ctrl-C or SIGTERM.
pub async fn main(args: RelayArgs) -> Result<()> {
    let _ = args;
    bail!("the relay is being built")
}
