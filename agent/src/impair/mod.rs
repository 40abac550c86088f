//! A UDP impairment proxy: sends any UDP or QUIC flow through emulated network conditions
//! (the `measure::link` model), per direction.

use std::net::SocketAddr;

use anyhow::{Result, bail};

/// `stallwatch-agent impair` flags.
#[derive(clap::Args, Debug, Clone)]
pub struct ImpairArgs {
    /// Address to listen on; clients send here instead of to --to.
    #[arg(long)]
    pub listen: SocketAddr,
    /// Where to forward to.
    #[arg(long)]
    pub to: SocketAddr,
    /// Network to emulate: a preset or custom settings (see `simulate --help`).
    #[arg(long, default_value = "none")]
    pub profile: String,
}

/// Runs the proxy until Ctrl-C or SIGTERM.
pub async fn main(args: ImpairArgs) -> Result<()> {
    let _ = args;
    bail!("the impairment proxy is being built")
}
