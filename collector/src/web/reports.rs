//! The reports page (`/reports`): pick a region, period and language, and get the links to
//! the regional report in each format (`GET /api/v1/reports/{region}`, docs/reports.md).
//! A GET form, so it works without scripts.

use std::fmt::Write as _;

use super::layout::{Page, escape, page};

/// Periods offered.
pub const PERIODS: [&str; 4] = ["1d", "7d", "14d", "30d"];
/// Formats offered, with what each is for.
pub const FORMATS: [(&str, &str); 4] = [
    ("html", "to read or print"),
    ("md", "for tickets"),
    ("csv", "for spreadsheets"),
    ("json", "for other tools"),
];
/// Languages offered.
pub const LANGS: [(&str, &str); 2] = [("en", "English"), ("zh", "中文")];

/// What the form asked for; anything unknown falls back to the default (7d, en, every region).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Choice {
    /// One region, or all of them.
    pub region: Option<String>,
    /// One of [`PERIODS`].
    pub period: String,
    /// One of [`LANGS`].
    pub lang: String,
}

impl Choice {
    /// The choice from the query's values, checked against what is offered.
    pub fn of(
        regions: &[String],
        region: Option<&str>,
        period: Option<&str>,
        lang: Option<&str>,
    ) -> Self {
        Choice {
            region: region.filter(|r| regions.iter().any(|known| known == r)).map(str::to_owned),
            period: period.filter(|p| PERIODS.contains(p)).unwrap_or("7d").to_owned(),
            lang: lang.filter(|l| LANGS.iter().any(|(c, _)| c == l)).unwrap_or("en").to_owned(),
        }
    }
}

/// The reports page for the configured `regions`.
pub fn render(regions: &[String], choice: &Choice) -> String {
    let mut body = String::with_capacity(4096);
    body.push_str(
        "<h1>Reports</h1><p class=\"muted\">Regional reports for customer-success managers: \
         headline figures against the SLO and the previous period, the hour-of-day heatmap in \
         the region's time zone, breakdowns, incidents and recommendations, computed from the \
         history store. Periods end at the last whole hour.</p>",
    );
    body.push_str("<form method=\"get\" action=\"/reports\"><label>region<select name=\"region\">");
    let _ = write!(
        body,
        "<option value=\"\"{}>every region</option>",
        selected(choice.region.is_none())
    );
    for r in regions {
        let _ = write!(
            body,
            "<option value=\"{0}\"{1}>{0}</option>",
            escape(r),
            selected(choice.region.as_deref() == Some(r))
        );
    }
    body.push_str("</select></label><label>period<select name=\"period\">");
    for p in PERIODS {
        let _ = write!(body, "<option{}>{p}</option>", selected(choice.period == p));
    }
    body.push_str("</select></label><label>language<select name=\"lang\">");
    for (code, name) in LANGS {
        let _ = write!(
            body,
            "<option value=\"{code}\"{}>{name}</option>",
            selected(choice.lang == code)
        );
    }
    body.push_str("</select></label><button type=\"submit\">Show links</button></form>");
    if regions.is_empty() {
        body.push_str("<p>No region is configured (<code>[labels] regions</code>).</p>");
        return page(Page::Reports, "Reports", None, &body);
    }
    let _ = write!(
        body,
        "<h2>Last {} · {}</h2><table><thead><tr><th>region</th>",
        escape(&choice.period),
        LANGS.iter().find(|(c, _)| *c == choice.lang).map_or("", |(_, n)| n)
    );
    for (format, what) in FORMATS {
        let _ = write!(body, "<th>{format} <span class=\"muted\">({what})</span></th>");
    }
    body.push_str("</tr></thead><tbody>");
    let shown = regions.iter().filter(|r| choice.region.as_ref().is_none_or(|c| c == *r));
    for region in shown {
        let _ = write!(body, "<tr><td><strong>{}</strong></td>", escape(region));
        for (format, _) in FORMATS {
            let _ = write!(
                body,
                "<td><a href=\"{}\">{region}.{format}</a></td>",
                escape(&report_url(region, &choice.period, format, &choice.lang)),
                region = escape(region),
            );
        }
        body.push_str("</tr>");
    }
    body.push_str("</tbody></table>");
    body.push_str(
        "<p class=\"muted\">The same from the command line: <code>stallwatch-collector report \
         --config collector.toml --region REGION --period 7d --format html --out FILE</code>.</p>",
    );
    page(Page::Reports, "Reports", None, &body)
}

/// `/api/v1/reports/{region}?period=..&format=..&lang=..`, the region percent-encoded.
pub fn report_url(region: &str, period: &str, format: &str, lang: &str) -> String {
    let mut path = String::new();
    for b in region.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            path.push(char::from(b));
        } else {
            let _ = write!(path, "%{b:02X}");
        }
    }
    format!("/api/v1/reports/{path}?period={period}&format={format}&lang={lang}")
}

fn selected(yes: bool) -> &'static str {
    if yes { " selected" } else { "" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_region_gets_a_link_per_format_with_the_chosen_period() {
        let regions = vec!["sea".to_owned(), "latam".to_owned()];
        let choice = Choice::of(&regions, None, Some("14d"), Some("zh"));
        let html = render(&regions, &choice);
        for region in &regions {
            for (format, _) in FORMATS {
                let url =
                    format!("/api/v1/reports/{region}?period=14d&amp;format={format}&amp;lang=zh");
                assert!(html.contains(&url), "{url} missing");
            }
        }
        assert!(html.contains("<option selected>14d</option>"));
    }

    #[test]
    fn unknown_choices_fall_back_and_one_region_can_be_picked() {
        let regions = vec!["sea".to_owned(), "latam".to_owned()];
        let choice = Choice::of(&regions, Some("sea"), Some("9y"), Some("<x>"));
        assert_eq!(
            choice,
            Choice { region: Some("sea".into()), period: "7d".into(), lang: "en".into() }
        );
        let html = render(&regions, &choice);
        assert!(html.contains("/api/v1/reports/sea?") && !html.contains("/api/v1/reports/latam?"));
        assert_eq!(
            report_url("a b/<c>", "7d", "md", "en"),
            "/api/v1/reports/a%20b%2F%3Cc%3E?period=7d&format=md&lang=en"
        );
    }
}
