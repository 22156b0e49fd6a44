//! The derivation table of docs/kubernetes.md, row by row, against a real kube-apiserver and etcd
//! on loopback (`support::kube`): each test creates its objects in a namespace of its own, lets
//! the API server default and allocate what it does (node ports, `healthCheckNodePort`, CRD
//! defaults), writes `status` where a controller would, runs the real `parallax discover` and
//! asserts its JSON view by view, with node ports read back from the stored objects. Nothing is
//! probed: the node's IP is a loopback address that only appears in URLs.

mod support;

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

use support::kube::KubeServer;

/// The loopback address standing for this node (`--node-ip`).
const NODE_IP: &str = "127.0.0.71";
/// The prefix of the AWS Service annotations.
const AWS: &str = "service.beta.kubernetes.io/aws-load-balancer-";
/// The prefix of the Azure Service annotations.
const AZURE: &str = "service.beta.kubernetes.io/";

// ---- objects ---------------------------------------------------------------------------------

/// `b` merged into `a`, objects key by key (`null` removes a key, as a JSON merge patch does).
fn merge(a: Value, b: Value) -> Value {
    match (a, b) {
        (Value::Object(mut a), Value::Object(b)) => {
            for (k, v) in b {
                if v.is_null() {
                    a.remove(&k);
                    continue;
                }
                let merged = match a.remove(&k) {
                    Some(old) => merge(old, v),
                    None => v,
                };
                a.insert(k, merged);
            }
            Value::Object(a)
        }
        (_, b) => b,
    }
}

/// A selected `type: LoadBalancer` Service `name`, port `http` 80 -> 8080 (TCP), ETP Cluster,
/// with `extra` merged in; the API server allocates its node port(s).
fn service(name: &str, extra: Value) -> Value {
    let base = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "labels": {"parallax.io/probe": "true"}},
        "spec": {
            "type": "LoadBalancer", "selector": {"app": name}, "externalTrafficPolicy": "Cluster",
            "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]
        }
    });
    merge(base, extra)
}

/// [`service`] with `annotations`.
fn annotated(name: &str, annotations: Value) -> Value {
    service(name, json!({"metadata": {"annotations": annotations}}))
}

/// [`service`] with `externalTrafficPolicy: Local` (the server allocates `healthCheckNodePort`)
/// and `annotations`.
fn local(name: &str, annotations: Value) -> Value {
    service(
        name,
        json!({"metadata": {"annotations": annotations}, "spec": {"externalTrafficPolicy": "Local"}}),
    )
}

/// What the API server stored for a Service: its node ports by port name, and its HCNP.
struct Stored {
    node_ports: Vec<(String, u64)>,
    hcnp: Option<u64>,
}

impl Stored {
    /// The allocated nodePort of port `name`.
    fn node_port(&self, name: &str) -> u64 {
        self.node_ports
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| *p)
            .unwrap_or_else(|| panic!("port {name}"))
    }

    /// The allocated `healthCheckNodePort`.
    fn hcnp(&self) -> u64 {
        self.hcnp.expect("a healthCheckNodePort (ETP Local)")
    }
}

// ---- running discover ------------------------------------------------------------------------

/// `parallax discover` against the shared server as the DaemonSet's ServiceAccount, in `ns`,
/// with `args`; its stdout (panics with stderr when it fails).
fn discover(server: &KubeServer, ns: &str, args: &[&str]) -> String {
    let kubeconfig = server.parallax_kubeconfig();
    let mut command = Command::new(env!("CARGO_BIN_EXE_parallax"));
    command.arg("discover").arg("--kubeconfig").arg(&kubeconfig).args(["-n", ns]).args(args);
    run(command)
}

/// `parallax discover --from <files>` in `ns` with `args`; its stdout.
fn discover_from(files: &[&Path], ns: &str, args: &[&str]) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_parallax"));
    command.arg("discover");
    for file in files {
        command.arg("--from").arg(file);
    }
    command.args(["-n", ns]).args(args);
    run(command)
}

