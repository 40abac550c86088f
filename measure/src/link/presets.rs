//! Published network presets (DESIGN.md section 5), as pairs of [`LinkConfig`]s.
//!
//! Loadero figures are per direction: its table gives the incoming (down) value first where the
//! two directions differ, and one value where they are equal. Chrome DevTools figures are a
//! round-trip latency, split evenly across the two directions here. No preset reorders:
//! cellular radio links deliver in order (RLC in-order delivery), so jitter is FIFO
//! (`preserve_order`) rather than netem's reordering kind.

use std::time::Duration;

use super::LinkConfig;

/// A named network condition: one [`LinkConfig`] per direction, with where the numbers come from.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkPreset {
    /// The name [`preset`] looks up, e.g. `"4g"`.
    pub name: &'static str,
    /// Towards the agent (download).
    pub down: LinkConfig,
    /// Away from the agent (upload).
    pub up: LinkConfig,
    /// Where the figures come from.
    pub source: &'static str,
}

/// The names of the published presets, in the order of DESIGN.md's table: the contract's
/// list, which the collector checks plans against. [`preset`] also accepts
/// [`EMULATION_PRESET_ALIASES`](stallwatch_proto::plan::EMULATION_PRESET_ALIASES): `none` (no emulation) and `2g` (the same as `edge`).
pub use stallwatch_proto::plan::EMULATION_PRESETS as PRESET_NAMES;
use stallwatch_proto::plan::is_emulation_preset;

const LOADERO: &str = "Loadero network conditions, https://wiki.loadero.com (network modes)";
const CHROME: &str = "Chrome DevTools network throttling presets (SDK NetworkManager)";

/// Drop-tail limit of the Loadero cellular presets on fast links. Cellular base stations keep
/// deep per-user buffers (bufferbloat: Jiang et al., "Tackling Bufferbloat in 3G/4G Networks",
/// IMC 2012, saw round trips of seconds under load), so a full queue shows up as added delay long
/// before it shows up as loss.
const CELLULAR_QUEUE: Duration = Duration::from_millis(500);

/// Drop-tail limit of the slow Loadero presets: the same deep buffers take longer to drain at a
/// few hundred kbit/s.
const SLOW_CELLULAR_QUEUE: Duration = Duration::from_secs(1);

/// Drop-tail limit of the Chrome presets. DevTools throttles by delaying requests and never drops
/// anything; a 2 s queue keeps that character (delay grows first) while staying bounded, and a
/// live-video packet 2 s late is useless anyway.
const CHROME_QUEUE: Duration = Duration::from_secs(2);

/// The preset called `name` (case-insensitive), or `None` if there is no such preset.
///
/// Besides [`PRESET_NAMES`], accepts `none` (see [`none`]) and `2g` (an alias of `edge`).
pub fn preset(name: &str) -> Option<LinkPreset> {
    // The contract's list decides which names exist, so no preset is accepted here that the
    // collector would refuse in a plan.
    if !is_emulation_preset(name) {
        return None;
    }
    let ms = Duration::from_millis;
    let us = Duration::from_micros;
    let p = match name.to_ascii_lowercase().as_str() {
        "none" => none(),
        "4g" => LinkPreset {
            name: "4g",
            // Loadero's jitter column reads "5ms / 15ms": incoming 5 ms, outgoing 15 ms (not a
            // 5-15 ms range, as DESIGN.md's table has it).
            down: loadero(100_000_000, ms(45), ms(5), 0.002, CELLULAR_QUEUE),
            up: loadero(50_000_000, ms(45), ms(15), 0.002, CELLULAR_QUEUE),
            source: LOADERO,
        },
        "3.5g" => LinkPreset {
            name: "3.5g",
            down: loadero(20_000_000, ms(150), ms(10), 0.005, CELLULAR_QUEUE),
            up: loadero(10_000_000, ms(150), ms(10), 0.005, CELLULAR_QUEUE),
            source: LOADERO,
        },
        "3g" => LinkPreset {
            name: "3g",
            down: loadero(1_200_000, ms(250), ms(50), 0.005, SLOW_CELLULAR_QUEUE),
            up: loadero(1_200_000, ms(250), ms(50), 0.005, SLOW_CELLULAR_QUEUE),
            source: LOADERO,
        },
        "edge" | "2g" => LinkPreset {
            name: "edge",
            // Loadero gives EDGE more bandwidth up than down; kept as published.
            down: loadero(200_000, ms(650), ms(100), 0.01, SLOW_CELLULAR_QUEUE),
            up: loadero(260_000, ms(650), ms(100), 0.01, SLOW_CELLULAR_QUEUE),
            source: LOADERO,
        },
        // DevTools "Fast 4G": 165 ms RTT, 9 Mbps / 1.5 Mbps scaled by 0.9.
        "chrome-fast-4g" => LinkPreset {
            name: "chrome-fast-4g",
            down: chrome(8_100_000, us(82_500)),
            up: chrome(1_350_000, us(82_500)),
            source: CHROME,
        },
        // DevTools "Slow 4G", called "Fast 3G" before Chrome 119: 562.5 ms RTT.
        "chrome-slow-4g" => LinkPreset {
            name: "chrome-slow-4g",
            down: chrome(1_440_000, us(281_250)),
            up: chrome(675_000, us(281_250)),
            source: CHROME,
        },
        // DevTools "Slow 3G": 2000 ms RTT.
        "chrome-slow-3g" => LinkPreset {
            name: "chrome-slow-3g",
            down: chrome(400_000, ms(1000)),
            up: chrome(400_000, ms(1000)),
            source: CHROME,
        },
        _ => return None,
    };
    Some(p)
}

