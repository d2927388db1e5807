//! The dashboard: a read-only web UI over the cluster's Models and
//! ModelVersions and the registry's history. Pages are built as data
//! (`view`), drawn as HTML with server-side SVG plots (`html`, `svg`),
//! and served with their JSON twin (`?format=json`) by [`serve`]. Only GET
//! and HEAD; nothing is fetched from elsewhere (CSS embedded, no scripts
//! needed), so it works offline.
//!
//! Served by `driftline operator --dashboard-addr` and by `driftline up`.

mod html;
mod queue;
mod server;
mod shadow;
mod svg;
mod view;

#[cfg(test)]
mod tests;

pub use server::{DashboardConfig, serve};

/// The dashboard's URL format lives in `api::links`: the operator's Events
/// and `driftline status` link to the same pages.
pub use crate::api::links;
