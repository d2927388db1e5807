//! Glue between the server and the `ml` room: loading an artifact as a
//! [`Predictor`], and writing feedback files to the artifact store.

use crate::data::CellRef;
use crate::data::store;
use crate::ml::{FeatureRows, LoadedModel};

use super::error::ServeError;
use super::feedback::FeedbackSink;
use super::protocol::{DecodedBatch, Value};
use super::server::{ModelInfo, ModelOutput, Predictor};
use crate::api::names;

/// A verified artifact served by the model server.
pub struct ArtifactModel {
    model: LoadedModel,
    info: ModelInfo,
}

/// The version an artifact URI names (`…/v3/` → `3`, [`names::artifact_version`]),
/// else `1` (an artifact trained outside the operator).
pub fn version_from_uri(uri: &str) -> String {
    names::artifact_version(uri).map_or_else(|| "1".to_string(), |n| n.to_string())
}

/// The model name an artifact URI suggests: the segment before the version (`…/wine-quality/v3/`).
fn name_from_uri(uri: &str) -> Option<String> {
    let mut parts = uri.trim_end_matches('/').rsplit('/');
    let _version = parts.next()?;
    parts
        .next()
        .filter(|p| !p.is_empty() && !p.contains(':'))
        .map(str::to_string)
}

/// Loads and verifies an artifact (weights digests and architecture fingerprint).
pub async fn load_artifact(
    uri: &str,
    name: Option<String>,
    version: Option<String>,
) -> Result<ArtifactModel, ServeError> {
    let model = LoadedModel::load(uri).await.map_err(|e| ServeError::Load {
        uri: uri.to_string(),
        source: Box::new(e),
    })?;
    let manifest = model.manifest();
    let features = manifest
        .features
        .iter()
        .map(|f| (f.name.clone(), f.kind))
        .collect();
    let info = ModelInfo {
        name: name
            .or_else(|| name_from_uri(uri))
            .unwrap_or_else(|| "model".to_string()),
        version: version.unwrap_or_else(|| version_from_uri(uri)),
        task: manifest.task,
        classes: manifest.classes.clone(),
        target: manifest.target.clone(),
        features,
        image_input: manifest.image.as_ref().map(|i| i.input.clone()),
        reference: manifest.reference.clone(),
    };
    Ok(ArtifactModel { model, info })
}

impl ArtifactModel {
    /// The loaded artifact.
    pub fn loaded(&self) -> &LoadedModel {
        &self.model
    }
}

/// Decoded request columns are the `ml` room's raw rows, read in place
/// (copying a one-row request into owned cells was ~1.4 % of its CPU).
impl FeatureRows for DecodedBatch {
    fn rows(&self) -> usize {
        self.rows()
    }

    fn columns(&self) -> usize {
        self.features()
    }

    fn column_len(&self, _: usize) -> usize {
        // Every feature has a value in every row.
        self.rows()
    }

    #[inline]
    fn cell(&self, j: usize, row: usize) -> CellRef<'_> {
        match &self.column(j)[row] {
            Value::Number(v) => CellRef::Number(*v),
            Value::Text(v) => CellRef::Text(v),
        }
    }
}

impl Predictor for ArtifactModel {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn predict(&self, batch: &DecodedBatch) -> Result<ModelOutput, String> {
        let p = self.model.predict(batch).map_err(|e| e.to_string())?;
        Ok(ModelOutput {
            labels: p.labels,
            values: p.values,
            probabilities: p.probabilities,
            monitored: None,
        })
    }

    fn predict_images(&self, images: &[crate::data::Pixels]) -> Result<ModelOutput, String> {
        let p = self
            .model
            .predict_images(images)
            .map_err(|e| e.to_string())?;
        Ok(ModelOutput {
            labels: p.predictions.labels,
            values: p.predictions.values,
            probabilities: p.predictions.probabilities,
            monitored: Some(p.monitored),
        })
    }
}

/// Writes feedback files under a prefix URI of any store `ml::store` reaches.
pub struct StoreFeedbackSink {
    uri: String,
}

