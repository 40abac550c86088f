//! Region time zones: IANA names read from the system tz database (TZif files under
//! `/usr/share/zoneinfo`, or `$TZDIR`), or fixed offsets written `UTC+08:00`. Everything the
//! report shows as a local time goes through [`Zone`].

use std::path::PathBuf;

use thiserror::Error;
use time::{Date, OffsetDateTime, PrimitiveDateTime, Time};
use tz::TimeZone;

/// Where the tz database is looked for when `$TZDIR` is not set.
pub const DEFAULT_TZDIR: &str = "/usr/share/zoneinfo";

/// Why a time zone could not be loaded.
#[derive(Debug, Error)]
pub enum ZoneError {
    /// Not an IANA name nor a `UTC+HH:MM` offset.
    #[error(
        "{0:?} is not a time zone name (write an IANA name such as \"Asia/Singapore\", or a \
         fixed offset such as \"UTC+08:00\")"
    )]
    BadName(String),
    /// The name looks right but its file cannot be read.
    #[error(
        "unknown time zone {name:?}: cannot read {}: {error} (install the tzdata package, set \
         TZDIR, or write a fixed offset such as \"UTC+08:00\")",
        path.display()
    )]
    Unreadable {
        /// The name as written.
        name: String,
        /// The file tried.
        path: PathBuf,
        /// Why it could not be read.
        error: std::io::Error,
    },
    /// The file is not a valid TZif file.
    #[error("time zone {name:?}: {} is not a valid tz database file: {detail}", path.display())]
    Invalid {
        /// The name as written.
        name: String,
        /// The file read.
        path: PathBuf,
        /// The parser's complaint.
        detail: String,
    },
}

/// A region's time zone.
#[derive(Debug, Clone)]
pub struct Zone {
    name: String,
    tz: TimeZone,
}

/// A local calendar hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct LocalHour {
    /// Local date.
    pub date: Date,
    /// Local hour of day, 0-23.
    pub hour: u8,
}

impl Zone {
    /// UTC.
    pub fn utc() -> Zone {
        Zone { name: "UTC".into(), tz: TimeZone::utc() }
    }

    /// Loads `name`: `UTC`, `UTC+08:00` / `UTC-03:30`, or an IANA name from the tz database.
    pub fn load(name: &str) -> Result<Zone, ZoneError> {
        if name == "UTC" || name == "Etc/UTC" {
            return Ok(Zone { name: name.into(), tz: TimeZone::utc() });
        }
        if let Some(rest) = name.strip_prefix("UTC") {
            let seconds = parse_offset(rest).ok_or_else(|| ZoneError::BadName(name.into()))?;
            let tz = TimeZone::fixed(seconds).map_err(|_| ZoneError::BadName(name.into()))?;
            return Ok(Zone { name: name.into(), tz });
        }
        let valid = !name.is_empty()
            && !name.starts_with('/')
            && name.split('/').all(|part| {
                !part.is_empty()
                    && part != "."
                    && part != ".."
                    && part.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-+".contains(&b))
            });
        if !valid {
            return Err(ZoneError::BadName(name.into()));
        }
        let dir =
            std::env::var_os("TZDIR").map_or_else(|| PathBuf::from(DEFAULT_TZDIR), PathBuf::from);
        let path = dir.join(name);
        let bytes = std::fs::read(&path).map_err(|error| ZoneError::Unreadable {
            name: name.into(),
            path: path.clone(),
            error,
        })?;
        let tz = TimeZone::from_tz_data(&bytes).map_err(|e| ZoneError::Invalid {
            name: name.into(),
            path,
            detail: e.to_string(),
        })?;
        Ok(Zone { name: name.into(), tz })
    }

    /// The name as configured.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Offset from UTC at `unix_ms`, seconds.
    pub fn offset_seconds(&self, unix_ms: u64) -> i32 {
        let secs = i64::try_from(unix_ms / 1000).unwrap_or(i64::MAX);
        self.tz.find_local_time_type(secs).map_or(0, |t| t.ut_offset())
    }

    /// The local date and time at `unix_ms`.
    pub fn local(&self, unix_ms: u64) -> PrimitiveDateTime {
        let offset = i64::from(self.offset_seconds(unix_ms));
        let secs = i64::try_from(unix_ms / 1000).unwrap_or(i64::MAX).saturating_add(offset);
        let utc = OffsetDateTime::from_unix_timestamp(secs).unwrap_or(OffsetDateTime::UNIX_EPOCH);
        PrimitiveDateTime::new(utc.date(), utc.time())
    }

