//! Slopes and percentiles.

/// The least-squares slope of `points` (x, y); 0 with fewer than two distinct x.
pub fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return 0.0;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    if sxx == 0.0 {
        0.0
    } else {
        sxy / sxx
    }
}

/// The `q` quantile (0..=1) of `sorted` (nearest rank); NaN when empty.
pub fn quantile(sorted: &[f32], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    f64::from(sorted[rank - 1])
}

/// A histogram's per-bucket counts between two cumulative readings (upper bound, cumulative).
pub fn delta(before: &[(f64, u64)], after: &[(f64, u64)]) -> Vec<(f64, u64)> {
    after
        .iter()
        .map(|(le, n)| {
            let was = before.iter().find(|(b, _)| b == le).map(|(_, c)| *c).unwrap_or(0);
            (*le, n.saturating_sub(was))
        })
        .collect()
}

/// Adds cumulative histogram `b` into `a` (same bounds, or `a` empty).
pub fn add(a: &mut Vec<(f64, u64)>, b: &[(f64, u64)]) {
    if a.is_empty() {
        a.extend_from_slice(b);
        return;
    }
    for (le, n) in b {
        if let Some(slot) = a.iter_mut().find(|(x, _)| x == le) {
            slot.1 += n;
        }
    }
}

/// The upper bound of the bucket holding the `q` quantile of cumulative histogram `h`, seconds
/// (infinity past the last finite bound; NaN when empty).
pub fn histogram_quantile_bound(h: &[(f64, u64)], q: f64) -> f64 {
    let total = h.last().map(|(_, n)| *n).unwrap_or(0);
    if total == 0 {
        return f64::NAN;
    }
    let want = (q * total as f64).ceil() as u64;
    h.iter().find(|(_, n)| *n >= want).map(|(le, _)| *le).unwrap_or(f64::INFINITY)
}

/// The fraction of cumulative histogram `h`'s observations above `bound` seconds (a bucket
/// bound); NaN when empty.
pub fn fraction_above(h: &[(f64, u64)], bound: f64) -> f64 {
    let total = h.last().map(|(_, n)| *n).unwrap_or(0);
    if total == 0 {
        return f64::NAN;
    }
    let at_or_below = h.iter().find(|(le, _)| (*le - bound).abs() < 1e-12).map(|(_, n)| *n).unwrap_or(0);
    (total - at_or_below) as f64 / total as f64
}
