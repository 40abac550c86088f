//! `stallwatch-agent relay` as a process: what it prints, and a clean SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use stallwatch_agent::tls::{self, ALPN_DATAGRAM};
use stallwatch_proto::control::{CONTROL_VERSION, Control, ErrorCode, Role, StartAt};
use tokio::net::UdpSocket;

use crate::support::*;

#[tokio::test(flavor = "multi_thread")]
async fn the_binary_prints_its_addresses_and_fingerprint_then_stops_cleanly_on_sigterm() {
    bounded(async {
        let mut child = Command::new(env!("CARGO_BIN_EXE_stallwatch-agent"))
            .args(["relay", "--listen", "127.0.0.1:0", "--udp-listen", "127.0.0.1:0"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let lines = tokio::task::spawn_blocking(move || {
            let mut lines = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let line = line.unwrap();
                let done = line == "ready";
                lines.push(line);
                if done {
                    break;
                }
            }
            lines
        })
        .await
        .unwrap();
        let value = |key: &str| {
            lines
                .iter()
                .find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix(' ')))
                .unwrap_or_else(|| panic!("no {key} line in {lines:?}"))
                .to_owned()
        };
        assert_eq!(lines.len(), 4, "{lines:?}");
        assert_eq!(lines[3], "ready");
        let quic_addr = value("quic").parse().unwrap();
        let udp_addr: std::net::SocketAddr = value("udp").parse().unwrap();
        let pin = tls::parse_pin(&value("fingerprint")).unwrap();

        let mut viewer = QuicClient::connect_to(quic_addr, pin, ALPN_DATAGRAM, |_| {}).await;
        let request = Control::Subscribe { stream: "none".into(), start: StartAt::Live };
        let answer = viewer.request(Role::Viewer, request).await;
        assert!(
            matches!(answer, Control::Error { code: ErrorCode::StreamNotFound, .. }),
            "{answer:?}"
        );

        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut buf = [0u8; 512];
        let hello = Control::Hello {
            version: CONTROL_VERSION,
            role: Role::Viewer,
            token: None,
            proof: None,
        };
        udp.send_to(&hello.encode(), udp_addr).await.unwrap();
        let (n, _) =
            tokio::time::timeout(ANSWER_WAIT, udp.recv_from(&mut buf)).await.unwrap().unwrap();
        let Ok(Control::Challenge { token }) = Control::decode_datagram(&buf[..n]) else {
            panic!("no challenge");
        };
        let hello = Control::Hello {
            version: CONTROL_VERSION,
            role: Role::Viewer,
            token: Some(token),
            proof: None,
        };
        udp.send_to(&hello.encode(), udp_addr).await.unwrap();
        // An answer to a request shows the address is verified before the signal.
        let request = Control::Subscribe { stream: "none".into(), start: StartAt::Live };
        udp.send_to(&request.encode(), udp_addr).await.unwrap();
        let (n, _) =
            tokio::time::timeout(ANSWER_WAIT, udp.recv_from(&mut buf)).await.unwrap().unwrap();
        assert!(matches!(
            Control::decode_datagram(&buf[..n]),
            Ok(Control::Error { code: ErrorCode::StreamNotFound, .. })
        ));

        let status =
            Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
        assert!(status.success());
        assert_eq!(viewer.recv().await, Some(Control::Goodbye));
        assert!(closed_with(&viewer.closed().await, 0));
        // Longer than one answer: the relay's shutdown runs while the process stops, and under a
        // loaded 2-core machine's builds this wait once ran past 5 s; the test's bound still holds.
        let goodbye_wait = 3 * ANSWER_WAIT;
        let (n, _) =
            tokio::time::timeout(goodbye_wait, udp.recv_from(&mut buf)).await.unwrap().unwrap();
        assert_eq!(Control::decode_datagram(&buf[..n]), Ok(Control::Goodbye));
        let exit = tokio::task::spawn_blocking(move || child.wait().unwrap()).await.unwrap();
        assert!(exit.success(), "{exit:?}");
    })
    .await;
}
