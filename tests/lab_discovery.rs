//! Kubernetes discovery in the lab, end to end, with no view written by hand: a real
//! kube-apiserver (`support::kube`, on the host's loopback) holds a `type: LoadBalancer`,
//! `externalTrafficPolicy: Local` Service `shop` labelled `parallax.io/probe=true`, its
//! EndpointSlice (the one ready endpoint is on node 2) and the two Nodes (GCE `providerID`s);
//! `parallax run` in node mode runs inside node 1's namespace (the DaemonSet is hostNetwork on
//! its node) with `NODE_NAME`/`NODE_IP` set and a probes.d holding only `[defaults]`, `[admin]`
//! and `[discovery.kubernetes]`. The lab's nginx on node 1 is kube-proxy there: NodePort 30080
//! goes to the shop pod, `healthCheckNodePort` 32456 answers 503 `{"localEndpoints":0}`. The
//! daemon derives the target `svc.<ns>.shop.http` (client view: the users' request to
//! `192.0.2.11:30080`; checker views: GKE's L4 check `gcp-l4` and `kube-proxy`, both on
//! `192.0.2.11:32456/healthz`), probes it and opens the ETP Local mismatch: users the LB sends
//! to node 1 are served, while the health checks drain node 1 (`false_drain`; kube-proxy's view
//! reads `localEndpoints: 0`: `no_local_endpoints`). A second daemon, in node 2's namespace, where
//! the endpoint is local, finds every view healthy and no mismatch. Everything is read through
//! each daemon's admin API inside its node (`/api/v1/status`, `/readyz`), within bounded waits
//! whose failure messages carry the last status, the daemon's log and the lab's logs.
//!
//! Reaching the API server: it listens on the host's 127.0.0.1, and node 1's namespace has no
//! route to the host; each node has its own [`Forwarder`] (`lab::forward`: 127.0.0.1:P inside
//! the node, copied to the API server; the daemon's kubeconfig names P), closed with the test.
//!
//! The API server is this binary's shared one (`KubeServer::shared`, this is its only test): the
//! objects live in a fresh namespace, and the cluster-scoped Nodes `node1`/`node2` exist only
//! in this binary's etcd.
//!
//! Needs root (namespaces) and `scripts/kube-test-infra`'s binaries (`PARALLAX_KUBE_DIR`); without
//! either the test fails and says why.

mod lab;
mod support;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::time::Instant;

use lab::forward::Forwarder;
use lab::{Lab, Ns, NODE_IPS, VIP};
use support::kube::KubeServer;

/// How long the daemon may take to list the cluster, derive the target, probe it and open the
/// mismatch (the GKE check runs every 3 s, falls after 2 failures; the hold is 1 s).
const FIND_WITHIN: Duration = Duration::from_secs(60);
/// The pause between two reads of the status document.
const POLL: Duration = Duration::from_millis(500);
/// The Service's `nodePort`, requested explicitly: the lab's nginx serves it on every node.
const NODE_PORT: u16 = 30080;
/// The Service's `healthCheckNodePort` (kube-proxy's health server for ETP Local).
const HEALTH_CHECK_NODE_PORT: u16 = 32456;
/// The checker views derived for the Service on a GCE node: GKE's L4 health check of the
/// `healthCheckNodePort` and kube-proxy's own view of it.
const CHECKERS: [&str; 2] = ["gcp-l4", "kube-proxy"];
/// The daemons' admin API, inside their node's namespace.
const ADMIN: &str = "http://127.0.0.1:9464";
/// The Nodes' names.
const NODES: [&str; 2] = ["node1", "node2"];

const DAEMON_DEFAULTS: &str = r#"
[defaults]
interval = "1s"
timeout = "800ms"
hold = "1s"

[admin]
listen = "127.0.0.1:9464"
"#;

#[test]
fn node_mode_discovery_finds_the_etp_local_node_without_local_endpoints() {
    let mut lab = Lab::start("discovery");
    let server = KubeServer::shared();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    let namespace = runtime.block_on(create_cluster(server));
    // Both daemons start before either is waited for: they list, derive and probe meanwhile.
    let [node1, node2] = [0, 1].map(|node| NodeDaemon::start(&mut lab, server, &namespace, node));
    let target = format!("svc.{namespace}.shop.http");
    assert_node1_drained(&mut lab, &node1, &target);
    assert_node2_in_service(&mut lab, &node2, &target);
}

