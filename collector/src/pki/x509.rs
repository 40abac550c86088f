//! The facts the PKI reads from a certificate (names, validity, the public key, and the
//! extensions stallwatch uses), parsed by `x509-parser`, with errors that say what is wrong.
//!
//! On top of the parser this refuses what the fleet CA never writes and a lenient reader
//! would let through: trailing data, versions before 3, negative or oversized serials, a
//! signature algorithm that differs inside and outside the signed part, a repeated extension,
//! and an extension that does not parse. No input makes it panic (`tests/pki.rs` fuzzes it).

use std::net::IpAddr;

use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName as X509GeneralName, ParsedExtension};
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION,
    OID_PKCS1_SHA256WITHRSA, OID_SIG_ECDSA_WITH_SHA256, OID_SIG_ECDSA_WITH_SHA384, OID_SIG_ED25519,
    OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER, OID_X509_EXT_SUBJECT_KEY_IDENTIFIER,
};
use x509_parser::prelude::{FromDer, X509Version};
use x509_parser::x509::{AttributeTypeAndValue, X509Name};

use super::hex;

/// Why a certificate could not be read; the caller adds which file or peer it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CertError(String);

impl std::fmt::Display for CertError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

type Result<T> = std::result::Result<T, CertError>;

fn err<T>(msg: impl Into<String>) -> Result<T> {
    Err(CertError(msg.into()))
}

/// `what` is malformed, with the parser's reason.
fn malformed(what: &str, e: &dyn std::fmt::Display) -> CertError {
    CertError(format!("{what} is malformed ({e})"))
}

/// Whether `der` starts like a certificate whose encoding is longer than the data (the parser
/// reports that as a generic end-of-input error).
fn truncated(der: &[u8]) -> bool {
    use x509_parser::asn1_rs::{FromDer as _, Header, Length};
    match Header::from_der(der) {
        Ok((rest, header)) => {
            matches!(header.length(), Length::Definite(n) if n > rest.len())
        }
        Err(e) => e.is_incomplete(),
    }
}

/// The serial number is at most 20 octets (RFC 5280), plus a sign byte.
const MAX_SERIAL_BYTES: usize = 21;

/// How many extensions a certificate may have (a real one has about ten); bounds the check
/// for repeats.
const MAX_EXTENSIONS: usize = 64;

/// A parsed certificate; borrows its DER.
pub(crate) struct Cert<'a>(X509Certificate<'a>);

/// The extended key usages stallwatch checks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct KeyUsages {
    pub(crate) client_auth: bool,
    pub(crate) server_auth: bool,
}

