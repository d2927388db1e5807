//! The decision core: one pure function from the Model, its versions and what
//! was observed (and `now`) to actions and the new status.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::api::{
    AnalysisOutcome, CanaryStatus, ConditionStatus, GateSummary, GateVerdict, MissedRunPolicy,
    Model, ModelPhase, ModelSpec, ModelStatus, ModelVersion, NextTraining, RetrainSchedule,
    RolloutOutcome, TrafficWeight, TrainingRun, TrainingTrigger, VersionPhase, parse_duration,
    version_name, version_number,
};

use super::action::{Action, Decision, EventKind};
use super::canary::{StepWindow, analyse};
use super::conditions::set_condition;
use super::drift::{DriftUpdate, update_drift};
use super::observe::{JobState, ManualAction, Observations};

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

    fn set_traffic(&mut self, weights: Vec<TrafficWeight>, reason: String) {
        self.status.traffic = weights.clone();
        self.actions.push(Action::SetTraffic { weights, reason });
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
            return Some(if self.status.canary.is_some() {
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
                "SpecValid",
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
                "SpecValid",
                ConditionStatus::True,
                "Valid",
                "spec passed validation",
            );
        }
    }

    observe_training(&mut ctx);
    observe_gate(&mut ctx);
    handle_request(&mut ctx);
    if !spec.paused {
        advance_canary(&mut ctx);
    }
    let mut drift = update_drift(&mut ctx.status, spec, obs);
    if ctx.training_failed {
        consume_pending_triggers(&mut ctx);
        drift.due = false;
    }
    consider_training(&mut ctx, &drift);
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

/// Versions that status does not know of (status lost or restored from a
/// backup) are taken back from their phases: the champion keeps serving, a
/// canary restarts from its first step, a training run is finished, not
/// duplicated.
fn adopt_orphaned_training(ctx: &mut Ctx, versions: &[ModelVersion]) {
    if ctx.status.champion.is_none()
        && let Some(v) = newest_in(versions, VersionPhase::Champion, 0)
    {
        let n = v.spec.version;
        ctx.status.champion = Some(version_name(n));
        if ctx.status.traffic.is_empty() {
            ctx.set_traffic(
                only(n),
                format!(
                    "{} restored as champion from its ModelVersion",
                    version_name(n)
                ),
            );
        }
    }
    // Only versions newer than the champion can be its candidate: a cache that
    // still shows the champion as Trained (its phase write not yet seen) must
    // not make it a candidate of itself.
    let champion = ctx.champion().unwrap_or(0);
    if ctx.status.candidate.is_some() && ctx.candidate() == ctx.champion() {
        ctx.status.candidate = None;
    }
    if ctx.status.candidate.is_none() && ctx.status.champion.is_some() {
        if let Some(v) = newest_in(versions, VersionPhase::Canary, champion) {
            ctx.status.candidate = Some(version_name(v.spec.version));
            ctx.status.canary = Some(CanaryStatus {
                version: version_name(v.spec.version),
                step: 0,
                step_started_at: None,
                failures: 0,
                awaiting_promotion: false,
                analyses: Vec::new(),
            });
        } else if let Some(v) = newest_in(versions, VersionPhase::Trained, champion) {
            ctx.status.candidate = Some(version_name(v.spec.version));
        }
    }
    if ctx.status.training.is_some() {
        return;
    }
    if let Some(v) = newest_in(versions, VersionPhase::Training, 0) {
        let lineage = &v.spec.lineage;
        ctx.status.training = Some(TrainingRun {
            version: version_name(v.spec.version),
            trigger: lineage.trigger,
            reason: lineage.reason.clone(),
            started_at: v
                .metadata
                .creation_timestamp
                .as_ref()
                .and_then(|t| DateTime::from_timestamp(t.0.as_second(), 0))
                .unwrap_or(ctx.now),
            config_hash: lineage.config_hash.clone(),
            generation: None,
            outcome: None,
            finished_at: None,
        });
    }
}

/// A finished training Job: its version becomes the candidate, or failed.
fn observe_training(ctx: &mut Ctx) {
    let Some(run) = ctx.status.training.clone() else {
        return;
    };
    let Some(n) = version_number(&run.version) else {
        ctx.status.training = None;
        return;
    };
    match ctx.obs.job(n) {
        Some(JobState::Succeeded) => {
            let mut done = run.clone();
            done.outcome = Some("Succeeded".into());
            done.finished_at = Some(ctx.now);
            ctx.status.last_training = Some(done);
            ctx.status.training = None;
            ctx.training_ended = Some(format!(
                "{} finished training in this reconcile",
                run.version
            ));
            ctx.status.candidate = Some(run.version.clone());
            ctx.set_phase(
                n,
                VersionPhase::Trained,
                format!(
                    "training Job succeeded after {}",
                    human(ctx.now - run.started_at)
                ),
            );
            let next = if ctx.spec.gate.is_some() {
                "evaluating it against the gate"
            } else {
                "no gate configured"
            };
            ctx.event(
                EventKind::Normal,
                "TrainingSucceeded",
                format!("{} trained ({}); {next}", run.version, run.reason),
            );
        }
        Some(JobState::Failed { message }) => {
            let mut done = run.clone();
            done.outcome = Some(format!("Failed: {message}"));
            done.finished_at = Some(ctx.now);
            ctx.status.last_training = Some(done);
            ctx.status.training = None;
            ctx.training_ended = Some(format!("{} failed in this reconcile", run.version));
            ctx.training_failed = true;
            ctx.set_phase(
                n,
                VersionPhase::Failed,
                format!("training Job failed: {message}"),
            );
            ctx.event(
                EventKind::Warning,
                "TrainingFailed",
                format!(
                    "{} training failed: {message}; automatic retraining waits for new evidence \
                     (fresh drift windows, the next schedule slot, changed data or spec) or a manual retrain",
                    run.version
                ),
            );
        }
        _ => {}
    }
}

