//! Where a TOML config file's problems are, for both binaries: field paths
//! (`plans[0].probes[1].every`) mapped to the line and column of their value, built from toml's
//! spanned document tree, and [`Problem`]s that print as `FILE:LINE:COLUMN: FIELD: message`.
//!
//! [`deserialize`] parses and deserializes a document; its error's span becomes the path of the
//! field it points at. Checks that run after deserialization name a path;
//! [`Locations::problem`] locates it at that field's value.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue, Deserializer};

/// A 1-based line and column (columns count characters, as editors do).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

impl Position {
    /// The start of the file.
    pub const START: Position = Position { line: 1, column: 1 };

    /// The position of byte `offset` in `text` (clamped to the text).
    pub fn of_offset(text: &str, offset: usize) -> Position {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &text[..offset];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Position {
            line: before.bytes().filter(|&b| b == b'\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }
}

/// One thing wrong with a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file (or other origin) the configuration came from.
    pub origin: String,
    /// Where in the file.
    pub position: Position,
    /// Field path, e.g. `plans[0].probes[1].transport`; empty for the document as a whole.
    pub path: String,
    /// What is wrong, lowercase, no trailing period.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Position { line, column } = self.position;
        write!(f, "{}:{line}:{column}: ", self.origin)?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for Problem {}

/// Parses TOML `text` and deserializes it into `T`. The first syntax or schema error (unknown
/// field, wrong type, bad duration) comes back as a [`Problem`] naming `origin`, the line and
/// column its span starts at, and the path of the field there. On success, also returns where
/// every field is, for checks after deserialization.
pub fn deserialize<T: DeserializeOwned>(
    text: &str,
    origin: &str,
) -> Result<(T, Locations), Problem> {
    let problem = |span: Option<Range<usize>>, path: &str, message: &str| Problem {
        origin: origin.to_owned(),
        position: span.map_or(Position::START, |s| Position::of_offset(text, s.start)),
        path: path.to_owned(),
        message: message.trim().to_owned(),
    };
    let root = DeTable::parse(text).map_err(|e| problem(e.span(), "", e.message()))?;
    let (locations, spans) = index(&root, text, origin);
    let value = T::deserialize(Deserializer::from(root)).map_err(|e| {
        let path = e.span().and_then(|s| spans.path_at(&s).map(str::to_owned)).unwrap_or_default();
        problem(e.span(), &path, e.message())
    })?;
    Ok((value, locations))
}

/// One key/value of the document.
#[derive(Debug, Clone)]
struct Entry {
    /// Field path, e.g. `plans[0].probes[1].every`.
    path: String,
    /// Span of the key, for table entries.
    key: Option<Range<usize>>,
    /// Span of the value (for `[table]` and `[[array]]` headers: the header).
    value: Range<usize>,
}

/// Field paths of a parsed document and where each one is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Locations {
    origin: String,
    positions: HashMap<String, Position>,
}

/// Builds the path index of `root`; `text` is the document it was parsed from.
fn index(root: &Spanned<DeTable<'_>>, text: &str, origin: &str) -> (Locations, Spans) {
    let mut entries = Vec::new();
    walk_table(root.get_ref(), "", &mut entries);
    let positions = entries
        .iter()
        .map(|e| (e.path.clone(), Position::of_offset(text, e.value.start)))
        .collect();
    (Locations { origin: origin.to_owned(), positions }, Spans { entries })
}

fn walk_table(table: &DeTable<'_>, prefix: &str, out: &mut Vec<Entry>) {
    for (key, value) in table.iter() {
        let path = join(prefix, key.get_ref());
        out.push(Entry { path: path.clone(), key: Some(key.span()), value: value.span() });
        walk_value(value, &path, out);
    }
}

fn walk_value(value: &Spanned<DeValue<'_>>, path: &str, out: &mut Vec<Entry>) {
    match value.get_ref() {
        DeValue::Table(t) => walk_table(t, path, out),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let item_path = format!("{path}[{i}]");
                out.push(Entry { path: item_path.clone(), key: None, value: item.span() });
                walk_value(item, &item_path, out);
            }
        }
        _ => {}
    }
}

/// `prefix.key`, quoting keys that are not bare TOML keys.
fn join(prefix: &str, key: &str) -> String {
    let bare =
        !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    let key = if bare { key.to_owned() } else { format!("{key:?}") };
    if prefix.is_empty() { key } else { format!("{prefix}.{key}") }
}

/// Byte spans of every key and value, used only while parsing.
struct Spans {
    entries: Vec<Entry>,
}

