//! TLS for the relay's QUIC endpoint and the probes that connect to it: rustls with the ring
//! provider only, TLS 1.3 only. A relay presents a fleet-CA certificate or a self-signed one
//! whose SHA-256 fingerprint it prints; a client verifies one or the other and never skips
//! verification. A relay run from a plan also requires a fleet-CA client certificate (an
//! agent's); a relay run by hand is open to any client.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use stallwatch_proto::plan::normalize_serial;

use anyhow::{Context, Result, bail};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName, UnixTime,
};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

/// ALPN of the `quic-stream` transport.
pub const ALPN_STREAM: &[u8] = b"stallwatch-stream/1";
/// ALPN of the `quic-datagram` transport.
pub const ALPN_DATAGRAM: &[u8] = b"stallwatch-dgram/1";

/// The one crypto provider: ring.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Where in its state directory an agent looks for the fleet's CRL of revoked collector
/// certificates (`stallwatch-collector ca collector-crl` writes it; docs/security.md).
pub const COLLECTOR_CRL_FILE: &str = "collectors.crl.pem";

/// The CRLs in a PEM file (`X509 CRL` blocks); none if the file does not exist. Any other
/// problem is an error: an agent told to honour revocations must not silently stop.
pub fn load_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let crls = CertificateRevocationListDer::pem_file_iter(path)
        .and_then(|crls| crls.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("reading the collector CRL {}", path.display()))?;
    if crls.is_empty() {
        bail!("{}: no X509 CRL in it", path.display());
    }
    Ok(crls)
}

/// How an agent verifies the collector: the fleet CA, and, when it holds the fleet's
/// collector CRL, that CRL too. With a CRL the collector's certificate must not be listed,
/// and the CRL must not be past its next update: a leaked collector key can withhold a newer
/// CRL from agents, but not for longer than that (docs/security.md, "Agent to collector").
pub fn collector_verifier(
    ca: &CertificateDer<'static>,
    crls: Vec<CertificateRevocationListDer<'static>>,
) -> Result<Arc<rustls::client::WebPkiServerVerifier>> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone()).context("the bundle's CA certificate is unusable")?;
    let mut builder =
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider());
    if !crls.is_empty() {
        builder = builder
            .with_crls(crls)
            .only_check_end_entity_revocation()
            .enforce_revocation_expiration();
    }
    builder.build().context("the collector CRL is unusable")
}

/// A relay's certificate chain and key.
#[derive(Debug)]
pub struct Identity {
    pub certs: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Identity { certs: self.certs.clone(), key: self.key.clone_key() }
    }
}

impl Identity {
    /// A fresh self-signed certificate for `names` (DNS names or IP addresses).
    pub fn self_signed(names: &[String]) -> Result<Self> {
        let cert = rcgen::generate_simple_self_signed(names.to_vec())
            .context("generating a self-signed certificate")?;
        Ok(Identity {
            certs: vec![cert.cert.der().clone()],
            key: PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into()),
        })
    }

    /// A certificate chain and key from PEM files.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Self> {
        use rustls::pki_types::pem::PemObject;
        let certs = CertificateDer::pem_file_iter(cert)
            .with_context(|| format!("reading certificates from {}", cert.display()))?
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("parsing certificates in {}", cert.display()))?;
        if certs.is_empty() {
            bail!("no certificate in {}", cert.display());
        }
        let key = PrivateKeyDer::from_pem_file(key)
            .with_context(|| format!("reading the private key from {}", key.display()))?;
        Ok(Identity { certs, key })
    }

    /// SHA-256 fingerprint of the leaf certificate, as `--pin` takes it.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.certs[0])
    }
}

/// SHA-256 of a certificate's DER, lowercase hex.
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, cert.as_ref());
    digest.as_ref().iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Parses a `--pin`: 64 hex digits, optionally with colons, optionally prefixed `sha256:`.
pub fn parse_pin(pin: &str) -> Result<[u8; 32]> {
    let hex: String = pin
        .trim()
        .trim_start_matches("sha256:")
        .trim_start_matches("SHA256:")
        .chars()
        .filter(|c| *c != ':')
        .collect();
    if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        bail!(
            "a pin is the relay certificate's SHA-256 fingerprint: 64 hex digits (colons allowed), got {pin:?}"
        );
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("checked hex");
    }
    Ok(out)
}

