//! The registry database: one set of SQL for SQLite and PostgreSQL through
//! sqlx's `Any` driver. `$n` placeholders are what both accept (sqlx-sqlite
//! binds `$NNN` by number), and every statement is plain SQL both dialects
//! share: `INSERT … ON CONFLICT (key) DO NOTHING / DO UPDATE`, `LIMIT`,
//! `COALESCE`.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyConnection, AnyPool, Connection, Row};

use super::error::{RegistryError, unreachable_reason};
use super::record::{
    AnalysisVerdict, CanaryAnalysis, ChampionAction, ChampionChange, DriftCell, DriftHeatmap,
    DriftReading, EpochRecord, EvaluationRecord, GateOutcome, ModelRef, Record, ValidationMetric,
    VersionHistory, VersionRecord,
};
use super::url::{Backend, RegistryUrl};

/// How to reach the database.
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    /// Longest wait for a connection (first connect and every later one).
    pub connect_timeout: Duration,
    /// Pool size. SQLite in memory always uses one connection (each would
    /// otherwise see its own empty database).
    pub max_connections: u32,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            connect_timeout: Duration::from_secs(5),
            max_connections: 4,
        }
    }
}

/// The registry: history, evaluations, training curves, drift series, canary
/// analyses and the audit trail of champion changes, in SQLite or PostgreSQL.
/// Every write is idempotent (natural keys), so a retried or repeated write
/// never duplicates a row. Cheap to clone (a connection pool).
#[derive(Clone, Debug)]
pub struct Registry {
    pool: AnyPool,
    url: RegistryUrl,
}

/// The schema, embedded at compile time without a database (sqlx's
/// `migrate!` would pull in its proc-macro crate and a second driver build).
fn migrator() -> Migrator {
    Migrator {
        migrations: Cow::Owned(vec![Migration::new(
            1,
            Cow::Borrowed("registry"),
            MigrationType::Simple,
            Cow::Borrowed(include_str!("migrations/0001_registry.sql")),
            false,
        )]),
        ..Migrator::DEFAULT
    }
}

impl Registry {
    /// Opens the registry at `url` (see [`RegistryUrl::parse`]), creating a
    /// SQLite file or the tables on first use. Fails with one clear line when
    /// the URL is wrong or the database cannot be reached.
    pub async fn connect(url: &str) -> Result<Registry, RegistryError> {
        Registry::connect_with(&RegistryUrl::parse(url)?, &ConnectOptions::default()).await
    }

    /// [`Registry::connect`] with a parsed URL and explicit options.
    pub async fn connect_with(
        url: &RegistryUrl,
        options: &ConnectOptions,
    ) -> Result<Registry, RegistryError> {
        sqlx::any::install_default_drivers();
        let connect_options =
            AnyConnectOptions::from_str(url.connect_url()).map_err(|e| unreachable(url, e))?;

        // One direct connection first: the pool would retry a refused
        // connection until its timeout and then report only "timed out".
        let mut probe = tokio::time::timeout(
            options.connect_timeout,
            AnyConnection::connect_with(&connect_options),
        )
        .await
        .map_err(|_| unreachable(url, sqlx::Error::PoolTimedOut))?
        .map_err(|e| unreachable(url, e))?;
        prepare_connection(&mut probe, url)
            .await
            .map_err(|e| unreachable(url, e))?;
        // `run_direct`, not `run`: `run`'s `Acquire<'a>` bound makes any future
        // awaiting it fail `tokio::spawn`'s Send check ("not general enough").
        migrator()
            .run_direct(&mut probe)
            .await
            .map_err(|source| RegistryError::Migrate {
                url: url.to_string(),
                source,
            })?;
        // Only the close handshake can fail here; the registry is usable.
        let _ = probe.close().await;

        let in_memory = url.is_in_memory();
        let pool_url = url.clone();
        let mut pool = AnyPoolOptions::new()
            .max_connections(if in_memory {
                1
            } else {
                options.max_connections
            })
            .acquire_timeout(options.connect_timeout)
            .after_connect(move |conn, _| {
                let url = pool_url.clone();
                Box::pin(async move { prepare_connection(conn, &url).await })
            });
        if in_memory {
            // The database lives as long as its one connection.
            pool = pool
                .idle_timeout(None)
                .max_lifetime(None)
                .min_connections(1);
        }
        let pool = pool
            .connect_with(connect_options)
            .await
            .map_err(|e| unreachable(url, e))?;
        Ok(Registry {
            pool,
            url: url.clone(),
        })
    }

    /// Where this registry lives (password hidden when displayed).
    pub fn url(&self) -> &RegistryUrl {
        &self.url
    }

    /// SQLite or PostgreSQL.
    pub fn backend(&self) -> Backend {
        self.url.backend()
    }

