//! The decision core: one pure function from the Model, its versions and what
//! was observed (and `now`) to actions and the new status.
//!
//! [`decide`] runs the steps in order; each concern has its module:
//! `training` (triggers, blocks, finished Jobs), `gating` (the gate
//! verdict), `shadow_stage` (the shadow stage between gate and canary),
//! `rollout` (canary steps, analysis, promotion, rollback),
//! `requests` (manual requests) and `status` (retention, phase,
//! conditions). They share the decision's working state, `Ctx`.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::api::{
    AnalysisMethod, AnalysisOutcome, CanaryStatus, ConditionStatus, DataCheckSummary, GateSummary,
    GateVerdict, MissedRunPolicy, Model, ModelPhase, ModelSpec, ModelStatus, ModelVersion,
    NextTraining, RetrainSchedule, RolloutOutcome, RunStage, TrafficWeight, TrainingRun,
    TrainingTrigger, VersionPhase, version_name, version_number,
};

use super::action::{Action, Decision, EventKind};
use super::canary::{StepWindow, analyse};
use super::conditions::{self, set_condition};
use super::drift::{DriftUpdate, update_drift};
use super::estimate::{EstimateUpdate, update_estimate, update_realised};
use super::observe::{DataCheckOutcome, JobState, ManualAction, Observations};

mod gating;
mod requests;
mod rollout;
mod shadow_stage;
mod status;
mod training;

use gating::*;
use requests::*;
use rollout::*;
use shadow_stage::*;
use status::*;
use training::*;

/// A schedule slot seen later than this after its time counts as missed.
pub const SCHEDULE_GRACE: Duration = Duration::from_secs(5 * 60);
/// Most missed slots counted for a message.
const MISSED_SLOT_CAP: usize = 1000;
/// Analyses kept per canary in status.
const ANALYSES_KEPT: usize = 20;
/// How often to look again while waiting for something without a deadline.
const POLL: Duration = Duration::from_secs(30);

/// Hash of what determines a trained model: task, data and hyper-parameters,
/// not where the Job runs. A change retrains.
pub fn config_hash(spec: &ModelSpec) -> String {
    let t = &spec.training;
    let relevant = serde_json::json!({
        "task": spec.task,
        "data": spec.data,
        "architecture": spec.architecture,
        "training": {
            "epochs": t.epochs,
            "batchSize": t.batch_size,
            "learningRate": t.learning_rate,
            "optimizer": t.optimizer,
            "weightDecay": t.weight_decay,
            "seed": t.seed,
            "earlyStopping": t.early_stopping,
        },
    });
    let digest = Sha256::digest(relevant.to_string().as_bytes());
    hex::encode(&digest[..8])
}

fn std_duration(d: chrono::Duration) -> Duration {
    d.to_std().unwrap_or(Duration::ZERO)
}

fn chrono_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

fn human(d: chrono::Duration) -> String {
    let secs = d.num_seconds().max(0);
    match secs {
        s if s >= 3600 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        s if s >= 60 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}

/// Working state of one decision.
struct Ctx<'a> {
    spec: &'a ModelSpec,
    obs: &'a Observations,
    now: DateTime<Utc>,
    status: ModelStatus,
    /// Version number → phase, updated as phases are set.
    versions: BTreeMap<u32, VersionPhase>,
    actions: Vec<Action>,
    requeue: Option<Duration>,
    /// A training run ended in this decision: automatic triggers wait for the
    /// next reconcile, so the end is visible (status, Event) before anything new starts.
    training_ended: Option<String>,
    /// The run that ended in this decision failed: the evidence that would
    /// restart it at once is consumed (see [`consume_pending_triggers`]).
    training_failed: bool,
    /// Versions whose shadow stage refused them (their rollout record says
    /// [`SHADOW_FAILED`]), for the conditions.
    shadow_failed: std::collections::BTreeSet<u32>,
}

impl Ctx<'_> {
    fn event(&mut self, kind: EventKind, reason: &str, message: String) {
        self.actions.push(Action::RecordEvent {
            kind,
            reason: reason.into(),
            message,
        });
    }

    fn set_phase(&mut self, version: u32, phase: VersionPhase, reason: String) {
        self.versions.insert(version, phase);
        self.actions.push(Action::SetVersionPhase {
            version,
            phase,
            reason,
        });
    }

    fn requeue_in(&mut self, d: Duration) {
        let d = d.max(Duration::from_secs(1));
        self.requeue = Some(self.requeue.map_or(d, |r| r.min(d)));
    }

    fn champion(&self) -> Option<u32> {
        self.status.champion.as_deref().and_then(version_number)
    }

    fn candidate(&self) -> Option<u32> {
        self.status.candidate.as_deref().and_then(version_number)
    }

    fn training(&self) -> Option<u32> {
        self.status
            .training
            .as_ref()
            .and_then(|t| version_number(&t.version))
    }

    /// What keeps a new training from starting, in words.
    fn busy(&self) -> Option<String> {
        if let Some(t) = &self.status.training {
            return Some(format!("{} is still training", t.version));
        }
        if let Some(job) = self
            .obs
            .jobs
            .iter()
            .find(|j| matches!(j.state, JobState::Pending | JobState::Running))
        {
            return Some(format!(
                "training Job of {} is still running",
                version_name(job.version)
            ));
        }
        if let Some(c) = &self.status.candidate {
            return Some(if self.status.shadow.is_some() {
                format!("{c} is in its shadow stage; let it finish or roll it back first")
            } else if self.status.canary.is_some() {
                format!("{c} is in its canary; promote or roll it back first")
            } else {
                format!("{c} waits for its gate report")
            });
        }
        None
    }
}

