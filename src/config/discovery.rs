//! `[discovery.kubernetes]`: where discovery reads the cluster and what it selects. The settings
//! only; `crate::discovery::kubernetes` does the reading and the deriving.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

/// The label selector of discovery when none is set: the opt-in label.
pub const DEFAULT_SELECTOR: &str = "parallax.io/probe=true";

/// `[discovery.kubernetes]`, compiled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KubernetesDiscovery {
    /// A kubeconfig file; none: the in-cluster service account (then `KUBECONFIG` and
    /// `~/.kube/config`).
    pub kubeconfig: Option<PathBuf>,
    /// Node (DaemonSet) or external (a VM outside the cluster).
    pub mode: Mode,
    /// Namespaces watched; empty: all.
    pub namespaces: Vec<String>,
    /// The label selector of Services, Ingresses, Gateways and HTTPRoutes.
    pub selector: Selector,
    /// Which cloud's health-check rules apply.
    pub provider: ProviderChoice,
}

impl KubernetesDiscovery {
    /// The settings of an empty `[discovery.kubernetes]`: in-cluster credentials, node mode,
    /// every namespace, the opt-in label, the provider detected.
    pub fn defaults() -> KubernetesDiscovery {
        KubernetesDiscovery {
            kubeconfig: None,
            mode: Mode::Node,
            namespaces: Vec::new(),
            selector: Selector::default(),
            provider: ProviderChoice::Auto,
        }
    }
}

/// What discovery derives on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// On a node (DaemonSet): this node's checker views and the LB-forwarded client view.
    Node,
    /// Outside the cluster: client views through the LB addresses.
    External,
}

impl Mode {
    /// `node` or `external`.
    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "node" => Some(Mode::Node),
            "external" => Some(Mode::External),
            _ => None,
        }
    }

    /// The name users write.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Node => "node",
            Mode::External => "external",
        }
    }
}

/// `provider`: a cloud, or `auto` (the node's `spec.providerID`, then the controller's
/// annotations on each Service).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderChoice {
    /// Detect per Service.
    Auto,
    /// AWS (the Load Balancer Controller; the legacy in-tree provider when its annotations say so).
    Aws,
    /// GCP (GKE).
    Gcp,
    /// Azure.
    Azure,
    /// MetalLB.
    Metallb,
    /// No cloud: kube-proxy's health port only.
    Generic,
}

impl ProviderChoice {
    /// Every name `provider` accepts.
    pub const NAMES: &'static [&'static str] = &["auto", "aws", "gcp", "azure", "metallb", "generic"];

    /// The name users write.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderChoice::Auto => "auto",
            ProviderChoice::Aws => "aws",
            ProviderChoice::Gcp => "gcp",
            ProviderChoice::Azure => "azure",
            ProviderChoice::Metallb => "metallb",
            ProviderChoice::Generic => "generic",
        }
    }

    /// The choice named `s`.
    pub fn parse(s: &str) -> Option<ProviderChoice> {
        Some(match s {
            "auto" => ProviderChoice::Auto,
            "aws" => ProviderChoice::Aws,
            "gcp" => ProviderChoice::Gcp,
            "azure" => ProviderChoice::Azure,
            "metallb" => ProviderChoice::Metallb,
            "generic" => ProviderChoice::Generic,
            _ => return None,
        })
    }
}

/// An equality-based label selector (`key=value`, `key!=value`, `key`, `!key`, comma-separated),
/// as `kubectl -l` takes it; set-based terms (`in`, `notin`) are not accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub struct Selector {
    terms: Vec<Term>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Term {
    Equals(String, String),
    NotEquals(String, String),
    Exists(String),
    Absent(String),
}

impl Selector {
    /// Parses `s`; an error says which term is wrong.
    pub fn parse(s: &str) -> Result<Selector, String> {
        let mut terms = Vec::new();
        for raw in s.split(',').map(str::trim) {
            if raw.is_empty() {
                continue;
            }
            let term = if let Some((k, v)) = raw.split_once("!=") {
                Term::NotEquals(label_key(k)?, label_value(v)?)
            } else if let Some((k, v)) = raw.split_once("==").or_else(|| raw.split_once('=')) {
                Term::Equals(label_key(k)?, label_value(v)?)
            } else if let Some(k) = raw.strip_prefix('!') {
                Term::Absent(label_key(k)?)
            } else if raw.contains(' ') {
                return Err(format!(
                    "`{raw}`: only equality-based terms are accepted (key=value, key!=value, key, !key)"
                ));
            } else {
                Term::Exists(label_key(raw)?)
            };
            terms.push(term);
        }
        Ok(Selector { terms })
    }

