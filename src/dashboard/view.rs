//! What each page shows, as data: built purely from the cluster's objects and
//! the registry's records, rendered to HTML by [`super::html`] and served as
//! is for the page's JSON twin.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::api::{
    AnalysisSpec, DriftSummary, GateCheck, GateEvaluation, Model, ModelPhase, ModelVersion,
    NextTraining, RolloutOutcome, StartSummary, TrafficWeight, TrainingRun, VersionPhase,
    version_name,
};
use crate::drift::{ColumnSketch, FeatureProfile};
use crate::registry::{
    CanaryAnalysis, ChampionChange, DriftHeatmap, EpochRecord, EvaluationRecord, VersionHistory,
    VersionRecord,
};

use super::links;

/// The Models list.
#[derive(Serialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct ModelsPage {
    pub models: Vec<ModelRow>,
}

/// One Model as the list (and the head of its page) shows it.
#[derive(Serialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct ModelRow {
    pub namespace: String,
    pub name: String,
    /// Path of the Model's page.
    pub url: String,
    pub labels: BTreeMap<String, String>,
    pub phase: ModelPhase,
    pub champion: Option<String>,
    pub candidate: Option<String>,
    pub traffic: Vec<TrafficWeight>,
    pub drift: Option<DriftSummary>,
    /// The champion's accuracy estimated without labels, in words.
    pub estimated_accuracy: Option<String>,
    /// What late labels realised for the newest window, in words.
    pub realised_accuracy: Option<String>,
    pub training: Option<TrainingRun>,
    pub last_training: Option<TrainingRun>,
    pub next_training: Option<NextTraining>,
}

impl ModelRow {
    /// The row of one Model object.
    pub fn of(model: &Model) -> ModelRow {
        let namespace = model.metadata.namespace.clone().unwrap_or_default();
        let name = model.metadata.name.clone().unwrap_or_default();
        let status = model.status.clone().unwrap_or_default();
        ModelRow {
            url: links::model_path(&namespace, &name),
            namespace,
            name,
            labels: model.metadata.labels.clone().unwrap_or_default(),
            phase: status.phase,
            champion: status.champion,
            candidate: status.candidate,
            traffic: status.traffic,
            drift: status.drift,
            estimated_accuracy: status
                .estimated_accuracy
                .as_ref()
                .map(crate::api::EstimatedAccuracy::summary),
            realised_accuracy: status
                .realised_accuracy
                .as_ref()
                .and_then(crate::api::RealisedAccuracy::summary),
            training: status.training,
            last_training: status.last_training,
            next_training: status.next_training,
        }
    }
}

/// The Models list from the cluster's Model objects, by namespace then name.
pub fn models_page(models: &[Model]) -> ModelsPage {
    let mut rows: Vec<ModelRow> = models.iter().map(ModelRow::of).collect();
    rows.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    ModelsPage { models: rows }
}

/// A Model's page.
#[derive(Serialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct ModelPage {
    pub model: ModelRow,
    /// Why some of the page is missing (no registry, registry down…).
    pub notes: Vec<String>,
    /// The canary checks' bounds from `spec.rollout.analysis`.
    pub analysis: AnalysisSpec,
    /// Traffic over time: canary steps and champion changes.
    pub traffic: Vec<TrafficPoint>,
    /// Newest canary analyses, oldest first.
    pub canary_analyses: Vec<CanaryView>,
    pub drift: DriftView,
    /// Reference against live histogram of the chosen feature.
    pub histogram: Option<HistogramView>,
    /// The features one can choose for the histogram.
    pub features: Vec<String>,
    /// Training curves of the newest versions.
    pub curves: Vec<CurveView>,
    /// Every version, oldest first.
    pub versions: Vec<VersionRow>,
    /// Every champion change, oldest first.
    pub audit: Vec<AuditRow>,
    /// Reads of shadow verdicts, and the flip matrix of a candidate in shadow now.
    pub shadow: super::shadow::ShadowView,
    /// The annotation queue, where the Model has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotation_queue: Option<super::queue::QueueView>,
}

