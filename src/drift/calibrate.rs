//! Calibrated thresholds: each column's null distribution of every drift
//! statistic, estimated at training time and stored in the drift profile.
//!
//! A fixed threshold such as JS 0.1 is too low for small windows (a
//! 500-row window of training-like rows reads 0.04–0.11) and too high for
//! large ones. So training measures, per column and window size, what the
//! statistic reads when nothing drifted: it draws a reference of the
//! training split's size and a window of `n` rows, both from the same
//! pooled bin shares of the training and held-out rows, and computes every
//! statistic, [`DEFAULT_RESAMPLES`] times. Redrawing the reference too puts
//! the reference's own sampling error into the null, as it is in live
//! traffic.
//!
//! The far tail (a 1 − 0.01/11 quantile) cannot be read off a few hundred
//! resamples, so each null is summarised by a scaled chi-square fitted by
//! its mean and variance (Satterthwaite): a squared distance (JS, KS,
//! Wasserstein) or a divergence (PSI) of two samples of one distribution
//! is close to a weighted sum of chi-squares. The empirical 99th percentile
//! is stored beside it as a check.
//!
//! The model's predictions are the exception to the pooling. A model
//! answers the rows it trained on better than unseen ones, so on live
//! traffic its predictions differ from the reference (its answers on the
//! training split) even when nothing drifted; pooling the two would place
//! the null around a difference it never sees. Their null compares the
//! reference as it is with windows drawn from the held-out rows' shares,
//! themselves redrawn at the held-out size each resample, which puts the
//! held-out estimate's own sampling error into the null.
//!
//! Windows of another size (time-closed windows, a changed `window`): the
//! fitted scale shrinks like `1/n + 1/T`, so scale and degrees of freedom
//! are interpolated linearly in `1/n` between the stored sizes (a quantile
//! of a distance then moves about linearly in `1/sqrt(n)`); below the
//! smallest size the scale is extrapolated in `1/n`, above the largest the
//! largest size's fit is used (a slightly high, so conservative, threshold).

use rand::Rng;
use rand_distr::{Binomial, Distribution};
use serde::{Deserialize, Serialize};

use crate::api::DriftStatistic;

use super::monitor::statistic_value;
use super::profile::{FeatureProfile, ReferenceProfile};
use super::sketch::DatasetSketch;
use super::stats;

/// Resampled (reference, window) pairs per column and window size.
pub const DEFAULT_RESAMPLES: usize = 400;
/// Window sizes calibrated besides the Model's own `drift.window`.
pub const WINDOW_LADDER: [u64; 5] = [100, 300, 1_000, 3_000, 10_000];

/// A statistic's null distribution at one window size: `g ≈ scale · χ²(dof)`
/// where `g` is the squared value for distances and the value itself for PSI.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NullFit {
    pub scale: f64,
    pub dof: f64,
    /// Empirical 99th percentile of the statistic over the resamples.
    pub q99: f64,
}

impl NullFit {
    /// The statistic's value exceeded with probability `tail` when nothing drifted.
    pub fn quantile(&self, statistic: DriftStatistic, tail: f64) -> f64 {
        if self.scale <= 0.0 {
            return 0.0;
        }
        from_g(
            statistic,
            self.scale * stats::chi_square_upper_quantile(tail, self.dof),
        )
    }

    /// Probability of a value at least this large when nothing drifted.
    pub fn p_value(&self, statistic: DriftStatistic, value: f64) -> f64 {
        if self.scale <= 0.0 {
            return if value > 0.0 { 0.0 } else { 1.0 };
        }
        stats::chi_square_survival(to_g(statistic, value) / self.scale, self.dof)
    }
}

/// PSI is a divergence; the others are distances, whose squares behave like divergences.
fn to_g(statistic: DriftStatistic, value: f64) -> f64 {
    match statistic {
        DriftStatistic::Psi => value,
        _ => value * value,
    }
}

fn from_g(statistic: DriftStatistic, g: f64) -> f64 {
    match statistic {
        DriftStatistic::Psi => g,
        _ => g.max(0.0).sqrt(),
    }
}

/// Null fits of one column at one window size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WindowNull {
    pub rows: u64,
    pub jensen_shannon: NullFit,
    pub psi: NullFit,
    /// Numeric columns only; categorical columns are judged by Jensen-Shannon instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ks: Option<NullFit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wasserstein: Option<NullFit>,
}

