//! Windows of live traffic compared with the reference profile.
//!
//! The monitor fills the current window's sketch row by row; a window
//! closes when it holds `window_rows` rows or, if set, when it is older than
//! `window_duration`. The last `recent_windows` closed windows are kept with
//! their reports, so memory stays O(features × bins × kept windows).

use std::collections::VecDeque;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::profile::{FeatureProfile, ReferenceProfile};
use crate::api::{DriftControl, DriftSpec, DriftStatistic, DriftThreshold, InvalidModel};

use super::rule::{self, ColumnReading, DriftRule};
use super::sketch::{ColumnSketch, DatasetSketch, Observation};
use super::stats;

/// Why a drift monitor could not be set up.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DriftError {
    #[error("drift settings: {0}")]
    Invalid(InvalidModel),
    #[error("drift override names feature `{0}`, which the model does not have")]
    UnknownFeature(String),
}

/// Threshold used with `threshold: auto` when the artifact carries no
/// calibration (trained before it existed): the usual fixed default.
pub const UNCALIBRATED_THRESHOLD: f64 = 0.1;

/// How the model server measures drift: the Model's `spec.drift` (the one
/// definition of those settings and their defaults, in `api`), plus what
/// only a server has: time-closed windows and how many closed ones to keep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DriftConfig {
    #[serde(flatten)]
    pub spec: DriftSpec,
    /// Close a window after this long even if it is not full.
    #[serde(default, with = "optional_seconds", rename = "windowSeconds")]
    pub window_duration: Option<std::time::Duration>,
    /// Closed windows kept with their reports.
    #[serde(default = "default_recent_windows")]
    pub recent_windows: usize,
}

fn default_recent_windows() -> usize {
    5
}

impl Default for DriftConfig {
    fn default() -> Self {
        Self::from(DriftSpec::default())
    }
}

impl From<DriftSpec> for DriftConfig {
    fn from(spec: DriftSpec) -> Self {
        Self {
            spec,
            window_duration: None,
            recent_windows: default_recent_windows(),
        }
    }
}

impl DriftConfig {
    /// Rows per window.
    pub fn window_rows(&self) -> u64 {
        u64::from(self.spec.window)
    }

    /// The drift rule this configuration names.
    pub fn rule(&self) -> DriftRule<'_> {
        DriftRule {
            trigger: self.spec.trigger,
            drifted_share: self.spec.drifted_share,
            features: &self.spec.features,
        }
    }
}

mod optional_seconds {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&d.as_secs_f64()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let secs = Option::<f64>::deserialize(d)?;
        match secs {
            Some(s) if s.is_finite() && s > 0.0 => Ok(Some(Duration::from_secs_f64(s))),
            Some(s) => Err(serde::de::Error::custom(format!(
                "windowSeconds must be > 0 (got {s})"
            ))),
            None => Ok(None),
        }
    }
}

/// Drift of one column in one window; every statistic is reported, the
/// configured one decides `drifted`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ColumnDrift {
    pub name: String,
    /// `numeric` or `categorical`.
    pub kind: String,
    /// Values counted (missing ones excluded).
    pub rows: u64,
    pub missing: u64,
    /// The statistic compared with the threshold.
    pub statistic: DriftStatistic,
    /// Its value.
    pub value: f64,
    /// The threshold applied (a feature override's when set).
    pub threshold: f64,
    /// Over its threshold (an ignored feature is still reported).
    pub drifted: bool,
    /// Share of the model's importance this feature carries in the drift
    /// rule (0 when ignored; 1 for the predictions).
    #[serde(default)]
    pub weight: f64,
    /// Jensen-Shannon distance (base 2).
    pub jensen_shannon: f64,
    /// Population stability index.
    pub psi: f64,
    /// Kolmogorov-Smirnov statistic (numeric only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ks: Option<f64>,
    /// Normalised Wasserstein distance (numeric only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wasserstein: Option<f64>,
    /// L-infinity distance between shares.
    pub l_infinity: f64,
    pub chi_square: f64,
    /// p-value of the test for this kind: KS for numeric, chi-square for categorical.
    pub p_value: f64,
    /// Benjamini-Hochberg adjusted p-value across the features of the window.
    pub adjusted_p_value: f64,
    /// Chance of a value at least this large in a drift-free window of this
    /// size, from the artifact's calibration (absent without one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibrated_p_value: Option<f64>,
    /// Share of values the reference never saw: an unseen category, or a
    /// number outside the reference range.
    pub unseen_share: f64,
}

