//! Running the model on a request, by what its inputs are: table columns
//! (small batches inline, large ones on the blocking pool) or images
//! (always off the async threads: decoding and convolutions are heavy).

use std::sync::Arc;

use crate::api::FeatureKind;
use crate::data::Pixels;

use super::error::ServeError;
use super::protocol::{Column, DecodedBatch, InferRequest, decode_inputs};
use super::server::{AppState, Loaded, ModelInfo, ModelOutput, Predictor};

/// Batches above this many rows run on the blocking pool so they do not stall other requests.
const INLINE_ROWS: usize = 64;

/// Runs the model once on one input at the centre of its reference (a
/// gray image for an image model), so a broken artifact fails at load.
pub(super) async fn warm_up(model: Arc<dyn Predictor>) -> Result<ModelOutput, ServeError> {
    tokio::task::spawn_blocking(move || {
        let info = model.info();
        if info.image_input.is_some() {
            let gray = Pixels::from_raw(8, 8, 1, &[128; 64]).expect("64 gray pixels");
            model.predict_images(&[gray])
        } else {
            model.predict(&warm_up_batch(info))
        }
    })
    .await
    .map_err(ServeError::InferenceAborted)?
    .map_err(ServeError::WarmUp)
}

/// One row at the centre of the reference: numeric means, first categories.
fn warm_up_batch(info: &ModelInfo) -> DecodedBatch {
    let columns: Vec<Column> = info
        .features
        .iter()
        .enumerate()
        .map(|(j, (_, kind))| {
            let profile = info.reference.features.get(j);
            match (kind, profile) {
                (
                    FeatureKind::Numeric,
                    Some(crate::drift::FeatureProfile::Numeric { profile, .. }),
                ) => Column::Numbers(vec![profile.mean]),
                (FeatureKind::Numeric, _) => Column::Numbers(vec![0.0]),
                (
                    FeatureKind::Categorical,
                    Some(crate::drift::FeatureProfile::Categorical { profile, .. }),
                ) => Column::Texts(vec![
                    profile.categories.first().cloned().unwrap_or_default(),
                ]),
                (FeatureKind::Categorical, _) => Column::Texts(vec![String::new()]),
                (FeatureKind::Boolean, _) => Column::Texts(vec!["false".into()]),
            }
        })
        .collect();
    DecodedBatch::from(columns)
}

/// Decodes a table model's request into columns, unless the body was
/// read straight into them (`decoded`), and predicts them.
pub(super) async fn columns(
    loaded: &Loaded,
    request: &mut InferRequest<'_>,
    decoded: Option<DecodedBatch>,
) -> Result<(DecodedBatch, ModelOutput), ServeError> {
    let batch = match decoded {
        Some(batch) => batch,
        None => decode_inputs(request, &loaded.schema)?,
    };
    if batch.rows() <= INLINE_ROWS {
        let output = loaded
            .model
            .predict(&batch)
            .map_err(ServeError::Inference)?;
        return Ok((batch, output));
    }
    let model = loaded.model.clone();
    tokio::task::spawn_blocking(move || {
        let output = model.predict(&batch);
        (batch, output)
    })
    .await
    .map(|(b, o)| o.map(|o| (b, o)))
    .map_err(ServeError::InferenceAborted)?
    .map_err(ServeError::Inference)
}

/// Decodes an image model's images and predicts them, off the async
/// threads (decoding and convolutions are heavy). The batch has no columns:
/// the drift monitor reads the output's monitored values instead.
pub(super) async fn images(
    state: &AppState,
    loaded: &Loaded,
    request: &InferRequest<'_>,
    input: &str,
) -> Result<(DecodedBatch, ModelOutput), ServeError> {
    let images =
        super::images::decode_images(request, input, state.config.images, state.config.max_rows)?;
    let rows = images.len();
    let model = loaded.model.clone();
    let output = tokio::task::spawn_blocking(move || model.predict_images(&images))
        .await
        .map_err(ServeError::InferenceAborted)?
        .map_err(ServeError::Inference)?;
    Ok((DecodedBatch::without_features(rows), output))
}
