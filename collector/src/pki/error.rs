//! The PKI's errors.

use std::path::PathBuf;

/// What went wrong in the fleet PKI. Messages are lowercase and name the file, field or
/// certificate at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    /// A file could not be read.
    #[error("cannot read {}: {source}", .path.display())]
    Read { path: PathBuf, source: std::io::Error },
    /// A file or directory could not be written.
    #[error("cannot write {}: {source}", .path.display())]
    Write { path: PathBuf, source: std::io::Error },
    /// A file was read but its content is wrong.
    #[error("{}: {reason}", .path.display())]
    File { path: PathBuf, reason: String },
    /// The CA directory has no CA.
    #[error(
        "no CA in {}: {} is missing (create one with `stallwatch-collector ca init --dir {}`)",
        .dir.display(), .missing.display(), .dir.display()
    )]
    NoCa { dir: PathBuf, missing: PathBuf },
    /// `init` found a CA already.
    #[error(
        "{} already holds a CA ({} exists); pass --force to replace it, which invalidates \
         every certificate it issued",
        .dir.display(), .existing.display()
    )]
    CaExists { dir: PathBuf, existing: PathBuf },
    /// A name, region, network type or host is not acceptable.
    #[error("invalid {field} {value:?}: expected {expected}")]
    InvalidField { field: &'static str, value: String, expected: String },
    /// A validity period is not acceptable.
    #[error("invalid validity: {0}")]
    Validity(String),
    /// `revoke` of a name the CA never issued.
    #[error(
        "no agent named {name} was issued by this CA (see {}); pass --force to revoke the name anyway",
        .issued.display()
    )]
    UnknownAgent { name: String, issued: PathBuf },
    /// `issue-agent` of a revoked name.
    #[error(
        "agent {name} is revoked in {}; pass --force to issue it a new certificate (its old \
         certificates stay revoked)",
        .revoked.display()
    )]
    AgentRevoked { name: String, revoked: PathBuf },
    /// A certificate's DER could not be read.
    #[error("malformed certificate: {0}")]
    Certificate(String),
    /// A well-formed certificate that does not carry an agent identity.
    #[error("not a stallwatch agent certificate: {0}")]
    NotAgentCertificate(String),
    /// A certificate was not issued by the expected CA.
    #[error("certificate not issued by the CA: {0}")]
    NotIssuedBy(String),
    /// rcgen refused to make a key or certificate.
    #[error("generating a key or certificate failed: {0}")]
    Generate(#[from] rcgen::Error),
}

impl From<stallwatch_proto::IdentityError> for PkiError {
    fn from(e: stallwatch_proto::IdentityError) -> Self {
        use stallwatch_proto::IdentityError;
        match e {
            IdentityError::InvalidField { field, value, expected } => {
                PkiError::InvalidField { field, value, expected }
            }
            // The URI is in a certificate, so a bad one makes it no agent certificate.
            uri @ (IdentityError::Uri { .. }
            | IdentityError::NoUri
            | IdentityError::SeveralUris) => PkiError::NotAgentCertificate(uri.to_string()),
        }
    }
}
