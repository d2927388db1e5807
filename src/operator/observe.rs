//! Observe: turn what the cluster and the model servers show into the
//! decision core's [`Observations`]. Reading objects is pure (from the
//! reflector stores); reading gate reports and the data source's version is
//! IO here, scraping the pods is [`scrape`]'s.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::Deployment;

use super::cached::{CachedJob, CachedPod};

use crate::api::names;
use crate::api::scrape::{BackendCounters, GatewayCounters, ServingCounters};
use crate::api::{GateEvaluation, Model, ModelVersion, RunStage, version_number};
use crate::policy::{
    CanaryMetrics, EventKind, GateResult, JobState, ManualAction, ManualRequest, Observations,
    ServingMetrics, TrainingJob,
};

use super::apply;
use super::audit;
use super::context::Context;
use super::error::OperatorError;
use super::scrape;

/// The state of a training Job as the decision core sees it.
pub fn job_state(job: &CachedJob) -> JobState {
    let Some(status) = &job.status else {
        return JobState::Pending;
    };
    let condition = |type_: &str| {
        status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == type_ && c.status == "True")
    };
    if condition("Complete").is_some() || status.succeeded.unwrap_or(0) > 0 {
        return JobState::Succeeded;
    }
    if let Some(failed) = condition("Failed") {
        let reason = failed.reason.clone().unwrap_or_else(|| "Failed".into());
        let message = match &failed.message {
            Some(m) if !m.is_empty() => format!("{reason}: {m}"),
            _ => reason,
        };
        return JobState::Failed { message };
    }
    if status.active.unwrap_or(0) > 0 && status.ready.unwrap_or(0) > 0 {
        JobState::Running
    } else {
        JobState::Pending
    }
}

/// The pods of version `n` in `role` (`names::ROLE_TRAINING`: its training
/// Job's; `names::ROLE_SERVING`: its serving replicas), by the labels the
/// pod templates carry.
pub fn pods_of_version<'a>(pods: &[&'a CachedPod], role: &str, n: u32) -> Vec<&'a CachedPod> {
    let n = n.to_string();
    pods.iter()
        .copied()
        .filter(|p| {
            let labels = p.metadata.labels.as_ref();
            let label = |key: &str| labels.and_then(|l| l.get(key)).map(String::as_str);
            label(names::ROLE_LABEL) == Some(role) && label(names::VERSION_LABEL) == Some(&n)
        })
        .collect()
}

/// Base URLs of version `n`'s ready serving replicas (`http://<pod IP>:8080`),
/// scraped one by one: through the Service each scrape would reach one
/// replica at random, and counters of different replicas cannot be
/// subtracted from each other.
pub fn replica_urls(pods: &[&CachedPod], n: u32) -> Vec<String> {
    ready_urls(pods_of_version(pods, names::ROLE_SERVING, n))
}

/// Base URLs of the Model's ready gateway replicas, scraped one by one for
/// the same reason.
pub fn gateway_urls(pods: &[&CachedPod]) -> Vec<String> {
    ready_urls(
        pods.iter()
            .copied()
            .filter(|p| {
                p.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(names::ROLE_LABEL))
                    .is_some_and(|r| r == names::ROLE_GATEWAY)
            })
            .collect(),
    )
}

fn ready_urls(pods: Vec<&CachedPod>) -> Vec<String> {
    let mut urls: Vec<String> = pods
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| {
            let status = p.status.as_ref()?;
            let ready = status
                .conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            let ip = status.pod_ip.as_deref().filter(|ip| !ip.is_empty())?;
            ready.then(|| format!("http://{ip}:{}", names::SERVE_PORT))
        })
        .collect();
    urls.sort();
    urls
}

/// Why a training pod cannot be scheduled (the scheduler's message), if so.
pub fn unschedulable(pods: &[&CachedPod]) -> Option<String> {
    pods.iter().find_map(|pod| {
        pod.status
            .as_ref()?
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == "PodScheduled" && c.status == "False")
            .map(|c| {
                c.message
                    .clone()
                    .unwrap_or_else(|| c.reason.clone().unwrap_or_default())
            })
    })
}

