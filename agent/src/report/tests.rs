//! Spool and builder tests, each in its own directory under the system temp dir.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use stallwatch_measure::WindowMetrics;
use stallwatch_measure::link::LinkConfig;
use stallwatch_measure::sim::{self, SimConfig};
use stallwatch_proto::control::Role;
use stallwatch_proto::plan::{Repair, Transport};
use stallwatch_proto::report::{
    REPORT_SCHEMA_VERSION, Report, ReportLimits, Series, SeriesLabels, decode_report, encode_report,
};
use tempfile::TempDir;

use super::*;

/// A scratch directory, removed when the test ends (pass or fail).
fn temp_dir() -> TempDir {
    stallwatch_tests::scratch_dir("report")
}

const BIG: u64 = 1 << 30;

fn report(seq: u64) -> Report {
    Report {
        schema_version: REPORT_SCHEMA_VERSION,
        agent: "edge-1".into(),
        agent_version: "0.1.0".into(),
        seq,
        window_start_ms: 1_700_000_000_000,
        window_end_ms: 1_700_000_010_000,
        plan_revision: 1,
        spool_depth: 0,
        series: vec![Series {
            labels: SeriesLabels::new("p", Transport::Udp, Repair::Nack, "fra", Role::Viewer),
            counters: BTreeMap::from([("packets".into(), 1000)]),
            histograms: BTreeMap::new(),
        }],
    }
}

fn seq_of(bytes: &[u8]) -> u64 {
    serde_json::from_slice::<Report>(bytes).unwrap().seq
}

/// The seqs queued, from the files on disk, checked against the index and `peek_oldest`.
fn spooled(spool: &mut Spool) -> Vec<u64> {
    let mut seqs: Vec<u64> = fs::read_dir(spool.dir())
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".json").and_then(|s| s.parse().ok())
        })
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs.len(), spool.len(), "files on disk match the index");
    let oldest = spool.peek_oldest().unwrap();
    assert_eq!(
        oldest.as_ref().map(|(seq, _)| *seq),
        seqs.first().copied(),
        "peek gives the oldest"
    );
    if let Some((seq, bytes)) = oldest {
        assert_eq!(seq_of(&bytes), seq);
    }
    seqs
}

#[test]
fn push_peek_ack_in_seq_order() {
    let dir = temp_dir();
    let mut spool = Spool::open(dir.path(), BIG, 100).unwrap();
    assert!(spool.is_empty());
    assert_eq!(spool.peek_oldest().unwrap(), None);
    for seq in [3, 1, 2] {
        spool.push(&report(seq)).unwrap();
    }
    assert_eq!(spool.len(), 3);
    let total: u64 = [1, 2, 3].map(|s| encode_report(&report(s)).len() as u64).iter().sum();
    assert_eq!(spool.bytes(), total);
    for expected in 1..=3 {
        let (seq, bytes) = spool.peek_oldest().unwrap().unwrap();
        assert_eq!(seq, expected);
        assert_eq!(bytes, encode_report(&report(expected)), "exactly the encoded report");
        // Peeking again gives the same report until it is acked.
        assert_eq!(spool.peek_oldest().unwrap().unwrap().0, expected);
        assert!(spool.ack(seq).unwrap());
    }
    assert!(!spool.ack(2).unwrap(), "acking twice is a no-op");
    assert!(spool.is_empty());
    assert_eq!(spool.bytes(), 0);
    assert_eq!(spool.stats(), SpoolStats { spooled: 3, sent: 3, ..Default::default() });
    assert_eq!(spooled(&mut spool), Vec::<u64>::new());
}

#[test]
fn pushing_a_seq_again_replaces_it() {
    let dir = temp_dir();
    let mut spool = Spool::open(dir.path(), BIG, 100).unwrap();
    spool.push(&report(7)).unwrap();
    let mut again = report(7);
    again.plan_revision = 99;
    spool.push(&again).unwrap();
    assert_eq!(spool.len(), 1);
    assert_eq!(spool.bytes(), encode_report(&again).len() as u64);
    assert_eq!(spool.peek_oldest().unwrap().unwrap().1, encode_report(&again));
}

#[test]
fn full_by_count_drops_the_oldest_and_counts_exactly() {
    let dir = temp_dir();
    let mut spool = Spool::open(dir.path(), BIG, 3).unwrap();
    for seq in 1..=10 {
        spool.push(&report(seq)).unwrap();
        assert!(spool.len() <= 3);
    }
    assert_eq!(spooled(&mut spool), vec![8, 9, 10], "the newest are kept");
    assert_eq!(spool.stats().dropped_oldest, 7);
    assert_eq!(spool.stats().spooled, 10);
}

