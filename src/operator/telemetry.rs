//! The operator's own `/metrics`, `/healthz` and `/readyz`.

use crate::api::routes;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use kube::runtime::reflector::ObjectRef;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::api::{ConditionStatus, Model, ModelPhase, ModelStatus, TrainingTrigger};

use super::error::OperatorError;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TriggerLabels {
    trigger: String,
}

/// One number of one check of a Model's latest canary analysis.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CheckLabels {
    namespace: String,
    model: String,
    version: String,
    check: String,
    /// `value`, `bound`, `lower` or `upper` (the always-valid interval).
    quantity: String,
}

/// One condition of one Model, in kube-state-metrics' shape: the series of
/// the condition's current status is 1, the others 0.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConditionLabels {
    namespace: String,
    model: String,
    r#type: String,
    status: String,
}

/// A Model's finished trainings by outcome, or its rollbacks.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelOutcomeLabels {
    namespace: String,
    model: String,
    outcome: String,
}

/// What became of one notification delivery attempt or delivery.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NotificationLabels {
    outcome: String,
}

type FloatGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

/// A Model's conditions as exported: type and status, in status order.
type ConditionStates = Vec<(String, ConditionStatus)>;

/// Counters and gauges of the operator.
pub struct Telemetry {
    registry: Registry,
    reconciles: Counter,
    errors: Family<KindLabels, Counter>,
    duration: Histogram,
    models: Family<PhaseLabels, Gauge>,
    trainings: Family<TriggerLabels, Counter>,
    phases: Mutex<HashMap<ObjectRef<Model>, ModelPhase>>,
    ready: AtomicBool,
    leading: Gauge,
    leases_lost: Counter,
    canary_checks: Family<CheckLabels, FloatGauge>,
    ready_gauge: Gauge,
    conditions: Family<ConditionLabels, Gauge>,
    trainings_finished: Family<ModelOutcomeLabels, Counter>,
    rollbacks: Family<ModelOutcomeLabels, Counter>,
    notifications: Family<NotificationLabels, Counter>,
    /// The conditions each Model last exported, so an unchanged status
    /// (most reconciles) costs no series lookup.
    exported_conditions: Mutex<HashMap<ObjectRef<Model>, ConditionStates>>,
    /// The series each Model's canary exports now, removed when it ends.
    canary_series: Mutex<HashMap<ObjectRef<Model>, Vec<CheckLabels>>>,
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}

fn phase_name(p: ModelPhase) -> String {
    p.to_string()
}

