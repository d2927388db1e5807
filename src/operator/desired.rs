//! The children a Model's status calls for: one pure function of the Model,
//! its decided status, the versions that exist and the operator's settings.
//! Nothing else says which children exist: a restart at any point converges,
//! an edited child is put back, and a child no status calls for any more is
//! an orphan ([`Kept`]) that the reconcile deletes.

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Service;
use kube::Resource;
use kube::api::DynamicObject;

use crate::api::names;
use crate::api::{Model, ModelStatus, ModelVersion, RunStage, version_number};

use super::children::{self, ChildSettings};
use super::error::OperatorError;

/// What a Model's status calls for.
#[derive(Debug)]
pub struct Desired {
    /// The running training's Job: created once if missing, never changed.
    pub training_job: Option<Job>,
    /// Training Jobs kept as they are (every version that still exists
    /// keeps its Job, and with it its logs); the rest are orphans.
    pub kept_jobs: BTreeSet<String>,
    /// Deployment and Service of every version that serves ([`serving_set`]),
    /// then the gateway's, once any version serves.
    pub serving: Vec<(Deployment, Service)>,
    /// The Model's HTTPRoute, where a Gateway is configured and traffic is split.
    pub http_route: Option<DynamicObject>,
}

/// The versions that must have a model server: the champion, the canary,
/// a candidate in shadow and every version with traffic.
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
    // A candidate in shadow answers mirrored requests, so it is served too.
    set.extend(
        status
            .shadow
            .as_ref()
            .and_then(|s| version_number(&s.version)),
    );
    set
}

/// The children `status` calls for, given the versions that exist now
/// (those the reconcile created included, those it deleted left out).
pub fn children(
    model: &Model,
    status: &ModelStatus,
    versions: &[ModelVersion],
    settings: &ChildSettings,
) -> Result<Desired, OperatorError> {
    let name = model
        .metadata
        .name
        .as_deref()
        .ok_or(OperatorError::Unnamed)?;
    // The artifact a version recorded (it may predate a change of the
    // artifact root), else where it would be now.
    let artifact_of = |n: u32| -> Result<String, OperatorError> {
        let recorded = versions
            .iter()
            .find(|v| v.spec.version == n)
            .and_then(|v| v.status.as_ref()?.artifact.as_ref().map(|a| a.uri.clone()));
        match recorded {
            Some(uri) => Ok(uri),
            None => children::artifact_uri(model, n, settings),
        }
    };

    let run = status
        .training
        .as_ref()
        .and_then(|t| Some((version_number(&t.version)?, t)));
    let training = run.map(|(n, _)| n);
    // A run checks its data first: the training Job only once that passed.
    let training_job = match run {
        Some((n, t)) => {
            let champion = match status.champion.as_deref().and_then(version_number) {
                Some(c) => Some(artifact_of(c)?),
                None => None,
            };
            let as_of = t
                .started_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            Some(match t.stage {
                RunStage::CheckingData => {
                    children::data_check_job(model, n, &as_of, champion.as_deref(), settings)?
                }
                RunStage::Training => {
                    children::training_job(model, n, &as_of, champion.as_deref(), settings)?
                }
            })
        }
        None => None,
    };
    let kept_jobs = versions
        .iter()
        .map(|v| v.spec.version)
        .chain(training)
        .flat_map(|n| [names::training_job(name, n), names::data_check_job(name, n)])
        .collect();

    let serving_versions = serving_set(status);
    let mut serving = Vec::with_capacity(serving_versions.len() + 1);
    for n in &serving_versions {
        serving.push(children::serving(model, *n, &artifact_of(*n)?, settings)?);
    }
    let mut http_route = None;
    if !serving_versions.is_empty() {
        serving.push(children::gateway(model, settings)?);
        // An HTTPRoute attaches to a Gateway: without one configured there
        // is nothing to write (and no permission to write it).
        if settings.http_route_parent.is_some() {
            http_route = children::http_route(model, &status.traffic, settings)?;
        }
    }
    Ok(Desired {
        training_job,
        kept_jobs,
        serving,
        http_route,
    })
}

