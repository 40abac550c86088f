//! A probe's results as a person reads them, or as JSON.

use std::fmt::{self, Write as _};

use serde::Serialize;
use stallwatch_measure::{Recorder, Repair, WindowMetrics};

/// Quantiles of one histogram, in milliseconds.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Quantiles {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
    pub samples: u64,
}

impl Quantiles {
    /// From a histogram of microseconds.
    pub fn from_micros(r: &Recorder) -> Option<Self> {
        (r.count() > 0).then(|| {
            let ms = |us: u64| us as f64 / 1_000.0;
            Quantiles {
                p50: ms(r.quantile(0.5)),
                p95: ms(r.quantile(0.95)),
                p99: ms(r.quantile(0.99)),
                max: ms(r.histogram().max()),
                samples: r.count(),
            }
        })
    }
}

/// What repair did, for a viewer that ran it (or ran without it: `mode` says which).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RepairSummary {
    /// `nack` or `none`.
    pub mode: String,
    /// Packets still missing after repair (by the end of the loss wait), and of how many.
    pub residual_lost: u64,
    pub residual_expected: u64,
    pub residual_loss_ratio: f64,
    /// NACK messages sent, numbers asked for (once each), and further asks.
    pub nacks_sent: u64,
    pub packets_nacked: u64,
    pub nack_retries: u64,
    pub retransmissions_received: u64,
    /// Missing packets whose first copy was a retransmission.
    pub packets_repaired: u64,
    /// Gap detection to the repairing retransmission, ms.
    pub repair_delay_ms: Option<Quantiles>,
    pub keyframe_requests: u64,
}

impl RepairSummary {
    fn new(total: &WindowMetrics, mode: Repair) -> Self {
        let r = &total.repair;
        RepairSummary {
            mode: mode.name().to_string(),
            residual_lost: r.residual_lost,
            residual_expected: r.residual_expected,
            residual_loss_ratio: if r.residual_expected == 0 {
                0.0
            } else {
                r.residual_lost as f64 / r.residual_expected as f64
            },
            nacks_sent: r.nack.nacks_sent,
            packets_nacked: r.nack.packets_nacked,
            nack_retries: r.nack.nack_retries,
            retransmissions_received: r.retransmissions_received,
            packets_repaired: r.packets_repaired,
            repair_delay_ms: Quantiles::from_micros(&total.repair_delay),
            keyframe_requests: r.keyframe_requests,
        }
    }
}

/// Everything a probe measured, summed over its windows.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Summary {
    /// Attempt start to the first complete keyframe, ms; `None` if no keyframe arrived.
    pub first_frame_ms: Option<f64>,
    /// Attempt start to the first frame on screen, ms; `None` if none was shown.
    pub first_render_ms: Option<f64>,
    /// First-frame phases and their durations, ms.
    pub first_frame_phases_ms: Vec<(String, f64)>,
    pub packets_expected: u64,
    pub packets_received: u64,
    pub packets_lost: u64,
    pub loss_ratio: f64,
    pub loss_bursts: u64,
    pub mean_burst_length: Option<f64>,
    pub gilbert_p: Option<f64>,
    pub gilbert_r: Option<f64>,
    pub reordered: u64,
    pub duplicates: u64,
    pub late_after_wait: u64,
    pub jitter_ms: Option<Quantiles>,
    pub pdv_ms: Option<Quantiles>,
    pub ipdv_ms: Option<Quantiles>,
    /// One-way latency, when the sender's clock is known (a loopback probe).
    pub latency_ms: Option<Quantiles>,
    /// Packets the relay replayed from its GOP cache.
    pub packets_from_cache: u64,
    pub frames_rendered: u64,
    pub frames_missing: u64,
    pub frames_undecodable: u64,
    pub frames_late: u64,
    /// Frames of the GOP-cache replay decoded to reach the live edge, not shown.
    pub frames_caught_up: u64,
    /// Times the player's buffer ran dry and it resumed later.
    pub rebuffers: u64,
    pub stalls: u64,
    pub stalls_600ms: u64,
    pub freezes: u64,
    pub stall_time_ms: f64,
    pub play_time_ms: f64,
    /// Stall time / (play time + stall time).
    pub stall_ratio: f64,
    /// Windows in which the agent's own sender or emulator ran late beyond their bounds.
    pub self_noise_windows: u64,
    /// The largest send-timer and emulator lateness the agent noted in the run, ms (zero where
    /// there was no in-process publisher or emulator).
    pub sender_late_max_ms: f64,
    pub emulator_late_max_ms: f64,
    /// Repair figures, when the run says which repair mode it used.
    pub repair: Option<RepairSummary>,
    /// What the figures cannot say by themselves (e.g. a stream larger than the link).
    pub notes: Vec<String>,
}

