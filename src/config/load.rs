//! Loading, and nothing of compiling: the configuration files of a directory (or one text held
//! in memory) parsed with the `config` crate, each keeping its path; their settings
//! (`[defaults]`, `[admin]`, `[export]`) layered across files in file-name order, then
//! `PARALLAX_...` environment overrides, every value keeping its origin so that an error names
//! the file (or the variable) it came from; and each file's `[[target]]` items, handed out one
//! file at a time. Targets are concatenated in file order by hand, because the `config` crate
//! replaces arrays when it merges.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use config::{FileFormat, Format as _, Source as _, Value, ValueKind};

use super::key_path::{render_key_path, unknown_key, KeySegment, Location};
use super::{ConfigError, Env};

/// Largest configuration file read.
pub(super) const MAX_CONFIG_FILE_BYTES: u64 = 1024 * 1024;
/// Largest `ca_file` read, by `check` and by the prober.
pub const MAX_CA_FILE_BYTES: u64 = 1024 * 1024;
/// Most values (tables, arrays and scalars, YAML aliases counted as what they expand to) in
/// one file's tree: a 1 MiB file of targets holds far fewer.
pub(super) const MAX_TREE_NODES: u64 = 500_000;
/// Deepest nesting of tables and arrays in one file; the configuration's own is below 10.
pub(super) const MAX_TREE_DEPTH: usize = 32;
/// Most bytes of text in one file's values, YAML aliases counted as what they expand to.
pub(super) const MAX_TREE_TEXT_BYTES: u64 = 4 * MAX_CONFIG_FILE_BYTES;
/// Prefix of environment overrides.
const ENV_PREFIX: &str = "PARALLAX_";
/// Valid top-level keys of a file.
const TOP_LEVEL_KEYS: [&str; 7] =
    ["defaults", "admin", "export", "vantage", "discovery", "target", "condition"];

/// The configuration files of `dir`, in file-name order, or `dir` itself when it is a file
/// (`-c probes.toml`). Hidden files are skipped: Kubernetes ConfigMap volumes hold `..data`
/// links next to the real files.
pub(super) fn list_files(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let dir_error =
        |message: String| ConfigError { file: Some(dir.to_path_buf()), key: String::new(), message };
    match std::fs::metadata(dir) {
        Ok(m) if m.is_file() && format_of(dir).is_some() => return Ok(vec![dir.to_path_buf()]),
        Ok(m) if m.is_file() => {
            return Err(dir_error("not a *.toml, *.yaml or *.yml file".to_owned()));
        }
        Ok(m) if !m.is_dir() && format_of(dir).is_some() => {
            return Err(dir_error(
                "is not a regular file: -c takes a configuration file or a directory of them".to_owned(),
            ));
        }
        Ok(m) if !m.is_dir() => {
            return Err(dir_error("not a *.toml, *.yaml or *.yml file".to_owned()));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(dir_error(
                "no such file or directory: -c takes a configuration file or a directory of them".to_owned(),
            ));
        }
        _ => {}
    }
    let entries = std::fs::read_dir(dir)
        .map_err(|e| dir_error(format!("cannot read the configuration directory: {e}")))?;
    let mut files = Vec::new();
    let mut unreadable = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| dir_error(format!("cannot read the configuration directory: {e}")))?;
        let path = entry.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
        if name.starts_with('.') || format_of(&path).is_none() {
            continue;
        }
        // `metadata` follows symlinks, as ConfigMap files are. A file that cannot be looked at
        // (a dangling or looping symlink) or is no regular file (a FIFO would block the read)
        // is an error, not skipped: its targets would silently be missing.
        match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => files.push(path),
            Ok(_) => unreadable.push(file_error(&path, "", "is not a regular file: remove it or rename it")),
            Err(e) => unreadable.push(file_error(&path, "", format!("cannot be read: {e}"))),
        }
    }
    unreadable.sort_by(|a, b| a.file.cmp(&b.file));
    if let Some(first) = unreadable.into_iter().next() {
        return Err(first);
    }
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    if files.is_empty() {
        return Err(dir_error("no *.toml, *.yaml or *.yml configuration file in this directory".to_owned()));
    }
    Ok(files)
}

