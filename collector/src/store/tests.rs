//! History store tests: dedup, group commit, per-minute merge, downsampling, retention,
//! restarts. The kill -9 test is in `collector/tests/store.rs` (it needs a child process).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hdrhistogram::Histogram;
use stallwatch_proto::Role;
use stallwatch_proto::hdr;
use stallwatch_proto::report::{
    DecodedReport, HistogramData, REPORT_SCHEMA_VERSION, Report, Series, SeriesLabels,
    encode_report,
};

use super::*;

fn digest_of(report: &DecodedReport) -> [u8; 32] {
    report_digest(&encode_report(&report.report))
}

const T0: u64 = 1_700_000_000_000 - 1_700_000_000_000 % HOUR_MS;

/// A scratch directory for stores, removed on drop (even when the test panics).
struct StoreDir(tempfile::TempDir);

impl StoreDir {
    fn new(name: &str) -> Self {
        StoreDir(stallwatch_tests::scratch_dir(&format!("store-{name}")))
    }

    fn path(&self) -> &Path {
        self.0.path()
    }

    fn db(&self) -> PathBuf {
        self.path().join("history.sqlite")
    }
}

fn open(path: &Path) -> SqliteStore {
    SqliteStore::open(path).unwrap()
}

fn histogram(values: &[u64]) -> Histogram<u64> {
    let mut h = hdr::new_histogram();
    for v in values {
        h.record(*v).unwrap();
    }
    h
}

/// A report with one viewer series labelled `transport`/`target` and no `repair` (as from
/// an agent older than the label), the given counters and histograms, for the 10 s window
/// starting at `start_ms`.
fn report(
    agent: &str,
    seq: u64,
    start_ms: u64,
    labels: (&str, &str),
    counters: &[(&str, u64)],
    histograms: &[(&str, &[u64])],
) -> DecodedReport {
    let mut decoded = BTreeMap::new();
    let mut data = BTreeMap::new();
    for (name, values) in histograms {
        let h = histogram(values);
        let d = HistogramData::from_histogram(&h, values.iter().sum());
        decoded.insert(name.to_string(), hdr::decode_sparse(&d.hdr, &Default::default()).unwrap());
        data.insert(name.to_string(), d);
    }
    let series = Series {
        labels: SeriesLabels {
            probe: "p1".into(),
            repair: None,
            role: Role::Viewer,
            target: labels.1.into(),
            transport: labels.0.parse().unwrap(),
        },
        counters: counters.iter().map(|(n, v)| (n.to_string(), *v)).collect(),
        histograms: data,
    };
    DecodedReport {
        report: Report {
            schema_version: REPORT_SCHEMA_VERSION,
            agent: agent.to_string(),
            agent_version: "0.1.0".to_string(),
            seq,
            window_start_ms: start_ms,
            window_end_ms: start_ms + 10_000,
            plan_revision: 3,
            spool_depth: 0,
            series: vec![series],
        },
        histograms: vec![decoded],
    }
}

fn simple(agent: &str, seq: u64, start_ms: u64) -> DecodedReport {
    report(
        agent,
        seq,
        start_ms,
        ("udp", "relay-a"),
        &[("packets", 100), ("stalls", 1)],
        &[("jitter_us", &[1_000, 2_000, 30_000])],
    )
}

fn item<'a>(agent: &str, region: &str, report: &'a DecodedReport) -> IngestItem<'a> {
    let agent = crate::pki::verified::test_agent(agent, region, "4g");
    IngestItem { agent, report, received_unix_ms: T0 + 99_000, digest: digest_of(report) }
}

/// Whether `(agent, seq)` is in the ingest ledger.
fn in_ledger(store: &SqliteStore, agent: &str, seq: u64) -> rusqlite::Result<bool> {
    store.conn_for_tests().query_row(
        "SELECT EXISTS (SELECT 1 FROM ingest_ledger WHERE agent = ?1 AND seq = ?2)",
        rusqlite::params![agent, seq as i64],
        |r| r.get(0),
    )
}

