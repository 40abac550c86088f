//! An agent's identity (name, region, network type) and its one written form, the
//! `stallwatch:agent/NAME?region=R&network_type=T` URI in the agent certificate's subject
//! alternative name. The collector writes it when it issues the certificate and reads it back
//! from every verified client certificate; the agent reads its own name from it. Both sides
//! parse it here, with the same strict rules, so neither accepts a form the other refuses.

use std::fmt;

use thiserror::Error;

/// The scheme and path prefix of the SAN URI that carries an agent's identity.
pub const IDENTITY_URI_PREFIX: &str = "stallwatch:agent/";

/// The network types an agent may declare; the `network_type` label values.
pub const NETWORK_TYPES: &[&str] = &["fiber", "wifi", "5g", "4g", "3g", "2g"];

/// Longest agent name (also the certificate's CN).
pub const MAX_AGENT_NAME_LEN: usize = 64;
/// Longest region.
pub const MAX_REGION_LEN: usize = 32;

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

/// Why an identity or its URI was refused. The message names the part at fault.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IdentityError {
    /// A name, region or network type is not acceptable.
    #[error("invalid {field} {value:?}: expected {expected}")]
    InvalidField { field: &'static str, value: String, expected: String },
    /// The URI is not in the form [`AgentIdentity::to_uri`] writes.
    #[error("identity URI {uri:?}: {problem}")]
    Uri { uri: String, problem: String },
    /// A certificate carries no identity URI.
    #[error("it has no {IDENTITY_URI_PREFIX} identity URI")]
    NoUri,
    /// A certificate carries more than one identity URI (which one would be meant?).
    #[error("it has more than one {IDENTITY_URI_PREFIX} identity URI")]
    SeveralUris,
}

impl AgentIdentity {
    /// An identity whose fields are checked; the error names the field that is wrong.
    pub fn new(
        name: impl Into<String>,
        region: impl Into<String>,
        network_type: impl Into<String>,
    ) -> Result<Self, IdentityError> {
        let id = AgentIdentity {
            name: name.into(),
            region: region.into(),
            network_type: network_type.into(),
        };
        id.validate()?;
        Ok(id)
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<(), IdentityError> {
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

    /// Parses and checks a SAN URI written by [`AgentIdentity::to_uri`]. The two query keys
    /// may come in either order; anything else (another scheme, a missing, repeated or
    /// unknown key, an escape, a path segment, a field out of range) is refused.
    pub fn from_uri(uri: &str) -> Result<Self, IdentityError> {
        let bad = |problem: String| IdentityError::Uri { uri: uri.to_owned(), problem };
        let rest = uri
            .strip_prefix(IDENTITY_URI_PREFIX)
            .ok_or_else(|| bad(format!("the scheme is not {IDENTITY_URI_PREFIX}")))?;
        let (name, query) = rest
            .split_once('?')
            .ok_or_else(|| bad("there is no query (?region=R&network_type=T)".into()))?;
        let (mut region, mut network_type) = (None, None);
        for pair in query.split('&') {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| bad(format!("the query part {pair:?} is not KEY=VALUE")))?;
            let slot = match key {
                "region" => &mut region,
                "network_type" => &mut network_type,
                _ => return Err(bad(format!("the query key {key:?} is unknown"))),
            };
            if slot.replace(value).is_some() {
                return Err(bad(format!("the query key {key:?} is repeated")));
            }
        }
        let region = region.ok_or_else(|| bad("the query has no region".into()))?;
        let network_type =
            network_type.ok_or_else(|| bad("the query has no network_type".into()))?;
        AgentIdentity::new(name, region, network_type).map_err(|e| bad(e.to_string()))
    }

    /// The identity among a certificate's SAN URIs: exactly one must start with
    /// [`IDENTITY_URI_PREFIX`]; other URIs are ignored.
    pub fn from_san_uris<'a>(
        uris: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, IdentityError> {
        let mut ids = uris.into_iter().filter(|u| u.starts_with(IDENTITY_URI_PREFIX));
        let uri = ids.next().ok_or(IdentityError::NoUri)?;
        if ids.next().is_some() {
            return Err(IdentityError::SeveralUris);
        }
        AgentIdentity::from_uri(uri)
    }
}

impl fmt::Display for AgentIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (region {}, network type {})", self.name, self.region, self.network_type)
    }
}

fn is_label_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
}

fn invalid(field: &'static str, value: &str, expected: String) -> IdentityError {
    IdentityError::InvalidField { field, value: value.to_owned(), expected }
}

/// An agent name: 1-64 characters from `a-z`, `0-9` and `-`.
pub fn validate_agent_name(name: &str) -> Result<(), IdentityError> {
    if (1..=MAX_AGENT_NAME_LEN).contains(&name.len()) && name.chars().all(is_label_char) {
        Ok(())
    } else {
        Err(invalid(
            "agent name",
            name,
            format!("1-{MAX_AGENT_NAME_LEN} characters from a-z, 0-9 and -"),
        ))
    }
}

