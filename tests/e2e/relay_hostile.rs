//! Issue 14, the relay half of the hostile-input run: while real probes stream through a real
//! relay on loopback (udp and quic-datagram), 20,000 malformed, random, truncated and
//! spoofed-looking datagrams hit the relay's UDP port. The relay keeps serving, counts the junk
//! as malformed, and the honest probes lose nothing.

use std::net::UdpSocket;
use std::time::Duration;

use serde_json::Value;
use stallwatch_proto::control::{CONTROL_VERSION, Control, Role, StartAt};
use stallwatch_tests::rng::Rng;
use stallwatch_tests::{RelayProcess, heavy, probe_json, scratch_dir};

const LIMIT: Duration = Duration::from_secs(90);
/// Junk datagrams sent in all (the bound of the run).
const JUNK: usize = 20_000;
/// Sent in bursts of this many, one burst per `PAUSE`: 20,000 in about 5 s.
const BURST: usize = 40;
const PAUSE: Duration = Duration::from_millis(10);

/// One hostile datagram, of a kind picked by `i`. None of them is a token-less `Hello`
/// (which would draw a challenge from the honest probes' shared address budget).
fn hostile_datagram(junk: &mut Rng, i: usize) -> Vec<u8> {
    let len = (junk.next_u64() % 1400) as usize;
    match i % 10 {
        // Random bytes, any first byte (media or control range).
        0 | 1 => junk.bytes(len.max(1)),
        // Control-looking: a control type and a lying length.
        2 => {
            let mut d = junk.bytes(len.max(3));
            d[0] = 0x80 | (junk.next_u64() as u8 % 16);
            d
        }
        // A truncated tokened hello.
        3 => {
            let hello = Control::Hello {
                version: CONTROL_VERSION,
                role: Role::Publisher,
                token: Some([1; 16]),
                proof: None,
            }
            .encode();
            hello[..1 + (junk.next_u64() as usize % (hello.len() - 1))].to_vec()
        }
        // Spoofed-looking requests and goodbyes from an address that never verified.
        4 => Control::Publish { stream: "honest".into() }.encode(),
        5 => Control::Subscribe { stream: "honest".into(), start: StartAt::Live }.encode(),
        6 => {
            let mut d = Control::Goodbye.encode();
            d.extend_from_slice(&junk.next_u64().to_be_bytes()); // a guessed session seal
            d
        }
        // Media-looking: version byte 1, random header and payload.
        7 | 8 => {
            let mut d = junk.bytes(len.max(48));
            d[0] = 1;
            d
        }
        // Empty, or a tokened hello with a made-up token (rarely: it draws a challenge).
        _ if i % 100 == 9 => Control::Hello {
            version: CONTROL_VERSION,
            role: Role::Viewer,
            token: Some(junk.next_u64().to_be_bytes().repeat(2).try_into().unwrap()),
            proof: None,
        }
        .encode(),
        _ => Vec::new(),
    }
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not an integer: {v}"))
}

/// A probe's JSON results: an array for several transports, an object for one.
fn as_list(results: Value) -> Vec<Value> {
    match results {
        Value::Array(list) => list,
        one => vec![one],
    }
}

/// The last `malformed=N` the relay logged.
fn logged_malformed(log: &str) -> u64 {
    log.lines()
        .filter(|l| l.contains("relay counters"))
        .filter_map(|l| l.split("malformed=").nth(1)?.split_whitespace().next()?.parse().ok())
        .next_back()
        .unwrap_or_else(|| panic!("no counters in the relay log:\n{log}"))
}

#[test]
fn junk_at_a_relays_udp_port_is_counted_and_honest_probes_lose_nothing() {
    let _serial = heavy();
    let scratch = scratch_dir("relay-hostile");
    let dir = scratch.path();
    let log_path = dir.join("relay.log");
    let mut relay = RelayProcess::start_logging(&[], Some(&log_path));
    let probe = |transport: &str| {
        let mut a = relay.probe_args();
        a.extend(["--transport", transport, "--duration", "8s"].map(String::from));
        a
    };
    let (udp, datagram) = (probe("udp"), probe("quic-datagram"));
    let sent = std::thread::scope(|s| {
        let honest: Vec<_> =
            [&udp, &datagram].map(|a| s.spawn(move || probe_json(a, LIMIT))).into();
        // Let both handshakes finish, then flood from several source ports.
        std::thread::sleep(Duration::from_millis(1500));
        let sockets: Vec<_> = (0..4).map(|_| UdpSocket::bind("127.0.0.1:0").unwrap()).collect();
        let mut junk = Rng::new(0x5eed_cafe_f00d_beef);
        let mut sent = 0;
        for i in 0..JUNK {
            let d = hostile_datagram(&mut junk, i);
            if sockets[i % sockets.len()].send_to(&d, relay.udp).is_ok() {
                sent += 1;
            }
            if i % BURST == BURST - 1 {
                std::thread::sleep(PAUSE);
            }
        }
        for h in honest {
            let results = h.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
            for r in as_list(results) {
                let t = r["transport"].as_str().unwrap();
                assert!(r["errors"].as_array().unwrap().is_empty(), "{t}: {r:#}");
                let viewers = r["viewers"].as_array().unwrap();
                assert_eq!(viewers.len(), 1, "{t}: {r:#}");
                let v = &viewers[0];
                assert_eq!(u(&v["packets_lost"]), 0, "{t}: {v:#}");
                assert_eq!(u(&v["frames_missing"]) + u(&v["frames_undecodable"]), 0, "{t}: {v:#}");
                assert!(
                    u(&v["frames_rendered"]) + u(&v["frames_caught_up"]) > 6 * 30,
                    "{t}: {v:#}"
                );
            }
        }
        sent
    });
    assert_eq!(sent, JUNK);
    // Still serving after the flood: a fresh UDP probe gets through.
    let mut after = relay.probe_args();
    after.extend(["--transport", "udp", "--duration", "2s"].map(String::from));
    let r = as_list(probe_json(&after, LIMIT)).remove(0);
    assert!(r["errors"].as_array().unwrap().is_empty(), "{r:#}");
    assert!(u(&r["viewers"][0]["frames_rendered"]) > 0, "{r:#}");
    assert_eq!(relay.terminate(), Some(0));
    let log = std::fs::read_to_string(&log_path).unwrap();
    let malformed = logged_malformed(&log);
    // Loopback may drop some junk under load, so a share, not all; and hardly more than was
    // sent (a few stragglers after the honest sessions end, e.g. a resent goodbye).
    assert!(malformed >= JUNK as u64 / 2 && malformed <= JUNK as u64 + 16, "malformed={malformed}");
}
