//! Pure decisions and contracts: the API types, CEL rules, CRD schemas, the decision core, drift rules, the request decoder.
//!
//! One test binary per group: each tests/*.rs or tests/*/main.rs links the whole
//! library, so grouping keeps CI's link time and disk use down.

mod alerts;
mod api_cel;
mod api_crd;
/// The simulated canaries `bench/canary` judges too (one setup for both).
#[path = "../../bench/canary/simulation.rs"]
mod canary_simulation;
mod cluster_schema;
mod cluster_schema_driftline_crd;
mod drift_control;
mod drift_monitor;
mod drift_one_rule;
mod gitops_health;
mod policy_decide;
mod policy_props;
mod policy_schedule;
mod policy_sequential;
mod policy_shadow;
mod policy_support;
#[path = "../support/require_tool.rs"]
mod require_tool;
mod room_boundaries;
mod serve_decoder_props;
