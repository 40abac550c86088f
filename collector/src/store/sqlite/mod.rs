//! The SQLite backend of [`HistoryStore`].
//!
//! - `schema`: tables and migrations.
//! - `ingest`: [`HistoryStore::commit`]: ledger admission, the batch [`Delta`], rows and
//!   registry written from it.
//! - `rows`: reading and writing histogram and counter rows; reads and replay.
//! - `row_cache`: the decoded recent minute rows.
//! - `maintain`: downsampling, retention, ledger pruning.
//!
//! # Durability
//!
//! WAL journal with `synchronous=FULL`: every commit fsyncs the WAL before `COMMIT` returns,
//! so an acknowledged report survives a process kill, an OS crash and a power loss alike. The
//! cost is one fsync per group-committed batch, not per report (BENCHMARKS.md measures it). A
//! kill in the middle of a commit leaves a WAL tail without a commit frame, which recovery
//! ignores (the whole batch is absent, and none of it was acknowledged). `NORMAL` (fsync only
//! at checkpoints) would survive a process kill but not an OS crash; the collector never
//! trades durability for throughput ([`SqliteStore::set_synchronous_full`] exists to measure
//! the difference).
//!
//! # Rows
//!
//! A batch's contributions are grouped by row first, so each row is read, merged and written
//! once per batch however many reports touch it. Rows are plain counts arrays of stallwatch's
//! HDR layout ([`HistogramCounts`], only up to the largest value held): a report's histogram
//! arrives as its non-zero buckets (`hdr::SparseHistogram`) and each is added at its index;
//! the batch's merged contribution to a row is the delta's histogram, which is added to the
//! row, and the row is encoded straight from the counts (`hdr::Encoder::encode_counts_into`,
//! the V2 counts `hdrhistogram` would write) with a reused encoder at DEFLATE level
//! [`ROW_DEFLATE_LEVEL`].
//!
//! # Connections
//!
//! One [`SqliteStore`] is one connection. Open one for ingest and others (same path) for
//! readers: WAL lets readers run alongside the writer. Writers on several connections
//! serialize on SQLite's lock, waiting up to the busy timeout.

mod ingest;
mod maintain;
mod row_cache;
mod rows;
mod schema;

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;
use stallwatch_proto::hdr;

pub use row_cache::DEFAULT_ROW_CACHE_BYTES;

use super::{
    AgentFacts, Cohort, CohortFilter, CohortRow, Committed, Delta, DownsampleStats, HistoryStore,
    IngestItem, Origin, ReplayStats, Resolution, RetainStats, StoreError,
};
use row_cache::RowCache;
use rows::RowKey;

/// How long a statement waits for another connection's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// DEFLATE level of minute rows: 0, stored blocks (still the V2+DEFLATE format every HDR
/// reader takes). Every batch rewrites each minute row it touches, so encoding speed bounds
/// ingest (BENCHMARKS.md, "one row"); minute rows live for days. Hour rows, kept for a year,
/// are written at the default level.
pub const ROW_DEFLATE_LEVEL: u32 = 0;

/// The SQLite history store. See the module documentation for the schema and durability.
pub struct SqliteStore {
    conn: Connection,
    /// Cohort ids by labels; cleared when a transaction that may have created ids fails.
    cohort_ids: HashMap<Cohort, i64>,
    /// Registry records of agents seen by this connection, as the database holds them;
    /// cleared with the row cache.
    agents: HashMap<String, AgentFacts>,
    /// Decoded recent minute rows, identical to the database's (`row_cache`).
    row_cache: RowCache,
    /// Reused row encoder and output buffer.
    encoder: hdr::Encoder,
    blob: Vec<u8>,
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
        schema::migrate(&mut conn)?;
        Ok(SqliteStore {
            conn,
            cohort_ids: HashMap::new(),
            agents: HashMap::new(),
            row_cache: RowCache::new(DEFAULT_ROW_CACHE_BYTES),
            encoder: hdr::Encoder::with_level(ROW_DEFLATE_LEVEL),
            blob: Vec::new(),
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

    /// Forgets what this connection cached of the database (rows, agents, cohort ids).
    fn drop_caches(&mut self) {
        self.cohort_ids.clear();
        self.agents.clear();
        self.row_cache.clear();
    }
}

#[cfg(test)]
impl SqliteStore {
    /// The connection, for tests that tamper with rows.
    pub(super) fn conn_for_tests(&self) -> &Connection {
        &self.conn
    }

    /// Creates in an empty database the schema of a build whose newest version was
    /// `version`, for migration tests to start from.
    pub(super) fn create_schema_for_tests(
        conn: &mut Connection,
        version: u32,
    ) -> Result<(), StoreError> {
        schema::create_at(conn, version)
    }
}

#[cfg(test)]
pub(super) use schema::SCHEMA_VERSION;

impl HistoryStore for SqliteStore {
    fn commit(&mut self, batch: &[IngestItem<'_>]) -> Result<Committed, StoreError> {
        if batch.is_empty() {
            return Ok(Committed { outcomes: Vec::new(), delta: Delta::new(Origin::Committed) });
        }
        let result = self.commit_inner(batch);
        if result.is_err() {
            // The transaction rolled back, taking any cohorts it created with it; rows and
            // agent records taken from the caches were merged with what is not stored.
            self.drop_caches();
        }
        result
    }

    fn replay(
        &self,
        since_unix_ms: u64,
        visit: &mut dyn FnMut(Delta),
    ) -> Result<ReplayStats, StoreError> {
        rows::replay(&self.conn, since_unix_ms, visit)
    }

    fn rows(
        &self,
        resolution: Resolution,
        range: Range<u64>,
        filter: &CohortFilter,
    ) -> Result<Vec<CohortRow>, StoreError> {
        rows::read(&self.conn, resolution, range, filter)
    }

    fn agents(&self) -> Result<Vec<AgentFacts>, StoreError> {
        ingest::read_agents(&self.conn)
    }

    fn downsample(&mut self, older_than_unix_ms: u64) -> Result<DownsampleStats, StoreError> {
        self.downsample_minutes(older_than_unix_ms)
    }

    fn retain(
        &mut self,
        minutes_before_unix_ms: u64,
        hours_before_unix_ms: u64,
    ) -> Result<RetainStats, StoreError> {
        self.retain_rows(minutes_before_unix_ms, hours_before_unix_ms)
    }

    fn prune_ledger(&mut self, received_before_unix_ms: u64) -> Result<u64, StoreError> {
        maintain::prune_ledger(&self.conn, received_before_unix_ms)
    }
}

fn to_i64(value: u64) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::Corrupt(format!("{value} exceeds i64::MAX")))
}

/// For range bounds: anything past `i64::MAX` means "to the end".
fn clamp_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