/// A region: 1-32 characters from `a-z`, `0-9` and `-`.
pub fn validate_region(region: &str) -> Result<(), IdentityError> {
    if (1..=MAX_REGION_LEN).contains(&region.len()) && region.chars().all(is_label_char) {
        Ok(())
    } else {
        Err(invalid("region", region, format!("1-{MAX_REGION_LEN} characters from a-z, 0-9 and -")))
    }
}

/// A network type: one of [`NETWORK_TYPES`].
pub fn validate_network_type(network_type: &str) -> Result<(), IdentityError> {
    if NETWORK_TYPES.contains(&network_type) {
        Ok(())
    } else {
        Err(invalid("network type", network_type, format!("one of {}", NETWORK_TYPES.join(", "))))
    }
}

/// Malformed identity URIs, each with the words its error names the bad part by. Every reader
/// of the URI (the collector's and the agent's tests) runs them through its own entry point.
pub const MALFORMED_IDENTITY_URIS: &[(&str, &str)] = &[
    ("other:agent/a?region=r&network_type=5g", "scheme"),
    ("stallwatch:agent/a", "no query"),
    ("stallwatch:agent/a?region=r", "no network_type"),
    ("stallwatch:agent/a?network_type=5g", "no region"),
    ("stallwatch:agent/a?region=r&network_type=5g&region=s", "\"region\" is repeated"),
    ("stallwatch:agent/a?region=r&network_type=5g&admin=1", "key \"admin\" is unknown"),
    ("stallwatch:agent/a?region=r&&network_type=5g", "part \"\" is not KEY=VALUE"),
    ("stallwatch:agent/a?region&network_type=5g", "part \"region\" is not KEY=VALUE"),
    ("stallwatch:agent/A?region=r&network_type=5g", "invalid agent name \"A\""),
    ("stallwatch:agent/?region=r&network_type=5g", "invalid agent name \"\""),
    ("stallwatch:agent/a/b?region=r&network_type=5g", "invalid agent name \"a/b\""),
    ("stallwatch:agent/a?region=r%20s&network_type=5g", "invalid region \"r%20s\""),
    ("stallwatch:agent/a?region=&network_type=5g", "invalid region \"\""),
    ("stallwatch:agent/a?region=r&network_type=lte", "invalid network type \"lte\""),
    ("stallwatch:agent/a?region=r&network_type=5g#x", "invalid network type \"5g#x\""),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_uri_round_trips_for_every_network_type() {
        for network_type in NETWORK_TYPES {
            let id = AgentIdentity::new("edge-fra-1", "eu-central", *network_type).unwrap();
            assert_eq!(
                id.to_uri(),
                format!(
                    "stallwatch:agent/edge-fra-1?region=eu-central&network_type={network_type}"
                )
            );
            assert_eq!(AgentIdentity::from_uri(&id.to_uri()).unwrap(), id);
        }
        let id = AgentIdentity::new("a".repeat(64), "r".repeat(32), "5g").unwrap();
        assert_eq!(AgentIdentity::from_uri(&id.to_uri()).unwrap(), id, "longest fields");
        let swapped = "stallwatch:agent/e?network_type=5g&region=eu";
        assert_eq!(
            AgentIdentity::from_uri(swapped).unwrap(),
            AgentIdentity::new("e", "eu", "5g").unwrap()
        );
    }

    #[test]
    fn each_malformed_identity_uri_is_refused_naming_the_bad_part() {
        for (uri, part) in MALFORMED_IDENTITY_URIS {
            let e = AgentIdentity::from_uri(uri).unwrap_err().to_string();
            assert!(e.starts_with(&format!("identity URI {uri:?}: ")), "{e}");
            assert!(e.contains(part), "{uri}: {e:?} should name {part:?}");
        }
        let long = format!("stallwatch:agent/{}?region=r&network_type=5g", "a".repeat(65));
        assert!(AgentIdentity::from_uri(&long).unwrap_err().to_string().contains("agent name"));
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
        assert!(AgentIdentity::new("a".repeat(65), "r", "fiber").is_err());
    }

    #[test]
    fn exactly_one_identity_uri_among_the_san_uris() {
        let id = "stallwatch:agent/a?region=r&network_type=5g";
        let other = "https://example.net/";
        assert_eq!(AgentIdentity::from_san_uris([other, id]).unwrap().name, "a");
        assert_eq!(AgentIdentity::from_san_uris([other]), Err(IdentityError::NoUri));
        assert_eq!(AgentIdentity::from_san_uris([id, id]), Err(IdentityError::SeveralUris));
    }
}
