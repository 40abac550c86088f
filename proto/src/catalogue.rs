//! The metric catalogue: every counter and histogram an agent can put in a report series, the
//! Prometheus family the collector exports it in, its unit, help text and (for histograms) the
//! fixed classic bucket layout. This is the one place the names of the agent-collector
//! contract are written; `measure`, the agent and the collector name metrics by these enums.
//!
//! Adding a counter is one line in the [`Counter`] table (the `catalogue_enum!` invocation
//! below; for a new family, also one constant in [`families`]), plus the code that counts it. `ALL` and the exhaustive matches
//! make a forgotten variant a compile error; the collector's tests compare the exported
//! families with a committed list and with `docs/metrics.md`.
//!
//! Bounds are kept in the report's own integer unit (µs, or packets) so that HDR values are
//! compared with them exactly; the collector converts them to base units (seconds) when it
//! encodes them.

/// Whether a report name is a counter or a histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// An increment over the report window; exported as a Prometheus counter.
    Counter,
    /// Values with their exact sum and count; exported as a Prometheus histogram.
    Histogram,
}

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
    pub const fn exported(self) -> &'static str {
        match self {
            HistogramUnit::Micros => "seconds",
            HistogramUnit::Packets => "packets",
        }
    }
}

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

impl CounterUnit {
    /// The OpenMetrics unit, which is also the name's part before `_total`; none for a count.
    pub const fn exported(self) -> Option<&'static str> {
        match self {
            CounterUnit::Count => None,
            CounterUnit::Bytes => Some("bytes"),
            CounterUnit::NanosAsSeconds => Some("seconds"),
        }
    }
}

/// A histogram metric family: one name, help, unit and bucket layout.
#[derive(Debug, PartialEq, Eq)]
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

impl HistogramFamily {
    /// The name Prometheus stores, e.g. `stallwatch_jitter_seconds` (its series add
    /// `_bucket`, `_sum` and `_count`).
    pub fn exported_name(&self) -> String {
        format!("{}_{}", self.name, self.unit.exported())
    }
}

/// A counter metric family.
#[derive(Debug, PartialEq, Eq)]
pub struct CounterFamily {
    /// Exported name without unit and `_total`, e.g. `stallwatch_stall`; the encoder appends
    /// `_seconds` or `_bytes`, then `_total`.
    pub name: &'static str,
    /// HELP text.
    pub help: &'static str,
    /// Exported unit.
    pub unit: CounterUnit,
}

impl CounterFamily {
    /// The name Prometheus stores, e.g. `stallwatch_stall_seconds_total`.
    pub fn exported_name(&self) -> String {
        match self.unit.exported() {
            Some(unit) => format!("{}_{unit}_total", self.name),
            None => format!("{}_total", self.name),
        }
    }
}

/// Why an attempt failed: the `cause` label of `stallwatch_attempt_failures_total`, and the
/// last part of the report names `publish_failures_<cause>` and `view_failures_<cause>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureCause {
    /// No answer from the relay (or its name did not resolve).
    Unreachable,
    /// The TLS handshake failed (certificate not trusted, wrong name, revoked).
    Tls,
    /// The relay has no such stream (view).
    StreamNotFound,
    /// The relay refused for another reason (limits, stream exists, rate limit, credential).
    Refused,
    /// Anything else (connection lost, local error, an untyped error).
    Other,
}

impl FailureCause {
    /// Every cause.
    pub const ALL: [FailureCause; 5] = [
        FailureCause::Unreachable,
        FailureCause::Tls,
        FailureCause::StreamNotFound,
        FailureCause::Refused,
        FailureCause::Other,
    ];

    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            FailureCause::Unreachable => "unreachable",
            FailureCause::Tls => "tls",
            FailureCause::StreamNotFound => "stream_not_found",
            FailureCause::Refused => "refused",
            FailureCause::Other => "other",
        }
    }
}

