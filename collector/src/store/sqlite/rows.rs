//! Histogram and counter rows: reading one for a merge, writing one back, reads by range and
//! cohort, and replaying history as deltas.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use stallwatch_proto::hdr;

use super::ingest::read_agents;
use super::{clamp_i64, to_i64};
use crate::store::{
    Cohort, CohortFilter, CohortRow, Delta, HistogramCounts, I64_MAX, Origin, ReplayStats,
    Resolution, STORED_HDR_LIMITS, StoreError, StoredHistogram,
};

/// A row of `histograms` or `counters`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct RowKey<'a> {
    pub(super) resolution: Resolution,
    pub(super) start: i64,
    pub(super) cohort: i64,
    /// Metric or counter name.
    pub(super) name: &'a str,
}

/// Reads a histogram row, or an empty one when absent.
pub(super) fn load_histogram(
    tx: &Transaction<'_>,
    key: &RowKey<'_>,
) -> Result<HistogramCounts, StoreError> {
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
    let Some((bytes, sum, count)) = existing else { return Ok(HistogramCounts::default()) };
    let stored = decode_stored_sparse(&bytes, key)?;
    HistogramCounts::stored(key.name, &stored, sum, count)
}

pub(super) fn store_histogram(
    tx: &Transaction<'_>,
    key: &RowKey<'_>,
    row: &HistogramCounts,
    encoder: &mut hdr::Encoder,
    bytes: &mut Vec<u8>,
) -> Result<(), StoreError> {
    encoder.encode_counts_into(row.counts(), bytes)?;
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
        row.sum(),
        row.count()
    ])?;
    Ok(())
}

