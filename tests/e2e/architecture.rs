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
    for krate in ["stallwatch-proto", "stallwatch-measure"] {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = Command::new(cargo)
            .current_dir(workspace())
            .args(["tree", "--offline", "-p", krate, "-e", "normal", "--prefix", "none"])
            .output()
            .expect("cargo tree runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let tree = String::from_utf8(out.stdout).unwrap();
        assert!(tree.contains(krate), "unexpected cargo tree output: {tree}");
        for banned in ["tokio ", "quinn ", "quinn-proto ", "mio ", "socket2 ", "rustls "] {
            assert!(
                !tree.lines().any(|l| l.starts_with(banned)),
                "{krate} depends on {banned}:\n{tree}"
            );
        }
    }
}
