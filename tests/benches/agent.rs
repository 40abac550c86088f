//! Agent and relay cost on this machine. Run: `cargo bench -p stallwatch-tests --bench agent`
//!
//! Starts a real relay and real probes (release build) on loopback and reads their CPU time and
//! peak memory from /proc: agent CPU per 2 Mbps stream (publisher + viewer in one process),
//! relay CPU per forwarded Mbit/s, agent peak RSS with 1 and 20 concurrent streams, and the
//! publisher's send-timer error distribution.
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

/// Runs a probe to completion; returns its CPU share of one core, peak RSS (MiB), the relay's
/// CPU seconds meanwhile, and the probe's JSON.
fn measure(
    relay: &RelayProcess,
    extra: &[&str],
    seconds: u64,
) -> (f64, f64, f64, serde_json::Value) {
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
    (cpu / wall, rss, cpu_seconds(relay.pid()) - relay_cpu_before, json)
}

fn timer(json: &serde_json::Value) -> String {
    let t = &json["publisher"]["timer_error_ms"];
    format!("p50 {} p95 {} p99 {} max {} ms", t["p50"], t["p95"], t["p99"], t["max"])
}

fn main() {
    // Optional filters for quick runs: STALLWATCH_BENCH_TRANSPORTS=quic-stream,udp
    // STALLWATCH_BENCH_SPINS=200us STALLWATCH_BENCH_RSS=0 (the full run is the default).
    let list = |var: &str, all: &[&'static str]| -> Vec<String> {
        match std::env::var(var) {
            Ok(v) if !v.is_empty() => v.split(',').map(|s| s.trim().to_string()).collect(),
            _ => all.iter().map(|s| s.to_string()).collect(),
        }
    };
    let transports = list("STALLWATCH_BENCH_TRANSPORTS", &["quic-stream", "quic-datagram", "udp"]);
    let spins = list("STALLWATCH_BENCH_SPINS", &["200us", "1ms"]);
    let rss = std::env::var("STALLWATCH_BENCH_RSS").map_or(true, |v| v != "0");
    let relay = RelayProcess::start(&[]);
    let seconds = 20u64;
    let secs = format!("{seconds}s");
    println!(
        "720p30 (2 Mbit/s video + 64 kbit/s audio), {seconds} s per run, publisher and viewer in one agent process"
    );
    for transport in &transports {
        for spin in &spins {
            let (cpu, rss, relay_cpu, json) = measure(
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
    if !rss {
        return;
    }
    let (_, rss1, _, _) = measure(&relay, &["--duration", "10s", "--view-delay", "0s"], 10);
    let (cpu20, rss20, _, _) =
        measure(&relay, &["--duration", "10s", "--view-delay", "0s", "--streams", "20"], 10);
    println!(
        "agent peak RSS (quic-stream): {rss1:.1} MiB with 1 stream, {rss20:.1} MiB with 20 concurrent streams ({:.1} % of a core)",
        cpu20 * 100.0
    );
}
