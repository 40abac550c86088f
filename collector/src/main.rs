//! `stallwatch-collector`: thin CLI over the collector library.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use stallwatch_collector::{config, demo, pki, reports, server};

#[global_allocator]
static ALLOCATOR: stallwatch_collector::Allocator = stallwatch_collector::Allocator;

/// Exit code for input the operator must fix (sysexits EX_USAGE).
const EXIT_USAGE: u8 = 64;
/// Exit code for an input file that cannot be read (sysexits EX_NOINPUT).
const EXIT_NO_INPUT: u8 = 66;

#[derive(Parser)]
#[command(
    name = "stallwatch-collector",
    version,
    about = "Takes stallwatch agents' reports over mutual TLS, exports Prometheus metrics, \
             raises P0/P1/P2 alerts and writes regional reports."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the collector: agent ingest and plans (HTTPS, mutual TLS), /metrics and the web UI.
    ///
    /// Reload the config without a restart with SIGHUP (`systemctl reload`) or
    /// `curl -X POST -H 'X-Stallwatch: 1' http://METRICS_ADDR/-/reload`. Logs go to stderr; set RUST_LOG
    /// (e.g. `RUST_LOG=debug`) for more. Exits 64 on an invalid config, 66 if it is unreadable,
    /// 1 on other start-up failures (a port in use, the store).
    Run(RunArgs),
    /// Check a collector configuration file; any error names the file, line, column and field.
    ///
    /// Exits 0 if valid, 64 if not, 66 if unreadable. `--plan-for` prints the plan an agent
    /// would get.
    Validate(config::ValidateArgs),
    /// Fleet PKI: init a CA, issue agent bundles and collector certificates, revoke agents.
    ///
    /// An agent's identity (name, region, network type) lives in its certificate; the collector
    /// never takes it from a report.
    Ca(pki::CaArgs),
    /// Start a collector, a relay and three agents (two regions, emulated 4G, 3G and Wi-Fi) on
    /// loopback with real certificates, and show a live line per cohort.
    ///
    /// Prints the /metrics and fleet-page URLs. Stops on Ctrl-C or after --duration, leaving
    /// no process behind. Example: `stallwatch-collector demo --duration 60s`.
    Demo(demo::DemoArgs),
    /// Write a regional report (HTML, Markdown, CSV or JSON; English or Chinese) from the
    /// history store: KPIs against the SLO and the previous period, peak hours in local time,
    /// incidents and recommendations.
    ///
    /// Example: `stallwatch-collector report --region sea --period 7d --out sea.html`.
    Report(reports::cli::ReportArgs),
    /// Generate a deterministic history (store, incidents and a config) for trying reports.
    ///
    /// Four regions with local evening peaks, a few incidents and one region that degrades.
    /// Example: `stallwatch-collector seed-history --dir /tmp/history --days 14`.
    SeedHistory(reports::cli::SeedArgs),
}

/// `run` arguments.
#[derive(clap::Args)]
struct RunArgs {
    /// The collector configuration file (see deploy/collector.example.toml; check it with
    /// `stallwatch-collector validate FILE --check-files`).
    #[arg(long, short, value_name = "FILE", env = "STALLWATCH_COLLECTOR_CONFIG")]
    config: std::path::PathBuf,
}

fn main() -> ExitCode {
    stallwatch_collector::keep_off_huge_pages();
    match Cli::parse().command {
        Command::Ca(args) => match pki::main(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(EXIT_USAGE)
            }
        },
        Command::Validate(args) => config::validate_main(args),
        Command::Run(args) => run(&args),
        Command::Demo(args) => demo_main(args),
        Command::Report(args) => reports::cli::report_main(args),
        Command::SeedHistory(args) => reports::cli::seed_main(args),
    }
}

fn run(args: &RunArgs) -> ExitCode {
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(server::run(&args.config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(match e {
                server::StartError::Unreadable(_) => EXIT_NO_INPUT,
                server::StartError::Invalid(_) => EXIT_USAGE,
                server::StartError::Failed(_) => 1,
            })
        }
    }
}

fn demo_main(args: demo::DemoArgs) -> ExitCode {
    init_logging_default("warn");
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(demo::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    init_logging_default("info");
}

fn init_logging_default(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}