/// Node 1 has no local endpoint: users sent there are served, every health check fails on the
/// `healthCheckNodePort`, and each checker view has an open `false_drain` mismatch.
fn assert_node1_drained(lab: &mut Lab, node1: &NodeDaemon, target: &str) {
    let diagnosed =
        |t: &Value| CHECKERS.iter().all(|c| mismatch(t, c).is_some_and(|m| m["diagnosis"] != "pending"));
    let t = node1.wait_until(lab, target, "an open, diagnosed mismatch on every checker view", diagnosed);
    let context = |what: &str| format!("{what}\n{}", node1.context(lab, &t.to_string()));
    assert_client_served(&t, 0, &context);
    for name in CHECKERS {
        let (v, o) = checker(&t, name, 0, &context);
        assert_eq!((&o["ok"], &o["status"]), (&json!(false), &json!(503)), "{}", context(name));
        assert_eq!(v["verdict"]["state"], "unhealthy", "{}", context(name));
        let m = mismatch(&t, name).unwrap_or_else(|| panic!("{}", context(name)));
        let sides = (&m["direction"], &m["client_view"], &m["client_address"], &m["checker_address"]);
        let expected = (&json!("false_drain"), &json!("client"), &json!(traffic_port(0)), &json!(hcnp(0)));
        assert_eq!(sides, expected, "{}", context(name));
    }
    let (_, kube_proxy) = checker(&t, "kube-proxy", 0, &context);
    let read = (&kube_proxy["error"], &kube_proxy["local_endpoints"]);
    assert_eq!(read, (&json!("no_local_endpoints"), &json!(0)), "{}", context("kube-proxy's body"));
    // The GKE view gets the same 503 and body; the `gcp` profile judges the status, and the count
    // read from kube-proxy's body says why it failed: both mismatches name the same cause.
    let (_, gcp) = checker(&t, "gcp-l4", 0, &context);
    let read = (&gcp["error"], &gcp["local_endpoints"]);
    assert_eq!(read, (&json!("http_status"), &json!(0)), "{}", context("gcp-l4's outcome"));
    for name in CHECKERS {
        let diagnosis = &mismatch(&t, name).unwrap_or_default()["diagnosis"];
        assert_eq!(diagnosis, "no_local_endpoints", "{}", context(name));
    }
    node1.assert_ready(lab);
}

/// Node 2 holds the endpoint: every view is healthy and nothing disagrees.
fn assert_node2_in_service(lab: &mut Lab, node2: &NodeDaemon, target: &str) {
    let healthy =
        |t: &Value| views(t).len() == 3 && views(t).iter().all(|v| v["verdict"]["state"] == "healthy");
    let t = node2.wait_until(lab, target, "every view healthy", healthy);
    let context = |what: &str| format!("{what}\n{}", node2.context(lab, &t.to_string()));
    assert_client_served(&t, 1, &context);
    for name in CHECKERS {
        let (_, o) = checker(&t, name, 1, &context);
        assert_eq!((&o["ok"], &o["status"]), (&json!(true), &json!(200)), "{}", context(name));
    }
    assert_eq!(checker(&t, "kube-proxy", 1, &context).1["local_endpoints"], 1, "{}", context("kube-proxy"));
    assert_eq!(t["mismatches"], json!([]), "{}", context("no mismatch on node 2"));
    node2.assert_ready(lab);
}

/// The client view of target status `t` on node `node`: the users' request, through the node's
/// traffic port, served by the shop pod.
fn assert_client_served(t: &Value, node: usize, context: &dyn Fn(&str) -> String) {
    let client = view(t, "client").unwrap_or_else(|| panic!("{}", context("no client view")));
    assert_eq!(client["role"], "client", "{}", context("the client view's role"));
    let o = &client["last_outcome"];
    assert_eq!((&o["ok"], &o["status"]), (&json!(true), &json!(200)), "{}", context("the shop pod serves"));
    assert_eq!(
        o["request"]["address"],
        traffic_port(node),
        "{}",
        context("the client dials the traffic port")
    );
    assert_eq!((&o["request"]["host"], &o["request"]["path"]), (&json!("shop.lab"), &json!("/cart")));
}

/// The checker view `name` of `t` and its last outcome, after checking that the view is a
/// checker of node `node`'s `healthCheckNodePort` `/healthz`.
fn checker<'a>(
    t: &'a Value,
    name: &str,
    node: usize,
    context: &dyn Fn(&str) -> String,
) -> (&'a Value, &'a Value) {
    let names: Vec<&str> =
        views(t).iter().filter(|v| v["role"] == "checker").filter_map(|v| v["name"].as_str()).collect();
    assert_eq!(names, CHECKERS, "{}", context("the derived checker views"));
    let v = view(t, name).unwrap_or_else(|| panic!("{}", context(name)));
    let (profile, interval, rise, fall) = expected_timing(name);
    let timing = (&v["profile"], &v["interval_ms"], &v["verdict"]["rise"], &v["verdict"]["fall"]);
    assert_eq!(timing, (&json!(profile), &json!(interval), &json!(rise), &json!(fall)), "{}", context(name));
    assert_eq!(v["url"], format!("http://{}/healthz", hcnp(node)), "{}", context(name));
    assert_eq!(v["last_outcome"]["request"]["address"], hcnp(node), "{}", context(name));
    (v, &v["last_outcome"])
}

