//! The messages of the Model's validation rules: one set for the CRD's
//! CEL rules and for `validate()`, so a user reads the same words from
//! `kubectl apply` and from `driftline train`.

pub const SOURCE_EMPTY: &str = "data source must not be empty; write e.g. `s3://bucket/train.csv`";
pub const WINDOW_COLUMN_EMPTY: &str =
    "data window column must name the column holding each row's time";
pub const WINDOW_LAST_DURATION: &str = "data window last must be a duration such as `30d` or `12h`";
pub const WINDOW_HOLDOUT_DURATION: &str =
    "data window holdout must be a duration such as `1d` or `6h`";
pub const WINDOW_HOLDOUT_SHORTER: &str =
    "data window holdout must be shorter than the window's `last`, or no rows are left to train on";
pub const WHERE_CONDITION: &str =
    "a data `where` condition must be a value, `a|b`, `>=10`, `<5` or `10..12`";
pub const DATA_RATE_RANGE: &str = "a gate.data rate must be between 0 and 1";
pub const TARGET_EMPTY: &str = "data target must name the column to predict";
pub const TARGET_IN_FEATURES: &str = "the target column must not also be listed in data.features";
pub const VALIDATION_FRACTION: &str = "validationFraction must be at least 0 and below 1";
pub const ARCHITECTURE_UNKNOWN: &str = "architecture type must be a known architecture: mlp, cnn";
pub const CONV_BLOCKS_NEEDED: &str =
    "architecture type cnn needs at least one conv block in architecture.convBlocks";
pub const CONV_CHANNELS: &str = "a conv block needs at least 1 channel";
pub const CONV_KERNEL: &str = "a conv block's kernel must be an odd number of pixels (1, 3, 5, …)";
pub const CONV_STRIDE: &str = "a conv block's stride must be at least 1";
pub const CONV_TOO_DEEP: &str = "the conv blocks shrink the image to nothing; use fewer pooling blocks or a larger data.images size";
pub const CNN_NEEDS_IMAGES: &str = "architecture type cnn reads images; set data.format to images";
pub const INIT_EMPTY: &str =
    "architecture.init must name a base checkpoint (an artifact directory or a .safetensors file)";
pub const IMAGE_SIZE: &str = "image height and width must be at least 1 pixel";
pub const IMAGE_RESIZE: &str = "images resize must be at least 1 pixel";
pub const IMAGE_STD: &str = "every per-channel image std must be greater than 0";
pub const IMAGE_NORMALIZATION_CHANNELS: &str =
    "images mean and std need one value per channel (1 for grayscale, 3 for rgb)";
pub const FREEZE_EMPTY: &str = "a freeze entry must name a layer or a prefix such as `conv`";
pub const HEAD_LEARNING_RATE: &str = "headLearningRate must be greater than 0";
pub const HIDDEN_LAYER_EMPTY: &str = "every hidden layer needs at least 1 unit";
pub const DROPOUT_RANGE: &str = "dropout must be at least 0 and below 1";
pub const EPOCHS_POSITIVE: &str = "epochs must be at least 1";
pub const BATCH_SIZE_POSITIVE: &str = "batchSize must be at least 1";
pub const SHUFFLE_BUFFER_POSITIVE: &str = "shuffleBuffer must be at least 1 row";
pub const LEARNING_RATE_POSITIVE: &str = "learningRate must be greater than 0";
pub const WEIGHT_DECAY: &str = "weightDecay must not be negative";
pub const PATIENCE: &str = "earlyStopping.patience must be at least 1 epoch";
pub const CPU_QUANTITY: &str = "cpu must be a Kubernetes quantity such as `500m` or `2`";
pub const MEMORY_QUANTITY: &str = "memory must be a Kubernetes quantity such as `512Mi` or `8Gi`";
pub const DEADLINE_DURATION: &str = "deadline must be a duration such as `90m`, `2h` or `1h30m`";
pub const SCHEDULE_SHAPE: &str = "schedule must be a cron expression: 5 fields (minute hour \
    day-of-month month day-of-week) with values in range, optionally seconds first, e.g. `0 2 * * *`";
pub const TIME_ZONE: &str =
    "timeZone must be an IANA time zone name such as `Europe/London` or `UTC`";
pub const TIME_ZONE_NEEDS_SCHEDULE: &str =
    "timeZone is set but schedule is not; add a schedule or remove timeZone";
pub const COOLDOWN_DURATION: &str = "cooldown must be a duration such as `30m`, `6h` or `1d`";
pub const MAX_PER_DAY: &str = "maxPerDay must be at least 1";
pub const DRIFT_THRESHOLD_POSITIVE: &str =
    "drift threshold must be `auto` or a number greater than 0";
pub const FALSE_ALARM_RATE: &str = "drift falseAlarmRate must be greater than 0 and less than 1";
pub const DRIFT_THRESHOLD_BOUNDED: &str =
    "drift threshold must be at most 1 for jensenShannon and ks, which lie in [0, 1]";
pub const DRIFT_WINDOW: &str = "drift window must be at least 1 row";
pub const CONSECUTIVE_WINDOWS: &str = "consecutiveWindows must be at least 1";
pub const DRIFTED_SHARE: &str = "driftedShare must be greater than 0 and at most 1";
pub const FEATURE_THRESHOLD: &str = "a feature's drift threshold must be greater than 0";
pub const METRIC_NAME_EMPTY: &str = "a gate metric needs a name such as `accuracy`";
pub const MIN_ABOVE_MAX: &str = "a gate metric's min must not exceed its max";
pub const UNIT_METRIC_RANGE: &str =
    "accuracy, macroF1 and rocAuc lie in [0, 1]; their min and max must too";
