//! One reconcile of one Model: observe → `policy::decide` → act → status →
//! children. This file is the orchestration: reading is [`super::observe`]
//! and [`super::scrape`], carrying out actions [`super::act`], which
//! children exist [`super::desired`], writing [`super::apply`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::runtime::controller::Action as Requeue;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::{Span, field, instrument, warn};

use crate::api::names;
use crate::api::{ConditionStatus, Model, ModelSpec, ModelStatus, ModelVersion};
use crate::policy::conditions::{self, set_condition};
use crate::policy::{EventKind, Observations, decide};
use crate::registry::{Availability, RegistryWriter};

use super::act;
use super::apply;
use super::audit;
use super::desired::{self, Kept};
use super::error::OperatorError;
use super::observe;

pub use super::context::Context;

/// Longest real wait between two reconciles of a Model.
const MAX_REQUEUE: Duration = Duration::from_secs(300);
/// Real wait between reconciles while a canary collects evidence.
const CANARY_POLL: Duration = Duration::from_secs(5);

/// The kube-runtime entry point: reconciles one Model and records the
/// outcome. Its span carries the Model, the version it works on and a trace
/// id; a failure is logged once, inside it, with its whole cause.
#[instrument(
    name = "reconcile",
    skip_all,
    fields(model = %model_key(&model), version = field::Empty, trace_id = field::Empty)
)]
pub async fn reconcile(model: Arc<Model>, ctx: Arc<Context>) -> Result<Requeue, OperatorError> {
    let span = Span::current();
    span.record("trace_id", field::display(uuid::Uuid::new_v4().simple()));
    if let Some(version) = model.status.as_ref().and_then(focus_version) {
        span.record("version", version);
    }
    let started = Instant::now();
    let result = reconcile_model(&model, &ctx).await;
    ctx.telemetry
        .observe_reconcile(started.elapsed(), result.as_ref().err());
    if let Err(e) = &result {
        // The one log line of a failure: the condition and Event below may
        // themselves be refused (RBAC), and then the log is all that is left.
        warn!(error = %e.chain(), reason = e.reason(), "reconcile failed");
        report_error(&model, &ctx, e).await;
    }
    result
}

/// `namespace/name` of a Model, as its logs and metrics name it.
fn model_key(model: &Model) -> String {
    format!(
        "{}/{}",
        model.namespace().unwrap_or_default(),
        model.name_any()
    )
}

/// The version a reconcile works on, for its span: the one training, else
/// the canary, else the candidate, else the champion.
pub fn focus_version(status: &ModelStatus) -> Option<String> {
    status
        .training
        .as_ref()
        .map(|t| t.version.clone())
        .or_else(|| status.canary.as_ref().map(|c| c.version.clone()))
        .or_else(|| status.candidate.clone())
        .or_else(|| status.champion.clone())
}