/// The profile, interval (ms), rise and fall of checker view `name` (one of [`CHECKERS`]).
/// `gcp-l4`: ingress-gce's L4 check for ETP Local (`pkg/l4/healthchecks/healthchecksl4.go`:
/// `gceLocalHcCheckIntervalSeconds` 3, `gceHcHealthyThreshold` 1, `gceLocalHcUnhealthyThreshold`
/// 2); `kube-proxy`: the `[defaults]` interval, the profile's rise and fall.
fn expected_timing(name: &str) -> (&'static str, u64, u64, u64) {
    match name {
        "gcp-l4" => ("gcp", 3000, 1, 2),
        _ => ("kube-proxy", 1000, 1, 2),
    }
}

/// Node `node`'s traffic port (the Service's nodePort).
fn traffic_port(node: usize) -> String {
    format!("{}:{NODE_PORT}", NODE_IPS[node])
}

/// Node `node`'s `healthCheckNodePort`.
fn hcnp(node: usize) -> String {
    format!("{}:{HEALTH_CHECK_NODE_PORT}", NODE_IPS[node])
}

/// `parallax run` in node mode inside node `node`'s namespace, reaching the API server through
/// its [`Forwarder`].
struct NodeDaemon {
    node: usize,
    forwarder: Forwarder,
}

impl NodeDaemon {
    /// Starts the forwarder and the daemon, with a kubeconfig naming the forwarder's port.
    fn start(lab: &mut Lab, server: &KubeServer, namespace: &str, node: usize) -> NodeDaemon {
        let upstream: SocketAddr =
            server.url().trim_start_matches("https://").parse().expect("the API server's address");
        let forwarder = Forwarder::start(&lab.ns(Ns::Node(node)), upstream);
        let to = lab.dir.path().join(format!("{}.kubeconfig", NODES[node]));
        let kubeconfig = forwarder.kubeconfig(&server.parallax_kubeconfig(), &server.url(), to);
        let discovery = format!(
            "[discovery.kubernetes]\nkubeconfig = {:?}\nmode = \"node\"\nnamespaces = [{namespace:?}]\n",
            kubeconfig.display().to_string()
        );
        let node_ip = NODE_IPS[node].to_string();
        let env = [("NODE_NAME", NODES[node]), ("NODE_IP", node_ip.as_str())];
        lab.start_daemon_with_env(Ns::Node(node), DAEMON_DEFAULTS, &discovery, &env);
        NodeDaemon { node, forwarder }
    }

    /// Reads the daemon's status until `target` satisfies `done`, and returns the target's
    /// status; panics with `what` and the logs after [`FIND_WITHIN`].
    fn wait_until(&self, lab: &mut Lab, target: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + FIND_WITHIN;
        let mut last = String::new();
        while Instant::now() < deadline {
            // A daemon that exited (a configuration error, a crash) fails here with its log.
            lab.assert_processes_alive();
            if let Some((200, body)) = lab.http_get(Ns::Node(self.node), &format!("{ADMIN}/api/v1/status")) {
                let doc: Value = serde_json::from_str(&body).unwrap_or_default();
                let found = doc["targets"].as_array().and_then(|ts| ts.iter().find(|t| t["name"] == target));
                if let Some(t) = found.filter(|t| done(t)) {
                    return t.clone();
                }
                last = body;
            }
            std::thread::sleep(POLL);
        }
        panic!(
            "{target} on {}: not {what} within {FIND_WITHIN:?}\n{}",
            NODES[self.node],
            self.context(lab, &last)
        )
    }

