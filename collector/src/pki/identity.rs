//! How the collector reads an agent's identity (name, region, network type) back from a
//! client certificate. The identity and its SAN URI codec are `stallwatch_proto::identity`'s,
//! shared with the agent; this module adds the certificate checks and collector host names.

use std::net::IpAddr;

use super::PkiError;
use super::x509::{Cert, GeneralName};

pub use stallwatch_proto::identity::{
    AgentIdentity, IDENTITY_URI_PREFIX, NETWORK_TYPES, validate_agent_name, validate_network_type,
    validate_region,
};

/// The identity in a client certificate's `stallwatch:agent/` SAN URI.
///
/// Call this only on a certificate that has already been verified to chain to the fleet CA
/// (rustls' client verifier during the handshake): this function checks the certificate's
/// shape (one identity URI, a CN that agrees with it, not a CA, client-auth usage) but not
/// its signature, validity period or revocation. Check revocation with
/// [`RevocationList::is_revoked`](super::RevocationList::is_revoked) using
/// [`certificate_serial`](super::certificate_serial).
pub fn agent_identity(cert_der: &[u8]) -> Result<AgentIdentity, PkiError> {
    let cert = Cert::parse(cert_der).map_err(|e| PkiError::Certificate(e.to_string()))?;
    let malformed = |e: super::x509::CertError| PkiError::Certificate(e.to_string());
    let not_agent = |reason: &str| PkiError::NotAgentCertificate(reason.to_string());
    if cert.is_ca().map_err(malformed)? {
        return Err(not_agent("it is a CA certificate"));
    }
    if !cert.key_usages().map_err(malformed)?.client_auth {
        return Err(not_agent("it is not for client authentication (no clientAuth usage)"));
    }
    let uris = cert.subject_alt_names().map_err(malformed)?;
    let identity = AgentIdentity::from_san_uris(uris.iter().filter_map(|n| match n {
        GeneralName::Uri(u) => Some(*u),
        _ => None,
    }))?;
    match cert.subject_common_name().map_err(malformed)? {
        Some(cn) if cn != identity.name => Err(not_agent(&format!(
            "its common name {cn:?} differs from the identity URI's name {:?}",
            identity.name
        ))),
        _ => Ok(identity),
    }
}

/// The serial number of a certificate, as lowercase hex (the form `issued.json` and
/// `revoked.json` use).
pub fn certificate_serial(cert_der: &[u8]) -> Result<String, PkiError> {
    Cert::parse(cert_der).map(|c| c.serial_hex()).map_err(|e| PkiError::Certificate(e.to_string()))
}

fn invalid(field: &'static str, value: &str, expected: &str) -> PkiError {
    PkiError::InvalidField { field, value: value.to_string(), expected: expected.to_string() }
}

/// A collector host: an IP address or a DNS name (letters, digits and `-` in dot-separated
/// labels of up to 63 characters that do not start or end with `-`).
pub(crate) fn parse_host(host: &str) -> Result<Host, PkiError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(Host::Ip(ip));
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if (1..=253).contains(&name.len()) && name.split('.').all(label_ok) {
        Ok(Host::Dns(name.to_ascii_lowercase()))
    } else {
        Err(invalid(
            "host",
            host,
            "an IP address or a DNS name (labels of letters, digits and -, no wildcards)",
        ))
    }
}

/// A collector host name, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Host {
    Dns(String),
    Ip(IpAddr),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_uris_round_trip_and_malformed_ones_are_refused_naming_the_part() {
        let id = AgentIdentity::new("edge-fra-1", "eu-central", "5g").unwrap();
        assert_eq!(AgentIdentity::from_uri(&id.to_uri()).unwrap(), id);
        for (uri, part) in stallwatch_proto::identity::MALFORMED_IDENTITY_URIS {
            let e = PkiError::from(AgentIdentity::from_uri(uri).unwrap_err()).to_string();
            assert!(e.starts_with("not a stallwatch agent certificate: identity URI"), "{e}");
            assert!(e.contains(part), "{uri}: {e:?} should name {part:?}");
        }
    }

    #[test]
    fn field_errors_name_the_field() {
        let e = PkiError::from(AgentIdentity::new("edge-1", "eu", "lte").unwrap_err()).to_string();
        assert_eq!(e, "invalid network type \"lte\": expected one of fiber, wifi, 5g, 4g, 3g, 2g");
    }

    #[test]
    fn hosts_are_ips_or_dns_names() {
        assert_eq!(parse_host("127.0.0.1").unwrap(), Host::Ip("127.0.0.1".parse().unwrap()));
        assert_eq!(parse_host("::1").unwrap(), Host::Ip("::1".parse().unwrap()));
        assert_eq!(
            parse_host("Collector.Example.net").unwrap(),
            Host::Dns("collector.example.net".into())
        );
        assert_eq!(parse_host("localhost").unwrap(), Host::Dns("localhost".into()));
        for bad in ["", "*.example.net", "-a.example", "a..b", "a b", "a_b.example"] {
            let e = parse_host(bad).unwrap_err().to_string();
            assert!(e.starts_with("invalid host"), "{e}");
        }
    }
}
