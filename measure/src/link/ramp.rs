//! A ramp: a link that gets worse over time. From `start`, over `duration`, the random loss
//! rises linearly by `loss` and the one-way delay by `delay`; after that both stay at the top.
//! A degrading network (an evening peak building up, a failing peering) in one setting.
//!
//! Ramp times count on the *schedule*, which is link time plus `joined`: a link created part
//! way through a schedule (an agent's probe attempt starting two minutes into the agent's run)
//! sets `joined` to that point, so one ramp spans many short-lived links.

use std::time::Duration;

use crate::time::Time;

/// Loss and delay rising over time (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ramp {
    /// When the ramp begins, on the schedule.
    pub start: Duration,
    /// How long it takes to reach the top; zero is a step at `start`.
    pub duration: Duration,
    /// Random loss probability added at the top (on top of `LinkConfig::loss`, clamped to 1).
    pub loss: f64,
    /// One-way delay added at the top (on top of `LinkConfig::delay`).
    pub delay: Duration,
    /// The point of the schedule at link time zero. Set by code, not by the `--emulate`
    /// syntax (an `--emulate` ramp counts from the link's start).
    pub joined: Duration,
}

impl Ramp {
    /// How far up the ramp a packet entering at link time `now` is, `0.0..=1.0`.
    pub fn progress(&self, now: Time) -> f64 {
        let at = Duration::from_nanos(now.as_nanos()).saturating_add(self.joined);
        if at < self.start {
            return 0.0;
        }
        let into = at - self.start;
        if self.duration.is_zero() || into >= self.duration {
            return 1.0;
        }
        into.as_secs_f64() / self.duration.as_secs_f64()
    }

    /// The extra loss probability at `now`.
    pub fn loss_at(&self, now: Time) -> f64 {
        self.loss * self.progress(now)
    }

    /// The extra delay at `now`, to the nanosecond below.
    pub fn delay_at(&self, now: Time) -> Duration {
        self.delay.mul_f64(self.progress(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::{Fate, Link, LinkConfig};

    fn ramp() -> Ramp {
        Ramp {
            start: Duration::from_secs(10),
            duration: Duration::from_secs(100),
            loss: 0.05,
            delay: Duration::from_millis(200),
            joined: Duration::ZERO,
        }
    }

    fn at(secs: u64) -> Time {
        Time::from_millis(secs * 1000)
    }

    #[test]
    fn rises_linearly_from_start_then_holds() {
        let r = ramp();
        assert_eq!(r.progress(at(0)), 0.0);
        assert_eq!(r.progress(at(10)), 0.0);
        assert!((r.progress(at(60)) - 0.5).abs() < 1e-12);
        assert_eq!(r.delay_at(at(60)), Duration::from_millis(100));
        assert!((r.loss_at(at(35)) - 0.0125).abs() < 1e-12);
        assert_eq!(r.progress(at(110)), 1.0);
        assert_eq!(r.delay_at(at(5000)), Duration::from_millis(200));
        let step = Ramp { duration: Duration::ZERO, ..r };
        assert_eq!((step.progress(at(9)), step.progress(at(10))), (0.0, 1.0));
    }

    #[test]
    fn a_link_that_joins_late_starts_where_the_schedule_is() {
        let late = Ramp { joined: Duration::from_secs(60), ..ramp() };
        assert!((late.progress(at(0)) - 0.5).abs() < 1e-12);
        assert_eq!(late.progress(at(50)), 1.0);
    }

    /// Under virtual time, a link with a ramp delays and drops more as the schedule goes on:
    /// the delay follows the ramp to the microsecond and the loss of each 10 s stretch
    /// tracks the ramp's mean over it.
    #[test]
    fn the_link_follows_the_ramp() {
        let config = LinkConfig {
            delay: Duration::from_millis(40),
            loss: 0.001,
            ramp: Some(ramp()),
            ..LinkConfig::default()
        };
        let mut link = Link::new(config, 3);
        let gap = Duration::from_millis(2);
        let mut lost = [0u32; 12];
        for i in 0..60_000u64 {
            let now = Time::from_nanos(i * gap.as_nanos() as u64);
            match link.send(now, 1200) {
                Fate::Deliver(when) => {
                    let want = Duration::from_millis(40) + ramp().delay_at(now);
                    assert_eq!(when.saturating_since(now), want, "at {now:?}");
                }
                Fate::Drop(_) => lost[(i / 5000) as usize] += 1,
            }
        }
        // 5,000 packets per stretch; the ramp's mean extra loss over stretch k (10k..10k+10 s).
        for (k, &n) in lost.iter().enumerate() {
            let mid = at(k as u64 * 10 + 5);
            let p = 0.001 + ramp().loss_at(mid);
            let (mean, sd) = (5000.0 * p, (5000.0 * p * (1.0 - p)).sqrt());
            assert!(
                (f64::from(n) - mean).abs() <= 5.0 * sd + 2.0,
                "stretch {k}: {n} lost, expected about {mean:.0}"
            );
        }
        assert!(lost[0] < 20 && lost[11] > 200, "{lost:?}");
    }
}
