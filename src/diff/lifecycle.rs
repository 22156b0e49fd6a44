//! Pairing and the mismatch lifecycle: per target, the client verdict against each checker
//! verdict. A disagreement that lasts at least the hold time opens a mismatch; agreement resolves
//! it. Both views failing together is agreement — the target is down, which is not a mismatch.
//!
//! Pure: time comes in with every call, so the daemon drives it from its probe results and a
//! timer ([`TargetDiff::next_deadline`]) and tests drive it on paused time.

use std::borrow::Borrow;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use super::Direction;
use crate::config::{Target, View};
use crate::probe::Outcome;
use crate::verdict::{Health, Verdict, VerdictChange};

/// How long a disagreement must last before it opens a mismatch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HoldTime {
    /// Two intervals of the checker view in the pair (the default): one odd probe never opens
    /// anything, a real disagreement opens within a few seconds of the LB acting on it.
    #[default]
    TwoCheckerIntervals,
    /// This duration for every pair (`Duration::ZERO` in one-shot mode: the first outcomes decide).
    Fixed(Duration),
}

impl HoldTime {
    /// The hold for a pair with `checker`.
    pub fn for_checker(self, checker: &View) -> Duration {
        match self {
            HoldTime::TwoCheckerIntervals => checker.interval.saturating_mul(2),
            HoldTime::Fixed(d) => d,
        }
    }
}

/// Why an open mismatch resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    /// Both views healthy again.
    BothHealthy,
    /// Both views unhealthy: the target is down for everyone, which the LB reflects correctly.
    BothUnhealthy,
    /// The disagreement turned the other way round (the other direction is pending or open).
    DirectionChanged,
}

/// A mismatch that is open now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenMismatch {
    /// Which way the views disagree.
    pub direction: Direction,
    /// When the views started to disagree.
    pub since: Instant,
    /// When the hold elapsed and the mismatch opened.
    pub opened_at: Instant,
}

/// Something that happened to one client/checker pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairEvent {
    /// A disagreement lasted the hold time.
    Opened {
        /// Which way.
        direction: Direction,
        /// When the views started to disagree.
        since: Instant,
        /// Now.
        at: Instant,
        /// `at - since`: how long the disagreement lasted before opening (at least the hold).
        disagreed_for: Duration,
    },
    /// An open mismatch ended.
    Resolved {
        /// Which way it was.
        direction: Direction,
        /// Why it ended.
        resolution: Resolution,
        /// When the views started to disagree.
        since: Instant,
        /// When it opened.
        opened_at: Instant,
        /// Now.
        at: Instant,
        /// `at - opened_at`: how long it was open.
        open_for: Duration,
        /// `at - since`: how long the views disagreed in all.
        disagreed_for: Duration,
    },
}

/// The lifecycle of one client/checker pair.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pair {
    /// A disagreement not yet open: its direction and start.
    pending: Option<(Direction, Instant)>,
    open: Option<OpenMismatch>,
}

impl Pair {
    /// A pair with nothing pending or open.
    pub fn new() -> Pair {
        Pair::default()
    }

    /// Re-evaluates the pair with the current known verdicts (`None`: not known yet) at `now`.
    pub fn update(
        &mut self,
        client: Option<Health>,
        checker: Option<Health>,
        now: Instant,
        hold: Duration,
    ) -> Vec<PairEvent> {
        let mut events = Vec::new();
        let (client, checker) = match (client, checker) {
            (Some(c), Some(k)) => (c, k),
            // An unknown verdict never opens anything; an open mismatch waits for a known
            // verdict to agree (verdicts never go back to unknown once known).
            _ => {
                self.pending = None;
                return events;
            }
        };
        let direction = match (client, checker) {
            (Health::Unhealthy, Health::Healthy) => Direction::Blackhole,
            (Health::Healthy, Health::Unhealthy) => Direction::FalseDrain,
            (Health::Healthy, Health::Healthy) | (Health::Unhealthy, Health::Unhealthy) => {
                self.pending = None;
                let resolution = if client == Health::Healthy {
                    Resolution::BothHealthy
                } else {
                    Resolution::BothUnhealthy
                };
                events.extend(self.resolve(resolution, now));
                return events;
            }
        };
        if let Some(open) = self.open {
            if open.direction == direction {
                return events;
            }
            events.extend(self.resolve(Resolution::DirectionChanged, now));
        }
        match self.pending {
            Some((d, _)) if d == direction => {}
            _ => self.pending = Some((direction, now)),
        }
        events.extend(self.poll(now, hold));
        events
    }

