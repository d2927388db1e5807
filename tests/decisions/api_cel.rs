//! Every CEL rule of the Model CRD rejects the mistake it exists for, with
//! the message a user would see from the API server — and `validate()` (the
//! CLI's check without a server) says the same thing at the same path.

use driftline::api::msg;
use driftline::api::notify_msg;
use driftline::api::{
    ConfigError, Lineage, Model, ModelVersion, ModelVersionSpec, TrainingTrigger, load_model_config,
};
use serde_json::{Value, json};

const FIXTURE: &str = include_str!("../fixtures/wine-quality.yaml");

fn base() -> Value {
    let yaml: serde_yaml::Value = serde_yaml::from_str(FIXTURE).expect("fixture is YAML");
    serde_json::to_value(yaml).expect("fixture converts to JSON")
}

/// The fixture with `pointer` set to `value` (or removed when `value` is null).
fn with(pointer: &str, value: Value) -> Value {
    let mut doc = base();
    let (parent, key) = pointer.rsplit_once('/').expect("pointer has a parent");
    let target = doc
        .pointer_mut(parent)
        .unwrap_or_else(|| panic!("fixture has {parent}"));
    match (target, value) {
        (Value::Object(map), Value::Null) => {
            map.remove(key);
        }
        (Value::Object(map), v) => {
            map.insert(key.to_string(), v);
        }
        (Value::Array(items), v) => {
            let i: usize = key.parse().expect("array index");
            items[i] = v;
        }
        (other, _) => panic!("cannot set {pointer} in {other}"),
    }
    doc
}

#[test]
fn the_north_star_model_passes_every_rule() {
    let model: Model = serde_json::from_value(base()).expect("fixture deserialises");
    if let Err(errors) = model.validate_cel() {
        panic!("CEL rejected the valid fixture: {errors}");
    }
    model
        .spec
        .validate()
        .expect("validate() accepts the valid fixture");
    load_model_config(FIXTURE).expect("the CLI loads the fixture");
}

/// (what the user got wrong, JSON pointer, value, message, field path)
/// What is wrong, where (JSON pointer), the bad value, the user's message
/// and the field path it names.
type Case = (
    &'static str,
    &'static str,
    Value,
    &'static str,
    &'static str,
);