/// Drift of one window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WindowReport {
    pub started: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended: Option<DateTime<Utc>>,
    pub rows: u64,
    /// Whether the window reached its row count (a partial or time-closed window may be noisy).
    pub complete: bool,
    pub features: Vec<ColumnDrift>,
    pub prediction: ColumnDrift,
    /// Names of the counted features over their threshold, heaviest first.
    pub drifted_features: Vec<String>,
    /// Share of (not ignored) features that drifted.
    pub drifted_share: f64,
    /// Share of the (not ignored) features' importance weight that drifted.
    #[serde(default)]
    pub drifted_weight: f64,
    /// Whether the thresholds are the artifact's calibrated null quantiles
    /// (`threshold: auto` with a calibrated artifact).
    #[serde(default)]
    pub calibrated: bool,
    /// The drift rule's verdict on this window (see `reason`).
    pub dataset_drifted: bool,
    /// Why the window counts as drifted or not: trigger, features with
    /// weight, value and threshold.
    #[serde(default)]
    pub reason: String,
    /// Raw counts, so windows of several replicas can be merged.
    pub sketch: DatasetSketch,
}

/// The monitor's state as served at `/v2/models/{name}/drift`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DriftReport {
    pub config: DriftConfig,
    /// The window being filled.
    pub current: WindowReport,
    /// Closed windows, newest first.
    pub recent: Vec<WindowReport>,
    /// Everything counted since the server started: the operator subtracts
    /// two reads of it and merges what all replicas counted in between.
    pub total: RunningTotal,
}

/// The counts of every row a monitor has seen since it started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunningTotal {
    /// When the monitor started: a later read with another `since` comes
    /// from a restarted server, whose counts began again at zero.
    pub since: DateTime<Utc>,
    pub sketch: DatasetSketch,
}

struct ClosedWindow {
    report: WindowReport,
}

/// Keeps the current and recent windows of one model's traffic.
pub struct DriftMonitor {
    profile: ReferenceProfile,
    config: DriftConfig,
    current: DatasetSketch,
    started: DateTime<Utc>,
    recent: VecDeque<ClosedWindow>,
    /// When the monitor started, and the counts of every closed window.
    since: DateTime<Utc>,
    counted: DatasetSketch,
}

impl DriftMonitor {
    /// A monitor for traffic of a model trained on `profile`.
    pub fn new(
        profile: ReferenceProfile,
        config: DriftConfig,
        now: DateTime<Utc>,
    ) -> Result<Self, DriftError> {
        config.spec.validate().map_err(DriftError::Invalid)?;
        if let Some(name) = config
            .spec
            .features
            .keys()
            .find(|name| !profile.features.iter().any(|f| f.name() == name.as_str()))
        {
            return Err(DriftError::UnknownFeature(name.clone()));
        }
        let current = DatasetSketch::for_profile(&profile);
        Ok(Self {
            profile,
            config,
            counted: current.clone(),
            current,
            started: now,
            recent: VecDeque::new(),
            since: now,
        })
    }

    /// The reference profile.
    pub fn profile(&self) -> &ReferenceProfile {
        &self.profile
    }

    /// The configuration.
    pub fn config(&self) -> &DriftConfig {
        &self.config
    }

