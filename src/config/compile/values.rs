//! Value parsers: durations, thresholds, body limits, nameservers, address families,
//! User-Agents, source addresses, `ca_file`s, endpoints, statuses and methods. The methods
//! report errors at a key; the free functions return what is wrong for the caller to place.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

use super::Compiler;
use crate::config::key_path::Location;
use crate::config::load::{self, InputError, MAX_CA_FILE_BYTES};
use crate::config::raw::{RawIpVersion, Toggle};
use crate::config::view::{Endpoint, Host, IpVersion, Source, SourceBind};

/// Largest `max_body_bytes` accepted: bodies are held in memory, per probe in flight.
const MAX_BODY_BYTES_CAP: u64 = 16 * 1024 * 1024;
/// Longest `interval`: the slowest real checker probes every 5 minutes.
const MAX_INTERVAL: Duration = Duration::from_secs(60 * 60);
/// Longest `timeout` (it is also below `interval`).
const MAX_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// Longest `hold` and `attribution_interval`.
const MAX_HOLD: Duration = Duration::from_secs(24 * 60 * 60);

/// The longest duration accepted at `key`, as docs/configuration.md's Limits section says.
pub(super) fn duration_cap(key: &str) -> Duration {
    match key {
        "interval" => MAX_INTERVAL,
        "timeout" => MAX_TIMEOUT,
        // `hold`, `attribution_interval`.
        _ => MAX_HOLD,
    }
}

impl Compiler<'_> {
    pub(super) fn source(&mut self, at: &Location, raw: &str, freebind: bool) -> Option<SourceBind> {
        let s = self.plain(at, "source", raw)?;
        let s = s.trim();
        let requested = if s.contains('/') {
            s.parse::<IpNet>().ok().map(Source::Net)
        } else {
            s.parse::<IpAddr>().ok().map(Source::Addr)
        };
        let Some(requested) = requested else {
            self.error(
                at,
                "source",
                format!("`{s}` is not an IP address or CIDR (e.g. 10.0.0.7 or 10.0.0.0/24)"),
            );
            return None;
        };
        match pick_source(requested, freebind) {
            Ok(addr) => Some(SourceBind { requested, addr }),
            Err(message) => {
                self.error(at, "source", message);
                None
            }
        }
    }

    pub(super) fn ca_file(&mut self, at: &Location, raw: &str) -> Option<PathBuf> {
        let s = self.plain(at, "ca_file", raw)?;
        let path = self.dir.join(s.trim());
        // Watched even when it cannot be read now: it may appear (a Secret volume synced later
        // than the ConfigMap that names it).
        self.read_files.insert(path.clone());
        match load::read_input(&path, MAX_CA_FILE_BYTES) {
            Err(InputError::TooLarge) => self.error(
                at,
                "ca_file",
                format!("{} is larger than {} KiB", path.display(), MAX_CA_FILE_BYTES / 1024),
            ),
            Err(e) => self.error(at, "ca_file", format!("{} {e}", path.display())),
            Ok(text) if !text.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") => self.error(
                at,
                "ca_file",
                format!("{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)", path.display()),
            ),
            Ok(_) => return Some(path),
        }
        None
    }

    /// A duration above 0 and at most [`duration_cap`]`(key)`.
    pub(super) fn duration(&mut self, at: &Location, key: &str, raw: &str) -> Option<Duration> {
        let d = self.bounded_duration(at, key, raw)?;
        if d.is_zero() {
            self.error(at, key, "must be above 0 (e.g. 1s)");
            return None;
        }
        Some(d)
    }

    /// A duration, 0 allowed, at most [`duration_cap`]`(key)`: deadlines are computed by
    /// adding durations to instants, which a duration of centuries would overflow.
    pub(super) fn bounded_duration(&mut self, at: &Location, key: &str, raw: &str) -> Option<Duration> {
        let s = self.plain(at, key, raw)?;
        match humantime::parse_duration(s.trim()) {
            Ok(d) if d > duration_cap(key) => {
                let cap = human(duration_cap(key));
                self.error(at, key, format!("`{}` is too long: {key} is at most {cap}", s.trim()));
                None
            }
            Ok(d) => Some(d),
            Err(_) if s.trim().parse::<f64>().is_ok() => {
                let n = s.trim();
                self.error(
                    at,
                    key,
                    format!("`{n}` has no unit: write \"{n}s\" or \"{n}ms\" (e.g. 500ms, 2s, 1m)"),
                );
                None
            }
            Err(e) => {
                self.error(at, key, format!("`{s}` is not a duration (e.g. 500ms, 2s, 1m): {e}"));
                None
            }
        }
    }

    pub(super) fn threshold(
        &mut self,
        at: &Location,
        key: &str,
        raw: Option<u32>,
        profile: u32,
    ) -> Option<u32> {
        match raw {
            Some(0) => {
                self.error(at, key, format!("{key} = 0 would never change the verdict: use 1 or more"));
                None
            }
            Some(n) => Some(n),
            None => Some(profile),
        }
    }

    pub(super) fn max_body_bytes(&mut self, at: &Location, key: &str, raw: u64) -> Option<usize> {
        if raw == 0 || raw > MAX_BODY_BYTES_CAP {
            self.error(at, key, format!("{raw} is out of range: use 1 to {MAX_BODY_BYTES_CAP} (16 MiB)"));
            return None;
        }
        usize::try_from(raw).ok()
    }

    pub(super) fn resolver(&mut self, at: &Location, key: &str, raw: &str) -> Option<SocketAddr> {
        let s = self.plain(at, key, &self.bracket_node_ip(raw.trim()))?;
        match parse_resolver(s.trim()) {
            Some(addr) => Some(addr),
            None => {
                self.error(
                    at,
                    key,
                    format!("`{s}` is not a nameserver address: write an IP or ip:port (e.g. 10.0.0.10 or [fd00::a]:53)"),
                );
                None
            }
        }
    }

    pub(super) fn ip_version(&mut self, at: &Location, key: &str, raw: &RawIpVersion) -> Option<IpVersion> {
        let s = self.plain(at, key, &raw.0)?;
        match s.trim().to_ascii_lowercase().as_str() {
            "any" => Some(IpVersion::Any),
            "4" | "v4" => Some(IpVersion::V4),
            "6" | "v6" => Some(IpVersion::V6),
            _ => {
                self.error(at, key, format!("`{s}` is not an IP version: use \"any\", 4 or 6"));
                None
            }
        }
    }

    pub(super) fn user_agent(&mut self, at: &Location, key: &str, raw: &Toggle) -> Option<Option<String>> {
        match raw {
            Toggle::Off => Some(None),
            Toggle::Value(v) => {
                let ua = self.plain(at, key, v)?;
                if ua.is_empty() || http::HeaderValue::from_str(&ua).is_err() {
                    self.error(
                        at,
                        key,
                        format!("`{ua}` is not a User-Agent value (use user_agent = false to send none)"),
                    );
                    return None;
                }
                Some(Some(ua))
            }
        }
    }
}

