//! README.md's demo command, as a user runs it.

use std::time::Duration;

use stallwatch_tests::{binary, heavy, run_binary};

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
fn demo_shows_every_cohort_within_a_minute_and_leaves_nothing_behind() {
    let _heavy = heavy();
    let dir = std::env::temp_dir().join(format!("stallwatch-e2e-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let args: Vec<String> =
        ["demo", "--duration", "60s", "--dir", &dir.display().to_string()].map(String::from).into();
    let (code, stdout, stderr) =
        run_binary(&binary("stallwatch-collector"), &args, Duration::from_secs(120));
    assert_eq!(code, Some(0), "demo failed:\n{stderr}\n{stdout}");
    assert!(stdout.contains("/metrics") && stdout.contains("fleet page"), "{stdout}");

    // The summaries: "-- NNs  9 cohorts" then one line per cohort. Some summary within the
    // 60 s shows data for all nine (3 agents x 3 transports), none still waiting.
    let mut complete_at = None;
    for block in stdout.split("\n-- ").skip(1) {
        let mut lines = block.lines();
        let head = lines.next().unwrap_or_default();
        let secs: u64 = head.trim().split('s').next().unwrap_or("").trim().parse().unwrap_or(999);
        let rows: Vec<&str> = lines.take_while(|l| l.starts_with("   ")).collect();
        if rows.len() == 9 && rows.iter().all(|r| r.contains("first frame p95")) && secs <= 60 {
            complete_at = Some(secs);
            break;
        }
    }
    assert!(complete_at.is_some(), "no summary with data for all nine cohorts:\n{stdout}");
    for region_type in ["sea/4g", "sea/3g", "latam/wifi"] {
        assert!(stdout.contains(region_type), "{region_type} missing:\n{stdout}");
    }

    // Nothing left running: no agent, relay or collector with the demo directory.
    let left = processes_mentioning(&dir.display().to_string());
    assert!(left.is_empty(), "processes left behind: {left:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
