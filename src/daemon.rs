//! `parallax run`: the scheduler, verdicts, the diff and attribution running continuously,
//! reloads (SIGHUP and config directory changes), exports, the admin server, clean shutdown.
//!
//! # Shape
//!
//! - The [`Scheduler`] task fires due views; each probe runs in its own task and reports its
//!   result to the engine.
//! - The engine (one `Mutex`, never held across an await) holds, per target, the
//!   [`TargetDiff`] (verdicts and mismatch lifecycle), per view the last outcomes, counters and
//!   recent probes, per client/checker pair the open mismatch and its [`AttributionBudget`].
//!   Recording a result is a few microseconds of pure work plus the [`TelemetrySink`] calls,
//!   which never block; doing them under the lock keeps each pair's events in order.
//! - Work that waits is spawned: attribution runs (real hybrid probes, sharing the scheduler's
//!   cap on probes in flight), and one timer per target with a disagreement waiting for its
//!   hold, so a mismatch opens when its hold elapses rather than at the next probe.
//! - A reloader task compiles the directory on SIGHUP, on [`Handle::reload`] and when the
//!   directory's files change (polled: sizes, mtimes and inodes every 2 s, which also sees
//!   Kubernetes ConfigMap symlink swaps, with no inotify dependency). A plan that does not
//!   compile changes nothing but the reload status; one that does is swapped in: views with
//!   the same recipe keep their state, schedule phase and open mismatches.
//! - The admin server reads the engine through [`AdminState`].

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::time::Instant;

use crate::admin::{self, AdminState};
use crate::config::{self, ConfigErrors, Env, Plan, ProcessEnv, Role, Target, View};
use crate::diff::attribution::{attribute_with, HYBRID_CONCURRENCY};
use crate::diff::lifecycle::probe_ok;
use crate::diff::{
    audit_allow_sources, diagnose, pair_outcomes, Attribution, AttributionBudget, AttributionSettings, Case,
    DiffEvent, Direction, HoldTime, Mismatch, OpenMismatch, PairEvent, Resolution, TargetDiff,
};
use crate::export::{MismatchEvent, ResourceInfo, SpanRef, Telemetry};
use crate::probe::{ErrorCode, Outcome, Prober};
use crate::schedule::{
    node_seed, Command, Finished, InFlight, ProbeFuture, ProbeRunner, Scheduled, Scheduler, SchedulerConfig,
    WallClock,
};
use crate::status::{
    OpenMismatchStatus, RecentProbe, ReloadStatus, StatusDoc, TargetStatus, VerdictStatus, ViewStatus,
    RECENT_PROBES,
};
use crate::verdict::{Verdict, VerdictChange};

/// How often the configuration directory is checked for changes by default.
pub const DEFAULT_WATCH_INTERVAL: Duration = Duration::from_secs(2);
/// How long exporters may take to flush at shutdown.
pub const FLUSH_DEADLINE: Duration = Duration::from_secs(5);

/// Where the daemon's telemetry goes: [`Telemetry`] in production; tests record the calls.
/// The methods mirror [`Telemetry`]'s and must never block: they are called while the engine
/// is locked.
pub trait TelemetrySink: Send + Sync + 'static {
    /// See [`Telemetry::probe`].
    fn probe(
        &self,
        view: &View,
        outcome: &Outcome,
        started: SystemTime,
        lateness: Duration,
        change: Option<&VerdictChange>,
        force: bool,
    ) -> Option<SpanRef>;
    /// See [`Telemetry::skipped`].
    fn skipped(&self, view: &View);
    /// See [`Telemetry::mismatch`].
    fn mismatch(&self, event: MismatchEvent<'_>);
    /// See [`Telemetry::reload`].
    fn reload(&self, ok: bool);
    /// See [`Telemetry::forget_view`].
    fn forget_view(&self, view: &View);
    /// See [`Telemetry::encode_metrics`].
    fn encode_metrics(&self) -> String;
    /// See [`Telemetry::shutdown`].
    fn shutdown(&self, deadline: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

impl TelemetrySink for Telemetry {
    fn probe(
        &self,
        view: &View,
        outcome: &Outcome,
        started: SystemTime,
        lateness: Duration,
        change: Option<&VerdictChange>,
        force: bool,
    ) -> Option<SpanRef> {
        Telemetry::probe(self, view, outcome, started, lateness, change, force)
    }

    fn skipped(&self, view: &View) {
        Telemetry::skipped(self, view)
    }

    fn mismatch(&self, event: MismatchEvent<'_>) {
        Telemetry::mismatch(self, event)
    }

    fn reload(&self, ok: bool) {
        Telemetry::reload(self, ok)
    }

    fn forget_view(&self, view: &View) {
        Telemetry::forget_view(self, view)
    }

    fn encode_metrics(&self) -> String {
        Telemetry::encode_metrics(self)
    }

    fn shutdown(&self, deadline: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(Telemetry::shutdown(self, deadline))
    }
}

/// Daemon settings that are not in the configuration files.
#[derive(Clone)]
pub struct Options {
    /// The directory reloads compile (set by [`run`]; `None`: reloads are ignored).
    pub config_dir: Option<PathBuf>,
    /// Where substitutions read variables (and `NODE_NAME` for the resource).
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
    /// The admin listener could not be bound.
    #[error("cannot listen on {addr} for the admin server: {source}")]
    Admin {
        /// `[admin] listen`.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
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
    let listener = TcpListener::bind(addr).await.map_err(|source| RunError::Admin { addr, source })?;
    let resource = ResourceInfo {
        host_name: host_name(),
        node_name: options.env.var("NODE_NAME").filter(|n| !n.is_empty()),
    };
    // Every pod of a DaemonSet (or every probe VM) probes the same load balancer: the node's name
    // moves the phases, so their probes do not all arrive at the same instant.
    if let Some(name) = resource.node_name.as_deref().or(resource.host_name.as_deref()) {
        options.scheduler.seed = node_seed(name);
    }
    let telemetry = Arc::new(Telemetry::new(&plan.export, resource));
    options.config_dir = Some(dir.to_path_buf());
    let daemon = Daemon::new(plan, telemetry, options);
    let hangups = forward_hangups(daemon.handle());
    tracing::info!(admin = %addr, dir = %dir.display(), "parallax running");
    daemon.run(Some(listener), shutdown).await;
    if let Some(task) = hangups {
        task.abort();
    }
    Ok(())
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

fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
}

type ProbeFn = Arc<dyn Fn(Arc<View>) -> ProbeFuture + Send + Sync>;

/// A daemon built from a plan, not yet running.
pub struct Daemon {
    shared: Arc<Shared>,
    scheduler: Scheduler,
    commands: mpsc::Receiver<Command>,
    reloads: mpsc::Receiver<()>,
    options: Options,
    /// The files the plan's `${file:..}` substitutions and `ca_file`s name, watched with the
    /// configuration directory.
    read_files: Vec<PathBuf>,
}

impl fmt::Debug for Daemon {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Daemon").field("options", &self.options).finish_non_exhaustive()
    }
}

impl Daemon {
    /// A daemon for `plan` reporting to `telemetry`. The `allow_sources` audit runs now: its
    /// mismatches open at plan load.
    pub fn new(plan: Plan, telemetry: Arc<dyn TelemetrySink>, options: Options) -> Daemon {
        let prober = Arc::new(Prober::new());
        let probing = prober.clone();
        let probe: ProbeFn = Arc::new(move |view: Arc<View>| -> ProbeFuture {
            let prober = probing.clone();
            Box::pin(async move { prober.probe(&view).await })
        });
        Daemon::build(plan, telemetry, options, probe, Some(prober))
    }

    /// [`Daemon::new`] with the probe as a function (the seam for tests on paused time).
    #[cfg(test)]
    pub(crate) fn with_probe(
        plan: Plan,
        telemetry: Arc<dyn TelemetrySink>,
        options: Options,
        probe: ProbeFn,
    ) -> Daemon {
        Daemon::build(plan, telemetry, options, probe, None)
    }

    fn build(
        plan: Plan,
        telemetry: Arc<dyn TelemetrySink>,
        options: Options,
        probe: ProbeFn,
        prober: Option<Arc<Prober>>,
    ) -> Daemon {
        let clock = options.clock.unwrap_or_else(WallClock::now);
        let mut scheduler = Scheduler::new(clock, options.scheduler);
        let (reload_tx, reloads) = mpsc::channel(1);
        let (commands_tx, commands) = mpsc::channel(1);
        let (stop, _) = watch::channel(false);
        let mut engine = Engine::new(&plan, clock);
        let now = Instant::now();
        let read_files = plan.read_files.clone();
        let actions = engine.load(plan, now, &*telemetry);
        scheduler.replace(engine.scheduled());
        let shared = Arc::new(Shared {
            engine: Mutex::new(engine),
            telemetry,
            probe,
            prober,
            tasks: scheduler.in_flight(),
            permits: scheduler.permits(),
            hybrid_permits: HYBRID_CONCURRENCY.min(options.scheduler.max_in_flight).max(1) as u32,
            running: scheduler.running(),
            reload: reload_tx,
            commands: commands_tx,
            stop,
        });
        shared.act(actions);
        Daemon { shared, scheduler, commands, reloads, options, read_files }
    }

    /// A handle on the daemon's state, usable while it runs.
    pub fn handle(&self) -> Handle {
        Handle { shared: self.shared.clone() }
    }

    /// Runs until `shutdown` completes: the scheduler, the reloader and, with `admin`, the admin
    /// server on that listener. Then stops scheduling, lets probes in flight finish (up to the
    /// scheduler's grace), flushes the exporters and stops the admin server.
    pub async fn run(self, admin: Option<TcpListener>, shutdown: impl Future<Output = ()> + Send + 'static) {
        let Daemon { shared, scheduler, commands, reloads, options, read_files } = self;
        let admin_task = admin.map(|listener| {
            let state: Arc<dyn AdminState> = shared.clone();
            let mut stop = shared.stop.subscribe();
            tokio::spawn(async move {
                let stopped = async move {
                    let _ = stop.wait_for(|s| *s).await;
                };
                if let Err(e) = admin::serve(listener, state, stopped).await {
                    tracing::error!("admin server stopped: {e}");
                }
            })
        });
        let reloader = tokio::spawn(reloader(shared.clone(), reloads, options, read_files));
        let runner = Arc::new(Runner { shared: shared.clone() });
        let stopped = scheduler.run(runner, commands, shutdown).await;
        if stopped.cancelled > 0 {
            tracing::warn!(
                "shutdown: {} probe(s) still running at the deadline were cancelled",
                stopped.cancelled
            );
        }
        shared.engine().report_unreported(&*shared.telemetry);
        shared.telemetry.shutdown(FLUSH_DEADLINE).await;
        shared.stop.send_replace(true);
        let _ = reloader.await;
        if let Some(task) = admin_task {
            // The server finishes its open requests; don't wait forever for a stuck client.
            let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
        }
    }
}

/// A handle on a daemon: its state for the admin server and tests, and reloads.
#[derive(Clone)]
pub struct Handle {
    shared: Arc<Shared>,
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle").field("ready", &self.ready()).finish()
    }
}

impl Handle {
    /// Asks for a reload of the configuration directory (what SIGHUP does). A reload already
    /// pending covers this one: it reads the files as they are when it runs.
    pub fn reload(&self) {
        let _ = self.shared.reload.try_send(());
    }
}

impl AdminState for Handle {
    fn ready(&self) -> bool {
        self.shared.ready()
    }

    fn status(&self) -> StatusDoc {
        self.shared.status()
    }

    fn metrics(&self) -> String {
        self.shared.metrics()
    }
}

struct Shared {
    engine: Mutex<Engine>,
    telemetry: Arc<dyn TelemetrySink>,
    probe: ProbeFn,
    /// The prober behind `probe` (none with a test's probe function): a reload makes it read
    /// `ca_file`s again.
    prober: Option<Arc<Prober>>,
    tasks: InFlight,
    permits: Arc<Semaphore>,
    hybrid_permits: u32,
    running: Arc<AtomicBool>,
    reload: mpsc::Sender<()>,
    /// Plan swaps for the scheduler.
    commands: mpsc::Sender<Command>,
    /// Set once scheduling has stopped: timers and the reloader end, the admin server stops.
    stop: watch::Sender<bool>,
}

impl AdminState for Shared {
    fn ready(&self) -> bool {
        // The engine always holds a plan: the daemon is built from one.
        self.running.load(Ordering::SeqCst)
    }

    fn status(&self) -> StatusDoc {
        let ready = self.ready();
        self.engine().status(ready, Instant::now())
    }

    fn metrics(&self) -> String {
        self.telemetry.encode_metrics()
    }
}

impl Shared {
    fn engine(&self) -> MutexGuard<'_, Engine> {
        // A panic while recording one result must not stop the daemon from recording the next.
        self.engine.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn act(self: &Arc<Self>, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Attribute(job) => self.attribute(*job),
                Action::Poll { target, at, timer } => self.poll_at(target, at, timer),
            }
        }
    }

    /// Swaps a compiled plan in: the engine now, the scheduler next. Returns false when the
    /// scheduler has stopped.
    async fn swap(self: &Arc<Self>, plan: Plan, now: Instant) -> bool {
        let (views, actions) = self.engine().swap(plan, now, &*self.telemetry);
        self.act(actions);
        self.commands.send(Command::Replace(views)).await.is_ok()
    }

    /// One attribution run: hybrids share the cap on probes in flight.
    fn attribute(self: &Arc<Self>, job: AttributionJob) {
        if !self.running.load(Ordering::SeqCst) {
            // Shutting down: no new production requests.
            self.engine().attribution_dropped(&job, &*self.telemetry);
            return;
        }
        let shared = self.clone();
        self.tasks.spawn(async move {
            let Ok(_permits) = shared.permits.clone().acquire_many_owned(shared.hybrid_permits).await else {
                return;
            };
            let probe = shared.probe.clone();
            let attribution = attribute_with(
                move |view: View| probe(Arc::new(view)),
                &job.client_view,
                &job.checker_view,
                &job.client_outcome,
                &job.checker_outcome,
                job.max_hybrids,
            )
            .await;
            let actions = shared.engine().attributed(&job, attribution, &*shared.telemetry);
            shared.act(actions);
        });
    }

    /// Polls `target`'s diff when its earliest pending disagreement's hold elapses, and again for
    /// each later one.
    fn poll_at(self: &Arc<Self>, target: Arc<str>, at: Instant, timer: u64) {
        let shared = self.clone();
        let mut stop = self.stop.subscribe();
        tokio::spawn(async move {
            let mut at = at;
            loop {
                tokio::select! {
                    () = tokio::time::sleep_until(at) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                let (actions, next) =
                    shared.engine().poll(&target, timer, Instant::now(), &*shared.telemetry);
                shared.act(actions);
                match next {
                    Some(next) => at = next,
                    None => return,
                }
            }
        });
    }
}

