//! The decision order and the evidence phrasing, on backend models: table-driven scenarios by
//! diagnosis family, then one test per rule or field failure.

use std::collections::BTreeSet;

use super::evidence::unswitched_differences;
use super::*;
use crate::config::{HostHeader, ProxyHeader, ProxyVersion, Source, SourceBind};
use crate::diff::attribute::{effective_host, effective_sni};
use crate::diff::attribution::{explain_address_by_tls, pin, plan_hybrids};
use crate::diff::hybrid::Hybrid;
use crate::testkit::{at, failed, header, ok_outcome, outcome_for, view_url};

/// The client of every case: `https://shop.example.com/cart`, token in `authorization`.
fn client() -> View {
    let mut v = view_url("shop", "client", "https://shop.example.com/cart");
    v.http.headers = vec![header("authorization", "Bearer s3cret-token", true)];
    v
}

fn nlb() -> View {
    let mut v = view_url("shop", "nlb", "http://10.0.0.5:30080/healthz");
    v.profile = Some(ProfileName::AwsNlb);
    v.http.host = HostHeader::DialedAddress;
    v.http.user_agent = Some("ELB-HealthChecker/2.0".into());
    v
}

/// Runs the pure planner and a backend model over the pair, as attribution would.
fn attribution(
    client: &View,
    checker: &View,
    co: &Outcome,
    ko: &Outcome,
    model: &dyn Fn(&View) -> Outcome,
) -> Attribution {
    let client = pin(client, co);
    let checker = pin(checker, ko);
    let plan: Vec<Hybrid> = plan_hybrids(&client, &checker, 100);
    let mut hybrids: Vec<HybridResult> = plan
        .into_iter()
        .map(|h| {
            let o = model(&h.view);
            let base_ok = h.switched.pick(co, ko).ok;
            HybridResult::new(h, Some(o), base_ok)
        })
        .collect();
    explain_address_by_tls(&mut hybrids, &client, &checker);
    Attribution { differences: differences(&client, &checker), hybrids, not_tried: 0, combinations: vec![] }
}

struct Scenario {
    name: &'static str,
    client: View,
    checker: View,
    /// The server: what any view gets.
    model: Box<dyn Fn(&View) -> Outcome>,
    direction: Direction,
    diagnosis: Diagnosis,
    flipped: Vec<Attribute>,
    /// Substrings the evidence must contain.
    evidence: Vec<&'static str>,
}

fn ok_if(cond: bool, v: &View, error: ErrorCode, status: Option<u16>) -> Outcome {
    if cond {
        ok_outcome(v)
    } else {
        failed(v, error, status)
    }
}

fn has_auth(v: &View) -> bool {
    v.http.headers.iter().any(|(n, _)| n == "authorization")
}

/// Runs each scenario's views and hybrids against its model, diagnoses the pair and checks the
/// direction, diagnosis, flips and evidence; returns the diagnoses seen.
fn check(scenarios: Vec<Scenario>) -> BTreeSet<Diagnosis> {
    let mut seen = BTreeSet::new();
    for s in scenarios {
        let co = (s.model)(&s.client);
        let ko = (s.model)(&s.checker);
        let direction = match (co.ok, ko.ok) {
            (false, true) => Direction::Blackhole,
            (true, false) => Direction::FalseDrain,
            other => panic!("{}: views agree {other:?}", s.name),
        };
        assert_eq!(direction, s.direction, "{}", s.name);
        let a = attribution(&s.client, &s.checker, &co, &ko, &*s.model);
        let case = Case {
            direction,
            client_view: &s.client,
            checker_view: &s.checker,
            client: &co,
            checker: &ko,
            attribution: Some(&a),
            cluster: None,
        };
        let f = diagnose(&case);
        assert_eq!(f.diagnosis, s.diagnosis, "{}: {}", s.name, f.evidence);
        assert_eq!(a.flipped(), s.flipped, "{}: {}", s.name, f.evidence);
        for needle in &s.evidence {
            assert!(f.evidence.contains(needle), "{}: {:?} not in {:?}", s.name, needle, f.evidence);
        }
        assert!(!f.evidence.contains("s3cret"), "{}: secret in evidence", s.name);
        assert!(!f.evidence.contains('\n'), "{}: one line", s.name);
        seen.insert(f.diagnosis);
    }
    seen
}

/// The checker speaks the wrong protocol: `checker_protocol_mismatch`, `proxy_protocol_mismatch`.
fn protocol_scenarios() -> Vec<Scenario> {
    vec![
        // the README's example: plain HTTP to the TLS port 30080.
        Scenario {
            name: "plain_http_to_tls_listener_is_checker_protocol_mismatch",
            client: client(),
            checker: nlb(),
            model: Box::new(|v| ok_if(v.scheme.uses_tls(), v, ErrorCode::HttpTlsRequired, None)),
            direction: Direction::FalseDrain,
            diagnosis: Diagnosis::CheckerProtocolMismatch,
            flipped: vec![Attribute::Tls],
            evidence: vec!["checker got http_tls_required on 10.0.0.5:30080; with tls on it succeeds"],
        },
        // A TLS checker against a plain listener.
        Scenario {
            name: "tls_to_plain_listener_is_checker_protocol_mismatch",
            client: view_url("shop", "client", "http://shop.example.com/"),
            checker: {
                let mut v = view_url("shop", "alb", "https://10.0.0.5:8080/");
                v.tls.verify = false;
                v
            },
            model: Box::new(|v| ok_if(!v.scheme.uses_tls(), v, ErrorCode::TlsPlaintextPeer, None)),
            direction: Direction::FalseDrain,
            diagnosis: Diagnosis::CheckerProtocolMismatch,
            flipped: vec![Attribute::Tls],
            evidence: vec!["tls_plaintext_peer", "with tls off it succeeds"],
        },
        // HAProxy's OPTIONS is refused with 405.
        Scenario {
            name: "options_refused_is_checker_protocol_mismatch",
            client: view_url("shop", "client", "http://shop.example.com/"),
            checker: {
                let mut v = view_url("shop", "haproxy", "http://shop.example.com/");
                v.http.method = http::Method::OPTIONS;
                v
            },
            model: Box::new(|v| {
                ok_if(v.http.method == http::Method::GET, v, ErrorCode::HttpStatus, Some(405))
            }),
            direction: Direction::FalseDrain,
            diagnosis: Diagnosis::CheckerProtocolMismatch,
            flipped: vec![Attribute::Method],
            evidence: vec!["checker got 405", "with method GET it succeeds"],
        },
        // An expired certificate the checker does not verify (issue 12: the certificate is what
        // is wrong, not the checker's protocol).
        Scenario {
            name: "unverified_expired_certificate_is_certificate_rejected",
            client: view_url("shop", "client", "https://shop.example.com/"),
            checker: {
                let mut v = view_url("shop", "alb", "https://shop.example.com/");
                v.tls.verify = false;
                v
            },
            model: Box::new(|v| ok_if(!v.tls.verify, v, ErrorCode::TlsCertExpired, None)),
            direction: Direction::Blackhole,
            diagnosis: Diagnosis::CertificateRejected,
            flipped: vec![Attribute::Verify],
            evidence: vec![
                "client got tls_cert_expired",
                "with certificate verification on the checker fails too",
                "; renew the certificate",
                "make the check verify the certificate",
            ],
        },
        // The health port does not parse PROXY headers; the NLB sends a PPv2 LOCAL one.
        Scenario {
            name: "proxy_header_to_plain_listener_is_proxy_protocol_mismatch",
            client: view_url("shop", "client", "http://shop.example.com:10254/healthz"),
            checker: {
                let mut v = view_url("shop", "nlb", "http://shop.example.com:10254/healthz");
                v.proxy_protocol = Some(ProxyHeader { version: ProxyVersion::V2, local: true });
                v
            },
            model: Box::new(|v| ok_if(v.proxy_protocol.is_none(), v, ErrorCode::HttpMalformed, None)),
            direction: Direction::FalseDrain,
            diagnosis: Diagnosis::ProxyProtocolMismatch,
            flipped: vec![Attribute::ProxyProtocol],
            evidence: vec!["http_malformed", "with no PROXY header it succeeds"],
        },
        // The same, where the listener answers the header's bytes with 400 (nginx) and the
        // checker's IP Host would land on the default backend's 404 as well: the client taking
        // the checker's Host fails too, but only the PROXY header explains the checker's 400.
        Scenario {
            name: "proxy_header_answered_400_is_proxy_protocol_mismatch_not_host",
            client: view_url("shop", "client", "http://shop.example.com/cart"),
            checker: {
                let mut v = view_url("shop", "nlb", "http://10.0.0.5/healthz");
                v.http.host = HostHeader::DialedAddress;
                v.proxy_protocol = Some(ProxyHeader { version: ProxyVersion::V2, local: true });
                v
            },
            model: Box::new(|v| {
                if v.proxy_protocol.is_some() {
                    failed(v, ErrorCode::HttpStatus, Some(400))
                } else {
                    let routed = effective_host(v).as_deref() == Some("shop.example.com");
                    ok_if(routed || v.path == "/healthz", v, ErrorCode::HttpStatus, Some(404))
                }
            }),
            direction: Direction::FalseDrain,
            diagnosis: Diagnosis::ProxyProtocolMismatch,
            flipped: vec![Attribute::ProxyProtocol, Attribute::Host],
            evidence: vec!["checker got 400", "with no PROXY header it succeeds"],
        },
    ]
}

