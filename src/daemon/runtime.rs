//! Task wiring: the [`Daemon`] built from a plan, the [`Handle`] on it, the state its tasks
//! share, and the scheduler's view of it. The engine decides; this file spawns what it asks for
//! (attribution runs, poll timers) and carries plans from the reloader to the engine and the
//! scheduler.

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::time::Instant;

use crate::admin::{self, AdminState};
use crate::config::{KubernetesDiscovery, Plan, View};
use crate::diff::attribution::{attribute_with, HYBRID_CONCURRENCY};
use crate::export::Sink;
use crate::probe::Prober;
use crate::schedule::{Command, Finished, InFlight, ProbeFuture, ProbeRunner, Scheduler, WallClock};
use crate::status::StatusDoc;

use super::discover::{self, Discovery, Generated};
use super::engine::{Action, Engine};
use super::target::AttributionJob;
use super::{reload, Options, FLUSH_DEADLINE};

/// How the daemon probes a view: the [`Prober`] in production, a function in tests.
pub(super) type ProbeFn = Arc<dyn Fn(Arc<View>) -> ProbeFuture + Send + Sync>;

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
    /// `[discovery.kubernetes]` and the derived files' channel to the reloader, when configured.
    discovery: Option<(KubernetesDiscovery, watch::Receiver<Generated>)>,
}

impl fmt::Debug for Daemon {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Daemon").field("options", &self.options).finish_non_exhaustive()
    }
}

impl Daemon {
    /// A daemon for `plan` reporting to `telemetry`. The `allow_sources` audit runs now: its
    /// mismatches open at plan load.
    pub fn new(plan: Plan, telemetry: Arc<dyn Sink>, options: Options) -> Daemon {
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
        telemetry: Arc<dyn Sink>,
        options: Options,
        probe: ProbeFn,
    ) -> Daemon {
        Daemon::build(plan, telemetry, options, probe, None)
    }

    fn build(
        plan: Plan,
        telemetry: Arc<dyn Sink>,
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
        let discovery_settings = plan.discovery.clone();
        let (discovery, generated) = match &discovery_settings {
            Some(settings) => {
                let (discovery, generated) = Discovery::new(settings.clone());
                (Some(discovery), Some(generated))
            }
            None => (None, None),
        };
        let actions = engine.load(plan, now, &*telemetry);
        scheduler.replace(engine.scheduled());
        let shared = Arc::new(Shared {
            engine: Mutex::new(engine),
            changes: AtomicU64::new(0),
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
            discovery,
        });
        shared.act(actions);
        let discovery = discovery_settings.zip(generated);
        Daemon { shared, scheduler, commands, reloads, options, read_files, discovery }
    }

    /// A handle on the daemon's state, usable while it runs.
    pub fn handle(&self) -> Handle {
        Handle { shared: self.shared.clone() }
    }

    /// Runs until `shutdown` completes: the scheduler, the reloader and, with `admin`, the admin
    /// server on that listener. Then stops scheduling, lets probes in flight finish (up to the
    /// scheduler's grace), flushes the exporters and stops the admin server.
    pub async fn run(self, admin: Option<TcpListener>, shutdown: impl Future<Output = ()> + Send + 'static) {
        let Daemon { shared, scheduler, commands, reloads, options, read_files, discovery } = self;
        let admin_task = admin.map(|listener| {
            let state: Arc<dyn AdminState> = shared.clone();
            let options = admin::Options {
                allowed_hosts: shared.engine().admin().allowed_hosts.clone(),
                ..admin::Options::default()
            };
            let mut stop = shared.stop.subscribe();
            tokio::spawn(async move {
                let stopped = async move {
                    let _ = stop.wait_for(|s| *s).await;
                };
                if let Err(e) = admin::serve_with(listener, state, stopped, options).await {
                    tracing::error!("admin server stopped: {e}");
                }
            })
        });
        let generated = discovery.map(|(settings, generated)| {
            if let Some(state) = &shared.discovery {
                let env = options.env.clone();
                tokio::spawn(discover::run(shared.clone(), state.clone(), settings, env));
            }
            generated
        });
        let reloader =
            tokio::spawn(reload::reloader(shared.clone(), reloads, options, read_files, generated));
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
    pub(super) shared: Arc<Shared>,
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

    fn status_version(&self) -> Option<u64> {
        self.shared.status_version()
    }

    fn metrics(&self) -> String {
        self.shared.metrics()
    }

    fn readiness_detail(&self) -> Option<String> {
        self.shared.readiness_detail()
    }
}

/// What the daemon's tasks share: the engine behind its lock, the telemetry, the probe and the
/// channels to the scheduler and the reloader.
pub(super) struct Shared {
    pub(super) engine: Mutex<Engine>,
    /// Times the engine was taken to be changed ([`Shared::engine`]): the status version.
    changes: AtomicU64,
    pub(super) telemetry: Arc<dyn Sink>,
    probe: ProbeFn,
    /// The prober behind `probe` (none with a test's probe function): a reload makes it read
    /// `ca_file`s again.
    pub(super) prober: Option<Arc<Prober>>,
    tasks: InFlight,
    permits: Arc<Semaphore>,
    hybrid_permits: u32,
    running: Arc<AtomicBool>,
    reload: mpsc::Sender<()>,
    /// Plan swaps for the scheduler.
    commands: mpsc::Sender<Command>,
    /// Set once scheduling has stopped: timers and the reloader end, the admin server stops.
    pub(super) stop: watch::Sender<bool>,
    /// Kubernetes discovery's state, when configured.
    pub(super) discovery: Option<Arc<Discovery>>,
}

impl AdminState for Shared {
    fn ready(&self) -> bool {
        // The engine always holds a plan: the daemon is built from one. With discovery, the
        // cluster must have been listed once: until then the plan lacks its targets.
        self.running.load(Ordering::SeqCst) && self.discovery.as_ref().is_none_or(|d| d.status().synced)
    }

    fn status(&self) -> StatusDoc {
        let ready = self.ready();
        // Reading: not a change.
        let mut doc =
            self.engine.lock().unwrap_or_else(PoisonError::into_inner).status(ready, Instant::now());
        doc.discovery = self.discovery.as_ref().map(|d| d.status());
        doc
    }

    fn status_version(&self) -> Option<u64> {
        // Both counters only grow, so their sum changes whenever either does; the low bit is
        // readiness.
        let changes =
            self.changes.load(Ordering::Acquire) + self.discovery.as_ref().map_or(0, |d| d.changes());
        Some(changes.wrapping_mul(2) | u64::from(self.ready()))
    }

    fn metrics(&self) -> String {
        self.telemetry.encode_metrics()
    }

    fn readiness_detail(&self) -> Option<String> {
        self.discovery.as_ref().map(|d| d.status().readiness_detail())
    }
}

impl Shared {
    /// The engine, to change it (counted: the admin server serialises the status again after
    /// a change).
    pub(super) fn engine(&self) -> MutexGuard<'_, Engine> {
        // A panic while recording one result must not stop the daemon from recording the next.
        let engine = self.engine.lock().unwrap_or_else(PoisonError::into_inner);
        self.changes.fetch_add(1, Ordering::AcqRel);
        engine
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
    pub(super) async fn swap(self: &Arc<Self>, plan: Plan, now: Instant) -> bool {
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
