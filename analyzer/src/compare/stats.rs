//! The statistics of a comparison: rate differences against their sampling noise, and the
//! distance between two distributions.

/// Largest distance between the empirical CDFs of two sorted samples.
pub fn ks_distance(a: &[i64], b: &[i64]) -> f64 {
    let (mut i, mut j, mut d) = (0usize, 0usize, 0f64);
    while i < a.len() && j < b.len() {
        let x = a[i].min(b[j]);
        while i < a.len() && a[i] == x {
            i += 1;
        }
        while j < b.len() && b[j] == x {
            j += 1;
        }
        d = d.max((i as f64 / a.len() as f64 - j as f64 / b.len() as f64).abs());
    }
    d
}

/// The z-score of the difference of two rates, each (rate, samples behind it). Each rate is a
/// count of samples times a per-sample weight: its variance is rate² / samples (Poisson), so
/// the z-score needs no other assumption.
fn rate_z((xa, ka): (f64, u64), (xb, kb): (f64, u64)) -> f64 {
    let var = |x: f64, k: u64| if k == 0 { 0.0 } else { x * x / k as f64 };
    let se = (var(xa, ka) + var(xb, kb)).sqrt();
    if se > 0.0 { (xb - xa) / se } else { 0.0 }
}

/// The z-score of a function's rate change (each side's rate with the samples behind it), and
/// whether it is beyond noise: |z| ≥ [`super::Z_SIGNIFICANT`] with 10 samples or more in all.
pub(super) fn judge(a: (f64, u64), b: (f64, u64)) -> (f64, bool) {
    let z = rate_z(a, b);
    (z, z.abs() >= super::Z_SIGNIFICANT && a.1 + b.1 >= 10)
}

/// Sorts function changes by |z|, the largest first (then by function and kind), and keeps the
/// `top` of them, or more — up to twice as many — when more changed beyond noise. `key` gives
/// a change's (z, function, kind, significant).
pub(super) fn keep_top<T>(
    changes: &mut Vec<T>,
    top: usize,
    key: impl Fn(&T) -> (f64, &str, &str, bool),
) {
    changes.sort_by(|x, y| {
        let (x, y) = (key(x), key(y));
        y.0.abs()
            .total_cmp(&x.0.abs())
            .then_with(|| x.1.cmp(y.1))
            .then_with(|| x.2.cmp(y.2))
    });
    let significant = changes.iter().filter(|c| key(c).3).count();
    changes.truncate(top.max(significant.min(top * 2)));
}

pub(super) fn change_pct(a: f64, b: f64) -> Option<f64> {
    (a > 0.0).then(|| 100.0 * (b - a) / a)
}

#[cfg(test)]
mod tests {
    #[test]
    fn ks_distance_of_samples() {
        assert_eq!(super::ks_distance(&[1, 2, 3], &[1, 2, 3]), 0.0);
        assert_eq!(super::ks_distance(&[1, 2], &[3, 4]), 1.0);
        assert!((super::ks_distance(&[1, 2, 3, 4], &[3, 4, 5, 6]) - 0.5).abs() < 1e-12);
    }
}
