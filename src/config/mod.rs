//! Configuration: `probes.d/` files (raw serde types, unknown keys rejected) compiled into a typed,
//! immutable [`Plan`]. Compilation collects every error, each naming the file and the key path.

mod compile;
mod explain;
pub mod plan;
pub mod profiles;
mod raw;
mod subst;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

pub use explain::explain;
pub use plan::*;
pub use profiles::ProfileName;

/// Where substitutions read `${NODE_NAME}`, `${NODE_IP}` and `${env:NAME}` from. Injected so
/// tests do not touch the process environment.
pub trait Env {
    /// The value of variable `name`, if set.
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment (`NODE_NAME`/`NODE_IP` are set by the Kubernetes downward API).
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Env for HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
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
        match &self.file {
            Some(file) => write!(f, "{}: {}: {}", file.display(), self.key, self.message),
            None => write!(f, "{}: {}", self.key, self.message),
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

/// Loads and compiles every `*.toml`/`*.yaml`/`*.yml` file of `dir` with the process environment.
pub fn load(dir: &Path) -> Result<Plan, ConfigErrors> {
    load_with(dir, &ProcessEnv)
}

/// Loads and compiles `dir`, reading substitutions from `env`.
pub fn load_with(dir: &Path, env: &dyn Env) -> Result<Plan, ConfigErrors> {
    compile::load_dir(dir, env)
}
