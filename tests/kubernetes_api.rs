//! The Kubernetes test infrastructure itself (`support::kube`: a real etcd + kube-apiserver on
//! loopback) and the RBAC that `deploy/kubernetes/clusterrole.yaml` grants parallax: what the
//! API server allocates for a LoadBalancer Service, that statuses can be written without
//! controllers, that the Gateway API CRDs are served, that parallax's identity may list and
//! watch every kind discovery reads and get nodes, and that it may not read Secrets.
//!
//! Needs the binaries of `scripts/kube-test-infra` (`scripts/test` builds them when missing).

mod support;

use std::net::Ipv4Addr;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Node, Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, PostParams, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Client;
use serde_json::{json, Value};
use support::kube::{KubeServer, KUBE_VERSION, PARALLAX_USER};

/// The API server's default NodePort range (`--service-node-port-range`).
const NODE_PORTS: std::ops::RangeInclusive<i64> = 30000..=32767;

fn gateway_api(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", kind), plural)
}

fn backend_configs() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("cloud.google.com", "v1", "BackendConfig"),
        "backendconfigs",
    )
}

/// The HTTP status of a failed request (0: it did not fail with an API status).
fn api_code<T: std::fmt::Debug>(result: kube::Result<T>) -> u16 {
    match result {
        Err(kube::Error::Api(status)) => status.code,
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn load_balancer_service(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "labels": {"parallax.io/probe": "true"}},
        "spec": {
            "type": "LoadBalancer",
            "externalTrafficPolicy": "Local",
            "selector": {"app": name},
            "ports": [{"name": "https", "port": 443, "targetPort": 8443, "protocol": "TCP"},
                      {"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]
        }
    })
}

// ---- the server ----------------------------------------------------------------------------------

#[tokio::test]
async fn the_shared_server_is_ready_and_is_the_version_the_script_builds() {
    let server = KubeServer::shared();
    let client = server.admin_client().await;
    let version = client.apiserver_version().await.expect("GET /version");
    assert_eq!(version.git_version, KUBE_VERSION);
    assert_eq!((version.major.as_str(), version.minor.as_str()), ("1", "34"));
    let readyz = http::Request::get("/readyz").body(Vec::new()).expect("request");
    assert_eq!(client.request_text(readyz).await.expect("GET /readyz"), "ok");
    assert!(server.url().starts_with("https://127.0.0.1:"), "{}", server.url());
}

#[tokio::test]
async fn a_local_load_balancer_service_gets_node_ports_and_a_health_check_node_port() {
    let server = KubeServer::shared();
    let ns = server.namespace("lb").await;
    server.create(&ns, load_balancer_service("ingress")).await;
    let service: Service =
        Api::namespaced(server.admin_client().await, &ns).get("ingress").await.expect("get the Service");
    let spec = service.spec.expect("spec");
    let cluster_ip: Ipv4Addr = spec.cluster_ip.expect("clusterIP").parse().expect("an IPv4 clusterIP");
    assert_eq!(cluster_ip.octets()[..2], [10, 96], "{cluster_ip} is not in the Service CIDR");
    let node_ports: Vec<i64> =
        spec.ports.expect("ports").iter().map(|p| i64::from(p.node_port.expect("a nodePort"))).collect();
    assert_eq!(node_ports.len(), 2);
    assert_ne!(node_ports[0], node_ports[1]);
    let health = i64::from(spec.health_check_node_port.expect("a healthCheckNodePort for ETP Local"));
    for port in node_ports.iter().chain([&health]) {
        assert!(NODE_PORTS.contains(port), "{port} outside {NODE_PORTS:?}");
    }
    assert!(!node_ports.contains(&health), "the health check port is a port of its own");
    assert_eq!(spec.external_traffic_policy.as_deref(), Some("Local"));
}

#[tokio::test]
async fn a_cluster_load_balancer_service_gets_no_health_check_node_port() {
    let server = KubeServer::shared();
    let ns = server.namespace("lb-cluster").await;
    let mut object = load_balancer_service("web");
    object["spec"]["externalTrafficPolicy"] = json!("Cluster");
    server.create(&ns, object).await;
    let service: Service = Api::namespaced(server.admin_client().await, &ns).get("web").await.expect("get");
    assert_eq!(service.spec.expect("spec").health_check_node_port, None);
}

#[tokio::test]
async fn the_load_balancer_status_of_a_service_can_be_patched() {
    let server = KubeServer::shared();
    let ns = server.namespace("lb-status").await;
    server.create(&ns, load_balancer_service("shop")).await;
    let ingress = json!([{"ip": "192.0.2.50", "ipMode": "VIP"}, {"ip": "192.0.2.51", "ipMode": "Proxy"},
                         {"hostname": "lb.example.com"}]);
    server.patch_status(&ns, "v1", "Service", "shop", json!({"loadBalancer": {"ingress": ingress}})).await;
    let api: Api<Service> = Api::namespaced(server.admin_client().await, &ns);
    let service = api.get("shop").await.expect("get");
    let status = service.status.and_then(|s| s.load_balancer).and_then(|lb| lb.ingress).expect("ingress");
    let seen: Vec<(Option<&str>, Option<&str>, Option<&str>)> =
        status.iter().map(|i| (i.ip.as_deref(), i.hostname.as_deref(), i.ip_mode.as_deref())).collect();
    assert_eq!(
        seen,
        [
            (Some("192.0.2.50"), None, Some("VIP")),
            (Some("192.0.2.51"), None, Some("Proxy")),
            (None, Some("lb.example.com"), None)
        ]
    );
    // ipMode belongs to an address: the API server refuses it on a hostname (KEP-1860).
    let patch = kube::api::Patch::Merge(json!({"status": {"loadBalancer": {"ingress": [
        {"hostname": "lb.example.com", "ipMode": "Proxy"}]}}}));
    assert_eq!(api_code(api.patch_status("shop", &kube::api::PatchParams::default(), &patch).await), 422);
}

/// The other objects discovery reads exist without their controllers: a Pod with no
/// ServiceAccount to be found (the admission plugin is off) and no scheduler, an EndpointSlice
/// written by hand, an IngressClass, and an Ingress whose status a test writes.
#[tokio::test]
async fn pods_endpoint_slices_and_ingresses_are_written_without_controllers() {
    let server = KubeServer::shared();
    let ns = server.namespace("objects").await;
    let probe = json!({"httpGet": {"path": "/ready", "port": 8080}, "periodSeconds": 5});
    server
        .create(
            &ns,
            json!({
                "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "shop-0", "labels": {"app": "shop"}},
                "spec": {"containers": [{"name": "shop", "image": "shop:1", "readinessProbe": probe}]}
            }),
        )
        .await;
    let slice = server
        .create(&ns, json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "shop-abc", "labels": {"kubernetes.io/service-name": "shop"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.244.1.5"], "nodeName": "node-a", "conditions": {"ready": true}}],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]
        }))
        .await;
    assert_eq!(slice.data["endpoints"][0]["nodeName"], "node-a");
    let class = format!("nginx-{ns}");
    server
        .create(
            "",
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": {"name": class},
                           "spec": {"controller": "k8s.io/ingress-nginx"}}),
        )
        .await;
    server
        .create(
            &ns,
            json!({
                "apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "shop"},
                "spec": {"ingressClassName": class, "tls": [{"hosts": ["shop.example.com"]}],
                         "rules": [{"host": "shop.example.com", "http": {"paths": [{
                             "path": "/cart", "pathType": "Prefix",
                             "backend": {"service": {"name": "shop", "port": {"number": 80}}}}]}}]}
            }),
        )
        .await;
    let status = json!({"loadBalancer": {"ingress": [{"ip": "192.0.2.60"}]}});
    let ingress = server.patch_status(&ns, "networking.k8s.io/v1", "Ingress", "shop", status).await;
    assert_eq!(ingress.data["status"]["loadBalancer"]["ingress"][0]["ip"], "192.0.2.60");

    let client = server.parallax_client().await;
    let pod = Api::<Pod>::namespaced(client.clone(), &ns).get("shop-0").await.expect("parallax gets the Pod");
    let readiness = pod.spec.expect("spec").containers[0].readiness_probe.clone().expect("readiness probe");
    assert_eq!(readiness.http_get.expect("httpGet").path.as_deref(), Some("/ready"));
    let classes = Api::<IngressClass>::all(client).get(&class).await.expect("parallax gets the IngressClass");
    assert_eq!(classes.spec.and_then(|s| s.controller).as_deref(), Some("k8s.io/ingress-nginx"));
}

