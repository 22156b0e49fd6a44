//! `[target.cluster]` and `[[condition]]` (`super::super::cluster`): checked like every other
//! table — every key known, counts and ports in range, kinds from the closed set — and the
//! conditions attached to the targets they name.

use std::sync::Arc;

use config::{Value, ValueKind};

use super::super::cluster::{ClusterFacts, Condition, ConditionKind, TlsEntry};
use super::super::key_path::{label_of, Location};
use super::super::load::SourceFile;
use super::super::plan::Target;
use super::super::raw::{RawCluster, RawCondition};
use super::Compiler;

/// Most entries of one list of `[target.cluster]` (nodes, hosts, TLS entries): a snapshot for
/// evidence, not an inventory.
const MAX_LIST: usize = 256;

impl Compiler<'_> {
    /// `[target.cluster]` of the target at `at`.
    pub(super) fn cluster(&mut self, at: &Location, raw: RawCluster) -> Option<ClusterFacts> {
        let before = self.errors.len();
        let object = match raw.object.as_deref() {
            Some(o) => self.plain(at, "cluster.object", o).unwrap_or_default(),
            None => {
                self.error(
                    at,
                    "cluster.object",
                    "missing: the object the target stands for (`Service shop/web`)",
                );
                String::new()
            }
        };
        let node = raw.node.as_deref().and_then(|n| self.plain(at, "cluster.node", n));
        let traffic_policy = match raw.traffic_policy.as_deref() {
            None => None,
            Some(p @ ("Local" | "Cluster")) => Some(p.to_owned()),
            Some(other) => {
                self.error(at, "cluster.traffic_policy", format!("`{other}`: expected Local or Cluster"));
                None
            }
        };
        let health_check_node_port = match raw.health_check_node_port {
            None => None,
            Some(p) => match u16::try_from(p).ok().filter(|p| *p != 0) {
                Some(p) => Some(p),
                None => {
                    self.error(
                        at,
                        "cluster.health_check_node_port",
                        format!("{p}: expected a port, 1 to 65535"),
                    );
                    None
                }
            },
        };
        let count = |c: &mut Self, key: &str, n: Option<u64>| match n {
            None => None,
            Some(n) => match u32::try_from(n) {
                Ok(n) => Some(n),
                Err(_) => {
                    c.error(at, key, format!("{n}: too large for a count of endpoints"));
                    None
                }
            },
        };
        let ready_endpoints = count(self, "cluster.ready_endpoints", raw.ready_endpoints);
        let local_ready_endpoints = count(self, "cluster.local_ready_endpoints", raw.local_ready_endpoints);
        let local_terminating_endpoints =
            count(self, "cluster.local_terminating_endpoints", raw.local_terminating_endpoints);
        let backends = self.plain_list(at, "cluster.backends", raw.backends.unwrap_or_default());
        let endpoint_nodes =
            self.plain_list(at, "cluster.endpoint_nodes", raw.endpoint_nodes.unwrap_or_default());
        let route_hosts = self.plain_list(at, "cluster.route_hosts", raw.route_hosts.unwrap_or_default());
        let raw_tls = raw.tls.unwrap_or_default();
        if raw_tls.len() > MAX_LIST {
            self.error(at, "cluster.tls", format!("{} entries: at most {MAX_LIST}", raw_tls.len()));
        }
        let mut tls = Vec::new();
        for (i, entry) in raw_tls.into_iter().take(MAX_LIST).enumerate() {
            let key = |k: &str| format!("cluster.tls[{i}].{k}");
            let source = entry.source.as_deref().and_then(|s| self.plain(at, &key("source"), s));
            let secret = entry.secret.as_deref().and_then(|s| self.plain(at, &key("secret"), s));
            let hosts = self.plain_list(at, &key("hosts"), entry.hosts.unwrap_or_default());
            match (source, secret) {
                (Some(source), Some(secret)) => tls.push(TlsEntry { source, hosts, secret }),
                _ => self.error(at, &format!("cluster.tls[{i}]"), "needs `source` and `secret`"),
            }
        }
        if self.errors.len() > before {
            return None;
        }
        Some(ClusterFacts {
            object,
            node,
            backends,
            traffic_policy,
            health_check_node_port,
            ready_endpoints,
            local_ready_endpoints,
            local_terminating_endpoints,
            endpoint_nodes,
            route_hosts,
            tls,
            conditions: Vec::new(),
        })
    }

    /// Each item of `raw`, substituted, at most [`MAX_LIST`].
    fn plain_list(&mut self, at: &Location, key: &str, raw: Vec<String>) -> Vec<String> {
        if raw.len() > MAX_LIST {
            self.error(at, key, format!("{} entries: at most {MAX_LIST}", raw.len()));
        }
        let mut out = Vec::new();
        for (i, item) in raw.iter().take(MAX_LIST).enumerate() {
            if let Some(v) = self.plain(at, &format!("{key}[{i}]"), item) {
                out.push(v);
            }
        }
        out
    }

    /// Every file's `[[condition]]`s, in file order.
    pub(super) fn conditions(&mut self, files: &mut [SourceFile<'_>]) -> Vec<Condition> {
        let mut out = Vec::new();
        for f in files {
            let Some(value) = f.conditions.take() else { continue };
            let items = match value.kind {
                ValueKind::Array(items) => items,
                _ => {
                    let at = Location::new(&f.path, String::new());
                    self.error(&at, "condition", "must be an array of tables ([[condition]])");
                    continue;
                }
            };
            for (i, item) in items.into_iter().enumerate() {
                let at = Location::new(&f.path, format!("condition[{}]", label_of(&item, i)));
                if let Some(c) = self.condition(&at, item) {
                    out.push(c);
                }
            }
        }
        out
    }

    fn condition(&mut self, at: &Location, value: Value) -> Option<Condition> {
        let raw: RawCondition = self.deserialize(at, value)?;
        let before = self.errors.len();
        let kind = match raw.kind.as_deref() {
            Some(k) => match ConditionKind::parse(k) {
                Some(kind) => Some(kind),
                None => {
                    let known: Vec<&str> = ConditionKind::ALL.iter().map(|k| k.as_str()).collect();
                    self.error(at, "kind", format!("unknown kind `{k}`; one of: {}", known.join(", ")));
                    None
                }
            },
            None => {
                self.error(at, "kind", "missing kind");
                None
            }
        };
        let required = |c: &mut Self, key: &str, v: Option<String>| match v {
            Some(v) => c.plain(at, key, &v),
            None => {
                c.error(at, key, format!("missing {key}"));
                None
            }
        };
        let object = required(self, "object", raw.object);
        let message = required(self, "message", raw.message);
        let target = raw.target.as_deref().and_then(|t| self.plain(at, "target", t)).map(Arc::from);
        let reason = raw.reason.as_deref().and_then(|r| self.plain(at, "reason", r));
        if self.errors.len() > before {
            return None;
        }
        Some(Condition { kind: kind?, object: object?, target, reason, message: message? })
    }
}

/// Attaches each condition naming a target to that target's `[target.cluster]` (made from the
/// condition's object when the target has none). A condition naming no target of the plan (a
/// derived target rejected, a target removed) stays global only.
pub(super) fn attach(targets: &mut [Target], conditions: &[Condition]) {
    for condition in conditions {
        let Some(name) = &condition.target else { continue };
        let Some(target) = targets.iter_mut().find(|t| *t.name == **name) else { continue };
        let facts = target.cluster.get_or_insert_with(|| {
            Arc::new(ClusterFacts { object: condition.object.clone(), ..ClusterFacts::default() })
        });
        Arc::make_mut(facts).conditions.push(condition.clone());
    }
}
