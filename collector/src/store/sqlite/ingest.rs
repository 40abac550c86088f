//! [`HistoryStore::commit`](crate::store::HistoryStore::commit): each report admitted through
//! the ledger, the batch's [`Delta`] built, then the rows and the registry written from it, all
//! in one transaction.

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use stallwatch_proto::Repair;
use stallwatch_proto::hdr;
use stallwatch_proto::report::Series;

use super::rows::{RowKey, add_counter, load_histogram, store_histogram};
use super::{SqliteStore, clamp_i64, to_i64};
use crate::store::{
    AgentFacts, Cohort, Committed, Delta, HistogramCounts, I64_MAX, IngestItem, ItemError,
    MAX_REPORT_VALUE, Origin, Outcome, Resolution, StoreError, minute_of, repair_when_unlabelled,
};

/// One report's histogram on its way into a row.
struct Part<'a> {
    histogram: &'a hdr::SparseHistogram,
    sum: u64,
    count: u64,
}

/// A batch's counter contributions to one row: the total, and how many report series added
/// to it.
#[derive(Default)]
struct CounterPart {
    total: u64,
    series: u64,
}

impl SqliteStore {
    pub(super) fn commit_inner(
        &mut self,
        batch: &[IngestItem<'_>],
    ) -> Result<Committed, StoreError> {
        let SqliteStore { conn, cohort_ids, agents, row_cache, encoder, blob } = self;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Under the write lock, so nothing commits between this read and our commit.
        let data_version: i64 = tx.query_row("PRAGMA data_version", [], |r| r.get(0))?;
        if row_cache.data_version != Some(data_version) {
            // Another connection may have written rows and registry entries.
            row_cache.clear();
            agents.clear();
        }
        let mut delta = Delta::new(Origin::Committed);
        let mut outcomes = Vec::with_capacity(batch.len());
        // Cohort ids in the order the batch first names them, with their place in the delta.
        let mut delta_cohort: HashMap<i64, usize> = HashMap::new();
        let mut series_per_cohort: Vec<u64> = Vec::new();
        // Agents in the order the batch first names them, with the reports stored from each.
        let mut touched: Vec<(&str, u64)> = Vec::new();
        let mut touched_at: HashMap<&str, usize> = HashMap::new();
        // The batch's contributions per row, so each row is read, merged and written once
        // per batch however many reports touch it.
        let mut histograms: BTreeMap<RowKey<'_>, Vec<Part<'_>>> = BTreeMap::new();
        let mut counters: BTreeMap<RowKey<'_>, CounterPart> = BTreeMap::new();
        for item in batch {
            if let Err(e) = check_item(item) {
                outcomes.push(Outcome::Rejected(e));
                continue;
            }
            let report = &item.report.report;
            let name = item.agent.name();
            let inserted = tx
                .prepare_cached(
                    "INSERT INTO ingest_ledger (agent, seq, received_unix_ms, digest)
                     VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
                )?
                .execute(params![name, report.seq, item.received_unix_ms, item.digest])?;
            if inserted == 0 {
                let stored: Option<Vec<u8>> = tx
                    .prepare_cached(
                        "SELECT digest FROM ingest_ledger WHERE agent = ?1 AND seq = ?2",
                    )?
                    .query_row(params![name, report.seq], |r| r.get(0))?;
                // An entry from before digests were kept counts as the same report.
                let same = stored.is_none_or(|d| d == item.digest);
                outcomes.push(if same { Outcome::Duplicate } else { Outcome::Conflict });
                continue;
            }
            if !agents.contains_key(name) {
                let stored = read_agent(&tx, name)?;
                agents
                    .insert(name.to_owned(), stored.unwrap_or_else(|| AgentFacts::new(item.agent)));
            }
            if let Some(facts) = agents.get_mut(name) {
                facts.absorb(item.agent, report, item.received_unix_ms);
            }
            let next = touched.len();
            let at = *touched_at.entry(name).or_insert(next);
            if at == next {
                touched.push((name, 0));
            }
            touched[at].1 += 1;
            let start = to_i64(minute_of(report.window_start_ms, report.window_end_ms))?;
            for (series, decoded) in report.series.iter().zip(&item.report.histograms) {
                let cohort = cohort_id(&tx, cohort_ids, item, series)?;
                let next = delta_cohort.len();
                let at = *delta_cohort.entry(cohort).or_insert(next);
                if at == series_per_cohort.len() {
                    series_per_cohort.push(0);
                }
                series_per_cohort[at] += 1;
                for (name, value) in &series.counters {
                    let key = RowKey { resolution: Resolution::Minute, start, cohort, name };
                    let part = counters.entry(key).or_default();
                    part.total = part.total.saturating_add(*value);
                    part.series += 1;
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

        // The delta, cohort by cohort in first-named order; the rows are written from it.
        let labels: HashMap<i64, &Cohort> = cohort_ids.iter().map(|(c, &id)| (id, c)).collect();
        let mut order: Vec<(i64, usize)> = delta_cohort.iter().map(|(&id, &at)| (id, at)).collect();
        order.sort_unstable_by_key(|&(_, at)| at);
        for &(id, at) in &order {
            let cohort = (*labels.get(&id).ok_or_else(|| {
                StoreError::Corrupt(format!("cohort id {id} used but not known"))
            })?)
            .clone();
            delta.push_cohort(cohort, series_per_cohort[at]);
        }
        let mut merged = Vec::with_capacity(histograms.len());
        for (key, parts) in &histograms {
            let mut row = match row_cache.take(key) {
                Some(row) => row,
                None => load_histogram(&tx, key)?,
            };
            // What the batch adds to the row, checked against the row's total.
            let mut added = HistogramCounts::default();
            for part in parts {
                added.add(key.name, part.histogram, part.sum, part.count, row.total())?;
            }
            row.add_counts(&added);
            store_histogram(&tx, key, &row, encoder, blob)?;
            merged.push((key, row));
            delta.push_histogram(delta_cohort[&key.cohort], key.name, added, parts.len() as u64);
        }
        for (key, part) in &counters {
            add_counter(&tx, key, part.total)?;
            delta.push_counter(delta_cohort[&key.cohort], key.name, part.total, part.series);
        }
        for &(name, reports) in &touched {
            let facts = agents.get(name).ok_or_else(|| {
                StoreError::Corrupt(format!("agent {name:?} stored but not known"))
            })?;
            write_agent(&tx, facts)?;
            delta.push_agent(facts.clone(), reports);
        }
        tx.commit()?;
        // Committed: the merged rows are now what the database holds.
        row_cache.data_version = Some(data_version);
        let received = batch.iter().map(|item| item.received_unix_ms).max().unwrap_or(0);
        row_cache.set_now(clamp_i64(received));
        for (key, row) in merged {
            row_cache.insert(key, row);
        }
        Ok(Committed { outcomes, delta })
    }
}

const AGENT_COLUMNS: &str =
    "name, region, network_type, version, plan_revision, first_seen_unix_ms,
     last_report_unix_ms, last_seq, spool_depth, reports, last_window_end_ms";

/// The registry, ordered by name.
pub(super) fn read_agents(conn: &Connection) -> Result<Vec<AgentFacts>, StoreError> {
    let mut stmt =
        conn.prepare_cached(&format!("SELECT {AGENT_COLUMNS} FROM agents ORDER BY name"))?;
    let rows = stmt.query_map([], agent_from)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// One agent's registry record, if it has one.
fn read_agent(conn: &Connection, name: &str) -> Result<Option<AgentFacts>, StoreError> {
    let mut stmt =
        conn.prepare_cached(&format!("SELECT {AGENT_COLUMNS} FROM agents WHERE name = ?1"))?;
    Ok(stmt.query_row([name], agent_from).optional()?)
}

fn agent_from(r: &rusqlite::Row<'_>) -> rusqlite::Result<AgentFacts> {
    Ok(AgentFacts {
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
        last_window_end_ms: r.get(10)?,
    })
}

/// Writes an agent's record as [`AgentFacts::absorb`] left it.
fn write_agent(tx: &Transaction<'_>, facts: &AgentFacts) -> Result<(), StoreError> {
    tx.prepare_cached(&format!(
        "INSERT INTO agents ({AGENT_COLUMNS})
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
         ON CONFLICT (name) DO UPDATE SET
             region = excluded.region, network_type = excluded.network_type,
             version = excluded.version, plan_revision = excluded.plan_revision,
             first_seen_unix_ms = excluded.first_seen_unix_ms,
             last_report_unix_ms = excluded.last_report_unix_ms, last_seq = excluded.last_seq,
             spool_depth = excluded.spool_depth, reports = excluded.reports,
             last_window_end_ms = excluded.last_window_end_ms"
    ))?
    .execute(params![
        facts.name,
        facts.region,
        facts.network_type,
        facts.version,
        facts.plan_revision,
        facts.first_seen_unix_ms.min(I64_MAX),
        facts.last_report_unix_ms,
        facts.last_seq,
        facts.spool_depth,
        facts.reports.min(I64_MAX),
        facts.last_window_end_ms
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
    let labels = &series.labels;
    let transport = labels.transport.as_str();
    let repair = labels.repair.map_or_else(|| repair_when_unlabelled(transport), Repair::name);
    let cohort =
        Cohort::new(item.agent.region(), item.agent.network_type(), transport, &labels.target)
            .with_repair(repair);
    if let Some(id) = cache.get(&cohort) {
        return Ok(*id);
    }
    let args =
        params![cohort.region, cohort.network_type, cohort.transport, cohort.target, cohort.repair];
    tx.prepare_cached(
        "INSERT INTO cohorts (region, network_type, transport, target, repair)
         VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
    )?
    .execute(args)?;
    let id = tx
        .prepare_cached(
            "SELECT id FROM cohorts WHERE region = ?1 AND network_type = ?2 AND transport = ?3
             AND target = ?4 AND repair = ?5",
        )?
        .query_row(args, |r| r.get(0))?;
    cache.insert(cohort, id);
    Ok(id)
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
