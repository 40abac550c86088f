//! What survives a restart: the incidents (open and recent) and what each webhook receiver
//! was told about each, in one JSON file beside the store (never in the store: the ingest
//! writer's transactions stay the ingest path's alone).
//!
//! The file is replaced atomically: written to `<file>.tmp`, flushed to disk, renamed over the
//! old one, and the directory flushed, so a crash leaves the old file or the new one, never a
//! torn one. A file that does not parse is moved aside (`<file>.unreadable`) and alerting
//! starts afresh, logged loudly: refusing to start would stop ingest too.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Severity;
use super::incidents::{Incidents, Status};

/// Version of the file format.
pub const STATE_VERSION: u32 = 1;

/// What a receiver last heard of an incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notified {
    /// Severity it heard.
    pub severity: Severity,
    /// Open or resolved.
    pub status: Status,
    /// `true` when delivery was given up (it never heard it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dropped: bool,
}

/// The persisted state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// [`STATE_VERSION`].
    pub version: u32,
    /// Incidents.
    pub incidents: Incidents,
    /// Per webhook receiver (by name), per incident id, what it last heard.
    #[serde(default)]
    pub notified: BTreeMap<String, BTreeMap<u64, Notified>>,
}

/// Why the state file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The file is not a state file this build reads.
    #[error("{path}: unreadable alert state ({reason}); moved to {moved}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
        /// Where it was moved.
        moved: PathBuf,
    },
}

impl State {
    /// Drops what receivers heard of incidents no longer kept.
    pub fn prune(&mut self) {
        let ids = &self.incidents.all;
        for heard in self.notified.values_mut() {
            heard.retain(|id, _| ids.contains_key(id));
        }
    }
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// Reads the state at `path`: empty if there is no file. A file that does not parse is moved
/// aside and reported as [`StateError::Unreadable`] (with an empty state to go on with).
pub fn load(path: &Path) -> (State, Option<StateError>) {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return (State { version: STATE_VERSION, ..State::default() }, None);
        }
        Err(source) => {
            return (State::default(), Some(StateError::Io { path: path.to_owned(), source }));
        }
    };
    let parsed = serde_json::from_slice::<State>(&bytes).map_err(|e| e.to_string()).and_then(|s| {
        if s.version == STATE_VERSION {
            Ok(s)
        } else {
            Err(format!("version {} (this build reads {STATE_VERSION})", s.version))
        }
    });
    match parsed {
        Ok(state) => (state, None),
        Err(reason) => {
            let moved = sibling(path, ".unreadable");
            let _ = std::fs::rename(path, &moved);
            (
                State { version: STATE_VERSION, ..State::default() },
                Some(StateError::Unreadable { path: path.to_owned(), reason, moved }),
            )
        }
    }
}

/// Writes `state` to `path` atomically (see the module docs).
pub fn save(path: &Path, state: &State) -> Result<(), StateError> {
    let io = |source| StateError::Io { path: path.to_owned(), source };
    let tmp = sibling(path, ".tmp");
    let bytes = serde_json::to_vec(state).map_err(|e| io(std::io::Error::other(e)))?;
    let mut file = std::fs::File::create(&tmp).map_err(io)?;
    file.write_all(&bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(io)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> tempfile::TempDir {
        stallwatch_tests::scratch_dir("alert-state")
    }

    #[test]
    fn saves_and_loads_the_same_state() {
        let tmp = dir();
        let d = tmp.path();
        let path = d.join("alerts-state.json");
        let (empty, err) = load(&path);
        assert!(err.is_none());
        assert_eq!(empty.version, STATE_VERSION);
        let mut state = State { version: STATE_VERSION, ..State::default() };
        state.incidents.next_id = 7;
        state
            .notified
            .entry("chat".into())
            .or_default()
            .insert(3, Notified { severity: Severity::P1, status: Status::Open, dropped: false });
        save(&path, &state).unwrap();
        assert!(!sibling(&path, ".tmp").exists());
        assert_eq!(load(&path).0, state);
    }

    #[test]
    fn an_unreadable_file_is_moved_aside_not_lost() {
        let tmp = dir();
        let d = tmp.path();
        let path = d.join("alerts-state.json");
        std::fs::write(&path, b"{\"version\": 1, \"incid").unwrap();
        let (state, err) = load(&path);
        assert_eq!(state.incidents.all.len(), 0);
        let err = err.unwrap().to_string();
        assert!(err.contains("unreadable alert state"), "{err}");
        assert_eq!(
            std::fs::read(d.join("alerts-state.json.unreadable")).unwrap(),
            b"{\"version\": 1, \"incid"
        );
    }
}
