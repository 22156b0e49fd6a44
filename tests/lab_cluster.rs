//! The cluster's own state as evidence, end to end (docs/kubernetes.md, "The cluster's state as
//! evidence"): one test per diagnosis that joins the wire with the Kubernetes API, named after
//! it, and one that a healthy cluster yields none of them. Each test builds, with no view
//! written by hand:
//!
//! - the objects, in a fresh namespace of the real kube-apiserver (`support::kube`, this
//!   binary's shared one), with the `status` a controller would write (the Nodes are the test's
//!   own, `<case>-n1` and `<case>-n2`: cluster-scoped objects are shared by the binary's tests);
//! - the wire, in the lab's namespaces (`lab`): real nginx on node 1 standing for kube-proxy
//!   (the traffic port, and `healthCheckNodePort` with kube-proxy's JSON body), or on the LB's
//!   address for an Ingress controller or a Gateway's data plane, or nothing at all (refused);
//!   a dnsmasq in the client namespace answers the routes' hosts with the LB's address;
//! - `parallax run` with only `[defaults]`, `[admin]` and `[discovery.kubernetes]`: in node mode
//!   inside node 1's namespace (`NODE_NAME`, `NODE_IP`), or in external mode inside the client's,
//!   reaching the API server through a [`Forwarder`].
//!
//! Then it reads the daemon's admin API within a bounded wait (`/api/v1/status`: the
//! mismatch's diagnosis or the target's `explained`, the evidence naming the objects by
//! namespace/name, the top-level `conditions`; `/metrics`: the `parallax_condition` series).
//! Each case has its own ports ([`Ports`]): nodePorts are allocated cluster-wide.
//!
//! Needs root (namespaces), nginx, dnsmasq and `scripts/kube-test-infra`'s binaries
//! (`PARALLAX_KUBE_DIR`); without them every test fails and says why.

mod lab;
mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::time::Instant;

use lab::forward::Forwarder;
use lab::{Lab, Ns, NODE_IPS, VIP};
use support::kube::KubeServer;

/// How long the daemon may take to list the cluster, derive, probe and diagnose (the GKE check
/// runs every 3 s and falls after 2 failures; the hold is 1 s).
const FIND_WITHIN: Duration = Duration::from_secs(60);
/// The pause between two reads of the status document.
const POLL: Duration = Duration::from_millis(500);
/// The daemon's admin API, inside its namespace.
const ADMIN: &str = "http://127.0.0.1:9464";
/// The address of the external cases' load balancer (an Ingress controller, a Gateway), on the
/// LB namespace's loopback beside the VIP: what the objects' status says users reach.
const LB_ADDRESS: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 20);
/// The resolver of the external daemon: a dnsmasq in the client namespace.
const RESOLVER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
/// The label discovery selects by default.
const SELECTED: &str = "parallax.io/probe";
/// The Gateway API's group and version.
const GATEWAY_API: &str = "gateway.networking.k8s.io/v1";
/// The checker views of an ETP Local Service on a GCE node.
const GCE_CHECKERS: [&str; 2] = ["gcp-l4", "kube-proxy"];

/// Every daemon's `[defaults]` and `[admin]`: fast probes, a short hold, the case's resolver.
const DAEMON_DEFAULTS: &str = r#"
[defaults]
interval = "1s"
timeout = "800ms"
hold = "1s"
resolver = "127.0.0.1:53"

[admin]
listen = "127.0.0.1:9464"
"#;

// ---- the diagnoses of a mismatch (node mode) -----------------------------------------------

#[test]
fn kube_proxy_endpoints_disagree() {
    let placed = [("10.244.1.7", 0, Ready::Yes)];
    let wire = [Proxy::TrafficPort, Proxy::HealthPort(0)];
    let (mut env, daemon, ports) = Env::node_case("kp-disagree", 0, "Local", &placed, &wire, None);
    let names = [format!("Service {}/shop", env.ns), format!("nodeName {}", env.node(0))];
    let expect = Expect::mismatch(&GCE_CHECKERS, "false_drain", "kube_proxy_endpoints_disagree", &names)
        .facts(node_facts(&env, &ports, "Local", (1, 1, 0)));
    env.check(&daemon, &env.node_target(), &expect);
}

#[test]
fn health_port_not_served() {
    // Nothing listens on healthCheckNodePort: the node's proxy does not implement it.
    let placed = [("10.244.1.8", 0, Ready::Yes)];
    let (mut env, daemon, ports) =
        Env::node_case("hc-not-served", 1, "Local", &placed, &[Proxy::TrafficPort], None);
    let names = [format!("Service {}/shop", env.ns), format!("healthCheckNodePort {}", ports.health)];
    let expect = Expect::mismatch(&GCE_CHECKERS, "false_drain", "health_port_not_served", &names)
        .facts(node_facts(&env, &ports, "Local", (1, 1, 0)));
    env.check(&daemon, &env.node_target(), &expect);
}

#[test]
fn draining_endpoints() {
    // A rollout: this node's pod terminates (still serving its connections), its successor is
    // ready on node 2; kube-proxy here counts no local endpoint.
    let placed = [("10.244.1.9", 0, Ready::Terminating), ("10.244.2.9", 1, Ready::Yes)];
    let wire = [Proxy::TrafficPort, Proxy::HealthPort(0)];
    let (mut env, daemon, ports) = Env::node_case("draining", 2, "Local", &placed, &wire, None);
    let names = [format!("Service {}/shop", env.ns), "1 terminating endpoint(s)".to_owned()];
    let mut facts = node_facts(&env, &ports, "Local", (1, 0, 1));
    facts["endpoint_nodes"] = json!([format!("{}: 1", env.node(1))]);
    let expect = Expect::mismatch(&GCE_CHECKERS, "false_drain", "draining_endpoints", &names).facts(facts);
    env.check(&daemon, &env.node_target(), &expect);
}

