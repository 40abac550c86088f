//! The SQLite backend of [`HistoryStore`].
//!
//! # Schema (version 1)
//!
//! ```text
//! schema_version (version)                                   one row
//! agents         (name PK, region, network_type, version, plan_revision,
//!                 first_seen_unix_ms, last_report_unix_ms, last_seq, spool_depth, reports)
//! ingest_ledger  ((agent, seq) PK, received_unix_ms, digest) dedup; indexed by received time
//! cohorts        (id PK, region, network_type, transport, target)   unique labels
//! histograms     (resolution_ms, start_unix_ms, cohort, metric) unique,
//!                 hdr BLOB (V2+DEFLATE), sum, count
//! counters       ((resolution_ms, start_unix_ms, cohort, name) PK, value)
//! ```
//!
//! Minute and hour rows share `histograms` and `counters`, told apart by `resolution_ms`
//! (60 000 or 3 600 000). Cohort labels are stored once in `cohorts` and referenced by id.
//! `histograms` keeps a rowid because its rows carry kilobyte blobs (SQLite advises against
//! WITHOUT ROWID for rows that large); the small tables are WITHOUT ROWID. All integers are
//! non-negative and at most `i64::MAX`; totals saturate there.
//!
//! # Durability
//!
//! WAL journal with `synchronous=FULL`: every commit fsyncs the WAL before `COMMIT` returns,
//! so an acknowledged report survives a process kill, an OS crash and a power loss alike. The
//! cost is one fsync per group-committed batch, not per report: under load a batch holds
//! hundreds of reports, and `cargo bench --bench ingest_store` measured no difference from
//! `NORMAL` at those batch sizes (BENCHMARKS.md). A kill in the middle of a commit leaves a WAL
//! tail without a commit frame, which recovery ignores (the whole batch is absent, and none of
//! it was acknowledged). `NORMAL` (fsync only at checkpoints) would survive a process kill but
//! not an OS crash; the collector never trades durability for throughput
//! ([`SqliteStore::set_synchronous_full`] exists to measure the difference).
//!
//! # Ingest speed
//!
//! A batch's contributions are grouped by row first, so each row is read, merged and written
//! once per batch however many reports touch it. They merge in a reused scratch row, which is
//! then added to the row and kept, as non-zero buckets, for the batch's [`BatchDelta`]. Rows
//! are plain counts arrays of stallwatch's HDR layout (only up to the largest value held): a
//! report's histogram arrives as its non-zero buckets (`hdr::SparseHistogram`) and each is
//! added at its index, and the row is encoded straight from the counts
//! (`hdr::Encoder::encode_counts_into`, the V2 counts `hdrhistogram` would write) with a reused
//! encoder at DEFLATE level [`ROW_DEFLATE_LEVEL`]. The merged minute rows of the current
//! minutes (collector clock) stay decoded in a row cache, so the hot minute is not inflated
//! and parsed again every batch. The cache holds exactly what the database holds: rows enter
//! it only after their transaction commits; any error drops it whole; `PRAGMA data_version`
//! (read inside each ingest transaction, under the write lock) drops it when another connection
//! has committed since; maintenance on this connection drops it too.
//!
//! # Connections
//!
//! One [`SqliteStore`] is one connection. Open one for ingest and others (same path) for
//! readers: WAL lets readers run alongside the writer. Writers on several connections
//! serialize on SQLite's lock, waiting up to the busy timeout.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use stallwatch_proto::hdr;
use stallwatch_proto::report::Series;

use super::{
    AgentRow, BatchDelta, Cohort, CohortDelta, CohortFilter, CohortRow, Committed, DownsampleStats,
    HOUR_MS, HistogramDelta, HistoryStore, IngestItem, ItemError, MAX_REPORT_VALUE, MINUTE_MS,
    Outcome, Resolution, RetainStats, StoreError, StoredHistogram, minute_of,
};

/// Newest schema version this build writes.
const SCHEMA_VERSION: u32 = 2;

