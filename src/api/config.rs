//! Reading a Model from a YAML file, as `driftline train` and `evaluate` do:
//! a whole `Model` resource or a bare `spec`.

use super::model::{Model, ModelSpec};
use super::validate::InvalidModel;

/// Why a config file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config is not valid YAML: {0}")]
    Yaml(#[source] serde_yaml::Error),
    #[error(
        "config is a `{kind}` resource; expected kind `Model` (apiVersion driftline.dev/v1alpha1)"
    )]
    WrongKind { kind: String },
    #[error("config `{path}`: {source}")]
    Field {
        path: String,
        #[source]
        source: serde_yaml::Error,
    },
    // Not a `#[source]`: the message already holds every field error, and
    // error chains would print them twice.
    #[error("config: {0}")]
    Invalid(InvalidModel),
}

/// Parses a `Model` resource or a bare `ModelSpec` from YAML and validates it
/// as the API server would.
pub fn load_model_config(yaml: &str) -> Result<ModelSpec, ConfigError> {
    let spec = parse_model_config(yaml)?;
    spec.validate().map_err(ConfigError::Invalid)?;
    Ok(spec)
}

fn parse_model_config(yaml: &str) -> Result<ModelSpec, ConfigError> {
    let value: serde_yaml::Value = serde_yaml::from_str(yaml).map_err(ConfigError::Yaml)?;
    if let Some(kind) = value.get("kind").and_then(|k| k.as_str()) {
        if kind != "Model" {
            return Err(ConfigError::WrongKind {
                kind: kind.to_string(),
            });
        }
        let model: Model = serde_yaml::from_value(value).map_err(|source| ConfigError::Field {
            path: "Model".into(),
            source,
        })?;
        return Ok(model.spec);
    }
    let spec_value = value.get("spec").cloned().unwrap_or(value);
    serde_yaml::from_value(spec_value).map_err(|source| ConfigError::Field {
        path: "spec".into(),
        source,
    })
}