impl WindowNull {
    fn fit(&self, statistic: DriftStatistic) -> NullFit {
        match (statistic, self.ks, self.wasserstein) {
            (DriftStatistic::Psi, _, _) => self.psi,
            (DriftStatistic::Ks, Some(f), _) | (DriftStatistic::Wasserstein, _, Some(f)) => f,
            _ => self.jensen_shannon,
        }
    }
}

/// Null fits of one column, by increasing window size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ColumnNull {
    pub name: String,
    pub windows: Vec<WindowNull>,
}

impl ColumnNull {
    /// The null of `statistic` for a window of `rows` rows (see the module
    /// doc for sizes between and beyond the stored ones).
    pub fn fit_at(&self, statistic: DriftStatistic, rows: u64) -> Option<NullFit> {
        let sizes = &self.windows;
        let first = sizes.first()?;
        let rows = rows.max(1);
        let inv = |n: u64| 1.0 / n as f64;
        let blend = |a: &WindowNull, b: &WindowNull| {
            let (fa, fb) = (a.fit(statistic), b.fit(statistic));
            let t = (inv(rows) - inv(a.rows)) / (inv(b.rows) - inv(a.rows));
            NullFit {
                scale: (fa.scale + t * (fb.scale - fa.scale)).max(0.0),
                dof: if rows < a.rows {
                    fa.dof
                } else {
                    (fa.dof + t * (fb.dof - fa.dof)).max(0.1)
                },
                q99: fa.q99 + t * (fb.q99 - fa.q99),
            }
        };
        if let Some(exact) = sizes.iter().find(|w| w.rows == rows) {
            return Some(exact.fit(statistic));
        }
        if rows < first.rows {
            return Some(match sizes.get(1) {
                Some(second) => blend(first, second),
                None => first.fit(statistic),
            });
        }
        match sizes
            .windows(2)
            .find(|p| p[0].rows < rows && rows < p[1].rows)
        {
            Some(pair) => Some(blend(&pair[0], &pair[1])),
            None => sizes.last().map(|w| w.fit(statistic)),
        }
    }
}

/// Every column's null, as stored in the drift profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Calibration {
    /// Resampled pairs behind each fit.
    pub resamples: u32,
    /// Rows the pooled shares were drawn from (training split plus held-out rows).
    pub pooled_rows: u64,
    /// One per feature, in the profile's order.
    pub features: Vec<ColumnNull>,
    pub prediction: ColumnNull,
}

/// Fits the nulls of every column of `profile` at the ladder sizes plus
/// `extra_windows`, from the training split (the profile) pooled with
/// `held_out` (the validation rows' counts over the profile's bins).
pub fn calibrate(
    profile: &ReferenceProfile,
    held_out: &DatasetSketch,
    extra_windows: &[u64],
    resamples: usize,
    rng: &mut impl Rng,
) -> Calibration {
    let mut sizes: Vec<u64> = WINDOW_LADDER
        .iter()
        .chain(extra_windows)
        .copied()
        .filter(|&n| n > 0)
        .collect();
    sizes.sort_unstable();
    sizes.dedup();
    let mut column = |p: &FeatureProfile, counts: &[u64], null: Null| {
        column_null(p, counts, null, &sizes, resamples, rng)
    };
    let features = profile
        .features
        .iter()
        .zip(&held_out.features)
        .map(|(p, s)| column(p, &s.counts, Null::Pooled))
        .collect();
    let prediction = column(
        &profile.prediction,
        &held_out.prediction.counts,
        Null::Unseen,
    );
    let (reference_rows, _) = reference_of(&profile.prediction);
    Calibration {
        resamples: resamples as u32,
        pooled_rows: reference_rows + held_out.prediction.rows(),
        features,
        prediction,
    }
}

fn reference_of(profile: &FeatureProfile) -> (u64, &[f64]) {
    match profile {
        FeatureProfile::Numeric { profile, .. } => (profile.count, &profile.shares),
        FeatureProfile::Categorical { profile, .. } => (profile.count, &profile.shares),
    }
}

/// What a column's null draws its reference and windows from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Null {
    /// Both from the training and held-out rows pooled: an input column,
    /// distributed alike in both.
    Pooled,
    /// The reference as it is, windows from the held-out rows' shares
    /// redrawn at the held-out size: the model's predictions, which differ
    /// between the rows it trained on and unseen ones.
    Unseen,
}

