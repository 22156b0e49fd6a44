//! The demo's targets: the field failure each reproduces ([`SCENARIOS`]), `parallax demo
//! --help`'s account of them, and the `probes.d` text that watches their backends.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;

pub(super) use crate::config::toml_string;
use crate::diff::{Diagnosis, Direction};

/// Every demo target, in the order the plan, the dashboard and the table show them.
pub const SCENARIOS: [Scenario; 8] = [
    Scenario {
        target: "healthy",
        expected: None,
        shows: "A healthy HTTPS shop: the users' request, an AWS ALB check (by IP, no SNI, no \
                certificate check) and the node's kube-proxy health port all pass. The baseline: \
                no mismatch.",
    },
    Scenario {
        target: "shallow-health",
        expected: Some(Expected {
            checker: "alb",
            direction: Direction::Blackhole,
            diagnosis: Diagnosis::ShallowHealthPath,
        }),
        shows: "/healthz answers 200 from memory while /cart answers 503 (its database is down): the \
                ALB keeps the backend in service while users get errors.",
    },
    Scenario {
        target: "tls-port",
        expected: Some(Expected {
            checker: "alb",
            direction: Direction::FalseDrain,
            diagnosis: Diagnosis::CheckerProtocolMismatch,
        }),
        shows: "The ALB checks a TLS-only port with plain HTTP: its check fails (http_tls_required) \
                while HTTPS users are served, so it drains a working backend.",
    },
    Scenario {
        target: "etp-local",
        expected: Some(Expected {
            checker: "kube-proxy",
            direction: Direction::FalseDrain,
            diagnosis: Diagnosis::NoLocalEndpoints,
        }),
        shows: "externalTrafficPolicy: Local on a node without a local pod: kube-proxy's \
                healthCheckNodePort answers 503 {\"localEndpoints\":0} while the node port still \
                serves users.",
    },
    Scenario {
        target: "allowlist",
        expected: Some(Expected {
            checker: "gcp",
            direction: Direction::FalseDrain,
            diagnosis: Diagnosis::CheckerSourceBlocked,
        }),
        shows: "allow_sources (the LB's source allowlist) lacks GCP's health-check ranges \
                35.191.0.0/16 and 130.211.0.0/22: found by the audit, without traffic, while every \
                probe from here passes.",
    },
    Scenario {
        target: "no-sni",
        expected: Some(Expected {
            checker: "appgw",
            direction: Direction::FalseDrain,
            diagnosis: Diagnosis::SniMismatch,
        }),
        shows: "An Azure Application Gateway v2 probe by IP sends no SNI and verifies the \
                certificate: the ingress answers with its default certificate, whose name does not \
                match (tls_cert_name_mismatch).",
    },
    Scenario {
        target: "host-route",
        expected: Some(Expected {
            checker: "alb",
            direction: Direction::FalseDrain,
            diagnosis: Diagnosis::HostRouteMismatch,
        }),
        shows: "A host-routed ingress sends Host blog.test to the app and anything else to its \
                default backend's 404; the ALB's Host is the target's ip:port.",
    },
    Scenario {
        target: "status-204",
        expected: Some(Expected {
            checker: "gcp",
            direction: Direction::FalseDrain,
            diagnosis: Diagnosis::StatusMatcherMismatch,
        }),
        shows: "The readiness path answers 204 No Content: browsers and kubelet accept it, GCP's \
                health check accepts only 200.",
    },
];

/// One demo target: the failure it reproduces and what parallax should name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scenario {
    /// Target name.
    pub target: &'static str,
    /// The mismatch parallax opens for it; `None` for the healthy target.
    pub expected: Option<Expected>,
    /// What it reproduces, for `parallax demo --help`.
    pub shows: &'static str,
}

/// The mismatch a demo target opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected {
    /// The checker view that disagrees with the client view.
    pub checker: &'static str,
    /// Which way.
    pub direction: Direction,
    /// The diagnosis.
    pub diagnosis: Diagnosis,
}

/// `parallax demo --help`'s account of the targets.
pub fn help() -> String {
    let mut out = String::from(
        "Demo targets (every view is probed each second; a disagreement that lasts 2 s\nis a mismatch):\n",
    );
    for s in &SCENARIOS {
        let _ = write!(out, "\n  {}\n", s.target);
        for line in wrap(s.shows, 88) {
            let _ = writeln!(out, "      {line}");
        }
        if let Some(e) = s.expected {
            let _ =
                writeln!(out, "      -> client vs {}: {} / {}", e.checker, e.direction.as_str(), e.diagnosis);
        }
    }
    out.push('\n');
    let closing = "The backends listen on 127.0.0.11 to 127.0.0.18 (127.0.0.1 where only that one exists) \
                   inside this process, with certificates made at start; nothing is sent beyond loopback. \
                   While it runs, open the dashboard URL it prints, or read the same data at \
                   /api/v1/status and /metrics.";
    for line in wrap(closing, 94) {
        let _ = write!(out, "\n{line}");
    }
    out
}

