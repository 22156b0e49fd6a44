//! Azure Load Balancer probes as cloud-provider-azure configures them
//! (`pkg/provider/azure_loadbalancer_healthprobe.go` `buildHealthProbeRulesForPort`,
//! `pkg/provider/azure_loadbalancer.go` `getExpectedLBRules`, defaults in `pkg/consts/consts.go`).
//!
//! Per port, most specific first: `port_{N}_health-probe_*`, then (protocol only) the port's
//! `appProtocol`, then the global `azure-load-balancer-health-probe-*`, then TCP on the nodePort,
//! 5 s, 2 probes. With `externalTrafficPolicy: Local` and no per-port probe port, every port
//! shares one HTTP probe of `healthCheckNodePort` `/healthz`.

use super::super::{Note, Origin};
use super::annotations::{bad_value, Reader};
use super::check::{Check, Part, Scheme};
use super::scope::Scope;

const SOURCE: &str = "cloud-provider-azure default (pkg/consts/consts.go)";
const GLOBAL: &str = "service.beta.kubernetes.io/azure-load-balancer-health-probe-";

/// The Azure Load Balancer's probe for this port, or none (`port_{N}_no_probe_rule`,
/// `port_{N}_no_lb_rule`: said in `comments`).
pub(super) fn probe(scope: &Scope<'_>, comments: &mut Vec<String>, notes: &mut Vec<Note>) -> Vec<Check> {
    let n = scope.port.port;
    for (param, why) in [
        ("no_lb_rule", "no load-balancing rule for this port: the load balancer sends it no traffic"),
        (
            "no_probe_rule",
            "no health probe for this port: Azure sends to every node, healthy or not (nothing to emulate)",
        ),
    ] {
        let key = format!("service.beta.kubernetes.io/port_{n}_{param}");
        if scope.ann(&key).is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            comments.push(format!("{key}: {why}"));
            return Vec::new();
        }
    }
    let custom_port = scope.ann(&per_port(n, "port")).is_some();
    let check = match (scope.etp_local(), scope.health_check_node_port()) {
        (true, Some(hcnp)) if !custom_port => local(scope, hcnp, notes),
        _ => custom(scope, comments, notes),
    };
    check.into_iter().collect()
}

/// `service.beta.kubernetes.io/port_{n}_health-probe_{param}`.
fn per_port(n: i32, param: &str) -> String {
    format!("service.beta.kubernetes.io/port_{n}_health-probe_{param}")
}

fn default(what: &str) -> Origin {
    Origin::ProviderDefault(format!("{SOURCE}: {what}"))
}

/// ETP Local: HTTP `healthCheckNodePort` `/healthz`, the interval and probe count read for the
/// health check node port's number (`getExpectedLBRules`).
fn local(scope: &Scope<'_>, hcnp: u16, notes: &mut Vec<Note>) -> Option<Check> {
    let why = Origin::ProviderDefault(
        "cloud-provider-azure: externalTrafficPolicy Local probes kube-proxy (azure_loadbalancer.go)"
            .to_owned(),
    );
    let (interval_ms, fall) = timing(scope, i32::from(hcnp), notes);
    Some(azure_check(
        scope,
        "the Azure Load Balancer's probe of this node: kube-proxy's healthCheckNodePort (ETP Local)",
        Part::new(Scheme::Http, why.clone()),
        Part::new(hcnp, scope.hcnp_origin()),
        Part::new("/healthz".to_owned(), why),
        interval_ms,
        fall,
    ))
}

/// The port's own probe.
fn custom(scope: &Scope<'_>, comments: &mut Vec<String>, notes: &mut Vec<Note>) -> Option<Check> {
    let n = scope.port.port;
    let port = probe_port(scope, notes)?;
    let scheme = protocol(scope, comments);
    let path_key = per_port(n, "request-path");
    let path_key = if scope.ann(&path_key).is_some() { path_key } else { format!("{GLOBAL}request-path") };
    let path =
        scope.ann.string(&path_key, Part::new("/".to_owned(), default("HealthProbeDefaultRequestPath")));
    let (interval_ms, fall) = timing(scope, n, notes);
    let about = "the Azure Load Balancer's probe of this node";
    Some(azure_check(scope, about, scheme, port, path, interval_ms, fall))
}

/// The probe port: `port_{N}_health-probe_port` (a port's name or number: its nodePort; another
/// number: itself), else the nodePort.
fn probe_port(scope: &Scope<'_>, notes: &mut Vec<Note>) -> Option<Part<u16>> {
    let key = per_port(scope.port.port, "port");
    let Some(raw) = scope.ann(&key) else { return scope.node_port_part() };
    let origin = Origin::Annotation(key.clone());
    let node_port =
        |p: &k8s_openapi::api::core::v1::ServicePort| p.node_port.and_then(|n| u16::try_from(n).ok());
    let resolved = match (scope.service_port(raw), raw.parse::<u16>()) {
        (Some(p), _) => node_port(p),
        (None, Ok(n)) => Some(n),
        (None, Err(_)) => None,
    };
    if let Some(n) = resolved {
        return Some(Part::new(n, origin));
    }
    let shown = scope.node_port.map(|p| p.to_string()).unwrap_or_default();
    let expected = "a port number, or the name of a port of the Service";
    notes.push(scope.note(bad_value(&key, raw, expected, &shown, Reader::Controller)));
    scope.node_port_part()
}

