//! The model server (Open Inference Protocol v2) and the per-Model gateway.

pub mod cli;
