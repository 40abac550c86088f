//! `stallwatch-collector report` and `stallwatch-collector seed-history`.

use std::io::Write as _;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use stallwatch_proto::duration::parse_duration;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::i18n::Lang;
use super::incidents::source_for;
use super::render::{Format, render};
use super::report::{Report, ReportError, ReportRequest, build};
use super::seed::{Progress, Scenario, SeedOptions, seed};
use super::zone::Zone;
use crate::clock;
use crate::config::{self, Config, EXIT_BAD_CONFIG, EXIT_UNREADABLE};
use crate::store::{HOUR_MS, SqliteStore};

/// The period of a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeriodSpec {
    /// This long, ending at the last whole hour.
    Last(Duration),
    /// From one instant to another: RFC 3339, or a date meaning local midnight.
    Between(String, String),
}

/// Reads `2026-11-20T00:00:00Z` (RFC 3339) or `2026-11-20` (midnight in `zone`) as unix ms.
pub fn parse_instant(text: &str, zone: &Zone) -> Result<u64, String> {
    let bad = || {
        format!(
            "{text:?} is not a time: write RFC 3339 (2026-11-20T00:00:00Z, \
             2026-11-20T08:00:00+08:00) or a date (2026-11-20, midnight in the region's time zone)"
        )
    };
    if let [y, m, d] = text.split('-').collect::<Vec<_>>()[..]
        && (y.len(), m.len(), d.len()) == (4, 2, 2)
    {
        let (y, m, d) = (
            y.parse().map_err(|_| bad())?,
            m.parse::<u8>().map_err(|_| bad())?,
            d.parse().map_err(|_| bad())?,
        );
        let month = time::Month::try_from(m).map_err(|_| bad())?;
        let date = time::Date::from_calendar_date(y, month, d).map_err(|_| bad())?;
        return Ok(zone.midnight(date));
    }
    let t = OffsetDateTime::parse(text, &Rfc3339).map_err(|_| bad())?;
    u64::try_from(t.unix_timestamp_nanos() / 1_000_000).map_err(|_| bad())
}

/// The period in unix ms for `spec` at `now_unix_ms`.
pub fn resolve_period(
    spec: &PeriodSpec,
    zone: &Zone,
    now_unix_ms: u64,
) -> Result<Range<u64>, String> {
    match spec {
        PeriodSpec::Last(length) => {
            let length = u64::try_from(length.as_millis()).unwrap_or(u64::MAX);
            if length < HOUR_MS {
                return Err("the period must be at least 1h".into());
            }
            let end = now_unix_ms - now_unix_ms % HOUR_MS;
            Ok(end.saturating_sub(length - length % HOUR_MS)..end)
        }
        PeriodSpec::Between(from, to) => {
            let (from, to) = (parse_instant(from, zone)?, parse_instant(to, zone)?);
            if to <= from {
                return Err("--to must be after --from".into());
            }
            Ok(from..to)
        }
    }
}

/// Why a report from a configuration failed, with the exit code it deserves.
#[derive(Debug)]
pub struct Failure {
    /// What to print.
    pub message: String,
    /// 64 for bad input, 66 for an unreadable file, 1 otherwise.
    pub exit: u8,
    /// Whether the request named something that does not exist (HTTP 404) or was malformed
    /// (400) rather than the collector failing (500).
    pub kind: FailureKind,
}

/// Kinds of [`Failure`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Unknown region.
    NotFound,
    /// Bad period or arguments.
    BadRequest,
    /// The collector's side.
    Internal,
}

impl Failure {
    fn new(kind: FailureKind, exit: u8, message: impl Into<String>) -> Failure {
        Failure { message: message.into(), exit, kind }
    }
}

