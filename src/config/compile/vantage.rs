//! `[vantage]` compiled into [`Vantage`], each error at its key.

use super::Compiler;
use crate::config::key_path::KeySegment;
use crate::config::load::SettingsTree;
use crate::config::raw::RawVantage;
use crate::config::vantage::{
    is_label_name, Vantage, VantageKind, MAX_VANTAGE_LABELS, MAX_VANTAGE_VALUE_BYTES, RESERVED_LABELS,
};

impl Compiler<'_> {
    /// `[vantage]` over its defaults: the name from `NODE_NAME`, else the host name; the kind
    /// `node` when `NODE_NAME` is set (the DaemonSet), else `external`.
    pub(super) fn vantage(&mut self, raw: RawVantage, tree: &SettingsTree<'_>) -> Vantage {
        let node_name = self.env.var("NODE_NAME").map(|n| n.trim().to_owned()).filter(|n| !n.is_empty());
        let mut vantage = Vantage {
            name: node_name
                .clone()
                .or_else(|| crate::daemon::host_name(self.env))
                .unwrap_or_else(|| "unknown".to_owned()),
            kind: if node_name.is_some() { VantageKind::Node } else { VantageKind::External },
            zone: None,
            region: None,
            labels: Vec::new(),
        };
        let location = |key: &str| {
            tree.location(&[KeySegment::Key("vantage".to_owned()), KeySegment::Key(key.to_owned())])
        };
        if let Some(v) = raw.name {
            let (at, key) = location("name");
            if let Some(name) = self.vantage_value(&at, &key, &v) {
                vantage.name = name;
            }
        }
        if let Some(v) = raw.kind {
            let (at, key) = location("kind");
            match self.plain(&at, &key, &v).as_deref().map(str::trim) {
                Some("node") => vantage.kind = VantageKind::Node,
                Some("external") => vantage.kind = VantageKind::External,
                Some(other) => self.error(
                    &at,
                    &key,
                    format!(
                        "`{other}` is not a vantage kind: `node` (a DaemonSet pod: the checkers' view from \
                         its node) or `external` (a probe VM outside the cloud's firewall: the users' view)"
                    ),
                ),
                None => {}
            }
        }
        if let Some(v) = raw.zone {
            let (at, key) = location("zone");
            vantage.zone = self.vantage_value(&at, &key, &v);
        }
        if let Some(v) = raw.region {
            let (at, key) = location("region");
            vantage.region = self.vantage_value(&at, &key, &v);
        }
        let labels = raw.labels.unwrap_or_default();
        if labels.len() > MAX_VANTAGE_LABELS {
            let (at, key) = location("labels");
            self.error(
                &at,
                &key,
                format!(
                    "{} labels: at most {MAX_VANTAGE_LABELS} (each is on every series this instance exports)",
                    labels.len()
                ),
            );
        } else {
            for (name, value) in labels {
                let (at, key) = tree.location(&[
                    KeySegment::Key("vantage".to_owned()),
                    KeySegment::Key("labels".to_owned()),
                    KeySegment::Key(name.clone()),
                ]);
                if !is_label_name(&name) {
                    self.error(
                        &at,
                        &key,
                        format!("`{name}` is not a label name: lowercase letters, digits and '_', not starting with a digit or `__`"),
                    );
                    continue;
                }
                if RESERVED_LABELS.contains(&name.as_str()) {
                    self.error(
                        &at,
                        &key,
                        format!(
                            "`{name}` is a label parallax or Prometheus sets itself: choose another name"
                        ),
                    );
                    continue;
                }
                if let Some(value) = self.vantage_value(&at, &key, &value) {
                    vantage.labels.push((name, value));
                }
            }
        }
        vantage
    }

    /// A vantage name, zone, region or label value: substituted (`${NODE_NAME}`), no secret,
    /// not empty, at most [`MAX_VANTAGE_VALUE_BYTES`], no control characters.
    fn vantage_value(
        &mut self,
        at: &crate::config::key_path::Location,
        key: &str,
        raw: &str,
    ) -> Option<String> {
        let value = self.plain(at, key, raw)?.trim().to_owned();
        if value.is_empty() {
            self.error(at, key, "is empty: leave the key out for the default");
            return None;
        }
        if value.len() > MAX_VANTAGE_VALUE_BYTES || value.chars().any(char::is_control) {
            self.error(
                at,
                key,
                format!("must be at most {MAX_VANTAGE_VALUE_BYTES} bytes of printable text (it is a label value on every series)"),
            );
            return None;
        }
        Some(value)
    }
}