fn gate_summary(verdict: &GateVerdict, champion: Option<u32>) -> GateSummary {
    let failed: Vec<_> = verdict.failures().cloned().collect();
    let total = verdict.checks.len();
    GateSummary {
        passed: verdict.passed,
        summary: if verdict.passed {
            format!("passed {total}/{total}")
        } else {
            format!("failed {}/{total}", failed.len())
        },
        failed_checks: failed,
        champion: champion.map(version_name),
    }
}

/// A trained candidate meets its gate verdict: rejected, promoted (first
/// version) or sent into its canary.
fn observe_gate(ctx: &mut Ctx) {
    let Some(n) = ctx.candidate() else { return };
    if ctx.status.canary.is_some() || ctx.versions.get(&n) != Some(&VersionPhase::Trained) {
        return;
    }
    let passed_reason = if ctx.spec.gate.is_none() {
        "no gate configured".to_string()
    } else {
        let Some(verdict) = ctx.obs.gate(n) else {
            return;
        };
        let summary = gate_summary(verdict, ctx.champion());
        ctx.actions.push(Action::RecordGate {
            version: n,
            gate: summary.clone(),
        });
        if !verdict.passed {
            let failures: Vec<&str> = verdict.failures().map(|c| c.message.as_str()).collect();
            let message = format!("gate {}: {}", summary.summary, failures.join("; "));
            ctx.set_phase(n, VersionPhase::Rejected, message.clone());
            ctx.status.candidate = None;
            ctx.event(
                EventKind::Warning,
                "GateFailed",
                format!("{} rejected: {message}", version_name(n)),
            );
            return;
        }
        format!("gate {}", summary.summary)
    };
    if ctx.spec.paused {
        return;
    }
    match ctx.champion() {
        None => promote(
            ctx,
            n,
            format!("first version; {passed_reason}; no champion to compare with"),
            false,
        ),
        Some(_) => start_canary(ctx, n, passed_reason),
    }
}

fn start_canary(ctx: &mut Ctx, n: u32, passed_reason: String) {
    ctx.actions.push(Action::CreateCanary {
        version: n,
        reason: passed_reason.clone(),
    });
    ctx.set_phase(
        n,
        VersionPhase::Canary,
        format!("{passed_reason}; canary started"),
    );
    ctx.status.canary = Some(CanaryStatus {
        version: version_name(n),
        step: 0,
        step_started_at: None,
        failures: 0,
        awaiting_promotion: false,
        analyses: Vec::new(),
    });
    let first = ctx.spec.rollout.steps.first().map_or(0, |s| s.weight);
    ctx.event(
        EventKind::Normal,
        "CanaryStarted",
        format!(
            "{} passed the {passed_reason}; canary goes to {first} % once ready",
            version_name(n)
        ),
    );
    set_canary_weight(ctx);
}

/// Gives the canary its step's weight once its Deployment is ready; stable
/// keeps all traffic until then.
fn set_canary_weight(ctx: &mut Ctx) {
    let (Some(champion), Some(mut canary)) = (ctx.champion(), ctx.status.canary.clone()) else {
        return;
    };
    let Some(n) = version_number(&canary.version) else {
        return;
    };
    if !ctx.obs.ready_versions.contains(&n) {
        ctx.requeue_in(POLL);
        return;
    }
    let steps = &ctx.spec.rollout.steps;
    let i = (canary.step as usize).min(steps.len().saturating_sub(1));
    let Some(step) = steps.get(i) else { return };
    canary.step = i as u32;
    canary.step_started_at = Some(ctx.now);
    let pause = parse_duration(&step.pause).unwrap_or(Duration::ZERO);
    ctx.set_traffic(
        canary_split(champion, n, step.weight),
        format!(
            "canary {} step {}/{}: {} % for {}",
            canary.version,
            i + 1,
            steps.len(),
            step.weight,
            step.pause
        ),
    );
    ctx.status.canary = Some(canary);
    ctx.requeue_in(pause);
}

