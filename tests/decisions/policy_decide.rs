//! Table-driven transitions of the decision core, as user stories.

use crate::policy_support;

use chrono::Duration;
use driftline::api::{
    AnalysisOutcome, ConditionStatus, ModelPhase, RunStage, TrafficWeight, TrainingTrigger,
    VersionPhase,
};
use driftline::drift::ColumnReading;
use driftline::policy::{
    Action, DriftReading, JobState, ManualAction, ServingMetrics, TestSetReading, TrainingJob,
};
use policy_support::*;

fn weights(pairs: &[(&str, u32)]) -> Vec<TrafficWeight> {
    pairs
        .iter()
        .map(|(v, w)| TrafficWeight {
            version: v.to_string(),
            weight: *w,
        })
        .collect()
}

/// v1 champion, v2 in its canary at step 1 (5 %) since `w.now`.
pub(crate) fn canary_world() -> World {
    canary_world_with(quiet_spec())
}

fn canary_world_with(spec: driftline::api::ModelSpec) -> World {
    let mut w = World::new(spec, t("2026-06-01T08:00:00Z"));
    w.bootstrap();
    let d = w.request(
        "r1",
        ManualAction::Retrain {
            reason: Some("new labels".into()),
        },
    );
    assert_eq!(
        d.started_training().map(|(n, trig, _)| (n, trig)),
        Some((2, TrainingTrigger::Manual))
    );
    w.finish_job(2, JobState::Succeeded);
    w.gate(2, passed_gate());
    w.step();
    assert_eq!(
        status(&w).canary.as_ref().map(|c| c.version.as_str()),
        Some("v2"),
        "v2 starts its canary"
    );
    assert_eq!(
        w.moved_traffic.as_deref(),
        None,
        "stable keeps 100 % until the canary is ready"
    );
    assert_eq!(
        w.model.status.as_ref().map(|s| s.traffic.clone()),
        Some(weights(&[("v1", 100)]))
    );
    w.ready.insert(2);
    w.step();
    assert_eq!(
        w.moved_traffic.as_deref(),
        Some(&weights(&[("v1", 95), ("v2", 5)])[..])
    );
    w
}

fn status(w: &World) -> &driftline::api::ModelStatus {
    w.model.status.as_ref().expect("status written")
}

#[test]
fn a_new_model_trains_its_first_version() {
    let mut w = World::new(quiet_spec(), t("2026-06-01T08:00:00Z"));
    let d = w.step();
    assert_eq!(
        d.started_training().map(|(n, trig, _)| (n, trig)),
        Some((1, TrainingTrigger::Initial))
    );
    assert_eq!(status(&w).phase, ModelPhase::Training);
    assert_eq!(
        status(&w).training.as_ref().map(|t| t.version.as_str()),
        Some("v1")
    );
    assert_eq!(status(&w).next_version, 2);
    let training = status(&w)
        .condition("Training")
        .expect("Training condition");
    assert_eq!(
        (training.status, training.reason.as_str()),
        (ConditionStatus::True, "TrainingRunning")
    );
}

#[test]
fn a_training_pod_no_node_can_take_is_reported_with_the_schedulers_words_once() {
    let mut w = World::new(quiet_spec(), t("2026-06-01T08:00:00Z"));
    w.step();
    let why = "0/1 nodes are available: 1 Insufficient nvidia.com/gpu.";
    w.jobs = vec![TrainingJob {
        version: 1,
        state: JobState::Pending,
        unschedulable: Some(why.into()),
    }];
    let d = w.step();
    let c = status(&w)
        .condition("TrainingUnschedulable")
        .expect("TrainingUnschedulable condition")
        .clone();
    assert_eq!(
        (c.status, c.reason.as_str(), c.message.as_str()),
        (
            ConditionStatus::True,
            "Unschedulable",
            "v1's training pod cannot be scheduled: 0/1 nodes are available: 1 Insufficient nvidia.com/gpu."
        )
    );
    assert_eq!(event(&d, "TrainingUnschedulable"), Some(c.message.as_str()));
    assert_eq!(
        status(&w).phase,
        ModelPhase::Training,
        "still training, waiting"
    );
    // Still unschedulable: the condition stays, no second Event.
    w.advance(Duration::minutes(5));
    let d = w.step();
    assert_eq!(event(&d, "TrainingUnschedulable"), None);
    assert_eq!(
        status(&w)
            .condition("TrainingUnschedulable")
            .map(|c| c.status),
        Some(ConditionStatus::True)
    );
    // A GPU node appears: the pod is placed and runs.
    w.jobs = vec![TrainingJob {
        version: 1,
        state: JobState::Running,
        unschedulable: None,
    }];
    let d = w.step();
    let c = status(&w)
        .condition("TrainingUnschedulable")
        .expect("condition kept, now False");
    assert_eq!(
        (c.status, c.reason.as_str()),
        (ConditionStatus::False, "Scheduled")
    );
    assert_eq!(
        event(&d, "TrainingScheduled"),
        Some("v1's training pod was scheduled")
    );
}

#[test]
fn a_model_whose_training_pods_are_placed_has_no_unschedulable_condition() {
    let mut w = World::new(quiet_spec(), t("2026-06-01T08:00:00Z"));
    w.bootstrap();
    assert!(status(&w).condition("TrainingUnschedulable").is_none());
}

#[test]
fn the_first_version_that_passes_the_gate_takes_all_traffic() {
    let mut w = World::new(quiet_spec(), t("2026-06-01T08:00:00Z"));
    w.step();
    w.finish_job(1, JobState::Succeeded);
    w.step();
    assert_eq!(w.phase(1), Some(VersionPhase::Trained));
    assert_eq!(status(&w).phase, ModelPhase::Gating);
    assert!(w.moved_traffic.as_deref().is_none());
    w.gate(1, passed_gate());
    let d = w.step();
    assert!(has_action(&d, |a| matches!(
        a,
        Action::Promote {
            version: 1,
            previous: None,
            ..
        }
    )));
    assert_eq!(
        w.moved_traffic.as_deref(),
        Some(&weights(&[("v1", 100)])[..])
    );
    assert_eq!(status(&w).champion.as_deref(), Some("v1"));
    assert_eq!(status(&w).phase, ModelPhase::Serving);
    assert_eq!(status(&w).traffic_summary.as_deref(), Some("v1:100"));
    // Champion, but not servable until its pods and the gateway's are ready:
    // `kubectl wait --for=condition=Ready` must not return before a request
    // through the gateway can be answered.
    let ready = status(&w).condition("Ready").cloned().expect("Ready");
    assert_eq!(ready.status, ConditionStatus::False);
    assert_eq!(ready.reason, "ChampionStarting");
    assert!(
        ready
            .message
            .contains("waiting for its pods and the gateway's"),
        "{ready:?}"
    );
    w.ready.insert(1);
    w.advance(Duration::seconds(5));
    w.step();
    let ready = status(&w).condition("Ready").cloned().expect("Ready");
    assert_eq!(ready.status, ConditionStatus::True);
    assert_eq!(ready.reason, "ChampionServing");
}

