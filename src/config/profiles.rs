//! Checker profiles: what each real health checker sends and how it judges (docs/profiles.md).
//!
//! A profile only supplies defaults; explicit view keys win.
//!
//! # Wire order
//!
//! The HTTP layer writes an HTTP/1 head as: request line, Host, User-Agent, the profile's
//! `headers`, the view's `headers`, `Connection: close`, `content-length` (see `HttpSettings`).
//! The real checkers agree where they could be observed:
//! - HAProxy 2.6 (run here): `OPTIONS / HTTP/1.0` and nothing else; with `http-check send` it
//!   writes the configured headers in order, lowercase, and on HTTP/1.1 appends
//!   `connection: close` last.
//! - kubelet (Go `net/http`): Host, User-Agent, then the request's own headers **sorted by
//!   name** (`Accept`), then the transport's `Connection: close` (from `DisableKeepAlives`).
//!   Go differs in two corners parallax does not emulate: user headers are sorted rather than
//!   kept in config order, and a request body's `Content-Length` is written *before* those
//!   headers (Go's `transferWriter`), not last.
//! - GoogleHC: Host, User-Agent, `Connection: Keep-alive`.
//! - Envoy: `host`, `user-agent`, then `request_headers_to_add`.

use std::ops::RangeInclusive;
use std::time::Duration;

use super::view::{HostHeader, HttpVersion, InitialHealth, ProfileName, ProxyHeader, ProxyVersion, Sni};

/// What a profile supplies when the view does not say otherwise.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileDefaults {
    /// Request method (`GET`; HAProxy `OPTIONS`).
    pub method: http::Method,
    /// Host header rule.
    pub host: HostHeader,
    /// User-Agent sent, or none.
    pub user_agent: Option<&'static str>,
    /// HTTP version.
    pub http_version: HttpVersion,
    /// Send `Connection: close`.
    pub connection_close: bool,
    /// Extra headers the checker sends after Host and User-Agent, in wire order.
    pub headers: &'static [(&'static str, &'static str)],
    /// Write header names in Title-Case (Go-based checkers) instead of lowercase.
    pub title_case_headers: bool,
    /// SNI rule on TLS checks.
    pub sni: Sni,
    /// Whether the checker verifies the server certificate.
    pub verify: bool,
    /// ALPN offered on TLS checks.
    pub alpn: &'static [&'static str],
    /// Accepted statuses.
    pub status: &'static [RangeInclusive<u16>],
    /// Consecutive successes to become healthy.
    pub rise: u32,
    /// Consecutive failures to become unhealthy.
    pub fall: u32,
    /// Check interval.
    pub interval: Duration,
    /// Check timeout.
    pub timeout: Duration,
    /// Verdict starting state.
    pub initial: InitialHealth,
    /// When this checker sends a **v2** PROXY header, it is a `LOCAL` command with no addresses
    /// (AWS NLB; HAProxy's `send-proxy-v2` on checks). A v1 header from a checker always carries
    /// the check connection's own addresses (HAProxy's `send-proxy`): use
    /// [`ProfileDefaults::proxy_header`] rather than this flag alone.
    pub proxy_local: bool,
    /// Read kube-proxy's `localEndpoints` from the body.
    pub kube_proxy_endpoints: bool,
    /// The source ranges the real checker probes from (for the `allow_sources` audit).
    pub source_ranges: &'static [&'static str],
}

impl ProfileDefaults {
    /// The PROXY header this checker sends when configured with `version`: `LOCAL` only for v2
    /// and only when [`ProfileDefaults::proxy_local`] says so. HAProxy, the one checker that
    /// speaks both, sends `PROXY TCP4 <check src> <server> <sport> <dport>` with `send-proxy`
    /// and a v2 `LOCAL` header with `send-proxy-v2` (observed on HAProxy 2.6).
    pub fn proxy_header(&self, version: ProxyVersion) -> ProxyHeader {
        ProxyHeader { version, local: self.proxy_local && version == ProxyVersion::V2 }
    }
}

/// parallax's own User-Agent.
pub const PARALLAX_USER_AGENT: &str = concat!("parallax/", env!("CARGO_PKG_VERSION"));

const OK_200: &[RangeInclusive<u16>] = &[200..=200];
const OK_2XX_3XX: &[RangeInclusive<u16>] = &[200..=399];

const fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

