//! The `allow_sources` audit: findings that need no traffic. A checker whose source addresses
//! (its own `source`, its profile's documented ranges) lie outside the target's allowlist would
//! have its health checks dropped by the LB's firewall, whatever the probes from here show.

use std::sync::Arc;

use ipnet::IpNet;

use super::diagnosis::evidence::join;
use super::diagnosis::{Diagnosis, Finding};
use crate::config::profiles;
use crate::config::{ProfileName, Source, Target};

/// A checker whose source addresses the target's `allow_sources` does not cover: the LB's
/// firewall would drop its checks and drain every backend, whatever the probes from here show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceGap {
    /// The checker view.
    pub checker: Arc<str>,
    /// Each uncovered range and where it comes from.
    pub uncovered: Vec<(IpNet, SourceOrigin)>,
}

/// Where an audited source range comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceOrigin {
    /// The view's `source`.
    View,
    /// The ranges the profile's real checker is documented to probe from (docs/profiles.md).
    Profile(ProfileName),
}

/// Audits every checker of `target` against its `allow_sources` (no traffic): a checker's own
/// `source` and its profile's documented source ranges must each lie inside the allowlist
/// (adjacent allowed ranges count together). Nothing is audited when `allow_sources` is empty.
pub fn audit_allow_sources(target: &Target) -> Vec<SourceGap> {
    if target.allow_sources.is_empty() {
        return Vec::new();
    }
    let allowed = IpNet::aggregate(&target.allow_sources);
    let covered = |net: &IpNet| allowed.iter().any(|a| a.contains(net));
    let mut gaps = Vec::new();
    for checker in &target.checkers {
        let mut ranges: Vec<(IpNet, SourceOrigin)> = Vec::new();
        if let Some(s) = checker.source {
            let net = match s.requested {
                Source::Addr(ip) => IpNet::from(ip),
                Source::Net(n) => n,
            };
            ranges.push((net, SourceOrigin::View));
        }
        if let Some(p) = checker.profile {
            // The table's ranges are tested to parse (profiles tests); skip rather than guess.
            for r in profiles::defaults(p).source_ranges {
                if let Ok(net) = r.parse::<IpNet>() {
                    ranges.push((net, SourceOrigin::Profile(p)));
                }
            }
        }
        let uncovered: Vec<_> = ranges.into_iter().filter(|(net, _)| !covered(net)).collect();
        if !uncovered.is_empty() {
            gaps.push(SourceGap { checker: checker.name.clone(), uncovered });
        }
    }
    gaps
}

impl SourceGap {
    /// "checker gcp probes from 35.191.0.0/16 (gcp's documented ranges), not covered by
    /// allow_sources [198.51.100.0/24]: ...".
    pub fn finding(&self, target: &Target) -> Finding {
        let froms = join(self.uncovered.iter().map(|(net, origin)| match origin {
            SourceOrigin::View => format!("{net} (its source)"),
            SourceOrigin::Profile(p) => format!("{net} ({p} documented range)"),
        }));
        Finding {
            diagnosis: Diagnosis::CheckerSourceBlocked,
            evidence: format!(
                "checker {} probes from {froms}, not covered by allow_sources [{}]: the LB's health checks \
                 are dropped and the backends drained; add these ranges to the allowlist",
                self.checker,
                join(target.allow_sources.iter())
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{SourceBind, View};
    use crate::testkit::{shop_aws_nlb as nlb, shop_client as client, target, view_url};

    #[test]
    fn allow_sources_audit() {
        let c = client();
        let mut gcp = view_url("shop", "gcp", "http://10.0.0.5:8080/");
        gcp.profile = Some(ProfileName::Gcp);
        let mut nlb_in = nlb();
        let net: IpNet = "10.0.0.0/24".parse().unwrap();
        nlb_in.source = Some(SourceBind { requested: Source::Net(net), addr: "10.0.0.7".parse().unwrap() });
        let mut nlb_out = nlb();
        nlb_out.name = "nlb-out".into();
        let ip = "192.0.2.7".parse().unwrap();
        nlb_out.source = Some(SourceBind { requested: Source::Addr(ip), addr: ip });
        let plain = view_url("shop", "plain", "http://10.0.0.5:8080/");

        // (allow_sources, checker, uncovered)
        let table: Vec<(Vec<&str>, View, Vec<&str>)> = vec![
            (vec![], gcp.clone(), vec![]),
            (vec!["198.51.100.0/24"], gcp.clone(), vec!["35.191.0.0/16", "130.211.0.0/22"]),
            (vec!["35.191.0.0/16", "198.51.100.0/24"], gcp.clone(), vec!["130.211.0.0/22"]),
            (vec!["35.191.0.0/16", "130.211.0.0/22"], gcp.clone(), vec![]),
            // Two adjacent halves cover the /16 together.
            (vec!["35.191.0.0/17", "35.191.128.0/17", "130.211.0.0/16"], gcp.clone(), vec![]),
            (vec!["10.0.0.0/16"], nlb_in.clone(), vec![]),
            (vec!["10.0.0.0/25"], nlb_in.clone(), vec!["10.0.0.0/24"]),
            (vec!["10.0.0.0/8"], nlb_out.clone(), vec!["192.0.2.7/32"]),
            (vec!["192.0.2.7/32"], nlb_out.clone(), vec![]),
            // No source and no documented ranges: nothing to audit.
            (vec!["10.0.0.0/8"], plain.clone(), vec![]),
        ];
        for (allow, checker, want) in table {
            let mut t = target(c.clone(), vec![checker.clone()]);
            t.allow_sources = allow.iter().map(|a| a.parse().unwrap()).collect();
            let gaps = audit_allow_sources(&t);
            let got: Vec<String> =
                gaps.iter().flat_map(|g| g.uncovered.iter().map(|(n, _)| n.to_string())).collect();
            assert_eq!(got, want, "{allow:?} vs {}", checker.name);
            if let Some(g) = gaps.first() {
                let f = g.finding(&t);
                assert_eq!(f.diagnosis, Diagnosis::CheckerSourceBlocked);
                assert!(
                    f.evidence.contains(&format!("checker {} probes from {}", checker.name, want[0])),
                    "{}",
                    f.evidence
                );
                assert!(f.evidence.contains(&allow.join(", ")), "{}", f.evidence);
            }
        }
    }
}
