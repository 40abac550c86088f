//! `stallwatch-collector demo` run as a user runs it, in its own process group so that
//! [`DemoProcess::interrupt`] is the Ctrl-C a terminal sends to the demo and its agents.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::binary;
use crate::fleet::wait_until;

/// A running demo; interrupted (and, failing that, killed with its process group) on drop.
pub struct DemoProcess {
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    /// The demo's directory (`--dir`).
    pub dir: PathBuf,
    /// Its `/metrics` listener.
    pub metrics: SocketAddr,
}

impl DemoProcess {
    /// Starts `demo --dir DIR` with `extra` flags and waits until it prints its metrics URL.
    pub fn start(dir: &Path, extra: &[&str]) -> DemoProcess {
        let _ = std::fs::remove_dir_all(dir);
        let mut child = Command::new(binary("stallwatch-collector"))
            .arg("demo")
            .arg("--dir")
            .arg(dir)
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("demo starts");
        let stdout = collect(child.stdout.take().expect("piped"));
        let stderr = collect(child.stderr.take().expect("piped"));
        let mut demo = DemoProcess {
            child,
            stdout,
            stderr,
            dir: dir.to_path_buf(),
            metrics: ([0; 4], 0).into(),
        };
        let mut metrics = None;
        let started = wait_until(Duration::from_secs(60), || {
            metrics = demo.stdout().lines().find_map(|l| {
                let url = l.trim().strip_prefix("metrics")?.trim();
                url.strip_prefix("http://")?.strip_suffix("/metrics")?.parse().ok()
            });
            metrics.is_some() || demo.exited()
        });
        match metrics {
            Some(addr) if started => demo.metrics = addr,
            _ => panic!("the demo printed no metrics URL:\n{}\n{}", demo.stdout(), demo.stderr()),
        }
        demo
    }

    /// What it printed on stdout so far.
    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    /// What it printed on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits up to `limit` for it to exit by itself; returns its exit code, or `None` if it
    /// is still running (or was killed by a signal).
    pub fn wait(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.code();
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Ctrl-C: SIGINT to its process group (the demo and its agents), then waits up to 30 s
    /// for it to exit; returns its exit code.
    pub fn interrupt(&mut self) -> Option<i32> {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-INT", "--", &group]).status();
        self.wait(Duration::from_secs(30))
    }
}

impl Drop for DemoProcess {
    fn drop(&mut self) {
        if self.exited() {
            return;
        }
        if self.interrupt().is_none() {
            let group = format!("-{}", self.child.id());
            let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
            let _ = self.child.wait();
        }
    }
}

/// Reads `pipe` to its end on a thread, into the returned buffer.
fn collect(mut pipe: impl Read + Send + 'static) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = text.clone();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(&mut pipe).lines();
        while let Some(Ok(line)) = lines.next() {
            let mut text = sink.lock().unwrap();
            text.push_str(&line);
            text.push('\n');
        }
    });
    text
}

/// The seconds of the first live summary in `stdout` that shows data for `cohorts` cohorts
/// and none still waiting. Summaries are "-- NNs  N cohorts" then one indented line each.
pub fn first_complete_summary(stdout: &str, cohorts: usize) -> Option<u64> {
    stdout.split("\n-- ").skip(1).find_map(|block| {
        let mut lines = block.lines();
        let secs = lines.next()?.trim().split('s').next()?.trim().parse().ok()?;
        let rows: Vec<&str> = lines.take_while(|l| l.starts_with("   ")).collect();
        (rows.len() == cohorts && rows.iter().all(|r| r.contains("first frame p95")))
            .then_some(secs)
    })
}
