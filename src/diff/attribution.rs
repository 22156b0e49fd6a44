//! Attribution: which request attribute makes the checker's view and the client's view disagree.
//!
//! [`plan_hybrids`] (pure) plans the [hybrids](crate::diff::hybrid) for a pair — the checker's view
//! with ONE attribute switched to the client's value, then the client's view with one attribute
//! switched to the checker's, for every attribute in which they [differ](differences) — and
//! [`attribute`] probes them and judges which switches flip the result. Hybrids are real requests
//! to production endpoints, so every run is bounded: [`AttributionSettings::max_hybrids`] per run,
//! [`HYBRID_CONCURRENCY`] at a time, and [`AttributionBudget`] decides when a run may happen at all.
//!
//! Compound causes: when no single switch heals the disagreement, the run spends what is left of
//! `max_hybrids` on [`CauseSearch`] (pure): sets of two, then three switches of the checker's
//! request (the client's values into it), each holding at least one attribute whose single switch
//! *changed* the checker's result (status, error or phase) without healing it. In a false drain a
//! set heals when the checker passes with it; in a blackhole when the checker fails with it the
//! way the users do ([`reproduces`]: same error code, and same status when the users got one), so
//! the check would see what they see. The smallest set that heals is the compound cause: every
//! attribute in it is needed (a false drain: all must be fixed; a blackhole: the users' failure
//! needs all of them together, and the check sees none of it).

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use serde::Serialize;
use tokio::time::Instant;

use super::attribute::{combinable, differences, Attribute};
use super::hybrid::{Combined, CombinedResult, Hybrid, HybridResult, Side};
use crate::config::{Endpoint, Host, View};
use crate::probe::{ErrorCode, Outcome, Prober};

/// Plans the hybrids for a pair: first the checker's view with one attribute switched to the
/// client's value, for every attribute in [`differences`], most likely first; then the client's
/// view with one attribute switched to the checker's value, in the same order. At most `cap`
/// (only those are built). What each hybrid switches: [`Hybrid::new`].
pub fn plan_hybrids(client: &View, checker: &View, cap: usize) -> Vec<Hybrid> {
    let diffs = differences(client, checker);
    [Side::Checker, Side::Client]
        .into_iter()
        .flat_map(|side| diffs.iter().map(move |a| (side, *a)))
        .take(cap)
        .map(|(side, attribute)| Hybrid::new(attribute, side, client, checker))
        .collect()
}

/// `view` dialing exactly the address `outcome` dialed (when it got that far), so hybrids reach
/// the same backend as the outcome they are compared with even if DNS rotates, and with
/// `each_address` each pair is attributed on its own address. Host and SNI rules are unchanged:
/// they derive from the URL, not the dial endpoint.
pub fn pin(view: &View, outcome: &Outcome) -> View {
    let mut v = view.clone();
    if let Some(addr) = dialed(outcome) {
        v.connect_to = Some(Endpoint { host: Host::Ip(addr.ip()), port: addr.port() });
        v.each_address = false;
        v.expect_addresses.clear();
    }
    v
}

/// The address an outcome dialed, when it got that far.
pub fn dialed(outcome: &Outcome) -> Option<SocketAddr> {
    outcome.request.address.or(outcome.peer)
}

/// Attribution switches and bounds: a target's `attribution`, `attribution_interval` and
/// `max_hybrids` (see [`crate::config::DiffSettings`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttributionSettings {
    /// `attribution = false` turns hybrid probing off (diagnosis then uses error codes only).
    pub enabled: bool,
    /// Minimum time between two runs for one client/checker pair.
    pub interval: Duration,
    /// Most hybrids probed per run.
    pub max_hybrids: usize,
}

pub use crate::config::{DEFAULT_ATTRIBUTION_INTERVAL, DEFAULT_MAX_HYBRIDS};
/// Hybrids of one run in flight at a time: enough to finish a run within a few timeouts, few
/// enough not to look like a burst to the target.
pub const HYBRID_CONCURRENCY: usize = 4;

impl Default for AttributionSettings {
    fn default() -> AttributionSettings {
        AttributionSettings::from(&crate::config::DiffSettings::default())
    }
}

impl From<&crate::config::DiffSettings> for AttributionSettings {
    fn from(d: &crate::config::DiffSettings) -> AttributionSettings {
        AttributionSettings {
            enabled: d.attribution,
            interval: d.attribution_interval,
            max_hybrids: d.max_hybrids,
        }
    }
}

/// When one client/checker pair may run attribution: only while a mismatch is open, once when it
/// opens, then at most every `interval` — also across re-openings, so a flapping pair cannot
/// turn attribution into a stream of production requests (the daemon keeps the last result).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttributionBudget {
    enabled: bool,
    interval: Duration,
    open: bool,
    last_run: Option<Instant>,
    runs: u64,
}

impl AttributionBudget {
    /// A budget with nothing open.
    pub fn new(settings: &AttributionSettings) -> AttributionBudget {
        AttributionBudget {
            enabled: settings.enabled,
            interval: settings.interval,
            open: false,
            last_run: None,
            runs: 0,
        }
    }