    /// Opens the pending disagreement if it has lasted `hold` by `now`.
    pub fn poll(&mut self, now: Instant, hold: Duration) -> Option<PairEvent> {
        let (direction, since) = self.pending?;
        let disagreed_for = now.saturating_duration_since(since);
        if disagreed_for < hold {
            return None;
        }
        self.pending = None;
        self.open = Some(OpenMismatch { direction, since, opened_at: now });
        Some(PairEvent::Opened { direction, since, at: now, disagreed_for })
    }

    /// When the pending disagreement would open, if one is pending.
    pub fn deadline(&self, hold: Duration) -> Option<Instant> {
        // Saturating: a hold of centuries (the configuration bounds it, a caller may not) is a
        // deadline in the far future, not an overflow.
        self.pending.map(|(_, since)| since.checked_add(hold).unwrap_or_else(|| far_future(since)))
    }

    /// The open mismatch, if any.
    pub fn open(&self) -> Option<&OpenMismatch> {
        self.open.as_ref()
    }

    /// A disagreement waiting for its hold: direction and start.
    pub fn pending(&self) -> Option<(Direction, Instant)> {
        self.pending
    }

    fn resolve(&mut self, resolution: Resolution, now: Instant) -> Option<PairEvent> {
        let open = self.open.take()?;
        Some(PairEvent::Resolved {
            direction: open.direction,
            resolution,
            since: open.since,
            opened_at: open.opened_at,
            at: now,
            open_for: now.saturating_duration_since(open.opened_at),
            disagreed_for: now.saturating_duration_since(open.since),
        })
    }
}

/// Something that happened in a target's diff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiffEvent {
    /// A view's known verdict changed.
    Verdict {
        /// Target name.
        target: Arc<str>,
        /// View name.
        view: Arc<str>,
        /// The change.
        change: VerdictChange,
    },
    /// A pair's mismatch opened or resolved.
    Mismatch {
        /// Target name.
        target: Arc<str>,
        /// The client view's name.
        client_view: Arc<str>,
        /// The checker view's name.
        checker_view: Arc<str>,
        /// What happened.
        event: PairEvent,
    },
}

#[derive(Debug, Clone)]
struct CheckerSide {
    name: Arc<str>,
    verdict: Verdict,
    hold: Duration,
    pair: Pair,
}

/// Per target: the client verdict, each checker verdict, and each client/checker pair.
#[derive(Debug, Clone)]
pub struct TargetDiff {
    target: Arc<str>,
    client_name: Arc<str>,
    client: Verdict,
    checkers: Vec<CheckerSide>,
}

impl TargetDiff {
    /// Fresh verdicts for every view of `target`, each pair holding for `hold`.
    pub fn new(target: &Target, hold: HoldTime) -> TargetDiff {
        TargetDiff {
            target: target.name.clone(),
            client_name: target.client.name.clone(),
            client: Verdict::for_view(&target.client),
            checkers: target
                .checkers
                .iter()
                .map(|c| CheckerSide {
                    name: c.name.clone(),
                    verdict: Verdict::for_view(c),
                    hold: hold.for_checker(c),
                    pair: Pair::new(),
                })
                .collect(),
        }
    }