    /// Counts `rows` rows; `feature(j, i)` is feature `j` of row `i` and
    /// `prediction(i)` the prediction for row `i`, `confidence(i)` its top-class
    /// probability (classifiers). Returns the reports of the
    /// windows this closed (oldest first).
    pub fn observe_rows<'a>(
        &mut self,
        rows: usize,
        feature: impl Fn(usize, usize) -> Observation<'a>,
        prediction: impl Fn(usize) -> Observation<'a>,
        confidence: impl Fn(usize) -> Option<f64>,
        now: DateTime<Utc>,
    ) -> Vec<WindowReport> {
        // Most calls close no window: no list allocated for them.
        let mut closed = Vec::new();
        closed.extend(self.tick(now));
        for i in 0..rows {
            self.current
                .observe_row(&self.profile, |j| feature(j, i), prediction(i));
            if let Some(c) = confidence(i) {
                self.current.confidence.observe(c);
            }
            if self.current.rows >= self.config.window_rows() {
                closed.push(self.close(now));
            }
        }
        closed
    }

    /// Closes the current window if it is older than the window duration and
    /// holds rows; returns its report.
    pub fn tick(&mut self, now: DateTime<Utc>) -> Option<WindowReport> {
        let duration = self.config.window_duration?;
        let age = (now - self.started).to_std().unwrap_or_default();
        if age >= duration && self.current.rows > 0 {
            Some(self.close(now))
        } else {
            None
        }
    }

    fn close(&mut self, now: DateTime<Utc>) -> WindowReport {
        let report = self.report_for(&self.current, self.started, Some(now));
        self.recent.push_front(ClosedWindow {
            report: report.clone(),
        });
        self.recent.truncate(self.config.recent_windows);
        self.counted
            .merge(&self.current)
            .expect("the current window is a sketch over the monitor's own profile");
        self.current.clear();
        self.started = now;
        report
    }

    /// The current window's counts.
    pub fn current_sketch(&self) -> &DatasetSketch {
        &self.current
    }

    /// The full report: current window and recent closed ones.
    pub fn report(&self) -> DriftReport {
        DriftReport {
            config: self.config.clone(),
            current: self.report_for(&self.current, self.started, None),
            recent: self.recent.iter().map(|w| w.report.clone()).collect(),
            total: self.total(),
        }
    }

    /// Every row counted since the monitor started.
    pub fn total(&self) -> RunningTotal {
        let mut sketch = self.counted.clone();
        sketch
            .merge(&self.current)
            .expect("the current window is a sketch over the monitor's own profile");
        RunningTotal {
            since: self.since,
            sketch,
        }
    }

    /// Drift of an arbitrary sketch over this profile (for example merged replicas).
    pub fn report_for(
        &self,
        sketch: &DatasetSketch,
        started: DateTime<Utc>,
        ended: Option<DateTime<Utc>>,
    ) -> WindowReport {
        compare(&self.profile, &self.config, sketch, started, ended)
    }
}

