//! One test per row of docs/kubernetes.md "Health checks by provider", each asserting the whole
//! view and the origins of the annotated values, from Services written as the API returns them.

use std::net::{IpAddr, Ipv4Addr};

use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::Ingress;
use serde_json::{json, Value as Json};

use super::super::super::cluster::{BackendConfig, Cluster, ObjectRef};
use super::super::super::{render, Mode, ProviderChoice};
use super::super::{
    CheckerViews, Context, Derivation, DeriveOptions, DerivedTarget, DerivedView, Note, Origin, Value,
};
use super::checker_views;

const NODE: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 1, 5));

/// `b` merged into `a`, objects key by key.
fn merge(a: Json, b: Json) -> Json {
    match (a, b) {
        (Json::Object(mut a), Json::Object(b)) => {
            for (k, v) in b {
                let merged = match a.remove(&k) {
                    Some(old) => merge(old, v),
                    None => v,
                };
                a.insert(k, merged);
            }
            Json::Object(a)
        }
        (_, b) => b,
    }
}

/// Service shop/web, `type: LoadBalancer`, port `http` 80 -> 8080 on nodePort 31080, ETP Cluster,
/// with `extra` merged in.
fn service(extra: Json) -> Service {
    let base = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "shop", "uid": "1"},
        "spec": {
            "type": "LoadBalancer", "selector": {"app": "web"}, "externalTrafficPolicy": "Cluster",
            "ports": [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 31080, "protocol": "TCP"}]
        }
    });
    serde_json::from_value(merge(base, extra)).expect("a Service")
}

fn annotated(annotations: Json) -> Service {
    service(json!({"metadata": {"annotations": annotations}}))
}

/// ETP Local with healthCheckNodePort 32000.
fn local(annotations: Json) -> Service {
    service(json!({
        "metadata": {"annotations": annotations},
        "spec": {"externalTrafficPolicy": "Local", "healthCheckNodePort": 32000}
    }))
}

fn node(provider_id: &str) -> Node {
    serde_json::from_value(json!({"metadata": {"name": "node-a"}, "spec": {"providerID": provider_id}}))
        .expect("a Node")
}

fn cluster(service: Service) -> Cluster {
    Cluster { services: vec![service], ..Cluster::default() }
}

/// `checker_views` of port `index` of the first Service, on node-a at 10.0.1.5.
fn run_port(cluster: &Cluster, provider: ProviderChoice, index: usize) -> (Option<CheckerViews>, Vec<Note>) {
    let options = DeriveOptions {
        mode: Mode::Node,
        node_name: Some("node-a".to_owned()),
        node_ip: Some(NODE),
        provider,
    };
    let ctx =
        Context { cluster, options: &options, node_ip: Some((NODE, Origin::Node("NODE_IP".to_owned()))) };
    let service = &cluster.services[0];
    let port = &service.spec.as_ref().and_then(|s| s.ports.as_ref()).expect("ports")[index];
    let mut notes = Vec::new();
    let views = checker_views(&ctx, service, port, &mut notes);
    (views, notes)
}

fn run(cluster: &Cluster, provider: ProviderChoice) -> CheckerViews {
    let (views, notes) = run_port(cluster, provider, 0);
    assert!(notes.is_empty(), "{notes:?}");
    views.expect("a target")
}

fn v(value: impl Into<Value>) -> Value {
    value.into()
}

/// The view's settings, without origins, in order.
fn values(view: &DerivedView) -> Vec<(&'static str, Value)> {
    view.settings.iter().map(|s| (s.key, s.value.clone())).collect()
}

fn origin(view: &DerivedView, key: &str) -> Origin {
    view.settings.iter().find(|s| s.key == key).map(|s| s.origin.clone()).expect(key)
}

fn names(views: &CheckerViews) -> Vec<&str> {
    views.node.iter().map(|v| v.name.as_str()).collect()
}

/// Each local pod's IP, port (from its EndpointSlice) and view names.
fn pods(views: &CheckerViews) -> Vec<(String, Option<u16>, Vec<&str>)> {
    views
        .pods
        .iter()
        .map(|p| {
            let names = p.views.iter().map(|v| v.name.as_str()).collect();
            (p.ip.to_string(), p.port.as_ref().map(|(n, _)| *n), names)
        })
        .collect()
}

fn ann(key: &str) -> Origin {
    Origin::Annotation(key.to_owned())
}

fn field(path: &str) -> Origin {
    Origin::Field(path.to_owned())
}

/// An HTTP view's settings.
#[allow(clippy::too_many_arguments)]
fn http(
    profile: &str,
    url: &str,
    interval: &str,
    timeout: &str,
    rise: u64,
    fall: u64,
    status: &str,
) -> Vec<(&'static str, Value)> {
    vec![
        ("profile", v(profile)),
        ("url", v(url)),
        ("interval", v(interval)),
        ("timeout", v(timeout)),
        ("rise", v(rise)),
        ("fall", v(fall)),
        ("expect.status", v(status)),
    ]
}