#[test]
fn full_by_bytes_drops_the_oldest_and_counts_exactly() {
    let dir = temp_dir();
    // Three-digit seqs: every report encodes to the same size.
    let size = encode_report(&report(100)).len() as u64;
    let mut spool = Spool::open(dir.path(), size * 5 / 2, 1000).unwrap();
    for seq in 100..110 {
        spool.push(&report(seq)).unwrap();
        assert!(spool.bytes() <= size * 5 / 2);
    }
    assert_eq!(spool.len(), 2);
    assert_eq!(spool.bytes(), 2 * size);
    assert_eq!(spooled(&mut spool), vec![108, 109]);
    assert_eq!(spool.stats().dropped_oldest, 8);
}

#[test]
fn a_report_larger_than_the_spool_is_refused_without_dropping_anything() {
    let dir = temp_dir();
    let size = encode_report(&report(100)).len() as u64;
    let mut spool = Spool::open(dir.path(), size, 10).unwrap();
    spool.push(&report(100)).unwrap();
    let mut big = report(101);
    big.agent_version = "x".repeat(100);
    let e = spool.push(&big).unwrap_err();
    assert!(matches!(e, SpoolError::TooLarge { seq: 101, .. }), "{e}");
    assert_eq!(spooled(&mut spool), vec![100]);
    assert_eq!(spool.stats().dropped_oldest, 0);
    assert!(matches!(Spool::open(dir.path(), 0, 10), Err(SpoolError::Limits { .. })));
}

#[test]
fn reopen_recovers_after_a_crash() {
    let dir = temp_dir();
    {
        let mut spool = Spool::open(dir.path(), BIG, 100).unwrap();
        for seq in [10, 11, 13] {
            spool.push(&report(seq)).unwrap();
        }
    }
    let p = |name: &str| dir.path().join(name);
    // A write interrupted before its rename.
    fs::write(p("00000000000000000014.json.tmp"), b"{\"schema_ver").unwrap();
    // A visible file that is truncated (disk corruption), and one whose body is another seq.
    let full = encode_report(&report(12));
    fs::write(p("00000000000000000012.json"), &full[..full.len() / 2]).unwrap();
    fs::write(p("00000000000000000015.json"), encode_report(&report(99))).unwrap();
    // Somebody else's file is left alone.
    fs::write(p("notes.txt"), b"hello").unwrap();

    let mut spool = Spool::open(dir.path(), BIG, 100).unwrap();
    assert!(!p("00000000000000000014.json.tmp").exists(), "temp file removed");
    assert_eq!(spool.stats().corrupt, 2);
    assert!(p("corrupt/00000000000000000012.json").exists(), "moved aside");
    assert!(p("corrupt/00000000000000000015.json").exists());
    assert!(!p("00000000000000000012.json").exists());
    assert!(p("notes.txt").exists());
    assert_eq!(spool.len(), 3);
    let mut sent = Vec::new();
    let drained = spool
        .drain(|bytes| {
            sent.push(seq_of(bytes));
            Ok(SendOutcome::Accepted)
        })
        .unwrap();
    assert_eq!(sent, vec![10, 11, 13], "good reports kept, in seq order");
    assert_eq!(drained, Drained { accepted: 3, ..Default::default() });
}

#[test]
fn reopen_with_smaller_limits_drops_the_oldest() {
    let dir = temp_dir();
    {
        let mut spool = Spool::open(dir.path(), BIG, 100).unwrap();
        for seq in 1..=5 {
            spool.push(&report(seq)).unwrap();
        }
    }
    let mut spool = Spool::open(dir.path(), BIG, 2).unwrap();
    assert_eq!(spool.stats().dropped_oldest, 3);
    assert_eq!(spooled(&mut spool), vec![4, 5]);
}

#[test]
fn quarantine_is_bounded() {
    let dir = temp_dir();
    fs::create_dir_all(dir.path()).unwrap();
    let n = MAX_QUARANTINED as u64 + 4;
    for seq in 1..=n {
        fs::write(dir.path().join(format!("{seq:020}.json")), b"{").unwrap();
    }
    let spool = Spool::open(dir.path(), BIG, 100).unwrap();
    assert_eq!(spool.stats().corrupt, n);
    assert!(spool.is_empty());
    assert_eq!(fs::read_dir(dir.path().join("corrupt")).unwrap().count(), MAX_QUARANTINED);
}