    /// A mismatch opened for this pair.
    pub fn opened(&mut self) {
        self.open = true;
    }

    /// The pair's mismatch resolved: no more runs until the next opening.
    pub fn resolved(&mut self) {
        self.open = false;
    }

    /// Whether a run may start at `now`; if so, it is counted as started.
    pub fn try_acquire(&mut self, now: Instant) -> bool {
        if !self.enabled || !self.open {
            return false;
        }
        if self.last_run.is_some_and(|t| now.saturating_duration_since(t) < self.interval) {
            return false;
        }
        self.last_run = Some(now);
        self.runs += 1;
        true
    }

    /// When the next run may start, as seen at `now` (`None`: disabled or nothing open).
    pub fn next_allowed(&self, now: Instant) -> Option<Instant> {
        if !self.enabled || !self.open {
            return None;
        }
        Some(self.last_run.map_or(now, |t| (t + self.interval).max(now)))
    }

    /// Runs started so far.
    pub fn runs(&self) -> u64 {
        self.runs
    }
}

/// The result of one attribution run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Attribution {
    /// The attributes in which the pinned views differ.
    pub differences: Vec<Attribute>,
    /// Every hybrid probed, in plan order.
    pub hybrids: Vec<HybridResult>,
    /// Hybrids planned beyond the cap and not probed.
    pub not_tried: usize,
    /// The combinations of switches probed by the compound-cause search, in the order probed
    /// (none when a single switch healed or with no hybrid left in the cap).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub combinations: Vec<CombinedResult>,
}

impl Attribution {
    /// The attributes whose switch flipped a result (either side), most likely culprit first.
    pub fn flipped(&self) -> Vec<Attribute> {
        let mut out: Vec<Attribute> =
            self.hybrids.iter().filter(|h| h.flipped).map(|h| h.attribute).collect();
        out.sort_by_key(|a| a.rank());
        out.dedup();
        out
    }

    /// The flipped hybrid for `attribute`, the checker-side one first.
    pub fn flip(&self, attribute: Attribute) -> Option<&HybridResult> {
        let flipped =
            |side| self.hybrids.iter().find(|h| h.flipped && h.attribute == attribute && h.switched == side);
        flipped(Side::Checker).or_else(|| flipped(Side::Client))
    }

    /// The smallest combination that healed (the compound cause), when the search found one.
    pub fn compound(&self) -> Option<&CombinedResult> {
        self.combinations.iter().find(|c| c.healed)
    }

    /// The single hybrid of `attribute` on `side`, when it was probed.
    pub fn single(&self, attribute: Attribute, side: Side) -> Option<&HybridResult> {
        self.hybrids.iter().find(|h| h.attribute == attribute && h.switched == side)
    }
}

/// The largest set of switches [`CauseSearch`] tries.
pub const MAX_CAUSES: usize = 3;

/// What one single-switch hybrid of the failing side showed, as the search needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SingleSwitch {
    /// The attribute switched.
    pub attribute: Attribute,
    /// Its result differs from the failing view's (status, error or phase), healed or not.
    pub changed: bool,
    /// It passes where the failing view fails.
    pub healed: bool,
}

/// The search for the smallest set of switches that heals a failing view (pure): seeded by the
/// single switches, it plans rounds of combinations — every set of two, then of three,
/// [`combinable`] attributes holding at least one attribute whose single switch changed the
/// result — most promising first (more changed attributes, then the matcher, which judges a
/// changed result, then priority), and never more than its budget in all. The caller probes a
/// round, [`records`](CauseSearch::record) each result in plan order and asks for the next; the
/// first set that heals ends the search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CauseSearch {
    candidates: Vec<Attribute>,
    changers: Vec<Attribute>,
    budget: usize,
    size: usize,
    tried: Vec<(Vec<Attribute>, bool)>,
    cause: Option<Vec<Attribute>>,
}

impl CauseSearch {
    /// A search over `candidates` (in priority order) seeded by `singles`, allowed `budget`
    /// combinations. A single switch that healed is the cause already: nothing is planned.
    pub fn new(candidates: &[Attribute], singles: &[SingleSwitch], budget: usize) -> CauseSearch {
        let mut healed: Vec<Attribute> = singles.iter().filter(|s| s.healed).map(|s| s.attribute).collect();
        healed.sort_by_key(|a| a.rank());
        let mut candidates = candidates.to_vec();
        candidates.sort_by_key(|a| a.rank());
        candidates.dedup();
        CauseSearch {
            changers: singles.iter().filter(|s| s.changed && !s.healed).map(|s| s.attribute).collect(),
            candidates,
            budget,
            size: 2,
            tried: Vec::new(),
            cause: healed.first().map(|a| vec![*a]),
        }
    }

