//! The operator and `driftline up` on the embedded cluster, with the real binary in every pod;
//! the main scenarios also on a real control plane with driftline's runner as its node.
//!
//! One test binary per group: each tests/*.rs or tests/*/main.rs links the whole
//! library, so grouping keeps CI's link time and disk use down.

mod dashboard;
mod data_check;
#[path = "../support/digits.rs"]
mod digits;
mod estimate;
mod images;
#[path = "../support/json_logs.rs"]
mod json_logs;
#[path = "../cluster/k8s_tools.rs"]
mod k8s_tools;
mod late_labels;
mod leader_election;
mod notify_sink;
mod operator_e2e;
mod operator_support;
#[path = "../support/postgres.rs"]
mod postgres;
#[allow(dead_code)]
#[path = "../cluster/real_control_plane.rs"]
mod real_control_plane;
mod reconcile_log;
#[path = "../support/require_tool.rs"]
mod require_tool;
mod shadow;
mod up;
