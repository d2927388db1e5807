//! The drift rule: how the per-column readings of one window add up to
//! "this window drifted", and why.
//!
//! One home: the model server's monitor judges each window it closes with
//! [`window_verdict`], and the decision core judges the windows it scrapes
//! with the same function, so `/v2/models/{name}/drift` and `status.drift`
//! can never disagree about a window.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::api::{DriftTrigger, FeatureDriftOverride};

/// What the rule needs from the configuration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DriftRule<'a> {
    pub trigger: DriftTrigger,
    /// Share of features (`share`) or of importance weight (`weighted`) that makes a window drift.
    pub drifted_share: f64,
    pub features: &'a BTreeMap<String, FeatureDriftOverride>,
}

/// One column of one window, as measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ColumnReading {
    pub name: String,
    /// The configured statistic's value.
    pub value: f64,
    /// The threshold it is compared with (calibrated or fixed), before overrides.
    pub threshold: f64,
    /// The feature's importance to the model (any non-negative scale; the
    /// rule normalises over the counted features). Equal weights make
    /// `weighted` the same as `share`.
    pub weight: f64,
}

/// One column as the rule judged it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ColumnVerdict {
    pub name: String,
    pub value: f64,
    /// The threshold applied (an override's when set).
    pub threshold: f64,
    /// Share of the counted features' importance (0 when ignored; 1 for the predictions).
    pub weight: f64,
    pub drifted: bool,
    /// Excluded by a `ignore` override: reported, never counted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ignored: bool,
}

/// The verdict on one window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Verdict {
    pub drifted: bool,
    /// Every feature, in the input order.
    pub features: Vec<ColumnVerdict>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prediction: Option<ColumnVerdict>,
    /// Counted features over their threshold, heaviest (then most drifted) first.
    pub drifted_features: Vec<String>,
    /// Share of the counted features that drifted.
    pub drifted_share: f64,
    /// Share of the counted features' importance weight that drifted.
    pub drifted_weight: f64,
    /// Why the window did or did not drift, with the numbers.
    pub reason: String,
}

impl Verdict {
    /// The counted features that drifted, in `drifted_features` order.
    pub fn drivers(&self) -> Vec<&ColumnVerdict> {
        self.drifted_features
            .iter()
            .filter_map(|n| self.features.iter().find(|f| &f.name == n))
            .collect()
    }
}

