//! Per-relay plain UDP credentials (docs/security.md, "Relays"): HMAC-SHA256 of a secret only
//! this collector holds and the name of the `[[relays]]` entry, handed in plans to the agent
//! that runs the relay and to every agent whose probes target it. The secret lives next to
//! the store (`STORAGE_PATH.relay-secret`, mode 0600), made on first start, so credentials
//! survive restarts; deleting it changes every relay's credential.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use stallwatch_proto::plan::UdpCredential;

/// Bytes of the secret file.
const SECRET_LEN: usize = 32;
/// Separates this use of the secret from any later one.
const CONTEXT: &[u8] = b"stallwatch relay udp credential v1\0";

/// Derives relay credentials from the collector's secret.
#[derive(Clone)]
pub struct RelayCredentials {
    key: hmac::Key,
}

impl fmt::Debug for RelayCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RelayCredentials(..)") // The secret stays out of logs.
    }
}

impl RelayCredentials {
    /// Credentials under `secret` (tests; the server uses [`RelayCredentials::load_or_create`]).
    pub fn from_secret(secret: &[u8]) -> RelayCredentials {
        RelayCredentials { key: hmac::Key::new(hmac::HMAC_SHA256, secret) }
    }

    /// Where the secret of a collector whose store is at `storage_path` lives.
    pub fn secret_path(storage_path: &Path) -> PathBuf {
        let mut name = storage_path.as_os_str().to_owned();
        name.push(".relay-secret");
        PathBuf::from(name)
    }

    /// Reads the secret at `path`, or makes a random one there (mode 0600) if there is none.
    pub fn load_or_create(path: &Path) -> Result<RelayCredentials, String> {
        match std::fs::read(path) {
            Ok(secret) if secret.len() == SECRET_LEN => return Ok(Self::from_secret(&secret)),
            Ok(secret) => {
                return Err(format!(
                    "{} holds {} bytes, not the {SECRET_LEN} of a relay secret; remove it to make \
                     a new one (every plan-run relay's UDP credential then changes)",
                    path.display(),
                    secret.len()
                ));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("reading {}: {e}", path.display())),
        }
        let mut secret = [0u8; SECRET_LEN];
        SystemRandom::new()
            .fill(&mut secret)
            .map_err(|_| "the system random generator failed".to_owned())?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let written = options.open(path).and_then(|mut f| {
            f.write_all(&secret)?;
            f.sync_all()
        });
        written.map_err(|e| format!("writing the relay secret {}: {e}", path.display()))?;
        Ok(Self::from_secret(&secret))
    }

    /// The UDP credential of the `[[relays]]` entry called `relay`.
    pub fn for_relay(&self, relay: &str) -> UdpCredential {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(CONTEXT);
        ctx.update(relay.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.sign().as_ref());
        UdpCredential(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_differ_per_relay_and_secret_and_survive_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let path = RelayCredentials::secret_path(&dir.path().join("collector.db"));
        let first = RelayCredentials::load_or_create(&path).unwrap();
        let again = RelayCredentials::load_or_create(&path).unwrap();
        assert_eq!(first.for_relay("relay-1"), again.for_relay("relay-1"));
        assert_ne!(first.for_relay("relay-1"), first.for_relay("relay-2"));
        assert_ne!(
            first.for_relay("relay-1"),
            RelayCredentials::from_secret(b"x").for_relay("relay-1")
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(
            format!("{first:?} {:?}", first.for_relay("r")),
            "RelayCredentials(..) UdpCredential(..)"
        );
        std::fs::write(&path, b"short").unwrap();
        let err = RelayCredentials::load_or_create(&path).unwrap_err();
        assert!(err.contains("5 bytes"), "{err}");
    }
}
