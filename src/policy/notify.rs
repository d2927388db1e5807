//! What a decision tells the people around the loop: each lifecycle step the
//! decision records (as a Kubernetes Event, or for `gatePassed` and
//! `driftDetected` in the status it writes) becomes one [`Notification`],
//! and a notification becomes a CloudEvents 1.0 event (structured JSON
//! mode) or a Slack incoming-webhook body. Pure: the operator sends them
//! (`operator::notify`).
//!
//! A notification's CloudEvent `id` is derived from the Model's uid, the
//! version, the step and the step's occurrence (the canary step, the failure
//! count, the drift window), never from a clock or a counter: a decision made
//! again after an operator restart sends the same ids, and a receiver that
//! keys on the id sees each step once.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::api::links;
use crate::api::{
    ConditionStatus, ModelStatus, NotifyEvent, NotifyFormat, VersionPhase, version_name,
    version_number,
};

use super::action::{Action, Decision};
use super::conditions;

/// One lifecycle step to tell sinks about.
#[derive(Clone, Debug, PartialEq)]
pub struct Notification {
    pub event: NotifyEvent,
    /// The version the step is about (the champion for drift and deferrals).
    pub version: Option<u32>,
    /// The reason a user reads in `kubectl describe` (`RolledBack`).
    pub reason: String,
    pub message: String,
    /// The figures behind the step, as the status records them: the gate's
    /// checks, the canary or shadow analysis, the drift summary.
    pub numbers: Value,
    /// Tells two occurrences of the same step on the same version apart
    /// (canary step, failure count, drift window); part of the id.
    pub occurrence: String,
}

/// The Event reasons that are lifecycle steps, and the step each one is.
fn step_of_reason(reason: &str) -> Option<NotifyEvent> {
    Some(match reason {
        "TrainingStarted" => NotifyEvent::TrainingStarted,
        "TrainingFailed" => NotifyEvent::TrainingFailed,
        "DataRejected" => NotifyEvent::DataRejected,
        "GateFailed" => NotifyEvent::GateRejected,
        "ShadowPassed" => NotifyEvent::ShadowPassed,
        "ShadowFailed" => NotifyEvent::ShadowFailed,
        "CanaryStepPassed" => NotifyEvent::CanaryStepPassed,
        "CanaryAnalysisFailed" => NotifyEvent::CanaryStepFailed,
        "Promoted" | "ManualPromotion" => NotifyEvent::Promoted,
        "RolledBack" => NotifyEvent::RolledBack,
        "RetrainDeferred" => NotifyEvent::RetrainDeferred,
        "TestSetStale" => NotifyEvent::TestSetStale,
        _ => return None,
    })
}

/// The notifications of `decision`, in the order its steps happened;
/// `before` is the Model's status the decision started from (a condition
/// that flips is news, one that stays is not).
pub fn notifications(before: Option<&ModelStatus>, decision: &Decision) -> Vec<Notification> {
    let status = &decision.status;
    let champion = status.champion.as_deref().and_then(version_number);
    let drift_window = status
        .drift
        .as_ref()
        .and_then(|d| d.last_window_end)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_default();
    let mut out = Vec::new();
    if let Some(n) = drift_detected(before, status) {
        out.push(n);
    }
    for action in &decision.actions {
        match action {
            Action::RecordGate { version, gate } if gate.passed && moves_on(decision, *version) => {
                out.push(Notification {
                    event: NotifyEvent::GatePassed,
                    version: Some(*version),
                    reason: "GatePassed".into(),
                    message: format!("{} gate {}", version_name(*version), gate.summary),
                    numbers: json!({ "gate": gate }),
                    occurrence: String::new(),
                });
            }
            Action::RecordEvent {
                reason, message, ..
            } => {
                let Some(event) = step_of_reason(reason) else {
                    continue;
                };
                let (version, numbers, occurrence) = facts(event, decision, before, champion);
                let occurrence = match event {
                    NotifyEvent::RetrainDeferred => {
                        format!(
                            "{drift_window}/{}",
                            status.data_digest.as_deref().unwrap_or("")
                        )
                    }
                    _ => occurrence,
                };
                out.push(Notification {
                    event,
                    version,
                    reason: reason.clone(),
                    message: message.clone(),
                    numbers,
                    occurrence,
                });
            }
            _ => {}
        }
    }
    out
}

