//! Pure drift statistics on binned distributions.
//!
//! Every function takes a reference distribution (shares per bin) and a
//! current one (counts or shares over the same bins) and returns a number;
//! nothing here reads a clock or does IO, so `policy` may import it.
//! Distances are bounded metrics (Jensen-Shannon distance = sqrt of the
//! divergence); PSI is a divergence and unbounded.

/// Smallest share used where a logarithm would see zero (PSI), as in the
/// usual PSI tables; keeps the value finite when a bin is empty.
pub const PSI_EPSILON: f64 = 1e-4;

/// Turns counts into shares; all zeros when the counts sum to zero.
pub fn shares(counts: &[u64]) -> Vec<f64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return vec![0.0; counts.len()];
    }
    counts.iter().map(|&c| c as f64 / total as f64).collect()
}

/// Jensen-Shannon divergence in bits (base 2), in [0, 1].
pub fn jensen_shannon_divergence(reference: &[f64], current: &[f64]) -> f64 {
    let mut total = 0.0;
    for (&p, &q) in reference.iter().zip(current) {
        let m = 0.5 * (p + q);
        if p > 0.0 {
            total += 0.5 * p * (p / m).log2();
        }
        if q > 0.0 {
            total += 0.5 * q * (q / m).log2();
        }
    }
    total.clamp(0.0, 1.0)
}

/// Jensen-Shannon distance (base 2): the square root of the divergence, in [0, 1].
pub fn jensen_shannon_distance(reference: &[f64], current: &[f64]) -> f64 {
    jensen_shannon_divergence(reference, current).sqrt()
}

/// Population stability index `Σ (q - p) ln(q / p)`; an empty bin counts
/// as [`PSI_EPSILON`] (as in Evidently) so one empty bin does not make it infinite.
pub fn psi(reference: &[f64], current: &[f64]) -> f64 {
    let smooth = |x: f64| if x > 0.0 { x } else { PSI_EPSILON };
    reference
        .iter()
        .zip(current)
        .filter(|(p, q)| **p > 0.0 || **q > 0.0)
        .map(|(&p, &q)| {
            let (p, q) = (smooth(p), smooth(q));
            (q - p) * (q / p).ln()
        })
        .sum()
}

/// Kolmogorov-Smirnov statistic on ordered bins: the largest gap between
/// the two cumulative distributions at a bin boundary.
pub fn ks_statistic(reference: &[f64], current: &[f64]) -> f64 {
    let (mut cp, mut cq, mut worst) = (0.0f64, 0.0f64, 0.0f64);
    for (&p, &q) in reference.iter().zip(current) {
        cp += p;
        cq += q;
        worst = worst.max((cp - cq).abs());
    }
    worst.min(1.0)
}

/// Asymptotic two-sample Kolmogorov-Smirnov p-value for statistic `d`
/// with sample sizes `n` and `m` (Kolmogorov distribution with Stephens'
/// small-sample correction).
pub fn ks_p_value(d: f64, n: u64, m: u64) -> f64 {
    if n == 0 || m == 0 {
        return 1.0;
    }
    let en = ((n as f64) * (m as f64) / (n as f64 + m as f64)).sqrt();
    let lambda = (en + 0.12 + 0.11 / en) * d;
    kolmogorov_survival(lambda)
}

/// `P(K > λ)` for the Kolmogorov distribution: `2 Σ (-1)^(k-1) e^(-2k²λ²)`.
fn kolmogorov_survival(lambda: f64) -> f64 {
    if lambda < 1e-3 {
        return 1.0;
    }
    let mut sum = 0.0;
    let mut sign = 1.0;
    for k in 1..=100 {
        let k = k as f64;
        let term = (-2.0 * k * k * lambda * lambda).exp();
        sum += sign * term;
        if term < 1e-12 {
            break;
        }
        sign = -sign;
    }
    (2.0 * sum).clamp(0.0, 1.0)
}

/// Representative value of each sketch bin of a numeric feature with edges
/// `[e0, …, ek]`: inner bins at their midpoints, the underflow bin half a
/// bin width below `e0` and the overflow bin half a bin width above `ek`.
pub fn bin_centres(edges: &[f64]) -> Vec<f64> {
    let k = edges.len() - 1;
    let mut centres = Vec::with_capacity(k + 2);
    let first_width = if k >= 1 { edges[1] - edges[0] } else { 0.0 };
    let last_width = if k >= 1 { edges[k] - edges[k - 1] } else { 0.0 };
    centres.push(edges[0] - first_width / 2.0);
    for w in edges.windows(2) {
        centres.push(0.5 * (w[0] + w[1]));
    }
    centres.push(edges[k] + last_width / 2.0);
    centres
}