/// Why [`read_input`] read nothing.
#[derive(Debug)]
pub enum InputError {
    /// A FIFO, a device, a socket or a directory: opening or reading it could block forever.
    NotRegular,
    /// Larger than the bound given.
    TooLarge,
    /// The open or the read failed.
    Io(std::io::Error),
}

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InputError::NotRegular => f.write_str("is not a regular file"),
            InputError::TooLarge => f.write_str("is too large"),
            InputError::Io(e) => write!(f, "cannot be read: {e}"),
        }
    }
}

/// The bytes of the regular file at `path`, at most `max_bytes` of them: every input of the
/// configuration (its files, `${file:..}`, `ca_file`) is read here. Anything but a regular file
/// is refused before it is opened (a FIFO's open blocks until a writer comes), and the open is
/// non-blocking and checked again on the opened file, in case it was swapped in between.
pub fn read_input(path: &Path, max_bytes: u64) -> Result<Vec<u8>, InputError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    if !std::fs::metadata(path).map_err(InputError::Io)?.is_file() {
        return Err(InputError::NotRegular);
    }
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(InputError::Io)?;
    if !f.metadata().map_err(InputError::Io)?.is_file() {
        return Err(InputError::NotRegular);
    }
    let mut bytes = Vec::new();
    // Bounded even when the size changed since `metadata` (or lies, as /proc files do).
    f.take(max_bytes + 1).read_to_end(&mut bytes).map_err(InputError::Io)?;
    if bytes.len() as u64 > max_bytes {
        return Err(InputError::TooLarge);
    }
    Ok(bytes)
}

fn format_of(path: &Path) -> Option<FileFormat> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("toml") => Some(FileFormat::Toml),
        Some("yaml" | "yml") => Some(FileFormat::Yaml),
        _ => None,
    }
}

/// One parsed file: its path, and its settings sections, every value tagged with `uri` as
/// origin.
///
/// Its targets are not kept as a tree: the trees of every file (most of a large
/// configuration) would be held at once, and the memory they leave behind once freed stays
/// resident. The file's text is kept instead and parsed again when its targets are compiled,
/// one file at a time, once the settings of every file are known.
#[derive(Debug)]
pub(super) struct SourceFile<'t> {
    /// Where it was read from (or, for a text, is named after).
    pub(super) path: PathBuf,
    /// `path` as the `config` crate's origin of its values.
    uri: String,
    format: FileFormat,
    /// The known top-level keys but `target`.
    settings: config::Map<String, Value>,
    /// The text, if the file has a `target` key; taken by [`SourceFile::take_targets`].
    targets_text: Option<Cow<'t, str>>,
    /// The `[[condition]]` items (few, and written by discovery): not layered like settings,
    /// every file's are kept.
    pub(super) conditions: Option<Value>,
}

/// A parsed file as a `config` layer.
#[derive(Debug, Clone)]
struct Layer(config::Map<String, Value>);

impl config::Source for Layer {
    fn clone_into_box(&self) -> Box<dyn config::Source + Send + Sync> {
        Box::new(self.clone())
    }

    fn collect(&self) -> Result<config::Map<String, Value>, config::ConfigError> {
        Ok(self.0.clone())
    }
}

/// The layered settings tree, for finding where a key came from.
pub(super) struct SettingsTree<'a> {
    root: Value,
    uris: HashMap<&'a str, &'a Path>,
}

