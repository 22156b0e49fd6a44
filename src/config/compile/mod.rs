//! The compiler: loaded files -> a [`Plan`], collecting every error.
//!
//! [`Compiler`] owns the error list and the substitution environment. It compiles the settings
//! first ([`settings`]), then the targets file by file, and each target's views one by one
//! ([`view`], with the URL in [`url`] and the value parsers in [`values`]); it carries on past
//! every error, so one run reports everything wrong. Messages say what would be right, name the
//! key path (`target[shop].checker[nlb].timeout`), and never quote a substituted secret.

mod cluster;
mod settings;
mod url;
mod values;
mod vantage;
mod view;

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use config::{Value, ValueKind};

use self::settings::{Defaults, RawDiffKeys};
use super::key_path::{deserialize_in, label_of, render_key_path, Location};
use super::load::{self, SourceFile};
use super::plan::{Plan, Target};
use super::raw::RawTarget;
use super::subst::{self, Substituted};
use super::view::{Role, View};
use super::{ConfigError, ConfigErrors, Env};

/// Loads and compiles every configuration file of `dir`; the plan or every error, and either way
/// the files `${file:..}` and `ca_file` named.
pub(super) fn compile_dir(
    dir: &Path,
    env: &dyn Env,
    generated: &[(PathBuf, String)],
) -> (Result<Plan, ConfigErrors>, Vec<PathBuf>) {
    let mut paths = match load::list_files(dir) {
        Ok(paths) => paths,
        Err(e) => return (Err(ConfigErrors(vec![e])), Vec::new()),
    };
    // Relative `ca_file` and `${file:..}` paths start where the files are.
    let base = if dir.is_file() { dir.parent().unwrap_or(Path::new("")) } else { dir };
    let mut compiler = Compiler::new(env, base);
    let mut files: Vec<SourceFile> =
        paths.iter().filter_map(|p| SourceFile::read(p, &mut compiler.errors)).collect();
    for (path, text) in generated {
        files.extend(SourceFile::parse(path, Cow::Borrowed(text.as_str()), &mut compiler.errors));
        paths.push(path.clone());
    }
    compiler.compile(files, paths)
}

/// Compiles one file's `text` as if it had been read from `path`: errors name `path`, relative
/// `ca_file` and `${file:..}` paths resolve against its directory. Nothing is read for the file
/// itself.
pub(super) fn compile_text(path: &Path, text: &str, env: &dyn Env) -> Result<Plan, ConfigErrors> {
    let mut compiler = Compiler::new(env, path.parent().unwrap_or(Path::new("")));
    let files: Vec<SourceFile> =
        SourceFile::parse(path, Cow::Borrowed(text), &mut compiler.errors).into_iter().collect();
    compiler.compile(files, vec![path.to_path_buf()]).0
}

/// Compiles one configuration: every error found so far, and what substitutions read.
struct Compiler<'a> {
    env: &'a dyn Env,
    /// Where relative `ca_file` and `${file:..}` paths start.
    dir: &'a Path,
    errors: Vec<ConfigError>,
    /// View names compiled so far: views of the same name (every `client`, and checker names
    /// repeated across targets) share one allocation.
    view_names: HashSet<Arc<str>>,
    /// Files named by `${file:..}` substitutions and `ca_file`, read or not.
    read_files: BTreeSet<PathBuf>,
}

/// Target name -> the file that first defined it, for the duplicate-name error. Its keys and
/// values are the targets' own shared names and paths: alive until every file is compiled, it
/// makes no allocation per target that would be left as holes in the heap once it is dropped.
type FirstDefinitions = HashMap<Arc<str>, Arc<Path>>;

impl<'a> Compiler<'a> {
    fn new(env: &'a dyn Env, dir: &'a Path) -> Compiler<'a> {
        Compiler { env, dir, errors: Vec::new(), view_names: HashSet::new(), read_files: BTreeSet::new() }
    }

    /// Settings and targets of the parsed `files` (from `paths`), or every error found; and,
    /// either way, the files `${file:..}` and `ca_file` named.
    fn compile(
        mut self,
        mut files: Vec<SourceFile<'_>>,
        paths: Vec<PathBuf>,
    ) -> (Result<Plan, ConfigErrors>, Vec<PathBuf>) {
        let settings = self.settings(&files);
        let conditions = self.conditions(&mut files);
        let mut targets = self.targets(&mut files, &settings.defaults);
        cluster::attach(&mut targets, &conditions);
        let read_files: Vec<PathBuf> = self.read_files.into_iter().collect();
        if self.errors.is_empty() {
            let plan = Plan {
                targets,
                admin: settings.admin,
                export: settings.export,
                vantage: settings.vantage,
                discovery: settings.discovery,
                conditions,
                files: paths,
                read_files: read_files.clone(),
            };
            (Ok(plan), read_files)
        } else {
            (Err(ConfigErrors(self.errors)), read_files)
        }
    }
}

