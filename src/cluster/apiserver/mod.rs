//! The embedded Kubernetes API server: a faithful subset of the real HTTP
//! API (discovery, CRUD, list/watch, patches, server-side apply, status and
//! scale subresources, finalizers, garbage collection, CRDs) over one in-memory
//! store, for kube-rs and kubectl.
//!
//! Served over HTTPS with a CA made per run (client-go sends bearer tokens
//! only over TLS); every request but `/healthz` needs the token. Known
//! differences from a real API server: JSON answers only (protobuf request
//! bodies of built-in kinds are decoded; no CBOR), legacy
//! discovery only (kubectl falls back from aggregated discovery), no RBAC or
//! admission webhooks, server-side apply treats lists as atomic (ownership per map field, not per
//! list item), and a paged list reads the current state, not a snapshot.

mod convert;
mod discovery;
mod dispatch;
pub mod error;
pub mod faults;
mod field_validation;
mod listwatch;
mod logs;
mod negotiation;
mod objects;
mod openapi;
pub mod patch;
pub mod printers;
mod protobuf;
mod request;
pub mod resources;
pub mod scale;
pub mod selector;
mod server;
pub mod snapshot;
pub mod store;
pub mod tls;
mod writes;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

pub use error::ApiError;
pub use faults::{FaultInjector, FaultRule, LoggedRequest};
use resources::ResourceType;
use server::Shared;
pub use snapshot::SnapshotError;
use store::Store;

/// How to run the API server.
#[derive(Debug, Clone)]
pub struct ApiServerConfig {
    /// Bearer token every request must carry.
    pub token: String,
    /// Directory pod logs are read from.
    pub state_dir: PathBuf,
    /// Snapshot file loaded at start and written on change, if any.
    pub snapshot: Option<PathBuf>,
    /// How many changes watches can replay before they get 410 Gone.
    pub history_capacity: usize,
    /// How often an idle watch with bookmarks gets a BOOKMARK.
    pub bookmark_interval: Duration,
}

impl ApiServerConfig {
    /// Defaults for a token and state directory.
    pub fn new(token: String, state_dir: PathBuf) -> Self {
        ApiServerConfig {
            token,
            state_dir,
            snapshot: None,
            history_capacity: 100_000,
            bookmark_interval: Duration::from_secs(10),
        }
    }
}

/// The API server: its shared state and an axum router serving it.
#[derive(Clone)]
pub struct ApiServer {
    shared: Arc<Shared>,
    snapshot: Option<PathBuf>,
}

impl ApiServer {
    /// Creates the server, loading the snapshot if one is configured and present.
    pub fn new(cfg: ApiServerConfig) -> Result<Self, SnapshotError> {
        let mut store = Store::new(cfg.history_capacity);
        if let Some(path) = &cfg.snapshot {
            snapshot::load(path, &mut store)?;
        }
        let shared = Arc::new(Shared::new(
            store,
            cfg.token,
            cfg.state_dir,
            cfg.bookmark_interval,
        ));
        Ok(ApiServer {
            shared,
            snapshot: cfg.snapshot,
        })
    }

    /// The HTTP router (every path is handled by the API server).
    pub fn router(&self) -> axum::Router {
        axum::Router::new()
            .fallback(server::handle)
            .with_state(self.shared.clone())
    }

    /// Fault injection and request log.
    pub fn faults(&self) -> FaultInjector {
        self.shared.faults.clone()
    }

    /// Drops the watch history: watches from older versions get 410 Gone.
    pub fn compact(&self) {
        self.shared.compact();
    }

    /// Ends open watches and log streams (the HTTP server stops separately).
    pub fn close(&self) {
        self.shared.closing.send_replace(true);
    }

    /// Resolves once `close` was called.
    pub async fn closed(&self) {
        let mut rx = self.shared.closing.subscribe();
        let _ = rx.wait_for(|c| *c).await;
    }

    /// Number of stored objects.
    pub fn object_count(&self) -> usize {
        self.shared.store().len()
    }

    /// Writes the snapshot now (no-op without a snapshot file).
    pub fn save_snapshot(&self) -> Result<(), SnapshotError> {
        let Some(path) = &self.snapshot else {
            return Ok(());
        };
        let doc = snapshot::to_json(&self.shared.store());
        snapshot::write(path, &doc)
    }

    /// Writes the snapshot shortly after changes (debounced) until dropped.
    pub fn spawn_snapshot_writer(&self) -> Option<tokio::task::JoinHandle<()>> {
        self.snapshot.as_ref()?;
        let server = self.clone();
        Some(tokio::spawn(async move {
            loop {
                server.shared.dirty.notified().await;
                // Coalesce bursts of writes into one snapshot.
                tokio::time::sleep(Duration::from_millis(250)).await;
                if let Err(e) = server.save_snapshot() {
                    tracing::warn!(error = ?e, "could not write cluster snapshot");
                }
            }
        }))
    }
}

/// The defaults of built-in kinds that users read back (the real server runs
/// Go defaulting functions per type; only these are copied so far).
fn default_builtin(ty: &ResourceType, obj: &mut Value) {
    if ty.group.is_empty()
        && ty.kind == "Secret"
        && obj.get("type").is_none_or(Value::is_null)
        && let Some(map) = obj.as_object_mut()
    {
        map.insert("type".into(), Value::String("Opaque".into()));
    }
}

/// Admission of every write: object metadata is checked for all kinds; custom
/// objects are pruned, defaulted and validated (CEL included) against their
/// CRD version's schema. Failures are the 422 a real API server sends.
fn schema_hook(ty: &ResourceType, obj: &mut Value, old: Option<&Value>) -> Result<(), ApiError> {
    default_builtin(ty, obj);
    let meta = obj.get("metadata").unwrap_or(&Value::Null);
    let mut errors = crate::cluster::schema::validate_object_meta(meta, "metadata");
    if let Some(old_meta) = old.and_then(|o| o.get("metadata")) {
        errors.extend(crate::cluster::schema::validate_finalizers_update(
            meta, old_meta,
        ));
    }
    if let Some(admission) = &ty.admission {
        errors.extend(admission.admit(obj, old));
    }
    if errors.is_empty() {
        return Ok(());
    }
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let status = crate::cluster::schema::invalid_status(&ty.group, &ty.kind, name, &errors);
    let message = status
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("invalid object")
        .to_string();
    Err(ApiError::Invalid { message, status })
}
