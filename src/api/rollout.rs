//! How a candidate that passed the gate takes traffic (`spec.rollout`) and
//! how each version is served (`spec.serving`).

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::duration::SpecDuration;
use super::model::{ComputeResources, default_true};
use super::shadow::ShadowSpec;
use super::validate::DURATION_RULE;
use super::validate::msg;

/// One canary step: set the weight, then wait and analyse.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStep {
    /// Percent of traffic for the candidate, 1..=100.
    #[x_kube(validation = Rule::new("self >= 1 && self <= 100").message(msg::CANARY_WEIGHT))]
    pub weight: u32,
    /// How long to hold this weight before the analysis (`10m`).
    #[x_kube(validation = Rule::new(DURATION_RULE).message(msg::PAUSE_DURATION))]
    pub pause: SpecDuration,
}

/// How a canary's checks are judged.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum AnalysisMethod {
    /// Each rate check is an always-valid confidence sequence read at every
    /// poll: a clear harm rolls back at once (even inside the pause), a step
    /// advances once harm beyond the margin is ruled out at `alpha`, and
    /// anything else keeps watching.
    #[default]
    Sequential,
    /// Each bound is compared with the window's value after the pause (the
    /// behaviour before sequential analysis existed).
    Threshold,
}

/// Checks of the canary against the stable version on the same window.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisSpec {
    /// `sequential` (default) or `threshold`.
    #[serde(default)]
    pub method: AnalysisMethod,
    /// For `sequential`: the largest chance that a canary worse than its
    /// bound (or than stable by more than the margin) is promoted, however
    /// often the operator reads the analysis.
    #[serde(default = "default_alpha")]
    #[x_kube(validation = Rule::new("double(self) > 0.0 && double(self) < 0.5").message(msg::ALPHA))]
    pub alpha: f64,
    /// Fewer canary requests than this make a step inconclusive, never a pass.
    #[serde(default = "default_min_requests")]
    #[x_kube(validation = Rule::new("self > 0").message(msg::MIN_REQUESTS))]
    pub min_requests: u64,
    /// Largest canary error rate (non-2xx share), in [0, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("double(self) >= 0.0 && double(self) <= 1.0").message(msg::MAX_ERROR_RATE))]
    pub max_error_rate: Option<f64>,
    /// Largest canary p99 latency in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("double(self) > 0.0").message(msg::MAX_P99_LATENCY))]
    pub max_p99_latency_ms: Option<f64>,
    /// Largest allowed canary error rate above stable's, absolute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("double(self) >= 0.0 && double(self) <= 1.0").message(msg::MAX_ERROR_RATE_INCREASE))]
    pub max_error_rate_increase: Option<f64>,
    /// Largest allowed canary p99 as a multiple of stable's (1.2 = 20 % slower).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("double(self) >= 1.0").message(msg::MAX_P99_LATENCY_RATIO))]
    pub max_p99_latency_ratio: Option<f64>,
    /// Largest Jensen-Shannon distance between canary and stable predictions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("double(self) >= 0.0 && double(self) <= 1.0").message(msg::MAX_PREDICTION_DIVERGENCE))]
    pub max_prediction_divergence: Option<f64>,
    /// Least online accuracy on labelled canary traffic, when labels exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("double(self) >= 0.0 && double(self) <= 1.0").message(msg::MIN_ONLINE_ACCURACY))]
    pub min_online_accuracy: Option<f64>,
    /// Largest drop of online accuracy below stable's on labelled requests of
    /// the same window, absolute (the margin of that check).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("double(self) >= 0.0 && double(self) <= 1.0").message(msg::MAX_ONLINE_ACCURACY_DROP))]
    pub max_online_accuracy_drop: Option<f64>,
    /// Classifiers: largest drop of the canary's estimated accuracy (its
    /// mean calibrated confidence, no labels needed) below stable's over the
    /// same window, absolute. Read only where labels do not judge the step's
    /// online accuracy, and not while the Model's `EstimateUnreliable` is True.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("double(self) >= 0.0 && double(self) <= 1.0").message(msg::MAX_ESTIMATED_ACCURACY_DROP))]
    pub max_estimated_accuracy_drop: Option<f64>,
    /// Latency as a rate: the share of canary requests slower than stable's
    /// p99 in the same window may exceed stable's own 1 % by at most this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("double(self) >= 0.0 && double(self) <= 0.99").message(msg::MAX_SLOW_SHARE_INCREASE))]
    pub max_slow_share_increase: Option<f64>,
    /// Failed analyses tolerated before rolling back.
    #[serde(default)]
    pub failure_limit: u32,
}

