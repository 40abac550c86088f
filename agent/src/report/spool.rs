//! A bounded on-disk queue of encoded reports, one file per report, named by sequence number.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use stallwatch_proto::report::{Report, encode_report};
use thiserror::Error;
use tracing::{debug, warn};

/// Default spool directory (`--spool-dir`).
pub const DEFAULT_SPOOL_DIR: &str = "/var/lib/stallwatch/spool";
/// Default cap on the spool's total size: 512 MiB, a day of reports of about 3 series each
/// (17 KB a series, its histograms in stored blocks).
pub const DEFAULT_MAX_BYTES: u64 = 512 * 1024 * 1024;
/// Default cap on the number of spooled reports: one day at the default 10 s interval.
pub const DEFAULT_MAX_REPORTS: usize = 24 * 60 * 6;
/// Most files kept in `corrupt/`; further corrupt files are deleted (still counted and logged),
/// so repeated corruption cannot fill the disk.
pub const MAX_QUARANTINED: usize = 16;
/// Most reports kept in `refused/`; past that the oldest there is deleted (counted).
pub const MAX_REFUSED: usize = 64;
/// Most reports held in memory because writing them to the spool failed; past that the
/// oldest of them is dropped (counted in [`SpoolStats::dropped_oldest`]).
pub const MAX_UNWRITTEN: usize = 64;

/// Subdirectory that corrupt report files are moved to.
pub(super) const QUARANTINE_DIR: &str = "corrupt";
/// Subdirectory for reports the collector refused because of one of its settings or the
/// clock (not for what they hold): kept for a person to look at or send again.
pub const REFUSED_DIR: &str = "refused";
const REPORT_EXT: &str = ".json";
const TEMP_EXT: &str = ".json.tmp";
/// Digits of the zero-padded sequence number in a file name (`u64::MAX` has 20).
const SEQ_DIGITS: usize = 20;

/// What the collector said about one report (docs/protocol.md, `POST /api/v1/reports`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// Stored by the collector: deleted from the spool.
    Accepted,
    /// The collector already had this very report: deleted from the spool like `Accepted`.
    Duplicate,
    /// The collector refused the report for good for what it holds (`malformed`,
    /// `agent-mismatch`, `unstorable`), with its reason: deleted and counted, so such a report
    /// cannot block the queue forever.
    Rejected(String),
    /// The collector refused the report because of one of its settings or the clock
    /// (`too-large`, `too-old`, `clock-skew`): moved to `refused/` (bounded) and counted, and
    /// the drain goes on.
    SetAside(String),
    /// The collector holds another report under this sequence number (409 `seq-conflict`: a
    /// restored snapshot reused numbers): kept, and draining stops until the caller
    /// [renumbers](Spool::renumber_from) it.
    Conflict,
    /// Anything else (5xx, no answer, a proxy's 404/408/429, an answer without the collector's
    /// JSON body, a refusal of the agent rather than the report): kept, and draining stops.
    RetryLater {
        /// What the answer was, for logs.
        reason: String,
        /// The answer's `Retry-After`, if it had one.
        after: Option<Duration>,
    },
}

impl SendOutcome {
    /// `RetryLater` without a `Retry-After`.
    pub fn retry_later(reason: impl Into<String>) -> Self {
        SendOutcome::RetryLater { reason: reason.into(), after: None }
    }
}

/// Counters since the spool was opened (process lifetime, like any Prometheus counter).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpoolStats {
    /// Reports pushed.
    pub spooled: u64,
    /// Reports acknowledged by the collector (accepted or duplicate) and deleted.
    pub sent: u64,
    /// Reports the collector rejected for good and that were deleted.
    pub rejected: u64,
    /// Reports the collector refused for one of its settings or the clock, moved to
    /// `refused/`.
    pub set_aside: u64,
    /// Reports deleted from a full `refused/` to make room.
    pub refused_dropped: u64,
    /// Reports given new sequence numbers because the collector held other reports under
    /// their old ones ([`Spool::renumber_from`]).
    pub renumbered: u64,
    /// Writes to the spool that failed (the report was held in memory instead).
    pub write_failures: u64,
    /// Reports deleted unsent to keep the spool within its limits.
    pub dropped_oldest: u64,
    /// Report files that were unreadable or did not parse (quarantined or deleted), or that
    /// vanished from the directory.
    pub corrupt: u64,
}

