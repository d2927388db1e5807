//! Leader election on a `coordination.k8s.io/v1` Lease: one replica
//! reconciles, the others wait and take over when its lease runs out.
//! Lease times are wall-clock (they are shared between processes).

use std::future::Future;
use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Client;
use kube::api::{Api, PostParams};
use tracing::{info, warn};

use super::error::{OperatorError, kube};

/// Which Lease to hold, and for how long.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub name: String,
    pub namespace: String,
    /// A holder that has not renewed for this long loses the lease.
    pub duration: Duration,
}

fn micro_now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

fn expired(spec: &LeaseSpec, duration: Duration) -> bool {
    let Some(renewed) = &spec.renew_time else {
        return true;
    };
    let secs = spec
        .lease_duration_seconds
        .map_or(duration.as_secs() as i64, i64::from);
    let renewed = renewed.0.as_second();
    Utc::now().timestamp() > renewed + secs
}

/// Takes the lease if it is free, expired or ours; `Ok(false)` if held by another.
async fn try_take(api: &Api<Lease>, cfg: &LeaseConfig, me: &str) -> Result<bool, OperatorError> {
    let spec = LeaseSpec {
        holder_identity: Some(me.to_string()),
        lease_duration_seconds: Some(cfg.duration.as_secs().max(1) as i32),
        acquire_time: Some(micro_now()),
        renew_time: Some(micro_now()),
        ..Default::default()
    };
    match api
        .get_opt(&cfg.name)
        .await
        .map_err(kube(format!("read Lease {}", cfg.name)))?
    {
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(cfg.name.clone()),
                    namespace: Some(cfg.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(spec),
            };
            match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(kube(format!("create Lease {}", cfg.name))(e)),
            }
        }
        Some(mut lease) => {
            let current = lease.spec.clone().unwrap_or_default();
            let ours = current.holder_identity.as_deref() == Some(me);
            if !ours && !expired(&current, cfg.duration) {
                return Ok(false);
            }
            let mut next = spec;
            if ours {
                next.acquire_time = current.acquire_time.clone();
            }
            next.lease_transitions =
                Some(current.lease_transitions.unwrap_or(0) + i32::from(!ours));
            lease.spec = Some(next);
            // The resourceVersion makes the replace fail if another replica won.
            match api.replace(&cfg.name, &PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(kube(format!("renew Lease {}", cfg.name))(e)),
            }
        }
    }
}

/// Waits until this replica holds the lease (`true`) or `shutdown` comes (`false`).
pub async fn acquire(
    client: &Client,
    cfg: &LeaseConfig,
    me: &str,
    shutdown: impl Future<Output = ()>,
) -> Result<bool, OperatorError> {
    let api: Api<Lease> = Api::namespaced(client.clone(), &cfg.namespace);
    let retry = (cfg.duration / 4).max(Duration::from_millis(200));
    tokio::pin!(shutdown);
    loop {
        match try_take(&api, cfg, me).await {
            Ok(true) => {
                info!(lease = %cfg.name, holder = me, "leading");
                return Ok(true);
            }
            Ok(false) => {}
            Err(e) => warn!(error = %e, "leader election"),
        }
        tokio::select! {
            _ = &mut shutdown => return Ok(false),
            _ = tokio::time::sleep(retry) => {}
        }
    }
}

/// Renews the lease until it is lost; returns why.
pub async fn keep(client: Client, cfg: LeaseConfig, me: String) -> OperatorError {
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    let every = (cfg.duration / 3).max(Duration::from_millis(100));
    let mut last_renewed = std::time::Instant::now();
    loop {
        tokio::time::sleep(every).await;
        match try_take(&api, &cfg, &me).await {
            Ok(true) => last_renewed = std::time::Instant::now(),
            Ok(false) => {
                return OperatorError::LeaseLost {
                    lease: cfg.name.clone(),
                };
            }
            Err(e) if last_renewed.elapsed() >= cfg.duration => {
                warn!(error = %e, "could not renew the lease in time");
                return OperatorError::LeaseLost {
                    lease: cfg.name.clone(),
                };
            }
            Err(e) => warn!(error = %e, "lease renewal failed; retrying"),
        }
    }
}
