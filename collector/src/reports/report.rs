//! The report: what it says, as one serializable value (the JSON format is this value), and
//! [`build`], which computes it from the history store, the configuration and the incidents.
//! Renderers only lay this value out.

use std::ops::Range;

use serde::Serialize;
use thiserror::Error;

use super::config::{KnownIssue, RegionSettings};
use super::data::{Acc, Counters, Hist, PeriodData, read_period};
use super::i18n::{Definition, Lang, definitions, hour_ranges, network};
use super::incidents::{Incident, IncidentError, IncidentSource, Level};
use super::recommend::{Inputs, Recommendation, recommend};
use super::zone::{Zone, ZoneError, rfc3339_utc};
use crate::config::{Config, Slo};
use crate::store::{HistoryStore, StoreError};

/// Identifies the JSON layout; bumped when a field changes meaning or goes away.
pub const REPORT_SCHEMA: &str = "stallwatch-report/1";

/// Points of the first-frame CDF, ms.
pub const CDF_POINTS_MS: [u64; 28] = [
    100, 200, 300, 400, 500, 600, 700, 800, 900, 1000, 1200, 1400, 1600, 1800, 2000, 2500, 3000,
    3500, 4000, 4500, 5000, 6000, 7000, 8000, 10_000, 13_000, 16_000, 20_000,
];

/// Upper bounds of the stall-duration bins, ms (every stall is over 500 ms); the last bin is
/// open.
pub const STALL_BINS_MS: [u64; 8] = [600, 1000, 2000, 3000, 5000, 10_000, 20_000, 60_000];

/// Worst hours listed in the heatmap.
pub const WORST_HOURS: usize = 3;

