//! Rule kinds, one file each. A rule reads the [`Context`] (history, agents, baselines at one
//! evaluation) and returns [`Finding`]s: for each key it judged, firing at a severity, clear,
//! or without enough data. The evaluator combines the findings per key into incidents.

pub mod absence;
pub mod baseline;
pub mod burn_rate;
pub mod outlier;
pub mod spread;
pub mod threshold;
pub mod transport;
pub mod trend;

use super::history::History;
use super::incidents::IncidentKey;
use super::signals::{Minimums, Signal};
use super::source::Baselines;
use super::{Evidence, Method, Settings, Severity};
use crate::store::{AgentFacts, MINUTE_MS};

/// What the rules see at one evaluation.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// Now, unix ms.
    pub now: u64,
    /// End (exclusive) of the settled minutes: windows end here.
    pub end: u64,
    /// Settings.
    pub settings: &'a Settings,
    /// History.
    pub history: &'a History,
    /// The agent registry.
    pub agents: &'a [AgentFacts],
    /// The same hour of past weeks.
    pub baselines: &'a Baselines,
}

impl Context<'_> {
    /// The per-minute minimums.
    pub fn per_minute(&self) -> Minimums {
        Minimums::per_minute(self.settings)
    }

    /// The minimums for a window of `len_ms`.
    pub fn over(&self, len_ms: u64) -> Minimums {
        self.per_minute().times(len_ms.div_ceil(MINUTE_MS))
    }

    /// The level a signal is judged against (its threshold's enter level, or for the share of
    /// slow first frames, its error budget).
    pub fn reference_level(&self, signal: Signal) -> Option<f64> {
        self.settings
            .levels
            .get(&signal)
            .map(|l| l.enter)
            .or_else(|| self.settings.budgets.get(&signal).copied())
    }
}

/// A rule's judgement of one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It fires at this severity.
    Firing(Severity),
    /// It does not fire.
    Clear,
    /// Too little data to say ("insufficient data").
    Insufficient,
}

/// One rule's finding for one key.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// What it is about.
    pub key: IncidentKey,
    /// The rule kind.
    pub method: Method,
    /// Its verdict.
    pub verdict: Verdict,
    /// Evidence, when firing.
    pub evidence: Option<Evidence>,
}

impl Finding {
    /// A finding without evidence (clear or insufficient).
    pub fn quiet(key: IncidentKey, method: Method, verdict: Verdict) -> Self {
        Finding { key, method, verdict, evidence: None }
    }
}

/// The median of `values` (sorted in place); `None` when empty.
pub fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    Some(if n % 2 == 1 { values[n / 2] } else { (values[n / 2 - 1] + values[n / 2]) / 2.0 })
}

/// The median and the median absolute deviation scaled by 1.4826 (a standard deviation for
/// normal data); `None` when empty.
pub fn median_and_mad(values: &[f64]) -> Option<(f64, f64)> {
    let mut v = values.to_vec();
    let m = median(&mut v)?;
    let mut dev: Vec<f64> = values.iter().map(|x| (x - m).abs()).collect();
    Some((m, 1.4826 * median(&mut dev)?))
}

/// A least-squares line through `points` (x, y): slope, the fitted y at `at`, and the
/// slope's standard error. `None` with fewer than 3 points or no spread in x.
pub fn fit_line(points: &[(f64, f64)], at: f64) -> Option<(f64, f64, f64)> {
    let n = points.len();
    if n < 3 {
        return None;
    }
    let nf = n as f64;
    let mx = points.iter().map(|p| p.0).sum::<f64>() / nf;
    let my = points.iter().map(|p| p.1).sum::<f64>() / nf;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if sxx <= 0.0 {
        return None;
    }
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let slope = sxy / sxx;
    let intercept = my - slope * mx;
    let sse: f64 = points.iter().map(|p| (p.1 - intercept - slope * p.0).powi(2)).sum();
    let stderr = (sse / (nf - 2.0) / sxx).sqrt();
    Some((slope, intercept + slope * at, stderr))
}

/// `2 of the last 3 minutes`, `1h and 5m`: a window for people.
pub fn minutes_text(ms: u64) -> String {
    stallwatch_proto::duration::format_duration(std::time::Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_mad_of_known_values() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), Some(2.5));
        let (m, mad) = median_and_mad(&[1.0, 2.0, 3.0, 4.0, 100.0]).unwrap();
        assert_eq!(m, 3.0);
        assert!((mad - 1.4826).abs() < 1e-12, "deviations 2,1,0,1,97: median 1");
    }

    #[test]
    fn fit_line_recovers_a_line_and_its_error() {
        let points: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, 2.0 + 0.5 * i as f64)).collect();
        let (slope, at_20, se) = fit_line(&points, 20.0).unwrap();
        assert!((slope - 0.5).abs() < 1e-12);
        assert!((at_20 - 12.0).abs() < 1e-9);
        assert!(se < 1e-9);
        // Alternating noise around a flat line: slope 0-ish with a large error.
        let noisy: Vec<(f64, f64)> =
            (0..10).map(|i| (i as f64, if i % 2 == 0 { 1.0 } else { 3.0 })).collect();
        let (slope, _, se) = fit_line(&noisy, 9.0).unwrap();
        assert!(slope.abs() < 2.0 * se, "slope {slope} se {se}");
    }
}
