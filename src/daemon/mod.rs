//! `parallax run`: the scheduler, verdicts, the diff and attribution running continuously,
//! reloads (SIGHUP and config directory changes), exports, the admin server, clean shutdown.
//!
//! # Shape
//!
//! - The [`Scheduler`](crate::schedule::Scheduler) task fires due views; each probe runs in its
//!   own task and reports its result to the engine.
//! - The engine (`engine.rs`: one `Mutex`, never held across an await) holds, per target
//!   (`target.rs`), the [`TargetDiff`](crate::diff::TargetDiff) (verdicts and mismatch
//!   lifecycle), per view the last outcomes, counters and recent probes, per client/checker pair
//!   the open mismatch and its [`AttributionBudget`](crate::diff::AttributionBudget). Recording a
//!   result is a few microseconds of pure work plus the [`Sink`](crate::export::Sink) calls,
//!   which never block; doing them under the lock keeps each pair's events in order.
//! - Work that waits is spawned (`runtime.rs`): attribution runs (real hybrid probes, sharing the
//!   scheduler's cap on probes in flight), and one timer per target with a disagreement waiting
//!   for its hold, so a mismatch opens when its hold elapses rather than at the next probe.
//! - A reloader task (`reload.rs`) compiles the directory on SIGHUP, on [`Handle::reload`] and
//!   when the directory's files change (polled: sizes, mtimes and inodes every 2 s, which also
//!   sees Kubernetes ConfigMap symlink swaps, with no inotify dependency). A plan that does not
//!   compile changes nothing but the reload status; one that does is swapped in: views with
//!   the same recipe keep their state, schedule phase and open mismatches (the pure plan diff
//!   decides which).
//! - The admin server reads the engine through [`AdminState`](crate::admin::AdminState).
//!
//! This file is the process edge: [`run`], its [`Options`], signals and the host's name.

mod discover;
mod engine;
mod reload;
mod runtime;
mod target;
#[cfg(test)]
mod tests;

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::config::{self, ConfigErrors, Env, ProcessEnv};
use crate::export::{ResourceInfo, Telemetry};
use crate::schedule::{node_seed, SchedulerConfig, WallClock};

pub use runtime::{Daemon, Handle};

/// How often the configuration directory is checked for changes by default.
pub const DEFAULT_WATCH_INTERVAL: Duration = Duration::from_secs(2);
/// How long exporters may take to flush at shutdown.
pub const FLUSH_DEADLINE: Duration = Duration::from_secs(5);

/// Daemon settings that are not in the configuration files.
#[derive(Clone)]
pub struct Options {
    /// The directory reloads compile (set by [`run`]; `None`: reloads are ignored).
    pub config_dir: Option<PathBuf>,
    /// Where substitutions read variables (and `NODE_NAME` and `HOSTNAME` for the resource).
    pub env: Arc<dyn Env + Send + Sync>,
    /// How often the directory is checked for changes (`None`: only on SIGHUP / [`Handle::reload`]).
    pub watch_interval: Option<Duration>,
    /// Concurrency cap and shutdown grace.
    pub scheduler: SchedulerConfig,
    /// The wall clock (`None`: the system clock, anchored at start).
    pub clock: Option<WallClock>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            config_dir: None,
            env: Arc::new(ProcessEnv),
            watch_interval: Some(DEFAULT_WATCH_INTERVAL),
            scheduler: SchedulerConfig::default(),
            clock: None,
        }
    }
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The environment may hold secrets: never printed.
        f.debug_struct("Options")
            .field("config_dir", &self.config_dir)
            .field("watch_interval", &self.watch_interval)
            .field("scheduler", &self.scheduler)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

/// Why [`run`] could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The configuration does not compile.
    #[error("{errors}")]
    Config {
        /// Every error.
        errors: ConfigErrors,
    },
    /// The admin listener could not be bound. One line with the fix: the OS error is in it,
    /// and is not also the error's source (printed again after it).
    #[error("{}", admin_bind_message(*addr, error))]
    Admin {
        /// `[admin] listen`.
        addr: SocketAddr,
        /// Why.
        error: std::io::Error,
    },
}

