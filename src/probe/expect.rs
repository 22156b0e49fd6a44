//! Judging a response against a view's matcher: status ranges, `body_contains`, `body_regex`,
//! kube-proxy's `localEndpoints`.

use super::outcome::Failure;
use crate::config::Expect;

/// What judging learned besides pass/fail.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Judged {
    /// kube-proxy `localEndpoints`, when the body carried it.
    pub local_endpoints: Option<u64>,
}

/// Judges a complete response. Errors: `http_status`, `body_mismatch`, `no_local_endpoints`.
pub fn judge(expect: &Expect, status: u16, body: &[u8]) -> (Judged, Result<(), Failure>) {
    let _ = (expect, status, body);
    todo!("expect")
}