/// A TCP view's settings.
fn tcp(
    profile: &str,
    url: &str,
    interval: &str,
    timeout: &str,
    rise: u64,
    fall: u64,
) -> Vec<(&'static str, Value)> {
    let mut settings = http(profile, url, interval, timeout, rise, fall, "");
    settings.pop();
    settings
}

fn kube_proxy() -> Vec<(&'static str, Value)> {
    vec![("profile", v("kube-proxy")), ("url", v("http://10.0.1.5:32000/healthz"))]
}

const AWS: &str = "service.beta.kubernetes.io/aws-load-balancer-";

// --- AWS Load Balancer Controller (NLB) ---

#[test]
fn aws_lbc_nlb_defaults_to_tcp_on_the_traffic_port() {
    let views = run(
        &cluster(service(json!({"spec": {"loadBalancerClass": "service.k8s.aws/nlb"}}))),
        ProviderChoice::Auto,
    );
    assert_eq!(names(&views), ["aws-nlb"]);
    let nlb = &views.node[0];
    assert_eq!(values(nlb), tcp("aws-nlb", "tcp://10.0.1.5:31080", "10s", "9900ms", 3, 3));
    assert_eq!(origin(nlb, "url"), field("spec.ports[http].nodePort"));
    assert!(matches!(origin(nlb, "timeout"), Origin::Parallax(why) if why.contains("10s")));
    assert!(views.comments[0].starts_with("provider aws-lbc"), "{:?}", views.comments);
}

#[test]
fn aws_lbc_nlb_etp_local_instance_checks_the_health_check_node_port() {
    let views = run(&cluster(local(json!({format!("{AWS}type"): "external"}))), ProviderChoice::Aws);
    assert_eq!(names(&views), ["aws-nlb", "kube-proxy"]);
    let nlb = &views.node[0];
    assert_eq!(values(nlb), http("aws-nlb", "http://10.0.1.5:32000/healthz", "10s", "6s", 2, 2, "200-399"));
    assert_eq!(origin(nlb, "url"), field("spec.healthCheckNodePort"));
    assert_eq!(values(&views.node[1]), kube_proxy());
    assert_eq!(origin(&views.node[1], "url"), field("spec.healthCheckNodePort"));
}

#[test]
fn aws_lbc_nlb_annotations_set_protocol_named_port_path_timing_and_codes() {
    let svc = service(json!({
        "metadata": {"annotations": {
            format!("{AWS}type"): "external",
            format!("{AWS}healthcheck-protocol"): "http",
            format!("{AWS}healthcheck-port"): "admin",
            format!("{AWS}healthcheck-path"): "/ready",
            format!("{AWS}healthcheck-interval"): "5",
            format!("{AWS}healthcheck-timeout"): "3",
            format!("{AWS}healthcheck-healthy-threshold"): "2",
            format!("{AWS}healthcheck-unhealthy-threshold"): "4",
            format!("{AWS}healthcheck-success-codes"): "200-299"
        }},
        "spec": {"ports": [
            {"name": "http", "port": 80, "targetPort": 8080, "nodePort": 31080},
            {"name": "admin", "port": 9000, "targetPort": 9000, "nodePort": 31900}
        ]}
    }));
    let views = run(&cluster(svc), ProviderChoice::Auto);
    let nlb = &views.node[0];
    assert_eq!(values(nlb), http("aws-nlb", "http://10.0.1.5:31900/ready", "5s", "3s", 2, 4, "200-299"));
    assert_eq!(origin(nlb, "url"), ann(&format!("{AWS}healthcheck-path")));
    assert_eq!(origin(nlb, "interval"), ann(&format!("{AWS}healthcheck-interval")));
    assert_eq!(origin(nlb, "timeout"), ann(&format!("{AWS}healthcheck-timeout")));
    assert_eq!(origin(nlb, "rise"), ann(&format!("{AWS}healthcheck-healthy-threshold")));
    assert_eq!(origin(nlb, "fall"), ann(&format!("{AWS}healthcheck-unhealthy-threshold")));
    assert_eq!(origin(nlb, "expect.status"), ann(&format!("{AWS}healthcheck-success-codes")));
    let parts = views.node_comments.iter().find(|c| c.starts_with("aws-nlb url")).expect("url parts");
    assert!(parts.contains(&format!("port 31900 from annotation {AWS}healthcheck-port")), "{parts}");
    assert!(parts.contains(&format!("path /ready from annotation {AWS}healthcheck-path")), "{parts}");
}