/// What one [`Spool::drain`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Drained {
    /// Reports the collector accepted.
    pub accepted: u64,
    /// Reports the collector already had.
    pub duplicates: u64,
    /// Reports the collector rejected (deleted).
    pub rejected: u64,
    /// Reports moved to `refused/`.
    pub set_aside: u64,
    /// Draining stopped on [`SendOutcome::RetryLater`] with reports left.
    pub retry_later: bool,
    /// Draining stopped on [`SendOutcome::Conflict`] for this report.
    pub conflict: Option<u64>,
}

/// Why a spool operation failed.
#[derive(Debug, Error)]
pub enum SpoolError {
    /// A file system operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done, e.g. `"writing"`.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// One encoded report is larger than the whole spool.
    #[error("report {seq} is {len} bytes, over the spool's {max}-byte cap")]
    TooLarge {
        /// The report's sequence number.
        seq: u64,
        /// Its encoded size.
        len: u64,
        /// The spool's `max_bytes`.
        max: u64,
    },
    /// `max_bytes` or `max_reports` is zero.
    #[error("spool limits must be above zero (max_bytes {max_bytes}, max_reports {max_reports})")]
    Limits {
        /// The configured byte cap.
        max_bytes: u64,
        /// The configured report cap.
        max_reports: usize,
    },
}

pub(super) fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> SpoolError {
    let path = path.to_owned();
    move |source| SpoolError::Io { action, path, source }
}

/// A bounded queue of encoded reports in a directory, oldest (lowest `seq`) first.
///
/// One file per report, `<seq:020>.json`, holding exactly the bytes to send. Only the index
/// (sequence number and size of each file) is in memory; files are read when sent. One agent
/// process per directory.
///
/// A report whose write fails is held in memory (at most [`MAX_UNWRITTEN`]) and written
/// before the next one; it is sent from memory meanwhile, in sequence order with the rest.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    max_reports: usize,
    /// seq -> encoded size, of the files on disk.
    index: BTreeMap<u64, u64>,
    bytes: u64,
    /// seq -> encoded report, of reports whose write failed.
    unwritten: BTreeMap<u64, Vec<u8>>,
    stats: SpoolStats,
    /// Where acknowledged reports go instead of being deleted, if anywhere.
    archive: Option<PathBuf>,
}

impl Spool {
    /// Opens (creating if needed) the spool in `dir`, holding at most `max_bytes` of reports
    /// and at most `max_reports` of them.
    ///
    /// Recovers what a previous run left: temporary files of an interrupted write are deleted;
    /// a file that a crash left half renumbered (its name's `seq` above the one inside) is
    /// finished; report files that are unreadable, over `max_bytes`, not a report, or whose
    /// `seq` is above their name's are moved to `corrupt/` and counted in
    /// [`SpoolStats::corrupt`]; the rest are queued in sequence order, dropping the oldest if
    /// they exceed the limits. Other files are left alone.
    pub fn open(
        dir: impl Into<PathBuf>,
        max_bytes: u64,
        max_reports: usize,
    ) -> Result<Spool, SpoolError> {
        let dir = dir.into();
        if max_bytes == 0 || max_reports == 0 {
            return Err(SpoolError::Limits { max_bytes, max_reports });
        }
        fs::create_dir_all(&dir).map_err(io_error("creating", &dir))?;
        let mut spool = Spool {
            dir,
            max_bytes,
            max_reports,
            index: BTreeMap::new(),
            bytes: 0,
            unwritten: BTreeMap::new(),
            stats: SpoolStats::default(),
            archive: None,
        };
        spool.recover()?;
        Ok(spool)
    }

    fn recover(&mut self) -> Result<(), SpoolError> {
        let mut found = Vec::new();
        let entries = fs::read_dir(&self.dir).map_err(io_error("listing", &self.dir))?;
        for entry in entries {
            let entry = entry.map_err(io_error("listing", &self.dir))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(stem) = name.strip_suffix(TEMP_EXT)
                && is_seq(stem)
            {
                let path = entry.path();
                fs::remove_file(&path).map_err(io_error("removing", &path))?;
                debug!(path = %path.display(), "removed a temporary report file left by a crash");
            } else if let Some(stem) = name.strip_suffix(REPORT_EXT)
                && is_seq(stem)
            {
                found.push((stem.parse::<u64>().ok(), entry.path()));
            }
        }
        for (seq, path) in found {
            let checked = match seq {
                Some(seq) => self.check_file(seq, &path).map(|len| (seq, len)),
                None => Err("sequence number out of range".to_string()),
            };
            match checked {
                Ok((seq, len)) => {
                    self.index.insert(seq, len);
                    self.bytes += len;
                }
                Err(problem) => self.quarantine(&path, &problem)?,
            }
        }
        self.make_room(None)?;
        sync_dir(&self.dir)
    }

