//! The publisher's pacing loop, on its own OS thread: tokio's timer wheel ticks in whole
//! milliseconds, too coarse to send 30 fps video on time, so the loop sleeps with
//! `clock::sleep_until_precise` and records how late each wake-up was (irtt reports the same).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Result;
use stallwatch_measure::{Pacer, Recorder, ScheduledFrame, StreamProfile, Time};

use crate::clock::{Clock, sleep_until_precise};

/// Sends one frame's packets. Implemented per transport.
pub trait FrameSink: Send {
    /// Sends `frame` now; `lateness` is how long after its due time the send started.
    fn send_frame(&mut self, frame: &ScheduledFrame) -> Result<()>;
}

/// Counts kept by the pacing loop.
#[derive(Debug, Clone, Default)]
pub struct PaceStats {
    pub frames: u64,
    pub timer_error: Recorder,
}

/// Paces `profile` from `start` for `duration`, handing each frame to `sink` when due (waking
/// `spin` early and spinning, see `clock::sleep_until_precise`). Stops early when `stop` is
/// set or the sink fails (the error is returned).
pub fn run(
    profile: StreamProfile,
    start: Time,
    duration: Duration,
    spin: Duration,
    sink: &mut dyn FrameSink,
    stop: &Arc<AtomicBool>,
) -> (PaceStats, Result<()>) {
    let clock = Clock::global();
    let end = start + duration;
    let mut pacer = Pacer::new(profile, start);
    let mut stats = PaceStats::default();
    while let Some(due) = pacer.poll_timeout().filter(|&t| t < end) {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        sleep_until_precise(clock.instant_at(due), spin);
        let woke = clock.now();
        stats.timer_error.record_nanos_as_micros(woke.saturating_since(due).as_nanos() as u64);
        while let Some(frame) = pacer.poll_frame(woke) {
            stats.frames += 1;
            if let Err(e) = sink.send_frame(&frame) {
                return (stats, Err(e));
            }
        }
    }
    (stats, Ok(()))
}

/// The interval between video frames (or audio packets), for lateness checks.
pub fn frame_interval(profile: &StreamProfile) -> Duration {
    let rate = if profile.fps > 0 { profile.fps } else { profile.audio_pps.max(1) };
    Duration::from_nanos(1_000_000_000 / u64::from(rate))
}
