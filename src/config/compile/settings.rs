//! `[defaults]`, `[admin]` and `[export]`: the layered settings tree (see `load`) compiled into
//! [`Defaults`] for every view, [`AdminSettings`] and [`ExportSettings`], each error at the key
//! (or environment variable) its value came from.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde::de::DeserializeOwned;

use super::values::human;
use super::Compiler;
use crate::config::discovery::{KubernetesDiscovery, Mode, ProviderChoice, Selector};
use crate::config::key_path::{deserialize, KeySegment, Location};
use crate::config::load::{self, SettingsTree, SourceFile};
use crate::config::plan::*;
use crate::config::raw::{
    RawAdmin, RawDefaults, RawDiscovery, RawExport, RawKubernetesDiscovery, RawVantage,
};
use crate::config::view::IpVersion;
use crate::config::DEFAULT_SUCCESS_SAMPLE_RATIO;

/// A setting after layering, with where its value came from (for messages).
#[derive(Debug, Clone)]
pub(super) struct Layered<T> {
    pub(super) value: T,
    /// `[defaults] in 00-daemon.toml`, or the environment variable.
    pub(super) from: String,
}

/// `[defaults]` after layering and validation: what every view takes unless it says otherwise.
#[derive(Debug, Clone, Default)]
pub(super) struct Defaults {
    pub(super) interval: Option<Layered<Duration>>,
    pub(super) timeout: Option<Layered<Duration>>,
    pub(super) max_body_bytes: Option<Layered<usize>>,
    pub(super) resolver: Option<Layered<SocketAddr>>,
    pub(super) ip_version: Option<Layered<IpVersion>>,
    pub(super) user_agent: Option<Layered<Option<String>>>,
    pub(super) diff: DiffSettings,
}

/// The diff keys of `[defaults]` or a `[[target]]`, before validation.
pub(super) struct RawDiffKeys {
    pub(super) attribution: Option<bool>,
    pub(super) attribution_interval: Option<String>,
    pub(super) max_hybrids: Option<u64>,
    pub(super) hold: Option<String>,
}

/// The three settings sections, compiled.
pub(super) struct Settings {
    pub(super) defaults: Defaults,
    pub(super) admin: AdminSettings,
    pub(super) export: ExportSettings,
    pub(super) vantage: crate::config::Vantage,
    pub(super) discovery: Option<KubernetesDiscovery>,
}