/// One moment of the traffic split.
#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TrafficPoint {
    pub at: DateTime<Utc>,
    /// The version taking canary traffic (`None`: the champion has it all).
    pub canary: Option<String>,
    /// Its share, percent.
    pub canary_weight: u32,
    /// `step 2 (25%)`, `Promote v2`, `Rollback v2 → v1`.
    pub mark: String,
}

/// The traffic timeline: each canary analysis window (its step and weight)
/// and each champion change (the new champion takes 100 %), by time.
pub fn traffic_timeline(
    analyses: &[CanaryAnalysis],
    changes: &[ChampionChange],
) -> Vec<TrafficPoint> {
    let mut points: Vec<TrafficPoint> = analyses
        .iter()
        .map(|a| TrafficPoint {
            at: a.window_start,
            canary: Some(version_name(a.version)),
            canary_weight: a.weight,
            mark: format!(
                "{} step {} ({}%)",
                version_name(a.version),
                a.step + 1,
                a.weight
            ),
        })
        .chain(changes.iter().map(|c| TrafficPoint {
            at: c.at,
            canary: None,
            canary_weight: 0,
            mark: audit_line(c),
        }))
        .collect();
    points.sort_by_key(|p| p.at);
    points
}

fn opt_version(v: Option<u32>) -> String {
    v.map_or_else(|| "none".into(), version_name)
}

fn audit_line(c: &ChampionChange) -> String {
    format!(
        "{} {} → {}",
        c.action.as_str(),
        opt_version(c.from),
        opt_version(c.to)
    )
}

/// One canary analysis with each value beside its bound.
#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CanaryView {
    pub version: String,
    /// From 1, as users count steps.
    pub step: u32,
    pub weight: u32,
    pub window_end: DateTime<Utc>,
    pub verdict: String,
    pub message: String,
    pub checks: Vec<CheckView>,
}

/// A value against its bound.
#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CheckView {
    pub name: String,
    pub value: Option<f64>,
    /// `≤ 0.01`, `≥ 100`.
    pub bound: String,
    pub passed: Option<bool>,
}

fn check(name: &str, value: Option<f64>, bound: Option<f64>, at_most: bool) -> CheckView {
    let passed = match (value, bound) {
        (Some(v), Some(b)) => Some(if at_most { v <= b } else { v >= b }),
        _ => None,
    };
    CheckView {
        name: name.into(),
        value,
        bound: bound.map_or_else(
            || "–".into(),
            |b| format!("{} {}", if at_most { "≤" } else { "≥" }, b),
        ),
        passed,
    }
}

/// A canary analysis with the values the spec bounds.
pub fn canary_view(a: &CanaryAnalysis, spec: &AnalysisSpec) -> CanaryView {
    let rate = |errors: u64, requests: u64| (requests > 0).then(|| errors as f64 / requests as f64);
    let canary_rate = rate(a.canary_errors, a.canary_requests);
    let stable_rate = rate(a.stable_errors, a.stable_requests);
    let mut checks = vec![check(
        "canary requests",
        Some(a.canary_requests as f64),
        Some(spec.min_requests as f64),
        false,
    )];
    checks.push(check("error rate", canary_rate, spec.max_error_rate, true));
    if spec.max_error_rate_increase.is_some() {
        let increase = canary_rate.zip(stable_rate).map(|(c, s)| c - s);
        checks.push(check(
            "error rate increase",
            increase,
            spec.max_error_rate_increase,
            true,
        ));
    }
    checks.push(check(
        "p99 latency ms",
        a.canary_p99_ms,
        spec.max_p99_latency_ms,
        true,
    ));
    if spec.max_p99_latency_ratio.is_some() {
        let ratio = a
            .canary_p99_ms
            .zip(a.stable_p99_ms)
            .filter(|(_, s)| *s > 0.0)
            .map(|(c, s)| c / s);
        checks.push(check(
            "p99 latency ratio",
            ratio,
            spec.max_p99_latency_ratio,
            true,
        ));
    }
    checks.push(check(
        "prediction divergence",
        a.divergence,
        spec.max_prediction_divergence,
        true,
    ));
    CanaryView {
        version: version_name(a.version),
        step: a.step + 1,
        weight: a.weight,
        window_end: a.window_end,
        verdict: a.verdict.as_str().into(),
        message: a.message.clone(),
        checks,
    }
}