/// Records how version `n`'s canary ended, if it had one.
fn record_rollout(ctx: &mut Ctx, n: u32, result: &str, message: &str) {
    let Some(canary) = ctx
        .status
        .canary
        .as_ref()
        .filter(|c| version_number(&c.version) == Some(n))
    else {
        return;
    };
    let steps_passed = canary
        .analyses
        .iter()
        .filter(|a| a.outcome == AnalysisOutcome::Passed)
        .count() as u32;
    let rollout = RolloutOutcome {
        result: result.to_string(),
        steps_passed,
        message: message.to_string(),
        analyses: canary.analyses.clone(),
    };
    ctx.actions.push(Action::RecordRollout {
        version: n,
        rollout,
    });
}

fn promote(ctx: &mut Ctx, n: u32, reason: String, manual: bool) {
    record_rollout(
        ctx,
        n,
        if manual {
            "ManuallyPromoted"
        } else {
            "Promoted"
        },
        &reason,
    );
    let previous = ctx.champion().filter(|p| *p != n);
    ctx.set_traffic(only(n), format!("{} promoted: {reason}", version_name(n)));
    ctx.actions.push(Action::Promote {
        version: n,
        previous,
        reason: reason.clone(),
    });
    ctx.set_phase(n, VersionPhase::Champion, reason.clone());
    if let Some(p) = previous {
        ctx.set_phase(
            p,
            VersionPhase::Superseded,
            format!("superseded by {}", version_name(n)),
        );
    }
    ctx.status.champion = Some(version_name(n));
    if ctx.candidate() == Some(n) {
        ctx.status.candidate = None;
    }
    ctx.status.canary = None;
    let (kind, why) = if manual {
        (EventKind::Warning, "ManualPromotion")
    } else {
        (EventKind::Normal, "Promoted")
    };
    ctx.event(
        kind,
        why,
        format!("{} is champion at 100 %: {reason}", version_name(n)),
    );
}

fn rollback_canary(ctx: &mut Ctx, n: u32, reason: String) {
    record_rollout(ctx, n, "RolledBack", &reason);
    let champion = ctx.champion();
    if let Some(c) = champion {
        ctx.set_traffic(
            only(c),
            format!("{} rolled back: {reason}", version_name(n)),
        );
    }
    ctx.actions.push(Action::Rollback {
        version: n,
        restored: champion,
        reason: reason.clone(),
    });
    ctx.set_phase(n, VersionPhase::RolledBack, reason.clone());
    ctx.status.candidate = None;
    ctx.status.canary = None;
    let restored = champion.map_or("nothing".into(), |c| {
        format!("{} at 100 %", version_name(c))
    });
    ctx.event(
        EventKind::Warning,
        "RolledBack",
        format!("{} rolled back, {restored}: {reason}", version_name(n)),
    );
}

fn refuse(ctx: &mut Ctx, id: &str, what: &str, why: String) {
    ctx.event(
        EventKind::Warning,
        "RequestRefused",
        format!("request {id} ({what}) refused: {why}"),
    );
}