    /// The next round of combinations to probe (each in priority order), empty when the search
    /// is over: a cause found, the budget spent, or no set of up to [`MAX_CAUSES`] left.
    pub fn next_round(&mut self) -> Vec<Vec<Attribute>> {
        while self.cause.is_none() && self.size <= MAX_CAUSES && self.budget > 0 {
            let size = self.size;
            self.size += 1;
            let mut sets: Vec<Vec<Attribute>> = subsets(&self.candidates, size)
                .into_iter()
                .filter(|set| set.iter().any(|a| self.changers.contains(a)))
                .collect();
            // More changed attributes first, then sets the matcher judges, then priority.
            sets.sort_by_key(|set| {
                let changed = set.iter().filter(|a| self.changers.contains(a)).count();
                let ranks: Vec<usize> = set.iter().map(|a| a.rank()).collect();
                (std::cmp::Reverse(changed), !set.contains(&Attribute::Matcher), ranks)
            });
            sets.truncate(self.budget);
            if !sets.is_empty() {
                self.budget -= sets.len();
                return sets;
            }
        }
        Vec::new()
    }

    /// What the combination `set` showed; the first that heals is the cause.
    pub fn record(&mut self, set: &[Attribute], healed: bool) {
        self.tried.push((set.to_vec(), healed));
        if healed && self.cause.is_none() {
            self.cause = Some(set.to_vec());
        }
    }

    /// The smallest healing set found so far, most likely culprit first.
    pub fn cause(&self) -> Option<&[Attribute]> {
        self.cause.as_deref()
    }

    /// Every combination recorded, in order, and whether it healed.
    pub fn tried(&self) -> &[(Vec<Attribute>, bool)] {
        &self.tried
    }
}

/// Every subset of `items` of `size`, in lexicographic order of position.
fn subsets(items: &[Attribute], size: usize) -> Vec<Vec<Attribute>> {
    if size == 0 {
        return vec![Vec::new()];
    }
    let mut out = Vec::new();
    for (i, first) in items.iter().enumerate() {
        for mut rest in subsets(&items[i + 1..], size - 1) {
            rest.insert(0, *first);
            out.push(rest);
        }
    }
    out
}

/// Whether `o` shows another result than `base`: success, error, status or phase.
fn changed(o: Option<&Outcome>, base: &Outcome) -> bool {
    o.is_some_and(|o| (o.ok, o.error, o.status, o.phase) != (base.ok, base.error, base.status, base.phase))
}

/// Whether `o` fails the way the users' `users` outcome does: the same error code, and the same
/// status when the users got one (a blackhole's combination that reproduces it heals the
/// disagreement: the check would see what users see).
pub fn reproduces(o: &Outcome, users: &Outcome) -> bool {
    !o.ok && !users.ok && o.error == users.error && (users.status.is_none() || o.status == users.status)
}

/// Runs one attribution for a pair: pins both views to the addresses their outcomes dialed, plans
/// at most `cap` hybrids and probes them, [`HYBRID_CONCURRENCY`] at a time. A checker-side hybrid
/// flipped when its result differs from `checker_outcome`'s; a client-side one when it differs
/// from `client_outcome`'s.
pub async fn attribute(
    prober: &Prober,
    client: &View,
    checker: &View,
    client_outcome: &Outcome,
    checker_outcome: &Outcome,
    cap: usize,
) -> Attribution {
    attribute_with(
        |view: View| async move { prober.probe(&view).await },
        client,
        checker,
        client_outcome,
        checker_outcome,
        cap,
    )
    .await
}