/// Backoff after a failed reconcile (logged by [`reconcile`]): permanent
/// errors wait for a change to the Model (a watch event), transient ones
/// retry soon.
pub fn error_policy(_model: Arc<Model>, error: &OperatorError, _ctx: Arc<Context>) -> Requeue {
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
    let message = e.chain().to_string();
    let changed = set_condition(
        &mut status,
        &obs,
        conditions::RECONCILED,
        ConditionStatus::False,
        e.reason(),
        &message,
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
        &message,
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
    let jobs = ctx.stores.jobs.of(&ns, &name);
    let deployments = ctx.stores.deployments.of(&ns, &name);
    let pods = ctx.stores.pods.of(&ns, &name);
    let observed = observe::observations(
        model,
        ctx,
        &name,
        &versions,
        &borrowed(&jobs),
        &borrowed(&pods),
        &borrowed(&deployments),
    )
    .await?;
    let decision = decide(model, &versions, &observed.observations);
    if let Some(version) = focus_version(&decision.status) {
        Span::current().record("version", version);
    }
    tracing::debug!(
        resource_version = rv.as_deref().unwrap_or_default(),
        versions = ?versions
            .iter()
            .map(|v| (v.spec.version, v.status.as_ref().map(|s| s.phase)))
            .collect::<Vec<_>>(),
        jobs = ?observed.observations.jobs,
        gate_results = observed.observations.gate_results.len(),
        actions = decision.actions.len(),
        "decided"
    );
    let starts = observed
        .training
        .iter()
        .map(|(n, facts)| (*n, facts.start.clone()))
        .collect();
    let versions = act::act(model, ctx, &versions, &decision, &starts).await?;

    let mut status = decision.status.clone();
    set_condition(
        &mut status,
        &observed.observations,
        conditions::RECONCILED,
        ConditionStatus::True,
        "Reconciled",
        "children and status match the latest decision",
    );
    if let Some(registry) = &ctx.registry {
        registry_condition(model, ctx, registry, &mut status, &observed.observations).await?;
    }
    let notifications =
        super::notify::prepare(model, ctx, &decision, &mut status, &observed.observations).await?;
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
        let facts = audit::Observed {
            gate_reports: &observed.gate_reports,
            training: &observed.training,
            drift: &observed.observations.drift,
            actor: observed.actor.as_deref(),
        };
        let now = observed.observations.now;
        for record in audit::records(model, &versions, &decision, &facts, now) {
            if let Err(e) = registry.submit(record) {
                warn!(error = %e, "registry record dropped");
            }
        }
    }
    // Like the records: only once the decision is in the status; a decision
    // made again re-sends the same ids, which receivers deduplicate.
    super::notify::send(model, ctx, notifications, observed.observations.now);
    // Children after the status: a version the status no longer serves is
    // removed only once the gateway can read that it gets no traffic.
    apply_children(model, ctx, &status, &versions).await?;
    if let Some(annotation) = &observed.acknowledged {
        apply::remove_annotation(&ctx.client, model, annotation).await?;
        if observed.actor.is_some() {
            apply::remove_annotation(&ctx.client, model, names::REQUESTED_BY_ANNOTATION).await?;
        }
    }
    ctx.telemetry.set_phase(&key, status.phase);
    let rolled_back = decision
        .actions
        .iter()
        .any(|a| matches!(a, crate::policy::Action::Rollback { .. }))
        .then(|| observed.acknowledged.is_some());
    ctx.telemetry
        .observe_status(&key, model.status.as_ref(), &status, rolled_back);
    ctx.telemetry.set_canary(
        &key,
        status
            .canary
            .as_ref()
            .and_then(|c| Some((c.version.as_str(), c.analyses.last()?))),
    );
    let decided = decision.requeue_after.map(|d| ctx.clock.real(d));
    Ok(Requeue::requeue(next_wait(
        decided,
        &status,
        &model.spec,
        ctx.drift_poll,
    )))
}

fn borrowed<K>(items: &[Arc<K>]) -> Vec<&K> {
    items.iter().map(Arc::as_ref).collect()
}