    /// Checks that a spooled file is a complete report with the sequence number of its name;
    /// returns its size. A file holding a lower number is one a crash interrupted while
    /// [renumbering](Spool::renumber_from) it (renamed, not yet rewritten): it is finished.
    fn check_file(&self, seq: u64, path: &Path) -> Result<u64, String> {
        let bytes = read_capped(path, self.max_bytes).map_err(|e| e.to_string())?;
        let len = bytes.len() as u64;
        if len > self.max_bytes {
            return Err(format!("over the spool's {}-byte cap", self.max_bytes));
        }
        let mut report: Report = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
        if report.seq > seq {
            return Err(format!("holds report {} instead", report.seq));
        }
        if report.seq < seq {
            warn!(from = report.seq, to = seq, "finishing a renumbering a crash interrupted");
            report.seq = seq;
            let encoded = encode_report(&report);
            let name = report_name(seq);
            write_durably(&self.dir, &name, &format!("{name}.tmp"), &encoded)
                .map_err(|e| e.to_string())?;
            return Ok(encoded.len() as u64);
        }
        Ok(len)
    }

    /// Moves a corrupt file to `corrupt/` (or deletes it when that is full) and counts it.
    fn quarantine(&mut self, path: &Path, problem: &str) -> Result<(), SpoolError> {
        self.stats.corrupt += 1;
        let qdir = self.dir.join(QUARANTINE_DIR);
        fs::create_dir_all(&qdir).map_err(io_error("creating", &qdir))?;
        let kept = fs::read_dir(&qdir).map_err(io_error("listing", &qdir))?.count();
        let name = path.file_name().unwrap_or_default();
        if kept < MAX_QUARANTINED {
            let to = qdir.join(name);
            fs::rename(path, &to).map_err(io_error("quarantining", path))?;
            warn!(path = %path.display(), to = %to.display(), problem, "corrupt spooled report moved aside");
        } else {
            fs::remove_file(path).map_err(io_error("removing", path))?;
            warn!(path = %path.display(), problem, "corrupt spooled report deleted (quarantine full)");
        }
        Ok(())
    }

    /// Queues a report, durably: when this returns `Ok`, the report survives a crash.
    ///
    /// Reports held in memory by earlier failed writes are written first. The new report is
    /// written, and only then are the oldest reports deleted to bring the spool back within
    /// its limits (counted in [`SpoolStats::dropped_oldest`]), never the new one: disk use may
    /// exceed `max_bytes` by one report while it is written. A report with a `seq` already
    /// spooled replaces it.
    ///
    /// If a write fails, the error is returned and the report is held in memory (still
    /// queued and sent) until a later push or [`Spool::flush`] writes it. Fails without
    /// queueing or dropping anything if the report alone is over `max_bytes`.
    pub fn push(&mut self, report: &Report) -> Result<(), SpoolError> {
        let seq = report.seq;
        let encoded = encode_report(report);
        let len = encoded.len() as u64;
        if len > self.max_bytes {
            return Err(SpoolError::TooLarge { seq, len, max: self.max_bytes });
        }
        self.stats.spooled += 1;
        self.unwritten.remove(&seq);
        if let Err(e) = self.flush() {
            self.hold(seq, encoded);
            return Err(e);
        }
        self.store(seq, encoded)
    }

    /// Writes the reports held in memory to disk, oldest first, stopping at the first
    /// failure (returned; that report and the newer ones stay in memory).
    pub fn flush(&mut self) -> Result<(), SpoolError> {
        while let Some((seq, encoded)) = self.unwritten.pop_first() {
            self.store(seq, encoded)?;
        }
        Ok(())
    }

    /// Writes one report, then makes room; holds it in memory if the write fails.
    fn store(&mut self, seq: u64, encoded: Vec<u8>) -> Result<(), SpoolError> {
        let name = report_name(seq);
        if let Err(e) = write_durably(&self.dir, &name, &format!("{name}.tmp"), &encoded) {
            self.hold(seq, encoded);
            return Err(e);
        }
        let len = encoded.len() as u64;
        if let Some(old) = self.index.insert(seq, len) {
            self.bytes -= old;
        }
        self.bytes += len;
        self.make_room(Some(seq))
    }

