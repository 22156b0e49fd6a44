//! Verdicts: the health state the emulated load balancer holds for one view, from consecutive
//! probe results against the view's `rise`/`fall` thresholds and its profile's starting state.
//!
//! A verdict is *known* only once observations alone decide it, whatever the LB's history: the
//! first probe for [`InitialHealth::FirstProbe`], otherwise a run of `rise` successes or `fall`
//! failures. Before that the LB's state is only the profile's assumption about a freshly
//! registered backend — parallax usually starts long after the real LB did — so an assumed state
//! is reported ([`Verdict::assumed`]) but never compared ([`Verdict::known`]), and it never opens
//! a mismatch.

use std::fmt;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::config::{InitialHealth, View};

/// What the emulated LB holds about a view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// The LB sends traffic (for the client view: users are served).
    Healthy,
    /// The LB holds the backend out (for the client view: users are failing).
    Unhealthy,
}

impl Health {
    /// `healthy` or `unhealthy`.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Healthy => "healthy",
            Health::Unhealthy => "unhealthy",
        }
    }

    /// `Healthy` for a success, `Unhealthy` for a failure.
    pub fn from_ok(ok: bool) -> Health {
        if ok {
            Health::Healthy
        } else {
            Health::Unhealthy
        }
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A change of a view's known verdict (including the first time it becomes known).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerdictChange {
    /// The previous known verdict; `None` when the verdict was not known yet.
    pub from: Option<Health>,
    /// The new verdict.
    pub to: Health,
    /// When the deciding outcome was observed.
    pub at: Instant,
    /// How long the previous known verdict had held (`None` when there was none).
    pub held: Option<Duration>,
    /// The run of consecutive equal results that decided it.
    pub streak: u32,
}

/// One view's rise/fall state machine. Pure: time comes in with each observation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    rise: u32,
    fall: u32,
    initial: InitialHealth,
    /// What the emulated LB holds now: the starting assumption until a threshold is reached.
    /// `None` only for `FirstProbe` before the first outcome.
    state: Option<Health>,
    /// Whether `state` has been decided by observations alone.
    settled: bool,
    successes: u32,
    failures: u32,
    /// When the known verdict last changed.
    changed_at: Option<Instant>,
}

impl Verdict {
    /// A fresh verdict with these thresholds (a threshold of 0 acts as 1) and starting state.
    pub fn new(rise: u32, fall: u32, initial: InitialHealth) -> Verdict {
        let state = match initial {
            InitialHealth::Healthy => Some(Health::Healthy),
            InitialHealth::Unhealthy => Some(Health::Unhealthy),
            InitialHealth::FirstProbe => None,
        };
        Verdict {
            rise: rise.max(1),
            fall: fall.max(1),
            initial,
            state,
            settled: false,
            successes: 0,
            failures: 0,
            changed_at: None,
        }
    }

    /// A fresh verdict with `view`'s `rise`, `fall` and starting state.
    pub fn for_view(view: &View) -> Verdict {
        Verdict::new(view.rise, view.fall, view.initial)
    }

    /// Records one probe result observed at `at`. Returns the change of the known verdict, if
    /// this result changed it (or made it known).
    pub fn observe(&mut self, ok: bool, at: Instant) -> Option<VerdictChange> {
        if ok {
            self.successes = self.successes.saturating_add(1);
            self.failures = 0;
        } else {
            self.failures = self.failures.saturating_add(1);
            self.successes = 0;
        }
        let streak = self.successes.max(self.failures);
        let before = self.known();

        let decided = if self.state.is_none() {
            // FirstProbe: the first outcome decides on its own.
            Some(Health::from_ok(ok))
        } else if ok && self.successes >= self.rise {
            Some(Health::Healthy)
        } else if !ok && self.failures >= self.fall {
            Some(Health::Unhealthy)
        } else {
            None
        };
        if let Some(health) = decided {
            self.state = Some(health);
            self.settled = true;
        }

        let after = self.known()?;
        if before == Some(after) {
            return None;
        }
        let held = match (before, self.changed_at) {
            (Some(_), Some(since)) => Some(at.saturating_duration_since(since)),
            _ => None,
        };
        self.changed_at = Some(at);
        Some(VerdictChange { from: before, to: after, at, held, streak })
    }

    /// The verdict once observations decided it; `None` while only assumed or not yet probed.
    pub fn known(&self) -> Option<Health> {
        if self.settled {
            self.state
        } else {
            None
        }
    }

