//! Issue 10: repair measured against the real thing. A relay and a probe in two network
//! namespaces this test creates, joined by a veth pair, with the kernel dropping 2 % of UDP
//! packets each way (nftables `numgen random`), counted by kind: original media packets,
//! resent media packets (header flag `RETRANSMITTED`) and everything else (control, QUIC).
//!
//! Needs root (network namespaces, nftables); elsewhere it says why and skips.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use stallwatch_tests::{binary, heavy, run_binary};

const LIMIT: Duration = Duration::from_secs(120);
const RELAY_IP: &str = "10.77.0.1";
const PROBE_IP: &str = "10.77.0.2";

/// The drop rules, in the relay's namespace (its input is the publisher leg, its output the
/// viewer leg). One random draw per packet, then a counter per kind: media packets start with
/// version byte 1 and carry `flags` at header offset 6, so the `RETRANSMITTED` bit is bit 1 of
/// UDP payload byte 7 (`@th,120,8`: transport header bit 64 + 7 x 8).
const LOSS_RULES: &str = r#"
table inet swloss {
  counter media_original {}
  counter media_resent {}
  counter other {}
  chain lossy {
    @th,64,8 0x01 @th,120,8 & 0x02 == 0x00 counter name "media_original" drop
    @th,64,8 0x01 counter name "media_resent" drop
    counter name "other" drop
  }
  chain input {
    type filter hook input priority 0; policy accept;
    meta l4proto udp numgen random mod 100 < 2 jump lossy
  }
  chain output {
    type filter hook output priority 0; policy accept;
    meta l4proto udp numgen random mod 100 < 2 jump lossy
  }
}
"#;

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip").args(args).output().map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// Two namespaces and a veth pair between them; deleted on drop.
struct Namespaces {
    relay: String,
    probe: String,
}

impl Namespaces {
    fn create() -> Result<Namespaces, String> {
        let id = std::process::id();
        let ns = Namespaces { relay: format!("swr-{id}"), probe: format!("swp-{id}") };
        ip(&["netns", "add", &ns.relay])?;
        // From here on, drop deletes whatever was made.
        ip(&["netns", "add", &ns.probe])?;
        let (a, b) = (format!("swr{id}"), format!("swp{id}"));
        ip(&[
            "link", "add", &a, "netns", &ns.relay, "type", "veth", "peer", "name", &b, "netns",
            &ns.probe,
        ])?;
        for (ns_name, dev, addr) in [(&ns.relay, &a, RELAY_IP), (&ns.probe, &b, PROBE_IP)] {
            let n = |args: &[&str]| {
                let mut full = vec!["-n", ns_name.as_str()];
                full.extend(args);
                ip(&full)
            };
            n(&["addr", "add", &format!("{addr}/24"), "dev", dev])?;
            n(&["link", "set", dev, "up"])?;
            n(&["link", "set", "lo", "up"])?;
        }
        Ok(ns)
    }

    fn exec(&self, ns: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns]);
        c
    }

    /// Loads the drop rules afresh (counters at zero).
    fn reset_loss(&self) {
        let _ = self.exec(&self.relay).args(["nft", "delete", "table", "inet", "swloss"]).output();
        let mut nft = self
            .exec(&self.relay)
            .args(["nft", "-f", "-"])
            .stdin(Stdio::piped())
            .spawn()
            .expect("nft runs");
        use std::io::Write;
        nft.stdin.take().expect("piped").write_all(LOSS_RULES.as_bytes()).expect("rules written");
        assert!(nft.wait().expect("nft").success(), "loading the nftables rules failed");
    }

    /// Packets a named counter dropped.
    fn dropped(&self, counter: &str) -> u64 {
        let out = self
            .exec(&self.relay)
            .args(["nft", "list", "counter", "inet", "swloss", counter])
            .output()
            .expect("nft runs");
        let text = String::from_utf8_lossy(&out.stdout);
        let packets = text.split_whitespace().skip_while(|w| *w != "packets").nth(1);
        packets.and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("no count in {text}"))
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        // Deleting a namespace deletes its veth end, and with it the pair.
        let _ = ip(&["netns", "del", &self.relay]);
        let _ = ip(&["netns", "del", &self.probe]);
    }
}

/// Why this host cannot run the test, if it cannot.
fn unsupported() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("not root: network namespaces and nftables need it".into());
    }
    for tool in ["ip", "nft"] {
        if Command::new(tool).arg("-V").output().is_err() {
            return Some(format!("`{tool}` is not installed"));
        }
    }
    None
}

/// The relay in its namespace; killed on drop.
struct Relay {
    child: Child,
    fingerprint: String,
}

