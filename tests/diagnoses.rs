//! The mismatch engine against real servers: one reproduction per diagnosis of docs/errors.md#diagnoses, each
//! named after the field failure it reproduces (docs/field-failures.md), with in-process servers on its
//! own 127.0.0.x addresses.
//!
//! Every test runs exactly what `parallax probe` runs: a `probes.d` directory is loaded with
//! `parallax::config::load_with`, one round is probed with `report::probe_round`, and the round
//! is diffed with `report::diff_round` and `AttributionSettings::default()` (hybrid probes are
//! real requests to the test's servers). Each asserts the direction, the diagnosis, the flipped
//! attributes and that the evidence names what differed. Then: the agreeing cases produce
//! nothing, attribution stays inside its bounds (requests counted at the servers), and the
//! `parallax` binary prints the `mismatch` JSON line and exits 1.
//!
//! `unattributed` is reproduced in the lab (tests/lab_scenarios.rs, HTTPS to a plain pod) and
//! by the unit tests; HAProxy's HTTP/1.0 check against Envoy's 426 is `http_version_dependent`
//! now that the version is switched. A route that needs both the client's Host and path is NOT
//! unattributed, because the client-side hybrids flip on each (the client breaks with either of
//! the checker's values); it gets its own test.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;

use parallax::config::{Plan, Target};
use parallax::diff::{Attribute, AttributionSettings, Basis, Diagnosis, Direction, Mismatch};
use parallax::probe::{ErrorCode, Outcome, Prober};
use parallax::report;

use support::certs::Ca;
use support::dns::{Answer, DnsServer};
use support::gate::{Gate, Policy, Refusal};
use support::http::{always, router, HttpServer, Reply, TlsSite};
use support::probes::{target, ProbesDir};
use support::{lo, ClosedPort};

/// A secret the client views send; it must never appear in a mismatch.
const TOKEN: &str = "s3cret-cart-token";

/// One round of `parallax probe`: the plan, its outcomes and its mismatches.
struct Round {
    plan: Plan,
    outcomes: Vec<Outcome>,
    mismatches: Vec<Mismatch>,
}

impl Round {
    /// The outcome of `target/view` (exactly one).
    fn outcome(&self, target: &str, view: &str) -> &Outcome {
        let found: Vec<&Outcome> =
            self.outcomes.iter().filter(|o| &*o.target == target && &*o.view == view).collect();
        assert_eq!(found.len(), 1, "one outcome for {target}/{view}: {:#?}", self.outcomes);
        found[0]
    }

    /// `parallax probe`'s table output for the round.
    fn table(&self) -> String {
        let targets: Vec<&Target> = self.plan.targets.iter().collect();
        let summary = report::Summary::of(&targets, &self.outcomes, self.mismatches.len(), 0);
        report::table(
            &self.plan,
            &self.outcomes,
            &self.mismatches,
            &report::ClusterFindings::default(),
            &summary,
        )
    }

    /// The only mismatch of `target`.
    fn only_mismatch(&self, target: &str) -> &Mismatch {
        let found: Vec<&Mismatch> = self.mismatches.iter().filter(|m| &*m.target == target).collect();
        assert_eq!(found.len(), 1, "one mismatch for {target}: {:#?}\noutcomes: {:#?}", found, self.outcomes);
        found[0]
    }
}

/// Loads `dir` and runs one round with `settings` in every target (where config would say
/// `attribution`, `attribution_interval` and `max_hybrids`), as `parallax probe` does.
async fn probe_and_diff_with(dir: &ProbesDir, settings: &AttributionSettings) -> Round {
    let mut plan = dir.load();
    for target in &mut plan.targets {
        target.diff.attribution = settings.enabled;
        target.diff.attribution_interval = settings.interval;
        target.diff.max_hybrids = settings.max_hybrids;
    }
    let prober = Arc::new(Prober::new());
    let (outcomes, mismatches) = {
        let targets: Vec<&Target> = plan.targets.iter().collect();
        let outcomes = report::probe_round(prober.clone(), &targets, 64).await;
        let mismatches = report::diff_round(&prober, &targets, &outcomes, true).await;
        (outcomes, mismatches)
    };
    let round = Round { plan, outcomes, mismatches };
    for m in &round.mismatches {
        let json = serde_json::to_string(m).expect("a mismatch serializes");
        assert!(!json.contains(TOKEN), "a secret leaked into a mismatch: {json}");
        assert!(!m.evidence.contains('\n'), "evidence is one line: {:?}", m.evidence);
    }
    round
}

/// [`probe_and_diff_with`] the default settings (attribution on, 12 hybrids at most).
async fn probe_and_diff(dir: &ProbesDir) -> Round {
    probe_and_diff_with(dir, &AttributionSettings::default()).await
}

/// What a mismatch must say.
struct Want<'a> {
    checker: &'a str,
    direction: Direction,
    diagnosis: Diagnosis,
    flipped: &'a [Attribute],
    /// Each must appear in the evidence.
    evidence: &'a [&'a str],
}

#[track_caller]
fn assert_mismatch(m: &Mismatch, want: Want<'_>) {
    let context = format!("evidence: {:?}\nmismatch: {m:#?}", m.evidence);
    assert_eq!(&*m.client_view, "client", "{context}");
    assert_eq!(&*m.checker_view, want.checker, "{context}");
    assert_eq!(m.direction, want.direction, "{context}");
    assert_eq!(m.diagnosis, want.diagnosis, "{context}");
    assert_eq!(m.flipped, want.flipped, "{context}");
    for needle in want.evidence {
        assert!(m.evidence.contains(needle), "{needle:?} missing from the evidence\n{context}");
    }
}

/// `host[:port]` without the port: what a vhost matches on.
fn host_name(host: Option<&str>) -> &str {
    let host = host.unwrap_or_default();
    host.rsplit_once(':').map_or(host, |(name, _)| name)
}

/// The client view of a site users reach as `http(s)://shop.test:PORT` through `addr`.
fn client_keys(scheme: &str, addr: SocketAddr, path: &str) -> String {
    format!("url = \"{scheme}://shop.test:{port}{path}\"\nconnect_to = \"{addr}\"", port = addr.port())
}

// ---------------------------------------------------------------------------------------------
// The agreeing cases

#[tokio::test]
async fn views_that_agree_produce_no_mismatch_and_no_hybrid() {
    // Both pass: a healthy site.
    let up = HttpServer::start(lo(20), always("ok")).await;
    // Both fail: a site whose backends are all gone (503 for everyone).
    let down = HttpServer::start(lo(21), router(|_| Reply::status(503, "no healthy upstream"))).await;
    // Both fail at connect: nothing listens at all.
    let closed = ClosedPort::new(lo(21));
    let dir = ProbesDir::new();
    let mut config = String::new();
    for (name, addr) in [("up", up.addr), ("down", down.addr), ("gone", closed.addr)] {
        config.push_str(&target(
            name,
            &client_keys("http", addr, "/cart"),
            &[("alb", &format!("profile = \"aws-alb\"\nurl = \"http://{addr}/healthz\""))],
        ));
    }
    dir.file("shop.toml", &config);
    let round = probe_and_diff(&dir).await;

    assert!(round.mismatches.is_empty(), "{:#?}", round.mismatches);
    assert!(round.outcome("up", "client").ok && round.outcome("up", "alb").ok);
    assert!(!round.outcome("down", "client").ok && !round.outcome("down", "alb").ok);
    assert_eq!(round.outcome("gone", "client").error, Some(ErrorCode::ConnectRefused));
    assert_eq!(round.outcome("gone", "alb").error, Some(ErrorCode::ConnectRefused));
    // One request per view, no hybrid: attribution runs only for a disagreement.
    assert_eq!(up.requests().len(), 2, "{:#?}", up.requests());
    assert_eq!(down.requests().len(), 2, "{:#?}", down.requests());
}

