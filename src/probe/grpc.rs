//! gRPC health layer: `grpc.health.v1.Health/Check` over HTTP/2 (prost for the messages).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use super::http::Sent;
use super::outcome::Failure;
use crate::config::View;

/// The health answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthAnswer {
    /// `SERVING`, `NOT_SERVING`, `UNKNOWN` or `SERVICE_UNKNOWN`.
    pub status: &'static str,
    /// Request written to first response byte.
    pub ttfb: Duration,
}

/// Calls `Check` for `view.expect.grpc_service` over `io` before `deadline`.
/// Errors: `grpc_not_serving`, `grpc_unimplemented`, `grpc_status`, and the `http_*` transport
/// codes (in phase `grpc`).
pub async fn check<S>(
    io: S,
    view: &View,
    dialed: SocketAddr,
    deadline: Instant,
) -> (Sent, Result<HealthAnswer, Failure>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let _ = (io, view, dialed, deadline);
    todo!("grpc")
}
