//! `probes.d` helpers: write TOML files into a tempdir, load them through
//! `parallax::config::load_with` with an injected environment, probe views with
//! `parallax::probe::Prober`, and assert outcomes exactly.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parallax::config::{Plan, View};
use parallax::probe::{ErrorCode, Outcome, Phase, Prober};
use rustls::pki_types::UnixTime;
use rustls::time_provider::TimeProvider;
use tokio::time::Instant;

/// The `[defaults]` every test directory starts with (explicit view keys win).
pub const DEFAULTS: &str = "[defaults]\ninterval = \"10s\"\ntimeout = \"2s\"\n";

/// A `probes.d` directory in a tempdir, and the environment its substitutions read.
pub struct ProbesDir {
    dir: tempfile::TempDir,
    env: HashMap<String, String>,
}

impl Default for ProbesDir {
    fn default() -> ProbesDir {
        ProbesDir::new()
    }
}

impl ProbesDir {
    /// An empty directory but for `00-defaults.toml` ([`DEFAULTS`]).
    pub fn new() -> ProbesDir {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("00-defaults.toml"), DEFAULTS).expect("write defaults");
        ProbesDir { dir, env: HashMap::new() }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Sets a variable for `${env:..}`, `${NODE_IP}`...
    pub fn env(&mut self, name: &str, value: &str) -> &mut ProbesDir {
        self.env.insert(name.to_owned(), value.to_owned());
        self
    }

    /// Writes `contents` as `name` in the directory; returns its path.
    pub fn file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).expect("write probes file");
        path
    }

    /// Loads and compiles the directory; a configuration error fails the test with every error.
    pub fn load(&self) -> Plan {
        match parallax::config::load_with(self.dir.path(), &self.env) {
            Ok(plan) => plan,
            Err(errors) => panic!("probes.d in {} did not compile:\n{errors}", self.dir.path().display()),
        }
    }
}

/// A TOML basic string (quoted, escaped).
pub fn toml_str(s: &str) -> String {
    parallax::config::toml_string(s)
}

/// A target named `name` whose client view is `client` (TOML key lines) and with one checker
/// per `(checker name, key lines)`.
pub fn target(name: &str, client: &str, checkers: &[(&str, &str)]) -> String {
    let mut out = format!("[[target]]\nname = {}\n\n[target.client]\n{}\n", toml_str(name), client.trim());
    for (checker, keys) in checkers {
        out.push_str(&format!("\n[[target.checker]]\nname = {}\n{}\n", toml_str(checker), keys.trim()));
    }
    out
}

/// The view `target/view` of `plan`.
pub fn view<'a>(plan: &'a Plan, target: &str, view: &str) -> &'a View {
    plan.views()
        .find(|v| &*v.target == target && &*v.name == view)
        .unwrap_or_else(|| panic!("no view {target}/{view} in the plan"))
}

/// Loads a directory holding one target `t` with client view keys `client`, and returns its
/// client view (and the directory, which must outlive any `ca_file` it holds).
pub fn client_view(client: &str) -> (ProbesDir, View) {
    let dir = ProbesDir::new();
    dir.file("t.toml", &target("t", client, &[]));
    let plan = dir.load();
    let view = view(&plan, "t", "client").clone();
    (dir, view)
}

/// Probes `view` once with a fresh prober (system clock); returns the outcomes and the elapsed
/// time measured around the call.
pub async fn probe(view: &View) -> (Vec<Outcome>, Duration) {
    let start = Instant::now();
    let outcomes = Prober::new().probe(view).await;
    (outcomes, start.elapsed())
}

/// Probes `view`, which must yield exactly one outcome.
pub async fn probe_one(view: &View) -> Outcome {
    let (mut outcomes, _) = probe(view).await;
    assert_eq!(outcomes.len(), 1, "expected one outcome, got {outcomes:#?}");
    outcomes.remove(0)
}

/// Probes `view` with the certificate clock at `unix_seconds`.
pub async fn probe_at(view: &View, unix_seconds: u64) -> Outcome {
    let prober = Prober::with_time(Arc::new(FixedClock(unix_seconds)));
    let mut outcomes = prober.probe(view).await;
    assert_eq!(outcomes.len(), 1, "expected one outcome, got {outcomes:#?}");
    outcomes.remove(0)
}

/// Asserts that `outcome` failed with exactly `code` in `phase`.
#[track_caller]
pub fn assert_code(outcome: &Outcome, code: ErrorCode, phase: Phase) {
    assert!(
        !outcome.ok && outcome.error == Some(code) && outcome.phase == Some(phase),
        "expected {code} in phase {phase}, got ok={} error={:?} phase={:?} detail={:?}\n{outcome:#?}",
        outcome.ok,
        outcome.error.map(|c| c.as_str()),
        outcome.phase.map(|p| p.as_str()),
        outcome.detail,
    );
}

/// Asserts that `outcome` succeeded.
#[track_caller]
pub fn assert_ok(outcome: &Outcome) {
    assert!(
        outcome.ok && outcome.error.is_none() && outcome.phase.is_none(),
        "expected success, got error={:?} phase={:?} detail={:?}\n{outcome:#?}",
        outcome.error.map(|c| c.as_str()),
        outcome.phase.map(|p| p.as_str()),
        outcome.detail,
    );
}

/// A certificate clock stuck at one moment.
#[derive(Debug, Clone, Copy)]
pub struct FixedClock(pub u64);

impl TimeProvider for FixedClock {
    fn current_time(&self) -> Option<UnixTime> {
        Some(UnixTime::since_unix_epoch(Duration::from_secs(self.0)))
    }
}

/// The resident set size of this process in KiB (`VmRSS` of /proc/self/status).
pub fn rss_kib() -> u64 {
    super::memory::proc_status_kib("VmRSS")
}
