//! TCP layer: socket2 for the source bind, `IP_FREEBIND` and the connect deadline.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Instant;

use super::outcome::Failure;
use crate::config::SourceBind;

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
/// `connect_reset`, `source_unavailable`.
pub async fn connect(
    peer: SocketAddr,
    source: Option<&SourceBind>,
    freebind: bool,
    deadline: Instant,
) -> Result<Connected, Failure> {
    let _ = (peer, source, freebind, deadline);
    todo!("tcp")
}
