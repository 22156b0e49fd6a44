//! Users' requests from routes, on objects as the API server returns them.

use serde_json::json;

use super::super::{
    derive, CheckerViews, Context, Derivation, DeriveOptions, DerivedView, Note, Origin, Setting, Value,
};
use super::{deliver_to_node, users_request};
use crate::discovery::kubernetes::cluster::{Cluster, ObjectRef};
use crate::discovery::kubernetes::{Mode, ProviderChoice};

fn obj<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
    serde_json::from_value(value).unwrap_or_else(|e| panic!("fixture parses: {e}"))
}

fn external(cluster: &Cluster) -> Derivation {
    let options = DeriveOptions {
        mode: Mode::External,
        node_name: None,
        node_ip: None,
        provider: ProviderChoice::Generic,
    };
    derive(cluster, &options)
}

/// The node-mode client view of the Service's port `port`, and the notes.
fn forwarded(cluster: &Cluster, service: usize, port: usize) -> (Option<DerivedView>, Vec<Note>) {
    let options = DeriveOptions {
        mode: Mode::Node,
        node_name: Some("node-a".to_owned()),
        node_ip: Some("10.0.1.5".parse().unwrap_or_else(|e| panic!("{e}"))),
        provider: ProviderChoice::Generic,
    };
    let mut notes = Vec::new();
    let ctx = Context::new(cluster, &options, &mut notes);
    let svc = &cluster.services[service];
    let ports = svc.spec.as_ref().and_then(|s| s.ports.as_ref()).unwrap_or_else(|| panic!("ports"));
    let (mut view, _) = users_request(&ctx, svc, &ports[port], &mut notes);
    let delivered = deliver_to_node(&ctx, svc, &ports[port], &CheckerViews::default(), &mut view, &mut notes);
    (delivered.then_some(view), notes)
}

fn s(key: &'static str, value: impl Into<Value>, origin: Origin) -> Setting {
    Setting { key, value: value.into(), origin }
}

fn route(r: &str) -> Origin {
    Origin::Route(r.to_owned())
}

fn field(f: &str) -> Origin {
    Origin::Field(f.to_owned())
}

fn parallax(why: &str) -> Origin {
    Origin::Parallax(why.to_owned())
}

fn list(items: &[&str]) -> Vec<String> {
    items.iter().map(|i| (*i).to_owned()).collect()
}

fn messages(notes: &[Note]) -> Vec<String> {
    notes.iter().map(|n| format!("{}: {}", n.object, n.message)).collect()
}

const USERS_VERIFY: &str = "users' clients verify the certificate";
const NO_CHECKERS: &str = super::NO_CHECKERS;

fn ingress(
    name: &str,
    annotations: serde_json::Value,
    spec: serde_json::Value,
    lb: serde_json::Value,
) -> serde_json::Value {
    json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": name, "namespace": "shop", "labels": {"parallax.io/probe": "true"}, "annotations": annotations},
        "spec": spec,
        "status": {"loadBalancer": lb}
    })
}

fn path(p: &str, path_type: &str, service: &str, port: serde_json::Value) -> serde_json::Value {
    json!({"path": p, "pathType": path_type, "backend": {"service": {"name": service, "port": port}}})
}

fn shop_ingress() -> serde_json::Value {
    ingress(
        "web",
        json!({}),
        json!({
            "ingressClassName": "alb",
            "tls": [{"hosts": ["shop.example.com"], "secretName": "shop-tls"}],
            "rules": [{"host": "shop.example.com", "http": {"paths": [
                path("/cart", "Prefix", "web", json!({"number": 8080})),
                path("/checkout", "Exact", "web", json!({"name": "http"})),
            ]}}]
        }),
        json!({"ingress": [{"ip": "203.0.113.10"}, {"ip": "203.0.113.11"}]}),
    )
}

fn web_service(type_: &str, annotations: serde_json::Value, lb: serde_json::Value) -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "shop", "annotations": annotations},
        "spec": {"type": type_, "ports": [
            {"name": "http", "port": 8080, "targetPort": 8080, "nodePort": 31080, "protocol": "TCP"},
            {"name": "https", "port": 443, "targetPort": 8443, "nodePort": 31443, "protocol": "TCP",
             "appProtocol": "https"},
            {"name": "db", "port": 5432, "protocol": "TCP"}
        ]},
        "status": {"loadBalancer": lb}
    })
}