/// `DriftDetected` turning True in this decision.
fn drift_detected(before: Option<&ModelStatus>, after: &ModelStatus) -> Option<Notification> {
    let is_true = |s: &ModelStatus| {
        s.condition(conditions::DRIFT_DETECTED)
            .is_some_and(|c| c.status == ConditionStatus::True)
    };
    if !is_true(after) || before.is_some_and(is_true) {
        return None;
    }
    let condition = after.condition(conditions::DRIFT_DETECTED)?;
    let drift = after.drift.as_ref();
    Some(Notification {
        event: NotifyEvent::DriftDetected,
        version: after.champion.as_deref().and_then(version_number),
        reason: condition.reason.clone(),
        message: condition.message.clone(),
        numbers: json!({ "drift": drift }),
        occurrence: drift
            .and_then(|d| d.last_window_end)
            .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
            .unwrap_or_default(),
    })
}

/// Whether a version whose gate passed leaves `Trained` in this decision
/// (shadow, canary or champion); a paused Model records the gate again on
/// every reconcile without moving on, which is no news.
fn moves_on(decision: &Decision, version: u32) -> bool {
    decision.actions.iter().any(|a| {
        matches!(a, Action::SetVersionPhase { version: v, phase, .. }
            if *v == version && *phase != VersionPhase::Trained)
    })
}

/// The version a step is about, its figures and its occurrence, from the
/// action of the same decision that carries the step's fact.
fn facts(
    event: NotifyEvent,
    decision: &Decision,
    before: Option<&ModelStatus>,
    champion: Option<u32>,
) -> (Option<u32>, Value, String) {
    let phase_set = |wanted: VersionPhase| {
        decision.actions.iter().find_map(|a| match a {
            Action::SetVersionPhase { version, phase, .. } if *phase == wanted => Some(*version),
            _ => None,
        })
    };
    let canary = decision.status.canary.as_ref();
    let canary_version = canary.and_then(|c| version_number(&c.version));
    let last_analysis = |c: Option<&crate::api::CanaryStatus>| {
        c.and_then(|c| c.analyses.last())
            .map_or(Value::Null, |a| json!({ "analysis": a }))
    };
    match event {
        NotifyEvent::TrainingStarted => {
            let v = decision.started_training().map(|(v, _, _)| v);
            (v, Value::Null, String::new())
        }
        NotifyEvent::TrainingFailed => {
            (phase_set(VersionPhase::Failed), Value::Null, String::new())
        }
        NotifyEvent::DataRejected => {
            let found = decision.actions.iter().find_map(|a| match a {
                Action::RecordDataCheck {
                    version,
                    data_check,
                } if !data_check.passed => Some((*version, json!({ "dataCheck": data_check }))),
                _ => None,
            });
            match found {
                Some((v, numbers)) => (Some(v), numbers, String::new()),
                None => (
                    phase_set(VersionPhase::DataRejected),
                    Value::Null,
                    String::new(),
                ),
            }
        }
        NotifyEvent::GateRejected => decision
            .actions
            .iter()
            .find_map(|a| match a {
                Action::RecordGate { version, gate } if !gate.passed => {
                    Some((Some(*version), json!({ "gate": gate }), String::new()))
                }
                _ => None,
            })
            .unwrap_or((
                phase_set(VersionPhase::Rejected),
                Value::Null,
                String::new(),
            )),
        NotifyEvent::ShadowFailed => decision
            .actions
            .iter()
            .find_map(|a| match a {
                Action::RecordRollout { version, rollout } if rollout.result == "ShadowFailed" => {
                    let numbers = rollout
                        .analyses
                        .last()
                        .map_or(Value::Null, |a| json!({ "analysis": a }));
                    Some((Some(*version), numbers, String::new()))
                }
                _ => None,
            })
            .unwrap_or((
                phase_set(VersionPhase::Rejected),
                Value::Null,
                String::new(),
            )),
        NotifyEvent::ShadowPassed => {
            // The shadow's verdict is the canary's first analysis.
            let numbers = canary
                .and_then(|c| c.analyses.first())
                .map_or(Value::Null, |a| json!({ "analysis": a }));
            (canary_version, numbers, String::new())
        }
        NotifyEvent::CanaryStepPassed => (
            canary_version,
            last_analysis(canary),
            format!("step-{}", canary.map_or(0, |c| c.step)),
        ),
        NotifyEvent::CanaryStepFailed => (
            canary_version,
            last_analysis(canary),
            format!("failure-{}", canary.map_or(0, |c| c.failures)),
        ),
        NotifyEvent::Promoted => {
            let v = decision.actions.iter().find_map(|a| match a {
                Action::Promote { version, .. } => Some(*version),
                _ => None,
            });
            // A promotion ends the canary: its last analysis is the one before.
            let numbers = last_analysis(before.and_then(|b| b.canary.as_ref()));
            (v.or(champion), numbers, String::new())
        }
        NotifyEvent::RolledBack => {
            let v = decision
                .actions
                .iter()
                .find_map(|a| match a {
                    Action::Rollback { version, .. } => Some(*version),
                    _ => None,
                })
                .or_else(|| phase_set(VersionPhase::RolledBack));
            let numbers = decision
                .actions
                .iter()
                .find_map(|a| match a {
                    Action::RecordRollout { version, rollout } if Some(*version) == v => {
                        Some(json!({
                            "stepsPassed": rollout.steps_passed,
                            "analysis": rollout.analyses.last(),
                        }))
                    }
                    _ => None,
                })
                .unwrap_or(Value::Null);
            (v, numbers, String::new())
        }
        NotifyEvent::TestSetStale => {
            let freshness = decision.status.test_set_freshness.as_ref();
            let numbers = freshness.map_or(Value::Null, |f| json!({ "testSetFreshness": f }));
            // One notification per run of stale windows: the window that made it stale.
            let occurrence = freshness
                .and_then(|f| f.last_window_end)
                .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
                .unwrap_or_default();
            (champion, numbers, occurrence)
        }
        NotifyEvent::RetrainDeferred | NotifyEvent::DriftDetected | NotifyEvent::GatePassed => {
            let numbers = decision
                .status
                .drift
                .as_ref()
                .map_or(Value::Null, |d| json!({ "drift": d }));
            (champion, numbers, String::new())
        }
    }
}