/// Runs the daemon on the configuration directory `dir` until `shutdown` completes: compiles it,
/// binds `[admin] listen`, builds the exporters, reloads on SIGHUP and on changes in `dir`.
/// Returns after a clean shutdown.
pub async fn run(
    dir: &Path,
    mut options: Options,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    // Startup: nothing else runs yet, so compiling on this thread blocks no one.
    let plan = config::load_with(dir, &*options.env).map_err(|errors| RunError::Config { errors })?;
    let addr = plan.admin.listen;
    let listener = TcpListener::bind(addr).await.map_err(|error| RunError::Admin { addr, error })?;
    let resource = ResourceInfo {
        host_name: host_name(&*options.env),
        node_name: options.env.var("NODE_NAME").filter(|n| !n.is_empty()),
        vantage: Some(plan.vantage.clone()),
    };
    // Every pod of a DaemonSet (or every probe VM) probes the same load balancer: the node's name
    // moves the phases, so their probes do not all arrive at the same instant.
    if let Some(name) = resource.node_name.as_deref().or(resource.host_name.as_deref()) {
        options.scheduler.seed = node_seed(name);
    }
    let telemetry = Arc::new(Telemetry::new(&plan.export, resource));
    let plan_summary = (plan.targets.len(), plan.views().count(), dir.to_path_buf());
    options.config_dir = Some(dir.to_path_buf());
    // The address bound (`[admin] listen` may ask for port 0).
    let bound = listener.local_addr().unwrap_or(addr);
    let startup = startup_line(&plan_summary, bound, &telemetry);
    let daemon = Daemon::new(plan, telemetry, options);
    let hangups = forward_hangups(daemon.handle());
    // One line at every log level: where to look, what runs, where its results go.
    eprintln!("{startup}");
    daemon.run(Some(listener), shutdown).await;
    if let Some(task) = hangups {
        task.abort();
    }
    Ok(())
}

/// Why the admin server cannot listen on `addr`, and how to choose another address.
fn admin_bind_message(addr: SocketAddr, error: &std::io::Error) -> String {
    let why = match error.kind() {
        std::io::ErrorKind::AddrInUse => "it is in use (another parallax?)".to_owned(),
        std::io::ErrorKind::AddrNotAvailable => "no interface of this host has that address".to_owned(),
        std::io::ErrorKind::PermissionDenied => {
            "permission denied (ports below 1024 need privileges)".to_owned()
        }
        _ => error.to_string(),
    };
    format!(
        "the admin server cannot listen on {addr}: {why}; choose another address with `[admin] listen` \
         or PARALLAX_ADMIN__LISTEN (e.g. PARALLAX_ADMIN__LISTEN={})",
        SocketAddr::new(addr.ip(), addr.port().wrapping_add(1).max(1))
    )
}

/// The start-up line: `parallax: 2 targets, 5 views from probes.d; dashboard, /metrics and
/// /api/v1/status on http://127.0.0.1:9464/; events on stdout, no OTLP (...)`.
fn startup_line(plan: &(usize, usize, PathBuf), admin: SocketAddr, telemetry: &Telemetry) -> String {
    let (targets, views, dir) = plan;
    let plural = |n: usize, noun: &str| if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") };
    format!(
        "parallax: {}, {} from {}; dashboard, /metrics and /api/v1/status on http://{admin}/; {}",
        plural(*targets, "target"),
        plural(*views, "view"),
        dir.display(),
        telemetry.exports()
    )
}

/// The host's name for the OTLP resource (`host.name`) and, without `NODE_NAME`, the schedule's
/// seed: the kernel's (what `hostname` prints, a pod's name in Kubernetes), else `HOSTNAME` from
/// `env` where `/proc` is not there to read.
pub fn host_name(env: &dyn Env) -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| env.var("HOSTNAME"))
}

/// SIGHUP -> [`Handle::reload`].
fn forward_hangups(handle: Handle) -> Option<tokio::task::JoinHandle<()>> {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::hangup()) {
        Ok(mut hangup) => Some(tokio::spawn(async move {
            while hangup.recv().await.is_some() {
                tracing::info!("SIGHUP: reloading");
                handle.reload();
            }
        })),
        Err(e) => {
            tracing::warn!("cannot handle SIGHUP ({e}); the configuration directory is still watched");
            None
        }
    }
}