/// Classic bucket layouts, in each histogram's recorded unit.
pub mod bounds {
    /// Viewer first-frame time (DESIGN.md section 6), µs: 0.05 to 20 s.
    pub const FIRST_FRAME_US: [u64; 14] = [
        50_000, 100_000, 200_000, 300_000, 500_000, 750_000, 1_000_000, 1_500_000, 2_000_000,
        3_000_000, 5_000_000, 8_000_000, 13_000_000, 20_000_000,
    ];
    /// One first-frame phase, µs: as the first frame, plus 10 and 25 ms for fast connects.
    pub const PHASE_US: [u64; 16] = [
        10_000, 25_000, 50_000, 100_000, 200_000, 300_000, 500_000, 750_000, 1_000_000, 1_500_000,
        2_000_000, 3_000_000, 5_000_000, 8_000_000, 13_000_000, 20_000_000,
    ];
    /// Jitter, PDV, IPDV and one-way latency, µs: 1 ms to 5 s. 30 and 50 ms are the jitter
    /// warning and critical thresholds; 2 and 5 s catch deep (bufferbloated) queues.
    pub const DELAY_US: [u64; 14] = [
        1_000, 2_000, 5_000, 10_000, 20_000, 30_000, 50_000, 75_000, 100_000, 200_000, 500_000,
        1_000_000, 2_000_000, 5_000_000,
    ];
    /// Stall duration, µs. Every stall is over 0.5 s; 0.6 s is the Agora Analytics variant.
    pub const STALL_US: [u64; 9] = [
        500_000, 600_000, 1_000_000, 2_000_000, 3_000_000, 5_000_000, 10_000_000, 20_000_000,
        60_000_000,
    ];
    /// Reorder distance (`NextExp - s`, at least 1), packets.
    pub const REORDER: [u64; 13] = [1, 2, 3, 4, 6, 8, 12, 16, 32, 64, 128, 256, 1024];
    /// Loss burst length (first to last loss inclusive, at least 2), packets.
    pub const BURST: [u64; 12] = [2, 3, 4, 5, 8, 16, 32, 64, 128, 256, 1024, 4096];
    /// Publisher's publish time (attempt start to the relay accepting the stream), µs: as the
    /// first frame.
    pub const PUBLISH_US: [u64; 14] = FIRST_FRAME_US;
    /// Path round-trip time, µs: 5 ms to 5 s, with 300 ms (the RTT warning) as a bound.
    pub const RTT_US: [u64; 14] = [
        5_000, 10_000, 20_000, 50_000, 75_000, 100_000, 150_000, 200_000, 300_000, 500_000,
        750_000, 1_000_000, 2_000_000, 5_000_000,
    ];
    /// Send-timer error (how late the pacer sent each frame), µs: 10 µs to 50 ms; the target
    /// is a p99 under 0.5 ms.
    pub const SEND_TIMER_US: [u64; 12] =
        [10, 25, 50, 100, 250, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000];
    /// Repair delay (a gap seen to the retransmission that filled it), µs: 5 ms to 2 s. About
    /// one round trip when the first NACK is answered; each further bound is a re-ask later.
    pub const REPAIR_DELAY_US: [u64; 13] = [
        5_000, 10_000, 20_000, 30_000, 50_000, 75_000, 100_000, 150_000, 200_000, 300_000, 500_000,
        1_000_000, 2_000_000,
    ];
}

/// The exported families. Several report names may feed one family, told apart by labels.
pub mod families {
    use super::bounds;
    use super::{CounterFamily, CounterUnit, HistogramFamily, HistogramUnit};

    const fn micros(
        name: &'static str,
        help: &'static str,
        bounds: &'static [u64],
    ) -> HistogramFamily {
        HistogramFamily { name, help, unit: HistogramUnit::Micros, bounds }
    }

    const fn packets(
        name: &'static str,
        help: &'static str,
        bounds: &'static [u64],
    ) -> HistogramFamily {
        HistogramFamily { name, help, unit: HistogramUnit::Packets, bounds }
    }

    const fn count(name: &'static str, help: &'static str) -> CounterFamily {
        CounterFamily { name, help, unit: CounterUnit::Count }
    }

    const fn bytes(name: &'static str, help: &'static str) -> CounterFamily {
        CounterFamily { name, help, unit: CounterUnit::Bytes }
    }

    const fn seconds(name: &'static str, help: &'static str) -> CounterFamily {
        CounterFamily { name, help, unit: CounterUnit::NanosAsSeconds }
    }

    // Histogram families.

