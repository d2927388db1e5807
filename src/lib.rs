//! driftline keeps machine-learning models healthy in production: it
//! retrains them, gates every candidate on a curated regression test-set and
//! rolls survivors out canary-style. See DESIGN.md for the rooms below.
#![forbid(unsafe_code)]

pub mod api;
pub mod cli;
pub mod cluster;
pub mod dashboard;
pub mod drift;
pub mod ml;
pub mod operator;
pub mod policy;
pub mod registry;
pub mod serve;

/// An error and each of its causes, once each, joined by `: ` (what
/// anyhow's `{:#}` prints): for messages that leave the process (HTTP error
/// bodies, Events, conditions), where only a string travels.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        let next = e.to_string();
        // `#[error(transparent)]` wrappers repeat their source's message.
        if !text.ends_with(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        cause = e.source();
    }
    text
}
