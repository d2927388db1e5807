//! The embedded cluster: API server, CRDs, kubectl, workloads, and the gateway on it.
//!
//! One test binary per group: each tests/*.rs or tests/*/main.rs links the whole
//! library, so grouping keeps CI's link time and disk use down.

mod cluster_api;
mod cluster_api_crd;
mod cluster_differential;
mod cluster_helm_chart;
mod cluster_kubectl;
mod cluster_real_k8s;
mod cluster_workloads;
mod k8s_tools;
mod real_control_plane;
#[path = "../support/require_tool.rs"]
mod require_tool;
mod serve_gateway_k8s;
