//! The mismatch engine: pairing the client view with each checker view, the mismatch lifecycle,
//! attribution by hybrid probes, and the diagnosis of each disagreement.
//!
//! - [`mismatch`]: the record of one disagreement: direction, diagnosis, evidence, basis.
//! - [`lifecycle`]: per target, verdicts paired and held; mismatches open and resolve (pure).
//! - [`attribute`](mod@attribute): the request attributes two views can differ in, and which they do.
//! - [`hybrid`]: a view with one attribute switched to the other view's value, and what it showed.
//! - [`attribution`]: the hybrid plan (pure), running it and judging the flips, its budget.
//! - [`diagnosis`]: the codes of docs/errors.md and the order they are decided in; `diagnosis/evidence.rs`
//!   phrases them (pure).
//! - [`audit`]: the `allow_sources` audit, which needs no traffic (pure).
//! - [`one_shot`]: all of it for one round of `parallax probe` (hold time 0).

pub mod attribute;
pub mod attribution;
pub mod audit;
pub mod diagnosis;
pub mod hybrid;
pub mod lifecycle;
pub mod mismatch;

use std::future::Future;
use std::net::IpAddr;
use std::time::Duration;

use tokio::time::Instant;

pub use attribute::{differences, Attribute};
pub use attribution::{
    attribute, plan_hybrids, Attribution, AttributionBudget, AttributionSettings, CauseSearch, SingleSwitch,
};
pub use audit::{audit_allow_sources, SourceGap, SourceOrigin};
pub use diagnosis::{causes, diagnose, Case, Cause, Diagnosis, Finding};
pub use hybrid::{Combined, CombinedResult, Hybrid, HybridResult, Side};
pub use lifecycle::{
    probe_ok, worst_index, worst_outcome, DiffEvent, HoldTime, OpenMismatch, Pair, PairEvent, Resolution,
    TargetDiff,
};
pub use mismatch::{Basis, Direction, Mismatch};

use crate::config::{Target, View};
use crate::probe::{ErrorCode, Outcome, Prober};
use crate::verdict::Health;

/// One round's diff for `parallax probe`: hold time 0, so each view's first outcome decides its
/// verdict; a disagreeing pair is a mismatch, attributed (one run each, at most
/// `settings.max_hybrids` hybrids, unless attribution is off) and diagnosed; then the
/// `allow_sources` audit. `outcomes` may hold other targets' outcomes: only `target`'s are used.
///
/// With `each_address`, outcomes are paired per address (see [`pair_outcomes`]).
pub async fn one_shot(
    prober: &Prober,
    target: &Target,
    outcomes: &[Outcome],
    settings: &AttributionSettings,
) -> Vec<Mismatch> {
    one_shot_with(|view: View| async move { prober.probe(&view).await }, target, outcomes, settings).await
}

/// [`one_shot`] with the probe as a function (the seam for the pure tests).
pub(crate) async fn one_shot_with<F, Fut>(
    probe: F,
    target: &Target,
    outcomes: &[Outcome],
    settings: &AttributionSettings,
) -> Vec<Mismatch>
where
    F: Fn(View) -> Fut,
    Fut: Future<Output = Vec<Outcome>>,
{
    let of = |view: &View| -> Vec<&Outcome> {
        outcomes.iter().filter(|o| *o.target == *target.name && *o.view == *view.name).collect()
    };
    let client_outcomes = of(&target.client);
    let now = Instant::now();
    let mut mismatches = Vec::new();
    for checker in &target.checkers {
        for (co, ko) in pair_outcomes(&client_outcomes, &of(checker)) {
            let mut pair = Pair::new();
            let events =
                pair.update(Some(Health::from_ok(co.ok)), Some(Health::from_ok(ko.ok)), now, Duration::ZERO);
            let Some(PairEvent::Opened { direction, .. }) = events.first() else { continue };
            // A client that never got past DNS sent nothing a hybrid could vary.
            let attributable = co.error != Some(ErrorCode::DnsUnexpectedAddress);
            let attribution = if settings.enabled && attributable {
                Some(
                    attribution::attribute_with(
                        &probe,
                        &target.client,
                        checker,
                        co,
                        ko,
                        settings.max_hybrids,
                    )
                    .await,
                )
            } else {
                None
            };
            let case = Case {
                direction: *direction,
                client_view: &target.client,
                checker_view: checker,
                client: co,
                checker: ko,
                attribution: attribution.as_ref(),
                cluster: target.cluster.as_deref(),
            };
            mismatches.push(Mismatch::diagnose(&case));
        }
    }
    for gap in audit_allow_sources(target) {
        // The probes may already have found the same thing; one record is enough.
        let dup = mismatches.iter().any(|m| {
            m.checker_view == gap.checker
                && m.direction == Direction::FalseDrain
                && m.diagnosis == Diagnosis::CheckerSourceBlocked
        });
        if !dup {
            mismatches.push(Mismatch::from_audit(target, &gap));
        }
    }
    mismatches
}

