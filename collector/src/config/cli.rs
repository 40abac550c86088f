//! `stallwatch-collector validate FILE`: checks a configuration file and names the line and
//! field of every problem.

use std::path::PathBuf;
use std::process::ExitCode;

use stallwatch_proto::plan::encode_plan;

use super::{AgentSelector, Config, ConfigError, load};

/// `stallwatch-collector validate` flags.
#[derive(clap::Args, Debug, Clone)]
#[command(after_help = "Exit status: 0 valid, 64 invalid (one line per problem: \
    FILE:LINE:COLUMN: FIELD: message), 66 unreadable.\n\nExamples:\n  \
    stallwatch-collector validate /etc/stallwatch/collector.toml --check-files\n  \
    stallwatch-collector validate collector.toml --plan-for sg-fiber-1 --region sea \
    --network-type fiber")]
pub struct ValidateArgs {
    /// Collector configuration file (TOML).
    #[arg(value_name = "FILE", env = "STALLWATCH_COLLECTOR_CONFIG")]
    pub file: PathBuf,
    /// Also check that the TLS files are readable and the storage directory exists.
    #[arg(long, env = "STALLWATCH_CHECK_FILES")]
    pub check_files: bool,
    /// Print the plan (JSON) the agent NAME would be sent; needs --region and --network-type.
    #[arg(long, value_name = "NAME", requires_all = ["region", "network_type"])]
    pub plan_for: Option<String>,
    /// Region of the --plan-for agent.
    #[arg(long, requires = "plan_for")]
    pub region: Option<String>,
    /// Network type of the --plan-for agent.
    #[arg(long, requires = "plan_for")]
    pub network_type: Option<String>,
}

/// Runs `validate`: prints a summary (or the requested plan) on stdout and returns 0, or prints
/// the problems on stderr and returns 64 (invalid) or 66 (unreadable).
pub fn validate_main(args: ValidateArgs) -> ExitCode {
    match validate(&args) {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// What `validate` prints on success.
fn validate(args: &ValidateArgs) -> Result<String, ConfigError> {
    let config = load(&args.file)?;
    if args.check_files {
        config.check_files()?;
    }
    if let (Some(name), Some(region), Some(network_type)) =
        (&args.plan_for, &args.region, &args.network_type)
    {
        let agent = AgentSelector {
            name: name.clone(),
            region: region.clone(),
            network_type: network_type.clone(),
        };
        warn_outside_allow_lists(&config, &agent);
        let plan = config.plan_for(&agent, config.plans_revision());
        let mut json = String::from_utf8(encode_plan(&plan)).unwrap_or_default();
        json.push('\n');
        return Ok(json);
    }
    Ok(summary(&config, args))
}

/// The one-line summary of a valid file.
fn summary(config: &Config, args: &ValidateArgs) -> String {
    let l = &config.labels;
    let files = if args.check_files { "; TLS files and storage directory present" } else { "" };
    format!(
        "ok: {}: {} plans ({} probes), {} relays; allow-lists: {} regions, {} network types, \
         {} targets (at most {} cohorts); plans revision {}{files}\n",
        args.file.display(),
        config.plans.len(),
        config.probe_count(),
        config.relays.len(),
        l.regions.len(),
        l.network_types.len(),
        l.targets.len(),
        config.max_cohorts(),
        config.plans_revision(),
    )
}

fn warn_outside_allow_lists(config: &Config, agent: &AgentSelector) {
    let l = &config.labels;
    if !l.allows_region(&agent.region) {
        eprintln!(
            "warning: region {:?} is not in labels.regions: its reports would be refused",
            agent.region
        );
    }
    if !l.allows_network_type(&agent.network_type) {
        eprintln!(
            "warning: network type {:?} is not in labels.network_types: its reports would be refused",
            agent.network_type
        );
    }
}
