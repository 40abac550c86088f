//! A deterministic, sans-IO link model: a userspace netem.
//!
//! The caller says "a packet of `size_bytes` enters the link at `now`" ([`Link::send`]) and the
//! model answers its [`Fate`]: delivered at a [`Time`], or dropped for a [`DropReason`]. It never
//! reads a clock and owns no socket, so the test simulator and the agent's UDP/QUIC impairment
//! proxy run the same code; the proxy holds each packet until the returned time.
//!
//! # Order of effects
//!
//! Each packet goes through these stages in order; the first drop ends its journey.
//!
//! 1. **Outage**: a packet entering during any `[start, start + duration)` is dropped
//!    ([`DropReason::Outage`]).
//! 2. **Gilbert-Elliott burst loss**: the two-state chain first steps (good to bad with
//!    probability `p`, bad to good with `r`), then the packet is lost with the loss probability of
//!    the state it is now in ([`DropReason::Burst`]).
//! 3. **Random loss**: independent loss with probability `loss`, plus the [`Ramp`]'s share at
//!    that time ([`DropReason::Random`]).
//! 4. **Bottleneck queue** (only with `rate_bps`): transmission starts at
//!    `max(now, time the link frees up)` and takes `size * 8 / rate` (rounded up to the next
//!    nanosecond). Drop-tail: a packet that would wait longer than `queue_limit` before its
//!    transmission starts is dropped ([`DropReason::QueueFull`]) and takes no link time.
//! 5. **Propagation**: `delay` (plus the [`Ramp`]'s share at that time) plus an offset drawn
//!    uniformly from `[-jitter, +jitter]`, clamped so that the one-way delay is never negative.
//! 6. **Reordering**: with probability `reorder` the packet is held back by `reorder_delay`, so
//!    that later packets overtake it.
//! 7. **FIFO** (`preserve_order`): a packet is never delivered before the previous delivered
//!    packet's time *without its reordering hold*. This stops jitter from reordering, as in a real
//!    queue, while a held packet still lets the packets behind it pass (comparing against held
//!    times would turn every reordering into head-of-line blocking and leave nothing reordered).
//!
//! # Determinism
//!
//! [`Link::new`] derives one random stream per effect (random loss, Gilbert-Elliott, jitter,
//! reordering) from its seed, and every enabled effect draws from its stream exactly once per
//! packet offered, whatever happens to the packet. So the same seed and the same calls give the
//! same fates, and changing one knob never shifts another's randomness: with one seed, a 2 % loss
//! run drops every packet a 1 % run drops, and the surviving packets draw the same jitter.
//! Streams come from `rand`'s `SmallRng`, which is reproducible for a given `rand` version and
//! pointer width, not across them. Give the two directions of a path different seeds, or their
//! losses will coincide.
//!
//! # Cost
//!
//! O(1) per packet and constant state besides the configuration: the outage list is sorted once
//! and walked with a cursor, so each check is amortised O(1) while `now` does not go backwards
//! (an earlier `now` is handled with a binary search).
//!
//! Settings come from a [`LinkConfig`], built in code, parsed from the `--emulate` syntax
//! (see [`LinkConfig`'s `FromStr`](LinkConfig#impl-FromStr-for-LinkConfig)), or taken from a
//! published [`preset`].

mod presets;
mod ramp;

pub use presets::{LinkPreset, PRESET_NAMES, none, preset};
pub use ramp::Ramp;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use thiserror::Error;

use crate::time::Time;

/// How a link impairs the packets that cross it, in one direction.
///
/// [`LinkConfig::default`] is a perfect link: no delay, no loss, no rate limit.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkConfig {
    /// Fixed one-way propagation delay.
    pub delay: Duration,
    /// Each packet's delay is offset by a value drawn uniformly from `[-jitter, +jitter]`; the
    /// total one-way delay is clamped at zero.
    pub jitter: Duration,
    /// Independent random loss probability, `0.0..=1.0`. Values outside are clamped, NaN is 0.
    pub loss: f64,
    /// Gilbert-Elliott burst loss, applied before and in addition to `loss`.
    pub gilbert_elliott: Option<GilbertElliott>,
    /// Bottleneck rate in bits per second: packets are serialised one after another at this
    /// rate. `None` is unlimited; `Some(0)` carries nothing (every packet is a queue drop).
    pub rate_bps: Option<u64>,
    /// Drop-tail limit of the bottleneck queue: a packet that would wait longer than this before
    /// its transmission starts is dropped. Ignored without `rate_bps`.
    pub queue_limit: Duration,
    /// Probability that a packet is held back by an extra `reorder_delay`, so that later packets
    /// overtake it. Clamped to `0.0..=1.0`, NaN is 0.
    pub reorder: f64,
    /// Extra delay of a packet picked for reordering.
    pub reorder_delay: Duration,
    /// When true, jitter never reorders: a packet is never delivered before the previous one (as
    /// in a real FIFO queue). Packets picked by `reorder` are still overtaken. Defaults to true.
    pub preserve_order: bool,
    /// Blackouts: every packet entering during `[start, start + duration)` is dropped. They may
    /// overlap and come in any order.
    pub outages: Vec<Outage>,
    /// Loss and delay rising over time (a degrading network); `None` keeps them constant.
    pub ramp: Option<Ramp>,
}

