//! Per-target records: what the engine knows of each target, view and client/checker pair, the
//! mismatch records they hold, and the status rows they turn into.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use crate::config::{ClusterFacts, Role, Target, View};
use crate::diff::diagnosis::cluster::explain_failure;
use crate::diff::{
    pair_outcomes, worst_outcome, AttributionBudget, AttributionSettings, Case, Diagnosis, Direction,
    HoldTime, Mismatch, OpenMismatch, Resolution, TargetDiff,
};
use crate::duration::Human;
use crate::export::{MismatchEvent, Sink, SpanRef};
use crate::probe::timestamp::rfc3339;
use crate::probe::{ErrorCode, Outcome};
use crate::schedule::WallClock;
use crate::status::{
    ExplainedStatus, OpenMismatchStatus, RecentProbe, TargetStatus, VerdictStatus, ViewStatus, RECENT_PROBES,
};
use crate::verdict::Verdict;

use super::reload::Lineup;

/// One target of the running plan. It keeps no copy of its [`Target`]: each view's recipe is
/// held once, by its [`ViewState`], and the rest of the configuration lives in what `diff`,
/// `pairs` and `audit` were built from (a second copy of every view, 640 bytes and its
/// strings, was the largest part of an idle view's memory).
pub(super) struct TargetState {
    pub(super) name: Arc<str>,
    pub(super) diff: TargetDiff,
    /// The client view first, then the checkers in configuration order.
    pub(super) views: Vec<ViewState>,
    /// One per checker, in configuration order.
    pub(super) pairs: Vec<PairState>,
    /// `allow_sources` gaps, open since the plan that found them was loaded.
    pub(super) audit: Vec<AuditRecord>,
    /// What the Kubernetes API says about the target (`[target.cluster]`), from the running plan.
    pub(super) cluster: Option<Arc<ClusterFacts>>,
    /// When the poll timer of this target wakes next, and which timer it is (`None`: no timer).
    /// Other timers of the target that wake end without re-arming.
    pub(super) poll_armed: Option<(Instant, u64)>,
}

/// One view of the running plan: its recipe and what its probes left.
pub(super) struct ViewState {
    pub(super) view: Arc<View>,
    /// The recipe's identity for the scheduler: a result of an older recipe is dropped.
    pub(super) epoch: u64,
    /// The last probe's outcomes (several with `each_address`).
    last: Vec<Outcome>,
    /// The exported span of the last probe's worst outcome, if it was exported.
    last_span: Option<SpanRef>,
    /// The last [`RECENT_PROBES`] probes, compact (16 bytes each: this is most of a view's
    /// memory); turned into [`RecentProbe`]s only when the status is read.
    recent: VecDeque<Recent>,
    probes: u64,
    failures: u64,
    pub(super) skipped: u64,
}

