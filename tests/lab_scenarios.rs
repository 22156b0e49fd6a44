//! The lab's scenarios: each field failure of the seed's tables (and docs/field-failures.md) reproduced
//! for real with nginx, HAProxy, dnsmasq and iptables in network namespaces, and `parallax probe`
//! (the binary, run inside the client namespace) asserted to name it: outcome codes, mismatch
//! direction, diagnosis, flipped attributes. Tests are named after the failure. `tests/lab/`
//! describes the topology and the ingress.
//!
//! Root is required (CI runs as root): a lab that cannot create namespaces fails the test.

mod lab;

use lab::ingress::{ADMIN_AUTHORIZATION, PORTAL_COOKIE};
use lab::probe::Expect::{Fail, Ok};
use lab::{Lab, Ns, CHECKER_IP, DNS, DNS_ANSWER_SHOP, NODE_IPS, OLD_VIP, VIP};

fn node(i: usize) -> String {
    NODE_IPS[i].to_string()
}

/// One target named `name`: the client view's keys, then `[[target.checker]]` tables.
fn target(name: &str, client: &str, checkers: &[&str]) -> String {
    let mut toml = format!("[[target]]\nname = \"{name}\"\n\n[target.client]\n{client}\n");
    for c in checkers {
        toml.push_str(&format!("\n[[target.checker]]\n{c}\n"));
    }
    toml.push('\n');
    toml
}

/// Users of `host` over HTTPS through the LB's TCP passthrough (VIP:443), trusting the lab CA.
fn https_client(lab: &Lab, host: &str, path: &str) -> String {
    format!("url = \"https://{host}{path}\"\nconnect_to = \"{VIP}:443\"\nca_file = \"{}\"", lab.ca_file())
}

/// Users of `host` over plain HTTP through the LB (VIP:80, HAProxy in HTTP mode).
fn http_client(host: &str, path: &str) -> String {
    format!("url = \"http://{host}{path}\"\nconnect_to = \"{VIP}:80\"")
}

// ---------------------------------------------------------------------------------------------
// The seed's "Load Balancer Health Check Mismatches" table
// ---------------------------------------------------------------------------------------------

/// The LB (HAProxy) checks the NodePort, which goes straight to a pod, while users go through
/// the ingress proxy, whose route to checkout is broken: nodes look healthy, users get 503.
#[test]
fn node_port_check_passes_while_the_proxy_route_fails_is_node_port_vs_proxy() {
    let lab = Lab::start("node_port_vs_proxy");
    // Exactly HAProxy's check of be_ingress_http/n1: OPTIONS / HTTP/1.0 to the node port.
    let checker = format!("name = \"lb\"\nprofile = \"haproxy\"\nurl = \"http://{}:30080/\"", node(0));
    let r = lab.probe(Ns::Client, &target("checkout", &http_client("checkout.lab", "/pay"), &[&checker]));
    r.assert_outcome("checkout", "client", Fail("http", "http_status"));
    assert_eq!(r.outcome("checkout", "client")["status"], 503);
    r.assert_outcome("checkout", "lb", Ok);
    r.assert_mismatch("checkout", "lb", "blackhole", "node_port_vs_proxy", &["address"]);
    let ha = lab.haproxy_states();
    assert!(
        ha.iter().filter(|s| s.backend == "be_ingress_http").all(|s| s.status == "UP"),
        "HAProxy keeps both nodes in rotation: {ha:#?}"
    );
}

/// The check asks the app's own `/healthz`, which ignores the database every real route needs.
#[test]
fn shallow_health_path_passes_while_users_get_5xx_is_shallow_health_path() {
    let lab = Lab::start("shallow_health_path");
    let checker = format!(
        "name = \"gcp\"\nprofile = \"gcp\"\nurl = \"http://{}/healthz\"\nhost = \"checkout.lab\"",
        node(0)
    );
    let r =
        lab.probe(Ns::Client, &target("checkout", &https_client(&lab, "checkout.lab", "/pay"), &[&checker]));
    r.assert_outcome("checkout", "client", Fail("http", "http_status"));
    assert_eq!(r.outcome("checkout", "client")["status"], 503);
    r.assert_outcome("checkout", "gcp", Ok);
    r.assert_mismatch("checkout", "gcp", "blackhole", "shallow_health_path", &["path"]);
}

/// externalTrafficPolicy: Local. kube-proxy's healthCheckNodePort says node 1 has no local
/// endpoint (503, `localEndpoints: 0`) and node 2 has one (200): the LB drains node 1 while
/// users are served through node 2.
#[test]
fn etp_local_node_without_local_endpoints_is_no_local_endpoints() {
    let lab = Lab::start("etp_local");
    let mut toml = String::new();
    for i in 0..2 {
        let checker = format!(
            "name = \"kube-proxy\"\nprofile = \"kube-proxy\"\nurl = \"http://{}:32456/healthz\"",
            node(i)
        );
        toml.push_str(&target(
            &format!("shop-node{}", i + 1),
            &https_client(&lab, "shop.lab", "/cart"),
            &[&checker],
        ));
    }
    let r = lab.probe(Ns::Client, &toml);
    r.assert_outcome("shop-node1", "client", Ok);
    r.assert_outcome("shop-node1", "kube-proxy", Fail("expect", "no_local_endpoints"));
    let k1 = r.outcome("shop-node1", "kube-proxy");
    assert_eq!((k1["status"].as_u64(), k1["local_endpoints"].as_u64()), (Some(503), Some(0)));
    r.assert_mismatch("shop-node1", "kube-proxy", "false_drain", "no_local_endpoints", &[]);
    r.assert_outcome("shop-node2", "kube-proxy", Ok);
    assert_eq!(r.outcome("shop-node2", "kube-proxy")["local_endpoints"], 1);
    r.assert_no_mismatch("shop-node2");
    // HAProxy, checking the same port, agrees: node 1 out, node 2 in.
    let ha = lab.haproxy_states();
    let state = |s: &str| {
        ha.iter().find(|x| x.backend == "be_ingress_tls" && x.server == s).map(|x| x.status.clone())
    };
    assert_eq!((state("n1").as_deref(), state("n2").as_deref()), (Some("DOWN"), Some("UP")), "{ha:#?}");
}

