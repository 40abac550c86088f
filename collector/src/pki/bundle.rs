//! Reading an agent's bundle file: its certificate, its private key and the fleet CA.

use std::path::Path;

use rustls_pki_types::pem::{PemObject, SectionKind};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::files::{self, MAX_SMALL_FILE};
use super::x509::Cert;
use super::{AgentIdentity, PkiError, agent_identity};

/// An agent's credentials, as `stallwatch-agent run --bundle FILE` uses them.
#[derive(Debug)]
pub struct Bundle {
    /// The agent's certificate first, then any intermediates (none from `ca issue-agent`).
    pub cert_chain: Vec<CertificateDer<'static>>,
    /// The agent's private key (PKCS#8).
    pub key: PrivateKeyDer<'static>,
    /// The fleet CA certificate, to verify the collector with.
    pub ca: CertificateDer<'static>,
}

impl Bundle {
    /// The identity in the agent's certificate.
    pub fn identity(&self) -> Result<AgentIdentity, PkiError> {
        agent_identity(&self.cert_chain[0])
    }
}

/// Reads a bundle written by `ca issue-agent`: PEM blocks (comments between them are
/// ignored), the agent's certificate first, exactly one PKCS#8 private key, and the CA
/// certificate last.
///
/// Checks that the pieces belong together (the key is the certificate's, each certificate
/// is signed by the next, the last is a CA) and that the certificate carries an agent
/// identity, so a mixed-up bundle fails here with the file named rather than in a TLS
/// handshake. Does not check dates: the agent has the clock.
pub fn load_bundle(path: &Path) -> Result<Bundle, PkiError> {
    let bad = |reason: String| PkiError::File { path: path.to_path_buf(), reason };
    let bytes = files::read_capped(path, MAX_SMALL_FILE)?;
    let mut certs = Vec::new();
    let mut keys = Vec::new();
    for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(&bytes) {
        let (kind, der) = section.map_err(|e| bad(format!("invalid PEM: {e}")))?;
        match kind {
            SectionKind::Certificate => certs.push(CertificateDer::from(der)),
            SectionKind::PrivateKey => keys.push(PrivatePkcs8KeyDer::from(der)),
            SectionKind::EcPrivateKey | SectionKind::RsaPrivateKey => {
                return Err(bad("the key is not PKCS#8 (expected a PEM PRIVATE KEY block)".into()));
            }
            other => return Err(bad(format!("unexpected PEM block {other:?} in a bundle"))),
        }
    }
    if certs.len() < 2 {
        return Err(bad(format!(
            "expected the agent certificate and the CA certificate, found {} certificate(s)",
            certs.len()
        )));
    }
    let key = match keys.len() {
        1 => keys.remove(0),
        n => return Err(bad(format!("expected one private key (PEM PRIVATE KEY), found {n}"))),
    };
    let ca = certs.pop().ok_or_else(|| bad("no CA certificate".into()))?;

    let parsed: Vec<Cert<'_>> = certs
        .iter()
        .chain(std::iter::once(&ca))
        .enumerate()
        .map(|(i, c)| {
            Cert::parse(c).map_err(|e| bad(format!("certificate {} is malformed: {e}", i + 1)))
        })
        .collect::<Result<_, _>>()?;
    let ca_parsed = &parsed[parsed.len() - 1];
    if !ca_parsed.is_ca().unwrap_or(false) {
        return Err(bad("the last certificate is not a CA certificate".into()));
    }
    for (i, pair) in parsed.windows(2).enumerate() {
        pair[0].verify_signed_by(&pair[1]).map_err(|e| {
            let issuer = if i + 2 == parsed.len() {
                "the bundle's CA".to_string()
            } else {
                format!("certificate {}", i + 2)
            };
            bad(format!("certificate {} is not signed by {issuer}: {e}", i + 1))
        })?;
    }
    let key_pair = rcgen::KeyPair::try_from(key.secret_pkcs8_der())
        .map_err(|e| bad(format!("unreadable private key: {e}")))?;
    if key_pair.public_key_raw() != parsed[0].public_key() {
        return Err(bad("the private key does not belong to the agent certificate".into()));
    }
    agent_identity(&certs[0]).map_err(|e| bad(e.to_string()))?;
    Ok(Bundle { cert_chain: certs, key: PrivateKeyDer::Pkcs8(key), ca })
}
