//! Stateless UDP handshake tokens (docs/protocol.md, "Session"): HMAC-SHA256 of the client's
//! address and a 30 s time bucket under a secret made at relay start, truncated to 16 bytes.
//! A token from the current or the previous bucket is accepted, so a token lives 30-60 s.
//! The relay keeps no state for an address until it shows a valid token.

use std::net::SocketAddr;

use anyhow::{Result, anyhow};
use ring::hmac;
use ring::rand::SystemRandom;

/// Length of a time bucket in seconds.
pub(crate) const BUCKET_SECS: u64 = 30;

/// Mints and checks tokens.
pub(crate) struct Tokens {
    key: hmac::Key,
    /// The relay's UDP credential a tokened hello must prove (`None`: an open relay).
    credential: Option<[u8; CREDENTIAL_LEN]>,
}

impl Tokens {
    /// A fresh random secret.
    pub(crate) fn new() -> Result<Tokens> {
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &SystemRandom::new())
            .map_err(|_| anyhow!("generating the UDP token secret"))?;
        Ok(Tokens { key, credential: None })
    }

    /// Requires tokened hellos to prove `credential` (`None`: open to anyone).
    pub(crate) fn with_credential(mut self, credential: Option<[u8; CREDENTIAL_LEN]>) -> Tokens {
        self.credential = credential;
        self
    }

    /// Whether a tokened hello with `proof` may go on: always on an open relay, otherwise only
    /// with the credential's proof over `token`.
    pub(crate) fn credential_ok(&self, token: &[u8; 16], proof: Option<&[u8; 16]>) -> bool {
        match (&self.credential, proof) {
            (None, _) => true,
            (Some(credential), Some(proof)) => check_proof(credential, token, proof),
            (Some(_), None) => false,
        }
    }

    /// A fixed secret (tests).
    #[cfg(test)]
    fn with_secret(secret: &[u8]) -> Tokens {
        Tokens { key: hmac::Key::new(hmac::HMAC_SHA256, secret), credential: None }
    }

    /// The token for `addr` at wall time `now_ns` (ns since the Unix epoch).
    pub(crate) fn mint(&self, addr: SocketAddr, now_ns: u64) -> [u8; 16] {
        self.token(addr, bucket(now_ns))
    }

    /// Whether `token` is `addr`'s token of the current or the previous bucket.
    pub(crate) fn check(&self, addr: SocketAddr, token: &[u8; 16], now_ns: u64) -> bool {
        let now = bucket(now_ns);
        // Both always computed and compared without early exit, so timing says nothing.
        let current = constant_time_eq(&self.token(addr, now), token);
        let previous = constant_time_eq(&self.token(addr, now.wrapping_sub(1)), token);
        current | previous
    }

    fn token(&self, addr: SocketAddr, bucket: u64) -> [u8; 16] {
        // family tag, address, port, bucket: unambiguous for v4 and v6.
        let mut msg = [0u8; 1 + 16 + 2 + 8];
        let len = match addr {
            SocketAddr::V4(a) => {
                msg[0] = 4;
                msg[1..5].copy_from_slice(&a.ip().octets());
                5
            }
            SocketAddr::V6(a) => {
                msg[0] = 6;
                msg[1..17].copy_from_slice(&a.ip().octets());
                17
            }
        };
        msg[len..len + 2].copy_from_slice(&addr.port().to_be_bytes());
        msg[len + 2..len + 10].copy_from_slice(&bucket.to_be_bytes());
        let tag = hmac::sign(&self.key, &msg[..len + 10]);
        let mut out = [0u8; 16];
        out.copy_from_slice(&tag.as_ref()[..16]);
        out
    }
}

/// Length of a relay's UDP credential (docs/security.md, "Relays").
pub const CREDENTIAL_LEN: usize = 32;

/// Proof that a client holds a relay's UDP credential, bound to the relay's challenge token:
/// the first 16 bytes of HMAC-SHA256(credential, token) (docs/protocol.md, "Session").
pub fn credential_proof(credential: &[u8; CREDENTIAL_LEN], token: &[u8; 16]) -> [u8; 16] {
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, credential), token);
    let mut out = [0u8; 16];
    out.copy_from_slice(&tag.as_ref()[..16]);
    out
}

/// Whether `proof` is `credential`'s proof over `token`, compared in constant time.
fn check_proof(credential: &[u8; CREDENTIAL_LEN], token: &[u8; 16], proof: &[u8; 16]) -> bool {
    constant_time_eq(&credential_proof(credential, token), proof)
}

fn bucket(now_ns: u64) -> u64 {
    now_ns / 1_000_000_000 / BUCKET_SECS
}

fn constant_time_eq(a: &[u8; 16], b: &[u8; 16]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn a_token_is_good_for_its_bucket_and_the_next_only() {
        let tokens = Tokens::with_secret(b"secret");
        let addr: SocketAddr = "192.0.2.7:5000".parse().unwrap();
        let t0 = 1_700_000_010 * S; // inside a bucket
        let token = tokens.mint(addr, t0);
        assert!(tokens.check(addr, &token, t0));
        assert!(tokens.check(addr, &token, t0 + BUCKET_SECS * S));
        assert!(!tokens.check(addr, &token, t0 + 2 * BUCKET_SECS * S));
        // Not before it was minted either (the bucket before is not "previous").
        assert!(!tokens.check(addr, &token, t0 - BUCKET_SECS * S));
    }

    #[test]
    fn a_proof_is_bound_to_credential_and_token() {
        let (cred, other) = ([1u8; CREDENTIAL_LEN], [2u8; CREDENTIAL_LEN]);
        let proof = credential_proof(&cred, &[5; 16]);
        assert!(check_proof(&cred, &[5; 16], &proof));
        assert!(!check_proof(&other, &[5; 16], &proof));
        assert!(!check_proof(&cred, &[6; 16], &proof));
        assert!(!check_proof(&cred, &[5; 16], &[0; 16]));
        let closed = Tokens::with_secret(b"s").with_credential(Some(cred));
        assert!(closed.credential_ok(&[5; 16], Some(&proof)));
        assert!(!closed.credential_ok(&[5; 16], None));
        assert!(Tokens::with_secret(b"s").credential_ok(&[5; 16], None));
    }

    #[test]
    fn a_token_is_bound_to_address_port_and_secret() {
        let tokens = Tokens::with_secret(b"secret");
        let addr: SocketAddr = "192.0.2.7:5000".parse().unwrap();
        let now = 1_700_000_000 * S;
        let token = tokens.mint(addr, now);
        assert!(!tokens.check("192.0.2.8:5000".parse().unwrap(), &token, now));
        assert!(!tokens.check("192.0.2.7:5001".parse().unwrap(), &token, now));
        assert!(!tokens.check("[::ffff:192.0.2.7]:5000".parse().unwrap(), &token, now));
        assert!(!Tokens::with_secret(b"other").check(addr, &token, now));
        let v6: SocketAddr = "[2001:db8::1]:443".parse().unwrap();
        assert!(tokens.check(v6, &tokens.mint(v6, now), now));
        assert_ne!(tokens.mint(v6, now), token);
    }
}
