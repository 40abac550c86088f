//! Reading and writing the PKI's files: size-capped reads, atomic writes with explicit
//! permissions, PEM encoding and RFC 3339 timestamps.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

use super::PkiError;

/// The largest PKI file read: certificates, keys, bundles and small JSON lists.
pub(crate) const MAX_SMALL_FILE: u64 = 1024 * 1024;
/// The largest `issued.json` / `revoked.json` read (about 50k agents).
pub(crate) const MAX_LIST_FILE: u64 = 64 * 1024 * 1024;

/// Permissions of files that hold a private key.
pub(crate) const MODE_SECRET: u32 = 0o600;
/// Permissions of public files (certificates, lists).
pub(crate) const MODE_PUBLIC: u32 = 0o644;

/// Reads a whole file of at most `cap` bytes.
pub(crate) fn read_capped(path: &Path, cap: u64) -> Result<Vec<u8>, PkiError> {
    let read_err = |source| PkiError::Read { path: path.to_path_buf(), source };
    let file = fs::File::open(path).map_err(read_err)?;
    let mut buf = Vec::new();
    file.take(cap + 1).read_to_end(&mut buf).map_err(read_err)?;
    if buf.len() as u64 > cap {
        return Err(PkiError::File {
            path: path.to_path_buf(),
            reason: format!("larger than {cap} bytes; not a stallwatch PKI file"),
        });
    }
    Ok(buf)
}

/// Reads a whole UTF-8 text file of at most `cap` bytes.
pub(crate) fn read_text(path: &Path, cap: u64) -> Result<String, PkiError> {
    String::from_utf8(read_capped(path, cap)?)
        .map_err(|_| PkiError::File { path: path.to_path_buf(), reason: "not UTF-8 text".into() })
}

/// Replaces `path` with `bytes` atomically (a temporary file in the same directory, synced,
/// then renamed), so a reader such as the collector sees the old or the new file, never a
/// half-written one. The file gets `mode` on Unix.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), PkiError> {
    let write_err = |source| PkiError::Write { path: path.to_path_buf(), source };
    let file_name = path.file_name().ok_or_else(|| {
        write_err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file name"))
    })?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let _ = fs::remove_file(&tmp);
    let result = (|| {
        let mut file = open_new(&tmp, mode)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        // Make the rename durable; not every filesystem supports syncing a directory.
        if let Ok(d) = fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(write_err)
}

#[cfg(unix)]
fn open_new(path: &Path, mode: u32) -> std::io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(path)
}

#[cfg(not(unix))]
fn open_new(path: &Path, _mode: u32) -> std::io::Result<fs::File> {
    fs::OpenOptions::new().write(true).create_new(true).open(path)
}

/// Creates a directory (and its parents) that only its owner can enter, for the CA's key.
pub(crate) fn create_private_dir(dir: &Path) -> Result<(), PkiError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(|source| PkiError::Write { path: dir.to_path_buf(), source })
}

/// Whether a file can be read by anyone but its owner (Unix); `None` if unknown.
pub(crate) fn readable_by_others(path: &Path) -> Option<bool> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(path).ok().map(|m| m.permissions().mode() & 0o077 != 0)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

/// One PEM block, with `#` comment lines above it.
pub(crate) fn pem_block(comments: &[String], label: &str, der: &[u8]) -> String {
    let mut out = String::new();
    for c in comments {
        out.push_str("# ");
        out.push_str(c);
        out.push('\n');
    }
    out.push_str(&format!("-----BEGIN {label}-----\n"));
    let b64 = base64(der);
    for line in b64.as_bytes().chunks(64) {
        // base64 output is ASCII.
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `2025-11-26T14:57:00Z`: RFC 3339 in UTC, whole seconds.
pub fn rfc3339(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Parses what [`rfc3339`] writes.
pub(crate) fn parse_rfc3339(s: &str) -> Option<OffsetDateTime> {
    let b = s.as_bytes();
    if b.len() != 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' {
        return None;
    }
    if b[16] != b':' || b[19] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = s.get(r)?;
        part.bytes().all(|c| c.is_ascii_digit()).then(|| part.parse().ok())?
    };
    let date = Date::from_calendar_date(
        i32::try_from(num(0..4)?).ok()?,
        Month::try_from(u8::try_from(num(5..7)?).ok()?).ok()?,
        u8::try_from(num(8..10)?).ok()?,
    )
    .ok()?;
    let time = Time::from_hms(
        u8::try_from(num(11..13)?).ok()?,
        u8::try_from(num(14..16)?).ok()?,
        u8::try_from(num(17..19)?).ok()?,
    )
    .ok()?;
    Some(PrimitiveDateTime::new(date, time).assume_utc())
}

/// Serde for `OffsetDateTime` as an RFC 3339 string (the `time` crate's own serde and
/// formatting features are not enabled in this crate).
pub(crate) mod rfc3339_serde {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};
    use time::OffsetDateTime;

    pub(crate) fn serialize<S: Serializer>(t: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::rfc3339(*t))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OffsetDateTime, D::Error> {
        let s = String::deserialize(d)?;
        super::parse_rfc3339(&s).ok_or_else(|| {
            D::Error::custom(format!("invalid time {s:?}, expected the form 2025-01-31T23:59:59Z"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), expected);
        }
    }

    #[test]
    fn rfc3339_round_trips() {
        let t = parse_rfc3339("2035-02-28T23:59:07Z").unwrap();
        assert_eq!(rfc3339(t), "2035-02-28T23:59:07Z");
        for bad in [
            "2035-02-30T00:00:00Z",
            "2035-02-28 23:59:07Z",
            "2035-02-28T23:59:07",
            "+035-02-28T23:59:07Z",
        ] {
            assert!(parse_rfc3339(bad).is_none(), "{bad}");
        }
    }
}