fn slice() -> EndpointSlice {
    serde_json::from_value(json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
        "metadata": {"name": "web-abc", "namespace": "shop", "labels": {"kubernetes.io/service-name": "web"}},
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [
            {"addresses": ["10.244.1.7"], "nodeName": "node-a", "conditions": {"ready": true}},
            {"addresses": ["10.244.1.8"], "nodeName": "node-a", "conditions": {"ready": false}},
            {"addresses": ["10.244.2.9"], "nodeName": "node-b", "conditions": {"ready": true}},
            {"addresses": ["10.244.1.10"], "nodeName": "node-a"}
        ]
    }))
    .expect("an EndpointSlice")
}

#[test]
fn aws_lbc_nlb_ip_targets_check_each_ready_local_pod() {
    let mut c =
        cluster(annotated(json!({format!("{AWS}type"): "external", format!("{AWS}nlb-target-type"): "ip"})));
    c.endpoint_slices.push(slice());
    let views = run(&c, ProviderChoice::Auto);
    // The NLB checks pods, not this node: no check of the node (no kube-proxy: ETP Cluster).
    assert!(views.node.is_empty(), "{:?}", views.node);
    assert_eq!(
        pods(&views),
        [
            ("10.244.1.7".to_owned(), Some(8080), vec!["aws-nlb"]),
            ("10.244.1.10".to_owned(), Some(8080), vec!["aws-nlb"])
        ]
    );
    let first = &views.pods[0];
    assert_eq!(values(&first.views[0]), tcp("aws-nlb", "tcp://10.244.1.7:8080", "10s", "9900ms", 3, 3));
    assert_eq!(origin(&first.views[0], "url"), field("EndpointSlice shop/web-abc"));
    assert_eq!(
        first.port.as_ref().map(|(_, o)| o.clone()),
        Some(field("EndpointSlice shop/web-abc ports[http].port"))
    );
    assert!(first.comments[0].starts_with("aws-nlb url tcp://10.244.1.7:8080"), "{:?}", first.comments);
    assert!(views.comments.iter().any(|c| c.contains("checks each pod directly")), "{:?}", views.comments);
}

/// The whole node-mode derivation of `cluster` on node-a at 10.0.1.5.
fn derive_node(cluster: &Cluster, provider: ProviderChoice) -> Derivation {
    let options = DeriveOptions {
        mode: Mode::Node,
        node_name: Some("node-a".to_owned()),
        node_ip: Some(NODE),
        provider,
    };
    super::super::derive(cluster, &options)
}

fn connect_to(view: &DerivedView) -> Option<(Value, Origin)> {
    view.settings.iter().find(|s| s.key == "connect_to").map(|s| (s.value.clone(), s.origin.clone()))
}

#[test]
fn ip_targets_give_a_target_per_ready_local_pod_with_the_users_request_sent_to_that_pod() {
    // Two ready pods on this node (10.244.1.7, 10.244.1.10), one not ready, one on node-b. ETP
    // Local: kube-proxy answers on this node's healthCheckNodePort, but the NLB never asks it.
    let mut c =
        cluster(local(json!({format!("{AWS}type"): "external", format!("{AWS}nlb-target-type"): "ip"})));
    c.endpoint_slices.push(slice());
    let derivation = derive_node(&c, ProviderChoice::Auto);
    assert!(derivation.notes.is_empty(), "{:?}", derivation.notes);
    let names: Vec<&str> = derivation.targets.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["svc.shop.web.http.10.244.1.7", "svc.shop.web.http.10.244.1.10"]);
    // Each pod's target: the NLB's check of the pod, beside the users' request at the pod's port.
    for (target, ip) in derivation.targets.iter().zip(["10.244.1.7", "10.244.1.10"]) {
        assert_eq!(target.checkers.len(), 1);
        assert_eq!(target.checkers[0].name, "aws-nlb");
        assert_eq!(target.checkers[0].get("url"), Some(&v(format!("tcp://{ip}:8080"))));
        assert_eq!(
            connect_to(&target.client),
            Some((v(format!("{ip}:8080")), field("EndpointSlice shop/web-abc ports[http].port")))
        );
        assert_eq!(target.client.get("url"), Some(&v("http://web.shop.svc.cluster.local/")));
        assert!(target.client.about.contains(&format!("pod {ip}")), "{}", target.client.about);
        assert!(target.comments.iter().any(|c| c.starts_with(&format!("aws-nlb url tcp://{ip}:8080"))));
        assert!(
            target
                .comments
                .iter()
                .any(|c| c.starts_with("kube-proxy's healthCheckNodePort is not a checker view")),
            "{:?}",
            target.comments
        );
    }
    // ETP Cluster: the same.
    let mut c = cluster(annotated(json!({format!("{AWS}type"): "nlb-ip"})));
    c.endpoint_slices.push(slice());
    let names: Vec<String> =
        derive_node(&c, ProviderChoice::Auto).targets.into_iter().map(|t| t.name).collect();
    assert_eq!(names, ["svc.shop.web.http.10.244.1.7", "svc.shop.web.http.10.244.1.10"]);
}