/// Adds `value` to a counter row, saturating at `i64::MAX` (plain `+` would turn an
/// overflowing SQLite integer into a float).
pub(super) fn add_counter(
    tx: &Transaction<'_>,
    key: &RowKey<'_>,
    value: u64,
) -> Result<(), StoreError> {
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

pub(super) fn read(
    conn: &Connection,
    resolution: Resolution,
    range: Range<u64>,
    filter: &CohortFilter,
) -> Result<Vec<CohortRow>, StoreError> {
    if range.start >= range.end {
        return Ok(Vec::new());
    }
    let resolution_ms = to_i64(resolution.millis())?;
    let (start, end) = (clamp_i64(range.start), clamp_i64(range.end));
    let args = params![
        resolution_ms,
        start,
        end,
        filter.region,
        filter.network_type,
        filter.transport,
        filter.target,
        filter.repair
    ];
    let query = |table: &str, columns: &str| {
        format!(
            "SELECT h.start_unix_ms, c.region, c.network_type, c.transport, c.target, c.repair,
                    {columns}
             FROM {table} h JOIN cohorts c ON c.id = h.cohort
             WHERE h.resolution_ms = ?1 AND h.start_unix_ms >= ?2 AND h.start_unix_ms < ?3
               AND (?4 IS NULL OR c.region = ?4) AND (?5 IS NULL OR c.network_type = ?5)
               AND (?6 IS NULL OR c.transport = ?6) AND (?7 IS NULL OR c.target = ?7)
               AND (?8 IS NULL OR c.repair = ?8)"
        )
    };
    let mut out: BTreeMap<(u64, Cohort), CohortRow> = BTreeMap::new();
    let mut stmt = conn.prepare_cached(&query("histograms", "h.metric, h.hdr, h.sum, h.count"))?;
    let mut rows = stmt.query(args)?;
    while let Some(r) = rows.next()? {
        let row = row_entry(&mut out, resolution, r.get(0)?, cohort_from(r)?);
        let histogram = StoredHistogram { hdr: r.get(7)?, sum: r.get(8)?, count: r.get(9)? };
        row.histograms.insert(r.get(6)?, histogram);
    }
    drop(rows);
    let mut stmt = conn.prepare_cached(&query("counters", "h.name, h.value"))?;
    let mut rows = stmt.query(args)?;
    while let Some(r) = rows.next()? {
        let row = row_entry(&mut out, resolution, r.get(0)?, cohort_from(r)?);
        row.counters.insert(r.get(6)?, r.get(7)?);
    }
    drop(rows);
    Ok(out.into_values().collect())
}

/// See [`HistoryStore::replay`](crate::store::HistoryStore::replay). A cohort's histogram rows
/// are decoded one at a time and merged per metric; a minute or hour of a cohort with a corrupt
/// histogram is left out whole (histograms and counters), logged, as the rest of history still
/// counts.
pub(super) fn replay(
    conn: &Connection,
    since_unix_ms: u64,
    visit: &mut dyn FnMut(Delta),
) -> Result<ReplayStats, StoreError> {
    let since = clamp_i64(since_unix_ms);
    let mut stats = ReplayStats::default();
    let cohorts: Vec<(i64, Cohort)> = conn
        .prepare_cached(
            "SELECT id, region, network_type, transport, target, repair FROM cohorts ORDER BY id",
        )?
        .query_map([], |r| Ok((r.get(0)?, cohort_from(r)?)))?
        .collect::<Result<_, _>>()?;
    for (id, cohort) in cohorts {
        // Metric -> merged histogram; rows of a (resolution, start) are decoded together so a
        // corrupt one drops its whole row group.
        let mut histograms: BTreeMap<String, HistogramCounts> = BTreeMap::new();
        let mut skipped: BTreeSet<(i64, i64)> = BTreeSet::new();
        let mut rows = 0u64;
        {
            let mut stmt = conn.prepare_cached(
                "SELECT resolution_ms, start_unix_ms, metric, hdr, sum, count FROM histograms
                 WHERE cohort = ?1 AND start_unix_ms >= ?2 ORDER BY resolution_ms, start_unix_ms",
            )?;
            let mut found = stmt.query(params![id, since])?;
            let mut group: Vec<(String, hdr::SparseHistogram, u64, u64)> = Vec::new();
            let mut group_key = None;
            let flush = |group: &mut Vec<(String, hdr::SparseHistogram, u64, u64)>,
                         histograms: &mut BTreeMap<String, HistogramCounts>|
             -> Result<(), StoreError> {
                for (metric, h, sum, count) in group.drain(..) {
                    let merged = histograms.entry(metric.clone()).or_default();
                    merged.add(&metric, &h, sum, count, 0)?;
                }
                Ok(())
            };
            while let Some(r) = found.next()? {
                let key: (i64, i64) = (r.get(0)?, r.get(1)?);
                if group_key != Some(key) {
                    flush(&mut group, &mut histograms)?;
                    group_key = Some(key);
                }
                rows += 1;
                if skipped.contains(&key) {
                    continue;
                }
                let metric: String = r.get(2)?;
                let bytes: Vec<u8> = r.get(3)?;
                match hdr::decode_sparse(&bytes, &STORED_HDR_LIMITS) {
                    Ok(h) => group.push((metric, h, r.get(4)?, r.get(5)?)),
                    Err(e) => {
                        tracing::error!(
                            error = %e, ?cohort, metric, start_unix_ms = key.1,
                            "skipped a corrupt history row while replaying history"
                        );
                        group.clear();
                        skipped.insert(key);
                    }
                }
            }
            flush(&mut group, &mut histograms)?;
        }
        let mut counters: BTreeMap<String, u64> = BTreeMap::new();
        {
            let mut stmt = conn.prepare_cached(
                "SELECT resolution_ms, start_unix_ms, name, value FROM counters
                 WHERE cohort = ?1 AND start_unix_ms >= ?2",
            )?;
            let mut found = stmt.query(params![id, since])?;
            while let Some(r) = found.next()? {
                rows += 1;
                if skipped.contains(&(r.get(0)?, r.get(1)?)) {
                    continue;
                }
                let total = counters.entry(r.get(2)?).or_default();
                *total = total.saturating_add(r.get(3)?);
            }
        }
        if histograms.is_empty() && counters.is_empty() {
            continue;
        }
        let mut delta = Delta::new(Origin::Restored);
        let at = delta.push_cohort(cohort, 0);
        for (name, histogram) in histograms {
            delta.push_histogram(at, &name, histogram, 0);
        }
        for (name, value) in counters {
            delta.push_counter(at, &name, value, 0);
        }
        visit(delta);
        stats.cohorts += 1;
        stats.rows += rows;
    }
    let mut delta = Delta::new(Origin::Restored);
    for facts in read_agents(conn)? {
        delta.push_agent(facts, 0);
        stats.agents += 1;
    }
    visit(delta);
    Ok(stats)
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
        repair: r.get(5)?,
    })
}

pub(super) fn decode_stored_sparse(
    bytes: &[u8],
    key: &RowKey<'_>,
) -> Result<hdr::SparseHistogram, StoreError> {
    hdr::decode_sparse(bytes, &STORED_HDR_LIMITS).map_err(|source| StoreError::CorruptHistogram {
        what: format!("{:?} {} cohort {} {:?}", key.resolution, key.start, key.cohort, key.name),
        source,
    })
}
