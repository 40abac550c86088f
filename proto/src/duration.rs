//! Human durations, one syntax everywhere: config files, plans, command-line flags and
//! `--emulate`: `"250ms"`, `"1.5s"`, `"2m30s"`, `"1h30m"`, `"2d"`, `"0"`.
//!
//! Grammar: one or more `<number><unit>` parts, units in strictly decreasing size, no spaces,
//! no sign. A number is digits with an optional fraction (`1.5`, `0.25`); the total must be a
//! whole number of nanoseconds. Units: `d`, `h`, `m`, `s`, `ms`, `us` (or `µs`), `ns`. A lone
//! `0` needs no unit. [`format_duration`] writes the canonical form (whole numbers, largest
//! units first) that [`parse_duration`] reads back exactly.
//!
//! [`parse_duration`] fits clap's `value_parser` as it is (`value_parser = parse_duration`), and
//! [`serde_human`] / [`serde_human_option`] use it for config and plan fields.

use std::fmt;
use std::time::Duration;

use thiserror::Error;

/// Units, largest first, with their length in nanoseconds.
pub const UNITS: [(&str, u128); 7] = [
    ("d", 86_400_000_000_000),
    ("h", 3_600_000_000_000),
    ("m", 60_000_000_000),
    ("s", 1_000_000_000),
    ("ms", 1_000_000),
    ("us", 1_000),
    ("ns", 1),
];

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// Significant fraction digits past which no part can be a whole number of nanoseconds: a
/// unit is at most 2^16 * 5^11 * 27 ns, so it cannot cancel 10^25 with a fraction not ending
/// in 0. Also keeps the arithmetic within u128.
const MAX_FRACTION_DIGITS: usize = 24;

/// Why a duration did not parse; its message names the whole input and the bad part.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid duration {input:?}: {kind}")]
pub struct DurationError {
    input: String,
    kind: DurationErrorKind,
}

impl DurationError {
    /// The input as given.
    pub fn input(&self) -> &str {
        &self.input
    }

    /// What was wrong with it (its message, without the input, is the
    /// [`Display`](fmt::Display) of the kind).
    pub fn kind(&self) -> &DurationErrorKind {
        &self.kind
    }
}

/// What was wrong with a duration; every variant that can name the bad token does.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DurationErrorKind {
    /// The input was empty.
    #[error("empty (expected e.g. 250ms, 1.5s or 1h30m)")]
    Empty,
    /// The input started with a sign; durations are never negative.
    #[error("a duration cannot be negative or signed")]
    Signed,
    /// The input had a space or other whitespace in it.
    #[error("spaces are not allowed (write 1h30m, not 1h 30m)")]
    Space,
    /// Something other than a number stood where a number belongs.
    #[error("expected a number at {token:?} (a duration is e.g. 250ms, 1.5s or 1h30m)")]
    ExpectedNumber {
        /// The text found instead, up to the next digit.
        token: String,
    },
    /// Digits and dots that do not make a number (`1.2.3`, `1.`, `.5`).
    #[error("{token:?} is not a number (write e.g. 1.5 or 0.5)")]
    BadNumber {
        /// The malformed number.
        token: String,
    },
    /// A number had no unit after it (e.g. `"10"`).
    #[error("{number:?} has no unit (use d, h, m, s, ms, us or ns)")]
    MissingUnit {
        /// The number without a unit.
        number: String,
    },
    /// A unit was not one of the known ones.
    #[error("unknown unit {unit:?} (use d, h, m, s, ms, us or ns)")]
    UnknownUnit {
        /// The unit as written.
        unit: String,
    },
    /// Units were repeated or not in decreasing size (e.g. `"30m1h"`).
    #[error("unit {unit:?} out of order (write larger units first, each once)")]
    UnitOrder {
        /// The unit that came out of order.
        unit: String,
    },
    /// A part is not a whole number of nanoseconds (e.g. `"1.5ns"`).
    #[error("{part:?} is finer than a nanosecond")]
    TooPrecise {
        /// The number and unit.
        part: String,
    },
    /// The value does not fit in a [`Duration`] (about 584 billion years).
    #[error("too large to represent")]
    Overflow,
}

/// Parses a human duration such as `"250ms"`, `"1.5s"`, `"1h30m"` or `"0"`.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    parse_nanos(input)
        .and_then(|total| {
            let secs =
                u64::try_from(total / NANOS_PER_SEC).map_err(|_| DurationErrorKind::Overflow)?;
            // The remainder is below 10^9, so it always fits in u32.
            Ok(Duration::new(secs, (total % NANOS_PER_SEC) as u32))
        })
        .map_err(|kind| DurationError { input: input.to_owned(), kind })
}