    /// The diff of `target` after a reload: views `kept` (by name) says are unchanged keep their
    /// verdict from `previous`, and a pair whose client and checker are both kept keeps its
    /// pending or open disagreement. Everything else starts fresh. Holds are taken from `hold`
    /// and the new views.
    pub fn carry_over(
        target: &Target,
        hold: HoldTime,
        previous: &TargetDiff,
        kept: impl Fn(&str) -> bool,
    ) -> TargetDiff {
        let mut next = TargetDiff::new(target, hold);
        let client_kept = *previous.client_name == *next.client_name && kept(&next.client_name);
        if client_kept {
            next.client = previous.client.clone();
        }
        for side in &mut next.checkers {
            let Some(old) = previous.checkers.iter().find(|c| c.name == side.name) else { continue };
            if kept(&side.name) {
                side.verdict = old.verdict.clone();
                if client_kept {
                    side.pair = old.pair.clone();
                }
            }
        }
        next
    }

    /// Records one probe result of view `view` (a name of this target) at `at`, and re-evaluates
    /// the pairs it belongs to. Unknown view names are ignored.
    pub fn observe(&mut self, view: &str, ok: bool, at: Instant) -> Vec<DiffEvent> {
        let mut events = Vec::new();
        if *self.client_name == *view {
            if let Some(change) = self.client.observe(ok, at) {
                events.push(self.verdict_event(self.client_name.clone(), change));
            }
            let client = self.client.known();
            for side in &mut self.checkers {
                let pair_events = side.pair.update(client, side.verdict.known(), at, side.hold);
                events.extend(
                    pair_events.into_iter().map(|e| mismatch_event(&self.target, &self.client_name, side, e)),
                );
            }
        } else if let Some(i) = self.checkers.iter().position(|c| *c.name == *view) {
            let client = self.client.known();
            let side = &mut self.checkers[i];
            let change = side.verdict.observe(ok, at);
            let pair_events = side.pair.update(client, side.verdict.known(), at, side.hold);
            let name = side.name.clone();
            let mapped: Vec<_> = pair_events
                .into_iter()
                .map(|e| mismatch_event(&self.target, &self.client_name, side, e))
                .collect();
            if let Some(change) = change {
                events.push(self.verdict_event(name, change));
            }
            events.extend(mapped);
        }
        events
    }

    /// Records one probe of view `view` at `at` from its outcomes, as [`probe_result`] reads
    /// them: a probe this host could not run (`local_resource_exhausted`) says nothing about the
    /// target, so the view's verdict holds its state and no mismatch opens or resolves on it.
    pub fn observe_probe(&mut self, view: &str, outcomes: &[Outcome], at: Instant) -> Vec<DiffEvent> {
        match probe_result(outcomes) {
            Some(ok) => self.observe(view, ok, at),
            None => Vec::new(),
        }
    }

    /// Opens every pending disagreement whose hold has elapsed by `now`.
    pub fn poll(&mut self, now: Instant) -> Vec<DiffEvent> {
        let mut events = Vec::new();
        for side in &mut self.checkers {
            if let Some(e) = side.pair.poll(now, side.hold) {
                events.push(mismatch_event(&self.target, &self.client_name, side, e));
            }
        }
        events
    }

    /// The earliest time a pending disagreement would open: when to call [`TargetDiff::poll`].
    pub fn next_deadline(&self) -> Option<Instant> {
        self.checkers.iter().filter_map(|c| c.pair.deadline(c.hold)).min()
    }

    /// The known client verdict.
    pub fn client_verdict(&self) -> &Verdict {
        &self.client
    }

    /// The verdict of checker `name`.
    pub fn checker_verdict(&self, name: &str) -> Option<&Verdict> {
        self.checkers.iter().find(|c| *c.name == *name).map(|c| &c.verdict)
    }

    /// Every open mismatch: checker view name and its state.
    pub fn open(&self) -> impl Iterator<Item = (&Arc<str>, &OpenMismatch)> {
        self.checkers.iter().filter_map(|c| c.pair.open().map(|o| (&c.name, o)))
    }

    fn verdict_event(&self, view: Arc<str>, change: VerdictChange) -> DiffEvent {
        DiffEvent::Verdict { target: self.target.clone(), view, change }
    }
}

/// What "never" is for a deadline: 30 years ahead, as tokio's timers take it.
const FAR_FUTURE: Duration = Duration::from_secs(30 * 365 * 24 * 60 * 60);

