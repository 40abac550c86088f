//! Byte sizes in config: an integer number of bytes, or a string such as `"512KiB"`, `"1MiB"`.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Units, with their size in bytes. Binary (`KiB`) and decimal (`KB`) units are both accepted,
/// matched case-insensitively.
const UNITS: [(&str, u64); 7] = [
    ("b", 1),
    ("kib", 1 << 10),
    ("mib", 1 << 20),
    ("gib", 1 << 30),
    ("kb", 1_000),
    ("mb", 1_000_000),
    ("gb", 1_000_000_000),
];

/// A size in bytes, written as an integer (`1048576`) or with a unit (`"1MiB"`, `"64KiB"`,
/// `"2MB"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// The size in bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }

    /// Parses `"1MiB"`, `"512 KiB"`, `"2MB"` or a bare number of bytes.
    pub fn parse(s: &str) -> Result<ByteSize, String> {
        let s = s.trim();
        let digits = s.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!("invalid size {s:?}: expected e.g. \"1MiB\", \"512KiB\" or 65536"));
        }
        let (number, unit) = s.split_at(digits);
        let number: u64 = number.parse().map_err(|_| format!("invalid size {s:?}: too large"))?;
        let unit = unit.trim_start().to_ascii_lowercase();
        let scale = if unit.is_empty() {
            1
        } else {
            UNITS.iter().find(|(name, _)| *name == unit).map(|&(_, n)| n).ok_or_else(|| {
                format!("invalid size {s:?}: unknown unit (use B, KiB, MiB, GiB, KB, MB or GB)")
            })?
        };
        number
            .checked_mul(scale)
            .map(ByteSize)
            .ok_or_else(|| format!("invalid size {s:?}: too large"))
    }
}

impl fmt::Display for ByteSize {
    /// The largest binary unit that divides the size exactly: `1MiB`, `1500B`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, n) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
            if self.0 >= n && self.0.is_multiple_of(n) {
                return write!(f, "{}{name}", self.0 / n);
            }
        }
        write!(f, "{}B", self.0)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SizeVisitor)
    }
}

struct SizeVisitor;

impl Visitor<'_> for SizeVisitor {
    type Value = ByteSize;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a size such as \"1MiB\", \"512KiB\" or a number of bytes")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
        Ok(ByteSize(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
        u64::try_from(v)
            .map(ByteSize)
            .map_err(|_| E::custom(format!("invalid size {v}: sizes cannot be negative")))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
        ByteSize::parse(v).map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_plain_numbers() {
        assert_eq!(ByteSize::parse("1MiB"), Ok(ByteSize(1 << 20)));
        assert_eq!(ByteSize::parse("512 KiB"), Ok(ByteSize(512 << 10)));
        assert_eq!(ByteSize::parse("2mb"), Ok(ByteSize(2_000_000)));
        assert_eq!(ByteSize::parse("4096"), Ok(ByteSize(4096)));
        assert_eq!(ByteSize::parse("10B"), Ok(ByteSize(10)));
        assert!(ByteSize::parse("1.5MiB").unwrap_err().contains("unknown unit"));
        assert!(ByteSize::parse("MiB").is_err());
        assert!(ByteSize::parse("99999999999GiB").unwrap_err().contains("too large"));
    }

    #[test]
    fn displays_in_the_largest_exact_unit() {
        assert_eq!(ByteSize(1 << 20).to_string(), "1MiB");
        assert_eq!(ByteSize(1536).to_string(), "1536B");
        assert_eq!(ByteSize(3 << 10).to_string(), "3KiB");
    }
}