// ---------------------------------------------------------------------------------------------
// shallow_health_path

#[tokio::test]
async fn healthz_200_while_cart_503_is_shallow_health_path() {
    // The app's /healthz answers from memory; /cart needs the database, which is down.
    let app = HttpServer::start(
        lo(22),
        router(|req| match req.path.as_str() {
            "/healthz" => Reply::ok("ok"),
            _ => Reply::status(503, "database unavailable"),
        }),
    )
    .await;
    let dir = ProbesDir::new();
    dir.file(
        "shop.toml",
        &target(
            "shop",
            &client_keys("http", app.addr, "/cart"),
            &[("alb", &format!("profile = \"aws-alb\"\nurl = \"http://{}/healthz\"", app.addr))],
        ),
    );
    let round = probe_and_diff(&dir).await;
    assert_eq!(round.outcome("shop", "client").status, Some(503));
    assert!(round.outcome("shop", "alb").ok);
    assert_mismatch(
        round.only_mismatch("shop"),
        Want {
            checker: "alb",
            direction: Direction::Blackhole,
            diagnosis: Diagnosis::ShallowHealthPath,
            flipped: &[Attribute::Path],
            evidence: &["client got 503", "/healthz", "/cart"],
        },
    );
}

// ---------------------------------------------------------------------------------------------
// auth_required

#[tokio::test]
async fn health_check_without_the_bearer_token_is_auth_required() {
    // oauth2-proxy in front of everything: no token, 401 (oauth2-proxy/oauth2-proxy#564).
    let app = HttpServer::start(
        lo(23),
        router(|req| match req.header("authorization") {
            Some(v) if v == format!("Bearer {TOKEN}") => Reply::ok("cart"),
            _ => Reply::status(401, "unauthorized").header("www-authenticate", "Bearer"),
        }),
    )
    .await;
    let mut dir = ProbesDir::new();
    dir.env("SHOP_TOKEN", TOKEN);
    let client = format!(
        "{}\nheaders = {{ authorization = \"Bearer ${{env:SHOP_TOKEN}}\" }}",
        client_keys("http", app.addr, "/cart")
    );
    dir.file(
        "shop.toml",
        &target("shop", &client, &[("gcp", &format!("profile = \"gcp\"\nurl = \"http://{}/\"", app.addr))]),
    );
    let round = probe_and_diff(&dir).await;
    assert!(round.outcome("shop", "client").ok);
    assert_eq!(round.outcome("shop", "gcp").status, Some(401));
    assert_mismatch(
        round.only_mismatch("shop"),
        Want {
            checker: "gcp",
            direction: Direction::FalseDrain,
            diagnosis: Diagnosis::AuthRequired,
            flipped: &[Attribute::Headers],
            evidence: &["checker got 401", "authorization"],
        },
    );
}

// ---------------------------------------------------------------------------------------------
// checker_protocol_mismatch

#[tokio::test]
async fn plain_http_to_tls_listener_is_checker_protocol_mismatch() {
    // The ALB checks port 443 with plain HTTP (FINRAOS/aphelion#19).
    let ca = Ca::new("shop test CA");
    let site = TlsSite::new(ca.leaf(&["shop.test"]));
    let app = HttpServer::start_tls(lo(24), site, always("ok")).await;
    let dir = ProbesDir::new();
    let ca_file = ca.write_pem(dir.path(), "ca.pem");
    let client = format!("{}\nca_file = \"{}\"", client_keys("https", app.addr, "/"), ca_file.display());
    dir.file(
        "shop.toml",
        &target(
            "shop",
            &client,
            &[("alb", &format!("profile = \"aws-alb\"\nurl = \"http://{}/\"", app.addr))],
        ),
    );
    let round = probe_and_diff(&dir).await;
    assert!(round.outcome("shop", "client").ok);
    assert_eq!(round.outcome("shop", "alb").error, Some(ErrorCode::HttpTlsRequired));
    assert_mismatch(
        round.only_mismatch("shop"),
        Want {
            checker: "alb",
            direction: Direction::FalseDrain,
            diagnosis: Diagnosis::CheckerProtocolMismatch,
            flipped: &[Attribute::Tls],
            evidence: &["checker got http_tls_required", &app.addr.to_string(), "with tls on it succeeds"],
        },
    );
    // The table shows the diagnosis under the two views.
    let table = round.table();
    assert!(
        table.contains("MISMATCH client vs alb: false_drain / checker_protocol_mismatch (flipped: tls)"),
        "{table}"
    );
}

#[tokio::test]
async fn tls_check_against_plain_http_listener_is_checker_protocol_mismatch() {
    // An HTTPS health check against a backend that serves plain HTTP.
    let app = HttpServer::start(lo(25), always("ok")).await;
    let dir = ProbesDir::new();
    dir.file(
        "shop.toml",
        &target(
            "shop",
            &client_keys("http", app.addr, "/"),
            &[("alb", &format!("profile = \"aws-alb\"\nurl = \"https://{}/\"", app.addr))],
        ),
    );
    let round = probe_and_diff(&dir).await;
    assert!(round.outcome("shop", "client").ok);
    assert_eq!(round.outcome("shop", "alb").error, Some(ErrorCode::TlsPlaintextPeer));
    assert_mismatch(
        round.only_mismatch("shop"),
        Want {
            checker: "alb",
            direction: Direction::FalseDrain,
            diagnosis: Diagnosis::CheckerProtocolMismatch,
            flipped: &[Attribute::Tls],
            evidence: &["checker got tls_plaintext_peer", "tls off"],
        },
    );
}

// ---------------------------------------------------------------------------------------------
// checker_source_blocked

#[tokio::test]
async fn firewall_refusing_the_checkers_source_is_checker_source_blocked() {
    // A host firewall that refuses the health checkers' range (kubernetes/kubernetes#20555): one
    // resets the checker's connections (`--reject-with tcp-reset` after accept), one closes them.
    let checker_source = lo(66);
    let app = HttpServer::start(lo(27), always("ok")).await;
    let reset =
        Gate::start(lo(26), app.addr, Policy::RefuseSources(vec![checker_source], Refusal::Reset)).await;
    let close =
        Gate::start(lo(48), app.addr, Policy::RefuseSources(vec![checker_source], Refusal::Close)).await;
    let dir = ProbesDir::new();
    let mut config = String::new();
    for (name, firewall) in [("reset", &reset), ("close", &close)] {
        let nlb = format!(
            "profile = \"aws-nlb\"\nurl = \"http://{}/healthz\"\nsource = \"{checker_source}\"",
            firewall.addr
        );
        config.push_str(&target(name, &client_keys("http", firewall.addr, "/"), &[("nlb", &nlb)]));
    }
    dir.file("shop.toml", &config);
    let round = probe_and_diff(&dir).await;
    for (name, firewall) in [("reset", &reset), ("close", &close)] {
        assert!(round.outcome(name, "client").ok);
        let nlb = round.outcome(name, "nlb");
        assert!(!nlb.ok, "{nlb:#?}");
        assert_eq!(nlb.request.source, Some(checker_source));
        assert_mismatch(
            round.only_mismatch(name),
            Want {
                checker: "nlb",
                direction: Direction::FalseDrain,
                diagnosis: Diagnosis::CheckerSourceBlocked,
                flipped: &[Attribute::Source],
                evidence: &[
                    "with source 127.0.0.66",
                    "with the default source address (127.0.0.",
                    &format!(
                        "allow the checker's source 127.0.0.66 through the firewall in front of {}",
                        firewall.addr
                    ),
                ],
            },
        );
        // Every connection from the checker's source was refused, the others admitted.
        let admissions = firewall.admissions();
        assert!(admissions.iter().all(|a| a.admitted != (a.peer.ip() == checker_source)), "{admissions:#?}");
        assert!(firewall.refused() >= 1);
    }
}

