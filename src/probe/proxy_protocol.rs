//! PROXY protocol v1/v2 headers (encoded with the `ppp` crate).

use std::net::SocketAddr;

use tokio::io::AsyncWrite;
use tokio::time::Instant;

use super::outcome::Failure;
use crate::config::ProxyHeader;

/// The header bytes for a connection from `local` to `peer`: a `PROXY` command carrying those
/// addresses, or, when `header.local`, a `LOCAL` command (v2) / `PROXY UNKNOWN` (v1).
pub fn encode(header: ProxyHeader, local: SocketAddr, peer: SocketAddr) -> Vec<u8> {
    let _ = (header, local, peer);
    todo!("proxy encode")
}

/// Writes `bytes` before `deadline`. Errors are reported in phase `proxy`.
pub async fn send<W: AsyncWrite + Unpin>(io: &mut W, bytes: &[u8], deadline: Instant) -> Result<(), Failure> {
    let _ = (io, bytes, deadline);
    todo!("proxy send")
}
