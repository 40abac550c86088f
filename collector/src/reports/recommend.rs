//! Recommendations: rules over the period's figures, each firing with the numbers that
//! triggered it, in the report's language. A rule that lacks data says so instead of
//! guessing. Each rule's wording sits beside the rule (both languages), so the numbers and the
//! sentence that quotes them are read together.

use serde::{Deserialize, Serialize};

use super::config::RegionSettings;
use super::data::{Counters, Hist, PeriodData};
use super::i18n::{Lang, hour_ranges, ms, network, num, pct};
use crate::config::Slo;

/// Peak stall ratio at least this many times the off-peak one fires `peak_stalls`.
pub const PEAK_FACTOR: f64 = 3.0;
/// RTT p95 below this means the network is not what makes a slow start slow.
pub const LOW_RTT_MS: f64 = 150.0;
/// Fewest first frames `slow_start_low_rtt` judges a target on.
pub const MIN_FIRST_FRAMES: u64 = 30;
/// Share of lost packets in bursts from which loss counts as bursty.
pub const BURST_SHARE: f64 = 0.5;
/// Stall ratio of the period's last days at least this many times the previous period's
/// fires `degrading`.
pub const DEGRADE_FACTOR: f64 = 2.0;
/// Days at the end of the period `degrading` looks at.
pub const RECENT_DAYS: usize = 2;

/// Which rule produced a recommendation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    /// Stalls at peak hours several times the off-peak level on one network type.
    PeakStalls,
    /// Slow first frames on a target whose RTT is low.
    SlowStartLowRtt,
    /// Loss above the SLO, mostly in bursts, on one network type.
    LossBursts,
    /// The region got worse towards the end of the period.
    Degrading,
    /// Not enough data for a rule to conclude.
    InsufficientData,
    /// No rule found anything.
    AllClear,
}

/// How urgent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Beyond the critical SLO threshold.
    Critical,
    /// Beyond the warning threshold.
    Warn,
    /// For information.
    Info,
}

/// A number a rule used.
#[derive(Debug, Clone, Serialize)]
pub struct Evidence {
    /// Name, snake_case.
    pub name: &'static str,
    /// Value in `unit`.
    pub value: f64,
    /// `ratio`, `ms`, `minutes`, `per_hour`, `times`, `packets` or `count`.
    pub unit: &'static str,
}

/// One recommendation.
#[derive(Debug, Clone, Serialize)]
pub struct Recommendation {
    /// The rule.
    pub kind: RuleKind,
    /// Urgency.
    pub severity: Severity,
    /// What it is about: a network type, a target, or the region.
    pub scope: String,
    /// One line.
    pub title: String,
    /// The finding with its numbers, and the advice.
    pub text: String,
    /// The numbers that triggered it.
    pub evidence: Vec<Evidence>,
    /// What worked before in this region for this kind of problem (region knowledge).
    pub worked_before: Vec<String>,
}

/// What the rules look at.
pub struct Inputs<'a> {
    /// This period.
    pub current: &'a PeriodData,
    /// The previous period of the same length.
    pub previous: &'a PeriodData,
    /// Peak hours, local.
    pub peak: [bool; 24],
    /// SLO thresholds.
    pub slo: &'a Slo,
    /// Viewing minutes a slice needs.
    pub min_minutes: f64,
    /// Region knowledge.
    pub region: &'a RegionSettings,
    /// Language.
    pub lang: Lang,
}

fn ev(name: &'static str, value: f64, unit: &'static str) -> Evidence {
    Evidence { name, value, unit }
}

/// Runs every rule; recommendations by severity, then rule (notes on insufficient data before
/// "all clear").
pub fn recommend(inputs: &Inputs<'_>) -> Vec<Recommendation> {
    let mut out = Vec::new();
    peak_stalls(inputs, &mut out);
    slow_start_low_rtt(inputs, &mut out);
    loss_bursts(inputs, &mut out);
    degrading(inputs, &mut out);
    if out.iter().all(|r| r.kind == RuleKind::InsufficientData) {
        out.push(all_clear(inputs));
    }
    for r in &mut out {
        r.worked_before = worked_before(inputs.region, r);
    }
    out.sort_by_key(|r| (r.severity, r.kind));
    out
}