/// The stdout of `command` (without NODE_NAME/NODE_IP from the environment); panics with its
/// stderr when it exits non-zero.
fn run(mut command: Command) -> String {
    command.env_remove("NODE_NAME").env_remove("NODE_IP").env_remove("KUBECONFIG");
    let output = command.output().unwrap_or_else(|e| panic!("run {command:?}: {e}"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{command:?} failed ({}): {stderr}", output.status);
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

/// The JSON output of `discover`, parsed.
struct Derived(Value);

impl Derived {
    /// `discover ... --format json`.
    fn of(server: &KubeServer, ns: &str, args: &[&str]) -> Derived {
        let mut args = args.to_vec();
        args.extend(["--format", "json"]);
        let text = discover(server, ns, &args);
        Derived(serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}")))
    }

    /// The targets, as JSON.
    fn targets(&self) -> &[Value] {
        self.0["targets"].as_array().map(Vec::as_slice).unwrap_or_default()
    }

    /// The names of the targets, in order.
    fn names(&self) -> Vec<&str> {
        self.targets().iter().filter_map(|t| t["name"].as_str()).collect()
    }

    /// Target `name`, as JSON; panics naming the targets there are.
    fn target(&self, name: &str) -> &Value {
        self.targets()
            .iter()
            .find(|t| t["name"] == name)
            .unwrap_or_else(|| panic!("no target {name} in {:?}", self.names()))
    }

    /// The names of the checker views of `target`.
    fn checkers(&self, target: &str) -> Vec<&str> {
        let checkers = self.target(target)["checkers"].as_array().map(Vec::as_slice).unwrap_or_default();
        checkers.iter().filter_map(|c| c["name"].as_str()).collect()
    }

    /// Checker `view` of `target` (`client`: its client view), as JSON.
    fn raw_view(&self, target: &str, view: &str) -> &Value {
        let t = self.target(target);
        let found = if view == "client" {
            Some(&t["client"])
        } else {
            t["checkers"].as_array().and_then(|c| c.iter().find(|v| v["name"] == view))
        };
        found.unwrap_or_else(|| panic!("no view {view} in {target}: {t:#}"))
    }

    /// The settings of `view` of `target`, as JSON.
    fn settings(&self, target: &str, view: &str) -> &[Value] {
        self.raw_view(target, view)["settings"].as_array().map(Vec::as_slice).unwrap_or_default()
    }

    /// The (key, value) settings of `view` of `target`, in order; values as probes.d prints
    /// them, strings without their quotes.
    fn values(&self, target: &str, view: &str) -> Vec<(String, String)> {
        let value = |v: &Value| match v {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        let settings = self.settings(target, view).iter();
        settings.map(|s| (s["key"].as_str().unwrap_or("?").to_owned(), value(&s["value"]))).collect()
    }

    /// The origin of `key` in `view` of `target`, as `kind: what`.
    fn origin(&self, target: &str, view: &str, key: &str) -> String {
        let found = self.settings(target, view).iter().find(|s| s["key"] == key);
        let origin = &found.unwrap_or_else(|| panic!("no {key} in {target} {view}"))["origin"];
        format!("{}: {}", origin["kind"].as_str().unwrap_or("?"), origin["what"].as_str().unwrap_or("?"))
    }

    /// The comments of `target`.
    fn comments(&self, target: &str) -> Vec<&str> {
        let comments = self.target(target)["comments"].as_array().map(Vec::as_slice).unwrap_or_default();
        comments.iter().filter_map(Value::as_str).collect()
    }

    /// The notes, each as `message`.
    fn notes(&self) -> Vec<&str> {
        let notes = self.0["notes"].as_array().map(Vec::as_slice).unwrap_or_default();
        notes.iter().filter_map(|n| n["message"].as_str()).collect()
    }

    /// The objects the notes are about, each as `Kind ns/name`.
    fn note_objects(&self) -> Vec<String> {
        let notes = self.0["notes"].as_array().map(Vec::as_slice).unwrap_or_default();
        let object = |o: &Value| {
            format!(
                "{} {}/{}",
                o["kind"].as_str().unwrap_or("?"),
                o["namespace"].as_str().unwrap_or("?"),
                o["name"].as_str().unwrap_or("?")
            )
        };
        notes.iter().map(|n| object(&n["object"])).collect()
    }
}

/// Expected (key, value) settings, as [`Derived::values`] gives them.
fn kv(settings: &[(&str, &str)]) -> Vec<(String, String)> {
    settings.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

/// An HTTP checker's settings: profile, url, interval, timeout, rise, fall, expect.status.
fn http(profile: &str, url: &str, timing: [&str; 4], status: &str) -> Vec<(String, String)> {
    let [interval, timeout, rise, fall] = timing;
    kv(&[
        ("profile", profile),
        ("url", url),
        ("interval", interval),
        ("timeout", timeout),
        ("rise", rise),
        ("fall", fall),
        ("expect.status", status),
    ])
}

/// A TCP checker's settings: [`http`] without `expect.status`.
fn tcp(profile: &str, url: &str, timing: [&str; 4]) -> Vec<(String, String)> {
    let mut settings = http(profile, url, timing, "");
    settings.pop();
    settings
}

/// kube-proxy's view of `hcnp` on [`NODE_IP`].
fn kube_proxy(hcnp: u64) -> Vec<(String, String)> {
    kv(&[("profile", "kube-proxy"), ("url", &format!("http://{NODE_IP}:{hcnp}/healthz"))])
}

/// `field: <path>`, as [`Derived::origin`] gives a field origin.
fn field(path: &str) -> String {
    format!("field: {path}")
}

/// `annotation: <name>`.
fn annotation(name: &str) -> String {
    format!("annotation: {name}")
}

/// One test's namespace on the shared server, and the name of its node (unique: Nodes are
/// cluster-scoped; the Node object exists only when [`Case::node_object`] creates it).
struct Case {
    server: &'static KubeServer,
    ns: String,
    node: String,
}

impl Case {
    /// A fresh namespace `PREFIX-<random>` on the shared server.
    async fn new(prefix: &str) -> Case {
        let server = KubeServer::shared();
        let ns = server.namespace(prefix).await;
        let node = format!("{ns}-node");
        Case { server, ns, node }
    }

    /// Creates `object` in the namespace.
    async fn create(&self, object: Value) {
        self.server.create(&self.ns, object).await;
    }

    /// Creates the Service `object` and returns what the server allocated.
    async fn service(&self, object: Value) -> Stored {
        let stored = self.server.create(&self.ns, object).await;
        let spec = &stored.data["spec"];
        let ports = spec["ports"].as_array().map(Vec::as_slice).unwrap_or_default();
        let node_ports = ports
            .iter()
            .filter_map(|p| Some((p["name"].as_str()?.to_owned(), p["nodePort"].as_u64()?)))
            .collect();
        Stored { node_ports, hcnp: spec["healthCheckNodePort"].as_u64() }
    }

    /// Creates this case's Node with `spec.providerID` `provider_id`.
    async fn node_object(&self, provider_id: &str) {
        let node = json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": self.node},
            "spec": {"providerID": provider_id}
        });
        self.server.create("", node).await;
    }

    /// `discover` in node mode on this node at [`NODE_IP`], `provider` unless `auto`, and `extra`.
    fn node_mode(&self, provider: &str, extra: &[&str]) -> Derived {
        let mut args = vec!["--node", self.node.as_str(), "--node-ip", NODE_IP];
        if provider != "auto" {
            args.extend(["--provider", provider]);
        }
        args.extend(extra);
        Derived::of(self.server, &self.ns, &args)
    }

    /// `discover --mode external`.
    fn external(&self) -> Derived {
        Derived::of(self.server, &self.ns, &["--mode", "external"])
    }

    /// The node-mode flags [`Case::node_mode`] passes.
    fn node_flags<'a>(&'a self, provider: &'a str) -> [&'a str; 6] {
        ["--node", &self.node, "--node-ip", NODE_IP, "--provider", provider]
    }

    /// The node-mode target of `port` of Service `name`.
    fn target(&self, name: &str, port: &str) -> String {
        format!("svc.{}.{name}.{port}", self.ns)
    }

    /// Writes `status.loadBalancer.ingress` of `v1`/`networking.k8s.io/v1` `kind` `name`.
    async fn lb_status(&self, api_version: &str, kind: &str, name: &str, ips: &[&str]) {
        let ingress: Vec<Value> = ips.iter().map(|ip| json!({"ip": ip})).collect();
        let status = json!({"loadBalancer": {"ingress": ingress}});
        self.server.patch_status(&self.ns, api_version, kind, name, status).await;
    }
}

// ---- AWS Load Balancer Controller, NLB -------------------------------------------------------

/// The origin of the Load Balancer Controller's NLB defaults.
const LBC: &str = "provider_default: aws-load-balancer-controller default (pkg/service/model_builder.go)";

#[tokio::test]
async fn aws_lbc_nlb_defaults_to_tcp_on_the_traffic_port() {
    let case = Case::new("aws-lbc").await;
    let stored =
        case.service(service("web", json!({"spec": {"loadBalancerClass": "service.k8s.aws/nlb"}}))).await;
    let derived = case.node_mode("aws", &[]);
    let target = case.target("web", "http");
    assert_eq!(derived.names(), [target.as_str()]);
    assert_eq!(derived.checkers(&target), ["aws-nlb"]);
    let url = format!("tcp://{NODE_IP}:{}", stored.node_port("http"));
    assert_eq!(derived.values(&target, "aws-nlb"), tcp("aws-nlb", &url, ["10s", "9900ms", "3", "3"]));
    assert_eq!(derived.origin(&target, "aws-nlb", "url"), field("spec.ports[http].nodePort"));
    assert_eq!(derived.origin(&target, "aws-nlb", "interval"), LBC);
    assert_eq!(derived.origin(&target, "aws-nlb", "rise"), LBC);
    assert!(derived.comments(&target)[0].starts_with("provider aws-lbc"), "{:?}", derived.comments(&target));
    // The client view: the users' request to this node's traffic port (no LB address yet).
    let client = derived.values(&target, "client");
    let host = format!("http://web.{}.svc.cluster.local/", case.ns);
    let connect = format!("{NODE_IP}:{}", stored.node_port("http"));
    assert_eq!(client, kv(&[("url", &host), ("connect_to", &connect)]));
    assert_eq!(derived.notes(), Vec::<&str>::new());
}

#[tokio::test]
async fn aws_lbc_nlb_etp_local_instance_checks_the_health_check_node_port() {
    let case = Case::new("aws-lbc-local").await;
    let stored = case.service(local("web", json!({format!("{AWS}type"): "external"}))).await;
    let derived = case.node_mode("aws", &[]);
    let target = case.target("web", "http");
    assert_eq!(derived.checkers(&target), ["aws-nlb", "kube-proxy"]);
    let url = format!("http://{NODE_IP}:{}/healthz", stored.hcnp());
    assert_eq!(derived.values(&target, "aws-nlb"), http("aws-nlb", &url, ["10s", "6s", "2", "2"], "200-399"));
    assert_eq!(derived.origin(&target, "aws-nlb", "url"), field("spec.healthCheckNodePort"));
    assert_eq!(derived.values(&target, "kube-proxy"), kube_proxy(stored.hcnp()));
    assert_eq!(derived.origin(&target, "kube-proxy", "url"), field("spec.healthCheckNodePort"));
}

#[tokio::test]
async fn aws_lbc_nlb_annotations_set_protocol_named_port_path_timing_and_codes() {
    let case = Case::new("aws-lbc-ann").await;
    let hc = |k: &str| format!("{AWS}healthcheck-{k}");
    let svc = service(
        "web",
        json!({
            "metadata": {"annotations": {
                format!("{AWS}type"): "external",
                hc("protocol"): "http", hc("port"): "admin", hc("path"): "/ready", hc("interval"): "5",
                hc("timeout"): "3", hc("healthy-threshold"): "2", hc("unhealthy-threshold"): "4",
                hc("success-codes"): "200-299"
            }},
            "spec": {"ports": [
                {"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"},
                {"name": "admin", "port": 9000, "targetPort": 9000, "protocol": "TCP"}
            ]}
        }),
    );
    let stored = case.service(svc).await;
    let derived = case.node_mode("aws", &[]);
    let target = case.target("web", "http");
    assert_eq!(derived.names(), [target.clone(), case.target("web", "admin")]);
    let url = format!("http://{NODE_IP}:{}/ready", stored.node_port("admin"));
    assert_eq!(derived.values(&target, "aws-nlb"), http("aws-nlb", &url, ["5s", "3s", "2", "4"], "200-299"));
    let origins = ["url", "interval", "timeout", "rise", "fall", "expect.status"]
        .map(|k| derived.origin(&target, "aws-nlb", k));
    let annotations =
        ["path", "interval", "timeout", "healthy-threshold", "unhealthy-threshold", "success-codes"];
    assert_eq!(origins, annotations.map(|a| annotation(&hc(a))));
    let port_part = format!("port {} from annotation {}", stored.node_port("admin"), hc("port"));
    assert!(
        derived.comments(&target).iter().any(|c| c.contains(&port_part)),
        "{:?}",
        derived.comments(&target)
    );
}

/// An EndpointSlice of Service `service` with port `http` 8080: `endpoints` as (IP, node, ready).
fn endpoint_slice(service: &str, endpoints: &[(&str, &str, bool)]) -> Value {
    let endpoints: Vec<Value> = endpoints
        .iter()
        .map(|(ip, node, ready)| json!({"addresses": [ip], "nodeName": node, "conditions": {"ready": ready}}))
        .collect();
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
        "metadata": {"name": format!("{service}-abc"), "labels": {"kubernetes.io/service-name": service}},
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": endpoints
    })
}

