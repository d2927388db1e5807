//! Simulated canaries for `bench/canary/run.sh`: driftline's sequential and
//! threshold analyses (the library's own `analyse_canary`, as the operator
//! calls it at every poll) on seeded canaries, and the same canaries' per-poll
//! counts written out so that `mannwhitney.py` judges exactly the same data
//! the way Kayenta's Mann-Whitney classifier would.
//!
//!   cargo run --example canary_sim -- OUT_DIR [RUNS]
//!
//! Writes OUT_DIR/driftline.json (per scenario and method: promoted, rolled
//! back, undecided, median canary requests to a rollback) and
//! OUT_DIR/<scenario>.csv (canary,poll,canary_errors,canary_requests,
//! stable_errors,stable_requests: the counts of that poll alone).

use std::io::Write;

use chrono::{Duration, TimeZone, Utc};
use driftline::api::{AnalysisMethod, AnalysisOutcome, AnalysisSpec};
use driftline::policy::{CanaryMetrics, ServingMetrics, StepWindow, analyse_canary};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Binomial, Distribution};

const STABLE: f64 = 0.02;
const MARGIN: f64 = 0.01;
const ALPHA: f64 = 0.05;
const CANARY_PER_POLL: u64 = 200;
const STABLE_PER_POLL: u64 = 1800;
const PAUSE_POLLS: usize = 25;
const POLLS: usize = 60;

type Polls = Vec<[u64; 4]>;
/// Per canary: `Some((promoted, canary requests))` when the method decided.
type Decisions = Vec<Option<(bool, u64)>>;

fn canary(rate: f64, rng: &mut ChaCha8Rng) -> Polls {
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

/// `Some((promoted, canary requests))` when the method decided.
fn judge(method: AnalysisMethod, polls: &Polls) -> Option<(bool, u64)> {
    let spec = AnalysisSpec {
        method,
        alpha: ALPHA,
        min_requests: 100,
        max_error_rate: None,
        max_error_rate_increase: Some(MARGIN),
        ..AnalysisSpec::default()
    };
    let t0 = Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap();
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
        let serving = |errors, requests| ServingMetrics {
            requests,
            errors,
            p99_latency_ms: Some(10.0),
            labelled: 0,
            correct: 0,
            slow: None,
        };
        let m = CanaryMetrics {
            version: 2,
            window_start: t0,
            window_end: now,
            canary: serving(sum[0], sum[1]),
            stable: serving(sum[2], sum[3]),
            prediction_divergence: None,
        };
        let w = StepWindow {
            step: 0,
            steps: 1,
            weight: 10,
            started_at: t0,
            now,
            pause_over,
        };
        match analyse_canary(&spec, w, Some(&m)).outcome {
            AnalysisOutcome::Passed => return Some((true, sum[1])),
            AnalysisOutcome::Failed => return Some((false, sum[1])),
            AnalysisOutcome::Inconclusive => {}
        }
    }
    None
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let out = std::path::PathBuf::from(args.first().expect("usage: canary_sim OUT_DIR [RUNS]"));
    let runs: usize = args.get(1).map_or(10_000, |r| r.parse().expect("RUNS"));
    std::fs::create_dir_all(&out).expect("out dir");
    let scenarios = [
        ("equal", STABLE),
        ("margin", STABLE + MARGIN),
        ("double", 2.0 * STABLE),
    ];
    let mut summary = serde_json::Map::new();
    for (seed, (name, rate)) in scenarios.iter().enumerate() {
        let mut rng = ChaCha8Rng::seed_from_u64(seed as u64 + 1);
        let mut csv = std::io::BufWriter::new(
            std::fs::File::create(out.join(format!("{name}.csv"))).expect("csv"),
        );
        writeln!(
            csv,
            "canary,poll,canary_errors,canary_requests,stable_errors,stable_requests"
        )
        .unwrap();
        let mut tallies = serde_json::Map::new();
        let mut results: Vec<(AnalysisMethod, Decisions)> = vec![
            (AnalysisMethod::Sequential, Vec::new()),
            (AnalysisMethod::Threshold, Vec::new()),
        ];
        for c in 0..runs {
            let polls = canary(*rate, &mut rng);
            for (i, p) in polls.iter().enumerate() {
                writeln!(csv, "{c},{},{},{},{},{}", i + 1, p[0], p[1], p[2], p[3]).unwrap();
            }
            for (method, r) in &mut results {
                r.push(judge(*method, &polls));
            }
        }
        for (method, r) in results {
            let promoted = r.iter().filter(|x| matches!(x, Some((true, _)))).count();
            let mut rollbacks: Vec<u64> = r
                .iter()
                .filter_map(|x| x.filter(|(p, _)| !p).map(|(_, n)| n))
                .collect();
            rollbacks.sort_unstable();
            tallies.insert(
                method.to_string(),
                serde_json::json!({
                    "runs": runs,
                    "promoted": promoted,
                    "rolled_back": rollbacks.len(),
                    "undecided": runs - promoted - rollbacks.len(),
                    "median_requests_to_rollback": rollbacks.get(rollbacks.len() / 2),
                }),
            );
        }
        summary.insert((*name).into(), serde_json::Value::Object(tallies));
    }
    let setup = serde_json::json!({
        "stable_error_rate": STABLE, "margin": MARGIN, "alpha": ALPHA,
        "canary_per_poll": CANARY_PER_POLL, "stable_per_poll": STABLE_PER_POLL,
        "pause_polls": PAUSE_POLLS, "polls": POLLS,
    });
    summary.insert("setup".into(), setup);
    std::fs::write(
        out.join("driftline.json"),
        serde_json::to_string_pretty(&summary).unwrap(),
    )
    .expect("summary");
}
