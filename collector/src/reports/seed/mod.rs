//! `stallwatch-collector seed-history`: a deterministic history for tests, demos and anyone
//! evaluating reports without waiting a week. It writes, into one directory, a fleet CA
//! (`ca/`) that issues each generated agent its certificate, a history store filled through
//! the store's normal write path (each agent's interval reports encoded, decoded and checked
//! as ingest does, then [`HistoryStore::commit`] in batches under the agent's verified
//! certificate identity, with the same maintenance the collector runs), the incidents of the
//! story (`incidents.json`) and a collector configuration (`collector.toml`) that
//! `report --config` reads.
//!
//! What the history shows is in `scenario.rs`.

pub mod rng;
pub mod scenario;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use rustls_pki_types::UnixTime;
use stallwatch_proto::hdr;
use stallwatch_proto::report::{
    DecodedReport, HistogramData, REPORT_SCHEMA_VERSION, Report, ReportLimits, Series,
    SeriesLabels, decode_report, encode_report,
};
use stallwatch_proto::{Repair, Role, Transport};
use thiserror::Error;

use super::incidents::IncidentFile;
use super::zone::{Zone, ZoneError};
use crate::config::Storage;
use crate::pki::{AgentIdentity, Ca, PkiError, Validity, VerifiedAgent};
use crate::store::{
    HistoryStore, IngestItem, Outcome, Retention, SqliteStore, StoreError, report_digest,
};
pub use scenario::{
    ATTEMPT_MS, Attempt, AttemptKey, DAY_MS, PEAK_HOURS, RegionScenario, Scenario, TRANSPORTS,
    attempt, regions,
};

/// Reports committed per transaction, as ingest's group commit would under load.
const BATCH: usize = 512;