impl Compiler<'_> {
    /// The settings of `files`, layered with the environment's overrides.
    pub(super) fn settings(&mut self, files: &[SourceFile<'_>]) -> Settings {
        let tree = load::layer_settings(files, self.env, &mut self.errors);
        let defaults = self.section::<RawDefaults>(&tree, "defaults").map(|r| self.defaults(r, &tree));
        let admin = self.section::<RawAdmin>(&tree, "admin").map(|r| self.admin(r, &tree));
        let export = self.section::<RawExport>(&tree, "export").map(|r| self.export(r, &tree));
        let vantage = self.section::<RawVantage>(&tree, "vantage").unwrap_or_default();
        let vantage = self.vantage(vantage, &tree);
        let discovery = self
            .section::<RawDiscovery>(&tree, "discovery")
            .and_then(|r| r.kubernetes)
            .and_then(|r| self.kubernetes_discovery(r, &tree));
        Settings {
            defaults: defaults.unwrap_or_default(),
            admin: admin.unwrap_or_else(|| AdminSettings::listening_on(default_admin_listen())),
            export: export.unwrap_or(ExportSettings { otlp: None }),
            vantage,
            discovery,
        }
    }

    /// Deserializes one settings section, reporting the error where its key came from.
    fn section<T: DeserializeOwned + Default>(&mut self, tree: &SettingsTree<'_>, name: &str) -> Option<T> {
        let Some(value) = tree.section(name) else { return Some(T::default()) };
        match deserialize::<T>(value.clone()) {
            Ok(raw) => Some(raw),
            Err((segments, message)) => {
                let mut path = vec![KeySegment::Key(name.to_owned())];
                path.extend(segments);
                let (at, key) = tree.location(&path);
                self.error(&at, &key, message);
                None
            }
        }
    }

    fn defaults(&mut self, raw: RawDefaults, tree: &SettingsTree<'_>) -> Defaults {
        let path = |key: &str| vec![KeySegment::Key("defaults".to_owned()), KeySegment::Key(key.to_owned())];
        let mut d = Defaults {
            interval: self.layered(tree, "interval", raw.interval, |compiler, at, key, v| {
                compiler.duration(at, key, &v)
            }),
            timeout: self
                .layered(tree, "timeout", raw.timeout, |compiler, at, key, v| compiler.duration(at, key, &v)),
            ..Defaults::default()
        };
        if let (Some(i), Some(t)) = (&d.interval, &d.timeout) {
            if t.value >= i.value {
                let (at, key) = tree.location(&path("timeout"));
                self.error(
                    &at,
                    &key,
                    format!(
                        "timeout {} must be below interval {}{}",
                        human(t.value),
                        human(i.value),
                        if i.from == t.from { String::new() } else { format!(" (from {})", i.from) }
                    ),
                );
            }
        }
        d.max_body_bytes =
            self.layered(tree, "max_body_bytes", raw.max_body_bytes, |compiler, at, key, v| {
                compiler.max_body_bytes(at, key, v)
            });
        d.resolver = self
            .layered(tree, "resolver", raw.resolver, |compiler, at, key, v| compiler.resolver(at, key, &v));
        d.ip_version = self.layered(tree, "ip_version", raw.ip_version, |compiler, at, key, v| {
            compiler.ip_version(at, key, &v)
        });
        d.user_agent = self.layered(tree, "user_agent", raw.user_agent, |compiler, at, key, v| {
            compiler.user_agent(at, key, &v)
        });
        let keys = RawDiffKeys {
            attribution: raw.attribution,
            attribution_interval: raw.attribution_interval,
            max_hybrids: raw.max_hybrids,
            hold: raw.hold,
        };
        d.diff = self.diff_settings(keys, DiffSettings::default(), |key| tree.location(&path(key)));
        d
    }

    /// `[defaults] key`, when set: `parse`d where it came from, and described for messages.
    fn layered<R, T>(
        &mut self,
        tree: &SettingsTree<'_>,
        key: &str,
        raw: Option<R>,
        parse: impl FnOnce(&mut Self, &Location, &str, R) -> Option<T>,
    ) -> Option<Layered<T>> {
        let raw = raw?;
        let path = [KeySegment::Key("defaults".to_owned()), KeySegment::Key(key.to_owned())];
        let (at, key) = tree.location(&path);
        let value = parse(self, &at, &key, raw)?;
        Some(Layered { value, from: tree.describe(&path) })
    }

    /// The diff keys over `base` (built-in defaults, or `[defaults]` for a target).
    pub(super) fn diff_settings(
        &mut self,
        raw: RawDiffKeys,
        base: DiffSettings,
        location_of: impl Fn(&str) -> (Location, String),
    ) -> DiffSettings {
        let mut d = base;
        if let Some(on) = raw.attribution {
            d.attribution = on;
        }
        if let Some(v) = raw.attribution_interval {
            let (at, key) = location_of("attribution_interval");
            if let Some(i) = self.duration(&at, &key, &v) {
                d.attribution_interval = i;
            }
        }
        if let Some(n) = raw.max_hybrids {
            let (at, key) = location_of("max_hybrids");
            match usize::try_from(n) {
                Ok(n) if (1..=MAX_HYBRIDS_CAP).contains(&n) => d.max_hybrids = n,
                _ => self.error(
                    &at,
                    &key,
                    format!(
                        "max_hybrids {n} is out of range: 1 to {MAX_HYBRIDS_CAP} (every hybrid is a real \
                         request; use attribution = false to send none)"
                    ),
                ),
            }
        }
        if let Some(v) = raw.hold {
            let (at, key) = location_of("hold");
            if let Some(h) = self.bounded_duration(&at, &key, &v) {
                d.hold = Some(h);
            }
        }
        d
    }

    fn admin(&mut self, raw: RawAdmin, tree: &SettingsTree<'_>) -> AdminSettings {
        let mut listen = default_admin_listen();
        if let Some(v) = raw.listen {
            let (at, key) =
                tree.location(&[KeySegment::Key("admin".to_owned()), KeySegment::Key("listen".to_owned())]);
            if let Some(s) = self.plain(&at, &key, &self.bracket_node_ip(v.trim())) {
                match s.trim().parse::<SocketAddr>() {
                    Ok(addr) => listen = addr,
                    Err(_) => self.error(
                        &at,
                        &key,
                        format!("`{s}` is not an ip:port address (e.g. 127.0.0.1:9464)"),
                    ),
                }
            }
        }
        let mut allowed_hosts = Vec::new();
        if let Some(raw) = raw.allowed_hosts {
            let (at, key) = tree.location(&[
                KeySegment::Key("admin".to_owned()),
                KeySegment::Key("allowed_hosts".to_owned()),
            ]);
            // One string holds several names separated by commas (the environment variable's
            // form); no host name holds a comma.
            let names: Vec<String> =
                raw.0.iter().flat_map(|item| item.split(',')).map(|n| n.trim().to_owned()).collect();
            if names.len() > MAX_ALLOWED_HOSTS {
                self.error(&at, &key, format!("{} names: at most {MAX_ALLOWED_HOSTS}", names.len()));
            }
            for (i, name) in names.iter().take(MAX_ALLOWED_HOSTS).enumerate() {
                let key = format!("{key}[{i}]");
                let Some(name) = self.plain(&at, &key, name) else { continue };
                match allowed_host(&name) {
                    Ok(host) if !allowed_hosts.contains(&host) => allowed_hosts.push(host),
                    Ok(_) => {}
                    Err(why) => self.error(&at, &key, why),
                }
            }
        }
        AdminSettings { listen, allowed_hosts }
    }

    fn export(&mut self, raw: RawExport, tree: &SettingsTree<'_>) -> ExportSettings {
        let Some(otlp) = raw.otlp else { return ExportSettings { otlp: None } };
        let path = |key: &str| {
            vec![
                KeySegment::Key("export".to_owned()),
                KeySegment::Key("otlp".to_owned()),
                KeySegment::Key(key.to_owned()),
            ]
        };
        let endpoint = match otlp.endpoint {
            None => {
                let (at, _) = tree.location(&path("endpoint"));
                self.error(
                    &at,
                    "endpoint",
                    "missing endpoint: the collector URL (e.g. http://127.0.0.1:4317)",
                );
                None
            }
            Some(v) => {
                let (at, key) = tree.location(&path("endpoint"));
                self.plain(&at, &key, &v).and_then(|s| match url::Url::parse(s.trim()) {
                    Ok(u)
                        if matches!(u.scheme(), "http" | "https")
                            && u.host_str().is_some_and(|h| !h.is_empty()) =>
                    {
                        Some(s.trim().to_owned())
                    }
                    _ => {
                        self.error(&at, &key, format!("`{s}` is not an http:// or https:// collector URL"));
                        None
                    }
                })
            }
        };
        let protocol = match otlp.protocol {
            None => Some(OtlpProtocol::Grpc),
            Some(v) => {
                let (at, key) = tree.location(&path("protocol"));
                match self.plain(&at, &key, &v).as_deref().map(str::trim) {
                    Some("grpc") => Some(OtlpProtocol::Grpc),
                    Some("http/protobuf") => Some(OtlpProtocol::HttpProtobuf),
                    Some(other) => {
                        self.error(
                            &at,
                            &key,
                            format!("unknown protocol `{other}`: use \"grpc\" or \"http/protobuf\""),
                        );
                        None
                    }
                    None => None,
                }
            }
        };
        let ratio = match otlp.success_sample_ratio {
            None => Some(DEFAULT_SUCCESS_SAMPLE_RATIO),
            Some(r) if (0.0..=1.0).contains(&r) => Some(r),
            Some(r) => {
                let (at, key) = tree.location(&path("success_sample_ratio"));
                self.error(&at, &key, format!("{r} is not a fraction: use a number from 0 to 1"));
                None
            }
        };
        match (endpoint, protocol, ratio) {
            (Some(endpoint), Some(protocol), Some(success_sample_ratio)) => {
                ExportSettings { otlp: Some(OtlpSettings { endpoint, protocol, success_sample_ratio }) }
            }
            _ => ExportSettings { otlp: None },
        }
    }
}

