//! Configuration sources besides the files of `probes.d/`. Each one produces the same target
//! definitions a file gives (a probes.d file's text), which go through the same compiler and the
//! same reload path as the files; nothing downstream knows where a target came from but its
//! comments.
//!
//! - [`kubernetes`]: both views of every opted-in LoadBalancer Service, Ingress and Gateway
//!   route, derived from the live cluster (`[discovery.kubernetes]`, `parallax discover`).

pub mod kubernetes;