    /// `stallwatch_first_frame_seconds`.
    pub const FIRST_FRAME: HistogramFamily = micros(
        "stallwatch_first_frame",
        "Viewer first-frame time: attempt start to the first complete keyframe.",
        &bounds::FIRST_FRAME_US,
    );
    /// `stallwatch_first_frame_phase_seconds{phase}`.
    pub const FIRST_FRAME_PHASE: HistogramFamily = micros(
        "stallwatch_first_frame_phase",
        "Duration of one first-frame phase, from the end of the previous marked phase; \
         an attempt's phases add up to stallwatch_first_frame_seconds.",
        &bounds::PHASE_US,
    );
    /// `stallwatch_jitter_seconds`.
    pub const JITTER: HistogramFamily = micros(
        "stallwatch_jitter",
        "RFC 3550 interarrival jitter, sampled after every packet.",
        &bounds::DELAY_US,
    );
    /// `stallwatch_delay_variation_seconds`.
    pub const DELAY_VARIATION: HistogramFamily = micros(
        "stallwatch_delay_variation",
        "RFC 5481 packet delay variation: delay above the minimum of its report window.",
        &bounds::DELAY_US,
    );
    /// `stallwatch_ipdv_seconds`.
    pub const IPDV: HistogramFamily = micros(
        "stallwatch_ipdv",
        "RFC 5481 inter-packet delay variation of consecutive packets, magnitude.",
        &bounds::DELAY_US,
    );
    /// `stallwatch_latency_seconds`.
    pub const LATENCY: HistogramFamily = micros(
        "stallwatch_latency",
        "One-way latency, only where the sender's clock offset is known.",
        &bounds::DELAY_US,
    );
    /// `stallwatch_stall_duration_seconds`.
    pub const STALL_DURATION: HistogramFamily = micros(
        "stallwatch_stall_duration",
        "Length of each stall: a gap of over 500 ms between rendered frames.",
        &bounds::STALL_US,
    );
    /// `stallwatch_reorder_distance_packets`.
    pub const REORDER_DISTANCE: HistogramFamily = packets(
        "stallwatch_reorder_distance",
        "Sequence distance of each reordered packet (RFC 4737 NextExp minus its number).",
        &bounds::REORDER,
    );
    /// `stallwatch_loss_burst_length_packets`.
    pub const LOSS_BURST_LENGTH: HistogramFamily = packets(
        "stallwatch_loss_burst_length",
        "RFC 3611 loss burst length (Gmin 16), first to last loss inclusive.",
        &bounds::BURST,
    );
    /// `stallwatch_publish_time_seconds`.
    pub const PUBLISH_TIME: HistogramFamily = micros(
        "stallwatch_publish_time",
        "Publisher: attempt start to the relay accepting the stream.",
        &bounds::PUBLISH_US,
    );
    /// `stallwatch_rtt_seconds`.
    pub const RTT: HistogramFamily = micros(
        "stallwatch_rtt",
        "Viewer's path round-trip time: QUIC's RTT estimate, or the UDP echo RTT.",
        &bounds::RTT_US,
    );
    /// `stallwatch_send_timer_error_seconds`.
    pub const SEND_TIMER_ERROR: HistogramFamily = micros(
        "stallwatch_send_timer_error",
        "Publisher: how late the pacer sent each frame after its scheduled time.",
        &bounds::SEND_TIMER_US,
    );
    /// `stallwatch_first_render_seconds`.
    pub const FIRST_RENDER: HistogramFamily = micros(
        "stallwatch_first_render",
        "Viewer: attempt start to the first frame on screen (its playout deadline).",
        &bounds::FIRST_FRAME_US,
    );
    /// `stallwatch_repair_delay_seconds`.
    pub const REPAIR_DELAY: HistogramFamily = micros(
        "stallwatch_repair_delay",
        "Viewer with repair: a gap seen to the arrival of the retransmission that filled it.",
        &bounds::REPAIR_DELAY_US,
    );

    // Counter families.

