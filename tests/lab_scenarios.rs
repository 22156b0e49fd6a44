//! The lab's scenarios: each field failure of the seed's tables (and CHECKERS.md §2) reproduced
//! for real with nginx, HAProxy, dnsmasq and iptables in network namespaces, and `parallax probe`
//! (the binary, run inside the client namespace) asserted to name it: outcome codes, mismatch
//! direction, diagnosis, flipped attributes. Tests are named after the failure. `tests/lab/`
//! describes the topology and the ingress.
//!
//! Root is required (CI runs as root): a lab that cannot create namespaces fails the test.

mod lab;

use lab::ingress::ADMIN_AUTHORIZATION;
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

/// The LB's HTTP check goes to the TLS port (CHECKERS.md §2.3): nginx answers 400 "The plain
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
/// checker range, 35.191.0.0/16: the checks' SYNs are dropped (CHECKERS.md §2.14).
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
