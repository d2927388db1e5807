//! Evaluation metrics, named as gates refer to them: `accuracy`, `macroF1`,
//! `logLoss`, `recall:<class>`, `rocAuc` (binary), `expectedCalibrationError`,
//! `rmse`, `mae`, `r2`.

use std::collections::BTreeMap;

/// Smallest probability used in log-loss, as scikit-learn clips.
const LOG_LOSS_EPS: f64 = 1e-15;

/// Equal-width confidence bins of the expected calibration error (15, as
/// Guo et al. 2017 and NannyML's calibration check use).
pub const CALIBRATION_BINS: usize = 15;

/// Expected calibration error of (confidence, correct) pairs: the
/// row-weighted mean, over equal-width confidence bins, of the gap
/// between a bin's accuracy and its mean confidence. 0 when no rows.
pub fn expected_calibration_error(pairs: impl IntoIterator<Item = (f64, bool)>) -> f64 {
    let mut count = [0u64; CALIBRATION_BINS];
    let mut confidence = [0.0f64; CALIBRATION_BINS];
    let mut correct = [0u64; CALIBRATION_BINS];
    for (c, ok) in pairs {
        let c = c.clamp(0.0, 1.0);
        // A confidence of exactly 1 belongs to the last bin, not past it.
        let bin = ((c * CALIBRATION_BINS as f64) as usize).min(CALIBRATION_BINS - 1);
        count[bin] += 1;
        confidence[bin] += c;
        correct[bin] += u64::from(ok);
    }
    let n: u64 = count.iter().sum();
    if n == 0 {
        return 0.0;
    }
    (0..CALIBRATION_BINS)
        .filter(|&b| count[b] > 0)
        .map(|b| (correct[b] as f64 - confidence[b]).abs())
        .sum::<f64>()
        / n as f64
}

/// Classification metrics. `probabilities` rows follow `classes`; a true
/// label the model does not know counts as wrong with probability 0.
pub fn classification(
    classes: &[String],
    truth: &[String],
    predicted: &[String],
    probabilities: &[Vec<f32>],
) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let n = truth.len();
    if n == 0 {
        return out;
    }
    let correct = truth.iter().zip(predicted).filter(|(t, p)| t == p).count();
    out.insert("accuracy".into(), correct as f64 / n as f64);

    // Macro-F1 over labels present in the truth or the predictions (scikit-learn's default).
    let mut labels: Vec<&String> = truth.iter().chain(predicted.iter()).collect();
    labels.sort();
    labels.dedup();
    let mut f1_sum = 0.0;
    for label in &labels {
        let tp = truth
            .iter()
            .zip(predicted)
            .filter(|(t, p)| t == label && p == label)
            .count() as f64;
        let fp = truth
            .iter()
            .zip(predicted)
            .filter(|(t, p)| t != label && p == label)
            .count() as f64;
        let fn_ = truth
            .iter()
            .zip(predicted)
            .filter(|(t, p)| t == label && p != label)
            .count() as f64;
        let denom = 2.0 * tp + fp + fn_;
        f1_sum += if denom > 0.0 { 2.0 * tp / denom } else { 0.0 };
        let support = tp + fn_;
        if support > 0.0 {
            out.insert(format!("recall:{label}"), tp / support);
        }
    }
    out.insert("macroF1".into(), f1_sum / labels.len() as f64);

    if probabilities.len() == n {
        let mut loss = 0.0;
        for (t, p) in truth.iter().zip(probabilities) {
            let prob = classes
                .iter()
                .position(|c| c == t)
                .and_then(|i| p.get(i))
                .map_or(0.0, |&x| f64::from(x));
            loss -= prob.clamp(LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS).ln();
        }
        out.insert("logLoss".into(), loss / n as f64);
        let pairs = probabilities
            .iter()
            .zip(truth.iter().zip(predicted))
            .map(|(p, (t, q))| {
                let top = p.iter().copied().fold(0.0f32, f32::max);
                (f64::from(top), t == q)
            });
        out.insert(
            "expectedCalibrationError".into(),
            expected_calibration_error(pairs),
        );
        if classes.len() == 2 {
            let scores: Vec<f64> = probabilities
                .iter()
                .map(|p| f64::from(p.get(1).copied().unwrap_or(0.0)))
                .collect();
            let positive: Vec<bool> = truth.iter().map(|t| *t == classes[1]).collect();
            if let Some(auc) = roc_auc(&scores, &positive) {
                out.insert("rocAuc".into(), auc);
            }
        }
    }
    out
}

