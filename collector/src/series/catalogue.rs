//! What the collector exports: every report counter and histogram name an agent sends
//! (`measure/src/report.rs`), the Prometheus family it feeds, and each histogram's fixed
//! classic bucket layout.
//!
//! Bounds are kept in the report's own integer unit (µs, or packets) so that HDR values are
//! compared with them exactly; they are converted to base units (seconds) only when encoded.

use std::collections::HashMap;
use std::sync::LazyLock;

/// The unit a report histogram is recorded in, and the base unit it is exported in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistogramUnit {
    /// Recorded in µs, exported in seconds.
    Micros,
    /// Recorded and exported in packets.
    Packets,
}

impl HistogramUnit {
    /// What a recorded value is divided by to get the exported base unit.
    pub fn divisor(self) -> f64 {
        match self {
            HistogramUnit::Micros => 1e6,
            HistogramUnit::Packets => 1.0,
        }
    }

    /// The OpenMetrics unit, which is also the metric name's last part.
    pub fn exported(self) -> &'static str {
        match self {
            HistogramUnit::Micros => "seconds",
            HistogramUnit::Packets => "packets",
        }
    }
}

/// Viewer first-frame time (DESIGN.md section 6), µs: 0.05 to 20 s.
pub const FIRST_FRAME_BOUNDS_US: [u64; 14] = [
    50_000, 100_000, 200_000, 300_000, 500_000, 750_000, 1_000_000, 1_500_000, 2_000_000,
    3_000_000, 5_000_000, 8_000_000, 13_000_000, 20_000_000,
];
/// One first-frame phase, µs: as the first frame, plus 10 and 25 ms for fast connects.
pub const PHASE_BOUNDS_US: [u64; 16] = [
    10_000, 25_000, 50_000, 100_000, 200_000, 300_000, 500_000, 750_000, 1_000_000, 1_500_000,
    2_000_000, 3_000_000, 5_000_000, 8_000_000, 13_000_000, 20_000_000,
];
/// Jitter, PDV, IPDV and one-way latency, µs: 1 ms to 5 s. 30 and 50 ms are the jitter
/// warning and critical thresholds; 2 and 5 s catch deep (bufferbloated) queues.
pub const DELAY_BOUNDS_US: [u64; 14] = [
    1_000, 2_000, 5_000, 10_000, 20_000, 30_000, 50_000, 75_000, 100_000, 200_000, 500_000,
    1_000_000, 2_000_000, 5_000_000,
];
/// Stall duration, µs. Every stall is over 0.5 s; 0.6 s is the Agora Analytics variant.
pub const STALL_BOUNDS_US: [u64; 9] = [
    500_000, 600_000, 1_000_000, 2_000_000, 3_000_000, 5_000_000, 10_000_000, 20_000_000,
    60_000_000,
];
/// Reorder distance (`NextExp - s`, at least 1), packets.
pub const REORDER_BOUNDS: [u64; 13] = [1, 2, 3, 4, 6, 8, 12, 16, 32, 64, 128, 256, 1024];
/// Loss burst length (first to last loss inclusive, at least 2), packets.
pub const BURST_BOUNDS: [u64; 12] = [2, 3, 4, 5, 8, 16, 32, 64, 128, 256, 1024, 4096];

/// Publisher's publish time (attempt start to the relay accepting the stream), µs: as the
/// first frame.
pub const PUBLISH_BOUNDS_US: [u64; 14] = FIRST_FRAME_BOUNDS_US;
/// Path round-trip time, µs: 5 ms to 5 s, with 300 ms (the RTT warning) as a bound.
pub const RTT_BOUNDS_US: [u64; 14] = [
    5_000, 10_000, 20_000, 50_000, 75_000, 100_000, 150_000, 200_000, 300_000, 500_000, 750_000,
    1_000_000, 2_000_000, 5_000_000,
];
/// Send-timer error (how late the pacer sent each frame), µs: 10 µs to 50 ms; the target is
/// a p99 under 0.5 ms.
pub const SEND_TIMER_BOUNDS_US: [u64; 12] =
    [10, 25, 50, 100, 250, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000];

