//! Statistical and scripted checks of the measurement core through the link simulator.
//! Everything runs under virtual time, so results hold on any machine, however loaded.

use std::time::Duration;

use stallwatch_measure::link::{GilbertElliott, LinkConfig, Outage};
use stallwatch_measure::player::Medium;
use stallwatch_measure::sim::{self, SimConfig};
use stallwatch_measure::{StreamProfile, Time};

/// An audio-only stream of `pps` single-fragment packets per second.
fn sparse_stream(pps: u32) -> StreamProfile {
    StreamProfile { audio_pps: pps, ..StreamProfile::from_str_checked("audio") }
}

trait FromStrChecked {
    fn from_str_checked(s: &str) -> Self;
}
impl FromStrChecked for StreamProfile {
    fn from_str_checked(s: &str) -> Self {
        s.parse().expect("known profile")
    }
}

#[test]
fn two_percent_random_loss_over_100k_packets_is_measured_within_three_sigma() {
    let link = LinkConfig { loss: 0.02, delay: Duration::from_millis(40), ..LinkConfig::default() };
    // 720p30 sends about 267 packets/s: 380 s is a little over 100k packets.
    let mut config = SimConfig::new(link, Duration::from_secs(380));
    config.seed = 7;
    let run = sim::run(&config);
    let total = sim::total(&run.windows);
    let n = total.loss.expected as f64;
    assert!(n >= 100_000.0, "only {n} packets");
    let sigma = (n * 0.02 * 0.98).sqrt();
    let lost = total.loss.lost as f64;
    assert!(
        (lost - 0.02 * n).abs() <= 3.0 * sigma,
        "lost {lost} of {n}, 3 sigma = {}",
        3.0 * sigma
    );
    // And it is exactly what the link dropped, but for drops after the last arrival.
    assert!(total.loss.lost <= run.link.dropped_random);
    assert!(run.link.dropped_random - total.loss.lost <= 3);
    assert_eq!(total.loss.expected + (run.link.dropped_random - total.loss.lost), run.packets_sent);
}

#[test]
fn gilbert_elliott_p_and_r_are_recovered_within_ten_percent() {
    let (p, r) = (0.01, 0.25);
    let link = LinkConfig {
        gilbert_elliott: Some(GilbertElliott::new(p, r)),
        delay: Duration::from_millis(40),
        ..LinkConfig::default()
    };
    // About 270k packets.
    let run = sim::run(&SimConfig::new(link, Duration::from_secs(1_000)));
    let loss = sim::total(&run.windows).loss;
    let fitted_p = loss.gilbert_p().unwrap();
    let fitted_r = loss.gilbert_r().unwrap();
    assert!((fitted_p - p).abs() <= 0.1 * p, "p {fitted_p} vs {p}");
    assert!((fitted_r - r).abs() <= 0.1 * r, "r {fitted_r} vs {r}");
    // Mean burst length of a Gilbert channel is 1/r packets; RFC 3611 bursts merge nearby
    // ones, so they are at least that long on average.
    assert!(loss.bursts > 0 && loss.burst_packets as f64 / loss.bursts as f64 >= 1.0 / r);
}

#[test]
fn uniform_jitter_gives_the_analytic_rfc3550_jitter() {
    // Delays are d + U(-a, a), independent per packet; packets are 100 ms apart, more than 2a,
    // so they never reorder and consecutive arrivals are consecutive sends. Then
    // D = X_j - X_i with X_i, X_j iid U(-a, a): D is triangular on [-2a, 2a] with density
    // (2a - |z|) / 4a^2, and E|D| = 2 * int_0^2a z (2a - z) / 4a^2 dz = 2a / 3.
    // J is an exponential average of |D| (gain 1/16), so its mean converges to 2a/3:
    // 13.33 ms for a = 20 ms.
    let a = Duration::from_millis(20);
    let link = LinkConfig { delay: Duration::from_millis(100), jitter: a, ..LinkConfig::default() };
    let mut config = SimConfig::new(link, Duration::from_secs(10_000)); // 100k packets
    config.profile = sparse_stream(10);
    config.receiver.medium = Medium::Audio;
    let run = sim::run(&config);
    let total = sim::total(&run.windows);
    assert_eq!(total.loss.reordered, 0);
    let analytic_us = 2.0 * a.as_micros() as f64 / 3.0;
    let measured_us = total.jitter.mean();
    assert!(
        (measured_us - analytic_us).abs() <= 0.1 * analytic_us,
        "jitter {measured_us} us vs analytic {analytic_us} us"
    );
    // PDV spans the jitter range: its maximum is close to 2a.
    let pdv_max = total.pdv.histogram().max() as f64;
    assert!(pdv_max <= 2.0 * a.as_micros() as f64 * 1.01 && pdv_max >= 1.8 * a.as_micros() as f64);
}

