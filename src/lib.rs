//! parallax probes every target twice — as its users reach it and as its load balancer's health
//! checker reaches it — and names why the two views disagree.
//!
//! # Layout
//!
//! - [`config`]: `probes.d/` files (serde types, unknown keys rejected) compiled into an immutable
//!   [`config::Plan`]; checker profiles; `${..}` substitution and secret redaction.
//! - [`probe`]: the probe engine — dns, tcp (source bind), PROXY header, tls, http, grpc layers —
//!   and the [`probe::Outcome`] record with its closed error taxonomy.
//! - [`verdict`]: per view, the health the emulated LB holds (rise/fall, starting state).
//! - [`diff`]: per target, client verdict against each checker verdict; mismatch lifecycle,
//!   attribution by hybrid probes (planned purely), diagnosis, the `allow_sources` audit.
//! - [`report`]: `parallax probe` output (JSON lines and the table).
//! - [`schedule`]: timers — per-view intervals spread by a stable hash, jitter, skip-when-busy,
//!   the cap on probes in flight, lateness.
//! - [`daemon`]: `parallax run` — scheduling, verdicts, diff and attribution continuously, reload,
//!   shutdown.
//! - [`export`]: OTLP traces and metrics, Prometheus `/metrics`, JSON events.
//! - [`admin`]: the admin HTTP server (health, readiness, metrics, status API, dashboard).
//! - [`status`]: the status document the daemon keeps and the admin server serves.
//! - [`demo`]: `parallax demo` — embedded loopback backends reproducing field failures, the daemon
//!   on their configuration, the dashboard and a live terminal table.
//! - [`pki`]: certificates made at run time (a CA, leaves with chosen names and validity,
//!   self-signed ones): the demo's backends and every test use this one builder.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod diff;
pub mod export;
pub mod pki;
pub mod probe;
pub mod report;
pub mod schedule;
pub mod status;
#[cfg(test)]
mod testkit;
pub mod verdict;
