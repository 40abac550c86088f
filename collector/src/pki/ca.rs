//! The fleet CA: its directory, and issuing agent and collector certificates.

use std::path::{Path, PathBuf};

use rcgen::string::{Ia5String, PrintableString};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, DnValue,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
    SanType, SerialNumber,
};
use ring::rand::SecureRandom;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::{Duration, OffsetDateTime};

use super::files::{self, MAX_SMALL_FILE, MODE_PUBLIC, MODE_SECRET, pem_block, rfc3339};
use super::hex;
use super::identity::{Host, parse_host};
use super::lists::{IssuedAgent, IssuedList, RevocationList};
use super::x509::Cert;
use super::{AgentIdentity, PkiError, fingerprint};

/// The CA certificate's common name.
pub const CA_COMMON_NAME: &str = "stallwatch fleet CA";
/// How long a new CA is valid: ten years, leap days included.
pub const CA_VALIDITY_DAYS: i64 = 3653;
/// How far before "now" certificates start, so a peer whose clock is a little behind the
/// CA's still accepts them.
pub const BACKDATE: Duration = Duration::hours(1);

/// Default lifetime of a collector certificate, in days. Agents trust any certificate the
/// CA signed for the collector's name, so a leaked collector key works until its certificate
/// expires or agents learn it is revoked ([`COLLECTOR_CRL_FILE`]): keep it short and renew it
/// (docs/security.md, "Agent to collector").
pub const COLLECTOR_VALIDITY_DAYS: u32 = 90;
/// Default days a collector CRL is valid; agents that hold one refuse the collector once it
/// has expired, so it must be signed again (`ca collector-crl`) well before.
pub const COLLECTOR_CRL_DAYS: u32 = 30;
/// The CA-signed list of revoked collector certificates (PEM `X509 CRL`), for agents.
pub const COLLECTOR_CRL_FILE: &str = "collectors.crl.pem";

/// The files in a CA directory.
pub const CA_CERT_FILE: &str = "ca.pem";
pub const CA_KEY_FILE: &str = "ca.key";
pub const REVOKED_FILE: &str = "revoked.json";
pub const ISSUED_FILE: &str = "issued.json";

/// A certificate's validity period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl Validity {
    /// `days` days from `now`, starting [`BACKDATE`] early. `days` must be at least 1.
    pub fn days_from(now: OffsetDateTime, days: u32) -> Result<Self, PkiError> {
        if days == 0 {
            return Err(PkiError::Validity("--days must be at least 1".into()));
        }
        Validity::new(now - BACKDATE, now + Duration::days(i64::from(days)))
    }

    /// An explicit period, which may lie in the past (tests mint expired certificates).
    /// Times are truncated to whole seconds, as certificates store them.
    pub fn new(not_before: OffsetDateTime, not_after: OffsetDateTime) -> Result<Self, PkiError> {
        let whole = |t: OffsetDateTime| t.to_offset(time::UtcOffset::UTC).replace_nanosecond(0);
        let (not_before, not_after) = match (whole(not_before), whole(not_after)) {
            (Ok(b), Ok(a)) => (b, a),
            _ => return Err(PkiError::Validity("time out of range".into())),
        };
        if not_after <= not_before {
            return Err(PkiError::Validity(format!(
                "not_after {} is not after not_before {}",
                rfc3339(not_after),
                rfc3339(not_before)
            )));
        }
        for t in [not_before, not_after] {
            if !(1950..=9999).contains(&t.year()) {
                return Err(PkiError::Validity(format!(
                    "{} is outside the years 1950-9999 a certificate can hold",
                    rfc3339(t)
                )));
            }
        }
        Ok(Validity { not_before, not_after })
    }
}

/// The fleet CA, loaded from its directory (`ca.pem`, `ca.key`, `issued.json`,
/// `revoked.json`).
///
/// Only the `ca` command needs this (it holds the CA's private key). A collector needs only
/// `ca.pem` ([`load_ca_certificate`]) and `revoked.json` ([`RevocationList::load`]).
pub struct Ca {
    dir: PathBuf,
    cert: CertificateDer<'static>,
    key: KeyPair,
    /// The CA's name, key-identifier method and key usages, as rcgen's issuer needs them.
    params: CertificateParams,
    not_after: OffsetDateTime,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").field("dir", &self.dir).field("key", &"[secret]").finish()
    }
}

