//! Command wiring: one module per subcommand parses its flags, calls the
//! rooms and prints. Library rooms never import each other for CLI needs.

pub mod cluster;
pub mod datacheck;
pub mod demo;
pub mod drift_flags;
pub mod flags;
pub mod load;
pub mod ml;
pub mod operator;
pub mod output;
pub mod serve;
pub mod up;
pub mod user;