#[test]
fn a_failed_training_is_reported_and_not_retried_until_something_changes() {
    let mut w = World::new(quiet_spec(), t("2026-06-01T08:00:00Z"));
    w.step();
    w.finish_job(
        1,
        JobState::Failed {
            message: "column `quality` missing from s3://datasets/wine/train.csv".into(),
        },
    );
    let d = w.step();
    assert_eq!(w.phase(1), Some(VersionPhase::Failed));
    assert_eq!(status(&w).phase, ModelPhase::Failed);
    assert!(event(&d, "TrainingFailed").is_some_and(|m| m.contains("column `quality` missing")));
    w.advance(Duration::hours(1));
    assert!(
        w.step().started_training().is_none(),
        "no retry loop on an unchanged spec"
    );
    // Fixing the spec retrains.
    w.model.spec.data.target = "grade".into();
    w.model.metadata.generation = Some(2);
    let d = w.step();
    let (n, trigger, reason) = d.started_training().expect("config change retrains");
    assert_eq!((n, trigger), (2, TrainingTrigger::ConfigChanged));
    assert!(reason.contains("config"), "{reason}");
}

#[test]
fn a_candidate_that_fails_the_gate_is_rejected_with_every_failed_check() {
    let mut w = World::new(quiet_spec(), t("2026-06-01T08:00:00Z"));
    w.bootstrap();
    w.request("r1", ManualAction::Retrain { reason: None });
    w.finish_job(2, JobState::Succeeded);
    w.gate(2, failed_gate());
    let d = w.step();
    assert_eq!(w.phase(2), Some(VersionPhase::Rejected));
    let gate = d.actions.iter().find_map(|a| match a {
        Action::RecordGate { version: 2, gate } => Some(gate.clone()),
        _ => None,
    });
    let gate = gate.expect("gate summary recorded");
    assert_eq!(gate.summary, "failed 1/2");
    assert_eq!(gate.failed_checks.len(), 1);
    assert_eq!(gate.champion.as_deref(), Some("v1"));
    let message = event(&d, "GateFailed").expect("GateFailed event");
    assert!(message.contains("accuracy 0.810 < min 0.850"), "{message}");
    assert_eq!(status(&w).candidate, None);
    assert_eq!(status(&w).traffic, weights(&[("v1", 100)]));
    assert!(
        status(&w).canary.is_none(),
        "no canary for a rejected version"
    );
}

#[test]
fn a_manual_retrain_while_training_is_refused() {
    let mut w = World::new(quiet_spec(), t("2026-06-01T08:00:00Z"));
    w.step();
    let d = w.request("r1", ManualAction::Retrain { reason: None });
    assert!(d.started_training().is_none());
    assert!(event(&d, "RequestRefused").is_some_and(|m| m.contains("v1 is still training")));
    // The same request id is acted on only once.
    w.finish_job(1, JobState::Succeeded);
    w.gate(1, passed_gate());
    w.step();
    let d = w.request("r1", ManualAction::Retrain { reason: None });
    assert!(
        d.started_training().is_none(),
        "request r1 was already handled"
    );
    let d = w.request("r2", ManualAction::Retrain { reason: None });
    assert_eq!(d.started_training().map(|(n, _, _)| n), Some(2));
}

#[test]
fn canary_waits_out_each_pause_before_analysing() {
    let mut w = canary_world();
    w.advance(Duration::minutes(4));
    let d = w.step();
    assert!(w.moved_traffic.as_deref().is_none());
    assert_eq!(
        d.requeue_after,
        Some(std::time::Duration::from_secs(6 * 60))
    );
    assert!(
        status(&w)
            .canary
            .as_ref()
            .is_some_and(|c| c.analyses.is_empty())
    );
}

#[test]
fn canary_advances_through_every_step_then_promotes() {
    let mut w = canary_world();
    let mut expected = vec![
        weights(&[("v1", 75), ("v2", 25)]),
        weights(&[("v1", 50), ("v2", 50)]),
    ]
    .into_iter();
    for pause in [10, 10, 20] {
        let start = w.now;
        w.advance(Duration::minutes(pause));
        let mut obs = w.observations();
        obs.canary_metrics = Some(window(2, start, w.now, healthy(800)));
        let d = w.step_with(obs);
        match expected.next() {
            Some(next) => {
                assert_eq!(w.moved_traffic.as_deref(), Some(&next[..]));
                assert!(event(&d, "CanaryStepPassed").is_some_and(|m| m.contains("800 requests")));
            }
            None => {
                assert!(has_action(&d, |a| matches!(
                    a,
                    Action::Promote {
                        version: 2,
                        previous: Some(1),
                        ..
                    }
                )));
                assert_eq!(
                    w.moved_traffic.as_deref(),
                    Some(&weights(&[("v2", 100)])[..])
                );
            }
        }
    }
    assert_eq!(w.phase(2), Some(VersionPhase::Champion));
    assert_eq!(w.phase(1), Some(VersionPhase::Superseded));
    assert_eq!(status(&w).champion.as_deref(), Some("v2"));
    assert_eq!(status(&w).canary, None);
}

#[test]
fn too_few_requests_is_inconclusive_never_a_pass() {
    let mut w = canary_world();
    let start = w.now;
    for minutes in [10, 15, 60] {
        w.now = start + Duration::minutes(minutes);
        let mut obs = w.observations();
        obs.canary_metrics = Some(window(2, start, w.now, healthy(120)));
        let d = w.step_with(obs);
        assert!(
            w.moved_traffic.as_deref().is_none(),
            "no advance on {minutes}m of thin traffic"
        );
        assert!(!has_action(&d, |a| matches!(
            a,
            Action::Promote { .. } | Action::Rollback { .. }
        )));
    }
    let canary = status(&w).canary.clone().expect("canary still running");
    assert_eq!(canary.step, 0);
    assert_eq!(canary.failures, 0, "inconclusive is not a failure either");
    let last = canary.analyses.last().expect("analysis recorded");
    assert_eq!(last.outcome, AnalysisOutcome::Inconclusive);
    assert_eq!(
        canary.analyses.len(),
        1,
        "one record per inconclusive stretch"
    );
    assert!(
        last.message
            .contains("120 requests, fewer than minRequests 500"),
        "{}",
        last.message
    );
}

#[test]
fn sequential_analysis_rolls_back_clear_harm_inside_the_pause_and_watches_quietly_before() {
    let mut spec = quiet_spec();
    let a = &mut spec.rollout.analysis;
    a.method = driftline::api::AnalysisMethod::Sequential;
    a.max_error_rate = None;
    a.max_error_rate_increase = Some(0.01);
    a.max_p99_latency_ms = None;
    a.max_p99_latency_ratio = None;
    a.max_prediction_divergence = None;
    a.min_online_accuracy = None;
    a.failure_limit = 0;
    let mut w = canary_world_with(spec);
    let start = status(&w)
        .canary
        .as_ref()
        .and_then(|c| c.step_started_at)
        .expect("step started");
    let serving = |requests, errors| ServingMetrics {
        requests,
        errors,
        p99_latency_ms: Some(20.0),
        labelled: 0,
        correct: 0,
        slow: None,
        ..Default::default()
    };
    // One minute into a 10-minute pause, too little to tell: no Event, no
    // move, and a poll soon (the sequential read happens at every poll).
    w.now = start + Duration::minutes(1);
    let mut obs = w.observations();
    let mut m = window(2, start, w.now, serving(200, 5));
    m.stable = serving(3800, 76);
    obs.canary_metrics = Some(m);
    let d = w.step_with(obs);
    assert_eq!(
        d.events().count(),
        0,
        "{:?}",
        d.events().collect::<Vec<_>>()
    );
    assert!(
        d.requeue_after
            .is_some_and(|r| r <= std::time::Duration::from_secs(30))
    );
    let last = status(&w)
        .canary
        .as_ref()
        .unwrap()
        .analyses
        .last()
        .cloned()
        .unwrap();
    assert_eq!(last.outcome, AnalysisOutcome::Inconclusive);
    assert!(last.message.contains("keep watching"), "{}", last.message);
    // Three minutes in: 12 % errors against stable's 2 %: harm, rolled back
    // before the pause ends.
    w.now = start + Duration::minutes(3);
    let mut obs = w.observations();
    let mut m = window(2, start, w.now, serving(600, 72));
    m.stable = serving(11_400, 228);
    obs.canary_metrics = Some(m);
    let d = w.step_with(obs);
    assert!(has_action(&d, |a| matches!(
        a,
        Action::Rollback {
            version: 2,
            restored: Some(1),
            ..
        }
    )));
    let message = event(&d, "RolledBack").expect("RolledBack event");
    assert!(
        message.contains("harm") && message.contains("canary error rate minus stable's"),
        "{message}"
    );
    assert_eq!(w.phase(2), Some(VersionPhase::RolledBack));
}