#[test]
fn an_ingress_with_tls_and_two_paths_gives_two_https_targets_dialed_at_its_lb_with_its_ips_expected() {
    let cluster = Cluster { ingresses: vec![obj(shop_ingress())], ..Cluster::default() };
    let derivation = external(&cluster);
    assert_eq!(messages(&derivation.notes), Vec::<String>::new());
    let names: Vec<&str> = derivation.targets.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        ["ingress.shop.web.shop.example.com._cart", "ingress.shop.web.shop.example.com._checkout"]
    );
    let cart = "Ingress shop/web rule shop.example.com Prefix /cart";
    let target = &derivation.targets[0];
    assert_eq!(
        target.source,
        ObjectRef { kind: "Ingress", namespace: "shop".to_owned(), name: "web".to_owned() }
    );
    assert_eq!(target.comments, [NO_CHECKERS]);
    assert!(target.checkers.is_empty());
    assert_eq!(target.client.about, "the users' request, through the load balancer at 203.0.113.10");
    assert_eq!(
        target.client.settings,
        [
            s("url", "https://shop.example.com/cart", route(cart)),
            s("connect_to", "203.0.113.10:443", field("status.loadBalancer.ingress[0]")),
            s("sni", "shop.example.com", route(cart)),
            s("verify", true, parallax(USERS_VERIFY)),
            s(
                "expect_addresses",
                list(&["203.0.113.10", "203.0.113.11"]),
                field("status.loadBalancer.ingress")
            ),
        ]
    );
    let checkout = "Ingress shop/web rule shop.example.com Exact /checkout";
    assert_eq!(
        derivation.targets[1].client.settings[0],
        s("url", "https://shop.example.com/checkout", route(checkout))
    );
}

#[test]
fn implementation_specific_and_regex_paths_are_skipped_with_a_note_and_a_plain_host_is_http_on_80() {
    let spec = json!({"rules": [{"host": "api.example.com", "http": {"paths": [
        path("/v1", "Prefix", "api", json!({"number": 80})),
        path("/v2", "ImplementationSpecific", "api", json!({"number": 80})),
        path("/v3/(.*)", "Prefix", "api", json!({"number": 80})),
    ]}}]});
    let cluster = Cluster {
        ingresses: vec![obj(ingress("api", json!({}), spec, json!({"ingress": [{"ip": "2001:db8::7"}]})))],
        ..Cluster::default()
    };
    let derivation = external(&cluster);
    let tail = "no one URL stands for it, so it is skipped; set parallax.io/client-url on the Service it leads to (node \
                mode), or write the target in probes.d";
    assert_eq!(
        messages(&derivation.notes),
        [
            format!("Ingress shop/api: the path /v2 is ImplementationSpecific (its meaning is the controller's): {tail}"),
            format!(
                "Ingress shop/api: the path /v3/(.*) looks like a regex (controllers such as ingress-nginx read it so): {tail}"
            ),
        ]
    );
    assert_eq!(derivation.targets.len(), 1);
    let r = "Ingress shop/api rule api.example.com Prefix /v1";
    assert_eq!(derivation.targets[0].name, "ingress.shop.api.api.example.com._v1");
    assert_eq!(
        derivation.targets[0].client.settings,
        [
            s("url", "http://api.example.com/v1", route(r)),
            s("connect_to", "[2001:db8::7]:80", field("status.loadBalancer.ingress[0]")),
            s("expect_addresses", list(&["2001:db8::7"]), field("status.loadBalancer.ingress")),
        ]
    );
}

