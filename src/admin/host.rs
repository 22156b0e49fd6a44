//! Which `Host` the admin server answers: a defence against DNS rebinding, where a page in a
//! browser on the same host resolves its own name to 127.0.0.1 and reads the status API, the
//! metrics and the dashboard as same-origin. Such a request always carries the attacker's name
//! in `Host`, so only these are served:
//!
//! - the listen address's IP (`127.0.0.1`, `[::1]`), with or without a port — any IP literal
//!   when listening on a wildcard address (`0.0.0.0`, `[::]`: a kubelet probes `podIP:port`;
//!   a page cannot make a browser send an IP literal it was not loaded from);
//! - `localhost`;
//! - the names of `[admin] allowed_hosts`.
//!
//! The port is not checked (port forwards change it), names are compared case-insensitively
//! without a trailing dot. A request without `Host` (HTTP/1.0) is served: browsers always send
//! one. An absolute-form request target's authority stands for `Host`, as RFC 9112 says.

use std::net::{IpAddr, SocketAddr};

use http::header::HOST;
use http::Request;

/// What [`HostPolicy::check`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum HostCheck {
    /// Serve it.
    Allowed,
    /// Not a host this server answers: 421.
    Foreign,
    /// Several `Host` headers, or one that is not text: 400.
    Malformed,
}

/// The hosts answered (see the module comment).
#[derive(Debug, Clone)]
pub(super) struct HostPolicy {
    listen: IpAddr,
    wildcard: bool,
    /// `localhost` and `[admin] allowed_hosts`, lowercase; IP entries in `ips`.
    names: Vec<String>,
    ips: Vec<IpAddr>,
}

impl HostPolicy {
    /// The policy of a server listening on `listen`, answering `allowed` too.
    pub(super) fn new(listen: SocketAddr, allowed: &[String]) -> HostPolicy {
        let mut names = vec!["localhost".to_owned()];
        let mut ips = Vec::new();
        for name in allowed {
            let name = normalise(name);
            match name.parse::<IpAddr>() {
                Ok(ip) => ips.push(ip),
                Err(_) => names.push(name),
            }
        }
        HostPolicy { listen: listen.ip(), wildcard: listen.ip().is_unspecified(), names, ips }
    }

    /// Whether `request` may be served.
    pub(super) fn check<B>(&self, request: &Request<B>) -> HostCheck {
        if let Some(authority) = request.uri().authority() {
            return self.verdict(authority.host());
        }
        let mut hosts = request.headers().get_all(HOST).iter();
        match (hosts.next(), hosts.next()) {
            (None, _) => HostCheck::Allowed,
            (Some(_), Some(_)) => HostCheck::Malformed,
            (Some(value), None) => match value.to_str() {
                Ok(value) => self.verdict(strip_port(value.trim())),
                Err(_) => HostCheck::Malformed,
            },
        }
    }

    fn verdict(&self, host: &str) -> HostCheck {
        if self.allows(host) {
            HostCheck::Allowed
        } else {
            HostCheck::Foreign
        }
    }

    /// `host` without its port.
    fn allows(&self, host: &str) -> bool {
        let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return self.wildcard || ip == self.listen || self.ips.contains(&ip);
        }
        let name = normalise(bare);
        !name.is_empty() && self.names.contains(&name)
    }
}

/// Lowercase, without a trailing dot.
fn normalise(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

/// `name:port` → `name`, `[v6]:port` → `[v6]`; a bare IPv6 address (not valid in `Host`, but
/// unambiguous) stays whole.
fn strip_port(value: &str) -> &str {
    if value.starts_with('[') {
        return match value.find(']') {
            Some(end) => &value[..=end],
            None => value,
        };
    }
    match value.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(host: Option<&str>) -> Request<()> {
        let mut r = Request::builder().uri("/api/v1/status");
        if let Some(host) = host {
            r = r.header(HOST, host);
        }
        r.body(()).expect("request")
    }

    fn policy(listen: &str, allowed: &[&str]) -> HostPolicy {
        let allowed: Vec<String> = allowed.iter().map(|s| s.to_string()).collect();
        HostPolicy::new(listen.parse().expect("listen"), &allowed)
    }

    #[test]
    fn the_listen_address_localhost_and_allowed_names_pass_others_do_not() {
        let p = policy("127.0.0.1:9464", &["Parallax.Internal", "10.1.2.3"]);
        for ok in [
            "127.0.0.1",
            "127.0.0.1:9464",
            "127.0.0.1:8080",
            "localhost",
            "LOCALHOST:9464",
            "localhost.",
            "parallax.internal",
            "parallax.internal.:9464",
            "10.1.2.3:9464",
        ] {
            assert_eq!(p.check(&request(Some(ok))), HostCheck::Allowed, "{ok}");
        }
        for foreign in
            ["evil.example", "evil.example:9464", "127.0.0.2", "[::1]:9464", "localhost.evil.example", ""]
        {
            assert_eq!(p.check(&request(Some(foreign))), HostCheck::Foreign, "{foreign:?}");
        }
        assert_eq!(p.check(&request(None)), HostCheck::Allowed, "no Host (HTTP/1.0)");
    }

    #[test]
    fn ipv6_listen_addresses_are_matched_in_brackets() {
        let p = policy("[::1]:9464", &[]);
        assert_eq!(p.check(&request(Some("[::1]:9464"))), HostCheck::Allowed);
        assert_eq!(p.check(&request(Some("[::1]"))), HostCheck::Allowed);
        assert_eq!(p.check(&request(Some("::1"))), HostCheck::Allowed);
        assert_eq!(p.check(&request(Some("127.0.0.1"))), HostCheck::Foreign);
    }

    #[test]
    fn a_wildcard_listen_address_takes_any_ip_literal_but_no_other_name() {
        for listen in ["0.0.0.0:9464", "[::]:9464"] {
            let p = policy(listen, &[]);
            assert_eq!(p.check(&request(Some("10.244.1.7:9464"))), HostCheck::Allowed, "{listen}");
            assert_eq!(p.check(&request(Some("[fd00::7]:9464"))), HostCheck::Allowed, "{listen}");
            assert_eq!(p.check(&request(Some("evil.example"))), HostCheck::Foreign, "{listen}");
        }
    }

    #[test]
    fn an_absolute_target_is_checked_and_duplicate_hosts_are_malformed() {
        let p = policy("127.0.0.1:9464", &[]);
        let absolute = Request::builder()
            .uri("http://evil.example/api/v1/status")
            .header(HOST, "127.0.0.1")
            .body(())
            .expect("request");
        assert_eq!(p.check(&absolute), HostCheck::Foreign);
        let twice = Request::builder()
            .uri("/")
            .header(HOST, "127.0.0.1")
            .header(HOST, "evil.example")
            .body(())
            .expect("request");
        assert_eq!(p.check(&twice), HostCheck::Malformed);
    }
}
