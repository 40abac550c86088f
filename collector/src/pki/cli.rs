//! `stallwatch-collector ca ...`: the fleet PKI's command line.

use std::path::PathBuf;

use anyhow::{Context, Result};
use serde::Serialize;
use time::OffsetDateTime;

use super::files::rfc3339;
use super::{
    AgentIdentity, CA_CERT_FILE, CA_KEY_FILE, COLLECTOR_CRL_DAYS, COLLECTOR_VALIDITY_DAYS, Ca,
    ISSUED_FILE, NETWORK_TYPES, Validity, fingerprint, inspect_certificate,
};

/// Fleet PKI: create the CA, issue agent and collector certificates, revoke agents.
#[derive(clap::Args, Debug)]
pub struct CaArgs {
    /// Directory of the CA: ca.pem, ca.key (mode 0600), issued.json, revoked.json.
    #[arg(long, global = true, env = "STALLWATCH_CA_DIR", default_value = "./stallwatch-ca")]
    pub dir: PathBuf,
    #[command(subcommand)]
    pub command: CaCommand,
}

/// The `ca` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum CaCommand {
    /// Create the CA: an ECDSA P-256 key (ca.key) and a self-signed certificate valid for 10
    /// years (ca.pem), with empty issued.json and revoked.json.
    Init {
        /// Replace an existing CA. Every certificate it issued stops verifying.
        #[arg(long)]
        force: bool,
    },
    /// Issue an agent's client certificate and write its bundle: certificate, key and CA.
    IssueAgent(IssueAgentArgs),
    /// Issue the collector's TLS server certificate.
    IssueCollector(IssueCollectorArgs),
    /// Revoke an agent: collectors refuse every certificate with its name, and its serials.
    Revoke {
        /// The agent's name.
        name: String,
        /// Revoke the name even if this CA never issued it.
        #[arg(long)]
        force: bool,
    },
    /// Revoke a collector certificate (its key leaked, say): signs a new collector CRL
    /// (collectors.crl.pem) that agents given it refuse the certificate with.
    RevokeCollector {
        /// The certificate's serial number (hex), as `issue-collector` printed it.
        serial: String,
        /// Days the new CRL is valid (1-365); agents holding it refuse every collector
        /// after that until they get a newer one.
        #[arg(long, default_value_t = COLLECTOR_CRL_DAYS,
              value_parser = clap::value_parser!(u32).range(1..=365))]
        crl_days: u32,
    },
    /// Sign the collector CRL again (collectors.crl.pem), with a new next update; run it
    /// (from a timer) well within --crl-days and hand the file to agents.
    CollectorCrl {
        /// Days the CRL is valid (1-365).
        #[arg(long, default_value_t = COLLECTOR_CRL_DAYS,
              value_parser = clap::value_parser!(u32).range(1..=365))]
        crl_days: u32,
    },
    /// List issued agent certificates and whether they are valid, expired or revoked.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// `ca issue-agent`.
#[derive(clap::Args, Debug)]
pub struct IssueAgentArgs {
    /// The agent's name: 1-64 characters from a-z, 0-9 and -.
    pub name: String,
    /// The agent's region: 1-32 characters from a-z, 0-9 and -.
    #[arg(long)]
    pub region: String,
    /// The agent's network type.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(NETWORK_TYPES))]
    pub network_type: String,
    /// Days the certificate is valid (1-3650).
    #[arg(long, default_value_t = 365, env = "STALLWATCH_CA_DAYS",
          value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub days: u32,
    /// Bundle file to write (mode 0600) [default: NAME.bundle.pem].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Issue even if the name is revoked: lifts the name's revocation; its old certificates
    /// stay revoked.
    #[arg(long)]
    pub force: bool,
    /// This agent also runs a relay (a plan with `run_relay`) reached at HOST (a DNS name or IP
    /// address, as in the `[[relays]]` address); the certificate then also serves TLS for
    /// HOST, and probes verify the relay against the fleet CA. Repeat for several names.
    #[arg(long, value_name = "HOST")]
    pub relay_host: Vec<String>,
}

/// `ca issue-collector`.
#[derive(clap::Args, Debug)]
pub struct IssueCollectorArgs {
    /// DNS names and IP addresses agents use to reach the collector.
    #[arg(required = true, value_name = "HOST")]
    pub hosts: Vec<String>,
    /// Days the certificate is valid (1-3650). Short by default: a leaked collector key
    /// serves plans to every agent until its certificate expires or is revoked; renew it
    /// every two months or so (docs/security.md).
    #[arg(long, default_value_t = COLLECTOR_VALIDITY_DAYS, env = "STALLWATCH_COLLECTOR_DAYS",
          value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub days: u32,
    /// Certificate file to write [default: DIR/collector.pem].
    #[arg(long)]
    pub out_cert: Option<PathBuf>,
    /// Private key file to write, mode 0600 [default: DIR/collector.key].
    #[arg(long)]
    pub out_key: Option<PathBuf>,
}