    /// Keeps a report whose write failed in memory, within [`MAX_UNWRITTEN`].
    fn hold(&mut self, seq: u64, encoded: Vec<u8>) {
        self.stats.write_failures += 1;
        self.unwritten.insert(seq, encoded);
        while self.unwritten.len() > MAX_UNWRITTEN {
            let Some((dropped, _)) = self.unwritten.pop_first() else { break };
            self.stats.dropped_oldest += 1;
            warn!(seq = dropped, "too many reports failed to be written: dropped the oldest");
        }
    }

    /// Drops the oldest reports on disk, but never `keep`, until the spool is within its
    /// limits.
    fn make_room(&mut self, keep: Option<u64>) -> Result<(), SpoolError> {
        while self.index.len() > self.max_reports || self.bytes > self.max_bytes {
            let Some(seq) = self.index.keys().copied().find(|&s| Some(s) != keep) else { break };
            self.forget(seq);
            self.stats.dropped_oldest += 1;
            self.remove_file(seq)?;
            warn!(seq, "spool full: dropped the oldest report");
        }
        Ok(())
    }

    /// Keeps every acknowledged report in `dir` (created) instead of deleting it.
    pub fn with_archive(mut self, dir: impl Into<PathBuf>) -> Result<Self, SpoolError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(io_error("creating", &dir))?;
        self.archive = Some(dir);
        Ok(self)
    }

    /// Moves an acknowledged report into the archive, or deletes it without one. `held` is
    /// the report when it was in memory, not on disk.
    fn retire_file(&self, seq: u64, held: Option<Vec<u8>>) -> Result<(), SpoolError> {
        let Some(archive) = &self.archive else { return self.remove_file(seq) };
        let (from, to) = (self.dir.join(report_name(seq)), archive.join(report_name(seq)));
        if let Some(bytes) = held {
            return fs::write(&to, bytes).map_err(io_error("archiving", &to));
        }
        match fs::rename(&from, &to) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_error("archiving", &from)(e)),
            _ => Ok(()),
        }
    }

    fn remove_file(&self, seq: u64) -> Result<(), SpoolError> {
        let path = self.dir.join(report_name(seq));
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_error("removing", &path)(e)),
            _ => Ok(()),
        }
    }

    /// The oldest report and its bytes, read from disk (or memory, for a report whose write
    /// failed), or `None` when the spool is empty.
    ///
    /// A file that vanished from the directory is forgotten, and one whose size changed since
    /// it was spooled is quarantined; both are counted as corrupt. Any other read error is
    /// returned and the report stays queued.
    pub fn peek_oldest(&mut self) -> Result<Option<(u64, Vec<u8>)>, SpoolError> {
        loop {
            let on_disk = self.index.first_key_value().map(|(&seq, &len)| (seq, len));
            if let Some((&held, bytes)) = self.unwritten.first_key_value()
                && on_disk.is_none_or(|(seq, _)| held < seq)
            {
                return Ok(Some((held, bytes.clone())));
            }
            let Some((seq, len)) = on_disk else { return Ok(None) };
            let path = self.dir.join(report_name(seq));
            match read_capped(&path, self.max_bytes) {
                Ok(bytes) if bytes.len() as u64 == len => return Ok(Some((seq, bytes))),
                Ok(bytes) => {
                    self.forget(seq);
                    let problem = format!("size changed from {len} to {} bytes", bytes.len());
                    self.quarantine(&path, &problem)?;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    self.forget(seq);
                    self.stats.corrupt += 1;
                    warn!(seq, path = %path.display(), "spooled report vanished");
                }
                Err(e) => return Err(io_error("reading", &path)(e)),
            }
        }
    }

    /// Takes a report out of the queue: `None` if it was not queued, `Some(Some(bytes))` if
    /// it was held in memory, `Some(None)` if it is on disk.
    fn forget(&mut self, seq: u64) -> Option<Option<Vec<u8>>> {
        if let Some(len) = self.index.remove(&seq) {
            self.bytes -= len;
            return Some(None);
        }
        self.unwritten.remove(&seq).map(Some)
    }

    /// Deletes a report the collector acknowledged. Returns whether it was spooled.
    ///
    /// The directory is not synced: if a crash undoes the deletion, the report is sent again
    /// and the collector answers `Duplicate`.
    pub fn ack(&mut self, seq: u64) -> Result<bool, SpoolError> {
        let Some(held) = self.forget(seq) else { return Ok(false) };
        self.stats.sent += 1;
        self.retire_file(seq, held)?;
        Ok(true)
    }

    /// Applies the collector's answer for report `seq`: deletes it, or moves it to
    /// `refused/`, or keeps it (`RetryLater`, `Conflict`), and counts it. Returns whether to
    /// go on sending. For callers that send asynchronously (`peek_oldest`, send, `settle`,
    /// repeat); [`Spool::drain`] is that loop for a blocking sender.
    pub fn settle(&mut self, seq: u64, outcome: &SendOutcome) -> Result<bool, SpoolError> {
        match outcome {
            SendOutcome::Accepted | SendOutcome::Duplicate => {
                self.ack(seq)?;
                Ok(true)
            }
            SendOutcome::Rejected(reason) => {
                if self.forget(seq).is_some() {
                    self.stats.rejected += 1;
                    self.remove_file(seq)?;
                    warn!(seq, reason = %reason, "collector rejected a spooled report for good; dropped");
                }
                Ok(true)
            }
            SendOutcome::SetAside(reason) => {
                self.set_aside(seq, reason)?;
                Ok(true)
            }
            SendOutcome::Conflict | SendOutcome::RetryLater { .. } => Ok(false),
        }
    }

    /// Moves report `seq` to `refused/`, deleting the oldest there beyond [`MAX_REFUSED`].
    fn set_aside(&mut self, seq: u64, reason: &str) -> Result<(), SpoolError> {
        let Some(held) = self.forget(seq) else { return Ok(()) };
        self.stats.set_aside += 1;
        let rdir = self.dir.join(REFUSED_DIR);
        fs::create_dir_all(&rdir).map_err(io_error("creating", &rdir))?;
        let to = rdir.join(report_name(seq));
        match held {
            Some(bytes) => fs::write(&to, bytes).map_err(io_error("writing", &to))?,
            None => {
                let from = self.dir.join(report_name(seq));
                fs::rename(&from, &to).map_err(io_error("setting aside", &from))?;
            }
        }
        warn!(seq, reason, path = %to.display(), "collector refused a report for one of its settings; kept aside");
        let mut kept: Vec<PathBuf> = fs::read_dir(&rdir)
            .map_err(io_error("listing", &rdir))?
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_str().is_some_and(|n| seq_of_name(n).is_some()))
            .map(|e| e.path())
            .collect();
        kept.sort();
        for old in &kept[..kept.len().saturating_sub(MAX_REFUSED)] {
            fs::remove_file(old).map_err(io_error("removing", old))?;
            self.stats.refused_dropped += 1;
            warn!(path = %old.display(), "{REFUSED_DIR}/ full: deleted its oldest report");
        }
        Ok(())
    }

    /// Gives every queued report numbered `from` or above a new number, in order: `first`
    /// (raised above every number queued), `first + 1`, ... Returns the number after the last
    /// one given. For a [`SendOutcome::Conflict`]: the collector holds other reports under
    /// these numbers, so they are sent again under numbers it has not seen.
    ///
    /// Crash-safe: a file is renamed to its new number (and the directory synced) before its
    /// content is rewritten, so a crash leaves it either under its old name or half done,
    /// which [`Spool::open`] finishes; never under both numbers.
    pub fn renumber_from(&mut self, from: u64, first: u64) -> Result<u64, SpoolError> {
        let mut next = first.max(self.highest_seq().map_or(0, |s| s.saturating_add(1)));
        let mut old: Vec<u64> = self.index.range(from..).map(|(&s, _)| s).collect();
        old.extend(self.unwritten.range(from..).map(|(&s, _)| s));
        old.sort_unstable();
        for seq in old {
            let new = next;
            next = next.saturating_add(1);
            let held = self.unwritten.remove(&seq);
            let old_path = self.dir.join(report_name(seq));
            let bytes = match &held {
                Some(bytes) => bytes.clone(),
                None => match read_capped(&old_path, self.max_bytes) {
                    Ok(bytes) => bytes,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        self.forget(seq);
                        self.stats.corrupt += 1;
                        warn!(seq, "spooled report vanished");
                        continue;
                    }
                    Err(e) => return Err(io_error("reading", &old_path)(e)),
                },
            };
            let mut report: Report = match serde_json::from_slice(&bytes) {
                Ok(r) => r,
                Err(e) => {
                    self.forget(seq);
                    self.quarantine(&old_path, &e.to_string())?;
                    continue;
                }
            };
            report.seq = new;
            let encoded = encode_report(&report);
            self.stats.renumbered += 1;
            if held.is_some() {
                self.unwritten.insert(new, encoded);
                continue;
            }
            let new_path = self.dir.join(report_name(new));
            fs::rename(&old_path, &new_path).map_err(io_error("renaming", &old_path))?;
            sync_dir(&self.dir)?;
            self.forget(seq);
            self.store(new, encoded)?;
        }
        Ok(next)
    }

    /// The highest sequence number queued.
    pub fn highest_seq(&self) -> Option<u64> {
        let disk = self.index.last_key_value().map(|(&s, _)| s);
        let held = self.unwritten.last_key_value().map(|(&s, _)| s);
        disk.max(held)
    }

    /// Sends spooled reports oldest first until the spool is empty or `send` answers
    /// [`SendOutcome::RetryLater`] or [`SendOutcome::Conflict`] or fails (the report stays
    /// queued either way; a failure is returned with its `seq`).
    pub fn drain(
        &mut self,
        mut send: impl FnMut(&[u8]) -> anyhow::Result<SendOutcome>,
    ) -> anyhow::Result<Drained> {
        let mut drained = Drained::default();
        while let Some((seq, bytes)) = self.peek_oldest()? {
            let outcome = send(&bytes).with_context(|| format!("sending spooled report {seq}"))?;
            match &outcome {
                SendOutcome::Accepted => drained.accepted += 1,
                SendOutcome::Duplicate => drained.duplicates += 1,
                SendOutcome::Rejected(_) => drained.rejected += 1,
                SendOutcome::SetAside(_) => drained.set_aside += 1,
                SendOutcome::Conflict => drained.conflict = Some(seq),
                SendOutcome::RetryLater { .. } => drained.retry_later = true,
            }
            if !self.settle(seq, &outcome)? {
                break;
            }
        }
        Ok(drained)
    }

    /// Reports queued (on disk and held in memory).
    pub fn len(&self) -> usize {
        self.index.len() + self.unwritten.len()
    }

    /// Whether no report is queued.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty() && self.unwritten.is_empty()
    }

    /// Reports held in memory because writing them failed.
    pub fn unwritten(&self) -> usize {
        self.unwritten.len()
    }

    /// Total size of the queued reports' files.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Counters since the spool was opened.
    pub fn stats(&self) -> SpoolStats {
        self.stats
    }

    /// The spool directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// `<seq:020>.json`.
