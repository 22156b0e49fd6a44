//! AWS: the Load Balancer Controller's NLB target group (`pkg/service/model_builder.go` defaults,
//! `pkg/service/model_build_target_group.go` annotations), its ALB target groups for Ingresses
//! (`pkg/ingress/model_builder.go`, `pkg/ingress/model_build_target_group.go`), and the legacy
//! in-tree provider's Classic ELB and NLB (cloud-provider-aws `pkg/providers/v1/aws.go`,
//! `aws_loadbalancer.go`).

use k8s_openapi::api::networking::v1::Ingress;

use super::super::{Note, Origin, Provider};
use super::annotations::{bad_value, Annotations, Reader};
use super::check::{Check, Part, Scheme};
use super::scope::{Endpoint, Scope};

/// The `loadBalancerClass` the AWS Load Balancer Controller serves.
pub(super) const LBC_CLASS: &str = "service.k8s.aws/nlb";
const TYPE: &str = "service.beta.kubernetes.io/aws-load-balancer-type";
const NLB_TARGET_TYPE: &str = "service.beta.kubernetes.io/aws-load-balancer-nlb-target-type";
const BACKEND_PROTOCOL: &str = "service.beta.kubernetes.io/aws-load-balancer-backend-protocol";
const ALB_TARGET_TYPE: &str = "alb.ingress.kubernetes.io/target-type";
const ALB_BACKEND_PROTOCOL: &str = "alb.ingress.kubernetes.io/backend-protocol";
const ALB_PROTOCOL_VERSION: &str = "alb.ingress.kubernetes.io/backend-protocol-version";

/// The Service's AWS controller: the Load Balancer Controller when `loadBalancerClass` is
/// `service.k8s.aws/nlb` or `aws-load-balancer-type` is `external`/`nlb-ip`, else the legacy
/// in-tree provider.
pub(super) fn flavour(scope: &Scope<'_>) -> Provider {
    let lb_type = scope.ann(TYPE).unwrap_or("");
    if scope.load_balancer_class() == Some(LBC_CLASS) || matches!(lb_type, "external" | "nlb-ip") {
        Provider::AwsLbc
    } else {
        Provider::AwsLegacy
    }
}

/// Why [`flavour`] chose what it chose.
pub(super) fn flavour_reason(scope: &Scope<'_>) -> String {
    match (scope.load_balancer_class(), scope.ann(TYPE)) {
        (Some(LBC_CLASS), _) => format!("loadBalancerClass {LBC_CLASS}"),
        (_, Some(t @ ("external" | "nlb-ip"))) => format!("{TYPE} is {t}"),
        (_, Some("nlb")) => format!("{TYPE} is nlb (the in-tree provider's NLB)"),
        (_, Some(other)) => format!("{TYPE} is {other:?}: the in-tree provider's Classic ELB"),
        (_, None) => format!("no {TYPE}: the in-tree provider's Classic ELB"),
    }
}

/// Whether the Load Balancer Controller registers pods (ip targets) rather than nodes.
pub(super) fn lbc_targets_pods(scope: &Scope<'_>) -> bool {
    scope.ann(TYPE) == Some("nlb-ip") || scope.ann(NLB_TARGET_TYPE) == Some("ip")
}

/// What a configured `healthcheck-port` of `traffic-port` or nothing means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PortDefault {
    /// The port traffic goes to: the nodePort (instance) or the pod's port (ip).
    Traffic,
    /// `spec.healthCheckNodePort`.
    HealthCheckNode,
    /// The Classic ELB's one check for all listeners: the first port's nodePort.
    FirstNode,
}

/// The annotation names one controller reads.
struct Keys {
    protocol: &'static str,
    port: &'static str,
    path: &'static str,
    interval: &'static str,
    timeout: &'static str,
    healthy: &'static str,
    unhealthy: &'static str,
    success: Option<&'static str>,
}

const SERVICE_KEYS: Keys = Keys {
    protocol: "service.beta.kubernetes.io/aws-load-balancer-healthcheck-protocol",
    port: "service.beta.kubernetes.io/aws-load-balancer-healthcheck-port",
    path: "service.beta.kubernetes.io/aws-load-balancer-healthcheck-path",
    interval: "service.beta.kubernetes.io/aws-load-balancer-healthcheck-interval",
    timeout: "service.beta.kubernetes.io/aws-load-balancer-healthcheck-timeout",
    healthy: "service.beta.kubernetes.io/aws-load-balancer-healthcheck-healthy-threshold",
    unhealthy: "service.beta.kubernetes.io/aws-load-balancer-healthcheck-unhealthy-threshold",
    success: Some("service.beta.kubernetes.io/aws-load-balancer-healthcheck-success-codes"),
};