/// Commits a batch; the outcomes.
fn commit(store: &mut SqliteStore, batch: &[IngestItem<'_>]) -> Result<Vec<Outcome>, StoreError> {
    Ok(store.commit(batch)?.outcomes)
}

/// Counter totals and histogram (count, sum) totals over all rows of a resolution.
fn totals(
    store: &SqliteStore,
    resolution: Resolution,
) -> (BTreeMap<String, u64>, BTreeMap<String, (u64, u64)>) {
    let mut counters = BTreeMap::new();
    let mut histograms = BTreeMap::new();
    for row in store.rows(resolution, 0..u64::MAX, &CohortFilter::default()).unwrap() {
        for (name, v) in row.counters {
            *counters.entry(name).or_default() += v;
        }
        for (name, h) in row.histograms {
            let decoded = h.decode().unwrap();
            assert_eq!(decoded.len(), h.count, "histogram count matches the count column");
            let t: &mut (u64, u64) = histograms.entry(name).or_default();
            t.0 += h.count;
            t.1 += h.sum;
        }
    }
    (counters, histograms)
}

#[test]
fn duplicate_report_is_counted_once() {
    let dir = StoreDir::new("dedup");
    let mut store = open(&dir.db());
    let r = simple("a1", 7, T0);
    assert_eq!(commit(&mut store, &[item("a1", "eu", &r)]).unwrap(), [Outcome::Stored]);
    assert!(in_ledger(&store, "a1", 7).unwrap());
    assert!(!in_ledger(&store, "a1", 8).unwrap());
    assert!(!in_ledger(&store, "a2", 7).unwrap());
    assert_eq!(commit(&mut store, &[item("a1", "eu", &r)]).unwrap(), [Outcome::Duplicate]);
    // Twice in one batch: the second is the duplicate.
    let r2 = simple("a1", 8, T0);
    assert_eq!(
        commit(&mut store, &[item("a1", "eu", &r2), item("a1", "eu", &r2)]).unwrap(),
        [Outcome::Stored, Outcome::Duplicate]
    );
    let (counters, histograms) = totals(&store, Resolution::Minute);
    assert_eq!(counters["packets"], 200);
    assert_eq!(histograms["jitter_us"], (6, 2 * 33_000));
    assert_eq!(store.agents().unwrap()[0].reports, 2);
}

/// A reused `(agent, seq)` with another body (an agent whose state was rolled back) is a
/// conflict: not stored, not counted, and the first report stays as it was.
#[test]
fn a_reused_seq_with_another_body_is_a_conflict() {
    let dir = StoreDir::new("conflict");
    let mut store = open(&dir.db());
    let first = simple("a1", 7, T0);
    let reused = simple("a1", 7, T0 + 60_000);
    assert_eq!(commit(&mut store, &[item("a1", "eu", &first)]).unwrap(), [Outcome::Stored]);
    assert_eq!(commit(&mut store, &[item("a1", "eu", &reused)]).unwrap(), [Outcome::Conflict]);
    assert_eq!(commit(&mut store, &[item("a1", "eu", &first)]).unwrap(), [Outcome::Duplicate]);
    // In one batch too; and the same seq from another agent is no conflict.
    let (a, b) = (simple("a1", 9, T0), simple("a1", 9, T0 + 60_000));
    let other = simple("a2", 7, T0);
    assert_eq!(
        commit(&mut store, &[item("a1", "eu", &a), item("a1", "eu", &b), item("a2", "eu", &other)])
            .unwrap(),
        [Outcome::Stored, Outcome::Conflict, Outcome::Stored]
    );
    let (counters, _) = totals(&store, Resolution::Minute);
    assert_eq!(counters["packets"], 300, "three reports stored, the conflicts not counted");
    let rows = store.rows(Resolution::Minute, 0..u64::MAX, &CohortFilter::default()).unwrap();
    assert!(rows.iter().all(|r| r.start_unix_ms == T0), "nothing from the conflicting windows");
}

#[test]
fn group_commit_of_100_reports_in_one_call() {
    let dir = StoreDir::new("group");
    let mut store = open(&dir.db());
    let names: Vec<String> = (0..100).map(|i| format!("agent{i:03}")).collect();
    let reports: Vec<DecodedReport> =
        names.iter().enumerate().map(|(i, n)| simple(n, i as u64, T0 + 20_000)).collect();
    let items: Vec<IngestItem<'_>> = names
        .iter()
        .zip(&reports)
        .enumerate()
        .map(|(i, (n, r))| item(n, if i % 2 == 0 { "eu" } else { "us" }, r))
        .collect();
    let outcomes = commit(&mut store, &items).unwrap();
    assert_eq!(outcomes, vec![Outcome::Stored; 100]);

    let agents = store.agents().unwrap();
    assert_eq!(agents.len(), 100);
    assert_eq!(agents[1].name, "agent001");
    assert_eq!(agents[1].region, "us");
    let rows = store.rows(Resolution::Minute, T0..T0 + HOUR_MS, &CohortFilter::default()).unwrap();
    assert_eq!(rows.len(), 2, "one row per cohort: {rows:#?}");
    let (counters, histograms) = totals(&store, Resolution::Minute);
    assert_eq!(counters["packets"], 100 * 100);
    assert_eq!(counters["stalls"], 100);
    assert_eq!(histograms["jitter_us"], (300, 100 * 33_000));
}

#[test]
fn reports_in_one_minute_merge_exactly() {
    let dir = StoreDir::new("merge");
    let mut store = open(&dir.db());
    let a: Vec<u64> = (1..=500).map(|i| i * 37).collect();
    let b: Vec<u64> = (1..=700).map(|i| 5_000 + i * i).collect();
    let r1 = report("a1", 1, T0, ("quic-datagram", "r1"), &[("packets", 10)], &[("jitter_us", &a)]);
    let r2 = report(
        "a2",
        1,
        T0 + 30_000,
        ("quic-datagram", "r1"),
        &[("packets", 20)],
        &[("jitter_us", &b)],
    );
    // Another minute, and another cohort in the same minute.
    let r3 = report(
        "a3",
        1,
        T0 + 60_000,
        ("quic-datagram", "r1"),
        &[("packets", 40)],
        &[("jitter_us", &a)],
    );
    let r4 = report("a4", 1, T0, ("udp", "r1"), &[("packets", 80)], &[("jitter_us", &b)]);
    // In two batches, so the second merges with a stored row.
    commit(&mut store, &[item("a1", "eu", &r1)]).unwrap();
    commit(&mut store, &[item("a2", "eu", &r2), item("a3", "eu", &r3), item("a4", "eu", &r4)])
        .unwrap();

    let quic = CohortFilter { transport: Some("quic-datagram".into()), ..CohortFilter::default() };
    let rows = store.rows(Resolution::Minute, T0..T0 + MINUTE_MS, &quic).unwrap();
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row.start_unix_ms, T0);
    assert_eq!(row.resolution, Resolution::Minute);
    assert_eq!(
        row.cohort,
        Cohort {
            region: "eu".into(),
            network_type: "4g".into(),
            transport: "quic-datagram".into(),
            repair: "unknown".into(),
            target: "r1".into()
        }
    );
    assert_eq!(row.counters["packets"], 30);
    let stored = &row.histograms["jitter_us"];
    assert_eq!(stored.count, 1_200);
    assert_eq!(stored.sum, a.iter().sum::<u64>() + b.iter().sum::<u64>());

    let mut in_memory = histogram(&a);
    in_memory.add(histogram(&b)).unwrap();
    let merged = stored.decode().unwrap();
    assert_eq!(merged, in_memory);
    for q in [0.0, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0] {
        assert_eq!(merged.value_at_quantile(q), in_memory.value_at_quantile(q), "q={q}");
    }

    let all = store.rows(Resolution::Minute, T0..T0 + HOUR_MS, &CohortFilter::default()).unwrap();
    let keys: Vec<(u64, &str)> =
        all.iter().map(|r| (r.start_unix_ms - T0, r.cohort.transport.as_str())).collect();
    assert_eq!(keys, [(0, "quic-datagram"), (0, "udp"), (60_000, "quic-datagram")]);
    assert!(
        store.rows(Resolution::Minute, T0 + MINUTE_MS..T0 + MINUTE_MS, &quic).unwrap().is_empty()
    );
    let us = CohortFilter { region: Some("us".into()), ..CohortFilter::default() };
    assert!(store.rows(Resolution::Minute, T0..T0 + HOUR_MS, &us).unwrap().is_empty());
}