/// Builds the report for `region` from what `config` names: its history store (which must
/// exist; it is opened as a reader beside any running collector) and incidents.
pub fn report_from_config(
    config: &Config,
    region: &str,
    period: &PeriodSpec,
    lang: Lang,
    now_unix_ms: u64,
) -> Result<Report, Failure> {
    let settings = config.reports.regions.get(region);
    let zone = match settings {
        Some(s) => s.zone().map_err(|e| {
            Failure::new(
                FailureKind::Internal,
                EXIT_BAD_CONFIG,
                config
                    .problem(&format!("reports.regions.{region}.time_zone"), e.to_string())
                    .to_string(),
            )
        })?,
        None => Zone::utc(),
    };
    let range = resolve_period(period, &zone, now_unix_ms)
        .map_err(|e| Failure::new(FailureKind::BadRequest, EXIT_BAD_CONFIG, e))?;
    let path = &config.storage.path;
    if !path.exists() {
        return Err(Failure::new(
            FailureKind::Internal,
            EXIT_UNREADABLE,
            config
                .problem("storage.path", format!("{}: no history store here", path.display()))
                .to_string(),
        ));
    }
    let store = SqliteStore::open(path).map_err(|e| {
        Failure::new(
            FailureKind::Internal,
            1,
            config.problem("storage.path", format!("cannot open the store: {e}")).to_string(),
        )
    })?;
    let incidents = source_for(config);
    let request = ReportRequest { region: region.to_owned(), range, lang };
    build(&store, config, incidents.as_deref(), &request, now_unix_ms).map_err(|e| {
        let kind = match e {
            ReportError::UnknownRegion { .. } => FailureKind::NotFound,
            ReportError::EmptyPeriod => FailureKind::BadRequest,
            _ => FailureKind::Internal,
        };
        let exit = if kind == FailureKind::Internal { 1 } else { EXIT_BAD_CONFIG };
        Failure::new(kind, exit, e.to_string())
    })
}

/// `report` flags.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    stallwatch-collector report --region sea --period 7d --format html --out sea.html\n  \
    stallwatch-collector report --region sea --from 2026-11-16 --to 2026-11-23 --format md --lang zh --out -\n\n\
    Exit status: 0 written, 64 bad arguments or configuration, 66 unreadable configuration or no \
    history store, 1 other failures.")]
pub struct ReportArgs {
    /// Region to report on (one of the configuration's labels.regions).
    #[arg(long, env = "STALLWATCH_REPORT_REGION")]
    pub region: String,
    /// Length of the period, ending at the last whole hour (e.g. 7d, 24h) [default: 7d].
    #[arg(long, value_parser = parse_duration, conflicts_with_all = ["from", "to"], env = "STALLWATCH_REPORT_PERIOD")]
    pub period: Option<Duration>,
    /// Start of the period: RFC 3339, or a date (midnight in the region's time zone).
    #[arg(long, requires = "to", env = "STALLWATCH_REPORT_FROM")]
    pub from: Option<String>,
    /// End of the period (exclusive), as --from.
    #[arg(long, requires = "from", env = "STALLWATCH_REPORT_TO")]
    pub to: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "html", env = "STALLWATCH_REPORT_FORMAT")]
    pub format: Format,
    /// Language of the texts.
    #[arg(long, value_enum, default_value = "en", env = "STALLWATCH_REPORT_LANG")]
    pub lang: Lang,
    /// Output file (written whole or not at all); `-` for standard output.
    #[arg(long, short, value_name = "FILE", env = "STALLWATCH_REPORT_OUT")]
    pub out: PathBuf,
    /// The collector configuration (its history store, SLOs and region knowledge).
    #[arg(
        long,
        short,
        value_name = "FILE",
        default_value = "/etc/stallwatch/collector.toml",
        env = "STALLWATCH_COLLECTOR_CONFIG"
    )]
    pub config: PathBuf,
}