impl Summary {
    pub fn new(total: &WindowMetrics) -> Self {
        let loss = &total.loss;
        let player = &total.player;
        let ms = |ns: u64| ns as f64 / 1e6;
        let watched = player.stall_time_ns + player.play_time_ns;
        Summary {
            first_frame_ms: total.first_frame.as_ref().map(|f| f.total.as_secs_f64() * 1e3),
            first_render_ms: total
                .first_frame
                .as_ref()
                .and_then(|f| f.first_render)
                .map(|d| d.as_secs_f64() * 1e3),
            first_frame_phases_ms: total
                .first_frame
                .iter()
                .flat_map(|f| &f.phases)
                .map(|(phase, d)| (phase.name().to_string(), d.as_secs_f64() * 1e3))
                .collect(),
            packets_expected: loss.expected,
            packets_received: loss.received,
            packets_lost: loss.lost,
            loss_ratio: loss.loss_ratio().unwrap_or(0.0),
            loss_bursts: loss.bursts,
            mean_burst_length: (loss.bursts > 0)
                .then(|| loss.burst_packets as f64 / loss.bursts as f64),
            gilbert_p: loss.gilbert_p(),
            gilbert_r: loss.gilbert_r(),
            reordered: loss.reordered,
            duplicates: loss.duplicates,
            late_after_wait: loss.late_after_wait,
            jitter_ms: Quantiles::from_micros(&total.jitter),
            pdv_ms: Quantiles::from_micros(&total.pdv),
            ipdv_ms: Quantiles::from_micros(&total.ipdv),
            latency_ms: Quantiles::from_micros(&total.latency),
            packets_from_cache: total.packets_from_cache,
            frames_rendered: player.frames_rendered,
            frames_missing: player.frames_missing,
            frames_undecodable: player.frames_undecodable,
            frames_late: player.frames_late,
            frames_caught_up: player.frames_caught_up,
            rebuffers: player.rebuffers,
            stalls: player.stalls,
            stalls_600ms: player.stalls_600ms,
            freezes: player.freezes,
            stall_time_ms: ms(player.stall_time_ns),
            play_time_ms: ms(player.play_time_ns),
            stall_ratio: if watched == 0 {
                0.0
            } else {
                player.stall_time_ns as f64 / watched as f64
            },
            self_noise_windows: total.self_noise.windows,
            sender_late_max_ms: ms(total.self_noise.sender_late_max_ns),
            emulator_late_max_ms: ms(total.self_noise.emulator_late_max_ns),
            repair: None,
            notes: Vec::new(),
        }
    }

    /// The summary of a viewer that ran with repair mode `mode`, with its repair figures.
    pub fn with_repair(total: &WindowMetrics, mode: Repair) -> Self {
        Summary { repair: Some(RepairSummary::new(total, mode)), ..Summary::new(total) }
    }
}