/// How a client verifies a relay.
#[derive(Debug, Clone)]
pub enum Trust {
    /// The relay's leaf certificate must have this SHA-256 fingerprint.
    Pin([u8; 32]),
    /// The relay's chain must verify to one of these CA certificates (the fleet CA).
    Ca(Vec<CertificateDer<'static>>),
    /// As [`Trust::Ca`], and the client proves it is in the fleet with its own certificate
    /// (an agent's bundle): what relays run from a plan require.
    Fleet {
        /// The fleet CA.
        cas: Vec<CertificateDer<'static>>,
        /// The agent's certificate chain and key.
        client: Identity,
    },
}

impl Trust {
    /// CA certificates from a PEM file.
    pub fn ca_file(path: &Path) -> Result<Self> {
        use rustls::pki_types::pem::PemObject;
        let certs = CertificateDer::pem_file_iter(path)
            .with_context(|| format!("reading CA certificates from {}", path.display()))?
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("parsing CA certificates in {}", path.display()))?;
        if certs.is_empty() {
            bail!("no CA certificate in {}", path.display());
        }
        Ok(Trust::Ca(certs))
    }
}

/// The congestion window a QUIC connection starts with: RFC 9002 section 7.2's
/// `min(10 * max_datagram_size, max(14720, 2 * max_datagram_size))` for 1,200-byte datagrams.
const INITIAL_WINDOW: u64 = 12_000;

/// QUIC transport settings shared by relays and clients.
fn transport_config() -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    t.max_idle_timeout(Some(Duration::from_secs(15).try_into().expect("valid idle timeout")));
    t.keep_alive_interval(Some(Duration::from_secs(2)));
    // A GOP stream per medium every 2 s, with slack for slow viewers' unfinished ones.
    t.max_concurrent_uni_streams(256u32.into());
    // Room for a 1080p keyframe burst per connection in either direction.
    t.datagram_receive_buffer_size(Some(4 * 1024 * 1024));
    t.datagram_send_buffer_size(4 * 1024 * 1024);
    t.stream_receive_window((8u32 * 1024 * 1024).into());
    t.receive_window((16u32 * 1024 * 1024).into());
    t.send_window(16 * 1024 * 1024);
    // BBR, as QUIC media stacks deploy it: with quinn's default (CUBIC) a 2 Mbit/s stream over
    // a 180 ms round trip with 0.3 % random loss cannot keep up (loss-based windows stay under
    // its rate), and datagrams queued for 12 s (docs/protocol.md, "Congestion control").
    // Its initial window is RFC 9002's (10 datagrams of 1,200 bytes), not quinn's BBR default
    // of 200: a joining viewer's GOP-cache replay sent as one 240 KB burst overflowed its
    // socket buffer (52 packets lost on a clean loopback path).
    let mut bbr = quinn::congestion::BbrConfig::default();
    bbr.initial_window(INITIAL_WINDOW);
    t.congestion_controller_factory(std::sync::Arc::new(bbr));
    t
}

/// The relay's QUIC server configuration: TLS 1.3, both stallwatch ALPNs. With `client_ca`,
/// a client must present a certificate chaining to it whose serial `revoked` does not list
/// (a relay run from a plan); without, any client may connect.
pub fn server_config(
    identity: &Identity,
    client_ca: Option<&[CertificateDer<'static>]>,
    revoked: &RevokedClients,
) -> Result<quinn::ServerConfig> {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("configuring TLS 1.3")?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(cas) => {
            let mut roots = RootCertStore::empty();
            for ca in cas {
                roots.add(ca.clone()).context("adding the fleet CA certificate")?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider(),
            )
            .build()
            .context("building the fleet client certificate verifier")?;
            builder.with_client_cert_verifier(Arc::new(UnrevokedClientVerifier {
                inner: verifier,
                revoked: revoked.clone(),
            }))
        }
    };
    let mut tls = builder
        .with_single_cert(identity.certs.clone(), identity.key.clone_key())
        .context("the relay certificate and key do not match or are unsupported")?;
    tls.alpn_protocols = vec![ALPN_STREAM.to_vec(), ALPN_DATAGRAM.to_vec()];
    tls.max_early_data_size = 0;
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .context("building the QUIC TLS configuration")?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(Arc::new(transport_config()));
    Ok(config)
}

/// A client configuration for one transport's ALPN, verifying the relay by `trust`.
pub fn client_config(trust: &Trust, alpn: &[u8]) -> Result<quinn::ClientConfig> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("configuring TLS 1.3")?;
    let mut tls = match trust {
        Trust::Pin(pin) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinVerifier {
                pin: *pin,
                provider: provider(),
            }))
            .with_no_client_auth(),
        Trust::Ca(cas) => builder.with_root_certificates(roots(cas)?).with_no_client_auth(),
        Trust::Fleet { cas, client } => builder
            .with_root_certificates(roots(cas)?)
            .with_client_auth_cert(client.certs.clone(), client.key.clone_key())
            .context("the agent certificate and key do not match or are unsupported")?,
    };
    tls.alpn_protocols = vec![alpn.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .context("building the QUIC TLS configuration")?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(Arc::new(transport_config()));
    Ok(config)
}