fn cases() -> Vec<Case> {
    vec![
        (
            "a notify url that is not http(s)",
            "/spec/notify",
            json!([{"url": "ftp://hooks.example.com/driftline", "events": ["promoted"]}]),
            notify_msg::URL,
            "spec.notify[0].url",
        ),
        (
            "an unknown notify event",
            "/spec/notify",
            json!([{"url": "https://hooks.example.com/driftline", "events": ["rolledback"]}]),
            notify_msg::EVENT_UNKNOWN,
            "spec.notify[0].events",
        ),
        (
            "a notify secretRef without a key",
            "/spec/notify",
            json!([{"url": "https://hooks.example.com/d", "secretRef": {"name": "hooks", "key": ""}}]),
            notify_msg::SECRET_KEY,
            "spec.notify[0].secretRef.key",
        ),
        (
            "an annotation budget of no rows",
            "/spec/feedback",
            json!({"annotation": {"perDay": 0}}),
            msg::ANNOTATION_PER_DAY,
            "spec.feedback.annotation.perDay",
        ),
        (
            "a negative annotation share",
            "/spec/feedback",
            json!({"annotation": {"perDay": 10, "uncertaintyShare": -0.5}}),
            msg::ANNOTATION_SHARE_RANGE,
            "spec.feedback.annotation.uncertaintyShare",
        ),
        (
            "annotation shares over the whole budget",
            "/spec/feedback",
            json!({"annotation": {"perDay": 10, "uncertaintyShare": 0.8}}),
            msg::ANNOTATION_SHARES,
            "spec.feedback.annotation",
        ),
        (
            "an annotation queue without feedback",
            "/spec/data/includeFeedback",
            json!(false),
            msg::ANNOTATION_NEEDS_FEEDBACK,
            "spec.feedback.annotation",
        ),
        (
            "zero epochs",
            "/spec/training/epochs",
            json!(0),
            msg::EPOCHS_POSITIVE,
            "spec.training.epochs",
        ),
        (
            "zero batch size",
            "/spec/training/batchSize",
            json!(0),
            msg::BATCH_SIZE_POSITIVE,
            "spec.training.batchSize",
        ),
        (
            "zero learning rate",
            "/spec/training/learningRate",
            json!(0.0),
            msg::LEARNING_RATE_POSITIVE,
            "spec.training.learningRate",
        ),
        (
            "negative learning rate written as an integer",
            "/spec/training/learningRate",
            json!(-1),
            msg::LEARNING_RATE_POSITIVE,
            "spec.training.learningRate",
        ),
        (
            "negative weight decay",
            "/spec/training/weightDecay",
            json!(-0.1),
            msg::WEIGHT_DECAY,
            "spec.training.weightDecay",
        ),
        (
            "zero patience",
            "/spec/training/earlyStopping",
            json!({"patience": 0}),
            msg::PATIENCE,
            "spec.training.earlyStopping.patience",
        ),
        (
            "cpu not a quantity",
            "/spec/training/resources/cpu",
            json!("lots"),
            msg::CPU_QUANTITY,
            "spec.training.resources.cpu",
        ),
        (
            "memory not a quantity",
            "/spec/training/resources/memory",
            json!("8 gigs"),
            msg::MEMORY_QUANTITY,
            "spec.training.resources.memory",
        ),
        (
            "unknown architecture",
            "/spec/architecture/type",
            json!("transformer"),
            msg::ARCHITECTURE_UNKNOWN,
            "spec.architecture.type",
        ),
        (
            "empty hidden layer",
            "/spec/architecture/hiddenLayers",
            json!([64, 0]),
            msg::HIDDEN_LAYER_EMPTY,
            "spec.architecture.hiddenLayers",
        ),
        (
            "dropout of 1",
            "/spec/architecture/dropout",
            json!(1.0),
            msg::DROPOUT_RANGE,
            "spec.architecture.dropout",
        ),
        (
            "validation fraction of 1",
            "/spec/data/validationFraction",
            json!(1.0),
            msg::VALIDATION_FRACTION,
            "spec.data.validationFraction",
        ),
        (
            "empty source",
            "/spec/data/source",
            json!(""),
            msg::SOURCE_EMPTY,
            "spec.data.source",
        ),
        (
            "empty target",
            "/spec/data/target",
            json!(""),
            msg::TARGET_EMPTY,
            "spec.data.target",
        ),
        (
            "target among features",
            "/spec/data/features",
            json!(["alcohol", "quality"]),
            msg::TARGET_IN_FEATURES,
            "spec.data",
        ),
        (
            "hour 25",
            "/spec/retrain/schedule",
            json!("0 25 * * *"),
            msg::SCHEDULE_SHAPE,
            "spec.retrain.schedule",
        ),
        (
            "schedule in words",
            "/spec/retrain/schedule",
            json!("every night"),
            msg::SCHEDULE_SHAPE,
            "spec.retrain.schedule",
        ),
        (
            "four cron fields",
            "/spec/retrain/schedule",
            json!("0 2 * *"),
            msg::SCHEDULE_SHAPE,
            "spec.retrain.schedule",
        ),
        (
            "month 13",
            "/spec/retrain/schedule",
            json!("0 2 1 13 *"),
            msg::SCHEDULE_SHAPE,
            "spec.retrain.schedule",
        ),
        (
            "estimated drop of zero",
            "/spec/retrain/onEstimatedDrop",
            json!({"maxDrop": 0.0}),
            msg::ESTIMATE_MAX_DROP,
            "spec.retrain.onEstimatedDrop.maxDrop",
        ),
        (
            "estimate tolerance above 1",
            "/spec/retrain/onEstimatedDrop",
            json!({"maxDrop": 0.03, "tolerance": 5}),
            msg::ESTIMATE_TOLERANCE,
            "spec.retrain.onEstimatedDrop.tolerance",
        ),
        (
            "estimate judged on no labels",
            "/spec/retrain/onEstimatedDrop",
            json!({"maxDrop": 0.03, "minLabels": 0}),
            msg::ESTIMATE_MIN_LABELS,
            "spec.retrain.onEstimatedDrop.minLabels",
        ),
        (
            "misspelt time zone",
            "/spec/retrain/timeZone",
            json!("Europe/Londn"),
            msg::TIME_ZONE,
            "spec.retrain.timeZone",
        ),
        (
            "time zone without schedule",
            "/spec/retrain/schedule",
            Value::Null,
            msg::TIME_ZONE_NEEDS_SCHEDULE,
            "spec.retrain",
        ),
        (
            "zero retrains per day",
            "/spec/retrain/maxPerDay",
            json!(0),
            msg::MAX_PER_DAY,
            "spec.retrain.maxPerDay",
        ),
        (
            "false-alarm rate of 1",
            "/spec/drift/falseAlarmRate",
            json!(1.0),
            msg::FALSE_ALARM_RATE,
            "spec.drift.falseAlarmRate",
        ),
        (
            "zero-row drift window",
            "/spec/drift/window",
            json!(0),
            msg::DRIFT_WINDOW,
            "spec.drift.window",
        ),
        (
            "zero consecutive windows",
            "/spec/drift/consecutiveWindows",
            json!(0),
            msg::CONSECUTIVE_WINDOWS,
            "spec.drift.consecutiveWindows",
        ),
        (
            "drifted share above 1",
            "/spec/drift/driftedShare",
            json!(1.5),
            msg::DRIFTED_SHARE,
            "spec.drift.driftedShare",
        ),
        (
            "zero feature threshold",
            "/spec/drift/features",
            json!({"ph": {"threshold": 0.0}}),
            msg::FEATURE_THRESHOLD,
            "spec.drift.features.ph.threshold",
        ),
        (
            "metric min above max",
            "/spec/gate/metrics/0",
            json!({"name": "logLoss", "min": 0.5, "max": 0.2}),
            msg::MIN_ABOVE_MAX,
            "spec.gate.metrics[0]",
        ),
        (
            "accuracy written as a percentage",
            "/spec/gate/metrics/0",
            json!({"name": "accuracy", "min": 85}),
            msg::UNIT_METRIC_RANGE,
            "spec.gate.metrics[0]",
        ),
        (
            "unnamed metric",
            "/spec/gate/metrics/0",
            json!({"name": "", "min": 0.5}),
            msg::METRIC_NAME_EMPTY,
            "spec.gate.metrics[0].name",
        ),
        (
            "negative champion drop",
            "/spec/gate/metrics/0",
            json!({"name": "accuracy", "maxDropFromChampion": -0.01}),
            msg::MAX_DROP,
            "spec.gate.metrics[0].maxDropFromChampion",
        ),
        (
            "relative drop above 1",
            "/spec/gate/metrics/0",
            json!({"name": "accuracy", "maxRelativeDropFromChampion": 1.5}),
            msg::MAX_RELATIVE_DROP,
            "spec.gate.metrics[0].maxRelativeDropFromChampion",
        ),
        (
            "calibration error above 1",
            "/spec/gate/maxCalibrationError",
            json!(1.5),
            msg::MAX_CALIBRATION_ERROR,
            "spec.gate.maxCalibrationError",
        ),
        (
            "empty test set",
            "/spec/gate/testSet",
            json!(""),
            msg::TEST_SET_EMPTY,
            "spec.gate.testSet",
        ),
        (
            "duplicate slice names",
            "/spec/gate/slices/1",
            json!({"name": "red", "where": {"alcohol": ">=12"}, "metrics": [{"name": "accuracy", "min": 0.8}]}),
            msg::SLICE_NAMES_UNIQUE,
            "spec.gate.slices",
        ),
        (
            "unnamed slice",
            "/spec/gate/slices/0",
            json!({"name": "", "where": {"color": "red"}, "metrics": [{"name": "accuracy"}]}),
            msg::SLICE_NAME_EMPTY,
            "spec.gate.slices[0].name",
        ),
        (
            "slice without conditions",
            "/spec/gate/slices/0",
            json!({"name": "red", "where": {}, "metrics": [{"name": "accuracy"}]}),
            msg::SLICE_WHERE_EMPTY,
            "spec.gate.slices[0].where",
        ),
        (
            "slice without metrics",
            "/spec/gate/slices/0",
            json!({"name": "red", "where": {"color": "red"}, "metrics": []}),
            msg::SLICE_METRICS_EMPTY,
            "spec.gate.slices[0].metrics",
        ),
        (
            "negative must-pass tolerance",
            "/spec/gate/mustPassTolerance",
            json!(-1.0),
            msg::MUST_PASS_TOLERANCE,
            "spec.gate.mustPassTolerance",
        ),
        (
            "zero latency budget",
            "/spec/gate/budgets/p99LatencyMs",
            json!(0),
            msg::BUDGET_POSITIVE,
            "spec.gate.budgets.p99LatencyMs",
        ),
        (
            "zero parameter budget",
            "/spec/gate/budgets/maxParameters",
            json!(0),
            msg::BUDGET_POSITIVE,
            "spec.gate.budgets.maxParameters",
        ),
        (
            "zero canary weight",
            "/spec/rollout/steps/0",
            json!({"weight": 0, "pause": "10m"}),
            msg::CANARY_WEIGHT,
            "spec.rollout.steps[0].weight",
        ),
        (
            "canary weight over 100",
            "/spec/rollout/steps/2",
            json!({"weight": 101, "pause": "10m"}),
            msg::CANARY_WEIGHT,
            "spec.rollout.steps[2].weight",
        ),
        (
            "weights going down",
            "/spec/rollout/steps",
            json!([{"weight": 5, "pause": "1m"}, {"weight": 50, "pause": "1m"}, {"weight": 25, "pause": "1m"}]),
            msg::CANARY_INCREASING,
            "spec.rollout.steps",
        ),
        (
            "a weight repeated",
            "/spec/rollout/steps",
            json!([{"weight": 5, "pause": "1m"}, {"weight": 5, "pause": "1m"}]),
            msg::CANARY_INCREASING,
            "spec.rollout.steps",
        ),
        (
            "no canary steps",
            "/spec/rollout/steps",
            json!([]),
            msg::STEPS_EMPTY,
            "spec.rollout.steps",
        ),
        (
            "zero minRequests",
            "/spec/rollout/analysis/minRequests",
            json!(0),
            msg::MIN_REQUESTS,
            "spec.rollout.analysis.minRequests",
        ),
        (
            "alpha of one half",
            "/spec/rollout/analysis/alpha",
            json!(0.5),
            msg::ALPHA,
            "spec.rollout.analysis.alpha",
        ),
        (
            "zero alpha",
            "/spec/rollout/analysis/alpha",
            json!(0),
            msg::ALPHA,
            "spec.rollout.analysis.alpha",
        ),
        (
            "slow share as a percentage",
            "/spec/rollout/analysis/maxSlowShareIncrease",
            json!(5),
            msg::MAX_SLOW_SHARE_INCREASE,
            "spec.rollout.analysis.maxSlowShareIncrease",
        ),
        (
            "accuracy drop above 1",
            "/spec/rollout/analysis/maxOnlineAccuracyDrop",
            json!(1.2),
            msg::MAX_ONLINE_ACCURACY_DROP,
            "spec.rollout.analysis.maxOnlineAccuracyDrop",
        ),
        (
            "estimated accuracy drop above 1",
            "/spec/rollout/analysis/maxEstimatedAccuracyDrop",
            json!(1.5),
            msg::MAX_ESTIMATED_ACCURACY_DROP,
            "spec.rollout.analysis.maxEstimatedAccuracyDrop",
        ),
        (
            "error rate as a percentage",
            "/spec/rollout/analysis/maxErrorRate",
            json!(1.5),
            msg::MAX_ERROR_RATE,
            "spec.rollout.analysis.maxErrorRate",
        ),
        (
            "zero p99 bound",
            "/spec/rollout/analysis/maxP99LatencyMs",
            json!(0),
            msg::MAX_P99_LATENCY,
            "spec.rollout.analysis.maxP99LatencyMs",
        ),
        (
            "negative error-rate increase",
            "/spec/rollout/analysis/maxErrorRateIncrease",
            json!(-0.1),
            msg::MAX_ERROR_RATE_INCREASE,
            "spec.rollout.analysis.maxErrorRateIncrease",
        ),
        (
            "latency ratio below 1",
            "/spec/rollout/analysis/maxP99LatencyRatio",
            json!(0.5),
            msg::MAX_P99_LATENCY_RATIO,
            "spec.rollout.analysis.maxP99LatencyRatio",
        ),
        (
            "divergence above 1",
            "/spec/rollout/analysis/maxPredictionDivergence",
            json!(2),
            msg::MAX_PREDICTION_DIVERGENCE,
            "spec.rollout.analysis.maxPredictionDivergence",
        ),
        (
            "online accuracy above 1",
            "/spec/rollout/analysis/minOnlineAccuracy",
            json!(1.2),
            msg::MIN_ONLINE_ACCURACY,
            "spec.rollout.analysis.minOnlineAccuracy",
        ),
        (
            "zero replicas",
            "/spec/serving/replicas",
            json!(0),
            msg::REPLICAS,
            "spec.serving.replicas",
        ),
        (
            "an empty freeze entry",
            "/spec/training/freeze",
            json!(["conv", ""]),
            msg::FREEZE_EMPTY,
            "spec.training.freeze",
        ),
        (
            "a zero head learning rate",
            "/spec/training/headLearningRate",
            json!(0.0),
            msg::HEAD_LEARNING_RATE,
            "spec.training.headLearningRate",
        ),
        (
            "an empty base checkpoint",
            "/spec/architecture/init",
            json!(""),
            msg::INIT_EMPTY,
            "spec.architecture.init",
        ),
        (
            "a shadow that mirrors nothing",
            "/spec/rollout/shadow",
            json!({"sample": 0}),
            msg::SHADOW_SAMPLE,
            "spec.rollout.shadow.sample",
        ),
        (
            "a shadow that needs no requests",
            "/spec/rollout/shadow",
            json!({"minRequests": 0}),
            msg::SHADOW_MIN_REQUESTS,
            "spec.rollout.shadow.minRequests",
        ),
        (
            "a shadow disagreement bound above 1",
            "/spec/rollout/shadow",
            json!({"maxDisagreement": 1.5}),
            msg::SHADOW_MAX_DISAGREEMENT,
            "spec.rollout.shadow.maxDisagreement",
        ),
        (
            "a negative shadow tolerance",
            "/spec/rollout/shadow",
            json!({"tolerance": -0.5}),
            msg::SHADOW_TOLERANCE,
            "spec.rollout.shadow.tolerance",
        ),
        (
            "a shadow latency ratio below 1",
            "/spec/rollout/shadow",
            json!({"maxP99LatencyRatio": 0.5}),
            msg::SHADOW_LATENCY_RATIO,
            "spec.rollout.shadow.maxP99LatencyRatio",
        ),
        (
            "a shadow slice the gate does not define",
            "/spec/rollout/shadow",
            json!({"slices": ["red", "blue"]}),
            msg::SHADOW_SLICE_UNKNOWN,
            "spec.rollout.shadow.slices",
        ),
    ]
}

