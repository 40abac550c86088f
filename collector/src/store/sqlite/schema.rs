//! The schema and its migrations.
//!
//! ```text
//! schema_version (version)                                   one row
//! agents         (name PK, region, network_type, version, plan_revision,
//!                 first_seen_unix_ms, last_report_unix_ms, last_seq, spool_depth, reports,
//!                 last_window_end_ms)
//! ingest_ledger  ((agent, seq) PK, received_unix_ms, digest) dedup; indexed by received time
//! cohorts        (id PK, region, network_type, transport, target, repair)   unique labels
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

use rusqlite::{Connection, TransactionBehavior};

use crate::store::StoreError;

/// Newest schema version this build writes.
pub(in crate::store) const SCHEMA_VERSION: u32 = 4;

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
    // 2 -> 3: the end of each agent's newest report window (agent clock), which the exported
    // series show; rows from before start from the receive time, the closest they kept.
    "ALTER TABLE agents ADD COLUMN last_window_end_ms INTEGER NOT NULL DEFAULT 0;
     UPDATE agents SET last_window_end_ms = last_report_unix_ms;",
    // 3 -> 4: the repair mode is part of the cohort (docs/metrics.md section 18.1). Rows from
    // before carry no mode: `none` on quic-stream (it never had application repair),
    // `unknown` otherwise (agents of that time differ and one version string covers both);
    // `repair_when_unlabelled` applies the same rule to reports without the label. Ids are
    // kept, so histogram and counter rows still point at their cohort.
    "CREATE TABLE cohorts_v4 (
         id INTEGER PRIMARY KEY,
         region TEXT NOT NULL,
         network_type TEXT NOT NULL,
         transport TEXT NOT NULL,
         target TEXT NOT NULL,
         repair TEXT NOT NULL,
         UNIQUE (region, network_type, transport, target, repair)
     );
     INSERT INTO cohorts_v4 (id, region, network_type, transport, target, repair)
         SELECT id, region, network_type, transport, target,
                CASE WHEN transport = 'quic-stream' THEN 'none' ELSE 'unknown' END
         FROM cohorts;
     DROP TABLE cohorts;
     ALTER TABLE cohorts_v4 RENAME TO cohorts;",
];

/// Creates or migrates the schema (see [`MIGRATIONS`]).
pub(super) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
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

/// Creates in an empty database the schema a build whose newest version was `version`
/// created, for migration tests to start from.
#[cfg(test)]
pub(super) fn create_at(conn: &mut Connection, version: u32) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
    for step in &MIGRATIONS[..version as usize] {
        tx.execute_batch(step)?;
    }
    if version > 0 {
        tx.execute("INSERT INTO schema_version (version) VALUES (?1)", [version])?;
    }
    tx.commit()?;
    Ok(())
}
