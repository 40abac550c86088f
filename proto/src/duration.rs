//! Human durations in config and plans: `"250ms"`, `"10s"`, `"5m"`, `"1h30m"`, `"2d"`.
//!
//! Grammar: one or more `<digits><unit>` parts, units in strictly decreasing size, no spaces,
//! no sign, no fractions. Units: `d`, `h`, `m`, `s`, `ms`, `us` (or `µs`), `ns`.
//! [`format_duration`] writes the canonical form that [`parse_duration`] reads back exactly.

use std::fmt;
use std::time::Duration;

use thiserror::Error;

/// Units, largest first, with their length in nanoseconds.
const UNITS: [(&str, u128); 7] = [
    ("d", 86_400_000_000_000),
    ("h", 3_600_000_000_000),
    ("m", 60_000_000_000),
    ("s", 1_000_000_000),
    ("ms", 1_000_000),
    ("us", 1_000),
    ("ns", 1),
];

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// Errors parsing a human duration; every variant names the offending input.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DurationError {
    /// The input was empty.
    #[error("empty duration (expected e.g. \"10s\", \"5m\", \"1h30m\")")]
    Empty,
    /// The input started with a sign; durations are never negative.
    #[error("invalid duration {input:?}: durations cannot be negative or signed")]
    Negative {
        /// The whole input.
        input: String,
    },
    /// A number had no unit after it (e.g. `"10"`).
    #[error("invalid duration {input:?}: number without a unit (use d, h, m, s, ms, us or ns)")]
    MissingUnit {
        /// The whole input.
        input: String,
    },
    /// A unit was not one of the known ones.
    #[error("invalid duration {input:?}: unknown unit {unit:?} (use d, h, m, s, ms, us or ns)")]
    UnknownUnit {
        /// The whole input.
        input: String,
        /// The unit as written.
        unit: String,
    },
    /// A unit came with no number before it, or a character was neither a digit nor a unit.
    #[error("invalid duration {input:?}: expected a number at byte {at}")]
    ExpectedNumber {
        /// The whole input.
        input: String,
        /// Byte offset of the problem.
        at: usize,
    },
    /// Units were repeated or not in decreasing size (e.g. `"30m1h"`).
    #[error(
        "invalid duration {input:?}: unit {unit:?} out of order (write larger units first, each once)"
    )]
    UnitOrder {
        /// The whole input.
        input: String,
        /// The unit that came out of order.
        unit: String,
    },
    /// The value does not fit in a [`Duration`] (about 584 billion years).
    #[error("invalid duration {input:?}: too large to represent")]
    Overflow {
        /// The whole input.
        input: String,
    },
}

/// Parses a human duration such as `"250ms"`, `"10s"`, `"1h30m"` or `"0s"`.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    if input.is_empty() {
        return Err(DurationError::Empty);
    }
    let owned = || input.to_owned();
    if input.starts_with(['-', '+']) {
        return Err(DurationError::Negative { input: owned() });
    }
    let mut rest = input;
    let mut total: u128 = 0;
    // Index into UNITS of the last unit seen; the next one must be strictly smaller.
    let mut last_unit: Option<usize> = None;
    while !rest.is_empty() {
        let at = input.len() - rest.len();
        let digits_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits_len == 0 {
            return Err(DurationError::ExpectedNumber { input: owned(), at });
        }
        let (digits, after) = rest.split_at(digits_len);
        // Any digit string too long for u64 is an overflow, not a syntax error.
        let number: u64 = digits.parse().map_err(|_| DurationError::Overflow { input: owned() })?;
        let unit_len =
            after.char_indices().find(|&(_, c)| c.is_ascii_digit()).map_or(after.len(), |(i, _)| i);
        let (unit, next) = after.split_at(unit_len);
        if unit.is_empty() {
            return Err(DurationError::MissingUnit { input: owned() });
        }
        let unit_norm = if unit == "µs" { "us" } else { unit };
        let Some(index) = UNITS.iter().position(|&(name, _)| name == unit_norm) else {
            return Err(DurationError::UnknownUnit { input: owned(), unit: unit.to_owned() });
        };
        if last_unit.is_some_and(|last| index <= last) {
            return Err(DurationError::UnitOrder { input: owned(), unit: unit.to_owned() });
        }
        last_unit = Some(index);
        let nanos = u128::from(number)
            .checked_mul(UNITS[index].1)
            .and_then(|n| total.checked_add(n))
            .ok_or_else(|| DurationError::Overflow { input: owned() })?;
        total = nanos;
        rest = next;
    }
    let secs = u64::try_from(total / NANOS_PER_SEC)
        .map_err(|_| DurationError::Overflow { input: owned() })?;
    // The remainder is below 10^9, so it always fits in u32.
    let subsec = (total % NANOS_PER_SEC) as u32;
    Ok(Duration::new(secs, subsec))
}

/// Formats a duration in the canonical form [`parse_duration`] reads back exactly: largest
/// units first, zero parts left out (`"1m30s"`, `"250ms"`, `"1d2h"`); zero is `"0s"`.
pub fn format_duration(d: Duration) -> String {
    let mut out = String::new();
    let _ = write_duration(&mut out, d);
    out
}

fn write_duration(out: &mut impl fmt::Write, d: Duration) -> fmt::Result {
    let mut rest = d.as_nanos();
    if rest == 0 {
        return out.write_str("0s");
    }
    for (name, nanos) in UNITS {
        let n = rest / nanos;
        if n > 0 {
            write!(out, "{n}{name}")?;
            rest -= n * nanos;
        }
    }
    Ok(())
}