// ---- users' failures a condition explains ---------------------------------------------------

#[test]
fn vip_without_health_check() {
    // Nothing serves the traffic port: kube-proxy has no endpoint to send users to.
    let placed = [("10.244.2.10", 1, Ready::No)];
    let (mut env, daemon, ports) = Env::node_case("vip-no-hc", 3, "Cluster", &placed, &[], Some("metallb"));
    let (target, object) = (env.node_target(), format!("Service {}/shop", env.ns));
    let condition = Cond::new("vip_without_health_check", &object, Some(&target));
    let names = [object.clone(), VIP.to_string()];
    let facts = node_facts(&env, &ports, "Cluster", (0, 0, 0));
    env.check(
        &daemon,
        &target,
        &Expect::explained("vip_without_health_check", &names, vec![condition]).facts(facts),
    );
}

#[test]
fn no_ready_endpoints() {
    let objects = |env: &Env| {
        let mut objects = backend("orders", true, &[endpoint("10.244.2.11", env.node(1), Ready::No)]);
        objects.push(ingress("orders", "orders.lab", None, "orders", true));
        objects
    };
    let (mut env, daemon) = Env::external_case("no-ready", objects, &[("orders.lab", 503)]);
    let (target, object) =
        (ingress_target(&env.ns, "orders", "orders.lab"), format!("Service {}/orders", env.ns));
    let condition = Cond::new("no_ready_endpoints", &object, Some(&target));
    let facts = json!({"object": format!("Ingress {}/orders", env.ns), "backends": [format!("{}/orders", env.ns)],
                       "ready_endpoints": 0, "route_hosts": ["orders.lab"]});
    let names = [object.clone()];
    env.check(
        &daemon,
        &target,
        &Expect::explained("no_ready_endpoints", &names, vec![condition]).facts(facts),
    );
}

/// The same in node mode: every view fails (kube-proxy counts no endpoint, the traffic port
/// refuses), so nothing disagrees and the condition explains the users' failure on its own.
#[test]
fn no_ready_endpoints_on_a_node() {
    let placed = [("10.244.2.13", 1, Ready::No)];
    let wire = [Proxy::HealthPort(0)];
    let (mut env, daemon, ports) = Env::node_case("no-ready-node", 5, "Local", &placed, &wire, None);
    let (target, object) = (env.node_target(), format!("Service {}/shop", env.ns));
    let condition = Cond::new("no_ready_endpoints", &object, Some(&target));
    let names = [object.clone()];
    let facts = node_facts(&env, &ports, "Local", (0, 0, 0));
    env.check(
        &daemon,
        &target,
        &Expect::explained("no_ready_endpoints", &names, vec![condition]).facts(facts),
    );
}

#[test]
fn route_not_accepted() {
    route_case(RouteCase {
        label: "route-rejected",
        programmed: true,
        parent: &[("Accepted", "False", "NotAllowedByListeners")],
        service: "web",
        answer: Some(404),
        kind: "route_not_accepted",
        object: "HTTPRoute",
        reason: "NotAllowedByListeners",
    });
}

#[test]
fn backend_ref_unresolved() {
    route_case(RouteCase {
        label: "refs-unresolved",
        programmed: true,
        parent: &[("Accepted", "True", "Accepted"), ("ResolvedRefs", "False", "BackendNotFound")],
        service: "missing",
        answer: Some(500),
        kind: "backend_ref_unresolved",
        object: "HTTPRoute",
        reason: "BackendNotFound",
    });
}

#[test]
fn gateway_not_programmed() {
    // The data plane was never configured: nothing listens at the Gateway's address (refused).
    let (mut env, daemon, target) = route_case(RouteCase {
        label: "gw-unprogrammed",
        programmed: false,
        parent: &[("Accepted", "True", "Accepted"), ("ResolvedRefs", "True", "ResolvedRefs")],
        service: "web",
        answer: None,
        kind: "gateway_not_programmed",
        object: "Gateway",
        reason: "Invalid",
    });
    // The controller programs the Gateway (its data plane still refuses): the condition leaves
    // the status and the metrics, and the failure is no longer explained by it.
    env.write_status(gateway(true));
    let doc = env.wait(&daemon, "the condition gone and the failure unexplained", |doc| {
        conditions_of(doc).is_empty() && find_target(doc, &target).is_some_and(|t| t["explained"].is_null())
    });
    let t = find_target(&doc, &target).cloned().unwrap_or_default();
    let client = &t["views"][0]["last_outcome"];
    let failing = (&client["ok"], &client["error"]);
    let context = env.context(&daemon, "still refused", &doc);
    assert_eq!(failing, (&json!(false), &json!("connect_refused")), "{context}");
    env.assert_conditions(&daemon, &doc, &[]);
}

/// A Gateway API case: HTTPRoute `web` for `shop.lab` on Gateway `gw`.
struct RouteCase {
    /// The case's name.
    label: &'static str,
    /// The Gateway says `Programmed: True` (else False, reason `Invalid`); it has an address.
    programmed: bool,
    /// The route's parent status conditions (type, status, reason).
    parent: &'static [(&'static str, &'static str, &'static str)],
    /// The Service its rule sends to (not selected).
    service: &'static str,
    /// What the LB answers for `shop.lab` (`None`: nothing listens).
    answer: Option<u16>,
    /// The condition that explains the users' failure.
    kind: &'static str,
    /// The kind of the object it is about (`HTTPRoute` `web` or `Gateway` `gw`).
    object: &'static str,
    /// The API's reason it quotes.
    reason: &'static str,
}

