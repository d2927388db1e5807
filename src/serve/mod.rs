//! The model server (Open Inference Protocol v2) and the per-Model gateway.

pub mod binary;
pub mod encoding;
pub mod error;
pub mod feedback;
pub mod gateway;
pub mod grpc;
pub mod images;
pub mod load;
pub mod metrics;
pub mod model;
mod predict;
pub mod protocol;
pub mod server;
pub mod trace;

pub use error::ServeError;