/// Repair delay (a gap seen to the retransmission that filled it), µs: 5 ms to 2 s. About one
/// round trip when the first NACK is answered; each further bound is a re-ask later.
pub const REPAIR_DELAY_BOUNDS_US: [u64; 13] = [
    5_000, 10_000, 20_000, 30_000, 50_000, 75_000, 100_000, 150_000, 200_000, 300_000, 500_000,
    1_000_000, 2_000_000,
];

/// A histogram metric family: one name, help, unit and bucket layout.
#[derive(Debug)]
pub struct HistogramFamily {
    /// Exported name without the unit, e.g. `stallwatch_jitter`; the encoder appends
    /// `_seconds` or `_packets`.
    pub name: &'static str,
    /// HELP text.
    pub help: &'static str,
    /// Recorded and exported unit.
    pub unit: HistogramUnit,
    /// Upper bounds (`le`) in the recorded unit, ascending; `+Inf` is implied.
    pub bounds: &'static [u64],
}

/// A report histogram name and where it goes.
#[derive(Debug)]
pub struct HistogramSpec {
    /// Name in the report, e.g. `jitter_us`.
    pub report: &'static str,
    /// Index into [`HISTOGRAM_FAMILIES`].
    pub family: usize,
    /// Extra label beside the cohort labels, e.g. `("phase", "connect")`.
    pub label: Option<(&'static str, &'static str)>,
}

impl HistogramSpec {
    /// The family this histogram is exported in.
    pub fn family(&self) -> &'static HistogramFamily {
        &HISTOGRAM_FAMILIES[self.family]
    }
}

/// Histogram families, in exposition order.
pub static HISTOGRAM_FAMILIES: [HistogramFamily; 14] = [
    HistogramFamily {
        name: "stallwatch_first_frame",
        help: "Viewer first-frame time: attempt start to the first complete keyframe.",
        unit: HistogramUnit::Micros,
        bounds: &FIRST_FRAME_BOUNDS_US,
    },
    HistogramFamily {
        name: "stallwatch_first_frame_phase",
        help: "Duration of one first-frame phase, from the end of the previous marked phase; \
               an attempt's phases add up to stallwatch_first_frame_seconds.",
        unit: HistogramUnit::Micros,
        bounds: &PHASE_BOUNDS_US,
    },
    HistogramFamily {
        name: "stallwatch_jitter",
        help: "RFC 3550 interarrival jitter, sampled after every packet.",
        unit: HistogramUnit::Micros,
        bounds: &DELAY_BOUNDS_US,
    },
    HistogramFamily {
        name: "stallwatch_delay_variation",
        help: "RFC 5481 packet delay variation: delay above the minimum of its report window.",
        unit: HistogramUnit::Micros,
        bounds: &DELAY_BOUNDS_US,
    },
    HistogramFamily {
        name: "stallwatch_ipdv",
        help: "RFC 5481 inter-packet delay variation of consecutive packets, magnitude.",
        unit: HistogramUnit::Micros,
        bounds: &DELAY_BOUNDS_US,
    },
    HistogramFamily {
        name: "stallwatch_latency",
        help: "One-way latency, only where the sender's clock offset is known.",
        unit: HistogramUnit::Micros,
        bounds: &DELAY_BOUNDS_US,
    },
    HistogramFamily {
        name: "stallwatch_stall_duration",
        help: "Length of each stall: a gap of over 500 ms between rendered frames.",
        unit: HistogramUnit::Micros,
        bounds: &STALL_BOUNDS_US,
    },
    HistogramFamily {
        name: "stallwatch_reorder_distance",
        help: "Sequence distance of each reordered packet (RFC 4737 NextExp minus its number).",
        unit: HistogramUnit::Packets,
        bounds: &REORDER_BOUNDS,
    },
    HistogramFamily {
        name: "stallwatch_loss_burst_length",
        help: "RFC 3611 loss burst length (Gmin 16), first to last loss inclusive.",
        unit: HistogramUnit::Packets,
        bounds: &BURST_BOUNDS,
    },
    HistogramFamily {
        name: "stallwatch_publish_time",
        help: "Publisher: attempt start to the relay accepting the stream.",
        unit: HistogramUnit::Micros,
        bounds: &PUBLISH_BOUNDS_US,
    },
    HistogramFamily {
        name: "stallwatch_rtt",
        help: "Viewer's path round-trip time: QUIC's RTT estimate, or the UDP echo RTT.",
        unit: HistogramUnit::Micros,
        bounds: &RTT_BOUNDS_US,
    },
    HistogramFamily {
        name: "stallwatch_send_timer_error",
        help: "Publisher: how late the pacer sent each frame after its scheduled time.",
        unit: HistogramUnit::Micros,
        bounds: &SEND_TIMER_BOUNDS_US,
    },
    HistogramFamily {
        name: "stallwatch_first_render",
        help: "Viewer: attempt start to the first frame on screen (its playout deadline).",
        unit: HistogramUnit::Micros,
        bounds: &FIRST_FRAME_BOUNDS_US,
    },
    HistogramFamily {
        name: "stallwatch_repair_delay",
        help: "Viewer with repair: a gap seen to the arrival of the retransmission that filled it.",
        unit: HistogramUnit::Micros,
        bounds: &REPAIR_DELAY_BOUNDS_US,
    },
];

