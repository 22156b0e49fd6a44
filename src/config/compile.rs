//! Raw config -> `Plan`, collecting every error.
//!
//! Loading reads every `*.toml`/`*.yaml`/`*.yml` file of the directory in file-name order and
//! parses each on its own with the `config` crate, keeping its path. Settings (`[defaults]`,
//! `[admin]`, `[export]`) are layered with the `config` crate across files, then `PARALLAX_...`
//! environment overrides; every value keeps its origin, so an error names the file (or the
//! variable) it came from. Targets are concatenated in file order by hand, because the `config`
//! crate replaces arrays when it merges.
//!
//! Each target and each view is deserialized on its own, and compilation carries on past every
//! error, so one run reports everything wrong. Messages say what would be right, name the key
//! path (`target[shop].checker[nlb].timeout`), and never quote a substituted secret.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use config::{FileFormat, Format as _, Source as _, Value, ValueKind};
use ipnet::IpNet;
use serde::de::DeserializeOwned;

use super::plan::*;
use super::secret::*;
use super::view::*;
use super::profiles::{self, ProfileDefaults};
use super::raw::*;
use super::subst::{self, Substituted};
use super::{ConfigError, ConfigErrors, Env};

/// Largest configuration file read.
pub(super) const MAX_CONFIG_FILE_BYTES: u64 = 1024 * 1024;
/// Largest `max_body_bytes` accepted: bodies are held in memory, per probe in flight.
pub(super) const MAX_BODY_BYTES_CAP: u64 = 16 * 1024 * 1024;
/// Longest `body_regex` pattern accepted.
pub(super) const MAX_REGEX_LEN: usize = 4096;
/// Compiled-program size limit of `body_regex`, so a pattern cannot cost unbounded memory.
const REGEX_SIZE_LIMIT: usize = 1024 * 1024;
/// Largest `ca_file` read.
const MAX_CA_FILE_BYTES: u64 = 1024 * 1024;
/// Default fraction of plain successes whose spans are exported.
pub(super) const DEFAULT_SUCCESS_SAMPLE_RATIO: f64 = 0.1;
/// Prefix of environment overrides.
const ENV_PREFIX: &str = "PARALLAX_";
/// Header names whose values are always secrets.
const SECRET_HEADERS: [&str; 3] = ["authorization", "proxy-authorization", "cookie"];
/// Valid top-level keys of a file.
const TOP_LEVEL_KEYS: [&str; 4] = ["defaults", "admin", "export", "target"];

pub(super) fn load_dir(dir: &Path, env: &dyn Env) -> (Result<Plan, ConfigErrors>, Vec<PathBuf>) {
    let paths = match list_files(dir) {
        Ok(paths) => paths,
        Err(e) => return (Err(ConfigErrors(vec![e])), Vec::new()),
    };
    let mut ctx =
        Ctx { env, dir, errors: Vec::new(), view_names: HashSet::new(), read_files: BTreeSet::new() };
    let files: Vec<SourceFile> = paths.iter().filter_map(|p| ctx.parse_file(p)).collect();
    ctx.compile(files, paths)
}

/// Compiles one file's `text` as if it had been read from `path`: errors name `path`, relative
/// `ca_file` and `${file:..}` paths resolve against its directory. Nothing is read for the file
/// itself.
pub(super) fn load_text(path: &Path, text: &str, env: &dyn Env) -> Result<Plan, ConfigErrors> {
    let dir = path.parent().unwrap_or(Path::new(""));
    let mut ctx =
        Ctx { env, dir, errors: Vec::new(), view_names: HashSet::new(), read_files: BTreeSet::new() };
    let files: Vec<SourceFile> = ctx.parse_text(path, Cow::Borrowed(text)).into_iter().collect();
    ctx.compile(files, vec![path.to_path_buf()]).0
}

/// The configuration files of `dir`, in file-name order. Hidden files are skipped: Kubernetes
/// ConfigMap volumes hold `..data` links next to the real files.
pub(super) fn list_files(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let dir_error =
        |message: String| ConfigError { file: Some(dir.to_path_buf()), key: String::new(), message };
    let entries = std::fs::read_dir(dir)
        .map_err(|e| dir_error(format!("cannot read the configuration directory: {e}")))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| dir_error(format!("cannot read the configuration directory: {e}")))?;
        let path = entry.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
        if name.starts_with('.') || format_of(&path).is_none() {
            continue;
        }
        // `metadata` follows symlinks, as ConfigMap files are.
        if std::fs::metadata(&path).map(|m| m.is_file()).unwrap_or(false) {
            files.push(path);
        }
    }
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    if files.is_empty() {
        return Err(dir_error("no *.toml, *.yaml or *.yml configuration file in this directory".to_owned()));
    }
    Ok(files)
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
struct SourceFile<'t> {
    path: PathBuf,
    uri: String,
    format: FileFormat,
    /// The known top-level keys but `target`.
    settings: config::Map<String, Value>,
    /// The text, if the file has a `target` key; taken by `targets`.
    targets_text: Option<Cow<'t, str>>,
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

/// Where an error is: file, key prefix, and a note for values set by environment variables.
#[derive(Debug, Clone, Default)]
struct Loc {
    file: Option<PathBuf>,
    prefix: String,
    note: Option<String>,
}

impl Loc {
    fn new(file: &Path, prefix: impl Into<String>) -> Loc {
        Loc { file: Some(file.to_path_buf()), prefix: prefix.into(), note: None }
    }

    fn key(&self, key: &str) -> String {
        join_key(&self.prefix, key)
    }