#[test]
fn a_cluster_ip_service_behind_a_neg_ingress_gets_pod_targets_without_a_node_port() {
    let svc = service(json!({
        "metadata": {"annotations": {"cloud.google.com/neg": "{\"ingress\": true}"}},
        "spec": {"type": "ClusterIP", "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}
    }));
    let mut c = gke_cluster(svc);
    c.endpoint_slices.push(slice());
    let derivation = derive_node(&c, ProviderChoice::Gcp);
    let names: Vec<&str> = derivation.targets.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["svc.shop.web.http.10.244.1.7", "svc.shop.web.http.10.244.1.10"]);
    assert_eq!(connect_to(&derivation.targets[0].client).map(|c| c.0), Some(v("10.244.1.7:8080")));
    assert!(
        !derivation.notes.iter().any(|n| n.message.contains("no nodePort")),
        "pods need no node port: {:?}",
        derivation.notes
    );
}

#[test]
fn aws_lbc_nlb_ip_targets_without_a_local_pod_give_no_target_here() {
    let mut c = cluster(annotated(json!({format!("{AWS}type"): "nlb-ip"})));
    let mut elsewhere = slice();
    elsewhere.endpoints.retain(|e| e.node_name.as_deref() == Some("node-b"));
    c.endpoint_slices.push(elsewhere);
    let (views, notes) = run_port(&c, ProviderChoice::Auto, 0);
    assert!(views.is_none());
    assert!(notes.is_empty(), "{notes:?}");
}

// --- legacy in-tree AWS provider ---

#[test]
fn aws_legacy_clb_checks_tcp_on_the_first_node_port_for_every_port() {
    let svc = service(json!({"spec": {"ports": [
        {"name": "http", "port": 80, "targetPort": 8080, "nodePort": 31080},
        {"name": "https", "port": 443, "targetPort": 8443, "nodePort": 31443}
    ]}}));
    let mut c = cluster(svc);
    c.node = Some(node("aws:///eu-west-1a/i-0abc"));
    let (views, notes) = run_port(&c, ProviderChoice::Auto, 1);
    assert!(notes.is_empty(), "{notes:?}");
    let views = views.expect("a target");
    assert_eq!(names(&views), ["aws-clb"]);
    assert_eq!(values(&views.node[0]), tcp("aws-clb", "tcp://10.0.1.5:31080", "10s", "5s", 2, 6));
    assert_eq!(origin(&views.node[0], "url"), field("spec.ports[0].nodePort (the first listener)"));
    assert!(
        views.comments[0].contains("spec.providerID is aws:///eu-west-1a/i-0abc"),
        "{:?}",
        views.comments
    );
    assert!(
        views.comments.iter().any(|c| c.contains("one health check for all its listeners")),
        "{:?}",
        views.comments
    );
}

#[test]
fn aws_legacy_clb_checks_ssl_when_the_backend_is_https() {
    let views =
        run(&cluster(annotated(json!({format!("{AWS}backend-protocol"): "https"}))), ProviderChoice::Aws);
    let clb = &views.node[0];
    let mut expected = tcp("aws-clb", "tls://10.0.1.5:31080", "10s", "5s", 2, 6);
    expected.splice(2..2, [("sni", v(false)), ("verify", v(false))]);
    assert_eq!(values(clb), expected);
    assert_eq!(origin(clb, "url"), ann(&format!("{AWS}backend-protocol")));
}

#[test]
fn aws_legacy_clb_etp_local_checks_http_health_check_node_port() {
    let views = run(&cluster(local(json!({}))), ProviderChoice::Aws);
    assert_eq!(names(&views), ["aws-clb", "kube-proxy"]);
    assert_eq!(
        values(&views.node[0]),
        http("aws-clb", "http://10.0.1.5:32000/healthz", "10s", "5s", 2, 6, "200")
    );
}

#[test]
fn aws_legacy_nlb_checks_tcp_traffic_port_every_30s() {
    let views = run(&cluster(annotated(json!({format!("{AWS}type"): "nlb"}))), ProviderChoice::Aws);
    assert_eq!(names(&views), ["aws-nlb"]);
    assert_eq!(values(&views.node[0]), tcp("aws-nlb", "tcp://10.0.1.5:31080", "30s", "10s", 3, 3));
    assert!(views.comments[0].starts_with("provider aws-legacy"), "{:?}", views.comments);
}

#[test]
fn aws_legacy_nlb_etp_local_checks_http_health_check_node_port() {
    let views = run(&cluster(local(json!({format!("{AWS}type"): "nlb"}))), ProviderChoice::Aws);
    assert_eq!(
        values(&views.node[0]),
        http("aws-nlb", "http://10.0.1.5:32000/healthz", "10s", "9900ms", 2, 2, "200-399")
    );
}