/// The Model a notification is about, as the sinks see it.
#[derive(Clone, Debug, PartialEq)]
pub struct Subject<'a> {
    pub uid: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
    /// The dashboard's base URL, when there is one.
    pub dashboard: Option<&'a str>,
}

impl Subject<'_> {
    /// The dashboard page of the step: the version's page, else the Model's.
    pub fn dashboard_url(&self, version: Option<u32>) -> Option<String> {
        let base = self.dashboard?;
        let path = match version {
            Some(v) => links::version_path(self.namespace, self.name, v),
            None => links::model_path(self.namespace, self.name),
        };
        Some(links::absolute(base, &path))
    }
}

/// The CloudEvent `id`, the idempotency key: the same Model (uid), version,
/// step and occurrence always give the same id.
pub fn event_id(uid: &str, n: &Notification) -> String {
    let version = n.version.map_or(String::new(), |v| v.to_string());
    let key = format!("{uid}\n{version}\n{}\n{}", n.event.name(), n.occurrence);
    hex::encode(&Sha256::digest(key.as_bytes())[..16])
}

/// The `source` attribute: the Model as a Kubernetes resource path.
pub fn event_source(s: &Subject) -> String {
    format!(
        "/apis/driftline.dev/v1alpha1/namespaces/{}/models/{}",
        s.namespace, s.name
    )
}

/// The event's `data`.
fn event_data(s: &Subject, n: &Notification) -> Value {
    json!({
        "model": s.name,
        "namespace": s.namespace,
        "version": n.version.map(version_name),
        "reason": n.reason,
        "message": n.message,
        "numbers": n.numbers,
        "dashboardUrl": s.dashboard_url(n.version),
    })
}

/// A CloudEvents 1.0 event in structured JSON mode.
pub fn cloud_event(s: &Subject, n: &Notification, time: DateTime<Utc>) -> Value {
    json!({
        "specversion": "1.0",
        "id": event_id(s.uid, n),
        "source": event_source(s),
        "type": n.event.cloud_event_type(),
        "subject": n.version.map_or_else(|| s.name.to_string(), |v| format!("{}/{}", s.name, version_name(v))),
        "time": time.to_rfc3339_opts(SecondsFormat::Millis, true),
        "datacontenttype": "application/json",
        "data": event_data(s, n),
    })
}

