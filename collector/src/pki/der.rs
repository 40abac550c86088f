//! A small, strict DER reader for the parts of X.509 certificates the PKI needs: names,
//! validity, the public key, and the extensions stallwatch uses (subject alternative names,
//! basic constraints, extended key usage, key identifiers).
//!
//! It is not a general ASN.1 library. It reads certificates the fleet CA wrote, and refuses
//! anything else with an error: every read is bounds-checked, lengths must be definite, and
//! no input can make it panic or allocate more than the input's size.

use std::fmt::Write as _;
use std::net::IpAddr;

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

/// Why a certificate could not be read; the caller adds which file or peer it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DerError(pub(crate) String);

impl std::fmt::Display for DerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

type Result<T> = std::result::Result<T, DerError>;

fn err<T>(msg: impl Into<String>) -> Result<T> {
    Err(DerError(msg.into()))
}

pub(crate) const TAG_BOOLEAN: u8 = 0x01;
pub(crate) const TAG_INTEGER: u8 = 0x02;
pub(crate) const TAG_BIT_STRING: u8 = 0x03;
pub(crate) const TAG_OCTET_STRING: u8 = 0x04;
pub(crate) const TAG_OID: u8 = 0x06;
pub(crate) const TAG_UTF8_STRING: u8 = 0x0c;
pub(crate) const TAG_PRINTABLE_STRING: u8 = 0x13;
pub(crate) const TAG_IA5_STRING: u8 = 0x16;
pub(crate) const TAG_UTC_TIME: u8 = 0x17;
pub(crate) const TAG_GENERALIZED_TIME: u8 = 0x18;
pub(crate) const TAG_SEQUENCE: u8 = 0x30;
pub(crate) const TAG_SET: u8 = 0x31;

/// Object identifiers, as the content bytes of their DER encoding.
pub(crate) mod oid {
    pub(crate) const COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
    pub(crate) const COUNTRY_NAME: &[u8] = &[0x55, 0x04, 0x06];
    pub(crate) const LOCALITY_NAME: &[u8] = &[0x55, 0x04, 0x07];
    pub(crate) const STATE_OR_PROVINCE_NAME: &[u8] = &[0x55, 0x04, 0x08];
    pub(crate) const ORGANIZATION_NAME: &[u8] = &[0x55, 0x04, 0x0a];
    pub(crate) const ORGANIZATIONAL_UNIT_NAME: &[u8] = &[0x55, 0x04, 0x0b];

    pub(crate) const SUBJECT_KEY_IDENTIFIER: &[u8] = &[0x55, 0x1d, 0x0e];
    pub(crate) const SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];
    pub(crate) const BASIC_CONSTRAINTS: &[u8] = &[0x55, 0x1d, 0x13];
    pub(crate) const AUTHORITY_KEY_IDENTIFIER: &[u8] = &[0x55, 0x1d, 0x23];
    pub(crate) const EXT_KEY_USAGE: &[u8] = &[0x55, 0x1d, 0x25];

    pub(crate) const KP_SERVER_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01];
    pub(crate) const KP_CLIENT_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02];

    pub(crate) const EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    pub(crate) const P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    pub(crate) const P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
    pub(crate) const ECDSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
    pub(crate) const ECDSA_SHA384: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03];
    pub(crate) const ED25519: &[u8] = &[0x2b, 0x65, 0x70];
    pub(crate) const RSA_ENCRYPTION: &[u8] =
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
    pub(crate) const RSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b];
}

/// One TLV: its tag, its content, and the whole encoding (tag and length included).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tlv<'a> {
    pub(crate) tag: u8,
    pub(crate) content: &'a [u8],
    pub(crate) raw: &'a [u8],
}

