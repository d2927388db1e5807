//! Act: carry out a decision's actions on the cluster. Which ModelVersions
//! to create and delete, and what each version's status becomes, is planned
//! purely ([`plan`], with `policy::version_status` saying what each action
//! leaves in a status); creating, writing and publishing Events is the IO.
//! Promotions and rollbacks are records for the registry's audit trail
//! (`audit::records`); the children follow the decided status
//! (`desired::children`).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use kube::ResourceExt;
use tracing::info;

use crate::api::names;
use crate::api::{Model, ModelVersion, ModelVersionStatus, TrainingTrigger, version_name};
use crate::policy::{Action, Decision, EventKind, apply_to_version_status, version_written_by};

use super::apply;
use super::children::{self, ChildSettings};
use super::context::Context;
use super::error::OperatorError;

/// What carrying out a decision does to the Model's versions.
#[derive(Debug, Default)]
pub struct Plan {
    /// ModelVersions to create (each made once; a restarted operator finds it).
    pub create: Vec<ModelVersion>,
    /// Statuses to write, by version, where they differ from the stored one.
    pub statuses: BTreeMap<u32, (ModelVersion, ModelVersionStatus)>,
    /// ModelVersions to delete (retention).
    pub delete: Vec<u32>,
    /// Trainings started, for the log and the metrics.
    pub started: Vec<(u32, TrainingTrigger, String)>,
    /// Every version as it is once the plan is carried out.
    pub after: Vec<ModelVersion>,
}

/// Plans the decision's version changes at `now`, from the versions the
/// cache shows.
pub fn plan(
    model: &Model,
    versions: &[ModelVersion],
    decision: &Decision,
    now: DateTime<Utc>,
    settings: &ChildSettings,
) -> Result<Plan, OperatorError> {
    let name = model.name_any();
    let mut plan = Plan::default();
    let mut current: BTreeMap<u32, (ModelVersion, ModelVersionStatus)> = BTreeMap::new();
    for v in versions {
        let n = v.spec.version;
        let status = match &v.status {
            Some(s) => s.clone(),
            // The write of its first status failed after the version was
            // created (the create is not repeated): write it now, or the
            // version would never learn where its artifact and gate report
            // are, and wait for them forever.
            None => children::initial_version_status(
                children::artifact_uri(model, n, settings)?,
                names::training_job(&name, n),
            ),
        };
        current.insert(n, (v.clone(), status));
    }
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
                let status = children::initial_version_status(
                    children::artifact_uri(model, n, settings)?,
                    names::training_job(&name, n),
                );
                plan.create.push(mv.clone());
                plan.started.push((n, *trigger, reason.clone()));
                current.insert(n, (mv, status));
            }
            Action::DeleteVersion { version, .. } => {
                current.remove(version);
                plan.delete.push(*version);
            }
            other => {
                if let Some((_, status)) =
                    version_written_by(other).and_then(|n| current.get_mut(&n))
                {
                    apply_to_version_status(status, other, now);
                }
            }
        }
    }
    for (n, (mv, status)) in current {
        let mut after = mv.clone();
        if mv.status.as_ref() != Some(&status) {
            after.status = Some(status.clone());
            plan.statuses.insert(n, (mv, status));
        }
        plan.after.push(after);
    }
    Ok(plan)
}

/// Carries out the decision: creates and deletes ModelVersions, writes
/// their statuses and publishes its Events. Returns the versions as they
/// now are.
pub async fn act(
    model: &Model,
    ctx: &Context,
    versions: &[ModelVersion],
    decision: &Decision,
) -> Result<Vec<ModelVersion>, OperatorError> {
    let name = model.name_any();
    let ns = model.namespace().unwrap_or_default();
    let plan = plan(model, versions, decision, ctx.clock.now(), &ctx.settings)?;
    for mv in &plan.create {
        apply::create_once(&ctx.client, mv).await?;
    }
    for (n, trigger, reason) in &plan.started {
        ctx.telemetry.training_started(*trigger);
        info!(version = %version_name(*n), ?trigger, %reason, "training started");
    }
    for (mv, status) in plan.statuses.values() {
        apply::write_status(&ctx.client, mv, status).await?;
    }
    for n in &plan.delete {
        apply::delete::<ModelVersion>(&ctx.client, &ns, &names::version_object(&name, *n)).await?;
    }
    for action in &decision.actions {
        if let Action::RecordEvent {
            kind,
            reason,
            message,
        } = action
        {
            publish(model, ctx, *kind, reason, message).await?;
        }
    }
    Ok(plan.after)
}

