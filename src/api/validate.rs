//! What users get wrong in a Model, checked twice with the same words: by the
//! API server (CEL rules in the CRD, built from the messages below) and by
//! [`ModelSpec::validate`] for the CLI, which reads YAML without a server.
//! Durations are the exception: they are typed ([`super::SpecDuration`]), so
//! the CLI refuses a bad one while decoding, naming its field, and the API
//! server by its CEL rule.

use std::fmt;

use super::images::conv_output_size;
use super::model::{
    DataFormat, DriftSpec, DriftStatistic, DriftThreshold, MetricThreshold, ModelSpec, Task,
};
use super::rollout::AnalysisSpec;
use super::schedule::{RetrainSchedule, time_zone_names};
use super::slice::SliceCondition;

/// The messages users see, shared by the CEL rules and `validate()`.
pub mod msg;

/// Architectures the trainer knows.
pub const KNOWN_ARCHITECTURES: &[&str] = &["mlp", "cnn"];

/// CEL rule for `architecture.type`: one of [`KNOWN_ARCHITECTURES`].
pub fn architecture_rule() -> String {
    let names: Vec<String> = KNOWN_ARCHITECTURES
        .iter()
        .map(|n| format!("'{n}'"))
        .collect();
    format!("self in [{}]", names.join(", "))
}

/// CEL rule for `retrain.schedule`: 5 or 6 fields, each value in its range.
pub fn cron_rule() -> String {
    let field = |value: &str| {
        format!("([*]|{value}(-{value})?)([/][0-9]+)?(,([*]|{value}(-{value})?)([/][0-9]+)?)*")
    };
    let sixty = field("[0-5]?[0-9]");
    let hour = field("(2[0-3]|[01]?[0-9])");
    let dom = format!("([?]|{})", field("(3[01]|[12][0-9]|0?[1-9])"));
    let month = field("(1[0-2]|0?[1-9]|jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)");
    let dow = format!("([?]|{})", field("([0-7]|sun|mon|tue|wed|thu|fri|sat)"));
    format!(
        "self.matches('(?i)^ *(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|({sixty} +)?{sixty} +{hour} +{dom} +{month} +{dow}) *$')"
    )
}

/// CEL rule for `retrain.timeZone`: a name from the IANA database.
pub fn time_zone_rule() -> String {
    let names: Vec<String> = time_zone_names().map(|n| format!("'{n}'")).collect();
    format!("self in [{}]", names.join(", "))
}

/// One refused field: where, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// JSON path from the resource root, as the API server reports it
    /// (`spec.rollout.steps[1].weight`).
    pub path: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Why a Model spec was refused: every field at once, so a user fixes them in one go.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Model spec is invalid: {}", .errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct InvalidModel {
    pub errors: Vec<FieldError>,
}

struct Collector(Vec<FieldError>);

impl Collector {
    fn finish(self) -> Result<(), InvalidModel> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(InvalidModel { errors: self.0 })
        }
    }
    fn check(&mut self, ok: bool, path: impl Into<String>, message: &str) {
        if !ok {
            self.0.push(FieldError {
                path: path.into(),
                message: message.to_string(),
            });
        }
    }
    fn check_detail(&mut self, result: Result<(), String>, path: impl Into<String>, message: &str) {
        if let Err(detail) = result {
            self.0.push(FieldError {
                path: path.into(),
                message: format!("{message} ({detail})"),
            });
        }
    }
}

fn in_unit(x: f64) -> bool {
    (0.0..=1.0).contains(&x)
}

/// A Kubernetes quantity, by the crate's one grammar.
fn is_quantity(s: &str) -> bool {
    crate::quantity::parse_quantity(s).is_ok()
}