/// Compares a sketch with the reference under `config` and judges the
/// window with the drift rule.
pub fn compare(
    profile: &ReferenceProfile,
    config: &DriftConfig,
    sketch: &DatasetSketch,
    started: DateTime<Utc>,
    ended: Option<DateTime<Utc>>,
) -> WindowReport {
    let mut features: Vec<ColumnDrift> = profile
        .features
        .iter()
        .zip(&sketch.features)
        .map(|(p, s)| column_drift(p, s, config.spec.statistic, UNCALIBRATED_THRESHOLD))
        .collect();
    let adjusted =
        stats::benjamini_hochberg(&features.iter().map(|f| f.p_value).collect::<Vec<_>>());
    for (f, q) in features.iter_mut().zip(adjusted) {
        f.adjusted_p_value = q;
    }
    let mut prediction = column_drift(
        &profile.prediction,
        &sketch.prediction,
        config.spec.statistic,
        UNCALIBRATED_THRESHOLD,
    );
    prediction.adjusted_p_value = prediction.p_value;
    let calibrated = set_thresholds(profile, config, sketch.rows, &mut features, &mut prediction);

    let reading = |c: &ColumnDrift, weight: f64| ColumnReading {
        name: c.name.clone(),
        value: c.value,
        threshold: c.threshold,
        weight,
    };
    let readings: Vec<ColumnReading> = features
        .iter()
        .enumerate()
        .map(|(j, c)| reading(c, profile.weight(j)))
        .collect();
    // An empty window says nothing about the predictions.
    let prediction_reading = (prediction.rows > 0).then(|| reading(&prediction, 1.0));
    let verdict = rule::window_verdict(&readings, prediction_reading.as_ref(), &config.rule());
    for (f, v) in features.iter_mut().zip(&verdict.features) {
        f.threshold = v.threshold;
        f.drifted = f.rows > 0 && v.drifted;
        f.weight = v.weight;
    }
    if let Some(v) = &verdict.prediction {
        prediction.drifted = v.drifted;
        prediction.weight = v.weight;
    }
    WindowReport {
        started,
        ended,
        rows: sketch.rows,
        complete: sketch.rows >= config.window_rows(),
        dataset_drifted: verdict.drifted,
        features,
        prediction,
        drifted_features: verdict.drifted_features,
        drifted_share: verdict.drifted_share,
        drifted_weight: verdict.drifted_weight,
        calibrated,
        reason: verdict.reason,
        sketch: sketch.clone(),
    }
}

/// Sets every column's threshold (before overrides) for a window of `rows`
/// rows: the fixed one, or each column's calibrated null quantile at the
/// tail `config.spec.control` gives `config.spec.false_alarm_rate`. Returns whether
/// the thresholds are calibrated.
fn set_thresholds(
    profile: &ReferenceProfile,
    config: &DriftConfig,
    rows: u64,
    features: &mut [ColumnDrift],
    prediction: &mut ColumnDrift,
) -> bool {
    let fixed = match (config.spec.threshold, &profile.calibration) {
        (DriftThreshold::Fixed(t), _) => Some(t),
        (DriftThreshold::Auto, Some(c)) if c.features.len() == features.len() => None,
        // An artifact trained before calibration: the fixed default, and the report says so.
        (DriftThreshold::Auto, _) => Some(UNCALIBRATED_THRESHOLD),
    };
    let (Some(calibration), None) = (&profile.calibration, fixed) else {
        for c in features.iter_mut().chain([prediction]) {
            c.threshold = fixed.unwrap_or(UNCALIBRATED_THRESHOLD);
        }
        return false;
    };
    let nulls: Vec<_> = calibration
        .features
        .iter()
        .chain([&calibration.prediction])
        .zip(features.iter_mut().chain([prediction]))
        .map(|(null, c)| {
            let fit = null.fit_at(c.statistic, rows);
            c.calibrated_p_value = fit.map(|f| f.p_value(c.statistic, c.value));
            (fit, c)
        })
        .collect();
    // The family: every counted feature and the predictions.
    let ignored = |c: &ColumnDrift| config.spec.features.get(&c.name).is_some_and(|o| o.ignore);
    let counted: Vec<f64> = nulls
        .iter()
        .filter(|(_, c)| !ignored(c))
        .map(|(_, c)| c.calibrated_p_value.unwrap_or(1.0))
        .collect();
    let m = counted.len().max(1) as f64;
    let alpha = config.spec.false_alarm_rate;
    let tail = match config.spec.control {
        DriftControl::PerFeature => alpha,
        DriftControl::FamilyWise => alpha / m,
        DriftControl::FalseDiscoveryRate => {
            // Benjamini-Hochberg: the k smallest p-values with p(k) ≤ kα/m are
            // flagged, which is every column over its (1 - kα/m) quantile.
            let mut sorted = counted.clone();
            sorted.sort_unstable_by(f64::total_cmp);
            let k = (1..=sorted.len())
                .rev()
                .find(|&k| sorted[k - 1] <= k as f64 * alpha / m)
                .unwrap_or(1);
            k as f64 * alpha / m
        }
    };
    for (fit, c) in nulls {
        c.threshold = fit.map_or(UNCALIBRATED_THRESHOLD, |f| f.quantile(c.statistic, tail));
    }
    true
}