#[test]
fn downsample_to_hours_keeps_totals_exact() {
    let dir = StoreDir::new("downsample");
    let mut store = open(&dir.db());
    let mut reports = Vec::new();
    // Three hours of minutes, two cohorts, a few histograms each.
    for m in 0..180u64 {
        let values: Vec<u64> = (1..=50).map(|i| i * (m + 1) * 13).collect();
        let target = if m % 3 == 0 { "r2" } else { "r1" };
        reports.push(report(
            "a1",
            m,
            T0 + m * MINUTE_MS,
            ("udp", target),
            &[("packets", 1_000 + m), ("stalls", m % 2)],
            &[("jitter_us", &values), ("first_frame_us", &[500_000 + m])],
        ));
    }
    let items: Vec<IngestItem<'_>> = reports.iter().map(|r| item("a1", "eu", r)).collect();
    for chunk in items.chunks(32) {
        commit(&mut store, chunk).unwrap();
    }
    let before = totals(&store, Resolution::Minute);
    let mut first_hour_r1 = hdr::new_histogram();
    for row in store.rows(Resolution::Minute, T0..T0 + HOUR_MS, &CohortFilter::default()).unwrap() {
        if row.cohort.target == "r1" {
            first_hour_r1.add(row.histograms["jitter_us"].decode().unwrap()).unwrap();
        }
    }

    // 2.5 h: only the first two whole hours fold.
    let stats = store.downsample(T0 + 2 * HOUR_MS + 30 * MINUTE_MS).unwrap();
    assert_eq!(stats.hours, 2);
    assert_eq!(stats.minute_rows, 120 * 2 + 120 * 2, "two histogram and two counter rows a minute");
    assert!(
        store
            .rows(Resolution::Minute, T0..T0 + 2 * HOUR_MS, &CohortFilter::default())
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .rows(Resolution::Minute, T0..T0 + 3 * HOUR_MS, &CohortFilter::default())
            .unwrap()
            .len(),
        60
    );
    let hours = store.rows(Resolution::Hour, 0..u64::MAX, &CohortFilter::default()).unwrap();
    assert_eq!(hours.len(), 4, "two hours x two cohorts");
    let r1 = &hours[0];
    assert_eq!((r1.start_unix_ms, r1.cohort.target.as_str()), (T0, "r1"));
    assert_eq!(r1.histograms["jitter_us"].decode().unwrap(), first_hour_r1);

    let (mut counters, mut histograms) = totals(&store, Resolution::Minute);
    let (hour_counters, hour_histograms) = totals(&store, Resolution::Hour);
    for (k, v) in hour_counters {
        *counters.entry(k).or_default() += v;
    }
    for (k, (c, s)) in hour_histograms {
        let t = histograms.entry(k).or_default();
        t.0 += c;
        t.1 += s;
    }
    assert_eq!((counters, histograms), before);

    // Nothing left to fold; a late report for a folded hour folds into the same hour row.
    assert_eq!(store.downsample(T0 + 2 * HOUR_MS).unwrap(), DownsampleStats::default());
    let late = report("a1", 1_000, T0 + 5 * MINUTE_MS, ("udp", "r1"), &[("packets", 1)], &[]);
    commit(&mut store, &[item("a1", "eu", &late)]).unwrap();
    assert_eq!(store.downsample(T0 + 2 * HOUR_MS).unwrap().hours, 1);
    let hours = store.rows(Resolution::Hour, T0..T0 + 1, &CohortFilter::default()).unwrap();
    let r1_packets: u64 = (0..60).filter(|m| m % 3 != 0).map(|m| 1_000 + m).sum();
    assert_eq!(hours[0].counters["packets"], r1_packets + 1);
}