/// A Service with ip targets (`nlb-target-type: ip`).
fn ip_targets(name: &str) -> Value {
    annotated(name, json!({format!("{AWS}type"): "external", format!("{AWS}nlb-target-type"): "ip"}))
}

#[tokio::test]
async fn aws_lbc_nlb_ip_targets_check_each_ready_local_pod() {
    let case = Case::new("aws-ip").await;
    case.service(ip_targets("web")).await;
    let endpoints = [
        ("10.244.1.7", case.node.as_str(), true),
        ("10.244.1.8", case.node.as_str(), false),
        ("10.244.2.9", "another-node", true),
        ("10.244.1.10", case.node.as_str(), true),
    ];
    case.create(endpoint_slice("web", &endpoints)).await;
    let derived = case.node_mode("aws", &[]);
    // One target per ready local pod: the NLB sends users' requests to the pod, not the node.
    let pods = ["10.244.1.7", "10.244.1.10"].map(|ip| format!("{}.{ip}", case.target("web", "http")));
    assert_eq!(derived.names(), pods.iter().map(String::as_str).collect::<Vec<_>>());
    let slice = format!("EndpointSlice {}/web-abc", case.ns);
    for (target, ip) in pods.iter().zip(["10.244.1.7", "10.244.1.10"]) {
        assert_eq!(derived.checkers(target), ["aws-nlb"]);
        let url = format!("tcp://{ip}:8080");
        assert_eq!(derived.values(target, "aws-nlb"), tcp("aws-nlb", &url, ["10s", "9900ms", "3", "3"]));
        assert_eq!(derived.origin(target, "aws-nlb", "url"), field(&slice));
        let client = derived.values(target, "client");
        let connect_to = client.iter().find(|(k, _)| k == "connect_to").map(|(_, v)| v.as_str());
        assert_eq!(connect_to, Some(format!("{ip}:8080").as_str()), "{client:?}");
        assert_eq!(
            derived.origin(target, "client", "connect_to"),
            field(&format!("{slice} ports[http].port"))
        );
    }
}

#[tokio::test]
async fn aws_lbc_nlb_ip_targets_without_a_local_pod_give_no_target_here() {
    let case = Case::new("aws-ip-none").await;
    case.service(ip_targets("web")).await;
    case.create(endpoint_slice("web", &[("10.244.2.9", "another-node", true)])).await;
    let derived = case.node_mode("aws", &[]);
    assert_eq!(derived.names(), Vec::<&str>::new());
    assert_eq!(derived.notes(), Vec::<&str>::new());
}

#[tokio::test]
async fn aws_lbc_nlb_ip_targets_of_an_unnamed_port_find_the_slices_unnamed_port() {
    let case = Case::new("aws-ip-unnamed").await;
    let mut svc = ip_targets("web");
    svc["spec"]["ports"] = json!([{"port": 80, "targetPort": 8080, "protocol": "TCP"}]);
    case.service(svc).await;
    // The EndpointSlice controller names the slice port of an unnamed Service port "".
    let mut slice = endpoint_slice("web", &[("10.244.1.7", case.node.as_str(), true)]);
    slice["ports"] = json!([{"name": "", "port": 8080, "protocol": "TCP"}]);
    case.create(slice).await;
    let derived = case.node_mode("aws", &[]);
    let target = format!("{}.10.244.1.7", case.target("web", "80"));
    assert_eq!(derived.names(), [target.as_str()]);
    let view = derived.values(&target, "aws-nlb");
    assert_eq!(view, tcp("aws-nlb", "tcp://10.244.1.7:8080", ["10s", "9900ms", "3", "3"]));
    let client = derived.values(&target, "client");
    assert!(client.contains(&("connect_to".to_owned(), "10.244.1.7:8080".to_owned())), "{client:?}");
}