/// The figures worth a line in a chat message, `name: value` each.
fn figures(numbers: &Value) -> Vec<String> {
    let mut lines = Vec::new();
    let checks = numbers
        .pointer("/gate/failedChecks")
        .or_else(|| numbers.pointer("/analysis/checks"))
        .or_else(|| numbers.pointer("/dataCheck/failedChecks"))
        .and_then(Value::as_array);
    for c in checks.into_iter().flatten() {
        let name = c.get("name").and_then(Value::as_str).unwrap_or("check");
        let passed = c.get("passed").and_then(Value::as_bool);
        let mark = match passed {
            Some(true) => "✓",
            Some(false) => "✗",
            None => "•",
        };
        let value = c.get("value").map(Value::to_string).unwrap_or_default();
        let bound = c
            .get("bound")
            .map(|b| format!(" (bound {b})"))
            .unwrap_or_default();
        lines.push(format!("{mark} {name}: {value}{bound}"));
    }
    if let Some(d) = numbers.get("drift").filter(|d| !d.is_null()) {
        let score = d.get("score").map(Value::to_string).unwrap_or_default();
        let features = d
            .get("driftedFeatures")
            .and_then(Value::as_array)
            .map(|f| {
                f.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        lines.push(format!("drift score {score}; drifted features: {features}"));
    }
    if let Some(g) = numbers.pointer("/gate/summary").and_then(Value::as_str) {
        lines.push(format!("gate {g}"));
    }
    lines
}

/// A Slack incoming-webhook body: `text` (the notification fallback) and
/// `blocks` (the message, the figures and the dashboard link).
pub fn slack_body(s: &Subject, n: &Notification) -> Value {
    let version = n
        .version
        .map_or(String::new(), |v| format!(" {}", version_name(v)));
    let mark = if n.event.is_failure() { "🔴" } else { "🟢" };
    let text = format!(
        "{mark} {}/{}{version}: {} — {}",
        s.namespace, s.name, n.event, n.message
    );
    let mut blocks = vec![json!({
        "type": "section",
        "text": {"type": "mrkdwn", "text": format!(
            "{mark} *{}/{}*{version} · *{}*\n{}", s.namespace, s.name, n.event, n.message)},
    })];
    let lines = figures(&n.numbers);
    if !lines.is_empty() {
        blocks.push(json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": format!("```{}```", lines.join("\n"))},
        }));
    }
    if let Some(url) = s.dashboard_url(n.version) {
        blocks.push(json!({
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": format!("<{url}|Open in the driftline dashboard>")}],
        }));
    }
    json!({ "text": text, "blocks": blocks })
}