/// A freshly issued agent credential: what goes into the agent's bundle file.
#[derive(Debug)]
pub struct AgentCredential {
    pub identity: AgentIdentity,
    /// Serial number, lowercase hex.
    pub serial: String,
    pub validity: Validity,
    pub cert: CertificateDer<'static>,
    pub key: PrivatePkcs8KeyDer<'static>,
    pub ca: CertificateDer<'static>,
}

/// A freshly issued collector (TLS server) credential.
#[derive(Debug)]
pub struct CollectorCredential {
    /// The DNS names and IP addresses in the certificate.
    pub hosts: Vec<String>,
    /// Serial number, lowercase hex.
    pub serial: String,
    pub validity: Validity,
    pub cert: CertificateDer<'static>,
    pub key: PrivatePkcs8KeyDer<'static>,
}

/// What `revoke` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// False if the name and all its serials were already revoked.
    pub changed: bool,
    /// The serials issued to the name (all now revoked).
    pub serials: Vec<String>,
}

impl Ca {
    /// Creates a CA in `dir` (created with mode 0700 if missing): an ECDSA P-256 key in
    /// `ca.key` (0600), a self-signed certificate valid for ten years in `ca.pem`, and empty
    /// `issued.json` and `revoked.json`. Refuses if `dir` already holds a CA unless `force`,
    /// which replaces it and empties both lists.
    pub fn init(dir: &Path, now: OffsetDateTime, force: bool) -> Result<Ca, PkiError> {
        if !force {
            for file in [CA_CERT_FILE, CA_KEY_FILE] {
                let existing = dir.join(file);
                if existing.exists() {
                    return Err(PkiError::CaExists { dir: dir.to_path_buf(), existing });
                }
            }
        }
        files::create_private_dir(dir)?;
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let key_id = ring::digest::digest(&ring::digest::SHA256, key.public_key_raw());
        let mut params = CertificateParams::default();
        let validity = Validity::new(now - BACKDATE, now + Duration::days(CA_VALIDITY_DAYS))?;
        params.not_before = validity.not_before;
        params.not_after = validity.not_after;
        params.serial_number = Some(random_serial()?);
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, CA_COMMON_NAME);
        name.push(DnType::OrganizationName, "stallwatch");
        // Each CA gets its own name, so certificates from two fleets never look alike.
        name.push(DnType::OrganizationalUnitName, format!("ca {}", hex(&key_id.as_ref()[..4])));
        params.distinguished_name = name;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key)?;

        let info = Cert::parse(cert.der()).map_err(|e| PkiError::Certificate(e.to_string()))?;
        let pem = pem_block(
            &[
                format!("stallwatch fleet CA certificate: {}", info.subject_name()),
                format!(
                    "serial {}, valid {} to {}",
                    info.serial_hex(),
                    rfc3339(info.not_before()),
                    rfc3339(info.not_after())
                ),
                format!("sha256 fingerprint {}", fingerprint(cert.der())),
                "Collectors verify agents with it; agents get a copy in their bundles.".into(),
            ],
            "CERTIFICATE",
            cert.der(),
        );
        let key_pem = pem_block(
            &[
                "stallwatch fleet CA private key (ECDSA P-256, PKCS#8).".into(),
                "Whoever holds it can issue agent and collector certificates: keep it offline."
                    .into(),
            ],
            "PRIVATE KEY",
            key.serialized_der(),
        );
        files::write_atomic(&dir.join(CA_KEY_FILE), key_pem.as_bytes(), MODE_SECRET)?;
        files::write_atomic(&dir.join(CA_CERT_FILE), pem.as_bytes(), MODE_PUBLIC)?;
        RevocationList::default().save(&dir.join(REVOKED_FILE))?;
        IssuedList::default().save(&dir.join(ISSUED_FILE))?;
        Ca::load(dir)
    }

    /// Loads the CA in `dir`, checking that `ca.key` belongs to `ca.pem`.
    pub fn load(dir: &Path) -> Result<Ca, PkiError> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        for missing in [&cert_path, &key_path] {
            if !missing.exists() {
                return Err(PkiError::NoCa { dir: dir.to_path_buf(), missing: missing.clone() });
            }
        }
        let cert = load_ca_certificate(&cert_path)?;
        let bad_key = |reason: String| PkiError::File { path: key_path.clone(), reason };
        let key_der = read_private_key(&key_path)?;
        let key = KeyPair::try_from(key_der.secret_pkcs8_der())
            .map_err(|e| bad_key(format!("unreadable private key: {e}")))?;
        if key.algorithm() != &PKCS_ECDSA_P256_SHA256 {
            return Err(bad_key("not an ECDSA P-256 key".into()));
        }
        if files::readable_by_others(&key_path) == Some(true) {
            tracing::warn!(path = %key_path.display(), "the CA key is readable by others; chmod 600 it");
        }
        let parsed = Cert::parse(&cert).map_err(|e| PkiError::File {
            path: cert_path.clone(),
            reason: format!("malformed certificate: {e}"),
        })?;
        if parsed.public_key() != key.public_key_raw() {
            return Err(bad_key(format!("is not the key of {}", cert_path.display())));
        }
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen_name(&parsed)
            .map_err(|reason| PkiError::File { path: cert_path.clone(), reason })?;
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let not_after = parsed.not_after();
        Ok(Ca { dir: dir.to_path_buf(), cert, key, params, not_after })
    }

    /// The CA directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The CA certificate.
    pub fn certificate(&self) -> &CertificateDer<'static> {
        &self.cert
    }

    /// End of the CA's validity.
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    /// `DIR/revoked.json`.
    pub fn revoked_path(&self) -> PathBuf {
        self.dir.join(REVOKED_FILE)
    }

    /// `DIR/issued.json`.
    pub fn issued_path(&self) -> PathBuf {
        self.dir.join(ISSUED_FILE)
    }

    /// The agent certificates issued so far (empty if `issued.json` is missing).
    pub fn issued(&self) -> Result<IssuedList, PkiError> {
        let path = self.issued_path();
        if path.exists() { IssuedList::load(&path) } else { Ok(IssuedList::default()) }
    }

    /// The revocation list.
    pub fn revocations(&self) -> Result<RevocationList, PkiError> {
        RevocationList::load(&self.revoked_path())
    }

    /// Issues a client certificate for an agent and records it in `issued.json`. Refuses a
    /// revoked name (see [`Ca::reinstate`]). `validity` may lie in the past, for tests.
    pub fn issue_agent(
        &self,
        identity: &AgentIdentity,
        validity: Validity,
    ) -> Result<AgentCredential, PkiError> {
        self.issue_agent_relay(identity, validity, &[])
    }

    /// Like [`Ca::issue_agent`], for an agent that also runs a relay: the certificate is also
    /// a TLS server certificate for `relay_hosts` (the DNS names or IP addresses in the
    /// `[[relays]]` addresses that point at it), so probes verify the relay against the fleet
    /// CA like any TLS server. With no hosts it is a plain agent certificate.
    pub fn issue_agent_relay(
        &self,
        identity: &AgentIdentity,
        validity: Validity,
        relay_hosts: &[String],
    ) -> Result<AgentCredential, PkiError> {
        identity.validate()?;
        self.check_within_ca(&validity)?;
        if self.revocations()?.is_name_revoked(&identity.name) {
            return Err(PkiError::AgentRevoked {
                name: identity.name.clone(),
                revoked: self.revoked_path(),
            });
        }
        let mut params = leaf_params(&validity)?;
        params.distinguished_name.push(DnType::CommonName, identity.name.as_str());
        let uri = Ia5String::try_from(identity.to_uri())?;
        params.subject_alt_names = vec![SanType::URI(uri)];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        if !relay_hosts.is_empty() {
            params.subject_alt_names.extend(host_sans(relay_hosts)?.0);
            params.extended_key_usages.push(ExtendedKeyUsagePurpose::ServerAuth);
        }
        let (cert, key, serial) = self.sign(&params)?;

        let mut issued = self.issued()?;
        issued.agents.push(IssuedAgent {
            name: identity.name.clone(),
            serial: serial.clone(),
            region: identity.region.clone(),
            network_type: identity.network_type.clone(),
            not_before: validity.not_before,
            not_after: validity.not_after,
        });
        issued.save(&self.issued_path())?;
        Ok(AgentCredential {
            identity: identity.clone(),
            serial,
            validity,
            cert,
            key,
            ca: self.cert.clone(),
        })
    }

    /// Issues a TLS server certificate for the collector, valid for `hosts` (DNS names or IP
    /// addresses; the first is also the CN).
    pub fn issue_collector(
        &self,
        hosts: &[String],
        validity: Validity,
    ) -> Result<CollectorCredential, PkiError> {
        if hosts.is_empty() {
            return Err(PkiError::InvalidField {
                field: "host",
                value: String::new(),
                expected: "at least one DNS name or IP address".into(),
            });
        }
        self.check_within_ca(&validity)?;
        let mut params = leaf_params(&validity)?;
        let (sans, names) = host_sans(hosts)?;
        params.subject_alt_names.extend(sans);
        params.distinguished_name.push(DnType::CommonName, names[0].as_str());
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let (cert, key, serial) = self.sign(&params)?;
        Ok(CollectorCredential { hosts: names, serial, validity, cert, key })
    }

    /// Revokes every certificate of agent `name`, now and later, in `revoked.json`.
    /// Idempotent. Without `force`, `name` must have been issued by this CA.
    pub fn revoke(
        &self,
        name: &str,
        force: bool,
        now: OffsetDateTime,
    ) -> Result<Revocation, PkiError> {
        super::identity::validate_agent_name(name)?;
        let serials = self.issued()?.serials_of(name);
        if serials.is_empty() && !force {
            return Err(PkiError::UnknownAgent { name: name.into(), issued: self.issued_path() });
        }
        let mut list = self.revocations()?;
        let changed = list.revoke(name, &serials, now);
        if changed {
            list.save(&self.revoked_path())?;
        }
        Ok(Revocation { changed, serials })
    }

    /// Revokes collector certificate `serial` in `revoked.json` and signs a new collector CRL
    /// valid for `days` ([`Ca::write_collector_crl`]). Returns whether the serial was not
    /// revoked before, and the CRL's path.
    pub fn revoke_collector(
        &self,
        serial: &str,
        now: OffsetDateTime,
        days: u32,
    ) -> Result<(bool, PathBuf), PkiError> {
        let normalized = stallwatch_proto::plan::normalize_serial(serial);
        if normalized.is_empty() || !normalized.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(PkiError::InvalidField {
                field: "serial",
                value: serial.into(),
                expected:
                    "the certificate's serial number in hex, as `ca issue-collector` printed it"
                        .into(),
            });
        }
        let mut list = self.revocations()?;
        let changed = list.revoke_collector(&normalized, now);
        if changed {
            list.save(&self.revoked_path())?;
        }
        Ok((changed, self.write_collector_crl(now, days)?))
    }

    /// Signs the collector CRL (every revoked collector serial; issued `now`, next update in
    /// `days`; numbered one above the last) and writes it to [`COLLECTOR_CRL_FILE`] in the CA
    /// directory. Returns its path.
    pub fn write_collector_crl(&self, now: OffsetDateTime, days: u32) -> Result<PathBuf, PkiError> {
        if days == 0 {
            return Err(PkiError::Validity("--crl-days must be at least 1".into()));
        }
        let mut list = self.revocations()?;
        let number = list.next_collector_crl_number();
        let mut revoked_certs = Vec::new();
        for (serial, at) in list.collectors() {
            let bytes = unhex(serial).ok_or_else(|| PkiError::File {
                path: self.revoked_path(),
                reason: format!("collector serial {serial:?} is not hex"),
            })?;
            revoked_certs.push(rcgen::RevokedCertParams {
                serial_number: SerialNumber::from_slice(&bytes),
                revocation_time: at,
                reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                invalidity_date: None,
            });
        }
        let period = Validity::days_from(now, days)?;
        let this_update = period.not_before;
        let params = rcgen::CertificateRevocationListParams {
            this_update,
            next_update: period.not_after,
            crl_number: SerialNumber::from(number),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&Issuer::from_params(&self.params, &self.key))?;
        let path = self.dir.join(COLLECTOR_CRL_FILE);
        let pem = pem_block(
            &[
                format!("stallwatch revoked collector certificates, CRL number {number}"),
                format!(
                    "valid {} to {}; sign it again before then (ca collector-crl)",
                    rfc3339(this_update),
                    rfc3339(params.next_update)
                ),
                "Agents read it from STATE_DIR/collectors.crl.pem.".into(),
            ],
            "X509 CRL",
            crl.der(),
        );
        files::write_atomic(&path, pem.as_bytes(), MODE_PUBLIC)?;
        // The number is recorded after the CRL is written: a failed write reuses it.
        list.save(&self.revoked_path())?;
        Ok(path)
    }

    /// Lifts the revocation of `name` so it can be issued a new certificate; certificates
    /// issued before stay revoked by serial. Returns whether the name was revoked.
    pub fn reinstate(&self, name: &str) -> Result<bool, PkiError> {
        let mut list = self.revocations()?;
        let changed = list.reinstate(name);
        if changed {
            list.save(&self.revoked_path())?;
        }
        Ok(changed)
    }

    fn check_within_ca(&self, validity: &Validity) -> Result<(), PkiError> {
        if validity.not_after > self.not_after {
            return Err(PkiError::Validity(format!(
                "the certificate would outlive the CA, which expires {}",
                rfc3339(self.not_after)
            )));
        }
        Ok(())
    }

    /// Makes a key, signs `params` for it, and checks the result chains to the CA.
    fn sign(
        &self,
        params: &CertificateParams,
    ) -> Result<(CertificateDer<'static>, PrivatePkcs8KeyDer<'static>, String), PkiError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer)?;
        let der = cert.der().clone();
        // rcgen rebuilds the issuer name from ca.pem; make sure it came out byte-identical and
        // the signature verifies, so no certificate that fails to chain ever leaves this CA.
        verify_issued_by(&der, &self.cert).map_err(|e| PkiError::File {
            path: self.dir.join(CA_CERT_FILE),
            reason: format!("cannot issue certificates that chain to this CA ({e})"),
        })?;
        let serial = super::certificate_serial(&der)?;
        Ok((der, PrivatePkcs8KeyDer::from(key.serialize_der()), serial))
    }
}