#[test]
fn the_checker_speaking_the_wrong_protocol_is_diagnosed() {
    check(protocol_scenarios());
}

/// The request selects another route or answer: `shallow_health_path`, `auth_required`,
/// `sni_mismatch`, `host_route_mismatch`, `user_agent_dependent`.
fn route_scenarios() -> Vec<Scenario> {
    vec![
        // Health path 200 while the user route is 503.
        Scenario {
            name: "health_path_passes_while_route_fails_is_shallow_health_path",
            client: client(),
            checker: {
                let mut v = nlb();
                v.scheme = crate::config::Scheme::Https;
                v.tls.verify = false;
                v.tls.sni = crate::config::Sni::None;
                v
        },
            model: Box::new(|v| ok_if(v.path == "/healthz", v, ErrorCode::HttpStatus, Some(503))),
            direction: Direction::Blackhole,
            diagnosis: Diagnosis::ShallowHealthPath,
            flipped: vec![Attribute::Path],
            evidence: vec![
                "client got 503 on 203.0.113.10:443 while the checker passes on 10.0.0.5:30080 with path /healthz; \
                 with path /cart the checker fails too (503)",
            ],
        },
        // The route needs a bearer token; the checker sends none.
        Scenario {
            name: "health_path_behind_auth_is_auth_required",
            client: client(),
            checker: {
                let mut v = view_url("shop", "alb", "https://10.0.0.5:8443/cart");
                v.tls.verify = false;
                v.http.host = HostHeader::Value("shop.example.com".into());
                v.tls.sni = crate::config::Sni::Name("shop.example.com".into());
                v.http.user_agent = Some("ELB-HealthChecker/2.0".into());
                v
        },
            model: Box::new(|v| ok_if(has_auth(v), v, ErrorCode::HttpStatus, Some(401))),
            direction: Direction::FalseDrain,
            diagnosis: Diagnosis::AuthRequired,
            flipped: vec![Attribute::Headers],
            evidence: vec!["checker got 401 on 10.0.0.5:8443 with no extra headers; with the headers [authorization] it succeeds"],
        },
        // Per-SNI certificate: without SNI the default certificate does not match.
        Scenario {
            name: "no_sni_gets_default_certificate_is_sni_mismatch",
            client: client(),
            checker: {
                let mut v = view_url("shop", "alb", "https://10.0.0.5:8443/cart");
                v.tls.sni = crate::config::Sni::None;
                v.http.host = HostHeader::Value("shop.example.com".into());
                v.http.headers = client().http.headers;
                v
        },
            model: Box::new(|v| {
                ok_if(
                    effective_sni(v).as_deref() == Some("shop.example.com"),
                    v,
                    ErrorCode::TlsCertNameMismatch,
                    None,
                )
            }),
            direction: Direction::FalseDrain,
            diagnosis: Diagnosis::SniMismatch,
            flipped: vec![Attribute::Sni],
            evidence: vec!["tls_cert_name_mismatch", "with SNI shop.example.com it succeeds"],
        },
        // Host-based routes: the IP Host lands on the default backend's 404.
        Scenario {
            name: "ip_host_lands_on_default_backend_is_host_route_mismatch",
            client: client(),
            checker: {
                let mut v = view_url("shop", "alb", "https://10.0.0.5:8443/cart");
                v.tls.verify = false;
                v.tls.sni = crate::config::Sni::Name("shop.example.com".into());
                v.http.host = HostHeader::DialedAddress;
                v.http.headers = client().http.headers;
                v
        },
            model: Box::new(|v| {
                ok_if(effective_host(v).as_deref() == Some("shop.example.com"), v, ErrorCode::HttpStatus, Some(404))
            }),
            direction: Direction::FalseDrain,
            diagnosis: Diagnosis::HostRouteMismatch,
            flipped: vec![Attribute::Host],
            evidence: vec!["checker got 404 on 10.0.0.5:8443 with Host 10.0.0.5:8443; with Host shop.example.com it succeeds"],
        },
        // The app answers 302 only to the CLB's agent.
        Scenario {
            name: "redirect_only_for_checker_agent_is_user_agent_dependent",
            client: view_url("shop", "client", "http://shop.example.com/"),
            checker: {
                let mut v = view_url("shop", "clb", "http://shop.example.com/");
                v.http.user_agent = Some("ELB-HealthChecker/1.0".into());
                v.expect.status = vec![200..=200];
                v
        },
            model: Box::new(|v| {
                let elb = v.http.user_agent.as_deref() == Some("ELB-HealthChecker/1.0");
                // Both matchers judge their own response: the client accepts 302 too.
                if elb && !v.expect.status_ok(302) {
                    failed(v, ErrorCode::HttpStatus, Some(302))
                } else {
                    ok_outcome(v)
                }
            }),
            direction: Direction::FalseDrain,
            diagnosis: Diagnosis::UserAgentDependent,
            flipped: vec![Attribute::UserAgent],
            evidence: vec!["checker got 302", "with User-Agent parallax/"],
        },
    ]
}

#[test]
fn a_request_selecting_another_route_is_diagnosed() {
    check(route_scenarios());
}

