//! `parallax profiles`: every checker profile in one line, and one profile's card — what that
//! checker sends, how it judges, and the sources it rests on.
//!
//! Nothing on a card is written by hand for it: the rules come from the profile's defaults
//! (`config::profiles`), and the bytes on the wire are the probe engine's own rendering
//! (`probe::http::shown_request_head`) of a checker view compiled, like `parallax probe URL
//! --as NAME`, from an example URL.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;

use crate::config::profiles::{self, ProfileDefaults};
use crate::config::{AdHoc, Dialed, HostHeader, HttpVersion, InitialHealth, ProfileName, ProxyVersion, Sni};
use crate::probe::proxy_protocol;

/// The users' URL of the example.
pub const EXAMPLE_URL: &str = "https://shop.example.com/";
/// Where the example's checker probes: a node port and a health path.
pub const EXAMPLE_CHECK_URL: &str = "http://10.0.1.5:31080/healthz";
/// The example check connection's local address, for its PROXY header.
const EXAMPLE_CHECK_SOURCE: &str = "10.0.1.100:40000";

/// One profile in one line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Line {
    /// The profile's name (`aws-alb`).
    pub profile: ProfileName,
    /// What it emulates.
    pub summary: &'static str,
}

/// Every profile, in one line each.
pub fn list() -> Vec<Line> {
    ProfileName::ALL.iter().map(|&profile| Line { profile, summary: profiles::summary(profile) }).collect()
}

/// What one checker sends and how it judges.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Card {
    /// The profile's name.
    pub profile: ProfileName,
    /// What it emulates.
    pub summary: &'static str,
    /// What the checker sends.
    pub sends: Sends,
    /// One check of [`EXAMPLE_CHECK_URL`], as the probe engine writes it.
    pub example: Example,
    /// How the checker judges.
    pub judges: Judges,
    /// The addresses the real checker probes from (the `allow_sources` audit).
    pub source_ranges: Vec<&'static str>,
    /// The sources the profile rests on: URLs and issue references.
    pub sources: Vec<&'static str>,
}

/// What a checker sends, rule by rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sends {
    /// `GET <path> HTTP/1.1`.
    pub request_line: String,
    /// The Host rule.
    pub host: String,
    /// The User-Agent, `null` for none.
    pub user_agent: Option<&'static str>,
    /// Headers after Host and User-Agent, in wire order.
    pub headers: Vec<String>,
    /// `Title-Case` or `lowercase` header names.
    pub header_case: &'static str,
    /// The HTTP version rule.
    pub http_version: &'static str,
    /// The SNI rule on TLS checks.
    pub sni: String,
    /// Whether the certificate is verified.
    pub verify: bool,
    /// ALPN offered on TLS checks.
    pub alpn: Vec<&'static str>,
    /// The PROXY header it sends when the port speaks the PROXY protocol.
    pub proxy_protocol: String,
}

/// One example check, as written on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Example {
    /// The URL checked.
    pub url: &'static str,
    /// The users' URL of the same target.
    pub client_url: &'static str,
    /// The request head, one line each, without line ends.
    pub request: Vec<String>,
    /// The PROXY v1 header it would send first, as text (without its CRLF).
    pub proxy_v1: String,
    /// The PROXY v2 header it would send first, in hex.
    pub proxy_v2_hex: String,
}

/// How a checker judges.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Judges {
    /// Accepted statuses (`200`, `200-399`).
    pub status: Vec<String>,
    /// Whether kube-proxy's `localEndpoints` must be above 0.
    pub local_endpoints: bool,
    /// Check interval, milliseconds.
    pub interval_ms: u128,
    /// Check timeout, milliseconds.
    pub timeout_ms: u128,
    /// Consecutive successes to become healthy.
    pub rise: u32,
    /// Consecutive failures to become unhealthy.
    pub fall: u32,
    /// The verdict before enough checks decide it.
    pub initial: InitialHealth,
}

