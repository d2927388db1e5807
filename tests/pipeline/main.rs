//! The pipeline parts end to end: training, stores, the registry, drift triggers, the model server and the gateway.
//!
//! One test binary per group: each tests/*.rs or tests/*/main.rs links the whole
//! library, so grouping keeps CI's link time and disk use down.

mod annotation;
mod data_parquet_s3;
mod demo;
#[path = "../support/digits.rs"]
mod digits;
mod drift_triggers;
mod estimate;
#[path = "../support/json_logs.rs"]
mod json_logs;
mod ml_cli;
mod ml_images;
mod ml_store_http;
mod ml_store_s3;
mod ml_stream;
mod ml_train;
mod moto;
#[path = "../support/postgres.rs"]
mod postgres;
mod registry;
#[path = "../support/require_tool.rs"]
mod require_tool;
mod serve_artifact;
mod serve_clients;
mod serve_gateway;
mod serve_protocol;