pub(super) use crate::duration::human;

/// A DNS name (LDH labels, `_` allowed for service names) of at most 253 bytes.
pub(super) fn valid_dns_name(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// A host as written in a URL or `connect_to`: an IP literal or a DNS name.
pub(super) fn parse_host(s: &str) -> Result<Host, String> {
    let bare = s.strip_prefix('[').and_then(|b| b.strip_suffix(']')).unwrap_or(s);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(Host::Ip(ip));
    }
    let lower = s.to_ascii_lowercase();
    if valid_dns_name(&lower) {
        Ok(Host::Name(lower.strip_suffix('.').unwrap_or(&lower).to_owned()))
    } else {
        Err(format!("`{s}` is not a DNS name or an IP address"))
    }
}

/// `host:port` or `[v6]:port`.
pub(super) fn parse_endpoint(s: &str) -> Result<Endpoint, String> {
    if let Ok(sa) = s.parse::<SocketAddr>() {
        if sa.port() == 0 {
            return Err(format!("`{s}`: port 0 cannot be dialed"));
        }
        return Ok(Endpoint { host: Host::Ip(sa.ip()), port: sa.port() });
    }
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(format!("`{s}` is not host:port (the port is required, e.g. 203.0.113.10:443)"));
    };
    if host.contains(':') && !host.starts_with('[') {
        return Err(format!("`{s}`: an IPv6 address needs brackets, e.g. [2001:db8::1]:443"));
    }
    let port = match port.parse::<u16>() {
        Ok(p) if p != 0 => p,
        _ => return Err(format!("`{s}`: `{port}` is not a port (1-65535)")),
    };
    if host.is_empty() {
        return Err(format!("`{s}` has an empty host"));
    }
    Ok(Endpoint { host: parse_host(host)?, port })
}

/// `ip`, `ip:port`, `[v6]` or `[v6]:port`; the port defaults to 53.
fn parse_resolver(s: &str) -> Option<SocketAddr> {
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return (sa.port() != 0).then_some(sa);
    }
    let bare = s.strip_prefix('[').and_then(|b| b.strip_suffix(']')).unwrap_or(s);
    bare.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53))
}

pub(super) fn parse_net(s: &str) -> Option<IpNet> {
    let s = s.trim();
    s.parse::<IpNet>().ok().or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
}