/// Where the probe connects, and from where: `node_port_vs_proxy`, `checker_source_blocked`.
fn network_scenarios() -> Vec<Scenario> {
    vec![
        // Users go through a TLS edge that answers 502 (it re-encrypts to a plain-HTTP pod);
        // the LB's plain-HTTP check of the node port passes. Only the edge's address spoken
        // the edge's way (TLS) reproduces the users' 502: the address, not TLS, is the cause.
        Scenario {
            name: "tls_edge_failing_while_the_plain_node_port_passes_is_node_port_vs_proxy",
            client: client(),
            checker: nlb(),
            model: Box::new(|v| {
                let edge = v.dial_endpoint().port == 443;
                match (edge, v.scheme.uses_tls()) {
                    (true, true) => failed(v, ErrorCode::HttpStatus, Some(502)),
                    (true, false) => failed(v, ErrorCode::HttpTlsRequired, Some(400)),
                    (false, true) => failed(v, ErrorCode::TlsPlaintextPeer, None),
                    (false, false) => ok_outcome(v),
                }
            }),
            direction: Direction::Blackhole,
            diagnosis: Diagnosis::NodePortVsProxy,
            flipped: vec![Attribute::Tls, Attribute::Address],
            evidence: vec!["502"],
        },
        // One source address is refused (firewall drop).
        Scenario {
            name: "refused_source_is_checker_source_blocked",
            client: view_url("shop", "client", "http://shop.example.com:30080/healthz"),
            checker: {
                let mut v = view_url("shop", "nlb", "http://shop.example.com:30080/healthz");
                let ip = "127.0.0.66".parse().unwrap();
                v.source = Some(SourceBind { requested: Source::Addr(ip), addr: ip });
                v
            },
            model: Box::new(|v| ok_if(v.source.is_none(), v, ErrorCode::ConnectTimeout, None)),
            direction: Direction::FalseDrain,
            diagnosis: Diagnosis::CheckerSourceBlocked,
            flipped: vec![Attribute::Source],
            evidence: vec![
                "connect_timeout",
                "with the default source address it succeeds",
                "allow the checker's source",
            ],
        },
        // Node port passes, the proxy in front fails.
        Scenario {
            name: "node_port_passes_proxy_fails_is_node_port_vs_proxy",
            client: {
                let mut v = view_url("shop", "client", "http://shop.example.com/cart");
                v.connect_to = Some(crate::config::Endpoint {
                    host: crate::config::Host::Ip([127, 0, 0, 20].into()),
                    port: 80,
                });
                v
            },
            checker: {
                let mut v = view_url("shop", "np", "http://shop.example.com/cart");
                v.connect_to = Some(crate::config::Endpoint {
                    host: crate::config::Host::Ip([127, 0, 0, 21].into()),
                    port: 30080,
                });
                v
            },
            model: Box::new(|v| ok_if(v.dial_endpoint().port == 30080, v, ErrorCode::HttpStatus, Some(502))),
            direction: Direction::Blackhole,
            diagnosis: Diagnosis::NodePortVsProxy,
            flipped: vec![Attribute::Address],
            evidence: vec![
                "client got 502 on 127.0.0.20:80",
                "with address 127.0.0.20:80 the checker fails too (502)",
            ],
        },
    ]
}

#[test]
fn where_and_whence_a_probe_connects_is_diagnosed() {
    check(network_scenarios());
}

/// No switchable attribute explains it: `unattributed`.
fn unattributed_scenarios() -> Vec<Scenario> {
    vec![
        // Nothing switchable explains it: the app chokes on Title-Case header names, which is not
        // an attribute parallax switches.
        Scenario {
            name: "cause_outside_the_switchable_attributes_is_unattributed",
            client: client(),
            checker: {
                let mut v = nlb();
                v.http.title_case_headers = true;
                v
            },
            model: Box::new(|v| ok_if(!v.http.title_case_headers, v, ErrorCode::HttpStatus, Some(500))),
            direction: Direction::FalseDrain,
            diagnosis: Diagnosis::Unattributed,
            flipped: vec![],
            evidence: vec!["no single switch flips it", "nlb~tls: 500", "client~path@nlb: ok (200)"],
        },
    ]
}

#[test]
fn a_cause_no_switch_reaches_is_unattributed() {
    check(unattributed_scenarios());
}

/// A certificate as a TLS summary shows it: `cn`, `sans`, a fingerprint made of `fp`.
fn certificate(cn: &str, sans: &[&str], fp: char) -> crate::probe::TlsSummary {
    crate::probe::TlsSummary {
        cert_subject: Some(format!("CN={cn}")),
        cert_sans: sans.iter().map(|s| (*s).to_owned()).collect(),
        cert_issuer: Some(format!("CN={cn}")),
        not_before: Some("2020-01-01T00:00:00Z".into()),
        not_after: Some("2060-01-01T00:00:00Z".into()),
        cert_sha256: Some(fp.to_string().repeat(64)),
        ..crate::probe::TlsSummary::default()
    }
}

/// An ingress-style server: a certificate per SNI in `by_sni`, else the default one (fingerprint
/// `d`, for `ingress.local`); a view that verifies fails on a certificate that does not cover its
/// name with `error`, and passes with one that does.
fn ingress(
    by_sni: &'static [(&'static str, &'static [&'static str])],
    error: ErrorCode,
) -> Box<dyn Fn(&View) -> Outcome> {
    Box::new(move |v| {
        let sni = effective_sni(v);
        let (tls, name_ok) = match by_sni.iter().position(|(n, _)| Some(*n) == sni.as_deref()) {
            Some(i) => {
                let sans = by_sni[i].1;
                (
                    certificate(sans[0], sans, char::from(b'a' + i as u8)),
                    covers(&certificate("x", sans, 'x').cert_sans, &verified_name(v)),
                )
            }
            None => (
                certificate("Kubernetes Ingress Controller Fake Certificate", &["ingress.local"], 'd'),
                false,
            ),
        };
        let mut o = ok_if(!v.tls.verify || name_ok, v, error, None);
        o.tls = Some(tls);
        o
    })
}

/// `certificate_rejected`, `default_certificate_served`, and `sni_mismatch` kept for an SNI flip.
fn certificate_scenarios() -> Vec<Scenario> {
    let gcp_ssl = || {
        let mut v = view_url("shop", "gcp", "https://10.0.0.5:443/");
        v.tls.verify = false;
        v.http.host = HostHeader::Value("shop.example.com".into());
        v
    };
    vec![
        // The TLS Secret of shop.example.com is missing: every SNI gets the default certificate.
        Scenario {
            name: "missing_tls_secret_is_default_certificate_served",
            client: view_url("shop", "client", "https://shop.example.com/"),
            checker: gcp_ssl(),
            model: ingress(&[], ErrorCode::TlsCertUntrusted),
            direction: Direction::Blackhole,
            diagnosis: Diagnosis::DefaultCertificateServed,
            flipped: vec![Attribute::Verify],
            evidence: vec![
                "client got tls_cert_untrusted",
                "with certificate verification on the checker fails too (tls_cert_untrusted)",
                "the certificate served for shop.example.com, CN=Kubernetes Ingress Controller Fake Certificate \
                 (SANs ingress.local; issuer CN=Kubernetes Ingress Controller Fake Certificate; valid \
                 2020-01-01T00:00:00Z to 2060-01-01T00:00:00Z), SHA-256 dddddddddddddddd, is the same one the \
                 server gives a handshake without SNI, and it does not cover shop.example.com",
                "; the TLS Secret for shop.example.com is missing or in the wrong namespace",
            ],
        },
        // The host's secret was issued for another name; without SNI the default one comes back.
        Scenario {
            name: "san_missing_the_host_is_certificate_rejected",
            client: view_url("shop", "client", "https://shop.example.com/"),
            checker: gcp_ssl(),
            model: ingress(&[("shop.example.com", &["www.example.com"])], ErrorCode::TlsCertNameMismatch),
            direction: Direction::Blackhole,
            diagnosis: Diagnosis::CertificateRejected,
            flipped: vec![Attribute::Verify],
            evidence: vec![
                "client got tls_cert_name_mismatch",
                "; the client's verification rejects the certificate CN=www.example.com (SANs www.example.com; \
                 issuer CN=www.example.com; valid 2020-01-01T00:00:00Z to 2060-01-01T00:00:00Z): \
                 shop.example.com is not in its SANs, while the checker, which does not verify certificates, \
                 passes",
                "; add shop.example.com to the certificate's SANs",
            ],
        },
        // A verifying checker without SNI gets the default certificate: SNI is what flips.
        Scenario {
            name: "verifying_checker_without_sni_is_still_sni_mismatch",
            client: view_url("shop", "client", "https://shop.example.com/"),
            checker: {
                let mut v = view_url("shop", "appgw", "https://10.0.0.5:443/");
                v.http.host = HostHeader::Value("shop.example.com".into());
                v.tls.sni = crate::config::Sni::None;
                v
            },
            model: ingress(&[("shop.example.com", &["shop.example.com"])], ErrorCode::TlsCertNameMismatch),
            direction: Direction::FalseDrain,
            diagnosis: Diagnosis::SniMismatch,
            flipped: vec![Attribute::Sni],
            evidence: vec!["with SNI shop.example.com it succeeds"],
        },
    ]
}

