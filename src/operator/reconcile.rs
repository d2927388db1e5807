//! One reconcile of one Model: observe → `policy::decide` → apply → status.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::runtime::controller::Action as Requeue;
use kube::runtime::events::Recorder;
use kube::runtime::reflector::ObjectRef;
use kube::{Client, ResourceExt};
use tracing::{Instrument, info, info_span, warn};

use crate::api::names::{self, ROLE_LABEL};
use crate::api::scrape::ServingCounters;
use crate::api::{
    ConditionStatus, GateEvaluation, Model, ModelStatus, ModelVersion, ModelVersionStatus,
    VersionPhase, version_name, version_number,
};
use crate::drift::DriftReport;
use crate::policy::conditions::set_condition;
use crate::policy::{
    Action, Decision, EventKind, GateResult, JobState, Observations, TrainingJob, decide,
};
use crate::registry::RegistryWriter;

use super::apply;
use super::audit;
use super::children::{self, ChildSettings};
use super::clock::Clock;
use super::error::OperatorError;
use super::index::Children;
use super::observe::{self, Baseline};
use super::telemetry::Telemetry;

/// Longest real wait between two reconciles of a Model.
const MAX_REQUEUE: Duration = Duration::from_secs(300);
/// Real wait between reconciles while a canary collects evidence.
const CANARY_POLL: Duration = Duration::from_secs(5);

/// Reflector caches of the Model's children.
#[derive(Clone)]
pub struct Stores {
    pub versions: Children<ModelVersion>,
    pub jobs: Children<Job>,
    pub deployments: Children<Deployment>,
    pub services: Children<Service>,
    /// The children's pods: why a training Job stays Pending (the
    /// scheduler's message), and the serving replicas to scrape.
    pub pods: Children<Pod>,
}

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub settings: ChildSettings,
    pub clock: Arc<Clock>,
    pub recorder: Recorder,
    pub stores: Stores,
    pub http: reqwest::Client,
    pub telemetry: Arc<Telemetry>,
    /// Canary counters at the start of each step, by Model.
    pub baselines: Mutex<HashMap<ObjectRef<Model>, Baseline>>,
    /// The champion's drift windows over all its replicas, by Model.
    pub drift_windows: super::drift_windows::DriftWindows,
    /// The resourceVersion each Model had before our last status write: a
    /// reconcile that sees it again runs on a stale cache and waits.
    pub stale: Mutex<HashMap<ObjectRef<Model>, String>>,
    /// Real time between two reads of the champion's drift windows.
    pub drift_poll: Duration,
    /// Where decisions are recorded (lineage, evaluations, audit trail), if anywhere.
    pub registry: Option<Arc<RegistryWriter>>,
    /// Whether the cluster serves the Gateway API (then each Model also gets
    /// an HTTPRoute).
    pub gateway_api: super::gateway_api::GatewayApiProbe,
    /// What was last applied to each HTTPRoute and NetworkPolicy
    /// (`kind/namespace/name` → content hash, when): they have no watch
    /// cache, and an unchanged one is not written again for
    /// [`super::apply::REAPPLY_AFTER`].
    pub routes_applied: Mutex<HashMap<String, (String, Instant)>>,
    /// Base URL of the dashboard, for the links in decision Events.
    pub dashboard_url: Option<String>,
}

fn borrowed<K>(items: &[Arc<K>]) -> Vec<&K> {
    items.iter().map(Arc::as_ref).collect()
}

/// The kube-runtime entry point: reconciles one Model and records the outcome.
pub async fn reconcile(model: Arc<Model>, ctx: Arc<Context>) -> Result<Requeue, OperatorError> {
    let name = model.name_any();
    let ns = model.namespace().unwrap_or_default();
    let span = info_span!("reconcile", model = %format!("{ns}/{name}"));
    let started = Instant::now();
    let result = reconcile_model(&model, &ctx).instrument(span.clone()).await;
    ctx.telemetry
        .observe_reconcile(started.elapsed(), result.as_ref().err());
    if let Err(e) = &result {
        let _enter = span.enter();
        warn!(error = %e, "reconcile failed");
        report_error(&model, &ctx, e).await;
    }
    result
}

