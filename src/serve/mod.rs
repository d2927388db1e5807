//! The model server (Open Inference Protocol v2) and the per-Model gateway.

mod annotation;
mod binary;
mod encoding;
mod error;
mod feedback;
mod front;
mod gateway;
mod grpc;
mod images;
mod inbox;
mod json;
mod labels;
mod lines;
mod listen;
mod load;
mod metrics;
mod model;
mod pending;
mod predict;
mod protocol;
mod server;
mod shadow;
mod trace;
mod watch;

pub use error::ServeError;
pub use feedback::{FeedbackConfig, FeedbackSink, LabelKind};
pub use gateway::{
    Backend, GatewayConfig, VERSION_HEADER, WeightTable, WeightsHandle, WeightsSource,
    gateway_router, read_weights_file, run_gateway, watch_model_status, watch_weights_file,
    weights_from_status,
};
pub use grpc::pb;
pub use images::ImageLimits;
// The load generator (`driftline load`, `up`'s traffic and `demo`'s requests).
pub use load::{
    LoadPlan, LoadReport, RowOrder, infer_body, input_columns, label_json, model_inputs,
    run as run_load, same_label, shifted,
};
pub use model::{StoreFeedbackSink, load_artifact};
pub use protocol::{
    Column, DecodedBatch, InputSchema, Value, decode_inputs, parse_infer_body, parse_request,
    read_columns,
};
pub use server::{ModelInfo, ModelOutput, Predictor, RunningServer, ServerConfig, start};
pub use shadow::{Mirror, mirror_from_model};
