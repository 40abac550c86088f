//! Plain UDP through an in-process relay: the stateless handshake, media, limits, timeouts.

use std::net::SocketAddr;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use stallwatch_agent::relay::{CREDENTIAL_LEN, credential_proof};
use stallwatch_proto::control::{CONTROL_VERSION, Control, ErrorCode, Role, StartAt, seal};
use stallwatch_proto::media::MediaHeader;

use tokio::net::UdpSocket;

use crate::support::*;

/// How long "nothing else arrives" is watched for.
const QUIET: Duration = Duration::from_millis(300);

#[tokio::test(flavor = "multi_thread")]
async fn a_hello_without_token_draws_exactly_one_challenge_no_larger_than_itself() {
    bounded(async {
        let relay = TestRelay::start(|_| {}).await;
        let client = UdpClient::new(&relay).await;
        let hello = Control::Hello {
            version: CONTROL_VERSION,
            role: Role::Publisher,
            token: None,
            proof: None,
        };
        client.send(&hello).await;
        let answer = client.recv_raw(ANSWER_WAIT).await.expect("a challenge");
        assert!(
            answer.len() <= hello.encode().len(),
            "{} > {}",
            answer.len(),
            hello.encode().len()
        );
        assert!(matches!(Control::decode_datagram(&answer), Ok(Control::Challenge { .. })));
        // Anything but a hello from an unverified address gets no answer at all.
        client.send(&Control::Publish { stream: "s".into() }).await;
        client.send(&Control::Ping { id: 1, send_ns: 1 }).await;
        client.send_raw(&packet(&Media::new(1).gop(0)[0])).await;
        assert_eq!(client.recv_raw(QUIET).await, None);
        let stats = relay.stats();
        assert_eq!(stats.challenges_sent, 1);
        assert_eq!(stats.malformed("unverified"), 3, "{stats:#?}");
        assert_eq!(stats.udp_peers, 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_relay_with_a_credential_refuses_hellos_without_its_proof_and_serves_those_with_it() {
    bounded(async {
        let credential = [7u8; CREDENTIAL_LEN];
        let relay = TestRelay::start(|c| c.udp_credential = Some(credential)).await;
        let publish = Control::Publish { stream: "s".into() };
        let refusals = [("no proof", None), ("wrong credential", Some([8u8; CREDENTIAL_LEN]))];
        for (case, held) in refusals {
            let client = UdpClient::new(&relay).await;
            client.verify_proving(Role::Publisher, |t| held.map(|c| credential_proof(&c, t))).await;
            // The refusal comes to the hello, readable, not as a silent timeout.
            match client.recv_control().await {
                Control::Error { code: ErrorCode::Unauthorized, message } => {
                    assert!(message.contains("credential"), "{case}: {message}");
                }
                other => panic!("{case}: expected an unauthorized error, got {other:?}"),
            }
            client.send(&publish).await;
            assert_eq!(client.recv_raw(QUIET).await, None, "{case}: the request was served");
        }
        let stats = relay.stats();
        assert_eq!(stats.malformed("bad_credential"), 2, "{stats:#?}");
        assert_eq!(stats.udp_peers, 0);
        let honest = UdpClient::new(&relay).await;
        honest.verify_proving(Role::Publisher, |t| Some(credential_proof(&credential, t))).await;
        honest.send(&publish).await;
        assert!(matches!(honest.recv_control().await, Control::Ok { .. }));
        assert_eq!(relay.stats().udp_peers, 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_token_is_counted_and_challenged_again() {
    bounded(async {
        let relay = TestRelay::start(|_| {}).await;
        let a = UdpClient::new(&relay).await;
        let b = UdpClient::new(&relay).await;
        a.send(&Control::Hello {
            version: CONTROL_VERSION,
            role: Role::Viewer,
            token: None,
            proof: None,
        })
        .await;
        let Control::Challenge { token } = a.recv_control().await else { panic!("no challenge") };
        // b replays a's token: not valid for b's address.
        b.send(&Control::Hello {
            version: CONTROL_VERSION,
            role: Role::Viewer,
            token: Some(token),
            proof: None,
        })
        .await;
        assert!(matches!(b.recv_control().await, Control::Challenge { .. }));
        b.send(&Control::Subscribe { stream: "s".into(), start: StartAt::Live }).await;
        assert_eq!(b.recv_raw(QUIET).await, None);
        let stats = relay.stats();
        assert_eq!(stats.malformed("bad_token"), 1);
        assert_eq!(stats.udp_peers, 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn handshake_publish_subscribe_cache_and_idempotent_resends() {
    bounded(async {
        let relay = TestRelay::start(|_| {}).await;
        let publisher = UdpClient::new(&relay).await;
        let id = publisher.publish("u").await;
        // Resending hello and publish gets the same answer.
        publisher.verify(Role::Publisher).await;
        publisher.send(&Control::Publish { stream: "u".into() }).await;
        assert_eq!(
            publisher.recv_control().await,
            Control::Ok { stream_id: id, session: publisher.session() }
        );

        let mut media = Media::new(id);
        let gop0 = media.gop(0);
        let gop1 = media.gop(1);
        for h in &gop0 {
            publisher.send_raw(&packet(h)).await;
        }
        relay.wait_for("GOP 0 in", |s| s.udp.packets_in == gop0.len() as u64).await;

        let viewer = UdpClient::new(&relay).await;
        assert_eq!(viewer.subscribe("u", StartAt::CachedGop).await, id);
        let cached = viewer.recv_media(gop0.len()).await;
        assert_eq!(seqs(&cached), seqs(&gop0));
        assert!(cached.iter().all(MediaHeader::from_cache));
        // A resent subscribe is answered again and replays nothing.
        viewer.send(&Control::Subscribe { stream: "u".into(), start: StartAt::CachedGop }).await;
        assert_eq!(
            viewer.recv_control().await,
            Control::Ok { stream_id: id, session: viewer.session() }
        );

        for h in &gop1 {
            publisher.send_raw(&packet(h)).await;
        }
        let live = viewer.recv_media(gop1.len()).await;
        assert_eq!(seqs(&live), seqs(&gop1));
        assert!(live.iter().all(|h| !h.from_cache()));

        viewer.send(&Control::Ping { id: 5, send_ns: 99 }).await;
        assert!(matches!(
            viewer.recv_control().await,
            Control::Pong { id: 5, echo_send_ns: 99, .. }
        ));

        // The publisher leaves: the viewer gets a goodbye, and the name is free.
        publisher.send(&Control::Goodbye).await;
        assert_eq!(viewer.recv_control().await, Control::Goodbye);
        let stats = relay.wait_for("stream ended", |s| s.streams == 0).await;
        assert_eq!(stats.malformed_total(), 0, "{stats:#?}");
        assert_eq!(stats.udp.packets_out, (gop0.len() + gop1.len()) as u64);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn udp_refusals_and_transport_mismatch() {
    bounded(async {
        let relay = TestRelay::start(|_| {}).await;
        let viewer = UdpClient::new(&relay).await;
        let answer = viewer
            .request(
                Role::Viewer,
                Control::Subscribe { stream: "none".into(), start: StartAt::Live },
            )
            .await;
        assert!(
            matches!(answer, Control::Error { code: ErrorCode::StreamNotFound, .. }),
            "{answer:?}"
        );

        let quic_publisher = {
            let mut p = QuicClient::connect(&relay, stallwatch_agent::tls::ALPN_STREAM).await;
            p.publish("q").await;
            p
        };
        viewer.send(&Control::Subscribe { stream: "q".into(), start: StartAt::Live }).await;
        match viewer.recv_control().await {
            Control::Error { code: ErrorCode::BadRequest, message } => {
                assert!(message.contains("quic-stream"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        let publisher = UdpClient::new(&relay).await;
        let answer =
            publisher.request(Role::Publisher, Control::Publish { stream: "q".into() }).await;
        assert!(
            matches!(answer, Control::Error { code: ErrorCode::StreamExists, .. }),
            "{answer:?}"
        );
        // A verified viewer may not publish.
        viewer.send(&Control::Publish { stream: "v".into() }).await;
        assert!(matches!(
            viewer.recv_control().await,
            Control::Error { code: ErrorCode::BadRequest, .. }
        ));
        drop(quic_publisher);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn silent_peers_are_forgotten_and_a_silent_publisher_ends_its_stream() {
    bounded(async {
        let timeout = Duration::from_millis(300);
        let relay = TestRelay::start(|c| c.limits.udp_peer_timeout = timeout).await;
        let publisher = UdpClient::new(&relay).await;
        publisher.publish("quiet").await;
        let silent = UdpClient::new(&relay).await;
        silent.subscribe("quiet", StartAt::Live).await;
        let pinging = UdpClient::new(&relay).await;
        pinging.subscribe("quiet", StartAt::Live).await;
        relay.wait_for("3 peers, 2 viewers", |s| s.udp_peers == 3 && s.viewers == 2).await;

        // The publisher and one viewer keep pinging; the silent viewer is forgotten.
        let started = tokio::time::Instant::now();
        while started.elapsed() < 3 * timeout {
            publisher.send(&Control::Ping { id: 1, send_ns: 1 }).await;
            pinging.send(&Control::Ping { id: 1, send_ns: 1 }).await;
            tokio::time::sleep(timeout / 5).await;
        }
        let stats = relay.stats();
        assert_eq!((stats.udp_peers, stats.viewers, stats.streams), (2, 1, 1), "{stats:#?}");
        // Forgotten means unverified: its pings are dropped unanswered.
        silent.send(&Control::Ping { id: 2, send_ns: 2 }).await;
        let mut heard = Vec::new();
        let started = tokio::time::Instant::now();
        while started.elapsed() < QUIET {
            publisher.send(&Control::Ping { id: 1, send_ns: 1 }).await;
            pinging.send(&Control::Ping { id: 1, send_ns: 1 }).await;
            heard.extend(silent.recv_within(timeout / 5).await);
        }
        assert!(
            heard.iter().all(|r| matches!(r, Received::Control(Control::Pong { id: 1, .. }))),
            "{heard:?}"
        );

        // Now the publisher falls silent too: its stream ends and the viewer hears goodbye.
        let ended = async {
            loop {
                pinging.send(&Control::Ping { id: 3, send_ns: 3 }).await;
                match pinging.recv_within(timeout / 5).await {
                    Some(Received::Control(Control::Goodbye)) => return,
                    _ => continue,
                }
            }
        };
        tokio::time::timeout(10 * timeout, ended)
            .await
            .expect("no goodbye after the publisher left");
        assert_eq!(relay.stats().streams, 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_udp_input_is_counted_by_reason() {
    bounded(async {
        let relay = TestRelay::start(|_| {}).await;
        let publisher = UdpClient::new(&relay).await;
        let id = publisher.publish("m").await;
        let good = Media::new(id).gop(0)[0];
        publisher.send_unsealed(&[]).await;
        publisher.send_raw(&[0x99, 0, 0]).await; // unknown control type
        publisher.send_raw(&[0x86, 0, 16, 1]).await; // truncated ping
        let mut bad_version = packet(&good).to_vec();
        bad_version[0] = 7;
        publisher.send_raw(&bad_version).await;
        publisher.send_raw(&packet(&good)[..60]).await; // payload shorter than declared
        publisher.send_raw(&packet(&MediaHeader { stream_id: id + 1, ..good })).await;
        publisher.send_raw(&Control::Ok { stream_id: 1, session: 0 }.encode()).await; // relay-only message
        let viewer = UdpClient::new(&relay).await;
        viewer.subscribe("m", StartAt::Live).await;
        viewer.send_raw(&packet(&good)).await; // media from a viewer
        let stats = relay.wait_for("every reason", |s| s.malformed_total() == 8).await;
        for (reason, n) in [
            ("empty", 1),
            ("control_frame", 2),
            ("media_header", 1),
            ("payload_length", 1),
            ("wrong_stream_id", 1),
            ("unexpected_control", 1),
            ("not_publisher", 1),
        ] {
            assert_eq!(stats.malformed(reason), n, "{reason}: {stats:#?}");
        }
        assert_eq!(stats.udp.packets_in, 0);
        // Nothing was answered.
        assert_eq!(publisher.recv_raw(QUIET).await, None);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_publisher_over_its_rate_limit_is_dropped_with_rate_limited() {
    bounded(async {
        // 1 Mbit/s: 125 kB/s, burst 125 kB; dropping another 125 kB gets the publisher out.
        let relay = TestRelay::start(|c| c.limits.udp_rate_limit_bps = 1_000_000).await;
        let publisher = UdpClient::new(&relay).await;
        let id = publisher.publish("fast").await;
        let mut media = Media { payload: 1100, frames: 30, ..Media::new(id) };
        let burst: Vec<_> = (0..10).flat_map(|g| media.gop(g)).collect();
        assert!(burst.len() * 1148 > 260_000);
        for h in &burst {
            publisher.send_raw(&packet(h)).await;
        }
        match publisher.recv_control().await {
            Control::Error { code: ErrorCode::RateLimited, .. } => {}
            other => panic!("{other:?}"),
        }
        let stats = relay.wait_for("the stream gone", |s| s.streams == 0 && s.udp_peers == 0).await;
        assert!(stats.rate_limited_drops > 0);
        assert!(stats.udp.bytes_in <= 130_000, "{stats:#?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_udp_viewers_get_every_packet_in_order() {
    bounded(async {
        let relay = TestRelay::start(|_| {}).await;
        let publisher = UdpClient::new(&relay).await;
        let id = publisher.publish("fanout").await;
        let mut viewers = Vec::new();
        for _ in 0..20 {
            let viewer = UdpClient::new(&relay).await;
            viewer.subscribe("fanout", StartAt::Live).await;
            viewers.push(viewer);
        }
        let mut media = Media { payload: 1000, ..Media::new(id) };
        let packets: Vec<_> = (0..10).flat_map(|g| media.gop(g)).collect();
        let n = packets.len();
        let readers: Vec<_> = viewers
            .into_iter()
            .map(|v| tokio::spawn(async move { v.recv_media(n).await }))
            .collect();
        for chunk in packets.chunks(4) {
            for h in chunk {
                publisher.send_raw(&packet(h)).await;
            }
            tokio::time::sleep(Duration::from_millis(12)).await;
        }
        for reader in readers {
            assert_eq!(seqs(&reader.await.unwrap()), seqs(&packets));
        }
        let stats = relay.stats();
        assert_eq!(stats.udp.packets_out, 20 * n as u64);
        assert_eq!(stats.viewer_queue_drops + stats.rate_limited_drops, 0);
    })
    .await;
}

/// A UDP socket on `addr` (port 0: a free one) that another such socket may share.
fn shared_socket(addr: SocketAddr) -> UdpSocket {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
    socket.set_reuse_port(true).unwrap();
    socket.set_nonblocking(true).unwrap();
    socket.bind(&addr.into()).unwrap();
    UdpSocket::from_std(socket.into()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_spoofer_without_the_session_nonce_cannot_end_feed_or_steer_a_stream() {
    bounded(async {
        let relay = TestRelay::start(|_| {}).await;
        let publisher = UdpClient::on_socket(&relay, shared_socket("127.0.0.1:0".parse().unwrap()));
        let id = publisher.publish("target").await;
        let viewer = UdpClient::new(&relay).await;
        viewer.subscribe("target", StartAt::Live).await;
        relay.wait_for("the viewer", |s| s.viewers == 1).await;

        // The spoofer sends from the publisher's very address (SO_REUSEPORT), as an off-path
        // attacker forging the source would; it knows the stream id, not the nonce. It joins
        // only now: the relay's answers to that address may reach either socket.
        let spoofer =
            UdpClient::on_socket(&relay, shared_socket(publisher.socket.local_addr().unwrap()));
        let forged = Media::new(id).gop(0);
        spoofer.send_unsealed(&Control::Goodbye.encode()).await;
        spoofer.send_unsealed(&packet(&forged[0])).await;
        let mut wrong_nonce = Control::Goodbye.encode();
        seal(&mut wrong_nonce, publisher.session() ^ 1);
        spoofer.send_unsealed(&wrong_nonce).await;
        spoofer.send_unsealed(&Control::Publish { stream: "other".into() }.encode()).await;
        let stats = relay.wait_for("4 dropped", |s| s.malformed_total() == 4).await;
        // A wrong nonce leaves trailing bytes after the frame: it does not even decode.
        assert_eq!((stats.malformed("bad_session"), stats.malformed("control_frame")), (3, 1));
        assert_eq!((stats.streams, stats.viewers, stats.udp.packets_in), (1, 1, 0), "{stats:#?}");
        assert_eq!(viewer.recv_within(QUIET).await, None, "the viewer heard the spoofer");

        // The publisher's own sealed datagrams still go through, and its goodbye ends it.
        let mut media = Media::new(id);
        let gop = media.gop(0);
        for h in &gop {
            publisher.send_raw(&packet(h)).await;
        }
        assert_eq!(seqs(&viewer.recv_media(gop.len()).await), seqs(&gop));
        publisher.send(&Control::Goodbye).await;
        assert_eq!(viewer.recv_control().await, Control::Goodbye);
        relay.wait_for("stream ended", |s| s.streams == 0).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unsealed_datagrams_do_not_keep_a_session_alive_and_a_lost_ok_is_answered_again() {
    bounded(async {
        let timeout = Duration::from_millis(300);
        let relay = TestRelay::start(|c| c.limits.udp_peer_timeout = timeout).await;
        let publisher = UdpClient::on_socket(&relay, shared_socket("127.0.0.1:0".parse().unwrap()));
        let id = publisher.publish("kept").await;
        let session = publisher.session();
        // A client that lost its Ok repeats its request unsealed: it gets the same Ok.
        publisher.send_unsealed(&Control::Publish { stream: "kept".into() }.encode()).await;
        assert_eq!(publisher.recv_control().await, Control::Ok { stream_id: id, session });

        // The publisher falls silent; a spoofer on its address keeps pinging and sending
        // media, unsealed. The session must time out all the same.
        let spoofer =
            UdpClient::on_socket(&relay, shared_socket(publisher.socket.local_addr().unwrap()));
        let forged = Media::new(id).gop(0);
        let started = tokio::time::Instant::now();
        while relay.stats().streams == 1 {
            assert!(started.elapsed() < 20 * timeout, "the spoofer kept the session alive");
            spoofer.send_unsealed(&Control::Ping { id: 1, send_ns: 1 }.encode()).await;
            spoofer.send_unsealed(&packet(&forged[0])).await;
            tokio::time::sleep(timeout / 10).await;
        }
        assert_eq!(relay.stats().udp_peers, 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn one_address_holds_at_most_its_caps_of_udp_peers_and_streams() {
    bounded(async {
        let relay = TestRelay::start(|c| {
            c.limits.max_sessions_per_source = 2;
            c.limits.max_streams_per_source = 1;
        })
        .await;
        let first = UdpClient::new(&relay).await;
        first.publish("one").await;
        let second = UdpClient::new(&relay).await;
        let answer =
            second.request(Role::Publisher, Control::Publish { stream: "two".into() }).await;
        assert!(
            matches!(answer, Control::Error { code: ErrorCode::TooManyStreams, .. }),
            "{answer:?}"
        );
        // Two peers from 127.0.0.1 already: a third is refused at its verified hello.
        let third = UdpClient::new(&relay).await;
        third.verify(Role::Viewer).await;
        assert!(matches!(
            third.recv_control().await,
            Control::Error { code: ErrorCode::RateLimited, .. }
        ));
        let stats = relay.stats();
        assert_eq!((stats.udp_peers, stats.source_cap_refusals), (2, 2), "{stats:#?}");
        // A peer that leaves gives its slots back (the publisher's stream slot too).
        first.send(&Control::Goodbye).await;
        relay.wait_for("one peer", |s| s.udp_peers == 1 && s.streams == 0).await;
        let request = Control::Publish { stream: "three".into() };
        assert!(matches!(third.request(Role::Publisher, request).await, Control::Ok { .. }));
    })
    .await;
}

/// One session machine behind both transports: a different second request gets the same
/// answer (a `BadRequest` naming the session's stream) and the same count over UDP as over QUIC.
#[tokio::test(flavor = "multi_thread")]
async fn a_different_second_request_is_refused_and_counted_alike_on_udp_and_quic() {
    bounded(async {
        let relay = TestRelay::start(|_| {}).await;
        let bad_request = |answer: Control| match answer {
            Control::Error { code: ErrorCode::BadRequest, message } => message,
            other => panic!("not a BadRequest: {other:?}"),
        };

        let udp = UdpClient::new(&relay).await;
        udp.publish("u").await;
        udp.send(&Control::Publish { stream: "u2".into() }).await;
        let udp_answer = bad_request(udp.recv_control().await);
        assert!(udp_answer.contains("already publishes \"u\""), "{udp_answer}");
        relay.wait_for("udp counted", |s| s.malformed("unexpected_control") == 1).await;

        let mut quic = QuicClient::connect(&relay, stallwatch_agent::tls::ALPN_DATAGRAM).await;
        quic.publish("q").await;
        quic.send(&Control::Publish { stream: "q2".into() }).await;
        let quic_answer = bad_request(quic.recv().await.expect("an answer"));
        assert_eq!(quic_answer, udp_answer.replace("\"u\"", "\"q\""));
        // The session goes on: a repeat of its own request still gets its Ok.
        quic.send(&Control::Publish { stream: "q".into() }).await;
        assert!(matches!(quic.recv().await, Some(Control::Ok { .. })));
        let stats =
            relay.wait_for("quic counted", |s| s.malformed("unexpected_control") == 2).await;
        assert_eq!(stats.malformed_total(), 2, "{stats:#?}");
    })
    .await;
}