/// Why seeding failed.
#[derive(Debug, Error)]
pub enum SeedError {
    /// The directory already holds a store or a CA.
    #[error("{} already exists: seed an empty directory (or delete it first)", .0.display())]
    Exists(PathBuf),
    /// The fleet CA could not be made, or an agent's certificate did not verify.
    #[error("fleet CA: {0}")]
    Pki(#[from] PkiError),
    /// A file could not be written.
    #[error("{}: {error}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The store failed.
    #[error("history store: {0}")]
    Store(#[from] StoreError),
    /// A generated report was refused: a bug in the generator.
    #[error("generated report refused: {0}")]
    Refused(String),
    /// A region's time zone could not be loaded.
    #[error("{0}")]
    Zone(#[from] ZoneError),
    /// Bad arguments.
    #[error("{0}")]
    Invalid(String),
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct SeedOptions {
    /// The story.
    pub scenario: Scenario,
    /// Regions to generate (labels from [`regions`]); empty: all.
    pub regions: Vec<String>,
}

/// What was written.
#[derive(Debug, Clone)]
pub struct Seeded {
    /// The collector configuration.
    pub config: PathBuf,
    /// The fleet CA's directory.
    pub ca: PathBuf,
    /// The history store.
    pub store: PathBuf,
    /// The incidents file.
    pub incidents: PathBuf,
    /// Reports stored.
    pub reports: u64,
}

/// Progress after each generated day.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Days done.
    pub day: u64,
    /// Days in all.
    pub days: u64,
    /// Reports stored so far.
    pub reports: u64,
}

/// The regions `options` asks for, with their time zones.
pub fn selected(options: &SeedOptions) -> Result<Vec<(RegionScenario, Zone)>, SeedError> {
    let all = regions();
    for r in &options.regions {
        if !all.iter().any(|s| s.name == r) {
            let known: Vec<_> = all.iter().map(|s| s.name).collect();
            return Err(SeedError::Invalid(format!(
                "unknown region {r:?}: the generator has {}",
                known.join(", ")
            )));
        }
    }
    all.into_iter()
        .filter(|s| options.regions.is_empty() || options.regions.iter().any(|r| r == s.name))
        .map(|s| Ok((s.clone(), Zone::load(s.time_zone)?)))
        .collect()
}

/// Writes the store, incidents and configuration into `dir` (created).
pub fn seed(
    dir: &Path,
    options: &SeedOptions,
    mut progress: impl FnMut(Progress),
) -> Result<Seeded, SeedError> {
    let s = &options.scenario;
    if s.interval_ms < ATTEMPT_MS
        || !s.interval_ms.is_multiple_of(60_000)
        || s.days == 0
        || !s.end_ms.is_multiple_of(3_600_000)
    {
        return Err(SeedError::Invalid(
            "the interval must be whole minutes and at least 1m, days at least 1, and the end on a whole hour".into(),
        ));
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |error| SeedError::Io { path, error }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let store_path = dir.join("history.db");
    let ca_dir = dir.join("ca");
    for existing in [&store_path, &ca_dir] {
        if existing.exists() {
            return Err(SeedError::Exists(existing.clone()));
        }
    }
    let chosen = selected(options)?;
    let zones: BTreeMap<&str, Zone> = chosen.iter().map(|(r, z)| (r.name, z.clone())).collect();
    let agents = verified_agents(&ca_dir, s, &chosen)?;

    let incidents_path = dir.join("incidents.json");
    IncidentFile::write(&incidents_path, &s.incidents(&zones)).map_err(io(&incidents_path))?;
    let config_path = dir.join("collector.toml");
    std::fs::write(&config_path, config_text(s, &chosen)).map_err(io(&config_path))?;

    let mut store = SqliteStore::open(&store_path)?;
    let storage = Storage::default();
    let retention = Retention {
        downsample_after: storage.downsample_after,
        keep_minutes: storage.raw_retention,
        keep_hours: storage.hourly_retention,
        ..Retention::default()
    };
    let mut pending: Vec<(&VerifiedAgent, DecodedReport, [u8; 32])> = Vec::with_capacity(BATCH);
    let mut stored = 0u64;
    let slots_per_day = DAY_MS / s.interval_ms;
    for day in 0..s.days {
        for i in 0..slots_per_day {
            let start = s.start_ms() + day * DAY_MS + i * s.interval_ms;
            for (region, zone) in &chosen {
                for &(agent, network_type) in region.agents {
                    let (report, digest) =
                        agent_report(s, region, zone, agent, network_type, start)?;
                    pending.push((&agents[agent], report, digest));
                }
            }
            if pending.len() >= BATCH {
                stored += commit(&mut store, &pending)?;
                pending.clear();
            }
        }
        stored += commit(&mut store, &pending)?;
        pending.clear();
        // The collector's writer runs maintenance every few minutes; once a day of history is
        // as good here, and leaves what production would: hours for older days.
        store.maintain(s.start_ms() + (day + 1) * DAY_MS, &retention)?;
        progress(Progress { day: day + 1, days: s.days, reports: stored });
    }
    Ok(Seeded {
        config: config_path,
        ca: ca_dir,
        store: store_path,
        incidents: incidents_path,
        reports: stored,
    })
}

/// Makes a fleet CA in `ca_dir`, issues every chosen agent a certificate valid over the whole
/// history and verifies it at the history's start, as the collector's listener verifies an
/// agent's certificate: the identities the reports are stored under, by agent name.
fn verified_agents(
    ca_dir: &Path,
    s: &Scenario,
    chosen: &[(RegionScenario, Zone)],
) -> Result<BTreeMap<&'static str, VerifiedAgent>, SeedError> {
    let at = |unix_ms: u64| {
        let ns = i128::from(unix_ms) * 1_000_000;
        time::OffsetDateTime::from_unix_timestamp_nanos(ns)
            .map_err(|e| SeedError::Invalid(format!("time out of range: {e}")))
    };
    let (start, end) = (at(s.start_ms())?, at(s.end_ms)?);
    let ca = Ca::init(ca_dir, start, false)?;
    // Until a day after the end: a report is received just after its window.
    let validity = Validity::new(start, end + time::Duration::days(1))?;
    let verify_at = UnixTime::since_unix_epoch(std::time::Duration::from_millis(s.start_ms()));
    let mut agents = BTreeMap::new();
    for (region, _) in chosen {
        for &(name, network_type) in region.agents {
            let identity =
                AgentIdentity::new(name, region.name, network_type).map_err(PkiError::from)?;
            let credential = ca.issue_agent(&identity, validity)?;
            let agent = VerifiedAgent::verify(&credential.cert, ca.certificate(), verify_at)?;
            agents.insert(name, agent);
        }
    }
    Ok(agents)
}

/// The one place that stores generated reports: as ingest does, under the agent's verified
/// certificate identity and with a receive time just after the window.
fn commit(
    store: &mut SqliteStore,
    pending: &[(&VerifiedAgent, DecodedReport, [u8; 32])],
) -> Result<u64, SeedError> {
    let items: Vec<IngestItem<'_>> = pending
        .iter()
        .map(|(agent, report, digest)| IngestItem {
            agent,
            report,
            digest: *digest,
            received_unix_ms: report.report.window_end_ms + 1_500,
        })
        .collect();
    let committed = store.commit(&items)?;
    for outcome in &committed.outcomes {
        if *outcome != Outcome::Stored {
            return Err(SeedError::Refused(format!("{outcome:?}")));
        }
    }
    Ok(items.len() as u64)
}

thread_local! {
    /// One encoder and one counts array of stallwatch's layout for every generated
    /// histogram: creating a DEFLATE stream or zeroing a counts array per histogram costs more
    /// than encoding it. Level 0 (stored blocks) is still the V2+DEFLATE format agents send.
    static SCRATCH: std::cell::RefCell<(hdr::Encoder, Vec<u64>)> =
        std::cell::RefCell::new((hdr::Encoder::with_level(0), vec![0; hdr::STALLWATCH_SLOTS]));
}

/// The histogram of `(value, count)` pairs (µs or packets) as an agent would send it, with its
/// exact sum.
fn histogram(values: impl IntoIterator<Item = (u64, u64)> + Clone) -> HistogramData {
    SCRATCH.with_borrow_mut(|(encoder, counts)| {
        let (mut sum, mut total, mut last) = (0u64, 0u64, 0usize);
        for (value, count) in values.clone() {
            let index = hdr::stallwatch_index(value).expect("generated values are in range");
            counts[index] += count;
            last = last.max(index);
            sum = sum.saturating_add(value.saturating_mul(count));
            total += count;
        }
        let mut bytes = Vec::new();
        encoder.encode_counts_into(&counts[..=last], &mut bytes).expect("within the layout");
        for (value, _) in values {
            counts[hdr::stallwatch_index(value).unwrap_or(0)] = 0;
        }
        HistogramData { hdr: bytes, sum, count: total }
    })
}

/// One agent's report for the window starting at `start`: a viewer series per relay and
/// transport.
fn agent_report(
    s: &Scenario,
    region: &RegionScenario,
    zone: &Zone,
    agent: &str,
    network_type: &str,
    start: u64,
) -> Result<(DecodedReport, [u8; 32]), SeedError> {
    let mut series = Vec::new();
    for target in region.relays {
        for transport in TRANSPORTS {
            let key =
                AttemptKey { region, agent, network_type, target, transport, start_ms: start };
            series.push(viewer_series(&attempt(s, &key, zone), target, transport));
        }
    }
    let report = Report {
        schema_version: REPORT_SCHEMA_VERSION,
        agent: agent.to_owned(),
        agent_version: concat!("seed-", env!("CARGO_PKG_VERSION")).to_owned(),
        seq: start / s.interval_ms,
        window_start_ms: start,
        window_end_ms: start + s.interval_ms,
        plan_revision: 1,
        spool_depth: 0,
        series,
    };
    let body = encode_report(&report);
    let decoded = decode_report(&body, &ReportLimits::default())
        .map_err(|e| SeedError::Refused(e.to_string()))?;
    Ok((decoded, report_digest(&body)))
}

fn viewer_series(a: &Attempt, target: &str, transport: Transport) -> Series {
    // The repair mode an agent runs on `transport` when its plan leaves it out.
    let repair = Repair::for_transport(transport, None);
    let labels =
        SeriesLabels::new(format!("{target}-{transport}"), transport, repair, target, Role::Viewer);
    let mut counters: BTreeMap<String, u64> = BTreeMap::from([("view_attempts".to_owned(), 1)]);
    let mut histograms = BTreeMap::new();
    if let Some(cause) = a.failure {
        counters.insert(format!("view_failures_{cause}"), 1);
        return Series { labels, counters, histograms };
    }
    let received = a.expected - a.lost;
    let burst_packets: u64 = a.bursts.iter().sum();
    let frames = a.play_ns / 33_333_333;
    for (name, value) in [
        ("packets", received),
        ("bytes", received * 1_200),
        ("packets_expected", a.expected),
        ("packets_received", received),
        ("packets_lost", a.lost),
        ("loss_bursts", a.bursts.len() as u64),
        ("loss_burst_lost", a.burst_lost),
        ("loss_burst_packets", burst_packets),
        ("loss_gap_lost", a.lost - a.burst_lost),
        ("frames_rendered", frames),
        ("stalls", a.stalls_us.len() as u64),
        ("stalls_600ms", a.stalls_us.iter().filter(|&&us| us > 600_000).count() as u64),
        ("stall_time_ns", a.stall_ns),
        ("play_time_ns", a.play_ns),
    ] {
        counters.insert(name.to_owned(), value);
    }
    histograms.insert("first_frame_us".to_owned(), histogram([(a.first_frame_us, 1)]));
    histograms
        .insert("first_frame_first_keyframe_us".to_owned(), histogram([(a.first_keyframe_us, 1)]));
    histograms.insert("jitter_us".to_owned(), histogram(a.jitter_us.iter().copied()));
    histograms.insert("rtt_us".to_owned(), histogram(a.rtt_us.iter().copied()));
    if !a.stalls_us.is_empty() {
        histograms
            .insert("stall_duration_us".to_owned(), histogram(a.stalls_us.iter().map(|&v| (v, 1))));
    }
    if !a.bursts.is_empty() {
        histograms
            .insert("burst_length_packets".to_owned(), histogram(a.bursts.iter().map(|&v| (v, 1))));
    }
    Series { labels, counters, histograms }
}

/// The collector configuration for the generated history.
fn config_text(s: &Scenario, chosen: &[(RegionScenario, Zone)]) -> String {
    let names: Vec<&str> = chosen.iter().map(|(r, _)| r.name).collect();
    let mut t = String::new();
    let _ = write!(
        t,
        "# Written by `stallwatch-collector seed-history` (seed {}, {} days ending {}).\n\
         # For `stallwatch-collector report --config THIS_FILE`. ca/ is the fleet CA that issued\n\
         # the agents' certificates; there is no collector certificate, so `run` would refuse it.\n\n\
         [tls]\nca = \"ca/ca.pem\"\ncert = \"ca/collector.pem\"\nkey = \"ca/collector.key\"\nrevoked = \"ca/revoked.json\"\n\n\
         [storage]\npath = \"history.db\"\n\n[labels]\nregions = {names:?}\n",
        s.seed,
        s.days,
        super::zone::rfc3339_utc(s.end_ms),
    );
    for (r, _) in chosen {
        for relay in r.relays {
            let _ = write!(
                t,
                "\n[[relays]]\nname = \"{relay}\"\naddress = \"{relay}.edge.example.net:4433\"\nregion = \"{}\"\n",
                r.name
            );
        }
    }
    t.push_str("\n[reports]\nincidents = \"incidents.json\"\nmin_viewing_minutes = 60\n");
    for (r, _) in chosen {
        let networks: BTreeSet<&str> = r.agents.iter().map(|(_, n)| *n).collect();
        let mut networks: Vec<&str> = networks.into_iter().collect();
        networks.sort_by_key(|n| {
            r.agents.iter().filter(|(_, m)| m == n).count() * 10 + usize::from(*n == "4g")
        });
        networks.reverse();
        let _ = write!(
            t,
            "\n[reports.regions.{}]\nname = \"{}\"\ntime_zone = \"{}\"\npeak_hours = [\"20:00-23:00\"]\nnetworks = {networks:?}\ncarriers = {:?}\n",
            r.name, r.display, r.time_zone, r.carriers
        );
        let (notes, issues): (&str, &[(&str, &str, &str, &str)]) = match r.name {
            "sea" => (
                "Most viewers watch on 4G phones; Indonesian and Philippine carriers congest sharply after 20:00.",
                &[(
                    "Evening 4G congestion in Jakarta and Manila (stalls triple after 20:00).",
                    "Pre-enabling the Jakarta backup line at 19:45 and capping the default rung at 480p for 4G during the peak.",
                    "peak_stalls",
                    "4g",
                )],
            ),
            "latam" => (
                "Two relays in São Paulo; relay-sp-2 carries the customers' Mexican traffic on a separate transit.",
                &[(
                    "relay-sp-2's transit degraded slowly for a week before anyone noticed (2025).",
                    "Draining relay-sp-2 to relay-sp-1 and opening a ticket with the transit provider.",
                    "degrading",
                    "",
                )],
            ),
            "eu" => (
                "Mostly fiber and Wi-Fi; 5G is growing in Germany.",
                &[(
                    "A customer's encoder was set to a 4 s GOP and the new relay had no GOP cache.",
                    "Turning the relay's GOP cache on and asking the customer for a 2 s keyframe interval.",
                    "slow_start_low_rtt",
                    "",
                )],
            ),
            "me" => (
                "3G is still common outside the Gulf cities; carriers run maintenance at night.",
                &[(
                    "3G viewers in Saudi Arabia lose packets in bursts during cell handovers.",
                    "FEC on the 3G rung and a 360p15 default for 3G.",
                    "loss_bursts",
                    "3g",
                )],
            ),
            _ => ("", &[]),
        };
        let _ = writeln!(t, "notes = {notes:?}");
        for (issue, worked, rule, network) in issues {
            let nets: Vec<&str> = if network.is_empty() { Vec::new() } else { vec![*network] };
            let _ = write!(
                t,
                "\n[[reports.regions.{}.known_issues]]\nissue = {issue:?}\nworked = {worked:?}\nrule = \"{rule}\"\nnetwork_types = {nets:?}\n",
                r.name
            );
        }
    }
    t
}