/// Backoff after a failed reconcile: permanent errors wait for a change to
/// the Model (a watch event), transient ones retry soon.
pub fn error_policy(model: Arc<Model>, error: &OperatorError, _ctx: Arc<Context>) -> Requeue {
    // Also in the log: the condition and Event it reports may themselves be
    // refused (RBAC), and then the log is the only place left.
    tracing::warn!(model = %kube::ResourceExt::name_any(model.as_ref()), %error, "reconcile failed");
    if error.is_permanent() {
        Requeue::requeue(MAX_REQUEUE)
    } else {
        Requeue::requeue(Duration::from_secs(5))
    }
}

/// A failure lands where the user looks: a `Reconciled=False` condition and
/// a Warning Event naming the cause.
async fn report_error(model: &Model, ctx: &Context, e: &OperatorError) {
    let mut status = model.status.clone().unwrap_or_default();
    let obs = Observations::at(ctx.clock.now());
    let changed = set_condition(
        &mut status,
        &obs,
        "Reconciled",
        ConditionStatus::False,
        e.reason(),
        &e.to_string(),
    );
    if changed || model.status.as_ref() != Some(&status) {
        let _ = apply::write_status(&ctx.client, model, &status).await;
    }
    let _ = apply::event(
        &ctx.recorder,
        model,
        EventKind::Warning,
        e.reason(),
        "Reconcile",
        &e.to_string(),
    )
    .await;
}

async fn reconcile_model(model: &Model, ctx: &Context) -> Result<Requeue, OperatorError> {
    let key = ObjectRef::from_obj(model);
    let name = model.name_any();
    let ns = model.namespace().ok_or(OperatorError::Unnamed)?;
    if model.metadata.deletion_timestamp.is_some() {
        // Owner references let the garbage collector remove the children.
        return Ok(Requeue::await_change());
    }
    let rv = model.resource_version();
    if rv.is_some()
        && ctx
            .stale
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            == rv.as_ref()
    {
        tracing::debug!(
            resource_version = rv.as_deref().unwrap_or_default(),
            "the cache still shows the Model before our last status write; waiting"
        );
        return Ok(Requeue::requeue(Duration::from_millis(200)));
    }

    let mut versions: Vec<ModelVersion> = ctx
        .stores
        .versions
        .of(&ns, &name)
        .iter()
        .filter(|v| v.spec.model == name)
        .map(|v| v.as_ref().clone())
        .collect();
    versions.sort_by_key(|v| v.spec.version);
    let all_jobs = ctx.stores.jobs.of(&ns, &name);
    let jobs = borrowed(&all_jobs);
    let all_deployments = ctx.stores.deployments.of(&ns, &name);
    let deployments = borrowed(&all_deployments);

    let all_pods = ctx.stores.pods.of(&ns, &name);
    let pods = borrowed(&all_pods);
    let obs = observe_all(model, ctx, &name, &versions, &jobs, &pods, &deployments).await?;
    let decision = decide(model, &versions, &obs.observations);
    tracing::debug!(
        resource_version = rv.as_deref().unwrap_or_default(),
        versions = ?versions
            .iter()
            .map(|v| (v.spec.version, v.status.as_ref().map(|s| s.phase)))
            .collect::<Vec<_>>(),
        jobs = ?obs.observations.jobs,
        gate_results = obs.observations.gate_results.len(),
        actions = decision.actions.len(),
        "decided"
    );
    apply_decision(model, ctx, &versions, &decision).await?;
    ensure_children(model, ctx, &decision.status, &versions, &jobs, &deployments).await?;

    let mut status = decision.status.clone();
    set_condition(
        &mut status,
        &obs.observations,
        "Reconciled",
        ConditionStatus::True,
        "Reconciled",
        "children and status match the latest decision",
    );
    if let Some(registry) = &ctx.registry {
        registry_condition(model, ctx, registry, &mut status, &obs.observations).await?;
    }
    if model.status.as_ref() != Some(&status) {
        apply::write_status(&ctx.client, model, &status).await?;
        if let Some(rv) = rv {
            ctx.stale
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(key.clone(), rv);
        }
    }
    // Only now, with the decision in the Model's status: a decision that must
    // be made again (a failed write) leaves no row behind.
    if let Some(registry) = &ctx.registry {
        let observed = audit::Observed {
            gate_reports: &obs.gate_reports,
            training: &obs.training,
            drift: &obs.observations.drift,
            actor: obs.actor.as_deref(),
        };
        for record in audit::records(model, &versions, &decision, &observed, obs.observations.now) {
            if let Err(e) = registry.submit(record) {
                warn!(error = %e, "registry record dropped");
            }
        }
    }
    if let Some(annotation) = &obs.acknowledged {
        apply::remove_annotation(&ctx.client, model, annotation).await?;
        if obs.actor.is_some() {
            apply::remove_annotation(&ctx.client, model, names::REQUESTED_BY_ANNOTATION).await?;
        }
    }
    ctx.telemetry.set_phase(&key, status.phase);

    let mut wait = decision
        .requeue_after
        .map_or(MAX_REQUEUE, |d| ctx.clock.real(d))
        .min(MAX_REQUEUE);
    if status.canary.is_some() {
        wait = wait.min(CANARY_POLL);
    }
    let watches = model
        .spec
        .retrain
        .as_ref()
        .is_some_and(|r| r.on_drift || r.on_new_data);
    if watches && status.champion.is_some() {
        wait = wait.min(ctx.drift_poll);
    }
    Ok(Requeue::requeue(wait.max(Duration::from_millis(100))))
}

