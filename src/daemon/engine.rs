//! The engine: everything the daemon knows, behind one lock. Each call is pure bookkeeping plus
//! the [`Sink`] calls it triggers, and returns the [`Action`]s that wait (attribution runs, poll
//! timers) for the runtime to spawn once the lock is released.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::SystemTime;

use tokio::time::Instant;

use crate::config::{self, ConfigErrors, Plan, Target, View};
use crate::diff::lifecycle::probe_ok;
use crate::diff::{
    audit_allow_sources, worst_index, Attribution, Case, DiffEvent, Mismatch, OpenMismatch, PairEvent,
    TargetDiff,
};
use crate::export::{MismatchEvent, ProbeReport, Sink, SpanRef};
use crate::probe::timestamp::rfc3339;
use crate::schedule::{Finished, Scheduled, WallClock};
use crate::status::{ReloadStatus, StatusDoc};
use crate::verdict::VerdictChange;

use super::reload::{plan_changes, Lineup, TargetChanges};
use super::target::{
    attribution_settings, hold_of, AttributionJob, AuditRecord, PairState, TargetState, ViewState,
};

/// Work the engine asks for after a call, done once the lock is released.
#[derive(Debug)]
pub(super) enum Action {
    Attribute(Box<AttributionJob>),
    Poll { target: Arc<str>, at: Instant, timer: u64 },
}

/// Everything the daemon knows, behind one lock.
pub(super) struct Engine {
    clock: WallClock,
    generation: u64,
    started_at: SystemTime,
    plan_loaded_at: SystemTime,
    last_reload: Option<ReloadStatus>,
    admin: config::AdminSettings,
    export: config::ExportSettings,
    /// `[vantage]` of the first plan: the labels of every series, fixed for the process.
    vantage: config::Vantage,
    targets: Vec<TargetState>,
    by_name: HashMap<Arc<str>, usize>,
    ids: Ids,
    /// The running plan's `[[condition]]`s.
    conditions: Vec<config::Condition>,
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

impl Engine {
    pub(super) fn new(plan: &Plan, clock: WallClock) -> Engine {
        let now = clock.wall_now();
        Engine {
            clock,
            generation: 0,
            started_at: now,
            plan_loaded_at: now,
            last_reload: None,
            admin: plan.admin.clone(),
            export: plan.export.clone(),
            vantage: plan.vantage.clone(),
            targets: Vec::new(),
            by_name: HashMap::new(),
            ids: Ids::default(),
            conditions: Vec::new(),
        }
    }

    /// Loads the first plan.
    pub(super) fn load(&mut self, plan: Plan, now: Instant, telemetry: &dyn Sink) -> Vec<Action> {
        self.install(plan, now, telemetry)
    }

    /// Every view with its recipe identity, for the scheduler.
    pub(super) fn scheduled(&self) -> Vec<Scheduled> {
        // Sized up front: grown by doubling, a plan of 100,000 views would leave its discarded
        // smaller copies as holes in the heap.
        let mut scheduled = Vec::with_capacity(self.targets.iter().map(|t| t.views.len()).sum());
        for t in &self.targets {
            scheduled.extend(t.views.iter().map(|v| Scheduled { view: v.view.clone(), epoch: v.epoch }));
        }
        scheduled
    }

