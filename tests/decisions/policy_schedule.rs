//! Scheduled retraining: time zones, daylight-saving changes and missed runs.

use crate::policy_support;

use chrono::{DateTime, Duration, Utc};
use driftline::api::{MissedRunPolicy, RetrainSchedule, TrainingTrigger};
use driftline::policy::JobState;
use policy_support::*;

/// A Model retrained only by `schedule` in Europe/London.
fn scheduled_world(schedule: &str, missed: MissedRunPolicy, start: &str) -> World {
    let mut s = spec();
    let r = s.retrain.as_mut().expect("fixture has retrain");
    r.schedule = Some(schedule.into());
    r.time_zone = Some("Europe/London".into());
    r.missed_runs = missed;
    r.on_drift = false;
    r.on_new_data = false;
    let mut w = World::new(s, t(start));
    w.bootstrap();
    w
}

/// Reconciles every `every` until `end`; returns when scheduled trainings
/// started. Each one trains and is rejected by the gate, freeing the Model.
fn run(w: &mut World, end: &str, every: Duration) -> Vec<DateTime<Utc>> {
    let mut started = Vec::new();
    while w.now < t(end) {
        w.advance(every);
        let d = w.step();
        if let Some((n, trigger, _)) = d.started_training() {
            assert_eq!(trigger, TrainingTrigger::Schedule);
            started.push(w.now);
            w.finish_job(n, JobState::Succeeded);
            w.gate(n, failed_gate());
            w.step();
        }
    }
    started
}

#[test]
fn nightly_in_london_across_the_spring_change() {
    let mut w = scheduled_world(
        "0 2 * * *",
        MissedRunPolicy::RunLatest,
        "2026-03-27T12:00:00Z",
    );
    let runs = run(&mut w, "2026-04-01T00:00:00Z", Duration::minutes(15));
    // 02:00 GMT is 02:00Z; from 29 March 02:00 BST is 01:00Z.
    let expected = [
        "2026-03-28T02:00:00Z",
        "2026-03-29T01:00:00Z",
        "2026-03-30T01:00:00Z",
        "2026-03-31T01:00:00Z",
    ];
    assert_eq!(runs, expected.map(t));
}

#[test]
fn nightly_in_london_across_the_autumn_change() {
    let mut w = scheduled_world(
        "0 2 * * *",
        MissedRunPolicy::RunLatest,
        "2026-10-23T12:00:00Z",
    );
    let runs = run(&mut w, "2026-10-27T00:00:00Z", Duration::minutes(15));
    let expected = [
        "2026-10-24T01:00:00Z",
        "2026-10-25T02:00:00Z",
        "2026-10-26T02:00:00Z",
    ];
    assert_eq!(runs, expected.map(t));
}

#[test]
fn a_slot_in_the_skipped_hour_runs_when_the_clock_jumps_and_a_repeated_one_runs_once() {
    let mut w = scheduled_world(
        "30 1 * * *",
        MissedRunPolicy::RunLatest,
        "2026-03-27T12:00:00Z",
    );
    let spring = run(&mut w, "2026-03-31T00:00:00Z", Duration::minutes(15));
    // 01:30 does not exist on 29 March: it runs at 02:00 BST (01:00Z).
    let expected = [
        "2026-03-28T01:30:00Z",
        "2026-03-29T01:00:00Z",
        "2026-03-30T00:30:00Z",
    ];
    assert_eq!(spring, expected.map(t));

    let mut w = scheduled_world(
        "30 1 * * *",
        MissedRunPolicy::RunLatest,
        "2026-10-23T12:00:00Z",
    );
    let autumn = run(&mut w, "2026-10-27T00:00:00Z", Duration::minutes(15));
    // 01:30 happens twice on 25 October (BST, then GMT): one run, at the first.
    let expected = [
        "2026-10-24T00:30:00Z",
        "2026-10-25T00:30:00Z",
        "2026-10-26T01:30:00Z",
    ];
    assert_eq!(autumn, expected.map(t));
}

