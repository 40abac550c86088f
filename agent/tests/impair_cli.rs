//! `stallwatch-agent impair` as a user runs it: it prints where it listens and what it emulates,
//! forwards, and on SIGTERM prints the final counts and exits 0.
#![cfg(unix)]

use std::io::{BufRead, BufReader, Read};
use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

/// Kills the child after a while unless told the test is done, so a hang fails instead of
/// blocking the suite.
fn watchdog(child: &Child, done: Arc<AtomicBool>) {
    let pid = child.id().to_string();
    thread::spawn(move || {
        for _ in 0..300 {
            if done.load(Ordering::Relaxed) {
                return;
            }
            thread::sleep(Duration::from_millis(100));
        }
        let _ = Command::new("kill").args(["-KILL", &pid]).status();
    });
}

/// A UDP echo server on loopback for the next 30 s.
fn echo_server() -> std::net::SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let addr = socket.local_addr().unwrap();
    thread::spawn(move || {
        let mut buf = [0u8; 2048];
        for _ in 0..300 {
            if let Ok((len, from)) = socket.recv_from(&mut buf) {
                let _ = socket.send_to(&buf[..len], from);
            }
        }
    });
    addr
}

#[test]
fn impair_cli_forwards_and_prints_final_stats_on_sigterm() {
    let to = echo_server();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stallwatch-agent"));
    for var in ["LISTEN", "TO", "PROFILE", "UP", "DOWN", "SEED"] {
        cmd.env_remove(format!("STALLWATCH_IMPAIR_{var}"));
    }
    let to_arg = to.to_string();
    let mut child = cmd
        .args(["impair", "--listen", "127.0.0.1:0", "--to", &to_arg])
        .args(["--profile", "delay=5ms", "--down", "delay=10ms", "--seed", "9"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let done = Arc::new(AtomicBool::new(false));
    watchdog(&child, done.clone());

    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut header = Vec::new();
    for _ in 0..6 {
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        header.push(line.trim_end().to_owned());
    }
    let listen = header[0].strip_prefix("listening ").unwrap_or_else(|| {
        let mut err = String::new();
        let _ = child.stderr.take().unwrap().read_to_string(&mut err);
        panic!("no listening line: {header:?}\n{err}")
    });
    assert_eq!(
        header[1..],
        [
            format!("forwarding to {to}"),
            "profile custom".to_owned(),
            "up delay=5ms".to_owned(),
            "down delay=10ms".to_owned(),
            "seed 9".to_owned(),
        ]
    );

    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    client.connect(listen).unwrap();
    let mut buf = [0u8; 64];
    for i in 0..3u8 {
        client.send(&[b'x', i]).unwrap();
        let len = client.recv(&mut buf).expect("echo through the proxy");
        assert_eq!(&buf[..len], &[b'x', i]);
    }

    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = child.wait().unwrap();
    done.store(true, Ordering::Relaxed);
    let mut report = String::new();
    stdout.read_to_string(&mut report).unwrap();
    assert!(status.success(), "{status}: {report}");
    for want in [
        format!("up (clients -> {to}): 3 received, 3 delivered, 0 dropped"),
        format!("down ({to} -> clients): 3 received, 3 delivered, 0 dropped"),
        "3 forwarded, 0 forward errors".to_owned(),
        "sessions: 1 opened, 0 refused".to_owned(),
    ] {
        assert!(report.contains(&want), "report lacks {want:?}:\n{report}");
    }
}