impl Spans {
    /// The path of the field a deserialization error's span points at: the deepest entry whose
    /// key or value is exactly that span (unknown field: the key; bad value: the value; missing
    /// field: the table), else the innermost value containing its start.
    fn path_at(&self, span: &Range<usize>) -> Option<&str> {
        let depth = |e: &Entry| e.path.matches(['.', '[']).count();
        let exact = self
            .entries
            .iter()
            .filter(|e| e.key.as_ref() == Some(span) || &e.value == span)
            .max_by_key(|e| depth(e));
        let containing = || {
            self.entries
                .iter()
                .filter(|e| e.value.start <= span.start && span.start < e.value.end)
                .min_by_key(|e| (e.value.len(), usize::MAX - depth(e)))
        };
        exact.or_else(containing).map(|e| e.path.as_str())
    }
}

impl Locations {
    /// Locations for a config that was not parsed from a file (everything at 1:1).
    pub fn unknown(origin: &str) -> Locations {
        Locations { origin: origin.to_owned(), positions: HashMap::new() }
    }

    /// The name of the file (or other origin) the config came from.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Where the value at `path` is; a field that is absent (defaulted) is reported at its
    /// nearest present parent, and the start of the file if none is present.
    pub fn position(&self, path: &str) -> Position {
        let mut path = path;
        loop {
            if let Some(p) = self.positions.get(path) {
                return *p;
            }
            match path.rfind(['.', '[']) {
                Some(i) => path = &path[..i],
                None => return Position::START,
            }
        }
    }

    /// A problem with the field at `path`, located at its value (or nearest present parent).
    pub fn problem(&self, path: &str, message: impl Into<String>) -> Problem {
        Problem {
            origin: self.origin.clone(),
            position: self.position(path),
            path: path.to_owned(),
            message: message.into(),
        }
    }

    /// Whether `path` was written in the file (rather than defaulted).
    pub fn is_present(&self, path: &str) -> bool {
        self.positions.contains_key(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_lines_and_characters() {
        let text = "a = 1\nbé = \"x\"\n";
        assert_eq!(Position::of_offset(text, 0), Position { line: 1, column: 1 });
        assert_eq!(Position::of_offset(text, 6), Position { line: 2, column: 1 });
        // "bé = " is 6 bytes but 5 characters.
        assert_eq!(Position::of_offset(text, 12), Position { line: 2, column: 6 });
        // Inside a multi-byte character, and past the end: clamped.
        assert_eq!(Position::of_offset(text, 8), Position { line: 2, column: 2 });
        assert_eq!(Position::of_offset(text, 999), Position { line: 3, column: 1 });
    }

    #[test]
    fn paths_index_nested_tables_and_arrays() {
        let text = "[[plans]]\nname = \"a\"\n[[plans.probes]]\nname = \"p\"\n\
                    [[plans.probes]]\nname = \"q\"\nevery = \"1m\"\n\"odd key\" = 1\n";
        let root = DeTable::parse(text).unwrap();
        let (locs, spans) = index(&root, text, "t.toml");
        assert_eq!(locs.position("plans[0].name"), Position { line: 2, column: 8 });
        assert_eq!(locs.position("plans[0].probes[1]"), Position { line: 5, column: 1 });
        assert_eq!(locs.position("plans[0].probes[1].every"), Position { line: 7, column: 9 });
        // Absent fields fall back to their parent.
        assert_eq!(locs.position("plans[0].probes[1].duration"), Position { line: 5, column: 1 });
        assert_eq!(locs.position("storage.path"), Position::START);
        assert!(locs.is_present("plans[0].probes[1].\"odd key\""));
        let every = text.find("\"1m\"").unwrap();
        assert_eq!(spans.path_at(&(every..every + 4)), Some("plans[0].probes[1].every"));
        let header = text.rfind("[[plans.probes]]").unwrap();
        assert_eq!(spans.path_at(&(header..header + 16)), Some("plans[0].probes[1]"));
    }

    #[test]
    fn deserialize_names_file_line_column_and_field() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)] // Read only through Debug.
        struct Inner {
            every: u64,
        }
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Doc {
            inner: Vec<Inner>,
        }
        let text = "[[inner]]\nevery = 1\n[[inner]]\nevery = \"x\"\n";
        let e = deserialize::<Doc>(text, "t.toml").unwrap_err();
        assert_eq!(
            (e.position, e.path.as_str()),
            (Position { line: 4, column: 9 }, "inner[1].every")
        );
        assert!(e.to_string().starts_with("t.toml:4:9: inner[1].every: invalid type"), "{e}");
        let e = deserialize::<Doc>("[[inner]]\neveryy = 1\n", "t.toml").unwrap_err();
        assert!(e.to_string().starts_with("t.toml:2:1: inner[0].everyy: unknown field"), "{e}");
        // A syntax error has a position but no field.
        let e = deserialize::<Doc>("[[inner]\n", "t.toml").unwrap_err();
        assert_eq!((e.position.line, e.path.as_str()), (1, ""), "{e}");
        let (doc, locations) = deserialize::<Doc>("\n[[inner]]\nevery = 3\n", "t.toml").unwrap();
        assert_eq!(doc.inner[0].every, 3);
        assert_eq!(locations.position("inner[0].every"), Position { line: 3, column: 9 });
    }
}
