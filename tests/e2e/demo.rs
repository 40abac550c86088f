//! README.md's demo command, as a user runs it.

use std::time::Duration;

use stallwatch_tests::demo::{DemoProcess, first_complete_summary};
use stallwatch_tests::fleet::wait_until;
use stallwatch_tests::load_tolerant;

/// Processes whose command line mentions `needle` (by /proc), other than this test's.
fn processes_mentioning(needle: &str) -> Vec<String> {
    let me = std::process::id().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().filter_map(Result::ok) {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if pid == me || !pid.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(needle) {
            found.push(format!("{pid}: {cmdline}"));
        }
    }
    found
}

#[test]
fn demo_shows_every_cohort_within_a_minute_and_stops_on_ctrl_c_leaving_nothing_behind() {
    let _tolerant = load_tolerant();
    let dir = std::env::temp_dir().join(format!("stallwatch-e2e-demo-{}", std::process::id()));
    let mut demo = DemoProcess::start(&dir, &[]);
    let out = demo.stdout();
    assert!(out.contains("/metrics") && out.contains("fleet page"), "{out}");

    // Some live summary within a minute shows data for all nine cohorts (3 agents x 3
    // transports), none still waiting; then Ctrl-C, as README says.
    let complete =
        wait_until(Duration::from_secs(75), || first_complete_summary(&demo.stdout(), 9).is_some());
    let code = demo.interrupt();
    let stdout = demo.stdout();
    assert!(complete, "no summary with data for all nine cohorts:\n{stdout}");
    let secs = first_complete_summary(&stdout, 9).unwrap();
    assert!(secs <= 60, "all nine cohorts only after {secs} s:\n{stdout}");
    assert_eq!(code, Some(0), "demo failed on Ctrl-C:\n{}\n{stdout}", demo.stderr());
    for region_type in ["sea/4g", "sea/3g", "latam/wifi"] {
        assert!(stdout.contains(region_type), "{region_type} missing:\n{stdout}");
    }
    assert_nothing_left(&dir);
}

#[test]
fn demo_with_a_duration_stops_by_itself_leaving_nothing_behind() {
    let _tolerant = load_tolerant();
    let dir =
        std::env::temp_dir().join(format!("stallwatch-e2e-demo-short-{}", std::process::id()));
    let mut demo = DemoProcess::start(&dir, &["--duration", "3s"]);
    let code = demo.wait(Duration::from_secs(60));
    assert_eq!(code, Some(0), "demo --duration 3s:\n{}\n{}", demo.stderr(), demo.stdout());
    assert!(demo.stdout().contains("stopping the agents"), "{}", demo.stdout());
    assert_nothing_left(&dir);
}

/// No agent, relay or collector mentions the demo directory any more; removes it.
fn assert_nothing_left(dir: &std::path::Path) {
    let left = processes_mentioning(&dir.display().to_string());
    assert!(left.is_empty(), "processes left behind: {left:?}");
    let _ = std::fs::remove_dir_all(dir);
}
