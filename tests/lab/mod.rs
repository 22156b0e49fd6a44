//! The lab: real nginx, HAProxy, dnsmasq and iptables in network namespaces that the test makes,
//! and the `parallax` binary run inside them (`ip netns exec NS parallax probe ...`).
//!
//! Topology of one lab (every address exists only inside the lab's own namespaces; the host's
//! namespace gets no address, route, rule or interface):
//!
//! ```text
//!   client ns                      lb ns (router, HAProxy, dnsmasq)            node1 / node2 ns
//!   198.51.100.10 (users)  ──veth── 198.51.100.1    br0 192.0.2.1 ──veth── 192.0.2.11 / .12
//!   35.191.0.10 (GCP HC)            VIP 203.0.113.10, HC 35.191.0.20             nginx (ingress,
//!                                   203.0.113.9: the old LB, unreachable          kube-proxy ports,
//!                                                                                 pods), iptables
//! ```
//!
//! Each node runs one nginx ([`ingress`]): the ingress controller on :80/:443 with SNI vhosts and
//! a default server, kube-proxy's node port and `healthCheckNodePort`, a PROXY-protocol
//! listener and the "pods". The nodes' iptables are the cloud firewall: only the client
//! network, the node network and one GCP range (130.211.0.0/22) may connect, so the other GCP
//! range, 35.191.0.0/16, is the health-checker CIDR missing from the allowlist. HAProxy on the
//! LB ([`haproxy`]) forwards the VIP to the nodes and health-checks them; dnsmasq on the LB
//! answers `shop.lab` with the old LB's address. For the daemon test, [`Lab::start_collector`]
//! adds an OTLP/HTTP collector ([`collector`]) and [`Lab::start_daemon`] runs `parallax run`.
//!
//! Every lab has unique namespace and interface names (the process id and a counter), so tests
//! run in parallel. [`Lab`] is a guard: dropping it, also while a failing test unwinds, kills
//! every process it started (by its pid) and deletes its namespaces, which removes their
//! interfaces, addresses, routes and rules with them. A lab that cannot be built (not root, no
//! iproute2) panics and says why: the lab never passes without running.

// Each test binary uses only part of the lab.
#![allow(dead_code)]

pub mod certs;
pub mod collector;
pub mod forward;
pub mod haproxy;
pub mod ingress;
pub mod probe;

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::time::Instant;

pub use probe::Report;

/// The users' address (client namespace).
pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
/// A GCP health-checker address (35.191.0.0/16), in the client namespace next to the users.
pub const CHECKER_IP: Ipv4Addr = Ipv4Addr::new(35, 191, 0, 10);
/// The LB's address on the client network (also the DNS server's).
pub const LB_CLIENT_SIDE_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
/// The LB's address on the node network (HAProxy's default check source).
pub const LB_NODE_SIDE_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// A GCP health-checker address on the LB itself, for HAProxy checks from a checker range.
pub const LB_CHECKER_IP: Ipv4Addr = Ipv4Addr::new(35, 191, 0, 20);
/// The load balancer's address (HAProxy's frontends).
pub const VIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
/// The old load balancer's address: decommissioned, the router answers "host unreachable".
pub const OLD_VIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 9);
/// The nodes' addresses: node 1 and node 2.
pub const NODE_IPS: [Ipv4Addr; 2] = [Ipv4Addr::new(192, 0, 2, 11), Ipv4Addr::new(192, 0, 2, 12)];
/// The DNS server (dnsmasq on the LB).
pub const DNS: SocketAddrV4 = SocketAddrV4::new(LB_CLIENT_SIDE_IP, 53);
/// What the DNS server answers for `shop.lab`: the OLD load balancer (a migration gone wrong).
pub const DNS_ANSWER_SHOP: Ipv4Addr = OLD_VIP;
/// The source ranges the nodes' firewall accepts (the `loadBalancerSourceRanges`): users, the
/// node network (LB and nodes) and one of GCP's two health-checker ranges, but not 35.191.0.0/16.
pub const FIREWALL_ALLOWED: [&str; 3] = ["198.51.100.0/24", "192.0.2.0/24", "130.211.0.0/22"];