/// No emulation: a perfect link both ways.
pub fn none() -> LinkPreset {
    LinkPreset {
        name: "none",
        down: LinkConfig::default(),
        up: LinkConfig::default(),
        source: "no emulation",
    }
}

/// One direction of a Loadero preset.
fn loadero(
    rate_bps: u64,
    delay: Duration,
    jitter: Duration,
    loss: f64,
    queue: Duration,
) -> LinkConfig {
    LinkConfig {
        delay,
        jitter,
        loss,
        rate_bps: Some(rate_bps),
        queue_limit: queue,
        preserve_order: true,
        ..LinkConfig::default()
    }
}

/// One direction of a Chrome DevTools preset: rate and half the round trip, nothing else.
fn chrome(rate_bps: u64, one_way: Duration) -> LinkConfig {
    LinkConfig {
        delay: one_way,
        rate_bps: Some(rate_bps),
        queue_limit: CHROME_QUEUE,
        preserve_order: true,
        ..LinkConfig::default()
    }
}

#[cfg(test)]
mod tests {
    use stallwatch_proto::plan::EMULATION_PRESET_ALIASES;

    use super::*;

    #[test]
    fn every_preset_exists_and_is_sane() {
        for &name in PRESET_NAMES {
            let p = preset(name).unwrap_or_else(|| panic!("preset {name} missing"));
            assert_eq!(p.name, name);
            assert!(!p.source.is_empty());
            for (dir, c) in [("down", &p.down), ("up", &p.up)] {
                let what = format!("{name} {dir}");
                let rate = c.rate_bps.unwrap_or_else(|| panic!("{what}: no rate"));
                assert!((100_000..=1_000_000_000).contains(&rate), "{what}: rate {rate}");
                assert!(
                    c.delay >= Duration::from_millis(20) && c.delay <= Duration::from_secs(1),
                    "{what}: delay {:?}",
                    c.delay
                );
                assert!(c.jitter <= c.delay, "{what}: jitter above delay");
                assert!((0.0..=0.01).contains(&c.loss), "{what}: loss {}", c.loss);
                assert!(
                    c.queue_limit >= Duration::from_millis(100)
                        && c.queue_limit <= Duration::from_secs(5),
                    "{what}: queue {:?}",
                    c.queue_limit
                );
                assert!(c.preserve_order && c.reorder == 0.0 && c.outages.is_empty(), "{what}");
                // The --emulate form of every preset parses back to the same config.
                let text = c.to_string();
                assert_eq!(text.parse::<LinkConfig>().as_ref(), Ok(c), "{what}: {text}");
            }
        }
    }

    #[test]
    fn preset_figures_match_design() {
        let p = preset("4g").unwrap();
        assert_eq!(p.down.rate_bps, Some(100_000_000));
        assert_eq!(p.up.rate_bps, Some(50_000_000));
        assert_eq!(p.down.delay, Duration::from_millis(45));
        assert_eq!(
            (p.down.jitter, p.up.jitter),
            (Duration::from_millis(5), Duration::from_millis(15))
        );
        assert_eq!(p.down.loss, 0.002);

        let p = preset("3g").unwrap();
        assert_eq!((p.down.rate_bps, p.up.rate_bps), (Some(1_200_000), Some(1_200_000)));

        let p = preset("edge").unwrap();
        assert_eq!((p.down.rate_bps, p.up.rate_bps), (Some(200_000), Some(260_000)));
        assert_eq!(preset("2g"), Some(p));

        // Chrome round trips are split evenly across the directions.
        for (name, rtt_us) in [
            ("chrome-fast-4g", 165_000),
            ("chrome-slow-4g", 562_500),
            ("chrome-slow-3g", 2_000_000),
        ] {
            let p = preset(name).unwrap();
            assert_eq!(p.down.delay + p.up.delay, Duration::from_micros(rtt_us), "{name}");
            assert_eq!(p.down.delay, p.up.delay, "{name}");
            assert_eq!((p.down.jitter, p.down.loss), (Duration::ZERO, 0.0), "{name}");
        }
        assert_eq!(preset("chrome-slow-4g").unwrap().up.rate_bps, Some(675_000));
    }

    #[test]
    fn none_and_unknown_names() {
        let n = none();
        assert_eq!((n.down.clone(), n.up.clone()), (LinkConfig::default(), LinkConfig::default()));
        assert_eq!(preset("none"), Some(n));
        assert_eq!(preset("4G").map(|p| p.name), Some("4g"));
        assert_eq!(preset("5g"), None);
    }

    /// The collector checks plans against the contract's lists (it does not depend on this
    /// crate): every name there must be a preset here, and the lists gate [`preset`], so no
    /// preset is accepted that the collector would refuse.
    #[test]
    fn the_contract_lists_exactly_the_presets_defined_here() {
        for &name in PRESET_NAMES.iter().chain(EMULATION_PRESET_ALIASES) {
            assert!(preset(name).is_some(), "listed preset {name} is not defined");
            assert!(preset(&name.to_ascii_uppercase()).is_some(), "{name} in capitals");
        }
        for name in ["5g", "lte", "edge ", "chrome-fast-3g", "", "4g,loss=1%"] {
            assert_eq!(preset(name), None, "{name:?} is not listed");
        }
    }
}