#[test]
fn a_clean_path_has_no_loss_no_stalls_and_first_frame_after_the_keyframe_arrives() {
    // 10 Mbit/s bottleneck, 50 ms delay. The first keyframe (46 154 bytes, 41 fragments of at
    // most 1152 payload bytes) is sent at t = 0, queues behind itself at 10 Mbit/s and its last
    // fragment arrives after 41 serialisations plus the delay.
    let link = LinkConfig {
        delay: Duration::from_millis(50),
        rate_bps: Some(10_000_000),
        ..LinkConfig::default()
    };
    let config = SimConfig::new(link, Duration::from_secs(30));
    let key = config.profile.key_frame_bytes();
    let run = sim::run(&config);
    let total = sim::total(&run.windows);
    assert_eq!(total.loss.lost, 0);
    assert_eq!(total.player.stalls, 0);
    assert_eq!(total.player.frames_missing + total.player.frames_undecodable, 0);
    assert_eq!(total.player.frames_rendered, 30 * 30);
    let fragments: Vec<u32> = stallwatch_measure::pacer::fragment_sizes(key, 1152).collect();
    let wire_bits: u64 = fragments.iter().map(|&f| u64::from(f + 48) * 8).sum();
    let expected_ns = wire_bits * 1_000_000_000 / 10_000_000 + 50_000_000;
    let ff = total.first_frame.expect("first frame measured");
    assert!(
        ff.total.as_nanos().abs_diff(u128::from(expected_ns)) <= 1_000,
        "first frame {:?}, expected {expected_ns} ns",
        ff.total
    );
}

#[test]
fn a_300ms_blackout_stalls_until_the_next_keyframe() {
    // 720p30, GOP 60 (2 s). Outage [10.5 s, 10.8 s) drops frames 315..=323 (captured at
    // n / 30 s); 324..359 are undecodable, 360 (12 s) is the next keyframe. The player shows
    // frame 314 (10.4667 s) and then frame 360: one stall of capture(360) - capture(314).
    let link = LinkConfig {
        delay: Duration::from_millis(30),
        outages: vec![Outage {
            start: Time::from_millis(10_500),
            duration: Duration::from_millis(300),
        }],
        ..LinkConfig::default()
    };
    let run = sim::run(&SimConfig::new(link, Duration::from_secs(20)));
    let total = sim::total(&run.windows);
    let capture = |n: u64| n * 1_000_000_000 / 30;
    assert_eq!(total.player.stalls, 1);
    assert_eq!(total.player.stalls_600ms, 1);
    assert_eq!(total.player.stall_time_ns, capture(360) - capture(314));
    assert_eq!(total.player.frames_missing, 9);
    assert_eq!(total.player.frames_undecodable, 36);
    assert_eq!(total.player.frames_rendered, 600 - 45);
    assert!(total.player.freezes >= 1);
    assert_eq!(total.loss.lost, run.link.dropped_outage);
    let ratio = total.player.stall_time_ns as f64
        / (total.player.stall_time_ns + total.player.play_time_ns) as f64;
    assert!(ratio > 0.07 && ratio < 0.09, "stall ratio {ratio}");
}

#[test]
fn windows_partition_the_stream() {
    let link = LinkConfig { loss: 0.01, delay: Duration::from_millis(20), ..LinkConfig::default() };
    let run = sim::run(&SimConfig::new(link, Duration::from_secs(35)));
    // 10 s windows: 0-10, 10-20, 20-30, then the final partial one.
    assert_eq!(run.windows.len(), 4);
    assert!(run.windows.windows(2).all(|w| w[0].end == w[1].start));
    let total = sim::total(&run.windows);
    assert_eq!(total.packets, run.link.delivered);
    assert_eq!(run.windows.iter().filter(|w| w.first_frame.is_some()).count(), 1);
}

#[test]
fn the_same_seed_gives_the_same_results() {
    let link = LinkConfig {
        loss: 0.01,
        jitter: Duration::from_millis(15),
        delay: Duration::from_millis(20),
        ..LinkConfig::default()
    };
    let config = SimConfig::new(link, Duration::from_secs(20));
    let a = sim::total(&sim::run(&config).windows);
    let b = sim::total(&sim::run(&config).windows);
    assert_eq!(a.loss, b.loss);
    assert_eq!(a.player, b.player);
    assert_eq!(a.jitter.sum(), b.jitter.sum());
}
