//! The HTTP client for pods and Services.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::hosts::HostsFileResolver;

/// An HTTP client that finds Services of the embedded cluster by its hosts
/// file (`hosts_file`, else the one named by [`super::HOSTS_FILE_ENV`]) and
/// everything else by DNS.
pub fn service_http_client(timeout: Duration, hosts_file: Option<PathBuf>) -> reqwest::Client {
    // reqwest is built without a TLS provider of its own: callers other than
    // main (tests, benches, the library) would otherwise panic here.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(timeout)
        .dns_resolver(Arc::new(HostsFileResolver { path: hosts_file }))
        .build()
        .unwrap_or_default()
}