    fn child(&self, key: &str) -> Loc {
        Loc { file: self.file.clone(), prefix: self.key(key), note: self.note.clone() }
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
enum Seg {
    Key(String),
    Index(usize),
}

fn render(segs: &[Seg]) -> String {
    let mut out = String::new();
    for seg in segs {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// Deserializes `value`, or returns the key path (relative to `value`) and message of the error.
fn deserialize<T: DeserializeOwned>(value: Value) -> Result<T, (Vec<Seg>, String)> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let segs = e
            .path()
            .iter()
            .filter_map(|s| match s {
                serde_path_to_error::Segment::Map { key } => Some(Seg::Key(key.clone())),
                serde_path_to_error::Segment::Seq { index } => Some(Seg::Index(*index)),
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
fn label_of(value: &Value, index: usize) -> String {
    if let ValueKind::Table(t) = &value.kind {
        if let Some(ValueKind::String(name)) = t.get("name").map(|v| &v.kind) {
            if !name.is_empty() && !name.contains(['[', ']']) {
                return name.clone();
            }
        }
    }
    index.to_string()
}

/// A setting after layering, with where its value came from (for messages).
#[derive(Debug, Clone)]
struct Layered<T> {
    value: T,
    from: String,
}

/// `[defaults]` after layering and validation.
#[derive(Debug, Clone, Default)]
struct Defaults {
    interval: Option<Layered<Duration>>,
    timeout: Option<Layered<Duration>>,
    max_body_bytes: Option<Layered<usize>>,
    resolver: Option<Layered<SocketAddr>>,
    ip_version: Option<Layered<IpVersion>>,
    user_agent: Option<Layered<Option<String>>>,
    diff: DiffSettings,
}

/// The diff keys of `[defaults]` or a `[[target]]`, before validation.
struct RawDiffKeys {
    attribution: Option<bool>,
    attribution_interval: Option<String>,
    max_hybrids: Option<u64>,
    hold: Option<String>,
}

struct Settings {
    defaults: Defaults,
    admin: AdminSettings,
    export: ExportSettings,
}

/// The layered settings tree, for finding where a key came from.
struct SettingsTree<'a> {
    root: Value,
    uris: HashMap<&'a str, &'a Path>,
}

impl SettingsTree<'_> {
    /// The location of `path` (whose last segment is the key): its file, or the environment
    /// variable that set it.
    fn loc(&self, path: &[Seg]) -> (Loc, String) {
        let (parent, key) = match path.split_last() {
            Some((Seg::Key(k), parent)) => (parent, k.clone()),
            Some((Seg::Index(i), parent)) => (parent, format!("[{i}]")),
            None => (path, String::new()),
        };
        let mut loc = Loc { prefix: render(parent), ..Loc::default() };
        match self.origin(path) {
            Some("the environment") => {
                let var = format!("{ENV_PREFIX}{}", render(path).replace('.', "__").to_ascii_uppercase());
                loc.note = Some(format!("set by environment variable {var}"));
            }
            Some(uri) => loc.file = self.uris.get(uri).map(|p| p.to_path_buf()),
            None => {}
        }
        (loc, key)
    }

    /// Describes where the value at `path` came from: `[defaults] in 00-daemon.toml`.
    fn describe(&self, path: &[Seg]) -> String {
        let (loc, _) = self.loc(path);
        if let Some(note) = loc.note {
            return note.replace("set by ", "");
        }
        let section = match path.first() {
            Some(Seg::Key(k)) => format!("[{k}]"),
            _ => "settings".to_owned(),
        };
        match loc.file.as_deref().and_then(|f| f.file_name()) {
            Some(name) => format!("{section} in {}", name.to_string_lossy()),
            None => section,
        }
    }

    /// The origin of the value at `path`, or of the first value below or above it.
    fn origin(&self, path: &[Seg]) -> Option<&str> {
        let mut node = &self.root;
        let mut deepest = None;
        for seg in path {
            let next = match (seg, &node.kind) {
                (Seg::Key(k), ValueKind::Table(t)) => t.get(k),
                (Seg::Index(i), ValueKind::Array(a)) => a.get(*i),
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

/// Where a view's effective value came from, for messages.
#[derive(Debug, Clone)]
enum From {
    View,
    Defaults(String),
    Profile(String),
}

impl From {
    fn suffix(&self) -> String {
        match self {
            From::View => String::new(),
            From::Defaults(d) => format!(" (from {d})"),
            From::Profile(p) => format!(" (from {p})"),
        }
    }
}

/// The parts of a view URL.
struct UrlParts {
    scheme: Scheme,
    endpoint: Endpoint,
    path: String,
    display: String,
    /// `Authorization: Basic ..` from the URL's user info.
    authorization: Option<Secret>,
}

struct Ctx<'a> {
    env: &'a dyn Env,
    dir: &'a Path,
    errors: Vec<ConfigError>,
    /// View names compiled so far: views of the same name (every `client`, and checker names
    /// repeated across targets) share one allocation.
    view_names: HashSet<Arc<str>>,
    /// Files named by `${file:..}` substitutions and `ca_file`, read or not.
    read_files: BTreeSet<PathBuf>,
}

impl Ctx<'_> {
    /// Settings and targets of the parsed `files` (from `paths`), or every error found; and,
    /// either way, the files `${file:..}` and `ca_file` named.
    fn compile(
        mut self,
        mut files: Vec<SourceFile<'_>>,
        paths: Vec<PathBuf>,
    ) -> (Result<Plan, ConfigErrors>, Vec<PathBuf>) {
        let settings = self.settings(&files);
        let targets = self.targets(&mut files, &settings.defaults);
        let read_files: Vec<PathBuf> = self.read_files.into_iter().collect();
        if self.errors.is_empty() {
            let plan = Plan {
                targets,
                admin: settings.admin,
                export: settings.export,
                files: paths,
                read_files: read_files.clone(),
            };
            (Ok(plan), read_files)
        } else {
            (Err(ConfigErrors(self.errors)), read_files)
        }
    }

    fn error(&mut self, loc: &Loc, key: &str, message: impl Into<String>) {
        let mut message = message.into();
        if let Some(note) = &loc.note {
            message = format!("{message} ({note})");
        }
        self.errors.push(ConfigError { file: loc.file.clone(), key: loc.key(key), message });
    }

    /// Substitutes `raw`; each substitution problem is an error at `key`.
    fn text(&mut self, loc: &Loc, key: &str, raw: &str) -> Option<Substituted> {
        let mut files = Vec::new();
        let substituted = subst::substitute(raw, self.env, self.dir, &mut files);
        self.read_files.extend(files);
        match substituted {
            Ok(s) => Some(s),
            Err(problems) => {
                for p in problems {
                    self.error(loc, key, p);
                }
                None
            }
        }
    }

    /// Substitutes `raw` for a key that is printed in outputs, so may not hold a secret.
    fn plain(&mut self, loc: &Loc, key: &str, raw: &str) -> Option<String> {
        let s = self.text(loc, key, raw)?;
        if s.is_secret() {
            self.error(
                loc,
                key,
                format!(
                    "cannot hold a secret ({}): values of ${{env:..}} and ${{file:..}} are secrets, and \
                     this key is shown in outputs; secrets belong in headers, body, or the URL's user info, path or query",
                    s.secrets.join(", ")
                ),
            );
            return None;
        }
        Some(s.value)
    }

    /// `${NODE_IP}` at the start of a `host:port` needs brackets on an IPv6 node. One ConfigMap
    /// must work on every node of a dual-stack fleet, so the brackets are added here.
    fn bracket_node_ip<'t>(&self, template: &'t str) -> Cow<'t, str> {
        let v6 = self
            .env
            .var("NODE_IP")
            .and_then(|v| v.trim().parse::<IpAddr>().ok())
            .is_some_and(|ip| ip.is_ipv6());
        match template.strip_prefix("${NODE_IP}") {
            Some(rest) if v6 && (rest.is_empty() || rest.starts_with(':')) => {
                Cow::Owned(format!("[${{NODE_IP}}]{rest}"))
            }
            _ => Cow::Borrowed(template),
        }
    }

    fn parse_file(&mut self, path: &Path) -> Option<SourceFile<'static>> {
        let loc = Loc::new(path, "");
        format_of(path)?;
        let mut text = String::new();
        let read = std::fs::File::open(path)
            .and_then(|f| f.take(MAX_CONFIG_FILE_BYTES + 1).read_to_string(&mut text));
        match read {
            Ok(n) if n as u64 > MAX_CONFIG_FILE_BYTES => {
                self.error(&loc, "", format!("larger than {} KiB", MAX_CONFIG_FILE_BYTES / 1024));
                return None;
            }
            Ok(_) => {}
            Err(e) => {
                self.error(&loc, "", format!("cannot be read: {e}"));
                return None;
            }
        }
        self.parse_text(path, Cow::Owned(text))
    }

    /// Parses the `text` of the file at `path` (TOML or YAML by its extension).
    fn parse_text<'t>(&mut self, path: &Path, text: Cow<'t, str>) -> Option<SourceFile<'t>> {
        let loc = Loc::new(path, "");
        let Some(format) = format_of(path) else {
            self.error(&loc, "", "not a *.toml, *.yaml or *.yml file");
            return None;
        };
        let uri = path.display().to_string();
        // Without origins: most of a large file is targets, which are dropped here and parsed
        // again (with origins) when compiled; the settings are tagged below.
        let root = self.parse_tree(path, &uri, None, format, &text)?;
        for key in root.keys() {
            if !TOP_LEVEL_KEYS.contains(&key.as_str()) {
                self.error(
                    &loc,
                    key,
                    format!("unknown key `{key}`; valid top-level keys: {}", TOP_LEVEL_KEYS.join(", ")),
                );
            }
        }
        let mut settings = root;
        // Targets are concatenated by hand; the `config` crate would replace the arrays.
        let targets_text = settings.shift_remove("target").map(|_| text);
        settings.retain(|k, _| TOP_LEVEL_KEYS.contains(&k.as_str()));
        let settings = settings.into_iter().map(|(k, v)| (k, with_origin(v, &uri))).collect();
        Some(SourceFile { path: path.to_path_buf(), uri, format, settings, targets_text })
    }

    /// Parses `text`, the file at `path` (`uri`), into a tree whose values have `origin` as
    /// origin, or reports why it is not valid TOML or YAML.
    fn parse_tree(
        &mut self,
        path: &Path,
        uri: &str,
        origin: Option<&String>,
        format: FileFormat,
        text: &str,
    ) -> Option<config::Map<String, Value>> {
        match format.parse(origin, text) {
            Ok(root) => Some(root),
            Err(e) => {
                let kind = if format == FileFormat::Toml { "TOML" } else { "YAML" };
                // The `config` crate appends " in PATH"; the error names the file already.
                let message = e.to_string().replace(&format!(" in {uri}"), "");
                self.error(&Loc::new(path, ""), "", format!("not valid {kind}: {}", message.trim_end()));
                None
            }
        }
    }

    // ---- settings ------------------------------------------------------------------------------

    fn settings(&mut self, files: &[SourceFile]) -> Settings {
        let mut builder = config::Config::builder();
        for f in files {
            builder = builder.add_source(Layer(f.settings.clone()));
        }
        builder = builder.add_source(self.env_overrides());
        let root = match builder.build().and_then(|c| c.collect()) {
            Ok(root) => root,
            Err(e) => {
                self.error(&Loc::default(), "", format!("cannot layer the settings: {e}"));
                config::Map::new()
            }
        };
        let tree = SettingsTree {
            root: Value::new(None, ValueKind::Table(root)),
            uris: files.iter().map(|f| (f.uri.as_str(), f.path.as_path())).collect(),
        };
        let defaults = self.section::<RawDefaults>(&tree, "defaults").map(|r| self.defaults(r, &tree));
        let admin = self.section::<RawAdmin>(&tree, "admin").map(|r| self.admin(r, &tree));
        let export = self.section::<RawExport>(&tree, "export").map(|r| self.export(r, &tree));
        Settings {
            defaults: defaults.unwrap_or_default(),
            admin: admin.unwrap_or_else(|| AdminSettings { listen: default_admin_listen() }),
            export: export.unwrap_or(ExportSettings { otlp: None }),
        }
    }

    /// `PARALLAX_DEFAULTS__...`, `PARALLAX_ADMIN__...` and `PARALLAX_EXPORT__...` as a layer.
    /// Other `PARALLAX_` variables (`PARALLAX_CONFIG`, `PARALLAX_LOG`) are not settings.
    fn env_overrides(&mut self) -> config::Environment {
        let mut vars = config::Map::new();
        for (name, value) in self.env.vars_with_prefix(ENV_PREFIX) {
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else { continue };
            let section = rest.split("__").next().unwrap_or_default();
            if ["DEFAULTS", "ADMIN", "EXPORT"].contains(&section) && rest.len() > section.len() {
                vars.insert(name, value);
            } else if section.starts_with("TARGET") {
                self.errors.push(ConfigError {
                    file: None,
                    key: name,
                    message: "environment variables override [defaults], [admin] and [export] only; \
                              targets come from files"
                        .to_owned(),
                });
            }
        }
        config::Environment::with_prefix("PARALLAX").prefix_separator("_").separator("__").source(Some(vars))
    }

    /// Deserializes one settings section, reporting the error where its key came from.
    fn section<T: DeserializeOwned + Default>(&mut self, tree: &SettingsTree<'_>, name: &str) -> Option<T> {
        let ValueKind::Table(root) = &tree.root.kind else { return Some(T::default()) };
        let Some(value) = root.get(name) else { return Some(T::default()) };
        match deserialize::<T>(value.clone()) {
            Ok(raw) => Some(raw),
            Err((segs, message)) => {
                let mut path = vec![Seg::Key(name.to_owned())];
                path.extend(segs);
                let (loc, key) = tree.loc(&path);
                self.error(&loc, &key, message);
                None
            }
        }
    }

    fn defaults(&mut self, raw: RawDefaults, tree: &SettingsTree<'_>) -> Defaults {
        let at = |key: &str| vec![Seg::Key("defaults".to_owned()), Seg::Key(key.to_owned())];
        let mut d = Defaults::default();
        if let Some(v) = raw.interval {
            let (loc, key) = tree.loc(&at("interval"));
            d.interval = self
                .duration(&loc, &key, &v)
                .map(|value| Layered { value, from: tree.describe(&at("interval")) });
        }
        if let Some(v) = raw.timeout {
            let (loc, key) = tree.loc(&at("timeout"));
            d.timeout = self
                .duration(&loc, &key, &v)
                .map(|value| Layered { value, from: tree.describe(&at("timeout")) });
        }
        if let (Some(i), Some(t)) = (&d.interval, &d.timeout) {
            if t.value >= i.value {
                let (loc, key) = tree.loc(&at("timeout"));
                self.error(
                    &loc,
                    &key,
                    format!(
                        "timeout {} must be below interval {}{}",
                        human(t.value),
                        human(i.value),
                        if i.from == t.from { String::new() } else { format!(" (from {})", i.from) }
                    ),
                );
            }
        }
        if let Some(v) = raw.max_body_bytes {
            let (loc, key) = tree.loc(&at("max_body_bytes"));
            d.max_body_bytes = self
                .max_body_bytes(&loc, &key, v)
                .map(|value| Layered { value, from: tree.describe(&at("max_body_bytes")) });
        }
        if let Some(v) = raw.resolver {
            let (loc, key) = tree.loc(&at("resolver"));
            d.resolver = self
                .resolver(&loc, &key, &v)
                .map(|value| Layered { value, from: tree.describe(&at("resolver")) });
        }
        if let Some(v) = raw.ip_version {
            let (loc, key) = tree.loc(&at("ip_version"));
            d.ip_version = self
                .ip_version(&loc, &key, &v)
                .map(|value| Layered { value, from: tree.describe(&at("ip_version")) });
        }
        if let Some(v) = raw.user_agent {
            let (loc, key) = tree.loc(&at("user_agent"));
            d.user_agent = self
                .user_agent(&loc, &key, &v)
                .map(|value| Layered { value, from: tree.describe(&at("user_agent")) });
        }
        let keys = RawDiffKeys {
            attribution: raw.attribution,
            attribution_interval: raw.attribution_interval,
            max_hybrids: raw.max_hybrids,
            hold: raw.hold,
        };
        d.diff = self.diff_settings(keys, DiffSettings::default(), |key| tree.loc(&at(key)));
        d
    }

    /// The diff keys over `base` (built-in defaults, or `[defaults]` for a target).
    fn diff_settings(
        &mut self,
        raw: RawDiffKeys,
        base: DiffSettings,
        loc_of: impl Fn(&str) -> (Loc, String),
    ) -> DiffSettings {
        let mut d = base;
        if let Some(on) = raw.attribution {
            d.attribution = on;
        }
        if let Some(v) = raw.attribution_interval {
            let (loc, key) = loc_of("attribution_interval");
            if let Some(i) = self.duration(&loc, &key, &v) {
                d.attribution_interval = i;
            }
        }
        if let Some(n) = raw.max_hybrids {
            let (loc, key) = loc_of("max_hybrids");
            match usize::try_from(n) {
                Ok(n) if (1..=MAX_HYBRIDS_CAP).contains(&n) => d.max_hybrids = n,
                _ => self.error(
                    &loc,
                    &key,
                    format!(
                        "max_hybrids {n} is out of range: 1 to {MAX_HYBRIDS_CAP} (every hybrid is a real \
                         request; use attribution = false to send none)"
                    ),
                ),
            }
        }
        if let Some(v) = raw.hold {
            let (loc, key) = loc_of("hold");
            if let Some(s) = self.plain(&loc, &key, &v) {
                match humantime::parse_duration(s.trim()) {
                    Ok(h) => d.hold = Some(h),
                    Err(e) => {
                        self.error(&loc, &key, format!("`{s}` is not a duration (e.g. 0s, 10s, 1m): {e}"))
                    }
                }
            }
        }
        d
    }

    fn admin(&mut self, raw: RawAdmin, tree: &SettingsTree<'_>) -> AdminSettings {
        let mut listen = default_admin_listen();
        if let Some(v) = raw.listen {
            let (loc, key) = tree.loc(&[Seg::Key("admin".to_owned()), Seg::Key("listen".to_owned())]);
            if let Some(s) = self.plain(&loc, &key, &self.bracket_node_ip(v.trim())) {
                match s.trim().parse::<SocketAddr>() {
                    Ok(addr) => listen = addr,
                    Err(_) => self.error(
                        &loc,
                        &key,
                        format!("`{s}` is not an ip:port address (e.g. 127.0.0.1:9464)"),
                    ),
                }
            }
        }
        AdminSettings { listen }
    }

    fn export(&mut self, raw: RawExport, tree: &SettingsTree<'_>) -> ExportSettings {
        let Some(otlp) = raw.otlp else { return ExportSettings { otlp: None } };
        let at = |key: &str| {
            vec![Seg::Key("export".to_owned()), Seg::Key("otlp".to_owned()), Seg::Key(key.to_owned())]
        };
        let endpoint = match otlp.endpoint {
            None => {
                let (loc, _) = tree.loc(&at("endpoint"));
                self.error(
                    &loc,
                    "endpoint",
                    "missing endpoint: the collector URL (e.g. http://127.0.0.1:4317)",
                );
                None
            }
            Some(v) => {
                let (loc, key) = tree.loc(&at("endpoint"));
                self.plain(&loc, &key, &v).and_then(|s| match url::Url::parse(s.trim()) {
                    Ok(u)
                        if matches!(u.scheme(), "http" | "https")
                            && u.host_str().is_some_and(|h| !h.is_empty()) =>
                    {
                        Some(s.trim().to_owned())
                    }
                    _ => {
                        self.error(&loc, &key, format!("`{s}` is not an http:// or https:// collector URL"));
                        None
                    }
                })
            }
        };
        let protocol = match otlp.protocol {
            None => Some(OtlpProtocol::Grpc),
            Some(v) => {
                let (loc, key) = tree.loc(&at("protocol"));
                match self.plain(&loc, &key, &v).as_deref().map(str::trim) {
                    Some("grpc") => Some(OtlpProtocol::Grpc),
                    Some("http/protobuf") => Some(OtlpProtocol::HttpProtobuf),
                    Some(other) => {
                        self.error(
                            &loc,
                            &key,
                            format!("unknown protocol `{other}`: use \"grpc\" or \"http/protobuf\""),
                        );
                        None
                    }
                    None => None,
                }
            }
        };
        let ratio = match otlp.success_sample_ratio {
            None => Some(DEFAULT_SUCCESS_SAMPLE_RATIO),
            Some(r) if (0.0..=1.0).contains(&r) => Some(r),
            Some(r) => {
                let (loc, key) = tree.loc(&at("success_sample_ratio"));
                self.error(&loc, &key, format!("{r} is not a fraction: use a number from 0 to 1"));
                None
            }
        };
        match (endpoint, protocol, ratio) {
            (Some(endpoint), Some(protocol), Some(success_sample_ratio)) => {
                ExportSettings { otlp: Some(OtlpSettings { endpoint, protocol, success_sample_ratio }) }
            }
            _ => ExportSettings { otlp: None },
        }
    }

    // ---- targets -------------------------------------------------------------------------------

    /// Compiles the targets of `files` in file order: each file's text is parsed again and its
    /// tree freed, item by item as each is compiled, before the next file's is built.
    fn targets(&mut self, files: &mut [SourceFile<'_>], defaults: &Defaults) -> Vec<Target> {
        let mut targets = Vec::new();
        // Target name -> the file that defined it first. Shared names and paths, so that this
        // map, alive until every file is compiled, holds no allocation per target of its own
        // among the plan's (they would be holes in the heap once it is dropped).
        let mut seen: HashMap<Arc<str>, Arc<Path>> = HashMap::new();
        for f in files {
            let Some(text) = f.targets_text.take() else { continue };
            // The same text parsed the first time, so this parse succeeds too.
            let Some(mut root) = self.parse_tree(&f.path, &f.uri, Some(&f.uri), f.format, &text) else {
                continue;
            };
            drop(text);
            let Some(value) = root.shift_remove("target") else { continue };
            drop(root);
            let file: Arc<Path> = Arc::from(f.path.as_path());
            let items = match value.kind {
                ValueKind::Array(items) => items,
                ValueKind::Table(_) => {
                    self.error(
                        &Loc::new(&f.path, ""),
                        "target",
                        "write [[target]] (an array of tables), not [target]",
                    );
                    continue;
                }
                _ => {
                    self.error(&Loc::new(&f.path, ""), "target", "must be an array of tables ([[target]])");
                    continue;
                }
            };
            for (i, item) in items.into_iter().enumerate() {
                let loc = Loc::new(&f.path, format!("target[{}]", label_of(&item, i)));
                if let Some(t) = self.target(&loc, item, defaults, (&file, &mut seen)) {
                    targets.push(t);
                }
            }
        }
        targets
    }

    fn target(
        &mut self,
        loc: &Loc,
        value: Value,
        defaults: &Defaults,
        (file, seen): (&Arc<Path>, &mut HashMap<Arc<str>, Arc<Path>>),
    ) -> Option<Target> {
        let raw: RawTarget = match deserialize(value) {
            Ok(raw) => raw,
            Err((segs, message)) => {
                self.error(loc, &render(&segs), message);
                return None;
            }
        };
        let before = self.errors.len();
        let name = match &raw.name {
            None => {
                self.error(loc, "name", "missing name: every target needs a unique name");
                None
            }
            Some(raw_name) => self.plain(loc, "name", raw_name).and_then(|n| self.name(loc, "name", n)),
        };
        let target_name: Arc<str> = Arc::from(name.as_deref().unwrap_or_default());
        if name.is_some() {
            match seen.get(&target_name) {
                Some(first) => {
                    let first =
                        first.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
                    self.error(
                        loc,
                        "name",
                        format!("duplicate target name `{target_name}` (first defined in {first})"),
                    );
                }
                None => {
                    seen.insert(target_name.clone(), file.clone());
                }
            }
        }

        let mut allow_sources = Vec::new();
        for (i, s) in raw.allow_sources.iter().flatten().enumerate() {
            let key = format!("allow_sources[{i}]");
            let Some(s) = self.plain(loc, &key, s) else { continue };
            match parse_net(&s) {
                Some(net) => allow_sources.push(net),
                None => {
                    self.error(loc, &key, format!("`{s}` is not an IP address or CIDR (e.g. 35.191.0.0/16)"))
                }
            }
        }

        let diff = self.diff_settings(
            RawDiffKeys {
                attribution: raw.attribution,
                attribution_interval: raw.attribution_interval.clone(),
                max_hybrids: raw.max_hybrids,
                hold: raw.hold.clone(),
            },
            defaults.diff,
            |key| (loc.clone(), key.to_owned()),
        );

        let client = match raw.client {
            None => {
                self.error(
                    loc,
                    "client",
                    "missing [target.client]: every target needs exactly one client view (checkers are optional)",
                );
                None
            }
            Some(v) if matches!(v.kind, ValueKind::Array(_)) => {
                self.error(
                    loc,
                    "client",
                    "exactly one client view: write [target.client], not [[target.client]]",
                );
                None
            }
            Some(v) => self.view(&loc.child("client"), v, Role::Client, &target_name, defaults),
        };

        let mut checkers = Vec::new();
        let mut names: HashMap<String, usize> = HashMap::new();
        for (j, v) in raw.checker.unwrap_or_default().into_iter().enumerate() {
            let label = label_of(&v, j);
            let cloc = loc.child(&format!("checker[{label}]"));
            if let ValueKind::Table(t) = &v.kind {
                if let Some(ValueKind::String(n)) = t.get("name").map(|n| &n.kind) {
                    if let Some(first) = names.insert(n.clone(), j) {
                        self.error(
                            &cloc,
                            "name",
                            format!("duplicate checker name `{n}` in this target (also checker[{first}])"),
                        );
                    }
                }
            }
            if let Some(view) = self.view(&cloc, v, Role::Checker, &target_name, defaults) {
                checkers.push(view);
            }
        }
        if self.errors.len() > before {
            return None;
        }
        // A Vec grows to room for four 640-byte views on its first push; most targets have one
        // or two checkers, and a plan of 100,000 views would carry 1.9 KiB of slack per target.
        checkers.shrink_to_fit();
        Some(Target { name: target_name, allow_sources, client: client?, checkers, diff })
    }

    /// `name` as an `Arc` shared with every view of that name.
    fn view_name(&mut self, name: String) -> Arc<str> {
        if let Some(shared) = self.view_names.get(name.as_str()) {
            return shared.clone();
        }
        let shared: Arc<str> = Arc::from(name);
        self.view_names.insert(shared.clone());
        shared
    }

    /// Validates a target or checker name: it appears in key paths, metric labels and logs.
    fn name(&mut self, loc: &Loc, key: &str, name: String) -> Option<String> {
        if name.is_empty()
            || !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            self.error(
                loc,
                key,
                format!("`{name}` is not a valid name: use letters, digits, '.', '_' and '-'"),
            );
            return None;
        }
        Some(name)
    }

    // ---- views ---------------------------------------------------------------------------------

    fn view(
        &mut self,
        loc: &Loc,
        value: Value,
        role: Role,
        target: &Arc<str>,
        defaults: &Defaults,
    ) -> Option<View> {
        let raw: RawView = match deserialize(value) {
            Ok(raw) => raw,
            Err((segs, message)) => {
                self.error(loc, &render(&segs), message);
                return None;
            }
        };
        let before = self.errors.len();

        // Name and profile.
        let (name, profile) = match role {
            Role::Client => {
                for (key, set) in [("name", raw.name.is_some()), ("profile", raw.profile.is_some())] {
                    if set {
                        self.error(
                            loc,
                            key,
                            format!("unknown key `{key}`: the client view is always `client` and has no profile (only [[target.checker]] views take name and profile)"),
                        );
                    }
                }
                (Some("client".to_owned()), None)
            }
            Role::Checker => {
                let name = match &raw.name {
                    None => {
                        self.error(
                            loc,
                            "name",
                            "missing name: every checker view needs a name, unique within its target",
                        );
                        None
                    }
                    Some(n) => self.plain(loc, "name", n).and_then(|n| self.name(loc, "name", n)),
                };
                if name.as_deref() == Some("client") {
                    self.error(
                        loc,
                        "name",
                        "`client` is the client view's name; name this checker something else",
                    );
                }
                let profile = raw.profile.as_ref().and_then(|p| {
                    let p = self.plain(loc, "profile", p)?;
                    let found = ProfileName::from_name(p.trim());
                    if found.is_none() {
                        let valid: Vec<&str> = ProfileName::ALL.iter().map(|p| p.as_str()).collect();
                        self.error(
                            loc,
                            "profile",
                            format!("unknown profile `{p}`; valid profiles: {}", valid.join(", ")),
                        );
                    }
                    found
                });
                (name, profile)
            }
        };
        let (p, profile_from) = match role {
            Role::Client => (profiles::client_defaults(), "the client defaults".to_owned()),
            Role::Checker => match profile {
                Some(pr) => (profiles::defaults(pr), format!("profile {pr}")),
                None => (profiles::defaults(ProfileName::Generic), "the generic checker defaults".to_owned()),
            },
        };

        // URL and dialing.
        let url = match &raw.url {
            None => {
                self.error(
                    loc,
                    "url",
                    "missing url: every view needs one (http, https, tcp, tls, grpc or grpcs)",
                );
                None
            }
            Some(u) => self.url(loc, u),
        };
        let connect_to = raw.connect_to.as_ref().and_then(|c| {
            let s = self.plain(loc, "connect_to", &self.bracket_node_ip(c.trim()))?;
            parse_endpoint(s.trim()).map_err(|m| self.error(loc, "connect_to", m)).ok()
        });
        let freebind = raw.freebind.unwrap_or(false);
        let source = raw.source.as_ref().and_then(|s| self.source(loc, s, freebind));
        let (ip_version, ip_version_from) = match &raw.ip_version {
            Some(v) => (self.ip_version(loc, "ip_version", v), From::View),
            None => match &defaults.ip_version {
                Some(d) => (Some(d.value), From::Defaults(d.from.clone())),
                None => (Some(IpVersion::Any), From::View),
            },
        };
        let proxy_protocol = raw.proxy_protocol.as_ref().and_then(|v| {
            let s = self.plain(loc, "proxy_protocol", v)?;
            let version = match s.trim().to_ascii_lowercase().as_str() {
                "v1" => ProxyVersion::V1,
                "v2" => ProxyVersion::V2,
                _ => {
                    self.error(
                        loc,
                        "proxy_protocol",
                        format!("`{s}` is not a PROXY protocol version: use \"v1\" or \"v2\""),
                    );
                    return None;
                }
            };
            // LOCAL only for v2 (HAProxy's v1 check header carries addresses): the profile decides.
            Some(p.proxy_header(version))
        });

        // Cross-checks between the dialed address, the family and the source.
        if let Some(u) = &url {
            let dialed = connect_to.as_ref().unwrap_or(&u.endpoint);
            if let Host::Ip(ip) = &dialed.host {
                let wrong = match ip_version {
                    Some(IpVersion::V4) => ip.is_ipv6(),
                    Some(IpVersion::V6) => ip.is_ipv4(),
                    _ => false,
                };
                if wrong {
                    let v = if ip.is_ipv6() { 4 } else { 6 };
                    self.error(
                        loc,
                        "ip_version",
                        format!(
                            "ip_version {v}{} contradicts the address {dialed} this view dials",
                            ip_version_from.suffix()
                        ),
                    );
                }
                if let Some(s) = &source {
                    if s.addr.is_ipv4() != ip.is_ipv4() {
                        self.error(
                            loc,
                            "source",
                            format!("source {} is not of the same address family as {dialed}, the address this view dials", s.requested),
                        );
                    }
                }
            }
            if let (Some(s), Some(v @ (IpVersion::V4 | IpVersion::V6))) = (&source, ip_version) {
                if s.addr.is_ipv4() != (v == IpVersion::V4) {
                    self.error(
                        loc,
                        "source",
                        format!(
                            "source {} contradicts ip_version {}{}",
                            s.requested,
                            if v == IpVersion::V4 { 4 } else { 6 },
                            ip_version_from.suffix()
                        ),
                    );
                }
            }
        }

        // Keys that mean nothing for the scheme are mistakes worth reporting.
        if let Some(u) = &url {
            let expect = raw.expect.as_ref();
            let http_keys = [
                ("method", raw.method.is_some()),
                ("headers", raw.headers.is_some()),
                ("body", raw.body.is_some()),
                ("expect.status", expect.is_some_and(|e| e.status.is_some())),
                ("expect.body_contains", expect.is_some_and(|e| e.body_contains.is_some())),
                ("expect.body_regex", expect.is_some_and(|e| e.body_regex.is_some())),
            ];
            let scheme = u.scheme.as_str();
            if !u.scheme.uses_http() {
                let why = if u.scheme.uses_grpc() {
                    "the gRPC health check sends its own request (name the service with expect.grpc_service)"
                } else {
                    "no HTTP request is sent"
                };
                for (key, set) in http_keys {
                    if set {
                        self.error(loc, key, format!("has no effect on {scheme}:// views: {why}"));
                    }
                }
            }
            if !u.scheme.uses_http() && !u.scheme.uses_grpc() {
                for (key, set) in [("host", raw.host.is_some()), ("user_agent", raw.user_agent.is_some())] {
                    if set {
                        self.error(
                            loc,
                            key,
                            format!("has no effect on {scheme}:// views: no HTTP request is sent"),
                        );
                    }
                }
            }
            if !u.scheme.uses_grpc() && expect.is_some_and(|e| e.grpc_service.is_some()) {
                self.error(loc, "expect.grpc_service", "applies to grpc:// and grpcs:// views only");
            }
            if raw.expect_addresses.as_ref().is_some_and(|a| !a.is_empty()) {
                let named = matches!(u.endpoint.host, Host::Name(_));
                if !named {
                    self.error(
                        loc,
                        "expect_addresses",
                        "the URL's host is an IP address, so there is no DNS answer to check",
                    );
                }
            }
        }

        // TLS.
        let sni = match &raw.sni {
            None => Some(p.sni.clone()),
            Some(Toggle::Off) => Some(Sni::None),
            Some(Toggle::Value(v)) => self.plain(loc, "sni", v).and_then(|s| {
                let s = s.trim().trim_end_matches('.').to_ascii_lowercase();
                if s.parse::<IpAddr>().is_ok() || !valid_dns_name(&s) {
                    self.error(
                        loc,
                        "sni",
                        format!(
                            "`{s}` is not a DNS name (SNI carries names only; use sni = false to send none)"
                        ),
                    );
                    None
                } else {
                    Some(Sni::Name(s))
                }
            }),
        };
        let ca_file = raw.ca_file.as_ref().and_then(|c| self.ca_file(loc, c));
        let grpc_tls = url.as_ref().is_some_and(|u| u.scheme == Scheme::Grpcs);
        let alpn = match &raw.alpn {
            Some(list) => {
                let mut alpn = Vec::new();
                for (i, a) in list.iter().enumerate() {
                    let key = format!("alpn[{i}]");
                    let Some(a) = self.plain(loc, &key, a) else { continue };
                    if a.is_empty() || a.len() > 255 || !a.bytes().all(|b| b.is_ascii_graphic()) {
                        self.error(
                            loc,
                            &key,
                            format!("`{a}` is not an ALPN protocol id (e.g. h2, http/1.1)"),
                        );
                    } else {
                        alpn.push(a);
                    }
                }
                if grpc_tls && !alpn.iter().any(|a| a == "h2") {
                    self.error(loc, "alpn", "a grpcs:// view must offer \"h2\": gRPC runs over HTTP/2");
                }
                alpn
            }
            None if grpc_tls && !p.alpn.contains(&"h2") => vec!["h2".to_owned()],
            None => p.alpn.iter().map(|a| a.to_string()).collect(),
        };

        // HTTP.
        let method = match &raw.method {
            None => Some(p.method.clone()),
            Some(m) => self.plain(loc, "method", m).and_then(|m| match parse_method(m.trim()) {
                Ok(m) => Some(m),
                Err(e) => {
                    self.error(loc, "method", e);
                    None
                }
            }),
        };
        let host = match &raw.host {
            None => Some(p.host.clone()),
            Some(Toggle::Off) => Some(HostHeader::None),
            Some(Toggle::Value(v)) => self.plain(loc, "host", v).and_then(|h| {
                if h.is_empty() || http::HeaderValue::from_str(&h).is_err() {
                    self.error(
                        loc,
                        "host",
                        format!("`{h}` is not a Host header value (use host = false to send none)"),
                    );
                    None
                } else {
                    Some(HostHeader::Value(h))
                }
            }),
        };
        // A checker profile's User-Agent — or its lack of one (HAProxy sends none) — is part of
        // what that checker is (servers special-case `ELB-HealthChecker/2.0`): `[defaults]
        // user_agent` only replaces parallax's own (client views, `generic`, `kube-proxy`).
        let profile_sets_agent = matches!(profile, Some(pr) if pr != ProfileName::Generic)
            && p.user_agent != Some(profiles::PARALLAX_USER_AGENT);
        let user_agent = match &raw.user_agent {
            Some(t) => self.user_agent(loc, "user_agent", t),
            None => match &defaults.user_agent {
                Some(d) if !profile_sets_agent => Some(d.value.clone()),
                _ => Some(p.user_agent.map(str::to_owned)),
            },
        };
        let headers =
            self.headers(loc, &p, raw.headers.as_ref(), url.as_ref().and_then(|u| u.authorization.clone()));
        let body = raw.body.as_ref().and_then(|b| {
            let s = self.text(loc, "body", b)?;
            Some(if s.is_secret() {
                MaybeSecret::Secret(Secret::new(s.value))
            } else {
                MaybeSecret::Plain(s.value)
            })
        });
        let version = if url.as_ref().is_some_and(|u| u.scheme.uses_grpc()) {
            HttpVersion::Http2
        } else {
            p.http_version
        };

        // Matcher.
        let expect = self.expect(loc, raw.expect.as_ref(), role, &p);

        // Timing and thresholds.
        let interval = self.layered_duration(
            loc,
            "interval",
            raw.interval.as_deref(),
            &defaults.interval,
            p.interval,
            &profile_from,
        );
        let timeout = self.layered_duration(
            loc,
            "timeout",
            raw.timeout.as_deref(),
            &defaults.timeout,
            p.timeout,
            &profile_from,
        );
        if let (Some((i, i_from)), Some((t, t_from))) = (&interval, &timeout) {
            let both_defaults = matches!((i_from, t_from), (From::Defaults(_), From::Defaults(_)));
            if t >= i && !both_defaults {
                let key = if matches!(t_from, From::View) || !matches!(i_from, From::View) {
                    "timeout"
                } else {
                    "interval"
                };
                self.error(
                    loc,
                    key,
                    format!(
                        "timeout {}{} must be below interval {}{}",
                        human(*t),
                        t_from.suffix(),
                        human(*i),
                        i_from.suffix()
                    ),
                );
            }
        }
        let rise = self.threshold(loc, "rise", raw.rise, p.rise);
        let fall = self.threshold(loc, "fall", raw.fall, p.fall);
        let max_body_bytes = match raw.max_body_bytes {
            Some(v) => self.max_body_bytes(loc, "max_body_bytes", v),
            None => Some(defaults.max_body_bytes.as_ref().map_or(DEFAULT_MAX_BODY_BYTES, |d| d.value)),
        };

        // DNS.
        let resolver = match &raw.resolver {
            Some(r) => self.resolver(loc, "resolver", r).map(Some),
            None => Some(defaults.resolver.as_ref().map(|d| d.value)),
        };
        let mut expect_addresses = Vec::new();
        for (i, a) in raw.expect_addresses.iter().flatten().enumerate() {
            let key = format!("expect_addresses[{i}]");
            let Some(a) = self.plain(loc, &key, a) else { continue };
            match a.trim().parse::<IpAddr>() {
                Ok(ip) => expect_addresses.push(ip),
                Err(_) => self.error(
                    loc,
                    &key,
                    format!("`{a}` is not an IP address (expect_addresses lists the addresses DNS must answer with)"),
                ),
            }
        }

        if self.errors.len() > before {
            return None;
        }
        let name = self.view_name(name?);
        let url = url?;
        let (interval, _) = interval?;
        let (timeout, _) = timeout?;
        Some(View {
            target: target.clone(),
            name,
            role,
            profile,
            scheme: url.scheme,
            url_endpoint: url.endpoint,
            path: url.path,
            url_display: url.display,
            connect_to,
            source,
            freebind,
            ip_version: ip_version?,
            proxy_protocol,
            tls: TlsSettings { sni: sni?, verify: raw.verify.unwrap_or(p.verify), ca_file, alpn },
            http: HttpSettings {
                method: method?,
                host: host?,
                headers: headers?,
                user_agent: user_agent?,
                body,
                version,
                connection_close: p.connection_close,
                title_case_headers: p.title_case_headers,
            },
            expect: expect?,
            interval,
            timeout,
            rise: rise?,
            fall: fall?,
            initial: p.initial,
            max_body_bytes: max_body_bytes?,
            resolver: resolver?,
            each_address: raw.each_address.unwrap_or(false),
            expect_addresses,
        })
    }

    /// The URL of a view. Secrets may sit in the user info (sent as `Authorization: Basic`), the
    /// path and the query; never in the host or port, which every output shows.
    fn url(&mut self, loc: &Loc, raw: &str) -> Option<UrlParts> {
        let raw = raw.trim();
        let Some(sep) = raw.find("://") else {
            self.error(
                loc,
                "url",
                format!("`{raw}` is not a URL: it has no scheme (write e.g. https://host/path)"),
            );
            return None;
        };
        let scheme_text = raw[..sep].to_ascii_lowercase();
        let scheme = match scheme_text.as_str() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            "tcp" => Scheme::Tcp,
            "tls" => Scheme::Tls,
            "grpc" => Scheme::Grpc,
            "grpcs" => Scheme::Grpcs,
            other => {
                self.error(
                    loc,
                    "url",
                    format!(
                        "unsupported scheme `{other}` in `{raw}`: use http, https, tcp, tls, grpc or grpcs"
                    ),
                );
                return None;
            }
        };
        // Split the template (before substitution) so a substituted value can never move the
        // boundaries between user info, host and path.
        let rest = &raw[sep + 3..];
        let authority_end = find_outside_substitutions(rest, &['/', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..authority_end];
        let (userinfo, hostport) = match rfind_outside_substitutions(authority, '@') {
            Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
            None => (None, authority),
        };
        let tail = &rest[authority_end..];

        let hostport = self.text(loc, "url", &self.bracket_node_ip(hostport));
        let tail = self.text(loc, "url", tail);
        let userinfo = match userinfo {
            Some(u) => Some(self.text(loc, "url", u)?),
            None => None,
        };
        let (hostport, tail) = (hostport?, tail?);
        let display = format!(
            "{scheme_text}://{}{}{}",
            userinfo.as_ref().map(|u| format!("{}@", u.display)).unwrap_or_default(),
            hostport.display,
            tail.display
        );
        if hostport.is_secret() {
            self.error(
                loc,
                "url",
                format!(
                    "the URL's host and port cannot hold a secret ({}): they are shown in every output",
                    hostport.secrets.join(", ")
                ),
            );
            return None;
        }
        if hostport.value.is_empty() || hostport.value.starts_with(':') {
            self.error(loc, "url", format!("`{display}` has an empty host"));
            return None;
        }
        let real = format!("{scheme_text}://{}{}", hostport.value, tail.value);
        let parsed = match url::Url::parse(&real) {
            Ok(u) => u,
            Err(e) => {
                self.error(loc, "url", format!("`{display}` is not a valid URL: {e}"));
                return None;
            }
        };
        let host = match parsed.host() {
            Some(url::Host::Ipv4(a)) => Host::Ip(IpAddr::V4(a)),
            Some(url::Host::Ipv6(a)) => Host::Ip(IpAddr::V6(a)),
            Some(url::Host::Domain(d)) if !d.is_empty() => match parse_host(d) {
                Ok(h) => h,
                Err(m) => {
                    self.error(loc, "url", format!("`{display}`: {m}"));
                    return None;
                }
            },
            _ => {
                self.error(loc, "url", format!("`{display}` has an empty host"));
                return None;
            }
        };
        let port = match (parsed.port(), scheme) {
            (Some(0), _) => {
                self.error(loc, "url", format!("`{display}`: port 0 cannot be dialed"));
                return None;
            }
            (Some(port), _) => port,
            (None, Scheme::Http | Scheme::Grpc) => 80,
            (None, Scheme::Https | Scheme::Grpcs) => 443,
            (None, Scheme::Tcp | Scheme::Tls) => {
                self.error(
                    loc,
                    "url",
                    format!(
                        "`{display}` needs a port: {}:// has no default (write {}://host:PORT)",
                        scheme.as_str(),
                        scheme.as_str()
                    ),
                );
                return None;
            }
        };
        let path = if scheme.uses_http() {
            let mut path = parsed.path().to_owned();
            if !path.starts_with('/') {
                path.insert(0, '/');
            }
            if let Some(q) = parsed.query() {
                path.push('?');
                path.push_str(q);
            }
            path
        } else {
            if !matches!(parsed.path(), "" | "/") || parsed.query().is_some() {
                let hint =
                    if scheme.uses_grpc() { " (name the gRPC service with expect.grpc_service)" } else { "" };
                self.error(
                    loc,
                    "url",
                    format!("`{display}`: {}:// URLs take no path or query{hint}", scheme.as_str()),
                );
                return None;
            }
            "/".to_owned()
        };
        let authorization = match userinfo {
            None => None,
            Some(_) if !scheme.uses_http() => {
                self.error(
                    loc,
                    "url",
                    format!("`{display}`: user info (user:password@) is sent by http and https views only"),
                );
                return None;
            }
            Some(u) => {
                let encoded = base64::engine::general_purpose::STANDARD.encode(u.value.as_bytes());
                Some(Secret::new(format!("Basic {encoded}")))
            }
        };
        // Both live as long as the view: no spare capacity (`format!` and pushes round it up,
        // which moves a URL of 17 to 24 bytes from a 32-byte into a 48-byte malloc chunk).
        let (mut path, mut display) = (path, display);
        path.shrink_to_fit();
        display.shrink_to_fit();
        Some(UrlParts { scheme, endpoint: Endpoint { host, port }, path, display, authorization })
    }

    fn source(&mut self, loc: &Loc, raw: &str, freebind: bool) -> Option<SourceBind> {
        let s = self.plain(loc, "source", raw)?;
        let s = s.trim();
        let requested = if s.contains('/') {
            s.parse::<IpNet>().ok().map(Source::Net)
        } else {
            s.parse::<IpAddr>().ok().map(Source::Addr)
        };
        let Some(requested) = requested else {
            self.error(
                loc,
                "source",
                format!("`{s}` is not an IP address or CIDR (e.g. 10.0.0.7 or 10.0.0.0/24)"),
            );
            return None;
        };
        match pick_source(requested, freebind) {
            Ok(addr) => Some(SourceBind { requested, addr }),
            Err(message) => {
                self.error(loc, "source", message);
                None
            }
        }
    }

    fn ca_file(&mut self, loc: &Loc, raw: &str) -> Option<PathBuf> {
        let s = self.plain(loc, "ca_file", raw)?;
        let path = self.dir.join(s.trim());
        // Watched even when it cannot be read now: it may appear (a Secret volume synced later
        // than the ConfigMap that names it).
        self.read_files.insert(path.clone());
        let mut text = Vec::new();
        let read =
            std::fs::File::open(&path).and_then(|f| f.take(MAX_CA_FILE_BYTES + 1).read_to_end(&mut text));
        match read {
            Err(e) => self.error(loc, "ca_file", format!("{} cannot be read: {e}", path.display())),
            Ok(n) if n as u64 > MAX_CA_FILE_BYTES => self.error(
                loc,
                "ca_file",
                format!("{} is larger than {} KiB", path.display(), MAX_CA_FILE_BYTES / 1024),
            ),
            Ok(_) if !text.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") => self.error(
                loc,
                "ca_file",
                format!("{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)", path.display()),
            ),
            Ok(_) => return Some(path),
        }
        None
    }

