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
//!
//! Files: the model is here; `syntax.rs` parses and prints the `--emulate` syntax,
//! `presets.rs` holds the published presets, `ramp.rs` the degradation ramp, `tests.rs` the
//! tests.

mod presets;
mod ramp;
mod syntax;
#[cfg(test)]
mod tests;

pub use presets::{LinkPreset, PRESET_NAMES, none, preset};
pub use ramp::Ramp;
pub use syntax::*;

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
