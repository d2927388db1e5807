//! Temperature scaling (Guo et al. 2017) on the validation split: one
//! scalar divides a classifier's logits so that its confidence matches its
//! accuracy. The server's estimated accuracy (mean top-class probability,
//! NannyML's CBPE) is only as good as this calibration.
//!
//! The fit is a deterministic golden-section search of the validation
//! negative log-likelihood over the inverse temperature β = 1/T: the NLL,
//! `logsumexp(β·z) − β·z_y`, is convex in β, so the search finds the one
//! minimum in its bracket without randomness or a learning rate.

use crate::ml::artifact::{Calibration, Predictor};
use crate::ml::error::MlError;
use crate::ml::metrics::{CALIBRATION_BINS, expected_calibration_error};

/// The bracket of β searched: temperatures from 1/20 to 20. A model that
/// needs more than that is not one a temperature can rescue.
const BETA_RANGE: (f64, f64) = (0.05, 20.0);
/// Golden-section steps: the bracket shrinks by 0.618 each, so 80 leave it
/// far narrower than f32 logits can tell apart.
const STEPS: usize = 80;

/// Fits the temperature on the validation rows (encoded, `rows × inputs`)
/// and their true labels, and sets it on `predictor`. `None` when there is
/// nothing to fit: a regression model, or no validation row with a known class.
pub(super) fn calibrate(
    predictor: &mut Predictor,
    val_x: &[f32],
    rows: usize,
    val_labels: &[String],
) -> Result<Option<Calibration>, MlError> {
    if predictor.task != crate::api::Task::Classification || rows == 0 {
        return Ok(None);
    }
    let logits = predictor.logits_encoded(val_x.to_vec(), rows)?;
    let labelled: Vec<(&[f32], usize)> = logits
        .iter()
        .zip(val_labels)
        .filter_map(|(z, label)| {
            let y = predictor.classes.iter().position(|c| c == label)?;
            Some((z.as_slice(), y))
        })
        .collect();
    if labelled.is_empty() {
        return Ok(None);
    }
    let temperature = fit_temperature(&labelled);
    let calibration = Calibration {
        temperature,
        bins: CALIBRATION_BINS as u32,
        rows: labelled.len() as u64,
        ece_before: ece_at(&labelled, 1.0),
        ece_after: ece_at(&labelled, temperature),
    };
    predictor.temperature = temperature as f32;
    tracing::info!(
        temperature,
        ece_before = calibration.ece_before,
        ece_after = calibration.ece_after,
        "calibrated on the validation split"
    );
    Ok(Some(calibration))
}

/// The temperature minimising the mean negative log-likelihood of `labelled`.
fn fit_temperature(labelled: &[(&[f32], usize)]) -> f64 {
    let nll = |beta: f64| -> f64 {
        labelled
            .iter()
            .map(|(z, y)| log_sum_exp(z, beta) - beta * f64::from(z[*y]))
            .sum::<f64>()
    };
    let ratio = (5f64.sqrt() - 1.0) / 2.0;
    let (mut lo, mut hi) = BETA_RANGE;
    let mut a = hi - ratio * (hi - lo);
    let mut b = lo + ratio * (hi - lo);
    let (mut fa, mut fb) = (nll(a), nll(b));
    for _ in 0..STEPS {
        if fa <= fb {
            hi = b;
            b = a;
            fb = fa;
            a = hi - ratio * (hi - lo);
            fa = nll(a);
        } else {
            lo = a;
            a = b;
            fa = fb;
            b = lo + ratio * (hi - lo);
            fb = nll(b);
        }
    }
    1.0 / ((lo + hi) / 2.0)
}

/// `log Σ exp(β·z)`, shifted by the largest logit so that it cannot overflow.
fn log_sum_exp(z: &[f32], beta: f64) -> f64 {
    let top = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let top = beta * f64::from(top);
    top + z
        .iter()
        .map(|&v| (beta * f64::from(v) - top).exp())
        .sum::<f64>()
        .ln()
}

/// The expected calibration error of `labelled` served at `temperature`.
fn ece_at(labelled: &[(&[f32], usize)], temperature: f64) -> f64 {
    let beta = 1.0 / temperature;
    expected_calibration_error(labelled.iter().map(|(z, y)| {
        let best = z
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map_or(0, |(i, _)| i);
        let confidence = (beta * f64::from(z[best]) - log_sum_exp(z, beta)).exp();
        (confidence, best == *y)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Logits of a model that is right 70 % of the time but says so with
    /// about 99 % confidence: three classes, the true one (or, on every
    /// tenth-of-three row, a wrong one) five logits above the rest.
    fn overconfident() -> Vec<(Vec<f32>, usize)> {
        (0..300)
            .map(|i| {
                let y = i % 3;
                let predicted = if i % 10 < 7 { y } else { (y + 1) % 3 };
                let mut z = vec![0.0f32; 3];
                z[predicted] = 5.0;
                (z, y)
            })
            .collect()
    }

    fn view(rows: &[(Vec<f32>, usize)]) -> Vec<(&[f32], usize)> {
        rows.iter().map(|(z, y)| (z.as_slice(), *y)).collect()
    }

    #[test]
    fn an_overconfident_model_gets_a_temperature_above_one_and_a_lower_calibration_error() {
        let rows = overconfident();
        let labelled = view(&rows);
        let t = fit_temperature(&labelled);
        assert!(t > 1.0, "temperature {t}");
        let before = ece_at(&labelled, 1.0);
        let after = ece_at(&labelled, t);
        // Confidence ≈ 0.987 against accuracy 0.7 before; matched after.
        assert!((before - 0.287).abs() < 0.01, "ece before {before}");
        assert!(after < 0.01, "ece after {after}");
        // The optimum makes the mean confidence the accuracy: 0.7 of the
        // probability on the top logit, so exp(5/T) / (exp(5/T) + 2) = 0.7.
        let expected = 5.0 / (2.0 * 0.7f64 / 0.3).ln();
        assert!(
            (t - expected).abs() < 1e-3,
            "temperature {t}, expected {expected}"
        );
    }

    #[test]
    fn an_underconfident_model_gets_a_temperature_below_one() {
        // Always right, but only 0.5 logits above the other two classes.
        let rows: Vec<(Vec<f32>, usize)> = (0..90)
            .map(|i| {
                let mut z = vec![0.0f32; 3];
                z[i % 3] = 0.5;
                (z, i % 3)
            })
            .collect();
        let labelled = view(&rows);
        let t = fit_temperature(&labelled);
        assert!(t < 1.0, "temperature {t}");
        assert!(ece_at(&labelled, t) < ece_at(&labelled, 1.0));
    }

    #[test]
    fn the_fit_is_deterministic() {
        let rows = overconfident();
        let labelled = view(&rows);
        assert_eq!(
            fit_temperature(&labelled).to_bits(),
            fit_temperature(&labelled).to_bits()
        );
    }
}