#[tokio::test]
async fn allowlist_without_gcp_ranges_is_checker_source_blocked_without_traffic() {
    // loadBalancerSourceRanges that forgot GCP's health-check ranges (kubernetes/kubernetes#40778):
    // probes from here pass, but the real checks from 35.191.0.0/16 would be dropped.
    let app = HttpServer::start(lo(28), always("ok")).await;
    let dir = ProbesDir::new();
    let mut config = target(
        "shop",
        &client_keys("http", app.addr, "/"),
        &[("gcp", &format!("profile = \"gcp\"\nurl = \"http://{}/\"", app.addr))],
    );
    config = config.replacen(
        "[target.client]",
        "allow_sources = [\"198.51.100.0/24\", \"130.211.0.0/22\"]\n\n[target.client]",
        1,
    );
    dir.file("shop.toml", &config);
    let round = probe_and_diff(&dir).await;
    assert!(round.outcome("shop", "client").ok && round.outcome("shop", "gcp").ok);
    let m = round.only_mismatch("shop");
    assert_mismatch(
        m,
        Want {
            checker: "gcp",
            direction: Direction::FalseDrain,
            diagnosis: Diagnosis::CheckerSourceBlocked,
            flipped: &[],
            evidence: &["35.191.0.0/16", "198.51.100.0/24, 130.211.0.0/22"],
        },
    );
    assert_eq!(m.basis, Basis::Audit);
    assert!(!m.evidence.contains("130.211.0.0/22 ("), "a covered range is not reported: {}", m.evidence);
    assert_eq!(app.requests().len(), 2, "the audit sends nothing: {:#?}", app.requests());
}

// ---------------------------------------------------------------------------------------------
// no_local_endpoints

/// kube-proxy's `healthCheckNodePort` answer for a node with `n` local ready endpoints.
fn kube_proxy_health(n: u32) -> Reply {
    let body = format!(
        "{{\"service\":{{\"namespace\":\"shop\",\"name\":\"web\"}},\"localEndpoints\":{n},\"serviceProxyHealthy\":true}}"
    );
    let status = if n == 0 { 503 } else { 200 };
    Reply::status(status, body)
        .header("content-type", "application/json")
        .header("x-load-balancing-endpoint-weight", &n.to_string())
}

#[tokio::test]
async fn kube_proxy_503_without_local_endpoints_while_clients_are_served_is_no_local_endpoints() {
    // ETP Local: the node's last local pod is gone; the node port still forwards elsewhere
    // (kubernetes/kubernetes#50977), so users are served while the LB drains the node.
    let node_port = HttpServer::start(lo(29), always("cart")).await;
    let health = HttpServer::start(lo(29), router(|_| kube_proxy_health(0))).await;
    let dir = ProbesDir::new();
    dir.file(
        "shop.toml",
        &target(
            "shop",
            &client_keys("http", node_port.addr, "/"),
            &[("kube-proxy", &format!("profile = \"kube-proxy\"\nurl = \"http://{}/healthz\"", health.addr))],
        ),
    );
    let round = probe_and_diff(&dir).await;
    assert!(round.outcome("shop", "client").ok);
    let kp = round.outcome("shop", "kube-proxy");
    assert_eq!(
        (kp.error, kp.status, kp.local_endpoints),
        (Some(ErrorCode::NoLocalEndpoints), Some(503), Some(0))
    );
    assert_mismatch(
        round.only_mismatch("shop"),
        Want {
            checker: "kube-proxy",
            direction: Direction::FalseDrain,
            diagnosis: Diagnosis::NoLocalEndpoints,
            flipped: &[Attribute::Address],
            evidence: &["localEndpoints=0 (503)", &health.addr.to_string()],
        },
    );
}

#[tokio::test]
async fn kube_proxy_200_while_the_node_port_refuses_is_no_local_endpoints() {
    // kube-proxy still counts a local endpoint while the node port refuses connections: the LB
    // keeps sending users to a node that cannot serve them.
    let node_port = ClosedPort::new(lo(30));
    let health = HttpServer::start(lo(30), router(|_| kube_proxy_health(1))).await;
    let dir = ProbesDir::new();
    dir.file(
        "shop.toml",
        &target(
            "shop",
            &client_keys("http", node_port.addr, "/"),
            &[("kube-proxy", &format!("profile = \"kube-proxy\"\nurl = \"http://{}/healthz\"", health.addr))],
        ),
    );
    let round = probe_and_diff(&dir).await;
    assert_eq!(round.outcome("shop", "client").error, Some(ErrorCode::ConnectRefused));
    assert_eq!(round.outcome("shop", "kube-proxy").local_endpoints, Some(1));
    assert_mismatch(
        round.only_mismatch("shop"),
        Want {
            checker: "kube-proxy",
            direction: Direction::Blackhole,
            diagnosis: Diagnosis::NoLocalEndpoints,
            flipped: &[Attribute::Address],
            evidence: &["localEndpoints=1", "connect_refused", &node_port.addr.to_string()],
        },
    );
}

// ---------------------------------------------------------------------------------------------
// node_port_vs_proxy

#[tokio::test]
async fn node_port_passing_while_the_proxy_answers_502_is_node_port_vs_proxy() {
    // The NLB checks the node port directly; users go through the ingress proxy, whose upstream
    // is broken.
    let node_port = HttpServer::start(lo(31), always("ok")).await;
    let proxy = HttpServer::start(lo(32), router(|_| Reply::status(502, "bad gateway"))).await;
    let dir = ProbesDir::new();
    dir.file(
        "shop.toml",
        &target(
            "shop",
            &client_keys("http", proxy.addr, "/cart"),
            &[("nlb", &format!("profile = \"aws-nlb\"\nurl = \"http://{}/healthz\"", node_port.addr))],
        ),
    );
    let round = probe_and_diff(&dir).await;
    assert_eq!(round.outcome("shop", "client").status, Some(502));
    assert!(round.outcome("shop", "nlb").ok);
    assert_mismatch(
        round.only_mismatch("shop"),
        Want {
            checker: "nlb",
            direction: Direction::Blackhole,
            diagnosis: Diagnosis::NodePortVsProxy,
            flipped: &[Attribute::Address],
            evidence: &["client got 502", &proxy.addr.to_string(), &node_port.addr.to_string()],
        },
    );
}