impl LinkConfig {
    /// The bottleneck queue limit of [`LinkConfig::default`]: half a second, a deep queue like
    /// the ones cellular links keep (see the presets).
    pub const DEFAULT_QUEUE_LIMIT: Duration = Duration::from_millis(500);

    /// This configuration for a link created `elapsed` into its ramp's schedule (see
    /// [`Ramp::joined`]); without a ramp, unchanged.
    pub fn joined_at(mut self, elapsed: Duration) -> LinkConfig {
        if let Some(ramp) = &mut self.ramp {
            ramp.joined = elapsed;
        }
        self
    }
}

impl Default for LinkConfig {
    /// A perfect link: everything is delivered at the instant it is sent, in order.
    fn default() -> Self {
        LinkConfig {
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            loss: 0.0,
            gilbert_elliott: None,
            rate_bps: None,
            queue_limit: Self::DEFAULT_QUEUE_LIMIT,
            reorder: 0.0,
            reorder_delay: Duration::ZERO,
            preserve_order: true,
            outages: Vec::new(),
            ramp: None,
        }
    }
}

/// Gilbert-Elliott burst loss: a two-state Markov chain stepped once per packet.
///
/// With the defaults `loss_good = 0` and `loss_bad = 1` it is the simple Gilbert model, where
/// `1 / r` is the mean burst length and `p / (p + r)` the long-run loss rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GilbertElliott {
    /// Probability of moving from the good to the bad state, per packet.
    pub p: f64,
    /// Probability of moving from the bad to the good state, per packet.
    pub r: f64,
    /// Loss probability in the good state (default 0).
    pub loss_good: f64,
    /// Loss probability in the bad state (default 1).
    pub loss_bad: f64,
}

impl GilbertElliott {
    /// The simple Gilbert model: lose every packet in the bad state and none in the good one.
    pub fn new(p: f64, r: f64) -> Self {
        GilbertElliott { p, r, ..Self::default() }
    }

    /// Long-run fraction of packets lost: `(r * loss_good + p * loss_bad) / (p + r)`.
    ///
    /// Returns `loss_good` when the chain never leaves the good state (`p + r == 0`).
    pub fn stationary_loss(&self) -> f64 {
        let (p, r) = (probability(self.p), probability(self.r));
        if p + r == 0.0 {
            return probability(self.loss_good);
        }
        (r * probability(self.loss_good) + p * probability(self.loss_bad)) / (p + r)
    }
}

impl Default for GilbertElliott {
    /// Never enters the bad state (`p = 0`, `r = 1`), with `loss_good = 0`, `loss_bad = 1`.
    fn default() -> Self {
        GilbertElliott { p: 0.0, r: 1.0, loss_good: 0.0, loss_bad: 1.0 }
    }
}

/// A blackout: the link drops every packet entering during `[start, start + duration)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outage {
    /// First instant of the blackout.
    pub start: Time,
    /// Length of the blackout; zero means no blackout.
    pub duration: Duration,
}

impl Outage {
    /// First instant after the blackout.
    pub fn end(&self) -> Time {
        self.start + self.duration
    }
}

/// What happens to a packet offered to a [`Link`].
#[must_use = "the fate says when to deliver the packet, or that it is gone"]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fate {
    /// The packet arrives at the far end at this time.
    Deliver(Time),
    /// The packet never arrives.
    Drop(DropReason),
}

impl Fate {
    /// The delivery time, or `None` if the packet was dropped.
    pub fn delivery_time(self) -> Option<Time> {
        match self {
            Fate::Deliver(t) => Some(t),
            Fate::Drop(_) => None,
        }
    }
}

/// Why a [`Link`] dropped a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Independent random loss (`loss`).
    Random,
    /// Gilbert-Elliott burst loss.
    Burst,
    /// Drop-tail at the bottleneck queue (`queue_limit`).
    QueueFull,
    /// The packet entered during an outage.
    Outage,
}

impl DropReason {
    /// A short lowercase name, usable as a metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Random => "random",
            DropReason::Burst => "burst",
            DropReason::QueueFull => "queue_full",
            DropReason::Outage => "outage",
        }
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Exact counts of what a [`Link`] did. `packets == delivered + dropped()` always holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Packets offered to the link.
    pub packets: u64,
    /// Bytes offered to the link.
    pub bytes: u64,
    /// Packets delivered.
    pub delivered: u64,
    /// Packets dropped by independent random loss.
    pub dropped_random: u64,
    /// Packets dropped by Gilbert-Elliott burst loss.
    pub dropped_burst: u64,
    /// Packets dropped by the bottleneck queue.
    pub dropped_queue: u64,
    /// Packets dropped by an outage.
    pub dropped_outage: u64,
    /// Delivered packets that overtook at least one packet sent before them (delivered strictly
    /// earlier than it), whether jitter or the reordering stage caused it. This counts the
    /// overtakers; RFC 4737, which the receiver applies, counts the late packets instead.
    pub reordered: u64,
}