#[tokio::test]
async fn gateways_and_http_routes_are_served_and_their_status_can_be_patched() {
    let server = KubeServer::shared();
    let ns = server.namespace("gw").await;
    server
        .create(
            &ns,
            json!({
                "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
                "metadata": {"name": "edge"},
                "spec": {"gatewayClassName": "example", "listeners": [
                    {"name": "https", "protocol": "HTTPS", "port": 443, "hostname": "*.example.com",
                     "tls": {"mode": "Terminate", "certificateRefs": [{"name": "edge-cert"}]}}]}
            }),
        )
        .await;
    let route = server
        .create(
            &ns,
            json!({
                "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
                "metadata": {"name": "shop"},
                "spec": {"parentRefs": [{"name": "edge"}], "hostnames": ["shop.example.com"],
                         "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/cart"}}],
                                    "backendRefs": [{"name": "shop", "port": 8080}]}]}
            }),
        )
        .await;
    // Defaults filled in by the CRD's schema: the API server really validated the route.
    assert_eq!(route.data["spec"]["parentRefs"][0]["kind"], "Gateway");
    assert_eq!(route.data["spec"]["rules"][0]["backendRefs"][0]["weight"], 1);

    let condition = |kind: &str, reason: &str| {
        json!({"type": kind, "status": "True", "reason": reason, "message": "", "observedGeneration": 1,
               "lastTransitionTime": "2026-01-01T00:00:00Z"})
    };
    let gateway = server
        .patch_status(
            &ns,
            "gateway.networking.k8s.io/v1",
            "Gateway",
            "edge",
            json!({
                "addresses": [{"type": "IPAddress", "value": "192.0.2.80"}],
                "conditions": [condition("Accepted", "Accepted"), condition("Programmed", "Programmed")]
            }),
        )
        .await;
    assert_eq!(gateway.data["status"]["addresses"][0]["value"], "192.0.2.80");
    assert_eq!(gateway.data["status"]["conditions"][1]["type"], "Programmed");
    let route = server
        .patch_status(
            &ns,
            "gateway.networking.k8s.io/v1",
            "HTTPRoute",
            "shop",
            json!({"parents": [{
                "parentRef": {"name": "edge"}, "controllerName": "example.com/gateway",
                "conditions": [condition("Accepted", "Accepted"), condition("ResolvedRefs", "ResolvedRefs")]
            }]}),
        )
        .await;
    assert_eq!(route.data["status"]["parents"][0]["controllerName"], "example.com/gateway");
    assert_eq!(route.data["status"]["parents"][0]["conditions"][1]["reason"], "ResolvedRefs");
}