/// The LB's HTTP check goes to the TLS port (field failure 3): nginx answers 400 "The plain
/// HTTP request was sent to HTTPS port".
#[test]
fn plain_http_health_check_to_an_https_listener_is_checker_protocol_mismatch() {
    let lab = Lab::start("http_to_https");
    let checker = format!("name = \"gcp\"\nprofile = \"gcp\"\nurl = \"http://{}:443/healthz\"", node(1));
    let r = lab.probe(Ns::Client, &target("shop", &https_client(&lab, "shop.lab", "/cart"), &[&checker]));
    r.assert_outcome("shop", "client", Ok);
    r.assert_outcome("shop", "gcp", Fail("http", "http_tls_required"));
    assert_eq!(r.outcome("shop", "gcp")["status"], 400);
    r.assert_mismatch("shop", "gcp", "false_drain", "checker_protocol_mismatch", &["tls"]);
}

/// The nodes' firewall (loadBalancerSourceRanges) allows 130.211.0.0/22 but not GCP's other
/// checker range, 35.191.0.0/16: the checks' SYNs are dropped (field failure 14).
#[test]
fn health_checker_source_missing_from_the_allowlist_is_checker_source_blocked() {
    let lab = Lab::start("source_blocked");
    let checker = format!(
        "name = \"gcp\"\nprofile = \"gcp\"\nurl = \"http://{}/healthz\"\nsource = \"{CHECKER_IP}\"",
        node(0)
    );
    // The same check from the prober's own address passes: only the audit can see its gap.
    let from_here =
        format!("name = \"gcp-from-here\"\nprofile = \"gcp\"\nurl = \"http://{}/healthz\"", node(0));
    let mut toml = target("shop", &http_client("shop.lab", "/cart"), &[&checker, &from_here]);
    // The firewall's allowlist, declared: the audit compares it with GCP's documented ranges.
    toml = toml.replacen(
        "name = \"shop\"\n",
        &format!("name = \"shop\"\nallow_sources = {:?}\n", lab::FIREWALL_ALLOWED),
        1,
    );
    let r = lab.probe(Ns::Client, &toml);
    r.assert_outcome("shop", "client", Ok);
    r.assert_outcome("shop", "gcp", Fail("connect", "connect_timeout"));
    assert_eq!(r.outcome("shop", "gcp")["request"]["source"], CHECKER_IP.to_string());
    r.assert_mismatch("shop", "gcp", "false_drain", "checker_source_blocked", &["source"]);
    r.assert_outcome("shop", "gcp-from-here", Ok);
    let audit: Vec<_> = r.mismatches.iter().filter(|m| m["basis"] == "audit").collect();
    assert!(
        audit.iter().any(|m| m["checker_view"] == "gcp-from-here"
            && m["direction"] == "false_drain"
            && m["diagnosis"] == "checker_source_blocked"
            && m["evidence"].as_str().is_some_and(|e| e.contains("35.191.0.0/16"))),
        "the allow_sources audit names GCP's missing range for the check that passes from here\n{}",
        r.context()
    );
}

// ---------------------------------------------------------------------------------------------
// TLS, SNI and Host routing
// ---------------------------------------------------------------------------------------------

/// A verifying checker that sends no SNI (Envoy's active check without `sni` on the cluster,
/// field failure 8) gets the controller's default certificate, not the host's.
#[test]
fn checker_without_sni_gets_the_default_certificate_is_sni_mismatch() {
    let lab = Lab::start("no_sni");
    let checker = format!(
        "name = \"envoy\"\nprofile = \"envoy\"\nurl = \"https://{}/cart\"\nhost = \"shop.lab\"\nverify = true\nca_file = \"{}\"",
        node(1),
        lab.ca_file()
    );
    let r = lab.probe(Ns::Client, &target("shop", &https_client(&lab, "shop.lab", "/cart"), &[&checker]));
    r.assert_outcome("shop", "client", Ok);
    r.assert_outcome("shop", "envoy", Fail("tls", "tls_cert_untrusted"));
    let tls = &r.outcome("shop", "envoy")["tls"];
    assert!(
        tls["cert_subject"].as_str().is_some_and(|s| s.contains(lab::certs::FAKE_CERT_CN)),
        "the checker saw the default certificate: {tls}"
    );
    assert_eq!(r.outcome("shop", "envoy")["request"]["sni"], serde_json::Value::Null);
    r.assert_mismatch("shop", "envoy", "false_drain", "sni_mismatch", &["sni"]);
}

/// The TLS secret of `api.shop.lab` was issued for `shop.lab` only: users' verification fails
/// while the LB's TLS check, which verifies nothing, passes.
#[test]
fn certificate_san_missing_the_host_is_a_blackhole_on_the_certificate_name() {
    let lab = Lab::start("san_missing");
    // GCP's SSL health check: a TCP + TLS handshake, no SNI, no verification.
    let checker = format!("name = \"gcp-ssl\"\nprofile = \"gcp\"\nurl = \"tls://{}:443\"", node(1));
    let r = lab.probe(Ns::Client, &target("api", &https_client(&lab, "api.shop.lab", "/"), &[&checker]));
    r.assert_outcome("api", "client", Fail("tls", "tls_cert_name_mismatch"));
    assert_eq!(r.outcome("api", "client")["tls"]["cert_sans"], serde_json::json!(["shop.lab"]));
    r.assert_outcome("api", "gcp-ssl", Ok);
    // Issue 12: the certificate is what users reject, not the SNI (switching it changes nothing).
    let m = r.assert_mismatch("api", "gcp-ssl", "blackhole", "certificate_rejected", &["verify"]);
    let evidence = m["evidence"].as_str().unwrap_or_default();
    assert!(
        evidence.contains("api.shop.lab is not in its SANs") && evidence.contains("(SANs shop.lab;"),
        "{evidence}"
    );
}