    /// Closes every connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Checks the database answers.
    pub async fn ping(&self) -> Result<(), RegistryError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(|source| query_error("ping", source))
    }

    /// Writes one record; writing it again changes nothing.
    pub async fn write(&self, record: &Record) -> Result<(), RegistryError> {
        self.write_all(std::slice::from_ref(record)).await
    }

    /// Writes records in order in one transaction: all or none.
    pub async fn write_all(&self, records: &[Record]) -> Result<(), RegistryError> {
        let operation = || format!("write {} record(s)", records.len());
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| query_error(operation(), e))?;
        for record in records {
            write_record(&mut tx, record)
                .await
                .map_err(|e| query_error(operation(), e))?;
        }
        tx.commit().await.map_err(|e| query_error(operation(), e))
    }

    /// One version with its lineage.
    pub async fn version(
        &self,
        model: &ModelRef,
        version: u32,
    ) -> Result<Option<VersionRecord>, RegistryError> {
        let row = sqlx::query(
            "SELECT namespace, model, version, training_trigger, reason, seed, config_hash, \
             dataset_digest, artifact_uri, feedback_rows, code_version, created_us \
             FROM model_versions WHERE namespace = $1 AND model = $2 AND version = $3",
        )
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
        let rows = sqlx::query(
            "SELECT namespace, model, version, training_trigger, reason, seed, config_hash, \
             dataset_digest, artifact_uri, feedback_rows, code_version, created_us \
             FROM model_versions WHERE namespace = $1 AND model = $2 \
             ORDER BY version DESC LIMIT $3",
        )
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
             divergence, verdict, message FROM canary_analyses \
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
}

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
             divergence, verdict, message FROM canary_analyses \
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

/// Per-connection settings. SQLite: write-ahead log so readers never wait
/// for the writer, and `synchronous=NORMAL`, durable across process crashes
/// (WAL) at a fraction of the fsyncs.
async fn prepare_connection(
    conn: &mut AnyConnection,
    url: &RegistryUrl,
) -> Result<(), sqlx::Error> {
    if url.backend() == Backend::Sqlite && !url.is_in_memory() {
        sqlx::query("PRAGMA journal_mode = WAL")
            .execute(&mut *conn)
            .await?;
        sqlx::query("PRAGMA synchronous = NORMAL")
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

async fn write_record(conn: &mut AnyConnection, record: &Record) -> Result<(), sqlx::Error> {
    let query = match record {
        Record::Version(v) => sqlx::query(
            "INSERT INTO model_versions (namespace, model, version, training_trigger, reason, \
             seed, config_hash, dataset_digest, artifact_uri, feedback_rows, code_version, \
             created_us) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
             ON CONFLICT (namespace, model, version) DO UPDATE SET \
             dataset_digest = COALESCE(excluded.dataset_digest, model_versions.dataset_digest), \
             artifact_uri = COALESCE(excluded.artifact_uri, model_versions.artifact_uri), \
             feedback_rows = COALESCE(excluded.feedback_rows, model_versions.feedback_rows)",
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
        .bind(v.created_at.timestamp_micros()),
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
             stable_errors, canary_p99_ms, stable_p99_ms, divergence, verdict, message) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) \
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
        .bind(c.message.clone()),
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
    };
    query.execute(conn).await.map(drop)
}

fn version_from_row(row: &AnyRow) -> Result<VersionRecord, sqlx::Error> {
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
    })
}

fn canary_from_row(
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
    })
}

/// Metrics as a JSON object; NaN (which JSON lacks) as `null`.
fn metrics_to_json(metrics: &BTreeMap<String, f64>) -> String {
    let map: BTreeMap<&str, Option<f64>> = metrics
        .iter()
        .map(|(k, v)| (k.as_str(), not_nan(*v)))
        .collect();
    serde_json::to_string(&map).unwrap_or_else(|_| "{}".into())
}

fn metrics_from_json(text: &str) -> Result<BTreeMap<String, f64>, RegistryError> {
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
fn not_nan(v: f64) -> Option<f64> {
    (!v.is_nan()).then_some(v)
}

fn time(micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros).unwrap_or_default()
}

fn version_or_none(v: i64) -> Option<u32> {
    (v > 0).then(|| u32_from(v))
}

fn i64_from(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn u64_from(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn u32_from(v: i64) -> u32 {
    u32::try_from(v).unwrap_or(0)
}

fn unreachable(url: &RegistryUrl, source: sqlx::Error) -> RegistryError {
    RegistryError::Unreachable {
        url: url.to_string(),
        reason: unreachable_reason(&source),
        source,
    }
}

fn query_error(operation: impl Into<String>, source: sqlx::Error) -> RegistryError {
    RegistryError::Query {
        operation: operation.into(),
        source,
    }
}
