//! driftline's own CRDs must be accepted by the embedded cluster's CRD
//! checks, or `driftline up` could not install them.

use driftline::cluster::schema::{CrdSchema, validate_crd};
use kube::CustomResourceExt;

#[test]
fn the_model_crd_is_a_valid_structural_schema() {
    let crd = driftline::api::Model::crd();
    let errors: Vec<String> = validate_crd(&crd).iter().map(ToString::to_string).collect();
    assert!(errors.is_empty(), "{errors:#?}");
    for version in &crd.spec.versions {
        let compiled = CrdSchema::for_version(&crd, &version.name);
        assert!(compiled.is_ok(), "version {} has a schema", version.name);
    }
}