/// Real time until the next reconcile when nothing else wakes the Model:
/// what the decision asked for, at most [`MAX_REQUEUE`]; [`CANARY_POLL`]
/// while a canary collects evidence; the drift poll while a champion is
/// watched for drift, an estimated accuracy drop, new data or new labels.
pub fn next_wait(
    decided: Option<Duration>,
    status: &ModelStatus,
    spec: &ModelSpec,
    drift_poll: Duration,
) -> Duration {
    let mut wait = decided.map_or(MAX_REQUEUE, |d| d.min(MAX_REQUEUE));
    if status.canary.is_some() {
        wait = wait.min(CANARY_POLL);
    }
    let watches = spec
        .retrain
        .as_ref()
        .is_some_and(|r| r.on_drift || r.on_new_data || r.on_estimated_drop.is_some());
    // Label files arrive in the store without any event to wake the Model.
    let labels = spec.task == crate::api::Task::Classification && spec.data.include_feedback;
    if (watches || labels) && status.champion.is_some() {
        wait = wait.min(drift_poll);
    }
    wait.max(Duration::from_millis(100))
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
    let (value, reason, message) = match availability {
        Availability::Available => (
            ConditionStatus::True,
            "RegistryReachable",
            format!("records reach the registry at {}", registry.url()),
        ),
        // Opening the database at start is not an outage: no Warning.
        Availability::Connecting => (
            ConditionStatus::Unknown,
            "RegistryConnecting",
            format!(
                "connecting to the registry at {}; records wait in memory",
                registry.url()
            ),
        ),
        Availability::Unavailable { .. } => (
            ConditionStatus::False,
            "RegistryUnreachable",
            format!(
                "the registry at {} is {availability}; records wait in memory and are retried",
                registry.url()
            ),
        ),
    };
    let flipped = set_condition(
        status,
        obs,
        conditions::REGISTRY_AVAILABLE,
        value,
        reason,
        &message,
    );
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

/// Applies the children the status calls for ([`desired::children`]), then
/// deletes every child carrying the Model's label that none of them is.
async fn apply_children(
    model: &Model,
    ctx: &Context,
    status: &ModelStatus,
    versions: &[ModelVersion],
) -> Result<(), OperatorError> {
    let name = model.name_any();
    let ns = model.namespace().unwrap_or_default();
    let desired = desired::children(model, status, versions, &ctx.settings)?;
    let jobs = ctx.stores.jobs.of(&ns, &name);
    let deployments = ctx.stores.deployments.of(&ns, &name);
    let services = ctx.stores.services.of(&ns, &name);
    if let Some(job) = &desired.training_job
        && named(&jobs, &job.metadata.name).is_none()
    {
        apply::create_once(&ctx.client, job).await?;
    }
    let mut kept = Kept::default();
    kept.keep_all(&desired);
    // Before any server or gateway pod starts: the Model's NetworkPolicies
    // (no cache holds them, so the label sweep below never meets them).
    for policy in super::network_policy::network_policy_objects(model, &ctx.settings)? {
        apply::apply_dynamic(&ctx.client, policy, &ctx.routes_applied).await?;
    }
    for (deployment, service) in desired.serving {
        let live = named(&deployments, &deployment.metadata.name);
        apply::apply_child(&ctx.client, &ctx.applied, deployment, live).await?;
        let live = named(&services, &service.metadata.name);
        apply::apply_child(&ctx.client, &ctx.applied, service, live).await?;
    }
    // The HTTPRoute has no cache to find an orphan in, and the chart grants
    // no `delete` on it: it goes with its Model (owner reference), and a
    // Model that has traffic never loses it (a rollback restores the champion).
    if let Some(route) = desired.http_route
        && ctx.gateway_api.served(&ctx.client).await
    {
        apply::apply_dynamic(&ctx.client, route, &ctx.routes_applied).await?;
    }
    delete_orphans(ctx, &kept, &jobs).await?;
    delete_orphans(ctx, &kept, &deployments).await?;
    delete_orphans(ctx, &kept, &services).await?;
    Ok(())
}

/// The cached child named `name`.
fn named<'a, K: Resource>(children: &'a [Arc<K>], name: &Option<String>) -> Option<&'a K> {
    children
        .iter()
        .map(Arc::as_ref)
        .find(|c| c.meta().name == *name)
}

