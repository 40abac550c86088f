//! The efficiency target: 50 viewers of a 2 Mbit/s stream on loopback, without loss. Ignored by
//! default (the test client shares the machine with the relay); run it with
//! `cargo test --release -p stallwatch-agent --test relay_protocol load -- --ignored --nocapture`.

use std::time::Duration;

use stallwatch_agent::relay::Transport;
use stallwatch_agent::tls::{ALPN_DATAGRAM, ALPN_STREAM};
use stallwatch_proto::control::StartAt;
use stallwatch_proto::media::{FrameKind, MediaHeader};

use crate::support::*;

const VIEWERS: usize = 50;
const SECONDS: u32 = 4;
const FPS: u32 = 30;
const GOP_FRAMES: u32 = 60;
/// 2 Mbit/s of video: a GOP of 59 P-frames and one keyframe 6 times their size every 2 s.
const P_FRAME: u32 = 2_000_000 / 8 * 2 / (GOP_FRAMES - 1 + 6);
const FRAGMENT: u32 = 1100;

/// Packets of frame `frame`, fragmented for datagrams (or whole objects for quic-stream), and
/// an audio packet.
fn frame_packets(stream_id: u32, frame: u32, seq: &mut u64, whole: bool) -> Vec<MediaHeader> {
    let gop = frame / GOP_FRAMES;
    let key = frame.is_multiple_of(GOP_FRAMES);
    let size = if key { 6 * P_FRAME } else { P_FRAME };
    let frags = if whole { 1 } else { size.div_ceil(FRAGMENT) };
    let mut out = Vec::new();
    let mut push = |kind, frag_index, frag_count, payload_len| {
        out.push(MediaHeader {
            kind,
            flags: 0,
            frag_index,
            frag_count,
            stream_id,
            payload_len,
            seq: *seq,
            frame,
            gop,
            capture_ns: 0,
            send_ns: 0,
        });
        *seq += 1;
    };
    let kind = if key { FrameKind::Key } else { FrameKind::Predicted };
    for i in 0..frags {
        let len = if whole { size } else { FRAGMENT.min(size - i * FRAGMENT) };
        push(kind, i as u16, frags as u16, len);
    }
    push(FrameKind::Audio, 0, 1, 160);
    out
}

async fn run(transport: Transport) {
    let relay = TestRelay::start(|_| {}).await;
    let (mut quic_publisher, udp_publisher) = match transport {
        Transport::Udp => (None, Some(UdpClient::new(&relay).await)),
        Transport::QuicStream => (Some(QuicClient::connect(&relay, ALPN_STREAM).await), None),
        Transport::QuicDatagram => (Some(QuicClient::connect(&relay, ALPN_DATAGRAM).await), None),
    };
    let id = match (&mut quic_publisher, &udp_publisher) {
        (Some(p), _) => p.publish("load").await,
        (_, Some(p)) => p.publish("load").await,
        _ => unreachable!(),
    };
    let mut seq = 0;
    let frames: Vec<Vec<MediaHeader>> = (0..SECONDS * FPS)
        .map(|f| frame_packets(id, f, &mut seq, transport == Transport::QuicStream))
        .collect();
    let total: usize = frames.iter().map(Vec::len).sum();

    let mut readers = Vec::new();
    for _ in 0..VIEWERS {
        readers.push(match transport {
            Transport::Udp => {
                let v = UdpClient::new(&relay).await;
                v.subscribe("load", StartAt::Live).await;
                tokio::spawn(async move { v.recv_media(total).await.len() })
            }
            Transport::QuicDatagram => {
                let mut v = QuicClient::connect(&relay, ALPN_DATAGRAM).await;
                v.subscribe("load", StartAt::Live).await;
                tokio::spawn(async move {
                    // The whole client moves in: dropping its control stream would end the session.
                    let v = v;
                    read_datagrams(&v.conn, total).await.len()
                })
            }
            Transport::QuicStream => {
                let mut v = QuicClient::connect(&relay, ALPN_STREAM).await;
                v.subscribe("load", StartAt::Live).await;
                let mut objects = read_objects(&v.conn);
                tokio::spawn(async move {
                    let _keep = v;
                    let mut n = 0;
                    while n < total {
                        match tokio::time::timeout(ANSWER_WAIT, objects.recv()).await {
                            Ok(Some(Ok(_))) => n += 1,
                            other => panic!("after {n} of {total}: {other:?}"),
                        }
                    }
                    n
                })
            }
        });
    }

    let started = tokio::time::Instant::now();
    let cpu_before = cpu_seconds();
    let mut writer = quic_publisher.as_ref().map(|p| ObjectWriter::new(&p.conn));
    let mut tick = tokio::time::interval(Duration::from_secs(1) / FPS);
    for frame in &frames {
        tick.tick().await;
        for h in frame {
            match (&quic_publisher, &udp_publisher) {
                (Some(p), _) if transport == Transport::QuicDatagram => {
                    p.conn.send_datagram(packet(h)).unwrap()
                }
                (Some(_), _) => writer.as_mut().unwrap().write(h).await,
                (_, Some(p)) => p.send_raw(&packet(h)).await,
                _ => unreachable!(),
            }
        }
    }
    for reader in readers {
        assert_eq!(reader.await.unwrap(), total);
    }
    let cpu = cpu_seconds() - cpu_before;
    let stats = relay.stats();
    let out = stats.transport(transport);
    println!(
        "{transport}: {VIEWERS} viewers x {total} packets in {:.2?} ({cpu:.2} s CPU, relay and \
         clients); out {} packets, {:.1} Mbit/s per viewer; drops: queue {}, too big {}, \
         displaced {}, gops reset {}",
        started.elapsed(),
        out.packets_out,
        out.bytes_out as f64 * 8.0 / VIEWERS as f64 / f64::from(SECONDS) / 1e6,
        stats.viewer_queue_drops,
        stats.datagrams_too_big,
        stats.datagrams_displaced,
        stats.gops_reset,
    );
    assert_eq!(out.packets_out, (VIEWERS * total) as u64);
}

/// CPU time of this process (user + system), from /proc; 0 where there is none.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "load test; run in release"]
async fn load_50_viewers_at_2_mbits_udp() {
    run(Transport::Udp).await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "load test; run in release"]
async fn load_50_viewers_at_2_mbits_quic_datagram() {
    run(Transport::QuicDatagram).await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "load test; run in release"]
async fn load_50_viewers_at_2_mbits_quic_stream() {
    run(Transport::QuicStream).await;
}