    fn headers(
        &mut self,
        loc: &Loc,
        p: &ProfileDefaults,
        raw: Option<&RawHeaders>,
        url_authorization: Option<Secret>,
    ) -> Option<Vec<(http::HeaderName, MaybeSecret)>> {
        let mut ok = true;
        let mut headers: Vec<(http::HeaderName, MaybeSecret)> = Vec::new();
        for (name, value) in p.headers {
            // Profile headers are ours and static; a bad one would be a bug caught by the tests.
            if let Ok(n) = http::HeaderName::from_bytes(name.as_bytes()) {
                headers.push((n, MaybeSecret::Plain((*value).to_owned())));
            }
        }
        let from_url = url_authorization.is_some();
        if let Some(a) = url_authorization {
            headers.push((http::header::AUTHORIZATION, MaybeSecret::Secret(a)));
        }
        let mut set_here: Vec<http::HeaderName> = Vec::new();
        for (name, value) in raw.map(|h| h.0.as_slice()).unwrap_or_default() {
            let key = format!("headers.{name}");
            let lower = name.to_ascii_lowercase();
            let Ok(hname) = http::HeaderName::from_bytes(lower.as_bytes()) else {
                self.error(loc, &key, format!("`{name}` is not a valid HTTP header name"));
                ok = false;
                continue;
            };
            let reserved = match lower.as_str() {
                "host" => Some("set the Host header with the `host` key (a value, or false for none)"),
                "user-agent" => {
                    Some("set the User-Agent with the `user_agent` key (a value, or false for none)")
                }
                "content-length" | "transfer-encoding" => Some("is computed from `body`"),
                _ => None,
            };
            if let Some(why) = reserved {
                self.error(loc, &key, why);
                ok = false;
                continue;
            }
            if set_here.contains(&hname) {
                self.error(loc, &key, format!("header `{lower}` is set twice"));
                ok = false;
                continue;
            }
            if from_url && hname == http::header::AUTHORIZATION {
                self.error(loc, &key, "the URL's user info already sets Authorization; keep one of the two");
                ok = false;
                continue;
            }
            let Some(v) = self.text(loc, &key, value) else {
                ok = false;
                continue;
            };
            let secret = v.is_secret() || SECRET_HEADERS.contains(&lower.as_str());
            if http::HeaderValue::from_bytes(v.value.as_bytes()).is_err() {
                let what = if secret && !v.is_secret() { "the value".to_owned() } else { v.describe() };
                self.error(
                    loc,
                    &key,
                    format!("{what} is not a valid header value (no control characters or newlines)"),
                );
                ok = false;
                continue;
            }
            let value =
                if secret { MaybeSecret::Secret(Secret::new(v.value)) } else { MaybeSecret::Plain(v.value) };
            set_here.push(hname.clone());
            // A view's header replaces the profile's in its wire position.
            match headers.iter_mut().find(|(n, _)| *n == hname) {
                Some(slot) => slot.1 = value,
                None => headers.push((hname, value)),
            }
        }
        ok.then_some(headers)
    }