// ---------------------------------------------------------------------------------------------
// sni_mismatch

#[tokio::test]
async fn checker_without_sni_gets_the_default_certificate_is_sni_mismatch() {
    // The App Gateway probes by IP, without SNI, and verifies the certificate: the server hands
    // out its default certificate (MicrosoftDocs/azure-docs#120493, istio/istio#31421).
    let ca = Ca::new("shop test CA");
    let site = TlsSite::new(ca.leaf(&["default.invalid"])).vhost("shop.test", ca.leaf(&["shop.test"]));
    let app = HttpServer::start_tls(lo(33), site, always("ok")).await;
    let dir = ProbesDir::new();
    let ca_file = ca.write_pem(dir.path(), "ca.pem");
    let client = format!("{}\nca_file = \"{}\"", client_keys("https", app.addr, "/"), ca_file.display());
    let appgw = format!(
        "profile = \"azure-appgw\"\nurl = \"https://{}/\"\nca_file = \"{}\"",
        app.addr,
        ca_file.display()
    );
    dir.file("shop.toml", &target("shop", &client, &[("appgw", &appgw)]));
    let round = probe_and_diff(&dir).await;
    assert!(round.outcome("shop", "client").ok);
    assert_eq!(round.outcome("shop", "appgw").error, Some(ErrorCode::TlsCertNameMismatch));
    assert!(app.snis().contains(&None), "the checker sent no SNI: {:?}", app.snis());
    assert_mismatch(
        round.only_mismatch("shop"),
        Want {
            checker: "appgw",
            direction: Direction::FalseDrain,
            diagnosis: Diagnosis::SniMismatch,
            flipped: &[Attribute::Sni],
            evidence: &["tls_cert_name_mismatch", "no SNI", "SNI shop.test"],
        },
    );
}

// ---------------------------------------------------------------------------------------------
// host_route_mismatch

#[tokio::test]
async fn ip_host_header_landing_on_the_default_backend_is_host_route_mismatch() {
    // Host-based routing: shop.test goes to the app, anything else to the default backend's 404
    // (kubernetes/ingress-nginx#388, kedacore/http-add-on#1096).
    let ingress = HttpServer::start(
        lo(34),
        router(|req| match host_name(req.host.as_deref()) {
            "shop.test" => Reply::ok("cart"),
            _ => Reply::status(404, "default backend - 404"),
        }),
    )
    .await;
    let dir = ProbesDir::new();
    dir.file(
        "shop.toml",
        &target(
            "shop",
            &client_keys("http", ingress.addr, "/"),
            &[("alb", &format!("profile = \"aws-alb\"\nurl = \"http://{}/\"", ingress.addr))],
        ),
    );
    let round = probe_and_diff(&dir).await;
    assert!(round.outcome("shop", "client").ok);
    let alb = round.outcome("shop", "alb");
    assert_eq!(alb.status, Some(404));
    assert_eq!(alb.request.host.as_deref(), Some(ingress.addr.to_string().as_str()), "the ALB sends ip:port");
    assert_mismatch(
        round.only_mismatch("shop"),
        Want {
            checker: "alb",
            direction: Direction::FalseDrain,
            diagnosis: Diagnosis::HostRouteMismatch,
            flipped: &[Attribute::Host],
            evidence: &["checker got 404", &format!("Host {}", ingress.addr), "Host shop.test"],
        },
    );
}

// ---------------------------------------------------------------------------------------------
// proxy_protocol_mismatch

#[tokio::test]
async fn ppv2_health_check_to_a_listener_without_proxy_protocol_is_proxy_protocol_mismatch() {
    // NLB with proxy_protocol_v2.enabled sends the header to the health port too, which does
    // not parse it (kubernetes/ingress-nginx#10982).
    let health_port = HttpServer::start(lo(35), always("ok")).await;
    let dir = ProbesDir::new();
    dir.file(
        "shop.toml",
        &target(
            "shop",
            &client_keys("http", health_port.addr, "/healthz"),
            &[(
                "nlb",
                &format!(
                    "profile = \"aws-nlb\"\nurl = \"http://{}/healthz\"\nproxy_protocol = \"v2\"",
                    health_port.addr
                ),
            )],
        ),
    );
    let round = probe_and_diff(&dir).await;
    assert!(round.outcome("shop", "client").ok);
    assert!(!round.outcome("shop", "nlb").ok);
    assert_mismatch(
        round.only_mismatch("shop"),
        Want {
            checker: "nlb",
            direction: Direction::FalseDrain,
            diagnosis: Diagnosis::ProxyProtocolMismatch,
            flipped: &[Attribute::ProxyProtocol],
            evidence: &["PROXY v2", "no PROXY header"],
        },
    );
    // `--no-attribution`: the listener's 400 to a PROXY header still names it, unconfirmed.
    let off = AttributionSettings { enabled: false, ..AttributionSettings::default() };
    let round = probe_and_diff_with(&dir, &off).await;
    let m = round.only_mismatch("shop");
    assert_eq!(m.diagnosis, Diagnosis::ProxyProtocolMismatch, "{}", m.evidence);
    assert!(m.flipped.is_empty() && m.evidence.contains("not confirmed"), "{}", m.evidence);
}

#[tokio::test]
async fn health_check_without_proxy_header_to_a_proxy_protocol_listener_is_proxy_protocol_mismatch() {
    // A listener with `proxy_protocol on`: the LB's traffic carries the header, the Classic
    // ELB's check does not (aptible/docker-nginx#75), and nginx closes it ("broken header").
    let app = HttpServer::start(lo(37), always("ok")).await;
    let listener = Gate::start(lo(36), app.addr, Policy::RequireProxyHeader).await;
    let dir = ProbesDir::new();
    let client = format!("{}\nproxy_protocol = \"v1\"", client_keys("http", listener.addr, "/"));
    dir.file(
        "shop.toml",
        &target(
            "shop",
            &client,
            &[("clb", &format!("profile = \"aws-clb\"\nurl = \"http://{}/\"", listener.addr))],
        ),
    );
    let round = probe_and_diff(&dir).await;
    assert!(round.outcome("shop", "client").ok);
    assert!(!round.outcome("shop", "clb").ok);
    assert_mismatch(
        round.only_mismatch("shop"),
        Want {
            checker: "clb",
            direction: Direction::FalseDrain,
            diagnosis: Diagnosis::ProxyProtocolMismatch,
            flipped: &[Attribute::ProxyProtocol],
            evidence: &["no PROXY header", "PROXY v1"],
        },
    );
    assert!(listener.refused() >= 1);
}

// ---------------------------------------------------------------------------------------------
// status_matcher_mismatch