/// Mistakes only `validate()` catches (a `SpecValid=False` condition and an
/// Event, not a refusal at apply): `drift.threshold` is a number or `auto`,
/// so its schema is untyped, and a real API server refuses CEL rules that
/// read an untyped field.
fn validate_only_cases() -> Vec<Case> {
    vec![
        (
            "zero drift threshold",
            "/spec/drift/threshold",
            json!(0.0),
            msg::DRIFT_THRESHOLD_POSITIVE,
            "spec.drift.threshold",
        ),
        (
            "Jensen-Shannon threshold above 1",
            "/spec/drift/threshold",
            json!(1.5),
            msg::DRIFT_THRESHOLD_BOUNDED,
            "spec.drift",
        ),
    ]
}

/// `validate()` refuses `model` with `message` at `path`.
fn assert_validate_refuses(what: &str, model: &Model, message: &str, path: &str) {
    let invalid = model
        .spec
        .validate()
        .err()
        .unwrap_or_else(|| panic!("{what}: validate() accepted it"));
    assert!(
        invalid
            .errors
            .iter()
            .any(|e| e.path == path && e.message.starts_with(message)),
        "{what}: expected `{path}: {message}` from validate(), got: {invalid}"
    );
}

#[test]
fn untyped_drift_thresholds_are_left_to_validate_not_cel() {
    for (what, pointer, value, message, path) in validate_only_cases() {
        let model: Model = serde_json::from_value(with(pointer, value)).expect("deserialises");
        assert!(model.validate_cel().is_ok(), "{what}: no CEL rule reads it");
        assert_validate_refuses(what, &model, message, path);
    }
}

