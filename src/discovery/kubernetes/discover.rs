//! `parallax discover`: the derived targets printed once, as a probes.d file (or JSON), from the
//! live cluster or from saved `kubectl get -o json` files.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::watch;

use super::render::{self, Header};
use super::source::{self, files, watch as kwatch};
use super::{derive, DeriveOptions, KubernetesDiscovery, Mode};

/// How long the live cluster may take to be listed.
pub const LIST_TIMEOUT: Duration = Duration::from_secs(30);

/// What `parallax discover` was asked for.
#[derive(Debug, Clone)]
pub struct Request {
    /// Selector, namespaces, provider, mode and kubeconfig.
    pub settings: KubernetesDiscovery,
    /// Saved objects to derive from instead of the cluster.
    pub from: Vec<PathBuf>,
    /// This node's name (node mode): its Node object and which endpoints are local.
    pub node_name: Option<String>,
    /// This node's IP (node mode); default: the Node's InternalIP.
    pub node_ip: Option<IpAddr>,
    /// JSON instead of TOML.
    pub json: bool,
}

/// The derived targets of `request`, rendered; an error says what could not be read.
pub async fn discover(request: &Request) -> Result<String, String> {
    let settings = &request.settings;
    let (cluster, source_line) = if request.from.is_empty() {
        (live(request).await?, "source: the API server".to_owned())
    } else {
        let loaded = files::read(&request.from)?;
        let mut cluster = loaded.cluster;
        cluster.node = pick_node(loaded.nodes, request.node_name.as_deref())?;
        let names: Vec<String> = request.from.iter().map(|p| p.display().to_string()).collect();
        let mut line = format!("source: {}", names.join(", "));
        if !loaded.ignored.is_empty() {
            line.push_str(&format!(" ({} objects of other kinds ignored)", loaded.ignored.len()));
        }
        (cluster, line)
    };
    let cluster = source::select(cluster, settings);
    let options = DeriveOptions {
        mode: settings.mode,
        node_name: request.node_name.clone(),
        node_ip: request.node_ip,
        provider: settings.provider,
    };
    let derivation = derive(&cluster, &options);
    if request.json {
        return Ok(render::json(&derivation) + "\n");
    }
    let mut lines = vec![source_line, format!("mode: {}", settings.mode.as_str())];
    if settings.mode == Mode::Node {
        let node = request.node_name.as_deref().unwrap_or("(none: --node)");
        let ip = request.node_ip.map_or("(the Node's InternalIP)".to_owned(), |ip| ip.to_string());
        lines.push(format!("node: {node}, IP {ip}"));
    }
    let selector =
        if settings.selector.is_empty() { "(everything)".to_owned() } else { settings.selector.to_string() };
    let namespaces =
        if settings.namespaces.is_empty() { "all".to_owned() } else { settings.namespaces.join(", ") };
    lines.push(format!("selector: {selector}; namespaces: {namespaces}"));
    Ok(render::toml(&derivation, &Header { lines }))
}

/// The node named `name` among `nodes`; the only one when no name is given.
fn pick_node(
    nodes: Vec<k8s_openapi::api::core::v1::Node>,
    name: Option<&str>,
) -> Result<Option<k8s_openapi::api::core::v1::Node>, String> {
    match name {
        Some(name) => Ok(nodes.into_iter().find(|n| n.metadata.name.as_deref() == Some(name))),
        None if nodes.len() <= 1 => Ok(nodes.into_iter().next()),
        None => Err(format!("{} Nodes in the files: name this one with --node", nodes.len())),
    }
}

/// The selected objects of the live cluster, listed once.
async fn live(request: &Request) -> Result<super::Cluster, String> {
    let client = kwatch::client(&request.settings).await?;
    let (stop_tx, stop) = watch::channel(false);
    let node = if request.settings.mode == Mode::Node { request.node_name.clone() } else { None };
    let mut watch = kwatch::start(client, &request.settings, node, stop);
    let listed = tokio::time::timeout(LIST_TIMEOUT, async {
        while !watch.synced() {
            if !watch.changed().await {
                break;
            }
        }
    })
    .await;
    let _ = stop_tx.send(true);
    if listed.is_err() || !watch.synced() {
        let failing: Vec<String> = watch
            .health()
            .iter()
            .filter(|(_, h)| !h.synced && !h.absent)
            .map(|(k, h)| format!("{}: {}", k.as_str(), h.last_error.as_deref().unwrap_or("no answer")))
            .collect();
        return Err(format!(
            "the cluster was not listed within {}: {}",
            crate::duration::Human(LIST_TIMEOUT),
            failing.join("; ")
        ));
    }
    Ok(watch.snapshot())
}