/// The ALB's check carries `Host: <target ip>:<port>` (field failure 5): nginx routes it to
/// the default server, whose default backend answers 404, while users' Host is routed.
#[test]
fn checker_host_matching_no_route_is_host_route_mismatch() {
    let lab = Lab::start("host_no_route");
    let checker = format!("name = \"alb\"\nprofile = \"aws-alb\"\nurl = \"http://{}/cart\"", node(0));
    let r = lab.probe(Ns::Client, &target("shop", &http_client("shop.lab", "/cart"), &[&checker]));
    r.assert_outcome("shop", "client", Ok);
    r.assert_outcome("shop", "alb", Fail("http", "http_status"));
    assert_eq!(r.outcome("shop", "alb")["status"], 404);
    assert_eq!(r.outcome("shop", "alb")["request"]["host"], format!("{}:80", node(0)));
    r.assert_mismatch("shop", "alb", "false_drain", "host_route_mismatch", &["host"]);
}

/// TLS terminates at the LB (HAProxy on VIP:8443), and the nodes serve plain HTTP, but the
/// NLB-style check expects TLS at the node: the node answers the ClientHello in plain text.
#[test]
fn tls_terminating_at_the_lb_while_the_check_expects_it_at_the_node_is_checker_protocol_mismatch() {
    let lab = Lab::start("tls_other_layer");
    let client = format!(
        "url = \"https://shop.lab/cart\"\nconnect_to = \"{VIP}:8443\"\nca_file = \"{}\"",
        lab.ca_file()
    );
    let checker = format!("name = \"nlb\"\nprofile = \"aws-nlb\"\nurl = \"https://{}:80/healthz\"", node(0));
    let r = lab.probe(Ns::Client, &target("shop", &client, &[&checker]));
    r.assert_outcome("shop", "client", Ok);
    assert_eq!(r.outcome("shop", "client")["tls"]["cert_subject"], "CN=shop.lab");
    r.assert_outcome("shop", "nlb", Fail("tls", "tls_plaintext_peer"));
    r.assert_mismatch("shop", "nlb", "false_drain", "checker_protocol_mismatch", &[]);
}

/// The ingress proxies plain HTTP (`backend-protocol: HTTP`, the default) to a pod that speaks
/// HTTPS: the pod's 400 "plain HTTP request was sent to HTTPS port" reaches the users although
/// they spoke TLS, while the pod's own check (kubelet-style, HTTPS to the pod) passes.
#[test]
fn backend_protocol_mismatch_behind_the_proxy_is_node_port_vs_proxy() {
    let lab = Lab::start("backend_protocol");
    let checker = format!("name = \"kubelet\"\nprofile = \"kubelet\"\nurl = \"https://{}:8443/\"", node(1));
    let r = lab.probe(Ns::Client, &target("secure", &https_client(&lab, "secure.lab", "/"), &[&checker]));
    r.assert_outcome("secure", "client", Fail("http", "http_tls_required"));
    let client = r.outcome("secure", "client");
    assert_eq!((client["status"].as_u64(), client["request"]["scheme"].as_str()), (Some(400), Some("https")));
    r.assert_outcome("secure", "kubelet", Ok);
    r.assert_mismatch("secure", "kubelet", "blackhole", "node_port_vs_proxy", &["address"]);
}

/// The reverse: the ingress speaks HTTPS (`backend-protocol: HTTPS`) to a pod that serves plain
/// HTTP; the upstream handshake fails and users get 502, while the NodePort check, straight to
/// the pod, passes. The check differs from the users' request in two coupled attributes (the
/// address and TLS: the pod's port speaks no TLS), so no single switch reproduces either
/// view's result and parallax says so rather than guessing, listing what it tried.
#[test]
fn backend_protocol_https_to_a_plain_pod_is_a_blackhole_no_single_switch_explains() {
    let lab = Lab::start("backend_protocol_rev");
    let checker = format!("name = \"kubelet\"\nprofile = \"kubelet\"\nurl = \"http://{}:30080/\"", node(0));
    let r = lab.probe(Ns::Client, &target("legacy", &https_client(&lab, "legacy.lab", "/"), &[&checker]));
    r.assert_outcome("legacy", "client", Fail("http", "http_status"));
    assert_eq!(r.outcome("legacy", "client")["status"], 502);
    r.assert_outcome("legacy", "kubelet", Ok);
    // No single switch, but the users' address and Host together reproduce the 502 (issue 12:
    // compound causes in blackholes): the check bypasses the ingress users go through.
    let m = r.assert_mismatch("legacy", "kubelet", "blackhole", "node_port_vs_proxy", &["tls", "address"]);
    let evidence = m["evidence"].as_str().unwrap_or_default();
    assert!(
        evidence.contains("client got 502")
            && evidence.contains("address and host together do")
            && evidence.contains("fails like users (kubelet~host+address, 502)"),
        "the evidence names the users' 502 and the set that reproduces it: {evidence}"
    );
}

// ---------------------------------------------------------------------------------------------
// Ingress failure points a prober can see
// ---------------------------------------------------------------------------------------------