#[test]
fn each_cel_rule_rejects_its_mistake_with_the_users_message() {
    for (what, pointer, value, message, path) in cases() {
        let doc = with(pointer, value);
        let model: Model = serde_json::from_value(doc)
            .unwrap_or_else(|e| panic!("{what}: fixture must still deserialise: {e}"));
        let errors = model
            .validate_cel()
            .err()
            .unwrap_or_else(|| panic!("{what}: CEL accepted it"));
        assert!(
            errors
                .iter()
                .any(|e| e.message == message && e.field_path == path),
            "{what}: expected `{path}: {message}` from CEL, got: {errors}"
        );
        assert_eq!(
            errors.len(),
            1,
            "{what}: exactly one rule should fire, got: {errors}"
        );
    }
}

#[test]
fn validate_gives_the_same_message_at_the_same_path_for_the_cli() {
    for (what, pointer, value, message, path) in cases() {
        let model: Model = serde_json::from_value(with(pointer, value)).expect("deserialises");
        assert_validate_refuses(what, &model, message, path);
    }
}

#[test]
fn validate_reports_every_mistake_at_once() {
    let mut doc = with("/spec/training/epochs", json!(0));
    doc["spec"]["serving"]["replicas"] = json!(0);
    let model: Model = serde_json::from_value(doc).expect("deserialises");
    let invalid = model.spec.validate().expect_err("two mistakes");
    let paths: Vec<&str> = invalid.errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["spec.training.epochs", "spec.serving.replicas"]);
    assert_eq!(
        invalid.to_string(),
        format!(
            "Model spec is invalid: spec.training.epochs: {}; spec.serving.replicas: {}",
            msg::EPOCHS_POSITIVE,
            msg::REPLICAS
        )
    );
}

