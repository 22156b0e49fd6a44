//! `prometheus-blackbox-exporter` (Debian package) on a loopback address with an HTTP module per
//! scheme, driven at a fixed rate through `/probe?target=...&module=...` by a client in this
//! process (keep-alive connections, as a Prometheus server scrapes it).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::TokioIo;
use tokio::sync::{mpsc, Mutex};
use tokio::time::Instant;

use crate::procs::{free_port, loopback, wait_listening, Guard};

/// A running blackbox_exporter.
pub struct Blackbox {
    /// Where it listens.
    pub addr: SocketAddr,
    guard: Guard,
}

/// Probes a driven run got answers for.
#[derive(Debug, Clone, Copy, Default)]
pub struct Driven {
    /// `probe_success 1`.
    pub ok: u64,
    /// `probe_success 0`, or no answer.
    pub failed: u64,
}

impl Blackbox {
    /// Starts it on `ip` with modules `http_plain` and `https` (trusting `ca_file`).
    pub fn start(dir: &Path, ip: IpAddr, ca_file: &Path) -> io::Result<Blackbox> {
        let binary = ["/usr/bin/prometheus-blackbox-exporter", "/usr/sbin/prometheus-blackbox-exporter"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .ok_or_else(|| {
                io::Error::other("blackbox_exporter not found: apt-get install prometheus-blackbox-exporter")
            })?;
        let addr = loopback(SocketAddr::new(ip, free_port(ip)?));
        let config = dir.join("blackbox.yml");
        // IPv4 only and no fallback: the targets are IPv4 literals, nothing to resolve. Both
        // modules speak HTTP/1.1 (nginx offers no h2), as parallax's views and the floor do.
        let text = format!(
            r#"modules:
  http_plain:
    prober: http
    timeout: 2s
    http:
      preferred_ip_protocol: ip4
      ip_protocol_fallback: false
      valid_status_codes: [200]
  https:
    prober: http
    timeout: 2s
    http:
      preferred_ip_protocol: ip4
      ip_protocol_fallback: false
      valid_status_codes: [200]
      tls_config:
        ca_file: {ca}
"#,
            ca = ca_file.display()
        );
        std::fs::write(&config, text)?;
        let mut command = Command::new(binary);
        command
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=error")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        let mut guard = Guard::spawn("blackbox_exporter", &mut command)?;
        wait_listening(addr, Duration::from_secs(20))?;
        guard.alive()?;
        Ok(Blackbox { addr, guard })
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }

    /// Asks it to probe `target` with `module` at `rate` per second for `window`, over
    /// `connections` keep-alive connections. Each request is issued on schedule; a request whose
    /// connection is still busy waits for one that is free.
    pub async fn drive(&self, target: &str, module: &str, rate: f64, window: Duration) -> Driven {
        const CONNECTIONS: usize = 8;
        let path = format!("/probe?module={module}&target={}", encode(target));
        let (tx, rx) = mpsc::channel::<()>(4096);
        let rx = Arc::new(Mutex::new(rx));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let mut workers = Vec::new();
        for _ in 0..CONNECTIONS {
            let (rx, ok, failed, path, addr) =
                (rx.clone(), ok.clone(), failed.clone(), path.clone(), self.addr);
            workers.push(tokio::spawn(async move {
                let mut conn: Option<hyper::client::conn::http1::SendRequest<Empty<Bytes>>> = None;
                loop {
                    let next = rx.lock().await.recv().await;
                    if next.is_none() {
                        return;
                    }
                    match probe_once(&mut conn, addr, &path).await {
                        Ok(true) => ok.fetch_add(1, Ordering::Relaxed),
                        _ => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            }));
        }
        let period = Duration::from_secs_f64(1.0 / rate);
        let start = Instant::now();
        let max = (rate * window.as_secs_f64()).ceil() as u64 + 1;
        for i in 0..max {
            let at = start + period * i as u32;
            if at >= start + window {
                break;
            }
            tokio::time::sleep_until(at).await;
            if tx.try_send(()).is_err() {
                failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        drop(tx);
        for w in workers {
            // Bounded: every request has a timeout, the queue is closed.
            let _ = w.await;
        }
        Driven { ok: ok.load(Ordering::Relaxed), failed: failed.load(Ordering::Relaxed) }
    }
}

async fn probe_once(
    conn: &mut Option<hyper::client::conn::http1::SendRequest<Empty<Bytes>>>,
    addr: SocketAddr,
    path: &str,
) -> io::Result<bool> {
    let once = async {
        if conn.as_ref().is_none_or(|c| c.is_closed()) {
            let tcp = tokio::net::TcpStream::connect(loopback(addr)).await?;
            tcp.set_nodelay(true)?;
            let (sender, driver) =
                hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.map_err(io::Error::other)?;
            tokio::spawn(async move {
                let _ = driver.await;
            });
            *conn = Some(sender);
        }
        let Some(sender) = conn.as_mut() else { return Err(io::Error::other("no connection")) };
        sender.ready().await.map_err(io::Error::other)?;
        let request = http::Request::get(path)
            .header(http::header::HOST, addr.to_string())
            .body(Empty::<Bytes>::new())
            .map_err(io::Error::other)?;
        let response = sender.send_request(request).await.map_err(io::Error::other)?;
        let body = response.into_body().collect().await.map_err(io::Error::other)?.to_bytes();
        let text = String::from_utf8_lossy(&body);
        Ok(text.lines().any(|l| l.trim() == "probe_success 1"))
    };
    match tokio::time::timeout(Duration::from_secs(5), once).await {
        Ok(r) => {
            if r.is_err() {
                *conn = None;
            }
            r
        }
        Err(_) => {
            *conn = None;
            Err(io::ErrorKind::TimedOut.into())
        }
    }
}

/// Percent-encodes a target URL for the query string.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