/// How long a process may take to open its listeners.
const READY_WITHIN: Duration = Duration::from_secs(10);
/// How long a `parallax probe` run may take.
const PROBE_WITHIN: Duration = Duration::from_secs(90);
/// How long one setup command (`ip`, `iptables-restore`) may take.
const COMMAND_WITHIN: Duration = Duration::from_secs(20);

/// A namespace of the lab.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ns {
    /// Users and the external prober.
    Client,
    /// The router and load balancer.
    Lb,
    /// Node 1 (index 0) or node 2 (index 1).
    Node(usize),
}

impl Ns {
    fn role(self) -> String {
        match self {
            Ns::Client => "client".to_owned(),
            Ns::Lb => "lb".to_owned(),
            Ns::Node(i) => format!("node{}", i + 1),
        }
    }
}

/// A running lab. Dropping it tears everything down.
pub struct Lab {
    /// Configs, certificates, logs and probes.d directories.
    pub dir: tempfile::TempDir,
    /// The certificates.
    pub pki: certs::Pki,
    /// HAProxy's stats socket.
    pub stats_socket: PathBuf,
    /// The HAProxy backends configured.
    pub backends: Vec<haproxy::Backend>,
    prefix: String,
    link_id: String,
    namespaces: Vec<String>,
    processes: Vec<Process>,
    probes: AtomicU32,
}

/// A process started inside a namespace, killed by its pid when the lab drops.
struct Process {
    name: String,
    child: Child,
    log: PathBuf,
}

static LABS: AtomicU32 = AtomicU32::new(0);

impl Lab {
    /// Builds the whole lab for the test `test` and waits until every server listens and HAProxy
    /// has checked every server. Panics (failing the test) with the reason when it cannot.
    pub fn start(test: &str) -> Lab {
        let seq = LABS.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let short: String =
            test.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').take(24).collect();
        let dir = tempfile::Builder::new().prefix("plx-lab-").tempdir().expect("create the lab's tempdir");
        let pki = certs::Pki::create(&dir.path().join("pki"), ingress::SECRETS);
        let stats_socket = dir.path().join("lb").join("stats.sock");
        let mut lab = Lab {
            dir,
            pki,
            stats_socket,
            backends: Vec::new(),
            prefix: format!("plx-{short}-{pid}-{seq}"),
            // Interface names have at most 15 characters: "p" + pid + seq in hex + 2.
            link_id: format!("p{pid:x}{seq:x}"),
            namespaces: Vec::new(),
            processes: Vec::new(),
            probes: AtomicU32::new(0),
        };
        lab.network();
        lab.firewall();
        for node in 0..NODE_IPS.len() {
            lab.start_nginx(node);
        }
        lab.start_haproxy();
        lab.start_dnsmasq();
        for (node, ip) in NODE_IPS.iter().enumerate() {
            let ports: Vec<SocketAddr> = ingress::PORTS.iter().map(|p| SocketAddr::from((*ip, *p))).collect();
            lab.wait_listening(Ns::Node(node), &ports, false);
        }
        lab.wait_listening(Ns::Lb, &haproxy::frontend_addrs(), false);
        lab.wait_haproxy_settled();
        lab
    }

    /// The namespace's name (`plx-<test>-<pid>-<n>-<role>`).
    pub fn ns(&self, ns: Ns) -> String {
        format!("{}-{}", self.prefix, ns.role())
    }

    /// The CA file clients trust, as a string for probes.d.
    pub fn ca_file(&self) -> String {
        self.pki.ca.display().to_string()
    }

    /// The certificate file (PEM) of secret or extra certificate `name` (see [`certs`]), as a
    /// string for probes.d (a `ca_file` that pins it).
    pub fn cert_file(&self, name: &str) -> String {
        self.pki.pair(name).cert.display().to_string()
    }

