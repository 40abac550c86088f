//! The agent's bundle: the PEM file `stallwatch-collector ca issue-agent` writes (the agent's
//! certificate, its PKCS#8 private key, and the fleet CA certificate last). The agent reads
//! its own name from the certificate's `stallwatch:agent/NAME?region=R&network_type=T` SAN
//! URI, the same place the collector reads it from, with the same parser
//! (`stallwatch_proto::identity`): a bundle whose identity the collector would refuse (an
//! unknown network type, say) is refused here at start.

use std::path::{Path, PathBuf};

use rustls_pki_types::pem::{PemObject, SectionKind};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use stallwatch_proto::identity::AgentIdentity;
use thiserror::Error;

/// Largest bundle file read.
const MAX_BUNDLE_BYTES: u64 = 256 * 1024;

/// An agent's credentials.
#[derive(Debug)]
pub struct Bundle {
    /// The agent's certificate first, then any intermediates.
    pub cert_chain: Vec<CertificateDer<'static>>,
    /// The agent's private key.
    pub key: PrivateKeyDer<'static>,
    /// The fleet CA certificate: the only root the agent trusts for the collector.
    pub ca: CertificateDer<'static>,
    /// The identity in the agent's certificate.
    pub identity: AgentIdentity,
}

impl Clone for Bundle {
    fn clone(&self) -> Self {
        Bundle {
            cert_chain: self.cert_chain.clone(),
            key: self.key.clone_key(),
            ca: self.ca.clone(),
            identity: self.identity.clone(),
        }
    }
}

/// Why a bundle could not be used.
#[derive(Debug, Error)]
pub enum BundleError {
    /// The file could not be read.
    #[error("{}: cannot read the bundle: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not a bundle as `ca issue-agent` writes it.
    #[error("{}: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
}

/// Reads and checks a bundle file.
pub fn load_bundle(path: &Path) -> Result<Bundle, BundleError> {
    let unreadable = |source| BundleError::Unreadable { path: path.to_owned(), source };
    let len = std::fs::metadata(path).map_err(unreadable)?.len();
    if len > MAX_BUNDLE_BYTES {
        return Err(BundleError::Invalid {
            path: path.to_owned(),
            reason: format!("{len} bytes: too large for a bundle"),
        });
    }
    let bytes = std::fs::read(path).map_err(unreadable)?;
    parse_bundle(&bytes).map_err(|reason| BundleError::Invalid { path: path.to_owned(), reason })
}

/// Parses bundle PEM: certificates (agent first, CA last) and exactly one PKCS#8 key.
pub fn parse_bundle(pem: &[u8]) -> Result<Bundle, String> {
    let mut certs = Vec::new();
    let mut keys = Vec::new();
    for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(pem) {
        let (kind, der) = section.map_err(|e| format!("invalid PEM: {e}"))?;
        match kind {
            SectionKind::Certificate => certs.push(CertificateDer::from(der)),
            SectionKind::PrivateKey => keys.push(PrivatePkcs8KeyDer::from(der)),
            other => return Err(format!("unexpected PEM block {other:?} in a bundle")),
        }
    }
    if certs.len() < 2 {
        return Err(format!(
            "expected the agent certificate and the CA certificate, found {} certificate(s); \
             is this the file from `stallwatch-collector ca issue-agent`?",
            certs.len()
        ));
    }
    if keys.len() != 1 {
        return Err(format!("expected one private key (PEM PRIVATE KEY), found {}", keys.len()));
    }
    let ca = certs.pop().expect("two or more");
    let identity = agent_identity(&certs[0])?;
    Ok(Bundle { cert_chain: certs, key: PrivateKeyDer::Pkcs8(keys.remove(0)), ca, identity })
}

/// The identity in a certificate's `stallwatch:agent/` SAN URI.
pub fn agent_identity(cert: &[u8]) -> Result<AgentIdentity, String> {
    let uris = san_uris(cert).map_err(|e| format!("the agent certificate is malformed: {e}"))?;
    AgentIdentity::from_san_uris(uris.iter().map(String::as_str))
        .map_err(|e| format!("the agent certificate is not usable: {e}"))
}