#[test]
fn retention_deletes_old_rows_and_ledger_entries() {
    let dir = StoreDir::new("retain");
    let mut store = open(&dir.db());
    let reports: Vec<DecodedReport> = (0..4).map(|h| simple("a1", h, T0 + h * HOUR_MS)).collect();
    let items: Vec<IngestItem<'_>> = reports
        .iter()
        .enumerate()
        .map(|(h, r)| IngestItem {
            received_unix_ms: T0 + h as u64 * HOUR_MS,
            ..item("a1", "eu", r)
        })
        .collect();
    commit(&mut store, &items).unwrap();
    store.downsample(T0 + 2 * HOUR_MS).unwrap();

    // Hours 0-1 are hour rows, hours 2-3 minute rows; each is a histogram and two counters.
    let stats = store.retain(T0 + 3 * HOUR_MS, T0 + HOUR_MS).unwrap();
    assert_eq!(stats, RetainStats { minute_rows: 3, hour_rows: 3 });
    let all = CohortFilter::default();
    let hours: Vec<u64> = store
        .rows(Resolution::Hour, 0..u64::MAX, &all)
        .unwrap()
        .iter()
        .map(|r| r.start_unix_ms)
        .collect();
    assert_eq!(hours, [T0 + HOUR_MS]);
    let minutes: Vec<u64> = store
        .rows(Resolution::Minute, 0..u64::MAX, &all)
        .unwrap()
        .iter()
        .map(|r| r.start_unix_ms)
        .collect();
    assert_eq!(minutes, [T0 + 3 * HOUR_MS]);

    assert_eq!(store.prune_ledger(T0 + 2 * HOUR_MS).unwrap(), 2);
    assert!(!in_ledger(&store, "a1", 1).unwrap());
    assert!(in_ledger(&store, "a1", 2).unwrap());

    // maintain() applies a policy relative to now.
    let policy = Retention::default();
    let now = T0 + 400 * 24 * HOUR_MS + 4 * HOUR_MS;
    let stats = store.maintain(now, &policy).unwrap();
    assert_eq!(stats.downsample.hours, 1);
    assert_eq!(stats.retain.hour_rows, 2 * 3);
    assert_eq!(stats.ledger_pruned, 2);
    assert!(store.rows(Resolution::Hour, 0..u64::MAX, &all).unwrap().is_empty());
}

#[test]
fn reopening_finds_everything() {
    let dir = StoreDir::new("reopen");
    let r = simple("a1", 42, T0);
    {
        let mut store = open(&dir.db());
        commit(&mut store, &[item("a1", "eu", &r)]).unwrap();
    }
    let mut store = open(&dir.db());
    assert!(in_ledger(&store, "a1", 42).unwrap());
    assert_eq!(commit(&mut store, &[item("a1", "eu", &r)]).unwrap(), [Outcome::Duplicate]);
    let agents = store.agents().unwrap();
    assert_eq!(agents.len(), 1);
    assert_eq!(
        agents[0],
        AgentFacts {
            name: "a1".into(),
            region: "eu".into(),
            network_type: "4g".into(),
            version: "0.1.0".into(),
            plan_revision: 3,
            first_seen_unix_ms: T0 + 99_000,
            last_report_unix_ms: T0 + 99_000,
            last_seq: 42,
            spool_depth: 0,
            reports: 1,
            last_window_end_ms: T0 + 10_000,
        }
    );
    let rows =
        store.rows(Resolution::Minute, T0..T0 + MINUTE_MS, &CohortFilter::default()).unwrap();
    assert_eq!(rows[0].counters["packets"], 100);
    // A new report after the restart merges into the same row (the cohort id survived).
    let r2 = simple("a1", 43, T0);
    commit(&mut store, &[item("a1", "eu", &r2)]).unwrap();
    let rows =
        store.rows(Resolution::Minute, T0..T0 + MINUTE_MS, &CohortFilter::default()).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].counters["packets"], 200);
    assert_eq!(rows[0].histograms["jitter_us"].count, 6);
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = StoreDir::new("schema");
    drop(open(&dir.db()));
    let conn = rusqlite::Connection::open(dir.db()).unwrap();
    conn.execute("UPDATE schema_version SET version = 99", []).unwrap();
    drop(conn);
    let e = SqliteStore::open(dir.db()).unwrap_err();
    assert!(matches!(e, StoreError::SchemaTooNew { found: 99, supported: 4 }), "{e}");
    assert_eq!(e.to_string(), "database schema version 99 is newer than this build's 4");
}

/// Every table's columns (name, type, not null, default, primary key) and every index, as
/// SQLite reports them: what two files must agree on to hold the same schema.
fn schema_of(conn: &rusqlite::Connection) -> Vec<String> {
    let mut stmt = conn
        .prepare(
            "SELECT m.type || ' ' || m.name || ': ' || COALESCE(group_concat(
                 c.name || ' ' || c.type || ' ' || c.\"notnull\" || ' ' ||
                 COALESCE(c.dflt_value, '-') || ' ' || c.pk, ', '), '')
             FROM sqlite_master m LEFT JOIN pragma_table_info(m.name) c ON m.type = 'table'
             WHERE m.name NOT LIKE 'sqlite_%'
             GROUP BY m.type, m.name ORDER BY m.type, m.name",
        )
        .unwrap();
    stmt.query_map([], |r| r.get(0)).unwrap().collect::<Result<_, _>>().unwrap()
}

/// The schema a build whose newest version was `version` created (its migrations from an
/// empty file).
fn schema_at(version: u32) -> Vec<String> {
    let mut conn = rusqlite::Connection::open_in_memory().unwrap();
    SqliteStore::create_schema_for_tests(&mut conn, version).unwrap();
    schema_of(&conn)
}

fn schema_version(store: &SqliteStore) -> u32 {
    store
        .conn_for_tests()
        .query_row("SELECT version FROM schema_version", [], |r| r.get(0))
        .unwrap()
}

