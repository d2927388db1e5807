//! A Deployment's revisions as ReplicaSets, planned purely.
//!
//! The embedded Deployment controller manages pods itself ([`super::deployment`]);
//! each ReplicaSet here is the record of one pod template the Deployment
//! has had: its template (with the `pod-template-hash` label), its
//! revision number and change cause, and how many of the Deployment's pods
//! run it. That is what `kubectl rollout history` and `kubectl rollout undo`
//! read and what `kubectl get rs` and `kubectl describe deployment` show.
//! Revisions are numbered as the real controller numbers them: a template
//! that becomes current again (an undo) takes the next number and records
//! the ones it had in `deployment.kubernetes.io/revision-history`; the
//! oldest revisions beyond `spec.revisionHistoryLimit` (default 10) are
//! removed unless they still have pods.
//!
//! One deliberate difference: pods are owned by the Deployment, not by
//! their ReplicaSet (`kubectl describe pod` says `Controlled By:
//! Deployment/<name>`).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, ReplicaSetSpec, ReplicaSetStatus};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use super::deployment::{TEMPLATE_HASH_LABEL, max_surge, template_hash, template_hash_label};
use super::pods::{is_ready, is_terminal};

/// The revision of a Deployment and of each of its ReplicaSets.
pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";
/// Revisions a ReplicaSet had before its template became current again.
pub const REVISION_HISTORY_ANNOTATION: &str = "deployment.kubernetes.io/revision-history";
const DESIRED_REPLICAS_ANNOTATION: &str = "deployment.kubernetes.io/desired-replicas";
const MAX_REPLICAS_ANNOTATION: &str = "deployment.kubernetes.io/max-replicas";
/// Annotations of the Deployment that are not copied onto its ReplicaSets
/// (and that `kubectl rollout undo` does not copy back).
const NOT_COPIED: [&str; 5] = [
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION_ANNOTATION,
    REVISION_HISTORY_ANNOTATION,
    DESIRED_REPLICAS_ANNOTATION,
    MAX_REPLICAS_ANNOTATION,
];
/// Old revisions kept when the Deployment does not say.
const DEFAULT_HISTORY_LIMIT: i32 = 10;

/// What to write for a Deployment's revisions.
#[derive(Debug, Default, PartialEq)]
pub struct RevisionPlan {
    /// ReplicaSets to create or update, whole (status included), where they
    /// differ from what the cache shows.
    pub write: Vec<ReplicaSet>,
    /// Names of old ReplicaSets past the history limit.
    pub delete: Vec<String>,
    /// The Deployment's revision annotation, when it must change.
    pub revision: Option<String>,
}

/// The revision number a ReplicaSet records (0 when it has none).
pub fn revision_of(rs: &ReplicaSet) -> u64 {
    rs.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(REVISION_ANNOTATION))
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn hash_of_rs(rs: &ReplicaSet) -> Option<String> {
    template_hash_label(&rs.metadata)
}

/// Pods of one template after the controller's creates and deletes.
#[derive(Default)]
struct Count {
    replicas: i32,
    ready: i32,
}

