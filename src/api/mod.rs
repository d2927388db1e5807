//! The user's API: the `Model` and `ModelVersion` custom resources, their
//! spec types and the validation rules users get wrong.
//!
//! Every other room reads the spec through these types; a field is defined
//! once, here.

mod annotation;
mod config;
pub mod crd;
mod data_check;
mod data_window;
mod duration;
mod estimate;
mod gate;
mod images;
pub mod links;
mod model;
pub mod names;
mod notify;
mod rollout;
pub mod routes;
mod schedule;
pub mod scrape;
mod shadow;
mod slice;
mod status;
mod validate;
mod version;
mod words;

pub use annotation::{
    AnnotationSpec, DEFAULT_DRIFT_SHARE, DEFAULT_UNCERTAINTY_SHARE, FeedbackSpec, QueueReason,
};
pub use config::{ConfigError, ModelFile, load_model_config, load_model_file};
pub use data_check::{
    ColumnStats, DataCheck, DataCheckReport, DataCheckSpec, DataStats, DataVerdict, MAX_CATEGORIES,
};
pub use data_window::{DataWindow, Partitioning};
pub use duration::{DurationError, SpecDuration, parse_duration};
pub use estimate::{
    DEFAULT_ESTIMATE_MIN_LABELS, DEFAULT_ESTIMATE_TOLERANCE, EstimatedAccuracy,
    EstimatedDropTrigger, EstimatedMetric, LabelCounts, REALISED_WINDOWS_KEPT, RealisedAccuracy,
    RealisedWindow,
};
pub use gate::{
    BudgetReport, CALIBRATION_ERROR_METRIC, GateCheck, GateEvaluation, GateReport, GateVerdict,
    MustPassFailure, MustPassReport, SliceReport, higher_is_better,
};
pub use images::*;
pub use model::*;
pub use notify::{
    ALL_EVENTS, EVENT_TYPE_PREFIX, NotifyEvent, NotifyFormat, NotifySecretRef, NotifySink,
    msg as notify_msg, parse_sinks, validate_sinks,
};
pub use rollout::*;
pub use schedule::{RetrainSchedule, ScheduleError};
pub use shadow::{
    Agreement, ShadowSpec, ShadowTally, bucket_quantile, magnitude_bucket, value_bucket,
};
pub use slice::{SliceCondition, SliceConditionError};
pub use status::*;
pub use validate::{FieldError, InvalidModel, KNOWN_ARCHITECTURES, msg};
pub use version::*;

words::spec_words!(
    Task,
    DataFormat,
    Partitioning,
    ImageChannels,
    ChannelOrder,
    Pooling,
    WarmStart,
    FeatureKind,
    Activation,
    Optimizer,
    TrainingDevice,
    MissedRunPolicy,
    DriftStatistic,
    DriftTrigger,
    DriftControl,
    DriftThreshold,
    ModelPhase,
    ConditionStatus,
    TrainingTrigger,
    RunStage,
    AnalysisOutcome,
    AnalysisMethod,
    Evidence,
    VersionPhase,
    StartKind,
    EstimatedMetric,
    QueueReason,
);

/// API group of every driftline resource.
pub const GROUP: &str = "driftline.dev";
/// API version of every driftline resource.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` of every driftline resource: [`GROUP`]/[`VERSION`].
pub const API_VERSION: &str = "driftline.dev/v1alpha1";