#[test]
fn certificate_failures_are_diagnosed() {
    let seen = check(certificate_scenarios());
    assert!(
        seen.contains(&Diagnosis::CertificateRejected) && seen.contains(&Diagnosis::DefaultCertificateServed)
    );
}

#[test]
fn a_certificate_covers_exact_names_one_wildcard_label_and_ips() {
    let sans = |s: &[&str]| s.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
    assert!(covers(&sans(&["shop.example.com"]), "SHOP.example.com."));
    assert!(covers(&sans(&["*.example.com"]), "shop.example.com"));
    assert!(!covers(&sans(&["*.example.com"]), "a.shop.example.com"));
    assert!(!covers(&sans(&["*.example.com"]), "example.com"));
    assert!(covers(&sans(&["10.0.0.5"]), "10.0.0.5"));
    assert!(!covers(&sans(&["ingress.local"]), "blog.lab"));
    assert!(!covers(&[], "blog.lab"));
}

#[test]
fn the_scenarios_reach_most_diagnoses() {
    let families = [protocol_scenarios(), route_scenarios(), network_scenarios(), unattributed_scenarios()];
    let seen: BTreeSet<Diagnosis> = families.into_iter().flat_map(check).collect();
    assert!(seen.len() >= 10, "{seen:?}");
}

fn case<'a>(
    direction: Direction,
    cv: &'a View,
    kv: &'a View,
    co: &'a Outcome,
    ko: &'a Outcome,
    a: Option<&'a Attribution>,
) -> Finding {
    diagnose(&Case {
        direction,
        client_view: cv,
        checker_view: kv,
        client: co,
        checker: ko,
        attribution: a,
        cluster: None,
    })
}

#[test]
fn http_tls_required_is_protocol_mismatch_even_without_attribution() {
    let (c, k) = (client(), nlb());
    let co = ok_outcome(&c);
    let ko = failed(&k, ErrorCode::HttpTlsRequired, None);
    let f = case(Direction::FalseDrain, &c, &k, &co, &ko, None);
    assert_eq!(f.diagnosis, Diagnosis::CheckerProtocolMismatch);
    assert!(f.evidence.contains("plain HTTP to a TLS listener"), "{}", f.evidence);
}

#[test]
fn status_matcher_mismatch_both_ways() {
    // False drain: a 204 the client's 200-399 accepts, the GCP-like 200-only checker rejects.
    let c = client();
    let mut gcp = view_url("shop", "gcp", "http://10.0.0.5:8080/ready");
    gcp.expect.status = vec![200..=200];
    gcp.profile = Some(ProfileName::Gcp);
    let co = ok_outcome(&c);
    let ko = failed(&gcp, ErrorCode::HttpStatus, Some(204));
    // Even when the path switch flips it (the user route answers 200), the matcher is the
    // cause: the same 204 would pass the client's matcher.
    let model = |v: &View| {
        if v.path == "/ready" && !v.expect.status_ok(204) {
            failed(v, ErrorCode::HttpStatus, Some(204))
        } else {
            ok_outcome(v)
        }
    };
    let a = attribution(&c, &gcp, &co, &ko, &model);
    let f = case(Direction::FalseDrain, &c, &gcp, &co, &ko, Some(&a));
    assert_eq!(f.diagnosis, Diagnosis::StatusMatcherMismatch, "{}", f.evidence);
    assert_eq!(
        f.evidence,
        "checker got 204 on 10.0.0.5:8080, which its matcher (200) rejects; the client's matcher (200-399) accepts \
         it; make the route answer a status both accept"
    );
    // Blackhole: users expect exactly 200 and get a 302 the HAProxy-like checker accepts.
    let mut strict = client();
    strict.expect.status = vec![200..=200];
    let hap = view_url("shop", "haproxy", "https://shop.example.com/cart");
    let co = failed(&strict, ErrorCode::HttpStatus, Some(302));
    let ko = outcome_for(&hap, true, None, Some(302));
    let f = case(Direction::Blackhole, &strict, &hap, &co, &ko, None);
    assert_eq!(f.diagnosis, Diagnosis::StatusMatcherMismatch, "{}", f.evidence);
    assert!(f.evidence.contains("the checker's matcher (200-399) accepts it"));
}

#[test]
fn redirect_to_login_with_headers_flip_is_auth_not_matcher() {
    let c = client();
    let mut k = view_url("shop", "gcp", "https://shop.example.com/cart");
    k.expect.status = vec![200..=200];
    let co = ok_outcome(&c);
    // The redirect points at a login page, and the client's credentials avoid it.
    let login = |v: &View| {
        let mut o = ok_if(has_auth(v), v, ErrorCode::HttpStatus, Some(302));
        if !o.ok {
            o.location = Some("https://shop.example.com/login?next=/cart".into());
        }
        o
    };
    let ko = login(&k);
    let a = attribution(&c, &k, &co, &ko, &login);
    let f = case(Direction::FalseDrain, &c, &k, &co, &ko, Some(&a));
    assert_eq!(f.diagnosis, Diagnosis::AuthRequired, "{}", f.evidence);
    assert!(
        f.evidence.starts_with(
            "checker got 302 on 203.0.113.10:443 (Location: https://shop.example.com/login?next=/cart) with no extra \
             headers; with the headers [authorization] it succeeds"
        ),
        "{}",
        f.evidence
    );
    // The same flip for a redirect elsewhere (the client's headers carry what the app wants,
    // say X-Forwarded-Proto): a redirect, not missing credentials.
    let elsewhere = |v: &View| {
        let mut o = login(v);
        if !o.ok {
            o.location = Some("https://shop.example.com/cart".into());
        }
        o
    };
    let ko = elsewhere(&k);
    let a = attribution(&c, &k, &co, &ko, &elsewhere);
    assert!(a.flipped().contains(&Attribute::Headers));
    let f = case(Direction::FalseDrain, &c, &k, &co, &ko, Some(&a));
    assert_eq!(f.diagnosis, Diagnosis::CheckerRedirected, "{}", f.evidence);
    assert!(f.evidence.contains("with the headers [authorization] the check succeeds"), "{}", f.evidence);
    // Without a hybrid probe, even a login-looking Location is not taken as missing credentials.
    let ko = login(&k);
    let f = case(Direction::FalseDrain, &c, &k, &co, &ko, None);
    assert_eq!(f.diagnosis, Diagnosis::CheckerRedirected, "{}", f.evidence);
    assert!(f.evidence.contains("looks like a login page (not confirmed"), "{}", f.evidence);
}

