//! Agent and relay cost on this machine. Run: `cargo bench -p stallwatch-tests --bench agent`
//!
//! Starts a real relay and real probes (release build) on loopback and reads their CPU time and
//! peak memory from /proc: agent CPU per 2 Mbps stream (publisher + viewer in one process),
//! relay CPU per forwarded Mbit/s, agent peak RSS with 1 and 20 concurrent streams, and the
//! publisher's send-timer error distribution; and the agent's CPU with repair on (udp and
//! quic-datagram, NACK, 1 % emulated loss each way).
#![allow(clippy::disallowed_methods, reason = "a benchmark reads the clock to time itself")]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use stallwatch_tests::{RelayProcess, binary};

fn clock_ticks() -> f64 {
    // USER_HZ is 100 on Linux x86_64 and aarch64.
    100.0
}

/// CPU seconds (user + system) a process has used so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    // After the ')' the state is field 0; utime and stime are fields 11 and 12.
    (ticks(11) + ticks(12)) / clock_ticks()
}

/// CPU seconds per thread name of a process so far (threads that exited keep their last value
/// in `seen`, keyed by thread id).
fn thread_cpu(pid: u32, seen: &mut std::collections::BTreeMap<u32, (String, f64)>) {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return };
    for task in tasks.flatten() {
        let Some(tid) = task.file_name().to_str().and_then(|t| t.parse::<u32>().ok()) else {
            continue;
        };
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        let name = stat
            .split_once('(')
            .and_then(|(_, r)| r.rsplit_once(')'))
            .map_or("?", |(n, _)| n)
            .to_string();
        let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
        let cpu = (ticks(11) + ticks(12)) / clock_ticks();
        if cpu > 0.0 {
            seen.insert(tid, (name, cpu));
        }
    }
}

