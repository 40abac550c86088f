//! Turns a window's results into a report series (`stallwatch-proto`'s schema).
//!
//! Names are the contract with the collector; they are the variants of
//! `stallwatch_proto::catalogue`, which also says how each is exported. Counters are
//! increments over the window; histograms carry their exact sum and count. Definitions:
//! `docs/metrics.md`.

use std::collections::BTreeMap;

use stallwatch_proto::catalogue::{Counter, Histogram};
use stallwatch_proto::report::{HistogramData, Series, SeriesLabels};

use crate::receiver::{Phase, WindowMetrics};
use crate::recorder::Recorder;

/// The histogram of a first-frame phase, e.g. `first_frame_connect_us`.
pub fn phase_histogram(phase: Phase) -> Histogram {
    match phase {
        Phase::Connect => Histogram::FirstFrameConnect,
        Phase::Handshake => Histogram::FirstFrameHandshake,
        Phase::Subscribe => Histogram::FirstFrameSubscribe,
        Phase::FirstByte => Histogram::FirstFrameFirstByte,
        Phase::FirstKeyframe => Histogram::FirstFrameFirstKeyframe,
    }
}

fn histogram(r: &Recorder) -> HistogramData {
    HistogramData::from_histogram(r.histogram(), r.sum())
}

impl WindowMetrics {
    /// This window as a report series with the given labels. Empty histograms are left out.
    pub fn to_series(&self, labels: SeriesLabels) -> Series {
        let l = &self.loss;
        let p = &self.player;
        let counters: BTreeMap<String, u64> = [
            (Counter::Packets, self.packets),
            (Counter::Bytes, self.bytes),
            (Counter::PacketsFromCache, self.packets_from_cache),
            (Counter::PacketsExpected, l.expected),
            (Counter::PacketsReceived, l.received),
            (Counter::PacketsLost, l.lost),
            (Counter::PacketsDuplicate, l.duplicates),
            (Counter::PacketsReordered, l.reordered),
            (Counter::PacketsLateAfterWait, l.late_after_wait),
            (Counter::PacketsStale, l.stale),
            (Counter::SequenceDiscontinuities, l.discontinuities),
            (Counter::LossWaitCutShort, l.wait_cut_short),
            (Counter::LossBursts, l.bursts),
            (Counter::LossBurstLost, l.burst_lost),
            (Counter::LossBurstPackets, l.burst_packets),
            (Counter::LossGapLost, l.gap_lost),
            (Counter::LossReceivedThenReceived, l.received_then_received),
            (Counter::LossReceivedThenLost, l.received_then_lost),
            (Counter::LossLostThenReceived, l.lost_then_received),
            (Counter::LossLostThenLost, l.lost_then_lost),
            (Counter::FramesRendered, p.frames_rendered),
            (Counter::FramesMissing, p.frames_missing),
            (Counter::FramesUndecodable, p.frames_undecodable),
            (Counter::FramesLate, p.frames_late),
            (Counter::FragmentsOutOfWindow, p.fragments_out_of_window),
            (Counter::Stalls, p.stalls),
            (Counter::Stalls600ms, p.stalls_600ms),
            (Counter::Freezes, p.freezes),
            (Counter::StallTimeNs, p.stall_time_ns),
            (Counter::PlayTimeNs, p.play_time_ns),
            (Counter::FreezeTimeNs, p.freeze_time_ns),
            (Counter::FramesCaughtUp, p.frames_caught_up),
            (Counter::Rebuffers, p.rebuffers),
            // Repair (docs/metrics.md section 18); without repair the residual counters equal
            // packets_expected and packets_lost and the others are 0.
            (Counter::PacketsResidualExpected, self.repair.residual_expected),
            (Counter::PacketsResidualLost, self.repair.residual_lost),
            (Counter::NacksSent, self.repair.nack.nacks_sent),
            (Counter::PacketsNacked, self.repair.nack.packets_nacked),
            (Counter::NackRetries, self.repair.nack.nack_retries),
            (Counter::RetransmissionsReceived, self.repair.retransmissions_received),
            (Counter::PacketsRepaired, self.repair.packets_repaired),
            (Counter::KeyframeRequests, self.repair.keyframe_requests),
        ]
        .into_iter()
        .map(|(counter, value)| (counter.report_name().to_string(), value))
        .collect();

        let mut hists = BTreeMap::new();
        for (name, r) in [
            (Histogram::Jitter, &self.jitter),
            (Histogram::Pdv, &self.pdv),
            (Histogram::Ipdv, &self.ipdv),
            (Histogram::Latency, &self.latency),
            (Histogram::StallDuration, &self.stall_duration),
            (Histogram::ReorderDistance, &self.reorder_distance),
            (Histogram::BurstLength, &self.burst_length),
            (Histogram::RepairDelay, &self.repair_delay),
        ] {
            if r.count() > 0 {
                hists.insert(name.report_name().to_string(), histogram(r));
            }
        }
        if let Some(ff) = &self.first_frame {
            let one = |d: std::time::Duration| {
                let mut r = Recorder::new();
                r.record_nanos_as_micros(d.as_nanos() as u64);
                histogram(&r)
            };
            hists.insert(Histogram::FirstFrame.report_name().to_string(), one(ff.total));
            if let Some(render) = ff.first_render {
                hists.insert(Histogram::FirstRender.report_name().to_string(), one(render));
            }
            for (phase, d) in &ff.phases {
                hists.insert(phase_histogram(*phase).report_name().to_string(), one(*d));
            }
        }
        Series { labels, counters, histograms: hists }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use stallwatch_proto::control::Role;
    use stallwatch_proto::plan::{Repair, Transport};
    use stallwatch_proto::report::{
        REPORT_SCHEMA_VERSION, Report, ReportLimits, decode_report, encode_report,
    };

    use super::*;
    use crate::link::LinkConfig;
    use crate::sim::{self, SimConfig};

    fn labels() -> SeriesLabels {
        SeriesLabels::new("p", Transport::Udp, Repair::Nack, "relay-1", Role::Viewer)
    }

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
        let series = window.to_series(labels());
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
        assert_eq!(s.labels, labels());
        assert_eq!(s.counters["packets_lost"], window.loss.lost);
        assert_eq!(s.counters["frames_rendered"], window.player.frames_rendered);
        let jitter = &decoded.histograms[0][Histogram::Jitter.report_name()];
        assert_eq!(jitter.len(), window.jitter.count());
        assert_eq!(s.histograms[Histogram::Jitter.report_name()].sum, window.jitter.sum());
        assert_eq!(
            jitter.to_histogram().unwrap().value_at_quantile(0.99),
            window.jitter.quantile(0.99)
        );
        let ff = window.first_frame.as_ref().unwrap();
        let ff_hist = &decoded.histograms[0][Histogram::FirstFrame.report_name()];
        assert_eq!(ff_hist.len(), 1);
        assert_eq!(
            s.histograms[Histogram::FirstFrame.report_name()].sum,
            (ff.total.as_nanos() as u64 + 500) / 1_000
        );
        assert!(s.histograms.contains_key("first_frame_first_keyframe_us"));
        // A later window has no first frame and stays small on the wire.
        assert!(
            !run.windows[1]
                .to_series(labels())
                .histograms
                .contains_key(Histogram::FirstFrame.report_name())
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
        let series: Vec<Series> = run.windows.iter().map(|w| w.to_series(labels())).collect();
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
            .filter_map(|s| s.histograms.get(Histogram::RepairDelay.report_name()))
            .map(|h| h.count)
            .sum();
        assert_eq!(delays, r.packets_repaired);
        // First render is reported once, beside the keyframe-complete time, and later.
        let ff = total.first_frame.as_ref().unwrap();
        let renders: Vec<&HistogramData> = series
            .iter()
            .filter_map(|s| s.histograms.get(Histogram::FirstRender.report_name()))
            .collect();
        assert_eq!(renders.len(), 1);
        let render_us = (ff.first_render.unwrap().as_nanos() as u64 + 500) / 1_000;
        assert_eq!(renders[0].sum, render_us);
        assert!(render_us > (ff.total.as_nanos() as u64) / 1_000);
    }
}