impl LinkStats {
    /// Packets dropped, for any reason.
    pub fn dropped(&self) -> u64 {
        self.dropped_random + self.dropped_burst + self.dropped_queue + self.dropped_outage
    }
}

/// One direction of an emulated network path. See the [module docs](self) for the order of
/// effects and the determinism guarantees.
#[derive(Debug, Clone)]
pub struct Link {
    config: LinkConfig,
    /// `config` with probabilities clamped to `0..=1`.
    loss: f64,
    gilbert_elliott: Option<GilbertElliott>,
    reorder: f64,
    /// `config.jitter` in nanoseconds, capped to `i64`.
    jitter_ns: i64,
    /// Outages sorted by start, merged, empty ones removed: `[start, end)`.
    outages: Vec<(Time, Time)>,
    /// First outage whose end is after the last `now` seen.
    outage_cursor: usize,
    last_now: Time,
    rng: Streams,
    /// Gilbert-Elliott chain state.
    in_bad_state: bool,
    /// When the bottleneck finishes transmitting everything queued so far.
    link_free_at: Time,
    /// Delivery time, without reordering hold, of the last delivered packet (FIFO stage).
    fifo_at: Time,
    /// Latest delivery time handed out so far (to count overtakers).
    latest_delivery: Time,
    stats: LinkStats,
}

/// One random stream per effect, so changing one knob leaves the others' draws alone.
#[derive(Debug, Clone)]
struct Streams {
    loss: SmallRng,
    gilbert_elliott: SmallRng,
    jitter: SmallRng,
    reorder: SmallRng,
}

/// The random draws for one packet; each is drawn only if its effect is enabled.
#[derive(Debug, Default, Clone, Copy)]
struct Draws {
    loss: f64,
    ge_step: f64,
    ge_loss: f64,
    jitter_ns: i64,
    reorder: f64,
}

impl Link {
    /// A link with this configuration; the same `seed` and the same calls give the same fates
    /// (see the [module docs](self)). Out-of-range probabilities are clamped to `0..=1`.
    pub fn new(config: LinkConfig, seed: u64) -> Self {
        let mut master = SmallRng::seed_from_u64(seed);
        let rng = Streams {
            loss: SmallRng::from_rng(&mut master),
            gilbert_elliott: SmallRng::from_rng(&mut master),
            jitter: SmallRng::from_rng(&mut master),
            reorder: SmallRng::from_rng(&mut master),
        };
        let gilbert_elliott = config.gilbert_elliott.map(|ge| GilbertElliott {
            p: probability(ge.p),
            r: probability(ge.r),
            loss_good: probability(ge.loss_good),
            loss_bad: probability(ge.loss_bad),
        });
        Link {
            loss: probability(config.loss),
            gilbert_elliott,
            reorder: probability(config.reorder),
            jitter_ns: i64::try_from(config.jitter.as_nanos()).unwrap_or(i64::MAX),
            outages: merge_outages(&config.outages),
            outage_cursor: 0,
            last_now: Time::ZERO,
            rng,
            in_bad_state: false,
            link_free_at: Time::ZERO,
            fifo_at: Time::ZERO,
            latest_delivery: Time::ZERO,
            stats: LinkStats::default(),
            config,
        }
    }

    /// Offers a packet of `size_bytes` to the link at `now` and returns its fate.
    ///
    /// `now` should not go backwards between calls (an earlier `now` is accepted, but the
    /// bottleneck then counts it as having waited behind everything already queued).
    pub fn send(&mut self, now: Time, size_bytes: usize) -> Fate {
        self.stats.packets += 1;
        self.stats.bytes = self.stats.bytes.saturating_add(size_bytes as u64);
        let draws = self.draw();
        let fate = self.fate(now, size_bytes, draws);
        self.last_now = now;
        match fate {
            Fate::Deliver(_) => self.stats.delivered += 1,
            Fate::Drop(DropReason::Random) => self.stats.dropped_random += 1,
            Fate::Drop(DropReason::Burst) => self.stats.dropped_burst += 1,
            Fate::Drop(DropReason::QueueFull) => self.stats.dropped_queue += 1,
            Fate::Drop(DropReason::Outage) => self.stats.dropped_outage += 1,
        }
        fate
    }

    /// What the link has done so far.
    pub fn stats(&self) -> &LinkStats {
        &self.stats
    }

    /// The configuration the link was built with, as given.
    pub fn config(&self) -> &LinkConfig {
        &self.config
    }

    /// Draws once from every enabled effect's stream, whatever then happens to the packet.
    fn draw(&mut self) -> Draws {
        let mut d = Draws::default();
        if self.loss > 0.0 || self.config.ramp.is_some_and(|r| r.loss > 0.0) {
            d.loss = self.rng.loss.random();
        }
        if self.gilbert_elliott.is_some() {
            d.ge_step = self.rng.gilbert_elliott.random();
            d.ge_loss = self.rng.gilbert_elliott.random();
        }
        if self.jitter_ns > 0 {
            d.jitter_ns = self.rng.jitter.random_range(-self.jitter_ns..=self.jitter_ns);
        }
        if self.reorder > 0.0 {
            d.reorder = self.rng.reorder.random();
        }
        d
    }

