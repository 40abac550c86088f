//! Helpers for the end-to-end tests in `e2e/` (and the crates' own tests): find (building if
//! needed) the real binaries, scratch directories, fleets.
// Test harness code times the processes it runs; the sans-IO rule is for the product crates.
#![allow(clippy::disallowed_methods, reason = "test harness deadlines read the clock")]

pub mod alloc;
pub mod cdp;
pub mod demo;
pub mod fleet;
pub mod rng;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// A fresh scratch directory named `stallwatch-<tag>-XXXXXX` under the system temp dir, so
/// someone debugging can tell which test left files; removed when dropped, even if the test
/// panics, and never shared by two runs. Hold it for as long as a process may write there.
pub fn scratch_dir(tag: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("stallwatch-{tag}-"))
        .tempdir()
        .expect("create a scratch directory")
}

/// CPU time this process has used (user + system, all threads), from `/proc/self/stat`, in
/// clock ticks of 10 ms: the benches divide it by the work done, which a loaded machine
/// changes less than wall time (`ingest_store`, `ingest_http`).
pub fn process_cpu() -> std::time::Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at `state`; utime and
    // stime are the 14th and 15th fields of the line.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: u64 =
        after_name.split_whitespace().skip(11).take(2).filter_map(|t| t.parse::<u64>().ok()).sum();
    std::time::Duration::from_millis(ticks * 10)
}

/// [`process_cpu`] of this process's live threads whose name starts with `prefix` (a bench's
/// client runtime, say), so a bench can tell their share from the rest. Threads that have
/// ended are not counted.
pub fn threads_cpu(prefix: &str) -> std::time::Duration {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return std::time::Duration::ZERO;
    };
    let ticks: u64 = tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("stat")).ok())
        .filter_map(|stat| {
            let (head, rest) = stat.rsplit_once(')')?;
            let name = head.split_once('(')?.1;
            name.starts_with(prefix).then(|| {
                rest.split_whitespace()
                    .skip(11)
                    .take(2)
                    .filter_map(|t| t.parse::<u64>().ok())
                    .sum::<u64>()
            })
        })
        .sum();
    std::time::Duration::from_millis(ticks * 10)
}

/// Path of a workspace binary (`stallwatch-agent` or `stallwatch-collector`), built once per
/// test run with the same cargo and profile as the tests, so the tests never run a stale one.
pub fn binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        // The test executable lives in <target>/<profile>/deps/.
        let exe = std::env::current_exe().expect("test executable path");
        let profile_dir = exe.parent().and_then(|deps| deps.parent()).expect("target layout");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        // The same package set and targets as `cargo test --workspace`, so features unify the
        // same way and this finds everything already built instead of rebuilding dependencies.
        build.args(["build", "--workspace", "--bins", "--tests"]);
        // Under `cargo test` this process has the variables cargo sets for running a test
        // (CARGO_MANIFEST_DIR=.../tests and the like); passed on, they change the fingerprints
        // of crates that read them (ring: "the env variable CARGO_MANIFEST_DIR changed"), so
        // this build recompiled ring, rustls, quinn, reqwest and the binaries on every run
        // (84 s here, while the tests waited) and the next `cargo test` compiled them back.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            let set_for_tests = name.starts_with("CARGO_PKG_")
                || [
                    "CARGO_MANIFEST_DIR",
                    "CARGO_MANIFEST_PATH",
                    "CARGO_CRATE_NAME",
                    "CARGO_BIN_NAME",
                    "CARGO_PRIMARY_PACKAGE",
                    "CARGO_TARGET_TMPDIR",
                ]
                .contains(&name.as_ref());
            if set_for_tests {
                build.env_remove(name.as_ref());
            }
        }
        if profile_dir.ends_with("release") {
            build.arg("--release");
        }
        let status = build.status().expect("cargo build runs");
        assert!(status.success(), "building the binaries failed");
        profile_dir.to_path_buf()
    });
    let path = dir.join(name);
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// Serializes the heavy end-to-end tests (real relays and probes whose assertions are about
/// timing: first-frame times, stall lengths, no socket overruns): on a 2-core machine a heavy
/// test must not run beside any other test whose processes work, or it measures their load,
/// not the path. Idle tests (processes that mostly wait, such as a collector judging a few
/// posted reports: `e2e/the_alert_path.rs`, about 2 % of a core) take no lock.
pub fn heavy() -> std::sync::RwLockWriteGuard<'static, ()> {
    PROCESS_TESTS.write().unwrap_or_else(|e| e.into_inner())
}

