//! The user's API: the `Model` and `ModelVersion` custom resources, their
//! spec types and the validation rules users get wrong.
//!
//! Every other room reads the spec through these types; a field is defined
//! once, here.

pub mod config;
pub mod crd;
pub mod duration;
pub mod gate;
pub mod images;
pub mod links;
pub mod model;
pub mod names;
pub mod rollout;
pub mod routes;
pub mod schedule;
pub mod scrape;
pub mod slice;
pub mod status;
pub mod validate;
pub mod version;
pub mod words;

pub use config::{ConfigError, ModelFile, load_model_config, load_model_file};
pub use duration::{DurationError, SpecDuration, parse_duration};
pub use gate::{
    BudgetReport, GateCheck, GateEvaluation, GateReport, GateVerdict, MustPassFailure,
    MustPassReport, SliceReport,
};
pub use images::*;
pub use model::*;
pub use rollout::*;
pub use schedule::{RetrainSchedule, ScheduleError};
pub use slice::{SliceCondition, SliceConditionError};
pub use status::*;
pub use validate::{FieldError, InvalidModel};
pub use version::*;

words::spec_words!(
    Task,
    DataFormat,
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
    AnalysisOutcome,
    VersionPhase,
);

/// API group of every driftline resource.
pub const GROUP: &str = "driftline.dev";
/// API version of every driftline resource.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` of every driftline resource: [`GROUP`]/[`VERSION`].
pub const API_VERSION: &str = "driftline.dev/v1alpha1";