/// Wasserstein-1 distance between two binned distributions whose mass sits
/// at `positions` (increasing): `Σ |F_p - F_q| · (x(i+1) - x(i))`.
pub fn wasserstein(reference: &[f64], current: &[f64], positions: &[f64]) -> f64 {
    let (mut cp, mut cq, mut total) = (0.0f64, 0.0f64, 0.0f64);
    let n = positions.len().min(reference.len()).min(current.len());
    for i in 0..n.saturating_sub(1) {
        cp += reference[i];
        cq += current[i];
        total += (cp - cq).abs() * (positions[i + 1] - positions[i]);
    }
    total
}

/// Wasserstein distance divided by the reference standard deviation
/// (Evidently's "normalised Wasserstein"); 0 spread counts as 1.
pub fn normalised_wasserstein(
    reference: &[f64],
    current: &[f64],
    positions: &[f64],
    reference_std: f64,
) -> f64 {
    let scale = if reference_std > 0.0 && reference_std.is_finite() {
        reference_std
    } else {
        1.0
    };
    wasserstein(reference, current, positions) / scale
}

/// Largest absolute difference between the two share vectors (TFDV's
/// L-infinity distance for categorical features).
pub fn l_infinity(reference: &[f64], current: &[f64]) -> f64 {
    reference
        .iter()
        .zip(current)
        .map(|(p, q)| (p - q).abs())
        .fold(0.0, f64::max)
}

/// Result of a chi-square test.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChiSquare {
    /// The statistic.
    pub statistic: f64,
    /// Degrees of freedom.
    pub dof: usize,
    /// Probability of a statistic at least this large if nothing drifted.
    pub p_value: f64,
}

/// Chi-square test of homogeneity between reference counts and current
/// counts over the same bins (a 2×k contingency table). Bins empty on both
/// sides are dropped; unlike a goodness-of-fit test this stays finite when
/// a bin the reference never saw (an unseen category) fills up.
pub fn chi_square(reference_counts: &[f64], current_counts: &[f64]) -> ChiSquare {
    let n_ref: f64 = reference_counts.iter().sum();
    let n_cur: f64 = current_counts.iter().sum();
    let total = n_ref + n_cur;
    if n_ref <= 0.0 || n_cur <= 0.0 {
        return ChiSquare {
            statistic: 0.0,
            dof: 0,
            p_value: 1.0,
        };
    }
    let mut statistic = 0.0;
    let mut used = 0usize;
    for (&r, &c) in reference_counts.iter().zip(current_counts) {
        let column = r + c;
        if column <= 0.0 {
            continue;
        }
        used += 1;
        let expected_r = column * n_ref / total;
        let expected_c = column * n_cur / total;
        statistic += (r - expected_r).powi(2) / expected_r + (c - expected_c).powi(2) / expected_c;
    }
    let dof = used.saturating_sub(1);
    let p_value = if dof == 0 {
        1.0
    } else {
        chi_square_survival(statistic, dof as f64)
    };
    ChiSquare {
        statistic,
        dof,
        p_value,
    }
}

/// `P(X > x)` for a chi-square variable with `dof` degrees of freedom.
pub fn chi_square_survival(x: f64, dof: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    regularized_upper_gamma(dof / 2.0, x / 2.0)
}

/// The `x` with `P(X > x) = tail` for a chi-square variable with `dof`
/// degrees of freedom (any positive real): the upper quantile, by bisection
/// on [`chi_square_survival`], to a relative 1e-10.
pub fn chi_square_upper_quantile(tail: f64, dof: f64) -> f64 {
    // NaN lands here too: no quantile is a safe "never over".
    if tail.is_nan() || tail <= 0.0 || dof.is_nan() || dof <= 0.0 {
        return f64::INFINITY;
    }
    if tail >= 1.0 {
        return 0.0;
    }
    let mut hi = dof.max(1.0);
    while chi_square_survival(hi, dof) > tail {
        hi *= 2.0;
        if !hi.is_finite() {
            return f64::INFINITY;
        }
    }
    let mut lo = 0.0;
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if chi_square_survival(mid, dof) > tail {
            lo = mid;
        } else {
            hi = mid;
        }
        if hi - lo <= 1e-10 * hi {
            break;
        }
    }
    0.5 * (lo + hi)
}

// Hand-written incomplete gamma (series / Lentz continued fraction) to avoid
// pulling a statistics crate and its linear-algebra dependencies for one function.
fn regularized_upper_gamma(a: f64, x: f64) -> f64 {
    if x < a + 1.0 {
        1.0 - lower_gamma_series(a, x)
    } else {
        upper_gamma_fraction(a, x)
    }
    .clamp(0.0, 1.0)
}

