//! HAProxy, the lab's load balancer: its configuration as typed backends (rendered to
//! `haproxy.cfg` and, for the parity test, to parallax `haproxy`-profile views of the very same
//! checks), and its servers' states read from the stats socket (`show stat`).
//!
//! Frontends on the VIP: `:80` (HTTP) and `:8443` (TLS terminated here, with the shop
//! certificate) to the ingress on the nodes' `:80`, checked on the NodePort; `:443` passed
//! through in TCP mode to the nodes' `:443`, checked on kube-proxy's `healthCheckNodePort`
//! (ETP Local); `:8080` in TCP mode to the nodes' PROXY-protocol listener with `send-proxy-v2`.
//! More backends exist only to be checked: one server per kind of check the lab can break.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use super::certs::Pki;
use super::{LB_CHECKER_IP, NODE_IPS, VIP};

/// HAProxy's proxy mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `mode http`.
    Http,
    /// `mode tcp`.
    Tcp,
}

/// A backend's health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// A connect (and, with `check-ssl`, a TLS handshake) only.
    Connect,
    /// `option httpchk METHOD PATH` and, when set, `http-check send hdr Host HOST`.
    Http { method: &'static str, path: &'static str, host: Option<&'static str> },
}

/// PROXY protocol on a server (`send-proxy` / `send-proxy-v2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proxy {
    /// `send-proxy`.
    V1,
    /// `send-proxy-v2`.
    V2,
}

/// One `server` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// Its name.
    pub name: &'static str,
    /// Where traffic goes.
    pub addr: SocketAddr,
    /// `port`: checks go to this port instead.
    pub check_port: Option<u16>,
    /// `check-ssl verify none`: checks speak TLS (without verification).
    pub check_ssl: bool,
    /// `check-sni`.
    pub check_sni: Option<&'static str>,
    /// `send-proxy` / `send-proxy-v2` (checks send it too unless `port` is set).
    pub proxy: Option<Proxy>,
    /// `source`: the address traffic and checks come from.
    pub source: Option<Ipv4Addr>,
}

impl Server {
    fn new(name: &'static str, node: usize, port: u16) -> Server {
        Server {
            name,
            addr: SocketAddr::from((NODE_IPS[node], port)),
            check_port: None,
            check_ssl: false,
            check_sni: None,
            proxy: None,
            source: None,
        }
    }

    fn port(mut self, port: u16) -> Server {
        self.check_port = Some(port);
        self
    }

    fn ssl(mut self) -> Server {
        self.check_ssl = true;
        self
    }

    fn sni(mut self, name: &'static str) -> Server {
        self.check_sni = Some(name);
        self
    }

    fn proxy(mut self, version: Proxy) -> Server {
        self.proxy = Some(version);
        self
    }

    fn source(mut self, ip: Ipv4Addr) -> Server {
        self.source = Some(ip);
        self
    }

    /// Where HAProxy's check connects.
    pub fn check_addr(&self) -> SocketAddr {
        SocketAddr::new(self.addr.ip(), self.check_port.unwrap_or(self.addr.port()))
    }

    /// The PROXY header HAProxy's check sends: the server's, unless `port` moves the check.
    pub fn check_proxy(&self) -> Option<Proxy> {
        if self.check_port.is_some() {
            None
        } else {
            self.proxy
        }
    }
}

/// One `backend`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    /// Its name.
    pub name: &'static str,
    /// Its mode.
    pub mode: Mode,
    /// Its health check.
    pub check: Check,
    /// Its servers.
    pub servers: Vec<Server>,
}

/// HAProxy's check thresholds in the lab: its defaults, written out (`rise 2 fall 3`).
pub const RISE: u32 = 2;
/// See [`RISE`].
pub const FALL: u32 = 3;