/// Runs a `ca` command, printing what it did to stdout.
///
/// Exit behaviour: `Ok(())` means success (exit 0). Every error is something the operator
/// must fix (no CA or an existing one, a bad name, region, network type or host, an unknown
/// agent, an unreadable or malformed file, a file that cannot be written); the caller prints
/// it with `{:#}` and exits 64. Command-line syntax errors (including `--days 0` and an
/// unknown network type) are clap's, exit 2.
pub fn main(args: CaArgs) -> Result<()> {
    let dir = args.dir;
    let now = crate::clock::now_utc();
    match args.command {
        CaCommand::Init { force } => {
            let replaced = force && dir.join(CA_CERT_FILE).exists();
            let ca = Ca::init(&dir, now, force)?;
            let info = inspect_certificate(ca.certificate())?;
            let verb = if replaced { "replaced the" } else { "created a" };
            println!("{verb} fleet CA in {}", dir.display());
            println!("  certificate  {} ({})", dir.join(CA_CERT_FILE).display(), info.subject);
            println!("               valid until {}", rfc3339(info.not_after));
            println!("               sha256 {}", fingerprint(ca.certificate()));
            println!(
                "  private key  {} (mode 0600: whoever holds it can issue certificates; keep it offline)",
                dir.join(CA_KEY_FILE).display()
            );
            if replaced {
                println!("certificates issued by the old CA no longer verify; issue new ones");
            }
            println!(
                "next: stallwatch-collector ca issue-collector HOST...; \
                 stallwatch-collector ca issue-agent NAME --region R --network-type T"
            );
        }
        CaCommand::IssueAgent(a) => {
            let identity = AgentIdentity::new(&a.name, &a.region, &a.network_type)?;
            let validity = Validity::days_from(now, a.days)?;
            let ca = Ca::load(&dir)?;
            if a.force && ca.reinstate(&identity.name)? {
                println!(
                    "reinstated agent {}: its earlier certificates stay revoked",
                    identity.name
                );
            }
            let cred = ca.issue_agent_relay(&identity, validity, &a.relay_host)?;
            let out = a.out.unwrap_or_else(|| PathBuf::from(format!("{}.bundle.pem", a.name)));
            cred.write_bundle(&out).with_context(|| {
                format!("certificate {} was issued and recorded but not written", cred.serial)
            })?;
            println!(
                "issued agent {identity}: serial {}, valid until {}",
                cred.serial,
                rfc3339(cred.validity.not_after)
            );
            println!(
                "wrote {} (mode 0600: it holds the agent's key); on the agent run:",
                out.display()
            );
            println!("  stallwatch-agent run --bundle {} --collector URL", out.display());
        }
        CaCommand::IssueCollector(a) => {
            let validity = Validity::days_from(now, a.days)?;
            let ca = Ca::load(&dir)?;
            let cred = ca.issue_collector(&a.hosts, validity)?;
            let cert = a.out_cert.unwrap_or_else(|| dir.join("collector.pem"));
            let key = a.out_key.unwrap_or_else(|| dir.join("collector.key"));
            cred.write(&cert, &key)?;
            println!(
                "issued collector certificate for {}: serial {}, valid until {}",
                cred.hosts.join(", "),
                cred.serial,
                rfc3339(cred.validity.not_after)
            );
            println!("wrote {} and {} (mode 0600)", cert.display(), key.display());
            println!(
                "renew it before {} (issue a new one, install it, restart or SIGHUP the \
                 collector); if its key leaks: stallwatch-collector ca revoke-collector {}",
                rfc3339(cred.validity.not_after),
                cred.serial
            );
        }
        CaCommand::RevokeCollector { serial, crl_days } => {
            let ca = Ca::load(&dir)?;
            let (changed, crl) = ca.revoke_collector(&serial, now, crl_days)?;
            let verb = if changed { "revoked" } else { "was already revoked:" };
            println!("{verb} collector certificate {serial}");
            println!(
                "wrote {}: copy it to every agent's STATE_DIR/collectors.crl.pem; agents \
                 holding it refuse that certificate, and every collector once it expires \
                 ({crl_days} days): sign it again with `ca collector-crl` before then",
                crl.display()
            );
        }
        CaCommand::CollectorCrl { crl_days } => {
            let ca = Ca::load(&dir)?;
            let crl = ca.write_collector_crl(now, crl_days)?;
            println!(
                "wrote {} (valid {crl_days} days): copy it to every agent's \
                 STATE_DIR/collectors.crl.pem",
                crl.display()
            );
        }
        CaCommand::Revoke { name, force } => {
            let ca = Ca::load(&dir)?;
            let r = ca.revoke(&name, force, now)?;
            let what = match r.serials.len() {
                0 => "no certificates issued by this CA".to_string(),
                1 => format!("1 certificate: {}", r.serials[0]),
                n => format!("{n} certificates: {}", r.serials.join(", ")),
            };
            if r.changed {
                println!("revoked agent {name} ({what}) in {}", ca.revoked_path().display());
                println!("collectors that load this list refuse the agent's certificates");
            } else {
                println!("agent {name} was already revoked ({what})");
            }
        }
        CaCommand::List { json } => {
            let ca = Ca::load(&dir)?;
            list(&ca, now, json)?;
        }
    }
    Ok(())
}

