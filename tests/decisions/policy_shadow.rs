//! The shadow stage in the decision core (#20): between the gate and the
//! first canary step, the champion keeps all traffic while the verdict on
//! the paired answers sends the candidate into its canary or rejects it.

use crate::policy_support;

use chrono::Duration;
use driftline::api::{
    Agreement, ConditionStatus, ModelPhase, ShadowSpec, ShadowTally, TrafficWeight, VersionPhase,
};
use driftline::policy::{Action, Decision, JobState, ManualAction, ShadowObservation};
use policy_support::*;

fn only_v1() -> Vec<TrafficWeight> {
    vec![TrafficWeight {
        version: "v1".into(),
        weight: 100,
    }]
}

/// v1 champion; v2 passed its gate and is in shadow, mirrored since `w.now`.
pub(crate) fn shadow_world() -> World {
    let mut spec = quiet_spec();
    spec.rollout.shadow = Some(
        serde_json::from_value::<ShadowSpec>(serde_json::json!({
            "duration": "10m", "minRequests": 200, "maxDisagreement": 0.05, "slices": ["red"],
        }))
        .expect("shadow spec"),
    );
    spec.validate().expect("a valid spec");
    let mut w = World::new(spec, t("2026-06-01T08:00:00Z"));
    w.bootstrap();
    w.request("r1", ManualAction::Retrain { reason: None });
    w.finish_job(2, JobState::Succeeded);
    w.gate(2, passed_gate());
    let d = w.step();
    assert_eq!(w.phase(2), Some(VersionPhase::Shadow));
    assert!(event(&d, "ShadowStarted").is_some());
    let s = w.model.status.clone().expect("status");
    assert_eq!(s.phase, ModelPhase::Shadow);
    assert_eq!(s.shadow.as_ref().map(|s| s.started_at), Some(None));
    w.ready.insert(2);
    w.step();
    let s = w.model.status.clone().expect("status");
    assert_eq!(
        s.shadow.clone().and_then(|s| s.started_at),
        Some(w.now),
        "mirroring starts once the candidate is ready"
    );
    assert_eq!(s.traffic, only_v1());
    let progressing = s
        .condition(driftline::policy::conditions::PROGRESSING)
        .expect("a Progressing condition");
    assert_eq!(progressing.reason, "ShadowInProgress");
    assert!(
        progressing.message.contains("v2 in shadow"),
        "{}",
        progressing.message
    );
    w
}

/// `rows` paired rows, `flips` answered differently, all of them in slice red.
fn paired(rows: u64, flips: u64, red: u64, red_flips: u64) -> ShadowObservation {
    let mut tally = ShadowTally {
        paired: rows,
        rows,
        ..Default::default()
    };
    let good = tally.flips.entry("good".into()).or_default();
    good.insert("good".into(), rows - flips);
    good.insert("bad".into(), flips);
    tally.slices.insert(
        "red".into(),
        Agreement {
            rows: red,
            disagreements: red_flips,
        },
    );
    ShadowObservation { version: 2, tally }
}

#[test]
fn a_candidate_that_agrees_passes_its_shadow_then_starts_its_canary() {
    let mut w = shadow_world();
    w.advance(Duration::minutes(5));
    let mut obs = w.observations();
    obs.shadow = Some(paired(2000, 4, 500, 1));
    let d = w.step_with(obs);
    assert_eq!(w.phase(2), Some(VersionPhase::Shadow), "duration not over");
    assert!(w.moved_traffic.is_none());
    assert!(d.requeue_after.is_some());
    let read = w.model.status.as_ref().and_then(|s| s.shadow.clone());
    assert!(
        read.and_then(|s| s.analysis)
            .is_some_and(|a| a.message.contains("duration 10m is not over")),
        "each read is kept in status"
    );

    w.advance(Duration::minutes(6));
    let mut obs = w.observations();
    obs.shadow = Some(paired(4000, 8, 1000, 2));
    let d = w.step_with(obs);
    assert!(event(&d, "ShadowPassed").is_some());
    assert_eq!(w.phase(2), Some(VersionPhase::Canary));
    let s = w.model.status.clone().expect("status");
    assert_eq!(s.phase, ModelPhase::Canary);
    assert!(s.shadow.is_none());
    let canary = s.canary.expect("canary");
    let verdict = &canary.analyses[0];
    assert_eq!((verdict.weight, verdict.canary_requests), (0, 4000));
    assert!(
        verdict.message.contains("Jensen-Shannon distance 0.03"),
        "the distance is recorded: {}",
        verdict.message
    );
    assert!(
        verdict
            .checks
            .iter()
            .any(|c| c.name == "maxDisagreement[red]" && c.passed),
        "{verdict:?}"
    );
    // The candidate is ready: the first step's weight applies at once.
    assert_eq!(
        w.moved_traffic.as_deref().map(|t| t[1].weight),
        Some(w.model.spec.rollout.steps[0].weight)
    );
}