#[test]
fn operator_down_three_days_with_run_latest_starts_exactly_one_run() {
    let mut w = scheduled_world(
        "0 2 * * *",
        MissedRunPolicy::RunLatest,
        "2026-06-01T12:00:00Z",
    );
    w.now = t("2026-06-04T05:00:00Z");
    let d = w.step();
    let (n, trigger, reason) = d.started_training().expect("one catch-up run");
    assert_eq!(trigger, TrainingTrigger::Schedule);
    assert!(
        reason.contains("3 slots missed, missedRuns: RunLatest starts one run"),
        "{reason}"
    );
    assert!(reason.contains("2026-06-04 02:00 BST"), "{reason}");
    w.finish_job(n, JobState::Succeeded);
    w.gate(n, failed_gate());
    w.step();
    let later = run(&mut w, "2026-06-05T00:00:00Z", Duration::minutes(15));
    assert!(later.is_empty(), "no second catch-up run: {later:?}");
    let next = run(&mut w, "2026-06-05T02:00:00Z", Duration::minutes(15));
    assert_eq!(next, [t("2026-06-05T01:00:00Z")]);
}

#[test]
fn operator_down_three_days_with_skip_starts_none_until_the_next_slot() {
    let mut w = scheduled_world("0 2 * * *", MissedRunPolicy::Skip, "2026-06-01T12:00:00Z");
    w.now = t("2026-06-04T05:00:00Z");
    let d = w.step();
    assert!(d.started_training().is_none());
    let message = event(&d, "ScheduledRunSkipped").expect("skip explained");
    assert!(
        message.contains("3 slot(s) of schedule \"0 2 * * *\" missed"),
        "{message}"
    );
    let runs = run(&mut w, "2026-06-05T02:00:00Z", Duration::minutes(15));
    assert_eq!(
        runs,
        [t("2026-06-05T01:00:00Z")],
        "the next slot runs on time"
    );
}

#[test]
fn status_says_when_the_next_scheduled_training_is() {
    let w = scheduled_world(
        "0 2 * * *",
        MissedRunPolicy::RunLatest,
        "2026-06-01T12:00:00Z",
    );
    let next = w
        .model
        .status
        .as_ref()
        .and_then(|s| s.next_training.clone())
        .expect("next training");
    assert_eq!(next.at, t("2026-06-02T01:00:00Z"));
    assert_eq!(next.reason, "schedule \"0 2 * * *\" in Europe/London");
}

#[test]
fn slots_before_the_model_existed_are_not_missed_runs() {
    let mut s = spec();
    if let Some(r) = s.retrain.as_mut() {
        r.schedule = Some("*/10 * * * *".into());
        r.on_drift = false;
        r.on_new_data = false;
    }
    let mut w = World::new(s, t("2026-06-01T12:05:00Z"));
    let d = w.step();
    assert_eq!(
        d.started_training().map(|(_, trig, _)| trig),
        Some(TrainingTrigger::Initial)
    );
    w.finish_job(1, JobState::Succeeded);
    w.gate(1, passed_gate());
    w.advance(Duration::minutes(1));
    assert!(w.step().started_training().is_none());
    let runs = run(&mut w, "2026-06-01T12:30:00Z", Duration::minutes(1));
    assert_eq!(
        runs,
        [
            "2026-06-01T12:10:00Z",
            "2026-06-01T12:20:00Z",
            "2026-06-01T12:30:00Z"
        ]
        .map(t)
    );
}

#[test]
fn schedule_slots_iterate_in_the_zone() {
    let s = RetrainSchedule::parse("0 2 * * *", Some("Europe/London")).expect("valid");
    assert_eq!(
        s.next_after(t("2026-03-28T02:00:00Z")),
        Some(t("2026-03-29T01:00:00Z"))
    );
    assert_eq!(
        s.latest_at_or_before(t("2026-03-29T00:59:59Z")),
        Some(t("2026-03-28T02:00:00Z"))
    );
    assert_eq!(
        s.count_between(t("2026-03-27T12:00:00Z"), t("2026-04-01T00:00:00Z"), 100),
        4
    );
    let ny = RetrainSchedule::parse("0 9 * * MON-FRI", Some("America/New_York")).expect("valid");
    assert_eq!(
        ny.next_after(t("2026-11-27T15:00:00Z")),
        Some(t("2026-11-30T14:00:00Z"))
    );
}
