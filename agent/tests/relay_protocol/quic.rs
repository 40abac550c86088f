//! quic-stream and quic-datagram through an in-process relay.

use std::time::Duration;

use stallwatch_agent::relay::Transport;
use stallwatch_agent::tls::{self, ALPN_DATAGRAM, ALPN_STREAM, Identity, Trust};
use stallwatch_proto::control::{CONTROL_VERSION, Control, ErrorCode, Role, StartAt};
use stallwatch_proto::media::{FrameKind, MediaHeader};

use crate::support::*;

const ALPNS: [(&[u8], Transport); 2] =
    [(ALPN_STREAM, Transport::QuicStream), (ALPN_DATAGRAM, Transport::QuicDatagram)];

/// Sends `packets` over the publisher's transport.
async fn send(
    publisher: &QuicClient,
    writer: &mut ObjectWriter,
    transport: Transport,
    packets: &[MediaHeader],
) {
    for h in packets {
        match transport {
            Transport::QuicStream => writer.write(h).await,
            _ => publisher.conn.send_datagram(packet(h)).unwrap(),
        }
    }
}

/// Receives `n` packets over the viewer's transport. quic-stream: objects of one GOP arrive in
/// order on their stream, streams of different GOPs interleave freely, so the result is sorted
/// by seq after checking the order within each GOP.
async fn receive(
    viewer: &QuicClient,
    objects: &mut Option<tokio::sync::mpsc::UnboundedReceiver<Result<MediaHeader, u64>>>,
    transport: Transport,
    n: usize,
) -> Vec<MediaHeader> {
    match transport {
        Transport::QuicStream => {
            let rx = objects.get_or_insert_with(|| read_objects(&viewer.conn));
            let mut got = Vec::new();
            while got.len() < n {
                let next = tokio::time::timeout(ANSWER_WAIT, rx.recv()).await;
                match next {
                    Ok(Some(Ok(h))) => got.push(h),
                    other => panic!("after {} of {n} objects: {other:?}", got.len()),
                }
            }
            let mut last_seq_of_gop = std::collections::HashMap::new();
            for h in &got {
                if let Some(last) = last_seq_of_gop.insert(h.gop, h.seq) {
                    assert!(h.seq > last, "GOP {} out of order: {} after {last}", h.gop, h.seq);
                }
            }
            got.sort_by_key(|h| h.seq);
            got
        }
        _ => read_datagrams(&viewer.conn, n).await,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn hello_publish_subscribe_and_ping_on_both_alpns() {
    bounded(async {
        let relay = TestRelay::start(|_| {}).await;
        let mut clients = Vec::new();
        for (alpn, transport) in ALPNS {
            let name = format!("s-{transport}");
            let mut publisher = QuicClient::connect(&relay, alpn).await;
            let id = publisher.publish(&name).await;
            let mut viewer = QuicClient::connect(&relay, alpn).await;
            assert_eq!(viewer.subscribe(&name, StartAt::CachedGop).await, id);
            for client in [&mut publisher, &mut viewer] {
                client.send(&Control::Ping { id: 7, send_ns: 123 }).await;
                match client.recv().await {
                    Some(Control::Pong {
                        id: 7,
                        echo_send_ns: 123,
                        relay_recv_ns,
                        relay_send_ns,
                    }) => {
                        assert!(relay_recv_ns > 0 && relay_send_ns >= relay_recv_ns);
                    }
                    other => panic!("no pong: {other:?}"),
                }
            }
            // A resent request is answered the same way.
            publisher.send(&Control::Publish { stream: name.clone() }).await;
            assert_eq!(publisher.recv().await, Some(Control::Ok { stream_id: id, session: 0 }));
            clients.extend([publisher, viewer]);
        }
        let stats =
            relay.wait_for("2 streams, 2 viewers", |s| s.streams == 2 && s.viewers == 2).await;
        assert_eq!(stats.malformed_total(), 0, "{stats:#?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_joining_viewer_gets_the_cached_gop_flagged_then_live_packets_unflagged() {
    bounded(async {
        let relay = TestRelay::start(|_| {}).await;
        for (alpn, transport) in ALPNS {
            let name = format!("cache-{transport}");
            let mut publisher = QuicClient::connect(&relay, alpn).await;
            let id = publisher.publish(&name).await;
            let mut writer = ObjectWriter::new(&publisher.conn);
            let mut media = Media::new(id);
            let gop0 = media.gop(0);
            let gop1 = media.gop(1);
            let before = relay.stats().transport(transport).packets_in;
            send(&publisher, &mut writer, transport, &gop0).await;
            relay
                .wait_for("GOP 0 at the relay", |s| {
                    s.transport(transport).packets_in == before + gop0.len() as u64
                })
                .await;

            let mut viewer = QuicClient::connect(&relay, alpn).await;
            assert_eq!(viewer.subscribe(&name, StartAt::CachedGop).await, id);
            let mut objects = None;
            let cached = receive(&viewer, &mut objects, transport, gop0.len()).await;
            assert_eq!(seqs(&cached), seqs(&gop0), "{transport}: the cached GOP, in order");
            assert!(
                cached.iter().all(MediaHeader::from_cache),
                "{transport}: cached packets are flagged"
            );

            send(&publisher, &mut writer, transport, &gop1).await;
            let live = receive(&viewer, &mut objects, transport, gop1.len()).await;
            assert_eq!(seqs(&live), seqs(&gop1), "{transport}: live packets, no gap, no duplicate");
            assert!(
                live.iter().all(|h| !h.from_cache()),
                "{transport}: live packets are not flagged"
            );
            // Headers are forwarded as sent (apart from the flag).
            assert_eq!(live[0], gop1[0]);
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_gop_cache_the_first_packet_a_viewer_gets_is_live() {
    bounded(async {
        let relay = TestRelay::start(|c| c.gop_cache = false).await;
        for (alpn, transport) in ALPNS {
            let name = format!("live-{transport}");
            let mut publisher = QuicClient::connect(&relay, alpn).await;
            let id = publisher.publish(&name).await;
            let mut writer = ObjectWriter::new(&publisher.conn);
            let mut media = Media::new(id);
            let gop0 = media.gop(0);
            let gop1 = media.gop(1);
            let before = relay.stats().transport(transport).packets_in;
            send(&publisher, &mut writer, transport, &gop0).await;
            relay
                .wait_for("GOP 0 at the relay", |s| {
                    s.transport(transport).packets_in == before + gop0.len() as u64
                })
                .await;
            let mut viewer = QuicClient::connect(&relay, alpn).await;
            viewer.subscribe(&name, StartAt::CachedGop).await;
            send(&publisher, &mut writer, transport, &gop1).await;
            let mut objects = None;
            let got = receive(&viewer, &mut objects, transport, gop1.len()).await;
            assert_eq!(seqs(&got), seqs(&gop1));
            assert!(got.iter().all(|h| !h.from_cache()));
            assert_eq!(got[0].kind, FrameKind::Key);
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_stream_not_found_exists_transport_mismatch_version_and_order() {
    bounded(async {
        let relay = TestRelay::start(|_| {}).await;
        let mut viewer = QuicClient::connect(&relay, ALPN_STREAM).await;
        let answer = viewer
            .request(
                Role::Viewer,
                Control::Subscribe { stream: "nope".into(), start: StartAt::Live },
            )
            .await;
        assert!(
            matches!(answer, Control::Error { code: ErrorCode::StreamNotFound, .. }),
            "{answer:?}"
        );

        let mut publisher = QuicClient::connect(&relay, ALPN_DATAGRAM).await;
        publisher.publish("taken").await;
        let mut second = QuicClient::connect(&relay, ALPN_DATAGRAM).await;
        let answer =
            second.request(Role::Publisher, Control::Publish { stream: "taken".into() }).await;
        assert!(
            matches!(answer, Control::Error { code: ErrorCode::StreamExists, .. }),
            "{answer:?}"
        );

        // The same session may retry: the viewer above now asks for a stream over the wrong
        // transport and is told which one to use.
        viewer.send(&Control::Subscribe { stream: "taken".into(), start: StartAt::Live }).await;
        match viewer.recv().await {
            Some(Control::Error { code: ErrorCode::BadRequest, message }) => {
                assert!(message.contains("quic-datagram"), "{message}");
            }
            other => panic!("expected a transport mismatch, got {other:?}"),
        }

        let mut old = QuicClient::connect(&relay, ALPN_STREAM).await;
        old.send(&Control::Hello { version: 9, role: Role::Viewer, token: None, proof: None })
            .await;
        assert!(matches!(
            old.recv().await,
            Some(Control::Error { code: ErrorCode::VersionMismatch, .. })
        ));

        let mut rude = QuicClient::connect(&relay, ALPN_STREAM).await;
        rude.send(&Control::Publish { stream: "x".into() }).await;
        assert!(matches!(
            rude.recv().await,
            Some(Control::Error { code: ErrorCode::BadRequest, .. })
        ));
        let mut wrong_role = QuicClient::connect(&relay, ALPN_STREAM).await;
        let answer =
            wrong_role.request(Role::Viewer, Control::Publish { stream: "y".into() }).await;
        assert!(matches!(answer, Control::Error { code: ErrorCode::BadRequest, .. }), "{answer:?}");
        assert_eq!(relay.stats().streams, 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn limits_refuse_streams_and_viewers() {
    bounded(async {
        let relay = TestRelay::start(|c| {
            c.limits.max_streams = 1;
            c.limits.max_viewers_per_stream = 1;
        })
        .await;
        let mut publisher = QuicClient::connect(&relay, ALPN_STREAM).await;
        publisher.publish("one").await;
        let mut other = QuicClient::connect(&relay, ALPN_STREAM).await;
        let answer =
            other.request(Role::Publisher, Control::Publish { stream: "two".into() }).await;
        assert!(
            matches!(answer, Control::Error { code: ErrorCode::TooManyStreams, .. }),
            "{answer:?}"
        );
        let mut first = QuicClient::connect(&relay, ALPN_STREAM).await;
        first.subscribe("one", StartAt::Live).await;
        let mut second = QuicClient::connect(&relay, ALPN_STREAM).await;
        let answer = second
            .request(
                Role::Viewer,
                Control::Subscribe { stream: "one".into(), start: StartAt::Live },
            )
            .await;
        assert!(
            matches!(answer, Control::Error { code: ErrorCode::TooManyViewers, .. }),
            "{answer:?}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_publisher_goodbye_ends_the_stream_with_goodbye_and_close_code_0() {
    bounded(async {
        let relay = TestRelay::start(|_| {}).await;
        for (alpn, transport) in ALPNS {
            let name = format!("bye-{transport}");
            let mut publisher = QuicClient::connect(&relay, alpn).await;
            publisher.publish(&name).await;
            let mut viewer = QuicClient::connect(&relay, alpn).await;
            viewer.subscribe(&name, StartAt::Live).await;
            publisher.send(&Control::Goodbye).await;
            assert_eq!(viewer.recv().await, Some(Control::Goodbye), "{transport}");
            let closed = viewer.closed().await;
            assert!(closed_with(&closed, 0), "{transport}: {closed:?}");
            assert!(closed_with(&publisher.closed().await, 0));
        }
        relay.wait_for("no streams or viewers", |s| s.streams == 0 && s.viewers == 0).await;
        // A publisher that just disconnects ends its stream too.
        let mut publisher = QuicClient::connect(&relay, ALPN_DATAGRAM).await;
        publisher.publish("vanishing").await;
        let mut viewer = QuicClient::connect(&relay, ALPN_DATAGRAM).await;
        viewer.subscribe("vanishing", StartAt::Live).await;
        publisher.conn.close(7u32.into(), b"crash");
        assert_eq!(viewer.recv().await, Some(Control::Goodbye));
        relay.wait_for("the stream gone", |s| s.streams == 0).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_quic_stream_viewer_has_its_old_gop_reset_and_gets_the_new_one() {
    bounded(async {
        let relay = TestRelay::start(|_| {}).await;
        let mut publisher = QuicClient::connect(&relay, ALPN_STREAM).await;
        let id = publisher.publish("slow").await;
        // A viewer whose streams take 16 KiB before it reads: the relay blocks on it.
        let mut viewer = QuicClient::connect_with(&relay, ALPN_STREAM, |t| {
            t.stream_receive_window((16u32 * 1024).into());
        })
        .await;
        viewer.subscribe("slow", StartAt::Live).await;
        let mut writer = ObjectWriter::new(&publisher.conn);
        let mut media = Media { frames: 4, key_frags: 1, payload: 60_000, ..Media::new(id) };
        let gop0: Vec<_> = media.gop(0).into_iter().filter(|h| h.kind.is_video()).collect();
        let gop1: Vec<_> = media.gop(1).into_iter().filter(|h| h.kind.is_video()).collect();
        for h in &gop0 {
            writer.write(h).await;
        }
        relay.wait_for("GOP 0 in", |s| s.quic_stream.packets_in == gop0.len() as u64).await;
        for h in &gop1 {
            writer.write(h).await;
        }
        let stats = relay.wait_for("GOP 0 superseded", |s| s.gops_reset >= 1).await;
        assert!(stats.objects_skipped >= 1, "{stats:#?}");
        // Now the viewer reads: GOP 0's stream was reset with code 1, GOP 1 arrives whole.
        let mut objects = read_objects(&viewer.conn);
        let mut resets = 0;
        let mut got = Vec::new();
        while got.len() < gop1.len() {
            match tokio::time::timeout(ANSWER_WAIT, objects.recv()).await.unwrap().unwrap() {
                Ok(h) if h.gop == 1 => got.push(h),
                Ok(_) => {}
                Err(code) => {
                    assert_eq!(code, 1, "reset code");
                    resets += 1;
                }
            }
        }
        assert_eq!(seqs(&got), seqs(&gop1));
        // The reset may still be in flight behind GOP 1's data.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while resets == 0 && tokio::time::Instant::now() < deadline {
            if let Ok(Some(Err(code))) =
                tokio::time::timeout(Duration::from_millis(100), objects.recv()).await
            {
                assert_eq!(code, 1);
                resets += 1;
            }
        }
        assert_eq!(resets, 1, "GOP 0's stream is reset");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_quic_stream_object_reaching_the_relay_after_the_next_gop_still_reaches_the_viewer() {
    bounded(async {
        let relay = TestRelay::start(|_| {}).await;
        let mut publisher = QuicClient::connect(&relay, ALPN_STREAM).await;
        let id = publisher.publish("straggler").await;
        let mut viewer = QuicClient::connect(&relay, ALPN_STREAM).await;
        viewer.subscribe("straggler", StartAt::Live).await;
        let mut objects = read_objects(&viewer.conn);
        let mut media = Media::new(id);
        let gop0 = media.gop(0);
        let gop1 = media.gop(1);
        let (late, early) = gop0.split_last().unwrap();
        let sent_len = gop0.len() + gop1.len();
        // The publisher's GOP streams are independent: GOP 0's last object may reach the relay
        // after GOP 1 (a retransmission on the publisher's leg). Play that order out exactly.
        let mut stream0 = publisher.conn.open_uni().await.unwrap();
        for h in early {
            stream0.write_all(&packet(h)).await.unwrap();
        }
        let mut got = Vec::new();
        let mut receive = async |got: &mut Vec<MediaHeader>, n: usize| {
            while got.len() < n {
                match tokio::time::timeout(ANSWER_WAIT, objects.recv()).await {
                    Ok(Some(Ok(h))) => got.push(h),
                    other => panic!("after {:?}: {other:?}", seqs(got)),
                }
            }
        };
        receive(&mut got, early.len()).await;
        let mut stream1 = publisher.conn.open_uni().await.unwrap();
        for h in &gop1 {
            stream1.write_all(&packet(h)).await.unwrap();
        }
        stream1.finish().unwrap();
        receive(&mut got, early.len() + gop1.len()).await;
        // The viewer's writer has moved on to GOP 1 when the straggler arrives.
        stream0.write_all(&packet(late)).await.unwrap();
        stream0.finish().unwrap();
        receive(&mut got, sent_len).await;
        got.sort_by_key(|h| h.seq);
        let sent: Vec<_> = gop0.iter().chain(&gop1).map(|h| h.seq).collect();
        assert_eq!(seqs(&got), sent);
        let stats = relay
            .wait_for("every object out", |s| s.quic_stream.packets_out == sent.len() as u64)
            .await;
        assert_eq!(stats.objects_skipped, 0, "{stats:#?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_quic_media_is_counted_and_dropped() {
    bounded(async {
        let relay = TestRelay::start(|_| {}).await;
        let mut publisher = QuicClient::connect(&relay, ALPN_DATAGRAM).await;
        let id = publisher.publish("bad").await;
        let mut media = Media::new(id);
        let good = media.gop(0)[0];
        let mut bytes = packet(&good).to_vec();
        bytes[0] = 9; // version
        publisher.conn.send_datagram(bytes.into()).unwrap();
        let mut short = packet(&good).to_vec();
        short.pop();
        publisher.conn.send_datagram(short.into()).unwrap();
        publisher.conn.send_datagram(packet(&MediaHeader { stream_id: id + 1, ..good })).unwrap();
        relay
            .wait_for("three bad datagrams", |s| {
                s.malformed("media_header") == 1
                    && s.malformed("payload_length") == 1
                    && s.malformed("wrong_stream_id") == 1
            })
            .await;

        let mut stream_publisher = QuicClient::connect(&relay, ALPN_STREAM).await;
        let id = stream_publisher.publish("huge").await;
        let mut huge = Media::new(id).gop(0)[0];
        huge.payload_len = 5 << 20;
        let mut stream = stream_publisher.conn.open_uni().await.unwrap();
        stream.write_all(&huge.to_bytes()).await.unwrap();
        let mut cut = stream_publisher.conn.open_uni().await.unwrap();
        cut.write_all(&huge.to_bytes()[..20]).await.unwrap();
        cut.finish().unwrap();
        let stats = relay
            .wait_for("two bad objects", |s| {
                s.malformed("payload_too_large") == 1 && s.malformed("truncated_object") == 1
            })
            .await;
        assert_eq!(stats.quic_datagram.packets_in + stats.quic_stream.packets_in, 0);

        // A broken control frame closes the connection with code 1 after a BadRequest.
        let mut garbled = QuicClient::connect(&relay, ALPN_STREAM).await;
        garbled.send.write_all(&[0x99, 0, 0]).await.unwrap();
        assert!(matches!(
            garbled.recv().await,
            Some(Control::Error { code: ErrorCode::BadRequest, .. })
        ));
        assert!(closed_with(&garbled.closed().await, 1));
        relay.wait_for("control_frame counted", |s| s.malformed("control_frame") == 1).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_quic_datagram_viewers_get_every_packet_in_order() {
    bounded(async {
        let relay = TestRelay::start(|_| {}).await;
        let mut publisher = QuicClient::connect(&relay, ALPN_DATAGRAM).await;
        let id = publisher.publish("fanout").await;
        let mut viewers = Vec::new();
        for _ in 0..20 {
            let mut viewer = QuicClient::connect(&relay, ALPN_DATAGRAM).await;
            viewer.subscribe("fanout", StartAt::Live).await;
            viewers.push(viewer);
        }
        let mut media = Media { payload: 1000, ..Media::new(id) };
        let packets: Vec<_> = (0..10).flat_map(|g| media.gop(g)).collect();
        let readers: Vec<_> = viewers
            .iter()
            .map(|v| {
                let conn = v.conn.clone();
                let n = packets.len();
                tokio::spawn(async move { read_datagrams(&conn, n).await })
            })
            .collect();
        // About 2.5 Mbit/s: a packet every 3 ms.
        for chunk in packets.chunks(4) {
            for h in chunk {
                publisher.conn.send_datagram(packet(h)).unwrap();
            }
            tokio::time::sleep(Duration::from_millis(12)).await;
        }
        for reader in readers {
            assert_eq!(seqs(&reader.await.unwrap()), seqs(&packets));
        }
        let stats = relay.stats();
        assert_eq!(stats.quic_datagram.packets_out, 20 * packets.len() as u64);
        assert_eq!(stats.datagrams_too_big + stats.viewer_queue_drops, 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_says_goodbye_and_closes_with_code_0() {
    bounded(async {
        let relay = TestRelay::start(|_| {}).await;
        let mut publisher = QuicClient::connect(&relay, ALPN_STREAM).await;
        publisher.publish("s").await;
        let mut viewer = QuicClient::connect(&relay, ALPN_STREAM).await;
        viewer.subscribe("s", StartAt::Live).await;
        let udp = UdpClient::new(&relay).await;
        udp.verify(Role::Viewer).await;
        relay.wait_for("the UDP peer", |s| s.udp_peers == 1).await;
        relay.relay.shutdown().await;
        for client in [&mut publisher, &mut viewer] {
            assert_eq!(client.recv().await, Some(Control::Goodbye));
            assert!(closed_with(&client.closed().await, 0));
        }
        assert_eq!(udp.recv_control().await, Control::Goodbye);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn datagrams_wait_for_a_new_viewers_pmtud_and_too_big_ones_are_counted() {
    bounded(async {
        let relay = TestRelay::start(|_| {}).await;
        let mut publisher = QuicClient::connect(&relay, ALPN_DATAGRAM).await;
        let id = publisher.publish("mtu").await;
        // Wait for the publisher's PMTUD to allow datagrams a fresh connection cannot carry.
        let deadline = tokio::time::Instant::now() + ANSWER_WAIT;
        while publisher.conn.max_datagram_size().unwrap() < 1300 {
            assert!(tokio::time::Instant::now() < deadline, "no PMTUD on loopback?");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut media = Media { payload: 1300 - 48, ..Media::new(id) };
        let gop0 = media.gop(0);
        for h in &gop0 {
            publisher.conn.send_datagram(packet(h)).unwrap();
        }
        relay.wait_for("GOP 0 in", |s| s.quic_datagram.packets_in == gop0.len() as u64).await;
        let mut viewer = QuicClient::connect(&relay, ALPN_DATAGRAM).await;
        viewer.subscribe("mtu", StartAt::CachedGop).await;
        let cached = read_datagrams(&viewer.conn, gop0.len()).await;
        assert_eq!(seqs(&cached), seqs(&gop0), "the cached GOP waited for PMTUD");
        assert_eq!(relay.stats().datagrams_too_big, 0);

        // A viewer that takes datagrams of at most 600 bytes never fits them: counted after
        // the grace period, and later packets that fit still arrive.
        let mut small = QuicClient::connect_with(&relay, ALPN_DATAGRAM, |t| {
            t.datagram_receive_buffer_size(Some(600));
        })
        .await;
        small.subscribe("mtu", StartAt::CachedGop).await;
        relay
            .wait_for("the cached GOP too big", |s| s.datagrams_too_big == gop0.len() as u64)
            .await;
        // (One at a time: the 600 bytes are also the viewer's whole datagram receive buffer.)
        media.payload = 400;
        for h in media.gop(1) {
            publisher.conn.send_datagram(packet(&h)).unwrap();
            assert_eq!(read_datagrams(&small.conn, 1).await, [h]);
        }
    })
    .await;
}

/// A CA that issues relay (server) and agent (client) certificates, as `ca` does for a fleet.
struct TestCa {
    cert: rustls::pki_types::CertificateDer<'static>,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl TestCa {
    fn new(name: &str) -> TestCa {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::default();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap().der().clone();
        TestCa { cert, issuer: rcgen::Issuer::new(params, key) }
    }

    fn issue(&self, names: &[&str], usage: rcgen::ExtendedKeyUsagePurpose) -> Identity {
        self.issue_serial(names, usage, None)
    }

    fn issue_serial(
        &self,
        names: &[&str],
        usage: rcgen::ExtendedKeyUsagePurpose,
        serial: Option<&[u8]>,
    ) -> Identity {
        let key = rcgen::KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = rcgen::CertificateParams::new(names).unwrap();
        params.extended_key_usages = vec![usage];
        params.serial_number = serial.map(rcgen::SerialNumber::from_slice);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Identity {
            certs: vec![cert.der().clone()],
            key: rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        }
    }
}

/// Connects with `trust` and asks for a stream that does not exist: the relay's answer, or
/// why there was none.
async fn ask(addr: std::net::SocketAddr, trust: &Trust) -> Result<Control, String> {
    let config = tls::client_config(trust, ALPN_DATAGRAM).unwrap();
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let exchange = async {
        let conn = endpoint.connect_with(config, addr, "localhost").unwrap().await?;
        let (mut send, mut recv) = conn.open_bi().await?;
        let hello = Control::Hello {
            version: CONTROL_VERSION,
            role: Role::Viewer,
            token: None,
            proof: None,
        };
        let request = Control::Subscribe { stream: "none".into(), start: StartAt::Live };
        send.write_all(&[hello.encode(), request.encode()].concat()).await?;
        let mut buf = Vec::new();
        loop {
            if let Some((msg, _)) = Control::decode_frame(&buf).unwrap() {
                return Ok(msg);
            }
            let mut chunk = [0u8; 512];
            match recv.read(&mut chunk).await? {
                Some(n) => buf.extend_from_slice(&chunk[..n]),
                None => return Err(anyhow::anyhow!("control stream finished")),
            }
        }
    };
    let answer: anyhow::Result<Control> = match tokio::time::timeout(ANSWER_WAIT, exchange).await {
        Ok(result) => result,
        Err(_) => Err(anyhow::anyhow!("no answer")),
    };
    answer.map_err(|e| format!("{e:#}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plan_run_relay_refuses_quic_clients_without_a_fleet_certificate() {
    bounded(async {
        use rcgen::ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
        let fleet = TestCa::new("fleet");
        let relay = TestRelay::start(|c| {
            c.identity = fleet.issue(&["localhost"], ServerAuth);
            c.fleet_ca = Some(vec![fleet.cert.clone()]);
        })
        .await;
        let addr = relay.relay.quic_addr();
        let cas = vec![fleet.cert.clone()];

        // A probe that verifies the relay but shows no certificate of its own (what `probe
        // --ca` is) is refused in the handshake, as is an agent of another fleet.
        let anonymous = ask(addr, &Trust::Ca(cas.clone())).await;
        assert!(anonymous.is_err(), "{anonymous:?}");
        let stranger = TestCa::new("another fleet").issue(&["agent"], ClientAuth);
        let foreign = ask(addr, &Trust::Fleet { cas: cas.clone(), client: stranger }).await;
        assert!(foreign.is_err(), "{foreign:?}");
        assert_eq!(relay.stats().streams, 0);

        // An agent of the fleet is served.
        let agent = fleet.issue(&["agent"], ClientAuth);
        let answer = ask(addr, &Trust::Fleet { cas, client: agent }).await;
        assert!(
            matches!(answer, Ok(Control::Error { code: ErrorCode::StreamNotFound, .. })),
            "{answer:?}"
        );
    })
    .await;
}

/// The collector's revocation list reaches a plan-run relay in its plan: a revoked agent's
/// certificate fails the handshake, an unrevoked one is served, and a new list applies to the
/// next connection without restarting the relay.
#[tokio::test(flavor = "multi_thread")]
async fn a_plan_run_relay_refuses_revoked_agent_certificates() {
    bounded(async {
        use rcgen::ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
        let fleet = TestCa::new("fleet");
        let revoked = tls::RevokedClients::default();
        revoked.replace(&["0a0b0c".to_string()]);
        let relay = TestRelay::start(|c| {
            c.identity = fleet.issue(&["localhost"], ServerAuth);
            c.fleet_ca = Some(vec![fleet.cert.clone()]);
            c.revoked_clients = revoked.clone();
        })
        .await;
        let addr = relay.relay.quic_addr();
        let as_agent = |client: Identity| Trust::Fleet { cas: vec![fleet.cert.clone()], client };
        let leaked = fleet.issue_serial(&["agent"], ClientAuth, Some(&[0x0a, 0x0b, 0x0c]));
        let honest = fleet.issue_serial(&["agent"], ClientAuth, Some(&[0x0d]));
        let served = |answer: &Result<Control, String>| {
            matches!(answer, Ok(Control::Error { code: ErrorCode::StreamNotFound, .. }))
        };

        let refused = ask(addr, &as_agent(leaked.clone())).await;
        let reason = refused.as_ref().expect_err("a revoked certificate is refused");
        assert!(reason.to_lowercase().contains("revoked"), "{reason}");
        let answer = ask(addr, &as_agent(honest.clone())).await;
        assert!(served(&answer), "{answer:?}");

        // The next plan revokes the other certificate (and, say, reinstates nothing else).
        revoked.replace(&["0d".to_string()]);
        let refused = ask(addr, &as_agent(honest)).await;
        assert!(refused.is_err(), "{refused:?}");
        let answer = ask(addr, &as_agent(leaked)).await;
        assert!(served(&answer), "{answer:?}");
        assert_eq!(relay.stats().streams, 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_without_a_request_in_time_is_closed_with_code_1() {
    bounded(async {
        let wait = Duration::from_millis(300);
        let relay = TestRelay::start(|c| c.limits.quic_request_timeout = wait).await;
        // Hello and pings keep the control stream busy, but no request comes.
        let mut idle = QuicClient::connect(&relay, ALPN_DATAGRAM).await;
        idle.send(&Control::Hello {
            version: CONTROL_VERSION,
            role: Role::Viewer,
            token: None,
            proof: None,
        })
        .await;
        idle.send(&Control::Ping { id: 1, send_ns: 1 }).await;
        assert!(matches!(idle.recv().await, Some(Control::Pong { id: 1, .. })));
        assert!(closed_with(&idle.closed().await, 1));
        assert_eq!(relay.stats().request_timeouts, 1);

        // A refused request counts as the request: a viewer may wait for its publisher.
        let mut waiting = QuicClient::connect(&relay, ALPN_DATAGRAM).await;
        let request = Control::Subscribe { stream: "later".into(), start: StartAt::Live };
        let answer = waiting.request(Role::Viewer, request).await;
        assert!(matches!(answer, Control::Error { code: ErrorCode::StreamNotFound, .. }));
        tokio::time::sleep(3 * wait).await;
        waiting.send(&Control::Ping { id: 2, send_ns: 2 }).await;
        assert!(matches!(waiting.recv().await, Some(Control::Pong { id: 2, .. })));
        assert_eq!(relay.stats().request_timeouts, 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn one_address_holds_at_most_its_caps_of_connections_and_streams() {
    bounded(async {
        let relay = TestRelay::start(|c| {
            c.limits.max_sessions_per_source = 3;
            c.limits.max_streams_per_source = 1;
        })
        .await;
        let mut publisher = QuicClient::connect(&relay, ALPN_DATAGRAM).await;
        publisher.publish("mine").await;
        // A second stream from the same address is refused, though the relay has room.
        let mut second = QuicClient::connect(&relay, ALPN_DATAGRAM).await;
        let answer = second.request(Role::Publisher, Control::Publish { stream: "b".into() }).await;
        assert!(
            matches!(answer, Control::Error { code: ErrorCode::TooManyStreams, .. }),
            "{answer:?}"
        );
        // A third connection fits; a fourth is refused before the handshake completes.
        let _third = QuicClient::connect(&relay, ALPN_DATAGRAM).await;
        let config =
            stallwatch_agent::tls::client_config(&Trust::Pin(relay.pin), ALPN_DATAGRAM).unwrap();
        let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        let fourth = endpoint.connect_with(config, relay.relay.quic_addr(), "localhost").unwrap();
        assert!(tokio::time::timeout(ANSWER_WAIT, fourth).await.unwrap().is_err());
        assert_eq!(relay.stats().source_cap_refusals, 2);
        // A connection that ends gives its slot back.
        second.conn.close(0u32.into(), b"done");
        drop(second);
        let deadline = tokio::time::Instant::now() + ANSWER_WAIT;
        loop {
            let config =
                stallwatch_agent::tls::client_config(&Trust::Pin(relay.pin), ALPN_DATAGRAM)
                    .unwrap();
            let attempt =
                endpoint.connect_with(config, relay.relay.quic_addr(), "localhost").unwrap().await;
            if attempt.is_ok() {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "the slot never came back");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}