#[tokio::test]
async fn a_gateway_the_crd_schema_rejects_is_refused() {
    let server = KubeServer::shared();
    let ns = server.namespace("gw-bad").await;
    let api: Api<DynamicObject> =
        Api::namespaced_with(server.admin_client().await, &ns, &gateway_api("Gateway", "gateways"));
    let object: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "metadata": {"name": "bad"},
        "spec": {"gatewayClassName": "example",
                 "listeners": [{"name": "http", "protocol": "HTTP", "port": 0}]}
    }))
    .expect("object");
    assert_eq!(api_code(api.create(&PostParams::default(), &object).await), 422);
}

#[tokio::test]
async fn created_objects_can_be_deleted() {
    let server = KubeServer::shared();
    let ns = server.namespace("delete").await;
    server.create(&ns, json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "gone"}})).await;
    server.delete(&ns, "v1", "ConfigMap", "gone").await;
    let api: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(server.admin_client().await, &ns);
    assert_eq!(api_code(api.get("gone").await), 404);
}

// ---- the RBAC of deploy/kubernetes ---------------------------------------------------------------

/// Lists `api` and opens a watch from the list's resource version: both must be allowed (the API
/// server answers a watch it refuses with its status before any event; the stream is dropped).
async fn list_and_watch<K>(api: Api<K>, what: &str)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let list = api.list(&ListParams::default().limit(1)).await.unwrap_or_else(|e| panic!("list {what}: {e}"));
    let version = list.metadata.resource_version.unwrap_or_else(|| "0".to_owned());
    let watch = api.watch(&WatchParams::default().timeout(1), &version).await;
    drop(watch.unwrap_or_else(|e| panic!("watch {what}: {e}")));
}

