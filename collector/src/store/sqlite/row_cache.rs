//! The row cache: decoded minute rows of the current minutes, so the hot minute is not
//! inflated and parsed again every batch. It holds exactly what the database holds: rows enter
//! it only after their transaction commits; any error drops it whole; `PRAGMA data_version`
//! (read inside each ingest transaction, under the write lock) drops it when another
//! connection has committed since; maintenance on this connection drops it too.

use std::collections::HashMap;
use std::ops::Range;

use super::RowKey;
use crate::store::{HistogramCounts, MINUTE_MS, Resolution};

/// Default bound on the row cache, bytes of histogram counts. A cohort's minute with
/// stallwatch's usual histograms takes a few hundred KiB decoded, so 128 MiB holds two minutes
/// of about 150 cohorts; past that, rows are read from the database.
pub const DEFAULT_ROW_CACHE_BYTES: usize = 128 * 1024 * 1024;

/// The row cache keeps minute rows starting within this many minutes of the minute holding the
/// batch's receive time (collector clock): the current minute, the previous one (late reports
/// keep arriving for a while) and the next one (agent clocks a little ahead). Rows further
/// off (backfill, or an agent with a wrong clock) are read from the database; keying the window
/// on the collector's clock keeps one agent with a wrong clock from pushing the window away.
const CACHED_MINUTES_AROUND: i64 = 1;

/// Decoded minute rows of the current minutes, keyed by `(start, cohort, metric)`; holds exactly
/// what the database holds as of `data_version` (see the module documentation).
pub(super) struct RowCache {
    /// `PRAGMA data_version` in the transaction that last updated the cache; `None` when empty.
    pub(super) data_version: Option<i64>,
    pub(super) rows: HashMap<(i64, i64, String), HistogramCounts>,
    /// Bytes of counts held (each row's `distinct_values() * 8`).
    pub(super) bytes: usize,
    pub(super) limit: usize,
    /// Minute starts (unix ms) the cache keeps, see [`CACHED_MINUTES_AROUND`].
    window: Range<i64>,
}

impl RowCache {
    pub(super) fn new(limit: usize) -> Self {
        RowCache { data_version: None, rows: HashMap::new(), bytes: 0, limit, window: 0..0 }
    }

    pub(super) fn clear(&mut self) {
        self.data_version = None;
        self.rows.clear();
        self.bytes = 0;
    }

    pub(super) fn take(&mut self, key: &RowKey<'_>) -> Option<HistogramCounts> {
        if key.resolution != Resolution::Minute || self.rows.is_empty() {
            return None;
        }
        let row = self.rows.remove(&(key.start, key.cohort, key.name.to_owned()))?;
        self.bytes -= row.heap_bytes();
        Some(row)
    }

    /// Moves the window to the minutes around `now_unix_ms` (collector clock) and drops rows
    /// outside it.
    pub(super) fn set_now(&mut self, now_unix_ms: i64) {
        let minute = MINUTE_MS as i64;
        let current = now_unix_ms - now_unix_ms.rem_euclid(minute);
        let around = CACHED_MINUTES_AROUND * minute;
        let window = current.saturating_sub(around)..current.saturating_add(around + 1);
        if window == self.window {
            return;
        }
        self.window = window;
        let mut freed = 0;
        let window = &self.window;
        self.rows.retain(|k, row| {
            let keep = window.contains(&k.0);
            if !keep {
                freed += row.heap_bytes();
            }
            keep
        });
        self.bytes -= freed;
    }

    /// Caches a committed minute row if it is in the window and fits.
    pub(super) fn insert(&mut self, key: &RowKey<'_>, row: HistogramCounts) {
        if key.resolution != Resolution::Minute
            || !self.window.contains(&key.start)
            || self.bytes + row.heap_bytes() > self.limit
        {
            return;
        }
        self.bytes += row.heap_bytes();
        self.rows.insert((key.start, key.cohort, key.name.to_owned()), row);
    }
}
