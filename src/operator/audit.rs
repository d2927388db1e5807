//! What a decision leaves in the registry: pure mapping from a decision (and
//! what was observed for it) to registry records. The reconcile submits them
//! only after the Model's status is written, so a decision that must be made
//! again (a failed write) leaves no row behind; every record has a natural
//! key, so a rewrite after a restart changes nothing.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::api::{
    AnalysisOutcome, GateEvaluation, Model, ModelStatus, ModelVersion, ModelVersionSpec, StartKind,
    StartSummary,
};
use crate::ml::StartFrom;
use crate::policy::{Action, Decision, DriftReading as PolicyDriftReading};
use crate::registry::{
    AnalysisVerdict, CanaryAnalysis, ChampionAction, ChampionChange, CheckRecord, DriftReading,
    EpochRecord, EvaluationRecord, ModelRef, Record, StartRecord, ValidationMetric, VersionRecord,
};

/// What a finished training left beside its artifact, as far as the registry
/// keeps it (read from `manifest.json`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TrainingFacts {
    /// One entry per epoch: train loss, validation loss and metric.
    pub curve: Vec<(f64, Option<f64>, Option<f64>)>,
    /// Name of the validation metric (`accuracy` for classification, `rmse` for regression).
    pub metric_name: String,
    /// sha256 of the training data as read.
    pub dataset_digest: Option<String>,
    /// Labelled feedback rows added to the training split.
    pub feedback_rows: Option<u64>,
    /// Where the first weights came from.
    pub start: StartSummary,
}

impl TrainingFacts {
    /// The parts of an artifact's manifest the registry keeps.
    pub fn from_manifest(manifest: &crate::ml::Manifest) -> TrainingFacts {
        TrainingFacts {
            curve: manifest
                .curve
                .iter()
                .map(|e| (e.train_loss, e.validation_loss, e.validation_metric))
                .collect(),
            metric_name: match manifest.task {
                crate::api::Task::Regression => "rmse",
                _ => "accuracy",
            }
            .into(),
            dataset_digest: Some(manifest.dataset.digest.clone()),
            feedback_rows: manifest.dataset.feedback.as_ref().map(|f| f.rows as u64),
            start: start_summary(manifest.start.as_ref()),
        }
    }
}

/// The short form of a manifest's start lineage: a run that asked for no
/// parent weights (no `start`) drew them from the seed.
pub fn start_summary(start: Option<&crate::ml::StartLineage>) -> StartSummary {
    let Some(s) = start else {
        return StartSummary::default();
    };
    StartSummary {
        from: match s.from {
            StartFrom::Champion => StartKind::Warm,
            StartFrom::Checkpoint => StartKind::Init,
            StartFrom::Random => StartKind::Cold,
        },
        parent: s.uri.clone(),
        parent_digest: s.weights_digest.clone(),
        reason: s.cold_reason.clone(),
    }
}

/// What the reconcile observed that the registry keeps beyond the decision.
#[derive(Clone, Debug)]
pub struct Observed<'a> {
    /// Full gate evaluations read this reconcile, by version.
    pub gate_reports: &'a BTreeMap<u32, GateEvaluation>,
    /// Training facts of versions whose gate report was read, by version.
    pub training: &'a BTreeMap<u32, TrainingFacts>,
    /// The champion's drift windows as scraped (the core skips counted ones).
    pub drift: &'a [PolicyDriftReading],
    /// The user behind the manual request this decision handled
    /// (`driftline.dev/requested-by`), if any.
    pub actor: Option<&'a str>,
}

