//! driftline keeps machine-learning models healthy in production: it
//! retrains them, gates every candidate on a curated regression test-set and
//! rolls survivors out canary-style. See DESIGN.md for the rooms below.
// `unsafe` is allowed only where a system call has no safe wrapper, each
// with its SAFETY comment: the parent-death signal a node's container
// processes ask for before exec (cluster::runner::processes), the compute
// thread count set before any thread exists (cli), the shadow's mirror
// thread entering the idle scheduling class (serve::shadow), and the CPU
// kernels' call into gemm's pointer-based matrix product (the fused training
// step's and the CNN's inference), its bounds asserted first (ml::arch::cpu).
#![deny(unsafe_code)]

pub mod api;
pub mod cli;
pub mod cluster;
pub mod dashboard;
pub mod data;
pub mod drift;
pub mod ml;
pub mod net;
pub mod operator;
pub mod policy;
pub mod quantity;
pub mod registry;
pub mod serve;

/// An error and each of its causes, once each, joined by `: ` on one line
/// (what anyhow's `{:#}` prints): for messages that leave the process (HTTP
/// error bodies, Events, conditions, JSON logs), where only a string
/// travels. The one home of that formatting.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut printed = error.to_string().replace('\n', " ");
    let mut cause = error.source();
    while let Some(e) = cause {
        let text = match e.downcast_ref::<kube::Error>() {
            // kube's API error prints its Status twice (message and debug
            // dump): the Status's own `message: reason` is enough.
            Some(kube::Error::Api(status)) => status.to_string(),
            _ => e.to_string(),
        };
        let text = text.replace('\n', " ");
        // A wrapper that prints its inner error already said it.
        if !text.is_empty() && !printed.contains(&text) {
            printed.push_str(": ");
            printed.push_str(&text);
        }
        cause = e.source();
    }
    printed
}