fn insufficient(
    lang: Lang,
    scope: &str,
    what_en: &str,
    what_zh: &str,
    have: f64,
    need: f64,
) -> Recommendation {
    let (title, text) = match lang {
        Lang::En => (
            format!("{scope}: not enough data to judge {what_en}"),
            format!(
                "Only {have:.0} viewing minutes where {need:.0} are needed, so no conclusion is \
                 drawn about {what_en}. Add probes on this network or read a longer period."
            ),
        ),
        Lang::Zh => (
            format!("{scope}：数据不足，无法判断{what_zh}"),
            format!(
                "仅有 {have:.0} 分钟观看数据（至少需要 {need:.0} 分钟），暂不对{what_zh}下结论。\
                 建议增加该网络的拨测节点，或查看更长的统计周期。"
            ),
        ),
    };
    Recommendation {
        kind: RuleKind::InsufficientData,
        severity: Severity::Info,
        scope: scope.to_owned(),
        title,
        text,
        evidence: vec![
            ev("viewing_minutes", have, "minutes"),
            ev("needed_minutes", need, "minutes"),
        ],
        worked_before: Vec::new(),
    }
}

fn sum_hours(hours: &[Counters; 24], mask: &[bool; 24], want: bool) -> Counters {
    let mut c = Counters::default();
    for (h, counters) in hours.iter().enumerate() {
        if mask[h] == want {
            c.add(counters);
        }
    }
    c
}

/// Peak-hour stall ratio several times the off-peak one, per network type.
fn peak_stalls(i: &Inputs<'_>, out: &mut Vec<Recommendation>) {
    let lang = i.lang;
    let peak_text = hour_ranges(&i.peak);
    for (net, hours) in &i.current.by_network_hour {
        let scope = network(lang, net);
        let (peak, off) = (sum_hours(hours, &i.peak, true), sum_hours(hours, &i.peak, false));
        let have = peak.viewing_minutes().min(off.viewing_minutes());
        if have < i.min_minutes {
            if peak.viewing_minutes() + off.viewing_minutes() > 0.0 {
                out.push(insufficient(
                    lang,
                    &scope,
                    "peak-hour stalls",
                    "高峰时段卡顿",
                    have,
                    i.min_minutes,
                ));
            }
            continue;
        }
        let (Some(p), Some(o)) = (peak.stall_ratio(), off.stall_ratio()) else { continue };
        let factor = if o > 0.0 { p / o } else { f64::INFINITY };
        if p < i.slo.stall_ratio_warn || factor < PEAK_FACTOR {
            continue;
        }
        let severity =
            if p >= i.slo.stall_ratio_critical { Severity::Critical } else { Severity::Warn };
        let (pph, oph) =
            (peak.stalls_per_hour().unwrap_or(0.0), off.stalls_per_hour().unwrap_or(0.0));
        let times = if factor.is_finite() { format!("{factor:.1}") } else { "∞".into() };
        let (title, text) = match lang {
            Lang::En => (
                format!("{scope}: stalls are {times}x higher at {peak_text}"),
                format!(
                    "On {scope}, the stall ratio is {} at peak ({peak_text} local) against {} off \
                     peak ({times}x; {} vs {} stalls per viewing hour, over {:.0} peak viewing \
                     minutes). Pre-enable the backup line before the peak, or lower the default \
                     bitrate for {scope} viewers during {peak_text}.",
                    pct(p),
                    pct(o),
                    num(pph),
                    num(oph),
                    peak.viewing_minutes(),
                ),
            ),
            Lang::Zh => (
                format!("{scope}：{peak_text} 卡顿率是其他时段的 {times} 倍"),
                format!(
                    "{scope} 网络在晚高峰（当地时间 {peak_text}）的卡顿率为 {}，非高峰时段为 {}，\
                     相差 {times} 倍（每小时卡顿 {} 次 vs {} 次，高峰观看数据 {:.0} 分钟）。\
                     建议在高峰到来前预先启用备用线路，或在 {peak_text} 期间下调 {scope} 用户的默认码率。",
                    pct(p),
                    pct(o),
                    num(pph),
                    num(oph),
                    peak.viewing_minutes(),
                ),
            ),
        };
        out.push(Recommendation {
            kind: RuleKind::PeakStalls,
            severity,
            scope: net.clone(),
            title,
            text,
            evidence: vec![
                ev("peak_stall_ratio", p, "ratio"),
                ev("off_peak_stall_ratio", o, "ratio"),
                ev("peak_to_off_peak", factor, "times"),
                ev("peak_stalls_per_hour", pph, "per_hour"),
                ev("off_peak_stalls_per_hour", oph, "per_hour"),
                ev("peak_viewing_minutes", peak.viewing_minutes(), "minutes"),
            ],
            worked_before: Vec::new(),
        });
    }
}