/// The scheduler's view of the daemon.
struct Runner {
    shared: Arc<Shared>,
}

impl ProbeRunner for Runner {
    fn probe(&self, view: Arc<View>) -> ProbeFuture {
        (self.shared.probe)(view)
    }

    fn finished(&self, probe: Finished) {
        let actions = self.shared.engine().record(probe, Instant::now(), &*self.shared.telemetry);
        self.shared.act(actions);
    }

    fn skipped(&self, view: &Arc<View>, epoch: u64) {
        self.shared.engine().skipped(view, epoch, &*self.shared.telemetry);
    }
}

/// Compiles the directory on request and when its files, the files its `${file:..}`
/// substitutions read or its `ca_file`s change (a rotated token or CA bundle, a Secret volume's
/// `..data` swap); swaps good plans in, and has the prober read its `ca_file`s again.
async fn reloader(
    shared: Arc<Shared>,
    mut requests: mpsc::Receiver<()>,
    options: Options,
    mut read_files: Vec<PathBuf>,
) {
    let mut stop = shared.stop.subscribe();
    let Some(dir) = options.config_dir else {
        // Built from a plan, not a directory: nothing to reload from.
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                request = requests.recv() => match request {
                    Some(()) => tracing::warn!("reload requested, but the plan was not loaded from a directory"),
                    None => return,
                },
            }
        }
    };
    let mut seen = fingerprint_blocking(&dir, &read_files).await;
    let mut poll = options.watch_interval.map(|every| {
        let mut poll = tokio::time::interval_at(Instant::now() + every, every);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        poll
    });
    loop {
        let polled = async {
            match poll.as_mut() {
                Some(poll) => {
                    poll.tick().await;
                }
                None => std::future::pending().await,
            }
        };
        let forced = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            request = requests.recv() => match request {
                Some(()) => true,
                None => return,
            },
            () = polled => false,
        };
        // Read before compiling: a change made while compiling triggers one more reload.
        let now_seen = fingerprint_blocking(&dir, &read_files).await;
        if !forced && now_seen == seen {
            continue;
        }
        if !forced {
            tracing::info!(dir = %dir.display(), "configuration changed: reloading");
        }
        seen = now_seen;
        let (load_dir, env) = (dir.clone(), options.env.clone());
        let loaded = tokio::task::spawn_blocking(move || config::load_watched(&load_dir, &*env)).await;
        let now = Instant::now();
        // The files named, even by a configuration that failed (a token file not there yet
        // makes the reload fail; its arrival must bring the next one). A changed list is
        // fingerprinted anew at the next poll: at most one extra reload, which keeps every
        // unchanged view's state.
        let loaded = loaded.map(|(result, named)| {
            read_files = named;
            result
        });
        match loaded {
            Ok(Ok(plan)) => {
                if let Some(prober) = &shared.prober {
                    prober.forget_tls();
                }
                if !shared.swap(plan, now).await {
                    // The scheduler has stopped: shutting down.
                    return;
                }
            }
            Ok(Err(errors)) => shared.engine().reload_failed(&errors, &*shared.telemetry),
            Err(e) => {
                let errors = ConfigErrors(vec![config::ConfigError {
                    file: Some(dir.clone()),
                    key: String::new(),
                    message: format!("compiling the configuration failed: {e}"),
                }]);
                shared.engine().reload_failed(&errors, &*shared.telemetry);
            }
        }
    }
}

/// What a change of the configuration looks like from outside: every configuration file's,
/// `${file:..}` file's and `ca_file`'s path, size, mtime and inode (metadata follows symlinks,
/// so a ConfigMap's or Secret's `..data` swap changes the inode even when sizes and mtimes are
/// equal).
type Fingerprint = Vec<(PathBuf, u64, Option<SystemTime>, u64)>;