/// `MIGRATIONS[n]` takes the schema from version `n` to `n + 1`; version 0 is an empty file.
///
/// To change the schema, append the SQL that takes the current version to the next (an
/// `ALTER TABLE`, or create-copy-drop-rename for what `ALTER` cannot do) and bump
/// [`SCHEMA_VERSION`]. [`migrate`] runs the missing steps and records the new version in the
/// same transaction, so a crash mid-migration leaves the old version intact; a file newer
/// than the build is refused rather than misread.
const MIGRATIONS: &[&str] = &[
    // 0 -> 1
    "CREATE TABLE schema_version (version INTEGER NOT NULL);
     CREATE TABLE agents (
         name TEXT NOT NULL PRIMARY KEY,
         region TEXT NOT NULL,
         network_type TEXT NOT NULL,
         version TEXT NOT NULL,
         plan_revision INTEGER NOT NULL,
         first_seen_unix_ms INTEGER NOT NULL,
         last_report_unix_ms INTEGER NOT NULL,
         last_seq INTEGER NOT NULL,
         spool_depth INTEGER NOT NULL,
         reports INTEGER NOT NULL
     ) WITHOUT ROWID;
     CREATE TABLE ingest_ledger (
         agent TEXT NOT NULL,
         seq INTEGER NOT NULL,
         received_unix_ms INTEGER NOT NULL,
         PRIMARY KEY (agent, seq)
     ) WITHOUT ROWID;
     CREATE INDEX ingest_ledger_by_received ON ingest_ledger (received_unix_ms);
     CREATE TABLE cohorts (
         id INTEGER PRIMARY KEY,
         region TEXT NOT NULL,
         network_type TEXT NOT NULL,
         transport TEXT NOT NULL,
         target TEXT NOT NULL,
         UNIQUE (region, network_type, transport, target)
     );
     CREATE TABLE histograms (
         resolution_ms INTEGER NOT NULL,
         start_unix_ms INTEGER NOT NULL,
         cohort INTEGER NOT NULL,
         metric TEXT NOT NULL,
         hdr BLOB NOT NULL,
         sum INTEGER NOT NULL,
         count INTEGER NOT NULL,
         UNIQUE (resolution_ms, start_unix_ms, cohort, metric)
     );
     CREATE TABLE counters (
         resolution_ms INTEGER NOT NULL,
         start_unix_ms INTEGER NOT NULL,
         cohort INTEGER NOT NULL,
         name TEXT NOT NULL,
         value INTEGER NOT NULL,
         PRIMARY KEY (resolution_ms, start_unix_ms, cohort, name)
     ) WITHOUT ROWID;",
    // 1 -> 2: the digest of each report's body (NULL for entries stored before).
    "ALTER TABLE ingest_ledger ADD COLUMN digest BLOB;",
];

/// How long a statement waits for another connection's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest value an SQLite integer holds; every stored number is in `0..=I64_MAX`.
const I64_MAX: u64 = i64::MAX as u64;

/// DEFLATE level of minute rows: 0, stored blocks (still the V2+DEFLATE format every HDR
/// reader takes). Every batch rewrites each minute row it touches, so encoding speed bounds
/// ingest: a row of 64 reports' jitter encodes in about 8 us at level 0 (stored blocks,
/// written without zlib) against 90 us at level 6 (zlib-rs), and takes 5.6 KB instead of 4 KB
/// (`ingest_store` bench, "one row"). Minute rows live for days; hour rows, kept for a year,
/// are written at the default level.
pub const ROW_DEFLATE_LEVEL: u32 = 0;

/// Default bound on the row cache, bytes of histogram counts (see the module documentation).
/// A cohort's minute with stallwatch's usual histograms takes a few hundred KiB decoded, so
/// 128 MiB holds two minutes of about 150 cohorts; past that, rows are read from the database.
pub const DEFAULT_ROW_CACHE_BYTES: usize = 128 * 1024 * 1024;

/// The row cache keeps minute rows starting within this many minutes of the minute holding the
/// batch's receive time (collector clock): the current minute, the previous one (late reports
/// keep arriving for a while) and the next one (agent clocks a little ahead). Rows further
/// off (backfill, or an agent with a wrong clock) are read from the database; keying the window
/// on the collector's clock keeps one agent with a wrong clock from pushing the window away.
const CACHED_MINUTES_AROUND: i64 = 1;