#[test]
fn a_vanished_file_is_skipped_and_counted() {
    let dir = temp_dir();
    let mut spool = Spool::open(dir.path(), BIG, 100).unwrap();
    spool.push(&report(1)).unwrap();
    spool.push(&report(2)).unwrap();
    fs::remove_file(dir.path().join("00000000000000000001.json")).unwrap();
    assert_eq!(spool.peek_oldest().unwrap().unwrap().0, 2);
    assert_eq!(spool.stats().corrupt, 1);
    assert_eq!(spool.len(), 1);
}

#[test]
fn a_file_changed_after_it_was_spooled_is_quarantined() {
    let dir = temp_dir();
    let mut spool = Spool::open(dir.path(), BIG, 100).unwrap();
    spool.push(&report(1)).unwrap();
    spool.push(&report(2)).unwrap();
    let path = dir.path().join("00000000000000000001.json");
    let full = fs::read(&path).unwrap();
    fs::write(&path, &full[..full.len() - 3]).unwrap();
    assert_eq!(spool.peek_oldest().unwrap().unwrap().0, 2);
    assert_eq!(spool.stats().corrupt, 1);
    assert!(dir.path().join("corrupt/00000000000000000001.json").exists());
    assert_eq!(spool.bytes(), full.len() as u64);
}

#[test]
fn drain_stops_on_retry_later_and_resumes_in_order() {
    let dir = temp_dir();
    let mut spool = Spool::open(dir.path(), BIG, 100).unwrap();
    for seq in 1..=5 {
        spool.push(&report(seq)).unwrap();
    }
    let mut seen = Vec::new();
    let drained = spool
        .drain(|bytes| {
            let seq = seq_of(bytes);
            seen.push(seq);
            Ok(match seq {
                1 => SendOutcome::Accepted,
                2 => SendOutcome::Duplicate,
                _ => SendOutcome::retry_later("503 store-unavailable"),
            })
        })
        .unwrap();
    assert_eq!(seen, vec![1, 2, 3], "stops at the first RetryLater");
    assert_eq!(
        drained,
        Drained { accepted: 1, duplicates: 1, retry_later: true, ..Default::default() }
    );
    assert_eq!(spool.len(), 3);
    // The collector is back; a new report was queued meanwhile.
    spool.push(&report(6)).unwrap();
    let drained = spool
        .drain(|bytes| {
            seen.push(seq_of(bytes));
            Ok(SendOutcome::Accepted)
        })
        .unwrap();
    assert_eq!(seen, vec![1, 2, 3, 3, 4, 5, 6], "backfill in seq order");
    assert_eq!(drained, Drained { accepted: 4, ..Default::default() });
    assert!(spool.is_empty());
    assert_eq!(spool.stats().sent, 6);
}

#[test]
fn a_send_error_stops_the_drain_and_keeps_the_report() {
    let dir = temp_dir();
    let mut spool = Spool::open(dir.path(), BIG, 100).unwrap();
    spool.push(&report(1)).unwrap();
    spool.push(&report(2)).unwrap();
    let e = spool.drain(|_| anyhow::bail!("connection refused")).unwrap_err();
    assert_eq!(format!("{e:#}"), "sending spooled report 1: connection refused");
    assert_eq!(spool.len(), 2);
    assert_eq!(spool.stats().sent, 0);
}

#[test]
fn rejected_reports_are_dropped_and_counted() {
    let dir = temp_dir();
    let mut spool = Spool::open(dir.path(), BIG, 100).unwrap();
    for seq in 1..=3 {
        spool.push(&report(seq)).unwrap();
    }
    let mut seen = Vec::new();
    let drained = spool
        .drain(|bytes| {
            let seq = seq_of(bytes);
            seen.push(seq);
            Ok(if seq == 2 {
                SendOutcome::Rejected("bad_name".into())
            } else {
                SendOutcome::Accepted
            })
        })
        .unwrap();
    assert_eq!(seen, vec![1, 2, 3], "a rejected report does not block the queue");
    assert_eq!(drained, Drained { accepted: 2, rejected: 1, ..Default::default() });
    assert!(spool.is_empty());
    assert_eq!(
        spool.stats(),
        SpoolStats { spooled: 3, sent: 2, rejected: 1, ..Default::default() }
    );
}

