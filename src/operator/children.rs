//! Building the objects the operator owns for a Model: pure functions of the
//! Model, the version and the operator's settings, tested from fixtures.
//! Applying them is `apply.rs`'s job.

use crate::api::routes;
use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvFromSource, EnvVar, HTTPGetAction, PodSpec, PodTemplateSpec,
    Probe, ResourceRequirements, SecretEnvSource, Service, ServicePort, ServiceSpec, Toleration,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Resource;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};

use crate::api::names::{self, MODEL_ENV, SERVE_PORT};
use crate::api::{
    ArtifactRef, ComputeResources, DriftSpec, Lineage, Model, ModelVersion, ModelVersionSpec,
    ModelVersionStatus, TrafficWeight, TrainingTrigger, VersionPhase, WarmStart, version_number,
};

use super::error::OperatorError;
use super::pod_security;

/// The operator's settings that shape its children.
#[derive(Debug, Clone)]
pub struct ChildSettings {
    /// Object-store root of every artifact (`s3://bucket/models`, or a local
    /// directory on the embedded cluster).
    pub artifact_root: String,
    /// Image of training Jobs, model servers and gateways when the Model names none.
    pub image: String,
    /// Secret whose keys become the environment of training and serving pods
    /// (object-store credentials such as `AWS_ACCESS_KEY_ID`); never logged.
    pub credentials_secret: Option<String>,
    /// ServiceAccount of gateway pods (they read their Model's status).
    pub gateway_service_account: Option<String>,
    /// The Gateway API `Gateway` (namespace, name) each Model's `HTTPRoute`
    /// attaches to, where the cluster serves the Gateway API.
    pub http_route_parent: Option<(String, String)>,
    /// Where training Jobs that request a GPU go when their Model names no
    /// nodeSelector or tolerations of its own.
    pub gpu_placement: GpuPlacement,
    /// Write each Model's NetworkPolicies, admitting the operator's pods (`None`: none).
    pub network_policies: Option<super::network_policy::NetworkPolicySettings>,
}

/// The cluster's GPU nodes: a nodeSelector and the tolerations of their
/// taints (`--gpu-placement '{"nodeSelector": {...}, "tolerations": [...]}'`).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GpuPlacement {
    #[serde(default)]
    pub node_selector: BTreeMap<String, String>,
    #[serde(default)]
    pub tolerations: Vec<Toleration>,
}

impl Default for ChildSettings {
    fn default() -> Self {
        Self {
            artifact_root: "/var/lib/driftline/artifacts".into(),
            image: format!("ghcr.io/driftline/driftline:{}", env!("CARGO_PKG_VERSION")),
            credentials_secret: None,
            gateway_service_account: None,
            http_route_parent: None,
            gpu_placement: GpuPlacement::default(),
            network_policies: None,
        }
    }
}

/// What a Model's children have in common.
struct Owner<'a> {
    name: &'a str,
    namespace: &'a str,
    reference: OwnerReference,
}

fn owner(model: &Model) -> Result<Owner<'_>, OperatorError> {
    let name = model
        .metadata
        .name
        .as_deref()
        .ok_or(OperatorError::Unnamed)?;
    let namespace = model
        .metadata
        .namespace
        .as_deref()
        .ok_or(OperatorError::Unnamed)?;
    let reference = model
        .controller_owner_ref(&())
        .ok_or(OperatorError::Unnamed)?;
    Ok(Owner {
        name,
        namespace,
        reference,
    })
}

fn labels(model: &str, role: &str, version: Option<u32>) -> BTreeMap<String, String> {
    let mut l = BTreeMap::from([
        (names::MODEL_LABEL.to_string(), model.to_string()),
        (names::ROLE_LABEL.to_string(), role.to_string()),
        (
            names::MANAGED_BY_LABEL.to_string(),
            names::MANAGER.to_string(),
        ),
    ]);
    if let Some(n) = version {
        l.insert(names::VERSION_LABEL.to_string(), n.to_string());
    }
    l
}

fn meta(o: &Owner, name: String, labels: BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(o.namespace.to_string()),
        labels: Some(labels),
        owner_references: Some(vec![o.reference.clone()]),
        ..Default::default()
    }
}

/// Metadata of `model`'s child `name` in `role`: its namespace, driftline's
/// labels and the Model as controlling owner.
pub(crate) fn child_meta(
    model: &Model,
    name: String,
    role: &str,
) -> Result<ObjectMeta, OperatorError> {
    let o = owner(model)?;
    Ok(meta(&o, name, labels(o.name, role, None)))
}

fn resources(r: Option<&ComputeResources>) -> Option<ResourceRequirements> {
    let r = r?;
    let mut limits = BTreeMap::new();
    let mut requests = BTreeMap::new();
    for (key, value) in [("cpu", &r.cpu), ("memory", &r.memory)] {
        if let Some(v) = value {
            limits.insert(key.to_string(), Quantity(v.clone()));
            requests.insert(key.to_string(), Quantity(v.clone()));
        }
    }
    if let Some(gpu) = r.gpu.filter(|g| *g > 0) {
        limits.insert("nvidia.com/gpu".into(), Quantity(gpu.to_string()));
    }
    Some(ResourceRequirements {
        limits: (!limits.is_empty()).then_some(limits),
        requests: (!requests.is_empty()).then_some(requests),
        ..Default::default()
    })
}