const INGRESS_KEYS: Keys = Keys {
    protocol: "alb.ingress.kubernetes.io/healthcheck-protocol",
    port: "alb.ingress.kubernetes.io/healthcheck-port",
    path: "alb.ingress.kubernetes.io/healthcheck-path",
    interval: "alb.ingress.kubernetes.io/healthcheck-interval-seconds",
    timeout: "alb.ingress.kubernetes.io/healthcheck-timeout-seconds",
    healthy: "alb.ingress.kubernetes.io/healthy-threshold-count",
    unhealthy: "alb.ingress.kubernetes.io/unhealthy-threshold-count",
    success: Some("alb.ingress.kubernetes.io/success-codes"),
};

/// One controller's health check rules: defaults, the annotations it reads, what it accepts.
struct Rules {
    view: &'static str,
    about: &'static str,
    profile: &'static str,
    source: &'static str,
    scheme: Scheme,
    allowed: &'static [Scheme],
    port: PortDefault,
    traffic_port: PortDefault,
    named_ports: bool,
    path: &'static str,
    interval_s: u64,
    timeout_s: u64,
    rise: u64,
    fall: u64,
    status: &'static str,
    keys: Keys,
}

const LBC: &str = "aws-load-balancer-controller default (pkg/service/model_builder.go)";
const LBC_ALB: &str = "aws-load-balancer-controller default (pkg/ingress/model_builder.go)";
const LEGACY: &str = "cloud-provider-aws default (pkg/providers/v1/aws_loadbalancer.go, aws.go)";
const NLB_SCHEMES: &[Scheme] = &[Scheme::Tcp, Scheme::Http, Scheme::Https];

const LBC_NLB: Rules = Rules {
    view: "aws-nlb",
    about: "the NLB's health check (AWS Load Balancer Controller target group)",
    profile: "aws-nlb",
    source: LBC,
    scheme: Scheme::Tcp,
    allowed: NLB_SCHEMES,
    port: PortDefault::Traffic,
    traffic_port: PortDefault::Traffic,
    named_ports: true,
    path: "/",
    interval_s: 10,
    timeout_s: 10,
    rise: 3,
    fall: 3,
    status: "200-399",
    keys: SERVICE_KEYS,
};

const LBC_NLB_LOCAL: Rules = Rules {
    about:
        "the NLB's health check of this node: kube-proxy's healthCheckNodePort (ETP Local, instance targets)",
    scheme: Scheme::Http,
    port: PortDefault::HealthCheckNode,
    path: "/healthz",
    interval_s: 10,
    timeout_s: 6,
    rise: 2,
    fall: 2,
    ..LBC_NLB
};

const LEGACY_NLB: Rules = Rules {
    about: "the NLB's health check (in-tree cloud provider)",
    source: LEGACY,
    interval_s: 30,
    timeout_s: 10,
    rise: 3,
    fall: 3,
    named_ports: false,
    keys: Keys { success: None, ..SERVICE_KEYS },
    ..LBC_NLB
};

const LEGACY_NLB_LOCAL: Rules = Rules {
    about: "the NLB's health check of this node: kube-proxy's healthCheckNodePort (ETP Local)",
    scheme: Scheme::Http,
    port: PortDefault::HealthCheckNode,
    path: "/healthz",
    interval_s: 10,
    timeout_s: 10,
    rise: 2,
    fall: 2,
    ..LEGACY_NLB
};

const CLB: Rules = Rules {
    view: "aws-clb",
    about: "the Classic ELB's health check of this node (one for all its listeners)",
    profile: "aws-clb",
    source: LEGACY,
    scheme: Scheme::Tcp,
    allowed: &[Scheme::Tcp, Scheme::Tls, Scheme::Http, Scheme::Https],
    port: PortDefault::FirstNode,
    traffic_port: PortDefault::FirstNode,
    named_ports: false,
    path: "/",
    interval_s: 10,
    timeout_s: 5,
    rise: 2,
    fall: 6,
    status: "200",
    keys: Keys { success: None, ..SERVICE_KEYS },
};