#[test]
fn a_wildcard_host_needs_client_host_and_takes_the_tls_of_a_wildcard_certificate() {
    let spec = json!({
        "tls": [{"hosts": ["*.example.com"]}],
        "rules": [{"host": "*.example.com", "http": {"paths": [path("/", "Prefix", "web", json!({"number": 80}))]}}]
    });
    let lb = json!({"ingress": [{"ip": "203.0.113.20"}]});
    let named =
        ingress("named", json!({"parallax.io/client-host": "Shop.example.com"}), spec.clone(), lb.clone());
    let deep =
        ingress("deep", json!({"parallax.io/client-host": "a.b.example.com"}), spec.clone(), lb.clone());
    let bare = ingress("bare", json!({}), spec, lb);
    let cluster = Cluster { ingresses: vec![obj(named), obj(bare), obj(deep)], ..Cluster::default() };
    let derivation = external(&cluster);
    assert_eq!(
        messages(&derivation.notes),
        [
            "Ingress shop/bare: the rule's host *.example.com is a wildcard, which no probe can request: set \
             parallax.io/client-host on the Ingress to the name users request (e.g. shop.example.com)",
            "Ingress shop/deep: parallax.io/client-host a.b.example.com is not a host the wildcard rule *.example.com \
             takes (one label before .example.com): the rule is skipped; set it to a name such as shop.example.com",
        ]
    );
    assert_eq!(derivation.targets.len(), 1);
    let r = "Ingress shop/named rule shop.example.com Prefix /";
    assert_eq!(derivation.targets[0].name, "ingress.shop.named.shop.example.com._");
    assert_eq!(
        derivation.targets[0].client.settings,
        [
            s("url", "https://shop.example.com/", route(r)),
            s("connect_to", "203.0.113.20:443", field("status.loadBalancer.ingress[0]")),
            s("sni", "shop.example.com", route(r)),
            s("verify", true, parallax(USERS_VERIFY)),
            s("expect_addresses", list(&["203.0.113.20"]), field("status.loadBalancer.ingress")),
        ]
    );
}

#[test]
fn an_ingress_without_status_address_is_not_yet_provisioned_and_a_hostname_lb_is_dialed_by_name() {
    let mut pending = shop_ingress();
    pending["metadata"]["name"] = json!("pending");
    pending["status"] = json!({"loadBalancer": {}});
    let mut elb = shop_ingress();
    elb["metadata"]["name"] = json!("elb");
    elb["status"]["loadBalancer"] =
        json!({"ingress": [{"hostname": "k8s-shop-web-1a2b.us-east-1.elb.amazonaws.com"}]});
    let cluster = Cluster { ingresses: vec![obj(pending), obj(elb)], ..Cluster::default() };
    let derivation = external(&cluster);
    let not_yet = |p: &str, path: &str| {
        format!(
            "Ingress shop/pending: not yet provisioned: status.loadBalancer.ingress holds no address, so users \
             cannot reach Ingress shop/pending rule shop.example.com {p} {path}; no target until the controller \
             writes one"
        )
    };
    assert_eq!(messages(&derivation.notes), [not_yet("Prefix", "/cart"), not_yet("Exact", "/checkout")]);
    let names: Vec<&str> = derivation.targets.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        ["ingress.shop.elb.shop.example.com._cart", "ingress.shop.elb.shop.example.com._checkout"]
    );
    let r = "Ingress shop/elb rule shop.example.com Prefix /cart";
    let target = &derivation.targets[0];
    assert_eq!(
        target.client.settings,
        [
            s("url", "https://shop.example.com/cart", route(r)),
            s(
                "connect_to",
                "k8s-shop-web-1a2b.us-east-1.elb.amazonaws.com:443",
                field("status.loadBalancer.ingress[0]")
            ),
            s("sni", "shop.example.com", route(r)),
            s("verify", true, parallax(USERS_VERIFY)),
        ]
    );
    assert_eq!(
        target.comments[1],
        "the load balancer's address is a DNS name (k8s-shop-web-1a2b.us-east-1.elb.amazonaws.com): its IPs are in \
         no status, so what DNS answers for shop.example.com is not checked (no expect_addresses); add them \
         yourself if they are fixed"
    );
}

fn condition(type_: &str, status: &str, reason: &str) -> serde_json::Value {
    json!({"type": type_, "status": status, "reason": reason, "message": "", "lastTransitionTime": "2026-12-01T10:00:00Z"})
}

fn gateway(name: &str, programmed: &str) -> serde_json::Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": name, "namespace": "infra"},
        "spec": {"gatewayClassName": "gke-l7-global-external-managed", "listeners": [
            {"name": "http", "protocol": "HTTP", "port": 80, "hostname": "*.example.com"},
            {"name": "https", "protocol": "HTTPS", "port": 8443, "hostname": "shop.example.com",
             "tls": {"mode": "Terminate", "certificateRefs": [{"name": "shop-tls"}]}},
            {"name": "tls-pass", "protocol": "HTTPS", "port": 9443, "tls": {"mode": "Passthrough"}}
        ]},
        "status": {
            "addresses": [{"type": "IPAddress", "value": "198.51.100.7"}, {"type": "IPAddress", "value": "198.51.100.8"}],
            "conditions": [condition("Accepted", "True", "Accepted"), condition("Programmed", programmed, "Invalid")]
        }
    })
}