/// The records one decision produces.
pub fn records(
    model: &Model,
    versions: &[ModelVersion],
    decision: &Decision,
    observed: &Observed<'_>,
    now: DateTime<Utc>,
) -> Vec<Record> {
    let model_ref = ModelRef::new(
        model.metadata.namespace.clone().unwrap_or_default(),
        model.metadata.name.clone().unwrap_or_default(),
    );
    let before = model.status.clone().unwrap_or_default();
    // A request handled by this decision caused its promotions and rollbacks.
    let manual = decision.status.handled_request.is_some()
        && decision.status.handled_request != before.handled_request;
    let spec_of = |n: u32| versions.iter().find(|v| v.spec.version == n);
    let mut out = Vec::new();
    for action in &decision.actions {
        match action {
            Action::StartTraining {
                version,
                trigger,
                reason,
                config_hash,
                ..
            } => out.push(
                VersionRecord {
                    model: model_ref.clone(),
                    version: *version,
                    trigger: trigger.to_string(),
                    reason: reason.clone(),
                    seed: model.spec.training.seed,
                    config_hash: config_hash.clone(),
                    dataset_digest: decision.status.data_digest.clone(),
                    artifact_uri: None,
                    feedback_rows: None,
                    code_version: env!("CARGO_PKG_VERSION").into(),
                    created_at: now,
                    start: None,
                }
                .into(),
            ),
            Action::RecordGate { version, gate } => {
                let n = *version;
                if let Some(mv) = spec_of(n) {
                    out.push(finished_version(&model_ref, mv, observed.training.get(&n)).into());
                }
                if let Some(facts) = observed.training.get(&n) {
                    out.extend(curve(&model_ref, n, facts));
                }
                let report = observed.gate_reports.get(&n);
                out.push(
                    EvaluationRecord {
                        model: model_ref.clone(),
                        version: n,
                        passed: gate.passed,
                        summary: gate.summary.clone(),
                        metrics: report
                            .map(|r| r.candidate.metrics.clone())
                            .unwrap_or_default(),
                        report: report
                            .and_then(|r| serde_json::to_value(r).ok())
                            .unwrap_or_else(|| serde_json::to_value(gate).unwrap_or_default()),
                        evaluated_at: now,
                    }
                    .into(),
                );
            }
            // A refused window is the version's one evaluation: `driftline
            // history` shows why it never trained.
            Action::RecordDataCheck {
                version,
                data_check,
            } if !data_check.passed => out.push(
                EvaluationRecord {
                    model: model_ref.clone(),
                    version: *version,
                    passed: false,
                    summary: format!("data check {}", data_check.summary),
                    metrics: Default::default(),
                    report: serde_json::to_value(data_check).unwrap_or_default(),
                    evaluated_at: now,
                }
                .into(),
            ),
            Action::RecordRollout { version, rollout } => {
                out.extend(rollout.analyses.iter().map(|a| {
                    let check =
                        |name: &str| a.checks.iter().find(|c| c.name == name).map(|c| c.value);
                    Record::from(CanaryAnalysis {
                        model: model_ref.clone(),
                        version: *version,
                        step: a.step,
                        weight: a.weight,
                        window_start: a.window_start,
                        window_end: a.window_end,
                        canary_requests: a.canary_requests,
                        stable_requests: a.stable_requests,
                        canary_errors: 0,
                        stable_errors: 0,
                        canary_p99_ms: check("maxP99LatencyMs"),
                        stable_p99_ms: None,
                        divergence: a.divergence.or_else(|| check("maxPredictionDivergence")),
                        verdict: match a.outcome {
                            AnalysisOutcome::Passed => AnalysisVerdict::Passed,
                            AnalysisOutcome::Failed => AnalysisVerdict::Failed,
                            AnalysisOutcome::Inconclusive => AnalysisVerdict::Inconclusive,
                        },
                        message: a.message.clone(),
                        checks: a
                            .checks
                            .iter()
                            .map(|c| CheckRecord {
                                name: c.name.clone(),
                                value: c.value,
                                bound: c.bound,
                                passed: c.passed,
                                evidence: c.evidence.map(|e| e.to_string()),
                                lower: c.lower,
                                upper: c.upper,
                            })
                            .collect(),
                    })
                }));
            }
            Action::Promote {
                version,
                previous,
                reason,
            } => out.push(
                ChampionChange {
                    model: model_ref.clone(),
                    at: now,
                    action: ChampionAction::Promote,
                    from: *previous,
                    to: Some(*version),
                    trigger: trigger_of(manual, ChampionAction::Promote, *previous, &before).into(),
                    actor: manual.then(|| observed.actor.unwrap_or("unknown").to_string()),
                    reason: reason.clone(),
                }
                .into(),
            ),
            Action::Rollback {
                version,
                restored,
                reason,
            } => out.push(
                ChampionChange {
                    model: model_ref.clone(),
                    at: now,
                    action: ChampionAction::Rollback,
                    from: Some(*version),
                    to: *restored,
                    trigger: trigger_of(manual, ChampionAction::Rollback, Some(*version), &before)
                        .into(),
                    actor: manual.then(|| observed.actor.unwrap_or("unknown").to_string()),
                    reason: reason.clone(),
                }
                .into(),
            ),
            _ => {}
        }
    }
    out.extend(drift_series(model, &model_ref, &before, observed.drift));
    out
}

