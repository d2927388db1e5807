//! The drift reference profile stored in every artifact's manifest.
//!
//! Numeric features are binned on reference quantiles: edges
//! `[min, q1, …, q(k-1), max]` give `k` inner bins plus an underflow bin
//! (`x < min`) and an overflow bin (`x > max`), so values outside the
//! training range are seen as such. Categorical features keep each
//! category's share plus an unseen bucket.

use serde::{Deserialize, Serialize};

use super::calibrate::Calibration;

/// Default number of inner quantile bins for numeric features.
pub const DEFAULT_BINS: usize = 10;

/// Why a profile could not be fitted.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ProfileError {
    #[error("feature `{0}`: no values to fit a reference profile on")]
    Empty(String),
    #[error("feature `{0}`: non-finite value in reference data")]
    NonFinite(String),
    #[error("feature `{feature}`: {reason}")]
    Invalid { feature: String, reason: String },
}

/// Reference distribution of one numeric feature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NumericProfile {
    /// Strictly increasing bin edges `[min, q1, …, max]`.
    pub edges: Vec<f64>,
    /// Reference share of each bin: `[underflow, inner…, overflow]`, summing to 1.
    pub shares: Vec<f64>,
    pub mean: f64,
    pub std: f64,
    /// Reference row count.
    pub count: u64,
}

/// Reference distribution of one categorical feature (or class predictions).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CategoricalProfile {
    /// Known categories in a stable order.
    pub categories: Vec<String>,
    /// Share of each category, then the unseen bucket (0 in the reference).
    pub shares: Vec<f64>,
    pub count: u64,
}

/// Reference distribution of one column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum FeatureProfile {
    Numeric {
        name: String,
        profile: NumericProfile,
    },
    Categorical {
        name: String,
        profile: CategoricalProfile,
    },
}

impl FeatureProfile {
    /// The column's name.
    pub fn name(&self) -> &str {
        match self {
            FeatureProfile::Numeric { name, .. } | FeatureProfile::Categorical { name, .. } => name,
        }
    }

    /// Number of sketch bins (including under/overflow or unseen).
    pub fn bin_count(&self) -> usize {
        match self {
            FeatureProfile::Numeric { profile, .. } => profile.shares.len(),
            FeatureProfile::Categorical { profile, .. } => profile.shares.len(),
        }
    }
}

/// How much the model relies on one feature: the increase of the
/// validation loss when that feature's values are shuffled across rows
/// (permutation importance), measured at training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FeatureImportance {
    pub name: String,
    /// Validation loss with the feature shuffled minus the loss without (≥ 0).
    pub loss_increase: f64,
    /// Its share of all features' loss increase: the weight the `weighted`
    /// drift trigger gives the feature.
    pub weight: f64,
}

/// Everything drift monitoring compares live traffic with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReferenceProfile {
    /// One profile per input feature, in the model's feature order.
    pub features: Vec<FeatureProfile>,
    /// Distribution of the model's predictions on the reference rows.
    pub prediction: FeatureProfile,
    /// Null distributions of the statistics, for `threshold: auto`; absent
    /// in artifacts trained before calibration (they get the fixed default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<Calibration>,
    /// Permutation importance per feature, in the features' order; absent
    /// in older artifacts (every feature then weighs the same).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub importance: Vec<FeatureImportance>,
    /// Image models: the embedding directions the `embedding direction k`
    /// columns project onto (the other columns are image statistics).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding: Option<super::embedding::EmbeddingProjection>,
}

impl ReferenceProfile {
    /// A profile without calibration or importance.
    pub fn new(features: Vec<FeatureProfile>, prediction: FeatureProfile) -> Self {
        Self {
            features,
            prediction,
            calibration: None,
            importance: Vec::new(),
            embedding: None,
        }
    }

    /// The same bins, calibration, importance and scales, with the shares
    /// another sample was counted into: a live window compared with it says
    /// whether traffic still looks like that sample (the gate's regression
    /// test-set), by the same statistics and thresholds as drift. `None`
    /// when the sketch was counted over other bins, or a feature has no
    /// value in the sample.
    pub fn with_shares_of(&self, sample: &super::sketch::DatasetSketch) -> Option<Self> {
        if sample.features.len() != self.features.len() {
            return None;
        }
        let mut out = self.clone();
        for (profile, sketch) in out.features.iter_mut().zip(&sample.features) {
            let counted: u64 = sketch.counts.iter().sum();
            if sketch.counts.len() != profile.bin_count() || counted == 0 {
                return None;
            }
            let shares = super::stats::shares(&sketch.counts);
            match profile {
                FeatureProfile::Numeric { profile, .. } => {
                    profile.shares = shares;
                    profile.count = counted;
                }
                FeatureProfile::Categorical { profile, .. } => {
                    profile.shares = shares;
                    profile.count = counted;
                }
            }
        }
        Some(out)
    }