/// Runs `case` and checks that condition `case.kind` explains the users' failure; returns the
/// environment, the daemon and the target.
fn route_case(case: RouteCase) -> (Env, Daemon, String) {
    let objects = |_: &Env| vec![gateway(case.programmed), http_route("shop.lab", case.service, case.parent)];
    let hosts: Vec<(&str, u16)> = case.answer.map(|status| ("shop.lab", status)).into_iter().collect();
    let (mut env, daemon) = Env::external_case(case.label, objects, &hosts);
    let target = route_target(&env.ns, "shop.lab");
    let name = if case.object == "Gateway" { "gw" } else { "web" };
    let object = format!("{} {}/{name}", case.object, env.ns);
    let condition = Cond::new(case.kind, &object, Some(&target)).reason(case.reason);
    let names = [object.clone(), format!("Gateway {}/gw", env.ns)];
    let facts = route_facts(&env, case.service);
    env.check(&daemon, &target, &Expect::explained(case.kind, &names, vec![condition]).facts(facts));
    (env, daemon, target)
}

#[test]
fn ingress_class_unclaimed() {
    // The class was retired; the status still holds the address the old controller wrote, where
    // another controller's default backend answers. Its backend is not selected: nothing is
    // claimed about its endpoints.
    let objects = |_: &Env| {
        let mut objects = backend("legacy", false, &[]);
        objects.push(ingress("legacy", "legacy.lab", Some("retired-class"), "legacy", true));
        objects
    };
    let (mut env, daemon) = Env::external_case("class-unclaimed", objects, &[("legacy.lab", 404)]);
    let (target, object) =
        (ingress_target(&env.ns, "legacy", "legacy.lab"), format!("Ingress {}/legacy", env.ns));
    let condition = Cond::new("ingress_class_unclaimed", &object, Some(&target));
    let names = [object.clone(), "retired-class".to_owned()];
    let facts = json!({"object": object, "backends": [format!("{}/legacy", env.ns)], "ready_endpoints": null,
                       "route_hosts": ["legacy.lab"]});
    env.check(
        &daemon,
        &target,
        &Expect::explained("ingress_class_unclaimed", &names, vec![condition]).facts(facts),
    );
}

// ---- conditions without a target, and a healthy cluster -------------------------------------

#[test]
fn lb_address_pending() {
    let objects = |_: &Env| {
        let service = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "pending", "labels": {SELECTED: "true"}},
            "spec": {"type": "LoadBalancer", "selector": {"app": "pending"},
                     "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}
        });
        // No pod yet: the EndpointSlice controller's empty slice.
        vec![
            Object::new(service),
            slice("pending", &[]),
            ingress("pending", "pending.lab", None, "pending", false),
        ]
    };
    let (mut env, daemon) = Env::external_case("lb-pending", objects, &[]);
    let conditions = vec![
        Cond::new("lb_address_pending", &format!("Ingress {}/pending", env.ns), None),
        Cond::new("lb_address_pending", &format!("Service {}/pending", env.ns), None),
    ];
    let doc = env.wait(&daemon, "both lb_address_pending conditions", |doc| {
        doc["discovery"]["synced"] == true && conditions_of(doc).len() >= conditions.len()
    });
    env.assert_conditions(&daemon, &doc, &conditions);
    assert_eq!(doc["targets"], json!([]), "{}", env.context(&daemon, "no target to probe", &doc));
    // The Ingress controller publishes its address: the Ingress's condition leaves, its rule
    // becomes a target, which the Service's lack of endpoints concerns; the Service (whose port
    // the Ingress leads to: no target of its own) is still pending.
    env.write_status(ingress("pending", "pending.lab", None, "pending", true));
    let target = ingress_target(&env.ns, "pending", "pending.lab");
    let doc = env.wait(&daemon, "the Ingress's target", |doc| find_target(doc, &target).is_some());
    let service = format!("Service {}/pending", env.ns);
    let conditions = [
        Cond::new("lb_address_pending", &service, None),
        Cond::new("no_ready_endpoints", &service, Some(&target)),
    ];
    env.assert_conditions(&daemon, &doc, &conditions);
}

#[test]
fn healthy_cluster_state_yields_no_condition_and_no_cluster_diagnosis() {
    // Node mode: this node's pod is ready and kube-proxy counts it; the traffic port serves.
    let placed = [("10.244.1.12", 0, Ready::Yes)];
    let wire = [Proxy::TrafficPort, Proxy::HealthPort(1)];
    let (mut node, node_daemon, _) = Env::node_case("healthy-node", 4, "Local", &placed, &wire, None);
    // External mode: a claimed Ingress and an accepted, resolved route on a Programmed Gateway,
    // both to a Service with a ready endpoint, both served.
    let resolved = [("Accepted", "True", "Accepted"), ("ResolvedRefs", "True", "ResolvedRefs")];
    let objects = |env: &Env| {
        let class = format!("{}-nginx", env.ns);
        let mut objects = vec![Object::new(json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
            "metadata": {"name": class}, "spec": {"controller": "k8s.io/ingress-nginx"}
        }))
        .cluster_scoped()];
        objects.extend(backend("web", true, &[endpoint("10.244.2.12", env.node(1), Ready::Yes)]));
        objects.push(ingress("shop", "shop.lab", Some(&class), "web", true));
        objects.extend([gateway(true), http_route("api.lab", "web", &resolved)]);
        objects
    };
    let (mut ext, ext_daemon) =
        Env::external_case("healthy-ext", objects, &[("shop.lab", 200), ("api.lab", 200)]);

    node.check_healthy(&node_daemon, &[node.node_target()], 3);
    let targets = [ingress_target(&ext.ns, "shop", "shop.lab"), route_target(&ext.ns, "api.lab")];
    ext.check_healthy(&ext_daemon, &targets, 1);
}

// ---- the expectations ----------------------------------------------------------------------

/// Where the diagnosis shows.
enum Via {
    /// On the open mismatch of each checker view, in `direction`.
    Mismatch { checkers: Vec<&'static str>, direction: &'static str },
    /// In the target's `explained` (no checker view disagrees, or none exists).
    Explained,
}

