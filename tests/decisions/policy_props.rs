//! Invariants of the decision core over random histories: whatever happens,
//! at most one training runs and none starts in the decision that sees one
//! end, weights sum to 100, a canary only advances on passing evidence,
//! rollback restores the champion, decisions are deterministic; and every
//! decision starts exactly the training the test's own model of the retrain
//! rules expects: one whenever every rule allows it (liveness), none when the
//! schedule (read by the independent evaluator in `policy_support/cron.rs`),
//! `missedRuns`, cooldown, `maxPerDay`, a pause, a busy Model or "a failed run
//! is not retried until something changes" forbids it.
//!
//! `PROPTEST_CASES=100000 cargo test --test decisions policy_props` runs a long search;
//! failures are written to `tests/decisions/policy_props.proptest-regressions` (commit
//! it) and replayed first on every run.

use crate::policy_support;

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use driftline::api::{
    CanaryStep, MissedRunPolicy, TrafficWeight, TrainingTrigger, VersionPhase, parse_duration,
    version_number,
};
use driftline::drift::ColumnReading;
use driftline::policy::{
    Action, DriftReading, JobState, ManualAction, ManualRequest, SCHEDULE_GRACE, ServingMetrics,
    decide,
};
use policy_support::cron::{Cron, Slots};
use policy_support::*;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

/// A complete window where `alcohol` and `ph` both read `value` (threshold
/// 0.1, equal weights): 0.5 drifts, 0.01 does not.
fn reading(window_end: DateTime<Utc>, value: f64) -> DriftReading {
    let column = |name: &str| ColumnReading {
        name: name.into(),
        value,
        threshold: 0.1,
        weight: 1.0,
    };
    DriftReading {
        window_end,
        rows: 1000,
        features: vec![column("alcohol"), column("ph")],
        prediction: None,
        test_set: None,
        estimate: None,
    }
}