    /// `stallwatch_packets_arrived_total`.
    pub const PACKETS_ARRIVED: CounterFamily = count(
        "stallwatch_packets_arrived",
        "Packets that arrived, duplicates and stale packets included.",
    );
    /// `stallwatch_received_bytes_total`.
    pub const RECEIVED: CounterFamily = bytes(
        "stallwatch_received",
        "Bytes that arrived: 48-byte media header plus payload, no UDP, IP or QUIC overhead.",
    );
    /// `stallwatch_packets_from_cache_total`.
    pub const PACKETS_FROM_CACHE: CounterFamily = count(
        "stallwatch_packets_from_cache",
        "Packets replayed from the relay's GOP cache; left out of jitter and delay figures.",
    );
    /// `stallwatch_packets_expected_total`.
    pub const PACKETS_EXPECTED: CounterFamily = count(
        "stallwatch_packets_expected",
        "Sequence numbers decided (received or lost) after the loss wait time.",
    );
    /// `stallwatch_packets_received_total`.
    pub const PACKETS_RECEIVED: CounterFamily =
        count("stallwatch_packets_received", "Sequence numbers decided as received.");
    /// `stallwatch_packets_lost_total`.
    pub const PACKETS_LOST: CounterFamily =
        count("stallwatch_packets_lost", "Sequence numbers decided as lost (RFC 7680, 2 s wait).");
    /// `stallwatch_packets_duplicate_total`.
    pub const PACKETS_DUPLICATE: CounterFamily =
        count("stallwatch_packets_duplicate", "Copies of a sequence number already received.");
    /// `stallwatch_packets_reordered_total`.
    pub const PACKETS_REORDERED: CounterFamily =
        count("stallwatch_packets_reordered", "Packets reordered by the RFC 4737 NextExp rule.");
    /// `stallwatch_packets_late_after_wait_total`.
    pub const PACKETS_LATE_AFTER_WAIT: CounterFamily = count(
        "stallwatch_packets_late_after_wait",
        "Packets that arrived after they had been declared lost; they stay lost.",
    );
    /// `stallwatch_packets_stale_total`.
    pub const PACKETS_STALE: CounterFamily = count(
        "stallwatch_packets_stale",
        "Packets more than 65536 sequence numbers below the highest; they feed no metric.",
    );
    /// `stallwatch_sequence_discontinuities_total`.
    pub const SEQUENCE_DISCONTINUITIES: CounterFamily = count(
        "stallwatch_sequence_discontinuities",
        "Forward sequence jumps of 65536 or more; the numbers jumped over are not expected.",
    );
    /// `stallwatch_loss_wait_cut_short_total`.
    pub const LOSS_WAIT_CUT_SHORT: CounterFamily = count(
        "stallwatch_loss_wait_cut_short",
        "Packets declared lost before their wait time ended (gap or history limits).",
    );
    /// `stallwatch_loss_bursts_total`.
    pub const LOSS_BURSTS: CounterFamily =
        count("stallwatch_loss_bursts", "RFC 3611 loss bursts (Gmin 16) closed.");
    /// `stallwatch_loss_burst_lost_total`.
    pub const LOSS_BURST_LOST: CounterFamily =
        count("stallwatch_loss_burst_lost", "Packets lost inside loss bursts.");
    /// `stallwatch_loss_burst_packets_total`.
    pub const LOSS_BURST_PACKETS: CounterFamily =
        count("stallwatch_loss_burst_packets", "Packets inside loss bursts, first to last loss.");
    /// `stallwatch_loss_gap_lost_total`.
    pub const LOSS_GAP_LOST: CounterFamily =
        count("stallwatch_loss_gap_lost", "Packets lost outside loss bursts.");
    /// `stallwatch_loss_transitions_total{from,to}`.
    pub const LOSS_TRANSITIONS: CounterFamily = count(
        "stallwatch_loss_transitions",
        "Consecutive pairs of the loss indicator, for the Gilbert-Elliott fit: \
         p = (received to lost) / (from received), r = (lost to received) / (from lost).",
    );
    /// `stallwatch_frames_total{result}`.
    pub const FRAMES: CounterFamily = count(
        "stallwatch_frames",
        "Frames at their playout deadline by result; a late frame is also counted as missing.",
    );
    /// `stallwatch_fragments_out_of_window_total`.
    pub const FRAGMENTS_OUT_OF_WINDOW: CounterFamily = count(
        "stallwatch_fragments_out_of_window",
        "Fragments of frames 512 or more ahead of playback, dropped.",
    );
    /// `stallwatch_stalls_total`.
    pub const STALLS: CounterFamily =
        count("stallwatch_stalls", "Stalls: gaps of over 500 ms between rendered frames.");
    /// `stallwatch_stalls_600ms_total`.
    pub const STALLS_600MS: CounterFamily =
        count("stallwatch_stalls_600ms", "Stalls of over 600 ms (a subset of stallwatch_stalls).");
    /// `stallwatch_freezes_total`.
    pub const FREEZES: CounterFamily =
        count("stallwatch_freezes", "W3C webrtc-stats freezes between rendered frames.");
    /// `stallwatch_stall_seconds_total`.
    pub const STALL: CounterFamily =
        seconds("stallwatch_stall", "Time in stalls; stall ratio = stall / (play + stall).");
    /// `stallwatch_play_seconds_total`.
    pub const PLAY: CounterFamily =
        seconds("stallwatch_play", "Time playing: gaps of at most 500 ms between rendered frames.");
    /// `stallwatch_freeze_seconds_total`.
    pub const FREEZE: CounterFamily = seconds("stallwatch_freeze", "Time in W3C freezes.");
    /// `stallwatch_attempts_total{role}`.
    pub const ATTEMPTS: CounterFamily =
        count("stallwatch_attempts", "Probe attempts started, by role (publisher or viewer).");
    /// `stallwatch_attempt_failures_total{role,cause}`.
    pub const ATTEMPT_FAILURES: CounterFamily = count(
        "stallwatch_attempt_failures",
        "Probe attempts that failed, by role and cause (unreachable, tls, stream_not_found, \
         refused, other).",
    );
    /// `stallwatch_packets_sent_total`.
    pub const PACKETS_SENT: CounterFamily =
        count("stallwatch_packets_sent", "Publisher: media packets (or objects' fragments) sent.");
    /// `stallwatch_sent_bytes_total`.
    pub const SENT: CounterFamily =
        bytes("stallwatch_sent", "Publisher: media bytes sent (48-byte header plus payload).");
    /// `stallwatch_frames_sent_total`.
    pub const FRAMES_SENT: CounterFamily =
        count("stallwatch_frames_sent", "Publisher: frames sent.");
    /// `stallwatch_frames_sent_late_total`.
    pub const FRAMES_SENT_LATE: CounterFamily = count(
        "stallwatch_frames_sent_late",
        "Publisher: frames sent after their time because congestion control held them back.",
    );
    /// `stallwatch_send_errors_total`.
    pub const SEND_ERRORS: CounterFamily =
        count("stallwatch_send_errors", "Publisher: sends that failed.");
    /// `stallwatch_frames_caught_up_total`.
    pub const FRAMES_CAUGHT_UP: CounterFamily = count(
        "stallwatch_frames_caught_up",
        "Frames of a cache replay decoded to reach the live edge, not shown.",
    );
    /// `stallwatch_rebuffers_total`.
    pub const REBUFFERS: CounterFamily = count(
        "stallwatch_rebuffers",
        "Times the player's buffer ran dry and it resumed one playout delay later.",
    );
    /// `stallwatch_packets_residual_expected_total`.
    pub const PACKETS_RESIDUAL_EXPECTED: CounterFamily = count(
        "stallwatch_packets_residual_expected",
        "Sequence numbers decided on the repaired stream (originals and retransmissions).",
    );
    /// `stallwatch_packets_residual_lost_total`.
    pub const PACKETS_RESIDUAL_LOST: CounterFamily = count(
        "stallwatch_packets_residual_lost",
        "Packets still missing after repair; residual loss = residual_lost / residual_expected.",
    );
    /// `stallwatch_nacks_sent_total`.
    pub const NACKS_SENT: CounterFamily =
        count("stallwatch_nacks_sent", "NACK messages a viewer sent.");
    /// `stallwatch_packets_nacked_total`.
    pub const PACKETS_NACKED: CounterFamily = count(
        "stallwatch_packets_nacked",
        "Sequence numbers a viewer asked for, counted once each.",
    );
    /// `stallwatch_nack_retries_total`.
    pub const NACK_RETRIES: CounterFamily =
        count("stallwatch_nack_retries", "Further asks for sequence numbers already asked for.");
    /// `stallwatch_retransmissions_received_total`.
    pub const RETRANSMISSIONS_RECEIVED: CounterFamily = count(
        "stallwatch_retransmissions_received",
        "Retransmitted packets that arrived, duplicates included.",
    );
    /// `stallwatch_packets_repaired_total`.
    pub const PACKETS_REPAIRED: CounterFamily = count(
        "stallwatch_packets_repaired",
        "Missing packets whose first copy was a retransmission, within the loss wait.",
    );
    /// `stallwatch_keyframe_requests_total`.
    pub const KEYFRAME_REQUESTS: CounterFamily =
        count("stallwatch_keyframe_requests", "Keyframe requests (PLI) a viewer sent.");
    /// `stallwatch_self_noise_windows_total`.
    pub const SELF_NOISE_WINDOWS: CounterFamily = count(
        "stallwatch_self_noise_windows",
        "Viewer windows kept out of every other figure: the agent's own sender or emulator ran late.",
    );
}