/// Every report histogram name the collector knows, grouped by family in exposition order.
/// Phase names are `measure`'s `Phase::name`.
pub static HISTOGRAMS: [HistogramSpec; 18] = [
    HistogramSpec { report: "first_frame_us", family: 0, label: None },
    HistogramSpec {
        report: "first_frame_connect_us",
        family: 1,
        label: Some(("phase", "connect")),
    },
    HistogramSpec {
        report: "first_frame_handshake_us",
        family: 1,
        label: Some(("phase", "handshake")),
    },
    HistogramSpec {
        report: "first_frame_subscribe_us",
        family: 1,
        label: Some(("phase", "subscribe")),
    },
    HistogramSpec {
        report: "first_frame_first_byte_us",
        family: 1,
        label: Some(("phase", "first_byte")),
    },
    HistogramSpec {
        report: "first_frame_first_keyframe_us",
        family: 1,
        label: Some(("phase", "first_keyframe")),
    },
    HistogramSpec { report: "jitter_us", family: 2, label: None },
    HistogramSpec { report: "pdv_us", family: 3, label: None },
    HistogramSpec { report: "ipdv_us", family: 4, label: None },
    HistogramSpec { report: "latency_us", family: 5, label: None },
    HistogramSpec { report: "stall_duration_us", family: 6, label: None },
    HistogramSpec { report: "reorder_distance_packets", family: 7, label: None },
    HistogramSpec { report: "burst_length_packets", family: 8, label: None },
    HistogramSpec { report: "publish_time_us", family: 9, label: None },
    HistogramSpec { report: "rtt_us", family: 10, label: None },
    HistogramSpec { report: "send_timer_error_us", family: 11, label: None },
    HistogramSpec { report: "first_render_us", family: 12, label: None },
    HistogramSpec { report: "repair_delay_us", family: 13, label: None },
];

/// Number of histograms each cohort keeps.
pub const HISTOGRAM_COUNT: usize = HISTOGRAMS.len();

/// Where each histogram's bucket counts start in a cohort's flat bucket array.
pub(crate) const BUCKET_OFFSETS: [usize; HISTOGRAM_COUNT] = {
    let mut out = [0; HISTOGRAM_COUNT];
    let mut offset = 0;
    let mut i = 0;
    while i < HISTOGRAM_COUNT {
        out[i] = offset;
        offset += HISTOGRAM_FAMILIES[HISTOGRAMS[i].family].bounds.len() + 1;
        i += 1;
    }
    out
};

/// Bucket counts per cohort over all histograms, `+Inf` buckets included.
pub const BUCKET_SLOTS: usize = {
    let last = HISTOGRAM_COUNT - 1;
    BUCKET_OFFSETS[last] + HISTOGRAM_FAMILIES[HISTOGRAMS[last].family].bounds.len() + 1
};

