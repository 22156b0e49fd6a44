//! The diagnoses joining outcomes with `[target.cluster]` (`cluster.rs`): each fires only with
//! both halves, names both in its evidence, and leaves the wire's own rules alone otherwise.

use super::*;
use crate::config::{ClusterFacts, Condition, ConditionKind, ProfileName, TlsEntry};
use crate::testkit::{failed, ok_outcome, view_url};

/// ETP Local Service shop/web on node-a, healthCheckNodePort 32456.
fn facts(local_ready: u32, terminating: u32) -> ClusterFacts {
    ClusterFacts {
        object: "Service shop/web".to_owned(),
        node: Some("node-a".to_owned()),
        backends: vec!["shop/web".to_owned()],
        traffic_policy: Some("Local".to_owned()),
        health_check_node_port: Some(32456),
        ready_endpoints: Some(local_ready + 2),
        local_ready_endpoints: Some(local_ready),
        local_terminating_endpoints: Some(terminating),
        endpoint_nodes: vec!["node-b: 2".to_owned()],
        ..ClusterFacts::default()
    }
}

fn kube_proxy() -> View {
    let mut kp = view_url("shop", "kube-proxy", "http://10.0.0.5:32456/healthz");
    kp.profile = Some(ProfileName::KubeProxy);
    kp.expect.kube_proxy_endpoints = true;
    kp
}

fn diagnose_with(
    direction: Direction,
    c: &View,
    k: &View,
    co: &Outcome,
    ko: &Outcome,
    facts: Option<&ClusterFacts>,
) -> Finding {
    diagnose(&Case {
        direction,
        client_view: c,
        checker_view: k,
        client: co,
        checker: ko,
        attribution: None,
        cluster: facts,
    })
}

#[test]
fn kube_proxy_endpoints_disagree_when_its_count_is_not_the_slices() {
    let c = view_url("shop", "client", "http://10.0.0.5:30080/");
    let kp = kube_proxy();
    let co = ok_outcome(&c);
    let mut ko = failed(&kp, ErrorCode::NoLocalEndpoints, Some(503));
    ko.local_endpoints = Some(0);
    let two_here = facts(2, 0);
    let f = diagnose_with(Direction::FalseDrain, &c, &kp, &co, &ko, Some(&two_here));
    assert_eq!(f.diagnosis, Diagnosis::KubeProxyEndpointsDisagree, "{}", f.evidence);
    for part in [
        "localEndpoints=0",
        "Service shop/web",
        "list 2 ready endpoint(s) with nodeName node-a",
        "--hostname-override",
    ] {
        assert!(f.evidence.contains(part), "{part}: {}", f.evidence);
    }
    // The slices agree (none here): kube-proxy is right, the wire's rule names it.
    let none_here = facts(0, 0);
    let f = diagnose_with(Direction::FalseDrain, &c, &kp, &co, &ko, Some(&none_here));
    assert_eq!(f.diagnosis, Diagnosis::NoLocalEndpoints, "{}", f.evidence);
    assert!(f.evidence.contains("place its ready endpoints on: node-b: 2 (0 on node-a)"), "{}", f.evidence);
    // Without the cluster's facts: as before.
    let f = diagnose_with(Direction::FalseDrain, &c, &kp, &co, &ko, None);
    assert_eq!(f.diagnosis, Diagnosis::NoLocalEndpoints, "{}", f.evidence);
}

#[test]
fn draining_endpoints_both_ways_and_only_with_terminating_pods_and_none_ready() {
    let c = view_url("shop", "client", "http://10.0.0.5:30080/");
    let kp = kube_proxy();
    let co = ok_outcome(&c);
    let mut ko = failed(&kp, ErrorCode::NoLocalEndpoints, Some(503));
    ko.local_endpoints = Some(0);
    let draining = facts(0, 1);
    let f = diagnose_with(Direction::FalseDrain, &c, &kp, &co, &ko, Some(&draining));
    assert_eq!(f.diagnosis, Diagnosis::DrainingEndpoints, "{}", f.evidence);
    assert!(
        f.evidence.contains("1 terminating endpoint(s) on node-a") && f.evidence.contains("expected"),
        "{}",
        f.evidence
    );
    // The check still passes while users fail: a health endpoint that ignores SIGTERM.
    let co = failed(&c, ErrorCode::HttpStatus, Some(502));
    let ko = ok_outcome(&kp);
    let f = diagnose_with(Direction::Blackhole, &c, &kp, &co, &ko, Some(&draining));
    assert_eq!(f.diagnosis, Diagnosis::DrainingEndpoints, "{}", f.evidence);
    assert!(f.evidence.contains("still passes") && f.evidence.contains("SIGTERM"), "{}", f.evidence);
    // A ready endpoint left here: terminating ones do not explain the failure.
    let half = facts(1, 1);
    let f = diagnose_with(Direction::Blackhole, &c, &kp, &co, &ko, Some(&half));
    assert_ne!(f.diagnosis, Diagnosis::DrainingEndpoints, "{}", f.evidence);
}