#[test]
fn failed_analyses_within_the_failure_limit_retry_then_roll_back() {
    let mut w = canary_world();
    let bad = ServingMetrics {
        requests: 1000,
        errors: 50,
        p99_latency_ms: Some(20.0),
        labelled: 0,
        correct: 0,
        slow: None,
        ..Default::default()
    };
    for failure in 1..=3u32 {
        let start = status(&w)
            .canary
            .as_ref()
            .and_then(|c| c.step_started_at)
            .expect("step started");
        w.now = start + Duration::minutes(10);
        let mut obs = w.observations();
        obs.canary_metrics = Some(window(2, start, w.now, bad.clone()));
        let d = w.step_with(obs);
        if failure <= 2 {
            assert!(
                event(&d, "CanaryAnalysisFailed")
                    .is_some_and(|m| m.contains(&format!("failure {failure} of 2")))
            );
            assert!(
                w.moved_traffic.as_deref().is_none(),
                "weight held while retrying"
            );
        } else {
            assert!(has_action(&d, |a| matches!(
                a,
                Action::Rollback {
                    version: 2,
                    restored: Some(1),
                    ..
                }
            )));
            assert_eq!(
                w.moved_traffic.as_deref(),
                Some(&weights(&[("v1", 100)])[..])
            );
            let message = event(&d, "RolledBack").expect("RolledBack event");
            assert!(
                message.contains("canary error rate 5.00 % (50/1000) vs max 1.00 %"),
                "{message}"
            );
        }
    }
    assert_eq!(w.phase(2), Some(VersionPhase::RolledBack));
    assert_eq!(status(&w).champion.as_deref(), Some("v1"));
    assert_eq!(status(&w).phase, ModelPhase::Serving);
}

#[test]
fn the_version_keeps_a_record_of_its_rollout() {
    let mut w = canary_world();
    let mut last = None;
    for pause in [10, 10, 20] {
        let start = w.now;
        w.advance(Duration::minutes(pause));
        let mut obs = w.observations();
        obs.canary_metrics = Some(window(2, start, w.now, healthy(800)));
        last = Some(w.step_with(obs));
    }
    let d = last.expect("three decisions");
    let rollout = d
        .actions
        .iter()
        .find_map(|a| match a {
            Action::RecordRollout {
                version: 2,
                rollout,
            } => Some(rollout.clone()),
            _ => None,
        })
        .expect("rollout recorded on promotion");
    assert_eq!(rollout.result, "Promoted");
    assert_eq!(rollout.steps_passed, 3);
    assert_eq!(rollout.analyses.len(), 3);
    assert!(
        rollout
            .analyses
            .iter()
            .all(|a| a.canary_requests == 800 && a.stable_requests == 10_000)
    );
}

/// One analysis of the first step with these canary/stable numbers.
fn analyse_once(
    canary: ServingMetrics,
    stable: ServingMetrics,
    divergence: Option<f64>,
) -> (AnalysisOutcome, String) {
    let mut w = canary_world();
    let start = w.now;
    w.advance(Duration::minutes(10));
    let mut obs = w.observations();
    let mut m = window(2, start, w.now, canary);
    m.stable = stable;
    m.prediction_divergence = divergence;
    obs.canary_metrics = Some(m);
    w.step_with(obs);
    let s = status(&w);
    let record = match &s.canary {
        Some(c) => c.analyses.last().cloned(),
        None => None,
    };
    match record {
        Some(r) => (r.outcome, r.message),
        None => (AnalysisOutcome::Passed, "advanced".into()),
    }
}

#[test]
fn analysis_compares_canary_with_stable_on_the_same_window() {
    let ok = healthy(1000);
    let cases = [
        (
            "error rate fine alone but worse than stable",
            ServingMetrics {
                errors: 9,
                ..ok.clone()
            },
            ServingMetrics {
                requests: 10_000,
                errors: 0,
                ..ok.clone()
            },
            Some(0.02),
            AnalysisOutcome::Failed,
            "canary error rate 0.90 % vs stable 0.00 % on the same window",
        ),
        (
            "p99 fine alone but 1.5x stable",
            ServingMetrics {
                p99_latency_ms: Some(30.0),
                ..ok.clone()
            },
            ServingMetrics {
                requests: 10_000,
                p99_latency_ms: Some(20.0),
                ..ok.clone()
            },
            Some(0.02),
            AnalysisOutcome::Failed,
            "canary p99 30.0 ms is 1.50x stable's 20.0 ms (max 1.20x)",
        ),
        (
            "absolute p99 over bound",
            ServingMetrics {
                p99_latency_ms: Some(80.0),
                ..ok.clone()
            },
            ServingMetrics {
                requests: 10_000,
                p99_latency_ms: Some(75.0),
                ..ok.clone()
            },
            Some(0.02),
            AnalysisOutcome::Failed,
            "canary p99 80.0 ms vs max 50.0 ms",
        ),
        (
            "predictions diverge",
            ok.clone(),
            healthy(10_000),
            Some(0.3),
            AnalysisOutcome::Failed,
            "prediction divergence canary vs stable 0.300",
        ),
        (
            "online accuracy below bound when labels exist",
            ServingMetrics {
                labelled: 200,
                correct: 140,
                ..ok.clone()
            },
            healthy(10_000),
            Some(0.02),
            AnalysisOutcome::Failed,
            "canary online accuracy 70.00 % (140/200 labelled) vs min 80.00 %",
        ),
        (
            "stable too thin to compare",
            ok.clone(),
            healthy(100),
            Some(0.02),
            AnalysisOutcome::Inconclusive,
            "stable served fewer than minRequests",
        ),
        (
            "divergence not reported",
            ok.clone(),
            healthy(10_000),
            None,
            AnalysisOutcome::Inconclusive,
            "prediction divergence not reported",
        ),
    ];
    for (what, canary, stable, divergence, outcome, needle) in cases {
        let (got, message) = analyse_once(canary, stable, divergence);
        assert_eq!(got, outcome, "{what}: {message}");
        assert!(
            message.contains(needle),
            "{what}: `{needle}` not in `{message}`"
        );
    }
    let (got, message) = analyse_once(
        ServingMetrics {
            labelled: 0,
            ..ok.clone()
        },
        healthy(10_000),
        Some(0.02),
    );
    assert_eq!(
        got,
        AnalysisOutcome::Passed,
        "no labels: accuracy is not checked ({message})"
    );
}