    /// A reload that compiled: swaps `plan` in.
    pub(super) fn swap(
        &mut self,
        plan: Plan,
        now: Instant,
        telemetry: &dyn Sink,
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
    pub(super) fn reload_failed(&mut self, errors: &ConfigErrors, telemetry: &dyn Sink) {
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

    /// Swaps `plan` in: the plan diff decides what each target keeps, then each target is built
    /// (keeping that) and each removed one retired.
    fn install(&mut self, plan: Plan, now: Instant, telemetry: &dyn Sink) -> Vec<Action> {
        let changes = {
            let old: Vec<Lineup<'_>> = self.targets.iter().map(TargetState::lineup).collect();
            let new: Vec<Lineup<'_>> = plan.targets.iter().map(Lineup::of).collect();
            plan_changes(&old, &new)
        };
        let mut previous: Vec<Option<TargetState>> = self.targets.drain(..).map(Some).collect();
        let mut targets = Vec::with_capacity(plan.targets.len());
        for (target, change) in plan.targets.into_iter().zip(changes.targets) {
            let state = match change.and_then(|(i, kept)| Some((previous[i].take()?, kept))) {
                Some((prev, kept)) => self.carry_over(target, prev, &kept, now, telemetry),
                None => self.fresh(target, now, telemetry),
            };
            targets.push(state);
        }
        for gone in changes.removed.into_iter().filter_map(|i| previous[i].take()) {
            self.retire(gone, now, telemetry);
        }
        self.targets = targets;
        self.by_name = self.targets.iter().enumerate().map(|(i, t)| (t.name.clone(), i)).collect();
        let actions = self.rearm_poll_timers();
        self.generation += 1;
        self.plan_loaded_at = self.clock.wall(now);
        self.admin = plan.admin;
        self.export = plan.export;
        if plan.vantage != self.vantage {
            tracing::warn!(
                running = %self.vantage.describe(),
                configured = %plan.vantage.describe(),
                "[vantage] changed: it labels every series, so it takes effect at restart"
            );
        }
        telemetry.conditions(&plan.conditions);
        self.conditions = plan.conditions;
        actions
    }

    /// Pending disagreements carried over need their timer again (a timer of the old state that
    /// wakes finds itself replaced and ends).
    fn rearm_poll_timers(&mut self) -> Vec<Action> {
        let mut actions = Vec::new();
        for t in &mut self.targets {
            t.poll_armed = None;
            if let Some(at) = t.diff.next_deadline() {
                let timer = self.ids.timer();
                t.poll_armed = Some((at, timer));
                actions.push(Action::Poll { target: t.name.clone(), at, timer });
            }
        }
        actions
    }

    /// The state of a target new to the plan.
    fn fresh(&mut self, target: Target, now: Instant, telemetry: &dyn Sink) -> TargetState {
        let diff = TargetDiff::new(&target, hold_of(&target));
        let settings = attribution_settings(&target);
        let pairs = target.checkers.iter().map(|_| PairState::new(settings)).collect();
        let audit = self.reaudit(&target, Vec::new(), now, telemetry);
        let Target { name, client, checkers, cluster, .. } = target;
        let views = std::iter::once(client)
            .chain(checkers)
            .map(|view| ViewState::new(Arc::new(view), self.ids.epoch()))
            .collect();
        TargetState { name, diff, views, pairs, audit, cluster, poll_armed: None }
    }

    /// The state of `target` in a new plan, keeping what `prev` (the same target in the old
    /// plan) knew as far as `changes` says: unchanged views, their verdicts, the pairs between
    /// them with their open mismatches.
    fn carry_over(
        &mut self,
        target: Target,
        mut prev: TargetState,
        changes: &TargetChanges,
        now: Instant,
        telemetry: &dyn Sink,
    ) -> TargetState {
        for &j in &changes.removed_views {
            telemetry.forget_view(&prev.views[j].view);
        }
        let kept: HashSet<Arc<str>> = target
            .views()
            .enumerate()
            .filter(|(i, _)| changes.keeps_view(*i))
            .map(|(_, view)| view.name.clone())
            .collect();
        let diff = TargetDiff::carry_over(&target, hold_of(&target), &prev.diff, |name| kept.contains(name));
        let mut old_pairs: Vec<Option<PairState>> =
            std::mem::take(&mut prev.pairs).into_iter().map(Some).collect();
        for ended in changes.ended_pairs.iter().filter_map(|&k| old_pairs[k].take()) {
            prev.end_pair(ended, now, telemetry);
        }
        let settings = attribution_settings(&target);
        let pairs = changes
            .pairs
            .iter()
            .map(|old| match old.and_then(|k| old_pairs[k].take()) {
                Some(pair) => pair.with_settings(settings),
                None => PairState::new(settings),
            })
            .collect();
        let audit = self.reaudit(&target, std::mem::take(&mut prev.audit), now, telemetry);
        let mut old_views: Vec<Option<ViewState>> = prev.views.into_iter().map(Some).collect();
        let Target { name, client, checkers, cluster, .. } = target;
        let views = std::iter::once(client)
            .chain(checkers)
            .zip(&changes.views)
            .map(|(view, old)| match old.and_then(|j| old_views[j].take()) {
                Some(state) => state,
                None => ViewState::new(Arc::new(view), self.ids.epoch()),
            })
            .collect();
        TargetState { name, diff, views, pairs, audit, cluster, poll_armed: None }
    }

    /// The `allow_sources` audit of `target`: gaps found before stay open, new ones open now,
    /// fixed ones resolve.
    fn reaudit(
        &mut self,
        target: &Target,
        previous: Vec<AuditRecord>,
        now: Instant,
        telemetry: &dyn Sink,
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

    fn resolve_audit(record: AuditRecord, now: Instant, telemetry: &dyn Sink) {
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
    fn retire(&mut self, mut gone: TargetState, now: Instant, telemetry: &dyn Sink) {
        for pair in std::mem::take(&mut gone.pairs) {
            gone.end_pair(pair, now, telemetry);
        }
        for record in std::mem::take(&mut gone.audit) {
            Self::resolve_audit(record, now, telemetry);
        }
        for view in &gone.views {
            telemetry.forget_view(&view.view);
        }
    }

    /// One finished probe: verdict, diff, status, telemetry.
    pub(super) fn record(&mut self, probe: Finished, now: Instant, telemetry: &dyn Sink) -> Vec<Action> {
        let Some(&ti) = self.by_name.get(&probe.view.target) else { return Vec::new() };
        let clock = self.clock;
        let t = &mut self.targets[ti];
        let Some(vi) = t.views.iter().position(|v| v.view.name == probe.view.name) else { return Vec::new() };
        if t.views[vi].epoch != probe.epoch {
            // A recipe a reload replaced: its result says nothing about the new one.
            return Vec::new();
        }
        let ok = probe_ok(&probe.outcomes);
        // A probe this host could not run (out of fds) leaves the verdict and the mismatches.
        let mut events = t.diff.observe_probe(&probe.view.name, &probe.outcomes, now);
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
        let span = export_probe(&probe, started, change.as_ref(), force, telemetry);
        t.views[vi].record(probe.outcomes, started, ok, span);
        self.after_events(ti, events, now, telemetry)
    }

    pub(super) fn skipped(&mut self, view: &Arc<View>, epoch: u64, telemetry: &dyn Sink) {
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
    pub(super) fn poll(
        &mut self,
        target: &str,
        timer: u64,
        now: Instant,
        telemetry: &dyn Sink,
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
        telemetry: &dyn Sink,
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
    pub(super) fn attributed(
        &mut self,
        job: &AttributionJob,
        attribution: Attribution,
        telemetry: &dyn Sink,
    ) -> Vec<Action> {
        let Some(&ti) = self.by_name.get(&job.target) else { return Vec::new() };
        let t = &mut self.targets[ti];
        let Some(k) = t.checker_index(&job.checker) else { return Vec::new() };
        let cluster = t.cluster.clone();
        let pair = &mut t.pairs[k];
        if pair.attributing == Some(job.mismatch_id) {
            pair.attributing = None;
        }
        let Some(record) = pair.open.as_mut().filter(|r| r.id == job.mismatch_id) else {
            // Resolved (or replaced by a reload) while the hybrids ran.
            return Vec::new();
        };
        let mismatch = Mismatch::diagnose(&Case {
            direction: record.mismatch.direction,
            client_view: &job.client_view,
            checker_view: &job.checker_view,
            client: &job.client_outcome,
            checker: &job.checker_outcome,
            attribution: Some(&attribution),
            cluster: cluster.as_deref(),
        });
        tracing::info!(
            target = %job.target, checker = %job.checker, diagnosis = %mismatch.diagnosis,
            flipped = ?mismatch.flipped.iter().map(|a| a.as_str()).collect::<Vec<_>>(),
            "attribution finished"
        );
        record.rediagnose(mismatch, Instant::now(), telemetry);
        Vec::new()
    }

    /// An attribution that will not run (shutting down): the mismatch is reported as diagnosed
    /// from error codes.
    pub(super) fn attribution_dropped(&mut self, job: &AttributionJob, telemetry: &dyn Sink) {
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
    pub(super) fn report_unreported(&mut self, telemetry: &dyn Sink) {
        for pair in self.targets.iter_mut().flat_map(|t| t.pairs.iter_mut()) {
            if let Some(record) = pair.open.as_mut() {
                record.report_once(telemetry);
            }
        }
    }

    /// `[admin]` of the plan the daemon started with (changes take effect at restart).
    pub(super) fn admin(&self) -> &config::AdminSettings {
        &self.admin
    }

    pub(super) fn status(&self, ready: bool, now: Instant) -> StatusDoc {
        StatusDoc {
            version: env!("CARGO_PKG_VERSION"),
            generation: self.generation,
            ready,
            started_at: rfc3339(self.started_at),
            plan_loaded_at: rfc3339(self.plan_loaded_at),
            last_reload: self.last_reload.clone(),
            targets: self.targets.iter().map(|t| t.status(&self.clock, now)).collect(),
            conditions: self.conditions.clone(),
            discovery: None,
            vantage: Some(self.vantage.clone()),
        }
    }
}

/// Hands each outcome of `probe` to telemetry, the verdict `change` with the outcome that stands
/// for the probe. Returns that outcome's exported span.
fn export_probe(
    probe: &Finished,
    started: SystemTime,
    change: Option<&VerdictChange>,
    force: bool,
    telemetry: &dyn Sink,
) -> Option<SpanRef> {
    let worst = worst_index(&probe.outcomes).unwrap_or(0);
    let mut span = None;
    for (i, outcome) in probe.outcomes.iter().enumerate() {
        let report = ProbeReport {
            view: &probe.view,
            outcome,
            started,
            lateness: probe.lateness,
            change: if i == worst { change } else { None },
            force,
        };
        let exported = telemetry.probe(&report);
        if i == worst {
            span = exported;
        }
    }
    span
}

fn log_verdict(view: &View, change: &VerdictChange) {
    let from = change.from.map_or("unknown", |h| h.as_str());
    tracing::info!(view = %view.id(), role = view.role.as_str(), "verdict {from} -> {}", change.to);
}
