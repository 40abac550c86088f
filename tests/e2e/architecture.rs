//! The architecture invariants in ARCHITECTURE.md, checked.

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn the_sans_io_crates_never_read_a_clock() {
    let mut files = Vec::new();
    for krate in ["proto", "measure"] {
        rust_files(&workspace().join(krate), &mut files);
    }
    assert!(files.len() > 10, "found only {files:?}");
    let offenders: Vec<_> = files
        .iter()
        .filter(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            text.contains("Instant::now") || text.contains("SystemTime::now")
        })
        .collect();
    assert!(offenders.is_empty(), "clock reads in sans-IO crates: {offenders:?}");
}

/// `cargo tree` for one workspace crate, one line per package (`name vX.Y.Z ...`, or
/// `name feature "f"` with `features` among the `edges`), deduplicated.
fn tree(krate: &str, edges: &str) -> Vec<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(workspace())
        .args(["tree", "--offline", "-p", krate, "-e", edges, "--prefix", "none"])
        .output()
        .expect("cargo tree runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let tree = String::from_utf8(out.stdout).unwrap();
    assert!(tree.lines().any(|l| l.starts_with(&format!("{krate} "))), "unexpected tree: {tree}");
    let mut lines: Vec<String> = tree.lines().map(str::to_owned).collect();
    lines.sort();
    lines.dedup();
    lines
}

/// The lines of `tree` naming one of `packages` (`"hyper feature \"server\""` matches a
/// feature line).
fn naming<'a>(tree: &'a [String], packages: &[&str]) -> Vec<&'a str> {
    tree.iter()
        .filter(|l| packages.iter().any(|p| l == p || l.starts_with(&format!("{p} "))))
        .map(String::as_str)
        .collect()
}

#[test]
fn the_relay_session_machine_does_no_io_and_reads_no_clock() {
    let path = workspace().join("agent/src/relay/session.rs");
    let text = std::fs::read_to_string(&path).unwrap();
    // Its time comes in as `now`; sockets, streams and timers are the drivers'.
    for banned in ["Clock", "Instant", "SystemTime", "tokio", "quinn", "Socket", "async fn"] {
        assert!(!text.contains(banned), "{} mentions {banned}", path.display());
    }
}

#[test]
fn the_sans_io_crates_depend_on_no_runtime_or_network_stack() {
    let banned = ["tokio", "quinn", "quinn-proto", "mio", "socket2", "rustls"];
    for krate in ["stallwatch-proto", "stallwatch-measure"] {
        let deps = tree(krate, "normal");
        let found = naming(&deps, &banned);
        assert!(found.is_empty(), "{krate} depends on {found:?}");
    }
    // The check sees what it bans: the agent is built on these.
    let agent = tree("stallwatch-agent", "normal");
    assert!(!naming(&agent, &banned).is_empty(), "{agent:?}");
}

/// What only the collector may pull in: a database, an HTTP server, HTML templating.
const COLLECTOR_ONLY: [&str; 14] = [
    "rusqlite",
    "libsqlite3-sys",
    "sqlx",
    "axum",
    "axum-core",
    "actix-web",
    "warp",
    "tiny_http",
    "hyper feature \"server\"",
    "askama",
    "maud",
    "tera",
    "minijinja",
    "handlebars",
];

#[test]
fn the_agent_has_no_database_http_server_or_html_dependency() {
    let agent = tree("stallwatch-agent", "normal,build,features");
    let found = naming(&agent, &COLLECTOR_ONLY);
    assert!(found.is_empty(), "the agent depends on {found:?}");
    // The check sees what it bans: the collector is built on some of them.
    let collector = tree("stallwatch-collector", "normal,features");
    let collector = naming(&collector, &COLLECTOR_ONLY);
    for expected in ["rusqlite ", "axum ", "hyper feature \"server\""] {
        assert!(collector.iter().any(|l| l.starts_with(expected)), "{expected} in {collector:?}");
    }
}

#[test]
fn the_collector_does_not_depend_on_the_agent() {
    // Dev-dependencies (the shared test harness runs agents) are left out on purpose.
    let collector = tree("stallwatch-collector", "normal,build");
    let found = naming(&collector, &["stallwatch-agent", "stallwatch-tests"]);
    assert!(found.is_empty(), "the collector depends on {found:?}");
    assert!(!naming(&collector, &["stallwatch-proto"]).is_empty(), "{collector:?}");
}