const fn millis(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

/// The defaults of a client view (no profile): what a browser-like user agent does. Accepts
/// 200-399 (what a browser treats as served), verifies certificates, sends the URL's
/// name as SNI and Host, offers h2 and http/1.1.
pub fn client_defaults() -> ProfileDefaults {
    ProfileDefaults {
        method: http::Method::GET,
        host: HostHeader::FromUrl,
        user_agent: Some(PARALLAX_USER_AGENT),
        http_version: HttpVersion::Auto,
        connection_close: false,
        headers: &[],
        title_case_headers: false,
        sni: Sni::FromUrl,
        verify: true,
        alpn: &["h2", "http/1.1"],
        status: OK_2XX_3XX,
        rise: 2,
        fall: 2,
        interval: secs(5),
        timeout: secs(2),
        initial: InitialHealth::FirstProbe,
        proxy_local: false,
        kube_proxy_endpoints: false,
        source_ranges: &[],
    }
}

/// The defaults of `profile`.
pub fn defaults(profile: ProfileName) -> ProfileDefaults {
    match profile {
        ProfileName::AwsAlb => aws_alb(),
        ProfileName::AwsNlb => aws_nlb(),
        ProfileName::AwsClb => aws_clb(),
        ProfileName::Gcp => gcp(),
        ProfileName::GcpLegacy => gcp_legacy(),
        ProfileName::AzureLb => azure_lb(),
        ProfileName::AzureAppgw => azure_appgw(),
        ProfileName::KubeProxy => kube_proxy(),
        ProfileName::Haproxy => haproxy(),
        ProfileName::Envoy => envoy(),
        ProfileName::Kubelet => kubelet(),
        ProfileName::Generic => generic(),
    }
}

/// What `profile` emulates, in one line (`parallax profiles`).
pub fn summary(profile: ProfileName) -> &'static str {
    match profile {
        ProfileName::AwsAlb => {
            "AWS ALB target group: GET HTTP/1.1, Host = target ip:port, ELB-HealthChecker/2.0, 200 only"
        }
        ProfileName::AwsNlb => "AWS NLB target group: as aws-alb, 200-399, a PROXY v2 header is LOCAL",
        ProfileName::AwsClb => "AWS Classic ELB: GET HTTP/1.1 with no Host, ELB-HealthChecker/1.0, 200 only",
        ProfileName::Gcp => "GCP health checks: GET HTTP/1.1, Host = dialed IP, GoogleHC/1.0, 200 only",
        ProfileName::GcpLegacy => "GCP legacy HTTP(S) checks (target pools): as gcp, legacy source ranges",
        ProfileName::AzureLb => {
            "Azure Load Balancer probe: GET HTTP/1.1, Host = backend ip:port, no User-Agent, 200 only"
        }
        ProfileName::AzureAppgw => {
            "Azure Application Gateway probe: Host 127.0.0.1, verifies certificates, 200-399"
        }
        ProfileName::KubeProxy => {
            "kube-proxy healthCheckNodePort: 200 with localEndpoints > 0 (externalTrafficPolicy: Local)"
        }
        ProfileName::Haproxy => {
            "HAProxy option httpchk: OPTIONS <path> HTTP/1.0 and nothing else, 2xx/3xx pass"
        }
        ProfileName::Envoy => {
            "Envoy active health checking: GET HTTP/1.1, user-agent Envoy/HC, 200 only, fall 1"
        }
        ProfileName::Kubelet => "kubelet readiness probe: Go's client, kube-probe/1.31, Accept: */*, 200-399",
        ProfileName::Generic => {
            "parallax's own checker defaults: GET HTTP/1.1, the URL's Host and SNI, 200-399"
        }
    }
}

/// The sources `profile` rests on, as URLs and issue references (docs/profiles.md, "Sources",
/// says the same: a test holds every one of them to that list). `generic` rests on none.
pub fn sources(profile: ProfileName) -> Vec<&'static str> {
    let numbers: &[usize] = match profile {
        ProfileName::AwsAlb => &[1, 2, 5, 6, 8, 9, 34],
        ProfileName::AwsNlb => &[3, 4, 5, 6],
        ProfileName::AwsClb => &[7, 8],
        ProfileName::Gcp => &[11, 12, 13, 14, 15, 16, 17],
        ProfileName::GcpLegacy => &[12, 13, 15],
        ProfileName::AzureLb => &[18, 19, 20, 22],
        ProfileName::AzureAppgw => &[21, 23, 24],
        ProfileName::KubeProxy => &[17, 25, 26],
        ProfileName::Haproxy => &[31],
        ProfileName::Envoy => &[29, 30],
        ProfileName::Kubelet => &[14, 32, 33],
        ProfileName::Generic => &[],
    };
    numbers.iter().filter_map(|n| SOURCES.get(n - 1).copied()).collect()
}