fn parse_nanos(input: &str) -> Result<u128, DurationErrorKind> {
    use DurationErrorKind as E;
    if input.is_empty() {
        return Err(E::Empty);
    }
    if input.starts_with(['-', '+']) {
        return Err(E::Signed);
    }
    if input.contains(char::is_whitespace) {
        return Err(E::Space);
    }
    if input == "0" {
        return Ok(0);
    }
    let mut rest = input;
    let mut total: u128 = 0;
    // Index into UNITS of the last unit seen; the next one must be strictly smaller.
    let mut last_unit: Option<usize> = None;
    while !rest.is_empty() {
        let number_len =
            rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_len);
        if number.is_empty() {
            let token_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
            return Err(E::ExpectedNumber { token: rest[..token_len].to_owned() });
        }
        let unit_len = after.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let (whole, fraction) = split_decimal(number)?;
        if unit.is_empty() {
            return Err(E::MissingUnit { number: number.to_owned() });
        }
        let unit_norm = if unit == "µs" { "us" } else { unit };
        let Some(index) = UNITS.iter().position(|&(name, _)| name == unit_norm) else {
            return Err(E::UnknownUnit { unit: unit.to_owned() });
        };
        if last_unit.is_some_and(|last| index <= last) {
            return Err(E::UnitOrder { unit: unit.to_owned() });
        }
        last_unit = Some(index);
        let unit_nanos = UNITS[index].1;
        let part = format!("{number}{unit}");
        let fraction_nanos = fraction_nanos(fraction, unit_nanos).ok_or(E::TooPrecise { part })?;
        // Any digit string too long for u64 is an overflow, not a syntax error.
        let whole: u64 = whole.parse().map_err(|_| E::Overflow)?;
        total = u128::from(whole)
            .checked_mul(unit_nanos)
            .and_then(|n| n.checked_add(fraction_nanos))
            .and_then(|n| total.checked_add(n))
            .ok_or(E::Overflow)?;
        rest = next;
    }
    Ok(total)
}

/// Splits `"1.25"` into `("1", "25")` and `"10"` into `("10", "")`; digits on both sides of
/// a dot, at most one dot.
fn split_decimal(number: &str) -> Result<(&str, &str), DurationErrorKind> {
    let bad = || DurationErrorKind::BadNumber { token: number.to_owned() };
    match number.split_once('.') {
        None => Ok((number, "")),
        Some((whole, fraction))
            if !whole.is_empty() && !fraction.is_empty() && !fraction.contains('.') =>
        {
            Ok((whole, fraction))
        }
        Some(_) => Err(bad()),
    }
}

