//! A probe's result: JSON for machines, a few readable lines for people, a table for
//! `--transport all`.

use std::fmt::{self, Write as _};

use serde::Serialize;

use super::ProbeArgs;
use crate::impair::ImpairStats;
use crate::summary::{Quantiles, Summary};
use crate::transport::{PublishStats, QuicPath, Transport, ViewEnd};

/// What the publisher measured.
#[derive(Debug, Clone, Serialize)]
pub struct PublisherSummary {
    /// Attempt start to the relay accepting the stream.
    pub publish_time_ms: Option<f64>,
    pub frames: u64,
    pub packets: u64,
    pub bytes: u64,
    /// Frames whose send started more than a frame interval late (congestion or flow control).
    pub frames_late: u64,
    pub send_errors: u64,
    /// How late the pacing timer woke (irtt's send-call error).
    pub timer_error_ms: Option<Quantiles>,
    /// Keyframe requests from the relay that started a new GOP.
    pub keyframes_forced: u64,
    /// Packets resent answering the relay's NACKs.
    pub retransmitted: u64,
    pub quic: Option<QuicPath>,
}

impl PublisherSummary {
    pub fn new(s: &PublishStats) -> Self {
        PublisherSummary {
            publish_time_ms: s.publish_time.map(|d| d.as_secs_f64() * 1e3),
            frames: s.frames,
            packets: s.packets,
            bytes: s.bytes,
            frames_late: s.frames_late,
            send_errors: s.send_errors,
            timer_error_ms: Quantiles::from_micros(&s.timer_error),
            keyframes_forced: s.keyframes_forced,
            retransmitted: s.retransmitted,
            quic: s.quic,
        }
    }
}

/// What one viewer measured.
#[derive(Debug, Clone, Serialize)]
pub struct ViewerResult {
    #[serde(flatten)]
    pub summary: Summary,
    pub rtt_ms: Option<Quantiles>,
    pub quic: Option<QuicPath>,
    pub end: ViewEnd,
}

/// One direction of the emulator.
#[derive(Debug, Clone, Serialize)]
pub struct EmulatedDirection {
    pub packets: u64,
    pub delivered: u64,
    pub dropped: u64,
    pub dropped_random: u64,
    pub dropped_burst: u64,
    pub dropped_queue: u64,
    pub dropped_outage: u64,
    /// Dropped because the emulator's own queue was full (not the emulated link).
    pub dropped_overflow: u64,
    /// Plain-UDP media packets among them, and how many of those were dropped.
    pub media_packets: u64,
    pub media_dropped: u64,
}

/// What the emulator did to this probe's traffic.
#[derive(Debug, Clone, Serialize)]
pub struct EmulatorSummary {
    pub settings: String,
    /// Probe to relay.
    pub up: EmulatedDirection,
    /// Relay to probe.
    pub down: EmulatedDirection,
}

impl EmulatorSummary {
    pub fn new(settings: &str, stats: &ImpairStats) -> Self {
        let dir = |d: &crate::impair::DirectionStats| EmulatedDirection {
            packets: d.received,
            delivered: d.link.delivered,
            dropped: d.link.dropped() + d.overflow_dropped,
            dropped_random: d.link.dropped_random,
            dropped_burst: d.link.dropped_burst,
            dropped_queue: d.link.dropped_queue,
            dropped_outage: d.link.dropped_outage,
            dropped_overflow: d.overflow_dropped,
            media_packets: d.media_packets,
            media_dropped: d.media_dropped,
        };
        EmulatorSummary {
            settings: settings.to_string(),
            up: dir(&stats.up),
            down: dir(&stats.down),
        }
    }
}

/// The result of probing one transport.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeResult {
    pub transport: Transport,
    pub relay: String,
    pub stream: String,
    pub profile: String,
    pub duration_s: f64,
    pub publisher: Option<PublisherSummary>,
    pub viewers: Vec<ViewerResult>,
    pub emulator: Option<EmulatorSummary>,
    pub errors: Vec<String>,
}

impl ProbeResult {
    pub fn new(args: &ProbeArgs, transport: Transport, stream: &str) -> Self {
        ProbeResult {
            transport,
            relay: args.relay.clone(),
            stream: stream.to_string(),
            profile: args.profile.clone(),
            duration_s: args.duration.as_secs_f64(),
            publisher: None,
            viewers: Vec::new(),
            emulator: None,
            errors: Vec::new(),
        }
    }
}

fn q(x: &Option<Quantiles>) -> String {
    x.map(|q| {
        format!(
            "p50 {:.2} ms  p95 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
            q.p50, q.p95, q.p99, q.max
        )
    })
    .unwrap_or_else(|| "-".into())
}

