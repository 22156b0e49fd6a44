//! The unit tests' one set of fixtures: synthetic views, targets and outcomes built without the
//! config compiler, for the pure tests (diff, schedule, export) and the probe's loopback tests.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use crate::config::profiles::PARALLAX_USER_AGENT;
use crate::config::{
    Dialed, Endpoint, Expect, Host, HostHeader, HttpSettings, HttpVersion, InitialHealth, IpVersion,
    MaybeSecret, ProfileName, Role, Scheme, Secret, Sni, Target, TlsSettings, View, DEFAULT_MAX_BODY_BYTES,
};
use crate::probe::{ErrorCode, Outcome, RequestSummary, Timings};

/// Where the synthetic DNS points every name.
pub(crate) const NAME_ADDRESS: [u8; 4] = [203, 0, 113, 10];

/// A view of `target` named `name` for `url` (`client` is the client view, anything else a
/// checker), with client-like defaults: GET, Host and SNI from the URL, verified, 200-399,
/// parallax's User-Agent, 5 s / 2 s, rise 2 / fall 2, first probe decides.
pub(crate) fn view_url(target: &str, name: &str, url: &str) -> View {
    let parsed = url::Url::parse(url).expect("test URL");
    let scheme = match parsed.scheme() {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        "tcp" => Scheme::Tcp,
        "tls" => Scheme::Tls,
        "grpc" => Scheme::Grpc,
        "grpcs" => Scheme::Grpcs,
        other => panic!("scheme {other}"),
    };
    let host = match parsed.host().expect("test URL host") {
        // Non-special schemes (tcp, tls, grpc) keep IP literals as opaque hosts.
        url::Host::Domain(d) => d.parse::<IpAddr>().map_or_else(|_| Host::Name(d.to_owned()), Host::Ip),
        url::Host::Ipv4(ip) => Host::Ip(ip.into()),
        url::Host::Ipv6(ip) => Host::Ip(ip.into()),
    };
    let port = parsed.port_or_known_default().expect("test URL port");
    let path = match parsed.query() {
        Some(q) => format!("{}?{q}", parsed.path()),
        None => parsed.path().to_owned(),
    };
    let path = if path.is_empty() { "/".to_owned() } else { path };
    View {
        target: target.into(),
        target_id: target.into(),
        name: name.into(),
        role: if name == "client" { Role::Client } else { Role::Checker },
        profile: None,
        scheme,
        url_endpoint: Endpoint { host, port },
        path,
        url_display: url.to_owned(),
        connect_to: None,
        source: None,
        freebind: false,
        ip_version: IpVersion::Any,
        proxy_protocol: None,
        tls: TlsSettings { sni: Sni::FromUrl, verify: true, ca_file: None, alpn: Vec::new() },
        http: HttpSettings {
            method: http::Method::GET,
            host: HostHeader::FromUrl,
            headers: Vec::new(),
            user_agent: Some(PARALLAX_USER_AGENT.to_owned()),
            body: None,
            version: HttpVersion::Http11,
            connection_close: false,
            title_case_headers: false,
        },
        expect: Expect {
            status: vec![200..=399],
            body_contains: None,
            body_regex: None,
            kube_proxy_endpoints: false,
            grpc_service: String::new(),
        },
        interval: Duration::from_secs(5),
        timeout: Duration::from_secs(2),
        rise: 2,
        fall: 2,
        initial: InitialHealth::FirstProbe,
        max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        resolver: None,
        each_address: false,
        expect_addresses: Vec::new(),
    }
}

/// `https://shop.example.com/cart` for `target`/`name`.
pub(crate) fn view(target: &str, name: &str) -> View {
    view_url(target, name, "https://shop.example.com/cart")
}

/// A target from its views (no `allow_sources`).
pub(crate) fn target(client: View, checkers: Vec<View>) -> Target {
    Target {
        name: client.target.clone(),
        id: client.target_id.clone(),
        allow_sources: Vec::new(),
        client,
        checkers,
        diff: crate::config::DiffSettings::default(),
        cluster: None,
    }
}

/// A header, secret or not.
pub(crate) fn header(name: &str, value: &str, secret: bool) -> (http::HeaderName, MaybeSecret) {
    let value =
        if secret { MaybeSecret::Secret(Secret::new(value)) } else { MaybeSecret::Plain(value.to_owned()) };
    (http::HeaderName::from_bytes(name.as_bytes()).expect("test header name"), value)
}

/// The outcome of probing `view` once: what it sent, where it went (names resolve to
/// [`NAME_ADDRESS`]), and the given result.
pub(crate) fn outcome_for(view: &View, ok: bool, error: Option<ErrorCode>, status: Option<u16>) -> Outcome {
    let dial = view.dial_endpoint();
    let ip: IpAddr = match &dial.host {
        Host::Ip(ip) => *ip,
        Host::Name(_) => NAME_ADDRESS.into(),
    };
    let address = SocketAddr::new(ip, dial.port);
    let reached = !matches!(error.map(ErrorCode::phase), Some(crate::probe::Phase::Dns));
    Outcome {
        target: view.target.clone(),
        view: view.name.clone(),
        role: view.role,
        profile: view.profile,
        ok,
        phase: error.map(ErrorCode::phase),
        error,
        detail: error.map(|e| format!("synthetic {e}")),
        status,
        location: None,
        grpc_status: None,
        local_endpoints: None,
        timings: Timings::default(),
        peer: reached.then_some(address),
        local: None,
        request: RequestSummary {
            scheme: view.scheme.as_str(),
            address: reached.then_some(address),
            sni: None,
            host: None,
            method: Some(view.http.method.to_string()),
            path: Some(view.path.clone()),
            source: view.source.map(|s| s.addr),
            proxy_protocol: view.proxy_protocol.map(|p| p.version),
            verify: view.scheme.uses_tls() && view.tls.verify,
            user_agent: view.http.user_agent.clone(),
            http_version: None,
        },
        tls: None,
        resolved: Vec::new(),
        body_bytes: None,
    }
}

