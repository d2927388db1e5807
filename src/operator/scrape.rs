//! Scrape: what the Model's pods say over HTTP. Each ready serving replica's
//! `/metrics` (canary and stable counters), each gateway replica's
//! `/metrics` (per-backend counters), and the champion's drift totals from
//! `/v2/models/{name}/drift`. Which addresses to ask and where a canary
//! step's window starts are pure; the requests are the IO.

use super::cached::CachedPod;
use chrono::{DateTime, Utc};
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use tracing::warn;

use crate::api::LabelCounts;
use crate::api::names;
use crate::api::routes;
use crate::api::scrape::{GatewayCounters, ServingCounters, parse_shadow_tallies};
use crate::api::{Model, ShadowTally, version_number};
use crate::drift::{DriftReport, RunningTotal};
use crate::policy::{CanaryMetrics, Observations, ShadowObservation};

use super::context::Context;
use super::observe::{self, Baseline};

/// The base URLs to scrape version `n` at: each ready replica; or the
/// version's Service while the operator sees none of the version's pods
/// (pods without the labels it watches). Pods that exist but are not ready
/// yet are not scraped at all: nothing would answer through the Service
/// either, and a lookup of its name outside the cluster's DNS (the
/// embedded cluster without a hosts file) waits for the scrape timeout.
pub fn targets(model: &Model, pods: &[&CachedPod], n: u32) -> Vec<String> {
    let urls = observe::replica_urls(pods, n);
    if urls.is_empty() && observe::pods_of_version(pods, names::ROLE_SERVING, n).is_empty() {
        tracing::debug!(
            version = n,
            "no pod of the version is visible; scraping through the Service"
        );
        let ns = model.namespace().unwrap_or_default();
        vec![names::serving_url(&model.name_any(), &ns, n)]
    } else {
        urls
    }
}

/// `/metrics` of every replica, summed; `None` unless every replica answered
/// (a partial sum would read as lost requests).
async fn version(ctx: &Context, replicas: &[String]) -> Option<ServingCounters> {
    let scrapes = replicas.iter().map(|base| async move {
        let url = format!("{base}{}", routes::METRICS);
        let answer = match ctx.http.get(&url).send().await {
            Ok(answer) if answer.status().is_success() => answer,
            Ok(answer) => {
                tracing::debug!(%url, status = %answer.status(), "scrape refused");
                return None;
            }
            Err(err) => {
                tracing::debug!(%url, %err, "scrape failed");
                return None;
            }
        };
        Some(ServingCounters::from_metrics(&answer.text().await.ok()?))
    });
    let mut total = ServingCounters::default();
    for counters in futures::future::join_all(scrapes).await {
        total.merge(&counters?);
    }
    Some(total)
}

/// The champion's labelled requests, summed over its replicas' `/metrics`;
/// `None` unless every replica answered (a partial sum would misstate the
/// realised accuracy) or while none was labelled.
pub async fn labelled(ctx: &Context, replicas: &[String]) -> Option<LabelCounts> {
    let c = version(ctx, replicas).await?;
    (c.labelled_rows > 0).then_some(LabelCounts {
        labelled: c.labelled_rows,
        correct: c.labelled_correct,
        confidence_sum: c.labelled_confidence_sum,
    })
}

