//! A probe's results as a person reads them, or as JSON.

use std::fmt::{self, Write as _};

use serde::Serialize;
use stallwatch_measure::{Recorder, WindowMetrics};

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

/// Everything a probe measured, summed over its windows.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Summary {
    /// Attempt start to the first complete keyframe, ms; `None` if no keyframe arrived.
    pub first_frame_ms: Option<f64>,
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
    pub stalls: u64,
    pub stalls_600ms: u64,
    pub freezes: u64,
    pub stall_time_ms: f64,
    pub play_time_ms: f64,
    /// Stall time / (play time + stall time).
    pub stall_ratio: f64,
}

impl Summary {
    pub fn new(total: &WindowMetrics) -> Self {
        let loss = &total.loss;
        let player = &total.player;
        let ms = |ns: u64| ns as f64 / 1e6;
        let watched = player.stall_time_ns + player.play_time_ns;
        Summary {
            first_frame_ms: total.first_frame.as_ref().map(|f| f.total.as_secs_f64() * 1e3),
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
        }
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
            "frames        {} rendered, {} missing, {} undecodable, {} late",
            self.frames_rendered, self.frames_missing, self.frames_undecodable, self.frames_late
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
        f.write_str(&out)
    }
}
