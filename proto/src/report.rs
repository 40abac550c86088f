//! The interval report an agent pushes to the collector: JSON on the wire, histograms as
//! base64 V2+DEFLATE.
//!
//! [`decode_report`] checks, in order: byte size, JSON syntax and fields, schema version,
//! window, counts, names and lengths, then each series' labels ([`SeriesLabels::from_wire`]),
//! then each histogram under the HDR limits and against its declared count. Each failure has
//! a [`ReportError::reason`] label for metrics.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::hdr::{self, HdrError, HdrLimits, SparseHistogram};
pub use crate::labels::{LabelError, LabelProblem, SeriesLabels};

/// Schema version this build writes and accepts.
pub const REPORT_SCHEMA_VERSION: u32 = 1;

/// One agent's measurements over one interval.
///
/// Read from JSON through its wire form (labels as sent), so any reader of a report applies
/// [`SeriesLabels::from_wire`]'s rules; [`decode_report`] also checks the limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawReport")]
pub struct Report {
    /// [`REPORT_SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Agent name; the collector checks it against the client certificate.
    pub agent: String,
    /// Agent build version.
    pub agent_version: String,
    /// Report sequence number, per agent, strictly increasing; the collector deduplicates on
    /// `(agent, seq)` so spooled reports can be resent safely.
    pub seq: u64,
    /// Window start, unix ms, agent wall clock.
    pub window_start_ms: u64,
    /// Window end, unix ms, agent wall clock; not before `window_start_ms`.
    pub window_end_ms: u64,
    /// Revision of the plan the agent ran during the window.
    pub plan_revision: u64,
    /// Reports waiting in the agent's disk spool when this one was sent.
    pub spool_depth: u64,
    /// One entry per label set.
    pub series: Vec<Series>,
}

/// Counters and histograms for one label set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Series {
    /// The series' labels; a JSON object of strings on the wire.
    pub labels: SeriesLabels,
    /// Interval counters by name (increments during the window, not running totals).
    pub counters: BTreeMap<String, u64>,
    /// Interval histograms by name.
    pub histograms: BTreeMap<String, HistogramData>,
}

impl Series {
    /// A series with these labels and no counters or histograms yet.
    pub fn new(labels: SeriesLabels) -> Self {
        Series { labels, counters: BTreeMap::new(), histograms: BTreeMap::new() }
    }
}

/// A [`Report`] as it is on the wire, its labels not yet read: what the limits are checked
/// on, so a refusal never has to echo an unbounded value.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReport {
    schema_version: u32,
    agent: String,
    agent_version: String,
    seq: u64,
    window_start_ms: u64,
    window_end_ms: u64,
    #[serde(default)]
    plan_revision: u64,
    #[serde(default)]
    spool_depth: u64,
    series: Vec<RawSeries>,
}

/// A [`Series`] as it is on the wire.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSeries {
    labels: BTreeMap<String, String>,
    #[serde(default)]
    counters: BTreeMap<String, u64>,
    #[serde(default)]
    histograms: BTreeMap<String, HistogramData>,
}

impl TryFrom<RawReport> for Report {
    type Error = ReportError;

    /// Reads every series' labels; the first bad one is refused naming its series.
    fn try_from(raw: RawReport) -> Result<Self, ReportError> {
        let series =
            raw.series
                .into_iter()
                .enumerate()
                .map(|(i, s)| {
                    let labels = SeriesLabels::from_wire(s.labels).map_err(|e| {
                        ReportError::Label { series: i, label: e.label, problem: e.problem }
                    })?;
                    Ok(Series { labels, counters: s.counters, histograms: s.histograms })
                })
                .collect::<Result<_, ReportError>>()?;
        Ok(Report {
            schema_version: raw.schema_version,
            agent: raw.agent,
            agent_version: raw.agent_version,
            seq: raw.seq,
            window_start_ms: raw.window_start_ms,
            window_end_ms: raw.window_end_ms,
            plan_revision: raw.plan_revision,
            spool_depth: raw.spool_depth,
            series,
        })
    }
}