impl SettingsTree<'_> {
    /// The layered value of the top-level section `name`.
    pub(super) fn section(&self, name: &str) -> Option<&Value> {
        match &self.root.kind {
            ValueKind::Table(root) => root.get(name),
            _ => None,
        }
    }

    /// The location of `path` (whose last segment is the key): its file, or the environment
    /// variable that set it.
    pub(super) fn location(&self, path: &[KeySegment]) -> (Location, String) {
        let (parent, key) = match path.split_last() {
            Some((KeySegment::Key(k), parent)) => (parent, k.clone()),
            Some((KeySegment::Index(i), parent)) => (parent, format!("[{i}]")),
            None => (path, String::new()),
        };
        let mut at = Location { prefix: render_key_path(parent), ..Location::default() };
        match self.origin(path) {
            Some("the environment") => {
                let var =
                    format!("{ENV_PREFIX}{}", render_key_path(path).replace('.', "__").to_ascii_uppercase());
                at.note = Some(format!("set by environment variable {var}"));
            }
            Some(uri) => at.file = self.uris.get(uri).map(|p| p.to_path_buf()),
            None => {}
        }
        (at, key)
    }

    /// Describes where the value at `path` came from: `[defaults] in 00-daemon.toml`.
    pub(super) fn describe(&self, path: &[KeySegment]) -> String {
        let (at, _) = self.location(path);
        if let Some(note) = at.note {
            return note.replace("set by ", "");
        }
        let section = match path.first() {
            Some(KeySegment::Key(k)) => format!("[{k}]"),
            _ => "settings".to_owned(),
        };
        match at.file.as_deref().and_then(|f| f.file_name()) {
            Some(name) => format!("{section} in {}", name.to_string_lossy()),
            None => section,
        }
    }

    /// The origin of the value at `path`, or of the first value below or above it.
    fn origin(&self, path: &[KeySegment]) -> Option<&str> {
        let mut node = &self.root;
        let mut deepest = None;
        for seg in path {
            let next = match (seg, &node.kind) {
                (KeySegment::Key(k), ValueKind::Table(t)) => t.get(k),
                (KeySegment::Index(i), ValueKind::Array(a)) => a.get(*i),
                _ => None,
            };
            match next {
                Some(n) => {
                    node = n;
                    deepest = first_origin(n).or(deepest);
                }
                None => break,
            }
        }
        first_origin(node).or(deepest)
    }
}

/// `value` with `uri` as the origin of it and of every value in it.
fn with_origin(value: Value, uri: &String) -> Value {
    let kind = match value.kind {
        ValueKind::Table(t) => {
            ValueKind::Table(t.into_iter().map(|(k, v)| (k, with_origin(v, uri))).collect())
        }
        ValueKind::Array(a) => ValueKind::Array(a.into_iter().map(|v| with_origin(v, uri)).collect()),
        other => other,
    };
    Value::new(Some(uri), kind)
}

fn first_origin(value: &Value) -> Option<&str> {
    if let Some(o) = value.origin() {
        return Some(o);
    }
    match &value.kind {
        ValueKind::Table(t) => t.values().find_map(first_origin),
        ValueKind::Array(a) => a.iter().find_map(first_origin),
        _ => None,
    }
}

impl SourceFile<'static> {
    /// Reads and parses the file at `path`; what is wrong with it goes to `errors`.
    pub(super) fn read(path: &Path, errors: &mut Vec<ConfigError>) -> Option<SourceFile<'static>> {
        format_of(path)?;
        let text = match read_input(path, MAX_CONFIG_FILE_BYTES).map(String::from_utf8) {
            Ok(Ok(text)) => text,
            Ok(Err(_)) => {
                errors.push(file_error(path, "", "cannot be read: it is not UTF-8 text"));
                return None;
            }
            Err(InputError::TooLarge) => {
                errors.push(file_error(
                    path,
                    "",
                    format!("larger than {} KiB", MAX_CONFIG_FILE_BYTES / 1024),
                ));
                return None;
            }
            Err(e) => {
                errors.push(file_error(path, "", e.to_string()));
                return None;
            }
        };
        SourceFile::parse(path, Cow::Owned(text), errors)
    }
}