impl Compiler<'_> {
    /// `[discovery.kubernetes]`: every key checked; `None` when one is wrong.
    fn kubernetes_discovery(
        &mut self,
        raw: RawKubernetesDiscovery,
        tree: &SettingsTree<'_>,
    ) -> Option<KubernetesDiscovery> {
        let at = |key: &str| {
            tree.location(&[
                KeySegment::Key("discovery".to_owned()),
                KeySegment::Key("kubernetes".to_owned()),
                KeySegment::Key(key.to_owned()),
            ])
        };
        let mut ok = true;
        let kubeconfig = raw.kubeconfig.and_then(|v| {
            let (loc, key) = at("kubeconfig");
            let path = self.plain(&loc, &key, &v).map(|s| self.dir.join(s.trim()));
            ok &= path.is_some();
            path
        });
        let mode = match raw.mode {
            None => Mode::Node,
            Some(v) => Mode::parse(v.trim()).unwrap_or_else(|| {
                let (loc, key) = at("mode");
                self.error(&loc, &key, format!("unknown mode `{v}`: use \"node\" (a DaemonSet) or \"external\" (a VM outside the cluster)"));
                ok = false;
                Mode::Node
            }),
        };
        let provider = match raw.provider {
            None => ProviderChoice::Auto,
            Some(v) => ProviderChoice::parse(v.trim()).unwrap_or_else(|| {
                let (loc, key) = at("provider");
                let names = ProviderChoice::NAMES.join(", ");
                self.error(&loc, &key, format!("unknown provider `{v}`: use one of {names}"));
                ok = false;
                ProviderChoice::Auto
            }),
        };
        let selector = match raw.selector {
            None => Selector::default(),
            Some(v) => Selector::parse(&v).unwrap_or_else(|e| {
                let (loc, key) = at("selector");
                self.error(&loc, &key, format!("bad label selector: {e}"));
                ok = false;
                Selector::default()
            }),
        };
        let mut namespaces = Vec::new();
        for (i, ns) in raw.namespaces.unwrap_or_default().into_iter().enumerate() {
            let valid = !ns.is_empty()
                && ns.len() <= 63
                && ns.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if valid {
                namespaces.push(ns);
            } else {
                let (loc, key) = at("namespaces");
                self.error(
                    &loc,
                    &format!("{key}[{i}]"),
                    format!("`{ns}` is not a namespace name (lowercase letters, digits, -)"),
                );
                ok = false;
            }
        }
        ok.then_some(KubernetesDiscovery { kubeconfig, mode, namespaces, selector, provider })
    }
}