/// One interval histogram with the exact sum and count HDR does not keep.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistogramData {
    /// V2+DEFLATE encoding at any level (agents send stored blocks,
    /// [`HistogramData::from_histogram`]); base64 (standard alphabet, padded) in JSON.
    #[serde(with = "base64_bytes")]
    pub hdr: Vec<u8>,
    /// Exact sum of the recorded values, µs.
    pub sum: u64,
    /// Number of recorded values; must equal the histogram's total count.
    pub count: u64,
}

impl HistogramData {
    /// Encodes `h` as agents send it (stored blocks, [`hdr::REPORT_DEFLATE_LEVEL`]), taking
    /// the count from it; `sum` is the exact sum the caller kept.
    ///
    /// # Panics
    /// As [`hdr::encode`]: only if one bucket holds more than `i64::MAX` counts.
    pub fn from_histogram(h: &Histogram<u64>, sum: u64) -> Self {
        let mut hdr = Vec::new();
        if let Err(e) = hdr::Encoder::with_level(hdr::REPORT_DEFLATE_LEVEL).encode_into(h, &mut hdr)
        {
            panic!("{e}");
        }
        HistogramData { hdr, sum, count: h.len() }
    }
}

/// Default cap on an encoded report.
pub const DEFAULT_MAX_REPORT_BYTES: usize = 1024 * 1024;
/// Smallest cap on an encoded report a collector may be configured with
/// (`ingest.max_report_bytes`): a report with a few series must fit (one series of 8
/// histograms of a 2 Mbit/s stream is about 17 KB as agents send it, stored blocks in base64).
pub const MIN_REPORT_BYTES_CAP: usize = 64 << 10;
/// Largest cap on an encoded report a collector may be configured with: more would let one
/// agent make the collector buffer and decode very large bodies.
pub const MAX_REPORT_BYTES_CAP: usize = 16 << 20;
/// Default cap on decoded histogram memory per report. Decoded histograms are sparse
/// ([`SparseHistogram`]): 8 bytes per non-zero bucket, so this is about a million buckets
/// (a 10 s jitter histogram has a couple of thousand; a full one, 28,672).
pub const DEFAULT_MAX_HISTOGRAM_MEMORY_BYTES: usize = 8 * 1024 * 1024;
/// Default cap on the bytes a report's histograms inflate to, together. A real histogram
/// inflates to a few KiB (runs of empty buckets are one varint); one padded with explicit
/// zeros inflates to [`HdrLimits::max_decoded_bytes`] (256 KiB) from some 300 bytes, so
/// without a total a 1 MiB report could cost over a gigabyte of inflation.
pub const DEFAULT_MAX_INFLATED_BYTES: usize = 8 * 1024 * 1024;

/// Limits [`decode_report`] enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportLimits {
    /// Largest accepted encoded report.
    pub max_report_bytes: usize,
    /// Most series in one report.
    pub max_series: usize,
    /// Most labels on one series.
    pub max_labels_per_series: usize,
    /// Most counters on one series.
    pub max_counters_per_series: usize,
    /// Most histograms on one series.
    pub max_histograms_per_series: usize,
    /// Longest label key, counter or histogram name, in bytes.
    pub max_name_len: usize,
    /// Longest label value (and agent name and version), in bytes.
    pub max_label_value_len: usize,
    /// Most memory the decoded histograms may take together
    /// ([`SparseHistogram::heap_bytes`]: 8 bytes per non-zero bucket, 16 in the histogram
    /// whose counts exceed 32 bits). A histogram is small
    /// on the wire but may inflate to many buckets (up to one per byte of its inflated form,
    /// at most [`HdrLimits::max_decoded_bytes`]), so without this a 1 MiB report could make
    /// the decoder allocate gigabytes.
    pub max_histogram_memory_bytes: usize,
    /// Most bytes the report's histograms may inflate to, together (each one also within
    /// [`HdrLimits::max_decoded_bytes`]). Decoding stops as soon as the total would pass it.
    pub max_inflated_bytes: usize,
    /// Limits for each histogram.
    pub hdr: HdrLimits,
}

