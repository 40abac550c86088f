//! Fleet PKI: the CA that issues agent and collector certificates, the deny-list of revoked
//! agents, and reading an agent's identity back out of its certificate.
//!
//! A CA directory (`--dir`, default `./stallwatch-ca`) holds:
//!
//! | file | what | who needs it |
//! |---|---|---|
//! | `ca.pem` | the CA certificate (ECDSA P-256, 10 years) | collectors; agents get a copy in their bundle |
//! | `ca.key` | the CA's private key, mode 0600 | only `ca` commands: keep it offline |
//! | `issued.json` | every agent certificate issued ([`IssuedList`]) | `ca revoke`, `ca list` |
//! | `revoked.json` | revoked agent names and serials, revoked collector serials ([`RevocationList`]) | collectors |
//! | `collectors.crl.pem` | CA-signed CRL of revoked collector certificates, with a next update | agents (`STATE_DIR/collectors.crl.pem`) |
//!
//! An agent certificate says who the agent is in one SAN URI,
//! `stallwatch:agent/NAME?region=R&network_type=T` ([`AgentIdentity::to_uri`]). The collector
//! reads it with [`agent_identity`] from the client certificate rustls verified, never from
//! a report body, so an agent cannot report as another or as another cohort.
//!
//! Nothing here reads the clock: callers pass `now` (the CLI reads it once, in [`main`]).
//! Certificates are read with `x509-parser` (`x509`), strict about what the fleet CA never
//! writes; any input gives a value or an error, never a panic.

mod bundle;
mod ca;
mod cli;
mod error;
mod files;
mod identity;
mod lists;
pub(crate) mod verified;
mod x509;

use std::net::IpAddr;

use time::OffsetDateTime;

pub use bundle::{Bundle, load_bundle};
pub use ca::{
    AgentCredential, BACKDATE, CA_CERT_FILE, CA_COMMON_NAME, CA_KEY_FILE, CA_VALIDITY_DAYS,
    COLLECTOR_CRL_DAYS, COLLECTOR_CRL_FILE, COLLECTOR_VALIDITY_DAYS, Ca, CollectorCredential,
    ISSUED_FILE, REVOKED_FILE, Revocation, Validity, load_ca_certificate, verify_issued_by,
};
pub use cli::{CaArgs, CaCommand, IssueAgentArgs, IssueCollectorArgs, main};
pub use error::PkiError;
pub use files::rfc3339;
pub use identity::{
    AgentIdentity, IDENTITY_URI_PREFIX, NETWORK_TYPES, agent_identity, certificate_serial,
    validate_agent_name, validate_network_type, validate_region,
};
pub use lists::{IssuedAgent, IssuedList, RevocationList, RevokedSerial};
pub use verified::VerifiedAgent;

/// What a certificate says, for logs and checks (e.g. why ingest refused an agent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateInfo {
    /// Serial number, lowercase hex.
    pub serial: String,
    /// Subject, e.g. `CN=edge-1`.
    pub subject: String,
    /// Issuer, e.g. `CN=stallwatch fleet CA, O=stallwatch, OU=ca 1a2b3c4d`. Every CA made by
    /// `ca init` has its own `OU`, so certificates from two fleets have different issuers.
    pub issuer: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    /// Whether it is a CA certificate.
    pub is_ca: bool,
    /// Whether its extended key usage allows TLS client authentication (agents).
    pub client_auth: bool,
    /// Whether its extended key usage allows TLS server authentication (collectors).
    pub server_auth: bool,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    pub uris: Vec<String>,
}

/// Reads a certificate's serial, names, validity and alternative names. Does not verify it.
pub fn inspect_certificate(cert_der: &[u8]) -> Result<CertificateInfo, PkiError> {
    let malformed = |e: x509::CertError| PkiError::Certificate(e.to_string());
    let cert = x509::Cert::parse(cert_der).map_err(malformed)?;
    let usages = cert.key_usages().map_err(malformed)?;
    let mut info = CertificateInfo {
        serial: cert.serial_hex(),
        subject: cert.subject_name(),
        issuer: cert.issuer_name(),
        not_before: cert.not_before(),
        not_after: cert.not_after(),
        is_ca: cert.is_ca().map_err(malformed)?,
        client_auth: usages.client_auth,
        server_auth: usages.server_auth,
        dns_names: Vec::new(),
        ip_addresses: Vec::new(),
        uris: Vec::new(),
    };
    for name in cert.subject_alt_names().map_err(malformed)? {
        match name {
            x509::GeneralName::Dns(d) => info.dns_names.push(d.to_string()),
            x509::GeneralName::Ip(ip) => info.ip_addresses.push(ip),
            x509::GeneralName::Uri(u) => info.uris.push(u.to_string()),
            x509::GeneralName::Other => {}
        }
    }
    Ok(info)
}

/// SHA-256 of a certificate's DER, lowercase hex (the agent's `--pin` form).
pub fn fingerprint(cert_der: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, cert_der).as_ref())
}

/// Lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}
