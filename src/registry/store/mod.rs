//! The registry database: one set of SQL for SQLite and PostgreSQL through
//! sqlx's `Any` driver. `$n` placeholders are what both accept (sqlx-sqlite
//! binds `$NNN` by number), and every statement is plain SQL both dialects
//! share: `INSERT … ON CONFLICT (key) DO NOTHING / DO UPDATE`, `LIMIT`,
//! `COALESCE`.

use std::borrow::Cow;
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyConnection, AnyPool, Connection};

use super::error::{RegistryError, unreachable_reason};
use super::record::Record;
use super::url::{Backend, RegistryUrl};
use write::write_record;

mod dashboard;
mod read;
mod rows;
mod write;

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
        migrations: Cow::Owned(vec![
            Migration::new(
                1,
                Cow::Borrowed("registry"),
                MigrationType::Simple,
                Cow::Borrowed(include_str!("../migrations/0001_registry.sql")),
                false,
            ),
            Migration::new(
                2,
                Cow::Borrowed("start lineage"),
                MigrationType::Simple,
                Cow::Borrowed(include_str!("../migrations/0002_start_lineage.sql")),
                false,
            ),
            Migration::new(
                3,
                Cow::Borrowed("canary checks"),
                MigrationType::Simple,
                Cow::Borrowed(include_str!("../migrations/0003_canary_checks.sql")),
                false,
            ),
            Migration::new(
                4,
                Cow::Borrowed("dead letters"),
                MigrationType::Simple,
                Cow::Borrowed(include_str!("../migrations/0004_dead_letters.sql")),
                false,
            ),
        ]),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::record::{ModelRef, StartRecord, VersionRecord};

    /// A registry the operator wrote before schema 2 gains the start
    /// columns on the next connect; its rows read back without a start.
    #[tokio::test]
    async fn a_schema_1_registry_is_migrated_and_keeps_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let url = RegistryUrl::parse(&format!(
            "sqlite://{}",
            dir.path().join("registry.db").display()
        ))
        .unwrap();
        sqlx::any::install_default_drivers();
        let options = AnyConnectOptions::from_str(url.connect_url()).unwrap();
        let mut conn = AnyConnection::connect_with(&options).await.unwrap();
        let mut first = migrator();
        first.migrations = Cow::Owned(first.migrations[..1].to_vec());
        first.run_direct(&mut conn).await.unwrap();
        sqlx::query(
            "INSERT INTO model_versions (namespace, model, version, training_trigger, reason, \
             seed, config_hash, code_version, created_us) \
             VALUES ('ml', 'digits', 1, 'Initial', 'first', 7, 'c', '0.1.0', 0)",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        conn.close().await.unwrap();

        let registry = Registry::connect_with(&url, &ConnectOptions::default())
            .await
            .unwrap();
        let model = ModelRef::new("ml", "digits");
        let old = registry.version(&model, 1).await.unwrap().unwrap();
        assert_eq!((old.reason.as_str(), old.start), ("first", None));
        let start = StartRecord {
            from: "warm".into(),
            parent: Some("file:///a/ml/digits/v1".into()),
            parent_digest: Some("d1".into()),
            reason: None,
        };
        registry
            .write(
                &VersionRecord {
                    version: 2,
                    start: Some(start.clone()),
                    ..old
                }
                .into(),
            )
            .await
            .unwrap();
        let new = registry.version(&model, 2).await.unwrap().unwrap();
        assert_eq!(new.start, Some(start));
    }
}
