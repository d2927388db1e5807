//! Always-valid confidence sequences for the canary's pass/fail counts
//! (errors per request, wrong answers per labelled request, requests slower
//! than the stable's p99).
//!
//! Why this method: a fixed threshold read at every poll is a test peeked at
//! again and again, so its error rate grows with every read. A confidence
//! sequence is an interval that holds the true rate at every sample size at
//! once with probability ≥ 1 − α, so the operator may read it after every
//! poll, stop at the first clear answer, and still keep α. We use the
//! beta-binomial mixture (Robbins 1970; Howard, Ramdas, McAuliffe & Sekhon
//! 2021, "Time-uniform, nonparametric, nonasymptotic confidence sequences"):
//! exact for 0/1 outcomes, with no normal approximation, so it stays right at
//! error rates near 0 where canaries live, and its width adapts to the
//! variance (narrow when the rate is small). Mixing over a uniform Beta(1, 1)
//! makes it free of tuning. For `s` bad outcomes out of `t`, the set
//!
//! ```text
//!   { p : (t + 1) · C(t, s) · p^s · (1 − p)^(t − s) > α }
//! ```
//!
//! is that interval: the left side is the reciprocal of the mixture
//! likelihood ratio, a nonnegative martingale under every `p`, and Ville's
//! inequality bounds the chance it ever exceeds 1/α. A mixture SPRT would
//! give one test per hypothesis; the interval gives every check its
//! estimate, its bounds and the evidence so far in one record.
//!
//! The same set holds for outcomes anywhere in [0, 1] (a request's
//! calibrated confidence, whose mean is the estimated accuracy), with `s`
//! their sum: `x ↦ (q/p)^x · ((1 − q)/(1 − p))^(1 − x)` is convex, so its
//! mean under any law on [0, 1] with mean `p` is at most its mean under
//! the Bernoulli(p), which is 1. The mixture is then a nonnegative
//! supermartingale, and Ville's inequality still applies ([`mean`]).

use crate::api::{AnalysisCheck, AnalysisOutcome, Evidence};

/// An interval for a rate or a difference of rates.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Interval {
    pub lower: f64,
    pub upper: f64,
}

/// ln((t + 1) · C(t, s)), with `s` any real in [0, t]: the log of the
/// reciprocal of the Beta(s + 1, t − s + 1) function.
fn ln_mixture_norm(t: f64, s: f64) -> f64 {
    let g = crate::drift::ln_gamma;
    (t + 1.0).ln() + g(t + 1.0) - g(s + 1.0) - g(t - s + 1.0)
}

/// The 1 − α confidence sequence of a rate after `bad` of `total` outcomes.
/// Holds the true rate at every `total` at once with probability ≥ 1 − α.
pub fn rate(bad: u64, total: u64, alpha: f64) -> Interval {
    mean(bad.min(total) as f64, total, alpha)
}

/// The 1 − α confidence sequence of the mean of `total` outcomes in
/// [0, 1] that sum to `sum` (for 0/1 outcomes, [`rate`]). Holds the true
/// mean at every `total` at once with probability ≥ 1 − α.
pub fn mean(sum: f64, total: u64, alpha: f64) -> Interval {
    if total == 0 {
        return Interval {
            lower: 0.0,
            upper: 1.0,
        };
    }
    let t = total as f64;
    let s = if sum.is_nan() { 0.0 } else { sum.clamp(0.0, t) };
    let (none, all) = (s <= 0.0, s >= t);
    let constant = ln_mixture_norm(t, s) - alpha.ln();
    // Concave in p, positive at the estimate s/t: the interval is where it is > 0.
    let f = |p: f64| {
        let a = if none { 0.0 } else { s * p.ln() };
        let b = if all { 0.0 } else { (t - s) * (1.0 - p).ln() };
        constant + a + b
    };
    let estimate = s / t;
    let lower = if none { 0.0 } else { bisect(&f, 0.0, estimate) };
    let upper = if all { 1.0 } else { bisect(&f, 1.0, estimate) };
    Interval { lower, upper }
}

