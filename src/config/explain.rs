//! `parallax check` output: the compiled plan with effective settings, secrets redacted.
//!
//! One block per target, one per view, one setting per line with a fixed-width label, so the
//! output is readable, diffable between two versions of a config, and stable for scripts that
//! grep it. Only display forms are printed: `url_display`, `path_display`, and header and body
//! values through `MaybeSecret`'s `Display`.

use std::fmt::Write as _;

use super::plan::*;
use super::secret::*;
use super::view::*;
use crate::duration::human;

/// Renders the compiled plan for humans: every view with its effective settings after profile
/// defaults; secrets as `<redacted>`.
pub fn explain(plan: &Plan) -> String {
    let mut out = String::new();
    let views = plan.views().count();
    let _ = writeln!(
        out,
        "plan: {} target{}, {} view{}, from {} file{}",
        plan.targets.len(),
        plural(plan.targets.len()),
        views,
        plural(views),
        plan.files.len(),
        plural(plan.files.len())
    );
    let files: Vec<String> = plan.files.iter().map(|f| f.display().to_string()).collect();
    line(&mut out, 0, "files", &files.join(", "));
    let admin = match plan.admin.allowed_hosts.as_slice() {
        [] => format!("listen {}", plan.admin.listen),
        names => format!("listen {}, allowed_hosts {}", plan.admin.listen, names.join(", ")),
    };
    line(&mut out, 0, "admin", &admin);
    let otlp = match &plan.export.otlp {
        None => "off".to_owned(),
        Some(o) => format!(
            "endpoint {}, protocol {}, success_sample_ratio {}",
            o.endpoint,
            match o.protocol {
                OtlpProtocol::Grpc => "grpc",
                OtlpProtocol::HttpProtobuf => "http/protobuf",
            },
            o.success_sample_ratio
        ),
    };
    line(&mut out, 0, "export.otlp", &otlp);
    line(&mut out, 0, "vantage", &plan.vantage.describe());
    if let Some(d) = &plan.discovery {
        let kubeconfig = d.kubeconfig.as_ref().map_or("in-cluster".to_owned(), |p| p.display().to_string());
        let namespaces = if d.namespaces.is_empty() { "all".to_owned() } else { d.namespaces.join(", ") };
        let text = format!(
            "{} mode, selector {}, namespaces {namespaces}, provider {}, credentials {kubeconfig}; \
             its targets are derived at run time (`parallax discover` prints them)",
            d.mode.as_str(),
            if d.selector.is_empty() { "(everything)".to_owned() } else { d.selector.to_string() },
            d.provider.as_str(),
        );
        line(&mut out, 0, "discovery.kubernetes", &text);
    }
    for c in &plan.conditions {
        line(&mut out, 0, "condition", &condition(c));
    }
    for target in &plan.targets {
        out.push('\n');
        let _ = writeln!(out, "target {}", target.name);
        if target.id != target.name {
            line(&mut out, 2, "id", &target.id);
        }
        let allow = if target.allow_sources.is_empty() {
            "none (no audit)".to_owned()
        } else {
            target.allow_sources.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(", ")
        };
        line(&mut out, 2, "allow_sources", &allow);
        let d = &target.diff;
        let attribution = if d.attribution {
            format!(
                "on, at most {} hybrid probe(s) per run, a run at most every {}",
                d.max_hybrids,
                human(d.attribution_interval)
            )
        } else {
            "off (diagnosis from error codes only)".to_owned()
        };
        line(&mut out, 2, "attribution", &attribution);
        let hold = match d.hold {
            Some(h) => human(h),
            None => "two checker intervals".to_owned(),
        };
        line(&mut out, 2, "hold", &hold);
        if let Some(facts) = &target.cluster {
            line(&mut out, 2, "cluster", &cluster(facts));
        }
        for view in target.views() {
            out.push('\n');
            explain_view(&mut out, view);
        }
    }
    out
}

