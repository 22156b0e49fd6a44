//! Kubernetes discovery: both views of every opted-in object, derived from the live cluster.
//!
//! - `cluster`: the selected objects ([`Cluster`]); Gateway API and GKE types of our own.
//! - `derive`: the pure derivation, [`Cluster`] -> [`Derivation`] (targets whose every value
//!   says where it came from), by provider (`derive::checkers`) and route (`derive::routes`).
//! - `render`: a [`Derivation`] as a probes.d file (TOML, each value's origin a comment) or JSON.
//! - `source`: reading objects — saved `kubectl get -o json` files, or the API server (watch).
//!
//! The settings (`[discovery.kubernetes]`) are `crate::config::KubernetesDiscovery`.

pub mod cluster;
pub mod derive;
pub mod discover;
pub mod render;
pub mod source;

pub use crate::config::{KubernetesDiscovery, Mode, ProviderChoice, Selector};
pub use cluster::{Cluster, ObjectRef};
pub use derive::{
    derive, Derivation, DeriveOptions, DerivedTarget, DerivedView, Note, Origin, Provider, Value,
};