struct Observed {
    observations: Observations,
    /// The annotation of the manual request handed to the core, removed once acted on.
    acknowledged: Option<String>,
    /// Who asked (`driftline.dev/requested-by`), for the audit trail.
    actor: Option<String>,
    /// Full gate evaluations read this reconcile, for the registry.
    gate_reports: BTreeMap<u32, GateEvaluation>,
    /// Training curve and lineage of those versions (with a registry only).
    training: BTreeMap<u32, audit::TrainingFacts>,
}

/// `RegistryAvailable`: whether decisions reach the registry now; a flip to
/// False is also a Warning Event (rows wait in memory meanwhile).
async fn registry_condition(
    model: &Model,
    ctx: &Context,
    registry: &RegistryWriter,
    status: &mut ModelStatus,
    obs: &Observations,
) -> Result<(), OperatorError> {
    let availability = registry.availability();
    let (value, reason, message) = if registry.is_available() {
        (
            ConditionStatus::True,
            "RegistryReachable",
            format!("records reach the registry at {}", registry.url()),
        )
    } else {
        (
            ConditionStatus::False,
            "RegistryUnreachable",
            format!(
                "the registry at {} is unreachable ({availability:?}); records wait in memory and are retried",
                registry.url()
            ),
        )
    };
    let flipped = set_condition(status, obs, "RegistryAvailable", value, reason, &message);
    if flipped && value == ConditionStatus::False {
        apply::event(
            &ctx.recorder,
            model,
            EventKind::Warning,
            reason,
            "Registry",
            &message,
        )
        .await?;
    }
    Ok(())
}