async fn fingerprint_blocking(dir: &Path, read_files: &[PathBuf]) -> Fingerprint {
    let (dir, read_files) = (dir.to_path_buf(), read_files.to_vec());
    tokio::task::spawn_blocking(move || fingerprint(&dir, &read_files)).await.unwrap_or_default()
}

fn fingerprint(dir: &Path, read_files: &[PathBuf]) -> Fingerprint {
    use std::os::unix::fs::MetadataExt;
    // An unreadable or empty directory is a fingerprint too: the reload reports why; so is a
    // named file that is missing (its arrival changes the fingerprint).
    config::files(dir)
        .unwrap_or_default()
        .into_iter()
        .chain(read_files.iter().cloned())
        .map(|path| {
            let meta = std::fs::metadata(&path).ok();
            let (len, modified, ino) = meta.map_or((0, None, 0), |m| (m.len(), m.modified().ok(), m.ino()));
            (path, len, modified, ino)
        })
        .collect()
}

/// Work the engine asks for after a call, done once the lock is released.
#[derive(Debug)]
enum Action {
    Attribute(Box<AttributionJob>),
    Poll { target: Arc<str>, at: Instant, timer: u64 },
}

/// One attribution run to start.
#[derive(Debug)]
struct AttributionJob {
    target: Arc<str>,
    checker: Arc<str>,
    /// The open mismatch it is for; a result for a mismatch no longer open is dropped.
    mismatch_id: u64,
    client_view: Arc<View>,
    checker_view: Arc<View>,
    client_outcome: Outcome,
    checker_outcome: Outcome,
    max_hybrids: usize,
}

/// Everything the daemon knows, behind one lock.
struct Engine {
    clock: WallClock,
    generation: u64,
    started_at: SystemTime,
    plan_loaded_at: SystemTime,
    last_reload: Option<ReloadStatus>,
    admin: config::AdminSettings,
    export: config::ExportSettings,
    targets: Vec<TargetState>,
    by_name: HashMap<Arc<str>, usize>,
    ids: Ids,
}

/// Counters for recipe identities and mismatch identities.
#[derive(Debug, Default)]
struct Ids {
    epochs: u64,
    mismatches: u64,
    timers: u64,
}

impl Ids {
    fn epoch(&mut self) -> u64 {
        self.epochs += 1;
        self.epochs
    }

    fn mismatch(&mut self) -> u64 {
        self.mismatches += 1;
        self.mismatches
    }

    fn timer(&mut self) -> u64 {
        self.timers += 1;
        self.timers
    }
}

struct TargetState {
    /// The target's name. The rest of its configuration lives in the views' recipes (each
    /// view is held once, by its [`ViewState`]) and in what `diff`, `pairs` and `audit` were
    /// built from: a second copy of every view (640 bytes and its strings) was the largest
    /// part of an idle view's memory.
    name: Arc<str>,
    diff: TargetDiff,
    /// The client view first, then the checkers in configuration order.
    views: Vec<ViewState>,
    /// One per checker, in configuration order.
    pairs: Vec<PairState>,
    /// `allow_sources` gaps, open since the plan that found them was loaded.
    audit: Vec<AuditRecord>,
    /// When the poll timer of this target wakes next, and which timer it is (`None`: no timer).
    /// Other timers of the target that wake end without re-arming.
    poll_armed: Option<(Instant, u64)>,
}

struct ViewState {
    view: Arc<View>,
    epoch: u64,
    /// The last probe's outcomes (several with `each_address`).
    last: Vec<Outcome>,
    /// The exported span of the last probe's worst outcome, if it was exported.
    last_span: Option<SpanRef>,
    /// The last [`RECENT_PROBES`] probes, compact (16 bytes each: this is most of a view's
    /// memory); turned into [`RecentProbe`]s only when the status is read.
    recent: VecDeque<Recent>,
    probes: u64,
    failures: u64,
    skipped: u64,
}

impl ViewState {
    fn new(view: Arc<View>, epoch: u64) -> ViewState {
        ViewState {
            view,
            epoch,
            last: Vec::new(),
            last_span: None,
            // Grows with the probes (to RECENT_PROBES): a view that has not probed yet (a long
            // interval) holds nothing here.
            recent: VecDeque::new(),
            probes: 0,
            failures: 0,
            skipped: 0,
        }
    }
}

/// One recent probe as kept in memory.
#[derive(Debug, Clone, Copy)]
struct Recent {
    /// Start, milliseconds since the Unix epoch.
    at_ms: u64,
    /// Total duration, microseconds (saturating at ~71 minutes, far beyond any timeout).
    total_us: u32,
    ok: bool,
    error: Option<ErrorCode>,
}

impl Recent {
    fn status(&self) -> RecentProbe {
        RecentProbe {
            at: rfc3339(SystemTime::UNIX_EPOCH + Duration::from_millis(self.at_ms)),
            ok: self.ok,
            total_ms: f64::from(self.total_us) / 1e3,
            error: self.error.map(ErrorCode::as_str),
        }
    }
}

struct PairState {
    settings: AttributionSettings,
    budget: AttributionBudget,
    /// Boxed: a pair is open rarely, and inline the record would triple every pair's size.
    open: Option<Box<OpenRecord>>,
    /// The mismatch an attribution run in flight is for.
    attributing: Option<u64>,
}

impl PairState {
    fn new(settings: AttributionSettings) -> PairState {
        PairState { settings, budget: AttributionBudget::new(&settings), open: None, attributing: None }
    }
}

struct OpenRecord {
    id: u64,
    mismatch: Mismatch,
    since: SystemTime,
    opened_at: SystemTime,
    opened: Instant,
    /// The record as `Opened` sent it to telemetry (that waits for the first attribution run).
    /// `Resolved` goes out with these same labels even if a later attribution run changed the
    /// diagnosis, so the `parallax_mismatch` series that opened is the one that closes.
    reported: Option<Mismatch>,
    /// The probe spans that decided it.
    links: [Option<SpanRef>; 2],
}

impl OpenRecord {
    /// Sends `Opened` unless it has gone already.
    fn report_once(&mut self, telemetry: &dyn TelemetrySink) {
        if self.reported.is_none() {
            telemetry.mismatch(MismatchEvent::Opened {
                mismatch: &self.mismatch,
                since: self.since,
                links: self.links,
            });
            self.reported = Some(self.mismatch.clone());
        }
    }

    /// Sends `Resolved` (after `Opened`, if that was still waiting for its attribution).
    fn close(
        mut self,
        open_for: Duration,
        resolution: &'static str,
        links: [Option<SpanRef>; 2],
        telemetry: &dyn TelemetrySink,
    ) {
        self.report_once(telemetry);
        telemetry.mismatch(MismatchEvent::Resolved {
            mismatch: self.reported.as_ref().unwrap_or(&self.mismatch),
            opened_at: self.opened_at,
            open_for,
            resolution,
            links,
        });
    }
}

struct AuditRecord {
    mismatch: Mismatch,
    opened_at: SystemTime,
    opened: Instant,
}

fn attribution_settings(target: &Target) -> AttributionSettings {
    AttributionSettings {
        enabled: target.diff.attribution,
        interval: target.diff.attribution_interval,
        max_hybrids: target.diff.max_hybrids,
    }
}

fn hold_of(target: &Target) -> HoldTime {
    target.diff.hold.map_or(HoldTime::TwoCheckerIntervals, HoldTime::Fixed)
}

fn views_of(target: &Target) -> impl Iterator<Item = &View> {
    std::iter::once(&target.client).chain(target.checkers.iter())
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// The outcome that stands for a probe: the first failure, else the first.
fn worst(outcomes: &[Outcome]) -> Option<&Outcome> {
    outcomes.iter().find(|o| !o.ok).or_else(|| outcomes.first())
}

fn resolution_name(resolution: Resolution) -> &'static str {
    match resolution {
        Resolution::BothHealthy => "agreed",
        Resolution::BothUnhealthy => "both_unhealthy",
        Resolution::DirectionChanged => "direction_changed",
    }
}

/// The client and checker outcomes that show `direction` (with `each_address`, the first pair
/// that does).
fn deciding<'a>(
    client: &'a [Outcome],
    checker: &'a [Outcome],
    direction: Direction,
) -> Option<(&'a Outcome, &'a Outcome)> {
    let client: Vec<&Outcome> = client.iter().collect();
    let checker: Vec<&Outcome> = checker.iter().collect();
    let pairs = pair_outcomes(&client, &checker);
    let shows = |(c, k): &(&Outcome, &Outcome)| match direction {
        Direction::Blackhole => !c.ok && k.ok,
        Direction::FalseDrain => c.ok && !k.ok,
    };
    pairs.iter().find(|p| shows(p)).or_else(|| pairs.first()).copied()
}

impl Engine {
    fn new(plan: &Plan, clock: WallClock) -> Engine {
        let now = clock.wall_now();
        Engine {
            clock,
            generation: 0,
            started_at: now,
            plan_loaded_at: now,
            last_reload: None,
            admin: plan.admin.clone(),
            export: plan.export.clone(),
            targets: Vec::new(),
            by_name: HashMap::new(),
            ids: Ids::default(),
        }
    }

    /// Loads the first plan.
    fn load(&mut self, plan: Plan, now: Instant, telemetry: &dyn TelemetrySink) -> Vec<Action> {
        self.install(plan, now, telemetry)
    }

