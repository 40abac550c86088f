//! Configuration errors: every problem names the file, line, column and field path.

use std::fmt;

use thiserror::Error;

pub use stallwatch_proto::config_file::Problem;

/// Exit code for a configuration file with problems (sysexits `EX_USAGE`, which the project
/// uses for any bad input or configuration; see ARCHITECTURE.md).
pub const EXIT_BAD_CONFIG: u8 = 64;
/// Exit code for a configuration file that cannot be read (sysexits `EX_NOINPUT`).
pub const EXIT_UNREADABLE: u8 = 66;

/// Why a configuration was not loaded.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{origin}: cannot read: {error}")]
    Read {
        /// The path as given.
        origin: String,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The file was read but is not a valid configuration: one problem per line, in file order.
    #[error("{}", ProblemList(.0))]
    Invalid(Vec<Problem>),
}

impl ConfigError {
    /// The process exit code for this error: 66 if unreadable, 64 if invalid.
    pub fn exit_code(&self) -> u8 {
        match self {
            ConfigError::Read { .. } => EXIT_UNREADABLE,
            ConfigError::Invalid(_) => EXIT_BAD_CONFIG,
        }
    }

    /// The problems found, in file order (empty for a read error).
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Read { .. } => &[],
            ConfigError::Invalid(p) => p,
        }
    }
}

struct ProblemList<'a>(&'a [Problem]);

impl fmt::Display for ProblemList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}