/// What a case's daemon must report about its target.
struct Expect {
    /// Where the diagnosis shows.
    via: Via,
    /// The diagnosis code.
    diagnosis: &'static str,
    /// What the evidence names (objects by namespace/name, the node, the port...).
    names: Vec<String>,
    /// Every condition of the status document, exactly.
    conditions: Vec<Cond>,
    /// Fields of the target's `[target.cluster]` and their values (`null`: absent).
    facts: Value,
}

impl Expect {
    /// A mismatch diagnosed `diagnosis` on every view of `checkers`; no condition.
    fn mismatch(
        checkers: &[&'static str],
        direction: &'static str,
        diagnosis: &'static str,
        names: &[String],
    ) -> Expect {
        let via = Via::Mismatch { checkers: checkers.to_vec(), direction };
        Expect { via, diagnosis, names: names.to_vec(), conditions: Vec::new(), facts: json!({}) }
    }

    /// The client view's failure explained by `diagnosis`, with `conditions`.
    fn explained(diagnosis: &'static str, names: &[String], conditions: Vec<Cond>) -> Expect {
        Expect { via: Via::Explained, diagnosis, names: names.to_vec(), conditions, facts: json!({}) }
    }

    /// With `facts` expected in `[target.cluster]`.
    fn facts(mut self, facts: Value) -> Expect {
        self.facts = facts;
        self
    }

    /// Whether `t` (a target's status) has reached the point where it can be judged: every
    /// mismatch diagnosed, or the failure explained.
    fn settled(&self, t: &Value) -> bool {
        match &self.via {
            Via::Mismatch { checkers, .. } => {
                checkers.iter().all(|c| mismatch(t, c).is_some_and(|m| m["diagnosis"] != "pending"))
            }
            Via::Explained => t["explained"].is_object(),
        }
    }
}

/// A condition record, as `/api/v1/status` and `/metrics` show it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Cond {
    /// The condition's kind (a diagnosis code).
    kind: String,
    /// The object it is about, `Kind namespace/name`.
    object: String,
    /// The target whose users it concerns.
    target: Option<String>,
    /// The API's reason, when it gives one.
    reason: Option<String>,
}

impl Cond {
    /// A condition `kind` about `object`, concerning `target`, with no reason.
    fn new(kind: &str, object: &str, target: Option<&str>) -> Cond {
        Cond {
            kind: kind.to_owned(),
            object: object.to_owned(),
            target: target.map(str::to_owned),
            reason: None,
        }
    }

    /// With the API's `reason`.
    fn reason(mut self, reason: &str) -> Cond {
        self.reason = Some(reason.to_owned());
        self
    }

    /// From a `conditions[]` record (its message is checked apart: not empty).
    fn of(record: &Value) -> Cond {
        let text = |key: &str| record[key].as_str().map(str::to_owned);
        Cond {
            kind: text("kind").unwrap_or_default(),
            object: text("object").unwrap_or_default(),
            target: text("target"),
            reason: text("reason"),
        }
    }

    /// Its `parallax_condition` series.
    /// Its `parallax_condition` line, after the vantage labels every series carries.
    fn series(&self, vantage: &str) -> String {
        let target = self.target.as_deref().unwrap_or("");
        format!(
            "parallax_condition{{{vantage}kind=\"{}\",object=\"{}\",target=\"{target}\"}} 1",
            self.kind, self.object
        )
    }
}

// ---- the case's environment ----------------------------------------------------------------

/// The node ports of one case (allocated cluster-wide, so each case has its own).
struct Ports {
    /// The Service's `nodePort` (the traffic port).
    node: u16,
    /// Its `healthCheckNodePort` (ETP Local).
    health: u16,
}

impl Ports {
    /// The ports of case `n` (clear of the lab nginx's 30080, 30081 and 32456).
    fn slot(n: u16) -> Ports {
        Ports { node: 30200 + n, health: 32200 + n }
    }
}

/// How the daemon runs.
enum Mode {
    /// In node 1's namespace, with `[discovery.kubernetes] provider` when given.
    Node(Option<&'static str>),
    /// In the client namespace, mode external.
    External,
}

/// A started daemon: its namespace and its forwarder to the API server.
struct Daemon {
    /// Where it runs (its admin API is there).
    ns: Ns,
    /// Its way to the API server.
    forwarder: Forwarder,
}

/// An object to create in the case's namespace, and the status a controller would write.
struct Object {
    /// The object (`apiVersion`, `kind`, `metadata.name`...).
    object: Value,
    /// Its status, merged into the status subresource once created.
    status: Option<Value>,
    /// Created outside the namespace (Nodes, IngressClasses).
    cluster_scoped: bool,
}

impl Object {
    /// `object`, namespaced, with no status.
    fn new(object: Value) -> Object {
        Object { object, status: None, cluster_scoped: false }
    }

    /// With `status` written after the creation.
    fn status(mut self, status: Value) -> Object {
        self.status = Some(status);
        self
    }