#[test]
fn health_port_not_served_is_the_etp_local_health_port_refusing() {
    let c = view_url("shop", "client", "http://10.0.0.5:30080/");
    let mut nlb = view_url("shop", "aws-nlb", "http://10.0.0.5:32456/healthz");
    nlb.profile = Some(ProfileName::AwsNlb);
    let co = ok_outcome(&c);
    let ko = failed(&nlb, ErrorCode::ConnectRefused, None);
    let local = facts(1, 0);
    let f = diagnose_with(Direction::FalseDrain, &c, &nlb, &co, &ko, Some(&local));
    assert_eq!(f.diagnosis, Diagnosis::HealthPortNotServed, "{}", f.evidence);
    assert!(
        f.evidence.contains("healthCheckNodePort 32456 on node-a gets connect_refused"),
        "{}",
        f.evidence
    );
    assert!(f.evidence.contains("Service shop/web is externalTrafficPolicy Local"), "{}", f.evidence);
    // Another port refusing (the traffic port): not the health port.
    let other = view_url("shop", "aws-nlb", "tcp://10.0.0.5:30080");
    let ko = failed(&other, ErrorCode::ConnectRefused, None);
    let f = diagnose_with(Direction::FalseDrain, &c, &other, &co, &ko, Some(&local));
    assert_ne!(f.diagnosis, Diagnosis::HealthPortNotServed, "{}", f.evidence);
    // ETP Cluster: there is no health port to serve.
    let cluster = ClusterFacts { traffic_policy: Some("Cluster".to_owned()), ..facts(1, 0) };
    let ko = failed(&nlb, ErrorCode::ConnectRefused, None);
    let f = diagnose_with(Direction::FalseDrain, &c, &nlb, &co, &ko, Some(&cluster));
    assert_ne!(f.diagnosis, Diagnosis::HealthPortNotServed, "{}", f.evidence);
}

fn with_condition(kind: ConditionKind, reason: Option<&str>) -> ClusterFacts {
    ClusterFacts {
        object: "HTTPRoute shop/web".to_owned(),
        conditions: vec![Condition {
            kind,
            object: "HTTPRoute shop/web".to_owned(),
            target: Some("route.shop.web".into()),
            reason: reason.map(str::to_owned),
            message: "what the API says".to_owned(),
        }],
        ..ClusterFacts::default()
    }
}