/// The configured statistic's value, and which statistic that is for this
/// column (categorical columns answer KS and Wasserstein with Jensen-Shannon).
pub(crate) fn statistic_value(
    profile: &FeatureProfile,
    reference: &[f64],
    current: &[f64],
    statistic: DriftStatistic,
) -> (DriftStatistic, f64) {
    match (statistic, profile) {
        (DriftStatistic::Psi, _) => (DriftStatistic::Psi, stats::psi(reference, current)),
        (DriftStatistic::Ks, FeatureProfile::Numeric { .. }) => {
            (DriftStatistic::Ks, stats::ks_statistic(reference, current))
        }
        (DriftStatistic::Wasserstein, FeatureProfile::Numeric { profile: p, .. }) => (
            DriftStatistic::Wasserstein,
            stats::normalised_wasserstein(reference, current, &stats::bin_centres(&p.edges), p.std),
        ),
        _ => (
            DriftStatistic::JensenShannon,
            stats::jensen_shannon_distance(reference, current),
        ),
    }
}

/// All statistics of one column's sketch against its reference.
pub fn column_drift(
    profile: &FeatureProfile,
    sketch: &ColumnSketch,
    statistic: DriftStatistic,
    threshold: f64,
) -> ColumnDrift {
    let rows = sketch.rows();
    let current = stats::shares(&sketch.counts);
    let (reference, reference_count) = match profile {
        FeatureProfile::Numeric { profile, .. } => (&profile.shares, profile.count),
        FeatureProfile::Categorical { profile, .. } => (&profile.shares, profile.count),
    };
    let empty = rows == 0;
    let js = if empty {
        0.0
    } else {
        stats::jensen_shannon_distance(reference, &current)
    };
    let psi = if empty {
        0.0
    } else {
        stats::psi(reference, &current)
    };
    let l_inf = if empty {
        0.0
    } else {
        stats::l_infinity(reference, &current)
    };
    let reference_counts: Vec<f64> = reference
        .iter()
        .map(|s| s * reference_count as f64)
        .collect();
    let current_counts: Vec<f64> = sketch.counts.iter().map(|&c| c as f64).collect();
    let chi = stats::chi_square(&reference_counts, &current_counts);
    let (kind, ks, wasserstein, p_value, unseen_share) = match profile {
        FeatureProfile::Numeric { profile: p, .. } => {
            let ks = if empty {
                0.0
            } else {
                stats::ks_statistic(reference, &current)
            };
            let positions = stats::bin_centres(&p.edges);
            let w = if empty {
                0.0
            } else {
                stats::normalised_wasserstein(reference, &current, &positions, p.std)
            };
            let outside = if empty {
                0.0
            } else {
                current[0] + current[current.len() - 1]
            };
            (
                "numeric",
                Some(ks),
                Some(w),
                stats::ks_p_value(ks, p.count, rows),
                outside,
            )
        }
        FeatureProfile::Categorical { .. } => {
            let unseen = if empty {
                0.0
            } else {
                current[current.len() - 1]
            };
            ("categorical", None, None, chi.p_value, unseen)
        }
    };
    let (statistic, value) = if empty {
        (
            statistic_value(profile, reference, reference, statistic).0,
            0.0,
        )
    } else {
        statistic_value(profile, reference, &current, statistic)
    };
    ColumnDrift {
        name: profile.name().to_string(),
        kind: kind.to_string(),
        rows,
        missing: sketch.missing,
        statistic,
        value,
        threshold,
        drifted: !empty && value > threshold,
        weight: 0.0,
        jensen_shannon: js,
        psi,
        ks,
        wasserstein,
        l_infinity: l_inf,
        chi_square: chi.statistic,
        p_value,
        adjusted_p_value: p_value,
        calibrated_p_value: None,
        unseen_share,
    }
}
