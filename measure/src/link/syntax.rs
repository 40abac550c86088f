//! The `--emulate` syntax: parsing a [`LinkConfig`] from `key=value` items, and printing one
//! back in the same form.

use super::*;
use stallwatch_proto::duration::UNITS;

/// The keys [`LinkConfig`'s `FromStr`](LinkConfig#impl-FromStr-for-LinkConfig) accepts.
pub(super) const KEYS: &str = "delay, jitter, loss, ge, rate, queue, reorder, order, outage, ramp";

/// Why an `--emulate` string did not parse. Every message names the key or item at fault.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParseLinkConfigError {
    /// An item was not of the form `key=value`.
    #[error("{item:?} is not key=value (keys: {KEYS})")]
    NotKeyValue {
        /// The item as written.
        item: String,
    },
    /// The key is not one of the known ones.
    #[error("unknown key {key:?} (keys: {KEYS})")]
    UnknownKey {
        /// The key as written.
        key: String,
    },
    /// The key was given twice (only `outage` may repeat).
    #[error("{key} given more than once")]
    DuplicateKey {
        /// The repeated key.
        key: &'static str,
    },
    /// The value does not fit the key.
    #[error("invalid {key} {value:?}: {reason}")]
    InvalidValue {
        /// The key whose value is wrong.
        key: &'static str,
        /// The value as written.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Parses the `--emulate` syntax: comma-separated `key=value` items, each key at most once
/// (except `outage`), missing keys keeping their [`LinkConfig::default`] values. `""` and
/// `"none"` are the perfect link.
///
/// | key | value | example |
/// |---|---|---|
/// | `delay` | duration | `delay=100ms` |
/// | `jitter` | duration; keeps packet order (reorder with `order=any` or `reorder`) | `jitter=20ms` |
/// | `loss` | probability | `loss=1%` |
/// | `ge` | `p/r` or `p/r/loss_good/loss_bad`, probabilities | `ge=0.01/0.3` |
/// | `rate` | rate | `rate=2mbit` |
/// | `queue` | duration (the drop-tail `queue_limit`) | `queue=300ms` |
/// | `reorder` | `probability/delay` | `reorder=0.5%/20ms` |
/// | `order` | `fifo` (jitter never reorders, the default) or `any` | `order=any` |
/// | `outage` | `start/duration`, may repeat | `outage=10s/2s` |
/// | `ramp` | `start/duration/loss/delay`: from `start`, over `duration`, loss rises by `loss` and delay by `delay` ([`Ramp`]) | `ramp=30s/90s/4%/150ms` |
///
/// A duration is written as in config files ([`stallwatch_proto::duration`]): numbers with
/// units, largest first, decimals allowed (`100ms`, `1.5s`, `1m30s`, `250us`); `0` needs no unit. A probability is a percentage (`1%`) or a fraction (`0.01`).
/// A rate is a number and `bps` (or `bit`), `kbit`/`kbps`, `mbit`/`mbps`, `gbit`/`gbps`, all bits
/// per second (unlike tc(8), where `bps` means bytes).
///
/// [`Display`](fmt::Display) writes this syntax back, exactly (a ramp's `joined`, set by code,
/// is not part of it).
impl FromStr for LinkConfig {
    type Err = ParseLinkConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut config = LinkConfig::default();
        if s.trim() == "none" {
            return Ok(config);
        }
        let mut seen: Vec<&'static str> = Vec::new();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let Some((key, value)) = item.split_once('=') else {
                return Err(ParseLinkConfigError::NotKeyValue { item: item.to_owned() });
            };
            let (key, value) = (key.trim(), value.trim());
            let key: &'static str = match key {
                "delay" => "delay",
                "jitter" => "jitter",
                "loss" => "loss",
                "ge" => "ge",
                "rate" => "rate",
                "queue" => "queue",
                "reorder" => "reorder",
                "order" => "order",
                "outage" => "outage",
                "ramp" => "ramp",
                _ => {
                    return Err(ParseLinkConfigError::UnknownKey { key: key.to_owned() });
                }
            };
            if key != "outage" {
                if seen.contains(&key) {
                    return Err(ParseLinkConfigError::DuplicateKey { key });
                }
                seen.push(key);
            }
            let invalid = |reason: String| ParseLinkConfigError::InvalidValue {
                key,
                value: value.to_owned(),
                reason,
            };
            match key {
                "delay" => config.delay = parse_duration(value).map_err(invalid)?,
                "jitter" => config.jitter = parse_duration(value).map_err(invalid)?,
                "loss" => config.loss = parse_probability(value).map_err(invalid)?,
                "ge" => {
                    let parts: Vec<&str> = value.split('/').map(str::trim).collect();
                    let mut ge = match parts[..] {
                        [p, r] | [p, r, _, _] => GilbertElliott::new(
                            parse_probability(p).map_err(|e| invalid(format!("p: {e}")))?,
                            parse_probability(r).map_err(|e| invalid(format!("r: {e}")))?,
                        ),
                        _ => {
                            return Err(invalid(
                                "expected p/r or p/r/loss_good/loss_bad".to_owned(),
                            ));
                        }
                    };
                    if let [_, _, good, bad] = parts[..] {
                        ge.loss_good = parse_probability(good)
                            .map_err(|e| invalid(format!("loss_good: {e}")))?;
                        ge.loss_bad = parse_probability(bad)
                            .map_err(|e| invalid(format!("loss_bad: {e}")))?;
                    }
                    config.gilbert_elliott = Some(ge);
                }
                "rate" => config.rate_bps = Some(parse_rate(value).map_err(invalid)?),
                "queue" => config.queue_limit = parse_duration(value).map_err(invalid)?,
                "reorder" => {
                    let Some((p, delay)) = value.split_once('/') else {
                        return Err(invalid("expected probability/delay, e.g. 0.5%/20ms".into()));
                    };
                    config.reorder = parse_probability(p.trim()).map_err(invalid)?;
                    config.reorder_delay = parse_duration(delay.trim()).map_err(invalid)?;
                }
                "order" => {
                    config.preserve_order = match value {
                        "fifo" => true,
                        "any" => false,
                        _ => return Err(invalid("expected fifo or any".to_owned())),
                    }
                }
                "outage" => {
                    let Some((start, duration)) = value.split_once('/') else {
                        return Err(invalid("expected start/duration, e.g. 10s/2s".to_owned()));
                    };
                    let start = parse_duration(start.trim()).map_err(invalid)?;
                    config.outages.push(Outage {
                        start: Time::ZERO + start,
                        duration: parse_duration(duration.trim()).map_err(invalid)?,
                    });
                }
                "ramp" => {
                    let parts: Vec<&str> = value.split('/').map(str::trim).collect();
                    let [start, duration, loss, delay] = parts[..] else {
                        return Err(invalid(
                            "expected start/duration/loss/delay, e.g. 30s/90s/4%/150ms".to_owned(),
                        ));
                    };
                    config.ramp = Some(Ramp {
                        start: parse_duration(start).map_err(|e| invalid(format!("start: {e}")))?,
                        duration: parse_duration(duration)
                            .map_err(|e| invalid(format!("duration: {e}")))?,
                        loss: parse_probability(loss).map_err(|e| invalid(format!("loss: {e}")))?,
                        delay: parse_duration(delay).map_err(|e| invalid(format!("delay: {e}")))?,
                        joined: Duration::ZERO,
                    });
                }
                _ => unreachable!("every key is matched above"),
            }
        }
        Ok(config)
    }
}