/// Why a report could not be made.
#[derive(Debug, Error)]
pub enum ReportError {
    /// The region is not one this collector owns.
    #[error("unknown region {region:?}: this collector owns {}", known.join(", "))]
    UnknownRegion {
        /// As asked.
        region: String,
        /// `labels.regions`.
        known: Vec<String>,
    },
    /// The period is empty or reversed.
    #[error("the period is empty: it must end after it starts")]
    EmptyPeriod,
    /// The region's time zone could not be loaded.
    #[error("reports.regions.{region}.time_zone: {source}")]
    Zone {
        /// The region.
        region: String,
        /// Why.
        #[source]
        source: ZoneError,
    },
    /// The history store failed.
    #[error("reading history: {0}")]
    Store(#[from] StoreError),
    /// The incidents could not be read.
    #[error("{0}")]
    Incidents(#[from] IncidentError),
}

/// What to report on.
#[derive(Debug, Clone)]
pub struct ReportRequest {
    /// Region label.
    pub region: String,
    /// Period, unix ms; hour rows starting inside count whole, so keep it hour-aligned.
    pub range: Range<u64>,
    /// Language.
    pub lang: Lang,
}

/// A period.
#[derive(Debug, Clone, Serialize)]
pub struct PeriodView {
    /// Start, unix ms.
    pub from_unix_ms: u64,
    /// End (exclusive), unix ms.
    pub to_unix_ms: u64,
    /// Start, RFC 3339 UTC.
    pub from_utc: String,
    /// End, RFC 3339 UTC.
    pub to_utc: String,
    /// Start, local (`2026-11-20 00:00`).
    pub from_local: String,
    /// End, local.
    pub to_local: String,
}

/// The SLO thresholds in report units.
#[derive(Debug, Clone, Serialize)]
pub struct SloView {
    /// First frame good, ms.
    pub first_frame_good_ms: f64,
    /// First frame warning, ms.
    pub first_frame_warn_ms: f64,
    /// First frame critical, ms.
    pub first_frame_critical_ms: f64,
    /// Stall ratio warning.
    pub stall_ratio_warn: f64,
    /// Stall ratio critical.
    pub stall_ratio_critical: f64,
    /// Loss warning.
    pub loss_warn: f64,
    /// Loss critical.
    pub loss_critical: f64,
    /// Jitter warning, ms.
    pub jitter_warn_ms: f64,
    /// Jitter critical, ms.
    pub jitter_critical_ms: f64,
    /// RTT warning, ms.
    pub rtt_warn_ms: f64,
}

impl From<&Slo> for SloView {
    fn from(s: &Slo) -> Self {
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
        SloView {
            first_frame_good_ms: ms(s.first_frame_good),
            first_frame_warn_ms: ms(s.first_frame_warn),
            first_frame_critical_ms: ms(s.first_frame_critical),
            stall_ratio_warn: s.stall_ratio_warn,
            stall_ratio_critical: s.stall_ratio_critical,
            loss_warn: s.loss_warn,
            loss_critical: s.loss_critical,
            jitter_warn_ms: ms(s.jitter_warn),
            jitter_critical_ms: ms(s.jitter_critical),
            rtt_warn_ms: ms(s.rtt_warn),
        }
    }
}

/// Every figure of one slice of the data. `None`: nothing to compute it from.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Figures {
    /// Play + stall time, minutes.
    pub viewing_minutes: f64,
    /// Viewer attempts.
    pub attempts: u64,
    /// Viewer attempts that failed.
    pub failed_attempts: u64,
    /// `1 - failed / attempts`.
    pub probe_success: Option<f64>,
    /// Attempts that reached a first frame.
    pub first_frames: u64,
    /// First-frame p50, ms.
    pub first_frame_p50_ms: Option<f64>,
    /// First-frame p95, ms.
    pub first_frame_p95_ms: Option<f64>,
    /// The `first_keyframe` phase p95, ms.
    pub first_keyframe_p95_ms: Option<f64>,
    /// Stalls.
    pub stalls: u64,
    /// Stall time / viewing time.
    pub stall_ratio: Option<f64>,
    /// Stalls per viewing hour.
    pub stalls_per_hour: Option<f64>,
    /// Sequence numbers decided.
    pub packets_expected: u64,
    /// Lost / expected.
    pub loss_ratio: Option<f64>,
    /// Share of lost packets inside RFC 3611 bursts.
    pub burst_loss_share: Option<f64>,
    /// Jitter p95, ms.
    pub jitter_p95_ms: Option<f64>,
    /// RTT p50, ms.
    pub rtt_p50_ms: Option<f64>,
    /// RTT p95, ms.
    pub rtt_p95_ms: Option<f64>,
}

fn q_ms(acc: &Acc, which: Hist, q: f64) -> Option<f64> {
    acc.h(which).quantile(q).map(|v| v as f64 / 1000.0)
}

impl Figures {
    /// The figures of `acc`.
    pub fn of(acc: &Acc) -> Figures {
        let c = &acc.counters;
        Figures {
            viewing_minutes: c.viewing_minutes(),
            attempts: c.view_attempts,
            failed_attempts: c.view_failures,
            probe_success: (c.view_attempts > 0).then(|| {
                1.0 - c.view_failures.min(c.view_attempts) as f64 / c.view_attempts as f64
            }),
            first_frames: acc.h(Hist::FirstFrame).len(),
            first_frame_p50_ms: q_ms(acc, Hist::FirstFrame, 0.5),
            first_frame_p95_ms: q_ms(acc, Hist::FirstFrame, 0.95),
            first_keyframe_p95_ms: q_ms(acc, Hist::FirstKeyframe, 0.95),
            stalls: c.stalls,
            stall_ratio: c.stall_ratio(),
            stalls_per_hour: c.stalls_per_hour(),
            packets_expected: c.expected,
            loss_ratio: c.loss_ratio(),
            burst_loss_share: (c.lost > 0).then(|| c.burst_lost as f64 / c.lost as f64),
            jitter_p95_ms: q_ms(acc, Hist::Jitter, 0.95),
            rtt_p50_ms: q_ms(acc, Hist::Rtt, 0.5),
            rtt_p95_ms: q_ms(acc, Hist::Rtt, 0.95),
        }
    }
}

/// Where a figure stands against its SLO.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Within.
    Ok,
    /// Beyond the warning threshold.
    Warn,
    /// Beyond the critical threshold.
    Critical,
    /// No threshold configured for it.
    NoSlo,
    /// Nothing measured.
    NoData,
}