    /// Created cluster-scoped.
    fn cluster_scoped(mut self) -> Object {
        self.cluster_scoped = true;
        self
    }
}

/// One listener of the case's nginx: `listen` answers `status` with `body` (for requests to
/// `host`, when given).
struct Answer {
    /// The listener's address.
    listen: SocketAddr,
    /// The `server_name`, when the answer is for one host.
    host: Option<String>,
    /// The status answered.
    status: u16,
    /// The body answered.
    body: String,
    /// Whether the body is JSON (`Content-Type: application/json`).
    json: bool,
}

/// A lab, a namespace of the shared API server holding the case's objects and two Nodes of
/// the case's own, and a runtime to write them with.
struct Env {
    /// The lab (its namespaces, nginx, dnsmasq, the daemon).
    lab: Lab,
    /// The binary's shared API server.
    server: &'static KubeServer,
    /// Runs the API server's client calls.
    runtime: tokio::runtime::Runtime,
    /// The case's namespace.
    ns: String,
    /// The case's name (the Nodes' prefix).
    label: &'static str,
}

impl Env {
    /// Starts the lab and creates the namespace and the Nodes `<label>-n1`, `<label>-n2` (GCE
    /// `providerID`s, the lab's node addresses).
    fn start(label: &'static str) -> Env {
        let lab = Lab::start(label);
        let server = KubeServer::shared();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        let ns = runtime.block_on(server.namespace(label));
        let env = Env { lab, server, runtime, ns, label };
        for (i, ip) in NODE_IPS.iter().enumerate() {
            let name = env.node(i);
            let provider_id = format!("gce://parallax-lab/europe-west1-b/{name}");
            let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
                              "spec": {"providerID": provider_id}});
            let addresses = json!({"addresses": [{"type": "InternalIP", "address": ip.to_string()},
                                                 {"type": "Hostname", "address": name}]});
            env.create(vec![Object::new(node).status(addresses).cluster_scoped()]);
        }
        env
    }

    /// A node-mode case `label` with the ports of `slot`: `shop` with `etp` and its endpoints
    /// `placed`, node 1's kube-proxy serving `wire`, the daemon on node 1 (with `provider`).
    fn node_case(
        label: &'static str,
        slot: u16,
        etp: &str,
        placed: &[Placed],
        wire: &[Proxy],
        provider: Option<&'static str>,
    ) -> (Env, Daemon, Ports) {
        let ports = Ports::slot(slot);
        let mut env = Env::start(label);
        let endpoints: Vec<Value> =
            placed.iter().map(|(ip, node, ready)| endpoint(ip, env.node(*node), *ready)).collect();
        env.create(node_service(&ports, etp, &endpoints));
        let answers: Vec<Answer> = wire
            .iter()
            .map(|w| match w {
                Proxy::TrafficPort => traffic_port(&ports),
                Proxy::HealthPort(local) => kube_proxy(&ports, *local),
            })
            .collect();
        env.serve(Ns::Node(0), &answers);
        let daemon = env.daemon(Mode::Node(provider));
        (env, daemon, ports)
    }

    /// An external-mode case `label`: the objects `objects` gives, the LB serving `hosts`
    /// ([`Env::serve_lb`]), the daemon in the client namespace.
    fn external_case(
        label: &'static str,
        objects: impl FnOnce(&Env) -> Vec<Object>,
        hosts: &[(&str, u16)],
    ) -> (Env, Daemon) {
        let mut env = Env::start(label);
        env.create(objects(&env));
        env.serve_lb(hosts);
        let daemon = env.daemon(Mode::External);
        (env, daemon)
    }

    /// The name of node `i` (0 or 1).
    fn node(&self, i: usize) -> String {
        format!("{}-n{}", self.label, i + 1)
    }

    /// The node-mode target of Service `shop`'s port `http`.
    fn node_target(&self) -> String {
        format!("svc.{}.shop.http", self.ns)
    }

    /// Creates `objects` in order, each followed by its status.
    fn create(&self, objects: Vec<Object>) {
        for o in objects {
            let ns = if o.cluster_scoped { "" } else { self.ns.as_str() };
            self.runtime.block_on(self.server.create(ns, o.object.clone()));
            if o.status.is_some() {
                self.write_status(o);
            }
        }
    }

    /// Writes the status of `object`, which exists, as its controller would.
    fn write_status(&self, object: Object) {
        let (o, status) = (&object.object, object.status.unwrap_or_default());
        let ns = if object.cluster_scoped { "" } else { self.ns.as_str() };
        let (api_version, kind, name) =
            (text(&o["apiVersion"]), text(&o["kind"]), text(&o["metadata"]["name"]));
        self.runtime.block_on(self.server.patch_status(ns, api_version, kind, name, status));
    }

    /// Starts one nginx in `ns` serving `answers`.
    fn serve(&mut self, ns: Ns, answers: &[Answer]) {
        let mut servers = String::new();
        for a in answers {
            let host = a.host.as_deref().map(|h| format!("server_name {h}; ")).unwrap_or_default();
            let kind = if a.json { "default_type application/json; " } else { "" };
            servers.push_str(&format!(
                "    server {{ listen {}; {host}location / {{ {kind}return {} '{}'; }} }}\n",
                a.listen, a.status, a.body
            ));
        }
        let mut listening: Vec<SocketAddr> = answers.iter().map(|a| a.listen).collect();
        listening.dedup();
        if !listening.is_empty() {
            self.lab.start_nginx_servers(ns, "nginx (case)", &servers, &listening);
        }
    }

    /// The external cases' load balancer: [`LB_ADDRESS`] on the LB namespace, serving each host
    /// of `hosts` its status on port 80 (none: nothing listens), and DNS answering each host
    /// with it.
    fn serve_lb(&mut self, hosts: &[(&str, u16)]) {
        self.lab.add_local_address(Ns::Lb, LB_ADDRESS);
        let answers: Vec<Answer> = hosts
            .iter()
            .map(|(host, status)| Answer {
                listen: SocketAddr::from((LB_ADDRESS, 80)),
                host: Some((*host).to_owned()),
                status: *status,
                body: format!("{host}: {status}\n"),
                json: false,
            })
            .collect();
        self.serve(Ns::Lb, &answers);
        let dns: Vec<(&str, Ipv4Addr)> =
            ["shop.lab", "api.lab", "orders.lab", "legacy.lab"].iter().map(|h| (*h, LB_ADDRESS)).collect();
        self.lab.start_dns(Ns::Client, RESOLVER, &dns);
    }

    /// Starts `parallax run` in `mode` on the case's namespace.
    fn daemon(&mut self, mode: Mode) -> Daemon {
        let (ns, mode_name, provider, env) = match mode {
            Mode::Node(provider) => {
                let ip = NODE_IPS[0].to_string();
                (Ns::Node(0), "node", provider, vec![("NODE_NAME", self.node(0)), ("NODE_IP", ip)])
            }
            Mode::External => (Ns::Client, "external", None, Vec::new()),
        };
        let upstream: SocketAddr =
            self.server.url().trim_start_matches("https://").parse().expect("the API server's address");
        let forwarder = Forwarder::start(&self.lab.ns(ns), upstream);
        let to = self.lab.dir.path().join(format!("{mode_name}.kubeconfig"));
        let kubeconfig = forwarder.kubeconfig(&self.server.parallax_kubeconfig(), &self.server.url(), to);
        let provider = provider.map(|p| format!("provider = {p:?}\n")).unwrap_or_default();
        let discovery = format!(
            "[discovery.kubernetes]\nkubeconfig = {:?}\nmode = {mode_name:?}\nnamespaces = [{:?}]\n{provider}",
            kubeconfig.display().to_string(),
            self.ns
        );
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        self.lab.start_daemon_with_env(ns, DAEMON_DEFAULTS, &discovery, &env);
        Daemon { ns, forwarder }
    }

    /// Waits until the status document satisfies `done`, and returns it; panics with `what`
    /// and the logs after [`FIND_WITHIN`].
    fn wait(&mut self, daemon: &Daemon, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + FIND_WITHIN;
        let mut last = Value::Null;
        while Instant::now() < deadline {
            // A daemon that exited (a configuration error, a crash) fails here with its log.
            self.lab.assert_processes_alive();
            if let Some((200, body)) = self.lab.http_get(daemon.ns, &format!("{ADMIN}/api/v1/status")) {
                let doc: Value = serde_json::from_str(&body).unwrap_or_default();
                if done(&doc) {
                    return doc;
                }
                last = doc;
            }
            std::thread::sleep(POLL);
        }
        panic!("not {what} within {FIND_WITHIN:?}\n{}", self.context(daemon, "", &last))
    }

    /// Waits for `target` to settle as `expect` says, then checks the diagnosis, its evidence,
    /// the conditions and the metrics.
    fn check(&mut self, daemon: &Daemon, target: &str, expect: &Expect) {
        let doc = self.wait(daemon, &format!("{target} diagnosed {}", expect.diagnosis), |doc| {
            find_target(doc, target).is_some_and(|t| expect.settled(t))
        });
        let t = find_target(&doc, target).cloned().unwrap_or_default();
        let context = |what: &str| self.context(daemon, what, &doc);
        match &expect.via {
            Via::Mismatch { checkers, direction } => {
                for checker in checkers {
                    let m = mismatch(&t, checker).unwrap_or_default();
                    let found = (&m["direction"], &m["diagnosis"]);
                    assert_eq!(found, (&json!(direction), &json!(expect.diagnosis)), "{}", context(checker));
                    assert_names(&m["evidence"], &expect.names, &context);
                }
                assert!(t["explained"].is_null(), "{}", context("a mismatch, nothing explained"));
            }
            Via::Explained => {
                let e = &t["explained"];
                assert_eq!(
                    (&e["view"], &e["diagnosis"]),
                    (&json!("client"), &json!(expect.diagnosis)),
                    "{}",
                    context("explained")
                );
                assert_names(&e["evidence"], &expect.names, &context);
                assert_eq!(t["mismatches"], json!([]), "{}", context("no checker view, no mismatch"));
                let client = t["views"][0]["last_outcome"]["ok"].clone();
                assert_eq!(client, json!(false), "{}", context("the users' request fails"));
            }
        }
        let facts = &t["cluster"];
        for (key, value) in expect.facts.as_object().into_iter().flatten() {
            assert_eq!(&facts[key], value, "{}", context(&format!("[target.cluster] {key}")));
        }
        // The conditions naming the target are attached to its facts.
        let attached: Vec<Cond> =
            facts["conditions"].as_array().into_iter().flatten().map(Cond::of).collect();
        let naming: Vec<Cond> =
            expect.conditions.iter().filter(|c| c.target.as_deref() == Some(target)).cloned().collect();
        assert_eq!(attached, naming, "{}", context("[target.cluster] conditions"));
        self.assert_conditions(daemon, &doc, &expect.conditions);
    }

    /// The status document's conditions are `expected` (any order, each with a message),
    /// `/metrics` has exactly their `parallax_condition` series, and discovery rejected no
    /// derived target.
    fn assert_conditions(&self, daemon: &Daemon, doc: &Value, expected: &[Cond]) {
        let context = |what: &str| self.context(daemon, what, doc);
        assert_eq!(doc["discovery"]["rejected"], json!([]), "{}", context("no derived target rejected"));
        let records = conditions_of(doc);
        let mut found: Vec<Cond> = records.iter().map(Cond::of).collect();
        let mut wanted = expected.to_vec();
        found.sort();
        wanted.sort();
        assert_eq!(found, wanted, "{}", context("the conditions"));
        for r in &records {
            assert!(
                r["message"].as_str().is_some_and(|m| !m.is_empty()),
                "{}",
                context("a condition's message")
            );
        }
        let (status, metrics) = self.lab.http_get(daemon.ns, &format!("{ADMIN}/metrics")).unwrap_or_default();
        assert_eq!(status, 200, "{}", context("/metrics answers"));
        let mut series: Vec<&str> =
            metrics.lines().filter(|l| l.starts_with("parallax_condition{")).collect();
        series.sort_unstable();
        // The daemon's vantage: its host name, `external` (no NODE_NAME in the lab).
        let vantage = format!(
            "vantage=\"{}\",vantage_kind=\"{}\",",
            doc["vantage"]["name"].as_str().expect("the status names its vantage"),
            doc["vantage"]["kind"].as_str().expect("the status gives the vantage's kind"),
        );
        let mut expected: Vec<String> = wanted.iter().map(|c| c.series(&vantage)).collect();
        expected.sort();
        assert_eq!(
            series,
            expected,
            "{}\n--- /metrics:\n{metrics}",
            context("the parallax_condition series")
        );
    }

    /// Every target of `targets` has every view (`views` of each) healthy, no mismatch, nothing
    /// explained, and its `[target.cluster]` facts; discovery noted nothing and the cluster has no
    /// condition.
    fn check_healthy(&mut self, daemon: &Daemon, targets: &[String], views: usize) {
        let healthy = |t: &Value| {
            let vs = t["views"].as_array().map(Vec::as_slice).unwrap_or_default();
            vs.len() == views && vs.iter().all(|v| v["verdict"]["state"] == "healthy")
        };
        let doc = self.wait(daemon, "every view of every target healthy", |doc| {
            targets.iter().all(|name| find_target(doc, name).is_some_and(healthy))
        });
        let context = |what: &str| self.context(daemon, what, &doc);
        assert_eq!(
            doc["targets"].as_array().map(Vec::len),
            Some(targets.len()),
            "{}",
            context("the targets")
        );
        for name in targets {
            let t = find_target(&doc, name).cloned().unwrap_or_default();
            assert_eq!(t["mismatches"], json!([]), "{}", context(name));
            assert!(t["explained"].is_null(), "{}", context(name));
            let facts = &t["cluster"];
            assert!(facts["ready_endpoints"].as_u64().is_some_and(|n| n > 0), "{}", context(name));
        }
        assert_eq!(doc["discovery"]["notes"], json!([]), "{}", context("nothing skipped, nothing noted"));
        self.assert_conditions(daemon, &doc, &[]);
    }

    /// What a failure message shows: `what`, the last status document, the forwarder's count,
    /// the daemon's log and every lab process's log.
    fn context(&self, daemon: &Daemon, what: &str, doc: &Value) -> String {
        let role = match daemon.ns {
            Ns::Node(i) => format!("node{}", i + 1),
            _ => "client".to_owned(),
        };
        format!(
            "{what}\n--- last status:\n{doc:#}\n--- forwarder: {} connections to {}\n--- parallax run {role}:\n{}\n{}",
            daemon.forwarder.accepted.load(Ordering::Relaxed),
            daemon.forwarder.upstream,
            self.lab.log_of(&format!("parallax run {role}")),
            self.lab.logs()
        )
    }
}

