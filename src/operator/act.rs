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
use crate::api::{
    Model, ModelVersion, ModelVersionStatus, StartSummary, TrainingTrigger, version_name,
    version_number,
};
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
/// cache shows; `starts` are the start lineages read from finished
/// versions' manifests this reconcile.
pub fn plan(
    model: &Model,
    versions: &[ModelVersion],
    decision: &Decision,
    now: DateTime<Utc>,
    settings: &ChildSettings,
    starts: &BTreeMap<u32, StartSummary>,
) -> Result<Plan, OperatorError> {
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
            // A version without a status never had its data checked: with the
            // check on it starts there even when no run claims it (the status
            // that started it was never written), or adoption would train it
            // unchecked.
            None => {
                let stage = decision
                    .status
                    .training
                    .as_ref()
                    .filter(|t| version_number(&t.version) == Some(n))
                    .map(|t| t.stage)
                    .unwrap_or(model.spec.first_run_stage());
                children::initial_version_status(model, n, stage.phase(), settings)?
            }
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
                phase,
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
                let status = children::initial_version_status(model, n, *phase, settings)?;
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
    // A fact of the artifact, not a decision: copied into the status once,
    // when the manifest is read beside the gate report.
    for (n, start) in starts {
        if let Some((_, status)) = current.get_mut(n)
            && status.start.is_none()
        {
            status.start = Some(start.clone());
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
    starts: &BTreeMap<u32, StartSummary>,
) -> Result<Vec<ModelVersion>, OperatorError> {
    let name = model.name_any();
    let ns = model.namespace().unwrap_or_default();
    let plan = plan(
        model,
        versions,
        decision,
        ctx.clock.now(),
        &ctx.settings,
        starts,
    )?;
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
            phase: VersionPhase::Training,
        }]);
        let plan = plan(
            &wine(),
            &[],
            &d,
            at("2026-06-01T08:00:00Z"),
            &settings(),
            &BTreeMap::new(),
        )
        .expect("plans");
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
        let plan = plan(&wine(), &[v1, v2], &d, now, &settings(), &BTreeMap::new()).expect("plans");
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
            &BTreeMap::new(),
        )
        .expect("plans");
        assert_eq!(plan.delete, [1]);
        assert_eq!(
            plan.statuses.keys().copied().collect::<Vec<_>>(),
            [3],
            "v2 is unchanged; v3 gets the status its creation lost"
        );
        assert_eq!(
            plan.statuses[&3].1.phase,
            VersionPhase::CheckingData,
            "no run claims v3 (its Model's status was lost too): its data is checked first"
        );
        let mut unchecked = wine();
        unchecked
            .spec
            .gate
            .as_mut()
            .expect("the fixture has a gate")
            .data
            .enabled = false;
        let without_check = super::plan(
            &unchecked,
            &versions,
            &d,
            at("2026-06-01T08:00:00Z"),
            &settings(),
            &BTreeMap::new(),
        )
        .expect("plans");
        assert_eq!(without_check.statuses[&3].1.phase, VersionPhase::Training);
        assert_eq!(
            plan.after
                .iter()
                .map(|v| v.spec.version)
                .collect::<Vec<_>>(),
            [2, 3]
        );
    }

    #[test]
    fn a_finished_versions_start_lineage_is_copied_into_its_status_once() {
        let warm = StartSummary {
            from: crate::api::StartKind::Warm,
            parent: Some("s3://models/root/ml/wine-quality/v1".into()),
            parent_digest: Some("ab".repeat(32)),
            reason: None,
        };
        let versions = [
            model_version(1, VersionPhase::Champion),
            model_version(2, VersionPhase::Trained),
        ];
        let starts = BTreeMap::from([(2, warm.clone())]);
        let now = at("2026-06-01T08:00:00Z");
        let first = plan(
            &wine(),
            &versions,
            &decision(vec![]),
            now,
            &settings(),
            &starts,
        )
        .expect("plans");
        assert_eq!(first.statuses.keys().copied().collect::<Vec<_>>(), [2]);
        let written = &first.statuses[&2].1;
        assert_eq!(written.start.as_ref(), Some(&warm));
        assert_eq!(
            written.start.as_ref().map(StartSummary::short).as_deref(),
            Some("warm from v1 (weights abababababab)")
        );

        // Once in the status it stays as it was: nothing to write again.
        let mut v2 = versions[1].clone();
        v2.status = Some(written.clone());
        let cold = BTreeMap::from([(2, StartSummary::default())]);
        let again =
            plan(&wine(), &[v2], &decision(vec![]), now, &settings(), &cold).expect("plans");
        assert!(again.statuses.is_empty());
        assert_eq!(again.after[0].status.as_ref().unwrap().start, Some(warm));
    }
}
