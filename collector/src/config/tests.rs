//! Tests of parsing, error locations, checks and plan merging.

use std::collections::HashSet;
use std::time::Duration;

use stallwatch_proto::Transport;
use stallwatch_proto::plan::{ProbeMode, RelayPlan, Repair};

use super::*;

const BASE: &str = r#"# test config
[tls]
ca = "ca.pem"
cert = "collector.pem"
key = "collector.key"
revoked = "revoked.json"

[labels]
regions = ["sea", "eu"]

[[relays]]
name = "relay-sg-1"
address = "sg1.example:4433"
region = "sea"

[[relays]]
name = "relay-fra-1"
address = "fra1.example:4433"

[[plans]]
name = "sea-baseline"
regions = ["sea"]

[[plans.probes]]
name = "sg-quic"
target = "relay-sg-1"
transport = "quic-stream"
every = "1m"
duration = "30s"

[[plans.probes]]
name = "sg-udp"
target = "relay-sg-1"
transport = "udp"
every = "1m"
duration = "30s"
emulate = "3g"
"#;

fn ok(text: &str) -> Config {
    parse(text, "t.toml").unwrap_or_else(|e| panic!("{e}"))
}

/// The error for `text`, as printed.
fn err(text: &str) -> String {
    match parse(text, "t.toml") {
        Ok(_) => panic!("parsed, but should not have:\n{text}"),
        Err(e) => {
            assert_eq!(e.exit_code(), EXIT_BAD_CONFIG);
            e.to_string()
        }
    }
}

/// `BASE` with `from` replaced by `to` (which must occur exactly once).
fn edit(from: &str, to: &str) -> String {
    assert_eq!(BASE.matches(from).count(), 1, "{from:?} must occur once in BASE");
    BASE.replacen(from, to, 1)
}

/// 1-based line of the `nth` (0-based) occurrence of `needle` in `text`.
fn line_of(text: &str, needle: &str, nth: usize) -> usize {
    let (at, _) = text.match_indices(needle).nth(nth).unwrap_or_else(|| panic!("{needle:?}"));
    text[..at].matches('\n').count() + 1
}

/// Asserts `e` has a problem at `line` for `path` whose message contains `what`.
#[track_caller]
fn assert_problem(e: &str, line: usize, path: &str, what: &str) {
    let prefix = format!("t.toml:{line}:");
    assert!(
        e.lines().any(|l| l.starts_with(&prefix)
            && l.contains(&format!(" {path}: "))
            && l.contains(what)),
        "expected a problem at line {line} for {path} containing {what:?}, got:\n{e}"
    );
}

fn agent(name: &str, region: &str, network_type: &str) -> AgentSelector {
    AgentSelector { name: name.into(), region: region.into(), network_type: network_type.into() }
}

const FULL: &str = include_str!("../../../deploy/collector.example.toml");

#[test]
fn base_config_parses_with_defaults() {
    let c = ok(BASE);
    assert_eq!(c.listen, Listen::default());
    assert_eq!(c.storage, Storage::default());
    assert_eq!(c.ingest.max_report_bytes, ByteSize(1 << 20));
    assert_eq!(c.ingest.max_clock_skew, Duration::from_secs(300));
    assert_eq!(c.ingest.backfill_after, Duration::from_secs(30));
    assert_eq!(c.slo, Slo::default());
    assert_eq!(c.slo.first_frame_critical, Duration::from_secs(4));
    assert_eq!(c.slo.stall_ratio_warn, 0.01);
    assert_eq!(c.labels.network_types, DEFAULT_NETWORK_TYPES);
    // No targets listed: the relay names.
    assert_eq!(c.labels.targets, ["relay-sg-1", "relay-fra-1"]);
    let p = &c.plans[0];
    assert_eq!(p.report_interval, Duration::from_secs(10));
    assert_eq!(p.probes[0].profile, "720p30");
    assert_eq!(p.probes[0].mode, ModeKind::Loopback);
    assert_eq!(p.probes[1].transport, Transport::Udp);
    assert_eq!(p.probes[1].emulate.as_deref(), Some("3g"));
}

