//! The collector's web UI and the rules of its listener, without I/O: the server's handlers
//! (`server/web.rs`) gather the data, these modules turn it into pages and decide who may ask.
//!
//! - `layout`: the shared page frame (nav, inline CSS, security headers) and escaping.
//! - `svg`: inline SVG sparklines.
//! - `fleet`, `cohorts`, `alerts`, `reports`: one file per page, each a view model built
//!   from plain data and its renderer.
//! - `access`: the listener's Host allow-list, bearer token, POST header and render gate.
//!
//! Pages are server-rendered HTML with inline CSS and SVG: no scripts, no fonts, nothing
//! fetched from anywhere (the Content-Security-Policy in `layout` forbids it), and every value
//! from agents or the config is escaped.

pub mod access;
pub mod alerts;
pub mod cohorts;
pub mod fleet;
pub mod layout;
pub mod reports;
pub mod svg;
