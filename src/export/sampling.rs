//! Which probes leave as spans (docs/exports.md): every failure, every verdict change, every forced
//! probe, and a fraction of plain successes, so high-frequency probing does not flood the
//! pipeline. The fraction is decided by the trace id, as OpenTelemetry's `TraceIdRatioBased`
//! sampler does: deterministic for a given id, uniform over random ids.

/// Why a probe's span is exported, or that it is not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sampling {
    /// The probe failed.
    Failure,
    /// The probe changed its view's verdict.
    VerdictChange,
    /// The caller asked for it (e.g. the probe that opened or resolved a mismatch).
    Forced,
    /// A plain success that fell inside `success_sample_ratio`.
    Ratio,
    /// A plain success outside the ratio: not exported.
    Dropped,
}

impl Sampling {
    /// Decides for one probe. `trace_id` is the id the span would get.
    pub(crate) fn decide(ok: bool, changed: bool, force: bool, ratio: f64, trace_id: [u8; 16]) -> Sampling {
        if !ok {
            Sampling::Failure
        } else if changed {
            Sampling::VerdictChange
        } else if force {
            Sampling::Forced
        } else if ratio_keeps(ratio, trace_id) {
            Sampling::Ratio
        } else {
            Sampling::Dropped
        }
    }

    /// Whether the span is exported.
    pub(crate) fn keep(self) -> bool {
        self != Sampling::Dropped
    }

    /// The value of the `parallax.sampling` span attribute.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Sampling::Failure => "failure",
            Sampling::VerdictChange => "verdict_change",
            Sampling::Forced => "forced",
            Sampling::Ratio => "ratio",
            Sampling::Dropped => "dropped",
        }
    }
}

/// Whether a plain success with this trace id is inside `ratio` (0 keeps none, 1 keeps all).
pub(crate) fn ratio_keeps(ratio: f64, trace_id: [u8; 16]) -> bool {
    if ratio >= 1.0 {
        return true;
    }
    if ratio.is_nan() || ratio <= 0.0 {
        return false;
    }
    // The low 8 bytes of a W3C trace id are the random part; 53 of their bits map onto [0, 1)
    // exactly in an f64.
    let mut low = [0u8; 8];
    low.copy_from_slice(&trace_id[8..]);
    let x = (u64::from_be_bytes(low) >> 11) as f64 / (1u64 << 53) as f64;
    x < ratio
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> [u8; 16] {
        let mut id = [0u8; 16];
        // Spread n over the random half like a real generator would.
        id[8..].copy_from_slice(&n.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes());
        id
    }

    #[test]
    fn failures_changes_and_forced_probes_are_always_kept() {
        for n in 0..100 {
            assert_eq!(Sampling::decide(false, false, false, 0.0, id(n)), Sampling::Failure);
            assert_eq!(Sampling::decide(true, true, false, 0.0, id(n)), Sampling::VerdictChange);
            assert_eq!(Sampling::decide(true, false, true, 0.0, id(n)), Sampling::Forced);
        }
    }

    #[test]
    fn ratio_zero_keeps_no_success_and_one_keeps_all() {
        for n in 0..1000 {
            assert!(!Sampling::decide(true, false, false, 0.0, id(n)).keep());
            assert!(Sampling::decide(true, false, false, 1.0, id(n)).keep());
        }
        assert!(!ratio_keeps(f64::NAN, id(3)));
    }

    #[test]
    fn ratio_keeps_about_its_fraction_and_is_deterministic() {
        let kept = (0..10_000).filter(|n| ratio_keeps(0.1, id(*n))).count();
        assert!((800..1200).contains(&kept), "kept {kept} of 10000 at 0.1");
        for n in 0..100 {
            assert_eq!(ratio_keeps(0.3, id(n)), ratio_keeps(0.3, id(n)));
        }
        // A higher ratio keeps a superset: an id kept at 0.1 is kept at 0.5.
        assert!((0..1000).filter(|n| ratio_keeps(0.1, id(*n))).all(|n| ratio_keeps(0.5, id(n))));
    }
}