/// Writes one catalogue enum from its table: the variants (in exposition order, grouped by
/// family), `ALL`, and one exhaustive match per fact.
macro_rules! catalogue_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident in $family_type:ident {
            $( $variant:ident = $report:literal in $family:ident $labels:tt, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $(
                #[doc = concat!("`", $report, "`")]
                $variant,
            )+
        }

        impl $name {
            /// Every variant, in exposition order (grouped by family).
            pub const ALL: [$name; [$($report),+].len()] = [$($name::$variant),+];

            /// The name in a report series (what the agent sends).
            pub const fn report_name(self) -> &'static str {
                match self {
                    $($name::$variant => $report,)+
                }
            }

            /// The exported family: name, help and unit.
            pub const fn family(self) -> &'static $family_type {
                match self {
                    $($name::$variant => &families::$family,)+
                }
            }

            /// Labels added beside the cohort labels, e.g. `[("result", "rendered")]`.
            pub const fn labels(self) -> &'static [(&'static str, &'static str)] {
                match self {
                    $($name::$variant => &$labels,)+
                }
            }

            /// The variant of a report name.
            pub fn from_report_name(name: &str) -> Option<$name> {
                match name {
                    $($report => Some($name::$variant),)+
                    _ => None,
                }
            }

            /// Position in [`Self::ALL`].
            pub const fn index(self) -> usize {
                self as usize
            }
        }
    };
}