#[test]
fn metrics_from_before_the_step_are_inconclusive() {
    let mut w = canary_world();
    let start = w.now;
    w.advance(Duration::minutes(10));
    let mut obs = w.observations();
    obs.canary_metrics = Some(window(
        2,
        start - Duration::minutes(5),
        w.now,
        healthy(5000),
    ));
    w.step_with(obs);
    assert!(w.moved_traffic.as_deref().is_none());
    let c = status(&w).canary.clone().expect("canary running");
    assert_eq!(
        c.analyses.last().map(|a| a.outcome),
        Some(AnalysisOutcome::Inconclusive)
    );
}

/// [`canary_world`] without auto-promotion, after every step passed
/// healthily: the canary waits for `driftline promote`.
pub(crate) fn awaiting_promotion_world() -> World {
    let mut w = canary_world();
    w.model.spec.rollout.auto_promote = false;
    for pause in [10, 10, 20] {
        let start = w.now;
        w.advance(Duration::minutes(pause));
        let mut obs = w.observations();
        obs.canary_metrics = Some(window(2, start, w.now, healthy(800)));
        let d = w.step_with(obs);
        assert!(!has_action(&d, |a| matches!(a, Action::Promote { .. })));
    }
    w
}

#[test]
fn without_auto_promote_the_canary_waits_for_a_user() {
    let mut w = awaiting_promotion_world();
    assert!(
        status(&w)
            .canary
            .as_ref()
            .is_some_and(|c| c.awaiting_promotion)
    );
    assert_eq!(
        status(&w)
            .condition("Progressing")
            .map(|c| c.reason.as_str()),
        Some("AwaitingPromotion")
    );
    let d = w.request("p1", ManualAction::Promote { version: None });
    assert!(has_action(&d, |a| matches!(
        a,
        Action::Promote {
            version: 2,
            previous: Some(1),
            ..
        }
    )));
    assert!(event(&d, "ManualPromotion").is_some_and(|m| m.contains("request p1")));
}

#[test]
fn manual_rollback_of_a_canary_restores_the_champion() {
    let mut w = canary_world();
    let d = w.request("rb", ManualAction::Rollback);
    assert!(has_action(&d, |a| matches!(
        a,
        Action::Rollback {
            version: 2,
            restored: Some(1),
            ..
        }
    )));
    assert_eq!(
        w.moved_traffic.as_deref(),
        Some(&weights(&[("v1", 100)])[..])
    );
    assert_eq!(w.phase(2), Some(VersionPhase::RolledBack));
}

#[test]
fn manual_rollback_of_a_champion_restores_the_previous_one() {
    let mut w = canary_world();
    w.request("p", ManualAction::Promote { version: None });
    assert_eq!(status(&w).champion.as_deref(), Some("v2"));
    let d = w.request("rb", ManualAction::Rollback);
    assert!(has_action(&d, |a| matches!(
        a,
        Action::Rollback {
            version: 2,
            restored: Some(1),
            ..
        }
    )));
    assert_eq!(
        w.moved_traffic.as_deref(),
        Some(&weights(&[("v1", 100)])[..])
    );
    assert_eq!(w.phase(1), Some(VersionPhase::Champion));
    assert_eq!(w.phase(2), Some(VersionPhase::RolledBack));
    let d = w.request("rb2", ManualAction::Rollback);
    assert!(event(&d, "RequestRefused").is_some_and(|m| m.contains("no superseded version")));
}

#[test]
fn promoting_a_rejected_version_is_an_audited_override() {
    let mut w = World::new(quiet_spec(), t("2026-06-01T08:00:00Z"));
    w.bootstrap();
    w.request("r1", ManualAction::Retrain { reason: None });
    w.finish_job(2, JobState::Succeeded);
    w.gate(2, failed_gate());
    w.step();
    let d = w.request("p1", ManualAction::Promote { version: Some(2) });
    let (reason, message) = d
        .events()
        .find(|(r, _)| *r == "ManualPromotion")
        .expect("override recorded as an event");
    assert_eq!(reason, "ManualPromotion");
    assert!(message.contains("overriding its failed gate"), "{message}");
    assert!(d.actions.iter().any(|a| matches!(a, Action::RecordEvent { kind: driftline::policy::EventKind::Warning, reason, .. } if reason == "ManualPromotion")));
    assert_eq!(status(&w).champion.as_deref(), Some("v2"));
}

#[test]
fn pausing_holds_the_canary_and_blocks_training_until_resumed() {
    let mut w = canary_world();
    w.model.spec.paused = true;
    let start = w.now;
    w.advance(Duration::minutes(30));
    let mut obs = w.observations();
    obs.canary_metrics = Some(window(2, start, w.now, healthy(900)));
    let d = w.step_with(obs.clone());
    assert!(
        w.moved_traffic.as_deref().is_none(),
        "weights held while paused"
    );
    assert_eq!(status(&w).phase, ModelPhase::Paused);
    assert!(event(&d, "Paused").is_some());
    let d = w.request("r9", ManualAction::Retrain { reason: None });
    assert!(event(&d, "RequestRefused").is_some_and(|m| m.contains("paused")));
    w.model.spec.paused = false;
    let d = w.step_with(obs);
    assert!(event(&d, "Resumed").is_some());
    assert_eq!(
        w.moved_traffic.as_deref(),
        Some(&weights(&[("v1", 75), ("v2", 25)])[..])
    );
}

/// A window as the server reports it: the spec's fixed threshold 0.1 and
/// equal importance weights (so `weighted` counts like `share`).
fn reading(end: &str, alcohol: f64, ph: f64) -> DriftReading {
    let column = |name: &str, value: f64| ColumnReading {
        name: name.into(),
        value,
        threshold: 0.1,
        weight: 1.0,
    };
    DriftReading {
        window_end: t(end),
        rows: 1000,
        features: vec![
            column("alcohol", alcohol),
            column("ph", ph),
            column("color", 0.9),
        ],
        prediction: None,
        test_set: None,
        estimate: None,
    }
}

/// `r` with the same window compared with the gate's test set.
fn against_test_set(mut r: DriftReading, alcohol: f64, ph: f64) -> DriftReading {
    let column = |name: &str, value: f64| ColumnReading {
        name: name.into(),
        value,
        threshold: 0.1,
        weight: 1.0,
    };
    r.test_set = Some(TestSetReading {
        features: vec![
            column("alcohol", alcohol),
            column("ph", ph),
            column("color", 0.9),
        ],
        prediction: None,
    });
    r
}

/// v1 champion with drift-only retraining.
fn drift_world() -> World {
    let mut s = spec();
    if let Some(r) = s.retrain.as_mut() {
        r.schedule = None;
        r.time_zone = None;
        r.on_new_data = false;
    }
    let mut w = World::new(s, t("2026-06-01T08:00:00Z"));
    w.bootstrap();
    w.advance(Duration::hours(12));
    w
}