/// The exported unit of a counter family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CounterUnit {
    /// A plain count.
    Count,
    /// Bytes.
    Bytes,
    /// Reported in ns, exported in seconds.
    NanosAsSeconds,
}

/// A counter metric family.
#[derive(Debug)]
pub struct CounterFamily {
    /// Exported name without unit and `_total`, e.g. `stallwatch_stall`; the encoder appends
    /// `_seconds` or `_bytes`, then `_total`.
    pub name: &'static str,
    /// HELP text.
    pub help: &'static str,
    /// Exported unit.
    pub unit: CounterUnit,
}

/// A report counter name and where it goes.
#[derive(Debug)]
pub struct CounterSpec {
    /// Name in the report, e.g. `packets_lost`.
    pub report: &'static str,
    /// Index into [`COUNTER_FAMILIES`].
    pub family: usize,
    /// Extra labels beside the cohort labels, e.g. `[("result", "rendered")]`.
    pub labels: &'static [(&'static str, &'static str)],
}

impl CounterSpec {
    /// The family this counter is exported in.
    pub fn family(&self) -> &'static CounterFamily {
        &COUNTER_FAMILIES[self.family]
    }
}

const fn count(name: &'static str, help: &'static str) -> CounterFamily {
    CounterFamily { name, help, unit: CounterUnit::Count }
}

/// Counter families, in exposition order.
pub static COUNTER_FAMILIES: [CounterFamily; 43] = [
    count(
        "stallwatch_packets_arrived",
        "Packets that arrived, duplicates and stale packets included.",
    ),
    CounterFamily {
        name: "stallwatch_received",
        help: "Bytes that arrived: 48-byte media header plus payload, no UDP, IP or QUIC overhead.",
        unit: CounterUnit::Bytes,
    },
    count(
        "stallwatch_packets_from_cache",
        "Packets replayed from the relay's GOP cache; left out of jitter and delay figures.",
    ),
    count(
        "stallwatch_packets_expected",
        "Sequence numbers decided (received or lost) after the loss wait time.",
    ),
    count("stallwatch_packets_received", "Sequence numbers decided as received."),
    count("stallwatch_packets_lost", "Sequence numbers decided as lost (RFC 7680, 2 s wait)."),
    count("stallwatch_packets_duplicate", "Copies of a sequence number already received."),
    count("stallwatch_packets_reordered", "Packets reordered by the RFC 4737 NextExp rule."),
    count(
        "stallwatch_packets_late_after_wait",
        "Packets that arrived after they had been declared lost; they stay lost.",
    ),
    count(
        "stallwatch_packets_stale",
        "Packets more than 65536 sequence numbers below the highest; they feed no metric.",
    ),
    count(
        "stallwatch_sequence_discontinuities",
        "Forward sequence jumps of 65536 or more; the numbers jumped over are not expected.",
    ),
    count(
        "stallwatch_loss_wait_cut_short",
        "Packets declared lost before their wait time ended (gap or history limits).",
    ),
    count("stallwatch_loss_bursts", "RFC 3611 loss bursts (Gmin 16) closed."),
    count("stallwatch_loss_burst_lost", "Packets lost inside loss bursts."),
    count("stallwatch_loss_burst_packets", "Packets inside loss bursts, first to last loss."),
    count("stallwatch_loss_gap_lost", "Packets lost outside loss bursts."),
    count(
        "stallwatch_loss_transitions",
        "Consecutive pairs of the loss indicator, for the Gilbert-Elliott fit: \
         p = (received to lost) / (from received), r = (lost to received) / (from lost).",
    ),
    count(
        "stallwatch_frames",
        "Frames at their playout deadline by result; a late frame is also counted as missing.",
    ),
    count(
        "stallwatch_fragments_out_of_window",
        "Fragments of frames 512 or more ahead of playback, dropped.",
    ),
    count("stallwatch_stalls", "Stalls: gaps of over 500 ms between rendered frames."),
    count("stallwatch_stalls_600ms", "Stalls of over 600 ms (a subset of stallwatch_stalls)."),
    count("stallwatch_freezes", "W3C webrtc-stats freezes between rendered frames."),
    CounterFamily {
        name: "stallwatch_stall",
        help: "Time in stalls; stall ratio = stall / (play + stall).",
        unit: CounterUnit::NanosAsSeconds,
    },
    CounterFamily {
        name: "stallwatch_play",
        help: "Time playing: gaps of at most 500 ms between rendered frames.",
        unit: CounterUnit::NanosAsSeconds,
    },
    CounterFamily {
        name: "stallwatch_freeze",
        help: "Time in W3C freezes.",
        unit: CounterUnit::NanosAsSeconds,
    },
    count("stallwatch_attempts", "Probe attempts started, by role (publisher or viewer)."),
    count(
        "stallwatch_attempt_failures",
        "Probe attempts that failed, by role and cause (unreachable, tls, stream_not_found, \
         refused, other).",
    ),
    count("stallwatch_packets_sent", "Publisher: media packets (or objects' fragments) sent."),
    CounterFamily {
        name: "stallwatch_sent",
        help: "Publisher: media bytes sent (48-byte header plus payload).",
        unit: CounterUnit::Bytes,
    },
    count("stallwatch_frames_sent", "Publisher: frames sent."),
    count(
        "stallwatch_frames_sent_late",
        "Publisher: frames sent after their time because congestion control held them back.",
    ),
    count("stallwatch_send_errors", "Publisher: sends that failed."),
    count(
        "stallwatch_frames_caught_up",
        "Frames of a cache replay decoded to reach the live edge, not shown.",
    ),
    count(
        "stallwatch_rebuffers",
        "Times the player's buffer ran dry and it resumed one playout delay later.",
    ),
    count(
        "stallwatch_packets_residual_expected",
        "Sequence numbers decided on the repaired stream (originals and retransmissions).",
    ),
    count(
        "stallwatch_packets_residual_lost",
        "Packets still missing after repair; residual loss = residual_lost / residual_expected.",
    ),
    count("stallwatch_nacks_sent", "NACK messages a viewer sent."),
    count("stallwatch_packets_nacked", "Sequence numbers a viewer asked for, counted once each."),
    count("stallwatch_nack_retries", "Further asks for sequence numbers already asked for."),
    count(
        "stallwatch_retransmissions_received",
        "Retransmitted packets that arrived, duplicates included.",
    ),
    count(
        "stallwatch_packets_repaired",
        "Missing packets whose first copy was a retransmission, within the loss wait.",
    ),
    count("stallwatch_keyframe_requests", "Keyframe requests (PLI) a viewer sent."),
    count(
        "stallwatch_self_noise_windows",
        "Viewer windows kept out of every other figure: the agent's own sender or emulator ran late.",
    ),
];