fn handle_request(ctx: &mut Ctx) {
    let Some(request) = ctx.obs.request.clone() else {
        return;
    };
    if ctx.status.handled_request.as_deref() == Some(request.id.as_str()) {
        return;
    }
    ctx.status.handled_request = Some(request.id.clone());
    let id = request.id.as_str();
    match request.action {
        ManualAction::Retrain { reason } => {
            if ctx.spec.paused {
                return refuse(
                    ctx,
                    id,
                    "retrain",
                    "the Model is paused (spec.paused)".into(),
                );
            }
            if let Some(busy) = ctx.busy() {
                return refuse(ctx, id, "retrain", busy);
            }
            let reason = reason.unwrap_or_else(|| "asked for by a user".into());
            start_training(
                ctx,
                TrainingTrigger::Manual,
                format!("manual retrain (request {id}): {reason}"),
            );
        }
        ManualAction::Promote { version } => {
            let canary = ctx
                .status
                .canary
                .as_ref()
                .and_then(|c| version_number(&c.version));
            let target = version.or(canary);
            let Some(n) = target else {
                return refuse(
                    ctx,
                    id,
                    "promote",
                    "no canary in progress and no version named".into(),
                );
            };
            if canary.is_some_and(|c| c != n) {
                return refuse(
                    ctx,
                    id,
                    "promote",
                    format!(
                        "{} is in its canary; finish it first",
                        version_name(canary.unwrap_or(n))
                    ),
                );
            }
            match ctx.versions.get(&n).copied() {
                Some(VersionPhase::Canary) => {
                    let at = ctx.status.canary.as_ref().map_or(0, |c| c.step + 1);
                    let reason = format!(
                        "promoted by request {id} at canary step {at}/{}",
                        ctx.spec.rollout.steps.len()
                    );
                    promote(ctx, n, reason, true);
                }
                Some(
                    phase @ (VersionPhase::Trained
                    | VersionPhase::Rejected
                    | VersionPhase::RolledBack
                    | VersionPhase::Superseded),
                ) => {
                    let note = if phase == VersionPhase::Rejected {
                        ", overriding its failed gate"
                    } else {
                        ""
                    };
                    promote(
                        ctx,
                        n,
                        format!("promoted by request {id} from phase {phase:?}{note}"),
                        true,
                    );
                }
                Some(VersionPhase::Champion) => refuse(
                    ctx,
                    id,
                    "promote",
                    format!("{} is already champion", version_name(n)),
                ),
                Some(phase) => refuse(
                    ctx,
                    id,
                    "promote",
                    format!("{} is in phase {phase:?}", version_name(n)),
                ),
                None => refuse(
                    ctx,
                    id,
                    "promote",
                    format!("{} does not exist", version_name(n)),
                ),
            }
        }
        ManualAction::Rollback => {
            if let Some(n) = ctx
                .status
                .canary
                .as_ref()
                .and_then(|c| version_number(&c.version))
            {
                return rollback_canary(ctx, n, format!("rolled back by request {id}"));
            }
            let Some(champion) = ctx.champion() else {
                return refuse(ctx, id, "rollback", "there is no champion".into());
            };
            let previous = ctx
                .versions
                .iter()
                .filter(|(v, p)| **p == VersionPhase::Superseded && **v < champion)
                .map(|(v, _)| *v)
                .next_back();
            let Some(previous) = previous else {
                return refuse(
                    ctx,
                    id,
                    "rollback",
                    format!(
                        "no superseded version to restore before {}",
                        version_name(champion)
                    ),
                );
            };
            let reason = format!(
                "champion {} rolled back by request {id}",
                version_name(champion)
            );
            ctx.set_traffic(only(previous), reason.clone());
            ctx.actions.push(Action::Rollback {
                version: champion,
                restored: Some(previous),
                reason: reason.clone(),
            });
            ctx.set_phase(champion, VersionPhase::RolledBack, reason.clone());
            ctx.set_phase(
                previous,
                VersionPhase::Champion,
                format!("restored by request {id}"),
            );
            ctx.status.champion = Some(version_name(previous));
            ctx.event(
                EventKind::Warning,
                "RolledBack",
                format!("{reason}; {} serves 100 %", version_name(previous)),
            );
        }
    }
}

/// Waits out the step's pause, analyses, then advances, promotes, holds or rolls back.
fn advance_canary(ctx: &mut Ctx) {
    let Some(mut canary) = ctx.status.canary.clone() else {
        return;
    };
    let Some(n) = version_number(&canary.version) else {
        return;
    };
    let Some(started) = canary.step_started_at else {
        set_canary_weight(ctx);
        return;
    };
    if canary.awaiting_promotion {
        return;
    }
    let steps = ctx.spec.rollout.steps.clone();
    let i = (canary.step as usize).min(steps.len().saturating_sub(1));
    let Some(step) = steps.get(i) else { return };
    let pause = chrono_duration(parse_duration(&step.pause).unwrap_or(Duration::ZERO));
    if ctx.now < started + pause {
        ctx.requeue_in(std_duration(started + pause - ctx.now));
        return;
    }
    let window = StepWindow {
        step: i as u32,
        steps: steps.len() as u32,
        weight: step.weight,
        started_at: started,
        now: ctx.now,
    };
    let metrics = ctx.obs.canary_metrics.as_ref().filter(|m| m.version == n);
    let analysis = analyse(&ctx.spec.rollout.analysis, window, metrics);
    let outcome = analysis.outcome;
    let message = analysis.message.clone();
    let repeated_inconclusive = outcome == AnalysisOutcome::Inconclusive
        && canary
            .analyses
            .last()
            .is_some_and(|a| a.outcome == AnalysisOutcome::Inconclusive && a.step == i as u32);
    if repeated_inconclusive {
        // Keep one record per inconclusive stretch, with the latest numbers.
        canary.analyses.pop();
    }
    canary.analyses.push(analysis);
    if canary.analyses.len() > ANALYSES_KEPT {
        canary.analyses.remove(0);
    }
    let limit = ctx.spec.rollout.analysis.failure_limit;
    match outcome {
        AnalysisOutcome::Passed if i + 1 < steps.len() => {
            canary.step = i as u32 + 1;
            ctx.status.canary = Some(canary);
            ctx.event(
                EventKind::Normal,
                "CanaryStepPassed",
                format!("{}: {message}", version_name(n)),
            );
            set_canary_weight(ctx);
        }
        AnalysisOutcome::Passed => {
            if ctx.spec.rollout.auto_promote {
                ctx.status.canary = Some(canary);
                promote(
                    ctx,
                    n,
                    format!("all {} canary steps passed; last: {message}", steps.len()),
                    false,
                );
            } else {
                canary.awaiting_promotion = true;
                ctx.status.canary = Some(canary);
                ctx.event(
                    EventKind::Normal,
                    "AwaitingPromotion",
                    format!(
                        "{}: all {} steps passed; autoPromote is off, run `driftline promote`",
                        version_name(n),
                        steps.len()
                    ),
                );
            }
        }
        AnalysisOutcome::Failed => {
            canary.failures += 1;
            let failures = canary.failures;
            if failures > limit {
                ctx.status.canary = Some(canary);
                rollback_canary(
                    ctx,
                    n,
                    format!("analysis failed {failures} time(s), failureLimit {limit}: {message}"),
                );
            } else {
                // Analyse the step again on a fresh window.
                canary.step_started_at = Some(ctx.now);
                ctx.status.canary = Some(canary);
                ctx.event(
                    EventKind::Warning,
                    "CanaryAnalysisFailed",
                    format!(
                        "{}: failure {failures} of {limit} tolerated: {message}",
                        version_name(n)
                    ),
                );
                ctx.requeue_in(std_duration(pause));
            }
        }
        AnalysisOutcome::Inconclusive => {
            let deadline = ctx
                .spec
                .rollout
                .progress_deadline
                .as_deref()
                .and_then(|d| parse_duration(d).ok())
                .map(chrono_duration);
            let waited = ctx.now - (started + pause);
            ctx.status.canary = Some(canary);
            if let Some(deadline) = deadline.filter(|d| waited >= *d) {
                let reason = format!(
                    "no conclusive analysis {} after the pause (progressDeadline {}): {message}",
                    human(waited),
                    human(deadline)
                );
                rollback_canary(ctx, n, reason);
                return;
            }
            if let Some(deadline) = deadline {
                ctx.requeue_in(std_duration(deadline - waited));
            }
            if !repeated_inconclusive {
                ctx.event(
                    EventKind::Normal,
                    "CanaryInconclusive",
                    format!("{}: {message}", version_name(n)),
                );
            }
            ctx.requeue_in(std_duration(pause).clamp(POLL, Duration::from_secs(600)));
        }
    }
}