fn http_route(
    name: &str,
    annotations: serde_json::Value,
    spec: serde_json::Value,
    accepted: &str,
) -> serde_json::Value {
    let parents: Vec<serde_json::Value> = spec["parentRefs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            json!({"parentRef": p, "controllerName": "networking.gke.io/gateway",
                   "conditions": [condition("Accepted", accepted, if accepted == "True" { "Accepted" } else { "NoMatchingListenerHostname" })]})
        })
        .collect();
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": "shop", "annotations": annotations},
        "spec": spec,
        "status": {"parents": parents}
    })
}

fn rule(path_type: &str, value: &str) -> serde_json::Value {
    json!({"matches": [{"path": {"type": path_type, "value": value}}], "backendRefs": [{"name": "web", "port": 8080}]})
}

#[test]
fn a_route_on_two_listeners_serves_the_intersection_of_hostnames_and_inherits_the_listeners_when_it_has_none()
{
    let with_hosts = http_route(
        "with-hosts",
        json!({}),
        json!({
            "parentRefs": [{"name": "gw", "namespace": "infra"}],
            "hostnames": ["shop.example.com", "shop.example.net"],
            "rules": [rule("PathPrefix", "/cart")]
        }),
        "True",
    );
    let inherits = http_route(
        "inherits",
        json!({"parallax.io/client-host": "api.example.com"}),
        json!({"parentRefs": [{"name": "gw", "namespace": "infra", "sectionName": "http"}], "rules": [rule("Exact", "/v1")]}),
        "True",
    );
    let cluster = Cluster {
        gateways: vec![obj(gateway("gw", "True"))],
        http_routes: vec![obj(with_hosts), obj(inherits)],
        ..Cluster::default()
    };
    let derivation = external(&cluster);
    assert_eq!(
        messages(&derivation.notes),
        ["HTTPRoute shop/with-hosts: two requests derive the target name route.shop.with-hosts.shop.example.com._cart: \
          this one is named route.shop.with-hosts.shop.example.com._cart-2"]
    );
    let names: Vec<&str> = derivation.targets.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "route.shop.inherits.api.example.com._v1",
            "route.shop.with-hosts.shop.example.com._cart",
            "route.shop.with-hosts.shop.example.com._cart-2"
        ]
    );
    let expect = s(
        "expect_addresses",
        list(&["198.51.100.7", "198.51.100.8"]),
        field("Gateway infra/gw status.addresses"),
    );
    let dial = |port: u16| {
        s("connect_to", format!("198.51.100.7:{port}"), field("Gateway infra/gw status.addresses[0]"))
    };
    let inherited =
        "HTTPRoute shop/inherits on Gateway infra/gw listener http hostname api.example.com Exact /v1";
    assert_eq!(
        derivation.targets[0].client.settings,
        [s("url", "http://api.example.com/v1", route(inherited)), dial(80), expect.clone()]
    );
    let on_http = "HTTPRoute shop/with-hosts on Gateway infra/gw listener http hostname shop.example.com PathPrefix /cart";
    assert_eq!(
        derivation.targets[1].client.settings,
        [s("url", "http://shop.example.com/cart", route(on_http)), dial(80), expect.clone()]
    );
    let on_https = "HTTPRoute shop/with-hosts on Gateway infra/gw listener https hostname shop.example.com PathPrefix /cart";
    assert_eq!(
        derivation.targets[2].client.settings,
        [
            s("url", "https://shop.example.com:8443/cart", route(on_https)),
            dial(8443),
            s("sni", "shop.example.com", route(on_https)),
            s("verify", true, parallax(USERS_VERIFY)),
            expect,
        ]
    );
    assert_eq!(derivation.targets[2].comments, [NO_CHECKERS]);
}