    /// Every view with its recipe identity, for the scheduler.
    fn scheduled(&self) -> Vec<Scheduled> {
        // Sized up front: grown by doubling, a plan of 100,000 views would leave its discarded
        // smaller copies as holes in the heap.
        let mut scheduled = Vec::with_capacity(self.targets.iter().map(|t| t.views.len()).sum());
        for t in &self.targets {
            scheduled.extend(t.views.iter().map(|v| Scheduled { view: v.view.clone(), epoch: v.epoch }));
        }
        scheduled
    }

    /// A reload that compiled: swaps `plan` in.
    fn swap(
        &mut self,
        plan: Plan,
        now: Instant,
        telemetry: &dyn TelemetrySink,
    ) -> (Vec<Scheduled>, Vec<Action>) {
        if plan.admin != self.admin || plan.export != self.export {
            tracing::warn!("[admin] and [export] changes take effect at the next restart");
        }
        let actions = self.install(plan, now, telemetry);
        self.last_reload =
            Some(ReloadStatus { at: rfc3339(self.clock.wall(now)), ok: true, errors: Vec::new() });
        telemetry.reload(true);
        tracing::info!(generation = self.generation, targets = self.targets.len(), "reloaded");
        (self.scheduled(), actions)
    }

    /// A reload that did not compile: the running plan stays.
    fn reload_failed(&mut self, errors: &ConfigErrors, telemetry: &dyn TelemetrySink) {
        for e in &errors.0 {
            tracing::error!("reload: {e}");
        }
        tracing::error!(
            "reload failed with {} configuration error(s); still running generation {}",
            errors.0.len(),
            self.generation
        );
        self.last_reload = Some(ReloadStatus {
            at: rfc3339(self.clock.wall_now()),
            ok: false,
            errors: errors.0.iter().map(ToString::to_string).collect(),
        });
        telemetry.reload(false);
    }

    fn install(&mut self, plan: Plan, now: Instant, telemetry: &dyn TelemetrySink) -> Vec<Action> {
        let mut previous: HashMap<Arc<str>, TargetState> =
            self.targets.drain(..).map(|t| (t.name.clone(), t)).collect();
        let mut actions = Vec::new();
        let mut targets = Vec::with_capacity(plan.targets.len());
        for target in plan.targets {
            let prev = previous.remove(&target.name);
            let state = self.rebuild(target, prev, now, telemetry);
            targets.push(state);
        }
        for (_, gone) in previous {
            self.retire(gone, now, telemetry);
        }
        self.targets = targets;
        self.by_name = self.targets.iter().enumerate().map(|(i, t)| (t.name.clone(), i)).collect();
        for t in &mut self.targets {
            // Pending disagreements carried over need their timer again (a timer of the old
            // state that wakes finds itself replaced and ends).
            t.poll_armed = None;
            if let Some(at) = t.diff.next_deadline() {
                let timer = self.ids.timer();
                t.poll_armed = Some((at, timer));
                actions.push(Action::Poll { target: t.name.clone(), at, timer });
            }
        }
        self.generation += 1;
        self.plan_loaded_at = self.clock.wall(now);
        self.admin = plan.admin;
        self.export = plan.export;
        actions
    }

    /// The state of `target` in a new plan, keeping what `prev` (the same target in the old
    /// plan) knew about views whose recipe did not change.
    fn rebuild(
        &mut self,
        target: Target,
        prev: Option<TargetState>,
        now: Instant,
        telemetry: &dyn TelemetrySink,
    ) -> TargetState {
        let mut prev = prev;
        // The previous checkers, by name, in configuration order (views[0] is the client).
        let prev_checkers: Vec<Arc<str>> = match prev.as_ref() {
            Some(p) => p.views.iter().skip(1).map(|v| v.view.name.clone()).collect(),
            None => Vec::new(),
        };
        let mut old_views: Vec<Option<ViewState>> = match prev.as_mut() {
            Some(p) => p.views.drain(..).map(Some).collect(),
            None => Vec::new(),
        };
        let mut kept: HashSet<Arc<str>> = HashSet::new();
        // The state each view keeps, in views_of order (None: a new recipe, made below from the
        // plan's view itself, moved rather than cloned).
        let mut carried: Vec<Option<ViewState>> = Vec::with_capacity(1 + target.checkers.len());
        for view in views_of(&target) {
            let old = old_views.iter_mut().find(|o| o.as_ref().is_some_and(|o| *o.view.name == *view.name));
            match old {
                Some(slot) if slot.as_ref().is_some_and(|o| *o.view == *view) => {
                    let state = slot.take();
                    if state.is_some() {
                        kept.insert(view.name.clone());
                    }
                    carried.push(state);
                }
                _ => carried.push(None),
            }
        }
        // Views that left the target lose their series; changed ones keep them (same labels).
        for old in old_views.into_iter().flatten() {
            if !views_of(&target).any(|v| v.name == old.view.name) {
                telemetry.forget_view(&old.view);
            }
        }
        let hold = hold_of(&target);
        let settings = attribution_settings(&target);
        let (diff, pairs, audit) = match prev {
            None => (
                TargetDiff::new(&target, hold),
                target.checkers.iter().map(|_| PairState::new(settings)).collect(),
                self.reaudit(&target, Vec::new(), now, telemetry),
            ),
            Some(mut prev) => {
                let diff = TargetDiff::carry_over(&target, hold, &prev.diff, |name| kept.contains(name));
                let client_kept = kept.contains(&target.client.name);
                let mut pairs = Vec::with_capacity(target.checkers.len());
                for checker in &target.checkers {
                    let old = prev_checkers
                        .iter()
                        .position(|c| *c == checker.name)
                        .and_then(|i| prev.pairs.get_mut(i))
                        .map(|p| std::mem::replace(p, PairState::new(settings)));
                    match old {
                        Some(mut pair) if client_kept && kept.contains(&checker.name) => {
                            if pair.settings != settings {
                                pair.budget = AttributionBudget::new(&settings);
                                pair.settings = settings;
                                if pair.open.is_some() {
                                    pair.budget.opened();
                                }
                            }
                            pairs.push(pair);
                        }
                        Some(mut pair) => {
                            self.remove_open(&prev.name, &mut pair, now, telemetry);
                            pairs.push(PairState::new(settings));
                        }
                        None => pairs.push(PairState::new(settings)),
                    }
                }
                // Checkers that left the target: their open mismatches end.
                for (checker, pair) in prev_checkers.iter().zip(prev.pairs.iter_mut()) {
                    if !target.checkers.iter().any(|c| c.name == *checker) {
                        self.remove_open(&prev.name, pair, now, telemetry);
                    }
                }
                let audit = self.reaudit(&target, std::mem::take(&mut prev.audit), now, telemetry);
                (diff, pairs, audit)
            }
        };
        let Target { name, client, checkers, .. } = target;
        let views: Vec<ViewState> = std::iter::once(client)
            .chain(checkers)
            .zip(carried)
            .map(|(view, kept)| kept.unwrap_or_else(|| ViewState::new(Arc::new(view), self.ids.epoch())))
            .collect();
        TargetState { name, diff, views, pairs, audit, poll_armed: None }
    }

    /// The `allow_sources` audit of `target`: gaps found before stay open, new ones open now,
    /// fixed ones resolve.
    fn reaudit(
        &mut self,
        target: &Target,
        previous: Vec<AuditRecord>,
        now: Instant,
        telemetry: &dyn TelemetrySink,
    ) -> Vec<AuditRecord> {
        let mut previous: Vec<Option<AuditRecord>> = previous.into_iter().map(Some).collect();
        let mut audit = Vec::new();
        for gap in audit_allow_sources(target) {
            let mismatch = Mismatch::from_audit(target, &gap);
            let same = previous.iter_mut().find(|p| p.as_ref().is_some_and(|p| p.mismatch == mismatch));
            if let Some(record) = same.and_then(Option::take) {
                audit.push(record);
                continue;
            }
            let opened_at = self.clock.wall(now);
            tracing::warn!(
                target = %target.name, checker = %mismatch.checker_view,
                "mismatch opened by the allow_sources audit: {}", mismatch.evidence
            );
            telemetry.mismatch(MismatchEvent::Opened {
                mismatch: &mismatch,
                since: opened_at,
                links: [None, None],
            });
            audit.push(AuditRecord { mismatch, opened_at, opened: now });
        }
        for fixed in previous.into_iter().flatten() {
            Self::resolve_audit(fixed, now, telemetry);
        }
        audit
    }

    fn resolve_audit(record: AuditRecord, now: Instant, telemetry: &dyn TelemetrySink) {
        tracing::info!(
            target = %record.mismatch.target, checker = %record.mismatch.checker_view,
            "allow_sources gap no longer in the configuration"
        );
        telemetry.mismatch(MismatchEvent::Resolved {
            mismatch: &record.mismatch,
            opened_at: record.opened_at,
            open_for: now.saturating_duration_since(record.opened),
            resolution: "removed",
            links: [None, None],
        });
    }

    /// A target that left the plan: its mismatches end, its views' series go.
    fn retire(&mut self, mut gone: TargetState, now: Instant, telemetry: &dyn TelemetrySink) {
        let target = gone.name.clone();
        for pair in &mut gone.pairs {
            self.remove_open(&target, pair, now, telemetry);
        }
        for record in gone.audit {
            Self::resolve_audit(record, now, telemetry);
        }
        for view in &gone.views {
            telemetry.forget_view(&view.view);
        }
    }