/// [`attribute`] with the probe as a function: the seam that lets the pure core be tested
/// without sockets.
pub(crate) async fn attribute_with<F, Fut>(
    probe: F,
    client: &View,
    checker: &View,
    client_outcome: &Outcome,
    checker_outcome: &Outcome,
    cap: usize,
) -> Attribution
where
    F: Fn(View) -> Fut,
    Fut: Future<Output = Vec<Outcome>>,
{
    let client = pin(client, client_outcome);
    let checker = pin(checker, checker_outcome);
    let differences = differences(&client, &checker);
    let plan = plan_hybrids(&client, &checker, cap);
    let not_tried = (2 * differences.len()).saturating_sub(plan.len());
    let hybrids = stream::iter(plan)
        .map(|h| {
            let probe = probe(h.view.clone());
            async move { (h, probe.await) }
        })
        .buffered(HYBRID_CONCURRENCY)
        .map(|(h, outcomes)| {
            let base_ok = h.switched.pick(client_outcome, checker_outcome).ok;
            // Every hybrid probes one address; an empty result would be a prober bug, and
            // counts as a failure rather than a success.
            HybridResult::new(h, outcomes.into_iter().next(), base_ok)
        })
        .collect::<Vec<HybridResult>>()
        .await;
    let mut hybrids = hybrids;
    explain_address_by_tls(&mut hybrids, &client, &checker);
    // A disagreement no single switch heals: search for the smallest set of switches of the
    // checker's request that does, with what is left of the cap. A false drain heals when the
    // checker passes; a blackhole when the checker fails the way the users do.
    let mut combinations = Vec::new();
    let blackhole = !client_outcome.ok && checker_outcome.ok;
    if (client_outcome.ok && !checker_outcome.ok) || blackhole {
        let heals = |o: Option<&Outcome>, flipped: bool| {
            if blackhole {
                o.is_some_and(|o| reproduces(o, client_outcome))
            } else {
                flipped
            }
        };
        let mut singles: Vec<SingleSwitch> = hybrids
            .iter()
            .filter(|h| h.switched == Side::Checker)
            .map(|h| SingleSwitch {
                attribute: h.attribute,
                changed: changed(h.outcome.as_ref(), checker_outcome),
                healed: heals(h.outcome.as_ref(), h.flipped),
            })
            .collect();
        // The matcher alone needs no probe: the client's matcher judges the checker's response.
        if let (false, Some(ErrorCode::HttpStatus), Some(status)) =
            (blackhole, checker_outcome.error, checker_outcome.status)
        {
            if client.expect.status_ok(status) && client.expect != checker.expect {
                singles.push(SingleSwitch { attribute: Attribute::Matcher, changed: false, healed: true });
            }
        }
        let mut search =
            CauseSearch::new(&combinable(&client, &checker), &singles, cap.saturating_sub(hybrids.len()));
        loop {
            let round = search.next_round();
            if round.is_empty() {
                break;
            }
            let results = stream::iter(round)
                .map(|set| {
                    let c = Combined::new(&set, Side::Checker, &client, &checker);
                    let probe = probe(c.view.clone());
                    async move { (c, probe.await) }
                })
                .buffered(HYBRID_CONCURRENCY)
                .map(|(c, outcomes)| {
                    let mut r = CombinedResult::new(c, outcomes.into_iter().next(), checker_outcome.ok);
                    r.healed = heals(r.outcome.as_ref(), r.healed);
                    r
                })
                .collect::<Vec<CombinedResult>>()
                .await;
            for r in results {
                search.record(&r.attributes, r.healed);
                combinations.push(r);
            }
        }
    }
    Attribution { differences, hybrids, not_tried, combinations }
}

