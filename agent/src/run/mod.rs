//! `stallwatch-agent run`: fetch the plan from the collector, run its probes (and relay),
//! report every interval through the disk spool; and `check-config`.
//!
//! - [`config`]: the TOML file, flags and environment, and their errors (`FILE:LINE:COL`).
//! - [`bundle`]: the agent's certificate, key and fleet CA; its name from the certificate.
//! - [`client`]: the collector API over HTTPS with mutual TLS (docs/protocol.md).
//! - [`plan_poll`]: plan long-polling with backoff; the last good plan on disk.
//! - [`schedule`]: pure schedule math (epoch-aligned starts, report ticks, plan diffs).
//! - [`probes`], [`attempt`]: the running probes and one attempt each.
//! - [`reporter`]: interval reports into the spool and out to the collector.

pub mod attempt;
pub mod bundle;
pub mod client;
pub mod config;
pub mod plan_poll;
pub mod probes;
pub mod reporter;
pub mod schedule;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{info, warn};

use crate::clock::Clock;
use crate::report::{ReportBuilder, Spool};
use crate::tls::{COLLECTOR_CRL_FILE, Identity, Trust, load_crls};
use attempt::AttemptContext;
use bundle::load_bundle;
use client::CollectorClient;
use config::{EXIT_CONFIG, Overrides, Settings};
use plan_poll::{Health, load_saved_plan, poll_plans};
use probes::Runner;
use reporter::Reporter;

/// `stallwatch-agent run` flags. Each overrides the same setting in the config file.
#[derive(clap::Args, Debug, Clone)]
#[command(after_help = "Examples:\n  \
    stallwatch-agent run --collector https://collector.example:8443 --bundle /etc/stallwatch/agent.pem\n  \
    stallwatch-agent run --config /etc/stallwatch/agent.toml\n\n\
    The agent long-polls GET /api/v1/plan, runs the plan's probes at their scheduled times\n\
    (and its relay, if the plan has one), and every report interval spools a report and sends\n\
    the spool oldest first to POST /api/v1/reports. While the collector is down reports stay\n\
    in STATE_DIR/spool and are sent in order when it returns. SIGINT/SIGTERM stop the probes,\n\
    spool a last report, try to send it for 2 s, and exit 0.")]
pub struct RunArgs {
    /// The collector's ingest URL, https://HOST:PORT; its certificate must chain to the
    /// bundle's CA and name HOST.
    #[arg(long, env = "STALLWATCH_COLLECTOR", value_name = "URL")]
    pub collector: Option<String>,
    /// The agent's bundle: the PEM file `stallwatch-collector ca issue-agent` wrote (the
    /// agent's certificate, its key and the fleet CA). The agent's name comes from it.
    #[arg(long, env = "STALLWATCH_BUNDLE", value_name = "FILE")]
    pub bundle: Option<PathBuf>,
    /// Where the report spool, the report sequence number and the last plan are kept
    /// [default: /var/lib/stallwatch].
    #[arg(long, env = "STALLWATCH_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// A TOML config file (see `check-config --help`); flags and environment win over it.
    #[arg(long, env = "STALLWATCH_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// `stallwatch-agent check-config` arguments.
#[derive(clap::Args, Debug, Clone)]
#[command(after_help = "A config file (every key optional; flags of `run` override them):\n\n  \
    collector = \"https://collector.example:8443\"\n  \
    bundle = \"/etc/stallwatch/agent.pem\"\n  \
    state_dir = \"/var/lib/stallwatch\"      # default\n  \
    plan_wait = \"30s\"                       # plan long-poll, at most 60s\n  \
    log_level = \"info\"                      # when RUST_LOG is not set\n  \
    # relay_cert = \"/etc/stallwatch/relay.pem\"   # instead of the bundle's (--relay-host)\n  \
    # relay_key = \"/etc/stallwatch/relay.key\"\n  \
    [spool]\n  \
    max_bytes = 536870912                   # 512 MiB\n  \
    max_reports = 8640                      # a day at 10 s\n\n\
    Exit codes: 0 valid, 64 invalid (FILE:LINE:COLUMN: FIELD: problem), 66 unreadable.")]
pub struct CheckConfigArgs {
    /// The config file to check.
    pub file: PathBuf,
}

fn overrides(args: &RunArgs) -> Overrides {
    Overrides {
        collector: args.collector.clone(),
        bundle: args.bundle.clone(),
        state_dir: args.state_dir.clone(),
    }
}