impl<'t> SourceFile<'t> {
    /// Parses the `text` of the file at `path` (TOML or YAML by its extension).
    pub(super) fn parse(
        path: &Path,
        text: Cow<'t, str>,
        errors: &mut Vec<ConfigError>,
    ) -> Option<SourceFile<'t>> {
        let Some(format) = format_of(path) else {
            errors.push(file_error(path, "", "not a *.toml, *.yaml or *.yml file"));
            return None;
        };
        let uri = path.display().to_string();
        // Without origins: most of a large file is targets, which are dropped here and parsed
        // again (with origins) when compiled; the settings are tagged below.
        let root = parse_tree(path, &uri, None, format, &text, errors)?;
        for key in root.keys() {
            if !TOP_LEVEL_KEYS.contains(&key.as_str()) {
                errors.push(file_error(path, key, unknown_key(key, &TOP_LEVEL_KEYS)));
            }
        }
        let mut settings = root;
        let targets_text = settings.shift_remove("target").map(|_| text);
        let conditions = settings.shift_remove("condition");
        settings.retain(|k, _| TOP_LEVEL_KEYS.contains(&k.as_str()));
        let settings = settings.into_iter().map(|(k, v)| (k, with_origin(v, &uri))).collect();
        Some(SourceFile { path: path.to_path_buf(), uri, format, settings, targets_text, conditions })
    }

    /// The file's `[[target]]` items, each value tagged with the file as origin, parsed again
    /// from its text (which is dropped), or `None` when it has none or they are not an array.
    pub(super) fn take_targets(&mut self, errors: &mut Vec<ConfigError>) -> Option<Vec<Value>> {
        let text = self.targets_text.take()?;
        // The same text parsed the first time, so this parse succeeds too.
        let mut root = parse_tree(&self.path, &self.uri, Some(&self.uri), self.format, &text, errors)?;
        drop(text);
        let value = root.shift_remove("target")?;
        drop(root);
        match value.kind {
            ValueKind::Array(items) => Some(items),
            ValueKind::Table(_) => {
                errors.push(file_error(
                    &self.path,
                    "target",
                    "write [[target]] (an array of tables), not [target]",
                ));
                None
            }
            _ => {
                errors.push(file_error(&self.path, "target", "must be an array of tables ([[target]])"));
                None
            }
        }
    }
}