fn metric(c: &mut Collector, m: &MetricThreshold, path: &str) {
    c.check(
        !m.name.is_empty(),
        format!("{path}.name"),
        msg::METRIC_NAME_EMPTY,
    );
    if let (Some(min), Some(max)) = (m.min, m.max) {
        c.check(min <= max, path, msg::MIN_ABOVE_MAX);
    }
    if ["accuracy", "macroF1", "rocAuc"].contains(&m.name.as_str()) {
        c.check(
            m.min.is_none_or(in_unit) && m.max.is_none_or(in_unit),
            path,
            msg::UNIT_METRIC_RANGE,
        );
    }
    if let Some(d) = m.max_drop_from_champion {
        c.check(
            d >= 0.0,
            format!("{path}.maxDropFromChampion"),
            msg::MAX_DROP,
        );
    }
    if let Some(d) = m.max_relative_drop_from_champion {
        c.check(
            in_unit(d),
            format!("{path}.maxRelativeDropFromChampion"),
            msg::MAX_RELATIVE_DROP,
        );
    }
}

fn analysis(c: &mut Collector, a: &AnalysisSpec) {
    let p = "spec.rollout.analysis";
    c.check(
        a.alpha > 0.0 && a.alpha < 0.5,
        format!("{p}.alpha"),
        msg::ALPHA,
    );
    if let Some(v) = a.max_slow_share_increase {
        c.check(
            (0.0..=0.99).contains(&v),
            format!("{p}.maxSlowShareIncrease"),
            msg::MAX_SLOW_SHARE_INCREASE,
        );
    }
    c.check(
        a.min_requests > 0,
        format!("{p}.minRequests"),
        msg::MIN_REQUESTS,
    );
    let unit = [
        (a.max_error_rate, "maxErrorRate", msg::MAX_ERROR_RATE),
        (
            a.max_error_rate_increase,
            "maxErrorRateIncrease",
            msg::MAX_ERROR_RATE_INCREASE,
        ),
        (
            a.max_prediction_divergence,
            "maxPredictionDivergence",
            msg::MAX_PREDICTION_DIVERGENCE,
        ),
        (
            a.min_online_accuracy,
            "minOnlineAccuracy",
            msg::MIN_ONLINE_ACCURACY,
        ),
        (
            a.max_online_accuracy_drop,
            "maxOnlineAccuracyDrop",
            msg::MAX_ONLINE_ACCURACY_DROP,
        ),
        (
            a.max_estimated_accuracy_drop,
            "maxEstimatedAccuracyDrop",
            msg::MAX_ESTIMATED_ACCURACY_DROP,
        ),
    ];
    for (value, name, message) in unit {
        if let Some(v) = value {
            c.check(in_unit(v), format!("{p}.{name}"), message);
        }
    }
    if let Some(v) = a.max_p99_latency_ms {
        c.check(
            v > 0.0,
            format!("{p}.maxP99LatencyMs"),
            msg::MAX_P99_LATENCY,
        );
    }
    if let Some(v) = a.max_p99_latency_ratio {
        c.check(
            v >= 1.0,
            format!("{p}.maxP99LatencyRatio"),
            msg::MAX_P99_LATENCY_RATIO,
        );
    }
}

fn drift(c: &mut Collector, dr: &DriftSpec) {
    if let DriftThreshold::Fixed(t) = dr.threshold {
        c.check(
            t.is_finite() && t > 0.0,
            "spec.drift.threshold",
            msg::DRIFT_THRESHOLD_POSITIVE,
        );
        let bounded = matches!(
            dr.statistic,
            DriftStatistic::JensenShannon | DriftStatistic::Ks
        );
        c.check(
            !bounded || t <= 1.0,
            "spec.drift",
            msg::DRIFT_THRESHOLD_BOUNDED,
        );
    }
    c.check(
        dr.false_alarm_rate > 0.0 && dr.false_alarm_rate < 1.0,
        "spec.drift.falseAlarmRate",
        msg::FALSE_ALARM_RATE,
    );
    c.check(dr.window > 0, "spec.drift.window", msg::DRIFT_WINDOW);
    c.check(
        dr.consecutive_windows > 0,
        "spec.drift.consecutiveWindows",
        msg::CONSECUTIVE_WINDOWS,
    );
    c.check(
        dr.drifted_share > 0.0 && dr.drifted_share <= 1.0,
        "spec.drift.driftedShare",
        msg::DRIFTED_SHARE,
    );
    for (name, o) in &dr.features {
        if let Some(th) = o.threshold {
            c.check(
                th.is_finite() && th > 0.0,
                format!("spec.drift.features.{name}.threshold"),
                msg::FEATURE_THRESHOLD,
            );
        }
    }
}