// ---- the objects ---------------------------------------------------------------------------

/// Where node mode's `shop` has an endpoint: its address, the node (0 or 1), how ready.
type Placed = (&'static str, usize, Ready);

/// What node 1's kube-proxy serves for `shop`.
#[derive(Clone, Copy)]
enum Proxy {
    /// The traffic port (nodePort), to the pod: 200.
    TrafficPort,
    /// `healthCheckNodePort` counting this many local endpoints.
    HealthPort(u32),
}

/// How ready an endpoint is (EndpointSlice `conditions`).
#[derive(Clone, Copy)]
enum Ready {
    /// Ready and serving.
    Yes,
    /// Neither ready nor serving (failing its readiness probe).
    No,
    /// Terminating while still serving: `ready: false, serving: true, terminating: true`.
    Terminating,
}

/// An EndpointSlice endpoint at `ip` on `node`.
fn endpoint(ip: &str, node: String, ready: Ready) -> Value {
    let conditions = match ready {
        Ready::Yes => json!({"ready": true, "serving": true, "terminating": false}),
        Ready::No => json!({"ready": false, "serving": false, "terminating": false}),
        Ready::Terminating => json!({"ready": false, "serving": true, "terminating": true}),
    };
    json!({"addresses": [ip], "conditions": conditions, "nodeName": node})
}

/// The EndpointSlice of Service `service` holding `endpoints` (port `http` 8080).
fn slice(service: &str, endpoints: &[Value]) -> Object {
    Object::new(json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("{service}-abcde"), "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]
    }))
}