#[test]
fn the_cli_refuses_an_invalid_model_with_field_and_reason() {
    let yaml = FIXTURE.replace("epochs: 40", "epochs: 0");
    match load_model_config(&yaml) {
        Err(ConfigError::Invalid(invalid)) => {
            assert_eq!(invalid.errors[0].path, "spec.training.epochs");
            assert_eq!(invalid.errors[0].message, msg::EPOCHS_POSITIVE);
        }
        other => panic!("expected an invalid-spec error, got {other:?}"),
    }
}

#[test]
fn the_schedule_check_in_validate_explains_the_field_in_error() {
    let model: Model = serde_json::from_value(with("/spec/retrain/schedule", json!("0 25 * * *")))
        .expect("deserialises");
    let invalid = model.spec.validate().expect_err("hour 25");
    assert_eq!(
        invalid.errors[0].message,
        format!(
            "{} (schedule `0 25 * * *`: hour `25`: 25 is outside 0-23)",
            msg::SCHEDULE_SHAPE
        )
    );
}

#[test]
fn drift_thresholds_are_auto_or_a_number_at_both_layers() {
    for threshold in [json!("auto"), json!(0.2), json!(1)] {
        let model: Model = serde_json::from_value(with("/spec/drift/threshold", threshold.clone()))
            .expect("deserialises");
        assert!(model.validate_cel().is_ok(), "CEL refused {threshold}");
        assert!(
            model.spec.validate().is_ok(),
            "validate() refused {threshold}"
        );
    }
    // Absent means auto, the calibrated default.
    let mut doc = with("/spec/drift/window", json!(500));
    doc["spec"]["drift"]
        .as_object_mut()
        .unwrap()
        .remove("threshold");
    let model: Model = serde_json::from_value(doc).expect("deserialises");
    assert_eq!(
        model.spec.drift.threshold,
        driftline::api::DriftThreshold::Auto
    );
    assert!(model.validate_cel().is_ok());
    // Any other word is refused when the spec is read, naming the value.
    let err = serde_json::from_value::<Model>(with("/spec/drift/threshold", json!("high")))
        .expect_err("`high` is no threshold");
    assert!(err.to_string().contains("`high`"), "{err}");
}