/// ROC-AUC by the rank-sum (Mann-Whitney) formula with tied scores
/// averaged; `None` when only one class is present.
pub fn roc_auc(scores: &[f64], positive: &[bool]) -> Option<f64> {
    let n_pos = positive.iter().filter(|&&p| p).count();
    let n_neg = positive.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut ranks = vec![0.0; scores.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            ranks[k] = rank;
        }
        i = j + 1;
    }
    let pos_rank_sum: f64 = ranks
        .iter()
        .zip(positive)
        .filter(|(_, p)| **p)
        .map(|(r, _)| r)
        .sum();
    let u = pos_rank_sum - (n_pos * (n_pos + 1)) as f64 / 2.0;
    Some(u / (n_pos * n_neg) as f64)
}

/// Regression metrics.
pub fn regression(truth: &[f64], predicted: &[f64]) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let n = truth.len();
    if n == 0 {
        return out;
    }
    let nf = n as f64;
    let sse: f64 = truth
        .iter()
        .zip(predicted)
        .map(|(t, p)| (t - p).powi(2))
        .sum();
    let sae: f64 = truth
        .iter()
        .zip(predicted)
        .map(|(t, p)| (t - p).abs())
        .sum();
    let mean = truth.iter().sum::<f64>() / nf;
    let sst: f64 = truth.iter().map(|t| (t - mean).powi(2)).sum();
    out.insert("rmse".into(), (sse / nf).sqrt());
    out.insert("mae".into(), sae / nf);
    // scikit-learn's convention for a constant truth: 1 if perfect, else 0.
    let r2 = if sst > 0.0 {
        1.0 - sse / sst
    } else if sse == 0.0 {
        1.0
    } else {
        0.0
    };
    out.insert("r2".into(), r2);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(xs: &[&str]) -> Vec<String> {
        xs.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn expected_calibration_error_weighs_each_bins_gap_by_its_rows() {
        // Bin [0.9, 0.967): two rows at 0.95, one right → gap 0.45.
        // Bin [0.6, 0.667): two rows at 0.65, both right → gap 0.35.
        let pairs = [(0.95, true), (0.95, false), (0.65, true), (0.65, true)];
        let ece = expected_calibration_error(pairs);
        assert!(
            (ece - (2.0 * 0.45 + 2.0 * 0.35) / 4.0).abs() < 1e-12,
            "{ece}"
        );
        // Confidence 1 lands in the last bin; no rows is no error.
        assert!((expected_calibration_error([(1.0, true)])).abs() < 1e-12);
        assert_eq!(expected_calibration_error([]), 0.0);
    }

    #[test]
    fn classification_metrics_match_hand_computed_values() {
        let classes = s(&["a", "b"]);
        let truth = s(&["a", "a", "b", "b"]);
        let pred = s(&["a", "b", "b", "b"]);
        let probs = vec![
            vec![0.9, 0.1],
            vec![0.4, 0.6],
            vec![0.2, 0.8],
            vec![0.3, 0.7],
        ];
        let m = classification(&classes, &truth, &pred, &probs);
        assert_eq!(m["accuracy"], 0.75);
        assert_eq!(m["recall:a"], 0.5);
        assert_eq!(m["recall:b"], 1.0);
        // F1(a) = 2/3, F1(b) = 0.8.
        assert!((m["macroF1"] - (2.0 / 3.0 + 0.8) / 2.0).abs() < 1e-12);
        let ll = -((0.9f64).ln() + (0.4f64).ln() + (0.8f64).ln() + (0.7f64).ln()) / 4.0;
        assert!((m["logLoss"] - ll).abs() < 1e-6);
        // Positives score 0.8, 0.7; negatives 0.1, 0.6: every positive outranks every negative.
        assert_eq!(m["rocAuc"], 1.0);
    }

    #[test]
    fn roc_auc_averages_ties_and_needs_both_classes() {
        assert_eq!(roc_auc(&[0.5, 0.5], &[true, false]), Some(0.5));
        assert_eq!(roc_auc(&[0.1, 0.9], &[true, true]), None);
        assert_eq!(roc_auc(&[0.9, 0.1], &[false, true]), Some(0.0));
    }

    #[test]
    fn regression_metrics() {
        let m = regression(&[1.0, 2.0, 3.0], &[1.0, 2.0, 5.0]);
        assert!((m["rmse"] - (4.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert!((m["mae"] - 2.0 / 3.0).abs() < 1e-12);
        assert!((m["r2"] - (1.0 - 4.0 / 2.0)).abs() < 1e-12);
    }
}
