//! Issue 10's acceptance, in virtual time with values computed by hand: repair, the live
//! player (rebuffering, anchoring on the first live frame), timing samples, self-noise.

use std::time::Duration;

use stallwatch_measure::link::{Fate, Link, LinkConfig, Outage};
use stallwatch_measure::pacer::{Pacer, Packetizer, max_payload};
use stallwatch_measure::repair::{
    KeyframeGate, NackConfig, NackScheduler, RetransmitConfig, Retransmitter, SendHistory,
};
use stallwatch_measure::sim::{self, SimConfig};
use stallwatch_measure::{
    Feedback, Receiver, ReceiverConfig, Repair, StreamProfile, Time, WindowMetrics,
};
use stallwatch_proto::media::{FLAG_FROM_CACHE, FLAG_RETRANSMITTED, FrameKind, MediaHeader};

const MS: u64 = 1_000_000;

/// Due time of video frame `n` at 30 fps, as the pacer computes it (ns).
fn due(n: u64) -> u64 {
    n * 1_000_000_000 / 30
}

/// Video only, 30 fps, 200 kbit/s, 2 s GOP: a P-frame is 769 bytes (one packet), a keyframe
/// 4615 bytes (five packets: four of 1152 payload bytes and one of 7).
fn small_video() -> StreamProfile {
    StreamProfile {
        name: "custom".into(),
        fps: 30,
        video_bitrate_bps: 200_000,
        gop_frames: 60,
        key_ratio: 6.0,
        audio_pps: 0,
        audio_bitrate_bps: 0,
    }
}

/// 10 s of `small_video` over `down` (20 ms back), with `repair`.
fn run_small(down: LinkConfig, repair: Repair) -> (WindowMetrics, sim::SimResult) {
    let mut config = SimConfig::new(down, Duration::from_secs(10));
    config.uplink = LinkConfig { delay: Duration::from_millis(20), ..LinkConfig::default() };
    config.profile = small_video();
    config.receiver.repair = repair;
    let run = sim::run(&config);
    (sim::total(&run.windows), run)
}

/// An outage of one nanosecond at a send time: exactly the packets sent then are lost.
fn lose_sent_at(ns: u64, duration: Duration) -> Vec<Outage> {
    vec![Outage { start: Time::from_nanos(ns), duration }]
}

#[test]
fn one_lost_p_frame_packet_is_repaired_with_nack_and_freezes_the_gop_without() {
    assert_eq!(small_video().predicted_frame_bytes(), 769);
    // 20 ms each way, no jitter. Frame 100 (one packet, sent at 3333.33 ms) is lost. Frame
    // 101 arrives at 3386.67 ms and reveals the gap; the NACK leaves after the 10 ms reorder
    // allowance (3396.67), reaches the sender 20 ms later, and the retransmission arrives
    // 20 ms after that: 3436.67 ms, 50 ms after the gap was seen. Frame 100 is due at
    // capture + 20 ms (first keyframe's transit) + 300 ms = 3653.33 ms: in time.
    let down = LinkConfig {
        delay: Duration::from_millis(20),
        outages: lose_sent_at(due(100), Duration::from_nanos(1)),
        ..LinkConfig::default()
    };
    let (t, run) = run_small(down.clone(), Repair::Nack);
    assert_eq!((t.loss.lost, t.repair.residual_lost), (1, 0));
    assert_eq!((t.repair.nack.nacks_sent, t.repair.nack.packets_nacked), (1, 1));
    assert_eq!(t.repair.nack.nack_retries, 0);
    assert_eq!((t.repair.retransmissions_received, t.repair.packets_repaired), (1, 1));
    assert_eq!((t.repair_delay.count(), t.repair_delay.sum()), (1, 50_000));
    assert_eq!(run.retransmit.retransmitted, 1);
    assert_eq!(t.repair.keyframe_requests, 0);
    assert_eq!((t.player.stalls, t.player.freezes), (0, 0));
    assert_eq!(t.player.frames_rendered, 300);
    // The retransmission is no timing sample: 5 keyframes of 5 packets and 295 P-frames, less
    // the lost one, arrived.
    assert_eq!(t.pdv.count(), 5 * 5 + 295 - 1);

    // Without repair: frame 100 is missing, 101..=119 are undecodable, the next keyframe (120,
    // at 4 s) ends one stall of capture(120) - capture(99) = 700 ms.
    let (t, _) = run_small(down, Repair::None);
    assert_eq!((t.loss.lost, t.repair.residual_lost, t.repair.nack.nacks_sent), (1, 1, 0));
    assert_eq!((t.player.frames_missing, t.player.frames_undecodable), (1, 19));
    assert_eq!((t.player.stalls, t.player.stall_time_ns), (1, due(120) - due(99)));
    assert_eq!(t.player.frames_rendered, 280);
}