/// Cases per property: `PROPTEST_CASES` when set (long searches), else `default`.
fn config(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    ProptestConfig {
        cases,
        // Beside this file, where the next run (and CI) replays it: the default
        // looks for lib.rs/main.rs, which an integration test does not have.
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..ProptestConfig::default()
    }
}

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
    #![proptest_config(config(128))]

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
        s.rollout.steps = step_weights.iter().map(|w| CanaryStep { weight: *w, pause: "5m".parse().unwrap() }).collect();
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
                            Evidence::Fail => ServingMetrics { requests: 1000, errors: 100, p99_latency_ms: Some(20.0), labelled: 0, correct: 0, slow: None, ..Default::default() },
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
                    obs.drift = vec![reading(drift_end, v)];
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
                // Also when that run ends in this very decision: a failed run is
                // not restarted back to back (issue 14's seed: drift pending
                // while v1 trains, v1 fails, drift must not start v2 at once).
                prop_assert_eq!(training_before, 0, "training started while one was running");
            }
            let training_now = w.versions.iter().filter(|v| v.status.as_ref().is_some_and(|s| s.phase == VersionPhase::Training)).count();
            prop_assert!(training_now <= 1);

            // Weights always sum to 100.
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
                if let Some(weights) = &w.moved_traffic
                    && weights.iter().any(|tw| tw.version == before.version && tw.weight == 100)
                    && !promoted
                {
                    prop_assert_eq!(step_weights.last().copied(), Some(100));
                    prop_assert_eq!(passed_steps.get(&n).copied().unwrap_or(0), step_weights.len() - 1);
                }
            }

            // Rollback restores the champion to 100 %.
            for a in &d.actions {
                if let Action::Rollback { restored: Some(c), .. } = a {
                    let expected = vec![TrafficWeight { version: format!("v{c}"), weight: 100 }];
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

/// Events of the trigger property: time, training and gate outcomes, canary
/// evidence, drift windows, data and spec changes, pauses, manual requests.
#[derive(Clone, Debug)]
enum TriggerEvent {
    Tick(u32),
    JobDone(bool),
    Gate(bool),
    Ready,
    PassingCanary(u32),
    Drift(bool),
    NewData,
    Reconfigure,
    Pause(bool),
    Retrain,
    Rollback,
}

fn trigger_event() -> impl Strategy<Value = TriggerEvent> {
    prop_oneof![
        4 => (1u32..240).prop_map(TriggerEvent::Tick),
        3 => any::<bool>().prop_map(TriggerEvent::JobDone),
        2 => any::<bool>().prop_map(TriggerEvent::Gate),
        2 => Just(TriggerEvent::Ready),
        3 => (1u32..60).prop_map(TriggerEvent::PassingCanary),
        5 => proptest::bool::weighted(0.8).prop_map(TriggerEvent::Drift),
        1 => Just(TriggerEvent::NewData),
        1 => Just(TriggerEvent::Reconfigure),
        1 => proptest::bool::weighted(0.3).prop_map(TriggerEvent::Pause),
        1 => Just(TriggerEvent::Retrain),
        1 => Just(TriggerEvent::Rollback),
    ]
}

/// A 5-field cron expression as users write them (lists, ranges, steps,
/// weekdays 0-7), never restricting both day fields, plus two fixed ones
/// whose slots fall in the hours that clock changes skip or repeat.
fn cron_expression() -> impl Strategy<Value = String> {
    let minute = prop_oneof![
        Just("*".to_string()),
        (0u32..60).prop_map(|m| m.to_string()),
        (5u32..=30).prop_map(|k| format!("*/{k}")),
        (0u32..30, 30u32..60).prop_map(|(a, b)| format!("{a},{b}")),
        (0u32..50).prop_map(|a| format!("{a}-{}/5", a + 9)),
    ];
    let hour = prop_oneof![
        Just("*".to_string()),
        (0u32..24).prop_map(|h| h.to_string()),
        (0u32..12, 12u32..24).prop_map(|(a, b)| format!("{a},{b}")),
        (0u32..20).prop_map(|a| format!("{a}-{}", a + 3)),
        (2u32..=6).prop_map(|k| format!("*/{k}")),
    ];
    let days = prop_oneof![
        3 => Just(("*".to_string(), "*".to_string())),
        1 => (1u32..=28).prop_map(|d| (d.to_string(), "*".to_string())),
        1 => (1u32..=20).prop_map(|d| (format!("{d}-{}", d + 7), "*".to_string())),
        1 => Just(("*".to_string(), "1-5".to_string())),
        1 => Just(("*".to_string(), "0,6".to_string())),
        1 => (0u32..=7).prop_map(|d| ("*".to_string(), d.to_string())),
    ];
    prop_oneof![
        1 => Just("30 1 * * *".to_string()),
        1 => Just("0 2 * * *".to_string()),
        6 => (minute, hour, days).prop_map(|(m, h, (dom, dow))| format!("{m} {h} {dom} * {dow}")),
    ]
}

/// Schedule time zones with their 2026 clock changes (UTC): histories start
/// up to two days before one.
const ZONES: [(Option<&str>, [&str; 2]); 4] = [
    (None, ["2026-01-01T00:00:00Z", "2026-06-30T23:00:00Z"]),
    (
        Some("Europe/London"),
        ["2026-03-29T01:00:00Z", "2026-10-25T01:00:00Z"],
    ),
    (
        Some("America/New_York"),
        ["2026-03-08T07:00:00Z", "2026-11-01T06:00:00Z"],
    ),
    // Half-hour changes.
    (
        Some("Australia/Lord_Howe"),
        ["2026-04-04T15:00:00Z", "2026-10-03T15:30:00Z"],
    ),
];

/// The retrain settings of one history, as the test reads them.
struct RetrainRules {
    skip_missed: bool,
    on_drift: bool,
    on_new_data: bool,
    consecutive: u32,
    cooldown: Option<Duration>,
    max_per_day: Option<u32>,
}

/// What the decision being checked sees, as the test knows it.
struct Situation {
    now: DateTime<Utc>,
    paused: bool,
    /// A manual retrain is asked for in this decision.
    manual: bool,
    /// A training, a candidate awaiting its gate or a canary, when the
    /// request is handled.
    busy_for_request: bool,
    /// The same when automatic triggers are considered.
    busy: bool,
    /// A training run ended in this decision.
    ended: bool,
    digest: Option<String>,
}

/// What the decision should do about training.
#[derive(Debug, PartialEq)]
struct Expected {
    trigger: Option<TrainingTrigger>,
    /// The schedule slot due: the one a `Schedule` run starts for, or the
    /// late one `missedRuns: Skip` passes over.
    slot: Option<DateTime<Utc>>,
    skipped: bool,
}

/// The retrain rules, kept by the test apart from the core's status, with
/// the schedule read by the test's own cron evaluator.
struct TriggerModel {
    /// Drifted windows in a row since the last start, failure or clean window.
    drifted_in_a_row: u32,
    /// Data digest at the last start or failure.
    digest_at_reset: Option<String>,
    /// Schedule slots after this one are due.
    schedule_anchor: DateTime<Utc>,
    slots: Option<Slots>,
    /// The spec changed since the last start.
    reconfigured: bool,
    /// Start times of every run, newest last.
    starts: Vec<DateTime<Utc>>,
    /// Start times of drift- and data-triggered runs.
    automatic: Vec<DateTime<Utc>>,
}

impl TriggerModel {
    /// A start or a failure uses up the evidence pending: drift windows,
    /// the schedule slots due so far and the data digest now seen.
    fn reset(&mut self, now: DateTime<Utc>, digest: Option<String>) {
        self.drifted_in_a_row = 0;
        self.digest_at_reset = digest;
        if let Some(latest) = self.slots.as_mut().and_then(|s| s.latest_at_or_before(now)) {
            self.schedule_anchor = self.schedule_anchor.max(latest);
        }
    }

    /// Cooldown since the last start of any run, and `maxPerDay` automatic
    /// runs in any 24 hours.
    fn automatic_blocked(&self, now: DateTime<Utc>, rules: &RetrainRules) -> bool {
        let cooling = rules
            .cooldown
            .zip(self.starts.last())
            .is_some_and(|(c, last)| now - *last < c);
        let in_day = self
            .automatic
            .iter()
            .filter(|t| now - **t < Duration::hours(24))
            .count() as u32;
        cooling || rules.max_per_day.is_some_and(|max| in_day >= max)
    }

    /// What the rules say this decision does: a manual request that nothing
    /// blocks starts; otherwise the first trigger present (first version or
    /// spec change, schedule, drift, new data) starts a run unless the Model
    /// is paused or busy or a run ended in this decision; drift and new data
    /// also wait out the cooldown and `maxPerDay`. A schedule slot seen more
    /// than `SCHEDULE_GRACE` late is passed over under `missedRuns: Skip`.
    fn expect(&mut self, s: &Situation, rules: &RetrainRules) -> Expected {
        if s.manual && !s.paused && !s.busy_for_request {
            return Expected {
                trigger: Some(TrainingTrigger::Manual),
                slot: None,
                skipped: false,
            };
        }
        let blocked = s.paused || s.busy || s.ended;
        let mut due = None;
        let mut skipped = false;
        let mut chosen = if self.starts.is_empty() {
            Some(TrainingTrigger::Initial)
        } else if self.reconfigured {
            Some(TrainingTrigger::ConfigChanged)
        } else {
            None
        };
        if chosen.is_none()
            && let Some(slot) = self
                .slots
                .as_mut()
                .and_then(|slots| slots.latest_in(self.schedule_anchor, s.now))
        {
            let late = s.now - slot > Duration::from_std(SCHEDULE_GRACE).expect("fits");
            due = Some(slot);
            if late && rules.skip_missed && !blocked {
                skipped = true;
            } else {
                chosen = Some(TrainingTrigger::Schedule);
            }
        }
        if chosen.is_none() && !self.automatic_blocked(s.now, rules) {
            if rules.on_drift && self.drifted_in_a_row >= rules.consecutive {
                chosen = Some(TrainingTrigger::Drift);
            } else if rules.on_new_data && s.digest != self.digest_at_reset {
                chosen = Some(TrainingTrigger::NewData);
            }
        }
        let trigger = chosen.filter(|_| !blocked);
        Expected {
            slot: due.filter(|_| skipped || trigger == Some(TrainingTrigger::Schedule)),
            trigger,
            skipped,
        }
    }
}

fn phase_of(v: &driftline::api::ModelVersion) -> VersionPhase {
    v.status.as_ref().map(|s| s.phase).unwrap_or_default()
}

proptest! {
    #![proptest_config(config(128))]

    /// Safety and liveness of automatic retraining together: every decision
    /// starts exactly the training the test's own model of the rules
    /// expects (none when any rule forbids one, the right trigger when all
    /// allow one), with the schedule checked by an independent cron
    /// evaluator across clock changes, and `missedRuns: Skip` passing over
    /// late slots.
    #[test]
    fn automatic_retrains_start_exactly_when_the_rules_allow(
        schedule in proptest::option::of(cron_expression()),
        zone in 0usize..ZONES.len(),
        change in 0usize..2,
        before_change in 0i64..2880,
        skip_missed in any::<bool>(),
        on_drift in proptest::bool::weighted(0.8),
        on_new_data in proptest::bool::weighted(0.8),
        cooldown in proptest::option::of(prop_oneof![Just("10m"), Just("1h"), Just("6h")]),
        max_per_day in proptest::option::of(1u32..4),
        consecutive in 1u32..4,
        bootstrap in any::<bool>(),
        events in proptest::collection::vec(trigger_event(), 1..150),
    ) {
        let (time_zone, changes) = ZONES[zone];
        let mut s = spec();
        {
            let r = s.retrain.as_mut().expect("fixture retrains");
            r.schedule = schedule.clone();
            // A time zone without a schedule is refused by validate().
            r.time_zone = time_zone.filter(|_| schedule.is_some()).map(String::from);
            r.missed_runs = if skip_missed { MissedRunPolicy::Skip } else { MissedRunPolicy::RunLatest };
            r.on_drift = on_drift;
            r.on_new_data = on_new_data;
            r.cooldown = cooldown.map(|c| c.parse().expect("a drawn cooldown is a duration"));
            r.max_per_day = max_per_day;
        }
        s.drift.consecutive_windows = consecutive;
        s.rollout.steps = vec![CanaryStep { weight: 50, pause: "5m".parse().unwrap() }];
        s.rollout.auto_promote = true;
        prop_assert!(s.validate().is_ok(), "{:?}", s.validate());
        let rules = RetrainRules {
            skip_missed,
            on_drift,
            on_new_data,
            consecutive,
            cooldown: cooldown.map(|c| Duration::from_std(parse_duration(c).expect("cooldown")).expect("fits")),
            max_per_day,
        };

        let created = t(changes[change]) - Duration::minutes(before_change);
        let mut w = World::new(s, created);
        w.source_digest = Some("d0".into());
        let mut model = TriggerModel {
            drifted_in_a_row: 0,
            digest_at_reset: w.source_digest.clone(),
            // Slots before the Model existed are not missed runs.
            schedule_anchor: created,
            slots: schedule.as_deref().map(|e| Slots::after(Cron::parse(e, time_zone), created)),
            reconfigured: false,
            starts: Vec::new(),
            automatic: Vec::new(),
        };
        if bootstrap {
            w.bootstrap();
            model.starts.push(created);
            model.reset(created, w.source_digest.clone());
        }
        let mut drift_end = w.now;
        let mut digests = 0u32;
        let mut request_id = 0u32;

        for event in events {
            let running_before = w.jobs.iter().any(|j| j.state == JobState::Running);
            let mut ended = false;
            let mut failed = false;
            match &event {
                TriggerEvent::Tick(m) => w.advance(Duration::minutes(i64::from(*m))),
                TriggerEvent::PassingCanary(m) => w.advance(Duration::minutes(i64::from(*m))),
                TriggerEvent::JobDone(ok) => {
                    let running: Vec<u32> = w.jobs.iter().filter(|j| j.state == JobState::Running).map(|j| j.version).collect();
                    for n in running {
                        w.finish_job(n, if *ok { JobState::Succeeded } else { JobState::Failed { message: "OOMKilled".into() } });
                    }
                    ended = running_before;
                    failed = running_before && !ok;
                }
                TriggerEvent::Gate(pass) => {
                    let trained: Vec<u32> = w.versions.iter()
                        .filter(|v| phase_of(v) == VersionPhase::Trained)
                        .map(|v| v.spec.version).collect();
                    for n in trained {
                        w.gate(n, if *pass { passed_gate() } else { failed_gate() });
                    }
                }
                TriggerEvent::Ready => {
                    let all: Vec<u32> = w.versions.iter().map(|v| v.spec.version).collect();
                    w.ready.extend(all);
                }
                TriggerEvent::NewData => {
                    digests += 1;
                    w.source_digest = Some(format!("d{digests}"));
                }
                TriggerEvent::Reconfigure => {
                    w.model.spec.training.epochs += 1;
                    let g = w.model.metadata.generation.unwrap_or(1);
                    w.model.metadata.generation = Some(g + 1);
                    model.reconfigured = true;
                }
                TriggerEvent::Pause(p) => w.model.spec.paused = *p,
                TriggerEvent::Drift(drifted) => {
                    model.drifted_in_a_row = if *drifted { model.drifted_in_a_row + 1 } else { 0 };
                }
                TriggerEvent::Retrain | TriggerEvent::Rollback => {}
            }
            let mut obs = w.observations();
            match &event {
                TriggerEvent::PassingCanary(_) => {
                    if let Some(c) = w.model.status.as_ref().and_then(|s| s.canary.clone()) {
                        let n = version_number(&c.version).expect("canary version name");
                        obs.canary_metrics = Some(window(n, c.step_started_at.unwrap_or(w.now), w.now, healthy(1000)));
                    }
                }
                TriggerEvent::Drift(drifted) => {
                    drift_end += Duration::minutes(1);
                    obs.drift = vec![reading(drift_end, if *drifted { 0.5 } else { 0.01 })];
                }
                TriggerEvent::Retrain | TriggerEvent::Rollback => {
                    request_id += 1;
                    let action = if matches!(event, TriggerEvent::Retrain) {
                        ManualAction::Retrain { reason: None }
                    } else {
                        ManualAction::Rollback
                    };
                    obs.request = Some(ManualRequest { id: format!("req-{request_id}"), action });
                }
                _ => {}
            }

            let canaries_before: Vec<u32> = w.versions.iter()
                .filter(|v| phase_of(v) == VersionPhase::Canary)
                .map(|v| v.spec.version).collect();
            let now = obs.now;
            let manual = matches!(obs.request, Some(ManualRequest { action: ManualAction::Retrain { .. }, .. }));
            let d = w.step_with(obs);

            let started: Vec<(u32, TrainingTrigger)> = d.actions.iter().filter_map(|a| match a {
                Action::StartTraining { version, trigger, .. } => Some((*version, *trigger)),
                _ => None,
            }).collect();
            prop_assert!(started.len() <= 1, "two trainings in one decision: {:?}", started);
            // Busy as the ModelVersions show it after the decision: a run,
            // a candidate awaiting its gate, or a canary.
            let busy = w.versions.iter()
                .filter(|v| started.iter().all(|(n, _)| *n != v.spec.version))
                .any(|v| matches!(phase_of(v), VersionPhase::Training | VersionPhase::Trained | VersionPhase::Canary));
            // A canary that the rollout ended in this decision still held
            // the Model when the request was handled, before the rollout.
            let canary_ended = d.actions.iter().any(|a| matches!(a,
                Action::Promote { version, .. } | Action::Rollback { version, .. } if canaries_before.contains(version)));
            let situation = Situation {
                now,
                paused: w.model.spec.paused,
                manual,
                busy_for_request: busy || canary_ended,
                busy,
                ended,
                digest: w.source_digest.clone(),
            };
            let expected = model.expect(&situation, &rules);
            let context = format!(
                "at {now} after {event:?} (schedule {schedule:?} in {time_zone:?}, anchor {}, {} drifted windows, starts {:?}): {:?}",
                model.schedule_anchor, model.drifted_in_a_row, model.starts, d.actions);
            prop_assert_eq!(started.first().map(|(_, t)| *t), expected.trigger, "{}", context);
            let skip_event = policy_support::event(&d, "ScheduledRunSkipped");
            prop_assert_eq!(skip_event.is_some(), expected.skipped, "{}", context);
            // The slot the core names is the one the test's evaluator found.
            if let Some(slot) = expected.slot {
                let zone: chrono_tz::Tz = time_zone.unwrap_or("UTC").parse().expect("zone");
                let wall = slot.with_timezone(&zone).format("%Y-%m-%d %H:%M").to_string();
                let named = skip_event.or_else(|| policy_support::event(&d, "TrainingStarted")).unwrap_or_default();
                prop_assert!(named.contains(&wall), "slot {} ({}) not named: {}", slot, wall, context);
            }
            let marked_failed = has_action(&d, |a| matches!(a, Action::SetVersionPhase { phase: VersionPhase::Failed, .. }));
            prop_assert_eq!(marked_failed, failed, "a run fails exactly when its Job does");

            if let (Some(slot), true) = (expected.slot, expected.skipped) {
                model.schedule_anchor = slot;
            }
            if let Some(trigger) = expected.trigger {
                model.starts.push(now);
                if matches!(trigger, TrainingTrigger::Drift | TrainingTrigger::NewData) {
                    model.automatic.push(now);
                }
                model.reconfigured = false;
                model.reset(now, w.source_digest.clone());
            }
            if failed {
                model.reset(now, w.source_digest.clone());
            }
            let training_now = w.versions.iter().filter(|v| phase_of(v) == VersionPhase::Training).count();
            prop_assert!(training_now <= 1);
        }
    }
}

/// A fixed replay of issue 14's CI failure, independent of proptest's seed format.
#[test]
fn drift_pending_during_a_failed_run_does_not_restart_it_at_once() {
    let mut s = spec();
    if let Some(r) = s.retrain.as_mut() {
        r.schedule = None;
        r.time_zone = None;
        r.cooldown = None;
        r.max_per_day = None;
    }
    s.drift.features.clear();
    let mut w = World::new(s, t("2026-06-01T00:00:00Z"));
    w.advance(Duration::minutes(1));
    let d = w.step();
    assert_eq!(
        d.started_training().map(|(n, t, _)| (n, t)),
        Some((1, TrainingTrigger::Initial))
    );
    let mut end = w.now;
    for _ in 0..3 {
        end += Duration::minutes(1);
        let mut obs = w.observations();
        obs.drift = vec![reading(end, 0.5)];
        assert!(
            w.step_with(obs).started_training().is_none(),
            "v1 still trains"
        );
    }
    w.finish_job(
        1,
        JobState::Failed {
            message: "OOMKilled".into(),
        },
    );
    let d = w.step();
    assert_eq!(w.phase(1), Some(VersionPhase::Failed));
    assert!(
        d.started_training().is_none(),
        "drift seen during the failed run must not restart it: {:?}",
        d.actions
    );
    let failed = policy_support::event(&d, "TrainingFailed").expect("TrainingFailed event");
    assert!(failed.contains("waits for new evidence"), "{failed}");
    // Nothing new: later reconciles start nothing either.
    w.advance(Duration::minutes(30));
    assert!(
        w.step().started_training().is_none(),
        "no retry without new evidence"
    );
    // Fresh drift windows are new evidence.
    for i in 0..3 {
        end += Duration::minutes(1);
        let mut obs = w.observations();
        obs.drift = vec![reading(end, 0.5)];
        let d = w.step_with(obs);
        let started = d.started_training().map(|(n, t, _)| (n, t));
        if i < 2 {
            assert_eq!(started, None, "only {} fresh windows", i + 1);
        } else {
            assert_eq!(started, Some((2, TrainingTrigger::Drift)));
        }
    }
}