#[test]
fn full_example_config_parses() {
    let c = ok(FULL);
    assert_eq!(c.plans.len(), 5);
    assert_eq!(c.probe_count(), 6);
    assert_eq!(c.relays.len(), 3);
    assert_eq!(c.labels.regions, ["sea", "latam"]);
    assert_eq!(c.ingest.max_report_bytes, ByteSize(1 << 20));
    assert_eq!(
        c.plans[0].run_relay,
        Some(RunRelay { listen: "0.0.0.0:4433".parse().unwrap(), gop_cache: true, relay: None })
    );
    assert_eq!(c.plans[2].report_interval, Duration::from_secs(5));
    assert_eq!(c.plans[3].probes[0].stream.as_deref(), Some("latam-live"));
    // Every value written in the example is the default, except where it says "example".
    assert_eq!(c.slo, Slo::default());
    assert_eq!(c.storage, Storage::default());
    assert_eq!(c.listen, Listen::default());
    assert_eq!(c.web, Web::default());
    assert_eq!(c.ingest, Ingest::default());
}

#[test]
fn integer_byte_sizes_are_accepted() {
    let c = ok(&format!("{BASE}\n[ingest]\nmax_report_bytes = 65536\n"));
    assert_eq!(c.ingest.max_report_bytes, ByteSize(65_536));
    assert_eq!(c.ingest.report_limits().max_report_bytes, 65_536);
}

// ---- syntax and schema errors: the first one, with line, column and path ----

#[test]
fn syntax_error_names_line_and_column() {
    let text = edit("address = \"sg1.example:4433\"", "address = sg1.example:4433");
    let e = err(&text);
    assert!(e.starts_with(&format!("t.toml:{}:11: ", line_of(&text, "sg1.example", 0))), "{e}");
    assert!(e.contains("string values must be quoted"), "{e}");
}

#[test]
fn duplicate_key_is_a_syntax_error_with_its_line() {
    let text = edit("duration = \"30s\"\nemulate", "duration = \"30s\"\nevery = \"2m\"\nemulate");
    let e = err(&text);
    assert!(e.starts_with(&format!("t.toml:{}:", line_of(&text, "every = \"2m\"", 0))), "{e}");
}

#[test]
fn unknown_variant_names_path_line_and_column() {
    let text = edit("transport = \"udp\"", "transport = \"quic-stram\"");
    let e = err(&text);
    let line = line_of(&text, "quic-stram", 0);
    assert_eq!(
        e,
        format!(
            "t.toml:{line}:13: plans[0].probes[1].transport: unknown variant `quic-stram`, \
             expected one of `quic-stream`, `quic-datagram`, `udp`"
        )
    );
}

#[test]
fn unknown_field_names_the_key() {
    let text = edit("emulate = \"3g\"", "emulat = \"3g\"");
    let e = err(&text);
    assert_problem(
        &e,
        line_of(&text, "emulat =", 0),
        "plans[0].probes[1].emulat",
        "unknown field `emulat`",
    );
    // Unknown sections too.
    let text = format!("{BASE}\n[alertz]\nx = 1\n");
    assert_problem(&err(&text), line_of(&text, "[alertz]", 0), "alertz", "unknown field `alertz`");
}

#[test]
fn missing_field_names_the_table() {
    let text = edit("target = \"relay-sg-1\"\ntransport = \"udp\"\n", "transport = \"udp\"\n");
    let e = err(&text);
    assert_problem(
        &e,
        line_of(&text, "[[plans.probes]]", 1),
        "plans[0].probes[1]",
        "missing field `target`",
    );
}

#[test]
fn missing_section_is_reported_at_the_top() {
    let text = BASE.replace("[labels]\nregions = [\"sea\", \"eu\"]\n", "");
    let e = err(&text);
    assert!(e.starts_with("t.toml:1:1: ") && e.contains("missing field `labels`"), "{e}");
}

#[test]
fn bad_duration_names_path_and_input() {
    let text = edit(
        "every = \"1m\"\nduration = \"30s\"\nemulate",
        "every = \"1 minute\"\nduration = \"30s\"\nemulate",
    );
    let e = err(&text);
    assert_problem(
        &e,
        line_of(&text, "1 minute", 0),
        "plans[0].probes[1].every",
        "invalid duration \"1 minute\"",
    );
}

