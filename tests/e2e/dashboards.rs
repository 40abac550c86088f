//! The shipped Grafana dashboards (`deploy/grafana/*.json`) and Prometheus rules
//! (`deploy/prometheus/*-rules.yml`) against a real Prometheus with native histograms on that
//! scrapes a running demo (the demo test's, `demo.rs`): every panel query, with its variables
//! set as Grafana would set them, returns data. Grafana itself is not installed here; its JSON is checked for what Grafana
//! relies on.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use stallwatch_collector::demo::demo_agents;
use stallwatch_tests::demo::DemoProcess;
use stallwatch_tests::fleet::{AlertmanagerProcess, Deadline, PrometheusProcess, wait_until};

/// What Grafana's `$__rate_interval` is with the shipped 15 s scrape interval (four of them).
const RATE_INTERVAL: &str = "1m";

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// Files in `dir` whose names satisfy `keep`, sorted.
fn files(dir: &Path, keep: impl Fn(&str) -> bool) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    found.retain(|p| p.is_file() && p.file_name().and_then(|n| n.to_str()).is_some_and(&keep));
    found.sort();
    found
}

struct Dashboard {
    file: String,
    json: Value,
}

fn dashboards() -> Vec<Dashboard> {
    let found = files(&deploy_dir().join("grafana"), |n| n.ends_with(".json"));
    assert!(found.len() >= 2, "expected the fleet and region dashboards, found {found:?}");
    found
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path).unwrap();
            let json = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()));
            Dashboard { file: path.file_name().unwrap().to_string_lossy().into_owned(), json }
        })
        .collect()
}

/// Every panel, rows' nested panels included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in dashboard["panels"].as_array().into_iter().flatten() {
        out.push(p);
        out.extend(p["panels"].as_array().into_iter().flatten());
    }
    out
}