    /// Ends `pair`'s open mismatch because the plan no longer holds it as it was.
    fn remove_open(
        &mut self,
        target: &str,
        pair: &mut PairState,
        now: Instant,
        telemetry: &dyn TelemetrySink,
    ) {
        let Some(record) = pair.open.take() else { return };
        pair.budget.resolved();
        tracing::info!(
            target = %target, checker = %record.mismatch.checker_view,
            "mismatch closed: the views changed or left the configuration"
        );
        let open_for = now.saturating_duration_since(record.opened);
        record.close(open_for, "removed", [None, None], telemetry);
    }

    /// One finished probe: verdict, diff, status, telemetry.
    fn record(&mut self, probe: Finished, now: Instant, telemetry: &dyn TelemetrySink) -> Vec<Action> {
        let Some(&ti) = self.by_name.get(&probe.view.target) else { return Vec::new() };
        let clock = self.clock;
        let t = &mut self.targets[ti];
        let Some(vi) = t.views.iter().position(|v| v.view.name == probe.view.name) else { return Vec::new() };
        if t.views[vi].epoch != probe.epoch {
            // A recipe a reload replaced: its result says nothing about the new one.
            return Vec::new();
        }
        let ok = probe_ok(&probe.outcomes);
        let mut events = t.diff.observe(&probe.view.name, ok, now);
        events.extend(t.diff.poll(now));
        let change = events.iter().find_map(|e| match e {
            DiffEvent::Verdict { view, change, .. } if *view == probe.view.name => Some(*change),
            _ => None,
        });
        if let Some(change) = change {
            log_verdict(&probe.view, &change);
        }
        // While a disagreement waits for its hold or changes state, every probe of the target is
        // exported, so the mismatch span can link the probes that decided it.
        let force = t.diff.next_deadline().is_some()
            || events.iter().any(|e| matches!(e, DiffEvent::Mismatch { .. }));
        let started = clock.wall(probe.started);
        let worst_index = probe.outcomes.iter().position(|o| !o.ok).unwrap_or(0);
        let mut span = None;
        for (i, outcome) in probe.outcomes.iter().enumerate() {
            let change = if i == worst_index { change.as_ref() } else { None };
            let exported = telemetry.probe(&probe.view, outcome, started, probe.lateness, change, force);
            if i == worst_index {
                span = exported;
            }
        }
        let state = &mut t.views[vi];
        state.last_span = span;
        state.probes += 1;
        if !ok {
            state.failures += 1;
        }
        if state.recent.len() == RECENT_PROBES {
            state.recent.pop_front();
        }
        let total = probe.outcomes.iter().map(|o| o.timings.total).max().unwrap_or_default();
        let at = started.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        state.recent.push_back(Recent {
            at_ms: u64::try_from(at.as_millis()).unwrap_or(u64::MAX),
            total_us: u32::try_from(total.as_micros()).unwrap_or(u32::MAX),
            ok,
            error: worst(&probe.outcomes).and_then(|o| o.error),
        });
        state.last = probe.outcomes;
        self.after_events(ti, events, now, telemetry)
    }

    fn skipped(&mut self, view: &Arc<View>, epoch: u64, telemetry: &dyn TelemetrySink) {
        let Some(&ti) = self.by_name.get(&view.target) else { return };
        let Some(state) = self.targets[ti].views.iter_mut().find(|v| v.view.name == view.name) else {
            return;
        };
        if state.epoch == epoch {
            state.skipped += 1;
            telemetry.skipped(view);
        }
    }

    /// Poll timer `timer` of `target` woke at `now`. Returns what to do and when to wake again
    /// (`None`: this timer ends).
    fn poll(
        &mut self,
        target: &str,
        timer: u64,
        now: Instant,
        telemetry: &dyn TelemetrySink,
    ) -> (Vec<Action>, Option<Instant>) {
        let Some(&ti) = self.by_name.get(target) else { return (Vec::new(), None) };
        let events = self.targets[ti].diff.poll(now);
        let actions = self.after_events(ti, events, now, telemetry);
        let t = &mut self.targets[ti];
        if t.poll_armed.map(|(_, id)| id) != Some(timer) {
            // A newer timer owns this target.
            return (actions, None);
        }
        let next = t.diff.next_deadline();
        t.poll_armed = next.map(|at| (at, timer));
        (actions, next)
    }

    /// Mismatch events of target `ti`, then attribution re-runs and the poll timer.
    fn after_events(
        &mut self,
        ti: usize,
        events: Vec<DiffEvent>,
        now: Instant,
        telemetry: &dyn TelemetrySink,
    ) -> Vec<Action> {
        let clock = self.clock;
        let mut actions = Vec::new();
        for event in events {
            let DiffEvent::Mismatch { checker_view, event, .. } = event else { continue };
            match event {
                PairEvent::Opened { direction, since, at, .. } => {
                    let id = self.ids.mismatch();
                    if let Some(job) = self.targets[ti].open(
                        &checker_view,
                        OpenMismatch { direction, since, opened_at: at },
                        id,
                        clock,
                        telemetry,
                    ) {
                        actions.push(Action::Attribute(Box::new(job)));
                    }
                }
                PairEvent::Resolved { resolution, open_for, .. } => {
                    self.targets[ti].resolved(&checker_view, resolution, open_for, telemetry);
                }
            }
        }
        let t = &mut self.targets[ti];
        // Attribution again while open, as the budget allows (at most every attribution_interval).
        for k in 0..t.pairs.len() {
            if let Some(job) = t.attribution_job(k, now) {
                actions.push(Action::Attribute(Box::new(job)));
            }
        }
        if let Some(at) = t.diff.next_deadline() {
            if t.poll_armed.is_none_or(|(armed, _)| at < armed) {
                let timer = self.ids.timer();
                t.poll_armed = Some((at, timer));
                actions.push(Action::Poll { target: t.name.clone(), at, timer });
            }
        }
        actions
    }

    /// An attribution run finished.
    fn attributed(
        &mut self,
        job: &AttributionJob,
        attribution: Attribution,
        telemetry: &dyn TelemetrySink,
    ) -> Vec<Action> {
        let Some(&ti) = self.by_name.get(&job.target) else { return Vec::new() };
        let t = &mut self.targets[ti];
        let Some(k) = t.checker_index(&job.checker) else { return Vec::new() };
        let pair = &mut t.pairs[k];
        if pair.attributing == Some(job.mismatch_id) {
            pair.attributing = None;
        }
        let Some(record) = pair.open.as_mut().filter(|r| r.id == job.mismatch_id) else {
            // Resolved (or replaced by a reload) while the hybrids ran.
            return Vec::new();
        };
        let case = Case {
            direction: record.mismatch.direction,
            client_view: &job.client_view,
            checker_view: &job.checker_view,
            client: &job.client_outcome,
            checker: &job.checker_outcome,
            attribution: Some(&attribution),
        };
        let mismatch = Mismatch::from_case(&case, diagnose(&case));
        tracing::warn!(
            target = %job.target, checker = %job.checker, diagnosis = %mismatch.diagnosis,
            flipped = ?mismatch.flipped.iter().map(|a| a.as_str()).collect::<Vec<_>>(),
            "mismatch diagnosed: {}", mismatch.evidence
        );
        record.mismatch = mismatch;
        record.report_once(telemetry);
        Vec::new()
    }

    /// An attribution that will not run (shutting down): the mismatch is reported as diagnosed
    /// from error codes.
    fn attribution_dropped(&mut self, job: &AttributionJob, telemetry: &dyn TelemetrySink) {
        let Some(&ti) = self.by_name.get(&job.target) else { return };
        let t = &mut self.targets[ti];
        let Some(k) = t.checker_index(&job.checker) else { return };
        let pair = &mut t.pairs[k];
        if pair.attributing == Some(job.mismatch_id) {
            pair.attributing = None;
        }
        if let Some(record) = pair.open.as_mut().filter(|r| r.id == job.mismatch_id) {
            record.report_once(telemetry);
        }
    }

    /// Reports every open mismatch still waiting for its attribution (at shutdown, when runs in
    /// flight may have been cancelled), as diagnosed so far.
    fn report_unreported(&mut self, telemetry: &dyn TelemetrySink) {
        for pair in self.targets.iter_mut().flat_map(|t| t.pairs.iter_mut()) {
            if let Some(record) = pair.open.as_mut() {
                record.report_once(telemetry);
            }
        }
    }

    fn status(&self, ready: bool, now: Instant) -> StatusDoc {
        StatusDoc {
            version: env!("CARGO_PKG_VERSION"),
            generation: self.generation,
            ready,
            started_at: rfc3339(self.started_at),
            plan_loaded_at: rfc3339(self.plan_loaded_at),
            last_reload: self.last_reload.clone(),
            targets: self.targets.iter().map(|t| t.status(&self.clock, now)).collect(),
        }
    }
}

fn log_verdict(view: &View, change: &VerdictChange) {
    let from = change.from.map_or("unknown", |h| h.as_str());
    tracing::info!(view = %view.id(), role = view.role.as_str(), "verdict {from} -> {}", change.to);
}

impl TargetState {
    /// The index of checker `name` in `target.checkers` and `pairs` (its view is `views[k + 1]`).
    fn checker_index(&self, name: &str) -> Option<usize> {
        self.views.iter().skip(1).position(|v| *v.view.name == *name)
    }