/// Drift per feature over time.
#[derive(Serialize, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DriftView {
    /// Windows folded into the heatmap (the newest).
    pub windows: u64,
    /// End of the earliest window recorded at all.
    pub earliest_window_end: Option<DateTime<Utc>>,
    pub first_window_end: Option<DateTime<Utc>>,
    pub last_window_end: Option<DateTime<Utc>>,
    pub columns: u32,
    /// Rows of the heatmap, with each feature's threshold.
    pub features: Vec<FeatureDrift>,
    /// Features over their threshold in any window, by how often.
    pub drifted_features: Vec<String>,
}

/// One row of the heatmap.
#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FeatureDrift {
    pub feature: String,
    pub threshold: f64,
    pub drifted_readings: u64,
    /// (column, largest value, drifted readings) per column with readings.
    pub cells: Vec<(u32, f64, u64)>,
}

/// The heatmap rows from the registry's folded series.
pub fn drift_view(heatmap: &DriftHeatmap) -> DriftView {
    let mut rows: BTreeMap<&str, FeatureDrift> = BTreeMap::new();
    for c in &heatmap.cells {
        let row = rows.entry(&c.feature).or_insert_with(|| FeatureDrift {
            feature: c.feature.clone(),
            threshold: f64::NAN,
            drifted_readings: 0,
            cells: Vec::new(),
        });
        if c.threshold.is_finite() {
            row.threshold = if row.threshold.is_finite() {
                row.threshold.max(c.threshold)
            } else {
                c.threshold
            };
        }
        row.drifted_readings += c.drifted;
        row.cells.push((c.column, c.max_value, c.drifted));
    }
    let features: Vec<FeatureDrift> = rows.into_values().collect();
    let mut drifted: Vec<&FeatureDrift> =
        features.iter().filter(|f| f.drifted_readings > 0).collect();
    drifted.sort_by_key(|f| std::cmp::Reverse(f.drifted_readings));
    DriftView {
        windows: heatmap.windows,
        earliest_window_end: heatmap.earliest_window_end,
        first_window_end: heatmap.first_window_end,
        last_window_end: heatmap.last_window_end,
        columns: heatmap.columns,
        drifted_features: drifted.iter().map(|f| f.feature.clone()).collect(),
        features,
    }
}

/// Reference against live distribution of one feature.
#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HistogramView {
    pub feature: String,
    /// The version whose reference and server they come from.
    pub version: String,
    pub bins: Vec<String>,
    /// Training-time shares per bin.
    pub reference: Vec<f64>,
    /// Live shares per bin (`None`: the server did not answer).
    pub live: Option<Vec<f64>>,
    pub live_rows: u64,
}

/// The bins of a reference profile with its shares, and the live sketch's
/// counts as shares of the same bins.
pub fn histogram(
    version: &str,
    profile: &FeatureProfile,
    live: Option<&ColumnSketch>,
) -> HistogramView {
    let (bins, reference) = match profile {
        FeatureProfile::Numeric { profile, .. } => {
            let e = &profile.edges;
            let mut bins = vec![format!("< {}", super::svg::short(e[0]))];
            bins.extend(
                e.windows(2)
                    .map(|w| format!("{}–{}", super::svg::short(w[0]), super::svg::short(w[1]))),
            );
            bins.push(format!("> {}", super::svg::short(e[e.len() - 1])));
            (bins, profile.shares.clone())
        }
        FeatureProfile::Categorical { profile, .. } => {
            let mut bins = profile.categories.clone();
            bins.push("(unseen)".into());
            (bins, profile.shares.clone())
        }
    };
    let live_rows = live.map_or(0, |s| s.counts.iter().sum::<u64>());
    let live = live.filter(|s| s.counts.len() == bins.len()).map(|s| {
        s.counts
            .iter()
            .map(|&c| {
                if live_rows == 0 {
                    0.0
                } else {
                    c as f64 / live_rows as f64
                }
            })
            .collect()
    });
    HistogramView {
        feature: profile.name().into(),
        version: version.into(),
        bins,
        reference,
        live,
        live_rows,
    }
}