/// For end-to-end tests that start fleets of real processes but assert counts and exact
/// totals, not timing (collector, demo, Prometheus): they may run beside each other, mostly
/// waiting on schedules, but never beside a [`heavy`] test.
pub fn load_tolerant() -> std::sync::RwLockReadGuard<'static, ()> {
    PROCESS_TESTS.read().unwrap_or_else(|e| e.into_inner())
}

static PROCESS_TESTS: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// A relay started as a real `stallwatch-agent relay` process on loopback; killed on drop.
pub struct RelayProcess {
    child: std::process::Child,
    /// QUIC address.
    pub quic: std::net::SocketAddr,
    /// Plain UDP address.
    pub udp: std::net::SocketAddr,
    /// SHA-256 fingerprint of its self-signed certificate.
    pub fingerprint: String,
}

impl RelayProcess {
    /// Starts a relay on ephemeral loopback ports with `extra` flags and waits until it is ready.
    pub fn start(extra: &[&str]) -> RelayProcess {
        Self::start_logging(extra, None)
    }

    /// [`RelayProcess::start`], with its info-level log (counters included) written to `log`
    /// if given.
    pub fn start_logging(extra: &[&str], log: Option<&std::path::Path>) -> RelayProcess {
        use std::io::BufRead;
        let mut command = Command::new(binary("stallwatch-agent"));
        command
            .args(["relay", "--listen", "127.0.0.1:0", "--udp-listen", "127.0.0.1:0"])
            .args(extra)
            .env("RUST_LOG", if log.is_some() { "info" } else { "warn" })
            .stdout(std::process::Stdio::piped());
        if let Some(log) = log {
            command.stderr(std::fs::File::create(log).expect("relay log file"));
        }
        let mut child = command.spawn().expect("relay starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = std::io::BufReader::new(stdout).lines();
        let (mut quic, mut udp, mut fingerprint) = (None, None, None);
        for line in lines.by_ref() {
            let line = line.expect("relay stdout");
            match line.split_once(' ') {
                Some(("quic", a)) => quic = a.trim().parse().ok(),
                Some(("udp", a)) => udp = a.trim().parse().ok(),
                Some(("fingerprint", f)) => fingerprint = Some(f.trim().to_string()),
                _ if line.trim() == "ready" => break,
                _ => {}
            }
        }
        // Keep draining stdout so the relay never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        RelayProcess {
            child,
            quic: quic.expect("relay printed its QUIC address"),
            udp: udp.expect("relay printed its UDP address"),
            fingerprint: fingerprint.expect("relay printed its fingerprint"),
        }
    }

    /// The relay's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the relay with SIGTERM (it logs its final counters) and waits for it to exit.
    pub fn terminate(&mut self) -> Option<i32> {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        self.child.wait().ok().and_then(|s| s.code())
    }

    /// `probe` flags that point at this relay.
    pub fn probe_args(&self) -> Vec<String> {
        vec![
            "probe".into(),
            self.quic.to_string(),
            "--pin".into(),
            self.fingerprint.clone(),
            "--udp-port".into(),
            self.udp.port().to_string(),
        ]
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `stallwatch-agent` with `args` and returns (exit code, stdout, stderr), killing it if it
/// runs past `limit`.
pub fn run_agent(args: &[String], limit: std::time::Duration) -> (Option<i32>, String, String) {
    run_binary(&binary("stallwatch-agent"), args, limit)
}

/// Runs `program` with `args` and returns (exit code, stdout, stderr), killing it if it runs
/// past `limit`.
pub fn run_binary(
    program: &std::path::Path,
    args: &[String],
    limit: std::time::Duration,
) -> (Option<i32>, String, String) {
    use std::io::Read;
    let mut child = Command::new(program)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("agent starts");
    // Drain both pipes while it runs: a large output must never block the child.
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("piped")));
    let stderr = drain(Box::new(child.stderr.take().expect("piped")));
    let deadline = std::time::Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    (
        status.and_then(|s| s.code()),
        stdout.join().unwrap_or_default(),
        stderr.join().unwrap_or_default(),
    )
}

/// Runs a probe with `--json --quiet` and parses its result, failing the test on error.
pub fn probe_json(args: &[String], limit: std::time::Duration) -> serde_json::Value {
    let mut args = args.to_vec();
    args.extend(["--json".into(), "--quiet".into()]);
    let (code, stdout, stderr) = run_agent(&args, limit);
    assert_eq!(code, Some(0), "probe {args:?} failed:\n{stderr}\n{stdout}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("bad JSON ({e}):\n{stdout}"))
}