/// Slow first frames on a target whose path is fast: the wait is for a keyframe.
fn slow_start_low_rtt(i: &Inputs<'_>, out: &mut Vec<Recommendation>) {
    let lang = i.lang;
    let warn_ms = i.slo.first_frame_warn.as_secs_f64() * 1000.0;
    let critical_ms = i.slo.first_frame_critical.as_secs_f64() * 1000.0;
    for (target, acc) in &i.current.by_target {
        let ff = acc.h(Hist::FirstFrame);
        let Some(p95) = ff.quantile(0.95).map(|v| v as f64 / 1000.0) else { continue };
        if p95 <= warn_ms {
            continue;
        }
        if ff.len() < MIN_FIRST_FRAMES {
            let (title, text) = match lang {
                Lang::En => (
                    format!("{target}: not enough first frames to judge slow starts"),
                    format!(
                        "First-frame p95 is {} but only {} attempts reached a first frame (at \
                         least {MIN_FIRST_FRAMES} are needed), so no cause is suggested.",
                        ms(p95),
                        ff.len()
                    ),
                ),
                Lang::Zh => (
                    format!("{target}：首帧样本不足，暂不判断起播慢的原因"),
                    format!(
                        "首帧 p95 为 {}，但仅有 {} 次拨测出首帧（至少需要 {MIN_FIRST_FRAMES} 次），暂不推断原因。",
                        ms(p95),
                        ff.len()
                    ),
                ),
            };
            out.push(Recommendation {
                kind: RuleKind::InsufficientData,
                severity: Severity::Info,
                scope: target.clone(),
                title,
                text,
                evidence: vec![
                    ev("first_frames", ff.len() as f64, "count"),
                    ev("needed_first_frames", MIN_FIRST_FRAMES as f64, "count"),
                ],
                worked_before: Vec::new(),
            });
            continue;
        }
        let Some(rtt) = acc.h(Hist::Rtt).quantile(0.95).map(|v| v as f64 / 1000.0) else {
            continue;
        };
        if rtt >= LOW_RTT_MS {
            continue;
        }
        let keyframe = acc.h(Hist::FirstKeyframe).quantile(0.95).map(|v| v as f64 / 1000.0);
        let severity = if p95 > critical_ms { Severity::Critical } else { Severity::Warn };
        let (title, text) = match lang {
            Lang::En => (
                format!("{target}: slow first frames on a fast path"),
                format!(
                    "First-frame p95 through {target} is {} while its RTT p95 is only {}{}. The \
                     network is not what slows the start: check that the relay's GOP cache is on \
                     and that the stream's keyframe interval is short (2 s or less), so a new \
                     viewer gets a keyframe at once.",
                    ms(p95),
                    ms(rtt),
                    keyframe.map_or(String::new(), |k| format!(
                        "; waiting for the first keyframe alone takes up to {} (p95)",
                        ms(k)
                    )),
                ),
            ),
            Lang::Zh => (
                format!("{target}：链路很快，首帧却偏慢"),
                format!(
                    "经 {target} 的首帧时间 p95 为 {}，而 RTT p95 仅为 {}{}。起播慢并非网络所致，\
                     建议确认该中继已开启 GOP 缓存，并将推流关键帧间隔控制在 2 秒以内，让新观众能立即拿到关键帧。",
                    ms(p95),
                    ms(rtt),
                    keyframe.map_or(String::new(), |k| format!(
                        "，其中仅等待首个关键帧就达 {}（p95）",
                        ms(k)
                    )),
                ),
            ),
        };
        let mut evidence = vec![
            ev("first_frame_p95_ms", p95, "ms"),
            ev("rtt_p95_ms", rtt, "ms"),
            ev("first_frames", ff.len() as f64, "count"),
        ];
        if let Some(k) = keyframe {
            evidence.push(ev("first_keyframe_phase_p95_ms", k, "ms"));
        }
        out.push(Recommendation {
            kind: RuleKind::SlowStartLowRtt,
            severity,
            scope: target.clone(),
            title,
            text,
            evidence,
            worked_before: Vec::new(),
        });
    }
}