/// The whole line: file, line, column (of the value), field path, the input and the bad token.
#[test]
fn bad_duration_points_at_line_column_and_token() {
    let text = edit(
        "every = \"1m\"\nduration = \"30s\"\nemulate",
        "every = \"1h30\"\nduration = \"30s\"\nemulate",
    );
    let line = line_of(&text, "1h30", 0);
    assert_eq!(
        err(&text),
        format!(
            "t.toml:{line}:9: plans[0].probes[1].every: invalid duration \"1h30\": \"30\" has no \
             unit (use d, h, m, s, ms, us or ns)"
        )
    );
}

/// Config files take the same durations as the command line and `--emulate`: decimals too.
#[test]
fn durations_may_have_decimals() {
    let text = edit(
        "every = \"1m\"\nduration = \"30s\"\nemulate",
        "every = \"1.5m\"\nduration = \"0.5m\"\nemulate",
    );
    let config = ok(&text);
    let probe = &config.plans[0].probes[1];
    assert_eq!((probe.every, probe.duration), (Duration::from_secs(90), Duration::from_secs(30)));
}

#[test]
fn wrong_type_names_path() {
    let text = edit("regions = [\"sea\"]", "regions = \"sea\"");
    let e = err(&text);
    assert_problem(
        &e,
        line_of(&text, "regions = \"sea\"", 0),
        "plans[0].regions",
        "invalid type: string",
    );
    let text = format!("{BASE}\n[slo]\nloss_warn = \"1%\"\n");
    assert_problem(&err(&text), line_of(&text, "loss_warn", 0), "slo.loss_warn", "invalid type");
    let text = format!("{BASE}\n[listen]\ningest = \"localhost:8443\"\n");
    assert_problem(
        &err(&text),
        line_of(&text, "localhost", 0),
        "listen.ingest",
        "invalid socket address",
    );
}

// ---- checks after parsing: all of them, each with its line ----

#[test]
fn probe_target_must_be_a_defined_relay() {
    let text = edit(
        "target = \"relay-sg-1\"\ntransport = \"udp\"",
        "target = \"relay-sg-9\"\ntransport = \"udp\"",
    );
    assert_problem(
        &err(&text),
        line_of(&text, "relay-sg-9", 0),
        "plans[0].probes[1].target",
        "no relay named \"relay-sg-9\"",
    );
}

#[test]
fn probe_target_must_be_in_the_target_allow_list() {
    let text = edit(
        "regions = [\"sea\", \"eu\"]",
        "regions = [\"sea\", \"eu\"]\ntargets = [\"relay-fra-1\"]",
    );
    let e = err(&text);
    for nth in 0..2 {
        let line = line_of(&text, "target = \"relay-sg-1\"", nth);
        assert_problem(
            &e,
            line,
            &format!("plans[0].probes[{nth}].target"),
            "is not in labels.targets",
        );
    }
}

#[test]
fn plan_selectors_must_be_in_the_allow_lists() {
    let text =
        edit("regions = [\"sea\"]", "regions = [\"sea\", \"mars\"]\nnetwork_types = [\"6g\"]");
    let e = err(&text);
    assert_problem(
        &e,
        line_of(&text, "\"mars\"", 0),
        "plans[0].regions[1]",
        "\"mars\" is not in labels.regions",
    );
    assert_problem(
        &e,
        line_of(&text, "\"6g\"", 0),
        "plans[0].network_types[0]",
        "is not in labels.network_types",
    );
    let text = edit("region = \"sea\"", "region = \"us\"");
    assert_problem(
        &err(&text),
        line_of(&text, "\"us\"", 0),
        "relays[0].region",
        "not in labels.regions",
    );
}