/// Plans the ReplicaSets of `deployment` from the ones it controls
/// (`owned`), its pods (`pods`) and the pods its controller is about to
/// create and delete.
pub fn plan_revisions(
    deployment: &Deployment,
    owned: &[ReplicaSet],
    pods: &[Pod],
    creating: &[Pod],
    deleting: &[String],
) -> RevisionPlan {
    let spec = deployment.spec.clone().unwrap_or_default();
    let current = template_hash(deployment);
    let mut counts: BTreeMap<String, Count> = BTreeMap::new();
    for pod in pods.iter().chain(creating) {
        let gone = is_terminal(pod)
            || pod.metadata.deletion_timestamp.is_some()
            || pod
                .metadata
                .name
                .as_ref()
                .is_some_and(|n| deleting.contains(n));
        if let (false, Some(hash)) = (gone, template_hash_label(&pod.metadata)) {
            let count = counts.entry(hash).or_default();
            count.replicas += 1;
            count.ready += i32::from(is_ready(pod));
        }
    }
    let by_hash: BTreeMap<String, &ReplicaSet> = owned
        .iter()
        .filter_map(|rs| Some((hash_of_rs(rs)?, rs)))
        .collect();
    let newest = owned.iter().map(revision_of).max().unwrap_or(0);
    let existing = by_hash.get(&current).copied();
    let (revision, history) = match existing.map(revision_of) {
        // Already the newest: it keeps its number.
        Some(r) if r == newest && r > 0 => (r, None),
        // A template current again takes the next number and remembers its old ones.
        Some(r) if r > 0 => {
            let before = existing
                .and_then(|rs| rs.metadata.annotations.as_ref())
                .and_then(|a| a.get(REVISION_HISTORY_ANNOTATION))
                .filter(|h| !h.is_empty());
            let history = match before {
                Some(h) => format!("{h},{r}"),
                None => r.to_string(),
            };
            (newest + 1, Some(history))
        }
        _ => (newest + 1, None),
    };

    let mut plan = RevisionPlan::default();
    let surge = spec
        .replicas
        .unwrap_or(1)
        .max(0)
        .saturating_add(max_surge(deployment));
    let mut desired = vec![current_replica_set(
        deployment,
        existing,
        &current,
        revision,
        history,
        surge,
        counts.get(&current),
    )];
    for (hash, rs) in &by_hash {
        if *hash != current {
            desired.push(old_replica_set(rs, counts.get(hash)));
        }
    }
    for rs in desired {
        let name = rs.metadata.name.clone();
        let before = owned.iter().find(|o| o.metadata.name == name);
        if before.is_none_or(|b| differs(b, &rs)) {
            plan.write.push(rs);
        }
    }
    // As the real controller cleans up: the oldest revisions past the limit
    // go, except one that still has pods (which still counts).
    let limit = spec
        .revision_history_limit
        .unwrap_or(DEFAULT_HISTORY_LIMIT)
        .max(0) as usize;
    let mut old: Vec<(&String, &ReplicaSet)> = by_hash
        .iter()
        .filter(|(hash, rs)| **hash != current && rs.metadata.deletion_timestamp.is_none())
        .map(|(hash, rs)| (hash, *rs))
        .collect();
    old.sort_by_key(|(_, rs)| revision_of(rs));
    let excess = old.len().saturating_sub(limit);
    plan.delete = old
        .into_iter()
        .take(excess)
        .filter(|(hash, _)| counts.get(*hash).is_none_or(|c| c.replicas == 0))
        .filter_map(|(_, rs)| rs.metadata.name.clone())
        .collect();
    let shown = deployment
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(REVISION_ANNOTATION));
    if shown != Some(&revision.to_string()) {
        plan.revision = Some(revision.to_string());
    }
    plan
}