#[test]
fn a_route_not_accepted_or_on_a_gateway_not_programmed_is_a_condition_with_the_reason() {
    let refused = http_route(
        "refused",
        json!({}),
        json!({"parentRefs": [{"name": "gw", "namespace": "infra"}], "hostnames": ["shop.example.org"], "rules": [rule("PathPrefix", "/")]}),
        "False",
    );
    let stalled = http_route(
        "stalled",
        json!({}),
        json!({"parentRefs": [{"name": "broken", "namespace": "infra"}], "rules": [rule("PathPrefix", "/")]}),
        "True",
    );
    let wildcard = http_route(
        "wildcard",
        json!({}),
        json!({"parentRefs": [{"name": "gw", "namespace": "infra", "sectionName": "http"}], "rules": [rule("PathPrefix", "/")]}),
        "True",
    );
    let passthrough = http_route(
        "passthrough",
        json!({}),
        json!({"parentRefs": [{"name": "gw", "namespace": "infra", "sectionName": "tls-pass"}], "rules": [rule("PathPrefix", "/")]}),
        "True",
    );
    let cluster = Cluster {
        gateways: vec![obj(gateway("gw", "True")), obj(gateway("broken", "False"))],
        http_routes: vec![obj(wildcard), obj(stalled), obj(refused), obj(passthrough)],
        ..Cluster::default()
    };
    let derivation = external(&cluster);
    assert_eq!(
        messages(&derivation.notes),
        [
            "HTTPRoute shop/passthrough: Gateway infra/gw has no HTTP or terminating HTTPS listener this parentRef \
             names: not probed there",
            "HTTPRoute shop/refused: no hostname of the route (shop.example.org) is one Gateway infra/gw listener \
             http takes (*.example.com): not probed there (NoMatchingListenerHostname)",
            "HTTPRoute shop/refused: no hostname of the route (shop.example.org) is one Gateway infra/gw listener \
             https takes (shop.example.com): not probed there (NoMatchingListenerHostname)",
            "HTTPRoute shop/stalled: the hostname *.example.com is a wildcard, which no probe can request: set \
             parallax.io/client-host on the HTTPRoute to the name users request (e.g. shop.example.com)",
            "HTTPRoute shop/wildcard: the hostname *.example.com is a wildcard, which no probe can request: set \
             parallax.io/client-host on the HTTPRoute to the name users request (e.g. shop.example.com)",
        ]
    );
    // A Gateway that is not Programmed but has an address is probed: users request its hosts.
    let names: Vec<&str> = derivation.targets.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["route.shop.stalled.shop.example.com._"]);
    let found: Vec<(String, &str, Option<&str>, Option<&str>)> = derivation
        .conditions
        .iter()
        .map(|c| (c.kind.to_string(), c.object.as_str(), c.target.as_deref(), c.reason.as_deref()))
        .collect();
    assert_eq!(
        found,
        [
            (
                "route_not_accepted".to_owned(),
                "HTTPRoute shop/refused",
                None,
                Some("NoMatchingListenerHostname")
            ),
            (
                "gateway_not_programmed".to_owned(),
                "Gateway infra/broken",
                Some("route.shop.stalled.shop.example.com._"),
                Some("Invalid")
            ),
        ]
    );
    let stalled = &derivation.conditions[1].message;
    assert!(stalled.starts_with("Gateway infra/broken says Programmed=False (Invalid)"), "{stalled}");
}

#[test]
fn a_regex_path_is_skipped_and_header_matches_are_said_beside_the_target() {
    let spec = json!({
        "parentRefs": [{"name": "gw", "namespace": "infra", "sectionName": "https"}],
        "rules": [
            {"matches": [{"path": {"type": "RegularExpression", "value": "/item/[0-9]+"}}], "backendRefs": [{"name": "web", "port": 8080}]},
            {"matches": [{"path": {"type": "PathPrefix", "value": "/beta"}, "headers": [{"name": "x-beta", "value": "1"}], "method": "GET"}],
             "backendRefs": [{"name": "web", "port": 8080}]}
        ]
    });
    let cluster = Cluster {
        gateways: vec![obj(gateway("gw", "True"))],
        http_routes: vec![obj(http_route("beta", json!({}), spec, "True"))],
        ..Cluster::default()
    };
    let derivation = external(&cluster);
    assert_eq!(
        messages(&derivation.notes),
        ["HTTPRoute shop/beta: rule 0: the RegularExpression path /item/[0-9]+ has no one URL, so it is skipped; set \
          parallax.io/client-url on the Service it leads to (node mode), or write the target in probes.d"]
    );
    assert_eq!(derivation.targets.len(), 1);
    assert_eq!(derivation.targets[0].name, "route.shop.beta.shop.example.com._beta");
    assert_eq!(
        derivation.targets[0].comments[1],
        "rule 1 also matches headers and a method, which the probe does not send: the Gateway may route it \
         elsewhere; add them to the client view (headers, method) if they matter"
    );
}