/// Publishes a decision's Event, with a link to the Model's dashboard page
/// when there is a dashboard.
async fn publish(
    model: &Model,
    ctx: &Context,
    kind: EventKind,
    reason: &str,
    message: &str,
) -> Result<(), OperatorError> {
    let message = match &ctx.dashboard_url {
        Some(base) => apply::with_link(
            message,
            &crate::api::links::absolute(
                base,
                &crate::api::links::model_path(
                    &model.namespace().unwrap_or_default(),
                    &model.name_any(),
                ),
            ),
        ),
        None => message.to_string(),
    };
    apply::event(&ctx.recorder, model, kind, reason, "Decide", &message).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ModelStatus, VersionPhase};
    use crate::operator::fixtures::{VersionFixture, at, model_version, settings, wine};

    fn decision(actions: Vec<Action>) -> Decision {
        Decision {
            actions,
            status: ModelStatus::default(),
            requeue_after: None,
        }
    }

    #[test]
    fn a_started_training_gets_its_version_created_in_training() {
        let d = decision(vec![Action::StartTraining {
            version: 1,
            trigger: TrainingTrigger::Initial,
            reason: "first version".into(),
            config_hash: "abc".into(),
        }]);
        let plan = plan(&wine(), &[], &d, at("2026-06-01T08:00:00Z"), &settings()).expect("plans");
        assert_eq!(plan.create.len(), 1);
        assert_eq!(
            plan.create[0].metadata.name.as_deref(),
            Some("wine-quality-v1")
        );
        let (_, status) = &plan.statuses[&1];
        assert_eq!(status.phase, VersionPhase::Training);
        assert_eq!(
            status.artifact.as_ref().map(|a| a.uri.as_str()),
            Some("s3://models/root/ml/wine-quality/v1")
        );
        assert_eq!(
            plan.started,
            [(1, TrainingTrigger::Initial, "first version".to_string())]
        );
        assert_eq!(plan.after.len(), 1);
    }

    #[test]
    fn a_promotion_moves_both_versions_and_times_the_tenures() {
        let now = at("2026-06-01T09:00:00Z");
        let mut v1 = model_version(1, VersionPhase::Champion);
        if let Some(s) = v1.status.as_mut() {
            s.champion_since = Some(at("2026-05-01T00:00:00Z"));
        }
        let v2 = model_version(2, VersionPhase::Canary);
        let d = decision(vec![
            Action::Promote {
                version: 2,
                previous: Some(1),
                reason: "all steps passed".into(),
            },
            Action::SetVersionPhase {
                version: 2,
                phase: VersionPhase::Champion,
                reason: "all steps passed".into(),
            },
            Action::SetVersionPhase {
                version: 1,
                phase: VersionPhase::Superseded,
                reason: "superseded by v2".into(),
            },
        ]);
        let plan = plan(&wine(), &[v1, v2], &d, now, &settings()).expect("plans");
        let (_, v2) = &plan.statuses[&2];
        assert_eq!(
            (v2.phase, v2.champion_since),
            (VersionPhase::Champion, Some(now))
        );
        let (_, v1) = &plan.statuses[&1];
        assert_eq!(
            (v1.phase, v1.champion_until),
            (VersionPhase::Superseded, Some(now))
        );
        assert!(plan.create.is_empty() && plan.delete.is_empty());
    }

    #[test]
    fn only_changed_statuses_are_written_and_a_lost_first_status_is_rewritten() {
        let d = decision(vec![Action::DeleteVersion {
            version: 1,
            reason: "retention".into(),
        }]);
        let versions = [
            model_version(1, VersionPhase::Superseded),
            model_version(2, VersionPhase::Champion),
            model_version(3, VersionPhase::Training).without_status(),
        ];
        let plan = plan(
            &wine(),
            &versions,
            &d,
            at("2026-06-01T08:00:00Z"),
            &settings(),
        )
        .expect("plans");
        assert_eq!(plan.delete, [1]);
        assert_eq!(
            plan.statuses.keys().copied().collect::<Vec<_>>(),
            [3],
            "v2 is unchanged; v3 gets the status its creation lost"
        );
        assert_eq!(plan.statuses[&3].1.phase, VersionPhase::Training);
        assert_eq!(
            plan.after
                .iter()
                .map(|v| v.spec.version)
                .collect::<Vec<_>>(),
            [2, 3]
        );
    }
}
