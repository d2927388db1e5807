//! An embedded Kubernetes API server and local workload runner, for tests
//! and `driftline up`. Imports nothing from the rest of driftline.
//!
//! - `apiserver`: the HTTP API (store, watch, patches, discovery, auth).
//! - `schema`: CRD structural-schema validation, defaulting, pruning, CEL
//!   rules and server-side Table rendering — pure functions.
//! - `runner`: one node that schedules pods and runs their containers as
//!   local processes, plus the Job, Deployment and Service controllers.

pub mod apiserver;
pub mod cli;
pub mod layout;
pub mod runner;
pub mod schema;
