//! The agent's one clock module: the only place that reads `Instant::now`/`SystemTime::now`
//! (clippy.toml bans them elsewhere). Everything else takes a [`Time`] from here.
#![allow(clippy::disallowed_methods, reason = "this module is where the clock is read")]

use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use stallwatch_measure::Time;

/// Wall-clock-aligned monotonic time: nanoseconds since the Unix epoch as of process start,
/// advanced by the monotonic clock. Sender timestamps and arrival times both come from here, so
/// a process that publishes and views a stream measures one-way latency on one clock, and a
/// wall-clock step (NTP) never makes time jump.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: Instant,
    origin_wall_ns: u64,
}

impl Clock {
    /// The process-wide clock.
    pub fn global() -> Clock {
        static CLOCK: OnceLock<Clock> = OnceLock::new();
        *CLOCK.get_or_init(|| {
            let wall = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
            Clock { origin: Instant::now(), origin_wall_ns: wall.as_nanos() as u64 }
        })
    }

    /// Now, as a [`Time`] (ns since the Unix epoch).
    pub fn now(&self) -> Time {
        Time::from_nanos(self.origin_wall_ns + self.origin.elapsed().as_nanos() as u64)
    }

    /// The `Instant` at which this clock reads `t` (for timers).
    pub fn instant_at(&self, t: Time) -> Instant {
        self.origin + Duration::from_nanos(t.as_nanos().saturating_sub(self.origin_wall_ns))
    }

    /// Now as an `Instant`, for timers and elapsed times.
    pub fn instant(&self) -> Instant {
        Instant::now()
    }

    /// Now as tokio's timers take it (tokio's own clock: paused in a paused-time test).
    pub fn tokio_instant(&self) -> tokio::time::Instant {
        tokio::time::Instant::now()
    }

    /// The current wall-clock time in Unix milliseconds (for reports).
    pub fn unix_ms(&self) -> u64 {
        self.now().as_nanos() / 1_000_000
    }
}

/// Sleeps the current thread until `deadline`: the kernel timer until `spin` before it, then
/// yield-spinning. tokio's timer wheel has 1 ms granularity, too coarse for pacing media. A
/// longer `spin` buys accuracy where wake-ups are slow (virtual machines) at the cost of CPU
/// (see BENCHMARKS.md for both, measured).
///
/// Returns how late the kernel sleep woke the thread (after the time it asked for, i.e.
/// `spin` before `deadline`), or `None` if there was no time to sleep: the sample an adaptive
/// spin needs (`transport::pacing::SpinController`).
pub fn sleep_until_precise(deadline: Instant, spin: Duration) -> Option<Duration> {
    let mut oversleep = None;
    loop {
        let now = Instant::now();
        if now >= deadline {
            return oversleep;
        }
        let left = deadline - now;
        if left > spin && oversleep.is_none() {
            let wake = now + (left - spin);
            std::thread::sleep(left - spin);
            oversleep = Some(Instant::now().saturating_duration_since(wake));
        } else {
            std::thread::yield_now();
        }
    }
}
