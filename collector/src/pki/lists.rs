//! The CA's two JSON lists: `issued.json` (every agent certificate issued) and
//! `revoked.json` (the deny-list the collector checks).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use stallwatch_proto::plan::normalize_serial;
use time::OffsetDateTime;

use super::PkiError;
use super::files::{self, MAX_LIST_FILE, MODE_PUBLIC, rfc3339_serde};

/// One agent certificate the CA issued, as recorded in `issued.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuedAgent {
    /// The agent's name (the certificate's CN and identity URI).
    pub name: String,
    /// The certificate's serial number, lowercase hex.
    pub serial: String,
    /// The region in the certificate's identity.
    pub region: String,
    /// The network type in the certificate's identity.
    pub network_type: String,
    /// Start of the certificate's validity.
    #[serde(with = "rfc3339_serde")]
    pub not_before: OffsetDateTime,
    /// End of the certificate's validity.
    #[serde(with = "rfc3339_serde")]
    pub not_after: OffsetDateTime,
}

/// `issued.json`: every agent certificate the CA issued, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuedList {
    /// The certificates, in the order they were issued.
    pub agents: Vec<IssuedAgent>,
}

impl IssuedList {
    /// Reads `issued.json`.
    pub fn load(path: &Path) -> Result<Self, PkiError> {
        load_json(path)
    }

    /// Writes `issued.json` atomically.
    pub fn save(&self, path: &Path) -> Result<(), PkiError> {
        save_json(self, path)
    }

    /// The serials issued to `name`.
    pub fn serials_of(&self, name: &str) -> Vec<String> {
        self.agents.iter().filter(|a| a.name == name).map(|a| a.serial.clone()).collect()
    }
}

/// A revoked certificate in `revoked.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokedSerial {
    /// The agent the certificate was issued to.
    pub name: String,
    /// When it was revoked.
    #[serde(with = "rfc3339_serde")]
    pub revoked_at: OffsetDateTime,
}

/// `revoked.json`: the deny-list the collector checks on every client certificate.
///
/// A certificate is refused if its agent name is revoked (every certificate of that name,
/// including ones issued later) or if its serial is revoked. Reinstating a name (issuing it a
/// new certificate with `ca issue-agent --force`) lifts the name but keeps its old serials
/// revoked, so a leaked certificate stays dead.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevocationList {
    /// Revoked agent names, with when they were revoked.
    #[serde(default, with = "time_map")]
    names: BTreeMap<String, OffsetDateTime>,
    /// Revoked serial numbers (lowercase hex).
    #[serde(default)]
    serials: BTreeMap<String, RevokedSerial>,
    /// Revoked collector certificate serials (lowercase hex), with when: what the collector
    /// CRL lists for agents.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty", with = "time_map")]
    collectors: BTreeMap<String, OffsetDateTime>,
    /// Number of the last collector CRL signed (each new one is numbered one higher).
    #[serde(default, skip_serializing_if = "is_zero")]
    collector_crl_number: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl RevocationList {
    /// Reads `revoked.json`. A missing or malformed file is an error, never an empty list:
    /// a collector must not accept revoked agents because its deny-list went missing.
    pub fn load(path: &Path) -> Result<Self, PkiError> {
        let mut list: RevocationList = load_json(path)?;
        // Hand edits may use colons or upper case; compare in one form.
        list.serials = std::mem::take(&mut list.serials)
            .into_iter()
            .map(|(serial, entry)| (normalize_serial(&serial), entry))
            .collect();
        list.collectors = std::mem::take(&mut list.collectors)
            .into_iter()
            .map(|(serial, at)| (normalize_serial(&serial), at))
            .collect();
        Ok(list)
    }

    /// Writes `revoked.json` atomically, so a collector reloading it never sees half a file.
    pub fn save(&self, path: &Path) -> Result<(), PkiError> {
        save_json(self, path)
    }

    /// Whether a certificate for agent `name` with serial `serial` (hex; colons and case
    /// ignored) is refused.
    pub fn is_revoked(&self, name: &str, serial: &str) -> bool {
        self.names.contains_key(name) || self.serials.contains_key(&normalize_serial(serial))
    }

    /// Whether the name itself is revoked.
    pub fn is_name_revoked(&self, name: &str) -> bool {
        self.names.contains_key(name)
    }

    /// Revokes `name` and `serials`; returns whether anything changed.
    pub fn revoke(&mut self, name: &str, serials: &[String], at: OffsetDateTime) -> bool {
        use std::collections::btree_map::Entry;
        let mut changed = false;
        if let Entry::Vacant(e) = self.names.entry(name.to_string()) {
            e.insert(at);
            changed = true;
        }
        for serial in serials {
            if let Entry::Vacant(e) = self.serials.entry(normalize_serial(serial)) {
                e.insert(RevokedSerial { name: name.to_string(), revoked_at: at });
                changed = true;
            }
        }
        changed
    }

    /// Lifts the revocation of `name` (its revoked serials stay revoked); returns whether it
    /// was revoked.
    pub fn reinstate(&mut self, name: &str) -> bool {
        self.names.remove(name).is_some()
    }

    /// Revoked names and when.
    pub fn names(&self) -> impl Iterator<Item = (&str, OffsetDateTime)> {
        self.names.iter().map(|(n, t)| (n.as_str(), *t))
    }

    /// Revoked serials.
    pub fn serials(&self) -> impl Iterator<Item = (&str, &RevokedSerial)> {
        self.serials.iter().map(|(s, e)| (s.as_str(), e))
    }

    /// Revokes collector certificate `serial`; returns whether it was not revoked before.
    pub fn revoke_collector(&mut self, serial: &str, at: OffsetDateTime) -> bool {
        use std::collections::btree_map::Entry;
        match self.collectors.entry(normalize_serial(serial)) {
            Entry::Vacant(e) => {
                e.insert(at);
                true
            }
            Entry::Occupied(_) => false,
        }
    }

    /// Revoked collector serials and when.
    pub fn collectors(&self) -> impl Iterator<Item = (&str, OffsetDateTime)> {
        self.collectors.iter().map(|(s, t)| (s.as_str(), *t))
    }

    /// Takes the number for the next collector CRL.
    pub fn next_collector_crl_number(&mut self) -> u64 {
        self.collector_crl_number += 1;
        self.collector_crl_number
    }

    /// Whether nothing is revoked.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty() && self.serials.is_empty()
    }
}

