//! `driftline crd`: the CustomResourceDefinitions generated from the types.

use kube::CustomResourceExt;

use super::model::Model;

/// All CRDs as one multi-document YAML stream, as committed in `crds/`.
pub fn all_crds_yaml() -> Result<String, serde_yaml::Error> {
    let mut out = String::new();
    for crd in [Model::crd()] {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&crd)?);
    }
    Ok(out)
}
