//! `driftline crd`: the CustomResourceDefinitions generated from the types.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use super::model::Model;
use super::version::ModelVersion;

/// Every driftline CRD.
pub fn all_crds() -> Vec<CustomResourceDefinition> {
    vec![Model::crd(), ModelVersion::crd()]
}

/// Each CRD as `(file name, YAML)`, as committed in `crds/` and
/// `charts/driftline/crds/` (`models.driftline.dev.yaml`, ...).
pub fn crd_files() -> Result<Vec<(String, String)>, serde_yaml::Error> {
    all_crds()
        .into_iter()
        .map(|crd| {
            let name = crd.metadata.name.clone().unwrap_or_default();
            Ok((format!("{name}.yaml"), serde_yaml::to_string(&crd)?))
        })
        .collect()
}

/// All CRDs as one multi-document YAML stream (`driftline crd`).
pub fn all_crds_yaml() -> Result<String, serde_yaml::Error> {
    let mut out = String::new();
    for (_, yaml) in crd_files()? {
        out.push_str("---\n");
        out.push_str(&yaml);
    }
    Ok(out)
}
