//! What the generated history shows: four regions with evening peaks in their own local time,
//! and on top of that, stories a report should find:
//! - `sea`: 4G stalls several times more at 20:00-23:00 local than off peak, and a P1 on one
//!   evening;
//! - `latam`: relay `relay-sp-2` degrades over the last five days (stalls and loss grow), with
//!   an open P1 at the end; `sea` and `latam` share a 25-minute P0 two days before the end;
//! - `eu`: relay `relay-fra-2` serves a 4 s GOP without a GOP cache from 6.5 days before the
//!   end: slow first frames on a fast path;
//! - `me`: 3G loss comes in bursts.
//!
//! [`attempt`] gives one viewer attempt's raw values (first frame, stalls, jitter and RTT
//! samples with weights, packets); it depends only on the seed and the attempt's identity, so
//! tests can compute the expected figures from the same raw values without the store or the
//! report code.

use std::collections::BTreeMap;

use stallwatch_proto::Transport;

use super::rng::Rng;
use crate::reports::incidents::{Incident, Level};
use crate::reports::zone::Zone;

/// Milliseconds in a day.
pub const DAY_MS: u64 = 86_400_000;
const HOUR_MS: u64 = 3_600_000;
const MINUTE_MS: u64 = 60_000;

/// How busy each local hour is (0 = quiet, 1 = the evening peak).
pub const PEAK_SHAPE: [f64; 24] = [
    0.20, 0.10, 0.05, 0.0, 0.0, 0.0, 0.05, 0.10, 0.15, 0.15, 0.15, 0.20, 0.30, 0.30, 0.20, 0.20,
    0.25, 0.30, 0.35, 0.45, 0.90, 1.00, 0.95, 0.45,
];

/// The generated evening peak, local hours: what the heatmap's worst hours must be.
pub const PEAK_HOURS: [u8; 3] = [20, 21, 22];

/// Transports every agent probes.
pub const TRANSPORTS: [Transport; 3] = Transport::ALL;

/// How long each attempt views, ms.
pub const ATTEMPT_MS: u64 = 60_000;

/// One generated region.
#[derive(Debug, Clone)]
pub struct RegionScenario {
    /// Label.
    pub name: &'static str,
    /// Name shown in reports.
    pub display: &'static str,
    /// IANA time zone.
    pub time_zone: &'static str,
    /// Its relays (probe targets).
    pub relays: [&'static str; 2],
    /// Agents and their network types.
    pub agents: &'static [(&'static str, &'static str)],
    /// Carriers that matter (region knowledge).
    pub carriers: &'static [&'static str],
}

/// The four regions.
pub fn regions() -> Vec<RegionScenario> {
    vec![
        RegionScenario {
            name: "sea",
            display: "South-East Asia",
            time_zone: "Asia/Singapore",
            relays: ["relay-sg-1", "relay-jkt-1"],
            agents: &[
                ("sea-4g-1", "4g"),
                ("sea-4g-2", "4g"),
                ("sea-3g-1", "3g"),
                ("sea-wifi-1", "wifi"),
                ("sea-fiber-1", "fiber"),
            ],
            carriers: &["Telkomsel (ID)", "AIS (TH)", "Viettel (VN)", "Globe (PH)", "Singtel (SG)"],
        },
        RegionScenario {
            name: "latam",
            display: "Latin America",
            time_zone: "America/Sao_Paulo",
            relays: ["relay-sp-1", "relay-sp-2"],
            agents: &[
                ("latam-4g-1", "4g"),
                ("latam-wifi-1", "wifi"),
                ("latam-wifi-2", "wifi"),
                ("latam-fiber-1", "fiber"),
            ],
            carriers: &["Vivo (BR)", "Claro (BR)", "TIM (BR)", "Telcel (MX)"],
        },
        RegionScenario {
            name: "eu",
            display: "Europe",
            time_zone: "Europe/Berlin",
            relays: ["relay-fra-1", "relay-fra-2"],
            agents: &[
                ("eu-5g-1", "5g"),
                ("eu-4g-1", "4g"),
                ("eu-wifi-1", "wifi"),
                ("eu-fiber-1", "fiber"),
            ],
            carriers: &["Deutsche Telekom (DE)", "Vodafone (DE)", "Orange (FR)"],
        },
        RegionScenario {
            name: "me",
            display: "Middle East",
            time_zone: "Asia/Dubai",
            relays: ["relay-dxb-1", "relay-dxb-2"],
            agents: &[
                ("me-4g-1", "4g"),
                ("me-3g-1", "3g"),
                ("me-3g-2", "3g"),
                ("me-wifi-1", "wifi"),
            ],
            carriers: &["Etisalat (AE)", "du (AE)", "STC (SA)"],
        },
    ]
}