fn explain_view(out: &mut String, v: &View) {
    let _ = writeln!(out, "  view {} ({})", v.name, v.role.as_str());
    if v.role == Role::Checker {
        let profile = match v.profile {
            Some(p) => p.to_string(),
            None => format!("none ({} defaults)", ProfileName::Generic),
        };
        line(out, 4, "profile", &profile);
    }
    line(out, 4, "url", &v.url_display);
    line(out, 4, "scheme", v.scheme.as_str());
    let dial = match (&v.connect_to, &v.url_endpoint.host) {
        (Some(c), _) => format!("{c} (connect_to)"),
        (None, Host::Name(_)) => format!("{} (resolved by DNS)", v.url_endpoint),
        (None, Host::Ip(_)) => v.url_endpoint.to_string(),
    };
    line(out, 4, "dial", &dial);
    let source = match &v.source {
        None => "none (the kernel picks)".to_owned(),
        Some(SourceBind { requested: Source::Addr(a), .. }) => a.to_string(),
        Some(SourceBind { requested: Source::Net(n), addr }) => format!("{addr} (from {n})"),
    };
    line(out, 4, "source", &format!("{source}{}", if v.freebind { ", freebind" } else { "" }));
    line(out, 4, "ip_version", ip_version(v.ip_version));
    let proxy = match v.proxy_protocol {
        None => "none".to_owned(),
        Some(p) => format!(
            "{} {}",
            match p.version {
                ProxyVersion::V1 => "v1",
                ProxyVersion::V2 => "v2",
            },
            if p.local { "LOCAL (no addresses)" } else { "PROXY (the connection's addresses)" }
        ),
    };
    line(out, 4, "proxy_protocol", &proxy);
    line(out, 4, "tls", &tls(v));
    explain_request(out, v);
    line(out, 4, "expect", &expect(v));
    let timing = format!(
        "interval {}, timeout {}, rise {}, fall {}, initial {}",
        human(v.interval),
        human(v.timeout),
        v.rise,
        v.fall,
        match v.initial {
            InitialHealth::Healthy => "healthy",
            InitialHealth::Unhealthy => "unhealthy",
            InitialHealth::FirstProbe => "first_probe",
        }
    );
    line(out, 4, "timing", &timing);
    line(out, 4, "limits", &format!("max_body_bytes {}", v.max_body_bytes));
    let addresses = if v.expect_addresses.is_empty() {
        "any".to_owned()
    } else {
        v.expect_addresses.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", ")
    };
    let dns = format!(
        "resolver {}, each_address {}, expect_addresses {}",
        v.resolver.map_or("system".to_owned(), |r| r.to_string()),
        if v.each_address { "on" } else { "off" },
        addresses
    );
    line(out, 4, "dns", &dns);
}

/// The request lines: what is sent, and how, by scheme.
fn explain_request(out: &mut String, v: &View) {
    if v.scheme.uses_http() {
        line(
            out,
            4,
            "request",
            &format!("{} {} {}", v.http.method, v.path_display(), version(v.http.version)),
        );
    } else if v.scheme.uses_grpc() {
        line(out, 4, "request", "gRPC health check /grpc.health.v1.Health/Check over HTTP/2");
    } else {
        line(out, 4, "request", &format!("none ({}: {} only)", v.scheme.as_str(), connect_only(v.scheme)));
    }
    if v.scheme.uses_http() || v.scheme.uses_grpc() {
        line(out, 4, "host", &host(v));
        line(out, 4, "user_agent", v.http.user_agent.as_deref().unwrap_or("none"));
    }
    if v.scheme.uses_http() {
        let headers = if v.http.headers.is_empty() {
            "none".to_owned()
        } else {
            v.http.headers.iter().map(|(n, val)| format!("{n}: {val}")).collect::<Vec<_>>().join("; ")
        };
        line(out, 4, "headers", &headers);
        let body = match &v.http.body {
            None => "none".to_owned(),
            Some(MaybeSecret::Secret(s)) => s.to_string(),
            Some(MaybeSecret::Plain(b)) => format!("{} bytes {:?}", b.len(), b),
        };
        line(out, 4, "body", &body);
        let connection = format!(
            "{}, header names {}",
            if v.http.connection_close { "Connection: close" } else { "no Connection: close" },
            if v.http.title_case_headers { "Title-Case" } else { "lowercase" }
        );
        line(out, 4, "connection", &connection);
    }
}

/// `kind object (reason): message`, and the target it concerns.
fn condition(c: &super::Condition) -> String {
    let reason = c.reason.as_ref().map(|r| format!(" ({r})")).unwrap_or_default();
    let target = c.target.as_ref().map(|t| format!(" [target {t}]")).unwrap_or_default();
    format!("{} {}{reason}: {}{target}", c.kind, c.object, c.message)
}