/// Parses `text`, the file at `path` (`uri`), into a tree whose values have `origin` as
/// origin, or reports why it is not valid TOML or YAML.
fn parse_tree(
    path: &Path,
    uri: &str,
    origin: Option<&String>,
    format: FileFormat,
    text: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<config::Map<String, Value>> {
    // The tree is bounded before it is built: YAML aliases expand as they are loaded.
    let bounded = match format {
        FileFormat::Yaml => yaml_within_bounds(text),
        _ => Ok(()),
    };
    if let Err(message) = bounded {
        errors.push(file_error(path, "", message));
        return None;
    }
    match format.parse(origin, text) {
        Ok(root) => match tree_within_bounds(&root) {
            Ok(()) => Some(root),
            Err(message) => {
                errors.push(file_error(path, "", message));
                None
            }
        },
        Err(e) if format == FileFormat::Toml && unquoted_status_range(text, &e.to_string()).is_some() => {
            let (number, line, fixed) = unquoted_status_range(text, &e.to_string())?;
            let message = format!(
                "not valid TOML at line {number}: `{line}`: a status range is text and must be quoted: `{fixed}`"
            );
            errors.push(file_error(path, "", message));
            None
        }
        Err(e) => {
            let kind = if format == FileFormat::Toml { "TOML" } else { "YAML" };
            // The `config` crate appends " in PATH"; the error names the file already.
            let message = e.to_string().replace(&format!(" in {uri}"), "");
            errors.push(file_error(path, "", format!("not valid {kind}: {}", message.trim_end())));
            None
        }
    }
}

/// What a file whose tree is too large is told.
fn too_large(what: &str) -> String {
    format!(
        "{what}: a file holds at most {MAX_TREE_NODES} values, nested at most {MAX_TREE_DEPTH} deep, \
         with at most {} MiB of text (YAML aliases counted as what they expand to); split it into \
         several files",
        MAX_TREE_TEXT_BYTES / 1024 / 1024
    )
}

/// Whether the YAML `text`, its aliases expanded, stays within [`MAX_TREE_NODES`],
/// [`MAX_TREE_DEPTH`] and [`MAX_TREE_TEXT_BYTES`], read from the parser's events without
/// building anything. A syntax error ends the count: the parse that follows stops at the same
/// place and reports it.
fn yaml_within_bounds(text: &str) -> Result<(), String> {
    use yaml_rust2::parser::{Event, Parser};
    /// An open sequence or mapping.
    struct Open {
        anchor: usize,
        nodes_before: u64,
        bytes_before: u64,
        /// The depth of its deepest node so far, counted from the root.
        deepest: usize,
    }
    // Of an anchored node: its values, text bytes and depth, as an alias expands it.
    let mut anchors: HashMap<usize, (u64, u64, usize)> = HashMap::new();
    let mut open: Vec<Open> = Vec::new();
    let (mut nodes, mut bytes) = (0u64, 0u64);
    let mut parser = Parser::new_from_str(text);
    loop {
        let Ok((event, _)) = parser.next_token() else { return Ok(()) };
        // The depth of the node this event starts (or, for an end, of the node it ends).
        let depth = open.len() + 1;
        let reached = match event {
            Event::StreamEnd => return Ok(()),
            Event::Scalar(value, _, anchor, _) => {
                nodes += 1;
                bytes += value.len() as u64;
                if anchor != 0 {
                    anchors.insert(anchor, (1, value.len() as u64, 1));
                }
                depth
            }
            Event::Alias(anchor) => {
                let (n, b, d) = anchors.get(&anchor).copied().unwrap_or((1, 0, 1));
                nodes = nodes.saturating_add(n);
                bytes = bytes.saturating_add(b);
                depth + d - 1
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                open.push(Open { anchor, nodes_before: nodes, bytes_before: bytes, deepest: depth });
                nodes += 1;
                depth
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let Some(done) = open.pop() else { continue };
                let depth = open.len() + 1;
                if done.anchor != 0 {
                    let size =
                        (nodes - done.nodes_before, bytes - done.bytes_before, done.deepest + 1 - depth);
                    anchors.insert(done.anchor, size);
                }
                done.deepest
            }
            _ => continue,
        };
        if let Some(parent) = open.last_mut() {
            parent.deepest = parent.deepest.max(reached);
        }
        if nodes > MAX_TREE_NODES || bytes > MAX_TREE_TEXT_BYTES || reached > MAX_TREE_DEPTH {
            return Err(too_large("too large once its YAML aliases are expanded"));
        }
    }
}

/// Whether a parsed tree stays within [`MAX_TREE_NODES`] and [`MAX_TREE_DEPTH`] (TOML has no
/// aliases, so its text bounds its tree; this says so in the file's terms).
fn tree_within_bounds(root: &config::Map<String, Value>) -> Result<(), String> {
    let mut nodes = 0u64;
    let mut stack: Vec<(&Value, usize)> = root.values().map(|v| (v, 1)).collect();
    while let Some((value, depth)) = stack.pop() {
        nodes += 1;
        if nodes > MAX_TREE_NODES || depth > MAX_TREE_DEPTH {
            return Err(too_large("too large"));
        }
        match &value.kind {
            ValueKind::Table(t) => stack.extend(t.values().map(|v| (v, depth + 1))),
            ValueKind::Array(a) => stack.extend(a.iter().map(|v| (v, depth + 1))),
            _ => {}
        }
    }
    Ok(())
}

/// For a TOML parse error (`message`, which names its line) on a line of `text` holding a
/// status range without quotes (`status = [200-299]`, `2xx`), which TOML reads as a broken
/// date or a bare word: the line's number, the line, and the line with the ranges quoted.
fn unquoted_status_range(text: &str, message: &str) -> Option<(usize, String, String)> {
    static LINE: std::sync::OnceLock<(regex::Regex, regex::Regex)> = std::sync::OnceLock::new();
    let (line_of, range) = LINE.get_or_init(|| {
        let line_of = regex::Regex::new(r"at line (\d+)").expect("a valid regex");
        // A range not inside quotes: the character before it is none of `"`, `'`, a word's.
        let range = regex::Regex::new(r#"(^|[^"'\w-])([1-5][0-9]{2}-[1-5][0-9]{2}|[1-5][xX]{2})\b"#)
            .expect("a valid regex");
        (line_of, range)
    });
    let number: usize = line_of.captures(message)?.get(1)?.as_str().parse().ok()?;
    let line = text.lines().nth(number.checked_sub(1)?)?.trim();
    let value = line.split_once('=')?.1;
    if !line.contains("status") || !range.is_match(value) {
        return None;
    }
    let fixed = range.replace_all(line, "$1\"$2\"").into_owned();
    Some((number, line.to_owned(), fixed))
}

/// The settings of `files` layered in order, then the environment's overrides.
pub(super) fn layer_settings<'f>(
    files: &'f [SourceFile<'_>],
    env: &dyn Env,
    errors: &mut Vec<ConfigError>,
) -> SettingsTree<'f> {
    let mut builder = config::Config::builder();
    for f in files {
        builder = builder.add_source(Layer(f.settings.clone()));
    }
    builder = builder.add_source(env_overrides(env, errors));
    let root = match builder.build().and_then(|c| c.collect()) {
        Ok(root) => root,
        Err(e) => {
            let message = format!("cannot layer the settings: {e}");
            errors.push(ConfigError { file: None, key: String::new(), message });
            config::Map::new()
        }
    };
    SettingsTree {
        root: Value::new(None, ValueKind::Table(root)),
        uris: files.iter().map(|f| (f.uri.as_str(), f.path.as_path())).collect(),
    }
}