#[test]
fn duplicate_names_point_at_the_second_and_name_the_first() {
    let text = format!("{BASE}\n[[plans]]\nname = \"sea-baseline\"\n");
    let first = line_of(&text, "name = \"sea-baseline\"", 0);
    let second = line_of(&text, "name = \"sea-baseline\"", 1);
    assert_problem(
        &err(&text),
        second,
        "plans[1].name",
        &format!("already used at line {first} (plans[0].name)"),
    );

    let text = edit("name = \"relay-fra-1\"", "name = \"relay-sg-1\"");
    let e = err(&text);
    assert_problem(
        &e,
        line_of(&text, "name = \"relay-sg-1\"", 1),
        "relays[1].name",
        "relay name \"relay-sg-1\" is already used",
    );

    let text = format!(
        "{BASE}\n[[plans]]\nname = \"other\"\n[[plans.probes]]\nname = \"sg-udp\"\n\
         target = \"relay-fra-1\"\ntransport = \"udp\"\nevery = \"1m\"\nduration = \"1s\"\n"
    );
    let e = err(&text);
    assert_problem(
        &e,
        line_of(&text, "name = \"sg-udp\"", 1),
        "plans[1].probes[0].name",
        "unique across plans",
    );

    let text = edit("regions = [\"sea\", \"eu\"]", "regions = [\"sea\", \"eu\", \"sea\"]");
    assert_problem(
        &err(&text),
        line_of(&text, "regions = [\"sea\", \"eu\", \"sea\"]", 0),
        "labels.regions[2]",
        "\"sea\" is listed twice (first at line",
    );
}

#[test]
fn every_must_cover_duration_and_durations_must_be_positive() {
    let text = edit(
        "every = \"1m\"\nduration = \"30s\"\nemulate",
        "every = \"20s\"\nduration = \"30s\"\nemulate",
    );
    assert_problem(
        &err(&text),
        line_of(&text, "every = \"20s\"", 0),
        "plans[0].probes[1].every",
        "every (20s) must be at least duration (30s)",
    );

    let text = edit("duration = \"30s\"\nemulate", "duration = \"0s\"\nemulate");
    assert_problem(
        &err(&text),
        line_of(&text, "\"0s\"", 0),
        "plans[0].probes[1].duration",
        "must be greater than 0s",
    );

    let text = edit("regions = [\"sea\"]", "regions = [\"sea\"]\nreport_interval = \"0ms\"");
    assert_problem(
        &err(&text),
        line_of(&text, "0ms", 0),
        "plans[0].report_interval",
        "must be greater than 0s",
    );
}

#[test]
fn max_report_bytes_must_be_in_range() {
    let text = format!("{BASE}\n[ingest]\nmax_report_bytes = \"64MiB\"\n");
    assert_problem(
        &err(&text),
        line_of(&text, "64MiB", 0),
        "ingest.max_report_bytes",
        "64MiB is out of range (64KiB to 16MiB)",
    );
    let text = format!("{BASE}\n[ingest]\nmax_report_bytes = 100\n");
    assert_problem(
        &err(&text),
        line_of(&text, "= 100", 0),
        "ingest.max_report_bytes",
        "out of range",
    );
    let text = format!("{BASE}\n[ingest]\nmax_report_bytes = \"1 parsec\"\n");
    assert_problem(
        &err(&text),
        line_of(&text, "parsec", 0),
        "ingest.max_report_bytes",
        "unknown unit",
    );
}

#[test]
fn probe_mode_stream_profile_and_emulation_are_checked() {
    let text = edit("transport = \"udp\"", "transport = \"udp\"\nmode = \"view\"");
    assert_problem(
        &err(&text),
        line_of(&text, "\"view\"", 0),
        "plans[0].probes[1].mode",
        "needs a stream",
    );
    let text = edit("transport = \"udp\"", "transport = \"udp\"\nstream = \"x\"");
    assert_problem(
        &err(&text),
        line_of(&text, "stream =", 0),
        "plans[0].probes[1].stream",
        "takes no stream",
    );
    let text =
        edit("transport = \"udp\"", "transport = \"udp\"\nmode = \"publish\"\nstream = \"a b\"");
    assert_problem(
        &err(&text),
        line_of(&text, "\"a b\"", 0),
        "plans[0].probes[1].stream",
        "only A-Z",
    );
    let text = edit("transport = \"udp\"", "transport = \"udp\"\nprofile = \"4k60\"");
    assert_problem(
        &err(&text),
        line_of(&text, "4k60", 0),
        "plans[0].probes[1].profile",
        "unknown profile \"4k60\"",
    );
    let text = edit("emulate = \"3g\"", "emulate = \"6g\"");
    assert_problem(
        &err(&text),
        line_of(&text, "\"6g\"", 0),
        "plans[0].probes[1].emulate",
        "unknown preset \"6g\"",
    );
    ok(&edit("emulate = \"3g\"", "emulate = \"delay=100ms,loss=1%\""));
}