const fn one(report: &'static str, family: usize) -> CounterSpec {
    CounterSpec { report, family, labels: &[] }
}

/// Every report counter name the collector knows, grouped by family in exposition order.
pub static COUNTERS: [CounterSpec; 59] = [
    one("packets", 0),
    one("bytes", 1),
    one("packets_from_cache", 2),
    one("packets_expected", 3),
    one("packets_received", 4),
    one("packets_lost", 5),
    one("packets_duplicate", 6),
    one("packets_reordered", 7),
    one("packets_late_after_wait", 8),
    one("packets_stale", 9),
    one("sequence_discontinuities", 10),
    one("loss_wait_cut_short", 11),
    one("loss_bursts", 12),
    one("loss_burst_lost", 13),
    one("loss_burst_packets", 14),
    one("loss_gap_lost", 15),
    CounterSpec {
        report: "loss_received_then_received",
        family: 16,
        labels: &[("from", "received"), ("to", "received")],
    },
    CounterSpec {
        report: "loss_received_then_lost",
        family: 16,
        labels: &[("from", "received"), ("to", "lost")],
    },
    CounterSpec {
        report: "loss_lost_then_received",
        family: 16,
        labels: &[("from", "lost"), ("to", "received")],
    },
    CounterSpec {
        report: "loss_lost_then_lost",
        family: 16,
        labels: &[("from", "lost"), ("to", "lost")],
    },
    CounterSpec { report: "frames_rendered", family: 17, labels: &[("result", "rendered")] },
    CounterSpec { report: "frames_missing", family: 17, labels: &[("result", "missing")] },
    CounterSpec { report: "frames_undecodable", family: 17, labels: &[("result", "undecodable")] },
    CounterSpec { report: "frames_late", family: 17, labels: &[("result", "late")] },
    one("fragments_out_of_window", 18),
    one("stalls", 19),
    one("stalls_600ms", 20),
    one("freezes", 21),
    one("stall_time_ns", 22),
    one("play_time_ns", 23),
    one("freeze_time_ns", 24),
    CounterSpec { report: "publish_attempts", family: 25, labels: &[("role", "publisher")] },
    CounterSpec { report: "view_attempts", family: 25, labels: &[("role", "viewer")] },
    CounterSpec {
        report: "publish_failures_unreachable",
        family: 26,
        labels: &[("role", "publisher"), ("cause", "unreachable")],
    },
    CounterSpec {
        report: "publish_failures_tls",
        family: 26,
        labels: &[("role", "publisher"), ("cause", "tls")],
    },
    CounterSpec {
        report: "publish_failures_stream_not_found",
        family: 26,
        labels: &[("role", "publisher"), ("cause", "stream_not_found")],
    },
    CounterSpec {
        report: "publish_failures_refused",
        family: 26,
        labels: &[("role", "publisher"), ("cause", "refused")],
    },
    CounterSpec {
        report: "publish_failures_other",
        family: 26,
        labels: &[("role", "publisher"), ("cause", "other")],
    },
    CounterSpec {
        report: "view_failures_unreachable",
        family: 26,
        labels: &[("role", "viewer"), ("cause", "unreachable")],
    },
    CounterSpec {
        report: "view_failures_tls",
        family: 26,
        labels: &[("role", "viewer"), ("cause", "tls")],
    },
    CounterSpec {
        report: "view_failures_stream_not_found",
        family: 26,
        labels: &[("role", "viewer"), ("cause", "stream_not_found")],
    },
    CounterSpec {
        report: "view_failures_refused",
        family: 26,
        labels: &[("role", "viewer"), ("cause", "refused")],
    },
    CounterSpec {
        report: "view_failures_other",
        family: 26,
        labels: &[("role", "viewer"), ("cause", "other")],
    },
    one("sent_packets", 27),
    one("sent_bytes", 28),
    one("sent_frames", 29),
    one("sent_frames_late", 30),
    one("send_errors", 31),
    one("frames_caught_up", 32),
    one("rebuffers", 33),
    one("packets_residual_expected", 34),
    one("packets_residual_lost", 35),
    one("nacks_sent", 36),
    one("packets_nacked", 37),
    one("nack_retries", 38),
    one("retransmissions_received", 39),
    one("packets_repaired", 40),
    one("keyframe_requests", 41),
    one("self_noise_windows", 42),
];

/// Number of counters each cohort keeps.
pub const COUNTER_COUNT: usize = COUNTERS.len();

/// Series each cohort holds: one per histogram (all its buckets, sum and count together, as
/// Prometheus counts a native histogram) and one per counter. The series limit is counted
/// in these.
pub const SERIES_PER_COHORT: usize = HISTOGRAM_COUNT + COUNTER_COUNT;

static HISTOGRAM_INDEX: LazyLock<HashMap<&'static str, usize>> =
    LazyLock::new(|| HISTOGRAMS.iter().enumerate().map(|(i, s)| (s.report, i)).collect());
static COUNTER_INDEX: LazyLock<HashMap<&'static str, usize>> =
    LazyLock::new(|| COUNTERS.iter().enumerate().map(|(i, s)| (s.report, i)).collect());

/// Index into [`HISTOGRAMS`] of a report histogram name.
pub fn histogram_index(report_name: &str) -> Option<usize> {
    HISTOGRAM_INDEX.get(report_name).copied()
}

/// Index into [`COUNTERS`] of a report counter name.
pub fn counter_index(report_name: &str) -> Option<usize> {
    COUNTER_INDEX.get(report_name).copied()
}