/// What one reconcile applied or kept for a Model, by kind and name; every
/// other child carrying the Model's label is an orphan and is deleted at the
/// end of the reconcile, for every cached kind alike (the pattern of
/// stackable's `ClusterResources`). ModelVersions are history, not children
/// of the status: retention deletes them. The HTTPRoute (no cache) goes
/// with its Model.
#[derive(Debug, Default)]
pub struct Kept {
    names: BTreeSet<(String, String)>,
}

impl Kept {
    /// Records that a child of kind `K` named `name` is wanted.
    pub fn keep<K: Resource<DynamicType = ()>>(&mut self, name: &str) {
        self.names
            .insert((K::kind(&()).into_owned(), name.to_owned()));
    }

    /// Records every child `desired` names.
    pub fn keep_all(&mut self, desired: &Desired) {
        for job in &desired.kept_jobs {
            self.keep::<Job>(job);
        }
        if let Some(job) = desired
            .training_job
            .as_ref()
            .and_then(|j| j.metadata.name.as_deref())
        {
            self.keep::<Job>(job);
        }
        for (deployment, service) in &desired.serving {
            if let Some(d) = deployment.metadata.name.as_deref() {
                self.keep::<Deployment>(d);
            }
            if let Some(s) = service.metadata.name.as_deref() {
                self.keep::<Service>(s);
            }
        }
    }