/// A deadline that will not come: [`FAR_FUTURE`] after `from`.
fn far_future(from: Instant) -> Instant {
    from.checked_add(FAR_FUTURE).unwrap_or(from)
}

fn mismatch_event(target: &Arc<str>, client: &Arc<str>, side: &CheckerSide, event: PairEvent) -> DiffEvent {
    DiffEvent::Mismatch {
        target: target.clone(),
        client_view: client.clone(),
        checker_view: side.name.clone(),
        event,
    }
}

/// Whether one probe of a view, with all its outcomes, counts as a success for its verdict: every
/// outcome must be ok. With `each_address`, one broken address (one zone of a multi-zone LB) makes
/// the view fail instead of hiding behind a healthy one.
pub fn probe_ok(outcomes: &[Outcome]) -> bool {
    !outcomes.is_empty() && outcomes.iter().all(|o| o.ok)
}

/// What one probe of a view says of its target for its verdict: `Some(false)` when an outcome
/// failed for the target's sake (or there is none), `None` when an outcome failed for this
/// host's ([`ErrorCode::is_local`](crate::probe::ErrorCode::is_local): out of file descriptors)
/// and no other failed for the target's, else `Some(true)`.
pub fn probe_result(outcomes: &[Outcome]) -> Option<bool> {
    let local = |o: &Outcome| o.error.is_some_and(|e| e.is_local());
    if outcomes.is_empty() || outcomes.iter().any(|o| !o.ok && !local(o)) {
        return Some(false);
    }
    if outcomes.iter().any(local) {
        return None;
    }
    Some(true)
}

/// The index of the outcome that stands for a probe of several addresses (`each_address`): the
/// first failure, else the first; `None` when there is no outcome.
pub fn worst_index<O: Borrow<Outcome>>(outcomes: &[O]) -> Option<usize> {
    outcomes.iter().position(|o| !o.borrow().ok).or((!outcomes.is_empty()).then_some(0))
}

