//! What the server keeps about its traffic beside the answers: rows,
//! predicted classes and drift per served batch, and the feedback and drift
//! endpoints (`POST …/feedback`, `GET …/feedback`, `GET …/drift`).

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::response::Response;
use chrono::{DateTime, Utc};

use crate::api::Task;
use crate::drift::{ConfidenceTally, DriftRegion, Observation, WindowReport};

use super::error::ServeError;
use super::feedback::FeedbackBody;
use super::metrics::{FeatureLabels, ServeMetrics};
use super::protocol::DecodedBatch;
use super::server::{AppState, Loaded, ModelOutput, ModelPath, answer, read_body};

/// Counts rows, classes and drift for a served batch.
pub(super) fn observe(
    state: &AppState,
    loaded: &Loaded,
    batch: &DecodedBatch,
    output: &ModelOutput,
    now: DateTime<Utc>,
) {
    let metrics = &state.metrics;
    metrics.rows.inc_by(batch.rows() as u64);
    let classification = matches!(loaded.model.info().task, Task::Classification);
    if classification {
        loaded
            .class_counters
            .count(&metrics.predictions, &output.labels);
    }
    let closed = {
        let mut monitor = loaded.drift.lock().unwrap_or_else(|p| p.into_inner());
        monitor.observe_rows(
            batch.rows(),
            |j, i| match &output.monitored {
                Some(columns) => Observation::Number(columns[j][i]),
                None => batch
                    .get(j, i)
                    .map_or(Observation::Missing, |v| v.observation()),
            },
            |i| {
                if classification {
                    Observation::Text(&output.labels[i])
                } else {
                    Observation::Number(output.values[i])
                }
            },
            |i| confidence(output, i),
            now,
        )
    };
    for window in closed {
        window_closed(metrics, loaded, &window);
    }
    if let Some(probabilities) = &output.probabilities {
        let mut tally = ConfidenceTally::default();
        probabilities
            .iter()
            .for_each(|p| tally.observe_probabilities(p));
        metrics.confidence_rows.inc_by(tally.rows);
        metrics.confidence_sum.inc_by(tally.expected_correct());
    }
}

/// Row `i`'s top-class probability: what the estimated accuracy averages.
pub(super) fn confidence(output: &ModelOutput, i: usize) -> Option<f64> {
    let p = output.probabilities.as_ref()?.get(i)?;
    Some(f64::from(p.iter().copied().fold(0.0f32, f32::max)))
}

/// A drift window closed: its metrics, and where it moved for the
/// annotation queue.
fn window_closed(metrics: &ServeMetrics, loaded: &Loaded, window: &WindowReport) {
    publish_drift(metrics, window);
    if loaded.feedback.annotating() {
        let profile = &loaded.model.info().reference;
        loaded
            .feedback
            .drift_window(DriftRegion::of_window(profile, window));
    }
}

fn publish_drift(metrics: &ServeMetrics, window: &WindowReport) {
    metrics.drift_windows.inc();
    for f in window.features.iter().chain([&window.prediction]) {
        let labels = FeatureLabels {
            feature: f.name.clone(),
        };
        metrics.drift.get_or_create(&labels).set(f.value);
        metrics
            .drifted
            .get_or_create(&labels)
            .set(i64::from(f.drifted));
    }
    metrics.dataset_drifted_share.set(window.drifted_share);
    if window.dataset_drifted {
        tracing::warn!(features = ?window.drifted_features, share = window.drifted_share, "dataset drift in the last window");
    }
}

pub(super) async fn feedback(
    State(state): State<Arc<AppState>>,
    Path(path): Path<ModelPath>,
    request: Request,
) -> Response {
    let result = async {
        let loaded = state.model_for(&path)?;
        let body = read_body(request.into_body(), state.config.body_limit).await?;
        let parsed: FeedbackBody = serde_json::from_slice(&body).map_err(|e| {
            ServeError::BadFeedback(format!(
                "expected {{\"id\", \"label\"}}, a list of them, or {{\"feedback\": [...]}}: {e}"
            ))
        })?;
        let items = parsed.into_items();
        let single = items.len() == 1;
        let outcome = loaded.feedback.label(items).await?;
        if single && outcome.joined == 0 && !outcome.unknown.is_empty() {
            return Err(ServeError::UnknownFeedbackId(format!(
                "`{}`",
                outcome.unknown.join("`, `")
            )));
        }
        Ok::<_, ServeError>(outcome)
    }
    .await;
    answer(&state, "feedback", result)
}

pub(super) async fn feedback_stats(
    State(state): State<Arc<AppState>>,
    Path(path): Path<ModelPath>,
) -> Response {
    let result = state.model_for(&path).map(|l| l.feedback.stats());
    answer(&state, "feedback", result)
}

/// Body of `GET /v2/models/{name}/drift`.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct DriftAnswer {
    model_name: String,
    model_version: String,
    #[serde(flatten)]
    report: crate::drift::DriftReport,
}

pub(super) async fn drift(
    State(state): State<Arc<AppState>>,
    Path(path): Path<ModelPath>,
) -> Response {
    let result = state.model_for(&path).map(|loaded| {
        let mut monitor = loaded.drift.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(window) = monitor.tick(Utc::now()) {
            window_closed(&state.metrics, loaded, &window);
        }
        DriftAnswer {
            model_name: loaded.name.clone(),
            model_version: loaded.version.clone(),
            report: monitor.report(),
        }
    });
    answer(&state, "drift", result)
}
