//! `parallax check` output: the compiled plan with effective settings, secrets redacted.

use super::Plan;

/// Renders the compiled plan for humans: every view with its effective settings after profile
/// defaults; secrets as `<redacted>`.
pub fn explain(plan: &Plan) -> String {
    let _ = plan;
    todo!("config: explain")
}