/// Turns the file at `path` back into what a build of schema `version` wrote, dropping the
/// columns later versions added (with their data, as that build never had it), and checks it
/// now has exactly that build's schema.
fn downgrade(path: &Path, version: u32) {
    let conn = rusqlite::Connection::open(path).unwrap();
    if version < 4 {
        conn.execute_batch(
            "CREATE TABLE cohorts_v3 (
                 id INTEGER PRIMARY KEY,
                 region TEXT NOT NULL,
                 network_type TEXT NOT NULL,
                 transport TEXT NOT NULL,
                 target TEXT NOT NULL,
                 UNIQUE (region, network_type, transport, target)
             );
             INSERT INTO cohorts_v3 SELECT id, region, network_type, transport, target FROM cohorts;
             DROP TABLE cohorts;
             ALTER TABLE cohorts_v3 RENAME TO cohorts;",
        )
        .unwrap();
    }
    if version < 3 {
        conn.execute_batch("ALTER TABLE agents DROP COLUMN last_window_end_ms;").unwrap();
    }
    if version < 2 {
        conn.execute_batch("ALTER TABLE ingest_ledger DROP COLUMN digest;").unwrap();
    }
    conn.execute("UPDATE schema_version SET version = ?1", [version]).unwrap();
    assert_eq!(schema_of(&conn), schema_at(version), "a faithful version {version} file");
}

/// `downgrade` knows every version, and each differs from the one before, so the migration
/// tests below start from what they claim.
#[test]
fn each_schema_version_differs_from_the_last() {
    assert_eq!(sqlite::SCHEMA_VERSION, 4, "teach `downgrade` the new version, test from it");
    for v in 1..=sqlite::SCHEMA_VERSION {
        assert_ne!(schema_at(v - 1), schema_at(v), "version {v}");
    }
}

/// A store written by the first release (schema 1: a ledger without digests, agents without
/// their newest window end) takes both later steps: its ledger entries, which have no digest,
/// still answer `Duplicate` as before, new entries get digests, its agents start from the
/// receive time they kept, and its rows are as they were.
#[test]
fn a_version_1_store_is_migrated_to_the_newest() {
    let dir = StoreDir::new("migrate-1");
    {
        let mut store = open(&dir.db());
        let old = simple("a1", 7, T0);
        assert_eq!(commit(&mut store, &[item("a1", "eu", &old)]).unwrap(), [Outcome::Stored]);
    }
    downgrade(&dir.db(), 1);
    let mut store = open(&dir.db());
    assert_eq!(schema_version(&store), sqlite::SCHEMA_VERSION);
    assert_eq!(schema_of(store.conn_for_tests()), schema_at(sqlite::SCHEMA_VERSION));
    let agents = store.agents().unwrap();
    assert_eq!(agents[0].last_window_end_ms, T0 + 99_000, "the receive time it kept");
    assert_eq!(agents[0].reports, 1);
    let other_body = simple("a1", 7, T0 + 60_000);
    assert_eq!(commit(&mut store, &[item("a1", "eu", &other_body)]).unwrap(), [Outcome::Duplicate]);
    let new = simple("a1", 8, T0 + 2 * MINUTE_MS);
    assert_eq!(commit(&mut store, &[item("a1", "eu", &new)]).unwrap(), [Outcome::Stored]);
    let reused = simple("a1", 8, T0 + 60_000);
    assert_eq!(commit(&mut store, &[item("a1", "eu", &reused)]).unwrap(), [Outcome::Conflict]);
    let (counters, histograms) = totals(&store, Resolution::Minute);
    assert_eq!(counters["packets"], 200, "the migrated report and the new one");
    assert_eq!(histograms["jitter_us"], (6, 2 * 33_000));
    let agents = store.agents().unwrap();
    let newest = T0 + 2 * MINUTE_MS + 10_000;
    assert_eq!((agents[0].reports, agents[0].last_window_end_ms), (2, newest), "window ends kept");
}

/// A store written by the build with ledger digests (schema 2) takes the last step: its
/// digests keep telling resends from reused numbers, its entries from before digests stay
/// duplicates, and its agents start from the receive time they kept.
#[test]
fn a_version_2_store_is_migrated_to_the_newest() {
    let dir = StoreDir::new("migrate-2");
    let (first, second) = (simple("a1", 7, T0), simple("a1", 8, T0));
    {
        let mut store = open(&dir.db());
        let batch = [item("a1", "eu", &first), item("a1", "eu", &second)];
        assert_eq!(commit(&mut store, &batch).unwrap(), [Outcome::Stored, Outcome::Stored]);
        // Seq 7 as stored before the digest column existed (migrated from version 1).
        let cleared = store
            .conn_for_tests()
            .execute("UPDATE ingest_ledger SET digest = NULL WHERE seq = 7", [])
            .unwrap();
        assert_eq!(cleared, 1);
    }
    downgrade(&dir.db(), 2);
    let mut store = open(&dir.db());
    assert_eq!(schema_version(&store), sqlite::SCHEMA_VERSION);
    assert_eq!(schema_of(store.conn_for_tests()), schema_at(sqlite::SCHEMA_VERSION));
    let agents = store.agents().unwrap();
    assert_eq!(agents[0].last_window_end_ms, T0 + 99_000, "the receive time it kept");
    assert_eq!(agents[0].reports, 2);
    assert_eq!(commit(&mut store, &[item("a1", "eu", &second)]).unwrap(), [Outcome::Duplicate]);
    let reused = simple("a1", 8, T0 + 60_000);
    assert_eq!(commit(&mut store, &[item("a1", "eu", &reused)]).unwrap(), [Outcome::Conflict]);
    let before_digests = simple("a1", 7, T0 + 60_000);
    assert_eq!(
        commit(&mut store, &[item("a1", "eu", &before_digests)]).unwrap(),
        [Outcome::Duplicate]
    );
    let (counters, _) = totals(&store, Resolution::Minute);
    assert_eq!(counters["packets"], 200, "nothing added after the migration");
}