#[test]
fn kube_proxy_no_local_endpoints_both_directions() {
    let c = view_url("shop", "client", "http://10.0.0.5:30080/");
    let mut kp = view_url("shop", "kube-proxy", "http://10.0.0.5:32456/healthz");
    kp.profile = Some(ProfileName::KubeProxy);
    kp.expect.kube_proxy_endpoints = true;
    kp.expect.status = vec![200..=200];
    // False drain: 503 {"localEndpoints":0}.
    let co = ok_outcome(&c);
    let mut ko = failed(&kp, ErrorCode::NoLocalEndpoints, Some(503));
    ko.local_endpoints = Some(0);
    let f = case(Direction::FalseDrain, &c, &kp, &co, &ko, None);
    assert_eq!(f.diagnosis, Diagnosis::NoLocalEndpoints);
    assert!(f.evidence.contains("localEndpoints=0 (503)"), "{}", f.evidence);
    assert!(f.evidence.contains("10.0.0.5:32456"));
    // Blackhole: kube-proxy says 1 endpoint, the node port refuses.
    let co = failed(&c, ErrorCode::ConnectRefused, None);
    let mut ko = ok_outcome(&kp);
    ko.local_endpoints = Some(1);
    let f = case(Direction::Blackhole, &c, &kp, &co, &ko, None);
    assert_eq!(f.diagnosis, Diagnosis::NoLocalEndpoints, "{}", f.evidence);
    assert!(
        f.evidence.contains("localEndpoints=1") && f.evidence.contains("connect_refused"),
        "{}",
        f.evidence
    );
    // A certificate problem is not something kube-proxy's count can explain.
    let co = failed(&c, ErrorCode::TlsCertExpired, None);
    let f = case(Direction::Blackhole, &c, &kp, &co, &ko, None);
    assert_ne!(f.diagnosis, Diagnosis::NoLocalEndpoints);
}

/// A cloud checker on healthCheckNodePort (GKE L4, an NLB with ETP Local) reads kube-proxy's
/// answer: its 503 is no local endpoint, not a node port that fails where the proxy serves.
#[test]
fn a_cloud_checker_reading_kube_proxys_zero_is_no_local_endpoints() {
    let c = view_url("shop", "client", "http://10.0.0.5:30080/cart");
    let mut gcp = view_url("shop", "gcp-l4", "http://10.0.0.5:32456/healthz");
    gcp.profile = Some(ProfileName::Gcp);
    gcp.expect.status = vec![200..=200];
    let co = ok_outcome(&c);
    let mut go = failed(&gcp, ErrorCode::HttpStatus, Some(503));
    go.local_endpoints = Some(0);
    let f = case(Direction::FalseDrain, &c, &gcp, &co, &go, None);
    assert_eq!(f.diagnosis, Diagnosis::NoLocalEndpoints, "{}", f.evidence);
    assert!(
        f.evidence.contains("localEndpoints=0 (503)") && f.evidence.contains("10.0.0.5:32456"),
        "{}",
        f.evidence
    );
    // Without kube-proxy's body the same 503 says nothing of endpoints.
    go.local_endpoints = None;
    let f = case(Direction::FalseDrain, &c, &gcp, &co, &go, None);
    assert_ne!(f.diagnosis, Diagnosis::NoLocalEndpoints, "{}", f.evidence);
}

#[test]
fn dns_wrong_address_from_the_client_outcome() {
    let mut c = client();
    c.expect_addresses = vec!["203.0.113.10".parse().unwrap()];
    let k = nlb();
    let mut co = failed(&c, ErrorCode::DnsUnexpectedAddress, None);
    co.resolved = vec!["198.51.100.9".parse().unwrap()];
    let ko = ok_outcome(&k);
    let f = case(Direction::Blackhole, &c, &k, &co, &ko, None);
    assert_eq!(f.diagnosis, Diagnosis::DnsWrongAddress);
    assert!(
        f.evidence
            .starts_with("client DNS for shop.example.com answered 198.51.100.9, expected 203.0.113.10"),
        "{}",
        f.evidence
    );
}

#[test]
fn tcp_check_passing_while_http_fails_is_shallow() {
    let c = client();
    let tcp = view_url("shop", "nlb-tcp", "tcp://10.0.0.5:30443");
    let co = failed(&c, ErrorCode::HttpStatus, Some(503));
    let ko = outcome_for(&tcp, true, None, None);
    let f = case(Direction::Blackhole, &c, &tcp, &co, &ko, None);
    assert_eq!(f.diagnosis, Diagnosis::ShallowHealthPath);
    assert!(f.evidence.contains("only completes a TCP handshake on 10.0.0.5:30443"), "{}", f.evidence);
}

#[test]
fn a_400_to_a_proxy_header_points_at_proxy_protocol_without_attribution() {
    let c = view_url("shop", "client", "http://shop.example.com:10254/healthz");
    let mut k = view_url("shop", "nlb", "http://10.0.0.5:10254/healthz");
    k.proxy_protocol = Some(ProxyHeader { version: ProxyVersion::V2, local: true });
    let co = ok_outcome(&c);
    let mut ko = failed(&k, ErrorCode::HttpStatus, Some(400));
    ko.request.proxy_protocol = Some(ProxyVersion::V2);
    let f = case(Direction::FalseDrain, &c, &k, &co, &ko, None);
    assert_eq!(f.diagnosis, Diagnosis::ProxyProtocolMismatch, "{}", f.evidence);
    assert!(f.evidence.contains("not confirmed"), "{}", f.evidence);
    // The same 400 without a PROXY header points at the Host.
    ko.request.proxy_protocol = None;
    k.proxy_protocol = None;
    let f = case(Direction::FalseDrain, &c, &k, &co, &ko, None);
    assert_eq!(f.diagnosis, Diagnosis::HostRouteMismatch, "{}", f.evidence);
}

#[test]
fn without_attribution_the_error_hint_names_a_differing_attribute_unconfirmed() {
    let c = client();
    let mut k = view_url("shop", "alb", "https://shop.example.com/cart");
    k.http.headers.clear();
    let co = ok_outcome(&c);
    let ko = failed(&k, ErrorCode::HttpStatus, Some(401));
    let f = case(Direction::FalseDrain, &c, &k, &co, &ko, None);
    assert_eq!(f.diagnosis, Diagnosis::AuthRequired);
    assert!(
        f.evidence
            .contains("differ in headers (checker: no extra headers; client: the headers [authorization])"),
        "{}",
        f.evidence
    );
    assert!(f.evidence.contains("not confirmed"), "{}", f.evidence);
    assert!(!f.evidence.contains("s3cret"));
    // No hint applies: unattributed, saying attribution was off.
    let ko = failed(&k, ErrorCode::HttpTimeout, None);
    let f = case(Direction::FalseDrain, &c, &k, &co, &ko, None);
    assert_eq!(f.diagnosis, Diagnosis::Unattributed);
    assert!(f.evidence.contains("attribution off"), "{}", f.evidence);
}

