//! Mergeable count sketches keyed to a reference profile's bins.
//!
//! A sketch is a vector of counts, one per profile bin (numeric: underflow,
//! quantile bins, overflow; categorical: categories then unseen), plus a
//! count of missing values. Memory is O(features × bins) regardless of
//! traffic, and two sketches over the same profile merge by adding counts,
//! so the operator can combine the sketches of several replicas.

use serde::{Deserialize, Serialize};

use super::confidence::ConfidenceTally;
use super::profile::{FeatureProfile, ReferenceProfile};

/// Why two sketches could not be merged.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SketchError {
    #[error("cannot merge sketches of different columns: `{left}` and `{right}`")]
    ColumnMismatch { left: String, right: String },
    #[error(
        "cannot merge sketches of column `{column}`: {left} bins vs {right} bins (different reference profiles?)"
    )]
    BinMismatch {
        column: String,
        left: usize,
        right: usize,
    },
    #[error("cannot merge dataset sketches with {left} and {right} features")]
    FeatureCountMismatch { left: usize, right: usize },
}

/// One value of one column, as the sketch sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Observation<'a> {
    Number(f64),
    Text(&'a str),
    Missing,
}

/// The profile bin a value falls in; `None` for a missing value or text
/// that is no number in a numeric column. The one binning rule of sketches
/// and of everything that asks where a single row lies.
pub fn bin_of(profile: &FeatureProfile, value: Observation<'_>) -> Option<usize> {
    match (profile, value) {
        (_, Observation::Missing) => None,
        (FeatureProfile::Numeric { profile, .. }, Observation::Number(x)) => Some(profile.bin(x)),
        (FeatureProfile::Numeric { profile, .. }, Observation::Text(t)) => {
            t.trim().parse::<f64>().ok().map(|x| profile.bin(x))
        }
        (FeatureProfile::Categorical { profile, .. }, Observation::Text(t)) => Some(profile.bin(t)),
        (FeatureProfile::Categorical { profile, .. }, Observation::Number(x)) => {
            Some(profile.bin(&number_as_category(x)))
        }
    }
}

/// Counts of one column's values per reference bin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ColumnSketch {
    /// The column's name.
    pub name: String,
    /// One count per profile bin.
    pub counts: Vec<u64>,
    /// Values that were missing (not counted in any bin).
    pub missing: u64,
}

impl ColumnSketch {
    /// An empty sketch with the profile's bins.
    pub fn for_profile(profile: &FeatureProfile) -> Self {
        Self {
            name: profile.name().to_string(),
            counts: vec![0; profile.bin_count()],
            missing: 0,
        }
    }

    /// Counts one value into its bin.
    pub fn observe(&mut self, profile: &FeatureProfile, value: Observation<'_>) {
        match bin_of(profile, value).and_then(|b| self.counts.get_mut(b)) {
            Some(count) => *count += 1,
            None => self.missing += 1,
        }
    }

    /// Values counted in bins (missing ones excluded).
    pub fn rows(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Adds another sketch of the same column over the same bins.
    pub fn merge(&mut self, other: &ColumnSketch) -> Result<(), SketchError> {
        if self.name != other.name {
            return Err(SketchError::ColumnMismatch {
                left: self.name.clone(),
                right: other.name.clone(),
            });
        }
        if self.counts.len() != other.counts.len() {
            return Err(SketchError::BinMismatch {
                column: self.name.clone(),
                left: self.counts.len(),
                right: other.counts.len(),
            });
        }
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.missing += other.missing;
        Ok(())
    }

    /// Forgets every count.
    pub fn clear(&mut self) {
        self.counts.iter_mut().for_each(|c| *c = 0);
        self.missing = 0;
    }

    /// What was counted after `earlier`, an older state of this same sketch;
    /// `None` when `earlier` is not one (another column or bins, or a count
    /// that went down).
    pub fn since(&self, earlier: &ColumnSketch) -> Option<ColumnSketch> {
        if self.name != earlier.name || self.counts.len() != earlier.counts.len() {
            return None;
        }
        let counts = self
            .counts
            .iter()
            .zip(&earlier.counts)
            .map(|(now, then)| now.checked_sub(*then))
            .collect::<Option<Vec<u64>>>()?;
        Some(ColumnSketch {
            name: self.name.clone(),
            counts,
            missing: self.missing.checked_sub(earlier.missing)?,
        })
    }
}

/// Renders a number the way a category label written as a number reads
/// (`3.0` → `"3"`), so numeric class labels find their category.
pub fn number_as_category(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

/// Sketches of every input feature and of the predictions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DatasetSketch {
    /// Rows observed.
    pub rows: u64,
    /// One sketch per feature, in the profile's feature order.
    pub features: Vec<ColumnSketch>,
    /// Sketch of the model's predictions.
    pub prediction: ColumnSketch,
    /// Classifiers: the top-class probability of the same rows, whose mean
    /// is the window's estimated accuracy (kept here so that it is windowed
    /// and merged exactly as the drift counts are).
    #[serde(default, skip_serializing_if = "ConfidenceTally::is_empty")]
    pub confidence: ConfidenceTally,
}

impl DatasetSketch {
    /// An empty sketch with the profile's bins.
    pub fn for_profile(profile: &ReferenceProfile) -> Self {
        Self {
            rows: 0,
            features: profile
                .features
                .iter()
                .map(ColumnSketch::for_profile)
                .collect(),
            prediction: ColumnSketch::for_profile(&profile.prediction),
            confidence: ConfidenceTally::default(),
        }
    }