// --- AWS ALB (Ingress) ---

fn ingress(class: &str, annotations: Json) -> Ingress {
    serde_json::from_value(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "shop", "namespace": "shop", "annotations": annotations},
        "spec": {"ingressClassName": class, "rules": [{"host": "shop.example.com", "http": {"paths": [
            {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}}
        ]}}]}
    }))
    .expect("an Ingress")
}

#[test]
fn aws_alb_ingress_checks_http_traffic_port_the_service_annotation_winning() {
    let alb = "alb.ingress.kubernetes.io/";
    let svc = service(json!({
        "metadata": {"annotations": {format!("{alb}healthcheck-path"): "/svc"}},
        "spec": {"type": "NodePort"}
    }));
    let mut c = cluster(svc);
    c.ingresses.push(ingress(
        "alb",
        json!({format!("{alb}healthcheck-path"): "/ing", format!("{alb}success-codes"): "200,302"}),
    ));
    let views = run(&c, ProviderChoice::Auto);
    assert_eq!(names(&views), ["aws-alb"]);
    let view = &views.node[0];
    let mut expected = http("aws-alb", "http://10.0.1.5:31080/svc", "15s", "5s", 2, 2, "");
    expected[6] = ("expect.status", Value::List(vec!["200".to_owned(), "302".to_owned()]));
    assert_eq!(values(view), expected);
    assert_eq!(origin(view, "url"), ann(&format!("{alb}healthcheck-path")));
    assert_eq!(origin(view, "expect.status"), ann(&format!("{alb}success-codes on Ingress shop/shop")));
}

// --- Azure ---

const AZ_PORT: &str = "service.beta.kubernetes.io/port_80_health-probe_";

#[test]
fn azure_defaults_to_tcp_on_the_node_port_every_5s() {
    let mut c = cluster(service(json!({})));
    c.node = Some(node("azure:///subscriptions/x/virtualMachines/node-a"));
    let views = run(&c, ProviderChoice::Auto);
    assert_eq!(names(&views), ["azure-lb"]);
    assert_eq!(values(&views.node[0]), tcp("azure-lb", "tcp://10.0.1.5:31080", "5s", "4900ms", 2, 2));
    assert!(views.comments[0].starts_with("provider azure"), "{:?}", views.comments);
}

#[test]
fn azure_app_protocol_http_probes_slash_before_the_global_annotation() {
    let svc = service(json!({
        "metadata": {"annotations": {"service.beta.kubernetes.io/azure-load-balancer-health-probe-protocol": "tcp"}},
        "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 31080, "appProtocol": "http"}]}
    }));
    let views = run(&cluster(svc), ProviderChoice::Azure);
    let probe = &views.node[0];
    assert_eq!(values(probe), http("azure-lb", "http://10.0.1.5:31080/", "5s", "4900ms", 2, 2, "200"));
    assert_eq!(origin(probe, "url"), field("spec.ports[http].appProtocol"));
    assert!(views.comments.iter().any(|c| c.contains("AKS#3210")), "{:?}", views.comments);
}

#[test]
fn azure_per_port_annotations_win_over_global_ones() {
    let svc = annotated(json!({
        format!("{AZ_PORT}protocol"): "Https",
        format!("{AZ_PORT}request-path"): "/healthz",
        format!("{AZ_PORT}interval"): "10",
        format!("{AZ_PORT}num-of-probe"): "3",
        "service.beta.kubernetes.io/azure-load-balancer-health-probe-interval": "20"
    }));
    let views = run(&cluster(svc), ProviderChoice::Azure);
    let probe = &views.node[0];
    let mut expected = http("azure-lb", "https://10.0.1.5:31080/healthz", "10s", "9900ms", 3, 3, "200");
    expected.splice(2..2, [("sni", v(false)), ("verify", v(false))]);
    assert_eq!(values(probe), expected);
    assert_eq!(origin(probe, "url"), ann(&format!("{AZ_PORT}request-path")));
    assert_eq!(origin(probe, "interval"), ann(&format!("{AZ_PORT}interval")));
    assert_eq!(origin(probe, "rise"), ann(&format!("{AZ_PORT}num-of-probe")));
    assert_eq!(origin(probe, "fall"), ann(&format!("{AZ_PORT}num-of-probe")));
}

#[test]
fn azure_etp_local_probes_the_health_check_node_port() {
    let views = run(&cluster(local(json!({}))), ProviderChoice::Azure);
    assert_eq!(names(&views), ["azure-lb", "kube-proxy"]);
    assert_eq!(
        values(&views.node[0]),
        http("azure-lb", "http://10.0.1.5:32000/healthz", "5s", "4900ms", 2, 2, "200")
    );
}