#[test]
fn a_loss_run_beyond_the_deadline_costs_one_keyframe_request_and_one_freeze() {
    // Down: 20 ms and 1 Mbit/s, so a keyframe's size counts; up: 20 ms. The first keyframe's
    // five packets (4 x 1200 + 55 bytes) take 38.84 ms on the link: complete at 58.84 ms, so
    // frame f is due at capture(f) + 58.84 + 300 ms. A P-frame packet (817 bytes) takes
    // 6.536 ms.
    //
    // Everything sent in [5.0 s, 5.6 s) is lost: frames 150..=167. Frame 168 (sent at 5.6 s)
    // arrives at 5626.536 ms: frame 150's deadline (5358.84 ms) has passed and a later frame
    // is here, so 150 is missing, its GOP is broken, and the keyframe request leaves at once.
    // It reaches the sender at 5646.536 ms: the next frame, 170 (due 5666.67 ms), is a
    // keyframe. The NACK for the 18 lost packets (sent 10 ms after the gap) reaches the
    // sender first (5656.536 ms); their retransmissions hold the link for 117.648 ms, so the
    // keyframe completes at 5774.184 + 38.84 + 20 = 5833.024 ms, before its deadline
    // (5666.67 + 358.84 = 6025.51 ms). It is shown then: one freeze from frame 149 to frame
    // 170, capture(170) - capture(149) = 700 ms.
    let down = LinkConfig {
        delay: Duration::from_millis(20),
        rate_bps: Some(1_000_000),
        outages: lose_sent_at(due(150), Duration::from_millis(600)),
        ..LinkConfig::default()
    };
    let (t, run) = run_small(down, Repair::Nack);
    assert_eq!(t.loss.lost, 18);
    assert_eq!(t.repair.keyframe_requests, 1);
    assert_eq!(run.keyframe_requests_received, 1);
    assert_eq!((t.player.stalls, t.player.stall_time_ns), (1, due(170) - due(149)));
    assert_eq!(t.player.freezes, 1);
    // Frames 150..=169 are not shown (missing, or complete but their GOP is broken).
    assert_eq!(t.player.frames_missing + t.player.frames_undecodable, 20);
    assert_eq!(t.player.frames_rendered, 300 - 20);
    // The lost packets were still repaired (late for the picture, not for residual loss).
    assert_eq!(t.repair.residual_lost, 0);

    // The same loss without repair: the GOP stays broken until the scheduled keyframe at 6 s
    // (frame 180): capture(180) - capture(149).
    let down = LinkConfig {
        delay: Duration::from_millis(20),
        rate_bps: Some(1_000_000),
        outages: lose_sent_at(due(150), Duration::from_millis(600)),
        ..LinkConfig::default()
    };
    let (t, _) = run_small(down, Repair::None);
    assert_eq!((t.player.stalls, t.player.stall_time_ns), (1, due(180) - due(149)));
}

