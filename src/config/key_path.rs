//! Key paths of configuration errors (`target[shop].checker[nlb].timeout`): where an error is
//! ([`Location`]), the segments of a path serde reports ([`KeySegment`]), and deserialization
//! that keeps the path of what failed. Shared by loading and compiling.

use std::path::{Path, PathBuf};

use config::{Value, ValueKind};
use serde::de::DeserializeOwned;

/// Where an error is: file, key prefix, and a note for values set by environment variables.
#[derive(Debug, Clone, Default)]
pub(super) struct Location {
    /// The file the key is in, when known.
    pub(super) file: Option<PathBuf>,
    /// The key path of the table the key is in.
    pub(super) prefix: String,
    /// Added to every message, e.g. the environment variable that set the value.
    pub(super) note: Option<String>,
}

impl Location {
    pub(super) fn new(file: &Path, prefix: impl Into<String>) -> Location {
        Location { file: Some(file.to_path_buf()), prefix: prefix.into(), note: None }
    }

    /// The full path of `key` in this table.
    pub(super) fn key(&self, key: &str) -> String {
        join_key(&self.prefix, key)
    }

    /// The location of the table `key` in this one.
    pub(super) fn child(&self, key: &str) -> Location {
        Location { file: self.file.clone(), prefix: self.key(key), note: self.note.clone() }
    }
}

fn join_key(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else if key.is_empty() {
        prefix.to_owned()
    } else if key.starts_with('[') {
        format!("{prefix}{key}")
    } else {
        format!("{prefix}.{key}")
    }
}

/// One segment of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum KeySegment {
    /// A table key.
    Key(String),
    /// An array index.
    Index(usize),
}

/// `segments` as a key path: `a.b[2].c`.
pub(super) fn render_key_path(segs: &[KeySegment]) -> String {
    let mut out = String::new();
    for seg in segs {
        match seg {
            KeySegment::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            KeySegment::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// Deserializes `value`, or returns the key path (relative to `value`) and message of the error.
pub(super) fn deserialize<T: DeserializeOwned>(value: Value) -> Result<T, (Vec<KeySegment>, String)> {
    deserialize_in(value, &[])
}

/// [`deserialize`] for a table that rejects, after deserializing, some keys its serde type
/// accepts (`not_here`: the client view's `name` and `profile`): an unknown key's message does
/// not offer them.
pub(super) fn deserialize_in<T: DeserializeOwned>(
    value: Value,
    not_here: &[&str],
) -> Result<T, (Vec<KeySegment>, String)> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let segs: Vec<KeySegment> = e
            .path()
            .iter()
            .filter_map(|s| match s {
                serde_path_to_error::Segment::Map { key } => Some(KeySegment::Key(key.clone())),
                serde_path_to_error::Segment::Seq { index } => Some(KeySegment::Index(*index)),
                _ => None,
            })
            .collect();
        // `not_here` are keys of this table, not of the tables in it.
        let not_here = if segs.len() <= 1 { not_here } else { &[] };
        (segs, serde_message(e.inner(), not_here))
    })
}

/// "unknown key `conect_to` (did you mean `connect_to`?); valid keys here: `url`, ..." — the
/// suggestion when one valid key is a likely misspelling of `key`.
pub(super) fn unknown_key(key: &str, valid: &[&str]) -> String {
    let listed = valid.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ");
    let suggestion = closest(key, valid).map(|k| format!(" (did you mean `{k}`?)")).unwrap_or_default();
    if valid.is_empty() {
        format!("unknown key `{key}`: this table takes no keys")
    } else {
        format!("unknown key `{key}`{suggestion}; valid keys here: {listed}")
    }
}

/// The valid key `key` is most likely a misspelling of: at most two edits away (one for short
/// keys), or the same words in another order or case.
fn closest<'k>(key: &str, valid: &[&'k str]) -> Option<&'k str> {
    let normal = |k: &str| {
        let mut words: Vec<String> = k.to_ascii_lowercase().split(['_', '-']).map(str::to_owned).collect();
        words.sort();
        words.join("_")
    };
    let budget = if key.chars().count() <= 4 { 1 } else { 2 };
    valid
        .iter()
        .map(|v| (if normal(v) == normal(key) { 0 } else { edit_distance(key, v) }, *v))
        .filter(|(d, _)| *d <= budget)
        .min_by_key(|(d, _)| *d)
        .map(|(_, v)| v)
}

/// Levenshtein distance, with a swap of two neighbouring characters as one edit.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut rows = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in rows[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (rows[i - 1][j] + 1).min(rows[i][j - 1] + 1).min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = d;
        }
    }
    rows[a.len()][b.len()]
}

/// A serde/`config` error as a message for people, without the key path (the caller adds a
/// precise one) and without serde's words (`sequence`, `map`, `u32`, `struct RawView`).
fn serde_message(e: &config::ConfigError, not_here: &[&str]) -> String {
    match e {
        config::ConfigError::Type { unexpected, expected, .. } => {
            let found = found_text(&unexpected.to_string());
            format!("must be {}, not {found}", expected_text(expected))
        }
        config::ConfigError::At { error, .. } => serde_message(error, not_here),
        config::ConfigError::NotFound(key) => format!("missing key `{key}`"),
        other => message_text(&other.to_string(), not_here),
    }
}