/// The body a sink of `format` receives and its content type.
pub fn body(
    format: NotifyFormat,
    s: &Subject,
    n: &Notification,
    time: DateTime<Utc>,
) -> (Vec<u8>, &'static str) {
    let (value, content_type) = match format {
        NotifyFormat::CloudEvents => (cloud_event(s, n, time), "application/cloudevents+json"),
        NotifyFormat::Slack => (slack_body(s, n), "application/json"),
    };
    // A `Value` always serialises.
    (serde_json::to_vec(&value).unwrap_or_default(), content_type)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{
        AnalysisCheck, AnalysisOutcome, AnalysisRecord, CanaryStatus, GateCheck, GateSummary,
        RolloutOutcome, TrainingTrigger,
    };
    use crate::policy::EventKind;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().expect("time")
    }

    fn decision(actions: Vec<Action>, status: ModelStatus) -> Decision {
        Decision {
            actions,
            status,
            requeue_after: None,
        }
    }

    fn event(reason: &str, message: &str) -> Action {
        Action::RecordEvent {
            kind: EventKind::Normal,
            reason: reason.into(),
            message: message.into(),
        }
    }

    fn analysis(step: u32, outcome: AnalysisOutcome, error_rate: f64) -> AnalysisRecord {
        AnalysisRecord {
            step,
            weight: 20,
            outcome,
            canary_requests: 400,
            stable_requests: 1600,
            checks: vec![AnalysisCheck {
                name: "errorRate".into(),
                value: error_rate,
                bound: 0.05,
                passed: error_rate <= 0.05,
                message: format!("error rate {error_rate}"),
                evidence: None,
                lower: None,
                upper: None,
            }],
            window_start: at("2026-06-01T08:00:00Z"),
            window_end: at("2026-06-01T08:10:00Z"),
            message: "analysis".into(),
            divergence: None,
        }
    }

    fn subject() -> Subject<'static> {
        Subject {
            uid: "0b6c3f3e-uid",
            namespace: "ml",
            name: "wine-quality",
            dashboard: Some("http://dash.example:9091/"),
        }
    }

    fn rollback_decision() -> Decision {
        decision(
            vec![
                Action::RecordRollout {
                    version: 2,
                    rollout: RolloutOutcome {
                        result: "RolledBack".into(),
                        steps_passed: 1,
                        message: "analysis failed".into(),
                        analyses: vec![analysis(1, AnalysisOutcome::Failed, 0.31)],
                    },
                },
                Action::Rollback {
                    version: 2,
                    restored: Some(1),
                    reason: "analysis failed".into(),
                },
                Action::SetVersionPhase {
                    version: 2,
                    phase: VersionPhase::RolledBack,
                    reason: "analysis failed".into(),
                },
                event("RolledBack", "v2 rolled back, v1 at 100 %: analysis failed"),
                event("Resumed", "not a lifecycle step"),
            ],
            ModelStatus {
                champion: Some("v1".into()),
                ..ModelStatus::default()
            },
        )
    }

    #[test]
    fn a_rollback_is_one_notification_with_the_analysis_numbers() {
        let got = notifications(None, &rollback_decision());
        assert_eq!(got.len(), 1, "{got:?}");
        let n = &got[0];
        assert_eq!(n.event, NotifyEvent::RolledBack);
        assert_eq!(n.version, Some(2));
        assert_eq!(n.reason, "RolledBack");
        assert_eq!(n.numbers["stepsPassed"], 1);
        assert_eq!(n.numbers["analysis"]["checks"][0]["value"], 0.31);
    }

    #[test]
    fn a_stale_test_set_is_said_once_per_stale_run_with_its_freshness() {
        let at = |end: &str| {
            decision(
                vec![event(
                    "TestSetStale",
                    "live traffic has left the gate's test set",
                )],
                ModelStatus {
                    champion: Some("v1".into()),
                    test_set_freshness: Some(crate::api::TestSetFreshness {
                        stale_features: vec!["alcohol".into()],
                        consecutive_windows: 3,
                        last_window_end: Some(end.parse().expect("time")),
                        ..Default::default()
                    }),
                    ..ModelStatus::default()
                },
            )
        };
        let got = notifications(None, &at("2026-06-01T19:30:00Z"));
        assert_eq!(got.len(), 1, "{got:?}");
        let n = &got[0];
        assert_eq!((n.event, n.version), (NotifyEvent::TestSetStale, Some(1)));
        assert_eq!(n.numbers["testSetFreshness"]["staleFeatures"][0], "alcohol");
        let again = notifications(None, &at("2026-06-02T09:00:00Z"));
        assert_ne!(n.occurrence, again[0].occurrence, "a later run is news");
    }

    #[test]
    fn every_lifecycle_reason_maps_to_its_step() {
        for (reason, step) in [
            ("TrainingStarted", NotifyEvent::TrainingStarted),
            ("TrainingFailed", NotifyEvent::TrainingFailed),
            ("DataRejected", NotifyEvent::DataRejected),
            ("GateFailed", NotifyEvent::GateRejected),
            ("ShadowPassed", NotifyEvent::ShadowPassed),
            ("ShadowFailed", NotifyEvent::ShadowFailed),
            ("CanaryStepPassed", NotifyEvent::CanaryStepPassed),
            ("CanaryAnalysisFailed", NotifyEvent::CanaryStepFailed),
            ("Promoted", NotifyEvent::Promoted),
            ("ManualPromotion", NotifyEvent::Promoted),
            ("RolledBack", NotifyEvent::RolledBack),
            ("RetrainDeferred", NotifyEvent::RetrainDeferred),
            ("TestSetStale", NotifyEvent::TestSetStale),
        ] {
            assert_eq!(step_of_reason(reason), Some(step), "{reason}");
        }
        assert_eq!(step_of_reason("TrainingScheduled"), None);
    }

    #[test]
    fn a_gate_pass_is_news_only_when_the_version_moves_on() {
        let gate = GateSummary {
            passed: true,
            summary: "passed 3/3".into(),
            failed_checks: vec![],
            champion: None,
        };
        let started = decision(
            vec![
                Action::StartTraining {
                    version: 1,
                    trigger: TrainingTrigger::Initial,
                    reason: "first".into(),
                    config_hash: "h".into(),
                    phase: VersionPhase::Training,
                },
                event("TrainingStarted", "v1 training started: first"),
            ],
            ModelStatus::default(),
        );
        let got = notifications(None, &started);
        assert_eq!(got[0].event, NotifyEvent::TrainingStarted);
        assert_eq!(got[0].version, Some(1));
        let record = Action::RecordGate {
            version: 1,
            gate: gate.clone(),
        };
        let paused = decision(vec![record.clone()], ModelStatus::default());
        assert!(notifications(None, &paused).is_empty());
        let promoted = decision(
            vec![
                record,
                Action::Promote {
                    version: 1,
                    previous: None,
                    reason: "first version".into(),
                },
                Action::SetVersionPhase {
                    version: 1,
                    phase: VersionPhase::Champion,
                    reason: "first".into(),
                },
                event("Promoted", "v1 is champion at 100 %: first version"),
            ],
            ModelStatus::default(),
        );
        let steps: Vec<_> = notifications(None, &promoted)
            .iter()
            .map(|n| (n.event, n.version))
            .collect();
        assert_eq!(
            steps,
            [
                (NotifyEvent::GatePassed, Some(1)),
                (NotifyEvent::Promoted, Some(1))
            ]
        );
        let rejected = decision(
            vec![
                Action::RecordGate {
                    version: 3,
                    gate: GateSummary {
                        passed: false,
                        summary: "failed 1/3".into(),
                        failed_checks: vec![GateCheck {
                            kind: "metric".into(),
                            name: "accuracy".into(),
                            slice: None,
                            value: Some(0.41),
                            bound: Some(0.6),
                            passed: false,
                            message: "accuracy 0.41 < 0.6".into(),
                        }],
                        champion: Some("v2".into()),
                    },
                },
                event("GateFailed", "v3 rejected: gate failed 1/3"),
            ],
            ModelStatus::default(),
        );
        let got = notifications(None, &rejected);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].event, NotifyEvent::GateRejected);
        assert_eq!(got[0].version, Some(3));
        assert_eq!(got[0].numbers["gate"]["failedChecks"][0]["value"], 0.41);
    }

    #[test]
    fn drift_is_news_when_its_condition_turns_true() {
        let mut after = ModelStatus {
            champion: Some("v4".into()),
            ..ModelStatus::default()
        };
        after.conditions.push(crate::api::Condition {
            type_: conditions::DRIFT_DETECTED.into(),
            status: ConditionStatus::True,
            reason: "DriftDetected".into(),
            message: "drift for 3 windows in a row".into(),
            last_transition_time: at("2026-06-01T08:00:00Z"),
            observed_generation: None,
        });
        let d = decision(vec![], after.clone());
        let got = notifications(Some(&ModelStatus::default()), &d);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].event, NotifyEvent::DriftDetected);
        assert_eq!(got[0].version, Some(4));
        assert!(
            notifications(Some(&after), &d).is_empty(),
            "still true: no news"
        );
    }

    #[test]
    fn the_id_is_the_same_for_the_same_step_and_differs_otherwise() {
        let n = notifications(None, &rollback_decision()).remove(0);
        let s = subject();
        let first = cloud_event(&s, &n, at("2026-06-01T08:00:00Z"));
        let resent = cloud_event(&s, &n, at("2026-06-01T09:30:00Z"));
        assert_eq!(first["id"], resent["id"], "a re-sent event keeps its id");
        assert_eq!(first["id"].as_str().map(str::len), Some(32));
        let other_uid = Subject {
            uid: "another-uid",
            ..subject()
        };
        assert_ne!(event_id(s.uid, &n), event_id(other_uid.uid, &n));
        let mut v3 = n.clone();
        v3.version = Some(3);
        assert_ne!(event_id(s.uid, &n), event_id(s.uid, &v3));
        let mut step = n.clone();
        step.event = NotifyEvent::CanaryStepFailed;
        assert_ne!(event_id(s.uid, &n), event_id(s.uid, &step));
        let mut again = n.clone();
        again.occurrence = "failure-2".into();
        assert_ne!(event_id(s.uid, &n), event_id(s.uid, &again));
    }

    #[test]
    fn a_canary_step_occurrence_is_its_step_and_failure_count() {
        let status = ModelStatus {
            canary: Some(CanaryStatus {
                version: "v2".into(),
                step: 2,
                step_started_at: None,
                failures: 1,
                awaiting_promotion: false,
                analyses: vec![analysis(1, AnalysisOutcome::Passed, 0.01)],
            }),
            ..ModelStatus::default()
        };
        let d = decision(
            vec![
                event("CanaryStepPassed", "v2: passed"),
                event("CanaryAnalysisFailed", "v2: failure 1 of 2"),
            ],
            status,
        );
        let got = notifications(None, &d);
        assert_eq!(got[0].occurrence, "step-2");
        assert_eq!(got[0].version, Some(2));
        assert_eq!(got[0].numbers["analysis"]["canaryRequests"], 400);
        assert_eq!(got[1].occurrence, "failure-1");
    }

    #[test]
    fn a_cloud_event_is_structured_json_with_the_model_version_and_link() {
        let n = notifications(None, &rollback_decision()).remove(0);
        let (bytes, content_type) = body(
            NotifyFormat::CloudEvents,
            &subject(),
            &n,
            at("2026-06-01T08:00:00Z"),
        );
        assert_eq!(content_type, "application/cloudevents+json");
        let e: Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(e["specversion"], "1.0");
        assert_eq!(e["type"], "io.driftline.model.rolledback");
        assert_eq!(
            e["source"],
            "/apis/driftline.dev/v1alpha1/namespaces/ml/models/wine-quality"
        );
        assert_eq!(e["subject"], "wine-quality/v2");
        assert_eq!(e["time"], "2026-06-01T08:00:00.000Z");
        assert_eq!(e["datacontenttype"], "application/json");
        let data = &e["data"];
        assert_eq!(data["model"], "wine-quality");
        assert_eq!(data["namespace"], "ml");
        assert_eq!(data["version"], "v2");
        assert_eq!(data["reason"], "RolledBack");
        assert_eq!(
            data["dashboardUrl"],
            "http://dash.example:9091/models/ml/wine-quality/versions/v2"
        );
        assert_eq!(data["numbers"]["analysis"]["checks"][0]["bound"], 0.05);
    }

    #[test]
    fn a_slack_body_has_text_blocks_the_figures_and_the_link() {
        let n = notifications(None, &rollback_decision()).remove(0);
        let (bytes, content_type) = body(
            NotifyFormat::Slack,
            &subject(),
            &n,
            at("2026-06-01T08:00:00Z"),
        );
        assert_eq!(content_type, "application/json");
        let b: Value = serde_json::from_slice(&bytes).expect("json");
        let text = b["text"].as_str().expect("text");
        assert!(text.contains("ml/wine-quality v2: rolledBack"), "{text}");
        let blocks = b["blocks"].as_array().expect("blocks");
        assert_eq!(blocks.len(), 3, "{blocks:?}");
        assert_eq!(blocks[0]["type"], "section");
        let figures = blocks[1]["text"]["text"].as_str().expect("figures");
        assert!(
            figures.contains("✗ errorRate: 0.31 (bound 0.05)"),
            "{figures}"
        );
        let link = blocks[2]["elements"][0]["text"].as_str().expect("link");
        assert_eq!(
            link,
            "<http://dash.example:9091/models/ml/wine-quality/versions/v2|Open in the driftline dashboard>"
        );
        let no_dashboard = Subject {
            dashboard: None,
            ..subject()
        };
        let b = slack_body(&no_dashboard, &n);
        assert_eq!(b["blocks"].as_array().map(Vec::len), Some(2));
    }
}
