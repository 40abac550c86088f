//! The binaries as a user runs them.

use std::process::Command;

use stallwatch_tests::binary;
use stallwatch_tests::{load_tolerant, scratch_dir};

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
    // `probe --help` teaches how to reach a relay run from a plan.
    let help = agent().args(["probe", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for taught in ["--bundle <FILE>", "--udp-credential-file <FILE>", "relay.udp_credential"] {
        assert!(help.contains(taught), "probe --help lacks {taught}:\n{help}");
    }
}

#[test]
fn collector_run_names_the_config_problem() {
    let out = collector().args(["run", "--config", "/nonexistent/c.toml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(66), "unreadable config exits 66");
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/c.toml"));
    let scratch = scratch_dir("cli");
    let dir = scratch.path();
    let config = dir.join("c.toml");
    std::fs::write(&config, "[labels]\nregions = [\"sea\"]\n[tls]\nca = 3\n").unwrap();
    let out = collector().arg("run").arg("--config").arg(&config).output().unwrap();
    assert_eq!(out.status.code(), Some(64), "invalid config exits 64");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("c.toml:4") && stderr.contains("tls.ca"), "{stderr}");
}

#[test]
fn agent_run_without_a_bundle_names_the_flag() {
    let out = agent().args(["run", "--collector", "https://c.example"]).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--bundle"));
}

#[test]
fn simulate_prints_a_summary_and_json() {
    let _tolerant = load_tolerant();
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

#[test]
fn the_deploy_examples_are_valid() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out =
        agent().arg("check-config").arg(root.join("deploy/agent.example.toml")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for config in ["deploy/collector.example.toml", "deploy/compose/collector.toml"] {
        let out = collector().arg("validate").arg(root.join(config)).output().unwrap();
        assert!(out.status.success(), "{config}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

/// Both binaries point at a bad duration the same way, `FILE:LINE:COLUMN: FIELD: problem`,
/// naming the bad token; and the agent's flags take the config files' syntax.
#[test]
fn both_binaries_locate_a_bad_config_duration_alike() {
    let scratch = scratch_dir("cli-durations");
    let dir = scratch.path();
    let agent_toml = dir.join("agent.toml");
    std::fs::write(
        &agent_toml,
        "collector = \"https://c.example:8443\"\nbundle = \"b.pem\"\nplan_wait = \"1h30\"\n",
    )
    .unwrap();
    let collector_toml = dir.join("collector.toml");
    std::fs::write(&collector_toml, "\n[storage]\nraw_retention = \"1h30\"\n").unwrap();
    let agent_out = agent().arg("check-config").arg(&agent_toml).output().unwrap();
    let collector_out = collector().arg("validate").arg(&collector_toml).output().unwrap();
    let problem = r#"invalid duration "1h30": "30" has no unit (use d, h, m, s, ms, us or ns)"#;
    for (out, want) in [
        (agent_out, format!("{}:3:13: plan_wait: {problem}", agent_toml.display())),
        (
            collector_out,
            format!("{}:3:17: storage.raw_retention: {problem}", collector_toml.display()),
        ),
    ] {
        assert_eq!(out.status.code(), Some(64));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.lines().any(|l| l.ends_with(&want)), "want {want:?} in:\n{err}");
    }
    // The same syntax on the command line: decimals and compound units, and the same error.
    let out = agent().args(["simulate", "--duration", "0.5m", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = agent().args(["simulate", "--duration", "1h30"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains(problem.split(": ").nth(1).unwrap()));
}