fn credentials(settings: &ChildSettings) -> Option<Vec<EnvFromSource>> {
    settings.credentials_secret.as_ref().map(|name| {
        vec![EnvFromSource {
            secret_ref: Some(SecretEnvSource {
                name: name.clone(),
                optional: Some(false),
            }),
            ..Default::default()
        }]
    })
}

fn driftline(args: &[&str]) -> Vec<String> {
    std::iter::once("driftline")
        .chain(args.iter().copied())
        .map(String::from)
        .collect()
}

/// The Model as the YAML a training pod reads from [`MODEL_ENV`]: the spec
/// at the time training started, which is the version's configuration.
pub fn model_yaml(model: &Model) -> Result<String, OperatorError> {
    let doc = serde_json::json!({
        "apiVersion": crate::api::API_VERSION,
        "kind": "Model",
        "metadata": {
            "name": model.metadata.name,
            "namespace": model.metadata.namespace,
        },
        "spec": model.spec,
    });
    serde_yaml::to_string(&doc)
        .map_err(|e| OperatorError::build("the Model YAML for the training Job")(e.into()))
}

/// Artifact directory of version `n`.
pub fn artifact_uri(
    model: &Model,
    n: u32,
    settings: &ChildSettings,
) -> Result<String, OperatorError> {
    let o = owner(model)?;
    Ok(names::artifact_uri(
        &settings.artifact_root,
        o.namespace,
        o.name,
        n,
    ))
}

/// Feedback prefix of the Model's servers when `data.includeFeedback` is on.
pub fn feedback_prefix(model: &Model, settings: &ChildSettings) -> Option<String> {
    let o = owner(model).ok()?;
    model
        .spec
        .data
        .include_feedback
        .then(|| names::feedback_prefix(&settings.artifact_root, o.namespace, o.name))
}

/// `ModelVersion` `<model>-v<n>` with its lineage, owned by the Model.
pub fn model_version(
    model: &Model,
    n: u32,
    trigger: TrainingTrigger,
    reason: &str,
    config_hash: &str,
    source_digest: Option<String>,
) -> Result<ModelVersion, OperatorError> {
    let o = owner(model)?;
    let mut v = ModelVersion::new(
        &names::version_object(o.name, n),
        ModelVersionSpec {
            model: o.name.to_string(),
            version: n,
            lineage: Lineage {
                trigger,
                reason: reason.to_string(),
                seed: model.spec.training.seed,
                config_hash: config_hash.to_string(),
                driftline_version: env!("CARGO_PKG_VERSION").to_string(),
                source_digest,
            },
        },
    );
    v.metadata = meta(
        &o,
        names::version_object(o.name, n),
        labels(o.name, names::ROLE_VERSION, Some(n)),
    );
    Ok(v)
}

