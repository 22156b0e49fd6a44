//! `parallax demo`: the whole of parallax in one command, with nothing to prepare.
//!
//! [`Backends::start`] binds, inside this process, small HTTP and HTTPS servers on loopback
//! addresses `127.0.0.11` to `127.0.0.18` (free ports; certificates from a CA made at start with
//! [`crate::pki`]), each reproducing one field failure (docs/field-failures.md) next to a healthy service
//! ([`SCENARIOS`]). [`Backends::config`] is the `probes.d` file that watches them (every view
//! probed each second, a disagreement held 2 s opens a mismatch), compiled in memory with
//! [`config::load_str`]. [`run`] starts the daemon on it with the admin server and dashboard, and
//! draws the status document as a table in the terminal.
//!
//! Nothing is dialed beyond loopback. The only file written is the demo CA's certificate (the
//! client views verify with it through `ca_file`), in a private temporary directory removed when
//! the demo ends.
//!
//! - `scenarios`: the targets, what each reproduces, and their configuration text.
//! - `backends`: the in-process servers and what each answers.
//! - `screen`: the terminal table, live or as snapshots.

mod backends;
mod scenarios;
mod screen;

use std::collections::HashMap;
use std::future::Future;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::time::Instant;

use crate::config::{self, ConfigErrors, OtlpProtocol, Plan};
use crate::daemon::{self, Daemon};
use crate::export::{ResourceInfo, Telemetry, TelemetryOptions};

pub use backends::Backends;
pub use scenarios::{help, Expected, Scenario, SCENARIOS};
pub use screen::table;
use screen::Console;

/// How often the terminal table is redrawn (and the status read for it).
pub const REFRESH: Duration = Duration::from_secs(1);

/// Why the demo could not start.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// A backend could not bind its loopback address.
    #[error("cannot start a demo backend on {ip}: {error}")]
    Backend {
        /// The address.
        ip: IpAddr,
        /// Why (in the message, and not its source: printed once).
        error: io::Error,
    },
    /// rcgen or rustls refused the certificates.
    #[error("cannot make the demo certificates: {0}")]
    Certificates(String),
    /// The CA certificate could not be written.
    #[error("cannot write the demo CA certificate: {0}")]
    CaFile(io::Error),
    /// The demo configuration does not compile (a bad `--otlp` endpoint, say).
    #[error("the demo configuration does not compile:\n{0}")]
    Config(ConfigErrors),
    /// The admin listener could not be bound, not even on a free port.
    #[error("cannot listen on {addr} for the dashboard: {error}")]
    Admin {
        /// The address asked for.
        addr: SocketAddr,
        /// Why (in the message, and not its source: printed once).
        error: io::Error,
    },
}

/// Where the demo also exports OTLP (`--otlp`).
#[derive(Debug, Clone, PartialEq)]
pub struct Otlp {
    /// Collector endpoint URL.
    pub endpoint: String,
    /// Wire protocol.
    pub protocol: OtlpProtocol,
}

/// How the terminal shows the demo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Display {
    /// A table redrawn in place every second with ANSI sequences (stdout is a terminal).
    Live {
        /// Colour the verdicts and mismatches.
        color: bool,
    },
    /// A plain snapshot whenever a verdict, a last result or a mismatch changed (checked every
    /// second), and one at the end: for pipes and logs.
    Snapshots,
    /// No table: the output carries the JSON event lines only (`--events`).
    Off,
}

/// `parallax demo`'s settings.
#[derive(Debug, Clone)]
pub struct Options {
    /// The admin server's address (a free port on the same address when this one is taken).
    pub listen: SocketAddr,
    /// Stop after this long (`None`: at `shutdown` only).
    pub run_for: Option<Duration>,
    /// Also export OTLP here.
    pub otlp: Option<Otlp>,
    /// Write the JSON event lines to the output (and no table).
    pub events: bool,
    /// How the table is shown.
    pub display: Display,
}

