//! Raw serde types of `probes.d/` files: what a file may say, before any meaning is checked.
//!
//! Every struct rejects unknown keys. Strings stay strings here (substitution and parsing happen
//! in `compile`), so a deserialization error can only ever quote what the user wrote, never a
//! substituted secret. Values that may be "a string or `false`", "a number or a string" or "one
//! item or a list" have small visitors of their own, so their errors say what is accepted.

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

/// `[defaults]`: fallbacks for every view, above profile defaults.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDefaults {
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub max_body_bytes: Option<u64>,
    pub resolver: Option<String>,
    pub ip_version: Option<RawIpVersion>,
    pub user_agent: Option<Toggle>,
    pub attribution: Option<bool>,
    pub attribution_interval: Option<String>,
    pub max_hybrids: Option<u64>,
    pub hold: Option<String>,
}

/// `[admin]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    pub listen: Option<String>,
    /// A list, or one string (`PARALLAX_ADMIN__ALLOWED_HOSTS=a,b`): split on commas in compile.
    pub allowed_hosts: Option<OneOrMany<String>>,
}

/// `[vantage]`: where this instance probes from.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVantage {
    pub name: Option<String>,
    pub kind: Option<String>,
    pub zone: Option<String>,
    pub region: Option<String>,
    pub labels: Option<std::collections::BTreeMap<String, String>>,
}

/// `[export]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawExport {
    pub otlp: Option<RawOtlp>,
}

/// `[discovery]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDiscovery {
    pub kubernetes: Option<RawKubernetesDiscovery>,
}

/// `[discovery.kubernetes]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKubernetesDiscovery {
    pub kubeconfig: Option<String>,
    pub mode: Option<String>,
    pub namespaces: Option<Vec<String>>,
    pub selector: Option<String>,
    pub provider: Option<String>,
}

/// `[export.otlp]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOtlp {
    pub endpoint: Option<String>,
    pub protocol: Option<String>,
    pub success_sample_ratio: Option<f64>,
}

/// One `[[target]]`. Its views stay undeserialized values so that each view is checked on its
/// own: one bad view does not hide the errors of the others.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTarget {
    pub name: Option<String>,
    pub id: Option<String>,
    pub allow_sources: Option<Vec<String>>,
    pub attribution: Option<bool>,
    pub attribution_interval: Option<String>,
    pub max_hybrids: Option<u64>,
    pub hold: Option<String>,
    pub client: Option<config::Value>,
    pub checker: Option<Vec<config::Value>>,
    pub cluster: Option<RawCluster>,
}

/// `[target.cluster]` (docs/kubernetes.md): what the Kubernetes API said, as discovery writes it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCluster {
    pub object: Option<String>,
    pub node: Option<String>,
    pub backends: Option<Vec<String>>,
    pub traffic_policy: Option<String>,
    pub health_check_node_port: Option<u64>,
    pub ready_endpoints: Option<u64>,
    pub local_ready_endpoints: Option<u64>,
    pub local_terminating_endpoints: Option<u64>,
    pub endpoint_nodes: Option<Vec<String>>,
    pub route_hosts: Option<Vec<String>>,
    pub tls: Option<Vec<RawTlsEntry>>,
}

/// One `tls` entry of `[target.cluster]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTlsEntry {
    pub source: Option<String>,
    pub hosts: Option<Vec<String>>,
    pub secret: Option<String>,
}

/// One `[[condition]]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCondition {
    pub kind: Option<String>,
    pub object: Option<String>,
    pub target: Option<String>,
    pub reason: Option<String>,
    pub message: Option<String>,
}

