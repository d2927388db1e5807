//! The operator and `driftline up` on the embedded cluster, with the real binary in every pod.
//!
//! One test binary per group: each tests/*.rs or tests/*/main.rs links the whole
//! library, so grouping keeps CI's link time and disk use down.

mod dashboard;
mod operator_e2e;
mod operator_support;
#[path = "../support/postgres.rs"]
mod postgres;
mod up;