/// The image input and conv blocks: each field's own rule, then what CEL
/// cannot see (the blocks' geometry on the image size, cnn without images).
fn images(c: &mut Collector, spec: &ModelSpec) {
    let a = &spec.architecture;
    let p = "spec.architecture";
    let cnn = a.kind == "cnn";
    c.check(
        !cnn || !a.conv_blocks.is_empty(),
        p,
        msg::CONV_BLOCKS_NEEDED,
    );
    for (i, b) in a.conv_blocks.iter().enumerate() {
        let p = format!("{p}.convBlocks[{i}]");
        c.check(b.channels > 0, format!("{p}.channels"), msg::CONV_CHANNELS);
        c.check(b.kernel % 2 == 1, format!("{p}.kernel"), msg::CONV_KERNEL);
        c.check(b.stride > 0, format!("{p}.stride"), msg::CONV_STRIDE);
    }
    if let Some(init) = &a.init {
        c.check(!init.is_empty(), format!("{p}.init"), msg::INIT_EMPTY);
    }
    let is_images = spec.data.format == Some(DataFormat::Images);
    c.check(!cnn || is_images, "spec.data.format", msg::CNN_NEEDS_IMAGES);
    let image = spec.data.images.clone().unwrap_or_default();
    let q = "spec.data.images";
    c.check(image.height > 0, format!("{q}.height"), msg::IMAGE_SIZE);
    c.check(image.width > 0, format!("{q}.width"), msg::IMAGE_SIZE);
    if let Some(r) = image.resize {
        c.check(r > 0, format!("{q}.resize"), msg::IMAGE_RESIZE);
    }
    c.check(
        image.std.iter().all(|s| s.is_finite() && *s > 0.0),
        format!("{q}.std"),
        msg::IMAGE_STD,
    );
    let channels = image.channels.count();
    c.check(
        [0, channels].contains(&image.mean.len()) && image.mean.len() == image.std.len(),
        q,
        msg::IMAGE_NORMALIZATION_CHANNELS,
    );
    if cnn && image.height > 0 && image.width > 0 {
        let size = conv_output_size(&a.conv_blocks, image.height as usize, image.width as usize);
        if let Err(i) = size {
            c.check(false, format!("{p}.convBlocks[{i}]"), msg::CONV_TOO_DEEP);
        }
    }
}

impl DriftSpec {
    /// The `spec.drift` part of [`ModelSpec::validate`], for the model
    /// server, whose drift settings come as flags rather than a whole Model.
    pub fn validate(&self) -> Result<(), InvalidModel> {
        let mut c = Collector(Vec::new());
        drift(&mut c, self);
        c.finish()
    }
}