#[test]
fn a_flip_to_a_different_failure_does_not_explain_the_checkers() {
    // The app answers 503 to Title-Case header names (not switchable) and wants a token.
    // With the checker's (missing) headers the client gets 401: a flip, but not to the
    // checker's 503: a second problem, not the explanation.
    let c = client();
    let mut k = nlb();
    k.http.title_case_headers = true;
    let model = |v: &View| {
        if v.http.title_case_headers {
            failed(v, ErrorCode::HttpStatus, Some(503))
        } else {
            ok_if(has_auth(v), v, ErrorCode::HttpStatus, Some(401))
        }
    };
    let co = model(&c);
    let ko = model(&k);
    let a = attribution(&c, &k, &co, &ko, &model);
    assert!(a.flipped().contains(&Attribute::Headers), "{:?}", a.flipped());
    let f = case(Direction::FalseDrain, &c, &k, &co, &ko, Some(&a));
    assert_eq!(f.diagnosis, Diagnosis::Unattributed, "{}", f.evidence);
    assert!(
        f.evidence.contains("switching headers changes a result, but not to the other view's"),
        "{}",
        f.evidence
    );
    assert!(f.evidence.contains("client~headers@nlb: 401"), "{}", f.evidence);
}

#[test]
fn a_reset_before_or_after_the_request_is_the_same_failure() {
    let c = view_url("shop", "client", "http://shop.example.com:8080/");
    let mut k = c.clone();
    k.name = "nlb".into();
    let ip = "127.0.0.66".parse().unwrap();
    k.source = Some(SourceBind { requested: Source::Addr(ip), addr: ip });
    let co = ok_outcome(&c);
    let ko = failed(&k, ErrorCode::HttpReset, None);
    // Only the client-side hybrid ran (a cap of one from the other end): it got the reset
    // at connect time instead.
    let model = |v: &View| ok_if(v.source.is_none(), v, ErrorCode::ConnectReset, None);
    let mut a = attribution(&c, &k, &co, &ko, &model);
    a.hybrids.retain(|h| h.switched == Side::Client);
    let f = case(Direction::FalseDrain, &c, &k, &co, &ko, Some(&a));
    assert_eq!(f.diagnosis, Diagnosis::CheckerSourceBlocked, "{}", f.evidence);
    assert!(f.evidence.contains("allow the checker's source 127.0.0.66"), "{}", f.evidence);
}

#[test]
fn a_route_needing_two_client_values_says_they_are_needed_together() {
    let c = client();
    let mut k = view_url("shop", "alb", "https://10.0.0.5:8443/healthz");
    k.tls.sni = crate::config::Sni::Name("shop.example.com".into());
    k.http.headers = c.http.headers.clone();
    k.http.user_agent = Some("ELB-HealthChecker/2.0".into());
    let model = |v: &View| {
        let ok = effective_host(v).as_deref() == Some("shop.example.com") && v.path == "/cart";
        ok_if(ok, v, ErrorCode::HttpStatus, Some(404))
    };
    let co = model(&c);
    let ko = model(&k);
    let a = attribution(&c, &k, &co, &ko, &model);
    assert_eq!(a.flipped(), vec![Attribute::Host, Attribute::Path]);
    let f = case(Direction::FalseDrain, &c, &k, &co, &ko, Some(&a));
    assert_eq!(f.diagnosis, Diagnosis::HostRouteMismatch, "{}", f.evidence);
    assert!(
        f.evidence
            .contains("no single switch fixes the checker: it needs the client's host and path together"),
        "{}",
        f.evidence
    );
    // One attribute alone that fixes it: no such remark.
    let single = |v: &View| ok_if(v.path == "/cart", v, ErrorCode::HttpStatus, Some(404));
    let a = attribution(&c, &k, &co, &ko, &single);
    let f = case(Direction::FalseDrain, &c, &k, &co, &single(&k), Some(&a));
    assert_eq!(f.diagnosis, Diagnosis::ShallowHealthPath, "{}", f.evidence);
    assert!(!f.evidence.contains("together"), "{}", f.evidence);
}

#[test]
fn a_cap_of_zero_is_not_no_difference() {
    let c = client();
    let k = nlb();
    let co = ok_outcome(&c);
    let ko = failed(&k, ErrorCode::HttpTimeout, None);
    let a = Attribution {
        differences: differences(&c, &k),
        hybrids: vec![],
        not_tried: 10,
        combinations: vec![],
    };
    let f = case(Direction::FalseDrain, &c, &k, &co, &ko, Some(&a));
    assert_eq!(f.diagnosis, Diagnosis::Unattributed);
    assert!(f.evidence.contains("no hybrid probed: the cap allows none of the 10 planned"), "{}", f.evidence);
    assert!(!f.evidence.contains("differ in no attribute"), "{}", f.evidence);
    // With nothing probed, the error's hint still names a differing attribute, unconfirmed.
    let ko = failed(&k, ErrorCode::HttpStatus, Some(401));
    let f = case(Direction::FalseDrain, &c, &k, &co, &ko, Some(&a));
    assert_eq!(f.diagnosis, Diagnosis::AuthRequired, "{}", f.evidence);
    assert!(f.evidence.contains("not confirmed"), "{}", f.evidence);
}

#[test]
fn unattributed_names_the_differences_no_hybrid_switches() {
    let c = view_url("shop", "client", "http://shop.example.com/");
    let mut k = view_url("shop", "haproxy", "http://shop.example.com/");
    k.http.version = crate::config::HttpVersion::Http10;
    k.http.connection_close = true;
    let co = ok_outcome(&c);
    // A 426 points at the HTTP version, now an attribute: with no hybrid it is named, unconfirmed.
    let ko = failed(&k, ErrorCode::HttpStatus, Some(426));
    let a = Attribution { differences: vec![], hybrids: vec![], not_tried: 0, combinations: vec![] };
    let f = case(Direction::FalseDrain, &c, &k, &co, &ko, Some(&a));
    assert_eq!(f.diagnosis, Diagnosis::HttpVersionDependent, "{}", f.evidence);
    assert!(f.evidence.contains("HTTP/1.0") && f.evidence.contains("not confirmed"), "{}", f.evidence);
    // A status that points at nothing they differ in: unattributed, listing what is not switched.
    let ko = failed(&k, ErrorCode::HttpStatus, Some(418));
    let f = case(Direction::FalseDrain, &c, &k, &co, &ko, Some(&a));
    assert_eq!(f.diagnosis, Diagnosis::Unattributed);
    assert!(
        f.evidence.ends_with(
            // The HTTP version is no longer listed here: it is the `http_version` attribute.
            "the views also differ in what parallax does not switch: Connection: close (only the checker sends it)"
        ),
        "{}",
        f.evidence
    );
    // `auto` over plain HTTP is HTTP/1.1 on the wire: no difference with an HTTP/1.1 checker.
    let mut auto = c.clone();
    auto.http.version = crate::config::HttpVersion::Auto;
    assert!(unswitched_differences(&auto, &view_url("shop", "alb", "http://shop.example.com/")).is_empty());
}

#[test]
fn unattributed_says_when_nothing_can_be_switched() {
    let c = client();
    let mut k = c.clone();
    k.name = "twin".into();
    let co = ok_outcome(&c);
    let ko = failed(&k, ErrorCode::HttpStatus, Some(500));
    let a = Attribution { differences: vec![], hybrids: vec![], not_tried: 0, combinations: vec![] };
    let f = case(Direction::FalseDrain, &c, &k, &co, &ko, Some(&a));
    assert_eq!(f.diagnosis, Diagnosis::Unattributed);
    assert!(f.evidence.contains("differ in no attribute"), "{}", f.evidence);
}

#[test]
fn unbindable_source_is_parallaxs_problem_not_the_targets() {
    let c = client();
    let mut k = nlb();
    let ip = "10.9.9.9".parse().unwrap();
    k.source = Some(SourceBind { requested: Source::Addr(ip), addr: ip });
    let co = ok_outcome(&c);
    let ko = failed(&k, ErrorCode::SourceUnavailable, None);
    let f = case(Direction::FalseDrain, &c, &k, &co, &ko, None);
    assert_eq!(f.diagnosis, Diagnosis::Unattributed);
    assert!(f.evidence.contains("could not bind its source 10.9.9.9"), "{}", f.evidence);
}

