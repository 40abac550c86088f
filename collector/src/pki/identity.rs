//! An agent's identity (name, region, network type), how it is written into a certificate's
//! subject alternative name, and how the collector reads it back.

use std::fmt;
use std::net::IpAddr;

use super::PkiError;
use super::x509::{Cert, GeneralName};

/// The scheme and path prefix of the SAN URI that carries an agent's identity.
pub const IDENTITY_URI_PREFIX: &str = "stallwatch:agent/";

/// The network types an agent may declare; `network_type` label values.
pub const NETWORK_TYPES: &[&str] = &["fiber", "wifi", "5g", "4g", "3g", "2g"];

/// Who an agent is, as its certificate says.
///
/// The collector takes this from the agent's verified client certificate, never from what the
/// agent writes in a report.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AgentIdentity {
    /// 1-64 characters from `a-z`, `0-9` and `-`; also the certificate's CN.
    pub name: String,
    /// 1-32 characters from `a-z`, `0-9` and `-`.
    pub region: String,
    /// One of [`NETWORK_TYPES`].
    pub network_type: String,
}

impl AgentIdentity {
    /// An identity whose fields are checked; the error names the field that is wrong.
    pub fn new(
        name: impl Into<String>,
        region: impl Into<String>,
        network_type: impl Into<String>,
    ) -> Result<Self, PkiError> {
        let id = AgentIdentity {
            name: name.into(),
            region: region.into(),
            network_type: network_type.into(),
        };
        id.validate()?;
        Ok(id)
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<(), PkiError> {
        validate_agent_name(&self.name)?;
        validate_region(&self.region)?;
        validate_network_type(&self.network_type)
    }

    /// The SAN URI: `stallwatch:agent/NAME?region=R&network_type=T`.
    pub fn to_uri(&self) -> String {
        format!(
            "{IDENTITY_URI_PREFIX}{}?region={}&network_type={}",
            self.name, self.region, self.network_type
        )
    }

    /// Parses and checks a SAN URI written by [`AgentIdentity::to_uri`].
    pub fn from_uri(uri: &str) -> Result<Self, PkiError> {
        let bad =
            |reason: &str| PkiError::NotAgentCertificate(format!("identity URI {uri:?} {reason}"));
        let rest =
            uri.strip_prefix(IDENTITY_URI_PREFIX).ok_or_else(|| bad("has another scheme"))?;
        let (name, query) = rest.split_once('?').ok_or_else(|| bad("has no query"))?;
        let (mut region, mut network_type) = (None, None);
        for pair in query.split('&') {
            let (key, value) = pair.split_once('=').ok_or_else(|| bad("has a malformed query"))?;
            let slot = match key {
                "region" => &mut region,
                "network_type" => &mut network_type,
                _ => return Err(bad(&format!("has an unknown key {key:?}"))),
            };
            if slot.replace(value).is_some() {
                return Err(bad(&format!("repeats {key:?}")));
            }
        }
        AgentIdentity::new(
            name,
            region.ok_or_else(|| bad("has no region"))?,
            network_type.ok_or_else(|| bad("has no network_type"))?,
        )
    }
}

impl fmt::Display for AgentIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (region {}, network type {})", self.name, self.region, self.network_type)
    }
}

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
    let mut uris =
        cert.subject_alt_names().map_err(malformed)?.into_iter().filter_map(|n| match n {
            GeneralName::Uri(u) if u.starts_with(IDENTITY_URI_PREFIX) => Some(u),
            _ => None,
        });
    let uri = uris.next().ok_or_else(|| not_agent("it has no stallwatch:agent/ identity URI"))?;
    if uris.next().is_some() {
        return Err(not_agent("it has more than one stallwatch:agent/ identity URI"));
    }
    let identity = AgentIdentity::from_uri(uri)?;
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

fn is_label_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
}

fn invalid(field: &'static str, value: &str, expected: &str) -> PkiError {
    PkiError::InvalidField { field, value: value.to_string(), expected: expected.to_string() }
}

/// An agent name: 1-64 characters from `a-z`, `0-9` and `-`.
pub fn validate_agent_name(name: &str) -> Result<(), PkiError> {
    if (1..=64).contains(&name.len()) && name.chars().all(is_label_char) {
        Ok(())
    } else {
        Err(invalid("agent name", name, "1-64 characters from a-z, 0-9 and -"))
    }
}

/// A region: 1-32 characters from `a-z`, `0-9` and `-`.
pub fn validate_region(region: &str) -> Result<(), PkiError> {
    if (1..=32).contains(&region.len()) && region.chars().all(is_label_char) {
        Ok(())
    } else {
        Err(invalid("region", region, "1-32 characters from a-z, 0-9 and -"))
    }
}

/// A network type: one of [`NETWORK_TYPES`].
pub fn validate_network_type(network_type: &str) -> Result<(), PkiError> {
    if NETWORK_TYPES.contains(&network_type) {
        Ok(())
    } else {
        Err(invalid("network type", network_type, &format!("one of {}", NETWORK_TYPES.join(", "))))
    }
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
    fn identity_uri_round_trips() {
        let id = AgentIdentity::new("edge-fra-1", "eu-central", "5g").unwrap();
        assert_eq!(id.to_uri(), "stallwatch:agent/edge-fra-1?region=eu-central&network_type=5g");
        assert_eq!(AgentIdentity::from_uri(&id.to_uri()).unwrap(), id);
        let swapped = "stallwatch:agent/edge-fra-1?network_type=5g&region=eu-central";
        assert_eq!(AgentIdentity::from_uri(swapped).unwrap(), id);
    }

    #[test]
    fn identity_uri_rejects_tricks() {
        for uri in [
            "stallwatch:agent/a?region=r&network_type=5g&region=s",
            "stallwatch:agent/a?region=r&network_type=5g&admin=1",
            "stallwatch:agent/a?region=r",
            "stallwatch:agent/a",
            "stallwatch:agent/A?region=r&network_type=5g",
            "stallwatch:agent/a?region=r%20s&network_type=5g",
            "stallwatch:agent/a/b?region=r&network_type=5g",
            "stallwatch:agent/?region=r&network_type=5g",
            "other:agent/a?region=r&network_type=5g",
        ] {
            assert!(AgentIdentity::from_uri(uri).is_err(), "{uri}");
        }
    }

    #[test]
    fn field_errors_name_the_field() {
        let e = AgentIdentity::new("Edge_1", "eu", "5g").unwrap_err().to_string();
        assert!(e.starts_with("invalid agent name \"Edge_1\""), "{e}");
        let e = AgentIdentity::new("edge-1", "", "5g").unwrap_err().to_string();
        assert!(e.starts_with("invalid region \"\""), "{e}");
        let e = AgentIdentity::new("edge-1", "r".repeat(33), "5g").unwrap_err().to_string();
        assert!(e.starts_with("invalid region"), "{e}");
        let e = AgentIdentity::new("edge-1", "eu", "lte").unwrap_err().to_string();
        assert_eq!(e, "invalid network type \"lte\": expected one of fiber, wifi, 5g, 4g, 3g, 2g");
        assert!(AgentIdentity::new("a".repeat(64), "r", "fiber").is_ok());
        assert!(AgentIdentity::new("a".repeat(65), "r", "fiber").is_err());
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