const CLB_LOCAL: Rules = Rules {
    about: "the Classic ELB's health check of this node: kube-proxy's healthCheckNodePort (ETP Local)",
    scheme: Scheme::Http,
    port: PortDefault::HealthCheckNode,
    path: "/healthz",
    ..CLB
};

const ALB: Rules = Rules {
    view: "aws-alb",
    about: "the ALB's health check (AWS Load Balancer Controller, Ingress target group)",
    profile: "aws-alb",
    source: LBC_ALB,
    scheme: Scheme::Http,
    allowed: &[Scheme::Http, Scheme::Https],
    port: PortDefault::Traffic,
    traffic_port: PortDefault::Traffic,
    named_ports: true,
    path: "/",
    interval_s: 15,
    timeout_s: 5,
    rise: 2,
    fall: 2,
    status: "200",
    keys: INGRESS_KEYS,
};

/// Where a check goes: this node, or one local pod (ip targets).
#[derive(Clone, Copy)]
enum Dest<'e> {
    Node,
    Pod(&'e Endpoint),
}

/// The AWS Load Balancer Controller's NLB target group check: of this node (instance targets),
/// or of each local pod (ip targets).
pub(super) fn lbc_nlb(scope: &Scope<'_>, comments: &mut Vec<String>, notes: &mut Vec<Note>) -> Vec<Check> {
    let ann = scope.ann.clone();
    if lbc_targets_pods(scope) {
        let endpoints = pod_targets(scope, "NLB", comments, notes);
        return endpoints
            .iter()
            .filter_map(|e| build(scope, &ann, &LBC_NLB, Dest::Pod(e), None, notes))
            .collect();
    }
    let rules = if scope.etp_local() { &LBC_NLB_LOCAL } else { &LBC_NLB };
    build(scope, &ann, rules, Dest::Node, None, notes).into_iter().collect()
}

/// The legacy in-tree provider's check: the NLB's (`aws-load-balancer-type: nlb`) or the Classic
/// ELB's (one check on the first port's nodePort, whatever the port).
pub(super) fn legacy(scope: &Scope<'_>, comments: &mut Vec<String>, notes: &mut Vec<Note>) -> Vec<Check> {
    let ann = scope.ann.clone();
    let rules = match (scope.ann(TYPE) == Some("nlb"), scope.etp_local()) {
        (true, true) => &LEGACY_NLB_LOCAL,
        (true, false) => &LEGACY_NLB,
        (false, true) => &CLB_LOCAL,
        (false, false) => &CLB,
    };
    if rules.view == "aws-clb" {
        clb_comment(scope, comments);
    }
    let scheme = clb_backend_scheme(scope, rules);
    build(scope, &ann, rules, Dest::Node, scheme, notes).into_iter().collect()
}

/// The ALB target group check of `ingress` for this Service port.
pub(super) fn alb(
    scope: &Scope<'_>,
    ingress: &Ingress,
    comments: &mut Vec<String>,
    notes: &mut Vec<Note>,
) -> Vec<Check> {
    let ann = Annotations::merged(scope.service, ingress);
    let about = format!("Ingress {}", ingress.metadata.name.as_deref().unwrap_or(""));
    if ann.get(ALB_PROTOCOL_VERSION).is_some_and(|v| v.eq_ignore_ascii_case("GRPC")) {
        notes.push(scope.note(format!(
            "{about} routes to port {} as a gRPC target group (health check /AWS.ALB/healthcheck, gRPC code 12): \
             not emulated; add a grpc:// checker view by hand",
            scope.label
        )));
        return Vec::new();
    }
    let https = ann.get(ALB_BACKEND_PROTOCOL).is_some_and(|p| p.eq_ignore_ascii_case("HTTPS"));
    let scheme = https.then(|| Part::new(Scheme::Https, Origin::Annotation(ALB_BACKEND_PROTOCOL.to_owned())));
    if ann.get(ALB_TARGET_TYPE) == Some("ip") {
        let endpoints = pod_targets(scope, "ALB", comments, notes);
        return endpoints
            .iter()
            .filter_map(|e| build(scope, &ann, &ALB, Dest::Pod(e), scheme.clone(), notes))
            .collect();
    }
    if scope.node_port.is_none() {
        notes.push(scope.note(format!(
            "{about} routes to port {} with instance targets, but the port has no nodePort (type ClusterIP): the \
             controller rejects it; make the Service NodePort or set {ALB_TARGET_TYPE}: ip",
            scope.label
        )));
        return Vec::new();
    }
    build(scope, &ann, &ALB, Dest::Node, scheme, notes).into_iter().collect()
}