#[test]
fn a_repair_that_misses_the_deadline_by_less_than_the_repair_wait_is_waited_for_not_frozen_on() {
    // 100 ms each way, no rate limit: the first keyframe completes at 100 ms, so frame f is
    // due at capture(f) + 400 ms. Pings every second give RTT samples of 200 ms (RFC 6298:
    // rttvar 100, 75, 56.25, 42.1875 ms after the samples at 0.2, 1.2, 2.2 and 3.2 s), so from
    // 3.2 s the retry interval, and the player's repair wait, is 200 + 4 x 42.1875 = 368.75 ms.
    //
    // Frame 100 (one packet, sent at 3333.333 ms) is lost. Frame 101 arrives at 3466.667 ms;
    // the NACK leaves at 3476.667 and reaches the sender at 3576.667 ms, and that
    // retransmission is lost too. The NACK is repeated a retry interval later (3845.417 ms),
    // and the second retransmission arrives at 4045.417 ms: 312 ms after frame 100 was due
    // (3733.333 ms), within the wait (until 4102.083 ms). By then frames up to 118 (sent at
    // 3933.333 ms) have arrived: 600 ms of media behind frame 100, more than the 300 ms
    // playout delay, so it is shown at once, at 4045.417 ms, 345.417 ms after frame 99: no
    // stall, one freeze, no keyframe request. (Skipped at its deadline, frame 100 would have
    // broken its GOP: a keyframe request at 3733 ms and a 567 ms stall until keyframe 116.)
    let mut config = SimConfig::new(
        LinkConfig {
            delay: Duration::from_millis(100),
            outages: vec![
                Outage { start: Time::from_nanos(due(100)), duration: Duration::from_nanos(1) },
                Outage {
                    start: Time::from_nanos(3_576_666_666),
                    duration: Duration::from_nanos(1),
                },
            ],
            ..LinkConfig::default()
        },
        Duration::from_secs(10),
    );
    config.uplink = LinkConfig { delay: Duration::from_millis(100), ..LinkConfig::default() };
    config.profile = small_video();
    config.receiver.repair = Repair::Nack;
    let run = sim::run(&config);
    let t = sim::total(&run.windows);
    assert_eq!((t.loss.lost, t.repair.residual_lost), (1, 0));
    assert_eq!((t.repair.nack.packets_nacked, t.repair.nack.nack_retries), (1, 1));
    assert_eq!((run.retransmit.retransmitted, t.repair.retransmissions_received), (2, 1));
    assert_eq!(t.repair.keyframe_requests, 0);
    let p = &t.player;
    assert_eq!((p.stalls, p.rebuffers, p.freezes), (0, 1, 1));
    assert_eq!(p.freeze_time_ns, 4_045_416_666 - due(99) - 400 * MS);
    assert_eq!((p.frames_rendered, p.frames_missing, p.frames_late), (300, 0, 0));
    // The offset grew by the 312 ms the repair was late: the last frame is shown then.
    assert_eq!(p.play_time_ns, due(299) - due(0) + (4_045_416_666 - due(100) - 400 * MS));
}

/// Every packet of a 720p30 stream sent in `[0, until)`, with its send time (ns).
fn stream_720p30(until: Duration) -> Vec<(u64, MediaHeader)> {
    let mut pacer = Pacer::new("720p30".parse().unwrap(), Time::ZERO);
    let mut packetizer = Packetizer::new(1);
    let mut out = Vec::new();
    while let Some(frame) = pacer.poll_frame(Time::ZERO + until) {
        if frame.due >= Time::ZERO + until {
            break;
        }
        let sent = frame.due.as_nanos();
        for h in packetizer.packetize(&frame, sent, max_payload(1200)) {
            out.push((sent, h));
        }
    }
    out
}

/// Feeds `arrivals` in order, then plays out what arrived and finishes.
fn view(config: ReceiverConfig, start: Time, arrivals: &[(u64, MediaHeader)]) -> WindowMetrics {
    let mut rx = Receiver::new(config, start);
    let mut now = start;
    for (at, h) in arrivals {
        now = Time::from_nanos(*at);
        rx.on_packet(now, h);
    }
    while !rx.playout_done() {
        let Some(t) = rx.poll_timeout() else { break };
        now = now.max(t);
        rx.handle_timeout(now);
    }
    rx.finish(now)
}

/// Arrival times through a FIFO path: `delay(send)` one way, never before the previous packet.
fn through_fifo(
    packets: impl IntoIterator<Item = (u64, MediaHeader)>,
    delay: impl Fn(u64) -> u64,
) -> Vec<(u64, MediaHeader)> {
    let mut last = 0;
    packets
        .into_iter()
        .map(|(sent, h)| {
            last = (sent + delay(sent)).max(last);
            (last, h)
        })
        .collect()
}