#[test]
fn azure_no_probe_rule_leaves_no_probe_to_emulate() {
    let views = run(
        &cluster(annotated(json!({"service.beta.kubernetes.io/port_80_no_probe_rule": "true"}))),
        ProviderChoice::Azure,
    );
    assert!(views.node.is_empty());
    assert!(views.comments.iter().any(|c| c.contains("port_80_no_probe_rule")), "{:?}", views.comments);
}

// --- GKE ---

#[test]
fn gcp_l4_etp_local_checks_health_check_node_port_3s() {
    let mut c = cluster(local(json!({})));
    c.node = Some(node("gce://project/europe-west1-b/node-a"));
    let views = run(&c, ProviderChoice::Auto);
    assert_eq!(names(&views), ["gcp-l4", "kube-proxy"]);
    assert_eq!(values(&views.node[0]), http("gcp", "http://10.0.1.5:32000/healthz", "3s", "1s", 1, 2, "200"));
    assert_eq!(origin(&views.node[0], "url"), field("spec.healthCheckNodePort"));
}

#[test]
fn gcp_l4_etp_cluster_checks_kube_proxy_10256() {
    let views = run(&cluster(service(json!({}))), ProviderChoice::Gcp);
    assert_eq!(names(&views), ["gcp-l4"]);
    assert_eq!(values(&views.node[0]), http("gcp", "http://10.0.1.5:10256/healthz", "8s", "1s", 1, 3, "200"));
}

fn gke_cluster(svc: Service) -> Cluster {
    let mut c = cluster(svc);
    c.ingresses.push(ingress("gce", json!({})));
    c
}

#[test]
fn gke_ingress_uses_the_backend_config_health_check() {
    let svc = service(json!({
        "metadata": {"annotations": {"cloud.google.com/backend-config": "{\"default\": \"web-bc\"}"}},
        "spec": {"type": "NodePort"}
    }));
    let mut c = gke_cluster(svc);
    let bc: BackendConfig = serde_json::from_value(json!({
        "apiVersion": "cloud.google.com/v1", "kind": "BackendConfig",
        "metadata": {"name": "web-bc", "namespace": "shop"},
        "spec": {"healthCheck": {"checkIntervalSec": 20, "timeoutSec": 5, "healthyThreshold": 2, "unhealthyThreshold": 3, "requestPath": "/bc"}}
    }))
    .expect("a BackendConfig");
    c.backend_configs.push(bc);
    let views = run(&c, ProviderChoice::Gcp);
    let view = &views.node[0];
    assert_eq!(values(view), http("gcp", "http://10.0.1.5:31080/bc", "20s", "5s", 2, 3, "200"));
    assert_eq!(origin(view, "url"), field("BackendConfig web-bc spec.healthCheck.requestPath"));
    assert_eq!(origin(view, "interval"), field("BackendConfig web-bc spec.healthCheck.checkIntervalSec"));
    assert!(views
        .comments
        .iter()
        .any(|c| c == "gke-ingress health check from BackendConfig shop/web-bc spec.healthCheck"));
}

#[test]
fn gke_ingress_uses_the_readiness_probe_plus_60s_for_instance_groups() {
    let mut c = gke_cluster(service(json!({"spec": {"type": "NodePort"}})));
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "web-1", "namespace": "shop", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "app", "ports": [{"containerPort": 8080}],
            "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080, "scheme": "HTTP",
                "httpHeaders": [{"name": "Host", "value": "shop.example.com"}]}, "periodSeconds": 5, "timeoutSeconds": 2}}]}
    }))
    .expect("a Pod");
    c.pods.push(pod);
    let views = run(&c, ProviderChoice::Gcp);
    let view = &views.node[0];
    let mut expected = http("gcp", "http://10.0.1.5:31080/ready", "65s", "2s", 1, 10, "200");
    expected.insert(2, ("host", v("shop.example.com")));
    assert_eq!(values(view), expected);
    assert_eq!(origin(view, "url"), field("Pod web-1 container app readinessProbe.httpGet.path"));
    assert_eq!(
        origin(view, "interval"),
        field("Pod web-1 container app readinessProbe.periodSeconds + 60 s (instance groups)")
    );
}

#[test]
fn gke_ingress_defaults_to_slash_every_60s() {
    let views = run(&gke_cluster(service(json!({"spec": {"type": "NodePort"}}))), ProviderChoice::Gcp);
    assert_eq!(names(&views), ["gke-ingress"]);
    assert_eq!(values(&views.node[0]), http("gcp", "http://10.0.1.5:31080/", "60s", "59900ms", 1, 10, "200"));
    assert!(views.comments.iter().any(|c| c.contains("the default /")), "{:?}", views.comments);
}

