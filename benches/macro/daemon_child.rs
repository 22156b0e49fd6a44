//! parallax as users run it: `parallax run -c DIR` as a child process, on a generated `probes.d`,
//! read from outside (`/proc`, its own `/metrics`).

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use tokio::time::Instant;

use crate::procs::{free_port, loopback, wait_listening, Guard};

/// The views to generate.
#[derive(Debug, Clone)]
pub struct Fleet {
    /// How many targets.
    pub targets: usize,
    /// Each target's client URL (and the checker's, with `checker`).
    pub url: String,
    /// A checker view per target too (two views per target).
    pub checker: bool,
    /// Every view's interval.
    pub interval: Duration,
    /// Every view's timeout.
    pub timeout: Duration,
    /// `ca_file` for HTTPS views.
    pub ca_file: Option<PathBuf>,
}

impl Fleet {
    /// Views configured.
    pub fn views(&self) -> usize {
        self.targets * if self.checker { 2 } else { 1 }
    }

    /// Probes per second they make.
    pub fn rate(&self) -> f64 {
        self.views() as f64 / self.interval.as_secs_f64()
    }
}

/// Targets per generated file: the loader refuses files over 1 MiB.
const TARGETS_PER_FILE: usize = 4000;

/// Writes `dir/00-daemon.toml` and `dir/10-targets-N.toml` for `fleet` with the admin server on
/// `admin`; OTLP off (no `[export.otlp]`), attribution off (nothing disagrees anyway).
pub fn write_config(dir: &Path, fleet: &Fleet, admin: SocketAddr) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let ms = |d: Duration| format!("{}ms", d.as_millis());
    let mut s = String::new();
    let _ =
        writeln!(s, "[defaults]\ninterval = \"{}\"\ntimeout = \"{}\"", ms(fleet.interval), ms(fleet.timeout));
    let _ = writeln!(s, "attribution = false\n\n[admin]\nlisten = \"{admin}\"");
    std::fs::write(dir.join("00-daemon.toml"), s)?;
    let tls = match &fleet.ca_file {
        Some(ca) => format!("ca_file = \"{}\"\nalpn = [\"http/1.1\"]\n", ca.display()),
        None => String::new(),
    };
    for (file, first) in (0..fleet.targets).step_by(TARGETS_PER_FILE).enumerate() {
        let mut s = String::with_capacity(TARGETS_PER_FILE * 200);
        for i in first..(first + TARGETS_PER_FILE).min(fleet.targets) {
            let _ = writeln!(
                s,
                "[[target]]\nname = \"t{i:06}\"\n[target.client]\nurl = \"{}\"\n{tls}",
                fleet.url
            );
            if fleet.checker {
                let _ = writeln!(s, "[[target.checker]]\nname = \"hc\"\nurl = \"{}\"\n{tls}", fleet.url);
            }
        }
        std::fs::write(dir.join(format!("10-targets-{file:03}.toml")), s)?;
    }
    Ok(())
}

/// A running `parallax run`.
pub struct Daemon {
    /// Its admin server.
    pub admin: SocketAddr,
    /// How long it took from spawn to its admin server listening.
    pub startup: Duration,
    guard: Guard,
}

impl Daemon {
    /// Starts `parallax run` on a fresh config for `fleet` in `dir`, admin on `admin_ip`.
    pub fn start(binary: &Path, dir: &Path, fleet: &Fleet, admin_ip: IpAddr) -> io::Result<Daemon> {
        let admin = loopback(SocketAddr::new(admin_ip, free_port(admin_ip)?));
        write_config(dir, fleet, admin)?;
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
            .stdin(Stdio::null())
            // Event lines (one per verdict change) go nowhere.
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        let spawned = Instant::now();
        let mut guard = Guard::spawn("parallax run", &mut command)?;
        // Compiling 100,000 views takes a while on a loaded machine.
        wait_listening(admin, Duration::from_secs(300))?;
        guard.alive()?;
        Ok(Daemon { admin, startup: spawned.elapsed(), guard })
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }

    /// Probes it has run, from its own `parallax_probe_total` counters (successes, failures).
    pub fn probes(&self) -> io::Result<(u64, u64)> {
        let text = http_get(self.admin, "/metrics")?;
        let mut ok = 0;
        let mut failed = 0;
        for line in text.lines().filter(|l| l.starts_with("parallax_probe_total{")) {
            let value = line.rsplit_once('}').map(|(_, v)| v.trim()).unwrap_or("");
            let n = value.split_whitespace().next().and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) as u64;
            if line.contains("result=\"success\"") {
                ok += n;
            } else {
                failed += n;
            }
        }
        Ok((ok, failed))
    }
}

/// GET `path` from `addr` (HTTP/1.1, connection closed after), the body as text.
pub fn http_get(addr: SocketAddr, path: &str) -> io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&loopback(addr), Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n")?;
    let mut bytes = Vec::new();
    stream.take(64 << 20).read_to_end(&mut bytes)?;
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