/// The Ingress names a TLS secret that does not exist: the controller serves its self-signed
/// default certificate for the host. Users' verification fails; the LB's check doesn't verify.
#[test]
fn missing_tls_secret_serves_the_default_certificate_to_users() {
    let lab = Lab::start("missing_secret");
    let checker = format!("name = \"alb\"\nprofile = \"aws-alb\"\nurl = \"https://{}/healthz\"", node(1));
    let r = lab.probe(Ns::Client, &target("blog", &https_client(&lab, "blog.lab", "/"), &[&checker]));
    r.assert_outcome("blog", "client", Fail("tls", "tls_cert_untrusted"));
    let tls = &r.outcome("blog", "client")["tls"];
    assert!(tls["cert_subject"].as_str().is_some_and(|s| s.contains(lab::certs::FAKE_CERT_CN)), "{tls}");
    r.assert_outcome("blog", "alb", Ok);
    // The checker passes only because it verifies nothing: verification is what flips, and the
    // certificate users get for blog.lab is the one a handshake without SNI gets (issue 12: not
    // sni_mismatch, switching SNI changes nothing).
    let m = r.assert_mismatch("blog", "alb", "blackhole", "default_certificate_served", &["verify"]);
    let evidence = m["evidence"].as_str().unwrap_or_default();
    assert!(
        evidence.contains("is the same one the server gives a handshake without SNI")
            && evidence.contains("the TLS Secret for blog.lab is missing or in the wrong namespace"),
        "{evidence}"
    );
}

/// Users ask for a host no Ingress rule names (`store.lab`): the default backend's 404. The LB's
/// check, configured with the routed host, passes.
#[test]
fn ingress_host_rule_not_matching_is_host_route_mismatch() {
    let lab = Lab::start("host_rule");
    let checker =
        format!("name = \"gcp\"\nprofile = \"gcp\"\nurl = \"http://{}/cart\"\nhost = \"shop.lab\"", node(0));
    let r = lab.probe(Ns::Client, &target("store", &http_client("store.lab", "/cart"), &[&checker]));
    r.assert_outcome("store", "client", Fail("http", "http_status"));
    assert_eq!(r.outcome("store", "client")["status"], 404);
    r.assert_outcome("store", "gcp", Ok);
    r.assert_mismatch("store", "gcp", "blackhole", "host_route_mismatch", &["host"]);
}

/// `api.lab`'s Ingress has one path rule, `/v1/`; users call `/v2/`, which falls to the default
/// backend (404) while the check on `/v1/health` passes.
#[test]
fn ingress_path_rule_not_matching_is_shallow_health_path() {
    let lab = Lab::start("path_rule");
    let checker = format!(
        "name = \"gcp\"\nprofile = \"gcp\"\nurl = \"http://{}/v1/health\"\nhost = \"api.lab\"",
        node(0)
    );
    let r = lab.probe(Ns::Client, &target("api", &https_client(&lab, "api.lab", "/v2/orders"), &[&checker]));
    r.assert_outcome("api", "client", Fail("http", "http_status"));
    assert_eq!(r.outcome("api", "client")["status"], 404);
    r.assert_outcome("api", "gcp", Ok);
    r.assert_mismatch("api", "gcp", "blackhole", "shallow_health_path", &["path"]);
}

/// The Service behind `orders.lab` has no ready endpoints: the controller answers 503 for the
/// host, while the LB checks the controller's own `/healthz` on the default server.
#[test]
fn backend_without_ready_endpoints_is_a_blackhole_behind_the_controller_healthz() {
    let lab = Lab::start("no_endpoints");
    let checker = format!("name = \"gcp\"\nprofile = \"gcp\"\nurl = \"http://{}/healthz\"", node(1));
    let r = lab.probe(Ns::Client, &target("orders", &https_client(&lab, "orders.lab", "/"), &[&checker]));
    r.assert_outcome("orders", "client", Fail("http", "http_status"));
    assert_eq!(r.outcome("orders", "client")["status"], 503);
    r.assert_outcome("orders", "gcp", Ok);
    // The checker's request with the users' Host reproduces their 503: the check (the
    // controller's /healthz on the default server) never reaches the users' vhost.
    let m = r.assert_mismatch("orders", "gcp", "blackhole", "host_route_mismatch", &["host"]);
    assert!(m["evidence"].as_str().is_some_and(|e| e.contains("503")), "{m}");
}

// ---------------------------------------------------------------------------------------------
// PROXY protocol
// ---------------------------------------------------------------------------------------------

/// The traffic port expects PROXY v2 (the NLB sends it with users' traffic), but GCP-style
/// checks send none: nginx rejects the "broken header" (field failure 9, the reverse of the
/// NLB case).
#[test]
fn proxy_protocol_expected_but_not_sent_by_the_checker_is_proxy_protocol_mismatch() {
    let lab = Lab::start("pp_not_sent");
    let client =
        format!("url = \"http://shop.lab/cart\"\nconnect_to = \"{}:8080\"\nproxy_protocol = \"v2\"", node(0));
    let checker = format!("name = \"gcp\"\nprofile = \"gcp\"\nurl = \"http://{}:8080/healthz\"", node(0));
    let r = lab.probe(Ns::Client, &target("shop", &client, &[&checker]));
    r.assert_outcome("shop", "client", Ok);
    let o = r.outcome("shop", "gcp");
    assert!(
        o["ok"] == false
            && matches!(o["error"].as_str(), Some("http_malformed" | "http_reset" | "connect_reset")),
        "nginx drops a connection without its PROXY header: {o}"
    );
    r.assert_mismatch("shop", "gcp", "false_drain", "proxy_protocol_mismatch", &["proxy_protocol"]);
}