// ---- legacy AWS (Classic ELB) ----------------------------------------------------------------

#[tokio::test]
async fn aws_legacy_clb_checks_tcp_on_the_first_node_port_for_every_port() {
    let case = Case::new("aws-clb").await;
    let ports = json!({"spec": {"ports": [
        {"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"},
        {"name": "https", "port": 443, "targetPort": 8443, "protocol": "TCP"}
    ]}});
    let stored = case.service(service("web", ports)).await;
    let derived = case.node_mode("aws", &[]);
    let url = format!("tcp://{NODE_IP}:{}", stored.node_port("http"));
    for port in ["http", "https"] {
        let target = case.target("web", port);
        assert_eq!(derived.checkers(&target), ["aws-clb"]);
        assert_eq!(derived.values(&target, "aws-clb"), tcp("aws-clb", &url, ["10s", "5s", "2", "6"]));
        assert_eq!(
            derived.origin(&target, "aws-clb", "url"),
            field("spec.ports[0].nodePort (the first listener)")
        );
    }
}

#[tokio::test]
async fn aws_legacy_clb_etp_local_checks_http_health_check_node_port() {
    let case = Case::new("aws-clb-local").await;
    let stored = case.service(local("web", json!({}))).await;
    let derived = case.node_mode("aws", &[]);
    let target = case.target("web", "http");
    assert_eq!(derived.checkers(&target), ["aws-clb", "kube-proxy"]);
    let url = format!("http://{NODE_IP}:{}/healthz", stored.hcnp());
    assert_eq!(derived.values(&target, "aws-clb"), http("aws-clb", &url, ["10s", "5s", "2", "6"], "200"));
    assert_eq!(derived.values(&target, "kube-proxy"), kube_proxy(stored.hcnp()));
}

#[tokio::test]
async fn aws_legacy_nlb_checks_tcp_traffic_port_every_30s() {
    let case = Case::new("aws-legacy-nlb").await;
    let stored = case.service(annotated("web", json!({format!("{AWS}type"): "nlb"}))).await;
    let derived = case.node_mode("aws", &[]);
    let target = case.target("web", "http");
    assert_eq!(derived.checkers(&target), ["aws-nlb"]);
    let url = format!("tcp://{NODE_IP}:{}", stored.node_port("http"));
    assert_eq!(derived.values(&target, "aws-nlb"), tcp("aws-nlb", &url, ["30s", "10s", "3", "3"]));
    let comments = derived.comments(&target);
    assert!(comments[0].starts_with("provider aws-legacy"), "{comments:?}");
}

// ---- AWS ALB through the default IngressClass ------------------------------------------------

#[tokio::test]
async fn aws_alb_ingress_through_the_default_ingress_class_checks_http_on_the_traffic_port() {
    let case = Case::new("alb-default").await;
    // Cluster-scoped: named after the namespace. The API server's DefaultIngressClass admission
    // writes its name into an Ingress created without a class.
    let class = format!("{}-alb", case.ns);
    let ingress_class = json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
        "metadata": {"name": class, "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"}},
        "spec": {"controller": "ingress.k8s.aws/alb"}
    });
    case.server.create("", ingress_class).await;
    let alb = "alb.ingress.kubernetes.io/";
    let svc = service(
        "web",
        json!({"metadata": {"annotations": {format!("{alb}healthcheck-path"): "/svc"}}, "spec": {"type": "NodePort"}}),
    );
    let stored = case.service(svc).await;
    let mut classless = ingress("shop", "", "shop.example.com");
    classless["spec"]["ingressClassName"] = Value::Null;
    classless["metadata"]["annotations"] = json!({format!("{alb}success-codes"): "200,302"});
    let created = case.server.create(&case.ns, classless).await;
    assert_eq!(created.data["spec"]["ingressClassName"], class.as_str(), "the default class was admitted");
    let derived = case.node_mode("aws", &[]);
    let target = case.target("web", "http");
    assert_eq!(derived.checkers(&target), ["aws-alb"]);
    let url = format!("http://{NODE_IP}:{}/svc", stored.node_port("http"));
    let mut expected = http("aws-alb", &url, ["15s", "5s", "2", "2"], "");
    expected[6].1 = r#"["200","302"]"#.to_owned();
    assert_eq!(derived.values(&target, "aws-alb"), expected);
    assert_eq!(derived.origin(&target, "aws-alb", "url"), annotation(&format!("{alb}healthcheck-path")));
    let codes = annotation(&format!("{alb}success-codes on Ingress {}/shop", case.ns));
    assert_eq!(derived.origin(&target, "aws-alb", "expect.status"), codes);
}

// ---- Azure -----------------------------------------------------------------------------------

#[tokio::test]
async fn azure_defaults_to_tcp_on_the_node_port_every_5s() {
    let case = Case::new("azure").await;
    let stored = case.service(service("web", json!({}))).await;
    let derived = case.node_mode("azure", &[]);
    let target = case.target("web", "http");
    assert_eq!(derived.checkers(&target), ["azure-lb"]);
    let url = format!("tcp://{NODE_IP}:{}", stored.node_port("http"));
    assert_eq!(derived.values(&target, "azure-lb"), tcp("azure-lb", &url, ["5s", "4900ms", "2", "2"]));
}

/// A Service whose port `http` says `appProtocol: http`, with `annotations`.
fn app_protocol_http(annotations: Value) -> Value {
    service(
        "web",
        json!({
            "metadata": {"annotations": annotations},
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP", "appProtocol": "http"}]}
        }),
    )
}

#[tokio::test]
async fn azure_app_protocol_http_probes_slash_before_the_global_annotation() {
    let case = Case::new("azure-app").await;
    let global = json!({format!("{AZURE}azure-load-balancer-health-probe-protocol"): "tcp"});
    let stored = case.service(app_protocol_http(global)).await;
    let derived = case.node_mode("azure", &[]);
    let target = case.target("web", "http");
    let url = format!("http://{NODE_IP}:{}/", stored.node_port("http"));
    assert_eq!(
        derived.values(&target, "azure-lb"),
        http("azure-lb", &url, ["5s", "4900ms", "2", "2"], "200")
    );
    assert_eq!(derived.origin(&target, "azure-lb", "url"), field("spec.ports[http].appProtocol"));
    assert!(
        derived.comments(&target).iter().any(|c| c.contains("AKS#3210")),
        "{:?}",
        derived.comments(&target)
    );
}