/// Whether a serving Deployment has all its replicas ready (at least one).
pub fn deployment_ready(d: &Deployment) -> bool {
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1).max(1);
    let status = d.status.as_ref();
    let ready = status.and_then(|s| s.ready_replicas).unwrap_or(0);
    let observed = status.and_then(|s| s.observed_generation);
    ready >= want && observed >= d.metadata.generation
}

/// Versions whose serving Deployment is ready.
pub fn ready_versions(model: &str, deployments: &[&Deployment]) -> BTreeSet<u32> {
    deployments
        .iter()
        .filter(|d| deployment_ready(d))
        .filter_map(|d| names::serving_version(model, d.metadata.name.as_deref()?))
        .collect()
}

/// The manual requests in the Model's annotations, oldest kind first; each
/// id is `<annotation>=<value>`, so writing a new value makes a new request.
///
/// A malformed value is refused with the annotation it came from, so the
/// caller can say why and remove it (it would be refused again otherwise).
pub fn manual_requests(model: &Model) -> Result<Vec<(String, ManualRequest)>, (String, String)> {
    let mut out = Vec::new();
    let Some(annotations) = &model.metadata.annotations else {
        return Ok(out);
    };
    for key in [
        names::RETRAIN_ANNOTATION,
        names::PROMOTE_ANNOTATION,
        names::ROLLBACK_ANNOTATION,
    ] {
        let Some(value) = annotations.get(key) else {
            continue;
        };
        let action = match key {
            names::RETRAIN_ANNOTATION => ManualAction::Retrain {
                reason: Some(format!("annotation {key}: {value}")),
            },
            names::PROMOTE_ANNOTATION => {
                let first = value.split_whitespace().next().unwrap_or("");
                let version = if first.is_empty() || first == names::PROMOTE_CANARY {
                    None
                } else {
                    Some(crate::api::version_number(first).ok_or_else(|| {
                        (
                            key.to_string(),
                            format!(
                                "annotation {key}: `{value}` does not name a version; write `v<n>` (e.g. v3) or `{}`",
                                names::PROMOTE_CANARY
                            ),
                        )
                    })?)
                };
                ManualAction::Promote { version }
            }
            _ => ManualAction::Rollback,
        };
        out.push((
            key.to_string(),
            ManualRequest {
                id: format!("{key}={value}"),
                action,
            },
        ));
    }
    Ok(out)
}

/// The gate verdict a finished training left beside its artifact.
pub async fn read_gate_report(artifact: &str) -> Result<Option<GateEvaluation>, OperatorError> {
    let uri = names::gate_report_uri(artifact);
    match crate::data::store::read_bytes(&uri).await {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| OperatorError::GateReport { uri, source }),
        Err(crate::data::store::StoreError::NotFound { .. }) => Ok(None),
        Err(source) => Err(OperatorError::Store {
            action: format!("read gate report {uri}"),
            source,
        }),
    }
}

/// The report of a version's data check, once its Job wrote one.
async fn read_data_check_report(
    artifact: &str,
) -> Result<Option<crate::api::DataCheckReport>, OperatorError> {
    let uri = names::data_check_report_uri(artifact);
    match crate::data::store::read_bytes(&uri).await {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| OperatorError::DataCheckReport { uri, source }),
        Err(crate::data::store::StoreError::NotFound { .. }) => Ok(None),
        Err(source) => Err(OperatorError::Store {
            action: format!("read data check report {uri}"),
            source,
        }),
    }
}

/// What came of the running version's data check, while the Model's run
/// is checking its data: the report its Job left, or its failure when it
/// left none. Chosen by the Model's run, not the version's phase: a version
/// whose phase was written before a failed Model status write still reads
/// `Training`, and its report must still be read.
async fn data_checks(
    model: &Model,
    name: &str,
    versions: &[ModelVersion],
    jobs: &[&CachedJob],
) -> Result<Vec<crate::policy::DataCheckResult>, OperatorError> {
    use crate::policy::{DataCheckOutcome, DataCheckResult};
    let Some(n) = model
        .status
        .as_ref()
        .and_then(|s| s.training.as_ref())
        .filter(|t| t.stage == RunStage::CheckingData)
        .and_then(|t| version_number(&t.version))
    else {
        return Ok(Vec::new());
    };
    let Some(artifact) = versions
        .iter()
        .find(|v| v.spec.version == n)
        .and_then(|v| v.status.as_ref()?.artifact.as_ref())
    else {
        return Ok(Vec::new());
    };
    let outcome = match read_data_check_report(&artifact.uri).await? {
        Some(report) => Some(DataCheckOutcome::Verdict(report.verdict)),
        None => jobs
            .iter()
            .find(|j| j.metadata.name.as_deref() == Some(&names::data_check_job(name, n)))
            .and_then(|j| match job_state(j) {
                JobState::Failed { message } => Some(DataCheckOutcome::JobFailed(message)),
                _ => None,
            }),
    };
    Ok(outcome
        .map(|outcome| DataCheckResult {
            version: n,
            outcome,
        })
        .into_iter()
        .collect())
}