fn start_training(ctx: &mut Ctx, trigger: TrainingTrigger, reason: String) {
    if ctx.status.training.is_some() {
        return;
    }
    let n = ctx.status.next_version;
    ctx.status.next_version = n + 1;
    let hash = config_hash(ctx.spec);
    ctx.actions.push(Action::StartTraining {
        version: n,
        trigger,
        reason: reason.clone(),
        config_hash: hash.clone(),
    });
    ctx.versions.insert(n, VersionPhase::Training);
    ctx.status.training = Some(TrainingRun {
        version: version_name(n),
        trigger,
        reason: reason.clone(),
        started_at: ctx.now,
        config_hash: hash,
        generation: ctx.obs.generation,
        outcome: None,
        finished_at: None,
    });
    if matches!(trigger, TrainingTrigger::Drift | TrainingTrigger::NewData) {
        ctx.status.automatic_retrains.push(ctx.now);
    }
    consume_pending_triggers(ctx);
    ctx.event(
        EventKind::Normal,
        "TrainingStarted",
        format!("{} training started: {reason}", version_name(n)),
    );
}

/// Outcome of the schedule for this decision.
enum ScheduleDue {
    /// Nothing due; the next slot, if any.
    NotDue,
    /// Slot `slot` is due, with `missed` slots since the last one acted on.
    Due {
        slot: DateTime<Utc>,
        missed: usize,
        late: bool,
    },
}

fn schedule_due(ctx: &mut Ctx, schedule: &RetrainSchedule) -> ScheduleDue {
    let anchor = match ctx.status.last_schedule_slot {
        Some(a) => a,
        None => {
            // First sight: slots before the Model existed are not missed runs.
            ctx.status.last_schedule_slot = Some(ctx.now);
            ctx.now
        }
    };
    match schedule.latest_at_or_before(ctx.now) {
        Some(latest) if latest > anchor => {
            let missed = schedule.count_between(anchor, ctx.now, MISSED_SLOT_CAP);
            let late = ctx.now - latest > chrono_duration(SCHEDULE_GRACE);
            ScheduleDue::Due {
                slot: latest,
                missed,
                late,
            }
        }
        _ => ScheduleDue::NotDue,
    }
}

/// Why an automatic (drift or new-data) retrain may not start now, and until when.
fn automatic_blocked(ctx: &mut Ctx) -> Option<(String, DateTime<Utc>)> {
    let day = chrono::Duration::hours(24);
    let now = ctx.now;
    ctx.status.automatic_retrains.retain(|t| now - *t < day);
    let retrain = ctx.spec.retrain.as_ref()?;
    if let Some(cooldown) = retrain
        .cooldown
        .as_deref()
        .and_then(|c| parse_duration(c).ok())
    {
        let last = [
            ctx.status.last_training.as_ref().map(|t| t.started_at),
            ctx.status.automatic_retrains.last().copied(),
        ]
        .into_iter()
        .flatten()
        .max();
        if let Some(last) = last {
            let until = last + chrono_duration(cooldown);
            if now < until {
                return Some((
                    format!(
                        "cooldown {}: last training started {} ago; next allowed at {}",
                        retrain.cooldown.as_deref().unwrap_or_default(),
                        human(now - last),
                        until.to_rfc3339()
                    ),
                    until,
                ));
            }
        }
    }
    if let Some(max) = retrain.max_per_day {
        let count = ctx.status.automatic_retrains.len() as u32;
        if count >= max {
            let until = ctx
                .status
                .automatic_retrains
                .first()
                .map_or(now, |t| *t + day);
            return Some((
                format!(
                    "maxPerDay {max} reached: {count} drift/data retrains in the last 24h; next allowed at {}",
                    until.to_rfc3339()
                ),
                until,
            ));
        }
    }
    None
}