    /// Runs `parallax probe --format json` inside `ns` on a fresh probes.d holding the lab's
    /// `[defaults]` and `toml`, and parses its output.
    pub fn probe(&self, ns: Ns, toml: &str) -> Report {
        self.probe_with(ns, probe::LAB_DEFAULTS, toml, &[])
    }

    /// [`Lab::probe`] with explicit `[defaults]` and extra command-line arguments.
    pub fn probe_with(&self, ns: Ns, defaults: &str, toml: &str, args: &[&str]) -> Report {
        let n = self.probes.fetch_add(1, Ordering::Relaxed);
        let dir = self.dir.path().join(format!("probes-{n}"));
        std::fs::create_dir_all(&dir).expect("create a probes.d");
        std::fs::write(dir.join("00-lab.toml"), defaults).expect("write the lab defaults");
        std::fs::write(dir.join("10-scenario.toml"), toml).expect("write the scenario");
        let out = dir.join("stdout");
        let err = dir.join("stderr");
        let mut cmd = Command::new(binary("ip"));
        cmd.args(["netns", "exec", &self.ns(ns), env!("CARGO_BIN_EXE_parallax"), "probe", "-c"])
            .arg(&dir)
            .args(["--format", "json"])
            .args(args)
            .env_remove("PARALLAX_CONFIG")
            .env("PARALLAX_LOG", "warn");
        let status = run_to_files(&mut cmd, &out, &err, PROBE_WITHIN, "parallax probe");
        let stdout = std::fs::read_to_string(&out).unwrap_or_default();
        let stderr = std::fs::read_to_string(&err).unwrap_or_default();
        Report::parse(status, stdout, stderr, toml)
    }

    /// Starts an OTLP/HTTP collector ([`collector`]) on `127.0.0.1:4318` inside `ns`.
    pub fn start_collector(&mut self, ns: Ns) -> collector::Collector {
        let dir = self.dir.path().join("collector");
        std::fs::create_dir_all(dir.join("tmp")).expect("create the collector's dirs");
        let (collector, conf) = collector::Collector::config(&dir);
        std::fs::write(dir.join("nginx.conf"), conf).expect("write the collector's nginx.conf");
        self.spawn_nginx(ns, "otlp collector (nginx)", &dir);
        let listen: SocketAddr = collector::LISTEN.parse().expect("collector address");
        self.wait_listening(ns, &[listen], false);
        collector
    }

    /// Starts `parallax run` inside `ns` on a fresh probes.d holding `defaults` and `toml`; it
    /// runs until the lab drops. Returns its log file.
    pub fn start_daemon(&mut self, ns: Ns, defaults: &str, toml: &str) -> PathBuf {
        self.launch_daemon(ns, ("daemon", "parallax run"), defaults, toml, &[])
    }

    /// [`Lab::start_daemon`] with the environment variables `env` set for the daemon (`NODE_NAME`
    /// and `NODE_IP`, as the DaemonSet's downward API sets them). Its directory and process are
    /// named after the namespace (`daemon-node1`, `parallax run node1`: see [`Lab::log_of`]), so
    /// each namespace may run one.
    pub fn start_daemon_with_env(
        &mut self,
        ns: Ns,
        defaults: &str,
        toml: &str,
        env: &[(&str, &str)],
    ) -> PathBuf {
        let role = ns.role();
        let names = (format!("daemon-{role}"), format!("parallax run {role}"));
        self.launch_daemon(ns, (&names.0, &names.1), defaults, toml, env)
    }