/// Base conditions of a network type (off peak).
#[derive(Debug, Clone, Copy)]
struct Network {
    rtt_ms: f64,
    jitter_ms: f64,
    loss: f64,
    /// Share of lost packets in bursts.
    bursty: f64,
    /// Stalls per viewing minute.
    stall_rate: f64,
    stall_median_ms: f64,
    /// Time to fetch a keyframe, ms.
    keyframe_ms: f64,
    /// Packets per second of the stream this network's probes view.
    pps: f64,
}

fn network(kind: &str) -> Network {
    let n = |rtt_ms, jitter_ms, loss, stall_rate, stall_median_ms, keyframe_ms, pps| Network {
        rtt_ms,
        jitter_ms,
        loss,
        bursty: 0.15,
        stall_rate,
        stall_median_ms,
        keyframe_ms,
        pps,
    };
    match kind {
        "fiber" => n(18.0, 1.2, 0.0005, 0.01, 700.0, 40.0, 267.0),
        "wifi" => n(32.0, 4.0, 0.002, 0.03, 800.0, 70.0, 267.0),
        "5g" => n(28.0, 3.0, 0.001, 0.03, 750.0, 50.0, 267.0),
        "3g" => n(190.0, 22.0, 0.006, 0.20, 1300.0, 320.0, 80.0),
        _ => n(55.0, 8.0, 0.003, 0.06, 900.0, 110.0, 150.0),
    }
}

/// Who made one attempt, and when.
#[derive(Debug, Clone, Copy)]
pub struct AttemptKey<'a> {
    /// Region.
    pub region: &'a RegionScenario,
    /// Agent name.
    pub agent: &'a str,
    /// Its network type.
    pub network_type: &'a str,
    /// Relay probed.
    pub target: &'a str,
    /// Transport.
    pub transport: Transport,
    /// Start of the attempt (and of its report window), unix ms.
    pub start_ms: u64,
}

/// The raw values of one viewer attempt.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Attempt {
    /// Why it failed (`view_failures_<cause>`), if it did; a failed attempt has no other value.
    pub failure: Option<&'static str>,
    /// First-frame time, µs.
    pub first_frame_us: u64,
    /// Its `first_keyframe` phase, µs.
    pub first_keyframe_us: u64,
    /// Each stall's length, µs.
    pub stalls_us: Vec<u64>,
    /// Play time, ns.
    pub play_ns: u64,
    /// Stall time, ns (the sum of the stalls).
    pub stall_ns: u64,
    /// Jitter samples, µs, with how many packets each stands for.
    pub jitter_us: Vec<(u64, u64)>,
    /// RTT samples, µs, with weights.
    pub rtt_us: Vec<(u64, u64)>,
    /// Sequence numbers decided.
    pub expected: u64,
    /// Lost.
    pub lost: u64,
    /// Each loss burst's length, packets (first to last loss).
    pub bursts: Vec<u64>,
    /// Lost inside bursts.
    pub burst_lost: u64,
}

/// What the generator is asked for.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Seed.
    pub seed: u64,
    /// End of the history (exclusive), unix ms, hour-aligned.
    pub end_ms: u64,
    /// Days of history before `end_ms`.
    pub days: u64,
    /// Report interval and attempt cadence, ms.
    pub interval_ms: u64,
}

impl Scenario {
    /// Start of the history.
    pub fn start_ms(&self) -> u64 {
        self.end_ms - self.days * DAY_MS
    }

    /// 0 before the story of a degradation starting `days_before_end` before the end, rising
    /// to 1 at the end.
    fn progress(&self, t: u64, days_before_end: u64) -> f64 {
        let start = self.end_ms.saturating_sub(days_before_end * DAY_MS);
        if t < start { 0.0 } else { (t - start) as f64 / (self.end_ms - start) as f64 }
    }

    /// The P0 window (sea and latam): 25 minutes from 13:00 UTC two days before the end.
    pub fn p0_window(&self) -> (u64, u64) {
        let day = (self.end_ms - 2 * DAY_MS) / DAY_MS * DAY_MS;
        let start = day + 13 * HOUR_MS;
        (start, start + 25 * MINUTE_MS)
    }

    /// The sea P1 window: 21:05-22:50 local, on the last local evening that ends at least a
    /// day before the end.
    pub fn sea_p1_window(&self, zone: &Zone) -> (u64, u64) {
        let local = zone.local(self.end_ms - 2 * DAY_MS + 12 * HOUR_MS).date();
        let midnight = zone.midnight(local);
        (midnight + 21 * HOUR_MS + 5 * MINUTE_MS, midnight + 22 * HOUR_MS + 50 * MINUTE_MS)
    }