    fn expect(
        &mut self,
        loc: &Loc,
        raw: Option<&RawExpect>,
        role: Role,
        p: &ProfileDefaults,
    ) -> Option<Expect> {
        let before = self.errors.len();
        let eloc = loc.child("expect");
        let status = match raw.and_then(|e| e.status.as_ref()) {
            None if role == Role::Client => vec![200..=399],
            None => p.status.to_vec(),
            Some(list) if list.0.is_empty() => {
                self.error(&eloc, "status", "is empty: no response would pass (e.g. status = [\"200-299\"])");
                Vec::new()
            }
            Some(list) => {
                let mut ranges = Vec::new();
                for (i, item) in list.0.iter().enumerate() {
                    match parse_status(&item.0) {
                        Ok(r) => ranges.push(r),
                        Err(m) => self.error(&eloc, &format!("status[{i}]"), m),
                    }
                }
                ranges
            }
        };
        let body_contains = raw.and_then(|e| e.body_contains.as_ref()).and_then(|b| {
            let b = self.plain(&eloc, "body_contains", b)?;
            if b.is_empty() {
                self.error(&eloc, "body_contains", "is empty: it would match every body");
                return None;
            }
            Some(b)
        });
        let body_regex = raw.and_then(|e| e.body_regex.as_ref()).and_then(|r| {
            let r = self.plain(&eloc, "body_regex", r)?;
            if r.len() > MAX_REGEX_LEN {
                self.error(
                    &eloc,
                    "body_regex",
                    format!("is {} bytes long; the limit is {MAX_REGEX_LEN}", r.len()),
                );
                return None;
            }
            match regex::RegexBuilder::new(&r)
                .size_limit(REGEX_SIZE_LIMIT)
                .dfa_size_limit(REGEX_SIZE_LIMIT)
                .build()
            {
                Ok(re) => Some(re),
                Err(e) => {
                    self.error(&eloc, "body_regex", format!("is not a valid regex: {e}"));
                    None
                }
            }
        });
        let grpc_service = match raw.and_then(|e| e.grpc_service.as_ref()) {
            Some(s) => self.plain(&eloc, "grpc_service", s).unwrap_or_default(),
            None => String::new(),
        };
        if self.errors.len() > before {
            return None;
        }
        Some(Expect {
            status,
            body_contains,
            body_regex,
            kube_proxy_endpoints: p.kube_proxy_endpoints,
            grpc_service,
        })
    }

