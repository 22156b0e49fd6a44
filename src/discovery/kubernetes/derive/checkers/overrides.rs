//! `parallax.io/check-*` on the Service: replace parts of the cloud load balancer's checks (not
//! kube-proxy's view) when the live configuration differs from what the rules derive, e.g. a
//! health check edited in the console. Bad values are notes; the derived value stays.

use crate::config::ProfileName;

use super::super::Note;
use super::annotations::Reader;
use super::check::{duration, Check, Part, Scheme};
use super::scope::Scope;

const PREFIX: &str = "parallax.io/check-";

/// Applies every `parallax.io/check-*` annotation to each of `checks`.
pub(super) fn apply(
    scope: &Scope<'_>,
    checks: &mut [Check],
    comments: &mut Vec<String>,
    notes: &mut Vec<Note>,
) {
    if !scope.has_annotation_prefix(PREFIX) {
        return;
    }
    if checks.is_empty() {
        comments.push(format!(
            "{PREFIX}* set, but no load balancer health check was derived for this port to override"
        ));
        return;
    }
    for check in checks.iter_mut() {
        apply_one(scope, check, notes);
    }
}

fn key(suffix: &str) -> String {
    format!("{PREFIX}{suffix}")
}

fn apply_one(scope: &Scope<'_>, check: &mut Check, notes: &mut Vec<Note>) {
    let ann = scope.ann.clone().read_by(Reader::Parallax);
    let shown = check.profile.value.clone();
    check.profile =
        ann.parsed(&key("profile"), check.profile.clone(), "a parallax profile name", &shown, notes, |raw| {
            ProfileName::from_name(raw).map(|p| p.as_str().to_owned())
        });
    let shown = check.scheme.value.as_str().to_owned();
    check.scheme = ann.parsed(
        &key("protocol"),
        check.scheme.clone(),
        "http, https, tcp or tls",
        &shown,
        notes,
        Scheme::parse,
    );
    check.port = port(scope, check, notes);
    let shown = check.path.value.clone();
    check.path =
        ann.parsed(&key("path"), check.path.clone(), "a path starting with /", &shown, notes, |raw| {
            raw.starts_with('/').then(|| raw.to_owned())
        });
    let expected = "a duration (10s, 500ms) or whole seconds";
    let shown = duration(check.interval_ms.value);
    check.interval_ms =
        ann.parsed(&key("interval"), check.interval_ms.clone(), expected, &shown, notes, millis);
    let shown = duration(check.timeout_ms.value);
    check.timeout_ms = ann.parsed(&key("timeout"), check.timeout_ms.clone(), expected, &shown, notes, millis);
    check.rise = ann.count(&key("rise"), check.rise.clone(), notes);
    check.fall = ann.count(&key("fall"), check.fall.clone(), notes);
    let shown = check.status.value.clone();
    check.status = ann.parsed(
        &key("status"),
        check.status.clone(),
        "statuses (200, 200-399, 2xx, 200,204)",
        &shown,
        notes,
        statuses,
    );
}

/// `parallax.io/check-port`: a number, or a Service port's name (its nodePort for a check of the
/// node, its numeric targetPort for a check of a pod).
fn port(scope: &Scope<'_>, check: &Check, notes: &mut Vec<Note>) -> Part<u16> {
    let of_pod = check.pod.is_some();
    let shown = check.port.value.to_string();
    let expected = "a port number or the name of a port of the Service";
    scope.ann.clone().read_by(Reader::Parallax).parsed(
        &key("port"),
        check.port.clone(),
        expected,
        &shown,
        notes,
        |raw| {
            if let Ok(n) = raw.parse::<u16>() {
                return (n != 0).then_some(n);
            }
            let named = scope.service_port(raw)?;
            if of_pod {
                Scope::numeric_target_port(named)
            } else {
                named.node_port.and_then(|n| u16::try_from(n).ok())
            }
        },
    )
}

/// A positive duration in milliseconds: `10s`, `1500ms`, `1m`, or whole seconds (`10`).
fn millis(raw: &str) -> Option<u64> {
    let ms = match raw.parse::<u64>() {
        Ok(secs) => secs.checked_mul(1000)?,
        Err(_) => u64::try_from(humantime::parse_duration(raw).ok()?.as_millis()).ok()?,
    };
    (ms > 0).then_some(ms)
}

/// Statuses as probes.d takes them: `200`, `200-399`, `2xx`, comma-separated.
fn statuses(raw: &str) -> Option<String> {
    let item_ok = |item: &str| {
        let code = |c: &str| c.len() == 3 && c.chars().all(|ch| ch.is_ascii_digit());
        let class =
            item.len() == 3 && item.as_bytes()[0].is_ascii_digit() && item[1..].eq_ignore_ascii_case("xx");
        match item.split_once('-') {
            Some((a, b)) => code(a) && code(b),
            None => code(item) || class,
        }
    };
    let items: Vec<&str> = raw.split(',').map(str::trim).collect();
    (!items.is_empty() && items.iter().all(|i| item_ok(i))).then(|| items.join(","))
}