#[tokio::test]
async fn parallax_may_list_and_watch_every_kind_discovery_reads() {
    let server = KubeServer::shared();
    let client = server.parallax_client().await;
    list_and_watch(Api::<Service>::all(client.clone()), "services").await;
    list_and_watch(Api::<EndpointSlice>::all(client.clone()), "endpointslices").await;
    list_and_watch(Api::<Pod>::all(client.clone()), "pods").await;
    list_and_watch(Api::<Ingress>::all(client.clone()), "ingresses").await;
    list_and_watch(Api::<IngressClass>::all(client.clone()), "ingressclasses").await;
    list_and_watch(
        Api::<DynamicObject>::all_with(client.clone(), &gateway_api("Gateway", "gateways")),
        "gateways",
    )
    .await;
    let routes = gateway_api("HTTPRoute", "httproutes");
    list_and_watch(Api::<DynamicObject>::all_with(client.clone(), &routes), "httproutes").await;
    list_and_watch(Api::<DynamicObject>::all_with(client.clone(), &backend_configs()), "backendconfigs")
        .await;
    // And in one namespace, as discovery does when `namespaces` is set.
    let ns = server.namespace("rbac").await;
    list_and_watch(Api::<Service>::namespaced(client, &ns), "services in a namespace").await;
}

#[tokio::test]
async fn parallax_sees_the_objects_an_admin_created() {
    let server = KubeServer::shared();
    let ns = server.namespace("rbac-see").await;
    server.create(&ns, load_balancer_service("seen")).await;
    let client = server.parallax_client().await;
    let service =
        Api::<Service>::namespaced(client, &ns).get("seen").await.expect("parallax gets the Service");
    assert_eq!(service.metadata.labels.expect("labels")["parallax.io/probe"], "true");
}

#[tokio::test]
async fn parallax_may_get_a_node_but_not_list_nodes() {
    let server = KubeServer::shared();
    let name = format!("node-{}", server.namespace("node").await);
    server
        .create(
            "",
            json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
                           "spec": {"providerID": "aws:///eu-west-1a/i-0123456789abcdef0"}}),
        )
        .await;
    let nodes: Api<Node> = Api::all(server.parallax_client().await);
    let node = nodes.get(&name).await.expect("parallax gets its node");
    assert_eq!(
        node.spec.and_then(|s| s.provider_id).as_deref(),
        Some("aws:///eu-west-1a/i-0123456789abcdef0")
    );
    assert_eq!(api_code(nodes.list(&ListParams::default()).await), 403);
}

#[tokio::test]
async fn parallax_may_not_read_secrets() {
    let server = KubeServer::shared();
    let ns = server.namespace("secret").await;
    server
        .create(
            &ns,
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "tls"},
                            "stringData": {"tls.key": "not a key"}}),
        )
        .await;
    let client = server.parallax_client().await;
    assert_eq!(api_code(Api::<Secret>::all(client.clone()).list(&ListParams::default()).await), 403);
    let in_ns: Api<Secret> = Api::namespaced(client, &ns);
    assert_eq!(api_code(in_ns.list(&ListParams::default()).await), 403);
    assert_eq!(api_code(in_ns.get("tls").await), 403);
    assert_eq!(api_code(in_ns.watch(&WatchParams::default().timeout(1), "0").await.map(|_| ())), 403);
}

#[tokio::test]
async fn parallax_may_not_write_what_it_reads() {
    let server = KubeServer::shared();
    let ns = server.namespace("rbac-write").await;
    let api: Api<Service> = Api::namespaced(server.parallax_client().await, &ns);
    let service: Service = serde_json::from_value(load_balancer_service("mine")).expect("a Service");
    assert_eq!(api_code(api.create(&PostParams::default(), &service).await), 403);
}