/// The NLB's target group has PROXY v2 on, so its checks carry a `LOCAL` header, but the port
/// does not expect one (field failure 9, kubernetes/ingress-nginx#10982).
#[test]
fn proxy_protocol_sent_by_the_checker_but_not_expected_is_proxy_protocol_mismatch() {
    let lab = Lab::start("pp_unexpected");
    let checker = format!(
        "name = \"nlb\"\nprofile = \"aws-nlb\"\nurl = \"http://{}/healthz\"\nproxy_protocol = \"v2\"",
        node(0)
    );
    let r = lab.probe(Ns::Client, &target("shop", &http_client("shop.lab", "/cart"), &[&checker]));
    r.assert_outcome("shop", "client", Ok);
    let o = r.outcome("shop", "nlb");
    assert_eq!(o["ok"], false, "{o}");
    assert_eq!(o["request"]["proxy_protocol"], "v2");
    r.assert_mismatch("shop", "nlb", "false_drain", "proxy_protocol_mismatch", &["proxy_protocol"]);
}

// ---------------------------------------------------------------------------------------------
// Matchers, auth, DNS, reachability
// ---------------------------------------------------------------------------------------------

/// The app's readiness endpoint answers 204: kubelet's matcher (200-399) passes it, GCP's
/// (exactly 200) does not (field failure 4, weaviate/weaviate#1039).
#[test]
fn status_204_accepted_by_clients_fails_a_200_only_checker_is_status_matcher_mismatch() {
    let lab = Lab::start("status_204");
    let gcp =
        format!("name = \"gcp\"\nprofile = \"gcp\"\nurl = \"http://{}/ready\"\nhost = \"shop.lab\"", node(0));
    let kubelet =
        format!("name = \"kubelet\"\nprofile = \"kubelet\"\nurl = \"http://{}:30080/ready\"", node(0));
    let r = lab.probe(Ns::Client, &target("shop", &http_client("shop.lab", "/ready"), &[&gcp, &kubelet]));
    r.assert_outcome("shop", "client", Ok);
    assert_eq!(r.outcome("shop", "client")["status"], 204);
    r.assert_outcome("shop", "gcp", Fail("http", "http_status"));
    assert_eq!(r.outcome("shop", "gcp")["status"], 204);
    r.assert_outcome("shop", "kubelet", Ok);
    r.assert_mismatch("shop", "gcp", "false_drain", "status_matcher_mismatch", &[]);
    assert!(
        !r.mismatches.iter().any(|m| m["checker_view"] == "kubelet"),
        "kubelet accepts the 204\n{}",
        r.context()
    );
}

/// The ingress redirects plain HTTP to HTTPS (ssl-redirect): users follow it and are served, a
/// 200-only checker on :80 fails on the 308 (field failure 1). The matcher is not what to fix:
/// the check is redirected.
#[test]
fn redirect_accepted_by_clients_fails_a_200_only_checker_is_checker_redirected() {
    let lab = Lab::start("status_3xx");
    let checker =
        format!("name = \"gcp\"\nprofile = \"gcp\"\nurl = \"http://{}/\"\nhost = \"www.lab\"", node(0));
    let r = lab.probe(Ns::Client, &target("www", &http_client("www.lab", "/"), &[&checker]));
    r.assert_outcome("www", "client", Ok);
    assert_eq!(r.outcome("www", "client")["status"], 308);
    r.assert_outcome("www", "gcp", Fail("http", "http_status"));
    assert_eq!(r.outcome("www", "gcp")["status"], 308);
    assert_eq!(r.outcome("www", "gcp")["location"], "https://www.lab/");
    r.assert_mismatch("www", "gcp", "false_drain", "checker_redirected", &[]);
}

/// Every route of `admin.lab` needs credentials; the check sends none (field failure 15).
#[test]
fn health_path_behind_auth_is_auth_required() {
    let lab = Lab::start("auth");
    let client = format!(
        "{}\nheaders = {{ authorization = \"{ADMIN_AUTHORIZATION}\" }}",
        http_client("admin.lab", "/")
    );
    let checker =
        format!("name = \"gcp\"\nprofile = \"gcp\"\nurl = \"http://{}/\"\nhost = \"admin.lab\"", node(0));
    let r = lab.probe(Ns::Client, &target("admin", &client, &[&checker]));
    r.assert_outcome("admin", "client", Ok);
    r.assert_outcome("admin", "gcp", Fail("http", "http_status"));
    assert_eq!(r.outcome("admin", "gcp")["status"], 401);
    r.assert_mismatch("admin", "gcp", "false_drain", "auth_required", &["headers"]);
    let secret = ADMIN_AUTHORIZATION.trim_start_matches("Basic ");
    assert!(
        !r.stdout.contains(secret) && !r.stderr.contains(secret),
        "the credentials never appear in parallax's output"
    );
}

/// DNS still answers with the old load balancer's address during a migration.
#[test]
fn dns_answering_the_old_load_balancer_is_dns_wrong_address() {
    let lab = Lab::start("dns_old_lb");
    let client = format!(
        "url = \"https://shop.lab/cart\"\nresolver = \"{DNS}\"\nexpect_addresses = [\"{VIP}\"]\nca_file = \"{}\"",
        lab.ca_file()
    );
    let checker = format!("name = \"gcp\"\nprofile = \"gcp\"\nurl = \"http://{}/healthz\"", node(1));
    let r = lab.probe(Ns::Client, &target("shop", &client, &[&checker]));
    r.assert_outcome("shop", "client", Fail("dns", "dns_unexpected_address"));
    assert_eq!(r.outcome("shop", "client")["resolved"], serde_json::json!([DNS_ANSWER_SHOP.to_string()]));
    r.assert_outcome("shop", "gcp", Ok);
    let m = r.assert_mismatch("shop", "gcp", "blackhole", "dns_wrong_address", &[]);
    assert!(m["evidence"].as_str().is_some_and(|e| e.contains(&OLD_VIP.to_string())), "{m}");
}