fn lower_gamma_series(a: f64, x: f64) -> f64 {
    let mut term = 1.0 / a;
    let mut sum = term;
    let mut ap = a;
    for _ in 0..1000 {
        ap += 1.0;
        term *= x / ap;
        sum += term;
        if term.abs() < sum.abs() * 1e-15 {
            break;
        }
    }
    sum * (-x + a * x.ln() - ln_gamma(a)).exp()
}

fn upper_gamma_fraction(a: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let mut b = x + 1.0 - a;
    let mut c = 1.0 / TINY;
    let mut d = 1.0 / b;
    let mut h = d;
    for i in 1..1000 {
        let an = -(i as f64) * (i as f64 - a);
        b += 2.0;
        d = an * d + b;
        if d.abs() < TINY {
            d = TINY;
        }
        c = b + an / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        let delta = d * c;
        h *= delta;
        if (delta - 1.0).abs() < 1e-15 {
            break;
        }
    }
    (-x + a * x.ln() - ln_gamma(a)).exp() * h
}

/// Natural log of the gamma function (Lanczos approximation, g = 7).
pub fn ln_gamma(x: f64) -> f64 {
    const COEFFS: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection formula.
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = COEFFS[0];
    let t = x + 7.5;
    for (i, &c) in COEFFS.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// Benjamini-Hochberg adjusted p-values (q-values), in the input order.
/// A hypothesis is rejected at false-discovery rate `α` when its q ≤ α.
pub fn benjamini_hochberg(p_values: &[f64]) -> Vec<f64> {
    let m = p_values.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| p_values[a].total_cmp(&p_values[b]));
    let mut adjusted = vec![1.0; m];
    let mut running_min = 1.0f64;
    for rank in (0..m).rev() {
        let i = order[rank];
        let q = (p_values[i] * m as f64 / (rank + 1) as f64).min(1.0);
        running_min = running_min.min(q);
        adjusted[i] = running_min;
    }
    adjusted
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn jensen_shannon_of_identical_and_disjoint_distributions() {
        assert_eq!(jensen_shannon_distance(&[0.5, 0.5], &[0.5, 0.5]), 0.0);
        assert!(close(
            jensen_shannon_distance(&[1.0, 0.0], &[0.0, 1.0]),
            1.0,
            1e-12
        ));
    }

    #[test]
    fn jensen_shannon_matches_a_hand_computed_case() {
        // p = (0.5, 0.5), q = (1, 0): m = (0.75, 0.25)
        // JSD = 0.5·[0.5 log2(0.5/0.75) + 0.5 log2(0.5/0.25)] + 0.5·[1·log2(1/0.75)]
        let expected = 0.5 * (0.5 * (0.5f64 / 0.75).log2() + 0.5 * 2.0f64.log2())
            + 0.5 * (1.0f64 / 0.75).log2();
        let d = jensen_shannon_divergence(&[0.5, 0.5], &[1.0, 0.0]);
        assert!(close(d, expected, 1e-12), "{d} vs {expected}");
        assert!(close(d, 0.311_278_124_459_132_8, 1e-12));
        assert!(close(
            jensen_shannon_distance(&[0.5, 0.5], &[1.0, 0.0]),
            expected.sqrt(),
            1e-12
        ));
    }

    #[test]
    fn psi_matches_a_hand_computed_case() {
        // (0.3-0.5) ln(0.3/0.5) + (0.7-0.5) ln(0.7/0.5)
        let expected = -0.2 * (0.6f64).ln() + 0.2 * (1.4f64).ln();
        assert!(close(psi(&[0.5, 0.5], &[0.3, 0.7]), expected, 1e-12));
        // An empty bin is smoothed, not infinite.
        assert!(psi(&[0.5, 0.5], &[1.0, 0.0]).is_finite());
    }

    #[test]
    fn ks_is_the_largest_cdf_gap() {
        // cdf p: .25 .5 .75 1 ; cdf q: .1 .2 .6 1 → gaps .15 .3 .15 0
        assert!(close(
            ks_statistic(&[0.25, 0.25, 0.25, 0.25], &[0.1, 0.1, 0.4, 0.4]),
            0.3,
            1e-12
        ));
    }

    #[test]
    fn ks_p_value_is_small_for_large_gaps_and_large_for_none() {
        assert!(ks_p_value(0.3, 1000, 1000) < 1e-10);
        assert!(ks_p_value(0.0, 1000, 1000) > 0.999);
        // Critical value at α = 0.05 for n = m = 100 is about 1.36·sqrt(2/100) = 0.192.
        let p = ks_p_value(0.192, 100, 100);
        assert!(close(p, 0.05, 0.01), "{p}");
    }

    #[test]
    fn wasserstein_of_a_shift_is_the_shift() {
        let positions = [0.0, 1.0, 2.0, 3.0];
        // All mass moves from position 1 to position 2: distance 1.
        assert!(close(
            wasserstein(&[0.0, 1.0, 0.0, 0.0], &[0.0, 0.0, 1.0, 0.0], &positions),
            1.0,
            1e-12
        ));
        // Half the mass moves by 2: distance 1.
        assert!(close(
            wasserstein(&[0.5, 0.5, 0.0, 0.0], &[0.5, 0.0, 0.0, 0.5], &positions),
            1.0,
            1e-12
        ));
        assert!(close(
            normalised_wasserstein(
                &[0.0, 1.0, 0.0, 0.0],
                &[0.0, 0.0, 1.0, 0.0],
                &positions,
                2.0
            ),
            0.5,
            1e-12
        ));
    }

    #[test]
    fn bin_centres_put_outer_bins_half_a_width_outside() {
        assert_eq!(bin_centres(&[0.0, 2.0, 4.0]), vec![-1.0, 1.0, 3.0, 5.0]);
    }

    #[test]
    fn l_infinity_is_the_largest_share_gap() {
        assert!(close(
            l_infinity(&[0.5, 0.3, 0.2], &[0.4, 0.5, 0.1]),
            0.2,
            1e-12
        ));
    }

    #[test]
    fn chi_square_matches_a_hand_computed_table() {
        // Table [[10, 20], [20, 10]]: expected 15 everywhere, χ² = 4·25/15 = 6.667, dof 1.
        let chi = chi_square(&[10.0, 20.0], &[20.0, 10.0]);
        assert!(close(chi.statistic, 20.0 / 3.0, 1e-12));
        assert_eq!(chi.dof, 1);
        // P(χ²₁ > 6.667) = 0.009823 (scipy.stats.chi2.sf).
        assert!(close(chi.p_value, 0.009_823, 1e-5), "{}", chi.p_value);
    }

    #[test]
    fn chi_square_survival_matches_tables() {
        // scipy.stats.chi2.sf(x, k)
        assert!(close(
            chi_square_survival(3.841_458_820_694_124, 1.0),
            0.05,
            1e-9
        ));
        assert!(close(
            chi_square_survival(18.307_038_053_275_146, 10.0),
            0.05,
            1e-9
        ));
        assert!(close(chi_square_survival(2.0, 2.0), (-1.0f64).exp(), 1e-12));
        assert!(close(
            chi_square_survival(50.0, 3.0),
            7.989_179_244_951_47e-11,
            1e-15
        ));
    }

    #[test]
    fn chi_square_upper_quantiles_match_tables() {
        // scipy.stats.chi2.isf(p, k)
        assert!(close(
            chi_square_upper_quantile(0.05, 1.0),
            3.841_458_820_694_124,
            1e-7
        ));
        assert!(close(
            chi_square_upper_quantile(0.001, 10.0),
            29.588_298_445_074_4,
            1e-6
        ));
        assert!(close(
            chi_square_upper_quantile(1e-4, 2.5),
            19.810_399_317_201_476,
            1e-6
        ));
        assert_eq!(chi_square_upper_quantile(1.0, 3.0), 0.0);
        assert!(chi_square_upper_quantile(0.0, 3.0).is_infinite());
    }

    #[test]
    fn chi_square_stays_finite_when_an_unseen_bin_fills() {
        let chi = chi_square(&[50.0, 50.0, 0.0], &[40.0, 40.0, 20.0]);
        assert!(chi.statistic.is_finite());
        assert_eq!(chi.dof, 2);
        assert!(chi.p_value < 1e-3);
    }

    #[test]
    fn benjamini_hochberg_matches_a_hand_computed_case() {
        // sorted p: .01 .02 .03 .5 with m = 4 → .04 .04 .04 .5
        let q = benjamini_hochberg(&[0.5, 0.01, 0.03, 0.02]);
        let expected = [0.5, 0.04, 0.04, 0.04];
        for (a, b) in q.iter().zip(expected) {
            assert!(close(*a, b, 1e-12), "{q:?}");
        }
        // Monotone in the p-values and capped at 1.
        let q = benjamini_hochberg(&[0.9, 0.8]);
        assert_eq!(q, vec![0.9, 0.9]);
    }

    #[test]
    fn shares_of_empty_counts_are_zero() {
        assert_eq!(shares(&[0, 0]), vec![0.0, 0.0]);
        assert_eq!(shares(&[1, 3]), vec![0.25, 0.75]);
    }
}