/// One line of `[target.cluster]`'s facts, the absent ones left out.
fn cluster(f: &super::ClusterFacts) -> String {
    let mut parts = vec![f.object.clone()];
    let mut add = |label: &str, value: Option<String>| {
        if let Some(v) = value {
            parts.push(format!("{label} {v}"));
        }
    };
    add("node", f.node.clone());
    add("backends", (!f.backends.is_empty()).then(|| f.backends.join(", ")));
    add("externalTrafficPolicy", f.traffic_policy.clone());
    add("healthCheckNodePort", f.health_check_node_port.map(|p| p.to_string()));
    add("ready endpoints", f.ready_endpoints.map(|n| n.to_string()));
    add("on this node", f.local_ready_endpoints.map(|n| n.to_string()));
    add("terminating here", f.local_terminating_endpoints.map(|n| n.to_string()));
    add("by node", (!f.endpoint_nodes.is_empty()).then(|| f.endpoint_nodes.join(", ")));
    add("route hosts", (!f.route_hosts.is_empty()).then(|| f.route_hosts.join(", ")));
    let tls: Vec<String> = f
        .tls
        .iter()
        .map(|t| format!("{} secret {} for {}", t.source, t.secret, t.hosts.join(", ")))
        .collect();
    add("tls", (!tls.is_empty()).then(|| tls.join("; ")));
    add(
        "conditions",
        (!f.conditions.is_empty())
            .then(|| f.conditions.iter().map(|c| c.kind.as_str()).collect::<Vec<_>>().join(", ")),
    );
    parts.join("; ")
}

fn line(out: &mut String, indent: usize, label: &str, value: &str) {
    let _ = writeln!(out, "{:indent$}{label:<15} {value}", "");
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn ip_version(v: IpVersion) -> &'static str {
    match v {
        IpVersion::Any => "any",
        IpVersion::V4 => "4",
        IpVersion::V6 => "6",
    }
}

fn version(v: HttpVersion) -> &'static str {
    match v {
        HttpVersion::Http10 => "HTTP/1.0",
        HttpVersion::Http11 => "HTTP/1.1",
        HttpVersion::Auto => "HTTP/2 or HTTP/1.1 (ALPN)",
        HttpVersion::Http2 => "HTTP/2",
    }
}

fn connect_only(s: Scheme) -> &'static str {
    if s.uses_tls() {
        "connect and TLS handshake"
    } else {
        "connect"
    }
}

fn tls(v: &View) -> String {
    let sni = match &v.tls.sni {
        Sni::FromUrl => match &v.url_endpoint.host {
            Host::Name(n) => format!("{n} (from URL)"),
            Host::Ip(_) => "none (the URL's host is an IP)".to_owned(),
        },
        Sni::Name(n) => n.clone(),
        Sni::None => "none".to_owned(),
    };
    let ca = v
        .tls
        .ca_file
        .as_ref()
        .map_or("the built-in Mozilla roots (webpki-roots)".to_owned(), |p| p.display().to_string());
    let alpn = if v.tls.alpn.is_empty() { "none".to_owned() } else { v.tls.alpn.join(", ") };
    let settings =
        format!("sni {sni}; verify {}; ca {ca}; alpn {alpn}", if v.tls.verify { "on" } else { "off" });
    if v.scheme.uses_tls() {
        settings
    } else {
        // Attribution switches TLS on for a hybrid probe; these are the settings it would use.
        format!("off ({}); when switched on: {settings}", v.scheme.as_str())
    }
}

fn host(v: &View) -> String {
    let dial = v.dial_endpoint();
    let Some(sent) = v.host_header(Dialed::Endpoint(dial)) else { return "none".to_owned() };
    match (&v.http.host, &dial.host) {
        (HostHeader::FromUrl, _) => format!("{sent} (from URL)"),
        (HostHeader::DialedAddress, Host::Ip(_)) => format!("{sent} (the dialed address)"),
        (HostHeader::DialedAddress, Host::Name(_)) => format!("the dialed ip:port (port {})", dial.port),
        (HostHeader::DialedIp, Host::Ip(_)) => format!("{sent} (the dialed IP, no port)"),
        (HostHeader::DialedIp, Host::Name(_)) => "the dialed IP, no port".to_owned(),
        (HostHeader::Value(_) | HostHeader::None, _) => sent.into_owned(),
    }
}

fn expect(v: &View) -> String {
    let e = &v.expect;
    let mut parts = Vec::new();
    if v.scheme.uses_http() {
        let status: Vec<String> = e.status.iter().map(super::view::status_range_text).collect();
        parts.push(format!("status {}", status.join(", ")));
        if let Some(b) = &e.body_contains {
            parts.push(format!("body contains {b:?}"));
        }
        if let Some(r) = &e.body_regex {
            parts.push(format!("body matches /{}/", r.as_str()));
        }
        if e.kube_proxy_endpoints {
            parts.push("kube-proxy localEndpoints above 0".to_owned());
        }
    } else if v.scheme.uses_grpc() {
        let service = if e.grpc_service.is_empty() {
            "the whole server".to_owned()
        } else {
            format!("{:?}", e.grpc_service)
        };
        parts.push(format!("SERVING for {service}"));
    } else {
        parts.push(format!("{} succeeds", connect_only(v.scheme)));
    }
    parts.join("; ")
}