/// Reads consecutive TLVs from a byte slice.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Reader { data }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub(crate) fn peek_tag(&self) -> Option<u8> {
        self.data.first().copied()
    }

    /// The next TLV, whatever its tag.
    pub(crate) fn any(&mut self) -> Result<Tlv<'a>> {
        let data = self.data;
        let Some(&tag) = data.first() else { return err("truncated: expected more data") };
        if tag & 0x1f == 0x1f {
            return err("unsupported high-number tag");
        }
        let Some(&first) = data.get(1) else { return err("truncated length") };
        let (len, header) = if first < 0x80 {
            (usize::from(first), 2)
        } else if first == 0x80 {
            return err("indefinite length is not DER");
        } else {
            let n = usize::from(first & 0x7f);
            if n > 4 {
                return err("length too large");
            }
            let Some(bytes) = data.get(2..2 + n) else { return err("truncated length") };
            if bytes[0] == 0 {
                return err("non-minimal length");
            }
            let len = bytes.iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            if len < 0x80 {
                return err("non-minimal length");
            }
            (len, 2 + n)
        };
        let Some(end) = header.checked_add(len) else { return err("length too large") };
        let Some(raw) = data.get(..end) else { return err("truncated: length past the end") };
        self.data = &data[end..];
        Ok(Tlv { tag, content: &raw[header..], raw })
    }

    /// The next TLV, which must have `tag`; `what` names it in the error.
    pub(crate) fn expect(&mut self, tag: u8, what: &str) -> Result<Tlv<'a>> {
        match self.peek_tag() {
            Some(t) if t == tag => self.any(),
            Some(t) => err(format!("expected {what} (tag 0x{tag:02x}), found tag 0x{t:02x}")),
            None => err(format!("expected {what}, found the end")),
        }
    }

    /// The next TLV if it has `tag`.
    pub(crate) fn optional(&mut self, tag: u8) -> Result<Option<Tlv<'a>>> {
        if self.peek_tag() == Some(tag) { self.any().map(Some) } else { Ok(None) }
    }

    /// The content of a SEQUENCE, as a reader.
    pub(crate) fn sequence(&mut self, what: &str) -> Result<Reader<'a>> {
        Ok(Reader::new(self.expect(TAG_SEQUENCE, what)?.content))
    }

    pub(crate) fn finish(&self, what: &str) -> Result<()> {
        if self.data.is_empty() { Ok(()) } else { err(format!("unexpected data after {what}")) }
    }
}

/// A BIT STRING's bytes, which must have no unused bits.
pub(crate) fn bit_string_bytes(content: &[u8]) -> Result<&[u8]> {
    match content.split_first() {
        Some((0, rest)) => Ok(rest),
        Some(_) => err("bit string with unused bits where whole bytes were expected"),
        None => err("empty bit string"),
    }
}

/// Dotted form of an OID's content bytes, for messages.
pub(crate) fn oid_to_string(content: &[u8]) -> String {
    let mut arcs: Vec<u64> = Vec::new();
    let mut value: u64 = 0;
    for &b in content {
        if value > (u64::MAX >> 7) {
            return format!("<oid {}>", hex(content));
        }
        value = (value << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            if arcs.is_empty() {
                let first = (value / 40).min(2);
                arcs.push(first);
                arcs.push(value - first * 40);
            } else {
                arcs.push(value);
            }
            value = 0;
        }
    }
    if arcs.is_empty() {
        return "<empty oid>".into();
    }
    arcs.iter().map(u64::to_string).collect::<Vec<_>>().join(".")
}

/// Lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// One attribute of a distinguished name, e.g. `CN=stallwatch fleet CA`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NameAttribute<'a> {
    pub(crate) oid: &'a [u8],
    pub(crate) string_tag: u8,
    pub(crate) value: &'a [u8],
}

impl<'a> NameAttribute<'a> {
    /// The value as text for the string types certificates use; `None` for others.
    pub(crate) fn text(&self) -> Option<&'a str> {
        match self.string_tag {
            TAG_UTF8_STRING | TAG_PRINTABLE_STRING | TAG_IA5_STRING => {
                std::str::from_utf8(self.value).ok()
            }
            _ => None,
        }
    }

    fn short_name(&self) -> String {
        match self.oid {
            oid::COMMON_NAME => "CN".into(),
            oid::COUNTRY_NAME => "C".into(),
            oid::LOCALITY_NAME => "L".into(),
            oid::STATE_OR_PROVINCE_NAME => "ST".into(),
            oid::ORGANIZATION_NAME => "O".into(),
            oid::ORGANIZATIONAL_UNIT_NAME => "OU".into(),
            other => oid_to_string(other),
        }
    }
}

/// The attributes of a Name, in encoded order (one per RDN in what stallwatch writes).
pub(crate) fn name_attributes(name_content: &[u8]) -> Result<Vec<NameAttribute<'_>>> {
    let mut rdns = Reader::new(name_content);
    let mut out = Vec::new();
    while !rdns.is_empty() {
        let mut set = Reader::new(rdns.expect(TAG_SET, "relative distinguished name")?.content);
        while !set.is_empty() {
            let mut atv = set.sequence("name attribute")?;
            let oid = atv.expect(TAG_OID, "name attribute type")?.content;
            let value = atv.any()?;
            atv.finish("name attribute")?;
            out.push(NameAttribute { oid, string_tag: value.tag, value: value.content });
        }
    }
    Ok(out)
}

