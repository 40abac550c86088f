//! One reusable tokio timer for a driver loop.
//!
//! Creating a fresh `tokio::time::sleep_until` on every pass of a receive loop registers a new
//! entry in tokio's timer wheel per packet, and a registration earlier than the driver's next
//! wake-up writes to the I/O driver's eventfd. At a few hundred packets a second that was about a
//! fifth of a probe's CPU; a timer that moves only when its deadline changes costs nothing per
//! packet.

use std::pin::Pin;

use stallwatch_measure::Time;
use tokio::time::Sleep;

use crate::clock::Clock;

/// A timer armed at one deadline at a time.
pub(crate) struct Timer {
    sleep: Pin<Box<Sleep>>,
    deadline: Time,
}

impl Timer {
    /// A timer armed at `deadline`.
    pub(crate) fn new(deadline: Time) -> Self {
        let at = Clock::global().instant_at(deadline);
        Timer { sleep: Box::pin(tokio::time::sleep_until(at.into())), deadline }
    }

    /// Moves the timer to `deadline`; nothing happens if it is already there.
    pub(crate) fn set(&mut self, deadline: Time) {
        if deadline != self.deadline {
            self.deadline = deadline;
            self.sleep.as_mut().reset(Clock::global().instant_at(deadline).into());
        }
    }

    /// Resolves once the deadline has passed (at once if it already has).
    pub(crate) async fn wait(&mut self) {
        self.sleep.as_mut().await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn fires_at_the_latest_deadline_set_and_again_when_moved() {
        let clock = Clock::global();
        let start = clock.now();
        let mut timer = Timer::new(start + Duration::from_secs(3600));
        // Moving it earlier takes effect.
        timer.set(start + Duration::from_millis(5));
        tokio::time::timeout(Duration::from_secs(5), timer.wait()).await.expect("fires");
        assert!(clock.now() >= start + Duration::from_millis(5));
        // The same deadline again: still elapsed, resolves at once.
        timer.set(start + Duration::from_millis(5));
        tokio::time::timeout(Duration::from_millis(500), timer.wait()).await.expect("elapsed");
        // A later deadline re-arms it.
        let later = clock.now() + Duration::from_millis(20);
        timer.set(later);
        tokio::time::timeout(Duration::from_secs(5), timer.wait()).await.expect("fires again");
        assert!(clock.now() >= later);
    }
}