/// A store written before the repair label (schema 3) keeps its rows under the mode the rule
/// gives unlabelled data: `none` on quic-stream, `unknown` on udp; reports that carry the
/// label start their own cohorts beside them, and unlabelled reports (an agent not yet
/// upgraded) still add to the old ones. A restart's replay gives the series the same cohorts.
#[test]
fn a_version_3_store_reads_its_cohorts_without_repair_by_the_unlabelled_rule() {
    let dir = StoreDir::new("migrate-3");
    let quic = report("a1", 1, T0, ("quic-stream", "relay-a"), &[("packets", 10)], &[]);
    let udp = report("a1", 2, T0, ("udp", "relay-a"), &[("packets", 20)], &[]);
    {
        let mut store = open(&dir.db());
        let batch = [item("a1", "eu", &quic), item("a1", "eu", &udp)];
        assert_eq!(commit(&mut store, &batch).unwrap(), [Outcome::Stored, Outcome::Stored]);
    }
    downgrade(&dir.db(), 3);
    let mut store = open(&dir.db());
    assert_eq!(schema_version(&store), sqlite::SCHEMA_VERSION);
    assert_eq!(schema_of(store.conn_for_tests()), schema_at(sqlite::SCHEMA_VERSION));
    let labelled = |seq, transport: &str, repair: Option<&str>, packets| {
        let mut r = report("a1", seq, T0, (transport, "relay-a"), &[("packets", packets)], &[]);
        if let Some(repair) = repair {
            r.report.series[0].labels.repair = Some(repair.parse().unwrap());
        }
        r
    };
    let (nack, none, unlabelled) = (
        labelled(3, "udp", Some("nack"), 300),
        labelled(4, "udp", Some("none"), 4_000),
        labelled(5, "udp", None, 50_000),
    );
    let quic_none = labelled(6, "quic-stream", Some("none"), 600_000);
    let batch = [
        item("a1", "eu", &nack),
        item("a1", "eu", &none),
        item("a1", "eu", &unlabelled),
        item("a1", "eu", &quic_none),
    ];
    assert_eq!(commit(&mut store, &batch).unwrap(), vec![Outcome::Stored; 4]);
    let packets_by_cohort = |store: &SqliteStore| -> BTreeMap<(String, String), u64> {
        let mut out = BTreeMap::new();
        store
            .replay(0, &mut |delta| {
                for cd in delta.cohorts() {
                    let c = cd.cohort();
                    for counter in cd.counters().iter().filter(|n| n.name() == "packets") {
                        *out.entry((c.transport.clone(), c.repair.clone())).or_default() +=
                            counter.value();
                    }
                }
            })
            .unwrap();
        out
    };
    let expected = BTreeMap::from([
        (("quic-stream".to_string(), "none".to_string()), 10 + 600_000),
        (("udp".to_string(), "unknown".to_string()), 20 + 50_000),
        (("udp".to_string(), "nack".to_string()), 300),
        (("udp".to_string(), "none".to_string()), 4_000),
    ]);
    assert_eq!(packets_by_cohort(&store), expected);
    drop(store);
    assert_eq!(packets_by_cohort(&open(&dir.db())), expected, "after a restart");
}

#[test]
fn agent_registry_shows_the_latest_report() {
    let dir = StoreDir::new("agents");
    let mut store = open(&dir.db());
    let mut newer = simple("a1", 9, T0);
    newer.report.agent_version = "0.2.0".into();
    newer.report.plan_revision = 5;
    newer.report.spool_depth = 12;
    let older = simple("a1", 3, T0);
    commit(&mut store, &[IngestItem { received_unix_ms: T0 + 5_000, ..item("a1", "eu", &newer) }])
        .unwrap();
    // Received earlier (a late batch): counted, but the registry keeps the newer facts.
    commit(&mut store, &[IngestItem { received_unix_ms: T0 + 1_000, ..item("a1", "us", &older) }])
        .unwrap();
    let a = &store.agents().unwrap()[0];
    assert_eq!(
        (a.region.as_str(), a.version.as_str(), a.plan_revision, a.last_seq, a.spool_depth),
        ("eu", "0.2.0", 5, 9, 12)
    );
    assert_eq!(
        (a.first_seen_unix_ms, a.last_report_unix_ms, a.reports),
        (T0 + 1_000, T0 + 5_000, 2)
    );
}

#[test]
fn values_the_store_cannot_hold_reject_only_their_report() {
    let dir = StoreDir::new("reject");
    let mut store = open(&dir.db());
    let bad = report("a1", 1, T0, ("udp", "r"), &[("packets", MAX_REPORT_VALUE + 1)], &[]);
    let mut inconsistent = simple("a1", 2, T0);
    inconsistent.histograms.clear();
    let mut far_future = simple("a1", 3, T0);
    far_future.report.window_start_ms = u64::MAX;
    let good = simple("a2", 1, T0);
    let outcomes = commit(
        &mut store,
        &[
            item("a1", "eu", &bad),
            item("a1", "eu", &inconsistent),
            item("a1", "eu", &far_future),
            item("a2", "eu", &good),
        ],
    )
    .unwrap();
    assert!(matches!(&outcomes[0], Outcome::Rejected(e) if e.reason() == "value_too_large"));
    assert_eq!(outcomes[1], Outcome::Rejected(ItemError::Inconsistent));
    assert!(matches!(&outcomes[2], Outcome::Rejected(ItemError::ValueTooLarge { .. })));
    assert_eq!(outcomes[3], Outcome::Stored);
    assert!(!in_ledger(&store, "a1", 1).unwrap());
    assert_eq!(totals(&store, Resolution::Minute).0["packets"], 100);
}

