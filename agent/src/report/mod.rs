//! Interval reports on the agent side: the [`ReportBuilder`] folds each probe's windows into
//! one report per interval, and the [`Spool`] keeps encoded reports on disk until the collector
//! acknowledges them.
//!
//! Every report goes through the spool, online or not, so there is one path and one order:
//!
//! ```text
//! every interval:  builder.take(now) -> spool.push(&report) -> spool.drain(send)
//! ```
//!
//! `drain` sends oldest first and stops at the first `RetryLater`, so while the collector is
//! unreachable reports queue up (bounded: the oldest are dropped and counted) and are backfilled
//! in sequence order when it returns. Resending is safe: the collector deduplicates on
//! `(agent, seq)`, and the builder never reuses a `seq`, across restarts too (the next one is
//! kept in the spool directory, see [`ReportBuilder::open`]).
//!
//! Nothing here reads a clock: callers pass `now` (`Clock::global().unix_ms()`).
//!
//! **Invariant:** a report file named `<seq>.json` is always complete. Files are written to a
//! temporary name, synced, renamed, and the directory synced; temporary files left by a crash
//! are deleted on open, and a named file that does not parse (disk corruption, hand edits) is
//! moved to `corrupt/` and counted, never sent.
//!
//! **Invariant:** memory and disk are bounded: the spool keeps an index of at most
//! `max_reports` (seq, size) pairs and reads one file at a time, on demand.

mod builder;
mod spool;

#[cfg(test)]
mod tests;

pub use builder::{ReportBuilder, Role, SEQ_FILE, SeriesKey};
pub use spool::{
    DEFAULT_MAX_BYTES, DEFAULT_MAX_REPORTS, DEFAULT_SPOOL_DIR, Drained, MAX_QUARANTINED,
    SendOutcome, Spool, SpoolError, SpoolStats,
};