/// A version's training curve.
#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CurveView {
    pub version: String,
    pub metric: Option<String>,
    /// (epoch, train loss, validation loss, validation metric)
    pub epochs: Vec<(u32, f64, Option<f64>, Option<f64>)>,
}

/// The curve of one version from its epoch records.
pub fn curve_view(version: u32, epochs: &[EpochRecord]) -> CurveView {
    CurveView {
        version: version_name(version),
        metric: epochs
            .iter()
            .find_map(|e| e.validation_metric.as_ref().map(|m| m.name.clone())),
        epochs: epochs
            .iter()
            .map(|e| {
                (
                    e.epoch,
                    e.train_loss,
                    e.validation_loss,
                    e.validation_metric.as_ref().map(|m| m.value),
                )
            })
            .collect(),
    }
}

/// One version in the Model page's history.
#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VersionRow {
    pub version: String,
    pub url: String,
    /// From the ModelVersion object, when it still exists.
    pub phase: Option<VersionPhase>,
    pub trigger: String,
    pub reason: String,
    pub created_at: DateTime<Utc>,
    pub gate_passed: Option<bool>,
    pub gate_summary: Option<String>,
    pub metrics: BTreeMap<String, f64>,
    /// Each metric minus the current champion's.
    pub vs_champion: BTreeMap<String, f64>,
}

/// The history rows, each metric compared with the champion's.
pub fn version_rows(
    namespace: &str,
    model: &str,
    history: &[VersionHistory],
    objects: &[ModelVersion],
    champion: Option<&str>,
) -> Vec<VersionRow> {
    let phases: BTreeMap<u32, VersionPhase> = objects
        .iter()
        .filter_map(|v| Some((v.spec.version, v.status.as_ref()?.phase)))
        .collect();
    let champion = champion.and_then(crate::api::version_number);
    let champion_metrics = history
        .iter()
        .find(|h| Some(h.version.version) == champion)
        .and_then(|h| h.gate.as_ref())
        .map(|g| g.metrics.clone())
        .unwrap_or_default();
    history
        .iter()
        .map(|h| {
            let metrics = h
                .gate
                .as_ref()
                .map(|g| g.metrics.clone())
                .unwrap_or_default();
            let vs_champion = metrics
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), v - champion_metrics.get(k)?)))
                .collect();
            VersionRow {
                version: version_name(h.version.version),
                url: links::version_path(namespace, model, h.version.version),
                phase: phases.get(&h.version.version).copied(),
                trigger: h.version.trigger.clone(),
                reason: h.version.reason.clone(),
                created_at: h.version.created_at,
                gate_passed: h.gate.as_ref().map(|g| g.passed),
                gate_summary: h.gate.as_ref().map(|g| g.summary.clone()),
                metrics,
                vs_champion,
            }
        })
        .collect()
}

/// One champion change.
#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AuditRow {
    pub at: DateTime<Utc>,
    pub action: String,
    pub from: Option<String>,
    pub to: Option<String>,
    pub trigger: String,
    pub actor: Option<String>,
    pub reason: String,
}

/// The audit trail's rows.
pub fn audit_rows(changes: &[ChampionChange]) -> Vec<AuditRow> {
    changes
        .iter()
        .map(|c| AuditRow {
            at: c.at,
            action: c.action.as_str().into(),
            from: c.from.map(version_name),
            to: c.to.map(version_name),
            trigger: c.trigger.clone(),
            actor: c.actor.clone(),
            reason: c.reason.clone(),
        })
        .collect()
}

