//! The shipped example configuration parses, validates and yields sensible plans.

use std::path::PathBuf;
use std::time::Duration;

use stallwatch_collector::config::{AgentSelector, load};
use stallwatch_proto::plan::ProbeMode;

fn example_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/collector.example.toml")
}

fn agent(name: &str, region: &str, network_type: &str) -> AgentSelector {
    AgentSelector { name: name.into(), region: region.into(), network_type: network_type.into() }
}

#[test]
fn example_config_loads_and_validates() {
    let path = example_path();
    let config = load(&path).unwrap_or_else(|e| panic!("{e}"));
    // Relative TLS paths are resolved against the file's directory.
    assert_eq!(config.tls.ca, path.parent().unwrap().join("stallwatch-ca/ca.pem"));
    // The TLS files of the example do not exist: only --check-files says so, naming the field.
    let e = config.check_files().unwrap_err().to_string();
    assert!(e.contains("tls.ca") && e.contains("collector.example.toml:"), "{e}");
    assert_eq!(config.labels.targets, ["relay-sg-1", "relay-sg-2", "relay-sp-1"]);
    assert_eq!(config.max_cohorts(), 2 * 6 * 3 * 3);
}

#[test]
fn example_config_plans_are_valid_for_every_kind_of_agent() {
    let config = load(example_path()).unwrap();
    let revision = config.plans_revision();
    let mut fleet = vec![
        agent("relay-sg-1", "sea", "fiber"),
        agent("sp-fiber-1", "latam", "fiber"),
        agent("sp-4g-1", "latam", "4g"),
    ];
    for nt in &config.labels.network_types {
        fleet.push(agent(&format!("sg-{nt}-1"), "sea", nt));
    }
    for a in &fleet {
        let plan = config.plan_for(a, revision);
        plan.validate().unwrap_or_else(|e| panic!("{}: {e}", a.name));
        assert_eq!(plan.revision, revision);
        for p in &plan.probes {
            assert!(p.start_offset < p.every, "{}: {p:?}", a.name);
        }
    }

    let relay = config.plan_for(&fleet[0], revision);
    assert_eq!(relay.relay.as_ref().map(|r| r.listen.as_str()), Some("0.0.0.0:4433"));
    assert_eq!(relay.probes.len(), 3, "a relay agent in sea also runs the sea baseline");

    let publisher = config.plan_for(&fleet[1], revision);
    let modes: Vec<_> = publisher.probes.iter().map(|p| &p.mode).collect();
    assert_eq!(
        modes,
        [
            &ProbeMode::Publish { stream: "latam-live".into() },
            &ProbeMode::View { stream: "latam-live".into() }
        ]
    );

    let cellular = config.plan_for(&agent("sg-3g-1", "sea", "3g"), revision);
    assert_eq!(cellular.probes.len(), 4);
    assert_eq!(cellular.report_interval, Duration::from_secs(5));
    assert_eq!(cellular.probes[3].emulate.as_deref(), Some("3g"));
    assert_eq!(cellular.relay, None);

    let fiber = config.plan_for(&agent("sg-fiber-1", "sea", "fiber"), revision);
    assert_eq!(fiber.probes.len(), 3);
    assert_eq!(fiber.report_interval, Duration::from_secs(10));
}