#[tokio::test]
async fn readiness_204_failed_by_a_200_only_checker_is_status_matcher_mismatch() {
    // The app's readiness answers 204; kubelet and users accept it, GCP wants exactly 200
    // (weaviate/weaviate#1039). And nginx's blanket 301 on :80, accepted by browsers, failed by
    // GCP (kubernetes/ingress-gce#937).
    let app = HttpServer::start(
        lo(38),
        router(|req| match req.path.as_str() {
            "/v1/.well-known/ready" => Reply::status(204, ""),
            _ => Reply::status(301, "").header("location", "https://shop.test/"),
        }),
    )
    .await;
    let dir = ProbesDir::new();
    let gcp = |path: &str| format!("profile = \"gcp\"\nurl = \"http://{}{path}\"", app.addr);
    let mut config = target(
        "ready",
        &client_keys("http", app.addr, "/v1/.well-known/ready"),
        &[("gcp", &gcp("/v1/.well-known/ready"))],
    );
    config.push_str(&target("redirect", &client_keys("http", app.addr, "/"), &[("gcp", &gcp("/"))]));
    dir.file("shop.toml", &config);
    let round = probe_and_diff(&dir).await;
    // The 301 is not a matter of matchers: the check is redirected (issue 12).
    for (name, status, diagnosis) in
        [("ready", 204, Diagnosis::StatusMatcherMismatch), ("redirect", 301, Diagnosis::CheckerRedirected)]
    {
        assert!(round.outcome(name, "client").ok);
        assert_eq!(round.outcome(name, "gcp").status, Some(status));
        assert_mismatch(
            round.only_mismatch(name),
            Want {
                checker: "gcp",
                direction: Direction::FalseDrain,
                diagnosis,
                flipped: &[],
                evidence: &[
                    &format!("checker got {status}"),
                    "its matcher (200) rejects",
                    "(200-399) accepts",
                ],
            },
        );
    }
}

// ---------------------------------------------------------------------------------------------
// checker_redirected, redirect_masks_outage

#[tokio::test]
async fn health_check_redirected_to_https_is_checker_redirected() {
    // The app redirects every request without X-Forwarded-Proto: https (drone/drone#2706), to a
    // Location that carries user info and a token: both are redacted wherever it is shown.
    let app = HttpServer::start(
        lo(121),
        router(|req| match req.header("x-forwarded-proto") {
            Some("https") => Reply::ok("ok"),
            _ => Reply::status(301, "")
                .header("location", "https://ops:hunter2@shop.test/healthz?token=t0ken-9d"),
        }),
    )
    .await;
    let dir = ProbesDir::new();
    let client =
        format!("{}\nheaders = {{ x-forwarded-proto = \"https\" }}", client_keys("http", app.addr, "/"));
    let gcp = format!("profile = \"gcp\"\nurl = \"http://{}/healthz\"", app.addr);
    dir.file("shop.toml", &target("shop", &client, &[("gcp", &gcp)]));
    let shown = "https://ops:<redacted>@shop.test/healthz?token=<redacted>";
    for attribution in [true, false] {
        let settings = AttributionSettings { enabled: attribution, ..AttributionSettings::default() };
        let round = probe_and_diff_with(&dir, &settings).await;
        assert!(round.outcome("shop", "client").ok);
        assert_eq!(round.outcome("shop", "client").location, None);
        let checker = round.outcome("shop", "gcp");
        assert_eq!((checker.status, checker.location.as_deref()), (Some(301), Some(shown)));
        let flipped: &[Attribute] = if attribution { &[Attribute::Headers] } else { &[] };
        let healed: &[&str] =
            if attribution { &["with the headers [x-forwarded-proto] the check succeeds"] } else { &[] };
        let m = round.only_mismatch("shop");
        assert_mismatch(
            m,
            Want {
                checker: "gcp",
                direction: Direction::FalseDrain,
                diagnosis: Diagnosis::CheckerRedirected,
                flipped,
                evidence: &[
                    &format!("checker got 301 on {} (Location: {shown}), which its matcher (200) rejects", app.addr),
                    "exempt the health path from the redirect, or check the scheme and port the redirect points \
                     to (https on port 443)",
                ],
            },
        );
        assert!(healed.iter().all(|h| m.evidence.contains(h)), "{}", m.evidence);
        let table = round.table();
        assert!(table.contains(&format!("Location: {shown}")), "the table shows the Location:\n{table}");
        let json = serde_json::to_string(&round.outcomes).expect("outcomes serialize");
        for secret in ["hunter2", "t0ken-9d"] {
            assert!(
                !table.contains(secret) && !json.contains(secret) && !m.evidence.contains(secret),
                "{secret}"
            );
        }
    }
}

#[tokio::test]
async fn checker_passing_on_a_redirect_while_users_get_503_is_redirect_masks_outage() {
    // nginx answers 301 on the HTTP port whatever the app's state (wellcomecollection/platform#608);
    // HAProxy accepts 3xx, users' route is down.
    let app = HttpServer::start(
        lo(122),
        router(|req| match req.path.as_str() {
            "/" => Reply::status(301, "").header("location", "https://shop.test/"),
            _ => Reply::status(503, "no healthy upstream"),
        }),
    )
    .await;
    let dir = ProbesDir::new();
    let haproxy = format!("profile = \"haproxy\"\nurl = \"http://{}/\"", app.addr);
    dir.file("shop.toml", &target("shop", &client_keys("http", app.addr, "/cart"), &[("lb", &haproxy)]));
    let round = probe_and_diff(&dir).await;
    assert_eq!(round.outcome("shop", "client").status, Some(503));
    let lb = round.outcome("shop", "lb");
    assert!(lb.ok);
    assert_eq!((lb.status, lb.location.as_deref()), (Some(301), Some("https://shop.test/")));
    assert_mismatch(
        round.only_mismatch("shop"),
        Want {
            checker: "lb",
            direction: Direction::Blackhole,
            diagnosis: Diagnosis::RedirectMasksOutage,
            flipped: &[Attribute::Path],
            evidence: &[
                &format!("checker passes on 301 from {} (Location: https://shop.test/)", app.addr),
                "which its matcher (200-399) accepts, while the client got 503",
                "make the check follow the users' path",
                "or accept 2xx only",
            ],
        },
    );
    let table = round.table();
    assert!(table.contains("lb: ok on 301 Location: https://shop.test/"), "{table}");
}

// ---------------------------------------------------------------------------------------------
// user_agent_dependent

#[tokio::test]
async fn app_redirecting_only_the_elb_user_agent_is_user_agent_dependent() {
    // A browser-detection middleware answers 302 to ELB-HealthChecker (fnando/browser#275); a WAF
    // rule answers 403 to it.
    let app = HttpServer::start(
        lo(39),
        router(|req| {
            let elb = req.header("user-agent").is_some_and(|ua| ua.starts_with("ELB-HealthChecker"));
            match (elb, req.path.as_str()) {
                (true, "/waf") => Reply::status(403, "forbidden"),
                (true, _) => Reply::status(302, "").header("location", "/unsupported-browser"),
                (false, _) => Reply::ok("ok"),
            }
        }),
    )
    .await;
    let dir = ProbesDir::new();
    let alb = |path: &str| format!("profile = \"aws-alb\"\nurl = \"http://{}{path}\"", app.addr);
    let mut config = target("browser", &client_keys("http", app.addr, "/"), &[("alb", &alb("/"))]);
    config.push_str(&target("waf", &client_keys("http", app.addr, "/waf"), &[("alb", &alb("/waf"))]));
    dir.file("shop.toml", &config);
    let round = probe_and_diff(&dir).await;
    for (name, status) in [("browser", 302), ("waf", 403)] {
        assert!(round.outcome(name, "client").ok);
        assert_eq!(round.outcome(name, "alb").status, Some(status));
        assert_mismatch(
            round.only_mismatch(name),
            Want {
                checker: "alb",
                direction: Direction::FalseDrain,
                diagnosis: Diagnosis::UserAgentDependent,
                flipped: &[Attribute::UserAgent],
                evidence: &[
                    &format!("checker got {status}"),
                    "User-Agent ELB-HealthChecker/2.0",
                    "User-Agent parallax/",
                ],
            },
        );
    }
}