impl ModelSpec {
    /// Checks what the CRD's CEL rules check, with the same messages and
    /// paths, plus what CEL cannot express (cron field semantics, duration
    /// overflow, slice conditions). Every problem is reported, not only the first.
    pub fn validate(&self) -> Result<(), InvalidModel> {
        let mut c = Collector(Vec::new());

        let d = &self.data;
        c.check(!d.source.is_empty(), "spec.data.source", msg::SOURCE_EMPTY);
        c.check(
            !d.target.trim().is_empty(),
            "spec.data.target",
            msg::TARGET_EMPTY,
        );
        c.check(
            !d.features.contains(&d.target),
            "spec.data",
            msg::TARGET_IN_FEATURES,
        );
        c.check(
            (0.0..1.0).contains(&d.validation_fraction),
            "spec.data.validationFraction",
            msg::VALIDATION_FRACTION,
        );
        if let Some(w) = &d.window {
            c.check(
                !w.column.trim().is_empty(),
                "spec.data.window.column",
                msg::WINDOW_COLUMN_EMPTY,
            );
            if let Some(holdout) = &w.holdout {
                c.check(
                    holdout.get() < w.last.get(),
                    "spec.data.window.holdout",
                    msg::WINDOW_HOLDOUT_SHORTER,
                );
            }
        }
        for (column, condition) in &d.where_ {
            c.check_detail(
                SliceCondition::parse(condition)
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                format!("spec.data.where.{column}"),
                msg::WHERE_CONDITION,
            );
        }

        let a = &self.architecture;
        c.check(
            KNOWN_ARCHITECTURES.contains(&a.kind.as_str()),
            "spec.architecture.type",
            msg::ARCHITECTURE_UNKNOWN,
        );
        c.check(
            a.hidden_layers.iter().all(|w| *w > 0),
            "spec.architecture.hiddenLayers",
            msg::HIDDEN_LAYER_EMPTY,
        );
        c.check(
            (0.0..1.0).contains(&a.dropout),
            "spec.architecture.dropout",
            msg::DROPOUT_RANGE,
        );
        images(&mut c, self);

        let t = &self.training;
        c.check(t.epochs > 0, "spec.training.epochs", msg::EPOCHS_POSITIVE);
        c.check(
            t.batch_size > 0,
            "spec.training.batchSize",
            msg::BATCH_SIZE_POSITIVE,
        );
        c.check(
            t.learning_rate.is_finite() && t.learning_rate > 0.0,
            "spec.training.learningRate",
            msg::LEARNING_RATE_POSITIVE,
        );
        c.check(
            t.weight_decay.is_finite() && t.weight_decay >= 0.0,
            "spec.training.weightDecay",
            msg::WEIGHT_DECAY,
        );
        if let Some(es) = &t.early_stopping {
            c.check(
                es.patience > 0,
                "spec.training.earlyStopping.patience",
                msg::PATIENCE,
            );
        }
        if let Some(r) = &t.resources {
            if let Some(cpu) = &r.cpu {
                c.check(
                    is_quantity(cpu),
                    "spec.training.resources.cpu",
                    msg::CPU_QUANTITY,
                );
            }
            if let Some(mem) = &r.memory {
                c.check(
                    is_quantity(mem),
                    "spec.training.resources.memory",
                    msg::MEMORY_QUANTITY,
                );
            }
        }
        c.check(
            t.freeze.iter().all(|f| !f.is_empty()),
            "spec.training.freeze",
            msg::FREEZE_EMPTY,
        );
        if let Some(lr) = t.head_learning_rate {
            c.check(
                lr.is_finite() && lr > 0.0,
                "spec.training.headLearningRate",
                msg::HEAD_LEARNING_RATE,
            );
        }
        if let Some(rows) = t.shuffle_buffer {
            c.check(
                rows > 0,
                "spec.training.shuffleBuffer",
                msg::SHUFFLE_BUFFER_POSITIVE,
            );
        }

        if let Some(r) = &self.retrain {
            c.check(
                r.time_zone.is_none() || r.schedule.is_some(),
                "spec.retrain",
                msg::TIME_ZONE_NEEDS_SCHEDULE,
            );
            if let Some(tz) = &r.time_zone {
                c.check(
                    time_zone_names().any(|n| n == tz),
                    "spec.retrain.timeZone",
                    msg::TIME_ZONE,
                );
            }
            if let Some(schedule) = &r.schedule {
                // The time zone is reported on its own field above.
                let parsed = RetrainSchedule::parse(schedule, None)
                    .map(|_| ())
                    .map_err(|e| e.to_string());
                c.check_detail(parsed, "spec.retrain.schedule", msg::SCHEDULE_SHAPE);
            }
            if let Some(n) = r.max_per_day {
                c.check(n > 0, "spec.retrain.maxPerDay", msg::MAX_PER_DAY);
            }
            if let Some(e) = &r.on_estimated_drop {
                let p = "spec.retrain.onEstimatedDrop";
                let fraction = |v: f64| v > 0.0 && v <= 1.0;
                c.check(
                    fraction(e.max_drop),
                    format!("{p}.maxDrop"),
                    msg::ESTIMATE_MAX_DROP,
                );
                c.check(
                    fraction(e.tolerance),
                    format!("{p}.tolerance"),
                    msg::ESTIMATE_TOLERANCE,
                );
                c.check(
                    e.min_labels > 0,
                    format!("{p}.minLabels"),
                    msg::ESTIMATE_MIN_LABELS,
                );
            }
        }

        drift(&mut c, &self.drift);
        c.0.extend(super::notify::validate_sinks(&self.notify, "spec.notify"));
        if let Some(a) = self.annotation() {
            let p = "spec.feedback.annotation";
            for (field, message) in a.problems() {
                let path = match field {
                    "" => p.to_string(),
                    field => format!("{p}.{field}"),
                };
                c.check(false, path, message);
            }
            c.check(
                self.data.include_feedback,
                p,
                msg::ANNOTATION_NEEDS_FEEDBACK,
            );
        }

        if let Some(g) = &self.gate {
            let d = &g.data;
            for (value, name) in [
                (Some(d.max_target_null_rate), "maxTargetNullRate"),
                (Some(d.max_null_rate_increase), "maxNullRateIncrease"),
                (Some(d.max_class_share_change), "maxClassShareChange"),
                (Some(d.max_out_of_range_rate), "maxOutOfRangeRate"),
                (d.max_duplicate_rate, "maxDuplicateRate"),
            ] {
                if let Some(v) = value {
                    c.check(
                        in_unit(v),
                        format!("spec.gate.data.{name}"),
                        msg::DATA_RATE_RANGE,
                    );
                }
            }
            c.check(
                !g.test_set.is_empty(),
                "spec.gate.testSet",
                msg::TEST_SET_EMPTY,
            );
            for (i, m) in g.metrics.iter().enumerate() {
                metric(&mut c, m, &format!("spec.gate.metrics[{i}]"));
            }
            let unique = g
                .slices
                .iter()
                .all(|s| g.slices.iter().filter(|t| t.name == s.name).count() == 1);
            c.check(unique, "spec.gate.slices", msg::SLICE_NAMES_UNIQUE);
            for (i, s) in g.slices.iter().enumerate() {
                let p = format!("spec.gate.slices[{i}]");
                c.check(
                    !s.name.is_empty(),
                    format!("{p}.name"),
                    msg::SLICE_NAME_EMPTY,
                );
                c.check(
                    !s.where_.is_empty(),
                    format!("{p}.where"),
                    msg::SLICE_WHERE_EMPTY,
                );
                for (column, condition) in &s.where_ {
                    if let Err(e) = SliceCondition::parse(condition) {
                        c.0.push(FieldError {
                            path: format!("{p}.where.{column}"),
                            message: e.to_string(),
                        });
                    }
                }
                c.check(
                    !s.metrics.is_empty(),
                    format!("{p}.metrics"),
                    msg::SLICE_METRICS_EMPTY,
                );
                for (j, m) in s.metrics.iter().enumerate() {
                    metric(&mut c, m, &format!("{p}.metrics[{j}]"));
                }
            }
            if let Some(bound) = g.max_calibration_error {
                c.check(
                    (0.0..=1.0).contains(&bound),
                    "spec.gate.maxCalibrationError",
                    msg::MAX_CALIBRATION_ERROR,
                );
            }
            if let Some(tol) = g.must_pass_tolerance {
                c.check(
                    tol >= 0.0,
                    "spec.gate.mustPassTolerance",
                    msg::MUST_PASS_TOLERANCE,
                );
            }
            if let Some(b) = &g.budgets {
                let p = "spec.gate.budgets";
                for (value, name) in [
                    (b.p99_latency_ms, "p99LatencyMs"),
                    (b.min_throughput_rows_per_sec, "minThroughputRowsPerSec"),
                    (b.max_size_mb, "maxSizeMB"),
                    (b.min_images_per_second, "minImagesPerSecond"),
                ] {
                    if let Some(v) = value {
                        c.check(v > 0.0, format!("{p}.{name}"), msg::BUDGET_POSITIVE);
                    }
                }
                if let Some(n) = b.max_parameters {
                    c.check(n > 0, format!("{p}.maxParameters"), msg::BUDGET_POSITIVE);
                }
                if let Some(n) = b.image_batch_size {
                    c.check(n > 0, format!("{p}.imageBatchSize"), msg::BUDGET_POSITIVE);
                }
            }
        }

        let r = &self.rollout;
        c.check(!r.steps.is_empty(), "spec.rollout.steps", msg::STEPS_EMPTY);
        c.check(
            r.steps.windows(2).all(|w| w[0].weight < w[1].weight),
            "spec.rollout.steps",
            msg::CANARY_INCREASING,
        );
        for (i, s) in r.steps.iter().enumerate() {
            let p = format!("spec.rollout.steps[{i}]");
            c.check(
                (1..=100).contains(&s.weight),
                format!("{p}.weight"),
                msg::CANARY_WEIGHT,
            );
        }
        analysis(&mut c, &r.analysis);
        c.check(
            self.task != Task::Regression || r.analysis.max_estimated_accuracy_drop.is_none(),
            "spec.rollout.analysis.maxEstimatedAccuracyDrop",
            msg::ESTIMATED_ACCURACY_CLASSIFIER,
        );
        shadow(&mut c, self);

        c.check(
            self.serving.replicas > 0,
            "spec.serving.replicas",
            msg::REPLICAS,
        );

        c.finish()
    }
}