/// The status a new version starts with: CheckingData (its data check Job
/// first) or Training, with its artifact's address.
pub fn initial_version_status(
    model: &Model,
    n: u32,
    phase: VersionPhase,
    settings: &ChildSettings,
) -> Result<ModelVersionStatus, OperatorError> {
    let o = owner(model)?;
    let job = names::training_job(o.name, n);
    let message = match phase {
        VersionPhase::CheckingData => format!(
            "data check Job {} created; training Job {job} follows if the data passes",
            names::data_check_job(o.name, n)
        ),
        _ => format!("training Job {job} created"),
    };
    Ok(ModelVersionStatus {
        phase,
        message: Some(message),
        artifact: Some(ArtifactRef {
            uri: artifact_uri(model, n, settings)?,
            ..Default::default()
        }),
        training: Some(crate::api::TrainingOutcome {
            job: Some(job),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// Data check Job `<model>-datacheck-<n>`: `driftline datacheck` reads the
/// window the run will train on (as of the run's start), compares it with
/// the champion's training statistics and leaves its report beside the
/// artifact. CPU only: no GPU request and no GPU placement, whatever the
/// training asks for; one retry, since unreadable data is a report, not a
/// crash.
pub fn data_check_job(
    model: &Model,
    n: u32,
    as_of: &str,
    champion_artifact: Option<&str>,
    settings: &ChildSettings,
) -> Result<Job, OperatorError> {
    let o = owner(model)?;
    let t = &model.spec.training;
    let artifact = names::artifact_uri(&settings.artifact_root, o.namespace, o.name, n);
    let report = names::data_check_report_uri(&artifact);
    let config = format!("env:{MODEL_ENV}");
    let mut args = vec![
        "datacheck",
        "--config",
        &config,
        "--as-of",
        as_of,
        "--report",
        &report,
        "--report-only",
    ];
    if let Some(champion) = champion_artifact {
        args.extend(["--champion", champion]);
    }
    let cpu_only = t.resources.as_ref().map(|r| ComputeResources {
        gpu: None,
        ..r.clone()
    });
    let l = labels(o.name, names::ROLE_DATA_CHECK, Some(n));
    Ok(Job {
        metadata: meta(&o, names::data_check_job(o.name, n), l.clone()),
        spec: Some(JobSpec {
            backoff_limit: Some(1),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(l),
                    ..Default::default()
                }),
                spec: Some(pod_security::restricted(PodSpec {
                    restart_policy: Some("Never".into()),
                    containers: vec![Container {
                        name: "datacheck".into(),
                        image: Some(t.image.clone().unwrap_or_else(|| settings.image.clone())),
                        command: Some(driftline(&args)),
                        env: Some(vec![EnvVar {
                            name: MODEL_ENV.into(),
                            value: Some(model_yaml(model)?),
                            ..Default::default()
                        }]),
                        env_from: credentials(settings),
                        resources: resources(cpu_only.as_ref()),
                        ..Default::default()
                    }],
                    automount_service_account_token: Some(false),
                    ..Default::default()
                })),
            },
            ..Default::default()
        }),
        status: None,
    })
}

/// Training Job `<model>-train-<n>`: `driftline train` writes the artifact,
/// then (with a gate) `driftline evaluate` leaves `gate.json` beside it,
/// compared with the champion's artifact when there is one. The pod needs no
/// Kubernetes API access.
pub fn training_job(
    model: &Model,
    n: u32,
    as_of: &str,
    champion_artifact: Option<&str>,
    settings: &ChildSettings,
) -> Result<Job, OperatorError> {
    let o = owner(model)?;
    let t = &model.spec.training;
    let artifact = names::artifact_uri(&settings.artifact_root, o.namespace, o.name, n);
    let config = format!("env:{MODEL_ENV}");
    // `--resume`: a retried pod keeps the artifact its first attempt wrote;
    // `--as-of`: the window its data check read.
    let mut train = vec![
        "train", "--config", &config, "--out", &artifact, "--resume", "--as-of", as_of,
    ];
    let feedback = feedback_prefix(model, settings);
    if let Some(prefix) = &feedback {
        train.extend(["--feedback", prefix.as_str()]);
    }
    // The trainer decides whether the champion's weights fit; it needs to know where they are.
    if let (WarmStart::Champion, Some(champion)) = (t.warm_start, champion_artifact) {
        train.extend(["--warm-start", champion]);
    }
    // A streamed run keeps its buffers within the pod's memory request.
    if let Some(memory) = t.resources.as_ref().and_then(|r| r.memory.as_deref()) {
        train.extend(["--memory-bound", memory]);
    }
    let env = vec![EnvVar {
        name: MODEL_ENV.into(),
        value: Some(model_yaml(model)?),
        ..Default::default()
    }];
    let image = t.image.clone().unwrap_or_else(|| settings.image.clone());
    let container = |name: &str, command: Vec<String>| Container {
        name: name.into(),
        image: Some(image.clone()),
        command: Some(command),
        env: Some(env.clone()),
        env_from: credentials(settings),
        resources: resources(t.resources.as_ref()),
        ..Default::default()
    };
    let (init, main) = if model.spec.gate.is_some() {
        let report = names::gate_report_uri(&artifact);
        let mut evaluate = vec![
            "evaluate",
            "--config",
            &config,
            "--candidate",
            &artifact,
            "--report",
            &report,
            "--report-only",
        ];
        if let Some(champion) = champion_artifact {
            evaluate.extend(["--champion", champion]);
        }
        (
            Some(vec![container("train", driftline(&train))]),
            container("evaluate", driftline(&evaluate)),
        )
    } else {
        (None, container("train", driftline(&train)))
    };
    let deadline = t
        .deadline
        .as_ref()
        .map(|d| i64::try_from(d.get().as_secs()).unwrap_or(i64::MAX));
    // The Model's own placement wins; a GPU Job without one gets the cluster's GPU nodes.
    let wants_gpu = t
        .resources
        .as_ref()
        .and_then(|r| r.gpu)
        .is_some_and(|g| g > 0);
    let gpu = &settings.gpu_placement;
    let node_selector = match (t.node_selector.is_empty(), wants_gpu) {
        (true, true) => &gpu.node_selector,
        _ => &t.node_selector,
    };
    let tolerations = match (t.tolerations.is_empty(), wants_gpu) {
        (true, true) => &gpu.tolerations,
        _ => &t.tolerations,
    };
    let l = labels(o.name, names::ROLE_TRAINING, Some(n));
    Ok(Job {
        metadata: meta(&o, names::training_job(o.name, n), l.clone()),
        spec: Some(JobSpec {
            backoff_limit: Some(t.retries as i32),
            active_deadline_seconds: deadline,
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(l),
                    ..Default::default()
                }),
                spec: Some(pod_security::restricted(PodSpec {
                    restart_policy: Some("Never".into()),
                    init_containers: init,
                    containers: vec![main],
                    node_selector: (!node_selector.is_empty()).then(|| node_selector.clone()),
                    tolerations: (!tolerations.is_empty()).then(|| tolerations.clone()),
                    automount_service_account_token: Some(false),
                    ..Default::default()
                })),
            },
            ..Default::default()
        }),
        status: None,
    })
}

