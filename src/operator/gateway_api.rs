//! Whether the cluster serves the Gateway API's `HTTPRoute`, asked through
//! discovery and remembered for a minute: installing the Gateway API later
//! is noticed without a restart, and a cluster without it costs one
//! discovery request a minute, not one per reconcile.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::Client;

use super::children::HTTP_ROUTE_API;

/// How long a discovery answer is trusted.
const RECHECK: Duration = Duration::from_secs(60);

/// The remembered answer of the last discovery.
#[derive(Default)]
pub struct GatewayApiProbe {
    last: Mutex<Option<(bool, Instant)>>,
}

impl GatewayApiProbe {
    /// Whether `HTTPRoute` is served now (a failed discovery counts as not).
    pub async fn served(&self, client: &Client) -> bool {
        if let Some((served, at)) = *self.last.lock().unwrap_or_else(|p| p.into_inner())
            && at.elapsed() < RECHECK
        {
            return served;
        }
        let (group, version, kind) = HTTP_ROUTE_API;
        let served = match client
            .list_api_group_resources(&format!("{group}/{version}"))
            .await
        {
            Ok(list) => list.resources.iter().any(|r| r.kind == kind),
            Err(err) => {
                tracing::debug!(%err, "Gateway API discovery: not served");
                false
            }
        };
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some((served, Instant::now()));
        served
    }
}