/// A 200 success of `view`.
pub(crate) fn ok_outcome(view: &View) -> Outcome {
    outcome_for(view, true, None, Some(200))
}

/// A failure of `view` with `error` (and `status` for `http_status`).
pub(crate) fn failed(view: &View, error: ErrorCode, status: Option<u16>) -> Outcome {
    outcome_for(view, false, Some(error), status)
}

/// `outcome` as if it had dialed `addr`.
pub(crate) fn at(mut outcome: Outcome, addr: &str) -> Outcome {
    let addr: SocketAddr = addr.parse().expect("test address");
    outcome.request.address = Some(addr);
    outcome.peer = Some(addr);
    outcome
}

/// A client view of `scheme://addr/healthz` for tests against a loopback server: [`view_url`]'s
/// view of target `t`, but unverified TLS (the servers' certificates are made at test time), the
/// HTTP version left to the server, 200-299, User-Agent `parallax/0.1`, a 3 s timeout, rise 1 /
/// fall 1.
pub(crate) fn loopback_view(scheme: Scheme, addr: SocketAddr) -> View {
    let mut view = view_url("t", "client", &format!("{}://{addr}/healthz", scheme.as_str()));
    view.tls.verify = false;
    view.http.user_agent = Some("parallax/0.1".into());
    view.http.version = HttpVersion::Auto;
    view.expect.status = vec![200..=299];
    view.timeout = Duration::from_secs(3);
    view.rise = 1;
    view.fall = 1;
    view
}

/// `(url_display, path, shown)`: what [`View::path_display`] shows, and so what the JSON `path`
/// field, `parallax check` and attribution evidence show, for a view with this display URL and
/// path: secret substitutions redacted, no fragment, `/` for no path.
pub(crate) const PATH_DISPLAY_CASES: &[(&str, &str, &str)] = &[
    ("http://127.0.0.1:80/healthz", "/healthz", "/healthz"),
    ("http://127.0.0.1:80", "/", "/"),
    ("http://h/a?key=<redacted>", "/a?key=s3cret", "/a?key=<redacted>"),
    ("http://h?key=<redacted>#frag", "/?key=s3cret", "/?key=<redacted>"),
    ("http://h/<b>?q=1", "/%3Cb%3E?q=1", "/%3Cb%3E?q=1"),
    ("http://h/p#<redacted>", "/p", "/p"),
    ("http://h/p?q=1#frag", "/p?q=1", "/p?q=1"),
    ("http://u:<redacted>@h/p", "/p", "/p"),
    // Never more than the display URL shows, even for a path it does not.
    ("tcp://10.0.0.5:30080", "/healthz", "/"),
];

/// The users' view of the `shop` target in most unit tests: `https://shop.example.com/cart`.
pub(crate) fn shop_client() -> View {
    view_url("shop", "client", "https://shop.example.com/cart")
}

/// A checker of `shop` with plain HTTP to node port 30080 (no profile).
pub(crate) fn shop_nlb() -> View {
    view_url("shop", "nlb", "http://10.0.0.5:30080/healthz")
}

/// [`shop_nlb`] with the `aws-nlb` profile, which decides its documented source ranges.
pub(crate) fn shop_aws_nlb() -> View {
    View { profile: Some(ProfileName::AwsNlb), ..shop_nlb() }
}

/// The Host header `view` sends when it dialed `dialed` ([`View::host_header`]), owned: what
/// the probe engine hands the HTTP and gRPC layers.
pub(crate) fn host_header(view: &View, dialed: SocketAddr) -> Option<String> {
    view.host_header(Dialed::Address(dialed)).map(std::borrow::Cow::into_owned)
}

/// `s` as an IP address.
pub(crate) fn ip(s: &str) -> IpAddr {
    s.parse().expect("test IP address")
}

/// A deadline far enough away that only a broken test reaches it.
pub(crate) fn soon() -> Instant {
    Instant::now() + Duration::from_secs(5)
}

/// Listens on `ip_str`, port 0: the address, and the one connection the test's client makes,
/// accepted within 10 s (a client that never comes fails the test rather than hanging it).
pub(crate) async fn accept_one(
    ip_str: &str,
) -> (SocketAddr, impl Future<Output = TcpStream> + Send + 'static) {
    let listener = TcpListener::bind((ip(ip_str), 0)).await.expect("bind a loopback listener");
    let addr = listener.local_addr().expect("the listener's address");
    let accepted = async move {
        let accepted = tokio::time::timeout(Duration::from_secs(10), listener.accept()).await;
        accepted.expect("a connection within 10 s").expect("accept").0
    };
    (addr, accepted)
}