#[test]
fn a_lasting_one_second_delay_step_is_one_stall_of_about_a_second_then_playback_goes_on() {
    // 20 ms one way until 5 s, 1020 ms from then on. Frame 149 shows at capture + 320 ms;
    // frame 150 (sent at 5 s) is due at 5320 ms and nothing after it has arrived, so the
    // player waits; it arrives at 6020 ms and shows a playout delay later, 6320 ms, and the
    // rest follows on the new offset.
    let step = 5_000 * MS;
    let arrivals = through_fifo(stream_720p30(Duration::from_secs(12)), |sent| {
        if sent < step { 20 * MS } else { 1_020 * MS }
    });
    let w = view(ReceiverConfig::default(), Time::ZERO, &arrivals);
    let p = &w.player;
    assert_eq!((p.stalls, p.rebuffers), (1, 1));
    assert_eq!(p.stall_time_ns, due(150) - due(149) + 1_000 * MS);
    assert_eq!((p.frames_rendered, p.frames_missing, p.frames_late), (360, 0, 0));
    // Every gap between shown frames is play or stall: the last is shown 1 s later than the
    // first's offset would have it.
    assert_eq!(p.play_time_ns + p.stall_time_ns, due(359) - due(0) + 1_000 * MS);
}

#[test]
fn two_viewers_joining_early_and_late_in_a_gop_stall_identically_on_a_delay_spike() {
    // The relay caches the GOP that started with keyframe 60 (2 s). Viewer A joins 50 ms
    // after it, viewer B 1.9 s after it: each gets the cached packets at once (20 ms after
    // joining), then live ones. 20 ms one way, except packets sent in [8 s, 8.5 s): 1020 ms
    // (FIFO: later packets queue behind them). Both anchor on their first live frame, so
    // both play 320 ms behind capture, and both wait for frame 240 (sent at 8 s, due at
    // 8320 ms, arrives at 9020 ms): one stall each, capture(240) - capture(239) + 1 s.
    // (Anchored on the cached keyframe instead, B would have had a 2.2 s buffer: no stall.)
    let packets = stream_720p30(Duration::from_secs(14));
    let first_of_gop = packets.iter().position(|(_, h)| h.frame == 60 && h.kind == FrameKind::Key);
    let first_of_gop = first_of_gop.unwrap();
    let spike =
        |sent: u64| if (8_000 * MS..8_500 * MS).contains(&sent) { 1_020 * MS } else { 20 * MS };
    let viewer = |join: u64| {
        let cached = packets[first_of_gop..]
            .iter()
            .filter(|(sent, _)| *sent < join)
            .map(|(_, h)| (join, MediaHeader { flags: FLAG_FROM_CACHE, ..*h }));
        let live = packets.iter().filter(|(sent, _)| *sent >= join).copied();
        let arrivals = through_fifo(cached.chain(live), spike);
        view(ReceiverConfig::default(), Time::from_nanos(join), &arrivals)
    };
    let (a, b) = (viewer(2_050 * MS), viewer(3_900 * MS));
    for (name, w) in [("A", &a), ("B", &b)] {
        let p = &w.player;
        assert_eq!((p.stalls, p.rebuffers), (1, 1), "viewer {name}");
        assert_eq!(p.stall_time_ns, due(240) - due(239) + 1_000 * MS, "viewer {name}");
        assert_eq!(p.frames_missing + p.frames_undecodable + p.frames_late, 0, "viewer {name}");
        // On screen 320 ms after the first live frame was captured.
        let ff = w.first_frame.as_ref().unwrap();
        assert!(ff.first_render.unwrap() <= Duration::from_millis(20 + 34 + 300), "{ff:?}");
    }
    // A decoded 2 cached frames to reach the live edge (60, 61), B 58: 60..=116 cached, and
    // 117, sent as B joined, arrived back to back with the replay: queued behind it (its 7
    // packets and the audio packet sent with it are no timing samples either).
    assert_eq!((a.player.frames_caught_up, b.player.frames_caught_up), (2, 58));
    assert_eq!((a.packets_behind_replay, b.packets_behind_replay), (0, 8));
    assert_eq!(a.player.frames_rendered, 420 - 62);
    assert_eq!(b.player.frames_rendered, 420 - 118);
}

