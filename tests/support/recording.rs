//! A recording server: records the raw bytes a probe sends (the PROXY header apart), its
//! address, and (TLS variant) its SNI, then answers a fixed response and closes.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

use super::certs::Leaf;
use super::http::{lock, TlsSite};
use super::{accept_loop, listen, wait_for, Task};

/// The PROXY protocol v2 signature.
pub const PROXY_V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// Reading a request gives up after this long.
const READ_LIMIT: Duration = Duration::from_secs(5);
/// At most this many request bytes are kept.
const READ_MAX: usize = 256 * 1024;

/// One connection as the recording server saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// The client's address (its source).
    pub peer: SocketAddr,
    /// The PROXY header bytes (v1 line or v2 block), if the connection began with one.
    pub proxy_header: Option<Vec<u8>>,
    /// Whether a TLS handshake completed.
    pub tls: bool,
    /// The SNI of the handshake (`None`: none sent, or no TLS).
    pub sni: Option<String>,
    /// The request bytes after the PROXY header (decrypted for TLS): an HTTP/1 head and its
    /// `content-length` body, or whatever came before EOF.
    pub request: Vec<u8>,
}

impl Recorded {
    /// The request as text (lossy).
    pub fn request_text(&self) -> String {
        String::from_utf8_lossy(&self.request).into_owned()
    }

    /// The request head's lines (request line first), without the blank line.
    pub fn head_lines(&self) -> Vec<String> {
        let text = self.request_text();
        let head = text.split("\r\n\r\n").next().unwrap_or_default();
        head.split("\r\n").filter(|l| !l.is_empty()).map(str::to_owned).collect()
    }
}

/// The fixed response a recording server sends (a complete HTTP/1.1 response by default).
pub fn http_ok() -> Vec<u8> {
    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok".to_vec()
}

/// A recording server. Dropping it stops it.
pub struct RecordingServer {
    /// The bound address.
    pub addr: SocketAddr,
    records: Arc<Mutex<Vec<Recorded>>>,
    snis: Arc<Mutex<Vec<Option<String>>>>,
    _task: Task,
}

impl RecordingServer {
    /// Plain TCP on `ip`, any free port; answers `response` to every request.
    pub async fn start(ip: IpAddr, response: Vec<u8>) -> RecordingServer {
        RecordingServer::start_inner(ip, None, response).await
    }

    /// TLS with `leaf` for any SNI (ALPN `http/1.1` only, so clients speak HTTP/1).
    pub async fn start_tls(ip: IpAddr, leaf: Leaf, response: Vec<u8>) -> RecordingServer {
        RecordingServer::start_inner(ip, Some(TlsSite::new(leaf).alpn(&["http/1.1"])), response).await
    }

    async fn start_inner(ip: IpAddr, site: Option<TlsSite>, response: Vec<u8>) -> RecordingServer {
        let listener = listen(ip, 0).await;
        let addr = listener.local_addr().expect("local addr");
        let records = Arc::new(Mutex::new(Vec::new()));
        let snis = Arc::new(Mutex::new(Vec::new()));
        let tls = site.map(|s| tokio_rustls::TlsAcceptor::from(s.server_config(snis.clone())));
        let (record, response) = (records.clone(), Arc::new(response));
        let task = accept_loop(listener, move |stream, peer| {
            let (record, response, tls) = (record.clone(), response.clone(), tls.clone());
            async move {
                let deadline = Instant::now() + READ_LIMIT;
                let _ = timeout_at(deadline, handle(stream, peer, tls, &record, &response)).await;
            }
        });
        RecordingServer { addr, records, snis, _task: task }
    }

    /// Every connection recorded so far.
    pub fn records(&self) -> Vec<Recorded> {
        lock(&self.records).clone()
    }

    /// Waits (at most `within`) until `n` connections are recorded: a connection that sends
    /// nothing is recorded at EOF, which can come after the probe returned.
    pub async fn wait_records(&self, n: usize, within: Duration) -> Vec<Recorded> {
        wait_for(within, || {
            let records = self.records();
            (records.len() >= n).then_some(records)
        })
        .await
        .unwrap_or_else(|| self.records())
    }

    /// The SNI of every ClientHello (TLS variant), including failed handshakes.
    pub fn snis(&self) -> Vec<Option<String>> {
        lock(&self.snis).clone()
    }
}

async fn handle(
    mut stream: TcpStream,
    peer: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    record: &Mutex<Vec<Recorded>>,
    response: &[u8],
) {
    let proxy_header = read_proxy_header(&mut stream).await;
    let mut seen = Recorded { peer, proxy_header, tls: false, sni: None, request: Vec::new() };
    match tls {
        None => exchange(stream, seen, record, response).await,
        Some(acceptor) => match acceptor.accept(stream).await {
            Ok(stream) => {
                seen.tls = true;
                seen.sni = stream.get_ref().1.server_name().map(str::to_owned);
                exchange(stream, seen, record, response).await;
            }
            Err(_) => lock(record).push(seen),
        },
    }
}

/// Records the request, then answers. The record is stored before the answer goes out, so a
/// probe that got its answer finds its record in place.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    mut seen: Recorded,
    record: &Mutex<Vec<Recorded>>,
    response: &[u8],
) {
    let eof = read_request(&mut stream, &mut seen.request).await;
    lock(record).push(seen);
    if !eof {
        let _ = stream.write_all(response).await;
        let _ = stream.flush().await;
        let _ = stream.shutdown().await;
    }
}

/// Reads an HTTP/1 head plus its `content-length` body (or until EOF, `READ_MAX` or the read
/// limit). Returns true at EOF.
async fn read_request<S: AsyncRead + Unpin>(stream: &mut S, out: &mut Vec<u8>) -> bool {
    let mut buf = vec![0u8; 16 * 1024];
    let until = Instant::now() + READ_LIMIT;
    while out.len() < READ_MAX {
        if let Some(end) = find(out, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&out[..end]).to_ascii_lowercase();
            let body_len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if out.len() >= end + 4 + body_len {
                return false;
            }
        }
        match timeout_at(until, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return false,
        }
    }
    false
}

/// Consumes a PROXY v1 line or v2 block at the start of the stream, leaving the rest unread
/// (peeked first, so a TLS handshake can follow on the same socket). `None` when the stream does
/// not begin with one (nothing is consumed then).
pub async fn read_proxy_header(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = [0u8; 256];
    let until = Instant::now() + READ_LIMIT;
    // Peek until the header's length is known or it is clearly absent: at most READ_LIMIT, 5 ms
    // apart.
    let len = loop {
        let n = match timeout_at(until, stream.peek(&mut buf)).await {
            Ok(Ok(n)) => n,
            _ => return None,
        };
        if n == 0 {
            return None;
        }
        let seen = &buf[..n];
        if seen.starts_with(b"PROXY ") {
            // A v1 line is at most 107 bytes.
            match find(seen, b"\r\n") {
                Some(end) => break end + 2,
                None if n >= 107 => return None,
                None => {}
            }
        } else if seen.len() >= 16 && seen.starts_with(PROXY_V2_SIGNATURE) {
            break 16 + u16::from_be_bytes([seen[14], seen[15]]) as usize;
        } else {
            let v1 = b"PROXY ".starts_with(&seen[..n.min(6)]);
            let v2 = PROXY_V2_SIGNATURE[..n.min(12)] == seen[..n.min(12)];
            if !(v1 || v2) {
                return None;
            }
        }
        if Instant::now() >= until {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let mut header = vec![0u8; len];
    timeout_at(until, stream.read_exact(&mut header)).await.ok()?.ok()?;
    Some(header)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
