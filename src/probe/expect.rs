//! Judging a response against a view's matcher: status ranges, `body_contains`, `body_regex`,
//! kube-proxy's `localEndpoints`.

use std::fmt::Write as _;
use std::ops::RangeInclusive;

use serde::Deserialize;

use super::outcome::{shorten, ErrorCode, Failure};
use crate::config::Expect;

/// What judging learned besides pass/fail.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Judged {
    /// kube-proxy `localEndpoints`, when the body carried it.
    pub local_endpoints: Option<u64>,
}

/// Judges a complete response. Errors: `http_status`, `body_mismatch`, `no_local_endpoints`.
///
/// Order: kube-proxy's `localEndpoints: 0` first (it explains the 503 that comes with it better
/// than the status does), then the status ranges, then `body_contains`, then `body_regex`.
///
/// A body of kube-proxy's exact shape is recorded (`local_endpoints`) whatever the view: a cloud
/// checker probing `healthCheckNodePort` reads the same answer, and the diagnosis needs to know
/// why it failed. Only a view judging kube-proxy's count (`kube_proxy_endpoints`) fails on it.
pub fn judge(expect: &Expect, status: u16, body: &[u8]) -> (Judged, Result<(), Failure>) {
    let mut judged = Judged::default();
    let mut proxy_unhealthy = false;
    let health = KubeProxyHealth::parse(body);
    judged.local_endpoints = health.as_ref().map(|h| h.local_endpoints);
    if expect.kube_proxy_endpoints {
        if let Some(health) = health {
            if health.local_endpoints == 0 {
                let detail = format!("localEndpoints: 0 (status {status})");
                return (judged, Err(Failure::new(ErrorCode::NoLocalEndpoints, detail)));
            }
            proxy_unhealthy = health.service_proxy_healthy == Some(false);
        }
    }
    if !expect.status_ok(status) {
        let mut detail = format!("status {status}, expected {}", ranges(&expect.status));
        if proxy_unhealthy {
            detail.push_str(" (kube-proxy: serviceProxyHealthy false)");
        }
        return (judged, Err(Failure::new(ErrorCode::HttpStatus, detail)));
    }
    if let Some(needle) = &expect.body_contains {
        if !contains(body, needle.as_bytes()) {
            let detail = format!("body does not contain {:?}", shorten(needle, 80));
            return (judged, Err(Failure::new(ErrorCode::BodyMismatch, detail)));
        }
    }
    if let Some(regex) = &expect.body_regex {
        // Bodies are not always UTF-8; a lossy view still lets a text regex find text in them.
        if !regex.is_match(&String::from_utf8_lossy(body)) {
            let detail = format!("body does not match /{}/", shorten(regex.as_str(), 80));
            return (judged, Err(Failure::new(ErrorCode::BodyMismatch, detail)));
        }
    }
    (judged, Ok(()))
}

/// The body of kube-proxy's `healthCheckNodePort`:
/// `{"service":{"namespace":..,"name":..},"localEndpoints":N,"serviceProxyHealthy":b}`.
///
/// `serviceProxyHealthy` is optional: kube-proxy releases before 1.28 do not send it.
#[derive(Debug, Deserialize)]
struct KubeProxyHealth {
    #[allow(dead_code)] // Required so that only kube-proxy's shape is taken for its answer.
    service: serde_json::Map<String, serde_json::Value>,
    #[serde(rename = "localEndpoints")]
    local_endpoints: u64,
    #[serde(rename = "serviceProxyHealthy", default)]
    service_proxy_healthy: Option<bool>,
}

impl KubeProxyHealth {
    fn parse(body: &[u8]) -> Option<KubeProxyHealth> {
        // Most bodies are not kube-proxy's: skip the JSON parser for them.
        if !body.trim_ascii_start().starts_with(b"{")
            || memchr::memmem::find(body, b"localEndpoints").is_none()
        {
            return None;
        }
        serde_json::from_slice(body).ok()
    }
}