fn key(probe: &str, transport: Transport, role: Role) -> SeriesLabels {
    let repair = Repair::for_transport(transport, None);
    SeriesLabels::new(probe, transport, repair, "fra", role)
}

/// Two 10 s windows of a lossy 720p30 stream (simulated once per test binary).
fn windows() -> &'static [WindowMetrics] {
    static WINDOWS: OnceLock<Vec<WindowMetrics>> = OnceLock::new();
    WINDOWS.get_or_init(|| {
        let link = LinkConfig {
            loss: 0.02,
            delay: Duration::from_millis(30),
            jitter: Duration::from_millis(5),
            ..LinkConfig::default()
        };
        sim::run(&SimConfig::new(link, Duration::from_secs(20))).windows
    })
}

#[test]
fn builder_report_round_trips_through_decode_report() {
    let dir = temp_dir();
    let t0 = 1_700_000_000_000;
    let mut builder = ReportBuilder::open(dir.path(), t0).unwrap();
    let w = windows();
    let udp = key("p1", Transport::Udp, Role::Viewer);
    let quic = key("p1", Transport::QuicStream, Role::Viewer);
    assert!(builder.add(&udp, &w[0]));
    assert!(builder.add(&udp, &w[1]));
    assert!(builder.add(&quic, &w[1]));
    assert_eq!(builder.series_len(), 2);

    let report = builder.take(t0 + 10_000, "edge-fra-1", 7).unwrap();
    assert_eq!(report.seq, t0, "a fresh spool numbers from the clock");
    assert_eq!((report.window_start_ms, report.window_end_ms), (t0, t0 + 10_000));
    assert_eq!(report.agent_version, env!("CARGO_PKG_VERSION"));
    assert_eq!(report.plan_revision, 7);
    let decoded = decode_report(&encode_report(&report), &ReportLimits::default()).unwrap();
    assert_eq!(decoded.report, report);
    assert_eq!(decoded.report.series.len(), 2);

    // Series are in label order; the udp one merges both windows exactly.
    let s = &decoded.report.series[1];
    assert_eq!(s.labels, udp);
    assert_eq!(s.labels.transport, Transport::Udp);
    assert_eq!(s.labels.repair, Some(Repair::Nack), "the mode a plan without repair runs on udp");
    assert_eq!(decoded.report.series[0].labels.repair, Some(Repair::None), "quic-stream");
    assert_eq!(s.labels.role, Role::Viewer);
    assert_eq!(s.labels.target, "fra");
    // On the wire, the labels are the string map agents sent before they were typed.
    let json = String::from_utf8(encode_report(&report)).unwrap();
    for labels in [
        r#""labels":{"probe":"p1","repair":"none","role":"viewer","target":"fra","transport":"quic-stream"}"#,
        r#""labels":{"probe":"p1","repair":"nack","role":"viewer","target":"fra","transport":"udp"}"#,
    ] {
        assert!(json.contains(labels), "{labels} in {json}");
    }
    let mut merged = w[0].clone();
    merged.merge(&w[1]);
    assert_eq!(s.counters["packets_lost"], merged.loss.lost);
    assert_eq!(s.counters["packets"], w[0].packets + w[1].packets);
    assert_eq!(decoded.histograms[1]["jitter_us"].len(), merged.jitter.count());
    assert_eq!(s.histograms["jitter_us"].sum, merged.jitter.sum());
    assert_eq!(decoded.report.series[0], w[1].to_series(quic));
    assert_eq!(builder.series_len(), 0, "take starts a new interval");
}

#[test]
fn a_self_noise_window_is_counted_and_kept_out_of_the_figures() {
    // Alerts and regional reports read the collector's stored figures, which are these
    // series: a window where the agent itself ran late must not be in them.
    let dir = temp_dir();
    let mut builder = ReportBuilder::open(dir.path(), 1_000).unwrap();
    let w = windows();
    let mut noisy = w[1].clone();
    noisy.self_noise.emulator_late_max_ns = 40_000_000;
    noisy.self_noise.windows = 1;
    assert!(noisy.packets > 0 && noisy.loss.lost > 0, "the kept-out window has figures");
    let udp = key("p1", Transport::Udp, Role::Viewer);
    assert!(builder.add(&udp, &w[0]));
    assert!(builder.add(&udp, &noisy));
    let report = builder.take(11_000, "edge-fra-1", 1).unwrap();
    let decoded = decode_report(&encode_report(&report), &ReportLimits::default()).unwrap();
    let s = &decoded.report.series[0];
    let mut expected = w[0].to_series(udp.clone());
    expected.counters.insert("self_noise_windows".into(), 1);
    assert_eq!(*s, expected, "the clean window's figures, and one window kept out");
    // A series of nothing but self-noise still says so.
    assert!(builder.add(&udp, &noisy));
    let report = builder.take(21_000, "edge-fra-1", 1).unwrap();
    let s = &report.series[0];
    assert_eq!(s.counters, BTreeMap::from([("self_noise_windows".into(), 1)]));
    assert!(s.histograms.is_empty());
}