/// Users still reach the decommissioned LB address (a stale `connect_to` or hosts entry):
/// the router answers ICMP host unreachable.
#[test]
fn decommissioned_lb_address_is_connect_unreachable() {
    let lab = Lab::start("unreachable");
    let client = format!("url = \"http://shop.lab/cart\"\nconnect_to = \"{OLD_VIP}:80\"");
    let checker = format!("name = \"gcp\"\nprofile = \"gcp\"\nurl = \"http://{}/healthz\"", node(1));
    let r = lab.probe(Ns::Client, &target("shop", &client, &[&checker]));
    r.assert_outcome("shop", "client", Fail("connect", "connect_unreachable"));
    r.assert_outcome("shop", "gcp", Ok);
    assert_eq!(r.exit, 1, "a failed client view exits 1");
    r.assert_mismatch("shop", "gcp", "blackhole", "node_port_vs_proxy", &["address"]);
}

// ---------------------------------------------------------------------------------------------
// Certificates (issue 12)
// ---------------------------------------------------------------------------------------------

/// `expired.lab`'s certificate was not renewed: users' clients refuse it, while the ALB's HTTPS
/// check (no verification) passes on the controller's `/healthz`.
#[test]
fn expired_certificate_behind_an_alb_style_checker_is_certificate_rejected() {
    let lab = Lab::start("expired_cert");
    let checker = format!("name = \"alb\"\nprofile = \"aws-alb\"\nurl = \"https://{}/healthz\"", node(1));
    let r = lab.probe(Ns::Client, &target("expired", &https_client(&lab, "expired.lab", "/"), &[&checker]));
    r.assert_outcome("expired", "client", Fail("tls", "tls_cert_expired"));
    let detail = r.outcome("expired", "client")["detail"].as_str().unwrap_or_default().to_owned();
    assert!(
        detail.starts_with("the certificate expired at 2002-01-01T00:00:00Z (now ")
            && detail.contains(
                "the server presented CN=expired.lab (SANs expired.lab; issuer CN=parallax lab CA;"
            ),
        "{detail}"
    );
    r.assert_outcome("expired", "alb", Ok);
    let m = r.assert_mismatch("expired", "alb", "blackhole", "certificate_rejected", &["verify"]);
    let evidence = m["evidence"].as_str().unwrap_or_default();
    assert!(
        evidence.contains("it expired at 2002-01-01T00:00:00Z")
            && evidence.contains("the checker, which does not verify certificates, passes")
            && evidence.contains("renew the certificate"),
        "{evidence}"
    );
}

/// `pinned.lab` serves a self-signed `CA:TRUE` certificate made the ordinary way (`openssl req
/// -x509`); users pin it by giving exactly it as `ca_file`, as curl `--cacert` does. A client
/// pinning another such certificate still refuses it, as untrusted.
#[test]
fn pinned_self_signed_ca_certificate_given_as_ca_file_succeeds() {
    let lab = Lab::start("pinned_cert");
    let client =
        |ca: &str| format!("url = \"https://pinned.lab/\"\nconnect_to = \"{VIP}:443\"\nca_file = \"{ca}\"");
    let checker = format!("name = \"gcp-ssl\"\nprofile = \"gcp\"\nurl = \"tls://{}:443\"", node(1));
    let mut toml = target("pinned", &client(&lab.cert_file("pinned")), &[&checker]);
    toml.push_str(&target("other", &client(&lab.cert_file("pinned-other")), &[&checker]));
    let r = lab.probe(Ns::Client, &toml);
    r.assert_outcome("pinned", "client", Ok);
    assert_eq!(r.outcome("pinned", "client")["tls"]["cert_subject"], "CN=pinned.lab");
    r.assert_no_mismatch("pinned");
    r.assert_outcome("other", "client", Fail("tls", "tls_cert_untrusted"));
    let detail = r.outcome("other", "client")["detail"].as_str().unwrap_or_default().to_owned();
    assert!(detail.contains("a CA certificate (CA:TRUE)") && !detail.contains("Other("), "{detail}");

    // curl agrees on both.
    let curl = |ca: String| {
        std::process::Command::new(lab::binary("ip"))
            .args(["netns", "exec", &lab.ns(Ns::Client), &lab::binary("curl"), "-sS", "-o", "/dev/null"])
            .args(["--max-time", "5", "--cacert", &ca, "--resolve", &format!("pinned.lab:443:{VIP}")])
            .arg("https://pinned.lab/")
            .stderr(std::process::Stdio::null())
            .status()
            .expect("run curl")
            .success()
    };
    assert!(curl(lab.cert_file("pinned")), "curl --cacert accepts the pinned certificate");
    assert!(!curl(lab.cert_file("pinned-other")), "curl refuses another self-signed certificate");
}

// ---------------------------------------------------------------------------------------------
// Compound causes
// ---------------------------------------------------------------------------------------------