/// The feature the histogram shows: the one asked for when it exists, else
/// the most often drifted one, else the first.
pub fn chosen_feature(
    asked: Option<&str>,
    features: &[String],
    drift: &DriftView,
) -> Option<String> {
    asked
        .filter(|a| features.iter().any(|f| f == a))
        .map(str::to_string)
        .or_else(|| {
            drift
                .drifted_features
                .iter()
                .find(|d| features.contains(d))
                .cloned()
        })
        .or_else(|| features.first().cloned())
}

/// A version's page.
#[derive(Serialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct VersionPage {
    pub namespace: String,
    pub model: String,
    pub model_url: String,
    pub version: String,
    pub notes: Vec<String>,
    pub phase: Option<VersionPhase>,
    pub message: Option<String>,
    pub lineage: Option<LineageView>,
    pub gate: Option<GateView>,
    pub rollout: Option<RolloutOutcome>,
    pub champion_since: Option<DateTime<Utc>>,
    pub champion_until: Option<DateTime<Utc>>,
    pub canary_analyses: Vec<CanaryView>,
    pub curve: Option<CurveView>,
    /// A warm retrain's curve beside the run it started from.
    pub warm_start: Option<StartComparison>,
}

/// Where a version came from.
#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LineageView {
    pub trigger: String,
    pub reason: String,
    pub seed: u64,
    pub config_hash: String,
    pub dataset_digest: Option<String>,
    pub artifact: Option<String>,
    pub feedback_rows: Option<u64>,
    pub driftline_version: String,
    pub created_at: Option<DateTime<Utc>>,
    /// Where its first weights came from (warm, init or cold, and why).
    pub start: Option<StartSummary>,
}

/// The whole gate report: every check with value, bound and outcome.
#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GateView {
    pub passed: bool,
    pub summary: String,
    pub champion: Option<String>,
    pub checks: Vec<GateCheck>,
    pub metrics: BTreeMap<String, f64>,
    /// The champion's metrics on the same test set, when compared.
    pub champion_metrics: BTreeMap<String, f64>,
}

/// The lineage from the registry's record, else from the ModelVersion object.
pub fn lineage_view(
    record: Option<&VersionRecord>,
    object: Option<&ModelVersion>,
) -> Option<LineageView> {
    if let Some(r) = record {
        return Some(LineageView {
            trigger: r.trigger.clone(),
            reason: r.reason.clone(),
            seed: r.seed,
            config_hash: r.config_hash.clone(),
            dataset_digest: r.dataset_digest.clone(),
            artifact: r.artifact_uri.clone(),
            feedback_rows: r.feedback_rows,
            driftline_version: r.code_version.clone(),
            created_at: Some(r.created_at),
            start: r
                .start
                .as_ref()
                .and_then(|s| {
                    StartSummary::from_words(
                        &s.from,
                        s.parent.clone(),
                        s.parent_digest.clone(),
                        s.reason.clone(),
                    )
                })
                .or_else(|| object.and_then(status_start)),
        });
    }
    let v = object?;
    let l = &v.spec.lineage;
    let artifact = v.status.as_ref().and_then(|s| s.artifact.as_ref());
    Some(LineageView {
        trigger: l.trigger.to_string(),
        reason: l.reason.clone(),
        seed: l.seed,
        config_hash: l.config_hash.clone(),
        dataset_digest: artifact
            .and_then(|a| a.dataset_digest.clone())
            .or_else(|| l.source_digest.clone()),
        artifact: artifact.map(|a| a.uri.clone()),
        feedback_rows: None,
        driftline_version: l.driftline_version.clone(),
        created_at: created_at(v),
        start: status_start(v),
    })
}

fn status_start(v: &ModelVersion) -> Option<StartSummary> {
    v.status.as_ref()?.start.clone()
}