/// What caused a champion change, in the registry's words.
fn trigger_of(
    manual: bool,
    action: ChampionAction,
    from: Option<u32>,
    before: &ModelStatus,
) -> &'static str {
    let canary = before
        .canary
        .as_ref()
        .and_then(|c| crate::api::version_number(&c.version));
    match (manual, action) {
        (true, _) => "Manual",
        (false, ChampionAction::Promote) if from.is_none() => "FirstVersion",
        (false, ChampionAction::Promote) => "CanaryPassed",
        (false, ChampionAction::Rollback) if canary.is_some() && canary == from => "CanaryFailed",
        (false, ChampionAction::Rollback) => "Rollback",
    }
}

/// The version's lineage once training finished: artifact, data digest, feedback rows.
fn finished_version(
    model_ref: &ModelRef,
    mv: &ModelVersion,
    facts: Option<&TrainingFacts>,
) -> VersionRecord {
    let ModelVersionSpec {
        version, lineage, ..
    } = &mv.spec;
    let status = mv.status.clone().unwrap_or_default();
    let artifact = status.artifact.as_ref();
    VersionRecord {
        model: model_ref.clone(),
        version: *version,
        trigger: lineage.trigger.to_string(),
        reason: lineage.reason.clone(),
        seed: lineage.seed,
        config_hash: lineage.config_hash.clone(),
        dataset_digest: artifact
            .and_then(|a| a.dataset_digest.clone())
            .or_else(|| facts.and_then(|f| f.dataset_digest.clone()))
            .or_else(|| lineage.source_digest.clone()),
        artifact_uri: artifact.map(|a| a.uri.clone()),
        feedback_rows: facts.and_then(|f| f.feedback_rows),
        code_version: lineage.driftline_version.clone(),
        created_at: mv
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or_else(Utc::now, |t| {
                DateTime::<Utc>::from_timestamp(t.0.as_second(), 0).unwrap_or_else(Utc::now)
            }),
        start: facts.map(|f| StartRecord {
            from: f.start.from.to_string(),
            parent: f.start.parent.clone(),
            parent_digest: f.start.parent_digest.clone(),
            reason: f.start.reason.clone(),
        }),
    }
}

fn curve<'a>(
    model_ref: &'a ModelRef,
    version: u32,
    facts: &'a TrainingFacts,
) -> impl Iterator<Item = Record> + 'a {
    facts
        .curve
        .iter()
        .enumerate()
        .map(move |(i, (train, val_loss, val_metric))| {
            EpochRecord {
                model: model_ref.clone(),
                version,
                epoch: i as u32 + 1,
                train_loss: *train,
                validation_loss: *val_loss,
                validation_metric: val_metric.map(|value| ValidationMetric {
                    name: facts.metric_name.clone(),
                    value,
                }),
            }
            .into()
        })
}

/// Per-feature readings of the champion's windows the core has not counted yet.
fn drift_series(
    model: &Model,
    model_ref: &ModelRef,
    before: &ModelStatus,
    windows: &[PolicyDriftReading],
) -> Vec<Record> {
    let Some(champion) = before
        .champion
        .as_deref()
        .and_then(crate::api::version_number)
    else {
        return Vec::new();
    };
    let counted = before.drift.as_ref().and_then(|d| d.last_window_end);
    // The spelling the Model YAML uses (`jensenShannon`, `psi`…).
    let statistic = serde_json::to_value(model.spec.drift.statistic)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    windows
        .iter()
        .filter(|w| counted.is_none_or(|c| w.window_end > c))
        .flat_map(|w| {
            let features = w.features.iter().map(|f| DriftReading {
                model: model_ref.clone(),
                version: champion,
                window_end: w.window_end,
                feature: f.name.clone(),
                statistic: statistic.clone(),
                value: f.value,
                threshold: f.threshold,
                drifted: f.value > f.threshold,
            });
            features
                .chain(estimate_reading(model, model_ref, champion, w))
                .map(Record::from)
        })
        .collect()
}

