//! The collector's one place that reads the clock (see clippy.toml): everything else is handed
//! `now`, so ingest checks, the store and the series stay testable with any time.
#![allow(clippy::disallowed_methods, reason = "this module is where the clock is read")]

use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Wall-clock time, unix milliseconds (0 if the clock is before 1970).
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Wall-clock time as a date, for certificate validity in the `ca` commands.
pub fn now_utc() -> time::OffsetDateTime {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    time::OffsetDateTime::UNIX_EPOCH + since_epoch
}

/// Monotonic time, for durations (ingest latency).
pub fn monotonic() -> Instant {
    Instant::now()
}

/// Time since `earlier` (a [`monotonic`] reading).
pub fn since(earlier: Instant) -> std::time::Duration {
    Instant::now().saturating_duration_since(earlier)
}

/// Now as tokio's timers take it (tokio's own clock: paused in a paused-time test).
pub fn tokio_now() -> tokio::time::Instant {
    tokio::time::Instant::now()
}