impl AgentCredential {
    /// The bundle: agent certificate, agent key, CA certificate, each with comments.
    pub fn bundle_pem(&self) -> String {
        let ca_name = Cert::parse(&self.ca)
            .map(|c| c.subject_name())
            .unwrap_or_else(|_| CA_COMMON_NAME.into());
        let mut out = format!(
            "# stallwatch agent bundle for {}\n\
             # Holds the agent's private key: keep it secret (mode 0600). Use it with\n\
             # `stallwatch-agent run --bundle FILE --collector URL`.\n\n",
            self.identity
        );
        out += &pem_block(
            &[
                format!("Agent certificate: CN={}, {}", self.identity.name, self.identity.to_uri()),
                format!(
                    "serial {}, valid {} to {}, issued by {ca_name}",
                    self.serial,
                    rfc3339(self.validity.not_before),
                    rfc3339(self.validity.not_after)
                ),
            ],
            "CERTIFICATE",
            &self.cert,
        );
        out.push('\n');
        out += &pem_block(
            &[format!("Agent private key for {} (ECDSA P-256, PKCS#8)", self.identity.name)],
            "PRIVATE KEY",
            self.key.secret_pkcs8_der(),
        );
        out.push('\n');
        out += &pem_block(
            &[
                format!("Fleet CA certificate: {ca_name}"),
                format!(
                    "sha256 fingerprint {}; the agent verifies the collector with it",
                    fingerprint(&self.ca)
                ),
            ],
            "CERTIFICATE",
            &self.ca,
        );
        out
    }