/// Which way a figure moved against the previous period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trend {
    /// Better.
    Better,
    /// Worse.
    Worse,
    /// Within 5 % either way.
    Unchanged,
    /// No previous value to compare with.
    None,
}

/// A headline figure.
#[derive(Debug, Clone, Serialize)]
pub struct Kpi {
    /// Stable key, e.g. `first_frame_p95_ms`.
    pub key: &'static str,
    /// Name in the report's language.
    pub label: String,
    /// `ms`, `ratio` or `per_hour`.
    pub unit: &'static str,
    /// This period.
    pub value: Option<f64>,
    /// The previous period.
    pub previous: Option<f64>,
    /// Relative change, `(value - previous) / previous`.
    pub change: Option<f64>,
    /// Better or worse.
    pub trend: Trend,
    /// Warning threshold, in `unit`.
    pub slo_warn: Option<f64>,
    /// Critical threshold, in `unit`.
    pub slo_critical: Option<f64>,
    /// Against the SLO.
    pub status: Status,
}

/// One row of a breakdown.
#[derive(Debug, Clone, Serialize)]
pub struct Breakdown {
    /// Label value (network type, transport or target).
    pub name: String,
    /// As shown (`4G`, `Wi-Fi`).
    pub label: String,
    /// This period.
    pub figures: Figures,
    /// The previous period, when there was data.
    pub previous: Option<Figures>,
}

/// A point of a CDF.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct CdfPoint {
    /// Value, ms.
    pub ms: u64,
    /// Share of values at or below it.
    pub fraction: f64,
}

/// A histogram bin.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Bin {
    /// Lower bound (exclusive), ms.
    pub from_ms: u64,
    /// Upper bound (inclusive), ms; `None` for the open last bin.
    pub to_ms: Option<u64>,
    /// Values in it.
    pub count: u64,
}

/// One cell of the heatmap.
#[derive(Debug, Clone, Serialize)]
pub struct HeatCell {
    /// Local hour of day.
    pub hour: u8,
    /// Viewing minutes.
    pub viewing_minutes: f64,
    /// Stall ratio.
    pub stall_ratio: Option<f64>,
    /// Stalls per viewing hour.
    pub stalls_per_hour: Option<f64>,
    /// Loss ratio.
    pub loss_ratio: Option<f64>,
}

/// One row of the heatmap.
#[derive(Debug, Clone, Serialize)]
pub struct HeatRow {
    /// Network type, or `all`.
    pub network_type: String,
    /// As shown.
    pub label: String,
    /// 24 cells, hour 0 first.
    pub cells: Vec<HeatCell>,
}

/// Stall ratio by local hour of day.
#[derive(Debug, Clone, Serialize)]
pub struct Heatmap {
    /// The region's usual peak hours, local.
    pub peak_hours: Vec<u8>,
    /// The hours with the highest stall ratio over all networks, worst first (hours with at
    /// least the minimum viewing time).
    pub worst_hours: Vec<u8>,
    /// `all` first, then each network type.
    pub rows: Vec<HeatRow>,
}

/// One local day.
#[derive(Debug, Clone, Serialize)]
pub struct Day {
    /// `2026-11-20`.
    pub date: String,
    /// Its figures.
    pub figures: Figures,
}

/// An incident as listed.
#[derive(Debug, Clone, Serialize)]
pub struct IncidentView {
    /// Severity.
    pub level: Level,
    /// Alert name.
    pub alert: String,
    /// Start, unix ms.
    pub start_unix_ms: u64,
    /// Start, local.
    pub start_local: String,
    /// End, unix ms, if resolved.
    pub end_unix_ms: Option<u64>,
    /// Minutes from start to end, or to the end of the period if it was open then.
    pub duration_minutes: u64,
    /// Still open at the end of the period.
    pub open: bool,
    /// Affected cohorts, as shown (`sea / 4G / relay-sg-1`).
    pub cohorts: Vec<String>,
    /// How it was resolved.
    pub resolution: Option<String>,
}