#[tokio::test]
async fn azure_per_port_annotations_win_over_global_ones() {
    let case = Case::new("azure-port").await;
    let port = |k: &str| format!("{AZURE}port_80_health-probe_{k}");
    let annotations = json!({
        port("protocol"): "Tcp", port("interval"): "10", port("num-of-probe"): "3",
        format!("{AZURE}azure-load-balancer-health-probe-interval"): "20"
    });
    let stored = case.service(app_protocol_http(annotations)).await;
    let derived = case.node_mode("azure", &[]);
    let target = case.target("web", "http");
    let url = format!("tcp://{NODE_IP}:{}", stored.node_port("http"));
    assert_eq!(derived.values(&target, "azure-lb"), tcp("azure-lb", &url, ["10s", "9900ms", "3", "3"]));
    assert_eq!(derived.origin(&target, "azure-lb", "url"), annotation(&port("protocol")));
    assert_eq!(derived.origin(&target, "azure-lb", "interval"), annotation(&port("interval")));
    assert_eq!(derived.origin(&target, "azure-lb", "fall"), annotation(&port("num-of-probe")));
}

#[tokio::test]
async fn azure_etp_local_probes_the_health_check_node_port() {
    let case = Case::new("azure-local").await;
    let stored = case.service(local("web", json!({}))).await;
    let derived = case.node_mode("azure", &[]);
    let target = case.target("web", "http");
    assert_eq!(derived.checkers(&target), ["azure-lb", "kube-proxy"]);
    let url = format!("http://{NODE_IP}:{}/healthz", stored.hcnp());
    assert_eq!(
        derived.values(&target, "azure-lb"),
        http("azure-lb", &url, ["5s", "4900ms", "2", "2"], "200")
    );
    assert_eq!(derived.values(&target, "kube-proxy"), kube_proxy(stored.hcnp()));
}

// ---- GKE -------------------------------------------------------------------------------------

#[tokio::test]
async fn gcp_l4_etp_local_checks_health_check_node_port_3s() {
    let case = Case::new("gke-local").await;
    let stored = case.service(local("web", json!({}))).await;
    let derived = case.node_mode("gcp", &[]);
    let target = case.target("web", "http");
    assert_eq!(derived.checkers(&target), ["gcp-l4", "kube-proxy"]);
    let url = format!("http://{NODE_IP}:{}/healthz", stored.hcnp());
    assert_eq!(derived.values(&target, "gcp-l4"), http("gcp", &url, ["3s", "1s", "1", "2"], "200"));
    assert_eq!(derived.origin(&target, "gcp-l4", "url"), field("spec.healthCheckNodePort"));
}

#[tokio::test]
async fn gcp_l4_etp_cluster_checks_kube_proxy_10256() {
    let case = Case::new("gke-cluster").await;
    case.service(service("web", json!({}))).await;
    let derived = case.node_mode("gcp", &[]);
    let target = case.target("web", "http");
    assert_eq!(derived.checkers(&target), ["gcp-l4"]);
    let url = format!("http://{NODE_IP}:10256/healthz");
    assert_eq!(derived.values(&target, "gcp-l4"), http("gcp", &url, ["8s", "1s", "1", "3"], "200"));
}

/// A selected Ingress `name` of class `class` routing `host` `/` to Service `web` port `http`
/// (by name: the Service's port name as the server stored it).
fn ingress(name: &str, class: &str, host: &str) -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": name, "labels": {"parallax.io/probe": "true"}},
        "spec": {"ingressClassName": class, "rules": [{"host": host, "http": {"paths": [
            {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"name": "http"}}}}
        ]}}]}
    })
}

#[tokio::test]
async fn gke_ingress_uses_the_backend_config_health_check() {
    let case = Case::new("gke-bc").await;
    let svc = service(
        "web",
        json!({
            "metadata": {"annotations": {"cloud.google.com/backend-config": "{\"default\": \"web-bc\"}"}},
            "spec": {"type": "NodePort"}
        }),
    );
    let stored = case.service(svc).await;
    case.create(json!({
        "apiVersion": "cloud.google.com/v1", "kind": "BackendConfig",
        "metadata": {"name": "web-bc"},
        "spec": {"healthCheck": {"checkIntervalSec": 20, "timeoutSec": 5, "healthyThreshold": 2,
                                 "unhealthyThreshold": 3, "requestPath": "/bc"}}
    }))
    .await;
    case.create(ingress("web", "gce", "shop.example.com")).await;
    let derived = case.node_mode("gcp", &[]);
    let target = case.target("web", "http");
    assert_eq!(derived.checkers(&target), ["gke-ingress"]);
    let url = format!("http://{NODE_IP}:{}/bc", stored.node_port("http"));
    assert_eq!(derived.values(&target, "gke-ingress"), http("gcp", &url, ["20s", "5s", "2", "3"], "200"));
    let bc = |k: &str| field(&format!("BackendConfig web-bc spec.healthCheck.{k}"));
    assert_eq!(derived.origin(&target, "gke-ingress", "url"), bc("requestPath"));
    assert_eq!(derived.origin(&target, "gke-ingress", "interval"), bc("checkIntervalSec"));
    // The client view: the Ingress rule's request, delivered to this node's port.
    let connect = format!("{NODE_IP}:{}", stored.node_port("http"));
    assert_eq!(
        derived.values(&target, "client"),
        kv(&[("url", "http://shop.example.com/"), ("connect_to", &connect)])
    );
}

#[tokio::test]
async fn gke_ingress_uses_the_readiness_probe_plus_60s_for_instance_groups() {
    let case = Case::new("gke-probe").await;
    let svc = service(
        "web",
        json!({"spec": {"type": "NodePort", "ports": [{"name": "http", "port": 80, "targetPort": "web", "protocol": "TCP"}]}}),
    );
    let stored = case.service(svc).await;
    // No periodSeconds or timeoutSeconds: the API server defaults them (10 s, 1 s).
    let pod = case
        .server
        .create(
            &case.ns,
            json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "web-1", "labels": {"app": "web"}},
                "spec": {"containers": [{"name": "app", "image": "example.com/web:1",
                    "ports": [{"name": "web", "containerPort": 8080}],
                    "readinessProbe": {"httpGet": {"path": "/ready", "port": "web"}}}]}
            }),
        )
        .await;
    let probe = &pod.data["spec"]["containers"][0]["readinessProbe"];
    assert_eq!((&probe["periodSeconds"], &probe["timeoutSeconds"]), (&json!(10), &json!(1)), "{probe}");
    case.create(ingress("web", "gce", "shop.example.com")).await;
    let derived = case.node_mode("gcp", &[]);
    let target = case.target("web", "http");
    let url = format!("http://{NODE_IP}:{}/ready", stored.node_port("http"));
    assert_eq!(derived.values(&target, "gke-ingress"), http("gcp", &url, ["70s", "1s", "1", "10"], "200"));
    let from_pod = |f: &str| field(&format!("Pod web-1 container app readinessProbe.{f}"));
    assert_eq!(derived.origin(&target, "gke-ingress", "url"), from_pod("httpGet.path"));
    let interval = from_pod("periodSeconds + 60 s (instance groups)");
    assert_eq!(derived.origin(&target, "gke-ingress", "interval"), interval);
}