    /// Writes the bundle to `path` with mode 0600, replacing any file there.
    pub fn write_bundle(&self, path: &Path) -> Result<(), PkiError> {
        files::write_atomic(path, self.bundle_pem().as_bytes(), MODE_SECRET)
    }

    /// The private key, as rustls takes it.
    pub fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key.clone_key())
    }
}

impl CollectorCredential {
    /// The certificate as PEM, with comments.
    pub fn cert_pem(&self) -> String {
        pem_block(
            &[
                format!("stallwatch collector certificate for {}", self.hosts.join(", ")),
                format!(
                    "serial {}, valid {} to {}",
                    self.serial,
                    rfc3339(self.validity.not_before),
                    rfc3339(self.validity.not_after)
                ),
            ],
            "CERTIFICATE",
            &self.cert,
        )
    }

    /// The private key as PEM, with a comment.
    pub fn key_pem(&self) -> String {
        pem_block(
            &[format!(
                "stallwatch collector private key for {} (ECDSA P-256, PKCS#8)",
                self.hosts.join(", ")
            )],
            "PRIVATE KEY",
            self.key.secret_pkcs8_der(),
        )
    }

    /// Writes the certificate (mode 0644) and key (mode 0600).
    pub fn write(&self, cert_path: &Path, key_path: &Path) -> Result<(), PkiError> {
        files::write_atomic(key_path, self.key_pem().as_bytes(), MODE_SECRET)?;
        files::write_atomic(cert_path, self.cert_pem().as_bytes(), MODE_PUBLIC)
    }