#[test]
fn hint_prefers_the_attribute_the_error_points_at() {
    // Both host and path flip a 404; the 404 points at the Host first.
    let c = client();
    let mut k = view_url("shop", "alb", "https://10.0.0.5:8443/");
    k.tls.sni = crate::config::Sni::Name("shop.example.com".into());
    k.http.headers = c.http.headers.clone();
    let model = |v: &View| {
        let ok = effective_host(v).as_deref() == Some("shop.example.com") || v.path == "/cart";
        ok_if(ok, v, ErrorCode::HttpStatus, Some(404))
    };
    let co = ok_outcome(&c);
    let ko = model(&k);
    let a = attribution(&c, &k, &co, &ko, &model);
    assert_eq!(a.flipped(), vec![Attribute::Host, Attribute::Path]);
    let f = case(Direction::FalseDrain, &c, &k, &co, &ko, Some(&a));
    assert_eq!(f.diagnosis, Diagnosis::HostRouteMismatch);
}

#[test]
fn each_address_evidence_names_the_address_the_pair_used() {
    let c = client();
    let k = nlb();
    let co = at(failed(&c, ErrorCode::ConnectTimeout, None), "203.0.113.12:443");
    let ko = ok_outcome(&k);
    let f = case(Direction::Blackhole, &c, &k, &co, &ko, None);
    assert!(f.evidence.contains("client got connect_timeout on 203.0.113.12:443"), "{}", f.evidence);
}

#[test]
fn diagnosis_names_are_the_design_codes() {
    let names: Vec<String> = Diagnosis::ALL
        .iter()
        .map(|d| serde_json::to_value(d).unwrap().as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        names,
        [
            "shallow_health_path",
            "auth_required",
            "checker_protocol_mismatch",
            "checker_source_blocked",
            "no_local_endpoints",
            "node_port_vs_proxy",
            "sni_mismatch",
            "certificate_rejected",
            "default_certificate_served",
            "host_route_mismatch",
            "proxy_protocol_mismatch",
            "status_matcher_mismatch",
            "user_agent_dependent",
            "http_version_dependent",
            "dns_wrong_address",
            "checker_redirected",
            "redirect_masks_outage",
            "kube_proxy_endpoints_disagree",
            "health_port_not_served",
            "draining_endpoints",
            "no_ready_endpoints",
            "route_not_accepted",
            "backend_ref_unresolved",
            "gateway_not_programmed",
            "ingress_class_unclaimed",
            "vip_without_health_check",
            "unattributed"
        ]
    );
    for d in Diagnosis::ALL {
        assert_eq!(d.as_str(), d.to_string());
        assert_eq!(serde_json::to_value(d).unwrap(), d.as_str());
    }
}

// ---- compound causes and the HTTP version --------------------------------------------------

/// The false drain of a pair, with its attribution.
fn false_drain<'a>(
    c: &'a View,
    k: &'a View,
    co: &'a Outcome,
    ko: &'a Outcome,
    a: &'a Attribution,
) -> Case<'a> {
    Case {
        direction: Direction::FalseDrain,
        client_view: c,
        checker_view: k,
        client: co,
        checker: ko,
        attribution: Some(a),
        cluster: None,
    }
}

/// The example on a backend model: a GCP-like check sends Host = the dialed IP and
/// lands on the default vhost (404); with the users' Host it gets 204, which its 200-only
/// matcher still rejects. Only the Host and the matcher together heal it.
#[tokio::test(start_paused = true)]
async fn host_and_matcher_together_are_two_causes() {
    let c = view_url("shop", "client", "http://shop.example.com/ready");
    let mut k = view_url("shop", "gcp", "http://10.0.0.5/ready");
    k.profile = Some(ProfileName::Gcp);
    k.http.host = HostHeader::DialedIp;
    k.http.user_agent = Some("GoogleHC/1.0".into());
    k.http.headers = vec![header("connection", "Keep-alive", false)];
    k.expect.status = vec![200..=200];
    let backend = |v: View| async move {
        let status = if effective_host(&v).as_deref() == Some("shop.example.com") { 204 } else { 404 };
        let ok = v.expect.status_ok(status);
        vec![outcome_for(&v, ok, (!ok).then_some(ErrorCode::HttpStatus), Some(status))]
    };
    let co = outcome_for(&c, true, None, Some(204));
    let ko = outcome_for(&k, false, Some(ErrorCode::HttpStatus), Some(404));
    let a = crate::diff::attribution::attribute_with(backend, &c, &k, &co, &ko, 12).await;
    assert!(!a.differences.contains(&Attribute::Headers), "Connection: Keep-alive is GoogleHC's identity");
    let case = false_drain(&c, &k, &co, &ko, &a);
    let f = diagnose(&case);
    assert_eq!(f.diagnosis, Diagnosis::HostRouteMismatch, "{}", f.evidence);
    assert!(
        f.evidence.starts_with(
            "checker got 404 on 10.0.0.5:80; no single switch heals it, host and matcher together do: \
             with Host shop.example.com alone still fails (204), with matcher 200-399 alone still fails (404); \
             with all of them it succeeds (gcp~host+matcher, ok (204)); all of them must be fixed: "
        ),
        "{}",
        f.evidence
    );
    let causes = causes(&case, &f);
    let got: Vec<(Diagnosis, Vec<Attribute>)> =
        causes.iter().map(|c| (c.diagnosis, c.attributes.clone())).collect();
    assert_eq!(
        got,
        [
            (Diagnosis::HostRouteMismatch, vec![Attribute::Host]),
            (Diagnosis::StatusMatcherMismatch, vec![Attribute::Matcher])
        ]
    );
    assert!(
        causes[0].evidence.contains("not enough alone: matcher must be fixed too"),
        "{}",
        causes[0].evidence
    );
    assert!(
        causes[0].evidence.contains("set the check's Host to shop.example.com"),
        "{}",
        causes[0].evidence
    );
    assert!(
        causes[1].evidence.contains("not enough alone: host must be fixed too"),
        "{}",
        causes[1].evidence
    );
    assert!(causes[1].evidence.contains("make the check accept 204"), "{}", causes[1].evidence);
}

#[test]
fn a_single_cause_is_one_entry_and_unattributed_none() {
    let c = client();
    let k = nlb();
    let model = |v: &View| ok_if(v.scheme.uses_tls(), v, ErrorCode::HttpTlsRequired, None);
    let co = ok_outcome(&c);
    let ko = model(&k);
    let a = attribution(&c, &k, &co, &ko, &model);
    let case = false_drain(&c, &k, &co, &ko, &a);
    let f = diagnose(&case);
    let got = causes(&case, &f);
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].diagnosis, got[0].attributes.clone(), &got[0].evidence),
        (f.diagnosis, vec![Attribute::Tls], &f.evidence)
    );
    let a = Attribution { differences: vec![], hybrids: vec![], not_tried: 0, combinations: vec![] };
    let case = Case { attribution: Some(&a), ..case };
    let ko2 = failed(&k, ErrorCode::HttpStatus, Some(418));
    let case = Case { checker: &ko2, ..case };
    let f = diagnose(&case);
    assert_eq!(f.diagnosis, Diagnosis::Unattributed);
    assert!(causes(&case, &f).is_empty());
}