async fn observe_all(
    model: &Model,
    ctx: &Context,
    name: &str,
    versions: &[ModelVersion],
    jobs: &[&Job],
    pods: &[&Pod],
    deployments: &[&Deployment],
) -> Result<Observed, OperatorError> {
    let mut obs = Observations::at(ctx.clock.now());
    obs.generation = model.metadata.generation;
    obs.jobs = jobs
        .iter()
        .filter_map(|j| {
            let version = names::training_job_version(name, j.metadata.name.as_deref()?)?;
            let state = observe::job_state(j);
            let unschedulable = match state {
                JobState::Pending => observe::unschedulable(&observe::pods_of_version(
                    pods,
                    names::ROLE_TRAINING,
                    version,
                )),
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
    for (version, artifact) in observe::awaiting_gate(versions) {
        if let Some(report) = observe::read_gate_report(&artifact).await? {
            obs.gate_results.push(GateResult {
                version,
                verdict: report.verdict.clone(),
            });
            if ctx.registry.is_some() {
                if let Some(facts) = observe::read_training_facts(&artifact).await {
                    training.insert(version, facts);
                }
                gate_reports.insert(version, report);
            }
        }
    }
    obs.ready_versions = observe::ready_versions(name, deployments);

    let mut acknowledged = None;
    match observe::manual_requests(model) {
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

    // `retrain.onNewData`: the data source's version (ETag, or size and
    // modification time), compared by the core with the one the latest
    // training started from. A source that cannot be read is not "new".
    if model.spec.retrain.as_ref().is_some_and(|r| r.on_new_data) {
        match crate::ml::store::version_tag(&model.spec.data.source).await {
            Ok(tag) => obs.source_digest = Some(tag),
            Err(e) => {
                warn!(source = %model.spec.data.source, error = %e, "cannot read the data source's version")
            }
        }
    }

    if let Some(metrics) = scrape_canary(model, ctx, pods, &obs).await {
        obs.canary_metrics = Some(metrics);
    }
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
            let replicas = scrape_targets(model, pods, champion);
            let totals = scrape_drift_totals(ctx, name, &replicas).await;
            obs.drift = ctx
                .drift_windows
                .readings(model, champion, &artifact, &totals, obs.now)
                .await;
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

/// The base URLs to scrape version `n` at: each ready replica; or the
/// version's Service while the operator sees none of the version's pods
/// (pods without the labels it watches). Pods that exist but are not ready
/// yet are not scraped at all: nothing would answer through the Service
/// either, and a lookup of its name outside the cluster's DNS (the
/// embedded cluster without a hosts file) waits for the scrape timeout.
fn scrape_targets(model: &Model, pods: &[&Pod], n: u32) -> Vec<String> {
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
async fn scrape_version(ctx: &Context, replicas: &[String]) -> Option<ServingCounters> {
    let scrapes = replicas.iter().map(|base| async move {
        let url = format!("{base}/metrics");
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

/// Each replica's running drift total from its `/v2/models/{name}/drift`,
/// by replica address; replicas that do not answer are left out (and
/// forgotten by the merge until they answer again).
async fn scrape_drift_totals(
    ctx: &Context,
    model: &str,
    replicas: &[String],
) -> Vec<(String, crate::drift::RunningTotal)> {
    let scrapes = replicas.iter().map(|base| async move {
        let url = format!("{base}/v2/models/{model}/drift");
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
async fn scrape_canary(
    model: &Model,
    ctx: &Context,
    pods: &[&Pod],
    obs: &Observations,
) -> Option<crate::policy::CanaryMetrics> {
    let status = model.status.as_ref()?;
    let canary = status.canary.as_ref()?;
    let step_started = canary.step_started_at?;
    let n = version_number(&canary.version)?;
    let champion = status.champion.as_deref().and_then(version_number)?;
    let (canary_replicas, stable_replicas) = (
        scrape_targets(model, pods, n),
        scrape_targets(model, pods, champion),
    );
    let gateways = observe::gateway_urls(pods);
    let (canary_now, stable_now, gateway_now) = tokio::join!(
        scrape_version(ctx, &canary_replicas),
        scrape_version(ctx, &stable_replicas),
        scrape_gateway(ctx, &gateways),
    );
    let (canary_now, stable_now) = (canary_now?, stable_now?);
    let key = ObjectRef::from_obj(model);
    let mut baselines = ctx.baselines.lock().unwrap_or_else(|p| p.into_inner());
    let entry = baselines
        .get(&key)
        .filter(|b| b.version == n && b.step_started == step_started);
    let baseline = match entry {
        Some(b) => b.clone(),
        None => {
            // The window starts at the first scrape of this step.
            let b = Baseline {
                version: n,
                step_started,
                taken_at: obs.now.max(step_started),
                canary: canary_now,
                stable: stable_now,
                gateway: gateway_now,
            };
            baselines.insert(key, b);
            return None;
        }
    };
    Some(observe::canary_metrics(
        n,
        champion,
        &baseline,
        (&canary_now, &stable_now, gateway_now.as_ref()),
        obs.now,
    ))
}

/// Every ready gateway replica's per-backend counters, summed; `None` when
/// there is none or any did not answer (the analysis then uses the model
/// servers' own counters alone).
async fn scrape_gateway(
    ctx: &Context,
    replicas: &[String],
) -> Option<crate::api::scrape::GatewayCounters> {
    if replicas.is_empty() {
        return None;
    }
    let scrapes = replicas.iter().map(|base| async move {
        let url = format!("{base}/metrics");
        match ctx.http.get(&url).send().await {
            Ok(answer) if answer.status().is_success() => Some(
                crate::api::scrape::GatewayCounters::from_metrics(&answer.text().await.ok()?),
            ),
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
    let mut total = crate::api::scrape::GatewayCounters::default();
    for counters in futures::future::join_all(scrapes).await {
        total.merge(&counters?);
    }
    Some(total)
}

async fn apply_decision(
    model: &Model,
    ctx: &Context,
    versions: &[ModelVersion],
    decision: &Decision,
) -> Result<(), OperatorError> {
    let name = model.name_any();
    let ns = model.namespace().unwrap_or_default();
    let mut statuses: HashMap<u32, (ModelVersion, ModelVersionStatus)> = HashMap::new();
    let mut touched: BTreeSet<u32> = BTreeSet::new();
    for v in versions {
        let n = v.spec.version;
        let status = match &v.status {
            Some(s) => s.clone(),
            None => {
                // The write of its first status failed after the version was
                // created (the create is not repeated): write it now, or the
                // version would never learn where its artifact and gate
                // report are, and wait for them forever.
                touched.insert(n);
                children::initial_version_status(
                    children::artifact_uri(model, n, &ctx.settings)?,
                    names::training_job(&name, n),
                )
            }
        };
        statuses.insert(n, (v.clone(), status));
    }
    let now = ctx.clock.now();
    for action in &decision.actions {
        match action {
            Action::StartTraining {
                version,
                trigger,
                reason,
                config_hash,
            } => {
                let n = *version;
                let mv = children::model_version(
                    model,
                    n,
                    *trigger,
                    reason,
                    config_hash,
                    decision.status.data_digest.clone(),
                )?;
                apply::create_once(&ctx.client, &mv).await?;
                let artifact = children::artifact_uri(model, n, &ctx.settings)?;
                let status =
                    children::initial_version_status(artifact, names::training_job(&name, n));
                statuses.insert(n, (mv, status));
                touched.insert(n);
                ctx.telemetry.training_started(*trigger);
                info!(version = %version_name(n), ?trigger, %reason, "training started");
            }
            Action::SetVersionPhase {
                version,
                phase,
                reason,
            } => {
                if let Some((_, s)) = statuses.get_mut(version) {
                    s.phase = *phase;
                    s.message = Some(reason.clone());
                    match phase {
                        VersionPhase::Champion => s.champion_since = Some(now),
                        VersionPhase::Superseded | VersionPhase::RolledBack
                            if s.champion_since.is_some() && s.champion_until.is_none() =>
                        {
                            s.champion_until = Some(now)
                        }
                        _ => {}
                    }
                    touched.insert(*version);
                }
            }
            Action::RecordGate { version, gate } => {
                if let Some((_, s)) = statuses.get_mut(version) {
                    s.gate = Some(gate.clone());
                    touched.insert(*version);
                }
            }
            Action::RecordRollout { version, rollout } => {
                if let Some((_, s)) = statuses.get_mut(version) {
                    s.rollout = Some(rollout.clone());
                    touched.insert(*version);
                }
            }
            Action::DeleteVersion { version, .. } => {
                let n = *version;
                apply::delete::<Job>(&ctx.client, &ns, &names::training_job(&name, n)).await?;
                apply::delete::<Deployment>(&ctx.client, &ns, &names::serving(&name, n)).await?;
                apply::delete::<Service>(&ctx.client, &ns, &names::serving(&name, n)).await?;
                apply::delete::<ModelVersion>(&ctx.client, &ns, &names::version_object(&name, n))
                    .await?;
                statuses.remove(&n);
                touched.remove(&n);
            }
            Action::RecordEvent {
                kind,
                reason,
                message,
            } => {
                let message = match &ctx.dashboard_url {
                    Some(base) => apply::with_link(
                        message,
                        &crate::api::links::absolute(
                            base,
                            &crate::api::links::model_path(&ns, &name),
                        ),
                    ),
                    None => message.clone(),
                };
                apply::event(&ctx.recorder, model, *kind, reason, "Decide", &message).await?;
            }
            // Serving objects and traffic follow the status (ensure_children).
            Action::CreateCanary { .. }
            | Action::SetTraffic { .. }
            | Action::Promote { .. }
            | Action::Rollback { .. } => {}
        }
    }
    for n in touched {
        if let Some((mv, status)) = statuses.get(&n)
            && mv.status.as_ref() != Some(status)
        {
            apply::write_status(&ctx.client, mv, status).await?;
        }
    }
    Ok(())
}

/// The versions that must have a model server: the champion, the canary
/// and every version with traffic.
pub fn serving_set(status: &ModelStatus) -> BTreeSet<u32> {
    let mut set: BTreeSet<u32> = status
        .traffic
        .iter()
        .filter_map(|t| version_number(&t.version))
        .collect();
    set.extend(status.champion.as_deref().and_then(version_number));
    set.extend(
        status
            .canary
            .as_ref()
            .and_then(|c| version_number(&c.version)),
    );
    set
}

/// Children follow the status declaratively, so a restart at any point
/// converges: the running training has its Job, serving versions have
/// Deployment + Service, others have none, and a serving Model has a gateway.
async fn ensure_children(
    model: &Model,
    ctx: &Context,
    status: &ModelStatus,
    versions: &[ModelVersion],
    jobs: &[&Job],
    deployments: &[&Deployment],
) -> Result<(), OperatorError> {
    let name = model.name_any();
    let ns = model.namespace().unwrap_or_default();
    let artifact_of = |n: u32| -> Result<String, OperatorError> {
        let recorded = versions
            .iter()
            .find(|v| v.spec.version == n)
            .and_then(|v| v.status.as_ref()?.artifact.as_ref().map(|a| a.uri.clone()));
        match recorded {
            Some(uri) => Ok(uri),
            None => children::artifact_uri(model, n, &ctx.settings),
        }
    };

    if let Some(n) = status
        .training
        .as_ref()
        .and_then(|t| version_number(&t.version))
    {
        let job_name = names::training_job(&name, n);
        if !jobs
            .iter()
            .any(|j| j.metadata.name.as_deref() == Some(job_name.as_str()))
        {
            let champion = match status.champion.as_deref().and_then(version_number) {
                Some(c) => Some(artifact_of(c)?),
                None => None,
            };
            let job = children::training_job(model, n, champion.as_deref(), &ctx.settings)?;
            apply::create_once(&ctx.client, &job).await?;
        }
    }

    // Before any server or gateway pod starts: the Model's NetworkPolicies.
    for policy in super::network_policy::network_policy_objects(model, &ctx.settings)? {
        apply::apply_dynamic(&ctx.client, policy, &ctx.routes_applied).await?;
    }
    let serving = serving_set(status);
    let all_services = ctx.stores.services.of(&ns, &name);
    let services = borrowed(&all_services);
    for n in &serving {
        let pair = children::serving(model, *n, &artifact_of(*n)?, &ctx.settings)?;
        apply_pair(ctx, pair, deployments, &services).await?;
    }
    let role = |o: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
        o.labels
            .as_ref()
            .and_then(|l| l.get(ROLE_LABEL))
            .map(String::as_str)
            == Some(names::ROLE_SERVING)
    };
    for d in deployments.iter().filter(|d| role(&d.metadata)) {
        let Some(dn) = d.metadata.name.as_deref() else {
            continue;
        };
        if names::serving_version(&name, dn).is_some_and(|n| !serving.contains(&n)) {
            apply::delete::<Deployment>(&ctx.client, &ns, dn).await?;
        }
    }
    for s in services.iter().filter(|s| role(&s.metadata)) {
        let Some(sn) = s.metadata.name.as_deref() else {
            continue;
        };
        if names::serving_version(&name, sn).is_some_and(|n| !serving.contains(&n)) {
            apply::delete::<Service>(&ctx.client, &ns, sn).await?;
        }
    }

    if !serving.is_empty() {
        let pair = children::gateway(model, &ctx.settings)?;
        apply_pair(ctx, pair, deployments, &services).await?;
        // An HTTPRoute attaches to a Gateway: without one configured there
        // is nothing to write (and no permission to write it).
        if ctx.settings.http_route_parent.is_some()
            && ctx.gateway_api.served(&ctx.client).await
            && let Some(route) = children::http_route(model, &status.traffic, &ctx.settings)?
        {
            apply::apply_dynamic(&ctx.client, route, &ctx.routes_applied).await?;
        }
    }
    Ok(())
}

/// Applies a Deployment and its Service against their live copies.
async fn apply_pair(
    ctx: &Context,
    (deployment, service): (Deployment, Service),
    deployments: &[&Deployment],
    services: &[&Service],
) -> Result<(), OperatorError> {
    let live_d = deployments
        .iter()
        .find(|d| d.metadata.name == deployment.metadata.name)
        .copied();
    let live_s = services
        .iter()
        .find(|s| s.metadata.name == service.metadata.name)
        .copied();
    apply::apply_child(&ctx.client, deployment, live_d).await?;
    apply::apply_child(&ctx.client, service, live_s).await?;
    Ok(())
}
