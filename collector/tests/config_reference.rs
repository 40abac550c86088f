//! README's configuration reference is kept in sync with the config structs: every key the
//! collector's configuration serializes (the shipped example, loaded by the real parser) has a
//! row in README's collector table, with the default the structs give it, and every row names
//! a key the structs have. (The agent's table is checked in `agent/src/run/config.rs`.)

use std::collections::BTreeMap;
use std::path::Path;

fn repo(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// Dotted key paths of `value` with their scalar values (arrays of tables as `name[]`).
fn flatten(prefix: &str, value: &toml::Value, out: &mut BTreeMap<String, Option<String>>) {
    let key = |k: &str| if prefix.is_empty() { k.to_owned() } else { format!("{prefix}.{k}") };
    match value {
        toml::Value::Table(t) => {
            for (k, v) in t {
                // Tables keyed by a name the operator chooses.
                let k = if prefix == "reports.regions" { "<region>" } else { k.as_str() };
                flatten(&key(k), v, out);
            }
        }
        toml::Value::Array(a) if a.iter().all(toml::Value::is_table) && !a.is_empty() => {
            for v in a {
                flatten(&format!("{prefix}[]"), v, out);
            }
        }
        scalar => {
            out.entry(prefix.to_owned()).or_insert(Some(scalar.to_string()));
        }
    }
}

/// Settings without a default that the example leaves commented out.
const OPTIONAL: &str = r#"
[alerts.thresholds]
first_frame_p95 = { enter = "2s", exit = "1600ms" }
stall_ratio = { enter = 0.01, exit = 0.008 }
loss_ratio = { enter = 0.01, exit = 0.008 }
jitter_p95 = { enter = "30ms", exit = "24ms" }
view_failure_ratio = { enter = 0.1, exit = 0.08 }
publish_failure_ratio = { enter = 0.1, exit = 0.08 }

[web]
token_file = "/etc/stallwatch/web.token"

[alerts.delivery]
external_url = "https://stallwatch.example.net"

[[alerts.webhooks]]
name = "oncall"
format = "generic"
url = "https://hooks.example.net/stallwatch"
secret = "signing secret"
min_severity = "P1"
"#;

/// Adds `extra`'s keys to `base`, table by table.
fn merge(base: &mut toml::Value, extra: toml::Value) {
    match (base, extra) {
        (toml::Value::Table(b), toml::Value::Table(e)) => {
            for (k, v) in e {
                match b.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, e) => *b = e,
    }
}

/// The rows of README's table under `heading`: key -> default column.
fn readme_table(heading: &str) -> BTreeMap<String, String> {
    let readme = repo("README.md");
    let start = readme.find(heading).unwrap_or_else(|| panic!("README has no {heading:?}"));
    let mut rows = BTreeMap::new();
    for line in readme[start..].lines().skip(1).skip_while(|l| !l.starts_with('|')) {
        if !line.starts_with('|') {
            break;
        }
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        let (Some(key), Some(default)) = (cells.first(), cells.get(1)) else { continue };
        let key = key.trim_matches('`');
        if key == "key" || key.starts_with("---") {
            continue;
        }
        let previous = rows.insert(key.to_owned(), default.trim_matches('`').to_owned());
        assert!(previous.is_none(), "README lists {key} twice");
    }
    rows
}

#[test]
fn readme_lists_every_collector_key_with_its_default() {
    // The example with every table filled in (and the optional settings it leaves commented
    // out set), as the collector reads it.
    let mut text: toml::Value =
        toml::from_str(&repo("deploy/collector.example.toml")).expect("the example is TOML");
    merge(&mut text, toml::from_str(OPTIONAL).unwrap());
    let example = stallwatch_collector::config::parse(
        &toml::to_string(&text).unwrap(),
        "collector.example.toml + optional settings",
    )
    .expect("the example with its optional settings parses");
    // Optional keys inside [[plans]] arrays, which `merge` replaces rather than merges.
    let mut example = example;
    if let Some(relay) = example.plans.iter_mut().find_map(|p| p.run_relay.as_mut()) {
        relay.relay = Some("relay-sg-1".into());
    }
    let serialized = toml::Value::try_from(&example).expect("the config serializes");
    let mut keys = BTreeMap::new();
    flatten("", &serialized, &mut keys);
    // Defaults: a config that sets only what has no default.
    let minimal = stallwatch_collector::config::parse(
        "[tls]\nca = \"ca.pem\"\ncert = \"c.pem\"\nkey = \"c.key\"\nrevoked = \"r.json\"\n[labels]\nregions = [\"sea\"]\n",
        "minimal.toml",
    )
    .expect("the minimal config parses");
    let mut defaults = BTreeMap::new();
    flatten("", &toml::Value::try_from(&minimal).unwrap(), &mut defaults);

    let table = readme_table("### Collector configuration");
    let missing: Vec<&String> = keys.keys().filter(|k| !table.contains_key(*k)).collect();
    assert!(missing.is_empty(), "README's collector table lacks {missing:#?}");
    let unknown: Vec<&String> = table.keys().filter(|k| !keys.contains_key(*k)).collect();
    assert!(
        unknown.is_empty(),
        "README's collector table lists keys the config has not: {unknown:#?}"
    );
    let mut compared = 0;
    for (key, default) in &defaults {
        let Some(value) = default else { continue };
        // Required settings (the minimal config's own values), and empty lists of entries
        // (their keys are per entry, above).
        let Some(documented) = table.get(key) else { continue };
        if key.starts_with("tls.") || key == "labels.regions" || key.contains("[]") {
            continue;
        }
        assert!(
            documented == value,
            "README says {key} defaults to {documented}, the config's default is {value}"
        );
        compared += 1;
    }
    assert!(compared > 60, "only {compared} defaults compared");
}
