//! The Deployment controller (apps/v1) as a pure plan. It manages pods
//! directly: each pod carries the `pod-template-hash` of the template it was
//! made from, and a template change rolls pods within maxSurge /
//! maxUnavailable. The ReplicaSets are the record of its revisions
//! ([`super::revisions`]). The status fields and conditions are the ones
//! `kubectl rollout status` reads.

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;

use super::events::EventNote;
use super::pods::{encoded_hash, is_ready, is_terminal, name_suffix};

/// Label with the hash of the pod template a pod was made from.
pub const TEMPLATE_HASH_LABEL: &str = "pod-template-hash";

/// What the Deployment controller should do for one Deployment.
#[derive(Debug, Default)]
pub struct DeploymentPlan {
    /// Pods to create.
    pub create: Vec<Pod>,
    /// Names of pods to delete.
    pub delete: Vec<String>,
    /// The status the Deployment should have.
    pub status: DeploymentStatus,
    /// Events to record on the Deployment.
    pub events: Vec<EventNote>,
}

/// The template hash an object (a pod, a ReplicaSet) was labelled with.
pub fn template_hash_label(meta: &ObjectMeta) -> Option<String> {
    meta.labels
        .as_ref()
        .and_then(|l| l.get(TEMPLATE_HASH_LABEL))
        .cloned()
}

/// The hash of the Deployment's current pod template.
pub fn template_hash(deployment: &Deployment) -> String {
    let template = deployment.spec.as_ref().map(|s| &s.template);
    let text = serde_json::to_string(&template).unwrap_or_default();
    encoded_hash(&text, 10)
}

/// Resolves an int-or-percent against `total`, rounding up or down as Kubernetes does.
fn scaled(value: Option<&IntOrString>, total: i32, round_up: bool) -> i32 {
    match value {
        Some(IntOrString::Int(n)) => *n,
        Some(IntOrString::String(s)) => {
            let pct: f64 = s.trim_end_matches('%').parse().unwrap_or(25.0);
            let exact = pct * f64::from(total) / 100.0;
            (if round_up {
                exact.ceil()
            } else {
                exact.floor()
            }) as i32
        }
        None => {
            let exact = 0.25 * f64::from(total);
            (if round_up {
                exact.ceil()
            } else {
                exact.floor()
            }) as i32
        }
    }
}

/// `maxSurge` in pods: how far above `replicas` a rolling update may go
/// (none for `Recreate`).
pub fn max_surge(deployment: &Deployment) -> i32 {
    let spec = deployment.spec.clone().unwrap_or_default();
    let strategy = spec.strategy.unwrap_or_default();
    if strategy.type_.as_deref() == Some("Recreate") {
        return 0;
    }
    let rolling = strategy.rolling_update.unwrap_or_default();
    scaled(
        rolling.max_surge.as_ref(),
        spec.replicas.unwrap_or(1).max(0),
        true,
    )
    .max(0)
}