/// Host + matcher: a GCP check sends Host = the node IP and lands on the ingress's default
/// vhost (404); with the users' Host the same check gets the shop's readiness 204, which GCP's
/// 200-only matcher still rejects. Setting the check's Host alone would not heal it: both the
/// Host and the matcher (or the route's status) must be fixed, and parallax says so.
#[test]
fn default_vhost_404_then_204_vs_gcp_needs_host_and_matcher() {
    let lab = Lab::start("host_and_matcher");
    let gcp = format!("name = \"gcp\"\nprofile = \"gcp\"\nurl = \"http://{}/ready\"", node(0));
    let r = lab.probe(Ns::Client, &target("shop", &http_client("shop.lab", "/ready"), &[&gcp]));
    r.assert_outcome("shop", "client", Ok);
    assert_eq!(r.outcome("shop", "client")["status"], 204);
    r.assert_outcome("shop", "gcp", Fail("http", "http_status"));
    assert_eq!(r.outcome("shop", "gcp")["status"], 404);
    assert_eq!(r.outcome("shop", "gcp")["request"]["host"], node(0));
    let m = r.assert_mismatch("shop", "gcp", "false_drain", "host_route_mismatch", &[]);
    let causes: Vec<(&str, Vec<&str>)> = m["causes"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| {
                    let attrs =
                        c["attributes"].as_array().map(|v| v.iter().filter_map(|x| x.as_str()).collect());
                    (c["diagnosis"].as_str().unwrap_or_default(), attrs.unwrap_or_default())
                })
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        causes,
        [("host_route_mismatch", vec!["host"]), ("status_matcher_mismatch", vec!["matcher"])],
        "{m:#}\n{}",
        r.context()
    );
    let evidence = m["evidence"].as_str().unwrap_or_default();
    assert!(
        evidence.contains("checker got 404")
            && evidence.contains("with Host shop.lab alone still fails (204)")
            && evidence.contains("gcp~host+matcher, ok (204)")
            && evidence.contains("all of them must be fixed"),
        "{evidence}"
    );
    for c in m["causes"].as_array().into_iter().flatten() {
        assert!(c["evidence"].as_str().is_some_and(|e| e.contains("must be fixed too")), "{c:#}");
    }
    let combinations = m["attribution"]["combinations"].as_array().cloned().unwrap_or_default();
    assert!(
        combinations.iter().any(|c| c["view"] == "gcp~host+matcher" && c["healed"] == true),
        "the healing combination was probed for real: {combinations:#?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Redirects (field failures 1, 2 and 15)
// ---------------------------------------------------------------------------------------------

/// The app behind NodePort 30081 redirects every request without `X-Forwarded-Proto: https` to
/// HTTPS, the health path too: GCP's check (200 only) fails on the 301 while users, through the
/// LB on HTTPS, are served (field failure 1).
#[test]
fn health_port_301_to_https_vs_a_gcp_checker_is_checker_redirected() {
    let lab = Lab::start("redirect_gcp");
    let checker = format!("name = \"gcp\"\nprofile = \"gcp\"\nurl = \"http://{}:30081/healthz\"", node(0));
    let r = lab.probe(Ns::Client, &target("web", &https_client(&lab, "shop.lab", "/cart"), &[&checker]));
    r.assert_outcome("web", "client", Ok);
    assert_eq!(r.outcome("web", "client")["location"], serde_json::Value::Null, "no redirect, no location");
    r.assert_outcome("web", "gcp", Fail("http", "http_status"));
    let gcp = r.outcome("web", "gcp");
    assert_eq!(gcp["status"], 301);
    let location = format!("https://{}/healthz", node(0));
    assert_eq!(gcp["location"], location.as_str());
    let m = r.assert_mismatch("web", "gcp", "false_drain", "checker_redirected", &[]);
    let evidence = m["evidence"].as_str().unwrap_or_default();
    assert!(
        evidence.contains(&format!("(Location: {location})"))
            && evidence.contains("its matcher (200) rejects")
            && evidence.contains("exempt the health path from the redirect"),
        "the evidence names the Location, the matcher and what to do: {evidence}"
    );
}

/// The same app checked by an ALB (200 by default). Users' requests reach it through the ALB
/// with `X-Forwarded-Proto: https`: switching the headers heals the check, and still it is a
/// redirect, not missing credentials (the Location is no login page).
#[test]
fn health_port_301_to_https_vs_an_alb_checker_is_checker_redirected() {
    let lab = Lab::start("redirect_alb");
    let client =
        format!("{}\nheaders = {{ x-forwarded-proto = \"https\" }}", https_client(&lab, "shop.lab", "/cart"));
    let checker =
        format!("name = \"alb\"\nprofile = \"aws-alb\"\nurl = \"http://{}:30081/healthz\"", node(0));
    let r = lab.probe(Ns::Client, &target("web", &client, &[&checker]));
    r.assert_outcome("web", "client", Ok);
    r.assert_outcome("web", "alb", Fail("http", "http_status"));
    let alb = r.outcome("web", "alb");
    assert_eq!(alb["status"], 301);
    assert_eq!(alb["location"], format!("https://{}/healthz", node(0)).as_str());
    let m = r.assert_mismatch("web", "alb", "false_drain", "checker_redirected", &["headers"]);
    let evidence = m["evidence"].as_str().unwrap_or_default();
    assert!(
        evidence.contains("with the headers [x-forwarded-proto] the check succeeds"),
        "the evidence names the switch that heals the check: {evidence}"
    );
}

/// nginx redirects the HTTP port to HTTPS whatever the state of the app, which is down: HAProxy
/// (2xx and 3xx pass) keeps the backend while users get 503 (field failure 2).
#[test]
fn haproxy_passing_on_a_301_while_users_get_503_is_redirect_masks_outage() {
    let lab = Lab::start("redirect_masks");
    let checker =
        format!("name = \"lb\"\nprofile = \"haproxy\"\nurl = \"http://{}/\"\nhost = \"outage.lab\"", node(0));
    let r = lab.probe(Ns::Client, &target("outage", &https_client(&lab, "outage.lab", "/"), &[&checker]));
    r.assert_outcome("outage", "client", Fail("http", "http_status"));
    assert_eq!(r.outcome("outage", "client")["status"], 503);
    r.assert_outcome("outage", "lb", Ok);
    let lb = r.outcome("outage", "lb");
    assert_eq!((lb["status"].as_u64(), lb["location"].as_str()), (Some(301), Some("https://outage.lab/")));
    let m = r.assert_mismatch("outage", "lb", "blackhole", "redirect_masks_outage", &[]);
    let evidence = m["evidence"].as_str().unwrap_or_default();
    assert!(
        evidence.contains("checker passes on 301")
            && evidence.contains("(Location: https://outage.lab/)")
            && evidence.contains("client got 503")
            && evidence.contains("accept 2xx only"),
        "the evidence names the status, the Location, what users got and what to do: {evidence}"
    );
}

/// `portal.lab` redirects to its login page (302 `Location: …/login?next=/`) unless the session
/// cookie is sent; signed-in users get 200. With attribution, switching the headers flips the
/// check: `auth_required`. Without that flip — attribution off, or users without the cookie —
/// the same 302 is only a redirect.
#[test]
fn redirect_to_a_login_page_is_auth_required_only_when_credentials_flip_it() {
    let lab = Lab::start("redirect_login");
    let signed_in =
        format!("{}\nheaders = {{ cookie = \"{PORTAL_COOKIE}\" }}", http_client("portal.lab", "/"));
    let checker =
        format!("name = \"gcp\"\nprofile = \"gcp\"\nurl = \"http://{}/\"\nhost = \"portal.lab\"", node(0));
    let toml = target("portal", &signed_in, &[&checker]);
    let r = lab.probe(Ns::Client, &toml);
    r.assert_outcome("portal", "client", Ok);
    assert_eq!(r.outcome("portal", "client")["status"], 200);
    r.assert_outcome("portal", "gcp", Fail("http", "http_status"));
    let gcp = r.outcome("portal", "gcp");
    assert_eq!(gcp["status"], 302);
    assert_eq!(gcp["location"], "http://portal.lab/login?next=/");
    let m = r.assert_mismatch("portal", "gcp", "false_drain", "auth_required", &["headers"]);
    let evidence = m["evidence"].as_str().unwrap_or_default();
    assert!(
        evidence.contains("(Location: http://portal.lab/login?next=/)")
            && evidence.contains("with the headers [cookie] it succeeds"),
        "the evidence names the login redirect and the switch that heals it: {evidence}"
    );
    let secret = PORTAL_COOKIE.trim_start_matches("session=");
    assert!(
        !r.stdout.contains(secret) && !r.stderr.contains(secret),
        "the cookie never appears in the output"
    );

    // The codes alone cannot tell a login page from any redirect.
    let r = lab.probe_with(Ns::Client, lab::probe::LAB_DEFAULTS, &toml, &["--no-attribution"]);
    let m = r.assert_mismatch("portal", "gcp", "false_drain", "checker_redirected", &[]);
    assert!(
        m["evidence"].as_str().is_some_and(|e| e.contains("looks like a login page (not confirmed")),
        "{m}"
    );

    // Users who did not sign in get the same 302, which their matcher (200-399) accepts: no
    // credentials differ, nothing flips, and the check is redirected.
    let r = lab.probe(Ns::Client, &target("portal", &http_client("portal.lab", "/"), &[&checker]));
    r.assert_outcome("portal", "client", Ok);
    assert_eq!(r.outcome("portal", "client")["status"], 302);
    r.assert_mismatch("portal", "gcp", "false_drain", "checker_redirected", &[]);
}

/// checkout.lab is down on every route but `/healthz` (503, its database), and an ALB check of
/// `/healthz` with `Host: <node ip>:80` lands on nginx's default server (200): users fail only
/// with their Host AND their path together (their Host alone still passes on /healthz, their
/// path alone gets the default backend's 404). A compound blackhole naming both.
#[test]
fn users_failing_only_with_host_and_path_together_is_a_compound_blackhole() {
    let lab = Lab::start("compound_blackhole");
    let alb = format!("name = \"alb\"\nprofile = \"aws-alb\"\nurl = \"http://{}/healthz\"", node(0));
    let r = lab.probe(Ns::Client, &target("checkout", &http_client("checkout.lab", "/pay"), &[&alb]));
    r.assert_outcome("checkout", "client", Fail("http", "http_status"));
    assert_eq!(r.outcome("checkout", "client")["status"], 503);
    r.assert_outcome("checkout", "alb", Ok);
    let m = r.mismatch("checkout", "alb");
    assert_eq!(
        (m["direction"].as_str(), m["diagnosis"].as_str()),
        (Some("blackhole"), Some("shallow_health_path")),
        "{m:#}\n{}",
        r.context()
    );
    let causes: Vec<(&str, Vec<&str>)> = m["causes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let attrs = c["attributes"].as_array().map(|v| v.iter().filter_map(|x| x.as_str()).collect());
            (c["diagnosis"].as_str().unwrap_or_default(), attrs.unwrap_or_default())
        })
        .collect();
    assert_eq!(
        causes,
        [("shallow_health_path", vec!["path"]), ("host_route_mismatch", vec!["host"])],
        "{m:#}\n{}",
        r.context()
    );
    let evidence = m["evidence"].as_str().unwrap_or_default();
    assert!(
        evidence.contains("with Host checkout.lab alone still passes (200)")
            && evidence.contains("with path /pay alone gets 404")
            && evidence.contains("alb~host+path, 503")
            && evidence.contains("needs all of these together"),
        "{evidence}"
    );
    let combinations = m["attribution"]["combinations"].as_array().cloned().unwrap_or_default();
    assert!(
        combinations
            .iter()
            .any(|c| c["view"] == "alb~host+path" && c["healed"] == true && c["status"] == 503),
        "the reproducing combination was probed for real: {combinations:#?}"
    );
}