/// (panel title, PromQL) of every query target.
fn queries(dashboard: &Value) -> Vec<(String, String)> {
    panels(dashboard)
        .into_iter()
        .flat_map(|p| {
            let title = p["title"].as_str().unwrap_or("?").to_owned();
            p["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|t| t["hide"] != true)
                .filter_map(move |t| Some((title.clone(), t["expr"].as_str()?.to_owned())))
        })
        .collect()
}

fn variables(dashboard: &Value) -> Vec<&Value> {
    dashboard["templating"]["list"].as_array().into_iter().flatten().collect()
}

#[test]
fn dashboards_have_a_known_schema_fixed_unique_uids_and_a_datasource_variable() {
    let mut uids = BTreeSet::new();
    for Dashboard { file, json: d } in dashboards() {
        // Schema 36 introduced datasource references by uid, which these use; Grafana 10.4
        // to 12 write 39 to 41 and migrate older ones.
        let schema = d["schemaVersion"].as_u64().unwrap_or(0);
        assert!((36..=41).contains(&schema), "{file}: schemaVersion {schema}");
        let uid = d["uid"].as_str().unwrap_or_default();
        assert!(
            (1..=40).contains(&uid.len())
                && uid.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "{file}: uid {uid:?} (1-40 of a-z, A-Z, 0-9, - and _)"
        );
        assert!(uids.insert(uid.to_owned()), "{file}: uid {uid} used twice");
        assert!(d["title"].as_str().is_some_and(|t| !t.is_empty()), "{file}: title");

        let datasource = variables(&d)
            .into_iter()
            .find(|v| v["type"] == "datasource")
            .unwrap_or_else(|| panic!("{file}: no datasource variable"));
        assert_eq!(datasource["query"], "prometheus", "{file}");
        let ds_ref = format!("${{{}}}", datasource["name"].as_str().unwrap());

        let mut ids = BTreeSet::new();
        let mut cells: Vec<(String, [u64; 4])> = Vec::new();
        for p in panels(&d) {
            let title = p["title"].as_str().unwrap_or("?");
            let id = p["id"].as_u64().unwrap_or_else(|| panic!("{file}: {title} has no id"));
            assert!(ids.insert(id), "{file}: panel id {id} used twice");
            let g = &p["gridPos"];
            let [x, y, w, h] = ["x", "y", "w", "h"].map(|k| g[k].as_u64().unwrap_or(u64::MAX));
            assert!(w >= 1 && h >= 1 && x + w <= 24, "{file}: {title}: gridPos {g}");
            for (other, [ox, oy, ow, oh]) in &cells {
                let overlap = x < ox + ow && ox < &(x + w) && y < oy + oh && oy < &(y + h);
                assert!(!overlap, "{file}: {title} overlaps {other}");
            }
            cells.push((title.to_owned(), [x, y, w, h]));
            if p["targets"].as_array().is_some_and(|t| !t.is_empty()) {
                assert_eq!(p["datasource"]["uid"], ds_ref.as_str(), "{file}: {title}");
                for t in p["targets"].as_array().unwrap() {
                    assert_eq!(t["datasource"]["uid"], ds_ref.as_str(), "{file}: {title}");
                }
            }
        }
        assert!(!queries(&d).is_empty(), "{file}: no queries");
    }
}

/// A variable's value as substituted into a query: `.*` for "All", else one escaped value.
#[derive(Clone, Debug)]
enum Choice {
    All,
    One(String),
}

impl Choice {
    fn regex(&self) -> String {
        match self {
            Choice::All => ".*".into(),
            Choice::One(v) => v
                .chars()
                .flat_map(|c| {
                    let special = "\\.+*?()|[]{}^$".contains(c);
                    special.then_some('\\').into_iter().chain([c])
                })
                .collect(),
        }
    }
}

/// `text` with `$name`/`${name}` replaced by `choices` and `$__rate_interval` by
/// [`RATE_INTERVAL`]; an error names any variable left.
fn substitute(text: &str, choices: &BTreeMap<String, Choice>) -> Result<String, String> {
    let mut out = text.replace("$__rate_interval", RATE_INTERVAL);
    // Longest names first, so `$network` never eats the start of `$network_type`.
    let mut names: Vec<&String> = choices.keys().collect();
    names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    for name in names {
        let value = choices[name].regex();
        out = out.replace(&format!("${{{name}}}"), &value).replace(&format!("${name}"), &value);
    }
    match out.find('$') {
        Some(i) => Err(format!("unknown variable at {:?}", &out[i..])),
        None => Ok(out),
    }
}

/// The values of a `label_values(SELECTOR, LABEL)` or `label_values(LABEL)` variable query.
fn label_values(prometheus: &PrometheusProcess, query: &str) -> Result<Vec<String>, String> {
    let inner = query
        .trim()
        .strip_prefix("label_values(")
        .and_then(|q| q.strip_suffix(')'))
        .ok_or_else(|| format!("not a label_values query: {query}"))?;
    let (selector, label) = match inner.rsplit_once(',') {
        Some((selector, label)) => (Some(selector.trim()), label.trim()),
        None => (None, inner.trim()),
    };
    let params: Vec<(&str, &str)> = selector.map(|s| ("match[]", s)).into_iter().collect();
    let data = prometheus.api(&format!("/api/v1/label/{label}/values"), &params)?;
    Ok(data.as_array().into_iter().flatten().filter_map(|v| v.as_str().map(String::from)).collect())
}

/// Whether an instant query returned at least one series with a finite value, or a native
/// histogram with observations (a panel of NaN or nothing shows "No data").
fn has_data(result: &Value) -> bool {
    let finite =
        |v: &Value| v.as_str().and_then(|v| v.parse::<f64>().ok()).filter(|v| v.is_finite());
    result.as_array().is_some_and(|series| {
        series.iter().any(|s| {
            finite(&s["value"][1]).is_some()
                || finite(&s["histogram"][1]["count"]).is_some_and(|count| count > 0.0)
        })
    })
}

/// At most the first 300 characters of `v`, for messages.
fn brief(v: &Value) -> String {
    let text = v.to_string();
    match text.char_indices().nth(300) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text,
    }
}

