//! The publisher's pacing loop, on its own OS thread: tokio's timer wheel ticks in whole
//! milliseconds, too coarse to send 30 fps video on time, so the loop sleeps with
//! `clock::sleep_until_precise` and records how late each wake-up was (irtt reports the same).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Result;
use stallwatch_measure::{Pacer, Recorder, ScheduledFrame, StreamProfile, Time};

use crate::clock::{Clock, sleep_until_precise};
use crate::lateness::Lateness;

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
    /// Keyframe requests that started a new GOP (at most one per 300 ms is honoured).
    pub keyframes_forced: u64,
}

/// Oversleeps the spin controller remembers (the most recent ones).
const SPIN_WINDOW: usize = 128;
/// Samples needed before the controller trusts them; until then it spins the full cap.
const SPIN_WARMUP: usize = 32;
/// Added to the observed oversleep quantile, for wake-ups a little later than any seen.
const SPIN_MARGIN: Duration = Duration::from_micros(20);

/// Chooses how long before each frame the pacing thread wakes to spin: just long enough to
/// cover the kernel's recent wake-up lateness. The spin is the 99th percentile of the last
/// [`SPIN_WINDOW`] oversleeps (how late a kernel sleep returned) plus [`SPIN_MARGIN`], between
/// zero and `cap`; the full `cap` until [`SPIN_WARMUP`] samples are in. On an idle host whose
/// sleeps return 50-60 µs late (Linux's default timer slack) that is about 100 µs instead of a
/// fixed 200 µs; where wake-ups get slower (a busy VM) the spin grows back to the cap within a
/// few frames. A pure function of its samples, so it is tested without a clock.
#[derive(Debug, Clone)]
pub struct SpinController {
    cap: Duration,
    ring: [u32; SPIN_WINDOW],
    len: usize,
    next: usize,
    spin: Duration,
}

impl SpinController {
    /// A controller that never spins longer than `cap`.
    pub fn new(cap: Duration) -> Self {
        SpinController { cap, ring: [0; SPIN_WINDOW], len: 0, next: 0, spin: cap }
    }

    /// The spin to use for the next sleep.
    pub fn spin(&self) -> Duration {
        self.spin
    }

    /// Records how late a kernel sleep returned.
    pub fn record(&mut self, oversleep: Duration) {
        let micros = u32::try_from(oversleep.as_micros()).unwrap_or(u32::MAX);
        self.ring[self.next] = micros;
        self.next = (self.next + 1) % SPIN_WINDOW;
        self.len = (self.len + 1).min(SPIN_WINDOW);
        if self.len < SPIN_WARMUP {
            return;
        }
        let mut recent = self.ring;
        let recent = &mut recent[..self.len];
        // The 99th percentile, rounded up: the 2nd largest of 128, the largest of fewer than 100.
        let rank = (self.len * 99).div_ceil(100).max(1) - 1;
        let (_, &mut p99, _) = recent.select_nth_unstable(rank);
        let wanted = Duration::from_micros(u64::from(p99)) + SPIN_MARGIN;
        self.spin = wanted.min(self.cap);
    }
}

/// What the pacing thread shares with the rest of the publisher.
#[derive(Debug, Clone, Default)]
pub struct PaceSignals {
    /// Set to stop early.
    pub stop: Arc<AtomicBool>,
    /// Set by a keyframe request from the relay: the next video frame starts a new GOP.
    pub keyframe: Arc<AtomicBool>,
    /// Where each frame's send-timer lateness goes: in-process viewers mark a window whose
    /// publisher ran late as self-noise (`crate::lateness`).
    pub lateness: Arc<Lateness>,
}

