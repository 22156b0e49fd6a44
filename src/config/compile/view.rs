//! One view — `[target.client]` or a `[[target.checker]]` — compiled in named steps, in the order
//! their errors are reported: identity (name and profile), dialing and its cross-checks, the
//! keys that mean nothing for the scheme, TLS, HTTP, the matcher, timing, DNS. Each step reports
//! every error it finds and returns what compiled; the view is built only if none was found.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use config::Value;

use super::settings::{Defaults, Layered};
use super::url::UrlParts;
use super::values::{human, parse_endpoint, parse_method, parse_status, valid_dns_name};
use super::Compiler;
use crate::config::key_path::Location;
use crate::config::profiles::{self, ProfileDefaults};
use crate::config::raw::{RawExpect, RawHeaders, RawView, Toggle};
use crate::config::secret::{MaybeSecret, Secret};
use crate::config::view::*;

/// Longest `body_regex` pattern accepted.
const MAX_REGEX_LEN: usize = 4096;
/// Compiled-program size limit of `body_regex`, so a pattern cannot cost unbounded memory.
const REGEX_SIZE_LIMIT: usize = 1024 * 1024;
/// Header names whose values are always secrets.
const SECRET_HEADERS: [&str; 3] = ["authorization", "proxy-authorization", "cookie"];

/// Where a view's effective value came from, for messages.
#[derive(Debug, Clone)]
enum Origin {
    /// The view's own key.
    View,
    /// `[defaults]`, as described by [`Layered::from`].
    Defaults(String),
    /// The profile (or client) defaults, described.
    Profile(String),
}

impl Origin {
    /// ` (from ...)` after a value in a message; nothing for the view's own key.
    fn suffix(&self) -> String {
        match self {
            Origin::View => String::new(),
            Origin::Defaults(d) => format!(" (from {d})"),
            Origin::Profile(p) => format!(" (from {p})"),
        }
    }
}

/// The view's name and profile, and the defaults that profile (or the client role) supplies.
struct Identity {
    name: Option<String>,
    profile: Option<ProfileName>,
    supplied: ProfileDefaults,
    /// `profile aws-nlb`, `the client defaults`...: where a supplied value came from.
    supplied_by: String,
}

/// Where and how the view dials.
struct Dialing {
    url: Option<UrlParts>,
    connect_to: Option<Endpoint>,
    freebind: bool,
    source: Option<SourceBind>,
    ip_version: Option<IpVersion>,
    ip_version_from: Origin,
    proxy_protocol: Option<ProxyHeader>,
}

/// How often, how long, and how many results change the verdict.
struct Timing {
    interval: Duration,
    timeout: Duration,
    rise: u32,
    fall: u32,
    max_body_bytes: usize,
}

/// Which nameserver to ask, and what it must answer.
struct Dns {
    resolver: Option<SocketAddr>,
    expect_addresses: Vec<IpAddr>,
}

