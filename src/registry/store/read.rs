//! The user commands' read queries: one version, a history, an evaluation,
//! curves, series, analyses and the audit trail.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::rows::*;
use super::{Registry, query_error};
use crate::registry::error::RegistryError;
use crate::registry::record::*;

impl Registry {
    /// One version with its lineage.
    pub async fn version(
        &self,
        model: &ModelRef,
        version: u32,
    ) -> Result<Option<VersionRecord>, RegistryError> {
        let row = sqlx::query(&format!(
            "SELECT {VERSION_COLUMNS} \
             FROM model_versions WHERE namespace = $1 AND model = $2 AND version = $3"
        ))
        .bind(&model.namespace)
        .bind(&model.name)
        .bind(i64::from(version))
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| query_error(format!("read {model} v{version}"), e))?;
        row.map(|r| version_from_row(&r))
            .transpose()
            .map_err(|e| query_error(format!("read {model} v{version}"), e))
    }

    /// A model's versions, oldest first, each with its gate outcome; `last`
    /// keeps only the newest `n`.
    ///
    /// Two range scans on the primary keys, merged here, rather than a join:
    /// on PostgreSQL tables not yet analysed (a registry filled since the last
    /// autovacuum) the planner estimated one row and chose a nested loop that
    /// rescanned every evaluation per version (358 ms for 1 000 versions).
    pub async fn history(
        &self,
        model: &ModelRef,
        last: Option<u32>,
    ) -> Result<Vec<VersionHistory>, RegistryError> {
        let operation = || format!("read the history of {model}");
        let rows = sqlx::query(&format!(
            "SELECT {VERSION_COLUMNS} FROM model_versions WHERE namespace = $1 AND model = $2 \
             ORDER BY version DESC LIMIT $3"
        ))
        .bind(&model.namespace)
        .bind(&model.name)
        .bind(last.map_or(i64::MAX, i64::from))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| query_error(operation(), e))?;
        let Some(oldest) = rows.last() else {
            return Ok(Vec::new());
        };
        let oldest: i64 = oldest
            .try_get("version")
            .map_err(|e| query_error(operation(), e))?;

        let gate_rows = sqlx::query(
            "SELECT version, passed, summary, metrics, evaluated_us FROM evaluations \
             WHERE namespace = $1 AND model = $2 AND version >= $3",
        )
        .bind(&model.namespace)
        .bind(&model.name)
        .bind(oldest)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| query_error(operation(), e))?;
        let mut gates = BTreeMap::new();
        for row in &gate_rows {
            let get_err = |e| query_error(operation(), e);
            let version: i64 = row.try_get("version").map_err(get_err)?;
            let gate = GateOutcome {
                passed: row.try_get::<i64, _>("passed").map_err(get_err)? != 0,
                summary: row.try_get("summary").map_err(get_err)?,
                metrics: metrics_from_json(&row.try_get::<String, _>("metrics").map_err(get_err)?)?,
                evaluated_at: time(row.try_get("evaluated_us").map_err(get_err)?),
            };
            gates.insert(version, gate);
        }

        rows.iter()
            .rev()
            .map(|row| {
                let version = version_from_row(row).map_err(|e| query_error(operation(), e))?;
                let gate = gates.remove(&i64::from(version.version));
                Ok(VersionHistory { version, gate })
            })
            .collect()
    }

    /// The full gate evaluation of one version.
    pub async fn evaluation(
        &self,
        model: &ModelRef,
        version: u32,
    ) -> Result<Option<EvaluationRecord>, RegistryError> {
        let operation = || format!("read the evaluation of {model} v{version}");
        let Some(row) = sqlx::query(
            "SELECT passed, summary, metrics, report, evaluated_us FROM evaluations \
             WHERE namespace = $1 AND model = $2 AND version = $3",
        )
        .bind(&model.namespace)
        .bind(&model.name)
        .bind(i64::from(version))
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| query_error(operation(), e))?
        else {
            return Ok(None);
        };
        let get_err = |e| query_error(operation(), e);
        let report: String = row.try_get("report").map_err(get_err)?;
        Ok(Some(EvaluationRecord {
            model: model.clone(),
            version,
            passed: row.try_get::<i64, _>("passed").map_err(get_err)? != 0,
            summary: row.try_get("summary").map_err(get_err)?,
            metrics: metrics_from_json(&row.try_get::<String, _>("metrics").map_err(get_err)?)?,
            report: serde_json::from_str(&report).map_err(|source| RegistryError::Corrupt {
                what: "gate report",
                source,
            })?,
            evaluated_at: time(row.try_get("evaluated_us").map_err(get_err)?),
        }))
    }

    /// The training curve of one version, by epoch.
    pub async fn training_curve(
        &self,
        model: &ModelRef,
        version: u32,
    ) -> Result<Vec<EpochRecord>, RegistryError> {
        let operation = || format!("read the training curve of {model} v{version}");
        let rows = sqlx::query(
            "SELECT epoch, train_loss, validation_loss, metric_name, metric_value \
             FROM training_epochs WHERE namespace = $1 AND model = $2 AND version = $3 \
             ORDER BY epoch",
        )
        .bind(&model.namespace)
        .bind(&model.name)
        .bind(i64::from(version))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| query_error(operation(), e))?;
        rows.iter()
            .map(|row| -> Result<EpochRecord, sqlx::Error> {
                let metric_name: Option<String> = row.try_get("metric_name")?;
                let metric_value: Option<f64> = row.try_get("metric_value")?;
                Ok(EpochRecord {
                    model: model.clone(),
                    version,
                    epoch: u32_from(row.try_get("epoch")?),
                    train_loss: row
                        .try_get::<Option<f64>, _>("train_loss")?
                        .unwrap_or(f64::NAN),
                    validation_loss: row.try_get("validation_loss")?,
                    validation_metric: metric_name.map(|name| ValidationMetric {
                        name,
                        value: metric_value.unwrap_or(f64::NAN),
                    }),
                })
            })
            .collect::<Result<_, _>>()
            .map_err(|e| query_error(operation(), e))
    }

    /// The drift readings of a model's latest `windows` windows (every
    /// feature, every measuring version), oldest window first.
    pub async fn drift_series(
        &self,
        model: &ModelRef,
        windows: u32,
    ) -> Result<Vec<DriftReading>, RegistryError> {
        let operation = || format!("read the drift series of {model}");
        if windows == 0 {
            return Ok(Vec::new());
        }
        // The start is the `windows`-th latest distinct window end; with
        // fewer windows than that, everything.
        let rows = sqlx::query(
            "SELECT window_end_us, feature, version, statistic, value, threshold, drifted \
             FROM drift_readings WHERE namespace = $1 AND model = $2 AND window_end_us >= \
             COALESCE((SELECT DISTINCT window_end_us FROM drift_readings \
                       WHERE namespace = $1 AND model = $2 \
                       ORDER BY window_end_us DESC LIMIT 1 OFFSET $3), $4) \
             ORDER BY window_end_us, feature, version",
        )
        .bind(&model.namespace)
        .bind(&model.name)
        .bind(i64::from(windows) - 1)
        .bind(i64::MIN)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| query_error(operation(), e))?;
        rows.iter()
            .map(|row| -> Result<DriftReading, sqlx::Error> {
                Ok(DriftReading {
                    model: model.clone(),
                    version: u32_from(row.try_get("version")?),
                    window_end: time(row.try_get("window_end_us")?),
                    feature: row.try_get("feature")?,
                    statistic: row.try_get("statistic")?,
                    value: row.try_get::<Option<f64>, _>("value")?.unwrap_or(f64::NAN),
                    threshold: row
                        .try_get::<Option<f64>, _>("threshold")?
                        .unwrap_or(f64::NAN),
                    drifted: row.try_get::<i64, _>("drifted")? != 0,
                })
            })
            .collect::<Result<_, _>>()
            .map_err(|e| query_error(operation(), e))
    }

    /// Every canary analysis of one version, by step then window.
    pub async fn canary_analyses(
        &self,
        model: &ModelRef,
        version: u32,
    ) -> Result<Vec<CanaryAnalysis>, RegistryError> {
        let operation = || format!("read the canary analyses of {model} v{version}");
        let rows = sqlx::query(
            "SELECT step, weight, window_start_us, window_end_us, canary_requests, \
             stable_requests, canary_errors, stable_errors, canary_p99_ms, stable_p99_ms, \
             divergence, verdict, message, checks FROM canary_analyses \
             WHERE namespace = $1 AND model = $2 AND version = $3 \
             ORDER BY step, window_end_us",
        )
        .bind(&model.namespace)
        .bind(&model.name)
        .bind(i64::from(version))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| query_error(operation(), e))?;
        rows.iter()
            .map(|row| canary_from_row(model, version, row))
            .collect::<Result<_, _>>()
            .map_err(|e| query_error(operation(), e))
    }

    /// Every change of champion of a model, oldest first: which version was
    /// champion when, who or what changed it, and why.
    pub async fn audit_trail(
        &self,
        model: &ModelRef,
    ) -> Result<Vec<ChampionChange>, RegistryError> {
        let operation = || format!("read the audit trail of {model}");
        let rows = sqlx::query(
            "SELECT changed_us, to_version, from_version, action, change_trigger, actor, reason \
             FROM champion_changes WHERE namespace = $1 AND model = $2 \
             ORDER BY changed_us, to_version",
        )
        .bind(&model.namespace)
        .bind(&model.name)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| query_error(operation(), e))?;
        rows.iter()
            .map(|row| -> Result<ChampionChange, sqlx::Error> {
                let action: String = row.try_get("action")?;
                Ok(ChampionChange {
                    model: model.clone(),
                    at: time(row.try_get("changed_us")?),
                    action: ChampionAction::parse(&action).ok_or_else(|| {
                        sqlx::Error::Decode(format!("unknown champion action `{action}`").into())
                    })?,
                    from: version_or_none(row.try_get("from_version")?),
                    to: version_or_none(row.try_get("to_version")?),
                    trigger: row.try_get("change_trigger")?,
                    actor: row.try_get("actor")?,
                    reason: row.try_get("reason")?,
                })
            })
            .collect::<Result<_, _>>()
            .map_err(|e| query_error(operation(), e))
    }

    /// The version that was champion at `at` according to the audit trail
    /// (`None`: nothing served then, or no change recorded before it).
    pub async fn champion_at(
        &self,
        model: &ModelRef,
        at: DateTime<Utc>,
    ) -> Result<Option<u32>, RegistryError> {
        let to: Option<i64> = sqlx::query_scalar(
            "SELECT to_version FROM champion_changes \
             WHERE namespace = $1 AND model = $2 AND changed_us <= $3 \
             ORDER BY changed_us DESC, to_version DESC LIMIT 1",
        )
        .bind(&model.namespace)
        .bind(&model.name)
        .bind(at.timestamp_micros())
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| query_error(format!("read the champion of {model} at {at}"), e))?;
        Ok(to.and_then(version_or_none))
    }

    /// The notifications no attempt delivered for a model, oldest first.
    pub async fn dead_letters(&self, model: &ModelRef) -> Result<Vec<DeadLetter>, RegistryError> {
        let operation = || format!("read the dead letters of {model}");
        let rows = sqlx::query(
            "SELECT event_id, sink_url, version, event_type, attempts, last_error, failed_us \
             FROM dead_letters WHERE namespace = $1 AND model = $2 \
             ORDER BY failed_us, event_id, sink_url",
        )
        .bind(&model.namespace)
        .bind(&model.name)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| query_error(operation(), e))?;
        rows.iter()
            .map(|row| -> Result<DeadLetter, sqlx::Error> {
                Ok(DeadLetter {
                    model: model.clone(),
                    event_id: row.try_get("event_id")?,
                    sink_url: row.try_get("sink_url")?,
                    version: row.try_get::<Option<i64>, _>("version")?.map(u32_from),
                    event_type: row.try_get("event_type")?,
                    attempts: u32_from(row.try_get("attempts")?),
                    last_error: row.try_get("last_error")?,
                    failed_at: time(row.try_get("failed_us")?),
                })
            })
            .collect::<Result<_, _>>()
            .map_err(|e| query_error(operation(), e))
    }
}