/// The URIs in a certificate's subject alternative name extension.
fn san_uris(cert: &[u8]) -> Result<Vec<String>, String> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let (_, cert) = X509Certificate::from_der(cert).map_err(|e| match e {
        x509_parser::nom::Err::Incomplete(_) => "truncated".to_owned(),
        e => format!("not a DER X.509 certificate ({e})"),
    })?;
    let san = cert.subject_alternative_name().map_err(|e| e.to_string())?;
    let names = san.map(|san| san.value.general_names.as_slice()).unwrap_or_default();
    Ok(names
        .iter()
        .filter_map(|name| match name {
            GeneralName::URI(uri) => Some((*uri).to_owned()),
            _ => None,
        })
        .collect())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A bundle in `ca issue-agent`'s layout: agent certificate, PKCS#8 key, CA certificate.
    /// Returns the bundle PEM and the CA (to sign a server certificate in tests).
    pub(crate) fn make_bundle(
        name: &str,
    ) -> (String, rcgen::Issuer<'static, rcgen::KeyPair>, String) {
        make_bundle_with_uri(name, &format!("stallwatch:agent/{name}?region=eu&network_type=5g"))
    }

    /// [`make_bundle`] with the given SAN URI.
    pub(crate) fn make_bundle_with_uri(
        name: &str,
        uri: &str,
    ) -> (String, rcgen::Issuer<'static, rcgen::KeyPair>, String) {
        use rcgen::{
            BasicConstraints, CertificateParams, DistinguishedName, DnType,
            ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType,
        };
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::default();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca_params.distinguished_name = DistinguishedName::new();
        ca_params.distinguished_name.push(DnType::CommonName, "stallwatch fleet CA");
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.subject_alt_names = vec![SanType::URI(uri.try_into().unwrap())];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &issuer).unwrap();
        let pem = format!(
            "# stallwatch agent bundle for {name}\n{}{}{}",
            cert.pem(),
            key.serialize_pem(),
            ca_cert.pem()
        );
        (pem, issuer, ca_cert.pem())
    }

    #[test]
    fn a_bundle_in_issue_agent_layout_parses_with_its_identity() {
        let (pem, _, _) = make_bundle("edge-fra-1");
        let b = parse_bundle(pem.as_bytes()).unwrap();
        assert_eq!(b.cert_chain.len(), 1);
        assert_eq!(
            b.identity,
            AgentIdentity {
                name: "edge-fra-1".into(),
                region: "eu".into(),
                network_type: "5g".into()
            }
        );
        assert!(matches!(b.key, PrivateKeyDer::Pkcs8(_)));
    }

    #[test]
    fn broken_bundles_say_what_is_wrong() {
        let (pem, _, ca) = make_bundle("a");
        let e = parse_bundle(ca.as_bytes()).unwrap_err();
        assert!(e.contains("found 1 certificate"), "{e}");
        let no_key: String =
            pem.split_inclusive('\n').filter(|l| !l.contains("PRIVATE KEY")).collect();
        let e = parse_bundle(no_key.as_bytes());
        assert!(e.is_err());
        let e = parse_bundle(format!("{ca}{ca}").as_bytes()).unwrap_err();
        assert!(e.contains("private key"), "{e}");
        let e = load_bundle(Path::new("/nonexistent/agent.pem")).unwrap_err();
        assert!(matches!(e, BundleError::Unreadable { .. }), "{e}");
    }

    #[test]
    fn malformed_identity_uris_are_refused_naming_the_part() {
        use stallwatch_proto::identity::{IDENTITY_URI_PREFIX, MALFORMED_IDENTITY_URIS};
        for (uri, part) in MALFORMED_IDENTITY_URIS {
            let (pem, _, _) = make_bundle_with_uri("a", uri);
            let e = parse_bundle(pem.as_bytes()).unwrap_err();
            assert!(e.starts_with("the agent certificate is not usable: "), "{e}");
            if uri.starts_with(IDENTITY_URI_PREFIX) {
                assert!(e.contains(part), "{uri}: {e:?} should name {part:?}");
            } else {
                // Another scheme is just another URI: the certificate then has no identity.
                assert!(e.contains("no stallwatch:agent/ identity URI"), "{e}");
            }
        }
    }

    #[test]
    fn der_without_a_certificate_is_refused() {
        assert!(san_uris(&[]).is_err());
        let e = agent_identity(&[0x30, 0x05, 0x30]).unwrap_err();
        assert!(e.starts_with("the agent certificate is malformed: not a DER X.509"), "{e}");
    }
}