/// Incidents in the period.
#[derive(Debug, Clone, Serialize)]
pub struct Incidents {
    /// Whether an incident source is connected at all.
    pub connected: bool,
    /// The incidents, by start.
    pub items: Vec<IncidentView>,
}

/// The region's knowledge, from the configuration.
#[derive(Debug, Clone, Serialize)]
pub struct Knowledge {
    /// Whether the region has a `[reports.regions.NAME]` section.
    pub configured: bool,
    /// Usual peak hours (`20:00-23:00`).
    pub peak_hours: String,
    /// Network types that matter, as shown.
    pub networks: Vec<String>,
    /// Carriers.
    pub carriers: Vec<String>,
    /// Known issues and what worked.
    pub known_issues: Vec<KnownIssue>,
    /// Notes.
    pub notes: Option<String>,
}

/// How much data the report stands on.
#[derive(Debug, Clone, Serialize)]
pub struct DataVolume {
    /// History rows read (both periods).
    pub rows: u64,
    /// Rows left out because they could not be decoded.
    pub rows_unreadable: u64,
    /// Probe agents of the region known to the collector.
    pub agents: usize,
    /// The viewing minutes a rule needs.
    pub min_viewing_minutes: u64,
}

/// A regional report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// [`REPORT_SCHEMA`].
    pub schema: &'static str,
    /// Region label.
    pub region: String,
    /// Region name as shown.
    pub region_name: String,
    /// Language of the texts.
    pub lang: Lang,
    /// When it was made, unix ms.
    pub generated_unix_ms: u64,
    /// When it was made, local.
    pub generated_local: String,
    /// The region's time zone.
    pub time_zone: String,
    /// UTC offset at the end of the period (`UTC+8`).
    pub utc_offset: String,
    /// The period.
    pub period: PeriodView,
    /// The previous period of the same length.
    pub previous_period: PeriodView,
    /// SLO thresholds used.
    pub slo: SloView,
    /// Data volume.
    pub data: DataVolume,
    /// Headline figures against the SLO and the previous period.
    pub kpis: Vec<Kpi>,
    /// Every figure of the whole region, this period.
    pub totals: Figures,
    /// The same, previous period.
    pub previous_totals: Figures,
    /// By network type.
    pub by_network_type: Vec<Breakdown>,
    /// By transport.
    pub by_transport: Vec<Breakdown>,
    /// Relays and targets, worst stall ratio first.
    pub targets: Vec<Breakdown>,
    /// First-frame CDF, this period.
    pub first_frame_cdf: Vec<CdfPoint>,
    /// First-frame CDF, previous period.
    pub previous_first_frame_cdf: Vec<CdfPoint>,
    /// Stall durations.
    pub stall_durations: Vec<Bin>,
    /// Stall ratio by local hour.
    pub heatmap: Heatmap,
    /// Local days.
    pub daily: Vec<Day>,
    /// Incidents.
    pub incidents: Incidents,
    /// Recommendations, most urgent first.
    pub recommendations: Vec<Recommendation>,
    /// Region knowledge.
    pub knowledge: Knowledge,
    /// Definitions of every figure.
    pub definitions: Vec<Definition>,
}