#[test]
fn traffic_that_left_the_test_set_for_k_windows_makes_it_stale_naming_the_features() {
    let mut w = drift_world();
    // Windows like the training data; each `(end, alcohol, ph)` is how far
    // it is from the gate's test set.
    let windows = |w: &mut World, against: &[(&str, f64, f64)]| {
        let mut obs = w.observations();
        obs.drift = against
            .iter()
            .map(|(end, alcohol, ph)| {
                against_test_set(
                    reading(&format!("2026-06-01T{end}:00Z"), 0.01, 0.01),
                    *alcohol,
                    *ph,
                )
            })
            .collect();
        w.step_with(obs)
    };
    let stale = |w: &World| {
        status(w)
            .condition("TestSetStale")
            .map(|c| (c.status, c.message.clone()))
    };
    // Traffic like the test set.
    let d = windows(&mut w, &[("19:00", 0.02, 0.01)]);
    assert_eq!(stale(&w).map(|s| s.0), Some(ConditionStatus::False));
    assert!(event(&d, "TestSetStale").is_none());
    // Off the test set on alcohol: two windows are not yet enough.
    let d = windows(&mut w, &[("19:10", 0.3, 0.05), ("19:20", 0.25, 0.05)]);
    assert_eq!(
        stale(&w).map(|s| s.0),
        Some(ConditionStatus::False),
        "2 of 3"
    );
    assert!(event(&d, "TestSetStale").is_none());
    let d = windows(&mut w, &[("19:30", 0.35, 0.05)]);
    let (condition, message) = stale(&w).expect("TestSetStale");
    assert_eq!(condition, ConditionStatus::True);
    assert!(
        message.contains("on alcohol for 3 windows") && !message.contains("ph"),
        "{message}"
    );
    let said = event(&d, "TestSetStale").expect("a Warning Event");
    assert_eq!(said, message);
    let freshness = status(&w).test_set_freshness.clone().expect("freshness");
    assert_eq!(freshness.summary, "stale: alcohol (3/3 windows)");
    assert_eq!(freshness.stale_features, vec!["alcohol".to_string()]);
    let alcohol = freshness
        .features
        .iter()
        .find(|f| f.name == "alcohol")
        .expect("per feature");
    assert_eq!((alcohol.value, alcohol.threshold), (0.35, 0.1));
    assert!(
        d.started_training().is_none(),
        "a stale test set is not drift"
    );
    // Said once while it stays stale; a window like the test set clears it.
    let d = windows(&mut w, &[("19:40", 0.4, 0.05)]);
    assert!(event(&d, "TestSetStale").is_none());
    let d = windows(&mut w, &[("19:50", 0.02, 0.01)]);
    assert_eq!(stale(&w).map(|s| s.0), Some(ConditionStatus::False));
    assert!(event(&d, "TestSetFresh").is_some());
}

#[test]
fn drift_retrains_after_k_consecutive_drifted_windows() {
    let mut w = drift_world();
    // alcohol over 0.1, ph under its 0.2 override, color ignored: 1/2 features = driftedShare 0.5.
    let mut obs = w.observations();
    obs.drift = vec![
        reading("2026-06-01T19:00:00Z", 0.15, 0.12),
        reading("2026-06-01T19:10:00Z", 0.16, 0.1),
    ];
    let d = w.step_with(obs);
    assert!(d.started_training().is_none(), "2 of 3 windows");
    assert_eq!(
        status(&w).drift.as_ref().map(|s| s.summary.as_str()),
        Some("0.160 (2/3 windows)")
    );
    // An incomplete window does not count; the next complete one does.
    let mut obs = w.observations();
    obs.drift = vec![
        DriftReading {
            rows: 10,
            ..reading("2026-06-01T19:15:00Z", 0.9, 0.9)
        },
        reading("2026-06-01T19:20:00Z", 0.17, 0.1),
    ];
    let d = w.step_with(obs);
    let (_, trigger, reason) = d.started_training().expect("third drifted window retrains");
    assert_eq!(trigger, TrainingTrigger::Drift);
    assert!(
        reason.contains("drift for 3 windows in a row (needed 3)"),
        "{reason}"
    );
    assert!(reason.contains("drifted: alcohol"), "{reason}");
    assert_eq!(
        status(&w).condition("DriftDetected").map(|c| c.status),
        Some(ConditionStatus::True)
    );
}

/// A window without drift whose traffic the champion answered with mean
/// confidence `estimate`, its validation accuracy being 0.92.
fn estimate_reading(end: &str, estimate: f64) -> DriftReading {
    DriftReading {
        estimate: Some(driftline::policy::WindowEstimate {
            rows: 1000,
            expected_correct: estimate * 1000.0,
            validation_accuracy: Some(0.92),
        }),
        ..reading(end, 0.01, 0.01)
    }
}

#[test]
fn an_estimated_drop_retrains_unless_late_labels_show_the_estimate_is_off() {
    let mut w = drift_world();
    if let Some(r) = w.model.spec.retrain.as_mut() {
        r.on_drift = false;
        r.on_estimated_drop = Some(driftline::api::EstimatedDropTrigger {
            metric: Default::default(),
            max_drop: 0.03,
            tolerance: 0.05,
            min_labels: 100,
        });
    }
    // 0.02 below validation: within maxDrop.
    let mut obs = w.observations();
    obs.drift = vec![estimate_reading("2026-06-01T19:00:00Z", 0.90)];
    assert!(w.step_with(obs).started_training().is_none());
    let e = status(&w).estimated_accuracy.clone().expect("estimated");
    assert_eq!((e.version.as_str(), e.requests), ("v1", 1000));
    assert!((e.value - 0.90).abs() < 1e-9 && e.validation_accuracy == Some(0.92));

    // Labels show the estimate 0.3 too high: unreliable, so a drop to 0.80
    // triggers nothing, and says why once.
    let mut obs = w.observations();
    obs.champion_labels = Some(driftline::api::LabelCounts {
        labelled: 200,
        correct: 120,
        confidence_sum: 180.0,
    });
    obs.drift = vec![estimate_reading("2026-06-01T19:10:00Z", 0.80)];
    let d = w.step_with(obs.clone());
    assert!(d.started_training().is_none(), "an unreliable estimate");
    let condition = status(&w)
        .condition("EstimateUnreliable")
        .cloned()
        .expect("set");
    assert_eq!(condition.status, ConditionStatus::True);
    assert!(
        condition.message.contains("0.900 against 0.600"),
        "{}",
        condition.message
    );
    let message = event(&d, "EstimateUnreliable").expect("a Warning Event");
    assert!(message.contains("200 labelled requests"), "{message}");
    let e = status(&w).estimated_accuracy.clone().expect("estimated");
    assert_eq!((e.realised, e.labelled), (Some(0.6), 200));
    obs.drift = vec![estimate_reading("2026-06-01T19:15:00Z", 0.80)];
    let d = w.step_with(obs);
    assert!(event(&d, "EstimateUnreliable").is_none(), "said once");
    assert!(d.started_training().is_none());

    // The next 200 labels agree with the estimate (0.850 against 0.850):
    // it is reliable again, although over all 400 labels the estimate
    // (0.875) is still 0.15 off what they realised (0.725), and the next
    // window below the bound retrains.
    let mut obs = w.observations();
    obs.champion_labels = Some(driftline::api::LabelCounts {
        labelled: 400,
        correct: 290,
        confidence_sum: 350.0,
    });
    obs.drift = vec![estimate_reading("2026-06-01T19:20:00Z", 0.80)];
    let d = w.step_with(obs);
    assert_eq!(
        status(&w).condition("EstimateUnreliable").map(|c| c.status),
        Some(ConditionStatus::False)
    );
    let e = status(&w).estimated_accuracy.clone().expect("estimated");
    assert_eq!(
        (e.realised, e.estimated_on_labelled, e.labelled),
        (Some(0.85), Some(0.85), 200),
        "the newest batch is what is judged"
    );
    let (_, trigger, reason) = d.started_training().expect("the estimated drop retrains");
    assert_eq!(trigger, TrainingTrigger::EstimatedDrop);
    assert!(
        reason.contains("estimated accuracy of v1 0.800")
            && reason.contains("0.120 below its validation accuracy 0.920")
            && reason.contains("maxDrop 0.03"),
        "{reason}"
    );
}