#[test]
fn a_load_balancer_service_without_routes_gives_one_target_per_port_through_its_lb() {
    let lb = json!({"ingress": [{"ip": "203.0.113.30", "ipMode": "VIP"}]});
    let mut other = web_service(
        "LoadBalancer",
        json!({"parallax.io/client-url": "https://pay.example.com/health"}),
        lb.clone(),
    );
    other["metadata"]["name"] = json!("pay");
    other["spec"]["ports"] = json!([{"name": "https", "port": 443, "protocol": "TCP"}, {"name": "dns", "port": 53, "protocol": "UDP"}]);
    let mut pending = web_service("LoadBalancer", json!({}), json!({}));
    pending["metadata"]["name"] = json!("pending");
    pending["spec"]["ports"] = json!([{"port": 80}]);
    let cluster = Cluster {
        services: vec![
            obj(web_service("LoadBalancer", json!({}), lb)),
            obj(other),
            obj(pending),
            obj(web_service("ClusterIP", json!({}), json!({}))),
        ],
        ..Cluster::default()
    };
    let derivation = external(&cluster);
    assert_eq!(
        messages(&derivation.notes),
        [
            "Service shop/pay: port dns is UDP: parallax probes TCP only",
            "Service shop/pending: not yet provisioned: status.loadBalancer.ingress holds no address, so users cannot \
             reach port 80; no target until the cloud controller writes one",
        ]
    );
    let names: Vec<&str> = derivation.targets.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["svc.shop.pay.https", "svc.shop.web.http", "svc.shop.web.https", "svc.shop.web.db"]);
    let host = "; host status.loadBalancer.ingress[0]";
    assert_eq!(
        derivation.targets[1].client.settings,
        [s("url", "http://203.0.113.30:8080/", field(&format!("spec.ports[http].name{host}")))]
    );
    assert_eq!(
        derivation.targets[2].client.settings,
        [
            s("url", "https://203.0.113.30/", field(&format!("spec.ports[https].appProtocol https{host}"))),
            s("verify", false, parallax("no route or parallax.io/client-url names the host users request, so the certificate's name cannot be checked")),
        ]
    );
    assert_eq!(
        derivation.targets[3].client.settings,
        [s(
            "url",
            "tcp://203.0.113.30:5432",
            field(&format!("spec.ports[db]: no appProtocol, name or port number says HTTP{host}"))
        )]
    );
    assert_eq!(
        derivation.targets[0].client.settings,
        [
            s("url", "https://pay.example.com/health", Origin::Override("parallax.io/client-url".to_owned())),
            s("connect_to", "203.0.113.30:443", field("status.loadBalancer.ingress[0]")),
            s("expect_addresses", list(&["203.0.113.30"]), field("status.loadBalancer.ingress")),
        ]
    );
    assert_eq!(derivation.targets[0].comments, [NO_CHECKERS]);
}

#[test]
fn a_service_port_an_ingress_leads_to_is_not_a_target_of_its_own() {
    let lb = json!({"ingress": [{"ip": "203.0.113.30"}]});
    let cluster = Cluster {
        services: vec![obj(web_service("LoadBalancer", json!({}), lb))],
        ingresses: vec![obj(shop_ingress())],
        ..Cluster::default()
    };
    let names: Vec<String> = external(&cluster).targets.into_iter().map(|t| t.name).collect();
    assert_eq!(
        names,
        [
            "ingress.shop.web.shop.example.com._cart",
            "ingress.shop.web.shop.example.com._checkout",
            "svc.shop.web.https",
            "svc.shop.web.db"
        ]
    );
}

const NODE_HTTP: &str = "spec.ports[http].nodePort";

#[test]
fn forwarded_view_from_the_client_url_annotation_wins_over_routes() {
    let annotated = web_service(
        "LoadBalancer",
        json!({"parallax.io/client-url": "https://shop.example.com/ok"}),
        json!({}),
    );
    let cluster = Cluster {
        services: vec![obj(annotated)],
        ingresses: vec![obj(shop_ingress())],
        ..Cluster::default()
    };
    let (view, notes) = forwarded(&cluster, 0, 0);
    let view = view.unwrap_or_else(|| panic!("a view"));
    assert_eq!(view.about, "the users' request as the load balancer delivers it to this node");
    assert_eq!(
        view.settings,
        [
            s("url", "https://shop.example.com/ok", Origin::Override("parallax.io/client-url".to_owned())),
            s("connect_to", "10.0.1.5:31080", field(NODE_HTTP)),
        ]
    );
    assert_eq!(messages(&notes), Vec::<String>::new());
}