fn load_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, PkiError> {
    let text = files::read_text(path, MAX_LIST_FILE)?;
    serde_json::from_str(&text)
        .map_err(|e| PkiError::File { path: path.to_path_buf(), reason: format!("invalid: {e}") })
}

fn save_json<T: Serialize>(value: &T, path: &Path) -> Result<(), PkiError> {
    let mut text = serde_json::to_string_pretty(value).map_err(|e| PkiError::File {
        path: path.to_path_buf(),
        reason: format!("cannot encode: {e}"),
    })?;
    text.push('\n');
    files::write_atomic(path, text.as_bytes(), MODE_PUBLIC)
}

/// Serde for a map of names to RFC 3339 times.
mod time_map {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serializer, de::Error, ser::SerializeMap};
    use time::OffsetDateTime;

    pub(super) fn serialize<S: Serializer>(
        map: &BTreeMap<String, OffsetDateTime>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(map.len()))?;
        for (k, v) in map {
            m.serialize_entry(k, &super::files::rfc3339(*v))?;
        }
        m.end()
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<String, OffsetDateTime>, D::Error> {
        BTreeMap::<String, String>::deserialize(d)?
            .into_iter()
            .map(|(k, v)| match super::files::parse_rfc3339(&v) {
                Some(t) => Ok((k, t)),
                None => Err(D::Error::custom(format!(
                    "invalid time {v:?} for {k:?}, expected the form 2025-01-31T23:59:59Z"
                ))),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> OffsetDateTime {
        files::parse_rfc3339(s).unwrap()
    }

    #[test]
    fn revoking_a_name_refuses_every_serial_and_reinstating_keeps_old_serials() {
        let mut list = RevocationList::default();
        assert!(!list.is_revoked("edge-1", "4a01"));
        assert!(list.revoke("edge-1", &["4A:01".into()], t("2025-01-01T00:00:00Z")));
        assert!(!list.revoke("edge-1", &["4a01".into()], t("2025-01-02T00:00:00Z")));
        assert!(list.is_revoked("edge-1", "ffff"));
        assert!(list.is_revoked("edge-2", "004a01"));
        assert!(list.reinstate("edge-1"));
        assert!(!list.is_revoked("edge-1", "ffff"));
        assert!(list.is_revoked("edge-1", "4a:01"));
    }

    #[test]
    fn json_form_is_stable_and_strict() {
        let mut list = RevocationList::default();
        list.revoke("edge-1", &["4a01".into()], t("2025-01-01T00:00:00Z"));
        let json = serde_json::to_string(&list).unwrap();
        assert_eq!(
            json,
            r#"{"names":{"edge-1":"2025-01-01T00:00:00Z"},"serials":{"4a01":{"name":"edge-1","revoked_at":"2025-01-01T00:00:00Z"}}}"#
        );
        assert_eq!(serde_json::from_str::<RevocationList>(&json).unwrap(), list);
        // A misspelt key must not silently empty the deny-list.
        let typo = r#"{"name":{"edge-1":"2025-01-01T00:00:00Z"},"serials":{}}"#;
        assert!(serde_json::from_str::<RevocationList>(typo).is_err());
        let bad_time = r#"{"names":{"edge-1":"yesterday"},"serials":{}}"#;
        let e = serde_json::from_str::<RevocationList>(bad_time).unwrap_err().to_string();
        assert!(e.contains("invalid time \"yesterday\""), "{e}");
    }
}
