//! Configuration: `probes.d/` files (raw serde types, unknown keys rejected) compiled into a typed,
//! immutable [`Plan`]. Compilation collects every error, each naming the file and the key path.
//!
//! - `load`: files -> parsed trees; settings layered across files and `PARALLAX_...` overrides,
//!   every value keeping its origin; each file's `[[target]]` items.
//! - `raw`: the serde shapes of the files; `subst`: `${..}` substitution; `key_path`: where an
//!   error is.
//! - `compile`: the compiler, raw settings and targets -> [`Plan`].
//! - [`plan`]: [`Plan`], [`Target`], the settings; [`view`]: [`View`] and what it is made of,
//!   with the rules derived from it (SNI, Host header, displayed path); `secret`: [`Secret`].
//! - [`profiles`]: what each checker profile supplies; `explain`: `parallax check`'s output.
//! - [`adhoc`]: a target given on the command line (`parallax probe URL --as ...`), as probes.d
//!   text compiled like a file.

pub mod adhoc;
pub mod cluster;
mod compile;
pub mod discovery;
mod explain;
mod key_path;
mod load;
pub mod plan;
pub mod profiles;
mod raw;
mod secret;
mod subst;
pub mod vantage;
pub mod view;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

pub use adhoc::AdHoc;
pub use cluster::{ClusterFacts, Condition, ConditionKind, TlsEntry};
pub use discovery::{KubernetesDiscovery, Mode, ProviderChoice, Selector};
pub use explain::explain;
pub use load::{read_input, InputError, MAX_CA_FILE_BYTES};
pub use plan::*;
pub use secret::{MaybeSecret, Secret};
pub use vantage::{Vantage, VantageKind};
pub use view::*;

/// Where substitutions read `${NODE_NAME}`, `${NODE_IP}` and `${env:NAME}` from. Injected so
/// tests do not touch the process environment.
pub trait Env {
    /// The value of variable `name`, if set.
    fn var(&self, name: &str) -> Option<String>;

    /// Every variable whose name starts with `prefix`, for `PARALLAX_...` setting overrides.
    /// The default lists none: an `Env` that cannot enumerate its variables overrides nothing.
    fn vars_with_prefix(&self, prefix: &str) -> Vec<(String, String)> {
        let _ = prefix;
        Vec::new()
    }
}

/// The process environment (`NODE_NAME`/`NODE_IP` are set by the Kubernetes downward API).
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    fn vars_with_prefix(&self, prefix: &str) -> Vec<(String, String)> {
        // Variables that are not Unicode cannot be settings; skip them instead of failing.
        std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .filter(|(k, _)| k.starts_with(prefix))
            .collect()
    }
}

impl Env for HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }

    fn vars_with_prefix(&self, prefix: &str) -> Vec<(String, String)> {
        let mut vars: Vec<(String, String)> =
            self.iter().filter(|(k, _)| k.starts_with(prefix)).map(|(k, v)| (k.clone(), v.clone())).collect();
        // HashMap order is random; settings layering must not be.
        vars.sort();
        vars
    }
}

/// One configuration error: where, and what is wrong. Never contains a secret value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file the key came from, when known.
    pub file: Option<PathBuf>,
    /// The key path, e.g. `target[0].checker[1].timeout` (or `target.shop.checker.nlb.timeout`).
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A key is empty for errors about a whole file or directory.
        match (&self.file, self.key.is_empty()) {
            (Some(file), false) => write!(f, "{}: {}: {}", file.display(), self.key, self.message),
            (Some(file), true) => write!(f, "{}: {}", file.display(), self.message),
            (None, false) => write!(f, "{}: {}", self.key, self.message),
            (None, true) => f.write_str(&self.message),
        }
    }
}

/// Every error found while loading and compiling a configuration directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// The configuration files of `dir` that [`load`] reads, in merge order (hidden files skipped).
pub fn files(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    load::list_files(dir)
}