/// docs/profiles.md's numbered sources, in order (number `n` is index `n - 1`).
const SOURCES: [&str; 34] = [
    "https://docs.aws.amazon.com/elasticloadbalancing/latest/application/target-group-health-checks.html",
    "awsdocs/elb-application-load-balancers-user-guide `load-balancer-target-groups.md`",
    "https://docs.aws.amazon.com/elasticloadbalancing/latest/network/target-group-health-checks.html",
    "awsdocs/elb-network-load-balancers-user-guide `load-balancer-target-groups.md`",
    "https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_Matcher.html",
    "https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_CreateTargetGroup.html",
    "awsdocs/elb-classic-load-balancers-user-guide `elb-healthchecks.md`, `ts-elb-healthcheck.md`",
    "aptible/docker-nginx#114; EasyEngine/easyengine#1457; fnando/browser#275",
    "apache/apisix-helm-chart#546; gravitational/teleport#14176; istio/istio#31421",
    "aptible/docker-nginx#75",
    "https://cloud.google.com/load-balancing/docs/health-check-concepts",
    "https://cloud.google.com/sdk/gcloud/reference/compute/health-checks/create/ssl",
    "https://cloud.google.com/compute/docs/reference/rest/v1/healthChecks",
    "https://metalbear.co/blog/mirrord-dump",
    "kubernetes/kubernetes#40778; terraform-google-modules/terraform-google-lb-http#2",
    "kubernetes/ingress-gce#937",
    "kubernetes/ingress-gce `pkg/healthchecksl4/healthchecksl4.go`; k8s.io/cloud-provider `service/helpers`",
    "MicrosoftDocs/azure-docs `articles/load-balancer/load-balancer-custom-probe-overview.md`",
    "MicrosoftDocs/azure-docs#97795",
    "https://learn.microsoft.com/en-us/javascript/api/@azure-rest/arm-network/probepropertiesformatoutput",
    "MicrosoftDocs/azure-docs `articles/application-gateway/application-gateway-probe-overview.md`",
    "cloud-provider-azure \"Custom load balancer health probe\"",
    "App Gateway `articles/application-gateway/ssl-overview.md` (\"For probe traffic\")",
    "MicrosoftDocs/azure-docs#69155",
    "kubernetes/kubernetes `pkg/proxy/healthcheck/service_health.go`, `proxy_health.go`",
    "kubernetes/enhancements#3837",
    "metallb/metallb `website/content/usage/_index.md`, `concepts/layer2.md`",
    "kubernetes/ingress-nginx `rootfs/etc/nginx/template/nginx.tmpl`",
    "envoyproxy/envoy `api/envoy/config/core/v3/health_check.proto`; `health_checking.rst`",
    "envoyproxy/envoy `source/common/http/headers.h` (`Envoy/HC`)",
    "haproxy/haproxy `doc/configuration.txt` (`option httpchk`, `inter`, `rise`, `fall`, `check-sni`, `send-proxy`, `verify`)",
    "kubernetes/kubernetes `pkg/probe/http/http.go`, `request.go`",
    "kubernetes-client/go `docs/V1Probe.md`",
    "awsdocs/elb-application-load-balancers-user-guide `load-balancer-troubleshooting.md`",
];

/// The profile whose name is closest to `written` (a typo, a missing dash, a prefix), for
/// "did you mean" in errors; `None` when nothing is close.
pub fn closest(written: &str) -> Option<ProfileName> {
    let written = written.trim().to_ascii_lowercase();
    let squashed: String = written.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    ProfileName::ALL
        .iter()
        .copied()
        .map(|p| {
            let name = p.as_str();
            let plain: String = name.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
            let distance = if plain == squashed || (written.len() >= 3 && name.starts_with(&written)) {
                0
            } else {
                edit_distance(&written, name)
            };
            (distance, p)
        })
        .filter(|(distance, _)| *distance <= 2)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, p)| p)
}

/// Levenshtein distance over bytes (profile names are ASCII).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != cb);
            current[j + 1] = substitute.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

