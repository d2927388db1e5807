//! Sequential canary analysis against the fixed threshold, on simulated
//! canaries read at every poll (#20, Done-when 4): the false-promotion rate
//! at the margin stays under alpha for the sequential method however often it
//! is read, while the threshold read at every poll promotes far more often;
//! a canary twice as bad is rolled back on fewer requests.

use chrono::Duration;
use driftline::api::{AnalysisMethod, AnalysisOutcome, AnalysisSpec, Evidence};
use driftline::policy::{StepWindow, analyse_canary};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Binomial, Distribution};

use crate::canary_simulation::{ALPHA, MARGIN, STABLE, canary, judge, metrics, spec, t0};

fn binomial(rng: &mut ChaCha8Rng, n: u64, p: f64) -> u64 {
    Binomial::new(n, p).expect("a valid rate").sample(rng)
}

struct Tally {
    promoted: usize,
    rolled_back: usize,
    rollback_requests: Vec<u64>,
    runs: usize,
}

fn simulate(method: AnalysisMethod, canary_rate: f64, runs: usize, seed: u64) -> Tally {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut t = Tally {
        promoted: 0,
        rolled_back: 0,
        rollback_requests: Vec::new(),
        runs,
    };
    for _ in 0..runs {
        match judge(method, &canary(canary_rate, &mut rng)) {
            Some((true, _)) => t.promoted += 1,
            Some((false, n)) => {
                t.rolled_back += 1;
                t.rollback_requests.push(n);
            }
            None => {}
        }
    }
    t
}

fn median(v: &mut [u64]) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

#[test]
fn at_the_margin_sequential_promotes_at_most_alpha_while_the_threshold_read_at_every_poll_does_not()
{
    // 10 000 canaries whose error rate is exactly stable's plus the margin:
    // promoting any of them is a false promotion.
    let runs = 10_000;
    let sequential = simulate(AnalysisMethod::Sequential, STABLE + MARGIN, runs, 1);
    let threshold = simulate(AnalysisMethod::Threshold, STABLE + MARGIN, runs, 1);
    let rate = |t: &Tally| t.promoted as f64 / t.runs as f64;
    eprintln!(
        "false promotions at the margin, read at every poll: sequential {:.4}, threshold {:.4} ({} canaries each)",
        rate(&sequential),
        rate(&threshold),
        runs
    );
    assert!(
        rate(&sequential) <= ALPHA,
        "sequential promoted {:.4} of canaries at the margin, above alpha {ALPHA}",
        rate(&sequential)
    );
    // The fixed threshold, peeked at every poll, promotes about half of them.
    assert!(
        rate(&threshold) > 4.0 * ALPHA,
        "threshold promoted only {:.4}",
        rate(&threshold)
    );
}

#[test]
fn a_canary_twice_as_bad_is_rolled_back_on_fewer_requests_than_the_threshold_needs() {
    let runs = 2_000;
    let mut sequential = simulate(AnalysisMethod::Sequential, 2.0 * STABLE, runs, 2);
    let mut threshold = simulate(AnalysisMethod::Threshold, 2.0 * STABLE, runs, 2);
    let (ms, mt) = (
        median(&mut sequential.rollback_requests),
        median(&mut threshold.rollback_requests),
    );
    eprintln!(
        "2x harm: sequential rolled back {}/{runs}, median {ms} canary requests; threshold {}/{runs}, median {mt}",
        sequential.rolled_back, threshold.rolled_back
    );
    // Both catch nearly every such canary; sequential needs fewer requests.
    assert!(sequential.rolled_back as f64 >= 0.95 * runs as f64);
    assert!(threshold.rolled_back as f64 >= 0.80 * runs as f64);
    assert!(ms < mt, "sequential median {ms} not below threshold's {mt}");
}