/// The card of `profile`; an error only if the example view cannot be compiled or rendered
/// (a bug: the example is fixed).
pub async fn card(profile: ProfileName) -> Result<Card, String> {
    let d = profiles::defaults(profile);
    let adhoc = AdHoc {
        url: EXAMPLE_URL.to_owned(),
        profiles: vec![profile.as_str().to_owned()],
        check_url: Some(EXAMPLE_CHECK_URL.to_owned()),
        ..AdHoc::default()
    };
    let plan = adhoc.compile(&HashMap::<String, String>::new()).map_err(|e| e.to_string())?;
    let view = plan.targets.first().and_then(|t| t.checkers.first()).ok_or("no checker view compiled")?;
    let host = view.host_header(Dialed::Endpoint(view.dial_endpoint())).map(|h| h.into_owned());
    let request =
        crate::probe::http::shown_request_head(view, false, host.as_deref()).await.map_err(|e| e.detail)?;
    let peer = SocketAddr::new(
        match &view.dial_endpoint().host {
            crate::config::Host::Ip(ip) => *ip,
            crate::config::Host::Name(_) => return Err("the example dials a name".to_owned()),
        },
        view.dial_endpoint().port,
    );
    let local: SocketAddr = EXAMPLE_CHECK_SOURCE.parse().map_err(|_| "the example source")?;
    let v1 = proxy_protocol::encode(d.proxy_header(ProxyVersion::V1), local, peer);
    let v2 = proxy_protocol::encode(d.proxy_header(ProxyVersion::V2), local, peer);
    let example = Example {
        url: EXAMPLE_CHECK_URL,
        client_url: EXAMPLE_URL,
        request,
        proxy_v1: String::from_utf8_lossy(&v1).trim_end().to_owned(),
        proxy_v2_hex: v2.iter().fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        }),
    };
    Ok(Card {
        profile,
        summary: profiles::summary(profile),
        sends: sends(&d),
        example,
        judges: Judges {
            status: d.status.iter().map(crate::config::status_range_text).collect(),
            local_endpoints: d.kube_proxy_endpoints,
            interval_ms: d.interval.as_millis(),
            timeout_ms: d.timeout.as_millis(),
            rise: d.rise,
            fall: d.fall,
            initial: d.initial,
        },
        source_ranges: d.source_ranges.to_vec(),
        sources: profiles::sources(profile),
    })
}

/// The sending rules of `d`, in words.
fn sends(d: &ProfileDefaults) -> Sends {
    let version = match d.http_version {
        HttpVersion::Http10 => "HTTP/1.0",
        HttpVersion::Http11 => "HTTP/1.1",
        HttpVersion::Http2 => "HTTP/2",
        HttpVersion::Auto => "HTTP/1.1",
    };
    let mut headers: Vec<String> = d.headers.iter().map(|(n, v)| format!("{n}: {v}")).collect();
    if d.connection_close {
        headers.push("Connection: close".to_owned());
    }
    let proxy = |version| {
        if d.proxy_header(version).local {
            "LOCAL (no addresses)"
        } else {
            "PROXY with the check connection's addresses"
        }
    };
    Sends {
        request_line: format!("{} <path> {version}", d.method),
        host: match &d.host {
            HostHeader::FromUrl => "the URL's host (and port, unless the scheme's default)".to_owned(),
            HostHeader::DialedAddress => "the dialed ip:port".to_owned(),
            HostHeader::DialedIp => "the dialed IP, without the port".to_owned(),
            HostHeader::Value(v) => format!("always {v}"),
            HostHeader::None => "none (no Host header)".to_owned(),
        },
        user_agent: d.user_agent,
        headers,
        header_case: if d.title_case_headers { "Title-Case" } else { "lowercase" },
        http_version: match d.http_version {
            HttpVersion::Auto => "HTTP/2 when ALPN selects h2 (TLS), else HTTP/1.1",
            _ => version,
        },
        sni: match &d.sni {
            Sni::FromUrl => "the URL's host name (none for an IP)".to_owned(),
            Sni::Name(name) => format!("always {name}"),
            Sni::None => "none".to_owned(),
        },
        verify: d.verify,
        alpn: d.alpn.to_vec(),
        proxy_protocol: format!(
            "none unless the port speaks it (--proxy-protocol, proxy_protocol); v1: {}; v2: {}",
            proxy(ProxyVersion::V1),
            proxy(ProxyVersion::V2)
        ),
    }
}

/// [`list`] as aligned text.
pub fn list_text(lines: &[Line]) -> String {
    let width = lines.iter().map(|l| l.profile.as_str().len()).max().unwrap_or(0);
    let mut out = String::new();
    for l in lines {
        let _ = writeln!(out, "{:<width$}  {}", l.profile.as_str(), l.summary);
    }
    out.push_str("\nWhat one sends, byte for byte, and how it judges: parallax profiles NAME\n");
    out
}

