//! TLS layer: rustls with SNI from the host, a name, or none; verification with webpki-roots
//! and/or `ca_file`, or off (the chain is recorded either way); certificate summary.

use std::sync::Arc;

use rustls::time_provider::TimeProvider;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;

use super::outcome::{Failure, TlsSummary};
use crate::config::TlsSettings;

/// `ClientConfig`s built once per distinct (verify, ca_file, alpn) and shared by all probes.
#[derive(Debug)]
pub struct TlsConfigs {
    #[allow(dead_code)]
    time: Arc<dyn TimeProvider>,
}

impl TlsConfigs {
    /// Configs that take the time from the system clock.
    pub fn new() -> TlsConfigs {
        TlsConfigs::with_time(Arc::new(rustls::time_provider::DefaultTimeProvider))
    }

    /// Configs that take the time from `time` (tests move it to check expiry).
    pub fn with_time(time: Arc<dyn TimeProvider>) -> TlsConfigs {
        TlsConfigs { time }
    }
}

impl Default for TlsConfigs {
    fn default() -> TlsConfigs {
        TlsConfigs::new()
    }
}

/// A finished handshake.
#[derive(Debug)]
pub struct Handshake {
    /// The encrypted stream.
    pub stream: TlsStream<TcpStream>,
    /// What the handshake showed.
    pub summary: TlsSummary,
}

/// Runs the handshake on `tcp`, sending `sni` (none when `None`), before `deadline`.
/// On failure, returns the summary of whatever certificate chain was seen.
/// Errors: every `tls_*` code of DESIGN §5.
pub async fn handshake(
    configs: &TlsConfigs,
    tcp: TcpStream,
    settings: &TlsSettings,
    sni: Option<&str>,
    deadline: Instant,
) -> Result<Handshake, (Failure, Option<TlsSummary>)> {
    let _ = (configs, tcp, settings, sni, deadline);
    todo!("tls")
}