/// Computes the report for `request` at `now_unix_ms`.
pub fn build(
    store: &dyn HistoryStore,
    config: &Config,
    incidents: Option<&dyn IncidentSource>,
    request: &ReportRequest,
    now_unix_ms: u64,
) -> Result<Report, ReportError> {
    let region = &request.region;
    if !config.labels.allows_region(region) {
        return Err(ReportError::UnknownRegion {
            region: region.clone(),
            known: config.labels.regions.clone(),
        });
    }
    let range = request.range.clone();
    if range.end <= range.start {
        return Err(ReportError::EmptyPeriod);
    }
    let configured = config.reports.regions.get(region);
    let settings = configured.cloned().unwrap_or_else(RegionSettings::unconfigured);
    let zone =
        settings.zone().map_err(|source| ReportError::Zone { region: region.clone(), source })?;
    // Checked when the configuration was loaded.
    let peak = settings.peak_mask().unwrap_or([false; 24]);
    let lang = request.lang;
    let t = lang.texts();
    let len = range.end - range.start;
    let previous_range = range.start.saturating_sub(len)..range.start;

    let current = read_period(store, region, range.clone(), &zone)?;
    let previous = read_period(store, region, previous_range.clone(), &zone)?;
    let agents = store.agents()?.iter().filter(|a| &a.region == region).count();
    let min_minutes = config.reports.min_viewing_minutes;

    let totals = Figures::of(&current.total);
    let previous_totals = Figures::of(&previous.total);
    let kpis = kpis(&totals, &previous_totals, &config.slo, lang);
    let breakdown = |now: &std::collections::BTreeMap<String, Acc>,
                     before: &std::collections::BTreeMap<String, Acc>,
                     label: &dyn Fn(&str) -> String| {
        now.iter()
            .map(|(name, acc)| Breakdown {
                name: name.clone(),
                label: label(name),
                figures: Figures::of(acc),
                previous: before.get(name).map(Figures::of),
            })
            .collect::<Vec<_>>()
    };
    let by_network_type =
        breakdown(&current.by_network, &previous.by_network, &|n| network(lang, n));
    let by_transport = breakdown(&current.by_transport, &previous.by_transport, &|n| n.to_owned());
    let mut targets = breakdown(&current.by_target, &previous.by_target, &|n| n.to_owned());
    targets.sort_by(|a, b| {
        let r = |b: &Breakdown| b.figures.stall_ratio.unwrap_or(-1.0);
        r(b).total_cmp(&r(a)).then_with(|| a.name.cmp(&b.name))
    });

    let incidents = match incidents {
        None => Incidents { connected: false, items: Vec::new() },
        Some(source) => Incidents {
            connected: true,
            items: source
                .incidents(region, range.clone())?
                .iter()
                .map(|i| incident_view(i, &zone, range.end, lang))
                .collect(),
        },
    };
    let recommendations = recommend(&Inputs {
        current: &current,
        previous: &previous,
        peak,
        slo: &config.slo,
        min_minutes: min_minutes as f64,
        region: &settings,
        lang,
    });
    let knowledge = Knowledge {
        configured: configured.is_some(),
        peak_hours: hour_ranges(&peak),
        networks: settings.networks.iter().map(|n| network(lang, n)).collect(),
        carriers: settings.carriers.clone(),
        known_issues: settings.known_issues.clone(),
        notes: settings.notes.clone(),
    };
    let period_view = |r: &Range<u64>| PeriodView {
        from_unix_ms: r.start,
        to_unix_ms: r.end,
        from_utc: rfc3339_utc(r.start),
        to_utc: rfc3339_utc(r.end),
        from_local: zone.format(r.start),
        to_local: zone.format(r.end),
    };
    Ok(Report {
        schema: REPORT_SCHEMA,
        region: region.clone(),
        region_name: settings.name.clone().unwrap_or_else(|| region.clone()),
        lang,
        generated_unix_ms: now_unix_ms,
        generated_local: zone.format(now_unix_ms),
        time_zone: zone.name().to_owned(),
        utc_offset: zone.offset_label(range.end.saturating_sub(1)),
        period: period_view(&range),
        previous_period: period_view(&previous_range),
        slo: SloView::from(&config.slo),
        data: DataVolume {
            rows: current.rows + previous.rows,
            rows_unreadable: current.rows_unreadable + previous.rows_unreadable,
            agents,
            min_viewing_minutes: min_minutes,
        },
        kpis,
        first_frame_cdf: cdf(&current.total),
        previous_first_frame_cdf: cdf(&previous.total),
        stall_durations: stall_bins(&current.total),
        heatmap: heatmap(&current, &peak, min_minutes as f64, lang, t.all_networks),
        daily: current
            .by_day
            .iter()
            .map(|(date, acc)| Day {
                date: format!("{:04}-{:02}-{:02}", date.year(), u8::from(date.month()), date.day()),
                figures: Figures::of(acc),
            })
            .collect(),
        totals,
        previous_totals,
        by_network_type,
        by_transport,
        targets,
        incidents,
        recommendations,
        knowledge,
        definitions: definitions(lang),
    })
}