    fn verdict(&self, view: &View) -> Option<&Verdict> {
        match view.role {
            Role::Client => Some(self.diff.client_verdict()),
            Role::Checker => self.diff.checker_verdict(&view.name),
        }
    }

    /// A mismatch of the pair with checker `checker` opened: diagnosed from the error codes now,
    /// attributed when the budget allows (and reported once attributed), else reported now.
    fn open(
        &mut self,
        checker: &str,
        opened: OpenMismatch,
        id: u64,
        clock: WallClock,
        telemetry: &dyn TelemetrySink,
    ) -> Option<AttributionJob> {
        let OpenMismatch { direction, since, opened_at: at } = opened;
        let k = self.checker_index(checker)?;
        let client_state = &self.views[0];
        let checker_state = self.views.get(k + 1)?;
        let Some((client, checker_outcome)) = deciding(&client_state.last, &checker_state.last, direction)
        else {
            // Verdicts are known only after probes, so both views have outcomes; a pair without
            // them cannot be diagnosed and is left to the next probe.
            return None;
        };
        let case = Case {
            direction,
            client_view: &client_state.view,
            checker_view: &checker_state.view,
            client,
            checker: checker_outcome,
            attribution: None,
        };
        let mismatch = Mismatch::from_case(&case, diagnose(&case));
        tracing::warn!(
            target = %self.name, checker = %checker, direction = %direction,
            diagnosis = %mismatch.diagnosis, "mismatch opened: {}", mismatch.evidence
        );
        let links = [client_state.last_span, checker_state.last_span];
        let pair = &mut self.pairs[k];
        pair.budget.opened();
        pair.open = Some(Box::new(OpenRecord {
            id,
            mismatch,
            since: clock.wall(since),
            opened_at: clock.wall(at),
            opened: at,
            reported: None,
            links,
        }));
        let job = self.attribution_job(k, at);
        if job.is_none() {
            if let Some(record) = self.pairs[k].open.as_mut() {
                record.report_once(telemetry);
            }
        }
        job
    }

    /// An attribution run for pair `k`'s open mismatch, if the budget allows one now (counted).
    fn attribution_job(&mut self, k: usize, now: Instant) -> Option<AttributionJob> {
        let client_state = &self.views[0];
        let checker_state = self.views.get(k + 1)?;
        let pair = &mut self.pairs[k];
        let record = pair.open.as_ref()?;
        let (client, checker) = deciding(&client_state.last, &checker_state.last, record.mismatch.direction)?;
        // A client that never got past DNS sent nothing a hybrid could vary.
        if client.error == Some(ErrorCode::DnsUnexpectedAddress)
            || pair.attributing.is_some()
            || !pair.budget.try_acquire(now)
        {
            return None;
        }
        pair.attributing = Some(record.id);
        Some(AttributionJob {
            target: self.name.clone(),
            checker: checker_state.view.name.clone(),
            mismatch_id: record.id,
            client_view: client_state.view.clone(),
            checker_view: checker_state.view.clone(),
            client_outcome: client.clone(),
            checker_outcome: checker.clone(),
            max_hybrids: pair.settings.max_hybrids,
        })
    }

    fn resolved(
        &mut self,
        checker: &str,
        resolution: Resolution,
        open_for: Duration,
        telemetry: &dyn TelemetrySink,
    ) {
        let Some(k) = self.checker_index(checker) else { return };
        let links = [self.views[0].last_span, self.views.get(k + 1).and_then(|v| v.last_span)];
        let pair = &mut self.pairs[k];
        pair.budget.resolved();
        let Some(record) = pair.open.take() else { return };
        tracing::info!(
            target = %self.name, checker = %checker, direction = %record.mismatch.direction,
            resolution = resolution_name(resolution), "mismatch resolved after {}",
            humantime::format_duration(Duration::from_secs(open_for.as_secs()))
        );
        record.close(open_for, resolution_name(resolution), links, telemetry);
    }

    fn status(&self, clock: &WallClock, now: Instant) -> TargetStatus {
        let views = self
            .views
            .iter()
            .map(|state| {
                let view = &state.view;
                let verdict = self.verdict(view);
                let (rise, fall) = verdict.map_or((view.rise, view.fall), |v| {
                    let (rise, fall, _) = v.thresholds();
                    (rise, fall)
                });
                ViewStatus {
                    name: view.name.to_string(),
                    role: view.role,
                    profile: view.profile,
                    url: view.url_display.clone(),
                    interval_ms: u64::try_from(view.interval.as_millis()).unwrap_or(u64::MAX),
                    verdict: VerdictStatus {
                        state: verdict.and_then(Verdict::known).map_or("unknown", |h| h.as_str()),
                        since: verdict.and_then(Verdict::changed_at).map(|at| rfc3339(clock.wall(at))),
                        consecutive_ok: verdict.map_or(0, Verdict::successes),
                        consecutive_fail: verdict.map_or(0, Verdict::failures),
                        rise,
                        fall,
                    },
                    last_outcome: worst(&state.last).cloned(),
                    recent: state.recent.iter().map(Recent::status).collect(),
                    probes: state.probes,
                    failures: state.failures,
                    skipped: state.skipped,
                }
            })
            .collect();
        let probed = self.pairs.iter().filter_map(|p| p.open.as_ref()).map(|r| OpenMismatchStatus {
            mismatch: r.mismatch.clone(),
            since: rfc3339(r.since),
            opened_at: rfc3339(r.opened_at),
            open_for_s: now.saturating_duration_since(r.opened).as_secs_f64(),
        });
        let audited = self.audit.iter().map(|r| OpenMismatchStatus {
            mismatch: r.mismatch.clone(),
            since: rfc3339(r.opened_at),
            opened_at: rfc3339(r.opened_at),
            open_for_s: now.saturating_duration_since(r.opened).as_secs_f64(),
        });
        TargetStatus { name: self.name.to_string(), views, mismatches: probed.chain(audited).collect() }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, AtomicUsize};
    use std::time::UNIX_EPOCH;

    use super::*;
    use crate::config::{AdminSettings, ExportSettings, InitialHealth, ProfileName, SourceBind};
    use crate::diff::testkit::{failed, ok_outcome, target, view_url};
    use crate::verdict::Health;

    /// What the daemon told its telemetry.
    #[derive(Debug, Clone, PartialEq)]
    enum Told {
        Probe { view: String, ok: bool, change: Option<Health>, force: bool, span: Option<SpanRef> },
        Skipped(String),
        Opened { checker: String, diagnosis: String, flipped: Vec<String>, links: [Option<SpanRef>; 2] },
        Resolved { checker: String, diagnosis: String, resolution: &'static str, links: [Option<SpanRef>; 2] },
        Reload(bool),
        Forget(String),
        Shutdown,
    }

    /// Records every call; exports a span as a success ratio of 0 would: failures, verdict
    /// changes and forced probes.
    #[derive(Default)]
    struct Recorder {
        told: Mutex<Vec<Told>>,
        spans: AtomicU64,
    }

    impl Recorder {
        fn told(&self) -> Vec<Told> {
            self.told.lock().unwrap().clone()
        }

        fn push(&self, t: Told) {
            self.told.lock().unwrap().push(t);
        }

        fn mismatches(&self) -> Vec<Told> {
            self.told()
                .into_iter()
                .filter(|t| matches!(t, Told::Opened { .. } | Told::Resolved { .. }))
                .collect()
        }
    }

    impl TelemetrySink for Recorder {
        fn probe(
            &self,
            view: &View,
            outcome: &Outcome,
            _started: SystemTime,
            _lateness: Duration,
            change: Option<&VerdictChange>,
            force: bool,
        ) -> Option<SpanRef> {
            let exported = !outcome.ok || change.is_some() || force;
            let span = exported.then(|| {
                let n = self.spans.fetch_add(1, Ordering::SeqCst) + 1;
                SpanRef { trace_id: [n as u8; 16], span_id: n.to_le_bytes() }
            });
            self.push(Told::Probe {
                view: view.id(),
                ok: outcome.ok,
                change: change.map(|c| c.to),
                force,
                span,
            });
            span
        }

        fn skipped(&self, view: &View) {
            self.push(Told::Skipped(view.id()));
        }

        fn mismatch(&self, event: MismatchEvent<'_>) {
            let told = match event {
                MismatchEvent::Opened { mismatch, links, .. } => Told::Opened {
                    checker: format!("{}/{}", mismatch.target, mismatch.checker_view),
                    diagnosis: mismatch.diagnosis.as_str().to_owned(),
                    flipped: mismatch.flipped.iter().map(|a| a.as_str().to_owned()).collect(),
                    links,
                },
                MismatchEvent::Resolved { mismatch, resolution, links, .. } => Told::Resolved {
                    checker: format!("{}/{}", mismatch.target, mismatch.checker_view),
                    diagnosis: mismatch.diagnosis.as_str().to_owned(),
                    resolution,
                    links,
                },
            };
            self.push(told);
        }

        fn reload(&self, ok: bool) {
            self.push(Told::Reload(ok));
        }

        fn forget_view(&self, view: &View) {
            self.push(Told::Forget(view.id()));
        }

        fn encode_metrics(&self) -> String {
            "# EOF\n".to_owned()
        }