/// Pairs one round's client outcomes with one checker's outcomes (several with `each_address`).
///
/// - One outcome on either side: every outcome of the other side pairs with it, so each client
///   address (one zone of a multi-zone LB) and each checker address (one backend) is judged on
///   its own.
/// - Several on both sides that share addresses (both views resolve the same name): outcomes
///   pair by dialed IP; addresses only one side reached are not paired.
/// - Several on both sides with disjoint addresses (LB frontends vs backends): each checker
///   outcome pairs with the client's [`worst_outcome`] (the first failure, else the first), so a
///   broken frontend still counts and the count of pairs stays bounded by the larger side.
pub fn pair_outcomes<'a>(client: &[&'a Outcome], checker: &[&'a Outcome]) -> Vec<(&'a Outcome, &'a Outcome)> {
    if client.is_empty() || checker.is_empty() {
        return Vec::new();
    }
    if client.len() == 1 || checker.len() == 1 {
        return client.iter().flat_map(|c| checker.iter().map(move |k| (*c, *k))).collect();
    }
    let ip = |o: &Outcome| -> Option<IpAddr> { attribution::dialed(o).map(|a| a.ip()) };
    let by_ip: Vec<_> = client
        .iter()
        .filter_map(|c| {
            let cip = ip(c)?;
            checker.iter().find(|k| ip(k) == Some(cip)).map(|k| (*c, *k))
        })
        .collect();
    if !by_ip.is_empty() {
        return by_ip;
    }
    let Some(&worst) = worst_outcome(client) else { return Vec::new() };
    checker.iter().map(|k| (worst, *k)).collect()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::config::{ProfileName, SourceBind};
    use crate::testkit::{
        at, failed, ok_outcome, shop_aws_nlb as nlb, shop_client as client, target, view_url,
    };

    /// Ports 30080 and 443 are TLS listeners, every other port is plain HTTP; every route answers.
    fn tls_port_backend(calls: &AtomicUsize) -> impl Fn(View) -> std::future::Ready<Vec<Outcome>> + '_ {
        move |v: View| {
            calls.fetch_add(1, Ordering::SeqCst);
            let tls_port = matches!(v.dial_endpoint().port, 30080 | 443);
            let o = match (tls_port, v.scheme.uses_tls()) {
                (true, false) => failed(&v, ErrorCode::HttpTlsRequired, None),
                (false, true) => failed(&v, ErrorCode::TlsPlaintextPeer, None),
                _ => ok_outcome(&v),
            };
            std::future::ready(vec![o])
        }
    }

    #[tokio::test(start_paused = true)]
    async fn one_shot_reports_the_design_example_as_json() {
        let t = target(client(), vec![nlb()]);
        let outcomes = vec![ok_outcome(&t.client), failed(&t.checkers[0], ErrorCode::HttpTlsRequired, None)];
        let calls = AtomicUsize::new(0);
        let settings = AttributionSettings::default();
        let m = one_shot_with(tls_port_backend(&calls), &t, &outcomes, &settings).await;
        assert_eq!(m.len(), 1, "{m:?}");
        let json = serde_json::to_value(&m[0]).unwrap();
        assert_eq!(json["target"], "shop");
        assert_eq!(json["client_view"], "client");
        assert_eq!(json["checker_view"], "nlb");
        assert_eq!(json["direction"], "false_drain");
        assert_eq!(json["diagnosis"], "checker_protocol_mismatch");
        assert_eq!(json["flipped"], serde_json::json!(["tls"]));
        assert_eq!(
            json["evidence"],
            "checker got http_tls_required on 10.0.0.5:30080; with tls on it succeeds"
        );
        assert_eq!(json["basis"], "probes");
        assert_eq!(json["checker_address"], "10.0.0.5:30080");
        assert!(calls.load(Ordering::SeqCst) <= settings.max_hybrids);
        assert_eq!(calls.load(Ordering::SeqCst), m[0].attribution.as_ref().unwrap().hybrids.len());
    }

    #[tokio::test(start_paused = true)]
    async fn agreeing_views_produce_nothing_and_probe_nothing() {
        let t = target(client(), vec![nlb()]);
        let calls = AtomicUsize::new(0);
        let settings = AttributionSettings::default();
        let both_up = vec![ok_outcome(&t.client), ok_outcome(&t.checkers[0])];
        assert!(one_shot_with(tls_port_backend(&calls), &t, &both_up, &settings).await.is_empty());
        let both_down = vec![
            failed(&t.client, ErrorCode::ConnectRefused, None),
            failed(&t.checkers[0], ErrorCode::ConnectRefused, None),
        ];
        assert!(one_shot_with(tls_port_backend(&calls), &t, &both_down, &settings).await.is_empty());
        assert!(one_shot_with(tls_port_backend(&calls), &t, &[], &settings).await.is_empty());
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn attribution_off_probes_nothing_and_still_diagnoses() {
        let t = target(client(), vec![nlb()]);
        let outcomes = vec![ok_outcome(&t.client), failed(&t.checkers[0], ErrorCode::HttpTlsRequired, None)];
        let calls = AtomicUsize::new(0);
        let settings = AttributionSettings { enabled: false, ..AttributionSettings::default() };
        let m = one_shot_with(tls_port_backend(&calls), &t, &outcomes, &settings).await;
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        assert_eq!(m[0].diagnosis, Diagnosis::CheckerProtocolMismatch);
        assert!(m[0].flipped.is_empty());
        assert!(m[0].attribution.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn the_cap_bounds_hybrids_per_mismatch() {
        let mut k = nlb();
        k.http.user_agent = Some("ELB-HealthChecker/2.0".into());
        let t = target(client(), vec![k]);
        let outcomes = vec![ok_outcome(&t.client), failed(&t.checkers[0], ErrorCode::HttpTlsRequired, None)];
        for cap in [0, 1, 3, 12] {
            let calls = AtomicUsize::new(0);
            let settings = AttributionSettings { max_hybrids: cap, ..AttributionSettings::default() };
            let m = one_shot_with(tls_port_backend(&calls), &t, &outcomes, &settings).await;
            let n = calls.load(Ordering::SeqCst);
            assert!(n <= cap, "cap {cap}: {n}");
            assert_eq!(n, cap.min(2 * m[0].attribution.as_ref().unwrap().differences.len()));
            // With the tls hybrid tried, it is confirmed; without, the error code still decides.
            assert_eq!(m[0].diagnosis, Diagnosis::CheckerProtocolMismatch, "cap {cap}");
            assert_eq!(m[0].flipped.is_empty(), cap == 0, "cap {cap}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn dns_wrong_address_skips_attribution() {
        let mut c = client();
        c.expect_addresses = vec!["203.0.113.10".parse().unwrap()];
        let t = target(c, vec![nlb()]);
        let mut co = failed(&t.client, ErrorCode::DnsUnexpectedAddress, None);
        co.resolved = vec!["198.51.100.9".parse().unwrap()];
        let outcomes = vec![co, ok_outcome(&t.checkers[0])];
        let calls = AtomicUsize::new(0);
        let m = one_shot_with(tls_port_backend(&calls), &t, &outcomes, &AttributionSettings::default()).await;
        assert_eq!(m.len(), 1);
        assert_eq!((m[0].direction, m[0].diagnosis), (Direction::Blackhole, Diagnosis::DnsWrongAddress));
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        assert!(m[0].client_address.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn allow_sources_audit_opens_false_drain_while_probes_pass() {
        let mut gcp = view_url("shop", "gcp", "http://10.0.0.5:8080/healthz");
        gcp.profile = Some(ProfileName::Gcp);
        let mut t = target(client(), vec![gcp]);
        t.allow_sources = vec!["198.51.100.0/24".parse().unwrap()];
        let outcomes = vec![ok_outcome(&t.client), ok_outcome(&t.checkers[0])];
        let calls = AtomicUsize::new(0);
        let m = one_shot_with(tls_port_backend(&calls), &t, &outcomes, &AttributionSettings::default()).await;
        assert_eq!(m.len(), 1);
        let json = serde_json::to_value(&m[0]).unwrap();
        assert_eq!(json["direction"], "false_drain");
        assert_eq!(json["diagnosis"], "checker_source_blocked");
        assert_eq!(json["basis"], "audit");
        assert_eq!(json["flipped"], serde_json::json!([]));
        assert!(json["evidence"].as_str().unwrap().contains("35.191.0.0/16"));
        assert_eq!(calls.load(Ordering::SeqCst), 0, "an audit needs no traffic");
    }

    #[tokio::test(start_paused = true)]
    async fn audit_does_not_duplicate_a_probed_source_block() {
        let mut k = view_url("shop", "nlb", "http://shop.example.com/cart");
        let ip = "127.0.0.66".parse().unwrap();
        k.source = Some(SourceBind { requested: crate::config::Source::Addr(ip), addr: ip });
        let mut c = view_url("shop", "client", "http://shop.example.com/cart");
        c.expect.status = vec![200..=399];
        let mut t = target(c, vec![k]);
        t.allow_sources = vec!["10.0.0.0/8".parse().unwrap()];
        let outcomes = vec![ok_outcome(&t.client), failed(&t.checkers[0], ErrorCode::ConnectTimeout, None)];
        let backend = |v: View| async move {
            if v.source.is_some() {
                vec![failed(&v, ErrorCode::ConnectTimeout, None)]
            } else {
                vec![ok_outcome(&v)]
            }
        };
        let m = one_shot_with(backend, &t, &outcomes, &AttributionSettings::default()).await;
        assert_eq!(m.len(), 1, "{m:?}");
        assert_eq!((m[0].diagnosis, m[0].basis), (Diagnosis::CheckerSourceBlocked, Basis::Probes));
        assert_eq!(m[0].flipped, vec![Attribute::Source]);
    }

    #[tokio::test(start_paused = true)]
    async fn only_this_targets_outcomes_count() {
        let t = target(client(), vec![nlb()]);
        let other = target(view_url("other", "client", "https://other.example.com/"), vec![]);
        let mut stray = failed(&t.checkers[0], ErrorCode::HttpTlsRequired, None);
        stray.target = other.name.clone();
        let outcomes = vec![ok_outcome(&t.client), stray];
        let calls = AtomicUsize::new(0);
        assert!(one_shot_with(tls_port_backend(&calls), &t, &outcomes, &AttributionSettings::default())
            .await
            .is_empty());
    }

    #[test]
    fn pairing_with_each_address() {
        let c = client();
        let k = nlb();
        let c1 = at(ok_outcome(&c), "203.0.113.10:443");
        let c2 = at(failed(&c, ErrorCode::ConnectTimeout, None), "203.0.113.11:443");
        let c3 = at(ok_outcome(&c), "203.0.113.12:443");
        let k1 = at(ok_outcome(&k), "10.0.0.5:30080");
        let k2 = at(failed(&k, ErrorCode::HttpStatus, Some(503)), "10.0.0.6:30080");
        let addr = |pairs: Vec<(&Outcome, &Outcome)>| -> Vec<(String, String)> {
            pairs
                .into_iter()
                .map(|(a, b)| {
                    (a.request.address.unwrap().to_string(), b.request.address.unwrap().to_string())
                })
                .collect()
        };
        // Several client addresses, one checker: each address on its own.
        assert_eq!(
            addr(pair_outcomes(&[&c1, &c2, &c3], &[&k1])),
            vec![
                ("203.0.113.10:443".into(), "10.0.0.5:30080".into()),
                ("203.0.113.11:443".into(), "10.0.0.5:30080".into()),
                ("203.0.113.12:443".into(), "10.0.0.5:30080".into()),
            ]
        );
        // One client, several backends: each backend on its own.
        assert_eq!(addr(pair_outcomes(&[&c1], &[&k1, &k2])).len(), 2);
        // Disjoint on both sides: the client's worst outcome against each backend.
        assert_eq!(
            addr(pair_outcomes(&[&c1, &c2, &c3], &[&k1, &k2])),
            vec![
                ("203.0.113.11:443".into(), "10.0.0.5:30080".into()),
                ("203.0.113.11:443".into(), "10.0.0.6:30080".into()),
            ]
        );
        // Shared addresses: by IP, unmatched left out.
        let s1 = at(ok_outcome(&k), "203.0.113.10:443");
        let s2 = at(ok_outcome(&k), "203.0.113.11:443");
        let s4 = at(ok_outcome(&k), "203.0.113.99:443");
        assert_eq!(
            addr(pair_outcomes(&[&c1, &c2, &c3], &[&s4, &s2, &s1])),
            vec![
                ("203.0.113.10:443".into(), "203.0.113.10:443".into()),
                ("203.0.113.11:443".into(), "203.0.113.11:443".into()),
            ]
        );
        assert!(pair_outcomes(&[], &[&k1]).is_empty());
        assert!(pair_outcomes(&[&c1], &[]).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn each_address_one_broken_zone_is_its_own_mismatch() {
        let mut c = client();
        c.each_address = true;
        let t = target(c, vec![nlb()]);
        let outcomes = vec![
            at(ok_outcome(&t.client), "203.0.113.10:443"),
            at(failed(&t.client, ErrorCode::ConnectTimeout, None), "203.0.113.11:443"),
            at(ok_outcome(&t.checkers[0]), "10.0.0.5:30080"),
        ];
        let backend = |v: View| async move {
            // The whole zone is down, whatever the port.
            let broken = v.dial_endpoint().host.to_string() == "203.0.113.11";
            vec![if broken { failed(&v, ErrorCode::ConnectTimeout, None) } else { ok_outcome(&v) }]
        };
        let m = one_shot_with(backend, &t, &outcomes, &AttributionSettings::default()).await;
        assert_eq!(m.len(), 1, "{m:?}");
        assert_eq!(m[0].direction, Direction::Blackhole);
        assert_eq!(m[0].client_address, Some("203.0.113.11:443".parse().unwrap()));
        // The hybrids went to the broken zone's address, not to whatever DNS says next.
        assert_eq!(m[0].flipped, vec![Attribute::Address]);
        assert_eq!(m[0].diagnosis, Diagnosis::NodePortVsProxy);
        assert!(m[0].evidence.contains("203.0.113.11:443"), "{}", m[0].evidence);
    }

    #[tokio::test(start_paused = true)]
    async fn secrets_never_reach_the_record() {
        let mut c = client();
        c.http.headers = vec![crate::testkit::header("authorization", "Bearer s3cret-token", true)];
        let mut k = view_url("shop", "alb", "https://shop.example.com/cart");
        k.http.headers = vec![crate::testkit::header("cookie", "session=s3cret-cookie", true)];
        let t = target(c, vec![k]);
        let outcomes = vec![ok_outcome(&t.client), failed(&t.checkers[0], ErrorCode::HttpStatus, Some(401))];
        let backend = |v: View| async move {
            let auth = v.http.headers.iter().any(|(n, _)| n == "authorization");
            vec![if auth { ok_outcome(&v) } else { failed(&v, ErrorCode::HttpStatus, Some(401)) }]
        };
        let m = one_shot_with(backend, &t, &outcomes, &AttributionSettings::default()).await;
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].diagnosis, Diagnosis::AuthRequired, "{}", m[0].evidence);
        let json = serde_json::to_string(&m[0]).unwrap();
        let debug = format!("{:?}", m[0]);
        for text in [&json, &debug, &m[0].evidence] {
            assert!(!text.contains("s3cret"), "{text}");
        }
        assert!(m[0].evidence.contains("authorization"), "names are fine: {}", m[0].evidence);
    }
}