// ---------------------------------------------------------------------------------------------
// dns_wrong_address

#[tokio::test]
async fn name_still_pointing_at_the_old_lb_is_dns_wrong_address() {
    // The LB was replaced; the record still points at the old one.
    let new_lb = HttpServer::start(lo(42), always("ok")).await;
    let old_lb = HttpServer::start(lo(41), always("old")).await;
    let dns = DnsServer::start(lo(40), &[("shop.test", Answer::Addrs(vec![lo(41)]))]).await;
    let dir = ProbesDir::new();
    let client = format!(
        "url = \"http://shop.test:{}/\"\nresolver = \"{}\"\nexpect_addresses = [\"{}\"]",
        new_lb.port(),
        dns.addr,
        lo(42)
    );
    dir.file(
        "shop.toml",
        &target(
            "shop",
            &client,
            &[("nlb", &format!("profile = \"aws-nlb\"\nurl = \"http://{}/\"", new_lb.addr))],
        ),
    );
    let round = probe_and_diff(&dir).await;
    assert_eq!(round.outcome("shop", "client").error, Some(ErrorCode::DnsUnexpectedAddress));
    assert!(round.outcome("shop", "nlb").ok);
    let m = round.only_mismatch("shop");
    assert_mismatch(
        m,
        Want {
            checker: "nlb",
            direction: Direction::Blackhole,
            diagnosis: Diagnosis::DnsWrongAddress,
            flipped: &[],
            evidence: &["shop.test answered 127.0.0.41, expected 127.0.0.42"],
        },
    );
    assert!(m.attribution.is_none(), "nothing to switch for a client that never dialed");
    assert!(old_lb.requests().is_empty(), "the old LB is not probed");
    assert_eq!(new_lb.requests().len(), 1, "only the checker, no hybrid: {:#?}", new_lb.requests());
}

// ---------------------------------------------------------------------------------------------
// http_version_dependent, and a route needing two attributes

#[tokio::test]
async fn server_refusing_http10_fails_haproxys_options_check_is_http_version_dependent() {
    // Servers that only speak HTTP/1.1 and later: a hyper server answering HTTP/1.0 with 505
    // HTTP Version Not Supported, and Envoy's 426 (accept_http_10 is off by default). Users
    // speak HTTP/1.1; the HAProxy-profile check sends `OPTIONS / HTTP/1.0`. The HTTP version is
    // an attribute parallax switches: the check as HTTP/1.1 succeeds. (The 426 case was
    // `unattributed` before the version could be switched.)
    for (ip, refusal, reason) in [(49, 505, "HTTP Version Not Supported"), (43, 426, "Upgrade Required")] {
        let app = HttpServer::start(
            lo(ip),
            router(move |req| {
                if req.version == http::Version::HTTP_10 {
                    Reply::status(refusal, reason)
                } else {
                    Reply::ok("ok")
                }
            }),
        )
        .await;
        let dir = ProbesDir::new();
        dir.file(
            "shop.toml",
            &target(
                "shop",
                &client_keys("http", app.addr, "/"),
                &[("haproxy", &format!("profile = \"haproxy\"\nurl = \"http://{}/\"", app.addr))],
            ),
        );
        let round = probe_and_diff(&dir).await;
        assert!(round.outcome("shop", "client").ok);
        assert_eq!(round.outcome("shop", "haproxy").status, Some(refusal));
        let seen = app.requests();
        assert!(
            seen.iter().any(|r| r.method == "OPTIONS" && r.version == http::Version::HTTP_10),
            "the check is HAProxy's OPTIONS / HTTP/1.0: {seen:#?}"
        );
        let m = round.only_mismatch("shop");
        let got =
            format!("the checker's HTTP/1.0 gets {refusal}, the HTTP/1.1 the client speaks gets ok (200)");
        assert_mismatch(
            m,
            Want {
                checker: "haproxy",
                direction: Direction::FalseDrain,
                diagnosis: Diagnosis::HttpVersionDependent,
                flipped: &[Attribute::HttpVersion],
                evidence: &[
                    &format!("checker got {refusal}"),
                    "with HTTP/1.0; with HTTP/1.1 it succeeds",
                    &got,
                    "accept_http_10",
                    "http-check send ver HTTP/1.1",
                ],
            },
        );
        assert_eq!(m.causes.len(), 1);
        assert_eq!(m.causes[0].diagnosis, Diagnosis::HttpVersionDependent);
        assert_eq!(m.causes[0].attributes, [Attribute::HttpVersion]);
        // The version hybrid really spoke HTTP/1.1, with the Host HTTP/1.1 requires.
        assert!(
            app.requests()
                .iter()
                .any(|r| r.method == "OPTIONS" && r.version == http::Version::HTTP_11 && r.host.is_some()),
            "{:#?}",
            app.requests()
        );
    }
}

#[tokio::test]
async fn route_needing_both_host_and_path_names_both() {
    // Host-based routing with a path rule: only shop.test/cart reaches the app. The checker
    // gets both wrong, so neither switch alone fixes it; the client breaks with either of the
    // checker's values. The diagnosis names the likelier one (a 404 points at the Host) and the
    // evidence says both are needed.
    let ingress = HttpServer::start(
        lo(47),
        router(|req| match (host_name(req.host.as_deref()), req.path.as_str()) {
            ("shop.test", "/cart") => Reply::ok("cart"),
            _ => Reply::status(404, "default backend - 404"),
        }),
    )
    .await;
    let dir = ProbesDir::new();
    dir.file(
        "shop.toml",
        &target(
            "shop",
            &client_keys("http", ingress.addr, "/cart"),
            &[("alb", &format!("profile = \"aws-alb\"\nurl = \"http://{}/healthz\"", ingress.addr))],
        ),
    );
    let round = probe_and_diff(&dir).await;
    assert!(round.outcome("shop", "client").ok);
    assert_eq!(round.outcome("shop", "alb").status, Some(404));
    let m = round.only_mismatch("shop");
    assert_mismatch(
        m,
        Want {
            checker: "alb",
            direction: Direction::FalseDrain,
            diagnosis: Diagnosis::HostRouteMismatch,
            flipped: &[Attribute::Host, Attribute::Path],
            evidence: &["checker got 404", "host and path together"],
        },
    );
    let attribution = m.attribution.as_ref().expect("attribution ran");
    assert!(
        attribution.hybrids.iter().all(|h| !(h.flipped && h.switched == parallax::diff::Side::Checker)),
        "no single switch fixes the checker: {attribution:#?}"
    );
}