impl Default for ReportLimits {
    fn default() -> Self {
        ReportLimits {
            max_report_bytes: DEFAULT_MAX_REPORT_BYTES,
            max_series: 256,
            max_labels_per_series: 8,
            max_counters_per_series: 64,
            max_histograms_per_series: 32,
            max_name_len: 64,
            max_label_value_len: 128,
            max_histogram_memory_bytes: DEFAULT_MAX_HISTOGRAM_MEMORY_BYTES,
            max_inflated_bytes: DEFAULT_MAX_INFLATED_BYTES,
            hdr: HdrLimits::default(),
        }
    }
}

/// A checked report with its histograms decoded.
#[derive(Debug, Clone)]
pub struct DecodedReport {
    /// The report as sent.
    pub report: Report,
    /// Decoded histograms, one map per series, in the order of `report.series`: their
    /// non-zero buckets ([`hdr::decode_sparse`]); [`SparseHistogram::to_histogram`] gives the
    /// full `hdrhistogram` form where one is needed.
    pub histograms: Vec<BTreeMap<String, SparseHistogram>>,
}

/// Why a report was rejected.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ReportError {
    /// The encoded report is over [`ReportLimits::max_report_bytes`].
    #[error("report is {len} bytes, over the {max}-byte cap")]
    TooLarge {
        /// Bytes received.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// Not valid JSON, or not the report schema (unknown or missing fields, bad base64).
    #[error("malformed report json: {detail}")]
    MalformedJson {
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column of the problem.
        column: usize,
        /// serde_json's message, with the line and column.
        detail: String,
    },
    /// A schema version this build does not accept.
    #[error(
        "report schema version {found} is not supported (this build speaks {REPORT_SCHEMA_VERSION})"
    )]
    SchemaVersion {
        /// Version found.
        found: u32,
    },
    /// The window ends before it starts.
    #[error("report window ends at {end_ms} ms, before it starts at {start_ms} ms")]
    Window {
        /// `window_start_ms`.
        start_ms: u64,
        /// `window_end_ms`.
        end_ms: u64,
    },
    /// Too many series, or too many labels, counters or histograms on one series.
    #[error("{what}: {count}, the limit is {max}")]
    TooMany {
        /// What was counted, e.g. `"series"` or `"series 3 labels"`.
        what: String,
        /// How many there were.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A name or value is longer than its limit.
    #[error("{what} is {len} bytes, the limit is {max}")]
    TooLong {
        /// Which field, e.g. `"series 0 label \"probe\" value"`.
        what: String,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A name breaks the rules: ASCII lowercase letters, digits and `_`, starting with a
    /// letter (the agent name: not empty).
    #[error("{what} {name:?} is invalid: {problem}")]
    BadName {
        /// Which field, e.g. `"series 2 counter name"`.
        what: String,
        /// The name.
        name: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// A series' labels are not a [`SeriesLabels`]: an unknown key, a missing label, or a
    /// value outside its label's set.
    #[error("series {series} label {label:?}: {problem}")]
    Label {
        /// Index of the series.
        series: usize,
        /// The label's key.
        label: String,
        /// What is wrong with it.
        problem: LabelProblem,
    },
    /// A histogram failed to decode within the HDR limits.
    #[error("series {series} histogram {name:?}: {source}")]
    Histogram {
        /// Index of the series.
        series: usize,
        /// Histogram name.
        name: String,
        /// The decode error.
        #[source]
        source: HdrError,
    },
    /// The decoded histograms together exceed [`ReportLimits::max_histogram_memory_bytes`].
    #[error(
        "decoded histograms exceed the {max}-byte memory cap at series {series} histogram {name:?}"
    )]
    HistogramMemory {
        /// Index of the series where the cap was crossed.
        series: usize,
        /// Histogram where the cap was crossed.
        name: String,
        /// The cap.
        max: usize,
    },
    /// The histograms together inflate past [`ReportLimits::max_inflated_bytes`].
    #[error(
        "histograms inflate past the report's {max}-byte cap at series {series} histogram {name:?}"
    )]
    InflatedTooLarge {
        /// Index of the series where the cap was crossed.
        series: usize,
        /// Histogram where the cap was crossed.
        name: String,
        /// The cap.
        max: usize,
    },
    /// A histogram's `count` field differs from its decoded total count.
    #[error(
        "series {series} histogram {name:?}: count field says {declared} but the histogram holds {decoded}"
    )]
    CountMismatch {
        /// Index of the series.
        series: usize,
        /// Histogram name.
        name: String,
        /// The `count` field.
        declared: u64,
        /// The histogram's total count.
        decoded: u64,
    },
}