/// A checker with parallax's own defaults: `GET`, the URL's Host and SNI, certificates verified,
/// 200-399, rise 2 / fall 2.
fn generic() -> ProfileDefaults {
    ProfileDefaults { http_version: HttpVersion::Http11, alpn: &[], rise: 2, fall: 2, ..client_defaults() }
}

/// docs/profiles.md, "AWS ALB target group": `GET` over HTTP/1.1 on a new connection that the node
/// closes, with `Connection: close` (re:Post "Why ALB executes healthcheck URLs with Connection:
/// close"), `Host` = target IP:port (obs., aptible/docker-nginx#114: `host: "10.58.7.217:25419"`;
/// not configurable), `User-Agent: ELB-HealthChecker/2.0`, no SNI and no certificate validation
/// when re-encrypting, HTTP 200 only by default, 30 s / 5 s, healthy 5 / unhealthy 2; a newly
/// registered target starts unhealthy ("initial"). Unknown: the header order and case (we send
/// Host, User-Agent, Connection in Title-Case) and any `Accept`/`Accept-Encoding` header (none
/// sent: no source shows one).
fn aws_alb() -> ProfileDefaults {
    ProfileDefaults {
        method: http::Method::GET,
        host: HostHeader::DialedAddress,
        user_agent: Some("ELB-HealthChecker/2.0"),
        http_version: HttpVersion::Http11,
        connection_close: true,
        headers: &[],
        title_case_headers: true,
        sni: Sni::None,
        verify: false,
        alpn: &[],
        status: OK_200,
        rise: 5,
        fall: 2,
        interval: secs(30),
        timeout: secs(5),
        initial: InitialHealth::Unhealthy,
        proxy_local: false,
        kube_proxy_endpoints: false,
        source_ranges: &[],
    }
}

/// docs/profiles.md, "AWS NLB target group": `Host` is the LB node's IP and listener port, which a
/// prober cannot know: we send the dialed address (set `host` when you know the node's), 200-399,
/// 30 s / 6 s (HTTP; AWS uses 10 s for HTTPS checks: set `timeout` for those), healthy 5 /
/// unhealthy 2, TLS not validated, a new connection closed after each check. With
/// `proxy_protocol_v2.enabled` the check carries a PPv2 header "with no client information": a
/// `LOCAL` command (NLB speaks only v2). Unknown, so the ALB's choices are kept: User-Agent
/// `ELB-HealthChecker/2.0`, HTTP/1.1 with `Connection: close`, no SNI (the stricter choice);
/// override them in config when you know better.
fn aws_nlb() -> ProfileDefaults {
    ProfileDefaults { status: OK_2XX_3XX, timeout: secs(6), proxy_local: true, ..aws_alb() }
}

/// docs/profiles.md, "AWS Classic ELB": HTTP 200 only, 30 s / 5 s, healthy 10 / unhealthy 2,
/// `User-Agent: ELB-HealthChecker/1.0` (aptible/docker-nginx#114), `GET` over HTTP/1.1 (obs.,
/// getsentry/sentry#2590: `"GET /_health/ HTTP/1.1" ... "ELB-HealthChecker/1.0"`). The Host
/// header is "unknown" in the table; two user reports say the Classic ELB sends **none**
/// (getsentry/sentry#2590, AtlasOfLivingAustralia/ala-install#164), which is also the stricter
/// choice for vhosted servers: no Host. No PROXY header in checks; certificates verified only
/// with a back-end authentication policy (not by default); no SNI. `Connection: close` is
/// unknown and kept from the ALB.
fn aws_clb() -> ProfileDefaults {
    ProfileDefaults {
        host: HostHeader::None,
        user_agent: Some("ELB-HealthChecker/1.0"),
        status: OK_200,
        rise: 10,
        fall: 2,
        ..aws_alb()
    }
}

