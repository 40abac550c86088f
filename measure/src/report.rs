//! Turns a window's results into a report series (`stallwatch-proto`'s schema).
//!
//! Names are the contract with the collector, which maps them to Prometheus metrics; they are
//! defined once here. Counters are increments over the window; histograms carry their exact
//! sum and count. Definitions: `docs/metrics.md`.

use std::collections::BTreeMap;

use stallwatch_proto::report::{HistogramData, Series};

use crate::receiver::{Phase, WindowMetrics};
use crate::recorder::Recorder;

/// Histogram names (values in µs unless the name says otherwise).
pub mod histograms {
    /// Attempt start to first complete keyframe.
    pub const FIRST_FRAME: &str = "first_frame_us";
    /// Prefix of the per-phase first-frame histograms: `first_frame_<phase>_us`.
    pub const FIRST_FRAME_PHASE_PREFIX: &str = "first_frame_";
    pub const JITTER: &str = "jitter_us";
    pub const PDV: &str = "pdv_us";
    pub const IPDV: &str = "ipdv_us";
    /// One-way latency; only when the sender's clock offset is known.
    pub const LATENCY: &str = "latency_us";
    pub const STALL_DURATION: &str = "stall_duration_us";
    pub const REORDER_DISTANCE: &str = "reorder_distance_packets";
    pub const BURST_LENGTH: &str = "burst_length_packets";
    /// Attempt start to the first frame on screen (`FirstFrame::first_render`).
    pub const FIRST_RENDER: &str = "first_render_us";
    /// Per repaired packet: gap seen to the retransmission's arrival.
    pub const REPAIR_DELAY: &str = "repair_delay_us";
}

/// The name of a first-frame phase's histogram, e.g. `first_frame_connect_us`.
pub fn phase_histogram(phase: Phase) -> String {
    format!("{}{}_us", histograms::FIRST_FRAME_PHASE_PREFIX, phase.name())
}

fn histogram(r: &Recorder) -> HistogramData {
    HistogramData::from_histogram(r.histogram(), r.sum())
}

impl WindowMetrics {
    /// This window as a report series with the given labels. Empty histograms are left out.
    pub fn to_series(&self, labels: BTreeMap<String, String>) -> Series {
        let l = &self.loss;
        let p = &self.player;
        let counters: BTreeMap<String, u64> = [
            ("packets", self.packets),
            ("bytes", self.bytes),
            ("packets_from_cache", self.packets_from_cache),
            ("packets_expected", l.expected),
            ("packets_received", l.received),
            ("packets_lost", l.lost),
            ("packets_duplicate", l.duplicates),
            ("packets_reordered", l.reordered),
            ("packets_late_after_wait", l.late_after_wait),
            ("packets_stale", l.stale),
            ("sequence_discontinuities", l.discontinuities),
            ("loss_wait_cut_short", l.wait_cut_short),
            ("loss_bursts", l.bursts),
            ("loss_burst_lost", l.burst_lost),
            ("loss_burst_packets", l.burst_packets),
            ("loss_gap_lost", l.gap_lost),
            ("loss_received_then_received", l.received_then_received),
            ("loss_received_then_lost", l.received_then_lost),
            ("loss_lost_then_received", l.lost_then_received),
            ("loss_lost_then_lost", l.lost_then_lost),
            ("frames_rendered", p.frames_rendered),
            ("frames_missing", p.frames_missing),
            ("frames_undecodable", p.frames_undecodable),
            ("frames_late", p.frames_late),
            ("fragments_out_of_window", p.fragments_out_of_window),
            ("stalls", p.stalls),
            ("stalls_600ms", p.stalls_600ms),
            ("freezes", p.freezes),
            ("stall_time_ns", p.stall_time_ns),
            ("play_time_ns", p.play_time_ns),
            ("freeze_time_ns", p.freeze_time_ns),
            ("frames_caught_up", p.frames_caught_up),
            ("rebuffers", p.rebuffers),
            // Repair (docs/metrics.md section 18); without repair the residual counters equal
            // packets_expected and packets_lost and the others are 0.
            ("packets_residual_expected", self.repair.residual_expected),
            ("packets_residual_lost", self.repair.residual_lost),
            ("nacks_sent", self.repair.nack.nacks_sent),
            ("packets_nacked", self.repair.nack.packets_nacked),
            ("nack_retries", self.repair.nack.nack_retries),
            ("retransmissions_received", self.repair.retransmissions_received),
            ("packets_repaired", self.repair.packets_repaired),
            ("keyframe_requests", self.repair.keyframe_requests),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_string(), value))
        .collect();

        let mut hists = BTreeMap::new();
        for (name, r) in [
            (histograms::JITTER, &self.jitter),
            (histograms::PDV, &self.pdv),
            (histograms::IPDV, &self.ipdv),
            (histograms::LATENCY, &self.latency),
            (histograms::STALL_DURATION, &self.stall_duration),
            (histograms::REORDER_DISTANCE, &self.reorder_distance),
            (histograms::BURST_LENGTH, &self.burst_length),
            (histograms::REPAIR_DELAY, &self.repair_delay),
        ] {
            if r.count() > 0 {
                hists.insert(name.to_string(), histogram(r));
            }
        }
        if let Some(ff) = &self.first_frame {
            let one = |d: std::time::Duration| {
                let mut r = Recorder::new();
                r.record_nanos_as_micros(d.as_nanos() as u64);
                histogram(&r)
            };
            hists.insert(histograms::FIRST_FRAME.to_string(), one(ff.total));
            if let Some(render) = ff.first_render {
                hists.insert(histograms::FIRST_RENDER.to_string(), one(render));
            }
            for (phase, d) in &ff.phases {
                hists.insert(phase_histogram(*phase), one(*d));
            }
        }
        Series { labels, counters, histograms: hists }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use stallwatch_proto::report::{
        REPORT_SCHEMA_VERSION, Report, ReportLimits, decode_report, encode_report,
    };