impl ReportError {
    /// Short snake_case label for a rejection-reason metric.
    pub fn reason(&self) -> &'static str {
        match self {
            ReportError::TooLarge { .. } => "too_large",
            ReportError::MalformedJson { .. } => "malformed_json",
            ReportError::SchemaVersion { .. } => "schema_version",
            ReportError::Window { .. } => "bad_window",
            ReportError::TooMany { .. } | ReportError::TooLong { .. } => "limits",
            ReportError::BadName { .. } => "bad_name",
            ReportError::Label { .. } => "label_not_allowed",
            ReportError::Histogram {
                source: HdrError::EncodedTooLarge { .. } | HdrError::DecompressedTooLarge { .. },
                ..
            }
            | ReportError::HistogramMemory { .. }
            | ReportError::InflatedTooLarge { .. } => "histogram_too_large",
            ReportError::Histogram { .. } => "bad_histogram",
            ReportError::CountMismatch { .. } => "count_mismatch",
        }
    }
}

/// Encodes a report as compact JSON.
pub fn encode_report(report: &Report) -> Vec<u8> {
    // Every map key is a String and every field serializes infallibly.
    serde_json::to_vec(report).expect("reports always serialize")
}

/// Decodes and checks a report received from an agent.
pub fn decode_report(bytes: &[u8], limits: &ReportLimits) -> Result<DecodedReport, ReportError> {
    if bytes.len() > limits.max_report_bytes {
        return Err(ReportError::TooLarge { len: bytes.len(), max: limits.max_report_bytes });
    }
    let raw: RawReport = serde_json::from_slice(bytes).map_err(|e| ReportError::MalformedJson {
        line: e.line(),
        column: e.column(),
        detail: e.to_string(),
    })?;
    if raw.schema_version != REPORT_SCHEMA_VERSION {
        return Err(ReportError::SchemaVersion { found: raw.schema_version });
    }
    if raw.window_end_ms < raw.window_start_ms {
        return Err(ReportError::Window {
            start_ms: raw.window_start_ms,
            end_ms: raw.window_end_ms,
        });
    }
    check_limits(&raw, limits)?;
    let report = Report::try_from(raw)?;
    let histograms = decode_histograms(&report, limits)?;
    Ok(DecodedReport { report, histograms })
}

fn check_limits(report: &RawReport, limits: &ReportLimits) -> Result<(), ReportError> {
    check_text(|| "agent".into(), &report.agent, limits.max_label_value_len)?;
    if report.agent.is_empty() {
        return Err(ReportError::BadName {
            what: "agent".into(),
            name: String::new(),
            problem: "empty",
        });
    }
    check_text(|| "agent_version".into(), &report.agent_version, limits.max_label_value_len)?;
    check_count(|| "series".into(), report.series.len(), limits.max_series)?;
    for (i, series) in report.series.iter().enumerate() {
        check_count(
            || format!("series {i} labels"),
            series.labels.len(),
            limits.max_labels_per_series,
        )?;
        check_count(
            || format!("series {i} counters"),
            series.counters.len(),
            limits.max_counters_per_series,
        )?;
        check_count(
            || format!("series {i} histograms"),
            series.histograms.len(),
            limits.max_histograms_per_series,
        )?;
        for (key, value) in &series.labels {
            check_name(|| format!("series {i} label key"), key, limits.max_name_len)?;
            check_text(
                || format!("series {i} label {key:?} value"),
                value,
                limits.max_label_value_len,
            )?;
        }
        for name in series.counters.keys() {
            check_name(|| format!("series {i} counter name"), name, limits.max_name_len)?;
        }
        for name in series.histograms.keys() {
            check_name(|| format!("series {i} histogram name"), name, limits.max_name_len)?;
        }
    }
    Ok(())
}