pub const MAX_DROP: &str = "maxDropFromChampion must not be negative";
pub const MAX_RELATIVE_DROP: &str = "maxRelativeDropFromChampion must be between 0 and 1";
pub const TEST_SET_EMPTY: &str = "gate testSet must name the regression test-set";
pub const SLICE_NAME_EMPTY: &str = "a slice needs a name";
pub const SLICE_NAMES_UNIQUE: &str = "slice names must be unique";
pub const SLICE_WHERE_EMPTY: &str = "a slice needs at least one `where` condition";
pub const SLICE_METRICS_EMPTY: &str = "a slice needs at least one metric";
pub const MUST_PASS_TOLERANCE: &str = "mustPassTolerance must not be negative";
pub const BUDGET_POSITIVE: &str = "a budget must be greater than 0";
pub const MAX_CALIBRATION_ERROR: &str = "maxCalibrationError must be between 0 and 1";
pub const ESTIMATE_MAX_DROP: &str =
    "onEstimatedDrop.maxDrop must be above 0 and at most 1 (an accuracy difference, e.g. 0.03)";
pub const ESTIMATE_TOLERANCE: &str =
    "onEstimatedDrop.tolerance must be above 0 and at most 1 (an accuracy difference, e.g. 0.05)";
pub const ANNOTATION_PER_DAY: &str = "feedback.annotation.perDay must be at least 1 row";
pub const ANNOTATION_SHARE_RANGE: &str = "feedback.annotation shares must be between 0 and 1";
pub const ANNOTATION_SHARES: &str = "feedback.annotation.uncertaintyShare + driftShare must be at most 1 (the rest is for shadow disagreements)";
pub const ANNOTATION_NEEDS_FEEDBACK: &str =
    "feedback.annotation queues rows under the feedback prefix: set data.includeFeedback: true";
pub const ESTIMATE_MIN_LABELS: &str = "onEstimatedDrop.minLabels must be at least 1";
pub const STEPS_EMPTY: &str = "rollout needs at least one canary step";
pub const CANARY_WEIGHT: &str = "canary step weight must be between 1 and 100";
pub const CANARY_INCREASING: &str = "canary step weights must increase from one step to the next";
pub const PAUSE_DURATION: &str = "canary step pause must be a duration such as `10m` or `0s`";
pub const PROGRESS_DEADLINE_DURATION: &str =
    "rollout progressDeadline must be a duration such as `30m` or `2h`";
pub const MIN_REQUESTS: &str = "analysis minRequests must be at least 1";
pub const MAX_ERROR_RATE: &str = "maxErrorRate must be between 0 and 1";
pub const MAX_P99_LATENCY: &str = "maxP99LatencyMs must be greater than 0";
pub const MAX_ERROR_RATE_INCREASE: &str = "maxErrorRateIncrease must be between 0 and 1";
pub const MAX_P99_LATENCY_RATIO: &str =
    "maxP99LatencyRatio must be at least 1 (1.2 lets the canary be 20 % slower than stable)";
pub const MAX_PREDICTION_DIVERGENCE: &str = "maxPredictionDivergence must be between 0 and 1";
pub const MIN_ONLINE_ACCURACY: &str = "minOnlineAccuracy must be between 0 and 1";
pub const MAX_ONLINE_ACCURACY_DROP: &str = "maxOnlineAccuracyDrop must be between 0 and 1";
pub const MAX_ESTIMATED_ACCURACY_DROP: &str = "maxEstimatedAccuracyDrop must be between 0 and 1";
pub const ESTIMATED_ACCURACY_CLASSIFIER: &str = "maxEstimatedAccuracyDrop needs task: classification (accuracy is estimated from a classifier's calibrated confidence)";
pub const MAX_SLOW_SHARE_INCREASE: &str =
    "maxSlowShareIncrease must be between 0 and 0.99 (stable's own share above its p99 is 1 %)";
pub const SHADOW_DURATION: &str = "shadow duration must be a duration such as `10m` or `1h`";
pub const SHADOW_MIN_REQUESTS: &str = "shadow minRequests must be at least 1";
pub const SHADOW_SAMPLE: &str =
    "shadow sample is the share of live requests mirrored: greater than 0, at most 1";
pub const SHADOW_MAX_DISAGREEMENT: &str = "shadow maxDisagreement must be between 0 and 1";
pub const SHADOW_TOLERANCE: &str = "shadow tolerance must not be negative";
pub const SHADOW_LATENCY_RATIO: &str = "shadow maxP99LatencyRatio must be at least 1";
pub const SHADOW_TOLERANCE_REQUIRED: &str = "a regression Model's shadow needs tolerance: the largest difference between the two predictions that still counts as agreement";
pub const SHADOW_SLICE_UNKNOWN: &str = "shadow slices must name slices defined in gate.slices";
pub const ALPHA: &str = "analysis alpha must be greater than 0 and less than 0.5 (0.05 is usual)";
pub const REPLICAS: &str = "serving replicas must be at least 1";
pub const VERSION_SPEC_IMMUTABLE: &str =
    "a ModelVersion's spec is immutable; train a new version instead";
pub const VERSION_MODEL_EMPTY: &str = "a ModelVersion must name its Model";
pub const VERSION_NUMBER: &str = "a ModelVersion's version must be at least 1";
