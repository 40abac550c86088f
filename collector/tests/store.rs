//! History store crash safety: a child process (this test binary, re-executed) commits
//! batches and prints every acknowledged report; it is killed with SIGKILL mid-stream, several
//! times, restarting on the same database and resending from the start as a spooling agent
//! would. Afterwards every acknowledged report is stored exactly once, and the per-minute totals
//! equal the sum over exactly the reports in the ledger.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use stallwatch_collector::pki::{AgentIdentity, Ca, VerifiedAgent};
use stallwatch_collector::store::{
    CohortFilter, HistoryStore, IngestItem, MINUTE_MS, Outcome, Resolution, SqliteStore,
    report_digest,
};
use stallwatch_proto::hdr;
use stallwatch_proto::report::{
    DecodedReport, HistogramData, REPORT_SCHEMA_VERSION, Report, Series, SeriesLabels,
    encode_report,
};
use stallwatch_proto::{Role, Transport};

/// Set in the child: the database path.
const CHILD_ENV: &str = "STALLWATCH_STORE_CHILD";
const AGENTS: [&str; 4] = ["agent-a", "agent-b", "agent-c", "agent-d"];
/// Sequence numbers per agent per batch (a batch holds `AGENTS.len()` times this).
const SEQS_PER_BATCH: u64 = 4;
/// The child stops by itself here, in case the parent dies before killing it.
const CHILD_MAX_SEQ: u64 = 200_000;
const T0: u64 = 1_700_000_000_000 - 1_700_000_000_000 % MINUTE_MS;

/// The report `agent` sends as `seq`: deterministic, so a resend is identical.
fn report(agent: &str, seq: u64) -> DecodedReport {
    let mut h = hdr::new_histogram();
    let values = [100 + seq % 1_000, 2_000 + seq, 40_000];
    for v in values {
        h.record(v).unwrap();
    }
    let series = Series {
        labels: SeriesLabels {
            probe: "p1".into(),
            repair: None,
            role: Role::Viewer,
            target: "relay-1".into(),
            transport: Transport::Udp,
        },
        counters: BTreeMap::from([("packets".to_string(), seq + 1)]),
        histograms: BTreeMap::from([(
            "jitter_us".to_string(),
            HistogramData::from_histogram(&h, values.iter().sum()),
        )]),
    };
    DecodedReport {
        report: Report {
            schema_version: REPORT_SCHEMA_VERSION,
            agent: agent.to_string(),
            agent_version: "test".to_string(),
            seq,
            window_start_ms: T0 + seq * 10_000,
            window_end_ms: T0 + seq * 10_000 + 10_000,
            plan_revision: 1,
            spool_depth: 0,
            series: vec![series],
        },
        histograms: vec![BTreeMap::from([(
            "jitter_us".to_string(),
            hdr::decode_sparse(&hdr::encode(&h), &Default::default()).unwrap(),
        )])],
    }
}

/// Run only as the child: commits batches from seq 0 until killed, printing
/// `ack <agent> <seq> <stored|duplicate>` for each report once its batch is committed.
#[test]
fn store_crash_child() {
    let Some(path) = std::env::var_os(CHILD_ENV) else { return };
    let path = PathBuf::from(path);
    let now = time::OffsetDateTime::from_unix_timestamp((T0 / 1000) as i64).unwrap();
    let ca = Ca::init(&path.with_extension("ca"), now, true).unwrap();
    let verified: Vec<VerifiedAgent> = AGENTS
        .iter()
        .map(|a| {
            let identity = AgentIdentity::new(*a, "eu", "wifi").unwrap();
            VerifiedAgent::issue_and_verify(&ca, &identity, now).unwrap()
        })
        .collect();
    let mut store = SqliteStore::open(&path).unwrap();
    let mut out = std::io::stdout().lock();
    let mut first = 0;
    while first < CHILD_MAX_SEQ {
        let reports: Vec<(usize, DecodedReport)> = (first..first + SEQS_PER_BATCH)
            .flat_map(|seq| AGENTS.iter().enumerate().map(move |(i, a)| (i, report(a, seq))))
            .collect();
        let items: Vec<IngestItem<'_>> = reports
            .iter()
            .map(|(agent, r)| IngestItem {
                agent: &verified[*agent],
                report: r,
                received_unix_ms: T0 + 1_000_000,
                digest: report_digest(&encode_report(&r.report)),
            })
            .collect();
        let outcomes = store.commit(&items).unwrap().outcomes;
        for ((agent, r), outcome) in reports.iter().zip(outcomes) {
            let what = match outcome {
                Outcome::Stored => "stored",
                Outcome::Duplicate => "duplicate",
                Outcome::Rejected(e) => panic!("rejected: {e}"),
                Outcome::Conflict => panic!("conflict"),
            };
            writeln!(out, "ack {} {} {what}", AGENTS[*agent], r.report.seq).unwrap();
        }
        out.flush().unwrap();
        first += SEQS_PER_BATCH;
    }
}