/// docs/profiles.md, "GCP health checks": HTTP **200 only**, 5 s interval, healthy 2 / unhealthy 2,
/// `User-Agent: GoogleHC/1.0`, `Connection: Keep-alive` (though one request per connection was
/// observed), `Host` = the probe's destination unless `host` is set. The raw request observed
/// ([14], metalbear.co/blog/mirrord-dump) is exactly `GET /health HTTP/1.1`, `Host:
/// 10.96.1.207`, `User-Agent: GoogleHC/1.0`, `Connection: Keep-alive`, in that order and case.
/// GoogleHC's Host is the destination IP **without** the port (API: "the destination IP
/// address"; the raw request in the metalbear mirrord-dump post). GCP's default
/// timeout equals its interval (5 s); parallax needs a probe to end before the next starts, so
/// the default is 4.9 s. Probes come from 35.191.0.0/16 and 130.211.0.0/22. SNI and certificate
/// checks are undocumented: no SNI, no verification.
fn gcp() -> ProfileDefaults {
    ProfileDefaults {
        method: http::Method::GET,
        host: HostHeader::DialedIp,
        user_agent: Some("GoogleHC/1.0"),
        http_version: HttpVersion::Http11,
        connection_close: false,
        headers: &[("Connection", "Keep-alive")],
        title_case_headers: true,
        sni: Sni::None,
        verify: false,
        alpn: &[],
        status: OK_200,
        rise: 2,
        fall: 2,
        interval: secs(5),
        timeout: millis(4900),
        initial: InitialHealth::Unhealthy,
        proxy_local: false,
        kube_proxy_endpoints: false,
        source_ranges: &["35.191.0.0/16", "130.211.0.0/22"],
    }
}

/// docs/profiles.md, "GCP legacy HTTP/HTTPS" (target-pool network LB): like [`gcp`] (the same
/// `GoogleHC/1.0` prober is assumed, unverified), 200, 2 / 2, 5 s, and the legacy source ranges
/// 35.191.0.0/16, 209.85.152.0/22, 209.85.204.0/22. Its Host is "the public IP on behalf of which
/// this health check is performed", the forwarding rule's address, which a prober dialing the
/// instance cannot derive: set `host` to it; the dialed IP is sent otherwise.
fn gcp_legacy() -> ProfileDefaults {
    ProfileDefaults { source_ranges: &["35.191.0.0/16", "209.85.152.0/22", "209.85.204.0/22"], ..gcp() }
}

/// docs/profiles.md, "Azure Load Balancer probe": HTTP 200 only, `Host` = the backend `ip:port`
/// (obs., MicrosoftDocs/azure-docs#97795), no SNI and no certificate validation (self-signed
/// accepted), 5 s interval; a failed probe marks the backend down at once (`probeThreshold` 1).
/// The HTTP timeout (30 s in the docs) exceeds the interval; parallax caps it at 4.9 s. Probes
/// come from 168.63.129.16. Unknown: the User-Agent (none sent), the HTTP version (HTTP/1.1),
/// keep-alive (no `Connection` header) and header case (Title-Case).
fn azure_lb() -> ProfileDefaults {
    ProfileDefaults {
        method: http::Method::GET,
        host: HostHeader::DialedAddress,
        user_agent: None,
        http_version: HttpVersion::Http11,
        connection_close: false,
        headers: &[],
        title_case_headers: true,
        sni: Sni::None,
        verify: false,
        alpn: &[],
        status: OK_200,
        rise: 1,
        fall: 1,
        interval: secs(5),
        timeout: millis(4900),
        initial: InitialHealth::Unhealthy,
        proxy_local: false,
        kube_proxy_endpoints: false,
        source_ranges: &["168.63.129.16/32"],
    }
}

/// docs/profiles.md, "Azure Application Gateway probe": default probe `<proto>://127.0.0.1:<port>/`
/// with `Host: 127.0.0.1`, 200-399, 30 s interval (timeout 30 s, capped below the interval at
/// 29 s), healthy 1 / unhealthy 3, no User-Agent observed (MicrosoftDocs/azure-docs#69155). v2
/// verifies the certificate and sends SNI from the probe host, then the HTTP-settings host, then
/// the backend FQDN, none when that value is an IP: the URL's host here (a name gives SNI, an IP
/// none). Unknown: HTTP version (HTTP/1.1), keep-alive, header case.
fn azure_appgw() -> ProfileDefaults {
    ProfileDefaults {
        method: http::Method::GET,
        host: HostHeader::Value("127.0.0.1".to_owned()),
        user_agent: None,
        http_version: HttpVersion::Http11,
        connection_close: false,
        headers: &[],
        title_case_headers: true,
        sni: Sni::FromUrl,
        verify: true,
        alpn: &[],
        status: OK_2XX_3XX,
        rise: 1,
        fall: 3,
        interval: secs(30),
        timeout: secs(29),
        initial: InitialHealth::Unhealthy,
        proxy_local: false,
        kube_proxy_endpoints: false,
        source_ranges: &[],
    }
}