    /// The children among `labelled` (the Model's, found by its label) that
    /// no one wants, leaving out those already being deleted.
    pub fn orphans<'a, K: Resource<DynamicType = ()>>(&self, labelled: &'a [Arc<K>]) -> Vec<&'a K> {
        let kind = K::kind(&()).into_owned();
        labelled
            .iter()
            .map(Arc::as_ref)
            .filter(|child| child.meta().deletion_timestamp.is_none())
            .filter(|child| {
                child
                    .meta()
                    .name
                    .as_ref()
                    .is_some_and(|name| !self.names.contains(&(kind.clone(), name.clone())))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{TrafficWeight, VersionPhase};
    use crate::operator::fixtures::{VersionFixture, model_version, settings, wine};

    fn names_of<K: Resource>(objs: impl IntoIterator<Item = K>) -> Vec<String> {
        objs.into_iter()
            .filter_map(|o| o.meta().name.clone())
            .collect()
    }

    fn serving_names(desired: &Desired) -> Vec<String> {
        names_of(desired.serving.iter().map(|(d, _)| d.clone()))
    }

    #[test]
    fn a_model_in_its_first_training_has_only_its_job() {
        let status = ModelStatus {
            training: Some(crate::operator::fixtures::training_run(1)),
            ..Default::default()
        };
        let v1 = model_version(1, VersionPhase::Training);
        let desired = children(&wine(), &status, &[v1], &settings()).expect("builds");
        let job = desired.training_job.expect("a Job for v1");
        assert_eq!(job.metadata.name.as_deref(), Some("wine-quality-train-1"));
        assert!(
            desired.serving.is_empty(),
            "nothing serves yet, not even a gateway"
        );
        assert!(desired.http_route.is_none());
    }

    #[test]
    fn a_canary_serves_beside_its_champion_behind_the_gateway() {
        let status = ModelStatus {
            champion: Some("v1".into()),
            canary: Some(crate::operator::fixtures::canary(2)),
            traffic: vec![
                TrafficWeight {
                    version: "v1".into(),
                    weight: 95,
                },
                TrafficWeight {
                    version: "v2".into(),
                    weight: 5,
                },
            ],
            ..Default::default()
        };
        let versions = [
            model_version(1, VersionPhase::Champion).with_artifact("s3://old-root/v1"),
            model_version(2, VersionPhase::Canary),
        ];
        let desired = children(&wine(), &status, &versions, &settings()).expect("builds");
        assert_eq!(
            serving_names(&desired),
            ["wine-quality-v1", "wine-quality-v2", "wine-quality-gateway"]
        );
        let v1 = &desired.serving[0].0;
        let command = v1
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .expect("pod")
            .containers[0]
            .command
            .clone()
            .unwrap_or_default()
            .join(" ");
        assert!(
            command.contains("--artifact s3://old-root/v1"),
            "the artifact the version recorded: {command}"
        );
        let route = desired.http_route.expect("a Gateway is configured");
        assert_eq!(
            route.data["spec"]["rules"][0]["backendRefs"][1]["weight"],
            5
        );
        assert_eq!(
            desired.kept_jobs,
            BTreeSet::from([
                "wine-quality-datacheck-1".to_string(),
                "wine-quality-datacheck-2".to_string(),
                "wine-quality-train-1".to_string(),
                "wine-quality-train-2".to_string()
            ]),
            "each version's data check Job is kept beside its training Job"
        );
        assert!(desired.training_job.is_none());
    }

    #[test]
    fn a_candidate_in_shadow_is_served_without_any_traffic() {
        let status = ModelStatus {
            champion: Some("v1".into()),
            candidate: Some("v2".into()),
            shadow: Some(crate::api::ShadowStatus {
                version: "v2".into(),
                sample: 1.0,
                started_at: None,
                analysis: None,
            }),
            traffic: vec![TrafficWeight {
                version: "v1".into(),
                weight: 100,
            }],
            ..Default::default()
        };
        let versions = [
            model_version(1, VersionPhase::Champion),
            model_version(2, VersionPhase::Shadow),
        ];
        let desired = children(&wine(), &status, &versions, &settings()).expect("builds");
        assert_eq!(
            serving_names(&desired),
            ["wine-quality-v1", "wine-quality-v2", "wine-quality-gateway"]
        );
        let route = desired.http_route.expect("a Gateway is configured");
        let refs = route.data["spec"]["rules"][0]["backendRefs"]
            .as_array()
            .map_or(0, Vec::len);
        assert_eq!(refs, 1, "users reach the champion alone: {route:?}");
    }

    #[test]
    fn children_no_status_calls_for_are_orphans_whatever_their_kind() {
        let status = ModelStatus {
            champion: Some("v2".into()),
            traffic: vec![TrafficWeight {
                version: "v2".into(),
                weight: 100,
            }],
            ..Default::default()
        };
        // v1 was superseded and then deleted by retention: only v2 exists.
        let versions = [model_version(2, VersionPhase::Champion)];
        let desired = children(&wine(), &status, &versions, &settings()).expect("builds");
        let mut kept = Kept::default();
        kept.keep_all(&desired);

        let deployment = |name: &str| {
            let mut d = Deployment::default();
            d.metadata.name = Some(name.into());
            Arc::new(d)
        };
        let mut leaving = deployment("wine-quality-v0");
        Arc::make_mut(&mut leaving).metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::now(),
            ));
        let deployments = [
            deployment("wine-quality-v1"),
            deployment("wine-quality-v2"),
            deployment("wine-quality-gateway"),
            leaving,
        ];
        assert_eq!(
            names_of(kept.orphans(&deployments).into_iter().cloned()),
            ["wine-quality-v1"],
            "the superseded server goes; one already being deleted is left to finish"
        );
        let job = |name: &str| {
            let mut j = Job::default();
            j.metadata.name = Some(name.into());
            Arc::new(j)
        };
        let jobs = [job("wine-quality-train-1"), job("wine-quality-train-2")];
        assert_eq!(
            names_of(kept.orphans(&jobs).into_iter().cloned()),
            ["wine-quality-train-1"],
            "a deleted version's Job goes with it"
        );
        let service = |name: &str| {
            let mut s = Service::default();
            s.metadata.name = Some(name.into());
            Arc::new(s)
        };
        // The gateway's Service is named after the Model; a Deployment's
        // name kept does not keep a Service of that name.
        let services = [
            service("wine-quality"),
            service("wine-quality-v2"),
            service("wine-quality-gateway"),
        ];
        assert_eq!(
            names_of(kept.orphans(&services).into_iter().cloned()),
            ["wine-quality-gateway"]
        );
    }
}