fn clb_comment(scope: &Scope<'_>, comments: &mut Vec<String>) {
    let first = scope.service_ports().iter().find(|p| p.node_port.is_some());
    if let Some(first) = first.filter(|p| p.node_port.and_then(|n| u16::try_from(n).ok()) != scope.node_port)
    {
        comments.push(format!(
            "the Classic ELB has one health check for all its listeners, on the first port's nodePort ({}): \
             port {} is not checked on its own",
            first.node_port.unwrap_or_default(),
            scope.label
        ));
    }
}

/// The Classic ELB checks `SSL` when the backend protocol is `https` or `ssl` (ETP Cluster).
fn clb_backend_scheme(scope: &Scope<'_>, rules: &Rules) -> Option<Part<Scheme>> {
    let backend = scope.ann(BACKEND_PROTOCOL)?.to_ascii_lowercase();
    let tls = rules.view == "aws-clb"
        && rules.port == PortDefault::FirstNode
        && matches!(backend.as_str(), "https" | "ssl");
    tls.then(|| Part::new(Scheme::Tls, Origin::Annotation(BACKEND_PROTOCOL.to_owned())))
}

/// The local pods an ip-target load balancer checks, said in `comments`.
fn pod_targets(
    scope: &Scope<'_>,
    lb: &str,
    comments: &mut Vec<String>,
    notes: &mut Vec<Note>,
) -> Vec<Endpoint> {
    if scope.ctx.options.node_name.is_none() {
        notes.push(scope.note(format!(
            "ip targets: the {lb} checks pods, and which pods are on this node needs its name: set NODE_NAME \
             (the downward API's spec.nodeName) or --node-name"
        )));
        return Vec::new();
    }
    let endpoints = scope.local_endpoints();
    comments.push(if endpoints.is_empty() {
        format!("ip targets: the {lb} checks pods, and no ready endpoint of this Service is on this node")
    } else {
        format!("ip targets: the {lb} checks each pod directly (EndpointSlices, endpoints on this node), not the node")
    });
    endpoints
}

/// One check by `rules`, read from `ann`, to `dest`; `scheme` replaces the rules' default.
fn build(
    scope: &Scope<'_>,
    ann: &Annotations<'_>,
    rules: &Rules,
    dest: Dest<'_>,
    scheme: Option<Part<Scheme>>,
    notes: &mut Vec<Note>,
) -> Option<Check> {
    let default = || Origin::ProviderDefault(rules.source.to_owned());
    let keys = &rules.keys;
    let scheme = scheme.unwrap_or_else(|| Part::new(rules.scheme, default()));
    let scheme = read_scheme(ann, keys.protocol, scheme, rules.allowed, notes);
    let (address, pod) = match dest {
        Dest::Node => (scope.node_ip.clone(), None),
        Dest::Pod(e) => (Part::new(e.ip, Origin::Field(e.slice.clone())), Some(e.clone())),
    };
    let port = read_port(scope, ann, rules, dest, notes)?;
    let secs = |s: u64| Part::new(s * 1000, default());
    let status = Part::new(rules.status.to_owned(), default());
    Some(Check {
        name: rules.view.to_owned(),
        about: rules.about.to_owned(),
        profile: Part::new(
            rules.profile.to_owned(),
            Origin::Parallax(format!("the {} profile emulates this checker", rules.profile)),
        ),
        scheme,
        address,
        port,
        path: ann.string(keys.path, Part::new(rules.path.to_owned(), default())),
        interval_ms: ann.seconds(keys.interval, secs(rules.interval_s), notes),
        timeout_ms: ann.seconds(keys.timeout, secs(rules.timeout_s), notes),
        rise: ann.count(keys.healthy, Part::new(rules.rise, default()), notes),
        fall: ann.count(keys.unhealthy, Part::new(rules.fall, default()), notes),
        status: match keys.success {
            Some(key) => ann.parsed(
                key,
                status,
                "HTTP codes (200, 200-399, 200,202)",
                rules.status,
                notes,
                status_codes,
            ),
            None => status,
        },
        host: None,
        pod,
    })
}