    /// When relay-fra-2 lost its GOP cache.
    pub fn eu_gop_change(&self) -> u64 {
        self.end_ms - 6 * DAY_MS - 12 * HOUR_MS
    }

    /// The incidents the story holds, by start.
    pub fn incidents(&self, zones: &BTreeMap<&str, Zone>) -> Vec<Incident> {
        let cohort = |pairs: &[(&str, &str)]| {
            pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
        };
        let mut out = Vec::new();
        if let Some(sea) = zones.get("sea") {
            let (s, e) = self.sea_p1_window(sea);
            out.push(Incident {
                level: Level::P1,
                alert: "StallRatioHigh".into(),
                cohorts: vec![cohort(&[("region", "sea"), ("network_type", "4g")])],
                start_unix_ms: s,
                end_unix_ms: Some(e),
                resolution: Some(
                    "Shifted 4G viewers to relay-jkt-1 and lowered the default rung to 480p for \
                     the evening; stall ratio back under 1 % by 22:50."
                        .into(),
                ),
            });
            // An older one, outside a 7-day report.
            let old = self.end_ms.saturating_sub(10 * DAY_MS);
            out.push(Incident {
                level: Level::P2,
                alert: "JitterDrift".into(),
                cohorts: vec![cohort(&[("region", "sea"), ("network_type", "3g")])],
                start_unix_ms: old,
                end_unix_ms: Some(old + 2 * HOUR_MS),
                resolution: Some("Carrier congestion; cleared by itself.".into()),
            });
        }
        let (s, e) = self.p0_window();
        let p0_regions: Vec<_> = ["sea", "latam"]
            .iter()
            .filter(|r| zones.contains_key(**r))
            .map(|r| cohort(&[("region", r)]))
            .collect();
        if !p0_regions.is_empty() {
            out.push(Incident {
                level: Level::P0,
                alert: "FirstFrameFailing".into(),
                cohorts: p0_regions,
                start_unix_ms: s,
                end_unix_ms: Some(e),
                resolution: Some(
                    "A transit provider withdrew a leaked route; first frames recovered at once."
                        .into(),
                ),
            });
        }
        if zones.contains_key("latam") {
            out.push(Incident {
                level: Level::P1,
                alert: "LossHigh".into(),
                cohorts: vec![cohort(&[("region", "latam"), ("target", "relay-sp-2")])],
                start_unix_ms: self.end_ms - DAY_MS + 2 * HOUR_MS,
                end_unix_ms: None,
                resolution: None,
            });
        }
        if zones.contains_key("eu") {
            out.push(Incident {
                level: Level::P2,
                alert: "FirstFrameDrift".into(),
                cohorts: vec![cohort(&[("region", "eu"), ("target", "relay-fra-2")])],
                start_unix_ms: self.eu_gop_change() + 3 * HOUR_MS,
                end_unix_ms: None,
                resolution: None,
            });
        }
        if zones.contains_key("me") {
            let s = self.end_ms - 4 * DAY_MS + 9 * HOUR_MS;
            out.push(Incident {
                level: Level::P2,
                alert: "LossBursts".into(),
                cohorts: vec![cohort(&[("region", "me"), ("network_type", "3g")])],
                start_unix_ms: s,
                end_unix_ms: Some(s + 3 * HOUR_MS),
                resolution: Some("Carrier maintenance on the 3G core ended.".into()),
            });
        }
        out.sort_by_key(|i| i.start_unix_ms);
        out
    }
}

