//! The demo's closing report: the regional report (HTML, `crate::reports`) of the degrading
//! region over the minutes the demo ran, with the incidents the evaluator raised.

use std::path::Path;

use crate::alerts::timestamps::rfc3339;
use crate::reports::cli::{PeriodSpec, report_from_config};
use crate::reports::{Format, Lang, render};
use crate::store::MINUTE_MS;
use anyhow::{Context, Result};

/// The report period for a run from `start_ms` to `end_ms`: whole minutes around it.
pub fn period(start_ms: u64, end_ms: u64) -> (String, String) {
    let from = start_ms - start_ms % MINUTE_MS;
    let to = end_ms.div_ceil(MINUTE_MS).max(from / MINUTE_MS + 1) * MINUTE_MS;
    (rfc3339(from), rfc3339(to))
}

/// Writes `region`'s HTML report for `from`..`to` (RFC 3339) from the configuration at
/// `config` (its store and alert state) to `out`; returns how many incidents it lists.
pub fn write(config: &Path, region: &str, from: &str, to: &str, out: &Path) -> Result<usize> {
    let config = crate::config::load(config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let spec = PeriodSpec::Between(from.to_owned(), to.to_owned());
    let report = report_from_config(&config, region, &spec, Lang::En, crate::clock::unix_ms())
        .map_err(|f| anyhow::anyhow!("{}", f.message))?;
    let html = render(&report, Format::Html);
    let tmp = out.with_extension("html.tmp");
    std::fs::write(&tmp, html).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, out).with_context(|| format!("writing {}", out.display()))?;
    Ok(report.incidents.items.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_period_is_the_whole_minutes_of_the_run() {
        // 2026-12-06T23:40:12.5Z to 23:42:30Z.
        let start = 1_796_600_412_500;
        assert_eq!(
            period(start, start + 138_000),
            ("2026-12-06T23:40:00.000Z".to_owned(), "2026-12-06T23:43:00.000Z".to_owned())
        );
        // A run of a few seconds still has a minute.
        assert_eq!(period(start, start + 3_000).1, "2026-12-06T23:41:00.000Z");
    }
}