/// Words of `text` in lines of at most `width` characters.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// Where each backend listens, for the configuration.
pub(super) struct Addrs {
    pub(super) healthy: SocketAddr,
    pub(super) healthy_kube_proxy: SocketAddr,
    pub(super) shallow: SocketAddr,
    pub(super) tls_port: SocketAddr,
    pub(super) etp_node_port: SocketAddr,
    pub(super) etp_kube_proxy: SocketAddr,
    pub(super) allowlist: SocketAddr,
    pub(super) no_sni: SocketAddr,
    pub(super) host_route: SocketAddr,
    pub(super) status_204: SocketAddr,
}

/// The settings every demo view shares: each probed every second, a disagreement held 2 s is a
/// mismatch.
const DEFAULTS: &str =
    "# parallax demo: every backend below runs inside the parallax process, on loopback.\n\
                        [defaults]\n\
                        interval = \"1s\"\n\
                        timeout = \"800ms\"\n\
                        hold = \"2s\"\n";

/// The demo's configuration for backends at `a`, verifying with `ca_file`: one `[[target]]` per
/// scenario, in [`SCENARIOS`] order.
pub(super) fn config_text(a: &Addrs, ca_file: &Path) -> String {
    let ca = toml_string(&ca_file.display().to_string());
    let mut text = String::from(DEFAULTS);
    for target in targets(a, &ca) {
        text.push_str(&target);
    }
    text
}

/// Each scenario's `[[target]]` table, its backends at `a`, `ca` the CA file as a TOML string.
fn targets(a: &Addrs, ca: &str) -> [String; 8] {
    [
        target(
            "healthy",
            "",
            client("https", "shop.test", a.healthy, "/", ca),
            &[
                checker("alb", "aws-alb", format!("https://{}/healthz", a.healthy), ""),
                checker("kube-proxy", "kube-proxy", format!("http://{}/healthz", a.healthy_kube_proxy), ""),
            ],
        ),
        target(
            "shallow-health",
            "",
            client("http", "cart.test", a.shallow, "/cart", ca),
            &[checker("alb", "aws-alb", format!("http://{}/healthz", a.shallow), "")],
        ),
        target(
            "tls-port",
            "",
            client("https", "api.test", a.tls_port, "/", ca),
            &[checker("alb", "aws-alb", format!("http://{}/", a.tls_port), "")],
        ),
        target(
            "etp-local",
            "",
            client("http", "web.test", a.etp_node_port, "/", ca),
            &[checker("kube-proxy", "kube-proxy", format!("http://{}/healthz", a.etp_kube_proxy), "")],
        ),
        target(
            "allowlist",
            "allow_sources = [\"198.51.100.0/24\"]\n",
            client("http", "app.test", a.allowlist, "/", ca),
            &[checker("gcp", "gcp", format!("http://{}/healthz", a.allowlist), "")],
        ),
        target(
            "no-sni",
            "",
            client("https", "portal.test", a.no_sni, "/", ca),
            &[checker(
                "appgw",
                "azure-appgw",
                format!("https://{}/", a.no_sni),
                &format!("ca_file = {ca}\n"),
            )],
        ),
        target(
            "host-route",
            "",
            client("http", "blog.test", a.host_route, "/", ca),
            &[checker("alb", "aws-alb", format!("http://{}/", a.host_route), "")],
        ),
        target(
            "status-204",
            "",
            client("http", "search.test", a.status_204, "/ready", ca),
            &[checker("gcp", "gcp", format!("http://{}/ready", a.status_204), "")],
        ),
    ]
}

/// A client view's keys: it names the service as users do and dials the backend directly
/// (`connect_to`), so no DNS is involved; over HTTPS it verifies with the demo CA (`ca`).
fn client(scheme: &str, name: &str, addr: SocketAddr, path: &str, ca: &str) -> String {
    let url = toml_string(&format!("{scheme}://{name}:{}{path}", addr.port()));
    let mut keys = format!("url = {url}\nconnect_to = {}\n", toml_string(&addr.to_string()));
    if scheme == "https" {
        let _ = writeln!(keys, "ca_file = {ca}");
    }
    keys
}

/// A `[[target.checker]]` table: the checker dials the backend's address (`url`) as the LB does.
fn checker(name: &str, profile: &str, url: String, extra: &str) -> String {
    format!(
        "\n[[target.checker]]\nname = {}\nprofile = {}\nurl = {}\n{extra}",
        toml_string(name),
        toml_string(profile),
        toml_string(&url)
    )
}

/// A `[[target]]` table with its `[target.client]` keys and its checker tables.
fn target(name: &str, extra: &str, client: String, checkers: &[String]) -> String {
    format!(
        "\n[[target]]\nname = {}\n{extra}\n[target.client]\n{client}{}",
        toml_string(name),
        checkers.concat()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_names_every_target_and_its_diagnosis() {
        let help = help();
        for s in &SCENARIOS {
            assert!(help.contains(&format!("\n  {}\n", s.target)), "{}", s.target);
            if let Some(e) = s.expected {
                assert!(help.contains(e.diagnosis.as_str()), "{}", e.diagnosis);
            }
        }
        assert!(help.lines().all(|l| l.chars().count() <= 100), "{help}");
    }
}