#[tokio::test]
async fn users_failing_only_with_host_and_path_together_is_a_compound_blackhole() {
    // Host-based routing: the users' vhost shop.test is down on /cart (503) and up on /healthz;
    // any other Host lands on the default vhost (200 on /healthz, 404 on /cart). The ALB-style
    // check (Host = ip:port, /healthz) passes. No single one of the users' values makes the check
    // fail like them: their Host alone still passes, their path alone gets the default vhost's
    // 404; both together reproduce the 503.
    let ingress = HttpServer::start(
        lo(49),
        router(|req| match (host_name(req.host.as_deref()), req.path.as_str()) {
            ("shop.test", "/cart") => Reply::status(503, "no healthy upstream"),
            (_, "/cart") => Reply::status(404, "default backend - 404"),
            _ => Reply::ok("ok"),
        }),
    )
    .await;
    let dir = ProbesDir::new();
    dir.file(
        "shop.toml",
        &target(
            "shop",
            &client_keys("http", ingress.addr, "/cart"),
            &[("alb", &format!("profile = \"aws-alb\"\nurl = \"http://{}/healthz\"", ingress.addr))],
        ),
    );
    let round = probe_and_diff(&dir).await;
    assert_eq!(round.outcome("shop", "client").status, Some(503));
    assert!(round.outcome("shop", "alb").ok);
    let m = round.only_mismatch("shop");
    let context = format!("{m:#?}");
    assert_eq!(m.direction, Direction::Blackhole, "{context}");
    let attribution = m.attribution.as_ref().expect("attribution ran");
    let heal = attribution.compound().expect("a set reproduces the users' failure");
    assert_eq!(heal.attributes, [Attribute::Host, Attribute::Path], "{context}");
    assert_eq!((heal.ok, heal.status), (false, Some(503)), "{context}");
    let causes: Vec<&[Attribute]> = m.causes.iter().map(|c| c.attributes.as_slice()).collect();
    // The primary is what the single switches name (the users' path alone changes the check's
    // result); the causes name both.
    assert_eq!(causes, [[Attribute::Path], [Attribute::Host]], "{context}");
    assert_eq!(m.diagnosis, m.causes[0].diagnosis, "{context}");
    assert_eq!(m.diagnosis, Diagnosis::ShallowHealthPath, "{context}");
    assert_eq!(m.causes[1].diagnosis, Diagnosis::HostRouteMismatch, "{context}");
    for needle in [
        "with Host shop.test",
        "alone still passes (200)",
        "with path /cart alone gets 404",
        "with all of them it fails like users",
        "503",
        "needs all of these together",
        "the check does not reach the users' vhost",
        "make it check what the route depends on",
    ] {
        assert!(m.evidence.contains(needle), "{needle:?} missing from {:?}", m.evidence);
    }
    for cause in &m.causes {
        assert!(cause.evidence.contains("not enough alone"), "{:?}", cause.evidence);
        assert!(!cause.evidence.contains("set the check's Host"), "{:?}", cause.evidence);
    }
}

// ---------------------------------------------------------------------------------------------
// Attribution bounds

#[tokio::test]
async fn attribution_never_exceeds_its_bounds() {
    // Two checkers that differ from the client in many attributes, every request plain HTTP so
    // that each probe and each hybrid is one request the servers count. The app serves GET with
    // the token; the health port answers 503 to everything.
    let app = HttpServer::start(
        lo(44),
        router(|req| match (req.method.as_str(), req.header("authorization")) {
            ("GET", Some(v)) if v == format!("Bearer {TOKEN}") => Reply::ok("cart"),
            _ => Reply::status(401, "unauthorized"),
        }),
    )
    .await;
    let health = HttpServer::start(lo(45), router(|_| Reply::status(503, "draining"))).await;
    let mut dir = ProbesDir::new();
    dir.env("SHOP_TOKEN", TOKEN);
    let client = format!(
        "{}\nheaders = {{ authorization = \"Bearer ${{env:SHOP_TOKEN}}\", x-tenant = \"shop\" }}",
        client_keys("http", app.addr, "/cart")
    );
    let haproxy =
        format!("profile = \"haproxy\"\nurl = \"http://{}/healthz\"\nsource = \"{}\"", health.addr, lo(68));
    let alb = format!("profile = \"aws-alb\"\nurl = \"http://{}/\"", health.addr);
    dir.file("shop.toml", &target("shop", &client, &[("haproxy", &haproxy), ("alb", &alb)]));

    let requests = || app.requests().len() + health.requests().len();
    let from_checker_source =
        || app.requests().iter().chain(health.requests().iter()).filter(|r| r.peer.ip() == lo(68)).count();
    let default = AttributionSettings::default();
    for settings in [
        default,
        AttributionSettings { max_hybrids: 3, ..default },
        AttributionSettings { max_hybrids: 0, ..default },
        AttributionSettings { enabled: false, ..default },
    ] {
        let (before, before_from_source) = (requests(), from_checker_source());
        let round = probe_and_diff_with(&dir, &settings).await;
        let sent = requests() - before;
        assert_eq!(round.mismatches.len(), 2, "{:#?}", round.mismatches);
        let mut hybrids = 0;
        for m in &round.mismatches {
            assert_eq!(m.direction, Direction::FalseDrain);
            match &m.attribution {
                None => assert!(!settings.enabled, "attribution ran while off: {m:#?}"),
                Some(a) => {
                    assert!(settings.enabled);
                    // Single switches first, then combinations with what the cap leaves.
                    let probed = a.hybrids.len() + a.combinations.len();
                    assert!(probed <= settings.max_hybrids, "{settings:?}: {a:#?}");
                    assert_eq!(a.hybrids.len(), settings.max_hybrids.min(2 * a.differences.len()));
                    assert_eq!(a.hybrids.len() + a.not_tried, 2 * a.differences.len());
                    assert!(a.combinations.is_empty() || a.not_tried == 0, "singles before combinations");
                    hybrids += probed;
                }
            }
        }
        // Three probes for the round (client and two checkers), then exactly the hybrids the
        // mismatches report: nothing unreported reaches the target.
        assert_eq!(sent, 3 + hybrids, "{settings:?}");
        let cap = if settings.enabled { settings.max_hybrids } else { 0 };
        assert!(sent <= 3 + 2 * cap, "{settings:?}: {sent} requests");
        if settings == default {
            // The HAProxy check differs in 8 attributes (16 hybrids planned, the HTTP version
            // among them): the cap cut 4, and left nothing for combinations.
            let m =
                round.mismatches.iter().find(|m| &*m.checker_view == "haproxy").expect("haproxy mismatch");
            let a = m.attribution.as_ref().expect("attribution ran");
            assert_eq!(a.differences.len(), 8, "{:?}", a.differences);
            assert_eq!((a.hybrids.len(), a.not_tried, a.combinations.len()), (12, 4, 0));
        }
        // Each request came from the source its view binds: the HAProxy check and every hybrid
        // that keeps (or takes) its source from 127.0.0.68, none other.
        let with_source: usize = round
            .mismatches
            .iter()
            .filter_map(|m| m.attribution.as_ref())
            .flat_map(|a| a.hybrids.iter())
            .filter(|h| h.hybrid.source.is_some())
            .count();
        assert_eq!(from_checker_source() - before_from_source, 1 + with_source, "{settings:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// The binary

#[tokio::test]
async fn parallax_probe_prints_the_mismatch_json_line_and_exits_1() {
    let ca = Ca::new("shop test CA");
    let app = HttpServer::start_tls(lo(46), TlsSite::new(ca.leaf(&["shop.test"])), always("cart")).await;
    let dir = ProbesDir::new();
    let ca_file = ca.write_pem(dir.path(), "ca.pem");
    let client = format!(
        "{}\nca_file = \"{}\"\nheaders = {{ authorization = \"Bearer ${{env:SHOP_TOKEN}}\" }}",
        client_keys("https", app.addr, "/cart"),
        ca_file.display()
    );
    let nlb = format!("profile = \"aws-nlb\"\nurl = \"http://{}/healthz\"", app.addr);
    dir.file("shop.toml", &target("shop", &client, &[("nlb", &nlb)]));

    let config = dir.path().to_owned();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_parallax"))
            .args(["probe", "--format", "json", "-c"])
            .arg(&config)
            .env_remove("PARALLAX_CONFIG")
            .env_remove("PARALLAX_LOG")
            .env("SHOP_TOKEN", TOKEN)
            .output()
            .expect("run the parallax binary")
    })
    .await
    .expect("the binary's thread");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "stdout: {stdout}\nstderr: {stderr}");
    assert!(!stdout.contains(TOKEN) && !stderr.contains(TOKEN), "the token leaked");

    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let kinds: Vec<&str> = lines.iter().map(|l| l["type"].as_str().unwrap_or("?")).collect();
    assert_eq!(kinds, ["outcome", "outcome", "mismatch", "summary"], "{stdout}");
    let m = &lines[2];
    assert_eq!(m["target"], "shop");
    assert_eq!(m["client_view"], "client");
    assert_eq!(m["checker_view"], "nlb");
    assert_eq!(m["direction"], "false_drain");
    assert_eq!(m["diagnosis"], "checker_protocol_mismatch");
    assert_eq!(m["flipped"], serde_json::json!(["tls"]));
    let evidence = m["evidence"].as_str().expect("evidence is a string");
    assert_eq!(evidence, format!("checker got http_tls_required on {}; with tls on it succeeds", app.addr));
    assert_eq!(lines[3]["mismatches"], 1);
    // The server saw the round (client over TLS, checker in plain HTTP) and the hybrids.
    assert!(app.requests().iter().any(|r| r.path == "/cart" && r.sni.as_deref() == Some("shop.test")));
}

