//! Kubernetes discovery in the daemon: the watch, the derivation on every change, and the
//! derived targets handed to the reloader as virtual files — compiled with the directory's by
//! the same compiler and swapped in by the same reload path, so unchanged views keep their state
//! and open mismatches.
//!
//! The watch keeps the last objects it saw while the API server is down, so the plan keeps
//! probing them; the status (`/readyz`'s detail, `/api/v1/status`, the dashboard) and
//! `parallax_discovery_*` say how long it has been failing. `[discovery.kubernetes]` is read at
//! start: a change takes effect at restart, like `[admin]` and `[export]`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use crate::config::{Env, KubernetesDiscovery, Mode};
use crate::discovery::kubernetes::source::{self, watch as kwatch};
use crate::discovery::kubernetes::{derive, render, DeriveOptions};
use crate::duration::Human;
use crate::export::{DiscoveryReport, ResourceHealth};
use crate::probe::timestamp::rfc3339;
use crate::status::{DiscoveryResource, DiscoveryStatus};

use super::runtime::Shared;

/// Changes closer together than this are derived once (a `kubectl apply` of ten objects).
const DEBOUNCE: Duration = Duration::from_millis(250);
/// The longest wait between attempts to build the client (a kubeconfig that appears later).
const CLIENT_RETRY_MAX: Duration = Duration::from_secs(60);

/// The derived targets, one virtual file each: what the reloader compiles beside the directory.
pub(super) type Generated = Arc<Vec<(PathBuf, String)>>;

/// What discovery shares with the daemon: its status, and the files it derived.
pub(super) struct Discovery {
    /// The settings it runs with (those of the plan at start).
    settings: KubernetesDiscovery,
    status: Mutex<DiscoveryStatus>,
    /// Updates of `status` so far (part of the status document's version).
    changes: AtomicU64,
    files: watch::Sender<Generated>,
}

impl Discovery {
    /// Discovery with `settings`, nothing derived yet.
    pub(super) fn new(settings: KubernetesDiscovery) -> (Arc<Discovery>, watch::Receiver<Generated>) {
        let (files, receiver) = watch::channel(Generated::default());
        let status = DiscoveryStatus { mode: settings.mode.as_str(), ..DiscoveryStatus::default() };
        (
            Arc::new(Discovery { settings, status: Mutex::new(status), changes: AtomicU64::new(0), files }),
            receiver,
        )
    }

    /// Whether a reloaded plan's `[discovery.kubernetes]` differs from the running one's.
    pub(super) fn differs(&self, reloaded: Option<&KubernetesDiscovery>) -> bool {
        reloaded != Some(&self.settings)
    }

    /// The status now.
    pub(super) fn status(&self) -> DiscoveryStatus {
        self.status.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn update(&self, f: impl FnOnce(&mut DiscoveryStatus)) {
        f(&mut self.status.lock().unwrap_or_else(PoisonError::into_inner));
        self.changes.fetch_add(1, Ordering::AcqRel);
    }

    /// How many times the status has been updated.
    pub(super) fn changes(&self) -> u64 {
        self.changes.load(Ordering::Acquire)
    }

    /// The report the metrics take.
    pub(super) fn report(&self) -> DiscoveryReport {
        report_of(&self.status())
    }

    /// The reloader's verdict on the derived files: how many compiled into the plan, and the
    /// errors of those dropped.
    pub(super) fn compiled(&self, targets: usize, rejected: Vec<String>) {
        self.update(|s| {
            s.targets = targets;
            s.rejected = rejected;
        });
    }
}

/// Runs discovery until the daemon stops: builds the client (retrying), watches, and on every
/// change derives the targets and hands them to the reloader.
pub(super) async fn run(
    shared: Arc<Shared>,
    discovery: Arc<Discovery>,
    settings: KubernetesDiscovery,
    env: Arc<dyn Env + Send + Sync>,
) {
    let mut stop = shared.stop.subscribe();
    let Some(client) = client(&discovery, &settings, &mut stop).await else { return };
    let node_name = env.var("NODE_NAME").filter(|n| !n.is_empty());
    let node_ip = env.var("NODE_IP").and_then(|ip| ip.trim().parse::<IpAddr>().ok());
    if settings.mode == Mode::Node && node_name.is_none() {
        tracing::warn!("discovery in node mode without NODE_NAME: no endpoint counts as local to this node");
    }
    let options = DeriveOptions {
        mode: settings.mode,
        node_name: node_name.clone(),
        node_ip,
        provider: settings.provider,
    };
    let watch_node = if settings.mode == Mode::Node { node_name } else { None };
    let mut watch = kwatch::start(client, &settings, watch_node, stop.clone());
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            changed = watch.changed() => if !changed { return },
        }
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            () = tokio::time::sleep(DEBOUNCE) => {}
        }
        let health = watch.health();
        let synced = watch.synced();
        if synced {
            let cluster = source::select(watch.snapshot(), &settings);
            let derivation = derive(&cluster, &options);
            let notes = derivation.notes.iter().map(|n| format!("{}: {}", n.object, n.message)).collect();
            let files = render::files(&derivation);
            discovery.update(|s| {
                s.notes = notes;
                s.derived_at = Some(rfc3339(SystemTime::now()));
            });
            discovery.files.send_if_modified(|current| {
                let changed = **current != files;
                if changed {
                    *current = Arc::new(files);
                }
                changed
            });
        }
        record_health(&discovery, &shared, &health, synced);
    }
}

