//! The binaries as a user runs them.

use std::process::Command;

use stallwatch_tests::binary;

fn agent() -> Command {
    Command::new(binary("stallwatch-agent"))
}

fn collector() -> Command {
    Command::new(binary("stallwatch-collector"))
}

#[test]
fn both_binaries_print_help_and_version() {
    for (mut cmd, name) in [(agent(), "stallwatch-agent"), (collector(), "stallwatch-collector")] {
        let out = cmd.arg("--version").output().unwrap();
        assert!(out.status.success());
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!("{name} {}", env!("CARGO_PKG_VERSION"))
        );
    }
    let help = agent().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for sub in ["simulate", "probe", "relay", "impair", "run", "check-config"] {
        assert!(help.contains(sub), "agent --help lacks {sub}:\n{help}");
    }
}

#[test]
fn commands_not_built_yet_say_so_and_fail() {
    // `agent run` is built: without a bundle it is a configuration error (64) naming the flag.
    let out = agent().args(["run", "--collector", "https://c.example"]).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--bundle"));
    let out = collector().args(["run", "--config", "c.toml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(69));
}

#[test]
fn simulate_prints_a_summary_and_json() {
    let out = agent().args(["simulate", "--duration", "20s", "--emulate", "4g"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    for word in ["first frame", "loss", "jitter", "stalls"] {
        assert!(text.contains(word), "summary lacks {word}:\n{text}");
    }
    let out = agent()
        .args(["simulate", "--duration", "20s", "--emulate", "delay=50ms,loss=0%", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["packets_lost"], 0);
    assert_eq!(json["stalls"], 0);
    assert!(json["first_frame_ms"].as_f64().unwrap() >= 50.0);
}

#[test]
fn bad_simulate_flags_get_clear_errors() {
    let out = agent().args(["simulate", "--emulate", "5g-ultra"]).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown emulation preset") && err.contains("3g"), "{err}");
    let out = agent().args(["simulate", "--emulate", "loss=150%"]).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("loss"));
    let out = agent().args(["simulate", "--duration", "ten"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = agent().args(["simulate", "--profile", "8k"]).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("720p30"));
}