    /// Writes the daemon's probes.d under the lab's directory `names.0` and starts it as process
    /// `names.1`, through `env(1)` (which execs the daemon: the lab still kills it by its pid).
    fn launch_daemon(
        &mut self,
        ns: Ns,
        names: (&str, &str),
        defaults: &str,
        toml: &str,
        env: &[(&str, &str)],
    ) -> PathBuf {
        let dir = self.dir.path().join(names.0);
        let config = dir.join("probes.d");
        std::fs::create_dir_all(&config).expect("create the daemon's probes.d");
        std::fs::write(config.join("00-lab.toml"), defaults).expect("write the daemon's defaults");
        std::fs::write(config.join("10-scenario.toml"), toml).expect("write the daemon's targets");
        let log = dir.join("parallax-run.log");
        let env_binary = binary("env");
        let assignments: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let config = path_str(&config);
        let mut args = vec![env_binary.as_str()];
        args.extend(assignments.iter().map(String::as_str));
        args.extend([env!("CARGO_BIN_EXE_parallax"), "run", "-c", &config]);
        self.spawn(ns, names.1, &args, &log);
        log
    }

    /// `GET url` from inside `ns` (curl): the status and body, or `None` when nothing answered.
    pub fn http_get(&self, ns: Ns, url: &str) -> Option<(u16, String)> {
        let n = self.probes.fetch_add(1, Ordering::Relaxed);
        let body = self.dir.path().join(format!("get-{n}.body"));
        let out = run(
            Command::new(binary("ip")).args([
                "netns",
                "exec",
                &self.ns(ns),
                &binary("curl"),
                "-sS",
                "--max-time",
                "5",
                "-o",
                &path_str(&body),
                "-w",
                "%{http_code}",
                url,
            ]),
            "curl",
        );
        let status: u16 = String::from_utf8_lossy(&out.stdout).trim().parse().ok()?;
        if status == 0 {
            return None;
        }
        Some((status, std::fs::read_to_string(&body).unwrap_or_default()))
    }

    /// The log of the process named `name`.
    pub fn log_of(&self, name: &str) -> String {
        self.processes
            .iter()
            .find(|p| p.name == name)
            .map(|p| std::fs::read_to_string(&p.log).unwrap_or_default())
            .unwrap_or_default()
    }

    /// Every HAProxy server's state, read from the stats socket (`show stat`).
    pub fn haproxy_states(&self) -> Vec<haproxy::ServerState> {
        haproxy::show_stat(&self.stats_socket)
            .unwrap_or_else(|e| panic!("HAProxy stats socket: {e}\n{}", self.logs()))
    }