/// `spec.rollout.shadow`: each field's CEL rule, and the two that span the
/// spec (the CEL rules on `ModelSpec`).
fn shadow(c: &mut Collector, spec: &ModelSpec) {
    let Some(s) = &spec.rollout.shadow else {
        return;
    };
    let p = "spec.rollout.shadow";
    c.check(
        s.min_requests > 0,
        format!("{p}.minRequests"),
        msg::SHADOW_MIN_REQUESTS,
    );
    c.check(
        s.sample > 0.0 && s.sample <= 1.0,
        format!("{p}.sample"),
        msg::SHADOW_SAMPLE,
    );
    c.check(
        in_unit(s.max_disagreement),
        format!("{p}.maxDisagreement"),
        msg::SHADOW_MAX_DISAGREEMENT,
    );
    if let Some(t) = s.tolerance {
        c.check(t >= 0.0, format!("{p}.tolerance"), msg::SHADOW_TOLERANCE);
    }
    if let Some(r) = s.max_p99_latency_ratio {
        c.check(
            r >= 1.0,
            format!("{p}.maxP99LatencyRatio"),
            msg::SHADOW_LATENCY_RATIO,
        );
    }
    c.check(
        spec.task != Task::Regression || s.tolerance.is_some(),
        format!("{p}.tolerance"),
        msg::SHADOW_TOLERANCE_REQUIRED,
    );
    let gate_slices: Vec<&str> = spec
        .gate
        .iter()
        .flat_map(|g| g.slices.iter().map(|s| s.name.as_str()))
        .collect();
    c.check(
        s.slices.iter().all(|n| gate_slices.contains(&n.as_str())),
        format!("{p}.slices"),
        msg::SHADOW_SLICE_UNKNOWN,
    );
}