/// Judges one window: each column drifts when its value exceeds its
/// threshold (an override's when set); the trigger decides whether the
/// drifted columns make the window drift.
pub fn window_verdict(
    features: &[ColumnReading],
    prediction: Option<&ColumnReading>,
    rule: &DriftRule<'_>,
) -> Verdict {
    let judge = |r: &ColumnReading| {
        let o = rule.features.get(&r.name);
        let threshold = o.and_then(|o| o.threshold).unwrap_or(r.threshold);
        ColumnVerdict {
            name: r.name.clone(),
            value: r.value,
            threshold,
            weight: 0.0,
            drifted: r.value > threshold,
            ignored: o.is_some_and(|o| o.ignore),
        }
    };
    let mut columns: Vec<ColumnVerdict> = features.iter().map(judge).collect();
    // Weights are shares of the counted features' importance; a model whose
    // importances are all zero (or unknown) weighs its features equally.
    let raw = |r: &ColumnReading| {
        if r.weight.is_finite() && r.weight > 0.0 {
            r.weight
        } else {
            0.0
        }
    };
    let counted = || {
        columns
            .iter()
            .zip(features)
            .filter(|(c, _)| !c.ignored)
            .map(|(_, r)| r)
    };
    let total: f64 = counted().map(raw).sum();
    let n = counted().count();
    let weights: Vec<f64> = columns
        .iter()
        .zip(features)
        .map(|(c, r)| match (c.ignored, total > 0.0) {
            (true, _) => 0.0,
            (false, true) => raw(r) / total,
            (false, false) => 1.0 / n as f64,
        })
        .collect();
    for (c, w) in columns.iter_mut().zip(weights) {
        c.weight = w;
    }
    let prediction = prediction.map(|p| ColumnVerdict {
        weight: 1.0,
        ..judge(p)
    });

    let mut drivers: Vec<&ColumnVerdict> =
        columns.iter().filter(|c| !c.ignored && c.drifted).collect();
    drivers.sort_by(|a, b| {
        b.weight
            .total_cmp(&a.weight)
            .then(b.value.total_cmp(&a.value))
            .then_with(|| a.name.cmp(&b.name))
    });
    let drifted_share = if n == 0 {
        0.0
    } else {
        drivers.len() as f64 / n as f64
    };
    // fold from +0: an empty f64 `sum()` is -0.0, which would print as "-0.00".
    let drifted_weight = drivers.iter().fold(0.0, |total, c| total + c.weight);
    let prediction_drifted = prediction.as_ref().is_some_and(|p| p.drifted);
    let share = rule.drifted_share;
    let any_feature = !drivers.is_empty();
    let (drifted, why) = match rule.trigger {
        DriftTrigger::Weighted => {
            // Rounding must not let 0.4999999 of the weight miss a 0.5 share.
            let by_weight = any_feature && drifted_weight + 1e-9 >= share;
            let cmp = if by_weight { "≥" } else { "<" };
            let mut why = format!("drifted importance weight {drifted_weight:.3} {cmp} {share}");
            if prediction_drifted {
                why.push_str("; the predictions drifted");
            }
            (by_weight || prediction_drifted, why)
        }
        DriftTrigger::Share => {
            let by_share = any_feature && drifted_share + 1e-9 >= share;
            let cmp = if by_share { "≥" } else { "<" };
            (
                by_share,
                format!(
                    "{} of {n} features drifted ({:.0} % {cmp} driftedShare {:.0} %)",
                    drivers.len(),
                    drifted_share * 100.0,
                    share * 100.0
                ),
            )
        }
        DriftTrigger::Any => {
            let why = match (any_feature, prediction_drifted) {
                (true, true) => "features and predictions drifted",
                (true, false) => "a feature drifted",
                (false, true) => "the predictions drifted",
                (false, false) => "no feature and not the predictions drifted",
            };
            (any_feature || prediction_drifted, why.to_string())
        }
    };
    let describe = |c: &ColumnVerdict| {
        format!(
            "{} (weight {:.2}, {:.3} > {:.3})",
            c.name, c.weight, c.value, c.threshold
        )
    };
    let mut listed: Vec<String> = drivers.iter().map(|c| describe(c)).collect();
    if let Some(p) = prediction.as_ref().filter(|p| p.drifted) {
        listed.push(format!(
            "predictions `{}` ({:.3} > {:.3})",
            p.name, p.value, p.threshold
        ));
    }
    let reason = format!(
        "{} by trigger {}: {why}; drifted: {}",
        if drifted { "drifted" } else { "not drifted" },
        rule.trigger,
        if listed.is_empty() {
            "none".to_string()
        } else {
            listed.join(", ")
        }
    );
    let drifted_features = drivers.iter().map(|c| c.name.clone()).collect();
    Verdict {
        drifted,
        features: columns,
        prediction,
        drifted_features,
        drifted_share,
        drifted_weight,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, value: f64, weight: f64) -> ColumnReading {
        ColumnReading {
            name: name.into(),
            value,
            threshold: 0.1,
            weight,
        }
    }

    fn rule(
        trigger: DriftTrigger,
        features: &BTreeMap<String, FeatureDriftOverride>,
    ) -> DriftRule<'_> {
        DriftRule {
            trigger,
            drifted_share: 0.5,
            features,
        }
    }

    #[test]
    fn a_heavy_feature_triggers_alone_and_a_light_one_never_does() {
        let none = BTreeMap::new();
        let heavy = [col("a", 0.3, 6.0), col("b", 0.0, 3.0), col("c", 0.0, 1.0)];
        let v = window_verdict(&heavy, None, &rule(DriftTrigger::Weighted, &none));
        assert!(v.drifted, "{}", v.reason);
        assert!((v.drifted_weight - 0.6).abs() < 1e-12);
        assert_eq!(v.drifted_features, vec!["a"]);
        assert!(
            v.reason.contains("a (weight 0.60, 0.300 > 0.100)"),
            "{}",
            v.reason
        );
        // Two light features drifting carry 0.4 of the weight: not enough.
        let light = [col("a", 0.0, 6.0), col("b", 0.9, 3.0), col("c", 0.9, 1.0)];
        let v = window_verdict(&light, None, &rule(DriftTrigger::Weighted, &none));
        assert!(!v.drifted, "{}", v.reason);
        assert_eq!(v.drifted_features, vec!["b", "c"], "heaviest first");
        // The same windows under `share`: 1 of 3 is not enough, 2 of 3 is.
        assert!(!window_verdict(&heavy, None, &rule(DriftTrigger::Share, &none)).drifted);
        assert!(window_verdict(&light, None, &rule(DriftTrigger::Share, &none)).drifted);
        // `any` fires on either.
        assert!(window_verdict(&heavy, None, &rule(DriftTrigger::Any, &none)).drifted);
    }

    #[test]
    fn drifted_predictions_trigger_weighted_and_any_but_not_share() {
        let none = BTreeMap::new();
        let quiet = [col("a", 0.0, 1.0), col("b", 0.0, 1.0)];
        let p = col("prediction", 0.4, 1.0);
        for (trigger, expected) in [
            (DriftTrigger::Weighted, true),
            (DriftTrigger::Any, true),
            (DriftTrigger::Share, false),
        ] {
            let v = window_verdict(&quiet, Some(&p), &rule(trigger, &none));
            assert_eq!(v.drifted, expected, "{trigger}: {}", v.reason);
            assert!(v.prediction.as_ref().is_some_and(|p| p.drifted));
        }
        let calm = col("prediction", 0.05, 1.0);
        assert!(!window_verdict(&quiet, Some(&calm), &rule(DriftTrigger::Weighted, &none)).drifted);
    }

    #[test]
    fn overrides_set_a_threshold_or_take_a_feature_out_of_the_count() {
        let mut o = BTreeMap::new();
        o.insert(
            "b".to_string(),
            FeatureDriftOverride {
                threshold: Some(0.5),
                ignore: false,
            },
        );
        o.insert(
            "c".to_string(),
            FeatureDriftOverride {
                threshold: None,
                ignore: true,
            },
        );
        let w = [col("a", 0.2, 1.0), col("b", 0.3, 1.0), col("c", 0.9, 8.0)];
        let v = window_verdict(&w, None, &rule(DriftTrigger::Share, &o));
        // a drifted, b under its 0.5 override, c ignored: 1 of 2 counted.
        assert_eq!(v.drifted_features, vec!["a"]);
        assert_eq!(v.drifted_share, 0.5);
        assert!(v.drifted);
        assert_eq!(v.features[1].threshold, 0.5);
        assert!(
            v.features[2].ignored && v.features[2].drifted,
            "reported, not counted"
        );
        // The ignored feature's weight goes to the counted ones.
        assert_eq!(v.features[2].weight, 0.0);
        assert!((v.features[0].weight - 0.5).abs() < 1e-12);
    }

    #[test]
    fn unknown_or_zero_importances_weigh_features_equally() {
        let none = BTreeMap::new();
        let w = [
            col("a", 0.2, 0.0),
            col("b", 0.0, f64::NAN),
            col("c", 0.0, -1.0),
        ];
        let v = window_verdict(&w, None, &rule(DriftTrigger::Weighted, &none));
        assert!((v.drifted_weight - 1.0 / 3.0).abs() < 1e-12);
        assert!(!v.drifted);
        let empty = window_verdict(&[], None, &rule(DriftTrigger::Weighted, &none));
        assert!(!empty.drifted);
        assert_eq!(empty.drifted_share, 0.0);
        assert!(empty.reason.contains("drifted: none"), "{}", empty.reason);
        assert!(
            empty.reason.contains("weight 0.000 < 0.5"),
            "no minus zero: {}",
            empty.reason
        );
    }
}