/// A Name as `CN=..., O=...` for messages.
pub(crate) fn name_to_string(name_content: &[u8]) -> String {
    match name_attributes(name_content) {
        Ok(attrs) if attrs.is_empty() => "<empty name>".into(),
        Ok(attrs) => attrs
            .iter()
            .map(|a| match a.text() {
                Some(t) => format!("{}={t}", a.short_name()),
                None => format!("{}=#{}", a.short_name(), hex(a.value)),
            })
            .collect::<Vec<_>>()
            .join(", "),
        Err(e) => format!("<unreadable name: {e}>"),
    }
}

/// An extension: its OID and the content of its OCTET STRING. (Criticality is read and
/// dropped: rustls refuses certificates with critical extensions it does not know.)
#[derive(Debug, Clone, Copy)]
pub(crate) struct Extension<'a> {
    pub(crate) oid: &'a [u8],
    pub(crate) value: &'a [u8],
}

/// The parts of a certificate the PKI reads. Slices borrow the certificate's DER.
#[derive(Debug, Clone)]
pub(crate) struct Cert<'a> {
    /// The whole `tbsCertificate`, which the signature covers.
    pub(crate) tbs: &'a [u8],
    /// The serial number's INTEGER content (big-endian, as encoded).
    pub(crate) serial: &'a [u8],
    /// The whole issuer Name (tag and length included), for byte comparison.
    pub(crate) issuer_raw: &'a [u8],
    pub(crate) issuer: &'a [u8],
    pub(crate) subject_raw: &'a [u8],
    pub(crate) subject: &'a [u8],
    pub(crate) not_before: OffsetDateTime,
    pub(crate) not_after: OffsetDateTime,
    /// The public key algorithm OID and its parameters (the curve OID for EC keys).
    pub(crate) key_algorithm: &'a [u8],
    pub(crate) key_parameters: Option<&'a [u8]>,
    /// The subjectPublicKey bits (an uncompressed point for EC keys).
    pub(crate) public_key: &'a [u8],
    pub(crate) signature_algorithm: &'a [u8],
    pub(crate) signature: &'a [u8],
    pub(crate) extensions: Vec<Extension<'a>>,
}

/// How far a hostile input may nest extensions; a real certificate has about ten.
const MAX_EXTENSIONS: usize = 64;

impl<'a> Cert<'a> {
    pub(crate) fn parse(der: &'a [u8]) -> Result<Self> {
        let mut outer = Reader::new(der);
        let mut cert = outer.sequence("certificate")?;
        outer.finish("the certificate")?;
        let tbs_tlv = cert.expect(TAG_SEQUENCE, "tbsCertificate")?;
        let mut sig_alg = cert.sequence("signature algorithm")?;
        let signature_algorithm = sig_alg.expect(TAG_OID, "signature algorithm")?.content;
        let signature = bit_string_bytes(cert.expect(TAG_BIT_STRING, "signature")?.content)?;
        cert.finish("the signature")?;

        let mut tbs = Reader::new(tbs_tlv.content);
        if let Some(version) = tbs.optional(0xa0)? {
            let mut v = Reader::new(version.content);
            let n = v.expect(TAG_INTEGER, "version")?.content;
            v.finish("version")?;
            if n != [2] {
                return err("not an X.509 version 3 certificate");
            }
        }
        let serial = tbs.expect(TAG_INTEGER, "serial number")?.content;
        if serial.is_empty() || serial.len() > 21 {
            return err("serial number has an invalid length");
        }
        if serial[0] & 0x80 != 0 {
            return err("serial number is negative");
        }
        let mut inner_alg = tbs.sequence("signature algorithm")?;
        if inner_alg.expect(TAG_OID, "signature algorithm")?.content != signature_algorithm {
            return err("the signature algorithm inside and outside the signed part differ");
        }
        let issuer = tbs.expect(TAG_SEQUENCE, "issuer name")?;
        let mut validity = tbs.sequence("validity")?;
        let not_before = read_time(&mut validity, "notBefore")?;
        let not_after = read_time(&mut validity, "notAfter")?;
        validity.finish("validity")?;
        let subject = tbs.expect(TAG_SEQUENCE, "subject name")?;
        let mut spki = tbs.sequence("subject public key info")?;
        let mut alg = spki.sequence("public key algorithm")?;
        let key_algorithm = alg.expect(TAG_OID, "public key algorithm")?.content;
        let key_parameters = if alg.is_empty() { None } else { Some(alg.any()?.content) };
        let public_key = bit_string_bytes(spki.expect(TAG_BIT_STRING, "public key")?.content)?;
        spki.finish("subject public key info")?;
        // Unique identifiers (v2, never used) are skipped.
        tbs.optional(0x81)?;
        tbs.optional(0x82)?;
        let mut extensions = Vec::new();
        if let Some(exts) = tbs.optional(0xa3)? {
            let mut wrapper = Reader::new(exts.content);
            let mut list = wrapper.sequence("extensions")?;
            wrapper.finish("extensions")?;
            while !list.is_empty() {
                if extensions.len() == MAX_EXTENSIONS {
                    return err("too many extensions");
                }
                let mut ext = list.sequence("extension")?;
                let oid = ext.expect(TAG_OID, "extension id")?.content;
                if let Some(b) = ext.optional(TAG_BOOLEAN)? {
                    read_bool(b.content)?;
                }
                let value = ext.expect(TAG_OCTET_STRING, "extension value")?.content;
                ext.finish("extension")?;
                if extensions.iter().any(|e: &Extension<'_>| e.oid == oid) {
                    return err(format!("extension {} appears twice", oid_to_string(oid)));
                }
                extensions.push(Extension { oid, value });
            }
        }
        tbs.finish("the extensions")?;
        Ok(Cert {
            tbs: tbs_tlv.raw,
            serial,
            issuer_raw: issuer.raw,
            issuer: issuer.content,
            subject_raw: subject.raw,
            subject: subject.content,
            not_before,
            not_after,
            key_algorithm,
            key_parameters,
            public_key,
            signature_algorithm,
            signature,
            extensions,
        })
    }