/// `driftline serve` flags for the Model's drift settings: the server's
/// window verdict then follows the same spec as the decision core.
pub fn drift_flags(d: &DriftSpec) -> Vec<String> {
    let mut flags = vec![
        "--drift-statistic".to_string(),
        d.statistic.to_string(),
        "--drift-threshold".into(),
        d.threshold.to_string(),
        "--drift-false-alarm-rate".into(),
        d.false_alarm_rate.to_string(),
        "--drift-control".into(),
        d.control.to_string(),
        "--drift-trigger".into(),
        d.trigger.to_string(),
        "--drift-window".into(),
        d.window.to_string(),
        "--drifted-share".into(),
        d.drifted_share.to_string(),
    ];
    for (name, o) in &d.features {
        let value = if o.ignore {
            "ignore".to_string()
        } else if let Some(t) = o.threshold {
            t.to_string()
        } else {
            continue;
        };
        flags.push("--drift-feature".into());
        flags.push(format!("{name}={value}"));
    }
    flags
}

fn http_probe(path: &str) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::Int(i32::from(SERVE_PORT)),
            ..Default::default()
        }),
        period_seconds: Some(2),
        failure_threshold: Some(3),
        ..Default::default()
    }
}

fn container_ports() -> Option<Vec<ContainerPort>> {
    Some(vec![ContainerPort {
        name: Some("http".into()),
        container_port: i32::from(SERVE_PORT),
        ..Default::default()
    }])
}

fn deployment(
    o: &Owner,
    name: String,
    l: BTreeMap<String, String>,
    replicas: u32,
    pod: PodSpec,
) -> Deployment {
    Deployment {
        metadata: meta(o, name, l.clone()),
        spec: Some(DeploymentSpec {
            replicas: Some(replicas as i32),
            selector: LabelSelector {
                match_labels: Some(l.clone()),
                ..Default::default()
            },
            // New pods are ready before old ones go: no 503s while a version rolls.
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                ..Default::default()
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(l),
                    ..Default::default()
                }),
                spec: Some(pod),
            },
            ..Default::default()
        }),
        status: None,
    }
}