/// A subject alternative name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum GeneralName<'a> {
    Dns(&'a str),
    Uri(&'a str),
    Ip(IpAddr),
    Other,
}

impl<'a> Cert<'a> {
    pub(crate) fn parse(der: &'a [u8]) -> Result<Self> {
        let (rest, cert) = X509Certificate::from_der(der).map_err(|e| match e {
            x509_parser::nom::Err::Error(e) | x509_parser::nom::Err::Failure(e)
                if !truncated(der) =>
            {
                CertError(format!("not a DER X.509 certificate ({e})"))
            }
            _ => CertError("truncated: the data ends inside the certificate".into()),
        })?;
        if !rest.is_empty() {
            return err("unexpected data after the certificate");
        }
        if cert.version() != X509Version::V3 {
            return err("not an X.509 version 3 certificate");
        }
        let serial = cert.raw_serial();
        if serial.is_empty() || serial.len() > MAX_SERIAL_BYTES {
            return err("serial number has an invalid length");
        }
        if serial[0] & 0x80 != 0 {
            return err("serial number is negative");
        }
        if cert.signature_algorithm.algorithm != cert.tbs_certificate.signature.algorithm {
            return err("the signature algorithm inside and outside the signed part differ");
        }
        if cert.extensions().len() > MAX_EXTENSIONS {
            return err("too many extensions");
        }
        for (i, ext) in cert.extensions().iter().enumerate() {
            if let ParsedExtension::ParseError { error } = ext.parsed_extension() {
                return Err(malformed(&format!("extension {}", ext.oid), error));
            }
            if cert.extensions()[..i].iter().any(|e| e.oid == ext.oid) {
                return err(format!("extension {} appears twice", ext.oid));
            }
        }
        Ok(Cert(cert))
    }

    /// The serial number as lowercase hex without sign padding.
    pub(crate) fn serial_hex(&self) -> String {
        let s = match self.0.raw_serial() {
            [0, rest @ ..] if !rest.is_empty() => rest,
            s => s,
        };
        hex(s)
    }

    /// The subject as `CN=..., O=...`, for messages.
    pub(crate) fn subject_name(&self) -> String {
        name_to_string(self.0.subject())
    }

    /// The issuer as `CN=..., O=...`, for messages.
    pub(crate) fn issuer_name(&self) -> String {
        name_to_string(self.0.issuer())
    }

    /// The subject's attributes in encoded order (one per RDN in what stallwatch writes).
    pub(crate) fn subject_attributes(&self) -> impl Iterator<Item = &AttributeTypeAndValue<'_>> {
        self.0.subject().iter_attributes()
    }

    pub(crate) fn not_before(&self) -> OffsetDateTime {
        self.0.validity().not_before.to_datetime()
    }

    pub(crate) fn not_after(&self) -> OffsetDateTime {
        self.0.validity().not_after.to_datetime()
    }

    /// The subjectPublicKey bits (an uncompressed point for EC keys).
    pub(crate) fn public_key(&self) -> &[u8] {
        &self.0.public_key().subject_public_key.data
    }

    /// The subject's common name, if it has exactly one readable one.
    pub(crate) fn subject_common_name(&self) -> Result<Option<&str>> {
        let mut names = self.0.subject().iter_common_name();
        let Some(cn) = names.next() else { return Ok(None) };
        if names.next().is_some() {
            return err("the subject has more than one common name");
        }
        cn.as_str().map(Some).map_err(|e| malformed("the common name", &e))
    }

    /// Basic constraints: whether the certificate is a CA.
    pub(crate) fn is_ca(&self) -> Result<bool> {
        let bc = self.0.basic_constraints().map_err(|e| malformed("basic constraints", &e))?;
        Ok(bc.is_some_and(|bc| bc.value.ca))
    }

    /// The extended key usages stallwatch checks; none if the extension is absent.
    pub(crate) fn key_usages(&self) -> Result<KeyUsages> {
        let eku = self.0.extended_key_usage().map_err(|e| malformed("extended key usage", &e))?;
        Ok(eku.map_or(KeyUsages::default(), |eku| KeyUsages {
            client_auth: eku.value.client_auth,
            server_auth: eku.value.server_auth,
        }))
    }

    /// Subject alternative names.
    pub(crate) fn subject_alt_names(&self) -> Result<Vec<GeneralName<'a>>> {
        let sans = self
            .0
            .subject_alternative_name()
            .map_err(|e| malformed("subject alternative names", &e))?;
        let Some(sans) = sans else { return Ok(Vec::new()) };
        sans.value
            .general_names
            .iter()
            .map(|name| match name {
                X509GeneralName::DNSName(d) if d.is_ascii() => Ok(GeneralName::Dns(d)),
                X509GeneralName::URI(u) if u.is_ascii() => Ok(GeneralName::Uri(u)),
                X509GeneralName::DNSName(_) => err("DNS name is not ASCII"),
                X509GeneralName::URI(_) => err("URI is not ASCII"),
                X509GeneralName::IPAddress(bytes) => <[u8; 4]>::try_from(*bytes)
                    .map(IpAddr::from)
                    .or_else(|_| <[u8; 16]>::try_from(*bytes).map(IpAddr::from))
                    .map(GeneralName::Ip)
                    .map_err(|_| CertError("IP address name of invalid length".into())),
                X509GeneralName::Invalid(tag, _) => {
                    err(format!("subject alternative name with tag {} is malformed", tag.0))
                }
                _ => Ok(GeneralName::Other),
            })
            .collect()
    }

    /// The subject key identifier, if present.
    fn subject_key_id(&self) -> Option<&[u8]> {
        let ext = self.0.get_extension_unique(&OID_X509_EXT_SUBJECT_KEY_IDENTIFIER).ok()??;
        match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0),
            _ => None,
        }
    }

    /// The key identifier of the authority key identifier, if present.
    fn authority_key_id(&self) -> Option<&[u8]> {
        let ext = self.0.get_extension_unique(&OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER).ok()??;
        match ext.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                aki.key_identifier.as_ref().map(|k| k.0)
            }
            _ => None,
        }
    }

    /// Checks that `issuer`'s key signed this certificate and that the names chain. Only the
    /// algorithms a fleet may use; ring checks the signature.
    pub(crate) fn verify_signed_by(&self, issuer: &Cert<'_>) -> Result<()> {
        if self.0.issuer().as_raw() != issuer.0.subject().as_raw() {
            return err(format!(
                "issued by \"{}\", not by \"{}\"",
                self.issuer_name(),
                issuer.subject_name()
            ));
        }
        if let (Some(aki), Some(ski)) = (self.authority_key_id(), issuer.subject_key_id())
            && aki != ski
        {
            return err("its authority key identifier is not the issuer's key identifier");
        }
        use ring::signature as sig;
        let signed_with = &self.0.signature_algorithm.algorithm;
        let key = &issuer.0.public_key().algorithm;
        let curve = key.parameters.as_ref().and_then(|p| p.as_oid().ok());
        let ec = key.algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY;
        let (p256, p384) = (curve == Some(OID_EC_P256), curve == Some(OID_NIST_EC_P384));
        let alg: &dyn sig::VerificationAlgorithm = if *signed_with == OID_SIG_ECDSA_WITH_SHA256 {
            match (ec, p256, p384) {
                (true, true, _) => &sig::ECDSA_P256_SHA256_ASN1,
                (true, _, true) => &sig::ECDSA_P384_SHA256_ASN1,
                _ => return unsupported(signed_with),
            }
        } else if *signed_with == OID_SIG_ECDSA_WITH_SHA384 {
            match (ec, p256, p384) {
                (true, _, true) => &sig::ECDSA_P384_SHA384_ASN1,
                (true, true, _) => &sig::ECDSA_P256_SHA384_ASN1,
                _ => return unsupported(signed_with),
            }
        } else if *signed_with == OID_SIG_ED25519 && key.algorithm == OID_SIG_ED25519 {
            &sig::ED25519
        } else if *signed_with == OID_PKCS1_SHA256WITHRSA
            && key.algorithm == OID_PKCS1_RSAENCRYPTION
        {
            &sig::RSA_PKCS1_2048_8192_SHA256
        } else {
            return unsupported(signed_with);
        };
        sig::UnparsedPublicKey::new(alg, issuer.public_key())
            .verify(self.0.tbs_certificate.as_ref(), &self.0.signature_value.data)
            .map_err(|_| CertError("its signature does not verify with the issuer's key".into()))
    }
}