/// The ReplicaSet of the Deployment's current template.
fn current_replica_set(
    deployment: &Deployment,
    existing: Option<&ReplicaSet>,
    hash: &str,
    revision: u64,
    history: Option<String>,
    max_replicas: i32,
    count: Option<&Count>,
) -> ReplicaSet {
    let spec = deployment.spec.clone().unwrap_or_default();
    let name = deployment.metadata.name.clone().unwrap_or_default();
    let mut template: PodTemplateSpec = spec.template.clone();
    let template_meta = template.metadata.get_or_insert_with(Default::default);
    let mut labels = template_meta.labels.clone().unwrap_or_default();
    labels.insert(TEMPLATE_HASH_LABEL.into(), hash.into());
    template_meta.labels = Some(labels.clone());
    let mut annotations: BTreeMap<String, String> = deployment
        .metadata
        .annotations
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| !NOT_COPIED.contains(&k.as_str()))
        .collect();
    annotations.insert(REVISION_ANNOTATION.into(), revision.to_string());
    let history = history.or_else(|| {
        existing
            .and_then(|rs| rs.metadata.annotations.as_ref())
            .and_then(|a| a.get(REVISION_HISTORY_ANNOTATION))
            .cloned()
    });
    if let Some(h) = history {
        annotations.insert(REVISION_HISTORY_ANNOTATION.into(), h);
    }
    annotations.insert(
        DESIRED_REPLICAS_ANNOTATION.into(),
        spec.replicas.unwrap_or(1).max(0).to_string(),
    );
    annotations.insert(MAX_REPLICAS_ANNOTATION.into(), max_replicas.to_string());
    let mut selector = spec.selector.clone();
    selector
        .match_labels
        .get_or_insert_with(Default::default)
        .insert(TEMPLATE_HASH_LABEL.into(), hash.into());
    let replicas = count.map_or(0, |c| c.replicas);
    ReplicaSet {
        metadata: ObjectMeta {
            name: Some(format!("{name}-{hash}")),
            namespace: deployment.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: Some(vec![OwnerReference {
                api_version: "apps/v1".into(),
                kind: "Deployment".into(),
                name,
                uid: deployment.metadata.uid.clone().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..Default::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(replicas),
            min_ready_seconds: spec.min_ready_seconds,
            selector,
            template: Some(template),
        }),
        status: Some(status(existing, count)),
    }
}

/// An old revision: its record stays, its counts follow its pods.
fn old_replica_set(rs: &ReplicaSet, count: Option<&Count>) -> ReplicaSet {
    let mut rs = rs.clone();
    let replicas = count.map_or(0, |c| c.replicas);
    if let Some(spec) = rs.spec.as_mut() {
        spec.replicas = Some(replicas);
    }
    rs.status = Some(status(Some(&rs), count));
    rs
}

fn status(existing: Option<&ReplicaSet>, count: Option<&Count>) -> ReplicaSetStatus {
    let (replicas, ready) = count.map_or((0, 0), |c| (c.replicas, c.ready));
    ReplicaSetStatus {
        replicas,
        fully_labeled_replicas: Some(replicas),
        ready_replicas: Some(ready),
        available_replicas: Some(ready),
        observed_generation: existing.and_then(|rs| rs.metadata.generation),
        ..Default::default()
    }
}

/// Whether what the controller decides of a ReplicaSet differs from the stored one.
fn differs(stored: &ReplicaSet, desired: &ReplicaSet) -> bool {
    let annotations = |rs: &ReplicaSet| rs.metadata.annotations.clone().unwrap_or_default();
    let keys: BTreeSet<&String> = desired
        .metadata
        .annotations
        .iter()
        .flatten()
        .map(|(k, _)| k)
        .collect();
    let stored_annotations = annotations(stored);
    let annotations_differ = keys.iter().any(|k| {
        stored_annotations.get(*k)
            != desired
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(*k))
    });
    let status = |rs: &ReplicaSet| {
        let s = rs.status.clone().unwrap_or_default();
        (
            s.replicas,
            s.ready_replicas.unwrap_or(0),
            s.available_replicas.unwrap_or(0),
        )
    };
    annotations_differ
        || stored.spec.as_ref().and_then(|s| s.replicas)
            != desired.spec.as_ref().and_then(|s| s.replicas)
        || stored.spec.as_ref().and_then(|s| s.template.clone())
            != desired.spec.as_ref().and_then(|s| s.template.clone())
        || status(stored) != status(desired)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ml/web` (selected by `app: web`, two old revisions kept) with a change cause.
    fn deployment(image: &str, replicas: i32) -> Deployment {
        let mut d = super::super::deployment::tests::deployment(replicas, image);
        d.metadata.annotations = Some(
            [(
                "kubernetes.io/change-cause".to_string(),
                format!("image {image}"),
            )]
            .into(),
        );
        let spec = d.spec.as_mut().expect("spec");
        spec.revision_history_limit = Some(2);
        spec.selector.match_labels = Some([("app".to_string(), "web".to_string())].into());
        d
    }

    fn pod(name: &str, hash: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some([(TEMPLATE_HASH_LABEL.to_string(), hash.to_string())].into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    /// Stores what the plan writes (as the API server would) and the
    /// Deployment's revision annotation.
    fn store(d: &mut Deployment, stored: &mut Vec<ReplicaSet>, plan: &RevisionPlan) {
        for rs in &plan.write {
            stored.retain(|s| s.metadata.name != rs.metadata.name);
            stored.push(rs.clone());
        }
        stored.retain(|s| {
            !plan
                .delete
                .contains(s.metadata.name.as_ref().expect("named"))
        });
        if let Some(r) = &plan.revision {
            d.metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert(REVISION_ANNOTATION.into(), r.clone());
        }
    }

    fn revisions(stored: &[ReplicaSet]) -> Vec<(String, u64, i32)> {
        let mut out: Vec<_> = stored
            .iter()
            .map(|rs| {
                (
                    hash_of_rs(rs).expect("hash label"),
                    revision_of(rs),
                    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(-1),
                )
            })
            .collect();
        out.sort_by_key(|(_, r, _)| *r);
        out
    }

    #[test]
    fn each_template_is_a_numbered_revision_and_an_undo_takes_the_next_number() {
        let mut d = deployment("v1", 2);
        let h1 = template_hash(&d);
        let mut stored = Vec::new();
        let creating = [pod("a", &h1), pod("b", &h1)];
        let plan = plan_revisions(&d, &stored, &[], &creating, &[]);
        assert_eq!(plan.revision.as_deref(), Some("1"));
        store(&mut d, &mut stored, &plan);
        let rs = &stored[0];
        assert_eq!(
            rs.metadata.name.as_deref(),
            Some(format!("web-{h1}").as_str())
        );
        let owner = &rs.metadata.owner_references.as_ref().expect("owner")[0];
        assert_eq!(
            (owner.uid.as_str(), owner.controller),
            ("d-uid", Some(true))
        );
        let spec = rs.spec.as_ref().expect("spec");
        assert_eq!(
            spec.selector.match_labels.as_ref().expect("labels")[TEMPLATE_HASH_LABEL],
            h1
        );
        let template_labels = spec.template.as_ref().and_then(|t| t.metadata.as_ref());
        assert_eq!(
            template_labels
                .and_then(|m| m.labels.as_ref())
                .expect("labels")["app"],
            "web"
        );
        let annotations = rs.metadata.annotations.as_ref().expect("annotations");
        assert_eq!(annotations["kubernetes.io/change-cause"], "image v1");
        assert_eq!(annotations[MAX_REPLICAS_ANNOTATION], "3");
        // Nothing changed: nothing is written again.
        let pods = [pod("a", &h1), pod("b", &h1)];
        assert_eq!(
            plan_revisions(&d, &stored, &pods, &[], &[]),
            RevisionPlan::default()
        );

        // A new image: revision 2; v1's record follows its pods down.
        let mut d2 = deployment("v2", 2);
        d2.metadata.annotations = d.metadata.annotations.clone();
        d2.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert("kubernetes.io/change-cause".into(), "image v2".into());
        let h2 = template_hash(&d2);
        let plan = plan_revisions(&d2, &stored, &pods, &[pod("c", &h2)], &["a".into()]);
        assert_eq!(plan.revision.as_deref(), Some("2"));
        store(&mut d2, &mut stored, &plan);
        assert_eq!(
            revisions(&stored),
            vec![(h1.clone(), 1, 1), (h2.clone(), 2, 1)]
        );

        // Undo to v1: its record becomes revision 3 and remembers 1.
        let mut d3 = deployment("v1", 2);
        d3.metadata.annotations = d2.metadata.annotations.clone();
        assert_eq!(template_hash(&d3), h1);
        let pods = [pod("b", &h1), pod("c", &h2)];
        let plan = plan_revisions(&d3, &stored, &pods, &[], &[]);
        assert_eq!(plan.revision.as_deref(), Some("3"));
        store(&mut d3, &mut stored, &plan);
        assert_eq!(revisions(&stored), vec![(h2, 2, 1), (h1.clone(), 3, 1)]);
        let undone = stored.iter().find(|rs| hash_of_rs(rs) == Some(h1.clone()));
        assert_eq!(
            undone
                .and_then(|rs| rs.metadata.annotations.as_ref())
                .map(|a| a[REVISION_HISTORY_ANNOTATION].as_str()),
            Some("1")
        );
    }

    #[test]
    fn idle_revisions_past_the_history_limit_go_oldest_first_and_busy_ones_stay() {
        let mut d = deployment("v0", 1);
        let mut stored = Vec::new();
        for image in ["v1", "v2", "v3", "v4"] {
            let next = deployment(image, 1);
            d.spec = next.spec;
            let plan = plan_revisions(&d, &stored, &[], &[], &[]);
            store(&mut d, &mut stored, &plan);
        }
        // v1..v3 are idle old revisions; the limit is 2: v1 went.
        let kept: Vec<u64> = revisions(&stored).iter().map(|(_, r, _)| *r).collect();
        assert_eq!(kept, vec![2, 3, 4]);
        // The oldest, still running a pod, stays (and counts against the
        // limit, as in kube-controller-manager); idle ones past it go.
        let h2 = stored
            .iter()
            .find(|rs| revision_of(rs) == 2)
            .and_then(hash_of_rs)
            .expect("revision 2");
        let busy = [pod("old", &h2)];
        d.spec = deployment("v5", 1).spec;
        let plan = plan_revisions(&d, &stored, &busy, &[], &[]);
        store(&mut d, &mut stored, &plan);
        let kept: Vec<u64> = revisions(&stored).iter().map(|(_, r, _)| *r).collect();
        assert_eq!(kept, vec![2, 3, 4, 5]);
        d.spec = deployment("v6", 1).spec;
        let plan = plan_revisions(&d, &stored, &busy, &[], &[]);
        store(&mut d, &mut stored, &plan);
        let kept: Vec<u64> = revisions(&stored).iter().map(|(_, r, _)| *r).collect();
        assert_eq!(kept, vec![2, 4, 5, 6]);
    }
}