    /// A duration with its origin: the view's key, else `[defaults]`, else the profile.
    fn layered_duration(
        &mut self,
        loc: &Loc,
        key: &str,
        raw: Option<&str>,
        default: &Option<Layered<Duration>>,
        profile: Duration,
        profile_from: &str,
    ) -> Option<(Duration, From)> {
        match (raw, default) {
            (Some(r), _) => self.duration(loc, key, r).map(|d| (d, From::View)),
            (None, Some(d)) => Some((d.value, From::Defaults(d.from.clone()))),
            (None, None) => Some((profile, From::Profile(profile_from.to_owned()))),
        }
    }

    fn duration(&mut self, loc: &Loc, key: &str, raw: &str) -> Option<Duration> {
        let s = self.plain(loc, key, raw)?;
        match humantime::parse_duration(s.trim()) {
            Ok(d) if d.is_zero() => {
                self.error(loc, key, "must be above 0 (e.g. 1s)");
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                self.error(loc, key, format!("`{s}` is not a duration (e.g. 500ms, 2s, 1m): {e}"));
                None
            }
        }
    }

    fn threshold(&mut self, loc: &Loc, key: &str, raw: Option<u32>, profile: u32) -> Option<u32> {
        match raw {
            Some(0) => {
                self.error(loc, key, format!("{key} = 0 would never change the verdict: use 1 or more"));
                None
            }
            Some(n) => Some(n),
            None => Some(profile),
        }
    }