/// The most names `[admin] allowed_hosts` takes.
const MAX_ALLOWED_HOSTS: usize = 64;

/// One `[admin] allowed_hosts` entry, checked and normalised (lowercase, no trailing dot): a DNS
/// name or an IP address, without scheme, port, path or wildcard.
fn allowed_host(raw: &str) -> Result<String, String> {
    let name = raw.trim();
    if name.is_empty() {
        return Err("an empty name: write a host name such as \"parallax.internal\"".to_owned());
    }
    let bare = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')).unwrap_or(name);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(ip.to_string());
    }
    if name.contains("://") || name.contains('/') {
        return Err(format!("`{name}` is not a host name: write the name alone, without scheme or path"));
    }
    if name.contains('*') {
        return Err(format!("`{name}` is a wildcard: list each name the admin server is reached by"));
    }
    if let Some((host, _)) = name.rsplit_once(':') {
        return Err(format!(
            "`{name}` has a port: write `{host}` (the port of a Host header is not checked)"
        ));
    }
    let host = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if host.len() > 253 || !host.split('.').all(label_ok) {
        return Err(format!(
            "`{name}` is not a host name (labels of letters, digits and -, separated by dots)"
        ));
    }
    Ok(host)
}

fn default_admin_listen() -> SocketAddr {
    DEFAULT_ADMIN_LISTEN.parse().unwrap_or(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9464))
}
