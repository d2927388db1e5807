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
use super::sketch::{ColumnSketch, DatasetSketch, Observation};
use super::stats;

/// Why a drift monitor could not be set up.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DriftError {
    #[error("drift window must hold at least one row (got window_rows = 0)")]
    EmptyWindow,
    #[error("drift threshold must be a finite number ≥ 0 (got {0})")]
    BadThreshold(f64),
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

/// Per-feature override of the threshold.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FeatureOverride {
    #[serde(default)]
    pub threshold: Option<f64>,
    /// Never count this feature as drifted.
    #[serde(default)]
    pub ignore: bool,
}

/// How drift is measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DriftConfig {
    pub statistic: Statistic,
    /// A feature drifts when its statistic exceeds this.
    pub threshold: f64,
    /// Rows per window.
    pub window_rows: u64,
    /// Close a window after this long even if it is not full.
    #[serde(default, with = "optional_seconds", rename = "windowSeconds")]
    pub window_duration: Option<std::time::Duration>,
    /// Closed windows kept with their reports.
    pub recent_windows: usize,
    /// The dataset drifts when at least this share of features drift.
    pub drifted_share: f64,
    /// False-discovery rate for the Benjamini-Hochberg adjusted p-values.
    pub false_discovery_rate: f64,
    #[serde(default)]
    pub features: BTreeMap<String, FeatureOverride>,
}

impl Default for DriftConfig {
    fn default() -> Self {
        Self {
            statistic: Statistic::JensenShannon,
            threshold: 0.1,
            window_rows: 1000,
            window_duration: None,
            recent_windows: 5,
            drifted_share: 0.5,
            false_discovery_rate: 0.05,
            features: BTreeMap::new(),
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
    pub threshold: f64,
    pub drifted: bool,
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
    /// Names of the drifted features.
    pub drifted_features: Vec<String>,
    /// Share of (not ignored) features that drifted.
    pub drifted_share: f64,
    /// Whether the drifted share reached the configured share.
    pub dataset_drifted: bool,
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
        if !config.threshold.is_finite() || config.threshold < 0.0 {
            return Err(DriftError::BadThreshold(config.threshold));
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
            current,
            started: now,
            recent: VecDeque::new(),
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

/// Compares a sketch with the reference under `config`.
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
        .map(|(p, s)| {
            let threshold = config
                .features
                .get(p.name())
                .and_then(|o| o.threshold)
                .unwrap_or(config.threshold);
            column_drift(p, s, config.statistic, threshold)
        })
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
        config.threshold,
    );
    prediction.adjusted_p_value = prediction.p_value;

    let counted: Vec<&ColumnDrift> = features
        .iter()
        .filter(|f| !config.features.get(&f.name).is_some_and(|o| o.ignore))
        .collect();
    let drifted_features: Vec<String> = counted
        .iter()
        .filter(|f| f.drifted)
        .map(|f| f.name.clone())
        .collect();
    let drifted_share =
        stats::drifted_share(&counted.iter().map(|f| f.drifted).collect::<Vec<_>>());
    let dataset_drifted = !drifted_features.is_empty() && drifted_share >= config.drifted_share;
    WindowReport {
        started,
        ended,
        rows: sketch.rows,
        complete: sketch.rows >= config.window_rows,
        dataset_drifted,
        features,
        prediction,
        drifted_features,
        drifted_share,
        sketch: sketch.clone(),
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
    let (statistic, value) = match (statistic, ks, wasserstein) {
        (Statistic::Psi, _, _) => (Statistic::Psi, psi),
        (Statistic::Ks, Some(ks), _) => (Statistic::Ks, ks),
        (Statistic::Wasserstein, _, Some(w)) => (Statistic::Wasserstein, w),
        _ => (Statistic::JensenShannon, js),
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
        jensen_shannon: js,
        psi,
        ks,
        wasserstein,
        l_infinity: l_inf,
        chi_square: chi.statistic,
        p_value,
        adjusted_p_value: p_value,
        unseen_share,
    }
}