/// Loss beyond the SLO that comes in bursts, per network type.
fn loss_bursts(i: &Inputs<'_>, out: &mut Vec<Recommendation>) {
    let lang = i.lang;
    for (net, acc) in &i.current.by_network {
        let c = &acc.counters;
        let Some(loss) = c.loss_ratio() else { continue };
        if loss <= i.slo.loss_warn || c.lost == 0 {
            continue;
        }
        let scope = network(lang, net);
        if c.viewing_minutes() < i.min_minutes {
            out.push(insufficient(
                lang,
                &scope,
                "loss bursts",
                "突发丢包",
                c.viewing_minutes(),
                i.min_minutes,
            ));
            continue;
        }
        let share = c.burst_lost as f64 / c.lost as f64;
        if share < BURST_SHARE {
            continue;
        }
        let mean_burst = if c.bursts > 0 { c.burst_packets as f64 / c.bursts as f64 } else { 0.0 };
        let severity = if loss > i.slo.loss_critical { Severity::Critical } else { Severity::Warn };
        let (title, text) = match lang {
            Lang::En => (
                format!("{scope}: loss comes in bursts"),
                format!(
                    "{scope} viewers lose {} of packets, {} of them in bursts (mean burst {} \
                     packets, {} bursts). Retransmission alone recovers bursts late: enable FEC \
                     for {scope}, or offer these viewers a lower bitrate rung.",
                    pct(loss),
                    pct(share),
                    num(mean_burst),
                    c.bursts,
                ),
            ),
            Lang::Zh => (
                format!("{scope}：丢包以突发为主"),
                format!(
                    "{scope} 用户丢包率为 {}，其中 {} 为突发丢包（平均每次突发 {} 个包，共 {} 次）。\
                     仅靠重传难以及时恢复突发丢包，建议为 {scope} 用户开启 FEC，或为其提供更低一档的码率。",
                    pct(loss),
                    pct(share),
                    num(mean_burst),
                    c.bursts,
                ),
            ),
        };
        out.push(Recommendation {
            kind: RuleKind::LossBursts,
            severity,
            scope: net.clone(),
            title,
            text,
            evidence: vec![
                ev("loss_ratio", loss, "ratio"),
                ev("burst_loss_share", share, "ratio"),
                ev("mean_burst_packets", mean_burst, "packets"),
                ev("bursts", c.bursts as f64, "count"),
            ],
            worked_before: Vec::new(),
        });
    }
}

/// The last days of the period well above the previous period.
fn degrading(i: &Inputs<'_>, out: &mut Vec<Recommendation>) {
    let lang = i.lang;
    let days: Vec<_> = i.current.by_day.values().collect();
    if days.len() < 2 * RECENT_DAYS {
        return;
    }
    let mut recent = Counters::default();
    for d in &days[days.len() - RECENT_DAYS..] {
        recent.add(&d.counters);
    }
    let before = &i.previous.total.counters;
    if recent.viewing_minutes() < i.min_minutes || before.viewing_minutes() < i.min_minutes {
        return;
    }
    let (Some(now), Some(then)) = (recent.stall_ratio(), before.stall_ratio()) else { return };
    if now < i.slo.stall_ratio_warn || now < DEGRADE_FACTOR * then {
        return;
    }
    // The target that is worst this period, with enough data to count.
    let worst = i
        .current
        .by_target
        .iter()
        .filter(|(_, a)| a.counters.viewing_minutes() >= i.min_minutes)
        .filter_map(|(t, a)| Some((t, a.counters.stall_ratio()?, a.counters.loss_ratio())))
        .max_by(|a, b| a.1.total_cmp(&b.1));
    let severity =
        if now >= i.slo.stall_ratio_critical { Severity::Critical } else { Severity::Warn };
    let times = if then > 0.0 { format!("{:.1}", now / then) } else { "∞".into() };
    let worst_en = worst.map_or(String::new(), |(t, r, l)| {
        format!(
            " The worst target this period is {t} (stall ratio {}{}): check it and its upstream, \
             and move viewers to a healthier relay until it is fixed.",
            pct(r),
            l.map_or(String::new(), |l| format!(", loss {}", pct(l)))
        )
    });
    let worst_zh = worst.map_or(String::new(), |(t, r, l)| {
        format!(
            "本周期表现最差的是 {t}（卡顿率 {}{}），建议排查该节点及其上游链路，修复前先将观众调度到状态更好的中继。",
            pct(r),
            l.map_or(String::new(), |l| format!("，丢包率 {}", pct(l)))
        )
    });
    let (title, text) = match lang {
        Lang::En => (
            format!("The region is getting worse: stall ratio {times}x the previous period"),
            format!(
                "Over the last {RECENT_DAYS} days the stall ratio was {} against {} in the \
                 previous period ({times}x).{worst_en}",
                pct(now),
                pct(then)
            ),
        ),
        Lang::Zh => (
            format!("区域整体质量在下滑：卡顿率是上一周期的 {times} 倍"),
            format!(
                "最近 {RECENT_DAYS} 天卡顿率为 {}，上一周期为 {}（{times} 倍）。{worst_zh}",
                pct(now),
                pct(then)
            ),
        ),
    };
    let mut evidence = vec![
        ev("recent_stall_ratio", now, "ratio"),
        ev("previous_period_stall_ratio", then, "ratio"),
        ev("recent_viewing_minutes", recent.viewing_minutes(), "minutes"),
    ];
    if let Some((_, r, _)) = worst {
        evidence.push(ev("worst_target_stall_ratio", r, "ratio"));
    }
    out.push(Recommendation {
        kind: RuleKind::Degrading,
        severity,
        scope: worst.map_or_else(String::new, |(t, _, _)| t.clone()),
        title,
        text,
        evidence,
        worked_before: Vec::new(),
    });
}