/// docs/profiles.md, "kube-proxy `healthCheckNodePort`": any path answers 200 when the node has
/// local **ready** endpoints and kube-proxy is healthy, else 503, with a JSON body carrying
/// `localEndpoints`; Host and User-Agent are ignored. The request is the provider's; we send a
/// plain `GET` with the dialed address as Host and parallax's agent. Interval and thresholds are
/// the provider's: GKE's ETP Local values (3 s / 1 s, healthy 1 / unhealthy 2) are the default.
fn kube_proxy() -> ProfileDefaults {
    ProfileDefaults {
        method: http::Method::GET,
        host: HostHeader::DialedAddress,
        user_agent: Some(PARALLAX_USER_AGENT),
        http_version: HttpVersion::Http11,
        connection_close: false,
        headers: &[],
        title_case_headers: false,
        sni: Sni::None,
        verify: false,
        alpn: &[],
        status: OK_200,
        rise: 1,
        fall: 2,
        interval: secs(3),
        timeout: secs(1),
        initial: InitialHealth::Unhealthy,
        proxy_local: false,
        kube_proxy_endpoints: true,
        source_ranges: &[],
    }
}

/// docs/profiles.md, "HAProxy `option httpchk`", checked against the real HAProxy 2.6 on loopback
/// (tests/wire_fidelity.rs compares the bytes): the request is exactly `OPTIONS / HTTP/1.0`
/// CRLF CRLF, no Host, no User-Agent, no other header; header names it does send (`http-check
/// send hdr`) are lowercase. 2xx and 3xx pass (199 and 400 fail), `inter` 2 s (the check timeout
/// defaults to `inter`; parallax caps it at 1.9 s), rise 2 / fall 3, a dedicated connection per
/// check, no ALPN, no SNI before 3.3 unless `check-sni`.
///
/// Initial state: servers start UP but the **first** check decides: one failure marks a fresh
/// server DOWN at once, one success makes it fully UP (then `fall` failures are needed), so
/// [`InitialHealth::FirstProbe`].
///
/// Verification: `verify required` is the server default, but HAProxy refuses to start with it
/// unless a `ca-file` is given, and without SNI (`check-sni`/`sni`) or `verifyhost` it checks the
/// chain only, never the name. parallax's verification always checks the name, which would fail
/// IP-addressed checks that HAProxy passes, so the default is no verification (what the common
/// `ssl verify none` does); set `verify = true` and `ca_file` to emulate `verify required` with
/// `check-sni`.
///
/// PROXY headers on checks: `send-proxy` (without `port`/`addr`) or `check-send-proxy` sends
/// `PROXY TCP4 <check src> <server> <sport> <dport>`; `send-proxy-v2` sends a v2 `LOCAL` header
/// with no addresses: see [`ProfileDefaults::proxy_header`].
fn haproxy() -> ProfileDefaults {
    ProfileDefaults {
        method: http::Method::OPTIONS,
        host: HostHeader::None,
        user_agent: None,
        http_version: HttpVersion::Http10,
        connection_close: false,
        headers: &[],
        title_case_headers: false,
        sni: Sni::None,
        verify: false,
        alpn: &[],
        status: OK_2XX_3XX,
        rise: 2,
        fall: 3,
        interval: secs(2),
        timeout: millis(1900),
        initial: InitialHealth::FirstProbe,
        proxy_local: true,
        kube_proxy_endpoints: false,
        source_ranges: &[],
    }
}

/// docs/profiles.md, "Envoy active HC": HTTP/1.1 `GET` with `user-agent: Envoy/HC`
/// (`source/common/http/headers.h`), lowercase header names (Envoy's HTTP/1 codec default),
/// `host` first then `user-agent`, no `content-length` on a bodiless `GET`, keep-alive
/// (`reuse_connection` default true: no `Connection` header), 200 only. A non-expected status
/// ejects immediately (fall 1; Envoy's `unhealthy_threshold` applies to timeouts and connection
/// failures, which this profile therefore judges more strictly); one success at startup (first
/// probe decides). SNI only from the cluster's transport socket (`auto_sni` not applied: none by
/// default), validation per the cluster (none by default). Envoy's Host is the endpoint's
/// `hostname`, else the check's `host`, else the cluster name, which a prober cannot know: set
/// `host` to it; the URL's authority is sent otherwise. Interval and timeout are required in
/// Envoy: 5 s / 1 s here.
fn envoy() -> ProfileDefaults {
    ProfileDefaults {
        method: http::Method::GET,
        host: HostHeader::FromUrl,
        user_agent: Some("Envoy/HC"),
        http_version: HttpVersion::Http11,
        connection_close: false,
        headers: &[],
        title_case_headers: false,
        sni: Sni::None,
        verify: false,
        alpn: &[],
        status: OK_200,
        rise: 1,
        fall: 1,
        interval: secs(5),
        timeout: secs(1),
        initial: InitialHealth::FirstProbe,
        proxy_local: false,
        kube_proxy_endpoints: false,
        source_ranges: &[],
    }
}