/// Runs every query of `dashboard` with `choices`, retrying each until it returns data or
/// `deadline` passes; returns the failures.
fn check_queries(
    prometheus: &PrometheusProcess,
    dashboard: &Dashboard,
    choices: &BTreeMap<String, Choice>,
    deadline: Deadline,
) -> Vec<String> {
    let mut failures = Vec::new();
    for (title, expr) in queries(&dashboard.json) {
        let context = format!("{} / {title} with {choices:?}", dashboard.file);
        let promql = match substitute(&expr, choices) {
            Ok(q) => q,
            Err(e) => {
                failures.push(format!("{context}: {e}\n  {expr}"));
                continue;
            }
        };
        let mut last = Ok(Value::Null);
        let remaining = deadline.remaining();
        let ok = wait_until(remaining, || {
            last = prometheus.try_query(&promql);
            last.as_ref().is_ok_and(has_data)
        });
        if !ok {
            let why = match last {
                Err(e) => e,
                Ok(v) => format!("no data: {}", brief(&v)),
            };
            failures.push(format!("{context}: {why}\n  {promql}"));
        }
    }
    failures
}

/// Sets each query variable in order to the value `pick` names (or All, when it names none and
/// the variable offers All), checking the value is among those its query returns.
fn choose(
    prometheus: &PrometheusProcess,
    dashboard: &Dashboard,
    pick: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, Choice>, String> {
    let mut choices = BTreeMap::new();
    for v in variables(&dashboard.json).into_iter().filter(|v| v["type"] == "query") {
        let name = v["name"].as_str().unwrap_or_default().to_owned();
        let query = v["query"]["query"].as_str().or(v["query"].as_str()).unwrap_or_default();
        let query = substitute(query, &choices)?;
        let values = label_values(prometheus, &query)?;
        if values.is_empty() {
            return Err(format!("{}: variable {name}: {query} has no values", dashboard.file));
        }
        let choice = match pick.get(&name) {
            Some(value) if values.contains(value) => Choice::One(value.clone()),
            Some(value) => {
                return Err(format!(
                    "{}: {name} does not offer {value}: {values:?}",
                    dashboard.file
                ));
            }
            None if v["includeAll"] == true => Choice::All,
            None => return Err(format!("{}: {name} needs a value (no All)", dashboard.file)),
        };
        choices.insert(name, choice);
    }
    Ok(choices)
}

/// The `record:` and `alert:` entries of a rule file, counted from its text.
fn rules_in(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| l.trim_start().trim_start_matches("- ").trim_start())
        .filter(|l| l.starts_with("record:") || l.starts_with("alert:"))
        .count()
}