fn all_clear(i: &Inputs<'_>) -> Recommendation {
    let c = &i.current.total.counters;
    let (title, text) = match i.lang {
        Lang::En => (
            "No rule found a problem".to_owned(),
            format!(
                "Over {:.0} viewing minutes, no network type stalled much more at peak, no relay \
                 started slowly on a fast path, loss was not bursty and the region did not get \
                 worse. Compare the headline figures with the SLO above.",
                c.viewing_minutes()
            ),
        ),
        Lang::Zh => (
            "各项规则均未发现问题".to_owned(),
            format!(
                "在 {:.0} 分钟的观看数据中，未发现高峰时段卡顿显著升高、链路良好但起播慢、突发丢包或区域质量下滑。\
                 请结合上方核心指标与 SLO 的对比查看。",
                c.viewing_minutes()
            ),
        ),
    };
    Recommendation {
        kind: RuleKind::AllClear,
        severity: Severity::Info,
        scope: String::new(),
        title,
        text,
        evidence: vec![ev("viewing_minutes", c.viewing_minutes(), "minutes")],
        worked_before: Vec::new(),
    }
}

/// The region's known issues of the same rule (and network type, when they name some).
fn worked_before(region: &RegionSettings, r: &Recommendation) -> Vec<String> {
    region
        .known_issues
        .iter()
        .filter(|k| k.rule == Some(r.kind))
        .filter(|k| k.network_types.is_empty() || k.network_types.contains(&r.scope))
        .filter_map(|k| k.worked.as_ref().map(|w| format!("{} — {w}", k.issue)))
        .collect()
}

#[cfg(test)]
mod tests {
    use time::{Date, Month};

    use super::*;
    use crate::reports::data::Acc;

    /// Counters of `minutes` of viewing with `ratio` of it stalled.
    fn viewing(minutes: f64, ratio: f64) -> Counters {
        let total = (minutes * 60e9) as u64;
        let stall_ns = (total as f64 * ratio) as u64;
        Counters {
            play_ns: total - stall_ns,
            stall_ns,
            stalls: (stall_ns / 1_000_000_000).max(1),
            ..Counters::default()
        }
    }

    fn run(current: &PeriodData, previous: &PeriodData) -> Vec<Recommendation> {
        let slo = Slo::default();
        let region = RegionSettings::unconfigured();
        let peak = region.peak_mask().unwrap();
        recommend(&Inputs {
            current,
            previous,
            peak,
            slo: &slo,
            min_minutes: 60.0,
            region: &region,
            lang: Lang::En,
        })
    }

    fn kinds(recs: &[Recommendation]) -> Vec<(RuleKind, &str)> {
        recs.iter().map(|r| (r.kind, r.scope.as_str())).collect()
    }

