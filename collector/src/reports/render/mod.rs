//! Renderers: one per format, each laying out a [`Report`] and computing nothing.

mod csv;
mod html;
mod markdown;
mod svg;

use serde::{Deserialize, Serialize};

pub use html::esc as escape_html;

use super::report::Report;

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// One self-contained HTML file (inline CSS and SVG, no scripts), for reading and printing.
    Html,
    /// Markdown, for tickets.
    Md,
    /// CSV, for spreadsheets: one row per slice of data.
    Csv,
    /// JSON, for tools: the whole report.
    Json,
}

impl Format {
    /// The HTTP content type.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Html => "text/html; charset=utf-8",
            Format::Md => "text/markdown; charset=utf-8",
            Format::Csv => "text/csv; charset=utf-8",
            Format::Json => "application/json",
        }
    }

    /// The usual file extension.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Html => "html",
            Format::Md => "md",
            Format::Csv => "csv",
            Format::Json => "json",
        }
    }
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "html" => Ok(Format::Html),
            "md" | "markdown" => Ok(Format::Md),
            "csv" => Ok(Format::Csv),
            "json" => Ok(Format::Json),
            other => Err(format!("unknown format {other:?}, expected html, md, csv or json")),
        }
    }
}

/// `report` in `format`.
pub fn render(report: &Report, format: Format) -> String {
    match format {
        Format::Html => html::render(report),
        Format::Md => markdown::render(report),
        Format::Csv => csv::render(report),
        Format::Json => {
            let mut s = serde_json::to_string_pretty(report).unwrap_or_default();
            s.push('\n');
            s
        }
    }
}

/// A figure as text (`-` when absent).
pub(crate) fn opt(value: Option<f64>, f: impl Fn(f64) -> String) -> String {
    value.map_or_else(|| "-".to_owned(), f)
}