    /// The private key, as rustls takes it.
    pub fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key.clone_key())
    }
}

/// Reads a CA certificate (`ca.pem`) and checks it is a CA. This is what a collector needs to
/// verify agents; it does not need the CA's key.
pub fn load_ca_certificate(path: &Path) -> Result<CertificateDer<'static>, PkiError> {
    let bad = |reason: String| PkiError::File { path: path.to_path_buf(), reason };
    let bytes = files::read_capped(path, MAX_SMALL_FILE)?;
    let mut certs = Vec::new();
    for section in <(rustls_pki_types::pem::SectionKind, Vec<u8>) as rustls_pki_types::pem::PemObject>::pem_slice_iter(&bytes) {
        let (kind, der) = section.map_err(|e| bad(format!("invalid PEM: {e}")))?;
        if kind == rustls_pki_types::pem::SectionKind::Certificate {
            certs.push(CertificateDer::from(der));
        }
    }
    let cert = match certs.len() {
        1 => certs.remove(0),
        0 => return Err(bad("no certificate found (expected one PEM CERTIFICATE block)".into())),
        n => return Err(bad(format!("{n} certificates found; expected only the CA certificate"))),
    };
    let parsed = Cert::parse(&cert).map_err(|e| bad(format!("malformed certificate: {e}")))?;
    if !parsed.is_ca().map_err(|e| bad(format!("malformed certificate: {e}")))? {
        return Err(bad("not a CA certificate (basic constraints do not allow signing)".into()));
    }
    Ok(cert)
}