    fn fate(&mut self, now: Time, size_bytes: usize, draws: Draws) -> Fate {
        // 1. Outage.
        if self.in_outage(now) {
            return Fate::Drop(DropReason::Outage);
        }

        // 2. Gilbert-Elliott: step the chain, then lose with the new state's probability.
        if let Some(ge) = self.gilbert_elliott {
            self.in_bad_state =
                if self.in_bad_state { draws.ge_step >= ge.r } else { draws.ge_step < ge.p };
            let loss = if self.in_bad_state { ge.loss_bad } else { ge.loss_good };
            if draws.ge_loss < loss {
                return Fate::Drop(DropReason::Burst);
            }
        }

        // 3. Random loss.
        let loss = match &self.config.ramp {
            Some(ramp) => (self.loss + ramp.loss_at(now)).min(1.0),
            None => self.loss,
        };
        if draws.loss < loss {
            return Fate::Drop(DropReason::Random);
        }

        // 4. Bottleneck queue.
        let departure = match self.config.rate_bps {
            None => now,
            Some(0) => return Fate::Drop(DropReason::QueueFull),
            Some(rate) => {
                let start = now.max(self.link_free_at);
                if start.saturating_since(now) > self.config.queue_limit {
                    return Fate::Drop(DropReason::QueueFull);
                }
                self.link_free_at = start + transmission_time(size_bytes, rate);
                self.link_free_at
            }
        };

        // 5. Propagation delay and jitter.
        let ramp_delay = self.config.ramp.map_or(Duration::ZERO, |r| r.delay_at(now));
        let delay = self.config.delay.saturating_add(ramp_delay);
        let delay_ns = i128::try_from(delay.as_nanos()).unwrap_or(i128::MAX);
        let one_way = (delay_ns + i128::from(draws.jitter_ns)).clamp(0, i128::from(u64::MAX));
        let mut arrival =
            departure + Duration::from_nanos(u64::try_from(one_way).unwrap_or(u64::MAX));

        // 6 and 7. The FIFO orders the times *without* the reordering hold (see the module
        // docs), so it goes first here and the hold is added on top.
        if self.config.preserve_order {
            arrival = arrival.max(self.fifo_at);
            self.fifo_at = arrival;
        }
        if draws.reorder < self.reorder {
            arrival += self.config.reorder_delay;
        }

        if arrival < self.latest_delivery {
            self.stats.reordered += 1;
        }
        self.latest_delivery = self.latest_delivery.max(arrival);
        Fate::Deliver(arrival)
    }

    /// Whether `now` falls in an outage; amortised O(1) while `now` does not go backwards.
    fn in_outage(&mut self, now: Time) -> bool {
        if now < self.last_now {
            self.outage_cursor = self.outages.partition_point(|&(_, end)| end <= now);
        }
        while self.outages.get(self.outage_cursor).is_some_and(|&(_, end)| end <= now) {
            self.outage_cursor += 1;
        }
        self.outages.get(self.outage_cursor).is_some_and(|&(start, _)| start <= now)
    }
}

/// Clamps a probability to `0..=1`; NaN becomes 0.
fn probability(p: f64) -> f64 {
    if p.is_nan() { 0.0 } else { p.clamp(0.0, 1.0) }
}

/// Time to serialise `size_bytes` at `rate_bps` (> 0), rounded up to the next nanosecond so the
/// link never exceeds its rate.
fn transmission_time(size_bytes: usize, rate_bps: u64) -> Duration {
    let ns = (size_bytes as u128 * 8 * 1_000_000_000).div_ceil(u128::from(rate_bps));
    Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
}