/// `PARALLAX_DEFAULTS__...`, `PARALLAX_ADMIN__...`, `PARALLAX_EXPORT__...`, `PARALLAX_VANTAGE__...`
/// and `PARALLAX_DISCOVERY__...` as a layer.
/// Other `PARALLAX_` variables (`PARALLAX_CONFIG`, `PARALLAX_LOG`) are not settings.
fn env_overrides(env: &dyn Env, errors: &mut Vec<ConfigError>) -> config::Environment {
    let mut vars = config::Map::new();
    for (name, value) in env.vars_with_prefix(ENV_PREFIX) {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else { continue };
        let section = rest.split("__").next().unwrap_or_default();
        if ["DEFAULTS", "ADMIN", "EXPORT", "VANTAGE", "DISCOVERY"].contains(&section)
            && rest.len() > section.len()
        {
            vars.insert(name, value);
        } else if section.starts_with("TARGET") {
            errors.push(ConfigError {
                file: None,
                key: name,
                message: "environment variables override [defaults], [admin], [export], [vantage] and \
                          [discovery] only; targets come from files"
                    .to_owned(),
            });
        }
    }
    config::Environment::with_prefix("PARALLAX").prefix_separator("_").separator("__").source(Some(vars))
}

/// An error about the file at `path`, at top-level `key` (empty: the whole file).
fn file_error(path: &Path, key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError { file: Some(path.to_path_buf()), key: key.to_owned(), message: message.into() }
}