    use super::*;
    use crate::link::LinkConfig;
    use crate::sim::{self, SimConfig};

    #[test]
    fn a_window_survives_the_wire_with_exact_sums_and_counts() {
        let link = LinkConfig {
            loss: 0.02,
            delay: Duration::from_millis(30),
            jitter: Duration::from_millis(10),
            ..LinkConfig::default()
        };
        let run = sim::run(&SimConfig::new(link, Duration::from_secs(20)));
        let window = &run.windows[0];
        let labels = BTreeMap::from([("transport".to_string(), "udp".to_string())]);
        let series = window.to_series(labels);
        let report = Report {
            schema_version: REPORT_SCHEMA_VERSION,
            agent: "sea-1".into(),
            agent_version: "0.1.0".into(),
            seq: 1,
            window_start_ms: 0,
            window_end_ms: 10_000,
            plan_revision: 0,
            spool_depth: 0,
            series: vec![series],
        };
        let decoded = decode_report(&encode_report(&report), &ReportLimits::default()).unwrap();
        let s = &decoded.report.series[0];
        assert_eq!(s.counters["packets_lost"], window.loss.lost);
        assert_eq!(s.counters["frames_rendered"], window.player.frames_rendered);
        let jitter = &decoded.histograms[0][histograms::JITTER];
        assert_eq!(jitter.len(), window.jitter.count());
        assert_eq!(s.histograms[histograms::JITTER].sum, window.jitter.sum());
        assert_eq!(
            jitter.to_histogram().unwrap().value_at_quantile(0.99),
            window.jitter.quantile(0.99)
        );
        let ff = window.first_frame.as_ref().unwrap();
        let ff_hist = &decoded.histograms[0][histograms::FIRST_FRAME];
        assert_eq!(ff_hist.len(), 1);
        assert_eq!(
            s.histograms[histograms::FIRST_FRAME].sum,
            (ff.total.as_nanos() as u64 + 500) / 1_000
        );
        assert!(s.histograms.contains_key("first_frame_first_keyframe_us"));
        // A later window has no first frame and stays small on the wire.
        assert!(
            !run.windows[1]
                .to_series(BTreeMap::new())
                .histograms
                .contains_key(histograms::FIRST_FRAME)
        );
        assert!(encode_report(&report).len() < 16 * 1024);
    }

    #[test]
    fn repair_figures_and_first_render_are_in_the_series() {
        let link =
            LinkConfig { loss: 0.02, delay: Duration::from_millis(20), ..LinkConfig::default() };
        let mut config = SimConfig::new(link, Duration::from_secs(20));
        config.receiver.repair = crate::Repair::Nack;
        let run = sim::run(&config);
        let series: Vec<Series> =
            run.windows.iter().map(|w| w.to_series(BTreeMap::new())).collect();
        let sum = |name: &str| series.iter().map(|s| s.counters[name]).sum::<u64>();
        let total = sim::total(&run.windows);
        let r = &total.repair;
        assert!(r.packets_repaired > 0, "2 % loss was repaired");
        assert_eq!(sum("packets_repaired"), r.packets_repaired);
        assert_eq!(sum("packets_residual_expected"), r.residual_expected);
        assert_eq!(sum("packets_residual_lost"), r.residual_lost);
        assert_eq!(sum("nacks_sent"), r.nack.nacks_sent);
        assert_eq!(sum("packets_nacked"), r.nack.packets_nacked);
        assert_eq!(sum("nack_retries"), r.nack.nack_retries);
        assert_eq!(sum("retransmissions_received"), r.retransmissions_received);
        assert_eq!(sum("keyframe_requests"), r.keyframe_requests);
        assert_eq!(sum("rebuffers"), total.player.rebuffers);
        assert_eq!(sum("frames_caught_up"), total.player.frames_caught_up);
        // One repair delay sample per repaired packet, with its exact sum.
        let delays: u64 = series
            .iter()
            .filter_map(|s| s.histograms.get(histograms::REPAIR_DELAY))
            .map(|h| h.count)
            .sum();
        assert_eq!(delays, r.packets_repaired);
        // First render is reported once, beside the keyframe-complete time, and later.
        let ff = total.first_frame.as_ref().unwrap();
        let renders: Vec<&HistogramData> =
            series.iter().filter_map(|s| s.histograms.get(histograms::FIRST_RENDER)).collect();
        assert_eq!(renders.len(), 1);
        let render_us = (ff.first_render.unwrap().as_nanos() as u64 + 500) / 1_000;
        assert_eq!(renders[0].sum, render_us);
        assert!(render_us > (ff.total.as_nanos() as u64) / 1_000);
    }
}