/// `[target.client]` or one `[[target.checker]]`. `name` and `profile` are checker keys; the
/// client view rejects them in `compile` with a message saying so.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawView {
    pub name: Option<String>,
    pub profile: Option<String>,
    pub url: Option<String>,
    pub connect_to: Option<String>,
    pub source: Option<String>,
    pub freebind: Option<bool>,
    pub ip_version: Option<RawIpVersion>,
    pub proxy_protocol: Option<String>,
    pub sni: Option<Toggle>,
    pub verify: Option<bool>,
    pub ca_file: Option<String>,
    pub alpn: Option<Vec<String>>,
    pub method: Option<String>,
    pub host: Option<Toggle>,
    pub headers: Option<RawHeaders>,
    pub user_agent: Option<Toggle>,
    pub body: Option<String>,
    pub expect: Option<RawExpect>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub rise: Option<u32>,
    pub fall: Option<u32>,
    pub max_body_bytes: Option<u64>,
    pub resolver: Option<String>,
    pub each_address: Option<bool>,
    pub expect_addresses: Option<Vec<String>>,
}

/// `expect = { ... }`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawExpect {
    pub status: Option<OneOrMany<RawStatus>>,
    pub body_contains: Option<String>,
    pub body_regex: Option<String>,
    pub grpc_service: Option<String>,
}

/// A value that is either a string or `false` (`sni`, `host`, `user_agent`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Toggle {
    /// `false`: none at all.
    Off,
    /// A value.
    Value(String),
}

impl<'de> Deserialize<'de> for Toggle {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Toggle, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Toggle;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, or false for none")
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<Toggle, E> {
                if b {
                    Err(E::invalid_value(de::Unexpected::Bool(true), &self))
                } else {
                    Ok(Toggle::Off)
                }
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Toggle, E> {
                // Environment overrides (`PARALLAX_DEFAULTS__USER_AGENT=false`) arrive as text:
                // "false" means none there as in TOML. No SNI, Host or User-Agent is
                // literally "false".
                if s.trim() == "false" {
                    Ok(Toggle::Off)
                } else {
                    Ok(Toggle::Value(s.to_owned()))
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// `ip_version`: `any`, `4`, `6`, `"v4"`, `"v6"`, as a string or a number. Kept as text here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RawIpVersion(pub String);

impl<'de> Deserialize<'de> for RawIpVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<RawIpVersion, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RawIpVersion;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"any\", 4 or 6")
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<RawIpVersion, E> {
                Ok(RawIpVersion(n.to_string()))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<RawIpVersion, E> {
                Ok(RawIpVersion(n.to_string()))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<RawIpVersion, E> {
                Ok(RawIpVersion(s.to_owned()))
            }
        }
        d.deserialize_any(V)
    }
}

/// One `expect.status` item: `200`, `"200"`, `"200-299"` or `"2xx"`. Kept as text here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RawStatus(pub String);

impl<'de> Deserialize<'de> for RawStatus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<RawStatus, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RawStatus;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a status (200) or a range (\"200-299\", \"2xx\")")
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<RawStatus, E> {
                Ok(RawStatus(n.to_string()))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<RawStatus, E> {
                Ok(RawStatus(n.to_string()))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<RawStatus, E> {
                Ok(RawStatus(s.to_owned()))
            }
        }
        d.deserialize_any(V)
    }
}

/// One item or a list of items (`status = 200` or `status = [200, "300-399"]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct OneOrMany<T>(pub Vec<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<OneOrMany<T>, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = OneOrMany<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("one value or a list")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<OneOrMany<T>, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(OneOrMany(items))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<OneOrMany<T>, E> {
                T::deserialize(de::value::I64Deserializer::new(n)).map(|t| OneOrMany(vec![t]))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<OneOrMany<T>, E> {
                T::deserialize(de::value::U64Deserializer::new(n)).map(|t| OneOrMany(vec![t]))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<OneOrMany<T>, E> {
                T::deserialize(de::value::StrDeserializer::new(s)).map(|t| OneOrMany(vec![t]))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// `headers = { name = "value", ... }` in file order (the wire order).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct RawHeaders(pub Vec<(String, String)>);

impl<'de> Deserialize<'de> for RawHeaders {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<RawHeaders, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawHeaders;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table of header names to string values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawHeaders, A::Error> {
                let mut headers = Vec::new();
                while let Some((name, value)) = map.next_entry::<String, String>()? {
                    headers.push((name, value));
                }
                Ok(RawHeaders(headers))
            }
        }
        d.deserialize_map(V)
    }
}