fn roots(cas: &[CertificateDer<'static>]) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for ca in cas {
        roots.add(ca.clone()).context("adding a CA certificate")?;
    }
    Ok(roots)
}

/// The serials of the client certificates a relay refuses (the collector's revoked agents,
/// from the plan), shared with the relay's TLS verifier so a new list applies to the next
/// handshake without restarting the relay.
#[derive(Debug, Clone, Default)]
pub struct RevokedClients(Arc<RwLock<HashSet<String>>>);

impl RevokedClients {
    /// Replaces the list (serials as hex; colons, case and sign padding ignored).
    pub fn replace<'a>(&self, serials: impl IntoIterator<Item = &'a String>) {
        let set = serials.into_iter().map(|s| normalize_serial(s)).collect();
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = set;
    }

    /// Whether `serial` (normalized hex) is listed.
    fn contains(&self, serial: &str) -> bool {
        self.0.read().unwrap_or_else(PoisonError::into_inner).contains(serial)
    }

    /// How many serials are listed.
    pub fn len(&self) -> usize {
        self.0.read().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Whether none is listed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The serial number of a DER certificate as normalized hex, or `None` if it is not a
/// certificate.
pub fn certificate_serial(der: &[u8]) -> Option<String> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    if cert.raw_serial().is_empty() {
        return None;
    }
    let hex: String = cert.raw_serial().iter().map(|b| format!("{b:02x}")).collect();
    Some(normalize_serial(&hex))
}

/// The fleet-CA check, then the revocation list: a revoked agent's certificate fails the
/// handshake (`certificate_revoked` alert) like a stranger's.
#[derive(Debug)]
struct UnrevokedClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    revoked: RevokedClients,
}

impl ClientCertVerifier for UnrevokedClientVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self.inner.verify_client_cert(end_entity, intermediates, now)?;
        match certificate_serial(end_entity) {
            Some(serial) if !self.revoked.contains(&serial) => Ok(verified),
            Some(serial) => {
                tracing::info!(%serial, "relay: refused a revoked agent certificate");
                Err(rustls::Error::InvalidCertificate(rustls::CertificateError::Revoked))
            }
            None => Err(rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Accepts exactly the certificate with a pinned SHA-256 fingerprint, and still checks the
/// handshake signature, so the relay must hold the certificate's key.
#[derive(Debug)]
struct PinVerifier {
    pin: [u8; 32],
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let digest = ring::digest::digest(&ring::digest::SHA256, end_entity.as_ref());
        if digest.as_ref() == self.pin {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "relay certificate fingerprint {} does not match the pinned one",
                fingerprint(end_entity)
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("TLS 1.2 is not allowed".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_parse_in_the_forms_people_paste() {
        let id = Identity::self_signed(&["localhost".into()]).unwrap();
        let fp = id.fingerprint();
        assert_eq!(fp.len(), 64);
        let with_colons: String = fp
            .as_bytes()
            .chunks(2)
            .map(|c| std::str::from_utf8(c).unwrap().to_uppercase())
            .collect::<Vec<_>>()
            .join(":");
        assert_eq!(parse_pin(&fp).unwrap(), parse_pin(&with_colons).unwrap());
        assert_eq!(parse_pin(&format!("sha256:{fp}")).unwrap(), parse_pin(&fp).unwrap());
        let err = parse_pin("abc").unwrap_err().to_string();
        assert!(err.contains("64 hex digits"), "{err}");
    }

    /// The serial read from a certificate is the one it was issued with, in the collector's
    /// form (a high first bit gets a `00` sign byte in DER, which the form drops).
    #[test]
    fn certificate_serials_read_as_the_collector_writes_them() {
        for serial in [vec![0x01], vec![0x7f, 0x02, 0x03], vec![0x9a; 20], vec![0x80, 0x00]] {
            let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
            let mut params = rcgen::CertificateParams::new(vec!["agent".into()]).unwrap();
            params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
            let cert = params.self_signed(&key).unwrap();
            let hex: String = serial.iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(certificate_serial(cert.der()), Some(normalize_serial(&hex)));
        }
        assert_eq!(certificate_serial(b"not a certificate"), None);
        assert_eq!(certificate_serial(&[0x30, 0x03, 0x30, 0x01]), None);
        assert_eq!(normalize_serial("00:9A:BC"), "9abc");
    }
}