/// How one headline figure is judged.
struct KpiSpec {
    key: &'static str,
    label: &'static str,
    unit: &'static str,
    value: fn(&Figures) -> Option<f64>,
    warn: Option<f64>,
    critical: Option<f64>,
    /// Beyond a threshold means strictly above it (the stall ratio counts at it, as the SLO
    /// is written `>= 1 %`).
    strict: bool,
    higher_is_better: bool,
}

fn kpis(now: &Figures, before: &Figures, slo: &Slo, lang: Lang) -> Vec<Kpi> {
    let t = lang.texts();
    let ms = |d: std::time::Duration| Some(d.as_secs_f64() * 1000.0);
    let spec = |key, label, unit, value: fn(&Figures) -> Option<f64>, warn, critical| KpiSpec {
        key,
        label,
        unit,
        value,
        warn,
        critical,
        strict: key != "stall_ratio",
        higher_is_better: key == "probe_success",
    };
    let specs = [
        spec(
            "first_frame_p50_ms",
            t.first_frame_p50,
            "ms",
            |f| f.first_frame_p50_ms,
            ms(slo.first_frame_good),
            ms(slo.first_frame_warn),
        ),
        spec(
            "first_frame_p95_ms",
            t.first_frame_p95,
            "ms",
            |f| f.first_frame_p95_ms,
            ms(slo.first_frame_warn),
            ms(slo.first_frame_critical),
        ),
        spec(
            "stall_ratio",
            t.stall_ratio,
            "ratio",
            |f| f.stall_ratio,
            Some(slo.stall_ratio_warn),
            Some(slo.stall_ratio_critical),
        ),
        spec("stalls_per_hour", t.stalls_per_hour, "per_hour", |f| f.stalls_per_hour, None, None),
        spec(
            "loss_ratio",
            t.loss,
            "ratio",
            |f| f.loss_ratio,
            Some(slo.loss_warn),
            Some(slo.loss_critical),
        ),
        spec(
            "jitter_p95_ms",
            t.jitter_p95,
            "ms",
            |f| f.jitter_p95_ms,
            ms(slo.jitter_warn),
            ms(slo.jitter_critical),
        ),
        spec("rtt_p95_ms", t.rtt_p95, "ms", |f| f.rtt_p95_ms, ms(slo.rtt_warn), None),
        spec("probe_success", t.probe_success, "ratio", |f| f.probe_success, None, None),
    ];
    specs.iter().map(|k| kpi(k, (k.value)(now), (k.value)(before))).collect()
}

fn kpi(k: &KpiSpec, value: Option<f64>, previous: Option<f64>) -> Kpi {
    let beyond = |v: f64, limit: f64| if k.strict { v > limit } else { v >= limit };
    let status = match (value, k.warn) {
        (None, _) => Status::NoData,
        (Some(_), None) => Status::NoSlo,
        (Some(v), Some(w)) => {
            if k.critical.is_some_and(|c| beyond(v, c)) {
                Status::Critical
            } else if beyond(v, w) {
                Status::Warn
            } else {
                Status::Ok
            }
        }
    };
    let change = match (value, previous) {
        (Some(v), Some(p)) if p > 0.0 => Some((v - p) / p),
        _ => None,
    };
    let trend = match (value, previous) {
        (Some(v), Some(p)) => {
            let scale = p.abs().max(v.abs());
            if scale == 0.0 || (v - p).abs() <= 0.05 * scale {
                Trend::Unchanged
            } else if (v > p) == k.higher_is_better {
                Trend::Better
            } else {
                Trend::Worse
            }
        }
        _ => Trend::None,
    };
    Kpi {
        key: k.key,
        label: k.label.to_owned(),
        unit: k.unit,
        value,
        previous,
        change,
        trend,
        slo_warn: k.warn,
        slo_critical: k.critical,
        status,
    }
}

