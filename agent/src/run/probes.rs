//! Runs the plan: one task per probe that starts attempts on the probe's schedule, and the
//! in-process relay. A new plan leaves unchanged probes untouched, cancels removed or changed
//! ones and starts new ones; the relay is started, stopped or restarted as the plan says.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use rustls::pki_types::CertificateDer;
use stallwatch_measure::Time;
use stallwatch_proto::plan::{Plan, ProbePlan, RelayPlan};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tracing::{info, warn};

use super::attempt::{AttemptContext, run_attempt};
use super::schedule::{RelayChange, diff_plans, next_start};
use crate::clock::Clock;
use crate::relay::{Limits, Relay, RelayConfig};
use crate::tls::{Identity, RevokedClients};

/// How long shutdown waits for attempts to stop (publishers say goodbye) before aborting.
const STOP_WAIT: Duration = Duration::from_secs(4);

struct Running {
    plan: ProbePlan,
    cancel: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// The probes and relay of the plan in force.
pub struct Runner {
    ctx: AttemptContext,
    relay_identity: Identity,
    /// The fleet CA a plan's relay requires its QUIC clients' certificates to chain to.
    fleet_ca: Vec<CertificateDer<'static>>,
    /// The plan's revoked agent certificates, shared with the running relay's TLS verifier.
    revoked_clients: RevokedClients,
    probes: BTreeMap<String, Running>,
    /// Probes cancelled by a plan change, still finishing.
    stopping: Vec<JoinHandle<()>>,
    relay: Option<(RelayPlan, Relay)>,
}

impl Runner {
    /// A runner with nothing running yet.
    pub fn new(
        ctx: AttemptContext,
        relay_identity: Identity,
        fleet_ca: Vec<CertificateDer<'static>>,
    ) -> Self {
        Runner {
            ctx,
            relay_identity,
            fleet_ca,
            revoked_clients: RevokedClients::default(),
            probes: BTreeMap::new(),
            stopping: Vec::new(),
            relay: None,
        }
    }

    /// Names of the probes running now.
    pub fn probe_names(&self) -> Vec<String> {
        self.probes.keys().cloned().collect()
    }

    /// Applies a plan.
    pub async fn apply(&mut self, plan: &Plan) {
        let running: BTreeMap<String, ProbePlan> =
            self.probes.iter().map(|(k, r)| (k.clone(), r.plan.clone())).collect();
        let diff = diff_plans(&running, self.relay.as_ref().map(|(p, _)| p), plan);
        for name in &diff.stop {
            if let Some(r) = self.probes.remove(name) {
                let _ = r.cancel.send(true);
                self.stopping.push(r.task);
            }
        }
        self.stopping.retain(|t| !t.is_finished());
        // Before a (re)start, and for a relay kept running: its next handshake uses this list.
        let revoked = plan.relay.as_ref().map(|r| r.revoked_serials.as_slice()).unwrap_or_default();
        if revoked.len() != self.revoked_clients.len() {
            info!(serials = revoked.len(), "relay: refusing revoked agent certificates");
        }
        self.revoked_clients.replace(revoked);
        match diff.relay {
            RelayChange::Keep => {}
            RelayChange::Stop => self.stop_relay().await,
            RelayChange::Start(r) | RelayChange::Restart(r) => {
                self.stop_relay().await;
                match self.start_relay(&r).await {
                    Ok(relay) => {
                        info!(quic = %relay.quic_addr(), udp = %relay.udp_addr(), gop_cache = r.gop_cache, "relay started");
                        self.relay = Some((r, relay));
                    }
                    Err(e) => {
                        warn!(listen = %r.listen, error = %format!("{e:#}"), "cannot start the relay")
                    }
                }
            }
        }
        for p in diff.start {
            let (cancel, cancel_rx) = watch::channel(false);
            let task = tokio::spawn(probe_loop(p.clone(), self.ctx.clone(), cancel_rx));
            self.probes.insert(p.name.clone(), Running { plan: p, cancel, task });
        }
        info!(
            revision = plan.revision,
            probes = plan.probes.len(),
            kept = diff.keep.len(),
            relay = if plan.relay.is_some() { "yes" } else { "no" },
            "plan applied"
        );
    }

    async fn start_relay(&self, plan: &RelayPlan) -> Result<Relay> {
        let listen = parse_listen(&plan.listen)?;
        let udp_port = listen
            .port()
            .checked_add(1)
            .ok_or_else(|| anyhow!("relay port {} has no next port for UDP", listen.port()))?;
        Relay::start(RelayConfig {
            listen,
            udp_listen: SocketAddr::new(listen.ip(), udp_port),
            gop_cache: plan.gop_cache,
            identity: self.relay_identity.clone(),
            limits: Limits::default(),
            // Only the fleet's agents may publish to or view a relay a plan runs.
            fleet_ca: Some(self.fleet_ca.clone()),
            revoked_clients: self.revoked_clients.clone(),
            // Plain UDP clients must prove the credential the collector derived for it.
            udp_credential: plan.udp_credential.map(|c| c.0),
        })
        .await
    }

    async fn stop_relay(&mut self) {
        if let Some((_, relay)) = self.relay.take() {
            relay.shutdown().await;
        }
    }

    /// Cancels every probe, waits (boundedly) for their attempts to fold their last results,
    /// and stops the relay.
    pub async fn shutdown(mut self) {
        let mut tasks = std::mem::take(&mut self.stopping);
        for (_, r) in std::mem::take(&mut self.probes) {
            let _ = r.cancel.send(true);
            tasks.push(r.task);
        }
        for mut task in tasks {
            if tokio::time::timeout(STOP_WAIT, &mut task).await.is_err() {
                warn!("a probe did not stop in time; aborted");
                task.abort();
            }
        }
        self.stop_relay().await;
    }
}

/// `HOST:PORT` or `:PORT` (all addresses) as a socket address.
pub fn parse_listen(listen: &str) -> Result<SocketAddr> {
    let full =
        if listen.starts_with(':') { format!("0.0.0.0{listen}") } else { listen.to_string() };
    full.parse().with_context(|| format!("relay listen address {listen:?} is not IP:PORT"))
}

/// Starts an attempt at every scheduled time until cancelled; then cancels the attempts
/// running and waits for them.
async fn probe_loop(plan: ProbePlan, ctx: AttemptContext, cancel: watch::Receiver<bool>) {
    let clock = Clock::global();
    let mut attempts = JoinSet::new();
    let mut after = 0u64;
    let mut stop = Some(cancel.clone());
    loop {
        let now = clock.now().as_nanos().max(after);
        let start = next_start(now, plan.every, plan.start_offset);
        let at = clock.instant_at(Time::from_nanos(start));
        tokio::select! {
            _ = tokio::time::sleep_until(at.into()) => {
                after = start + 1;
                let (plan, ctx, cancel) = (plan.clone(), ctx.clone(), cancel.clone());
                attempts.spawn(async move {
                    run_attempt(&plan, &ctx, Time::from_nanos(start), cancel).await;
                });
            }
            _ = crate::transport::cancelled(&mut stop) => break,
        }
        while attempts.try_join_next().is_some() {}
    }
    while attempts.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_parse() {
        assert_eq!(parse_listen(":4433").unwrap(), "0.0.0.0:4433".parse().unwrap());
        assert_eq!(parse_listen("127.0.0.1:1").unwrap(), "127.0.0.1:1".parse().unwrap());
        assert!(parse_listen("relay:1").is_err());
    }
}