/// Marks the automatic evidence pending now as acted on: drift windows
/// counted so far, schedule slots already due and the data digest now seen.
/// A run that starts uses the latest data, so it stands for all of them. A
/// run that fails consumes them too: otherwise a run that fails for a reason
/// retraining cannot fix (OOMKilled, a broken image) would be restarted back
/// to back for as long as drift lasts. Fresh drift windows, the next schedule
/// slot, changed data or spec, and manual retrains still start a run;
/// cooldown and `maxPerDay` apply as always.
fn consume_pending_triggers(ctx: &mut Ctx) {
    if let Some(summary) = ctx.status.drift.as_mut() {
        summary.consecutive_windows = 0;
    }
    if let Some(schedule) = ctx.spec.retrain.as_ref().and_then(|r| r.parsed_schedule())
        && let Some(latest) = schedule.latest_at_or_before(ctx.now)
    {
        let slot = ctx
            .status
            .last_schedule_slot
            .map_or(latest, |s| s.max(latest));
        ctx.status.last_schedule_slot = Some(slot);
    }
    if let Some(digest) = &ctx.obs.source_digest {
        ctx.status.data_digest = Some(digest.clone());
    }
}

/// Picks at most one reason to train: config change or bootstrap, schedule,
/// drift, new data. Paused Models and busy Models start nothing.
fn consider_training(ctx: &mut Ctx, drift: &DriftUpdate) {
    let retrain = ctx.spec.retrain.clone().unwrap_or_default();
    let schedule = retrain.parsed_schedule();
    let due = match &schedule {
        Some(s) => schedule_due(ctx, s),
        None => ScheduleDue::NotDue,
    };
    if ctx.status.data_digest.is_none()
        && ctx.status.training.is_none()
        && ctx.status.last_training.is_some()
    {
        ctx.status.data_digest = ctx.obs.source_digest.clone();
    }

    let blocked = if ctx.spec.paused {
        Some("the Model is paused (spec.paused)".to_string())
    } else {
        ctx.busy().or_else(|| ctx.training_ended.clone())
    };
    let hash = config_hash(ctx.spec);
    let mut chosen: Option<(TrainingTrigger, String)> = None;

    if ctx.champion().is_none() && ctx.status.last_training.is_none() && ctx.versions.is_empty() {
        chosen = Some((
            TrainingTrigger::Initial,
            "first version of the Model".into(),
        ));
    } else if let Some(last) = ctx
        .status
        .last_training
        .as_ref()
        .filter(|t| t.config_hash != hash)
    {
        chosen = Some((
            TrainingTrigger::ConfigChanged,
            format!(
                "data, architecture or training settings changed (config {} -> {hash})",
                last.config_hash
            ),
        ));
    }
    if chosen.is_none()
        && let ScheduleDue::Due { slot, missed, late } = due
    {
        let tz = schedule
            .as_ref()
            .map_or(chrono_tz::Tz::UTC, |s| s.time_zone());
        let local = slot.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z");
        let expr = retrain.schedule.as_deref().unwrap_or_default();
        if late && retrain.missed_runs == MissedRunPolicy::Skip && blocked.is_none() {
            ctx.status.last_schedule_slot = Some(slot);
            ctx.event(
                EventKind::Normal,
                "ScheduledRunSkipped",
                format!(
                    "{missed} slot(s) of schedule \"{expr}\" missed (latest {local}, {} late); missedRuns: Skip waits for the next slot",
                    human(ctx.now - slot)
                ),
            );
        } else {
            let note = if missed > 1 {
                format!("; {missed} slots missed, missedRuns: RunLatest starts one run")
            } else if late {
                format!("; {} late", human(ctx.now - slot))
            } else {
                String::new()
            };
            chosen = Some((
                TrainingTrigger::Schedule,
                format!("schedule \"{expr}\" slot {local}{note}"),
            ));
        }
    }
    if chosen.is_none() && retrain.on_drift && drift.due {
        match automatic_blocked(ctx) {
            Some((why, until)) => {
                if blocked.is_none() && drift.new_windows {
                    ctx.event(
                        EventKind::Normal,
                        "RetrainDeferred",
                        format!("drift retrain deferred: {}; {why}", drift.reason),
                    );
                }
                ctx.requeue_in(std_duration(until - ctx.now));
            }
            None => chosen = Some((TrainingTrigger::Drift, drift.reason.clone())),
        }
    }
    if chosen.is_none()
        && retrain.on_new_data
        && let (Some(seen), Some(now_digest)) = (
            ctx.status.data_digest.clone(),
            ctx.obs.source_digest.clone(),
        )
        && seen != now_digest
    {
        match automatic_blocked(ctx) {
            Some((why, until)) => {
                if blocked.is_none() {
                    ctx.event(
                        EventKind::Normal,
                        "RetrainDeferred",
                        format!("new-data retrain deferred: {why}"),
                    );
                }
                ctx.requeue_in(std_duration(until - ctx.now));
            }
            None => {
                let short = |d: &str| d.chars().take(12).collect::<String>();
                chosen = Some((
                    TrainingTrigger::NewData,
                    format!(
                        "data source changed (digest {} -> {})",
                        short(&seen),
                        short(&now_digest)
                    ),
                ));
            }
        }
    }

    if let Some((trigger, reason)) = chosen {
        match blocked {
            Some(why) => {
                let at = ctx.now;
                ctx.status.next_training = Some(NextTraining {
                    at,
                    reason: format!("{reason}; waiting: {why}"),
                });
                ctx.requeue_in(POLL);
                return;
            }
            None => {
                if let ScheduleDue::Due { slot, .. } = due {
                    ctx.status.last_schedule_slot = Some(slot);
                }
                start_training(ctx, trigger, reason);
            }
        }
    }

    ctx.status.next_training = schedule.as_ref().and_then(|s| {
        let after = ctx
            .status
            .last_schedule_slot
            .unwrap_or(ctx.now)
            .max(ctx.now);
        s.next_after(after).map(|at| NextTraining {
            at,
            reason: format!(
                "schedule \"{}\" in {}",
                s.expression(),
                retrain.time_zone.as_deref().unwrap_or("UTC")
            ),
        })
    });
    if let Some(next) = &ctx.status.next_training {
        let wait = std_duration(next.at - ctx.now);
        ctx.requeue_in(wait);
    }
}