#[test]
fn counters_saturate_instead_of_wrapping() {
    let dir = StoreDir::new("saturate");
    let mut store = open(&dir.db());
    let reports: Vec<DecodedReport> = (0..3)
        .map(|s| report("a1", s, T0, ("udp", "r"), &[("bytes", MAX_REPORT_VALUE)], &[]))
        .collect();
    let items: Vec<IngestItem<'_>> = reports.iter().map(|r| item("a1", "eu", r)).collect();
    commit(&mut store, &items).unwrap();
    assert_eq!(totals(&store, Resolution::Minute).0["bytes"], 3 * MAX_REPORT_VALUE);
    // Push one row to the top directly, then add: it stays at i64::MAX.
    store.conn_for_tests().execute("UPDATE counters SET value = 9223372036854775000", []).unwrap();
    let more = report("a1", 99, T0, ("udp", "r"), &[("bytes", MAX_REPORT_VALUE)], &[]);
    commit(&mut store, &[item("a1", "eu", &more)]).unwrap();
    assert_eq!(totals(&store, Resolution::Minute).0["bytes"], i64::MAX as u64);
}

#[test]
fn a_report_belongs_to_the_minute_of_its_window_middle() {
    assert_eq!(minute_of(T0 + 50_000, T0 + 60_000), T0);
    assert_eq!(minute_of(T0 + 55_000, T0 + 65_000), T0 + MINUTE_MS);
    assert_eq!(minute_of(T0 + 59_999, T0 + 59_999), T0);
    assert_eq!(minute_of(T0 + 10, T0), T0, "an inverted window uses its start");
}

/// Reports from several agents over two cohorts and two minutes, with histograms of varied
/// shapes, so batches hit the same minute rows many times.
fn mixed_reports() -> Vec<(String, DecodedReport)> {
    let mut out = Vec::new();
    for i in 0..24u64 {
        let agent = format!("agent-{}", i % 6);
        let seq = i / 6;
        let start = T0 + (i % 8) * 10_000;
        let labels = if i % 3 == 0 { ("udp", "r1") } else { ("quic-datagram", "r1") };
        let jitter: Vec<u64> = (0..200).map(|k| 100 + (k * 7919 + i * 131) % 40_000).collect();
        let latency: Vec<u64> = (0..50).map(|k| 20_000 + k * (i + 1) * 97).collect();
        let first_frame = [300_000 + i * 10_000];
        out.push((
            agent.clone(),
            report(
                &agent,
                seq,
                start,
                labels,
                &[("packets", 1_000 + i), ("stalls", i % 2)],
                &[
                    ("jitter_us", &jitter),
                    ("latency_us", &latency),
                    ("first_frame_us", &first_frame),
                ],
            ),
        ));
    }
    out
}

fn items(reports: &[(String, DecodedReport)]) -> Vec<IngestItem<'_>> {
    reports.iter().map(|(agent, r)| item(agent, "eu", r)).collect()
}

fn all_minutes(store: &SqliteStore) -> Vec<CohortRow> {
    store.rows(Resolution::Minute, 0..u64::MAX, &CohortFilter::default()).unwrap()
}

#[test]
fn a_batch_stores_exactly_what_one_by_one_commits_store() {
    let dir = StoreDir::new("batch-vs-single");
    let reports = mixed_reports();

    // One batch, with a duplicate of an earlier report inside it.
    let mut batched = open(&dir.path().join("batched.sqlite"));
    let mut batch = items(&reports);
    batch.push(batch[5]);
    let outcomes = commit(&mut batched, &batch).unwrap();
    assert_eq!(outcomes.iter().filter(|o| **o == Outcome::Stored).count(), reports.len());
    assert_eq!(outcomes.last(), Some(&Outcome::Duplicate));

    // One report per batch, with the row cache on and off, and a restart half way (a cold
    // cache that must read the rows back).
    let mut single = open(&dir.path().join("single.sqlite"));
    let mut uncached = open(&dir.path().join("uncached.sqlite"));
    uncached.set_row_cache_limit(0);
    for (n, it) in items(&reports).into_iter().enumerate() {
        if n == reports.len() / 2 {
            single = open(&dir.path().join("single.sqlite"));
        }
        assert_eq!(commit(&mut single, &[it]).unwrap(), [Outcome::Stored]);
        assert_eq!(commit(&mut uncached, &[it]).unwrap(), [Outcome::Stored]);
    }
    assert_eq!(uncached.row_cache_usage(), (0, 0));

    let rows = all_minutes(&batched);
    assert_eq!(rows.len(), 4, "two cohorts x two minutes");
    // Identical rows, down to the stored bytes.
    assert_eq!(rows, all_minutes(&single));
    assert_eq!(rows, all_minutes(&uncached));
    assert_eq!(batched.agents().unwrap(), single.agents().unwrap());

    // And each row is the exact merge of its reports.
    for row in &rows {
        let mut expected: BTreeMap<&str, (Histogram<u64>, u64)> = BTreeMap::new();
        let mut packets = 0;
        for (_, r) in &reports {
            let s = &r.report.series[0];
            if minute_of(r.report.window_start_ms, r.report.window_end_ms) != row.start_unix_ms
                || s.labels.transport.as_str() != row.cohort.transport
            {
                continue;
            }
            packets += s.counters["packets"];
            for (name, h) in &r.histograms[0] {
                let e = expected.entry(name).or_insert_with(|| (hdr::new_histogram(), 0));
                e.0.add(h.to_histogram().unwrap()).unwrap();
                e.1 += s.histograms[name].sum;
            }
        }
        assert_eq!(row.counters["packets"], packets);
        assert_eq!(row.histograms.len(), expected.len());
        for (name, (h, sum)) in expected {
            let stored = &row.histograms[name];
            assert_eq!((stored.count, stored.sum), (h.len(), sum), "{name}");
            assert_eq!(stored.decode().unwrap(), h, "{name}");
            // Same counts, same layout, same level: the same bytes.
            let mut bytes = Vec::new();
            hdr::Encoder::with_level(ROW_DEFLATE_LEVEL).encode_into(&h, &mut bytes).unwrap();
            assert_eq!(stored.hdr, bytes, "{name}");
        }
    }
}