    fn max_body_bytes(&mut self, loc: &Loc, key: &str, raw: u64) -> Option<usize> {
        if raw == 0 || raw > MAX_BODY_BYTES_CAP {
            self.error(loc, key, format!("{raw} is out of range: use 1 to {MAX_BODY_BYTES_CAP} (16 MiB)"));
            return None;
        }
        usize::try_from(raw).ok()
    }

    fn resolver(&mut self, loc: &Loc, key: &str, raw: &str) -> Option<SocketAddr> {
        let s = self.plain(loc, key, &self.bracket_node_ip(raw.trim()))?;
        match parse_resolver(s.trim()) {
            Some(addr) => Some(addr),
            None => {
                self.error(
                    loc,
                    key,
                    format!("`{s}` is not a nameserver address: write an IP or ip:port (e.g. 10.0.0.10 or [fd00::a]:53)"),
                );
                None
            }
        }
    }

    fn ip_version(&mut self, loc: &Loc, key: &str, raw: &RawIpVersion) -> Option<IpVersion> {
        let s = self.plain(loc, key, &raw.0)?;
        match s.trim().to_ascii_lowercase().as_str() {
            "any" => Some(IpVersion::Any),
            "4" | "v4" => Some(IpVersion::V4),
            "6" | "v6" => Some(IpVersion::V6),
            _ => {
                self.error(loc, key, format!("`{s}` is not an IP version: use \"any\", 4 or 6"));
                None
            }
        }
    }