    /// The local calendar hour holding `unix_ms`.
    pub fn local_hour(&self, unix_ms: u64) -> LocalHour {
        let local = self.local(unix_ms);
        LocalHour { date: local.date(), hour: local.hour() }
    }

    /// The instant (unix ms) at which local time reads `date 00:00`; in a gap (a DST change
    /// at midnight) the first instant after it.
    pub fn midnight(&self, date: Date) -> u64 {
        let local = PrimitiveDateTime::new(date, Time::MIDNIGHT).assume_utc().unix_timestamp();
        // The offset at the guess, then at the corrected instant: exact unless a transition
        // lies between them.
        let mut guess = local;
        for _ in 0..2 {
            let at = u64::try_from(guess.max(0)).unwrap_or(0) * 1000;
            guess = local - i64::from(self.offset_seconds(at));
        }
        u64::try_from(guess.max(0)).unwrap_or(0) * 1000
    }

    /// `2026-11-20 21:00` in local time.
    pub fn format(&self, unix_ms: u64) -> String {
        let t = self.local(unix_ms);
        format!(
            "{:04}-{:02}-{:02} {:02}:{:02}",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute()
        )
    }

    /// `UTC+8`, `UTC-3`, `UTC+5:30` at `unix_ms`.
    pub fn offset_label(&self, unix_ms: u64) -> String {
        offset_label(self.offset_seconds(unix_ms))
    }
}

/// `UTC+8`, `UTC-3`, `UTC+5:30`, `UTC`.
pub fn offset_label(seconds: i32) -> String {
    if seconds == 0 {
        return "UTC".into();
    }
    let sign = if seconds < 0 { '-' } else { '+' };
    let abs = seconds.unsigned_abs();
    let (h, m) = (abs / 3600, abs % 3600 / 60);
    if m == 0 { format!("UTC{sign}{h}") } else { format!("UTC{sign}{h}:{m:02}") }
}

/// `+08:00`, `-3`, `+5:30` as seconds east of UTC.
fn parse_offset(text: &str) -> Option<i32> {
    let (sign, rest) = match text.as_bytes().first()? {
        b'+' => (1, &text[1..]),
        b'-' => (-1, &text[1..]),
        _ => return None,
    };
    let (h, m) = rest.split_once(':').unwrap_or((rest, "0"));
    let digits = |s: &str| !s.is_empty() && s.len() <= 2 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(h) || !digits(m) {
        return None;
    }
    let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
    if h > 14 || m > 59 {
        return None;
    }
    Some(sign * (h * 3600 + m * 60))
}

/// Formats a UTC instant as RFC 3339 (`2026-11-20T13:00:00Z`).
pub fn rfc3339_utc(unix_ms: u64) -> String {
    Zone::utc().format(unix_ms).replace(' ', "T") + ":00Z"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_offsets_and_labels() {
        let z = Zone::load("UTC+08:00").unwrap();
        assert_eq!(z.offset_seconds(0), 8 * 3600);
        assert_eq!(z.format(0), "1970-01-01 08:00");
        assert_eq!(Zone::load("UTC-3").unwrap().offset_label(0), "UTC-3");
        assert_eq!(offset_label(19_800), "UTC+5:30");
        for bad in ["UTC+", "UTC8", "UTC+15", "../etc/passwd", "/etc/x", "Asia//X", ""] {
            assert!(matches!(Zone::load(bad), Err(ZoneError::BadName(_))), "{bad}");
        }
    }

    #[test]
    fn iana_zones_follow_daylight_saving() {
        let Ok(berlin) = Zone::load("Europe/Berlin") else {
            eprintln!("skipped: no tz database at {DEFAULT_TZDIR}");
            return;
        };
        // 2026-01-15T12:00Z is CET (+1), 2026-07-15T12:00Z is CEST (+2).
        assert_eq!(berlin.offset_seconds(1_768_478_400_000), 3600);
        assert_eq!(berlin.offset_seconds(1_784_116_800_000), 7200);
        let date = Date::from_calendar_date(2026, time::Month::July, 15).unwrap();
        assert_eq!(berlin.midnight(date), 1_784_066_400_000);
        assert_eq!(berlin.format(1_784_066_400_000), "2026-07-15 00:00");
        let missing = Zone::load("Asia/Atlantis").unwrap_err().to_string();
        assert!(missing.contains("unknown time zone \"Asia/Atlantis\""), "{missing}");
    }
}