/// One attempt's raw values.
pub fn attempt(s: &Scenario, key: &AttemptKey<'_>, zone: &Zone) -> Attempt {
    let t = key.start_ms;
    let slot = (t / s.interval_ms).to_le_bytes();
    let mut rng = Rng::for_parts(
        s.seed,
        &[key.agent.as_bytes(), key.target.as_bytes(), key.transport.as_str().as_bytes(), &slot],
    );
    let region = key.region.name;
    let net = network(key.network_type);
    let hour = usize::from(zone.local_hour(t + ATTEMPT_MS / 2).hour);
    let peak = PEAK_SHAPE[hour];

    let mut fail_p = 0.002;
    let (p0_start, p0_end) = s.p0_window();
    if (region == "sea" || region == "latam") && t + ATTEMPT_MS > p0_start && t < p0_end {
        fail_p = 1.0;
    }
    let degrade =
        if region == "latam" && key.target == "relay-sp-2" { s.progress(t, 5) } else { 0.0 };
    fail_p += 0.03 * degrade;
    if rng.chance(fail_p) {
        return Attempt { failure: Some("unreachable"), ..Attempt::default() };
    }

    let rtt_ms = net.rtt_ms * (1.0 + 0.5 * peak) * rng.lognormal(1.0, 0.08);
    let mut stall_gain = 2.0;
    let mut stall_length = 1.0 + 0.2 * peak;
    if region == "sea" && key.network_type == "4g" {
        stall_gain = 14.0;
        stall_length = 1.0 + 0.4 * peak;
    }
    // The degrading relay adds up to two stalls a minute by the end, whatever the network.
    let mut stall_rate = net.stall_rate * (1.0 + stall_gain * peak) + 2.0 * degrade;
    if region == "sea" && key.network_type == "4g" {
        let (a, b) = s.sea_p1_window(zone);
        if t + ATTEMPT_MS > a && t < b {
            stall_rate *= 2.5;
        }
    }
    let mut loss = net.loss * (1.0 + 1.5 * peak) + 0.03 * degrade;
    let mut bursty = net.bursty + 0.5 * degrade;
    let mut burst_mean = 3.0;
    if region == "me" && key.network_type == "3g" {
        loss = 0.022 * (1.0 + 0.5 * peak);
        bursty = 0.8;
        burst_mean = 6.0;
    }

    // First frame: connect (and handshake), subscribe, first byte, then the keyframe.
    let round_trips = if key.transport == Transport::Udp { 2.5 } else { 3.0 };
    let setup_ms = rtt_ms * round_trips * rng.lognormal(1.0, 0.15);
    let mut keyframe_ms = net.keyframe_ms * (1.0 + 0.6 * peak) * rng.lognormal(1.0, 0.3);
    if region == "eu" && key.target == "relay-fra-2" && t >= s.eu_gop_change() {
        // No GOP cache and a 4 s GOP: wait for the next keyframe.
        keyframe_ms += rng.uniform() * 4000.0;
    }
    let first_keyframe_us = (keyframe_ms * 1000.0).round().max(1.0) as u64;
    let first_frame_us = first_keyframe_us + (setup_ms * 1000.0).round() as u64;

    let viewing_ns = (ATTEMPT_MS * 1_000_000).saturating_sub(first_frame_us * 1000);
    let mut stalls_us = Vec::new();
    for _ in 0..rng.poisson(stall_rate * viewing_ns as f64 / 60e9) {
        let ms = 500.0 + rng.lognormal(net.stall_median_ms * stall_length - 500.0, 0.7);
        stalls_us.push((ms * 1000.0).round() as u64);
    }
    let mut stall_ns: u64 = stalls_us.iter().map(|us| us * 1000).sum();
    if stall_ns > viewing_ns {
        stalls_us.clear();
        stall_ns = 0;
    }
    let play_ns = viewing_ns - stall_ns;

    let packets = (net.pps * viewing_ns as f64 / 1e9).round() as u64;
    let jitter_scale = net.jitter_ms * (1.0 + 0.8 * peak) * 1000.0;
    let jitter_us =
        weighted(&mut rng, packets.saturating_sub(1), 16, |r| r.lognormal(jitter_scale, 0.5));
    let rtt_us = weighted(&mut rng, ATTEMPT_MS / 1000, 6, |r| r.lognormal(rtt_ms * 1000.0, 0.12));

    let lost = ((loss * rng.lognormal(1.0, 0.35)).min(0.5) * packets as f64).round() as u64;
    let mut bursts = Vec::new();
    let mut burst_lost = 0;
    let mut target = (lost as f64 * bursty).round() as u64;
    while target >= 2 {
        let len = (rng.lognormal(burst_mean, 0.4).round() as u64).clamp(2, target);
        // A burst of `len` lost packets spans a little more than that.
        bursts.push(len + len / 4);
        burst_lost += len;
        target -= len;
    }
    Attempt {
        failure: None,
        first_frame_us,
        first_keyframe_us,
        stalls_us,
        play_ns,
        stall_ns,
        jitter_us,
        rtt_us,
        expected: packets,
        lost,
        bursts,
        burst_lost,
    }
}

/// `n` samples of `draw` standing for `total` values between them (weights add up to `total`).
fn weighted(
    rng: &mut Rng,
    total: u64,
    n: u64,
    mut draw: impl FnMut(&mut Rng) -> f64,
) -> Vec<(u64, u64)> {
    if total == 0 {
        return Vec::new();
    }
    let n = n.min(total);
    (0..n)
        .map(|i| {
            let weight = total / n + u64::from(i < total % n);
            ((draw(rng).round() as u64).max(1), weight)
        })
        .collect()
}