/// Metric names (`stallwatch_...`, recording rules' `level:stallwatch_...:op` included) that
/// a PromQL expression reads; quoted label values are left out.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut unquoted = String::with_capacity(expr.len());
    let mut quote = None;
    for c in expr.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' || c == '`' => quote = Some(c),
            None => unquoted.push(c),
        }
        if quote.is_some() {
            unquoted.push(' ');
        }
    }
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    unquoted
        .split(|c: char| !is_name(c))
        .filter(|w| w.contains("stallwatch_"))
        .map(String::from)
        .collect()
}

/// The variable settings to check a dashboard with: as it opens (every variable at All, or at
/// each value of one without All), then drilled down to each cohort the demo probes (region,
/// network type and target, which the variable chain must offer).
fn variable_settings(
    prometheus: &PrometheusProcess,
    dashboard: &Dashboard,
) -> Vec<BTreeMap<String, String>> {
    let mut settings = vec![BTreeMap::new()];
    for v in variables(&dashboard.json) {
        if v["type"] != "query" || v["includeAll"] == true {
            continue;
        }
        let name = v["name"].as_str().unwrap_or_default();
        let values = label_values(prometheus, v["query"]["query"].as_str().unwrap_or_default())
            .unwrap_or_else(|e| panic!("{}: {name}: {e}", dashboard.file));
        settings = settings
            .iter()
            .flat_map(|s| {
                values.iter().map(move |value| {
                    let mut s = s.clone();
                    s.insert(name.to_owned(), value.clone());
                    s
                })
            })
            .collect();
    }
    let cohorts = prometheus.query(
        "sum by (region, network_type, target) (stallwatch_attempts_total{role=\"viewer\"})",
    );
    for c in cohorts.as_array().into_iter().flatten() {
        let label = |k: &str| c["metric"][k].as_str().unwrap_or_default().to_owned();
        settings.push(BTreeMap::from(
            ["region", "network_type", "target"].map(|k| (k.to_owned(), label(k))),
        ));
    }
    settings
}

/// Every rule of `rule_files` as Prometheus loaded it: all loaded (the glob picks new files
/// up) and evaluated without error; recording rules return data, and every metric a rule
/// reads exists (an alert's expression is rightly empty while it does not fire). Returns the
/// failures.
fn check_rules(
    prometheus: &PrometheusProcess,
    rule_files: &[PathBuf],
    deadline: Deadline,
) -> Vec<String> {
    let rules = || -> Vec<Value> {
        let data = prometheus.api("/api/v1/rules", &[]).unwrap_or_default();
        let groups = data["groups"].as_array().cloned().unwrap_or_default();
        groups.iter().flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default()).collect()
    };
    let expected: usize = rule_files.iter().map(|f| rules_in(f)).sum();
    let evaluated = |r: &Value| !r["lastEvaluation"].as_str().unwrap_or("0001").starts_with("0001");
    let loaded = wait_until(Duration::from_secs(30), || {
        let rules = rules();
        rules.len() == expected && rules.iter().all(evaluated)
    });
    if !loaded {
        return vec![format!(
            "Prometheus did not load and evaluate the {expected} rules of {rule_files:?}"
        )];
    }
    let mut failures = Vec::new();
    for rule in rules() {
        let name = rule["name"].as_str().unwrap_or("?");
        let expr = rule["query"].as_str().unwrap_or_default();
        if rule["health"] != "ok" {
            failures
                .push(format!("rule {name}: {} {}\n  {expr}", rule["health"], rule["lastError"]));
        }
        if rule["type"] == "recording" {
            let ok = wait_until(deadline.remaining(), || {
                prometheus.try_query(expr).is_ok_and(|r| has_data(&r))
            });
            if !ok {
                failures.push(format!("recording rule {name}: no data\n  {expr}"));
            }
        }
        for metric in metric_names(expr) {
            let present = prometheus
                .try_query(&format!("count({{__name__=\"{metric}\"}})"))
                .is_ok_and(|r| has_data(&r));
            if !present {
                failures
                    .push(format!("rule {name} reads {metric}, which Prometheus does not have"));
            }
        }
    }
    failures
}

/// The Alertmanager the shared demo (`demo.rs`) delivers its alerts to, so that the delivery
/// counters the shipped rules read exist (a collector with no receiver has none to count).
pub(crate) fn start_alertmanager(dir: &Path) -> AlertmanagerProcess {
    AlertmanagerProcess::start(
        dir,
        "route:\n  receiver: \"null\"\nreceivers:\n  - name: \"null\"\n",
    )
}

/// Every dashboard query and rule returns data from a real Prometheus scraping `demo`, which
/// delivers to `alertmanager` ([`start_alertmanager`]); Prometheus' files go in `dir`. Run on
/// the one demo the demo test starts (`demo.rs`): a demo is the heaviest process the tests
/// start, and it takes a minute to have data. Panics naming every problem found.
pub(crate) fn every_dashboard_query_and_rule_returns_data(
    demo: &DemoProcess,
    alertmanager: &AlertmanagerProcess,
    dir: &Path,
) {
    let dashboards = dashboards();
    // What Prometheus' glob below matches.
    let rule_files = files(&deploy_dir().join("prometheus"), |n| n.ends_with("-rules.yml"));
    let rule_globs = [deploy_dir().join("prometheus/*-rules.yml")];
    let rule_globs: Vec<&Path> = rule_globs.iter().map(PathBuf::as_path).collect();
    let prometheus =
        PrometheusProcess::start_native(&dir.join("prometheus"), demo.metrics, "1s", &rule_globs);

    // Ready when Prometheus holds first-frame histograms for every cohort of the demo. The
    // slowest is sea/3g's quic-datagram (a keyframe whole over a 500 ms round trip that
    // outlasts the playout delay): at load 23 it had none after 90 s. The demo runs towards
    // its P1 meanwhile, so waiting longer costs no time when data comes sooner.
    let cohorts = demo_agents().len() * 3;
    let all_cohorts = wait_until(Duration::from_secs(150), || {
        let q = "count(histogram_count(stallwatch_first_frame_seconds))";
        prometheus.try_query(q).ok().is_some_and(|r| {
            r[0]["value"][1].as_str().and_then(|v| v.parse::<usize>().ok()) == Some(cohorts)
        })
    });
    assert!(all_cohorts, "Prometheus never saw all {cohorts} cohorts:\n{}", demo.stdout());
    // Native histograms are what Prometheus 2.42 keeps with the flag on; the dashboards'
    // heatmaps and quantiles read them.
    let native = prometheus.query("stallwatch_jitter_seconds");
    let first = &native[0];
    assert!(
        first["histogram"][1]["buckets"].is_array(),
        "jitter is not a native histogram: {first}"
    );

    let deadline = Deadline::after(Duration::from_secs(60));
    let mut failures = Vec::new();
    let mut passes = 0;
    for dashboard in &dashboards {
        for setting in variable_settings(&prometheus, dashboard) {
            match choose(&prometheus, dashboard, &setting) {
                Ok(choices) => {
                    failures.extend(check_queries(&prometheus, dashboard, &choices, deadline));
                    passes += 1;
                }
                Err(e) => failures.push(e),
            }
        }
    }

    failures.extend(check_rules(&prometheus, &rule_files, deadline));
    // The collector's own watchdog alert (always firing) reached Alertmanager.
    let watchdog = wait_until(Duration::from_secs(30), || {
        alertmanager.alerts().iter().any(|a| a["labels"]["alertname"] == "StallwatchWatchdog")
    });
    if !watchdog {
        failures.push(format!(
            "Alertmanager never got the collector's watchdog alert: {:?}",
            alertmanager.alerts()
        ));
    }
    assert!(
        failures.is_empty(),
        "{} problems in {passes} passes:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(passes >= 2 * dashboards.len(), "only {passes} variable settings checked");
}

#[test]
fn the_query_checks_tell_data_from_no_data() {
    let mut choices = BTreeMap::new();
    choices.insert("network_type".to_owned(), Choice::One("4g".into()));
    choices.insert("target".to_owned(), Choice::One("relay-1.sg".into()));
    choices.insert("region".to_owned(), Choice::All);
    let q = "rate(x{region=~\"$region\", network_type=~\"${network_type}\", target=~\"$target\"}[$__rate_interval])";
    assert_eq!(
        substitute(q, &choices).unwrap(),
        "rate(x{region=~\".*\", network_type=~\"4g\", target=~\"relay-1\\.sg\"}[1m])"
    );
    assert!(substitute("x{a=\"$unknown\"}", &choices).is_err());
    assert!(substitute("x[$__interval]", &choices).is_err());

    let series = |v: &str| serde_json::json!([{"metric": {}, "value": [1.0, v]}]);
    assert!(has_data(&series("0")));
    assert!(!has_data(&series("NaN")));
    assert!(!has_data(&serde_json::json!([])));
    let histogram = |count: &str| serde_json::json!([{"metric": {}, "histogram": [1.0, {"count": count, "sum": "0", "buckets": []}]}]);
    assert!(has_data(&histogram("0.5")));
    assert!(!has_data(&histogram("0")));

    assert_eq!(
        metric_names(
            "sum(rate(stallwatch_stalls_total{job=\"stallwatch_x\"}[5m])) / region:stallwatch_play:rate5m > 0.01"
        ),
        BTreeSet::from([
            "stallwatch_stalls_total".to_owned(),
            "region:stallwatch_play:rate5m".to_owned()
        ])
    );
}