/// The window's estimated accuracy as a row of the same series: feature
/// `estimatedAccuracy`, statistic `cbpe`, against the accuracy
/// `retrain.onEstimatedDrop` would retrain below (the validation accuracy
/// less `maxDrop`; the validation accuracy itself without the trigger).
fn estimate_reading(
    model: &Model,
    model_ref: &ModelRef,
    champion: u32,
    window: &PolicyDriftReading,
) -> Option<DriftReading> {
    let estimate = window.estimate.as_ref()?;
    let value = estimate.accuracy()?;
    let max_drop = model
        .spec
        .retrain
        .as_ref()
        .and_then(|r| r.on_estimated_drop.as_ref())
        .map_or(0.0, |t| t.max_drop);
    let threshold = estimate.validation_accuracy.map_or(0.0, |v| v - max_drop);
    Some(DriftReading {
        model: model_ref.clone(),
        version: champion,
        window_end: window.window_end,
        feature: ESTIMATED_ACCURACY_SERIES.into(),
        statistic: "cbpe".into(),
        value,
        threshold,
        drifted: value < threshold,
    })
}

/// The drift series' name for a window's estimated accuracy.
const ESTIMATED_ACCURACY_SERIES: &str = "estimatedAccuracy";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{
        AnalysisCheck, AnalysisOutcome, AnalysisRecord, Evidence, ModelStatus, RolloutOutcome,
        load_model_config,
    };
    use crate::policy::Action;

    #[test]
    fn a_rollouts_analyses_reach_the_registry_with_each_checks_evidence_and_interval() {
        let spec =
            load_model_config("task: classification\ndata: {source: d.csv, target: y}\n").unwrap();
        let mut model = Model::new("wine", spec);
        model.metadata.namespace = Some("ml".into());
        let check = AnalysisCheck {
            name: "maxErrorRateIncrease".into(),
            value: 0.001,
            bound: 0.01,
            passed: true,
            message: String::new(),
            evidence: Some(Evidence::NoHarm),
            lower: Some(-0.004),
            upper: Some(0.008),
        };
        let analysis = AnalysisRecord {
            step: 0,
            weight: 10,
            outcome: AnalysisOutcome::Passed,
            canary_requests: 3000,
            stable_requests: 27_000,
            checks: vec![check],
            window_start: Utc::now(),
            window_end: Utc::now(),
            message: "passed".into(),
            divergence: Some(0.02),
        };
        let decision = Decision {
            actions: vec![Action::RecordRollout {
                version: 2,
                rollout: RolloutOutcome {
                    result: "Promoted".into(),
                    steps_passed: 1,
                    message: String::new(),
                    analyses: vec![analysis],
                },
            }],
            status: ModelStatus::default(),
            requeue_after: None,
        };
        let (reports, training) = (BTreeMap::new(), BTreeMap::new());
        let observed = Observed {
            gate_reports: &reports,
            training: &training,
            drift: &[],
            actor: None,
        };
        let records = records(&model, &[], &decision, &observed, Utc::now());
        let Some(Record::Canary(row)) = records.first() else {
            panic!("a canary row: {records:?}");
        };
        assert_eq!(
            row.checks,
            vec![CheckRecord {
                name: "maxErrorRateIncrease".into(),
                value: 0.001,
                bound: 0.01,
                passed: true,
                evidence: Some("noHarm".into()),
                lower: Some(-0.004),
                upper: Some(0.008),
            }]
        );
        // Measured without a check bounding it (the shadow's always is).
        assert_eq!(row.divergence, Some(0.02));
    }
}