impl ViewState {
    pub(super) fn new(view: Arc<View>, epoch: u64) -> ViewState {
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

    /// A finished probe that started at `started`: its outcomes, whether it passed, and the span
    /// of its worst outcome.
    pub(super) fn record(
        &mut self,
        outcomes: Vec<Outcome>,
        started: SystemTime,
        ok: bool,
        span: Option<SpanRef>,
    ) {
        self.last_span = span;
        self.probes += 1;
        if !ok {
            self.failures += 1;
        }
        if self.recent.len() == RECENT_PROBES {
            self.recent.pop_front();
        }
        let total = outcomes.iter().map(|o| o.timings.total).max().unwrap_or_default();
        let at = started.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        self.recent.push_back(Recent {
            at_ms: u64::try_from(at.as_millis()).unwrap_or(u64::MAX),
            total_us: u32::try_from(total.as_micros()).unwrap_or(u32::MAX),
            ok,
            error: worst_outcome(&outcomes).and_then(|o| o.error),
        });
        self.last = outcomes;
    }

    /// The view's status row; `verdict` is its verdict in the target's diff (`None`: none yet).
    fn status(&self, verdict: Option<&Verdict>, clock: &WallClock) -> ViewStatus {
        let view = &self.view;
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
            last_outcome: worst_outcome(&self.last).cloned(),
            recent: self.recent.iter().map(Recent::status).collect(),
            probes: self.probes,
            failures: self.failures,
            skipped: self.skipped,
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

/// One client/checker pair: its open mismatch and the attribution runs it may start.
pub(super) struct PairState {
    settings: AttributionSettings,
    budget: AttributionBudget,
    /// Boxed: a pair is open rarely, and inline the record would triple every pair's size.
    pub(super) open: Option<Box<OpenRecord>>,
    /// The mismatch an attribution run in flight is for.
    pub(super) attributing: Option<u64>,
}

impl PairState {
    pub(super) fn new(settings: AttributionSettings) -> PairState {
        PairState { settings, budget: AttributionBudget::new(&settings), open: None, attributing: None }
    }

    /// The pair carried into a plan whose target has `settings`: changed settings start a new
    /// budget (which counts the mismatch still open).
    pub(super) fn with_settings(mut self, settings: AttributionSettings) -> PairState {
        if self.settings != settings {
            self.budget = AttributionBudget::new(&settings);
            self.settings = settings;
            if self.open.is_some() {
                self.budget.opened();
            }
        }
        self
    }
}

/// An open mismatch of a pair.
pub(super) struct OpenRecord {
    pub(super) id: u64,
    pub(super) mismatch: Mismatch,
    since: SystemTime,
    opened_at: SystemTime,
    pub(super) opened: Instant,
    /// The record as `Opened` sent it to telemetry (that waits for the first attribution run).
    /// `Resolved` goes out with these same labels even if a later attribution run changed the
    /// diagnosis, so the `parallax_mismatch` series that opened is the one that closes.
    reported: Option<Mismatch>,
    /// The probe spans that decided it.
    links: [Option<SpanRef>; 2],
}

impl OpenRecord {
    /// Logs and sends `Opened` unless it has gone already: the one moment the mismatch's
    /// diagnosis is told, so the log line, the event, the span and the metric labels agree.
    pub(super) fn report_once(&mut self, telemetry: &dyn Sink) {
        if self.reported.is_none() {
            let m = &self.mismatch;
            tracing::warn!(
                target = %m.target, checker = %m.checker_view, direction = %m.direction,
                diagnosis = %m.diagnosis, "mismatch opened: {}", m.evidence
            );
            telemetry.mismatch(MismatchEvent::Opened { mismatch: m, since: self.since, links: self.links });
            self.reported = Some(self.mismatch.clone());
        }
    }

    /// A later attribution run's record: when it names another diagnosis than the one told,
    /// the told one resolves (`rediagnosed`) and the new one opens, so the `parallax_mismatch`
    /// series, the events and the status keep telling one story.
    pub(super) fn rediagnose(&mut self, mismatch: Mismatch, now: Instant, telemetry: &dyn Sink) {
        let changed = self.reported.as_ref().is_some_and(|told| told.diagnosis != mismatch.diagnosis);
        if changed {
            if let Some(told) = self.reported.take() {
                telemetry.mismatch(MismatchEvent::Resolved {
                    mismatch: &told,
                    opened_at: self.opened_at,
                    open_for: now.saturating_duration_since(self.opened),
                    resolution: "rediagnosed",
                    links: self.links,
                });
            }
        }
        self.mismatch = mismatch;
        self.report_once(telemetry);
    }

    /// Sends `Resolved` (after `Opened`, if that was still waiting for its attribution).
    pub(super) fn close(
        mut self,
        open_for: Duration,
        resolution: &'static str,
        links: [Option<SpanRef>; 2],
        telemetry: &dyn Sink,
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

    fn status(&self, now: Instant) -> OpenMismatchStatus {
        let mismatch = match &self.reported {
            Some(_) => self.mismatch.clone(),
            // Not told yet: the first attribution run is probing its hybrids.
            None => Mismatch {
                diagnosis: Diagnosis::Pending,
                flipped: Vec::new(),
                causes: Vec::new(),
                evidence: "attribution is probing hybrids; the diagnosis follows".to_owned(),
                ..self.mismatch.clone()
            },
        };
        OpenMismatchStatus {
            mismatch,
            since: rfc3339(self.since),
            opened_at: rfc3339(self.opened_at),
            open_for_s: now.saturating_duration_since(self.opened).as_secs_f64(),
        }
    }
}

/// An `allow_sources` gap: a mismatch found in the configuration, open while the plan has it.
pub(super) struct AuditRecord {
    pub(super) mismatch: Mismatch,
    pub(super) opened_at: SystemTime,
    pub(super) opened: Instant,
}

impl AuditRecord {
    fn status(&self, now: Instant) -> OpenMismatchStatus {
        OpenMismatchStatus {
            mismatch: self.mismatch.clone(),
            since: rfc3339(self.opened_at),
            opened_at: rfc3339(self.opened_at),
            open_for_s: now.saturating_duration_since(self.opened).as_secs_f64(),
        }
    }
}

/// One attribution run to start.
#[derive(Debug)]
pub(super) struct AttributionJob {
    pub(super) target: Arc<str>,
    pub(super) checker: Arc<str>,
    /// The open mismatch it is for; a result for a mismatch no longer open is dropped.
    pub(super) mismatch_id: u64,
    pub(super) client_view: Arc<View>,
    pub(super) checker_view: Arc<View>,
    pub(super) client_outcome: Outcome,
    pub(super) checker_outcome: Outcome,
    pub(super) max_hybrids: usize,
}

pub(super) fn attribution_settings(target: &Target) -> AttributionSettings {
    AttributionSettings {
        enabled: target.diff.attribution,
        interval: target.diff.attribution_interval,
        max_hybrids: target.diff.max_hybrids,
    }
}

pub(super) fn hold_of(target: &Target) -> HoldTime {
    target.diff.hold.map_or(HoldTime::TwoCheckerIntervals, HoldTime::Fixed)
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

impl TargetState {
    /// The target as the plan diff compares it.
    pub(super) fn lineup(&self) -> Lineup<'_> {
        Lineup { name: &self.name, views: self.views.iter().map(|v| &*v.view).collect() }
    }

    /// The index of checker `name` in `target.checkers` and `pairs` (its view is `views[k + 1]`).
    pub(super) fn checker_index(&self, name: &str) -> Option<usize> {
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
    pub(super) fn open(
        &mut self,
        checker: &str,
        opened: OpenMismatch,
        id: u64,
        clock: WallClock,
        telemetry: &dyn Sink,
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
        let mismatch = Mismatch::diagnose(&Case {
            direction,
            client_view: &client_state.view,
            checker_view: &checker_state.view,
            client,
            checker: checker_outcome,
            attribution: None,
            cluster: self.cluster.as_deref(),
        });
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
        match (&job, self.pairs[k].open.as_mut()) {
            (None, Some(record)) => record.report_once(telemetry),
            // The log line, the event, the span, the metric and the status all wait for the
            // hybrids, so none of them shows a provisional guess from the error codes.
            (Some(_), _) => tracing::warn!(
                target = %self.name, checker = %checker, direction = %direction,
                diagnosis = %Diagnosis::Pending, "mismatch opened: attribution running, diagnosis pending"
            ),
            (None, None) => {}
        }
        job
    }

    /// An attribution run for pair `k`'s open mismatch, if the budget allows one now (counted).
    pub(super) fn attribution_job(&mut self, k: usize, now: Instant) -> Option<AttributionJob> {
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

    pub(super) fn resolved(
        &mut self,
        checker: &str,
        resolution: Resolution,
        open_for: Duration,
        telemetry: &dyn Sink,
    ) {
        let Some(k) = self.checker_index(checker) else { return };
        let links = [self.views[0].last_span, self.views.get(k + 1).and_then(|v| v.last_span)];
        let pair = &mut self.pairs[k];
        pair.budget.resolved();
        let Some(record) = pair.open.take() else { return };
        tracing::info!(
            target = %self.name, checker = %checker, direction = %record.mismatch.direction,
            resolution = resolution_name(resolution), "mismatch resolved after {}",
            Human(open_for)
        );
        record.close(open_for, resolution_name(resolution), links, telemetry);
    }

    /// Ends `pair`'s open mismatch (a pair of this target that the new plan does not keep, or of a
    /// target that left it).
    pub(super) fn end_pair(&self, pair: PairState, now: Instant, telemetry: &dyn Sink) {
        let Some(record) = pair.open else { return };
        tracing::info!(
            target = %self.name, checker = %record.mismatch.checker_view,
            "mismatch closed: the views changed or left the configuration"
        );
        let open_for = now.saturating_duration_since(record.opened);
        record.close(open_for, "removed", [None, None], telemetry);
    }

    pub(super) fn status(&self, clock: &WallClock, now: Instant) -> TargetStatus {
        let views = self.views.iter().map(|state| state.status(self.verdict(&state.view), clock)).collect();
        let probed = self.pairs.iter().filter_map(|p| p.open.as_ref()).map(|r| r.status(now));
        let audited = self.audit.iter().map(|r| r.status(now));
        let explained = self.cluster.as_deref().and_then(|facts| {
            let client = self.views.first()?;
            let failed = client.last.iter().find(|o| !o.ok)?;
            let f = explain_failure(&client.view, failed, facts)?;
            Some(ExplainedStatus {
                view: client.view.name.to_string(),
                diagnosis: f.diagnosis,
                evidence: f.evidence,
            })
        });
        TargetStatus {
            name: self.name.to_string(),
            id: self
                .views
                .first()
                .map(|v| v.view.target_id.to_string())
                .unwrap_or_else(|| self.name.to_string()),
            views,
            mismatches: probed.chain(audited).collect(),
            cluster: self.cluster.as_deref().cloned(),
            explained,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;
    use crate::daemon::tests::{Recorder, Told};

    #[test]
    fn a_recent_probe_costs_16_bytes() {
        assert!(std::mem::size_of::<Recent>() <= 16, "{}", std::mem::size_of::<Recent>());
    }

    fn mismatch(diagnosis: Diagnosis) -> Mismatch {
        Mismatch {
            target: "shop".into(),
            target_id: "shop".into(),
            client_view: "client".into(),
            checker_view: "nlb".into(),
            direction: Direction::FalseDrain,
            diagnosis,
            flipped: Vec::new(),
            evidence: String::new(),
            causes: Vec::new(),
            basis: crate::diff::Basis::Probes,
            client_address: None,
            checker_address: None,
            client_error: None,
            checker_error: None,
            attribution: None,
        }
    }

    fn record(diagnosis: Diagnosis) -> OpenRecord {
        OpenRecord {
            id: 1,
            mismatch: mismatch(diagnosis),
            since: UNIX_EPOCH,
            opened_at: UNIX_EPOCH,
            opened: Instant::now(),
            reported: None,
            links: [None, None],
        }
    }

    /// `Resolved` carries the labels `Opened` reported, or the `parallax_mismatch` series that
    /// opened would never close.
    #[tokio::test(start_paused = true)]
    async fn a_mismatch_resolves_with_the_labels_it_opened_with() {
        let recorder = Recorder::default();
        let mut record = record(Diagnosis::CheckerProtocolMismatch);
        record.report_once(&recorder);
        record.mismatch = mismatch(Diagnosis::ShallowHealthPath);
        record.close(Duration::from_secs(3), "agreed", [None, None], &recorder);
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

    /// A later attribution run that names another diagnosis closes the told one and opens the
    /// new one, so events, metric labels and the status agree; the same diagnosis tells nothing.
    #[tokio::test(start_paused = true)]
    async fn a_later_run_with_another_diagnosis_resolves_the_old_and_opens_the_new() {
        let recorder = Recorder::default();
        let mut record = record(Diagnosis::CheckerProtocolMismatch);
        record.rediagnose(mismatch(Diagnosis::CheckerProtocolMismatch), Instant::now(), &recorder);
        record.rediagnose(mismatch(Diagnosis::CheckerProtocolMismatch), Instant::now(), &recorder);
        assert_eq!(recorder.mismatches().len(), 1, "{:?}", recorder.mismatches());
        record.rediagnose(mismatch(Diagnosis::ShallowHealthPath), Instant::now(), &recorder);
        assert_eq!(record.status(Instant::now()).mismatch.diagnosis, Diagnosis::ShallowHealthPath);
        record.close(Duration::from_secs(3), "agreed", [None, None], &recorder);
        let told: Vec<(String, Option<&str>)> = recorder
            .mismatches()
            .into_iter()
            .map(|t| match t {
                Told::Opened { diagnosis, .. } => (diagnosis, None),
                Told::Resolved { diagnosis, resolution, .. } => (diagnosis, Some(resolution)),
                other => panic!("{other:?}"),
            })
            .collect();
        let expected = [
            ("checker_protocol_mismatch", None),
            ("checker_protocol_mismatch", Some("rediagnosed")),
            ("shallow_health_path", None),
            ("shallow_health_path", Some("agreed")),
        ];
        let told: Vec<(&str, Option<&str>)> = told.iter().map(|(d, r)| (d.as_str(), *r)).collect();
        assert_eq!(told, expected);
    }
}
