//! The stallwatch collector: takes agents' interval reports over mutual TLS, merges them into
//! per-cohort series, exports Prometheus metrics, raises alerts and writes regional reports.
//!
//! Built so far: the fleet PKI (`pki`), the configuration file (`config`), the history store
//! (`store`), per-cohort series and their exposition (`series`), the collector's own telemetry
//! (`telemetry`), the server (`server`: ingest, plans, `/metrics`, reports over HTTP), proactive
//! alerts (`alerts`) and regional reports (`reports`).

pub mod alerts;
pub mod clock;
pub mod config;
pub mod demo;
pub mod pki;
pub mod reports;
pub mod series;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod web;

/// The collector's global allocator: mimalloc, built not to ask for transparent huge pages (and
/// [`keep_off_huge_pages`] keeps the kernel from giving them). Its binary and the benches that
/// run the server (`ingest_http`, `ingest_store`) install this type, so the benches measure what
/// runs. Over HTTPS, glibc's malloc cost about a quarter of the server's CPU per report (buffers
/// are freed on other threads than the ones that allocated them). With huge pages mimalloc
/// gained little: memory it had returned to the kernel came back as fresh 2 MiB pages to zero
/// (BENCHMARKS.md, "mimalloc, without transparent huge pages").
pub use mimalloc::MiMalloc as Allocator;

/// Keeps this process off transparent huge pages, whatever the host's setting (`always` gives
/// them to any large enough mapping, mimalloc's arenas included): with them, ingest over HTTPS
/// ran about a fifth slower, the kernel zeroing a 2 MiB page each time mimalloc reused memory it
/// had returned. Called first in `main`, and by the benches that run the server. The flag is
/// the process's, checked by the kernel at each page fault, so mappings made before the call
/// are covered too (`THP_enabled: 0` in `/proc/PID/status`). A refusal (an old kernel, a
/// seccomp filter) only costs speed, so it is ignored.
pub fn keep_off_huge_pages() {
    #[cfg(target_os = "linux")]
    let _ = rustix::thread::disable_transparent_huge_pages(true);
}