/// The frontends: (name, bind address, mode, TLS termination, backend).
const FRONTENDS: &[(&str, u16, Mode, bool, &str)] = &[
    ("fe_http", 80, Mode::Http, false, "be_ingress_http"),
    ("fe_passthrough", 443, Mode::Tcp, false, "be_ingress_tls"),
    ("fe_edge_tls", 8443, Mode::Http, true, "be_ingress_http"),
    ("fe_proxy", 8080, Mode::Tcp, false, "be_ingress_proxy"),
];

/// The VIP addresses HAProxy listens on.
pub fn frontend_addrs() -> Vec<SocketAddr> {
    FRONTENDS.iter().map(|f| SocketAddr::from((VIP, f.1))).collect()
}

/// Every backend of the lab's HAProxy.
pub fn backends() -> Vec<Backend> {
    let options = Check::Http { method: "OPTIONS", path: "/", host: None };
    let healthz = Check::Http { method: "GET", path: "/healthz", host: None };
    vec![
        // Traffic backends.
        Backend {
            name: "be_ingress_http",
            mode: Mode::Http,
            check: options.clone(),
            servers: vec![Server::new("n1", 0, 80).port(30080), Server::new("n2", 1, 80).port(30080)],
        },
        Backend {
            name: "be_ingress_tls",
            mode: Mode::Tcp,
            check: healthz.clone(),
            servers: vec![Server::new("n1", 0, 443).port(32456), Server::new("n2", 1, 443).port(32456)],
        },
        Backend {
            name: "be_ingress_proxy",
            mode: Mode::Tcp,
            check: options.clone(),
            servers: vec![
                Server::new("n1", 0, 8080).proxy(Proxy::V2),
                Server::new("n2", 1, 8080).proxy(Proxy::V2),
            ],
        },
        // Checked only: each server one way a check passes or fails.
        Backend {
            name: "be_hc_options",
            mode: Mode::Http,
            check: options,
            servers: vec![
                Server::new("default_vhost_404", 0, 80),
                Server::new("plain_http_to_tls", 0, 443),
                Server::new("tls_no_sni_default_vhost", 0, 443).ssl(),
                Server::new("tls_sni_shop", 0, 443).ssl().sni("shop.lab"),
                Server::new("tls_to_plain_http", 0, 80).ssl(),
                Server::new("pod_https", 0, 8443).ssl(),
                Server::new("proxy_listener_without_header", 0, 8080),
                Server::new("proxy_listener_v1", 0, 8080).proxy(Proxy::V1),
                Server::new("header_to_plain_listener", 0, 30080).proxy(Proxy::V2),
                Server::new("node_port", 1, 30080),
                Server::new("source_blocked", 0, 30080).source(LB_CHECKER_IP),
                Server::new("refused", 0, 9),
            ],
        },
        Backend {
            name: "be_hc_healthz",
            mode: Mode::Http,
            check: healthz,
            servers: vec![
                Server::new("controller_healthz", 0, 80),
                Server::new("controller_healthz_tls", 1, 443).ssl(),
                Server::new("kube_proxy_node1", 0, 32456),
                Server::new("kube_proxy_node2", 1, 32456),
            ],
        },
        Backend {
            name: "be_hc_shop_ready",
            mode: Mode::Http,
            check: Check::Http { method: "GET", path: "/ready", host: Some("shop.lab") },
            servers: vec![Server::new("ready_204", 0, 80)],
        },
        Backend {
            name: "be_hc_www",
            mode: Mode::Http,
            check: Check::Http { method: "GET", path: "/", host: Some("www.lab") },
            servers: vec![Server::new("ssl_redirect_308", 0, 80)],
        },
        Backend {
            name: "be_hc_admin",
            mode: Mode::Http,
            check: Check::Http { method: "GET", path: "/", host: Some("admin.lab") },
            servers: vec![Server::new("auth_401", 0, 80)],
        },
        Backend {
            name: "be_hc_checkout",
            mode: Mode::Http,
            check: Check::Http { method: "GET", path: "/pay", host: Some("checkout.lab") },
            servers: vec![Server::new("dependency_503", 1, 80)],
        },
        Backend {
            name: "be_hc_tcp",
            mode: Mode::Tcp,
            check: Check::Connect,
            servers: vec![
                Server::new("connect", 0, 443),
                Server::new("connect_refused", 1, 9),
                Server::new("connect_blocked", 1, 443).source(LB_CHECKER_IP),
                Server::new("tls_handshake", 1, 443).ssl(),
                Server::new("tls_to_plain_http", 1, 80).ssl(),
            ],
        },
    ]
}