#[test]
fn gke_ingress_with_negs_checks_each_local_pod_every_15s() {
    let svc = service(json!({
        "metadata": {"annotations": {"cloud.google.com/neg": "{\"ingress\": true}"}},
        "spec": {"type": "ClusterIP", "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}
    }));
    let mut c = gke_cluster(svc);
    c.endpoint_slices.push(slice());
    let views = run(&c, ProviderChoice::Gcp);
    assert!(views.node.is_empty(), "{:?}", views.node);
    assert_eq!(
        pods(&views),
        [
            ("10.244.1.7".to_owned(), Some(8080), vec!["gke-ingress"]),
            ("10.244.1.10".to_owned(), Some(8080), vec!["gke-ingress"])
        ]
    );
    assert_eq!(
        values(&views.pods[0].views[0]),
        http("gcp", "http://10.244.1.7:8080/", "15s", "14900ms", 1, 2, "200")
    );
    assert_eq!(origin(&views.pods[0].views[0], "url"), field("EndpointSlice shop/web-abc"));
}

// --- MetalLB, generic ---

#[test]
fn metallb_sends_no_health_check_only_kube_proxy_for_etp_local() {
    let views =
        run(&cluster(local(json!({"metallb.universe.tf/address-pool": "public"}))), ProviderChoice::Auto);
    assert_eq!(names(&views), ["kube-proxy"]);
    assert_eq!(values(&views.node[0]), kube_proxy());
    assert!(
        views.comments.iter().any(|c| c.starts_with("MetalLB sends no health check")),
        "{:?}",
        views.comments
    );
}

#[test]
fn generic_etp_cluster_has_no_checker_view() {
    let views = run(&cluster(service(json!({}))), ProviderChoice::Auto);
    assert!(views.node.is_empty());
    assert!(views.comments[0].starts_with("provider generic"), "{:?}", views.comments);
}

// --- overrides, bad values, skipped ports ---

#[test]
fn parallax_overrides_replace_the_cloud_values_not_kube_proxys() {
    let svc = local(json!({
        "parallax.io/check-path": "/deep",
        "parallax.io/check-interval": "2s",
        "parallax.io/check-timeout": "1500ms",
        "parallax.io/check-rise": "1",
        "parallax.io/check-status": "200",
        "parallax.io/check-profile": "generic"
    }));
    let views = run(&cluster(svc), ProviderChoice::Gcp);
    let gcp = &views.node[0];
    assert_eq!(values(gcp), http("generic", "http://10.0.1.5:32000/deep", "2s", "1500ms", 1, 2, "200"));
    let over = |k: &str| Origin::Override(format!("parallax.io/check-{k}"));
    assert_eq!(origin(gcp, "profile"), over("profile"));
    assert_eq!(origin(gcp, "url"), over("path"));
    assert_eq!(origin(gcp, "interval"), over("interval"));
    assert_eq!(origin(gcp, "timeout"), over("timeout"));
    assert_eq!(origin(gcp, "rise"), over("rise"));
    assert_eq!(origin(gcp, "expect.status"), over("status"));
    assert_eq!(values(&views.node[1]), kube_proxy());
}

#[test]
fn bad_annotation_values_are_notes_naming_the_value_and_the_default() {
    let svc = annotated(json!({
        format!("{AWS}type"): "external",
        format!("{AWS}healthcheck-interval"): "ten",
        "parallax.io/check-fall": "many"
    }));
    let (views, notes) = run_port(&cluster(svc), ProviderChoice::Aws, 0);
    let views = views.expect("a target");
    assert_eq!(values(&views.node[0]), tcp("aws-nlb", "tcp://10.0.1.5:31080", "10s", "9900ms", 3, 3));
    let messages: Vec<&str> = notes.iter().map(|n| n.message.as_str()).collect();
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert!(
        messages[0].starts_with(&format!(
            "annotation {AWS}healthcheck-interval = \"ten\" is not a whole number of seconds"
        )),
        "{}",
        messages[0]
    );
    assert!(messages[0].contains("parallax assumes the default 10s"), "{}", messages[0]);
    assert!(messages[1].starts_with("annotation parallax.io/check-fall = \"many\""), "{}", messages[1]);
    assert!(messages[1].contains("parallax ignores it and keeps 3"), "{}", messages[1]);
    assert_eq!(notes[0].object.to_string(), "Service shop/web");
}

#[test]
fn a_bad_annotation_read_for_each_local_pod_is_said_once() {
    let mut c = cluster(annotated(
        json!({format!("{AWS}type"): "nlb-ip", format!("{AWS}healthcheck-timeout"): "-1"}),
    ));
    c.endpoint_slices.push(slice());
    let (views, notes) = run_port(&c, ProviderChoice::Aws, 0);
    assert_eq!(views.expect("a target").pods.len(), 2);
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].message.starts_with(&format!("annotation {AWS}healthcheck-timeout = \"-1\"")),
        "{}",
        notes[0].message
    );
}