    /// `/readyz` answers 200 and says that discovery derived the one target and is watching;
    /// the status document's `discovery` agrees: listed, healthy, no note, nothing rejected.
    fn assert_ready(&self, lab: &Lab) {
        let status = lab.http_get(Ns::Node(self.node), &format!("{ADMIN}/api/v1/status"));
        let body = status.map(|(_, body)| body).unwrap_or_default();
        let doc: Value = serde_json::from_str(&body).unwrap_or_default();
        let d = &doc["discovery"];
        let state = (&d["mode"], &d["synced"], &d["healthy"], &d["targets"], &d["notes"], &d["rejected"]);
        let expected = (&json!("node"), &json!(true), &json!(true), &json!(1), &json!([]), &json!([]));
        assert_eq!(state, expected, "{}", self.context(lab, &body));
        let ready = lab.http_get(Ns::Node(self.node), &format!("{ADMIN}/readyz"));
        let (status, body) =
            ready.unwrap_or_else(|| panic!("{}", self.context(lab, "/readyz did not answer")));
        assert_eq!(status, 200, "{}", self.context(lab, &body));
        let line = "discovery: node mode, 1 targets derived, watching";
        assert!(body.contains(line), "/readyz says {line:?}\n{}", self.context(lab, &body));
    }

    /// What a failure message shows: `status` (the last status document read), the forwarder's
    /// count, the daemon's log and every lab process's log.
    fn context(&self, lab: &Lab, status: &str) -> String {
        let role = format!("node{}", self.node + 1);
        format!(
            "--- last status ({role}):\n{status}\n--- forwarder: {} connections to {}\n--- parallax run {role}:\n{}\n{}",
            self.forwarder.accepted.load(Ordering::Relaxed),
            self.forwarder.upstream,
            lab.log_of(&format!("parallax run {role}")),
            lab.logs()
        )
    }
}

/// Creates the cluster's objects in a fresh namespace (returned): the Nodes, the Service and
/// its EndpointSlice, with the status a cloud controller and the kubelets would write.
async fn create_cluster(server: &KubeServer) -> String {
    for (name, ip) in NODES.iter().zip(NODE_IPS) {
        let provider_id = format!("gce://parallax-lab/europe-west1-b/{name}");
        let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
                          "spec": {"providerID": provider_id}});
        server.create("", node).await;
        let addresses = json!({"addresses": [{"type": "InternalIP", "address": ip.to_string()},
                                             {"type": "Hostname", "address": name}]});
        server.patch_status("", "v1", "Node", name, addresses).await;
    }
    let namespace = server.namespace("lab").await;
    let service = server.create(&namespace, shop_service()).await;
    let spec = service.data.get("spec").cloned().unwrap_or_default();
    assert_eq!(
        (spec["ports"][0]["nodePort"].as_u64(), spec["healthCheckNodePort"].as_u64()),
        (Some(u64::from(NODE_PORT)), Some(u64::from(HEALTH_CHECK_NODE_PORT))),
        "the API server keeps the requested ports: {spec}"
    );
    let lb = json!({"loadBalancer": {"ingress": [{"ip": VIP.to_string()}]}});
    server.patch_status(&namespace, "v1", "Service", "shop", lb).await;
    server.create(&namespace, shop_endpoints()).await;
    namespace
}

/// `shop`: ETP Local, the lab's node ports, the users' request as an annotation (no Ingress).
fn shop_service() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {
            "name": "shop",
            "labels": {"parallax.io/probe": "true"},
            "annotations": {"parallax.io/client-url": "http://shop.lab/cart"}
        },
        "spec": {
            "type": "LoadBalancer",
            "externalTrafficPolicy": "Local",
            "healthCheckNodePort": HEALTH_CHECK_NODE_PORT,
            "selector": {"app": "shop"},
            "ports": [{"name": "http", "port": 80, "targetPort": 8081, "nodePort": NODE_PORT, "protocol": "TCP"}]
        }
    })
}

/// The shop pod: ready, on node 2 only. It agrees with the lab's kube-proxy (nginx's fixed
/// answers: `localEndpoints` 0 on node 1, 1 on node 2); the derivation of instance-group checks
/// reads it for nothing else (no note, no view), the daemon watches it as the DaemonSet would.
fn shop_endpoints() -> Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "shop-x7k2p", "labels": {"kubernetes.io/service-name": "shop"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.244.2.7"], "conditions": {"ready": true}, "nodeName": NODES[1]}],
        "ports": [{"name": "http", "port": 8081, "protocol": "TCP"}]
    })
}

/// The views of a target's status.
fn views(target: &Value) -> &[Value] {
    target["views"].as_array().map(Vec::as_slice).unwrap_or_default()
}

/// The view `name` of a target's status.
fn view<'a>(target: &'a Value, name: &str) -> Option<&'a Value> {
    views(target).iter().find(|v| v["name"] == name)
}

/// The open mismatch of `target` whose checker view is `checker`.
fn mismatch(target: &Value, checker: &str) -> Option<Value> {
    target["mismatches"].as_array()?.iter().find(|m| m["checker_view"] == checker).cloned()
}