/// Plans one reconcile of `deployment` owning `pods` at `now`.
pub fn plan_deployment(deployment: &Deployment, pods: &[Pod], now: Timestamp) -> DeploymentPlan {
    let spec = deployment.spec.clone().unwrap_or_default();
    let name = deployment.metadata.name.clone().unwrap_or_default();
    let replicas = spec.replicas.unwrap_or(1).max(0);
    let hash = template_hash(deployment);
    let strategy = spec.strategy.clone().unwrap_or_default();
    let recreate = strategy.type_.as_deref() == Some("Recreate");
    let rolling = strategy.rolling_update.unwrap_or_default();
    let max_surge = max_surge(deployment);
    let mut max_unavailable = scaled(rolling.max_unavailable.as_ref(), replicas, false).max(0);
    if max_surge == 0 && max_unavailable == 0 && !recreate {
        max_unavailable = 1;
    }
    let mut plan = DeploymentPlan::default();

    let hash_of = |p: &Pod| template_hash_label(&p.metadata);
    let delete = |pod: &Pod, plan: &mut DeploymentPlan| {
        if let Some(n) = &pod.metadata.name {
            plan.events.push(EventNote::normal(
                "SuccessfulDelete",
                &format!("Deleted pod: {n}"),
            ));
            plan.delete.push(n.clone());
        }
    };
    // Finished pods of a Deployment are replaced, never restarted.
    for pod in pods
        .iter()
        .filter(|p| is_terminal(p) && p.metadata.deletion_timestamp.is_none())
    {
        delete(pod, &mut plan);
    }
    let mut active: Vec<&Pod> = pods
        .iter()
        .filter(|p| !is_terminal(p) && p.metadata.deletion_timestamp.is_none())
        .collect();
    active.sort_by(|a, b| {
        let key = |p: &Pod| {
            (
                p.metadata.creation_timestamp.clone(),
                p.metadata.name.clone(),
            )
        };
        key(a).cmp(&key(b))
    });
    let (new, old): (Vec<&Pod>, Vec<&Pod>) = active
        .iter()
        .copied()
        .partition(|p| hash_of(p).as_deref() == Some(hash.as_str()));
    let ready_new = new.iter().filter(|p| is_ready(p)).count() as i32;
    let ready_old = old.iter().filter(|p| is_ready(p)).count() as i32;
    let (n_new, n_old) = (new.len() as i32, old.len() as i32);

    let mut to_create = 0;
    if recreate {
        for pod in &old {
            delete(pod, &mut plan);
        }
        let old_still_running = pods
            .iter()
            .any(|p| !is_terminal(p) && hash_of(p).as_deref() != Some(hash.as_str()));
        if old.is_empty() && !old_still_running {
            to_create = (replicas - n_new).max(0);
        }
    } else {
        to_create = (replicas - n_new)
            .min(replicas + max_surge - n_new - n_old)
            .max(0);
        // Old pods that are not ready serve nobody: replace them first.
        let (unready_old, ready_old_pods): (Vec<&Pod>, Vec<&Pod>) =
            old.iter().copied().partition(|p| !is_ready(p));
        for pod in &unready_old {
            delete(pod, &mut plan);
        }
        let min_available = replicas - max_unavailable;
        let total = n_new + ready_old;
        let scale_down = (total - min_available - (n_new - ready_new)).clamp(0, ready_old);
        for pod in ready_old_pods.iter().take(scale_down as usize) {
            delete(pod, &mut plan);
        }
    }
    if n_new > replicas {
        let mut extra: Vec<&&Pod> = new.iter().collect();
        // Remove not-ready and then newest pods first.
        extra.sort_by_key(|p| {
            (
                is_ready(p),
                std::cmp::Reverse(p.metadata.creation_timestamp.clone()),
            )
        });
        for pod in extra.into_iter().take((n_new - replicas) as usize) {
            delete(pod, &mut plan);
        }
    }

    let names: Vec<String> = pods
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    let uid = deployment.metadata.uid.clone().unwrap_or_default();
    let mut index = 0usize;
    for _ in 0..to_create {
        let pod_name = loop {
            let candidate = format!(
                "{name}-{hash}-{}",
                name_suffix(&format!("{uid}/{hash}/{index}"))
            );
            index += 1;
            if !names.contains(&candidate) {
                break candidate;
            }
        };
        plan.events.push(EventNote::normal(
            "SuccessfulCreate",
            &format!("Created pod: {pod_name}"),
        ));
        plan.create
            .push(deployment_pod(deployment, &hash, pod_name));
    }

    let available = ready_new + ready_old;
    let status_replicas = n_new + n_old;
    let old_status = deployment.status.clone().unwrap_or_default();
    let mut status = DeploymentStatus {
        observed_generation: deployment.metadata.generation,
        replicas: Some(status_replicas),
        updated_replicas: Some(n_new),
        ready_replicas: Some(available),
        available_replicas: Some(available),
        unavailable_replicas: Some((replicas - available).max(0)),
        conditions: old_status.conditions.clone(),
        ..Default::default()
    };
    let progressed = old_status.replicas != status.replicas
        || old_status.updated_replicas != status.updated_replicas
        || old_status.available_replicas != status.available_replicas
        || old_status.observed_generation != status.observed_generation;
    let rs_name = format!("{name}-{hash}");
    let (avail_status, avail_reason, avail_message) = if available >= replicas - max_unavailable {
        (
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.".to_string(),
        )
    } else {
        (
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.".to_string(),
        )
    };
    set_condition(
        &mut status,
        "Available",
        avail_status,
        avail_reason,
        &avail_message,
        now,
        false,
    );
    let complete = n_new == replicas && n_old == 0 && ready_new == replicas;
    let deadline_s = i64::from(spec.progress_deadline_seconds.unwrap_or(600));
    let last_progress = old_status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Progressing")
        .and_then(|c| c.last_update_time.as_ref())
        .map(|t| t.0);
    let (p_status, p_reason, p_message) = if complete {
        (
            "True",
            "NewReplicaSetAvailable",
            format!("ReplicaSet \"{rs_name}\" has successfully progressed."),
        )
    } else if !progressed
        && last_progress.is_some_and(|t| now.as_second() - t.as_second() > deadline_s)
    {
        (
            "False",
            "ProgressDeadlineExceeded",
            format!("ReplicaSet \"{rs_name}\" has timed out progressing."),
        )
    } else {
        (
            "True",
            "ReplicaSetUpdated",
            format!("ReplicaSet \"{rs_name}\" is progressing."),
        )
    };
    set_condition(
        &mut status,
        "Progressing",
        p_status,
        p_reason,
        &p_message,
        now,
        progressed,
    );
    plan.status = status;
    plan
}