catalogue_enum! {
    /// A report counter: an increment over the report window.
    pub enum Counter in CounterFamily {
        Packets = "packets" in PACKETS_ARRIVED [],
        Bytes = "bytes" in RECEIVED [],
        PacketsFromCache = "packets_from_cache" in PACKETS_FROM_CACHE [],
        PacketsExpected = "packets_expected" in PACKETS_EXPECTED [],
        PacketsReceived = "packets_received" in PACKETS_RECEIVED [],
        PacketsLost = "packets_lost" in PACKETS_LOST [],
        PacketsDuplicate = "packets_duplicate" in PACKETS_DUPLICATE [],
        PacketsReordered = "packets_reordered" in PACKETS_REORDERED [],
        PacketsLateAfterWait = "packets_late_after_wait" in PACKETS_LATE_AFTER_WAIT [],
        PacketsStale = "packets_stale" in PACKETS_STALE [],
        SequenceDiscontinuities = "sequence_discontinuities" in SEQUENCE_DISCONTINUITIES [],
        LossWaitCutShort = "loss_wait_cut_short" in LOSS_WAIT_CUT_SHORT [],
        LossBursts = "loss_bursts" in LOSS_BURSTS [],
        LossBurstLost = "loss_burst_lost" in LOSS_BURST_LOST [],
        LossBurstPackets = "loss_burst_packets" in LOSS_BURST_PACKETS [],
        LossGapLost = "loss_gap_lost" in LOSS_GAP_LOST [],
        LossReceivedThenReceived = "loss_received_then_received" in LOSS_TRANSITIONS
            [("from", "received"), ("to", "received")],
        LossReceivedThenLost = "loss_received_then_lost" in LOSS_TRANSITIONS
            [("from", "received"), ("to", "lost")],
        LossLostThenReceived = "loss_lost_then_received" in LOSS_TRANSITIONS
            [("from", "lost"), ("to", "received")],
        LossLostThenLost = "loss_lost_then_lost" in LOSS_TRANSITIONS
            [("from", "lost"), ("to", "lost")],
        FramesRendered = "frames_rendered" in FRAMES [("result", "rendered")],
        FramesMissing = "frames_missing" in FRAMES [("result", "missing")],
        FramesUndecodable = "frames_undecodable" in FRAMES [("result", "undecodable")],
        FramesLate = "frames_late" in FRAMES [("result", "late")],
        FragmentsOutOfWindow = "fragments_out_of_window" in FRAGMENTS_OUT_OF_WINDOW [],
        Stalls = "stalls" in STALLS [],
        Stalls600ms = "stalls_600ms" in STALLS_600MS [],
        Freezes = "freezes" in FREEZES [],
        StallTimeNs = "stall_time_ns" in STALL [],
        PlayTimeNs = "play_time_ns" in PLAY [],
        FreezeTimeNs = "freeze_time_ns" in FREEZE [],
        PublishAttempts = "publish_attempts" in ATTEMPTS [("role", "publisher")],
        ViewAttempts = "view_attempts" in ATTEMPTS [("role", "viewer")],
        PublishFailuresUnreachable = "publish_failures_unreachable" in ATTEMPT_FAILURES
            [("role", "publisher"), ("cause", "unreachable")],
        PublishFailuresTls = "publish_failures_tls" in ATTEMPT_FAILURES
            [("role", "publisher"), ("cause", "tls")],
        PublishFailuresStreamNotFound = "publish_failures_stream_not_found" in ATTEMPT_FAILURES
            [("role", "publisher"), ("cause", "stream_not_found")],
        PublishFailuresRefused = "publish_failures_refused" in ATTEMPT_FAILURES
            [("role", "publisher"), ("cause", "refused")],
        PublishFailuresOther = "publish_failures_other" in ATTEMPT_FAILURES
            [("role", "publisher"), ("cause", "other")],
        ViewFailuresUnreachable = "view_failures_unreachable" in ATTEMPT_FAILURES
            [("role", "viewer"), ("cause", "unreachable")],
        ViewFailuresTls = "view_failures_tls" in ATTEMPT_FAILURES
            [("role", "viewer"), ("cause", "tls")],
        ViewFailuresStreamNotFound = "view_failures_stream_not_found" in ATTEMPT_FAILURES
            [("role", "viewer"), ("cause", "stream_not_found")],
        ViewFailuresRefused = "view_failures_refused" in ATTEMPT_FAILURES
            [("role", "viewer"), ("cause", "refused")],
        ViewFailuresOther = "view_failures_other" in ATTEMPT_FAILURES
            [("role", "viewer"), ("cause", "other")],
        SentPackets = "sent_packets" in PACKETS_SENT [],
        SentBytes = "sent_bytes" in SENT [],
        SentFrames = "sent_frames" in FRAMES_SENT [],
        SentFramesLate = "sent_frames_late" in FRAMES_SENT_LATE [],
        SendErrors = "send_errors" in SEND_ERRORS [],
        FramesCaughtUp = "frames_caught_up" in FRAMES_CAUGHT_UP [],
        Rebuffers = "rebuffers" in REBUFFERS [],
        PacketsResidualExpected = "packets_residual_expected" in PACKETS_RESIDUAL_EXPECTED [],
        PacketsResidualLost = "packets_residual_lost" in PACKETS_RESIDUAL_LOST [],
        NacksSent = "nacks_sent" in NACKS_SENT [],
        PacketsNacked = "packets_nacked" in PACKETS_NACKED [],
        NackRetries = "nack_retries" in NACK_RETRIES [],
        RetransmissionsReceived = "retransmissions_received" in RETRANSMISSIONS_RECEIVED [],
        PacketsRepaired = "packets_repaired" in PACKETS_REPAIRED [],
        KeyframeRequests = "keyframe_requests" in KEYFRAME_REQUESTS [],
        SelfNoiseWindows = "self_noise_windows" in SELF_NOISE_WINDOWS [],
    }
}

