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

use crate::api::{Model, ModelPhase, TrainingTrigger};

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

type FloatGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

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
        Self {
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
}