#[test]
fn repair_is_checked_per_transport_and_carried_to_the_plan() {
    // Unknown modes are schema errors with their line and path.
    let text = edit("emulate = \"3g\"", "emulate = \"3g\"\nrepair = \"fec\"");
    let e = err(&text);
    let line = line_of(&text, "\"fec\"", 0);
    assert!(
        e.contains(&format!("t.toml:{line}:")) && e.contains("plans[0].probes[1].repair"),
        "{e}"
    );
    // nack on quic-stream is refused, naming the line and field.
    let text =
        edit("transport = \"quic-stream\"\n", "transport = \"quic-stream\"\nrepair = \"nack\"\n");
    assert_problem(
        &err(&text),
        line_of(&text, "repair = \"nack\"", 0),
        "plans[0].probes[0].repair",
        "\"nack\" is not available on quic-stream",
    );
    // none is fine on both; the plan carries what the file says, and nothing when unset.
    let agent = agent("a", "sea", "4g");
    let text =
        edit("transport = \"quic-stream\"\n", "transport = \"quic-stream\"\nrepair = \"none\"\n")
            .replacen("emulate = \"3g\"", "emulate = \"3g\"\nrepair = \"none\"", 1);
    let plan = ok(&text).plan_for(&agent, 1);
    assert_eq!(plan.probes[0].repair, Some(Repair::None));
    assert_eq!(plan.probes[1].repair, Some(Repair::None));
    plan.validate().unwrap();
    let plan = ok(BASE).plan_for(&agent, 1);
    assert_eq!(plan.probes[1].repair, None);
    assert_eq!(
        Repair::for_transport(plan.probes[1].transport, plan.probes[1].repair),
        Repair::Nack
    );
}

#[test]
fn conflicting_relays_for_one_agent_are_rejected() {
    let relay = |name: &str, sel: &str, port: u16| {
        format!(
            "\n[[plans]]\nname = \"{name}\"\n{sel}\nrun_relay = {{ listen = \"0.0.0.0:{port}\" }}\n"
        )
    };
    // Disjoint selectors: fine.
    ok(&format!(
        "{BASE}{}{}",
        relay("a", "agents = [\"r1\"]", 4433),
        relay("b", "agents = [\"r2\"]", 5000)
    ));
    // Same settings: fine.
    ok(&format!(
        "{BASE}{}{}",
        relay("a", "agents = [\"r1\"]", 4433),
        relay("b", "regions = [\"sea\"]", 4433)
    ));
    let text = format!(
        "{BASE}{}{}",
        relay("a", "agents = [\"r1\"]", 4433),
        relay("b", "regions = [\"sea\"]", 5000)
    );
    let first = line_of(&text, "run_relay", 0);
    assert_problem(
        &err(&text),
        line_of(&text, "run_relay", 1),
        "plans[2].run_relay",
        &format!("differs from plans[1].run_relay (line {first})"),
    );
}

#[test]
fn web_section_is_checked() {
    let text = format!(
        "{BASE}\n[web]\nallowed_hosts = [\"ok.example\", \"http://x.example:80\"]\n\
         max_concurrent_renders = 0\n"
    );
    let e = err(&text);
    assert_problem(
        &e,
        line_of(&text, "allowed_hosts", 0),
        "web.allowed_hosts[1]",
        "must be a bare host name",
    );
    assert_problem(
        &e,
        line_of(&text, "max_concurrent_renders", 0),
        "web.max_concurrent_renders",
        "between 1 and 64",
    );
    let c = ok(&format!("{BASE}\n[web]\ntoken_file = \"web.token\"\n"));
    assert_eq!(c.web.token_file.as_deref(), Some(std::path::Path::new("web.token")));
    assert_eq!(c.web.max_concurrent_renders, 2);
}