#[test]
fn a_clean_window_resets_the_drift_count() {
    let mut w = drift_world();
    let mut obs = w.observations();
    obs.drift = vec![
        reading("2026-06-01T19:00:00Z", 0.15, 0.1),
        reading("2026-06-01T19:10:00Z", 0.15, 0.1),
        reading("2026-06-01T19:20:00Z", 0.05, 0.1),
        reading("2026-06-01T19:30:00Z", 0.15, 0.1),
    ];
    let d = w.step_with(obs.clone());
    assert!(d.started_training().is_none());
    assert_eq!(
        status(&w).drift.as_ref().map(|s| s.consecutive_windows),
        Some(1)
    );
    // Windows already counted are not counted again.
    w.step_with(obs);
    assert_eq!(
        status(&w).drift.as_ref().map(|s| s.consecutive_windows),
        Some(1)
    );
}

#[test]
fn drift_retrains_respect_cooldown_and_max_per_day() {
    let mut w = drift_world();
    w.now = t("2026-06-01T10:00:00Z"); // 2h after v1 started: inside the 6h cooldown
    let mut obs = w.observations();
    obs.drift = (0..3)
        .map(|i| reading(&format!("2026-06-01T09:{:02}:00Z", 10 * i), 0.3, 0.1))
        .collect();
    let d = w.step_with(obs);
    assert!(d.started_training().is_none());
    let message = event(&d, "RetrainDeferred").expect("deferral explained");
    assert!(
        message.contains("cooldown 6h: last training started 2h00m ago"),
        "{message}"
    );
    assert_eq!(
        d.requeue_after,
        Some(std::time::Duration::from_secs(4 * 3600))
    );
    // After the cooldown the still-drifting Model retrains.
    w.now = t("2026-06-01T14:00:01Z");
    let d = w.step();
    assert_eq!(
        d.started_training().map(|(_, trig, _)| trig),
        Some(TrainingTrigger::Drift)
    );

    // maxPerDay 2: two automatic retrains in 24h, the third waits.
    w.finish_job(
        2,
        JobState::Failed {
            message: "OOMKilled".into(),
        },
    );
    w.step();
    let mut s = w.model.status.clone().expect("status");
    s.automatic_retrains = vec![t("2026-06-01T14:00:01Z"), t("2026-06-01T20:30:00Z")];
    s.last_training = s.last_training.map(|mut l| {
        l.started_at = t("2026-06-01T20:30:00Z");
        l
    });
    w.model.status = Some(s);
    w.now = t("2026-06-02T03:00:00Z");
    let mut obs = w.observations();
    obs.drift = (0..3)
        .map(|i| reading(&format!("2026-06-02T02:{:02}:00Z", 10 * i), 0.3, 0.1))
        .collect();
    let d = w.step_with(obs);
    assert!(d.started_training().is_none());
    let message = event(&d, "RetrainDeferred").expect("deferral explained");
    assert!(message.contains("maxPerDay 2 reached"), "{message}");
}

#[test]
fn new_data_retrains_once_per_digest_change() {
    let mut s = spec();
    if let Some(r) = s.retrain.as_mut() {
        r.schedule = None;
        r.time_zone = None;
        r.on_drift = false;
    }
    let mut w = World::new(s, t("2026-06-01T08:00:00Z"));
    w.source_digest = Some("sha256:aaaa".into());
    w.bootstrap();
    w.advance(Duration::hours(7));
    assert!(w.step().started_training().is_none(), "same digest");
    w.source_digest = Some("sha256:bbbb".into());
    let d = w.step();
    let (_, trigger, reason) = d.started_training().expect("new data retrains");
    assert_eq!(trigger, TrainingTrigger::NewData);
    assert!(reason.contains("sha256:aaaa -> sha256:bbbb"), "{reason}");
    assert_eq!(status(&w).data_digest.as_deref(), Some("sha256:bbbb"));
}

#[test]
fn retention_keeps_the_newest_superseded_versions() {
    let mut w = World::new(quiet_spec(), t("2026-06-01T08:00:00Z"));
    w.model.spec.rollout.retain_superseded = 2;
    w.bootstrap();
    let mut deleted = Vec::new();
    for n in 2..=5u32 {
        w.request(&format!("r{n}"), ManualAction::Retrain { reason: None });
        w.finish_job(n, JobState::Succeeded);
        w.gate(n, passed_gate());
        w.ready.insert(n);
        w.step();
        let d = w.request(&format!("p{n}"), ManualAction::Promote { version: None });
        deleted.extend(d.actions.iter().filter_map(|a| match a {
            Action::DeleteVersion { version, .. } => Some(*version),
            _ => None,
        }));
    }
    assert_eq!(deleted, [1, 2], "v3 and v4 kept, v5 champion");
    let left: Vec<u32> = w.versions.iter().map(|v| v.spec.version).collect();
    assert_eq!(left, [3, 4, 5]);
}

#[test]
fn an_invalid_spec_is_reported_and_nothing_starts() {
    let mut s = quiet_spec();
    s.training.epochs = 0;
    let mut w = World::new(s, t("2026-06-01T08:00:00Z"));
    let d = w.step();
    assert!(d.started_training().is_none());
    let c = status(&w)
        .condition("SpecValid")
        .cloned()
        .expect("SpecValid condition");
    assert_eq!(
        (c.status, c.reason.as_str()),
        (ConditionStatus::False, "InvalidSpec")
    );
    assert!(
        c.message
            .contains("spec.training.epochs: epochs must be at least 1"),
        "{}",
        c.message
    );
    assert!(event(&d, "InvalidSpec").is_some());
    // Reported once, not on every reconcile.
    w.advance(Duration::minutes(1));
    assert!(event(&w.step(), "InvalidSpec").is_none());
}

#[test]
fn conditions_keep_their_transition_time_while_unchanged() {
    let mut w = World::new(quiet_spec(), t("2026-06-01T08:00:00Z"));
    w.step();
    let first = status(&w)
        .condition("Training")
        .cloned()
        .expect("Training condition");
    w.advance(Duration::minutes(5));
    w.step();
    let again = status(&w)
        .condition("Training")
        .cloned()
        .expect("Training condition");
    assert_eq!(again.last_transition_time, first.last_transition_time);
    w.finish_job(1, JobState::Succeeded);
    w.advance(Duration::minutes(5));
    w.step();
    let flipped = status(&w)
        .condition("Training")
        .cloned()
        .expect("Training condition");
    assert_eq!(flipped.status, ConditionStatus::False);
    assert_eq!(flipped.last_transition_time, w.now);
    assert_eq!(flipped.observed_generation, Some(1));
}