/// What serde says a value should be, as people say it.
fn expected_text(expected: &str) -> String {
    match expected {
        "u8" | "u16" | "u32" | "u64" | "usize" | "i8" | "i16" | "i32" | "i64" | "an integer" => {
            "a whole number".to_owned()
        }
        e if e.starts_with("an unsigned ") => "a whole number, 0 or more".to_owned(),
        "f32" | "f64" => "a number".to_owned(),
        "a boolean" => "true or false".to_owned(),
        "a string" => "a string (in quotes)".to_owned(),
        "a sequence" => "a list ([...])".to_owned(),
        "a map" => "a table".to_owned(),
        e if e.starts_with("struct ") => "a table".to_owned(),
        e => e.to_owned(),
    }
}

/// What serde or `config` says a value was (`64-bit integer `5``, `sequence`), as people say it.
fn found_text(found: &str) -> String {
    match found {
        "map" => return "a table".to_owned(),
        "sequence" => return "a list".to_owned(),
        "unit value" => return "nothing".to_owned(),
        _ => {}
    }
    let mut text = found.to_owned();
    for (serde, people) in [
        ("boolean ", ""),
        ("64-bit unsigned integer ", "the number "),
        ("128-bit unsigned integer ", "the number "),
        ("64-bit integer ", "the number "),
        ("128-bit integer ", "the number "),
        ("integer ", "the number "),
        ("floating point ", "the number "),
        ("string ", "the text "),
    ] {
        if let Some(rest) = text.strip_prefix(serde) {
            text = format!("{people}{}", rest.replace('`', ""));
            break;
        }
    }
    text
}

/// A custom serde message (unknown keys, values a visitor refused) in people's words.
fn message_text(text: &str, not_here: &[&str]) -> String {
    if let Some(rest) = text.strip_prefix("unknown field `") {
        if let Some((key, valid)) = rest.split_once('`') {
            let valid: Vec<&str> =
                valid.split('`').skip(1).step_by(2).filter(|k| !not_here.contains(k)).collect();
            return unknown_key(key, &valid);
        }
    }
    // "invalid type: string \"x\", expected u32" and "invalid value: ..." from visitors.
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some((found, expected)) = text.strip_prefix(prefix).and_then(|r| r.split_once(", expected ")) {
            return format!("must be {}, not {}", expected_text(expected), found_text(found));
        }
    }
    text.to_owned()
}

/// The name of a `[[target]]` or `[[target.checker]]` for key paths, or its index.
pub(super) fn label_of(value: &Value, index: usize) -> String {
    if let ValueKind::Table(t) = &value.kind {
        if let Some(ValueKind::String(name)) = t.get("name").map(|v| &v.kind) {
            if !name.is_empty() && !name.contains(['[', ']']) {
                return name.clone();
            }
        }
    }
    index.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_likely_misspelling_gets_its_key_and_a_far_one_none() {
        let keys = ["url", "connect_to", "source", "sni", "interval", "timeout", "expect_addresses"];
        assert_eq!(closest("conect_to", &keys), Some("connect_to"));
        assert_eq!(closest("connnect_to", &keys), Some("connect_to"));
        assert_eq!(closest("intreval", &keys), Some("interval"), "a swap is one edit");
        assert_eq!(closest("to_connect", &keys), Some("connect_to"), "the same words reordered");
        assert_eq!(closest("URL", &keys), Some("url"));
        assert_eq!(closest("sin", &keys), Some("sni"));
        assert_eq!(closest("sxx", &keys), None, "short keys get one edit only");
        assert_eq!(closest("bogus", &keys), None);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn unknown_key_messages_list_the_tables_keys() {
        assert_eq!(
            unknown_key("timout", &["interval", "timeout"]),
            "unknown key `timout` (did you mean `timeout`?); valid keys here: `interval`, `timeout`"
        );
        assert_eq!(unknown_key("x", &["interval"]), "unknown key `x`; valid keys here: `interval`");
        assert_eq!(unknown_key("x", &[]), "unknown key `x`: this table takes no keys");
    }

    #[test]
    fn serde_words_become_peoples() {
        assert_eq!(found_text("64-bit integer `5`"), "the number 5");
        assert_eq!(found_text("string \"x\""), "the text \"x\"");
        assert_eq!(found_text("sequence"), "a list");
        assert_eq!(found_text("boolean `true`"), "true");
        assert_eq!(expected_text("struct RawView"), "a table");
        assert_eq!(expected_text("u32"), "a whole number");
        assert_eq!(
            message_text("invalid type: map, expected a sequence", &[]),
            "must be a list ([...]), not a table"
        );
        assert_eq!(
            message_text("unknown field `nme`, expected one of `name`, `url`", &["name"]),
            "unknown key `nme`; valid keys here: `url`"
        );
    }
}
