//! `parallax run -c DIR` as a child on a generated configuration, and what it says about
//! itself: `/metrics` (parsed here) and `/api/v1/status` (the fields the soak checks).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::Deserialize;

use crate::procs::{loopback, wait_listening, Guard};

/// Targets whose server is always healthy (two views each: their lateness is the headline).
pub const HEALTHY_TARGETS: usize = 334;
/// Targets whose server cycles through the chaos phases (two views each).
pub const CHAOS_TARGETS: usize = 166;
/// Base views: 1,000.
pub const BASE_VIEWS: usize = 2 * (HEALTHY_TARGETS + CHAOS_TARGETS);
/// Targets of the churned file at a time (two views each); each reload swaps one.
const CHURN_TARGETS: u64 = 4;
/// Every base view's interval and timeout.
pub const INTERVAL: Duration = Duration::from_secs(2);
const TIMEOUT: Duration = Duration::from_secs(1);
/// Spans of successful probes exported.
const SUCCESS_SAMPLE_RATIO: f64 = 0.2;

/// A view: (target, view name).
pub type ViewKey = (String, String);

/// Is `target` one of the always-healthy base targets?
pub fn is_healthy_target(target: &str) -> bool {
    target.starts_with('h')
}

/// Where everything listens.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The admin server.
    pub admin: SocketAddr,
    /// The OTLP/HTTP collector.
    pub collector: SocketAddr,
    /// The healthy group's servers.
    pub healthy: Vec<SocketAddr>,
    /// The chaos group's servers.
    pub chaos: Vec<SocketAddr>,
}

/// The configuration directory and what it holds.
pub struct Config {
    dir: PathBuf,
    layout: Layout,
    /// Reloads written so far (the churn file's generation).
    pub round: u64,
}

impl Config {
    /// Writes the whole directory (churn round 0).
    pub fn write(dir: &Path, layout: &Layout) -> io::Result<Config> {
        std::fs::create_dir_all(dir)?;
        let ms = |d: Duration| format!("{}ms", d.as_millis());
        let mut s = String::new();
        let _ = writeln!(s, "[defaults]\ninterval = \"{}\"\ntimeout = \"{}\"", ms(INTERVAL), ms(TIMEOUT));
        let _ = writeln!(s, "attribution = false\n\n[admin]\nlisten = \"{}\"\n", layout.admin);
        let _ = writeln!(
            s,
            "[export.otlp]\nendpoint = \"http://{}\"\nprotocol = \"http/protobuf\"\nsuccess_sample_ratio = {SUCCESS_SAMPLE_RATIO}",
            layout.collector
        );
        std::fs::write(dir.join("00-daemon.toml"), s)?;
        let group = |prefix: char, count: usize, servers: &[SocketAddr]| {
            let mut s = String::with_capacity(count * 200);
            for i in 0..count {
                let server = servers[i % servers.len()];
                let _ = writeln!(
                    s,
                    "[[target]]\nname = \"{prefix}{i:04}\"\n[target.client]\nurl = \"http://{server}/{prefix}{i}\"\n\
                     [[target.checker]]\nname = \"hc\"\nurl = \"http://{server}/healthz\"\n"
                );
            }
            s
        };
        std::fs::write(dir.join("10-healthy.toml"), group('h', HEALTHY_TARGETS, &layout.healthy))?;
        std::fs::write(dir.join("20-chaos.toml"), group('x', CHAOS_TARGETS, &layout.chaos))?;
        let config = Config { dir: dir.to_owned(), layout: layout.clone(), round: 0 };
        config.write_churn()?;
        Ok(config)
    }

    /// The churn file of this round: targets `c{round}`..`c{round+3}` (one leaves, one comes
    /// per round) and `cint`, whose interval alternates between 2 s and 3 s. Written beside and
    /// renamed over, so a reload never reads half a file.
    fn write_churn(&self) -> io::Result<()> {
        let server = self.layout.healthy[0];
        let mut s = String::new();
        for j in self.round..self.round + CHURN_TARGETS {
            let _ = writeln!(
                s,
                "[[target]]\nname = \"c{j:05}\"\n[target.client]\nurl = \"http://{server}/c{j}\"\n\
                 [[target.checker]]\nname = \"hc\"\nurl = \"http://{server}/healthz\"\n"
            );
        }
        let interval = if self.round.is_multiple_of(2) { "2s" } else { "3s" };
        let _ = writeln!(s, "[[target]]\nname = \"cint\"\n[target.client]\nurl = \"http://{server}/cint\"\ninterval = \"{interval}\"");
        let tmp = self.dir.join(".30-churn.toml.tmp");
        std::fs::write(&tmp, s)?;
        std::fs::rename(tmp, self.dir.join("30-churn.toml"))
    }