        fn shutdown(&self, _deadline: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
            Box::pin(async move { self.push(Told::Shutdown) })
        }
    }

    fn plan(targets: Vec<Target>) -> Plan {
        Plan {
            targets,
            admin: AdminSettings { listen: "127.0.0.1:0".parse().unwrap() },
            export: ExportSettings { otlp: None },
            files: Vec::new(),
            read_files: Vec::new(),
        }
    }

    fn timed(mut v: View, interval_ms: u64, timeout_ms: u64) -> View {
        v.interval = Duration::from_millis(interval_ms);
        v.timeout = Duration::from_millis(timeout_ms);
        v
    }

    fn client() -> View {
        timed(view_url("shop", "client", "https://shop.example.com/cart"), 1000, 500)
    }

    /// An NLB-like checker: plain HTTP to node port 30080, one probe decides.
    fn nlb() -> View {
        let mut v = timed(view_url("shop", "nlb", "http://10.0.0.5:30080/healthz"), 1000, 500);
        v.profile = Some(ProfileName::AwsNlb);
        v.rise = 1;
        v.fall = 1;
        v.initial = InitialHealth::FirstProbe;
        v
    }

    /// A backend whose node port 30080 turns into a TLS listener while `tls` is set: plain HTTP
    /// to it is then `http_tls_required`. Port 443 is always TLS. Counts every probe.
    fn backend(tls: Arc<AtomicBool>, calls: Arc<AtomicUsize>) -> ProbeFn {
        Arc::new(move |v: Arc<View>| -> ProbeFuture {
            calls.fetch_add(1, Ordering::SeqCst);
            let port = v.dial_endpoint().port;
            let tls_port = port == 443 || (port == 30080 && tls.load(Ordering::SeqCst));
            let o = match (tls_port, v.scheme.uses_tls()) {
                (true, false) => failed(&v, ErrorCode::HttpTlsRequired, Some(400)),
                (false, true) => failed(&v, ErrorCode::TlsPlaintextPeer, None),
                _ => ok_outcome(&v),
            };
            Box::pin(std::future::ready(vec![o]))
        })
    }

    fn options() -> Options {
        Options {
            watch_interval: None,
            clock: Some(WallClock::anchored(Instant::now(), UNIX_EPOCH + Duration::from_secs(1_700_000_000))),
            ..Options::default()
        }
    }