#[test]
fn valid_schedules_and_zones_pass_cel() {
    for schedule in [
        "0 2 * * *",
        "30 0 2 * * *",
        "*/15 * * * *",
        "0 9 * * MON-FRI",
        "0 3 1 jan,jul ?",
        "@daily",
        " 0 2 * * 0,7 ",
    ] {
        let model: Model = serde_json::from_value(with("/spec/retrain/schedule", json!(schedule)))
            .expect("deserialises");
        assert!(model.validate_cel().is_ok(), "CEL refused `{schedule}`");
        assert!(
            model.spec.validate().is_ok(),
            "validate() refused `{schedule}`"
        );
    }
    for zone in [
        "UTC",
        "America/Argentina/Buenos_Aires",
        "Asia/Kolkata",
        "Etc/GMT+5",
    ] {
        let model: Model = serde_json::from_value(with("/spec/retrain/timeZone", json!(zone)))
            .expect("deserialises");
        assert!(model.validate_cel().is_ok(), "CEL refused `{zone}`");
    }
}

#[test]
fn schema_types_refuse_what_cel_never_sees() {
    // Enums and unsigned integers are schema constraints: the API server
    // refuses them before CEL runs; the CLI refuses them while parsing.
    // The CLI names the field, then the decoder's reason, once.
    for (from, to, expected) in [
        (
            "task: classification",
            "task: clustering",
            "`spec.task`: unknown variant `clustering`",
        ),
        (
            "missedRuns: RunLatest",
            "missedRuns: Sometimes",
            "`spec.retrain.missedRuns`: unknown variant `Sometimes`",
        ),
        (
            "epochs: 40",
            "epochs: -3",
            "`spec.training.epochs`: invalid value",
        ),
    ] {
        let err = load_model_config(&FIXTURE.replace(from, to)).expect_err(to);
        let chain = driftline::error_chain(&err);
        assert!(chain.starts_with(expected), "{to}: {chain}");
    }
}