/// Splits traffic between the champion and a canary at `weight` percent.
fn canary_split(champion: u32, canary: u32, weight: u32) -> Vec<TrafficWeight> {
    let weight = weight.min(100);
    vec![
        TrafficWeight {
            version: version_name(champion),
            weight: 100 - weight,
        },
        TrafficWeight {
            version: version_name(canary),
            weight,
        },
    ]
}

fn only(version: u32) -> Vec<TrafficWeight> {
    vec![TrafficWeight {
        version: version_name(version),
        weight: 100,
    }]
}

/// Decides what to do next. Pure: the same inputs give the same decision.
pub fn decide(model: &Model, versions: &[ModelVersion], obs: &Observations) -> Decision {
    let spec = &model.spec;
    let mut ctx = Ctx {
        spec,
        obs,
        now: obs.now,
        status: model.status.clone().unwrap_or_default(),
        versions: versions
            .iter()
            .map(|v| {
                (
                    v.spec.version,
                    v.status.as_ref().map(|s| s.phase).unwrap_or_default(),
                )
            })
            .collect(),
        actions: Vec::new(),
        requeue: None,
        training_ended: None,
        training_failed: false,
        shadow_failed: versions
            .iter()
            .filter(|v| {
                v.status
                    .as_ref()
                    .and_then(|s| s.rollout.as_ref())
                    .is_some_and(|r| r.result == SHADOW_FAILED)
            })
            .map(|v| v.spec.version)
            .collect(),
    };
    ctx.status.next_version = ctx.status.next_version.max(1);
    if let Some(max) = ctx.versions.keys().next_back() {
        // Never reuse a version number, even if status was lost.
        ctx.status.next_version = ctx.status.next_version.max(max + 1);
    }
    ctx.status.observed_generation = obs.generation;
    adopt_orphaned_training(&mut ctx, versions);

    match spec.validate() {
        Err(invalid) => {
            let message = invalid.to_string();
            let changed = set_condition(
                &mut ctx.status,
                obs,
                conditions::SPEC_VALID,
                ConditionStatus::False,
                "InvalidSpec",
                &message,
            );
            if changed {
                ctx.event(EventKind::Warning, "InvalidSpec", message);
            }
            observe_training(&mut ctx);
            return finish(ctx);
        }
        Ok(()) => {
            set_condition(
                &mut ctx.status,
                obs,
                conditions::SPEC_VALID,
                ConditionStatus::True,
                "Valid",
                "spec passed validation",
            );
        }
    }

    observe_training(&mut ctx);
    observe_gate(&mut ctx);
    observe_source(&mut ctx);
    handle_request(&mut ctx);
    if !spec.paused {
        advance_shadow(&mut ctx);
        advance_canary(&mut ctx);
    }
    let mut drift = update_drift(&mut ctx.status, spec, obs);
    if let Some((kind, reason, message)) =
        super::test_set::update_test_set_freshness(&mut ctx.status, spec, obs)
    {
        ctx.event(kind, reason, message);
    }
    let mut estimate = update_estimate(&mut ctx.status, spec, obs);
    if let Some((kind, reason, message)) = update_realised(&mut ctx.status, obs) {
        ctx.event(kind, reason, message);
    }
    if let Some(message) = estimate.became_unreliable.take() {
        ctx.event(EventKind::Warning, "EstimateUnreliable", message);
    }
    if ctx.training_failed {
        consume_pending_triggers(&mut ctx);
        drift.due = false;
        estimate.due = false;
    }
    consider_training(&mut ctx, &drift, &estimate);
    retention(&mut ctx);
    finish(ctx)
}

/// The newest version in `phase` numbered above `after`.
fn newest_in(versions: &[ModelVersion], phase: VersionPhase, after: u32) -> Option<&ModelVersion> {
    versions
        .iter()
        .filter(|v| v.spec.version > after)
        .filter(|v| v.status.as_ref().map(|s| s.phase).unwrap_or_default() == phase)
        .max_by_key(|v| v.spec.version)
}