impl Compiler<'_> {
    /// Compiles one view of `target` (`role` says which kind) over `defaults`.
    pub(super) fn view(
        &mut self,
        at: &Location,
        value: Value,
        role: Role,
        target: &Arc<str>,
        defaults: &Defaults,
    ) -> Option<View> {
        // `name` and `profile` are checker keys: a client view's unknown key is not offered them.
        let not_here: &[&str] = if role == Role::Client { &["name", "profile"] } else { &[] };
        let raw: RawView = self.deserialize_in(at, value, not_here)?;
        let before = self.errors.len();
        let identity = self.identity(at, &raw, role);
        let dialing = self.dialing(at, &raw, defaults, &identity.supplied);
        if let Some(url) = &dialing.url {
            self.cross_check_dialing(at, url, &dialing);
            self.scheme_keys(at, &raw, url);
        }
        let tls = self.tls(at, &raw, &identity.supplied, dialing.url.as_ref());
        let http = self.http(at, &raw, &identity, defaults, dialing.url.as_ref());
        let expect = self.expect(at, raw.expect.as_ref(), role, &identity.supplied);
        let timing = self.timing(at, &raw, defaults, &identity);
        let dns = self.dns(at, &raw, defaults);
        if self.errors.len() > before {
            return None;
        }
        let name = self.view_name(identity.name?);
        let (url, timing, dns) = (dialing.url?, timing?, dns?);
        Some(View {
            target: target.clone(),
            // `target()` sets the target's `id` once every view is compiled.
            target_id: target.clone(),
            name,
            role,
            profile: identity.profile,
            scheme: url.scheme,
            url_endpoint: url.endpoint,
            path: url.path,
            url_display: url.display,
            connect_to: dialing.connect_to,
            source: dialing.source,
            freebind: dialing.freebind,
            ip_version: dialing.ip_version?,
            proxy_protocol: dialing.proxy_protocol,
            tls: tls?,
            http: http?,
            expect: expect?,
            interval: timing.interval,
            timeout: timing.timeout,
            rise: timing.rise,
            fall: timing.fall,
            initial: identity.supplied.initial,
            max_body_bytes: timing.max_body_bytes,
            resolver: dns.resolver,
            each_address: raw.each_address.unwrap_or(false),
            expect_addresses: dns.expect_addresses,
        })
    }

    /// Name and profile: the client view is always `client` and has none; a checker needs a
    /// name, and its profile (or `generic`) supplies the defaults.
    fn identity(&mut self, at: &Location, raw: &RawView, role: Role) -> Identity {
        let (name, profile) = match role {
            Role::Client => {
                for (key, set) in [("name", raw.name.is_some()), ("profile", raw.profile.is_some())] {
                    if set {
                        self.error(
                            at,
                            key,
                            format!("unknown key `{key}`: the client view is always `client` and has no profile (only [[target.checker]] views take name and profile)"),
                        );
                    }
                }
                (Some("client".to_owned()), None)
            }
            Role::Checker => {
                (self.checker_name(at, raw.name.as_deref()), self.profile(at, raw.profile.as_deref()))
            }
        };
        let (supplied, supplied_by) = match (role, profile) {
            (Role::Client, _) => (profiles::client_defaults(), "the client defaults".to_owned()),
            (Role::Checker, Some(profile)) => (profiles::defaults(profile), format!("profile {profile}")),
            (Role::Checker, None) => {
                (profiles::defaults(ProfileName::Generic), "the generic checker defaults".to_owned())
            }
        };
        Identity { name, profile, supplied, supplied_by }
    }

    fn checker_name(&mut self, at: &Location, raw: Option<&str>) -> Option<String> {
        let name = match raw {
            None => {
                self.error(
                    at,
                    "name",
                    "missing name: every checker view needs a name, unique within its target",
                );
                None
            }
            Some(raw) => self.plain(at, "name", raw).and_then(|n| self.name(at, "name", n)),
        };
        if name.as_deref() == Some("client") {
            self.error(at, "name", "`client` is the client view's name; name this checker something else");
        }
        name
    }

    fn profile(&mut self, at: &Location, raw: Option<&str>) -> Option<ProfileName> {
        let written = self.plain(at, "profile", raw?)?;
        let found = ProfileName::from_name(written.trim());
        if found.is_none() {
            let valid: Vec<&str> = ProfileName::ALL.iter().map(|name| name.as_str()).collect();
            self.error(
                at,
                "profile",
                format!("unknown profile `{written}`; valid profiles: {}", valid.join(", ")),
            );
        }
        found
    }

    /// URL, `connect_to`, `source`, `ip_version` and the PROXY header.
    fn dialing(
        &mut self,
        at: &Location,
        raw: &RawView,
        defaults: &Defaults,
        supplied: &ProfileDefaults,
    ) -> Dialing {
        let url = match &raw.url {
            None => {
                self.error(
                    at,
                    "url",
                    "missing url: every view needs one (http, https, tcp, tls, grpc or grpcs)",
                );
                None
            }
            Some(u) => self.url(at, u),
        };
        let connect_to = raw.connect_to.as_ref().and_then(|c| {
            let s = self.plain(at, "connect_to", &self.bracket_node_ip(c.trim()))?;
            parse_endpoint(s.trim()).map_err(|m| self.error(at, "connect_to", m)).ok()
        });
        let freebind = raw.freebind.unwrap_or(false);
        let source = raw.source.as_ref().and_then(|s| self.source(at, s, freebind));
        let (ip_version, ip_version_from) = match &raw.ip_version {
            Some(v) => (self.ip_version(at, "ip_version", v), Origin::View),
            None => match &defaults.ip_version {
                Some(d) => (Some(d.value), Origin::Defaults(d.from.clone())),
                None => (Some(IpVersion::Any), Origin::View),
            },
        };
        let proxy_protocol = raw.proxy_protocol.as_ref().and_then(|v| {
            let s = self.plain(at, "proxy_protocol", v)?;
            let version = match s.trim().to_ascii_lowercase().as_str() {
                "v1" => ProxyVersion::V1,
                "v2" => ProxyVersion::V2,
                _ => {
                    self.error(
                        at,
                        "proxy_protocol",
                        format!("`{s}` is not a PROXY protocol version: use \"v1\" or \"v2\""),
                    );
                    return None;
                }
            };
            // LOCAL only for v2 (HAProxy's v1 check header carries addresses): the profile decides.
            Some(supplied.proxy_header(version))
        });
        Dialing { url, connect_to, freebind, source, ip_version, ip_version_from, proxy_protocol }
    }

    /// The dialed address, the address family and the source must agree.
    fn cross_check_dialing(&mut self, at: &Location, url: &UrlParts, dialing: &Dialing) {
        let dialed = dialing.connect_to.as_ref().unwrap_or(&url.endpoint);
        let from = dialing.ip_version_from.suffix();
        if let Host::Ip(ip) = &dialed.host {
            let wrong = match dialing.ip_version {
                Some(IpVersion::V4) => ip.is_ipv6(),
                Some(IpVersion::V6) => ip.is_ipv4(),
                _ => false,
            };
            if wrong {
                let v = if ip.is_ipv6() { 4 } else { 6 };
                self.error(
                    at,
                    "ip_version",
                    format!("ip_version {v}{from} contradicts the address {dialed} this view dials"),
                );
            }
            if let Some(s) = &dialing.source {
                if s.addr.is_ipv4() != ip.is_ipv4() {
                    self.error(
                        at,
                        "source",
                        format!("source {} is not of the same address family as {dialed}, the address this view dials", s.requested),
                    );
                }
            }
        }
        if let (Some(s), Some(v @ (IpVersion::V4 | IpVersion::V6))) = (&dialing.source, dialing.ip_version) {
            if s.addr.is_ipv4() != (v == IpVersion::V4) {
                self.error(
                    at,
                    "source",
                    format!(
                        "source {} contradicts ip_version {}{from}",
                        s.requested,
                        if v == IpVersion::V4 { 4 } else { 6 },
                    ),
                );
            }
        }
    }

    /// Keys that mean nothing for the URL's scheme are mistakes worth reporting.
    fn scheme_keys(&mut self, at: &Location, raw: &RawView, url: &UrlParts) {
        let expect = raw.expect.as_ref();
        let http_keys = [
            ("method", raw.method.is_some()),
            ("headers", raw.headers.is_some()),
            ("body", raw.body.is_some()),
            ("expect.status", expect.is_some_and(|e| e.status.is_some())),
            ("expect.body_contains", expect.is_some_and(|e| e.body_contains.is_some())),
            ("expect.body_regex", expect.is_some_and(|e| e.body_regex.is_some())),
        ];
        let scheme = url.scheme.as_str();
        if !url.scheme.uses_http() {
            let why = if url.scheme.uses_grpc() {
                "the gRPC health check sends its own request (name the service with expect.grpc_service)"
            } else {
                "no HTTP request is sent"
            };
            for (key, set) in http_keys {
                if set {
                    self.error(at, key, format!("has no effect on {scheme}:// views: {why}"));
                }
            }
        }
        if !url.scheme.uses_http() && !url.scheme.uses_grpc() {
            for (key, set) in [("host", raw.host.is_some()), ("user_agent", raw.user_agent.is_some())] {
                if set {
                    self.error(
                        at,
                        key,
                        format!("has no effect on {scheme}:// views: no HTTP request is sent"),
                    );
                }
            }
        }
        if !url.scheme.uses_grpc() && expect.is_some_and(|e| e.grpc_service.is_some()) {
            self.error(at, "expect.grpc_service", "applies to grpc:// and grpcs:// views only");
        }
        if raw.expect_addresses.as_ref().is_some_and(|a| !a.is_empty())
            && matches!(url.endpoint.host, Host::Ip(_))
        {
            self.error(
                at,
                "expect_addresses",
                "the URL's host is an IP address, so there is no DNS answer to check",
            );
        }
    }

    /// SNI, verification, `ca_file` and ALPN.
    fn tls(
        &mut self,
        at: &Location,
        raw: &RawView,
        supplied: &ProfileDefaults,
        url: Option<&UrlParts>,
    ) -> Option<TlsSettings> {
        let sni = match &raw.sni {
            None => Some(supplied.sni.clone()),
            Some(Toggle::Off) => Some(Sni::None),
            Some(Toggle::Value(v)) => self.plain(at, "sni", v).and_then(|s| {
                let s = s.trim().trim_end_matches('.').to_ascii_lowercase();
                if s.parse::<IpAddr>().is_ok() || !valid_dns_name(&s) {
                    self.error(
                        at,
                        "sni",
                        format!(
                            "`{s}` is not a DNS name (SNI carries names only; use sni = false to send none)"
                        ),
                    );
                    None
                } else {
                    Some(Sni::Name(s))
                }
            }),
        };
        let ca_file = raw.ca_file.as_ref().and_then(|c| self.ca_file(at, c));
        let grpc_tls = url.is_some_and(|u| u.scheme == Scheme::Grpcs);
        let alpn = match &raw.alpn {
            Some(list) => {
                let mut alpn = Vec::new();
                for (i, a) in list.iter().enumerate() {
                    let key = format!("alpn[{i}]");
                    let Some(a) = self.plain(at, &key, a) else { continue };
                    if a.is_empty() || a.len() > 255 || !a.bytes().all(|b| b.is_ascii_graphic()) {
                        self.error(at, &key, format!("`{a}` is not an ALPN protocol id (e.g. h2, http/1.1)"));
                    } else {
                        alpn.push(a);
                    }
                }
                if grpc_tls && !alpn.iter().any(|a| a == "h2") {
                    self.error(at, "alpn", "a grpcs:// view must offer \"h2\": gRPC runs over HTTP/2");
                }
                alpn
            }
            None if grpc_tls && !supplied.alpn.contains(&"h2") => vec!["h2".to_owned()],
            None => supplied.alpn.iter().map(|a| a.to_string()).collect(),
        };
        Some(TlsSettings { sni: sni?, verify: raw.verify.unwrap_or(supplied.verify), ca_file, alpn })
    }

    /// Method, Host, User-Agent, headers, body and version.
    fn http(
        &mut self,
        at: &Location,
        raw: &RawView,
        identity: &Identity,
        defaults: &Defaults,
        url: Option<&UrlParts>,
    ) -> Option<HttpSettings> {
        let supplied = &identity.supplied;
        let method = match &raw.method {
            None => Some(supplied.method.clone()),
            Some(m) => self.plain(at, "method", m).and_then(|m| match parse_method(m.trim()) {
                Ok(m) => Some(m),
                Err(e) => {
                    self.error(at, "method", e);
                    None
                }
            }),
        };
        let host = match &raw.host {
            None => Some(supplied.host.clone()),
            Some(Toggle::Off) => Some(HostHeader::None),
            Some(Toggle::Value(v)) => self.plain(at, "host", v).and_then(|h| {
                if h.is_empty() || http::HeaderValue::from_str(&h).is_err() {
                    self.error(
                        at,
                        "host",
                        format!("`{h}` is not a Host header value (use host = false to send none)"),
                    );
                    None
                } else {
                    Some(HostHeader::Value(h))
                }
            }),
        };
        // A checker profile's User-Agent — or its lack of one (HAProxy sends none) — is part of
        // what that checker is (servers special-case `ELB-HealthChecker/2.0`): `[defaults]
        // user_agent` only replaces parallax's own (client views, `generic`, `kube-proxy`).
        let profile_sets_agent = matches!(identity.profile, Some(profile) if profile != ProfileName::Generic)
            && supplied.user_agent != Some(profiles::PARALLAX_USER_AGENT);
        let user_agent = match &raw.user_agent {
            Some(t) => self.user_agent(at, "user_agent", t),
            None => match &defaults.user_agent {
                Some(d) if !profile_sets_agent => Some(d.value.clone()),
                _ => Some(supplied.user_agent.map(str::to_owned)),
            },
        };
        let headers =
            self.headers(at, supplied, raw.headers.as_ref(), url.and_then(|u| u.authorization.clone()));
        let body = raw.body.as_ref().and_then(|b| {
            let s = self.text(at, "body", b)?;
            Some(if s.is_secret() {
                MaybeSecret::Secret(Secret::new(s.value))
            } else {
                MaybeSecret::Plain(s.value)
            })
        });
        let version = if url.is_some_and(|u| u.scheme.uses_grpc()) {
            HttpVersion::Http2
        } else {
            supplied.http_version
        };
        Some(HttpSettings {
            method: method?,
            host: host?,
            headers: headers?,
            user_agent: user_agent?,
            body,
            version,
            connection_close: supplied.connection_close,
            title_case_headers: supplied.title_case_headers,
        })
    }

    /// Interval and timeout (the timeout below the interval), `rise`, `fall`, `max_body_bytes`.
    fn timing(
        &mut self,
        at: &Location,
        raw: &RawView,
        defaults: &Defaults,
        identity: &Identity,
    ) -> Option<Timing> {
        let supplied = &identity.supplied;
        let interval = self.layered_duration(
            at,
            "interval",
            raw.interval.as_deref(),
            &defaults.interval,
            (supplied.interval, &identity.supplied_by),
        );
        let timeout = self.layered_duration(
            at,
            "timeout",
            raw.timeout.as_deref(),
            &defaults.timeout,
            (supplied.timeout, &identity.supplied_by),
        );
        if let (Some((i, i_from)), Some((t, t_from))) = (&interval, &timeout) {
            let both_defaults = matches!((i_from, t_from), (Origin::Defaults(_), Origin::Defaults(_)));
            if t >= i && !both_defaults {
                let key = if matches!(t_from, Origin::View) || !matches!(i_from, Origin::View) {
                    "timeout"
                } else {
                    "interval"
                };
                self.error(
                    at,
                    key,
                    format!(
                        "timeout {}{} must be below interval {}{}",
                        human(*t),
                        t_from.suffix(),
                        human(*i),
                        i_from.suffix()
                    ),
                );
            }
        }
        let rise = self.threshold(at, "rise", raw.rise, supplied.rise);
        let fall = self.threshold(at, "fall", raw.fall, supplied.fall);
        let max_body_bytes = match raw.max_body_bytes {
            Some(v) => self.max_body_bytes(at, "max_body_bytes", v),
            None => Some(defaults.max_body_bytes.as_ref().map_or(DEFAULT_MAX_BODY_BYTES, |d| d.value)),
        };
        Some(Timing {
            interval: interval?.0,
            timeout: timeout?.0,
            rise: rise?,
            fall: fall?,
            max_body_bytes: max_body_bytes?,
        })
    }

    /// A duration with its origin: the view's key, else `[defaults]`, else the profile's.
    fn layered_duration(
        &mut self,
        at: &Location,
        key: &str,
        raw: Option<&str>,
        default: &Option<Layered<Duration>>,
        (supplied, supplied_by): (Duration, &str),
    ) -> Option<(Duration, Origin)> {
        match (raw, default) {
            (Some(r), _) => self.duration(at, key, r).map(|d| (d, Origin::View)),
            (None, Some(d)) => Some((d.value, Origin::Defaults(d.from.clone()))),
            (None, None) => Some((supplied, Origin::Profile(supplied_by.to_owned()))),
        }
    }

    /// The nameserver, and the addresses DNS must answer with.
    fn dns(&mut self, at: &Location, raw: &RawView, defaults: &Defaults) -> Option<Dns> {
        let resolver = match &raw.resolver {
            Some(r) => self.resolver(at, "resolver", r).map(Some),
            None => Some(defaults.resolver.as_ref().map(|d| d.value)),
        };
        let mut expect_addresses = Vec::new();
        for (i, a) in raw.expect_addresses.iter().flatten().enumerate() {
            let key = format!("expect_addresses[{i}]");
            let Some(a) = self.plain(at, &key, a) else { continue };
            match a.trim().parse::<IpAddr>() {
                Ok(ip) => expect_addresses.push(ip),
                Err(_) => self.error(
                    at,
                    &key,
                    format!("`{a}` is not an IP address (expect_addresses lists the addresses DNS must answer with)"),
                ),
            }
        }
        Some(Dns { resolver: resolver?, expect_addresses })
    }

    fn headers(
        &mut self,
        at: &Location,
        profile: &ProfileDefaults,
        raw: Option<&RawHeaders>,
        url_authorization: Option<Secret>,
    ) -> Option<Vec<(http::HeaderName, MaybeSecret)>> {
        let mut ok = true;
        let mut headers: Vec<(http::HeaderName, MaybeSecret)> = Vec::new();
        for (name, value) in profile.headers {
            // Profile headers are ours and static; a bad one would be a bug caught by the tests.
            if let Ok(n) = http::HeaderName::from_bytes(name.as_bytes()) {
                headers.push((n, MaybeSecret::Plain((*value).to_owned())));
            }
        }
        let from_url = url_authorization.is_some();
        if let Some(a) = url_authorization {
            headers.push((http::header::AUTHORIZATION, MaybeSecret::Secret(a)));
        }
        let mut set_here: Vec<http::HeaderName> = Vec::new();
        for (name, value) in raw.map(|h| h.0.as_slice()).unwrap_or_default() {
            let key = format!("headers.{name}");
            let lower = name.to_ascii_lowercase();
            let Ok(hname) = http::HeaderName::from_bytes(lower.as_bytes()) else {
                self.error(at, &key, format!("`{name}` is not a valid HTTP header name"));
                ok = false;
                continue;
            };
            let reserved = match lower.as_str() {
                "host" => Some("set the Host header with the `host` key (a value, or false for none)"),
                "user-agent" => {
                    Some("set the User-Agent with the `user_agent` key (a value, or false for none)")
                }
                "content-length" | "transfer-encoding" => Some("is computed from `body`"),
                _ => None,
            };
            if let Some(why) = reserved {
                self.error(at, &key, why);
                ok = false;
                continue;
            }
            if set_here.contains(&hname) {
                self.error(at, &key, format!("header `{lower}` is set twice"));
                ok = false;
                continue;
            }
            if from_url && hname == http::header::AUTHORIZATION {
                self.error(at, &key, "the URL's user info already sets Authorization; keep one of the two");
                ok = false;
                continue;
            }
            let Some(v) = self.text(at, &key, value) else {
                ok = false;
                continue;
            };
            let secret = v.is_secret() || SECRET_HEADERS.contains(&lower.as_str());
            if http::HeaderValue::from_bytes(v.value.as_bytes()).is_err() {
                let what = if secret && !v.is_secret() { "the value".to_owned() } else { v.describe() };
                self.error(
                    at,
                    &key,
                    format!("{what} is not a valid header value (no control characters or newlines)"),
                );
                ok = false;
                continue;
            }
            let value =
                if secret { MaybeSecret::Secret(Secret::new(v.value)) } else { MaybeSecret::Plain(v.value) };
            set_here.push(hname.clone());
            // A view's header replaces the profile's in its wire position.
            match headers.iter_mut().find(|(n, _)| *n == hname) {
                Some(slot) => slot.1 = value,
                None => headers.push((hname, value)),
            }
        }
        ok.then_some(headers)
    }

    fn expect(
        &mut self,
        at: &Location,
        raw: Option<&RawExpect>,
        role: Role,
        profile: &ProfileDefaults,
    ) -> Option<Expect> {
        let before = self.errors.len();
        let expect_at = at.child("expect");
        let status = match raw.and_then(|e| e.status.as_ref()) {
            None if role == Role::Client => vec![200..=399],
            None => profile.status.to_vec(),
            Some(list) if list.0.is_empty() => {
                self.error(
                    &expect_at,
                    "status",
                    "is empty: no response would pass (e.g. status = [\"200-299\"])",
                );
                Vec::new()
            }
            Some(list) => {
                let mut ranges = Vec::new();
                for (i, item) in list.0.iter().enumerate() {
                    match parse_status(&item.0) {
                        Ok(r) => ranges.push(r),
                        Err(m) => self.error(&expect_at, &format!("status[{i}]"), m),
                    }
                }
                ranges
            }
        };
        let body_contains = raw.and_then(|e| e.body_contains.as_ref()).and_then(|b| {
            let b = self.plain(&expect_at, "body_contains", b)?;
            if b.is_empty() {
                self.error(&expect_at, "body_contains", "is empty: it would match every body");
                return None;
            }
            Some(b)
        });
        let body_regex = raw.and_then(|e| e.body_regex.as_ref()).and_then(|r| {
            let r = self.plain(&expect_at, "body_regex", r)?;
            if r.len() > MAX_REGEX_LEN {
                self.error(
                    &expect_at,
                    "body_regex",
                    format!("is {} bytes long; the limit is {MAX_REGEX_LEN}", r.len()),
                );
                return None;
            }
            match regex::RegexBuilder::new(&r)
                .size_limit(REGEX_SIZE_LIMIT)
                .dfa_size_limit(REGEX_SIZE_LIMIT)
                .build()
            {
                Ok(re) => Some(re),
                Err(e) => {
                    self.error(&expect_at, "body_regex", format!("is not a valid regex: {e}"));
                    None
                }
            }
        });
        let grpc_service = match raw.and_then(|e| e.grpc_service.as_ref()) {
            Some(s) => self.plain(&expect_at, "grpc_service", s).unwrap_or_default(),
            None => String::new(),
        };
        if self.errors.len() > before {
            return None;
        }
        Some(Expect {
            status,
            body_contains,
            body_regex,
            kube_proxy_endpoints: profile.kube_proxy_endpoints,
            grpc_service,
        })
    }
}