    /// What the emulated LB holds now, including the profile's starting assumption.
    pub fn assumed(&self) -> Option<Health> {
        self.state
    }

    /// When the known verdict last changed (`None` while unknown).
    pub fn changed_at(&self) -> Option<Instant> {
        self.changed_at
    }

    /// Consecutive successes so far (0 after a failure).
    pub fn successes(&self) -> u32 {
        self.successes
    }

    /// Consecutive failures so far (0 after a success).
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The thresholds and starting state this verdict applies.
    pub fn thresholds(&self) -> (u32, u32, InitialHealth) {
        (self.rise, self.fall, self.initial)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::profiles::{client_defaults, defaults};
    use crate::config::ProfileName;

    const H: Option<Health> = Some(Health::Healthy);
    const U: Option<Health> = Some(Health::Unhealthy);

    /// Feeds `results` one second apart; returns the known verdict after each step and the
    /// steps (0-based) at which a change was reported.
    fn run(
        v: &mut Verdict,
        start: Instant,
        results: &[bool],
    ) -> (Vec<Option<Health>>, Vec<(usize, VerdictChange)>) {
        let mut known = Vec::new();
        let mut changes = Vec::new();
        for (i, ok) in results.iter().enumerate() {
            if let Some(c) = v.observe(*ok, start + Duration::from_secs(i as u64)) {
                changes.push((i, c));
            }
            known.push(v.known());
        }
        (known, changes)
    }

    #[tokio::test(start_paused = true)]
    async fn every_profile_becomes_unhealthy_after_exactly_its_fall_failures() {
        let mut cases: Vec<(String, u32, u32, InitialHealth)> = ProfileName::ALL
            .iter()
            .map(|p| {
                let d = defaults(*p);
                (p.to_string(), d.rise, d.fall, d.initial)
            })
            .collect();
        let c = client_defaults();
        cases.push(("client".into(), c.rise, c.fall, c.initial));
        for (name, rise, fall, initial) in cases {
            let start = Instant::now();
            let mut v = Verdict::new(rise, fall, initial);
            assert_eq!(v.known(), None, "{name}: unknown before any probe");
            let (known, changes) = run(&mut v, start, &vec![false; fall as usize + 2]);
            // FirstProbe: the first failure decides; otherwise exactly `fall` failures.
            let decided_at = if initial == InitialHealth::FirstProbe { 0 } else { fall as usize - 1 };
            for (i, k) in known.iter().enumerate() {
                let want = if i >= decided_at { U } else { None };
                assert_eq!(*k, want, "{name}: step {i}");
            }
            assert_eq!(changes.len(), 1, "{name}: one change, {changes:?}");
            let (step, change) = changes[0];
            assert_eq!(step, decided_at, "{name}");
            assert_eq!((change.from, change.to), (None, Health::Unhealthy), "{name}");
            assert_eq!(change.at, start + Duration::from_secs(decided_at as u64), "{name}");
            assert_eq!(v.changed_at(), Some(change.at), "{name}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn every_profile_becomes_healthy_after_exactly_its_rise_successes() {
        for p in ProfileName::ALL {
            let d = defaults(*p);
            let start = Instant::now();
            let mut v = Verdict::new(d.rise, d.fall, d.initial);
            let (known, changes) = run(&mut v, start, &vec![true; d.rise as usize + 2]);
            let decided_at = if d.initial == InitialHealth::FirstProbe { 0 } else { d.rise as usize - 1 };
            assert_eq!(known[decided_at], H, "{p}");
            if decided_at > 0 {
                assert_eq!(known[decided_at - 1], None, "{p}: still assumed one success earlier");
            }
            assert_eq!(changes.len(), 1, "{p}");
            assert_eq!(changes[0].0, decided_at, "{p}");
            assert_eq!(changes[0].1.streak, decided_at as u32 + 1, "{p}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn starting_state_is_what_the_lb_assumes_before_any_threshold() {
        // (profile, assumed before probing, assumed after one failure, after one success)
        let table = [
            (ProfileName::Haproxy, None, U, H), // starts UP, but its first check decides (HAProxy 2.6)
            (ProfileName::AwsAlb, U, U, U),     // starts unhealthy; 1 success < rise 5
            (ProfileName::Gcp, U, U, U),        // rise 2
            (ProfileName::AzureLb, U, U, H),    // rise 1 fall 1: one probe decides
            (ProfileName::Envoy, None, U, H),   // first probe decides
            (ProfileName::KubeProxy, U, U, H),  // rise 1
            (ProfileName::Kubelet, U, U, H),    // success 1
            (ProfileName::AzureAppgw, U, U, H), // rise 1
        ];
        for (p, before, after_fail, after_ok) in table {
            let d = defaults(p);
            let now = Instant::now();
            let v = Verdict::new(d.rise, d.fall, d.initial);
            assert_eq!(v.assumed(), before, "{p}");
            let mut f = v.clone();
            f.observe(false, now);
            assert_eq!(f.assumed(), after_fail, "{p} after a failure");
            let mut s = v.clone();
            s.observe(true, now);
            assert_eq!(s.assumed(), after_ok, "{p} after a success");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn haproxy_rise_2_fall_3_sequence_with_resets() {
        let d = defaults(ProfileName::Haproxy);
        let mut v = Verdict::new(d.rise, d.fall, d.initial);
        let start = Instant::now();
        // F F S F F F S S, as the real HAProxy 2.6 judges it (`profiles::haproxy`; the same
        // sequence runs against HAProxy in tests/wire_fidelity.rs): the first failure marks a
        // fresh server DOWN at once; back UP takes `rise` 2 consecutive successes, so the lone
        // success at step 2 does not count.
        let results = [false, false, true, false, false, false, true, true];
        let (known, changes) = run(&mut v, start, &results);
        assert_eq!(known, vec![U, U, U, U, U, U, U, H]);
        let steps: Vec<_> = changes.iter().map(|(i, c)| (*i, c.from, c.to)).collect();
        assert_eq!(steps, vec![(0, None, Health::Unhealthy), (7, U, Health::Healthy)]);
        assert_eq!(changes[1].1.held, Some(Duration::from_secs(7)));
        assert_eq!(v.changed_at(), Some(start + Duration::from_secs(7)));
    }

    #[tokio::test(start_paused = true)]
    async fn alternating_results_never_cross_thresholds_above_one() {
        let mut v = Verdict::new(2, 2, InitialHealth::Unhealthy);
        let start = Instant::now();
        let results: Vec<bool> = (0..20).map(|i| i % 2 == 0).collect();
        let (known, changes) = run(&mut v, start, &results);
        assert!(known.iter().all(Option::is_none), "{known:?}");
        assert!(changes.is_empty());
        assert_eq!(v.assumed(), U);
    }

    #[tokio::test(start_paused = true)]
    async fn first_probe_decides_then_thresholds_apply() {
        // The client view: first probe decides, then rise 2 / fall 2.
        let mut v = Verdict::new(2, 2, InitialHealth::FirstProbe);
        let start = Instant::now();
        let (known, changes) = run(&mut v, start, &[true, false, true, false, false, true, true]);
        assert_eq!(known, vec![H, H, H, H, U, U, H]);
        let steps: Vec<_> = changes.iter().map(|(i, c)| (*i, c.to)).collect();
        assert_eq!(steps, vec![(0, Health::Healthy), (4, Health::Unhealthy), (6, Health::Healthy)]);
        assert_eq!(changes[0].1.held, None);
        assert_eq!(changes[1].1.held, Some(Duration::from_secs(4)));
    }

    #[tokio::test(start_paused = true)]
    async fn settled_state_confirmed_without_change_is_not_reported_twice() {
        // Healthy start confirmed by `rise` successes reports once; more successes report nothing.
        let mut v = Verdict::new(2, 3, InitialHealth::Healthy);
        let start = Instant::now();
        let (_, changes) = run(&mut v, start, &[true, true, true, true]);
        assert_eq!(changes.len(), 1);
        assert_eq!((changes[0].0, changes[0].1.from, changes[0].1.to), (1, None, Health::Healthy));
    }

    #[tokio::test(start_paused = true)]
    async fn zero_thresholds_act_as_one() {
        let mut v = Verdict::new(0, 0, InitialHealth::Healthy);
        assert_eq!(v.thresholds().0, 1);
        let now = Instant::now();
        assert_eq!(v.observe(false, now).map(|c| c.to), Some(Health::Unhealthy));
        assert_eq!(v.observe(true, now).map(|c| c.to), Some(Health::Healthy));
    }

    #[tokio::test(start_paused = true)]
    async fn counters_saturate_instead_of_overflowing() {
        let mut v = Verdict::new(1, 1, InitialHealth::Healthy);
        v.successes = u32::MAX;
        let now = Instant::now();
        v.observe(true, now);
        assert_eq!(v.successes(), u32::MAX);
        assert_eq!(v.failures(), 0);
    }
}