/// Runs `report`.
pub fn report_main(args: ReportArgs) -> ExitCode {
    let config = match config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(e.exit_code());
        }
    };
    let period = match (&args.from, &args.to, args.period) {
        (Some(from), Some(to), _) => PeriodSpec::Between(from.clone(), to.clone()),
        (_, _, Some(d)) => PeriodSpec::Last(d),
        _ => PeriodSpec::Last(Duration::from_secs(7 * 86_400)),
    };
    let report =
        match report_from_config(&config, &args.region, &period, args.lang, clock::unix_ms()) {
            Ok(r) => r,
            Err(f) => {
                eprintln!("error: {}", f.message);
                return ExitCode::from(f.exit);
            }
        };
    let text = render(&report, args.format);
    if let Err(e) = write_whole(&args.out, text.as_bytes()) {
        eprintln!("error: {}: {e}", args.out.display());
        return ExitCode::FAILURE;
    }
    if args.out != Path::new("-") {
        eprintln!(
            "wrote {} ({} KiB): {}, {} - {} ({}), {} recommendations, {} incidents",
            args.out.display(),
            text.len().div_ceil(1024),
            report.region,
            report.period.from_local,
            report.period.to_local,
            report.time_zone,
            report.recommendations.len(),
            report.incidents.items.len(),
        );
    }
    ExitCode::SUCCESS
}

/// Writes `bytes` to `path` through a temporary file renamed into place, so a reader never
/// sees half a report; `-` writes to standard output.
fn write_whole(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if path == Path::new("-") {
        let mut out = std::io::stdout().lock();
        out.write_all(bytes)?;
        return out.flush();
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// `seed-history` flags.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Writes DIR/ca/ (the fleet CA that issues the agents' certificates), DIR/history.db,\n\
    DIR/incidents.json and DIR/collector.toml; then:\n  \
    stallwatch-collector report --config DIR/collector.toml --region sea --period 7d --out sea.html\n\n\
    The same seed, days, interval and end give the same history."
)]
pub struct SeedArgs {
    /// Directory to write into (created; must not hold a history.db or ca/ yet).
    #[arg(long, value_name = "DIR", env = "STALLWATCH_SEED_DIR")]
    pub dir: PathBuf,
    /// Days of history.
    #[arg(long, default_value_t = 14, env = "STALLWATCH_SEED_DAYS")]
    pub days: u64,
    /// Random seed.
    #[arg(long, default_value_t = 1, env = "STALLWATCH_SEED")]
    pub seed: u64,
    /// End of the history: RFC 3339 on a whole hour [default: the last whole hour].
    #[arg(long, env = "STALLWATCH_SEED_END")]
    pub end: Option<String>,
    /// How often each agent probes and reports (whole minutes, at least 1m).
    #[arg(long, default_value = "5m", value_parser = parse_duration, env = "STALLWATCH_SEED_INTERVAL")]
    pub interval: Duration,
    /// Regions to generate, comma-separated (sea, latam, eu, me) [default: all].
    #[arg(long, value_delimiter = ',', env = "STALLWATCH_SEED_REGIONS")]
    pub regions: Vec<String>,
}

/// Runs `seed-history`.
pub fn seed_main(args: SeedArgs) -> ExitCode {
    let end = match &args.end {
        None => {
            let now = clock::unix_ms();
            now - now % HOUR_MS
        }
        Some(text) => match parse_instant(text, &Zone::utc()) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: --end: {e}");
                return ExitCode::from(EXIT_BAD_CONFIG);
            }
        },
    };
    let options = SeedOptions {
        scenario: Scenario {
            seed: args.seed,
            end_ms: end,
            days: args.days,
            interval_ms: u64::try_from(args.interval.as_millis()).unwrap_or(u64::MAX),
        },
        regions: args.regions.clone(),
    };
    let started = clock::monotonic();
    let result = seed(&args.dir, &options, |p: Progress| {
        eprintln!(
            "seed-history: day {}/{} written ({} reports, {:.0} s)",
            p.day,
            p.days,
            p.reports,
            crate::clock::since(started).as_secs_f64()
        );
    });
    match result {
        Ok(done) => {
            println!("config    {}", done.config.display());
            println!("ca        {}", done.ca.display());
            println!("store     {}", done.store.display());
            println!("incidents {}", done.incidents.display());
            println!("{} reports from {} days", done.reports, args.days);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(match e {
                super::seed::SeedError::Invalid(_) | super::seed::SeedError::Exists(_) => {
                    EXIT_BAD_CONFIG
                }
                _ => 1,
            })
        }
    }
}
