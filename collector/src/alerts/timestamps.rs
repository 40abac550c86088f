//! Timestamps as Alertmanager and people read them: RFC 3339 in UTC.

use time::OffsetDateTime;

/// `2026-11-01T20:14:05.123Z` for unix ms `ms` (the epoch if out of range).
pub fn rfc3339(ms: u64) -> String {
    let t = i128::from(ms) * 1_000_000;
    let d = OffsetDateTime::from_unix_timestamp_nanos(t).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        d.year(),
        u8::from(d.month()),
        d.day(),
        d.hour(),
        d.minute(),
        d.second(),
        d.millisecond()
    )
}

/// `2026-11-01 20:14 UTC`, for messages.
pub fn readable(ms: u64) -> String {
    let full = rfc3339(ms);
    format!("{} {} UTC", &full[..10], &full[11..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_793_564_045_123), "2026-11-01T20:14:05.123Z");
        assert_eq!(readable(1_793_564_045_123), "2026-11-01 20:14 UTC");
    }
}