/// The client, retried with a doubling wait (up to a minute) until it can be built or the stop.
async fn client(
    discovery: &Discovery,
    settings: &KubernetesDiscovery,
    stop: &mut watch::Receiver<bool>,
) -> Option<kube::Client> {
    let mut wait = Duration::from_secs(1);
    loop {
        match kwatch::client(settings).await {
            Ok(client) => {
                discovery.update(|s| s.client_error = None);
                return Some(client);
            }
            Err(e) => {
                tracing::warn!("discovery: {e}; retrying in {}", Human(wait));
                discovery.update(|s| {
                    s.client_error = Some(e);
                    s.failing_since.get_or_insert_with(|| rfc3339(SystemTime::now()));
                });
            }
        }
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return None,
            () = tokio::time::sleep(wait) => {}
        }
        wait = (wait * 2).min(CLIENT_RETRY_MAX);
    }
}

/// The watch's health into the status and the metrics; a failure starting or ending is logged
/// once.
fn record_health(
    discovery: &Discovery,
    shared: &Shared,
    health: &std::collections::BTreeMap<kwatch::Kind, kwatch::KindHealth>,
    synced: bool,
) {
    let resources: Vec<DiscoveryResource> = health
        .iter()
        .map(|(kind, h)| DiscoveryResource {
            resource: kind.as_str(),
            synced: h.synced,
            absent: h.absent,
            failing: h.failing,
            errors: h.errors,
            objects: h.objects,
            last_error: h.last_error.clone(),
        })
        .collect();
    let healthy = resources.iter().all(|r| !r.failing);
    discovery.update(|s| {
        if s.healthy && !healthy {
            tracing::warn!("discovery: the API server is failing; probing the last good objects");
        } else if !s.healthy && healthy && s.synced {
            tracing::info!("discovery: the API server answers again");
        }
        s.synced |= synced;
        s.healthy = healthy;
        if healthy {
            s.failing_since = None;
        } else {
            s.failing_since.get_or_insert_with(|| rfc3339(SystemTime::now()));
        }
        s.resources = resources;
    });
    shared.telemetry.discovery(&discovery.report());
}

/// The metrics' view of `status`: kinds the cluster does not serve are left out.
fn report_of(status: &DiscoveryStatus) -> DiscoveryReport {
    let resources = status
        .resources
        .iter()
        .filter(|r| !r.absent)
        .map(|r| ResourceHealth {
            resource: r.resource,
            up: r.synced && !r.failing,
            errors: r.errors,
            objects: r.objects as u64,
        })
        .collect();
    DiscoveryReport { resources, targets: status.targets, rejected: status.rejected.len() }
}