impl fmt::Display for ProbeResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        writeln!(
            out,
            "probe {} over {}: {} for {}s (stream {})",
            self.relay, self.transport, self.profile, self.duration_s, self.stream
        )?;
        if let Some(p) = &self.publisher {
            writeln!(
                out,
                "publish       accepted in {}; {} frames, {} packets, {:.1} MB; {} frames late, {} send errors",
                p.publish_time_ms.map(|t| format!("{t:.1} ms")).unwrap_or_else(|| "-".into()),
                p.frames,
                p.packets,
                p.bytes as f64 / 1e6,
                p.frames_late,
                p.send_errors
            )?;
            writeln!(out, "send timer    {}", q(&p.timer_error_ms))?;
            if p.retransmitted + p.keyframes_forced > 0 {
                writeln!(
                    out,
                    "publisher     {} packets resent to the relay, {} keyframes on request",
                    p.retransmitted, p.keyframes_forced
                )?;
            }
            if let Some(quic) = &p.quic {
                writeln!(
                    out,
                    "publisher QUIC rtt {:.2} ms, cwnd {} B, {} of {} packets lost, {} congestion events",
                    quic.rtt_ms,
                    quic.cwnd_bytes,
                    quic.lost_packets,
                    quic.sent_packets,
                    quic.congestion_events
                )?;
            }
        }
        for (i, v) in self.viewers.iter().enumerate() {
            if self.viewers.len() > 1 {
                writeln!(out, "--- viewer {} ({:?})", i + 1, v.end)?;
            }
            writeln!(out, "{}", v.summary)?;
            writeln!(out, "rtt           {}", q(&v.rtt_ms))?;
        }
        if let Some(e) = &self.emulator {
            writeln!(
                out,
                "emulator      {}: up {} of {} dropped, down {} of {} dropped",
                e.settings, e.up.dropped, e.up.packets, e.down.dropped, e.down.packets
            )?;
        }
        for e in &self.errors {
            writeln!(out, "error         {e}")?;
        }
        f.write_str(out.trim_end())
    }
}

/// `--transport all`: one column per transport.
pub fn table(results: &[ProbeResult]) -> String {
    let mut rows: Vec<(String, Vec<String>)> = Vec::new();
    let mut row = |name: &str, f: &dyn Fn(&ProbeResult) -> String| {
        rows.push((name.to_string(), results.iter().map(f).collect()));
    };
    let viewer = |r: &ProbeResult| r.viewers.first().map(|v| v.summary.clone());
    let ms = |x: Option<f64>| x.map(|v| format!("{v:.1} ms")).unwrap_or_else(|| "-".into());
    row("first frame", &|r| ms(viewer(r).and_then(|s| s.first_frame_ms)));
    row("loss", &|r| {
        viewer(r).map(|s| format!("{:.3} %", s.loss_ratio * 100.0)).unwrap_or_default()
    });
    row("bursts", &|r| viewer(r).map(|s| s.loss_bursts.to_string()).unwrap_or_default());
    row("reordered", &|r| viewer(r).map(|s| s.reordered.to_string()).unwrap_or_default());
    row("jitter p50", &|r| ms(viewer(r).and_then(|s| s.jitter_ms).map(|q| q.p50)));
    row("jitter p95", &|r| ms(viewer(r).and_then(|s| s.jitter_ms).map(|q| q.p95)));
    row("jitter p99", &|r| ms(viewer(r).and_then(|s| s.jitter_ms).map(|q| q.p99)));
    row("latency p95", &|r| ms(viewer(r).and_then(|s| s.latency_ms).map(|q| q.p95)));
    row("stalls", &|r| viewer(r).map(|s| s.stalls.to_string()).unwrap_or_default());
    row("stall ratio", &|r| {
        viewer(r).map(|s| format!("{:.2} %", s.stall_ratio * 100.0)).unwrap_or_default()
    });
    row("rtt p50", &|r| ms(r.viewers.first().and_then(|v| v.rtt_ms).map(|q| q.p50)));
    row("send timer p99", &|r| {
        ms(r.publisher.as_ref().and_then(|p| p.timer_error_ms).map(|q| q.p99))
    });
    row("errors", &|r| r.errors.len().to_string());
    let width = 16;
    let mut out = format!("{:<width$}", "");
    for r in results {
        let _ = write!(out, "{:>16}", r.transport.to_string());
    }
    out.push('\n');
    for (name, cells) in rows {
        let _ = write!(out, "{name:<width$}");
        for c in cells {
            let _ = write!(out, "{c:>16}");
        }
        out.push('\n');
    }
    for r in results {
        for e in &r.errors {
            let _ = writeln!(out, "{}: {e}", r.transport);
        }
    }
    out.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use stallwatch_measure::WindowMetrics;

    use super::*;
    use crate::transport::ViewEnd;

    /// The table's quantiles are the HDR histogram's own (`value_at_quantile`, exact to 3
    /// significant figures), not an interpolation inside coarse buckets: 94 jitter samples of
    /// 1.2 ms and 6 of 43.7 ms have a p95 of 43.7 ms (rank 95), which classic buckets (25, 50
    /// ms) would place anywhere between 25 and 50 ms.
    #[test]
    fn table_quantiles_are_the_hdr_histograms_exact_ones() {
        let mut total = WindowMetrics::default();
        total.jitter.record_n(1_200, 94);
        total.jitter.record_n(43_700, 6);
        let hdr_p95_ms = total.jitter.quantile(0.95) as f64 / 1_000.0;
        assert!((hdr_p95_ms - 43.7).abs() < 0.05, "{hdr_p95_ms}");
        let result = ProbeResult {
            transport: Transport::Udp,
            relay: "127.0.0.1:4433".into(),
            stream: "s".into(),
            profile: "720p30".into(),
            duration_s: 10.0,
            publisher: None,
            viewers: vec![ViewerResult {
                summary: Summary::new(&total),
                rtt_ms: None,
                quic: None,
                end: ViewEnd::Duration,
            }],
            emulator: None,
            errors: Vec::new(),
        };
        let table = table(&[result]);
        let row = |name: &str| {
            let line = table.lines().find(|l| l.starts_with(name)).unwrap();
            line[name.len()..].trim().to_owned()
        };
        assert_eq!(row("jitter p95"), format!("{hdr_p95_ms:.1} ms"), "{table}");
        assert_eq!(row("jitter p50"), "1.2 ms", "{table}");
        assert_eq!(row("jitter p99"), format!("{hdr_p95_ms:.1} ms"), "{table}");
    }
}
