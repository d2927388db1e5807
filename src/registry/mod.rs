//! The model registry: what does not belong in etcd. Version lineage, full
//! gate evaluations, training curves, drift series, canary analyses and the
//! audit trail of every champion change (which version was champion when,
//! and who or what changed it — the history MLflow's aliases do not keep).
//!
//! A SQLite file by default, PostgreSQL by URL, one set of queries for both.
//! The operator writes through [`RegistryWriter`], which never blocks a
//! reconcile: records queue in memory while the database is down and its
//! [`Availability`] feeds the `RegistryAvailable` condition. The user
//! commands read through [`Registry`].
//!
//! ```no_run
//! # async fn example() -> Result<(), driftline::registry::RegistryError> {
//! use driftline::registry::{ModelRef, Registry, RegistryWriter, WriterOptions};
//! let writer = RegistryWriter::start("sqlite://registry.db", WriterOptions::default())?;
//! // writer.submit(record)?; writer.is_available(); writer.subscribe();
//! let registry = Registry::connect("postgres://driftline@db:5432/driftline").await?;
//! let history = registry.history(&ModelRef::new("ml", "wine-quality"), Some(20)).await?;
//! # Ok(()) }
//! ```

mod error;
mod record;
mod store;
mod url;
mod writer;

pub use error::RegistryError;
pub use record::{
    AnalysisVerdict, CanaryAnalysis, ChampionAction, ChampionChange, CheckRecord, DeadLetter,
    DriftCell, DriftHeatmap, DriftReading, EpochRecord, EvaluationRecord, GateOutcome, ModelRef,
    Record, StartRecord, ValidationMetric, VersionHistory, VersionRecord,
};
pub use store::{ConnectOptions, Registry};
pub use url::{Backend, RegistryUrl};
pub use writer::{Availability, RegistryWriter, WriterOptions, WriterStats};