/// Kills the child if the test fails before it does.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn store_acknowledged_reports_survive_kill_9() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    // Declared before the children: their guards kill and reap them before it goes.
    let scratch = stallwatch_tests::scratch_dir("store-kill9");
    let dir = scratch.path();
    let db = dir.join("history.sqlite");
    let exe = std::env::current_exe().unwrap();

    // (agent, seq) -> how many times a child reported it stored; and every acknowledgement.
    let mut stored: BTreeMap<(String, u64), u32> = BTreeMap::new();
    let mut acked: BTreeSet<(String, u64)> = BTreeSet::new();
    // Each round restarts from seq 0 and is killed further along, so later rounds resend
    // what earlier ones stored, then go on to new reports.
    for (round, kill_after) in [300usize, 900, 1_700, 2_600].into_iter().enumerate() {
        let child = Command::new(&exe)
            .args(["--exact", "store_crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &db)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut child = KillOnDrop(child);
        let stdout = child.0.stdout.take().unwrap();
        let mut acks_this_round = 0;
        let mut killed = false;
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            let Some(rest) = line.strip_prefix("ack ") else { continue };
            let mut fields = rest.split(' ');
            let (Some(agent), Some(seq), Some(what)) =
                (fields.next(), fields.next(), fields.next())
            else {
                panic!("bad ack line {line:?}");
            };
            let key = (agent.to_string(), seq.parse::<u64>().unwrap());
            if what == "stored" {
                *stored.entry(key.clone()).or_default() += 1;
            }
            acked.insert(key);
            acks_this_round += 1;
            if acks_this_round == kill_after && !killed {
                // SIGKILL: no destructor, no flush; the child is usually inside a commit.
                child.0.kill().unwrap();
                killed = true;
            }
            // Keep reading: acks printed before the signal landed are acknowledgements too.
        }
        let status = child.0.wait().unwrap();
        assert!(killed, "round {round}: child exited ({status}) after {acks_this_round} acks");
        assert!(!status.success(), "round {round}: child was not killed");
    }

    let double: Vec<_> = stored.iter().filter(|(_, n)| **n > 1).collect();
    assert!(double.is_empty(), "stored twice across restarts: {double:?}");

    let store = SqliteStore::open(&db).unwrap();
    let ledger = rusqlite::Connection::open(&db).unwrap();
    let in_ledger = |agent: &str, seq: u64| -> bool {
        ledger
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM ingest_ledger WHERE agent = ?1 AND seq = ?2)",
                rusqlite::params![agent, seq as i64],
                |r| r.get(0),
            )
            .unwrap()
    };
    for (agent, seq) in &acked {
        assert!(in_ledger(agent, *seq), "acknowledged {agent} {seq} was lost");
    }
    // The ledger may also hold reports committed just before a kill and never acknowledged;
    // the totals must match exactly the reports in the ledger, each counted once.
    let max_seq = acked.iter().map(|(_, s)| *s).max().unwrap() + 4 * SEQS_PER_BATCH;
    let mut expect_packets = 0;
    let mut expect_count = 0;
    let mut expect_sum = 0;
    let mut per_agent: BTreeMap<&str, u64> = BTreeMap::new();
    for agent in AGENTS {
        for seq in 0..=max_seq {
            if in_ledger(agent, seq) {
                let r = report(agent, seq);
                expect_packets += seq + 1;
                let data = &r.report.series[0].histograms["jitter_us"];
                expect_count += data.count;
                expect_sum += data.sum;
                *per_agent.entry(agent).or_default() += 1;
            }
        }
    }
    let (mut packets, mut count, mut sum) = (0, 0, 0);
    for row in store.rows(Resolution::Minute, 0..u64::MAX, &CohortFilter::default()).unwrap() {
        packets += row.counters["packets"];
        let h = &row.histograms["jitter_us"];
        assert_eq!(h.decode().unwrap().len(), h.count);
        count += h.count;
        sum += h.sum;
    }
    assert_eq!((packets, count, sum), (expect_packets, expect_count, expect_sum));
    for agent in store.agents().unwrap() {
        assert_eq!(agent.reports, per_agent[agent.name.as_str()], "{}", agent.name);
    }
    drop(store);
}