    fn user_agent(&mut self, loc: &Loc, key: &str, raw: &Toggle) -> Option<Option<String>> {
        match raw {
            Toggle::Off => Some(None),
            Toggle::Value(v) => {
                let ua = self.plain(loc, key, v)?;
                if ua.is_empty() || http::HeaderValue::from_str(&ua).is_err() {
                    self.error(
                        loc,
                        key,
                        format!("`{ua}` is not a User-Agent value (use user_agent = false to send none)"),
                    );
                    return None;
                }
                Some(Some(ua))
            }
        }
    }
}

fn default_admin_listen() -> SocketAddr {
    DEFAULT_ADMIN_LISTEN.parse().unwrap_or(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9464))
}

/// A duration as humans write it (`1s`, `800ms`).
pub(super) fn human(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// The first of `chars` in `s` outside `${..}` substitutions.
fn find_outside_substitutions(s: &str, chars: &[char]) -> Option<usize> {
    let mut depth_end: Option<usize> = None;
    for (i, c) in s.char_indices() {
        if let Some(end) = depth_end {
            if i < end {
                continue;
            }
            depth_end = None;
        }
        if s[i..].starts_with("${") {
            depth_end = s[i..].find('}').map(|e| i + e + 1).or(Some(s.len()));
            continue;
        }
        if chars.contains(&c) {
            return Some(i);
        }
    }
    None
}

/// The last `ch` in `s` outside `${..}` substitutions.
fn rfind_outside_substitutions(s: &str, ch: char) -> Option<usize> {
    let mut found = None;
    let mut from = 0;
    while let Some(i) = find_outside_substitutions(&s[from..], &[ch]) {
        found = Some(from + i);
        from += i + ch.len_utf8();
    }
    found
}

/// A DNS name (LDH labels, `_` allowed for service names) of at most 253 bytes.
fn valid_dns_name(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// A host as written in a URL or `connect_to`: an IP literal or a DNS name.
fn parse_host(s: &str) -> Result<Host, String> {
    let bare = s.strip_prefix('[').and_then(|b| b.strip_suffix(']')).unwrap_or(s);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(Host::Ip(ip));
    }
    let lower = s.to_ascii_lowercase();
    if valid_dns_name(&lower) {
        Ok(Host::Name(lower.strip_suffix('.').unwrap_or(&lower).to_owned()))
    } else {
        Err(format!("`{s}` is not a DNS name or an IP address"))
    }
}

/// `host:port` or `[v6]:port`.
fn parse_endpoint(s: &str) -> Result<Endpoint, String> {
    if let Ok(sa) = s.parse::<SocketAddr>() {
        if sa.port() == 0 {
            return Err(format!("`{s}`: port 0 cannot be dialed"));
        }
        return Ok(Endpoint { host: Host::Ip(sa.ip()), port: sa.port() });
    }
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(format!("`{s}` is not host:port (the port is required, e.g. 203.0.113.10:443)"));
    };
    if host.contains(':') && !host.starts_with('[') {
        return Err(format!("`{s}`: an IPv6 address needs brackets, e.g. [2001:db8::1]:443"));
    }
    let port = match port.parse::<u16>() {
        Ok(p) if p != 0 => p,
        _ => return Err(format!("`{s}`: `{port}` is not a port (1-65535)")),
    };
    if host.is_empty() {
        return Err(format!("`{s}` has an empty host"));
    }
    Ok(Endpoint { host: parse_host(host)?, port })
}