    /// The importance weight of feature `j`; 1 (equal) when unknown.
    pub fn weight(&self, j: usize) -> f64 {
        if self.importance.len() != self.features.len() {
            return 1.0;
        }
        self.importance[j].weight
    }
}

impl NumericProfile {
    /// Fits quantile bins on reference values.
    pub fn fit(feature: &str, values: &[f64], bins: usize) -> Result<Self, ProfileError> {
        if values.is_empty() {
            return Err(ProfileError::Empty(feature.to_string()));
        }
        if values.iter().any(|v| !v.is_finite()) {
            return Err(ProfileError::NonFinite(feature.to_string()));
        }
        let bins = bins.max(1);
        let mut sorted = values.to_vec();
        // Unstable is exact here: values equal under `total_cmp` have the same bits.
        sorted.sort_unstable_by(|a, b| a.total_cmp(b));
        let mut edges: Vec<f64> = (0..=bins)
            .map(|i| quantile_sorted(&sorted, i as f64 / bins as f64))
            .collect();
        edges.dedup();
        if edges.len() == 1 {
            // A constant feature: one inner bin [v, v].
            edges.push(edges[0]);
        }
        let mut counts = vec![0u64; edges.len() + 1];
        for &v in values {
            counts[numeric_bin(&edges, v)] += 1;
        }
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        Ok(Self {
            edges,
            shares: counts.iter().map(|&c| c as f64 / n).collect(),
            mean,
            std: var.sqrt(),
            count: values.len() as u64,
        })
    }

    /// Sketch bin of a value: 0 = underflow, last = overflow.
    pub fn bin(&self, x: f64) -> usize {
        numeric_bin(&self.edges, x)
    }
}

/// Bin of `x` for edges `[e0, …, ek]`: 0 for `x < e0`, `i` for `x` in
/// `[e(i-1), e(i))`, the last inner bin includes `ek`, `k + 1` for `x > ek`.
/// NaN falls into the overflow bin so it is never silently dropped.
pub fn numeric_bin(edges: &[f64], x: f64) -> usize {
    let k = edges.len() - 1;
    if x.is_nan() || x > edges[k] {
        return k + 1;
    }
    if x < edges[0] {
        return 0;
    }
    if k == 0 || x == edges[k] {
        return k.max(1);
    }
    // The first edge strictly greater than x gives the bin: the number of
    // edges at or below x. For the usual few bins that count is taken
    // without branches (the compiler vectorises it); a binary search's
    // branches mispredict on every other value, and the data check bins
    // every value of a training window.
    if edges.len() <= LINEAR_EDGES {
        edges.iter().map(|e| usize::from(*e <= x)).sum()
    } else {
        edges.partition_point(|e| *e <= x)
    }
}

/// Up to this many edges a bin is found by counting, beyond by bisection.
const LINEAR_EDGES: usize = 32;

fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    // Linear interpolation between order statistics (numpy's default).
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let frac = pos - lo as f64;
    sorted[lo] + (sorted[hi] - sorted[lo]) * frac
}

impl CategoricalProfile {
    /// Fits category shares; categories are ordered by name for stability.
    pub fn fit<S: AsRef<str>>(feature: &str, values: &[S]) -> Result<Self, ProfileError> {
        if values.is_empty() {
            return Err(ProfileError::Empty(feature.to_string()));
        }
        let mut counts = std::collections::BTreeMap::<&str, u64>::new();
        for v in values {
            *counts.entry(v.as_ref()).or_default() += 1;
        }
        let n = values.len() as f64;
        let categories: Vec<String> = counts.keys().map(|k| k.to_string()).collect();
        let mut shares: Vec<f64> = counts.values().map(|&c| c as f64 / n).collect();
        shares.push(0.0);
        Ok(Self {
            categories,
            shares,
            count: values.len() as u64,
        })
    }