impl Compiler<'_> {
    /// Records an error at `key` of `at`.
    fn error(&mut self, at: &Location, key: &str, message: impl Into<String>) {
        let mut message = message.into();
        if let Some(note) = &at.note {
            message = format!("{message} ({note})");
        }
        self.errors.push(ConfigError { file: at.file.clone(), key: at.key(key), message });
    }

    /// Deserializes the table `value` at `at`, or reports the key serde failed on.
    fn deserialize<T: serde::de::DeserializeOwned>(&mut self, at: &Location, value: Value) -> Option<T> {
        self.deserialize_in(at, value, &[])
    }

    /// [`Compiler::deserialize`] for a table that rejects later some keys its serde type takes
    /// (`not_here`): an unknown key's message neither lists nor suggests them.
    fn deserialize_in<T: serde::de::DeserializeOwned>(
        &mut self,
        at: &Location,
        value: Value,
        not_here: &[&str],
    ) -> Option<T> {
        match deserialize_in(value, not_here) {
            Ok(raw) => Some(raw),
            Err((segments, message)) => {
                self.error(at, &render_key_path(&segments), message);
                None
            }
        }
    }

    /// Substitutes `raw`; each substitution problem is an error at `key`.
    fn text(&mut self, at: &Location, key: &str, raw: &str) -> Option<Substituted> {
        let mut files = Vec::new();
        let substituted = subst::substitute(raw, self.env, self.dir, &mut files);
        self.read_files.extend(files);
        match substituted {
            Ok(s) => Some(s),
            Err(problems) => {
                for problem in problems {
                    self.error(at, key, problem);
                }
                None
            }
        }
    }

    /// Substitutes `raw` for a key that is printed in outputs, so may not hold a secret.
    /// Said from the text as written, before substituting: on the first run, when the variable
    /// or file may not exist yet, the error is this one and not "not set".
    fn plain(&mut self, at: &Location, key: &str, raw: &str) -> Option<String> {
        let secrets = subst::secret_references(raw);
        if !secrets.is_empty() {
            self.error(
                at,
                key,
                format!(
                    "cannot hold a secret ({}): values of ${{env:..}} and ${{file:..}} are secrets, and \
                     this key is shown in outputs; secrets belong in headers, body, or the URL's user info, path or query",
                    secrets.join(", ")
                ),
            );
            return None;
        }
        Some(self.text(at, key, raw)?.value)
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

    /// Compiles the targets of `files` in file order, once every file's settings are known:
    /// each file's targets are parsed again and compiled item by item, the tree freed as it
    /// goes, before the next file's is built.
    fn targets(&mut self, files: &mut [SourceFile<'_>], defaults: &Defaults) -> Vec<Target> {
        let mut targets = Vec::new();
        let mut first_definitions = FirstDefinitions::new();
        for f in files {
            let Some(items) = f.take_targets(&mut self.errors) else { continue };
            let file: Arc<Path> = Arc::from(f.path.as_path());
            for (i, item) in items.into_iter().enumerate() {
                let at = Location::new(&f.path, format!("target[{}]", label_of(&item, i)));
                if let Some(t) = self.target(&at, item, defaults, &file, &mut first_definitions) {
                    targets.push(t);
                }
            }
        }
        targets
    }

    /// One `[[target]]` from `file`: its name, source allowlist, diff settings and views.
    fn target(
        &mut self,
        at: &Location,
        value: Value,
        defaults: &Defaults,
        file: &Arc<Path>,
        first_definitions: &mut FirstDefinitions,
    ) -> Option<Target> {
        let before = self.errors.len();
        let value = self.single_bracket_checker(at, value);
        let raw: RawTarget = self.deserialize(at, value)?;
        let name = self.target_name(at, raw.name.as_deref(), file, first_definitions);
        let id = match raw.id {
            Some(raw) => self.plain(at, "id", &raw).and_then(|id| self.name(at, "id", id.trim().to_owned())),
            None => Some(name.to_string()),
        };
        let id: Arc<str> = id.map(Arc::from).unwrap_or_else(|| name.clone());
        let allow_sources = self.allow_sources(at, raw.allow_sources.as_deref().unwrap_or_default());
        let diff_keys = RawDiffKeys {
            attribution: raw.attribution,
            attribution_interval: raw.attribution_interval,
            max_hybrids: raw.max_hybrids,
            hold: raw.hold,
        };
        let diff = self.diff_settings(diff_keys, defaults.diff, |key| (at.clone(), key.to_owned()));
        let mut client = self.client_view(at, raw.client, &name, defaults);
        let mut checkers = self.checker_views(at, raw.checker.unwrap_or_default(), &name, defaults);
        if *id != *name {
            client.iter_mut().chain(checkers.iter_mut()).for_each(|v| v.target_id = id.clone());
        }
        let cluster = raw.cluster.and_then(|c| self.cluster(at, c)).map(Arc::new);
        if self.errors.len() > before {
            return None;
        }
        Some(Target { name, id, allow_sources, client: client?, checkers, diff, cluster })
    }

    /// `[target.checker]` (one table) where `[[target.checker]]` (a list) is meant: said so,
    /// and left out, so the rest of the target is still checked.
    fn single_bracket_checker(&mut self, at: &Location, mut value: Value) -> Value {
        if let ValueKind::Table(t) = &mut value.kind {
            if t.get("checker").is_some_and(|c| matches!(c.kind, ValueKind::Table(_))) {
                t.shift_remove("checker");
                self.error(
                    at,
                    "checker",
                    "write [[target.checker]] with double brackets: a target has a list of checker \
                     views, and [target.checker] is a single table",
                );
            }
        }
        value
    }

    /// The target's name, checked and claimed for `file` (empty when it has none valid: its
    /// views still compile, for their errors).
    fn target_name(
        &mut self,
        at: &Location,
        raw: Option<&str>,
        file: &Arc<Path>,
        first_definitions: &mut FirstDefinitions,
    ) -> Arc<str> {
        let name = match raw {
            None => {
                self.error(at, "name", "missing name: every target needs a unique name");
                None
            }
            Some(raw) => self.plain(at, "name", raw).and_then(|n| self.name(at, "name", n)),
        };
        let Some(name) = name else { return Arc::from("") };
        let name: Arc<str> = Arc::from(name);
        match first_definitions.get(&name) {
            Some(first) => {
                let first = first.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
                self.error(at, "name", format!("duplicate target name `{name}` (first defined in {first})"));
            }
            None => {
                first_definitions.insert(name.clone(), file.clone());
            }
        }
        name
    }

    /// `allow_sources`: the LB's source allowlist, as networks.
    fn allow_sources(&mut self, at: &Location, raw: &[String]) -> Vec<ipnet::IpNet> {
        let mut allow_sources = Vec::new();
        for (i, s) in raw.iter().enumerate() {
            let key = format!("allow_sources[{i}]");
            let Some(s) = self.plain(at, &key, s) else { continue };
            match values::parse_net(&s) {
                Some(net) => allow_sources.push(net),
                None => {
                    self.error(at, &key, format!("`{s}` is not an IP address or CIDR (e.g. 35.191.0.0/16)"))
                }
            }
        }
        allow_sources
    }

    /// `[target.client]`: exactly one table.
    fn client_view(
        &mut self,
        at: &Location,
        raw: Option<Value>,
        target: &Arc<str>,
        defaults: &Defaults,
    ) -> Option<View> {
        match raw {
            None => {
                self.error(
                    at,
                    "client",
                    "missing [target.client]: every target needs exactly one client view (checkers are optional)",
                );
                None
            }
            Some(v) if matches!(v.kind, ValueKind::Array(_)) => {
                self.error(
                    at,
                    "client",
                    "exactly one client view: write [target.client], not [[target.client]]",
                );
                None
            }
            Some(v) => self.view(&at.child("client"), v, Role::Client, target, defaults),
        }
    }

    /// `[[target.checker]]`, each named uniquely within the target.
    fn checker_views(
        &mut self,
        at: &Location,
        raw: Vec<Value>,
        target: &Arc<str>,
        defaults: &Defaults,
    ) -> Vec<View> {
        // Sized exactly: a Vec grown by pushes keeps room for four 640-byte views, and most
        // targets have one or two checkers.
        let mut checkers = Vec::with_capacity(raw.len());
        let mut names: HashMap<String, usize> = HashMap::new();
        for (j, v) in raw.into_iter().enumerate() {
            let checker_at = at.child(&format!("checker[{}]", label_of(&v, j)));
            if let ValueKind::Table(t) = &v.kind {
                if let Some(ValueKind::String(n)) = t.get("name").map(|n| &n.kind) {
                    if let Some(first) = names.insert(n.clone(), j) {
                        self.error(
                            &checker_at,
                            "name",
                            format!("duplicate checker name `{n}` in this target (also checker[{first}])"),
                        );
                    }
                }
            }
            if let Some(view) = self.view(&checker_at, v, Role::Checker, target, defaults) {
                checkers.push(view);
            }
        }
        checkers
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
    fn name(&mut self, at: &Location, key: &str, name: String) -> Option<String> {
        if name.is_empty()
            || !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            self.error(
                at,
                key,
                format!("`{name}` is not a valid name: use letters, digits, '.', '_' and '-'"),
            );
            return None;
        }
        Some(name)
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
        let errors = match compile_dir(dir.path(), &env, &[]).0 {
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
        let plan = match compile_dir(dir.path(), &env, &[]).0 {
            Ok(plan) => plan,
            Err(e) => panic!("{e}"),
        };
        let intervals: Vec<u64> = plan.targets.iter().map(|t| t.client.interval.as_secs()).collect();
        assert_eq!(intervals, [7, 7]);
    }
}