// ---------------------------------------------------------------------------------------------
// certificate_rejected, default_certificate_served

/// One round against `site` served on `ip`: users of shop.test verifying with `ca`, and an
/// ALB-style HTTPS check (no verification, no SNI).
async fn behind_an_alb_check(ip: std::net::IpAddr, site: TlsSite, ca: &Ca) -> Round {
    let app = HttpServer::start_tls(ip, site, always("ok")).await;
    let dir = ProbesDir::new();
    let ca_file = ca.write_pem(dir.path(), "ca.pem");
    let client = format!("{}\nca_file = \"{}\"", client_keys("https", app.addr, "/"), ca_file.display());
    let alb = format!("profile = \"aws-alb\"\nurl = \"https://{}/\"", app.addr);
    dir.file("shop.toml", &target("shop", &client, &[("alb", &alb)]));
    probe_and_diff(&dir).await
}

#[tokio::test]
async fn expired_certificate_behind_a_checker_that_does_not_verify_is_certificate_rejected() {
    // The certificate renewal failed; the ALB's HTTPS check verifies nothing and keeps passing.
    let ca = Ca::new("shop test CA");
    let site = TlsSite::new(ca.leaf_with(&["shop.test"], support::certs::Validity::EXPIRED));
    let round = behind_an_alb_check(lo(140), site, &ca).await;
    assert_eq!(round.outcome("shop", "client").error, Some(ErrorCode::TlsCertExpired));
    assert!(round.outcome("shop", "alb").ok);
    assert_mismatch(
        round.only_mismatch("shop"),
        Want {
            checker: "alb",
            direction: Direction::Blackhole,
            diagnosis: Diagnosis::CertificateRejected,
            flipped: &[Attribute::Verify],
            evidence: &[
                "client got tls_cert_expired",
                "the client's verification rejects the certificate CN=shop.test (SANs shop.test; issuer \
                 CN=shop test CA; valid 2001-01-01T00:00:00Z to 2002-01-01T00:00:00Z): it expired at \
                 2002-01-01T00:00:00Z, while the checker, which does not verify certificates, passes",
                "; renew the certificate",
            ],
        },
    );
}

#[tokio::test]
async fn missing_tls_secret_serves_the_default_certificate_is_default_certificate_served() {
    // The Ingress of shop.test names a TLS Secret that does not exist: the controller has a
    // certificate for other.test only and serves its self-signed default one for shop.test.
    let ca = Ca::new("shop test CA");
    let fake = support::certs::self_signed(&["ingress.local"]);
    let site = TlsSite::new(fake).vhost("other.test", ca.leaf(&["other.test"]));
    let round = behind_an_alb_check(lo(141), site, &ca).await;
    let client = round.outcome("shop", "client");
    assert_eq!(client.error, Some(ErrorCode::TlsCertUntrusted));
    let fingerprint = client.tls.as_ref().and_then(|t| t.cert_sha256.clone()).expect("cert_sha256");
    assert_eq!(fingerprint.len(), 64);
    assert!(round.outcome("shop", "alb").ok);
    assert_mismatch(
        round.only_mismatch("shop"),
        Want {
            checker: "alb",
            direction: Direction::Blackhole,
            diagnosis: Diagnosis::DefaultCertificateServed,
            flipped: &[Attribute::Verify],
            evidence: &[
                "client got tls_cert_untrusted",
                "the certificate served for shop.test, CN=ingress.local (SANs ingress.local;",
                &fingerprint[..16],
                "is the same one the server gives a handshake without SNI, and it does not cover shop.test",
                "the TLS Secret for shop.test is missing or in the wrong namespace",
            ],
        },
    );
}

/// The server refuses every request that asks to close the connection (`Connection: close`,
/// which the ALB's check sends and the users' client does not): something parallax does not
/// switch. No hybrid changes either view's result, so no set is searched and parallax says it
/// cannot attribute the disagreement, naming what differs that it did not switch, rather than
/// guessing.
#[tokio::test]
async fn server_refusing_connection_close_is_unattributed() {
    let app = HttpServer::start(
        lo(50),
        router(|req| {
            let closing = req
                .headers
                .iter()
                .any(|(k, v)| k.eq_ignore_ascii_case("connection") && v.eq_ignore_ascii_case("close"));
            if closing {
                Reply::status(503, "connection: close refused")
            } else {
                Reply::ok("ok")
            }
        }),
    )
    .await;
    let dir = ProbesDir::new();
    dir.file(
        "shop.toml",
        &target(
            "shop",
            &client_keys("http", app.addr, "/healthz"),
            &[("alb", &format!("profile = \"aws-alb\"\nurl = \"http://{}/healthz\"", app.addr))],
        ),
    );
    let round = probe_and_diff(&dir).await;
    assert!(round.outcome("shop", "client").ok);
    assert_eq!(round.outcome("shop", "alb").status, Some(503));
    let m = round.only_mismatch("shop");
    assert_eq!((m.direction, m.diagnosis), (Direction::FalseDrain, Diagnosis::Unattributed), "{m:#?}");
    assert!(m.flipped.is_empty() && m.causes.is_empty(), "{m:#?}");
    let attribution = m.attribution.as_ref().expect("attribution ran");
    assert!(!attribution.hybrids.is_empty() && attribution.hybrids.iter().all(|h| !h.flipped), "{m:#?}");
    assert!(
        m.evidence.contains("Connection: close"),
        "the evidence names what it did not switch: {}",
        m.evidence
    );
}