/// Outages as sorted, disjoint, non-empty `[start, end)` intervals.
fn merge_outages(outages: &[Outage]) -> Vec<(Time, Time)> {
    let mut spans: Vec<(Time, Time)> =
        outages.iter().filter(|o| !o.duration.is_zero()).map(|o| (o.start, o.end())).collect();
    spans.sort_unstable();
    let mut merged: Vec<(Time, Time)> = Vec::with_capacity(spans.len());
    for (start, end) in spans {
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    merged
}

// ---------------------------------------------------------------------------------------------
// The `--emulate` syntax.

/// The keys [`LinkConfig`'s `FromStr`](LinkConfig#impl-FromStr-for-LinkConfig) accepts.
const KEYS: &str = "delay, jitter, loss, ge, rate, queue, reorder, order, outage, ramp";

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

const NANOS_PER: [(&str, u128); 6] = [
    ("h", 3_600_000_000_000),
    ("m", 60_000_000_000),
    ("s", 1_000_000_000),
    ("ms", 1_000_000),
    ("us", 1_000),
    ("ns", 1),
];

/// Splits `"12.5ms"` into `(12.5, "ms")`; the number is a plain non-negative decimal.
fn split_number(s: &str) -> Result<(f64, &str), String> {
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
fn parse_duration(s: &str) -> Result<Duration, String> {
    stallwatch_proto::duration::parse_duration(s).map_err(|e| e.kind().to_string())
}

/// A probability: `1%` or `0.01`.
fn parse_probability(s: &str) -> Result<f64, String> {
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
fn parse_rate(s: &str) -> Result<u64, String> {
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
struct FmtDuration(Duration);

impl fmt::Display for FmtDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ns = self.0.as_nanos();
        if ns == 0 {
            return f.write_str("0s");
        }
        let (unit, per) =
            NANOS_PER.iter().copied().find(|&(_, per)| ns.is_multiple_of(per)).unwrap_or(("ns", 1));
        write!(f, "{}{unit}", ns / per)
    }
}

/// Writes a rate exactly, in the largest unit that divides it.
struct FmtRate(u64);

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

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Send `n` packets of `size` bytes, `gap` apart from time zero.
    fn run(link: &mut Link, n: u64, gap: Duration, size: usize) -> Vec<(Time, Fate)> {
        (0..n)
            .map(|i| {
                let now = Time::from_nanos(i * gap.as_nanos() as u64);
                (now, link.send(now, size))
            })
            .collect()
    }

    fn assert_conserved(s: &LinkStats) {
        assert_eq!(s.packets, s.delivered + s.dropped(), "{s:?}");
    }

    #[test]
    fn perfect_link_delivers_everything_at_now() {
        let mut link = Link::new(LinkConfig::default(), 1);
        for (now, fate) in run(&mut link, 1000, MS, 1200) {
            assert_eq!(fate, Fate::Deliver(now));
        }
        let s = link.stats();
        assert_eq!(
            (s.packets, s.bytes, s.delivered, s.dropped(), s.reordered),
            (1000, 1_200_000, 1000, 0, 0)
        );
    }

    #[test]
    fn fixed_delay_is_exact() {
        let config = LinkConfig { delay: Duration::from_micros(45_250), ..LinkConfig::default() };
        let mut link = Link::new(config, 1);
        for (now, fate) in run(&mut link, 1000, Duration::from_micros(333), 100) {
            assert_eq!(fate, Fate::Deliver(now + Duration::from_micros(45_250)));
        }
    }

    #[test]
    fn random_loss_is_binomial() {
        let (n, p) = (100_000_u64, 0.02);
        let mut link = Link::new(LinkConfig { loss: p, ..LinkConfig::default() }, 7);
        let fates = run(&mut link, n, MS, 100);
        let dropped =
            fates.iter().filter(|(_, f)| *f == Fate::Drop(DropReason::Random)).count() as f64;
        let mean = n as f64 * p;
        let sd = (n as f64 * p * (1.0 - p)).sqrt();
        assert!(
            (dropped - mean).abs() <= 3.0 * sd,
            "dropped {dropped}, expected {mean} ± {}",
            3.0 * sd
        );
        let s = link.stats();
        assert_eq!(s.dropped_random as f64, dropped);
        assert_eq!(s.dropped(), s.dropped_random);
        assert_conserved(s);
    }

    #[test]
    fn gilbert_elliott_fit_recovers_p_and_r() {
        let (p, r) = (0.01, 0.25);
        let ge = GilbertElliott::new(p, r);
        let config = LinkConfig { gilbert_elliott: Some(ge), ..LinkConfig::default() };
        let mut link = Link::new(config, 42);
        let lost: Vec<bool> = run(&mut link, 200_000, MS, 100)
            .iter()
            .map(|(_, f)| matches!(f, Fate::Drop(_)))
            .collect();

        let (mut ok_then_any, mut ok_then_lost, mut lost_then_any, mut lost_then_ok) = (0, 0, 0, 0);
        for w in lost.windows(2) {
            if w[0] {
                lost_then_any += 1;
                lost_then_ok += usize::from(!w[1]);
            } else {
                ok_then_any += 1;
                ok_then_lost += usize::from(w[1]);
            }
        }
        let fitted_p = ok_then_lost as f64 / ok_then_any as f64;
        let fitted_r = lost_then_ok as f64 / lost_then_any as f64;
        let rate = lost.iter().filter(|&&l| l).count() as f64 / lost.len() as f64;
        let within_10_percent = |got: f64, want: f64| (got - want).abs() <= 0.1 * want;
        assert!(within_10_percent(fitted_p, p), "p' = {fitted_p}");
        assert!(within_10_percent(fitted_r, r), "r' = {fitted_r}");
        assert!(within_10_percent(rate, p / (p + r)), "loss rate {rate}");
        assert_eq!(ge.stationary_loss(), p / (p + r));

        let s = link.stats();
        assert_eq!(s.dropped_burst, s.dropped());
        assert_eq!(s.dropped_burst as usize, lost.iter().filter(|&&l| l).count());
        assert_conserved(s);
    }

    #[test]
    fn bottleneck_rate_and_drop_tail() {
        // 1 Mbit/s carries one 1250-byte packet per 10 ms, 100 pps; 200 pps are offered for 10 s.
        let queue_limit = ms(200);
        let config = LinkConfig { rate_bps: Some(1_000_000), queue_limit, ..LinkConfig::default() };
        let mut link = Link::new(config, 3);
        let fates = run(&mut link, 2000, ms(5), 1250);
        let tx = ms(10);

        let mut delivered = Vec::new();
        for &(now, fate) in &fates {
            match fate {
                Fate::Deliver(at) => {
                    // Waiting time before transmission starts never exceeds the limit.
                    let wait = at.saturating_since(now) - tx;
                    assert!(wait <= queue_limit, "waited {wait:?}");
                    delivered.push(at);
                }
                Fate::Drop(reason) => assert_eq!(reason, DropReason::QueueFull),
            }
        }
        // The queue is full after a fraction of a second; from then on the link is saturated.
        let in_window = delivered
            .iter()
            .filter(|&&t| t >= Time::from_millis(2000) && t < Time::from_millis(10_000))
            .count() as f64;
        let pps = in_window / 8.0;
        assert!((pps - 100.0).abs() <= 1.0, "delivered {pps} pps");

        let s = link.stats();
        assert_eq!(s.delivered as usize, delivered.len());
        assert_eq!(s.dropped_queue, 2000 - s.delivered);
        assert!(s.dropped_queue > 900, "{s:?}");
        assert_eq!(s.dropped(), s.dropped_queue);
        assert_eq!(s.reordered, 0);
        assert_conserved(s);
    }

    #[test]
    fn zero_rate_carries_nothing() {
        let mut link = Link::new(LinkConfig { rate_bps: Some(0), ..LinkConfig::default() }, 1);
        assert_eq!(link.send(Time::ZERO, 1), Fate::Drop(DropReason::QueueFull));
        assert_eq!(link.stats().dropped_queue, 1);
    }

    #[test]
    fn jitter_reorders_only_without_preserve_order() {
        let jittery = |preserve_order| LinkConfig {
            delay: ms(50),
            jitter: ms(20),
            preserve_order,
            ..LinkConfig::default()
        };

        let mut link = Link::new(jittery(false), 9);
        let fates = run(&mut link, 10_000, ms(10), 100);
        let mut latest = Time::ZERO;
        let mut overtakers = 0;
        for &(now, fate) in &fates {
            let at = fate.delivery_time().expect("no loss configured");
            let one_way = at.saturating_since(now);
            assert!(one_way >= ms(30) && one_way <= ms(70), "one-way {one_way:?}");
            overtakers += u64::from(at < latest);
            latest = latest.max(at);
        }
        assert!(overtakers > 100, "only {overtakers} packets reordered");
        assert_eq!(link.stats().reordered, overtakers);

        let mut link = Link::new(jittery(true), 9);
        let times: Vec<Time> = run(&mut link, 10_000, ms(10), 100)
            .iter()
            .map(|(_, f)| f.delivery_time().expect("no loss configured"))
            .collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "FIFO delivery went backwards");
        assert_eq!(link.stats().reordered, 0);
    }

    #[test]
    fn custom_jitter_keeps_packet_order_unless_asked_to_reorder() {
        // The demo's latam/wifi settings: access links deliver in order.
        let mut link = Link::new("delay=90ms,jitter=8ms,loss=0.3%".parse().unwrap(), 4);
        let times: Vec<Time> = run(&mut link, 10_000, ms(1), 100)
            .iter()
            .filter_map(|(_, f)| f.delivery_time())
            .collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(link.stats().reordered, 0);
        let mut link = Link::new("delay=90ms,jitter=8ms,order=any".parse().unwrap(), 4);
        let _ = run(&mut link, 10_000, ms(1), 100);
        assert!(link.stats().reordered > 1_000, "{:?}", link.stats());
    }

    #[test]
    fn reorder_holds_packets_even_with_preserve_order() {
        let config = LinkConfig {
            delay: ms(20),
            reorder: 0.1,
            reorder_delay: ms(25),
            preserve_order: true,
            ..LinkConfig::default()
        };
        let mut link = Link::new(config, 5);
        let fates = run(&mut link, 10_000, ms(10), 100);
        let mut held = 0;
        for &(now, fate) in &fates {
            let one_way = fate.delivery_time().unwrap().saturating_since(now);
            // A held packet does not hold back the ones behind it.
            assert!(one_way == ms(20) || one_way == ms(45), "one-way {one_way:?}");
            held += u64::from(one_way == ms(45));
        }
        assert!((800..1200).contains(&held), "held {held}");
        // With 10 ms between packets, the two packets after a held one (if not held themselves)
        // overtake it.
        assert!(link.stats().reordered > held, "{:?}", link.stats());
    }

    #[test]
    fn outage_drops_exactly_the_packets_entering_it() {
        let outage = Outage { start: Time::from_millis(1000), duration: ms(300) };
        let config = LinkConfig { delay: ms(30), outages: vec![outage], ..LinkConfig::default() };
        let mut link = Link::new(config, 1);
        // Packets every 10 ms from 0 to 3 s: includes 1000 ms (dropped) and 1300 ms (delivered).
        let fates = run(&mut link, 300, ms(10), 100);
        let expected = fates
            .iter()
            .filter(|(now, _)| *now >= Time::from_millis(1000) && *now < Time::from_millis(1300))
            .count();
        assert_eq!(expected, 30);
        for &(now, fate) in &fates {
            if now >= outage.start && now < outage.end() {
                assert_eq!(fate, Fate::Drop(DropReason::Outage), "at {now:?}");
            } else {
                assert_eq!(fate, Fate::Deliver(now + ms(30)), "at {now:?}");
            }
        }
        assert_eq!(link.stats().dropped_outage as usize, expected);
        assert_eq!(link.stats().dropped(), link.stats().dropped_outage);
    }

    #[test]
    fn outages_may_overlap_come_unsorted_and_time_may_go_back() {
        let at = Time::from_millis;
        let config = LinkConfig {
            outages: vec![
                Outage { start: at(500), duration: ms(100) },
                Outage { start: at(100), duration: ms(100) },
                Outage { start: at(150), duration: ms(100) },
                Outage { start: at(50), duration: Duration::ZERO },
            ],
            ..LinkConfig::default()
        };
        let mut link = Link::new(config, 1);
        let dropped =
            |link: &mut Link, t| matches!(link.send(at(t), 1), Fate::Drop(DropReason::Outage));
        assert!(!dropped(&mut link, 50));
        assert!(dropped(&mut link, 100));
        assert!(dropped(&mut link, 249));
        assert!(!dropped(&mut link, 250));
        assert!(dropped(&mut link, 599));
        assert!(!dropped(&mut link, 600));
        assert!(dropped(&mut link, 120), "time going back still finds the outage");
        assert!(!dropped(&mut link, 400));
    }

    fn everything() -> LinkConfig {
        LinkConfig {
            delay: ms(40),
            jitter: ms(15),
            loss: 0.05,
            gilbert_elliott: Some(GilbertElliott::new(0.02, 0.3)),
            rate_bps: Some(2_000_000),
            queue_limit: ms(100),
            reorder: 0.02,
            reorder_delay: ms(30),
            preserve_order: false,
            outages: vec![Outage { start: Time::from_millis(2000), duration: ms(500) }],
            ramp: None,
        }
    }

    #[test]
    fn same_seed_same_fates_different_seed_different_fates() {
        let fates = |seed| run(&mut Link::new(everything(), seed), 5000, ms(2), 1000);
        let a = fates(11);
        assert_eq!(a, fates(11));
        assert_ne!(a, fates(12));

        let mut link = Link::new(everything(), 11);
        let _ = run(&mut link, 5000, ms(2), 1000);
        let s = link.stats();
        assert_conserved(s);
        for (reason, count) in [
            (DropReason::Random, s.dropped_random),
            (DropReason::Burst, s.dropped_burst),
            (DropReason::QueueFull, s.dropped_queue),
            (DropReason::Outage, s.dropped_outage),
        ] {
            let seen = a.iter().filter(|(_, f)| *f == Fate::Drop(reason)).count() as u64;
            assert_eq!(seen, count, "{reason}");
            assert!(count > 0, "{reason} never happened");
        }
        assert!(s.reordered > 0);
    }

    #[test]
    fn changing_one_knob_keeps_the_other_draws() {
        let with_loss = |loss| LinkConfig {
            loss,
            delay: ms(10),
            jitter: ms(5),
            // FIFO would tie each delivery to the previous survivor's; compare raw draws.
            preserve_order: false,
            ..LinkConfig::default()
        };
        let low = run(&mut Link::new(with_loss(0.01), 3), 20_000, MS, 100);
        let high = run(&mut Link::new(with_loss(0.02), 3), 20_000, MS, 100);
        for ((_, l), (_, h)) in low.iter().zip(&high) {
            match (l, h) {
                (Fate::Drop(_), h) => {
                    assert!(matches!(h, Fate::Drop(_)), "2% kept a packet 1% dropped")
                }
                (Fate::Deliver(a), Fate::Deliver(b)) => {
                    assert_eq!(a, b, "jitter changed with loss")
                }
                (Fate::Deliver(_), Fate::Drop(_)) => {}
            }
        }
    }

    #[test]
    fn parses_the_cli_example() {
        let c: LinkConfig =
            "delay=100ms,jitter=20ms,loss=1%,ge=0.01/0.3,rate=2mbit,queue=300ms,reorder=0.5%/20ms"
                .parse()
                .unwrap();
        let want = LinkConfig {
            delay: ms(100),
            jitter: ms(20),
            loss: 0.01,
            gilbert_elliott: Some(GilbertElliott {
                p: 0.01,
                r: 0.3,
                loss_good: 0.0,
                loss_bad: 1.0,
            }),
            rate_bps: Some(2_000_000),
            queue_limit: ms(300),
            reorder: 0.005,
            reorder_delay: ms(20),
            preserve_order: true,
            outages: vec![],
            ramp: None,
        };
        assert_eq!(c, want);
        assert_eq!(c.to_string().parse::<LinkConfig>(), Ok(want));
    }

    #[test]
    fn parses_the_other_forms() {
        let c: LinkConfig =
            " delay = 1.5s , jitter=250us, loss=0.02, ge=1%/30%/0.1%/80%, rate=1.2MBIT, \
                             order=any, outage=10s/2s, outage=1m/500ms, "
                .parse()
                .unwrap();
        assert_eq!((c.delay, c.jitter, c.loss), (ms(1500), Duration::from_micros(250), 0.02));
        let ge = c.gilbert_elliott.unwrap();
        assert!(
            (ge.loss_good - 0.001).abs() < 1e-15 && (ge.loss_bad - 0.8).abs() < 1e-15,
            "{ge:?}"
        );
        assert_eq!(c.rate_bps, Some(1_200_000));
        assert!(!c.preserve_order);
        assert_eq!(
            c.outages,
            [
                Outage { start: Time::from_millis(10_000), duration: ms(2000) },
                Outage { start: Time::from_millis(60_000), duration: ms(500) },
            ]
        );
        assert_eq!(c.to_string().parse::<LinkConfig>(), Ok(c));
        for (text, rate) in
            [("rate=64000bps", 64_000), ("rate=500kbit", 500_000), ("rate=1gbit", 1_000_000_000)]
        {
            assert_eq!(text.parse::<LinkConfig>().unwrap().rate_bps, Some(rate), "{text}");
        }
        assert_eq!("".parse::<LinkConfig>(), Ok(LinkConfig::default()));
        assert_eq!("none".parse::<LinkConfig>(), Ok(LinkConfig::default()));
        assert_eq!(LinkConfig::default().to_string(), "none");
        assert_eq!("delay=0".parse::<LinkConfig>(), Ok(LinkConfig::default()));
        let c: LinkConfig = "delay=45ms,ramp=20s/1.5m/4%/150ms".parse().unwrap();
        let ramp = Ramp {
            start: ms(20_000),
            duration: ms(90_000),
            loss: 0.04,
            delay: ms(150),
            joined: Duration::ZERO,
        };
        assert_eq!(c.ramp, Some(ramp));
        assert_eq!(c.to_string(), "delay=45ms,ramp=20s/90s/0.04/150ms");
        assert_eq!(c.to_string().parse::<LinkConfig>(), Ok(c.clone()));
        let joined = c.joined_at(ms(30_000)).ramp.unwrap();
        assert_eq!(joined, Ramp { joined: ms(30_000), ..ramp });
    }

    /// `--emulate` reads durations as config files do: compound units and days included.
    #[test]
    fn durations_take_the_config_syntax() {
        let c: LinkConfig = "delay=0.25s,jitter=1ms500us,outage=1h30m/2m30s".parse().unwrap();
        assert_eq!((c.delay, c.jitter), (ms(250), Duration::from_micros(1500)));
        assert_eq!(
            c.outages,
            [Outage { start: Time::from_millis(5_400_000), duration: ms(150_000) }]
        );
        assert_eq!(c.to_string().parse::<LinkConfig>(), Ok(c));
    }

    #[test]
    fn parse_errors_name_the_key() {
        let err = |s: &str| s.parse::<LinkConfig>().unwrap_err().to_string();
        for (input, key, detail) in [
            ("loss=150%", "loss", "between 0% and 100%"),
            ("delay=abc", "delay", "expected a number at \"abc\""),
            ("delay=10 ms", "delay", "spaces are not allowed"),
            ("queue=1.5ns", "queue", "finer than a nanosecond"),
            ("outage=10s/2x", "outage", "unknown unit \"x\""),
            ("bogus=1", "bogus", "unknown key"),
            ("jitter=10", "jitter", "\"10\" has no unit"),
            ("delay=-5ms", "delay", "negative"),
            ("rate=2mbyte", "rate", "unknown unit"),
            ("rate=0kbit", "rate", "at least 1bps"),
            ("ge=0.1", "ge", "expected p/r"),
            ("ge=0.1/2", "ge", "r:"),
            ("reorder=1%", "reorder", "probability/delay"),
            ("order=lifo", "order", "fifo or any"),
            ("delay=1ms,delay=2ms", "delay", "more than once"),
            ("delay", "delay", "key=value"),
            ("ramp=10s/60s/4%", "ramp", "start/duration/loss/delay"),
            ("ramp=10s/1m/4/100ms", "ramp", "loss:"),
        ] {
            let message = err(input);
            assert!(message.contains(key) && message.contains(detail), "{input}: {message}");
        }
        assert_eq!(
            err("loss=150%"),
            "invalid loss \"150%\": a probability must be between 0% and 100%"
        );
        assert!(err("bogus=1").starts_with("unknown key \"bogus\""));
    }

    #[test]
    fn probabilities_out_of_range_are_clamped() {
        let config = LinkConfig {
            loss: f64::NAN,
            reorder: 7.0,
            reorder_delay: ms(1),
            ..LinkConfig::default()
        };
        let mut link = Link::new(config, 1);
        assert_eq!(link.send(Time::ZERO, 1), Fate::Deliver(Time::ZERO + ms(1)));
        let mut link = Link::new(LinkConfig { loss: 2.0, ..LinkConfig::default() }, 1);
        assert_eq!(link.send(Time::ZERO, 1), Fate::Drop(DropReason::Random));
    }
}
