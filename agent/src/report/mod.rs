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
//! in sequence order when it returns. Only refusals of a report for what it holds delete it;
//! refusals for a collector setting or the clock move it to `refused/` (bounded), and anything
//! else (a proxy's 404, 429, a refusal of the agent) keeps it ([`SendOutcome`]). Resending is
//! safe: the collector deduplicates on `(agent, seq)` and the report's digest, and the builder
//! never reuses a `seq`, across restarts too (the next one is kept in the spool directory, see
//! [`ReportBuilder::open`]). If the directory is rolled back (a VM snapshot), the collector
//! answers `Conflict` for a reused number; the reports are then renumbered past it
//! ([`Spool::renumber_from`], [`raise_next_seq`]) and sent again.
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

use std::path::Path;

pub use builder::{ReportBuilder, SEQ_FILE};
pub use spool::{
    DEFAULT_MAX_BYTES, DEFAULT_MAX_REPORTS, DEFAULT_SPOOL_DIR, Drained, MAX_QUARANTINED,
    MAX_REFUSED, MAX_UNWRITTEN, REFUSED_DIR, SendOutcome, Spool, SpoolError, SpoolStats,
};

/// Raises the next sequence number stored in `spool_dir` ([`SEQ_FILE`]) to at least `next`,
/// durably, so that a [`ReportBuilder`] opened after it numbers from there. Never lowers it.
pub fn raise_next_seq(spool_dir: &Path, next: u64) -> Result<(), SpoolError> {
    let path = spool_dir.join(SEQ_FILE);
    let stored = match spool::read_capped(&path, 64) {
        Ok(bytes) => std::str::from_utf8(&bytes).ok().and_then(|t| t.trim().parse::<u64>().ok()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(spool::io_error("reading", &path)(e)),
    };
    if stored.is_some_and(|s| s >= next) {
        return Ok(());
    }
    let temp = format!("{SEQ_FILE}.tmp");
    spool::write_durably(spool_dir, SEQ_FILE, &temp, format!("{next}\n").as_bytes())
}