#[test]
fn a_failed_batch_leaves_no_trace_and_drops_the_row_cache() {
    let dir = StoreDir::new("failed-batch");
    let reports = mixed_reports();
    let (first, second) = reports.split_at(12);
    let mut store = open(&dir.db());
    commit(&mut store, &items(first)).unwrap();
    assert!(store.row_cache_usage().0 > 0, "the committed rows are cached");
    let rows_before = all_minutes(&store);
    let agents_before = store.agents().unwrap();

    // The batch fails at its last step (counters), after its histogram rows were merged from
    // the cache and written.
    store
        .conn_for_tests()
        .execute_batch(
            "CREATE TRIGGER fail BEFORE INSERT ON counters
             BEGIN SELECT RAISE(ABORT, 'disk on fire'); END;",
        )
        .unwrap();
    assert!(commit(&mut store, &items(second)).is_err());
    assert_eq!(store.row_cache_usage(), (0, 0));
    assert_eq!(all_minutes(&store), rows_before);
    assert_eq!(store.agents().unwrap(), agents_before);
    for (agent, r) in second {
        assert!(!in_ledger(&store, agent, r.report.seq).unwrap());
    }

    // Resent after the fault clears: counted once, the same as a clean run.
    store.conn_for_tests().execute_batch("DROP TRIGGER fail").unwrap();
    commit(&mut store, &items(second)).unwrap();
    let mut clean = open(&dir.path().join("clean.sqlite"));
    commit(&mut clean, &items(first)).unwrap();
    commit(&mut clean, &items(second)).unwrap();
    assert_eq!(all_minutes(&store), all_minutes(&clean));
}

#[test]
fn a_write_from_another_connection_invalidates_the_row_cache() {
    let dir = StoreDir::new("two-writers");
    let reports = mixed_reports();
    let mut a = open(&dir.db());
    let mut b = open(&dir.db());
    commit(&mut a, &items(&reports[..8])).unwrap();
    commit(&mut b, &items(&reports[8..16])).unwrap();
    commit(&mut a, &items(&reports[16..])).unwrap();
    let mut clean = open(&dir.path().join("clean.sqlite"));
    commit(&mut clean, &items(&reports)).unwrap();
    assert_eq!(all_minutes(&a), all_minutes(&clean));
}

#[test]
fn maintenance_on_the_ingest_connection_drops_the_row_cache() {
    let dir = StoreDir::new("maintain-cache");
    let mut store = open(&dir.db());
    let r1 = simple("a1", 1, T0);
    let r2 = simple("a1", 2, T0 + 10_000);
    commit(&mut store, &[item("a1", "eu", &r1)]).unwrap();
    // Fold the (cached) minute away, then ingest into the same minute again.
    store.downsample(T0 + HOUR_MS).unwrap();
    commit(&mut store, &[item("a1", "eu", &r2)]).unwrap();
    let minutes = all_minutes(&store);
    assert_eq!(minutes.len(), 1);
    assert_eq!(minutes[0].histograms["jitter_us"].count, 3, "only the report after the fold");
    assert_eq!(minutes[0].counters["packets"], 100);
    let (counters, histograms) = totals(&store, Resolution::Hour);
    assert_eq!((counters["packets"], histograms["jitter_us"].0), (100, 3));

    store.retain(T0 + HOUR_MS, 0).unwrap();
    assert!(all_minutes(&store).is_empty());
    let r3 = simple("a1", 3, T0 + 20_000);
    commit(&mut store, &[item("a1", "eu", &r3)]).unwrap();
    assert_eq!(all_minutes(&store)[0].histograms["jitter_us"].count, 3);
}

#[test]
fn an_agent_with_a_wrong_clock_does_not_push_the_row_cache_away() {
    let dir = StoreDir::new("clock");
    let mut store = open(&dir.db());
    let far = simple("a9", 1, T0 + 240 * HOUR_MS);
    let now = simple("a1", 1, T0);
    commit(&mut store, &[item("a9", "eu", &far), item("a1", "eu", &now)]).unwrap();
    assert_eq!(store.row_cache_usage().0, 1, "the current minute's row is cached, not the far one");
    let again = simple("a1", 2, T0 + 10_000);
    commit(&mut store, &[item("a1", "eu", &again)]).unwrap();
    assert_eq!(store.row_cache_usage().0, 1);
    let minutes = all_minutes(&store);
    assert_eq!(minutes.len(), 2);
    assert_eq!(minutes[0].histograms["jitter_us"].count, 6);
    assert_eq!(minutes[1].histograms["jitter_us"].count, 3);
}
