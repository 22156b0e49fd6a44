//! GKE: the L4 load balancers' health checks (ingress-gce `pkg/l4/healthchecks/healthchecksl4.go`:
//! no annotations, kube-proxy's ports), and GKE Ingress backends' (ingress-gce
//! `pkg/translator/healthchecks.go` defaults and `ApplyProbeSettingsToHC`,
//! `pkg/controller/translator/translator.go` `getHTTPProbe`, BackendConfig `spec.healthCheck`).

use k8s_openapi::api::core::v1::{Container, Pod, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::super::super::cluster::{labels, BackendConfigHealthCheck};
use super::super::{ns, Note, Origin};
use super::check::{Check, Part, Scheme};
use super::scope::{Endpoint, Scope};

const L4: &str = "ingress-gce default (pkg/l4/healthchecks/healthchecksl4.go)";
const L7: &str = "ingress-gce default (pkg/translator/healthchecks.go)";

/// The GKE L4 load balancer's check of this node: kube-proxy's `healthCheckNodePort` (ETP
/// Local: 3 s / 1 s, 1 / 2), else the shared check of kube-proxy's `:10256/healthz` (8 s / 1 s,
/// 1 / 3).
pub(super) fn l4(scope: &Scope<'_>) -> Vec<Check> {
    let default = || Origin::ProviderDefault(L4.to_owned());
    let (about, port, interval, fall) = match scope.health_check_node_port() {
        Some(hcnp) => (
            "the GKE L4 load balancer's health check of this node: kube-proxy's healthCheckNodePort (ETP Local)",
            Part::new(hcnp, scope.hcnp_origin()),
            3,
            2,
        ),
        None => (
            "the GKE L4 load balancer's shared health check of this node: kube-proxy's /healthz (ETP Cluster)",
            Part::new(10256, default()),
            8,
            3,
        ),
    };
    vec![Check {
        name: "gcp-l4".to_owned(),
        about: about.to_owned(),
        profile: profile(),
        scheme: Part::new(Scheme::Http, default()),
        address: scope.node_ip.clone(),
        port,
        path: Part::new("/healthz".to_owned(), default()),
        interval_ms: Part::new(interval * 1000, default()),
        timeout_ms: Part::new(1000, default()),
        rise: Part::new(1, default()),
        fall: Part::new(fall, default()),
        status: only_200(),
        host: None,
        pod: None,
    }]
}

/// GCP health checks pass on 200 only, whatever the kind of check.
fn only_200() -> Part<String> {
    Part::new("200".to_owned(), Origin::ProviderDefault("GCP health checks pass on 200 only".to_owned()))
}

fn profile() -> Part<String> {
    Part::new("gcp".to_owned(), Origin::Parallax("the gcp profile emulates GoogleHC".to_owned()))
}

/// The GKE Ingress backend service's check for this Service port: of this node's nodePort
/// (instance groups), or of each local pod (NEGs, container-native load balancing).
pub(super) fn ingress(
    scope: &Scope<'_>,
    internal: bool,
    comments: &mut Vec<String>,
    notes: &mut Vec<Note>,
) -> Vec<Check> {
    let neg = internal || neg_enabled(scope);
    let mut check = l7_default(scope, neg);
    let source = match backend_config(scope) {
        Some((name, hc)) => {
            apply_backend_config(&mut check, &name, &hc);
            format!("BackendConfig {}/{name} spec.healthCheck", ns(scope.service))
        }
        None => match readiness_probe(scope, check.scheme.value) {
            Some((pod, container, probe)) => apply_probe(&mut check, &pod, &container, &probe, neg),
            None => "the default / (no BackendConfig healthCheck, no matching readiness probe)".to_owned(),
        },
    };
    comments.push(format!("gke-ingress health check from {source}"));
    if !neg {
        if scope.node_port.is_none() {
            notes.push(scope.note(format!(
                "a GKE Ingress routes to port {} with instance groups, but it has no nodePort: make the Service \
                 NodePort or enable NEGs (cloud.google.com/neg: '{{\"ingress\": true}}')",
                scope.label
            )));
            return Vec::new();
        }
        return vec![check];
    }
    comments.push("NEG backends: the GKE Ingress checks each pod directly, not the node".to_owned());
    scope.local_endpoints().iter().filter_map(|e| pod_check(&check, e)).collect()
}

fn pod_check(check: &Check, endpoint: &Endpoint) -> Option<Check> {
    let mut pod = check.clone();
    pod.address = Part::new(endpoint.ip, Origin::Field(endpoint.slice.clone()));
    pod.pod = Some(endpoint.clone());
    let fixed = matches!(&check.port.origin, Origin::Field(f) if f.starts_with("BackendConfig"));
    if !fixed {
        pod.port = Part::new(endpoint.port?, Origin::Field(format!("{} port", endpoint.slice)));
    }
    Some(pod)
}

/// ingress-gce's default check: instance groups 60 s / 60 s, 1 / 10; NEGs 15 s / 15 s, 1 / 2;
/// HTTP `/` unless `cloud.google.com/app-protocols` says HTTPS or HTTP2 for the port.
fn l7_default(scope: &Scope<'_>, neg: bool) -> Check {
    let default = || Origin::ProviderDefault(L7.to_owned());
    let (interval, fall) = if neg { (15, 2) } else { (60, 10) };
    let port = scope.node_port_part().unwrap_or_else(|| Part::new(0, default()));
    Check {
        name: "gke-ingress".to_owned(),
        about: if neg {
            "the GKE Ingress health check of a local pod (NEG)"
        } else {
            "the GKE Ingress health check of this node (instance group)"
        }
        .to_owned(),
        profile: profile(),
        scheme: app_protocol(scope).unwrap_or_else(|| Part::new(Scheme::Http, default())),
        address: scope.node_ip.clone(),
        port,
        path: Part::new("/".to_owned(), default()),
        interval_ms: Part::new(interval * 1000, default()),
        timeout_ms: Part::new(interval * 1000, default()),
        rise: Part::new(1, default()),
        fall: Part::new(fall, default()),
        status: only_200(),
        host: None,
        pod: None,
    }
}

/// `cloud.google.com/neg` with `"ingress": true`.
fn neg_enabled(scope: &Scope<'_>) -> bool {
    let Some(raw) = scope.ann("cloud.google.com/neg") else { return false };
    serde_json::from_str::<serde_json::Value>(raw).ok().and_then(|v| v.get("ingress")?.as_bool())
        == Some(true)
}

/// The port's protocol from `cloud.google.com/app-protocols` (`{"https": "HTTPS"}`); HTTP2 is
/// checked as HTTPS (parallax's `gcp` profile has no HTTP/2 check).
fn app_protocol(scope: &Scope<'_>) -> Option<Part<Scheme>> {
    let key = ["cloud.google.com/app-protocols", "service.alpha.kubernetes.io/app-protocols"]
        .into_iter()
        .find(|k| scope.ann(k).is_some())?;
    let map: serde_json::Value = serde_json::from_str(scope.ann(key)?).ok()?;
    let name = scope.port.name.as_deref()?;
    let scheme = match map.get(name)?.as_str()? {
        "HTTPS" | "HTTP2" => Scheme::Https,
        _ => Scheme::Http,
    };
    Some(Part::new(scheme, Origin::Annotation(key.to_owned())))
}

/// The BackendConfig named for this port by `cloud.google.com/backend-config` (`ports` by name or
/// number first, then `default`), if it exists and has a health check.
fn backend_config(scope: &Scope<'_>) -> Option<(String, BackendConfigHealthCheck)> {
    let key = ["cloud.google.com/backend-config", "beta.cloud.google.com/backend-config"]
        .into_iter()
        .find(|k| scope.ann(k).is_some())?;
    let map: serde_json::Value = serde_json::from_str(scope.ann(key)?).ok()?;
    let by_port = map.get("ports").and_then(|ports| {
        let by_name = scope.port.name.as_deref().and_then(|n| ports.get(n));
        by_name.or_else(|| ports.get(scope.port.port.to_string()))
    });
    let name = by_port.or_else(|| map.get("default"))?.as_str()?.to_owned();
    let found = scope.ctx.cluster.backend_configs.iter().find(|bc| {
        bc.metadata.name.as_deref() == Some(name.as_str())
            && bc.metadata.namespace.as_deref().unwrap_or("default") == ns(scope.service)
    })?;
    Some((name, found.spec.health_check.clone()?))
}

fn apply_backend_config(check: &mut Check, name: &str, hc: &BackendConfigHealthCheck) {
    let origin = |field: &str| Origin::Field(format!("BackendConfig {name} spec.healthCheck.{field}"));
    let secs = |v: Option<i64>| v.and_then(|s| u64::try_from(s).ok()).filter(|s| *s > 0);
    if let Some(s) = secs(hc.check_interval_sec) {
        check.interval_ms = Part::new(s * 1000, origin("checkIntervalSec"));
    }
    if let Some(s) = secs(hc.timeout_sec) {
        check.timeout_ms = Part::new(s * 1000, origin("timeoutSec"));
    }
    if let Some(n) = secs(hc.healthy_threshold) {
        check.rise = Part::new(n, origin("healthyThreshold"));
    }
    if let Some(n) = secs(hc.unhealthy_threshold) {
        check.fall = Part::new(n, origin("unhealthyThreshold"));
    }
    if let Some(scheme) =
        hc.type_.as_deref().and_then(|t| if t == "HTTP2" { Some(Scheme::Https) } else { Scheme::parse(t) })
    {
        check.scheme = Part::new(scheme, origin("type"));
    }
    if let Some(path) = &hc.request_path {
        check.path = Part::new(path.clone(), origin("requestPath"));
    }
    if let Some(port) = hc.port.and_then(|p| u16::try_from(p).ok()) {
        check.port = Part::new(port, origin("port"));
    }
}

/// The first pod (by name) behind the Service with a container serving the port's targetPort
/// whose readiness probe is a plain `httpGet` of the same port and scheme (`getHTTPProbe`).
fn readiness_probe(scope: &Scope<'_>, scheme: Scheme) -> Option<(String, String, Probe)> {
    let selector = scope.service.spec.as_ref()?.selector.as_ref().filter(|s| !s.is_empty())?;
    let mut pods: Vec<&Pod> = scope
        .ctx
        .cluster
        .pods
        .iter()
        .filter(|p| p.metadata.namespace.as_deref().unwrap_or("default") == ns(scope.service))
        .filter(|p| selector.iter().all(|(k, v)| labels(&p.metadata).get(k) == Some(v)))
        .collect();
    pods.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let target = scope.port.target_port.clone().unwrap_or(IntOrString::Int(scope.port.port));
    let wanted = if scheme == Scheme::Https { "HTTPS" } else { "HTTP" };
    pods.into_iter().find_map(|pod| {
        let containers = &pod.spec.as_ref()?.containers;
        let container = containers.iter().find(|c| serves(c, &target, wanted))?;
        Some((
            pod.metadata.name.clone().unwrap_or_default(),
            container.name.clone(),
            container.readiness_probe.clone()?,
        ))
    })
}

/// Whether `c` has a port matching `target` and a simple HTTP readiness probe of that port.
fn serves(c: &Container, target: &IntOrString, scheme: &str) -> bool {
    let Some(get) = c.readiness_probe.as_ref().and_then(|p| p.http_get.as_ref()) else { return false };
    let headers = get.http_headers.as_deref().unwrap_or(&[]);
    let simple = get.host.as_deref().unwrap_or("").is_empty()
        && headers.iter().all(|h| h.name == "Host")
        && headers.len() <= 1;
    if !simple || get.scheme.as_deref().unwrap_or("HTTP") != scheme {
        return false;
    }
    c.ports.as_deref().unwrap_or(&[]).iter().any(|p| {
        let serves_target = match target {
            IntOrString::Int(n) => p.container_port == *n,
            IntOrString::String(name) => p.name.as_deref() == Some(name.as_str()),
        };
        let probed = match &get.port {
            IntOrString::Int(n) => p.container_port == *n,
            IntOrString::String(name) => p.name.as_deref() == Some(name.as_str()),
        };
        serves_target && probed
    })
}

/// The readiness probe's path, Host, timeout and period (plus 60 s for instance groups).
fn apply_probe(check: &mut Check, pod: &str, container: &str, probe: &Probe, neg: bool) -> String {
    let field = |f: &str| Origin::Field(format!("Pod {pod} container {container} readinessProbe.{f}"));
    let Some(get) = &probe.http_get else { return "the default /".to_owned() };
    let path = get.path.clone().unwrap_or_default();
    let path = if path.starts_with('/') { path } else { format!("/{path}") };
    check.path = Part::new(path, field("httpGet.path"));
    if let Some(host) = get.http_headers.as_deref().unwrap_or(&[]).iter().find(|h| h.name == "Host") {
        check.host = Some(Part::new(host.value.clone(), field("httpGet.httpHeaders[Host]")));
    }
    // The API server defaults periodSeconds to 10 and timeoutSeconds to 1.
    let period = probe.period_seconds.and_then(|s| u64::try_from(s).ok()).unwrap_or(10);
    let timeout = probe.timeout_seconds.and_then(|s| u64::try_from(s).ok()).unwrap_or(1);
    check.timeout_ms = Part::new(timeout * 1000, field("timeoutSeconds"));
    let (interval, why) =
        if neg { (period, "periodSeconds") } else { (period + 60, "periodSeconds + 60 s (instance groups)") };
    check.interval_ms = Part::new(interval * 1000, field(why));
    format!("the readiness probe of Pod {pod} container {container}")
}