    /// Writes the next round's churn file.
    pub fn next_round(&mut self) -> io::Result<()> {
        self.round += 1;
        self.write_churn()
    }

    /// Every view configured now, with its interval.
    pub fn views(&self) -> BTreeMap<ViewKey, Duration> {
        let mut out = BTreeMap::new();
        let mut add = |target: String, interval: Duration, checker: bool| {
            out.insert((target.clone(), "client".to_owned()), interval);
            if checker {
                out.insert((target, "hc".to_owned()), interval);
            }
        };
        for i in 0..HEALTHY_TARGETS {
            add(format!("h{i:04}"), INTERVAL, true);
        }
        for i in 0..CHAOS_TARGETS {
            add(format!("x{i:04}"), INTERVAL, true);
        }
        for j in self.round..self.round + CHURN_TARGETS {
            add(format!("c{j:05}"), INTERVAL, true);
        }
        add("cint".to_owned(), Duration::from_secs(if self.round.is_multiple_of(2) { 2 } else { 3 }), false);
        out
    }
}

/// A running `parallax run`.
pub struct Daemon {
    /// Its admin server.
    pub admin: SocketAddr,
    guard: Guard,
}

impl Daemon {
    /// Starts `parallax run -c dir`.
    pub fn start(binary: &Path, dir: &Path, admin: SocketAddr) -> io::Result<Daemon> {
        let mut command = Command::new(binary);
        command
            .arg("run")
            .arg("-c")
            .arg(dir)
            .env("PARALLAX_LOG", "error")
            // Keep the bench's environment from changing the subject.
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .env_remove("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")
            .env_remove("OTEL_EXPORTER_OTLP_HEADERS")
            .stdin(Stdio::null())
            // Event lines (one per verdict change) go nowhere.
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        let mut guard = Guard::spawn("parallax run", &mut command)?;
        wait_listening(admin, Duration::from_secs(120))?;
        guard.alive()?;
        Ok(Daemon { admin, guard })
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }

    /// Fails if it exited.
    pub fn alive(&mut self) -> io::Result<()> {
        self.guard.alive()
    }

    /// Asks it to reload.
    pub fn hangup(&self) -> io::Result<()> {
        self.guard.hangup()
    }

    /// `/api/v1/status/summary`.
    pub fn summary(&self) -> io::Result<Summary> {
        serde_json::from_str(&http_get(self.admin, "/api/v1/status/summary")?).map_err(io::Error::other)
    }

    /// `/api/v1/status`.
    pub fn status(&self) -> io::Result<Status> {
        serde_json::from_str(&http_get(self.admin, "/api/v1/status")?).map_err(io::Error::other)
    }

    /// `/metrics`, parsed; with its size in bytes.
    pub fn metrics(&self) -> io::Result<(Metrics, usize)> {
        let text = http_get(self.admin, "/metrics")?;
        Ok((Metrics::parse(&text), text.len()))
    }
}

/// The summary's fields the soak reads.
#[derive(Debug, Deserialize)]
pub struct Summary {
    /// Plans swapped in.
    pub generation: u64,
    /// Ready.
    pub ready: bool,
    /// The last reload.
    pub last_reload: Option<LastReload>,
    /// Views running.
    pub views: usize,
}

/// A reload's result.
#[derive(Debug, Deserialize)]
pub struct LastReload {
    /// Swapped in.
    pub ok: bool,
}

/// The status document's fields the soak reads.
#[derive(Debug, Deserialize)]
pub struct Status {
    /// Plans swapped in.
    pub generation: u64,
    /// Targets.
    pub targets: Vec<StatusTarget>,
}

/// A target of the status.
#[derive(Debug, Deserialize)]
pub struct StatusTarget {
    /// Its name.
    pub name: String,
    /// Its views.
    pub views: Vec<StatusView>,
}

/// A view of the status.
#[derive(Debug, Deserialize)]
pub struct StatusView {
    /// Its name.
    pub name: String,
    /// Its interval.
    pub interval_ms: u64,
}