#[test]
fn a_restarted_operator_that_lost_status_never_starts_a_second_training() {
    let mut w = World::new(quiet_spec(), t("2026-06-01T08:00:00Z"));
    w.step();
    // Status lost (e.g. restored from a backup without it); v1's Job still runs.
    w.model.status = None;
    let d = w.request("r1", ManualAction::Retrain { reason: None });
    assert!(d.started_training().is_none());
    assert!(event(&d, "RequestRefused").is_some_and(|m| m.contains("v1 is still training")));
    assert_eq!(
        status(&w).next_version,
        2,
        "version numbers are never reused"
    );
    assert_eq!(
        status(&w)
            .training
            .as_ref()
            .map(|t| (t.version.as_str(), t.trigger)),
        Some(("v1", TrainingTrigger::Initial))
    );
    // The adopted run finishes like any other: v1 becomes the candidate.
    w.finish_job(1, JobState::Succeeded);
    w.step();
    assert_eq!(w.phase(1), Some(VersionPhase::Trained));
    assert_eq!(status(&w).candidate.as_deref(), Some("v1"));
}

#[test]
fn a_version_whose_status_was_never_written_is_taken_back_at_its_data_check() {
    let mut w = World::new(quiet_spec(), t("2026-06-01T08:00:00Z"));
    w.step();
    assert_eq!(w.phase(1), Some(VersionPhase::CheckingData));
    // The reconcile that created v1 lost both status writes (a flaky API
    // server): v1 exists without a status and the Model knows no run.
    w.model.status = None;
    w.versions[0].status = None;
    // Its data check Job was never created, so nothing has run or reported.
    w.jobs.clear();
    w.data_checks.clear();
    let d = w.step();
    assert!(d.started_training().is_none(), "v1 is adopted, not doubled");
    let run = status(&w).training.clone().expect("v1 adopted as the run");
    assert_eq!(
        (run.version.as_str(), run.stage),
        ("v1", RunStage::CheckingData),
        "a version that never ran starts at its data check, never straight at training"
    );
}

#[test]
fn a_decision_on_a_model_status_older_than_its_versions_never_moves_a_version_back() {
    let mut w = World::new(quiet_spec(), t("2026-06-01T08:00:00Z"));
    w.step();
    w.step();
    assert_eq!(w.phase(1), Some(VersionPhase::Training));
    let before_promotion = w.model.status.clone();
    w.finish_job(1, JobState::Succeeded);
    w.gate(1, passed_gate());
    w.ready.insert(1);
    w.step();
    assert_eq!(w.phase(1), Some(VersionPhase::Champion));
    // The promotion's version writes landed but the Model's status write was
    // lost (a flaky API server): the next decision reads "v1 is training"
    // beside a v1 that is already champion with its gate recorded.
    w.model.status = before_promotion;
    let d = w.step();
    assert!(
        !has_action(&d, |a| matches!(a, Action::SetVersionPhase { .. })),
        "no version moves back: {:?}",
        d.actions
    );
    assert!(event(&d, "TrainingSucceeded").is_none(), "announced once");
    let s = status(&w);
    assert_eq!(
        (
            s.champion.as_deref(),
            s.candidate.as_deref(),
            s.training.is_none()
        ),
        (Some("v1"), None, true)
    );
    assert_eq!(s.phase, ModelPhase::Serving);
    assert_eq!(s.traffic, weights(&[("v1", 100)]));
    assert_eq!(
        s.last_training.as_ref().and_then(|t| t.outcome.as_deref()),
        Some("Succeeded")
    );
}

#[test]
fn a_candidate_that_passes_its_gate_while_paused_is_promoted_when_resumed() {
    let mut w = World::new(quiet_spec(), t("2026-06-01T08:00:00Z"));
    w.step();
    w.step();
    w.model.spec.paused = true;
    w.finish_job(1, JobState::Succeeded);
    w.gate(1, passed_gate());
    w.ready.insert(1);
    w.step();
    w.step();
    assert_eq!(w.phase(1), Some(VersionPhase::Trained), "held while paused");
    assert_eq!(status(&w).champion, None);
    w.model.spec.paused = false;
    let d = w.step();
    assert!(event(&d, "Promoted").is_some(), "{:?}", d.actions);
    assert_eq!(w.phase(1), Some(VersionPhase::Champion));
    assert!(
        w.versions[0]
            .status
            .as_ref()
            .and_then(|s| s.gate.as_ref())
            .is_some_and(|g| g.passed),
        "the gate is recorded when it acts"
    );
}

#[test]
fn a_lost_status_mid_canary_keeps_the_champion_and_restarts_the_canary() {
    let mut w = canary_world();
    w.advance(Duration::minutes(3));
    w.model.status = None;
    let d = w.step();
    assert_eq!(status(&w).champion.as_deref(), Some("v1"));
    assert_eq!(status(&w).candidate.as_deref(), Some("v2"));
    // v2 is ready, so the first step's weight is applied again and its pause restarts.
    assert_eq!(
        w.moved_traffic.as_deref(),
        Some(&weights(&[("v1", 95), ("v2", 5)])[..])
    );
    let canary = status(&w).canary.clone().expect("canary restored");
    assert_eq!((canary.step, canary.step_started_at), (0, Some(w.now)));
    assert!(
        d.started_training().is_none(),
        "no bootstrap over existing versions"
    );
}

#[test]
fn moving_training_to_another_node_does_not_retrain_but_new_hyper_parameters_do() {
    let base = quiet_spec();
    let hash = driftline::policy::config_hash(&base);
    let mut placement = base.clone();
    placement.training.image = Some("ghcr.io/driftline/driftline:cpu".into());
    placement.training.node_selector.clear();
    placement.training.retries = 5;
    assert_eq!(driftline::policy::config_hash(&placement), hash);
    let mut hyper = base.clone();
    hyper.training.learning_rate = 0.01;
    assert_ne!(driftline::policy::config_hash(&hyper), hash);

    let mut w = World::new(base, t("2026-06-01T08:00:00Z"));
    w.bootstrap();
    w.model.spec = placement;
    assert!(w.step().started_training().is_none());
    w.model.spec = hyper;
    assert_eq!(
        w.step().started_training().map(|(_, trig, _)| trig),
        Some(TrainingTrigger::ConfigChanged)
    );
}

#[test]
fn a_canary_without_traffic_is_rolled_back_at_its_progress_deadline() {
    let mut w = canary_world();
    let start = w.now;
    // Pause 10m, then up to the 2h progressDeadline of thin traffic.
    w.now = start + Duration::minutes(10) + Duration::hours(2) - Duration::seconds(1);
    let mut obs = w.observations();
    obs.canary_metrics = Some(window(2, start, w.now, healthy(40)));
    let d = w.step_with(obs);
    assert!(!has_action(&d, |a| matches!(a, Action::Rollback { .. })));
    assert_eq!(d.requeue_after, Some(std::time::Duration::from_secs(1)));
    w.advance(Duration::seconds(1));
    let mut obs = w.observations();
    obs.canary_metrics = Some(window(2, start, w.now, healthy(41)));
    let d = w.step_with(obs);
    assert!(has_action(&d, |a| matches!(
        a,
        Action::Rollback {
            version: 2,
            restored: Some(1),
            ..
        }
    )));
    assert_eq!(
        w.moved_traffic.as_deref(),
        Some(&weights(&[("v1", 100)])[..])
    );
    let message = event(&d, "RolledBack").expect("RolledBack event");
    assert!(
        message.contains("no conclusive analysis 2h00m after the pause (progressDeadline 2h00m)"),
        "{message}"
    );
    assert!(
        message.contains("41 requests, fewer than minRequests 500"),
        "{message}"
    );
}