#[test]
fn a_condition_explains_the_users_failure_it_causes_and_no_other() {
    let c = view_url("route.shop.web", "client", "https://shop.example.com/");
    let cases = [
        (
            ConditionKind::RouteNotAccepted,
            Some("NotAllowedByListeners"),
            failed(&c, ErrorCode::HttpStatus, Some(404)),
            Diagnosis::RouteNotAccepted,
        ),
        (
            ConditionKind::BackendRefUnresolved,
            Some("BackendNotFound"),
            failed(&c, ErrorCode::HttpStatus, Some(500)),
            Diagnosis::BackendRefUnresolved,
        ),
        (
            ConditionKind::GatewayNotProgrammed,
            Some("Invalid"),
            failed(&c, ErrorCode::ConnectRefused, None),
            Diagnosis::GatewayNotProgrammed,
        ),
        (
            ConditionKind::NoReadyEndpoints,
            None,
            failed(&c, ErrorCode::HttpStatus, Some(503)),
            Diagnosis::NoReadyEndpoints,
        ),
        (
            ConditionKind::IngressClassUnclaimed,
            None,
            failed(&c, ErrorCode::HttpStatus, Some(404)),
            Diagnosis::IngressClassUnclaimed,
        ),
        (
            ConditionKind::VipWithoutHealthCheck,
            None,
            failed(&c, ErrorCode::ConnectRefused, None),
            Diagnosis::VipWithoutHealthCheck,
        ),
    ];
    for (kind, reason, outcome, diagnosis) in cases {
        let facts = with_condition(kind, reason);
        let f = cluster::explain_failure(&c, &outcome, &facts)
            .unwrap_or_else(|| panic!("{kind} explains {outcome:?}"));
        assert_eq!(f.diagnosis, diagnosis);
        assert!(
            f.evidence.contains("HTTPRoute shop/web") && f.evidence.contains("what the API says"),
            "{}",
            f.evidence
        );
        if let Some(r) = reason {
            assert!(f.evidence.contains(&format!("reason {r}")), "{}", f.evidence);
        }
        // A success is not explained; a certificate failure is not what these conditions cause.
        assert_eq!(cluster::explain_failure(&c, &ok_outcome(&c), &facts), None);
        if kind != ConditionKind::GatewayNotProgrammed {
            let cert = failed(&c, ErrorCode::TlsCertExpired, None);
            assert_eq!(cluster::explain_failure(&c, &cert, &facts), None, "{kind}");
        }
    }
    // In a blackhole, the condition names the diagnosis.
    let mut checker = view_url("route.shop.web", "aws-alb", "http://10.0.0.5:30080/");
    checker.profile = Some(ProfileName::AwsAlb);
    let facts = with_condition(ConditionKind::BackendRefUnresolved, Some("RefNotPermitted"));
    let co = failed(&c, ErrorCode::HttpStatus, Some(500));
    let f = diagnose_with(Direction::Blackhole, &c, &checker, &co, &ok_outcome(&checker), Some(&facts));
    assert_eq!(f.diagnosis, Diagnosis::BackendRefUnresolved, "{}", f.evidence);
}

#[test]
fn certificate_diagnoses_name_the_tls_entry_and_its_secret() {
    let facts = ClusterFacts {
        object: "Ingress shop/web".to_owned(),
        tls: vec![TlsEntry {
            source: "Ingress shop/web tls[0]".to_owned(),
            hosts: vec!["*.example.com".to_owned()],
            secret: "shop/wildcard-tls".to_owned(),
        }],
        ..ClusterFacts::default()
    };
    let c = view_url("shop", "client", "https://shop.example.com/");
    let k = view_url("shop", "aws-alb", "http://10.0.0.5:30080/");
    let co = failed(&c, ErrorCode::TlsCertExpired, None);
    let ko = ok_outcome(&k);
    let case = Case {
        direction: Direction::Blackhole,
        client_view: &c,
        checker_view: &k,
        client: &co,
        checker: &ko,
        attribution: None,
        cluster: Some(&facts),
    };
    let tail = cluster::context(&case, Diagnosis::CertificateRejected).unwrap_or_default();
    assert!(
        tail.contains("Ingress shop/web tls[0] names Secret shop/wildcard-tls for *.example.com"),
        "{tail}"
    );
    let other = view_url("shop", "client", "https://api.other.org/");
    let case = Case { client_view: &other, ..case };
    let tail = cluster::context(&case, Diagnosis::DefaultCertificateServed).unwrap_or_default();
    assert!(
        tail.starts_with("no TLS entry of the routes to Ingress shop/web covers api.other.org"),
        "{tail}"
    );
}

#[test]
fn host_route_mismatch_says_whether_a_route_claims_the_checkers_host() {
    let facts = ClusterFacts {
        object: "Service shop/web".to_owned(),
        route_hosts: vec!["shop.example.com".to_owned()],
        ..ClusterFacts::default()
    };
    let c = view_url("shop", "client", "https://shop.example.com/");
    let k = view_url("shop", "gcp", "http://10.0.0.5:30080/");
    let (co, ko) = (ok_outcome(&c), failed(&k, ErrorCode::HttpStatus, Some(404)));
    let case = Case {
        direction: Direction::FalseDrain,
        client_view: &c,
        checker_view: &k,
        client: &co,
        checker: &ko,
        attribution: None,
        cluster: Some(&facts),
    };
    let tail = cluster::context(&case, Diagnosis::HostRouteMismatch).unwrap_or_default();
    assert!(tail.starts_with("no selected route claims the checker's Host 10.0.0.5"), "{tail}");
    assert!(tail.contains("claim shop.example.com"), "{tail}");
}
