//! Reading a Model file as `driftline train`, `evaluate`, `up -f`, `load`
//! and `demo` do: a whole `Model` resource or a bare `spec`, decoded as
//! strictly as the API server decodes it under `kubectl apply` (an unknown
//! field is an error naming its path), then checked by [`ModelSpec::validate`].
//! This is the one door a Model file comes in by.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use kube::CustomResourceExt;

use super::model::{Model, ModelSpec};
use super::validate::InvalidModel;

/// Why a Model file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("not valid YAML")]
    Yaml(#[source] serde_yaml::Error),
    #[error("a `{kind}` resource; expected kind `Model` (apiVersion {api_version})", api_version = super::API_VERSION)]
    WrongKind { kind: String },
    #[error("apiVersion `{found}`; a Model's is `{api_version}`", api_version = super::API_VERSION)]
    WrongApiVersion { found: String },
    /// Word for word what kube-apiserver answers `kubectl apply` with such a field.
    #[error("strict decoding error: {}", .fields.iter().map(|f| format!("unknown field \"{f}\"")).collect::<Vec<_>>().join(", "))]
    UnknownFields { fields: Vec<String> },
    #[error("`{path}`")]
    Field {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    Invalid(InvalidModel),
}

/// A Model file's contents: the spec, and the name and namespace when the
/// file is a whole resource.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelFile {
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub spec: ModelSpec,
}

/// Parses a `Model` resource or a bare `ModelSpec` from YAML, strictly, and
/// validates it as the API server would.
pub fn load_model_config(yaml: &str) -> Result<ModelSpec, ConfigError> {
    Ok(load_model_file(yaml)?.spec)
}