/// Checks that `cert` was signed by `ca` (names chain, key identifiers agree, signature
/// verifies). Not a full path validation: validity dates and usages are rustls' job.
pub fn verify_issued_by(cert: &[u8], ca: &[u8]) -> Result<(), PkiError> {
    let cert = Cert::parse(cert).map_err(|e| PkiError::Certificate(e.to_string()))?;
    let ca = Cert::parse(ca).map_err(|e| PkiError::Certificate(format!("the CA: {e}")))?;
    cert.verify_signed_by(&ca).map_err(|e| PkiError::NotIssuedBy(e.to_string()))
}

/// The one PKCS#8 private key in a PEM file.
fn read_private_key(path: &Path) -> Result<PrivatePkcs8KeyDer<'static>, PkiError> {
    use rustls_pki_types::pem::{PemObject, SectionKind};
    let bad = |reason: String| PkiError::File { path: path.to_path_buf(), reason };
    let bytes = files::read_capped(path, MAX_SMALL_FILE)?;
    let mut keys = Vec::new();
    for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(&bytes) {
        let (kind, der) = section.map_err(|e| bad(format!("invalid PEM: {e}")))?;
        match kind {
            SectionKind::PrivateKey => keys.push(PrivatePkcs8KeyDer::from(der)),
            SectionKind::EcPrivateKey | SectionKind::RsaPrivateKey => {
                return Err(bad("the key is not PKCS#8 (expected a PEM PRIVATE KEY block)".into()));
            }
            _ => {}
        }
    }
    match keys.len() {
        1 => Ok(keys.remove(0)),
        0 => Err(bad("no private key found (expected one PEM PRIVATE KEY block)".into())),
        n => Err(bad(format!("{n} private keys found; expected one"))),
    }
}