/// Keeps the newest `retainSuperseded` superseded versions and the newest
/// `retainFailed` rejected, rolled-back or failed ones; deletes the rest.
fn retention(ctx: &mut Ctx) {
    let keep_superseded = ctx.spec.rollout.retain_superseded as usize;
    let keep_failed = ctx.spec.rollout.retain_failed as usize;
    let protected = [ctx.champion(), ctx.candidate(), ctx.training()];
    let superseded: Vec<u32> = ctx
        .versions
        .iter()
        .rev()
        .filter(|(v, p)| **p == VersionPhase::Superseded && !protected.contains(&Some(**v)))
        .map(|(v, _)| *v)
        .collect();
    let failed: Vec<u32> = ctx
        .versions
        .iter()
        .rev()
        .filter(|(v, p)| {
            matches!(
                p,
                VersionPhase::Rejected | VersionPhase::RolledBack | VersionPhase::Failed
            ) && !protected.contains(&Some(**v))
        })
        .map(|(v, _)| *v)
        .collect();
    for v in superseded.iter().skip(keep_superseded) {
        ctx.actions.push(Action::DeleteVersion {
            version: *v,
            reason: format!("retention: keeping the newest {keep_superseded} superseded versions"),
        });
    }
    for v in failed.iter().skip(keep_failed) {
        ctx.actions.push(Action::DeleteVersion {
            version: *v,
            reason: format!("retention: keeping the newest {keep_failed} rejected, rolled-back or failed versions"),
        });
    }
    for v in superseded
        .iter()
        .skip(keep_superseded)
        .chain(failed.iter().skip(keep_failed))
    {
        ctx.versions.remove(v);
    }
}

/// The condition saying a training pod waits for a node that can take it.
pub const TRAINING_UNSCHEDULABLE: &str = "TrainingUnschedulable";