/// [`load_model_config`], keeping the resource's name and namespace.
pub fn load_model_file(yaml: &str) -> Result<ModelFile, ConfigError> {
    let value: serde_json::Value = serde_yaml::from_str(yaml).map_err(ConfigError::Yaml)?;
    let whole_resource = value.get("kind").is_some() || value.get("apiVersion").is_some();
    let resource = if whole_resource {
        check_envelope(&value)?;
        value
    } else {
        // A bare spec, or a document holding only `spec:`.
        let spec = value.get("spec").cloned().unwrap_or(value);
        serde_json::json!({ "spec": spec })
    };
    let unknown = unknown_fields(&resource);
    if !unknown.is_empty() {
        return Err(ConfigError::UnknownFields { fields: unknown });
    }
    let spec_value = resource.get("spec").cloned().unwrap_or_default();
    let spec: ModelSpec = serde_path_to_error::deserialize(spec_value).map_err(|e| {
        let path = e.path().to_string();
        ConfigError::Field {
            path: if path == "." {
                "spec".into()
            } else {
                format!("spec.{path}")
            },
            source: e.into_inner(),
        }
    })?;
    spec.validate().map_err(ConfigError::Invalid)?;
    let meta = |key: &str| {
        resource
            .get("metadata")
            .and_then(|m| m.get(key))
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    Ok(ModelFile {
        name: meta("name"),
        namespace: meta("namespace"),
        spec,
    })
}

fn check_envelope(value: &serde_json::Value) -> Result<(), ConfigError> {
    let kind = value.get("kind").and_then(|k| k.as_str()).unwrap_or("");
    if kind != "Model" {
        return Err(ConfigError::WrongKind { kind: kind.into() });
    }
    let api_version = value.get("apiVersion").and_then(|v| v.as_str());
    if api_version != Some(super::API_VERSION) {
        return Err(ConfigError::WrongApiVersion {
            found: api_version.unwrap_or("").into(),
        });
    }
    Ok(())
}

/// The fields of a Model resource the CRD's structural schema does not
/// declare, as JSON paths (`spec.trainning`), sorted: what the API server's
/// strict field validation refuses. `metadata` keeps ObjectMeta's fields.
pub fn unknown_fields(resource: &serde_json::Value) -> Vec<String> {
    let crd = Model::crd();
    let Some(schema) = crd
        .spec
        .versions
        .first()
        .and_then(|v| v.schema.as_ref())
        .and_then(|s| s.open_api_v3_schema.as_ref())
    else {
        return Vec::new();
    };
    let mut found = Vec::new();
    if let Some(map) = resource.as_object() {
        for (key, child) in map {
            match key.as_str() {
                "apiVersion" | "kind" => {}
                "metadata" => object_meta_unknown(child, &mut found),
                _ => match schema.properties.as_ref().and_then(|p| p.get(key)) {
                    Some(s) => undeclared(s, child, key, &mut found),
                    None => found.push(key.clone()),
                },
            }
        }
    }
    found.sort();
    found
}

/// Fields of `metadata` that ObjectMeta does not have.
fn object_meta_unknown(meta: &serde_json::Value, found: &mut Vec<String>) {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    let Some(map) = meta.as_object() else { return };
    // ObjectMeta's own serde names: a field it does not declare does not survive a round trip.
    let declared = serde_json::from_value::<ObjectMeta>(meta.clone())
        .ok()
        .and_then(|m| serde_json::to_value(m).ok());
    for key in map.keys() {
        let known = declared.as_ref().is_some_and(|d| d.get(key).is_some())
            || map[key].is_null()
            || is_empty_container(&map[key]);
        if !known {
            found.push(format!("metadata.{key}"));
        }
    }
}

fn is_empty_container(v: &serde_json::Value) -> bool {
    v.as_object().is_some_and(|m| m.is_empty()) || v.as_array().is_some_and(|a| a.is_empty())
}

fn undeclared(
    schema: &JSONSchemaProps,
    value: &serde_json::Value,
    path: &str,
    found: &mut Vec<String>,
) {
    if let Some(map) = value.as_object() {
        let keeps_unknown = schema.x_kubernetes_preserve_unknown_fields == Some(true);
        let values = match &schema.additional_properties {
            Some(JSONSchemaPropsOrBool::Schema(s)) => Some(s.as_ref()),
            Some(JSONSchemaPropsOrBool::Bool(true)) => return,
            _ => None,
        };
        for (key, child) in map {
            let at = format!("{path}.{key}");
            match (schema.properties.as_ref().and_then(|p| p.get(key)), values) {
                (Some(s), _) | (None, Some(s)) => undeclared(s, child, &at, found),
                (None, None) if !keeps_unknown => found.push(at),
                (None, None) => {}
            }
        }
    } else if let (Some(items), Some(list)) = (&schema.items, value.as_array()) {
        let item_schema = match items {
            JSONSchemaPropsOrArray::Schema(s) => Some(s.as_ref()),
            JSONSchemaPropsOrArray::Schemas(all) => all.first(),
        };
        if let Some(s) = item_schema {
            for (i, item) in list.iter().enumerate() {
                undeclared(s, item, &format!("{path}[{i}]"), found);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "task: classification\ndata: {source: d.csv, target: y}\n";

    #[test]
    fn a_typo_in_a_field_name_is_refused_with_its_path() {
        let yaml = format!("{MINIMAL}trainning: {{epochs: 3}}\n");
        let err = load_model_config(&yaml).unwrap_err();
        assert_eq!(
            err.to_string(),
            "strict decoding error: unknown field \"spec.trainning\""
        );
    }

    #[test]
    fn every_unknown_field_is_listed_at_any_depth_of_a_whole_resource() {
        let yaml = "apiVersion: driftline.dev/v1alpha1\nkind: Model\nmetadata: {name: m, colour: red}\nspec:\n  task: classification\n  data: {source: d.csv, target: y, sauce: s3}\n  rollout:\n    shadow: {duration: 30m, mirror: all}\n    steps: [{weight: 10, pause: 1m, hold: true}]\n  alerts: []\n".to_string();
        match load_model_file(&yaml).unwrap_err() {
            ConfigError::UnknownFields { fields } => assert_eq!(
                fields,
                [
                    "metadata.colour",
                    "spec.alerts",
                    "spec.data.sauce",
                    "spec.rollout.shadow.mirror",
                    "spec.rollout.steps[0].hold"
                ]
            ),
            other => panic!("expected unknown fields, got {other}"),
        }
    }

    #[test]
    fn maps_and_free_form_fields_take_any_key() {
        let yaml = "task: classification\ndata: {source: d.csv, target: y, featureKinds: {x: numeric}}\ndrift: {threshold: auto, features: {x: {ignore: true}}}\n";
        let file = load_model_file(yaml).expect("maps accept any key");
        assert!(file.spec.drift.features["x"].ignore);
        let bad = format!("{MINIMAL}drift: {{features: {{x: {{ignor: true}}}}}}\n");
        assert!(matches!(
            load_model_file(&bad),
            Err(ConfigError::UnknownFields { fields }) if fields == ["spec.drift.features.x.ignor"]
        ));
    }

    #[test]
    fn a_whole_resource_keeps_its_name_and_namespace_and_must_be_a_model() {
        let yaml = "apiVersion: driftline.dev/v1alpha1\nkind: Model\nmetadata: {name: m, namespace: ml, labels: {team: a}}\nspec:\n  task: classification\n  data: {source: d.csv, target: y}\n".to_string();
        let file = load_model_file(&yaml).unwrap();
        assert_eq!(file.name.as_deref(), Some("m"));
        assert_eq!(file.namespace.as_deref(), Some("ml"));
        let wrong = yaml.replace("kind: Model", "kind: Deployment");
        assert!(
            matches!(load_model_file(&wrong), Err(ConfigError::WrongKind { kind }) if kind == "Deployment")
        );
        let old = yaml.replace("v1alpha1", "v1");
        assert!(
            matches!(load_model_file(&old), Err(ConfigError::WrongApiVersion { found }) if found == "driftline.dev/v1")
        );
    }

    #[test]
    fn the_api_version_constant_is_the_crds() {
        use kube::Resource;
        assert_eq!(Model::api_version(&()), crate::api::API_VERSION);
        assert_eq!(
            crate::api::API_VERSION,
            format!("{}/{}", crate::api::GROUP, crate::api::VERSION)
        );
    }

    #[test]
    fn a_wrong_type_names_where_and_prints_its_cause_once() {
        let yaml = "task: classification\ndata: {source: d.csv, target: y, format: xlsx}\n";
        let err = load_model_file(yaml).unwrap_err();
        let chain = format!("{:#}", anyhow::Error::new(err));
        assert!(
            chain.starts_with("`spec.data.format`: unknown variant `xlsx`"),
            "{chain}"
        );
        assert_eq!(
            chain.matches("unknown variant `xlsx`").count(),
            1,
            "{chain}"
        );
    }
}