catalogue_enum! {
    /// A report histogram: values with their exact sum and count (µs unless the name says
    /// otherwise).
    pub enum Histogram in HistogramFamily {
        FirstFrame = "first_frame_us" in FIRST_FRAME [],
        FirstFrameConnect = "first_frame_connect_us" in FIRST_FRAME_PHASE
            [("phase", "connect")],
        FirstFrameHandshake = "first_frame_handshake_us" in FIRST_FRAME_PHASE
            [("phase", "handshake")],
        FirstFrameSubscribe = "first_frame_subscribe_us" in FIRST_FRAME_PHASE
            [("phase", "subscribe")],
        FirstFrameFirstByte = "first_frame_first_byte_us" in FIRST_FRAME_PHASE
            [("phase", "first_byte")],
        FirstFrameFirstKeyframe = "first_frame_first_keyframe_us" in FIRST_FRAME_PHASE
            [("phase", "first_keyframe")],
        Jitter = "jitter_us" in JITTER [],
        Pdv = "pdv_us" in DELAY_VARIATION [],
        Ipdv = "ipdv_us" in IPDV [],
        Latency = "latency_us" in LATENCY [],
        StallDuration = "stall_duration_us" in STALL_DURATION [],
        ReorderDistance = "reorder_distance_packets" in REORDER_DISTANCE [],
        BurstLength = "burst_length_packets" in LOSS_BURST_LENGTH [],
        PublishTime = "publish_time_us" in PUBLISH_TIME [],
        Rtt = "rtt_us" in RTT [],
        SendTimerError = "send_timer_error_us" in SEND_TIMER_ERROR [],
        FirstRender = "first_render_us" in FIRST_RENDER [],
        RepairDelay = "repair_delay_us" in REPAIR_DELAY [],
    }
}

impl Counter {
    /// The kind of every counter.
    pub const KIND: Kind = Kind::Counter;

    /// The counter of a publishing attempt that failed for `cause`.
    pub const fn publish_failures(cause: FailureCause) -> Counter {
        match cause {
            FailureCause::Unreachable => Counter::PublishFailuresUnreachable,
            FailureCause::Tls => Counter::PublishFailuresTls,
            FailureCause::StreamNotFound => Counter::PublishFailuresStreamNotFound,
            FailureCause::Refused => Counter::PublishFailuresRefused,
            FailureCause::Other => Counter::PublishFailuresOther,
        }
    }

    /// The counter of a viewing attempt that failed for `cause`.
    pub const fn view_failures(cause: FailureCause) -> Counter {
        match cause {
            FailureCause::Unreachable => Counter::ViewFailuresUnreachable,
            FailureCause::Tls => Counter::ViewFailuresTls,
            FailureCause::StreamNotFound => Counter::ViewFailuresStreamNotFound,
            FailureCause::Refused => Counter::ViewFailuresRefused,
            FailureCause::Other => Counter::ViewFailuresOther,
        }
    }

    /// The name Prometheus stores, e.g. `stallwatch_frames_total`.
    pub fn exported_name(self) -> String {
        self.family().exported_name()
    }

    /// The exported families, in exposition order, each once.
    pub fn families() -> impl Iterator<Item = &'static CounterFamily> {
        Self::ALL.iter().enumerate().filter_map(|(i, c)| {
            let first = i == 0 || Self::ALL[i - 1].family() != c.family();
            first.then(|| c.family())
        })
    }
}

impl Histogram {
    /// The kind of every histogram.
    pub const KIND: Kind = Kind::Histogram;

    /// The name Prometheus stores, e.g. `stallwatch_jitter_seconds`.
    pub fn exported_name(self) -> String {
        self.family().exported_name()
    }

    /// The exported families, in exposition order, each once.
    pub fn families() -> impl Iterator<Item = &'static HistogramFamily> {
        Self::ALL.iter().enumerate().filter_map(|(i, h)| {
            let first = i == 0 || Self::ALL[i - 1].family() != h.family();
            first.then(|| h.family())
        })
    }
}

/// Any catalogue entry: a counter or a histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    /// A counter.
    Counter(Counter),
    /// A histogram.
    Histogram(Histogram),
}

impl Metric {
    /// Every counter, then every histogram.
    pub fn all() -> impl Iterator<Item = Metric> {
        Counter::ALL.into_iter().map(Metric::Counter).chain(Histogram::ALL.map(Metric::Histogram))
    }