/// `check-config FILE`: prints the settings in force, or the first error.
pub fn check_config(args: &CheckConfigArgs) -> ExitCode {
    match config::load(Some(&args.file), &Overrides::default()) {
        Ok(settings) => {
            println!("{}: ok\n{settings}", args.file.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// `run`: loads the settings (exit 64/66 on a bad one), starts logging and the runtime, and
/// runs until SIGINT or SIGTERM.
pub fn main(args: RunArgs) -> ExitCode {
    let settings = match config::load(args.config.as_deref(), &overrides(&args)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(e.exit_code());
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&settings.log_level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(settings, shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            if e.downcast_ref::<bundle::BundleError>().is_some() {
                ExitCode::from(EXIT_CONFIG)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    info!("shutting down");
}

/// Runs the agent with `settings` until `shutdown` resolves, then stops in order: plan
/// polling, probes (their last windows folded), a last report spooled and one short drain.
pub async fn run(settings: Settings, shutdown: impl Future<Output = ()>) -> Result<()> {
    let bundle = load_bundle(&settings.bundle)?;
    let agent = bundle.identity.name.clone();
    let crl_path = settings.state_dir.join(COLLECTOR_CRL_FILE);
    let crls = load_crls(&crl_path)?;
    if !crls.is_empty() {
        info!(path = %crl_path.display(), "refusing collector certificates the fleet's CRL revokes");
    }
    let client = Arc::new(CollectorClient::new(settings.collector.clone(), &bundle, crls)?);
    let clock = Clock::global();
    std::fs::create_dir_all(&settings.state_dir).with_context(|| {
        format!("creating the state directory {}", settings.state_dir.display())
    })?;
    let spool_dir = settings.spool_dir();
    let builder = ReportBuilder::open(&spool_dir, clock.unix_ms())?;
    let mut spool = Spool::open(&spool_dir, settings.spool_max_bytes, settings.spool_max_reports)?;
    if let Some(archive) = &settings.spool_archive_dir {
        spool = spool.with_archive(archive)?;
    }
    let relay_identity = match (&settings.relay_cert, &settings.relay_key) {
        (Some(cert), Some(key)) => Identity::from_pem_files(cert, key)?,
        // The agent's own certificate: issued with `ca issue-agent --relay-host HOST`, it also
        // serves TLS for HOST, so other agents' probes verify this relay against the fleet CA.
        _ => Identity { certs: bundle.cert_chain.clone(), key: bundle.key.clone_key() },
    };
    info!(
        agent = %agent,
        region = %bundle.identity.region,
        network_type = %bundle.identity.network_type,
        collector = %settings.collector,
        spooled = spool.len(),
        "stallwatch agent started"
    );

    let health = Health::new(settings.collector.to_string());
    let saved = load_saved_plan(&settings.plan_file());
    if let Some(p) = &saved {
        info!(revision = p.revision, "using the saved plan until the collector answers");
    }
    let (plans_tx, mut plans_rx) = watch::channel(saved);
    let (stop_tx, stop_rx) = watch::channel(false);
    let poller = tokio::spawn(poll_plans(
        client.clone(),
        settings.plan_wait,
        settings.plan_file(),
        health.clone(),
        plans_tx,
        stop_rx,
    ));

    let (folds_tx, folds_rx) = mpsc::unbounded_channel();
    let (finish_tx, finish_rx) = oneshot::channel();
    let reporter = Reporter::new(builder, spool, client.clone(), agent.clone(), health.clone());
    let reporter = tokio::spawn(reporter.run(folds_rx, plans_rx.clone(), finish_rx));

    let ctx = AttemptContext {
        agent,
        // Relays run from plans require the agent's certificate (docs/security.md).
        trust: Trust::Fleet {
            cas: vec![bundle.ca.clone()],
            client: Identity { certs: bundle.cert_chain.clone(), key: bundle.key.clone_key() },
        },
        folds: folds_tx,
        started: crate::clock::Clock::global().now(),
    };
    let mut runner = Runner::new(ctx, relay_identity, vec![bundle.ca.clone()]);
    let initial = plans_rx.borrow_and_update().clone();
    if let Some(plan) = initial {
        runner.apply(&plan).await;
    }
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            changed = plans_rx.changed() => {
                if changed.is_err() {
                    break;
                }
                let plan = plans_rx.borrow_and_update().clone();
                if let Some(plan) = plan {
                    runner.apply(&plan).await;
                }
            }
            _ = &mut shutdown => break,
        }
    }
    let _ = stop_tx.send(true);
    runner.shutdown().await;
    let _ = finish_tx.send(());
    let left = reporter.await.context("the reporter failed")?;
    if tokio::time::timeout(std::time::Duration::from_secs(1), poller).await.is_err() {
        warn!("plan poller did not stop in time");
    }
    info!(
        spooled = left.spooled,
        sent = left.stats.sent,
        renumbered = left.stats.renumbered,
        set_aside = left.stats.set_aside,
        "stopped"
    );
    Ok(())
}