fn unsupported(alg: &x509_parser::oid_registry::Oid<'_>) -> Result<()> {
    err(format!("unsupported signature algorithm {alg} with the issuer's key"))
}

/// A Name as `CN=..., O=...` (the parser's short names, dotted OIDs for others).
fn name_to_string(name: &X509Name<'_>) -> String {
    if name.iter_attributes().next().is_none() { "<empty name>".into() } else { name.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate with the given serial and subject alternative names.
    fn cert(serial: &[u8], sans: Vec<rcgen::SanType>) -> Vec<u8> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::default();
        params.serial_number = Some(rcgen::SerialNumber::from_slice(serial));
        params.subject_alt_names = sans;
        params.distinguished_name.push(rcgen::DnType::CommonName, "edge-1");
        params.distinguished_name.push(rcgen::DnType::OrganizationName, "stallwatch");
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn reads_what_the_pki_needs() {
        let der = cert(
            &[0x00, 0x9a, 0x01],
            vec![
                rcgen::SanType::DnsName("relay.example".try_into().unwrap()),
                rcgen::SanType::IpAddress("::1".parse().unwrap()),
                rcgen::SanType::URI("stallwatch:agent/edge-1".try_into().unwrap()),
            ],
        );
        let c = Cert::parse(&der).unwrap();
        assert_eq!(c.serial_hex(), "9a01");
        assert_eq!(c.subject_name(), "CN=edge-1, O=stallwatch");
        assert_eq!(c.subject_common_name().unwrap(), Some("edge-1"));
        assert_eq!(
            c.subject_alt_names().unwrap(),
            [
                GeneralName::Dns("relay.example"),
                GeneralName::Ip("::1".parse().unwrap()),
                GeneralName::Uri("stallwatch:agent/edge-1"),
            ]
        );
        assert!(!c.is_ca().unwrap());
        assert_eq!(c.key_usages().unwrap(), KeyUsages::default());
        c.verify_signed_by(&c).unwrap();
        assert!(c.not_before() < c.not_after());
    }

    #[test]
    fn trailing_data_and_truncation_are_errors() {
        let der = cert(&[1], Vec::new());
        let mut longer = der.clone();
        longer.push(0);
        let e = Cert::parse(&longer).err().unwrap().to_string();
        assert!(e.contains("unexpected data after the certificate"), "{e}");
        let e = Cert::parse(&der[..der.len() - 1]).err().unwrap().to_string();
        assert!(e.contains("truncated"), "{e}");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for input in [&b""[..], b"\x30", b"\x30\x00", b"\x30\x03\x30\x01", b"\xff\xff\xff"] {
            assert!(Cert::parse(input).is_err());
        }
    }
}
