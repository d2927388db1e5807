//! Windows of live traffic compared with the reference profile.
//!
//! The monitor fills the current window's sketch row by row; a window
//! closes when it holds `window_rows` rows or, if set, when it is older than
//! `window_duration`. The last `recent_windows` closed windows are kept with
//! their reports, so memory stays O(features × bins × kept windows).

use std::collections::{BTreeMap, VecDeque};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::profile::{FeatureProfile, ReferenceProfile};
use super::rule::{self, ColumnReading, DriftRule, FeatureOverride, Trigger};
use super::sketch::{ColumnSketch, DatasetSketch, Observation};
use super::stats;

/// Why a drift monitor could not be set up.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DriftError {
    #[error("drift window must hold at least one row (got window_rows = 0)")]
    EmptyWindow,
    #[error("drift threshold must be a finite number ≥ 0 (got {0})")]
    BadThreshold(f64),
    #[error("drift false-alarm rate must be in (0, 1) (got {0})")]
    BadFalseAlarmRate(f64),
    #[error("drifted share must be in [0, 1] (got {0})")]
    BadDriftedShare(f64),
    #[error("drift override names feature `{0}`, which the model does not have")]
    UnknownFeature(String),
}

/// The statistic compared with the threshold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Statistic {
    /// Jensen-Shannon distance, base 2, in [0, 1].
    #[default]
    JensenShannon,
    /// Population stability index (a divergence, unbounded).
    Psi,
    /// Kolmogorov-Smirnov statistic (numeric; categorical features use Jensen-Shannon).
    Ks,
    /// Wasserstein distance over the reference standard deviation (numeric;
    /// categorical features use Jensen-Shannon).
    Wasserstein,
}

impl std::str::FromStr for Statistic {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().replace(['-', '_'], "").as_str() {
            "jensenshannon" | "js" => Ok(Self::JensenShannon),
            "psi" => Ok(Self::Psi),
            "ks" => Ok(Self::Ks),
            "wasserstein" => Ok(Self::Wasserstein),
            _ => Err(format!(
                "unknown drift statistic `{s}`; expected jensenShannon, psi, ks or wasserstein"
            )),
        }
    }
}

/// Threshold used with `threshold: auto` when the artifact carries no
/// calibration (trained before it existed): the usual fixed default.
pub const UNCALIBRATED_THRESHOLD: f64 = 0.1;

/// What a column's statistic is compared with.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub enum Threshold {
    /// The column's null quantile at this window's size, calibrated at
    /// training, at the tail `false_alarm_rate` under `control`.
    #[default]
    Auto,
    /// The same number for every column.
    Fixed(f64),
}

impl std::str::FromStr for Threshold {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().eq_ignore_ascii_case("auto") {
            return Ok(Self::Auto);
        }
        match s.trim().parse::<f64>() {
            Ok(t) if t.is_finite() && t >= 0.0 => Ok(Self::Fixed(t)),
            _ => Err(format!(
                "drift threshold `{s}`: expected `auto` or a number ≥ 0"
            )),
        }
    }
}

impl std::fmt::Display for Threshold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Fixed(t) => write!(f, "{t}"),
        }
    }
}

impl Serialize for Threshold {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Auto => s.serialize_str("auto"),
            Self::Fixed(t) => s.serialize_f64(*t),
        }
    }
}

impl<'de> Deserialize<'de> for Threshold {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(f64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(t) => Ok(Self::Fixed(t)),
            Raw::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// Which error a calibrated threshold bounds at `false_alarm_rate`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Control {
    /// The chance that any column of a drift-free window is flagged (Bonferroni).
    #[default]
    FamilyWise,
    /// The expected share of flagged columns that did not drift (Benjamini-Hochberg).
    FalseDiscoveryRate,
    /// Each column's own chance of a false flag, uncorrected.
    PerFeature,
}

impl std::str::FromStr for Control {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().replace(['-', '_'], "").as_str() {
            "familywise" | "fwer" | "bonferroni" => Ok(Self::FamilyWise),
            "falsediscoveryrate" | "fdr" => Ok(Self::FalseDiscoveryRate),
            "perfeature" | "none" => Ok(Self::PerFeature),
            _ => Err(format!(
                "unknown drift control `{s}`; expected familyWise, falseDiscoveryRate or perFeature"
            )),
        }
    }
}

/// How drift is measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DriftConfig {
    pub statistic: Statistic,
    /// A column drifts when its statistic exceeds this: `auto` (calibrated) or a number.
    #[serde(default)]
    pub threshold: Threshold,
    /// With `threshold: auto`, the rate of false flags allowed per window (see `control`).
    #[serde(default = "default_false_alarm_rate")]
    pub false_alarm_rate: f64,
    /// With `threshold: auto`, which false-flag rate `false_alarm_rate` bounds.
    #[serde(default)]
    pub control: Control,
    /// Rows per window.
    pub window_rows: u64,
    /// Close a window after this long even if it is not full.
    #[serde(default, with = "optional_seconds", rename = "windowSeconds")]
    pub window_duration: Option<std::time::Duration>,
    /// Closed windows kept with their reports.
    pub recent_windows: usize,
    /// How drifted features add up to a drifted window.
    #[serde(default)]
    pub trigger: Trigger,
    /// The window drifts when at least this share of the features (`share`)
    /// or of their importance weight (`weighted`) drifts.
    pub drifted_share: f64,
    #[serde(default)]
    pub features: BTreeMap<String, FeatureOverride>,
}