#[tokio::test]
async fn gke_ingress_with_negs_checks_each_local_pod_every_15s() {
    let case = Case::new("gke-neg").await;
    // ClusterIP, as common with NEGs: the load balancer reaches pods directly, no node port needed.
    let svc = annotated("web", json!({"cloud.google.com/neg": "{\"ingress\": true}"}));
    case.service(merge(svc, json!({"spec": {"type": "ClusterIP", "externalTrafficPolicy": null}}))).await;
    case.create(endpoint_slice(
        "web",
        &[("10.244.1.7", case.node.as_str(), true), ("10.244.2.9", "another-node", true)],
    ))
    .await;
    case.create(ingress("web", "gce", "shop.example.com")).await;
    let derived = case.node_mode("gcp", &[]);
    let target = format!("{}.10.244.1.7", case.target("web", "http"));
    assert_eq!(derived.names(), [target.as_str()]);
    assert_eq!(derived.checkers(&target), ["gke-ingress"]);
    let view = derived.values(&target, "gke-ingress");
    assert_eq!(view, http("gcp", "http://10.244.1.7:8080/", ["15s", "14900ms", "1", "2"], "200"));
    // The users' request the Ingress defines, delivered to the pod.
    let client = derived.values(&target, "client");
    assert_eq!(
        client,
        kv(&[("url", "http://shop.example.com/"), ("connect_to", "10.244.1.7:8080")]),
        "{client:?}"
    );
}

// ---- MetalLB, generic ------------------------------------------------------------------------

#[tokio::test]
async fn metallb_sends_no_health_check_only_kube_proxy_for_etp_local() {
    let case = Case::new("metallb").await;
    let stored = case.service(local("web", json!({"metallb.universe.tf/address-pool": "public"}))).await;
    let derived = case.node_mode("auto", &[]);
    let target = case.target("web", "http");
    assert_eq!(derived.checkers(&target), ["kube-proxy"]);
    assert_eq!(derived.values(&target, "kube-proxy"), kube_proxy(stored.hcnp()));
    let comments = derived.comments(&target);
    assert!(comments.iter().any(|c| c.starts_with("MetalLB sends no health check")), "{comments:?}");
}

#[tokio::test]
async fn generic_etp_cluster_has_no_checker_view() {
    let case = Case::new("generic").await;
    case.service(service("web", json!({}))).await;
    let stored = case.service(local("api", json!({}))).await;
    let derived = case.node_mode("generic", &[]);
    assert_eq!(derived.checkers(&case.target("web", "http")), Vec::<&str>::new());
    let comments = derived.comments(&case.target("web", "http"));
    assert!(comments[0].starts_with("provider generic"), "{comments:?}");
    // ETP Local: kube-proxy's view only.
    let api = case.target("api", "http");
    assert_eq!(derived.checkers(&api), ["kube-proxy"]);
    assert_eq!(derived.values(&api, "kube-proxy"), kube_proxy(stored.hcnp()));
}

#[tokio::test]
async fn skipped_ports_udp_and_without_node_port_are_notes_and_a_cluster_ip_service_is_silent() {
    let case = Case::new("skipped").await;
    let ports = json!({"spec": {"allocateLoadBalancerNodePorts": false, "ports": [
        {"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"},
        {"name": "dns", "port": 53, "targetPort": 53, "protocol": "UDP"}
    ]}});
    let stored = case.service(service("web", ports)).await;
    assert_eq!(stored.node_ports, [], "allocateLoadBalancerNodePorts false: no node port");
    case.service(merge(
        service("internal", json!({})),
        json!({"spec": {"type": "ClusterIP", "externalTrafficPolicy": null}}),
    ))
    .await;
    let derived = case.node_mode("azure", &[]);
    assert_eq!(derived.names(), Vec::<&str>::new());
    let notes = derived.notes();
    assert_eq!(notes.len(), 2, "{notes:?}");
    let web = format!("Service {}/web", case.ns);
    assert_eq!(derived.note_objects(), [web.clone(), web]);
    assert!(notes.iter().any(|n| n.starts_with("port dns is UDP")), "{notes:?}");
    let no_node_port = "port http: allocateLoadBalancerNodePorts is false, so the load balancer's instance targets \
                        have no node port to reach: no target on this node (use ip targets, or allocate node ports)";
    assert!(notes.contains(&no_node_port), "{notes:?}");
}

// ---- the provider from the Node --------------------------------------------------------------

#[tokio::test]
async fn the_provider_follows_the_nodes_provider_id() {
    let aws = Case::new("auto-aws").await;
    aws.node_object("aws:///eu-west-1a/i-0abc").await;
    let stored = aws.service(service("web", json!({}))).await;
    let derived = aws.node_mode("auto", &[]);
    let target = aws.target("web", "http");
    assert_eq!(derived.checkers(&target), ["aws-clb"]);
    let url = format!("tcp://{NODE_IP}:{}", stored.node_port("http"));
    assert_eq!(derived.values(&target, "aws-clb"), tcp("aws-clb", &url, ["10s", "5s", "2", "6"]));
    let comments = derived.comments(&target);
    assert!(comments[0].contains("spec.providerID is aws:///eu-west-1a/i-0abc"), "{comments:?}");

    let gce = Case::new("auto-gce").await;
    gce.node_object("gce://project/europe-west1-b/vm-1").await;
    gce.service(service("web", json!({}))).await;
    let derived = gce.node_mode("auto", &[]);
    let target = gce.target("web", "http");
    assert_eq!(derived.checkers(&target), ["gcp-l4"]);
    let url = format!("http://{NODE_IP}:10256/healthz");
    assert_eq!(derived.values(&target, "gcp-l4"), http("gcp", &url, ["8s", "1s", "1", "3"], "200"));
    let comments = derived.comments(&target);
    assert!(comments[0].contains("spec.providerID is gce://project/europe-west1-b/vm-1"), "{comments:?}");
}

// ---- overrides and bad values ----------------------------------------------------------------

#[tokio::test]
async fn parallax_overrides_replace_the_cloud_values_not_kube_proxys() {
    let case = Case::new("overrides").await;
    let svc = local(
        "web",
        json!({
            "parallax.io/check-path": "/deep", "parallax.io/check-interval": "2s",
            "parallax.io/check-timeout": "1500ms", "parallax.io/check-rise": "1",
            "parallax.io/check-status": "200", "parallax.io/check-profile": "generic"
        }),
    );
    let stored = case.service(svc).await;
    let derived = case.node_mode("gcp", &[]);
    let target = case.target("web", "http");
    let url = format!("http://{NODE_IP}:{}/deep", stored.hcnp());
    assert_eq!(derived.values(&target, "gcp-l4"), http("generic", &url, ["2s", "1500ms", "1", "2"], "200"));
    for (key, annotation) in
        [("profile", "profile"), ("url", "path"), ("interval", "interval"), ("rise", "rise")]
    {
        let origin = derived.origin(&target, "gcp-l4", key);
        assert_eq!(origin, format!("override: parallax.io/check-{annotation}"));
    }
    assert_eq!(derived.values(&target, "kube-proxy"), kube_proxy(stored.hcnp()));
}