    pub(crate) fn extension(&self, oid: &[u8]) -> Option<&Extension<'a>> {
        self.extensions.iter().find(|e| e.oid == oid)
    }

    /// The serial number as lowercase hex without sign padding.
    pub(crate) fn serial_hex(&self) -> String {
        let s = match self.serial {
            [0, rest @ ..] if !rest.is_empty() => rest,
            s => s,
        };
        hex(s)
    }

    /// The subject's common name, if it has exactly one readable one.
    pub(crate) fn subject_common_name(&self) -> Result<Option<&'a str>> {
        let mut cn = None;
        for attr in name_attributes(self.subject)? {
            if attr.oid == oid::COMMON_NAME {
                if cn.is_some() {
                    return err("the subject has more than one common name");
                }
                cn = Some(attr.text().ok_or_else(|| DerError("unreadable common name".into()))?);
            }
        }
        Ok(cn)
    }

    /// Basic constraints: whether the certificate is a CA.
    pub(crate) fn is_ca(&self) -> Result<bool> {
        let Some(ext) = self.extension(oid::BASIC_CONSTRAINTS) else { return Ok(false) };
        let mut outer = Reader::new(ext.value);
        let mut bc = outer.sequence("basic constraints")?;
        outer.finish("basic constraints")?;
        let ca = match bc.optional(TAG_BOOLEAN)? {
            Some(b) => read_bool(b.content)?,
            None => false,
        };
        bc.optional(TAG_INTEGER)?;
        bc.finish("basic constraints")?;
        Ok(ca)
    }

    /// Extended key usage OIDs, empty if the extension is absent.
    pub(crate) fn extended_key_usages(&self) -> Result<Vec<&'a [u8]>> {
        let Some(ext) = self.extension(oid::EXT_KEY_USAGE) else { return Ok(Vec::new()) };
        let mut outer = Reader::new(ext.value);
        let mut list = outer.sequence("extended key usage")?;
        outer.finish("extended key usage")?;
        let mut out = Vec::new();
        while !list.is_empty() {
            out.push(list.expect(TAG_OID, "key purpose")?.content);
        }
        Ok(out)
    }

    /// Subject alternative names.
    pub(crate) fn subject_alt_names(&self) -> Result<Vec<GeneralName<'a>>> {
        let Some(ext) = self.extension(oid::SUBJECT_ALT_NAME) else { return Ok(Vec::new()) };
        let mut outer = Reader::new(ext.value);
        let mut list = outer.sequence("subject alternative names")?;
        outer.finish("subject alternative names")?;
        let mut out = Vec::new();
        while !list.is_empty() {
            let gn = list.any()?;
            out.push(match gn.tag {
                0x82 => GeneralName::Dns(ascii(gn.content, "DNS name")?),
                0x86 => GeneralName::Uri(ascii(gn.content, "URI")?),
                0x87 => match gn.content.len() {
                    4 => {
                        let b: [u8; 4] = gn.content.try_into().map_err(|_| bad_ip())?;
                        GeneralName::Ip(IpAddr::from(b))
                    }
                    16 => {
                        let b: [u8; 16] = gn.content.try_into().map_err(|_| bad_ip())?;
                        GeneralName::Ip(IpAddr::from(b))
                    }
                    _ => return Err(bad_ip()),
                },
                _ => GeneralName::Other,
            });
        }
        Ok(out)
    }

    /// The subject key identifier, if present.
    pub(crate) fn subject_key_id(&self) -> Result<Option<&'a [u8]>> {
        let Some(ext) = self.extension(oid::SUBJECT_KEY_IDENTIFIER) else { return Ok(None) };
        let mut r = Reader::new(ext.value);
        let id = r.expect(TAG_OCTET_STRING, "subject key identifier")?.content;
        r.finish("subject key identifier")?;
        Ok(Some(id))
    }

    /// The key identifier of the authority key identifier, if present.
    pub(crate) fn authority_key_id(&self) -> Result<Option<&'a [u8]>> {
        let Some(ext) = self.extension(oid::AUTHORITY_KEY_IDENTIFIER) else { return Ok(None) };
        let mut outer = Reader::new(ext.value);
        let mut aki = outer.sequence("authority key identifier")?;
        outer.finish("authority key identifier")?;
        Ok(aki.optional(0x80)?.map(|t| t.content))
    }

    /// Checks that `issuer`'s key signed this certificate and that the names chain.
    pub(crate) fn verify_signed_by(&self, issuer: &Cert<'_>) -> Result<()> {
        if self.issuer_raw != issuer.subject_raw {
            return err(format!(
                "issued by \"{}\", not by \"{}\"",
                name_to_string(self.issuer),
                name_to_string(issuer.subject)
            ));
        }
        if let (Some(aki), Some(ski)) = (self.authority_key_id()?, issuer.subject_key_id()?)
            && aki != ski
        {
            return err("its authority key identifier is not the issuer's key identifier");
        }
        use ring::signature as sig;
        let alg: &dyn sig::VerificationAlgorithm =
            match (self.signature_algorithm, issuer.key_algorithm, issuer.key_parameters) {
                (oid::ECDSA_SHA256, oid::EC_PUBLIC_KEY, Some(oid::P256)) => {
                    &sig::ECDSA_P256_SHA256_ASN1
                }
                (oid::ECDSA_SHA384, oid::EC_PUBLIC_KEY, Some(oid::P384)) => {
                    &sig::ECDSA_P384_SHA384_ASN1
                }
                (oid::ECDSA_SHA256, oid::EC_PUBLIC_KEY, Some(oid::P384)) => {
                    &sig::ECDSA_P384_SHA256_ASN1
                }
                (oid::ECDSA_SHA384, oid::EC_PUBLIC_KEY, Some(oid::P256)) => {
                    &sig::ECDSA_P256_SHA384_ASN1
                }
                (oid::ED25519, oid::ED25519, _) => &sig::ED25519,
                (oid::RSA_SHA256, oid::RSA_ENCRYPTION, _) => &sig::RSA_PKCS1_2048_8192_SHA256,
                (alg, _, _) => {
                    return err(format!(
                        "unsupported signature algorithm {} with the issuer's key",
                        oid_to_string(alg)
                    ));
                }
            };
        sig::UnparsedPublicKey::new(alg, issuer.public_key)
            .verify(self.tbs, self.signature)
            .map_err(|_| DerError("its signature does not verify with the issuer's key".into()))
    }
}