fn default_false_alarm_rate() -> f64 {
    0.01
}

impl Default for DriftConfig {
    fn default() -> Self {
        Self {
            statistic: Statistic::JensenShannon,
            threshold: Threshold::Auto,
            false_alarm_rate: default_false_alarm_rate(),
            control: Control::FamilyWise,
            window_rows: 1000,
            window_duration: None,
            recent_windows: 5,
            trigger: Trigger::Weighted,
            drifted_share: 0.5,
            features: BTreeMap::new(),
        }
    }
}

impl DriftConfig {
    /// The drift rule this configuration names.
    pub fn rule(&self) -> DriftRule<'_> {
        DriftRule {
            trigger: self.trigger,
            drifted_share: self.drifted_share,
            features: &self.features,
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
    pub statistic: Statistic,
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
        if config.window_rows == 0 {
            return Err(DriftError::EmptyWindow);
        }
        if let Threshold::Fixed(t) = config.threshold
            && (!t.is_finite() || t < 0.0)
        {
            return Err(DriftError::BadThreshold(t));
        }
        if config.false_alarm_rate.is_nan()
            || config.false_alarm_rate <= 0.0
            || config.false_alarm_rate >= 1.0
        {
            return Err(DriftError::BadFalseAlarmRate(config.false_alarm_rate));
        }
        if !(0.0..=1.0).contains(&config.drifted_share) {
            return Err(DriftError::BadDriftedShare(config.drifted_share));
        }
        for (name, o) in &config.features {
            if !profile.features.iter().any(|f| f.name() == name) {
                return Err(DriftError::UnknownFeature(name.clone()));
            }
            if let Some(t) = o.threshold
                && (!t.is_finite() || t < 0.0)
            {
                return Err(DriftError::BadThreshold(t));
            }
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
    /// `prediction(i)` the prediction for row `i`. Returns the reports of the
    /// windows this closed (oldest first).
    pub fn observe_rows<'a>(
        &mut self,
        rows: usize,
        feature: impl Fn(usize, usize) -> Observation<'a>,
        prediction: impl Fn(usize) -> Observation<'a>,
        now: DateTime<Utc>,
    ) -> Vec<WindowReport> {
        let mut closed = self.tick(now).into_iter().collect::<Vec<_>>();
        for i in 0..rows {
            self.current
                .observe_row(&self.profile, |j| feature(j, i), prediction(i));
            if self.current.rows >= self.config.window_rows {
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
        .map(|(p, s)| column_drift(p, s, config.statistic, UNCALIBRATED_THRESHOLD))
        .collect();
    let adjusted =
        stats::benjamini_hochberg(&features.iter().map(|f| f.p_value).collect::<Vec<_>>());
    for (f, q) in features.iter_mut().zip(adjusted) {
        f.adjusted_p_value = q;
    }
    let mut prediction = column_drift(
        &profile.prediction,
        &sketch.prediction,
        config.statistic,
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
        complete: sketch.rows >= config.window_rows,
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
/// tail `config.control` gives `config.false_alarm_rate`. Returns whether
/// the thresholds are calibrated.
fn set_thresholds(
    profile: &ReferenceProfile,
    config: &DriftConfig,
    rows: u64,
    features: &mut [ColumnDrift],
    prediction: &mut ColumnDrift,
) -> bool {
    let fixed = match (config.threshold, &profile.calibration) {
        (Threshold::Fixed(t), _) => Some(t),
        (Threshold::Auto, Some(c)) if c.features.len() == features.len() => None,
        // An artifact trained before calibration: the fixed default, and the report says so.
        (Threshold::Auto, _) => Some(UNCALIBRATED_THRESHOLD),
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
    let ignored = |c: &ColumnDrift| config.features.get(&c.name).is_some_and(|o| o.ignore);
    let counted: Vec<f64> = nulls
        .iter()
        .filter(|(_, c)| !ignored(c))
        .map(|(_, c)| c.calibrated_p_value.unwrap_or(1.0))
        .collect();
    let m = counted.len().max(1) as f64;
    let alpha = config.false_alarm_rate;
    let tail = match config.control {
        Control::PerFeature => alpha,
        Control::FamilyWise => alpha / m,
        Control::FalseDiscoveryRate => {
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
    statistic: Statistic,
) -> (Statistic, f64) {
    match (statistic, profile) {
        (Statistic::Psi, _) => (Statistic::Psi, stats::psi(reference, current)),
        (Statistic::Ks, FeatureProfile::Numeric { .. }) => {
            (Statistic::Ks, stats::ks_statistic(reference, current))
        }
        (Statistic::Wasserstein, FeatureProfile::Numeric { profile: p, .. }) => (
            Statistic::Wasserstein,
            stats::normalised_wasserstein(reference, current, &stats::bin_centres(&p.edges), p.std),
        ),
        _ => (
            Statistic::JensenShannon,
            stats::jensen_shannon_distance(reference, current),
        ),
    }
}

/// All statistics of one column's sketch against its reference.
pub fn column_drift(
    profile: &FeatureProfile,
    sketch: &ColumnSketch,
    statistic: Statistic,
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
