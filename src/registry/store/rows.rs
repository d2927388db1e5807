//! Rows to records and back: the conversions every query shares.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::registry::error::RegistryError;
use crate::registry::record::*;

pub(super) fn version_from_row(row: &AnyRow) -> Result<VersionRecord, sqlx::Error> {
    Ok(VersionRecord {
        model: ModelRef::new(
            row.try_get::<String, _>("namespace")?,
            row.try_get::<String, _>("model")?,
        ),
        version: u32_from(row.try_get("version")?),
        trigger: row.try_get("training_trigger")?,
        reason: row.try_get("reason")?,
        seed: row.try_get::<i64, _>("seed")? as u64,
        config_hash: row.try_get("config_hash")?,
        dataset_digest: row.try_get("dataset_digest")?,
        artifact_uri: row.try_get("artifact_uri")?,
        feedback_rows: row
            .try_get::<Option<i64>, _>("feedback_rows")?
            .map(u64_from),
        code_version: row.try_get("code_version")?,
        created_at: time(row.try_get("created_us")?),
        start: row
            .try_get::<Option<String>, _>("start_from")?
            .map(|from| -> Result<StartRecord, sqlx::Error> {
                Ok(StartRecord {
                    from,
                    parent: row.try_get("start_parent")?,
                    parent_digest: row.try_get("start_parent_digest")?,
                    reason: row.try_get("start_reason")?,
                })
            })
            .transpose()?,
    })
}

/// The columns [`version_from_row`] reads, for every query of versions.
pub(super) const VERSION_COLUMNS: &str = "namespace, model, version, training_trigger, reason, \
     seed, config_hash, dataset_digest, artifact_uri, feedback_rows, code_version, created_us, \
     start_from, start_parent, start_parent_digest, start_reason";

pub(super) fn canary_from_row(
    model: &ModelRef,
    version: u32,
    row: &AnyRow,
) -> Result<CanaryAnalysis, sqlx::Error> {
    let verdict: String = row.try_get("verdict")?;
    Ok(CanaryAnalysis {
        model: model.clone(),
        version,
        step: u32_from(row.try_get("step")?),
        weight: u32_from(row.try_get("weight")?),
        window_start: time(row.try_get("window_start_us")?),
        window_end: time(row.try_get("window_end_us")?),
        canary_requests: u64_from(row.try_get("canary_requests")?),
        stable_requests: u64_from(row.try_get("stable_requests")?),
        canary_errors: u64_from(row.try_get("canary_errors")?),
        stable_errors: u64_from(row.try_get("stable_errors")?),
        canary_p99_ms: row.try_get("canary_p99_ms")?,
        stable_p99_ms: row.try_get("stable_p99_ms")?,
        divergence: row.try_get("divergence")?,
        verdict: AnalysisVerdict::parse(&verdict).ok_or_else(|| {
            sqlx::Error::Decode(format!("unknown canary verdict `{verdict}`").into())
        })?,
        message: row.try_get("message")?,
        checks: match row.try_get::<Option<String>, _>("checks")? {
            Some(text) => serde_json::from_str(&text)
                .map_err(|e| sqlx::Error::Decode(format!("canary checks: {e}").into()))?,
            None => Vec::new(),
        },
    })
}

/// Metrics as a JSON object; NaN (which JSON lacks) as `null`.
pub(super) fn metrics_to_json(metrics: &BTreeMap<String, f64>) -> String {
    let map: BTreeMap<&str, Option<f64>> = metrics
        .iter()
        .map(|(k, v)| (k.as_str(), not_nan(*v)))
        .collect();
    serde_json::to_string(&map).unwrap_or_else(|_| "{}".into())
}

pub(super) fn metrics_from_json(text: &str) -> Result<BTreeMap<String, f64>, RegistryError> {
    let map: BTreeMap<String, Option<f64>> =
        serde_json::from_str(text).map_err(|source| RegistryError::Corrupt {
            what: "gate metrics",
            source,
        })?;
    Ok(map
        .into_iter()
        .map(|(k, v)| (k, v.unwrap_or(f64::NAN)))
        .collect())
}

/// SQLite stores NaN as NULL; PostgreSQL keeps it. Both store NULL, so both
/// read back alike.
pub(super) fn not_nan(v: f64) -> Option<f64> {
    (!v.is_nan()).then_some(v)
}

pub(super) fn time(micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros).unwrap_or_default()
}

pub(super) fn version_or_none(v: i64) -> Option<u32> {
    (v > 0).then(|| u32_from(v))
}

pub(super) fn i64_from(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(super) fn u64_from(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

pub(super) fn u32_from(v: i64) -> u32 {
    u32::try_from(v).unwrap_or(0)
}