#[tokio::test]
async fn bad_annotation_values_are_notes_naming_the_value_and_the_default() {
    let case = Case::new("bad-values").await;
    let svc = annotated(
        "web",
        json!({
            format!("{AWS}type"): "external",
            format!("{AWS}healthcheck-interval"): "ten",
            "parallax.io/check-fall": "many"
        }),
    );
    let stored = case.service(svc).await;
    let derived = case.node_mode("aws", &[]);
    let target = case.target("web", "http");
    let url = format!("tcp://{NODE_IP}:{}", stored.node_port("http"));
    assert_eq!(derived.values(&target, "aws-nlb"), tcp("aws-nlb", &url, ["10s", "9900ms", "3", "3"]));
    let notes = derived.notes();
    assert_eq!(notes.len(), 2, "{notes:?}");
    let web = format!("Service {}/web", case.ns);
    assert_eq!(derived.note_objects(), [web.clone(), web]);
    let interval = format!("annotation {AWS}healthcheck-interval = \"ten\" is not a whole number of seconds");
    assert!(
        notes[0].starts_with(&interval) && notes[0].contains("parallax assumes the default 10s"),
        "{notes:?}"
    );
    assert!(notes[1].starts_with("annotation parallax.io/check-fall = \"many\""), "{notes:?}");
    assert!(notes[1].contains("parallax ignores it and keeps 3"), "{notes:?}");
}

// ---- external mode ---------------------------------------------------------------------------

#[tokio::test]
async fn external_an_ingress_with_tls_and_two_paths_gives_https_targets_expecting_its_ips() {
    let case = Case::new("ext-ingress").await;
    let path = |p: &str, kind: &str| json!({"path": p, "pathType": kind, "backend": {"service": {"name": "web", "port": {"number": 80}}}});
    case.create(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "web", "labels": {"parallax.io/probe": "true"}},
        "spec": {
            "ingressClassName": "alb",
            "tls": [{"hosts": ["shop.example.com"], "secretName": "shop-tls"}],
            "rules": [{"host": "shop.example.com", "http": {"paths": [path("/cart", "Prefix"), path("/checkout", "Exact")]}}]
        }
    }))
    .await;
    case.lb_status("networking.k8s.io/v1", "Ingress", "web", &["203.0.113.10", "203.0.113.11"]).await;
    let derived = case.external();
    let cart = format!("ingress.{}.web.shop.example.com._cart", case.ns);
    let checkout = format!("ingress.{}.web.shop.example.com._checkout", case.ns);
    assert_eq!(derived.names(), [cart.clone(), checkout.clone()]);
    let expected = |url: &str| {
        kv(&[
            ("url", url),
            ("connect_to", "203.0.113.10:443"),
            ("sni", "shop.example.com"),
            ("verify", "true"),
            ("expect_addresses", r#"["203.0.113.10","203.0.113.11"]"#),
        ])
    };
    assert_eq!(derived.values(&cart, "client"), expected("https://shop.example.com/cart"));
    assert_eq!(derived.values(&checkout, "client"), expected("https://shop.example.com/checkout"));
    let route = format!("route: Ingress {}/web rule shop.example.com Prefix /cart", case.ns);
    assert_eq!(derived.origin(&cart, "client", "url"), route);
    assert_eq!(derived.origin(&cart, "client", "expect_addresses"), field("status.loadBalancer.ingress"));
    assert_eq!(derived.checkers(&cart), Vec::<&str>::new());
    assert_eq!(derived.notes(), Vec::<&str>::new());
}

/// A condition as a controller writes it.
fn condition(type_: &str, status: &str, reason: &str) -> Value {
    json!({"type": type_, "status": status, "reason": reason, "message": "",
           "lastTransitionTime": "2026-12-01T10:00:00Z", "observedGeneration": 1})
}

/// Creates Gateway `gw` (a wildcard HTTP listener on 80, an HTTPS one for shop.example.com on
/// 8443) and writes its addresses and `Programmed=True`.
async fn programmed_gateway(case: &Case) {
    case.create(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "gw", "labels": {"parallax.io/probe": "true"}},
        "spec": {"gatewayClassName": "example", "listeners": [
            {"name": "http", "protocol": "HTTP", "port": 80, "hostname": "*.example.com"},
            {"name": "https", "protocol": "HTTPS", "port": 8443, "hostname": "shop.example.com",
             "tls": {"mode": "Terminate", "certificateRefs": [{"name": "shop-tls"}]}}
        ]}
    }))
    .await;
    let status = json!({
        "addresses": [{"type": "IPAddress", "value": "198.51.100.7"}, {"type": "IPAddress", "value": "198.51.100.8"}],
        "conditions": [condition("Accepted", "True", "Accepted"), condition("Programmed", "True", "Programmed")]
    });
    case.server.patch_status(&case.ns, "gateway.networking.k8s.io/v1", "Gateway", "gw", status).await;
}

/// An HTTPRoute rule to Service `web` port 80 matching `path` as a prefix; without a path, no
/// `matches` at all (the CRD defaults them to `PathPrefix /`).
fn route_rule(path: Option<&str>) -> Value {
    let mut rule = json!({"backendRefs": [{"name": "web", "port": 80}]});
    if let Some(path) = path {
        rule["matches"] = json!([{"path": {"type": "PathPrefix", "value": path}}]);
    }
    rule
}

/// Creates HTTPRoute `name` on listener `section` of `gw` for `hostnames` with one `rule`, and
/// writes its parent status `Accepted` = `accepted` (`reason`).
async fn http_route(
    case: &Case,
    name: &str,
    section: &str,
    hostnames: &[&str],
    rule: Value,
    accepted: (&str, &str),
) {
    let parent = json!({"name": "gw", "sectionName": section});
    let created = case
        .server
        .create(
            &case.ns,
            json!({
                "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
                "metadata": {"name": name, "labels": {"parallax.io/probe": "true"}},
                "spec": {"parentRefs": [parent], "hostnames": hostnames, "rules": [rule]}
            }),
        )
        .await;
    // What the controller sees and echoes in the status: the parentRef as the CRD defaulted it.
    let parent = created.data["spec"]["parentRefs"][0].clone();
    assert_eq!(parent["kind"], "Gateway", "the CRD defaults parentRefs[].kind: {parent}");
    let (status, reason) = accepted;
    let parents = json!({"parents": [{"parentRef": parent, "controllerName": "example.com/gateway",
                                      "conditions": [condition("Accepted", status, reason)]}]});
    case.server.patch_status(&case.ns, "gateway.networking.k8s.io/v1", "HTTPRoute", name, parents).await;
}