#[test]
fn forwarded_view_from_ingresses_is_the_first_rule_as_http_to_the_node_port_and_the_others_are_noted() {
    let mut second = shop_ingress();
    second["metadata"]["name"] = json!("zz-admin");
    second["spec"]["rules"][0]["host"] = json!("admin.example.com");
    let cluster = Cluster {
        services: vec![obj(web_service("NodePort", json!({}), json!({})))],
        ingresses: vec![obj(second), obj(shop_ingress())],
        ..Cluster::default()
    };
    let (view, notes) = forwarded(&cluster, 0, 0);
    let r = "Ingress shop/web rule shop.example.com Prefix /cart";
    assert_eq!(
        view.map(|v| v.settings),
        Some(vec![
            s("url", "http://shop.example.com/cart", route(r)),
            s("connect_to", "10.0.1.5:31080", field(NODE_HTTP))
        ])
    );
    assert_eq!(
        messages(&notes),
        ["Service shop/web: port http is reached by 4 routes: the node view follows the first, Ingress shop/web rule \
          shop.example.com Prefix /cart; not probed here: Ingress shop/web rule shop.example.com Exact /checkout; \
          Ingress shop/zz-admin rule admin.example.com Prefix /cart; Ingress shop/zz-admin rule admin.example.com \
          Exact /checkout. Set parallax.io/client-url on the Service to choose"]
    );
}

#[test]
fn forwarded_view_from_an_httproute_to_an_https_backend_keeps_the_host_and_does_not_verify() {
    let spec = json!({
        "parentRefs": [{"name": "gw", "namespace": "infra", "sectionName": "https"}],
        "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/pay"}}], "backendRefs": [{"name": "web", "port": 443}]}]
    });
    let cluster = Cluster {
        services: vec![obj(web_service("LoadBalancer", json!({}), json!({})))],
        gateways: vec![obj(gateway("gw", "True"))],
        http_routes: vec![obj(http_route("pay", json!({}), spec, "True"))],
        ..Cluster::default()
    };
    let (view, notes) = forwarded(&cluster, 0, 1);
    let r = "HTTPRoute shop/pay on Gateway infra/gw listener https hostname shop.example.com PathPrefix /pay";
    let why =
        "the backend speaks TLS (spec.ports[https].appProtocol https); load balancers do not verify their \
               backends' certificates (ALB, GKE), neither does this view";
    assert_eq!(
        view.map(|v| v.settings),
        Some(vec![
            s("url", "https://shop.example.com/pay", route(r)),
            s("sni", "shop.example.com", route(r)),
            s("verify", false, parallax(why)),
            s("connect_to", "10.0.1.5:31443", field("spec.ports[https].nodePort")),
        ])
    );
    assert_eq!(messages(&notes), Vec::<String>::new());
}

#[test]
fn forwarded_view_from_the_port_uses_the_lb_address_else_the_cluster_dns_name_and_needs_a_node_port() {
    let lb = json!({"ingress": [{"hostname": "a1b2.elb.amazonaws.com"}]});
    let cluster = Cluster {
        services: vec![
            obj(web_service("LoadBalancer", json!({}), lb)),
            obj(web_service("LoadBalancer", json!({}), json!({}))),
        ],
        ..Cluster::default()
    };
    let (view, _) = forwarded(&cluster, 0, 1);
    let no_name = "no route or parallax.io/client-url names the host users request, so the certificate's name cannot be checked";
    assert_eq!(
        view.map(|v| v.settings),
        Some(vec![
            s(
                "url",
                "https://a1b2.elb.amazonaws.com/",
                field("spec.ports[https].appProtocol https; host status.loadBalancer.ingress[0]")
            ),
            s("verify", false, parallax(no_name)),
            s("connect_to", "10.0.1.5:31443", field("spec.ports[https].nodePort")),
        ])
    );
    let (view, _) = forwarded(&cluster, 1, 0);
    let dns =
        "spec.ports[http].name; no load balancer address in the status yet: the Service's cluster DNS name";
    assert_eq!(
        view.map(|v| v.settings),
        Some(vec![
            s("url", "http://web.shop.svc.cluster.local:8080/", parallax(dns)),
            s("connect_to", "10.0.1.5:31080", field(NODE_HTTP))
        ])
    );
    let (view, notes) = forwarded(&cluster, 0, 2);
    assert_eq!(view, None);
    assert_eq!(
        messages(&notes),
        ["Service shop/web: port db has no nodePort, so no load balancer delivers users' requests to this node's \
          traffic port (type ClusterIP, or allocateLoadBalancerNodePorts: false with IP targets): no node target; \
          probe it from outside the cluster (mode external)"]
    );
}