    /// Sketch bin of a category; unknown ones go to the unseen bucket (last).
    pub fn bin(&self, value: &str) -> usize {
        self.categories
            .iter()
            .position(|c| c == value)
            .unwrap_or(self.categories.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Counting and bisection find the same bin, either side of
        /// `LINEAR_EDGES`, for values inside, on, and outside the edges.
        #[test]
        fn the_counted_bin_is_the_bisected_bin(
            raw in proptest::collection::vec(-1e3f64..1e3, 1..80),
            x in -1.2e3f64..1.2e3,
            on_edge in proptest::prelude::any::<proptest::sample::Index>(),
        ) {
            let mut edges = raw;
            edges.sort_by(f64::total_cmp);
            edges.dedup();
            let bisected = |x: f64| {
                let k = edges.len() - 1;
                if x.is_nan() || x > edges[k] {
                    k + 1
                } else if x < edges[0] {
                    0
                } else if k == 0 || x == edges[k] {
                    k.max(1)
                } else {
                    edges.partition_point(|e| *e <= x)
                }
            };
            for x in [x, edges[on_edge.index(edges.len())], f64::NAN] {
                proptest::prop_assert_eq!(numeric_bin(&edges, x), bisected(x));
            }
        }
    }

    #[test]
    fn quantile_bins_split_the_reference_evenly() {
        let values: Vec<f64> = (0..1000).map(|i| i as f64).collect();
        let p = NumericProfile::fit("x", &values, 10).unwrap();
        assert_eq!(p.edges.len(), 11);
        assert_eq!(p.shares.len(), 12);
        assert_eq!(p.shares[0], 0.0);
        assert_eq!(p.shares[11], 0.0);
        for s in &p.shares[1..11] {
            assert!((s - 0.1).abs() < 0.002, "{s}");
        }
        assert!((p.shares.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn values_outside_the_training_range_land_in_under_and_overflow() {
        let p = NumericProfile::fit("x", &[1.0, 2.0, 3.0, 4.0], 2).unwrap();
        assert_eq!(p.bin(0.5), 0);
        assert_eq!(p.bin(1.0), 1);
        assert_eq!(p.bin(4.0), p.edges.len() - 1);
        assert_eq!(p.bin(4.5), p.edges.len());
        assert_eq!(p.bin(f64::NAN), p.edges.len());
    }

    #[test]
    fn constant_features_still_get_a_bin() {
        let p = NumericProfile::fit("c", &[5.0; 10], 10).unwrap();
        assert_eq!(p.bin(5.0), 1);
        assert_eq!(p.shares[1], 1.0);
        assert_eq!(p.bin(6.0), 2);
    }

    #[test]
    fn categories_have_an_unseen_bucket() {
        let p = CategoricalProfile::fit("color", &["red", "white", "red", "red"]).unwrap();
        assert_eq!(p.categories, vec!["red", "white"]);
        assert_eq!(p.shares, vec![0.75, 0.25, 0.0]);
        assert_eq!(p.bin("rosé"), 2);
    }

    #[test]
    fn empty_or_non_finite_reference_is_refused() {
        assert_eq!(
            NumericProfile::fit("x", &[], 10),
            Err(ProfileError::Empty("x".into()))
        );
        assert_eq!(
            NumericProfile::fit("x", &[1.0, f64::INFINITY], 10),
            Err(ProfileError::NonFinite("x".into()))
        );
    }

    #[test]
    fn a_sample_counted_over_the_bins_becomes_a_reference_of_its_own() {
        use crate::drift::{DatasetSketch, Observation};
        let values: Vec<f64> = (0..1000).map(|i| i as f64).collect();
        let x = FeatureProfile::Numeric {
            name: "x".into(),
            profile: NumericProfile::fit("x", &values, 4).unwrap(),
        };
        let c = FeatureProfile::Categorical {
            name: "c".into(),
            profile: CategoricalProfile::fit("c", &["a", "b"]).unwrap(),
        };
        let reference = ReferenceProfile::new(vec![x, c.clone()], c);
        // A sample that only has high x and category b.
        let mut sample = DatasetSketch::for_profile(&reference);
        for _ in 0..10 {
            sample.observe_row(
                &reference,
                |j| {
                    if j == 0 {
                        Observation::Number(900.0)
                    } else {
                        Observation::Text("b")
                    }
                },
                Observation::Text("b"),
            );
        }
        let own = reference.with_shares_of(&sample).expect("same bins");
        let FeatureProfile::Numeric { profile, .. } = &own.features[0] else {
            panic!("numeric")
        };
        assert_eq!(profile.shares, vec![0.0, 0.0, 0.0, 0.0, 1.0, 0.0]);
        assert_eq!(profile.count, 10);
        let FeatureProfile::Categorical { profile, .. } = &own.features[1] else {
            panic!("categorical")
        };
        assert_eq!(profile.shares, vec![0.0, 1.0, 0.0]);
        // The bins, scales and calibration are the reference's own.
        let (
            FeatureProfile::Numeric { profile: a, .. },
            FeatureProfile::Numeric { profile: b, .. },
        ) = (&own.features[0], &reference.features[0])
        else {
            panic!("numeric")
        };
        assert_eq!((&a.edges, a.std), (&b.edges, b.std));
        // Counted over other bins, or with a feature never seen: no reference.
        let mut other = sample.clone();
        other.features.pop();
        assert!(reference.with_shares_of(&other).is_none());
        let mut empty = sample;
        empty.features[1].counts.iter_mut().for_each(|c| *c = 0);
        assert!(reference.with_shares_of(&empty).is_none());
    }
}