/// The outcome that stands for a probe: the one [`worst_index`] points at.
pub fn worst_outcome<O: Borrow<Outcome>>(outcomes: &[O]) -> Option<&O> {
    worst_index(outcomes).and_then(|i| outcomes.get(i))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::InitialHealth;
    use crate::probe::ErrorCode;
    use crate::testkit::{outcome_for, target, view};

    const H: Option<Health> = Some(Health::Healthy);
    const U: Option<Health> = Some(Health::Unhealthy);

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn kinds(events: &[PairEvent]) -> Vec<(&'static str, Direction)> {
        events
            .iter()
            .map(|e| match e {
                PairEvent::Opened { direction, .. } => ("opened", *direction),
                PairEvent::Resolved { direction, .. } => ("resolved", *direction),
            })
            .collect()
    }

    /// Drives a pair through `(seconds since start, client, checker)` steps with `hold`; returns
    /// every event with its step time.
    fn drive(hold: Duration, steps: &[(u64, Option<Health>, Option<Health>)]) -> Vec<(u64, PairEvent)> {
        let start = Instant::now();
        let mut pair = Pair::new();
        let mut out = Vec::new();
        for (t, c, k) in steps {
            for e in pair.update(*c, *k, start + secs(*t), hold) {
                out.push((*t, e));
            }
        }
        out
    }

    #[tokio::test(start_paused = true)]
    async fn pair_table() {
        // (name, hold s, steps, expected (time, opened|resolved, direction))
        type Steps = &'static [(u64, Option<Health>, Option<Health>)];
        type Want = &'static [(u64, &'static str, Direction)];
        let table: &[(&str, u64, Steps, Want)] = &[
            ("both up never opens", 10, &[(0, H, H), (30, H, H)], &[]),
            ("both down never opens: the target is down", 10, &[(0, U, U), (30, U, U)], &[]),
            ("unknown checker never opens", 0, &[(0, H, None), (30, U, None)], &[]),
            ("unknown client never opens", 0, &[(0, None, U), (30, None, H)], &[]),
            (
                "blackhole opens once the hold has elapsed, not before",
                10,
                &[(0, U, H), (5, U, H), (9, U, H), (10, U, H), (20, U, H)],
                &[(10, "opened", Direction::Blackhole)],
            ),
            (
                "false drain opens and recovers",
                10,
                &[(0, H, U), (12, H, U), (20, H, H)],
                &[(12, "opened", Direction::FalseDrain), (20, "resolved", Direction::FalseDrain)],
            ),
            (
                "flapping shorter than the hold never opens",
                10,
                &[
                    (0, U, H),
                    (5, H, H),
                    (6, U, H),
                    (11, H, H),
                    (12, H, U),
                    (21, H, H),
                    (22, U, H),
                    (31, U, U),
                ],
                &[],
            ),
            (
                "both failing resolves a blackhole: the target is down",
                0,
                &[(0, U, H), (4, U, U)],
                &[(0, "opened", Direction::Blackhole), (4, "resolved", Direction::Blackhole)],
            ),
            (
                "hold zero opens at the first disagreement",
                0,
                &[(0, H, U)],
                &[(0, "opened", Direction::FalseDrain)],
            ),
            (
                "direction change resolves and starts a new hold",
                10,
                &[(0, U, H), (10, U, H), (15, H, U), (24, H, U), (25, H, U)],
                &[
                    (10, "opened", Direction::Blackhole),
                    (15, "resolved", Direction::Blackhole),
                    (25, "opened", Direction::FalseDrain),
                ],
            ),
            (
                "an unknown verdict mid-disagreement restarts the hold",
                10,
                &[(0, U, H), (8, None, H), (9, U, H), (18, U, H), (19, U, H)],
                &[(19, "opened", Direction::Blackhole)],
            ),
            (
                "an open mismatch survives an unknown verdict",
                0,
                &[(0, U, H), (5, U, None), (9, H, H)],
                &[(0, "opened", Direction::Blackhole), (9, "resolved", Direction::Blackhole)],
            ),
        ];
        for (name, hold, steps, want) in table {
            let got: Vec<_> = drive(secs(*hold), steps)
                .into_iter()
                .map(|(t, e)| {
                    let (k, d) = kinds(&[e])[0];
                    (t, k, d)
                })
                .collect();
            assert_eq!(got, want.to_vec(), "{name}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn events_carry_timestamps_and_durations() {
        let start = Instant::now();
        let mut pair = Pair::new();
        let hold = secs(10);
        assert!(pair.update(H, U, start + secs(3), hold).is_empty());
        assert_eq!(pair.deadline(hold), Some(start + secs(13)));
        // Nothing happens before the deadline, poll opens at it.
        assert_eq!(pair.poll(start + secs(12), hold), None);
        let opened = pair.poll(start + secs(14), hold);
        assert_eq!(
            opened,
            Some(PairEvent::Opened {
                direction: Direction::FalseDrain,
                since: start + secs(3),
                at: start + secs(14),
                disagreed_for: secs(11),
            })
        );
        assert_eq!(pair.deadline(hold), None);
        let resolved = pair.update(U, U, start + secs(44), hold);
        assert_eq!(
            resolved,
            vec![PairEvent::Resolved {
                direction: Direction::FalseDrain,
                resolution: Resolution::BothUnhealthy,
                since: start + secs(3),
                opened_at: start + secs(14),
                at: start + secs(44),
                open_for: secs(30),
                disagreed_for: secs(41),
            }]
        );
        assert!(pair.open().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn recovery_reports_both_healthy() {
        let start = Instant::now();
        let mut pair = Pair::new();
        pair.update(U, H, start, Duration::ZERO);
        let e = pair.update(H, H, start + secs(7), Duration::ZERO);
        assert!(matches!(
            e.as_slice(),
            [PairEvent::Resolved { resolution: Resolution::BothHealthy, open_for, .. }] if *open_for == secs(7)
        ));
    }

    /// A client view (first probe decides, rise 2 / fall 2) and an `nlb` checker (1 s interval,
    /// rise 1 / fall 1, first probe decides: the hold is 2 s).
    fn client_and_nlb() -> (View, View) {
        let mut client = view("shop", "client");
        client.initial = InitialHealth::FirstProbe;
        let mut nlb = view("shop", "nlb");
        nlb.role = crate::config::Role::Checker;
        nlb.interval = secs(1);
        nlb.timeout = Duration::from_millis(500);
        nlb.rise = 1;
        nlb.fall = 1;
        nlb.initial = InitialHealth::FirstProbe;
        (client, nlb)
    }

    #[tokio::test(start_paused = true)]
    async fn target_diff_opens_after_two_checker_intervals_and_resolves() {
        let (client, nlb) = client_and_nlb();
        let t = target(client, vec![nlb]);
        let mut diff = TargetDiff::new(&t, HoldTime::default());
        let start = Instant::now();

        let e = diff.observe("client", true, start);
        assert!(matches!(&e[..], [DiffEvent::Verdict { change, .. }] if change.to == Health::Healthy));
        let e = diff.observe("nlb", false, start);
        assert_eq!(e.len(), 1, "verdict change only: {e:?}");
        assert_eq!(diff.next_deadline(), Some(start + secs(2)));
        assert!(diff.poll(start + secs(1)).is_empty());
        let e = diff.observe("nlb", false, start + secs(1));
        assert!(e.is_empty(), "{e:?}");
        let e = diff.poll(start + secs(2));
        match &e[..] {
            [DiffEvent::Mismatch { target, client_view, checker_view, event }] => {
                assert_eq!((&**target, &**client_view, &**checker_view), ("shop", "client", "nlb"));
                assert!(matches!(event, PairEvent::Opened { direction: Direction::FalseDrain, .. }));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(diff.open().count(), 1);
        // The checker recovers: verdict change, then the resolution.
        let e = diff.observe("nlb", true, start + secs(3));
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(matches!(e[0], DiffEvent::Verdict { .. }));
        assert!(matches!(
            e[1],
            DiffEvent::Mismatch {
                event: PairEvent::Resolved { resolution: Resolution::BothHealthy, .. },
                ..
            }
        ));
        assert_eq!(diff.open().count(), 0);
        assert!(diff.observe("nobody", false, start).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn target_diff_profile_starting_state_does_not_open_at_startup() {
        // An ALB-like checker assumes "unhealthy" until 5 successes; a healthy client must not
        // see a false drain during those first probes.
        let client = view("shop", "client");
        let mut alb = view("shop", "alb");
        alb.rise = 5;
        alb.fall = 2;
        alb.initial = InitialHealth::Unhealthy;
        alb.interval = secs(1);
        let t = target(client, vec![alb]);
        let mut diff = TargetDiff::new(&t, HoldTime::Fixed(Duration::ZERO));
        let start = Instant::now();
        diff.observe("client", true, start);
        for i in 0..4 {
            let e = diff.observe("alb", true, start + secs(i));
            assert!(e.is_empty(), "probe {i}: {e:?}");
        }
        assert_eq!(diff.checker_verdict("alb").and_then(Verdict::known), None);
        let e = diff.observe("alb", true, start + secs(4));
        assert_eq!(e.len(), 1);
        assert_eq!(diff.open().count(), 0);
    }

    /// Issue 18, finding 5: `hold = "9223372036854775807s"` panicked here with "overflow when
    /// adding duration to instant".
    #[tokio::test(start_paused = true)]
    async fn next_deadline_with_an_overflowing_hold_saturates() {
        let client = view("shop", "client");
        let mut c = view("shop", "c");
        c.rise = 1;
        c.fall = 1;
        let t = target(client, vec![c]);
        let mut diff = TargetDiff::new(&t, HoldTime::Fixed(Duration::from_secs(i64::MAX as u64)));
        let now = Instant::now();
        diff.observe("client", true, now);
        diff.observe("c", false, now);
        let deadline = diff.next_deadline().expect("a disagreement is pending");
        assert!(deadline >= now + FAR_FUTURE, "{deadline:?}");
        assert!(diff.poll(now + secs(3600)).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn pairs_of_one_target_are_independent() {
        let client = view("shop", "client");
        let mut a = view("shop", "a");
        a.rise = 1;
        a.fall = 1;
        let mut b = a.clone();
        b.name = "b".into();
        let t = target(client, vec![a, b]);
        let mut diff = TargetDiff::new(&t, HoldTime::Fixed(Duration::ZERO));
        let now = Instant::now();
        diff.observe("client", true, now);
        diff.observe("a", true, now);
        let e = diff.observe("b", false, now);
        let opened: Vec<_> = e
            .iter()
            .filter_map(|e| match e {
                DiffEvent::Mismatch { checker_view, event: PairEvent::Opened { .. }, .. } => {
                    Some(checker_view.to_string())
                }
                _ => None,
            })
            .collect();
        assert_eq!(opened, vec!["b"]);
        // The client failing turns b's false drain into "both down" and opens a blackhole on a.
        let e = diff.observe("client", false, now + secs(1));
        assert!(e.is_empty(), "fall 2: not yet {e:?}");
        let e = diff.observe("client", false, now + secs(2));
        let kinds: Vec<_> = e
            .iter()
            .filter_map(|e| match e {
                DiffEvent::Mismatch { checker_view, event: PairEvent::Opened { direction, .. }, .. } => {
                    Some((checker_view.to_string(), "opened", *direction))
                }
                DiffEvent::Mismatch {
                    checker_view,
                    event: PairEvent::Resolved { direction, resolution, .. },
                    ..
                } => {
                    assert_eq!(*resolution, Resolution::BothUnhealthy);
                    Some((checker_view.to_string(), "resolved", *direction))
                }
                DiffEvent::Verdict { .. } => None,
            })
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("a".into(), "opened", Direction::Blackhole),
                ("b".into(), "resolved", Direction::FalseDrain)
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn carry_over_keeps_only_what_unchanged_views_knew() {
        let client = view("shop", "client");
        let mut a = view("shop", "a");
        a.rise = 1;
        a.fall = 1;
        let mut b = a.clone();
        b.name = "b".into();
        let t = target(client, vec![a, b]);
        let mut diff = TargetDiff::new(&t, HoldTime::Fixed(Duration::ZERO));
        let now = Instant::now();
        diff.observe("client", true, now);
        diff.observe("a", false, now);
        diff.observe("b", false, now);
        assert_eq!(diff.open().count(), 2);

        // Everything kept: the same state.
        let same = TargetDiff::carry_over(&t, HoldTime::Fixed(Duration::ZERO), &diff, |_| true);
        assert_eq!(same.open().count(), 2);
        assert_eq!(same.client_verdict(), diff.client_verdict());

        // `b` changed: its verdict and pair start fresh; `a` keeps its open mismatch.
        let kept = TargetDiff::carry_over(&t, HoldTime::Fixed(Duration::ZERO), &diff, |n| n != "b");
        let open: Vec<&str> = kept.open().map(|(name, _)| &**name).collect();
        assert_eq!(open, ["a"]);
        assert_eq!(kept.checker_verdict("b").and_then(Verdict::known), None);
        assert_eq!(kept.checker_verdict("a").and_then(Verdict::known), U);

        // The client changed: every pair starts fresh, checker verdicts stay.
        let fresh = TargetDiff::carry_over(&t, HoldTime::Fixed(Duration::ZERO), &diff, |n| n != "client");
        assert_eq!(fresh.open().count(), 0);
        assert_eq!(fresh.client_verdict().known(), None);
        assert_eq!(fresh.checker_verdict("a").and_then(Verdict::known), U);
        // And the next client result reopens what is still true.
        let mut fresh = fresh;
        let e = fresh.observe("client", true, now + secs(1));
        assert_eq!(e.iter().filter(|e| matches!(e, DiffEvent::Mismatch { .. })).count(), 2);
    }

    /// Issue 18, finding 9: probes that failed for lack of file descriptors were the target's
    /// failures: verdicts went unhealthy and mismatches opened on this host's limit.
    #[tokio::test(start_paused = true)]
    async fn local_resource_exhausted_is_ignored_by_verdicts_and_mismatches() {
        let (mut client, nlb) = client_and_nlb();
        client.fall = 1;
        let t = target(client.clone(), vec![nlb.clone()]);
        let mut diff = TargetDiff::new(&t, HoldTime::default());
        let start = Instant::now();
        let ok = |v: &View| outcome_for(v, true, None, Some(200));
        let emfile = |v: &View| outcome_for(v, false, Some(ErrorCode::LocalResourceExhausted), None);
        let refused = |v: &View| outcome_for(v, false, Some(ErrorCode::ConnectRefused), None);

        assert_eq!(probe_result(&[emfile(&client)]), None);
        assert_eq!(probe_result(&[ok(&client), emfile(&client)]), None);
        assert_eq!(probe_result(&[refused(&client), emfile(&client)]), Some(false));
        assert_eq!(probe_result(&[ok(&client)]), Some(true));
        assert_eq!(probe_result(&[]), Some(false));

        // Nothing is known from local failures alone.
        assert!(diff.observe_probe("client", &[emfile(&client)], start).is_empty());
        assert_eq!(diff.client_verdict().known(), None);
        assert_eq!(diff.client_verdict().failures(), 0);

        // Both healthy; then the client's probes fail locally: no verdict change, nothing opens.
        assert_eq!(diff.observe_probe("client", &[ok(&client)], start).len(), 1);
        assert_eq!(diff.observe_probe("nlb", &[ok(&nlb)], start).len(), 1);
        for i in 1..=5 {
            assert!(diff.observe_probe("client", &[emfile(&client)], start + secs(i)).is_empty());
            assert!(diff.observe_probe("nlb", &[ok(&nlb)], start + secs(i)).is_empty());
            assert!(diff.poll(start + secs(i)).is_empty());
        }
        assert_eq!(diff.client_verdict().known(), H);
        assert_eq!(diff.next_deadline(), None, "no disagreement pending");

        // An open mismatch does not resolve on a local failure either.
        let e = diff.observe_probe("nlb", &[refused(&nlb)], start + secs(6));
        assert_eq!(e.len(), 1, "verdict change: {e:?}");
        assert!(!diff.poll(start + secs(8)).is_empty(), "false drain opened");
        assert_eq!(diff.open().count(), 1);
        for i in 9..=12 {
            assert!(diff.observe_probe("nlb", &[emfile(&nlb)], start + secs(i)).is_empty());
            assert!(diff.observe_probe("client", &[emfile(&client)], start + secs(i)).is_empty());
        }
        assert_eq!(diff.open().count(), 1, "still open");
        assert_eq!(diff.checker_verdict("nlb").and_then(Verdict::known), U);
    }

    #[test]
    fn probe_ok_needs_every_address_ok() {
        let v = view("shop", "client");
        let ok = outcome_for(&v, true, None, Some(200));
        let bad = outcome_for(&v, false, Some(ErrorCode::ConnectTimeout), None);
        assert!(probe_ok(&[ok.clone(), ok.clone()]));
        assert!(!probe_ok(&[ok, bad]));
        assert!(!probe_ok(&[]));
    }

    #[test]
    fn the_worst_outcome_is_the_first_failure_else_the_first() {
        let v = view("shop", "client");
        let ok = outcome_for(&v, true, None, Some(200));
        let refused = outcome_for(&v, false, Some(ErrorCode::ConnectRefused), None);
        let timeout = outcome_for(&v, false, Some(ErrorCode::ConnectTimeout), None);
        assert_eq!(worst_index(&[ok.clone(), refused.clone(), timeout.clone()]), Some(1));
        assert_eq!(worst_outcome(&[ok.clone(), timeout.clone(), refused]), Some(&timeout));
        assert_eq!(worst_index(&[ok.clone(), ok.clone()]), Some(0));
        // Borrowed outcomes, as pairing holds them.
        assert_eq!(worst_outcome(&[&ok, &timeout]).copied(), Some(&timeout));
        assert_eq!(worst_index::<Outcome>(&[]), None);
    }
}
