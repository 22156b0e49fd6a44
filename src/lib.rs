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
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod config;
pub mod diff;
pub mod probe;
pub mod report;
pub mod verdict;