/// An `address` hybrid that also had to switch TLS on (see [`Hybrid::new`]) does not count as
/// a flip when switching TLS alone, on the same side, gave the same result: TLS explains it.
pub(crate) fn explain_address_by_tls(hybrids: &mut [HybridResult], client: &View, checker: &View) {
    let explained_by_tls: Vec<bool> = hybrids
        .iter()
        .map(|h| {
            let base = h.switched.pick(client, checker);
            h.attribute == Attribute::Address
                && h.flipped
                && h.hybrid.scheme.uses_tls() != base.scheme.uses_tls()
                && hybrids.iter().any(|t| {
                    t.attribute == Attribute::Tls
                        && t.switched == h.switched
                        && t.flipped
                        && (t.ok, t.error, t.status) == (h.ok, h.error, h.status)
                })
        })
        .collect();
    for (h, explained) in hybrids.iter_mut().zip(explained_by_tls) {
        if explained {
            h.flipped = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::config::{HostHeader, Sni};
    use crate::diff::attribute::effective_sni;
    use crate::testkit::{ok_outcome, outcome_for, shop_client as client, shop_nlb as nlb, view_url};

    #[test]
    fn identical_views_have_no_differences_and_no_hybrids() {
        let c = client();
        let mut twin = c.clone();
        twin.name = "twin".into();
        assert!(differences(&c, &twin).is_empty());
        assert!(plan_hybrids(&c, &twin, 12).is_empty());
    }

    #[test]
    fn forward_hybrids_come_first_in_priority_order_then_reverse() {
        let c = client();
        let mut k = nlb();
        k.http.user_agent = Some("ELB-HealthChecker/2.0".into());
        k.http.host = HostHeader::DialedAddress;
        let plan = plan_hybrids(&c, &k, 100);
        let got: Vec<_> = plan.iter().map(|h| (h.switched, h.attribute, h.view.name.to_string())).collect();
        let attrs =
            [Attribute::Tls, Attribute::Host, Attribute::Path, Attribute::UserAgent, Attribute::Address];
        let mut want: Vec<_> = attrs.iter().map(|a| (Side::Checker, *a, format!("nlb~{a}"))).collect();
        want.extend(attrs.iter().map(|a| (Side::Client, *a, format!("client~{a}@nlb"))));
        assert_eq!(got, want);
    }

    #[test]
    fn the_cap_bounds_the_plan() {
        let c = client();
        let mut k = nlb();
        k.http.user_agent = Some("ELB-HealthChecker/2.0".into());
        for cap in 0..12 {
            let plan = plan_hybrids(&c, &k, cap);
            assert_eq!(plan.len(), cap.min(2 * differences(&c, &k).len()), "cap {cap}");
            // The cap cuts the least likely: what remains is a prefix of the full plan.
            assert_eq!(plan, plan_hybrids(&c, &k, 100)[..plan.len()].to_vec());
        }
    }

    #[test]
    fn sni_and_verify_hybrids_only_between_tls_views() {
        let c = client();
        let mut k = view_url("shop", "alb", "https://10.0.0.5:8443/");
        k.tls.sni = Sni::None;
        k.tls.verify = false;
        let plan = plan_hybrids(&c, &k, 100);
        for h in &plan {
            if matches!(h.attribute, Attribute::Sni | Attribute::Verify) {
                assert!(h.view.scheme.uses_tls(), "{}", h.view.name);
            }
        }
        let sni =
            &plan.iter().find(|h| h.switched == Side::Checker && h.attribute == Attribute::Sni).unwrap().view;
        assert_eq!(sni.tls.sni, Sni::Name("shop.example.com".into()));
        assert!(!sni.tls.verify, "only sni switched");
        let rev =
            &plan.iter().find(|h| h.switched == Side::Client && h.attribute == Attribute::Sni).unwrap().view;
        assert_eq!(rev.tls.sni, Sni::None);
        // Plain checker: no sni/verify hybrid at all, even though the settings differ.
        let mut plain = nlb();
        plain.tls.verify = false;
        assert!(plan_hybrids(&c, &plain, 100)
            .iter()
            .all(|h| !matches!(h.attribute, Attribute::Sni | Attribute::Verify)));
    }

    #[test]
    fn pin_dials_what_the_outcome_dialed() {
        let c = client();
        let mut o = ok_outcome(&c);
        o.request.address = Some("203.0.113.11:443".parse().unwrap());
        let p = pin(&c, &o);
        assert_eq!(p.dial_endpoint().to_string(), "203.0.113.11:443");
        assert_eq!(p.url_endpoint, c.url_endpoint);
        assert_eq!(effective_sni(&p), Some("shop.example.com".into()));
        o.request.address = None;
        o.peer = None;
        assert_eq!(pin(&c, &o), c, "nothing dialed: unchanged");
    }

    #[tokio::test(start_paused = true)]
    async fn budget_runs_once_per_opening_then_at_most_every_interval() {
        let settings =
            AttributionSettings { interval: Duration::from_secs(300), ..AttributionSettings::default() };
        let mut b = AttributionBudget::new(&settings);
        let t0 = Instant::now();
        assert!(!b.try_acquire(t0), "nothing open");
        assert_eq!(b.next_allowed(t0), None);
        b.opened();
        assert_eq!(b.next_allowed(t0), Some(t0));
        assert!(b.try_acquire(t0));
        assert!(!b.try_acquire(t0), "one run per opening");
        assert!(!b.try_acquire(t0 + Duration::from_secs(299)));
        assert_eq!(b.next_allowed(t0 + Duration::from_secs(1)), Some(t0 + Duration::from_secs(300)));
        assert!(b.try_acquire(t0 + Duration::from_secs(300)), "refresh after the interval");
        // Resolved and re-opened soon after: the interval still holds.
        b.resolved();
        assert!(!b.try_acquire(t0 + Duration::from_secs(305)), "nothing open");
        b.opened();
        assert!(!b.try_acquire(t0 + Duration::from_secs(310)));
        assert!(b.try_acquire(t0 + Duration::from_secs(600)));
        assert_eq!(b.runs(), 3);
        // A storm of openings and polls inside one interval runs nothing more.
        let mut started = 0;
        for i in 0..1000u64 {
            b.opened();
            if b.try_acquire(t0 + Duration::from_secs(600) + Duration::from_millis(i * 250)) {
                started += 1;
            }
            b.resolved();
        }
        assert_eq!(started, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn disabled_budget_never_runs() {
        let mut b =
            AttributionBudget::new(&AttributionSettings { enabled: false, ..AttributionSettings::default() });
        b.opened();
        assert!(!b.try_acquire(Instant::now()));
        assert_eq!(b.next_allowed(Instant::now()), None);
    }

    #[tokio::test(start_paused = true)]
    async fn attribute_flags_flips_and_bounds_concurrency_and_count() {
        // A backend model: port 30080 is a TLS listener; the checker's plain HTTP gets
        // http_tls_required, TLS succeeds. Each probe takes 1 s (paused time).
        let c = client();
        let mut k = nlb();
        k.http.user_agent = Some("ELB-HealthChecker/2.0".into());
        let in_flight = AtomicUsize::new(0);
        let peak = AtomicUsize::new(0);
        let calls = AtomicUsize::new(0);
        let backend = |v: View| {
            let (in_flight, peak, calls) = (&in_flight, &peak, &calls);
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(1)).await;
                in_flight.fetch_sub(1, Ordering::SeqCst);
                let ok = v.scheme.uses_tls();
                let error = (!ok).then_some(ErrorCode::HttpTlsRequired);
                vec![outcome_for(&v, ok, error, ok.then_some(200))]
            }
        };
        let client_outcome = outcome_for(&c, true, None, Some(200));
        let checker_outcome = outcome_for(&k, false, Some(ErrorCode::HttpTlsRequired), None);
        let start = Instant::now();
        let a = attribute_with(backend, &c, &k, &client_outcome, &checker_outcome, 5).await;
        assert_eq!(calls.load(Ordering::SeqCst), 5, "never more than the cap");
        assert_eq!(a.hybrids.len(), 5);
        assert!(peak.load(Ordering::SeqCst) <= HYBRID_CONCURRENCY);
        assert_eq!(peak.load(Ordering::SeqCst), HYBRID_CONCURRENCY, "runs concurrently");
        assert_eq!(start.elapsed(), Duration::from_secs(2), "5 hybrids, 4 at a time");
        assert_eq!(a.not_tried, 2 * a.differences.len() - 5);
        assert_eq!(a.flipped(), vec![Attribute::Tls]);
        let flip = a.flip(Attribute::Tls).unwrap();
        assert_eq!((&*flip.view, flip.switched, flip.ok), ("nlb~tls", Side::Checker, true));
        // Plan order is kept.
        let names: Vec<_> = a.hybrids.iter().map(|h| h.view.to_string()).collect();
        assert_eq!(names[0], "nlb~tls");
    }

    #[tokio::test(start_paused = true)]
    async fn reverse_hybrids_flip_against_the_client_outcome() {
        let c = client();
        let k = nlb();
        // Backend: everything at /healthz succeeds, /cart fails with 503 (blackhole).
        let backend = |v: View| async move {
            let ok = v.path == "/healthz";
            vec![outcome_for(
                &v,
                ok,
                (!ok).then_some(ErrorCode::HttpStatus),
                Some(if ok { 200 } else { 503 }),
            )]
        };
        let co = outcome_for(&c, false, Some(ErrorCode::HttpStatus), Some(503));
        let ko = outcome_for(&k, true, None, Some(200));
        let a = attribute_with(backend, &c, &k, &co, &ko, 100).await;
        assert_eq!(a.flipped(), vec![Attribute::Path]);
        let sides: Vec<_> = a.hybrids.iter().filter(|h| h.flipped).map(|h| h.switched).collect();
        assert_eq!(sides, vec![Side::Checker, Side::Client]);
        assert_eq!(a.not_tried, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn an_empty_probe_result_counts_as_a_failure() {
        let c = client();
        let k = nlb();
        let co = outcome_for(&c, true, None, Some(200));
        let ko = outcome_for(&k, false, Some(ErrorCode::ConnectTimeout), None);
        let a = attribute_with(|_v: View| async { Vec::new() }, &c, &k, &co, &ko, 3).await;
        assert!(a.hybrids.iter().all(|h| !h.ok && h.outcome.is_none()));
        assert!(a.hybrids.iter().all(|h| !h.flipped), "failed like the checker");
    }

    // ---- the compound-cause search (pure), over synthetic hybrid results ----------------------

    use Attribute::{Address, Headers, Host, Matcher, Path, UserAgent};

    /// Runs a search to its end against `heals` (the synthetic result of any set), as
    /// `attribute_with` does round by round; returns the cause and every set probed.
    fn run(
        candidates: &[Attribute],
        singles: &[SingleSwitch],
        budget: usize,
        heals: impl Fn(&[Attribute]) -> bool,
    ) -> (Option<Vec<Attribute>>, Vec<Vec<Attribute>>) {
        let mut search = CauseSearch::new(candidates, singles, budget);
        let mut probed = Vec::new();
        loop {
            let round = search.next_round();
            if round.is_empty() {
                break;
            }
            for set in round {
                search.record(&set, heals(&set));
                probed.push(set);
            }
        }
        assert_eq!(search.tried().len(), probed.len());
        assert!(probed.len() <= budget, "{} probed, budget {budget}", probed.len());
        (search.cause().map(<[Attribute]>::to_vec), probed)
    }

    fn single(attribute: Attribute, changed: bool, healed: bool) -> SingleSwitch {
        SingleSwitch { attribute, changed, healed }
    }

    /// The singles of the example: the checker's Host changes 404 into 204, nothing
    /// else changes anything.
    fn host_changes() -> Vec<SingleSwitch> {
        vec![single(Host, true, false), single(UserAgent, false, false), single(Address, false, false)]
    }

    #[test]
    fn one_cause_a_single_switch_that_heals_plans_nothing() {
        let singles = [single(Host, true, false), single(Path, true, true), single(Headers, true, true)];
        let (cause, probed) = run(&[Host, Path, Headers], &singles, 10, |_| true);
        assert_eq!(cause, Some(vec![Path]), "the likelier of two healing switches");
        assert!(probed.is_empty(), "no combination probed");
    }

    #[test]
    fn two_causes_host_and_matcher() {
        let candidates = [Host, UserAgent, Address, Matcher];
        let (cause, probed) =
            run(&candidates, &host_changes(), 10, |set| set.contains(&Host) && set.contains(&Matcher));
        assert_eq!(cause, Some(vec![Host, Matcher]));
        // The matcher judging the changed result is tried first; then the search stops after
        // its round (every pair holding the changed Host).
        assert_eq!(probed, vec![vec![Host, Matcher], vec![Host, UserAgent], vec![Host, Address]]);
    }

    #[test]
    fn pairs_of_changed_attributes_come_first_and_unchanged_pairs_never() {
        let singles = [single(Host, true, false), single(Path, true, false), single(UserAgent, false, false)];
        let (cause, probed) = run(&[Host, Path, UserAgent, Matcher], &singles, 100, |_| false);
        assert_eq!(cause, None);
        assert_eq!(probed[0], vec![Host, Path], "two changed attributes first");
        assert!(
            probed.iter().all(|set| set.contains(&Host) || set.contains(&Path)),
            "every set holds a changed attribute: {probed:?}"
        );
        assert!(!probed.contains(&vec![UserAgent, Matcher]));
        // Pairs, then triples; nothing larger than MAX_CAUSES.
        let sizes: Vec<usize> = probed.iter().map(Vec::len).collect();
        assert!(sizes.windows(2).all(|w| w[0] <= w[1]), "{sizes:?}");
        assert_eq!(sizes.iter().max(), Some(&MAX_CAUSES));
        // All 5 pairs and 4 triples with Host or Path: C(4,2)-1, C(4,3)-0.
        assert_eq!(probed.len(), 5 + 4);
    }

    #[test]
    fn three_causes_after_every_pair() {
        let singles =
            [single(Host, true, false), single(Path, false, false), single(UserAgent, false, false)];
        let needs = [Host, Path, Matcher];
        let (cause, probed) = run(&[Host, Path, UserAgent, Matcher], &singles, 100, |set| {
            needs.iter().all(|a| set.contains(a))
        });
        assert_eq!(cause, Some(vec![Host, Path, Matcher]));
        let pairs = probed.iter().filter(|s| s.len() == 2).count();
        assert_eq!(pairs, 3, "every pair with Host tried first: {probed:?}");
        assert_eq!(
            probed.iter().filter(|s| s.len() == 3).count(),
            3,
            "then the triples with Host: {probed:?}"
        );
        assert!(probed.iter().position(|s| *s == vec![Host, Path, Matcher]).is_some());
    }

    #[test]
    fn none_within_the_budget_is_no_cause() {
        // The healing triple exists, but the budget ends inside the pairs.
        let needs = [Host, Path, Matcher];
        let singles =
            [single(Host, true, false), single(Path, false, false), single(UserAgent, false, false)];
        for budget in 0..=3 {
            let (cause, probed) = run(&[Host, Path, UserAgent, Matcher], &singles, budget, |set| {
                needs.iter().all(|a| set.contains(a))
            });
            assert_eq!(cause, None, "budget {budget}");
            assert_eq!(probed.len(), budget.min(3));
        }
        // Nothing changed anything: nothing to start from, nothing probed, whatever the budget.
        let inert = [single(Host, false, false), single(Path, false, false)];
        assert_eq!(run(&[Host, Path, Matcher], &inert, 100, |_| true), (None, vec![]));
        // Nothing heals at all: the search ends with every set of up to three tried.
        let (cause, probed) = run(&[Host, Path, Matcher], &host_changes(), 100, |_| false);
        assert_eq!((cause, probed.len()), (None, 2 + 1));
    }

    #[tokio::test(start_paused = true)]
    async fn hybrids_and_combinations_together_never_exceed_max_hybrids() {
        // A GCP-like check: Host = the dialed IP lands on a default vhost (404), the users' Host
        // gets 204, which only the client's matcher accepts.
        let c = client();
        let mut k = nlb();
        k.http.host = HostHeader::DialedIp;
        k.http.user_agent = Some("GoogleHC/1.0".into());
        k.path = "/cart".into();
        k.expect.status = vec![200..=200];
        let calls = AtomicUsize::new(0);
        let backend = |v: View| {
            let calls = &calls;
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                let status =
                    if crate::diff::attribute::effective_host(&v).as_deref() == Some("shop.example.com") {
                        204
                    } else {
                        404
                    };
                let ok = v.expect.status_ok(status);
                vec![outcome_for(&v, ok, (!ok).then_some(ErrorCode::HttpStatus), Some(status))]
            }
        };
        let co = outcome_for(&c, true, None, Some(204));
        let ko = outcome_for(&k, false, Some(ErrorCode::HttpStatus), Some(404));
        for cap in 0..20 {
            calls.store(0, Ordering::SeqCst);
            let a = attribute_with(backend, &c, &k, &co, &ko, cap).await;
            let probed = a.hybrids.len() + a.combinations.len();
            assert!(probed <= cap, "cap {cap}: {probed}");
            assert_eq!(calls.load(Ordering::SeqCst), probed, "cap {cap}: every probe is reported");
            let singles = 2 * a.differences.len();
            if cap > singles {
                let heal = a.compound().expect("found with room for it");
                assert_eq!(heal.attributes, vec![Host, Matcher], "cap {cap}");
                assert_eq!(&*heal.view, "nlb~host+matcher");
            } else {
                assert!(a.combinations.is_empty(), "cap {cap}: no room left");
            }
        }
    }

    // ---- the blackhole search: the users' values into the check until it fails like them ----

    /// A host-routed backend: the users' vhost answers 503 on /cart (the outage) and 200 on
    /// /healthz; any other Host lands on the default vhost, 404 on /cart and 200 on /healthz.
    fn host_routed(v: View) -> Outcome {
        let users_vhost = crate::diff::attribute::effective_host(&v).as_deref() == Some("shop.example.com");
        let status = match (users_vhost, v.path.as_str()) {
            (true, "/cart") => 503,
            (false, "/cart") => 404,
            _ => 200,
        };
        let ok = v.expect.status_ok(status);
        outcome_for(&v, ok, (!ok).then_some(ErrorCode::HttpStatus), Some(status))
    }

    /// An ALB-like check of the health path on the dialed IP, passing while users get 503.
    fn blackhole_pair() -> (View, View, Outcome, Outcome) {
        let c = client();
        let mut k = nlb();
        k.http.host = HostHeader::DialedIp;
        k.path = "/healthz".into();
        let co = outcome_for(&c, false, Some(ErrorCode::HttpStatus), Some(503));
        let ko = outcome_for(&k, true, None, Some(200));
        (c, k, co, ko)
    }

    #[tokio::test(start_paused = true)]
    async fn a_blackhole_single_switch_that_reproduces_the_users_failure_plans_nothing() {
        let (c, k, co, ko) = blackhole_pair();
        // /cart is down whatever the Host: the path alone reproduces the users' 503.
        let backend = |v: View| async move {
            let status = if v.path == "/cart" { 503 } else { 200 };
            let ok = v.expect.status_ok(status);
            vec![outcome_for(&v, ok, (!ok).then_some(ErrorCode::HttpStatus), Some(status))]
        };
        let a = attribute_with(backend, &c, &k, &co, &ko, 100).await;
        assert!(a.single(Path, Side::Checker).is_some_and(|h| h.flipped && h.status == Some(503)));
        assert!(a.combinations.is_empty(), "{:?}", a.combinations);
    }

    #[tokio::test(start_paused = true)]
    async fn a_blackhole_needs_host_and_path_together() {
        let (c, k, co, ko) = blackhole_pair();
        let a = attribute_with(|v: View| async move { vec![host_routed(v)] }, &c, &k, &co, &ko, 100).await;
        // Alone: the users' Host still passes (200 on /healthz), their path gets 404 (default vhost).
        assert!(a.single(Host, Side::Checker).is_some_and(|h| h.ok && h.status == Some(200)));
        assert!(a.single(Path, Side::Checker).is_some_and(|h| !h.ok && h.status == Some(404)));
        let heal = a.compound().expect("host and path together reproduce the 503");
        assert_eq!(heal.attributes, vec![Host, Path]);
        assert_eq!((heal.ok, heal.status, &*heal.view), (false, Some(503), "nlb~host+path"));
        assert_eq!(a.combinations.iter().filter(|c| c.healed).count(), 1);
        // A combination that fails otherwise (404) does not heal: it is not the users' failure.
        assert!(a.combinations.iter().all(|c| c.healed == (c.status == Some(503))));
    }

    #[tokio::test(start_paused = true)]
    async fn a_blackhole_nothing_reproduces_is_no_cause() {
        let (c, k, co, ko) = blackhole_pair();
        // The users' 503 comes from something no switch reaches: every combination is tried
        // (they fail, with 404, but not like the users) and none heals.
        let backend = |v: View| async move {
            let mut o = host_routed(v);
            if o.status == Some(503) {
                o.status = Some(200);
                o.ok = true;
                o.error = None;
                o.phase = None;
            }
            vec![o]
        };
        let a = attribute_with(backend, &c, &k, &co, &ko, 100).await;
        assert!(!a.combinations.is_empty());
        assert!(a.compound().is_none());
        // With no hybrid left after the singles, nothing is combined.
        let singles = 2 * a.differences.len();
        let a =
            attribute_with(|v: View| async move { vec![host_routed(v)] }, &c, &k, &co, &ko, singles).await;
        assert!(a.combinations.is_empty() && a.compound().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn blackhole_hybrids_and_combinations_together_never_exceed_max_hybrids() {
        let (c, k, co, ko) = blackhole_pair();
        let calls = AtomicUsize::new(0);
        let backend = |v: View| {
            let calls = &calls;
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                vec![host_routed(v)]
            }
        };
        for cap in 0..24 {
            calls.store(0, Ordering::SeqCst);
            let a = attribute_with(backend, &c, &k, &co, &ko, cap).await;
            let probed = a.hybrids.len() + a.combinations.len();
            assert!(probed <= cap, "cap {cap}: {probed}");
            assert_eq!(calls.load(Ordering::SeqCst), probed, "cap {cap}: every probe is reported");
            if a.combinations.iter().any(|c| c.attributes == vec![Host, Path]) {
                assert_eq!(a.compound().map(|c| c.attributes.clone()), Some(vec![Host, Path]), "cap {cap}");
            } else {
                assert!(a.compound().is_none(), "cap {cap}");
            }
        }
        assert!(attribute_with(backend, &c, &k, &co, &ko, 23).await.compound().is_some());
    }
}
