//! TCP layer: socket2 for the source bind, `IP_FREEBIND` and the connect deadline.
//!
//! The socket is set up with socket2 (family, `IP_FREEBIND`, source bind, `TCP_NODELAY`) and
//! handed to tokio for a non-blocking connect, so each failure is seen where it happens: a bind
//! failure is the source's fault (`source_unavailable`), a connect failure the path's.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

use super::outcome::{resource_exhausted, ErrorCode, Failure};
use crate::config::SourceBind;
use crate::duration::Human;

/// An established connection and what it took.
#[derive(Debug)]
pub struct Connected {
    /// The stream.
    pub stream: TcpStream,
    /// Our address.
    pub local: SocketAddr,
    /// Their address.
    pub peer: SocketAddr,
    /// SYN to established, from the monotonic clock.
    pub elapsed: Duration,
}

/// Connects to `peer`, binding `source` first (with `IP_FREEBIND` when `freebind`), before
/// `deadline`. Errors: `connect_refused`, `connect_timeout`, `connect_unreachable`,
/// `connect_reset`, `source_unavailable`, and `local_resource_exhausted` when this host is out
/// of file descriptors, socket buffers or memory (at socket, bind or connect).
pub async fn connect(
    peer: SocketAddr,
    source: Option<&SourceBind>,
    freebind: bool,
    deadline: Instant,
) -> Result<Connected, Failure> {
    let socket = open(peer, source, freebind)?;
    let socket = TcpSocket::from_std_stream(std::net::TcpStream::from(socket));

    let start = Instant::now();
    let connected = tokio::time::timeout_at(deadline, socket.connect(peer)).await;
    let elapsed = start.elapsed();
    let stream = match connected {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return Err(classify_connect(peer, source, &e)),
        Err(_) => {
            return Err(Failure::new(
                ErrorCode::ConnectTimeout,
                format!("no answer from {peer} within {}", Human(elapsed)),
            ))
        }
    };
    // A peer that resets right after the handshake makes these fail with ENOTCONN.
    let addresses = stream.local_addr().and_then(|local| Ok((local, stream.peer_addr()?)));
    let (local, peer) = addresses.map_err(|e| {
        Failure::new(
            ErrorCode::ConnectReset,
            format!("connection to {peer} closed right after it was made: {e}"),
        )
    })?;
    Ok(Connected { stream, local, peer, elapsed })
}

/// A non-blocking socket for `peer`'s family, bound to `source` when given.
fn open(peer: SocketAddr, source: Option<&SourceBind>, freebind: bool) -> Result<Socket, Failure> {
    // Non-blocking from the start (SOCK_NONBLOCK): no fcntl round trip per probe.
    let socket = Socket::new(Domain::for_address(peer), Type::STREAM.nonblocking(), Some(Protocol::TCP))
        .map_err(|e| {
            if resource_exhausted(&e) {
                local_exhausted(format!("cannot open a socket for {peer}: {e}"))
            } else {
                Failure::new(ErrorCode::ConnectUnreachable, format!("cannot open a socket for {peer}: {e}"))
            }
        })?;
    if let Some(source) = source {
        let unavailable = |why: String| {
            Failure::new(
                ErrorCode::SourceUnavailable,
                format!("cannot bind source {} (configured {}): {why}", source.addr, source.requested),
            )
        };
        if source.addr.is_ipv4() != peer.is_ipv4() {
            return Err(unavailable(format!("{peer} is of the other address family")));
        }
        if freebind {
            let set = match source.addr {
                IpAddr::V4(_) => socket.set_freebind(true),
                IpAddr::V6(_) => socket.set_freebind_ipv6(true),
            };
            set.map_err(|e| unavailable(format!("IP_FREEBIND: {e}")))?;
        }
        socket.bind(&SocketAddr::new(source.addr, 0).into()).map_err(|e| {
            if resource_exhausted(&e) {
                local_exhausted(format!("cannot bind source {}: {e}", source.addr))
            } else {
                unavailable(e.to_string())
            }
        })?;
    }
    // Probes write small requests and wait for the answer: Nagle would only add delay to the
    // latency we report.
    socket.set_nodelay(true).map_err(|e| {
        Failure::new(ErrorCode::ConnectUnreachable, format!("cannot set up a socket for {peer}: {e}"))
    })?;
    Ok(socket)
}

/// `local_resource_exhausted`, with a detail that says whose fault it is.
fn local_exhausted(what: String) -> Failure {
    Failure::new(
        ErrorCode::LocalResourceExhausted,
        format!(
            "{what}: this host is out of resources (raise the open-files limit); not the target's failure"
        ),
    )
}