#[test]
fn empty_intervals_still_report_with_contiguous_windows() {
    let dir = temp_dir();
    let mut builder = ReportBuilder::open(dir.path(), 5_000).unwrap();
    let a = builder.take(15_000, "a", 0).unwrap();
    let b = builder.take(25_000, "a", 0).unwrap();
    assert!(a.series.is_empty() && b.series.is_empty());
    assert_eq!(b.seq, a.seq + 1);
    assert_eq!((a.window_start_ms, a.window_end_ms), (5_000, 15_000));
    assert_eq!((b.window_start_ms, b.window_end_ms), (15_000, 25_000));
    decode_report(&encode_report(&a), &ReportLimits::default()).unwrap();
    // A clock that went back gives an empty window, never one that ends before it starts.
    let c = builder.take(20_000, "a", 0).unwrap();
    assert_eq!((c.window_start_ms, c.window_end_ms), (25_000, 25_000));
}

#[test]
fn seq_persists_across_reopen_even_after_everything_was_acked() {
    let dir = temp_dir();
    let mut last = 0;
    {
        let mut builder = ReportBuilder::open(dir.path(), 1_000).unwrap();
        let mut spool = Spool::open(dir.path(), BIG, 100).unwrap();
        for i in 0..3 {
            let r = builder.take(2_000 + i, "a", 0).unwrap();
            assert!(r.seq > last);
            last = r.seq;
            spool.push(&r).unwrap();
        }
        spool.drain(|_| Ok(SendOutcome::Accepted)).unwrap();
        assert!(spool.is_empty());
    }
    // Restarted with a clock far behind the numbers issued: the stored number wins.
    let mut builder = ReportBuilder::open(dir.path(), 1).unwrap();
    assert_eq!(builder.next_seq(), last + 1);
    assert_eq!(builder.take(3_000, "a", 0).unwrap().seq, last + 1);
    // The spool's recovery leaves the sequence file alone.
    drop(Spool::open(dir.path(), BIG, 100).unwrap());
    assert_eq!(ReportBuilder::open(dir.path(), 1).unwrap().next_seq(), last + 2);
}

#[test]
fn a_lost_sequence_file_never_goes_below_spooled_reports() {
    let dir = temp_dir();
    let mut spool = Spool::open(dir.path(), BIG, 100).unwrap();
    spool.push(&report(500)).unwrap();
    // A seq file that is garbage, and a clock behind the spooled report.
    fs::write(dir.path().join(SEQ_FILE), b"not a number").unwrap();
    assert_eq!(ReportBuilder::open(dir.path(), 100).unwrap().next_seq(), 501);
    // Missing altogether: numbering starts at the clock when that is ahead.
    fs::remove_file(dir.path().join(SEQ_FILE)).unwrap();
    assert_eq!(ReportBuilder::open(dir.path(), 9_000).unwrap().next_seq(), 9_000);
}

#[test]
fn a_failed_take_keeps_the_windows_for_the_next_report() {
    let dir = temp_dir();
    let mut builder = ReportBuilder::open(dir.path(), 0).unwrap();
    let k = key("p", Transport::Udp, Role::Viewer);
    builder.add(&k, &windows()[0]);
    let seq = builder.next_seq();
    // The spool directory disappears (unmounted disk): the seq cannot be made durable.
    fs::remove_dir_all(dir.path()).unwrap();
    let e = builder.take(10_000, "a", 0).unwrap_err();
    assert!(matches!(e, SpoolError::Io { .. }), "{e}");
    assert_eq!(builder.series_len(), 1);
    assert_eq!(builder.next_seq(), seq, "no number issued");
    fs::create_dir_all(dir.path()).unwrap();
    let r = builder.take(20_000, "a", 0).unwrap();
    assert_eq!(r.seq, seq);
    assert_eq!((r.window_start_ms, r.window_end_ms), (0, 20_000));
    assert_eq!(r.series[0].counters["packets"], windows()[0].packets);
}