/// Peak resident memory of a process, MiB.
fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn spawn_probe(relay: &RelayProcess, extra: &[&str]) -> Child {
    Command::new(binary("stallwatch-agent"))
        .args(relay.probe_args())
        .args(extra)
        .args(["--quiet", "--json"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("probe starts")
}

/// What one probe run cost.
struct Run {
    /// CPU share of one core (user + system over wall time), the whole process.
    cpu: f64,
    /// The same without the emulator's delivery threads (`impair-*`): the agent's own work.
    cpu_without_emulator: f64,
    peak_rss_mib: f64,
    /// The relay's CPU seconds meanwhile.
    relay_cpu: f64,
    json: serde_json::Value,
}

/// Runs a probe to completion and reads what it cost.
fn measure(relay: &RelayProcess, extra: &[&str], seconds: u64) -> Run {
    let relay_cpu_before = cpu_seconds(relay.pid());
    let started = Instant::now();
    let mut child = spawn_probe(relay, extra);
    let pid = child.id();
    let (mut cpu, mut rss) = (0.0, 0.0);
    let mut threads = std::collections::BTreeMap::new();
    while child.try_wait().unwrap().is_none() {
        cpu = cpu_seconds(pid);
        rss = peak_rss_mib(pid);
        thread_cpu(pid, &mut threads);
        std::thread::sleep(Duration::from_millis(100));
        if started.elapsed() > Duration::from_secs(seconds + 60) {
            let _ = child.kill();
        }
    }
    let out = child.wait_with_output().unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let wall = started.elapsed().as_secs_f64();
    let mut by_name = std::collections::BTreeMap::<String, f64>::new();
    for (name, cpu) in threads.into_values() {
        *by_name.entry(name).or_default() += cpu;
    }
    let split: Vec<String> =
        by_name.iter().map(|(n, c)| format!("{n} {:.2} %", 100.0 * c / wall)).collect();
    println!("    threads: {}", split.join(", "));
    let emulator: f64 =
        by_name.iter().filter(|(n, _)| n.starts_with("impair-")).map(|(_, c)| c).sum();
    Run {
        cpu: cpu / wall,
        cpu_without_emulator: (cpu - emulator) / wall,
        peak_rss_mib: rss,
        relay_cpu: cpu_seconds(relay.pid()) - relay_cpu_before,
        json,
    }
}

/// The repair figures of a probe's first viewer, and what its publisher resent.
fn repair(json: &serde_json::Value) -> String {
    let v = &json["viewers"][0];
    let r = &v["repair"];
    let down = &json["emulator"]["down"];
    format!(
        "emulator dropped {} of {} packets towards the viewer, {} NACKs, {} retransmissions received, residual loss {:.3} %, stall ratio {:.2} %; publisher resent {}",
        down["dropped"],
        down["packets"],
        r["nacks_sent"],
        r["retransmissions_received"],
        r["residual_loss_ratio"].as_f64().unwrap_or(f64::NAN) * 100.0,
        v["stall_ratio"].as_f64().unwrap_or(f64::NAN) * 100.0,
        json["publisher"]["retransmitted"],
    )
}

fn timer(json: &serde_json::Value) -> String {
    let t = &json["publisher"]["timer_error_ms"];
    format!("p50 {} p95 {} p99 {} max {} ms", t["p50"], t["p95"], t["p99"], t["max"])
}

fn main() {
    // Optional filters for quick runs: STALLWATCH_BENCH_TRANSPORTS=quic-stream,udp
    // STALLWATCH_BENCH_SPINS=200us (or `none`: no loss-free runs) STALLWATCH_BENCH_RSS=0
    // STALLWATCH_BENCH_REPAIR=0 (the full run is the default).
    let list = |var: &str, all: &[&'static str]| -> Vec<String> {
        match std::env::var(var) {
            Ok(v) if !v.is_empty() => v.split(',').map(|s| s.trim().to_string()).collect(),
            _ => all.iter().map(|s| s.to_string()).collect(),
        }
    };
    let transports = list("STALLWATCH_BENCH_TRANSPORTS", &["quic-stream", "quic-datagram", "udp"]);
    let spins: Vec<String> = list("STALLWATCH_BENCH_SPINS", &["200us", "1ms"])
        .into_iter()
        .filter(|s| s != "none")
        .collect();
    let rss = std::env::var("STALLWATCH_BENCH_RSS").map_or(true, |v| v != "0");
    let relay = RelayProcess::start(&[]);
    let seconds = 20u64;
    let secs = format!("{seconds}s");
    println!(
        "720p30 (2 Mbit/s video + 64 kbit/s audio), {seconds} s per run, publisher and viewer in one agent process"
    );
    for transport in &transports {
        for spin in &spins {
            let Run { cpu, peak_rss_mib: rss, relay_cpu, json, .. } = measure(
                &relay,
                &[
                    "--transport",
                    transport,
                    "--duration",
                    &secs,
                    "--view-delay",
                    "0s",
                    "--pacing-spin",
                    spin.as_str(),
                ],
                seconds,
            );
            // The relay receives the stream once and forwards it once: 2.064 Mbit/s.
            let relay_per_mbit = 100.0 * relay_cpu / seconds as f64 / 2.064;
            println!(
                "{transport:>14} spin {spin:>5}: agent {:.2} % of a core, peak RSS {rss:.1} MiB; relay {relay_per_mbit:.2} % of a core per forwarded Mbit/s; send timer {}",
                cpu * 100.0,
                timer(&json)
            );
        }
    }
    // Repair on (the default on udp and quic-datagram) with loss it has to repair: the agent's
    // own emulator drops 1 % each way, so the viewer NACKs, the relay answers and asks the
    // publisher, and the publisher resends. Skip with STALLWATCH_BENCH_REPAIR=0.
    let with_repair = std::env::var("STALLWATCH_BENCH_REPAIR").map_or(true, |v| v != "0");
    for transport in transports.iter().filter(|t| with_repair && t.as_str() != "quic-stream") {
        let run = measure(
            &relay,
            &[
                "--transport",
                transport,
                "--duration",
                &secs,
                "--view-delay",
                "0s",
                "--repair",
                "nack",
                "--emulate",
                "loss=1%",
            ],
            seconds,
        );
        let relay_per_mbit = 100.0 * run.relay_cpu / seconds as f64 / 2.064;
        println!(
            "{transport:>14} repair nack, loss=1%: agent {:.2} % of a core ({:.2} % without the emulator's threads), peak RSS {:.1} MiB; relay {relay_per_mbit:.2} % of a core per forwarded Mbit/s; {}",
            run.cpu * 100.0,
            run.cpu_without_emulator * 100.0,
            run.peak_rss_mib,
            repair(&run.json)
        );
    }
    if !rss {
        return;
    }
    let one = measure(&relay, &["--duration", "10s", "--view-delay", "0s"], 10);
    let twenty =
        measure(&relay, &["--duration", "10s", "--view-delay", "0s", "--streams", "20"], 10);
    println!(
        "agent peak RSS (quic-stream): {:.1} MiB with 1 stream, {:.1} MiB with 20 concurrent streams ({:.1} % of a core)",
        one.peak_rss_mib,
        twenty.peak_rss_mib,
        twenty.cpu * 100.0
    );
}