fn column_null(
    profile: &FeatureProfile,
    held_out: &[u64],
    null: Null,
    sizes: &[u64],
    resamples: usize,
    rng: &mut impl Rng,
) -> ColumnNull {
    let (reference_rows, shares) = reference_of(profile);
    let held_rows: u64 = held_out.iter().sum();
    // Without held-out rows there is no unseen estimate: pool, as for inputs.
    let null = if held_rows == 0 { Null::Pooled } else { null };
    let counts = held_out.iter().chain(std::iter::repeat(&0));
    let pooled: Vec<f64> = match null {
        Null::Pooled => shares
            .iter()
            .zip(counts)
            .map(|(s, &c)| s * reference_rows as f64 + c as f64)
            .collect(),
        Null::Unseen => shares.iter().zip(counts).map(|(_, &c)| c as f64).collect(),
    };
    let total: f64 = pooled.iter().sum();
    let pooled: Vec<f64> = pooled.iter().map(|c| c / total.max(1.0)).collect();
    let numeric = matches!(profile, FeatureProfile::Numeric { .. });
    // values[size][statistic]: one reference draw serves every window size
    // of a resample, which halves the draws and keeps the sizes' fits consistent.
    let mut values: Vec<[Vec<f64>; 4]> = sizes.iter().map(|_| Default::default()).collect();
    for _ in 0..resamples {
        // Pooled: a fresh reference, windows from the pool. Unseen: the
        // reference as it is, windows from redrawn held-out shares.
        let drawn = match null {
            Null::Pooled => multinomial(reference_rows, &pooled, rng),
            Null::Unseen => multinomial(held_rows, &pooled, rng),
        };
        let drawn = stats::shares(&drawn);
        let (reference, source) = match null {
            Null::Pooled => (drawn.as_slice(), pooled.as_slice()),
            Null::Unseen => (shares, drawn.as_slice()),
        };
        for (&rows, values) in sizes.iter().zip(values.iter_mut()) {
            let window = stats::shares(&multinomial(rows, source, rng));
            for (k, statistic) in STATISTICS.iter().enumerate() {
                values[k].push(statistic_value(profile, reference, &window, *statistic).1);
            }
        }
    }
    let windows = sizes
        .iter()
        .zip(values.iter_mut())
        .map(|(&rows, values)| {
            let [js, psi, ks, w] = [0, 1, 2, 3].map(|k| fit(&mut values[k], STATISTICS[k]));
            WindowNull {
                rows,
                jensen_shannon: js,
                psi,
                ks: numeric.then_some(ks),
                wasserstein: numeric.then_some(w),
            }
        })
        .collect();
    ColumnNull {
        name: profile.name().to_string(),
        windows,
    }
}

const STATISTICS: [DriftStatistic; 4] = [
    DriftStatistic::JensenShannon,
    DriftStatistic::Psi,
    DriftStatistic::Ks,
    DriftStatistic::Wasserstein,
];

/// Scaled chi-square with the resampled `g`'s mean and variance.
fn fit(values: &mut [f64], statistic: DriftStatistic) -> NullFit {
    let n = values.len().max(1) as f64;
    let g: Vec<f64> = values.iter().map(|&v| to_g(statistic, v)).collect();
    let mean = g.iter().sum::<f64>() / n;
    let var = g.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    values.sort_unstable_by(f64::total_cmp);
    let q99 = values
        .get(((values.len() as f64 * 0.99).ceil() as usize).saturating_sub(1))
        .copied()
        .unwrap_or(0.0);
    if mean.is_nan() || var.is_nan() || mean <= 0.0 || var <= 0.0 {
        // Nothing ever moved (a constant column): any change is drift.
        return NullFit {
            scale: 0.0,
            dof: 1.0,
            q99,
        };
    }
    NullFit {
        scale: var / (2.0 * mean),
        dof: 2.0 * mean * mean / var,
        q99,
    }
}