fn set_condition(
    status: &mut DeploymentStatus,
    type_: &str,
    value: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
    progressed: bool,
) {
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    let previous = conditions.iter().find(|c| c.type_ == type_).cloned();
    let unchanged = previous.as_ref().is_some_and(|c| {
        c.status == value
            && c.reason.as_deref() == Some(reason)
            && c.message.as_deref() == Some(message)
    });
    if unchanged && !progressed {
        return;
    }
    let transition = match &previous {
        Some(c) if c.status == value => c.last_transition_time.clone(),
        _ => Some(Time(now)),
    };
    conditions.retain(|c| c.type_ != type_);
    conditions.push(DeploymentCondition {
        type_: type_.into(),
        status: value.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_update_time: Some(Time(now)),
        last_transition_time: transition,
    });
    conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
}

fn deployment_pod(deployment: &Deployment, hash: &str, name: String) -> Pod {
    let template = deployment
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    let mut labels = meta.labels.unwrap_or_default();
    labels.insert(TEMPLATE_HASH_LABEL.into(), hash.into());
    let mut spec = template.spec;
    if let Some(s) = spec.as_mut() {
        s.restart_policy.get_or_insert_with(|| "Always".into());
    }
    Pod {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: deployment.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: meta.annotations,
            owner_references: Some(vec![OwnerReference {
                api_version: "apps/v1".into(),
                kind: "Deployment".into(),
                name: deployment.metadata.name.clone().unwrap_or_default(),
                uid: deployment.metadata.uid.clone().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..Default::default()
        },
        spec,
        status: None,
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::DeploymentSpec;
    use k8s_openapi::api::core::v1::{
        Container, PodCondition, PodSpec, PodStatus, PodTemplateSpec,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

    /// Deployment `ml/web` of `replicas` pods running `image`.
    pub(in crate::cluster::runner) fn deployment(replicas: i32, image: &str) -> Deployment {
        Deployment {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("ml".into()),
                uid: Some("d-uid".into()),
                generation: Some(1),
                ..Default::default()
            },
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                selector: LabelSelector::default(),
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some([("app".to_string(), "web".to_string())].into()),
                        ..Default::default()
                    }),
                    spec: Some(PodSpec {
                        containers: vec![Container {
                            name: "web".into(),
                            image: Some(image.into()),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }),
                },
                ..Default::default()
            }),
            status: None,
        }
    }

    fn ready(mut pod: Pod, ok: bool) -> Pod {
        pod.status = Some(PodStatus {
            phase: Some("Running".into()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ok { "True" } else { "False" }.into(),
                ..Default::default()
            }]),
            ..Default::default()
        });
        pod
    }

    fn now() -> Timestamp {
        Timestamp::from_second(1_700_000_000).unwrap()
    }

    #[test]
    fn scales_up_to_replicas_with_hash_labels_and_reports_progress() {
        let d = deployment(2, "v1");
        let plan = plan_deployment(&d, &[], now());
        assert_eq!(plan.create.len(), 2);
        let hash = template_hash(&d);
        for pod in &plan.create {
            assert_eq!(
                pod.metadata.labels.as_ref().unwrap()[TEMPLATE_HASH_LABEL],
                hash
            );
            assert_eq!(
                pod.spec.as_ref().unwrap().restart_policy.as_deref(),
                Some("Always")
            );
        }
        assert_ne!(plan.create[0].metadata.name, plan.create[1].metadata.name);
        let pods: Vec<Pod> = plan.create.into_iter().map(|p| ready(p, true)).collect();
        let plan = plan_deployment(&d, &pods, now());
        assert!(plan.create.is_empty() && plan.delete.is_empty());
        assert_eq!(plan.status.ready_replicas, Some(2));
        assert_eq!(plan.status.updated_replicas, Some(2));
        assert_eq!(plan.status.observed_generation, Some(1));
        let progressing = plan
            .status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == "Progressing")
            .unwrap();
        assert_eq!(
            progressing.reason.as_deref(),
            Some("NewReplicaSetAvailable")
        );
        let available = plan
            .status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == "Available")
            .unwrap();
        assert_eq!(available.status, "True");
    }

    #[test]
    fn a_template_change_rolls_within_surge_and_unavailability() {
        let v1 = deployment(4, "v1");
        let old: Vec<Pod> = plan_deployment(&v1, &[], now())
            .create
            .into_iter()
            .map(|p| ready(p, true))
            .collect();
        let v2 = deployment(4, "v2");
        assert_ne!(template_hash(&v1), template_hash(&v2));
        // 25 % of 4: one extra pod and one unavailable pod at a time.
        let plan = plan_deployment(&v2, &old, now());
        assert_eq!(plan.create.len(), 1);
        assert_eq!(plan.delete.len(), 1);
        let progressing = plan
            .status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == "Progressing")
            .unwrap();
        assert_eq!(progressing.reason.as_deref(), Some("ReplicaSetUpdated"));
        // The new pod is not ready yet: no further old pod may go.
        let remaining: Vec<Pod> = old
            .iter()
            .filter(|p| !plan.delete.contains(p.metadata.name.as_ref().unwrap()))
            .cloned()
            .chain(plan.create.iter().cloned().map(|p| ready(p, false)))
            .collect();
        let next = plan_deployment(&v2, &remaining, now());
        assert!(next.delete.is_empty(), "{:?}", next.delete);
        assert_eq!(
            next.create.len(),
            1,
            "one more surge pod fits: 3 old + 1 new < 5"
        );
    }

    #[test]
    fn scaling_down_removes_unready_pods_first() {
        let d = deployment(3, "v1");
        let pods: Vec<Pod> = plan_deployment(&d, &[], now()).create;
        let unready = pods[2].metadata.name.clone().unwrap();
        let pods = vec![
            ready(pods[0].clone(), true),
            ready(pods[1].clone(), true),
            ready(pods[2].clone(), false),
        ];
        let plan = plan_deployment(&deployment(2, "v1"), &pods, now());
        assert_eq!(plan.delete, vec![unready]);
    }

    #[test]
    fn recreate_stops_every_old_pod_before_starting_new_ones() {
        let v1 = deployment(2, "v1");
        let old: Vec<Pod> = plan_deployment(&v1, &[], now())
            .create
            .into_iter()
            .map(|p| ready(p, true))
            .collect();
        let mut v2 = deployment(2, "v2");
        if let Some(spec) = v2.spec.as_mut() {
            spec.strategy = Some(k8s_openapi::api::apps::v1::DeploymentStrategy {
                type_: Some("Recreate".into()),
                rolling_update: None,
            });
        }
        let plan = plan_deployment(&v2, &old, now());
        assert_eq!(plan.delete.len(), 2);
        assert!(
            plan.create.is_empty(),
            "new pods wait until the old ones are gone"
        );
        let mut terminating = old.clone();
        for pod in &mut terminating {
            pod.metadata.deletion_timestamp = Some(Time(now()));
        }
        assert!(plan_deployment(&v2, &terminating, now()).create.is_empty());
        assert_eq!(plan_deployment(&v2, &[], now()).create.len(), 2);
    }
}
