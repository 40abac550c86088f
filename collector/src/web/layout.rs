//! The frame every page shares: head, inline CSS, nav and footer, and the response headers
//! that keep pages from loading anything.

pub use crate::reports::render::escape_html as escape;

/// `Content-Security-Policy` of every page: inline styles and nothing else, no scripts, no
/// requests, forms only to the collector itself, never framed.
pub const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; \
                       form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// The pages, in nav order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    /// `/`.
    Fleet,
    /// `/cohorts`.
    Cohorts,
    /// `/alerts`.
    Alerts,
    /// `/reports`.
    Reports,
}

impl Page {
    /// Every page, in nav order.
    pub const ALL: [Page; 4] = [Page::Fleet, Page::Cohorts, Page::Alerts, Page::Reports];

    /// Its path.
    pub fn path(self) -> &'static str {
        match self {
            Page::Fleet => "/",
            Page::Cohorts => "/cohorts",
            Page::Alerts => "/alerts",
            Page::Reports => "/reports",
        }
    }

    /// Its name in the nav and title.
    pub fn title(self) -> &'static str {
        match self {
            Page::Fleet => "Fleet",
            Page::Cohorts => "Cohorts",
            Page::Alerts => "Alerts",
            Page::Reports => "Reports",
        }
    }
}

const STYLE: &str = "\
:root{--fg:#1d2330;--muted:#5f6b7a;--line:#e3e7ee;--bg:#f6f8fb;--bad:#b42318;--badbg:#fde8e6;\
--warn:#8a5a00;--warnbg:#fff4d6;--ok:#146c2e;--accent:#2458c6}\
*{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;\
color:var(--fg);background:var(--bg)}\
header{background:#17202f;color:#fff;display:flex;align-items:center;gap:24px;padding:0 24px}\
header b{font-size:16px;letter-spacing:.02em;padding:12px 0}\
nav a{color:#c9d3e3;text-decoration:none;padding:14px 10px;display:inline-block}\
nav a.on{color:#fff;box-shadow:inset 0 -3px 0 #6aa1ff}nav a:hover{color:#fff}\
main{padding:20px 24px;max-width:1400px}h1{font-size:20px;margin:0 0 12px}\
h2{font-size:16px;margin:24px 0 8px}.muted{color:var(--muted)}\
table{border-collapse:collapse;background:#fff;border:1px solid var(--line);width:100%}\
th,td{padding:6px 10px;border-bottom:1px solid var(--line);text-align:left;vertical-align:middle}\
th{font-weight:600;background:#fafbfd;color:var(--muted);font-size:12px;text-transform:uppercase;\
letter-spacing:.03em}td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}\
td.k{white-space:nowrap}tr.stale td{background:var(--badbg);color:var(--bad);font-weight:600}\
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:700}\
.P0{background:#b42318;color:#fff}.P1{background:#e8590c;color:#fff}.P2{background:#f2c94c;color:#3d2c00}\
.none{background:#dfe3ea;color:#394150}.okb{background:#d9f2e0;color:var(--ok)}\
.stat{display:inline-block;background:#fff;border:1px solid var(--line);border-radius:6px;\
padding:8px 14px;margin:0 8px 8px 0}.stat b{display:block;font-size:20px}\
.spark{display:flex;align-items:center;gap:8px;justify-content:flex-end}\
.spark svg{display:block}.over{color:var(--bad);font-weight:700}\
ul.ev{margin:0;padding-left:18px}a{color:var(--accent)}\
form{background:#fff;border:1px solid var(--line);padding:12px;display:flex;gap:16px;\
align-items:end;flex-wrap:wrap}label{display:flex;flex-direction:column;font-size:12px;color:var(--muted)}\
select,button{font:inherit;padding:4px 8px}footer{padding:16px 24px;color:var(--muted);font-size:12px}\
@media print{header,footer,form{display:none}}";

/// A whole page: `title`, the nav with `current` marked, `body`, and a refresh every
/// `refresh_s` seconds when given (meta refresh: the pages have no scripts).
pub fn page(current: Page, title: &str, refresh_s: Option<u32>, body: &str) -> String {
    let mut out = String::with_capacity(body.len() + STYLE.len() + 1024);
    out.push_str("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">");
    if let Some(s) = refresh_s {
        out.push_str(&format!("<meta http-equiv=\"refresh\" content=\"{s}\">"));
    }
    out.push_str(&format!("<title>{} · stallwatch</title><style>", escape(title)));
    out.push_str(STYLE);
    out.push_str("</style></head><body><header><b>stallwatch</b><nav>");
    for p in Page::ALL {
        let on = if p == current { " class=\"on\" aria-current=\"page\"" } else { "" };
        out.push_str(&format!("<a href=\"{}\"{on}>{}</a>", p.path(), p.title()));
    }
    out.push_str("<a href=\"/metrics\">/metrics</a></nav></header><main>");
    out.push_str(body);
    out.push_str(
        "</main><footer>stallwatch collector · server-rendered, no scripts · \
         <a href=\"/api/v1/agents\">agents JSON</a> · <a href=\"/api/v1/alerts\">alerts JSON</a>\
         </footer></body></html>\n",
    );
    out
}

/// `12 s`, `4 min`, `3 h 5 min`, `2 d 4 h`: an age for people.
pub fn age(seconds: u64) -> String {
    match seconds {
        s if s < 120 => format!("{s} s"),
        s if s < 3600 => format!("{} min", s / 60),
        s if s < 86_400 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        s => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_has_the_nav_with_its_own_entry_marked() {
        for p in Page::ALL {
            let html = page(p, "<t>", None, "<p>body</p>");
            assert!(html.contains("<title>&lt;t&gt; · stallwatch</title>"), "title escaped");
            for other in Page::ALL {
                assert!(html.contains(&format!("href=\"{}\"", other.path())));
            }
            let marked = format!("href=\"{}\" class=\"on\"", p.path());
            assert!(html.contains(&marked));
            assert_eq!(html.matches("class=\"on\"").count(), 1);
            assert!(!html.contains("<script") && !html.contains("http://"), "loads nothing");
        }
    }

    #[test]
    fn ages_read_as_people_say_them() {
        assert_eq!(age(5), "5 s");
        assert_eq!(age(600), "10 min");
        assert_eq!(age(3 * 3600 + 300), "3 h 5 min");
        assert_eq!(age(2 * 86_400 + 4 * 3600), "2 d 4 h");
    }
}
