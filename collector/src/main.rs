//! `stallwatch-collector`: thin CLI over the collector library.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use stallwatch_collector::{config, pki};

/// Exit code for a feature that is not built yet (sysexits EX_UNAVAILABLE).
const EXIT_NOT_BUILT: u8 = 69;
/// Exit code for input the operator must fix (sysexits EX_USAGE).
const EXIT_USAGE: u8 = 64;

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
    /// Run the collector: ingest, /metrics, fleet view, plans. [not built yet]
    Run(NotBuilt),
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
    /// Start a collector, a relay and agents on loopback and show live results. [not built yet]
    Demo(NotBuilt),
}

/// Arguments of a command that is not built yet; accepted and ignored.
#[derive(clap::Args)]
struct NotBuilt {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    args: Vec<String>,
}

fn main() -> ExitCode {
    let what = match Cli::parse().command {
        Command::Ca(args) => {
            return match pki::main(args) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(EXIT_USAGE)
                }
            };
        }
        Command::Validate(args) => return config::validate_main(args),
        Command::Run(_) => "run",
        Command::Demo(_) => "demo",
    };
    eprintln!("stallwatch-collector {what}: not built yet (tracked in issue 4)");
    ExitCode::from(EXIT_NOT_BUILT)
}