    #[test]
    fn peak_stalls_needs_enough_data_on_both_sides() {
        let mut data = PeriodData::default();
        let mut hours = [Counters::default(); 24];
        for (h, c) in hours.iter_mut().enumerate() {
            *c = if (20..23).contains(&h) { viewing(30.0, 0.04) } else { viewing(10.0, 0.005) };
        }
        data.by_network_hour.insert("4g".into(), hours);
        let recs = run(&data, &PeriodData::default());
        assert_eq!(kinds(&recs), [(RuleKind::PeakStalls, "4g")]);
        assert_eq!(recs[0].severity, Severity::Critical);
        assert!(
            recs[0].text.contains("4.00%") && recs[0].text.contains("0.50%"),
            "{}",
            recs[0].text
        );
        // 90 peak minutes but only 40 off peak: not judged, and said so.
        for (h, c) in hours.iter_mut().enumerate() {
            if !(20..23).contains(&h) {
                *c = viewing(40.0 / 21.0, 0.005);
            }
        }
        data.by_network_hour.insert("4g".into(), hours);
        let recs = run(&data, &PeriodData::default());
        assert_eq!(recs[0].kind, RuleKind::InsufficientData);
        assert!(
            recs[0].text.contains("Only 40 viewing minutes where 60 are needed"),
            "{}",
            recs[0].text
        );
        assert_eq!(recs.last().unwrap().kind, RuleKind::AllClear);
    }

    #[test]
    fn slow_start_fires_only_on_a_fast_path() {
        let mut data = PeriodData::default();
        let mut acc = Acc::default();
        acc.hist[Hist::FirstFrame as usize].record(3_100_000, 40);
        acc.hist[Hist::FirstKeyframe as usize].record(2_900_000, 40);
        acc.hist[Hist::Rtt as usize].record(30_000, 400);
        data.by_target.insert("relay-fra-2".into(), acc.clone());
        let recs = run(&data, &PeriodData::default());
        assert_eq!(kinds(&recs), [(RuleKind::SlowStartLowRtt, "relay-fra-2")]);
        assert!(
            recs[0].text.contains("3.10 s") && recs[0].text.contains("30 ms"),
            "{}",
            recs[0].text
        );
        acc.hist[Hist::Rtt as usize] = Default::default();
        acc.hist[Hist::Rtt as usize].record(400_000, 400);
        data.by_target.insert("relay-fra-2".into(), acc);
        assert_eq!(kinds(&run(&data, &PeriodData::default())), [(RuleKind::AllClear, "")]);
    }

    #[test]
    fn loss_bursts_needs_bursty_loss_above_the_slo() {
        let mut data = PeriodData::default();
        let mut acc = Acc { counters: viewing(600.0, 0.0), ..Acc::default() };
        let c = &mut acc.counters;
        (c.expected, c.lost, c.burst_lost, c.bursts, c.burst_packets) =
            (100_000, 2_200, 1_800, 300, 2_100);
        data.by_network.insert("3g".into(), acc.clone());
        let recs = run(&data, &PeriodData::default());
        assert_eq!(kinds(&recs), [(RuleKind::LossBursts, "3g")]);
        assert!(
            recs[0].text.contains("2.20%") && recs[0].text.contains("81.8%"),
            "{}",
            recs[0].text
        );
        acc.counters.burst_lost = 300;
        data.by_network.insert("3g".into(), acc);
        assert_eq!(kinds(&run(&data, &PeriodData::default())), [(RuleKind::AllClear, "")]);
    }

    #[test]
    fn degrading_compares_the_last_days_with_the_previous_period() {
        let mut data = PeriodData::default();
        for (day, ratio) in [(16, 0.004), (17, 0.005), (18, 0.02), (19, 0.035)] {
            let date = Date::from_calendar_date(2026, Month::November, day).unwrap();
            data.by_day.insert(date, Acc { counters: viewing(500.0, ratio), ..Acc::default() });
        }
        data.by_target
            .insert("relay-sp-2".into(), Acc { counters: viewing(500.0, 0.04), ..Acc::default() });
        data.by_target
            .insert("relay-sp-1".into(), Acc { counters: viewing(500.0, 0.004), ..Acc::default() });
        let mut previous = PeriodData::default();
        previous.total.counters = viewing(2000.0, 0.005);
        let recs = run(&data, &previous);
        assert_eq!(kinds(&recs), [(RuleKind::Degrading, "relay-sp-2")]);
        assert!(
            recs[0].text.contains("2.75%") && recs[0].text.contains("0.50%"),
            "{}",
            recs[0].text
        );
        previous.total.counters = viewing(2000.0, 0.02);
        assert_eq!(kinds(&run(&data, &previous)), [(RuleKind::AllClear, "")]);
    }
}