/// Per-port annotation, else `appProtocol`, else the global annotation, else TCP; anything but
/// TCP, HTTP, HTTPS falls back to TCP, as the controller does.
fn protocol(scope: &Scope<'_>, comments: &mut Vec<String>) -> Part<Scheme> {
    let key = per_port(scope.port.port, "protocol");
    let global = format!("{GLOBAL}protocol");
    let (raw, origin) = if let Some(raw) = scope.ann(&key) {
        (raw, Origin::Annotation(key))
    } else if let Some(raw) = scope.app_protocol() {
        (raw, scope.port_field("appProtocol"))
    } else if let Some(raw) = scope.ann(&global) {
        (raw, Origin::Annotation(global))
    } else {
        return Part::new(Scheme::Tcp, default("TCP"));
    };
    match Scheme::parse(raw).filter(|s| *s != Scheme::Tls) {
        Some(scheme) => {
            if matches!(&origin, Origin::Field(_)) && scheme.is_http() {
                comments.push(format!(
                    "appProtocol {raw} makes the Azure probe {} / on the nodePort (cloud-provider-azure >= 1.24; \
                     AKS#3210): a backend answering 404 there is marked down on every node",
                    raw.to_ascii_uppercase()
                ));
            }
            Part::new(scheme, origin)
        }
        None => {
            comments.push(format!(
                "{origin} is {raw:?}, not tcp, http or https: the controller falls back to a TCP probe"
            ));
            Part::new(Scheme::Tcp, origin)
        }
    }
}

/// The interval (at least 5 s, in milliseconds) and number of probes (at least 2), per port then
/// global; their product must stay below 120 s or the controller rejects the Service.
fn timing(scope: &Scope<'_>, n: i32, notes: &mut Vec<Note>) -> (Part<u64>, Part<u64>) {
    let interval_s =
        first_of(scope, n, "interval", Part::new(5, default("HealthProbeDefaultProbeInterval")), 5, notes);
    let count =
        first_of(scope, n, "num-of-probe", Part::new(2, default("HealthProbeDefaultNumOfProbe")), 2, notes);
    if interval_s.value * count.value < 120 {
        return (Part::new(interval_s.value * 1000, interval_s.origin), count);
    }
    notes.push(scope.note(format!(
        "Azure health probe interval {} ({}) × {} probes ({}) reaches 2m: the controller rejects the \
         Service; parallax assumes the defaults 5s × 2",
        crate::duration::Human(std::time::Duration::from_secs(interval_s.value)),
        interval_s.origin,
        count.value,
        count.origin
    )));
    let interval = Part::new(5000, default("HealthProbeDefaultProbeInterval"));
    (interval, Part::new(2, default("HealthProbeDefaultNumOfProbe")))
}

/// `port_{n}_health-probe_{param}`, else the global `azure-load-balancer-health-probe-{param}`:
/// a whole number of at least `min`, else `default`.
fn first_of(
    scope: &Scope<'_>,
    n: i32,
    param: &str,
    default: Part<u64>,
    min: u64,
    notes: &mut Vec<Note>,
) -> Part<u64> {
    let key = per_port(n, param);
    let key = if scope.ann(&key).is_some() { key } else { format!("{GLOBAL}{param}") };
    let expected = format!("a whole number of at least {min}");
    let shown = default.value.to_string();
    scope
        .ann
        .parsed(&key, default, &expected, &shown, notes, |raw| raw.parse::<u64>().ok().filter(|v| *v >= min))
}

fn azure_check(
    scope: &Scope<'_>,
    about: &str,
    scheme: Part<Scheme>,
    port: Part<u16>,
    path: Part<String>,
    interval_ms: Part<u64>,
    fall: Part<u64>,
) -> Check {
    let timeout = Part::new(interval_ms.value, default("no probe timeout setting: the interval"));
    Check {
        name: "azure-lb".to_owned(),
        about: about.to_owned(),
        profile: Part::new(
            "azure-lb".to_owned(),
            Origin::Parallax("the azure-lb profile emulates this checker".to_owned()),
        ),
        scheme,
        address: scope.node_ip.clone(),
        port,
        path,
        interval_ms,
        timeout_ms: timeout,
        // The probe threshold counts both ways: that many failures take a node out, that many
        // successes bring it back (ARM ProbePropertiesFormat.probeThreshold).
        rise: fall.clone(),
        fall,
        status: Part::new(
            "200".to_owned(),
            Origin::ProviderDefault("Azure Load Balancer: HTTP probes pass on 200 only".to_owned()),
        ),
        host: None,
        pod: None,
    }
}