#[test]
fn udp_ports_are_skipped_with_a_note() {
    let svc = service(
        json!({"spec": {"ports": [{"name": "dns", "port": 53, "nodePort": 31053, "protocol": "UDP"}]}}),
    );
    let (views, notes) = run_port(&cluster(svc), ProviderChoice::Gcp, 0);
    assert!(views.is_none());
    assert_eq!(notes.len(), 1);
    assert!(notes[0].message.starts_with("port dns is UDP"), "{}", notes[0].message);
}

#[test]
fn no_node_port_with_instance_targets_is_a_note() {
    let svc = service(
        json!({"spec": {"allocateLoadBalancerNodePorts": false, "ports": [{"name": "http", "port": 80}]}}),
    );
    let (views, notes) = run_port(&cluster(svc), ProviderChoice::Azure, 0);
    assert!(views.is_none());
    assert!(notes[0].message.contains("allocateLoadBalancerNodePorts is false"), "{}", notes[0].message);
}

#[test]
fn a_cluster_ip_service_gets_no_target_and_no_note() {
    let svc = service(json!({"spec": {"type": "ClusterIP", "ports": [{"name": "http", "port": 80}]}}));
    let (views, notes) = run_port(&cluster(svc), ProviderChoice::Auto, 0);
    assert!(views.is_none());
    assert!(notes.is_empty(), "{notes:?}");
}

#[test]
fn a_foreign_load_balancer_class_is_not_the_clouds() {
    let mut c = cluster(service(json!({"spec": {"loadBalancerClass": "io.cilium/bgp-control-plane"}})));
    c.node = Some(node("aws:///eu-west-1a/i-0abc"));
    let views = run(&c, ProviderChoice::Auto);
    assert!(views.node.is_empty());
    assert_eq!(
        views.comments[0],
        "provider generic: spec.loadBalancerClass is io.cilium/bgp-control-plane: the cloud provider skips \
         Services of another class, whose controller is unknown"
    );
}

#[test]
fn the_provider_setting_wins_over_detection() {
    let mut c = cluster(annotated(json!({format!("{AWS}type"): "external"})));
    c.node = Some(node("aws:///eu-west-1a/i-0abc"));
    let views = run(&c, ProviderChoice::Azure);
    assert_eq!(names(&views), ["azure-lb"]);
    assert_eq!(views.comments[0], "provider azure (cloud-provider-azure): set by provider = azure");
}

// --- the views are valid probes.d views ---

/// The views of `cluster`'s first port, rendered as a probes.d file with a client view and
/// compiled: every key, value and timeout/interval pair must be one the compiler accepts.
fn compile(cluster: &Cluster, provider: ProviderChoice) -> crate::config::Plan {
    let views = run(cluster, provider);
    let mut client = DerivedView::new("client", "the users' request");
    client.set("url", "http://10.0.1.5:31080/", Origin::Parallax("test".to_owned()));
    let target = DerivedTarget {
        name: "svc.shop.web.http".to_owned(),
        source: ObjectRef { kind: "Service", namespace: "shop".to_owned(), name: "web".to_owned() },
        comments: views.comments.into_iter().chain(views.node_comments).collect(),
        client,
        checkers: views.node,
        cluster: None,
    };
    let text = render::toml(
        &Derivation { targets: vec![target], ..Derivation::default() },
        &render::Header::default(),
    );
    let env = std::collections::HashMap::new();
    crate::config::load_str(std::path::Path::new("discovered.toml"), &text, &env)
        .unwrap_or_else(|e| panic!("the derived views compile: {e}\n{text}"))
}

#[test]
fn derived_views_compile_as_probes_d_views() {
    let ssl = cluster(annotated(json!({format!("{AWS}backend-protocol"): "ssl"})));
    let plan = compile(&ssl, ProviderChoice::Aws);
    assert_eq!(plan.targets[0].checkers[0].timeout, std::time::Duration::from_secs(5));
    let lbc = cluster(local(json!({format!("{AWS}type"): "external"})));
    let plan = compile(&lbc, ProviderChoice::Aws);
    let names: Vec<&str> = plan.targets[0].checkers.iter().map(|c| &*c.name).collect();
    assert_eq!(names, ["aws-nlb", "kube-proxy"]);
    assert_eq!(plan.targets[0].checkers[0].timeout, std::time::Duration::from_secs(6));
    let https = cluster(annotated(
        json!({format!("{AZ_PORT}protocol"): "https", format!("{AZ_PORT}interval"): "10"}),
    ));
    let plan = compile(&https, ProviderChoice::Azure);
    assert_eq!(plan.targets[0].checkers[0].timeout, std::time::Duration::from_millis(9900));
    let tcp_default = cluster(service(json!({"spec": {"loadBalancerClass": "service.k8s.aws/nlb"}})));
    assert_eq!(compile(&tcp_default, ProviderChoice::Auto).targets[0].checkers[0].fall, 3);
}