fn check_count(what: impl FnOnce() -> String, count: usize, max: usize) -> Result<(), ReportError> {
    if count > max {
        return Err(ReportError::TooMany { what: what(), count, max });
    }
    Ok(())
}

fn check_text(what: impl FnOnce() -> String, value: &str, max: usize) -> Result<(), ReportError> {
    if value.len() > max {
        return Err(ReportError::TooLong { what: what(), len: value.len(), max });
    }
    Ok(())
}

/// Names (label keys, counter and histogram names) become Prometheus label and metric name
/// parts, so they keep to a safe subset.
fn check_name(what: impl Fn() -> String, name: &str, max: usize) -> Result<(), ReportError> {
    if name.len() > max {
        return Err(ReportError::TooLong { what: what(), len: name.len(), max });
    }
    let bad = |problem| ReportError::BadName { what: what(), name: name.to_owned(), problem };
    match name.as_bytes().first() {
        None => return Err(bad("empty")),
        Some(b) if !b.is_ascii_lowercase() => {
            return Err(bad("must start with a lowercase ascii letter"));
        }
        Some(_) => {}
    }
    if !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
        return Err(bad("only lowercase ascii letters, digits and '_' are allowed"));
    }
    Ok(())
}

fn decode_histograms(
    report: &Report,
    limits: &ReportLimits,
) -> Result<Vec<BTreeMap<String, SparseHistogram>>, ReportError> {
    let mut memory = 0usize;
    let mut inflated = 0usize;
    let mut out = Vec::with_capacity(report.series.len());
    for (series, s) in report.series.iter().enumerate() {
        let mut decoded = BTreeMap::new();
        for (name, data) in &s.histograms {
            // Inflate no further than what is left of the report's budget.
            let left = limits.max_inflated_bytes.saturating_sub(inflated);
            let capped = left < limits.hdr.max_decoded_bytes;
            let hdr_limits = HdrLimits {
                max_decoded_bytes: left.min(limits.hdr.max_decoded_bytes),
                ..limits.hdr
            };
            let (h, size) =
                hdr::decode_sparse_measured(&data.hdr, &hdr_limits).map_err(|source| {
                    if capped && matches!(source, HdrError::DecompressedTooLarge { .. }) {
                        ReportError::InflatedTooLarge {
                            series,
                            name: name.clone(),
                            max: limits.max_inflated_bytes,
                        }
                    } else {
                        ReportError::Histogram { series, name: name.clone(), source }
                    }
                })?;
            inflated = inflated.saturating_add(size);
            memory = memory.saturating_add(h.heap_bytes());
            if memory > limits.max_histogram_memory_bytes {
                return Err(ReportError::HistogramMemory {
                    series,
                    name: name.clone(),
                    max: limits.max_histogram_memory_bytes,
                });
            }
            if h.len() != data.count {
                return Err(ReportError::CountMismatch {
                    series,
                    name: name.clone(),
                    declared: data.count,
                    decoded: h.len(),
                });
            }
            decoded.insert(name.clone(), h);
        }
        out.push(decoded);
    }
    Ok(out)
}