/// A card as text for people.
pub fn card_text(c: &Card) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{} — {}\n\nSends", c.profile, c.summary);
    let s = &c.sends;
    let row = |out: &mut String, label: &str, value: &str| {
        let _ = writeln!(out, "  {label:<15} {value}");
    };
    row(&mut out, "request line", &s.request_line);
    row(&mut out, "Host", &s.host);
    row(&mut out, "User-Agent", s.user_agent.unwrap_or("none"));
    row(
        &mut out,
        "other headers",
        &if s.headers.is_empty() { "none".to_owned() } else { s.headers.join(", ") },
    );
    row(&mut out, "header case", s.header_case);
    row(&mut out, "HTTP version", s.http_version);
    row(&mut out, "SNI (TLS)", &s.sni);
    row(&mut out, "certificate", if s.verify { "verified (chain and name)" } else { "not verified" });
    row(&mut out, "ALPN (TLS)", &if s.alpn.is_empty() { "none".to_owned() } else { s.alpn.join(", ") });
    row(&mut out, "PROXY protocol", &s.proxy_protocol);
    row(&mut out, "connection", "a fresh one per check");
    let e = &c.example;
    let _ = writeln!(out, "\nOn the wire, checking {} (users reach {}):", e.url, e.client_url);
    for l in &e.request {
        let _ = writeln!(out, "  {l}\\r\\n");
    }
    let _ = writeln!(out, "  \\r\\n");
    let _ = writeln!(out, "  with --proxy-protocol v1, first: {}\\r\\n", e.proxy_v1);
    let _ = writeln!(out, "  with --proxy-protocol v2, first (hex): {}", e.proxy_v2_hex);
    let j = &c.judges;
    let _ = writeln!(out, "\nJudges");
    let mut passes = j.status.join(", ");
    if j.local_endpoints {
        passes.push_str(", and localEndpoints above 0 in the JSON body");
    }
    row(&mut out, "passes on", &passes);
    row(
        &mut out,
        "interval",
        &format!(
            "{}, timeout {}",
            duration(Duration::from_millis(j.interval_ms as u64)),
            duration(Duration::from_millis(j.timeout_ms as u64))
        ),
    );
    row(&mut out, "rise / fall", &format!("{} / {}", j.rise, j.fall));
    let starts = match j.initial {
        InitialHealth::Unhealthy => format!("unhealthy until {} successes", j.rise),
        InitialHealth::Healthy => format!("healthy until {} failures", j.fall),
        InitialHealth::FirstProbe => "the first check decides".to_owned(),
    };
    row(&mut out, "starts", &starts);
    row(
        &mut out,
        "source ranges",
        &if c.source_ranges.is_empty() { "-".to_owned() } else { c.source_ranges.join(", ") },
    );
    let _ = writeln!(out, "\nSources");
    if c.sources.is_empty() {
        let _ = writeln!(out, "  none: parallax's own defaults");
    }
    for source in &c.sources {
        let _ = writeln!(out, "  {source}");
    }
    let _ = writeln!(
        out,
        "\nTry it: parallax probe {EXAMPLE_URL} --as {} --check-url {EXAMPLE_CHECK_URL}",
        c.profile
    );
    out
}

/// `30s`, `4.9s`, `900ms`.
fn duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{}s", ms as f64 / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The card's bytes are the engine's: aws-alb's example is exactly what
    /// tests/wire_fidelity.rs records from a real probe, in Title-Case.
    #[tokio::test]
    async fn the_alb_card_shows_its_exact_request_and_its_sources() {
        let c = card(ProfileName::AwsAlb).await.expect("card");
        assert_eq!(
            c.example.request,
            [
                "GET /healthz HTTP/1.1",
                "Host: 10.0.1.5:31080",
                "User-Agent: ELB-HealthChecker/2.0",
                "Connection: close"
            ]
        );
        assert_eq!(c.example.proxy_v1, "PROXY TCP4 10.0.1.100 10.0.1.5 40000 31080");
        assert_eq!(c.sends.request_line, "GET <path> HTTP/1.1");
        assert!(c.sources.iter().any(|s| s.starts_with("https://docs.aws.amazon.com/")));
        let text = card_text(&c);
        assert!(text.contains("User-Agent: ELB-HealthChecker/2.0\\r\\n"), "{text}");
        assert!(
            !text.contains("CHECKERS.md") && !text.contains("../"),
            "no file outside the repository: {text}"
        );
    }

    #[tokio::test]
    async fn every_profile_has_a_card_and_haproxy_sends_nothing_but_its_line() {
        for p in ProfileName::ALL {
            let c = card(*p).await.unwrap_or_else(|e| panic!("{p}: {e}"));
            assert!(!c.example.request.is_empty(), "{p}");
        }
        let h = card(ProfileName::Haproxy).await.expect("card");
        assert_eq!(h.example.request, ["OPTIONS /healthz HTTP/1.0"]);
        assert_eq!(h.example.proxy_v2_hex, "0d0a0d0a000d0a515549540a20000000", "v2 LOCAL");
        assert_eq!(list().len(), ProfileName::ALL.len());
        assert_eq!(duration(Duration::from_millis(4900)), "4.9s");
    }
}