fn classify_connect(peer: SocketAddr, source: Option<&SourceBind>, e: &io::Error) -> Failure {
    if resource_exhausted(e) {
        return local_exhausted(format!("connect to {peer}: {e}"));
    }
    let code = match e.raw_os_error() {
        Some(libc::ECONNREFUSED) => ErrorCode::ConnectRefused,
        // The kernel gave up on SYN retries before our deadline did.
        Some(libc::ETIMEDOUT) => ErrorCode::ConnectTimeout,
        Some(libc::ECONNRESET | libc::EPIPE | libc::ECONNABORTED) => ErrorCode::ConnectReset,
        // At connect, these mean no local port or address could be had for the source.
        Some(libc::EADDRNOTAVAIL | libc::EADDRINUSE) => ErrorCode::SourceUnavailable,
        // ENETUNREACH, EHOSTUNREACH, EHOSTDOWN, ENETDOWN, and EACCES/EPERM from a local firewall:
        // the path to the peer does not exist for us.
        _ => ErrorCode::ConnectUnreachable,
    };
    let from = match source {
        Some(s) => format!(" from {}", s.addr),
        None => String::new(),
    };
    Failure::new(code, format!("connect to {peer}{from}: {e}"))
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use tokio::net::TcpListener;

    use super::*;
    use crate::config::Source;

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(3)
    }

    fn source(ip: Ipv4Addr) -> SourceBind {
        SourceBind { requested: Source::Addr(IpAddr::V4(ip)), addr: IpAddr::V4(ip) }
    }

    #[tokio::test]
    async fn connects_and_reports_both_ends() {
        let listener = TcpListener::bind((Ipv4Addr::new(127, 0, 0, 20), 0)).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let c = connect(addr, None, false, soon()).await.expect("connects");
        assert_eq!(c.peer, addr);
        assert_eq!(c.local.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert!(c.stream.nodelay().expect("nodelay"), "TCP_NODELAY is set");
        assert!(c.elapsed < Duration::from_secs(3));
    }

    #[tokio::test]
    async fn nothing_listening_is_refused() {
        let listener = TcpListener::bind((Ipv4Addr::new(127, 0, 0, 21), 0)).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let f = connect(addr, None, false, soon()).await.expect_err("refused");
        assert_eq!(f.code, ErrorCode::ConnectRefused, "{f}");
        assert!(f.detail.contains(&addr.to_string()), "{f}");
    }

    #[tokio::test]
    async fn full_accept_queue_times_out_at_the_deadline() {
        // A listener that never accepts, with the smallest backlog: once its queue is full, Linux
        // drops further SYNs, which is what a firewall DROP looks like to the prober.
        let addr = SocketAddr::from((Ipv4Addr::new(127, 0, 0, 22), 0));
        let listener = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        listener.bind(&addr.into()).expect("bind");
        listener.listen(0).expect("listen");
        let addr = listener.local_addr().expect("addr").as_socket().expect("inet");

        let mut held = Vec::new();
        let mut timed_out = None;
        for _ in 0..8 {
            let start = Instant::now();
            match connect(addr, None, false, start + Duration::from_millis(300)).await {
                Ok(c) => held.push(c),
                Err(f) => {
                    timed_out = Some((f, start.elapsed()));
                    break;
                }
            }
        }
        let (f, took) = timed_out.expect("a connect times out once the queue is full");
        assert_eq!(f.code, ErrorCode::ConnectTimeout, "{f}");
        assert!(took >= Duration::from_millis(290) && took < Duration::from_secs(2), "took {took:?}");
        assert!(!held.is_empty(), "the first connection fits in the queue");
    }

    #[tokio::test]
    async fn binds_the_source_address() {
        let listener = TcpListener::bind((Ipv4Addr::new(127, 0, 0, 23), 0)).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let src = source(Ipv4Addr::new(127, 0, 0, 77));
        let (c, accepted) = tokio::join!(connect(addr, Some(&src), false, soon()), listener.accept());
        let c = c.expect("connects");
        let (_server_side, seen) = accepted.expect("accepts");
        assert_eq!(seen.ip(), IpAddr::V4(Ipv4Addr::new(127, 0, 0, 77)), "the server sees our source");
        assert_eq!(c.local, seen);
    }

    #[tokio::test]
    async fn a_source_that_is_not_local_is_unavailable() {
        // 192.0.2.1 (TEST-NET-1) is on no interface: the bind fails locally, nothing is sent.
        let listener = TcpListener::bind((Ipv4Addr::new(127, 0, 0, 24), 0)).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let src = source(Ipv4Addr::new(192, 0, 2, 1));
        let f = connect(addr, Some(&src), false, soon()).await.expect_err("cannot bind");
        assert_eq!(f.code, ErrorCode::SourceUnavailable, "{f}");
        assert!(f.detail.contains("192.0.2.1"), "{f}");
    }

    #[tokio::test]
    async fn a_source_of_the_other_family_is_unavailable() {
        let peer = SocketAddr::from((Ipv4Addr::new(127, 0, 0, 25), 9));
        let src = SourceBind {
            requested: Source::Addr("::1".parse().expect("ip")),
            addr: "::1".parse().expect("ip"),
        };
        let f = connect(peer, Some(&src), false, soon()).await.expect_err("family mismatch");
        assert_eq!(f.code, ErrorCode::SourceUnavailable, "{f}");
        assert!(f.detail.contains("other address family"), "{f}");
    }

    #[test]
    fn freebind_binds_an_address_that_is_not_local() {
        // Only the bind is exercised: the socket is dropped without connecting, so no packet
        // ever leaves with a non-loopback source.
        let peer = SocketAddr::from((Ipv4Addr::new(127, 0, 0, 26), 9));
        let src = source(Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(open(peer, Some(&src), false).err().map(|f| f.code), Some(ErrorCode::SourceUnavailable));
        let socket = open(peer, Some(&src), true).expect("IP_FREEBIND allows the bind");
        let local = socket.local_addr().expect("addr").as_socket().expect("inet");
        assert_eq!(local.ip(), IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)));
    }
}
