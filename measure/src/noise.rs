//! The self-noise guard: a probe must never report its own overload as the network's.
//!
//! The agent feeds each window how late its own machinery ran: the publisher's send timer (a
//! frame sent late arrives late, and eats the viewer's playout buffer) and the emulator's
//! delivery (a packet held too long adds delay and jitter the network did not). A window where
//! either exceeds its bound is marked `self_noise`: the agent's report builder keeps its figures
//! out of the series it sends (so out of alerts and regional reports) and counts it instead.
//!
//! The bounds:
//! - **Emulator lateness: 10 ms**, a third of the 30 ms jitter warning threshold. Emulator
//!   lateness adds directly to a packet's transit, so it shows in jitter, PDV and latency as it
//!   is; beyond a third of the warning level the window's timing figures are no longer the
//!   emulated network's. The emulator measured 0.1-0.25 ms late on an idle machine
//!   (`agent/src/impair/proxy.rs`), so only real overload crosses it.
//! - **Send-timer lateness: a tenth of the playout delay** (30 ms at the default 300 ms). The
//!   sender stamps `send_ns` when a packet really leaves, so its lateness does not show in
//!   jitter or PDV; it shows in the player, where a late frame uses up buffer: a tenth of the
//!   buffer is what the agent may spend of it on itself. The send timer's p99 measured
//!   0.02-0.09 ms idle and milliseconds under load (BENCHMARKS.md).

use std::time::Duration;

/// Emulator delivery lateness above which a window is self-noise.
pub const EMULATOR_LATENESS_BOUND: Duration = Duration::from_millis(10);

/// Send-timer lateness above which a window is self-noise, for a given playout delay.
pub fn sender_lateness_bound(playout_delay: Duration) -> Duration {
    playout_delay / 10
}

/// The agent's own lateness in a window, and whether it marks the window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SelfNoise {
    /// Largest send-timer lateness noted, ns.
    pub sender_late_max_ns: u64,
    /// Largest emulator delivery lateness noted, ns.
    pub emulator_late_max_ns: u64,
    /// Windows marked self-noise (0 or 1 for one window; summed when windows merge).
    pub windows: u64,
}

impl SelfNoise {
    /// Whether any window in it was marked.
    pub fn is_marked(&self) -> bool {
        self.windows > 0
    }

    pub(crate) fn note_sender(&mut self, late: Duration) {
        self.sender_late_max_ns = self.sender_late_max_ns.max(nanos(late));
    }

    pub(crate) fn note_emulator(&mut self, late: Duration) {
        self.emulator_late_max_ns = self.emulator_late_max_ns.max(nanos(late));
    }

    /// Closes a window: marks it against the bounds for `playout_delay` and starts over.
    pub(crate) fn take_window(&mut self, playout_delay: Duration) -> SelfNoise {
        let mut w = std::mem::take(self);
        let over_sender = w.sender_late_max_ns > nanos(sender_lateness_bound(playout_delay));
        let over_emulator = w.emulator_late_max_ns > nanos(EMULATOR_LATENESS_BOUND);
        w.windows = u64::from(over_sender || over_emulator);
        w
    }
}

impl std::ops::AddAssign<&SelfNoise> for SelfNoise {
    fn add_assign(&mut self, o: &SelfNoise) {
        self.sender_late_max_ns = self.sender_late_max_ns.max(o.sender_late_max_ns);
        self.emulator_late_max_ns = self.emulator_late_max_ns.max(o.emulator_late_max_ns);
        self.windows += o.windows;
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
