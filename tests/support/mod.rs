//! Test support shared by the integration tests (`mod support;`): real in-process servers on
//! 127.0.0.x addresses (port 0, the bound address is returned), certificates made with rcgen at
//! test time, and helpers that write a `probes.d` directory, load it through the public API and
//! probe its views.
//!
//! Every server is a guard: dropping it stops its accept loop ([`accept_loop`], the one they all
//! run) and every connection task (no leaked tasks). Only loopback addresses are ever bound or dialed; every loop in here is bounded
//! in count and in time.
//!
//! - [`certs`]: a CA and leaf certificates (chosen SANs, expired / not-yet-valid, self-signed),
//!   PEM files for `ca_file`; made by `parallax::pki`, the library's one certificate builder.
//! - [`http`]: an HTTP/1 + HTTP/2 server with a closure router, and its HTTPS variant with SNI
//!   vhosts, a default certificate, ALPN, and a record of the SNI each handshake saw.
//! - [`raw`]: a scripted TCP server for hostile cases, and a listener whose full backlog drops
//!   SYNs (connect timeouts without root).
//! - [`recording`]: records the raw bytes a probe sends (PROXY header included), its source
//!   address and SNI, then answers a fixed response.
//! - [`gate`]: a firewall-like gate in front of a backend: refuses chosen source addresses, or
//!   admits only connections that begin with a PROXY header; counts every connection.
//! - [`dns`]: an authoritative hickory-server on UDP+TCP, and a nameserver that never answers.
//! - [`grpc`]: a `grpc.health.v1` server with hand-made frames and prost messages.
//! - [`probes`]: `probes.d` writing, loading, probing and outcome assertions.
//! - [`otlp`]: an OTLP receiver (gRPC and HTTP/protobuf on one port) that records what it gets.
//! - [`kube`]: a real etcd + kube-apiserver on loopback (`scripts/kube-test-infra` builds them)
//!   with the Gateway API CRDs and parallax's RBAC applied: shared per test binary, or a test's
//!   own to stop and restart.
//! - [`memory`]: this process's resident memory (now and at its peak) from /proc (tests that
//!   need only this include the file by path).
//! - [`browser`]: headless Chromium's rendered DOM of a URL, and helpers to search it (tests that
//!   need only this include the file by path).

// Each test binary uses only part of the support module.
#![allow(dead_code)]

pub mod browser;
pub mod certs;
pub mod dns;
pub mod gate;
pub mod grpc;
pub mod http;
pub mod kube;
pub mod memory;
pub mod otlp;
pub mod probes;
pub mod raw;
pub mod recording;

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// An accept loop serves at most this many connections (every loop is bounded).
pub const MAX_CONNECTIONS: usize = 10_000;

/// A spawned task that is aborted when the guard is dropped. Servers keep their connection tasks
/// in a `JoinSet` owned by the accept loop, so aborting the loop drops (aborts) them too.
#[derive(Debug)]
pub struct Task(JoinHandle<()>);

impl Task {
    /// Spawns `future` on the current runtime.
    pub fn spawn(future: impl std::future::Future<Output = ()> + Send + 'static) -> Task {
        Task(tokio::spawn(future))
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The accept loop every server here runs: accepts on `listener` until the returned guard is
/// dropped or [`MAX_CONNECTIONS`] accepts have been made (a failed accept counts, and pauses the
/// loop 10 ms so a persistent error cannot spin), and runs `serve(stream, peer)` for each
/// connection in a task set the loop owns, so dropping the guard ends the connections too.
pub fn accept_loop<S, F>(listener: TcpListener, mut serve: S) -> Task
where
    S: FnMut(TcpStream, SocketAddr) -> F + Send + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    Task::spawn(async move {
        let mut connections = JoinSet::new();
        for _ in 0..MAX_CONNECTIONS {
            let Ok((stream, peer)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            while connections.try_join_next().is_some() {}
            connections.spawn(serve(stream, peer));
        }
    })
}

/// `127.0.0.n`: tests use distinct loopback addresses so a server can tell probes apart by their
/// source, and so two servers can share a port (each_address).
pub fn lo(n: u8) -> IpAddr {
    assert!(n != 0 && n != 255, "127.0.0.{n} is not a usable host address");
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))
}

/// Binds a TCP listener on `ip` and `port` (0: any free port).
pub async fn listen(ip: IpAddr, port: u16) -> TcpListener {
    assert!(ip.is_loopback(), "tests bind loopback addresses only, not {ip}");
    TcpListener::bind(SocketAddr::new(ip, port)).await.unwrap_or_else(|e| panic!("bind {ip}:{port}: {e}"))
}

/// A port on `ip` that refuses connections: a socket bound to it but not listening. Keeping the
/// socket reserves the port, so no other test can start listening there meanwhile.
#[derive(Debug)]
pub struct ClosedPort {
    /// The address that answers SYN with RST.
    pub addr: SocketAddr,
    _socket: tokio::net::TcpSocket,
}

impl ClosedPort {
    /// Reserves a refusing port on `ip`.
    pub fn new(ip: IpAddr) -> ClosedPort {
        assert!(ip.is_loopback(), "tests bind loopback addresses only, not {ip}");
        let socket = tokio::net::TcpSocket::new_v4().expect("tcp socket");
        socket.bind(SocketAddr::new(ip, 0)).expect("bind a closed port");
        let addr = socket.local_addr().expect("local addr");
        ClosedPort { addr, _socket: socket }
    }
}

/// Polls `check` every 10 ms until it returns `Some`, for at most `within`.
pub async fn wait_for<T>(within: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