#[test]
fn a_packet_after_the_loss_wait_is_lost_only_not_a_delay_or_jitter_sample() {
    // 10 s of 720p30, 20 ms one way; packet 100 arrives 3 s late, after its 2 s loss wait.
    let packets = stream_720p30(Duration::from_secs(10));
    let arrivals = |late: bool| {
        let mut a: Vec<(u64, MediaHeader)> = packets
            .iter()
            .filter(|(_, h)| h.seq != 100)
            .map(|(sent, h)| (sent + 20 * MS, *h))
            .collect();
        if late {
            let (sent, h) = packets[100];
            let at = sent + 3_020 * MS;
            let i = a.partition_point(|(t, _)| *t <= at);
            a.insert(i, (at, h));
        }
        a
    };
    let with = view(ReceiverConfig::default(), Time::ZERO, &arrivals(true));
    let without = view(ReceiverConfig::default(), Time::ZERO, &arrivals(false));
    assert_eq!((with.loss.lost, with.loss.late_after_wait), (1, 1));
    assert_eq!(without.loss.lost, 1);
    for (name, a, b) in [
        ("pdv", &with.pdv, &without.pdv),
        ("jitter", &with.jitter, &without.jitter),
        ("ipdv", &with.ipdv, &without.ipdv),
    ] {
        assert_eq!((a.count(), a.sum()), (b.count(), b.sum()), "{name}");
    }
    assert_eq!(with.pdv.count(), packets.len() as u64 - 1);
}

#[test]
fn four_g_is_smooth_with_nack_and_stalls_without() {
    // DESIGN.md's 4G (0.2 % loss, 45 ms, 5/15 ms jitter), 5 minutes of 720p30.
    let preset = stallwatch_measure::link::preset("4g").unwrap();
    let run = |repair| {
        let mut config = SimConfig::new(preset.down.clone(), Duration::from_secs(300));
        config.uplink = preset.up.clone();
        config.receiver.repair = repair;
        sim::total(&sim::run(&config).windows)
    };
    let stall_ratio = |w: &WindowMetrics| {
        w.player.stall_time_ns as f64 / (w.player.stall_time_ns + w.player.play_time_ns) as f64
    };
    let repaired = run(Repair::Nack);
    assert!(repaired.loss.lost > 100, "{:?}", repaired.loss);
    assert_eq!(repaired.repair.residual_lost, 0);
    assert!(stall_ratio(&repaired) < 0.01, "stall ratio {}", stall_ratio(&repaired));
    let raw = run(Repair::None);
    assert!(stall_ratio(&raw) > 0.2, "stall ratio {}", stall_ratio(&raw));
}

#[test]
fn a_window_where_the_agent_ran_late_is_marked_self_noise() {
    let mut rx = Receiver::new(ReceiverConfig::default(), Time::ZERO);
    // Within the bounds: 10 ms of emulator lateness, 30 ms (a tenth of 300 ms) of send timer.
    rx.note_emulator_lateness(Duration::from_millis(10));
    rx.note_sender_lateness(Duration::from_millis(30));
    let w = rx.take_window(Time::from_millis(1_000));
    assert!(!w.self_noise.is_marked());
    assert_eq!(w.self_noise.sender_late_max_ns, 30 * MS);
    rx.note_emulator_lateness(Duration::from_micros(10_001));
    assert!(rx.take_window(Time::from_millis(2_000)).self_noise.is_marked());
    rx.note_sender_lateness(Duration::from_micros(30_001));
    let third = rx.take_window(Time::from_millis(3_000));
    assert!(third.self_noise.is_marked());
    assert_eq!(third.self_noise.emulator_late_max_ns, 0, "each window starts over");
    // Merged windows count the marked ones.
    let mut total = w.clone();
    total.merge(&third);
    assert_eq!(total.self_noise.windows, 1);
}

/// What travels between publisher, relay and viewer in the chain test.
#[derive(Debug)]
enum Hop {
    /// Media towards the relay, and towards the viewer.
    ToRelay(MediaHeader),
    ToViewer(MediaHeader),
    /// Feedback from the relay to the publisher, and from the viewer to the relay.
    ToPublisher(Feedback),
    FromViewer(Feedback),
}

/// Events by time, then by the order they were scheduled.
#[derive(Default)]
struct Events {
    heap: std::collections::BinaryHeap<std::cmp::Reverse<(Time, u64, usize)>>,
    items: Vec<Option<Hop>>,
}

impl Events {
    fn push(&mut self, link: &mut Link, now: Time, size: usize, hop: Hop) -> bool {
        let Fate::Deliver(at) = link.send(now, size) else { return false };
        let order = self.items.len() as u64;
        self.items.push(Some(hop));
        self.heap.push(std::cmp::Reverse((at, order, self.items.len() - 1)));
        true
    }

    /// Sends retransmissions, stamped now.
    fn resend(
        &mut self,
        link: &mut Link,
        now: Time,
        headers: Vec<MediaHeader>,
        hop: fn(MediaHeader) -> Hop,
    ) {
        for mut h in headers {
            h.send_ns = now.as_nanos();
            let _ = self.push(link, now, 48 + h.payload_len as usize, hop(h));
        }
    }

