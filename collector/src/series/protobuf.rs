//! The Prometheus protobuf exposition: length-delimited `io.prometheus.client.MetricFamily`
//! messages, written by hand (a few varint and length-prefix helpers) rather than generated,
//! so the build needs neither `protoc` nor `prost`.
//!
//! It carries exactly the families and samples of the text formats, with the names a
//! Prometheus server derives from text (counters end in `_total`, units are in the name):
//! every histogram has its classic buckets (`+Inf` implied by `sample_count`, as Prometheus'
//! clients write it), exact sum and count, and its native buckets (schema 3, zero threshold
//! 2^-128). `stallwatch_agent_info` is a gauge of value 1, as in the 0.0.4 text format.
//!
//! Field numbers are those of `prometheus/prompb/io/prometheus/client/metrics.proto`.

use super::catalogue::{Counter, CounterUnit, Histogram, counter_members, histogram_members};
use super::cohort::HistogramView;
use super::cohorts::Cohorts;
use super::export::{AGENT_INFO, LAST_REPORT, names_ignored, own_counters, own_gauges};
use super::native::{NATIVE_SCHEMA, NATIVE_ZERO_THRESHOLD};
use crate::store::Cohort;
use crate::telemetry::{
    ACCEPTED, BACKFILLED, INGEST_DURATION, INGEST_DURATION_BOUNDS, OwnTotals, REJECTED,
};

/// `MetricType` values.
const COUNTER: u64 = 0;
const GAUGE: u64 = 1;
const HISTOGRAM: u64 = 4;

const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LEN: u32 = 2;