#[test]
fn storage_slo_and_listen_orderings_are_checked() {
    let text = format!("{BASE}\n[storage]\ndownsample_after = \"10d\"\n");
    assert_problem(
        &err(&text),
        line_of(&text, "10d", 0),
        "storage.downsample_after",
        "must be at most storage.raw_retention (7d)",
    );
    let text = format!("{BASE}\n[slo]\njitter_warn = \"60ms\"\nloss_warn = 1.5\n");
    let e = err(&text);
    // jitter_critical is defaulted: reported at its section.
    assert_problem(
        &e,
        line_of(&text, "[slo]", 0),
        "slo.jitter_critical",
        "(50ms) must be greater than slo.jitter_warn (60ms)",
    );
    assert_problem(&e, line_of(&text, "1.5", 0), "slo.loss_warn", "not a ratio");
    let text = format!("{BASE}\n[listen]\ningest = \"127.0.0.1:9464\"\n");
    assert_problem(&err(&text), line_of(&text, "[listen]", 0), "listen.metrics", "must differ");
}

#[test]
fn all_semantic_problems_are_reported_in_file_order() {
    let text = edit(
        "target = \"relay-sg-1\"\ntransport = \"udp\"",
        "target = \"nope\"\ntransport = \"udp\"",
    );
    let text = text.replacen("duration = \"30s\"", "duration = \"2m\"", 1);
    let text = text.replacen("region = \"sea\"", "region = \"us\"", 1);
    let e = err(&text);
    let lines: Vec<usize> =
        e.lines().map(|l| l.split(':').nth(1).unwrap().parse().unwrap()).collect();
    assert_eq!(lines.len(), 3, "{e}");
    assert!(lines.is_sorted(), "{e}");
    assert_eq!(parse(&text, "t.toml").unwrap_err().problems().len(), 3);
}

// ---- plans for agents ----

fn two_plans() -> Config {
    ok(&format!(
        "{BASE}\n[[plans]]\nname = \"sea-cellular\"\nregions = [\"sea\"]\nnetwork_types = [\"3g\"]\n\
         report_interval = \"5s\"\nrun_relay = {{ listen = \"0.0.0.0:4433\", gop_cache = false }}\n\
         [[plans.probes]]\nname = \"fra-view\"\ntarget = \"relay-fra-1\"\ntransport = \"quic-datagram\"\n\
         profile = \"360p30\"\nmode = \"view\"\nstream = \"live-1\"\nevery = \"10s\"\nduration = \"10s\"\n"
    ))
}

#[test]
fn plans_carry_each_relays_udp_credential_to_the_relay_and_its_probes() {
    let creds = RelayCredentials::from_secret(b"collector secret");
    let c = two_plans();
    // The 3g agent runs a relay (no `relay` key: the entry named like the agent) and probes
    // relay-sg-1 (the baseline) and relay-fra-1.
    let p = c.plan_with_credentials(&agent("sg-3g-1", "sea", "3g"), 1, &creds);
    let relay = p.relay.as_ref().unwrap().udp_credential;
    assert_eq!(relay, Some(creds.for_relay("sg-3g-1")));
    let by_probe: Vec<_> = p.probes.iter().map(|p| (p.target.as_str(), p.udp_credential)).collect();
    for (target, credential) in &by_probe {
        assert_eq!(*credential, Some(creds.for_relay(target)), "{target}");
    }
    assert_ne!(creds.for_relay("relay-sg-1"), creds.for_relay("relay-fra-1"));
    p.validate().unwrap();
    let bytes = stallwatch_proto::plan::encode_plan(&p);
    assert_eq!(stallwatch_proto::plan::decode_plan(&bytes, 1 << 20), Ok(p));

    // `relay` names the [[relays]] entry the agent serves: the same credential its probes get.
    let named = two_plans_with("gop_cache = false, relay = \"relay-fra-1\"");
    let p = named.plan_with_credentials(&agent("sg-3g-1", "sea", "3g"), 1, &creds);
    assert_eq!(p.relay.unwrap().udp_credential, Some(creds.for_relay("relay-fra-1")));
    let fra_probe = p.probes.iter().find(|p| p.target == "relay-fra-1").unwrap();
    assert_eq!(fra_probe.udp_credential, Some(creds.for_relay("relay-fra-1")));

    // An agent without a relay gets none; one that names no entry is refused at load.
    let p = c.plan_with_credentials(&agent("sg-fiber-1", "sea", "fiber"), 1, &creds);
    assert_eq!(p.relay, None);
    let e = err(&two_plans_text("gop_cache = false, relay = \"relay-nowhere\""));
    assert!(e.contains("plans[1].run_relay.relay") && e.contains("relay-nowhere"), "{e}");
}

