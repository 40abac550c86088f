//! The shipped Prometheus rules and Alertmanager configuration (`deploy/prometheus/`,
//! `deploy/alertmanager/`), checked by the real tools: `promtool check rules`, `promtool test
//! rules` (the rules' own unit tests), `amtool check-config` and `amtool config routes test`.
//! The tools come with the Debian packages `prometheus` and `prometheus-alertmanager`.

use std::path::{Path, PathBuf};
use std::process::Command;

use stallwatch_collector::alerts::Alert;

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("deploy").join(path)
}

/// Runs `program args` in `dir`; returns (success, stdout, stderr).
fn run3(program: &str, args: &[&str], dir: &Path) -> (bool, String, String) {
    let out = Command::new(program).args(args).current_dir(dir).output().unwrap_or_else(|e| {
        panic!("{program} does not run ({e}): install the Debian packages prometheus and prometheus-alertmanager")
    });
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

/// Runs `program args` in `dir`; returns (success, stdout + stderr).
fn run(program: &str, args: &[&str], dir: &Path) -> (bool, String) {
    let (ok, stdout, stderr) = run3(program, args, dir);
    (ok, stdout + &stderr)
}

/// The `alert:` names of a rules file.
fn alert_names(rules: &str) -> Vec<String> {
    rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert:"))
        .map(|n| n.trim().to_owned())
        .collect()
}

#[test]
fn shipped_prometheus_rules_pass_promtool_check_and_their_unit_tests() {
    let dir = deploy("prometheus");
    let (ok, out) = run("promtool", &["check", "rules", "stallwatch-rules.yml"], &dir);
    assert!(ok && out.contains("SUCCESS"), "{out}");
    let (ok, out) = run("promtool", &["test", "rules", "stallwatch-rules.test.yml"], &dir);
    assert!(ok && out.contains("SUCCESS"), "{out}");
}

#[test]
fn shipped_alertmanager_config_passes_amtool_and_routes_by_severity() {
    let dir = deploy("alertmanager");
    let (ok, out) = run("amtool", &["check-config", "alertmanager.yml"], &dir);
    assert!(ok && out.contains("SUCCESS") && out.contains("3 inhibit rules"), "{out}");
    for (labels, receiver) in [
        (
            &["alertname=StallwatchPublishFailures", "severity=P0", "service=streaming"][..],
            "pager-p0",
        ),
        (
            &["alertname=StallwatchStalls", "severity=P1", "service=streaming", "region=sea"],
            "pager-p1",
        ),
        (&["alertname=StallwatchStalls", "severity=P2", "service=streaming"], "tickets"),
        (
            &["alertname=StallwatchFleetPublishingDown", "severity=P0", "source=prometheus"],
            "pager-p0",
        ),
        (&["alertname=StallwatchWatchdog", "severity=none", "service=monitoring"], "deadman"),
        (&["alertname=StallwatchFleetWatchdog", "severity=none", "service=monitoring"], "deadman"),
    ] {
        let mut args = vec!["config", "routes", "test", "--config.file=alertmanager.yml"];
        args.extend_from_slice(labels);
        let (ok, out, err) = run3("amtool", &args, &dir);
        assert!(ok, "{out}{err}");
        assert_eq!(out.trim(), receiver, "{labels:?} routed: {out}{err}");
    }
}

/// One fault must never page twice under two names: the Prometheus rules' alerts are all
/// `StallwatchFleet*`, the evaluator's never are, and every rule says it is from Prometheus
/// (which the Alertmanager config inhibits while the evaluator's alert fires).
#[test]
fn shipped_alert_names_never_collide_with_the_built_in_evaluators() {
    let rules = std::fs::read_to_string(deploy("prometheus/stallwatch-rules.yml")).unwrap();
    let names = alert_names(&rules);
    assert!(names.len() >= 8, "{names:?}");
    for name in &names {
        assert!(name.starts_with("StallwatchFleet"), "{name}");
        assert!(Alert::ALL.iter().all(|a| a.name() != name), "{name} is also the evaluator's");
    }
    for a in Alert::ALL {
        assert!(!a.name().starts_with("StallwatchFleet"), "{}", a.name());
    }
    assert_eq!(
        rules.matches("source: prometheus").count(),
        names.len(),
        "every alert has source=prometheus"
    );
    // Every runbook a rule links to exists.
    for link in rules.lines().filter_map(|l| l.split("docs/runbooks/").nth(1)) {
        let file = link.trim_end_matches('"');
        assert!(deploy("../docs/runbooks").join(file).exists(), "no runbook {file}");
    }
}