fn bad_ip() -> DerError {
    DerError("IP address name of invalid length".into())
}

/// A subject alternative name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum GeneralName<'a> {
    Dns(&'a str),
    Uri(&'a str),
    Ip(IpAddr),
    Other,
}

fn ascii<'a>(bytes: &'a [u8], what: &str) -> Result<&'a str> {
    if !bytes.is_ascii() {
        return err(format!("{what} is not ASCII"));
    }
    std::str::from_utf8(bytes).map_err(|_| DerError(format!("{what} is not ASCII")))
}

fn read_bool(content: &[u8]) -> Result<bool> {
    match content {
        [0x00] => Ok(false),
        [0xff] => Ok(true),
        _ => err("invalid boolean"),
    }
}

fn read_time(r: &mut Reader<'_>, what: &str) -> Result<OffsetDateTime> {
    let tlv = r.any()?;
    let s = std::str::from_utf8(tlv.content)
        .map_err(|_| DerError(format!("{what} is not a valid time")))?;
    let digits = |range: std::ops::Range<usize>| -> Result<u32> {
        let part = s.get(range).ok_or_else(|| DerError(format!("{what} is too short")))?;
        if !part.bytes().all(|b| b.is_ascii_digit()) {
            return err(format!("{what} is not a valid time"));
        }
        part.parse().map_err(|_| DerError(format!("{what} is not a valid time")))
    };
    let (year, rest) = match tlv.tag {
        TAG_UTC_TIME if s.len() == 13 => {
            let yy = digits(0..2)?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, 2)
        }
        TAG_GENERALIZED_TIME if s.len() == 15 => (digits(0..4)?, 4),
        TAG_UTC_TIME | TAG_GENERALIZED_TIME => {
            return err(format!("{what} is not in the form DER requires (seconds, Z)"));
        }
        t => return err(format!("{what}: expected a time, found tag 0x{t:02x}")),
    };
    if !s.ends_with('Z') {
        return err(format!("{what} is not in UTC"));
    }
    let field = |i: usize| digits(rest + 2 * i..rest + 2 * i + 2);
    let (month, day, hour, minute, second) =
        (field(0)?, field(1)?, field(2)?, field(3)?, field(4)?);
    let invalid = || DerError(format!("{what} is not a valid date and time"));
    let month =
        Month::try_from(u8::try_from(month).map_err(|_| invalid())?).map_err(|_| invalid())?;
    let date = Date::from_calendar_date(
        i32::try_from(year).map_err(|_| invalid())?,
        month,
        u8::try_from(day).map_err(|_| invalid())?,
    )
    .map_err(|_| invalid())?;
    let time = Time::from_hms(
        u8::try_from(hour).map_err(|_| invalid())?,
        u8::try_from(minute).map_err(|_| invalid())?,
        u8::try_from(second).map_err(|_| invalid())?,
    )
    .map_err(|_| invalid())?;
    Ok(PrimitiveDateTime::new(date, time).assume_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_must_be_definite_minimal_and_in_bounds() {
        assert!(Reader::new(&[0x30, 0x80, 0, 0]).any().is_err());
        assert!(Reader::new(&[0x30, 0x81, 0x05, 0, 0, 0, 0, 0]).any().is_err());
        assert!(Reader::new(&[0x30, 0x03, 0, 0]).any().is_err());
        assert!(Reader::new(&[0x30, 0x85, 1, 1, 1, 1, 1]).any().is_err());
        assert!(Reader::new(&[0x30]).any().is_err());
        assert!(Reader::new(&[]).any().is_err());
        let mut r = Reader::new(&[0x04, 0x02, 0xaa, 0xbb, 0x05, 0x00]);
        assert_eq!(r.any().unwrap().content, &[0xaa, 0xbb]);
        assert_eq!(r.any().unwrap().tag, 0x05);
        assert!(r.is_empty());
    }

    #[test]
    fn oids_print_dotted() {
        assert_eq!(oid_to_string(oid::P256), "1.2.840.10045.3.1.7");
        assert_eq!(oid_to_string(oid::KP_CLIENT_AUTH), "1.3.6.1.5.5.7.3.2");
        assert_eq!(oid_to_string(oid::COMMON_NAME), "2.5.4.3");
    }

    #[test]
    fn times_read_both_forms() {
        let utc = [&[TAG_UTC_TIME, 13][..], b"491231235959Z"].concat();
        let t = read_time(&mut Reader::new(&utc), "t").unwrap();
        assert_eq!((t.year(), t.month(), t.second()), (2049, Month::December, 59));
        let gen_time = [&[TAG_GENERALIZED_TIME, 15][..], b"20500101000000Z"].concat();
        assert_eq!(read_time(&mut Reader::new(&gen_time), "t").unwrap().year(), 2050);
        let bad = [&[TAG_UTC_TIME, 13][..], b"491331235959Z"].concat();
        assert!(read_time(&mut Reader::new(&bad), "t").is_err());
        let signed = [&[TAG_UTC_TIME, 13][..], b"49+231235959Z"].concat();
        assert!(read_time(&mut Reader::new(&signed), "t").is_err());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for input in [&b""[..], b"\x30", b"\x30\x00", b"\x30\x03\x30\x01", b"\xff\xff\xff"] {
            assert!(Cert::parse(input).is_err());
        }
    }
}