    /// Whether `labels` satisfy every term (an empty selector selects everything).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.terms.iter().all(|t| match t {
            Term::Equals(k, v) => labels.get(k) == Some(v),
            Term::NotEquals(k, v) => labels.get(k) != Some(v),
            Term::Exists(k) => labels.contains_key(k),
            Term::Absent(k) => !labels.contains_key(k),
        })
    }

    /// Whether it selects everything.
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }
}

impl Default for Selector {
    fn default() -> Selector {
        // The default is a valid selector by construction; an empty one is the fallback that
        // can never be reached.
        Selector::parse(DEFAULT_SELECTOR).unwrap_or(Selector { terms: Vec::new() })
    }
}

impl fmt::Display for Selector {
    /// The selector as the API's `labelSelector` parameter takes it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, t) in self.terms.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            match t {
                Term::Equals(k, v) => write!(f, "{k}={v}")?,
                Term::NotEquals(k, v) => write!(f, "{k}!={v}")?,
                Term::Exists(k) => write!(f, "{k}")?,
                Term::Absent(k) => write!(f, "!{k}")?,
            }
        }
        Ok(())
    }
}

impl From<Selector> for String {
    fn from(s: Selector) -> String {
        s.to_string()
    }
}

/// A label key: an optional DNS-subdomain prefix and `/`, then a name of at most 63 characters
/// of letters, digits, `-`, `_`, `.`, starting and ending alphanumeric.
fn label_key(k: &str) -> Result<String, String> {
    let k = k.trim();
    let name = match k.rsplit_once('/') {
        Some((prefix, name)) => {
            let prefix_ok = !prefix.is_empty()
                && prefix.len() <= 253
                && prefix
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
            if !prefix_ok {
                return Err(format!("`{k}`: the prefix before `/` must be a DNS subdomain"));
            }
            name
        }
        None => k,
    };
    if !label_name_ok(name) || name.is_empty() {
        return Err(format!("`{k}` is not a label key (e.g. parallax.io/probe)"));
    }
    Ok(k.to_owned())
}

fn label_value(v: &str) -> Result<String, String> {
    let v = v.trim();
    if !label_name_ok(v) {
        return Err(format!("`{v}` is not a label value (63 letters, digits, -, _, . at most)"));
    }
    Ok(v.to_owned())
}

/// A label name or value: empty, or at most 63 characters, alphanumeric at both ends.
fn label_name_ok(s: &str) -> bool {
    s.is_empty()
        || (s.len() <= 63
            && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && s.starts_with(|c: char| c.is_ascii_alphanumeric())
            && s.ends_with(|c: char| c.is_ascii_alphanumeric()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn selectors_match_as_kubectl_l_does_and_print_as_the_api_takes_them() {
        let s = Selector::parse("parallax.io/probe=true, tier!=batch,team,!skip")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.to_string(), "parallax.io/probe=true,tier!=batch,team,!skip");
        assert!(s.matches(&labels(&[("parallax.io/probe", "true"), ("team", "web")])));
        assert!(!s.matches(&labels(&[("parallax.io/probe", "true")])), "team missing");
        assert!(!s.matches(&labels(&[("parallax.io/probe", "true"), ("team", "a"), ("tier", "batch")])));
        assert!(!s.matches(&labels(&[("parallax.io/probe", "true"), ("team", "a"), ("skip", "")])));
        assert!(!s.matches(&labels(&[("parallax.io/probe", "false"), ("team", "a")])));
        assert_eq!(Selector::parse("a==b").map(|s| s.to_string()), Ok("a=b".to_owned()));
        assert!(Selector::parse("").is_ok_and(|s| s.is_empty() && s.matches(&labels(&[]))));
        assert_eq!(Selector::default().to_string(), DEFAULT_SELECTOR);
    }

    #[test]
    fn bad_selectors_say_which_term_is_wrong() {
        for (bad, says) in [
            ("env in (a,b)", "only equality-based"),
            ("-bad=x", "not a label key"),
            ("a=b c", "not a label value"),
            ("Bad_Prefix/x=1", "DNS subdomain"),
        ] {
            match Selector::parse(bad) {
                Ok(s) => panic!("`{bad}` parsed as {s}"),
                Err(e) => assert!(e.contains(says), "`{bad}`: {e}"),
            }
        }
    }
}