/// A regression Model's shadow needs `tolerance` (CEL on `ModelSpec`).
pub(super) const SHADOW_TOLERANCE_RULE: &str = "self.task != 'regression' || !has(self.rollout) || \
    !has(self.rollout.shadow) || has(self.rollout.shadow.tolerance)";

/// `rollout.analysis.maxEstimatedAccuracyDrop` only on a classifier (CEL on `ModelSpec`).
pub(super) const ESTIMATED_ACCURACY_CLASSIFIER_RULE: &str = "self.task != 'regression' || \
    !has(self.rollout) || !has(self.rollout.analysis) || \
    !has(self.rollout.analysis.maxEstimatedAccuracyDrop)";

/// `rollout.shadow.slices` name gate slices (CEL on `ModelSpec`).
pub(super) const SHADOW_SLICES_RULE: &str = "!has(self.rollout) || !has(self.rollout.shadow) || \
    !has(self.rollout.shadow.slices) || self.rollout.shadow.slices.all(s, has(self.gate) && \
    has(self.gate.slices) && self.gate.slices.exists(g, g.name == s))";

/// A Go-style duration as `api::parse_duration` accepts it: `250ms`, `90s`, `10m`, `1h30m`, `2d`.
pub(super) const DURATION_RULE: &str = "self.matches('^([0-9]{1,9}(ms|[smhd]))+$')";

/// Metrics that lie in [0, 1]: their bounds must too.
pub(super) const UNIT_METRIC_RULE: &str = "!(self.name in ['accuracy', 'macroF1', 'rocAuc']) || \
    ((!has(self.min) || (double(self.min) >= 0.0 && double(self.min) <= 1.0)) && \
    (!has(self.max) || (double(self.max) >= 0.0 && double(self.max) <= 1.0)))";