/// Paces `profile` from `start` for `duration`, handing each frame to `sink` when due (waking
/// early and spinning, at most `spin` early: see [`SpinController`] and
/// `clock::sleep_until_precise`). Stops early when `signals.stop` is set or the sink fails (the error
/// is returned); `signals.keyframe` starts a new GOP. Each wake-up's lateness is recorded and
/// noted in `signals.lateness`.
pub fn run(
    profile: StreamProfile,
    start: Time,
    duration: Duration,
    spin: Duration,
    sink: &mut dyn FrameSink,
    signals: &PaceSignals,
) -> (PaceStats, Result<()>) {
    let clock = Clock::global();
    let end = start + duration;
    let mut pacer = Pacer::new(profile, start);
    let mut stats = PaceStats::default();
    let mut spinner = SpinController::new(spin);
    while let Some(due) = pacer.poll_timeout().filter(|&t| t < end) {
        if signals.stop.load(Ordering::Relaxed) {
            break;
        }
        if let Some(late) = sleep_until_precise(clock.instant_at(due), spinner.spin()) {
            spinner.record(late);
        }
        let woke = clock.now();
        let late = woke.saturating_since(due);
        stats.timer_error.record_nanos_as_micros(late.as_nanos() as u64);
        signals.lateness.note(late);
        if signals.keyframe.swap(false, Ordering::Relaxed) {
            stats.keyframes_forced += u64::from(pacer.request_keyframe(woke));
        }
        while let Some(frame) = pacer.poll_frame_before(woke, end) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    /// A sink whose first send blocks for `block`, as a publisher's thread starved of CPU would.
    struct StallingSink {
        block: Duration,
        sent: u64,
    }

    impl FrameSink for StallingSink {
        fn send_frame(&mut self, _frame: &ScheduledFrame) -> Result<()> {
            if self.sent == 0 {
                std::thread::sleep(self.block);
            }
            self.sent += 1;
            Ok(())
        }
    }

    /// Paces half a second of 360p15 with a first send that blocks 200 ms, and returns the
    /// window an in-process viewer with `playout_delay` takes after it.
    fn viewer_window_after_a_stalled_send(
        playout_delay: Duration,
    ) -> stallwatch_measure::WindowMetrics {
        use stallwatch_measure::{Receiver, ReceiverConfig};
        let signals = PaceSignals::default();
        let feed = crate::lateness::SelfNoiseFeed {
            sender: Some(signals.lateness.reader()),
            emulator: None,
        };
        let profile: StreamProfile = "360p15".parse().unwrap();
        let mut sink = StallingSink { block: Duration::from_millis(200), sent: 0 };
        let start = Clock::global().now();
        let (stats, result) =
            run(profile, start, Duration::from_millis(500), us(200), &mut sink, &signals);
        result.unwrap();
        assert!(stats.frames > 1, "the pacer went on after the stall");
        let config = ReceiverConfig { playout_delay, ..ReceiverConfig::default() };
        let mut receiver = Receiver::new(config, start);
        feed.note_into(&mut receiver);
        receiver.take_window(start + Duration::from_secs(1))
    }

    #[test]
    fn a_late_send_beyond_a_tenth_of_the_playout_delay_marks_the_viewers_window() {
        // The frames due in the first 200 ms leave only after it: 130-200 ms late, over 30 ms.
        let w = viewer_window_after_a_stalled_send(Duration::from_millis(300));
        assert!(w.self_noise.is_marked(), "{:?}", w.self_noise);
        assert!(w.self_noise.sender_late_max_ns >= 100_000_000, "{:?}", w.self_noise);
        assert_eq!(w.self_noise.emulator_late_max_ns, 0);
    }

    #[test]
    fn the_same_late_send_within_a_tenth_of_a_longer_playout_delay_does_not() {
        // Under 200 ms (and, however loaded the machine, well under 400 ms): a 400 ms bound.
        let w = viewer_window_after_a_stalled_send(Duration::from_secs(4));
        assert!(!w.self_noise.is_marked(), "{:?}", w.self_noise);
        assert!(w.self_noise.sender_late_max_ns >= 100_000_000, "{:?}", w.self_noise);
    }

    #[test]
    fn spins_the_full_cap_until_warmed_up() {
        let mut c = SpinController::new(us(200));
        for _ in 0..SPIN_WARMUP - 1 {
            c.record(us(10));
            assert_eq!(c.spin(), us(200));
        }
        c.record(us(10));
        assert_eq!(c.spin(), us(10) + SPIN_MARGIN);
    }

    #[test]
    fn follows_the_99th_percentile_of_recent_oversleeps() {
        let mut c = SpinController::new(us(200));
        // 126 quick wake-ups and two slow ones: the 2nd largest of 128 is the p99.
        for _ in 0..126 {
            c.record(us(50));
        }
        c.record(us(90));
        c.record(us(120));
        assert_eq!(c.spin(), us(90) + SPIN_MARGIN);
        // One outlier among 128 is below the 99th percentile...
        for _ in 0..127 {
            c.record(us(50));
        }
        c.record(us(5_000));
        assert_eq!(c.spin(), us(50) + SPIN_MARGIN);
        // ...two are not, but the cap holds.
        c.record(us(5_000));
        assert_eq!(c.spin(), us(200));
    }

    #[test]
    fn grows_back_when_wake_ups_get_slower_and_shrinks_when_they_recover() {
        let mut c = SpinController::new(us(200));
        for _ in 0..SPIN_WINDOW {
            c.record(us(0));
        }
        assert_eq!(c.spin(), SPIN_MARGIN);
        // A busy host: two slow wake-ups in the window are enough to spin longer.
        c.record(us(150));
        c.record(us(150));
        assert_eq!(c.spin(), us(170));
        // They age out of the window.
        for _ in 0..SPIN_WINDOW {
            c.record(us(30));
        }
        assert_eq!(c.spin(), us(30) + SPIN_MARGIN);
    }

    #[test]
    fn a_zero_cap_never_spins_and_huge_samples_do_not_overflow() {
        let mut c = SpinController::new(Duration::ZERO);
        for _ in 0..SPIN_WINDOW {
            c.record(Duration::from_secs(u64::MAX / 4));
        }
        assert_eq!(c.spin(), Duration::ZERO);
    }
}