/// The shadow world after v2 flipped 16 % of slice red: rejected in shadow.
pub(crate) fn shadow_failed_world() -> (World, Decision) {
    let mut w = shadow_world();
    w.advance(Duration::minutes(2));
    let mut obs = w.observations();
    // 1 % overall, but 16 % of slice red.
    obs.shadow = Some(paired(5000, 80, 500, 80));
    let d = w.step_with(obs);
    (w, d)
}

#[test]
fn a_candidate_that_flips_a_slice_is_rejected_in_shadow_and_never_takes_traffic() {
    let (mut w, d) = shadow_failed_world();
    assert_eq!(w.phase(2), Some(VersionPhase::Rejected));
    assert!(w.moved_traffic.is_none(), "the champion keeps 100 %");
    let s = w.model.status.clone().expect("status");
    assert_eq!(s.traffic, only_v1());
    assert_eq!(
        (s.shadow, s.canary, s.candidate),
        (None, None, None),
        "nothing left in flight"
    );
    assert_eq!(s.phase, ModelPhase::Serving);
    let message = event(&d, "ShadowFailed").expect("ShadowFailed event");
    assert!(
        message.contains("slice red") && message.contains("v1 keeps 100 %"),
        "{message}"
    );
    let rollout = d.actions.iter().find_map(|a| match a {
        Action::RecordRollout {
            version: 2,
            rollout,
        } => Some(rollout.clone()),
        _ => None,
    });
    let rollout = rollout.expect("the verdict is recorded like a canary analysis");
    assert_eq!(rollout.result, "ShadowFailed");
    assert_eq!(rollout.analyses.len(), 1);
    assert_eq!(rollout.analyses[0].weight, 0);
    assert!(
        has_action(&d, |a| matches!(
            a,
            Action::SetVersionPhase { version: 2, phase: VersionPhase::Rejected, reason }
                if reason.starts_with("ShadowFailed")
        )),
        "phase Rejected, reason ShadowFailed"
    );
    // Said on the Model until something newer starts, as a rollback is:
    // live evidence refused the newest version.
    for _ in 0..2 {
        let s = w.model.status.clone().expect("status");
        let progressing = s.condition("Progressing").expect("Progressing");
        assert_eq!(
            (progressing.status, progressing.reason.as_str()),
            (ConditionStatus::False, "ShadowFailed")
        );
        assert!(
            progressing.message.contains("v2 failed its shadow stage")
                && progressing.message.contains("v1 keeps"),
            "{}",
            progressing.message
        );
        let stalled = s.condition("Stalled").expect("Stalled");
        assert_eq!(
            (stalled.status, stalled.reason.as_str()),
            (ConditionStatus::True, "ShadowFailed")
        );
        w.advance(Duration::minutes(1));
        w.step();
    }
    w.request("r2", ManualAction::Retrain { reason: None });
    let s = w.model.status.clone().expect("status");
    assert_eq!(
        s.condition("Stalled").map(|c| c.status),
        Some(ConditionStatus::False),
        "a new training clears it"
    );
}

#[test]
fn too_few_pairs_keep_the_shadow_watching_past_its_duration() {
    let mut w = shadow_world();
    w.advance(Duration::minutes(30));
    let mut obs = w.observations();
    obs.shadow = Some(paired(150, 0, 40, 0));
    w.step_with(obs);
    assert_eq!(w.phase(2), Some(VersionPhase::Shadow));
    assert!(w.moved_traffic.is_none());
}

#[test]
fn a_user_rollback_during_the_shadow_drops_the_candidate() {
    let mut w = shadow_world();
    let d = w.request("r2", ManualAction::Rollback);
    assert_eq!(w.phase(2), Some(VersionPhase::RolledBack));
    assert!(event(&d, "RolledBack").is_some_and(|m| m.contains("in shadow")));
    let s = w.model.status.clone().expect("status");
    assert_eq!((s.shadow, s.candidate), (None, None));
    assert_eq!(s.traffic, only_v1());
}

#[test]
fn a_candidate_that_never_answers_keeps_the_shadow_waiting_and_users_untouched() {
    let mut w = shadow_world();
    w.advance(Duration::minutes(20));
    let mut obs = w.observations();
    let mut down = paired(0, 0, 0, 0);
    down.tally.flips.clear();
    down.tally.shadow_errors = 900;
    obs.shadow = Some(down);
    w.step_with(obs);
    assert_eq!(
        w.phase(2),
        Some(VersionPhase::Shadow),
        "no evidence: neither pass nor fail"
    );
    assert!(w.moved_traffic.is_none());
    let s = w.model.status.clone().expect("status");
    assert_eq!(s.traffic, only_v1());
    let read = s.shadow.and_then(|s| s.analysis).expect("the read is kept");
    assert!(
        read.message.contains("0 paired requests"),
        "{}",
        read.message
    );
}