/// Parameters shared by agent and collector certificates.
fn leaf_params(validity: &Validity) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::default();
    params.not_before = validity.not_before;
    params.not_after = validity.not_after;
    params.serial_number = Some(random_serial()?);
    params.distinguished_name = DistinguishedName::new();
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

/// Bytes of an even-length lowercase or uppercase hex string.
fn unhex(s: &str) -> Option<Vec<u8>> {
    let s = if s.len() % 2 == 1 { format!("0{s}") } else { s.to_string() };
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok()).collect()
}

/// 128 random bits, positive, encoded in exactly 16 bytes.
fn random_serial() -> Result<SerialNumber, PkiError> {
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| PkiError::Generate(rcgen::Error::RingUnspecified))?;
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

/// rcgen's form of a certificate's subject, so certificates issued from a loaded CA carry
/// its exact name. [`Ca::sign`] checks the result byte for byte.
fn rcgen_name(cert: &Cert<'_>) -> Result<DistinguishedName, String> {
    use x509_parser::asn1_rs::Tag;
    use x509_parser::oid_registry as oid;
    let mut name = DistinguishedName::new();
    for attr in cert.subject_attributes() {
        let ty = match attr.attr_type() {
            t if *t == oid::OID_X509_COMMON_NAME => DnType::CommonName,
            t if *t == oid::OID_X509_COUNTRY_NAME => DnType::CountryName,
            t if *t == oid::OID_X509_LOCALITY_NAME => DnType::LocalityName,
            t if *t == oid::OID_X509_STATE_OR_PROVINCE_NAME => DnType::StateOrProvinceName,
            t if *t == oid::OID_X509_ORGANIZATION_NAME => DnType::OrganizationName,
            t if *t == oid::OID_X509_ORGANIZATIONAL_UNIT => DnType::OrganizationalUnitName,
            other => {
                return Err(format!(
                    "the CA's name has an attribute stallwatch cannot reproduce ({other})"
                ));
            }
        };
        let text =
            attr.as_str().map_err(|_| "the CA's name has a value that is not text")?.to_string();
        let value = match attr.attr_value().tag() {
            Tag::Utf8String => DnValue::Utf8String(text),
            Tag::PrintableString => DnValue::PrintableString(
                PrintableString::try_from(text).map_err(|e| format!("the CA's name: {e}"))?,
            ),
            Tag::Ia5String => DnValue::Ia5String(
                Ia5String::try_from(text).map_err(|e| format!("the CA's name: {e}"))?,
            ),
            _ => return Err("the CA's name uses an unsupported string type".into()),
        };
        name.push(ty, value);
    }
    Ok(name)
}

/// Subject alternative names for `hosts` (DNS names or IP addresses), without repeats, and
/// the names as written.
fn host_sans(hosts: &[String]) -> Result<(Vec<SanType>, Vec<String>), PkiError> {
    let mut sans = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for host in hosts {
        let (san, name) = match parse_host(host)? {
            Host::Dns(name) => {
                let written = name.clone();
                (SanType::DnsName(Ia5String::try_from(name)?), written)
            }
            Host::Ip(ip) => (SanType::IpAddress(ip), ip.to_string()),
        };
        if !names.contains(&name) {
            sans.push(san);
            names.push(name);
        }
    }
    Ok((sans, names))
}