/// Counts of `rows` draws over categories with probabilities `p`, by a
/// binomial per category on what is left (exact, and O(categories) rather
/// than O(rows)).
fn multinomial(rows: u64, p: &[f64], rng: &mut impl Rng) -> Vec<u64> {
    let mut left = rows;
    let mut mass = 1.0f64;
    p.iter()
        .map(|&pi| {
            if left == 0 || pi <= 0.0 {
                return 0;
            }
            let q = (pi / mass).clamp(0.0, 1.0);
            mass -= pi;
            let k = Binomial::new(left, q).map_or(0, |b| b.sample(rng));
            left -= k;
            k
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drift::profile::{CategoricalProfile, NumericProfile};
    use crate::drift::sketch::Observation;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn normal(rng: &mut ChaCha8Rng) -> f64 {
        let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
        let u2: f64 = rng.random();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    fn profile(rows: usize, rng: &mut ChaCha8Rng) -> ReferenceProfile {
        let xs: Vec<f64> = (0..rows).map(|_| normal(rng)).collect();
        let colors: Vec<&str> = (0..rows)
            .map(|_| {
                if rng.random::<f64>() < 0.7 {
                    "red"
                } else {
                    "white"
                }
            })
            .collect();
        ReferenceProfile::new(
            vec![
                FeatureProfile::Numeric {
                    name: "x".into(),
                    profile: NumericProfile::fit("x", &xs, 10).unwrap(),
                },
                FeatureProfile::Categorical {
                    name: "color".into(),
                    profile: CategoricalProfile::fit("color", &colors).unwrap(),
                },
            ],
            FeatureProfile::Categorical {
                name: "y".into(),
                profile: CategoricalProfile::fit("y", &colors).unwrap(),
            },
        )
    }

    #[test]
    fn multinomial_draws_keep_the_row_count_and_the_shares() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let p = [0.5, 0.0, 0.3, 0.2];
        let mut total = [0u64; 4];
        for _ in 0..200 {
            let c = multinomial(1000, &p, &mut rng);
            assert_eq!(c.iter().sum::<u64>(), 1000);
            assert_eq!(c[1], 0);
            for (t, x) in total.iter_mut().zip(c) {
                *t += x;
            }
        }
        for (t, p) in total.iter().zip(p) {
            assert!((*t as f64 / 200_000.0 - p).abs() < 0.005, "{total:?}");
        }
    }

    /// The fitted tail is where the real null's tail is: checked against
    /// 4 000 fresh windows of the reference's distribution.
    #[test]
    fn the_fitted_tail_matches_fresh_null_windows() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let reference = profile(2_000, &mut rng);
        let held_out = DatasetSketch::for_profile(&reference);
        let calibration = calibrate(&reference, &held_out, &[], DEFAULT_RESAMPLES, &mut rng);
        let x = &calibration.features[0];
        let fit = x.fit_at(DriftStatistic::JensenShannon, 500).unwrap();
        let threshold = fit.quantile(DriftStatistic::JensenShannon, 0.01);
        // Fresh windows of 500 N(0, 1) rows against the stored reference.
        let FeatureProfile::Numeric { profile: p, .. } = &reference.features[0] else {
            unreachable!()
        };
        let mut over = 0;
        let trials = 4_000;
        for _ in 0..trials {
            let mut counts = vec![0u64; p.shares.len()];
            for _ in 0..500 {
                counts[p.bin(normal(&mut rng))] += 1;
            }
            let v = stats::jensen_shannon_distance(&p.shares, &stats::shares(&counts));
            over += usize::from(v > threshold);
        }
        // 1 % expected; the fit must not be off by a factor of 3 either way.
        let rate = over as f64 / trials as f64;
        assert!(
            (0.0033..0.03).contains(&rate),
            "rate {rate} over {threshold}"
        );
        // And the fit's own 99th percentile sits near the resampled one.
        let q99 = fit.quantile(DriftStatistic::JensenShannon, 0.01);
        assert!((q99 / fit.q99 - 1.0).abs() < 0.2, "{q99} vs {}", fit.q99);
        // A window 4× larger has a threshold about half as high (1/sqrt(n)), never higher.
        let big = x
            .fit_at(DriftStatistic::JensenShannon, 2_000)
            .unwrap()
            .quantile(DriftStatistic::JensenShannon, 0.01);
        assert!(
            big < threshold && big > 0.4 * threshold,
            "{big} vs {threshold}"
        );
    }

    #[test]
    fn window_sizes_between_and_beyond_the_stored_ones_interpolate_in_one_over_n() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let reference = profile(2_000, &mut rng);
        let held_out = DatasetSketch::for_profile(&reference);
        let c = calibrate(&reference, &held_out, &[750], 200, &mut rng);
        let x = &c.features[0];
        assert!(
            x.windows.iter().any(|w| w.rows == 750),
            "the Model's window is stored"
        );
        let q = |n| {
            x.fit_at(DriftStatistic::Ks, n)
                .unwrap()
                .quantile(DriftStatistic::Ks, 0.001)
        };
        // Monotone: smaller windows need higher thresholds.
        let ladder = [20, 100, 150, 300, 750, 3_000, 10_000, 100_000];
        for pair in ladder.windows(2) {
            assert!(
                q(pair[0]) >= q(pair[1]),
                "{pair:?}: {} < {}",
                q(pair[0]),
                q(pair[1])
            );
        }
        // Beyond the largest stored size the largest fit holds.
        assert_eq!(q(100_000), q(10_000));
        // Categorical columns have no KS: they fall back to Jensen-Shannon.
        let color = &c.features[1];
        assert_eq!(
            color.fit_at(DriftStatistic::Ks, 500),
            color.fit_at(DriftStatistic::JensenShannon, 500)
        );
    }

    /// A model's predictions on unseen rows differ from those on its
    /// training rows (here 62 % against 70 % "red") with nothing drifted:
    /// the predictions' null is drawn around the held-out rows, so windows
    /// of unseen traffic stay under the threshold, which a null pooled with
    /// the training rows' answers would not allow; a real shift still
    /// crosses it.
    #[test]
    fn the_predictions_null_is_drawn_around_unseen_rows() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let reference = profile(2_000, &mut rng);
        let mut held_out = DatasetSketch::for_profile(&reference);
        let unseen = |rng: &mut ChaCha8Rng, red: f64| {
            if rng.random::<f64>() < red {
                "red"
            } else {
                "white"
            }
        };
        for _ in 0..300 {
            let y = unseen(&mut rng, 0.62);
            held_out.observe_row(
                &reference,
                |j| match j {
                    0 => Observation::Number(0.0),
                    _ => Observation::Text("red"),
                },
                Observation::Text(y),
            );
        }
        let calibration = calibrate(&reference, &held_out, &[300], DEFAULT_RESAMPLES, &mut rng);
        let threshold = |null: &ColumnNull| {
            null.fit_at(DriftStatistic::JensenShannon, 300)
                .unwrap()
                .quantile(DriftStatistic::JensenShannon, 0.01)
        };
        let pooled = column_null(
            &reference.prediction,
            &held_out.prediction.counts,
            Null::Pooled,
            &[300],
            DEFAULT_RESAMPLES,
            &mut rng,
        );
        let FeatureProfile::Categorical { profile: p, .. } = &reference.prediction else {
            unreachable!()
        };
        // The share of fresh 300-row windows (red with probability `red`)
        // whose distance to the reference is over `threshold`.
        let mut over = |red: f64, threshold: f64| {
            let trials = 2_000;
            let mut over = 0;
            for _ in 0..trials {
                let counts: Vec<u64> = p
                    .categories
                    .iter()
                    .map(|c| c.as_str())
                    .map(|c| (0..300).filter(|_| unseen(&mut rng, red) == c).count() as u64)
                    .chain([0]) // the bucket of categories the reference never saw
                    .collect();
                let v = stats::jensen_shannon_distance(&p.shares, &stats::shares(&counts));
                over += usize::from(v > threshold);
            }
            over as f64 / trials as f64
        };
        let fitted = threshold(&calibration.prediction);
        let in_distribution = over(0.62, fitted);
        assert!(
            in_distribution < 0.04,
            "unseen traffic flagged {in_distribution}"
        );
        let naive = over(0.62, threshold(&pooled));
        assert!(naive > 0.2, "a pooled null flags unseen traffic {naive}");
        let shifted = over(0.40, fitted);
        assert!(shifted > 0.9, "a real shift flagged only {shifted}");
    }

    #[test]
    fn held_out_rows_join_the_pool_and_a_constant_column_flags_any_change() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let constant = ReferenceProfile::new(
            vec![FeatureProfile::Numeric {
                name: "c".into(),
                profile: NumericProfile::fit("c", &[1.0; 100], 10).unwrap(),
            }],
            FeatureProfile::Numeric {
                name: "y".into(),
                profile: NumericProfile::fit("y", &[1.0; 100], 10).unwrap(),
            },
        );
        let mut held_out = DatasetSketch::for_profile(&constant);
        for _ in 0..50 {
            held_out.observe_row(
                &constant,
                |_| Observation::Number(1.0),
                Observation::Number(1.0),
            );
        }
        let c = calibrate(&constant, &held_out, &[], 50, &mut rng);
        assert_eq!(c.pooled_rows, 150);
        let fit = c.features[0]
            .fit_at(DriftStatistic::JensenShannon, 500)
            .unwrap();
        assert_eq!(fit.quantile(DriftStatistic::JensenShannon, 0.001), 0.0);
        assert_eq!(fit.p_value(DriftStatistic::JensenShannon, 0.01), 0.0);
        assert_eq!(fit.p_value(DriftStatistic::JensenShannon, 0.0), 1.0);
    }
}
