//! Maintenance: minutes folded into hours, rows past retention deleted, the ledger pruned.

use std::collections::BTreeMap;

use rusqlite::{Connection, TransactionBehavior, params};
use stallwatch_proto::hdr;

use super::rows::{RowKey, add_counter, decode_stored_sparse, load_histogram, store_histogram};
use super::{SqliteStore, clamp_i64, to_i64};
use crate::store::counts::saturate;
use crate::store::{DownsampleStats, HOUR_MS, MINUTE_MS, Resolution, RetainStats, StoreError};

impl SqliteStore {
    pub(super) fn downsample_minutes(
        &mut self,
        older_than_unix_ms: u64,
    ) -> Result<DownsampleStats, StoreError> {
        let cutoff = clamp_i64(older_than_unix_ms - older_than_unix_ms % HOUR_MS);
        let minute = to_i64(MINUTE_MS)?;
        let hour_ms = to_i64(HOUR_MS)?;
        let mut stats = DownsampleStats::default();
        loop {
            let first: Option<i64> = self
                .conn
                .prepare_cached(
                    "SELECT min(s) FROM (
                         SELECT min(start_unix_ms) AS s FROM histograms
                         WHERE resolution_ms = ?1 AND start_unix_ms < ?2
                         UNION ALL
                         SELECT min(start_unix_ms) FROM counters
                         WHERE resolution_ms = ?1 AND start_unix_ms < ?2)",
                )?
                .query_row(params![minute, cutoff], |r| r.get(0))?;
            let Some(first) = first else { break };
            stats.minute_rows += self.fold_hour(first - first.rem_euclid(hour_ms))?;
            stats.hours += 1;
        }
        Ok(stats)
    }

    pub(super) fn retain_rows(
        &mut self,
        minutes_before_unix_ms: u64,
        hours_before_unix_ms: u64,
    ) -> Result<RetainStats, StoreError> {
        self.row_cache.clear();
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let delete = |resolution: Resolution, before: u64| -> Result<u64, StoreError> {
            let mut deleted = 0;
            for table in ["histograms", "counters"] {
                deleted += tx.execute(
                    &format!("DELETE FROM {table} WHERE resolution_ms = ?1 AND start_unix_ms < ?2"),
                    params![to_i64(resolution.millis())?, clamp_i64(before)],
                )?;
            }
            Ok(deleted as u64)
        };
        let minute_rows = delete(Resolution::Minute, minutes_before_unix_ms)?;
        let hour_rows = delete(Resolution::Hour, hours_before_unix_ms)?;
        tx.commit()?;
        Ok(RetainStats { minute_rows, hour_rows })
    }

    /// Folds the minutes of the hour starting at `hour` into hour rows and deletes them, in
    /// one transaction. Returns the minute rows folded.
    fn fold_hour(&mut self, hour: i64) -> Result<u64, StoreError> {
        // Minute rows are about to be folded away; the cache must not outlive them.
        self.row_cache.clear();
        let SqliteStore { conn, blob, .. } = self;
        // Hour rows are written once an hour and kept for long: compress them fully.
        let mut encoder = hdr::Encoder::new();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let minute = to_i64(MINUTE_MS)?;
        let end = hour + to_i64(HOUR_MS)?;

        // Histograms: group minute rows by (cohort, metric) and read their blobs one group at
        // a time, so memory holds one decoded histogram per row being merged.
        let keys: Vec<(i64, String, i64)> = tx
            .prepare_cached(
                "SELECT cohort, metric, rowid FROM histograms
                 WHERE resolution_ms = ?1 AND start_unix_ms >= ?2 AND start_unix_ms < ?3
                 ORDER BY cohort, metric",
            )?
            .query_map(params![minute, hour, end], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<_, _>>()?;
        for group in keys.chunk_by(|a, b| (a.0, &a.1) == (b.0, &b.1)) {
            let (cohort, metric, _) = &group[0];
            let key =
                RowKey { resolution: Resolution::Hour, start: hour, cohort: *cohort, name: metric };
            let mut row = load_histogram(&tx, &key)?;
            for (_, _, rowid) in group {
                let (bytes, sum, count): (Vec<u8>, u64, u64) = tx
                    .prepare_cached("SELECT hdr, sum, count FROM histograms WHERE rowid = ?1")?
                    .query_row([rowid], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
                let minute_row = decode_stored_sparse(&bytes, &key)?;
                row.add(metric, &minute_row, sum, count, 0)?;
            }
            store_histogram(&tx, &key, &row, &mut encoder, blob)?;
        }

        let mut totals: BTreeMap<(i64, String), u64> = BTreeMap::new();
        {
            let mut stmt = tx.prepare_cached(
                "SELECT cohort, name, value FROM counters
                 WHERE resolution_ms = ?1 AND start_unix_ms >= ?2 AND start_unix_ms < ?3",
            )?;
            let mut rows = stmt.query(params![minute, hour, end])?;
            while let Some(r) = rows.next()? {
                let total = totals.entry((r.get(0)?, r.get(1)?)).or_default();
                *total = saturate(*total, r.get(2)?);
            }
        }
        for ((cohort, name), value) in &totals {
            let key = RowKey { resolution: Resolution::Hour, start: hour, cohort: *cohort, name };
            add_counter(&tx, &key, *value)?;
        }

        let mut folded = 0;
        for table in ["histograms", "counters"] {
            folded += tx.execute(
                &format!(
                    "DELETE FROM {table}
                     WHERE resolution_ms = ?1 AND start_unix_ms >= ?2 AND start_unix_ms < ?3"
                ),
                params![minute, hour, end],
            )?;
        }
        tx.commit()?;
        Ok(folded as u64)
    }
}

pub(super) fn prune_ledger(
    conn: &Connection,
    received_before_unix_ms: u64,
) -> Result<u64, StoreError> {
    let deleted = conn.execute(
        "DELETE FROM ingest_ledger WHERE received_unix_ms < ?1",
        [clamp_i64(received_before_unix_ms)],
    )?;
    Ok(deleted as u64)
}