/// Phase, conditions and the traffic summary, from the state decided above.
fn finish(mut ctx: Ctx) -> Decision {
    let s = &mut ctx.status;
    let obs = ctx.obs;
    let last_failed = s
        .last_training
        .as_ref()
        .and_then(|t| t.outcome.as_deref())
        .is_some_and(|o| o.starts_with("Failed"));
    s.phase = if ctx.spec.paused {
        ModelPhase::Paused
    } else if s.canary.is_some() {
        ModelPhase::Canary
    } else if s.training.is_some() {
        ModelPhase::Training
    } else if s.candidate.is_some() {
        ModelPhase::Gating
    } else if s.champion.is_some() {
        ModelPhase::Serving
    } else if last_failed {
        ModelPhase::Failed
    } else {
        ModelPhase::Pending
    };

    let summary = s
        .traffic
        .iter()
        .map(|t| format!("{}:{}", t.version, t.weight))
        .collect::<Vec<_>>()
        .join(" ");
    s.traffic_summary = (!summary.is_empty()).then_some(summary.clone());

    match &s.champion {
        Some(c) => {
            let msg = format!("{c} is champion; traffic {summary}");
            set_condition(
                s,
                obs,
                "Ready",
                ConditionStatus::True,
                "ChampionServing",
                &msg,
            )
        }
        None => set_condition(
            s,
            obs,
            "Ready",
            ConditionStatus::False,
            "NoChampion",
            "no version has passed the gate yet",
        ),
    };
    match (&s.training, &s.last_training) {
        (Some(t), _) => {
            let msg = format!(
                "{} training since {}: {}",
                t.version,
                t.started_at.to_rfc3339(),
                t.reason
            );
            set_condition(
                s,
                obs,
                "Training",
                ConditionStatus::True,
                "TrainingRunning",
                &msg,
            )
        }
        (None, Some(t)) if last_failed => {
            let msg = format!("{} {}", t.version, t.outcome.as_deref().unwrap_or_default());
            set_condition(
                s,
                obs,
                "Training",
                ConditionStatus::False,
                "TrainingFailed",
                &msg,
            )
        }
        _ => set_condition(
            s,
            obs,
            "Training",
            ConditionStatus::False,
            "Idle",
            "no training running",
        ),
    };
    // A training pod no node can take (a GPU request on a cluster without
    // GPUs, a nodeSelector nothing matches) is Pending for good, not slow:
    // say so with the scheduler's own words, and again once it is placed.
    let unschedulable = s.training.as_ref().and_then(|t| {
        let n = version_number(&t.version)?;
        Some((t.version.clone(), obs.unschedulable(n)?.to_string()))
    });
    let was_unschedulable = s
        .condition(TRAINING_UNSCHEDULABLE)
        .is_some_and(|c| c.status == ConditionStatus::True);
    let mut scheduling_event = None;
    match unschedulable {
        Some((version, why)) => {
            let msg = format!("{version}'s training pod cannot be scheduled: {why}");
            if set_condition(
                s,
                obs,
                TRAINING_UNSCHEDULABLE,
                ConditionStatus::True,
                "Unschedulable",
                &msg,
            ) {
                scheduling_event = Some((EventKind::Warning, TRAINING_UNSCHEDULABLE, msg));
            }
        }
        None if was_unschedulable => {
            let msg = match &s.training {
                Some(t) => format!("{}'s training pod was scheduled", t.version),
                None => "no training waits for a node".to_string(),
            };
            set_condition(
                s,
                obs,
                TRAINING_UNSCHEDULABLE,
                ConditionStatus::False,
                "Scheduled",
                &msg,
            );
            scheduling_event = Some((EventKind::Normal, "TrainingScheduled", msg));
        }
        None => {}
    }
    match s.canary.clone() {
        Some(c) if c.awaiting_promotion => {
            let msg = format!(
                "{} passed every step; waiting for `driftline promote`",
                c.version
            );
            set_condition(
                s,
                obs,
                "Progressing",
                ConditionStatus::True,
                "AwaitingPromotion",
                &msg,
            )
        }
        Some(c) => {
            let steps = ctx.spec.rollout.steps.len();
            let weight = ctx
                .spec
                .rollout
                .steps
                .get(c.step as usize)
                .map_or(0, |st| st.weight);
            let msg = match c.step_started_at {
                Some(_) => format!(
                    "{} canary at {weight} % (step {}/{steps}), failed analyses {}/{}",
                    c.version,
                    c.step + 1,
                    c.failures,
                    ctx.spec.rollout.analysis.failure_limit
                ),
                None => format!(
                    "{} canary waits for its Deployment to be ready; stable keeps 100 %",
                    c.version
                ),
            };
            set_condition(
                s,
                obs,
                "Progressing",
                ConditionStatus::True,
                "CanaryInProgress",
                &msg,
            )
        }
        None => set_condition(
            s,
            obs,
            "Progressing",
            ConditionStatus::False,
            "NoRollout",
            "no canary in progress",
        ),
    };
    if let Some((kind, reason, message)) = scheduling_event {
        ctx.actions.push(Action::RecordEvent {
            kind,
            reason: reason.into(),
            message,
        });
    }
    let s = &mut ctx.status;
    let seen_before = s.condition("Paused").is_some();
    let flipped = if ctx.spec.paused {
        set_condition(
            s,
            obs,
            "Paused",
            ConditionStatus::True,
            "PausedBySpec",
            "spec.paused is true: no training or rollout steps start",
        )
    } else {
        set_condition(
            s,
            obs,
            "Paused",
            ConditionStatus::False,
            "Active",
            "spec.paused is false",
        )
    };
    if flipped && (seen_before || ctx.spec.paused) {
        let (reason, message) = if ctx.spec.paused {
            (
                "Paused",
                "spec.paused set: no new training, canary weights held",
            )
        } else {
            (
                "Resumed",
                "spec.paused cleared: training triggers and canary steps resume",
            )
        };
        ctx.actions.push(Action::RecordEvent {
            kind: EventKind::Normal,
            reason: reason.into(),
            message: message.into(),
        });
    }
    Decision {
        actions: ctx.actions,
        status: ctx.status,
        requeue_after: ctx.requeue,
    }
}