fn varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push(v as u8 | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn key(buf: &mut Vec<u8>, field: u32, wire: u32) {
    varint(buf, u64::from(field << 3 | wire));
}

fn uint(buf: &mut Vec<u8>, field: u32, v: u64) {
    key(buf, field, VARINT);
    varint(buf, v);
}

fn sint(buf: &mut Vec<u8>, field: u32, v: i64) {
    key(buf, field, VARINT);
    varint(buf, zigzag(v));
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn double(buf: &mut Vec<u8>, field: u32, v: f64) {
    key(buf, field, FIXED64);
    buf.extend_from_slice(&v.to_le_bytes());
}

fn string(buf: &mut Vec<u8>, field: u32, s: &str) {
    key(buf, field, LEN);
    varint(buf, s.len() as u64);
    buf.extend_from_slice(s.as_bytes());
}

/// Writes a length-prefixed message (with `field`'s key first, if any) whose body `body`
/// appends. Room for a one-byte length is reserved before the body; see [`message_sized`].
fn message<R>(buf: &mut Vec<u8>, field: Option<u32>, body: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    message_sized(buf, field, 1, body)
}

/// [`message`] with room for a `reserve`-byte length: the length's varint is written in
/// place when it takes that many bytes, and the body moved once otherwise (the length stays
/// minimal, so the bytes do not depend on the guess). Metrics and histograms run to a few
/// hundred bytes and families to megabytes: reserving for that saves moving those bodies and
/// allocating their prefixes (too little to show in the render bench on its own).
fn message_sized<R>(
    buf: &mut Vec<u8>,
    field: Option<u32>,
    reserve: usize,
    body: impl FnOnce(&mut Vec<u8>) -> R,
) -> R {
    if let Some(field) = field {
        key(buf, field, LEN);
    }
    let at = buf.len();
    buf.resize(at + reserve, 0);
    let out = body(buf);
    let len = buf.len() - at - reserve;
    let mut prefix = [0u8; 10];
    let mut used = 0;
    let mut v = len as u64;
    while v >= 0x80 {
        prefix[used] = v as u8 | 0x80;
        v >>= 7;
        used += 1;
    }
    prefix[used] = v as u8;
    used += 1;
    if used > reserve {
        buf.resize(buf.len() + used - reserve, 0);
    }
    if used != reserve {
        buf.copy_within(at + reserve..at + reserve + len, at + used);
        buf.truncate(at + used + len);
    }
    buf[at..at + used].copy_from_slice(&prefix[..used]);
    out
}

fn label(buf: &mut Vec<u8>, name: &str, value: &str) {
    message(buf, Some(1), |m| {
        string(m, 1, name);
        string(m, 2, value);
    });
}

/// The encoded labels of every cohort, in [`Cohorts::states`] order: each of a cohort's
/// dozens of series copies its block in one go rather than encoding ten strings again.
fn cohort_label_blocks(cohorts: &Cohorts) -> Vec<Vec<u8>> {
    cohorts
        .states()
        .map(|(key, _)| {
            let mut block = Vec::with_capacity(128);
            cohort_labels(&mut block, key);
            block
        })
        .collect()
}

fn cohort_labels(buf: &mut Vec<u8>, key: &Cohort) {
    label(buf, "region", &key.region);
    label(buf, "network_type", &key.network_type);
    label(buf, "transport", &key.transport);
    label(buf, "repair", &key.repair);
    label(buf, "target", &key.target);
}

/// A series' labels: its cohort's (`block`, from [`cohort_label_blocks`]), then `extra`.
fn series_labels(buf: &mut Vec<u8>, block: &[u8], extra: &[(&str, &str)]) {
    buf.extend_from_slice(block);
    for &(name, value) in extra {
        label(buf, name, value);
    }
}

/// One `MetricFamily`, length-delimited; `metrics` writes `Metric`s with [`metric`] and
/// returns how many. A family without metrics is left out, as the text formats have no
/// samples for it either.
fn family(
    out: &mut Vec<u8>,
    name: &str,
    help: &str,
    kind: u64,
    metrics: impl FnOnce(&mut Vec<u8>) -> usize,
) {
    let start = out.len();
    let written = message_sized(out, None, 3, |f| {
        string(f, 1, name);
        string(f, 2, help);
        uint(f, 3, kind);
        metrics(f)
    });
    if written == 0 {
        out.truncate(start);
    }
}

fn metric(buf: &mut Vec<u8>, body: impl FnOnce(&mut Vec<u8>)) -> usize {
    message_sized(buf, Some(4), 2, body);
    1
}

fn counter(buf: &mut Vec<u8>, value: f64) {
    message(buf, Some(3), |c| double(c, 1, value));
}

fn gauge(buf: &mut Vec<u8>, value: f64) {
    message(buf, Some(2), |g| double(g, 1, value));
}

/// Reused buffers for native spans and deltas.
#[derive(Default)]
struct Scratch {
    spans: Vec<(i32, u32)>,
    deltas: Vec<i64>,
}

/// A `Histogram` with classic buckets (finite bounds; `+Inf` is `sample_count`), and native
/// buckets if `native` is given.
fn histogram(
    buf: &mut Vec<u8>,
    count: u64,
    sum: f64,
    classic: impl Iterator<Item = (f64, u64)>,
    native: Option<(&HistogramView<'_>, &mut Scratch)>,
) {
    message_sized(buf, Some(7), 2, |h| {
        uint(h, 1, count);
        double(h, 2, sum);
        let mut cumulative = 0u64;
        for (upper, n) in classic {
            cumulative = cumulative.saturating_add(n);
            if upper.is_finite() {
                message(h, Some(3), |b| {
                    uint(b, 1, cumulative);
                    double(b, 2, upper);
                });
            }
        }
        let Some((view, scratch)) = native else {
            return;
        };
        let native = view.native();
        sint(h, 5, i64::from(NATIVE_SCHEMA));
        double(h, 6, NATIVE_ZERO_THRESHOLD);
        uint(h, 7, native.zero_count());
        native.spans_and_deltas(&mut scratch.spans, &mut scratch.deltas);
        for &(offset, length) in &scratch.spans {
            message(h, Some(12), |s| {
                sint(s, 1, i64::from(offset));
                uint(s, 2, u64::from(length));
            });
        }
        if !scratch.deltas.is_empty() {
            message(h, Some(13), |d| {
                for &delta in &scratch.deltas {
                    varint(d, zigzag(delta));
                }
            });
        }
    });
}

/// Everything, as length-delimited `MetricFamily` messages, in the text formats' order.
pub(crate) fn encode(cohorts: &Cohorts, own: &OwnTotals, capacity: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(capacity);
    encode_own_metrics(&mut out, own);
    let label_blocks = cohort_label_blocks(cohorts);
    encode_histograms(&mut out, cohorts, &label_blocks);
    encode_counters(&mut out, cohorts, &label_blocks);
    encode_agents(&mut out, cohorts);
    encode_store_metrics(&mut out, cohorts);
    out
}

fn encode_own_metrics(out: &mut Vec<u8>, own: &OwnTotals) {
    let total = |name: &str| format!("{name}_total");
    let (name, help) = ACCEPTED;
    family(out, &total(name), help, COUNTER, |f| metric(f, |m| counter(m, own.accepted as f64)));
    let (name, help) = REJECTED;
    family(out, &total(name), help, COUNTER, |f| {
        own.rejected
            .iter()
            .map(|(&reason, &n)| {
                metric(f, |m| {
                    label(m, "reason", reason);
                    counter(m, n as f64);
                })
            })
            .sum()
    });
    let (name, help) = BACKFILLED;
    family(out, &total(name), help, COUNTER, |f| metric(f, |m| counter(m, own.backfilled as f64)));
    let (name, help) = INGEST_DURATION;
    family(out, &format!("{name}_seconds"), help, HISTOGRAM, |f| {
        metric(f, |m| {
            let bounds = INGEST_DURATION_BOUNDS.iter().copied().chain([f64::INFINITY]);
            histogram(m, own.ingest_count, own.ingest_sum, bounds.zip(own.ingest_buckets), None);
        })
    });
}

fn encode_histograms(out: &mut Vec<u8>, cohorts: &Cohorts, label_blocks: &[Vec<u8>]) {
    let mut scratch = Scratch::default();
    for family_spec in Histogram::families() {
        let members = histogram_members(family_spec);
        let divisor = family_spec.unit.divisor();
        let upper: Vec<f64> =
            family_spec.bounds.iter().map(|&b| b as f64 / divisor).chain([f64::INFINITY]).collect();
        let name = family_spec.exported_name();
        family(out, &name, family_spec.help, HISTOGRAM, |f| {
            let mut written = 0;
            for ((_, state), block) in cohorts.states().zip(label_blocks) {
                for &i in &members {
                    let h = state.histogram(i);
                    if h.count() == 0 {
                        continue;
                    }
                    written += metric(f, |m| {
                        series_labels(m, block, Histogram::ALL[i].labels());
                        let classic = upper.iter().copied().zip(h.bucket_counts().iter().copied());
                        histogram(m, h.count(), h.sum_base(), classic, Some((&h, &mut scratch)));
                    });
                }
            }
            written
        });
    }
}

fn encode_counters(out: &mut Vec<u8>, cohorts: &Cohorts, label_blocks: &[Vec<u8>]) {
    if cohorts.is_empty() {
        return;
    }
    for family_spec in Counter::families() {
        let members = counter_members(family_spec);
        let name = family_spec.exported_name();
        family(out, &name, family_spec.help, COUNTER, |f| {
            let mut written = 0;
            for ((_, state), block) in cohorts.states().zip(label_blocks) {
                for &i in &members {
                    let value = state.counter(i);
                    let value = match family_spec.unit {
                        CounterUnit::NanosAsSeconds => value as f64 / 1e9,
                        CounterUnit::Count | CounterUnit::Bytes => value as f64,
                    };
                    written += metric(f, |m| {
                        series_labels(m, block, Counter::ALL[i].labels());
                        counter(m, value);
                    });
                }
            }
            written
        });
    }
}

fn encode_agents(out: &mut Vec<u8>, cohorts: &Cohorts) {
    let agents = cohorts.agents();
    let (name, help) = AGENT_INFO;
    family(out, &format!("{name}_info"), help, GAUGE, |f| {
        agents
            .iter()
            .map(|(agent, facts)| {
                metric(f, |m| {
                    label(m, "agent", agent);
                    label(m, "region", &facts.region);
                    label(m, "network_type", &facts.network_type);
                    label(m, "version", &facts.version);
                    gauge(m, 1.0);
                })
            })
            .sum()
    });
    let (name, help) = LAST_REPORT;
    family(out, &format!("{name}_seconds"), help, GAUGE, |f| {
        agents
            .iter()
            .map(|(agent, facts)| {
                metric(f, |m| {
                    label(m, "agent", agent);
                    gauge(m, facts.last_window_end_ms as f64 / 1e3);
                })
            })
            .sum()
    });
}

fn encode_store_metrics(out: &mut Vec<u8>, cohorts: &Cohorts) {
    for (name, help, value) in own_gauges(cohorts) {
        family(out, name, help, GAUGE, |f| metric(f, |m| gauge(m, value as f64)));
    }
    for (name, help, value) in own_counters(cohorts) {
        family(out, &format!("{name}_total"), help, COUNTER, |f| {
            metric(f, |m| counter(m, value as f64))
        });
    }
    let (name, help, values) = names_ignored(cohorts);
    family(out, &format!("{name}_total"), help, COUNTER, |f| {
        values
            .iter()
            .map(|&(kind, value)| {
                metric(f, |m| {
                    label(m, "kind", kind);
                    counter(m, value as f64);
                })
            })
            .sum()
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_the_same_bytes_whatever_room_was_reserved_for_its_length() {
        for len in [0usize, 1, 127, 128, 300, 16_383, 16_384, 70_000, 2_097_152] {
            let body: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut expected = vec![0xaa];
            key(&mut expected, 4, LEN);
            varint(&mut expected, len as u64);
            expected.extend_from_slice(&body);
            for reserve in [1, 2, 3, 4] {
                let mut buf = vec![0xaa];
                let back = message_sized(&mut buf, Some(4), reserve, |b| {
                    b.extend_from_slice(&body);
                    len
                });
                assert_eq!(back, len);
                assert!(buf == expected, "{len} bytes, {reserve} reserved");
            }
        }
    }
}