/// A trained artifact's `manifest.json`; `None` (logged, naming `purpose`)
/// when it cannot be read: what needed it goes without, nothing else changes.
pub async fn read_manifest(artifact: &str, purpose: &str) -> Option<crate::ml::Manifest> {
    let uri = names::manifest_uri(artifact);
    match crate::ml::read_manifest(artifact).await {
        Ok(manifest) => Some(manifest),
        Err(e @ crate::ml::ArtifactError::Store(_)) => {
            tracing::warn!(%uri, error = %e, "cannot read the manifest for {purpose}");
            None
        }
        Err(e) => {
            tracing::warn!(%uri, error = %e, "the manifest is not readable for {purpose}");
            None
        }
    }
}

/// The training curve and lineage in a trained artifact's `manifest.json`,
/// for the registry.
pub async fn read_training_facts(artifact: &str) -> Option<super::audit::TrainingFacts> {
    let manifest = read_manifest(artifact, "the registry").await?;
    Some(super::audit::TrainingFacts::from_manifest(&manifest))
}

/// Versions the decision core still needs a gate verdict for.
pub fn awaiting_gate(versions: &[ModelVersion]) -> Vec<(u32, String)> {
    versions
        .iter()
        .filter_map(|v| {
            let s = v.status.as_ref()?;
            crate::policy::awaits_gate(s)
                .then(|| Some((v.spec.version, s.artifact.as_ref()?.uri.clone())))?
        })
        .collect()
}

/// The counters at the start of a canary step, kept between reconciles.
#[derive(Clone, Debug)]
pub struct Baseline {
    /// The canary version and the start of the step the counters belong to.
    pub version: u32,
    pub step_started: DateTime<Utc>,
    pub taken_at: DateTime<Utc>,
    pub canary: ServingCounters,
    pub stable: ServingCounters,
    /// The gateways' per-backend counters, when every gateway answered.
    pub gateway: Option<GatewayCounters>,
}

fn serving_metrics(c: &ServingCounters) -> ServingMetrics {
    ServingMetrics {
        requests: c.requests,
        errors: c.errors,
        p99_latency_ms: c.p99_ms(),
        labelled: c.labelled,
        correct: c.correct,
        slow: None,
        confidence_rows: c.confidence_rows,
        expected_correct: c.confidence_sum,
    }
}

/// Jensen-Shannon distance between two prediction distributions by class.
fn prediction_divergence(a: &BTreeMap<String, u64>, b: &BTreeMap<String, u64>) -> Option<f64> {
    let classes: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let counts = |m: &BTreeMap<String, u64>| -> Vec<u64> {
        classes
            .iter()
            .map(|c| m.get(*c).copied().unwrap_or(0))
            .collect()
    };
    let (ca, cb) = (counts(a), counts(b));
    if ca.iter().sum::<u64>() == 0 || cb.iter().sum::<u64>() == 0 {
        return None;
    }
    let (sa, sb) = (crate::drift::shares(&ca), crate::drift::shares(&cb));
    Some(crate::drift::jensen_shannon_distance(&sa, &sb))
}

/// Adds what only the gateway saw: requests that never reached the version
/// (refused, reset, timed out) are requests and errors its server could not
/// count.
fn add_unreachable(m: &mut ServingMetrics, seen: &BackendCounters) {
    m.requests += seen.unreachable;
    m.errors += seen.unreachable;
}

