//! Invariants of the decision core over random histories: whatever happens,
//! at most one training runs, weights sum to 100, a canary only advances on
//! passing evidence, rollback restores the champion, and decisions are
//! deterministic.

mod policy_support;

use std::collections::BTreeMap;

use chrono::Duration;
use driftline::api::{CanaryStep, TrafficWeight, VersionPhase, version_number};
use driftline::drift::ColumnReading;
use driftline::policy::{
    Action, DriftReading, JobState, ManualAction, ManualRequest, ServingMetrics, decide,
};
use policy_support::*;
use proptest::prelude::*;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Evidence {
    Pass,
    Fail,
    Thin,
}

#[derive(Clone, Debug)]
enum Event {
    Tick(u32),
    JobDone(bool),
    Gate(bool),
    Ready,
    Metrics(Evidence, u32),
    Retrain,
    Promote,
    Rollback,
    Drift(bool),
    Pause(bool),
}

fn event() -> impl Strategy<Value = Event> {
    let evidence = prop_oneof![
        Just(Evidence::Pass),
        Just(Evidence::Fail),
        Just(Evidence::Thin)
    ];
    prop_oneof![
        3 => (1u32..40).prop_map(Event::Tick),
        2 => any::<bool>().prop_map(Event::JobDone),
        2 => any::<bool>().prop_map(Event::Gate),
        2 => Just(Event::Ready),
        10 => (evidence, 0u32..40).prop_map(|(e, m)| Event::Metrics(e, m)),
        1 => Just(Event::Retrain),
        1 => Just(Event::Promote),
        1 => Just(Event::Rollback),
        1 => any::<bool>().prop_map(Event::Drift),
        1 => any::<bool>().prop_map(Event::Pause),
    ]
}

fn steps() -> impl Strategy<Value = Vec<u32>> {
    proptest::collection::btree_set(1u32..=100, 1..4).prop_map(|s| s.into_iter().collect())
}

