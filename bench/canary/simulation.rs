//! The simulated canaries both `bench/canary` and the decisions test
//! (`tests/decisions/policy_sequential.rs`) judge: one setup, one analysis
//! loop (the library's own `analyse_canary`, as the operator calls it at
//! every poll), so the benchmark's figures and the test's claims are about
//! the same thing.

use chrono::{DateTime, Duration, TimeZone, Utc};
use driftline::api::{AnalysisMethod, AnalysisOutcome, AnalysisSpec};
use driftline::policy::{CanaryMetrics, ServingMetrics, StepWindow, analyse_canary};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Binomial, Distribution};

/// Stable's error rate, the margin the Model allows (`maxErrorRateIncrease`) and alpha.
pub const STABLE: f64 = 0.02;
pub const MARGIN: f64 = 0.01;
pub const ALPHA: f64 = 0.05;
/// Requests per poll to canary (10 % weight) and stable.
pub const CANARY_PER_POLL: u64 = 200;
pub const STABLE_PER_POLL: u64 = 1800;
/// Polls inside the pause (the threshold's one fixed read comes after 5 000
/// canary requests), and the polls before the step gives up.
pub const PAUSE_POLLS: usize = 25;
pub const POLLS: usize = 60;

pub type Polls = Vec<[u64; 4]>;

/// One canary's per-poll counts: canary errors, canary requests, stable
/// errors, stable requests.
pub fn canary(rate: f64, rng: &mut ChaCha8Rng) -> Polls {
    let c = Binomial::new(CANARY_PER_POLL, rate).expect("rate");
    let s = Binomial::new(STABLE_PER_POLL, STABLE).expect("rate");
    (0..POLLS)
        .map(|_| {
            [
                c.sample(rng),
                CANARY_PER_POLL,
                s.sample(rng),
                STABLE_PER_POLL,
            ]
        })
        .collect()
}

/// The analysis every simulated canary is judged by: `method`, alpha, 100
/// requests at least, and the error-rate margin only.
pub fn spec(method: AnalysisMethod) -> AnalysisSpec {
    AnalysisSpec {
        method,
        alpha: ALPHA,
        min_requests: 100,
        max_error_rate: None,
        max_error_rate_increase: Some(MARGIN),
        ..AnalysisSpec::default()
    }
}

/// When every simulated step starts.
pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap()
}

/// The step's window since `t0()` as the operator scrapes it: (errors,
/// requests) of canary and stable.
pub fn metrics(canary: (u64, u64), stable: (u64, u64), now: DateTime<Utc>) -> CanaryMetrics {
    let serving = |(errors, requests): (u64, u64)| ServingMetrics {
        requests,
        errors,
        p99_latency_ms: Some(10.0),
        labelled: 0,
        correct: 0,
        slow: None,
        ..Default::default()
    };
    CanaryMetrics {
        version: 2,
        window_start: t0(),
        window_end: now,
        canary: serving(canary),
        stable: serving(stable),
        prediction_divergence: None,
    }
}

/// `Some((promoted, canary requests))` when the method decided: a threshold
/// read only once the pause is over, a sequential analysis at every poll.
pub fn judge(method: AnalysisMethod, polls: &Polls) -> Option<(bool, u64)> {
    let spec = spec(method);
    let t0 = t0();
    let mut sum = [0u64; 4];
    for (i, p) in polls.iter().enumerate() {
        for k in 0..4 {
            sum[k] += p[k];
        }
        let pause_over = i + 1 >= PAUSE_POLLS;
        if method == AnalysisMethod::Threshold && !pause_over {
            continue;
        }
        let now = t0 + Duration::seconds(30 * (i as i64 + 1));
        let m = metrics((sum[0], sum[1]), (sum[2], sum[3]), now);
        let w = StepWindow {
            step: 0,
            steps: 1,
            weight: 10,
            started_at: t0,
            now,
            pause_over,
            estimate_unreliable: false,
        };
        match analyse_canary(&spec, w, Some(&m)).outcome {
            AnalysisOutcome::Passed => return Some((true, sum[1])),
            AnalysisOutcome::Failed => return Some((false, sum[1])),
            AnalysisOutcome::Inconclusive => {}
        }
    }
    None
}