/// Each replica's running drift total from its `/v2/models/{name}/drift`,
/// by replica address; replicas that do not answer are left out (and
/// forgotten by the merge until they answer again).
pub async fn drift_totals(
    ctx: &Context,
    model: &str,
    replicas: &[String],
) -> Vec<(String, RunningTotal)> {
    let scrapes = replicas.iter().map(|base| async move {
        let url = routes::url(base, routes::DRIFT, model);
        let answer = ctx.http.get(&url).send().await.ok()?;
        if !answer.status().is_success() {
            return None;
        }
        match answer.json::<DriftReport>().await {
            Ok(report) => Some((base.clone(), report.total)),
            Err(e) => {
                warn!(%url, error = %e, "drift report is not in the expected shape");
                None
            }
        }
    });
    futures::future::join_all(scrapes)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// Canary and stable metrics since the current step began, when a step runs.
pub async fn canary(
    model: &Model,
    ctx: &Context,
    pods: &[&CachedPod],
    obs: &Observations,
) -> Option<CanaryMetrics> {
    let status = model.status.as_ref()?;
    let canary = status.canary.as_ref()?;
    let step_started = canary.step_started_at?;
    let n = version_number(&canary.version)?;
    let champion = status.champion.as_deref().and_then(version_number)?;
    let (canary_replicas, stable_replicas) =
        (targets(model, pods, n), targets(model, pods, champion));
    let gateways = observe::gateway_urls(pods);
    let (canary_now, stable_now, gateway_now) = tokio::join!(
        version(ctx, &canary_replicas),
        version(ctx, &stable_replicas),
        gateway(ctx, &gateways),
    );
    let (canary_now, stable_now) = (canary_now?, stable_now?);
    let key = ObjectRef::from_obj(model);
    let mut baselines = ctx.baselines.lock().unwrap_or_else(|p| p.into_inner());
    match window_start(baselines.get(&key), n, step_started) {
        Some(baseline) => Some(observe::canary_metrics(
            n,
            champion,
            baseline,
            (&canary_now, &stable_now, gateway_now.as_ref()),
            obs.now,
        )),
        None => {
            // The window starts at the first scrape of this step.
            let baseline = Baseline {
                version: n,
                step_started,
                taken_at: obs.now.max(step_started),
                canary: canary_now,
                stable: stable_now,
                gateway: gateway_now,
            };
            baselines.insert(key, baseline);
            None
        }
    }
}

/// The counters the window of canary `n`'s step that started at
/// `step_started` is measured from: the ones kept for that very step; `None`
/// for a step not scraped yet (its window starts now, with nothing to
/// compare).
pub fn window_start(
    kept: Option<&Baseline>,
    n: u32,
    step_started: DateTime<Utc>,
) -> Option<&Baseline> {
    kept.filter(|b| b.version == n && b.step_started == step_started)
}

/// Every ready gateway replica's per-backend counters, summed; `None` when
/// there is none or any did not answer (the analysis then uses the model
/// servers' own counters alone).
async fn gateway(ctx: &Context, replicas: &[String]) -> Option<GatewayCounters> {
    if replicas.is_empty() {
        return None;
    }
    let scrapes = replicas.iter().map(|base| async move {
        let url = format!("{base}{}", routes::METRICS);
        match ctx.http.get(&url).send().await {
            Ok(answer) if answer.status().is_success() => {
                Some(GatewayCounters::from_metrics(&answer.text().await.ok()?))
            }
            Ok(answer) => {
                tracing::debug!(%url, status = %answer.status(), "gateway scrape refused");
                None
            }
            Err(err) => {
                tracing::debug!(%url, %err, "gateway scrape failed");
                None
            }
        }
    });
    let mut total = GatewayCounters::default();
    for counters in futures::future::join_all(scrapes).await {
        total.merge(&counters?);
    }
    Some(total)
}

/// The gateways' tally of a shadow stage at its first scrape: the window
/// is measured from it.
#[derive(Clone, Debug, PartialEq)]
pub struct ShadowBaseline {
    pub version: u32,
    pub started_at: DateTime<Utc>,
    pub tally: ShadowTally,
}

/// The shadow stage's window: what every gateway replica paired for the
/// candidate since the stage's first scrape. `None` without a started
/// stage, when any replica did not answer (a partial sum would read as
/// fewer pairs), or at the first scrape (the window starts then).
pub async fn shadow(
    model: &Model,
    ctx: &Context,
    pods: &[&CachedPod],
) -> Option<ShadowObservation> {
    let shadow = model.status.as_ref()?.shadow.as_ref()?;
    let started_at = shadow.started_at?;
    let n = version_number(&shadow.version)?;
    let gateways = observe::gateway_urls(pods);
    if gateways.is_empty() {
        return None;
    }
    let scrapes = gateways.iter().map(|base| async move {
        let url = format!("{base}{}", routes::METRICS);
        match ctx.http.get(&url).send().await {
            Ok(answer) if answer.status().is_success() => answer.text().await.ok(),
            _ => None,
        }
    });
    let mut now = ShadowTally::default();
    for text in futures::future::join_all(scrapes).await {
        let tallies = parse_shadow_tallies(&text?);
        if let Some(t) = tallies.get(&shadow.version) {
            now.merge(t);
        }
    }
    let key = ObjectRef::from_obj(model);
    let mut baselines = ctx
        .shadow_baselines
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    shadow_window(baselines.get(&key), n, started_at, &now).or_else(|| {
        baselines.insert(
            key,
            ShadowBaseline {
                version: n,
                started_at,
                tally: now,
            },
        );
        None
    })
}

/// The window of the shadow stage of candidate `n` that started at
/// `started_at`, from the tally kept at its first scrape; `None` when none
/// was kept for this very stage.
pub fn shadow_window(
    kept: Option<&ShadowBaseline>,
    n: u32,
    started_at: DateTime<Utc>,
    now: &ShadowTally,
) -> Option<ShadowObservation> {
    let kept = kept.filter(|b| b.version == n && b.started_at == started_at)?;
    Some(ShadowObservation {
        version: n,
        tally: now.since(&kept.tally),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::fixtures::{at, wine};

    fn serving_pod(version: u32, ip: &str, ready: bool) -> CachedPod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("wine-quality-v{version}-{ip}"), "labels": {
                names::ROLE_LABEL: names::ROLE_SERVING, names::VERSION_LABEL: version.to_string()}},
            "status": {"podIP": ip, "conditions": [
                {"type": "Ready", "status": if ready { "True" } else { "False" }}]}
        }))
        .expect("pod")
    }

    #[test]
    fn ready_replicas_are_scraped_one_by_one_and_unready_ones_not_at_all() {
        let m = wine();
        let pods = [
            serving_pod(3, "10.0.0.2", true),
            serving_pod(3, "10.0.0.1", true),
            serving_pod(4, "10.0.0.3", false),
        ];
        let pods: Vec<&CachedPod> = pods.iter().collect();
        assert_eq!(
            targets(&m, &pods, 3),
            ["http://10.0.0.1:8080", "http://10.0.0.2:8080"]
        );
        assert!(
            targets(&m, &pods, 4).is_empty(),
            "a version whose pods are not ready yet is not asked through its Service"
        );
        assert_eq!(
            targets(&m, &pods, 5),
            [names::serving_url("wine-quality", "ml", 5)],
            "without any pod in sight, the Service answers"
        );
    }

    #[test]
    fn a_shadow_window_is_measured_from_its_stages_first_scrape() {
        let started = at("2026-06-01T08:00:00Z");
        let tally = |paired: u64| ShadowTally {
            paired,
            rows: paired,
            ..Default::default()
        };
        let kept = ShadowBaseline {
            version: 2,
            started_at: started,
            tally: tally(40),
        };
        let w = shadow_window(Some(&kept), 2, started, &tally(100)).expect("window");
        assert_eq!((w.version, w.tally.paired), (2, 60));
        assert!(shadow_window(Some(&kept), 3, started, &tally(100)).is_none());
        assert!(shadow_window(Some(&kept), 2, at("2026-06-01T09:00:00Z"), &tally(100)).is_none());
        assert!(shadow_window(None, 2, started, &tally(100)).is_none());
    }

    #[test]
    fn a_step_is_measured_from_its_first_scrape_and_a_new_step_starts_afresh() {
        let step_1 = at("2026-06-01T08:00:00Z");
        let kept = Baseline {
            version: 2,
            step_started: step_1,
            taken_at: at("2026-06-01T08:00:05Z"),
            canary: ServingCounters::default(),
            stable: ServingCounters::default(),
            gateway: None,
        };
        assert_eq!(
            window_start(Some(&kept), 2, step_1).map(|b| b.taken_at),
            Some(kept.taken_at)
        );
        assert!(window_start(Some(&kept), 2, at("2026-06-01T08:10:00Z")).is_none());
        assert!(
            window_start(Some(&kept), 3, step_1).is_none(),
            "another canary"
        );
        assert!(window_start(None, 2, step_1).is_none());
    }
}
