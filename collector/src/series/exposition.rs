//! Which exposition format a scrape gets, from its `Accept` header.

/// `Content-Type` of [`Exposition::OpenMetrics`].
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// `Content-Type` of [`Exposition::PrometheusText`].
pub const PROMETHEUS_TEXT_CONTENT_TYPE: &str =
    prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
/// `Content-Type` of [`Exposition::Protobuf`]: length-delimited `io.prometheus.client`
/// `MetricFamily` messages.
pub const PROTOBUF_CONTENT_TYPE: &str =
    "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited";

/// An exposition format of [`SeriesStore::render`](super::SeriesStore::render).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Exposition {
    /// OpenMetrics 1.0 text, ending in `# EOF`: classic buckets only.
    OpenMetrics,
    /// Prometheus text format 0.0.4: classic buckets only.
    PrometheusText,
    /// Prometheus protobuf (`io.prometheus.client.MetricFamily`, length-delimited): every
    /// histogram with its classic buckets *and* native (schema 3) buckets, and every counter
    /// and gauge of the text formats.
    Protobuf,
}

impl Exposition {
    /// The `Content-Type` to answer with.
    pub fn content_type(self) -> &'static str {
        match self {
            Exposition::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
            Exposition::PrometheusText => PROMETHEUS_TEXT_CONTENT_TYPE,
            Exposition::Protobuf => PROTOBUF_CONTENT_TYPE,
        }
    }
}

/// Picks the format for a scrape's `Accept` header (RFC 9110 section 12.5.1).
///
/// Each media range is matched to a format it names:
/// - `application/vnd.google.protobuf` with `proto=io.prometheus.client.MetricFamily` and
///   `encoding=delimited`: [`Exposition::Protobuf`] (what Prometheus asks for first when
///   started with `--enable-feature=native-histograms`);
/// - `application/openmetrics-text` with `version=1.0.0` or no version:
///   [`Exposition::OpenMetrics`] (an older `version=0.0.1` is not offered);
/// - `text/plain` with `version=0.0.4` or no version, `text/*` and `*/*`:
///   [`Exposition::PrometheusText`].
///
/// The match with the highest `q` wins; among equal `q`, the one listed first. A range with
/// `q=0` is refused. Without an `Accept` header, or when nothing offered matches, the answer
/// is [`Exposition::PrometheusText`], the format every scraper reads (so `curl` gets text).
pub fn negotiate(accept: Option<&str>) -> Exposition {
    let Some(accept) = accept else {
        return Exposition::PrometheusText;
    };
    let mut best: Option<(f64, Exposition)> = None;
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let mut q = 1.0;
        let mut proto = None;
        let mut encoding = None;
        let mut version = None;
        for param in parts {
            let Some((name, value)) = param.split_once('=') else {
                continue;
            };
            let value = value.trim().trim_matches('"');
            match name.trim().to_ascii_lowercase().as_str() {
                "q" => {
                    q = value.parse::<f64>().ok().filter(|q| (0.0..=1.0).contains(q)).unwrap_or(0.0)
                }
                "proto" => proto = Some(value.to_owned()),
                "encoding" => encoding = Some(value.to_ascii_lowercase()),
                "version" => version = Some(value.to_owned()),
                _ => {}
            }
        }
        let format = match media.as_str() {
            "application/vnd.google.protobuf"
                if proto.as_deref() == Some("io.prometheus.client.MetricFamily")
                    && encoding.as_deref() == Some("delimited") =>
            {
                Exposition::Protobuf
            }
            "application/openmetrics-text"
                if matches!(version.as_deref(), None | Some("1.0.0")) =>
            {
                Exposition::OpenMetrics
            }
            "text/plain" if matches!(version.as_deref(), None | Some("0.0.4")) => {
                Exposition::PrometheusText
            }
            "text/*" | "*/*" => Exposition::PrometheusText,
            _ => continue,
        };
        if q > 0.0 && best.is_none_or(|(best_q, _)| q > best_q) {
            best = Some((q, format));
        }
    }
    best.map_or(Exposition::PrometheusText, |(_, format)| format)
}