    /// Counts one row: `feature(j)` gives the value of feature `j`.
    pub fn observe_row<'a>(
        &mut self,
        profile: &ReferenceProfile,
        feature: impl Fn(usize) -> Observation<'a>,
        prediction: Observation<'a>,
    ) {
        for (j, (sketch, p)) in self.features.iter_mut().zip(&profile.features).enumerate() {
            sketch.observe(p, feature(j));
        }
        self.prediction.observe(&profile.prediction, prediction);
        self.rows += 1;
    }

    /// Adds another sketch over the same profile (for example another replica's).
    pub fn merge(&mut self, other: &DatasetSketch) -> Result<(), SketchError> {
        if self.features.len() != other.features.len() {
            return Err(SketchError::FeatureCountMismatch {
                left: self.features.len(),
                right: other.features.len(),
            });
        }
        // Check everything before changing anything, so a failed merge leaves `self` intact.
        for (a, b) in self
            .features
            .iter()
            .zip(&other.features)
            .chain([(&self.prediction, &other.prediction)])
        {
            if a.name != b.name {
                return Err(SketchError::ColumnMismatch {
                    left: a.name.clone(),
                    right: b.name.clone(),
                });
            }
            if a.counts.len() != b.counts.len() {
                return Err(SketchError::BinMismatch {
                    column: a.name.clone(),
                    left: a.counts.len(),
                    right: b.counts.len(),
                });
            }
        }
        for (a, b) in self.features.iter_mut().zip(&other.features) {
            a.merge(b)?;
        }
        self.prediction.merge(&other.prediction)?;
        self.confidence.merge(&other.confidence);
        self.rows += other.rows;
        Ok(())
    }

    /// Forgets every count.
    pub fn clear(&mut self) {
        self.features.iter_mut().for_each(ColumnSketch::clear);
        self.prediction.clear();
        self.confidence = ConfidenceTally::default();
        self.rows = 0;
    }

    /// What was counted after `earlier`, an older state of this same
    /// sketch (a running total read twice); `None` when `earlier` is not one
    /// (other columns or bins, or any count lower than before, as after a
    /// restart).
    pub fn since(&self, earlier: &DatasetSketch) -> Option<DatasetSketch> {
        if self.features.len() != earlier.features.len() {
            return None;
        }
        Some(DatasetSketch {
            rows: self.rows.checked_sub(earlier.rows)?,
            features: self
                .features
                .iter()
                .zip(&earlier.features)
                .map(|(now, then)| now.since(then))
                .collect::<Option<Vec<_>>>()?,
            prediction: self.prediction.since(&earlier.prediction)?,
            confidence: self.confidence.since(&earlier.confidence)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drift::profile::{CategoricalProfile, NumericProfile};

    fn profile() -> ReferenceProfile {
        let xs: Vec<f64> = (0..100).map(|i| i as f64).collect();
        ReferenceProfile {
            features: vec![
                FeatureProfile::Numeric {
                    name: "x".into(),
                    profile: NumericProfile::fit("x", &xs, 4).unwrap(),
                },
                FeatureProfile::Categorical {
                    name: "color".into(),
                    profile: CategoricalProfile::fit("color", &["red", "white"]).unwrap(),
                },
            ],
            prediction: FeatureProfile::Categorical {
                name: "prediction".into(),
                profile: CategoricalProfile::fit("prediction", &["0", "1"]).unwrap(),
            },
            calibration: None,
            importance: Vec::new(),
            embedding: None,
        }
    }

    #[test]
    fn the_confidence_tally_is_merged_subtracted_and_cleared_with_the_sketch() {
        let p = profile();
        let mut a = DatasetSketch::for_profile(&p);
        a.confidence.observe(0.8);
        let before = a.clone();
        a.confidence.observe(0.6);
        let delta = a.since(&before).expect("a later read");
        assert_eq!(delta.confidence.rows, 1);
        let mut merged = before.clone();
        merged.merge(&delta).unwrap();
        assert_eq!(
            merged, a,
            "the earlier read and the delta add up to the later read"
        );
        // A sketch written before the tally existed reads as an empty one.
        let mut json = serde_json::to_value(&before).unwrap();
        json.as_object_mut().unwrap().remove("confidence");
        let old: DatasetSketch = serde_json::from_value(json).unwrap();
        assert!(old.confidence.is_empty());
        a.clear();
        assert!(a.confidence.is_empty());
    }

    #[test]
    fn values_land_in_their_profile_bins() {
        let p = profile();
        let mut s = DatasetSketch::for_profile(&p);
        s.observe_row(
            &p,
            |j| [Observation::Number(-5.0), Observation::Text("rosé")][j],
            Observation::Number(1.0),
        );
        s.observe_row(
            &p,
            |j| [Observation::Missing, Observation::Text("red")][j],
            Observation::Text("0"),
        );
        assert_eq!(s.rows, 2);
        assert_eq!(s.features[0].counts[0], 1, "underflow");
        assert_eq!(s.features[0].missing, 1);
        assert_eq!(s.features[1].counts, vec![1, 0, 1], "red, white, unseen");
        assert_eq!(
            s.prediction.counts,
            vec![1, 1, 0],
            "numeric class 1.0 is category `1`"
        );
    }

    #[test]
    fn merging_sketches_of_different_profiles_is_refused_and_leaves_them_intact() {
        let p = profile();
        let mut a = DatasetSketch::for_profile(&p);
        a.observe_row(&p, |_| Observation::Number(3.0), Observation::Text("1"));
        let before = a.clone();
        let mut b = a.clone();
        b.prediction.counts.push(0);
        assert!(matches!(a.merge(&b), Err(SketchError::BinMismatch { .. })));
        assert_eq!(a, before);
    }
}