/// Serde helper: bytes as a standard base64 string.
mod base64_bytes {
    use std::fmt;

    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        d.deserialize_str(Base64Visitor)
    }

    struct Base64Visitor;

    impl Visitor<'_> for Base64Visitor {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a standard base64 string")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<u8>, E> {
            decode(v).map_err(|e| E::custom(format_args!("invalid base64: {e}")))
        }
    }

    /// Standard, padded, canonical base64: `base64-simd` (a quarter of the time of the
    /// `base64` crate on a report's 15 KB of histograms), which accepts exactly what
    /// `base64`'s `STANDARD` accepts (tested); that one then says what is wrong. The decoded
    /// size is bounded by the string, which is bounded by the report cap.
    pub(super) fn decode(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
        match base64_simd::STANDARD.decode_to_vec(text) {
            Ok(bytes) => Ok(bytes),
            Err(_) => STANDARD.decode(text),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::Role;
    use crate::plan::{Repair, Transport};

    fn histogram(values: &[u64]) -> Histogram<u64> {
        let mut h = hdr::new_histogram();
        for &v in values {
            h.record(v).unwrap();
        }
        h
    }

    fn sample() -> Report {
        let jitter = histogram(&[100, 2_000, 2_500, 31_000]);
        let first_frame = histogram(&[850_000]);
        Report {
            schema_version: REPORT_SCHEMA_VERSION,
            agent: "edge-fra-1".into(),
            agent_version: "0.1.0".into(),
            seq: 42,
            window_start_ms: 1_700_000_000_000,
            window_end_ms: 1_700_000_010_000,
            plan_revision: 3,
            spool_depth: 0,
            series: vec![Series {
                labels: labels(),
                counters: [("packets_lost".to_owned(), 3), ("stalls".to_owned(), 1)].into(),
                histograms: [
                    ("jitter_us".to_owned(), HistogramData::from_histogram(&jitter, 35_600)),
                    (
                        "first_frame_us".to_owned(),
                        HistogramData::from_histogram(&first_frame, 850_000),
                    ),
                ]
                .into(),
            }],
        }
    }

    fn labels() -> SeriesLabels {
        SeriesLabels::new("p1", Transport::Udp, Repair::Nack, "relay-1", Role::Viewer)
    }

    fn decode(bytes: &[u8]) -> Result<DecodedReport, ReportError> {
        decode_report(bytes, &ReportLimits::default())
    }

    fn reencode(f: impl FnOnce(&mut Report)) -> Result<DecodedReport, ReportError> {
        let mut r = sample();
        f(&mut r);
        decode(&encode_report(&r))
    }

    #[test]
    fn round_trip() {
        let r = sample();
        let d = decode(&encode_report(&r)).unwrap();
        assert_eq!(d.report, r);
        assert_eq!(d.histograms.len(), 1);
        let jitter = &d.histograms[0]["jitter_us"];
        assert_eq!(jitter.to_histogram().unwrap(), histogram(&[100, 2_000, 2_500, 31_000]));
        assert_eq!(jitter.len(), 4);
        assert_eq!(jitter.bucket_count(), 4);
    }

    #[test]
    fn the_fast_base64_decoder_accepts_exactly_what_the_standard_engine_accepts() {
        use base64::Engine;
        let standard = base64::engine::general_purpose::STANDARD;
        let same = |text: &[u8]| {
            let text = String::from_utf8_lossy(text);
            let fast = base64_simd::STANDARD.decode_to_vec(text.as_bytes()).ok();
            assert_eq!(fast, standard.decode(text.as_bytes()).ok(), "{text:?}");
            assert_eq!(base64_bytes::decode(&text).ok(), fast, "{text:?}");
            fast.is_some()
        };
        // Valid encodings of every length up to 40 bytes, each with every character replaced
        // by each of a set of valid, padding, URL-safe and foreign ones, and cut anywhere.
        let replacements = b"AQgw+/=-_ \n.";
        let (mut accepted, mut refused) = (0, 0);
        for len in 0..40u8 {
            let data: Vec<u8> = (0..len).map(|i| i.wrapping_mul(37).wrapping_add(len)).collect();
            let valid = standard.encode(&data).into_bytes();
            assert!(same(&valid));
            for at in 0..valid.len() {
                for &r in replacements {
                    let mut changed = valid.clone();
                    changed[at] = r;
                    if same(&changed) { accepted += 1 } else { refused += 1 }
                }
                same(&valid[..at]);
            }
        }
        // Both kinds are exercised: non-canonical trailing bits are refused by both.
        assert!(accepted > 1000 && refused > 1000, "accepted {accepted}, refused {refused}");
        assert!(!same(b"QR==") && !same(b"QUJ=") && same(b"QQ==") && same(b"QUI="));
    }

    #[test]
    fn hdr_is_base64_and_defaults_apply() {
        let json = String::from_utf8(encode_report(&sample())).unwrap();
        assert!(json.contains("\"hdr\":\"HIST"), "{json}");
        let minimal = br#"{"schema_version":1,"agent":"a","agent_version":"1","seq":1,
            "window_start_ms":5,"window_end_ms":5,"series":[{"labels":{"probe":"p1",
            "repair":"nack","role":"viewer","target":"relay-1","transport":"udp"}}]}"#;
        let d = decode(minimal).unwrap();
        assert_eq!(d.report.plan_revision, 0);
        assert_eq!(d.report.series[0], Series::new(labels()));
    }

    #[test]
    fn rejections_have_reasons() {
        let cases: Vec<(Result<DecodedReport, ReportError>, &str)> = vec![
            (
                decode_report(
                    &encode_report(&sample()),
                    &ReportLimits { max_report_bytes: 10, ..Default::default() },
                ),
                "too_large",
            ),
            (decode(b"{\"schema_version\":1,\n\"nope\":2}"), "malformed_json"),
            (reencode(|r| r.schema_version = 2), "schema_version"),
            (reencode(|r| r.window_end_ms = 0), "bad_window"),
            (reencode(|r| r.series = vec![Series::new(labels()); 257]), "limits"),
            (reencode(|r| r.agent = "x".repeat(129)), "limits"),
            (reencode(|r| r.agent.clear()), "bad_name"),
            (
                reencode(|r| {
                    r.series[0].counters.insert("Bad".into(), 1);
                }),
                "bad_name",
            ),
            (
                reencode(|r| {
                    r.series[0].counters.insert("9lives".into(), 1);
                }),
                "bad_name",
            ),
            (with_label("x".repeat(65).as_str(), "v"), "limits"),
            (with_label("Colour", "red"), "bad_name"),
            (with_label("probe", &"p".repeat(129)), "limits"),
            (with_label("transport", &"q".repeat(129)), "limits"),
            (with_label("transport", "quic"), "label_not_allowed"),
            (with_label("colour", "red"), "label_not_allowed"),
            (
                reencode(|r| {
                    r.series[0].histograms.get_mut("jitter_us").unwrap().hdr.truncate(20);
                }),
                "bad_histogram",
            ),
            (
                reencode(|r| {
                    r.series[0].histograms.get_mut("jitter_us").unwrap().count = 5;
                }),
                "count_mismatch",
            ),
        ];
        for (i, (result, reason)) in cases.into_iter().enumerate() {
            let e = result.expect_err(reason);
            assert_eq!(e.reason(), reason, "case {i}: {e}");
        }
    }

    /// The sample's JSON with label `key` set to `value` (as an agent could send it).
    fn with_label(key: &str, value: &str) -> Result<DecodedReport, ReportError> {
        let mut json: serde_json::Value =
            serde_json::from_slice(&encode_report(&sample())).unwrap();
        json["series"][0]["labels"][key] = value.into();
        decode(&serde_json::to_vec(&json).unwrap())
    }

    /// The sample's JSON without label `key`.
    fn without_label(key: &str) -> Result<DecodedReport, ReportError> {
        let mut json: serde_json::Value =
            serde_json::from_slice(&encode_report(&sample())).unwrap();
        json["series"][0]["labels"].as_object_mut().unwrap().remove(key);
        decode(&serde_json::to_vec(&json).unwrap())
    }

    #[test]
    fn the_wire_labels_are_the_old_label_map() {
        let json = String::from_utf8(encode_report(&sample())).unwrap();
        let old = r#""labels":{"probe":"p1","repair":"nack","role":"viewer","target":"relay-1","transport":"udp"},"counters""#;
        assert!(json.contains(old), "{json}");
    }

    #[test]
    fn bad_labels_are_refused_naming_series_label_and_allowed_values() {
        let e = with_label("transport", "quic").unwrap_err();
        assert_eq!(
            e.to_string(),
            "series 0 label \"transport\": value \"quic\" is not allowed: expected one of \
             quic-stream, quic-datagram, udp"
        );
        let e = without_label("transport").unwrap_err();
        assert_eq!(
            e.to_string(),
            "series 0 label \"transport\": missing: expected one of quic-stream, quic-datagram, udp"
        );
        let e = with_label("colour", "red").unwrap_err();
        assert_eq!(
            e.to_string(),
            "series 0 label \"colour\": not a series label (known: probe, repair, role, target, \
             transport)"
        );
        for e in [e, without_label("target").unwrap_err(), with_label("target", "").unwrap_err()] {
            assert_eq!(e.reason(), "label_not_allowed", "{e}");
        }
        // Agents older than the `repair` label are still read.
        let old = without_label("repair").unwrap();
        assert_eq!(old.report.series[0].labels, SeriesLabels { repair: None, ..labels() });
        // Any reader of a report applies the same rules.
        let mut json: serde_json::Value =
            serde_json::from_slice(&encode_report(&sample())).unwrap();
        json["series"][0]["labels"]["role"] = "relay".into();
        let e = serde_json::from_value::<Report>(json).unwrap_err();
        assert!(e.to_string().contains("series 0 label \"role\""), "{e}");
    }

    #[test]
    fn json_errors_carry_line_and_column() {
        let e = decode(b"{\"schema_version\":1,\n\"nope\":2}").unwrap_err();
        let ReportError::MalformedJson { line, .. } = &e else { panic!("{e}") };
        assert_eq!(*line, 2);
        assert!(e.to_string().contains("line 2"), "{e}");
        let e = decode(b"{\"schema_version\":1,\"agent\":\"a\",\"agent_version\":\"1\",\"seq\":1,\"window_start_ms\":1,\"window_end_ms\":1,\"series\":[{\"labels\":{},\"histograms\":{\"x\":{\"hdr\":\"!!\",\"sum\":0,\"count\":0}}}]}").unwrap_err();
        assert!(e.to_string().contains("invalid base64"), "{e}");
    }

    #[test]
    fn inflated_bytes_are_capped_per_report() {
        // Each histogram is within its own cap; together they pass the report's.
        let sample = encode_report(&sample());
        let one = decode_report(&sample, &ReportLimits::default()).unwrap();
        let mut inflated = 0;
        for data in one.report.series[0].histograms.values() {
            inflated += hdr::decode_sparse_measured(&data.hdr, &HdrLimits::default()).unwrap().1;
        }
        let limits = ReportLimits { max_inflated_bytes: inflated - 1, ..Default::default() };
        let e = decode_report(&sample, &limits).unwrap_err();
        assert!(matches!(e, ReportError::InflatedTooLarge { .. }), "{e}");
        assert_eq!(e.reason(), "histogram_too_large");
        let limits = ReportLimits { max_inflated_bytes: inflated, ..Default::default() };
        assert!(decode_report(&sample, &limits).is_ok());
    }

    #[test]
    fn histogram_memory_is_capped() {
        // Decoded histograms are sparse: the sample's two take 5 buckets of 8 bytes.
        let limits = ReportLimits { max_histogram_memory_bytes: 39, ..Default::default() };
        let e = decode_report(&encode_report(&sample()), &limits).unwrap_err();
        assert_eq!(e.reason(), "histogram_too_large", "{e}");
        assert!(e.to_string().contains("39-byte"), "{e}");
        let limits = ReportLimits { max_histogram_memory_bytes: 40, ..Default::default() };
        assert!(decode_report(&encode_report(&sample()), &limits).is_ok());
    }
}
