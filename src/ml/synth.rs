//! A deterministic synthetic tabular dataset with optional drift, for
//! demos, drift tests and the 100 000-row training benchmark.
//!
//! Eight numeric features `x1..x8`, a categorical `segment` and a binary
//! `label`. Covariate shift moves the inputs' distribution but keeps the
//! labelling rule; concept drift keeps the inputs and changes the rule.

use std::fmt::Write as _;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Which distribution to draw from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shift {
    /// The reference distribution.
    None,
    /// Inputs move (x1, x2 and the segment mix); the rule stays.
    Covariate,
    /// Inputs stay; the labelling rule changes.
    Concept,
}

fn normal(rng: &mut ChaCha8Rng, mean: f64, std: f64) -> f64 {
    // Box-Muller: two uniforms give one standard normal.
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random();
    mean + std * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// CSV text with a header and `rows` rows, identical for the same seed and shift.
pub fn generate(rows: usize, seed: u64, shift: Shift) -> String {
    generate_narrowed(rows, seed, shift, 1.0)
}

/// As [`generate`], with the two most informative inputs (`x1`, `x2`)
/// drawn `spread` times as wide: below 1 a covariate shift towards the
/// decision boundary, where the same rule is harder to call, so a model's
/// real accuracy and its confidence both fall (what an accuracy estimate
/// without labels must follow).
pub fn generate_narrowed(rows: usize, seed: u64, shift: Shift, spread: f64) -> String {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = String::with_capacity(rows * 80);
    out.push_str("x1,x2,x3,x4,x5,x6,x7,x8,segment,label\n");
    for _ in 0..rows {
        let (m1, m2, s2) = if shift == Shift::Covariate {
            (1.5, -1.0, 1.5)
        } else {
            (0.0, 0.0, 1.0)
        };
        let x: Vec<f64> = (0..8)
            .map(|i| match i {
                0 => normal(&mut rng, m1, spread),
                1 => normal(&mut rng, m2, s2 * spread),
                _ => normal(&mut rng, 0.0, 1.0),
            })
            .collect();
        let shares = if shift == Shift::Covariate {
            [0.5, 0.3]
        } else {
            [0.2, 0.2]
        };
        let u: f64 = rng.random();
        let (segment, effect) = if u < shares[0] {
            ("a", 0.5)
        } else if u < shares[0] + shares[1] {
            ("b", -0.5)
        } else {
            ("c", 0.0)
        };
        let sign = if shift == Shift::Concept { -1.0 } else { 1.0 };
        let logit = sign * (1.5 * x[0] - 2.0 * x[1])
            + x[2] * x[3]
            + 0.8 * (2.0 * x[4]).sin()
            + 0.3 * x[5]
            + effect
            + normal(&mut rng, 0.0, 0.5);
        for v in &x {
            let _ = write!(out, "{v:.5},");
        }
        let _ = writeln!(out, "{segment},{}", u8::from(logit > 0.0));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_rows_and_shifts_change_the_data() {
        let a = generate(50, 3, Shift::None);
        assert_eq!(a, generate(50, 3, Shift::None));
        assert_ne!(a, generate(50, 4, Shift::None));
        assert_eq!(a.lines().count(), 51);
        let mean_x1 = |csv: &str| {
            let v: Vec<f64> = csv
                .lines()
                .skip(1)
                .map(|l| l.split(',').next().unwrap().parse().unwrap())
                .collect();
            v.iter().sum::<f64>() / v.len() as f64
        };
        let base = generate(2000, 1, Shift::None);
        assert!(mean_x1(&base).abs() < 0.15);
        assert!(mean_x1(&generate(2000, 1, Shift::Covariate)) > 1.2);
        // Concept drift: same inputs, mostly opposite labels on the same seed.
        let concept = generate(2000, 1, Shift::Concept);
        let flipped = base
            .lines()
            .zip(concept.lines())
            .skip(1)
            .filter(|(a, b)| a.ends_with(",1") != b.ends_with(",1"))
            .count();
        assert!(flipped > 1000, "{flipped}");
    }
}
