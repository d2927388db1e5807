//! The dashboard's aggregated read queries.

use sqlx::Row;

use super::rows::*;
use super::{Registry, query_error};
use crate::registry::error::RegistryError;
use crate::registry::record::*;

/// Read queries for the dashboard: whole-model views a page draws at once,
/// aggregated in the database so a page stays small however long the history.
impl Registry {
    /// The newest `last` canary analyses of every version of a model, oldest
    /// first: the traffic timeline of the Model page.
    pub async fn canary_history(
        &self,
        model: &ModelRef,
        last: u32,
    ) -> Result<Vec<CanaryAnalysis>, RegistryError> {
        let operation = || format!("read the canary history of {model}");
        let rows = sqlx::query(
            "SELECT version, step, weight, window_start_us, window_end_us, canary_requests, \
             stable_requests, canary_errors, stable_errors, canary_p99_ms, stable_p99_ms, \
             divergence, verdict, message, checks FROM canary_analyses \
             WHERE namespace = $1 AND model = $2 \
             ORDER BY window_end_us DESC, version DESC, step DESC LIMIT $3",
        )
        .bind(&model.namespace)
        .bind(&model.name)
        .bind(i64::from(last))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| query_error(operation(), e))?;
        rows.iter()
            .rev()
            .map(|row| canary_from_row(model, u32_from(row.try_get("version")?), row))
            .collect::<Result<_, _>>()
            .map_err(|e| query_error(operation(), e))
    }

    /// The newest `windows` windows of a model's drift series folded into
    /// at most `columns` time columns per feature (the largest value, the
    /// threshold, how many readings drifted), for a heatmap of feature ×
    /// window. Bounded by `windows` so a page costs the same however long
    /// the history: reading 10 000 windows × 11 features took 140 ms.
    pub async fn drift_heatmap(
        &self,
        model: &ModelRef,
        windows: u32,
        columns: u32,
    ) -> Result<DriftHeatmap, RegistryError> {
        let operation = || format!("read the drift heatmap of {model}");
        let err = |e| query_error(operation(), e);
        // Three index lookups: the first and last window recorded, and the
        // start of the newest `windows` (none: fewer were recorded).
        let edge = |order: &'static str| {
            sqlx::query_scalar::<_, i64>(match order {
                "ASC" => {
                    "SELECT window_end_us FROM drift_readings WHERE namespace = $1 AND model = $2 \
                     ORDER BY window_end_us ASC LIMIT 1"
                }
                _ => {
                    "SELECT window_end_us FROM drift_readings WHERE namespace = $1 AND model = $2 \
                     ORDER BY window_end_us DESC LIMIT 1"
                }
            })
            .bind(&model.namespace)
            .bind(&model.name)
            .fetch_optional(&self.pool)
        };
        let (Some(earliest), Some(last)) = (
            edge("ASC").await.map_err(err)?,
            edge("DESC").await.map_err(err)?,
        ) else {
            return Ok(DriftHeatmap::default());
        };
        let windows = windows.max(1);
        let start: Option<i64> = sqlx::query_scalar(
            "SELECT DISTINCT window_end_us FROM drift_readings WHERE namespace = $1 AND model = $2 \
             ORDER BY window_end_us DESC LIMIT 1 OFFSET $3",
        )
        .bind(&model.namespace)
        .bind(&model.name)
        .bind(i64::from(windows) - 1)
        .fetch_optional(&self.pool)
        .await
        .map_err(err)?;
        let (first, in_range) = match start {
            Some(start) => (start, i64::from(windows)),
            None => {
                let count: i64 = sqlx::query_scalar(
                    "SELECT COUNT(DISTINCT window_end_us) FROM drift_readings \
                     WHERE namespace = $1 AND model = $2",
                )
                .bind(&model.namespace)
                .bind(&model.name)
                .fetch_one(&self.pool)
                .await
                .map_err(err)?;
                (earliest, count)
            }
        };
        let columns = i64::from(columns.max(1)).min(in_range.max(1));
        // Column of a window: its offset in the span scaled to `columns`
        // (integer arithmetic both dialects share).
        let rows = sqlx::query(
            "SELECT feature, (window_end_us - $3) * $4 / $5 AS col, COUNT(*) AS readings, \
             MAX(value) AS max_value, MAX(threshold) AS threshold, \
             SUM(drifted) AS drifted, MAX(window_end_us) AS last_us FROM drift_readings \
             WHERE namespace = $1 AND model = $2 AND window_end_us >= $3 \
             GROUP BY feature, col ORDER BY feature, col",
        )
        .bind(&model.namespace)
        .bind(&model.name)
        .bind(first)
        .bind(columns)
        .bind(last - first + 1)
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        let cells = rows
            .iter()
            .map(|row| -> Result<DriftCell, sqlx::Error> {
                Ok(DriftCell {
                    feature: row.try_get("feature")?,
                    column: u32_from(row.try_get("col")?),
                    readings: u64_from(row.try_get("readings")?),
                    max_value: row
                        .try_get::<Option<f64>, _>("max_value")?
                        .unwrap_or(f64::NAN),
                    threshold: row
                        .try_get::<Option<f64>, _>("threshold")?
                        .unwrap_or(f64::NAN),
                    drifted: u64_from(row.try_get("drifted")?),
                    last_window_end: time(row.try_get("last_us")?),
                })
            })
            .collect::<Result<_, _>>()
            .map_err(err)?;
        Ok(DriftHeatmap {
            earliest_window_end: Some(time(earliest)),
            first_window_end: Some(time(first)),
            last_window_end: Some(time(last)),
            windows: u64_from(in_range),
            columns: u32_from(columns),
            cells,
        })
    }
}