/// `haproxy.cfg`: a stats socket, the frontends and `backends`; checks every 200 ms with the
/// default thresholds (rise 2, fall 3); logs on stderr.
pub fn config(stats_socket: &Path, pki: &Pki, backends: &[Backend]) -> String {
    let mut cfg = format!(
        "global\n    log stderr format raw local0 info\n    stats socket {} mode 600 level admin\n\n\
         defaults\n    mode http\n    log global\n    timeout connect 1s\n    timeout client 5s\n    \
         timeout server 5s\n    timeout check 1s\n    default-server inter 200ms rise {RISE} fall {FALL}\n\n",
        stats_socket.display()
    );
    for (name, port, mode, tls, backend) in FRONTENDS {
        cfg.push_str(&format!("frontend {name}\n    mode {}\n", mode_str(*mode)));
        let ssl =
            if *tls { format!(" ssl crt {}", pki.pair("shop").combined.display()) } else { String::new() };
        cfg.push_str(&format!("    bind {VIP}:{port}{ssl}\n    default_backend {backend}\n\n"));
    }
    for b in backends {
        cfg.push_str(&format!("backend {}\n    mode {}\n", b.name, mode_str(b.mode)));
        if let Check::Http { method, path, host } = &b.check {
            cfg.push_str(&format!("    option httpchk {method} {path}\n"));
            if let Some(h) = host {
                cfg.push_str(&format!("    http-check send hdr Host {h}\n"));
            }
        }
        for s in &b.servers {
            let mut line = format!("    server {} {} check", s.name, s.addr);
            if let Some(p) = s.check_port {
                line.push_str(&format!(" port {p}"));
            }
            if s.check_ssl {
                line.push_str(" check-ssl verify none");
            }
            if let Some(sni) = s.check_sni {
                line.push_str(&format!(" check-sni {sni}"));
            }
            match s.proxy {
                Some(Proxy::V1) => line.push_str(" send-proxy"),
                Some(Proxy::V2) => line.push_str(" send-proxy-v2"),
                None => {}
            }
            if let Some(src) = s.source {
                line.push_str(&format!(" source {src}"));
            }
            cfg.push_str(&line);
            cfg.push('\n');
        }
        cfg.push('\n');
    }
    cfg
}

fn mode_str(mode: Mode) -> &'static str {
    match mode {
        Mode::Http => "http",
        Mode::Tcp => "tcp",
    }
}