#[test]
fn the_external_targets_render_to_a_file_the_compiler_accepts() {
    let lb = json!({"ingress": [{"ip": "203.0.113.30"}]});
    let mut elb = shop_ingress();
    elb["metadata"]["name"] = json!("elb");
    elb["status"]["loadBalancer"] =
        json!({"ingress": [{"hostname": "k8s-shop-web-1a2b.us-east-1.elb.amazonaws.com"}]});
    let inherits = http_route(
        "inherits",
        json!({}),
        json!({"parentRefs": [{"name": "gw", "namespace": "infra", "sectionName": "https"}], "rules": [rule("Exact", "/v1")]}),
        "True",
    );
    let cluster = Cluster {
        services: vec![obj(web_service("LoadBalancer", json!({}), lb))],
        ingresses: vec![obj(shop_ingress()), obj(elb)],
        gateways: vec![obj(gateway("gw", "True"))],
        http_routes: vec![obj(inherits)],
        ..Cluster::default()
    };
    let derivation = external(&cluster);
    let text = crate::discovery::kubernetes::render::toml(&derivation, &Default::default());
    let env = std::collections::HashMap::new();
    let plan = crate::config::load_str(std::path::Path::new("discovered.toml"), &text, &env)
        .unwrap_or_else(|e| panic!("the rendered file compiles: {e}\n{text}"));
    let names: Vec<&str> = plan.targets.iter().map(|t| &*t.name).collect();
    assert_eq!(
        names,
        [
            "ingress.shop.elb.shop.example.com._cart",
            "ingress.shop.elb.shop.example.com._checkout",
            "ingress.shop.web.shop.example.com._cart",
            "ingress.shop.web.shop.example.com._checkout",
            "route.shop.inherits.shop.example.com._v1",
            "svc.shop.web.https",
            "svc.shop.web.db",
        ]
    );
    assert!(plan.targets.iter().all(|t| t.checkers.is_empty()));
}

#[test]
fn forwarded_view_tells_only_the_skipped_routes_that_lead_to_its_port_and_falls_back_to_the_port() {
    let to_web =
        json!({"parentRefs": [{"name": "broken", "namespace": "infra"}], "rules": [rule("PathPrefix", "/")]});
    let unselected = json!({"parentRefs": [{"name": "elsewhere"}], "rules": [rule("PathPrefix", "/")]});
    let other_spec = json!({"rules": [{"host": "*.example.com", "http": {"paths": [path("/", "Prefix", "other", json!({"number": 8080}))]}}]});
    let cluster = Cluster {
        services: vec![obj(web_service(
            "LoadBalancer",
            json!({}),
            json!({"ingress": [{"ip": "203.0.113.30"}]}),
        ))],
        gateways: vec![obj(gateway("broken", "False"))],
        http_routes: vec![
            obj(http_route("stalled", json!({}), to_web, "True")),
            obj(http_route("lost", json!({}), unselected, "True")),
        ],
        ingresses: vec![obj(ingress("other", json!({}), other_spec, json!({})))],
        ..Cluster::default()
    };
    let (view, notes) = forwarded(&cluster, 0, 0);
    assert_eq!(
        view.map(|v| v.settings),
        Some(vec![
            s(
                "url",
                "http://203.0.113.30:8080/",
                field("spec.ports[http].name; host status.loadBalancer.ingress[0]")
            ),
            s("connect_to", "10.0.1.5:31080", field(NODE_HTTP)),
        ])
    );
    assert_eq!(
        messages(&notes),
        [
            "HTTPRoute shop/lost: its parent Gateway shop/elsewhere is not selected (give it the selector's label) or \
             does not exist: not probed there",
            "HTTPRoute shop/stalled: the hostname *.example.com is a wildcard, which no probe can request: set \
             parallax.io/client-host on the HTTPRoute to the name users request (e.g. shop.example.com)",
            "HTTPRoute shop/stalled: Gateway infra/broken says Programmed=False (Invalid): its data plane is not (or \
             no longer) configured as the spec says, so its listeners may refuse connections, serve no TLS or an old \
             configuration; look at the Gateway's status and the controller's logs; the node view does not follow \
             HTTPRoute shop/stalled on Gateway infra/broken listener https hostname shop.example.com PathPrefix /",
        ]
    );
    let (_, notes) = forwarded(&cluster, 0, 1);
    assert_eq!(messages(&notes), Vec::<String>::new(), "no route leads to port https");
}