    /// The entry of a report name (counter and histogram names never coincide).
    pub fn from_report_name(name: &str) -> Option<Metric> {
        Counter::from_report_name(name)
            .map(Metric::Counter)
            .or_else(|| Histogram::from_report_name(name).map(Metric::Histogram))
    }

    /// Counter or histogram.
    pub fn kind(self) -> Kind {
        match self {
            Metric::Counter(_) => Kind::Counter,
            Metric::Histogram(_) => Kind::Histogram,
        }
    }

    /// The name in a report series.
    pub fn report_name(self) -> &'static str {
        match self {
            Metric::Counter(c) => c.report_name(),
            Metric::Histogram(h) => h.report_name(),
        }
    }

    /// The name Prometheus stores.
    pub fn exported_name(self) -> String {
        match self {
            Metric::Counter(c) => c.exported_name(),
            Metric::Histogram(h) => h.exported_name(),
        }
    }

    /// HELP text of its family.
    pub fn help(self) -> &'static str {
        match self {
            Metric::Counter(c) => c.family().help,
            Metric::Histogram(h) => h.family().help,
        }
    }

    /// Labels added beside the cohort labels.
    pub fn labels(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Metric::Counter(c) => c.labels(),
            Metric::Histogram(h) => h.labels(),
        }
    }

    /// Classic bucket bounds, in the recorded unit; none for a counter.
    pub fn bounds(self) -> Option<&'static [u64]> {
        match self {
            Metric::Counter(_) => None,
            Metric::Histogram(h) => Some(h.family().bounds),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, HashSet};

    use super::*;

    #[test]
    fn report_names_are_unique_and_round_trip() {
        let mut seen = HashSet::new();
        for metric in Metric::all() {
            let name = metric.report_name();
            assert!(seen.insert(name), "{name} twice");
            assert_eq!(Metric::from_report_name(name), Some(metric));
        }
        assert_eq!(seen.len(), Counter::ALL.len() + Histogram::ALL.len());
        assert_eq!(Metric::from_report_name("packets_lost_total"), None);
    }

    #[test]
    fn all_is_in_declaration_order() {
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(c.index(), i);
        }
        for (i, h) in Histogram::ALL.iter().enumerate() {
            assert_eq!(h.index(), i);
        }
    }

    /// The exposition writes each family once, with all its members, so members must be
    /// contiguous; and a family's series are told apart by their labels.
    #[test]
    fn each_family_is_contiguous_and_its_members_have_distinct_labels() {
        let mut names = BTreeSet::new();
        for family in Counter::families() {
            assert!(names.insert(family.exported_name()), "{} twice", family.name);
            let members: Vec<Counter> =
                Counter::ALL.into_iter().filter(|c| c.family() == family).collect();
            let labels: BTreeSet<_> = members.iter().map(|c| c.labels()).collect();
            assert_eq!(labels.len(), members.len(), "{}", family.name);
        }
        for family in Histogram::families() {
            assert!(names.insert(family.exported_name()), "{} twice", family.name);
            let members: Vec<Histogram> =
                Histogram::ALL.into_iter().filter(|h| h.family() == family).collect();
            let labels: BTreeSet<_> = members.iter().map(|h| h.labels()).collect();
            assert_eq!(labels.len(), members.len(), "{}", family.name);
            assert!(family.bounds.windows(2).all(|w| w[0] < w[1]), "{}", family.name);
        }
    }

    #[test]
    fn failure_counters_carry_their_role_and_cause() {
        for cause in FailureCause::ALL {
            for (counter, role, prefix) in [
                (Counter::publish_failures(cause), "publisher", "publish_failures"),
                (Counter::view_failures(cause), "viewer", "view_failures"),
            ] {
                assert_eq!(counter.labels(), [("role", role), ("cause", cause.as_str())]);
                assert_eq!(counter.report_name(), format!("{prefix}_{}", cause.as_str()));
                assert_eq!(counter.family(), &families::ATTEMPT_FAILURES);
            }
        }
    }

    #[test]
    fn exported_names_add_unit_and_total() {
        assert_eq!(Counter::FramesLate.exported_name(), "stallwatch_frames_total");
        assert_eq!(Counter::Bytes.exported_name(), "stallwatch_received_bytes_total");
        assert_eq!(Counter::StallTimeNs.exported_name(), "stallwatch_stall_seconds_total");
        assert_eq!(Histogram::Jitter.exported_name(), "stallwatch_jitter_seconds");
        assert_eq!(Histogram::BurstLength.exported_name(), "stallwatch_loss_burst_length_packets");
        assert_eq!(Metric::Counter(Counter::Stalls).kind(), Kind::Counter);
        assert_eq!(Metric::Histogram(Histogram::Rtt).bounds(), Some(&bounds::RTT_US[..]));
    }
}