/// Node mode's `shop`: a selected LoadBalancer Service with `etp` (`Local`: `ports.health` as
/// its `healthCheckNodePort`), the users' request as an annotation, the VIP in its status; and
/// its EndpointSlice.
fn node_service(ports: &Ports, etp: &str, endpoints: &[Value]) -> Vec<Object> {
    let mut spec = json!({
        "type": "LoadBalancer",
        "externalTrafficPolicy": etp,
        "selector": {"app": "shop"},
        "ports": [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": ports.node, "protocol": "TCP"}]
    });
    if etp == "Local" {
        spec["healthCheckNodePort"] = json!(ports.health);
    }
    let service = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "shop", "labels": {SELECTED: "true"},
                     "annotations": {"parallax.io/client-url": "http://shop.lab/cart"}},
        "spec": spec
    });
    let lb = json!({"loadBalancer": {"ingress": [{"ip": VIP.to_string()}]}});
    vec![Object::new(service).status(lb), slice("shop", endpoints)]
}

/// A ClusterIP Service `name` (port 80; selected when `selected`) and its EndpointSlice (none
/// when `endpoints` is empty).
fn backend(name: &str, selected: bool, endpoints: &[Value]) -> Vec<Object> {
    let labels = if selected { json!({SELECTED: "true"}) } else { json!({}) };
    let service = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "labels": labels},
        "spec": {"selector": {"app": name},
                 "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}
    });
    let mut objects = vec![Object::new(service)];
    if !endpoints.is_empty() {
        objects.push(slice(name, endpoints));
    }
    objects
}

/// A selected Ingress `name`: `host` `/` to `service` port 80, of `class` when given; its
/// status holds [`LB_ADDRESS`] when `addressed`.
fn ingress(name: &str, host: &str, class: Option<&str>, service: &str, addressed: bool) -> Object {
    let rule = json!({"host": host, "http": {"paths": [{"path": "/", "pathType": "Prefix",
        "backend": {"service": {"name": service, "port": {"number": 80}}}}]}});
    let mut spec = json!({"rules": [rule]});
    if let Some(class) = class {
        spec["ingressClassName"] = json!(class);
    }
    let object = Object::new(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": name, "labels": {SELECTED: "true"}},
        "spec": spec
    }));
    if addressed {
        object.status(json!({"loadBalancer": {"ingress": [{"ip": LB_ADDRESS.to_string()}]}}))
    } else {
        object
    }
}

