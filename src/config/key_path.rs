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
    serde_path_to_error::deserialize(value).map_err(|e| {
        let segs = e
            .path()
            .iter()
            .filter_map(|s| match s {
                serde_path_to_error::Segment::Map { key } => Some(KeySegment::Key(key.clone())),
                serde_path_to_error::Segment::Seq { index } => Some(KeySegment::Index(*index)),
                _ => None,
            })
            .collect();
        (segs, serde_message(e.inner()))
    })
}

/// A serde/`config` error as a message without the key path (the caller adds a precise one).
fn serde_message(e: &config::ConfigError) -> String {
    let text = match e {
        config::ConfigError::Type { unexpected, expected, .. } => {
            format!("invalid type: {unexpected}, expected {expected}")
        }
        config::ConfigError::At { error, .. } => return serde_message(error),
        config::ConfigError::NotFound(key) => format!("missing key `{key}`"),
        other => other.to_string(),
    };
    let mut text = text
        .replace("unknown field", "unknown key")
        .replace(", expected one of ", "; valid keys: ")
        .replace(", expected `", "; the only valid key is `");
    for name in ["RawDefaults", "RawAdmin", "RawExport", "RawOtlp", "RawTarget", "RawView", "RawExpect"] {
        text = text.replace(&format!("struct {name}"), "a table");
    }
    text
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