/// `ip`, `ip:port`, `[v6]` or `[v6]:port`; the port defaults to 53.
fn parse_resolver(s: &str) -> Option<SocketAddr> {
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return (sa.port() != 0).then_some(sa);
    }
    let bare = s.strip_prefix('[').and_then(|b| b.strip_suffix(']')).unwrap_or(s);
    bare.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53))
}

fn parse_net(s: &str) -> Option<IpNet> {
    let s = s.trim();
    s.parse::<IpNet>().ok().or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
}

/// `200`, `"200"`, `"200-299"` or `"2xx"`.
fn parse_status(s: &str) -> Result<RangeInclusive<u16>, String> {
    let s = s.trim();
    let code = |t: &str| -> Result<u16, String> {
        match t.trim().parse::<u16>() {
            Ok(c) if (100..=599).contains(&c) => Ok(c),
            _ => Err(format!("`{t}` is not an HTTP status (100-599)")),
        }
    };
    let lower = s.to_ascii_lowercase();
    if let Some(digit) = lower.strip_suffix("xx") {
        let d = code(&format!("{digit}00"))?;
        return Ok(d..=d + 99);
    }
    match s.split_once('-') {
        Some((lo, hi)) => {
            let (lo, hi) = (code(lo)?, code(hi)?);
            if lo > hi {
                return Err(format!("status range `{s}` is backwards: write low-high, e.g. {hi}-{lo}"));
            }
            Ok(lo..=hi)
        }
        None => code(s).map(|c| c..=c),
    }
}

/// A method token; methods are case-sensitive, so `get` is a mistake, not an extension method.
fn parse_method(m: &str) -> Result<http::Method, String> {
    const KNOWN: [&str; 9] = ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "CONNECT"];
    let upper = m.to_ascii_uppercase();
    if m != upper && KNOWN.contains(&upper.as_str()) {
        return Err(format!("`{m}`: methods are case-sensitive; write `{upper}`"));
    }
    let token =
        !m.is_empty() && m.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    match http::Method::from_bytes(m.as_bytes()) {
        Ok(method) if token => Ok(method),
        _ => Err(format!("`{m}` is not an HTTP method (e.g. GET, HEAD, OPTIONS)")),
    }
}

/// The address to bind for `requested`: with `freebind`, the address itself or the network's
/// first host address; without, a local address, found by binding a UDP socket to each candidate
/// (binding sends no packet).
fn pick_source(requested: Source, freebind: bool) -> Result<IpAddr, String> {
    match requested {
        Source::Addr(addr) => {
            if freebind || can_bind(addr) {
                Ok(addr)
            } else {
                Err(format!("source {addr} is not an address of this host: add it to an interface, or set freebind = true"))
            }
        }
        Source::Net(net) => {
            let first = first_host(net);
            if freebind {
                return Ok(first);
            }
            let mut candidates: Vec<IpAddr> = if_addrs::get_if_addrs()
                .map(|ifs| ifs.iter().map(|i| i.ip()).filter(|ip| net.contains(ip)).collect())
                .unwrap_or_default();
            candidates.push(first);
            candidates.into_iter().find(|ip| can_bind(*ip)).ok_or_else(|| {
                format!(
                    "source {net} holds no address of this host: add one to an interface, or set freebind = true to bind {first} anyway"
                )
            })
        }
    }
}

fn can_bind(ip: IpAddr) -> bool {
    UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

/// The first host address of `net` (the network address itself for /31, /32, /127 and /128).
fn first_host(net: IpNet) -> IpAddr {
    match net {
        IpNet::V4(n) if n.prefix_len() >= 31 => IpAddr::V4(n.network()),
        IpNet::V4(n) => IpAddr::V4(Ipv4Addr::from(u32::from(n.network()).saturating_add(1))),
        IpNet::V6(n) if n.prefix_len() >= 127 => IpAddr::V6(n.network()),
        IpNet::V6(n) => IpAddr::V6(Ipv6Addr::from(u128::from(n.network()).saturating_add(1))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Targets are compiled file by file after every file's settings (each file parsed twice):
    /// errors still come in the order of one pass, parse errors first, then settings, then
    /// targets in file order, and a later file's `[defaults]` apply to an earlier file's targets.
    #[test]
    fn two_passes_keep_the_error_order_and_late_defaults() {
        let dir = tempfile::tempdir().expect("tempdir");
        let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).expect("write");
        write("10-a.toml", "[[target]]\nname = \"a\"\n[target.client]\nurl = \"ftp://x/\"\n");
        write("20-b.toml", "[defaults]\ninterval = \"soon\"\n[[target]]\nname = \"b b\"\n");
        write("30-c.toml", "[[target]\n");
        let env: HashMap<String, String> = HashMap::new();
        let errors = match load_dir(dir.path(), &env).0 {
            Ok(_) => panic!("compiled"),
            Err(e) => e.0,
        };
        let got: Vec<(String, &str)> = errors
            .iter()
            .map(|e| {
                let file =
                    e.file.as_ref().and_then(|f| f.file_name()).map(|f| f.to_string_lossy().into_owned());
                (file.unwrap_or_default(), e.key.as_str())
            })
            .collect();
        let want = [
            ("30-c.toml", ""),
            ("20-b.toml", "defaults.interval"),
            ("10-a.toml", "target[a].client.url"),
            ("20-b.toml", "target[b b].name"),
            ("20-b.toml", "target[b b].client"),
        ];
        let want: Vec<(String, &str)> = want.iter().map(|(f, k)| (f.to_string(), *k)).collect();
        assert_eq!(got, want, "{}", ConfigErrors(errors.clone()));

        write("20-b.toml", "[defaults]\ninterval = \"7s\"\n");
        write("30-c.toml", "[[target]]\nname = \"c\"\n[target.client]\nurl = \"http://127.0.0.1/\"\n");
        write("10-a.toml", "[[target]]\nname = \"a\"\n[target.client]\nurl = \"http://127.0.0.1/\"\n");
        let plan = match load_dir(dir.path(), &env).0 {
            Ok(plan) => plan,
            Err(e) => panic!("{e}"),
        };
        let intervals: Vec<u64> = plan.targets.iter().map(|t| t.client.interval.as_secs()).collect();
        assert_eq!(intervals, [7, 7]);
    }

    #[test]
    fn status_forms() {
        assert_eq!(parse_status("200"), Ok(200..=200));
        assert_eq!(parse_status("200-299"), Ok(200..=299));
        assert_eq!(parse_status("3xx"), Ok(300..=399));
        assert!(parse_status("299-200").is_err_and(|m| m.contains("backwards")));
        assert!(parse_status("700").is_err());
        assert!(parse_status("abc").is_err());
    }

    #[test]
    fn first_host_of_networks() {
        let net = |s: &str| s.parse::<IpNet>().unwrap_or_default();
        assert_eq!(
            first_host(net("10.0.0.0/24")),
            "10.0.0.1".parse::<IpAddr>().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
        );
        assert_eq!(first_host(net("10.0.0.7/32")).to_string(), "10.0.0.7");
        assert_eq!(first_host(net("fd00::/64")).to_string(), "fd00::1");
    }

    #[test]
    fn substitutions_do_not_move_url_boundaries() {
        assert_eq!(find_outside_substitutions("u:${file:/run/pw}@h/x", &['/', '?', '#']), Some(19));
        assert_eq!(rfind_outside_substitutions("u:${env:A}@h", '@'), Some(10));
        assert_eq!(rfind_outside_substitutions("h", '@'), None);
    }

    #[test]
    fn endpoints_and_resolvers() {
        assert!(parse_endpoint("[::1]:443").is_ok_and(|e| e.port == 443));
        assert!(parse_endpoint("lb.example.com:8443")
            .is_ok_and(|e| e.host == Host::Name("lb.example.com".into())));
        assert!(parse_endpoint("::1:443").is_err());
        assert!(parse_endpoint("host").is_err());
        assert_eq!(parse_resolver("10.0.0.10").map(|a| a.port()), Some(53));
        assert_eq!(parse_resolver("[fd00::a]:5353").map(|a| a.port()), Some(5353));
        assert_eq!(parse_resolver("dns.example"), None);
    }

    #[test]
    fn methods() {
        assert!(parse_method("OPTIONS").is_ok());
        assert!(parse_method("get").is_err_and(|m| m.contains("write `GET`")));
        assert!(parse_method("GE T").is_err());
        assert!(parse_method("").is_err());
    }
}