impl Relay {
    fn start(ns: &Namespaces) -> Relay {
        use std::io::BufRead;
        let agent = binary("stallwatch-agent");
        let mut child = ns
            .exec(&ns.relay)
            .arg(&agent)
            .args(["relay", "--listen", &format!("{RELAY_IP}:4433")])
            .args(["--udp-listen", &format!("{RELAY_IP}:4434")])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .expect("relay starts");
        let mut lines = std::io::BufReader::new(child.stdout.take().expect("piped")).lines();
        let mut fingerprint = None;
        for line in lines.by_ref() {
            let line = line.expect("relay stdout");
            if let Some(f) = line.strip_prefix("fingerprint ") {
                fingerprint = Some(f.trim().to_string());
            }
            if line.trim() == "ready" {
                break;
            }
        }
        std::thread::spawn(move || for _ in lines {});
        Relay { child, fingerprint: fingerprint.expect("relay printed its fingerprint") }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One probe from the probe namespace, its JSON result.
fn probe(ns: &Namespaces, relay: &Relay, transport: &str, repair: &str, duration: &str) -> Value {
    let agent = binary("stallwatch-agent");
    let mut args: Vec<String> = ["netns", "exec", &ns.probe].map(String::from).to_vec();
    args.push(agent.display().to_string());
    args.extend(
        [
            "probe",
            &format!("{RELAY_IP}:4433"),
            "--pin",
            &relay.fingerprint,
            "--udp-port",
            "4434",
            "--transport",
            transport,
            "--repair",
            repair,
            "--duration",
            duration,
            "--view-delay",
            "0s",
            "--json",
            "--quiet",
        ]
        .map(String::from),
    );
    let (code, stdout, stderr) = run_binary(Path::new("ip"), &args, LIMIT);
    assert_eq!(code, Some(0), "probe {args:?} failed:\n{stderr}\n{stdout}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("bad JSON ({e}):\n{stdout}"))
}

fn viewer(result: &Value) -> &Value {
    &result["viewers"].as_array().expect("viewers")[0]
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not an integer: {v}"))
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
fn repair_on_a_kernel_lossy_path_leaves_no_residual_loss_and_no_stalls() {
    if let Some(why) = unsupported() {
        eprintln!("skipping the network-namespace repair test: {why}");
        return;
    }
    let _serial = heavy();
    let ns = match Namespaces::create() {
        Ok(ns) => ns,
        Err(why) => {
            eprintln!(
                "skipping the network-namespace repair test: cannot create namespaces: {why}"
            );
            return;
        }
    };
    let relay = Relay::start(&ns);

    // udp with repair: network loss is exactly the kernel's drops of original media packets
    // (but for drops before the viewer's first packet or after its last, which it cannot
    // see); after repair almost nothing is missing and the player does not stall.
    ns.reset_loss();
    let udp = probe(&ns, &relay, "udp", "nack", "20s");
    let v = viewer(&udp);
    let kernel = ns.dropped("media_original");
    let lost = u(&v["packets_lost"]);
    let expected = u(&v["packets_expected"]);
    eprintln!(
        "udp nack: lost {lost} of {expected}, kernel dropped {kernel} original media packets, \
         {} resent ones and {} others; {v:#}",
        ns.dropped("media_resent"),
        ns.dropped("other")
    );
    assert!(lost <= kernel && kernel - lost <= 5, "viewer lost {lost}, kernel dropped {kernel}");
    assert!(kernel > 100, "2 % each way of about 5,300 packets: {kernel}");
    let r = &v["repair"];
    assert_eq!(r["mode"], "nack");
    assert!(u(&r["packets_repaired"]) > 100, "{r:#}");
    assert!(f(&r["residual_loss_ratio"]) < 0.001, "residual loss {r:#}");
    let repaired_stalls = f(&v["stall_ratio"]);
    assert_repaired_stream_plays(v);
    assert!(u(&udp["publisher"]["retransmitted"]) > 0, "the relay repaired its publisher leg");

    // The same path without repair: every loss stays, and one lost packet of a P-frame
    // breaks the rest of its GOP.
    ns.reset_loss();
    let raw = probe(&ns, &relay, "udp", "none", "15s");
    let v = viewer(&raw);
    let kernel = ns.dropped("media_original");
    let lost = u(&v["packets_lost"]);
    assert!(lost <= kernel && kernel - lost <= 5, "viewer lost {lost}, kernel dropped {kernel}");
    assert_eq!(u(&v["repair"]["residual_lost"]), lost);
    // Either it stalls most of the time, or (a 720p keyframe is about a hundred packets, so
    // at 4 % loss few arrive whole) most of the stream is never shown: no frame at all, or a
    // first keyframe so late that under half of the 450 frames played (once seen: first frame
    // at 14.0 s of 15, then a second without a stall, so a low stall ratio).
    let raw_stalls = f(&v["stall_ratio"]);
    let shown = u(&v["frames_rendered"]);
    let mostly_unseen = shown < 15 * 30 / 2;
    assert!(
        raw_stalls > 0.5 || mostly_unseen,
        "stall ratio without repair {raw_stalls}, {shown} frames shown, first frame {}",
        v["first_frame_ms"]
    );
    assert!(
        mostly_unseen || repaired_stalls < raw_stalls / 5.0,
        "repaired {repaired_stalls}, raw {raw_stalls}"
    );
    assert_eq!(u(&raw["publisher"]["retransmitted"]), 0);

    // quic-datagram: QUIC packets are encrypted, so the kernel's counts are not by kind; the
    // repaired stream must be whole all the same.
    ns.reset_loss();
    let datagram = probe(&ns, &relay, "quic-datagram", "nack", "20s");
    let v = viewer(&datagram);
    eprintln!("quic-datagram nack: {v:#}");
    assert!(u(&v["packets_lost"]) > 50, "the path lost packets: {}", v["packets_lost"]);
    assert!(f(&v["repair"]["residual_loss_ratio"]) < 0.001, "{:#}", v["repair"]);
    assert_repaired_stream_plays(v);
}

/// A repaired stream shows every frame to the end, and stalls under 1 % of the time (0 %
/// measured idle). Where the agent itself was starved (self-noise windows: its send timer or
/// emulator ran late, as on a loaded machine) the bound is 10 %: 8 % was measured once at load
/// average 17, with 366 frames sent late.
fn assert_repaired_stream_plays(v: &Value) {
    let stalls = f(&v["stall_ratio"]);
    let noisy = u(&v["self_noise_windows"]);
    let bound = if noisy == 0 { 0.01 } else { 0.1 };
    assert!(stalls < bound, "stall ratio {stalls} with {noisy} self-noise windows");
    // Not asserted: no missing frame. With 2 % loss each way on both legs a repair can need
    // longer than the 300 ms playout delay now and then (seen in CI: one late frame and one
    // keyframe request in 30 s, residual loss 0, stall ratio 0).
}