/// `s` as a TOML basic string (quoted; `"`, `\` and control characters escaped), for programs
/// that write configuration text: `parallax demo`, Kubernetes discovery. `${` is left as it is:
/// text from outside must escape it first (`$${`).
pub fn toml_string(s: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Loads and compiles every `*.toml`/`*.yaml`/`*.yml` file of `dir` with the process environment.
pub fn load(dir: &Path) -> Result<Plan, ConfigErrors> {
    load_with(dir, &ProcessEnv)
}

/// Loads and compiles `dir`, reading substitutions from `env`.
pub fn load_with(dir: &Path, env: &dyn Env) -> Result<Plan, ConfigErrors> {
    compile::compile_dir(dir, env, &[]).0
}

/// [`load_with`], and the files its `${file:..}` substitutions and `ca_file`s name, read or not
/// and whether the configuration compiled or not: what a reloader watches besides `dir` (a file
/// missing now may appear, and must trigger the next reload).
pub fn load_watched(dir: &Path, env: &dyn Env) -> (Result<Plan, ConfigErrors>, Vec<PathBuf>) {
    compile::compile_dir(dir, env, &[])
}

/// [`load_watched`], with `generated` files compiled after the directory's as if they were in
/// it: a configuration source's output (Kubernetes discovery's targets), each file its virtual
/// path (errors name it) and its text. They may hold targets only in effect: their settings
/// would be layered like any file's, and discovery writes none.
pub fn load_watched_with(
    dir: &Path,
    env: &dyn Env,
    generated: &[(PathBuf, String)],
) -> (Result<Plan, ConfigErrors>, Vec<PathBuf>) {
    compile::compile_dir(dir, env, generated)
}

/// Compiles one configuration file held in memory, `text`, as if it had been read from `path`
/// (whose extension says TOML or YAML): errors name `path`, and relative `ca_file` and
/// `${file:..}` paths resolve against its directory. For configurations a program builds
/// itself, such as `parallax demo`'s.
pub fn load_str(path: &Path, text: &str, env: &dyn Env) -> Result<Plan, ConfigErrors> {
    compile::compile_text(path, text, env)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_strings_escape_quotes_backslashes_and_controls() {
        assert_eq!(toml_string("a\"b\\c\nd"), "\"a\\\"b\\\\c\\u000Ad\"");
        assert_eq!(toml_string("/tmp/parallax-demo-x/demo-ca.pem"), "\"/tmp/parallax-demo-x/demo-ca.pem\"");
        assert_eq!(toml_string("$${x}"), "\"$${x}\"", "substitution syntax is the caller's");
    }

    #[test]
    fn load_str_compiles_text_and_names_its_path_in_errors() {
        let env = HashMap::new();
        let plan = load_str(
            Path::new("mem/demo.toml"),
            "[[target]]\nname = \"a\"\n[target.client]\nurl = \"http://127.0.0.1:1/\"\n",
            &env,
        )
        .map_err(|e| e.to_string());
        let plan = match plan {
            Ok(plan) => plan,
            Err(e) => panic!("compiles: {e}"),
        };
        assert_eq!(plan.targets.len(), 1);
        assert_eq!(plan.files, vec![PathBuf::from("mem/demo.toml")]);

        let errors = match load_str(Path::new("mem/demo.toml"), "[[target]]\nname = 1\nbogus = 2\n", &env) {
            Ok(_) => panic!("a bad file compiled"),
            Err(errors) => errors.to_string(),
        };
        assert!(errors.contains("mem/demo.toml") && errors.contains("bogus"), "{errors}");
        let errors = match load_str(Path::new("demo.conf"), "", &env) {
            Ok(_) => panic!("an unknown format compiled"),
            Err(errors) => errors.to_string(),
        };
        assert!(errors.contains("demo.conf: not a *.toml"), "{errors}");
    }
}
#[cfg(test)]
mod generated_tests {
    use super::*;

    #[test]
    fn generated_files_take_the_directorys_defaults() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("00.toml"), "[defaults]\ninterval = \"1s\"\ntimeout = \"500ms\"\n")
            .unwrap();
        let generated = vec![(
            PathBuf::from("kubernetes/t.toml"),
            "[[target]]\nname = \"t\"\n[target.client]\nurl = \"http://127.0.0.1:1/\"\n".to_owned(),
        )];
        let plan = load_watched_with(dir.path(), &HashMap::new(), &generated).0.unwrap();
        assert_eq!(plan.targets[0].client.interval, std::time::Duration::from_secs(1));
    }
}
