//! [`VerifiedAgent`]: an agent identity that can only be had from a certificate verified
//! against the fleet CA, so nothing downstream (store, series) can be handed an identity read
//! from a report body or made up.

use std::sync::Arc;

use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::{CertificateDer, UnixTime};

use super::{AgentIdentity, Ca, PkiError, Validity, agent_identity};

/// An agent's identity (name, region, network type) from a client certificate that chains to
/// the fleet CA. No constructor takes the fields or bare certificate bytes: it comes from a
/// connection of the ingest listener whose TLS handshake verified the certificate
/// (`from_handshake`), or from [`VerifiedAgent::verify`], which runs the same verification.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VerifiedAgent {
    identity: AgentIdentity,
}

impl VerifiedAgent {
    /// Verifies `cert` as rustls verifies a client during the handshake (chain to `ca`,
    /// validity at `now`, client-auth usage), then reads its identity.
    pub fn verify(
        cert: &CertificateDer<'_>,
        ca: &CertificateDer<'_>,
        now: UnixTime,
    ) -> Result<Self, PkiError> {
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone().into_owned()).map_err(|e| PkiError::NotIssuedBy(e.to_string()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| PkiError::NotIssuedBy(e.to_string()))?;
        verifier
            .verify_client_cert(cert, &[], now)
            .map_err(|e| PkiError::NotIssuedBy(e.to_string()))?;
        Self::from_verified(cert)
    }

    /// Issues `identity` a one-day certificate from `ca` and verifies it at `now`, as the
    /// listener would on the agent's first connection: for tests and benchmarks that feed
    /// the store without TLS. Records the certificate in the CA's `issued.json`.
    pub fn issue_and_verify(
        ca: &Ca,
        identity: &AgentIdentity,
        now: time::OffsetDateTime,
    ) -> Result<Self, PkiError> {
        let credential = ca.issue_agent(identity, Validity::days_from(now, 1)?)?;
        let seconds = u64::try_from(now.unix_timestamp()).unwrap_or_default();
        Self::verify(
            &credential.cert,
            ca.certificate(),
            UnixTime::since_unix_epoch(std::time::Duration::from_secs(seconds)),
        )
    }

    /// The identity in the client certificate of a TLS connection whose handshake is done.
    /// rustls reports a peer certificate only once its client verifier accepted it, and the
    /// ingest listener's verifier requires one issued by the fleet CA. It takes the
    /// connection, not certificate bytes, so no caller can pass a certificate nobody verified.
    pub(crate) fn from_handshake(conn: &rustls::ServerConnection) -> Result<Self, PkiError> {
        let cert = conn.peer_certificates().and_then(|chain| chain.first()).ok_or_else(|| {
            PkiError::NotAgentCertificate("the connection presented no client certificate".into())
        })?;
        Self::from_verified(cert)
    }

    /// The identity in `cert`, which the caller has verified.
    fn from_verified(cert: &[u8]) -> Result<Self, PkiError> {
        Ok(VerifiedAgent { identity: agent_identity(cert)? })
    }

    /// Agent name.
    pub fn name(&self) -> &str {
        &self.identity.name
    }

    /// Region.
    pub fn region(&self) -> &str {
        &self.identity.region
    }

    /// Network type.
    pub fn network_type(&self) -> &str {
        &self.identity.network_type
    }

    /// The whole identity.
    pub fn identity(&self) -> &AgentIdentity {
        &self.identity
    }
}

impl std::fmt::Display for VerifiedAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.identity.fmt(f)
    }
}

/// Agents verified against one CA made for this test process, cached by identity.
#[cfg(test)]
pub(crate) fn test_agent(name: &str, region: &str, network_type: &str) -> &'static VerifiedAgent {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static CA: OnceLock<Ca> = OnceLock::new();
    static AGENTS: OnceLock<Mutex<HashMap<AgentIdentity, &'static VerifiedAgent>>> =
        OnceLock::new();
    let now = time::OffsetDateTime::from_unix_timestamp(1_700_000_000).expect("a valid time");
    let ca = CA.get_or_init(|| {
        // Kept: issuing writes to the CA's directory for as long as the (never dropped) static
        // lives; a fresh name per run, so a stale CA of a reused process id cannot collide.
        let dir = stallwatch_tests::scratch_dir("test-ca").keep();
        Ca::init(&dir, now, true).expect("test CA")
    });
    let identity = AgentIdentity::new(name, region, network_type).expect("a valid identity");
    let mut agents = AGENTS.get_or_init(Default::default).lock().expect("not poisoned");
    agents.entry(identity).or_insert_with_key(|identity| {
        let agent = VerifiedAgent::issue_and_verify(ca, identity, now).expect("verifies");
        Box::leak(Box::new(agent))
    })
}