#[test]
fn a_server_refusing_http10_is_http_version_dependent() {
    let c = view_url("shop", "client", "http://shop.example.com/");
    let mut k = view_url("shop", "haproxy", "http://10.0.0.5:8080/");
    k.profile = Some(ProfileName::Haproxy);
    k.http.version = crate::config::HttpVersion::Http10;
    k.http.method = http::Method::OPTIONS;
    k.http.host = HostHeader::None;
    let model = |v: &View| {
        let ten = v.http.version == crate::config::HttpVersion::Http10;
        ok_if(!ten, v, ErrorCode::HttpStatus, Some(505))
    };
    let co = ok_outcome(&c);
    let ko = model(&k);
    let a = attribution(&c, &k, &co, &ko, &model);
    assert_eq!(a.flipped(), vec![Attribute::HttpVersion]);
    let f = case(Direction::FalseDrain, &c, &k, &co, &ko, Some(&a));
    assert_eq!(f.diagnosis, Diagnosis::HttpVersionDependent, "{}", f.evidence);
    assert!(
        f.evidence.contains("with HTTP/1.0; with HTTP/1.1 it succeeds")
            && f.evidence.contains("the checker's HTTP/1.0 gets 505, the HTTP/1.1 the client speaks gets ok")
            && f.evidence.contains("make it accept HTTP/1.0"),
        "{}",
        f.evidence
    );
}

/// A view's result for a `status` redirect to `location`, judged by its own matcher.
fn redirected(v: &View, status: u16, location: &str) -> Outcome {
    let mut o = if v.expect.status_ok(status) {
        outcome_for(v, true, None, Some(status))
    } else {
        failed(v, ErrorCode::HttpStatus, Some(status))
    };
    o.location = Some(location.to_owned());
    o
}

/// Redirects: `checker_redirected`, `redirect_masks_outage` (field failures 1 and 2).
fn redirect_scenarios() -> Vec<Scenario> {
    vec![
        // nginx redirects the plain health port to HTTPS; GCP accepts only 200 (field failure 1).
        Scenario {
            name: "health_port_301_to_https_vs_a_200_only_checker_is_checker_redirected",
            client: client(),
            checker: {
                let mut v = view_url("shop", "gcp", "http://10.0.0.5/healthz");
                v.profile = Some(ProfileName::Gcp);
                v.expect.status = vec![200..=200];
                v
            },
            model: Box::new(|v| {
                if v.scheme.uses_tls() {
                    ok_outcome(v)
                } else {
                    redirected(v, 301, "https://shop.example.com/healthz")
                }
            }),
            direction: Direction::FalseDrain,
            diagnosis: Diagnosis::CheckerRedirected,
            flipped: vec![Attribute::Tls],
            evidence: vec![
                "checker got 301 on 10.0.0.5:80 (Location: https://shop.example.com/healthz), which its matcher \
                 (200) rejects: the check is redirected",
                "with tls on the check succeeds",
                "exempt the health path from the redirect, or check the scheme and port the redirect points to \
                 (https on port 443)",
            ],
        },
        // The app redirects requests without X-Forwarded-Proto (drone/drone#2706): the client's
        // headers heal the check, and the Location is no login page, so it is no credential.
        Scenario {
            name: "redirect_without_forwarded_proto_healed_by_headers_is_checker_redirected_not_auth",
            client: {
                let mut v = client();
                v.http.headers.push(header("x-forwarded-proto", "https", false));
                v
            },
            checker: {
                let mut v = nlb();
                v.profile = Some(ProfileName::AwsAlb);
                v.expect.status = vec![200..=200];
                v
            },
            model: Box::new(|v| {
                if v.http.headers.iter().any(|(n, _)| n == "x-forwarded-proto") {
                    ok_outcome(v)
                } else {
                    redirected(v, 301, "https://10.0.0.5/healthz")
                }
            }),
            direction: Direction::FalseDrain,
            diagnosis: Diagnosis::CheckerRedirected,
            flipped: vec![Attribute::Headers],
            evidence: vec![
                "(Location: https://10.0.0.5/healthz)",
                "with the headers [authorization, x-forwarded-proto] the check succeeds",
            ],
        },
        // HAProxy accepts 2xx and 3xx: it passes on nginx's redirect while the app behind it is
        // down (field failure 2).
        Scenario {
            name: "haproxy_passing_on_a_301_while_users_get_503_is_redirect_masks_outage",
            client: client(),
            checker: {
                let mut v = view_url("shop", "haproxy", "http://10.0.0.5/");
                v.profile = Some(ProfileName::Haproxy);
                v
            },
            model: Box::new(|v| {
                if v.scheme.uses_tls() {
                    failed(v, ErrorCode::HttpStatus, Some(503))
                } else {
                    redirected(v, 301, "https://shop.example.com/")
                }
            }),
            direction: Direction::Blackhole,
            diagnosis: Diagnosis::RedirectMasksOutage,
            flipped: vec![Attribute::Tls],
            evidence: vec![
                "checker passes on 301 from 10.0.0.5:80 (Location: https://shop.example.com/), which its matcher \
                 (200-399) accepts, while the client got 503 on 203.0.113.10:443",
                "make the check follow the users' path (https to port 443, Host shop.example.com) or accept 2xx only",
            ],
        },
    ]
}

#[test]
fn redirects_are_named_as_redirects() {
    let seen = check(redirect_scenarios());
    assert_eq!(seen, BTreeSet::from([Diagnosis::CheckerRedirected, Diagnosis::RedirectMasksOutage]));
}

#[test]
fn a_plain_redirect_without_attribution_is_checker_redirected_never_auth_required() {
    // The codes alone: a 301 the 200-only checker rejects, views that differ in headers.
    let c = client();
    let mut k = nlb();
    k.expect.status = vec![200..=200];
    let co = ok_outcome(&c);
    let ko = redirected(&k, 301, "https://shop.example.com/healthz");
    let f = case(Direction::FalseDrain, &c, &k, &co, &ko, None);
    assert_eq!(f.diagnosis, Diagnosis::CheckerRedirected, "{}", f.evidence);
    // No Location at all (a server that forgot it) is still a redirect.
    let mut bare = ko.clone();
    bare.location = None;
    let f = case(Direction::FalseDrain, &c, &k, &co, &bare, None);
    assert_eq!(f.diagnosis, Diagnosis::CheckerRedirected, "{}", f.evidence);
    assert!(f.evidence.contains("(no Location header)"), "{}", f.evidence);
    // A checker passing on a redirect while users fail before HTTP is not masking an outage.
    let hap = view_url("shop", "haproxy", "http://10.0.0.5/");
    let ko = redirected(&hap, 301, "https://shop.example.com/");
    let co = failed(&c, ErrorCode::TlsCertExpired, None);
    let f = case(Direction::Blackhole, &c, &hap, &co, &ko, None);
    assert_ne!(f.diagnosis, Diagnosis::RedirectMasksOutage, "{}", f.evidence);
    let co = failed(&c, ErrorCode::HttpStatus, Some(503));
    let f = case(Direction::Blackhole, &c, &hap, &co, &ko, None);
    assert_eq!(f.diagnosis, Diagnosis::RedirectMasksOutage, "{}", f.evidence);
}

#[test]
fn login_looking_locations() {
    for l in [
        "/login?next=/cart",
        "https://h/oauth2/start?rd=%2F",
        "https://h/sso/x",
        "https://h/u/SignIn",
        "/?auth=1",
    ] {
        assert!(looks_like_login(l), "{l}");
    }
    for l in [
        "https://shop.example.com/cart",
        "https://auth.example.com/",
        "https://login.example.com",
        "/healthz",
    ] {
        assert!(!looks_like_login(l), "{l}");
    }
}