/// The SQLite history store. See the module documentation for the schema and durability.
pub struct SqliteStore {
    conn: Connection,
    /// Cohort ids by labels; cleared when a transaction that may have created ids fails.
    cohort_ids: HashMap<Cohort, i64>,
    /// Decoded recent minute rows, identical to the database's; see the module documentation.
    row_cache: RowCache,
    /// Reused row encoder and output buffer.
    encoder: hdr::Encoder,
    blob: Vec<u8>,
    /// Reused row in which a batch's contributions to one row are merged.
    scratch: MergedRow,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.conn.path()).finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`: sets WAL mode and the pragmas,
    /// creates or migrates the schema. Reopening finds everything committed before.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Corrupt(format!(
                "sqlite refused WAL mode (journal mode {mode})"
            )));
        }
        // Durability choice: see the module documentation.
        conn.pragma_update(None, "synchronous", "FULL")?;
        // Truncate the WAL back to 64 MiB after checkpoints instead of keeping its peak size.
        conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
        // 32 MiB page cache (negative: KiB).
        conn.pragma_update(None, "cache_size", -32 * 1024)?;
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        conn.set_prepared_statement_cache_capacity(64);
        migrate(&mut conn)?;
        Ok(SqliteStore {
            conn,
            cohort_ids: HashMap::new(),
            row_cache: RowCache::new(DEFAULT_ROW_CACHE_BYTES),
            encoder: hdr::Encoder::with_level(ROW_DEFLATE_LEVEL),
            blob: Vec::new(),
            scratch: MergedRow::empty(),
        })
    }

    /// Bounds the row cache to `bytes` of decoded histogram counts (0 turns it off). Default
    /// [`DEFAULT_ROW_CACHE_BYTES`].
    pub fn set_row_cache_limit(&mut self, bytes: usize) {
        self.row_cache.limit = bytes;
        self.row_cache.clear();
    }

    /// Sets `synchronous=FULL` (the default: one fsync of the WAL per commit, i.e. per
    /// group-committed batch) or `NORMAL` (fsync at checkpoints only). For measuring what FULL
    /// costs (see the module documentation); the collector itself always runs FULL.
    pub fn set_synchronous_full(&mut self, full: bool) -> Result<(), StoreError> {
        let mode = if full { "FULL" } else { "NORMAL" };
        self.conn.pragma_update(None, "synchronous", mode)?;
        Ok(())
    }

    /// Rows and bytes of histogram counts in the row cache now.
    pub fn row_cache_usage(&self) -> (usize, usize) {
        (self.row_cache.rows.len(), self.row_cache.bytes)
    }

    fn commit_inner(&mut self, batch: &[IngestItem<'_>]) -> Result<Committed, StoreError> {
        let SqliteStore { conn, cohort_ids, row_cache, encoder, blob, scratch } = self;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Under the write lock, so nothing commits between this read and our commit.
        let data_version: i64 = tx.query_row("PRAGMA data_version", [], |r| r.get(0))?;
        if row_cache.data_version != Some(data_version) {
            row_cache.clear();
        }
        let mut outcomes = Vec::with_capacity(batch.len());
        // The batch's contributions per row, so each row is read, merged and written once
        // per batch however many reports touch it.
        let mut histograms: BTreeMap<RowKey<'_>, Vec<Part<'_>>> = BTreeMap::new();
        let mut counters: BTreeMap<RowKey<'_>, u64> = BTreeMap::new();
        for item in batch {
            if let Err(e) = check_item(item) {
                outcomes.push(Outcome::Rejected(e));
                continue;
            }
            let report = &item.report.report;
            let inserted = tx
                .prepare_cached(
                    "INSERT INTO ingest_ledger (agent, seq, received_unix_ms, digest)
                     VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
                )?
                .execute(params![item.agent, report.seq, item.received_unix_ms, item.digest])?;
            if inserted == 0 {
                let stored: Option<Vec<u8>> = tx
                    .prepare_cached(
                        "SELECT digest FROM ingest_ledger WHERE agent = ?1 AND seq = ?2",
                    )?
                    .query_row(params![item.agent, report.seq], |r| r.get(0))?;
                // An entry from before digests were kept counts as the same report.
                let same = stored.is_none_or(|d| d == item.digest);
                outcomes.push(if same { Outcome::Duplicate } else { Outcome::Conflict });
                continue;
            }
            upsert_agent(&tx, item)?;
            let start = to_i64(minute_of(report.window_start_ms, report.window_end_ms))?;
            for (series, decoded) in report.series.iter().zip(&item.report.histograms) {
                let cohort = cohort_id(&tx, cohort_ids, item, series)?;
                for (name, value) in &series.counters {
                    let key = RowKey { resolution: Resolution::Minute, start, cohort, name };
                    let total = counters.entry(key).or_default();
                    *total = total.saturating_add(*value);
                }
                for (name, data) in &series.histograms {
                    // check_item made sure every histogram is decoded.
                    let Some(histogram) = decoded.get(name) else { continue };
                    let key = RowKey { resolution: Resolution::Minute, start, cohort, name };
                    histograms.entry(key).or_default().push(Part {
                        histogram,
                        sum: data.sum,
                        count: data.count,
                    });
                }
            }
            outcomes.push(Outcome::Stored);
        }
        let mut merged = Vec::with_capacity(histograms.len());
        let mut delta = DeltaBuilder::default();
        for (key, parts) in &histograms {
            let mut row = match row_cache.take(key) {
                Some(row) => row,
                None => load_histogram(&tx, key)?,
            };
            // The batch's parts merged first, then into the row: the merged parts are also
            // what the batch added (the delta), and the row is walked once.
            let added = &mut *scratch;
            added.clear();
            for part in parts {
                added.add(key.name, part.histogram, part.sum, part.count, row.total)?;
            }
            row.add_row(added);
            store_histogram(&tx, key, &row, encoder, blob)?;
            merged.push((key, row));
            delta.histogram(key, added)?;
        }
        for (key, value) in &counters {
            add_counter(&tx, key, *value)?;
            delta.counter(key, *value);
        }
        tx.commit()?;
        // Committed: the merged rows are now what the database holds.
        row_cache.data_version = Some(data_version);
        let received = batch.iter().map(|item| item.received_unix_ms).max().unwrap_or(0);
        row_cache.set_now(clamp_i64(received));
        for (key, row) in merged {
            row_cache.insert(key, row);
        }
        Ok(Committed { outcomes, delta: delta.finish(cohort_ids) })
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

#[cfg(test)]
impl SqliteStore {
    /// The connection, for tests that tamper with rows.
    pub(super) fn conn_for_tests(&self) -> &Connection {
        &self.conn
    }
}

impl HistoryStore for SqliteStore {
    fn commit(&mut self, batch: &[IngestItem<'_>]) -> Result<Committed, StoreError> {
        if batch.is_empty() {
            return Ok(Committed { outcomes: Vec::new(), delta: BatchDelta::default() });
        }
        let result = self.commit_inner(batch);
        if result.is_err() {
            // The transaction rolled back, taking any cohorts it created with it; rows taken
            // from the cache were merged with contributions that are not stored.
            self.cohort_ids.clear();
            self.row_cache.clear();
        }
        result
    }

    fn is_duplicate(&self, agent: &str, seq: u64) -> Result<bool, StoreError> {
        let Ok(seq) = i64::try_from(seq) else { return Ok(false) };
        Ok(self
            .conn
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM ingest_ledger WHERE agent = ?1 AND seq = ?2)",
            )?
            .query_row(params![agent, seq], |r| r.get(0))?)
    }

    fn rows(
        &self,
        resolution: Resolution,
        range: Range<u64>,
        filter: &CohortFilter,
    ) -> Result<Vec<CohortRow>, StoreError> {
        if range.start >= range.end {
            return Ok(Vec::new());
        }
        let resolution_ms = to_i64(resolution.millis())?;
        let (start, end) = (clamp_i64(range.start), clamp_i64(range.end));
        let filter_args = [&filter.region, &filter.network_type, &filter.transport, &filter.target];
        const COHORT_FILTER: &str =
            "(?4 IS NULL OR c.region = ?4) AND (?5 IS NULL OR c.network_type = ?5)
             AND (?6 IS NULL OR c.transport = ?6) AND (?7 IS NULL OR c.target = ?7)";
        let mut out: BTreeMap<(u64, Cohort), CohortRow> = BTreeMap::new();

        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT h.start_unix_ms, c.region, c.network_type, c.transport, c.target,
                    h.metric, h.hdr, h.sum, h.count
             FROM histograms h JOIN cohorts c ON c.id = h.cohort
             WHERE h.resolution_ms = ?1 AND h.start_unix_ms >= ?2 AND h.start_unix_ms < ?3
               AND {COHORT_FILTER}"
        ))?;
        let mut rows = stmt.query(params![
            resolution_ms,
            start,
            end,
            filter_args[0],
            filter_args[1],
            filter_args[2],
            filter_args[3]
        ])?;
        while let Some(r) = rows.next()? {
            let row = row_entry(&mut out, resolution, r.get(0)?, cohort_from(r)?);
            let histogram = StoredHistogram { hdr: r.get(6)?, sum: r.get(7)?, count: r.get(8)? };
            row.histograms.insert(r.get(5)?, histogram);
        }
        drop(rows);

        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT h.start_unix_ms, c.region, c.network_type, c.transport, c.target,
                    h.name, h.value
             FROM counters h JOIN cohorts c ON c.id = h.cohort
             WHERE h.resolution_ms = ?1 AND h.start_unix_ms >= ?2 AND h.start_unix_ms < ?3
               AND {COHORT_FILTER}"
        ))?;
        let mut rows = stmt.query(params![
            resolution_ms,
            start,
            end,
            filter_args[0],
            filter_args[1],
            filter_args[2],
            filter_args[3]
        ])?;
        while let Some(r) = rows.next()? {
            let row = row_entry(&mut out, resolution, r.get(0)?, cohort_from(r)?);
            row.counters.insert(r.get(5)?, r.get(6)?);
        }
        drop(rows);
        Ok(out.into_values().collect())
    }

    fn agents(&self) -> Result<Vec<AgentRow>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT name, region, network_type, version, plan_revision, first_seen_unix_ms,
                    last_report_unix_ms, last_seq, spool_depth, reports
             FROM agents ORDER BY name",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(AgentRow {
                name: r.get(0)?,
                region: r.get(1)?,
                network_type: r.get(2)?,
                version: r.get(3)?,
                plan_revision: r.get(4)?,
                first_seen_unix_ms: r.get(5)?,
                last_report_unix_ms: r.get(6)?,
                last_seq: r.get(7)?,
                spool_depth: r.get(8)?,
                reports: r.get(9)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn downsample(&mut self, older_than_unix_ms: u64) -> Result<DownsampleStats, StoreError> {
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

    fn retain(
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

    fn prune_ledger(&mut self, received_before_unix_ms: u64) -> Result<u64, StoreError> {
        let deleted = self.conn.execute(
            "DELETE FROM ingest_ledger WHERE received_unix_ms < ?1",
            [clamp_i64(received_before_unix_ms)],
        )?;
        Ok(deleted as u64)
    }
}

/// Creates or migrates the schema (see [`MIGRATIONS`]).
fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let has_version_table: bool = tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version')",
        [],
        |r| r.get(0),
    )?;
    let found: u32 = if has_version_table {
        tx.query_row("SELECT version FROM schema_version", [], |r| r.get(0))?
    } else {
        0
    };
    if found > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew { found, supported: SCHEMA_VERSION });
    }
    if found < SCHEMA_VERSION {
        for step in &MIGRATIONS[found as usize..] {
            tx.execute_batch(step)?;
        }
        tx.execute("DELETE FROM schema_version", [])?;
        tx.execute("INSERT INTO schema_version (version) VALUES (?1)", [SCHEMA_VERSION])?;
        tracing::info!(from = found, to = SCHEMA_VERSION, "history store schema migrated");
    }
    tx.commit()?;
    Ok(())
}

/// A row of `histograms` or `counters`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct RowKey<'a> {
    resolution: Resolution,
    start: i64,
    cohort: i64,
    /// Metric or counter name.
    name: &'a str,
}

/// One report's histogram on its way into a row.
struct Part<'a> {
    histogram: &'a hdr::SparseHistogram,
    sum: u64,
    count: u64,
}

/// Decoded minute rows of the current minutes, keyed by `(start, cohort, metric)`; holds exactly
/// what the database holds as of `data_version` (see the module documentation).
struct RowCache {
    /// `PRAGMA data_version` in the transaction that last updated the cache; `None` when empty.
    data_version: Option<i64>,
    rows: HashMap<(i64, i64, String), MergedRow>,
    /// Bytes of counts held (each row's `distinct_values() * 8`).
    bytes: usize,
    limit: usize,
    /// Minute starts (unix ms) the cache keeps, see [`CACHED_MINUTES_AROUND`].
    window: Range<i64>,
}

impl RowCache {
    fn new(limit: usize) -> Self {
        RowCache { data_version: None, rows: HashMap::new(), bytes: 0, limit, window: 0..0 }
    }

    fn clear(&mut self) {
        self.data_version = None;
        self.rows.clear();
        self.bytes = 0;
    }

    fn take(&mut self, key: &RowKey<'_>) -> Option<MergedRow> {
        if key.resolution != Resolution::Minute || self.rows.is_empty() {
            return None;
        }
        let row = self.rows.remove(&(key.start, key.cohort, key.name.to_owned()))?;
        self.bytes -= row.bytes();
        Some(row)
    }

    /// Moves the window to the minutes around `now_unix_ms` (collector clock) and drops rows
    /// outside it.
    fn set_now(&mut self, now_unix_ms: i64) {
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
                freed += row.bytes();
            }
            keep
        });
        self.bytes -= freed;
    }

    /// Caches a committed minute row if it is in the window and fits.
    fn insert(&mut self, key: &RowKey<'_>, row: MergedRow) {
        if key.resolution != Resolution::Minute
            || !self.window.contains(&key.start)
            || self.bytes + row.bytes() > self.limit
        {
            return;
        }
        self.bytes += row.bytes();
        self.rows.insert((key.start, key.cohort, key.name.to_owned()), row);
    }
}

/// A histogram row being merged: the counts array of a stallwatch-layout histogram
/// ([`hdr::new_histogram`]), only as long as its largest value needs, with its total count
/// and exact sum and count. Plain counts rather than an `hdrhistogram::Histogram`, so a
/// report's non-zero buckets are added by index, and the row encodes to the same bytes
/// ([`hdr::Encoder::encode_counts_into`]).
struct MergedRow {
    counts: Vec<u64>,
    /// Sum of `counts` (saturating).
    total: u64,
    sum: u64,
    count: u64,
}

impl MergedRow {
    /// An empty row.
    fn empty() -> Self {
        MergedRow { counts: Vec::new(), total: 0, sum: 0, count: 0 }
    }

    /// Empties the row, keeping its allocation.
    fn clear(&mut self) {
        self.counts.clear();
        (self.total, self.sum, self.count) = (0, 0, 0);
    }

    /// Heap bytes of the counts array.
    fn bytes(&self) -> usize {
        self.counts.capacity() * std::mem::size_of::<u64>()
    }

    /// Adds one contribution, on its way into a row that holds `base` counts already (0 when
    /// this is the row). A contribution that would push the row past `i64::MAX` recorded
    /// values (only reachable by an agent sending absurd counts many times over) is left out
    /// whole, histogram, sum and count alike, so the row stays self-consistent.
    ///
    /// Each non-zero bucket is added at the slot of its lowest value, which is what
    /// `Histogram::add` does for any layout (directly by index when the layouts match, by
    /// value otherwise), so the row holds the same counts.
    fn add(
        &mut self,
        metric: &str,
        histogram: &hdr::SparseHistogram,
        sum: u64,
        count: u64,
        base: u64,
    ) -> Result<(), StoreError> {
        let total = base.checked_add(self.total).and_then(|t| t.checked_add(histogram.len()));
        if total.is_none_or(|total| total > I64_MAX) {
            tracing::warn!(
                metric,
                "histogram row would exceed i64::MAX counts; contribution skipped"
            );
            return Ok(());
        }
        self.add_buckets(metric, histogram)?;
        self.sum = saturate(self.sum, sum);
        self.count = saturate(self.count, count);
        Ok(())
    }

    /// Adds another row (one whose contributions [`MergedRow::add`] checked against this
    /// one's total, so the sum stays within `i64::MAX`).
    fn add_row(&mut self, other: &MergedRow) {
        if self.counts.len() < other.counts.len() {
            self.counts.reserve_exact(other.counts.len() - self.counts.len());
            self.counts.resize(other.counts.len(), 0);
        }
        for (slot, &n) in self.counts.iter_mut().zip(&other.counts) {
            *slot = slot.saturating_add(n);
        }
        self.total = self.total.saturating_add(other.total);
        self.sum = saturate(self.sum, other.sum);
        self.count = saturate(self.count, other.count);
    }

    /// Adds a histogram's counts to the row's.
    fn add_buckets(
        &mut self,
        metric: &str,
        histogram: &hdr::SparseHistogram,
    ) -> Result<(), StoreError> {
        let out_of_range = || {
            StoreError::Merge(format!(
                "histogram {metric:?} holds {}, above the trackable {}",
                histogram.max(),
                hdr::HIGHEST_STORABLE_US
            ))
        };
        if histogram.is_stallwatch_layout() {
            let Some(top) = histogram.last_index() else { return Ok(()) };
            let top = usize::try_from(top)
                .ok()
                .filter(|&t| t < hdr::STALLWATCH_SLOTS)
                .ok_or_else(out_of_range)?;
            if self.counts.len() <= top {
                self.counts.reserve_exact(top + 1 - self.counts.len());
                self.counts.resize(top + 1, 0);
            }
            let counts = &mut self.counts[..=top];
            histogram.raw_buckets().for_each(|(index, n)| {
                // In range: indexes ascend to `top`.
                if let Some(slot) = counts.get_mut(index as usize) {
                    *slot = slot.saturating_add(n);
                }
            });
        } else {
            let top = hdr::stallwatch_index(histogram.max()).ok_or_else(out_of_range)?;
            if self.counts.len() <= top {
                self.counts.reserve_exact(top + 1 - self.counts.len());
                self.counts.resize(top + 1, 0);
            }
            for bucket in histogram.iter() {
                let index = hdr::stallwatch_index(bucket.value).ok_or_else(out_of_range)?;
                if let Some(slot) = self.counts.get_mut(index) {
                    *slot = slot.saturating_add(bucket.count);
                }
            }
        }
        self.total = self.total.saturating_add(histogram.len());
        Ok(())
    }
}

/// Collects what a batch adds, per cohort id, for [`BatchDelta`].
#[derive(Default)]
struct DeltaBuilder {
    cohorts: BTreeMap<i64, Added>,
}

/// What a batch added to one cohort so far.
#[derive(Default)]
struct Added {
    histograms: Vec<(String, HistogramDelta)>,
    counters: Vec<(String, u64)>,
}

impl DeltaBuilder {
    fn histogram(&mut self, key: &RowKey<'_>, added: &MergedRow) -> Result<(), StoreError> {
        let histogram =
            hdr::SparseHistogram::from_stallwatch_counts(&added.counts).ok_or_else(|| {
                StoreError::Merge(format!("{:?} is beyond stallwatch's range", key.name))
            })?;
        let delta = HistogramDelta { histogram, sum: added.sum, count: added.count };
        self.cohorts.entry(key.cohort).or_default().histograms.push((key.name.to_owned(), delta));
        Ok(())
    }

    fn counter(&mut self, key: &RowKey<'_>, value: u64) {
        self.cohorts.entry(key.cohort).or_default().counters.push((key.name.to_owned(), value));
    }

    /// Names each cohort id by its labels (every id of the batch is in `ids`: ids are cached
    /// as they are looked up or created).
    fn finish(self, ids: &HashMap<Cohort, i64>) -> BatchDelta {
        let labels: HashMap<i64, &Cohort> = ids.iter().map(|(cohort, &id)| (id, cohort)).collect();
        let cohorts = self
            .cohorts
            .into_iter()
            .filter_map(|(id, Added { histograms, counters })| {
                let cohort = (*labels.get(&id)?).clone();
                Some(CohortDelta { cohort, histograms, counters })
            })
            .collect();
        BatchDelta { cohorts }
    }
}

/// Reads a histogram row, or an empty one when absent.
fn load_histogram(tx: &Transaction<'_>, key: &RowKey<'_>) -> Result<MergedRow, StoreError> {
    let existing: Option<(Vec<u8>, u64, u64)> = tx
        .prepare_cached(
            "SELECT hdr, sum, count FROM histograms
             WHERE resolution_ms = ?1 AND start_unix_ms = ?2 AND cohort = ?3 AND metric = ?4",
        )?
        .query_row(
            params![to_i64(key.resolution.millis())?, key.start, key.cohort, key.name],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let Some((bytes, sum, count)) = existing else { return Ok(MergedRow::empty()) };
    let stored = decode_stored_sparse(&bytes, key)?;
    let mut row = MergedRow { sum, count, ..MergedRow::empty() };
    row.add_buckets(key.name, &stored)?;
    Ok(row)
}

fn store_histogram(
    tx: &Transaction<'_>,
    key: &RowKey<'_>,
    row: &MergedRow,
    encoder: &mut hdr::Encoder,
    bytes: &mut Vec<u8>,
) -> Result<(), StoreError> {
    encoder.encode_counts_into(&row.counts, bytes)?;
    tx.prepare_cached(
        "INSERT INTO histograms (resolution_ms, start_unix_ms, cohort, metric, hdr, sum, count)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (resolution_ms, start_unix_ms, cohort, metric)
         DO UPDATE SET hdr = excluded.hdr, sum = excluded.sum, count = excluded.count",
    )?
    .execute(params![
        to_i64(key.resolution.millis())?,
        key.start,
        key.cohort,
        key.name,
        &bytes[..],
        row.sum,
        row.count
    ])?;
    Ok(())
}

/// Adds `value` to a counter row, saturating at `i64::MAX` (plain `+` would turn an
/// overflowing SQLite integer into a float).
fn add_counter(tx: &Transaction<'_>, key: &RowKey<'_>, value: u64) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO counters (resolution_ms, start_unix_ms, cohort, name, value)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (resolution_ms, start_unix_ms, cohort, name) DO UPDATE SET value =
             CASE WHEN value > 9223372036854775807 - excluded.value THEN 9223372036854775807
                  ELSE value + excluded.value END",
    )?
    .execute(params![
        to_i64(key.resolution.millis())?,
        key.start,
        key.cohort,
        key.name,
        value.min(I64_MAX)
    ])?;
    Ok(())
}

/// Upserts the agent registry: the latest report received wins (a restarted agent whose
/// sequence numbers started over shows its new ones).
fn upsert_agent(tx: &Transaction<'_>, item: &IngestItem<'_>) -> Result<(), StoreError> {
    let report = &item.report.report;
    tx.prepare_cached(
        "INSERT INTO agents (name, region, network_type, version, plan_revision,
                             first_seen_unix_ms, last_report_unix_ms, last_seq, spool_depth,
                             reports)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7, ?8, 1)
         ON CONFLICT (name) DO UPDATE SET
             region = CASE WHEN excluded.last_report_unix_ms >= last_report_unix_ms
                           THEN excluded.region ELSE region END,
             network_type = CASE WHEN excluded.last_report_unix_ms >= last_report_unix_ms
                                 THEN excluded.network_type ELSE network_type END,
             version = CASE WHEN excluded.last_report_unix_ms >= last_report_unix_ms
                            THEN excluded.version ELSE version END,
             plan_revision = CASE WHEN excluded.last_report_unix_ms >= last_report_unix_ms
                                  THEN excluded.plan_revision ELSE plan_revision END,
             last_seq = CASE WHEN excluded.last_report_unix_ms >= last_report_unix_ms
                             THEN excluded.last_seq ELSE last_seq END,
             spool_depth = CASE WHEN excluded.last_report_unix_ms >= last_report_unix_ms
                                THEN excluded.spool_depth ELSE spool_depth END,
             first_seen_unix_ms = min(first_seen_unix_ms, excluded.first_seen_unix_ms),
             last_report_unix_ms = max(last_report_unix_ms, excluded.last_report_unix_ms),
             reports = reports + 1",
    )?
    .execute(params![
        item.agent,
        item.region,
        item.network_type,
        report.agent_version,
        report.plan_revision,
        item.received_unix_ms,
        report.seq,
        report.spool_depth
    ])?;
    Ok(())
}

/// The id of the series' cohort, creating it if new.
fn cohort_id(
    tx: &Transaction<'_>,
    cache: &mut HashMap<Cohort, i64>,
    item: &IngestItem<'_>,
    series: &Series,
) -> Result<i64, StoreError> {
    let label = |name: &str| series.labels.get(name).map_or("", String::as_str);
    let cohort = Cohort {
        region: item.region.to_owned(),
        network_type: item.network_type.to_owned(),
        transport: label("transport").to_owned(),
        target: label("target").to_owned(),
    };
    if let Some(id) = cache.get(&cohort) {
        return Ok(*id);
    }
    let args = params![cohort.region, cohort.network_type, cohort.transport, cohort.target];
    tx.prepare_cached(
        "INSERT INTO cohorts (region, network_type, transport, target) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT DO NOTHING",
    )?
    .execute(args)?;
    let id = tx
        .prepare_cached(
            "SELECT id FROM cohorts
             WHERE region = ?1 AND network_type = ?2 AND transport = ?3 AND target = ?4",
        )?
        .query_row(args, |r| r.get(0))?;
    cache.insert(cohort, id);
    Ok(id)
}

fn row_entry(
    rows: &mut BTreeMap<(u64, Cohort), CohortRow>,
    resolution: Resolution,
    start_unix_ms: u64,
    cohort: Cohort,
) -> &mut CohortRow {
    rows.entry((start_unix_ms, cohort.clone())).or_insert_with(|| CohortRow {
        start_unix_ms,
        resolution,
        cohort,
        histograms: BTreeMap::new(),
        counters: BTreeMap::new(),
    })
}

fn cohort_from(r: &rusqlite::Row<'_>) -> rusqlite::Result<Cohort> {
    Ok(Cohort {
        region: r.get(1)?,
        network_type: r.get(2)?,
        transport: r.get(3)?,
        target: r.get(4)?,
    })
}

fn decode_stored_sparse(
    bytes: &[u8],
    key: &RowKey<'_>,
) -> Result<hdr::SparseHistogram, StoreError> {
    hdr::decode_sparse(bytes, &super::STORED_HDR_LIMITS).map_err(|source| {
        StoreError::CorruptHistogram {
            what: format!(
                "{:?} {} cohort {} {:?}",
                key.resolution, key.start, key.cohort, key.name
            ),
            source,
        }
    })
}

/// Checks that the store can hold a report exactly; see [`ItemError`].
fn check_item(item: &IngestItem<'_>) -> Result<(), ItemError> {
    let report = &item.report.report;
    let at_most = |what: &dyn Fn() -> String, value: u64, max: u64| {
        if value > max {
            return Err(ItemError::ValueTooLarge { what: what(), value, max });
        }
        Ok(())
    };
    at_most(&|| "seq".into(), report.seq, I64_MAX)?;
    at_most(&|| "window_start_ms".into(), report.window_start_ms, I64_MAX)?;
    at_most(&|| "window_end_ms".into(), report.window_end_ms, I64_MAX)?;
    at_most(&|| "plan_revision".into(), report.plan_revision, I64_MAX)?;
    at_most(&|| "spool_depth".into(), report.spool_depth, I64_MAX)?;
    at_most(&|| "received_unix_ms".into(), item.received_unix_ms, I64_MAX)?;
    if item.report.histograms.len() != report.series.len() {
        return Err(ItemError::Inconsistent);
    }
    for (i, (series, decoded)) in report.series.iter().zip(&item.report.histograms).enumerate() {
        for (name, value) in &series.counters {
            at_most(&|| format!("series {i} counter {name:?}"), *value, MAX_REPORT_VALUE)?;
        }
        if decoded.len() != series.histograms.len() {
            return Err(ItemError::Inconsistent);
        }
        for (name, data) in &series.histograms {
            let histogram = decoded.get(name).ok_or(ItemError::Inconsistent)?;
            at_most(&|| format!("series {i} histogram {name:?} sum"), data.sum, MAX_REPORT_VALUE)?;
            at_most(
                &|| format!("series {i} histogram {name:?} count"),
                data.count,
                MAX_REPORT_VALUE,
            )?;
            if histogram.len() != data.count {
                return Err(ItemError::Inconsistent);
            }
            if histogram.max() > highest_storable() {
                return Err(ItemError::HistogramRange {
                    series: i,
                    name: name.clone(),
                    max_value: histogram.max(),
                    limit: highest_storable(),
                });
            }
        }
    }
    Ok(())
}

/// The largest value a stallwatch-layout histogram ([`hdr::new_histogram`]) records: its
/// counts array reaches somewhat past the configured highest trackable value.
fn highest_storable() -> u64 {
    static TOP: OnceLock<u64> = OnceLock::new();
    *TOP.get_or_init(|| {
        let mut probe = hdr::new_histogram();
        let (mut fits, mut too_big) = (probe.high(), u64::MAX);
        while too_big - fits > 1 {
            let mid = fits + (too_big - fits) / 2;
            if probe.record(mid).is_ok() {
                fits = mid;
            } else {
                too_big = mid;
            }
            probe.reset();
        }
        fits
    })
}

fn saturate(a: u64, b: u64) -> u64 {
    a.saturating_add(b).min(I64_MAX)
}

fn to_i64(value: u64) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::Corrupt(format!("{value} exceeds i64::MAX")))
}

/// For range bounds: anything past `i64::MAX` means "to the end".
fn clamp_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