/// The nanoseconds of `0.<fraction>` units of `unit_nanos` each, if a whole number.
fn fraction_nanos(fraction: &str, unit_nanos: u128) -> Option<u128> {
    let fraction = fraction.trim_end_matches('0');
    if fraction.is_empty() {
        return Some(0);
    }
    if fraction.len() > MAX_FRACTION_DIGITS {
        return None;
    }
    let digits: u128 = fraction.parse().ok()?;
    let scale = 10u128.pow(fraction.len() as u32);
    let nanos = digits * unit_nanos;
    nanos.is_multiple_of(scale).then_some(nanos / scale)
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

    /// Every accepted form, with its exact value.
    #[test]
    fn parses_valid_durations() {
        let ms = Duration::from_millis;
        let s = Duration::from_secs;
        for (input, want) in [
            ("250ms", ms(250)),
            ("10s", s(10)),
            ("5m", s(300)),
            ("1h", s(3600)),
            ("2d", s(2 * 86_400)),
            ("0s", Duration::ZERO),
            ("0", Duration::ZERO),
            ("7us", Duration::from_micros(7)),
            ("7µs", Duration::from_micros(7)),
            ("9ns", Duration::from_nanos(9)),
            ("1h30m", s(5400)),
            ("2m30s", s(150)),
            ("1s500ms", ms(1500)),
            ("1d2h3m4s5ms6us7ns", Duration::new(93_784, 5_006_007)),
            ("90s", s(90)),
            ("1.5s", ms(1500)),
            ("0.5ms", Duration::from_micros(500)),
            ("1.5m", s(90)),
            ("1.25h", s(4500)),
            ("1h0.5m", s(3630)),
            ("2.500s", ms(2500)),
            ("0.000000001s", Duration::from_nanos(1)),
            ("1.0ns", Duration::from_nanos(1)),
            ("007s", s(7)),
        ] {
            assert_eq!(parse_duration(input), Ok(want), "{input}");
        }
    }

    /// Every error, with its whole message: the input and the token at fault.
    #[test]
    fn rejects_invalid_durations_naming_the_bad_token() {
        for (input, message) in [
            ("", r#"invalid duration "": empty (expected e.g. 250ms, 1.5s or 1h30m)"#),
            ("-5s", r#"invalid duration "-5s": a duration cannot be negative or signed"#),
            ("+5s", r#"invalid duration "+5s": a duration cannot be negative or signed"#),
            (
                "10 s",
                r#"invalid duration "10 s": spaces are not allowed (write 1h30m, not 1h 30m)"#,
            ),
            (
                "1h 30m",
                r#"invalid duration "1h 30m": spaces are not allowed (write 1h30m, not 1h 30m)"#,
            ),
            ("10", r#"invalid duration "10": "10" has no unit (use d, h, m, s, ms, us or ns)"#),
            ("1m30", r#"invalid duration "1m30": "30" has no unit (use d, h, m, s, ms, us or ns)"#),
            ("10x", r#"invalid duration "10x": unknown unit "x" (use d, h, m, s, ms, us or ns)"#),
            (
                "3weeks",
                r#"invalid duration "3weeks": unknown unit "weeks" (use d, h, m, s, ms, us or ns)"#,
            ),
            (
                "1sec",
                r#"invalid duration "1sec": unknown unit "sec" (use d, h, m, s, ms, us or ns)"#,
            ),
            (
                "s",
                r#"invalid duration "s": expected a number at "s" (a duration is e.g. 250ms, 1.5s or 1h30m)"#,
            ),
            (
                "abc",
                r#"invalid duration "abc": expected a number at "abc" (a duration is e.g. 250ms, 1.5s or 1h30m)"#,
            ),
            (
                "1.2.3s",
                r#"invalid duration "1.2.3s": "1.2.3" is not a number (write e.g. 1.5 or 0.5)"#,
            ),
            (".5s", r#"invalid duration ".5s": ".5" is not a number (write e.g. 1.5 or 0.5)"#),
            ("1.s", r#"invalid duration "1.s": "1." is not a number (write e.g. 1.5 or 0.5)"#),
            (
                "30m1h",
                r#"invalid duration "30m1h": unit "h" out of order (write larger units first, each once)"#,
            ),
            (
                "1s1s",
                r#"invalid duration "1s1s": unit "s" out of order (write larger units first, each once)"#,
            ),
            ("1.5ns", r#"invalid duration "1.5ns": "1.5ns" is finer than a nanosecond"#),
            (
                "1s0.0000000001ms",
                r#"invalid duration "1s0.0000000001ms": "0.0000000001ms" is finer than a nanosecond"#,
            ),
            (
                "99999999999999999999999s",
                r#"invalid duration "99999999999999999999999s": too large to represent"#,
            ),
            // Fits in u64 days, but not in Duration's u64 seconds.
            (
                "18446744073709551615d",
                r#"invalid duration "18446744073709551615d": too large to represent"#,
            ),
        ] {
            let error = parse_duration(input).expect_err(input);
            assert_eq!(error.to_string(), message, "{input}");
            assert_eq!(error.input(), input);
        }
    }

    #[test]
    fn errors_carry_their_kind() {
        let e = parse_duration("10x").unwrap_err();
        assert_eq!(e.kind(), &DurationErrorKind::UnknownUnit { unit: "x".into() });
        assert_eq!(e.kind().to_string(), r#"unknown unit "x" (use d, h, m, s, ms, us or ns)"#);
    }

    /// Decimal parts are exact: no float rounding, however many digits.
    #[test]
    fn decimals_are_exact() {
        assert_eq!(parse_duration("0.1s"), Ok(Duration::from_millis(100)));
        assert_eq!(parse_duration("1.000000001s"), Ok(Duration::new(1, 1)));
        let e = parse_duration("0.3333333333333333333333333d").unwrap_err();
        assert!(matches!(e.kind(), DurationErrorKind::TooPrecise { .. }), "{e}");
        assert_eq!(
            parse_duration("1.100000000000000000000000000000s"),
            Ok(Duration::from_millis(1100))
        );
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