/// Writes the `--emulate` syntax, only the fields that differ from the default (`none` if
/// none do), with exact values: parsing the output of a config whose probabilities are in
/// `0..=1` gives back an equal config.
impl fmt::Display for LinkConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let default = LinkConfig::default();
        let mut items: Vec<String> = Vec::new();
        if self.delay != default.delay {
            items.push(format!("delay={}", FmtDuration(self.delay)));
        }
        if self.jitter != default.jitter {
            items.push(format!("jitter={}", FmtDuration(self.jitter)));
        }
        if self.loss != default.loss {
            items.push(format!("loss={}", self.loss));
        }
        if let Some(ge) = self.gilbert_elliott {
            if ge.loss_good == 0.0 && ge.loss_bad == 1.0 {
                items.push(format!("ge={}/{}", ge.p, ge.r));
            } else {
                items.push(format!("ge={}/{}/{}/{}", ge.p, ge.r, ge.loss_good, ge.loss_bad));
            }
        }
        if let Some(rate) = self.rate_bps {
            items.push(format!("rate={}", FmtRate(rate)));
        }
        if self.queue_limit != default.queue_limit {
            items.push(format!("queue={}", FmtDuration(self.queue_limit)));
        }
        if self.reorder != default.reorder || self.reorder_delay != default.reorder_delay {
            items.push(format!("reorder={}/{}", self.reorder, FmtDuration(self.reorder_delay)));
        }
        if !self.preserve_order {
            items.push("order=any".to_owned());
        }
        for o in &self.outages {
            let start = Duration::from_nanos(o.start.as_nanos());
            items.push(format!("outage={}/{}", FmtDuration(start), FmtDuration(o.duration)));
        }
        if let Some(r) = &self.ramp {
            items.push(format!(
                "ramp={}/{}/{}/{}",
                FmtDuration(r.start),
                FmtDuration(r.duration),
                r.loss,
                FmtDuration(r.delay)
            ));
        }
        if items.is_empty() { f.write_str("none") } else { f.write_str(&items.join(",")) }
    }
}