fn quantiles(q: &Option<Quantiles>) -> String {
    match q {
        Some(q) => format!(
            "p50 {:.1} ms  p95 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
            q.p50, q.p95, q.p99, q.max
        ),
        None => "no samples".to_string(),
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        match self.first_frame_ms {
            Some(ms) => {
                let phases: Vec<String> =
                    self.first_frame_phases_ms.iter().map(|(p, d)| format!("{p} {d:.1}")).collect();
                writeln!(out, "first frame   {ms:.1} ms  ({})", phases.join(", "))?;
            }
            None => writeln!(out, "first frame   none: no complete keyframe arrived")?,
        }
        if let Some(ms) = self.first_render_ms {
            writeln!(out, "first render  {ms:.1} ms  (on screen)")?;
        }
        writeln!(
            out,
            "loss          {:.3} %  ({} of {} packets; {} bursts{}; Gilbert p {} r {})",
            self.loss_ratio * 100.0,
            self.packets_lost,
            self.packets_expected,
            self.loss_bursts,
            self.mean_burst_length.map(|l| format!(", mean {l:.1} packets")).unwrap_or_default(),
            self.gilbert_p.map(|p| format!("{p:.4}")).unwrap_or_else(|| "-".into()),
            self.gilbert_r.map(|r| format!("{r:.3}")).unwrap_or_else(|| "-".into()),
        )?;
        if let Some(r) = &self.repair {
            writeln!(
                out,
                "repair        {}: residual loss {:.3} % ({} of {}); {} NACKs for {} packets \
                 ({} re-asked), {} retransmissions received, {} repaired (delay {}); {} keyframe requests",
                r.mode,
                r.residual_loss_ratio * 100.0,
                r.residual_lost,
                r.residual_expected,
                r.nacks_sent,
                r.packets_nacked,
                r.nack_retries,
                r.retransmissions_received,
                r.packets_repaired,
                r.repair_delay_ms
                    .map(|q| format!("p50 {:.1} ms, p99 {:.1} ms", q.p50, q.p99))
                    .unwrap_or_else(|| "-".into()),
                r.keyframe_requests,
            )?;
        }
        writeln!(
            out,
            "reordering    {} reordered, {} duplicates, {} after the loss wait",
            self.reordered, self.duplicates, self.late_after_wait
        )?;
        writeln!(out, "jitter        {}", quantiles(&self.jitter_ms))?;
        writeln!(out, "delay var.    {}", quantiles(&self.pdv_ms))?;
        if self.latency_ms.is_some() {
            writeln!(out, "latency       {}", quantiles(&self.latency_ms))?;
        }
        writeln!(
            out,
            "frames        {} rendered, {} missing, {} undecodable, {} late, {} caught up; {} rebuffers",
            self.frames_rendered,
            self.frames_missing,
            self.frames_undecodable,
            self.frames_late,
            self.frames_caught_up,
            self.rebuffers
        )?;
        write!(
            out,
            "stalls        {} (> 500 ms), {} (> 600 ms), {} freezes; stall time {:.0} ms, stall ratio {:.2} %",
            self.stalls,
            self.stalls_600ms,
            self.freezes,
            self.stall_time_ms,
            self.stall_ratio * 100.0
        )?;
        for note in &self.notes {
            write!(out, "\nnote          {note}")?;
        }
        if self.self_noise_windows > 0 {
            write!(
                out,
                "\nself-noise    {} windows: the agent's own sender or emulator ran late (send \
                 timer up to {:.1} ms, emulator up to {:.1} ms); keep them out of conclusions",
                self.self_noise_windows, self.sender_late_max_ms, self.emulator_late_max_ms
            )?;
        }
        f.write_str(&out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_noise_is_shown_with_what_ran_late_only_when_a_window_was_marked() {
        let mut total = WindowMetrics::default();
        total.self_noise.sender_late_max_ns = 2_500_000;
        total.self_noise.emulator_late_max_ns = 18_400_000;
        assert!(!Summary::new(&total).to_string().contains("self-noise"));
        total.self_noise.windows = 3;
        let shown = Summary::new(&total).to_string();
        assert!(
            shown.contains(
                "self-noise    3 windows: the agent's own sender or emulator ran late (send timer \
                 up to 2.5 ms, emulator up to 18.4 ms)"
            ),
            "{shown}"
        );
    }
}