/// Runs the demo until `shutdown` completes or `options.run_for` has passed: the backends, the
/// daemon on their configuration with the admin server and dashboard, and the table (or the
/// event lines) on `out`. Notes for people (the port fallback, the dashboard URL when the table
/// is off) go to stderr. Returns after the daemon has shut down cleanly.
pub async fn run(
    options: Options,
    out: Box<dyn Write + Send>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), DemoError> {
    let backends = Backends::start().await?;
    let plan = backends.plan(options.otlp.as_ref())?;
    let (listener, fallback) = bind_admin(options.listen).await?;
    let admin = listener.local_addr().map_err(|error| DemoError::Admin { addr: options.listen, error })?;
    let url = dashboard_url(admin);
    if fallback {
        eprintln!(
            "parallax demo: {} is in use; the dashboard is on {admin} instead (--listen chooses another)",
            options.listen
        );
    }

    // `out` carries either the event lines or the table, never both.
    let (events, table_out, display): (Box<dyn Write + Send>, _, _) = if options.events {
        (out, None, Display::Off)
    } else {
        (Box::new(io::sink()), Some(out), options.display)
    };
    let telemetry = telemetry(&plan, events, options.otlp.is_some());
    let banner = banner(&plan, &backends, &url);
    let daemon = Daemon::new(
        plan,
        telemetry,
        daemon::Options {
            env: Arc::new(HashMap::<String, String>::new()),
            watch_interval: None,
            ..daemon::Options::default()
        },
    );
    let handle = daemon.handle();
    let started = Instant::now();
    let deadline = options.run_for.map(|d| started + d);
    let taken = fallback.then_some(options.listen);
    let mut console = Console::start(table_out, display, url, taken, started, deadline);
    console.banner(&banner);

    let mut running = tokio::spawn(daemon.run(Some(listener), stop_at(shutdown, deadline)));
    let mut tick = tokio::time::interval(REFRESH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = &mut running => break,
            _ = tick.tick() => {}
        }
        console.refresh(&handle);
    }
    console.finish(&handle);
    drop(backends);
    Ok(())
}

/// The daemon's telemetry: JSON event lines to `events`, OTLP only with `--otlp`.
fn telemetry(plan: &Plan, events: Box<dyn Write + Send>, otlp: bool) -> Arc<Telemetry> {
    // Without `--otlp`, no OTEL_* variable may turn exports on: the demo stays on loopback.
    let env = demo_env(otlp);
    Arc::new(Telemetry::with_options(
        &plan.export,
        ResourceInfo { host_name: daemon::host_name(&*env), node_name: None, vantage: None },
        &*env,
        TelemetryOptions { events, ..TelemetryOptions::default() },
    ))
}

/// The opening lines: what runs where, and the dashboard's URL.
fn banner(plan: &Plan, backends: &Backends, url: &str) -> String {
    let targets = plan.targets.len();
    let views = plan.views().count();
    let ips: Vec<IpAddr> = backends.addresses().collect();
    let on = match (ips.first(), ips.last()) {
        (Some(first), Some(last)) if first != last => format!("{first} to {last}"),
        (Some(only), _) => only.to_string(),
        _ => "loopback".to_owned(),
    };
    format!(
        "parallax demo: {targets} targets, {views} views, backends on {on} (loopback only), every view \
         probed each second.\nDashboard: {url}\nStatus API: {url}api/v1/status\n"
    )
}

/// Completes when `shutdown` does or at `deadline`, whichever comes first.
async fn stop_at(shutdown: impl Future<Output = ()>, deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::select! {
            () = shutdown => {}
            () = tokio::time::sleep_until(at) => {}
        },
        None => shutdown.await,
    }
}

/// Variables the demo's exporters may read: the process's with `--otlp` (headers, resource
/// attributes), none otherwise.
fn demo_env(otlp: bool) -> Box<dyn config::Env> {
    if otlp {
        Box::new(config::ProcessEnv)
    } else {
        Box::new(HashMap::<String, String>::new())
    }
}

/// Binds `addr`, or a free port on the same address when `addr` is taken (`true` then).
async fn bind_admin(addr: SocketAddr) -> Result<(TcpListener, bool), DemoError> {
    match TcpListener::bind(addr).await {
        Ok(listener) => Ok((listener, false)),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse && addr.port() != 0 => {
            let any = SocketAddr::new(addr.ip(), 0);
            let listener = TcpListener::bind(any).await.map_err(|error| DemoError::Admin { addr, error })?;
            Ok((listener, true))
        }
        Err(error) => Err(DemoError::Admin { addr, error }),
    }
}

/// The dashboard's URL for a listener on `addr` (on every interface: through loopback).
fn dashboard_url(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}/", SocketAddr::new(ip, addr.port()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dashboard_of_an_unspecified_address_is_reached_through_loopback() {
        assert_eq!(dashboard_url("0.0.0.0:9464".parse().unwrap()), "http://127.0.0.1:9464/");
        assert_eq!(dashboard_url("[::]:9464".parse().unwrap()), "http://[::1]:9464/");
        assert_eq!(dashboard_url("127.0.0.2:80".parse().unwrap()), "http://127.0.0.2:80/");
    }
}