impl Telemetry {
    /// Registers every metric under `driftline_operator_`.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("driftline_operator");
        let reconciles = Counter::default();
        let errors = Family::<KindLabels, Counter>::default();
        // 100 µs … ~3 s.
        let duration = Histogram::new(exponential_buckets(0.000_1, 2.0, 16));
        let models = Family::<PhaseLabels, Gauge>::default();
        let trainings = Family::<TriggerLabels, Counter>::default();
        registry.register("reconciles", "Reconciles of Models", reconciles.clone());
        registry.register(
            "reconcile_errors",
            "Failed reconciles by kind of error",
            errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time one reconcile took",
            duration.clone(),
        );
        registry.register("models", "Models by phase", models.clone());
        registry.register(
            "trainings_started",
            "Training runs started by trigger",
            trainings.clone(),
        );
        let leading = Gauge::default();
        let leases_lost = Counter::default();
        registry.register(
            "leader",
            "1 while this replica holds the leader Lease (with leader election)",
            leading.clone(),
        );
        registry.register(
            "leases_lost",
            "Times this replica stopped leading: another held the Lease, or no renewal within the renew deadline",
            leases_lost.clone(),
        );
        let canary_checks = Family::<CheckLabels, FloatGauge>::default();
        registry.register(
            "canary_check",
            "The latest canary analysis per check: its value, bound and always-valid interval (lower, upper)",
            canary_checks.clone(),
        );
        let ready_gauge = Gauge::default();
        registry.register(
            "ready",
            "1 once the operator's caches are synced (what /readyz answers)",
            ready_gauge.clone(),
        );
        let conditions = Family::<ConditionLabels, Gauge>::default();
        registry.register(
            "model_condition",
            "Each condition of each Model: 1 on the series of its current status (True, False, Unknown), 0 on the others",
            conditions.clone(),
        );
        let trainings_finished = Family::<ModelOutcomeLabels, Counter>::default();
        registry.register(
            "trainings_finished",
            "Training runs finished, by Model and outcome (Succeeded, Failed)",
            trainings_finished.clone(),
        );
        let rollbacks = Family::<ModelOutcomeLabels, Counter>::default();
        registry.register(
            "rollbacks",
            "Rollbacks by Model: a canary refused by live evidence (outcome Automatic) or by a person (Manual)",
            rollbacks.clone(),
        );
        let notifications = Family::<NotificationLabels, Counter>::default();
        registry.register(
            "notifications",
            "Notification deliveries by outcome: delivered, retried (an attempt failed and is retried), deadLettered (recorded in the registry), dropped (the queue was full)",
            notifications.clone(),
        );
        Self {
            notifications,
            exported_conditions: Mutex::new(HashMap::new()),
            ready_gauge,
            conditions,
            trainings_finished,
            rollbacks,
            canary_checks,
            canary_series: Mutex::new(HashMap::new()),
            registry,
            reconciles,
            errors,
            duration,
            models,
            trainings,
            phases: Mutex::new(HashMap::new()),
            ready: AtomicBool::new(false),
            leading,
            leases_lost,
        }
    }

    /// Counts one notification outcome (`delivered`, `retried`, `deadLettered`, `dropped`).
    pub fn notification(&self, outcome: &str) {
        self.notifications
            .get_or_create(&NotificationLabels {
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// Counts one reconcile, its duration and its error kind.
    pub fn observe_reconcile(&self, took: Duration, error: Option<&OperatorError>) {
        self.reconciles.inc();
        self.duration.observe(took.as_secs_f64());
        if let Some(e) = error {
            self.errors
                .get_or_create(&KindLabels {
                    kind: e.metric_label().into(),
                })
                .inc();
        }
    }

    /// Counts a training start.
    pub fn training_started(&self, trigger: TrainingTrigger) {
        self.trainings
            .get_or_create(&TriggerLabels {
                trigger: trigger.to_string(),
            })
            .inc();
    }

    /// Records the phase of a Model for the `models{phase}` gauge.
    pub fn set_phase(&self, model: &ObjectRef<Model>, phase: ModelPhase) {
        let mut phases = self.phases.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = phases.insert(model.clone(), phase) {
            if old == phase {
                return;
            }
            self.models
                .get_or_create(&PhaseLabels {
                    phase: phase_name(old),
                })
                .dec();
        }
        self.models
            .get_or_create(&PhaseLabels {
                phase: phase_name(phase),
            })
            .inc();
    }

    /// Exports the latest analysis of a Model's canary; `None` (no canary)
    /// removes what it exported.
    pub fn set_canary(
        &self,
        model: &ObjectRef<Model>,
        canary: Option<(&str, &crate::api::AnalysisRecord)>,
    ) {
        let mut series = self.canary_series.lock().unwrap_or_else(|p| p.into_inner());
        for labels in series.remove(model).unwrap_or_default() {
            self.canary_checks.remove(&labels);
        }
        let Some((version, analysis)) = canary else {
            return;
        };
        let mut now = Vec::new();
        for check in &analysis.checks {
            let numbers = [
                ("value", Some(check.value)),
                ("bound", Some(check.bound)),
                ("lower", check.lower),
                ("upper", check.upper),
            ];
            for (quantity, number) in numbers {
                let Some(number) = number else { continue };
                let labels = CheckLabels {
                    namespace: model.namespace.clone().unwrap_or_default(),
                    model: model.name.clone(),
                    version: version.to_string(),
                    check: check.name.clone(),
                    quantity: quantity.into(),
                };
                self.canary_checks.get_or_create(&labels).set(number);
                now.push(labels);
            }
        }
        series.insert(model.clone(), now);
    }

    /// Marks the operator ready (caches synced, leading or standing by).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
        self.ready_gauge.set(i64::from(ready));
    }

    /// Exports what a reconcile wrote: every condition of the Model, a
    /// training that finished since `before`, and a rollback it carried out
    /// (`Some(manual)`), for the chart's alerts and dashboard.
    pub fn observe_status(
        &self,
        model: &ObjectRef<Model>,
        before: Option<&ModelStatus>,
        after: &ModelStatus,
        rollback: Option<bool>,
    ) {
        let namespace = model.namespace.clone().unwrap_or_default();
        let now: ConditionStates = after
            .conditions
            .iter()
            .map(|c| (c.type_.clone(), c.status))
            .collect();
        let unchanged = self
            .exported_conditions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(model.clone(), now.clone())
            .is_some_and(|before| before == now);
        for c in after.conditions.iter().filter(|_| !unchanged) {
            for status in ["True", "False", "Unknown"] {
                let labels = ConditionLabels {
                    namespace: namespace.clone(),
                    model: model.name.clone(),
                    r#type: c.type_.clone(),
                    status: status.into(),
                };
                let current = match c.status {
                    ConditionStatus::True => "True",
                    ConditionStatus::False => "False",
                    ConditionStatus::Unknown => "Unknown",
                } == status;
                self.conditions
                    .get_or_create(&labels)
                    .set(i64::from(current));
            }
        }
        let finished = |s: Option<&ModelStatus>| {
            s.and_then(|s| s.last_training.as_ref())
                .map(|t| (t.version.clone(), t.finished_at, t.outcome.clone()))
        };
        if let Some((_, _, Some(outcome))) = finished(Some(after))
            && finished(Some(after)) != finished(before)
        {
            let outcome = if outcome.starts_with("Failed") {
                "Failed"
            } else {
                "Succeeded"
            };
            self.trainings_finished
                .get_or_create(&ModelOutcomeLabels {
                    namespace: namespace.clone(),
                    model: model.name.clone(),
                    outcome: outcome.into(),
                })
                .inc();
        }
        if let Some(manual) = rollback {
            self.rollbacks
                .get_or_create(&ModelOutcomeLabels {
                    namespace,
                    model: model.name.clone(),
                    outcome: if manual { "Manual" } else { "Automatic" }.into(),
                })
                .inc();
        }
    }

    /// Records whether this replica leads (`driftline_operator_leader`).
    pub fn set_leading(&self, leading: bool) {
        self.leading.set(i64::from(leading));
    }

    /// Counts a lost leader Lease (`driftline_operator_leases_lost_total`).
    pub fn lease_lost(&self) {
        self.leases_lost.inc();
    }

    /// Whether `/readyz` answers ready.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// The OpenMetrics text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

async fn metrics(State(t): State<Arc<Telemetry>>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        t.render(),
    )
}

async fn readyz(State(t): State<Arc<Telemetry>>) -> impl IntoResponse {
    if t.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "caches not synced yet")
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` until the process ends.
pub async fn serve(addr: SocketAddr, telemetry: Arc<Telemetry>) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let app = Router::new()
        .route(routes::METRICS, get(metrics))
        .route(routes::HEALTHZ, get(|| async { "ok" }))
        .route(routes::READYZ, get(readyz))
        .with_state(telemetry);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(local)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{AnalysisCheck, AnalysisOutcome, AnalysisRecord, Evidence};
    use chrono::Utc;

    fn analysis(upper: f64) -> AnalysisRecord {
        AnalysisRecord {
            step: 0,
            weight: 10,
            outcome: AnalysisOutcome::Inconclusive,
            canary_requests: 500,
            stable_requests: 4500,
            checks: vec![AnalysisCheck {
                name: "maxErrorRateIncrease".into(),
                value: 0.004,
                bound: 0.01,
                passed: false,
                message: String::new(),
                evidence: Some(Evidence::KeepWatching),
                lower: Some(-0.02),
                upper: Some(upper),
            }],
            window_start: Utc::now(),
            window_end: Utc::now(),
            message: String::new(),
            divergence: None,
        }
    }

    #[test]
    fn a_canarys_latest_checks_are_exported_and_removed_when_it_ends() {
        let t = Telemetry::new();
        let model = ObjectRef::<Model>::new("wine").within("ml");
        t.set_canary(&model, Some(("v2", &analysis(0.03))));
        t.set_canary(&model, Some(("v2", &analysis(0.025))));
        let text = t.render();
        let line = |q: &str| {
            format!(
                "driftline_operator_canary_check{{namespace=\"ml\",model=\"wine\",version=\"v2\",check=\"maxErrorRateIncrease\",quantity=\"{q}\"}}"
            )
        };
        assert!(text.contains(&format!("{} 0.025", line("upper"))), "{text}");
        assert!(!text.contains(&format!("{} 0.03", line("upper"))), "{text}");
        assert!(text.contains(&format!("{} -0.02", line("lower"))), "{text}");
        assert!(text.contains(&format!("{} 0.01", line("bound"))), "{text}");
        t.set_canary(&model, None);
        assert!(!t.render().contains("quantity="), "{}", t.render());
    }

    /// What a reconcile exports for the chart's alerts: conditions in
    /// kube-state-metrics' shape, a finished training once, a rollback.
    #[test]
    fn model_conditions_trainings_and_rollbacks_are_exported() {
        use crate::api::{Condition, TrainingRun};
        let t = Telemetry::new();
        let model = ObjectRef::<Model>::new("wine").within("ml");
        let mut status = ModelStatus::default();
        status.conditions.push(Condition {
            type_: "Stalled".into(),
            status: ConditionStatus::True,
            reason: "RolledBack".into(),
            message: String::new(),
            last_transition_time: Utc::now(),
            observed_generation: None,
        });
        let run: TrainingRun = serde_json::from_value(serde_json::json!({
            "version": "v2", "trigger": "Manual", "reason": "r", "stage": "Training",
            "startedAt": "2026-06-01T08:00:00Z", "finishedAt": "2026-06-01T08:05:00Z",
            "outcome": "Failed: exit 1", "configHash": "h"
        }))
        .unwrap();
        status.last_training = Some(run);
        t.observe_status(&model, None, &status, Some(false));
        // The same status again: no second count.
        t.observe_status(&model, Some(&status.clone()), &status, None);
        let text = t.render();
        let series = |name: &str, labels: &str| {
            text.lines()
                .find(|l| l.starts_with(&format!("{name}{{{labels}}}")))
                .and_then(|l| l.rsplit(' ').next())
                .map(String::from)
        };
        let cond = |status: &str| {
            series(
                "driftline_operator_model_condition",
                &format!("namespace=\"ml\",model=\"wine\",type=\"Stalled\",status=\"{status}\""),
            )
        };
        assert_eq!(cond("True").as_deref(), Some("1"), "{text}");
        assert_eq!(cond("False").as_deref(), Some("0"), "{text}");
        let failed = series(
            "driftline_operator_trainings_finished_total",
            "namespace=\"ml\",model=\"wine\",outcome=\"Failed\"",
        );
        assert_eq!(failed.as_deref(), Some("1"), "{text}");
        let rollbacks = series(
            "driftline_operator_rollbacks_total",
            "namespace=\"ml\",model=\"wine\",outcome=\"Automatic\"",
        );
        assert_eq!(rollbacks.as_deref(), Some("1"), "{text}");
        t.set_ready(true);
        assert!(t.render().contains("driftline_operator_ready 1"));
    }

    /// Every metric the chart's alerts and Grafana dashboard query is one
    /// the operator exports, and the dashboard is a Grafana dashboard.
    #[test]
    fn the_charts_alerts_and_dashboard_query_only_exported_metrics() {
        let alerts = include_str!("../../charts/driftline/files/alerts.yaml");
        let dashboard = include_str!("../../charts/driftline/files/dashboard.json");
        // Every recorder once, so each family has a series; then the sample
        // names of every family, from `# TYPE name kind`.
        let t = Telemetry::new();
        let model = ObjectRef::<Model>::new("wine").within("ml");
        t.observe_reconcile(Duration::from_millis(3), Some(&OperatorError::Unnamed));
        t.training_started(TrainingTrigger::Drift);
        t.set_phase(&model, ModelPhase::Serving);
        t.set_canary(&model, Some(("v2", &analysis(0.03))));
        let mut status = ModelStatus::default();
        status.conditions.push(crate::api::Condition {
            type_: "Ready".into(),
            status: ConditionStatus::True,
            reason: String::new(),
            message: String::new(),
            last_transition_time: Utc::now(),
            observed_generation: None,
        });
        status.last_training = serde_json::from_value(serde_json::json!({
            "version": "v1", "trigger": "Initial", "reason": "r", "stage": "Training",
            "startedAt": "2026-06-01T08:00:00Z", "outcome": "Succeeded", "configHash": "h"
        }))
        .unwrap();
        t.observe_status(&model, None, &status, Some(true));
        let text = t.render();
        let mut exported = std::collections::BTreeSet::new();
        for line in text.lines() {
            let mut words = line.split(' ').skip(2);
            let (Some(name), Some(kind)) = (words.next(), words.next()) else {
                continue;
            };
            if !line.starts_with("# TYPE ") {
                continue;
            }
            match kind {
                "counter" => {
                    exported.insert(format!("{name}_total"));
                }
                "histogram" => {
                    for suffix in ["_bucket", "_sum", "_count"] {
                        exported.insert(format!("{name}{suffix}"));
                    }
                }
                _ => {
                    exported.insert(name.to_string());
                }
            }
        }
        let queried = |text: &str| -> Vec<String> {
            let mut names = Vec::new();
            let bytes = text.as_bytes();
            let mut i = 0;
            while let Some(at) = text[i..].find("driftline_") {
                let start = i + at;
                let end = bytes[start..]
                    .iter()
                    .position(|b| !(b.is_ascii_lowercase() || *b == b'_'))
                    .map_or(text.len(), |n| start + n);
                names.push(text[start..end].to_string());
                i = end;
            }
            names
        };
        let rules: serde_yaml::Value = serde_yaml::from_str(alerts).unwrap();
        let exprs: Vec<&str> = rules["groups"][0]["rules"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|r| r["expr"].as_str().unwrap())
            .collect();
        assert_eq!(exprs.len(), 7, "every alert the issue names");
        let d: serde_json::Value = serde_json::from_str(dashboard).unwrap();
        assert!(d["uid"].is_string() && d["title"].is_string() && d["schemaVersion"].is_u64());
        let panels = d["panels"].as_array().unwrap();
        assert!(panels.len() >= 5);
        let mut targets = Vec::new();
        for p in panels {
            for key in ["id", "type", "title", "gridPos", "datasource"] {
                assert!(!p[key].is_null(), "panel without {key}: {p}");
            }
            for t in p["targets"].as_array().unwrap() {
                targets.push(t["expr"].as_str().unwrap().to_string());
            }
        }
        let all: Vec<String> = exprs
            .iter()
            .map(|e| e.to_string())
            .chain(targets)
            .flat_map(|e| queried(&e))
            .collect();
        assert!(all.len() >= 10, "{all:?}");
        let unknown: Vec<&String> = all.iter().filter(|n| !exported.contains(*n)).collect();
        assert!(
            unknown.is_empty(),
            "not exported: {unknown:?}; exported: {exported:?}"
        );
    }
}