/// parallax's `haproxy`-profile view of each server's check, one target per server named
/// [`parity_target`], with the same request: address and port, TLS and SNI, method, path, Host,
/// PROXY header and source. Run where HAProxy runs (the LB namespace).
pub fn parity_toml(backends: &[Backend]) -> String {
    let mut toml = String::new();
    for b in backends {
        for s in &b.servers {
            let addr = s.check_addr();
            let (url, method, host) = match (&b.check, s.check_ssl) {
                (Check::Connect, false) => (format!("tcp://{addr}"), None, None),
                (Check::Connect, true) => (format!("tls://{addr}"), None, None),
                (Check::Http { method, path, host }, ssl) => {
                    let scheme = if ssl { "https" } else { "http" };
                    (format!("{scheme}://{addr}{path}"), Some(*method), *host)
                }
            };
            toml.push_str(&format!(
                "[[target]]\nname = \"{}\"\nattribution = false\n\n[target.client]\nurl = \"tcp://{addr}\"\n\n\
                 [[target.checker]]\nname = \"haproxy\"\nprofile = \"haproxy\"\nurl = \"{url}\"\n",
                parity_target(b, s)
            ));
            if let Some(m) = method {
                toml.push_str(&format!("method = \"{m}\"\n"));
            }
            if let Some(h) = host {
                toml.push_str(&format!("host = \"{h}\"\n"));
            }
            if let Some(sni) = s.check_sni {
                toml.push_str(&format!("sni = \"{sni}\"\n"));
            }
            match s.check_proxy() {
                Some(Proxy::V1) => toml.push_str("proxy_protocol = \"v1\"\n"),
                Some(Proxy::V2) => toml.push_str("proxy_protocol = \"v2\"\n"),
                None => {}
            }
            if let Some(src) = s.source {
                toml.push_str(&format!("source = \"{src}\"\n"));
            }
            toml.push('\n');
        }
    }
    toml
}

/// The parity target of a server: `ha.<backend>.<server>`.
pub fn parity_target(b: &Backend, s: &Server) -> String {
    format!("ha.{}.{}", b.name, s.name)
}

/// One server's line of `show stat`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerState {
    /// `pxname`.
    pub backend: String,
    /// `svname`.
    pub server: String,
    /// `status`: `UP`, `DOWN`, or in transition (`UP 1/3`, `DOWN 1/2`).
    pub status: String,
    /// `check_status`: `L7OK`, `L7STS`, `L4TOUT`, `L4CON`, `L6OK`, `L6RSP`, `INI`...
    pub check_status: String,
    /// `last_chk`: HAProxy's note on the last check.
    pub last_check: String,
}

impl ServerState {
    /// Checked at least once and not between states. (A `* ` before the check status only
    /// says that the next check is under way, which is always so when checks time out.)
    pub fn settled(&self) -> bool {
        let last = self.check_status.trim_start_matches("* ");
        !last.is_empty() && last != "INI" && (self.status == "UP" || self.status == "DOWN")
    }

    /// `Some(true)` UP, `Some(false)` DOWN, `None` in transition.
    pub fn up(&self) -> Option<bool> {
        match self.status.as_str() {
            "UP" => Some(true),
            "DOWN" => Some(false),
            _ => None,
        }
    }
}

/// Every server of `show stat` (frontends and backend totals left out).
pub fn show_stat(socket: &Path) -> Result<Vec<ServerState>, String> {
    let mut stream = UnixStream::connect(socket).map_err(|e| format!("connect {}: {e}", socket.display()))?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).map_err(|e| e.to_string())?;
    stream.write_all(b"show stat\n").map_err(|e| format!("write: {e}"))?;
    let mut text = String::new();
    // HAProxy closes the connection after answering one command; the size bound keeps a
    // misbehaving socket from filling memory.
    (&mut stream).take(4 << 20).read_to_string(&mut text).map_err(|e| format!("read: {e}"))?;
    let mut lines = text.lines();
    let header = lines.next().ok_or("empty answer")?.trim_start_matches("# ");
    let cols: Vec<&str> = header.split(',').collect();
    let col =
        |name: &str| cols.iter().position(|c| *c == name).ok_or(format!("no column {name} in {header}"));
    let (px, sv, st, chk, last) =
        (col("pxname")?, col("svname")?, col("status")?, col("check_status")?, col("last_chk")?);
    let mut states = Vec::new();
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split(',').collect();
        let get = |i: usize| f.get(i).copied().unwrap_or_default().to_owned();
        let server = get(sv);
        if server == "FRONTEND" || server == "BACKEND" {
            continue;
        }
        states.push(ServerState {
            backend: get(px),
            server,
            status: get(st),
            check_status: get(chk),
            last_check: get(last),
        });
    }
    Ok(states)
}
