//! Simulated canaries for `bench/canary/run.sh`: driftline's sequential and
//! threshold analyses on seeded canaries (`simulation.rs`, shared with the
//! decisions test), and the same canaries' per-poll counts written out so
//! that `mannwhitney.py` judges exactly the same data the way Kayenta's
//! Mann-Whitney classifier would.
//!
//!   cargo run --example canary_sim -- OUT_DIR [RUNS]
//!
//! Writes OUT_DIR/driftline.json (per scenario and method: promoted, rolled
//! back, undecided, median canary requests to a rollback) and
//! OUT_DIR/<scenario>.csv (canary,poll,canary_errors,canary_requests,
//! stable_errors,stable_requests: the counts of that poll alone).

mod simulation;

use std::io::Write;

use driftline::api::AnalysisMethod;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use simulation::{
    ALPHA, CANARY_PER_POLL, MARGIN, PAUSE_POLLS, POLLS, STABLE, STABLE_PER_POLL, canary, judge,
};

/// Per canary: `Some((promoted, canary requests))` when the method decided.
type Decisions = Vec<Option<(bool, u64)>>;

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
