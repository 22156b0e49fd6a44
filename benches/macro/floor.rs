//! The raw-socket floor: connect, write the request parallax writes, read the response, close —
//! and for HTTPS the same rustls handshake (ring, TLS 1.3, the same roots, ALPN and no
//! resumption) — at the same fixed rate, in this process. Two flavours: blocking std sockets on
//! one thread (the least a prober can spend), and a current-thread tokio runtime (the same
//! readiness-driven I/O parallax uses).

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::time::Instant;

use crate::procs::{loopback, thread_cpu_ns};

/// What one floor run did.
#[derive(Debug, Clone, Copy, Default)]
pub struct FloorRun {
    /// Probes that got a 200.
    pub ok: u64,
    /// Probes that failed.
    pub failed: u64,
    /// CPU time of the probing thread over the run, ns.
    pub cpu_ns: u64,
    /// Wall time of the run.
    pub wall: Duration,
}

/// The TLS client config the floor uses: what parallax's client view uses (ring, safe default
/// versions, ALPN http/1.1, resumption off), with standard webpki verification against the CA.
pub fn tls_config(ca_der: &[u8]) -> Result<Arc<ClientConfig>, rustls::Error> {
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from(ca_der.to_vec()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

/// The planned start of every probe at `rate` per second from `start` for `window`: a bounded
/// count (`rate × window`, plus one), each before `start + window`.
fn ticks(start: Instant, rate: f64, window: Duration) -> impl Iterator<Item = Instant> {
    let period = Duration::from_secs_f64(1.0 / rate);
    let max = (rate * window.as_secs_f64()).ceil() as u64 + 1;
    (0..max).map(move |i| start + period * i as u32).take_while(move |at| *at < start + window)
}

/// Runs `probe` at `rate` per second for `window` on this thread (blocking sockets).
pub fn run_std(rate: f64, window: Duration, mut probe: impl FnMut() -> io::Result<()>) -> FloorRun {
    let cpu0 = thread_cpu_ns();
    let start = Instant::now();
    let mut run = FloorRun::default();
    for at in ticks(start, rate, window) {
        let now = Instant::now();
        if at > now {
            std::thread::sleep(at - now);
        }
        match probe() {
            Ok(()) => run.ok += 1,
            Err(_) => run.failed += 1,
        }
    }
    run.cpu_ns = thread_cpu_ns().saturating_sub(cpu0);
    run.wall = start.elapsed();
    run
}

/// One plain-HTTP probe with blocking sockets.
pub fn std_http(addr: SocketAddr, request: &[u8]) -> io::Result<()> {
    let mut stream = TcpStream::connect_timeout(&loopback(addr), Duration::from_secs(1))?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(1)))?;
    stream.write_all(request)?;
    expect_200(&mut stream)
}

/// One HTTPS probe with blocking sockets and rustls.
pub fn std_https(addr: SocketAddr, request: &[u8], config: &Arc<ClientConfig>) -> io::Result<()> {
    let tcp = TcpStream::connect_timeout(&loopback(addr), Duration::from_secs(1))?;
    tcp.set_nodelay(true)?;
    tcp.set_read_timeout(Some(Duration::from_secs(1)))?;
    let name = ServerName::IpAddress(addr.ip().into());
    let conn = rustls::ClientConnection::new(config.clone(), name).map_err(io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(request)?;
    expect_200(&mut tls)
}

/// Runs one probe at a time at `rate` per second for `window` on a current-thread tokio runtime
/// of its own thread; `https` adds the handshake.
pub fn run_tokio(
    rate: f64,
    window: Duration,
    addr: SocketAddr,
    request: Arc<Vec<u8>>,
    tls: Option<Arc<ClientConfig>>,
) -> io::Result<FloorRun> {
    let thread = std::thread::spawn(move || -> io::Result<FloorRun> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        runtime.block_on(async move {
            let connector = tls.map(tokio_rustls::TlsConnector::from);
            let cpu0 = thread_cpu_ns();
            let start = Instant::now();
            let mut run = FloorRun::default();
            for at in ticks(start, rate, window) {
                tokio::time::sleep_until(at).await;
                let once = tokio_probe(addr, &request, connector.as_ref());
                match tokio::time::timeout(Duration::from_secs(1), once).await {
                    Ok(Ok(())) => run.ok += 1,
                    _ => run.failed += 1,
                }
            }
            run.cpu_ns = thread_cpu_ns().saturating_sub(cpu0);
            run.wall = start.elapsed();
            Ok(run)
        })
    });
    thread.join().map_err(|_| io::Error::other("tokio floor thread panicked"))?
}

async fn tokio_probe(
    addr: SocketAddr,
    request: &[u8],
    connector: Option<&tokio_rustls::TlsConnector>,
) -> io::Result<()> {
    let tcp = tokio::net::TcpStream::connect(loopback(addr)).await?;
    tcp.set_nodelay(true)?;
    match connector {
        None => {
            let mut tcp = tcp;
            tcp.write_all(request).await?;
            expect_200_async(&mut tcp).await
        }
        Some(connector) => {
            let ip: IpAddr = addr.ip();
            let mut tls = connector.connect(ServerName::IpAddress(ip.into()), tcp).await?;
            tls.write_all(request).await?;
            expect_200_async(&mut tls).await
        }
    }
}

/// Reads one response (head, then `content-length` bytes of body) and checks it is a 200.
fn expect_200(r: &mut impl Read) -> io::Result<()> {
    let mut buf = [0u8; 4096];
    let mut len = 0;
    loop {
        if len == buf.len() {
            return Err(io::Error::other("response too large"));
        }
        let n = r.read(&mut buf[len..])?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        len += n;
        if let Some(done) = complete(&buf[..len]) {
            return done;
        }
    }
}

async fn expect_200_async<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<()> {
    let mut buf = [0u8; 4096];
    let mut len = 0;
    loop {
        if len == buf.len() {
            return Err(io::Error::other("response too large"));
        }
        let n = r.read(&mut buf[len..]).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        len += n;
        if let Some(done) = complete(&buf[..len]) {
            return done;
        }
    }
}

/// `Some` once `bytes` hold a whole response: Ok for a 200.
fn complete(bytes: &[u8]) -> Option<io::Result<()>> {
    let head_end = bytes.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&bytes[..head_end]).ok()?;
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length").then(|| v.trim().parse().ok()).flatten()
        })
        .unwrap_or(0);
    if bytes.len() < head_end + length {
        return None;
    }
    Some(if head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200") {
        Ok(())
    } else {
        Err(io::Error::other(format!("not a 200: {}", head.lines().next().unwrap_or(""))))
    })
}
