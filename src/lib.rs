//! parallax probes every target twice — as its users reach it and as its load balancer's health
//! checker reaches it — and names why the two views disagree.
//!
//! # Layout
//!
//! The map of record is `docs/architecture.md` (the data flow, what each module owns and may not
//! touch, where to add a profile, an error code, a diagnosis, an export or a configuration
//! source). In brief, each module depends only on those listed before it:
//!
//! - [`duration`]: durations as people write them (`4.9s`, `1m30s`, `250ms`), for every
//!   output a person reads.
//! - [`config`]: `probes.d/` loaded (`load`), compiled (`compile`) into an immutable
//!   [`config::Plan`] of [`config::Target`]s, each a client [`config::View`] and its checker
//!   views (`view`); checker profiles (`profiles`); `${..}` substitution and secrets; a target
//!   given on the command line (`adhoc`), compiled as a file would be.
//! - [`probe`]: one execution of a view — dns, tcp (source bind), PROXY header, tls, http, grpc —
//!   and the [`probe::Outcome`] record with its closed error taxonomy (`outcome`).
//! - [`pki`]: certificates made at run time (a CA, leaves with chosen names and validity,
//!   self-signed ones): the demo's backends and every test use this one builder.
//! - [`verdict`]: per view, the health the emulated LB holds (rise/fall, starting state).
//! - [`diff`]: per target, client verdict against each checker verdict (`lifecycle`); request
//!   attributes (`attribute`), hybrids (`hybrid`), attribution (`attribution`), the diagnosis
//!   (`diagnosis`), the mismatch record (`mismatch`), the `allow_sources` audit (`audit`).
//! - [`report`]: `parallax probe` output (JSON lines, the table, and `probe URL`'s account of
//!   every phase).
//! - [`profile_card`]: `parallax profiles` — each profile in a line, and one profile's card
//!   (what it sends, rendered by the probe engine; how it judges; its sources).
//! - [`schedule`]: timers — per-view intervals spread by a stable hash, jitter, skip-when-busy,
//!   the cap on probes in flight, lateness.
//! - [`rules`]: `parallax rules` — the Prometheus rules that join several vantages (SLIs,
//!   alerts; `deploy/prometheus/`).
//! - [`status`]: the status document the daemon keeps and the admin server serves.
//! - [`export`]: the [`export::Sink`] the daemon reports typed events to ([`export::ProbeReport`],
//!   [`export::MismatchEvent`]), implemented by [`export::Telemetry`]: OTLP traces and metrics,
//!   Prometheus `/metrics`, JSON events.
//! - [`admin`]: the admin HTTP server (health, readiness, metrics, status API, dashboard).
//! - [`daemon`]: `parallax run` — process edge (`mod`), task wiring (`runtime`), the engine
//!   (`engine`), per-target records (`target`), reloads and the pure plan diff (`reload`).
//! - [`demo`]: `parallax demo` — field failures (`scenarios`) on in-process loopback backends
//!   (`backends`), the daemon on their configuration, the dashboard and a terminal table
//!   (`screen`).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod diff;
pub mod discovery;
pub mod duration;
pub mod export;
pub mod limits;
pub mod pki;
pub mod probe;
pub mod profile_card;
pub mod report;
pub mod rules;
pub mod schedule;
pub mod status;
#[cfg(test)]
mod testkit;
pub mod verdict;