fn sums_to_100(weights: &[TrafficWeight]) -> bool {
    weights.is_empty() || weights.iter().map(|w| w.weight).sum::<u32>() == 100
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn invariants_hold_over_any_history(
        step_weights in steps(),
        failure_limit in 0u32..3,
        auto_promote in any::<bool>(),
        start_in_canary in proptest::bool::weighted(0.75),
        events in proptest::collection::vec(event(), 1..120),
    ) {
        let mut s = spec();
        if let Some(r) = s.retrain.as_mut() {
            r.schedule = None;
            r.time_zone = None;
            r.cooldown = None;
            r.max_per_day = None;
        }
        s.drift.features.clear();
        s.rollout.steps = step_weights.iter().map(|w| CanaryStep { weight: *w, pause: "5m".into() }).collect();
        s.rollout.analysis.failure_limit = failure_limit;
        s.rollout.auto_promote = auto_promote;
        let mut w = World::new(s, t("2026-06-01T00:00:00Z"));
        if start_in_canary {
            // Most histories start mid-rollout: v1 champion, v2 at its first step.
            w.bootstrap();
            w.request("setup", ManualAction::Retrain { reason: None });
            w.finish_job(2, JobState::Succeeded);
            w.gate(2, passed_gate());
            w.ready.insert(2);
            w.step();
            prop_assert!(w.model.status.as_ref().is_some_and(|s| s.canary.is_some()));
        }
        // Canary version -> steps advanced on passing evidence.
        let mut passed_steps: BTreeMap<u32, usize> = BTreeMap::new();
        let mut request_id = 0u32;
        let mut drift_end = w.now;

        for ev in events {
            let mut obs = w.observations();
            let mut evidence = None;
            match ev {
                Event::Tick(m) => {
                    w.advance(Duration::minutes(i64::from(m)));
                    obs.now = w.now;
                }
                Event::JobDone(ok) => {
                    let running: Vec<u32> = w.jobs.iter().filter(|j| j.state == JobState::Running).map(|j| j.version).collect();
                    for n in running {
                        w.finish_job(n, if ok { JobState::Succeeded } else { JobState::Failed { message: "OOMKilled".into() } });
                    }
                    obs = w.observations();
                }
                Event::Gate(pass) => {
                    let trained: Vec<u32> = w.versions.iter()
                        .filter(|v| v.status.as_ref().is_some_and(|s| s.phase == VersionPhase::Trained))
                        .map(|v| v.spec.version).collect();
                    for n in trained {
                        w.gate(n, if pass { passed_gate() } else { failed_gate() });
                    }
                    obs = w.observations();
                }
                Event::Ready => {
                    let candidates: Vec<u32> = w.versions.iter().map(|v| v.spec.version).collect();
                    w.ready.extend(candidates);
                    obs = w.observations();
                }
                Event::Metrics(kind, minutes) => {
                    w.advance(Duration::minutes(i64::from(minutes)));
                    obs = w.observations();
                    let canary = w.model.status.as_ref().and_then(|s| s.canary.clone());
                    if let Some(c) = canary {
                        let n = version_number(&c.version).expect("canary version name");
                        let start = c.step_started_at.unwrap_or(w.now);
                        let m = match kind {
                            Evidence::Pass => healthy(1000),
                            Evidence::Fail => ServingMetrics { requests: 1000, errors: 100, p99_latency_ms: Some(20.0), labelled: 0, correct: 0 },
                            Evidence::Thin => healthy(10),
                        };
                        obs.canary_metrics = Some(window(n, start, w.now, m));
                        evidence = Some(kind);
                    }
                }
                Event::Retrain | Event::Promote | Event::Rollback => {
                    request_id += 1;
                    let action = match ev {
                        Event::Retrain => ManualAction::Retrain { reason: None },
                        Event::Promote => ManualAction::Promote { version: None },
                        _ => ManualAction::Rollback,
                    };
                    obs.request = Some(ManualRequest { id: format!("req-{request_id}"), action });
                }
                Event::Drift(drifted) => {
                    drift_end += Duration::minutes(1);
                    let v = if drifted { 0.5 } else { 0.01 };
                    let column = |name: &str| ColumnReading { name: name.into(), value: v, threshold: 0.1, weight: 1.0 };
                    obs.drift = vec![DriftReading { window_end: drift_end, rows: 1000, features: vec![column("alcohol"), column("ph")], prediction: None }];
                }
                Event::Pause(p) => {
                    w.model.spec.paused = p;
                }
            }

            let training_before = w.versions.iter().filter(|v| v.status.as_ref().is_some_and(|s| s.phase == VersionPhase::Training)).count();
            let canary_before = w.model.status.as_ref().and_then(|s| s.canary.clone());
            let champion_before = w.model.status.as_ref().and_then(|s| s.champion.clone());
            let manual = obs.request.is_some();

            // Deterministic: the same inputs give the same decision.
            let again = decide(&w.model, &w.versions, &obs);
            let d = w.step_with(obs);
            prop_assert_eq!(&d, &again);

            // At most one training run of the Model.
            let starts = d.actions.iter().filter(|a| matches!(a, Action::StartTraining { .. })).count();
            prop_assert!(starts <= 1);
            if starts == 1 {
                prop_assert_eq!(training_before, 0, "training started while one was running");
            }
            let training_now = w.versions.iter().filter(|v| v.status.as_ref().is_some_and(|s| s.phase == VersionPhase::Training)).count();
            prop_assert!(training_now <= 1);

            // Weights always sum to 100.
            for a in &d.actions {
                if let Action::SetTraffic { weights, .. } = a {
                    prop_assert!(sums_to_100(weights), "SetTraffic {:?}", weights);
                }
            }
            let status = w.model.status.clone().expect("status");
            prop_assert!(sums_to_100(&status.traffic), "status.traffic {:?}", status.traffic);

            // A canary advances (or is promoted by itself) only on passing evidence.
            if let Some(before) = &canary_before {
                let n = version_number(&before.version).expect("canary version name");
                let promoted = d.actions.iter().any(|a| matches!(a, Action::Promote { version, .. } if *version == n));
                let after_step = status.canary.as_ref().filter(|c| c.version == before.version).map(|c| c.step);
                let advanced = after_step.is_some_and(|s| s > before.step);
                if advanced || (promoted && !manual) {
                    prop_assert_eq!(evidence, Some(Evidence::Pass), "advanced without passing evidence");
                    *passed_steps.entry(n).or_default() += 1;
                }
                if promoted && !manual {
                    prop_assert_eq!(passed_steps.get(&n).copied().unwrap_or(0), step_weights.len(),
                        "promoted before every step passed");
                }
                // 100 % to the canary only at a 100 % step reached through passed steps, or by promotion.
                for weights in d.actions.iter().filter_map(|a| match a { Action::SetTraffic { weights, .. } => Some(weights), _ => None }) {
                    if weights.iter().any(|tw| tw.version == before.version && tw.weight == 100) && !promoted {
                        prop_assert_eq!(step_weights.last().copied(), Some(100));
                        prop_assert_eq!(passed_steps.get(&n).copied().unwrap_or(0), step_weights.len() - 1);
                    }
                }
            }

            // Rollback restores the champion to 100 %.
            for a in &d.actions {
                if let Action::Rollback { restored: Some(c), .. } = a {
                    let expected = vec![TrafficWeight { version: format!("v{c}"), weight: 100 }];
                    prop_assert_eq!(d.traffic(), Some(&expected[..]));
                    prop_assert_eq!(&status.traffic, &expected);
                    prop_assert_eq!(status.champion.clone(), Some(format!("v{c}")));
                }
            }

            // The champion only changes through a Promote or a Rollback action.
            if status.champion != champion_before {
                let explained = d.actions.iter().any(|a| matches!(a, Action::Promote { .. } | Action::Rollback { .. }));
                prop_assert!(explained, "champion changed without Promote or Rollback");
            }
        }
    }
}
