//! `stallwatch-agent simulate`: the measurement core and link emulator under virtual time.
//!
//! No network and no waiting: a stream of any length is simulated in a moment. Useful to see
//! what a network type does to a stream before probing it for real, and to check thresholds.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use stallwatch_measure::StreamProfile;
use stallwatch_measure::link::{self, LinkConfig};
use stallwatch_measure::player::Medium;
use stallwatch_measure::sim::{self, SimConfig};

use crate::summary::Summary;

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimulateArgs {
    pub profile: StreamProfile,
    /// A preset name, or custom `key=value,...` settings, or `none`.
    pub emulate: String,
    pub duration: Duration,
    pub playout_delay: Duration,
    pub seed: u64,
}

/// The downlink of a preset, or a custom link.
pub fn link_from_arg(emulate: &str) -> Result<LinkConfig> {
    if let Some(preset) = link::preset(emulate) {
        return Ok(preset.down);
    }
    if emulate == "none" {
        return Ok(LinkConfig::default());
    }
    if !emulate.contains('=') {
        bail!(
            "unknown emulation preset {emulate:?}; presets: none, {}; or give custom settings such as \"delay=100ms,jitter=20ms,loss=1%\"",
            link::PRESET_NAMES.join(", ")
        );
    }
    emulate.parse().with_context(|| format!("bad --emulate settings {emulate:?}"))
}

/// Runs the simulation and returns its summary.
pub fn simulate(args: &SimulateArgs) -> Result<Summary> {
    args.profile.validate().map_err(anyhow::Error::msg)?;
    if args.duration.is_zero() {
        bail!("--duration must be longer than zero");
    }
    let mut config = SimConfig::new(link_from_arg(&args.emulate)?, args.duration);
    config.profile = args.profile.clone();
    config.seed = args.seed;
    config.receiver.playout_delay = args.playout_delay;
    if args.profile.fps == 0 {
        config.receiver.medium = Medium::Audio;
    }
    let run = sim::run(&config);
    Ok(Summary::new(&sim::total(&run.windows)))
}
