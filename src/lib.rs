//! driftline keeps machine-learning models healthy in production: it
//! retrains them, gates every candidate on a curated regression test-set and
//! rolls survivors out canary-style. See DESIGN.md for the rooms below.
// One `#[allow(unsafe_code)]` in the whole crate: the parent-death signal a
// node's container processes ask for before exec (cluster::runner::processes).
#![deny(unsafe_code)]

pub mod api;
pub mod cli;
pub mod cluster;
pub mod dashboard;
pub mod drift;
pub mod ml;
pub mod net;
pub mod operator;
pub mod policy;
pub mod registry;
pub mod serve;
