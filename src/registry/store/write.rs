//! One record to its table, idempotent by natural key.

use sqlx::AnyConnection;

use super::rows::*;
use crate::registry::record::Record;

pub(super) async fn write_record(
    conn: &mut AnyConnection,
    record: &Record,
) -> Result<(), sqlx::Error> {
    let query = match record {
        Record::Version(v) => sqlx::query(
            "INSERT INTO model_versions (namespace, model, version, training_trigger, reason, \
             seed, config_hash, dataset_digest, artifact_uri, feedback_rows, code_version, \
             created_us, start_from, start_parent, start_parent_digest, start_reason) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) \
             ON CONFLICT (namespace, model, version) DO UPDATE SET \
             dataset_digest = COALESCE(excluded.dataset_digest, model_versions.dataset_digest), \
             artifact_uri = COALESCE(excluded.artifact_uri, model_versions.artifact_uri), \
             feedback_rows = COALESCE(excluded.feedback_rows, model_versions.feedback_rows), \
             start_from = COALESCE(excluded.start_from, model_versions.start_from), \
             start_parent = COALESCE(excluded.start_parent, model_versions.start_parent), \
             start_parent_digest = \
             COALESCE(excluded.start_parent_digest, model_versions.start_parent_digest), \
             start_reason = COALESCE(excluded.start_reason, model_versions.start_reason)",
        )
        .bind(v.model.namespace.clone())
        .bind(v.model.name.clone())
        .bind(i64::from(v.version))
        .bind(v.trigger.clone())
        .bind(v.reason.clone())
        // Bit-for-bit: seeds above i64::MAX come back as the same u64.
        .bind(v.seed as i64)
        .bind(v.config_hash.clone())
        .bind(v.dataset_digest.clone())
        .bind(v.artifact_uri.clone())
        .bind(v.feedback_rows.map(i64_from))
        .bind(v.code_version.clone())
        .bind(v.created_at.timestamp_micros())
        .bind(v.start.as_ref().map(|s| s.from.clone()))
        .bind(v.start.as_ref().and_then(|s| s.parent.clone()))
        .bind(v.start.as_ref().and_then(|s| s.parent_digest.clone()))
        .bind(v.start.as_ref().and_then(|s| s.reason.clone())),
        Record::Evaluation(e) => sqlx::query(
            "INSERT INTO evaluations (namespace, model, version, passed, summary, metrics, \
             report, evaluated_us) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (namespace, model, version) DO NOTHING",
        )
        .bind(e.model.namespace.clone())
        .bind(e.model.name.clone())
        .bind(i64::from(e.version))
        .bind(i16::from(e.passed))
        .bind(e.summary.clone())
        .bind(metrics_to_json(&e.metrics))
        .bind(e.report.to_string())
        .bind(e.evaluated_at.timestamp_micros()),
        Record::Epoch(p) => sqlx::query(
            "INSERT INTO training_epochs (namespace, model, version, epoch, train_loss, \
             validation_loss, metric_name, metric_value) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (namespace, model, version, epoch) DO NOTHING",
        )
        .bind(p.model.namespace.clone())
        .bind(p.model.name.clone())
        .bind(i64::from(p.version))
        .bind(i64::from(p.epoch))
        .bind(not_nan(p.train_loss))
        .bind(p.validation_loss.and_then(not_nan))
        .bind(p.validation_metric.as_ref().map(|m| m.name.clone()))
        .bind(p.validation_metric.as_ref().and_then(|m| not_nan(m.value))),
        Record::Drift(d) => sqlx::query(
            "INSERT INTO drift_readings (namespace, model, window_end_us, feature, version, \
             statistic, value, threshold, drifted) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (namespace, model, window_end_us, feature, version) DO NOTHING",
        )
        .bind(d.model.namespace.clone())
        .bind(d.model.name.clone())
        .bind(d.window_end.timestamp_micros())
        .bind(d.feature.clone())
        .bind(i64::from(d.version))
        .bind(d.statistic.clone())
        .bind(not_nan(d.value))
        .bind(not_nan(d.threshold))
        .bind(i16::from(d.drifted)),
        Record::Canary(c) => sqlx::query(
            "INSERT INTO canary_analyses (namespace, model, version, step, window_end_us, \
             window_start_us, weight, canary_requests, stable_requests, canary_errors, \
             stable_errors, canary_p99_ms, stable_p99_ms, divergence, verdict, message, checks) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) \
             ON CONFLICT (namespace, model, version, step, window_end_us) DO NOTHING",
        )
        .bind(c.model.namespace.clone())
        .bind(c.model.name.clone())
        .bind(i64::from(c.version))
        .bind(i64::from(c.step))
        .bind(c.window_end.timestamp_micros())
        .bind(c.window_start.timestamp_micros())
        .bind(i64::from(c.weight))
        .bind(i64_from(c.canary_requests))
        .bind(i64_from(c.stable_requests))
        .bind(i64_from(c.canary_errors))
        .bind(i64_from(c.stable_errors))
        .bind(c.canary_p99_ms.and_then(not_nan))
        .bind(c.stable_p99_ms.and_then(not_nan))
        .bind(c.divergence.and_then(not_nan))
        .bind(c.verdict.as_str())
        .bind(c.message.clone())
        // A list of plain numbers and words always serialises.
        .bind((!c.checks.is_empty()).then(|| serde_json::to_string(&c.checks).unwrap_or_default())),
        Record::ChampionChange(c) => sqlx::query(
            "INSERT INTO champion_changes (namespace, model, changed_us, to_version, \
             from_version, action, change_trigger, actor, reason) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (namespace, model, changed_us, to_version) DO NOTHING",
        )
        .bind(c.model.namespace.clone())
        .bind(c.model.name.clone())
        .bind(c.at.timestamp_micros())
        .bind(c.to.map_or(0, i64::from))
        .bind(c.from.map_or(0, i64::from))
        .bind(c.action.as_str())
        .bind(c.trigger.clone())
        .bind(c.actor.clone())
        .bind(c.reason.clone()),
        Record::DeadLetter(d) => sqlx::query(
            "INSERT INTO dead_letters (namespace, model, event_id, sink_url, version, \
             event_type, attempts, last_error, failed_us) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (namespace, model, event_id, sink_url) DO UPDATE SET \
             attempts = dead_letters.attempts + excluded.attempts, \
             last_error = excluded.last_error, failed_us = excluded.failed_us",
        )
        .bind(d.model.namespace.clone())
        .bind(d.model.name.clone())
        .bind(d.event_id.clone())
        .bind(d.sink_url.clone())
        .bind(d.version.map(i64::from))
        .bind(d.event_type.clone())
        .bind(i64::from(d.attempts))
        .bind(d.last_error.clone())
        .bind(d.failed_at.timestamp_micros()),
    };
    query.execute(conn).await.map(drop)
}