/// Canary and stable over the same window: what happened since `baseline`.
///
/// With the gateways' per-backend counters at both ends of the window,
/// requests the gateway could not deliver count as errors, and the p99
/// latency is the one clients saw through the gateway (for both versions,
/// when both answered any request; otherwise the servers' own).
pub fn canary_metrics(
    version: u32,
    stable_version: u32,
    baseline: &Baseline,
    now_counters: (&ServingCounters, &ServingCounters, Option<&GatewayCounters>),
    now: DateTime<Utc>,
) -> CanaryMetrics {
    let (canary_now, stable_now, gateway_now) = now_counters;
    let canary = canary_now.since(&baseline.canary);
    let stable = stable_now.since(&baseline.stable);
    let mut m = CanaryMetrics {
        version,
        window_start: baseline.taken_at,
        window_end: now,
        prediction_divergence: prediction_divergence(&canary.predictions, &stable.predictions),
        canary: serving_metrics(&canary),
        stable: serving_metrics(&stable),
    };
    // Latency as a rate: canary requests slower than stable's p99 on the
    // same window and the same bucket layout.
    m.canary.slow = m
        .stable
        .p99_latency_ms
        .and_then(|p99| canary.slower_than(p99));
    if let (Some(g_now), Some(g_then)) = (gateway_now, &baseline.gateway) {
        let g = g_now.since(g_then);
        let (c, s) = (
            g.backend(&crate::api::version_name(version)),
            g.backend(&crate::api::version_name(stable_version)),
        );
        add_unreachable(&mut m.canary, &c);
        add_unreachable(&mut m.stable, &s);
        if c.answered > 0 && s.answered > 0 {
            m.canary.p99_latency_ms = c.p99_ms();
            m.stable.p99_latency_ms = s.p99_ms();
            m.canary.slow = m.stable.p99_latency_ms.and_then(|p99| c.slower_than(p99));
        }
    }
    m
}

/// What one reconcile observed: the decision core's [`Observations`] and
/// what the operator keeps for itself around the decision.
pub struct Observed {
    pub observations: Observations,
    /// The annotation of the manual request handed to the core, removed once acted on.
    pub acknowledged: Option<String>,
    /// Who asked (`driftline.dev/requested-by`), for the audit trail.
    pub actor: Option<String>,
    /// Full gate evaluations read this reconcile, for the registry.
    pub gate_reports: BTreeMap<u32, GateEvaluation>,
    /// Training curve and lineage of those versions.
    pub training: BTreeMap<u32, audit::TrainingFacts>,
}