fn cdf(acc: &Acc) -> Vec<CdfPoint> {
    let h = acc.h(Hist::FirstFrame);
    if h.is_empty() {
        return Vec::new();
    }
    CDF_POINTS_MS
        .iter()
        .map(|&ms| CdfPoint { ms, fraction: h.fraction_at_most(ms * 1000).unwrap_or(0.0) })
        .collect()
}

fn stall_bins(acc: &Acc) -> Vec<Bin> {
    let mut bins: Vec<Bin> = std::iter::once(500)
        .chain(STALL_BINS_MS)
        .zip(STALL_BINS_MS.iter().map(|&b| Some(b)).chain([None]))
        .map(|(from_ms, to_ms)| Bin { from_ms, to_ms, count: 0 })
        .collect();
    for (highest_us, count) in acc.h(Hist::StallDuration).buckets() {
        let i = STALL_BINS_MS
            .iter()
            .position(|&b| highest_us <= b * 1000)
            .unwrap_or(STALL_BINS_MS.len());
        bins[i].count += count;
    }
    bins
}

fn heat_row(name: &str, label: String, hours: &[Counters; 24]) -> HeatRow {
    HeatRow {
        network_type: name.to_owned(),
        label,
        cells: hours
            .iter()
            .enumerate()
            .map(|(h, c)| HeatCell {
                hour: h as u8,
                viewing_minutes: c.viewing_minutes(),
                stall_ratio: c.stall_ratio(),
                stalls_per_hour: c.stalls_per_hour(),
                loss_ratio: c.loss_ratio(),
            })
            .collect(),
    }
}

fn heatmap(
    data: &PeriodData,
    peak: &[bool; 24],
    min_minutes: f64,
    lang: Lang,
    all: &str,
) -> Heatmap {
    let hours_all = data.hours_all();
    let mut ranked: Vec<(u8, f64)> = hours_all
        .iter()
        .enumerate()
        .filter(|(_, c)| c.viewing_minutes() >= min_minutes)
        .filter_map(|(h, c)| Some((h as u8, c.stall_ratio()?)))
        .collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut rows = vec![heat_row("all", all.to_owned(), &hours_all)];
    rows.extend(data.by_network_hour.iter().map(|(n, h)| heat_row(n, network(lang, n), h)));
    Heatmap {
        peak_hours: (0..24u8).filter(|&h| peak[usize::from(h)]).collect(),
        worst_hours: ranked.iter().take(WORST_HOURS).map(|(h, _)| *h).collect(),
        rows,
    }
}

fn incident_view(i: &Incident, zone: &Zone, period_end: u64, lang: Lang) -> IncidentView {
    let t = lang.texts();
    // An incident resolved after the period was still open at its end.
    let end = match i.end_unix_ms {
        Some(e) if e <= period_end => e,
        _ => period_end,
    }
    .max(i.start_unix_ms);
    let cohorts = if i.cohorts.is_empty() {
        vec![t.whole_fleet.to_owned()]
    } else {
        i.cohorts
            .iter()
            .map(|c| {
                ["region", "network_type", "transport", "repair", "target"]
                    .iter()
                    .filter_map(|k| {
                        let v = c.get(*k)?;
                        Some(match *k {
                            "network_type" => network(lang, v),
                            "repair" => format!("repair {v}"),
                            _ => v.clone(),
                        })
                    })
                    .collect::<Vec<_>>()
                    .join(" / ")
            })
            .collect()
    };
    IncidentView {
        level: i.level,
        alert: i.alert.clone(),
        start_unix_ms: i.start_unix_ms,
        start_local: zone.format(i.start_unix_ms),
        end_unix_ms: i.end_unix_ms,
        duration_minutes: (end - i.start_unix_ms) / 60_000,
        open: i.end_unix_ms.is_none_or(|e| e > period_end),
        cohorts,
        resolution: i.resolution.clone(),
    }
}