#[test]
fn equal_versions_are_rarely_rolled_back_and_mostly_promoted() {
    let runs = 2_000;
    let t = simulate(AnalysisMethod::Sequential, STABLE, runs, 3);
    let false_rollbacks = t.rolled_back as f64 / runs as f64;
    eprintln!(
        "equal versions: {} promoted, {} rolled back of {runs}",
        t.promoted, t.rolled_back
    );
    assert!(
        false_rollbacks <= ALPHA,
        "false rollbacks {false_rollbacks}"
    );
    assert!(
        t.promoted as f64 >= 0.5 * runs as f64,
        "{} promoted",
        t.promoted
    );
}

#[test]
fn every_read_records_the_interval_and_not_enough_evidence_is_neither_pass_nor_failure() {
    let now = t0() + Duration::minutes(5);
    let w = |pause_over| StepWindow {
        step: 0,
        steps: 2,
        weight: 10,
        started_at: t0(),
        now,
        pause_over,
        estimate_unreliable: false,
    };
    let spec = spec(AnalysisMethod::Sequential);
    // 120 canary requests with 3 errors: far too little to rule out +1 %.
    let early = analyse_canary(&spec, w(true), Some(&metrics((3, 120), (20, 1080), now)));
    assert_eq!(early.outcome, AnalysisOutcome::Inconclusive);
    let check = early
        .checks
        .iter()
        .find(|c| c.name == "maxErrorRateIncrease")
        .expect("the check is recorded");
    assert_eq!(check.evidence, Some(Evidence::KeepWatching));
    let (lower, upper) = (check.lower.unwrap(), check.upper.unwrap());
    assert!(lower < check.value && check.value < upper, "{check:?}");
    assert!(upper > MARGIN && lower < 0.0);
    assert!(early.message.contains("keep watching"), "{}", early.message);

    // Clear harm rolls back even inside the pause.
    let harm = analyse_canary(&spec, w(false), Some(&metrics((60, 500), (90, 4500), now)));
    assert_eq!(harm.outcome, AnalysisOutcome::Failed, "{}", harm.message);
    assert!(harm.message.contains("harm"), "{}", harm.message);

    // No harm shown still waits for the pause; after it, the step passes.
    let clean = metrics((0, 3000), (60, 27_000), now);
    let inside = analyse_canary(&spec, w(false), Some(&clean));
    assert_eq!(inside.outcome, AnalysisOutcome::Inconclusive);
    let after = analyse_canary(&spec, w(true), Some(&clean));
    assert_eq!(after.outcome, AnalysisOutcome::Passed, "{}", after.message);
}

#[test]
fn the_confidence_sequence_covers_the_true_rate_at_every_read_with_probability_alpha() {
    // 2 000 streams of 3 000 requests at 3 %, read after every 50: the
    // share of streams whose interval ever excludes the truth is at most alpha.
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let spec = AnalysisSpec {
        max_error_rate: Some(0.03),
        max_error_rate_increase: None,
        ..spec(AnalysisMethod::Sequential)
    };
    let (streams, truth) = (2_000, 0.03);
    let mut missed = 0;
    for _ in 0..streams {
        let (mut errors, mut requests) = (0u64, 0u64);
        for poll in 1..=60 {
            errors += binomial(&mut rng, 50, truth);
            requests += 50;
            let now = t0() + Duration::seconds(30 * poll);
            let w = StepWindow {
                step: 0,
                steps: 1,
                weight: 10,
                started_at: t0(),
                now,
                pause_over: true,
                estimate_unreliable: false,
            };
            let r = analyse_canary(&spec, w, Some(&metrics((errors, requests), (0, 1), now)));
            let c = r.checks.iter().find(|c| c.name == "maxErrorRate").unwrap();
            if !(c.lower.unwrap() <= truth && truth <= c.upper.unwrap()) {
                missed += 1;
                break;
            }
        }
    }
    let share = missed as f64 / streams as f64;
    eprintln!("interval missed the truth at some read in {share:.4} of streams");
    assert!(share <= ALPHA, "{share}");
}