/// Deletes the children among `labelled` that `kept` does not name.
async fn delete_orphans<K>(
    ctx: &Context,
    kept: &Kept,
    labelled: &[Arc<K>],
) -> Result<(), OperatorError>
where
    K: Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + Serialize
        + DeserializeOwned,
{
    for orphan in kept.orphans(labelled) {
        let ns = orphan.namespace().unwrap_or_default();
        apply::delete::<K>(&ctx.client, &ns, &orphan.name_any()).await?;
        ctx.applied.forget(orphan);
        tracing::info!(kind = %K::kind(&()), child = %orphan.name_any(), "deleted a child no status calls for");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::fixtures::{canary, training_run};

    #[test]
    fn a_reconcile_is_about_the_version_in_motion() {
        let mut status = ModelStatus {
            champion: Some("v1".into()),
            ..Default::default()
        };
        assert_eq!(focus_version(&status).as_deref(), Some("v1"));
        status.candidate = Some("v2".into());
        assert_eq!(focus_version(&status).as_deref(), Some("v2"));
        status.canary = Some(canary(3));
        assert_eq!(focus_version(&status).as_deref(), Some("v3"));
        status.training = Some(training_run(4));
        assert_eq!(focus_version(&status).as_deref(), Some("v4"));
        assert_eq!(focus_version(&ModelStatus::default()), None);
    }

    #[test]
    fn a_model_is_looked_at_again_as_soon_as_anything_it_waits_for_can_change() {
        let mut spec = crate::operator::fixtures::wine().spec;
        spec.retrain = None;
        spec.data.include_feedback = false;
        let idle = ModelStatus::default();
        let poll = Duration::from_millis(500);
        assert_eq!(next_wait(None, &idle, &spec, poll), MAX_REQUEUE);
        assert_eq!(
            next_wait(Some(Duration::from_secs(3600)), &idle, &spec, poll),
            MAX_REQUEUE,
            "never longer than the longest wait"
        );
        assert_eq!(
            next_wait(Some(Duration::ZERO), &idle, &spec, poll),
            Duration::from_millis(100),
            "never a busy loop"
        );
        let in_canary = ModelStatus {
            champion: Some("v1".into()),
            canary: Some(canary(2)),
            ..Default::default()
        };
        assert_eq!(next_wait(None, &in_canary, &spec, poll), CANARY_POLL);
        spec.retrain = Some(crate::api::RetrainSpec {
            on_drift: true,
            ..Default::default()
        });
        assert_eq!(next_wait(None, &in_canary, &spec, poll), poll);
        assert_eq!(
            next_wait(None, &idle, &spec, poll),
            MAX_REQUEUE,
            "no champion, no drift to watch"
        );
        // An estimated-drop trigger watches the same windows.
        spec.retrain = Some(crate::api::RetrainSpec {
            on_estimated_drop: Some(crate::api::EstimatedDropTrigger {
                metric: Default::default(),
                max_drop: 0.03,
                tolerance: 0.05,
                min_labels: 100,
            }),
            ..Default::default()
        });
        let serving = ModelStatus {
            champion: Some("v1".into()),
            ..Default::default()
        };
        assert_eq!(next_wait(None, &serving, &spec, poll), poll);
        // A classifier keeping feedback is watched for label files.
        spec.retrain = None;
        assert_eq!(next_wait(None, &serving, &spec, poll), MAX_REQUEUE);
        spec.data.include_feedback = true;
        assert_eq!(next_wait(None, &serving, &spec, poll), poll);
        assert_eq!(next_wait(None, &idle, &spec, poll), MAX_REQUEUE);
    }

    /// Every request answered as an API server refusing the operator's
    /// ServiceAccount.
    fn refusing_client() -> kube::Client {
        let refuse = tower::service_fn(|_: http::Request<kube::client::Body>| async {
            let status = serde_json::json!({
                "kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 403,
                "reason": "Forbidden",
                "message": "models.driftline.dev \"wine-quality\" is forbidden: User \"system:serviceaccount:ml:driftline\" cannot patch resource \"models/status\"",
            });
            http::Response::builder()
                .status(403)
                .header("content-type", "application/json")
                .body(kube::client::Body::from(
                    serde_json::to_vec(&status).expect("JSON"),
                ))
        });
        kube::Client::new(refuse, "ml")
    }

    fn context(client: kube::Client, versions: &[ModelVersion]) -> Context {
        use crate::operator::index::Children;
        use kube::runtime::{reflector, watcher};
        fn empty<K>() -> Children<K>
        where
            K: Resource<DynamicType = ()> + Clone + 'static,
        {
            Children::new(reflector::store::<K>().0).0
        }
        let (store, mut writer) = reflector::store::<ModelVersion>();
        let (cached, index) = Children::new(store);
        for v in versions {
            let event = watcher::Event::Apply(v.clone());
            index.apply(&event);
            writer.apply_watcher_event(&event);
        }
        Context {
            recorder: kube::runtime::events::Recorder::new(
                client.clone(),
                kube::runtime::events::Reporter {
                    controller: names::MANAGER.into(),
                    instance: None,
                },
            ),
            client,
            settings: crate::operator::fixtures::settings(),
            clock: Arc::new(crate::operator::Clock::default()),
            stores: crate::operator::context::Stores {
                versions: cached,
                jobs: empty(),
                deployments: empty(),
                services: empty(),
                pods: empty(),
            },
            http: {
                let _ = rustls::crypto::ring::default_provider().install_default();
                reqwest::Client::new()
            },
            telemetry: Arc::new(crate::operator::Telemetry::new()),
            baselines: Default::default(),
            shadow_baselines: Default::default(),
            drift_windows: Default::default(),
            realised: Default::default(),
            stale: Default::default(),
            drift_poll: Duration::from_secs(1),
            registry: None,
            gateway_api: Default::default(),
            applied: Default::default(),
            routes_applied: Default::default(),
            notify: Default::default(),
            notifier: None,
            dashboard_url: None,
        }
    }

    /// The JSON log `driftline operator --log-json` writes, captured.
    #[derive(Clone, Default)]
    struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("log buffer").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_failed_reconcile_is_logged_once_with_its_model_version_and_whole_cause() {
        let log = Captured::default();
        let writer = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
            .with_writer(move || writer.clone())
            .json()
            .finish();
        let _installed = tracing::subscriber::set_default(subscriber);

        let mut model = crate::operator::fixtures::wine();
        model.spec.retrain = None;
        // No store to read labels from here: only the status write fails
        // (and so no annotation queue, which needs the feedback prefix).
        model.spec.data.include_feedback = false;
        model.spec.feedback = None;
        model.metadata.resource_version = Some("7".into());
        model.status = Some(ModelStatus {
            champion: Some("v1".into()),
            traffic: vec![crate::api::TrafficWeight {
                version: "v1".into(),
                weight: 100,
            }],
            next_version: 2,
            ..Default::default()
        });
        let mut v1 =
            crate::operator::fixtures::model_version(1, crate::api::VersionPhase::Champion);
        v1.spec.lineage.config_hash = crate::policy::config_hash(&model.spec);
        let ctx = Arc::new(context(refusing_client(), &[v1]));
        let result = reconcile(Arc::new(model), ctx).await;
        let error = result.expect_err("every write is refused");
        assert_eq!(error.reason(), "KubernetesApiError");

        let text = String::from_utf8(log.0.lock().expect("log").clone()).expect("UTF-8");
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("each line is JSON"))
            .collect();
        let failures: Vec<&serde_json::Value> = lines
            .iter()
            .filter(|l| l["fields"]["message"] == "reconcile failed")
            .collect();
        assert_eq!(failures.len(), 1, "logged once: {text}");
        let line = failures[0];
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["span"]["name"], "reconcile");
        assert_eq!(line["span"]["model"], "ml/wine-quality");
        assert_eq!(line["span"]["version"], "v1");
        let trace_id = line["span"]["trace_id"].as_str().expect("a trace id");
        assert!(
            trace_id.len() == 32 && trace_id.chars().all(|c| c.is_ascii_hexdigit()),
            "{trace_id}"
        );
        let cause = line["fields"]["error"].as_str().expect("the cause");
        assert!(
            cause.starts_with("write status of Model ml/wine-quality: "),
            "what was being done, then why: {cause}"
        );
        assert_eq!(
            cause.matches("cannot patch resource").count(),
            1,
            "the API server's words once: {cause}"
        );
        assert_eq!(
            text.matches("cannot patch resource").count(),
            1,
            "nowhere else in the log: {text}"
        );
    }
}