/// Everything the decision core needs, read from the caches (pure), the
/// artifact store and the Model's pods (IO).
pub async fn observations(
    model: &Model,
    ctx: &Context,
    name: &str,
    versions: &[ModelVersion],
    jobs: &[&CachedJob],
    pods: &[&CachedPod],
    deployments: &[&Deployment],
) -> Result<Observed, OperatorError> {
    let mut obs = Observations::at(ctx.clock.now());
    obs.generation = model.metadata.generation;
    obs.jobs = jobs
        .iter()
        .filter_map(|j| {
            let version = names::training_job_version(name, j.metadata.name.as_deref()?)?;
            let state = job_state(j);
            let unschedulable = match state {
                JobState::Pending => {
                    unschedulable(&pods_of_version(pods, names::ROLE_TRAINING, version))
                }
                _ => None,
            };
            Some(TrainingJob {
                version,
                state,
                unschedulable,
            })
        })
        .collect();
    let mut gate_reports = BTreeMap::new();
    let mut training = BTreeMap::new();
    for (version, artifact) in awaiting_gate(versions) {
        if let Some(report) = read_gate_report(&artifact).await? {
            obs.gate_results.push(GateResult {
                version,
                verdict: report.verdict.clone(),
            });
            // Read whatever the registry: the start lineage goes into the
            // version's status too.
            if let Some(facts) = read_training_facts(&artifact).await {
                training.insert(version, facts);
            }
            if ctx.registry.is_some() {
                gate_reports.insert(version, report);
            }
        }
    }
    obs.data_checks = data_checks(model, name, versions, jobs).await?;
    obs.ready_versions = ready_versions(name, deployments);
    let gateway = names::gateway_deployment(name);
    obs.gateway_ready = deployments
        .iter()
        .any(|d| d.metadata.name.as_deref() == Some(gateway.as_str()) && deployment_ready(d));

    let mut acknowledged = None;
    match manual_requests(model) {
        Ok(requests) => {
            if let Some((annotation, request)) = requests.into_iter().next() {
                obs.request = Some(request);
                acknowledged = Some(annotation);
            }
        }
        Err((annotation, message)) => {
            apply::event(
                &ctx.recorder,
                model,
                EventKind::Warning,
                "RequestRefused",
                "Request",
                &message,
            )
            .await?;
            // Said once: removed, it is not refused again at every reconcile.
            acknowledged = Some(annotation);
        }
    }

    // `retrain.onNewData`: the data's version (one file's ETag, or size and
    // modification time; for a prefix, the digest of the files inside the
    // window as of now, and as the last run's window sees them), compared by
    // the core with the one the latest training started from. A source that
    // cannot be listed is not "new": the core says why in `SourceReadable`.
    if model.spec.retrain.as_ref().is_some_and(|r| r.on_new_data) {
        let status = model.status.as_ref();
        let since = status
            .and_then(|s| s.training.as_ref().or(s.last_training.as_ref()))
            .map(|t| t.started_at);
        match crate::data::version(&model.spec.data, obs.now, since).await {
            Ok(version) => {
                obs.source_digest = Some(version.current);
                obs.source_digest_against_last = Some(version.against_last);
            }
            Err(e) => obs.source_error = Some(e.to_string()),
        }
    }

    if let Some(metrics) = scrape::canary(model, ctx, pods, &obs).await {
        obs.canary_metrics = Some(metrics);
    }
    obs.shadow = scrape::shadow(model, ctx, pods).await;
    if let Some(champion) = model
        .status
        .as_ref()
        .and_then(|s| s.champion.as_deref())
        .and_then(version_number)
    {
        let artifact = versions
            .iter()
            .find(|v| v.spec.version == champion)
            .and_then(|v| Some(v.status.as_ref()?.artifact.as_ref()?.uri.clone()));
        if let Some(artifact) = artifact {
            let replicas = scrape::targets(model, pods, champion);
            let totals = scrape::drift_totals(ctx, name, &replicas).await;
            obs.drift = ctx
                .drift_windows
                .readings(model, champion, &artifact, &totals, obs.now)
                .await;
            if model.spec.task == crate::api::Task::Classification {
                obs.champion_labels = scrape::labelled(ctx, &replicas).await;
            }
        }
    }
    // Every label under the feedback prefix, however late, against the
    // answer logged with it: what each served version realised.
    if model.spec.task == crate::api::Task::Classification
        && let Some(prefix) = super::children::feedback_prefix(model, &ctx.settings)
    {
        match ctx
            .realised
            .read(model, &prefix, obs.now, ctx.drift_poll)
            .await
        {
            Ok(joined) => {
                // Once labels logged with their confidence are joined, they
                // judge the estimate instead of the servers' counters: they
                // hold what the servers joined (once written) and every
                // late label file besides.
                let champion = model.status.as_ref().and_then(|s| s.champion.as_ref());
                if let Some(scored) = champion
                    .and_then(|c| joined.scored.get(c))
                    .filter(|c| c.labelled > 0)
                {
                    obs.champion_labels = Some(scored.clone());
                }
                obs.realised_accuracy = Some(joined.status);
            }
            Err(e) => obs.labels_error = Some(e),
        }
    }
    let actor = acknowledged.as_ref().and_then(|_| {
        model
            .metadata
            .annotations
            .as_ref()?
            .get(names::REQUESTED_BY_ANNOTATION)
            .cloned()
    });
    Ok(Observed {
        observations: obs,
        acknowledged,
        actor,
        gate_reports,
        training,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::{JobCondition, JobStatus};

    fn job(status: JobStatus) -> CachedJob {
        CachedJob {
            status: Some(status),
            ..Default::default()
        }
    }

    fn pod(role: &str, version: u32, ip: Option<&str>, ready: bool) -> CachedPod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("{role}-{version}-{}", ip.unwrap_or("none")), "labels": {
                names::ROLE_LABEL: role, names::VERSION_LABEL: version.to_string()}},
            "status": {"podIP": ip, "conditions": [
                {"type": "Ready", "status": if ready { "True" } else { "False" }}]}
        }))
        .expect("pod")
    }

    #[test]
    fn each_ready_replica_of_a_version_is_scraped_at_its_own_address() {
        let pods = [
            pod(names::ROLE_SERVING, 3, Some("127.16.0.9"), true),
            pod(names::ROLE_SERVING, 3, Some("127.16.0.4"), true),
            pod(names::ROLE_SERVING, 3, Some("127.16.0.5"), false),
            pod(names::ROLE_SERVING, 3, None, true),
            pod(names::ROLE_SERVING, 4, Some("127.16.0.6"), true),
            pod(names::ROLE_TRAINING, 3, Some("127.16.0.7"), true),
        ];
        let refs: Vec<&CachedPod> = pods.iter().collect();
        assert_eq!(
            replica_urls(&refs, 3),
            vec!["http://127.16.0.4:8080", "http://127.16.0.9:8080"]
        );
        assert_eq!(
            pods_of_version(&refs, names::ROLE_TRAINING, 3).len(),
            1,
            "training pods are told apart by role"
        );
        assert!(replica_urls(&refs, 5).is_empty());
    }

    #[test]
    fn job_conditions_map_to_states_with_the_message() {
        assert_eq!(job_state(&CachedJob::default()), JobState::Pending);
        let running = job(JobStatus {
            active: Some(1),
            ready: Some(1),
            ..Default::default()
        });
        assert_eq!(job_state(&running), JobState::Running);
        let done = job(JobStatus {
            succeeded: Some(1),
            ..Default::default()
        });
        assert_eq!(job_state(&done), JobState::Succeeded);
        let failed = job(JobStatus {
            failed: Some(3),
            conditions: Some(vec![JobCondition {
                type_: "Failed".into(),
                status: "True".into(),
                reason: Some("BackoffLimitExceeded".into()),
                message: Some("Job has reached the specified backoff limit".into()),
                ..Default::default()
            }]),
            ..Default::default()
        });
        assert_eq!(
            job_state(&failed),
            JobState::Failed {
                message: "BackoffLimitExceeded: Job has reached the specified backoff limit".into()
            }
        );
    }

    #[test]
    fn annotations_become_requests_and_bad_versions_are_named() {
        let mut m = Model::new(
            "wine",
            crate::api::load_model_config(include_str!("../../pipelines/wine-quality.yaml"))
                .expect("bundled pipeline"),
        );
        m.metadata.annotations = Some(BTreeMap::from([
            (
                names::PROMOTE_ANNOTATION.to_string(),
                "v3 by ada".to_string(),
            ),
            (
                names::RETRAIN_ANNOTATION.to_string(),
                "2026-11-28T10:00:00Z".to_string(),
            ),
        ]));
        let requests = manual_requests(&m).expect("valid annotations");
        assert_eq!(requests.len(), 2);
        assert_eq!(requests[0].0, names::RETRAIN_ANNOTATION);
        assert_eq!(
            requests[1].1,
            ManualRequest {
                id: "driftline.dev/promote=v3 by ada".into(),
                action: ManualAction::Promote { version: Some(3) }
            }
        );
        m.metadata.annotations = Some(BTreeMap::from([(
            names::PROMOTE_ANNOTATION.to_string(),
            "three".to_string(),
        )]));
        let (key, err) = manual_requests(&m).expect_err("not a version");
        assert_eq!(key, names::PROMOTE_ANNOTATION);
        assert!(err.contains("`three` does not name a version"), "{err}");
        m.metadata.annotations = Some(BTreeMap::from([(
            names::PROMOTE_ANNOTATION.to_string(),
            "canary by ada".to_string(),
        )]));
        assert_eq!(
            manual_requests(&m).expect("the canary").remove(0).1.action,
            ManualAction::Promote { version: None }
        );
    }

    #[test]
    fn canary_windows_compare_like_with_like() {
        let t0 = DateTime::parse_from_rfc3339("2026-06-01T00:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let mut base = ServingCounters::default();
        base.predictions.insert("a".into(), 10);
        let baseline = Baseline {
            version: 2,
            step_started: t0,
            taken_at: t0,
            canary: base.clone(),
            stable: base,
            gateway: None,
        };
        let mut canary = ServingCounters {
            requests: 100,
            errors: 2,
            ..Default::default()
        };
        canary.predictions.insert("a".into(), 110);
        let mut stable = ServingCounters {
            requests: 900,
            ..Default::default()
        };
        stable.predictions.insert("b".into(), 900);
        stable.predictions.insert("a".into(), 10);
        let m = canary_metrics(
            2,
            1,
            &baseline,
            (&canary, &stable, None),
            t0 + chrono::Duration::minutes(5),
        );
        assert_eq!((m.canary.requests, m.canary.errors), (100, 2));
        assert_eq!(m.stable.requests, 900);
        let d = m.prediction_divergence.expect("both predicted");
        assert!((d - 1.0).abs() < 1e-9, "disjoint classes are 1 apart: {d}");
    }

    /// A canary that crashes is invisible to its own server's counters: the
    /// gateway's refused requests are its errors, and the latency compared
    /// is what clients saw.
    #[test]
    fn requests_the_gateway_could_not_deliver_count_against_the_version() {
        let t0 = DateTime::parse_from_rfc3339("2026-06-01T00:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let gateway = |v1: u64, v2_answered: u64, v2_refused: u64, slow: u64| {
            let mut text = format!(
                "driftline_gateway_requests_total{{version=\"v1\",code=\"200\"}} {v1}\n\
                 driftline_gateway_requests_total{{version=\"v2\",code=\"200\"}} {v2_answered}\n\
                 driftline_gateway_backend_errors_total{{version=\"v2\"}} {v2_refused}\n\
                 driftline_gateway_backend_latency_seconds_bucket{{version=\"v1\",le=\"0.001\"}} {v1}\n\
                 driftline_gateway_backend_latency_seconds_bucket{{version=\"v1\",le=\"+Inf\"}} {v1}\n"
            );
            text.push_str(&format!(
                "driftline_gateway_backend_latency_seconds_bucket{{version=\"v2\",le=\"0.001\"}} {}\n\
                 driftline_gateway_backend_latency_seconds_bucket{{version=\"v2\",le=\"0.5\"}} {v2_answered}\n\
                 driftline_gateway_backend_latency_seconds_bucket{{version=\"v2\",le=\"+Inf\"}} {v2_answered}\n",
                v2_answered - slow
            ));
            GatewayCounters::from_metrics(&text)
        };
        let zero = ServingCounters::default();
        let baseline = Baseline {
            version: 2,
            step_started: t0,
            taken_at: t0,
            canary: zero.clone(),
            stable: zero.clone(),
            gateway: Some(gateway(0, 0, 0, 0)),
        };
        // The canary's server answered 60 requests, all fine and fast by its
        // own clock; the gateway saw 40 more refused, and 10 of the 60 slow.
        let canary = ServingCounters {
            requests: 60,
            ..Default::default()
        };
        let stable = ServingCounters {
            requests: 900,
            ..Default::default()
        };
        let later = t0 + chrono::Duration::minutes(1);
        let m = canary_metrics(
            2,
            1,
            &baseline,
            (&canary, &stable, Some(&gateway(900, 60, 40, 10))),
            later,
        );
        assert_eq!((m.canary.requests, m.canary.errors), (100, 40));
        assert!((m.canary.error_rate() - 0.4).abs() < 1e-12);
        assert_eq!((m.stable.requests, m.stable.errors), (900, 0));
        assert_eq!(m.canary.p99_latency_ms, Some(500.0));
        assert_eq!(m.stable.p99_latency_ms, Some(1.0));
        // Without the gateway at the window's start, the servers' own view.
        let no_gateway = Baseline {
            gateway: None,
            ..baseline
        };
        let m = canary_metrics(
            2,
            1,
            &no_gateway,
            (&canary, &stable, Some(&gateway(900, 60, 40, 10))),
            later,
        );
        assert_eq!((m.canary.requests, m.canary.errors), (60, 0));
        assert_eq!(m.canary.p99_latency_ms, None);
    }
}