#[tokio::test]
async fn external_an_accepted_route_on_a_programmed_gateway_serves_the_listeners_hostnames() {
    let case = Case::new("ext-gateway").await;
    programmed_gateway(&case).await;
    let hostnames = ["shop.example.com", "shop.example.net"];
    http_route(&case, "shop", "https", &hostnames, route_rule(Some("/cart")), ("True", "Accepted")).await;
    // No matches: the CRD's default, PathPrefix /; a plain name under the listener's wildcard.
    http_route(&case, "api", "http", &["api.example.com"], route_rule(None), ("True", "Accepted")).await;
    let derived = case.external();
    let target = format!("route.{}.shop.shop.example.com._cart", case.ns);
    let api = format!("route.{}.api.api.example.com._", case.ns);
    assert_eq!(derived.names(), [api.as_str(), target.as_str()]);
    let api_view = kv(&[
        ("url", "http://api.example.com/"),
        ("connect_to", "198.51.100.7:80"),
        ("expect_addresses", r#"["198.51.100.7","198.51.100.8"]"#),
    ]);
    assert_eq!(derived.values(&api, "client"), api_view);
    let expected = kv(&[
        ("url", "https://shop.example.com:8443/cart"),
        ("connect_to", "198.51.100.7:8443"),
        ("sni", "shop.example.com"),
        ("verify", "true"),
        ("expect_addresses", r#"["198.51.100.7","198.51.100.8"]"#),
    ]);
    assert_eq!(derived.values(&target, "client"), expected);
    let route = format!(
        "route: HTTPRoute {ns}/shop on Gateway {ns}/gw listener https hostname shop.example.com PathPrefix /cart",
        ns = case.ns
    );
    assert_eq!(derived.origin(&target, "client", "url"), route);
    assert_eq!(derived.notes(), Vec::<&str>::new());
}

#[tokio::test]
async fn external_a_route_not_accepted_is_a_note() {
    let case = Case::new("ext-refused").await;
    programmed_gateway(&case).await;
    let refused = ("False", "NoMatchingListenerHostname");
    http_route(&case, "refused", "https", &["shop.example.org"], route_rule(Some("/")), refused).await;
    let derived = case.external();
    assert_eq!(derived.names(), Vec::<&str>::new());
    let note = format!(
        "not Accepted by Gateway {}/gw (Accepted=False, reason NoMatchingListenerHostname): the route carries no \
         traffic there, so it is not probed",
        case.ns
    );
    assert_eq!(derived.notes(), [note.as_str()]);
    assert_eq!(derived.note_objects(), [format!("HTTPRoute {}/refused", case.ns)]);
}

// ---- selection -------------------------------------------------------------------------------

#[tokio::test]
async fn an_unlabelled_service_gives_nothing_and_an_empty_selector_selects_it() {
    let case = Case::new("selection").await;
    let mut unlabelled = service("web", json!({}));
    unlabelled["metadata"]["labels"] = json!({});
    let stored = case.service(unlabelled).await;
    let derived = case.node_mode("aws", &[]);
    assert_eq!(derived.names(), Vec::<&str>::new());
    assert_eq!(derived.notes(), Vec::<&str>::new());
    let everything = case.node_mode("aws", &["-l", ""]);
    let target = case.target("web", "http");
    assert_eq!(everything.names(), [target.as_str()]);
    let url = format!("tcp://{NODE_IP}:{}", stored.node_port("http"));
    assert_eq!(everything.values(&target, "aws-clb"), tcp("aws-clb", &url, ["10s", "5s", "2", "6"]));
}

// ---- --from equals live ----------------------------------------------------------------------

/// The kinds `discover --from` reads, as (API group path, plural, apiVersion, kind, namespaced).
const LISTED: [(&str, &str, &str, &str, bool); 8] = [
    ("/api/v1", "services", "v1", "Service", true),
    ("/apis/discovery.k8s.io/v1", "endpointslices", "discovery.k8s.io/v1", "EndpointSlice", true),
    ("/apis/networking.k8s.io/v1", "ingresses", "networking.k8s.io/v1", "Ingress", true),
    ("/apis/networking.k8s.io/v1", "ingressclasses", "networking.k8s.io/v1", "IngressClass", false),
    ("/apis/gateway.networking.k8s.io/v1", "gateways", "gateway.networking.k8s.io/v1", "Gateway", true),
    ("/apis/gateway.networking.k8s.io/v1", "httproutes", "gateway.networking.k8s.io/v1", "HTTPRoute", true),
    ("/apis/cloud.google.com/v1", "backendconfigs", "cloud.google.com/v1", "BackendConfig", true),
    ("/api/v1", "nodes", "v1", "Node", false),
];

/// The objects of `ns` (and the cluster's IngressClasses and Nodes) as `kubectl get -o json`
/// prints them: a List whose every item has its apiVersion and kind.
async fn kubectl_list(server: &KubeServer, ns: &str) -> Value {
    let client = server.admin_client().await;
    let mut items = Vec::new();
    for (base, plural, api_version, kind, namespaced) in LISTED {
        let path =
            if namespaced { format!("{base}/namespaces/{ns}/{plural}") } else { format!("{base}/{plural}") };
        let request = http::Request::get(&path).body(Vec::new()).expect("a GET request");
        let text = client.request_text(request).await.unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let list: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {path}: {e}: {text}"));
        for mut item in list["items"].as_array().cloned().unwrap_or_default() {
            item["apiVersion"] = json!(api_version);
            item["kind"] = json!(kind);
            items.push(item);
        }
    }
    json!({"apiVersion": "v1", "kind": "List", "items": items})
}

/// `text` without its `# source:` header line (the only line that differs between a live run
/// and a `--from` run).
fn without_source(text: &str) -> String {
    text.lines().filter(|l| !l.starts_with("# source: ")).map(|l| format!("{l}\n")).collect()
}

#[tokio::test]
async fn from_a_kubectl_list_equals_the_live_cluster() {
    let case = Case::new("from").await;
    case.node_object("gce://project/europe-west1-b/vm-1").await;
    let stored = case
        .service(local("web", json!({"cloud.google.com/backend-config": "{\"default\": \"web-bc\"}"})))
        .await;
    case.create(json!({
        "apiVersion": "cloud.google.com/v1", "kind": "BackendConfig", "metadata": {"name": "web-bc"},
        "spec": {"healthCheck": {"checkIntervalSec": 20, "requestPath": "/bc"}}
    }))
    .await;
    case.create(endpoint_slice("web", &[("10.244.1.7", case.node.as_str(), true)])).await;
    case.create(ingress("web", "gce", "shop.example.com")).await;
    case.lb_status("networking.k8s.io/v1", "Ingress", "web", &["203.0.113.10"]).await;
    case.lb_status("v1", "Service", "web", &["203.0.113.20"]).await;
    programmed_gateway(&case).await;
    http_route(
        &case,
        "shop",
        "https",
        &["shop.example.com"],
        route_rule(Some("/cart")),
        ("True", "Accepted"),
    )
    .await;

    let list = kubectl_list(case.server, &case.ns).await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("objects.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&list).expect("JSON")).expect("write objects.json");
    let node = case.node_flags("gcp");
    for args in [&node[..], &["--mode", "external"]] {
        let live = discover(case.server, &case.ns, args);
        let from = discover_from(&[&file], &case.ns, args);
        assert!(live.contains("# source: the API server\n"), "{live}");
        assert!(from.contains(&format!("# source: {}", file.display())), "{from}");
        assert_eq!(without_source(&from), without_source(&live), "{args:?}");
        assert!(live.contains("[[target]]"), "{live}");
    }
    // The live run derived what the objects say: the BackendConfig's check, kube-proxy's view.
    let derived = case.node_mode("gcp", &[]);
    let target = case.target("web", "http");
    assert_eq!(derived.checkers(&target), ["gcp-l4", "gke-ingress", "kube-proxy"]);
    let url = format!("http://{NODE_IP}:{}/bc", stored.node_port("http"));
    assert_eq!(derived.values(&target, "gke-ingress")[1], ("url".to_owned(), url));
}