/// Splits `"12.5ms"` into `(12.5, "ms")`; the number is a plain non-negative decimal.
pub(super) fn split_number(s: &str) -> Result<(f64, &str), String> {
    let at = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(at);
    if number.is_empty() {
        return Err("not a number".to_owned());
    }
    let value: f64 = number.parse().map_err(|_| format!("{number:?} is not a number"))?;
    if value < 0.0 || number.starts_with('-') {
        return Err("must not be negative".to_owned());
    }
    Ok((value, unit.trim()))
}

/// A duration in the project's one syntax (`100ms`, `1.5s`, `1m30s`; see
/// [`stallwatch_proto::duration`]); the error says what is wrong without repeating the value,
/// which [`ParseLinkConfigError::InvalidValue`] already names.
pub(super) fn parse_duration(s: &str) -> Result<Duration, String> {
    stallwatch_proto::duration::parse_duration(s).map_err(|e| e.kind().to_string())
}

/// A probability: `1%` or `0.01`.
pub(super) fn parse_probability(s: &str) -> Result<f64, String> {
    if let Some(percent) = s.strip_suffix('%') {
        let (value, rest) = split_number(percent.trim())?;
        if !rest.is_empty() {
            return Err(format!("{s:?} is not a percentage"));
        }
        if value > 100.0 {
            return Err("a probability must be between 0% and 100%".to_owned());
        }
        Ok(value / 100.0)
    } else {
        let (value, rest) = split_number(s)?;
        if !rest.is_empty() {
            return Err("expected a percentage (1%) or a fraction (0.01)".to_owned());
        }
        if value > 1.0 {
            return Err("a fraction must be between 0 and 1 (or write a percentage)".to_owned());
        }
        Ok(value)
    }
}

/// A rate in bits per second: `2mbit`, `500kbit`, `64000bps`.
pub(super) fn parse_rate(s: &str) -> Result<u64, String> {
    const EXPECTED: &str = "expected a rate such as 2mbit, 500kbit or 64000bps";
    let (value, unit) = split_number(s).map_err(|e| format!("{e}; {EXPECTED}"))?;
    let per_unit = match unit.to_ascii_lowercase().as_str() {
        "bps" | "bit" => 1.0,
        "kbit" | "kbps" => 1e3,
        "mbit" | "mbps" => 1e6,
        "gbit" | "gbps" => 1e9,
        "" => return Err(format!("missing unit; {EXPECTED}")),
        _ => return Err(format!("unknown unit {unit:?}; {EXPECTED}")),
    };
    let bps = (value * per_unit).round();
    if bps < 1.0 {
        return Err("must be at least 1bps".to_owned());
    }
    if bps >= u64::MAX as f64 {
        return Err("too large".to_owned());
    }
    Ok(bps as u64)
}

/// Writes a duration exactly, in the largest unit that divides it.
pub(super) struct FmtDuration(Duration);

impl fmt::Display for FmtDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ns = self.0.as_nanos();
        if ns == 0 {
            return f.write_str("0s");
        }
        let (unit, per) =
            UNITS.iter().copied().find(|&(_, per)| ns.is_multiple_of(per)).unwrap_or(("ns", 1));
        write!(f, "{}{unit}", ns / per)
    }
}

/// Writes a rate exactly, in the largest unit that divides it.
pub(super) struct FmtRate(u64);

impl fmt::Display for FmtRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bps = self.0;
        let (unit, per) = [("gbit", 1_000_000_000), ("mbit", 1_000_000), ("kbit", 1_000)]
            .into_iter()
            .find(|&(_, per)| bps != 0 && bps.is_multiple_of(per))
            .unwrap_or(("bps", 1));
        write!(f, "{}{unit}", bps / per)
    }
}