fn two_plans_text(run_relay_rest: &str) -> String {
    format!(
        "{BASE}\n[[plans]]\nname = \"sea-cellular\"\nregions = [\"sea\"]\nnetwork_types = [\"3g\"]\n\
         report_interval = \"5s\"\nrun_relay = {{ listen = \"0.0.0.0:4433\", {run_relay_rest} }}\n\
         [[plans.probes]]\nname = \"fra-view\"\ntarget = \"relay-fra-1\"\ntransport = \"quic-datagram\"\n\
         profile = \"360p30\"\nmode = \"view\"\nstream = \"live-1\"\nevery = \"10s\"\nduration = \"10s\"\n"
    )
}

fn two_plans_with(run_relay_rest: &str) -> Config {
    ok(&two_plans_text(run_relay_rest))
}

#[test]
fn plan_for_merges_matching_plans() {
    let c = two_plans();
    let p = c.plan_for(&agent("sg-3g-1", "sea", "3g"), 42);
    assert_eq!(p.revision, 42);
    let names: Vec<_> = p.probes.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["sg-quic", "sg-udp", "fra-view"]);
    assert_eq!(p.report_interval, Duration::from_secs(5));
    assert_eq!(
        p.relay,
        Some(RelayPlan {
            listen: "0.0.0.0:4433".into(),
            gop_cache: false,
            udp_credential: None,
            revoked_serials: Vec::new()
        })
    );
    let view = &p.probes[2];
    assert_eq!(view.address, "fra1.example:4433");
    assert_eq!(view.target, "relay-fra-1");
    assert_eq!(view.mode, ProbeMode::View { stream: "live-1".into() });
    assert_eq!(view.transport, Transport::QuicDatagram);
    assert_eq!(p.probes[1].emulate.as_deref(), Some("3g"));
    p.validate().unwrap();
    let bytes = stallwatch_proto::plan::encode_plan(&p);
    assert_eq!(stallwatch_proto::plan::decode_plan(&bytes, 1 << 20), Ok(p));

    // Fiber in the same region: the baseline only.
    let p = c.plan_for(&agent("sg-fiber-1", "sea", "fiber"), 1);
    assert_eq!(p.probes.len(), 2);
    assert_eq!(p.report_interval, Duration::from_secs(10));
    assert_eq!(p.relay, None);
    // Another region: nothing to do, default interval.
    let p = c.plan_for(&agent("fra-1", "eu", "3g"), 1);
    assert!(p.probes.is_empty() && p.relay.is_none());
    assert_eq!(p.report_interval, Duration::from_secs(10));
}

#[test]
fn plan_for_staggers_deterministically_within_every() {
    const PIN_A: u64 = 12_360;
    const PIN_B: u64 = 11_455;
    let c = two_plans();
    let a = agent("sg-3g-1", "sea", "3g");
    let offsets = |a: &AgentSelector| -> Vec<Duration> {
        c.plan_for(a, 1).probes.iter().map(|p| p.start_offset).collect()
    };
    // Same agent, same offsets (also across Config clones and revisions).
    assert_eq!(offsets(&a), offsets(&a));
    assert_eq!(
        offsets(&a),
        c.clone().plan_for(&a, 99).probes.iter().map(|p| p.start_offset).collect::<Vec<_>>()
    );
    // Different agents, different offsets.
    let b = agent("sg-3g-2", "sea", "3g");
    assert_ne!(offsets(&a), offsets(&b));
    // Always below every, and spread out across many agents.
    let mut distinct = HashSet::new();
    for i in 0..500 {
        let ag = agent(&format!("agent-{i}"), "sea", "3g");
        for p in c.plan_for(&ag, 1).probes {
            assert!(p.start_offset < p.every, "{p:?}");
            if p.name == "sg-quic" {
                distinct.insert(p.start_offset);
            }
        }
    }
    assert!(distinct.len() > 450, "only {} distinct offsets of 500", distinct.len());
    // Pinned values: the hash must not change between releases, or every agent's schedule
    // would shift on upgrade.
    let minute = Duration::from_secs(60);
    assert_eq!(start_offset("sg-3g-1", "sg-quic", minute), Duration::from_millis(PIN_A));
    assert_eq!(start_offset("sg-3g-2", "sg-quic", minute), Duration::from_millis(PIN_B));
    assert!(start_offset("a", "b", Duration::from_nanos(7)) < Duration::from_nanos(7));
    assert_eq!(start_offset("a", "b", Duration::ZERO), Duration::ZERO);
}