/// `200-299`, `200`, or `200, 300-399`.
fn ranges(status: &[RangeInclusive<u16>]) -> String {
    let mut out = String::new();
    for (i, r) in status.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        if r.start() == r.end() {
            let _ = write!(out, "{}", r.start());
        } else {
            let _ = write!(out, "{}-{}", r.start(), r.end());
        }
    }
    if out.is_empty() {
        out.push_str("nothing");
    }
    out
}

/// Whether `needle` occurs in `haystack` (the HTTP layer reads a TLS listener's 400 with it too).
pub(crate) fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    // memchr's substring search (SIMD prefilter): the byte-by-byte window compare took 5.7 us
    // for a 2 KiB body (micro bench judge/status_and_body_contains_2k).
    memchr::memmem::find(haystack, needle).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::Phase;

    fn expect(status: Vec<RangeInclusive<u16>>) -> Expect {
        Expect {
            status,
            body_contains: None,
            body_regex: None,
            kube_proxy_endpoints: false,
            grpc_service: String::new(),
        }
    }

    fn kube() -> Expect {
        Expect { kube_proxy_endpoints: true, ..expect(vec![200..=200]) }
    }

    const KUBE_EMPTY: &str =
        r#"{"service":{"namespace":"shop","name":"web"},"localEndpoints":0,"serviceProxyHealthy":true}"#;
    const KUBE_TWO: &str =
        r#"{"service":{"namespace":"shop","name":"web"},"localEndpoints":2,"serviceProxyHealthy":true}"#;

    #[test]
    fn accepted_status_passes() {
        let (judged, verdict) = judge(&expect(vec![200..=299]), 204, b"");
        assert_eq!(verdict, Ok(()));
        assert_eq!(judged.local_endpoints, None);
    }

    #[test]
    fn rejected_status_is_http_status_with_ranges_in_detail() {
        let (_, verdict) = judge(&expect(vec![200..=299]), 503, b"");
        let failure = verdict.unwrap_err();
        assert_eq!(failure.code, ErrorCode::HttpStatus);
        assert_eq!(failure.phase, Phase::Http);
        assert_eq!(failure.detail, "status 503, expected 200-299");
    }

    #[test]
    fn several_ranges_and_single_codes_are_listed() {
        let (_, verdict) = judge(&expect(vec![200..=200, 300..=399]), 204, b"");
        assert_eq!(verdict.unwrap_err().detail, "status 204, expected 200, 300-399");
    }

    #[test]
    fn kube_proxy_zero_endpoints_beats_the_503() {
        let (judged, verdict) = judge(&kube(), 503, KUBE_EMPTY.as_bytes());
        assert_eq!(judged.local_endpoints, Some(0));
        let failure = verdict.unwrap_err();
        assert_eq!(failure.code, ErrorCode::NoLocalEndpoints);
        assert_eq!(failure.phase, Phase::Expect);
        assert_eq!(failure.detail, "localEndpoints: 0 (status 503)");
    }

    #[test]
    fn kube_proxy_endpoints_are_recorded_on_success() {
        let (judged, verdict) = judge(&kube(), 200, KUBE_TWO.as_bytes());
        assert_eq!(verdict, Ok(()));
        assert_eq!(judged.local_endpoints, Some(2));
    }

    #[test]
    fn kube_proxy_body_without_service_proxy_healthy_still_parses() {
        let body = r#"{"service":{"namespace":"a","name":"b"},"localEndpoints":0}"#;
        let (judged, verdict) = judge(&kube(), 503, body.as_bytes());
        assert_eq!(judged.local_endpoints, Some(0));
        assert_eq!(verdict.unwrap_err().code, ErrorCode::NoLocalEndpoints);
    }

    #[test]
    fn kube_proxy_unhealthy_proxy_with_endpoints_is_http_status() {
        let body =
            r#"{"service":{"namespace":"a","name":"b"},"localEndpoints":3,"serviceProxyHealthy":false}"#;
        let (judged, verdict) = judge(&kube(), 503, body.as_bytes());
        assert_eq!(judged.local_endpoints, Some(3));
        let failure = verdict.unwrap_err();
        assert_eq!(failure.code, ErrorCode::HttpStatus);
        assert_eq!(failure.detail, "status 503, expected 200 (kube-proxy: serviceProxyHealthy false)");
    }

    #[test]
    fn kube_proxy_off_records_the_count_but_judges_the_status() {
        // A cloud checker on healthCheckNodePort: the count explains its 503, the matcher is its own.
        let (judged, verdict) = judge(&expect(vec![200..=299]), 503, KUBE_EMPTY.as_bytes());
        assert_eq!(judged.local_endpoints, Some(0));
        assert_eq!(verdict.unwrap_err().code, ErrorCode::HttpStatus);
        let (judged, verdict) = judge(&expect(vec![200..=299]), 200, KUBE_TWO.as_bytes());
        assert_eq!((judged.local_endpoints, verdict), (Some(2), Ok(())));
    }

    #[test]
    fn non_kube_proxy_bodies_fall_through_to_status() {
        for body in [
            &b"ok"[..],
            br#"{"localEndpoints":0}"#,
            br#"{"service":"x","localEndpoints":0}"#,
            br#"{"service":{},"localEndpoints":-1}"#,
            br#"{"lastUpdated":"x","currentTime":"y","nodeEligible":true}"#,
        ] {
            let (judged, verdict) = judge(&kube(), 503, body);
            assert_eq!(judged.local_endpoints, None, "{body:?}");
            assert_eq!(verdict.unwrap_err().code, ErrorCode::HttpStatus, "{body:?}");
        }
    }

    #[test]
    fn body_contains_passes_and_fails() {
        let e = Expect { body_contains: Some("cart".into()), ..expect(vec![200..=299]) };
        assert_eq!(judge(&e, 200, b"<h1>your cart</h1>").1, Ok(()));
        let failure = judge(&e, 200, b"<h1>login</h1>").1.unwrap_err();
        assert_eq!(failure.code, ErrorCode::BodyMismatch);
        assert_eq!(failure.phase, Phase::Expect);
        assert_eq!(failure.detail, r#"body does not contain "cart""#);
    }

    #[test]
    fn body_contains_works_on_binary_bodies() {
        let e = Expect { body_contains: Some("ok".into()), ..expect(vec![200..=299]) };
        assert_eq!(judge(&e, 200, b"\xff\xfeok\x00").1, Ok(()));
    }

    #[test]
    fn status_is_judged_before_the_body() {
        let e = Expect { body_contains: Some("cart".into()), ..expect(vec![200..=299]) };
        assert_eq!(judge(&e, 500, b"oops").1.unwrap_err().code, ErrorCode::HttpStatus);
    }

    #[test]
    fn body_regex_passes_and_fails() {
        let re = regex::Regex::new(r#""status":\s*"(UP|ok)""#).unwrap();
        let e = Expect { body_regex: Some(re), ..expect(vec![200..=299]) };
        assert_eq!(judge(&e, 200, br#"{"status": "UP"}"#).1, Ok(()));
        let failure = judge(&e, 200, br#"{"status": "DOWN"}"#).1.unwrap_err();
        assert_eq!(failure.code, ErrorCode::BodyMismatch);
        assert!(failure.detail.starts_with("body does not match /"), "{}", failure.detail);
    }

    #[test]
    fn body_contains_is_checked_before_body_regex() {
        let e = Expect {
            body_contains: Some("cart".into()),
            body_regex: Some(regex::Regex::new("^never$").unwrap()),
            ..expect(vec![200..=299])
        };
        let failure = judge(&e, 200, b"nothing").1.unwrap_err();
        assert!(failure.detail.contains("contain"), "{}", failure.detail);
        let failure = judge(&e, 200, b"cart").1.unwrap_err();
        assert!(failure.detail.contains("match"), "{}", failure.detail);
    }

    #[test]
    fn long_matchers_are_shortened_in_details() {
        let needle = "x".repeat(500);
        let e = Expect { body_contains: Some(needle), ..expect(vec![200..=299]) };
        let failure = judge(&e, 200, b"").1.unwrap_err();
        assert!(failure.detail.chars().count() < 120, "{}", failure.detail);
    }
}