fn default_min_requests() -> u64 {
    100
}

fn default_alpha() -> f64 {
    0.05
}

impl Default for AnalysisSpec {
    fn default() -> Self {
        Self {
            method: AnalysisMethod::default(),
            alpha: default_alpha(),
            min_requests: default_min_requests(),
            max_error_rate: Some(0.01),
            max_p99_latency_ms: None,
            max_error_rate_increase: None,
            max_p99_latency_ratio: None,
            max_prediction_divergence: None,
            min_online_accuracy: None,
            max_online_accuracy_drop: None,
            max_estimated_accuracy_drop: None,
            max_slow_share_increase: None,
            failure_limit: 0,
        }
    }
}

/// How a candidate that passed the gate takes traffic.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutSpec {
    /// Canary steps in order; weights increase from step to step.
    #[schemars(length(max = 20))]
    #[x_kube(validation = Rule::new("size(self) > 0").message(msg::STEPS_EMPTY))]
    #[x_kube(validation = Rule::new("self.map(s, s.weight).isSorted() && self.all(s, self.exists_one(t, t.weight == s.weight))").message(msg::CANARY_INCREASING))]
    pub steps: Vec<CanaryStep>,
    #[serde(default)]
    pub analysis: AnalysisSpec,
    /// A shadow stage between the gate and the first canary step: the
    /// candidate answers mirrored live requests that no user sees, and is
    /// rejected before any user traffic when it disagrees with the
    /// champion. Absent: the canary starts right after the gate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ShadowSpec>,
    /// Promote after the last step passes; otherwise wait for `driftline promote`.
    #[serde(default = "default_true")]
    pub auto_promote: bool,
    /// Longest a step may stay inconclusive (too little traffic) after its
    /// pause before the canary is rolled back (`2h`); unset waits indefinitely.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(DURATION_RULE).message(msg::PROGRESS_DEADLINE_DURATION))]
    pub progress_deadline: Option<SpecDuration>,
    /// Superseded versions kept (artifacts and ModelVersion objects).
    #[serde(default = "default_retain")]
    pub retain_superseded: u32,
    /// Rejected, rolled-back and failed versions kept for inspection.
    #[serde(default = "default_retain")]
    pub retain_failed: u32,
}

/// `n` minutes, as a default pause.
fn minutes(n: u32) -> SpecDuration {
    format!("{n}m")
        .parse()
        .unwrap_or_else(|e| unreachable!("a whole number of minutes is a duration: {e}"))
}

fn default_retain() -> u32 {
    3
}

impl Default for RolloutSpec {
    fn default() -> Self {
        Self {
            steps: vec![
                CanaryStep {
                    weight: 10,
                    pause: minutes(5),
                },
                CanaryStep {
                    weight: 50,
                    pause: minutes(10),
                },
            ],
            analysis: AnalysisSpec::default(),
            shadow: None,
            auto_promote: true,
            progress_deadline: None,
            retain_superseded: default_retain(),
            retain_failed: default_retain(),
        }
    }
}

/// The serving Deployment of each version.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServingSpec {
    /// Model-server pods per version.
    #[serde(default = "default_replicas")]
    #[x_kube(validation = Rule::new("self > 0").message(msg::REPLICAS))]
    pub replicas: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ComputeResources>,
    /// Container image of the model server (the driftline binary).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

fn default_replicas() -> u32 {
    1
}

impl Default for ServingSpec {
    fn default() -> Self {
        Self {
            replicas: default_replicas(),
            resources: None,
            image: None,
        }
    }
}