    struct Running {
        handle: Handle,
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Running {
        fn start(daemon: Daemon) -> Running {
            let handle = daemon.handle();
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let task = tokio::spawn(daemon.run(None, async move {
                let _ = stopped.await;
            }));
            Running { handle, stop: Some(stop), task }
        }

        async fn stop(mut self) {
            if let Some(stop) = self.stop.take() {
                let _ = stop.send(());
            }
            tokio::time::timeout(Duration::from_secs(30), self.task).await.unwrap().unwrap();
        }
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[tokio::test(start_paused = true)]
    async fn a_false_drain_opens_after_the_hold_is_attributed_and_resolves() {
        let tls = Arc::new(AtomicBool::new(true));
        let calls = Arc::new(AtomicUsize::new(0));
        let recorder = Arc::new(Recorder::default());
        let daemon = Daemon::with_probe(
            plan(vec![target(client(), vec![nlb()])]),
            recorder.clone(),
            options(),
            backend(tls.clone(), calls.clone()),
        );
        let running = Running::start(daemon);
        let start = Instant::now();

        // First probes within a second; the disagreement then holds two checker intervals.
        tokio::time::sleep(Duration::from_millis(2_500)).await;
        assert!(running.handle.ready());
        assert!(recorder.mismatches().is_empty(), "the hold has not elapsed: {:?}", recorder.mismatches());
        tokio::time::sleep(secs(1)).await;

        let mismatches = recorder.mismatches();
        let [Told::Opened { checker, diagnosis, flipped, links }] = &mismatches[..] else {
            panic!("one opened mismatch: {mismatches:?}")
        };
        assert_eq!((checker.as_str(), diagnosis.as_str()), ("shop/nlb", "checker_protocol_mismatch"));
        assert!(flipped.contains(&"tls".to_owned()), "{flipped:?}");
        // Probes during the hold are exported, so both sides link.
        assert!(links.iter().all(Option::is_some), "{links:?}");
        let probes_told: Vec<Option<SpanRef>> = recorder
            .told()
            .iter()
            .filter_map(|t| match t {
                Told::Probe { span, .. } => Some(*span),
                _ => None,
            })
            .collect();
        assert!(links.iter().all(|l| probes_told.contains(l)), "links name exported probe spans");

        let status = running.handle.status();
        assert_eq!(status.generation, 1);
        let shop = &status.targets[0];
        assert_eq!(shop.views[0].verdict.state, "healthy");
        assert_eq!(shop.views[1].verdict.state, "unhealthy");
        assert_eq!(
            shop.views[1].last_outcome.as_ref().and_then(|o| o.error),
            Some(ErrorCode::HttpTlsRequired)
        );
        assert!(shop.views.iter().all(|v| (3..=4).contains(&v.probes)), "one probe a second");
        assert_eq!(shop.views[1].failures, shop.views[1].probes);
        assert_eq!(shop.views[1].recent.len() as u64, shop.views[1].probes);
        let [open] = &shop.mismatches[..] else { panic!("{:?}", shop.mismatches) };
        assert_eq!(open.mismatch.diagnosis.as_str(), "checker_protocol_mismatch");
        assert!(open.mismatch.attribution.is_some());
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["targets"][0]["mismatches"][0]["direction"], "false_drain");
        assert_eq!(json["targets"][0]["mismatches"][0]["flipped"][0], "tls");
        let hybrids =
            calls.load(Ordering::SeqCst) - shop.views.iter().map(|v| v.probes as usize).sum::<usize>();
        assert!((1..=12).contains(&hybrids), "{hybrids} hybrids, at most max_hybrids");

        // The node port serves plain HTTP again: the checker recovers, the mismatch resolves.
        tls.store(false, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        let mismatches = recorder.mismatches();
        assert!(
            matches!(&mismatches[..], [Told::Opened { .. }, Told::Resolved { resolution: "agreed", links, .. }] if links[1].is_some()),
            "{mismatches:?}"
        );
        let status = running.handle.status();
        assert!(status.targets[0].mismatches.is_empty());
        assert_eq!(status.targets[0].views[1].verdict.state, "healthy");
        // Attribution ran once: it is not repeated for the same mismatch within its interval.
        let probes = status.targets[0].views.iter().map(|v| v.probes as usize).sum::<usize>();
        assert_eq!(calls.load(Ordering::SeqCst) - probes, hybrids);
        assert!(start.elapsed() < secs(5));
        running.stop().await;
        assert_eq!(recorder.told().last(), Some(&Told::Shutdown));
    }

    /// A later attribution run may change an open mismatch's diagnosis (the status shows the
    /// new one); `Resolved` must still carry the labels `Opened` reported, or the
    /// `parallax_mismatch` series that opened would never close.
    #[tokio::test(start_paused = true)]
    async fn a_mismatch_resolves_with_the_labels_it_opened_with() {
        let mismatch = |diagnosis| Mismatch {
            target: "shop".into(),
            client_view: "client".into(),
            checker_view: "nlb".into(),
            direction: crate::diff::Direction::FalseDrain,
            diagnosis,
            flipped: Vec::new(),
            evidence: String::new(),
            basis: crate::diff::Basis::Probes,
            client_address: None,
            checker_address: None,
            client_error: None,
            checker_error: None,
            attribution: None,
        };
        let recorder = Recorder::default();
        let mut record = OpenRecord {
            id: 1,
            mismatch: mismatch(crate::diff::Diagnosis::CheckerProtocolMismatch),
            since: UNIX_EPOCH,
            opened_at: UNIX_EPOCH,
            opened: Instant::now(),
            reported: None,
            links: [None, None],
        };
        record.report_once(&recorder);
        record.mismatch = mismatch(crate::diff::Diagnosis::ShallowHealthPath);
        record.close(secs(3), "agreed", [None, None], &recorder);
        let told = recorder.mismatches();
        let [Told::Opened { diagnosis: opened, .. }, Told::Resolved { diagnosis: resolved, .. }] = &told[..]
        else {
            panic!("{told:?}")
        };
        assert_eq!(
            (opened.as_str(), resolved.as_str()),
            ("checker_protocol_mismatch", "checker_protocol_mismatch")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn skipped_ticks_are_counted_in_status_and_telemetry() {
        // One permit, three views whose probes never answer (cancelled at 510 ms of each 1 s
        // interval): they wait for each other's permit and find themselves still in flight.
        let hang: ProbeFn = Arc::new(|_view: Arc<View>| -> ProbeFuture { Box::pin(std::future::pending()) });
        let recorder = Arc::new(Recorder::default());
        let mut options = options();
        options.scheduler.max_in_flight = 1;
        let targets = ["a", "b", "c"]
            .map(|name| {
                let mut v = client();
                v.target = name.into();
                target(v, vec![])
            })
            .to_vec();
        let daemon = Daemon::with_probe(plan(targets), recorder.clone(), options, hang);
        let running = Running::start(daemon);
        tokio::time::sleep(secs(10)).await;
        let status = running.handle.status();
        let skipped: u64 = status.targets.iter().map(|t| t.views[0].skipped).sum();
        let probes: u64 = status.targets.iter().map(|t| t.views[0].probes).sum();
        let told = recorder.told().iter().filter(|t| matches!(t, Told::Skipped(_))).count() as u64;
        assert!(skipped > 0 && told == skipped, "{skipped} skipped, {told} told");
        // About one probe per 510 ms fits through the single permit.
        assert!((17..=20).contains(&probes), "{probes}");
        let outcome = status.targets[0].views[0].last_outcome.as_ref().expect("probed");
        assert_eq!(outcome.error, Some(ErrorCode::HttpTimeout), "cancelled at the deadline");
        running.stop().await;
    }

    #[test]
    fn a_recent_probe_costs_16_bytes() {
        assert!(std::mem::size_of::<Recent>() <= 16, "{}", std::mem::size_of::<Recent>());
    }

    #[tokio::test(start_paused = true)]
    async fn attribution_off_reports_at_once_from_error_codes() {
        let mut t = target(client(), vec![nlb()]);
        t.diff.attribution = false;
        t.diff.hold = Some(Duration::ZERO);
        let calls = Arc::new(AtomicUsize::new(0));
        let recorder = Arc::new(Recorder::default());
        let daemon = Daemon::with_probe(
            plan(vec![t]),
            recorder.clone(),
            options(),
            backend(Arc::new(AtomicBool::new(true)), calls.clone()),
        );
        let running = Running::start(daemon);
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        let mismatches = recorder.mismatches();
        let [Told::Opened { diagnosis, flipped, .. }] = &mismatches[..] else { panic!("{mismatches:?}") };
        assert_eq!(diagnosis, "checker_protocol_mismatch", "error codes alone name it");
        assert!(flipped.is_empty());
        let status = running.handle.status();
        let probes: u64 = status.targets[0].views.iter().map(|v| v.probes).sum();
        assert_eq!(calls.load(Ordering::SeqCst) as u64, probes, "no hybrid probed");
        running.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn the_allow_sources_audit_opens_at_load_and_resolves_when_fixed() {
        let mut k = nlb();
        k.source = Some(SourceBind {
            requested: crate::config::Source::Addr([10, 9, 9, 9].into()),
            addr: [10, 9, 9, 9].into(),
        });
        let mut t = target(client(), vec![k]);
        t.allow_sources = vec!["198.51.100.0/24".parse().unwrap()];
        let recorder = Arc::new(Recorder::default());
        let daemon = Daemon::with_probe(
            plan(vec![t.clone()]),
            recorder.clone(),
            options(),
            backend(Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0))),
        );
        // Opened at load, before any probe.
        let mismatches = recorder.mismatches();
        assert!(
            matches!(&mismatches[..], [Told::Opened { diagnosis, .. }] if diagnosis == "checker_source_blocked"),
            "{mismatches:?}"
        );
        let running = Running::start(daemon);
        tokio::time::sleep(secs(3)).await;
        let status = running.handle.status();
        assert_eq!(status.targets[0].mismatches.len(), 1);
        assert_eq!(serde_json::to_value(&status.targets[0].mismatches[0]).unwrap()["basis"], "audit");

        // The same plan again changes nothing; the allowlist fixed resolves it.
        assert!(running.handle.shared.swap(plan(vec![t.clone()]), Instant::now()).await);
        assert_eq!(recorder.mismatches().len(), 1);
        t.allow_sources.push("10.9.9.0/24".parse().unwrap());
        assert!(running.handle.shared.swap(plan(vec![t]), Instant::now()).await);
        let mismatches = recorder.mismatches();
        assert!(matches!(&mismatches[1..], [Told::Resolved { resolution: "removed", .. }]), "{mismatches:?}");
        assert!(running.handle.status().targets[0].mismatches.is_empty());
        running.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_reload_keeps_unchanged_views_and_their_mismatch_and_drops_removed_ones() {
        let tls = Arc::new(AtomicBool::new(true));
        let recorder = Arc::new(Recorder::default());
        let mut other = nlb();
        other.name = "gone".into();
        let mut changed = nlb();
        changed.name = "changed".into();
        changed.url_endpoint.port = 8081;
        let mut shop = target(client(), vec![nlb(), other, changed.clone()]);
        shop.diff.hold = Some(Duration::ZERO);
        let old = timed(view_url("old", "client", "https://old.example.com/"), 1000, 500);
        let daemon = Daemon::with_probe(
            plan(vec![shop.clone(), target(old, vec![])]),
            recorder.clone(),
            options(),
            backend(tls, Arc::new(AtomicUsize::new(0))),
        );
        let running = Running::start(daemon);
        tokio::time::sleep(Duration::from_millis(3_500)).await;
        let before = running.handle.status();
        let nlb_before = before.targets[0].views[1].clone();
        let open_before = before.targets[0].mismatches.clone();
        let open_names: Vec<&str> = open_before.iter().map(|m| &*m.mismatch.checker_view).collect();
        assert_eq!(open_names, ["nlb", "gone"]);
        assert_eq!(&*open_before[0].mismatch.checker_view, "nlb");

        // New plan: `old` and checker `gone` removed, `changed` on a new path, `fresh` added.
        let mut changed2 = changed;
        changed2.path = "/other".into();
        let fresh = timed(view_url("fresh", "client", "https://fresh.example.com/"), 1000, 500);
        let mut shop2 = shop.clone();
        shop2.checkers = vec![nlb(), changed2];
        let told_before = recorder.told().len();
        assert!(running.handle.shared.swap(plan(vec![shop2, target(fresh, vec![])]), Instant::now()).await);

        let after = running.handle.status();
        assert_eq!(after.generation, 2);
        assert_eq!(after.last_reload.as_ref().map(|r| r.ok), Some(true));
        let names: Vec<&str> = after.targets.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["shop", "fresh"]);
        let shop_after = &after.targets[0];
        let view_names: Vec<&str> = shop_after.views.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(view_names, ["client", "nlb", "changed"]);
        // Unchanged: counters, verdict and its start, the open mismatch with its times.
        assert_eq!(shop_after.views[1].probes, nlb_before.probes);
        assert_eq!(shop_after.views[1].verdict.state, "unhealthy");
        assert_eq!(shop_after.views[1].verdict.since, nlb_before.verdict.since);
        assert_eq!(shop_after.mismatches.len(), 1);
        assert_eq!(&*shop_after.mismatches[0].mismatch.checker_view, "nlb");
        assert_eq!(shop_after.mismatches[0].opened_at, open_before[0].opened_at);
        // Changed: a fresh start.
        assert_eq!((shop_after.views[2].probes, shop_after.views[2].verdict.state), (0, "unknown"));
        let told: Vec<Told> = recorder.told()[told_before..].to_vec();
        let forgotten: HashSet<String> = told
            .iter()
            .filter_map(|t| if let Told::Forget(v) = t { Some(v.clone()) } else { None })
            .collect();
        assert_eq!(forgotten, HashSet::from(["shop/gone".to_owned(), "old/client".to_owned()]));
        let resolved: Vec<(&str, &str)> = told
            .iter()
            .filter_map(|t| match t {
                Told::Resolved { checker, resolution, .. } => Some((checker.as_str(), *resolution)),
                _ => None,
            })
            .collect();
        assert_eq!(resolved, [("shop/gone", "removed")], "the unchanged pair's mismatch stays open");
        assert!(told.contains(&Told::Reload(true)));

        // The scheduler follows: removed views stop, the changed and new ones run.
        tokio::time::sleep(secs(2)).await;
        let later = recorder.told()[told_before..].to_vec();
        let probed: HashSet<String> = later
            .iter()
            .filter_map(|t| if let Told::Probe { view, .. } = t { Some(view.clone()) } else { None })
            .collect();
        assert!(!probed.contains("old/client") && !probed.contains("shop/gone"), "{probed:?}");
        assert!(probed.contains("fresh/client") && probed.contains("shop/changed"), "{probed:?}");
        let status = running.handle.status();
        assert!(status.targets[0].views[1].probes >= nlb_before.probes + 2);
        running.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_reload_keeps_the_plan_and_readiness() {
        let recorder = Arc::new(Recorder::default());
        let daemon = Daemon::with_probe(
            plan(vec![target(client(), vec![nlb()])]),
            recorder.clone(),
            options(),
            backend(Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0))),
        );
        let running = Running::start(daemon);
        tokio::time::sleep(secs(2)).await;
        let errors = ConfigErrors(vec![config::ConfigError {
            file: Some("probes.d/shop.toml".into()),
            key: "target[0].client.timeout".into(),
            message: "must be below interval".into(),
        }]);
        running.handle.shared.engine().reload_failed(&errors, &*recorder);
        let status = running.handle.status();
        assert!(status.ready);
        assert_eq!(status.generation, 1);
        let reload = status.last_reload.expect("recorded");
        assert!(!reload.ok);
        assert_eq!(reload.errors, ["probes.d/shop.toml: target[0].client.timeout: must be below interval"]);
        assert!(recorder.told().contains(&Told::Reload(false)));
        let probes = status.targets[0].views[0].probes;
        tokio::time::sleep(secs(2)).await;
        assert!(running.handle.status().targets[0].views[0].probes >= probes + 2, "still probing");
        let handle = running.handle.clone();
        running.stop().await;
        assert!(!handle.ready(), "not ready once stopped");
        assert_eq!(recorder.told().iter().filter(|t| **t == Told::Shutdown).count(), 1, "flushed once");
    }
}