#[test]
fn series_beyond_the_limit_are_dropped_and_counted() {
    let dir = temp_dir();
    let mut builder = ReportBuilder::open(dir.path(), 0).unwrap().with_max_series(1);
    let w = &windows()[0];
    assert!(builder.add(&key("a", Transport::Udp, Role::Viewer), w));
    assert!(!builder.add(&key("b", Transport::Udp, Role::Viewer), w));
    assert!(builder.add(&key("a", Transport::Udp, Role::Viewer), w), "known series still merge");
    assert_eq!(builder.windows_dropped(), 1);
    assert_eq!(builder.take(1, "a", 0).unwrap().series.len(), 1);
}

/// With an archive, an acknowledged report moves there (byte for byte); a rejected one is
/// still deleted, and one to retry stays queued.
#[test]
fn archive_keeps_exactly_the_acknowledged_reports() {
    let dir = temp_dir();
    let archive = dir.path().join("sent");
    let mut spool =
        Spool::open(dir.path().join("spool"), BIG, 100).unwrap().with_archive(&archive).unwrap();
    for seq in 1..=3 {
        spool.push(&report(seq)).unwrap();
    }
    let (seq, first) = spool.peek_oldest().unwrap().unwrap();
    assert!(spool.settle(seq, &SendOutcome::Accepted).unwrap());
    let (seq, _) = spool.peek_oldest().unwrap().unwrap();
    assert!(spool.settle(seq, &SendOutcome::Rejected("bad".into())).unwrap());
    let (seq, _) = spool.peek_oldest().unwrap().unwrap();
    assert!(!spool.settle(seq, &SendOutcome::retry_later("404")).unwrap());
    let kept: Vec<_> = std::fs::read_dir(&archive).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(std::fs::read(&kept[0]).unwrap(), first);
    assert_eq!(spool.len(), 1);
}

/// Makes the next write of report `seq` fail (even as root): a directory where its temporary
/// file goes.
fn block_write(dir: &Path, seq: u64) -> PathBuf {
    let blocker = dir.join(format!("{seq:020}.json.tmp"));
    fs::create_dir_all(&blocker).unwrap();
    blocker
}

#[test]
fn a_failed_push_keeps_the_report_and_sends_it_later() {
    let dir = temp_dir();
    let mut spool = Spool::open(dir.path(), BIG, 100).unwrap();
    spool.push(&report(1)).unwrap();
    let blocker = block_write(dir.path(), 2);
    assert!(spool.push(&report(2)).is_err(), "the write failed");
    fs::remove_dir(&blocker).unwrap();
    spool.push(&report(3)).unwrap();
    let mut sent = Vec::new();
    spool
        .drain(|bytes| {
            sent.push(seq_of(bytes));
            Ok(SendOutcome::Accepted)
        })
        .unwrap();
    assert_eq!(sent, vec![1, 2, 3], "the report whose write failed was sent, in order");
}

#[test]
fn a_full_spool_evicts_nothing_for_a_write_that_fails() {
    let dir = temp_dir();
    let mut spool = Spool::open(dir.path(), BIG, 2).unwrap();
    spool.push(&report(1)).unwrap();
    spool.push(&report(2)).unwrap();
    let blocker = block_write(dir.path(), 3);
    assert!(spool.push(&report(3)).is_err());
    assert_eq!(spool.stats().dropped_oldest, 0, "nothing evicted for a write that failed");
    assert!(dir.path().join(format!("{:020}.json", 1)).exists());
    fs::remove_dir(&blocker).unwrap();
    let _ = fs::remove_dir_all(&blocker);
}