/// Serde helper: a [`Duration`] as a human string (`"10s"`).
///
/// Use as `#[serde(with = "stallwatch_proto::duration::serde_human")]`.
pub mod serde_human {
    use std::fmt;
    use std::time::Duration;

    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};

    /// Serializes `d` as its [`format_duration`](super::format_duration) string.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_duration(*d))
    }

    /// Deserializes a human duration string with [`parse_duration`](super::parse_duration).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        d.deserialize_str(HumanVisitor)
    }

    pub(super) struct HumanVisitor;

    impl Visitor<'_> for HumanVisitor {
        type Value = Duration;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a duration string such as \"10s\", \"5m\" or \"1h30m\"")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
            super::parse_duration(v).map_err(E::custom)
        }
    }
}

/// Serde helper: an `Option<Duration>` as a human string or null.
///
/// Use as `#[serde(default, with = "stallwatch_proto::duration::serde_human_option")]`.
pub mod serde_human_option {
    use std::fmt;
    use std::time::Duration;

    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};

    /// Serializes `Some(d)` as its human string and `None` as null.
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&super::format_duration(*d)),
            None => s.serialize_none(),
        }
    }

    /// Deserializes null as `None` and a human duration string as `Some`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        d.deserialize_option(OptionVisitor)
    }

    struct OptionVisitor;

    impl<'de> Visitor<'de> for OptionVisitor {
        type Value = Option<Duration>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("null or a duration string such as \"10s\"")
        }

        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_str(super::serde_human::HumanVisitor).map(Some)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Duration {
        parse_duration(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_single_units() {
        assert_eq!(ok("250ms"), Duration::from_millis(250));
        assert_eq!(ok("10s"), Duration::from_secs(10));
        assert_eq!(ok("5m"), Duration::from_secs(300));
        assert_eq!(ok("1h"), Duration::from_secs(3600));
        assert_eq!(ok("2d"), Duration::from_secs(2 * 86_400));
        assert_eq!(ok("0s"), Duration::ZERO);
        assert_eq!(ok("7us"), Duration::from_micros(7));
        assert_eq!(ok("7µs"), Duration::from_micros(7));
        assert_eq!(ok("9ns"), Duration::from_nanos(9));
    }

    #[test]
    fn parses_compound() {
        assert_eq!(ok("1h30m"), Duration::from_secs(5400));
        assert_eq!(ok("1m30s"), Duration::from_secs(90));
        assert_eq!(ok("1s500ms"), Duration::from_millis(1500));
        assert_eq!(ok("90s"), Duration::from_secs(90));
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(parse_duration(""), Err(DurationError::Empty));
        assert!(matches!(parse_duration("-5s"), Err(DurationError::Negative { .. })));
        assert!(matches!(parse_duration("+5s"), Err(DurationError::Negative { .. })));
        assert!(matches!(parse_duration("10"), Err(DurationError::MissingUnit { .. })));
        assert!(matches!(parse_duration("10x"), Err(DurationError::UnknownUnit { .. })));
        assert!(matches!(parse_duration("s"), Err(DurationError::ExpectedNumber { at: 0, .. })));
        assert!(matches!(parse_duration("1.5s"), Err(DurationError::UnknownUnit { .. })));
        assert!(matches!(parse_duration("10 s"), Err(DurationError::UnknownUnit { .. })));
        assert!(matches!(parse_duration("30m1h"), Err(DurationError::UnitOrder { .. })));
        assert!(matches!(parse_duration("1s1s"), Err(DurationError::UnitOrder { .. })));
    }

    #[test]
    fn rejects_overflow() {
        let e = parse_duration("99999999999999999999999s").unwrap_err();
        assert!(matches!(e, DurationError::Overflow { .. }));
        assert!(e.to_string().contains("99999999999999999999999s"), "{e}");
        // Fits in u64 days, but not in Duration's u64 seconds.
        let e = parse_duration("18446744073709551615d").unwrap_err();
        assert!(matches!(e, DurationError::Overflow { .. }));
    }

    #[test]
    fn errors_name_the_input() {
        let e = parse_duration("3 weeks").unwrap_err();
        assert!(e.to_string().contains("\"3 weeks\""), "{e}");
    }

    #[test]
    fn formats_canonically() {
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format_duration(Duration::from_secs(2 * 86_400)), "2d");
        assert_eq!(format_duration(Duration::new(1, 1)), "1s1ns");
    }

    #[test]
    fn round_trips_extremes() {
        for d in [Duration::MAX, Duration::from_nanos(1), Duration::new(86_399, 999_999_999)] {
            assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
    }

    #[test]
    fn serde_helpers() {
        #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
        struct C {
            #[serde(with = "serde_human")]
            every: Duration,
            #[serde(default, with = "serde_human_option")]
            timeout: Option<Duration>,
        }
        let c = C { every: Duration::from_secs(90), timeout: Some(Duration::from_millis(5)) };
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(json, r#"{"every":"1m30s","timeout":"5ms"}"#);
        assert_eq!(serde_json::from_str::<C>(&json).unwrap(), c);
        let c: C = serde_json::from_str(r#"{"every":"1s","timeout":null}"#).unwrap();
        assert_eq!(c.timeout, None);
        let c: C = serde_json::from_str(r#"{"every":"1s"}"#).unwrap();
        assert_eq!(c.timeout, None);
        let e = serde_json::from_str::<C>(r#"{"every":"1y"}"#).unwrap_err();
        assert!(e.to_string().contains("unknown unit"), "{e}");
    }
}