/// HTTP status codes as AWS matchers take them: `200`, `200-399`, `200,202`.
fn status_codes(raw: &str) -> Option<String> {
    let ok = !raw.is_empty()
        && raw.split(',').all(|item| {
            let item = item.trim();
            let mut bounds = item.split('-');
            bounds.all(|b| b.len() == 3 && b.chars().all(|c| c.is_ascii_digit()))
                && item.split('-').count() <= 2
        });
    ok.then(|| raw.replace(' ', ""))
}

fn read_scheme(
    ann: &Annotations<'_>,
    key: &str,
    default: Part<Scheme>,
    allowed: &[Scheme],
    notes: &mut Vec<Note>,
) -> Part<Scheme> {
    let names: Vec<String> = allowed
        .iter()
        .map(|s| if *s == Scheme::Tls { "SSL".to_owned() } else { s.as_str().to_ascii_uppercase() })
        .collect();
    let shown = default.value.as_str().to_ascii_uppercase();
    let expected = names.join(", ");
    ann.parsed(key, default, &expected, &shown, notes, |raw| {
        Scheme::parse(raw).filter(|s| allowed.contains(s))
    })
}

/// The port checked: the annotation (`traffic-port`, a number, or a Service port's name), else the
/// rules' default, resolved for `dest`.
fn read_port(
    scope: &Scope<'_>,
    ann: &Annotations<'_>,
    rules: &Rules,
    dest: Dest<'_>,
    notes: &mut Vec<Note>,
) -> Option<Part<u16>> {
    let fallback =
        default_port(scope, rules.port, dest, Origin::ProviderDefault(rules.source.to_owned()), notes);
    let Some(raw) = ann.get(rules.keys.port).filter(|r| !r.is_empty()) else { return fallback };
    let origin = Origin::Annotation(rules.keys.port.to_owned());
    if raw == "traffic-port" {
        return default_port(scope, rules.traffic_port, dest, origin, notes);
    }
    if let Ok(n) = raw.parse::<u16>() {
        return Some(Part::new(n, origin));
    }
    let named = scope.service_port(raw).filter(|_| rules.named_ports);
    let resolved = named.and_then(|p| match dest {
        Dest::Node => p.node_port.and_then(|n| u16::try_from(n).ok()),
        Dest::Pod(_) => Scope::numeric_target_port(p),
    });
    if let Some(n) = resolved {
        return Some(Part::new(n, origin));
    }
    let expected = if rules.named_ports {
        "traffic-port, a port number, or the name of a port of the Service with a numeric target"
    } else {
        "traffic-port or a port number"
    };
    let shown = fallback.as_ref().map(|p| p.value.to_string()).unwrap_or_default();
    notes.push(scope.note(bad_value(rules.keys.port, raw, expected, &shown, Reader::Controller)));
    fallback
}

fn default_port(
    scope: &Scope<'_>,
    default: PortDefault,
    dest: Dest<'_>,
    origin: Origin,
    notes: &mut Vec<Note>,
) -> Option<Part<u16>> {
    let via = |field: Origin| match &origin {
        Origin::ProviderDefault(_) => field,
        _ => origin.clone(),
    };
    match (default, dest) {
        (PortDefault::Traffic, Dest::Node) => {
            scope.node_port_part().map(|p| Part::new(p.value, via(p.origin)))
        }
        (PortDefault::Traffic, Dest::Pod(e)) => e
            .port
            .map(|p| Part::new(p, via(Origin::Field(format!("{} ports[{}].port", e.slice, scope.label))))),
        (PortDefault::HealthCheckNode, _) => {
            let hcnp = scope.health_check_node_port();
            if hcnp.is_none() {
                notes.push(scope.note("externalTrafficPolicy Local but no spec.healthCheckNodePort: the API server allocates one; discover again"));
            }
            hcnp.map(|p| Part::new(p, via(scope.hcnp_origin())))
        }
        (PortDefault::FirstNode, _) => {
            let first =
                scope.service_ports().iter().find_map(|p| p.node_port.and_then(|n| u16::try_from(n).ok()));
            first.map(|p| {
                Part::new(p, via(Origin::Field("spec.ports[0].nodePort (the first listener)".to_owned())))
            })
        }
    }
}