/// docs/profiles.md, "kubelet readiness probe" (`pkg/probe/http/request.go`, `http.go`): Go's
/// HTTP/1.1 client with keep-alives and compression off, so the request observed ([14]) is
/// `GET <path> HTTP/1.1`, `Host: <podIP>:<port>` (the port always, `net.JoinHostPort`),
/// `User-Agent: kube-probe/<major>.<minor>`, `Accept: */*`, `Connection: close`, in that order
/// (Go writes Host and User-Agent first, then the request's headers sorted by name, then the
/// transport's `Connection: close`), Title-Case, no `Accept-Encoding`. 200-399, no certificate
/// verification (`InsecureSkipVerify`), no SNI for an IP URL, and over TLS the transport offers
/// ALPN `h2`, `http/1.1` (`SetTransportDefaults` configures HTTP/2), so HTTPS probes speak HTTP/2
/// when the server picks it. 10 s / 1 s, success 1 / failure 3, not ready until the first
/// success. The agent's version is the kubelet's: 1.31 here, override `user_agent` to match.
fn kubelet() -> ProfileDefaults {
    ProfileDefaults {
        method: http::Method::GET,
        host: HostHeader::DialedAddress,
        user_agent: Some("kube-probe/1.31"),
        http_version: HttpVersion::Auto,
        connection_close: true,
        headers: &[("Accept", "*/*")],
        title_case_headers: true,
        sni: Sni::FromUrl,
        verify: false,
        alpn: &["h2", "http/1.1"],
        status: OK_2XX_3XX,
        rise: 1,
        fall: 3,
        interval: secs(10),
        timeout: secs(1),
        initial: InitialHealth::Unhealthy,
        proxy_local: false,
        kube_proxy_endpoints: false,
        source_ranges: &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every source cited is in docs/profiles.md's list, word for word: the two say the same.
    #[test]
    fn every_source_is_listed_in_the_profiles_doc() {
        let doc = include_str!("../../docs/profiles.md");
        for p in ProfileName::ALL {
            assert_eq!(sources(*p).is_empty(), *p == ProfileName::Generic, "{p}");
            assert!(!summary(*p).is_empty(), "{p}");
        }
        for (i, source) in SOURCES.iter().enumerate() {
            // Each list line is `N. what — source`; the source is the line's tail.
            let line = doc.lines().find(|l| l.starts_with(&format!("{}. ", i + 1)));
            let line = line.unwrap_or_else(|| panic!("docs/profiles.md lists no source {}", i + 1));
            let bare = line.replace(['<', '>'], "");
            assert!(bare.contains(source), "source {}: {source:?} is not in {line:?}", i + 1);
        }
    }

    #[test]
    fn close_names_are_suggested_and_far_ones_are_not() {
        assert_eq!(closest("aws-abl"), Some(ProfileName::AwsAlb));
        assert_eq!(closest("awsalb"), Some(ProfileName::AwsAlb));
        assert_eq!(closest("AWS-NLB"), Some(ProfileName::AwsNlb));
        assert_eq!(closest("kube"), Some(ProfileName::KubeProxy));
        assert_eq!(closest("haproxyy"), Some(ProfileName::Haproxy));
        assert_eq!(closest("nginx"), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn every_profile_name_round_trips() {
        for p in ProfileName::ALL {
            assert_eq!(ProfileName::from_name(p.as_str()), Some(*p));
        }
        assert_eq!(ProfileName::from_name("aws"), None);
    }

    #[test]
    fn every_profile_timeout_is_below_its_interval_and_thresholds_are_positive() {
        for p in ProfileName::ALL {
            let d = defaults(*p);
            assert!(d.timeout < d.interval, "{p}: {:?} !< {:?}", d.timeout, d.interval);
            assert!(d.rise >= 1 && d.fall >= 1, "{p}");
            assert!(!d.status.is_empty(), "{p}");
        }
        let c = client_defaults();
        assert!(c.timeout < c.interval);
    }

    #[test]
    fn documented_source_ranges_parse() {
        for p in ProfileName::ALL {
            for r in defaults(*p).source_ranges {
                assert!(r.parse::<ipnet::IpNet>().is_ok(), "{p}: {r}");
            }
        }
    }

    #[test]
    fn haproxy_sends_options_http10_without_host_or_agent() {
        let d = defaults(ProfileName::Haproxy);
        assert_eq!(d.method, http::Method::OPTIONS);
        assert_eq!(d.http_version, HttpVersion::Http10);
        assert_eq!(d.host, HostHeader::None);
        assert_eq!(d.user_agent, None);
        assert_eq!((d.rise, d.fall), (2, 3));
    }

    #[test]
    fn gcp_and_clb_accept_only_200_while_nlb_and_kubelet_accept_3xx() {
        let accepts = |p: ProfileName, s: u16| defaults(p).status.iter().any(|r| r.contains(&s));
        for p in [ProfileName::Gcp, ProfileName::AwsClb, ProfileName::AwsAlb, ProfileName::AzureLb] {
            assert!(accepts(p, 200) && !accepts(p, 204) && !accepts(p, 301), "{p}");
        }
        for p in [ProfileName::AwsNlb, ProfileName::Kubelet, ProfileName::AzureAppgw, ProfileName::Haproxy] {
            assert!(accepts(p, 204) && accepts(p, 302) && !accepts(p, 404), "{p}");
        }
    }

    #[test]
    fn only_the_nlb_and_haproxy_send_local_v2_headers_and_only_kube_proxy_reads_endpoints() {
        for p in ProfileName::ALL {
            let d = defaults(*p);
            let local = matches!(p, ProfileName::AwsNlb | ProfileName::Haproxy);
            assert_eq!(d.proxy_header(ProxyVersion::V2).local, local, "{p}");
            // A v1 header from a checker always carries the connection's addresses.
            assert!(!d.proxy_header(ProxyVersion::V1).local, "{p}");
            assert_eq!(d.kube_proxy_endpoints, *p == ProfileName::KubeProxy, "{p}");
        }
        assert!(!client_defaults().proxy_header(ProxyVersion::V2).local);
    }

    #[test]
    fn haproxy_first_check_decides_and_tls_checks_do_not_verify_names() {
        let d = defaults(ProfileName::Haproxy);
        assert_eq!(d.initial, InitialHealth::FirstProbe);
        assert!(!d.verify);
        assert_eq!(d.sni, Sni::None);
        assert!(d.alpn.is_empty());
        assert!(!d.connection_close, "HAProxy sends no Connection header on HTTP/1.0");
    }

    #[test]
    fn go_based_checkers_write_title_case_and_the_rest_as_observed() {
        let k = defaults(ProfileName::Kubelet);
        assert!(k.title_case_headers && k.connection_close);
        assert_eq!(k.headers, &[("Accept", "*/*")]);
        assert_eq!(k.alpn, &["h2", "http/1.1"]);
        assert!(k.user_agent.is_some_and(|ua| ua.starts_with("kube-probe/1.")));
        let g = defaults(ProfileName::Gcp);
        assert_eq!(g.headers, &[("Connection", "Keep-alive")]);
        assert!(!g.connection_close, "GoogleHC says Keep-alive, not close");
        for p in [ProfileName::Envoy, ProfileName::Haproxy] {
            assert!(!defaults(p).title_case_headers, "{p}");
        }
    }

    #[test]
    fn aws_checkers_send_their_agents_and_the_classic_elb_no_host() {
        assert_eq!(defaults(ProfileName::AwsAlb).user_agent, Some("ELB-HealthChecker/2.0"));
        assert_eq!(defaults(ProfileName::AwsClb).user_agent, Some("ELB-HealthChecker/1.0"));
        assert_eq!(defaults(ProfileName::AwsClb).host, HostHeader::None);
        assert_eq!(defaults(ProfileName::AwsAlb).host, HostHeader::DialedAddress);
        for p in [ProfileName::AwsAlb, ProfileName::AwsNlb, ProfileName::AwsClb] {
            let d = defaults(p);
            assert!(d.connection_close && !d.verify && d.sni == Sni::None, "{p}");
            assert_eq!(d.initial, InitialHealth::Unhealthy, "{p}");
        }
    }
}