    fn next_at(&self) -> Option<Time> {
        self.heap.peek().map(|std::cmp::Reverse((at, _, _))| *at)
    }

    fn pop(&mut self) -> Option<(Time, Hop)> {
        let std::cmp::Reverse((at, _, i)) = self.heap.pop()?;
        Some((at, self.items[i].take()?))
    }
}

#[test]
fn a_relay_repairs_its_publisher_leg_and_its_viewers_with_the_same_pieces() {
    // Publisher -> relay -> viewer, 30 ms and 2 % random loss on each leg in each direction.
    // The relay runs a NackScheduler towards the publisher (no player: it asks for 1 s), keeps
    // a SendHistory of what it received, answers the viewer's NACKs through a Retransmitter,
    // and forwards keyframe requests through a KeyframeGate. Packets the relay got as
    // retransmissions reach the viewer still marked: the viewer's network loss is every
    // original lost on either leg.
    let leg = |seed| {
        let config =
            LinkConfig { delay: Duration::from_millis(30), loss: 0.02, ..LinkConfig::default() };
        Link::new(config, seed)
    };
    let (mut up1, mut back1, mut up2, mut back2) = (leg(1), leg(2), leg(3), leg(4));
    let rtt = Duration::from_millis(60);
    let profile: StreamProfile = "720p30".parse().unwrap();
    let budget = RetransmitConfig::for_bitrate(profile.total_bitrate_bps());
    let mut pacer = Pacer::new(profile, Time::ZERO);
    let mut packetizer = Packetizer::new(1);
    let mut publisher_history = SendHistory::default();
    let mut publisher_rtx = Retransmitter::new(budget);
    let mut relay_nack = NackScheduler::new(NackConfig::default());
    let mut relay_history = SendHistory::default();
    let mut relay_rtx = Retransmitter::new(budget);
    let mut relay_gate = KeyframeGate::default();
    let config = ReceiverConfig { repair: Repair::Nack, ..ReceiverConfig::default() };
    let mut viewer = Receiver::new(config, Time::ZERO);
    relay_nack.on_rtt_sample(rtt);
    publisher_rtx.on_rtt_sample(rtt);
    relay_rtx.on_rtt_sample(rtt);
    viewer.on_rtt_sample(rtt);

    let send_end = Time::from_millis(60_000);
    let mut events = Events::default();
    let (mut originals, mut lost_leg1, mut lost_leg2, mut forwarded_pli) = (0u64, 0u64, 0u64, 0u64);
    let mut windows = Vec::new();
    let mut next_window = Time::from_millis(10_000);
    let mut now = Time::ZERO;
    loop {
        let pacer_at = pacer.poll_timeout().filter(|&t| t < send_end);
        let next = [pacer_at, events.next_at(), viewer.poll_timeout(), relay_nack.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        let done = pacer_at.is_none() && events.next_at().is_none() && viewer.playout_done();
        let Some(t) = next.filter(|_| !done) else { break };
        now = now.max(t);
        while next_window <= now {
            windows.push(viewer.take_window(next_window));
            next_window += Duration::from_secs(10);
        }
        while let Some(frame) = pacer.poll_frame(now).filter(|_| now < send_end) {
            for mut h in packetizer.packetize(&frame, frame.due.as_nanos(), max_payload(1200)) {
                h.send_ns = now.as_nanos();
                publisher_history.record(&h);
                originals += 1;
                if !events.push(&mut up1, now, 48 + h.payload_len as usize, Hop::ToRelay(h)) {
                    lost_leg1 += 1;
                }
            }
        }
        while events.next_at() == Some(now) {
            let Some((_, hop)) = events.pop() else { break };
            match hop {
                Hop::ToRelay(h) => {
                    relay_nack.on_packet(now, h.seq, h.capture_ns);
                    if relay_history.get(h.seq).is_none() {
                        relay_history.record(&h);
                        let size = 48 + h.payload_len as usize;
                        let original = h.flags & FLAG_RETRANSMITTED == 0;
                        if !original {
                            // The viewer has likely NACKed it already: that is answered now.
                            relay_rtx.note_resent(now, h.seq);
                        }
                        if !events.push(&mut up2, now, size, Hop::ToViewer(h)) && original {
                            lost_leg2 += 1;
                        }
                    }
                }
                Hop::ToViewer(h) => viewer.on_packet(now, &h),
                Hop::ToPublisher(Feedback::Nack(nack)) => {
                    let resent = publisher_rtx.on_nack(now, &nack, &publisher_history);
                    events.resend(&mut up1, now, resent, Hop::ToRelay);
                }
                Hop::ToPublisher(Feedback::KeyframeRequest) => {
                    let _ = pacer.request_keyframe(now);
                }
                Hop::FromViewer(Feedback::Nack(nack)) => {
                    let resent = relay_rtx.on_nack(now, &nack, &relay_history);
                    events.resend(&mut up2, now, resent, Hop::ToViewer);
                }
                Hop::FromViewer(Feedback::KeyframeRequest) => {
                    if relay_gate.try_pass(now) {
                        forwarded_pli += 1;
                        let _ = events.push(
                            &mut back1,
                            now,
                            48,
                            Hop::ToPublisher(Feedback::KeyframeRequest),
                        );
                    }
                }
            }
        }
        while let Some(nack) = relay_nack.poll_nack(now, None) {
            let size = 48 + 8 * nack.seqs.len();
            let _ = events.push(&mut back1, now, size, Hop::ToPublisher(Feedback::Nack(nack)));
        }
        viewer.handle_timeout(now);
        while let Some(feedback) = viewer.poll_feedback(now) {
            let _ = events.push(&mut back2, now, 64, Hop::FromViewer(feedback));
        }
    }
    windows.push(viewer.finish(now));
    let t = sim::total(&windows);
    // Network loss is exact: every original lost on either leg, but for losses after the last
    // packet the viewer received (it cannot see those).
    assert!(originals > 16_000, "{originals}");
    let dropped = lost_leg1 + lost_leg2;
    assert!(t.loss.lost <= dropped && dropped - t.loss.lost <= 3, "{} vs {dropped}", t.loss.lost);
    assert!(lost_leg1 > 250 && lost_leg2 > 250, "{lost_leg1} {lost_leg2}");
    // Both legs were repaired: residual loss under 0.1 %, no stall.
    assert!(relay_nack.counters().packets_nacked >= lost_leg1, "{:?}", relay_nack.counters());
    assert!(relay_rtx.counters().retransmitted > 0 && publisher_rtx.counters().retransmitted > 0);
    assert!(
        (t.repair.residual_lost as f64) < 0.001 * t.repair.residual_expected as f64,
        "{:?}",
        t.repair
    );
    let stall_ratio =
        t.player.stall_time_ns as f64 / (t.player.stall_time_ns + t.player.play_time_ns) as f64;
    assert!(stall_ratio < 0.01, "stall ratio {stall_ratio}");
    assert!(forwarded_pli <= t.repair.keyframe_requests);
    // Forwarding what the relay repaired answers the viewer's NACKs for it: few duplicates.
    let duplicates = t.repair.retransmissions_received - t.repair.packets_repaired;
    assert!(duplicates < t.repair.packets_repaired / 10, "{duplicates} duplicates: {:?}", t.repair);
}

/// What the relay's publisher leg did in [`relay_leg_over_a_300ms_round_trip`].
struct LegRun {
    /// Originals the link dropped.
    lost: u64,
    counters: stallwatch_measure::repair::NackCounters,
    /// Retransmissions the publisher sent.
    resent: u64,
    /// The relay's RTT estimate at the end.
    rtt: Option<Duration>,
}

/// A publisher and a relay 150 ms apart each way (2 % loss on media, none back), 60 s of
/// 720p30: the relay NACKs what it misses with no playout deadline (1 s), as towards a
/// plain-UDP publisher, whose pings give the relay no RTT. With `learn`, retransmissions
/// (marked by the publisher) go to `NackScheduler::on_retransmission`, as the UDP relay feeds
/// them; without, to `on_packet` only, and the relay re-asks on the 100 ms default.
fn relay_leg_over_a_300ms_round_trip(learn: bool) -> LegRun {
    let one_way = Duration::from_millis(150);
    let mut down = Link::new(LinkConfig { delay: one_way, loss: 0.02, ..LinkConfig::default() }, 7);
    let mut back = Link::new(LinkConfig { delay: one_way, ..LinkConfig::default() }, 8);
    let profile: StreamProfile = "720p30".parse().unwrap();
    let mut publisher_rtx =
        Retransmitter::new(RetransmitConfig::for_bitrate(profile.total_bitrate_bps()));
    // The publisher has the RTT from its pongs.
    publisher_rtx.on_rtt_sample(2 * one_way);
    let mut pacer = Pacer::new(profile, Time::ZERO);
    let mut packetizer = Packetizer::new(1);
    let mut history = SendHistory::default();
    let mut relay = NackScheduler::new(NackConfig::default());
    let send_end = Time::from_millis(60_000);
    let mut events = Events::default();
    let (mut lost, mut resent) = (0, 0);
    let mut now = Time::ZERO;
    let mut counters = stallwatch_measure::repair::NackCounters::default();
    loop {
        let pacer_at = pacer.poll_timeout().filter(|&t| t < send_end);
        let next = [pacer_at, events.next_at(), relay.poll_timeout()].into_iter().flatten().min();
        let Some(t) = next else { break };
        now = now.max(t);
        while let Some(frame) = pacer.poll_frame(now).filter(|_| now < send_end) {
            for mut h in packetizer.packetize(&frame, frame.due.as_nanos(), max_payload(1200)) {
                h.send_ns = now.as_nanos();
                history.record(&h);
                if !events.push(&mut down, now, 48 + h.payload_len as usize, Hop::ToRelay(h)) {
                    lost += 1;
                }
            }
        }
        while events.next_at() == Some(now) {
            let Some((_, hop)) = events.pop() else { break };
            match hop {
                Hop::ToRelay(h) if learn && h.flags & FLAG_RETRANSMITTED != 0 => {
                    relay.on_retransmission(now, h.seq, h.capture_ns)
                }
                Hop::ToRelay(h) => relay.on_packet(now, h.seq, h.capture_ns),
                Hop::ToPublisher(Feedback::Nack(nack)) => {
                    let headers = publisher_rtx.on_nack(now, &nack, &history);
                    resent += headers.len() as u64;
                    events.resend(&mut down, now, headers, Hop::ToRelay);
                }
                other => panic!("not on this leg: {other:?}"),
            }
        }
        while let Some(nack) = relay.poll_nack(now, None) {
            let size = 48 + 8 * nack.seqs.len();
            let _ = events.push(&mut back, now, size, Hop::ToPublisher(Feedback::Nack(nack)));
        }
        counters += &relay.take_counters();
    }
    LegRun { lost, counters, resent, rtt: relay.rtt() }
}

#[test]
fn a_relay_learns_the_rtt_of_its_udp_publisher_leg_from_repairs_and_re_asks_once_per_rtt() {
    let ms = Duration::from_millis;
    let learnt = relay_leg_over_a_300ms_round_trip(true);
    let fixed = relay_leg_over_a_300ms_round_trip(false);
    for run in [&learnt, &fixed] {
        let c = &run.counters;
        assert!(run.lost > 200, "2 % of some 16,000 packets: {}", run.lost);
        // Everything was repaired within the relay's 1 s either way...
        assert_eq!(c.packets_nacked, run.lost, "{:?}", c);
        assert_eq!(c.nacks_given_up, 0, "{c:?}");
    }
    // ...but on the 100 ms guess every number is asked for three times (10, 110 and 210 ms
    // after the gap) before the 300 ms answer to the first ask is back.
    assert!(fixed.rtt.is_none());
    assert!(fixed.counters.nack_retries >= 2 * fixed.lost, "{:?}", fixed.counters);
    // Learnt from repairs: about the 300 ms round trip (plus the 1200-byte packets' queueing
    // at the link's rate, none here), so a number is asked for again only when its answer
    // was lost too (2 %) or the estimate's variation has not decayed yet.
    let rtt = learnt.rtt.expect("an RTT from repairs");
    assert!((ms(300)..ms(310)).contains(&rtt), "{rtt:?}");
    assert!(learnt.counters.rtt_samples > learnt.lost / 2, "{:?}", learnt.counters);
    assert!(
        learnt.counters.nack_retries * 10 < learnt.lost,
        "retries {} for {} lost",
        learnt.counters.nack_retries,
        learnt.lost
    );
    // The publisher resent about once per loss either way (its own RTT suppresses repeats);
    // what the estimate saves is the relay's asking.
    assert!(
        learnt.resent <= learnt.lost + learnt.lost / 10,
        "{} for {}",
        learnt.resent,
        learnt.lost
    );
}
