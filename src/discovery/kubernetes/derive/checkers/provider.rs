//! Which cloud's rules a Service's load balancer follows, and why: the `provider` setting when
//! not `auto`; else the Service's `loadBalancerClass` (a class not the cloud's own means another
//! controller), the node's `spec.providerID`, the Service's own annotations; else generic.

use super::super::super::ProviderChoice;
use super::super::Provider;
use super::aws;
use super::scope::Scope;

/// The provider for `scope`'s Service and one line saying which and why.
pub(super) fn detect(scope: &Scope<'_>) -> (Provider, String) {
    let (cloud, why) = match cloud(scope) {
        Some(found) => found,
        None => (
            Cloud::Generic,
            "nothing names a cloud (no providerID, no cloud annotation, no loadBalancerClass)".to_owned(),
        ),
    };
    let provider = match cloud {
        Cloud::Aws => aws::flavour(scope),
        Cloud::Azure => Provider::Azure,
        Cloud::Gcp => Provider::Gcp,
        Cloud::Metallb => Provider::Metallb,
        Cloud::Generic => Provider::Generic,
    };
    let line = match provider {
        Provider::AwsLbc => format!(
            "provider aws-lbc (AWS Load Balancer Controller, NLB): {why}; {}",
            aws::flavour_reason(scope)
        ),
        Provider::AwsLegacy => {
            format!("provider aws-legacy (in-tree cloud provider): {why}; {}", aws::flavour_reason(scope))
        }
        Provider::Azure => format!("provider azure (cloud-provider-azure): {why}"),
        Provider::Gcp => format!("provider gcp (GKE, ingress-gce L4): {why}"),
        Provider::Metallb => format!("provider metallb: {why}"),
        Provider::Generic => format!("provider generic: {why}"),
    };
    (provider, line)
}

/// The cloud, before AWS is split into its two controllers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cloud {
    Aws,
    Azure,
    Gcp,
    Metallb,
    Generic,
}

fn cloud(scope: &Scope<'_>) -> Option<(Cloud, String)> {
    match scope.ctx.options.provider {
        ProviderChoice::Aws => return Some((Cloud::Aws, "set by provider = aws".to_owned())),
        ProviderChoice::Azure => return Some((Cloud::Azure, "set by provider = azure".to_owned())),
        ProviderChoice::Gcp => return Some((Cloud::Gcp, "set by provider = gcp".to_owned())),
        ProviderChoice::Metallb => return Some((Cloud::Metallb, "set by provider = metallb".to_owned())),
        ProviderChoice::Generic => return Some((Cloud::Generic, "set by provider = generic".to_owned())),
        ProviderChoice::Auto => {}
    }
    from_class(scope).or_else(|| from_provider_id(scope)).or_else(|| from_annotations(scope))
}

fn from_provider_id(scope: &Scope<'_>) -> Option<(Cloud, String)> {
    let id = scope.ctx.cluster.node.as_ref()?.spec.as_ref()?.provider_id.as_deref()?;
    let cloud = [("aws://", Cloud::Aws), ("azure://", Cloud::Azure), ("gce://", Cloud::Gcp)]
        .into_iter()
        .find(|(prefix, _)| id.starts_with(prefix))?
        .1;
    Some((cloud, format!("the node's spec.providerID is {id}")))
}

fn from_annotations(scope: &Scope<'_>) -> Option<(Cloud, String)> {
    let prefixes = [
        ("service.beta.kubernetes.io/aws-load-balancer-", Cloud::Aws),
        ("service.beta.kubernetes.io/azure-", Cloud::Azure),
        ("cloud.google.com/", Cloud::Gcp),
        ("networking.gke.io/", Cloud::Gcp),
        ("metallb.universe.tf/", Cloud::Metallb),
        ("metallb.io/", Cloud::Metallb),
    ];
    let (prefix, cloud) = prefixes.into_iter().find(|(prefix, _)| scope.has_annotation_prefix(prefix))?;
    Some((cloud, format!("the Service has {prefix}* annotations")))
}

/// A `loadBalancerClass` decides first: the cloud controllers skip a Service that names a class
/// (k8s.io/cloud-provider `controllers/service`), except the classes their own controllers serve.
fn from_class(scope: &Scope<'_>) -> Option<(Cloud, String)> {
    let class = scope.load_balancer_class()?;
    let why = format!("spec.loadBalancerClass is {class}");
    Some(if class == aws::LBC_CLASS {
        (Cloud::Aws, why)
    } else if class.starts_with("networking.gke.io/") {
        (Cloud::Gcp, why)
    } else if let Some((Cloud::Metallb, _)) = from_annotations(scope) {
        (Cloud::Metallb, format!("{why}, with metallb annotations"))
    } else {
        (
            Cloud::Generic,
            format!("{why}: the cloud provider skips Services of another class, whose controller is unknown"),
        )
    })
}