#[test]
fn a_model_versions_lineage_cannot_be_rewritten() {
    let spec = |seed| ModelVersionSpec {
        model: "wine-quality".into(),
        version: 3,
        lineage: Lineage {
            trigger: TrainingTrigger::Drift,
            reason: "drift".into(),
            seed,
            config_hash: "abc".into(),
            driftline_version: "0.1.0".into(),
            source_digest: None,
        },
    };
    let old = ModelVersion::new("wine-quality-v3", spec(7));
    let new = ModelVersion::new("wine-quality-v3", spec(8));
    assert!(new.validate_cel().is_ok(), "creation is allowed");
    let errors = new
        .validate_cel_update(&old)
        .expect_err("changing the seed is refused");
    assert!(
        errors
            .iter()
            .any(|e| e.message == msg::VERSION_SPEC_IMMUTABLE),
        "{errors}"
    );
    assert!(
        old.validate_cel_update(&old).is_ok(),
        "an unchanged spec is fine"
    );
}

/// Durations are typed in the spec: the API server refuses a bad one by its
/// CEL rule, the CLI while decoding, each naming the field.
fn duration_cases() -> Vec<Case> {
    vec![
        (
            "deadline in words",
            "/spec/training/deadline",
            json!("2 hours"),
            msg::DEADLINE_DURATION,
            "spec.training.deadline",
        ),
        (
            "cooldown in words",
            "/spec/retrain/cooldown",
            json!("6 hours"),
            msg::COOLDOWN_DURATION,
            "spec.retrain.cooldown",
        ),
        (
            "pause in words",
            "/spec/rollout/steps/0",
            json!({"weight": 5, "pause": "10 minutes"}),
            msg::PAUSE_DURATION,
            "spec.rollout.steps[0].pause",
        ),
        (
            "progress deadline in words",
            "/spec/rollout/progressDeadline",
            json!("two hours"),
            msg::PROGRESS_DEADLINE_DURATION,
            "spec.rollout.progressDeadline",
        ),
    ]
}