#[test]
fn refusals_for_a_setting_are_set_aside_bounded_and_the_drain_goes_on() {
    let dir = temp_dir();
    let n = MAX_REFUSED as u64 + 3;
    let mut spool = Spool::open(dir.path(), BIG, 1000).unwrap();
    for seq in 1..=n + 1 {
        spool.push(&report(seq)).unwrap();
    }
    let drained = spool
        .drain(|bytes| {
            Ok(if seq_of(bytes) <= n {
                SendOutcome::SetAside("too-old".into())
            } else {
                SendOutcome::Accepted
            })
        })
        .unwrap();
    assert_eq!(drained, Drained { set_aside: n, accepted: 1, ..Default::default() });
    assert!(spool.is_empty());
    let refused = dir.path().join(REFUSED_DIR);
    let mut kept: Vec<String> = fs::read_dir(&refused)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    kept.sort();
    assert_eq!(kept.len(), MAX_REFUSED);
    assert_eq!(kept[0], format!("{:020}.json", 4), "the newest are kept");
    assert_eq!(fs::read(refused.join(&kept[0])).unwrap(), encode_report(&report(4)));
    let stats = spool.stats();
    assert_eq!((stats.set_aside, stats.refused_dropped, stats.sent), (n, 3, 1));
}

#[test]
fn a_conflict_stops_the_drain_and_renumbering_resends_in_order() {
    let dir = temp_dir();
    let mut spool = Spool::open(dir.path(), BIG, 100).unwrap();
    for seq in 10..=13 {
        spool.push(&report(seq)).unwrap();
    }
    let drained = spool
        .drain(|bytes| {
            Ok(if seq_of(bytes) == 10 { SendOutcome::Accepted } else { SendOutcome::Conflict })
        })
        .unwrap();
    assert_eq!(drained, Drained { accepted: 1, conflict: Some(11), ..Default::default() });
    assert_eq!(spool.len(), 3, "nothing deleted on a conflict");
    // A first number below what is queued is raised above it.
    let next = spool.renumber_from(11, 5).unwrap();
    assert_eq!(next, 17);
    assert_eq!(spooled(&mut spool), vec![14, 15, 16]);
    assert_eq!(spool.stats().renumbered, 3);
    let mut sent = Vec::new();
    spool
        .drain(|bytes| {
            sent.push(seq_of(bytes));
            Ok(SendOutcome::Accepted)
        })
        .unwrap();
    assert_eq!(sent, vec![14, 15, 16]);
    assert!(Spool::open(dir.path(), BIG, 100).unwrap().is_empty(), "no old file left behind");
}

#[test]
fn renumbered_reports_keep_their_content() {
    let dir = temp_dir();
    let mut spool = Spool::open(dir.path(), BIG, 100).unwrap();
    let mut originals = Vec::new();
    for seq in 1..=3 {
        let mut r = report(seq);
        r.series[0].counters.insert("packets".into(), 100 + seq);
        spool.push(&r).unwrap();
        originals.push(r);
    }
    spool.renumber_from(2, 1_000).unwrap();
    for (new, old) in [(1_000u64, 2usize), (1_001, 3)] {
        let bytes = fs::read(dir.path().join(format!("{new:020}.json"))).unwrap();
        let mut expected = originals[old - 1].clone();
        expected.seq = new;
        assert_eq!(bytes, encode_report(&expected));
    }
    assert!(dir.path().join(format!("{:020}.json", 1)).exists(), "below `from`: untouched");
}

/// A crash after a renumbering renamed a file but before it rewrote it: the file holds its
/// old number. Opening the spool finishes the job; the report is not lost nor doubled.
#[test]
fn open_finishes_a_renumbering_a_crash_interrupted() {
    let dir = temp_dir();
    fs::create_dir_all(dir.path()).unwrap();
    fs::write(dir.path().join(format!("{:020}.json", 500)), encode_report(&report(7))).unwrap();
    let mut spool = Spool::open(dir.path(), BIG, 100).unwrap();
    assert_eq!(spool.stats().corrupt, 0);
    let (seq, bytes) = spool.peek_oldest().unwrap().unwrap();
    assert_eq!(seq, 500);
    assert_eq!(bytes, encode_report(&report(500)));
    assert_eq!(spool.len(), 1);
}

#[test]
fn reports_held_in_memory_are_renumbered_too() {
    let dir = temp_dir();
    let mut spool = Spool::open(dir.path(), BIG, 100).unwrap();
    spool.push(&report(1)).unwrap();
    let blocker = block_write(dir.path(), 2);
    assert!(spool.push(&report(2)).is_err());
    assert_eq!(spool.unwritten(), 1);
    assert_eq!(spool.renumber_from(1, 50).unwrap(), 52);
    assert_eq!(spool.highest_seq(), Some(51));
    fs::remove_dir(&blocker).unwrap();
    spool.flush().unwrap();
    assert_eq!(spool.unwritten(), 0);
    assert_eq!(spooled(&mut spool), vec![50, 51]);
}