/// A warm retrain beside the run it is compared against: the version whose
/// weights it started from (the champion then; usually a cold run).
#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StartComparison {
    /// The parent version's curve.
    pub reference: CurveView,
    /// How the parent itself started, when known.
    pub reference_start: Option<StartSummary>,
    /// The parent's best validation metric (highest accuracy, lowest RMSE).
    pub target: Option<f64>,
    /// The first epoch at which this run reached `target`.
    pub epochs_to_target: Option<u32>,
    /// The first epoch at which the parent reached it.
    pub reference_epochs_to_target: Option<u32>,
}

/// Compares a run's curve with its parent's: how many epochs each needed to
/// reach the parent's best validation metric.
pub fn start_comparison(
    this: &CurveView,
    reference: CurveView,
    reference_start: Option<StartSummary>,
) -> StartComparison {
    // RMSE falls as the model improves; every other metric rises.
    let lower_is_better = reference.metric.as_deref() == Some("rmse");
    let metrics = |c: &CurveView| -> Vec<(u32, f64)> {
        c.epochs
            .iter()
            .filter_map(|e| Some((e.0, e.3?)))
            .filter(|(_, v)| v.is_finite())
            .collect()
    };
    let reached = |c: &CurveView, target: f64| {
        metrics(c)
            .into_iter()
            .find(|&(_, v)| {
                if lower_is_better {
                    v <= target
                } else {
                    v >= target
                }
            })
            .map(|(epoch, _)| epoch)
    };
    let target = metrics(&reference)
        .into_iter()
        .map(|(_, v)| v)
        .reduce(|a, b| if lower_is_better { a.min(b) } else { a.max(b) });
    StartComparison {
        epochs_to_target: target.and_then(|t| reached(this, t)),
        reference_epochs_to_target: target.and_then(|t| reached(&reference, t)),
        target,
        reference,
        reference_start,
    }
}

/// The gate from the registry's full evaluation, else the object's summary
/// (which keeps only the failed checks).
pub fn gate_view(
    evaluation: Option<&EvaluationRecord>,
    object: Option<&ModelVersion>,
) -> Option<GateView> {
    if let Some(e) = evaluation {
        let full: Option<GateEvaluation> = serde_json::from_value(e.report.clone()).ok();
        return Some(GateView {
            passed: e.passed,
            summary: e.summary.clone(),
            champion: None,
            checks: full
                .as_ref()
                .map(|f| f.verdict.checks.clone())
                .unwrap_or_default(),
            metrics: e.metrics.clone(),
            champion_metrics: full
                .and_then(|f| f.champion.map(|c| c.metrics))
                .unwrap_or_default(),
        })
        .map(|mut g| {
            g.champion = object.and_then(|o| o.status.as_ref()?.gate.as_ref()?.champion.clone());
            g
        });
    }
    let gate = object?.status.as_ref()?.gate.as_ref()?;
    Some(GateView {
        passed: gate.passed,
        summary: gate.summary.clone(),
        champion: gate.champion.clone(),
        checks: gate.failed_checks.clone(),
        metrics: BTreeMap::new(),
        champion_metrics: BTreeMap::new(),
    })
}

/// Features named by a reference profile, in the model's order.
pub fn feature_names(profiles: &[FeatureProfile]) -> Vec<String> {
    profiles.iter().map(|p| p.name().to_string()).collect()
}

/// Versions whose training curves the Model page draws: the champion and
/// the newest others, at most `n`.
pub fn curve_versions(history: &[VersionHistory], champion: Option<&str>, n: usize) -> Vec<u32> {
    let mut chosen: BTreeSet<u32> = champion
        .and_then(crate::api::version_number)
        .into_iter()
        .collect();
    for h in history.iter().rev() {
        if chosen.len() >= n {
            break;
        }
        chosen.insert(h.version.version);
    }
    chosen.into_iter().collect()
}

/// When a ModelVersion object was created.
pub fn created_at(v: &ModelVersion) -> Option<DateTime<Utc>> {
    let t = v.metadata.creation_timestamp.as_ref()?;
    DateTime::from_timestamp_micros(t.0.as_microsecond())
}