pub(super) fn report_name(seq: u64) -> String {
    format!("{seq:0width$}{REPORT_EXT}", width = SEQ_DIGITS)
}

/// The sequence number in a report file name (spooled, temporary or quarantined), if any.
pub(super) fn seq_of_name(name: &str) -> Option<u64> {
    let (stem, rest) = name.split_at_checked(SEQ_DIGITS)?;
    if is_seq(stem) && rest.starts_with(REPORT_EXT) { stem.parse().ok() } else { None }
}

fn is_seq(stem: &str) -> bool {
    stem.len() == SEQ_DIGITS && stem.bytes().all(|b| b.is_ascii_digit())
}

/// Reads at most `cap + 1` bytes, so a file that grew cannot cost unbounded memory; the caller
/// treats more than `cap` as too large.
pub(super) fn read_capped(path: &Path, cap: u64) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    File::open(path)?.take(cap.saturating_add(1)).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Writes `bytes` to `dir/name` so that a crash leaves either the old file or the new one,
/// complete: write `dir/temp`, sync it, rename it over `name`, sync the directory.
pub(super) fn write_durably(
    dir: &Path,
    name: &str,
    temp: &str,
    bytes: &[u8],
) -> Result<(), SpoolError> {
    let temp_path = dir.join(temp);
    let path = dir.join(name);
    let written = (|| {
        let mut file = File::create(&temp_path).map_err(io_error("creating", &temp_path))?;
        file.write_all(bytes).map_err(io_error("writing", &temp_path))?;
        file.sync_all().map_err(io_error("syncing", &temp_path))?;
        fs::rename(&temp_path, &path).map_err(io_error("renaming", &temp_path))
    })();
    if written.is_err() {
        // Best effort: a leftover is also removed on the next open.
        let _ = fs::remove_file(&temp_path);
    }
    written?;
    sync_dir(dir)
}

/// Makes renames and deletions in `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_error("syncing", dir))
}