/// `200`, `"200"`, `"200-299"` or `"2xx"`.
pub(super) fn parse_status(s: &str) -> Result<RangeInclusive<u16>, String> {
    let s = s.trim();
    let code = |t: &str| -> Result<u16, String> {
        match t.trim().parse::<u16>() {
            Ok(c) if (100..=599).contains(&c) => Ok(c),
            _ => Err(format!("`{t}` is not an HTTP status (100-599)")),
        }
    };
    let lower = s.to_ascii_lowercase();
    if let Some(digit) = lower.strip_suffix("xx") {
        let d = code(&format!("{digit}00"))?;
        return Ok(d..=d + 99);
    }
    match s.split_once('-') {
        Some((lo, hi)) => {
            let (lo, hi) = (code(lo)?, code(hi)?);
            if lo > hi {
                return Err(format!("status range `{s}` is backwards: write low-high, e.g. {hi}-{lo}"));
            }
            Ok(lo..=hi)
        }
        None => code(s).map(|c| c..=c),
    }
}

/// A method token; methods are case-sensitive, so `get` is a mistake, not an extension method.
pub(super) fn parse_method(m: &str) -> Result<http::Method, String> {
    const KNOWN: [&str; 9] = ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "CONNECT"];
    let upper = m.to_ascii_uppercase();
    if m != upper && KNOWN.contains(&upper.as_str()) {
        return Err(format!("`{m}`: methods are case-sensitive; write `{upper}`"));
    }
    let token =
        !m.is_empty() && m.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    match http::Method::from_bytes(m.as_bytes()) {
        Ok(method) if token => Ok(method),
        _ => Err(format!("`{m}` is not an HTTP method (e.g. GET, HEAD, OPTIONS)")),
    }
}

/// The address to bind for `requested`: with `freebind`, the address itself or the network's
/// first host address; without, a local address, found by binding a UDP socket to each candidate
/// (binding sends no packet).
fn pick_source(requested: Source, freebind: bool) -> Result<IpAddr, String> {
    match requested {
        Source::Addr(addr) => {
            if freebind || can_bind(addr) {
                Ok(addr)
            } else {
                Err(format!("source {addr} is not an address of this host: add it to an interface, or set freebind = true"))
            }
        }
        Source::Net(net) => {
            let first = first_host(net);
            if freebind {
                return Ok(first);
            }
            let mut candidates: Vec<IpAddr> = if_addrs::get_if_addrs()
                .map(|ifs| ifs.iter().map(|i| i.ip()).filter(|ip| net.contains(ip)).collect())
                .unwrap_or_default();
            candidates.push(first);
            candidates.into_iter().find(|ip| can_bind(*ip)).ok_or_else(|| {
                format!(
                    "source {net} holds no address of this host: add one to an interface, or set freebind = true to bind {first} anyway"
                )
            })
        }
    }
}

fn can_bind(ip: IpAddr) -> bool {
    UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

/// The first host address of `net` (the network address itself for /31, /32, /127 and /128).
fn first_host(net: IpNet) -> IpAddr {
    match net {
        IpNet::V4(n) if n.prefix_len() >= 31 => IpAddr::V4(n.network()),
        IpNet::V4(n) => IpAddr::V4(Ipv4Addr::from(u32::from(n.network()).saturating_add(1))),
        IpNet::V6(n) if n.prefix_len() >= 127 => IpAddr::V6(n.network()),
        IpNet::V6(n) => IpAddr::V6(Ipv6Addr::from(u128::from(n.network()).saturating_add(1))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_forms() {
        assert_eq!(parse_status("200"), Ok(200..=200));
        assert_eq!(parse_status("200-299"), Ok(200..=299));
        assert_eq!(parse_status("3xx"), Ok(300..=399));
        assert!(parse_status("299-200").is_err_and(|m| m.contains("backwards")));
        assert!(parse_status("700").is_err());
        assert!(parse_status("abc").is_err());
    }

    #[test]
    fn first_host_of_networks() {
        let net = |s: &str| s.parse::<IpNet>().unwrap_or_default();
        assert_eq!(
            first_host(net("10.0.0.0/24")),
            "10.0.0.1".parse::<IpAddr>().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
        );
        assert_eq!(first_host(net("10.0.0.7/32")).to_string(), "10.0.0.7");
        assert_eq!(first_host(net("fd00::/64")).to_string(), "fd00::1");
    }

    #[test]
    fn endpoints_and_resolvers() {
        assert!(parse_endpoint("[::1]:443").is_ok_and(|e| e.port == 443));
        assert!(parse_endpoint("lb.example.com:8443")
            .is_ok_and(|e| e.host == Host::Name("lb.example.com".into())));
        assert!(parse_endpoint("::1:443").is_err());
        assert!(parse_endpoint("host").is_err());
        assert_eq!(parse_resolver("10.0.0.10").map(|a| a.port()), Some(53));
        assert_eq!(parse_resolver("[fd00::a]:5353").map(|a| a.port()), Some(5353));
        assert_eq!(parse_resolver("dns.example"), None);
    }

    #[test]
    fn methods() {
        assert!(parse_method("OPTIONS").is_ok());
        assert!(parse_method("get").is_err_and(|m| m.contains("write `GET`")));
        assert!(parse_method("GE T").is_err());
        assert!(parse_method("").is_err());
    }
}