#[test]
fn a_stale_cache_showing_the_champion_as_trained_does_not_make_it_its_own_candidate() {
    let mut w = World::new(quiet_spec(), t("2026-06-01T08:00:00Z"));
    w.bootstrap();
    // The operator's cache has not seen v1's Champion phase yet.
    for v in &mut w.versions {
        if v.spec.version == 1 {
            v.status.get_or_insert_with(Default::default).phase = VersionPhase::Trained;
        }
    }
    w.step();
    assert_eq!(status(&w).candidate, None);
    assert_eq!(status(&w).phase, ModelPhase::Serving);
    // A status that already names the champion as candidate heals too.
    let mut s = status(&w).clone();
    s.candidate = Some("v1".into());
    w.model.status = Some(s);
    w.step();
    assert_eq!(status(&w).candidate, None);
    assert_eq!(status(&w).phase, ModelPhase::Serving);
}

/// A refused training window: the run ends before its training Job, the
/// version is DataRejected with every failed check, the Model says
/// `DataValid=False` with an Event, and the next data change retries.
#[test]
fn a_day_leaving_the_window_is_not_new_data_and_an_unlistable_source_is_said_once() {
    let mut spec = quiet_spec();
    spec.retrain = Some(driftline::api::RetrainSpec {
        on_new_data: true,
        ..Default::default()
    });
    let mut w = World::new(spec, t("2026-06-01T08:00:00Z"));
    w.source_digest = Some("files:days1-30".into());
    w.bootstrap();
    // A day later day 1 left the window and nothing arrived: a run now
    // would read fewer files, but the last run's window is unchanged.
    w.advance(Duration::days(1));
    w.source_digest = Some("files:days2-30".into());
    w.source_against_last = Some("files:days1-30".into());
    let d = w.step();
    assert!(d.started_training().is_none(), "{:?}", d.actions);
    let readable = d
        .status
        .condition(driftline::policy::conditions::SOURCE_READABLE)
        .expect("SourceReadable");
    assert_eq!(readable.status, ConditionStatus::True);

    // The prefix vanishes: said once, never taken for new data.
    w.advance(Duration::seconds(30));
    w.source_digest = None;
    w.source_against_last = None;
    w.source_error = Some("no csv, jsonl or parquet files under s3://b/events/".into());
    let d = w.step();
    assert!(d.started_training().is_none());
    let readable = d
        .status
        .condition(driftline::policy::conditions::SOURCE_READABLE)
        .expect("SourceReadable");
    assert_eq!(readable.status, ConditionStatus::False);
    assert_eq!(readable.reason, "SourceUnreadable");
    assert!(readable.message.contains("s3://b/events/"), "{readable:?}");
    let said = event(&d, "SourceUnreadable").expect("a SourceUnreadable Event");
    assert!(said.contains("no csv, jsonl or parquet files"), "{said}");
    w.advance(Duration::seconds(30));
    let d = w.step();
    assert!(event(&d, "SourceUnreadable").is_none(), "said once");
    assert!(d.started_training().is_none());

    // Back, unchanged: readable again, still nothing new.
    w.advance(Duration::seconds(30));
    w.source_error = None;
    w.source_digest = Some("files:days2-30".into());
    w.source_against_last = Some("files:days1-30".into());
    let d = w.step();
    assert!(event(&d, "SourceReadable").is_some());
    assert!(d.started_training().is_none());

    // A new day arrives: new data, and the run stores what it reads.
    w.advance(Duration::seconds(30));
    w.source_digest = Some("files:days2-31".into());
    w.source_against_last = None;
    let d = w.step();
    assert_eq!(
        d.started_training().map(|(n, trig, _)| (n, trig)),
        Some((2, TrainingTrigger::NewData))
    );
    assert_eq!(d.status.data_digest.as_deref(), Some("files:days2-31"));
}

#[test]
fn refused_data_ends_the_run_before_training_and_new_data_retries() {
    let mut spec = quiet_spec();
    spec.retrain = Some(driftline::api::RetrainSpec {
        on_new_data: true,
        ..Default::default()
    });
    let mut w = World::new(spec, t("2026-06-01T08:00:00Z"));
    w.source_digest = Some("files:day1".into());
    w.bootstrap();
    w.source_digest = Some("files:day2".into());
    let d = w.step();
    assert_eq!(
        d.started_training().map(|(n, trig, _)| (n, trig)),
        Some((2, TrainingTrigger::NewData))
    );
    assert_eq!(w.phase(2), Some(VersionPhase::CheckingData));
    let refused = driftline::api::DataVerdict {
        passed: false,
        checks: vec![driftline::api::DataCheck {
            name: "maxTargetNullRate".into(),
            column: Some("quality".into()),
            class: None,
            value: Some(1.0),
            bound: Some(0.0),
            passed: false,
            blocking: true,
            message: "target `quality` is empty in 100.0 % of rows".into(),
        }],
    };
    w.data_check(2, refused);
    // Even a Job the cluster reports as done is not looked at: none was made.
    w.finish_job(2, JobState::Succeeded);
    w.advance(Duration::seconds(30));
    let d = w.step();
    assert_eq!(w.phase(2), Some(VersionPhase::DataRejected));
    let recorded = d
        .actions
        .iter()
        .find_map(|a| match a {
            Action::RecordDataCheck {
                version: 2,
                data_check,
            } => Some(data_check.clone()),
            _ => None,
        })
        .expect("the verdict is recorded on v2");
    assert!(!recorded.passed);
    assert_eq!(recorded.failed_checks.len(), 1);
    assert_eq!(recorded.failed_checks[0].column.as_deref(), Some("quality"));
    let status = &d.status;
    assert!(status.training.is_none(), "{status:?}");
    assert_eq!(status.candidate, None, "nothing to gate");
    assert_eq!(status.champion.as_deref(), Some("v1"));
    let valid = status
        .condition(driftline::policy::conditions::DATA_VALID)
        .expect("DataValid");
    assert_eq!(valid.status, ConditionStatus::False);
    assert!(
        valid.message.contains("target `quality` is empty"),
        "{valid:?}"
    );
    let rejected = event(&d, "DataRejected").expect("a DataRejected Event");
    assert!(
        rejected.contains("no training Job was created"),
        "{rejected}"
    );

    // The same data: nothing new starts.
    w.advance(Duration::seconds(30));
    assert!(w.step().started_training().is_none());
    // The next data change retries, and its clean window trains.
    w.source_digest = Some("files:day3".into());
    let d = w.step();
    assert_eq!(d.started_training().map(|(n, _, _)| n), Some(3));
    w.advance(Duration::seconds(30));
    let d = w.step();
    assert_eq!(w.phase(3), Some(VersionPhase::Training));
    assert!(event(&d, "DataCheckPassed").is_some());
    let valid = d
        .status
        .condition(driftline::policy::conditions::DATA_VALID)
        .expect("DataValid");
    assert_eq!(valid.status, ConditionStatus::True);
}