fn service(o: &Owner, name: String, l: BTreeMap<String, String>) -> Service {
    Service {
        metadata: meta(o, name, l.clone()),
        spec: Some(ServiceSpec {
            selector: Some(l),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: i32::from(SERVE_PORT),
                target_port: Some(IntOrString::Int(i32::from(SERVE_PORT))),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    }
}

/// `driftline serve`'s annotation flags from `spec.feedback.annotation`:
/// each of the version's replicas queues its share of `perDay`.
fn annotation_flags(model: &Model) -> Vec<String> {
    let Some(a) = model.spec.annotation() else {
        return Vec::new();
    };
    vec![
        "--annotation-per-day".into(),
        a.per_replica(model.spec.serving.replicas).to_string(),
        "--annotation-uncertainty-share".into(),
        a.uncertainty_share.to_string(),
        "--annotation-drift-share".into(),
        a.drift_share.to_string(),
    ]
}

/// The gateway's flags for the annotation queue's disagreement lane: the
/// Model's feedback prefix and the disagreement share of `perDay` (one
/// gateway replica), where both exist.
fn disagreement_queue_flags(model: &Model, settings: &ChildSettings) -> Vec<String> {
    let annotation = model.spec.annotation();
    let (Some(prefix), Some(a)) = (feedback_prefix(model, settings), annotation) else {
        return Vec::new();
    };
    let per_day = a.budget(crate::api::QueueReason::Disagreement).ceil() as u32;
    if per_day == 0 {
        return Vec::new();
    }
    vec![
        "--annotation-queue".into(),
        prefix,
        "--annotation-per-day".into(),
        per_day.to_string(),
    ]
}

/// Deployment and Service `<model>-v<n>` running `driftline serve` on the
/// version's artifact, with the Model's drift settings and feedback prefix.
pub fn serving(
    model: &Model,
    n: u32,
    artifact: &str,
    settings: &ChildSettings,
) -> Result<(Deployment, Service), OperatorError> {
    let o = owner(model)?;
    let s = &model.spec.serving;
    let name = names::serving(o.name, n);
    let version = crate::api::version_name(n);
    let port = SERVE_PORT.to_string();
    let mut args = driftline(&[
        "serve",
        "--artifact",
        artifact,
        "--name",
        o.name,
        "--model-version",
        &version,
        "--port",
        &port,
    ]);
    args.extend(drift_flags(&model.spec.drift));
    if let Some(prefix) = feedback_prefix(model, settings) {
        args.extend(["--feedback".to_string(), prefix]);
        args.extend(annotation_flags(model));
    }
    let pod = pod_security::restricted(PodSpec {
        containers: vec![Container {
            name: "serve".into(),
            image: Some(s.image.clone().unwrap_or_else(|| settings.image.clone())),
            command: Some(args),
            env_from: credentials(settings),
            resources: resources(s.resources.as_ref()),
            ports: container_ports(),
            readiness_probe: Some(http_probe(routes::READY)),
            ..Default::default()
        }],
        automount_service_account_token: Some(false),
        ..Default::default()
    });
    let l = labels(o.name, names::ROLE_SERVING, Some(n));
    Ok((
        deployment(&o, name.clone(), l.clone(), s.replicas, pod),
        service(&o, name, l),
    ))
}

/// Deployment `<model>-gateway` and Service `<model>`: the Model's one
/// address, splitting traffic by `status.traffic`.
pub fn gateway(
    model: &Model,
    settings: &ChildSettings,
) -> Result<(Deployment, Service), OperatorError> {
    let o = owner(model)?;
    let target = format!("{}/{}", o.namespace, o.name);
    let port = SERVE_PORT.to_string();
    let shadow_root = names::shadow_prefix(&settings.artifact_root, o.namespace, o.name);
    let pod = pod_security::restricted(PodSpec {
        containers: vec![Container {
            name: "gateway".into(),
            image: Some(settings.image.clone()),
            // Sticky: a label must reach the version that served its request.
            command: Some({
                let mut args = driftline(&[
                    "gateway",
                    "--model",
                    &target,
                    "--port",
                    &port,
                    "--sticky",
                    "--shadow-root",
                    &shadow_root,
                ]);
                args.extend(disagreement_queue_flags(model, settings));
                args
            }),
            // It writes the rows a shadow candidate disagreed on to the store.
            env_from: credentials(settings),
            ports: container_ports(),
            readiness_probe: Some(http_probe(routes::HEALTHZ)),
            ..Default::default()
        }],
        service_account_name: settings.gateway_service_account.clone(),
        ..Default::default()
    });
    let l = labels(o.name, names::ROLE_GATEWAY, None);
    Ok((
        deployment(&o, names::gateway_deployment(o.name), l.clone(), 1, pod),
        service(&o, names::gateway_service(o.name), l),
    ))
}

/// The Gateway API group, version and kind of [`http_route`].
pub const HTTP_ROUTE_API: (&str, &str, &str) = ("gateway.networking.k8s.io", "v1", "HTTPRoute");

/// The `HTTPRoute` of a Model, where the cluster serves the Gateway API: one
/// rule whose weighted `backendRefs` are the versions' Services, following
/// `status.traffic` as the Model's own gateway does. `None` without traffic.
pub fn http_route(
    model: &Model,
    traffic: &[TrafficWeight],
    settings: &ChildSettings,
) -> Result<Option<DynamicObject>, OperatorError> {
    if traffic.is_empty() {
        return Ok(None);
    }
    let o = owner(model)?;
    let mut backends = Vec::with_capacity(traffic.len());
    for t in traffic {
        let n = version_number(&t.version).ok_or_else(|| {
            OperatorError::rule(
                format!("HTTPRoute {}/{}", o.namespace, names::http_route(o.name)),
                format!("status.traffic names `{}`, not a version `v<n>`", t.version),
            )
        })?;
        backends.push(serde_json::json!({
            "kind": "Service",
            "name": names::serving(o.name, n),
            "port": SERVE_PORT,
            "weight": t.weight,
        }));
    }
    let mut spec = serde_json::json!({"rules": [{"backendRefs": backends}]});
    if let Some((namespace, name)) = &settings.http_route_parent {
        spec["parentRefs"] = serde_json::json!([{"namespace": namespace, "name": name}]);
    }
    let (group, version, kind) = HTTP_ROUTE_API;
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
    let mut route = DynamicObject::new(&names::http_route(o.name), &resource)
        .data(serde_json::json!({ "spec": spec }));
    route.metadata = meta(
        &o,
        names::http_route(o.name),
        labels(o.name, names::ROLE_GATEWAY, None),
    );
    Ok(Some(route))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The run's start the Jobs read their window as of.
    const AS_OF: &str = "2026-06-01T08:00:00Z";
    use crate::api::load_model_config;

    fn fixture() -> Model {
        let spec = load_model_config(include_str!("../../tests/fixtures/wine-quality.yaml"))
            .expect("north-star fixture");
        let mut m = Model::new("wine-quality", spec);
        m.metadata.namespace = Some("ml".into());
        m.metadata.uid = Some("uid-1".into());
        m
    }

    fn settings() -> ChildSettings {
        ChildSettings {
            artifact_root: "s3://models/root/".into(),
            image: "driftline:1".into(),
            credentials_secret: Some("s3-creds".into()),
            gateway_service_account: Some("driftline-gateway".into()),
            http_route_parent: Some(("gateways".into(), "public".into())),
            gpu_placement: GpuPlacement::default(),
            network_policies: None,
        }
    }

    #[test]
    fn a_gpu_training_job_without_placement_of_its_own_gets_the_clusters_gpu_nodes() {
        let placement: GpuPlacement = serde_json::from_str(
            r#"{"nodeSelector": {"pool": "gpu"}, "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]}"#,
        )
        .expect("placement parses");
        let with_defaults = ChildSettings {
            gpu_placement: placement,
            ..settings()
        };
        let pod = |m: &Model| {
            training_job(m, 1, AS_OF, None, &with_defaults)
                .expect("job builds")
                .spec
                .expect("spec")
                .template
                .spec
                .expect("pod")
        };
        // The fixture names its own nodeSelector and toleration: they win.
        let own = pod(&fixture());
        assert_eq!(
            own.node_selector.as_ref().and_then(|s| s.get("pool")),
            None,
            "{own:?}"
        );
        let mut bare = fixture();
        bare.spec.training.node_selector.clear();
        bare.spec.training.tolerations.clear();
        let gpu = pod(&bare);
        assert_eq!(
            gpu.node_selector
                .as_ref()
                .and_then(|s| s.get("pool"))
                .map(String::as_str),
            Some("gpu")
        );
        assert_eq!(
            gpu.tolerations.as_ref().and_then(|t| t[0].key.as_deref()),
            Some("nvidia.com/gpu")
        );
        // A CPU Job stays where the scheduler puts it.
        let mut cpu = bare;
        if let Some(r) = cpu.spec.training.resources.as_mut() {
            r.gpu = None;
        }
        let plain = pod(&cpu);
        assert_eq!((plain.node_selector, plain.tolerations), (None, None));
    }

    #[test]
    fn the_data_check_job_reads_the_window_on_a_cpu_and_requests_no_gpu() {
        let m = fixture();
        assert_eq!(
            m.spec.training.resources.as_ref().and_then(|r| r.gpu),
            Some(1),
            "the fixture trains on a GPU"
        );
        let job = data_check_job(
            &m,
            3,
            AS_OF,
            Some("s3://models/root/ml/wine-quality/v2"),
            &settings(),
        )
        .expect("job builds");
        assert_eq!(
            job.metadata.name.as_deref(),
            Some("wine-quality-datacheck-3")
        );
        let pod = job.spec.and_then(|s| s.template.spec).expect("pod");
        assert_eq!(
            (pod.node_selector, pod.tolerations),
            (None, None),
            "no GPU node"
        );
        let c = &pod.containers[0];
        assert_eq!(
            c.command.as_ref().expect("command").join(" "),
            "driftline datacheck --config env:DRIFTLINE_MODEL --as-of 2026-06-01T08:00:00Z \
             --report s3://models/root/ml/wine-quality/v3.datacheck.json --report-only \
             --champion s3://models/root/ml/wine-quality/v2"
        );
        let limits = c
            .resources
            .as_ref()
            .and_then(|r| r.limits.clone())
            .expect("limits");
        assert!(!limits.contains_key("nvidia.com/gpu"), "{limits:?}");
        assert_eq!(limits.get("memory").map(|q| q.0.as_str()), Some("8Gi"));
    }

    #[test]
    fn the_training_job_trains_then_evaluates_against_the_champion_on_the_gpu_node() {
        let m = fixture();
        let job = training_job(
            &m,
            3,
            AS_OF,
            Some("s3://models/root/ml/wine-quality/v2"),
            &settings(),
        )
        .expect("job builds");
        assert_eq!(job.metadata.name.as_deref(), Some("wine-quality-train-3"));
        let owner = &job.metadata.owner_references.as_ref().expect("owner")[0];
        assert_eq!(
            (owner.kind.as_str(), owner.controller),
            ("Model", Some(true))
        );
        let spec = job.spec.expect("job spec");
        assert_eq!(spec.backoff_limit, Some(2), "retries: 2");
        assert_eq!(spec.active_deadline_seconds, Some(7200), "deadline: 2h");
        let pod = spec.template.spec.expect("pod");
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        assert_eq!(
            pod.automount_service_account_token,
            Some(false),
            "no API access"
        );
        assert_eq!(
            pod.node_selector
                .as_ref()
                .and_then(|s| s.get("accelerator"))
                .map(String::as_str),
            Some("nvidia")
        );
        assert_eq!(pod.tolerations.as_ref().map(Vec::len), Some(1));
        let train = &pod.init_containers.as_ref().expect("train step")[0];
        let cmd = train.command.as_ref().expect("command").join(" ");
        assert_eq!(
            cmd,
            "driftline train --config env:DRIFTLINE_MODEL --out s3://models/root/ml/wine-quality/v3 \
             --resume --as-of 2026-06-01T08:00:00Z --feedback s3://models/root/ml/wine-quality/feedback/ \
             --memory-bound 8Gi"
        );
        let limits = train
            .resources
            .as_ref()
            .and_then(|r| r.limits.as_ref())
            .expect("limits");
        assert_eq!(
            limits.get("nvidia.com/gpu").map(|q| q.0.as_str()),
            Some("1")
        );
        assert_eq!(limits.get("memory").map(|q| q.0.as_str()), Some("8Gi"));
        assert_eq!(
            train.image.as_deref(),
            Some("ghcr.io/driftline/driftline:cuda")
        );
        let env = train.env.as_ref().expect("env");
        let yaml = env[0].value.as_deref().expect("model yaml");
        let back = load_model_config(yaml).expect("the pod can read its Model");
        assert_eq!(back, m.spec);
        assert_eq!(
            train
                .env_from
                .as_ref()
                .and_then(|e| e[0].secret_ref.as_ref())
                .map(|s| s.name.as_str()),
            Some("s3-creds")
        );
        let evaluate = pod.containers[0]
            .command
            .as_ref()
            .expect("command")
            .join(" ");
        assert!(
            evaluate.ends_with(
                "--candidate s3://models/root/ml/wine-quality/v3 \
                 --report s3://models/root/ml/wine-quality/v3/gate.json --report-only \
                 --champion s3://models/root/ml/wine-quality/v2"
            ),
            "{evaluate}"
        );
    }

    #[test]
    fn without_a_gate_the_job_only_trains() {
        let mut m = fixture();
        m.spec.gate = None;
        m.spec.data.include_feedback = false;
        let job = training_job(&m, 1, AS_OF, None, &settings()).expect("job builds");
        let pod = job.spec.and_then(|s| s.template.spec).expect("pod");
        assert!(pod.init_containers.is_none());
        let cmd = pod.containers[0]
            .command
            .as_ref()
            .expect("command")
            .join(" ");
        assert_eq!(
            cmd,
            "driftline train --config env:DRIFTLINE_MODEL --out s3://models/root/ml/wine-quality/v1 --resume \
             --as-of 2026-06-01T08:00:00Z --memory-bound 8Gi"
        );
    }

    #[test]
    fn serving_runs_the_artifact_with_the_models_drift_settings() {
        let m = fixture();
        let (d, s) = serving(&m, 4, "s3://a/v4", &settings()).expect("serving builds");
        assert_eq!(d.metadata.name.as_deref(), Some("wine-quality-v4"));
        assert_eq!(s.metadata.name.as_deref(), Some("wine-quality-v4"));
        let spec = d.spec.expect("spec");
        assert_eq!(spec.replicas, Some(2));
        let selector = spec.selector.match_labels.expect("selector");
        assert_eq!(
            selector.get(names::VERSION_LABEL).map(String::as_str),
            Some("4")
        );
        assert_eq!(s.spec.and_then(|s| s.selector), Some(selector));
        let c = &spec.template.spec.expect("pod").containers[0];
        let cmd = c.command.as_ref().expect("command").join(" ");
        assert!(
            cmd.starts_with(
                "driftline serve --artifact s3://a/v4 --name wine-quality --model-version v4 --port 8080 \
                 --drift-statistic jensenShannon --drift-threshold 0.1 --drift-false-alarm-rate 0.01 \
                 --drift-control familyWise --drift-trigger weighted --drift-window 1000 --drifted-share 0.5"
            ),
            "{cmd}"
        );
        assert!(
            cmd.contains("--drift-feature color=ignore --drift-feature ph=0.2"),
            "{cmd}"
        );
        assert!(
            cmd.ends_with(
                "--feedback s3://models/root/ml/wine-quality/feedback/ --annotation-per-day 100 \
                 --annotation-uncertainty-share 0.5 --annotation-drift-share 0.3"
            ),
            "{cmd}"
        );
        // The model server accepts exactly these flags.
        #[derive(clap::Parser)]
        struct Serve {
            #[command(flatten)]
            args: crate::cli::ServeArgs,
        }
        let argv = c.command.as_ref().expect("command").iter().skip(1);
        let parsed = <Serve as clap::Parser>::try_parse_from(argv).expect("serve parses its flags");
        // ... and reads back exactly the Model's drift settings.
        let mut served = parsed.args.drift.config().expect("valid flags").spec;
        served.consecutive_windows = m.spec.drift.consecutive_windows;
        assert_eq!(served, m.spec.drift);
        let probe = c
            .readiness_probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .expect("probe");
        assert_eq!(probe.path.as_deref(), Some("/v2/health/ready"));
    }

    #[test]
    fn each_serving_replica_gets_its_share_of_the_annotation_budget() {
        let mut m = fixture();
        m.spec.data.include_feedback = true;
        m.spec.serving.replicas = 3;
        m.spec.feedback = Some(crate::api::FeedbackSpec {
            annotation: Some(crate::api::AnnotationSpec {
                per_day: 100,
                uncertainty_share: 0.6,
                drift_share: 0.25,
            }),
        });
        let (d, _) = serving(&m, 2, "s3://a/v2", &settings()).expect("serving builds");
        let pod = d.spec.and_then(|s| s.template.spec).expect("pod");
        let argv = pod.containers[0].command.clone().expect("command");
        #[derive(clap::Parser)]
        struct Serve {
            #[command(flatten)]
            args: crate::cli::ServeArgs,
        }
        let parsed = <Serve as clap::Parser>::try_parse_from(argv.iter().skip(1))
            .expect("serve parses its flags");
        assert_eq!(
            parsed.args.annotation_per_day,
            Some(34),
            "100 over 3 replicas, rounded up"
        );
        assert_eq!(parsed.args.annotation_uncertainty_share, 0.6);
        assert_eq!(parsed.args.annotation_drift_share, 0.25);
        // The gateway's one replica queues the rest of the budget: the rows
        // a shadow candidate disagreed on.
        let (g, _) = gateway(&m, &settings()).expect("gateway builds");
        let cmd = command(g).join(" ");
        assert!(
            cmd.ends_with(
                "--annotation-queue s3://models/root/ml/wine-quality/feedback/ --annotation-per-day 15"
            ),
            "{cmd}"
        );
        // Without feedback there is no queue to write to.
        m.spec.data.include_feedback = false;
        let (d, _) = serving(&m, 2, "s3://a/v2", &settings()).expect("serving builds");
        let (g, _) = gateway(&m, &settings()).expect("gateway builds");
        for cmd in [command(d), command(g)] {
            assert!(
                !cmd.iter().any(|a| a.starts_with("--annotation")),
                "{cmd:?}"
            );
        }
    }

    /// The command of a Deployment's first container.
    fn command(d: Deployment) -> Vec<String> {
        d.spec
            .and_then(|s| s.template.spec)
            .expect("pod")
            .containers[0]
            .command
            .clone()
            .expect("command")
    }

    #[test]
    fn the_gateway_is_the_models_one_address() {
        let m = fixture();
        let (d, s) = gateway(&m, &settings()).expect("gateway builds");
        assert_eq!(d.metadata.name.as_deref(), Some("wine-quality-gateway"));
        assert_eq!(s.metadata.name.as_deref(), Some("wine-quality"));
        let pod = d.spec.and_then(|s| s.template.spec).expect("pod");
        assert_eq!(
            pod.service_account_name.as_deref(),
            Some("driftline-gateway")
        );
        assert_eq!(
            pod.containers[0]
                .command
                .as_ref()
                .expect("command")
                .join(" "),
            "driftline gateway --model ml/wine-quality --port 8080 --sticky \
             --shadow-root s3://models/root/ml/wine-quality/shadow/ \
             --annotation-queue s3://models/root/ml/wine-quality/feedback/ --annotation-per-day 40"
        );
        // The gateway's default backend template is the serving Service's address.
        let status = serde_json::json!({"traffic": [{"version": "v7", "weight": 100}]});
        let table =
            crate::serve::weights_from_status("wine-quality", "ml", &status, None).expect("table");
        assert_eq!(
            table.backends[0].url,
            names::serving_url("wine-quality", "ml", 7)
        );
    }

    #[test]
    fn the_http_route_weights_each_versions_service_as_status_traffic_does() {
        let m = fixture();
        let traffic = [
            TrafficWeight {
                version: "v3".into(),
                weight: 80,
            },
            TrafficWeight {
                version: "v4".into(),
                weight: 20,
            },
        ];
        assert!(http_route(&m, &[], &settings()).expect("builds").is_none());
        let route = http_route(&m, &traffic, &settings())
            .expect("builds")
            .expect("a route with traffic");
        let types = route.types.as_ref().expect("types");
        assert_eq!(
            (types.api_version.as_str(), types.kind.as_str()),
            ("gateway.networking.k8s.io/v1", "HTTPRoute")
        );
        assert_eq!(route.metadata.name.as_deref(), Some("wine-quality"));
        assert_eq!(route.metadata.namespace.as_deref(), Some("ml"));
        let owner = &route.metadata.owner_references.as_ref().expect("owner")[0];
        assert_eq!(
            (owner.kind.as_str(), owner.controller),
            ("Model", Some(true))
        );
        assert_eq!(
            route.data["spec"],
            serde_json::json!({
                "parentRefs": [{"namespace": "gateways", "name": "public"}],
                "rules": [{"backendRefs": [
                    {"kind": "Service", "name": "wine-quality-v3", "port": 8080, "weight": 80},
                    {"kind": "Service", "name": "wine-quality-v4", "port": 8080, "weight": 20},
                ]}]
            })
        );
        let bad = [TrafficWeight {
            version: "latest".into(),
            weight: 100,
        }];
        let err = http_route(&m, &bad, &settings())
            .unwrap_err()
            .chain()
            .to_string();
        assert!(err.contains("`latest`, not a version"), "{err}");
    }

    #[test]
    fn a_warm_started_model_hands_its_training_job_the_champions_artifact() {
        let command = |warm: WarmStart, champion: Option<&str>| {
            let mut m = fixture();
            m.spec.training.warm_start = warm;
            let job = training_job(&m, 3, AS_OF, champion, &settings()).expect("job builds");
            let pod = job.spec.expect("spec").template.spec.expect("pod");
            pod.init_containers.expect("train step")[0]
                .command
                .clone()
                .expect("command")
                .join(" ")
        };
        let champion = "s3://models/root/ml/wine-quality/v2";
        assert!(
            command(WarmStart::Champion, Some(champion))
                .contains("--warm-start s3://models/root/ml/wine-quality/v2 "),
            "{}",
            command(WarmStart::Champion, Some(champion))
        );
        assert!(!command(WarmStart::Champion, None).contains("--warm-start"));
        assert!(!command(WarmStart::None, Some(champion)).contains("--warm-start"));
    }
}