#[test]
fn a_bad_duration_is_refused_by_cel_and_by_the_clis_decoder_at_its_field() {
    use kube::CustomResourceExt;
    let crd = Model::crd();
    let schema = driftline::cluster::schema::CrdSchema::for_version(&crd, driftline::api::VERSION)
        .expect("the Model CRD compiles");
    for (what, pointer, value, message, path) in duration_cases() {
        let doc = with(pointer, value);
        let errors = schema.validate(&doc, None);
        assert!(
            errors
                .iter()
                .any(|e| e.to_string().contains(message) && e.to_string().starts_with(path)),
            "{what}: expected `{path}: … {message}` from the CRD, got: {errors:?}"
        );
        let yaml = serde_yaml::to_string(&doc).unwrap();
        let chain = driftline::error_chain(&load_model_config(&yaml).expect_err(what));
        assert!(
            chain.starts_with(&format!("`{path}`: duration `")),
            "{what}: {chain}"
        );
    }
}

#[test]
fn a_regression_models_shadow_needs_a_tolerance_at_both_layers() {
    let mut doc = with("/spec/rollout/shadow", json!({"slices": ["red"]}));
    doc["spec"]["task"] = json!("regression");
    // Regression metrics, so that only the shadow rule can fire.
    doc["spec"]["gate"]["metrics"] = json!([{"name": "rmse", "max": 1.0}]);
    doc["spec"]["gate"]["slices"] = json!([{"name": "red", "where": {"color": "red"}, "metrics": [{"name": "rmse", "max": 1.0}]}]);
    let model: Model = serde_json::from_value(doc.clone()).expect("deserialises");
    let errors = model.validate_cel().expect_err("CEL accepted it");
    assert!(
        errors
            .iter()
            .any(|e| e.message == msg::SHADOW_TOLERANCE_REQUIRED
                && e.field_path == "spec.rollout.shadow.tolerance"),
        "{errors}"
    );
    assert_eq!(errors.len(), 1, "{errors}");
    assert_validate_refuses(
        "a regression shadow without tolerance",
        &model,
        msg::SHADOW_TOLERANCE_REQUIRED,
        "spec.rollout.shadow.tolerance",
    );
    doc["spec"]["rollout"]["shadow"]["tolerance"] = json!(0.5);
    let model: Model = serde_json::from_value(doc).expect("deserialises");
    assert!(model.validate_cel().is_ok());
    model.spec.validate().expect("validate() accepts it");
}

#[test]
fn a_regression_model_has_no_estimated_accuracy_check_at_both_layers() {
    let mut doc = with(
        "/spec/rollout/analysis/maxEstimatedAccuracyDrop",
        json!(0.05),
    );
    doc["spec"]["task"] = json!("regression");
    // Regression metrics, so that only the estimate's rule can fire.
    doc["spec"]["gate"]["metrics"] = json!([{"name": "rmse", "max": 1.0}]);
    doc["spec"]["gate"]["slices"] = json!([{"name": "red", "where": {"color": "red"}, "metrics": [{"name": "rmse", "max": 1.0}]}]);
    if let Some(rollout) = doc["spec"]["rollout"].as_object_mut() {
        rollout.remove("shadow");
    }
    let model: Model = serde_json::from_value(doc.clone()).expect("deserialises");
    let errors = model.validate_cel().expect_err("CEL accepted it");
    assert!(
        errors
            .iter()
            .any(|e| e.message == msg::ESTIMATED_ACCURACY_CLASSIFIER
                && e.field_path == "spec.rollout.analysis.maxEstimatedAccuracyDrop"),
        "{errors}"
    );
    assert_eq!(errors.len(), 1, "{errors}");
    assert_validate_refuses(
        "an estimated-accuracy check on a regression Model",
        &model,
        msg::ESTIMATED_ACCURACY_CLASSIFIER,
        "spec.rollout.analysis.maxEstimatedAccuracyDrop",
    );
    doc["spec"]["task"] = json!("classification");
    doc["spec"]["gate"]["metrics"] = json!([{"name": "accuracy", "min": 0.5}]);
    doc["spec"]["gate"]["slices"] = json!([{"name": "red", "where": {"color": "red"}, "metrics": [{"name": "accuracy", "min": 0.5}]}]);
    let model: Model = serde_json::from_value(doc).expect("deserialises");
    assert!(model.validate_cel().is_ok());
    model.spec.validate().expect("validate() accepts it");
}