/// The boundary between `outside` (where `f` ≤ 0) and `inside` (where `f` >
/// 0), to 1e-12.
fn bisect(f: &dyn Fn(f64) -> f64, mut outside: f64, mut inside: f64) -> f64 {
    for _ in 0..100 {
        let mid = 0.5 * (outside + inside);
        if f(mid) > 0.0 {
            inside = mid;
        } else {
            outside = mid;
        }
        if (inside - outside).abs() < 1e-12 {
            break;
        }
    }
    // Report the edge inside the set, so the interval is never narrower than the set.
    outside
}

/// The 1 − α confidence sequence of (canary rate − stable rate): each rate's
/// own sequence at α/2, so both hold at once with probability ≥ 1 − α.
pub fn difference(canary: (u64, u64), stable: (u64, u64), alpha: f64) -> Interval {
    let bad = |(bad, total): (u64, u64)| (bad.min(total) as f64, total);
    difference_of_means(bad(canary), bad(stable), alpha)
}

/// The 1 − α confidence sequence of (canary mean − stable mean) of
/// outcomes in [0, 1], each given as (sum, count): each mean's own
/// sequence at α/2 ([`mean`]).
pub fn difference_of_means(canary: (f64, u64), stable: (f64, u64), alpha: f64) -> Interval {
    let c = mean(canary.0, canary.1, alpha / 2.0);
    let s = mean(stable.0, stable.1, alpha / 2.0);
    Interval {
        lower: c.lower - s.upper,
        upper: c.upper - s.lower,
    }
}

/// What an interval of a "higher is worse" quantity says against the bound
/// a Model allows (`bound`) and the value that means "no worse than stable"
/// (`reference`: 0 for a difference, the bound itself for an absolute limit).
///
/// `NoHarm` when the whole interval is below the bound: promoting then is
/// wrong with probability ≤ α however often this is read. `Harm` when the
/// whole interval is above the reference and the bound is not yet excluded.
/// Otherwise there is not enough evidence, which is neither.
pub fn judge(interval: Interval, bound: f64, reference: f64) -> Evidence {
    if interval.upper < bound {
        Evidence::NoHarm
    } else if interval.lower > reference {
        Evidence::Harm
    } else {
        Evidence::KeepWatching
    }
}

