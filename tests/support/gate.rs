//! A gate in front of a backend: what a host firewall or an nginx `listen ... proxy_protocol`
//! does to a connection before the application sees it. Each accepted connection is judged by a
//! [`Policy`]; admitted ones are spliced byte for byte to the backend (an [`HttpServer`] or any
//! other listener), refused ones are reset or closed. Every connection is recorded, so a test can
//! count exactly how many connections (probes and hybrids) reached the gate, and from where.
//!
//! [`HttpServer`]: super::http::HttpServer

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::http::lock;
use super::recording::read_proxy_header;
use super::{accept_loop, listen, Task};

/// A spliced connection is cut after this long (every connection is bounded in time).
const SPLICE_LIMIT: Duration = Duration::from_secs(10);

/// How a refused connection ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `SO_LINGER` 0, then close: the peer sees a reset (a firewall's `tcp-reset`).
    Reset,
    /// A plain close without a byte (nginx after "broken header").
    Close,
}

/// What the gate admits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Policy {
    /// Refuses connections from these source addresses, admits every other.
    RefuseSources(Vec<IpAddr>, Refusal),
    /// Admits only connections that begin with a PROXY v1 line or v2 block (stripped before the
    /// backend sees the rest); closes the others.
    RequireProxyHeader,
}

/// One connection as the gate saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    /// The client's address (its source).
    pub peer: SocketAddr,
    /// Whether it was spliced to the backend.
    pub admitted: bool,
    /// The PROXY header it began with (`RequireProxyHeader` only).
    pub proxy_header: Option<Vec<u8>>,
}

/// A gate. Dropping it stops it.
pub struct Gate {
    /// The bound address.
    pub addr: SocketAddr,
    admissions: Arc<Mutex<Vec<Admission>>>,
    _task: Task,
}

impl Gate {
    /// Listens on `ip` (any free port), judges each connection by `policy` and splices the
    /// admitted ones to `backend` (a loopback address).
    pub async fn start(ip: IpAddr, backend: SocketAddr, policy: Policy) -> Gate {
        assert!(backend.ip().is_loopback(), "the gate forwards to loopback only, not {backend}");
        let listener = listen(ip, 0).await;
        let addr = listener.local_addr().expect("local addr");
        let admissions = Arc::new(Mutex::new(Vec::new()));
        let record = admissions.clone();
        let policy = Arc::new(policy);
        let task = accept_loop(listener, move |stream, peer| {
            let (record, policy) = (record.clone(), policy.clone());
            async move {
                let _ = timeout(SPLICE_LIMIT, judge(stream, peer, &policy, backend, &record)).await;
            }
        });
        Gate { addr, admissions, _task: task }
    }

    /// Every connection so far.
    pub fn admissions(&self) -> Vec<Admission> {
        lock(&self.admissions).clone()
    }

    /// Connections refused so far.
    pub fn refused(&self) -> usize {
        self.admissions().iter().filter(|a| !a.admitted).count()
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

async fn judge(
    mut stream: TcpStream,
    peer: SocketAddr,
    policy: &Policy,
    backend: SocketAddr,
    record: &Mutex<Vec<Admission>>,
) {
    let (admitted, proxy_header, refusal) = match policy {
        Policy::RefuseSources(sources, refusal) => (!sources.contains(&peer.ip()), None, *refusal),
        Policy::RequireProxyHeader => {
            let header = read_proxy_header(&mut stream).await;
            (header.is_some(), header, Refusal::Close)
        }
    };
    lock(record).push(Admission { peer, admitted, proxy_header });
    if !admitted {
        match refusal {
            Refusal::Reset => {
                let _ = stream.set_zero_linger();
            }
            Refusal::Close => {
                let _ = stream.shutdown().await;
                // Drain what the peer still sends (for at most 1 s): closing with unread bytes
                // would make the kernel send a reset instead of the FIN.
                let mut buf = [0u8; 4096];
                let until = tokio::time::Instant::now() + Duration::from_secs(1);
                while let Ok(Ok(n)) = tokio::time::timeout_at(until, stream.read(&mut buf)).await {
                    if n == 0 {
                        break;
                    }
                }
            }
        }
        return;
    }
    let Ok(mut upstream) = TcpStream::connect(backend).await else { return };
    let _ = tokio::io::copy_bidirectional(&mut stream, &mut upstream).await;
}