/// A condition as a controller writes it.
fn condition((type_, status, reason): (&str, &str, &str)) -> Value {
    json!({"type": type_, "status": status, "reason": reason, "message": "",
           "lastTransitionTime": "2026-12-01T10:00:00Z", "observedGeneration": 1})
}

/// The selected Gateway `gw`: one HTTP listener on 80 for `*.lab`, [`LB_ADDRESS`] in its
/// status, `Programmed` True or False (reason `Invalid`).
fn gateway(programmed: bool) -> Object {
    let gateway = json!({
        "apiVersion": GATEWAY_API, "kind": "Gateway",
        "metadata": {"name": "gw", "labels": {SELECTED: "true"}},
        "spec": {"gatewayClassName": "lab", "listeners": [
            {"name": "http", "protocol": "HTTP", "port": 80, "hostname": "*.lab"}]}
    });
    let programmed =
        if programmed { ("Programmed", "True", "Programmed") } else { ("Programmed", "False", "Invalid") };
    let status = json!({
        "addresses": [{"type": "IPAddress", "value": LB_ADDRESS.to_string()}],
        "conditions": [condition(("Accepted", "True", "Accepted")), condition(programmed)]
    });
    Object::new(gateway).status(status)
}

/// The selected HTTPRoute `web` on `gw` for `host`, every path to Service `service` port 80,
/// its parent status holding `conditions`.
fn http_route(host: &str, service: &str, conditions: &[(&str, &str, &str)]) -> Object {
    let route = json!({
        "apiVersion": GATEWAY_API, "kind": "HTTPRoute",
        "metadata": {"name": "web", "labels": {SELECTED: "true"}},
        "spec": {"parentRefs": [{"name": "gw"}], "hostnames": [host],
                 "rules": [{"backendRefs": [{"name": service, "port": 80}]}]}
    });
    let parent = json!({"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw"});
    let conditions: Vec<Value> = conditions.iter().copied().map(condition).collect();
    let status = json!({"parents": [{"parentRef": parent, "controllerName": "example.com/gateway",
                                     "conditions": conditions}]});
    Object::new(route).status(status)
}

/// The `[target.cluster]` of node mode's `shop` on node 1 with `etp`: `(ready, local ready,
/// local terminating)` endpoints.
fn node_facts(env: &Env, ports: &Ports, etp: &str, (ready, local, terminating): (u32, u32, u32)) -> Value {
    let health = if etp == "Local" { json!(ports.health) } else { Value::Null };
    json!({
        "object": format!("Service {}/shop", env.ns), "node": env.node(0), "backends": [format!("{}/shop", env.ns)],
        "traffic_policy": etp, "health_check_node_port": health, "ready_endpoints": ready,
        "local_ready_endpoints": local, "local_terminating_endpoints": terminating
    })
}

/// The `[target.cluster]` of HTTPRoute `web` for `shop.lab` to (unselected) Service `service`.
fn route_facts(env: &Env, service: &str) -> Value {
    json!({"object": format!("HTTPRoute {}/web", env.ns), "backends": [format!("{}/{service}", env.ns)],
           "ready_endpoints": null, "route_hosts": ["shop.lab"]})
}

// ---- the wire ------------------------------------------------------------------------------

/// kube-proxy's NodePort of `shop` on node 1: the shop pod answers 200.
fn traffic_port(ports: &Ports) -> Answer {
    let listen = SocketAddr::from((NODE_IPS[0], ports.node));
    Answer { listen, host: None, status: 200, body: "shop: cart ok\n".to_owned(), json: false }
}

/// kube-proxy's `healthCheckNodePort` on node 1 with `local` local endpoints (200 when some, else
/// 503), its JSON body.
fn kube_proxy(ports: &Ports, local: u32) -> Answer {
    let listen = SocketAddr::from((NODE_IPS[0], ports.health));
    let body = format!(
        r#"{{"service":{{"namespace":"lab","name":"shop"}},"localEndpoints":{local},"serviceProxyHealthy":true}}"#
    );
    Answer { listen, host: None, status: if local > 0 { 200 } else { 503 }, body, json: true }
}

// ---- reading the status --------------------------------------------------------------------

/// The external target of Ingress `name`'s rule `host` `/`.
fn ingress_target(ns: &str, name: &str, host: &str) -> String {
    format!("ingress.{ns}.{name}.{host}._")
}

/// The external target of HTTPRoute `web`'s hostname `host` on `gw`, every path.
fn route_target(ns: &str, host: &str) -> String {
    format!("route.{ns}.web.{host}._")
}

/// The target `name` of a status document.
fn find_target<'a>(doc: &'a Value, name: &str) -> Option<&'a Value> {
    doc["targets"].as_array()?.iter().find(|t| t["name"] == name)
}

/// The open mismatch of target status `t` whose checker view is `checker`.
fn mismatch(t: &Value, checker: &str) -> Option<Value> {
    t["mismatches"].as_array()?.iter().find(|m| m["checker_view"] == checker).cloned()
}

/// The top-level `conditions` of a status document.
fn conditions_of(doc: &Value) -> Vec<Value> {
    doc["conditions"].as_array().cloned().unwrap_or_default()
}

/// Asserts that `evidence` names each of `names`.
fn assert_names(evidence: &Value, names: &[String], context: &dyn Fn(&str) -> String) {
    let text = evidence.as_str().unwrap_or_default();
    for name in names {
        assert!(text.contains(name.as_str()), "{}", context(&format!("the evidence names {name:?}")));
    }
}

/// A JSON string's text.
fn text(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}