impl Status {
    /// Every view it runs, with its interval.
    pub fn views(&self) -> BTreeMap<ViewKey, Duration> {
        let mut out = BTreeMap::new();
        for t in &self.targets {
            for v in &t.views {
                out.insert((t.name.clone(), v.name.clone()), Duration::from_millis(v.interval_ms));
            }
        }
        out
    }
}

/// What the soak reads from `/metrics`.
#[derive(Debug, Default, Clone)]
pub struct Metrics {
    /// `parallax_scheduler_lateness_seconds` buckets: (upper bound, cumulative count).
    pub lateness: Vec<(f64, u64)>,
    /// Its count and sum.
    pub lateness_count: u64,
    /// Seconds.
    pub lateness_sum: f64,
    /// Probes per view: (successes, failures).
    pub probes: HashMap<ViewKey, (u64, u64)>,
    /// Skipped ticks, all views.
    pub skipped: u64,
    /// `parallax_export_failures_total` by signal.
    pub export_failures: BTreeMap<String, u64>,
    /// `parallax_export_dropped_total` by signal.
    pub export_dropped: BTreeMap<String, u64>,
    /// `parallax_reload_total` (success, failure).
    pub reloads: (u64, u64),
}

impl Metrics {
    /// Parses the Prometheus text.
    pub fn parse(text: &str) -> Metrics {
        let mut m = Metrics::default();
        for line in text.lines() {
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            let (name, labels, rest) = match line.split_once('{') {
                Some((name, rest)) => match rest.rsplit_once('}') {
                    Some((labels, value)) => (name, labels, value),
                    None => continue,
                },
                None => match line.split_once(' ') {
                    Some((name, value)) => (name, "", value),
                    None => continue,
                },
            };
            let value = rest.split_whitespace().next().and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
            let labels = parse_labels(labels);
            let label =
                |key: &str| labels.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str()).unwrap_or("");
            match name {
                "parallax_scheduler_lateness_seconds_bucket" => {
                    let le = label("le");
                    let bound = if le == "+Inf" { f64::INFINITY } else { le.parse().unwrap_or(f64::NAN) };
                    m.lateness.push((bound, value as u64));
                }
                "parallax_scheduler_lateness_seconds_count" => m.lateness_count = value as u64,
                "parallax_scheduler_lateness_seconds_sum" => m.lateness_sum = value,
                "parallax_probe_total" => {
                    let entry =
                        m.probes.entry((label("target").to_owned(), label("view").to_owned())).or_default();
                    if label("result") == "success" {
                        entry.0 += value as u64;
                    } else {
                        entry.1 += value as u64;
                    }
                }
                "parallax_probe_skipped_total" => m.skipped += value as u64,
                "parallax_export_failures_total" => {
                    *m.export_failures.entry(label("signal").to_owned()).or_default() += value as u64;
                }
                "parallax_export_dropped_total" => {
                    *m.export_dropped.entry(label("signal").to_owned()).or_default() += value as u64;
                }
                "parallax_reload_total" => {
                    if label("result") == "success" {
                        m.reloads.0 += value as u64;
                    } else {
                        m.reloads.1 += value as u64;
                    }
                }
                _ => {}
            }
        }
        m.lateness.sort_by(|a, b| a.0.total_cmp(&b.0));
        m
    }
}

/// `k="v",k2="v2"` (values with `\"` and `\\` escapes).
fn parse_labels(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s;
    // Bounded: each round consumes at least one label.
    for _ in 0..64 {
        let Some((key, after)) = rest.split_once("=\"") else { break };
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, e)) = chars.next() {
                        value.push(if e == 'n' { '\n' } else { e });
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        out.push((key.trim_start_matches(',').trim().to_owned(), value));
        rest = &after[end..];
    }
    out
}

/// GET `path` from `addr` (HTTP/1.1, connection closed after), the body as text.
pub fn http_get(addr: SocketAddr, path: &str) -> io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&loopback(addr), Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n")?;
    let mut bytes = Vec::new();
    stream.take(256 << 20).read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| io::Error::other("no response head"))?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(io::Error::other(format!("GET {path}: {}", head.lines().next().unwrap_or(""))));
    }
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        return Ok(dechunk(body));
    }
    Ok(body.to_owned())
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    // Bounded by the body's length: each round consumes at least the size line.
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else { break };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].strip_prefix("\r\n").unwrap_or(&rest[n..]);
    }
    out
}