/// The one rule that turns judged checks into a verdict, for the sequential
/// canary and the shadow stage: any `harm` fails at once; a pass needs every
/// judged check at `noHarm` and nothing in `blockers` (too few requests,
/// data not yet reported, the minimum time not over); anything else keeps
/// watching and says what for. Returns the outcome and its sentence.
pub fn conclude(checks: &[AnalysisCheck], blockers: Vec<String>) -> (AnalysisOutcome, String) {
    let with = |e: Evidence| {
        checks
            .iter()
            .filter(move |c| c.evidence == Some(e))
            .map(|c| c.message.clone())
    };
    let harmed: Vec<String> = with(Evidence::Harm).collect();
    if !harmed.is_empty() {
        return (
            AnalysisOutcome::Failed,
            format!("harm: {}", harmed.join("; ")),
        );
    }
    let judged = checks.iter().filter(|c| c.evidence.is_some());
    if blockers.is_empty() && judged.clone().all(|c| c.evidence == Some(Evidence::NoHarm)) {
        let all: Vec<&str> = judged.map(|c| c.message.as_str()).collect();
        return (
            AnalysisOutcome::Passed,
            format!("no harm: {}", all.join("; ")),
        );
    }
    let mut waiting: Vec<String> = with(Evidence::KeepWatching).collect();
    waiting.extend(blockers);
    (
        AnalysisOutcome::Inconclusive,
        format!(
            "keep watching: {}; not enough evidence is neither a pass nor a failure",
            waiting.join("; ")
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interval_holds_the_estimate_and_narrows_with_evidence() {
        let small = rate(5, 100, 0.05);
        let large = rate(50, 1000, 0.05);
        for i in [small, large] {
            assert!(i.lower < 0.05 && 0.05 < i.upper, "{i:?}");
        }
        assert!(large.upper - large.lower < small.upper - small.lower);
        assert_eq!(
            rate(0, 0, 0.05),
            Interval {
                lower: 0.0,
                upper: 1.0
            }
        );
        assert_eq!(rate(0, 10, 0.05).lower, 0.0);
        assert_eq!(rate(10, 10, 0.05).upper, 1.0);
    }

    #[test]
    fn with_no_failures_the_upper_end_is_the_closed_form() {
        // s = 0: (t+1)(1-p)^t = α  =>  p = 1 - (α/(t+1))^(1/t).
        let (t, alpha) = (400u64, 0.05);
        let exact = 1.0 - (alpha / (t as f64 + 1.0)).powf(1.0 / t as f64);
        assert!((rate(0, t, alpha).upper - exact).abs() < 1e-9);
    }

    #[test]
    fn a_smaller_alpha_gives_a_wider_interval() {
        let wide = rate(20, 500, 0.01);
        let narrow = rate(20, 500, 0.10);
        assert!(wide.lower < narrow.lower && wide.upper > narrow.upper);
    }

    #[test]
    fn the_difference_spans_both_rates_uncertainty() {
        let d = difference((40, 1000), (20, 1000), 0.05);
        assert!(d.lower < 0.02 && 0.02 < d.upper, "{d:?}");
        let c = rate(40, 1000, 0.025);
        let s = rate(20, 1000, 0.025);
        assert_eq!(d.lower, c.lower - s.upper);
        assert_eq!(d.upper, c.upper - s.lower);
    }

    #[test]
    fn a_mean_of_fractions_is_bounded_like_a_rate_and_never_narrower() {
        // Whole sums are the rate's interval exactly.
        assert_eq!(mean(40.0, 1000, 0.05), rate(40, 1000, 0.05));
        // 1000 requests answered at confidence 0.62 each: the interval holds
        // 0.62 and sits inside [0, 1].
        let m = mean(620.0, 1000, 0.05);
        assert!(m.lower < 0.62 && 0.62 < m.upper, "{m:?}");
        assert!(m.lower > 0.5 && m.upper < 0.75, "{m:?}");
        let fewer = mean(62.0, 100, 0.05);
        assert!(fewer.lower < m.lower && fewer.upper > m.upper, "{fewer:?}");
        // Sums past the count are clamped, never NaN.
        assert_eq!(mean(1e9, 10, 0.05).upper, 1.0);
        assert_eq!(mean(f64::NAN, 10, 0.05).lower, 0.0);
    }

    #[test]
    fn read_at_every_step_the_mean_of_fractions_still_holds_its_alpha() {
        // 400 streams of confidences uniform on [0.3, 0.9] (mean 0.6), each
        // read after every 25 outcomes up to 2 000: the interval must leave
        // 0.6 in at most alpha of the streams. A fixed-sample interval read
        // 80 times would leave it far more often.
        let (alpha, truth, streams) = (0.05, 0.6, 400);
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut uniform = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut missed = 0;
        for _ in 0..streams {
            let mut sum = 0.0;
            for n in 1..=2000u64 {
                sum += 0.3 + 0.6 * uniform();
                if n % 25 == 0 {
                    let i = mean(sum, n, alpha);
                    if !(i.lower <= truth && truth <= i.upper) {
                        missed += 1;
                        break;
                    }
                }
            }
        }
        assert!(
            (missed as f64) <= alpha * streams as f64,
            "{missed} of {streams} streams lost the mean"
        );
    }

    #[test]
    fn judging_is_no_harm_below_the_bound_harm_above_the_reference() {
        let i = |lower, upper| Interval { lower, upper };
        assert_eq!(judge(i(-0.01, 0.009), 0.01, 0.0), Evidence::NoHarm);
        assert_eq!(judge(i(0.001, 0.05), 0.01, 0.0), Evidence::Harm);
        assert_eq!(judge(i(-0.01, 0.05), 0.01, 0.0), Evidence::KeepWatching);
        // Shown worse than stable but also shown within the margin: allowed.
        assert_eq!(judge(i(0.001, 0.009), 0.01, 0.0), Evidence::NoHarm);
    }
}