#[test]
fn plans_revision_follows_plan_edits_only() {
    let base = ok(BASE).plans_revision();
    assert!(base < 1 << 53);
    // Comments, layout and unrelated sections: same revision.
    let reformatted = BASE.replace("every = \"1m\"", "every   =   \"1m\"   # one minute");
    assert_eq!(ok(&reformatted).plans_revision(), base);
    assert_eq!(ok(&format!("{BASE}\n[slo]\nrtt_warn = \"400ms\"\n")).plans_revision(), base);
    // Plan and relay edits: new revision.
    assert_ne!(ok(&edit("emulate = \"3g\"", "emulate = \"4g\"")).plans_revision(), base);
    assert_ne!(ok(&edit("fra1.example:4433", "fra2.example:4433")).plans_revision(), base);
}

// ---- files ----

/// A scratch directory, removed when the test ends (pass or fail).
fn temp_dir() -> tempfile::TempDir {
    stallwatch_tests::scratch_dir("config")
}

#[test]
fn load_resolves_relative_paths_and_check_files_names_missing_ones() {
    let tmp = temp_dir();
    let dir = tmp.path();
    let file = dir.join("collector.toml");
    let text = format!("{BASE}\n[storage]\npath = \"data/collector.db\"\n");
    std::fs::write(&file, &text).unwrap();
    let c = load(&file).unwrap();
    assert_eq!(c.tls.ca, dir.join("ca.pem"));
    assert_eq!(c.storage.path, dir.join("data/collector.db"));
    let e = c.check_files().unwrap_err().to_string();
    let origin = file.display().to_string();
    assert!(e.contains(&format!("{origin}:{}:6: tls.ca: ", line_of(&text, "ca = ", 0))), "{e}");
    assert!(e.contains("tls.revoked") && e.contains("storage.path"), "{e}");
    for f in ["ca.pem", "collector.pem", "collector.key", "revoked.json"] {
        std::fs::write(dir.join(f), "").unwrap();
    }
    std::fs::create_dir(dir.join("data")).unwrap();
    c.check_files().unwrap();
}

#[test]
fn unreadable_file_is_exit_66() {
    let e = load("/nonexistent/stallwatch/collector.toml").unwrap_err();
    assert_eq!(e.exit_code(), EXIT_UNREADABLE);
    assert!(
        e.to_string().starts_with("/nonexistent/stallwatch/collector.toml: cannot read: "),
        "{e}"
    );
}

#[test]
fn config_problem_locates_fields_after_loading() {
    let c = ok(BASE);
    let p = c.problem("tls.cert", "permission denied");
    assert_eq!(
        p.to_string(),
        format!("t.toml:{}:8: tls.cert: permission denied", line_of(BASE, "cert =", 0))
    );
    // Equality ignores layout.
    assert_eq!(ok(&BASE.replace("# test config\n", "\n\n")), c);
}

#[test]
fn names_no_agent_can_have_are_rejected() {
    let text = edit(
        "regions = [\"sea\", \"eu\"]",
        "regions = [\"sea\", \"EU\"]\nnetwork_types = [\"fiber\", \"satellite\"]",
    );
    let e = err(&text);
    let line = line_of(&text, "\"EU\"", 0);
    assert_problem(&e, line, "labels.regions[1]", "\"EU\" can never match an agent");
    let line = line_of(&text, "satellite", 0);
    assert_problem(&e, line, "labels.network_types[1]", "not a network type agents can have");
    let text = edit("regions = [\"sea\"]", "regions = [\"sea\"]\nagents = [\"sg_1\"]");
    let line = line_of(&text, "sg_1", 0);
    assert_problem(&err(&text), line, "plans[0].agents[0]", "can never match an agent");
}