#[derive(Serialize)]
struct ListRow {
    name: String,
    region: String,
    network_type: String,
    serial: String,
    not_after: String,
    status: &'static str,
}

fn list(ca: &Ca, now: OffsetDateTime, json: bool) -> Result<()> {
    let issued = ca.issued()?;
    let revoked = ca.revocations()?;
    let mut rows: Vec<ListRow> = issued
        .agents
        .iter()
        .map(|a| ListRow {
            name: a.name.clone(),
            region: a.region.clone(),
            network_type: a.network_type.clone(),
            serial: a.serial.clone(),
            not_after: rfc3339(a.not_after),
            status: if revoked.is_revoked(&a.name, &a.serial) {
                "revoked"
            } else if a.not_after <= now {
                "expired"
            } else {
                "valid"
            },
        })
        .collect();
    // Names revoked with --force that this CA never issued.
    for (name, _) in revoked.names() {
        if !issued.agents.iter().any(|a| a.name == name) {
            rows.push(ListRow {
                name: name.to_string(),
                region: "-".into(),
                network_type: "-".into(),
                serial: "-".into(),
                not_after: "-".into(),
                status: "revoked",
            });
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    if rows.is_empty() {
        println!("no agent certificates issued yet ({})", ca.dir().join(ISSUED_FILE).display());
        return Ok(());
    }
    let w = |f: fn(&ListRow) -> &str, title: &str| {
        rows.iter().map(|r| f(r).len()).chain([title.len()]).max().unwrap_or(0)
    };
    let (wn, wr, wt, ws) = (
        w(|r| &r.name, "NAME"),
        w(|r| &r.region, "REGION"),
        w(|r| &r.network_type, "NETWORK"),
        w(|r| &r.serial, "SERIAL"),
    );
    println!(
        "{:wn$}  {:wr$}  {:wt$}  {:ws$}  {:20}  STATUS",
        "NAME", "REGION", "NETWORK", "SERIAL", "NOT AFTER"
    );
    for r in &rows {
        println!(
            "{:wn$}  {:wr$}  {:wt$}  {:ws$}  {:20}  {}",
            r.name, r.region, r.network_type, r.serial, r.not_after, r.status
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        command: Top,
    }

    #[derive(clap::Subcommand)]
    enum Top {
        Ca(CaArgs),
    }

    fn parse(args: &[&str]) -> Result<CaArgs, clap::Error> {
        let argv = ["stallwatch-collector", "ca"].iter().chain(args);
        Cli::try_parse_from(argv).map(|c| match c.command {
            Top::Ca(a) => a,
        })
    }

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_parse_where_people_put_them() {
        let a = parse(&[
            "issue-agent",
            "edge-1",
            "--region",
            "eu",
            "--network-type",
            "5g",
            "--dir",
            "/x",
        ])
        .unwrap();
        assert_eq!(a.dir, PathBuf::from("/x"));
        let CaCommand::IssueAgent(i) = a.command else { panic!("not issue-agent") };
        assert_eq!((i.name.as_str(), i.days, i.out), ("edge-1", 365, None));
        let a = parse(&["--dir", "/y", "list"]).unwrap();
        assert_eq!(a.dir, PathBuf::from("/y"));
        let a = parse(&["issue-collector", "localhost", "127.0.0.1"]).unwrap();
        let CaCommand::IssueCollector(c) = a.command else { panic!("not issue-collector") };
        assert_eq!(c.hosts, ["localhost", "127.0.0.1"]);
    }

    #[test]
    fn bad_days_and_network_types_are_usage_errors() {
        let e =
            parse(&["issue-agent", "a", "--region", "r", "--network-type", "5g", "--days", "0"])
                .unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation);
        let e = parse(&["issue-agent", "a", "--region", "r", "--network-type", "lte"]).unwrap_err();
        assert!(e.to_string().contains("--network-type"), "{e}");
        assert!(parse(&["issue-collector"]).is_err());
    }
}