    /// The logs of every process the lab started, for failure messages.
    pub fn logs(&self) -> String {
        let mut text = String::new();
        for p in &self.processes {
            let log = std::fs::read_to_string(&p.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            text.push_str(&format!("--- {} ({}), last lines:\n", p.name, p.log.display()));
            for line in tail.into_iter().rev() {
                text.push_str(line);
                text.push('\n');
            }
        }
        text
    }

    // -----------------------------------------------------------------------------------------
    // Building
    // -----------------------------------------------------------------------------------------

    fn network(&mut self) {
        for ns in [Ns::Client, Ns::Lb, Ns::Node(0), Ns::Node(1)] {
            self.add_namespace(ns);
        }
        let (client, lb) = (self.ns(Ns::Client), self.ns(Ns::Lb));
        let link = |end: &str| format!("{}{end}", self.link_id);

        // client <-> lb: the "internet".
        self.ip(&[
            "link",
            "add",
            &link("ca"),
            "netns",
            &client,
            "type",
            "veth",
            "peer",
            "name",
            &link("cb"),
            "netns",
            &lb,
        ]);
        self.ip_in(Ns::Client, &["addr", "add", &format!("{CLIENT_IP}/24"), "dev", &link("ca")]);
        // The health checker's address: a /32 beside the users', reached through the router.
        self.ip_in(Ns::Client, &["addr", "add", &format!("{CHECKER_IP}/32"), "dev", &link("ca")]);
        self.ip_in(Ns::Client, &["link", "set", &link("ca"), "up"]);
        self.ip_in(Ns::Client, &["route", "add", "default", "via", &LB_CLIENT_SIDE_IP.to_string()]);

        self.ip_in(Ns::Lb, &["addr", "add", &format!("{LB_CLIENT_SIDE_IP}/24"), "dev", &link("cb")]);
        self.ip_in(Ns::Lb, &["link", "set", &link("cb"), "up"]);
        self.ip_in(Ns::Lb, &["route", "add", &format!("{CHECKER_IP}/32"), "via", &CLIENT_IP.to_string()]);
        self.ip_in(Ns::Lb, &["addr", "add", &format!("{VIP}/32"), "dev", "lo"]);
        self.ip_in(Ns::Lb, &["addr", "add", &format!("{LB_CHECKER_IP}/32"), "dev", "lo"]);
        // The old LB is gone: the router answers ICMP host unreachable.
        self.ip_in(Ns::Lb, &["route", "add", "unreachable", &format!("{OLD_VIP}/32")]);
        self.ip_in(Ns::Lb, &["link", "add", "br0", "type", "bridge"]);
        self.ip_in(Ns::Lb, &["addr", "add", &format!("{LB_NODE_SIDE_IP}/24"), "dev", "br0"]);
        self.ip_in(Ns::Lb, &["link", "set", "br0", "up"]);
        self.exec_in(Ns::Lb, &["sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"], None);

        for (i, ip) in NODE_IPS.iter().enumerate() {
            let node = self.ns(Ns::Node(i));
            let (a, b) = (link(&format!("{}a", i + 1)), link(&format!("{}b", i + 1)));
            self.ip(&["link", "add", &a, "netns", &node, "type", "veth", "peer", "name", &b, "netns", &lb]);
            self.ip_in(Ns::Lb, &["link", "set", &b, "master", "br0"]);
            self.ip_in(Ns::Lb, &["link", "set", &b, "up"]);
            self.ip_in(Ns::Node(i), &["addr", "add", &format!("{ip}/24"), "dev", &a]);
            self.ip_in(Ns::Node(i), &["link", "set", &a, "up"]);
            self.ip_in(Ns::Node(i), &["route", "add", "default", "via", &LB_NODE_SIDE_IP.to_string()]);
        }
    }

    fn add_namespace(&mut self, ns: Ns) {
        let name = self.ns(ns);
        let out = run(Command::new(binary("ip")).args(["netns", "add", &name]), "ip netns add");
        if !out.status.success() {
            panic!(
                "the lab cannot create the network namespace {name}: `ip netns add` failed ({}): {}\n\
                 The lab tests need root (CAP_SYS_ADMIN and CAP_NET_ADMIN) and iproute2; CI runs them as \
                 root. scripts/test installs iproute2, iptables, nginx-light, haproxy and dnsmasq-base.",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        self.namespaces.push(name);
        self.ip_in(ns, &["link", "set", "lo", "up"]);
    }

    /// The cloud firewall / `loadBalancerSourceRanges` on every node: TCP only from
    /// [`FIREWALL_ALLOWED`]; anything else is dropped silently (SYNs time out, as in a VPC).
    fn firewall(&self) {
        let mut rules =
            String::from("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n");
        rules.push_str(
            ":LB-SOURCE-RANGES - [0:0]\n-A INPUT -i lo -j ACCEPT\n-A INPUT -p tcp -j LB-SOURCE-RANGES\n",
        );
        for net in FIREWALL_ALLOWED {
            rules.push_str(&format!("-A LB-SOURCE-RANGES -s {net} -j RETURN\n"));
        }
        rules.push_str("-A LB-SOURCE-RANGES -j DROP\nCOMMIT\n");
        for node in 0..NODE_IPS.len() {
            self.exec_in(Ns::Node(node), &[&binary("iptables-restore")], Some(&rules));
        }
    }

    fn start_nginx(&mut self, node: usize) {
        let dir = self.dir.path().join(format!("node{}", node + 1));
        std::fs::create_dir_all(dir.join("tmp")).expect("create nginx dirs");
        let conf = ingress::config(&dir, &self.pki, node);
        std::fs::write(dir.join("nginx.conf"), conf).expect("write nginx.conf");
        std::fs::write(dir.join("htpasswd"), ingress::HTPASSWD).expect("write htpasswd");
        self.spawn_nginx(Ns::Node(node), &format!("nginx node{}", node + 1), &dir);
    }

    fn start_haproxy(&mut self) {
        let dir = self.dir.path().join("lb");
        std::fs::create_dir_all(&dir).expect("create the lb dir");
        self.backends = haproxy::backends();
        let cfg = haproxy::config(&self.stats_socket, &self.pki, &self.backends);
        std::fs::write(dir.join("haproxy.cfg"), cfg).expect("write haproxy.cfg");
        let haproxy = binary("haproxy");
        let args = [haproxy.as_str(), "-f", &path_str(&dir.join("haproxy.cfg")), "-db"];
        self.spawn(Ns::Lb, "haproxy", &args, &dir.join("haproxy.log"));
    }

    fn start_dnsmasq(&mut self) {
        self.start_dns(Ns::Lb, LB_CLIENT_SIDE_IP, &[("shop.lab", DNS_ANSWER_SHOP)]);
    }

    /// Starts a dnsmasq inside `ns` on `listen:53` (UDP and TCP) that answers each name of
    /// `answers` with its address (and nothing else), and waits until it listens.
    pub fn start_dns(&mut self, ns: Ns, listen: Ipv4Addr, answers: &[(&str, Ipv4Addr)]) {
        let dir = self.dir.path().join(format!("dns-{}", ns.role()));
        std::fs::create_dir_all(&dir).expect("create the dns dir");
        let dnsmasq = binary("dnsmasq");
        let listen_at = format!("--listen-address={listen}");
        let port = format!("--port={}", DNS.port());
        let answers: Vec<String> =
            answers.iter().map(|(name, ip)| format!("--address=/{name}/{ip}")).collect();
        let mut args = vec![
            dnsmasq.as_str(),
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--no-poll",
            "--bind-interfaces",
            &listen_at,
            &port,
        ];
        args.extend(answers.iter().map(String::as_str));
        args.extend(["--user=root", "--pid-file", "--log-queries", "--log-facility=-"]);
        self.spawn(ns, &format!("dnsmasq {}", ns.role()), &args, &dir.join("dnsmasq.log"));
        self.wait_listening(ns, &[SocketAddr::from((listen, DNS.port()))], true);
    }

    /// Adds `ip/32` to the loopback interface of `ns` (an address servers there may listen on,
    /// routed to `ns` by the lab's routes: on the LB, beside the VIP).
    pub fn add_local_address(&self, ns: Ns, ip: Ipv4Addr) {
        self.ip_in(ns, &["addr", "add", &format!("{ip}/32"), "dev", "lo"]);
    }

    /// Starts an nginx named `name` inside `ns` whose `http` block holds `servers` (nginx
    /// `server { ... }` blocks), and waits until something listens on each of `listening`.
    pub fn start_nginx_servers(&mut self, ns: Ns, name: &str, servers: &str, listening: &[SocketAddr]) {
        let n = self.probes.fetch_add(1, Ordering::Relaxed);
        let dir = self.dir.path().join(format!("nginx-{n}"));
        std::fs::create_dir_all(dir.join("tmp")).expect("create nginx dirs");
        let conf = ingress::servers_config(&dir, servers);
        std::fs::write(dir.join("nginx.conf"), conf).expect("write nginx.conf");
        self.spawn_nginx(ns, name, &dir);
        self.wait_listening(ns, listening, false);
    }

    /// Starts nginx as process `name` inside `ns` on `dir/nginx.conf`, its prefix `dir`.
    fn spawn_nginx(&mut self, ns: Ns, name: &str, dir: &Path) {
        let nginx = binary("nginx");
        let args = [
            nginx.as_str(),
            "-p",
            &path_str(dir),
            "-c",
            &path_str(&dir.join("nginx.conf")),
            "-e",
            &path_str(&dir.join("error.log")),
        ];
        self.spawn(ns, name, &args, &dir.join("nginx.out"));
    }

    fn spawn(&mut self, ns: Ns, name: &str, args: &[&str], log: &Path) {
        let file = std::fs::File::create(log).expect("create a process log");
        let err = file.try_clone().expect("clone a log handle");
        let mut cmd = Command::new(binary("ip"));
        // The lab's configuration is the whole configuration: no PARALLAX_* or OTEL_* from the
        // test's environment.
        for (key, _) in std::env::vars_os() {
            let k = key.to_string_lossy();
            if k.starts_with("PARALLAX_") || k.starts_with("OTEL_") {
                cmd.env_remove(&key);
            }
        }
        let child = cmd
            .args(["netns", "exec", &self.ns(ns)])
            .args(args)
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name} in {}: {e}", self.ns(ns)));
        // `ip netns exec` execs the program: the child's pid is the program's.
        self.processes.push(Process { name: name.to_owned(), child, log: log.to_owned() });
    }

    /// Waits until every address of `addrs` has a listener in `ns` (`ss`), and no process of the
    /// lab has exited.
    fn wait_listening(&mut self, ns: Ns, addrs: &[SocketAddr], udp: bool) {
        let deadline = Instant::now() + READY_WITHIN;
        let flag = if udp { "-Hlnu" } else { "-Hlnt" };
        loop {
            self.assert_processes_alive();
            let out = run(
                Command::new(binary("ip")).args(["netns", "exec", &self.ns(ns), &binary("ss"), flag]),
                "ss",
            );
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let missing: Vec<&SocketAddr> =
                addrs.iter().filter(|a| !text.contains(&format!("{a} "))).collect();
            if missing.is_empty() {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "nothing listens on {missing:?} in {} after {READY_WITHIN:?}:\n{text}\n{}",
                    self.ns(ns),
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Panics, with every log, when a process the lab started has exited.
    pub fn assert_processes_alive(&mut self) {
        let mut dead = Vec::new();
        for p in &mut self.processes {
            if let Ok(Some(status)) = p.child.try_wait() {
                dead.push(format!("{} exited ({status})", p.name));
            }
        }
        if !dead.is_empty() {
            panic!("{}\n{}", dead.join("; "), self.logs());
        }
    }

    /// Waits until HAProxy has checked every server at least once and no server is between
    /// states, twice in a row.
    fn wait_haproxy_settled(&mut self) {
        let deadline = Instant::now() + READY_WITHIN;
        let mut previous: Option<Vec<(String, String, String)>> = None;
        loop {
            self.assert_processes_alive();
            let states = haproxy::show_stat(&self.stats_socket).unwrap_or_default();
            let settled = !states.is_empty() && states.iter().all(haproxy::ServerState::settled);
            // Stable: the same UP/DOWN states one poll later (check details change every check).
            let key: Vec<(String, String, String)> =
                states.iter().map(|s| (s.backend.clone(), s.server.clone(), s.status.clone())).collect();
            if settled && previous.as_ref() == Some(&key) {
                return;
            }
            previous = settled.then_some(key);
            if Instant::now() >= deadline {
                let unsettled: Vec<_> = states.iter().filter(|s| !s.settled()).collect();
                panic!(
                    "HAProxy did not settle within {READY_WITHIN:?}; not settled: {unsettled:#?}\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    fn ip(&self, args: &[&str]) {
        self.checked(Command::new(binary("ip")).args(args), &format!("ip {}", args.join(" ")), None);
    }

    fn ip_in(&self, ns: Ns, args: &[&str]) {
        let name = self.ns(ns);
        self.checked(
            Command::new(binary("ip")).arg("-n").arg(&name).args(args),
            &format!("ip -n {name} {}", args.join(" ")),
            None,
        );
    }

    fn exec_in(&self, ns: Ns, args: &[&str], stdin: Option<&str>) {
        let name = self.ns(ns);
        self.checked(
            Command::new(binary("ip")).args(["netns", "exec", &name]).args(args),
            &format!("ip netns exec {name} {}", args.join(" ")),
            stdin,
        );
    }

    fn checked(&self, cmd: &mut Command, what: &str, stdin: Option<&str>) {
        let out = match stdin {
            None => run(cmd, what),
            Some(input) => {
                let path = self.dir.path().join("stdin.tmp");
                std::fs::write(&path, input).expect("write a command's input");
                let file = std::fs::File::open(&path).expect("open a command's input");
                run(cmd.stdin(file), what)
            }
        };
        if !out.status.success() {
            panic!("`{what}` failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for p in &mut self.processes {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
        for name in self.namespaces.iter().rev() {
            // Anything still inside the namespace was started by this lab (a child's child).
            let pids = run(Command::new(binary("ip")).args(["netns", "pids", name]), "ip netns pids");
            for pid in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
                if pid.chars().all(|c| c.is_ascii_digit()) {
                    let _ = run(Command::new("sh").args(["-c", &format!("kill -KILL {pid}")]), "kill");
                }
            }
            // Deleting the namespace removes its interfaces (and their veth peers), addresses,
            // routes and iptables rules.
            let out = run(Command::new(binary("ip")).args(["netns", "del", name]), "ip netns del");
            if !out.status.success() && !std::thread::panicking() {
                eprintln!("lab: could not delete namespace {name}: {}", String::from_utf8_lossy(&out.stderr));
            }
        }
    }
}

/// The full path of a system binary (`/usr/sbin` is not on every user's `PATH`); panics with
/// how to install it when missing.
pub fn binary(name: &str) -> String {
    for dir in ["/usr/sbin", "/sbin", "/usr/bin", "/bin"] {
        let path = Path::new(dir).join(name);
        if path.is_file() {
            return path_str(&path);
        }
    }
    let package = match name {
        "ip" | "ss" => "iproute2",
        "iptables-restore" => "iptables",
        "nginx" => "nginx-light",
        "dnsmasq" => "dnsmasq-base",
        "curl" => "curl",
        other => other,
    };
    panic!(
        "the lab needs `{name}`: install it with `apt-get install -y {package}` (scripts/test does this \
         when run as root)"
    );
}

fn path_str(p: &Path) -> String {
    p.display().to_string()
}

/// Runs a short setup command to completion (bounded by [`COMMAND_WITHIN`]).
fn run(cmd: &mut Command, what: &str) -> Output {
    // Only `iptables-restore` reads its stdin (a file); `ip` and `ss` read none.
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run `{what}`: {e}"));
    wait_output(child, COMMAND_WITHIN, what)
}

/// Waits for `child` (its output is small: pipes do not fill), killing it after `within`.
fn wait_output(mut child: Child, within: Duration, what: &str) -> Output {
    let deadline = Instant::now() + within;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return child.wait_with_output().unwrap_or_else(|e| panic!("`{what}`: {e}")),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("`{what}` did not finish within {within:?}");
            }
        }
    }
}

/// Runs `cmd` with stdout and stderr to files (any size), killing it after `within`; returns
/// its exit code.
fn run_to_files(cmd: &mut Command, out: &Path, err: &Path, within: Duration, what: &str) -> i32 {
    let stdout = std::fs::File::create(out).expect("create stdout file");
    let stderr = std::fs::File::create(err).expect("create stderr file");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run `{what}`: {e}"));
    let deadline = Instant::now() + within;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.code().unwrap_or(-1),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "`{what}` did not finish within {within:?}; stderr: {}",
                    std::fs::read_to_string(err).unwrap_or_default()
                );
            }
        }
    }
}
