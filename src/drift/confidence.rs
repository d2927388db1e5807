//! Confidence-based performance estimation (NannyML's CBPE): for a
//! calibrated classifier, the probability it gives its own answer is the
//! chance that answer is right, so the mean top-class probability over a
//! window of traffic is the accuracy expected there — without one label.
//!
//! The tally is two integers so that it merges like the drift sketches:
//! replicas add, a running total read twice subtracts, and the order of
//! either never changes the result (a float sum would, in its last bits).

use serde::{Deserialize, Serialize};

/// Confidence is counted in millionths: a window of 10^13 rows at
/// confidence 1 still fits a `u64`, and 10^-6 is far below any difference
/// an accuracy estimate can tell.
const SCALE: f64 = 1_000_000.0;

/// Rows and the sum of their top-class probability.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfidenceTally {
    /// Rows whose confidence was counted.
    pub rows: u64,
    /// Sum of their top-class probability, in millionths.
    pub micros: u64,
}

impl ConfidenceTally {
    /// Counts one row answered with top-class probability `confidence`
    /// (clamped to [0, 1]; a NaN counts as 0, as no confidence).
    pub fn observe(&mut self, confidence: f64) {
        let c = if confidence.is_nan() {
            0.0
        } else {
            confidence.clamp(0.0, 1.0)
        };
        self.rows += 1;
        self.micros += (c * SCALE).round() as u64;
    }

    /// Counts a row from its class probabilities (their largest).
    pub fn observe_probabilities(&mut self, probabilities: &[f32]) {
        let top = probabilities.iter().copied().fold(0.0f32, f32::max);
        self.observe(f64::from(top));
    }

    pub fn merge(&mut self, other: &ConfidenceTally) {
        self.rows += other.rows;
        self.micros += other.micros;
    }

    /// What was counted after `earlier`, an older read of the same running
    /// tally; `None` when a count went down (a restarted server).
    pub fn since(&self, earlier: &ConfidenceTally) -> Option<ConfidenceTally> {
        Some(ConfidenceTally {
            rows: self.rows.checked_sub(earlier.rows)?,
            micros: self.micros.checked_sub(earlier.micros)?,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Sum of the top-class probabilities: the expected number of right answers.
    pub fn expected_correct(&self) -> f64 {
        self.micros as f64 / SCALE
    }

    /// The expected accuracy: mean top-class probability; `None` without rows.
    pub fn estimated_accuracy(&self) -> Option<f64> {
        (self.rows > 0).then(|| self.expected_correct() / self.rows as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estimate_is_the_mean_top_class_probability() {
        let mut t = ConfidenceTally::default();
        assert_eq!(t.estimated_accuracy(), None);
        t.observe_probabilities(&[0.9, 0.1]);
        t.observe_probabilities(&[0.2, 0.3, 0.5]);
        t.observe(f64::NAN);
        t.observe(1.5);
        assert_eq!(t.rows, 4);
        let expected = (0.9 + 0.5 + 0.0 + 1.0) / 4.0;
        assert!((t.estimated_accuracy().unwrap() - expected).abs() < 1e-6);
    }

    #[test]
    fn replicas_merge_in_any_order_and_a_running_total_subtracts() {
        let confidences = [0.61, 0.97, 0.5, 0.73, 0.88, 0.99];
        let mut a = ConfidenceTally::default();
        let mut b = ConfidenceTally::default();
        for (i, &c) in confidences.iter().enumerate() {
            if i % 2 == 0 { &mut a } else { &mut b }.observe(c);
        }
        let mut ab = a;
        ab.merge(&b);
        let mut ba = b;
        ba.merge(&a);
        assert_eq!(ab, ba);
        let mut one = ConfidenceTally::default();
        confidences.iter().for_each(|&c| one.observe(c));
        assert_eq!(
            ab, one,
            "merged replicas equal one server that saw every row"
        );
        assert_eq!(ab.since(&a), Some(b));
        assert_eq!(a.since(&ab), None, "a count that went down is a restart");
    }
}
