//! Where live traffic holds more than a baseline: for each feature, the
//! bins live rows fall in more often than the baseline's shares say. For a
//! drifted window against the training reference, a served row in such a
//! bin comes from where the traffic moved, which is what the annotation
//! queue wants a label for (its `drifted` reason); against the regression
//! test-set's shares, a labelled row there covers what the test set lacks
//! (`driftline testset suggest`).

use super::monitor::WindowReport;
use super::profile::{FeatureProfile, ReferenceProfile};
use super::sketch::{DatasetSketch, Observation, bin_of};

/// Added to both shares so that a bin the reference never saw gets a
/// large, finite ratio instead of infinity.
const SMOOTHING: f64 = 1e-3;

/// Per drifted feature, the window's share of each bin over the
/// reference's share (a density ratio; above 1: over-represented). Holds
/// its features' reference bins, so rows are scored without the profile.
#[derive(Debug, Clone, PartialEq)]
pub struct DriftRegion {
    features: Vec<RegionFeature>,
}

#[derive(Debug, Clone, PartialEq)]
struct RegionFeature {
    /// Index in the model's features.
    index: usize,
    profile: FeatureProfile,
    /// Per bin, the window's share over the reference's.
    ratios: Vec<f64>,
}

impl DriftRegion {
    /// The region of a window the drift rule judged drifted (`None` for a
    /// window that was not, or where no drifted feature has counts).
    pub fn of_window(profile: &ReferenceProfile, window: &WindowReport) -> Option<Self> {
        if !window.dataset_drifted {
            return None;
        }
        Self::between(profile, &window.sketch, &window.drifted_features)
    }

    /// Where `live` holds more than `base`'s shares, over the named
    /// features (all of them when `features` is empty): the training
    /// reference for a drifted window, or the reference with the regression
    /// test-set's shares (`ReferenceProfile::with_shares_of`) for what the
    /// test set lacks. `None` when no named feature has live counts.
    pub fn between(
        base: &ReferenceProfile,
        live: &DatasetSketch,
        features: &[String],
    ) -> Option<Self> {
        let mut out = Vec::new();
        for (j, profile) in base.features.iter().enumerate() {
            if !features.is_empty() && !features.iter().any(|f| f == profile.name()) {
                continue;
            }
            let (Some(sketch), Some(shares)) = (live.features.get(j), base_shares(profile)) else {
                continue;
            };
            let rows = sketch.rows();
            if rows == 0 || sketch.counts.len() != shares.len() {
                continue;
            }
            let ratios = sketch
                .counts
                .iter()
                .zip(shares)
                .map(|(&c, &r)| (c as f64 / rows as f64 + SMOOTHING) / (r + SMOOTHING))
                .collect();
            out.push(RegionFeature {
                index: j,
                profile: profile.clone(),
                ratios,
            });
        }
        // The caller's order (heaviest drift first), else the model's.
        out.sort_by_key(|f| {
            features
                .iter()
                .position(|n| n == f.profile.name())
                .unwrap_or(f.index)
        });
        (!out.is_empty()).then_some(Self { features: out })
    }

    /// The drifted features, in the window's order (heaviest first).
    pub fn features(&self) -> impl Iterator<Item = &str> {
        self.features.iter().map(|f| f.profile.name())
    }

    /// How far into the moved region a row lies: the largest ratio of its
    /// bins over the drifted features, and that feature; `None` when the row
    /// lies in no over-represented bin. `value(j)` is the row's feature `j`.
    pub fn score<'a>(&self, value: impl Fn(usize) -> Observation<'a>) -> Option<(f64, &str)> {
        self.features
            .iter()
            .filter_map(|f| {
                let bin = bin_of(&f.profile, value(f.index))?;
                let ratio = *f.ratios.get(bin)?;
                (ratio > 1.0).then_some((ratio, f.profile.name()))
            })
            .max_by(|a, b| a.0.total_cmp(&b.0))
    }
}

fn base_shares(profile: &FeatureProfile) -> Option<&[f64]> {
    match profile {
        FeatureProfile::Numeric { profile, .. } => Some(&profile.shares),
        FeatureProfile::Categorical { profile, .. } => Some(&profile.shares),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drift::{CategoricalProfile, DriftConfig, DriftMonitor, NumericProfile};
    use chrono::{TimeZone, Utc};

    fn profile() -> ReferenceProfile {
        let x: Vec<f64> = (0..1000).map(|i| f64::from(i) / 100.0).collect();
        let colors: Vec<&str> = (0..1000)
            .map(|i| if i % 2 == 0 { "red" } else { "white" })
            .collect();
        ReferenceProfile::new(
            vec![
                FeatureProfile::Numeric {
                    name: "x".into(),
                    profile: NumericProfile::fit("x", &x, 10).unwrap(),
                },
                FeatureProfile::Categorical {
                    name: "color".into(),
                    profile: CategoricalProfile::fit("color", &colors).unwrap(),
                },
            ],
            FeatureProfile::Categorical {
                name: "prediction".into(),
                profile: CategoricalProfile::fit("prediction", &["a", "b"]).unwrap(),
            },
        )
    }

    /// Closes one window of `rows` rows of `x(i)` (colors as in the reference).
    fn window(x: impl Fn(u32) -> f64, rows: u32) -> WindowReport {
        let mut config = DriftConfig::default();
        config.spec.window = rows;
        let t = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let mut m = DriftMonitor::new(profile(), config, t).unwrap();
        let xs: Vec<f64> = (0..rows).map(&x).collect();
        let mut closed = m.observe_rows(
            rows as usize,
            |j, i| match j {
                0 => Observation::Number(xs[i]),
                _ => Observation::Text(if i % 2 == 0 { "red" } else { "white" }),
            },
            |i| Observation::Text(if i % 2 == 0 { "a" } else { "b" }),
            |_| None,
            t,
        );
        closed.pop().expect("the window closed")
    }

    #[test]
    fn a_drifted_window_marks_where_traffic_moved_and_rows_there_score_highest() {
        // Half the traffic piles up above the reference's maximum (10).
        let shifted = window(
            |i| {
                if i % 2 == 0 {
                    12.0
                } else {
                    f64::from(i % 100) / 10.0
                }
            },
            500,
        );
        assert!(shifted.dataset_drifted, "{}", shifted.reason);
        let p = profile();
        let region = DriftRegion::of_window(&p, &shifted).expect("a region");
        assert_eq!(region.features().collect::<Vec<_>>(), ["x"]);
        let score = |x: f64| {
            region.score(|j| match j {
                0 => Observation::Number(x),
                _ => Observation::Text("red"),
            })
        };
        let (far, feature) = score(15.0).expect("above the reference range");
        assert_eq!(feature, "x");
        assert!(far > 100.0, "{far}");
        // Inside the range the window holds about as much as the reference: no region.
        assert_eq!(score(5.0), None);
        assert_eq!(region.score(|_| Observation::Missing), None);
    }

    #[test]
    fn a_window_like_the_reference_has_no_region() {
        let calm = window(|i| f64::from(i * 7 % 1000) / 100.0, 500);
        assert!(!calm.dataset_drifted, "{}", calm.reason);
        assert_eq!(DriftRegion::of_window(&profile(), &calm), None);
    }
}