/// The user name the API server sees for `client` (SelfSubjectReview, which anyone may ask).
async fn who(client: &Client) -> String {
    let review = http::Request::post("/apis/authentication.k8s.io/v1/selfsubjectreviews")
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(br#"{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}"#.to_vec())
        .expect("request");
    let review: Value = client.request(review).await.expect("SelfSubjectReview");
    review["status"]["userInfo"]["username"].as_str().expect("a user name").to_owned()
}

/// The parallax kubeconfig is the ServiceAccount that `deploy/kubernetes/clusterrolebinding.yaml`
/// names, so the binding applies to it unchanged.
#[tokio::test]
async fn parallax_is_the_service_account_the_binding_names() {
    let server = KubeServer::shared();
    assert_eq!(who(&server.parallax_client().await).await, PARALLAX_USER);
}

// ---- an own server: stop and restart -------------------------------------------------------------

#[tokio::test]
async fn an_own_server_restarts_on_the_same_port_with_its_objects() {
    let server = KubeServer::start().await;
    let url = server.url();
    let ns = server.namespace("restart").await;
    server.create(&ns, load_balancer_service("kept")).await;
    let api: Api<Service> = Api::namespaced(server.admin_client().await, &ns);
    let before = api.get("kept").await.expect("get before the stop");

    server.stop();
    let error = api.get("kept").await.expect_err("the API server is stopped");
    assert!(matches!(error, kube::Error::HyperError(_) | kube::Error::Service(_)), "{error:?}");

    server.restart().await;
    assert_eq!(server.url(), url);
    // The same client (same CA, same token) reaches it again.
    let after = api.get("kept").await.expect("get after the restart");
    assert_eq!(after.metadata.uid, before.metadata.uid);
    assert_eq!(
        after.spec.and_then(|s| s.health_check_node_port),
        before.spec.and_then(|s| s.health_check_node_port)
    );
}

// ---- the external VM (deploy/external) -----------------------------------------------------------

/// deploy/external/README.md step 1 against the real server: a ServiceAccount of the VM's own,
/// bound to `parallax-discovery`, a TokenRequest token in a file, and the kubeconfig template
/// filled in as the README's `sed` does. That client reads what discovery reads, and no Secret.
#[tokio::test]
async fn the_external_vm_kubeconfig_template_with_a_requested_token_reads_but_not_secrets() {
    let server = KubeServer::shared();
    let ns = server.namespace("external").await;
    let account = "parallax-external";
    server
        .create(&ns, json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": account}}))
        .await;
    server
        .create(
            "",
            json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                "metadata": {"name": format!("{account}-{ns}")},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                            "name": "parallax-discovery"},
                "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": ns}]
            }),
        )
        .await;
    let request = TokenRequest {
        spec: TokenRequestSpec { expiration_seconds: Some(3600), ..TokenRequestSpec::default() },
        ..TokenRequest::default()
    };
    let accounts: Api<ServiceAccount> = Api::namespaced(server.admin_client().await, &ns);
    let requested = accounts.create_token_request(account, &PostParams::default(), &request).await;
    let token = requested.expect("TokenRequest").status.expect("a token").token;

    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("kube-token");
    std::fs::write(&token_file, &token).expect("write the token");
    let admin = Kubeconfig::read_from(server.admin_kubeconfig()).expect("the admin kubeconfig");
    let ca_data =
        admin.clusters[0].cluster.as_ref().and_then(|c| c.certificate_authority_data.clone()).expect("CA");
    let template =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/external/kubeconfig"))
            .expect("deploy/external/kubeconfig");
    let credential = "/run/credentials/parallax.service/kube-token";
    for placeholder in ["server: SERVER", "certificate-authority-data: CA_DATA", credential] {
        assert_eq!(template.matches(placeholder).count(), 1, "the template has `{placeholder}` once");
    }
    let filled = template
        .replace("server: SERVER", &format!("server: {}", server.url()))
        .replace("certificate-authority-data: CA_DATA", &format!("certificate-authority-data: {ca_data}"))
        .replace(credential, &token_file.display().to_string());
    let kubeconfig = Kubeconfig::from_yaml(&filled).expect("the filled-in template parses");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("config");
    let client = Client::try_from(config).expect("client");

    list_and_watch(Api::<Service>::all(client.clone()), "services").await;
    list_and_watch(
        Api::<DynamicObject>::all_with(client.clone(), &gateway_api("HTTPRoute", "httproutes")),
        "httproutes",
    )
    .await;
    assert_eq!(api_code(Api::<Secret>::all(client.clone()).list(&ListParams::default()).await), 403);
    assert_eq!(who(&client).await, format!("system:serviceaccount:{ns}:{account}"));
}