impl StoreFeedbackSink {
    /// A sink for `prefix` (`file:///…/`, `s3://bucket/…/`, … or a local directory path).
    pub fn new(prefix: &str) -> Result<Self, ServeError> {
        let bad = |source: super::error::Cause| ServeError::FeedbackPrefix {
            prefix: prefix.to_string(),
            source,
        };
        // The store's own rule: no `://` means a local path. It is made
        // absolute so the files the server reports can be found from anywhere.
        let uri = if prefix.contains("://") {
            prefix.to_string()
        } else {
            let absolute = std::path::absolute(prefix).map_err(|e| bad(e.into()))?;
            format!(
                "file://{}/",
                absolute.display().to_string().trim_end_matches('/')
            )
        };
        // Cloud credentials come from the environment, as for artifacts.
        store::check(&uri).map_err(|e| bad(e.into()))?;
        Ok(Self { uri })
    }
}

#[async_trait::async_trait]
impl FeedbackSink for StoreFeedbackSink {
    async fn write(&self, file_name: &str, contents: Vec<u8>) -> Result<String, ServeError> {
        let uri = store::join(&self.uri, file_name);
        store::write_object(&uri, contents.into())
            .await
            .map_err(|e| ServeError::FeedbackWrite {
                uri: uri.clone(),
                source: Box::new(e),
            })?;
        Ok(uri)
    }

    fn prefix(&self) -> String {
        self.uri.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::FeatureKind;
    use crate::data::Cell;
    use crate::ml::{FeatureBatch, FeatureSchema, encode};
    use crate::serve::protocol::Column;

    fn feature(name: &str, kind: FeatureKind, categories: &[&str], fill: Cell) -> FeatureSchema {
        FeatureSchema {
            name: name.into(),
            kind,
            categories: categories.iter().map(|c| c.to_string()).collect(),
            fill,
            mean: 4.0,
            std: 2.5,
        }
    }

    fn features() -> Vec<FeatureSchema> {
        vec![
            feature("x", FeatureKind::Numeric, &[], Cell::Number(4.0)),
            feature(
                "color",
                FeatureKind::Categorical,
                &["red", "white"],
                Cell::Text("red".into()),
            ),
            feature("flag", FeatureKind::Boolean, &[], Cell::Number(1.0)),
        ]
    }

    fn decoded(flags: &[&str]) -> DecodedBatch {
        DecodedBatch::from(vec![
            Column::Numbers(vec![1.5, -2.0, 7.25]),
            Column::Texts(vec!["white".into(), "rosé".into(), "red".into()]),
            Column::Texts(flags.iter().map(|f| f.to_string()).collect()),
        ])
    }

    /// The same rows as owned cells: what training and evaluation encode.
    fn as_cells(batch: &DecodedBatch) -> FeatureBatch {
        FeatureBatch {
            rows: batch.rows(),
            columns: (0..batch.features())
                .map(|j| {
                    batch
                        .column(j)
                        .iter()
                        .map(|v| match v {
                            Value::Number(x) => Cell::Number(*x),
                            Value::Text(t) => Cell::Text(t.clone()),
                        })
                        .collect()
                })
                .collect(),
        }
    }

    #[test]
    fn a_request_encodes_in_place_to_the_bits_its_cells_encode_to() {
        let features = features();
        let batch = decoded(&["yes", "false", "T"]);
        let in_place = encode(&features, &batch, "the request").unwrap();
        let from_cells = encode(&features, &as_cells(&batch), "the request").unwrap();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&in_place), bits(&from_cells));
        // x standardised, color one-hot with the unknown slot, flag 1/0.
        assert_eq!(in_place.len(), 3 * 5);
        assert_eq!(&in_place[1..5], &[0.0, 1.0, 0.0, 1.0]);
        assert_eq!(&in_place[6..10], &[0.0, 0.0, 1.0, 0.0]);
        assert_eq!(&in_place[11..15], &[1.0, 0.0, 0.0, 1.0]);
    }

    #[test]
    fn a_bad_cell_or_a_missing_feature_is_refused_as_the_cells_would_be() {
        let features = features();
        let batch = decoded(&["yes", "maybe", "no"]);
        let in_place = encode(&features, &batch, "the request")
            .unwrap_err()
            .to_string();
        let from_cells = encode(&features, &as_cells(&batch), "the request")
            .unwrap_err()
            .to_string();
        assert_eq!(in_place, from_cells);
        assert!(
            in_place.contains("row 2") && in_place.contains("`flag`") && in_place.contains("maybe"),
            "{in_place}"
        );
        // A batch without the model's third feature.
        let short = DecodedBatch::from(vec![
            Column::Numbers(vec![1.5]),
            Column::Texts(vec!["red".into()]),
        ]);
        let e = encode(&features, &short, "the request")
            .unwrap_err()
            .to_string();
        assert!(e.contains("flag") && e.contains('2'), "{e}");
    }
}
